//! The one pipeline that `serve`, `check` and (later) `audit` share: a [`Subject`] in, the registry asked
//! what the policies' [`plan`](policy::plan) needs, [`policy::evaluate`], a [`Decision`] out. Without a
//! resolver only the static rules run and the plan says which registry rules were skipped.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::PodSpec;

use crate::facts::{ContainerFacts, Facts, ImageStatus, Resolved};
use crate::policy::{self, PolicySet, RuleId, Verdict};
use crate::resolve::Resolver;
use crate::workload::{ContainerList, Workload};

/// What one object asks to be checked: the policy's facts and the pod spec they came from.
#[derive(Debug, Clone)]
pub struct Subject {
    pub facts: Facts,
    /// What decides how and where images are pulled (pull secrets, ServiceAccount, node selector,
    /// affinity, node name); its containers' names and images have moved to `facts`.
    pub spec: PodSpec,
}

impl Subject {
    /// The facts of `workload` in `namespace` (the one that scopes policies and pull secrets).
    ///
    /// With `previous` (an UPDATE's old object), only containers whose image changed (or that are new) are
    /// checked, unless what decides how images are pulled or where the pod runs changed too: scaling must
    /// never be blocked by image checks.
    pub fn new(mut workload: Workload, namespace: String, previous: Option<&Workload>) -> Self {
        let mut containers = workload.take_containers();
        if let Some(old) = previous.filter(|old| !workload.pull_context_changed(old)) {
            let before: HashSet<(ContainerList, String, String)> = old
                .containers()
                .into_iter()
                .map(|b| (b.list, b.name, b.image))
                .collect();
            containers.retain(|c| !before.contains(&(c.list, c.name.clone(), c.image.clone())));
        }
        Self {
            facts: Facts {
                namespace,
                labels: workload.labels,
                containers: containers.into_iter().map(ContainerFacts::new).collect(),
            },
            spec: workload.spec,
        }
    }

    /// Every container of a workload (as on CREATE), scoped by the object's own namespace, else
    /// `default_namespace`. What `pullgate check` checks.
    pub fn of_workload(workload: Workload, default_namespace: &str) -> Self {
        let namespace = workload
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_owned());
        Self::new(workload, namespace, None)
    }
}

/// What the engine decided about one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Per container (in [`Facts::containers`] order), the registry rules that applied but were not run
    /// because there was no resolver (`check --offline`); empty lists otherwise.
    pub skipped: Vec<Vec<RuleId>>,
    /// Registry requests made for this decision (cache hits make none).
    pub registry_calls: u32,
    /// Per container (in [`Facts::containers`] order), what its registry said; `None` when it was not
    /// asked (no resolver, an invalid reference, or no registry rule applied).
    pub statuses: Vec<Option<ImageStatus>>,
}

/// Ask the registries what the policies need, then decide. Without a resolver, only the static rules can
/// fire and every registry rule that applied is listed as skipped.
pub async fn decide(
    subject: &Subject,
    policies: &PolicySet,
    resolver: Option<&Resolver>,
) -> Decision {
    let plan = policy::plan(&subject.facts, policies);
    let (resolved, skipped) = match resolver {
        Some(resolver) => {
            let needs: Vec<_> = plan.iter().map(policy::ContainerPlan::need).collect();
            let resolved = resolver
                .resolve(&subject.spec, &subject.facts, &needs)
                .await;
            (resolved, vec![Vec::new(); plan.len()])
        }
        None => {
            let skipped = plan
                .into_iter()
                .map(|p| p.registry_rules.into_iter().collect())
                .collect();
            (Resolved::default(), skipped)
        }
    };
    let verdict = policy::evaluate(&subject.facts, &resolved, policies);
    let mut images = resolved.images;
    let statuses = subject
        .facts
        .containers
        .iter()
        .map(|c| images.remove(&c.spec.image_path))
        .collect();
    Decision {
        verdict,
        skipped,
        registry_calls: resolved.registry_calls,
        statuses,
    }
}
