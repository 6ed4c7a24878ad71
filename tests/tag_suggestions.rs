//! "Did you mean" on a missing tag: a real docker-registry's `tags/list`, and scripted registries for
//! pagination, caps and refusals. Admissions go through the real router.

mod support;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;
use support::hostile::{self, admit_image, answer, reach};
use support::registry::{self, ImageKind, Platform, RegistryOptions};
use support::webhook::{
    admit, app, bounded, message, one_container, pod_review, policy_text, settings_for,
};

const UNKNOWN: &str = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;

#[tokio::test]
async fn a_missing_tag_names_the_nearest_existing_ones_once_per_repository() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default()).await.expect("registry");
        for tag in ["v1.2.3", "v1.2.5", "v2.0.0", "latest"] {
            let image = ImageKind::single(Platform::linux("amd64"));
            registry::push_image(&reg, "team/app", tag, image).await.expect("push");
        }
        let app = app(&settings_for(&[&reg]), None, support::webhook::shipped_policies());
        let host = reg.host();
        let review = |tag: &str| pod_review(one_container(&format!("{host}/team/app:{tag}")));

        let response = admit(&app, &review("v1.2.4")).await;
        assert_eq!(response["allowed"], false, "{response}");
        let text = message(&response);
        assert!(
            text.contains(&format!(
                "[image-exists] tag \"v1.2.4\" not found in {host}/team/app — did you mean \"v1.2.3\" or \"v1.2.5\"? — check the tag, or push it"
            )),
            "{text}"
        );
        assert_eq!(reg.count_requests("GET", "/v2/team/app/tags/list"), 1);

        // Another missing tag of the same repository: the listing is reused.
        let response = admit(&app, &review("v2.0.1")).await;
        assert!(message(&response).contains("did you mean \"v2.0.0\""), "{response}");
        assert_eq!(reg.count_requests("GET", "/v2/team/app/tags/list"), 1, "cached per repository");

        // An existing tag never lists tags; a missing digest neither.
        let response = admit(&app, &review("v1.2.3")).await;
        assert_eq!(response["allowed"], true, "{response}");
        let digest = format!("{host}/team/app@sha256:{}", "0".repeat(64));
        let response = admit(&app, &pod_review(one_container(&digest))).await;
        assert!(!message(&response).contains("did you mean"), "{response}");
        assert_eq!(reg.count_requests("GET", "/v2/team/app/tags/list"), 1);
    })
    .await;
}

#[tokio::test]
async fn suggest_tags_false_asks_nothing_more() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let image = ImageKind::single(Platform::linux("amd64"));
        registry::push_image(&reg, "team/app", "v1.2.3", image)
            .await
            .expect("push");
        let policies = policy_text("image-exists: {action: deny, suggestTags: false}");
        let app = app(&settings_for(&[&reg]), None, policies);
        let image = format!("{}/team/app:v1.2.4", reg.host());
        let response = admit(&app, &pod_review(one_container(&image))).await;
        assert_eq!(response["allowed"], false, "{response}");
        assert!(!message(&response).contains("did you mean"), "{response}");
        assert_eq!(reg.count_requests("GET", "/tags/list"), 0);
    })
    .await;
}

#[tokio::test]
async fn pages_are_followed_on_the_same_host_up_to_the_cap() {
    registry::install_crypto();
    bounded(async {
        // Every page names one tag and links to the next, forever; page 3 has the near one.
        let registry = hostile::start(
            "127.0.0.1",
            false,
            answer(|hit, _| {
                if hit.path.contains("/manifests/") {
                    return hostile::status(404, UNKNOWN);
                }
                let page: usize = hit
                    .path
                    .split("last=p")
                    .nth(1)
                    .and_then(|n| n.split('&').next()?.parse().ok())
                    .unwrap_or(0);
                let tag = if page == 2 {
                    "v1.0.1".to_owned()
                } else {
                    format!("zz{page}")
                };
                let next = format!(
                    "</v2/team/app/tags/list?last=p{}&n=1>; rel=\"next\"",
                    page + 1
                );
                (
                    StatusCode::OK,
                    [
                        ("content-type", "application/json".to_owned()),
                        ("link", next),
                    ],
                    json!({"name": "team/app", "tags": [tag]}).to_string(),
                )
                    .into_response()
            }),
        )
        .await;
        let mut settings = pullgate::config::Settings::default();
        reach(&mut settings, &registry);
        let (response, _) =
            admit_image(&settings, &format!("{}/team/app:v1.0.0", registry.host)).await;
        assert!(
            message(&response).contains("did you mean \"v1.0.1\""),
            "{response}"
        );
        assert_eq!(registry.count("GET", "/tags/list"), 5, "at most 5 pages");
    })
    .await;
}

#[tokio::test]
async fn a_refused_or_foreign_listing_is_no_suggestion_and_no_new_finding() {
    registry::install_crypto();
    bounded(async {
        // 401/403/404 on the list; or a 200 whose next page is on another authority (the same server
        // named `localhost`: followed, it would be counted here).
        for status in [401, 403, 404, 200] {
            let registry = hostile::start(
                "127.0.0.1",
                false,
                answer(move |hit, base| {
                    if hit.path.contains("/manifests/") {
                        return hostile::status(404, UNKNOWN);
                    }
                    let mut response = (
                        StatusCode::from_u16(status).expect("status"),
                        json!({"tags": ["zzz"]}).to_string(),
                    )
                        .into_response();
                    let foreign = format!(
                        "<{}/v2/team/app/tags/list?last=zzz>; rel=\"next\"",
                        base.replace("127.0.0.1", "localhost")
                    );
                    response
                        .headers_mut()
                        .insert("link", foreign.parse().expect("header"));
                    response
                }),
            )
            .await;
            let mut settings = pullgate::config::Settings::default();
            reach(&mut settings, &registry);
            let (response, _) =
                admit_image(&settings, &format!("{}/team/app:v1", registry.host)).await;
            let text = message(&response);
            assert_eq!(response["allowed"], false, "{response}");
            assert!(text.contains("tag \"v1\" not found"), "{text}");
            assert!(!text.contains("did you mean"), "{status}: {text}");
            let warnings = response["response"]["warnings"]
                .as_array()
                .map_or(0, Vec::len);
            assert_eq!(warnings, 0, "no new finding: {response}");
            assert_eq!(
                registry.count("GET", "/tags/list"),
                1,
                "{status}: one request, nothing followed"
            );
        }
    })
    .await;
}
