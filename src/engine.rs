//! The one pipeline that `serve`, `check` and (later) `audit` share: a [`Subject`] in, the registry asked
//! what the policies' [`plan`](policy::plan) needs, [`policy::evaluate`], a [`Decision`] out. Without a
//! resolver only the static rules run and the plan says which registry rules were skipped.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::PodSpec;

use crate::facts::{ContainerFacts, Facts, ImageStatus, Resolved};
use crate::policy::{self, PolicySet, RuleId, Verdict};
use crate::resolve::Resolver;
use crate::workload::{ContainerSpec, RunAs, Workload};

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
            // A container is unchanged when its image and what decides how it starts (command, args,
            // security context) are.
            let before: HashSet<ContainerSpec> = old
                .containers()
                .into_iter()
                .map(|b| ContainerSpec {
                    index: 0,
                    image_path: String::new(),
                    pull_policy: None,
                    ..b
                })
                .collect();
            containers.retain(|c| {
                let key = ContainerSpec {
                    index: 0,
                    image_path: String::new(),
                    pull_policy: None,
                    ..c.clone()
                };
                !before.contains(&key)
            });
        }
        Self {
            facts: Facts {
                namespace,
                labels: workload.labels,
                containers: containers.into_iter().map(ContainerFacts::new).collect(),
                pod_run_as: RunAs::of_pod(workload.spec.security_context.as_ref()),
                pod_os: workload.spec.os.as_ref().map(|os| os.name.clone()),
                pod_os_allowed: workload
                    .spec
                    .os
                    .as_ref()
                    .and_then(|os| crate::platform::os_allowed(&workload.spec, &os.name)),
                pod_windows: workload
                    .spec
                    .os
                    .as_ref()
                    .is_some_and(|os| os.name == "windows")
                    || crate::platform::os_allowed(&workload.spec, "windows") == Some(true),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::WorkloadKind;
    use serde_json::{Value, json};

    fn workload(containers: Value, pod: Value) -> Workload {
        let mut spec = json!({"containers": containers});
        for (key, value) in pod.as_object().into_iter().flatten() {
            spec[key] = value.clone();
        }
        Workload::from_object(WorkloadKind::Pod, &json!({"spec": spec})).expect("pod")
    }

    fn checked(new: Workload, old: &Workload) -> Vec<String> {
        let subject = Subject::new(new, "demo".into(), Some(old));
        let names = subject.facts.containers.iter().map(|c| c.spec.name.clone());
        names.collect()
    }

    #[test]
    fn an_update_rechecks_containers_whose_start_changed() {
        let old = workload(
            json!([{"name": "a", "image": "r.io/a:1"}, {"name": "b", "image": "r.io/b:1"}]),
            json!({}),
        );
        let same = workload(
            json!([{"name": "a", "image": "r.io/a:1"}, {"name": "b", "image": "r.io/b:1"}]),
            json!({}),
        );
        assert_eq!(checked(same, &old), Vec::<String>::new());
        for changed in [
            json!({"command": ["/b"]}),
            json!({"args": ["--serve"]}),
            json!({"securityContext": {"runAsNonRoot": true}}),
            json!({"securityContext": {"windowsOptions": {"runAsUserName": "ContainerUser"}}}),
        ] {
            let mut b = json!({"name": "b", "image": "r.io/b:1"});
            for (key, value) in changed.as_object().into_iter().flatten() {
                b[key] = value.clone();
            }
            let new = workload(json!([{"name": "a", "image": "r.io/a:1"}, b]), json!({}));
            assert_eq!(checked(new, &old), ["b"], "{changed}");
        }
        for pod in [
            json!({"securityContext": {"runAsNonRoot": true}}),
            json!({"os": {"name": "linux"}}),
        ] {
            let new = workload(
                json!([{"name": "a", "image": "r.io/a:1"}, {"name": "b", "image": "r.io/b:1"}]),
                pod.clone(),
            );
            assert_eq!(checked(new, &old), ["a", "b"], "{pod}");
        }
    }
}
