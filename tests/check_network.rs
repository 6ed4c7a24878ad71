//! What `pullgate check` sends over the network, against real `docker-registry` processes and plain
//! listeners on 127.0.0.1: `--offline` opens no connection and runs no credential helper; `--cache-dir`
//! makes a second run ask nothing about what is already known; docker credential helpers are run as
//! docker runs them; and the same manifests give the same rule ids and messages through `check` as
//! through `serve` (the router, with pull secrets from a fake Kubernetes API).

mod check_common;
mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use check_common::{PASSWORD, USER, config, registries, run, tree};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use pullgate::check::{Exit, Input, OutputFormat};
use pullgate::credentials::LocalDockerConfig;
use pullgate::facts::truncate_chars;
use pullgate::policy::WARNING_MAX;
use pullgate::wiring::RegistryAccess;
use serde_json::{Value, json};
use support::kube::FakeKube;
use support::registry::{self, ImageKind, Platform, RegistryOptions};
use support::webhook::{admit, app, bounded, insecure, message, shipped_policies, warnings};

/// A listener on 127.0.0.1 that counts connections and closes each at once.
struct CountingListener {
    host: String,
    accepted: Arc<AtomicUsize>,
}

fn counting_listener() -> CountingListener {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = listener.local_addr().expect("address").to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    CountingListener { host, accepted }
}

/// A `docker-credential-NAME` script that logs each server it is asked about, and answers `user` /
/// `secret` for `server` (or "not found" for any other).
fn helper_script(dir: &Path, name: &str, server: &str, user: &str, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join(format!("{name}.log"));
    let script = format!(
        "#!/bin/sh\nread server\necho \"$server\" >> '{}'\nif [ \"$server\" = '{server}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
        log.display()
    );
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).expect("write helper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    log
}

#[tokio::test]
async fn offline_opens_no_connection_and_runs_no_helper() {
    registry::install_crypto();
    bounded(async {
        let listener = counting_listener();
        let helpers = tempfile::tempdir().expect("tempdir");
        let log = helper_script(helpers.path(), "probe", &listener.host, USER, PASSWORD);
        let docker = helpers.path().join("config.json");
        std::fs::write(
            &docker,
            json!({"credHelpers": {listener.host.clone(): "probe"}}).to_string(),
        )
        .expect("docker config");
        let mut settings = pullgate::config::Settings::default();
        insecure(&mut settings, &listener.host);
        settings.resolution.budget_seconds = 2.0;
        let manifest = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred}}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{{\"auths\": {{\"{host}\": {{\"username\": \"u\", \"password\": \"p\"}}}}}}'\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  template:\n    spec:\n      imagePullSecrets: [{{name: regcred}}]\n      containers:\n      - {{name: app, image: {host}/team/app:v1}}\n      - {{name: pinned, image: \"{host}/team/app@sha256:{zeros}\"}}\n",
            host = listener.host,
            zeros = "0".repeat(64)
        );
        let access = RegistryAccess {
            docker_config: LocalDockerConfig::File(docker.clone()),
            helper_path: Some(helpers.path().as_os_str().to_owned()),
            cache_dir: Some(helpers.path().join("cache")),
        };
        let mut offline = config(vec![Input::Stdin], settings.clone(), false, OutputFormat::Json);
        offline.registry = None;
        let result = run(offline, &manifest).await;
        assert_eq!(result.exit, Exit::Passed, "{}{}", result.stdout, result.stderr);
        let report: Value = serde_json::from_str(&result.stdout).expect("JSON");
        // Two containers, nine registry rules each (the start rules among them: no command given).
        assert_eq!(report["summary"]["skipped"], 18, "{report}");
        assert_eq!(listener.accepted.load(Ordering::SeqCst), 0, "--offline connected");
        assert!(!log.exists(), "--offline ran a credential helper");

        // The same input online does reach the listener and the helper: the test can see both.
        let mut online = config(vec![Input::Stdin], settings, true, OutputFormat::Json);
        online.registry = Some(access);
        let result = run(online, &manifest).await;
        assert!(listener.accepted.load(Ordering::SeqCst) > 0, "{}", result.stdout);
        assert_eq!(
            std::fs::read_to_string(&log).expect("helper ran").trim(),
            listener.host
        );
    })
    .await;
}

#[tokio::test]
async fn cache_dir_second_run_asks_nothing_already_known() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let digest = registry::push_image(
            &reg,
            "team/api",
            "v1",
            ImageKind::OciIndex(vec![Platform::linux("amd64"), Platform::linux("arm64")]),
        )
        .await
        .expect("push");
        registry::push_image(&reg, "team/single", "v2", ImageKind::single(Platform::linux("amd64")))
            .await
            .expect("push");
        let host = reg.host();
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: pinned, image: \"{host}/team/api@{digest}\"}}\n  - {{name: tagged, image: \"{host}/team/single:v2\"}}\n"
        );
        let cache = tempfile::tempdir().expect("cache dir");
        let settings = support::webhook::settings_for(&[&reg]);
        let go = || {
            let mut config = config(vec![Input::Stdin], settings.clone(), true, OutputFormat::Json);
            config.registry = Some(RegistryAccess {
                docker_config: LocalDockerConfig::Off,
                helper_path: None,
                cache_dir: Some(cache.path().to_owned()),
            });
            run(config, &manifest)
        };
        let first = go().await;
        assert_eq!(first.exit, Exit::Passed, "{}{}", first.stdout, first.stderr);
        let after_first = reg.requests().len();
        assert!(reg.count_requests("GET", "/manifests/") > 0, "platforms were read");
        let second = go().await;
        assert_eq!(second.exit, Exit::Passed, "{}{}", second.stdout, second.stderr);
        assert_eq!(first.stdout, second.stdout);
        let new: Vec<(String, String)> = reg.requests().split_off(after_first);
        // The digest-pinned image: nothing at all. The tag: one HEAD (tags move), no platform GETs.
        assert!(
            !new.iter().any(|(_, path)| path.contains("team/api")),
            "the pinned image was asked again: {new:?}"
        );
        assert!(
            !new.iter().any(|(method, path)| method == "GET" && (path.contains("/manifests/") || path.contains("/blobs/"))),
            "platforms were read again: {new:?}"
        );
        assert_eq!(
            new.iter()
                .filter(|(method, path)| method == "HEAD" && path.ends_with("/v2/team/single/manifests/v2"))
                .count(),
            1,
            "{new:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn credential_helpers_are_run_as_docker_runs_them() {
    registry::install_crypto();
    bounded(async {
        let regs = registries().await;
        let host = regs.auth.host().to_owned();
        let dir = tempfile::tempdir().expect("tempdir");
        let docker = dir.path().join("config.json");
        let manifest = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: demo}}\nspec:\n  template:\n    spec:\n      containers:\n      - {{name: app, image: {host}/team/private:v1}}\n      - {{name: public, image: {}/team/api:v1}}\n",
            regs.plain.host()
        );
        let go = |docker_config: LocalDockerConfig| {
            let mut config = config(vec![Input::Stdin], regs.settings(), true, OutputFormat::Text);
            config.registry = Some(RegistryAccess {
                docker_config,
                helper_path: Some(dir.path().as_os_str().to_owned()),
                cache_dir: None,
            });
            run(config, &manifest)
        };
        // No credentials anywhere: denied, with the fix.
        let none = go(LocalDockerConfig::Off).await;
        assert_eq!(none.exit, Exit::Denied, "{}", none.stdout);
        assert!(none.stdout.contains("requires credentials"), "{}", none.stdout);

        // credHelpers for the private registry; the helper answers the right password.
        let log = helper_script(dir.path(), "good", &host, USER, PASSWORD);
        std::fs::write(&docker, json!({"credHelpers": {host.clone(): "good"}}).to_string())
            .expect("config");
        let helped = go(LocalDockerConfig::File(docker.clone())).await;
        assert_eq!(helped.exit, Exit::Passed, "{}{}", helped.stdout, helped.stderr);
        assert_eq!(std::fs::read_to_string(&log).expect("log").trim(), host, "asked once, for that server only");

        // credsStore for every registry; this helper's password is wrong for the private one.
        let log = helper_script(dir.path(), "store", &host, USER, "hunter2-wrong");
        std::fs::write(&docker, json!({"credsStore": "store", "auths": {host.clone(): {}}}).to_string())
            .expect("config");
        let wrong = go(LocalDockerConfig::File(docker.clone())).await;
        assert_eq!(wrong.exit, Exit::Denied, "{}", wrong.stdout);
        let expected = format!(
            "credentials from node credentials ({}) rejected by {host} (401)",
            docker.display()
        );
        assert!(wrong.stdout.contains(&expected), "{}", wrong.stdout);
        let asked: BTreeSet<String> = std::fs::read_to_string(&log)
            .expect("log")
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(asked, BTreeSet::from([host.clone(), regs.plain.host().to_owned()]));
        for output in [&wrong.stdout, &wrong.stderr, &helped.stdout, &helped.stderr] {
            assert!(!output.contains("hunter2") && !output.contains(PASSWORD), "{output}");
        }

        // A helper that is missing is reported, and the check goes on without it.
        std::fs::write(&docker, json!({"credHelpers": {host.clone(): "absent"}}).to_string())
            .expect("config");
        let missing = go(LocalDockerConfig::File(docker)).await;
        assert_eq!(missing.exit, Exit::Denied);
        assert!(
            missing.stderr.contains(&format!("docker-credential-absent get for {host}: not found in PATH")),
            "{}",
            missing.stderr
        );
    })
    .await;
}

/// `(apiVersion, kind)` → `(group, version, resource)` for the AdmissionReview.
fn resource(api_version: &str, kind: &str) -> (String, String, String) {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    (
        group.into(),
        version.into(),
        format!("{}s", kind.to_lowercase()),
    )
}

fn review(object: &Value) -> Value {
    let (group, version, resource) = resource(
        object["apiVersion"].as_str().expect("apiVersion"),
        object["kind"].as_str().expect("kind"),
    );
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-4000-8000-000000000001",
            "kind": {"group": group, "version": version, "kind": object["kind"]},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"], "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": object,
            "dryRun": false
        }
    })
}

/// The same manifests through `check` and through `serve`: the same deny lines and warnings.
#[tokio::test]
async fn check_and_serve_give_the_same_rule_ids_and_messages() {
    registry::install_crypto();
    bounded(async {
        let regs = registries().await;
        let tree = tree("tree", &regs.replacements());
        let kube = FakeKube::start().await.expect("fake API");
        let files = [
            "arm.yaml",
            "cronjob.yaml",
            "secrets.yaml",
            "list.yaml",
            "pod.json",
        ];
        let mut objects = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(tree.root.join(file)).expect("fixture");
            let documents: Vec<Value> = serde_saphyr::from_multiple(&text).expect("YAML");
            for (index, document) in documents.into_iter().enumerate() {
                let items = match document["kind"].as_str() {
                    Some("List") => document["items"].as_array().cloned().unwrap_or_default(),
                    _ => vec![document],
                };
                for object in items {
                    let namespace = object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default")
                        .to_owned();
                    match object["kind"].as_str() {
                        // The API server keeps stringData as data.
                        Some("Secret") => {
                            let mut secret: Secret =
                                serde_json::from_value(object).expect("Secret");
                            let strings = secret.string_data.take().unwrap_or_default();
                            let data = secret.data.get_or_insert_with(Default::default);
                            for (key, text) in strings {
                                data.insert(key, ByteString(text.into_bytes()));
                            }
                            kube.insert_secret(&namespace, secret);
                        }
                        Some("ServiceAccount") => kube.insert_service_account(
                            &namespace,
                            serde_json::from_value::<ServiceAccount>(object)
                                .expect("ServiceAccount"),
                        ),
                        Some("ConfigMap") => {}
                        Some(_) => objects.push((file, index + 1, object)),
                        None => panic!("fixture without kind"),
                    }
                }
            }
        }
        let router = app(
            &regs.settings(),
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let inputs = files
            .iter()
            .map(|f| Input::Path(tree.root.join(f)))
            .collect();
        let checked = run(
            config(inputs, regs.settings(), true, OutputFormat::Json),
            "",
        )
        .await;
        let report: Value = serde_json::from_str(&checked.stdout).expect("JSON");
        let findings = report["findings"].as_array().expect("findings");
        assert!(objects.len() >= 8, "{objects:?}");
        for (file, _, object) in &objects {
            let name = object["metadata"]["name"].as_str().expect("name");
            let response = admit(&router, &review(object)).await;
            let served_denials: BTreeSet<String> = message(&response)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            let served_warnings: BTreeSet<String> = warnings(&response).into_iter().collect();
            let mine = findings.iter().filter(|f| {
                f["name"] == name && f["file"].as_str().is_some_and(|p| p.ends_with(file))
            });
            let (mut denials, mut warned) = (BTreeSet::new(), BTreeSet::new());
            for f in mine {
                let text = |k: &str| f[k].as_str().unwrap_or("").to_owned();
                match f["action"].as_str() {
                    Some("deny") => denials.insert(format!(
                        "container {:?} (image {}): [{}] {} — {}",
                        text("container"),
                        text("image"),
                        text("rule"),
                        text("message"),
                        text("fix")
                    )),
                    Some("warn") => warned.insert(truncate_chars(
                        &format!(
                            "{}: [{}] {} — {}",
                            text("imagePath"),
                            text("rule"),
                            text("message"),
                            text("fix")
                        ),
                        WARNING_MAX,
                    )),
                    other => panic!("unexpected action {other:?}"),
                };
            }
            assert_eq!(denials, served_denials, "deny lines of {file} {name}");
            assert_eq!(warned, served_warnings, "warnings of {file} {name}");
            assert_eq!(
                response["allowed"],
                denials.is_empty(),
                "{name}: {response}"
            );
        }
        // The comparison covered every kind of outcome.
        let rules: BTreeSet<&str> = findings.iter().filter_map(|f| f["rule"].as_str()).collect();
        for rule in [
            "tag-not-latest",
            "image-exists",
            "platform-supported",
            "pull-secret-valid",
            "pull-policy",
        ] {
            assert!(rules.contains(rule), "{rule} not compared: {rules:?}");
        }
    })
    .await;
}
