//! `coordination.k8s.io/v1` Leases as the apiserver keeps them: create (409 when it exists), get (404
//! when absent), replace only with the current `resourceVersion` (409 Conflict otherwise).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get, routing::post};
use serde_json::{Value, json};

use super::{FakeKube, Shared, lock, status};

const BASE: &str = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases";

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(BASE, post(create))
        .route(&format!("{BASE}/{{name}}"), get(read).put(replace))
}

fn key(namespace: &str, name: &str) -> (String, String, String) {
    (namespace.to_owned(), "leases".to_owned(), name.to_owned())
}

async fn create(
    State(shared): State<Shared>,
    Path(namespace): Path<String>,
    Json(mut lease): Json<Value>,
) -> Response {
    let mut objects = lock(&shared);
    let name = lease["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if objects.objects.contains_key(&key(&namespace, &name)) {
        let message = format!("leases.coordination.k8s.io \"{name}\" already exists");
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &message,
            "leases",
            &name,
        );
    }
    objects.version += 1;
    lease["metadata"]["namespace"] = json!(namespace);
    lease["metadata"]["resourceVersion"] = json!(objects.version.to_string());
    lease["apiVersion"] = json!("coordination.k8s.io/v1");
    lease["kind"] = json!("Lease");
    objects
        .objects
        .insert(key(&namespace, &name), lease.clone());
    (StatusCode::CREATED, Json(lease)).into_response()
}

async fn read(
    State(shared): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match lock(&shared).objects.get(&key(&namespace, &name)) {
        Some(lease) => Json(lease.clone()).into_response(),
        None => {
            let message = format!("leases.coordination.k8s.io \"{name}\" not found");
            status(StatusCode::NOT_FOUND, "NotFound", &message, "leases", &name)
        }
    }
}

async fn replace(
    State(shared): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    Json(mut lease): Json<Value>,
) -> Response {
    let mut objects = lock(&shared);
    let current = objects
        .objects
        .get(&key(&namespace, &name))
        .map(|l| l["metadata"]["resourceVersion"].clone());
    if current != Some(lease["metadata"]["resourceVersion"].clone()) {
        let message = format!(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        );
        return status(StatusCode::CONFLICT, "Conflict", &message, "leases", &name);
    }
    objects.version += 1;
    lease["metadata"]["resourceVersion"] = json!(objects.version.to_string());
    objects
        .objects
        .insert(key(&namespace, &name), lease.clone());
    Json(lease).into_response()
}

impl FakeKube {
    /// The Lease `namespace/name` as stored, if any.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.shared)
            .objects
            .get(&key(namespace, name))
            .cloned()
    }
}
