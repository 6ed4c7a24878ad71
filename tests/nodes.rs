//! Node platform discovery: the platforms of unconstrained pods, and the builds of Windows nodes, come
//! from Node labels when the Kubernetes API is available, read through a real kube client from the
//! in-process fake API; the builds decide `windows-build` against real Windows test images.

mod support;

use pullgate::platform::Platform;
use pullgate::server::nodes;
use support::kube::FakeKube;
use support::registry::{self, ImageKind, RegistryOptions};
use support::webhook::{
    admit, app_with_resolver, bounded, message, one_container, pod_review, settings_for,
    shipped_policies, warnings,
};

fn platform(text: &str) -> Platform {
    text.parse().expect("platform")
}

#[tokio::test]
async fn node_labels_give_the_cluster_platforms() {
    registry::install_crypto();
    bounded(async {
        let kube = FakeKube::start().await.expect("fake API");
        kube.insert_node(
            "a",
            &[
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "amd64"),
            ],
        );
        kube.insert_node(
            "b",
            &[
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "amd64"),
            ],
        );
        kube.insert_node(
            "c",
            &[
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "arm64"),
            ],
        );
        kube.insert_node("unlabelled", &[]);
        kube.insert_node(
            "win",
            &[
                ("kubernetes.io/os", "windows"),
                ("kubernetes.io/arch", "amd64"),
                ("node.kubernetes.io/windows-build", "10.0.17763"),
            ],
        );
        let (found, builds) = nodes::discover(kube.client().expect("client"))
            .await
            .expect("listed");
        assert_eq!(
            found,
            vec![
                platform("linux/amd64"),
                platform("linux/arm64"),
                platform("windows/amd64")
            ]
        );
        let expected = std::collections::BTreeSet::from(["10.0.17763".to_owned()]);
        assert_eq!(builds.get(&platform("windows/amd64")), Some(&expected));
    })
    .await;
}

#[tokio::test]
async fn discovered_arm64_nodes_turn_an_amd64_only_image_into_a_warning() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        registry::push_image(
            &reg,
            "demo/app",
            "v1",
            ImageKind::single(registry::Platform::linux("amd64")),
        )
        .await
        .expect("push");
        let kube = FakeKube::start().await.expect("fake API");
        kube.insert_node(
            "a",
            &[
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "amd64"),
            ],
        );
        kube.insert_node(
            "c",
            &[
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "arm64"),
            ],
        );
        let settings = settings_for(&[&reg]);
        let (app, updates, _) = app_with_resolver(
            &settings,
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let review = pod_review(one_container(&format!("{}/demo/app:v1", reg.host())));
        // Configured nodePlatforms (linux/amd64): nothing to say.
        assert!(warnings(&admit(&app, &review).await).is_empty());
        let (platforms, builds) = nodes::discover(kube.client().expect("client"))
            .await
            .expect("listed");
        updates.set_nodes(platforms, builds);
        let found = warnings(&admit(&app, &review).await);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("[platform-supported] may be scheduled on arm64 nodes"),
            "{found:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn forbidden_node_listing_is_an_error_not_a_guess() {
    registry::install_crypto();
    bounded(async {
        let kube = FakeKube::start().await.expect("fake API");
        kube.forbid("/api/v1/nodes");
        assert!(
            nodes::discover(kube.client().expect("client"))
                .await
                .is_err()
        );
    })
    .await;
}

#[tokio::test]
async fn the_windows_build_of_discovered_nodes_decides_which_windows_images_run() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let windows = |version: &str| registry::Platform::windows_amd64().with_os_version(version);
        let pushes = [
            ("demo/ltsc2022", ImageKind::single(windows("10.0.20348.2340"))),
            (
                "demo/both",
                ImageKind::OciIndex(vec![windows("10.0.17763.5936"), windows("10.0.20348.2340")]),
            ),
            ("demo/index2022", ImageKind::OciIndex(vec![windows("10.0.20348.2340")])),
            ("demo/unversioned", ImageKind::single(registry::Platform::windows_amd64())),
        ];
        for (repository, kind) in pushes {
            registry::push_image(&reg, repository, "v1", kind)
                .await
                .expect("push");
        }
        let kube = FakeKube::start().await.expect("fake API");
        kube.insert_node(
            "win-2019",
            &[
                ("kubernetes.io/os", "windows"),
                ("kubernetes.io/arch", "amd64"),
                ("node.kubernetes.io/windows-build", "10.0.17763"),
            ],
        );
        let settings = settings_for(&[&reg]);
        let (app, updates, _) = app_with_resolver(
            &settings,
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        let pod = |repository: &str, selector: serde_json::Value| {
            pod_review(serde_json::json!({"os": {"name": "windows"}, "nodeSelector": selector,
                "containers": [{"name": "app", "image": format!("{}/{repository}:v1", reg.host()),
                    "command": ["app.exe"]}]}))
        };
        let on_windows = || serde_json::json!({"kubernetes.io/os": "windows"});
        // The nodes' builds not known yet: a warning, never a denial.
        let response = admit(&app, &pod("demo/ltsc2022", on_windows())).await;
        assert_eq!(response["allowed"], true, "{response}");
        let found = warnings(&response);
        assert!(
            found.len() == 1
                && found[0].contains("[windows-build] could not verify the Windows build: the image is for 10.0.20348.2340 and the build of windows/amd64 nodes is not known"),
            "{found:?}"
        );

        let (platforms, builds) = nodes::discover(kube.client().expect("client"))
            .await
            .expect("listed");
        updates.set_nodes(platforms, builds);
        // A single 2022 image on 2019 nodes: it pulls, and does not start.
        let response = admit(&app, &pod("demo/ltsc2022", on_windows())).await;
        assert_eq!(response["allowed"], false, "{response}");
        let said = message(&response);
        assert!(
            said.contains("[windows-build] the image is built for Windows 10.0.20348.2340 but windows/amd64 nodes run build 10.0.17763: a process-isolated container of another build does not start"),
            "{said}"
        );
        // An index with only a 2022 entry: no matching manifest.
        let said = message(&admit(&app, &pod("demo/index2022", on_windows())).await);
        assert!(said.contains("no matching manifest"), "{said}");
        // An index with a 2019 entry, or an image that names no build: they run.
        for repository in ["demo/both", "demo/unversioned"] {
            let response = admit(&app, &pod(repository, on_windows())).await;
            assert_eq!(response["allowed"], true, "{repository}: {response}");
            assert!(warnings(&response).is_empty(), "{repository}: {response}");
        }
        // Scheduled onto 2022 nodes by their label: the 2022 image runs there.
        let selector = serde_json::json!({"kubernetes.io/os": "windows",
            "node.kubernetes.io/windows-build": "10.0.20348"});
        let response = admit(&app, &pod("demo/ltsc2022", selector)).await;
        assert_eq!(response["allowed"], true, "{response}");
    })
    .await;
}
