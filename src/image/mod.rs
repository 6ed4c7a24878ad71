//! Image references: parse and normalise exactly as kubelet/containerd
//! (distribution/reference `ParseNormalizedNamed`) do.
//!
//! This module owns the [`ImageRef`], [`Digest`] and [`RegistryHost`] newtypes. An image string from a pod spec is
//! validated once, here, and normalised to `registry/repository[:tag][@digest]`:
//!
//! - the first path component is a registry only when more components follow and it contains
//!   `.` or `:`, is `localhost`, or has an uppercase letter; otherwise the registry is `docker.io`;
//! - `index.docker.io` becomes `docker.io`, and single-component Docker Hub names get `library/`;
//! - a reference with neither tag nor digest means tag `latest`; a digest always wins over a tag.
//!
//! Kubelet reports every error below as `InvalidImageName`. One deliberate difference: a first
//! component that is taken as a registry (`my_host.com/app`) must be a valid `host[:port]`.
//! distribution/reference would instead re-read such a name as a registry-less path, which
//! kubelet accepts and the runtime then fails to pull; we reject it up front. Where both reject,
//! the error here names the specific problem rather than "invalid reference format".

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Registry that names without a registry component resolve to.
const DOCKER_HUB: &str = "docker.io";
/// Historical Docker Hub host, normalised to [`DOCKER_HUB`].
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// Namespace of Docker Hub's official images (`nginx` is `library/nginx`).
const OFFICIAL_NAMESPACE: &str = "library/";
/// Tag pulled when neither a tag nor a digest is written.
const DEFAULT_TAG: &str = "latest";
/// Longest repository path (after normalisation), as distribution/reference's
/// `RepositoryNameTotalLengthMax`; the registry does not count.
const MAX_REPOSITORY_LEN: usize = 255;
/// Longest tag.
const MAX_TAG_LEN: usize = 128;

/// A validated, normalised container image reference.
///
/// Equality compares every part including [`ImageRef::original`], so `nginx` and
/// `docker.io/library/nginx:latest` are different values; compare `to_string()` to ask whether
/// two references name the same thing.
///
/// The parts are shared: a clone is a reference count, so the same image named by many admissions is
/// parsed once per thread ([`ImageRef::parse_memo`]) and passed around without copying.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef(Arc<Parts>);

#[derive(Debug, PartialEq, Eq, Hash)]
struct Parts {
    original: String,
    registry: RegistryHost,
    repository: String,
    /// `registry/repository`, made once: scoping, caches and messages read it on every admission.
    name: String,
    tag: Option<String>,
    digest: Option<Digest>,
    /// The fully normalised text ([`Display`](fmt::Display)), made once: cache keys read it.
    normalized: String,
}

impl Parts {
    fn image(
        original: String,
        registry: RegistryHost,
        repository: String,
        tag: Option<String>,
        digest: Option<Digest>,
    ) -> ImageRef {
        let name = format!("{registry}/{repository}");
        let mut normalized = name.clone();
        let shown_tag = tag.as_deref().or(digest.is_none().then_some(DEFAULT_TAG));
        if let Some(tag) = shown_tag {
            normalized.push(':');
            normalized.push_str(tag);
        }
        if let Some(digest) = &digest {
            normalized.push('@');
            normalized.push_str(&digest.to_string());
        }
        ImageRef(Arc::new(Self {
            original,
            registry,
            repository,
            name,
            tag,
            digest,
            normalized,
        }))
    }
}

/// Most references [`ImageRef::parse_memo`] keeps per thread; past it the memo starts again empty.
const MEMO_ENTRIES: usize = 4096;

thread_local! {
    static MEMO: RefCell<HashMap<Box<str>, ImageRef, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

impl ImageRef {
    /// [`str::parse`], remembered per thread for references that parse: admissions name the same few
    /// images over and over, and a parse costs more than the rest of a warm admission's work on it.
    pub fn parse_memo(text: &str) -> Result<ImageRef, ImageRefError> {
        if let Some(found) = MEMO.with_borrow(|memo| memo.get(text).cloned()) {
            return Ok(found);
        }
        let parsed: ImageRef = text.parse()?;
        MEMO.with_borrow_mut(|memo| {
            if memo.len() >= MEMO_ENTRIES {
                memo.clear();
            }
            memo.insert(text.into(), parsed.clone());
        });
        Ok(parsed)
    }

    /// Registry host with optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        self.0.registry.as_str()
    }

    /// The same repository pinned to `digest` (what a tag resolved to): `registry/repository@digest`.
    pub fn pinned(&self, digest: &str) -> Result<ImageRef, ImageRefError> {
        Ok(Parts::image(
            format!("{}@{digest}", self.0.name),
            self.0.registry.clone(),
            self.0.repository.clone(),
            None,
            Some(digest.parse()?),
        ))
    }

    /// The registry host, as validated when the reference was parsed.
    pub fn registry_host(&self) -> &RegistryHost {
        &self.0.registry
    }

    /// Repository path within the registry, e.g. `library/nginx` or `team/app`.
    pub fn repository(&self) -> &str {
        &self.0.repository
    }

    /// The tag as written, or `None` when none was written.
    pub fn tag(&self) -> Option<&str> {
        self.0.tag.as_deref()
    }

    /// The digest as written, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.0.digest.as_ref()
    }

    /// The tag that will be pulled: the written tag, `latest` when neither tag nor digest was
    /// written, and `None` for a digest-only reference.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.0.tag, &self.0.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some(DEFAULT_TAG),
            (None, Some(_)) => None,
        }
    }

    /// Whether the image floats on `latest`: the effective tag is `latest` and no digest pins it.
    pub fn is_latest(&self) -> bool {
        self.0.digest.is_none() && self.effective_tag() == Some(DEFAULT_TAG)
    }

    /// The reference exactly as written in the pod spec.
    pub fn original(&self) -> &str {
        &self.0.original
    }

    /// The fully normalised reference, as [`Display`](fmt::Display) writes it, without formatting.
    pub fn normalized(&self) -> &str {
        &self.0.normalized
    }

    /// `registry/repository`, without tag or digest, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if s.trim() != s {
            return Err(ImageRefError::SurroundingWhitespace);
        }
        if s.len() == 64 && s.bytes().all(is_lower_hex) {
            return Err(ImageRefError::HexIdentifier(s.to_owned()));
        }
        let (name_and_tag, digest) = match s.rsplit_once('@') {
            Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
            None => (s, None),
        };
        // A ':' is a tag separator only after the last '/'; before it, it starts a port.
        let (name, tag) = match name_and_tag.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (name_and_tag, None),
        };
        let (written_registry, path) = split_registry(name);
        let registry = match written_registry {
            Some(LEGACY_DOCKER_HUB) | None => DOCKER_HUB,
            Some(registry) => {
                check_registry(registry)?;
                registry
            }
        };
        check_repository(path)?;
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}{path}")
        } else {
            path.to_owned()
        };
        if repository.len() > MAX_REPOSITORY_LEN {
            return Err(ImageRefError::RepositoryTooLong {
                length: repository.len(),
            });
        }
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        Ok(Parts::image(
            s.to_owned(),
            RegistryHost(registry.to_owned()),
            repository,
            tag.map(str::to_owned),
            digest.map(str::parse).transpose()?,
        ))
    }
}

impl fmt::Display for ImageRef {
    /// Fully normalised: `docker.io/library/nginx:latest`, `reg/app:v1@sha256:…`, `reg/app@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.normalized)
    }
}

/// A registry host as image references name it: `host[:port]`, the host DNS-style labels or a
/// bracketed IPv6 literal, e.g. `docker.io`, `registry.example.com:5000`, `[::1]:5000`.
/// `index.docker.io` is `docker.io`. Settings keys (`registries:`, `rateLimitProbes[].registry`) are
/// parsed into this once, with the same grammar as the registry part of an image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryHost(String);

impl RegistryHost {
    /// The host as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RegistryHost {
    type Err = RegistryHostError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let reason = if s.is_empty() {
            Some("it is empty")
        } else if s.contains("://") {
            Some("it has a URL scheme")
        } else if s.contains('/') {
            Some("it has a path")
        } else {
            match check_registry(s) {
                Err(ImageRefError::InvalidRegistry { reason, .. }) => Some(reason),
                _ => None,
            }
        };
        match reason {
            Some(reason) => Err(RegistryHostError {
                host: s.to_owned(),
                reason,
            }),
            None if s == LEGACY_DOCKER_HUB => Ok(Self(DOCKER_HUB.to_owned())),
            None => Ok(Self(s.to_owned())),
        }
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for RegistryHost {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// In the JSON Schema of the settings file: the host as in image references.
impl schemars::JsonSchema for RegistryHost {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RegistryHost".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "pattern": "^[^/:@ ]+(:[0-9]+)?$",
            "description": "a registry host as in image references: `registry.example.com:5000`, `docker.io`"
        })
    }
}

impl<'de> serde::Deserialize<'de> for RegistryHost {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a text is not a registry host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host:?} is not a registry host as in image references: {reason}")]
pub struct RegistryHostError {
    pub host: String,
    pub reason: &'static str,
}

/// A content digest, `algorithm:encoded`, for one of the algorithms kubelet accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: &'static str,
    encoded: String,
}

impl Digest {
    /// The algorithm name: `sha256`, `sha384` or `sha512`.
    pub fn algorithm(&self) -> &str {
        self.algorithm
    }

    /// The lowercase hex value after the `:`.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }
}

impl FromStr for Digest {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((name, encoded)) = s
            .split_once(':')
            .filter(|(name, encoded)| !name.is_empty() && !encoded.is_empty())
        else {
            return Err(ImageRefError::InvalidDigest {
                digest: s.to_owned(),
            });
        };
        let Some(&(algorithm, hex_len)) = ALGORITHMS.iter().find(|(known, _)| *known == name)
        else {
            return Err(ImageRefError::UnsupportedDigestAlgorithm {
                algorithm: name.to_owned(),
            });
        };
        let length = encoded.chars().count();
        if length != hex_len {
            return Err(ImageRefError::DigestLength {
                algorithm,
                expected: hex_len,
                actual: length,
            });
        }
        if !encoded.bytes().all(is_lower_hex) {
            return Err(ImageRefError::DigestEncoding { algorithm });
        }
        Ok(Self {
            algorithm,
            encoded: encoded.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.encoded)
    }
}

/// Digest algorithms registered in kubelet's go-digest, with the hex length of their values.
const ALGORITHMS: [(&str, usize); 3] = [("sha256", 64), ("sha384", 96), ("sha512", 128)];

/// Why an image reference or digest was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ImageRefError {
    /// The image field is the empty string.
    #[error("image reference is empty")]
    Empty,
    /// The reference starts or ends with whitespace; kubelet does not trim it.
    #[error("image reference must not start or end with whitespace")]
    SurroundingWhitespace,
    /// The reference is a bare 64-character hex image ID, which names no repository.
    #[error("invalid repository name {0:?}: a 64-character hex image ID is not an image name")]
    HexIdentifier(String),
    /// The component taken as the registry is not `host[:port]`.
    #[error("invalid reference format: registry {registry:?} {reason}")]
    InvalidRegistry {
        registry: String,
        reason: &'static str,
    },
    /// The repository path is not `component(/component)*` even when lowercased.
    #[error("invalid reference format: repository {repository:?} {reason}")]
    InvalidRepository {
        repository: String,
        reason: &'static str,
    },
    /// The repository path would be valid but contains uppercase letters.
    #[error("repository name must be lowercase: {repository:?}")]
    UppercaseRepository { repository: String },
    /// The normalised repository path is longer than 255 characters.
    #[error("repository name is longer than {MAX_REPOSITORY_LEN} characters ({length})")]
    RepositoryTooLong { length: usize },
    /// The tag does not match `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag { tag: String, reason: &'static str },
    /// The text after `@` is not `algorithm:hex`.
    #[error(
        "invalid digest {digest:?}: expected <algorithm>:<hex>, e.g. sha256:<64 hex characters>"
    )]
    InvalidDigest { digest: String },
    /// The digest algorithm is not sha256, sha384 or sha512.
    #[error("invalid digest: unsupported algorithm {algorithm:?} (use sha256, sha384 or sha512)")]
    UnsupportedDigestAlgorithm { algorithm: String },
    /// The encoded value has the wrong number of characters for its algorithm.
    #[error("invalid digest: {algorithm} needs {expected} hex characters, got {actual}")]
    DigestLength {
        algorithm: &'static str,
        expected: usize,
        actual: usize,
    },
    /// The encoded value is not lowercase hexadecimal.
    #[error("invalid digest: {algorithm} value must be lowercase hexadecimal (0-9, a-f)")]
    DigestEncoding { algorithm: &'static str },
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// distribution/reference's `splitDockerDomain`: the registry as written, if one was, and the
/// remaining path.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first == "localhost"
                || first.contains(['.', ':'])
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `host[:port]`, host being DNS-style labels or a bracketed IPv6 literal.
fn check_registry(registry: &str) -> Result<(), ImageRefError> {
    let invalid = |reason| ImageRefError::InvalidRegistry {
        registry: registry.to_owned(),
        reason,
    };
    let port = if let Some(literal) = registry.strip_prefix('[') {
        let (address, rest) = literal
            .split_once(']')
            .ok_or_else(|| invalid("has no closing ']'"))?;
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(invalid(
                "has an IPv6 address with characters other than hex digits and ':'",
            ));
        }
        match rest.strip_prefix(':') {
            Some(port) => Some(port),
            None if rest.is_empty() => None,
            None => {
                return Err(invalid(
                    "has text after the IPv6 address that is not ':port'",
                ));
            }
        }
    } else {
        let (host, port) = match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        if !host.split('.').all(is_host_label) {
            return Err(invalid(
                "is not a host name: use dot-separated labels of letters, digits and inner '-'",
            ));
        }
        port
    };
    match port {
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => {
            Err(invalid("has a port that is not a number"))
        }
        _ => Ok(()),
    }
}

/// `[A-Za-z0-9]` or `[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]`.
fn is_host_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// Components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` separated by single '/'. A path that is
/// valid only once lowercased gets the more helpful "must be lowercase" error.
fn check_repository(path: &str) -> Result<(), ImageRefError> {
    let lowercased = path.to_ascii_lowercase();
    let problem = if lowercased.is_empty() {
        Some("is missing")
    } else {
        lowercased.split('/').find_map(component_problem)
    };
    match problem {
        Some(reason) => Err(ImageRefError::InvalidRepository {
            repository: path.to_owned(),
            reason,
        }),
        None if lowercased != path => Err(ImageRefError::UppercaseRepository {
            repository: path.to_owned(),
        }),
        None => Ok(()),
    }
}

fn component_problem(component: &str) -> Option<&'static str> {
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Some("has an empty path component (\"//\" or a leading or trailing '/')");
    };
    if !bytes
        .iter()
        .all(|&b| is_lower_alnum(b) || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("may contain only a-z, 0-9, '.', '_', '-' and '/'");
    }
    if !is_lower_alnum(first) || !is_lower_alnum(last) {
        return Some("has a path component that does not start and end with a letter or digit");
    }
    let separators_ok = component
        .split(|c: char| c.is_ascii_alphanumeric())
        .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'));
    (!separators_ok).then_some("has an invalid separator: use one '.', one or two '_', or '-'s")
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), ImageRefError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let reason = match tag.as_bytes() {
        [] => "nothing follows the ':'",
        bytes if bytes.len() > MAX_TAG_LEN => "is longer than 128 characters",
        [first, ..] if !word(*first) => "must start with a letter, digit or '_'",
        bytes if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') => {
            "may contain only letters, digits, '_', '.' and '-'"
        }
        _ => return Ok(()),
    };
    Err(ImageRefError::InvalidTag {
        tag: tag.to_owned(),
        reason,
    })
}

pub mod suggest;

#[cfg(test)]
mod tests;
