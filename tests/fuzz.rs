//! The fuzz targets (`pullgate::fuzz`) on stable: a seeded mutation driver over the seed corpora in
//! `fuzz/corpus/TARGET/` (real AdmissionReviews, manifests, policy and settings files, …). Each mutated
//! input runs under `catch_unwind` and a clock: a panic, or one input taking more than 2 s, is a failure,
//! saved to `target/fuzz-crashes/TARGET/` to replay.
//!
//! In `cargo test` each target gets a bounded number of cases (`PULLGATE_FUZZ_CASES`, default 2,000);
//! `./fuzz.sh SECONDS` (without nightly) runs it with `PULLGATE_FUZZ_SECONDS` per target instead and
//! prints the executions per target.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One input may take this long before it counts as a hang.
const SLOW: Duration = Duration::from_secs(2);
/// Largest mutated input.
const MAX_INPUT: usize = 256 * 1024;

/// Fragments that steer mutations towards the parsers' edges.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\n",
    b"- ",
    b"---\n",
    b"&a ",
    b"*a",
    b"!custom ",
    b"!!binary ",
    b"<<: ",
    b"\x00",
    b"\xff\xfe",
    b"\\u0000",
    b"null",
    b"-1",
    b"1e309",
    b".nan",
    b"99999999999999999999",
    b"sha256:",
    b"@sha256:",
    b"://",
    b"[::1]",
    b"%2e",
    b"..",
    b"*.",
    b"realm=",
    b"\"containers\":",
    b"image: ",
    b"\"image\":",
    b"kind: Pod\n",
    b"apiVersion: v1\n",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                input[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                input[at] = rng.next() as u8;
            }
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + rng.below(64) + 1).min(len);
                input.drain(start..end);
            }
            4 if len > 0 => {
                // Repeat a piece many times: long scalars, deep nesting, wide lists.
                let start = rng.below(len);
                let end = (start + rng.below(32) + 1).min(len);
                let piece = input[start..end].to_vec();
                let times = 1 + rng.below(200);
                let at = rng.below(input.len() + 1);
                let repeated: Vec<u8> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * times)
                    .collect();
                input.splice(at..at, repeated);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[from..].iter().copied().take(512));
                }
            }
            6 if len > 0 => input.truncate(rng.below(len)),
            7 => {
                let at = rng.below(len + 1);
                let digits = format!("{}", rng.next() as i64);
                input.splice(at..at, digits.bytes());
            }
            _ => {}
        }
    }
    input.truncate(MAX_INPUT);
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

/// What one target's run came to.
struct Run {
    target: &'static str,
    executions: u64,
    crashes: Vec<PathBuf>,
    slowest: Duration,
}

fn run(target: &'static str, entry: fn(&[u8]), budget: Budget, seed: u64) -> Run {
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "{target} has seeds");
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut result = Run {
        target,
        executions: 0,
        crashes: Vec::new(),
        slowest: Duration::ZERO,
    };
    let crash_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("../fuzz-crashes")
        .join(target);
    loop {
        let done = match budget {
            Budget::Cases(n) => result.executions >= n,
            Budget::Time(t) => started.elapsed() >= t,
        };
        if done {
            return result;
        }
        let mut input = seeds[(result.executions as usize) % seeds.len()].clone();
        // The seeds themselves first, then mutations.
        if result.executions >= seeds.len() as u64 {
            mutate(&mut rng, &seeds, &mut input);
        }
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| entry(&input)));
        let took = began.elapsed();
        result.slowest = result.slowest.max(took);
        result.executions += 1;
        if outcome.is_err() || took > SLOW {
            let _ = std::fs::create_dir_all(&crash_dir);
            let file = crash_dir.join(format!(
                "{}-{}",
                if outcome.is_err() { "crash" } else { "slow" },
                result.executions
            ));
            let _ = std::fs::write(&file, &input);
            result.crashes.push(file);
        }
    }
}

#[derive(Clone, Copy)]
enum Budget {
    Cases(u64),
    Time(Duration),
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn every_fuzz_target_survives_mutated_inputs() {
    let budget = match env_number("PULLGATE_FUZZ_SECONDS") {
        Some(seconds) => Budget::Time(Duration::from_secs(seconds)),
        None => Budget::Cases(env_number("PULLGATE_FUZZ_CASES").unwrap_or(2000)),
    };
    let seed = env_number("PULLGATE_FUZZ_SEED").unwrap_or(20_261_129);
    // Panics are expected to be caught and reported here, not printed for each input.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let runs: Vec<Run> = pullgate::fuzz::TARGETS
        .iter()
        .map(|(target, entry)| run(target, *entry, budget, seed))
        .collect();
    std::panic::set_hook(quiet);
    println!(
        "{:<16} {:>12} {:>8} {:>10}",
        "target", "executions", "crashes", "slowest"
    );
    for r in &runs {
        println!(
            "{:<16} {:>12} {:>8} {:>8}ms",
            r.target,
            r.executions,
            r.crashes.len(),
            r.slowest.as_millis()
        );
    }
    let failed: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.crashes
                .iter()
                .map(|f| format!("{}: {}", r.target, f.display()))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "inputs that crashed or hung:\n{}",
        failed.join("\n")
    );
}

/// A stand-in for a buggy parser: the driver must catch, count and save what makes it panic.
fn panics_on_a_brace(data: &[u8]) {
    assert!(!data.contains(&b'{'), "a brace");
}

#[test]
fn the_driver_reports_a_panicking_target() {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let run = run("manifest", panics_on_a_brace, Budget::Cases(20), 1);
    std::panic::set_hook(quiet);
    assert_eq!(run.executions, 20);
    assert!(!run.crashes.is_empty());
    assert!(run.crashes.iter().all(|f| f.exists()));
}
