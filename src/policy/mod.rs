//! The decision: policy files and the pure `evaluate(facts, policies) -> Verdict`.
//!
//! Nothing here does I/O except [`PolicySet::load`], which reads the policy directory. `evaluate` takes
//! plain data and returns plain data, so every rule is tested by tables of cases.

mod file;
pub mod glob;
mod plan;
pub mod quantity;
mod resolved;
mod rule_set;
mod rules;
pub mod start;
mod windows_build;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::facts::{Facts, Resolved, printable, truncate_chars};
pub use file::{
    API_VERSION, Deprecation, KIND, LoadedPolicy, PolicyDocument, PolicyError, Scope,
    default_deprecations, load_dir, parse_file, policy_files,
};
use glob::Glob;
pub use plan::{ContainerPlan, plan};
pub use rule_set::RuleSet;

/// Stable rule ids. Each appears in every message as `[rule-id]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleId {
    ImageReferenceValid,
    TagNotLatest,
    PullPolicy,
    DigestPinned,
    RegistryAllowed,
    RegistryDeprecated,
    ImageExists,
    PlatformSupported,
    PullSecretValid,
    RegistryReachable,
    RegistryTls,
    RateLimited,
    ImageSize,
    RunAsNonRoot,
    CommandSpecified,
    ConfigPlatform,
    PodOs,
    WindowsBuild,
}

impl RuleId {
    /// Every rule, in the order the README documents them.
    pub const ALL: [RuleId; 18] = [
        Self::ImageReferenceValid,
        Self::TagNotLatest,
        Self::PullPolicy,
        Self::DigestPinned,
        Self::RegistryAllowed,
        Self::RegistryDeprecated,
        Self::ImageExists,
        Self::PlatformSupported,
        Self::PullSecretValid,
        Self::RegistryReachable,
        Self::RegistryTls,
        Self::RateLimited,
        Self::ImageSize,
        Self::RunAsNonRoot,
        Self::CommandSpecified,
        Self::ConfigPlatform,
        Self::PodOs,
        Self::WindowsBuild,
    ];

    /// Whether the rule needs an answer from the image's registry.
    pub fn needs_registry(self) -> bool {
        matches!(
            self,
            Self::ImageExists
                | Self::PlatformSupported
                | Self::PullSecretValid
                | Self::RegistryReachable
                | Self::RegistryTls
                | Self::RateLimited
                | Self::ImageSize
                | Self::RunAsNonRoot
                | Self::CommandSpecified
                | Self::ConfigPlatform
                | Self::WindowsBuild
        )
    }

    /// Whether the rule reads the image config (what a node of each candidate platform starts).
    pub fn needs_config(self) -> bool {
        matches!(
            self,
            Self::RunAsNonRoot | Self::CommandSpecified | Self::ConfigPlatform
        )
    }

    /// The id as written in policy files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageReferenceValid => "image-reference-valid",
            Self::TagNotLatest => "tag-not-latest",
            Self::PullPolicy => "pull-policy",
            Self::DigestPinned => "digest-pinned",
            Self::RegistryAllowed => "registry-allowed",
            Self::RegistryDeprecated => "registry-deprecated",
            Self::ImageExists => "image-exists",
            Self::PlatformSupported => "platform-supported",
            Self::PullSecretValid => "pull-secret-valid",
            Self::RegistryReachable => "registry-reachable",
            Self::RegistryTls => "registry-tls",
            Self::RateLimited => "rate-limited",
            Self::ImageSize => "image-size",
            Self::RunAsNonRoot => "run-as-non-root",
            Self::CommandSpecified => "command-specified",
            Self::ConfigPlatform => "config-platform",
            Self::PodOs => "pod-os",
            Self::WindowsBuild => "windows-build",
        }
    }

    /// The action a rule takes when a policy lists it without one.
    pub fn default_action(self) -> Action {
        match self {
            Self::PullPolicy
            | Self::RegistryDeprecated
            | Self::RegistryReachable
            | Self::RegistryTls
            | Self::RateLimited
            | Self::ImageSize => Action::Warn,
            Self::ImageReferenceValid
            | Self::TagNotLatest
            | Self::DigestPinned
            | Self::RegistryAllowed
            | Self::ImageExists
            | Self::PlatformSupported
            | Self::PullSecretValid
            | Self::RunAsNonRoot
            | Self::CommandSpecified
            | Self::ConfigPlatform
            | Self::PodOs
            | Self::WindowsBuild => Action::Deny,
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule does when it fires.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Off,
    Warn,
    Deny,
}

impl Action {
    /// The action as written in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Warn => "warn",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule firing on one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub container: String,
    pub image: String,
    /// Field path of the image, e.g. `spec.template.spec.containers[0].image`.
    pub image_path: String,
    pub rule: RuleId,
    pub action: Action,
    /// The cause, naming what is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// What holds the image at `image_path`, as messages name it: `container` or `image volume`.
pub fn image_noun(image_path: &str) -> &'static str {
    if image_path.contains(".volumes[") {
        "image volume"
    } else {
        "container"
    }
}

/// Longest warning Kubernetes passes through without truncating.
pub const WARNING_MAX: usize = 256;
/// Longest line of a denial message.
pub const DENY_LINE_MAX: usize = 512;

impl Finding {
    /// The line in a denial message: names the container, the image, the rule, the cause and the fix.
    /// At most [`DENY_LINE_MAX`] characters, without control characters.
    pub fn deny_line(&self) -> String {
        let what = image_noun(&self.image_path);
        let line = format!(
            "{what} {:?} (image {}): [{}] {} — {}",
            self.container, self.image, self.rule, self.message, self.fix
        );
        truncate_chars(&printable(&line), DENY_LINE_MAX)
    }

    /// A Kubernetes-style warning: `<field path>: [rule] cause — fix`, cut to [`WARNING_MAX`] characters.
    pub fn warning_line(&self) -> String {
        let line = format!(
            "{}: [{}] {} — {}",
            self.image_path, self.rule, self.message, self.fix
        );
        truncate_chars(&printable(&line), WARNING_MAX)
    }
}

/// The outcome: every finding, in container order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// True when no finding denies.
    pub fn allowed(&self) -> bool {
        !self.findings.iter().any(|f| f.action == Action::Deny)
    }

    /// Findings with the given action.
    pub fn with_action(&self, action: Action) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.action == action)
    }
}

/// A rule with its settings, ready to run.
#[derive(Debug, Clone)]
enum RuleConfig {
    ImageReferenceValid,
    TagNotLatest,
    PullPolicy,
    DigestPinned,
    RegistryAllowed {
        allow: Vec<Glob>,
        deny: Vec<Glob>,
    },
    RegistryDeprecated {
        moves: Vec<Deprecation>,
    },
    /// A rule answered from the registry's reply.
    Registry(RuleId),
    /// `image-size`: what a node pulls must not exceed this.
    ImageSize {
        max: quantity::ByteQuantity,
    },
    /// A start rule ([`start`]): the pod spec with, where it needs it, the image config.
    Start(RuleId),
}

impl RuleConfig {
    fn id(&self) -> RuleId {
        match self {
            Self::Registry(id) | Self::Start(id) => *id,
            Self::ImageSize { .. } => RuleId::ImageSize,
            Self::ImageReferenceValid => RuleId::ImageReferenceValid,
            Self::TagNotLatest => RuleId::TagNotLatest,
            Self::PullPolicy => RuleId::PullPolicy,
            Self::DigestPinned => RuleId::DigestPinned,
            Self::RegistryAllowed { .. } => RuleId::RegistryAllowed,
            Self::RegistryDeprecated { .. } => RuleId::RegistryDeprecated,
        }
    }
}

/// `image-size`'s limit when a policy names none: 2 GiB compressed.
pub const DEFAULT_MAX_SIZE: u64 = 2 << 30;

/// One policy, compiled: its scope and the rules it runs (rules set to `off` are dropped).
#[derive(Debug, Clone)]
struct CompiledPolicy {
    include: Scope,
    exclude: Scope,
    rules: Vec<(Action, RuleConfig)>,
    /// `image-exists` runs with `suggestTags` (the default).
    suggest_tags: bool,
}

impl CompiledPolicy {
    fn compile(document: &PolicyDocument) -> Self {
        let r = &document.spec.rules;
        let simple = |setting: &Option<file::SimpleRule>, config: RuleConfig| {
            setting
                .as_ref()
                .map(|s| (s.action.unwrap_or(config.id().default_action()), config))
        };
        let candidates = [
            simple(&r.image_reference_valid, RuleConfig::ImageReferenceValid),
            simple(&r.tag_not_latest, RuleConfig::TagNotLatest),
            simple(&r.pull_policy, RuleConfig::PullPolicy),
            simple(&r.digest_pinned, RuleConfig::DigestPinned),
            r.registry_allowed.as_ref().map(|s| {
                (
                    s.action.unwrap_or(RuleId::RegistryAllowed.default_action()),
                    RuleConfig::RegistryAllowed {
                        allow: s.allow.clone(),
                        deny: s.deny.clone(),
                    },
                )
            }),
            r.registry_deprecated.as_ref().map(|s| {
                (
                    s.action
                        .unwrap_or(RuleId::RegistryDeprecated.default_action()),
                    RuleConfig::RegistryDeprecated {
                        moves: s.registries.clone().unwrap_or_else(default_deprecations),
                    },
                )
            }),
            r.image_exists.as_ref().map(|s| {
                let config = RuleConfig::Registry(RuleId::ImageExists);
                (s.action.unwrap_or(config.id().default_action()), config)
            }),
            simple(
                &r.platform_supported,
                RuleConfig::Registry(RuleId::PlatformSupported),
            ),
            simple(
                &r.pull_secret_valid,
                RuleConfig::Registry(RuleId::PullSecretValid),
            ),
            simple(
                &r.registry_reachable,
                RuleConfig::Registry(RuleId::RegistryReachable),
            ),
            simple(&r.registry_tls, RuleConfig::Registry(RuleId::RegistryTls)),
            simple(&r.rate_limited, RuleConfig::Registry(RuleId::RateLimited)),
            r.image_size.as_ref().map(|s| {
                let max = s.max_compressed_size.clone();
                let max =
                    max.unwrap_or_else(|| quantity::ByteQuantity::from_bytes(DEFAULT_MAX_SIZE));
                let action = s.action.unwrap_or(RuleId::ImageSize.default_action());
                (action, RuleConfig::ImageSize { max })
            }),
            simple(&r.run_as_non_root, RuleConfig::Start(RuleId::RunAsNonRoot)),
            simple(
                &r.command_specified,
                RuleConfig::Start(RuleId::CommandSpecified),
            ),
            simple(
                &r.config_platform,
                RuleConfig::Start(RuleId::ConfigPlatform),
            ),
            simple(&r.pod_os, RuleConfig::Start(RuleId::PodOs)),
            simple(&r.windows_build, RuleConfig::Start(RuleId::WindowsBuild)),
        ];
        Self {
            include: document.spec.include.clone(),
            exclude: document.spec.exclude.clone(),
            suggest_tags: r
                .image_exists
                .as_ref()
                .is_some_and(|s| s.suggest_tags.unwrap_or(true)),
            rules: candidates
                .into_iter()
                .flatten()
                .filter(|(action, _)| *action != Action::Off)
                .collect(),
        }
    }

    /// Whether the policy applies to the object at all (namespace and labels).
    fn applies_to_object(&self, facts: &Facts) -> bool {
        let included = (self.include.namespaces.is_empty()
            || Glob::any(&self.include.namespaces, &facts.namespace))
            && labels_match(&self.include.labels, &facts.labels);
        let excluded = Glob::any(&self.exclude.namespaces, &facts.namespace)
            || (!self.exclude.labels.is_empty()
                && labels_match(&self.exclude.labels, &facts.labels));
        included && !excluded
    }

    /// Whether the policy applies to one container's image.
    fn applies_to_image(&self, name: &str) -> bool {
        (self.include.images.is_empty() || Glob::any(&self.include.images, name))
            && !Glob::any(&self.exclude.images, name)
    }
}

/// Every `key: value` of `wanted` is among `labels`.
fn labels_match(wanted: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The shipped `policies/default.yaml`, built into the binary.
pub const BUILT_IN_POLICY: &str = include_str!("../../policies/default.yaml");

/// The built-in policy, compiled: what `check` and `audit` use without `--policies`, and `serve` when
/// there is neither `--policies` nor a `./policies` directory.
pub fn built_in() -> Result<PolicySet, PolicyError> {
    let file = Path::new("<built-in policies/default.yaml>");
    let loaded: Vec<LoadedPolicy> = parse_file(file, BUILT_IN_POLICY)?
        .into_iter()
        .map(|document| LoadedPolicy {
            file: file.to_owned(),
            document,
        })
        .collect();
    Ok(PolicySet::from_loaded(&loaded))
}

/// Every loaded policy, compiled. Each applies independently to the objects in its scope.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
    names: Vec<String>,
}

impl PolicySet {
    /// Load and validate every policy file in `dir`.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Ok(Self::from_loaded(&load_dir(dir)?))
    }

    /// Compile already parsed policies.
    pub fn from_loaded(loaded: &[LoadedPolicy]) -> Self {
        Self {
            policies: loaded
                .iter()
                .map(|p| CompiledPolicy::compile(&p.document))
                .collect(),
            names: loaded
                .iter()
                .map(|p| p.document.metadata.name.clone())
                .collect(),
        }
    }

    /// Names of the policies, in load order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Decide. Pure: the same facts, registry answers and policies always give the same verdict.
///
/// When several policies report the same rule for the same container, the strictest action is kept.
/// A rule that could not be sure (e.g. credentials not verifiable) warns even where it would deny.
pub fn evaluate(facts: &Facts, resolved: &Resolved, policies: &PolicySet) -> Verdict {
    // Findings per container (in `facts.containers` order), then by rule: linear in containers.
    let mut per_container: Vec<Vec<Finding>> = vec![Vec::new(); facts.containers.len()];
    for policy in policies
        .policies
        .iter()
        .filter(|p| p.applies_to_object(facts))
    {
        for (container, findings) in facts.containers.iter().zip(per_container.iter_mut()) {
            if !policy.applies_to_image(container.scope_name()) {
                continue;
            }
            for (action, config) in &policy.rules {
                let outcome = match config {
                    RuleConfig::Registry(id) => {
                        resolved::check(*id, container, &facts.namespace, resolved)
                    }
                    RuleConfig::ImageSize { max } => resolved::image_size(container, resolved, max),
                    RuleConfig::Start(id) => start::check(*id, container, facts, resolved),
                    _ => rules::check(config, container),
                };
                let Some(outcome) = outcome else {
                    continue;
                };
                let action = if outcome.definitive {
                    *action
                } else {
                    (*action).min(Action::Warn)
                };
                let finding = Finding {
                    container: container.spec.name.clone(),
                    image: container.spec.image.clone(),
                    image_path: container.spec.image_path.clone(),
                    rule: config.id(),
                    action,
                    message: outcome.message,
                    fix: outcome.fix,
                };
                merge(findings, finding);
            }
        }
    }
    let findings = per_container
        .into_iter()
        .flat_map(|mut findings| {
            findings.sort_by_key(|f| f.rule);
            findings
        })
        .collect();
    Verdict { findings }
}

/// Add a finding to one container's, or make an existing one for the same rule stricter. A container has
/// at most one finding per rule, so the scan is short.
fn merge(findings: &mut Vec<Finding>, finding: Finding) {
    match findings.iter_mut().find(|f| f.rule == finding.rule) {
        Some(existing) if finding.action > existing.action => *existing = finding,
        Some(_) => {}
        None => findings.push(finding),
    }
}

#[cfg(test)]
mod tests;
