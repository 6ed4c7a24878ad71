//! The webhook's engine, driven over manifests: the same [`decide`] (policies, registry resolution,
//! messages) as `serve`, with a [`Resolver`] whose pull credentials come from the input and the local
//! docker config instead of the Kubernetes API, an optional on-disk cache, and — with `--offline` — no
//! resolver at all, each registry rule that would have run reported as skipped.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::{Subject, decide};
use crate::config::Settings;
use crate::credentials::CredentialSource;
use crate::facts::{Facts, ImageStatus, Missing, ResolveError, Resolved};
use crate::platform::{PlatformMatch, PodPlatforms};
use crate::policy::{self, PolicySet, RuleId, Verdict};
use crate::registry::ImageResolver;
use crate::resolve::{ResolveSettings, Resolver, cached, node_credentials, registry_resolver};
use crate::telemetry::metrics::Metrics;
use crate::workload::Workload;

use super::cache::{CacheDirError, DiskCache};
use super::objects::Manifests;
use super::sources::{LocalConfigError, LocalDockerConfig, ManifestCredentials, local_credentials};

/// How `check` may reach registries (absent with `--offline`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAccess {
    /// The local docker config whose credentials stand in for the nodes'.
    pub docker_config: LocalDockerConfig,
    /// Where `docker-credential-*` helpers are looked up (a `PATH` value).
    pub helper_path: Option<OsString>,
    /// Where registry answers that stay true are kept between runs.
    pub cache_dir: Option<PathBuf>,
}

/// Why registry resolution could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Registry settings, containerd hosts files or `nodeCredentials` are invalid (as for `serve`).
    #[error(transparent)]
    Settings(#[from] crate::resolve::SetupError),
    /// The local docker config is unreadable or malformed.
    #[error(transparent)]
    DockerConfig(#[from] LocalConfigError),
    /// The cache directory cannot be created or read.
    #[error(transparent)]
    CacheDir(#[from] CacheDirError),
}

/// A resolver for `check`, and what to tell the user about how it was made.
pub struct Online {
    pub resolver: Resolver,
    pub disk: Option<Arc<DiskCache>>,
    pub notices: Vec<String>,
}

/// Build the resolver as `serve` does from the same settings (registry hosts, CAs, mirrors, timeouts,
/// caches), with pull credentials from the input's Secrets and ServiceAccounts and, as the nodes'
/// credentials, the local docker config (else the settings' `nodeCredentials`). `registries` are the
/// registry hosts that will be asked: only those are asked of credential helpers.
pub async fn online(
    settings: &Settings,
    access: &RegistryAccess,
    manifests: &Manifests,
    registries: &BTreeSet<String>,
) -> Result<Online, SetupError> {
    let metrics = Arc::new(Metrics::new());
    let oci: Arc<dyn ImageResolver> = Arc::new(registry_resolver(settings, metrics.clone())?);
    let disk = match &access.cache_dir {
        Some(dir) => Some(Arc::new(DiskCache::open(dir, oci.clone())?)),
        None => None,
    };
    let below_memory = match &disk {
        Some(disk) => disk.clone() as Arc<dyn ImageResolver>,
        None => oci,
    };
    let cached = cached(settings, below_memory, metrics);
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
    let credentials: Arc<dyn CredentialSource> = Arc::new(ManifestCredentials::new(
        manifests.secrets.clone(),
        manifests.service_accounts.clone(),
    ));
    let resolver = Resolver::new(
        Arc::new(cached),
        Some(credentials),
        node_credentials.map(Arc::new),
        settings.node_platforms.clone(),
        ResolveSettings::from(&settings.resolution),
    );
    Ok(Online {
        resolver,
        disk,
        notices,
    })
}

/// The registries the registry rules will ask, over every workload of the input.
pub fn registries_to_ask(
    workloads: &[&Workload],
    policies: &PolicySet,
    namespace: &str,
) -> BTreeSet<String> {
    let mut registries = BTreeSet::new();
    for workload in workloads {
        let subject = Subject::of_workload((*workload).clone(), namespace);
        let needs = policy::registry_needs(&subject.facts, policies);
        for (container, need) in subject.facts.containers.iter().zip(needs) {
            if let (true, Ok(image)) = (need.resolve, &container.image) {
                registries.insert(image.registry().to_owned());
            }
        }
    }
    registries
}

/// What checking one workload found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The namespace the policies were scoped with.
    pub namespace: String,
    pub verdict: Verdict,
    /// Per container (in [`Workload::containers`] order), the registry rules not run (`--offline`).
    pub skipped: Vec<Vec<RuleId>>,
}

/// Check one workload with the webhook's engine; without a resolver, also list the registry rules
/// that would have run.
pub async fn check(
    workload: Workload,
    namespace: &str,
    policies: &PolicySet,
    resolver: Option<&Resolver>,
) -> Checked {
    let subject = Subject::of_workload(workload, namespace);
    let verdict = decide(&subject, policies, resolver).await;
    let skipped = match resolver {
        Some(_) => vec![Vec::new(); subject.facts.containers.len()],
        None => registry_rules(&subject.facts, policies),
    };
    Checked {
        namespace: subject.facts.namespace,
        verdict,
        skipped,
    }
}

/// Registry answers that make each registry rule fire, one rule (or two that cannot meet) per answer.
fn probe_answers() -> [ImageStatus; 6] {
    [
        ImageStatus::NotFound(Missing::Manifest),
        ImageStatus::AuthFailed {
            attempts: Vec::new(),
            problems: Vec::new(),
            anonymous: Some(ResolveError::Unauthorized),
            api_unavailable: false,
        },
        ImageStatus::Found {
            digest: String::new(),
            platforms: Some(Ok(PlatformMatch::None {
                wanted: Vec::new(),
                offered: Vec::new(),
            })),
            secret_problems: Vec::new(),
        },
        ImageStatus::TimedOut(Duration::ZERO),
        ImageStatus::Failed(ResolveError::Tls(String::new())),
        ImageStatus::Failed(ResolveError::RateLimited(String::new())),
    ]
}

/// For each container, the registry rules the policies would run on it: found by asking the pure
/// `evaluate` what it would say to answers that make each registry rule fire, so scoping (namespaces,
/// labels, images), `off` actions and `imagePullPolicy: Never` are decided by the policy code itself.
pub fn registry_rules(facts: &Facts, policies: &PolicySet) -> Vec<Vec<RuleId>> {
    let needs = policy::registry_needs(facts, policies);
    let mut rules = vec![BTreeSet::new(); facts.containers.len()];
    if needs.iter().any(|n| n.resolve) {
        for answer in probe_answers() {
            let resolved = Resolved {
                images: facts
                    .containers
                    .iter()
                    .zip(&needs)
                    .filter(|(_, need)| need.resolve)
                    .map(|(c, _)| (c.spec.image_path.clone(), answer.clone()))
                    .collect(),
                pod_platforms: Some(PodPlatforms {
                    candidates: Vec::new(),
                    constrained: false,
                }),
                low_budgets: Default::default(),
            };
            for finding in policy::evaluate(facts, &resolved, policies).findings {
                let position = facts
                    .containers
                    .iter()
                    .position(|c| c.spec.image_path == finding.image_path);
                if let (true, Some(i)) = (finding.rule.needs_registry(), position) {
                    rules[i].insert(finding.rule);
                }
            }
        }
    }
    rules
        .into_iter()
        .map(|set| set.into_iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{LoadedPolicy, parse_file};
    use crate::workload::WorkloadKind;
    use serde_json::json;
    use std::path::Path;

    fn policies(text: &str) -> PolicySet {
        let loaded: Vec<LoadedPolicy> = parse_file(Path::new("p.yaml"), text)
            .expect("policy")
            .into_iter()
            .map(|document| LoadedPolicy {
                file: "p.yaml".into(),
                document,
            })
            .collect();
        PolicySet::from_loaded(&loaded)
    }

    fn facts(containers: serde_json::Value, namespace: &str) -> Facts {
        let object = json!({"metadata": {"name": "p"}, "spec": {"containers": containers}});
        let workload = Workload::from_object(WorkloadKind::Pod, &object).expect("pod");
        Subject::of_workload(workload, namespace).facts
    }

    const SHIPPED: &str = include_str!("../../policies/default.yaml");

    #[test]
    fn every_registry_rule_of_the_shipped_policy_is_found() {
        let facts = facts(json!([{"name": "a", "image": "r.io/a:1"}]), "demo");
        let all: Vec<RuleId> = RuleId::ALL
            .into_iter()
            .filter(|r| r.needs_registry())
            .collect();
        assert_eq!(registry_rules(&facts, &policies(SHIPPED)), vec![all]);
    }

    #[test]
    fn containers_the_registry_is_not_asked_about_have_none() {
        let facts = facts(
            json!([
                {"name": "never", "image": "r.io/a:1", "imagePullPolicy": "Never"},
                {"name": "invalid", "image": "Bad:Ref"},
                {"name": "checked", "image": "r.io/b:1"},
            ]),
            "demo",
        );
        let rules = registry_rules(&facts, &policies(SHIPPED));
        assert!(rules[0].is_empty() && rules[1].is_empty(), "{rules:?}");
        assert_eq!(rules[2].len(), 6, "{rules:?}");
    }

    #[test]
    fn scoping_and_off_actions_are_the_policys() {
        let text = "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\nspec:\n  exclude: {namespaces: [kube-system]}\n  rules:\n    image-exists: {action: deny}\n    platform-supported: {action: off}\n    tag-not-latest: {action: deny}\n";
        let scoped = facts(json!([{"name": "a", "image": "r.io/a:1"}]), "demo");
        assert_eq!(
            registry_rules(&scoped, &policies(text)),
            vec![vec![RuleId::ImageExists]]
        );
        let excluded = facts(json!([{"name": "a", "image": "r.io/a:1"}]), "kube-system");
        assert_eq!(
            registry_rules(&excluded, &policies(text)),
            vec![Vec::<RuleId>::new()]
        );
    }
}
