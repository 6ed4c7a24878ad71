//! `pull-secret-valid` end to end: real `docker-registry` processes with htpasswd (Basic) and token
//! (Bearer) auth on 127.0.0.1, pull secrets and ServiceAccounts served by an in-process fake Kubernetes
//! API to a real kube client, admissions through the real router.

mod support;

use pullgate::config::Settings;
use serde_json::{Value, json};
use support::kube::{FakeKube, dockerconfigjson_secret, service_account, typed_secret};
use support::registry::{self, Auth, ImageKind, Platform, RegistryOptions, TestRegistry};
use support::scripted;
use support::webhook::{
    admit, app, app_with_metrics, bounded, insecure, message, pod_review, settings_for,
    shipped_policies, warnings,
};

const NS: &str = "demo";

async fn private_registry(auth: Auth) -> TestRegistry {
    let reg = registry::start(RegistryOptions {
        auth,
        ..Default::default()
    })
    .await
    .expect("registry starts");
    registry::push_image(
        &reg,
        "team/app",
        "v1",
        ImageKind::single(Platform::linux("amd64")),
    )
    .await
    .expect("push");
    reg
}

fn image(reg: &TestRegistry) -> String {
    format!("{}/team/app:v1", reg.host())
}

fn spec_with_secrets(image: &str, secrets: &[&str]) -> Value {
    let refs: Vec<Value> = secrets.iter().map(|s| json!({"name": s})).collect();
    json!({"imagePullSecrets": refs,
           "containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}]})
}

async fn fake_kube() -> FakeKube {
    FakeKube::start().await.expect("fake API starts")
}

#[tokio::test]
async fn working_pod_secret_is_allowed() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry(Auth::basic("alice", "s3cret")).await;
        let kube = fake_kube().await;
        kube.insert_secret(
            NS,
            dockerconfigjson_secret("regcred", &[(reg.host(), "alice", "s3cret")]),
        );
        let app = app(
            &settings_for(&[&reg]),
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let response = admit(
            &app,
            &pod_review(spec_with_secrets(&image(&reg), &["regcred"])),
        )
        .await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(warnings(&response).is_empty(), "{response}");
    })
    .await;
}

#[tokio::test]
async fn service_account_secrets_are_used_when_the_pod_lists_none() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry(Auth::basic("alice", "s3cret")).await;
        let kube = fake_kube().await;
        kube.insert_secret(
            NS,
            dockerconfigjson_secret(
                "sa-cred",
                &[(&format!("http://{}", reg.host()), "alice", "s3cret")],
            ),
        );
        kube.insert_service_account(NS, service_account("builder", &["sa-cred"]));
        let app = app(
            &settings_for(&[&reg]),
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let mut spec = spec_with_secrets(&image(&reg), &[]);
        spec["serviceAccountName"] = json!("builder");
        let response = admit(&app, &pod_review(spec.clone())).await;
        assert_eq!(response["allowed"], true, "{response}");
        // Without the ServiceAccount's secret the same pod is denied.
        spec["serviceAccountName"] = json!("default");
        let denied = admit(&app, &pod_review(spec)).await;
        assert_eq!(denied["allowed"], false, "{denied}");
        assert!(
            message(&denied).contains("the pod has no pull secret for it"),
            "{denied}"
        );
        assert!(
            message(&denied).contains("kubectl patch serviceaccount default -n demo"),
            "{denied}"
        );
    })
    .await;
}

/// Each broken-secret case is denied with the cause named and the fix quoted.
#[tokio::test]
async fn each_broken_secret_case_is_named() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry(Auth::basic("alice", "s3cret")).await;
        let kube = fake_kube().await;
        let host = reg.host().to_owned();
        kube.insert_secret(
            NS,
            typed_secret("opaque", "Opaque", &[("password", b"s3cret")]),
        );
        kube.insert_secret(
            NS,
            typed_secret(
                "broken-json",
                "kubernetes.io/dockerconfigjson",
                &[(".dockerconfigjson", b"{not json")],
            ),
        );
        kube.insert_secret(
            NS,
            dockerconfigjson_secret("elsewhere", &[("registry.example.com", "alice", "s3cret")]),
        );
        kube.insert_secret(
            NS,
            dockerconfigjson_secret("wrong-password", &[(&host, "alice", "guess")]),
        );
        let app = app(
            &settings_for(&[&reg]),
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let cases = [
            (
                "missing",
                "secret \"missing\" not found in namespace demo",
                "create it: kubectl create secret docker-registry missing --docker-server=",
            ),
            (
                "opaque",
                "secret \"opaque\" has type Opaque",
                "recreate it: kubectl create secret docker-registry opaque",
            ),
            (
                "broken-json",
                "not valid JSON",
                "fix the secret, or remove it from imagePullSecrets: kubectl create secret docker-registry broken-json",
            ),
            (
                "elsewhere",
                &format!("has no entry for {host}"),
                &format!("add an entry for {host} to it"),
            ),
            (
                "wrong-password",
                &format!("credentials from secret \"wrong-password\" rejected by {host} (401)"),
                "kubectl create secret docker-registry wrong-password",
            ),
        ];
        for (secret, cause, fix) in cases {
            let response = admit(
                &app,
                &pod_review(spec_with_secrets(&image(&reg), &[secret])),
            )
            .await;
            assert_eq!(response["allowed"], false, "{secret}: {response}");
            let text = message(&response);
            assert!(text.contains("[pull-secret-valid]"), "{secret}: {text}");
            assert!(text.contains(cause), "{secret}: {text}");
            assert!(text.contains(fix), "{secret}: {text}");
            assert!(
                !text.contains("s3cret") && !text.contains("guess"),
                "{secret}: credentials leaked: {text}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn authenticated_but_denied_is_named() {
    registry::install_crypto();
    bounded(async {
        let denying = scripted::answering(403, r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#).await;
        let kube = fake_kube().await;
        kube.insert_secret(NS, dockerconfigjson_secret("regcred", &[(&denying.host, "alice", "s3cret")]));
        let mut settings = Settings::default();
        insecure(&mut settings, &denying.host);
        let app = app(&settings, Some(kube.client().expect("client")), shipped_policies());
        let image = format!("{}/team/app:v1", denying.host);
        let response = admit(&app, &pod_review(spec_with_secrets(&image, &["regcred"]))).await;
        assert_eq!(response["allowed"], false, "{response}");
        assert!(
            message(&response).contains("[pull-secret-valid] secret \"regcred\" is valid but has no pull access to team/app"),
            "{response}"
        );
    })
    .await;
}

#[tokio::test]
async fn missing_secret_for_a_public_image_is_only_a_warning() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry(Auth::None).await;
        let kube = fake_kube().await;
        let app = app(&settings_for(&[&reg]), Some(kube.client().expect("client")), shipped_policies());
        let response = admit(&app, &pod_review(spec_with_secrets(&image(&reg), &["gone"]))).await;
        let requests_after_first = reg.requests().len();
        assert_eq!(response["allowed"], true, "{response}");
        let found = warnings(&response);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("[pull-secret-valid] secret \"gone\" not found in namespace demo; the image pulls without it"), "{found:?}");
        // Again, answered by the caches alone (the warm path): the same warning.
        let again = admit(&app, &pod_review(spec_with_secrets(&image(&reg), &["gone"]))).await;
        assert_eq!(warnings(&again), found, "{again}");
        assert_eq!(reg.requests().len(), requests_after_first, "the second admission asked the registry");
    })
    .await;
}

#[tokio::test]
async fn broken_secrets_are_reported_when_the_registry_cannot_be_asked() {
    registry::install_crypto();
    bounded(async {
        // Nothing listens here: connection refused.
        let host = format!("127.0.0.1:{}", support::process::free_port());
        let kube = fake_kube().await;
        kube.insert_secret(
            NS,
            typed_secret("opaque", "Opaque", &[("password", b"s3cret")]),
        );
        let mut settings = Settings::default();
        insecure(&mut settings, &host);
        let app = app(
            &settings,
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let image = format!("{host}/team/app:v1");
        let response = admit(
            &app,
            &pod_review(spec_with_secrets(&image, &["opaque", "gone"])),
        )
        .await;
        assert_eq!(response["allowed"], true, "fail-open: {response}");
        let found = warnings(&response);
        assert!(
            found.iter().any(|w| w.contains("[registry-reachable]")),
            "{found:?}"
        );
        let secret = found
            .iter()
            .find(|w| w.contains("[pull-secret-valid]"))
            .unwrap_or_else(|| panic!("the secrets are still reported: {found:?}"));
        assert!(
            secret.contains("secret \"opaque\" has type Opaque")
                && secret.contains("(and 1 more)")
                && secret.contains(&format!("{host} could not be asked")),
            "{secret}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_secret_kubelet_cannot_decode_fails_every_image_even_public_ones() {
    registry::install_crypto();
    bounded(async {
        let public = private_registry(Auth::None).await;
        let kube = fake_kube().await;
        kube.insert_secret(
            NS,
            typed_secret(
                "bad-base64",
                "kubernetes.io/dockerconfigjson",
                &[(
                    ".dockerconfigjson",
                    br#"{"auths": {"r.example.com": {"auth": "!!!not base64"}}}"#,
                )],
            ),
        );
        kube.insert_secret(
            NS,
            dockerconfigjson_secret("good", &[(public.host(), "a", "b")]),
        );
        let app = app(
            &settings_for(&[&public]),
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let before = public.requests().len();
        let response = admit(
            &app,
            &pod_review(spec_with_secrets(&image(&public), &["good", "bad-base64"])),
        )
        .await;
        assert_eq!(response["allowed"], false, "{response}");
        let text = message(&response);
        assert!(
            text.contains("[pull-secret-valid] secret \"bad-base64\""),
            "{text}"
        );
        assert!(
            text.contains("is not valid base64")
                && text.contains("kubelet cannot build the pod's pull credentials"),
            "{text}"
        );
        assert_eq!(
            public.requests().len(),
            before,
            "the registry is never asked, as kubelet never asks it"
        );
    })
    .await;
}

#[tokio::test]
async fn token_auth_registry_checks_the_credentials() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry(Auth::token("bob", "hunter2")).await;
        let kube = fake_kube().await;
        kube.insert_secret(
            NS,
            dockerconfigjson_secret("good", &[(reg.host(), "bob", "hunter2")]),
        );
        kube.insert_secret(
            NS,
            dockerconfigjson_secret("bad", &[(reg.host(), "bob", "nope")]),
        );
        let app = app(
            &settings_for(&[&reg]),
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let ok = admit(
            &app,
            &pod_review(spec_with_secrets(&image(&reg), &["good"])),
        )
        .await;
        assert_eq!(ok["allowed"], true, "{ok}");
        let denied = admit(&app, &pod_review(spec_with_secrets(&image(&reg), &["bad"]))).await;
        assert_eq!(denied["allowed"], false, "{denied}");
        assert!(message(&denied).contains("rejected by"), "{denied}");
        assert!(reg.token_requests() >= 2, "the token endpoint was asked");
    })
    .await;
}

/// A verdict never rests on another pod's credentials: a wrong password after a right one (and the
/// reverse) on the same image and the same resolver.
#[tokio::test]
async fn credentials_of_one_pod_never_decide_for_another() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry(Auth::basic("alice", "s3cret")).await;
        let kube = fake_kube().await;
        kube.insert_secret(
            NS,
            dockerconfigjson_secret("good", &[(reg.host(), "alice", "s3cret")]),
        );
        kube.insert_secret(
            NS,
            dockerconfigjson_secret("bad", &[(reg.host(), "alice", "wrong")]),
        );
        for order in [["good", "bad"], ["bad", "good"]] {
            let app = app(
                &settings_for(&[&reg]),
                Some(kube.client().expect("client")),
                shipped_policies(),
            );
            for secret in order {
                let response = admit(
                    &app,
                    &pod_review(spec_with_secrets(&image(&reg), &[secret])),
                )
                .await;
                let expected = secret == "good";
                assert_eq!(
                    response["allowed"], expected,
                    "{order:?} {secret}: {response}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn node_credentials_are_tried_after_pod_secrets() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry(Auth::basic("node", "nodepass")).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.json");
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode("node:nodepass");
        std::fs::write(
            &config,
            json!({"auths": {reg.host(): {"auth": auth}}}).to_string(),
        )
        .expect("write");
        let mut settings = settings_for(&[&reg]);
        settings.node_credentials = Some(config);
        let kube = fake_kube().await;
        let app = app(
            &settings,
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let response = admit(&app, &pod_review(spec_with_secrets(&image(&reg), &[]))).await;
        assert_eq!(response["allowed"], true, "{response}");
    })
    .await;
}

#[tokio::test]
async fn without_a_kubernetes_api_pull_secrets_are_reported_not_verifiable() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry(Auth::basic("alice", "s3cret")).await;
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        let response = admit(
            &app,
            &pod_review(spec_with_secrets(&image(&reg), &["regcred"])),
        )
        .await;
        assert_eq!(
            response["allowed"], true,
            "not verifiable is not a denial: {response}"
        );
        let found = warnings(&response);
        assert!(
            found
                .iter()
                .any(|w| w.contains("[pull-secret-valid]") && w.contains("no Kubernetes API")),
            "{found:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn secret_lookups_are_cached_across_admissions() {
    registry::install_crypto();
    bounded(async {
        let reg = private_registry(Auth::basic("alice", "s3cret")).await;
        let kube = fake_kube().await;
        kube.insert_secret(
            NS,
            dockerconfigjson_secret("regcred", &[(reg.host(), "alice", "s3cret")]),
        );
        let (app, metrics) = app_with_metrics(
            &settings_for(&[&reg]),
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let review = pod_review(spec_with_secrets(&image(&reg), &["regcred"]));
        let responses = futures::future::join_all((0..50).map(|_| admit(&app, &review))).await;
        assert!(responses.iter().all(|r| r["allowed"] == true));
        assert_eq!(kube.requests(&support::kube::secret_path(NS, "regcred")), 1);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"pullgate_kubernetes_lookups_total{resource="secrets",outcome="found"} 1"#
            ),
            "{text}"
        );
    })
    .await;
}
