//! Image volumes (`spec.volumes[].image`, ImageVolume): kubelet pulls the reference like a container
//! image, so it is checked with the same rules — exists, platform, credentials, its own `pullPolicy` —
//! under its field path, in Pods and pod templates, and an UPDATE that changes only the volume re-checks
//! only the volume. Real docker-registry on 127.0.0.1, AdmissionReviews through the router.

mod support;

use serde_json::{Value, json};
use support::registry::{self, ImageKind, Platform, RegistryOptions, TestRegistry};
use support::webhook::{
    admit, app, bounded, message, pod_review, settings_for, shipped_policies, warnings,
};

fn spec(reg: &TestRegistry, volume_tag: &str) -> Value {
    json!({
        "containers": [{"name": "app", "image": format!("{}/demo/app:v1", reg.host()),
            "volumeMounts": [{"name": "models", "mountPath": "/models"}]}],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "models", "image": {"reference": format!("{}/demo/models:{volume_tag}", reg.host()),
                "pullPolicy": "IfNotPresent"}},
        ],
    })
}

fn deployment_review(operation: &str, spec: Value, old: Option<Value>) -> Value {
    let object = |spec: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}})
    };
    let mut review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "6d1b2c3a-0000-4000-8000-000000000002",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web", "namespace": "demo", "operation": operation,
            "userInfo": {"username": "tester"},
            "object": object(spec),
            "dryRun": false
        }
    });
    if let Some(old) = old {
        review["request"]["oldObject"] = object(old);
    }
    review
}

async fn registry_with_images() -> TestRegistry {
    let reg = registry::start(RegistryOptions::default())
        .await
        .expect("registry");
    for (repo, tag) in [("demo/app", "v1"), ("demo/models", "v1")] {
        registry::push_image(&reg, repo, tag, ImageKind::single(Platform::linux("amd64")))
            .await
            .expect("push");
    }
    reg
}

#[tokio::test]
async fn a_missing_image_volume_is_denied_under_its_field_path() {
    registry::install_crypto();
    bounded(async {
        let reg = registry_with_images().await;
        let app = app(&settings_for(&[&reg]), None, shipped_policies());

        let present = admit(&app, &pod_review(spec(&reg, "v1"))).await;
        assert_eq!(present["allowed"], true, "{present}");
        assert!(warnings(&present).is_empty(), "{present}");

        let missing = admit(&app, &pod_review(spec(&reg, "v2"))).await;
        assert_eq!(missing["allowed"], false, "{missing}");
        let text = message(&missing);
        assert!(
            text.contains(r#"image volume "models""#)
                && text.contains(r#"[image-exists] tag "v2" not found"#),
            "{text}"
        );

        let in_template = admit(&app, &deployment_review("CREATE", spec(&reg, "v2"), None)).await;
        assert_eq!(in_template["allowed"], false, "{in_template}");

        // A pull policy of Never: the node never pulls it, nothing to check.
        let mut never = spec(&reg, "v2");
        never["volumes"][1]["image"]["pullPolicy"] = json!("Never");
        let response = admit(&app, &pod_review(never)).await;
        assert_eq!(response["allowed"], true, "{response}");
    })
    .await;
}

#[tokio::test]
async fn warnings_name_the_volume_field_path() {
    registry::install_crypto();
    bounded(async {
        let reg = registry_with_images().await;
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        // A volume whose registry cannot be reached: the warning carries the volume's field path.
        let mut unreachable = spec(&reg, "v1");
        unreachable["volumes"][1]["image"]["reference"] = json!("127.0.0.1:1/demo/models:v1");
        let response = admit(&app, &pod_review(unreachable)).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(
            warnings(&response)
                .iter()
                .any(|w| w.starts_with("spec.volumes[1].image.reference: [registry-reachable]")),
            "{response}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_update_of_only_the_volume_rechecks_only_the_volume() {
    registry::install_crypto();
    bounded(async {
        let reg = registry_with_images().await;
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        // The container's image is gone from the registry now; only the volume changes.
        let mut old = spec(&reg, "v1");
        old["containers"][0]["image"] = json!(format!("{}/demo/gone:v1", reg.host()));
        let mut new = old.clone();
        new["volumes"][1]["image"]["reference"] = json!(format!("{}/demo/models:v1", reg.host()));
        old["volumes"][1]["image"]["reference"] = json!(format!("{}/demo/models:v0", reg.host()));
        let before = reg.requests().len();
        let response = admit(
            &app,
            &deployment_review("UPDATE", new.clone(), Some(old.clone())),
        )
        .await;
        assert_eq!(
            response["allowed"], true,
            "the unchanged container is not re-checked: {response}"
        );
        let asked: Vec<String> = reg
            .requests()
            .split_off(before)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert!(
            asked.iter().all(|p| p.contains("/demo/models/")),
            "{asked:?}"
        );
        assert!(!asked.is_empty());

        // Changing the volume to a missing tag is caught on UPDATE.
        new["volumes"][1]["image"]["reference"] = json!(format!("{}/demo/models:v9", reg.host()));
        let response = admit(&app, &deployment_review("UPDATE", new, Some(old))).await;
        assert_eq!(response["allowed"], false, "{response}");
        assert!(
            message(&response).contains(r#"image volume "models""#),
            "{response}"
        );
    })
    .await;
}

#[tokio::test]
async fn another_platform_in_a_volume_is_a_warning_not_a_denial() {
    registry::install_crypto();
    bounded(async {
        let reg = registry_with_images().await;
        registry::push_image(
            &reg,
            "demo/models",
            "arm",
            ImageKind::single(Platform::linux("arm64")),
        )
        .await
        .expect("push");
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        // The node (linux/amd64 by default) mounts an arm64 single-platform image's files: it never
        // executes them, so pullgate must not deny what the node does.
        let response = admit(&app, &pod_review(spec(&reg, "arm"))).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(
            warnings(&response).iter().any(|w| {
                w.starts_with("spec.volumes[1].image.reference: [platform-supported]")
                    && w.contains("single-platform image still mounts")
            }),
            "{response}"
        );
        // The same image as a container's would fail with exec format error: denied.
        let mut as_container = spec(&reg, "v1");
        as_container["containers"][0]["image"] = json!(format!("{}/demo/models:arm", reg.host()));
        let denied = admit(&app, &pod_review(as_container)).await;
        assert_eq!(denied["allowed"], false, "{denied}");
        assert!(message(&denied).contains("exec format error"), "{denied}");
    })
    .await;
}
