//! `image-size` against a real docker-registry: images built here with a filler layer of known size
//! (single platform, and an index whose two platforms differ in size), admitted through the real router.
//! What is weighed is what the manifests state; what it costs is read from the registry's access log.

mod support;

use pullgate::policy::quantity::human;
use serde_json::{Value, json};
use support::registry::{self, ImageKind, Platform, RegistryOptions};
use support::webhook::{admit, app, bounded, pod_review, policy_text, settings_for, warnings};

/// The shipped registry rules that shape the conversation, with a limit small test images can pass.
const RULES: &str =
    "image-exists: {}\nplatform-supported: {}\nimage-size: {maxCompressedSize: 200Ki}";

fn pod(image: &str, arch: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "app", "image": image}]});
    if let Some(arch) = arch {
        spec["nodeSelector"] = json!({"kubernetes.io/arch": arch});
    }
    pod_review(spec)
}

fn size_warnings(response: &Value) -> Vec<String> {
    warnings(response)
        .into_iter()
        .filter(|w| w.contains("[image-size]"))
        .collect()
}

#[tokio::test]
async fn a_single_image_over_the_limit_is_warned_with_its_size_at_no_extra_cost() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let big = ImageKind::single(Platform::linux("amd64").with_padding(300 * 1024));
        let big = registry::push_image_detailed(&reg, "team/big", "v1", big)
            .await
            .expect("push");
        let small = ImageKind::single(Platform::linux("amd64").with_padding(20 * 1024));
        registry::push_image(&reg, "team/small", "v1", small)
            .await
            .expect("push");
        let app = app(&settings_for(&[&reg]), None, policy_text(RULES));
        let host = reg.host();

        let response = admit(&app, &pod(&format!("{host}/team/big:v1"), None)).await;
        assert_eq!(
            response["allowed"], true,
            "a warning never denies: {response}"
        );
        let expected = format!(
            "[image-size] the image is {} for linux/amd64 compressed, over the 200Ki limit",
            human(big.sizes[0])
        );
        let found = size_warnings(&response);
        assert!(
            found.len() == 1 && found[0].contains(&expected),
            "{found:?}\nwanted {expected}"
        );
        assert!(found[0].contains("multi-stage build"), "{found:?}");
        assert!(
            big.sizes[0] > 300 * 1024,
            "the filler is incompressible: {}",
            big.sizes[0]
        );
        // The size came with the GET that found the digest: no manifest was read by digest.
        assert_eq!(
            reg.count_requests("GET", &format!("/manifests/{}", big.digest)),
            0
        );
        let cost = reg.requests().len();

        let response = admit(&app, &pod(&format!("{host}/team/small:v1"), None)).await;
        assert_eq!(size_warnings(&response), Vec::<String>::new(), "{response}");

        // Seen before: the same warning, no request.
        let before = reg.requests().len();
        let response = admit(&app, &pod(&format!("{host}/team/big:v1"), None)).await;
        assert_eq!(size_warnings(&response), found);
        assert_eq!(
            reg.requests().len(),
            before,
            "cached: {cost} requests the first time"
        );
    })
    .await;
}

#[tokio::test]
async fn an_index_is_weighed_only_for_the_platforms_the_pod_may_land_on() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let kind = ImageKind::OciIndex(vec![
            Platform::linux("amd64").with_padding(300 * 1024),
            Platform::linux("arm64").with_padding(20 * 1024),
        ]);
        let pushed = registry::push_image_detailed(&reg, "team/multi", "v1", kind)
            .await
            .expect("push");
        let (amd64, arm64) = (&pushed.platforms[0].1, &pushed.platforms[1].1);
        let app = app(&settings_for(&[&reg]), None, policy_text(RULES));
        let image = format!("{}/team/multi:v1", reg.host());
        let reads = |digest: &str| reg.count_requests("GET", &format!("/manifests/{digest}"));

        // Pinned to arm64: only the arm64 manifest is read, and it is small.
        let response = admit(&app, &pod(&image, Some("arm64"))).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(size_warnings(&response), Vec::<String>::new(), "{response}");
        assert_eq!((reads(arm64), reads(amd64)), (1, 0), "{:?}", reg.requests());

        // Pinned to amd64: its manifest is read once, and the warning names the platform and size.
        let response = admit(&app, &pod(&image, Some("amd64"))).await;
        let expected = format!(
            "[image-size] the image is {} for linux/amd64 compressed, over the 200Ki limit",
            human(pushed.sizes[0])
        );
        let found = size_warnings(&response);
        assert!(
            found.len() == 1 && found[0].contains(&expected),
            "{found:?}\nwanted {expected}"
        );
        assert!(!found[0].contains("arm64"), "{found:?}");
        assert_eq!((reads(arm64), reads(amd64)), (1, 1));

        // Every digest is known now: both pods again cost no request at all.
        let before = reg.requests().len();
        for arch in ["arm64", "amd64"] {
            admit(&app, &pod(&image, Some(arch))).await;
        }
        assert_eq!(reg.requests().len(), before, "{:?}", reg.requests());
    })
    .await;
}

#[tokio::test]
async fn offline_check_reports_image_size_as_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::write(
        policies.join("size.yaml"),
        "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: size}\nspec:\n  rules:\n    image-size: {maxCompressedSize: 1Gi}\n",
    )
    .expect("policy");
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: demo}\nspec:\n  containers: [{name: app, image: registry.example.com/team/app:v1}]\n",
    )
    .expect("manifest");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .args(["check", "--offline", "-o", "json", "--policies"])
        .arg(&policies)
        .arg("-f")
        .arg(&manifest)
        .output()
        .expect("pullgate check");
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
    let text = report.to_string();
    assert!(
        text.contains(r#""rule":"image-size""#) && text.contains(r#""action":"skipped""#),
        "{report:#}"
    );
}
