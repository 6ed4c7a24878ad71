//! The warm path: what the caches alone say of an image, with no request and no waiting on another
//! lookup — the digest cache's entry (which holds a single image's size when its lookup read it), the
//! platform cache when platforms are asked, the contents cache only for an index (or a size not yet
//! known).

use std::sync::Arc;

use moka::ops::compute::Op;

use super::starts::{index_offer, single_offer};
use super::{
    CachedResolver, Contents, DigestKey, DigestOutcome, digest_key, manifest_key, pulled, same_size,
};
use crate::credentials::Credential;
use crate::facts::{ManifestDigest, PlatformSize, StartConfig, Starts, WindowsOffer};
use crate::image::ImageRef;
use crate::platform::Platform;

/// What the caches alone say of an image: its digest, the platforms it offers (shared with the cache,
/// not copied) when they were asked, what a node of each candidate platform pulls and what it would
/// start when those were.
#[derive(Debug)]
pub struct Warm {
    pub digest: ManifestDigest,
    pub platforms: Option<Arc<Vec<Platform>>>,
    pub sizes: Option<Vec<PlatformSize>>,
    pub starts: Option<Starts>,
    pub windows: Option<WindowsOffer>,
}

/// What the warm path is asked besides the digest.
#[derive(Debug, Clone, Copy, Default)]
pub struct WarmNeed<'a> {
    /// The platforms the image offers.
    pub platforms: bool,
    /// What a node of each of these pulls (sizes).
    pub sizes: Option<&'a [Platform]>,
    /// What a node of each of these would start (configs).
    pub starts: Option<&'a [Platform]>,
    /// The Windows builds the image is built for.
    pub windows: bool,
}

impl CachedResolver {
    /// What the caches alone say of `image` with `credential`: its digest, and what `need` asks of the
    /// [`WarmNeed`] parts — `None` unless every part is held (and the digest was found), so that the
    /// caller asks the registry.
    pub async fn warm(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
        need: WarmNeed<'_>,
    ) -> Option<Warm> {
        let WarmNeed {
            platforms,
            sizes: candidates,
            starts,
            windows,
        } = need;
        let key = digest_key(image, credential);
        let DigestOutcome::Found {
            digest,
            size,
            platforms: held,
            config: held_config,
        } = self.digests.get(&key).await?
        else {
            return None;
        };
        let offered = match (platforms, held) {
            (true, Some(offered)) => Some(offered),
            (true, None) => {
                let platforms_key = manifest_key(image.name(), &digest.0);
                let offered = self.platforms.get(&platforms_key).await?;
                self.hold_platforms(key, &digest, &offered).await;
                Some(offered)
            }
            (false, _) => None,
        };
        if offered.is_some() {
            self.metrics.count("platforms", true);
        }
        let sizes = match candidates {
            Some(candidates) => Some(self.warm_sizes(image, &digest, size, candidates).await?),
            None => None,
        };
        // A single image whose config its lookup read: the entry says it all.
        let starts = match (starts, &held_config) {
            (Some(_), Some(config)) => Some(Starts::Single(config.clone())),
            (Some(candidates), None) => Some(self.warm_starts(image, &digest, candidates).await?),
            (None, _) => None,
        };
        let windows = match (windows, &held_config) {
            (true, Some(config)) => Some(single_offer(config)),
            (true, None) => Some(self.warm_windows(image, &digest).await?),
            (false, _) => None,
        };
        self.metrics.count("digest", true);
        Some(Warm {
            digest,
            platforms: offered,
            sizes,
            starts,
            windows,
        })
    }

    /// [`windows_offer`](CachedResolver::windows_offer) from the caches alone.
    async fn warm_windows(
        &self,
        image: &ImageRef,
        digest: &ManifestDigest,
    ) -> Option<WindowsOffer> {
        let name = image.name();
        let top = self.contents.get(&manifest_key(name, &digest.0)).await?;
        Some(match &*top {
            Contents::Index(entries) => index_offer(entries),
            Contents::Image { config: None, .. } => WindowsOffer::Single(None, None),
            Contents::Image {
                config: Some(config),
                ..
            } => single_offer(&*self.configs.get(&manifest_key(name, config)).await?),
        })
    }

    /// [`starts`](CachedResolver::starts) from the caches alone.
    async fn warm_starts(
        &self,
        image: &ImageRef,
        digest: &ManifestDigest,
        candidates: &[Platform],
    ) -> Option<Starts> {
        let name = image.name();
        let top = self.contents.get(&manifest_key(name, &digest.0)).await?;
        self.metrics.count("contents", true);
        let entries = match &*top {
            Contents::Image { config: None, .. } => return Some(Starts::PerPlatform(Vec::new())),
            Contents::Image {
                config: Some(config),
                ..
            } => {
                let config = self.configs.get(&manifest_key(name, config)).await?;
                self.metrics.count("configs", true);
                return Some(Starts::Single(config));
            }
            Contents::Index(entries) => entries,
        };
        let mut starts = Vec::new();
        for (candidate, entry) in pulled(entries, candidates) {
            let child = self
                .contents
                .get(&manifest_key(name, &entry.digest))
                .await?;
            let Contents::Image {
                config: Some(config),
                ..
            } = &*child
            else {
                continue;
            };
            let config = self.configs.get(&manifest_key(name, config)).await?;
            self.metrics.count("configs", true);
            starts.push(StartConfig {
                node: candidate.clone(),
                entry: Some((entry.platform.clone(), entry.os_version.clone())),
                config,
            });
        }
        Some(Starts::PerPlatform(starts))
    }

    /// Keep `offered` in the digest entry of `key` while it still names `digest`, without changing when
    /// the entry expires (an update keeps the remaining lifetime): the next warm admission reads one
    /// entry instead of two.
    async fn hold_platforms(
        &self,
        key: DigestKey,
        digest: &ManifestDigest,
        offered: &Arc<Vec<Platform>>,
    ) {
        self.digests
            .entry(key)
            .and_compute_with(|entry| {
                let op = match entry.map(|e| e.into_value()) {
                    Some(DigestOutcome::Found {
                        digest: held,
                        size,
                        platforms: None,
                        config,
                    }) if held == *digest => Op::Put(DigestOutcome::Found {
                        digest: held,
                        size,
                        platforms: Some(offered.clone()),
                        config,
                    }),
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }

    /// [`sizes`](CachedResolver::sizes) from the caches alone.
    async fn warm_sizes(
        &self,
        image: &ImageRef,
        digest: &ManifestDigest,
        known: Option<Option<u64>>,
        candidates: &[Platform],
    ) -> Option<Vec<PlatformSize>> {
        if let Some(size) = known {
            return Some(same_size(candidates, size));
        }
        let name = image.name();
        let top = self.contents.get(&manifest_key(name, &digest.0)).await?;
        self.metrics.count("contents", true);
        let entries = match &*top {
            Contents::Image { size, .. } => return Some(same_size(candidates, *size)),
            Contents::Index(entries) => entries,
        };
        let mut sizes = Vec::new();
        for (candidate, entry) in pulled(entries, candidates) {
            let key = manifest_key(name, &entry.digest);
            if let Contents::Image {
                size: Some(bytes), ..
            } = *self.contents.get(&key).await?
            {
                sizes.push(PlatformSize {
                    platform: candidate.clone(),
                    bytes,
                });
            }
        }
        Some(sizes)
    }
}
