//! Where a pod may be scheduled (and run): `nodeSelector` and required node affinity on the platform
//! labels, as kube-scheduler's NodeAffinity plugin reads them, and the OS the pod declares (see the
//! parent module's docs for the rules).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

use super::{
    LABEL_ARCH, LABEL_OS, LEGACY_LABEL_ARCH, LEGACY_LABEL_OS, Platform, normalize_arch,
    normalize_os, normalized,
};

/// The platforms a pod may be scheduled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlatforms {
    /// Normalised, sorted and distinct. Empty when the pod's constraints contradict each other
    /// (the pod is unschedulable).
    pub candidates: Vec<Platform>,
    /// Whether the pod's `nodeSelector` or required node affinity constrains the platform labels
    /// (so the candidates are what the pod asked for, not merely what the cluster runs).
    pub constrained: bool,
    /// Platforms the scheduler may pick whose OS is not the one the pod declares in `spec.os.name`
    /// (kubelet rejects the pod there); empty when it declares none.
    pub other_os: Vec<Platform>,
    /// For each Windows candidate whose nodes' builds are known, the builds of the nodes the pod may
    /// land on ([`super::windows::eligible_builds`]); filled by the resolver.
    pub windows_builds: super::WindowsBuilds,
}

impl PodPlatforms {
    /// Whether the pod may land on Windows nodes.
    pub fn has_windows(&self) -> bool {
        self.candidates.iter().any(|p| p.os == "windows")
    }
}

/// A platform label a scheduling constraint can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Os,
    Arch,
}

impl Label {
    fn from_key(key: &str) -> Option<Label> {
        match key {
            LABEL_OS | LEGACY_LABEL_OS => Some(Label::Os),
            LABEL_ARCH | LEGACY_LABEL_ARCH => Some(Label::Arch),
            _ => None,
        }
    }

    /// A label value in the form [`Platform::normalized`] uses (`x86_64` is `amd64`).
    fn normalize(self, value: &str) -> String {
        match self {
            Label::Os => normalize_os(value),
            Label::Arch => normalize_arch(value, "").0,
        }
    }

    /// The value a node of (normalised) platform `platform` has for this label.
    fn of(self, platform: &Platform) -> &str {
        match self {
            Label::Os => &platform.os,
            Label::Arch => &platform.architecture,
        }
    }
}

/// One requirement on a platform label; values normalised.
#[derive(Debug)]
enum Requirement {
    In(Label, Vec<String>),
    NotIn(Label, Vec<String>),
    Exists,
    /// Every node has the platform labels, so this matches none.
    DoesNotExist,
}

impl Requirement {
    /// The requirement an expression sets on the platform, or `None` when it sets none.
    fn from_expression(expression: &NodeSelectorRequirement) -> Option<Requirement> {
        let label = Label::from_key(&expression.key)?;
        let values = || {
            expression
                .values
                .iter()
                .flatten()
                .map(|v| label.normalize(v))
                .collect()
        };
        match expression.operator.as_str() {
            "In" => Some(Requirement::In(label, values())),
            "NotIn" => Some(Requirement::NotIn(label, values())),
            "Exists" => Some(Requirement::Exists),
            "DoesNotExist" => Some(Requirement::DoesNotExist),
            _ => None,
        }
    }

    fn matches(&self, platform: &Platform) -> bool {
        match self {
            Requirement::In(label, values) => values.iter().any(|v| v == label.of(platform)),
            Requirement::NotIn(label, values) => values.iter().all(|v| v != label.of(platform)),
            Requirement::Exists => true,
            Requirement::DoesNotExist => false,
        }
    }

    /// The values this requirement names positively for `label`.
    fn named(&self, label: Label) -> &[String] {
        match self {
            Requirement::In(l, values) if *l == label => values,
            _ => &[],
        }
    }
}

/// The platforms the pod with `spec` may land on and run, given the cluster's node platforms (see the
/// module docs for the rules). Unconstrained and with no `spec.os`, that is `node_platforms`,
/// normalised.
pub fn pod_platforms(spec: &PodSpec, node_platforms: &[Platform]) -> PodPlatforms {
    let Some(os) = spec.os.as_ref().map(|os| normalize_os(&os.name)) else {
        return scheduled(spec, node_platforms, None);
    };
    let scheduled_anywhere = scheduled(spec, node_platforms, None);
    let mut runs = scheduled(spec, node_platforms, Some(&os));
    runs.constrained = scheduled_anywhere.constrained;
    runs.other_os = scheduled_anywhere
        .candidates
        .into_iter()
        .filter(|p| p.os != os)
        .collect();
    runs
}

/// Whether the pod's `nodeSelector` and required node affinity let it onto nodes of operating system
/// `os`: `None` when they do not constrain the operating system, else whether some allowed node may
/// have it (architecture requirements aside).
pub fn os_allowed(spec: &PodSpec, os: &str) -> Option<bool> {
    if spec.node_selector.is_none() && spec.affinity.is_none() {
        return None;
    }
    let os = normalize_os(os);
    let on_os = |r: &Requirement| {
        !matches!(
            r,
            Requirement::In(Label::Arch, _) | Requirement::NotIn(Label::Arch, _)
        )
    };
    let selector: Vec<Requirement> = spec
        .node_selector
        .iter()
        .flatten()
        .filter_map(|(key, value)| {
            let label = Label::from_key(key).filter(|l| *l == Label::Os)?;
            Some(Requirement::In(label, vec![label.normalize(value)]))
        })
        .collect();
    let terms = required_terms(spec).map(|terms| {
        terms
            .into_iter()
            .map(|term| term.into_iter().filter(on_os).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    });
    // (Required affinity without a usable term admits no node at all: not an OS question.)
    let constrained = !selector.is_empty()
        || terms
            .as_ref()
            .is_some_and(|t| t.iter().any(|term| !term.is_empty()));
    if !constrained {
        return None;
    }
    let probe = Platform {
        os,
        architecture: String::new(),
        variant: None,
    };
    let admits = selector.iter().all(|r| r.matches(&probe))
        && terms.as_ref().is_none_or(|terms| {
            terms
                .iter()
                .any(|term| term.iter().all(|r| r.matches(&probe)))
        });
    Some(admits)
}

/// [`pod_platforms`] as the scheduler sees the pod, with `os` (when given) added as a
/// `kubernetes.io/os` node selector.
fn scheduled(spec: &PodSpec, node_platforms: &[Platform], os: Option<&str>) -> PodPlatforms {
    let selector: Vec<Requirement> = spec
        .node_selector
        .iter()
        .flatten()
        .filter_map(|(key, value)| {
            let label = Label::from_key(key)?;
            Some(Requirement::In(label, vec![label.normalize(value)]))
        })
        .chain(os.map(|os| Requirement::In(Label::Os, vec![os.to_owned()])))
        .collect();
    let terms = required_terms(spec);
    let constrained = !selector.is_empty()
        || terms
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.iter().any(|term| !term.is_empty()));

    let nodes: BTreeSet<Platform> = node_platforms.iter().map(Platform::normalized).collect();
    if selector.is_empty() && terms.is_none() {
        // Most pods: wherever a node is.
        return PodPlatforms {
            candidates: nodes.into_iter().collect(),
            constrained: false,
            other_os: Vec::new(),
            windows_builds: super::WindowsBuilds::new(),
        };
    }
    let mut universe = nodes.clone();
    let conjunctions: Vec<Vec<&Requirement>> = match &terms {
        None => vec![selector.iter().collect()],
        Some(terms) => terms
            .iter()
            .map(|term| selector.iter().chain(term).collect())
            .collect(),
    };
    for conjunction in &conjunctions {
        universe.extend(named_platforms(conjunction, &nodes));
    }

    let admits = |p: &Platform| {
        selector.iter().all(|r| r.matches(p))
            && terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|term| term.iter().all(|r| r.matches(p))))
    };
    PodPlatforms {
        candidates: universe.into_iter().filter(|p| admits(p)).collect(),
        constrained,
        other_os: Vec::new(),
        windows_builds: super::WindowsBuilds::new(),
    }
}

/// Required node affinity as an OR of terms, each an AND of platform requirements; `None` when
/// there is no required node affinity. A term with neither expressions nor fields matches no node
/// and is left out.
fn required_terms(spec: &PodSpec) -> Option<Vec<Vec<Requirement>>> {
    let affinity = spec.affinity.as_ref()?.node_affinity.as_ref()?;
    let required = affinity
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    let present = |list: &Option<Vec<NodeSelectorRequirement>>| list.iter().flatten().count() > 0;
    let terms = required.node_selector_terms.iter();
    let terms = terms.filter(|t| present(&t.match_expressions) || present(&t.match_fields));
    let platform_requirements = |t: &NodeSelectorTerm| {
        let expressions = t.match_expressions.iter().flatten();
        expressions
            .filter_map(Requirement::from_expression)
            .collect()
    };
    Some(terms.map(platform_requirements).collect())
}

/// Platforms one AND'ed set of requirements names with `In` that no node platform has. With both
/// labels named, each named (os, architecture) pair the nodes lack; with one label named, each
/// value of it the nodes lack, paired with every value the nodes have for the other label.
fn named_platforms(conjunction: &[&Requirement], nodes: &BTreeSet<Platform>) -> Vec<Platform> {
    let named = |label: Label| -> BTreeSet<&str> {
        let values = conjunction.iter().flat_map(|r| r.named(label));
        values.map(String::as_str).collect()
    };
    let known = |label: Label| -> BTreeSet<&str> { nodes.iter().map(|n| label.of(n)).collect() };
    let (oses, architectures) = (named(Label::Os), named(Label::Arch));
    let (oses, architectures) = match (oses.is_empty(), architectures.is_empty()) {
        (true, true) => return Vec::new(),
        (false, false) => (oses, architectures),
        (false, true) => (&oses - &known(Label::Os), known(Label::Arch)),
        (true, false) => (known(Label::Os), &architectures - &known(Label::Arch)),
    };
    let known = |os: &str, arch: &str| nodes.iter().any(|n| n.os == os && n.architecture == arch);
    let mut out = Vec::new();
    for os in oses {
        let missing = architectures.iter().filter(|arch| !known(os, arch));
        out.extend(missing.map(|arch| normalized(os, arch, "")));
    }
    out
}
