//! Round trips, counted in a real docker-registry's access log (and the token service's own count): for
//! a pod that leaves nothing to the image config (a command, no `runAsNonRoot`), a cold image index
//! costs 2 requests (the index, and for `image-size` the platform manifest the pod's nodes pull), a
//! single-platform image 2 (manifest and config), the same behind Basic auth 3 (the first challenge,
//! then both authenticated); a pod whose start the image config decides costs one request more for an
//! index (the config of the entry its node pulls) and none more for a single image (its config is read
//! for the platform anyway); behind token auth the second image of a repository makes no token request.
//! No `/v2/` ping, no `HEAD` before a `GET`.

mod support;

use pullgate::config::Settings;
use support::kube::{FakeKube, dockerconfigjson_secret};
use support::registry::{
    self, Auth, ImageKind, Platform, RegistryOptions, TestRegistry, push_image,
};
use support::webhook::{admit, app, bounded, pod_review, settings_for, shipped_policies};

/// Requests the registry served since `before`, as `(method, path)`.
fn since(reg: &TestRegistry, before: usize) -> Vec<(String, String)> {
    reg.requests().split_off(before)
}

/// Admit a pod running `image` with a pull secret for `reg` when it has credentials, and a command:
/// nothing is left to the image config.
async fn admit_once(app: &axum::Router, image: &str) -> serde_json::Value {
    let spec = serde_json::json!({"imagePullSecrets": [{"name": "regcred"}],
        "containers": [{"name": "app", "image": image, "command": ["/app"]}]});
    admit(app, &pod_review(spec)).await
}

/// Admit a pod running `image` that leaves its start to the image config: no command, and
/// `runAsNonRoot` without `runAsUser`.
async fn admit_config(app: &axum::Router, image: &str) -> serde_json::Value {
    let spec = serde_json::json!({"imagePullSecrets": [{"name": "regcred"}],
        "securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "app", "image": image}]});
    admit(app, &pod_review(spec)).await
}

async fn app_for(reg: &TestRegistry, settings: &Settings) -> (axum::Router, FakeKube) {
    let kube = FakeKube::start().await.expect("fake API");
    if let Some((user, pass)) = reg.auth().credentials() {
        kube.insert_secret(
            "demo",
            dockerconfigjson_secret("regcred", &[(reg.host(), user, pass)]),
        );
    }
    let app = app(
        settings,
        Some(kube.client().expect("client")),
        shipped_policies(),
    );
    (app, kube)
}

#[tokio::test]
async fn cold_lookups_cost_the_fewest_requests_the_protocol_allows() {
    registry::install_crypto();
    bounded(async {
        let plain = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let multi = ImageKind::OciIndex(vec![Platform::linux("amd64"), Platform::linux("arm64")]);
        push_image(&plain, "team/multi", "v1", multi)
            .await
            .expect("push");
        push_image(
            &plain,
            "team/single",
            "v1",
            ImageKind::single(Platform::linux("amd64")),
        )
        .await
        .expect("push");
        let basic = registry::start(RegistryOptions {
            auth: Auth::basic("alice", "s3cret"),
            storage: Some(plain.storage_dir().to_owned()),
            ..Default::default()
        })
        .await
        .expect("registry");
        let settings = settings_for(&[&plain, &basic]);

        let (app, _kube) = app_for(&plain, &settings).await;
        let before = plain.requests().len();
        let response = admit_once(&app, &format!("{}/team/multi:v1", plain.host())).await;
        assert_eq!(response["allowed"], true, "{response}");
        let index = since(&plain, before);
        // The index, and (image-size, on in the shipped policy) the one platform manifest an amd64
        // node would pull; nothing for arm64, where the pod does not land.
        assert_eq!(index.len(), 2, "an index: {index:?}");
        assert!(index.iter().all(|(method, _)| method == "GET"), "{index:?}");
        assert!(index[0].1.ends_with("/manifests/v1") && index[1].1.contains("/manifests/sha256:"));

        let before = plain.requests().len();
        let response = admit_once(&app, &format!("{}/team/single:v1", plain.host())).await;
        assert_eq!(response["allowed"], true, "{response}");
        let single = since(&plain, before);
        assert_eq!(single.len(), 2, "a single-platform image: {single:?}");
        assert!(single[0].1.contains("/manifests/v1") && single[1].1.contains("/blobs/sha256:"));

        let (app, _kube) = app_for(&basic, &settings).await;
        let before = basic.requests().len();
        let response = admit_once(&app, &format!("{}/team/single:v1", basic.host())).await;
        assert_eq!(response["allowed"], true, "{response}");
        let behind_basic = since(&basic, before);
        assert_eq!(behind_basic.len(), 3, "behind Basic auth: {behind_basic:?}");
        assert!(!behind_basic.iter().any(|(_, path)| path == "/v2/"));
    })
    .await;
}

#[tokio::test]
async fn a_pod_whose_start_the_image_config_decides_costs_one_config_read_per_index() {
    registry::install_crypto();
    bounded(async {
        let plain = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let user = || Platform::linux("amd64").with_user("1001");
        let multi = ImageKind::OciIndex(vec![user(), Platform::linux("arm64").with_user("1001")]);
        push_image(&plain, "team/multi", "v1", multi)
            .await
            .expect("push");
        push_image(&plain, "team/single", "v1", ImageKind::single(user()))
            .await
            .expect("push");
        let settings = settings_for(&[&plain]);
        let (app, _kube) = app_for(&plain, &settings).await;

        let before = plain.requests().len();
        let response = admit_config(&app, &format!("{}/team/multi:v1", plain.host())).await;
        assert_eq!(response["allowed"], true, "{response}");
        let index = since(&plain, before);
        // The index, the amd64 manifest (image-size and the start rules share it) and its config.
        assert_eq!(index.len(), 3, "an index: {index:?}");
        assert!(index[0].1.ends_with("/manifests/v1") && index[1].1.contains("/manifests/sha256:"));
        assert!(index[2].1.contains("/blobs/sha256:"), "{index:?}");

        let before = plain.requests().len();
        let response = admit_config(&app, &format!("{}/team/single:v1", plain.host())).await;
        assert_eq!(response["allowed"], true, "{response}");
        let single = since(&plain, before);
        // The config read for the platform is the one the start rules read: nothing more.
        assert_eq!(single.len(), 2, "a single-platform image: {single:?}");

        // Warm: no request for either.
        let before = plain.requests().len();
        for image in ["team/multi:v1", "team/single:v1"] {
            let response = admit_config(&app, &format!("{}/{image}", plain.host())).await;
            assert_eq!(response["allowed"], true, "{response}");
        }
        assert_eq!(since(&plain, before), Vec::new());
    })
    .await;
}

#[tokio::test]
async fn a_second_image_of_a_repository_behind_token_auth_needs_no_token_request() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions {
            auth: Auth::token("bob", "t0ken-pass"),
            ..Default::default()
        })
        .await
        .expect("registry");
        for tag in ["v1", "v2"] {
            push_image(
                &reg,
                "team/app",
                tag,
                ImageKind::single(Platform::linux("amd64")),
            )
            .await
            .expect("push");
        }
        let settings = settings_for(&[&reg]);
        let (app, _kube) = app_for(&reg, &settings).await;

        let (tokens, before) = (reg.token_requests(), reg.requests().len());
        let response = admit_once(&app, &format!("{}/team/app:v1", reg.host())).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(
            reg.token_requests() - tokens,
            1,
            "the first image fetches one token"
        );
        let first = since(&reg, before);
        assert_eq!(first.len(), 3, "challenge, manifest, config: {first:?}");

        let (tokens, before) = (reg.token_requests(), reg.requests().len());
        let response = admit_once(&app, &format!("{}/team/app:v2", reg.host())).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(
            reg.token_requests(),
            tokens,
            "the cached token serves the repository"
        );
        let second = since(&reg, before);
        assert_eq!(second.len(), 2, "manifest and config only: {second:?}");
    })
    .await;
}

#[tokio::test]
async fn a_warm_admission_does_not_lengthen_a_tags_life() {
    // Where pulls are counted a tag is resolved with a HEAD, so its cache entry starts without the
    // image's platforms; the first warm admission folds them in. That must keep the entry's lifetime:
    // the tag is asked again `tagTtlSeconds` after it was first resolved, however warm it stayed.
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let single = ImageKind::single(Platform::linux("amd64"));
        push_image(&reg, "team/app", "v1", single)
            .await
            .expect("push");
        let mut settings = settings_for(&[&reg]);
        settings.resolution.tag_ttl_seconds = 2;
        if let Some(entry) = settings.registries.get_mut(reg.host()) {
            entry.pull_quota = Some(true);
        }
        let (app, _kube) = app_for(&reg, &settings).await;
        let image = format!("{}/team/app:v1", reg.host());
        let (started, before) = (std::time::Instant::now(), reg.requests().len());
        let response = admit_once(&app, &image).await;
        assert_eq!(response["allowed"], true, "{response}");
        let cold = since(&reg, before);
        assert_eq!(cold[0].0, "HEAD", "resolved with a HEAD: {cold:?}");
        // Then the manifest by digest and its config, once each: the manifest read for the platforms
        // also gives `image-size` its layers (no second GET counted against the pull quota).
        let manifests = cold
            .iter()
            .filter(|(method, path)| method == "GET" && path.contains("/manifests/"))
            .count();
        assert_eq!((cold.len(), manifests), (3, 1), "{cold:?}");

        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        for _ in 0..2 {
            let before = reg.requests().len();
            let response = admit_once(&app, &image).await;
            assert_eq!(response["allowed"], true, "{response}");
            assert_eq!(since(&reg, before), [], "warm: no request");
        }

        let expired = std::time::Duration::from_millis(2400);
        tokio::time::sleep(expired.saturating_sub(started.elapsed())).await;
        let before = reg.requests().len();
        let response = admit_once(&app, &image).await;
        assert_eq!(response["allowed"], true, "{response}");
        let again = since(&reg, before);
        assert!(
            again
                .first()
                .is_some_and(|(method, path)| method == "HEAD" && path.ends_with("/manifests/v1")),
            "the tag is resolved again once its time is up: {again:?}"
        );
    })
    .await;
}
