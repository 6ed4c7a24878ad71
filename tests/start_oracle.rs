//! `command-specified` against a real runtime: podman (libpod's spec generation, as CRI-O's) is asked to
//! create a container from the same images, pulled from the same docker-registry, with the same
//! command/args as the Pod pullgate admits. Wherever podman refuses ("no command or entrypoint
//! provided"), pullgate denies with `[command-specified]`, and nowhere else. Nothing is run: creating a
//! container needs no OCI runtime (which cannot run in this sandbox).

mod support;

use serde_json::json;
use support::podman::{Created, Podman};
use support::registry::{self, ImageKind, Platform, RegistryOptions, push_image};
use support::webhook::{admit, app, bounded, message, pod_review, policy_text, settings_for};

/// `(repository, image)`: every shape of Entrypoint/Cmd.
fn images() -> Vec<(&'static str, Platform)> {
    let amd64 = || Platform::linux("amd64").without_command();
    vec![
        ("team/bare", amd64()),
        ("team/cmd", Platform::linux("amd64")),
        ("team/entrypoint", amd64().with_entrypoint(&["/app"])),
        (
            "team/both",
            Platform::linux("amd64").with_entrypoint(&["/app"]),
        ),
    ]
}

/// A container's `command` or `args`: unset, or a list.
type Words = Option<&'static [&'static str]>;

/// The container's `command` and `args` (kubelet passes an empty list as unset).
const CONTAINERS: [(Words, Words); 6] = [
    (None, None),
    (Some(&["/bin/x"]), None),
    (None, Some(&["--serve"])),
    (Some(&["/bin/x"]), Some(&["--serve"])),
    (Some(&[]), None),
    (Some(&[]), Some(&[])),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pullgate_denies_exactly_what_the_runtime_refuses_to_create() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        let podman = Podman::new().expect("podman");
        let app = app(
            &settings_for(&[&reg]),
            None,
            policy_text("command-specified: {action: deny}"),
        );
        let mut refused = 0;
        for (repository, platform) in images() {
            push_image(&reg, repository, "v1", ImageKind::single(platform))
                .await
                .expect("push");
            let image = format!("{}/{repository}:v1", reg.host());
            let pull = image.clone();
            let store = &podman;
            tokio::task::block_in_place(|| store.pull(&pull)).expect("podman pulls");
            for (command, args) in CONTAINERS {
                let oracle = tokio::task::block_in_place(|| podman.create(&image, command, args))
                    .expect("podman answers");
                let mut container = json!({"name": "app", "image": image});
                if let Some(command) = command {
                    container["command"] = json!(command);
                }
                if let Some(args) = args {
                    container["args"] = json!(args);
                }
                let response = admit(&app, &pod_review(json!({"containers": [container]}))).await;
                let case = format!("{repository} command={command:?} args={args:?}");
                match &oracle {
                    Created::Created => {
                        assert_eq!(
                            response["allowed"], true,
                            "{case}: podman created it; {response}"
                        )
                    }
                    Created::Refused(why) => {
                        assert!(
                            why.contains("no command or entrypoint provided"),
                            "{case}: podman refused for another reason: {why}"
                        );
                        assert_eq!(
                            response["allowed"], false,
                            "{case}: podman refused ({why}); {response}"
                        );
                        assert!(
                            message(&response).contains("[command-specified]"),
                            "{case}: {response}"
                        );
                        refused += 1;
                    }
                }
            }
        }
        // The bare image without a command, with `command: []`, and with both lists empty; the
        // entrypoint-only image never (its Entrypoint runs).
        assert_eq!(refused, 3, "the table asks the runtime about refusals too");
    })
    .await;
}
