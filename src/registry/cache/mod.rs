//! Caches in front of an [`ImageResolver`], with concurrent lookups of one key coalesced into one
//! registry request (moka's `or_try_insert_with`): [`CachedResolver`] in memory, and [`disk`] for
//! `pullgate check --cache-dir` between runs.
//!
//! - tag → digest, keyed by (normalised reference, credential fingerprint): a TTL (tags move); "not found"
//!   kept only briefly; transient failures never cached. A digest reference is immutable and kept longer.
//! - digest → platforms, keyed by (repository, digest): content-addressed, kept long. It is not keyed by
//!   credential because it is only consulted after `digest` succeeded with the caller's own credential.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use moka::Expiry;
use moka::future::Cache;

pub mod disk;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{ImageResolver, RequestCounter};
use crate::credentials::Credential;
use crate::facts::{ManifestDigest, Missing, ResolveError};
use crate::image::ImageRef;
use crate::platform::Platform;

/// How long answers are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// A tag's digest (tags move).
    pub tag_ttl: Duration,
    /// A digest reference's existence (immutable).
    pub digest_ttl: Duration,
    /// "Not found" (someone may push it soon).
    pub not_found_ttl: Duration,
    /// A digest's platforms (immutable).
    pub platforms_ttl: Duration,
    /// Most entries per cache.
    pub max_entries: u64,
}

impl CacheSettings {
    /// The configured lifetimes of what changes; what is content-addressed is kept long (a digest
    /// reference's existence for an hour, a digest's platforms for a day).
    pub fn new(tag_ttl: Duration, not_found_ttl: Duration, max_entries: u64) -> Self {
        Self {
            tag_ttl,
            digest_ttl: Duration::from_secs(60 * 60),
            not_found_ttl,
            platforms_ttl: Duration::from_secs(24 * 60 * 60),
            max_entries,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    cache: &'static str,
    result: &'static str,
}

/// `pullgate_cache_lookups`: hits and misses of the in-memory caches.
#[derive(Debug)]
pub struct CacheMetrics {
    lookups: Family<LookupLabels, Counter>,
}

impl CacheMetrics {
    /// Register the cache metrics on `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Cache lookups, by cache (digest, platforms) and result (hit, miss)",
            lookups.clone(),
        );
        Self { lookups }
    }

    fn count(&self, cache: &'static str, hit: bool) {
        self.lookups
            .get_or_create(&LookupLabels {
                cache,
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }
}

/// A cached digest lookup: found, or definitively not found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DigestOutcome {
    Found(ManifestDigest),
    NotFound(Missing),
}

/// (normalised reference, credential fingerprint or "anonymous").
type DigestKey = (String, String);

/// Per-entry lifetime: found tags, found digests and "not found" each have their own.
struct DigestExpiry(CacheSettings);

impl Expiry<DigestKey, DigestOutcome> for DigestExpiry {
    fn expire_after_create(
        &self,
        key: &DigestKey,
        value: &DigestOutcome,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value {
            DigestOutcome::NotFound(_) => self.0.not_found_ttl,
            DigestOutcome::Found(_) if key.0.contains('@') => self.0.digest_ttl,
            DigestOutcome::Found(_) => self.0.tag_ttl,
        })
    }
}

/// An [`ImageResolver`] that remembers answers and coalesces concurrent identical lookups.
pub struct CachedResolver {
    inner: Arc<dyn ImageResolver>,
    digests: Cache<DigestKey, DigestOutcome>,
    platforms: Cache<(String, ManifestDigest), Arc<Vec<Platform>>>,
    /// Distinct platform lists are few: every cache entry shares one copy of its list.
    interned: std::sync::Mutex<Vec<Arc<Vec<Platform>>>>,
    metrics: Arc<CacheMetrics>,
}

impl CachedResolver {
    /// Hits and misses are counted in `metrics`.
    pub fn new(
        inner: Arc<dyn ImageResolver>,
        settings: CacheSettings,
        metrics: Arc<CacheMetrics>,
    ) -> Self {
        Self {
            inner,
            digests: Cache::builder()
                .max_capacity(settings.max_entries)
                .expire_after(DigestExpiry(settings))
                .build(),
            platforms: Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.platforms_ttl)
                .build(),
            interned: std::sync::Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// The shared copy of a platform list (at most 256 distinct lists are kept; past that, no sharing).
    fn intern(&self, platforms: Vec<Platform>) -> Arc<Vec<Platform>> {
        let mut interned = match self.interned.lock() {
            Ok(interned) => interned,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(shared) = interned.iter().find(|p| ***p == platforms) {
            return shared.clone();
        }
        let shared = Arc::new(platforms);
        if interned.len() < 256 {
            interned.push(shared.clone());
        }
        shared
    }

    /// Entries currently held (digest cache, platform cache), after pending maintenance.
    pub async fn entry_counts(&self) -> (u64, u64) {
        self.digests.run_pending_tasks().await;
        self.platforms.run_pending_tasks().await;
        (self.digests.entry_count(), self.platforms.entry_count())
    }
}

fn fingerprint(credential: Option<&Credential>) -> String {
    credential.map_or_else(|| "anonymous".to_owned(), Credential::fingerprint)
}

impl ImageResolver for CachedResolver {
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ManifestDigest, ResolveError>> {
        Box::pin(async move {
            let key = (image.to_string(), fingerprint(credential));
            let entry = self
                .digests
                .entry(key)
                .or_try_insert_with(async {
                    match self.inner.digest(image, credential, requests).await {
                        Ok(digest) => Ok(DigestOutcome::Found(digest)),
                        Err(ResolveError::NotFound(missing)) => {
                            Ok(DigestOutcome::NotFound(missing))
                        }
                        Err(error) => Err(error),
                    }
                })
                .await
                .map_err(|shared: Arc<ResolveError>| (*shared).clone())?;
            self.metrics.count("digest", !entry.is_fresh());
            match entry.into_value() {
                DigestOutcome::Found(digest) => Ok(digest),
                DigestOutcome::NotFound(missing) => Err(ResolveError::NotFound(missing)),
            }
        })
    }

    fn platforms<'a>(
        &'a self,
        image: &'a ImageRef,
        digest: &'a ManifestDigest,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Vec<Platform>, ResolveError>> {
        Box::pin(async move {
            let key = (image.name(), digest.clone());
            let entry = self
                .platforms
                .entry(key)
                .or_try_insert_with(async {
                    let found = self
                        .inner
                        .platforms(image, digest, credential, requests)
                        .await?;
                    Ok(self.intern(found))
                })
                .await
                .map_err(|shared: Arc<ResolveError>| (*shared).clone())?;
            self.metrics.count("platforms", !entry.is_fresh());
            Ok((**entry.value()).clone())
        })
    }
}
