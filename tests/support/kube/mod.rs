//! An in-process fake Kubernetes API for the Secrets and ServiceAccounts that pull credentials
//! come from, and a real `kube::Client` for it.
//!
//! [`FakeKube::start`] serves HTTPS on 127.0.0.1 with a random port and a certificate from a CA
//! generated at test time. It answers `GET /api/v1/namespaces/{ns}/secrets/{name}` and
//! `GET /api/v1/namespaces/{ns}/serviceaccounts/{name}` from an in-memory map, with a 404 `Status`
//! like the real apiserver when absent, counts requests per path, and can delay answers (to prove
//! that concurrent lookups share one request) or refuse a path with 403 (RBAC). Workloads stored with
//! [`FakeKube::insert_object`] are listed as the apiserver lists them (`GET /api/v1/pods`,
//! `/apis/apps/v1/namespaces/{ns}/deployments`, …) with `limit`/`continue` pagination and equality
//! `labelSelector`s.
#![allow(dead_code)] // each test binary uses a different part of the harness

mod leases;
mod lists;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};

/// Installs aws-lc-rs as the process-wide rustls provider; a second call is a no-op.
pub fn install_crypto() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// What the fake API holds and has seen.
#[derive(Default)]
struct Objects {
    /// `(namespace, resource, name)` -> object JSON; resource is `secrets` or `serviceaccounts`.
    objects: HashMap<(String, String, String), Value>,
    /// Request path -> how many GETs it received.
    requests: HashMap<String, usize>,
    /// Paths answered with 403 Forbidden.
    forbidden: Vec<String>,
    /// List requests received, as `path?query`.
    lists: Vec<String>,
    /// The last `resourceVersion` handed out (Leases).
    version: u64,
    delay: Duration,
}

type Shared = Arc<Mutex<Objects>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Objects> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running fake API server; stops on drop.
pub struct FakeKube {
    url: String,
    ca_der: Vec<u8>,
    shared: Shared,
    handle: Handle<std::net::SocketAddr>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl FakeKube {
    /// Starts an empty fake API on `https://127.0.0.1:<random>`.
    pub async fn start() -> anyhow::Result<Self> {
        install_crypto();
        let (ca_der, cert_der, key_der) = certificates()?;
        let tls = RustlsConfig::from_der(vec![cert_der], key_der)
            .await
            .context("building the fake API's TLS config")?;
        let shared = Shared::default();
        let app = Router::new()
            .route("/api/v1/nodes", get(list_nodes))
            .route(
                "/api/v1/namespaces/{namespace}/{resource}/{name}",
                get(answer),
            )
            .merge(lists::routes())
            .merge(leases::routes())
            .route(
                "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                axum::routing::post(token_request),
            )
            .with_state(Arc::clone(&shared));
        let handle = Handle::new();
        let server = axum_server::bind_rustls(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), tls)
            .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        let address = tokio::time::timeout(Duration::from_secs(5), handle.listening())
            .await
            .context("fake API did not start listening")?
            .context("fake API failed to bind")?;
        Ok(Self {
            url: format!("https://{address}"),
            ca_der,
            shared,
            handle,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// DER of the CA that signed the server certificate.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// A real kube client that trusts only this server's CA.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        install_crypto();
        let mut config = kube::Config::new(self.url.parse::<Uri>()?);
        config.root_cert = Some(vec![self.ca_der.clone()]);
        config.read_timeout = Some(Duration::from_secs(10));
        kube::Client::try_from(config).context("building the kube client")
    }

    /// Stores (or replaces) a Secret; its namespace is `namespace`.
    pub fn insert_secret(&self, namespace: &str, mut secret: Secret) {
        secret.metadata.namespace = Some(namespace.to_owned());
        self.insert(namespace, "secrets", secret.metadata.name.clone(), &secret);
    }

    /// Stores (or replaces) a ServiceAccount.
    pub fn insert_service_account(&self, namespace: &str, mut account: ServiceAccount) {
        account.metadata.namespace = Some(namespace.to_owned());
        self.insert(
            namespace,
            "serviceaccounts",
            account.metadata.name.clone(),
            &account,
        );
    }

    fn insert(
        &self,
        namespace: &str,
        resource: &str,
        name: Option<String>,
        object: &impl serde::Serialize,
    ) {
        let value = serde_json::to_value(object).expect("k8s-openapi objects serialise");
        lock(&self.shared).objects.insert(
            (
                namespace.to_owned(),
                resource.to_owned(),
                name.unwrap_or_default(),
            ),
            value,
        );
    }

    /// Delays every answer (requests are counted on arrival).
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.shared).delay = delay;
    }

    /// Answers `path` with 403 Forbidden from now on.
    pub fn forbid(&self, path: &str) {
        lock(&self.shared).forbidden.push(path.to_owned());
    }

    /// GETs received for `path`, e.g. `/api/v1/namespaces/demo/secrets/regcred`.
    pub fn requests(&self, path: &str) -> usize {
        lock(&self.shared).requests.get(path).copied().unwrap_or(0)
    }

    /// GETs received for any path.
    pub fn total_requests(&self) -> usize {
        lock(&self.shared).requests.values().sum()
    }
}

impl FakeKube {
    /// Stores a Node with these labels (served metadata-only by `GET /api/v1/nodes`).
    pub fn insert_node(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let node = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": name, "labels": labels}});
        lock(&self.shared)
            .objects
            .insert((String::new(), "nodes".to_owned(), name.to_owned()), node);
    }
}

/// `GET /api/v1/nodes` as a metadata-only list (what `list_metadata` asks for).
async fn list_nodes(State(shared): State<Shared>) -> Response {
    let mut objects = lock(&shared);
    *objects
        .requests
        .entry("/api/v1/nodes".to_owned())
        .or_default() += 1;
    if objects.forbidden.iter().any(|p| p == "/api/v1/nodes") {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "nodes is forbidden: cannot list resource \"nodes\"",
            "nodes",
            "",
        );
    }
    let items: Vec<Value> = objects
        .objects
        .iter()
        .filter(|((_, resource, _), _)| resource == "nodes")
        .map(|(_, node)| node.clone())
        .collect();
    Json(
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "1"}, "items": items}),
    )
    .into_response()
}

/// Path of a Secret in the API.
pub fn secret_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/secrets/{name}")
}

/// Path of a ServiceAccount in the API.
pub fn service_account_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}")
}

async fn answer(
    State(shared): State<Shared>,
    Path((namespace, resource, name)): Path<(String, String, String)>,
) -> Response {
    let path = format!("/api/v1/namespaces/{namespace}/{resource}/{name}");
    let (delay, found, forbidden) = {
        let mut objects = lock(&shared);
        *objects.requests.entry(path.clone()).or_default() += 1;
        let key = (namespace.clone(), resource.clone(), name.clone());
        (
            objects.delay,
            objects.objects.get(&key).cloned(),
            objects.forbidden.contains(&path),
        )
    };
    tokio::time::sleep(delay).await;
    if forbidden {
        let message = format!(
            "{resource} \"{name}\" is forbidden: User \"system:serviceaccount:pullgate:pullgate\" cannot get resource \"{resource}\" in API group \"\" in the namespace \"{namespace}\""
        );
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &message,
            &resource,
            &name,
        );
    }
    match found {
        Some(object) => Json(object).into_response(),
        None => {
            let message = format!("{resource} \"{name}\" not found");
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &message,
                &resource,
                &name,
            )
        }
    }
}

/// `POST …/serviceaccounts/NAME/token`: a TokenRequest answered with the token
/// `token-for-NAMESPACE-NAME-AUDIENCE` (404 when the account does not exist).
async fn token_request(
    State(shared): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    Json(request): Json<Value>,
) -> Response {
    let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token");
    let exists = {
        let mut objects = lock(&shared);
        *objects.requests.entry(path).or_default() += 1;
        objects.objects.contains_key(&(
            namespace.clone(),
            "serviceaccounts".to_owned(),
            name.clone(),
        ))
    };
    if !exists {
        let message = format!("serviceaccounts \"{name}\" not found");
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &message,
            "serviceaccounts",
            &name,
        );
    }
    let audience = request["spec"]["audiences"][0]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let mut answer = request;
    answer["apiVersion"] = json!("authentication.k8s.io/v1");
    answer["kind"] = json!("TokenRequest");
    answer["status"] = json!({
        "token": format!("token-for-{namespace}-{name}-{audience}"),
        "expirationTimestamp": "2099-01-01T00:00:00Z",
    });
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// A `Status` failure body as the apiserver writes it.
fn status(code: StatusCode, reason: &str, message: &str, resource: &str, name: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": name, "kind": resource},
        "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

/// A CA, and a server certificate for 127.0.0.1/localhost signed by it: `(ca, cert, key)` DER.
fn certificates() -> anyhow::Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pullgate fake kube CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &issuer)?;
    Ok((
        ca_cert.der().to_vec(),
        server_cert.der().to_vec(),
        server_key.serialize_der(),
    ))
}

/// A `kubernetes.io/dockerconfigjson` Secret with one `auth` entry per `(key, user, password)`.
pub fn dockerconfigjson_secret(name: &str, entries: &[(&str, &str, &str)]) -> Secret {
    use base64::Engine as _;
    let auths: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(key, user, pass)| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            (key.to_string(), json!({ "auth": auth }))
        })
        .collect();
    let bytes = serde_json::to_vec(&json!({ "auths": auths })).expect("JSON serialises");
    typed_secret(
        name,
        "kubernetes.io/dockerconfigjson",
        &[(".dockerconfigjson", &bytes)],
    )
}

/// A Secret of any type with the given data (raw bytes; the API shows them base64-encoded).
pub fn typed_secret(name: &str, type_: &str, data: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some(type_.to_owned()),
        data: Some(
            data.iter()
                .map(|(key, bytes)| (key.to_string(), ByteString(bytes.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// A ServiceAccount listing these `imagePullSecrets`.
pub fn service_account(name: &str, pull_secrets: &[&str]) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        image_pull_secrets: Some(
            pull_secrets
                .iter()
                .map(|name| LocalObjectReference {
                    name: (*name).to_owned(),
                })
                .collect(),
        ),
        ..ServiceAccount::default()
    }
}
