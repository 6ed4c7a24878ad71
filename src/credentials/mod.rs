//! Pull credentials as kubelet finds them: the pod's `imagePullSecrets` (or, when it lists none, its
//! ServiceAccount's), then node-level docker config, matched to an image the way kubelet's
//! credential keyring does.
//!
//! This module owns reading Secrets and ServiceAccounts (through [`CredentialSource`]: from the API,
//! cached, in [`KubeCredentialSource`]; from manifests in [`ManifestCredentials`]), parsing docker
//! configs ([`DockerConfig`]), the local docker config and its credential helpers (`pullgate check`,
//! [`local_credentials`]), and key matching. It never logs, formats or returns a secret value in an
//! error: [`Credential`] and [`DockerConfig`] redact passwords in `Debug`, and parse errors describe
//! positions and shapes, never contents.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use futures::future::{BoxFuture, join_all};
use k8s_openapi::api::core::v1::{LocalObjectReference, PodSpec, Secret, ServiceAccount};

use crate::facts::{CredentialOrigin, SecretProblem, SecretProblemKind};
use crate::image::ImageRef;

mod docker_config;
mod keyring;
mod kube;
mod local;
mod manifest;
mod providers;
#[cfg(test)]
mod tests;

pub use self::docker_config::{DockerConfig, NodeConfigError};
use self::keyring::keyring_lookup;
pub use self::kube::{ApiError, KubeCredentialSource, KubeMetrics};
pub use self::local::{
    HELPER_TIMEOUT, LocalConfigError, LocalCredentials, LocalDockerConfig, default_helper_path,
    local_credentials,
};
pub use self::manifest::ManifestCredentials;

/// Whether a kubelet `matchImages` glob (or keyring key) matches an image name, by keyring rules.
pub fn keyring_matches(pattern: &str, name: &str) -> bool {
    keyring::urls_match(pattern, name)
}
pub use self::providers::{
    Asker, CredentialProviders, ProviderConfigError, ProviderCredentials, parse_go_duration,
};

/// Secret type (and its data key) of a `config.json`-layout pull secret.
const DOCKER_CONFIG_JSON: (&str, &str) = ("kubernetes.io/dockerconfigjson", ".dockerconfigjson");
/// Secret type (and its data key) of a legacy `.dockercfg`-layout pull secret.
const DOCKERCFG: (&str, &str) = ("kubernetes.io/dockercfg", ".dockercfg");
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
    /// A token of the ServiceAccount for `audience` (the TokenRequest API), for credential provider
    /// plugins that ask for one. Sources without an API have none.
    fn service_account_token<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
        _audience: &'a str,
    ) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(async {
            Err(ApiError::Unreachable {
                reason: "no Kubernetes API to request a ServiceAccount token from".into(),
            })
        })
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
    /// The ServiceAccount the pod runs as.
    service_account: String,
    secrets: Vec<LoadedSecret>,
    problems: Vec<SecretProblem>,
    /// The node's docker config, shared with the resolver (not copied per admission).
    node: Option<Arc<DockerConfig>>,
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
        node: Option<Arc<DockerConfig>>,
    ) -> Self {
        let account_name = spec
            .service_account_name
            .as_deref()
            .or(spec.service_account.as_deref())
            .filter(|name| !name.is_empty())
            .unwrap_or(DEFAULT_SERVICE_ACCOUNT);
        let mut gathered = Self {
            namespace: namespace.to_owned(),
            service_account: account_name.to_owned(),
            secrets: Vec::new(),
            problems: Vec::new(),
            node,
            api_unavailable: source.is_none(),
        };
        let mut names = secret_names(spec.image_pull_secrets.as_deref());
        let mut service_account = None;
        if names.is_empty() {
            let account = account_name;
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
        let candidates = self.candidates(image);
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

    /// The credential kubelet tries first for `image` (anonymous when `None`): the first of
    /// [`for_image`](Self::for_image)'s candidates, without the problems.
    pub fn first_for_image(&self, image: &ImageRef) -> Option<Credential> {
        self.candidates(image).into_iter().next()
    }

    /// [`for_image`](Self::for_image)'s candidates.
    fn candidates(&self, image: &ImageRef) -> Vec<Credential> {
        let target = image.name();
        let hub = image.registry() == "docker.io";
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
                target,
                hub,
            ),
            _ => Vec::new(),
        };
        let mut seen = HashSet::new();
        keyring_lookup(from_secrets, target, hub)
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
            .collect()
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The ServiceAccount the pod runs as (`serviceAccountName`, else `default`).
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// True when some secret or the ServiceAccount could not be read (no API, RBAC, network):
    /// the outcome of a pull cannot be predicted with certainty.
    pub fn api_unavailable(&self) -> bool {
        self.api_unavailable
    }

    /// The first referenced secret that keeps kubelet from building the pod's credentials at all (it
    /// does not decode): with it, no image of the pod pulls.
    pub fn keyring_failure(&self) -> Option<&SecretProblem> {
        self.problems
            .iter()
            .find(|p| p.kind.breaks_kubelet_keyring())
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
