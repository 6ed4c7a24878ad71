//! Reading a request body so that no client can hold the server's memory or time: the whole body must
//! arrive within `server.bodyReadTimeoutSeconds`; it may not exceed `server.maxRequestBytes`; and past
//! the first 64 KiB of each body (every real AdmissionReview fits in that), bodies share one memory
//! budget, so a crowd of clients sending huge bodies slowly gets `503` at once instead of filling the
//! heap — while ordinary admissions never wait on it. An oversized body is read on and discarded (up to
//! a bound) before the `413` answer, because over HTTP/2 an answer sent while the client is still
//! sending is lost to a stream reset. Failures are [`ReviewError`](crate::admission::ReviewError)s:
//! every one is answered with an AdmissionReview.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::admission::ReviewError as BodyError;

/// Bytes of every body that never wait on the shared budget.
const FREE_BYTES: usize = 64 * 1024;
/// Memory that all bodies together may hold past their free part: 64 MiB, counted in KiB.
const SHARED_KIB: usize = 64 * 1024;
/// How much of an oversized body is read and discarded before answering 413.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// The limits every request body is read within.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
    shared: Arc<Semaphore>,
}

impl BodyLimits {
    pub fn new(max_bytes: usize, read_timeout: Duration) -> Self {
        Self {
            max_bytes,
            read_timeout,
            shared: Arc::new(Semaphore::new(SHARED_KIB)),
        }
    }
}

/// A body read whole, holding its share of the budget until dropped.
#[derive(Debug)]
pub struct ReadBody {
    pub bytes: Bytes,
    _reserved: Option<OwnedSemaphorePermit>,
}

/// Read `body` (with the `Content-Length` it declared, if any) within `limits`.
pub async fn read(
    body: Body,
    declared: Option<usize>,
    limits: &BodyLimits,
) -> Result<ReadBody, BodyError> {
    let deadline = Instant::now() + limits.read_timeout;
    let slow = || BodyError::Slow {
        seconds: limits.read_timeout.as_secs(),
    };
    let too_large = BodyError::TooLarge {
        limit: limits.max_bytes,
    };
    let mut body = body;
    if declared.is_some_and(|n| n > limits.max_bytes) {
        drain(&mut body, 0, deadline).await;
        return Err(too_large);
    }
    let mut buffer: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(FREE_BYTES));
    let mut reserved: Option<OwnedSemaphorePermit> = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(slow()),
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(BodyError::InvalidRequest(format!(
                    "request body could not be read: {error}"
                )));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = buffer.len() + data.len();
        if total > limits.max_bytes {
            drain(&mut body, total, deadline).await;
            return Err(too_large);
        }
        reserve(&limits.shared, &mut reserved, total)?;
        buffer.extend_from_slice(&data);
    }
    Ok(ReadBody {
        bytes: Bytes::from(buffer),
        _reserved: reserved,
    })
}

/// Hold enough of the shared budget for `total` bytes (the free part excepted), or say `Busy`.
fn reserve(
    shared: &Arc<Semaphore>,
    reserved: &mut Option<OwnedSemaphorePermit>,
    total: usize,
) -> Result<(), BodyError> {
    let needed = total.saturating_sub(FREE_BYTES).div_ceil(1024);
    let held = reserved
        .as_ref()
        .map_or(0, OwnedSemaphorePermit::num_permits);
    if needed <= held {
        return Ok(());
    }
    let more = u32::try_from(needed - held).map_err(|_| BodyError::Busy)?;
    let permit = shared
        .clone()
        .try_acquire_many_owned(more)
        .map_err(|_| BodyError::Busy)?;
    match reserved {
        Some(held) => held.merge(permit),
        None => *reserved = Some(permit),
    }
    Ok(())
}

/// Read and discard the rest of an oversized body, up to [`DRAIN_BYTES`] and the deadline, so the
/// answer is not lost to a reset.
async fn drain(body: &mut Body, already: usize, deadline: Instant) {
    let mut seen = already;
    while seen <= DRAIN_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => seen += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt as _, stream};

    fn chunked(chunks: Vec<Vec<u8>>) -> Body {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
        Body::from_stream(stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_within_the_limits_is_read_whole() {
        let limits = BodyLimits::new(1 << 20, Duration::from_secs(5));
        let read = read(chunked(vec![b"ab".to_vec(), b"cd".to_vec()]), None, &limits)
            .await
            .expect("reads");
        assert_eq!(&read.bytes[..], b"abcd");
    }

    #[tokio::test]
    async fn too_large_declared_or_sent() {
        let limits = BodyLimits::new(1024, Duration::from_secs(5));
        let error = read(chunked(vec![vec![0; 10]]), Some(4096), &limits)
            .await
            .expect_err("declared too large");
        assert!(
            matches!(error, BodyError::TooLarge { limit: 1024 }),
            "{error}"
        );
        let error = read(chunked(vec![vec![0; 1000], vec![0; 1000]]), None, &limits)
            .await
            .expect_err("sent too large");
        assert!(
            matches!(error, BodyError::TooLarge { limit: 1024 }),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_cut_at_the_timeout() {
        let limits = BodyLimits::new(1 << 20, Duration::from_secs(10));
        let first = stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"{"))]);
        let body = Body::from_stream(first.chain(stream::pending()));
        let error = read(body, None, &limits).await.expect_err("stalls");
        assert!(matches!(error, BodyError::Slow { seconds: 10 }), "{error}");
    }

    #[tokio::test]
    async fn large_bodies_share_one_budget_small_ones_never_wait() {
        let limits = BodyLimits::new(64 << 20, Duration::from_secs(5));
        // Hold the whole shared budget, as a crowd of large bodies would.
        let crowd = limits
            .shared
            .clone()
            .try_acquire_many_owned(SHARED_KIB as u32)
            .expect("whole budget");
        let error = read(chunked(vec![vec![0; 200 * 1024]]), None, &limits)
            .await
            .expect_err("no budget left");
        assert!(matches!(error, BodyError::Busy), "{error}");
        let small = read(chunked(vec![vec![b' '; 10 * 1024]]), None, &limits)
            .await
            .expect("a normal admission is never refused");
        assert_eq!(small.bytes.len(), 10 * 1024);
        drop(crowd);
        let large = read(chunked(vec![vec![0; 200 * 1024]]), None, &limits)
            .await
            .expect("budget back");
        assert_eq!(large.bytes.len(), 200 * 1024);
    }
}
