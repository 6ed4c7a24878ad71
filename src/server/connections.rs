//! Connection hygiene: at most `server.maxConnections` connections are open at once (new ones beyond
//! are closed at once, before the TLS handshake, so file descriptors never run out and the policy
//! reloader can always open its files), and a connection with no request in flight for
//! `server.idleTimeoutSeconds` is closed gracefully — keep-alive HTTP/1.1 and HTTP/2 alike, including
//! HTTP/2 connections a client keeps open and silent while answering pings. A connection that never
//! sends a first request is cut by the server's first-request timeout; slow bodies by [`super::body`].
//!
//! Also raises the soft open-file limit to the hard one at start-up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Request;
use axum_server::ConnectionShutdown;
use axum_server::accept::Accept;
use tokio::time::Instant;
use tower::Service;

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
    last: Mutex<Instant>,
    idle_timeout: Duration,
    /// Set by the first request: how to close this connection; the watch starts then.
    watching: Mutex<bool>,
    _slot: Slot,
}

impl Activity {
    fn touch(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }

    fn last(&self) -> Instant {
        self.last.lock().map_or_else(|_| Instant::now(), |l| *l)
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
                last: Mutex::new(Instant::now()),
                idle_timeout: self.idle_timeout,
                watching: Mutex::new(false),
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
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
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
    let Ok(mut watching) = activity.watching.lock() else {
        return;
    };
    if *watching {
        return;
    }
    *watching = true;
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

    #[test]
    fn the_cap_fits_the_open_file_limit() {
        assert_eq!(fit_to_open_files(1000, Some(1024)), 960);
        assert_eq!(fit_to_open_files(1000, Some(1_048_576)), 1000);
        assert_eq!(fit_to_open_files(1000, None), 1000);
        assert_eq!(fit_to_open_files(1000, Some(10)), 16);
    }
}
