//! The start rules against a real docker-registry, with images built here: the image config's `User`
//! under `runAsNonRoot` (kubelet: CreateContainerConfigError), an image with nothing to run
//! (CreateContainerError: no command specified), an index entry that lies about its platform (exec
//! format error) and `spec.os.name` — through `serve` (a Pod and a Deployment, the real router and the
//! shipped policy) and through `check`. What each costs is read from the registry's access log.

mod check_common;
mod support;

use check_common::{config, run};
use pullgate::check::{Exit, Input, OutputFormat};
use pullgate::platform::NodePlatform;
use serde_json::{Value, json};
use support::registry::{self, ImageKind, Platform, RegistryOptions, TestRegistry, push_image};
use support::webhook::{
    admit, app, bounded, deployment_review, message, pod_review, settings_for, shipped_policies,
    warnings,
};

/// Blob (config) reads the registry served since `before`.
fn blob_reads(reg: &TestRegistry, before: usize) -> usize {
    reg.requests()
        .split_off(before)
        .iter()
        .filter(|(method, path)| method == "GET" && path.contains("/blobs/"))
        .count()
}

/// The image `User` values of the issue, and whether `runAsNonRoot: true` (no `runAsUser`) lets each
/// start: kubelet's message when it does not.
const USERS: [(&str, Option<&str>); 7] = [
    (
        "",
        Some("container has runAsNonRoot and image will run as root"),
    ),
    (
        "0",
        Some("container has runAsNonRoot and image will run as root"),
    ),
    (
        "0:0",
        Some("container has runAsNonRoot and image will run as root"),
    ),
    ("1001", None),
    ("1001:1001", None),
    (
        "nginx",
        Some(
            "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root",
        ),
    ),
    (
        "nginx:nginx",
        Some(
            "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root",
        ),
    ),
];

async fn push_users(reg: &TestRegistry) {
    for (i, (user, _)) in USERS.iter().enumerate() {
        let platform = Platform::linux("amd64");
        let platform = match *user {
            "" => platform,
            user => platform.with_user(user),
        };
        push_image(
            reg,
            &format!("team/user{i}"),
            "v1",
            ImageKind::single(platform),
        )
        .await
        .expect("push");
    }
}

#[tokio::test]
async fn run_as_non_root_is_decided_on_the_images_user_through_a_pod_and_a_deployment() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        push_users(&reg).await;
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        for (i, (user, refusal)) in USERS.iter().enumerate() {
            let image = format!("{}/team/user{i}:v1", reg.host());
            let spec = json!({"securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "app", "image": image}]});
            for review in [pod_review(spec.clone()), deployment_review(spec)] {
                let response = admit(&app, &review).await;
                let said = message(&response);
                match refusal {
                    Some(kubelet) => {
                        assert_eq!(response["allowed"], false, "User {user:?}: {response}");
                        assert!(
                            said.contains(&format!(
                                "[run-as-non-root] {kubelet} (kubelet: CreateContainerConfigError)"
                            )),
                            "User {user:?}: {said}"
                        );
                        assert!(said.contains("container \"app\""), "{said}");
                    }
                    None => assert_eq!(response["allowed"], true, "User {user:?}: {response}"),
                }
            }
            // runAsUser decides instead of the image: every image starts.
            let spec = json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 1001},
                "containers": [{"name": "app", "image": image}]});
            let response = admit(&app, &pod_review(spec)).await;
            assert_eq!(
                response["allowed"], true,
                "User {user:?} with runAsUser: {response}"
            );
        }
        // The fix names the uid to set when the image names its user.
        let image = format!("{}/team/user5:v1", reg.host());
        let spec = json!({"containers": [{"name": "app", "image": image,
            "securityContext": {"runAsNonRoot": true}}]});
        let said = message(&admit(&app, &pod_review(spec)).await);
        assert!(
            said.contains("set securityContext.runAsUser to the uid of \"nginx\""),
            "{said}"
        );
        // A root runAsUser is refused whatever the image.
        let spec = json!({"containers": [{"name": "app", "image": image,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 0}}]});
        let said = message(&admit(&app, &pod_review(spec)).await);
        assert!(
            said.contains("[run-as-non-root] container's runAsUser breaks non-root policy"),
            "{said}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_image_with_nothing_to_run_is_denied_unless_the_container_gives_a_command() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let bare = ImageKind::single(Platform::linux("amd64").without_command());
        push_image(&reg, "team/bare", "v1", bare)
            .await
            .expect("push");
        let entrypoint = Platform::linux("amd64")
            .without_command()
            .with_entrypoint(&["/app"]);
        push_image(&reg, "team/entrypoint", "v1", ImageKind::single(entrypoint))
            .await
            .expect("push");
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        let bare = format!("{}/team/bare:v1", reg.host());
        let container = |extra: Value| {
            let mut c = json!({"name": "app", "image": bare});
            for (key, value) in extra.as_object().into_iter().flatten() {
                c[key] = value.clone();
            }
            json!({"containers": [c]})
        };
        for review in [
            pod_review(container(json!({}))),
            deployment_review(container(json!({}))),
        ] {
            let response = admit(&app, &review).await;
            assert_eq!(response["allowed"], false, "{response}");
            let said = message(&response);
            assert!(said.contains("[command-specified]"), "{said}");
            assert!(
                said.contains("CreateContainerError: no command specified"),
                "{said}"
            );
            assert!(said.contains("add command:"), "{said}");
        }
        // `command: []` is no command (kubelet passes it as unset).
        let response = admit(&app, &pod_review(container(json!({"command": []})))).await;
        assert_eq!(response["allowed"], false, "{response}");
        for starts in [
            json!({"command": ["/bin/app"]}),
            json!({"args": ["/bin/app", "--serve"]}),
        ] {
            let response = admit(&app, &deployment_review(container(starts.clone()))).await;
            assert_eq!(response["allowed"], true, "{starts}: {response}");
        }
        // Asked first with a command (nothing read of its config), then without: the config is read
        // then, not taken from what the first admission kept of the manifest.
        let bare2 = ImageKind::single(Platform::linux("amd64").without_command().with_user("7"));
        push_image(&reg, "team/bare2", "v1", bare2)
            .await
            .expect("push");
        let image = format!("{}/team/bare2:v1", reg.host());
        let spec = json!({"containers": [{"name": "app", "image": image, "command": ["/x"]}]});
        assert_eq!(admit(&app, &pod_review(spec)).await["allowed"], true);
        let spec = json!({"containers": [{"name": "app", "image": image}]});
        let response = admit(&app, &pod_review(spec)).await;
        assert!(
            message(&response).contains("[command-specified]"),
            "{response}"
        );
        let entrypoint = format!("{}/team/entrypoint:v1", reg.host());
        let spec = json!({"containers": [{"name": "app", "image": entrypoint}]});
        let response = admit(&app, &pod_review(spec)).await;
        assert_eq!(
            response["allowed"], true,
            "an Entrypoint alone runs: {response}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_index_entry_that_lies_about_its_platform_is_denied_where_the_pod_lands_on_it() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let lying = ImageKind::OciIndex(vec![
            Platform::linux("amd64"),
            Platform::linux("arm64").built_for("linux", "amd64"),
        ]);
        push_image(&reg, "team/lying", "v1", lying).await.expect("push");
        let mut settings = settings_for(&[&reg]);
        settings.node_platforms = vec![
            "linux/amd64".parse::<NodePlatform>().expect("platform"),
            "linux/arm64".parse().expect("platform"),
        ];
        let app = app(&settings, None, shipped_policies());
        let image = format!("{}/team/lying:v1", reg.host());
        let pod = |arch: Option<&str>| {
            let mut spec = json!({"containers": [{"name": "app", "image": image}]});
            if let Some(arch) = arch {
                spec["nodeSelector"] = json!({"kubernetes.io/arch": arch});
            }
            pod_review(spec)
        };
        let response = admit(&app, &pod(Some("arm64"))).await;
        assert_eq!(response["allowed"], false, "{response}");
        let said = message(&response);
        assert!(
            said.contains("[config-platform] the image index's linux/arm64 entry points to an image built for linux/amd64: it pulls on linux/arm64 nodes and fails with exec format error"),
            "{said}"
        );
        assert!(said.contains("pin a digest of a correctly built image"), "{said}");
        let response = admit(&app, &pod(Some("amd64"))).await;
        assert_eq!(response["allowed"], true, "amd64 nodes get an amd64 image: {response}");
        // Either node: only arm64 nodes are a problem, so a warning.
        let response = admit(&app, &pod(None)).await;
        assert_eq!(response["allowed"], true, "{response}");
        let found: Vec<String> = warnings(&response)
            .into_iter()
            .filter(|w| w.contains("[config-platform]"))
            .collect();
        assert!(found.len() == 1 && found[0].contains("on linux/arm64 nodes:"), "{found:?}");
    })
    .await;
}

#[tokio::test]
async fn a_pod_that_declares_its_os_is_checked_against_where_it_may_land() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        // No os.version: the build is windows-build's business, not this test's.
        let windows = ImageKind::single(Platform::windows_amd64());
        push_image(&reg, "team/win", "v1", windows).await.expect("push");
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        let image = format!("{}/team/win:v1", reg.host());
        let spec = |selector: Value| {
            json!({"os": {"name": "windows"}, "nodeSelector": selector,
                "containers": [{"name": "app", "image": image, "command": ["app.exe"]}]})
        };
        // Declared windows, selected onto linux nodes: kubelet rejects it wherever it lands.
        let response = admit(&app, &pod_review(spec(json!({"kubernetes.io/os": "linux"})))).await;
        assert_eq!(response["allowed"], false, "{response}");
        let said = message(&response);
        assert!(said.contains("[pod-os] spec.os.name is windows but its nodeSelector/affinity allows only nodes of another OS"), "{said}");
        // Selected onto windows nodes: a Windows image runs there (the candidates are windows/amd64,
        // though the settings only list linux/amd64 nodes).
        let response = admit(&app, &pod_review(spec(json!({"kubernetes.io/os": "windows"})))).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(warnings(&response).is_empty(), "{response}");
        // Not selected: the image is compared with windows nodes, and the Linux nodes the scheduler
        // may pick are a warning.
        let response = admit(&app, &pod_review(spec(json!({})))).await;
        assert_eq!(response["allowed"], true, "{response}");
        let found = warnings(&response);
        assert!(
            found.len() == 1 && found[0].contains("[pod-os] spec.os.name is windows but the pod may be scheduled on linux nodes"),
            "{found:?}"
        );
        assert!(found[0].contains("add nodeSelector kubernetes.io/os: windows"), "{found:?}");
    })
    .await;
}

#[tokio::test]
async fn check_decides_the_start_rules_like_serve_and_offline_lists_them_as_skipped() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        push_users(&reg).await;
        let bare = ImageKind::single(Platform::linux("amd64").without_command());
        push_image(&reg, "team/bare", "v1", bare).await.expect("push");
        let host = reg.host();
        let manifest = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: demo}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      securityContext: {{runAsNonRoot: true}}\n      containers:\n        - {{name: app, image: {host}/team/user5:v1}}\n        - {{name: bare, image: {host}/team/bare:v1, securityContext: {{runAsUser: 1001}}}}\n"
        );
        let online = run(
            config(vec![Input::Stdin], settings_for(&[&reg]), true, OutputFormat::Text),
            &manifest,
        )
        .await;
        assert_eq!(online.exit, Exit::Denied, "{online:?}");
        assert!(
            online.stdout.contains("container \"app\"") && online.stdout.contains("[run-as-non-root] container has runAsNonRoot and image has non-numeric user (nginx)"),
            "{}",
            online.stdout
        );
        assert!(
            online.stdout.contains("container \"bare\"") && online.stdout.contains("[command-specified]"),
            "{}",
            online.stdout
        );
        // The same manifest through serve: the same rules fire.
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        let spec = json!({"securityContext": {"runAsNonRoot": true}, "containers": [
            {"name": "app", "image": format!("{host}/team/user5:v1")},
            {"name": "bare", "image": format!("{host}/team/bare:v1"), "securityContext": {"runAsUser": 1001}}]});
        let said = message(&admit(&app, &deployment_review(spec)).await);
        assert!(said.contains("[run-as-non-root]") && said.contains("[command-specified]"), "{said}");

        let offline = run(
            config(vec![Input::Stdin], settings_for(&[&reg]), false, OutputFormat::Json),
            &manifest,
        )
        .await;
        assert_eq!(offline.exit, Exit::Passed, "{offline:?}");
        for rule in ["run-as-non-root", "command-specified", "config-platform"] {
            assert!(offline.stdout.contains(&format!("\"{rule}\"")), "{rule} skipped: {}", offline.stdout);
        }
    })
    .await;
}

#[tokio::test]
async fn a_pod_that_leaves_nothing_to_the_image_config_costs_no_config_request() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let multi = ImageKind::OciIndex(vec![Platform::linux("amd64"), Platform::linux("arm64")]);
        push_image(&reg, "team/multi", "v1", multi)
            .await
            .expect("push");
        let app = app(&settings_for(&[&reg]), None, shipped_policies());
        let image = format!("{}/team/multi:v1", reg.host());
        // An explicit command and no runAsNonRoot: the config of an index's entry is never read.
        let before = reg.requests().len();
        let spec = json!({"containers": [{"name": "app", "image": image, "command": ["/app"]}]});
        assert_eq!(admit(&app, &pod_review(spec)).await["allowed"], true);
        assert_eq!(blob_reads(&reg, before), 0, "{:?}", reg.requests());
        // No command: the amd64 entry's config, once; seen again, nothing.
        let before = reg.requests().len();
        let spec = json!({"containers": [{"name": "app", "image": image}]});
        assert_eq!(
            admit(&app, &pod_review(spec.clone())).await["allowed"],
            true
        );
        assert_eq!(blob_reads(&reg, before), 1, "{:?}", reg.requests());
        let before = reg.requests().len();
        assert_eq!(admit(&app, &pod_review(spec)).await["allowed"], true);
        assert_eq!(reg.requests().len(), before, "warm: no request");
    })
    .await;
}

#[tokio::test]
async fn check_reads_windows_builds_from_node_platforms_in_the_settings() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let ltsc2022 = Platform::windows_amd64().with_os_version("10.0.20348.2340");
        push_image(&reg, "team/win", "v1", ImageKind::single(ltsc2022))
            .await
            .expect("push");
        let mut settings = settings_for(&[&reg]);
        settings.node_platforms = vec![
            "linux/amd64".parse::<NodePlatform>().expect("platform"),
            "windows/amd64:10.0.17763".parse().expect("platform"),
        ];
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: win, namespace: demo}}\nspec:\n  os: {{name: windows}}\n  nodeSelector: {{kubernetes.io/os: windows}}\n  containers:\n    - {{name: app, image: {}/team/win:v1, command: [app.exe]}}\n",
            reg.host()
        );
        let report = run(
            config(vec![Input::Stdin], settings.clone(), true, OutputFormat::Text),
            &manifest,
        )
        .await;
        assert_eq!(report.exit, Exit::Denied, "{report:?}");
        assert!(
            report.stdout.contains("[windows-build] the image is built for Windows 10.0.20348.2340 but windows/amd64 nodes run build 10.0.17763"),
            "{}",
            report.stdout
        );
        // The same settings through serve.
        let app = app(&settings, None, shipped_policies());
        let spec = json!({"os": {"name": "windows"}, "nodeSelector": {"kubernetes.io/os": "windows"},
            "containers": [{"name": "app", "image": format!("{}/team/win:v1", reg.host()), "command": ["app.exe"]}]});
        let said = message(&admit(&app, &pod_review(spec)).await);
        assert!(said.contains("[windows-build]"), "{said}");
    })
    .await;
}
