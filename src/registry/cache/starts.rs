//! What a node would start: the image config of the manifest each candidate platform's node pulls,
//! read by digest and kept (configs are content-addressed), for the start rules.

use std::sync::Arc;

use super::{CachedResolver, Contents, IndexEntry, manifest_key, pulled};
use crate::credentials::Credential;
use crate::facts::{ImageConfig, ResolveError, StartConfig, Starts, WindowsOffer};
use crate::image::ImageRef;
use crate::platform::Platform;
use crate::registry::{Found, RequestCounter};

impl CachedResolver {
    /// What a node of each of `candidates` would start of `image` (resolved to `found`): the config of
    /// the single image for every candidate; for an index, the config of the entry each candidate's
    /// node would pick (none for a candidate no entry runs on, nor behind a nested index), with the
    /// platform that entry claims. Manifests and configs are read by digest and kept: a digest seen
    /// before costs no request. A Docker schema 1 image has no config blob: no configs.
    pub async fn starts(
        &self,
        image: &ImageRef,
        found: &Found,
        credential: Option<&Credential>,
        candidates: &[Platform],
        requests: &RequestCounter,
    ) -> Result<Starts, ResolveError> {
        let top = self
            .top_contents(image, found, credential, requests)
            .await?;
        match &*top {
            Contents::Image { config: None, .. } => Ok(Starts::PerPlatform(Vec::new())),
            Contents::Image {
                config: Some(digest),
                ..
            } => {
                let config = self
                    .single_config(image, found, digest, credential, requests)
                    .await?;
                Ok(Starts::Single(config))
            }
            Contents::Index(entries) => {
                let mut starts = Vec::new();
                for (candidate, entry) in pulled(entries, candidates) {
                    let child = self
                        .contents_of(image, &entry.digest, credential, requests)
                        .await?;
                    let Contents::Image {
                        config: Some(config),
                        ..
                    } = &*child
                    else {
                        continue;
                    };
                    let config = self.config_of(image, config, credential, requests).await?;
                    starts.push(StartConfig {
                        node: candidate.clone(),
                        entry: Some((entry.platform.clone(), entry.os_version.clone())),
                        config,
                    });
                }
                Ok(Starts::PerPlatform(starts))
            }
        }
    }

    /// The Windows builds `image` (resolved to `found`) is built for: each index entry's `os.version`, or
    /// a single image's config's (the config read for its platform, when that was read).
    pub async fn windows_offer(
        &self,
        image: &ImageRef,
        found: &Found,
        credential: Option<&Credential>,
        requests: &RequestCounter,
    ) -> Result<WindowsOffer, ResolveError> {
        let top = self
            .top_contents(image, found, credential, requests)
            .await?;
        match &*top {
            Contents::Index(entries) => Ok(index_offer(entries)),
            Contents::Image { config: None, .. } => Ok(WindowsOffer::Single(None, None)),
            Contents::Image {
                config: Some(digest),
                ..
            } => {
                let config = self
                    .single_config(image, found, digest, credential, requests)
                    .await?;
                Ok(single_offer(&config))
            }
        }
    }

    /// What the manifest `found` holds — from its own `GET` (then kept), else the cache or one `GET`
    /// by digest.
    async fn top_contents(
        &self,
        image: &ImageRef,
        found: &Found,
        credential: Option<&Credential>,
        requests: &RequestCounter,
    ) -> Result<Arc<Contents>, ResolveError> {
        match &found.contents {
            Some(
                contents @ (Contents::Image {
                    config: Some(_), ..
                }
                | Contents::Index(_)),
            ) => {
                let contents = Arc::new(contents.clone());
                let key = manifest_key(image.name(), &found.digest.0);
                self.contents.insert(key, contents.clone()).await;
                Ok(contents)
            }
            _ => {
                self.contents_of(image, &found.digest.0, credential, requests)
                    .await
            }
        }
    }

    /// A single image's config `digest`: the one its lookup read for the platform (then kept), else
    /// [`config_of`](Self::config_of).
    async fn single_config(
        &self,
        image: &ImageRef,
        found: &Found,
        digest: &str,
        credential: Option<&Credential>,
        requests: &RequestCounter,
    ) -> Result<Arc<ImageConfig>, ResolveError> {
        if let Some(config) = &found.config {
            let key = manifest_key(image.name(), digest);
            self.configs.insert(key, config.clone()).await;
        }
        self.config_of(image, digest, credential, requests).await
    }

    /// The image config `digest` of `image`'s repository: from the cache, else one `GET`.
    async fn config_of(
        &self,
        image: &ImageRef,
        digest: &str,
        credential: Option<&Credential>,
        requests: &RequestCounter,
    ) -> Result<Arc<ImageConfig>, ResolveError> {
        let key = manifest_key(image.name(), digest);
        let fetch = async {
            let config = self
                .inner
                .config(image, credential, digest, requests)
                .await?;
            Ok(Arc::new(config))
        };
        self.kept(&self.configs, "configs", key, fetch).await
    }
}

/// An index's Windows builds: each entry's platform and `os.version`.
pub(super) fn index_offer(entries: &[IndexEntry]) -> WindowsOffer {
    let entries = entries.iter();
    WindowsOffer::Index(
        entries
            .map(|e| (e.platform.clone(), e.os_version.clone()))
            .collect(),
    )
}

/// A single image's Windows build: its config's platform and `os.version`.
pub(super) fn single_offer(config: &ImageConfig) -> WindowsOffer {
    WindowsOffer::Single(config.platform.clone(), config.os_version.clone())
}
