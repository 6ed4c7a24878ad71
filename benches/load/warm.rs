//! P1 warm path, driven by `wrk` (one thread; 8 and 50 connections): pullgate next to two servers that do
//! less, in the same run and alternating, each over the same axum + rustls stack with the same body:
//!
//! - **decoding**: decodes the AdmissionReview with kube's `AdmissionReview<DynamicObject>` and answers
//!   `allowed` — what any webhook written with kube-rs pays before it decides anything;
//! - **floor**: copies the uid out of the bytes and answers `allowed` — TLS, HTTP and the body alone.
//!
//! The ratios say what pullgate's own work costs on top of reading the request. A Go load generator such
//! as `hey` saturates at ~14k req/s on two cores and would hide the difference; `wrk` does not.
//!
//! Two passes: throughput with the servers on the bench's runtime and wrk anywhere (the two cores shared,
//! as the targets were set), then p99 at 8 connections with the servers on one pinned core (one worker)
//! and wrk pinned to another. With the cores shared, every server's p99 — the floor's too — is the
//! scheduler's time slice (2–3 ms here), not the server's work.
//! With `PULLGATE_BENCH_PROFILE=1`, pullgate's run at 50 connections is recorded with `perf` and the top
//! of the profile written to `target/bench-profile.txt`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::Value;

use pullgate::config::Settings;

use super::{Row, containers, ms, review, settings_for, start_pullgate, yes};
use crate::support::registry::TestRegistry;

/// Seconds of load per run (after wrk's own connection set-up).
const SECONDS: u64 = 4;
/// Each server is measured this many times per connection count, alternating; the medians are kept,
/// and each ratio is the median of the rounds' own ratios (servers measured back to back share the
/// machine's moment, which drifts on a shared VM).
const ROUNDS: usize = 5;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    rps: f64,
    p99: Duration,
    errors: u64,
}

/// The decoding baseline: kube's typed AdmissionReview in, `allowed` out.
async fn decoding(
    request: axum::extract::Json<AdmissionReview<DynamicObject>>,
) -> axum::Json<AdmissionReview<DynamicObject>> {
    let converted: Result<AdmissionRequest<DynamicObject>, _> = request.0.try_into();
    let response = match converted {
        Ok(req) => AdmissionResponse::from(&req),
        Err(_) => AdmissionResponse::invalid("not an AdmissionReview request"),
    };
    axum::Json(response.into_review())
}

/// The floor: the uid copied out of the bytes, `allowed` out; nothing decoded.
async fn floor(body: Bytes) -> ([(&'static str, &'static str); 1], String) {
    let uid = find_uid(&body).unwrap_or("");
    (
        [("content-type", "application/json")],
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"{uid}","allowed":true}}}}"#
        ),
    )
}

fn find_uid(body: &[u8]) -> Option<&str> {
    let key = br#""uid":""#;
    let start = body.windows(key.len()).position(|w| w == key)? + key.len();
    let end = body[start..].iter().position(|&b| b == b'"')? + start;
    std::str::from_utf8(&body[start..end]).ok()
}

async fn start_server(
    certs: &Path,
    app: Router,
) -> anyhow::Result<(SocketAddr, axum_server::Handle<SocketAddr>)> {
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(
        certs.join("tls.crt"),
        certs.join("tls.key"),
    )
    .await?;
    let handle = axum_server::Handle::new();
    // The same socket options as pullgate's server (`TCP_NODELAY`).
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let server = axum_server::bind("127.0.0.1:0".parse::<SocketAddr>()?)
        .acceptor(acceptor)
        .handle(handle.clone());
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    let addr = handle
        .listening()
        .await
        .ok_or_else(|| anyhow::anyhow!("baseline did not start"))?;
    Ok((addr, handle))
}

/// The three servers of one pass, each with its own URL: pullgate (caches warmed, its answer
/// checked), the decoding server and the floor. Started on the runtime that runs this.
struct Servers {
    urls: [String; 3],
    pullgate: pullgate::server::Running,
    baselines: [axum_server::Handle<SocketAddr>; 2],
}

impl Servers {
    async fn start(settings: Settings, dir: PathBuf, body: Vec<u8>) -> anyhow::Result<Self> {
        let running = start_pullgate(settings, &dir).await?;
        let pullgate = format!("https://localhost:{}/validate", running.addr.port());
        // Warm the caches, and check the answer is the real one.
        let ca = running
            .generated_ca
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no CA"))?;
        let first: Value = super::client(&ca)?
            .post(&pullgate)
            .body(body)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(
            first["response"]["allowed"] == true,
            "warm-up admission not allowed: {first}"
        );
        let (decoding_addr, decoding_handle) =
            start_server(&dir, Router::new().route("/validate", post(decoding))).await?;
        let (floor_addr, floor_handle) =
            start_server(&dir, Router::new().route("/validate", post(floor))).await?;
        Ok(Self {
            urls: [
                pullgate,
                format!("https://localhost:{}/validate", decoding_addr.port()),
                format!("https://localhost:{}/validate", floor_addr.port()),
            ],
            pullgate: running,
            baselines: [decoding_handle, floor_handle],
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        for handle in self.baselines {
            handle.graceful_shutdown(Some(Duration::from_secs(2)));
        }
        self.pullgate.shutdown(Duration::from_secs(5)).await
    }
}

/// A runtime whose one worker (and any blocking thread) runs on `cpu` only.
fn pinned_runtime(cpu: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(move || {
            if let Err(error) = rustix::thread::sched_setaffinity(None, &set) {
                eprintln!("cannot pin a server thread to CPU {cpu}: {error}");
            }
        })
        .build()?)
}

/// `ROUNDS` wrk runs per server, alternating; `wrk_cpu` pins wrk to that CPU.
async fn rounds(
    urls: &[String; 3],
    script: &Path,
    connections: usize,
    wrk_cpu: Option<usize>,
) -> anyhow::Result<[Vec<Measured>; 3]> {
    let mut runs: [Vec<Measured>; 3] = Default::default();
    for _ in 0..ROUNDS {
        for (url, runs) in urls.iter().zip(runs.iter_mut()) {
            runs.push(wrk(url, script, connections, wrk_cpu).await?);
        }
    }
    Ok(runs)
}

/// `wrk -t1 -c<connections>` posting the body in `script` to `url` for [`SECONDS`]; on CPU
/// `cpu` only when given (`taskset`).
async fn wrk(
    url: &str,
    script: &Path,
    connections: usize,
    cpu: Option<usize>,
) -> anyhow::Result<Measured> {
    let mut command = match cpu {
        Some(cpu) => {
            let mut taskset = tokio::process::Command::new("taskset");
            taskset.args(["-c", &cpu.to_string(), "wrk"]);
            taskset
        }
        None => tokio::process::Command::new("wrk"),
    };
    let output = command
        .args(["-t1", &format!("-c{connections}"), &format!("-d{SECONDS}s")])
        .args(["--latency", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}");
    parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("cannot read wrk's output: {text}"))
}

/// Requests/sec, the 99th percentile and the errors of wrk's `--latency` report.
fn parse_wrk(text: &str) -> Option<Measured> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| duration(v.trim()))?;
    let count = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map_or(0, |rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum()
            })
    };
    let errors = count("Non-2xx or 3xx responses:") + count("Socket errors:");
    Some(Measured { rps, p99, errors })
}

/// `812.00us`, `1.23ms`, `2.01s`.
fn duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    Some(Duration::from_secs_f64(number.parse::<f64>().ok()? * scale))
}

fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mut kept = runs.get(runs.len() / 2).copied().unwrap_or_default();
    kept.errors = runs.iter().map(|r| r.errors).sum();
    kept
}

/// `perf record` of this process while `wrk` drives `url`, then the top of the profile in a file.
async fn profile(url: &str, script: &Path) -> anyhow::Result<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let data = dir.join("bench-profile.data");
    let mut perf = tokio::process::Command::new("perf")
        .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-o"])
        .arg(&data)
        .args(["-p", &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    wrk(url, script, 50, None).await?;
    let pid = perf
        .id()
        .ok_or_else(|| anyhow::anyhow!("perf exited early"))?;
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    perf.wait().await?;
    let report = std::process::Command::new("perf")
        .args(["report", "--stdio", "--children", "--percent-limit", "2"])
        .args(["--sort", "symbol", "-g", "none", "-i"])
        .arg(&data)
        .output()?;
    let out = dir.join("bench-profile.txt");
    std::fs::write(&out, &report.stdout)?;
    Ok(out.display().to_string())
}

pub async fn p1_warm_path(reg: &TestRegistry) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let images: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| format!("{}/bench/{n}:v1", reg.host()))
        .collect();
    let body = review(containers(&images));
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, &body)?;
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = io.open(\"{}\"):read(\"*a\")\n",
            body_file.display()
        ),
    )?;
    // Throughput: the servers on this runtime's workers, wrk anywhere (the two cores shared).
    let shared = Servers::start(settings_for(reg), dir.path().join("shared"), body.clone()).await?;
    let mut measured = Vec::new();
    for connections in [8, 50] {
        measured.push(rounds(&shared.urls, &script, connections, None).await?);
    }
    if std::env::var_os("PULLGATE_BENCH_PROFILE").is_some() {
        let file = profile(&shared.urls[0], &script).await?;
        println!("profile of pullgate at 50 connections: {file}");
    }
    shared.stop().await?;
    // Latency: the servers on one core, wrk on another, so that the load generator never takes the
    // server's core (with the two cores shared, every server's p99 is the scheduler's time slice).
    let own_core = match two_cpus() {
        Some((servers_cpu, wrk_cpu)) => {
            let pinned = pinned_runtime(servers_cpu)?;
            let servers = pinned
                .spawn(Servers::start(
                    settings_for(reg),
                    dir.path().join("pinned"),
                    body,
                ))
                .await??;
            let runs = rounds(&servers.urls, &script, 8, Some(wrk_cpu)).await;
            let stopped = servers.stop().await;
            pinned.shutdown_background();
            stopped?;
            Some(runs?.map(median))
        }
        None => None,
    };
    let mut rows = Vec::new();
    for (connections, runs) in [8, 50].into_iter().zip(measured) {
        let ratio = |other: &[Measured]| {
            let mut ratios: Vec<f64> = runs[0]
                .iter()
                .zip(other)
                .map(|(ours, other)| ours.rps / other.rps)
                .collect();
            ratios.sort_by(f64::total_cmp);
            ratios.get(ratios.len() / 2).copied().unwrap_or_default()
        };
        let (to_decoding, to_floor) = (ratio(&runs[1]), ratio(&runs[2]));
        let [ours, decoded, bare] = runs.map(median);
        let mut text = format!(
            "pullgate {:.0} req/s p99 {} ({} errors); decoding {:.0} req/s p99 {}; floor {:.0} req/s p99 {}: {to_decoding:.2}× decoding, {to_floor:.2}× floor",
            ours.rps,
            ms(ours.p99),
            ours.errors + decoded.errors + bare.errors,
            decoded.rps,
            ms(decoded.p99),
            bare.rps,
            ms(bare.p99),
        );
        let mut met = to_decoding >= 0.8;
        if connections == 8 {
            match &own_core {
                Some([ours, decoded, bare]) => {
                    text.push_str(&format!(
                        "; servers on one core and wrk on another: p99 pullgate {} ({:.0} req/s, {} errors), decoding {}, floor {}",
                        ms(ours.p99),
                        ours.rps,
                        ours.errors + decoded.errors + bare.errors,
                        ms(decoded.p99),
                        ms(bare.p99),
                    ));
                    met &= ours.p99 <= Duration::from_millis(1);
                }
                None => {
                    text.push_str("; p99 on its own core not measured (fewer than two CPUs)");
                    met = false;
                }
            }
        }
        rows.push(Row {
            name: if connections == 8 {
                "P1 warm path (Deployment, 3 cached images, wrk 8 conns)"
            } else {
                "P1 warm path (Deployment, 3 cached images, wrk 50 conns)"
            },
            measured: text,
            target: if connections == 8 {
                "≥ 0.8× decoding; p99 ≤ 1 ms (wrk on its own core)"
            } else {
                "≥ 0.8× decoding"
            },
            verdict: yes(met),
        });
    }
    Ok(rows)
}

/// Two CPUs this process may run on: one for the servers, one for wrk.
fn two_cpus() -> Option<(usize, usize)> {
    let allowed = rustix::thread::sched_getaffinity(None).ok()?;
    let mut cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu));
    Some((cpus.next()?, cpus.next()?))
}

/// `--hot N`: the work of one warm admission without HTTP or TLS, on one thread, `N` times: decode,
/// decide (three cached images), encode — next to what the decoding server does with the same body
/// (kube's typed decode, `allowed`, encode). Prints nanoseconds per stage; run it under
/// `valgrind --tool=callgrind` to see where the instructions go.
pub fn hot(iterations: usize) -> anyhow::Result<Vec<Row>> {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Instant;

    use pullgate::registry::cache::{CacheMetrics, CachedResolver};
    use pullgate::resolve::{ResolveSettings, Resolver, Updates};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let settings = pullgate::config::Settings::default();
    let cache = CachedResolver::new(
        Arc::new(super::memory::Instant100k),
        pullgate::wiring::cache_settings(&settings.resolution),
        Arc::new(CacheMetrics::register(
            &mut pullgate::telemetry::metrics_registry(),
        )),
    );
    let updates = Updates::new(vec!["linux/amd64".parse()?], (BTreeMap::new(), 0));
    let resolver = Resolver::new(
        Arc::new(cache),
        None,
        None,
        &updates,
        ResolveSettings {
            budget: Duration::from_secs(5),
            per_image: Duration::from_secs(5),
            per_registry: 16,
        },
    );
    let policies =
        pullgate::policy::PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))?;
    let images: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| format!("registry.example.com/bench/{n}:v1"))
        .collect();
    let body = review(containers(&images));
    let (mut decode, mut decide, mut encode, mut baseline) = (0_u128, 0_u128, 0_u128, 0_u128);
    runtime.block_on(async {
        for i in 0..=iterations {
            let started = Instant::now();
            let mut request = pullgate::admission::decode(&body)
                .map_err(|bad| anyhow::anyhow!("{}", bad.error))?;
            let decoded = Instant::now();
            let (response, _) =
                pullgate::admission::review(&mut request, &policies, Some(&resolver)).await;
            let decided = Instant::now();
            let bytes = pullgate::admission::encode(&response)?;
            let encoded = Instant::now();
            let typed: AdmissionReview<DynamicObject> = serde_json::from_slice(&body)?;
            let converted: Result<AdmissionRequest<DynamicObject>, _> = typed.try_into();
            let answer = match converted {
                Ok(req) => AdmissionResponse::from(&req),
                Err(_) => AdmissionResponse::invalid("not an AdmissionReview request"),
            };
            let base = serde_json::to_vec(&answer.into_review())?;
            let done = Instant::now();
            anyhow::ensure!(!bytes.is_empty() && !base.is_empty());
            if i > 0 {
                // The first round fills the caches.
                decode += (decoded - started).as_nanos();
                decide += (decided - decoded).as_nanos();
                encode += (encoded - decided).as_nanos();
                baseline += (done - encoded).as_nanos();
            }
        }
        anyhow::Ok(())
    })?;
    // The same through each server's router (axum, body limits, metrics, the admission's log span),
    // without TLS or sockets.
    let resolver = Arc::new(resolver);
    let ours_app = pullgate::server::router(pullgate::server::AppState {
        policies: Arc::new(pullgate::server::PolicyStore::fixed(policies.clone())),
        resolver: Some(resolver.clone()),
        body: pullgate::server::BodyLimits::new(8 << 20, Duration::from_secs(10)),
        metrics: Arc::new(pullgate::server::Metrics::new(
            pullgate::telemetry::metrics_registry(),
        )),
    });
    let decoding_app = Router::new().route("/validate", post(decoding));
    let through = |app: Router| {
        let body = body.clone();
        runtime.block_on(async move {
            use tower::ServiceExt;
            let mut total = 0_u128;
            for i in 0..=iterations {
                let request = axum::http::Request::post("/validate")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.clone()))?;
                let started = Instant::now();
                let response = app.clone().oneshot(request).await?;
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
                anyhow::ensure!(bytes.len() > 20, "answered: {bytes:?}");
                if i > 0 {
                    total += started.elapsed().as_nanos();
                }
            }
            anyhow::Ok(total)
        })
    };
    let (routed_ours, routed_decoding) = (through(ours_app)?, through(decoding_app)?);
    let per = |total: u128| total as f64 / iterations.max(1) as f64 / 1000.0;
    let ours = per(decode + decide + encode);
    Ok(vec![
        Row {
            name: "P1 hot loop through the routers (one thread, no TLS or sockets)",
            measured: format!(
                "pullgate {:.1} µs, decoding server {:.1} µs: {:.2}×",
                per(routed_ours),
                per(routed_decoding),
                per(routed_decoding) / per(routed_ours),
            ),
            target: "informative",
            verdict: "—".into(),
        },
        Row {
            name: "P1 hot loop (one thread, no HTTP/TLS)",
            measured: format!(
                "pullgate {ours:.1} µs (decode {:.1}, decide {:.1}, encode {:.1}); decoding server {:.1} µs: {:.2}×",
                per(decode),
                per(decide),
                per(encode),
                per(baseline),
                per(baseline) / ours,
            ),
            target: "informative",
            verdict: "—".into(),
        },
    ])
}
