//! Resolving a pod's images against their registries, as the node would pull them: the pod's pull
//! credentials in kubelet's order, every image in parallel (bounded per registry), each within the
//! admission's time budget. The result is plain data ([`Resolved`]) for `policy::evaluate`.
//!
//! What server tasks learn while the resolver runs — the cluster's node platforms and low pull budgets —
//! reaches it through [`Updates`] (`tokio::sync::watch` channels), never through shared locks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::credentials::{
    Asker, Credential, CredentialProviders, CredentialSource, DockerConfig, PodCredentials,
    ProviderCredentials, keyring_matches,
};
use crate::facts::{
    AuthAttempt, Budget, Facts, FailureClass, ImageStatus, Missing, RegistryNeed, ResolveError,
    Resolved, SecretProblemKind,
};
use crate::image::ImageRef;
use crate::platform::{self, Platform, WindowsBuilds};
use crate::registry::RequestCounter;
use crate::registry::budget::BudgetSink;
use crate::registry::cache::{CachedResolver, WarmNeed};

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

/// Everything resolution needs, built once at start-up.
pub struct Resolver {
    images: Arc<CachedResolver>,
    credentials: Option<Arc<dyn CredentialSource>>,
    node_credentials: Option<Arc<DockerConfig>>,
    /// Platforms of the cluster's nodes: from config, replaced by what Node labels say when discovered.
    node_platforms: watch::Receiver<Vec<Platform>>,
    /// The Windows builds of the cluster's Windows nodes, likewise.
    windows_builds: watch::Receiver<WindowsBuilds>,
    settings: ResolveSettings,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Watched pull budgets that are below their threshold, by registry.
    low_budgets: watch::Receiver<BTreeMap<String, Budget>>,
    /// kubelet credential provider plugins, as the nodes run them.
    providers: Option<Arc<CredentialProviders>>,
    /// Registries nodes usually authenticate to by cloud identity (kubelet `matchImages` globs).
    node_identity_registries: Vec<String>,
}

/// The sending side of what changes while the resolver runs: node platforms (discovery) and pull
/// budgets (probes). Cheap to clone; every clone feeds the same resolver.
#[derive(Debug, Clone)]
pub struct Updates {
    node_platforms: watch::Sender<Vec<Platform>>,
    windows_builds: watch::Sender<WindowsBuilds>,
    low_budgets: watch::Sender<BTreeMap<String, Budget>>,
    /// Below how many remaining pulls a registry's images are warned about: per registry
    /// (`rateLimitProbes[].warnBelow`), else `resolution.pullBudgetWarnBelow`.
    warn_below: Arc<(BTreeMap<String, u64>, u64)>,
}

impl Updates {
    /// Start with `node_platforms` and no low budget; a registry's budget is low below
    /// `warn_below.0[registry]`, else below `warn_below.1`.
    pub fn new(node_platforms: Vec<Platform>, warn_below: (BTreeMap<String, u64>, u64)) -> Self {
        Self {
            node_platforms: watch::Sender::new(node_platforms),
            windows_builds: watch::Sender::new(WindowsBuilds::new()),
            low_budgets: watch::Sender::new(BTreeMap::new()),
            warn_below: Arc::new(warn_below),
        }
    }

    /// The node platforms in use.
    pub fn node_platforms(&self) -> Vec<Platform> {
        self.node_platforms.borrow().clone()
    }

    /// Replace the node platforms (from Node labels). An empty list is ignored: every pod must land
    /// somewhere.
    pub fn set_node_platforms(&self, platforms: Vec<Platform>) {
        if !platforms.is_empty() {
            self.node_platforms.send_replace(platforms);
        }
    }

    /// Replace the node platforms and, when any are known, the Windows nodes' builds (discovery): an
    /// empty list keeps what the settings say.
    pub fn set_nodes(&self, platforms: Vec<Platform>, builds: WindowsBuilds) {
        self.set_node_platforms(platforms);
        if !builds.is_empty() {
            self.set_windows_builds(builds);
        }
    }

    /// The Windows builds of the Windows nodes in use.
    pub fn windows_builds(&self) -> WindowsBuilds {
        self.windows_builds.borrow().clone()
    }

    /// Replace the Windows builds of the Windows nodes (from settings or Node labels).
    pub fn set_windows_builds(&self, builds: WindowsBuilds) {
        self.windows_builds.send_replace(builds);
    }

    /// The budget threshold of a registry.
    pub fn warn_below(&self, registry: &str) -> u64 {
        let (each, default) = &*self.warn_below;
        each.get(registry).copied().unwrap_or(*default)
    }

    /// Record a registry's pull budget: below `warn_below`, its images get a `rate-limited` warning.
    pub fn set_budget(&self, registry: &str, budget: Budget, warn_below: u64) {
        self.low_budgets.send_modify(|low| {
            if budget.remaining < warn_below {
                low.insert(registry.to_owned(), budget);
            } else {
                low.remove(registry);
            }
        });
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("kubernetes_api", &self.credentials.is_some())
            .field("node_credentials", &self.node_credentials.is_some())
            .field("node_platforms", &*self.node_platforms.borrow())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl BudgetSink for Updates {
    fn observed(&self, registry: &str, budget: Budget) {
        self.set_budget(registry, budget, self.warn_below(registry));
    }
}

impl Resolver {
    /// A resolver whose node platforms and pull budgets come from `updates`.
    pub fn new(
        images: Arc<CachedResolver>,
        credentials: Option<Arc<dyn CredentialSource>>,
        node_credentials: Option<Arc<DockerConfig>>,
        updates: &Updates,
        settings: ResolveSettings,
    ) -> Self {
        Self {
            images,
            credentials,
            node_credentials,
            node_platforms: updates.node_platforms.subscribe(),
            windows_builds: updates.windows_builds.subscribe(),
            settings,
            limits: Mutex::new(HashMap::new()),
            low_budgets: updates.low_budgets.subscribe(),
            providers: None,
            node_identity_registries: Vec::new(),
        }
    }

    /// Ask these credential provider plugins after pod and node credentials, as kubelet does; treat a
    /// refusal by a registry matching `node_identity_registries` (and no provider) as unverifiable.
    pub fn with_node_identity(
        mut self,
        providers: Option<Arc<CredentialProviders>>,
        node_identity_registries: Vec<String>,
    ) -> Self {
        self.providers = providers;
        self.node_identity_registries = node_identity_registries;
        self
    }

    /// Why a refusal by `image`'s registry says nothing about the nodes, when it usually authenticates them
    /// by their cloud identity and no credential provider configured here covers it.
    fn node_identity(&self, image: &ImageRef) -> Option<String> {
        if self.providers.as_ref().is_some_and(|p| p.covers(image)) {
            return None;
        }
        let name = image.name();
        self.node_identity_registries
            .iter()
            .any(|pattern| keyring_matches(pattern, name))
            .then(|| {
                format!(
                    "nodes usually pull from {} with their cloud identity (a kubelet credential provider), which pullgate has not been given",
                    image.registry()
                )
            })
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
        let mut pod_platforms = platform::pod_platforms(spec, &self.node_platforms.borrow());
        if pod_platforms.has_windows() {
            let known = self.windows_builds.borrow();
            let candidates = &pod_platforms.candidates;
            pod_platforms.windows_builds =
                platform::windows::eligible_builds(spec, candidates, &known);
        }
        let mut gather = std::pin::pin!(PodCredentials::gather(
            self.credentials.as_deref(),
            &facts.namespace,
            spec,
            self.node_credentials.clone(),
        ));
        // Usually ready at once (the API's objects are watched, not fetched): no timer then.
        let gathered = match futures::poll!(gather.as_mut()) {
            std::task::Poll::Ready(credentials) => Ok(credentials),
            std::task::Poll::Pending => tokio::time::timeout_at(deadline, gather).await,
        };
        let Ok(credentials) = gathered else {
            for (path, _, _) in wanted {
                resolved
                    .images
                    .insert(path.to_owned(), ImageStatus::TimedOut(self.settings.budget));
            }
            return resolved;
        };
        if let Some(problem) = credentials.keyring_failure() {
            // kubelet fails before asking any registry: so does pullgate.
            for (path, _, _) in wanted {
                let status = ImageStatus::CredentialsUnbuildable(problem.clone());
                resolved.images.insert(path.to_owned(), status);
            }
            resolved.pod_platforms = Some(pod_platforms);
            return resolved;
        }
        // The fast path: every image answered by the caches alone, in turn, with no task, permit or
        // timer; whatever the caches do not hold goes the full way below.
        let mut asked = Vec::new();
        for (path, image, need) in &wanted {
            match self
                .cached_status(image, &credentials, &pod_platforms, *need)
                .await
            {
                Some(status) => {
                    resolved.images.insert((*path).to_owned(), status);
                }
                None => asked.push((*path, *image, *need)),
            }
        }
        let requests = RequestCounter::default();
        let lookups = asked.iter().map(|(path, image, need)| {
            let credentials = &credentials;
            let pod_platforms = &pod_platforms;
            let requests = &requests;
            async move {
                let limit = self.limit(image.registry());
                let own_deadline = (Instant::now() + self.settings.per_image).min(deadline);
                let work = async {
                    let _permit = limit.acquire().await;
                    self.resolve_one(image, credentials, pod_platforms, *need, requests)
                        .await
                };
                let status = tokio::time::timeout_at(own_deadline, work)
                    .await
                    .unwrap_or(ImageStatus::TimedOut(own_deadline - started));
                ((*path).to_owned(), status)
            }
        });
        if !asked.is_empty() {
            resolved
                .images
                .extend(futures::future::join_all(lookups).await);
        }
        // Where the registry could not be asked, what the API said about the secrets still stands.
        for (path, image, _) in &wanted {
            let unasked = match resolved.images.get(*path) {
                Some(ImageStatus::Failed(e)) => {
                    !matches!(e.class(), FailureClass::NotFound | FailureClass::Auth)
                }
                Some(ImageStatus::TimedOut(_)) => true,
                _ => false,
            };
            if !unasked {
                continue;
            }
            let problems = reportable(credentials.for_image(image).problems);
            if !problems.is_empty() {
                resolved
                    .unverified_secret_problems
                    .insert((*path).to_owned(), problems);
            }
        }
        let low = self.low_budgets.borrow();
        resolved.low_budgets = wanted
            .iter()
            .filter_map(|(_, image, _)| {
                let registry = image.registry();
                Some((registry.to_owned(), *low.get(registry)?))
            })
            .collect();
        resolved.pod_platforms = Some(pod_platforms);
        resolved.registry_calls = requests.get();
        resolved
    }

    /// One image: try the matching credentials in kubelet's order (anonymous when none match), then read
    /// the platforms and sizes of what was found when `need` asks for them.
    async fn resolve_one(
        &self,
        image: &ImageRef,
        credentials: &PodCredentials,
        pod_platforms: &platform::PodPlatforms,
        need: RegistryNeed,
        requests: &RequestCounter,
    ) -> ImageStatus {
        let matching = credentials.for_image(image);
        let want = need.platforms;
        // kubelet's order: the pod's (or its ServiceAccount's) secrets, the node's config, then the
        // credential provider plugins; anonymous only when none of them matches.
        let from_providers = match &self.providers {
            Some(providers) => {
                let asker = Asker {
                    namespace: credentials.namespace(),
                    service_account: credentials.service_account(),
                    source: self.credentials.as_deref(),
                };
                providers.credentials(image, &asker).await
            }
            None => ProviderCredentials::default(),
        };
        let mut candidates: Vec<Option<&Credential>> =
            matching.candidates.iter().map(Some).collect();
        for credential in &from_providers.credentials {
            let known = candidates.iter().flatten().any(|c| {
                c.username == credential.username && c.password() == credential.password()
            });
            if !known {
                candidates.push(Some(credential));
            }
        }
        if candidates.is_empty() {
            candidates.push(None);
        }
        let mut attempts = Vec::new();
        let mut anonymous = None;
        let mut found = None;
        for candidate in candidates {
            match self.images.lookup(image, candidate, want, requests).await {
                Ok(answer) => {
                    found = Some((answer, candidate));
                    break;
                }
                Err(error) if error.class() == FailureClass::Auth => match candidate {
                    Some(credential) => attempts.push(AuthAttempt {
                        origin: credential.origin.clone(),
                        error,
                    }),
                    None => anonymous = Some(error),
                },
                Err(ResolveError::NotFound(Missing::Manifest))
                    if need.suggest_tags && image.digest().is_none() =>
                {
                    // A definitive "no such tag": what tags there are, nearest first.
                    let missing = image.effective_tag().unwrap_or("latest");
                    let tags = self.images.tags(image, candidate, requests).await;
                    return ImageStatus::NotFound {
                        missing: Missing::Manifest,
                        suggestions: crate::image::suggest::nearby_tags(missing, &tags),
                    };
                }
                Err(error) => return failure(error),
            }
        }
        let Some((found, credential)) = found else {
            let unverifiable = if from_providers.failures.is_empty() {
                self.node_identity(image)
            } else {
                Some(from_providers.failures.join("; "))
            };
            return ImageStatus::AuthFailed {
                attempts,
                problems: matching.problems,
                anonymous,
                api_unavailable: credentials.api_unavailable(),
                unverifiable,
            };
        };
        let sizes = match need.sizes {
            true => Some(
                self.images
                    .sizes(
                        image,
                        &found,
                        credential,
                        &pod_platforms.candidates,
                        requests,
                    )
                    .await,
            ),
            false => None,
        };
        let configs = match need.config {
            true => Some(
                self.images
                    .starts(
                        image,
                        &found,
                        credential,
                        &pod_platforms.candidates,
                        requests,
                    )
                    .await,
            ),
            false => None,
        };
        let windows = match need.windows && pod_platforms.has_windows() {
            true => Some(
                self.images
                    .windows_offer(image, &found, credential, requests)
                    .await,
            ),
            false => None,
        };
        let answers = Answers {
            sizes,
            configs,
            windows,
        };
        found_status(found, answers, need, pod_platforms, matching.problems)
    }

    /// One image from the caches alone, when they hold all `need` asks for with the credential kubelet
    /// would try first; `None` sends it the full way (also whenever credential providers are in play,
    /// or the image was not found).
    async fn cached_status(
        &self,
        image: &ImageRef,
        credentials: &PodCredentials,
        pod_platforms: &platform::PodPlatforms,
        need: RegistryNeed,
    ) -> Option<ImageStatus> {
        if self.providers.is_some() {
            return None;
        }
        let credential = credentials.first_for_image(image);
        let candidates = pod_platforms.candidates.as_slice();
        let want = WarmNeed {
            platforms: need.platforms,
            sizes: need.sizes.then_some(candidates),
            starts: need.config.then_some(candidates),
            windows: need.windows && pod_platforms.has_windows(),
        };
        let warm = self.images.warm(image, credential.as_ref(), want).await?;
        let platforms = warm.platforms;
        // Only the problems of the pod's own secrets can be worth reporting (one without an entry for
        // this image's registry never is): copied only when they are.
        let secret_problems = credentials
            .problems()
            .iter()
            .filter(|p| is_reportable(p))
            .cloned()
            .collect();
        Some(ImageStatus::Found {
            digest: warm.digest.0,
            platforms: platforms.map(|offered| Ok(platform::compare(&offered, pod_platforms))),
            secret_problems,
            sizes: warm.sizes.map(Ok),
            configs: warm.starts.map(Ok),
            windows: warm.windows.map(Ok),
        })
    }
}

/// The status of a found image: its platforms compared with where the pod may land, its sizes, and the
/// secret problems worth reporting although it pulls.
/// What was read of a found image besides its platforms.
struct Answers {
    sizes: Option<Result<Vec<crate::facts::PlatformSize>, ResolveError>>,
    configs: Option<Result<crate::facts::Starts, ResolveError>>,
    windows: Option<Result<crate::facts::WindowsOffer, ResolveError>>,
}

fn found_status(
    found: crate::registry::Found,
    answers: Answers,
    need: RegistryNeed,
    pod_platforms: &platform::PodPlatforms,
    problems: Vec<crate::facts::SecretProblem>,
) -> ImageStatus {
    let platforms = match (need.platforms, found.platforms) {
        (true, Some(offered)) => {
            Some(offered.map(|offered| platform::compare(&offered, pod_platforms)))
        }
        _ => None,
    };
    ImageStatus::Found {
        digest: found.digest.0,
        platforms,
        secret_problems: reportable(problems),
        sizes: answers.sizes,
        configs: answers.configs,
        windows: answers.windows,
    }
}

/// The secret problems worth a warning when the pull's outcome does not depend on them: a secret without
/// an entry for this registry is normal when another one has it; an unreadable secret (no API) is logged
/// at start-up; a namespace without a `default` ServiceAccount simply lends no secrets.
fn reportable(problems: Vec<crate::facts::SecretProblem>) -> Vec<crate::facts::SecretProblem> {
    if problems.is_empty() {
        return problems;
    }
    problems.into_iter().filter(is_reportable).collect()
}

/// See [`reportable`].
fn is_reportable(problem: &crate::facts::SecretProblem) -> bool {
    !problem.is_missing_default_service_account()
        && !matches!(
            problem.kind,
            SecretProblemKind::NoEntryForRegistry { .. } | SecretProblemKind::ApiUnavailable { .. }
        )
}

fn failure(error: ResolveError) -> ImageStatus {
    match error {
        ResolveError::NotFound(missing) => ImageStatus::NotFound {
            missing,
            suggestions: Vec::new(),
        },
        other => ImageStatus::Failed(other),
    }
}
