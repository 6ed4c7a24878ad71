//! `pullgate audit` end to end: workloads listed (paginated) from the in-process fake Kubernetes API
//! through a kubeconfig, images in real `docker-registry` processes on 127.0.0.1, the report and exit
//! code of `pullgate::audit::run` (and of the binary, once).

mod support;

use std::path::Path;
use std::process::Command;

use pullgate::audit::{AuditConfig, AuditFormat, Io, Scope};
use pullgate::check::{Exit, PolicySource};
use pullgate::config::Settings;
use serde_json::{Value, json};
use support::kube::{FakeKube, dockerconfigjson_secret};
use support::registry::{self, Auth, ImageKind, Platform, RegistryOptions, TestRegistry};
use support::webhook::{bounded, settings_for};

const NS: &str = "demo";

fn config(kubeconfig: &Path, settings: Settings, output: AuditFormat) -> AuditConfig {
    AuditConfig {
        kubeconfig: Some(kubeconfig.to_owned()),
        context: None,
        scope: Scope::All,
        selector: None,
        policies: PolicySource::BuiltIn,
        policy_rules: false,
        settings,
        output,
        max_requests_per_registry: None,
        progress: false,
    }
}

/// Runs the audit: exit, stdout, stderr.
async fn audit(config: AuditConfig) -> (Exit, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = pullgate::audit::run(
        config,
        Io {
            stdout: &mut out,
            stderr: &mut err,
        },
    )
    .await;
    (
        exit,
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8"),
    )
}

/// `(kind, name, rule, action)` of each JSON finding, sorted.
fn findings(report: &str) -> Vec<(String, String, String, String)> {
    let report: Value = serde_json::from_str(report).expect("JSON report");
    let mut found: Vec<_> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (text("kind"), text("name"), text("rule"), text("action"))
        })
        .collect();
    found.sort();
    found
}

fn pod_spec(image: &str, secret: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "app", "image": image}]});
    if let Some(secret) = secret {
        spec["imagePullSecrets"] = json!([{"name": secret}]);
    }
    spec
}

fn owner(kind: &str, name: &str, resource: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": true,
            "uid": format!("uid-{NS}-{resource}-{name}")}])
}

/// A Deployment, its ReplicaSet and `pods` Pods of that ReplicaSet.
fn deployment_with_pods(kube: &FakeKube, name: &str, spec: &Value, pods: usize) {
    kube.insert_object(
        NS,
        "deployments",
        json!({"metadata": {"name": name}, "spec": {"template": {"spec": spec}}}),
    );
    let set = format!("{name}-5d8f");
    kube.insert_object(
        NS,
        "replicasets",
        json!({"metadata": {"name": set, "ownerReferences": owner("Deployment", name, "deployments")},
               "spec": {"template": {"spec": spec}}}),
    );
    for n in 0..pods {
        kube.insert_object(
            NS,
            "pods",
            json!({"metadata": {"name": format!("{set}-{n}"),
                                "ownerReferences": owner("ReplicaSet", &set, "replicasets")},
                   "spec": spec, "status": {"phase": "Running"}}),
        );
    }
}

async fn start_registry(auth: Auth) -> TestRegistry {
    registry::start(RegistryOptions {
        auth,
        ..Default::default()
    })
    .await
    .expect("registry starts")
}

fn both() -> ImageKind {
    ImageKind::OciIndex(vec![Platform::linux("amd64"), Platform::linux("arm64")])
}

/// Deletes a manifest through the registry API (storage delete is enabled in the test registries).
async fn delete_manifest(reg: &TestRegistry, repo: &str, digest: &str) {
    let url = format!("{}/v2/{repo}/manifests/{digest}", reg.url());
    let mut request = reqwest::Client::new().delete(url);
    if let Some((user, pass)) = reg.auth().credentials() {
        request = request.basic_auth(user, Some(pass));
    }
    let status = request.send().await.expect("DELETE answered").status();
    assert_eq!(status.as_u16(), 202, "manifest deleted");
}

#[tokio::test]
async fn tag_deleted_secret_changed_and_new_node_platform_are_reported() {
    registry::install_crypto();
    bounded(async {
        let reg = start_registry(Auth::basic("alice", "s3cret")).await;
        let web = registry::push_image(&reg, "demo/web", "v1", both()).await.expect("push");
        registry::push_image(&reg, "demo/batch", "v1", both()).await.expect("push");
        let arm = ImageKind::single(Platform::linux("arm64"));
        registry::push_image(&reg, "demo/armonly", "v1", arm).await.expect("push");
        let host = reg.host();

        let kube = FakeKube::start().await.expect("fake API");
        let good = |name: &str| dockerconfigjson_secret(name, &[(host, "alice", "s3cret")]);
        kube.insert_secret(NS, good("regcred"));
        kube.insert_secret(NS, good("batchcred"));
        kube.insert_node("arm-1", &[("kubernetes.io/os", "linux"), ("kubernetes.io/arch", "arm64")]);
        deployment_with_pods(&kube, "web", &pod_spec(&format!("{host}/demo/web:v1"), Some("regcred")), 3);
        let batch = pod_spec(&format!("{host}/demo/batch:v1"), Some("batchcred"));
        kube.insert_object(NS, "cronjobs", json!({"metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": batch}}}}}));
        kube.insert_object(NS, "pods", json!({"metadata": {"name": "arm"},
            "spec": pod_spec(&format!("{host}/demo/armonly:v1"), Some("regcred"))}));

        let dir = tempfile::tempdir().expect("tempdir");
        let file = kube.kubeconfig(dir.path());
        let settings = settings_for(&[&reg]);
        let (exit, out, err) = audit(config(&file, settings.clone(), AuditFormat::Json)).await;
        assert_eq!(exit, Exit::Passed, "{out}\n{err}");
        assert_eq!(findings(&out), vec![], "{out}");
        let report: Value = serde_json::from_str(&out).expect("JSON");
        // Deployment, CronJob, bare Pod: the ReplicaSet and its Pods are the Deployment's.
        assert_eq!(report["summary"]["workloads"], 3, "{out}");
        assert_eq!(report["summary"]["ownedByAudited"], 4, "{out}");

        delete_manifest(&reg, "demo/web", &web).await;
        kube.insert_secret(NS, dockerconfigjson_secret("batchcred", &[(host, "alice", "wrong")]));
        kube.insert_node("amd-1", &[("kubernetes.io/os", "linux"), ("kubernetes.io/arch", "amd64")]);

        let (exit, out, err) = audit(config(&file, settings.clone(), AuditFormat::Json)).await;
        assert_eq!(exit, Exit::Denied, "{out}\n{err}");
        let expected = vec![
            ("CronJob".into(), "nightly".into(), "pull-secret-valid".into(), "deny".into()),
            ("Deployment".into(), "web".into(), "image-exists".into(), "deny".into()),
            ("Pod".into(), "arm".into(), "platform-supported".into(), "warn".into()),
        ];
        assert_eq!(findings(&out), expected, "{out}");

        // The text report says the same, grouped by namespace and workload, in the webhook's words.
        let (_, text, _) = audit(config(&file, settings, AuditFormat::Text)).await;
        assert!(text.starts_with("namespace demo\n  CronJob nightly\n    deny container \"app\""), "{text}");
        assert!(text.contains("  Deployment web\n    deny container \"app\""), "{text}");
        assert!(text.contains("[image-exists] tag \"v1\" not found"), "{text}");
        assert!(text.contains("may be scheduled on amd64 nodes"), "{text}");
        assert!(!text.contains("s3cret") && !text.contains("wrong"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_deployment_with_fifty_pods_is_one_finding_and_one_lookup() {
    registry::install_crypto();
    bounded(async {
        let reg = start_registry(Auth::None).await;
        let digest = registry::push_image(&reg, "team/web", "v1", both())
            .await
            .expect("push");
        let kube = FakeKube::start().await.expect("fake API");
        deployment_with_pods(
            &kube,
            "web",
            &pod_spec(&format!("{}/team/web:v1", reg.host()), None),
            50,
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = kube.kubeconfig(dir.path());
        let manifests = || {
            reg.count_requests("GET", "/v2/team/web/manifests/")
                + reg.count_requests("HEAD", "/v2/team/web/manifests/")
        };

        let (exit, out, _) = audit(config(&file, settings_for(&[&reg]), AuditFormat::Json)).await;
        assert_eq!(exit, Exit::Passed, "{out}");
        // One lookup for 52 objects naming the image: the index, and (image-size) the one platform
        // manifest an amd64 node would pull.
        assert_eq!(manifests(), 2, "one lookup for 52 objects naming the image");

        delete_manifest(&reg, "team/web", &digest).await;
        let (exit, out, _) = audit(config(&file, settings_for(&[&reg]), AuditFormat::Json)).await;
        assert_eq!(exit, Exit::Denied, "{out}");
        assert_eq!(
            findings(&out),
            vec![(
                "Deployment".into(),
                "web".into(),
                "image-exists".into(),
                "deny".into()
            )]
        );
        assert_eq!(manifests(), 3, "again one lookup");
    })
    .await;
}

#[tokio::test]
async fn lists_are_paginated_and_the_request_budget_holds() {
    registry::install_crypto();
    bounded(async {
        let reg = start_registry(Auth::None).await;
        for n in 0..20 {
            let image = ImageKind::single(Platform::linux("amd64"));
            registry::push_image(&reg, "team/app", &format!("v{n}"), image)
                .await
                .expect("push");
        }
        let kube = FakeKube::start().await.expect("fake API");
        // 1,200 bare Pods naming 20 tags, 60 Pods each.
        for n in 0..1200 {
            let image = format!("{}/team/app:v{}", reg.host(), n % 20);
            kube.insert_object(
                NS,
                "pods",
                json!({"metadata": {"name": format!("p{n:04}")},
                "spec": pod_spec(&image, None)}),
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = kube.kubeconfig(dir.path());
        let pushed = reg.requests().len();
        let mut limited = config(&file, settings_for(&[&reg]), AuditFormat::Json);
        limited.max_requests_per_registry = Some(15);
        let (exit, out, err) = audit(limited).await;

        let pages = kube
            .list_requests()
            .iter()
            .filter(|r| r.starts_with("/api/v1/pods?"))
            .count();
        assert_eq!(pages, 3, "500 + 500 + 200: {:?}", kube.list_requests());
        let report: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(report["summary"]["workloads"], 1200, "{err}");
        // A single-platform image costs a manifest and a config request: at most 15 of them.
        let sent = reg.requests().len() - pushed;
        assert!(sent <= 15, "{sent} requests sent, budget 15");
        assert_eq!(report["registryRequests"][reg.host()], json!(sent), "{out}");
        // The images not asked are warnings that say why, never denials.
        assert_eq!(exit, Exit::Passed, "{err}");
        let unchecked = report["findings"].as_array().expect("findings");
        assert!(!unchecked.is_empty());
        for finding in unchecked {
            assert_eq!(finding["action"], "warn", "{finding}");
            let message = finding["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("budget of 15 requests for this registry is spent"),
                "{message}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn selector_namespace_and_finished_work_narrow_the_audit() {
    registry::install_crypto();
    bounded(async {
        let kube = FakeKube::start().await.expect("fake API");
        let missing = "127.0.0.1:1/none/app:v1";
        for (name, labels) in [("a", json!({"team": "x"})), ("b", json!({"team": "y"}))] {
            kube.insert_object(
                NS,
                "pods",
                json!({"metadata": {"name": name, "labels": labels},
                "spec": pod_spec(missing, None)}),
            );
        }
        kube.insert_object(
            "other",
            "pods",
            json!({"metadata": {"name": "c"}, "spec": pod_spec(missing, None)}),
        );
        kube.insert_object(
            NS,
            "pods",
            json!({"metadata": {"name": "done"},
            "spec": pod_spec(missing, None), "status": {"phase": "Succeeded"}}),
        );
        kube.insert_object(
            NS,
            "jobs",
            json!({"metadata": {"name": "migrate"},
            "spec": {"template": {"spec": pod_spec(missing, None)}},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}}),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = kube.kubeconfig(dir.path());
        let names = |out: &str| -> Vec<String> {
            let mut names: Vec<String> = findings(out).into_iter().map(|f| f.1).collect();
            names.dedup();
            names
        };

        let (_, out, _) = audit(config(&file, Settings::default(), AuditFormat::Json)).await;
        assert_eq!(
            names(&out),
            ["a", "b", "c"],
            "finished Pod and Job left out: {out}"
        );
        let report: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(report["summary"]["finished"], 2);

        let mut scoped = config(&file, Settings::default(), AuditFormat::Json);
        scoped.scope = Scope::Namespace(NS.into());
        scoped.selector = Some("team=y".into());
        let (_, out, _) = audit(scoped).await;
        assert_eq!(names(&out), ["b"]);
        assert!(
            kube.list_requests()
                .iter()
                .any(|r| r.contains("/namespaces/demo/pods?")
                    && r.contains("labelSelector=team%3Dy")),
            "{:?}",
            kube.list_requests()
        );
    })
    .await;
}

#[tokio::test]
async fn a_kind_that_cannot_be_listed_makes_the_audit_incomplete() {
    registry::install_crypto();
    bounded(async {
        let kube = FakeKube::start().await.expect("fake API");
        kube.forbid("/apis/batch/v1/cronjobs");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = kube.kubeconfig(dir.path());
        let (exit, out, _) = audit(config(&file, Settings::default(), AuditFormat::Text)).await;
        assert_eq!(exit, Exit::Error, "{out}");
        assert!(
            out.contains("error: cannot list cronjobs: cronjobs is forbidden"),
            "{out}"
        );
        assert!(out.contains("the audit is incomplete"), "{out}");
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_api_is_one_clear_error() {
    registry::install_crypto();
    bounded(async {
        let kube = FakeKube::start().await.expect("fake API");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = kube.kubeconfig(dir.path());
        drop(kube);
        let (exit, out, _) = audit(config(&file, Settings::default(), AuditFormat::Text)).await;
        assert_eq!(exit, Exit::Error, "{out}");
        let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(
            errors.len(),
            1,
            "the first failed list stops the listing: {out}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_binary_audits_with_a_kubeconfig_and_writes_every_format() {
    registry::install_crypto();
    let kube = FakeKube::start().await.expect("fake API");
    kube.insert_object(
        NS,
        "pods",
        json!({"metadata": {"name": "bad"},
        "spec": pod_spec("Not A Reference", None)}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = kube.kubeconfig(dir.path());
    for format in ["text", "json", "junit", "sarif"] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pullgate"));
        command
            .args(["audit", "-A", "-o", format])
            .arg("--kubeconfig")
            .arg(&file);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("joined")
            .expect("pullgate runs");
        let (out, err) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert_eq!(output.status.code(), Some(1), "{format}: {out}\n{err}");
        assert!(
            err.is_empty(),
            "no progress bar when not on a terminal: {err}"
        );
        assert!(out.contains("image-reference-valid"), "{format}: {out}");
        match format {
            "json" | "sarif" => {
                serde_json::from_str::<Value>(&out).expect("valid JSON");
            }
            "junit" => assert!(
                out.contains("<failure message=") && out.ends_with("</testsuites>\n"),
                "{out}"
            ),
            _ => assert!(out.contains("namespace demo\n  Pod bad\n    deny"), "{out}"),
        }
    }
}

#[tokio::test]
async fn a_registry_answering_503_is_left_alone_after_its_first_answers() {
    registry::install_crypto();
    bounded(async {
        let failing = support::hostile::start(
            "127.0.0.1",
            false,
            support::hostile::answer(|_, _| support::hostile::status(503, "")),
        )
        .await;
        let kube = FakeKube::start().await.expect("fake API");
        for n in 0..60 {
            let image = format!("{}/team/app{n}:v1", failing.host);
            kube.insert_object(
                NS,
                "pods",
                json!({"metadata": {"name": format!("p{n:02}")},
                "spec": pod_spec(&image, None)}),
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = kube.kubeconfig(dir.path());
        let mut settings = Settings::default();
        support::webhook::insecure(&mut settings, &failing.host);
        let (exit, out, _) = audit(config(&file, settings, AuditFormat::Json)).await;
        assert_eq!(exit, Exit::Passed, "an unavailable registry warns: {out}");
        // Lookups already in flight when the first 503 arrives still land (16 workloads at once); none after.
        let hits = failing.hits().len();
        assert!(
            hits <= 16,
            "{hits} requests for 60 images: not left alone after the first 503"
        );
        let found = findings(&out);
        assert_eq!(found.len(), 60, "{out}");
        assert!(
            found
                .iter()
                .all(|f| f.2 == "registry-reachable" && f.3 == "warn"),
            "{found:?}"
        );
    })
    .await;
}
