//! kubelet credential provider plugins, run as kubelet runs them: a test plugin (a shell script speaking
//! the exec protocol) serves credentials for a real htpasswd docker-registry on 127.0.0.1. Pods without
//! secrets pass; wrong plugin credentials deny naming the provider; a plugin that hangs, crashes or prints
//! garbage is a fail-open warning within the budget; `cacheKeyType`/`cacheDuration` decide how often it
//! runs (counted); `tokenAttributes` hands it a ServiceAccount token. Without a provider, a registry that
//! nodes reach by cloud identity (an ECR-looking name mapped to 127.0.0.1 through containerd's certs.d)
//! only warns.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pullgate::config::Settings;
use serde_json::{Value, json};
use support::kube::{FakeKube, service_account};
use support::provider::Plugin;
use support::registry::{self, Auth, ImageKind, Platform, RegistryOptions, TestRegistry};
use support::webhook::{
    admit, app, bounded, message, one_container, pod_review, settings_for, shipped_policies,
    warnings,
};

async fn private_registry() -> TestRegistry {
    let reg = registry::start(RegistryOptions {
        auth: Auth::basic("cloud", "identity"),
        ..Default::default()
    })
    .await
    .expect("registry");
    for repo in ["team/app", "team/other"] {
        registry::push_image(
            &reg,
            repo,
            "v1",
            ImageKind::single(Platform::linux("amd64")),
        )
        .await
        .expect("push");
    }
    reg
}

fn plugin_env<'a>(
    reg: &'a TestRegistry,
    password: &'a str,
    key_type: &'a str,
    duration: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AUTH_KEY", reg.host()),
        ("PLUGIN_USER", "cloud"),
        ("PLUGIN_PASS", password),
        ("KEY_TYPE", key_type),
        ("DURATION", duration),
    ]
}

fn with_plugin(reg: &TestRegistry, plugin: &Plugin) -> Settings {
    let mut settings = settings_for(&[reg]);
    settings.credential_providers = Some(plugin.settings());
    settings
}

/// Admit a pod without pull secrets, with a (fake, empty) Kubernetes API so the absence of secrets is
/// known, not unknowable.
async fn admit_image(settings: &Settings, image: &str) -> (Value, Duration) {
    let kube = FakeKube::start().await.expect("fake API");
    let app = app(
        settings,
        Some(kube.client().expect("client")),
        shipped_policies(),
    );
    let started = Instant::now();
    let response = admit(&app, &pod_review(one_container(image))).await;
    (response, started.elapsed())
}

#[tokio::test]
async fn a_provider_lets_pods_without_secrets_pass_and_its_wrong_credentials_deny_by_name() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry().await;
        let image = format!("{}/team/app:v1", reg.host());

        let good = Plugin::new(reg.host(), &plugin_env(&reg, "identity", "Image", "0s"), None);
        let (response, _) = admit_image(&with_plugin(&reg, &good), &image).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(warnings(&response).is_empty(), "{response}");

        let wrong = Plugin::new(reg.host(), &plugin_env(&reg, "stale", "Image", "0s"), None);
        let (response, _) = admit_image(&with_plugin(&reg, &wrong), &image).await;
        assert_eq!(response["allowed"], false, "{response}");
        let text = message(&response);
        assert!(
            text.contains(&format!(
                "[pull-secret-valid] credentials from credential provider \"test-provider\" rejected by {} (401)",
                reg.host()
            )),
            "{text}"
        );
        assert!(!text.contains("stale"), "the password must not leak: {text}");

        // Without the plugin the pod has no credentials at all: denied.
        let (response, _) = admit_image(&settings_for(&[&reg]), &image).await;
        assert_eq!(response["allowed"], false, "{response}");
    })
    .await;
}

#[tokio::test]
async fn a_broken_provider_is_a_warning_within_the_budget() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry().await;
        let image = format!("{}/team/app:v1", reg.host());
        for mode in ["hang", "crash", "garbage"] {
            let mut env = plugin_env(&reg, "identity", "Image", "0s");
            env.push(("MODE", mode));
            let plugin = Plugin::new(reg.host(), &env, None);
            let (response, took) = admit_image(&with_plugin(&reg, &plugin), &image).await;
            assert!(took < Duration::from_secs(8), "{mode}: took {took:?}");
            assert_eq!(response["allowed"], true, "{mode}: {response}");
            let found = warnings(&response);
            let expected = match mode {
                "hang" => "no answer within 2 s",
                "crash" => "exited with exit status: 3",
                _ => "answered something that is not a CredentialProviderResponse",
            };
            assert!(
                found.iter().any(|w| w.contains("[pull-secret-valid]")
                    && w.contains("credential provider \"test-provider\" failed")
                    && w.contains(expected)),
                "{mode}: {found:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn the_cache_follows_the_answer_s_key_type_and_duration() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry().await;
        let app_image = format!("{}/team/app:v1", reg.host());
        let other_image = format!("{}/team/other:v1", reg.host());
        // (cacheKeyType, cacheDuration, runs after app, app again, other)
        for (key_type, duration, runs) in [
            ("Registry", "1m", [1, 1, 1]),
            ("Image", "1m", [1, 1, 2]),
            ("Global", "1m", [1, 1, 1]),
            ("Image", "0s", [1, 2, 3]),
        ] {
            let plugin = Plugin::new(
                reg.host(),
                &plugin_env(&reg, "identity", key_type, duration),
                None,
            );
            let settings = with_plugin(&reg, &plugin);
            let app = app(&settings, None, shipped_policies());
            let mut seen = Vec::new();
            for image in [&app_image, &app_image, &other_image] {
                let response = admit(&app, &pod_review(one_container(image))).await;
                assert_eq!(
                    response["allowed"], true,
                    "{key_type} {duration}: {response}"
                );
                seen.push(plugin.runs());
            }
            assert_eq!(seen, runs, "{key_type} {duration}");
        }
    })
    .await;
}

#[tokio::test]
async fn token_attributes_hand_the_plugin_a_service_account_token() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry().await;
        let kube = FakeKube::start().await.expect("fake API");
        kube.insert_service_account("demo", service_account("builder", &[]));
        let mut env = plugin_env(&reg, "identity", "Image", "0s");
        env.push(("NEED_TOKEN", "token-for-demo-builder-registry.example"));
        let plugin = Plugin::new(reg.host(), &env, Some("registry.example"));
        let app = app(
            &with_plugin(&reg, &plugin),
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let spec = json!({"serviceAccountName": "builder",
            "containers": [{"name": "app", "image": format!("{}/team/app:v1", reg.host())}]});
        let response = admit(&app, &pod_review(spec)).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(
            kube.requests("/api/v1/namespaces/demo/serviceaccounts/builder/token"),
            1
        );
    })
    .await;
}

/// containerd's certs.d pointing `registry` at `upstream` (a `server` entry and a `[host]` table, so
/// containerd 1.6 reads it too).
fn certs_d(registry: &str, upstream: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let host_dir = dir.path().join(registry);
    std::fs::create_dir_all(&host_dir).expect("dir");
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!("server = \"http://{upstream}\"\n[host.\"http://{upstream}\"]\n"),
    )
    .expect("hosts.toml");
    let path = dir.path().to_owned();
    (dir, path)
}

/// Settings that reach the ECR-looking name through containerd's certs.d, as such a node would.
fn ecr_settings(certs: &Path) -> Settings {
    let mut settings = Settings {
        containerd_hosts_dir: Some(certs.to_owned()),
        ..Settings::default()
    };
    support::webhook::allow_loopback(&mut settings);
    settings
}

#[tokio::test]
async fn a_registry_nodes_reach_by_cloud_identity_only_warns_without_a_provider() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry().await;
        const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let (_dir, certs) = certs_d(ECR, reg.host());
        let image = format!("{ECR}/team/app:v1");

        let (response, _) = admit_image(&ecr_settings(&certs), &image).await;
        assert_eq!(response["allowed"], true, "{response}");
        let found = warnings(&response);
        assert!(
            found
                .iter()
                .any(|w| w.contains("[pull-secret-valid]") && w.contains("cloud identity")),
            "{found:?}"
        );

        // With the provider the nodes use, pullgate verifies it.
        let plugin = Plugin::new(
            "*.dkr.ecr.*.amazonaws.com",
            &[
                ("AUTH_KEY", ECR),
                ("PLUGIN_USER", "cloud"),
                ("PLUGIN_PASS", "identity"),
                ("KEY_TYPE", "Registry"),
                ("DURATION", "1m"),
            ],
            None,
        );
        let mut settings = ecr_settings(&certs);
        settings.credential_providers = Some(plugin.settings());
        let (response, _) = admit_image(&settings, &image).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(warnings(&response).is_empty(), "{response}");

        // And a registry nodes do not reach by identity is a denial, as before.
        let (response, _) = admit_image(
            &settings_for(&[&reg]),
            &format!("{}/team/app:v1", reg.host()),
        )
        .await;
        assert_eq!(response["allowed"], false, "{response}");
    })
    .await;
}
