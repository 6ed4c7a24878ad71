//! Memory stays bounded against hostile registries: the real `pullgate serve` process (the binary, with
//! its own config file) answers 50 concurrent admissions — each naming another image of a scripted
//! registry that sends an endless or huge manifest, a huge token, or a 100,000-entry index — and its peak
//! resident set (`VmHWM` in `/proc/PID/status`) stays under 256 MiB. Every admission is answered, with a
//! warning, within the budget.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::hostile::{self, Hit, answer};
use support::process::{Process, free_port, serve_command};
use support::registry;
use support::webhook::{bounded, one_container, pod_review};

/// The ceiling the issue sets for 50 concurrent hostile admissions.
const PEAK_LIMIT_MIB: f64 = 256.0;

struct Serve {
    process: Process,
    url: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Peak resident set so far, in MiB.
    fn peak_mib(&self) -> f64 {
        self.process.status_kib("VmHWM:") as f64 / 1024.0
    }
}

/// `pullgate serve` reaching `server` as the nodes would.
async fn serve(server: &hostile::Server) -> Serve {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = match &server.ca_path {
        None => "{insecure: true}".to_owned(),
        Some(ca) => format!("{{ca: {:?}}}", ca.display().to_string()),
    };
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  \"{}\": {registry}\nnetwork:\n  allowCIDRs: [127.0.0.0/8]\n",
            server.host
        ),
    )
    .expect("config");
    let port = free_port();
    let certs = dir.path().join("certs");
    let child = serve_command(port, &config, &certs)
        .args(["--kube-api", "off"])
        .spawn()
        .expect("pullgate serve starts");
    let url = format!("https://127.0.0.1:{port}");
    let mut serve = Serve {
        process: Process(child),
        url,
        client: reqwest::Client::new(),
        _dir: dir,
    };
    for _ in 0..200 {
        if let Ok(pem) = std::fs::read(certs.join("ca.pem")) {
            let ca = reqwest::Certificate::from_pem(&pem).expect("CA");
            let client = reqwest::Client::builder()
                .tls_certs_only([ca])
                .build()
                .expect("client");
            if client
                .get(format!("{}/healthz", serve.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                serve.client = client;
                return serve;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pullgate serve did not come up");
}

/// 50 concurrent admissions of `image(i)`; every answer is allowed, with a warning that says `text`,
/// within the budget; the process's peak RSS stays under the limit.
async fn fifty_concurrent(server: &hostile::Server, text: &str) {
    let serve = serve(server).await;
    let started = Instant::now();
    let admissions = (0..50).map(|i| {
        let body = serde_json::to_vec(&pod_review(one_container(&format!(
            "{}/demo/app{i}:v1",
            server.host
        ))))
        .expect("JSON");
        let request = serve
            .client
            .post(format!("{}/validate", serve.url))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let answer: Value = request
                .send()
                .await
                .expect("answered")
                .json()
                .await
                .expect("JSON");
            answer["response"].clone()
        }
    });
    let responses = futures::future::join_all(admissions).await;
    let took = started.elapsed();
    for response in &responses {
        assert_eq!(response["allowed"], true, "{response}");
        let warnings = response["warnings"].to_string();
        assert!(
            warnings.contains("[registry-reachable]") && warnings.contains(text),
            "{warnings}"
        );
    }
    assert!(
        took < Duration::from_secs(16),
        "50 admissions took {took:?}"
    );
    let peak = serve.peak_mib();
    assert!(
        peak < PEAK_LIMIT_MIB,
        "peak RSS {peak:.1} MiB for 50 concurrent admissions"
    );
    eprintln!("peak RSS {peak:.1} MiB, 50 admissions in {took:?}: {text}");
}

fn manifests_only(
    respond: impl Fn(&Hit) -> axum::response::Response + Send + Sync + 'static,
) -> hostile::Behaviour {
    answer(move |hit, _| {
        if hit.path.contains("/manifests/") {
            respond(hit)
        } else {
            hostile::status(404, "{}")
        }
    })
}

#[tokio::test]
async fn an_endless_manifest_without_length_over_http() {
    registry::install_crypto();
    bounded(async {
        let server = hostile::start(
            "127.0.0.1",
            false,
            manifests_only(|_| hostile::endless(2 << 30, false)),
        )
        .await;
        fifty_concurrent(&server, "manifest larger than 4 MiB").await;
    })
    .await;
}

#[tokio::test]
async fn an_endless_manifest_with_length_over_tls() {
    registry::install_crypto();
    bounded(async {
        let server = hostile::start(
            "127.0.0.1",
            true,
            manifests_only(|_| hostile::endless(2 << 30, true)),
        )
        .await;
        fifty_concurrent(&server, "manifest larger than 4 MiB").await;
    })
    .await;
}

#[tokio::test]
async fn a_ten_mebibyte_manifest() {
    registry::install_crypto();
    bounded(async {
        let server = hostile::start(
            "127.0.0.1",
            false,
            manifests_only(|_| hostile::endless(10 << 20, false)),
        )
        .await;
        fifty_concurrent(&server, "manifest larger than 4 MiB").await;
    })
    .await;
}

#[tokio::test]
async fn a_huge_token() {
    registry::install_crypto();
    bounded(async {
        let server = hostile::start(
            "127.0.0.1",
            false,
            answer(|hit, base| {
                if hit.path.starts_with("/token") {
                    hostile::endless(16 << 20, false)
                } else {
                    hostile::bearer_challenge(&format!("{base}/token"))
                }
            }),
        )
        .await;
        fifty_concurrent(&server, "answered more than 64 KiB").await;
    })
    .await;
}

#[tokio::test]
async fn many_different_oversized_indexes() {
    registry::install_crypto();
    bounded(async {
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = hostile::start(
            "127.0.0.1",
            false,
            manifests_only(move |_| {
                let seed = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // ~8 MB each, twice the cap: enough to be cut; the scripted server builds every body,
                // and 100k-entry ones (~20 MB × 50) starved the admissions of CPU in a loaded test run.
                hostile::manifest(hostile::index(40_000, seed))
            }),
        )
        .await;
        fifty_concurrent(&server, "manifest larger than 4 MiB").await;
    })
    .await;
}
