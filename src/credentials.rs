//! Pull credentials as kubelet finds them: the pod's `imagePullSecrets` (or, when it lists none, its
//! ServiceAccount's), then node-level docker config, matched to an image the way kubelet's
//! credential keyring does.
//!
//! This module owns reading Secrets and ServiceAccounts (through [`CredentialSource`], cached in
//! [`KubeCredentialSource`]), parsing docker configs ([`DockerConfig`]), key matching, and the
//! one-line [`SecretProblem`]s that explain why a referenced secret cannot help. It never logs,
//! formats or returns a secret value in an error: [`Credential`] and [`DockerConfig`] redact
//! passwords in `Debug`, and parse errors describe positions and shapes, never contents.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use futures::future::{BoxFuture, join_all};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{LocalObjectReference, PodSpec, Secret, ServiceAccount};
use moka::future::Cache;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::image::ImageRef;

/// Secret type (and its data key) of a `config.json`-layout pull secret.
const DOCKER_CONFIG_JSON: (&str, &str) = ("kubernetes.io/dockerconfigjson", ".dockerconfigjson");
/// Secret type (and its data key) of a legacy `.dockercfg`-layout pull secret.
const DOCKERCFG: (&str, &str) = ("kubernetes.io/dockercfg", ".dockercfg");
/// The keyring key kubelet falls back to for Docker Hub images when nothing else matched.
const DEFAULT_REGISTRY_KEY: &str = "index.docker.io";
/// ServiceAccount a pod runs as when it names none.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Why a secret is "not verifiable" when no Kubernetes API client exists (offline mode).
const NO_API: &str = "no Kubernetes API is available to read it";

/// One username/password for a registry. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    password: String,
    pub origin: CredentialOrigin,
}

impl Credential {
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
        origin: CredentialOrigin,
    ) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            origin,
        }
    }

    /// The password, for the registry client only: never log or format it.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// First 16 hex characters of SHA-256(`username` NUL `password`): tells credentials apart in
    /// cache keys and logs without revealing them.
    pub fn fingerprint(&self) -> String {
        Self::fingerprint_of(&self.username, &self.password)
    }

    /// [`Credential::fingerprint`] of a username and password held elsewhere (e.g. a registry
    /// client's auth).
    pub fn fingerprint_of(username: &str, password: &str) -> String {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(username.as_bytes());
        context.update(b"\0");
        context.update(password.as_bytes());
        context
            .finish()
            .as_ref()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {:?} from {}", self.username, self.origin)
    }
}

/// Where a [`Credential`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialOrigin {
    /// A secret listed in the pod's own `imagePullSecrets`.
    PodSecret { secret: String },
    /// A secret listed in the `imagePullSecrets` of the pod's ServiceAccount.
    ServiceAccountSecret {
        service_account: String,
        secret: String,
    },
    /// The node's docker config file.
    Node { file: PathBuf },
}

impl fmt::Display for CredentialOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PodSecret { secret } => write!(f, "secret {secret:?}"),
            Self::ServiceAccountSecret {
                service_account,
                secret,
            } => write!(f, "secret {secret:?} of ServiceAccount {service_account:?}"),
            Self::Node { file } => write!(f, "node credentials ({})", file.display()),
        }
    }
}

/// One usable entry of a docker config.
#[derive(Clone)]
struct Entry {
    /// The key as written, e.g. `https://index.docker.io/v1/`.
    key: String,
    /// The key as kubelet indexes it (scheme, `/v1/`, `/v2/` and a bare `/` removed), or `None`
    /// when kubelet would ignore the entry because the key is not a URL.
    indexed: Option<String>,
    username: String,
    password: String,
}

/// A parsed docker config: `.dockerconfigjson` (`{"auths": {KEY: {...}}}`), legacy `.dockercfg`
/// (`{KEY: {...}}`) or a node's `config.json`. `Debug` shows keys and usernames only.
#[derive(Clone, Default)]
pub struct DockerConfig {
    entries: Vec<Entry>,
    path: Option<PathBuf>,
}

/// Which layout a docker config has.
#[derive(Clone, Copy)]
enum Layout {
    /// `{"auths": {KEY: ENTRY}}`
    Auths,
    /// `{KEY: ENTRY}`
    Legacy,
}

impl DockerConfig {
    /// Parses the `.dockerconfigjson` data of a `kubernetes.io/dockerconfigjson` secret.
    pub fn from_dockerconfigjson(bytes: &[u8]) -> Result<Self, SecretProblemKind> {
        Self::parse(bytes, DOCKER_CONFIG_JSON.1, Layout::Auths)
    }

    /// Parses the `.dockercfg` data of a legacy `kubernetes.io/dockercfg` secret.
    pub fn from_dockercfg(bytes: &[u8]) -> Result<Self, SecretProblemKind> {
        Self::parse(bytes, DOCKERCFG.1, Layout::Legacy)
    }

    /// Reads a node-level docker config: a file named `.dockercfg` has the legacy layout, any other
    /// (usually `config.json`) the `{"auths": ...}` layout. The path becomes the credentials' origin.
    pub fn from_file(path: &Path) -> Result<Self, NodeConfigError> {
        let bytes = std::fs::read(path).map_err(|source| NodeConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.as_deref().unwrap_or("config.json");
        let layout = if name == ".dockercfg" {
            Layout::Legacy
        } else {
            Layout::Auths
        };
        let mut config =
            Self::parse(&bytes, name, layout).map_err(|kind| NodeConfigError::Invalid {
                path: path.to_owned(),
                kind,
            })?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    /// The file this config was read from ([`DockerConfig::from_file`]).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The keys as written, in the order they were read.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    /// Names `path` as where these credentials come from (their [`CredentialOrigin::Node`]), as
    /// [`DockerConfig::from_file`] does; for configs assembled from a file's parts (`pullgate check`).
    pub fn with_path(mut self, path: &Path) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// Adds one entry after the existing ones, keyed like an `auths` key (e.g. the answer of a
    /// docker credential helper for `https://index.docker.io/v1/` or `registry.example.com`).
    pub fn push(&mut self, key: &str, username: String, password: String) {
        self.entries.push(Entry {
            key: key.to_owned(),
            indexed: index_key(key),
            username,
            password,
        });
    }

    /// Matching `(username, password)` entries, most specific first, exactly as kubelet's
    /// credential keyring (`pkg/credentialprovider/keyring.go`, `BasicDockerKeyring.Add` and
    /// `Lookup`, `URLsMatch`, `ParseSchemelessURL`, `isDefaultRegistryMatch`) picks them:
    ///
    /// - a key loses `http://`/`https://`, a leading `/v1/` or `/v2/` path and a bare `/`, so
    ///   `https://index.docker.io/v1/` is `index.docker.io`;
    /// - the target is `registry/repository` (`docker.io/library/nginx`, as kubelet's
    ///   `ParseImageName`); a key matches when its port equals the target's (both may be empty),
    ///   its host has as many `.`-labels as the target's, each label glob-matches
    ///   (`filepath.Match`: `*` never spans a `.`, so `*.example.com` matches one label), and its
    ///   path is a string prefix of the repository path;
    /// - keys are tried in reverse byte order, so `reg.io/team` comes before `reg.io` and
    ///   literal labels before `*`;
    /// - only when nothing matched and the image is on Docker Hub are the `index.docker.io`
    ///   entries used: that is how `https://index.docker.io/v1/` serves `docker.io` images. (kubelet
    ///   also hands them to registries without `.` or `:` such as `localhost`; pullgate does not send
    ///   Docker Hub credentials anywhere but Docker Hub.)
    pub fn matching(&self, image: &ImageRef) -> Vec<(String, String)> {
        keyring_lookup(self.indexed_entries(), &image.name())
            .into_iter()
            .map(|e| (e.username.clone(), e.password.clone()))
            .collect()
    }

    fn indexed_entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .iter()
            .filter_map(|e| Some((e.indexed.as_deref()?, e)))
    }

    /// `source` names the data in messages (`.dockerconfigjson`, `config.json`). Errors describe
    /// shapes and positions only; a JSON syntax error from serde_json never quotes the input.
    fn parse(bytes: &[u8], source: &str, layout: Layout) -> Result<Self, SecretProblemKind> {
        let malformed = |what: String| SecretProblemKind::MalformedJson {
            reason: format!("{source} {what}"),
        };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| malformed(format!("is not valid JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| malformed("is not a JSON object".to_owned()))?;
        let auths: &Map<String, Value> = match layout {
            Layout::Auths => match object.get("auths") {
                Some(Value::Object(auths)) => auths,
                Some(_) => return Err(malformed("has an \"auths\" that is not an object".into())),
                None => {
                    return Err(malformed(
                        "has no \"auths\" object (legacy .dockercfg content? use type kubernetes.io/dockercfg)"
                            .into(),
                    ));
                }
            },
            Layout::Legacy if object.len() == 1 && object.contains_key("auths") => {
                return Err(malformed(
                    "has the config.json layout ({\"auths\": ...}): use type kubernetes.io/dockerconfigjson"
                        .into(),
                ));
            }
            Layout::Legacy => object,
        };
        let mut entries = Vec::with_capacity(auths.len());
        for (key, value) in auths {
            let fields = value
                .as_object()
                .ok_or_else(|| malformed(format!("entry {key:?} is not an object")))?;
            let text = |field: &str| match fields.get(field) {
                None | Some(Value::Null) => Ok(""),
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(_) => Err(malformed(format!(
                    "entry {key:?} field {field:?} is not a string"
                ))),
            };
            let (auth, username, password) = (text("auth")?, text("username")?, text("password")?);
            // As kubelet: a non-empty `auth` wins over `username`/`password`.
            let (username, password) = if !auth.is_empty() {
                decode_auth(auth).map_err(|why| SecretProblemKind::MalformedBase64 {
                    reason: format!("{source} entry {key:?} field \"auth\" {why}"),
                })?
            } else if username.is_empty() && password.is_empty() {
                continue; // no credentials at all (e.g. only an identitytoken): nothing to try
            } else {
                (username.to_owned(), password.to_owned())
            };
            entries.push(Entry {
                key: key.clone(),
                indexed: index_key(key),
                username,
                password,
            });
        }
        Ok(Self {
            entries,
            path: None,
        })
    }
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<(&str, &str)> = self
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.username.as_str()))
            .collect();
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("entries (key, username)", &entries)
            .finish()
    }
}

/// kubelet's `decodeDockerConfigFieldAuth`: padded standard base64 when the value ends in `=`,
/// unpadded otherwise; the text splits at the first `:`. The error never quotes the value.
fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let engine = if auth.trim().ends_with('=') {
        &STANDARD
    } else {
        &STANDARD_NO_PAD
    };
    let decoded = engine.decode(auth).map_err(|e| {
        let what = match e {
            base64::DecodeError::InvalidByte(offset, _) => {
                format!("invalid character at offset {offset}")
            }
            base64::DecodeError::InvalidLength(_) => "invalid length".into(),
            base64::DecodeError::InvalidLastSymbol(..) => "invalid last character".into(),
            base64::DecodeError::InvalidPadding => "invalid padding".into(),
        };
        format!("is not valid base64: {what}")
    })?;
    let text =
        String::from_utf8(decoded).map_err(|_| "does not decode to UTF-8 text".to_owned())?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| "does not decode to \"username:password\"".to_owned())?;
    Ok((username.to_owned(), password.to_owned()))
}

/// The host and path of a scheme-less URL, as Go's `url.Parse("https://" + s)` splits them, or
/// `None` where Go reports an error (bad port, blank or control characters in the host).
fn split_url(schemeless: &str) -> Option<(&str, &str)> {
    let end = schemeless.find(['/', '?', '#']).unwrap_or(schemeless.len());
    let (authority, rest) = schemeless.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = if rest.starts_with('/') {
        &rest[..rest.find(['?', '#']).unwrap_or(rest.len())]
    } else {
        ""
    };
    let port = match host.rfind(']') {
        Some(bracket) => host[bracket + 1..].strip_prefix(':'),
        None => host.rsplit_once(':').map(|(_, port)| port),
    };
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.chars().any(|c| c.is_whitespace() || c.is_control());
    (port_ok && host_ok).then_some((host, path))
}

/// kubelet's `BasicDockerKeyring.Add` key: no scheme, `/v1/…`/`/v2/…` cut to `/…`, bare `/` dropped.
fn index_key(location: &str) -> Option<String> {
    let schemeless = ["https://", "http://"]
        .iter()
        .find_map(|scheme| location.strip_prefix(scheme))
        .unwrap_or(location);
    let (host, path) = split_url(schemeless)?;
    let path = if path.starts_with("/v1/") || path.starts_with("/v2/") {
        &path[3..]
    } else {
        path
    };
    Some(if path.is_empty() || path == "/" {
        host.to_owned()
    } else {
        format!("{host}{path}")
    })
}

/// Go's `net.SplitHostPort` as kubelet's `SplitURL` uses it: on error the whole host, no port;
/// then the host split at `.`.
fn split_host_port(host: &str) -> (Vec<&str>, &str) {
    let split = match host.strip_prefix('[') {
        Some(inner) => inner
            .split_once(']')
            .and_then(|(address, rest)| Some((address, rest.strip_prefix(':')?))),
        None => host.split_once(':').filter(|(_, port)| !port.contains(':')),
    };
    let (name, port) = split.unwrap_or((host, ""));
    (name.split('.').collect(), port)
}

/// kubelet's `URLsMatchStr(glob, target)`.
fn urls_match(glob: &str, target: &str) -> bool {
    let (Some((glob_host, glob_path)), Some((target_host, target_path))) =
        (split_url(glob), split_url(target))
    else {
        return false;
    };
    let (glob_labels, glob_port) = split_host_port(glob_host);
    let (target_labels, target_port) = split_host_port(target_host);
    glob_port == target_port
        && glob_labels.len() == target_labels.len()
        && target_path.starts_with(glob_path)
        && glob_labels
            .iter()
            .zip(&target_labels)
            .all(|(g, t)| glob_match(g, t))
}

/// Go's `filepath.Match` for one host label (`*`, `?`, `[...]` classes, `\` escapes); a malformed
/// pattern matches nothing, as kubelet ignores the error.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> Option<bool> {
        let Some((&first, rest)) = p.split_first() else {
            return Some(t.is_empty());
        };
        match first {
            '*' => {
                for skip in 0..=t.len() {
                    if go(rest, &t[skip..])? {
                        return Some(true);
                    }
                }
                Some(false)
            }
            '?' => match t.split_first() {
                Some((_, t_rest)) => go(rest, t_rest),
                None => Some(false),
            },
            '[' => {
                let (matched, rest) = class(rest, *t.first()?)?;
                if matched {
                    go(rest, &t[1..])
                } else {
                    Some(false)
                }
            }
            '\\' => {
                let (&literal, rest) = rest.split_first()?;
                if t.first() == Some(&literal) {
                    go(rest, &t[1..])
                } else {
                    Some(false)
                }
            }
            c => {
                if t.first() == Some(&c) {
                    go(rest, &t[1..])
                } else {
                    Some(false)
                }
            }
        }
    }
    /// A `[...]` class after its `[`: whether `c` is in it, and the pattern after `]`.
    fn class(mut p: &[char], c: char) -> Option<(bool, &[char])> {
        let negated = p.first() == Some(&'^');
        if negated {
            p = &p[1..];
        }
        let mut matched = false;
        let mut ranges = 0;
        loop {
            if p.first() == Some(&']') && ranges > 0 {
                return Some((matched != negated, &p[1..]));
            }
            let lo;
            (lo, p) = escaped(p)?;
            let mut hi = lo;
            if p.first() == Some(&'-') {
                (hi, p) = escaped(&p[1..])?;
            }
            matched |= lo <= c && c <= hi;
            ranges += 1;
        }
    }
    fn escaped(p: &[char]) -> Option<(char, &[char])> {
        match p {
            [] | ['-' | ']', ..] => None,
            ['\\', c, rest @ ..] => Some((*c, rest)),
            ['\\'] => None,
            [c, rest @ ..] => Some((*c, rest)),
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    go(&pattern, &text) == Some(true)
}

/// kubelet's `isDefaultRegistryMatch` on the `registry/repository` target.
///
/// Unlike kubelet, a registry component without `.` or `:` (`localhost/app`) does not count: Docker Hub
/// credentials go only to Docker Hub. Targets here are always normalised (`docker.io/...`).
fn is_default_registry_match(target: &str) -> bool {
    match target.split_once('/') {
        _ if target.is_empty() || target.starts_with('/') => false,
        None => false,
        Some((first, _)) => first == "docker.io" || first == DEFAULT_REGISTRY_KEY,
    }
}

/// kubelet's `BasicDockerKeyring.Lookup` over `(indexed key, item)` pairs added in order.
fn keyring_lookup<'a, T: Copy>(
    entries: impl IntoIterator<Item = (&'a str, T)>,
    target: &str,
) -> Vec<T> {
    let mut index: BTreeMap<&str, Vec<T>> = BTreeMap::new();
    for (key, item) in entries {
        index.entry(key).or_default().push(item);
    }
    let found: Vec<T> = index
        .iter()
        .rev()
        .filter(|(key, _)| urls_match(key, target))
        .flat_map(|(_, items)| items.iter().copied())
        .collect();
    if found.is_empty() && is_default_registry_match(target) {
        return index.get(DEFAULT_REGISTRY_KEY).cloned().unwrap_or_default();
    }
    found
}

/// Why a node-level docker config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// The file could not be read.
    #[error("cannot read node credentials {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a docker config.
    #[error("node credentials {} are unusable: {}", path.display(), kind.reason())]
    Invalid {
        path: PathBuf,
        kind: SecretProblemKind,
    },
}

/// What is wrong with one referenced secret (or, when [`SecretProblem::secret`] is empty, with
/// the ServiceAccount lookup). No variant ever carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretProblemKind {
    /// The secret (or ServiceAccount) does not exist in the pod's namespace.
    NotFound,
    /// The secret's type is neither `kubernetes.io/dockerconfigjson` nor `kubernetes.io/dockercfg`
    /// (kubelet ignores it). `found` is the type, `Opaque` when unset.
    WrongType { found: String },
    /// The secret has the right type but no (or empty) data under its key.
    MissingKey { key: &'static str },
    /// The data is not a docker config. `reason` starts with the data key, e.g.
    /// `.dockerconfigjson is not valid JSON: expected value at line 1 column 1`.
    MalformedJson { reason: String },
    /// An `auth` field is not base64 of `username:password`; `reason` names the data key and entry.
    MalformedBase64 { reason: String },
    /// The secret loaded but none of its entries matches this image's registry.
    NoEntryForRegistry { registry: String },
    /// The secret (or ServiceAccount) could not be read: no API, RBAC, network, timeout.
    ApiUnavailable { reason: String },
}

impl SecretProblemKind {
    /// What is wrong, without the subject (`not found`, `has no entry for reg.io`, ...).
    fn reason(&self) -> String {
        match self {
            Self::NotFound => "not found".into(),
            Self::WrongType { found } => {
                format!("has type {found}, not {}", DOCKER_CONFIG_JSON.0)
            }
            Self::MissingKey { key } => format!("has no {key} data"),
            Self::MalformedJson { reason } | Self::MalformedBase64 { reason } => reason.clone(),
            Self::NoEntryForRegistry { registry } => format!("has no entry for {registry}"),
            Self::ApiUnavailable { reason } => format!("could not be read: {reason}"),
        }
    }
}

/// A problem with one pull secret the pod refers to, directly or through its ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    /// The secret's name; empty when the problem is the ServiceAccount lookup itself.
    pub secret: String,
    /// The ServiceAccount whose `imagePullSecrets` named the secret (or that could not be read).
    pub service_account: Option<String>,
    /// The pod's namespace, where the secret was looked up.
    pub namespace: String,
    pub kind: SecretProblemKind,
}

impl SecretProblem {
    /// A namespace's `default` ServiceAccount that does not exist: it simply lends no secrets.
    pub fn is_missing_default_service_account(&self) -> bool {
        self.secret.is_empty()
            && self.service_account.as_deref() == Some("default")
            && self.kind == SecretProblemKind::NotFound
    }
}

impl fmt::Display for SecretProblem {
    /// One line, e.g. `secret "regcred" not found in namespace demo`,
    /// `secret "regcred" of ServiceAccount "builder" has no entry for 127.0.0.1:5000`,
    /// `ServiceAccount "default" in namespace demo could not be read: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.secret.as_str(), &self.service_account) {
            ("", Some(account)) => write!(f, "ServiceAccount {account:?}")?,
            (secret, Some(account)) => {
                write!(f, "secret {secret:?} of ServiceAccount {account:?}")?;
            }
            (secret, None) => write!(f, "secret {secret:?}")?,
        }
        match &self.kind {
            SecretProblemKind::NotFound => write!(f, " not found in namespace {}", self.namespace),
            SecretProblemKind::ApiUnavailable { .. } => {
                write!(f, " in namespace {} {}", self.namespace, self.kind.reason())
            }
            kind => write!(f, " {}", kind.reason()),
        }
    }
}

/// Why a Secret or ServiceAccount could not be read. Messages come from the API server or the
/// transport (kube's errors are not `Clone`, and a cached failure is shared by every waiter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No connection to the API server (refused, DNS, TLS, transport).
    #[error("Kubernetes API unreachable: {reason}")]
    Unreachable { reason: String },
    /// No answer within the lookup deadline.
    #[error("Kubernetes API did not answer within {}ms", after.as_millis())]
    Timeout { after: Duration },
    /// RBAC (or authentication) refused the read: the webhook needs `get` on secrets and
    /// serviceaccounts.
    #[error(
        "forbidden by the Kubernetes API (grant the webhook get on secrets and serviceaccounts): {message}"
    )]
    Forbidden { message: String },
    /// Any other error status from the API server.
    #[error("Kubernetes API answered {code}: {message}")]
    Status { code: u16, message: String },
    /// An answer that is not the expected object.
    #[error("unreadable answer from the Kubernetes API: {reason}")]
    InvalidResponse { reason: String },
}

impl From<kube::Error> for ApiError {
    fn from(error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if matches!(status.code, 401 | 403) => Self::Forbidden {
                message: status.message.clone(),
            },
            kube::Error::Api(status) => Self::Status {
                code: status.code,
                message: status.message.clone(),
            },
            kube::Error::SerdeError(e) => Self::InvalidResponse {
                reason: e.to_string(),
            },
            other => Self::Unreachable {
                reason: error_chain(&other),
            },
        }
    }
}

/// An error and its sources, `: `-joined (kube's `Display` alone hides the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Read-only access to Secrets and ServiceAccounts (`get` only). `Ok(None)`: it does not exist.
pub trait CredentialSource: Send + Sync {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, ApiError>>;
    fn service_account<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, ApiError>>;
}

type Lookups<K> = Cache<(String, String), Option<K>>;

/// [`CredentialSource`] over a kube client: each `get` has a deadline, answers (including "not
/// found") are cached for a short TTL, concurrent lookups of one object share one request, and
/// errors are not cached. `Debug` shows settings only, never cached secrets.
#[derive(Clone)]
pub struct KubeCredentialSource {
    client: kube::Client,
    secrets: Lookups<Secret>,
    service_accounts: Lookups<ServiceAccount>,
    ttl: Duration,
    timeout: Duration,
    metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
}

impl KubeCredentialSource {
    /// How long an answer is reused: a rotated secret is seen within this time.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
    /// Deadline of one `get`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Longest reuse of "not found": someone told to create a secret sees it on their next try.
    pub const MAX_NOT_FOUND_TTL: Duration = Duration::from_secs(5);
    /// Most objects of each kind kept.
    const CAPACITY: u64 = 10_000;

    /// Answers are reused for `ttl`, "not found" for at most [`Self::MAX_NOT_FOUND_TTL`].
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        fn cache<K: Clone + Send + Sync + 'static>(ttl: Duration) -> Lookups<K> {
            Cache::builder()
                .max_capacity(KubeCredentialSource::CAPACITY)
                .expire_after(LookupExpiry {
                    found: ttl,
                    not_found: ttl.min(KubeCredentialSource::MAX_NOT_FOUND_TTL),
                })
                .build()
        }
        Self {
            client,
            secrets: cache(ttl),
            service_accounts: cache(ttl),
            ttl,
            timeout: Self::DEFAULT_TIMEOUT,
            metrics: std::sync::Arc::default(),
        }
    }

    /// Counts API reads (actual requests, not cache hits) in `metrics`.
    pub fn with_metrics(
        mut self,
        metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    ) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sets the deadline of each `get` (default [`Self::DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn get<K>(
        &self,
        cache: &Lookups<K>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>, ApiError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let api: kube::Api<K> = kube::Api::namespaced(self.client.clone(), namespace);
        let timeout = self.timeout;
        let metrics = &self.metrics;
        let load = async move {
            tracing::debug!(kind = %K::kind(&()), namespace, name, "reading from the Kubernetes API");
            let answer = match tokio::time::timeout(timeout, api.get_opt(name)).await {
                Ok(answer) => answer.map_err(ApiError::from),
                Err(_) => Err(ApiError::Timeout { after: timeout }),
            };
            let outcome = match &answer {
                Ok(Some(_)) => "found",
                Ok(None) => "not_found",
                Err(ApiError::Forbidden { .. }) => "forbidden",
                Err(ApiError::Timeout { .. }) => "timeout",
                Err(_) => "error",
            };
            let resource = if K::kind(&()) == "Secret" {
                "secrets"
            } else {
                "serviceaccounts"
            };
            metrics
                .kube_lookups
                .get_or_create(&crate::telemetry::metrics::KubeLabels { resource, outcome })
                .inc();
            answer
        };
        cache
            .try_get_with((namespace.to_owned(), name.to_owned()), load)
            .await
            .map_err(|shared| ApiError::clone(&shared))
    }
}

/// Per-entry lifetime of a lookup: existing objects for the TTL, absent ones for less.
struct LookupExpiry {
    found: Duration,
    not_found: Duration,
}

impl<K> moka::Expiry<(String, String), Option<K>> for LookupExpiry {
    fn expire_after_create(
        &self,
        _key: &(String, String),
        value: &Option<K>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.found
        } else {
            self.not_found
        })
    }
}

impl fmt::Debug for KubeCredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeCredentialSource")
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CredentialSource for KubeCredentialSource {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, ApiError>> {
        Box::pin(self.get(&self.secrets, namespace, name))
    }

    fn service_account<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, ApiError>> {
        Box::pin(self.get(&self.service_accounts, namespace, name))
    }
}

/// A referenced secret that loaded and parsed.
#[derive(Debug, Clone)]
struct LoadedSecret {
    name: String,
    service_account: Option<String>,
    origin: CredentialOrigin,
    config: DockerConfig,
}

/// The pod's pull credentials, gathered once per admission. `Debug` redacts every password.
#[derive(Debug, Clone)]
pub struct PodCredentials {
    namespace: String,
    secrets: Vec<LoadedSecret>,
    problems: Vec<SecretProblem>,
    node: Option<DockerConfig>,
    api_unavailable: bool,
}

/// The credentials to try for one image, in kubelet's order, and what is wrong with the rest.
#[derive(Debug, Clone, Default)]
pub struct ImageCredentials {
    pub candidates: Vec<Credential>,
    pub problems: Vec<SecretProblem>,
}

impl PodCredentials {
    /// Kubelet's order: the pod's `imagePullSecrets`; if it lists none, those of its
    /// ServiceAccount (`serviceAccountName`, else `default`) read through the API, as the
    /// ServiceAccount admission plugin copies them into pods; then the node's docker config.
    ///
    /// With `source: None` (no Kubernetes API) every referenced secret, or the ServiceAccount
    /// lookup, gets an [`SecretProblemKind::ApiUnavailable`] problem. Secrets are read concurrently.
    pub async fn gather(
        source: Option<&dyn CredentialSource>,
        namespace: &str,
        spec: &PodSpec,
        node: Option<&DockerConfig>,
    ) -> Self {
        let mut gathered = Self {
            namespace: namespace.to_owned(),
            secrets: Vec::new(),
            problems: Vec::new(),
            node: node.cloned(),
            api_unavailable: source.is_none(),
        };
        let mut names = secret_names(spec.image_pull_secrets.as_deref());
        let mut service_account = None;
        if names.is_empty() {
            let account = spec
                .service_account_name
                .as_deref()
                .or(spec.service_account.as_deref())
                .filter(|name| !name.is_empty())
                .unwrap_or(DEFAULT_SERVICE_ACCOUNT);
            let lookup = match source {
                None => Err(NO_API.to_owned()),
                Some(source) => (source.service_account(namespace, account).await)
                    .map_err(|error| error.to_string()),
            };
            match lookup {
                Ok(Some(found)) => names = secret_names(found.image_pull_secrets.as_deref()),
                Ok(None) => gathered.problem("", Some(account), SecretProblemKind::NotFound),
                Err(reason) => gathered.unavailable("", Some(account), reason),
            }
            service_account = Some(account.to_owned());
        }

        let lookups = names.iter().map(|name| async move {
            match source {
                None => Err(NO_API.to_owned()),
                Some(source) => {
                    (source.secret(namespace, name).await).map_err(|error| error.to_string())
                }
            }
        });
        let account = service_account.as_deref();
        for (name, answer) in names.iter().zip(join_all(lookups).await) {
            match answer.map(|found| found.map(|secret| docker_config(&secret))) {
                Ok(Some(Ok(config))) => gathered.secrets.push(LoadedSecret {
                    name: name.clone(),
                    service_account: service_account.clone(),
                    origin: match account {
                        None => CredentialOrigin::PodSecret {
                            secret: name.clone(),
                        },
                        Some(account) => CredentialOrigin::ServiceAccountSecret {
                            service_account: account.to_owned(),
                            secret: name.clone(),
                        },
                    },
                    config,
                }),
                Ok(Some(Err(kind))) => gathered.problem(name, account, kind),
                Ok(None) => gathered.problem(name, account, SecretProblemKind::NotFound),
                Err(reason) => gathered.unavailable(name, account, reason),
            }
        }
        gathered
    }

    fn problem(&mut self, secret: &str, service_account: Option<&str>, kind: SecretProblemKind) {
        self.problems.push(SecretProblem {
            secret: secret.to_owned(),
            service_account: service_account.map(str::to_owned),
            namespace: self.namespace.clone(),
            kind,
        });
    }

    fn unavailable(&mut self, secret: &str, service_account: Option<&str>, reason: String) {
        self.api_unavailable = true;
        let kind = SecretProblemKind::ApiUnavailable { reason };
        self.problem(secret, service_account, kind);
    }

    /// For one image: pod (or ServiceAccount) secret entries that match its registry, in kubelet's
    /// keyring order across all those secrets, then matching node entries; duplicates dropped.
    /// Problems: every unreadable or malformed secret, plus `NoEntryForRegistry` for each loaded
    /// secret with no entry of its own for this image.
    pub fn for_image(&self, image: &ImageRef) -> ImageCredentials {
        let target = image.name();
        let from_secrets = self.secrets.iter().flat_map(|secret| {
            secret
                .config
                .indexed_entries()
                .map(move |(key, entry)| (key, (&secret.origin, entry)))
        });
        let node_origin = self.node.as_ref().map(|node| CredentialOrigin::Node {
            file: node.path().map(Path::to_owned).unwrap_or_default(),
        });
        let from_node = match (&self.node, &node_origin) {
            (Some(node), Some(origin)) => keyring_lookup(
                node.indexed_entries()
                    .map(|(key, entry)| (key, (origin, entry))),
                &target,
            ),
            _ => Vec::new(),
        };
        let mut seen = HashSet::new();
        let candidates = keyring_lookup(from_secrets, &target)
            .into_iter()
            .chain(from_node)
            .filter(|(_, entry)| seen.insert((&entry.username, &entry.password)))
            .map(|(origin, entry)| {
                Credential::new(
                    entry.username.clone(),
                    entry.password.clone(),
                    origin.clone(),
                )
            })
            .collect();
        let mut problems = self.problems.clone();
        for secret in &self.secrets {
            if secret.config.matching(image).is_empty() {
                problems.push(SecretProblem {
                    secret: secret.name.clone(),
                    service_account: secret.service_account.clone(),
                    namespace: self.namespace.clone(),
                    kind: SecretProblemKind::NoEntryForRegistry {
                        registry: image.registry().to_owned(),
                    },
                });
            }
        }
        ImageCredentials {
            candidates,
            problems,
        }
    }

    /// True when some secret or the ServiceAccount could not be read (no API, RBAC, network):
    /// the outcome of a pull cannot be predicted with certainty.
    pub fn api_unavailable(&self) -> bool {
        self.api_unavailable
    }

    /// Problems that concern every image (missing, wrong-type, malformed, unreadable secrets).
    pub fn problems(&self) -> &[SecretProblem] {
        &self.problems
    }
}

/// Names of the referenced secrets, in order, without empty names (kubelet skips them) or repeats.
fn secret_names(references: Option<&[LocalObjectReference]>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for reference in references.unwrap_or_default() {
        if !reference.name.is_empty() && !names.contains(&reference.name) {
            names.push(reference.name.clone());
        }
    }
    names
}

/// A docker config parser for one secret type.
type Parser = fn(&[u8]) -> Result<DockerConfig, SecretProblemKind>;

/// The docker config of a pull secret, as kubelet's `MakeDockerKeyring` reads `data`.
fn docker_config(secret: &Secret) -> Result<DockerConfig, SecretProblemKind> {
    let secret_type = secret
        .type_
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or("Opaque");
    let (key, parse): (&str, Parser) = match secret_type {
        t if t == DOCKER_CONFIG_JSON.0 => {
            (DOCKER_CONFIG_JSON.1, DockerConfig::from_dockerconfigjson)
        }
        t if t == DOCKERCFG.0 => (DOCKERCFG.1, DockerConfig::from_dockercfg),
        other => {
            return Err(SecretProblemKind::WrongType {
                found: other.to_owned(),
            });
        }
    };
    match secret.data.as_ref().and_then(|data| data.get(key)) {
        Some(bytes) if !bytes.0.is_empty() => parse(&bytes.0),
        _ => Err(SecretProblemKind::MissingKey { key }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use rstest::rstest;
    use serde_json::json;

    fn b64(text: &str) -> String {
        STANDARD.encode(text)
    }

    /// A `.dockerconfigjson` with one `username`/`password` entry per `(key, username, password)`.
    fn config(entries: &[(&str, &str, &str)]) -> DockerConfig {
        let auths: Map<String, Value> = entries
            .iter()
            .map(|(key, user, pass)| (key.to_string(), json!({"username": user, "password": pass})))
            .collect();
        let bytes = serde_json::to_vec(&json!({ "auths": auths })).unwrap();
        DockerConfig::from_dockerconfigjson(&bytes).unwrap()
    }

    fn usernames(config: &DockerConfig, image: &str) -> Vec<String> {
        let image: ImageRef = image.parse().unwrap();
        config
            .matching(&image)
            .into_iter()
            .map(|(user, _)| user)
            .collect()
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::bare_host("reg.io", "reg.io/app", true)]
    #[case::https_scheme("https://reg.io", "reg.io/app", true)]
    #[case::http_scheme("http://reg.io", "reg.io/team/app:v1", true)]
    #[case::trailing_slash("https://reg.io/", "reg.io/app", true)]
    #[case::hub_v1_url_official_image("https://index.docker.io/v1/", "nginx", true)]
    #[case::hub_v1_url_user_image("https://index.docker.io/v1/", "user/app:1", true)]
    #[case::hub_v1_url_explicit_docker_io("https://index.docker.io/v1/", "docker.io/library/nginx", true)]
    #[case::hub_index_host("index.docker.io", "library/nginx", true)]
    #[case::hub_docker_io("docker.io", "nginx", true)]
    #[case::hub_docker_io_scheme("https://docker.io", "index.docker.io/user/app", true)]
    #[case::hub_key_not_for_quay("https://index.docker.io/v1/", "quay.io/app", false)]
    #[case::hub_key_not_for_port_registry("docker.io", "localhost:5000/app", false)]
    #[case::hub_key_never_for_localhost("https://index.docker.io/v1/", "localhost/app", false)]
    #[case::glob_one_label("*.example.com", "reg.example.com/app", true)]
    #[case::glob_not_two_labels("*.example.com", "a.b.example.com/app", false)]
    #[case::glob_not_apex("*.example.com", "example.com/app", false)]
    #[case::glob_partial_label("reg-*.example.com", "reg-eu.example.com/app", true)]
    #[case::question_mark_starts_a_url_query("reg?.io", "reg1.io/app", false)]
    #[case::glob_class("reg[0-9].io", "reg7.io/app", true)]
    #[case::glob_negated_class("reg[^0-9].io", "reg7.io/app", false)]
    #[case::glob_bad_pattern("reg[.io", "rega.io/app", false)]
    #[case::port_equal("127.0.0.1:5000", "127.0.0.1:5000/team/app", true)]
    #[case::port_missing_in_key("reg.io", "reg.io:5000/app", false)]
    #[case::port_missing_in_image("reg.io:5000", "reg.io/app", false)]
    #[case::port_differs("reg.io:5000", "reg.io:5001/app", false)]
    #[case::port_not_numeric_ignored("reg.io:abc", "reg.io/app", false)]
    #[case::ipv6_with_port("[::1]:5000", "[::1]:5000/app", true)]
    #[case::path_prefix("reg.io/team", "reg.io/team/app", true)]
    #[case::path_other_team("reg.io/team", "reg.io/other/app", false)]
    #[case::path_is_string_prefix("reg.io/te", "reg.io/team/app", true)]
    #[case::path_longer_than_image("reg.io/team/app/x", "reg.io/team/app", false)]
    #[case::v2_path_dropped("https://reg.io/v2/", "reg.io/app", true)]
    #[case::v1_path_kept_after_prefix("https://reg.io/v1/team", "reg.io/team/app", true)]
    #[case::v1_path_kept_other_team("https://reg.io/v1/team", "reg.io/other/app", false)]
    #[case::other_host("reg.io", "other.io/app", false)]
    #[case::subdomain_is_not_host("reg.io", "eu.reg.io/app", false)]
    #[case::case_sensitive_like_go("REG.io", "reg.io/app", false)]
    fn keys_match_like_kubelet(#[case] key: &str, #[case] image: &str, #[case] matches: bool) {
        let config = config(&[(key, "user", "pass")]);
        let found = usernames(&config, image);
        assert_eq!(!found.is_empty(), matches, "key {key:?} for image {image:?}");
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::literal("reg", "reg", true)]
    #[case::literal_differs("reg", "reh", false)]
    #[case::star_any("*", "anything", true)]
    #[case::star_empty("*", "", true)]
    #[case::star_inside("a*z", "abcz", true)]
    #[case::star_inside_no("a*z", "abcy", false)]
    #[case::question("re?", "reg", true)]
    #[case::question_needs_a_char("reg?", "reg", false)]
    #[case::class_range("r[a-f]g", "reg", true)]
    #[case::class_range_no("r[a-d]g", "reg", false)]
    #[case::class_negated("r[^a-d]g", "reg", true)]
    #[case::escaped_star("re\\*", "re*", true)]
    #[case::escaped_star_is_literal("re\\*", "reg", false)]
    #[case::unclosed_class("r[a", "ra", false)]
    #[case::empty_class("r[]a", "ra", false)]
    fn globs_match_like_go_filepath_match(#[case] pattern: &str, #[case] text: &str, #[case] matches: bool) {
        assert_eq!(glob_match(pattern, text), matches, "{pattern:?} vs {text:?}");
    }

    #[test]
    fn most_specific_key_first() {
        let config = config(&[
            ("*.io", "glob", "p"),
            ("https://reg.io", "host", "p"),
            ("reg.io/team", "team", "p"),
            ("reg.io/team/app", "app", "p"),
            ("other.io", "other", "p"),
        ]);
        assert_eq!(
            usernames(&config, "reg.io/team/app:v1"),
            ["app", "team", "host", "glob"]
        );
    }

    #[test]
    fn hub_index_key_is_only_a_fallback() {
        let config = config(&[
            ("https://index.docker.io/v1/", "index", "p"),
            ("docker.io", "hub", "p"),
        ]);
        assert_eq!(usernames(&config, "nginx"), ["hub"]);
        let index_only = config_with_index_only();
        assert_eq!(usernames(&index_only, "nginx"), ["index"]);
    }

    fn config_with_index_only() -> DockerConfig {
        config(&[("https://index.docker.io/v1/", "index", "p")])
    }

    /// `(key, username, password)` of every entry, or the problem's variant name.
    fn parsed(
        result: Result<DockerConfig, SecretProblemKind>,
    ) -> Result<Vec<(String, String, String)>, String> {
        result
            .map(|config| {
                config
                    .entries
                    .iter()
                    .map(|e| (e.key.clone(), e.username.clone(), e.password.clone()))
                    .collect()
            })
            .map_err(|kind| {
                format!("{kind:?}")
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect()
            })
    }

    fn entry(key: &str, user: &str, pass: &str) -> Result<Vec<(String, String, String)>, String> {
        Ok(vec![(key.into(), user.into(), pass.into())])
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::auth_field(json!({"auths": {"reg.io": {"auth": b64("alice:s3cret")}}}), entry("reg.io", "alice", "s3cret"))]
    #[case::auth_splits_at_first_colon(json!({"auths": {"reg.io": {"auth": b64("alice:a:b")}}}), entry("reg.io", "alice", "a:b"))]
    #[case::auth_unpadded(json!({"auths": {"reg.io": {"auth": "YWI6Y2Q"}}}), entry("reg.io", "ab", "cd"))]
    #[case::username_password(json!({"auths": {"reg.io": {"username": "bob", "password": "pw"}}}), entry("reg.io", "bob", "pw"))]
    #[case::auth_wins(json!({"auths": {"reg.io": {"auth": b64("alice:a"), "username": "bob", "password": "b"}}}), entry("reg.io", "alice", "a"))]
    #[case::neither_is_skipped(json!({"auths": {"reg.io": {"email": "x@example.com"}, "b.io": {"identitytoken": "t"}}}), Ok(vec![]))]
    #[case::empty_auths(json!({"auths": {}}), Ok(vec![]))]
    #[case::null_fields_are_empty(json!({"auths": {"reg.io": {"auth": null, "username": "u", "password": null}}}), entry("reg.io", "u", ""))]
    #[case::bad_base64(json!({"auths": {"reg.io": {"auth": "!!!="}}}), Err("MalformedBase64".into()))]
    #[case::auth_without_colon(json!({"auths": {"reg.io": {"auth": b64("nocolon")}}}), Err("MalformedBase64".into()))]
    #[case::no_auths(json!({"reg.io": {"auth": b64("a:b")}}), Err("MalformedJson".into()))]
    #[case::auths_not_object(json!({"auths": []}), Err("MalformedJson".into()))]
    #[case::entry_not_object(json!({"auths": {"reg.io": "a:b"}}), Err("MalformedJson".into()))]
    #[case::auth_not_string(json!({"auths": {"reg.io": {"auth": 5}}}), Err("MalformedJson".into()))]
    #[case::not_an_object(json!(["reg.io"]), Err("MalformedJson".into()))]
    fn parses_dockerconfigjson(#[case] document: Value, #[case] expected: Result<Vec<(String, String, String)>, String>) {
        let bytes = serde_json::to_vec(&document).unwrap();
        assert_eq!(parsed(DockerConfig::from_dockerconfigjson(&bytes)), expected);
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::legacy_auth(json!({"https://reg.io": {"auth": b64("carol:pw"), "email": "c@example.com"}}), entry("https://reg.io", "carol", "pw"))]
    #[case::legacy_username(json!({"reg.io": {"username": "dan", "password": "pw"}}), entry("reg.io", "dan", "pw"))]
    #[case::config_json_layout_in_dockercfg(json!({"auths": {"reg.io": {"auth": b64("a:b")}}}), Err("MalformedJson".into()))]
    #[case::legacy_bad_base64(json!({"reg.io": {"auth": "%%%"}}), Err("MalformedBase64".into()))]
    fn parses_dockercfg(#[case] document: Value, #[case] expected: Result<Vec<(String, String, String)>, String>) {
        let bytes = serde_json::to_vec(&document).unwrap();
        assert_eq!(parsed(DockerConfig::from_dockercfg(&bytes)), expected);
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::truncated_json(br#"{"auths": {"reg.io": {"auth": "hunter2"#.as_slice())]
    #[case::bad_base64(br#"{"auths": {"reg.io": {"auth": "hunter2!!"}}}"#.as_slice())]
    #[case::no_colon(br#"{"auths": {"reg.io": {"auth": "aHVudGVyMg=="}}}"#.as_slice())]
    #[case::wrong_type(br#"{"auths": {"reg.io": {"password": ["hunter2"]}}}"#.as_slice())]
    fn parse_errors_never_quote_values(#[case] bytes: &[u8]) {
        let kind = DockerConfig::from_dockerconfigjson(bytes).unwrap_err();
        let problem = SecretProblem { secret: "regcred".into(), service_account: None, namespace: "demo".into(), kind };
        let message = problem.to_string();
        assert!(!message.contains("hunter2") && !message.contains("aHVudGVyMg"), "{message}");
        assert!(message.starts_with("secret \"regcred\" .dockerconfigjson "), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    fn secret(type_: Option<&str>, data: &[(&str, &[u8])]) -> Secret {
        Secret {
            type_: type_.map(str::to_owned),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::dockerconfigjson(secret(Some("kubernetes.io/dockerconfigjson"), &[(".dockerconfigjson", br#"{"auths":{"r.io":{"username":"u","password":"p"}}}"#)]), Ok(1))]
    #[case::dockercfg(secret(Some("kubernetes.io/dockercfg"), &[(".dockercfg", br#"{"r.io":{"username":"u","password":"p"}}"#)]), Ok(1))]
    #[case::opaque(secret(Some("Opaque"), &[(".dockerconfigjson", b"{}")]), Err(SecretProblemKind::WrongType { found: "Opaque".into() }))]
    #[case::untyped_is_opaque(secret(None, &[]), Err(SecretProblemKind::WrongType { found: "Opaque".into() }))]
    #[case::key_of_other_type(secret(Some("kubernetes.io/dockerconfigjson"), &[(".dockercfg", b"{}")]), Err(SecretProblemKind::MissingKey { key: ".dockerconfigjson" }))]
    #[case::empty_data(secret(Some("kubernetes.io/dockercfg"), &[(".dockercfg", b"")]), Err(SecretProblemKind::MissingKey { key: ".dockercfg" }))]
    fn reads_pull_secrets_like_kubelet(#[case] secret: Secret, #[case] expected: Result<usize, SecretProblemKind>) {
        assert_eq!(docker_config(&secret).map(|c| c.entries.len()), expected);
    }

    fn problem(
        secret: &str,
        service_account: Option<&str>,
        kind: SecretProblemKind,
    ) -> SecretProblem {
        SecretProblem {
            secret: secret.into(),
            service_account: service_account.map(Into::into),
            namespace: "demo".into(),
            kind,
        }
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::not_found(problem("regcred", None, SecretProblemKind::NotFound), r#"secret "regcred" not found in namespace demo"#)]
    #[case::wrong_type(problem("regcred", None, SecretProblemKind::WrongType { found: "Opaque".into() }), r#"secret "regcred" has type Opaque, not kubernetes.io/dockerconfigjson"#)]
    #[case::missing_key(problem("regcred", None, SecretProblemKind::MissingKey { key: ".dockerconfigjson" }), r#"secret "regcred" has no .dockerconfigjson data"#)]
    #[case::malformed(problem("regcred", None, SecretProblemKind::MalformedJson { reason: ".dockerconfigjson is not valid JSON: EOF while parsing".into() }), r#"secret "regcred" .dockerconfigjson is not valid JSON: EOF while parsing"#)]
    #[case::no_entry(problem("regcred", None, SecretProblemKind::NoEntryForRegistry { registry: "127.0.0.1:5000".into() }), r#"secret "regcred" has no entry for 127.0.0.1:5000"#)]
    #[case::of_service_account(problem("regcred", Some("builder"), SecretProblemKind::NotFound), r#"secret "regcred" of ServiceAccount "builder" not found in namespace demo"#)]
    #[case::service_account_missing(problem("", Some("builder"), SecretProblemKind::NotFound), r#"ServiceAccount "builder" not found in namespace demo"#)]
    #[case::no_api(problem("regcred", None, SecretProblemKind::ApiUnavailable { reason: NO_API.into() }), r#"secret "regcred" in namespace demo could not be read: no Kubernetes API is available to read it"#)]
    fn problems_read_as_one_line(#[case] problem: SecretProblem, #[case] message: &str) {
        assert_eq!(problem.to_string(), message);
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::pod(CredentialOrigin::PodSecret { secret: "regcred".into() }, r#"secret "regcred""#)]
    #[case::service_account(CredentialOrigin::ServiceAccountSecret { service_account: "builder".into(), secret: "regcred".into() }, r#"secret "regcred" of ServiceAccount "builder""#)]
    #[case::node(CredentialOrigin::Node { file: "/var/lib/kubelet/config.json".into() }, "node credentials (/var/lib/kubelet/config.json)")]
    fn origins_display(#[case] origin: CredentialOrigin, #[case] text: &str) {
        assert_eq!(origin.to_string(), text);
    }

    #[test]
    fn credential_debug_and_display_redact_the_password() {
        let credential = Credential::new(
            "alice",
            "hunter2",
            CredentialOrigin::PodSecret {
                secret: "regcred".into(),
            },
        );
        for text in [
            format!("{credential:?}"),
            format!("{credential:#?}"),
            credential.to_string(),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("alice"), "{text}");
        }
        assert_eq!(credential.password(), "hunter2");
    }

    /// A hand-written [`CredentialSource`] over fixed objects.
    struct Fixed {
        secrets: Vec<Secret>,
    }

    impl CredentialSource for Fixed {
        fn secret<'a>(
            &'a self,
            _: &'a str,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Option<Secret>, ApiError>> {
            let found = self
                .secrets
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .cloned();
            Box::pin(async move { Ok(found) })
        }

        fn service_account<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<ServiceAccount>, ApiError>> {
            Box::pin(async { Ok(None) })
        }
    }

    #[tokio::test]
    async fn pod_credentials_debug_redacts_every_password() {
        let document = json!({"auths": {"reg.io": {"auth": b64("alice:hunter2")}}});
        let mut regcred = secret(
            Some("kubernetes.io/dockerconfigjson"),
            &[(".dockerconfigjson", &serde_json::to_vec(&document).unwrap())],
        );
        regcred.metadata.name = Some("regcred".into());
        let source = Fixed {
            secrets: vec![regcred],
        };
        let spec = PodSpec {
            image_pull_secrets: Some(vec![LocalObjectReference {
                name: "regcred".into(),
            }]),
            ..PodSpec::default()
        };
        let node = config(&[("reg.io", "node-user", "node-hunter3")]);
        let gathered = PodCredentials::gather(Some(&source), "demo", &spec, Some(&node)).await;
        let for_image = gathered.for_image(&"reg.io/app:v1".parse().unwrap());
        assert_eq!(for_image.candidates.len(), 2, "{for_image:?}");
        assert_eq!(for_image.candidates[0].password(), "hunter2");
        for text in [
            format!("{gathered:?}"),
            format!("{gathered:#?}"),
            format!("{for_image:?}"),
            format!("{node:?}"),
        ] {
            assert!(!text.contains("hunter"), "{text}");
            assert!(!text.contains(&b64("alice:hunter2")), "{text}");
        }
    }

    #[test]
    fn fingerprint_tells_credentials_apart_without_revealing_them() {
        let origin = CredentialOrigin::PodSecret { secret: "s".into() };
        let fingerprint =
            |user: &str, pass: &str| Credential::new(user, pass, origin.clone()).fingerprint();
        let first = fingerprint("alice", "one");
        assert_eq!(first.len(), 16);
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(first, fingerprint("alice", "one"));
        assert_ne!(first, fingerprint("alice", "two"));
        assert_ne!(fingerprint("a:b", "c"), fingerprint("a", "b:c"));
        assert_eq!(first, Credential::fingerprint_of("alice", "one"));
    }
}
