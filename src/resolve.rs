//! Resolving a pod's images against their registries, as the node would pull them: the pod's pull
//! credentials in kubelet's order, every image in parallel (bounded per registry), each within the
//! admission's time budget. The result is plain data ([`Resolved`]) for `policy::evaluate`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::credentials::{CredentialSource, DockerConfig, PodCredentials};
use crate::facts::{
    AuthAttempt, Budget, Facts, FailureClass, ImageStatus, ResolveError, Resolved,
    SecretProblemKind,
};
use crate::image::ImageRef;
use crate::platform::{self, Platform};
use crate::policy::RegistryNeed;
use crate::registry::ImageResolver;

/// Time limits and parallelism of resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveSettings {
    /// The whole admission answers within this (keep it below the webhook's `timeoutSeconds`).
    pub budget: Duration,
    /// One image's resolution (all its credentials and endpoints) may take at most this.
    pub per_image: Duration,
    /// At most this many lookups run at once against one registry.
    pub per_registry: usize,
}

impl Default for ResolveSettings {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(8),
            per_image: Duration::from_secs(6),
            per_registry: 16,
        }
    }
}

/// Everything resolution needs, built once at start-up.
pub struct Resolver {
    images: Arc<dyn ImageResolver>,
    credentials: Option<Arc<dyn CredentialSource>>,
    node_credentials: Option<Arc<DockerConfig>>,
    /// Platforms of the cluster's nodes: from config, replaced by what Node labels say when discovered.
    node_platforms: RwLock<Vec<Platform>>,
    settings: ResolveSettings,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Watched pull budgets that are below their threshold, by registry.
    low_budgets: RwLock<BTreeMap<String, Budget>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("kubernetes_api", &self.credentials.is_some())
            .field("node_credentials", &self.node_credentials.is_some())
            .field("node_platforms", &self.node_platforms())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn new(
        images: Arc<dyn ImageResolver>,
        credentials: Option<Arc<dyn CredentialSource>>,
        node_credentials: Option<Arc<DockerConfig>>,
        node_platforms: Vec<Platform>,
        settings: ResolveSettings,
    ) -> Self {
        Self {
            images,
            credentials,
            node_credentials,
            node_platforms: RwLock::new(node_platforms),
            settings,
            limits: Mutex::new(HashMap::new()),
            low_budgets: RwLock::new(BTreeMap::new()),
        }
    }

    /// Record a registry's pull budget: below `warn_below`, its images get a `rate-limited` warning.
    pub fn set_budget(&self, registry: &str, budget: Budget, warn_below: u64) {
        let mut low = match self.low_budgets.write() {
            Ok(low) => low,
            Err(poisoned) => poisoned.into_inner(),
        };
        if budget.remaining < warn_below {
            low.insert(registry.to_owned(), budget);
        } else {
            low.remove(registry);
        }
    }

    /// The node platforms in use.
    pub fn node_platforms(&self) -> Vec<Platform> {
        match self.node_platforms.read() {
            Ok(platforms) => platforms.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replace the node platforms (from Node labels). An empty list is ignored: every pod must land somewhere.
    pub fn set_node_platforms(&self, platforms: Vec<Platform>) {
        if platforms.is_empty() {
            return;
        }
        match self.node_platforms.write() {
            Ok(mut current) => *current = platforms,
            Err(poisoned) => *poisoned.into_inner() = platforms,
        }
    }

    /// The concurrency limit of one registry.
    fn limit(&self, registry: &str) -> Arc<Semaphore> {
        let mut limits = match self.limits.lock() {
            Ok(limits) => limits,
            Err(poisoned) => poisoned.into_inner(),
        };
        limits
            .entry(registry.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_registry.max(1))))
            .clone()
    }

    /// Ask the registries about every container that `needs` says to, within the budget.
    pub async fn resolve(&self, spec: &PodSpec, facts: &Facts, needs: &[RegistryNeed]) -> Resolved {
        let started = Instant::now();
        let deadline = started + self.settings.budget;
        let wanted: Vec<(&str, &ImageRef, RegistryNeed)> = facts
            .containers
            .iter()
            .zip(needs)
            .filter(|(_, need)| need.resolve)
            .filter_map(|(c, need)| {
                Some((c.spec.image_path.as_str(), c.image.as_ref().ok()?, *need))
            })
            .collect();
        let mut resolved = Resolved::default();
        if wanted.is_empty() {
            return resolved;
        }
        let pod_platforms = platform::pod_platforms(spec, &self.node_platforms());
        let gathered = tokio::time::timeout_at(
            deadline,
            PodCredentials::gather(
                self.credentials.as_deref(),
                &facts.namespace,
                spec,
                self.node_credentials.as_deref(),
            ),
        )
        .await;
        let Ok(credentials) = gathered else {
            for (path, _, _) in wanted {
                resolved
                    .images
                    .insert(path.to_owned(), ImageStatus::TimedOut(self.settings.budget));
            }
            return resolved;
        };
        let lookups = wanted.iter().map(|(path, image, need)| {
            let credentials = &credentials;
            let pod_platforms = &pod_platforms;
            async move {
                let limit = self.limit(image.registry());
                let own_deadline = (Instant::now() + self.settings.per_image).min(deadline);
                let work = async {
                    let _permit = limit.acquire().await;
                    self.resolve_one(image, credentials, need.platforms.then_some(pod_platforms))
                        .await
                };
                let status = tokio::time::timeout_at(own_deadline, work)
                    .await
                    .unwrap_or(ImageStatus::TimedOut(own_deadline - started));
                ((*path).to_owned(), status)
            }
        });
        resolved.images = futures::future::join_all(lookups)
            .await
            .into_iter()
            .collect();
        if let Ok(low) = self.low_budgets.read() {
            resolved.low_budgets = wanted
                .iter()
                .filter_map(|(_, image, _)| {
                    let registry = image.registry();
                    Some((registry.to_owned(), *low.get(registry)?))
                })
                .collect();
        }
        resolved.pod_platforms = Some(pod_platforms);
        resolved
    }

    /// One image: try the matching credentials in kubelet's order (anonymous when none match), then read
    /// the platforms of what was found when asked to.
    async fn resolve_one(
        &self,
        image: &ImageRef,
        credentials: &PodCredentials,
        pod_platforms: Option<&platform::PodPlatforms>,
    ) -> ImageStatus {
        let matching = credentials.for_image(image);
        let mut attempts = Vec::new();
        let mut found = None;
        if matching.candidates.is_empty() {
            match self.images.digest(image, None).await {
                Ok(digest) => found = Some((digest, None)),
                Err(error) if error.class() == FailureClass::Auth => {
                    return ImageStatus::AuthFailed {
                        attempts,
                        problems: matching.problems,
                        anonymous: Some(error),
                        api_unavailable: credentials.api_unavailable(),
                    };
                }
                Err(error) => return failure(error),
            }
        } else {
            for candidate in &matching.candidates {
                match self.images.digest(image, Some(candidate)).await {
                    Ok(digest) => {
                        found = Some((digest, Some(candidate)));
                        break;
                    }
                    Err(error) if error.class() == FailureClass::Auth => {
                        attempts.push(AuthAttempt {
                            origin: candidate.origin.clone(),
                            error,
                        })
                    }
                    Err(error) => return failure(error),
                }
            }
        }
        let Some((digest, credential)) = found else {
            return ImageStatus::AuthFailed {
                attempts,
                problems: matching.problems,
                anonymous: None,
                api_unavailable: credentials.api_unavailable(),
            };
        };
        let platforms = match pod_platforms {
            Some(pod) => Some(
                self.images
                    .platforms(image, &digest, credential)
                    .await
                    .map(|offered| platform::compare(&offered, pod)),
            ),
            None => None,
        };
        // A secret without an entry for this registry is normal when another one has it; an unreadable
        // secret (no API) says nothing about an image that pulled (start-up already logs it).
        let secret_problems = matching
            .problems
            .into_iter()
            .filter(|p| {
                !p.is_missing_default_service_account()
                    && !matches!(
                        p.kind,
                        SecretProblemKind::NoEntryForRegistry { .. }
                            | SecretProblemKind::ApiUnavailable { .. }
                    )
            })
            .collect();
        ImageStatus::Found {
            digest: digest.0,
            platforms,
            secret_problems,
        }
    }
}

/// Why resolution could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Registry settings or containerd hosts files are invalid.
    #[error(transparent)]
    Hosts(#[from] crate::registry::hosts::HostsError),
    /// The node credentials file is unreadable or malformed.
    #[error("nodeCredentials {file}: {reason}")]
    NodeCredentials {
        file: std::path::PathBuf,
        reason: String,
    },
}

impl Resolver {
    /// Build the production resolver from settings: registry endpoints (with CAs validated now), the
    /// caches, node credentials, and pull-secret lookups through `kube` when an API is available.
    pub fn from_settings(
        settings: &crate::config::Settings,
        kube: Option<kube::Client>,
    ) -> Result<Self, SetupError> {
        Self::from_settings_with_metrics(settings, kube, Arc::default())
    }

    /// [`Resolver::from_settings`], recording registry requests in `metrics`.
    pub fn from_settings_with_metrics(
        settings: &crate::config::Settings,
        kube: Option<kube::Client>,
        metrics: Arc<crate::telemetry::metrics::Metrics>,
    ) -> Result<Self, SetupError> {
        let oci = Arc::new(registry_resolver(settings, metrics.clone())?);
        let cached = cached(settings, oci, metrics.clone());
        let node_credentials = match &settings.node_credentials {
            Some(file) => Some(Arc::new(node_credentials(file)?)),
            None => None,
        };
        let credentials = kube.map(|client| {
            Arc::new(
                crate::credentials::KubeCredentialSource::new(
                    client,
                    Duration::from_secs(settings.resolution.kubernetes_ttl_seconds),
                )
                .with_metrics(metrics.clone()),
            ) as Arc<dyn CredentialSource>
        });
        Ok(Self::new(
            Arc::new(cached),
            credentials,
            node_credentials,
            settings.node_platforms.clone(),
            ResolveSettings::from(&settings.resolution),
        ))
    }
}

/// The registry-facing resolver for these settings: endpoints (CAs validated now), timeouts, metrics.
/// Shared by `serve` and `check`.
pub fn registry_resolver(
    settings: &crate::config::Settings,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
) -> Result<crate::registry::oci::OciResolver, SetupError> {
    use crate::registry::hosts::RegistryHosts;
    use crate::registry::oci::{OciResolver, Timeouts};
    let r = &settings.resolution;
    let hosts = RegistryHosts::load(
        &settings.registries,
        settings.containerd_hosts_dir.as_deref(),
    )?;
    Ok(OciResolver::new(
        Arc::new(hosts),
        Timeouts {
            connect: r.connect_timeout(),
            read: r.read_timeout(),
        },
    )
    .with_metrics(metrics))
}

/// The in-memory caches in front of `inner`, with the settings' lifetimes.
pub fn cached(
    settings: &crate::config::Settings,
    inner: Arc<dyn ImageResolver>,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
) -> crate::cache::CachedResolver {
    use crate::cache::{CacheSettings, CachedResolver};
    let r = &settings.resolution;
    CachedResolver::new(
        inner,
        CacheSettings {
            tag_ttl: Duration::from_secs(r.tag_ttl_seconds),
            not_found_ttl: Duration::from_secs(r.not_found_ttl_seconds),
            max_entries: r.cache_entries,
            ..CacheSettings::default()
        },
    )
    .with_metrics(metrics)
}

/// Node-level credentials from a docker config file.
pub fn node_credentials(file: &std::path::Path) -> Result<DockerConfig, SetupError> {
    DockerConfig::from_file(file).map_err(|e| SetupError::NodeCredentials {
        file: file.to_owned(),
        reason: e.to_string(),
    })
}

impl From<&crate::config::ResolutionSettings> for ResolveSettings {
    fn from(r: &crate::config::ResolutionSettings) -> Self {
        Self {
            budget: r.budget(),
            per_image: r.per_image_timeout(),
            per_registry: r.per_registry_concurrency,
        }
    }
}

fn failure(error: ResolveError) -> ImageStatus {
    match error {
        ResolveError::NotFound(missing) => ImageStatus::NotFound(missing),
        other => ImageStatus::Failed(other),
    }
}
