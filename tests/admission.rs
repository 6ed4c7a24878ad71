//! The HTTP layer with real AdmissionReview requests captured from a kube-apiserver, driven through
//! `router().oneshot`: uids, verdicts, every workload kind, UPDATE semantics and bad bodies.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pullgate::policy::PolicySet;
use pullgate::server::{AppState, BodyLimits, Metrics, PolicyStore, router};
use serde_json::{Value, json};
use tower::ServiceExt;

fn shipped_policies() -> Arc<PolicyStore> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    Arc::new(PolicyStore::fixed(
        PolicySet::load(&dir).expect("shipped policies load"),
    ))
}

fn app() -> axum::Router {
    router(AppState {
        policies: shipped_policies(),
        // Static rules only: these fixtures name public images, and tests stay on loopback.
        resolver: None,
        body: BodyLimits::new(8 * 1024 * 1024, std::time::Duration::from_secs(10)),
        metrics: Arc::new(Metrics::new(pullgate::telemetry::metrics_registry())),
    })
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// POST a body to /validate; the status and the decoded AdmissionReview answer.
async fn post_bytes(app: axum::Router, body: Vec<u8>) -> (StatusCode, Value) {
    let request = Request::post("/validate")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request builds");
    let response = app.oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

async fn post(review: &Value) -> Value {
    let (status, answer) = post_bytes(app(), serde_json::to_vec(review).expect("encodes")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    answer["response"].clone()
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn every_fixture_is_answered_with_its_uid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let review = fixture(name);
        let response = post(&review).await;
        assert_eq!(response["uid"], review["request"]["uid"], "{name}");
        seen += 1;
    }
    assert_eq!(seen, 9);
}

#[tokio::test]
async fn pinned_pod_is_allowed_without_findings() {
    let response = post(&fixture("admissionreview-v1-pod-create.json")).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("warnings").is_none(), "{response}");
}

#[tokio::test]
async fn latest_pod_is_denied_with_403_and_the_rule() {
    let response = post(&fixture("admissionreview-v1-pod-create-latest-denied.json")).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    let message = message(&response);
    assert!(
        message.starts_with("container \"app\" (image nginx:latest): [tag-not-latest] "),
        "{message}"
    );
}

#[tokio::test]
async fn dry_run_gets_the_same_verdict() {
    let real = post(&fixture("admissionreview-v1-pod-create-latest-denied.json")).await;
    let dry = post(&fixture("admissionreview-v1-pod-create-dryrun-denied.json")).await;
    assert_eq!(dry["allowed"], real["allowed"]);
    assert_eq!(message(&dry), message(&real));
    assert_eq!(dry["warnings"], real["warnings"]);
    let real = post(&fixture("admissionreview-v1-deployment-create.json")).await;
    let dry = post(&fixture("admissionreview-v1-deployment-create-dryrun.json")).await;
    assert_eq!(
        (dry["allowed"].clone(), dry["warnings"].clone()),
        (real["allowed"].clone(), real["warnings"].clone())
    );
}

#[tokio::test]
async fn scaling_a_deployment_is_allowed_with_no_findings() {
    for name in [
        "admissionreview-v1-deployment-update.json",
        "admissionreview-v1-deployment-update-dryrun.json",
    ] {
        let response = post(&fixture(name)).await;
        assert_eq!(response["allowed"], true, "{name}: {response}");
        assert!(response.get("warnings").is_none(), "{name}: {response}");
    }
}

/// A review of `object` of the given kind, built from the Deployment fixture's envelope.
fn review_of(group: &str, kind: &str, resource: &str, object: Value) -> Value {
    let mut review = fixture("admissionreview-v1-deployment-create.json");
    let request = &mut review["request"];
    request["uid"] = json!(format!("uid-{kind}"));
    let version = "v1";
    request["kind"] = json!({"group": group, "version": version, "kind": kind});
    request["requestKind"] = request["kind"].clone();
    request["resource"] = json!({"group": group, "version": version, "resource": resource});
    request["requestResource"] = request["resource"].clone();
    request["object"] = object;
    review
}

fn pod_spec_with_latest_init() -> Value {
    json!({
        "initContainers": [{"name": "migrate", "image": "busybox:latest", "imagePullPolicy": "Always"}],
        "containers": [{"name": "app", "image": "nginx:1.25.3", "imagePullPolicy": "IfNotPresent"}],
    })
}

fn templated(spec: Value) -> Value {
    json!({"template": {"metadata": {"labels": {"app": "x"}}, "spec": spec}})
}

#[tokio::test]
async fn every_workload_kind_with_a_latest_init_container_is_denied() {
    let spec = pod_spec_with_latest_init();
    let meta = json!({"name": "x", "namespace": "demo"});
    let cases = [
        (
            "batch",
            "CronJob",
            "cronjobs",
            json!({"metadata": meta, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": templated(spec.clone())}}}),
            "spec.jobTemplate.spec.template.spec",
        ),
        (
            "apps",
            "DaemonSet",
            "daemonsets",
            json!({"metadata": meta, "spec": templated(spec.clone())}),
            "spec.template.spec",
        ),
        (
            "apps",
            "StatefulSet",
            "statefulsets",
            json!({"metadata": meta, "spec": templated(spec.clone())}),
            "spec.template.spec",
        ),
        (
            "batch",
            "Job",
            "jobs",
            json!({"metadata": meta, "spec": templated(spec.clone())}),
            "spec.template.spec",
        ),
        (
            "",
            "ReplicationController",
            "replicationcontrollers",
            json!({"metadata": meta, "spec": templated(spec.clone())}),
            "spec.template.spec",
        ),
        (
            "apps",
            "ReplicaSet",
            "replicasets",
            json!({"metadata": meta, "spec": templated(spec.clone())}),
            "spec.template.spec",
        ),
        (
            "",
            "PodTemplate",
            "podtemplates",
            json!({"metadata": meta, "template": {"spec": spec.clone()}}),
            "template.spec",
        ),
        (
            "",
            "Pod",
            "pods",
            json!({"metadata": meta, "spec": spec.clone()}),
            "spec",
        ),
    ];
    for (group, kind, resource, object, _prefix) in cases {
        let review = review_of(group, kind, resource, object);
        let response = post(&review).await;
        assert_eq!(response["uid"], format!("uid-{kind}"));
        assert_eq!(response["allowed"], false, "{kind}: {response}");
        let message = message(&response);
        assert!(
            message.contains("container \"migrate\" (image busybox:latest): [tag-not-latest]"),
            "{kind}: {message}"
        );
        assert!(
            !message.contains("\"app\""),
            "{kind}: pinned container reported: {message}"
        );
    }
}

#[tokio::test]
async fn warnings_carry_the_field_path_and_come_with_denials() {
    let spec = json!({"containers": [
        {"name": "old", "image": "k8s.gcr.io/pause:3.9", "imagePullPolicy": "IfNotPresent"},
        {"name": "bad", "image": "nginx", "imagePullPolicy": "Always"},
    ]});
    let review = review_of(
        "apps",
        "Deployment",
        "deployments",
        json!({"metadata": {"name": "x", "namespace": "demo"}, "spec": templated(spec)}),
    );
    let response = post(&review).await;
    assert_eq!(response["allowed"], false);
    let warnings = response["warnings"].as_array().expect("warnings present");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = warnings[0].as_str().expect("string");
    assert!(
        warning.starts_with("spec.template.spec.containers[0].image: [registry-deprecated] "),
        "{warning}"
    );
    assert!(warning.contains("registry.k8s.io/pause:3.9"), "{warning}");
}

#[tokio::test]
async fn invalid_image_reference_is_denied() {
    let review = review_of(
        "",
        "Pod",
        "pods",
        json!({"metadata": {"name": "x", "namespace": "demo"}, "spec": {"containers": [{"name": "app", "image": "Nginx:1.0"}]}}),
    );
    let response = post(&review).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("[image-reference-valid]"),
        "{response}"
    );
}

fn update_review(old_spec: Value, new_spec: Value) -> Value {
    let mut review = fixture("admissionreview-v1-deployment-update.json");
    review["request"]["object"]["spec"]["template"]["spec"] = new_spec;
    review["request"]["oldObject"]["spec"]["template"]["spec"] = old_spec;
    review
}

#[tokio::test]
async fn update_checks_only_changed_images() {
    let old = json!({"containers": [{"name": "app", "image": "nginx:latest"}, {"name": "side", "image": "envoy:1.0"}]});
    // The latest image was already there: untouched, so not blocked.
    let unchanged = update_review(old.clone(), old.clone());
    assert_eq!(post(&unchanged).await["allowed"], true);
    // A changed image is checked.
    let changed = update_review(
        old.clone(),
        json!({"containers": [{"name": "app", "image": "nginx:latest"}, {"name": "side", "image": "envoy"}]}),
    );
    let response = post(&changed).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("container \"side\""),
        "{response}"
    );
    assert!(
        !message(&response).contains("container \"app\""),
        "{response}"
    );
}

#[tokio::test]
async fn update_rechecks_everything_when_pull_context_changes() {
    let old = json!({"containers": [{"name": "app", "image": "nginx:latest"}]});
    for change in [
        json!({"imagePullSecrets": [{"name": "regcred"}]}),
        json!({"serviceAccountName": "builder"}),
        json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
    ] {
        let mut new = old.clone();
        for (k, v) in change.as_object().expect("object") {
            new[k] = v.clone();
        }
        let response = post(&update_review(old.clone(), new)).await;
        assert_eq!(response["allowed"], false, "{change}: {response}");
    }
}

#[tokio::test]
async fn ephemeral_container_added_by_kubectl_debug_is_checked() {
    let mut review = fixture("admissionreview-v1-pod-create.json");
    let request = &mut review["request"];
    request["operation"] = json!("UPDATE");
    request["subResource"] = json!("ephemeralcontainers");
    let old = request["object"].clone();
    request["oldObject"] = old;
    request["object"]["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox", "targetContainerName": "app"}]);
    let response = post(&review).await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        message(&response).contains("container \"debugger\" (image busybox)"),
        "{response}"
    );
}

#[tokio::test]
async fn other_subresources_kinds_and_operations_are_allowed_untouched() {
    let base = fixture("admissionreview-v1-pod-create-latest-denied.json");
    let mut status = base.clone();
    status["request"]["subResource"] = json!("status");
    let mut delete = base.clone();
    delete["request"]["operation"] = json!("DELETE");
    let mut connect = base.clone();
    connect["request"]["operation"] = json!("CONNECT");
    let service = review_of(
        "",
        "Service",
        "services",
        json!({"metadata": {"name": "s"}, "spec": {"ports": []}}),
    );
    let custom = review_of(
        "example.com",
        "Pod",
        "pods",
        base["request"]["object"].clone(),
    );
    for review in [status, delete, connect, service, custom] {
        let response = post(&review).await;
        assert_eq!(response["allowed"], true, "{review}: {response}");
        assert!(response.get("warnings").is_none());
    }
}

#[tokio::test]
async fn bad_bodies_get_a_clear_answer() {
    let mut truncated =
        serde_json::to_vec(&fixture("admissionreview-v1-pod-create.json")).expect("encodes");
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "empty",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "request body is empty",
        ),
        (
            "garbage",
            b"\x00\x01garbage\xff".to_vec(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "truncated",
            truncated,
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "other JSON",
            br#"{"hello":"world"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview",
        ),
        (
            "20 MiB",
            vec![b' '; 20 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the 8388608-byte limit",
        ),
    ];
    for (name, body, expected_status, expected_message) in cases {
        let (status, answer) = post_bytes(app(), body).await;
        assert_eq!(status, expected_status, "{name}");
        let response = &answer["response"];
        assert_eq!(response["allowed"], false, "{name}");
        let text = message(response);
        assert!(text.starts_with("pullgate: "), "{name}: {text}");
        assert!(text.contains(expected_message), "{name}: {text}");
    }
}

#[tokio::test]
async fn health_and_readiness() {
    for path in ["/healthz", "/readyz"] {
        let response = app()
            .oneshot(Request::get(path).body(Body::empty()).expect("builds"))
            .await
            .expect("answers");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

/// A policy directory holding the shipped policy, and a store that reloads it.
fn reloading_store() -> (tempfile::TempDir, Arc<PolicyStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.yaml");
    std::fs::copy(&shipped, dir.path().join("default.yaml")).expect("copy");
    let store = Arc::new(PolicyStore::load(dir.path()).expect("valid"));
    (dir, store)
}

fn reloading_app(store: &Arc<PolicyStore>) -> axum::Router {
    router(AppState {
        policies: store.clone(),
        resolver: None,
        body: BodyLimits::new(1 << 20, std::time::Duration::from_secs(10)),
        metrics: Arc::new(Metrics::new(pullgate::telemetry::metrics_registry())),
    })
}

/// `/readyz` must answer 503; its text.
async fn readyz_refusal(app: axum::Router) -> String {
    let ready = app
        .oneshot(Request::get("/readyz").body(Body::empty()).expect("builds"))
        .await
        .expect("answers");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = ready.into_body().collect().await.expect("reads").to_bytes();
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test]
async fn invalid_policy_change_keeps_the_last_good_set_and_turns_readyz_red() {
    let (dir, store) = reloading_store();
    let app = || reloading_app(&store);
    std::fs::write(dir.path().join("broken.yaml"), "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: b}\nspec: {rules: {tag-not-lates: {}}}\n").expect("write");
    store.reload_if_changed();
    let text = readyz_refusal(app()).await;
    assert!(
        text.contains("broken.yaml: document 1: spec.rules.tag-not-lates"),
        "{text}"
    );
    // The last good policies still decide.
    let review = serde_json::to_vec(&fixture("admissionreview-v1-pod-create-latest-denied.json"))
        .expect("encodes");
    let (_, answer) = post_bytes(app(), review).await;
    assert_eq!(answer["response"]["allowed"], false);
    // Fixing the file turns it green again.
    std::fs::remove_file(dir.path().join("broken.yaml")).expect("remove");
    store.reload_if_changed();
    assert_eq!(store.error(), None);
}

#[tokio::test]
async fn an_emptied_policy_file_keeps_the_last_good_set_and_turns_readyz_red() {
    let (dir, store) = reloading_store();
    let app = || reloading_app(&store);
    for emptied in ["", "# all rules moved elsewhere\n", "---\n"] {
        std::fs::write(dir.path().join("default.yaml"), emptied).expect("empty the file");
        assert_eq!(store.reload_if_changed(), Some(false), "{emptied:?}");
        let text = readyz_refusal(app()).await;
        assert!(
            text.contains("default.yaml: no policy document") && text.contains("action: off"),
            "{text}"
        );
        // nginx:latest stays denied by the last good set.
        let review =
            serde_json::to_vec(&fixture("admissionreview-v1-pod-create-latest-denied.json"))
                .expect("encodes");
        let (_, answer) = post_bytes(app(), review).await;
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
    }
}

#[tokio::test]
async fn oversized_objects_are_refused_with_a_short_clear_answer() {
    let base = fixture("admissionreview-v1-pod-create-latest-denied.json");
    let containers: Vec<Value> = (0..40_000)
        .map(|i| serde_json::json!({"name": format!("c{i}"), "image": format!("r.example/app{i}")}))
        .collect();
    let mut crowded = base.clone();
    crowded["request"]["object"]["spec"]["containers"] = Value::Array(containers);
    let mut long_image = base.clone();
    long_image["request"]["object"]["spec"]["containers"][0]["image"] =
        Value::String(format!("r.example/{}", "a".repeat(1 << 20)));
    for (review, said) in [
        (
            crowded,
            "containers and image volumes; pullgate checks at most 1000 per object",
        ),
        (long_image, "spec.containers[0].image is 1048586 bytes long"),
    ] {
        let response = post(&review).await;
        assert_eq!(response["allowed"], false, "{response}");
        assert_eq!(response["status"]["code"], 400);
        assert!(message(&response).contains(said), "{}", message(&response));
        assert!(message(&response).len() < 300);
    }
}
