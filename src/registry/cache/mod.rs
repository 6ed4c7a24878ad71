//! Caches in front of an [`ImageResolver`], with concurrent lookups of one key coalesced into one
//! registry request (moka's `or_try_insert_with`): [`CachedResolver`] in memory, and [`disk`] for
//! `pullgate check --cache-dir` between runs.
//!
//! - tag → digest, keyed by (normalised reference, credential fingerprint): a TTL (tags move); "not found"
//!   kept only briefly; transient failures never cached. A digest reference is immutable and kept longer.
//! - digest → platforms, keyed by (repository, digest): content-addressed, kept long. It is not keyed by
//!   credential because it is only consulted after `digest` succeeded with the caller's own credential.
//! - digest → contents (a single image's size and config digest, or an index's platform entries), keyed
//!   the same way and for the same reason, kept as long; filled only when `image-size` or a start rule
//!   asks.
//! - config digest → image config (user, entrypoint, command, platform), keyed the same way, kept as
//!   long; filled only when a start rule asks (or for free, when reading a single image's platform
//!   fetched it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

pub mod disk;
mod starts;
mod warm;

pub use warm::{Warm, WarmNeed};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{Contents, Found, ImageResolver, IndexEntry, RequestCounter};
use crate::credentials::Credential;
use crate::facts::{ImageConfig, ManifestDigest, Missing, PlatformSize, ResolveError};
use crate::image::ImageRef;
use crate::platform::{self, Platform};

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
    /// Largest size of each cache, in bytes.
    pub max_bytes: u64,
}

impl CacheSettings {
    /// The configured lifetimes of what changes; what is content-addressed is kept long (a digest
    /// reference's existence for an hour, a digest's platforms for a day).
    pub fn new(tag_ttl: Duration, not_found_ttl: Duration, max_bytes: u64) -> Self {
        Self {
            tag_ttl,
            digest_ttl: Duration::from_secs(60 * 60),
            not_found_ttl,
            platforms_ttl: Duration::from_secs(24 * 60 * 60),
            max_bytes,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    cache: &'static str,
    result: &'static str,
}

/// The caches, as the `cache` label names them.
const CACHES: [&str; 5] = ["digest", "platforms", "contents", "tags", "configs"];

/// `pullgate_cache_lookups`: hits and misses of the in-memory caches.
#[derive(Debug)]
pub struct CacheMetrics {
    /// (hit, miss) of each of [`CACHES`], made once: counting costs no label lookup.
    counters: [(Counter, Counter); 5],
}

impl CacheMetrics {
    /// Register the cache metrics on `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Cache lookups, by cache (digest, platforms, contents, tags, configs) and result (hit, miss)",
            lookups.clone(),
        );
        let counter = |cache: &'static str, result: &'static str| {
            lookups
                .get_or_create(&LookupLabels { cache, result })
                .clone()
        };
        Self {
            counters: CACHES.map(|cache| (counter(cache, "hit"), counter(cache, "miss"))),
        }
    }

    fn count(&self, cache: &'static str, hit: bool) {
        let index = CACHES.iter().position(|c| *c == cache).unwrap_or(0);
        let (hits, misses) = &self.counters[index];
        if hit {
            hits.inc()
        } else {
            misses.inc()
        };
    }
}

/// A cached digest lookup: found (with, when the lookup's own `GET` read a single image, its size:
/// `Some(None)` when the manifest does not state every size), or definitively not found. The size is
/// kept inline (no allocation: 100k entries are measured) so that lookups waiting on the same tag, and
/// the warm path, need no other cache for it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DigestOutcome {
    Found {
        digest: ManifestDigest,
        size: Option<Option<u64>>,
        /// The platforms of `digest` once known (immutable, shared with the platform cache): a warm
        /// admission then reads this one entry.
        platforms: Option<Arc<Vec<Platform>>>,
        /// A single image's config, when the lookup's own `GET` read it (shared with the config
        /// cache): the start rules of a warm admission then need no other entry.
        config: Option<Arc<ImageConfig>>,
    },
    NotFound(Missing),
}

/// `REFERENCE\nCREDENTIAL`: the normalised reference and the credential's fingerprint (or `anonymous`),
/// in one string (100,000 entries of two strings each cost 6 MiB more: README "Performance", P4).
type DigestKey = String;

/// The digest cache's key of `image` asked with `credential`.
fn digest_key(image: &ImageRef, credential: Option<&Credential>) -> DigestKey {
    let fingerprint = fingerprint(credential);
    let reference = image.normalized();
    let mut key = String::with_capacity(reference.len() + 1 + fingerprint.len());
    key.push_str(reference);
    key.push('\n');
    key.push_str(&fingerprint);
    key
}

/// `REPOSITORY@DIGEST` (`registry/repository@sha256:…`): the platform and contents caches' key.
type ManifestKey = String;

fn manifest_key(name: &str, digest: &str) -> ManifestKey {
    let mut key = String::with_capacity(name.len() + 1 + digest.len());
    key.push_str(name);
    key.push('@');
    key.push_str(digest);
    key
}

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
            DigestOutcome::Found { .. }
                if key.split('\n').next().is_some_and(|r| r.contains('@')) =>
            {
                self.0.digest_ttl
            }
            DigestOutcome::Found { .. } => self.0.tag_ttl,
        })
    }
}

/// Remembers registry answers in front of an [`ImageResolver`] and coalesces concurrent identical
/// lookups. Both caches are bounded in bytes (`resolution.cacheMaxBytes` each), not only in entries.
pub struct CachedResolver {
    inner: Arc<dyn ImageResolver>,
    digests: Cache<DigestKey, DigestOutcome, Hasher>,
    platforms: Cache<ManifestKey, Arc<Vec<Platform>>, Hasher>,
    /// What a manifest holds (for sizes) by repository and digest, kept as long as platforms.
    contents: Cache<ManifestKey, Arc<Contents>, Hasher>,
    /// A repository's tags by (repository, credential), kept as long as a "not found".
    tags: Cache<(String, String), Arc<Vec<String>>, Hasher>,
    /// Image configs by repository and config digest, kept as long as platforms.
    configs: Cache<ManifestKey, Arc<ImageConfig>, Hasher>,
    /// Distinct platform lists are few: every cache entry shares one copy of its list.
    interned: std::sync::Mutex<Vec<Arc<Vec<Platform>>>>,
    metrics: Arc<CacheMetrics>,
}

/// The caches' key hasher: seeded per process like the standard one, several times cheaper on the
/// short keys every warm admission looks up.
type Hasher = foldhash::fast::RandomState;

/// Bytes an entry holds besides its text (hash table slot, allocation headers, moka's bookkeeping): the
/// benchmark measures about 480 bytes per entry with keys of ~80 bytes (README "Performance", P4).
const ENTRY_OVERHEAD: usize = 400;

/// The bytes an image config holds besides its fixed size.
fn config_bytes(config: &ImageConfig) -> usize {
    let words = config.entrypoint.iter().chain(&config.cmd);
    config.user.len()
        + config.os_version.as_ref().map_or(0, String::len)
        + words.map(|w| w.len() + 24).sum::<usize>()
        + std::mem::size_of::<ImageConfig>()
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
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
                .max_capacity(settings.max_bytes)
                .weigher(|key: &DigestKey, value: &DigestOutcome| {
                    let value = match value {
                        DigestOutcome::Found { digest, config, .. } => {
                            digest.0.len() + config.as_deref().map_or(0, config_bytes)
                        }
                        DigestOutcome::NotFound(_) => 0,
                    };
                    weight(key.len() + value)
                })
                .expire_after(DigestExpiry(settings))
                .build_with_hasher(Hasher::default()),
            platforms: Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(|key: &ManifestKey, _platforms: &Arc<Vec<Platform>>| {
                    // Lists are shared (interned): an entry holds its key and a pointer.
                    weight(key.len())
                })
                .time_to_live(settings.platforms_ttl)
                .build_with_hasher(Hasher::default()),
            contents: Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(|key: &ManifestKey, contents: &Arc<Contents>| {
                    let held = match &**contents {
                        Contents::Image { .. } => 0,
                        Contents::Index(entries) => entries
                            .iter()
                            .map(|e| {
                                let version = e.os_version.as_ref().map_or(0, String::len);
                                e.platform.os.len()
                                    + e.platform.architecture.len()
                                    + e.digest.len()
                                    + version
                                    + 48
                            })
                            .sum(),
                    };
                    weight(key.len() + held)
                })
                .time_to_live(settings.platforms_ttl)
                .build_with_hasher(Hasher::default()),
            tags: Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(|key: &(String, String), tags: &Arc<Vec<String>>| {
                    weight(key.0.len() + key.1.len() + tags.iter().map(String::len).sum::<usize>())
                })
                .time_to_live(settings.not_found_ttl)
                .build_with_hasher(Hasher::default()),
            configs: Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(|key: &ManifestKey, config: &Arc<ImageConfig>| {
                    weight(key.len() + config_bytes(config))
                })
                .time_to_live(settings.platforms_ttl)
                .build_with_hasher(Hasher::default()),
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

    /// The tags of `image`'s repository as `credential` may list them, from the cache while a "not found"
    /// would be; none when the registry will not list them (no suggestion, never a finding).
    pub async fn tags(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
        requests: &RequestCounter,
    ) -> Arc<Vec<String>> {
        let key = (
            image.name().to_owned(),
            fingerprint(credential).into_owned(),
        );
        let entry = self
            .tags
            .entry(key)
            .or_insert_with(async {
                let listed = self.inner.tags(image, credential, requests).await;
                Arc::new(listed.unwrap_or_default())
            })
            .await;
        self.metrics.count("tags", !entry.is_fresh());
        entry.into_value()
    }

    /// Entries currently held (digest cache, platform cache), after pending maintenance.
    pub async fn entry_counts(&self) -> (u64, u64) {
        self.digests.run_pending_tasks().await;
        self.platforms.run_pending_tasks().await;
        (self.digests.entry_count(), self.platforms.entry_count())
    }

    /// What the registry says of `image` with `credential`: its digest and, with `platforms`, the
    /// platforms it offers — from the caches where they hold it, else with as few requests as the
    /// registry allows: one `GET` by tag gives both, unless manifest `GET`s count against a pull quota
    /// there (then a `HEAD` resolves the tag and the platforms of a known digest cost nothing).
    pub async fn lookup(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
        platforms: bool,
        requests: &RequestCounter,
    ) -> Result<Found, ResolveError> {
        let one_get = platforms && !self.inner.head_first(image.registry());
        let mut fetched: Option<Result<Vec<Platform>, ResolveError>> = None;
        let mut contents = None;
        let mut config = None;
        let key = digest_key(image, credential);
        let entry = self
            .digests
            .entry(key)
            .or_try_insert_with(async {
                let answer = if one_get {
                    self.inner
                        .manifest(image, credential, true, requests)
                        .await
                        .map(|found| {
                            fetched = found.platforms;
                            contents = found.contents;
                            config = found.config;
                            found.digest
                        })
                } else {
                    self.inner.digest(image, credential, requests).await
                };
                let size = match &contents {
                    Some(Contents::Image { size, .. }) => Some(*size),
                    _ => None,
                };
                let platforms = match &fetched {
                    Some(Ok(offered)) => Some(self.intern(offered.clone())),
                    _ => None,
                };
                match answer {
                    Ok(digest) => Ok(DigestOutcome::Found {
                        digest,
                        size,
                        platforms,
                        config: config.clone(),
                    }),
                    Err(ResolveError::NotFound(missing)) => Ok(DigestOutcome::NotFound(missing)),
                    Err(error) => Err(error),
                }
            })
            .await
            .map_err(|shared: Arc<ResolveError>| (*shared).clone())?;
        self.metrics.count("digest", !entry.is_fresh());
        let (digest, size) = match entry.into_value() {
            DigestOutcome::Found { digest, size, .. } => (digest, size),
            DigestOutcome::NotFound(missing) => return Err(ResolveError::NotFound(missing)),
        };
        // A lookup that waited on another one's GET learns the single image's size from the entry (its
        // config digest is then not known here).
        let contents = contents.or(size.map(|size| Contents::Image { size, config: None }));
        if !platforms {
            return Ok(Found {
                digest,
                platforms: None,
                contents,
                config,
            });
        }
        let platforms_key = manifest_key(image.name(), &digest.0);
        if let Some(fetched) = fetched {
            // This lookup's own GET read them: not a cache hit.
            self.metrics.count("platforms", false);
            if let Ok(found) = &fetched {
                self.platforms
                    .insert(platforms_key, self.intern(found.clone()))
                    .await;
            }
            return Ok(Found {
                digest,
                platforms: Some(fetched),
                contents,
                config,
            });
        }
        // The manifest read for the platforms also says what it holds: kept, so that sizes need no
        // second GET of it.
        let mut read = None;
        let mut read_config = None;
        let offered = self
            .platforms
            .entry(platforms_key)
            .or_try_insert_with(async {
                let pinned = image.pinned(&digest.0).map_err(|_| {
                    ResolveError::InvalidResponse(format!(
                        "the registry named a bad digest {digest}"
                    ))
                })?;
                let found = self
                    .inner
                    .manifest(&pinned, credential, true, requests)
                    .await?;
                read = found.contents;
                read_config = found.config;
                let offered = found.platforms.unwrap_or_else(|| Ok(Vec::new()))?;
                Ok(self.intern(offered))
            })
            .await
            .map_err(|shared: Arc<ResolveError>| (*shared).clone())
            .map(|entry| {
                self.metrics.count("platforms", !entry.is_fresh());
                (**entry.value()).clone()
            });
        Ok(Found {
            digest,
            platforms: Some(offered),
            contents: contents.or(read),
            config: config.or(read_config),
        })
    }

    /// What a node of each of `candidates` pulls of `image` (resolved to `found`), compressed: a single
    /// image's size for every candidate; for an index, the size of the entry each candidate's node
    /// would pick (none for a candidate no entry runs on). Every manifest is read by digest and kept:
    /// a digest seen before costs no request.
    pub async fn sizes(
        &self,
        image: &ImageRef,
        found: &Found,
        credential: Option<&Credential>,
        candidates: &[Platform],
        requests: &RequestCounter,
    ) -> Result<Vec<PlatformSize>, ResolveError> {
        let top = match &found.contents {
            // Learnt from the digest cache's entry: the size only (its config digest is not known
            // there), so not kept as the manifest's contents.
            Some(contents @ Contents::Image { config: None, .. }) => Arc::new(contents.clone()),
            Some(contents) => {
                let contents = Arc::new(contents.clone());
                let key = manifest_key(image.name(), &found.digest.0);
                self.contents.insert(key, contents.clone()).await;
                contents
            }
            None => {
                self.contents_of(image, &found.digest.0, credential, requests)
                    .await?
            }
        };
        let entries = match &*top {
            Contents::Image { size, .. } => return Ok(same_size(candidates, *size)),
            Contents::Index(entries) => entries,
        };
        let mut sizes = Vec::new();
        for (candidate, entry) in pulled(entries, candidates) {
            let child = self
                .contents_of(image, &entry.digest, credential, requests)
                .await?;
            // A nested index, or a manifest that does not state every size: unknown.
            if let Contents::Image {
                size: Some(bytes), ..
            } = *child
            {
                sizes.push(PlatformSize {
                    platform: candidate.clone(),
                    bytes,
                });
            }
        }
        Ok(sizes)
    }

    /// What the manifest `digest` of `image`'s repository holds: from the cache, else one `GET`.
    pub(super) async fn contents_of(
        &self,
        image: &ImageRef,
        digest: &str,
        credential: Option<&Credential>,
        requests: &RequestCounter,
    ) -> Result<Arc<Contents>, ResolveError> {
        let key = manifest_key(image.name(), digest);
        let fetch = async {
            // Only a miss needs the reference: pinning parses the digest.
            let pinned = image.pinned(digest).map_err(|_| {
                ResolveError::InvalidResponse(format!("the registry named a bad digest {digest:?}"))
            })?;
            let found = self
                .inner
                .manifest(&pinned, credential, false, requests)
                .await?;
            found.contents.map(Arc::new).ok_or_else(|| {
                ResolveError::InvalidResponse(format!("manifest {digest} is not a manifest"))
            })
        };
        self.kept(&self.contents, "contents", key, fetch).await
    }

    /// `key` of a content-addressed `cache`, else what `fetch` gives (kept; concurrent misses of one
    /// key share one fetch), counted as a hit or a miss of `name`.
    pub(super) async fn kept<V>(
        &self,
        cache: &Cache<ManifestKey, V, Hasher>,
        name: &'static str,
        key: ManifestKey,
        fetch: impl std::future::Future<Output = Result<V, ResolveError>>,
    ) -> Result<V, ResolveError>
    where
        V: Clone + Send + Sync + 'static,
    {
        let entry = cache
            .entry(key)
            .or_try_insert_with(fetch)
            .await
            .map_err(|shared: Arc<ResolveError>| (*shared).clone())?;
        self.metrics.count(name, !entry.is_fresh());
        Ok(entry.into_value())
    }
}

/// For each candidate platform some entry of an index runs on: the candidate, and the entry its node
/// pulls ([`platform::preferred`]).
fn pulled<'a>(
    entries: &'a [IndexEntry],
    candidates: &'a [Platform],
) -> impl Iterator<Item = (&'a Platform, &'a IndexEntry)> {
    candidates.iter().filter_map(|candidate| {
        let chosen = platform::preferred(candidate, entries.iter().map(|e| &e.platform))?;
        Some((candidate, &entries[chosen]))
    })
}

/// A single image's size for every candidate platform (none when its manifest does not state it).
fn same_size(candidates: &[Platform], size: Option<u64>) -> Vec<PlatformSize> {
    let Some(bytes) = size else {
        return Vec::new();
    };
    candidates
        .iter()
        .map(|platform| PlatformSize {
            platform: platform.clone(),
            bytes,
        })
        .collect()
}

/// A credential's fingerprint for cache keys, or `anonymous`.
fn fingerprint(credential: Option<&Credential>) -> std::borrow::Cow<'static, str> {
    credential.map_or("anonymous".into(), |c| c.fingerprint().into())
}
