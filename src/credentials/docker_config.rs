//! Docker configs as kubelet reads them: the `.dockerconfigjson` and legacy `.dockercfg` data of
//! pull secrets and a node's `config.json` ([`DockerConfig`]), and kubelet's credential keyring
//! matching of their keys to an image. Parse errors describe positions and shapes, never contents.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Map, Value};

use super::keyring::{index_key, keyring_lookup};
use super::{DOCKER_CONFIG_JSON, DOCKERCFG};
use crate::facts::SecretProblemKind;
use crate::image::ImageRef;

/// One usable entry of a docker config.
#[derive(Clone)]
pub(super) struct Entry {
    /// The key as written, e.g. `https://index.docker.io/v1/`.
    pub(super) key: String,
    /// The key as kubelet indexes it (scheme, `/v1/`, `/v2/` and a bare `/` removed), or `None`
    /// when kubelet would ignore the entry because the key is not a URL.
    indexed: Option<String>,
    pub(super) username: String,
    pub(super) password: String,
}

/// A parsed docker config: `.dockerconfigjson` (`{"auths": {KEY: {...}}}`), legacy `.dockercfg`
/// (`{KEY: {...}}`) or a node's `config.json`. `Debug` shows keys and usernames only.
#[derive(Clone, Default)]
pub struct DockerConfig {
    pub(super) entries: Vec<Entry>,
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
    ///
    /// [`CredentialOrigin::Node`]: super::CredentialOrigin::Node
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
        keyring_lookup(
            self.indexed_entries(),
            image.name(),
            image.registry() == "docker.io",
        )
        .into_iter()
        .map(|e| (e.username.clone(), e.password.clone()))
        .collect()
    }

    pub(super) fn indexed_entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
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
                    return Err(SecretProblemKind::WrongLayout {
                        reason: format!(
                            "{source} has no \"auths\" object (legacy .dockercfg content? use type kubernetes.io/dockercfg)"
                        ),
                    });
                }
            },
            Layout::Legacy if object.len() == 1 && object.contains_key("auths") => {
                return Err(SecretProblemKind::WrongLayout {
                    reason: format!(
                        "{source} has the config.json layout ({{\"auths\": ...}}): use type kubernetes.io/dockerconfigjson"
                    ),
                });
            }
            Layout::Legacy => object,
        };
        Self::from_auths(auths, Some(source))
    }

    /// The entries of an `auths` object (`{KEY: {"auth": …} | {"username": …, "password": …}}`), as
    /// kubelet reads them. `source` names the data in messages (`.dockerconfigjson`); without it, the
    /// messages start with the entry (`entry "r.io" field "auth" is not valid base64: …`).
    pub fn from_auths(
        auths: &Map<String, Value>,
        source: Option<&str>,
    ) -> Result<Self, SecretProblemKind> {
        let named = |what: String| match source {
            Some(source) => format!("{source} {what}"),
            None => what,
        };
        let malformed = |what: String| SecretProblemKind::MalformedJson {
            reason: named(what),
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
                    reason: named(format!("entry {key:?} field \"auth\" {why}")),
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
