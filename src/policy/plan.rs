//! The plan: which registry rules the policies run on each container, and so what its registry must be
//! asked (digest, platforms, sizes, the image config) — or, offline, which rules were skipped.

use super::{CompiledPolicy, PolicySet, RuleConfig, RuleId, RuleSet, rules, start};
use crate::facts::{Facts, RegistryNeed};

/// Which registry rules the policies run on one container: the plan that says what the registry must
/// be asked (or, offline, which rules were skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerPlan {
    /// The registry rules that apply, in rule order; empty when the registry is not asked at all.
    pub registry_rules: RuleSet,
    /// A policy running `image-exists` on it wants "did you mean" for a missing tag.
    pub suggest_tags: bool,
    /// A start rule needs the image config of what a node of each candidate platform pulls.
    pub config: bool,
}

impl ContainerPlan {
    /// What the registry must be asked for this container.
    pub fn need(&self) -> RegistryNeed {
        RegistryNeed {
            resolve: !self.registry_rules.is_empty(),
            platforms: self.registry_rules.contains(RuleId::PlatformSupported),
            suggest_tags: self.suggest_tags && self.registry_rules.contains(RuleId::ImageExists),
            sizes: self.registry_rules.contains(RuleId::ImageSize),
            config: self.config,
            windows: self.registry_rules.contains(RuleId::WindowsBuild),
        }
    }
}

/// For each container of `facts` (same order), the registry rules the applicable policies run on it —
/// none when no applicable policy runs a registry rule on it, when its reference is invalid, when
/// `imagePullPolicy: Never` means the node never pulls it, or when `registry-allowed` refuses its
/// registry (a registry the policies do not allow is never contacted). Rules set to `off` never run.
pub fn plan(facts: &Facts, policies: &PolicySet) -> Vec<ContainerPlan> {
    let for_object: Vec<&CompiledPolicy> = policies
        .policies
        .iter()
        .filter(|p| p.applies_to_object(facts))
        .collect();
    facts
        .containers
        .iter()
        .map(|container| {
            let mut plan = ContainerPlan::default();
            let pulls = container.spec.pull_policy.as_deref() != Some("Never");
            if container.image.is_err() || !pulls {
                return plan;
            }
            let scope = container.scope_name();
            let applicable = || for_object.iter().filter(|p| p.applies_to_image(scope));
            // A registry the policies do not allow is never contacted.
            let disallowed = applicable().flat_map(|p| &p.rules).any(|(_, config)| {
                matches!(config, RuleConfig::RegistryAllowed { .. })
                    && rules::check(config, container).is_some()
            });
            if disallowed {
                return plan;
            }
            let mut config_platform = false;
            for policy in applicable() {
                let runs_image_exists = policy
                    .rules
                    .iter()
                    .any(|(_, config)| config.id() == RuleId::ImageExists);
                plan.suggest_tags |= runs_image_exists && policy.suggest_tags;
                for id in policy.rules.iter().map(|(_, config)| config.id()) {
                    // A start rule asks the registry only when the pod spec leaves the answer to the
                    // image config; `config-platform` only reads a config another rule fetched.
                    let needed = match id {
                        RuleId::RunAsNonRoot => start::needs_user(container, facts),
                        RuleId::CommandSpecified => start::needs_command(container),
                        RuleId::ConfigPlatform => {
                            config_platform = true;
                            false
                        }
                        // Only a pod meant for Windows nodes has a Windows build to match.
                        RuleId::WindowsBuild => {
                            facts.pod_windows && start::starts_a_process(container)
                        }
                        id => id.needs_registry(),
                    };
                    if needed {
                        plan.registry_rules.insert(id);
                        plan.config |= id.needs_config();
                    }
                }
            }
            if plan.config && config_platform {
                plan.registry_rules.insert(RuleId::ConfigPlatform);
            }
            plan
        })
        .collect()
}
