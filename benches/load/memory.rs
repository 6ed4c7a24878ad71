//! P4 memory (RSS of `pullgate serve` idle, cache growth for 100k distinct images) and P5
//! (`pullgate check --offline` over 10,000 manifests).

use super::*;

/// Resident set size of a process, in MiB.
fn rss_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// An instant in-memory resolver, to fill the caches without a registry.
pub struct Instant100k;

impl ImageResolver for Instant100k {
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        _: Option<&'a Credential>,
        _: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ManifestDigest, ResolveError>> {
        let digest = format!("sha256:{:064x}", fxhash(&image.to_string()));
        Box::pin(async move { Ok(ManifestDigest(digest)) })
    }
    fn manifest<'a>(
        &'a self,
        image: &'a ImageRef,
        _: Option<&'a Credential>,
        _: bool,
        _: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Found, ResolveError>> {
        let digest = format!("sha256:{:064x}", fxhash(&image.to_string()));
        let config_digest = format!("sha256:{:064x}", fxhash(&format!("config {image}")));
        Box::pin(async move {
            Ok(Found {
                digest: ManifestDigest(digest),
                platforms: Some(Ok(vec![
                    "linux/amd64"
                        .parse()
                        .map_err(|_| ResolveError::InvalidResponse(String::new()))?,
                ])),
                contents: Some(pullgate::registry::Contents::Image {
                    size: Some(50 << 20),
                    config: Some(config_digest.clone()),
                }),
                config: Some(std::sync::Arc::new(instant_config())),
            })
        })
    }

    fn config<'a>(
        &'a self,
        _: &'a ImageRef,
        _: Option<&'a Credential>,
        _: &'a str,
        _: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<pullgate::facts::ImageConfig, ResolveError>> {
        Box::pin(async { Ok(instant_config()) })
    }

    fn head_first(&self, _: &str) -> bool {
        false
    }
}

/// Every image's config: linux/amd64, a command, no user (what the P1 pods' images are like).
fn instant_config() -> pullgate::facts::ImageConfig {
    pullgate::facts::ImageConfig {
        platform: "linux/amd64".parse().ok(),
        cmd: vec!["/app".to_owned()],
        ..Default::default()
    }
}

fn fxhash(text: &str) -> u128 {
    text.bytes().fold(0xcbf29ce484222325u128, |h, b| {
        (h ^ u128::from(b)).wrapping_mul(0x100000001b3)
    })
}

pub async fn p4_memory() -> anyhow::Result<Vec<Row>> {
    // The real server, idle.
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/pullgate");
    let mut rows = Vec::new();
    let mut idle = None;
    if binary.exists() {
        let certs = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = std::process::Command::new(&binary)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--kube-api",
                "off",
                "--generated-cert-dir",
            ])
            .arg(certs.path())
            .arg("--policies")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = rss_mib(&child.id().to_string()).unwrap_or(f64::NAN);
        let _ = child.kill();
        let _ = child.wait();
        idle = Some(rss);
        rows.push(Row {
            name: "P4 RSS idle (`pullgate serve`)",
            measured: format!("{rss:.1} MiB"),
            target: "≤ 40 MiB",
            verdict: yes(rss <= 40.0),
        });
    }
    // The caches with 100k distinct entries (tag→digest and digest→platforms each).
    let before = rss_mib("self").unwrap_or(f64::NAN);
    let settings = Settings::default();
    let cache = CachedResolver::new(
        Arc::new(Instant100k),
        pullgate::wiring::cache_settings(&settings.resolution),
        Arc::new(CacheMetrics::register(
            &mut pullgate::telemetry::metrics_registry(),
        )),
    );
    let requests = RequestCounter::default();
    for i in 0..100_000 {
        let image: ImageRef = format!("registry.example.com/team{}/app{i}:v{}", i % 100, i % 7)
            .parse()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        cache
            .lookup(&image, None, true, &requests)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let (digests, platforms) = cache.entry_counts().await;
    let after = rss_mib("self").unwrap_or(f64::NAN);
    let growth = after - before;
    rows.push(Row {
        name: "P4 cache growth, 100k distinct images",
        measured: format!(
            "+{growth:.1} MiB for {digests} digest + {platforms} platform entries (idle + growth {:.1} MiB)",
            idle.unwrap_or(0.0) + growth
        ),
        target: "idle + growth ≤ 120 MiB",
        verdict: yes(idle.unwrap_or(0.0) + growth <= 120.0),
    });
    Ok(rows)
}

pub fn p5_check_offline() -> anyhow::Result<Option<Row>> {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/pullgate");
    let help = std::process::Command::new(&binary)
        .arg("check")
        .arg("--help")
        .output();
    if !matches!(&help, Ok(out) if out.status.success()) {
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    for i in 0..10_000 {
        std::fs::write(
            dir.path().join(format!("m{i:05}.yaml")),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app{i}, namespace: team{}}}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: registry.example.com/team/app{i}:v{}\n",
                i % 50,
                i % 3
            ),
        )?;
    }
    let started = Instant::now();
    let out = std::process::Command::new(&binary)
        .args(["check", "--offline", "--output", "json", "-R", "-f"])
        .arg(dir.path())
        .output()?;
    let took = started.elapsed();
    Ok(Some(Row {
        name: "P5 `pullgate check --offline`, 10,000 manifests",
        measured: format!(
            "{:.2} s (exit {})",
            took.as_secs_f64(),
            out.status.code().unwrap_or(-1)
        ),
        target: "finishes",
        verdict: yes(out.status.code().is_some_and(|c| c <= 1)),
    }))
}
