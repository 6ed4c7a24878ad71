//! One engine: the same manifests (Pods, Secrets, ServiceAccounts) and node credentials give the same
//! findings — rule ids, actions, messages and fixes — through `serve` (AdmissionReviews through the router,
//! Secrets from a fake Kubernetes API) and through `check` (the manifests as input files), and the same
//! credential wins the pull: a recording proxy in front of each real registry names the account whose
//! manifest request succeeded, and it is the same account in both modes and the one kubelet's order
//! picks (the pod's secrets, else its ServiceAccount's, then the node's).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use pullgate::check::{self, CheckConfig, Exit, Input, Io, OutputFormat, PolicySource};
use pullgate::config::Settings;
use pullgate::credentials::LocalDockerConfig;
use pullgate::policy::{Action, Finding, RuleId};
use pullgate::wiring::RegistryAccess;
use serde_json::{Value, json};
use support::kube::{FakeKube, dockerconfigjson_secret, service_account, typed_secret};
use support::registry::{self, Auth, ImageKind, Platform, RegistryOptions, TestRegistry};
use support::scripted::{Proxy, proxy};
use support::webhook::{admit, app, bounded, insecure, message, shipped_policies, warnings};

const NS: &str = "demo";

/// One pod of the matrix: its image's registry, `imagePullSecrets` and ServiceAccount, and the account
/// expected to fetch the manifest (`None`: the pull fails or is anonymous).
struct Case {
    name: &'static str,
    registry: Which,
    secrets: &'static [&'static str],
    service_account: Option<&'static str>,
    winner: Option<&'static str>,
}

#[derive(Clone, Copy)]
enum Which {
    /// htpasswd with alice and bob; the node's credentials are bob's.
    Shared,
    /// htpasswd with carol; the node has nothing for it.
    Private,
    /// anonymous.
    Public,
}

#[rustfmt::skip] // one case per line: the matrix reads as a table
const CASES: &[Case] = &[
    Case { name: "pod-secret-first", registry: Which::Shared, secrets: &["alice-good"], service_account: None, winner: Some("alice") },
    Case { name: "service-account-before-node", registry: Which::Shared, secrets: &[], service_account: Some("builder"), winner: Some("alice") },
    Case { name: "node-after-rejected-secret", registry: Which::Shared, secrets: &["alice-wrong"], service_account: None, winner: Some("bob") },
    Case { name: "node-without-secrets", registry: Which::Shared, secrets: &[], service_account: None, winner: Some("bob") },
    Case { name: "node-when-secret-has-no-entry", registry: Which::Shared, secrets: &["elsewhere"], service_account: None, winner: Some("bob") },
    Case { name: "rejected-secret", registry: Which::Private, secrets: &["carol-wrong"], service_account: None, winner: None },
    Case { name: "missing-secret", registry: Which::Private, secrets: &["nope"], service_account: None, winner: None },
    Case { name: "opaque-secret-of-account", registry: Which::Private, secrets: &[], service_account: Some("broken"), winner: None },
    Case { name: "no-credentials", registry: Which::Private, secrets: &[], service_account: None, winner: None },
    Case { name: "public-with-missing-secret", registry: Which::Public, secrets: &["nope"], service_account: None, winner: None },
];

struct World {
    /// Each registry behind its recording proxy; image references name the proxy.
    shared: (TestRegistry, Proxy),
    private: (TestRegistry, Proxy),
    public: (TestRegistry, Proxy),
    secrets: Vec<Secret>,
    accounts: Vec<ServiceAccount>,
    settings: Settings,
    _node_dir: tempfile::TempDir,
}

impl World {
    fn proxy(&self, which: Which) -> &Proxy {
        match which {
            Which::Shared => &self.shared.1,
            Which::Private => &self.private.1,
            Which::Public => &self.public.1,
        }
    }

    fn host(&self, which: Which) -> &str {
        &self.proxy(which).host
    }

    /// Each case pulls its own tag, so access-log lines belong to one case.
    fn image(&self, case: &Case) -> String {
        format!("{}/team/app:{}", self.host(case.registry), case.name)
    }

    fn pod_spec(&self, case: &Case) -> Value {
        let secrets: Vec<Value> = case.secrets.iter().map(|s| json!({"name": s})).collect();
        let mut spec = json!({
            "imagePullSecrets": secrets,
            "containers": [{"name": "app", "image": self.image(case), "imagePullPolicy": "IfNotPresent"}],
        });
        if let Some(account) = case.service_account {
            spec["serviceAccountName"] = json!(account);
        }
        spec
    }
}

async fn world() -> World {
    let start = |auth| async move {
        let reg = registry::start(RegistryOptions {
            auth,
            ..Default::default()
        })
        .await
        .expect("registry starts");
        for case in CASES {
            registry::push_image(
                &reg,
                "team/app",
                case.name,
                ImageKind::single(Platform::linux("amd64")),
            )
            .await
            .expect("push");
        }
        let recorder = proxy(reg.host().to_owned(), std::time::Duration::ZERO).await;
        (reg, recorder)
    };
    let shared = start(Auth::basic_users(&[("alice", "apass"), ("bob", "bpass")])).await;
    let private = start(Auth::basic("carol", "cpass")).await;
    let public = start(Auth::None).await;
    let (s, p) = (shared.1.host.as_str(), private.1.host.as_str());
    let secrets = vec![
        dockerconfigjson_secret("alice-good", &[(s, "alice", "apass")]),
        dockerconfigjson_secret("alice-wrong", &[(s, "alice", "nope")]),
        dockerconfigjson_secret("carol-wrong", &[(p, "carol", "nope")]),
        dockerconfigjson_secret("elsewhere", &[("registry.example.com", "x", "y")]),
        typed_secret("opaque", "Opaque", &[("password", b"hunter2")]),
    ];
    let accounts = vec![
        service_account("builder", &["alice-good"]),
        service_account("broken", &["opaque"]),
    ];
    let node_dir = tempfile::tempdir().expect("tempdir");
    let node_file = node_dir.path().join("config.json");
    let node = dockerconfigjson_secret("node", &[(s, "bob", "bpass")]);
    let bytes = &node.data.as_ref().expect("data")[".dockerconfigjson"].0;
    std::fs::write(&node_file, bytes).expect("write node credentials");
    let mut settings = Settings::default();
    for (_, recorder) in [&shared, &private, &public] {
        insecure(&mut settings, &recorder.host);
    }
    settings.node_credentials = Some(node_file);
    World {
        shared,
        private,
        public,
        secrets,
        accounts,
        settings,
        _node_dir: node_dir,
    }
}

/// Pod name → the lines `serve` answered with: deny lines, then warnings.
async fn serve_lines(world: &World) -> BTreeMap<String, BTreeSet<String>> {
    let kube = FakeKube::start().await.expect("fake API");
    for secret in &world.secrets {
        kube.insert_secret(NS, secret.clone());
    }
    for account in &world.accounts {
        kube.insert_service_account(NS, account.clone());
    }
    let app = app(
        &world.settings,
        Some(kube.client().expect("client")),
        shipped_policies(),
    );
    let mut out = BTreeMap::new();
    for case in CASES {
        let mut review = support::webhook::pod_review(world.pod_spec(case));
        review["request"]["name"] = json!(case.name);
        review["request"]["object"]["metadata"]["name"] = json!(case.name);
        let response = admit(&app, &review).await;
        let mut lines: BTreeSet<String> = message(&response)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        lines.extend(warnings(&response));
        out.insert(case.name.to_owned(), lines);
    }
    out
}

/// The input file `check` reads: every Pod, Secret and ServiceAccount of the world.
fn manifests(world: &World) -> String {
    let mut documents = Vec::new();
    for case in CASES {
        documents.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": case.name, "namespace": NS},
            "spec": world.pod_spec(case),
        }));
    }
    for secret in &world.secrets {
        let mut value = serde_json::to_value(secret).expect("secret serialises");
        value["metadata"]["namespace"] = json!(NS);
        documents.push(value);
    }
    for account in &world.accounts {
        let mut value = serde_json::to_value(account).expect("account serialises");
        value["metadata"]["namespace"] = json!(NS);
        documents.push(value);
    }
    documents
        .iter()
        .map(|d| serde_json::to_string(d).expect("JSON"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Pod name → the lines `serve` would answer with for `check`'s findings (JSON output).
async fn check_lines(world: &World) -> BTreeMap<String, BTreeSet<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pods.yaml");
    std::fs::write(&file, manifests(world)).expect("write manifests");
    let config = CheckConfig {
        inputs: vec![Input::from_arg(file)],
        recursive: false,
        policies: PolicySource::BuiltIn,
        settings: world.settings.clone(),
        namespace: "default".into(),
        registry: Some(RegistryAccess {
            docker_config: LocalDockerConfig::Off,
            helper_path: None,
            cache_dir: None,
        }),
        output: OutputFormat::Json,
        warnings_as_errors: false,
        skip_non_kubernetes: false,
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let exit = check::run(
        config,
        Io {
            stdin: &mut std::io::empty(),
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    )
    .await;
    let stderr = String::from_utf8_lossy(&stderr);
    assert_eq!(
        exit,
        Exit::Denied,
        "{stderr}{}",
        String::from_utf8_lossy(&stdout)
    );
    let report: Value = serde_json::from_slice(&stdout).expect("JSON report");
    let mut out: BTreeMap<String, BTreeSet<String>> = CASES
        .iter()
        .map(|c| (c.name.to_owned(), BTreeSet::new()))
        .collect();
    for f in report["findings"].as_array().expect("findings") {
        let text = |key: &str| f[key].as_str().expect("a string field").to_owned();
        let rule = RuleId::ALL
            .into_iter()
            .find(|r| r.as_str() == text("rule"))
            .expect("a known rule");
        let action = match text("action").as_str() {
            "deny" => Action::Deny,
            "warn" => Action::Warn,
            other => panic!("unexpected action {other}"),
        };
        let finding = Finding {
            container: text("container"),
            image: text("image"),
            image_path: text("imagePath"),
            rule,
            action,
            message: text("message"),
            fix: text("fix"),
        };
        let line = match action {
            Action::Deny => finding.deny_line(),
            _ => finding.warning_line(),
        };
        out.entry(text("name")).or_default().insert(line);
    }
    out
}

/// Per case, the account of each successful manifest request (`None`: anonymous), from exchange
/// `since[case]` on.
fn winners(
    world: &World,
    since: &BTreeMap<&'static str, usize>,
) -> BTreeMap<&'static str, Vec<Option<String>>> {
    CASES
        .iter()
        .map(|case| {
            let path = format!("/manifests/{}", case.name);
            let mut users: Vec<Option<String>> = world
                .proxy(case.registry)
                .exchanges()
                .into_iter()
                .filter(|e| e.path.contains(&path) && (200..300).contains(&e.status))
                .map(|e| e.user)
                .collect();
            let skip = since.get(case.name).copied().unwrap_or(0);
            users = users.split_off(skip.min(users.len()));
            (case.name, users)
        })
        .collect()
}

/// The account of the last successful manifest request.
fn winner(users: &[Option<String>]) -> Option<&str> {
    users.last().and_then(|u| u.as_deref())
}

#[tokio::test]
async fn serve_and_check_agree_on_findings_and_on_the_credential_that_wins() {
    registry::install_crypto();
    bounded(async {
        let world = world().await;
        let served = serve_lines(&world).await;
        let after_serve = winners(&world, &BTreeMap::new());
        let counts = after_serve.iter().map(|(k, v)| (*k, v.len())).collect();
        let checked = check_lines(&world).await;
        let after_check = winners(&world, &counts);

        for case in CASES {
            assert_eq!(
                served[case.name], checked[case.name],
                "case {}: serve and check disagree",
                case.name
            );
            let (s, c) = (&after_serve[case.name], &after_check[case.name]);
            assert_eq!(
                winner(s),
                case.winner,
                "case {}: serve fetched as {s:?}",
                case.name
            );
            assert_eq!(
                winner(c),
                case.winner,
                "case {}: check fetched as {c:?}",
                case.name
            );
        }
        // The matrix is not vacuous: what each failing case says.
        let says = |name: &str, rule: &str, text: &str| {
            assert!(
                served[name]
                    .iter()
                    .any(|l| l.contains(&format!("[{rule}]")) && l.contains(text)),
                "case {name}: {:?}",
                served[name]
            );
        };
        says(
            "rejected-secret",
            "pull-secret-valid",
            "credentials from secret \"carol-wrong\" rejected",
        );
        says(
            "missing-secret",
            "pull-secret-valid",
            "secret \"nope\" not found in namespace demo",
        );
        says(
            "opaque-secret-of-account",
            "pull-secret-valid",
            "of ServiceAccount \"broken\" has type Opaque",
        );
        says(
            "no-credentials",
            "pull-secret-valid",
            "the pod has no pull secret for it",
        );
        says(
            "public-with-missing-secret",
            "pull-secret-valid",
            "the image pulls without it",
        );
        for quiet in [
            "pod-secret-first",
            "service-account-before-node",
            "node-without-secrets",
        ] {
            assert!(
                served[quiet].is_empty(),
                "case {quiet}: {:?}",
                served[quiet]
            );
        }
    })
    .await;
}
