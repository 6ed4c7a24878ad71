//! The only place that assembles concrete types from [`Settings`]: registry hosts (and their CA files)
//! loaded once, the registry client, the caches, and the pull-credential chain with one precedence for
//! every mode — the pod's secrets, else its ServiceAccount's, then node credentials — injecting what
//! differs between modes:
//!
//! - `serve`: Secrets and ServiceAccounts through the Kubernetes API, `nodeCredentials` from settings;
//! - `check`: Secrets and ServiceAccounts from the input manifests, the local docker config (and its
//!   credential helpers) standing in for the nodes' credentials, and the optional on-disk cache.
//!
//! Every part registers its metrics on the registry handed in; nothing falls back to a hidden one.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

use crate::config::{ResolutionSettings, Settings};
use crate::credentials::{
    CredentialSource, DockerConfig, KubeCredentialSource, KubeMetrics, LocalConfigError,
    LocalDockerConfig, ManifestCredentials, local_credentials,
};
use crate::registry::cache::disk::{CacheDirError, DiskCache};
use crate::registry::cache::{CacheMetrics, CacheSettings, CachedResolver};
use crate::registry::hosts::{HostsError, RegistryHosts};
use crate::registry::oci::{OciResolver, Timeouts};
use crate::registry::{ImageResolver, RegistryMetrics};
use crate::resolve::{ResolveSettings, Resolver, Updates};

/// Why resolution could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Registry settings or containerd hosts files are invalid.
    #[error(transparent)]
    Hosts(#[from] HostsError),
    /// The node credentials file is unreadable or malformed.
    #[error("nodeCredentials {}: {reason}", file.display())]
    NodeCredentials { file: PathBuf, reason: String },
    /// The local docker config (`pullgate check`) is unreadable or malformed.
    #[error(transparent)]
    DockerConfig(#[from] LocalConfigError),
    /// The cache directory (`pullgate check --cache-dir`) cannot be created or read.
    #[error(transparent)]
    CacheDir(#[from] CacheDirError),
}

/// A resolver and the handle that changes its node platforms and pull budgets.
#[derive(Debug)]
pub struct Wired {
    pub resolver: Resolver,
    pub updates: Updates,
    /// The registry endpoints the resolver uses (budget probes reach registries through them too).
    pub hosts: Arc<RegistryHosts>,
}

/// `serve`'s resolver: pull secrets and ServiceAccounts read through `kube` when an API is available
/// (otherwise pull-secret checks are reported as not verifiable), node credentials from `nodeCredentials`.
pub fn serve(
    settings: &Settings,
    kube: Option<kube::Client>,
    metrics: &mut Registry,
) -> Result<Wired, SetupError> {
    let hosts = Arc::new(RegistryHosts::load(
        &settings.registries,
        settings.containerd_hosts_dir.as_deref(),
    )?);
    let oci: Arc<dyn ImageResolver> = Arc::new(oci_resolver(settings, hosts.clone(), metrics));
    let node_credentials = settings
        .node_credentials
        .as_deref()
        .map(node_credentials)
        .transpose()?;
    let kube_metrics = Arc::new(KubeMetrics::register(metrics));
    let credentials = kube.map(|client| {
        Arc::new(KubeCredentialSource::new(
            client,
            settings.resolution.kubernetes_ttl(),
            kube_metrics,
        )) as Arc<dyn CredentialSource>
    });
    let (resolver, updates) = assemble(settings, oci, credentials, node_credentials, metrics);
    Ok(Wired {
        resolver,
        updates,
        hosts,
    })
}

/// How `pullgate check` may reach registries (absent with `--offline`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAccess {
    /// The local docker config whose credentials stand in for the nodes'.
    pub docker_config: LocalDockerConfig,
    /// Where `docker-credential-*` helpers are looked up (a `PATH` value).
    pub helper_path: Option<OsString>,
    /// Where registry answers that stay true are kept between runs.
    pub cache_dir: Option<PathBuf>,
}

/// `check`'s resolver, and what to tell the user about how it was made.
#[derive(Debug)]
pub struct CheckResolver {
    pub resolver: Resolver,
    /// The on-disk cache, when `--cache-dir` was given (its write errors are reported after the run).
    pub disk: Option<Arc<DiskCache>>,
    /// One line per credential helper that failed or setting that was overridden.
    pub notices: Vec<String>,
}

/// `check`'s resolver, built as `serve`'s from the same settings (registry hosts, CAs, mirrors,
/// timeouts, caches), with pull secrets and ServiceAccounts from the input and, as the nodes'
/// credentials, the local docker config (else the settings' `nodeCredentials`). `registries` are the
/// registry hosts that will be asked: only those are asked of credential helpers.
pub async fn check(
    settings: &Settings,
    access: &RegistryAccess,
    manifests: ManifestCredentials,
    registries: &BTreeSet<String>,
    metrics: &mut Registry,
) -> Result<CheckResolver, SetupError> {
    let hosts = Arc::new(RegistryHosts::load(
        &settings.registries,
        settings.containerd_hosts_dir.as_deref(),
    )?);
    let oci: Arc<dyn ImageResolver> = Arc::new(oci_resolver(settings, hosts, metrics));
    let disk = match &access.cache_dir {
        Some(dir) => Some(Arc::new(DiskCache::open(dir, oci.clone())?)),
        None => None,
    };
    let below_memory = match &disk {
        Some(disk) => disk.clone() as Arc<dyn ImageResolver>,
        None => oci,
    };
    let local = local_credentials(
        &access.docker_config,
        access.helper_path.as_deref(),
        registries,
    )
    .await?;
    let mut notices = local.notices;
    let node_credentials = match (local.config, &settings.node_credentials) {
        (Some(local), Some(file)) => {
            notices.push(format!(
                "nodeCredentials {} is not used: the local docker config {} stands in for the nodes' credentials",
                file.display(),
                local.path().map(|p| p.display().to_string()).unwrap_or_default()
            ));
            Some(local)
        }
        (Some(local), None) => Some(local),
        (None, Some(file)) => Some(node_credentials(file)?),
        (None, None) => None,
    };
    let credentials: Arc<dyn CredentialSource> = Arc::new(manifests);
    let (resolver, _updates) = assemble(
        settings,
        below_memory,
        Some(credentials),
        node_credentials,
        metrics,
    );
    Ok(CheckResolver {
        resolver,
        disk,
        notices,
    })
}

/// The registry client for these settings' timeouts, over `hosts`.
fn oci_resolver(
    settings: &Settings,
    hosts: Arc<RegistryHosts>,
    metrics: &mut Registry,
) -> OciResolver {
    let r = &settings.resolution;
    let timeouts = Timeouts {
        connect: r.connect_timeout(),
        read: r.read_timeout(),
    };
    OciResolver::new(
        hosts,
        timeouts,
        Arc::new(RegistryMetrics::register(metrics)),
    )
}

/// The in-memory caches in front of `registry`, then the resolver with its credential chain.
fn assemble(
    settings: &Settings,
    registry: Arc<dyn ImageResolver>,
    credentials: Option<Arc<dyn CredentialSource>>,
    node_credentials: Option<DockerConfig>,
    metrics: &mut Registry,
) -> (Resolver, Updates) {
    let r = &settings.resolution;
    let cached = CachedResolver::new(
        registry,
        cache_settings(r),
        Arc::new(CacheMetrics::register(metrics)),
    );
    Resolver::new(
        Arc::new(cached),
        credentials,
        node_credentials.map(Arc::new),
        settings.node_platforms.clone(),
        resolve_settings(r),
    )
}

/// The cache lifetimes of the settings.
pub fn cache_settings(r: &ResolutionSettings) -> CacheSettings {
    CacheSettings::new(
        Duration::from_secs(r.tag_ttl_seconds),
        Duration::from_secs(r.not_found_ttl_seconds),
        r.cache_entries,
    )
}

/// The deadlines and parallelism of the settings.
pub fn resolve_settings(r: &ResolutionSettings) -> ResolveSettings {
    ResolveSettings {
        budget: r.budget(),
        per_image: r.per_image_timeout(),
        per_registry: r.per_registry_concurrency,
    }
}

/// Node-level credentials from a docker config file.
fn node_credentials(file: &Path) -> Result<DockerConfig, SetupError> {
    DockerConfig::from_file(file).map_err(|e| SetupError::NodeCredentials {
        file: file.to_owned(),
        reason: e.to_string(),
    })
}
