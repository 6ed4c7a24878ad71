//! Registry resolution end to end against real `docker-registry` processes on 127.0.0.1: every finding
//! of the registry rules, TLS, failures, deadlines, isolation of credentials and coalescing. Admissions
//! go through the real router; pull secrets come from an in-process fake Kubernetes API.

mod support;

use std::time::{Duration, Instant};

use pullgate::config::Settings;
use serde_json::{Value, json};
use support::registry::{self, ImageKind, Platform, RegistryOptions};
use support::scripted;
use support::webhook::{
    admit, app, bounded, insecure, message, one_container, pod_review, policy_text, settings_for,
    shipped_policies, warnings,
};

fn amd64() -> ImageKind {
    ImageKind::single(Platform::linux("amd64"))
}

#[tokio::test]
async fn existing_tag_is_allowed_and_missing_tag_is_denied_with_the_repository() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default()).await.expect("registry");
        registry::push_image(&reg, "demo/app", "v1", amd64()).await.expect("push");
        let app = app(&settings_for(&[&reg]), None, shipped_policies());

        let ok = admit(&app, &pod_review(one_container(&format!("{}/demo/app:v1", reg.host())))).await;
        assert_eq!(ok["allowed"], true, "{ok}");
        assert!(warnings(&ok).is_empty(), "{ok}");

        let image = format!("{}/demo/app:v2", reg.host());
        let denied = admit(&app, &pod_review(one_container(&image))).await;
        assert_eq!(denied["allowed"], false);
        assert_eq!(
            message(&denied),
            format!(
                "container \"app\" (image {image}): [image-exists] tag \"v2\" not found in {}/demo/app — did you mean \"v1\"? — check the tag, or push it",
                reg.host()
            )
        );
    })
    .await;
}

#[tokio::test]
async fn missing_repository_and_digest_are_denied() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        registry::push_image(&reg, "demo/app", "v1", amd64())
            .await
            .expect("push");
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        let repo = admit(
            &app,
            &pod_review(one_container(&format!("{}/demo/nothing:v1", reg.host()))),
        )
        .await;
        assert_eq!(repo["allowed"], false);
        assert!(message(&repo).contains("[image-exists]"), "{repo}");
        assert!(
            message(&repo).contains(&format!("{}/demo/nothing", reg.host())),
            "{repo}"
        );

        let digest = format!("sha256:{}", "0".repeat(64));
        let image = format!("{}/demo/app@{digest}", reg.host());
        let pinned = admit(&app, &pod_review(one_container(&image))).await;
        assert_eq!(pinned["allowed"], false);
        assert!(
            message(&pinned).contains(&format!("[image-exists] digest {digest} not found")),
            "{pinned}"
        );
    })
    .await;
}

fn with_node_selector(image: &str, arch: &str) -> Value {
    json!({"nodeSelector": {"kubernetes.io/arch": arch},
           "containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}]})
}

fn with_affinity(image: &str, arches: &[&str]) -> Value {
    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
              "nodeSelectorTerms": [{"matchExpressions": [
                  {"key": "kubernetes.io/arch", "operator": "In", "values": arches}]}]}}},
           "containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}]})
}

#[tokio::test]
async fn platform_mismatch_is_denied_via_node_selector_and_affinity() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default()).await.expect("registry");
        registry::push_image(&reg, "demo/arm", "v1", ImageKind::single(Platform::linux("arm64")))
            .await
            .expect("push");
        registry::push_image(&reg, "demo/multi", "v1", ImageKind::OciIndex(vec![
            Platform::linux("amd64"),
            Platform::linux("arm64").with_variant("v8"),
        ]))
        .await
        .expect("push");
        registry::push_image(&reg, "demo/list", "v1", ImageKind::DockerManifestList(vec![
            Platform::linux("amd64"),
            Platform::linux("arm64"),
        ]))
        .await
        .expect("push");
        registry::push_image(&reg, "demo/win", "v1", ImageKind::single(Platform::windows_amd64()))
            .await
            .expect("push");
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        let arm = format!("{}/demo/arm:v1", reg.host());

        for spec in [with_node_selector(&arm, "amd64"), with_affinity(&arm, &["amd64"]), one_container(&arm)] {
            let response = admit(&app, &pod_review(spec.clone())).await;
            assert_eq!(response["allowed"], false, "{spec}: {response}");
            let text = message(&response);
            assert!(text.contains("[platform-supported] image has no variant for linux/amd64 (it offers linux/arm64)"), "{text}");
            assert!(text.contains("exec format error"), "{text}");
        }
        let fits = admit(&app, &pod_review(with_node_selector(&arm, "arm64"))).await;
        assert_eq!(fits["allowed"], true, "{fits}");

        for repo in ["demo/multi", "demo/list"] {
            let image = format!("{}/{repo}:v1", reg.host());
            for arch in ["amd64", "arm64"] {
                let response = admit(&app, &pod_review(with_node_selector(&image, arch))).await;
                assert_eq!(response["allowed"], true, "{repo} on {arch}: {response}");
            }
            let s390 = admit(&app, &pod_review(with_affinity(&image, &["s390x"]))).await;
            assert_eq!(s390["allowed"], false, "{repo} on s390x: {s390}");
        }

        let windows = admit(&app, &pod_review(one_container(&format!("{}/demo/win:v1", reg.host())))).await;
        assert_eq!(windows["allowed"], false);
        assert!(message(&windows).contains("(it offers windows/amd64)"), "{windows}");
    })
    .await;
}

#[tokio::test]
async fn image_for_only_some_node_platforms_is_a_warning() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default()).await.expect("registry");
        registry::push_image(&reg, "demo/app", "v1", amd64()).await.expect("push");
        let mut settings = settings_for(&[&reg]);
        settings.node_platforms = vec!["linux/amd64".parse().expect("p"), "linux/arm64".parse().expect("p")];
        let app = app(&settings, None, shipped_policies());
        let image = format!("{}/demo/app:v1", reg.host());
        let response = admit(&app, &pod_review(one_container(&image))).await;
        assert_eq!(response["allowed"], true, "{response}");
        let found = warnings(&response);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("spec.containers[0].image: [platform-supported] may be scheduled on arm64 nodes where the image has no arm64 variant"),
            "{found:?}"
        );
        // Pinning the pod to amd64 removes the warning.
        let pinned = admit(&app, &pod_review(with_node_selector(&image, "amd64"))).await;
        assert!(warnings(&pinned).is_empty(), "{pinned}");
    })
    .await;
}

#[tokio::test]
async fn refused_connection_warns_by_default_and_can_deny() {
    registry::install_crypto();
    bounded(async {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let host = format!("127.0.0.1:{port}");
        let mut settings = Settings::default();
        insecure(&mut settings, &host);
        let image = format!("{host}/demo/app:v1");
        let response = admit(
            &app(&settings, None, shipped_policies()),
            &pod_review(one_container(&image)),
        )
        .await;
        assert_eq!(
            response["allowed"], true,
            "fail-open by default: {response}"
        );
        let found = warnings(&response);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains(&format!(
                "[registry-reachable] could not verify: {host}: connection refused"
            )),
            "{found:?}"
        );

        let strict = policy_text("registry-reachable: {action: deny}");
        let denied = admit(
            &app(&settings, None, strict),
            &pod_review(one_container(&image)),
        )
        .await;
        assert_eq!(denied["allowed"], false, "{denied}");
        assert!(
            message(&denied).contains("[registry-reachable]"),
            "{denied}"
        );
    })
    .await;
}

#[tokio::test]
async fn tls_with_unknown_ca_warns_with_the_x509_cause_and_the_ca_fixes_it() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions {
            tls: true,
            ..Default::default()
        })
        .await
        .expect("registry");
        registry::push_image(&reg, "demo/app", "v1", amd64())
            .await
            .expect("push");
        let image = format!("{}/demo/app:v1", reg.host());

        // Configured without its CA (a loopback registry with no configuration at all gets containerd's
        // localhost default: verification skipped).
        let mut without_ca = Settings::default();
        without_ca.registries.insert(
            reg.host().parse().expect("registry host"),
            pullgate::config::RegistrySettings::default(),
        );
        let unknown = admit(
            &app(&without_ca, None, shipped_policies()),
            &pod_review(one_container(&image)),
        )
        .await;
        assert_eq!(unknown["allowed"], true, "{unknown}");
        let found = warnings(&unknown);
        assert!(
            found.iter().any(|w| w.contains(
                "[registry-tls] TLS handshake failed: x509: certificate signed by unknown authority"
            )),
            "{found:?}"
        );
        assert!(found.iter().any(|w| w.contains("hosts.toml")), "{found:?}");

        let trusted = admit(
            &app(&settings_for(&[&reg]), None, shipped_policies()),
            &pod_review(one_container(&image)),
        )
        .await;
        assert_eq!(trusted["allowed"], true);
        assert!(warnings(&trusted).is_empty(), "{trusted}");
    })
    .await;
}

#[tokio::test]
async fn rate_limited_registry_warns_with_the_seed_fixes() {
    registry::install_crypto();
    bounded(async {
        let limited = scripted::answering(
            429,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#,
        )
        .await;
        let mut settings = Settings::default();
        insecure(&mut settings, &limited.host);
        let image = format!("{}/library/nginx:1.25", limited.host);
        let response = admit(&app(&settings, None, shipped_policies()), &pod_review(one_container(&image))).await;
        assert_eq!(response["allowed"], true, "{response}");
        let found = warnings(&response);
        assert!(found.iter().any(|w| w.contains("[rate-limited]") && w.contains("rate limited (429)")), "{found:?}");
        assert!(found.iter().any(|w| w.contains("mirror")), "{found:?}");
    })
    .await;
}

#[tokio::test]
async fn silent_registry_cannot_hold_the_admission_past_its_budget() {
    registry::install_crypto();
    bounded(async {
        let silent = scripted::silent().await;
        let mut settings = Settings::default();
        insecure(&mut settings, &silent.host);
        settings.resolution.budget_seconds = 2.0;
        settings.resolution.per_image_timeout_seconds = 2.0;
        settings.resolution.read_timeout_seconds = 30.0;
        settings.resolution.connect_timeout_seconds = 30.0;
        let app = app(&settings, None, shipped_policies());
        let spec = json!({"containers": [
            {"name": "a", "image": format!("{}/demo/a:v1", silent.host)},
            {"name": "b", "image": format!("{}/demo/b:v1", silent.host)},
        ]});
        let started = Instant::now();
        let response = admit(&app, &pod_review(spec)).await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(3500),
            "answered after {took:?}"
        );
        assert_eq!(response["allowed"], true, "{response}");
        let found = warnings(&response);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .all(|w| w.contains("[registry-reachable] could not verify")),
            "{found:?}"
        );
        assert!(silent.requests.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    })
    .await;
}

#[tokio::test]
async fn server_errors_and_garbage_are_reported_not_panicked_on() {
    registry::install_crypto();
    bounded(async {
        for (status, body, expected) in [
            (500, "{\"oops\": true}", "registry answered HTTP 500"),
            (503, "<html>down</html>", "registry answered HTTP 503"),
        ] {
            let broken = scripted::answering(status, body).await;
            let mut settings = Settings::default();
            insecure(&mut settings, &broken.host);
            let image = format!("{}/demo/app:v1", broken.host);
            let response = admit(
                &app(&settings, None, shipped_policies()),
                &pod_review(one_container(&image)),
            )
            .await;
            assert_eq!(response["allowed"], true, "{response}");
            assert!(
                warnings(&response).iter().any(|w| w.contains(expected)),
                "{response}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn two_hundred_concurrent_admissions_of_one_image_make_one_request_per_lookup() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        registry::push_image(&reg, "demo/app", "v1", amd64())
            .await
            .expect("push");
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        let before_head = reg.count_requests("HEAD", "/manifests/");
        let before_get = reg.count_requests("GET", "/manifests/");
        let before_blob = reg.count_requests("GET", "/blobs/");
        let review = pod_review(one_container(&format!("{}/demo/app:v1", reg.host())));
        let admissions = (0..200).map(|_| admit(&app, &review));
        let responses = futures::future::join_all(admissions).await;
        assert!(responses.iter().all(|r| r["allowed"] == true));
        // One GET of the manifest by tag gives the digest (its header) and the manifest; one GET of
        // its config blob names the platform. No HEAD, no `/v2/` ping.
        assert_eq!(
            reg.count_requests("HEAD", "/manifests/") - before_head,
            0,
            "{:?}",
            reg.requests()
        );
        assert_eq!(
            reg.count_requests("GET", "/manifests/") - before_get,
            1,
            "{:?}",
            reg.requests()
        );
        assert_eq!(
            reg.count_requests("GET", "/blobs/") - before_blob,
            1,
            "{:?}",
            reg.requests()
        );
        // A cached re-run asks nothing.
        let requests = reg.requests().len();
        admit(&app, &review).await;
        assert_eq!(reg.requests().len(), requests);
    })
    .await;
}

#[tokio::test]
async fn mirrors_are_tried_before_the_upstream() {
    registry::install_crypto();
    bounded(async {
        let mirror = registry::start(RegistryOptions::default())
            .await
            .expect("mirror");
        registry::push_image(&mirror, "demo/app", "v1", amd64())
            .await
            .expect("push");
        // The upstream itself is down: only the mirror can answer.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let upstream = format!("127.0.0.1:{port}");
        let mut settings = Settings::default();
        settings.registries.insert(
            upstream.parse().expect("registry host"),
            pullgate::config::RegistrySettings {
                insecure: true,
                mirrors: vec![format!("http://{}", mirror.host())],
                ..Default::default()
            },
        );
        let app = app(&settings, None, shipped_policies());
        let response = admit(
            &app,
            &pod_review(one_container(&format!("{upstream}/demo/app:v1"))),
        )
        .await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(warnings(&response).is_empty(), "{response}");
        assert_eq!(mirror.count_requests("GET", "/v2/demo/app/manifests/v1"), 1);
    })
    .await;
}

#[tokio::test]
async fn containerd_hosts_toml_gives_the_ca_as_on_the_nodes() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions {
            tls: true,
            ..Default::default()
        })
        .await
        .expect("registry");
        registry::push_image(&reg, "demo/app", "v1", amd64())
            .await
            .expect("push");
        let certs_d = tempfile::tempdir().expect("tempdir");
        let host_dir = certs_d.path().join(reg.host());
        std::fs::create_dir_all(&host_dir).expect("mkdir");
        std::fs::copy(reg.ca_path().expect("CA"), host_dir.join("ca.pem")).expect("copy CA");
        std::fs::write(
            host_dir.join("hosts.toml"),
            format!("server = \"https://{}\"\nca = \"ca.pem\"\n", reg.host()),
        )
        .expect("hosts.toml");
        let settings = Settings {
            containerd_hosts_dir: Some(certs_d.path().to_owned()),
            ..Settings::default()
        };
        let app = app(&settings, None, shipped_policies());
        let response = admit(
            &app,
            &pod_review(one_container(&format!("{}/demo/app:v2", reg.host()))),
        )
        .await;
        // Reached over TLS with the CA from hosts.toml: the registry's own answer (no such tag) comes back.
        assert_eq!(response["allowed"], false, "{response}");
        assert!(
            message(&response).contains("[image-exists] tag \"v2\" not found"),
            "{response}"
        );
    })
    .await;
}
