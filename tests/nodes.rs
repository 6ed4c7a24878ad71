//! Node platform discovery: the platforms of unconstrained pods come from Node labels when the
//! Kubernetes API is available, read through a real kube client from the in-process fake API.

mod support;

use pullgate::platform::Platform;
use pullgate::server::nodes;
use support::kube::FakeKube;
use support::registry::{self, ImageKind, RegistryOptions};
use support::webhook::{
    admit, app_with_resolver, bounded, one_container, pod_review, settings_for, shipped_policies,
    warnings,
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
        let found = nodes::discover(kube.client().expect("client"))
            .await
            .expect("listed");
        assert_eq!(
            found,
            vec![platform("linux/amd64"), platform("linux/arm64")]
        );
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
        updates.set_node_platforms(
            nodes::discover(kube.client().expect("client"))
                .await
                .expect("listed"),
        );
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
