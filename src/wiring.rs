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

use crate::config::{NODE_IDENTITY_REGISTRIES, ResolutionSettings, Settings};
use crate::credentials::{
    CredentialProviders, CredentialSource, DockerConfig, KubeCredentialSource, KubeMetrics,
    LocalConfigError, LocalDockerConfig, ManifestCredentials, ProviderConfigError,
    local_credentials,
};
use crate::registry::budget::RequestBudget;
use crate::registry::cache::disk::{CacheDirError, DiskCache};
use crate::registry::cache::{CacheMetrics, CacheSettings, CachedResolver};
use crate::registry::client::http::{Http, Timeouts};
use crate::registry::client::{Client, Limits};
use crate::registry::hosts::{HostsError, RegistryHosts};
use crate::registry::net::{Loopback, NetworkPolicy};
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
    /// The credential provider configuration or a plugin is unusable.
    #[error(transparent)]
    Providers(#[from] ProviderConfigError),
}

/// A resolver, the handle that changes its node platforms and pull budgets, and its registry client.
#[derive(Debug)]
pub struct Wired {
    pub resolver: Resolver,
    pub updates: Updates,
    /// The registry client under the caches (budget probes talk to registries through it too).
    pub client: Arc<Client>,
}

/// `serve`'s resolver: pull secrets and ServiceAccounts read through `kube` when an API is available
/// (otherwise pull-secret checks are reported as not verifiable), node credentials from `nodeCredentials`.
pub fn serve(
    settings: &Settings,
    kube: Option<kube::Client>,
    metrics: &mut Registry,
) -> Result<Wired, SetupError> {
    // Inside a cluster the webhook's loopback is its own pod, never what a node means by `localhost`.
    through_api(settings, kube, Loopback::Refused, None, metrics)
}

/// The audit's resolver: `serve`'s credential chain (pull secrets and ServiceAccounts through the API),
/// sending each registry at most what `budget` allows. `pullgate audit` runs on an operator's machine
/// or in CI, where a local registry is normal (`Loopback::Allowed`); the continuous audit runs in the
/// webhook's pod (`Loopback::Refused`, as `serve`).
pub fn audit(
    settings: &Settings,
    kube: kube::Client,
    budget: Arc<RequestBudget>,
    loopback: Loopback,
    metrics: &mut Registry,
) -> Result<Wired, SetupError> {
    through_api(settings, Some(kube), loopback, Some(budget), metrics)
}

fn through_api(
    settings: &Settings,
    kube: Option<kube::Client>,
    loopback: Loopback,
    budget: Option<Arc<RequestBudget>>,
    metrics: &mut Registry,
) -> Result<Wired, SetupError> {
    let updates = updates(settings);
    let mut client = client(settings, loopback, &updates, metrics)?;
    if let Some(budget) = budget {
        client = client.with_request_budget(budget);
    }
    let client = Arc::new(client);
    let node_credentials = settings
        .node_credentials
        .as_deref()
        .map(node_credentials)
        .transpose()?;
    let kube_metrics = Arc::new(KubeMetrics::register(metrics));
    let providers = providers(settings)?;
    let credentials = kube.map(|client| {
        Arc::new(KubeCredentialSource::new(
            client,
            settings.resolution.kubernetes_ttl(),
            kube_metrics,
        )) as Arc<dyn CredentialSource>
    });
    let resolver = assemble(
        settings,
        client.clone(),
        credentials,
        node_credentials,
        &updates,
        metrics,
    )
    .with_node_identity(providers, node_identity_registries(settings));
    Ok(Wired {
        resolver,
        updates,
        client,
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
    let updates = updates(settings);
    // `check` runs on the user's or CI's own machine, where a local registry is normal.
    let client: Arc<dyn ImageResolver> =
        Arc::new(client(settings, Loopback::Allowed, &updates, metrics)?);
    let disk = match &access.cache_dir {
        Some(dir) => Some(Arc::new(DiskCache::open(dir, client.clone())?)),
        None => None,
    };
    let below_memory = match &disk {
        Some(disk) => disk.clone() as Arc<dyn ImageResolver>,
        None => client,
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
    let resolver = assemble(
        settings,
        below_memory,
        Some(credentials),
        node_credentials,
        &updates,
        metrics,
    )
    .with_node_identity(providers(settings)?, node_identity_registries(settings));
    Ok(CheckResolver {
        resolver,
        disk,
        notices,
    })
}

/// Node platforms from the settings, budget thresholds from `rateLimitProbes` and
/// `resolution.pullBudgetWarnBelow`.
fn updates(settings: &Settings) -> Updates {
    let each = settings
        .rate_limit_probes
        .iter()
        .map(|probe| (probe.registry.to_string(), probe.warn_below))
        .collect();
    let (platforms, builds) = settings.nodes();
    let updates = Updates::new(
        platforms,
        (each, settings.resolution.pull_budget_warn_below),
    );
    updates.set_windows_builds(builds);
    updates
}

/// The registry client: registry hosts (and CA files) loaded once, the network policy, the limits and
/// timeouts of the settings; budgets it sees go to `updates`.
fn client(
    settings: &Settings,
    loopback: Loopback,
    updates: &Updates,
    metrics: &mut Registry,
) -> Result<Client, SetupError> {
    let hosts = Arc::new(RegistryHosts::load(
        &settings.registries,
        settings.containerd_hosts_dir.as_deref(),
    )?);
    let r = &settings.resolution;
    let http = Http::new(
        Arc::new(NetworkPolicy::new(&settings.network, loopback)),
        Timeouts {
            connect: r.connect_timeout(),
            read: r.read_timeout(),
        },
    );
    let limits = Limits {
        manifest_bytes: r.max_manifest_bytes,
        index_entries: r.max_index_entries,
    };
    Ok(Client::new(
        hosts,
        http,
        limits,
        Arc::new(RegistryMetrics::register(metrics)),
        Some(Arc::new(updates.clone())),
    ))
}

/// The in-memory caches in front of `registry`, then the resolver with its credential chain.
fn assemble(
    settings: &Settings,
    registry: Arc<dyn ImageResolver>,
    credentials: Option<Arc<dyn CredentialSource>>,
    node_credentials: Option<DockerConfig>,
    updates: &Updates,
    metrics: &mut Registry,
) -> Resolver {
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
        updates,
        resolve_settings(r),
    )
}

/// The credential provider plugins of the settings, checked now.
fn providers(settings: &Settings) -> Result<Option<Arc<CredentialProviders>>, SetupError> {
    let Some(p) = &settings.credential_providers else {
        return Ok(None);
    };
    let providers = CredentialProviders::load(&p.config, &p.bin_dir, p.timeout())?;
    Ok(Some(Arc::new(providers)))
}

/// The built-in node-identity registries and the settings' own.
fn node_identity_registries(settings: &Settings) -> Vec<String> {
    NODE_IDENTITY_REGISTRIES
        .iter()
        .map(|p| (*p).to_owned())
        .chain(settings.node_authenticated_registries.iter().cloned())
        .collect()
}

/// The cache lifetimes of the settings.
pub fn cache_settings(r: &ResolutionSettings) -> CacheSettings {
    CacheSettings::new(
        Duration::from_secs(r.tag_ttl_seconds),
        Duration::from_secs(r.not_found_ttl_seconds),
        r.cache_max_bytes,
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
