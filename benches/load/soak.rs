//! `./bench.sh --soak MINUTES`: the real `pullgate serve` (release binary, its own process) under a steady
//! mixed load for MINUTES — warm admissions (cached images), cold ones (tags whose cache entries keep
//! expiring, and tags that do not exist), and failing registries (a port where nothing listens, a
//! registry answering 503) — paced at a fixed rate on 127.0.0.1. Printed per minute: requests, errors,
//! p50/p99 and the server's RSS; passes with 0 errors, the last minute's p99 within 2× the first's, and
//! RSS flat (last minute within 10 % of the first).

use super::*;
use support::hostile;

/// Admissions per second, all kinds together.
const RATE: u64 = 100;
const WORKERS: u64 = 20;

struct Minute {
    requests: usize,
    errors: usize,
    p50: Duration,
    p99: Duration,
    rss_mib: f64,
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// The mix: request `n` of the run, as a pod spec.
fn spec(n: u64, reg: &str, failing: &str) -> Value {
    match n % 10 {
        // Cold: 50 tags whose entries expire every 2 s; a tag that does not exist.
        0..=1 => containers(&[format!("{reg}/soak/app:t{}", n % 50)]),
        2 => containers(&[format!("{reg}/soak/app:missing{}", n % 97)]),
        // Failing registries: nothing listens / 503.
        3 => containers(&[
            format!("127.0.0.1:1/soak/app:v{}", n % 5),
            format!("{failing}/soak/app:v1"),
        ]),
        // Warm: three cached images.
        _ => containers(&[
            format!("{reg}/bench/a:v1"),
            format!("{reg}/bench/b:v1"),
            format!("{reg}/bench/c:v1"),
        ]),
    }
}

pub async fn soak(minutes: u64) -> anyhow::Result<Vec<Row>> {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/pullgate");
    anyhow::ensure!(
        binary.exists(),
        "build the release binary first (./bench.sh does)"
    );
    let reg = registry::start(RegistryOptions::default()).await?;
    for name in ["a", "b", "c"] {
        registry::push_image(&reg, &format!("bench/{name}"), "v1", amd64()).await?;
    }
    for tag in 0..50 {
        registry::push_image(&reg, "soak/app", &format!("t{tag}"), amd64()).await?;
    }
    let failing = hostile::start(
        "127.0.0.1",
        false,
        hostile::answer(|_, _| hostile::status(503, "")),
    )
    .await;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  \"{}\": {{insecure: true}}\n  \"{}\": {{insecure: true}}\n  \"127.0.0.1:1\": {{insecure: true}}\nnetwork: {{allowCIDRs: [127.0.0.0/8]}}\nresolution: {{tagTtlSeconds: 2, notFoundTtlSeconds: 2}}\n",
            reg.host(),
            failing.host
        ),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let certs = dir.path().join("certs");
    let mut child = std::process::Command::new(&binary)
        .args(["serve", "--kube-api", "off", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&config)
        .arg("--policies")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .arg("--generated-cert-dir")
        .arg(&certs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    let result = drive(minutes, port, &certs, reg.host(), &failing.host, pid).await;
    let _ = child.kill();
    let _ = child.wait();
    let minutes_seen = result?;
    Ok(table(&minutes_seen))
}

async fn drive(
    minutes: u64,
    port: u16,
    certs: &Path,
    reg: &str,
    failing: &str,
    pid: u32,
) -> anyhow::Result<Vec<Minute>> {
    let ca = certs.join("ca.pem");
    for _ in 0..100 {
        if ca.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = client(&ca)?;
    let url = format!("https://127.0.0.1:{port}/validate");
    for _ in 0..100 {
        if client
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut result = Vec::new();
    let start = Instant::now();
    for minute in 0..minutes {
        let minute_start = start + Duration::from_secs(60 * minute);
        let minute_end = minute_start + Duration::from_secs(60);
        let workers = (0..WORKERS).map(|w| {
            let client = client.clone();
            let url = url.clone();
            let (reg, failing) = (reg.to_owned(), failing.to_owned());
            tokio::spawn(async move {
                let interval = Duration::from_millis(1000 * WORKERS / RATE);
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                let mut n = minute * 60 * RATE + w;
                let mut next = minute_start + Duration::from_millis(w * 1000 / RATE);
                while next < minute_end {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                    let body = review(spec(n, &reg, &failing));
                    n += WORKERS;
                    let began = Instant::now();
                    let answered = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let ok = match answered {
                        Ok(r) if r.status().is_success() => r
                            .json::<Value>()
                            .await
                            .is_ok_and(|v| v["response"]["uid"].is_string()),
                        _ => false,
                    };
                    if ok {
                        latencies.push(began.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        });
        let mut all = Vec::new();
        let mut errors = 0;
        for (latencies, e) in futures::future::join_all(workers)
            .await
            .into_iter()
            .flatten()
        {
            all.extend(latencies);
            errors += e;
        }
        all.sort();
        let pick = |q: f64| {
            all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let row = Minute {
            requests: all.len() + errors,
            errors,
            p50: pick(0.5),
            p99: pick(0.99),
            rss_mib: rss_mib(pid),
        };
        println!(
            "minute {:>2}: {} requests, {} errors, p50 {}, p99 {}, RSS {:.1} MiB",
            minute + 1,
            row.requests,
            row.errors,
            ms(row.p50),
            ms(row.p99),
            row.rss_mib
        );
        result.push(row);
    }
    Ok(result)
}

fn table(minutes: &[Minute]) -> Vec<Row> {
    let (Some(first), Some(last)) = (minutes.first(), minutes.last()) else {
        return Vec::new();
    };
    let errors: usize = minutes.iter().map(|m| m.errors).sum();
    let requests: usize = minutes.iter().map(|m| m.requests).sum();
    let rss_change = (last.rss_mib - first.rss_mib) / first.rss_mib;
    vec![
        Row {
            name: "Soak: errors",
            measured: format!("{errors} of {requests} in {} min", minutes.len()),
            target: "0",
            verdict: yes(errors == 0),
        },
        Row {
            name: "Soak: p99 first → last minute",
            measured: format!("{} → {}", ms(first.p99), ms(last.p99)),
            target: "stable (≤ 2×)",
            verdict: yes(last.p99 <= first.p99 * 2),
        },
        Row {
            name: "Soak: RSS first → last minute",
            measured: format!(
                "{:.1} → {:.1} MiB ({:+.1} %)",
                first.rss_mib,
                last.rss_mib,
                rss_change * 100.0
            ),
            target: "within 10 %",
            verdict: yes(rss_change.abs() <= 0.10),
        },
    ]
}
