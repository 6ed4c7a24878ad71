//! Manifests as the registry sends them — OCI and Docker, image indexes and single images (schema 2, and
//! schema 1's top-level `architecture`) — read for what pullgate needs: the platforms an index offers, or
//! the config blob that names a single image's platform; and image config blobs, read for what decides
//! how a container starts ([`ImageConfig`]). Bodies arrive already capped; the number of index entries
//! is capped here.

use serde::Deserialize;

use crate::facts::{ImageConfig, ResolveError};
use crate::platform::Platform;

/// Media types accepted for a manifest: OCI and Docker v2, single images and indexes.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest image config blob read (real ones are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// What a manifest says about platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An index: its entries, each with the platform it names (if it names one).
    Index(Vec<Entry>),
    /// A single image: its platform is in the config blob with this digest; `size` is what a pull
    /// downloads (config and layers, compressed), when every descriptor states its size.
    Image {
        config: String,
        config_size: Option<i64>,
        size: Option<u64>,
    },
    /// Docker schema 1: the architecture is written in the manifest.
    Schema1(Platform),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    manifests: Option<Vec<RawIndexEntry>>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawLayer>>,
    architecture: Option<String>,
}

/// A layer descriptor, read for its size only.
#[derive(Debug, Deserialize)]
struct RawLayer {
    size: Option<i64>,
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub digest: String,
    /// `None` for an entry without `platform` (containerd then reads the child's config) — and for a
    /// nested index.
    pub platform: Option<Platform>,
    /// The platform's `os.version` (Windows builds), when it states one.
    pub os_version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawIndexEntry {
    #[serde(default)]
    digest: String,
    platform: Option<RawPlatform>,
}

#[derive(Debug, Deserialize)]
struct RawDescriptor {
    digest: String,
    size: Option<i64>,
}

/// The platform fields of an index entry or an image config.
#[derive(Debug, Deserialize)]
pub struct RawPlatform {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    #[serde(rename = "os.version")]
    os_version: Option<String>,
}

impl RawPlatform {
    fn platform(&self) -> Option<Platform> {
        Some(Platform {
            os: self.os.clone().filter(|s| !s.is_empty())?,
            architecture: self.architecture.clone().filter(|s| !s.is_empty())?,
            variant: self.variant.clone().filter(|s| !s.is_empty()),
        })
    }
}

/// Read a manifest body; an index with more than `max_entries` entries is refused.
pub fn parse(body: &[u8], max_entries: usize) -> Result<Manifest, ResolveError> {
    let manifest: RawManifest = serde_json::from_slice(body)
        .map_err(|e| ResolveError::InvalidResponse(format!("manifest is not valid JSON: {e}")))?;
    if let Some(entries) = manifest.manifests {
        if entries.len() > max_entries {
            return Err(ResolveError::InvalidResponse(format!(
                "the image index lists {} manifests, more than the {max_entries} pullgate reads (resolution.maxIndexEntries)",
                entries.len()
            )));
        }
        return Ok(Manifest::Index(
            entries
                .iter()
                .map(|e| Entry {
                    digest: e.digest.clone(),
                    platform: e.platform.as_ref().and_then(RawPlatform::platform),
                    os_version: e
                        .platform
                        .as_ref()
                        .and_then(|p| p.os_version.clone())
                        .filter(|v| !v.is_empty()),
                })
                .collect(),
        ));
    }
    if manifest.schema_version == Some(1) {
        return Ok(Manifest::Schema1(Platform {
            os: "linux".into(),
            architecture: manifest.architecture.unwrap_or_default(),
            variant: None,
        }));
    }
    let config = manifest.config.ok_or_else(|| {
        ResolveError::InvalidResponse("manifest has neither `manifests` nor `config`".into())
    })?;
    let mut sizes =
        std::iter::once(config.size).chain(manifest.layers.iter().flatten().map(|l| l.size));
    let size = sizes.try_fold(0_u64, |total, size| {
        total.checked_add(u64::try_from(size?).ok()?)
    });
    Ok(Manifest::Image {
        config: config.digest,
        config_size: config.size,
        size,
    })
}

impl Manifest {
    /// What the manifest holds, for sizes.
    pub fn contents(&self) -> super::super::Contents {
        use super::super::{Contents, IndexEntry};
        match self {
            Self::Index(entries) => Contents::Index(
                entries
                    .iter()
                    .filter_map(|e| {
                        Some(IndexEntry {
                            platform: e.platform.clone()?,
                            digest: e.digest.clone(),
                            os_version: e.os_version.clone(),
                        })
                    })
                    .collect(),
            ),
            Self::Image { size, config, .. } => Contents::Image {
                size: *size,
                config: Some(config.clone()),
            },
            Self::Schema1(_) => Contents::Image {
                size: None,
                config: None,
            },
        }
    }
}

/// An image config blob as the OCI image spec (and Docker's image JSON) lays it out, read for the fields
/// that decide how a container starts. `null` is as good as absent for every field, as in Go.
#[derive(Debug, Deserialize)]
struct RawConfig {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    #[serde(rename = "os.version")]
    os_version: Option<String>,
    config: Option<RawRunConfig>,
}

/// The `config` object of an image config.
#[derive(Debug, Default, Deserialize)]
struct RawRunConfig {
    #[serde(rename = "User")]
    user: Option<String>,
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
}

/// Read an image config blob.
pub fn image_config(body: &[u8]) -> Result<ImageConfig, ResolveError> {
    let raw: RawConfig = serde_json::from_slice(body).map_err(|e| {
        ResolveError::InvalidResponse(format!("image config is not valid JSON: {e}"))
    })?;
    let platform = RawPlatform {
        os: raw.os,
        architecture: raw.architecture,
        variant: raw.variant,
        os_version: None,
    }
    .platform();
    let run = raw.config.unwrap_or_default();
    Ok(ImageConfig {
        platform,
        os_version: raw.os_version.filter(|v| !v.is_empty()),
        user: run.user.unwrap_or_default(),
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
    })
}

/// Read an image config blob's platform.
pub fn config_platform(body: &[u8]) -> Result<Platform, ResolveError> {
    platform_of(&image_config(body)?)
}

/// The platform an image config names, or why it names none.
pub fn platform_of(config: &ImageConfig) -> Result<Platform, ResolveError> {
    config.platform.clone().ok_or_else(|| {
        ResolveError::InvalidResponse("image config names no os/architecture".into())
    })
}

/// `sha256:<hex>` of a body.
pub fn sha256(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Check that `body` has `digest` (only sha256 is computed; other algorithms are taken as given).
pub fn verify(body: &[u8], digest: &str, what: &str) -> Result<(), ResolveError> {
    if digest.starts_with("sha256:") && sha256(body) != digest {
        return Err(ResolveError::InvalidResponse(format!(
            "the {what} does not match its digest {digest}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        text.parse().expect("platform")
    }

    #[test]
    fn an_index_lists_its_entries_with_their_platforms() {
        let body = br#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:a","platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:b","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"digest":"sha256:c"}]}"#;
        let entry = |digest: &str, platform: Option<&str>| Entry {
            digest: digest.into(),
            platform: platform.map(|p| p.parse().expect("platform")),
            os_version: None,
        };
        assert_eq!(
            parse(body, 1024),
            Ok(Manifest::Index(vec![
                entry("sha256:a", Some("linux/amd64")),
                entry("sha256:b", Some("linux/arm64/v8")),
                entry("sha256:c", None),
            ]))
        );
    }

    #[test]
    fn an_index_with_too_many_entries_is_refused() {
        let entries = [r#"{"digest":"sha256:a"}"#; 5].join(",");
        let body = format!(r#"{{"manifests":[{entries}]}}"#);
        let error = parse(body.as_bytes(), 4).expect_err("too many");
        assert!(error.to_string().contains("lists 5 manifests"), "{error}");
    }

    #[test]
    fn single_images_point_at_their_config() {
        let body = br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":12}}"#;
        assert_eq!(
            parse(body, 1024),
            Ok(Manifest::Image {
                config: "sha256:c".into(),
                config_size: Some(12),
                size: Some(12),
            })
        );
        assert_eq!(
            config_platform(br#"{"os":"linux","architecture":"arm64"}"#),
            Ok(platform("linux/arm64"))
        );
        assert!(config_platform(br#"{"os":""}"#).is_err());
    }

    #[test]
    fn an_image_config_says_how_the_container_starts() {
        let body = br#"{"os":"windows","architecture":"amd64","os.version":"10.0.17763.5936",
            "config":{"User":"1001:1001","Entrypoint":["/app"],"Cmd":["--serve"],"Env":["A=b"]},
            "rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert_eq!(
            image_config(body),
            Ok(ImageConfig {
                platform: Some(platform("windows/amd64")),
                os_version: Some("10.0.17763.5936".into()),
                user: "1001:1001".into(),
                entrypoint: vec!["/app".into()],
                cmd: vec!["--serve".into()],
            })
        );
        // `null` and absent fields are the same: no user, no entrypoint, no command.
        let bare = br#"{"architecture":"arm64","os":"linux","config":{"User":null,"Entrypoint":null,"Cmd":null}}"#;
        let expected = ImageConfig {
            platform: Some(platform("linux/arm64")),
            ..ImageConfig::default()
        };
        assert_eq!(image_config(bare), Ok(expected.clone()));
        let no_config = br#"{"architecture":"arm64","os":"linux"}"#;
        assert_eq!(image_config(no_config), Ok(expected));
        // A config of another shape is a broken answer, never a guess.
        assert!(image_config(br#"{"config":{"Cmd":"sh"}}"#).is_err());
        assert!(image_config(b"[]").is_err());
    }

    #[test]
    fn a_single_image_weighs_its_config_and_layers() {
        let size = |body: &str| match parse(body.as_bytes(), 1024) {
            Ok(Manifest::Image { size, .. }) => size,
            other => panic!("{other:?}"),
        };
        let layers =
            r#""layers":[{"digest":"sha256:l1","size":1000},{"digest":"sha256:l2","size":24}]"#;
        let config = r#""config":{"digest":"sha256:c","size":100}"#;
        assert_eq!(size(&format!("{{{config},{layers}}}")), Some(1124));
        // A descriptor without a size, or a negative one, leaves the size unknown.
        let unsized_layer = r#""layers":[{"digest":"sha256:l1"}]"#;
        assert_eq!(size(&format!("{{{config},{unsized_layer}}}")), None);
        let negative = r#""layers":[{"digest":"sha256:l1","size":-5}]"#;
        assert_eq!(size(&format!("{{{config},{negative}}}")), None);
        let overflow = format!(
            r#""layers":[{{"size":{}}},{{"size":{}}}]"#,
            i64::MAX,
            i64::MAX
        );
        assert_eq!(size(&format!("{{{config},{overflow}}}")), None);
    }

    #[test]
    fn digests_are_verified() {
        assert!(verify(b"x", &sha256(b"x"), "manifest").is_ok());
        assert!(verify(b"y", &sha256(b"x"), "manifest").is_err());
        assert!(verify(b"y", "sha512:abc", "manifest").is_ok());
    }
}
