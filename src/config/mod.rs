//! Settings: the optional `--config` YAML file, validated at start-up with the file and key in each error,
//! and the resolved configuration `serve` runs with.

mod audit;
mod limits;

pub use audit::AuditSettings;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use clap::ValueEnum;

use crate::image::RegistryHost;
use crate::platform::{NodePlatform, Platform};

/// Default limit of an AdmissionReview body (the apiserver sends far less; 8 MiB leaves room for huge pods).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// The `--config` file. Every key is optional; unknown keys are errors.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    /// Per-registry settings, keyed by the registry host as written in image references.
    #[serde(default)]
    pub registries: BTreeMap<RegistryHost, RegistrySettings>,
    /// containerd's `certs.d` directory as on the nodes (`<dir>/<host>/hosts.toml`).
    pub containerd_hosts_dir: Option<PathBuf>,
    /// Platforms of the cluster's nodes, for pods without an arch/os constraint; a Windows entry may
    /// name its nodes' build (`windows/amd64:10.0.20348`).
    #[serde(default = "default_node_platforms")]
    pub node_platforms: Vec<NodePlatform>,
    /// Read node platforms from Node labels when a Kubernetes API is available (needs `list` on nodes).
    #[serde(default = "enabled")]
    pub node_platform_discovery: bool,
    /// Node-level registry credentials: a docker `config.json` as the nodes have it.
    pub node_credentials: Option<PathBuf>,
    #[serde(default)]
    pub resolution: ResolutionSettings,
    /// Registries whose pull budget is watched (e.g. Docker Hub); see [`RateLimitProbe`].
    #[serde(default)]
    pub rate_limit_probes: Vec<RateLimitProbe>,
    /// Which addresses pullgate may connect to (registries, mirrors, redirects, token services).
    #[serde(default)]
    pub network: NetworkSettings,
    /// kubelet's credential provider plugins, run as the nodes run them (their credentials come after
    /// pod and node credentials).
    pub credential_providers: Option<CredentialProviderSettings>,
    /// Registries (kubelet `matchImages` globs) whose nodes authenticate by cloud identity, besides the
    /// built-in ECR, Artifact Registry/GCR and ACR ones: a refusal there, with no provider configured
    /// for it, is a warning, never a denial.
    #[serde(default)]
    pub node_authenticated_registries: Vec<String>,
    /// Continuous re-verification of running workloads (`serve`; off when absent).
    pub audit: Option<AuditSettings>,
}

/// Registries nodes usually pull from with their cloud identity through a kubelet credential provider
/// (the managed defaults of EKS, GKE and AKS), as `matchImages` globs.
pub const NODE_IDENTITY_REGISTRIES: [&str; 14] = [
    "*.dkr.ecr.*.amazonaws.com",
    "*.dkr.ecr.*.amazonaws.com.cn",
    "*.dkr-ecr.*.on.aws",
    "*.dkr.ecr-fips.*.amazonaws.com",
    "*.dkr-ecr-fips.*.on.aws",
    "container.cloud.google.com",
    "gcr.io",
    "*.gcr.io",
    "*.pkg.dev",
    "*.azurecr.io",
    "*.azurecr.cn",
    "*.azurecr.de",
    "*.azurecr.us",
    "*.*.geo.azurecr.io",
];

/// `credentialProviders`: kubelet's own `CredentialProviderConfig` and the plugins' directory (mount the
/// node's, or the same plugins with the same cloud identity — IRSA, Workload Identity).
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialProviderSettings {
    /// kubelet's `--image-credential-provider-config` file.
    pub config: PathBuf,
    /// kubelet's `--image-credential-provider-bin-dir`.
    pub bin_dir: PathBuf,
    /// How long one plugin run may take (kubelet allows a minute; an admission has seconds).
    #[serde(default = "default_provider_timeout")]
    #[schemars(range(max = 600), extend("exclusiveMinimum" = 0))]
    pub timeout_seconds: f64,
}

/// How long one plugin run may take by default.
pub const DEFAULT_PROVIDER_TIMEOUT_SECONDS: f64 = 5.0;

fn default_provider_timeout() -> f64 {
    DEFAULT_PROVIDER_TIMEOUT_SECONDS
}

impl CredentialProviderSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds)
    }
}

/// Where registry connections may go. Every connection — registry, mirror, redirect hop, token service —
/// is checked against these after DNS resolution. Link-local, cloud metadata and unspecified addresses
/// are always refused; `serve` also refuses loopback (inside a cluster the webhook's loopback is its own
/// pod), `check` allows it. Private ranges are allowed (in-cluster registries). The most specific range
/// that contains an address decides; an address in no range is allowed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSettings {
    /// Ranges refused besides the built-in ones, e.g. `10.0.0.0/8`.
    #[serde(rename = "denyCIDRs")]
    #[schemars(with = "Vec<String>")]
    pub deny_cidrs: Vec<ipnet::IpNet>,
    /// Ranges allowed even where a built-in or `denyCIDRs` range would refuse them, e.g. `127.0.0.0/8`.
    #[serde(rename = "allowCIDRs")]
    #[schemars(with = "Vec<String>")]
    pub allow_cidrs: Vec<ipnet::IpNet>,
}

/// Watch a registry's pull budget: every `intervalSeconds`, an anonymous `HEAD` of `repository:latest`
/// (not counted against the budget) reads `ratelimit-remaining`; below `warnBelow`, images from that
/// registry get a `rate-limited` warning.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitProbe {
    /// Registry host as in image references, e.g. `docker.io`.
    pub registry: RegistryHost,
    /// Repository probed; Docker documents `ratelimitpreview/test`.
    #[serde(default = "default_probe_repository")]
    pub repository: String,
    #[serde(default = "default_probe_interval")]
    #[schemars(range(min = 1, max = 86400))]
    pub interval_seconds: u64,
    #[serde(default = "default_warn_below")]
    pub warn_below: u64,
}

fn default_probe_repository() -> String {
    "ratelimitpreview/test".into()
}

fn default_probe_interval() -> u64 {
    300
}

fn default_warn_below() -> u64 {
    20
}

fn enabled() -> bool {
    true
}

fn default_node_platforms() -> Vec<NodePlatform> {
    vec![NodePlatform {
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        windows_build: None,
    }]
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            registries: BTreeMap::new(),
            containerd_hosts_dir: None,
            node_platforms: default_node_platforms(),
            node_platform_discovery: true,
            node_credentials: None,
            resolution: ResolutionSettings::default(),
            rate_limit_probes: Vec::new(),
            network: NetworkSettings::default(),
            credential_providers: None,
            node_authenticated_registries: Vec::new(),
            audit: None,
        }
    }
}

/// One entry of the `registries:` map, keyed by the registry host as in image references
/// (`registry.example.com:5000`, `docker.io`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistrySettings {
    /// Plain HTTP to the upstream registry (mirrors keep their URL's scheme).
    #[serde(default)]
    pub insecure: bool,
    /// PEM file of CA certificates trusted besides the system roots, for the registry and mirrors.
    pub ca: Option<PathBuf>,
    /// Do not verify the TLS certificates of the registry and its mirrors (high risk).
    #[serde(default)]
    pub skip_verify: bool,
    /// Tried before the upstream, in order: `https://mirror.example.com[:port][/path]`, `http://…`.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Manifest GETs count against a pull quota here (Docker Hub's default): tags are resolved with a
    /// `HEAD` first, so a digest already known costs no pull. Unset: true for `docker.io` only.
    pub pull_quota: Option<bool>,
    /// Token services (`https://auth.example.com/token`, or just the host) on another site that may
    /// receive this registry's credentials. A token service on the registry's own site (same host or
    /// same registrable domain, e.g. `registry.gitlab.com` → `gitlab.com`) needs no entry.
    #[serde(default)]
    pub token_realms: Vec<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Registry resolution: deadlines, parallelism and cache lifetimes. Each key defaults on its own.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ResolutionSettings {
    /// The whole admission answers within this; keep it below the webhook's `timeoutSeconds`.
    #[schemars(range(max = 300), extend("exclusiveMinimum" = 0))]
    pub budget_seconds: f64,
    /// One image may take at most this.
    #[schemars(range(max = 300), extend("exclusiveMinimum" = 0))]
    pub per_image_timeout_seconds: f64,
    /// Lookups running at once against one registry.
    #[schemars(range(min = 1, max = 10000))]
    pub per_registry_concurrency: usize,
    /// Connecting to a registry (TCP and TLS).
    #[schemars(range(max = 300), extend("exclusiveMinimum" = 0))]
    pub connect_timeout_seconds: f64,
    /// One registry request, connecting included, until the last byte of its answer.
    #[schemars(range(max = 300), extend("exclusiveMinimum" = 0))]
    pub read_timeout_seconds: f64,
    /// How long a tag's digest is trusted.
    #[schemars(range(max = 31622400))]
    pub tag_ttl_seconds: u64,
    /// How long "not found" is remembered.
    #[schemars(range(max = 31622400))]
    pub not_found_ttl_seconds: u64,
    /// How long Secrets and ServiceAccounts read from the API are kept.
    #[schemars(range(max = 31622400))]
    pub kubernetes_ttl_seconds: u64,
    /// Largest size of each in-memory cache (tag → digest, digest → platforms), in bytes.
    #[schemars(range(min = 1048576, max = 68_719_476_736_u64))]
    pub cache_max_bytes: u64,
    /// Largest manifest body read; larger ones are dropped unread ("manifest larger than 4 MiB").
    #[schemars(range(min = 1024, max = 1073741824))]
    pub max_manifest_bytes: u64,
    /// Most entries of an image index read; an index with more is not verified.
    #[schemars(range(min = 1, max = 1000000))]
    pub max_index_entries: usize,
    /// Images of a registry whose `ratelimit-remaining` (seen on any answer) is below this get a
    /// `rate-limited` warning.
    pub pull_budget_warn_below: u64,
}

impl Default for ResolutionSettings {
    fn default() -> Self {
        Self {
            budget_seconds: 8.0,
            per_image_timeout_seconds: 6.0,
            per_registry_concurrency: 16,
            connect_timeout_seconds: 3.0,
            read_timeout_seconds: 5.0,
            tag_ttl_seconds: 300,
            not_found_ttl_seconds: 30,
            kubernetes_ttl_seconds: 30,
            cache_max_bytes: 64 * 1024 * 1024,
            max_manifest_bytes: 4 * 1024 * 1024,
            max_index_entries: 1024,
            pull_budget_warn_below: 20,
        }
    }
}

/// HTTP server limits; each key defaults on its own.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerSettings {
    /// Largest request body accepted, in bytes.
    #[schemars(range(min = 1024, max = 1073741824))]
    pub max_request_bytes: usize,
    /// How long a client may take to send the request headers.
    #[schemars(range(min = 1, max = 3600))]
    pub header_read_timeout_seconds: u64,
    /// How long the TLS handshake may take.
    #[schemars(range(min = 1, max = 3600))]
    pub handshake_timeout_seconds: u64,
    /// How often policy and certificate files are checked for changes.
    #[schemars(range(min = 1, max = 3600))]
    pub reload_interval_seconds: u64,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[schemars(range(max = 3600))]
    pub shutdown_grace_seconds: u64,
    /// How long a client may take to send the whole request body (slow bodies are cut).
    #[schemars(range(min = 1, max = 3600))]
    pub body_read_timeout_seconds: u64,
    /// An open connection with no request in flight is closed after this (keep-alive and HTTP/2).
    #[schemars(range(min = 1, max = 86400))]
    pub idle_timeout_seconds: u64,
    /// Connections open at once; new ones beyond are closed at once, so file descriptors never run out.
    #[schemars(range(min = 1, max = 1000000))]
    pub max_connections: usize,
    /// Requests in flight on one HTTP/2 connection.
    #[schemars(range(min = 1, max = 10000))]
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 keep-alive pings this often; a peer that does not answer within 10 s is dropped.
    #[schemars(range(min = 1, max = 3600))]
    pub http2_keepalive_interval_seconds: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            header_read_timeout_seconds: 10,
            handshake_timeout_seconds: 10,
            reload_interval_seconds: 2,
            shutdown_grace_seconds: 25,
            body_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            max_connections: 1000,
            http2_max_concurrent_streams: 250,
            http2_keepalive_interval_seconds: 20,
        }
    }
}

/// Why the config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{file}: not valid YAML: {reason}")]
    Yaml { file: PathBuf, reason: String },
    /// A key is unknown, misspelled or has a value of the wrong type or range.
    #[error("{file}: {key}: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

impl Settings {
    /// The node platforms of `nodePlatforms`, and the Windows builds its entries name.
    pub fn nodes(&self) -> (Vec<Platform>, crate::platform::WindowsBuilds) {
        crate::platform::windows::split_node_platforms(&self.node_platforms)
    }

    /// Read and validate a config file.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(file, &text)
    }

    /// Validate the text of a config file; `file` is only used in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value =
            serde_saphyr::from_str_with_options(text, crate::yaml::options()).map_err(|e| {
                ConfigError::Yaml {
                    file: file.to_owned(),
                    reason: crate::yaml::describe(&e, 0),
                }
            })?;
        if value.is_null() {
            return Ok(Self::default());
        }
        let settings: Self =
            crate::yaml::typed(&value).map_err(|(key, reason)| ConfigError::Invalid {
                file: file.to_owned(),
                key,
                reason,
            })?;
        limits::check(&settings).map_err(|(key, reason)| ConfigError::Invalid {
            file: file.to_owned(),
            key,
            reason,
        })?;
        Ok(settings)
    }
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files, reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed CA and serving certificate generated at start-up into this directory.
    Generate { dir: PathBuf },
}

/// How pull secrets and ServiceAccounts are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeApi {
    /// In-cluster config, else `KUBECONFIG` / `~/.kube/config`, else none.
    Infer,
    /// This kubeconfig file (an error if unusable).
    Kubeconfig(PathBuf),
    /// No API: pull-secret checks are reported as not verifiable.
    Off,
}

/// Everything `serve` runs with, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// How to reach the Kubernetes API for pull secrets.
    pub kube_api: KubeApi,
    pub tls: TlsSource,
    /// `--policies`; `None`: `./policies` when it exists, else the built-in policy.
    pub policies: Option<PathBuf>,
    pub settings: Settings,
    pub log_format: LogFormat,
}

impl ServerSettings {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_seconds)
    }
    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_interval_seconds)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_seconds)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }
    pub fn http2_keepalive_interval(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_interval_seconds)
    }
}

impl ResolutionSettings {
    pub fn budget(&self) -> Duration {
        Duration::from_secs_f64(self.budget_seconds)
    }
    pub fn per_image_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.per_image_timeout_seconds)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_seconds)
    }
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.read_timeout_seconds)
    }
    pub fn kubernetes_ttl(&self) -> Duration {
        Duration::from_secs(self.kubernetes_ttl_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(
            Settings::parse(Path::new("c.yaml"), "").expect("valid"),
            Settings::default()
        );
    }

    #[test]
    fn keys_default_individually() {
        let s =
            Settings::parse(Path::new("c.yaml"), "server: {maxRequestBytes: 2048}").expect("valid");
        assert_eq!(s.server.max_request_bytes, 2048);
        assert_eq!(s.server.header_read_timeout_seconds, 10);
    }

    #[rstest]
    #[case::unknown_top("serverz: {}", "c.yaml: serverz")]
    #[case::unknown_nested("server: {maxRequestByte: 5}", "c.yaml: server")]
    #[case::wrong_type("server: {maxRequestBytes: lots}", "c.yaml: server.maxRequestBytes")]
    #[case::too_small(
        "server: {maxRequestBytes: 10}",
        "c.yaml: server.maxRequestBytes: must be at least 1024"
    )]
    fn invalid_files_name_the_key(#[case] text: &str, #[case] expected: &str) {
        let err = Settings::parse(Path::new("c.yaml"), text).expect_err("invalid");
        assert!(err.to_string().starts_with(expected), "{err}");
    }

    #[rstest]
    #[case::scheme_in_key("https://r.example.com", "it has a URL scheme")]
    #[case::path_in_key("r.example.com/team", "it has a path")]
    #[case::bad_port_in_key("r.example.com:http", "has a port that is not a number")]
    #[case::empty_key("''", "it is empty")]
    fn bad_registry_key_is_rejected(#[case] key: &str, #[case] reason: &str) {
        let text = format!("registries:\n  {key}: {{insecure: true}}\n");
        let err = Settings::parse(Path::new("c.yaml"), &text).expect_err("bad key");
        let err = err.to_string();
        assert!(err.starts_with("c.yaml: registries"), "{err}");
        assert!(
            err.contains("is not a registry host as in image references"),
            "{err}"
        );
        assert!(err.ends_with(reason), "{err}");
    }
}
