//! The nouns that policy, registry and credentials share: the facts of a subject (its namespace, labels and
//! containers), what resolving an image came to, how a registry conversation failed, pull budgets, where a
//! credential came from and what is wrong with a referenced secret, and the cap on quoted text.
//!
//! Plain data, no I/O and no network crates: `policy` decides on these types alone, and `registry`,
//! `credentials` and `resolve` produce them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::image::{ImageRef, ImageRefError};
use crate::platform::{Platform, PlatformMatch, PodPlatforms};
use crate::workload::{ContainerSpec, RunAs};

/// Secret type of a `config.json`-layout pull secret, the one kubelet reads besides `dockercfg`.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// What the decision looks at: one pod spec's containers and the object's scope.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub containers: Vec<ContainerFacts>,
    /// The pod's own `securityContext` user fields (each container's own override them).
    pub pod_run_as: RunAs,
    /// The pod's declared `spec.os.name` (`linux` or `windows`), when it declares one.
    pub pod_os: Option<String>,
    /// Whether the pod's node selector and required node affinity let it onto nodes of the OS it
    /// declares ([`crate::platform::os_allowed`]); `None` when they do not constrain the OS, or it
    /// declares none.
    pub pod_os_allowed: Option<bool>,
    /// The pod is meant for Windows nodes: it declares `spec.os.name: windows`, or its node selector or
    /// affinity names Windows nodes.
    pub pod_windows: bool,
}

/// One container to check, with its image parsed once.
#[derive(Debug, Clone)]
pub struct ContainerFacts {
    pub spec: ContainerSpec,
    pub image: Result<ImageRef, ImageRefError>,
}

impl ContainerFacts {
    /// Parse the container's image.
    pub fn new(spec: ContainerSpec) -> Self {
        let image = ImageRef::parse_memo(&spec.image);
        Self { spec, image }
    }

    /// What image globs are matched against: the normalised `registry/repository`, or the text as written
    /// when it does not parse.
    pub fn scope_name(&self) -> &str {
        match &self.image {
            Ok(image) => image.name(),
            Err(_) => &self.spec.image,
        }
    }
}

/// What the registry must be asked for one container (from `policy::plan`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryNeed {
    /// Some registry rule applies: resolve the image.
    pub resolve: bool,
    /// `platform-supported` applies: read the image's platforms too.
    pub platforms: bool,
    /// `image-exists` applies with `suggestTags`: on a missing tag, list the repository's tags.
    pub suggest_tags: bool,
    /// `image-size` applies: read the compressed size of what each platform the pod may land on pulls.
    pub sizes: bool,
    /// A start rule (`run-as-non-root`, `command-specified`) needs what the image config says: read the
    /// config of what each platform the pod may land on pulls.
    pub config: bool,
    /// `windows-build` applies: when the pod may land on Windows nodes, read the Windows builds the
    /// image is built for.
    pub windows: bool,
}

/// The registry's answers for one admission, by container image field path.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub images: BTreeMap<String, ImageStatus>,
    /// Where the pod may land (for messages).
    pub pod_platforms: Option<PodPlatforms>,
    /// Registries whose watched pull budget is below its threshold.
    pub low_budgets: BTreeMap<String, Budget>,
    /// Registry requests made while resolving (cache hits make none).
    pub registry_calls: u32,
    /// By container image field path, problems with the pod's referenced secrets for images whose
    /// registry could not be asked (unreachable, TLS, rate limit, timeout): what the API said still counts.
    pub unverified_secret_problems: BTreeMap<String, Vec<SecretProblem>>,
}

/// One credential that was tried and failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    pub origin: CredentialOrigin,
    pub error: ResolveError,
}

/// What resolving one image came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "Found is the common case: boxing it would cost an allocation per image on the warm path"
)]
pub enum ImageStatus {
    /// The image exists and the pod's credentials (or none) can pull it.
    Found {
        digest: String,
        /// How the image's platforms compare with where the pod may land; `None` when not checked.
        platforms: Option<Result<PlatformMatch, ResolveError>>,
        /// Problems with referenced secrets that did not stop the pull (e.g. a missing secret for a public image).
        secret_problems: Vec<SecretProblem>,
        /// What a node of each platform the pod may land on pulls, compressed; `None` when not asked.
        sizes: Option<Result<Vec<PlatformSize>, ResolveError>>,
        /// What a node of each platform the pod may land on would start (the image config of the
        /// manifest it selects); `None` when not asked.
        configs: Option<Result<Starts, ResolveError>>,
        /// The Windows builds the image is built for, when the pod may land on Windows nodes and
        /// `windows-build` asked; `None` when not asked.
        windows: Option<Result<WindowsOffer, ResolveError>>,
    },
    /// The registry says the tag, digest or repository does not exist; for a missing tag, the nearest
    /// existing tags when they were asked for.
    NotFound {
        missing: Missing,
        suggestions: Vec<String>,
    },
    /// The registry wants credentials and none of the pod's work.
    AuthFailed {
        /// Each credential tried, in kubelet's order.
        attempts: Vec<AuthAttempt>,
        /// Problems with referenced secrets (missing, wrong type, malformed, no entry for the host).
        problems: Vec<SecretProblem>,
        /// The anonymous answer, when no credential matched.
        anonymous: Option<ResolveError>,
        /// Pull secrets could not be read because no Kubernetes API is available.
        api_unavailable: bool,
        /// Why the refusal says nothing about the nodes: a credential provider failed, or the registry
        /// authenticates nodes by their cloud identity and no provider is configured for it.
        unverifiable: Option<String>,
    },
    /// kubelet cannot build the pod's pull credentials (this referenced secret does not decode): the
    /// pull fails before any registry is contacted, for every image of the pod.
    CredentialsUnbuildable(SecretProblem),
    /// The registry could not be asked: network, TLS, rate limit or a broken answer.
    Failed(ResolveError),
    /// The admission's time budget ran out before the registry answered.
    TimedOut(Duration),
}

/// The compressed size of the image a node of `platform` pulls: its platform manifest's config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSize {
    pub platform: Platform,
    pub bytes: u64,
}

/// What an image's config blob decides about starting a container, as the runtime reads it: the
/// platform the binaries are for, the Windows build, the user and the default command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `os`/`architecture`/`variant` as the config states them; `None` when it names no os or
    /// architecture.
    pub platform: Option<Platform>,
    /// `os.version`: a Windows image's build, e.g. `10.0.17763.5936`.
    pub os_version: Option<String>,
    /// `config.User` as written (`""` when unset): `uid`, `uid:gid`, `name` or `name:group`.
    pub user: String,
    /// `config.Entrypoint` (empty when unset or null).
    pub entrypoint: Vec<String>,
    /// `config.Cmd` (empty when unset or null).
    pub cmd: Vec<String>,
}

/// What a node of one platform the pod may land on would start: the index entry it selects (`None` for
/// a single image, where the config is all there is) and that manifest's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartConfig {
    /// The node platform (a candidate of [`PodPlatforms`]).
    pub node: Platform,
    /// The platform the selected index entry claims, with its `os.version` when it states one.
    pub entry: Option<(Platform, Option<String>)>,
    pub config: std::sync::Arc<ImageConfig>,
}

/// What nodes of the platforms the pod may land on would start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Starts {
    /// A single image: the same config on every node (shared, not copied per platform).
    Single(std::sync::Arc<ImageConfig>),
    /// An index: for each candidate platform some entry runs on, what its node pulls.
    PerPlatform(Vec<StartConfig>),
}

/// One node platform's start, borrowed from [`Starts`].
#[derive(Debug, Clone, Copy)]
pub struct StartView<'a> {
    pub node: &'a Platform,
    /// The index entry the node selects: the platform it claims and its `os.version`.
    pub entry: Option<&'a (Platform, Option<String>)>,
    pub config: &'a ImageConfig,
}

impl Starts {
    /// What a node of each of `candidates` (the pod's) starts: for a single image, every candidate;
    /// for an index, the candidates some entry runs on.
    pub fn each<'a>(&'a self, candidates: &'a [Platform]) -> impl Iterator<Item = StartView<'a>> {
        let (single, list) = match self {
            Starts::Single(config) => (Some(&**config), &[][..]),
            Starts::PerPlatform(list) => (None, &list[..]),
        };
        let single = single.into_iter().flat_map(move |config| {
            candidates.iter().map(move |node| StartView {
                node,
                entry: None,
                config,
            })
        });
        single.chain(list.iter().map(|s| StartView {
            node: &s.node,
            entry: s.entry.as_ref(),
            config: &s.config,
        }))
    }
}

/// The Windows builds an image is built for (`os.version`), as a Windows node's containerd sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowsOffer {
    /// An index: each entry's platform and `os.version`. A node pulls an entry whose build it runs, or
    /// fails ("no matching manifest").
    Index(Vec<(Platform, Option<String>)>),
    /// A single image: its config's platform and `os.version`. It pulls anywhere; a process-isolated
    /// container of another build does not start ("the container operating system does not match the
    /// host operating system").
    Single(Option<Platform>, Option<String>),
}

/// What a manifest lookup found missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Missing {
    /// The tag (or the repository: distribution answers MANIFEST_UNKNOWN for both).
    Manifest,
    /// The registry said the repository name is unknown.
    Repository,
}

/// How a registry conversation failed. Each maps to one rule of the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// 404 MANIFEST_UNKNOWN / NAME_UNKNOWN: the tag, digest or repository does not exist.
    #[error("not found")]
    NotFound(Missing),
    /// 401: no credentials, or the credentials were rejected.
    #[error("unauthorized (401)")]
    Unauthorized,
    /// 403 DENIED, or a token for valid credentials that grants no pull (`insufficient_scope`): the
    /// credentials work but may not pull this repository.
    #[error("access denied (403)")]
    Denied,
    /// 429 TOOMANYREQUESTS.
    #[error("rate limited (429){}", detail_suffix(.0))]
    RateLimited(String),
    /// The TLS handshake failed: unknown CA, expired or mismatched certificate, or a plain-HTTP server.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// TCP connection refused.
    #[error("connection refused")]
    Refused,
    /// The registry host name does not resolve.
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    /// No answer within the time allowed.
    #[error("timed out")]
    Timeout,
    /// Any other failure to connect or to complete the exchange.
    #[error("connection failed: {0}")]
    Connect(String),
    /// 5xx, or another unexpected status.
    #[error("registry answered HTTP {status}")]
    Server { status: u16 },
    /// The registry answered something that is not a valid manifest or config.
    #[error("invalid registry response: {0}")]
    InvalidResponse(String),
    /// The token service named by the registry's Bearer challenge failed: unreachable, too slow, 5xx, or
    /// an answer that is not a token. Says nothing about credentials.
    #[error("token service {0}")]
    TokenService(String),
    /// A body larger than pullgate reads (`what` larger than `limit`): the connection was dropped.
    #[error("{what} larger than {limit}")]
    TooLarge { what: String, limit: String },
    /// The address a name resolved to (or an IP literal) is refused by `network` settings; nothing was
    /// sent there.
    #[error("{role} address {address} is {class}: refused by network.denyCIDRs")]
    AddressRefused {
        role: String,
        address: String,
        class: String,
    },
    /// The registry's token service is on another site and not in `tokenRealms`: pullgate does not send
    /// it the registry's credentials, so they cannot be verified.
    #[error(
        "its token service {realm} is on another site: pullgate sends it no credentials (list it in registries.<host>.tokenRealms to allow)"
    )]
    CredentialsWithheld { realm: String },
    /// pullgate's own cap on requests to this registry (`pullgate audit --max-requests-per-registry`)
    /// is spent: nothing was asked. Says nothing about the image.
    #[error("not asked: pullgate's budget of {limit} requests for this registry is spent")]
    RequestBudgetSpent { limit: u32 },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// The class of a failure, which decides the rule that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    NotFound,
    Auth,
    RateLimited,
    Tls,
    Unreachable,
}

impl ResolveError {
    /// Which rule reports this failure.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::NotFound(_) => FailureClass::NotFound,
            Self::Unauthorized | Self::Denied => FailureClass::Auth,
            Self::RateLimited(_) => FailureClass::RateLimited,
            Self::Tls(_) => FailureClass::Tls,
            Self::Refused
            | Self::Dns(_)
            | Self::Timeout
            | Self::Connect(_)
            | Self::Server { .. }
            | Self::InvalidResponse(_)
            | Self::TokenService(_)
            | Self::TooLarge { .. }
            | Self::AddressRefused { .. }
            | Self::CredentialsWithheld { .. }
            | Self::RequestBudgetSpent { .. } => FailureClass::Unreachable,
        }
    }
}

/// A manifest digest, `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ManifestDigest(pub String);

impl fmt::Display for ManifestDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Pulls left in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub remaining: u64,
    /// The allowance per window, when the registry says.
    pub limit: Option<u64>,
    /// The window in seconds (`w=`), when the registry says.
    pub window_seconds: Option<u64>,
}

/// Where a credential came from.
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
    /// A kubelet credential provider plugin (the nodes' cloud identity).
    Provider { name: String },
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
            Self::Provider { name } => write!(f, "credential provider {name:?}"),
        }
    }
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
    /// Valid JSON of the other docker config layout: kubelet reads no entry from it (and no error).
    WrongLayout { reason: String },
    /// The secret loaded but none of its entries matches this image's registry.
    NoEntryForRegistry { registry: String },
    /// The secret (or ServiceAccount) could not be read: no API, RBAC, network, timeout.
    ApiUnavailable { reason: String },
}

impl SecretProblemKind {
    /// What is wrong, without the subject (`not found`, `has no entry for reg.io`, ...).
    pub fn reason(&self) -> String {
        match self {
            Self::NotFound => "not found".into(),
            Self::WrongType { found } => {
                format!("has type {found}, not {}", DOCKER_CONFIG_JSON_TYPE)
            }
            Self::MissingKey { key } => format!("has no {key} data"),
            Self::MalformedJson { reason }
            | Self::MalformedBase64 { reason }
            | Self::WrongLayout { reason } => reason.clone(),
            Self::NoEntryForRegistry { registry } => format!("has no entry for {registry}"),
            Self::ApiUnavailable { reason } => format!("could not be read: {reason}"),
        }
    }
}

impl SecretProblemKind {
    /// Whether kubelet fails to build the pod's credentials at all because of it (its `json.Unmarshal` of
    /// the secret errs): then no image of the pod pulls, and the registry is never contacted.
    pub fn breaks_kubelet_keyring(&self) -> bool {
        matches!(
            self,
            Self::MalformedJson { .. } | Self::MalformedBase64 { .. }
        )
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

/// A duration as messages say it: whole seconds, or tenths under one second (`within 6 s`).
pub fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1.0 {
        format!("{secs:.1} s")
    } else {
        format!("{} s", secs.round())
    }
}

/// Text that reaches a Kubernetes warning or a denial: every control character becomes a space
/// (kube-apiserver drops a warning that has any, so the user would see nothing).
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Cut a string to at most `max` characters, marking the cut with `…`.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
