//! Listing workloads as the apiserver lists them: sorted by namespace and name, `limit`/`continue`
//! pagination, equality `labelSelector`s.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

use super::{FakeKube, Shared, lock, status};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/{resource}", get(list_core))
        .route(
            "/api/v1/namespaces/{namespace}/{resource}",
            get(list_core_in),
        )
        .route("/apis/{group}/{version}/{resource}", get(list_group))
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{resource}",
            get(list_group_in),
        )
}

impl FakeKube {
    /// Stores (or replaces) any object under its resource's plural (`pods`, `deployments`, …) in
    /// `namespace`; its `metadata.namespace` is set, and a `metadata.uid` made up when it has none.
    pub fn insert_object(&self, namespace: &str, resource: &str, mut object: Value) {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("objects have a name")
            .to_owned();
        object["metadata"]["namespace"] = json!(namespace);
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{namespace}-{resource}-{name}"));
        }
        lock(&self.shared)
            .objects
            .insert((namespace.to_owned(), resource.to_owned(), name), object);
    }

    /// Removes an object stored with [`FakeKube::insert_object`].
    pub fn remove_object(&self, namespace: &str, resource: &str, name: &str) {
        lock(&self.shared).objects.remove(&(
            namespace.to_owned(),
            resource.to_owned(),
            name.to_owned(),
        ));
    }

    /// List requests received so far, as `path?query`.
    pub fn list_requests(&self) -> Vec<String> {
        lock(&self.shared).lists.clone()
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    #[serde(rename = "continue")]
    continue_: Option<String>,
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
}

async fn list_core(
    State(shared): State<Shared>,
    Path(resource): Path<String>,
    Query(query): Query<ListQuery>,
    uri: Uri,
) -> Response {
    list(&shared, None, &resource, &query, &uri)
}

async fn list_core_in(
    State(shared): State<Shared>,
    Path((namespace, resource)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
    uri: Uri,
) -> Response {
    list(&shared, Some(&namespace), &resource, &query, &uri)
}

async fn list_group(
    State(shared): State<Shared>,
    Path((_group, _version, resource)): Path<(String, String, String)>,
    Query(query): Query<ListQuery>,
    uri: Uri,
) -> Response {
    list(&shared, None, &resource, &query, &uri)
}

async fn list_group_in(
    State(shared): State<Shared>,
    Path((_group, _version, namespace, resource)): Path<(String, String, String, String)>,
    Query(query): Query<ListQuery>,
    uri: Uri,
) -> Response {
    list(&shared, Some(&namespace), &resource, &query, &uri)
}

/// Whether an object's labels satisfy an equality selector (`a=b,c=d`).
fn selected(object: &Value, selector: Option<&str>) -> bool {
    selector.is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|term| {
            let (key, value) = term.split_once('=').unwrap_or((term, ""));
            object["metadata"]["labels"][key.trim()].as_str() == Some(value.trim_start_matches('='))
        })
    })
}

/// A list as the apiserver writes it: sorted by namespace and name, `limit` items at a time, the
/// offset of the next page as the `continue` token.
fn list(
    shared: &Shared,
    namespace: Option<&str>,
    resource: &str,
    query: &ListQuery,
    uri: &Uri,
) -> Response {
    let mut objects = lock(shared);
    objects.lists.push(uri.to_string());
    let path = uri.path().to_owned();
    if objects.forbidden.contains(&path) {
        let message = format!("{resource} is forbidden: cannot list resource \"{resource}\"");
        return status(StatusCode::FORBIDDEN, "Forbidden", &message, resource, "");
    }
    let mut items: Vec<(&(String, String, String), &Value)> = objects
        .objects
        .iter()
        .filter(|((ns, r, _), object)| {
            r == resource
                && namespace.is_none_or(|n| n == ns)
                && selected(object, query.label_selector.as_deref())
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    let start: usize = query
        .continue_
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit = query.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let page: Vec<Value> = items
        .iter()
        .skip(start)
        .take(limit)
        .map(|(_, object)| (*object).clone())
        .collect();
    let next = start.saturating_add(page.len());
    let mut metadata = json!({"resourceVersion": "1"});
    if next < items.len() {
        metadata["continue"] = json!(next.to_string());
        metadata["remainingItemCount"] = json!(items.len() - next);
    }
    Json(json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": page}))
        .into_response()
}

impl FakeKube {
    /// A kubeconfig file in `dir` for this API (its CA inline, a token nobody checks).
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = b64.encode(&self.ca_der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        );
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url,
                "certificate-authority-data": b64.encode(pem)}}],
            "users": [{"name": "tester", "user": {"token": "t"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
        });
        let path = dir.join("kubeconfig");
        std::fs::write(&path, config.to_string()).expect("write kubeconfig");
        path
    }
}
