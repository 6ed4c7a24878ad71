//! `pullgate check --cache-dir`: registry answers that stay true, kept on disk between runs so that
//! repeated CI runs do not ask the registry again. An [`ImageResolver`] layer under the in-memory caches.
//!
//! - digest → platforms, keyed by (repository, manifest digest): content-addressed, kept for good.
//! - digest → contents (a single image's size, an index's platform entries), keyed and kept the same way.
//! - a digest reference's existence, keyed by (repository@digest, credential): kept for
//!   [`EXISTENCE_TTL`]; the credential part means a run with other (or rotated) credentials asks again.
//! - tag → digest is never kept on disk: tags move, and a check must see where a tag points now (one
//!   `HEAD` per tag per run). "Not found" and failures are never kept.
//!
//! No secret is written: the credential part of a key is PBKDF2-HMAC-SHA256 (100,000 rounds) of the
//! username and password with a random salt made for the directory. Files are written to a temporary
//! name and renamed, so concurrent runs sharing a directory never read half a file; an unreadable or
//! foreign file is a miss.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::credentials::Credential;
use crate::facts::{ImageConfig, ManifestDigest, ResolveError};
use crate::image::ImageRef;
use crate::platform::Platform;
use crate::registry::{Contents, Found, ImageResolver, IndexEntry, RequestCounter};

/// How long "this digest exists and this credential may pull it" is trusted.
pub const EXISTENCE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Layout version: a new layout gets a new directory.
const LAYOUT: &str = "pullgate-cache-v1";
const PBKDF2_ROUNDS: u32 = 100_000;

/// Why the cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cache directory {}: {source}", dir.display())]
pub struct CacheDirError {
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// An [`ImageResolver`] that answers from, and records to, a directory.
pub struct DiskCache {
    inner: Arc<dyn ImageResolver>,
    root: PathBuf,
    salt: Vec<u8>,
    /// Credential fingerprint → derived key, so each credential is derived once per run.
    derived: Mutex<HashMap<String, String>>,
    written: AtomicUsize,
    write_error: Mutex<Option<String>>,
    temp_counter: AtomicUsize,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExistenceEntry {
    image: String,
    credential: String,
    digest: String,
    checked_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContentsEntry {
    image: String,
    digest: String,
    /// A single image's size (`null` when its manifest does not state every size).
    size: Option<u64>,
    /// An index's entries that name a platform: `[platform, digest, os.version]`; `null` for a single
    /// image. (Entries of two, written before os.version was kept, do not read: a miss.)
    index: Option<Vec<(String, String, Option<String>)>>,
    /// A single image's config digest (`null` for Docker schema 1, and in entries written before
    /// pullgate read configs: such an entry is a miss).
    #[serde(default)]
    config: Option<String>,
    /// Whether the image is Docker schema 1 (no config blob).
    #[serde(default)]
    schema1: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigEntry {
    image: String,
    digest: String,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    os_version: Option<String>,
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlatformsEntry {
    image: String,
    digest: String,
    platforms: Vec<String>,
}

impl DiskCache {
    /// Open (creating when needed) the cache under `dir`.
    pub fn open(dir: &Path, inner: Arc<dyn ImageResolver>) -> Result<Self, CacheDirError> {
        let error = |source| CacheDirError {
            dir: dir.to_owned(),
            source,
        };
        let root = dir.join(LAYOUT);
        for sub in ["digests", "platforms", "contents", "configs"] {
            std::fs::create_dir_all(root.join(sub)).map_err(error)?;
        }
        let salt = salt(&root).map_err(error)?;
        Ok(Self {
            inner,
            root,
            salt,
            derived: Mutex::new(HashMap::new()),
            written: AtomicUsize::new(0),
            write_error: Mutex::new(None),
            temp_counter: AtomicUsize::new(0),
        })
    }

    /// How many entries this run wrote, and the first write error, if any.
    pub fn write_summary(&self) -> (usize, Option<String>) {
        let error = match self.write_error.lock() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        (self.written.load(Ordering::Relaxed), error)
    }

    fn credential_key(&self, credential: Option<&Credential>) -> String {
        let Some(credential) = credential else {
            return "anonymous".into();
        };
        let fingerprint = credential.fingerprint();
        let mut derived = match self.derived.lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        derived
            .entry(fingerprint)
            .or_insert_with(|| {
                let mut secret = credential.username.as_bytes().to_vec();
                secret.push(0);
                secret.extend_from_slice(credential.password().as_bytes());
                let mut out = [0u8; 16];
                aws_lc_rs::pbkdf2::derive(
                    aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
                    NonZeroU32::new(PBKDF2_ROUNDS).unwrap_or(NonZeroU32::MIN),
                    &self.salt,
                    &secret,
                    &mut out,
                );
                hex(&out)
            })
            .clone()
    }

    fn path(&self, kind: &str, key: &str) -> PathBuf {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        self.root
            .join(kind)
            .join(format!("{}.json", hex(digest.as_ref())))
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Option<T> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write<T: Serialize>(&self, path: &Path, entry: &T) {
        let result = (|| -> std::io::Result<()> {
            let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
            let dir = path.parent().unwrap_or(&self.root);
            let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
            std::fs::write(&temp, bytes)?;
            std::fs::rename(&temp, path).inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            })
        })();
        match result {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let mut first = match self.write_error.lock() {
                    Ok(f) => f,
                    Err(poisoned) => poisoned.into_inner(),
                };
                first.get_or_insert_with(|| format!("{}: {e}", path.display()));
            }
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The directory's salt, made once (atomically: written aside, then linked into place).
fn salt(root: &Path) -> std::io::Result<Vec<u8>> {
    let path = root.join("salt");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if text.trim().len() == 32 {
            return Ok(text.trim().as_bytes().to_vec());
        }
    }
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| std::io::Error::other("no randomness"))?;
    let temp = root.join(format!(".salt-{}", std::process::id()));
    std::fs::write(&temp, hex(&bytes))?;
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(hex(&bytes).into_bytes()),
        // Another run made it first (or a broken one is there): use what is there.
        Err(_) => {
            let text = std::fs::read_to_string(&path)?;
            if text.trim().len() != 32 {
                std::fs::write(&path, hex(&bytes))?;
                return Ok(hex(&bytes).into_bytes());
            }
            Ok(text.trim().as_bytes().to_vec())
        }
    }
}

impl DiskCache {
    /// A pinned reference's existence for this credential, when a fresh entry says so.
    fn existence(&self, reference: &str, credential_key: &str) -> Option<ManifestDigest> {
        let path = self.path("digests", &format!("{reference} {credential_key}"));
        let entry = self.read::<ExistenceEntry>(&path)?;
        let fresh = now().saturating_sub(entry.checked_at) < EXISTENCE_TTL.as_secs();
        (fresh && entry.image == reference && entry.credential == credential_key)
            .then_some(ManifestDigest(entry.digest))
    }

    fn remember_existence(&self, reference: String, credential_key: String, digest: &str) {
        let path = self.path("digests", &format!("{reference} {credential_key}"));
        self.write(
            &path,
            &ExistenceEntry {
                image: reference,
                credential: credential_key,
                digest: digest.to_owned(),
                checked_at: now(),
            },
        );
    }

    /// The platforms kept for a digest of a repository.
    fn platforms(&self, name: &str, digest: &str) -> Option<Vec<Platform>> {
        let path = self.path("platforms", &format!("{name}@{digest}"));
        let entry = self.read::<PlatformsEntry>(&path)?;
        let parsed: Option<Vec<Platform>> =
            entry.platforms.iter().map(|p| p.parse().ok()).collect();
        (entry.image == name && entry.digest == digest)
            .then_some(parsed)
            .flatten()
    }

    fn remember_platforms(&self, name: String, digest: &str, platforms: &[Platform]) {
        let path = self.path("platforms", &format!("{name}@{digest}"));
        self.write(
            &path,
            &PlatformsEntry {
                image: name,
                digest: digest.to_owned(),
                platforms: platforms.iter().map(ToString::to_string).collect(),
            },
        );
    }

    /// What a digest of a repository holds, when kept.
    fn contents(&self, name: &str, digest: &str) -> Option<Contents> {
        let path = self.path("contents", &format!("{name}@{digest}"));
        let entry = self.read::<ContentsEntry>(&path)?;
        if entry.image != name || entry.digest != digest {
            return None;
        }
        Some(match entry.index {
            None if entry.config.is_none() && !entry.schema1 => return None,
            None => Contents::Image {
                size: entry.size,
                config: entry.config,
            },
            Some(entries) => Contents::Index(
                entries
                    .into_iter()
                    .map(|(platform, digest, os_version)| {
                        Some(IndexEntry {
                            platform: platform.parse().ok()?,
                            digest,
                            os_version,
                        })
                    })
                    .collect::<Option<_>>()?,
            ),
        })
    }

    fn remember_contents(&self, name: String, digest: &str, contents: &Contents) {
        let path = self.path("contents", &format!("{name}@{digest}"));
        let (size, index, config) = match contents {
            Contents::Image { size, config } => (*size, None, config.clone()),
            Contents::Index(entries) => (
                None,
                Some(
                    entries
                        .iter()
                        .map(|e| {
                            (
                                e.platform.to_string(),
                                e.digest.clone(),
                                e.os_version.clone(),
                            )
                        })
                        .collect(),
                ),
                None,
            ),
        };
        let schema1 = index.is_none() && config.is_none();
        self.write(
            &path,
            &ContentsEntry {
                image: name,
                digest: digest.to_owned(),
                size,
                index,
                config,
                schema1,
            },
        );
    }

    /// An image config of a repository, when kept.
    fn config_entry(&self, name: &str, digest: &str) -> Option<ImageConfig> {
        let path = self.path("configs", &format!("{name}@{digest}"));
        let entry = self.read::<ConfigEntry>(&path)?;
        if entry.image != name || entry.digest != digest {
            return None;
        }
        let platform = match (entry.os, entry.architecture) {
            (Some(os), Some(architecture)) => Some(Platform {
                os,
                architecture,
                variant: entry.variant,
            }),
            _ => None,
        };
        Some(ImageConfig {
            platform,
            os_version: entry.os_version,
            user: entry.user,
            entrypoint: entry.entrypoint,
            cmd: entry.cmd,
        })
    }

    fn remember_config(&self, name: String, digest: &str, config: &ImageConfig) {
        let path = self.path("configs", &format!("{name}@{digest}"));
        let platform = config.platform.as_ref();
        self.write(
            &path,
            &ConfigEntry {
                image: name,
                digest: digest.to_owned(),
                os: platform.map(|p| p.os.clone()),
                architecture: platform.map(|p| p.architecture.clone()),
                variant: platform.and_then(|p| p.variant.clone()),
                os_version: config.os_version.clone(),
                user: config.user.clone(),
                entrypoint: config.entrypoint.clone(),
                cmd: config.cmd.clone(),
            },
        );
    }
}

impl ImageResolver for DiskCache {
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ManifestDigest, ResolveError>> {
        Box::pin(async move {
            let Some(pinned) = image.digest() else {
                return self.inner.digest(image, credential, requests).await;
            };
            let reference = format!("{}@{pinned}", image.name());
            let credential_key = self.credential_key(credential);
            if let Some(digest) = self.existence(&reference, &credential_key) {
                return Ok(digest);
            }
            let digest = self.inner.digest(image, credential, requests).await?;
            self.remember_existence(reference, credential_key, &digest.0);
            Ok(digest)
        })
    }

    fn manifest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        platforms: bool,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Found, ResolveError>> {
        Box::pin(async move {
            let name = image.name();
            let pinned = image
                .digest()
                .map(|digest| (format!("{name}@{digest}"), self.credential_key(credential)));
            if let Some((reference, credential_key)) = &pinned {
                let known = self.existence(reference, credential_key);
                if let Some(digest) = known {
                    let contents = self.contents(name, &digest.0);
                    // Asked for platforms: kept platforms answer (with the contents when kept too);
                    // asked for the manifest only: kept contents answer.
                    let offered = platforms.then(|| self.platforms(name, &digest.0));
                    let hit = match &offered {
                        Some(offered) => offered.is_some(),
                        None => contents.is_some(),
                    };
                    if hit {
                        return Ok(Found {
                            digest,
                            platforms: offered.flatten().map(Ok),
                            contents,
                            config: None,
                        });
                    }
                }
            }
            let found = self
                .inner
                .manifest(image, credential, platforms, requests)
                .await?;
            if let Some((reference, credential_key)) = pinned {
                self.remember_existence(reference, credential_key, &found.digest.0);
            }
            if let Some(Ok(offered)) = &found.platforms {
                self.remember_platforms(name.to_owned(), &found.digest.0, offered);
            }
            if let Some(contents) = &found.contents {
                self.remember_contents(name.to_owned(), &found.digest.0, contents);
                if let (
                    Contents::Image {
                        config: Some(digest),
                        ..
                    },
                    Some(config),
                ) = (contents, &found.config)
                {
                    self.remember_config(name.to_owned(), digest, config);
                }
            }
            Ok(found)
        })
    }

    /// Configs are content-addressed: kept between runs.
    fn config<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        digest: &'a str,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ImageConfig, ResolveError>> {
        Box::pin(async move {
            let name = image.name();
            if let Some(config) = self.config_entry(name, digest) {
                return Ok(config);
            }
            let config = self
                .inner
                .config(image, credential, digest, requests)
                .await?;
            self.remember_config(name.to_owned(), digest, &config);
            Ok(config)
        })
    }

    fn tags<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Vec<String>, ResolveError>> {
        self.inner.tags(image, credential, requests)
    }

    /// Platforms are kept between runs: a `HEAD` per tag is all a later run needs.
    fn head_first(&self, _registry: &str) -> bool {
        true
    }
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
