//! Tiny, deterministic test images built in memory (OCI or Docker media types, single platform or an
//! index) and pushed with oci-client.

use std::fmt;

use super::*;

/// One platform of a test image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
    /// Bytes of incompressible filler in a second layer (none when 0), for images of a known size.
    pub padding: usize,
    /// What the image config says besides the platform.
    pub config: ConfigSpec,
}

/// The image config fields a test sets (defaults: no `User`, no `Entrypoint`, `Cmd` the test file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigSpec {
    /// `User`; unset when `None`.
    pub user: Option<String>,
    /// `Entrypoint`; unset when `None`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`; the harness's `["/pullgate-test.txt"]` when `None`, unset when `Some(vec![])`.
    pub cmd: Option<Vec<String>>,
    /// `os.version` (Windows builds).
    pub os_version: Option<String>,
    /// The config names this `(os, architecture)` instead of the platform's own: an index entry that
    /// lies about what its image is built for.
    pub built_for: Option<(String, String)>,
}

impl Platform {
    pub fn new(os: &str, arch: &str) -> Self {
        Self {
            os: os.to_owned(),
            arch: arch.to_owned(),
            variant: None,
            padding: 0,
            config: ConfigSpec::default(),
        }
    }

    /// The image config's `User`.
    pub fn with_user(mut self, user: &str) -> Self {
        self.config.user = Some(user.to_owned());
        self
    }

    /// The image config's `Entrypoint`.
    pub fn with_entrypoint(mut self, entrypoint: &[&str]) -> Self {
        self.config.entrypoint = Some(entrypoint.iter().map(|w| (*w).to_owned()).collect());
        self
    }

    /// No `Cmd` (and no `Entrypoint` unless set): nothing to run.
    pub fn without_command(mut self) -> Self {
        self.config.cmd = Some(Vec::new());
        self
    }

    /// The image config's `os.version`.
    pub fn with_os_version(mut self, version: &str) -> Self {
        self.config.os_version = Some(version.to_owned());
        self
    }

    /// The config claims `os/arch` whatever the index entry says.
    pub fn built_for(mut self, os: &str, arch: &str) -> Self {
        self.config.built_for = Some((os.to_owned(), arch.to_owned()));
        self
    }

    pub fn linux(arch: &str) -> Self {
        Self::new("linux", arch)
    }

    pub fn windows_amd64() -> Self {
        Self::new("windows", "amd64")
    }

    pub fn with_variant(mut self, variant: &str) -> Self {
        self.variant = Some(variant.to_owned());
        self
    }

    /// The same platform with a second layer of `bytes` incompressible bytes.
    pub fn with_padding(mut self, bytes: usize) -> Self {
        self.padding = bytes;
        self
    }

    /// `{"architecture", "os", "variant"?}` as in an image config and an index entry.
    fn json(&self) -> Value {
        let mut value = json!({ "architecture": self.arch, "os": self.os });
        if let Some(variant) = &self.variant {
            value["variant"] = Value::from(variant.as_str());
        }
        if let Some(version) = &self.config.os_version {
            value["os.version"] = Value::from(version.as_str());
        }
        value
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// What [`push_image`] builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// One OCI image manifest.
    Single(Platform),
    /// An OCI image index over OCI image manifests.
    OciIndex(Vec<Platform>),
    /// A Docker schema2 manifest list over Docker schema2 manifests.
    DockerManifestList(Vec<Platform>),
    /// An OCI index whose entries name no `platform` (readers must look at each child's config).
    IndexWithoutPlatforms(Vec<Platform>),
    /// An OCI index whose one entry is another OCI index (without `platform`) over these platforms.
    NestedIndex(Vec<Platform>),
}

impl ImageKind {
    pub fn single(platform: Platform) -> Self {
        Self::Single(platform)
    }
}

/// How an index names its entries' platforms.
enum Shape {
    Named,
    WithoutPlatforms,
    Nested,
}

/// What [`push_image_detailed`] pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedImage {
    /// Digest of the tagged manifest (the index for multi-platform images).
    pub digest: String,
    pub media_type: &'static str,
    /// Each platform's image manifest digest (one entry for a single image).
    pub platforms: Vec<(Platform, String)>,
    /// Each platform's compressed size as its manifest states it (config and layers), in `platforms` order.
    pub sizes: Vec<u64>,
}

/// The media types of one image format.
struct MediaTypes {
    index: &'static str,
    manifest: &'static str,
    config: &'static str,
    layer: &'static str,
}

const OCI: MediaTypes = MediaTypes {
    index: "application/vnd.oci.image.index.v1+json",
    manifest: "application/vnd.oci.image.manifest.v1+json",
    config: "application/vnd.oci.image.config.v1+json",
    layer: "application/vnd.oci.image.layer.v1.tar+gzip",
};

const DOCKER: MediaTypes = MediaTypes {
    index: "application/vnd.docker.distribution.manifest.list.v2+json",
    manifest: "application/vnd.docker.distribution.manifest.v2+json",
    config: "application/vnd.docker.container.image.v1+json",
    layer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
};

/// Bytes plus their `sha256:` digest and media type: a blob or a manifest.
struct Content {
    media_type: &'static str,
    bytes: Vec<u8>,
    digest: String,
}

impl Content {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        let digest = sha256(&bytes);
        Self {
            media_type,
            bytes,
            digest,
        }
    }

    fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

fn sha256(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Pushes a test image as `repo:tag` and returns the tagged manifest's digest.
///
/// Images are deterministic: the same `(repo, tag, kind)` gives the same digest on every run and
/// every registry; the layer's text names repo, tag and platform, so different tags differ.
pub async fn push_image(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    kind: ImageKind,
) -> anyhow::Result<String> {
    Ok(push_image_detailed(reg, repo, tag, kind).await?.digest)
}

/// [`push_image`], also returning each platform's manifest digest.
pub async fn push_image_detailed(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    kind: ImageKind,
) -> anyhow::Result<PushedImage> {
    let client = reg.client()?;
    let auth = reg.registry_auth();
    let tagged = reg.reference(repo, tag)?;
    client
        .auth(&tagged, &auth, RegistryOperation::Push)
        .await
        .with_context(|| format!("authenticating to push {tagged}"))?;

    let kind_shape = match &kind {
        ImageKind::IndexWithoutPlatforms(_) => Shape::WithoutPlatforms,
        ImageKind::NestedIndex(_) => Shape::Nested,
        _ => Shape::Named,
    };
    let (media, platforms) = match kind {
        ImageKind::Single(platform) => {
            let (manifest, size) = push_platform(&client, &tagged, &OCI, &platform).await?;
            push_manifest(&client, &tagged, &manifest).await?;
            return Ok(PushedImage {
                digest: manifest.digest.clone(),
                media_type: manifest.media_type,
                platforms: vec![(platform, manifest.digest)],
                sizes: vec![size],
            });
        }
        ImageKind::OciIndex(platforms)
        | ImageKind::IndexWithoutPlatforms(platforms)
        | ImageKind::NestedIndex(platforms) => (&OCI, platforms),
        ImageKind::DockerManifestList(platforms) => (&DOCKER, platforms),
    };
    let named = !matches!(kind_shape, Shape::WithoutPlatforms);

    let mut entries = Vec::new();
    let mut pushed = Vec::new();
    let mut sizes = Vec::new();
    for platform in platforms {
        let (manifest, size) = push_platform(&client, &tagged, media, &platform).await?;
        sizes.push(size);
        let by_digest: Reference = format!("{}/{repo}@{}", reg.host(), manifest.digest).parse()?;
        push_manifest(&client, &by_digest, &manifest).await?;
        let mut entry = manifest.descriptor();
        if named {
            entry["platform"] = platform.json();
        }
        entries.push(entry);
        pushed.push((platform, manifest.digest));
    }
    let mut index = json!({ "schemaVersion": 2, "mediaType": media.index, "manifests": entries });
    if matches!(kind_shape, Shape::Nested) {
        let inner = Content::new(media.index, serde_json::to_vec(&index)?);
        let by_digest: Reference = format!("{}/{repo}@{}", reg.host(), inner.digest).parse()?;
        push_manifest(&client, &by_digest, &inner).await?;
        index = json!({ "schemaVersion": 2, "mediaType": media.index, "manifests": [inner.descriptor()] });
    }
    let index = Content::new(media.index, serde_json::to_vec(&index)?);
    push_manifest(&client, &tagged, &index).await?;
    Ok(PushedImage {
        digest: index.digest,
        media_type: index.media_type,
        platforms: pushed,
        sizes,
    })
}

/// Builds one platform's layers and config, pushes the blobs, returns the (unpushed) manifest and the
/// size it states (config and layers).
async fn push_platform(
    client: &Client,
    tagged: &Reference,
    media: &MediaTypes,
    platform: &Platform,
) -> anyhow::Result<(Content, u64)> {
    // Not the host: the same image must have the same digest on every registry.
    let tag = tagged.tag().unwrap_or_default();
    let text = format!(
        "pullgate test image {}:{tag} {platform}\n",
        tagged.repository()
    );
    let tar = layer_tar(&text)?;
    let layer = Content::new(media.layer, gzip(&tar)?);

    let mut layers = vec![layer];
    let mut diff_ids = vec![sha256(&tar)];
    if platform.padding > 0 {
        let filler = layer_tar_bytes("pullgate-filler.bin", &filler(platform.padding, &text))?;
        diff_ids.push(sha256(&filler));
        layers.push(Content::new(media.layer, gzip(&filler)?));
    }
    let mut config = platform.json();
    let spec = &platform.config;
    if let Some((os, arch)) = &spec.built_for {
        config = json!({ "architecture": arch, "os": os });
    }
    config["created"] = Value::from("1970-01-01T00:00:00Z");
    let mut run = json!({});
    match &spec.cmd {
        None => run["Cmd"] = json!(["/pullgate-test.txt"]),
        Some(cmd) if !cmd.is_empty() => run["Cmd"] = json!(cmd),
        Some(_) => {}
    }
    if let Some(entrypoint) = &spec.entrypoint {
        run["Entrypoint"] = json!(entrypoint);
    }
    if let Some(user) = &spec.user {
        run["User"] = Value::from(user.as_str());
    }
    config["config"] = run;
    config["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
    config["history"] =
        json!([{ "created": "1970-01-01T00:00:00Z", "created_by": "pullgate test harness" }]);
    let config = Content::new(media.config, serde_json::to_vec(&config)?);

    for blob in layers.iter().chain([&config]) {
        client
            .push_blob(tagged, blob.bytes.clone(), &blob.digest)
            .await
            .with_context(|| format!("pushing blob {} to {tagged}", blob.digest))?;
    }
    let size = layers
        .iter()
        .chain([&config])
        .map(|b| b.bytes.len() as u64)
        .sum();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media.manifest,
        "config": config.descriptor(),
        "layers": layers.iter().map(Content::descriptor).collect::<Vec<_>>(),
    });
    Ok((
        Content::new(media.manifest, serde_json::to_vec(&manifest)?),
        size,
    ))
}

/// `len` bytes that gzip cannot shrink (xorshift seeded by `seed`), the same for the same seed.
fn filler(len: usize, seed: &str) -> Vec<u8> {
    let mut state = seed.bytes().fold(0x9E37_79B9_7F4A_7C15_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    }) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn push_manifest(
    client: &Client,
    reference: &Reference,
    manifest: &Content,
) -> anyhow::Result<()> {
    client
        .push_manifest_raw(
            reference,
            manifest.bytes.clone(),
            HeaderValue::from_static(manifest.media_type),
        )
        .await
        .with_context(|| format!("pushing manifest {} as {reference}", manifest.digest))?;
    Ok(())
}

/// A one-file tar with fixed mode, owner and mtime.
fn layer_tar(text: &str) -> std::io::Result<Vec<u8>> {
    layer_tar_bytes("pullgate-test.txt", text.as_bytes())
}

/// A tar of one file `path` holding `data`, with fixed mode, owner and mtime.
fn layer_tar_bytes(path: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, data)?;
    builder.into_inner()
}

/// gzip with mtime 0 and no file name, so equal input gives equal bytes.
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}

/// Tags the image `repo:from` also as each of `tags` (one manifest PUT each, anonymous registry).
pub async fn retag(reg: &TestRegistry, repo: &str, from: &str, tags: impl Iterator<Item = String>) {
    let http = reqwest::Client::new();
    let index = "application/vnd.oci.image.index.v1+json";
    let got = http
        .get(format!("{}/v2/{repo}/manifests/{from}", reg.url()))
        .header("accept", index)
        .send()
        .await
        .expect("GET manifest");
    let body = got.bytes().await.expect("manifest body");
    for tag in tags {
        let put = http
            .put(format!("{}/v2/{repo}/manifests/{tag}", reg.url()))
            .header("content-type", index)
            .body(body.clone())
            .send()
            .await
            .expect("PUT manifest");
        assert_eq!(put.status().as_u16(), 201, "tagged {tag}");
    }
}
