//! The warm path: what the caches alone say of an image, with no request and no waiting on another
//! lookup — the digest cache's entry (which holds a single image's size when its lookup read it), the
//! platform cache when platforms are asked, the contents cache only for an index (or a size not yet
//! known).

use super::{CachedResolver, Contents, DigestOutcome, fingerprint, same_size};
use crate::credentials::Credential;
use crate::facts::{ManifestDigest, PlatformSize};
use crate::image::ImageRef;
use crate::platform::{self, Platform};
use crate::registry::Found;

impl CachedResolver {
    /// What the caches alone say of `image` with `credential`: its digest, with `platforms` the
    /// platforms it offers, and with `candidates` what a node of each pulls — `None` unless every
    /// part is held (and the digest was found), so that the caller asks the registry.
    pub async fn warm(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
        platforms: bool,
        candidates: Option<&[Platform]>,
    ) -> Option<(Found, Option<Vec<PlatformSize>>)> {
        let key = (image.to_string(), fingerprint(credential));
        let DigestOutcome::Found { digest, size } = self.digests.get(&key).await? else {
            return None;
        };
        let offered = match platforms {
            true => {
                let key = (image.name().to_owned(), digest.clone());
                let offered = self.platforms.get(&key).await?;
                self.metrics.count("platforms", true);
                Some(Ok((*offered).clone()))
            }
            false => None,
        };
        let sizes = match candidates {
            Some(candidates) => Some(self.warm_sizes(image, &digest, size, candidates).await?),
            None => None,
        };
        self.metrics.count("digest", true);
        let found = Found {
            digest,
            platforms: offered,
            contents: None,
        };
        Some((found, sizes))
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
        let top = self
            .contents
            .get(&(name.to_owned(), digest.clone()))
            .await?;
        self.metrics.count("contents", true);
        let entries = match &*top {
            Contents::Image { size } => return Some(same_size(candidates, *size)),
            Contents::Index(entries) => entries,
        };
        let mut sizes = Vec::new();
        for candidate in candidates {
            let Some(chosen) = platform::preferred(candidate, entries.iter().map(|(p, _)| p))
            else {
                continue;
            };
            let key = (name.to_owned(), ManifestDigest(entries[chosen].1.clone()));
            if let Contents::Image { size: Some(bytes) } = *self.contents.get(&key).await? {
                sizes.push(PlatformSize {
                    platform: candidate.clone(),
                    bytes,
                });
            }
        }
        Some(sizes)
    }
}
