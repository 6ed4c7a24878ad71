//! Windows builds: whether a Windows node runs an image built for another Windows build, as containerd
//! decides it — the `os.version` matcher of containerd/platforms v1.0.0-rc.5 (vendored by containerd
//! 2.x; `platform_windows_compat.go`), which picks an index entry on a Windows node, and which mirrors the
//! host's own rule for process-isolated containers ("The container operating system does not match the
//! host operating system").
//!
//! - A version is `major.minor.build[.revision]`: fewer than two dots, or a part that is not a number
//!   (major and minor up to 255, build up to 65535), is the zero version; the revision is ignored.
//! - An image without `os.version`, or a host whose version is zero, matches.
//! - Major and minor must be equal. A host older than Windows Server 2022 (build 20348) runs only its own
//!   build; a newer host runs builds from the LTSC release before the newest LTSC it has reached (with the
//!   releases known, 2022 and 2025, that is 20348 for every such host) up to its own build, never newer.
//!
//! containerd 1.7 compared differently (the host's `major.minor.build` as a prefix of the image's
//! `os.version`, so no down-level builds): README "Where pullgate and a node differ".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use super::{Platform, PlatformError};

/// The node label kubelet sets on Windows nodes: `major.minor.build`, e.g. `10.0.17763`.
pub const LABEL_WINDOWS_BUILD: &str = "node.kubernetes.io/windows-build";

/// The Windows builds of a cluster's Windows nodes, by (normalised) node platform; a platform absent
/// means its nodes' builds are not known.
pub type WindowsBuilds = BTreeMap<Platform, BTreeSet<String>>;

/// Windows Server 2022 (21H2): from this build, newer hosts run older LTSC builds.
const LTSC2022: u16 = 20348;
/// Windows Server 2025.
const LTSC2025: u16 = 26100;
/// The stable-ABI LTSC releases, ascending.
const COMPAT_LTSC_RELEASES: [u16; 2] = [LTSC2022, LTSC2025];

/// A Windows version as containerd reads it (`getWindowsOSVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowsVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u16,
}

impl WindowsVersion {
    /// containerd's `getWindowsOSVersion`: the zero version for anything it cannot read.
    pub fn parse(text: &str) -> WindowsVersion {
        if text.matches('.').count() < 2 {
            return WindowsVersion::default();
        }
        let mut parts = text.splitn(4, '.');
        let (Some(major), Some(minor), Some(build)) = (parts.next(), parts.next(), parts.next())
        else {
            return WindowsVersion::default();
        };
        let number = |part: &str| part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty();
        if !(number(major) && number(minor) && number(build)) {
            return WindowsVersion::default();
        }
        match (major.parse(), minor.parse(), build.parse()) {
            (Ok(major), Ok(minor), Ok(build)) => WindowsVersion {
                major,
                minor,
                build,
            },
            _ => WindowsVersion::default(),
        }
    }

    fn is_zero(&self) -> bool {
        *self == WindowsVersion::default()
    }
}

/// containerd's `checkWindowsHostAndContainerCompat` (platforms v1.0.0-rc.5).
fn compatible(host: WindowsVersion, image: WindowsVersion) -> bool {
    if host.major != image.major || host.minor != image.minor {
        return false;
    }
    if host.build < LTSC2022 {
        return host.build == image.build;
    }
    let mut floor = LTSC2022;
    for (i, release) in COMPAT_LTSC_RELEASES.iter().enumerate().rev() {
        if host.build >= *release {
            floor = match i {
                0 => *release,
                _ => COMPAT_LTSC_RELEASES[i - 1],
            };
            break;
        }
    }
    floor <= image.build && image.build <= host.build
}

/// Whether a Windows node of build `host` (`node.kubernetes.io/windows-build`, e.g. `10.0.17763`) runs
/// an image whose `os.version` is `image` (containerd's `windowsVersionMatcher.Match`).
pub fn host_runs(host: &str, image: Option<&str>) -> bool {
    let host = WindowsVersion::parse(host);
    match image {
        None | Some("") => true,
        Some(_) if host.is_zero() => true,
        Some(image) => compatible(host, WindowsVersion::parse(image)),
    }
}

/// The builds of the Windows nodes of each Windows candidate the pod may land on: the known builds of
/// that platform's nodes, or just the build its `node.kubernetes.io/windows-build` node selector names
/// (known or not). A candidate whose nodes' builds are not known is left out.
pub fn eligible_builds(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    candidates: &[Platform],
    known: &WindowsBuilds,
) -> WindowsBuilds {
    let selected = spec
        .node_selector
        .as_ref()
        .and_then(|selector| selector.get(LABEL_WINDOWS_BUILD));
    candidates
        .iter()
        .filter(|p| p.os == "windows")
        .filter_map(|platform| {
            let builds = match selected {
                Some(build) => BTreeSet::from([build.clone()]),
                None => known.get(platform)?.clone(),
            };
            Some((platform.clone(), builds))
        })
        .collect()
}

/// A node platform as the settings write it: `os/architecture[/variant]`, and for Windows nodes
/// optionally `:BUILD`, the nodes' `node.kubernetes.io/windows-build` (`windows/amd64:10.0.20348`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlatform {
    pub platform: Platform,
    pub windows_build: Option<String>,
}

impl FromStr for NodePlatform {
    type Err = PlatformError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((platform, build)) = text.split_once(':') else {
            return Ok(NodePlatform {
                platform: text.parse()?,
                windows_build: None,
            });
        };
        let platform: Platform = platform.parse()?;
        let readable = build.split('.').count() == 3 && !WindowsVersion::parse(build).is_zero();
        if !platform.os.eq_ignore_ascii_case("windows") || !readable {
            return Err(PlatformError::WindowsBuild {
                input: text.to_owned(),
            });
        }
        Ok(NodePlatform {
            platform,
            windows_build: Some(build.to_owned()),
        })
    }
}

impl fmt::Display for NodePlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.platform)?;
        match &self.windows_build {
            Some(build) => write!(f, ":{build}"),
            None => Ok(()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for NodePlatform {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// In the JSON Schema of the settings file: `os/architecture[/variant][:build]`.
impl schemars::JsonSchema for NodePlatform {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NodePlatform".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[a-z0-9_]+/[a-z0-9_]+(/[a-z0-9_]+)?(:[0-9]+\\.[0-9]+\\.[0-9]+)?$",
            "description": "`os/architecture[/variant]`, e.g. `linux/arm64/v8`; Windows nodes may add `:BUILD`, their node.kubernetes.io/windows-build (`windows/amd64:10.0.20348`)"
        })
    }
}

/// The node platforms of settings entries, and the Windows builds they name.
pub fn split_node_platforms(entries: &[NodePlatform]) -> (Vec<Platform>, WindowsBuilds) {
    let mut builds = WindowsBuilds::new();
    for entry in entries {
        if let Some(build) = &entry.windows_build {
            let platform = entry.platform.normalized();
            builds.entry(platform).or_default().insert(build.clone());
        }
    }
    let platforms = entries.iter().map(|e| e.platform.clone()).collect();
    (platforms, builds)
}

/// The Windows builds of a cluster's nodes from their labels (`kubernetes.io/os`, `kubernetes.io/arch`,
/// `node.kubernetes.io/windows-build`); nodes without the build label are left out.
pub fn builds_from_node_labels<'a>(
    nodes: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
) -> WindowsBuilds {
    let mut builds = WindowsBuilds::new();
    for labels in nodes {
        let (Some(os), Some(architecture), Some(build)) = (
            labels.get("kubernetes.io/os"),
            labels.get("kubernetes.io/arch"),
            labels.get(LABEL_WINDOWS_BUILD),
        ) else {
            continue;
        };
        let platform = Platform {
            os: os.clone(),
            architecture: architecture.clone(),
            variant: None,
        }
        .normalized();
        builds.entry(platform).or_default().insert(build.clone());
    }
    builds
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn v(build: u16) -> String {
        format!("10.0.{build}.1")
    }

    /// containerd/platforms `Test_PlatformCompat` (host → image).
    #[rstest]
    #[case::ltsc2019_runs_ltsc2019(17763, 17763, true)]
    #[case::ltsc2019_not_ltsc2022(17763, 20348, false)]
    #[case::ltsc2022_not_ltsc2019(20348, 17763, false)]
    #[case::ltsc2022_runs_ltsc2022(20348, 20348, true)]
    #[case::win11_22h2_not_ltsc2019(22621, 17763, false)]
    #[case::win11_22h2_runs_ltsc2022(22621, 20348, true)]
    #[case::v23h2_not_ltsc2019(25398, 17763, false)]
    #[case::v23h2_runs_ltsc2022(25398, 20348, true)]
    #[case::ltsc2025_runs_ltsc2022(26100, 20348, true)]
    #[case::ltsc2022_not_ltsc2025(20348, 26100, false)]
    #[case::ltsc2022_not_win11_22h2(20348, 22621, false)]
    #[case::ltsc2025_runs_win11_22h2(26100, 22621, true)]
    // rc.5's floor: a host past LTSC 2025 still runs LTSC 2022 (rc.4 did not).
    #[case::after_ltsc2025_runs_ltsc2022(26200, 20348, true)]
    #[case::after_ltsc2025_runs_ltsc2025(26200, 26100, true)]
    #[case::never_newer_than_the_host(26100, 26200, false)]
    fn platform_compat(#[case] host: u16, #[case] image: u16, #[case] runs: bool) {
        assert_eq!(host_runs(&format!("10.0.{host}"), Some(&v(image))), runs);
    }

    /// `TestMatchComparerMatch_WCOW` (a 17763 host) and `TestFallbackOnOSVersion`, then the parse rules.
    #[rstest]
    #[case::same_build_revision_1("10.0.17763", Some("10.0.17763.1"), true)]
    #[case::same_build_revision_2("10.0.17763", Some("10.0.17763.2"), true)]
    #[case::older_build("10.0.17763", Some("10.0.17762.1"), false)]
    #[case::newer_build("10.0.17763", Some("10.0.17764.1"), false)]
    #[case::no_image_version("10.0.17763", None, true)]
    #[case::unknown_host("99.99.99.99", None, true)]
    #[case::unreadable_host_matches_all("10.0", Some("10.0.17763.1"), true)]
    #[case::unreadable_image_never("10.0.17763", Some("ltsc2019"), false)]
    #[case::junk_revision_ignored("10.0.17763", Some("10.0.17763.abc"), true)]
    #[case::build_past_u16("10.0.17763", Some("10.0.70000.1"), false)]
    #[case::signed_is_unreadable("10.0.17763", Some("+10.0.17763"), false)]
    fn matcher(#[case] host: &str, #[case] image: Option<&str>, #[case] runs: bool) {
        assert_eq!(host_runs(host, image), runs);
    }

    #[rstest]
    #[case::plain("linux/amd64", "linux/amd64", None)]
    #[case::windows_build("windows/amd64:10.0.20348", "windows/amd64", Some("10.0.20348"))]
    fn node_platforms_in_settings(
        #[case] text: &str,
        #[case] platform: &str,
        #[case] build: Option<&str>,
    ) {
        let parsed: NodePlatform = text.parse().expect("valid");
        assert_eq!(parsed.platform.to_string(), platform);
        assert_eq!(parsed.windows_build.as_deref(), build);
        assert_eq!(parsed.to_string(), text);
    }

    #[rstest]
    #[case::linux_with_a_build("linux/amd64:10.0.20348")]
    #[case::revision("windows/amd64:10.0.20348.1")]
    #[case::two_parts("windows/amd64:10.0")]
    #[case::words("windows/amd64:ltsc2022")]
    #[case::empty("windows/amd64:")]
    fn a_bad_build_is_refused_by_name(#[case] text: &str) {
        let error = text.parse::<NodePlatform>().expect_err("refused");
        assert!(error.to_string().contains(text), "{error}");
    }

    #[test]
    fn builds_come_from_node_labels_and_settings() {
        let node = |os: &str, build: Option<&str>| {
            let mut labels = BTreeMap::from([
                ("kubernetes.io/os".to_owned(), os.to_owned()),
                ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
            ]);
            if let Some(build) = build {
                labels.insert(LABEL_WINDOWS_BUILD.to_owned(), build.to_owned());
            }
            labels
        };
        let nodes = [
            node("linux", None),
            node("windows", Some("10.0.17763")),
            node("windows", Some("10.0.20348")),
            node("windows", None),
        ];
        let builds = builds_from_node_labels(&nodes);
        let windows: Platform = "windows/amd64".parse().expect("platform");
        let expected = BTreeSet::from(["10.0.17763".to_owned(), "10.0.20348".to_owned()]);
        assert_eq!(builds, WindowsBuilds::from([(windows.clone(), expected)]));
        let settings: Vec<NodePlatform> = ["linux/amd64", "windows/amd64:10.0.20348"]
            .iter()
            .map(|t| t.parse().expect("valid"))
            .collect();
        let (platforms, builds) = split_node_platforms(&settings);
        assert_eq!(platforms.len(), 2);
        assert_eq!(builds[&windows], BTreeSet::from(["10.0.20348".to_owned()]));
    }
}
