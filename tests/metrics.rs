//! `/metrics` after a scripted set of admissions against a real registry: the counters moved as expected,
//! and label values stay within their fixed sets.

mod support;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::json;
use support::registry::{self, ImageKind, Platform, RegistryOptions};
use support::webhook::{
    admit, app_with_metrics, bounded, one_container, pod_review, settings_for, shipped_policies,
};
use tower::ServiceExt;

async fn scrape(app: &axum::Router) -> String {
    let response = app
        .clone()
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("text")
}

/// The value of the sample line that starts with `series` (name and labels exactly as exported).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn counters_follow_the_admissions() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default()).await.expect("registry");
        registry::push_image(&reg, "demo/app", "v1", ImageKind::single(Platform::linux("amd64")))
            .await
            .expect("push");
        let (app, _metrics) = app_with_metrics(&settings_for(&[&reg]), None, shipped_policies());
        let good = pod_review(one_container(&format!("{}/demo/app:v1", reg.host())));
        let missing = pod_review(one_container(&format!("{}/demo/app:v9", reg.host())));
        admit(&app, &good).await;
        admit(&app, &good).await; // cached: no new registry request
        admit(&app, &missing).await;
        let bad = app
            .clone()
            .oneshot(Request::post("/validate").body(Body::from("garbage")).expect("request"))
            .await
            .expect("answers");
        assert_eq!(bad.status(), 400);
        let mut delete = pod_review(json!({"containers": []}));
        delete["request"]["operation"] = json!("DELETE");
        admit(&app, &delete).await;

        let text = scrape(&app).await;
        let host = reg.host();
        assert_eq!(sample(&text, r#"pullgate_admissions_total{kind="Pod",operation="CREATE",verdict="allowed"}"#), 2.0, "{text}");
        assert_eq!(sample(&text, r#"pullgate_admissions_total{kind="Pod",operation="CREATE",verdict="denied"}"#), 1.0, "{text}");
        assert_eq!(sample(&text, r#"pullgate_admissions_total{kind="Pod",operation="DELETE",verdict="allowed"}"#), 1.0, "{text}");
        assert_eq!(sample(&text, r#"pullgate_admissions_total{kind="unknown",operation="unknown",verdict="invalid"}"#), 1.0, "{text}");
        assert_eq!(sample(&text, r#"pullgate_findings_total{rule="image-exists",action="deny"}"#), 1.0, "{text}");
        // One manifest GET per distinct tag (the second admission of v1 was answered from the cache),
        // and the config blob of the one that exists.
        let get_ok = format!(r#"pullgate_registry_requests_total{{registry="{host}",request="manifest_get",outcome="ok"}}"#);
        let get_missing = format!(r#"pullgate_registry_requests_total{{registry="{host}",request="manifest_get",outcome="not_found"}}"#);
        let blob_ok = format!(r#"pullgate_registry_requests_total{{registry="{host}",request="blob_get",outcome="ok"}}"#);
        assert_eq!(sample(&text, &get_ok), 1.0, "{text}");
        assert_eq!(sample(&text, &get_missing), 1.0, "{text}");
        assert_eq!(sample(&text, &blob_ok), 1.0, "{text}");
        assert!(!text.contains(r#"request="manifest_head""#), "{text}");
        assert_eq!(sample(&text, "pullgate_admissions_in_flight"), 0.0, "{text}");
        // v1 twice (a miss, then a hit), v9 once (a miss); platforms only for the image that exists.
        assert_eq!(sample(&text, r#"pullgate_cache_lookups_total{cache="digest",result="miss"}"#), 2.0, "{text}");
        assert_eq!(sample(&text, r#"pullgate_cache_lookups_total{cache="digest",result="hit"}"#), 1.0, "{text}");
        assert_eq!(sample(&text, r#"pullgate_cache_lookups_total{cache="platforms",result="miss"}"#), 1.0, "{text}");
        assert_eq!(sample(&text, r#"pullgate_cache_lookups_total{cache="platforms",result="hit"}"#), 1.0, "{text}");
        assert!(sample(&text, "pullgate_admission_duration_seconds_count") >= 4.0, "{text}");
        // No image or namespace names in any label.
        assert!(!text.contains("demo/app") && !text.contains("namespace="), "{text}");
    })
    .await;
}
