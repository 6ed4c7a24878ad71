//! P7: `pullgate audit` (the release binary, its own process) over 10,000 Pods naming 1,000 distinct
//! images: the in-process fake Kubernetes API lists them in pages of 500, a local docker-registry holds
//! the images (each an index: one request per cold lookup). Wall time and the process's peak RSS
//! (`VmHWM`, read until it exits).

use super::*;
use support::kube::FakeKube;

const PODS: usize = 10_000;
const IMAGES: usize = 1_000;

pub async fn p7_audit() -> anyhow::Result<Vec<Row>> {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/pullgate");
    anyhow::ensure!(
        binary.exists(),
        "build the release binary first (./bench.sh does)"
    );
    let reg = registry::start(RegistryOptions::default()).await?;
    let both = ImageKind::OciIndex(vec![
        support::registry::Platform::linux("amd64"),
        support::registry::Platform::linux("arm64"),
    ]);
    registry::push_image(&reg, "audit/app", "v0", both).await?;
    registry::retag(
        &reg,
        "audit/app",
        "v0",
        (1..IMAGES).map(|n| format!("v{n}")),
    )
    .await;
    let kube = FakeKube::start().await?;
    for n in 0..PODS {
        let image = format!("{}/audit/app:v{}", reg.host(), n % IMAGES);
        kube.insert_object(
            &format!("ns{}", n % 50),
            "pods",
            json!({"metadata": {"name": format!("p{n:05}")},
                   "spec": {"containers": [{"name": "app", "image": image}]}}),
        );
    }
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("registries:\n  \"{}\": {{insecure: true}}\n", reg.host()),
    )?;
    let before = reg.requests().len();
    let started = Instant::now();
    let mut child = std::process::Command::new(&binary)
        .args([
            "audit",
            "-A",
            "-o",
            "json",
            "--max-requests-per-registry",
            "5000",
        ])
        .arg("--kubeconfig")
        .arg(kube.kubeconfig(dir.path()))
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let reader = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let mut peak_kib = 0_u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "audit still running after 5 min"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = started.elapsed();
    let report: Value = serde_json::from_str(&reader.await??)?;
    let requests = reg.requests().len() - before;
    let workloads = report["summary"]["workloads"].as_u64().unwrap_or(0);
    Ok(vec![
        Row {
            name: "P7 `pullgate audit`, 10,000 Pods / 1,000 distinct images",
            measured: format!(
                "{:.2} s wall, exit {}, {workloads} workloads, {requests} registry requests",
                wall.as_secs_f64(),
                status.code().unwrap_or(-1)
            ),
            // Every tag names the same index: image-size reads its amd64 manifest once, by digest.
            target: "one request per distinct image, + 1 platform manifest (image-size)",
            verdict: if requests == IMAGES + 1 && workloads == PODS as u64 {
                "yes".into()
            } else {
                "NO".into()
            },
        },
        Row {
            name: "P7 peak RSS of the audit",
            measured: format!("{:.1} MiB", peak_kib as f64 / 1024.0),
            target: "printed",
            verdict: "—".into(),
        },
    ])
}
