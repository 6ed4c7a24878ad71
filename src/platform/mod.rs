//! Platforms: where a pod may land, and whether an image runs there.
//!
//! This module owns the [`Platform`] newtype (`os/architecture[/variant]`), the question "which
//! node platforms may this pod be scheduled on" ([`pod_platforms`]) and the comparison of an
//! image's platforms with that answer ([`compare`]). It is pure: no I/O, no Kubernetes client.
//!
//! **Normalisation and matching mirror containerd's `platforms` package**, which is what pulls
//! and selects the manifest on the node:
//!
//! - [`Platform::normalized`] is `platforms.Normalize`: os lowercased (`macos` is `darwin`);
//!   `x86_64`/`x86-64` are `amd64` (variant `v1` dropped); `aarch64` is `arm64` (variant `v8`
//!   dropped); `arm` without a variant is `arm/v7`; `armhf` is `arm/v7`, `armel` is `arm/v6`;
//!   `i386` is `386`.
//! - [`Platform::runs_on`] is `platforms.Only(node).Match(image)`: the node accepts its own
//!   platform and, in order, `amd64/vN` → `amd64/v(N-1)..v1` and `386`; `arm/vN` →
//!   `arm/v(N-1)..v5`; `arm64` (`v8`) → `arm/v8..v5`; `arm64/v8.x` → `arm64/v8.(x-1)..v8` then
//!   arm; `arm64/v9.x` → `arm64/v9.(x-1)..v9`, `arm64/v8.(x+5)..v8`, then arm. Nothing else
//!   runs cross-architecture. Windows `os.version` is not part of this comparison (a
//!   `windows/amd64` image runs on any `windows/amd64` node here; [`windows`] compares builds, for
//!   `windows-build`), and an arm64 minor variant of two digits (`v8.10`) is honoured where
//!   containerd only parses one digit.
//!
//! **Scheduling follows kube-scheduler's NodeAffinity plugin**, restricted to the platform labels
//! `kubernetes.io/os` and `kubernetes.io/arch` and their legacy `beta.kubernetes.io/` twins
//! (kubelet sets all four, so a twin is the same constraint). `nodeSelector` entries and required
//! node affinity are AND'ed; affinity terms are OR'ed and the expressions of a term AND'ed; a term
//! with neither expressions nor fields matches no node. `In`, `NotIn` and `Exists` work as on any
//! label; `DoesNotExist` matches no node, since every node carries these labels. Other keys,
//! other operators and `matchFields` do not constrain the platform and are ignored, as are
//! preferred affinity, taints and tolerations. (RuntimeClass `scheduling.nodeSelector` has been
//! merged into `nodeSelector` by admission before a validating webhook sees the pod.)
//!
//! A platform a selector names explicitly is a candidate even when the cluster's node list lacks
//! it: the list may be a guess (the default is `[linux/amd64]`) or nodes may be provisioned on
//! demand, and the pod's author asked for it. An architecture no node has, named without an
//! operating system, is paired with every operating system of the node list, and vice versa.
//!
//! **`spec.os.name`** does not steer the scheduler, but kubelet refuses a pod whose declared OS is not
//! its own (`PodOSNotSupported`): the pod can only *run* where the OS matches. So the candidates the
//! image is compared with are those of the OS the pod declares (as if it were a `kubernetes.io/os`
//! selector), and the scheduler's other choices are kept apart ([`PodPlatforms::other_os`]).

use std::collections::BTreeSet;
use std::fmt;

mod scheduling;
pub mod windows;

pub use scheduling::{PodPlatforms, os_allowed, pod_platforms};
use std::str::FromStr;
pub use windows::{NodePlatform, WindowsBuilds};

/// The stable node label holding the operating system (`GOOS`).
const LABEL_OS: &str = "kubernetes.io/os";
/// The stable node label holding the architecture (`GOARCH`).
const LABEL_ARCH: &str = "kubernetes.io/arch";
/// Deprecated twin of [`LABEL_OS`], still set by kubelet.
const LEGACY_LABEL_OS: &str = "beta.kubernetes.io/os";
/// Deprecated twin of [`LABEL_ARCH`], still set by kubelet.
const LEGACY_LABEL_ARCH: &str = "beta.kubernetes.io/arch";
/// The os and architecture of attestation manifests in OCI image indexes.
const UNKNOWN: &str = "unknown";

/// An image or node platform: `os/architecture[/variant]`, e.g. `linux/amd64`, `linux/arm64/v8`,
/// `linux/arm/v7`, `windows/amd64`.
///
/// Parsing validates the shape and keeps the text as written, so [`Display`](fmt::Display)
/// round-trips; equality is structural. Use [`Platform::normalized`] to compare meanings
/// (`linux/aarch64` and `linux/arm64/v8` are the same platform). Every platform returned by
/// [`pod_platforms`] and [`compare`] is normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// Operating system, e.g. `linux`, `windows`.
    pub os: String,
    /// CPU architecture, e.g. `amd64`, `arm64`, `arm`.
    pub architecture: String,
    /// CPU variant, e.g. `v7` for `arm`, `v8` for `arm64`, `v3` for `amd64`.
    pub variant: Option<String>,
}

impl Platform {
    /// The canonical form, as containerd's `platforms.Normalize` (see the module docs).
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) =
            normalize_arch(&self.architecture, self.variant.as_deref().unwrap_or(""));
        Platform {
            os: normalize_os(&self.os),
            architecture,
            variant: (!variant.is_empty()).then_some(variant),
        }
    }

    /// Whether the platform is in [`normalized`](Platform::normalized) form already (so normalising
    /// it would give an equal copy).
    pub fn is_normalized(&self) -> bool {
        let lower = |s: &str| !s.bytes().any(|b| b.is_ascii_uppercase());
        let variant = self.variant.as_deref().unwrap_or("");
        let os_done = lower(&self.os) && self.os != "macos";
        let arch_done = lower(&self.architecture)
            && lower(variant)
            && !matches!(
                (self.architecture.as_str(), variant),
                (
                    "i386" | "x86_64" | "x86-64" | "aarch64" | "armhf" | "armel",
                    _
                ) | ("amd64", "v1")
                    | ("arm64", "8" | "v8")
                    | ("arm", "" | "5" | "6" | "7" | "8")
            );
        os_done && arch_done && self.variant.as_deref() != Some("")
    }

    /// Whether an image built for `self` runs on a node of platform `node`, as containerd's
    /// `platforms.Only(node)` decides: the node's own platform or an older one it can execute
    /// (`386` on `amd64`, `arm/v6` on `arm/v7`, `arm/v7` on `arm64`, ...).
    pub fn runs_on(&self, node: &Platform) -> bool {
        let image = self.normalized();
        let node = node.normalized();
        // The common case first, without building the node's whole platform vector.
        image == node || node.runnable().contains(&image)
    }

    /// containerd's `platformVector`: the normalised platforms a node of normalised platform
    /// `self` can run, its own first.
    fn runnable(&self) -> Vec<Platform> {
        let variant = self.variant.as_deref().unwrap_or("");
        let v = |n: u32| format!("v{n}");
        let mut out = vec![self.clone()];
        match self.architecture.as_str() {
            "amd64" => {
                if let Some(level) = version(variant) {
                    out.extend((1..level).rev().map(|n| self.with("amd64", &v(n))));
                }
                out.push(self.with("386", ""));
            }
            "arm" => {
                if let Some(level) = version(variant).filter(|&n| n > 5) {
                    out.extend((5..level).rev().map(|n| self.with("arm", &v(n))));
                }
            }
            "arm64" => {
                let variant = if variant.is_empty() { "v8" } else { variant };
                let (major, minor) = variant.split_once('.').unwrap_or((variant, "0"));
                if let (Some(mut major), Ok(mut minor)) = (version(major), minor.parse::<u32>()) {
                    if major == 9 {
                        out.extend((0..minor).rev().map(|m| self.with("arm64", &arm64(9, m))));
                        // v9.0 diverged from v8.5, so v9.x runs v8.(x+5) and below.
                        minor += 5;
                        major = 8;
                        out.push(self.with("arm64", &arm64(8, minor)));
                    }
                    if major >= 8 {
                        let older = (0..minor)
                            .rev()
                            .map(|m| self.with("arm64", &arm64(major, m)));
                        out.extend(older);
                    }
                }
                let arm = match variant.get(..3) {
                    Some("v8." | "v9.") => "v8",
                    _ => variant,
                };
                out.extend(self.with("arm", arm).runnable());
            }
            _ => {}
        }
        out
    }

    /// The normalised platform with this os and the given architecture and variant.
    fn with(&self, architecture: &str, variant: &str) -> Platform {
        normalized(&self.os, architecture, variant)
    }
}

/// The normalised platform of these parts; an empty variant is none.
fn normalized(os: &str, architecture: &str, variant: &str) -> Platform {
    let platform = Platform {
        os: os.to_owned(),
        architecture: architecture.to_owned(),
        variant: (!variant.is_empty()).then(|| variant.to_owned()),
    };
    platform.normalized()
}

/// `vN` (or `N`) as a number.
fn version(variant: &str) -> Option<u32> {
    variant.strip_prefix('v').unwrap_or(variant).parse().ok()
}

/// An arm64 variant name: `v8` for minor 0, else `v8.2`.
fn arm64(major: u32, minor: u32) -> String {
    match minor {
        0 => format!("v{major}"),
        _ => format!("v{major}.{minor}"),
    }
}

/// containerd's `normalizeOS`.
fn normalize_os(os: &str) -> String {
    match os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".to_owned(),
        os => os.to_owned(),
    }
}

/// containerd's `normalizeArch`: `(architecture, variant)`, the variant empty when there is none.
fn normalize_arch(architecture: &str, variant: &str) -> (String, String) {
    let (architecture, variant) = (
        architecture.to_ascii_lowercase(),
        variant.to_ascii_lowercase(),
    );
    let (architecture, variant) = match (architecture.as_str(), variant.as_str()) {
        ("i386", _) => ("386", String::new()),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", String::new()),
        ("x86_64" | "x86-64" | "amd64", _) => ("amd64", variant),
        ("aarch64" | "arm64", "8" | "v8") => ("arm64", String::new()),
        ("aarch64" | "arm64", _) => ("arm64", variant),
        ("armhf", _) | ("arm", "" | "7") => ("arm", "v7".to_owned()),
        ("armel", _) => ("arm", "v6".to_owned()),
        ("arm", "5" | "6" | "8") => ("arm", format!("v{variant}")),
        _ => return (architecture, variant),
    };
    (architecture.to_owned(), variant)
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(PlatformError::Empty);
        }
        let parts: Vec<&str> = s.split('/').collect();
        let (os, architecture, variant) = match parts.as_slice() {
            [os, architecture] => (*os, *architecture, None),
            [os, architecture, variant] => (*os, *architecture, Some(*variant)),
            _ => {
                return Err(PlatformError::ComponentCount {
                    input: s.to_owned(),
                    count: parts.len(),
                });
            }
        };
        let valid = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        };
        if let Some(bad) = parts.iter().find(|c| !valid(c)) {
            return Err(PlatformError::InvalidComponent {
                input: s.to_owned(),
                component: (*bad).to_owned(),
            });
        }
        Ok(Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// In the JSON Schema of the settings file: `os/architecture[/variant]`.
impl schemars::JsonSchema for Platform {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Platform".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[a-z0-9_]+/[a-z0-9_]+(/[a-z0-9_]+)?$",
            "description": "`os/architecture[/variant]`, e.g. `linux/arm64/v8`"
        })
    }
}

impl<'de> serde::Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a platform string was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// The platform is the empty string.
    #[error("platform is empty: expected <os>/<architecture>[/<variant>], e.g. linux/amd64")]
    Empty,
    /// The platform does not have two or three `/`-separated components.
    #[error("invalid platform {input:?}: {count} component(s), expected <os>/<arch>[/<variant>]")]
    ComponentCount { input: String, count: usize },
    /// A component is empty or uses characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid platform {input:?}: component {component:?} is not [A-Za-z0-9_.-]+")]
    InvalidComponent { input: String, component: String },
    /// A `:BUILD` on a node platform that is not Windows, or not `major.minor.build`.
    #[error(
        "invalid node platform {input:?}: only windows platforms take a build, written major.minor.build as the node label node.kubernetes.io/windows-build (windows/amd64:10.0.20348)"
    )]
    WindowsBuild { input: String },
}

/// How an image's platforms cover the platforms a pod may land on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformMatch {
    /// The image runs on every candidate (also when there is no candidate: an unschedulable pod
    /// is reported from [`PodPlatforms`], not here).
    All,
    /// The image runs on some candidates but not on these.
    Some { missing: Vec<Platform> },
    /// The image runs on no candidate. `offered` is normalised, sorted and distinct, without
    /// attestation (`unknown`) entries.
    None {
        wanted: Vec<Platform>,
        offered: Vec<Platform>,
    },
}

/// Compare the platforms an image offers (its index entries, or its single config's platform)
/// with where the pod may land: a candidate is satisfied when any image platform
/// [`runs_on`](Platform::runs_on) it. Entries whose os or architecture is `unknown` (attestation
/// manifests in OCI indexes) are ignored.
pub fn compare(image: &[Platform], pod: &PodPlatforms) -> PlatformMatch {
    // Images usually list their platforms normalised already: borrow those, normalise the rest.
    let offered: Vec<std::borrow::Cow<Platform>> = image
        .iter()
        .filter(|p| !p.os.eq_ignore_ascii_case(UNKNOWN))
        .filter(|p| !p.architecture.eq_ignore_ascii_case(UNKNOWN))
        .map(|p| match p.is_normalized() {
            true => std::borrow::Cow::Borrowed(p),
            false => std::borrow::Cow::Owned(p.normalized()),
        })
        .collect();
    let has = |wanted: &Platform| offered.iter().any(|p| **p == *wanted);
    // Candidates are normalised (see `pod_platforms`): a node's own platform first, the older ones it
    // runs only when that is not offered.
    let missing: Vec<Platform> = pod
        .candidates
        .iter()
        .filter(|node| !has(node) && !node.runnable().iter().any(&has))
        .cloned()
        .collect();
    if missing.is_empty() {
        PlatformMatch::All
    } else if missing.len() == pod.candidates.len() {
        let offered: BTreeSet<Platform> = offered.into_iter().map(|p| p.into_owned()).collect();
        PlatformMatch::None {
            wanted: pod.candidates.clone(),
            offered: offered.into_iter().collect(),
        }
    } else {
        PlatformMatch::Some { missing }
    }
}

/// Which of an index's entry platforms a node of platform `node` pulls, as containerd picks it: among
/// those that [`run on`](Platform::runs_on) the node, the one nearest its own platform (its own first,
/// then older variants in containerd's order), the first listed on a tie. `None` when none runs there.
pub fn preferred<'a>(
    node: &Platform,
    offered: impl IntoIterator<Item = &'a Platform>,
) -> Option<usize> {
    let runnable = node.normalized().runnable();
    offered
        .into_iter()
        .enumerate()
        .filter_map(|(i, platform)| {
            let platform = platform.normalized();
            Some((runnable.iter().position(|p| *p == platform)?, i))
        })
        .min()
        .map(|(_, i)| i)
}

/// The platforms of a cluster's nodes from their `kubernetes.io/os` and `kubernetes.io/arch` labels
/// (nodes missing either label are skipped), normalised, sorted and without duplicates.
pub fn from_node_labels<'a>(
    nodes: impl IntoIterator<Item = &'a std::collections::BTreeMap<String, String>>,
) -> Vec<Platform> {
    let mut platforms: Vec<Platform> = nodes
        .into_iter()
        .filter_map(|labels| {
            let os = labels.get("kubernetes.io/os")?;
            let architecture = labels.get("kubernetes.io/arch")?;
            Some(
                Platform {
                    os: os.clone(),
                    architecture: architecture.clone(),
                    variant: None,
                }
                .normalized(),
            )
        })
        .collect();
    platforms.sort();
    platforms.dedup();
    platforms
}

#[cfg(test)]
mod tests;
