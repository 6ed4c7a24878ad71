//! Scripted registries that misbehave in ways a real one cannot be made to: endless or huge bodies,
//! broken token services, redirect loops, hostile realms. Each is a small HTTP(S) server on a loopback
//! address (127.0.0.1, or 127.0.0.2 as the stand-in for an address that must never be dialled) whose
//! answers come from a closure, and which records every request it gets (method, path, Authorization).
//! Every body it streams is bounded, and every wait ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;

/// One request a server got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub authorization: Option<String>,
}

/// What a server answers: from the request and the server's own base URL (`http://127.0.0.1:PORT`).
pub type Behaviour = Arc<dyn Fn(Hit, String) -> BoxFuture<'static, Response> + Send + Sync>;

/// A running scripted server; stops when dropped.
pub struct Server {
    /// `ADDRESS:PORT`, as in image references.
    pub host: String,
    /// `http(s)://ADDRESS:PORT`.
    pub base: String,
    /// The CA that signed its certificate (TLS servers).
    pub ca_path: Option<PathBuf>,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests whose path contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.hits()
            .iter()
            .filter(|h| h.method == method && h.path.contains(part))
            .count()
    }
}

/// Start a server on `ip` (a loopback address), over TLS with a test CA when `tls`.
pub async fn start(ip: &str, tls: bool, behaviour: Behaviour) -> Server {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind(format!("{ip}:0")).expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let host = addr.to_string();
    let base = format!("{}://{host}", if tls { "https" } else { "http" });
    let recorded = hits.clone();
    let own = base.clone();
    let app = Router::new().fallback(move |request: Request| {
        let hit = Hit {
            method: request.method().to_string(),
            path: request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            authorization: request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hit.clone());
        behaviour(hit, own.clone())
    });
    let (task, ca_path, dir) = if tls {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = super::registry::tls_files(dir.path()).expect("certificates");
        let config =
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert_path, &files.key_path)
                .await
                .expect("TLS config");
        let server = axum_server::from_tcp_rustls(listener, config).expect("TLS listener");
        let task = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        (task, Some(files.ca_path), Some(dir))
    } else {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (task, None, None)
    };
    Server {
        host,
        base,
        ca_path,
        hits,
        task,
        _dir: dir,
    }
}

/// A behaviour from a synchronous closure.
pub fn answer(f: impl Fn(&Hit, &str) -> Response + Send + Sync + 'static) -> Behaviour {
    Arc::new(move |hit, base| {
        let response = f(&hit, &base);
        Box::pin(async move { response })
    })
}

/// `200` with a body of `total` bytes streamed in 64 KiB chunks (at most 2 GiB), announcing its length
/// when `content_length`.
pub fn endless(total: u64, content_length: bool) -> Response {
    let total = total.min(2 << 30);
    let chunk = axum::body::Bytes::from(vec![b'{'; 64 * 1024]);
    let chunks = total.div_ceil(chunk.len() as u64);
    let stream =
        futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        "application/vnd.oci.image.index.v1+json"
            .parse()
            .expect("value"),
    );
    if content_length {
        headers.insert("content-length", total.to_string().parse().expect("value"));
    }
    response
}

/// `200` with this JSON body, as a manifest (its digest in `Docker-Content-Digest`).
pub fn manifest(body: Vec<u8>) -> Response {
    let digest = format!(
        "sha256:{}",
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    (
        StatusCode::OK,
        [
            (
                "content-type",
                "application/vnd.oci.image.index.v1+json".to_owned(),
            ),
            ("docker-content-digest", digest),
        ],
        body,
    )
        .into_response()
}

/// An OCI index with `entries` amd64 entries, each with its own digest (`seed` makes indexes differ).
pub fn index(entries: usize, seed: usize) -> Vec<u8> {
    let list: Vec<String> = (0..entries)
        .map(|i| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{:064x}","size":500,"platform":{{"os":"linux","architecture":"amd64"}}}}"#,
                seed * 1_000_000 + i
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        list.join(",")
    )
    .into_bytes()
}

/// A consistent image: a one-entry linux/amd64 index whose entry is a real single-image manifest (its digest
/// is the body's), answering `path` — the child for its own digest, the index for anything else.
pub fn consistent_image(path: &str, seed: usize) -> Response {
    let child = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{seed:064x}","size":100}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{:064x}","size":1000}}]}}"#,
        seed + 1
    )
    .into_bytes();
    let digest: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &child)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if path.ends_with(&format!("/manifests/sha256:{digest}")) {
        return manifest(child);
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{digest}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        child.len()
    );
    manifest(index.into_bytes())
}

/// `401` with a Bearer challenge naming `realm`.
pub fn bearer_challenge(realm: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            "www-authenticate",
            format!(r#"Bearer realm="{realm}",service="hostile""#),
        )],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
        .into_response()
}

/// A status with a small body.
pub fn status(code: u16, body: &'static str) -> Response {
    (
        StatusCode::from_u16(code).expect("status"),
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

/// A redirect to `location`.
pub fn redirect(location: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("location", location.parse().expect("location"));
    (StatusCode::TEMPORARY_REDIRECT, headers).into_response()
}

/// A behaviour that answers after `delay` (bounded: at most a minute).
pub fn hanging(delay: Duration) -> Behaviour {
    let delay = delay.min(Duration::from_secs(60));
    Arc::new(move |_, _| {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            status(500, "{}")
        })
    })
}

// What the hostile-registry tests share.

/// The admission budget the tests hold pullgate to (its default).
pub const BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

/// Admit one pod whose single container runs `image`; the response and how long it took.
pub async fn admit_image(
    settings: &pullgate::config::Settings,
    image: &str,
) -> (serde_json::Value, std::time::Duration) {
    let app = super::webhook::app(settings, None, super::webhook::shipped_policies());
    let started = std::time::Instant::now();
    let response = super::webhook::admit(
        &app,
        &super::webhook::pod_review(super::webhook::one_container(image)),
    )
    .await;
    (response, started.elapsed())
}

/// pullgate::config::Settings that reach a scripted server as the nodes would: plain HTTP, or its test CA.
pub fn reach(settings: &mut pullgate::config::Settings, server: &Server) {
    match &server.ca_path {
        None => super::webhook::insecure(settings, &server.host),
        Some(ca) => {
            settings.registries.insert(
                server.host.parse().expect("registry host"),
                pullgate::config::RegistrySettings {
                    ca: Some(ca.clone()),
                    ..pullgate::config::RegistrySettings::default()
                },
            );
        }
    }
}

/// Allowed, in time, with a warning of `rule` that says `text`, and no denial.
pub fn warns(response: &serde_json::Value, took: std::time::Duration, rule: &str, text: &str) {
    assert!(took < BUDGET, "took {took:?}");
    assert_eq!(response["allowed"], true, "{response}");
    let found = super::webhook::warnings(response);
    assert!(
        found
            .iter()
            .any(|w| w.contains(&format!("[{rule}]")) && w.contains(text)),
        "expected [{rule}] … {text} in {found:?}"
    );
    assert!(
        !found.iter().any(|w| w.contains("[pull-secret-valid]")),
        "a registry failure must not read as a credential verdict: {found:?}"
    );
}

pub async fn with_token_service(
    token: impl Fn(&Hit) -> axum::response::Response + Send + Sync + 'static,
) -> Server {
    start(
        "127.0.0.1",
        false,
        answer(move |hit, base| {
            if hit.path.starts_with("/token") {
                token(hit)
            } else {
                bearer_challenge(&format!("{base}/token"))
            }
        }),
    )
    .await
}
