//! Asking registries about images: the [`ImageResolver`] trait (tag → digest, digest → platforms), the
//! classification of how a registry conversation failed (in the words of the troubleshooting guide), the
//! oci-client implementation in [`oci`], and the caches in front of it ([`cache`]). [`hosts`] says how the
//! nodes reach each registry (mirrors, CA, plain HTTP), so pullgate sees registries the way the nodes do.
//! [`RegistryMetrics`] counts every exchange.

pub mod budget;
pub mod cache;
mod classify;
pub mod hosts;
mod metrics;
pub mod oci;

use std::sync::atomic::{AtomicU32, Ordering};

use futures::future::BoxFuture;

use crate::credentials::Credential;
use crate::facts::{ManifestDigest, ResolveError};
use crate::image::ImageRef;
use crate::platform::Platform;

pub use classify::classify;
pub use metrics::RegistryMetrics;

/// Counts the registry requests made for one resolution, so that the admission's log line can say how
/// many it cost (cache hits make none). Handed down through every [`ImageResolver`] call.
#[derive(Debug, Default)]
pub struct RequestCounter(AtomicU32);

impl RequestCounter {
    /// Note one request.
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests so far.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Asks a registry about images, with one credential (or anonymously).
pub trait ImageResolver: Send + Sync {
    /// The manifest digest the image's tag (or digest) resolves to: a HEAD request, no pull quota used.
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ManifestDigest, ResolveError>>;

    /// The platforms of the manifest with this digest: an index lists them; a single image's config
    /// blob names its one platform.
    fn platforms<'a>(
        &'a self,
        image: &'a ImageRef,
        digest: &'a ManifestDigest,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Vec<Platform>, ResolveError>>;
}
