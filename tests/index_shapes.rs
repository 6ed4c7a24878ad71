//! Index shapes containerd pulls: entries that name no platform (containerd reads the child's config)
//! and nested indexes are followed, so they are judged by what they really hold — on a real
//! docker-registry with images the tests build.

mod support;

use support::registry::{self, ImageKind, Platform, RegistryOptions};
use support::webhook::{
    admit, app, bounded, message, one_container, pod_review, settings_for, shipped_policies,
    warnings,
};

#[tokio::test]
async fn entries_without_platform_and_nested_indexes_are_followed() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let both = vec![Platform::linux("amd64"), Platform::linux("arm64")];
        let cases = [
            (
                "unnamed",
                ImageKind::IndexWithoutPlatforms(both.clone()),
                None,
            ),
            ("nested", ImageKind::NestedIndex(both), None),
            (
                "unnamed-arm",
                ImageKind::IndexWithoutPlatforms(vec![Platform::linux("arm64")]),
                Some("image has no variant for linux/amd64 (it offers linux/arm64)"),
            ),
            (
                "nested-arm",
                ImageKind::NestedIndex(vec![Platform::linux("arm64")]),
                Some("image has no variant for linux/amd64 (it offers linux/arm64)"),
            ),
        ];
        for (repo, kind, _) in &cases {
            registry::push_image(&reg, &format!("shapes/{repo}"), "v1", kind.clone())
                .await
                .expect("push");
        }
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        for (repo, _, denial) in cases {
            let image = format!("{}/shapes/{repo}:v1", reg.host());
            let response = admit(&app, &pod_review(one_container(&image))).await;
            match denial {
                None => {
                    assert_eq!(response["allowed"], true, "{repo}: {response}");
                    assert!(warnings(&response).is_empty(), "{repo}: {response}");
                }
                Some(text) => {
                    assert_eq!(response["allowed"], false, "{repo}: {response}");
                    assert!(
                        message(&response).contains(&format!("[platform-supported] {text}")),
                        "{repo}: {response}"
                    );
                }
            }
        }
    })
    .await;
}
