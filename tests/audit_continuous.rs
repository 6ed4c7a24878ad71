//! Continuous re-verification: real `pullgate serve` processes with `audit:` settings, the in-process
//! fake Kubernetes API (workloads, Secrets, Nodes, the audit Lease) and a real `docker-registry`; the
//! answers are read from `/metrics`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::kube::{FakeKube, dockerconfigjson_secret};
use support::process::{Process, free_port, serve_command};
use support::registry::{self, Auth, ImageKind, Platform, RegistryOptions, TestRegistry};

const NS: &str = "demo";
const INTERVAL: u64 = 2;
const LEASE: u64 = 3;

/// A `pullgate serve` process with the continuous audit on.
struct Serve {
    process: Process,
    port: u16,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Serve {
    async fn start(kube: &FakeKube, reg: &TestRegistry, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "registries:\n  \"{}\": {{insecure: true}}\nnetwork: {{allowCIDRs: [127.0.0.0/8]}}\naudit: {{intervalSeconds: {INTERVAL}, leaseDurationSeconds: {LEASE}, leaseNamespace: pullgate-system{extra}}}\n",
                reg.host()
            ),
        )
        .expect("config");
        let port = free_port();
        let certs = dir.path().join("certs");
        let child = serve_command(port, &config, &certs)
            .arg("--kubeconfig")
            .arg(kube.kubeconfig(dir.path()))
            .spawn()
            .expect("pullgate serve starts");
        let process = Process(child);
        let ca = certs.join("ca.pem");
        let pem = wait_for(Duration::from_secs(10), || std::fs::read(&ca).ok()).await;
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA")])
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        Self {
            process,
            port,
            client,
            _dir: dir,
        }
    }

    /// The `/metrics` text, empty while the server is not up.
    async fn metrics(&self) -> String {
        let url = format!("https://127.0.0.1:{}/metrics", self.port);
        match self.client.get(url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The current status of a container, from the one-hot gauges.
    async fn status(&self, kind: &str, name: &str) -> Option<String> {
        let text = self.metrics().await;
        let prefix = format!(
            "pullgate_workload_image_status{{namespace=\"{NS}\",kind=\"{kind}\",name=\"{name}\",container=\"app\",status=\""
        );
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (status, value) = rest.split_once("\"} ")?;
            (value.trim() == "1").then(|| status.to_owned())
        })
    }

    async fn sample(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// Poll `probe` every 100 ms until it gives a value; panics after `limit`.
async fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the three workloads show `expected`; how long it took.
async fn until_statuses(
    serve: &Serve,
    expected: [(&str, &str, &str); 3],
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for (kind, name, status) in expected {
            all &= serve.status(kind, name).await.as_deref() == Some(status);
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "statuses not {expected:?} within {limit:?}:\n{}",
            serve.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pod_spec(image: &str, secret: &str) -> Value {
    json!({"imagePullSecrets": [{"name": secret}], "containers": [{"name": "app", "image": image}]})
}

fn both() -> ImageKind {
    ImageKind::OciIndex(vec![Platform::linux("amd64"), Platform::linux("arm64")])
}

async fn delete_manifest(reg: &TestRegistry, repo: &str, digest: &str) {
    let (user, pass) = reg.auth().credentials().expect("credentials");
    let url = format!("{}/v2/{repo}/manifests/{digest}", reg.url());
    let response = reqwest::Client::new()
        .delete(url)
        .basic_auth(user, Some(pass))
        .send()
        .await;
    assert_eq!(response.expect("DELETE").status().as_u16(), 202);
}

#[tokio::test]
async fn metrics_flip_within_an_interval_and_back_when_fixed() {
    registry::install_crypto();
    let reg = registry::start(RegistryOptions {
        auth: Auth::basic("alice", "s3cret"),
        ..Default::default()
    })
    .await
    .expect("registry");
    let web = registry::push_image(&reg, "demo/web", "v1", both())
        .await
        .expect("push");
    registry::push_image(&reg, "demo/batch", "v1", both())
        .await
        .expect("push");
    let arm = ImageKind::single(Platform::linux("arm64"));
    registry::push_image(&reg, "demo/armonly", "v1", arm)
        .await
        .expect("push");
    let host = reg.host().to_owned();

    let kube = FakeKube::start().await.expect("fake API");
    let secret =
        |name: &str, pass: &str| dockerconfigjson_secret(name, &[(host.as_str(), "alice", pass)]);
    kube.insert_secret(NS, secret("regcred", "s3cret"));
    kube.insert_secret(NS, secret("batchcred", "s3cret"));
    kube.insert_node(
        "arm-1",
        &[
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "arm64"),
        ],
    );
    kube.insert_object(
        NS,
        "deployments",
        json!({"metadata": {"name": "web"},
        "spec": {"template": {"spec": pod_spec(&format!("{host}/demo/web:v1"), "regcred")}}}),
    );
    kube.insert_object(NS, "cronjobs", json!({"metadata": {"name": "nightly"}, "spec": {"schedule": "0 3 * * *",
        "jobTemplate": {"spec": {"template": {"spec": pod_spec(&format!("{host}/demo/batch:v1"), "batchcred")}}}}}));
    kube.insert_object(
        NS,
        "pods",
        json!({"metadata": {"name": "arm"},
        "spec": pod_spec(&format!("{host}/demo/armonly:v1"), "regcred")}),
    );

    let serve = Serve::start(&kube, &reg, "").await;
    let window = Duration::from_secs(3 * INTERVAL + 10);
    let ok = [
        ("Deployment", "web", "ok"),
        ("CronJob", "nightly", "ok"),
        ("Pod", "arm", "ok"),
    ];
    until_statuses(&serve, ok, window).await;
    assert_eq!(serve.sample("pullgate_audit_leader").await, 1.0);

    delete_manifest(&reg, "demo/web", &web).await;
    kube.insert_secret(NS, secret("batchcred", "wrong"));
    kube.insert_node(
        "amd-1",
        &[
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ],
    );
    let broken = [
        ("Deployment", "web", "absent"),
        ("CronJob", "nightly", "unauthorized"),
        ("Pod", "arm", "platform_mismatch"),
    ];
    // The next round starts within an interval and spreads its lookups over 80 % of the next one.
    let took = until_statuses(&serve, broken, Duration::from_secs(2 * INTERVAL + 3)).await;
    eprintln!("broken images seen after {took:?}");

    registry::push_image(&reg, "demo/web", "v1", both())
        .await
        .expect("push again");
    kube.insert_secret(NS, secret("batchcred", "s3cret"));
    kube.remove_object("", "nodes", "amd-1");
    until_statuses(&serve, ok, Duration::from_secs(2 * INTERVAL + 3)).await;

    // A deleted workload's series go away.
    kube.remove_object(NS, "pods", "arm");
    let started = Instant::now();
    while serve.metrics().await.contains("name=\"arm\"") {
        assert!(
            started.elapsed() < Duration::from_secs(2 * INTERVAL + 3),
            "series of a deleted Pod remain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = serve.metrics().await;
    assert!(text.contains("pullgate_audit_checks_total "), "{text}");
    assert!(
        serve
            .sample("pullgate_audit_last_run_timestamp_seconds")
            .await
            > 1.7e9,
        "{text}"
    );
}

#[tokio::test]
async fn one_of_two_replicas_scans_and_the_other_takes_over() {
    registry::install_crypto();
    let reg = registry::start(RegistryOptions::default())
        .await
        .expect("registry");
    registry::push_image(&reg, "team/app", "v1", both())
        .await
        .expect("push");
    let kube = FakeKube::start().await.expect("fake API");
    for n in 0..5 {
        kube.insert_object(NS, "pods", json!({"metadata": {"name": format!("p{n}")},
            "spec": {"containers": [{"name": "app", "image": format!("{}/team/app:v1", reg.host())}]}}));
    }
    let first = Serve::start(&kube, &reg, "").await;
    // The first holds the Lease before the second starts.
    let holder = |kube: &FakeKube| {
        kube.lease("pullgate-system", "pullgate-audit")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    let leader = wait_for(Duration::from_secs(10), || holder(&kube)).await;
    let before = reg.requests().len();
    let second = Serve::start(&kube, &reg, "").await;
    tokio::time::sleep(Duration::from_secs(3 * INTERVAL)).await;
    // One scanner asks for the one image once a round (an index, the platform manifest an amd64 node
    // pulls for image-size, and its config for the start rules: three requests): at most 4 rounds
    // begin in 3 intervals; two scanners would double it.
    let sent = reg.requests().len() - before;
    assert!(
        (1..=12).contains(&sent),
        "{sent} registry requests in 3 intervals: one scanner only"
    );

    assert_eq!(first.sample("pullgate_audit_leader").await, 1.0);
    assert_eq!(second.sample("pullgate_audit_leader").await, 0.0);
    assert!(first.sample("pullgate_audit_checks_total").await >= 5.0);
    assert_eq!(
        second.sample("pullgate_audit_checks_total").await,
        0.0,
        "the follower never scans"
    );
    assert!(
        !second
            .metrics()
            .await
            .contains("pullgate_workload_image_status{"),
        "no duplicate series"
    );
    assert_eq!(holder(&kube), Some(leader.clone()));

    // Killed without a goodbye: the Lease is taken over once its holder stops renewing it.
    let Serve { mut process, .. } = first;
    process.0.kill().expect("kill");
    let stopped = Instant::now();
    let next = wait_for(Duration::from_secs(3 * LEASE), || {
        holder(&kube).filter(|h| *h != leader)
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("Lease taken over {took:?} after the leader was killed (Lease duration {LEASE} s)");
    // Unchanged for a Lease duration on the follower's clock, seen at its tries every third of it.
    let renew = Duration::from_secs(LEASE) / 3;
    assert!(
        took <= Duration::from_secs(LEASE) + 2 * renew + Duration::from_secs(1),
        "{took:?}"
    );
    assert_ne!(next, leader);
    let started = Instant::now();
    while second.sample("pullgate_audit_checks_total").await < 5.0 {
        assert!(
            started.elapsed() < Duration::from_secs(2 * INTERVAL + 3),
            "the new leader scans"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(second.sample("pullgate_audit_leader").await, 1.0);
}

#[tokio::test]
async fn the_per_interval_budget_holds_and_every_image_is_reached() {
    const BUDGET: usize = 50;
    const IMAGES: usize = 200;
    registry::install_crypto();
    let reg = registry::start(RegistryOptions::default())
        .await
        .expect("registry");
    registry::push_image(&reg, "team/app", "v0", both())
        .await
        .expect("push");
    registry::retag(&reg, "team/app", "v0", (1..IMAGES).map(|n| format!("v{n}"))).await;
    let kube = FakeKube::start().await.expect("fake API");
    // 1,000 workloads naming 200 distinct images.
    for n in 0..1000 {
        let image = format!("{}/team/app:v{}", reg.host(), n % IMAGES);
        kube.insert_object(
            NS,
            "pods",
            json!({"metadata": {"name": format!("p{n:04}")},
            "spec": {"containers": [{"name": "app", "image": image}]}}),
        );
    }
    let before = reg.requests().len();
    let serve = Serve::start(
        &kube,
        &reg,
        &format!(", maxRequestsPerRegistryPerInterval: {BUDGET}"),
    )
    .await;
    let started = Instant::now();
    let rounds = IMAGES.div_ceil(BUDGET) as u64;
    let limit = Duration::from_secs(INTERVAL * (rounds + 1) + 3);
    loop {
        let text = serve.metrics().await;
        let ok = text
            .lines()
            .find_map(|l| l.strip_prefix("pullgate_audit_images{status=\"ok\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let elapsed = started.elapsed();
        let sent = reg.requests().len() - before;
        // Rounds begun so far (the first at start-up), each allowed BUDGET requests.
        let begun = elapsed.as_secs() / INTERVAL + 1;
        assert!(
            sent as u64 <= begun * BUDGET as u64,
            "{sent} requests in {elapsed:?}"
        );
        if ok == 1000 {
            eprintln!("all 1000 workloads ok after {elapsed:?} with {sent} registry requests");
            assert!(sent >= IMAGES, "each distinct image asked");
            break;
        }
        assert!(
            elapsed < limit,
            "not every image reached within {limit:?}: {ok} ok\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_clean_stop_hands_the_lease_over_at_the_next_try() {
    registry::install_crypto();
    let reg = registry::start(RegistryOptions::default())
        .await
        .expect("registry");
    let kube = FakeKube::start().await.expect("fake API");
    let holder = |kube: &FakeKube| {
        kube.lease("pullgate-system", "pullgate-audit")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    let first = Serve::start(&kube, &reg, "").await;
    let leader = wait_for(Duration::from_secs(10), || holder(&kube)).await;
    let _second = Serve::start(&kube, &reg, "").await;
    // Let the second see the held Lease before the first goes.
    tokio::time::sleep(Duration::from_secs(LEASE)).await;
    let pid = first.process.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let stopped = Instant::now();
    wait_for(Duration::from_secs(3 * LEASE), || {
        holder(&kube).filter(|h| *h != leader)
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("Lease handed over {took:?} after SIGTERM (Lease duration {LEASE} s)");
    // Released on the way out, so taken at the next try (every third of the duration), not after a
    // whole duration of silence.
    assert!(took < Duration::from_secs(LEASE), "{took:?}");
}
