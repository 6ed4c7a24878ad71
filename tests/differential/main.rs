//! The node as the oracle: every case is asked of real containerd (`ctr images pull`, with the hosts dir,
//! the credentials kubelet would hand it — one pull per credential, in kubelet's order, anonymous only when
//! none matches — and the node's platform) and of pullgate (an admission through the router, with the same
//! certs.d, secrets, credential provider and node platform). Ground truth: the pull succeeds and the pulled
//! config's platform runs on the node. pullgate agrees when it reports no registry finding exactly where
//! the node would pull. Real docker-registry instances on 127.0.0.1: plain, TLS with a test CA, htpasswd,
//! htpasswd over TLS, token auth, and an htpasswd mirror.

#[path = "../support/mod.rs"]
mod support;

mod cases;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use pullgate::config::Settings;
use serde_json::{Value, json};
use support::containerd::{Containerd, PullOptions};
use support::kube::FakeKube;
use support::provider::Plugin;
use support::registry::{self, Auth, ImageKind, Platform, RegistryOptions, TestRegistry};
use support::webhook::{admit, allow_loopback, app, bounded, pod_review, shipped_policies};

/// The rules whose findings mean "the node would not pull this (or pullgate cannot tell)".
const REGISTRY_RULES: [&str; 5] = [
    "image-exists",
    "platform-supported",
    "pull-secret-valid",
    "registry-reachable",
    "registry-tls",
];

/// The credentials kubelet hands containerd for a case.
pub enum Kubelet {
    /// One pull per credential, in this order; an anonymous pull when empty.
    Creds(Vec<(String, String)>),
    /// kubelet cannot build the pod's credentials: no pull at all.
    Fails,
}

/// A credential provider plugin for a case: what it matches and what it answers.
pub struct ProviderSpec {
    pub match_images: String,
    pub auth_key: String,
    pub user: String,
    pub pass: String,
}

/// One question to both.
pub struct Case {
    pub name: String,
    /// Which of the classes it belongs to (1 node identity, 2 hosts.toml, 3 keyring, 4 index
    /// shapes, 5 messages).
    pub class: u8,
    pub image: String,
    pub hosts: Option<PathBuf>,
    /// The pod's `imagePullSecrets`, in order.
    pub secrets: Vec<Secret>,
    /// A ServiceAccount the pod runs as, with its own `imagePullSecrets` (for a pod that lists none).
    pub service_account: Option<ServiceAccount>,
    pub kubelet: Kubelet,
    /// The node's platform.
    pub node: &'static str,
    /// A single manifest's config platform: containerd pulls it whatever it is, the node then runs it.
    pub config_platform: Option<&'static str>,
    pub provider: Option<ProviderSpec>,
    /// Text pullgate's finding must contain.
    pub says: Option<&'static str>,
}

/// The registries of the matrix and the files cases write.
pub struct World {
    pub plain: TestRegistry,
    pub tls: TestRegistry,
    pub basic: TestRegistry,
    pub basic_tls: TestRegistry,
    pub token: TestRegistry,
    /// An htpasswd mirror (user carol) holding `team/mirrored:v1` only.
    pub mirror: TestRegistry,
    /// `127.0.0.1:PORT` where nothing listens: an upstream that is down.
    pub down: String,
    pub mirrored_digest: String,
    pub dir: tempfile::TempDir,
}

impl World {
    /// A hosts dir with `(directory, hosts.toml)` entries.
    pub fn hosts(&self, case: &str, entries: &[(&str, String)]) -> PathBuf {
        let root = self.dir.path().join("hosts").join(case);
        for (dir, text) in entries {
            std::fs::create_dir_all(root.join(dir)).expect("hosts dir");
            std::fs::write(root.join(dir).join("hosts.toml"), text).expect("hosts.toml");
        }
        std::fs::create_dir_all(&root).expect("hosts root");
        root
    }

    pub fn ca(&self, reg: &TestRegistry) -> String {
        reg.ca_path().expect("a TLS registry").display().to_string()
    }
}

async fn world() -> World {
    let plain = registry::start(RegistryOptions::default())
        .await
        .expect("registry");
    let shared = |auth: Auth, tls: bool| RegistryOptions {
        tls,
        auth,
        storage: Some(plain.storage_dir().to_owned()),
    };
    let tls = registry::start(shared(Auth::None, true))
        .await
        .expect("tls");
    let basic = registry::start(shared(Auth::basic("alice", "apass"), false))
        .await
        .expect("basic");
    let basic_tls = registry::start(shared(Auth::basic("alice", "apass"), true))
        .await
        .expect("basic over TLS");
    let token = registry::start(shared(Auth::token("bob", "bpass"), false))
        .await
        .expect("token");
    let mirror = registry::start(RegistryOptions {
        auth: Auth::basic("carol", "cpass"),
        ..Default::default()
    })
    .await
    .expect("mirror");
    let amd = || Platform::linux("amd64");
    let arm = || Platform::linux("arm64");
    let images: Vec<(&str, ImageKind)> = vec![
        ("team/single-amd", ImageKind::single(amd())),
        ("team/single-arm", ImageKind::single(arm())),
        ("team/multi", ImageKind::OciIndex(vec![amd(), arm()])),
        ("team/arm-index", ImageKind::OciIndex(vec![arm()])),
        (
            "team/unnamed",
            ImageKind::IndexWithoutPlatforms(vec![amd(), arm()]),
        ),
        (
            "team/unnamed-arm",
            ImageKind::IndexWithoutPlatforms(vec![arm()]),
        ),
        ("team/nested", ImageKind::NestedIndex(vec![amd()])),
        ("team/nested-arm", ImageKind::NestedIndex(vec![arm()])),
        (
            "team/list",
            ImageKind::DockerManifestList(vec![amd(), arm()]),
        ),
        (
            "team/attested",
            ImageKind::OciIndex(vec![amd(), Platform::new("unknown", "unknown")]),
        ),
        ("forbidden/app", ImageKind::single(amd())),
    ];
    for (repo, kind) in images {
        registry::push_image(&plain, repo, "v1", kind)
            .await
            .expect("push");
    }
    let mirrored_digest =
        registry::push_image(&mirror, "team/mirrored", "v1", ImageKind::single(amd()))
            .await
            .expect("push to the mirror");
    let down = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        format!("127.0.0.1:{port}")
    };
    World {
        plain,
        tls,
        basic,
        basic_tls,
        token,
        mirror,
        down,
        mirrored_digest,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

/// The node's answer: one pull per credential until one works; then the platform check a node makes
/// when it runs the pulled config.
fn oracle(daemon: &Containerd, case: &Case) -> (bool, String) {
    let creds = match &case.kubelet {
        Kubelet::Fails => return (false, "kubelet cannot build the pod's credentials".into()),
        Kubelet::Creds(creds) => creds,
    };
    let attempts: Vec<Option<(&str, &str)>> = if creds.is_empty() {
        vec![None]
    } else {
        creds
            .iter()
            .map(|(u, p)| Some((u.as_str(), p.as_str())))
            .collect()
    };
    let mut last = String::new();
    for user in attempts {
        let pull = daemon.pull(
            &case.image,
            &PullOptions {
                hosts_dir: case.hosts.as_deref(),
                user,
                platform: Some(case.node),
            },
        );
        if pull.ok {
            let runs = case
                .config_platform
                .is_none_or(|config| arch(config) == arch(case.node));
            return (runs, format!("pulled; config {:?}", case.config_platform));
        }
        last = pull.error;
    }
    (false, last)
}

fn arch(platform: &str) -> &str {
    platform.split('/').nth(1).unwrap_or(platform)
}

/// pullgate's answer: the findings of registry rules for the case's pod.
async fn pullgate(world: &World, case: &Case) -> Vec<String> {
    let kube = FakeKube::start().await.expect("fake API");
    for secret in &case.secrets {
        kube.insert_secret("demo", secret.clone());
    }
    let mut spec = json!({"containers": [{"name": "app", "image": case.image, "imagePullPolicy": "IfNotPresent"}]});
    if case.service_account.is_none() {
        let names: Vec<Value> = case
            .secrets
            .iter()
            .map(|s| json!({"name": s.metadata.name}))
            .collect();
        spec["imagePullSecrets"] = json!(names);
    }
    if let Some(account) = &case.service_account {
        kube.insert_service_account("demo", account.clone());
        spec["serviceAccountName"] = json!(account.metadata.name);
    }
    let mut settings = Settings::default();
    allow_loopback(&mut settings);
    settings.node_platforms = vec![case.node.parse().expect("platform")];
    settings.containerd_hosts_dir = case.hosts.clone();
    let plugin = case.provider.as_ref().map(|p| {
        Plugin::new(
            &p.match_images,
            &[
                ("AUTH_KEY", p.auth_key.as_str()),
                ("PLUGIN_USER", p.user.as_str()),
                ("PLUGIN_PASS", p.pass.as_str()),
                ("KEY_TYPE", "Image"),
                ("DURATION", "0s"),
            ],
            None,
        )
    });
    settings.credential_providers = plugin.as_ref().map(Plugin::settings);
    let app = app(
        &settings,
        Some(kube.client().expect("client")),
        shipped_policies(),
    );
    let response = admit(&app, &pod_review(spec)).await;
    let mut lines: Vec<String> = response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    lines.extend(
        response["status"]["message"]
            .as_str()
            .unwrap_or("")
            .lines()
            .map(str::to_owned),
    );
    let _ = world;
    lines
        .into_iter()
        .filter(|l| REGISTRY_RULES.iter().any(|r| l.contains(&format!("[{r}]"))))
        .collect()
}

// Multi-threaded: the oracle blocks on `ctr` while the in-process token service must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pullgate_agrees_with_containerd_on_every_case() {
    registry::install_crypto();
    bounded(async {
        let world = world().await;
        let daemon = Containerd::start().expect("containerd starts");
        let cases = cases::all(&world);
        let mut per_class: BTreeMap<u8, usize> = BTreeMap::new();
        let mut disagreements = Vec::new();
        for case in &cases {
            *per_class.entry(case.class).or_default() += 1;
            let (pulls, why) = tokio::task::block_in_place(|| oracle(&daemon, case));
            let findings = pullgate(&world, case).await;
            let predicted = findings.is_empty();
            if pulls != predicted {
                disagreements.push(format!(
                    "{} (class {}): node {} ({why}), pullgate {}: {findings:?}",
                    case.name,
                    case.class,
                    if pulls { "pulls" } else { "fails" },
                    if predicted { "allows" } else { "objects" },
                ));
            }
            if let Some(text) = case.says {
                if !findings.iter().any(|f| f.contains(text)) {
                    disagreements.push(format!("{}: expected {text:?} in {findings:?}", case.name));
                }
            }
        }
        assert!(cases.len() >= 40, "{} cases", cases.len());
        assert!(
            (1..=5).all(|class| per_class.get(&class).copied().unwrap_or(0) >= 3),
            "every class has cases: {per_class:?}"
        );
        assert!(
            disagreements.is_empty(),
            "{} of {} cases disagree:\n{}",
            disagreements.len(),
            cases.len(),
            disagreements.join("\n")
        );
        let _: &Path = world.dir.path();
    })
    .await;
}
