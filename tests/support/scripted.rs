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
