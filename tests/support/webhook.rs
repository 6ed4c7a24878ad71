//! Driving the webhook in tests: a router with a resolver built from settings exactly as `serve` builds
//! it, AdmissionReviews for pod specs, and readers for the answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use pullgate::config::RegistrySettings;
use pullgate::config::Settings;
use pullgate::policy::PolicySet;
use pullgate::resolve::Updates;
use pullgate::server::{AppState, BodyLimits, Metrics, PolicyStore, router};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::registry::TestRegistry;

/// Settings that reach `registry` the way the nodes would (plain HTTP or its test CA). The test
/// registries are on 127.0.0.1, which `serve` refuses unless allowed: they allow loopback.
pub fn settings_for(registries: &[&TestRegistry]) -> Settings {
    let mut settings = Settings::default();
    allow_loopback(&mut settings);
    for reg in registries {
        settings.registries.insert(
            reg.host().parse().expect("registry host"),
            RegistrySettings {
                insecure: reg.ca_path().is_none(),
                ca: reg.ca_path().map(Path::to_owned),
                ..RegistrySettings::default()
            },
        );
    }
    settings
}

/// Let `serve` dial 127.0.0.0/8, where the test registries listen.
pub fn allow_loopback(settings: &mut Settings) {
    let loopback = "127.0.0.0/8".parse().expect("range");
    if !settings.network.allow_cidrs.contains(&loopback) {
        settings.network.allow_cidrs.push(loopback);
    }
}

/// Reach `host` over plain HTTP (and allow loopback, where test registries listen).
pub fn insecure(settings: &mut Settings, host: &str) {
    allow_loopback(settings);
    settings.registries.insert(
        host.parse().expect("registry host"),
        RegistrySettings {
            insecure: true,
            ..RegistrySettings::default()
        },
    );
}

pub fn shipped_policies() -> PolicySet {
    PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).expect("policies")
}

/// The app with a resolver built from `settings` exactly as `serve` builds it (loopback allowed).
pub fn app(settings: &Settings, kube: Option<kube::Client>, policies: PolicySet) -> axum::Router {
    app_with_metrics(settings, kube, policies).0
}

/// [`app`], and the metrics it records into.
pub fn app_with_metrics(
    settings: &Settings,
    kube: Option<kube::Client>,
    policies: PolicySet,
) -> (axum::Router, Arc<Metrics>) {
    let (app, _, metrics) = app_with_resolver(settings, kube, policies);
    (app, metrics)
}

/// [`app`], the updates of its resolver (to change node platforms or budgets) and its metrics.
pub fn app_with_resolver(
    settings: &Settings,
    kube: Option<kube::Client>,
    policies: PolicySet,
) -> (axum::Router, Updates, Arc<Metrics>) {
    // Every test registry is on 127.0.0.1, which `serve` refuses unless allowed (a test that needs a
    // refusal denies its own, more specific range).
    let mut settings = settings.clone();
    allow_loopback(&mut settings);
    let mut registry = pullgate::telemetry::metrics_registry();
    let wired = pullgate::wiring::serve(&settings, kube, &mut registry).expect("resolver builds");
    let metrics = Arc::new(Metrics::new(registry));
    let app = router_for(wired.resolver, metrics.clone(), policies);
    (app, wired.updates, metrics)
}

/// The routes over an already built resolver.
pub fn router_for(
    resolver: pullgate::resolve::Resolver,
    metrics: Arc<Metrics>,
    policies: PolicySet,
) -> axum::Router {
    router(AppState {
        policies: Arc::new(PolicyStore::fixed(policies)),
        resolver: Some(Arc::new(resolver)),
        body: BodyLimits::new(8 << 20, std::time::Duration::from_secs(10)),
        metrics,
    })
}

/// An AdmissionReview creating a Pod with this spec in namespace `demo`.
pub fn pod_review(spec: Value) -> Value {
    review(
        json!({"group": "", "version": "v1", "kind": "Pod"}),
        json!({"group": "", "version": "v1", "resource": "pods"}),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "demo"}, "spec": spec}),
    )
}

/// An AdmissionReview creating a Deployment in namespace `demo` whose pod template has this spec.
pub fn deployment_review(spec: Value) -> Value {
    review(
        json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
        json!({"group": "apps", "version": "v1", "resource": "deployments"}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}}),
    )
}

/// A CREATE of `object` named `web` in namespace `demo`.
fn review(kind: Value, resource: Value, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "3b1e5a30-0000-4000-8000-000000000001",
            "kind": kind, "resource": resource,
            "name": "web", "namespace": "demo", "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": object,
            "dryRun": false
        }
    })
}

pub fn one_container(image: &str) -> Value {
    json!({"containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}]})
}

/// Send a review through the router; the AdmissionReview response.
pub async fn admit(app: &axum::Router, review: &Value) -> Value {
    let request = Request::post("/validate")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).expect("encodes")))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("answers");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
    answer["response"].clone()
}

pub fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

pub fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Fail fast instead of hanging: every test body is bounded.
pub async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(90), test)
        .await
        .expect("test finished within 90 s");
}

/// A policy with just these rules (YAML flow entries, one per line).
pub fn policy_text(rules: &str) -> PolicySet {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.yaml"),
        format!("apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: t}}\nspec:\n  rules:\n    {}\n", rules.replace('\n', "\n    ")),
    )
    .expect("write");
    PolicySet::load(dir.path()).expect("test policy")
}
