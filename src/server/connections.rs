//! Connection hygiene: at most `server.maxConnections` connections are open at once (new ones beyond
//! are closed at once, before the TLS handshake, so file descriptors never run out and the policy
//! reloader can always open its files), and a connection with no request in flight for
//! `server.idleTimeoutSeconds` is closed gracefully — keep-alive HTTP/1.1 and HTTP/2 alike, including
//! HTTP/2 connections a client keeps open and silent while answering pings. A connection that never
//! sends a first request is cut by the server's first-request timeout; slow bodies by [`super::body`].
//!
//! Every accepted socket has `TCP_NODELAY`: an answer leaves when it is written. With Nagle's algorithm
//! on, about one admission in a thousand waited 25–40 ms under load (README "Performance", note 8).
//!
//! Also raises the soft open-file limit to the hard one at start-up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Request;
use axum_server::ConnectionShutdown;
use axum_server::accept::{Accept, NoDelayAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::time::Instant;
use tower::Service;

/// How every connection is accepted: the cap and the idle watch ([`Guarded`]), then the TLS handshake
/// (cut at `handshake_timeout`) over a socket with `TCP_NODELAY`.
pub fn acceptor(
    tls: RustlsConfig,
    handshake_timeout: Duration,
    max_connections: usize,
    idle_timeout: Duration,
) -> Guarded<RustlsAcceptor<NoDelayAcceptor>> {
    let tls = RustlsAcceptor::new(tls)
        .handshake_timeout(handshake_timeout)
        .acceptor(NoDelayAcceptor::new());
    Guarded::new(tls, max_connections, idle_timeout)
}

/// Wraps another acceptor (TLS) with the connection cap and the idle watch.
#[derive(Debug, Clone)]
pub struct Guarded<A> {
    inner: A,
    open: Arc<AtomicUsize>,
    max_connections: usize,
    idle_timeout: Duration,
}

impl<A> Guarded<A> {
    pub fn new(inner: A, max_connections: usize, idle_timeout: Duration) -> Self {
        Self {
            inner,
            open: Arc::new(AtomicUsize::new(0)),
            max_connections,
            idle_timeout,
        }
    }
}

/// One open connection's place under the cap; given back when the connection's last handle drops.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the idle watch knows of one connection.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    /// When the connection was accepted; `last` counts from it.
    opened: Instant,
    /// Milliseconds from `opened` to the end of the last request (no lock on the request path).
    last: AtomicU64,
    idle_timeout: Duration,
    /// Set by the first request (which says how to close this connection); the watch starts then.
    watching: AtomicBool,
    _slot: Slot,
}

impl Activity {
    fn touch(&self) {
        let since = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(since, Ordering::Release);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last.load(Ordering::Acquire))
    }
}

impl<A, I, S> Accept<I, S> for Guarded<A>
where
    A: Accept<I, Watched<S>>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<(A::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let was = self.open.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.open.clone());
        if was >= self.max_connections {
            drop(slot);
            tracing::warn!(
                limit = self.max_connections,
                "connection refused: server.maxConnections reached"
            );
            return Box::pin(std::future::ready(Err(std::io::Error::other(
                "too many open connections",
            ))));
        }
        let service = Watched {
            inner: service,
            activity: Arc::new(Activity {
                in_flight: AtomicUsize::new(0),
                opened: Instant::now(),
                last: AtomicU64::new(0),
                idle_timeout: self.idle_timeout,
                watching: AtomicBool::new(false),
                _slot: slot,
            }),
        };
        Box::pin(self.inner.accept(stream, service))
    }
}

/// The application's service, counting requests in flight on its connection.
#[derive(Debug, Clone)]
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Ends the count of one request when its answer is ready (or the request is dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, B> Service<Request<B>> for Watched<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let activity = &self.activity;
        // In flight, the connection is not idle: `last` matters from the request's end.
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        if let Some(shutdown) = request.extensions().get::<ConnectionShutdown>() {
            start_watch(activity, shutdown.clone());
        }
        let guard = InFlight(activity.clone());
        let future = self.inner.call(request);
        Box::pin(async move {
            let answer = future.await;
            drop(guard);
            answer
        })
    }
}

/// On a connection's first request: a task that closes the connection once it has been idle for the
/// timeout. It ends when the connection does (its activity is dropped).
fn start_watch(activity: &Arc<Activity>, shutdown: ConnectionShutdown) {
    if activity.watching.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak: Weak<Activity> = Arc::downgrade(activity);
    tokio::spawn(async move {
        loop {
            let Some(activity) = weak.upgrade() else {
                return;
            };
            let due = activity.last() + activity.idle_timeout;
            let idle = activity.in_flight.load(Ordering::Acquire) == 0;
            let timeout = activity.idle_timeout;
            drop(activity);
            if idle && Instant::now() >= due {
                shutdown.graceful_shutdown();
                return;
            }
            let next = if idle { due } else { Instant::now() + timeout };
            tokio::time::sleep_until(next).await;
        }
    });
}

/// File descriptors kept free for everything but client connections (policy and certificate files,
/// registry and Kubernetes API connections, logs).
const RESERVED_FILES: u64 = 64;

/// The connection cap that fits the open-file limit: `configured`, or fewer (with a warning) when the
/// limit leaves no room for them and for [`RESERVED_FILES`].
pub fn fit_to_open_files(configured: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return configured;
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FILES))
        .unwrap_or(usize::MAX)
        .max(16);
    if room < configured {
        tracing::warn!(
            open_file_limit = limit,
            configured,
            used = room,
            "server.maxConnections lowered to fit the open-file limit"
        );
        return room;
    }
    configured
}

/// Raise the soft open-file limit to the hard one (a server holding many connections must not fail
/// to open its own files at 1,024). Returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::pki_types::pem::PemObject as _;

    /// Accepts one TLS connection through [`acceptor`] and answers whether its socket has
    /// `TCP_NODELAY`.
    async fn accepted_nodelay() -> std::io::Result<bool> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let certs =
            super::super::tls::generate_dev_certs(dir.path()).map_err(std::io::Error::other)?;
        let (served, _) = super::super::tls::load(&certs.paths).map_err(std::io::Error::other)?;
        let accept = acceptor(
            RustlsConfig::from_config(served),
            Duration::from_secs(5),
            4,
            Duration::from_secs(5),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                rustls::pki_types::CertificateDer::from_pem_file(&certs.ca)
                    .map_err(std::io::Error::other)?,
            )
            .map_err(std::io::Error::other)?;
        let client = tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ));
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost")
                .map_err(std::io::Error::other)?;
            client.connect(name, tcp).await
        };
        let serve = async {
            let (tcp, _) = listener.accept().await?;
            // A socket as the server accepts it: Nagle's algorithm on.
            assert!(!tcp.nodelay()?);
            accept.accept(tcp, ()).await
        };
        let (_client, (stream, _)) = tokio::try_join!(connect, serve)?;
        stream.get_ref().0.nodelay()
    }

    #[tokio::test]
    async fn accepted_sockets_send_without_delay() {
        assert!(accepted_nodelay().await.expect("TLS connection accepted"));
    }

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        assert_eq!(fit_to_open_files(1000, Some(1024)), 960);
        assert_eq!(fit_to_open_files(1000, Some(1_048_576)), 1000);
        assert_eq!(fit_to_open_files(1000, None), 1000);
        assert_eq!(fit_to_open_files(1000, Some(10)), 16);
    }
}
