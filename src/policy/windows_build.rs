//! `windows-build`: a Windows image's build (`os.version`) against the builds of the Windows nodes the
//! pod may land on (`node.kubernetes.io/windows-build`, or `nodePlatforms` entries), by containerd's
//! matcher ([`crate::platform::windows`]).

use super::rules::Outcome;
use crate::facts::{ContainerFacts, ImageStatus, Resolved, WindowsOffer};
use crate::platform::Platform;
use crate::platform::windows::{LABEL_WINDOWS_BUILD, host_runs};

/// One Windows node build the image has nothing for.
struct BuildMiss<'a> {
    node: &'a Platform,
    build: &'a str,
    offered: Vec<&'a str>,
}

/// `windows-build`: a Windows node runs only images of a build it is compatible with (containerd's
/// matcher, [`crate::platform::windows::host_runs`]): an index without such an entry fails to pull ("no
/// matching manifest"), a single image of another build fails to start ("the container operating
/// system does not match the host operating system"). Definitive when every eligible node's build
/// misses; a warning when some do, or when the builds of the nodes are not known.
pub(super) fn check(container: &ContainerFacts, resolved: &Resolved) -> Option<Outcome> {
    let pod = resolved
        .pod_platforms
        .as_ref()
        .filter(|p| p.has_windows())?;
    let ImageStatus::Found {
        windows: Some(Ok(offer)),
        ..
    } = resolved.images.get(&container.spec.image_path)?
    else {
        return None;
    };
    let mut misses: Vec<BuildMiss> = Vec::new();
    let (mut eligible, mut unknown) = (0, Vec::new());
    for node in pod.candidates.iter().filter(|p| p.os == "windows") {
        // The image's builds for this platform (a platform it lacks is platform-supported's to say).
        let versions: Vec<Option<&str>> = match offer {
            WindowsOffer::Index(entries) => entries
                .iter()
                .filter(|(platform, _)| platform.runs_on(node))
                .map(|(_, version)| version.as_deref())
                .collect(),
            WindowsOffer::Single(_, version) => vec![version.as_deref()],
        };
        // No os.version anywhere: containerd takes it to run on any build.
        if versions.iter().all(Option::is_none) {
            continue;
        }
        let Some(builds) = pod.windows_builds.get(node) else {
            let offered: Vec<&str> = versions.iter().flatten().copied().collect();
            unknown.push((node, offered));
            continue;
        };
        for build in builds {
            eligible += 1;
            if !versions.iter().any(|v| host_runs(build, *v)) {
                let offered = versions.iter().flatten().copied().collect();
                misses.push(BuildMiss {
                    node,
                    build,
                    offered,
                });
            }
        }
    }
    let index = matches!(offer, WindowsOffer::Index(_));
    let Some(first) = misses.first() else {
        let (node, offered) = unknown.first()?;
        return Some(Outcome::tentative(
            format!(
                "could not verify the Windows build: the image is for {} and the build of {node} nodes is not known",
                offered.join(", ")
            ),
            format!(
                "let pullgate read Node labels (Kubernetes API), or set nodePlatforms: [{node}:BUILD]"
            ),
        ));
    };
    let failure = match index {
        true => "it has no entry a node of that build pulls (no matching manifest)",
        false => {
            "a process-isolated container of another build does not start (the container operating system does not match the host operating system)"
        }
    };
    let builds: Vec<&str> = misses.iter().map(|m| m.build).collect();
    let message = format!(
        "the image is built for Windows {} but {} nodes run build {}: {failure}",
        first.offered.join(", "),
        first.node,
        builds.join(", ")
    );
    let fix = format!(
        "use an image (or a multi-build index) for Windows {}, or schedule onto nodes of a build it has (nodeSelector {}: …)",
        builds.join(" / "),
        LABEL_WINDOWS_BUILD
    );
    if misses.len() == eligible && unknown.is_empty() {
        Some(Outcome::new(message, fix))
    } else {
        Some(Outcome::tentative(format!("some nodes: {message}"), fix))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::workload::{ContainerList, ContainerSpec};

    fn platform(text: &str) -> Platform {
        text.parse().expect("platform")
    }

    fn container() -> ContainerFacts {
        ContainerFacts::new(ContainerSpec {
            list: ContainerList::Containers,
            index: 0,
            name: "app".into(),
            image: "registry.example.com/app:1.0".into(),
            pull_policy: None,
            image_path: "spec.containers[0].image".into(),
            command: Some(vec!["app.exe".into()]),
            args: None,
            run_as: Default::default(),
        })
    }

    fn windows_pod(offer: WindowsOffer, builds: &[&str]) -> Resolved {
        let mut resolved = Resolved::default();
        resolved.images.insert(
            "spec.containers[0].image".into(),
            ImageStatus::Found {
                digest: "sha256:abc".into(),
                platforms: None,
                secret_problems: Vec::new(),
                sizes: None,
                configs: None,
                windows: Some(Ok(offer)),
            },
        );
        let windows = platform("windows/amd64");
        let mut windows_builds = crate::platform::WindowsBuilds::new();
        if !builds.is_empty() {
            let builds = builds.iter().map(|b| (*b).to_owned()).collect();
            windows_builds.insert(windows.clone(), builds);
        }
        resolved.pod_platforms = Some(crate::platform::PodPlatforms {
            candidates: vec![windows],
            constrained: true,
            other_os: Vec::new(),
            windows_builds,
        });
        resolved
    }

    fn index(versions: &[Option<&str>]) -> WindowsOffer {
        let entries = versions
            .iter()
            .map(|v| (platform("windows/amd64"), v.map(str::to_owned)))
            .collect();
        WindowsOffer::Index(entries)
    }

    fn single(version: Option<&str>) -> WindowsOffer {
        WindowsOffer::Single(Some(platform("windows/amd64")), version.map(str::to_owned))
    }

    /// `windows-build` on plain facts: the image's builds against the eligible nodes' builds.
    #[rstest]
    #[case::single_same_build(single(Some("10.0.17763.5936")), &["10.0.17763"], None)]
    #[case::single_other_build(single(Some("10.0.20348.2340")), &["10.0.17763"], Some((true, "does not start")))]
    #[case::single_down_level_on_a_newer_host(single(Some("10.0.20348.2340")), &["10.0.26100"], None)]
    #[case::single_without_a_build(single(None), &["10.0.17763"], None)]
    #[case::index_has_the_build(index(&[Some("10.0.17763.1"), Some("10.0.20348.1")]), &["10.0.17763"], None)]
    #[case::index_lacks_the_build(index(&[Some("10.0.20348.1")]), &["10.0.17763"], Some((true, "no matching manifest")))]
    #[case::index_entry_without_a_build_runs(index(&[Some("10.0.20348.1"), None]), &["10.0.17763"], None)]
    #[case::some_nodes_miss(index(&[Some("10.0.20348.1")]), &["10.0.17763", "10.0.20348"], Some((false, "some nodes:")))]
    #[case::builds_unknown(single(Some("10.0.20348.2340")), &[], Some((false, "could not verify the Windows build")))]
    #[case::builds_unknown_and_none_named(single(None), &[], None)]
    fn windows_build_against_the_nodes_builds(
        #[case] offer: WindowsOffer,
        #[case] builds: &[&str],
        #[case] expected: Option<(bool, &str)>,
    ) {
        let pod = container();
        let outcome = check(&pod, &windows_pod(offer, builds));
        match expected {
            None => assert_eq!(outcome, None),
            Some((definitive, said)) => {
                let outcome = outcome.expect("fires");
                assert_eq!(outcome.definitive, definitive, "{outcome:?}");
                assert!(outcome.message.contains(said), "{outcome:?}");
            }
        }
    }
}
