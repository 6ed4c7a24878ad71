//! Image references: parse and normalise exactly as kubelet/containerd
//! (distribution/reference `ParseNormalizedNamed`) do.
//!
//! This module owns the [`ImageRef`] and [`Digest`] newtypes. An image string from a pod spec is
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

use std::fmt;
use std::str::FromStr;

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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    original: String,
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Registry host with optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path within the registry, e.g. `library/nginx` or `team/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag as written, or `None` when none was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest as written, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The tag that will be pulled: the written tag, `latest` when neither tag nor digest was
    /// written, and `None` for a digest-only reference.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some(DEFAULT_TAG),
            (None, Some(_)) => None,
        }
    }

    /// Whether the image floats on `latest`: the effective tag is `latest` and no digest pins it.
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.effective_tag() == Some(DEFAULT_TAG)
    }

    /// The reference exactly as written in the pod spec.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// `registry/repository`, without tag or digest, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
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
        Ok(Self {
            original: s.to_owned(),
            registry: registry.to_owned(),
            repository,
            tag: tag.map(str::to_owned),
            digest: digest.map(str::parse).transpose()?,
        })
    }
}

impl fmt::Display for ImageRef {
    /// Fully normalised: `docker.io/library/nginx:latest`, `reg/app:v1@sha256:…`, `reg/app@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = self.effective_tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const SHA256: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    const TAG_128: &str = concat!(
        "t123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    );

    fn hex(len: usize) -> String {
        "0123456789abcdef".chars().cycle().take(len).collect()
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::bare("nginx", "docker.io", "library/nginx", None, false, "docker.io/library/nginx:latest")]
    #[case::bare_tag("nginx:1.25", "docker.io", "library/nginx", Some("1.25"), false, "docker.io/library/nginx:1.25")]
    #[case::single_letter("a", "docker.io", "library/a", None, false, "docker.io/library/a:latest")]
    #[case::library_written("library/nginx:1.25", "docker.io", "library/nginx", Some("1.25"), false, "docker.io/library/nginx:1.25")]
    #[case::docker_io_gets_library("docker.io/nginx", "docker.io", "library/nginx", None, false, "docker.io/library/nginx:latest")]
    #[case::docker_io_library("docker.io/library/nginx", "docker.io", "library/nginx", None, false, "docker.io/library/nginx:latest")]
    #[case::index_docker_io("index.docker.io/nginx:1", "docker.io", "library/nginx", Some("1"), false, "docker.io/library/nginx:1")]
    #[case::index_docker_io_user("index.docker.io/user/app", "docker.io", "user/app", None, false, "docker.io/user/app:latest")]
    #[case::hub_user_repo("bitnami/redis:7.2", "docker.io", "bitnami/redis", Some("7.2"), false, "docker.io/bitnami/redis:7.2")]
    #[case::hub_deep_path("a/b/c", "docker.io", "a/b/c", None, false, "docker.io/a/b/c:latest")]
    #[case::hub_dotted_single_name("foo.bar", "docker.io", "library/foo.bar", None, false, "docker.io/library/foo.bar:latest")]
    #[case::host("registry.example.com/app:v1", "registry.example.com", "app", Some("v1"), false, "registry.example.com/app:v1")]
    #[case::host_port("registry.example.com:5000/team/app:v1", "registry.example.com:5000", "team/app", Some("v1"), false, "registry.example.com:5000/team/app:v1")]
    #[case::host_port_no_tag("host:5000/app", "host:5000", "app", None, false, "host:5000/app:latest")]
    #[case::host_with_dash("my-registry.local:443/app", "my-registry.local:443", "app", None, false, "my-registry.local:443/app:latest")]
    #[case::localhost("localhost/app", "localhost", "app", None, false, "localhost/app:latest")]
    #[case::localhost_port("localhost:5000/a", "localhost:5000", "a", None, false, "localhost:5000/a:latest")]
    #[case::bare_localhost_port_is_a_tag("localhost:5000", "docker.io", "library/localhost", Some("5000"), false, "docker.io/library/localhost:5000")]
    #[case::ipv4_port("10.0.0.1:5000/app:1.0", "10.0.0.1:5000", "app", Some("1.0"), false, "10.0.0.1:5000/app:1.0")]
    #[case::ipv6_port("[::1]:5000/app", "[::1]:5000", "app", None, false, "[::1]:5000/app:latest")]
    #[case::ipv6_no_port("[fe80::1]/app:v2", "[fe80::1]", "app", Some("v2"), false, "[fe80::1]/app:v2")]
    #[case::deep_path("ghcr.io/org/team/sub/app:v1", "ghcr.io", "org/team/sub/app", Some("v1"), false, "ghcr.io/org/team/sub/app:v1")]
    #[case::numeric_components("reg.io/123/456", "reg.io", "123/456", None, false, "reg.io/123/456:latest")]
    #[case::double_underscore("reg.io/my__app", "reg.io", "my__app", None, false, "reg.io/my__app:latest")]
    #[case::dash_run("reg.io/my---app", "reg.io", "my---app", None, false, "reg.io/my---app:latest")]
    #[case::dot_and_underscore("reg.io/app.v2/x_y", "reg.io", "app.v2/x_y", None, false, "reg.io/app.v2/x_y:latest")]
    #[case::tag_dots_dashes("nginx:1.25.3-alpine_v1", "docker.io", "library/nginx", Some("1.25.3-alpine_v1"), false, "docker.io/library/nginx:1.25.3-alpine_v1")]
    #[case::tag_leading_underscore("nginx:_x", "docker.io", "library/nginx", Some("_x"), false, "docker.io/library/nginx:_x")]
    #[case::tag_uppercase("nginx:V1.RC", "docker.io", "library/nginx", Some("V1.RC"), false, "docker.io/library/nginx:V1.RC")]
    #[case::tag_128_chars(format!("nginx:{TAG_128}"), "docker.io", "library/nginx", Some(TAG_128), false, format!("docker.io/library/nginx:{TAG_128}"))]
    #[case::digest_only(format!("reg.io/app@{SHA256}"), "reg.io", "app", None, true, format!("reg.io/app@{SHA256}"))]
    #[case::hub_digest_only(format!("nginx@{SHA256}"), "docker.io", "library/nginx", None, true, format!("docker.io/library/nginx@{SHA256}"))]
    #[case::tag_and_digest(format!("reg:5000/app:v1@{SHA256}"), "reg:5000", "app", Some("v1"), true, format!("reg:5000/app:v1@{SHA256}"))]
    #[case::latest_and_digest(format!("nginx:latest@{SHA256}"), "docker.io", "library/nginx", Some("latest"), true, format!("docker.io/library/nginx:latest@{SHA256}"))]
    #[case::sha384(format!("reg.io/app@sha384:{}", hex(96)), "reg.io", "app", None, true, format!("reg.io/app@sha384:{}", hex(96)))]
    #[case::sha512(format!("reg.io/app@sha512:{}", hex(128)), "reg.io", "app", None, true, format!("reg.io/app@sha512:{}", hex(128)))]
    #[case::uppercase_registry("Registry.Example.com/app", "Registry.Example.com", "app", None, false, "Registry.Example.com/app:latest")]
    #[case::uppercase_single_label_is_registry("Foo/bar", "Foo", "bar", None, false, "Foo/bar:latest")]
    #[case::path_of_255_beside_long_registry(format!("registry.example.com:5000/{}", "a".repeat(255)), "registry.example.com:5000", "a".repeat(255), None, false, format!("registry.example.com:5000/{}:latest", "a".repeat(255)))]
    fn parses_valid_references(
        #[case] input: String,
        #[case] registry: &str,
        #[case] repository: String,
        #[case] tag: Option<&str>,
        #[case] has_digest: bool,
        #[case] display: String,
    ) {
        let image: ImageRef = input.parse().unwrap();
        assert_eq!(image.registry(), registry);
        assert_eq!(image.repository(), repository);
        assert_eq!(image.tag(), tag);
        assert_eq!(image.digest().is_some(), has_digest);
        assert_eq!(image.to_string(), display);
        assert_eq!(image.original(), input);
        assert_eq!(image.name(), format!("{registry}/{repository}"));
        // Normalisation is idempotent: the displayed form parses back to itself.
        assert_eq!(display.parse::<ImageRef>().unwrap().to_string(), display);
    }

    /// The variant name of an error, e.g. `InvalidTag`, read from its `Debug` form.
    fn variant(error: &ImageRefError) -> String {
        format!("{error:?}")
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect()
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::empty("", "Empty")]
    #[case::leading_space(" nginx", "SurroundingWhitespace")]
    #[case::trailing_space("nginx ", "SurroundingWhitespace")]
    #[case::trailing_newline("nginx:1\n", "SurroundingWhitespace")]
    #[case::inner_space("ngi nx", "InvalidRepository")]
    #[case::non_ascii("ñginx", "InvalidRepository")]
    #[case::bare_hex_id(hex(64), "HexIdentifier")]
    #[case::uppercase_repo("Nginx", "UppercaseRepository")]
    #[case::uppercase_path_on_registry("reg.io/Team/app", "UppercaseRepository")]
    #[case::uppercase_hub_repo("user/App:v1", "UppercaseRepository")]
    #[case::double_slash("team//app", "InvalidRepository")]
    #[case::double_slash_after_registry("reg.io//app", "InvalidRepository")]
    #[case::trailing_slash("reg.io/app/", "InvalidRepository")]
    #[case::registry_only("reg.io/", "InvalidRepository")]
    #[case::no_name_before_tag(":v1", "InvalidRepository")]
    #[case::no_name_before_digest(format!("@{SHA256}"), "InvalidRepository")]
    #[case::two_at_signs(format!("a@b@{SHA256}"), "InvalidRepository")]
    #[case::leading_dash_component("reg.io/-app", "InvalidRepository")]
    #[case::trailing_dash_component("team/app-", "InvalidRepository")]
    #[case::double_dot("a..b", "InvalidRepository")]
    #[case::triple_underscore("a___b", "InvalidRepository")]
    #[case::mixed_separator("a._b", "InvalidRepository")]
    #[case::trailing_colon("nginx:", "InvalidTag")]
    #[case::tag_129_chars(format!("nginx:{TAG_128}x"), "InvalidTag")]
    #[case::tag_leading_dot("nginx:.x", "InvalidTag")]
    #[case::tag_leading_dash("nginx:-x", "InvalidTag")]
    #[case::tag_bad_char("nginx:v1+build", "InvalidTag")]
    #[case::at_without_digest("nginx@", "InvalidDigest")]
    #[case::digest_without_colon("nginx@sha256", "InvalidDigest")]
    #[case::digest_without_hex("nginx@sha256:", "InvalidDigest")]
    #[case::digest_too_short(format!("nginx@sha256:{}", hex(63)), "DigestLength")]
    #[case::digest_too_long(format!("nginx@sha256:{}", hex(65)), "DigestLength")]
    #[case::sha512_with_sha256_length(format!("nginx@sha512:{}", hex(64)), "DigestLength")]
    #[case::digest_uppercase_hex(format!("nginx@sha256:{}", hex(64).to_uppercase()), "DigestEncoding")]
    #[case::digest_non_hex(format!("nginx@sha256:{}", "g".repeat(64)), "DigestEncoding")]
    #[case::md5_algorithm(format!("nginx@md5:{}", hex(32)), "UnsupportedDigestAlgorithm")]
    #[case::uppercase_algorithm(format!("nginx@SHA256:{}", hex(64)), "UnsupportedDigestAlgorithm")]
    #[case::port_not_numeric("reg.io:abc/app", "InvalidRegistry")]
    #[case::port_empty("reg.io:/app", "InvalidRegistry")]
    #[case::host_leading_dash("-reg.io/app", "InvalidRegistry")]
    #[case::host_empty_label("reg..io/app", "InvalidRegistry")]
    #[case::host_underscore("my_host.com/app", "InvalidRegistry")]
    #[case::uppercase_host_underscore("My_Reg/app", "InvalidRegistry")]
    #[case::ipv6_unclosed("[::1/app", "InvalidRegistry")]
    #[case::ipv6_bad_char("[::g]/app", "InvalidRegistry")]
    #[case::ipv6_without_brackets("::1/app", "InvalidRegistry")]
    #[case::hub_name_too_long("a".repeat(248), "RepositoryTooLong")]
    #[case::path_too_long(format!("reg.io/{}", "a".repeat(256)), "RepositoryTooLong")]
    fn rejects_invalid_references(#[case] input: String, #[case] expected: &str) {
        let error = input.parse::<ImageRef>().unwrap_err();
        assert_eq!(variant(&error), expected, "{input:?} gave {error}");
        assert!(!error.to_string().contains('\n'), "message must be one line: {error}");
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::no_tag("nginx", Some("latest"), true)]
    #[case::explicit_latest("nginx:latest", Some("latest"), true)]
    #[case::other_tag("nginx:1.25", Some("1.25"), false)]
    #[case::digest_only(format!("nginx@{SHA256}"), None, false)]
    #[case::digest_pins_latest(format!("nginx:latest@{SHA256}"), Some("latest"), false)]
    #[case::digest_with_tag(format!("nginx:1.25@{SHA256}"), Some("1.25"), false)]
    fn effective_tag_and_latest(
        #[case] input: String,
        #[case] effective_tag: Option<&str>,
        #[case] is_latest: bool,
    ) {
        let image: ImageRef = input.parse().unwrap();
        assert_eq!(image.effective_tag(), effective_tag);
        assert_eq!(image.is_latest(), is_latest);
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::sha256(SHA256, "sha256", 64)]
    #[case::sha384(&format!("sha384:{}", hex(96)), "sha384", 96)]
    #[case::sha512(&format!("sha512:{}", hex(128)), "sha512", 128)]
    fn digest_round_trips(#[case] input: &str, #[case] algorithm: &str, #[case] hex_len: usize) {
        let digest: Digest = input.parse().unwrap();
        assert_eq!(digest.algorithm(), algorithm);
        assert_eq!(digest.encoded().len(), hex_len);
        assert_eq!(digest.to_string(), input);
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::empty("", "image reference is empty")]
    #[case::uppercase("Nginx", "repository name must be lowercase: \"Nginx\"")]
    #[case::tag("nginx:-x", "invalid tag \"-x\": must start with a letter, digit or '_'")]
    #[case::port("reg.io:abc/app", "invalid reference format: registry \"reg.io:abc\" has a port that is not a number")]
    #[case::double_slash("a//b", "invalid reference format: repository \"a//b\" has an empty path component (\"//\" or a leading or trailing '/')")]
    #[case::algorithm("nginx@md5:0123", "invalid digest: unsupported algorithm \"md5\" (use sha256, sha384 or sha512)")]
    #[case::length("nginx@sha256:abc", "invalid digest: sha256 needs 64 hex characters, got 3")]
    #[case::too_long(&format!("reg.io/{}", "a".repeat(256)), "repository name is longer than 255 characters (256)")]
    fn error_messages_are_readable(#[case] input: &str, #[case] message: &str) {
        assert_eq!(input.parse::<ImageRef>().unwrap_err().to_string(), message);
    }
}
