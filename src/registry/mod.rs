//! Asking registries about images: the [`ImageResolver`] trait (tag → digest, manifest → platforms),
//! pullgate's own distribution [`client`] (bounded, guarded, minimal round trips), the classification
//! of how a conversation failed (in the words of the troubleshooting guide), the caches in front of it
//! ([`cache`]), and the network policy every connection passes ([`net`]). [`hosts`] says how the nodes
//! reach each registry (mirrors, CA, plain HTTP), so pullgate sees registries the way the nodes do.
//! [`RegistryMetrics`] counts every exchange.

pub mod budget;
pub mod cache;
mod classify;
pub mod client;
pub mod hosts;
mod metrics;
pub mod net;

use std::sync::atomic::{AtomicU32, Ordering};

use futures::future::BoxFuture;

use crate::credentials::Credential;
use crate::facts::{ImageConfig, ManifestDigest, ResolveError};
use crate::image::ImageRef;
use crate::platform::Platform;

pub use classify::sanitize;
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

/// What a manifest lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub digest: ManifestDigest,
    /// The platforms the manifest offers, when they were asked for: an index lists them, a single
    /// image's config blob names its one platform. An error here leaves the digest standing.
    pub platforms: Option<Result<Vec<Platform>, ResolveError>>,
    /// What the manifest holds, for sizes: `None` when its body was not read (a `HEAD`) or is not one.
    pub contents: Option<Contents>,
    /// A single image's config, when reading its platform fetched it (so a start rule needs no second
    /// request for it).
    pub config: Option<std::sync::Arc<ImageConfig>>,
}

/// What a manifest holds, as far as the size of a pull goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// A single image: what pulling it downloads (config and layers, compressed), when every
    /// descriptor states its size; and the digest of its config blob (none for Docker schema 1).
    Image {
        size: Option<u64>,
        config: Option<String>,
    },
    /// An index: the entries that name a platform.
    Index(Vec<IndexEntry>),
}

/// An index entry that names a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub platform: Platform,
    /// The entry's manifest.
    pub digest: String,
    /// Its `os.version` (Windows builds), when it states one.
    pub os_version: Option<String>,
}

/// Asks a registry about images, with one credential (or anonymously).
pub trait ImageResolver: Send + Sync {
    /// The manifest digest the image's tag (or digest) resolves to: a `HEAD`, no pull quota used.
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ManifestDigest, ResolveError>>;

    /// The manifest (by tag or digest): its digest, what it holds, and, with `platforms`, the platforms
    /// it offers. One `GET`, and with `platforms` one more for a single image (its config blob).
    fn manifest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        platforms: bool,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Found, ResolveError>>;

    /// The image config blob `digest` of the image's repository: one `GET`, capped, checked against
    /// the digest.
    fn config<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        digest: &'a str,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ImageConfig, ResolveError>>;

    /// The repository's tags (capped), for "did you mean" on a missing tag. Resolvers that cannot list
    /// tags list none.
    fn tags<'a>(
        &'a self,
        _image: &'a ImageRef,
        _credential: Option<&'a Credential>,
        _requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Vec<String>, ResolveError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Whether a tag is better resolved with a `HEAD` first, so that a digest whose platforms are known
    /// costs nothing more: where manifest `GET`s count against a pull quota (`pullQuota`), and where
    /// platforms are kept between runs (the disk cache).
    fn head_first(&self, registry: &str) -> bool;
}
