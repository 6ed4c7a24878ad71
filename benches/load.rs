//! `cargo bench --bench load`: pullgate measured side by side with a baseline, on 127.0.0.1 only,
//! bounded in time, printing one table. See README "Performance".
//!
//! - P1 warm path: a Deployment with 3 cached images over HTTPS, driven by `wrk` at 8 and 50 connections;
//!   throughput and p99 of pullgate next to a server that only decodes the AdmissionReview with kube's
//!   types and one that decodes nothing (the floor), alternating in the same run (see `load/warm.rs`).
//! - P2 cold path: a pod with 10 distinct uncached images vs a pod with 1, behind a proxy adding 100 ms to
//!   every registry request.
//! - P3 economy: 500 concurrent admissions of one uncached image → registry manifest requests; a cached
//!   re-run → 0.
//! - P4 memory: RSS of the real `pullgate serve` idle; growth of the caches for 100k distinct entries.
//! - P5: `pullgate check --offline` over 10,000 manifests (when the binary has `check`).
//! - P6 round trips of a cold lookup, counted in the registry's access log, next to the protocol's
//!   minimum: an index, a single-platform image, the same behind Basic auth, a second image behind tokens.
//! - P7: `pullgate audit` over 10,000 Pods / 1,000 distinct images (see `load/audit.rs`).
//! - `--audit`: only P7. `--memory`: only P4. `--warm`: only P1. `--hot N`: P1's work without HTTP, N times on one thread. `--soak MINUTES`: only the soak (see `load/soak.rs`).
#![allow(clippy::print_stdout)]

#[path = "load/audit.rs"]
mod audit;
#[path = "load/memory.rs"]
mod memory;
#[path = "load/round_trips.rs"]
mod round_trips;
#[path = "load/soak.rs"]
mod soak;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "load/warm.rs"]
mod warm;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use pullgate::config::LogFormat;
use pullgate::config::RegistrySettings;
use pullgate::config::{KubeApi, ServeConfig, Settings, TlsSource};
use pullgate::credentials::Credential;
use pullgate::facts::{ManifestDigest, ResolveError};
use pullgate::image::ImageRef;

use pullgate::registry::RequestCounter;
use pullgate::registry::cache::{CacheMetrics, CachedResolver};
use pullgate::registry::{Found, ImageResolver};
use serde_json::{Value, json};
use support::registry::{self, ImageKind, RegistryOptions, TestRegistry};

const CONNECTIONS: usize = 50;

struct Row {
    name: &'static str,
    measured: String,
    target: &'static str,
    verdict: String,
}

fn main() -> anyhow::Result<()> {
    registry::install_crypto();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let args: Vec<String> = std::env::args().collect();
    let soak_minutes = args
        .iter()
        .position(|a| a == "--soak")
        .map(|i| args.get(i + 1).and_then(|m| m.parse().ok()).unwrap_or(10));
    let rows = match soak_minutes {
        Some(minutes) => runtime.block_on(soak::soak(minutes))?,
        None if args.iter().any(|a| a == "--audit") => runtime.block_on(audit::p7_audit())?,
        None if args.iter().any(|a| a == "--warm") => runtime.block_on(warm_only())?,
        None if args.iter().any(|a| a == "--memory") => runtime.block_on(memory::p4_memory())?,
        None if args.iter().any(|a| a == "--hot") => {
            let n = args.iter().position(|a| a == "--hot");
            let n = n.and_then(|i| args.get(i + 1)?.parse().ok());
            warm::hot(n.unwrap_or(20_000))?
        }
        None => runtime.block_on(run())?,
    };
    println!();
    println!(
        "pullgate benchmark — {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!("| scenario | measured | target | met |");
    println!("|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} |",
            row.name, row.measured, row.target, row.verdict
        );
    }
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

async fn run() -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let reg = registry::start(RegistryOptions::default()).await?;
    for name in ["a", "b", "c"] {
        registry::push_image(&reg, &format!("bench/{name}"), "v1", amd64()).await?;
    }
    rows.extend(warm::p1_warm_path(&reg).await?);
    rows.push(p2_cold_path(&reg).await?);
    rows.extend(p3_economy(&reg).await?);
    rows.extend(round_trips::p6_round_trips().await?);
    rows.extend(memory::p4_memory().await?);
    if let Some(row) = memory::p5_check_offline()? {
        rows.push(row);
    }
    rows.extend(audit::p7_audit().await?);
    Ok(rows)
}

/// P1 alone (`--warm`).
async fn warm_only() -> anyhow::Result<Vec<Row>> {
    let reg = registry::start(RegistryOptions::default()).await?;
    for name in ["a", "b", "c"] {
        registry::push_image(&reg, &format!("bench/{name}"), "v1", amd64()).await?;
    }
    warm::p1_warm_path(&reg).await
}

fn amd64() -> ImageKind {
    ImageKind::single(support::registry::Platform::linux("amd64"))
}

fn settings_for(reg: &TestRegistry) -> Settings {
    let mut settings = Settings::default();
    // The benchmark's registries are on 127.0.0.1, which `serve` refuses unless allowed.
    settings
        .network
        .allow_cidrs
        .push("127.0.0.0/8".parse().expect("range"));
    settings.registries.insert(
        reg.host().parse().expect("registry host"),
        RegistrySettings {
            insecure: true,
            ..RegistrySettings::default()
        },
    );
    settings
}

fn review(spec: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "bench", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web", "namespace": "bench", "operation": "CREATE", "userInfo": {"username": "bench"},
            "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "bench"},
                "spec": {"template": {"spec": spec}}}}
    }))
    .unwrap_or_default()
}

fn containers(images: &[String]) -> Value {
    let list: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image, "imagePullPolicy": "IfNotPresent"}))
        .collect();
    json!({"containers": list})
}

/// Start `pullgate serve` in-process with the shipped policies and generated certificates.
async fn start_pullgate(
    settings: Settings,
    certs: &Path,
) -> anyhow::Result<pullgate::server::Running> {
    pullgate::server::start(ServeConfig {
        listen: "127.0.0.1:0".parse()?,
        kube_api: KubeApi::Off,
        tls: TlsSource::Generate {
            dir: certs.to_owned(),
        },
        policies: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")),
        settings,
        log_format: LogFormat::Text,
    })
    .await
}

fn client(ca: &Path) -> anyhow::Result<reqwest::Client> {
    let pem = std::fs::read(ca)?;
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem)?])
        .http1_only()
        .pool_max_idle_per_host(CONNECTIONS)
        .timeout(Duration::from_secs(20))
        .build()?)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn yes(met: bool) -> String {
    if met { "yes".into() } else { "NO".into() }
}

async fn p2_cold_path(reg: &TestRegistry) -> anyhow::Result<Row> {
    for i in 0..20 {
        registry::push_image(reg, &format!("cold/img{i}"), "v1", amd64()).await?;
    }
    let proxy = support::scripted::proxy(reg.host().to_owned(), Duration::from_millis(100)).await;
    let mut settings = Settings::default();
    // The benchmark's registries are on 127.0.0.1, which `serve` refuses unless allowed.
    settings
        .network
        .allow_cidrs
        .push("127.0.0.0/8".parse().expect("range"));
    settings.registries.insert(
        proxy.host.parse().expect("registry host"),
        RegistrySettings {
            insecure: true,
            ..Default::default()
        },
    );
    let certs = tempfile::tempdir()?;
    let running = start_pullgate(settings, certs.path()).await?;
    let client = client(
        &running
            .generated_ca
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no CA"))?,
    )?;
    let url = format!("https://localhost:{}/validate", running.addr.port());
    let time = |images: Vec<String>| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let started = Instant::now();
            let answer: Value = client
                .post(&url)
                .body(review(containers(&images)))
                .send()
                .await?
                .json()
                .await?;
            anyhow::ensure!(
                answer["response"]["allowed"] == true,
                "cold admission not allowed: {answer}"
            );
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    };
    let one = time(vec![format!("{}/cold/img0:v1", proxy.host)]).await?;
    let ten = time(
        (10..20)
            .map(|i| format!("{}/cold/img{i}:v1", proxy.host))
            .collect(),
    )
    .await?;
    running.shutdown(Duration::from_secs(5)).await?;
    let ratio = ten.as_secs_f64() / one.as_secs_f64();
    Ok(Row {
        name: "P2 cold path (100 ms per registry request)",
        measured: format!(
            "1 image {}, 10 images {}: {ratio:.2}× (before, with oci-client at 506cf5e: 1 image 638.97 ms, 10 images 656.40 ms)",
            ms(one),
            ms(ten)
        ),
        target: "≤ 1.3×",
        verdict: yes(ratio <= 1.3),
    })
}

async fn p3_economy(reg: &TestRegistry) -> anyhow::Result<Vec<Row>> {
    registry::push_image(reg, "economy/app", "v1", amd64()).await?;
    let certs = tempfile::tempdir()?;
    let running = start_pullgate(settings_for(reg), certs.path()).await?;
    let client = client(
        &running
            .generated_ca
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no CA"))?,
    )?;
    let url = format!("https://localhost:{}/validate", running.addr.port());
    let body = review(containers(&[format!("{}/economy/app:v1", reg.host())]));
    let manifests = || {
        reg.count_requests("HEAD", "/economy/app/manifests/")
            + reg.count_requests("GET", "/economy/app/manifests/")
    };
    let before = manifests();
    let admissions = (0..500).map(|_| client.post(&url).body(body.clone()).send());
    let answered = futures::future::join_all(admissions)
        .await
        .iter()
        .filter(|r| r.is_ok())
        .count();
    let cold = manifests() - before;
    let before = manifests();
    let _ = client.post(&url).body(body.clone()).send().await?;
    let warm = manifests() - before;
    running.shutdown(Duration::from_secs(5)).await?;
    Ok(vec![
        Row {
            name: "P3 500 concurrent admissions, one uncached image",
            measured: format!(
                "{cold} manifest request (1 GET by tag: digest and manifest), {answered}/500 answered"
            ),
            target: "1 request per lookup",
            verdict: yes(cold <= 1 && answered == 500),
        },
        Row {
            name: "P3 cached re-run",
            measured: format!("{warm} registry requests"),
            target: "0",
            verdict: yes(warm == 0),
        },
    ])
}
