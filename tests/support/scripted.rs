//! Misbehaving registries for failure tests: a tiny HTTP server on 127.0.0.1 that answers every manifest
//! request with a fixed status and body (429, 403, 500, garbage), and a TCP listener that accepts
//! connections and never answers. Real registries cannot be made to do either on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

/// A scripted registry; stops when dropped.
pub struct Scripted {
    pub host: String,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `/v2/` as a registry whose every manifest request gets `status` with `body` (JSON content type).
pub async fn answering(status: u16, body: &'static str) -> Scripted {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let status = StatusCode::from_u16(status).expect("valid status");
    let manifest = move |_headers: HeaderMap| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (
                status,
                [("content-type", "application/json")],
                body.to_owned(),
            )
                .into_response()
        }
    };
    let app = Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route("/v2/{*rest}", get(manifest.clone()).head(manifest));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let host = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Scripted {
        host,
        requests,
        task,
    }
}

/// A TCP listener on 127.0.0.1 that accepts connections and never sends a byte.
pub async fn silent() -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let host = listener.local_addr().expect("addr").to_string();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        // Bounded: at most 1,000 connections are held, then the listener stops accepting.
        while held.len() < 1_000 {
            let Ok((socket, _)) = listener.accept().await else {
                break;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
        std::future::pending::<()>().await;
    });
    Scripted {
        host,
        requests,
        task,
    }
}

/// A registry that publishes a pull budget like Docker Hub: an anonymous `HEAD` gets a Bearer challenge
/// pointing at its own `/token`, and with the token the `ratelimit-*` headers (`remaining` of 100 per 6 h).
pub async fn budgeted(remaining: u64) -> Scripted {
    use axum::extract::Query;
    use std::collections::HashMap;

    let requests = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let host = listener.local_addr().expect("addr").to_string();
    let realm = format!("http://{host}/token");
    let counter = requests.clone();
    let manifest = move |headers: HeaderMap| {
        let counter = counter.clone();
        let realm = realm.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
                == Some("Bearer budget-token");
            if authorized {
                (
                    StatusCode::OK,
                    [
                        ("ratelimit-limit", "100;w=21600".to_owned()),
                        ("ratelimit-remaining", format!("{remaining};w=21600")),
                    ],
                )
                    .into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [(
                        "www-authenticate",
                        format!(r#"Bearer realm="{realm}",service="budget-test""#),
                    )],
                )
                    .into_response()
            }
        }
    };
    let token = |Query(query): Query<HashMap<String, String>>| async move {
        let scoped = query
            .get("scope")
            .is_some_and(|s| s == "repository:ratelimitpreview/test:pull");
        if scoped && query.get("service").map(String::as_str) == Some("budget-test") {
            r#"{"token":"budget-token"}"#.into_response()
        } else {
            StatusCode::BAD_REQUEST.into_response()
        }
    };
    let app = Router::new()
        .route("/token", get(token))
        .route("/v2/{*rest}", get(manifest.clone()).head(manifest));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Scripted {
        host,
        requests,
        task,
    }
}

/// One request a [`Proxy`] forwarded: method, path (with query), the Basic username it carried (if any)
/// and the upstream's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub user: Option<String>,
    pub status: u16,
}

/// A plain-HTTP proxy on 127.0.0.1 in front of a registry: adds `delay` to every request and records
/// each exchange, so tests see which account reached the registry. Stops when dropped.
pub struct Proxy {
    pub host: String,
    exchanges: Arc<std::sync::Mutex<Vec<Exchange>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Every exchange so far, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The username of a `Basic` Authorization header.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.0.to_owned())
}

/// Start a [`Proxy`] to the plain-HTTP registry at `upstream` (`host:port`).
pub async fn proxy(upstream: String, delay: std::time::Duration) -> Proxy {
    proxy_with_headers(upstream, delay, Vec::new()).await
}

/// A [`Proxy`] that adds `headers` to every answer (e.g. Docker Hub's `ratelimit-*`).
pub async fn proxy_with_headers(
    upstream: String,
    delay: std::time::Duration,
    headers: Vec<(&'static str, String)>,
) -> Proxy {
    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{Method, Uri};
    use axum::response::Response;

    #[derive(Clone)]
    struct Forward {
        upstream: String,
        delay: std::time::Duration,
        client: reqwest::Client,
        exchanges: Arc<std::sync::Mutex<Vec<Exchange>>>,
        headers: Vec<(&'static str, String)>,
    }
    async fn forward(
        State(proxy): State<Forward>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        tokio::time::sleep(proxy.delay).await;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let url = format!("http://{}{path}", proxy.upstream);
        let mut request = proxy.client.request(method.clone(), &url).body(body);
        for (name, value) in &headers {
            if name != "host" {
                request = request.header(name, value);
            }
        }
        let (status, response) = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                let bytes = response.bytes().await.unwrap_or_default();
                let mut out = (status, Body::from(bytes)).into_response();
                for (name, value) in &headers {
                    if name != "content-length" && name != "transfer-encoding" {
                        out.headers_mut().insert(name, value.clone());
                    }
                }
                for (name, value) in &proxy.headers {
                    if let Ok(value) = value.parse() {
                        out.headers_mut().insert(*name, value);
                    }
                }
                (status, out)
            }
            Err(_) => (
                StatusCode::BAD_GATEWAY,
                StatusCode::BAD_GATEWAY.into_response(),
            ),
        };
        proxy
            .exchanges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Exchange {
                method: method.to_string(),
                path,
                user: basic_user(&headers),
                status: status.as_u16(),
            });
        response
    }
    let exchanges = Arc::new(std::sync::Mutex::new(Vec::new()));
    let state = Forward {
        upstream,
        delay,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("proxy client"),
        exchanges: exchanges.clone(),
        headers,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let host = listener.local_addr().expect("addr").to_string();
    let app = Router::new()
        .fallback(axum::routing::any(forward))
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Proxy {
        host,
        exchanges,
        task,
    }
}
