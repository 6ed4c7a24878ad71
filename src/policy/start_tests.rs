//! The upstream tables behind the start rules, ported row by row (see the module doc for the versions
//! read): kubelet `TestVerifyRunAsNonRoot` (Linux: 13 cases; Windows: 12), containerd
//! `TestGetUserFromImage` (6 cases) and `WithProcessArgs`' cases with Kubernetes' four-case command/args
//! table; then the rules themselves on plain facts.

use std::sync::Arc;

use rstest::rstest;

use super::*;
use crate::facts::{ImageStatus, StartConfig, Starts};
use crate::workload::ContainerSpec;

fn run_as(non_root: Option<bool>, user: Option<i64>) -> RunAs {
    RunAs {
        non_root,
        user,
        windows_user_name: None,
    }
}

fn image(uid: Option<i64>, username: &str) -> ImageUser {
    ImageUser {
        uid,
        username: username.to_owned(),
    }
}

const ROOT: i64 = 0;
const ANY: i64 = 1000;

/// kubelet `security_context_others_test.go` `TestVerifyRunAsNonRoot`: every case sets the container's
/// security context only (`None` is `sc = nil`); the image's uid and username as the runtime reports
/// them. `expected` is kubelet's message, `None` for no error.
#[rstest]
#[case::pass_if_security_context_is_not_set(None, image(Some(ROOT), ""), None)]
#[case::pass_if_run_as_user_is_non_root_and_run_as_non_root_is_true(
    Some(run_as(Some(true), Some(ANY))),
    image(None, ""),
    None
)]
#[case::pass_if_run_as_non_root_is_not_set(
    Some(run_as(None, Some(ROOT))),
    image(Some(ROOT), ""),
    None
)]
#[case::pass_if_run_as_non_root_is_false_image_user_is_root(
    Some(run_as(Some(false), None)),
    image(Some(ROOT), ""),
    None
)]
#[case::pass_if_run_as_non_root_is_false_run_as_user_is_root(
    Some(run_as(Some(false), Some(ROOT))),
    image(Some(ROOT), ""),
    None
)]
#[case::fail_if_containers_run_as_user_is_root_and_run_as_non_root_is_true(
    Some(run_as(Some(true), Some(ROOT))),
    image(Some(ROOT), ""),
    Some("container's runAsUser breaks non-root policy")
)]
#[case::fail_if_images_user_is_root_and_run_as_non_root_is_true(
    Some(run_as(Some(true), None)),
    image(Some(ROOT), ""),
    Some("container has runAsNonRoot and image will run as root")
)]
#[case::fail_if_images_username_is_set_and_run_as_non_root_is_true(
    Some(run_as(Some(true), None)),
    image(None, "test"),
    Some(
        "container has runAsNonRoot and image has non-numeric user (test), cannot verify user is non-root"
    )
)]
#[case::pass_if_images_user_is_non_root_and_run_as_non_root_is_true(
    Some(run_as(Some(true), None)),
    image(Some(ANY), ""),
    None
)]
#[case::pass_if_containers_user_and_images_user_arent_set(
    Some(run_as(Some(true), None)),
    image(None, ""),
    None
)]
#[case::fail_if_images_user_is_invalid(
    Some(run_as(Some(true), None)),
    image(Some(2_147_483_648), ""),
    Some(
        "container has runAsNonRoot and image has an invalid user id (2147483648). (Must be 1-(2147483647)): must be between 0 and 2147483647, inclusive"
    )
)]
#[case::fail_if_images_user_is_negative(Some(run_as(Some(true), None)), image(Some(-1000), ""), Some("container has runAsNonRoot and image has an invalid user id (-1000). (Must be 1-(2147483647)): must be between 0 and 2147483647, inclusive"))]
#[case::pass_if_images_user_is_max_int32(
    Some(run_as(Some(true), None)),
    image(Some(2_147_483_647), ""),
    None
)]
fn kubelet_verify_run_as_non_root(
    #[case] container: Option<RunAs>,
    #[case] image: ImageUser,
    #[case] expected: Option<&str>,
) {
    let effective = container.unwrap_or_default().over(&RunAs::default());
    let got = verify_run_as_non_root(&effective, &image).map_err(|e| e.kubelet_message());
    assert_eq!(got.err().as_deref(), expected);
}

fn windows(non_root: Option<bool>, user_name: Option<&str>) -> RunAs {
    RunAs {
        non_root,
        user: None,
        windows_user_name: user_name.map(str::to_owned),
    }
}

/// kubelet `security_context_windows_test.go` `TestVerifyRunAsNonRoot` (the case-insensitive version).
#[rstest]
#[case::pass_if_security_context_is_not_set(None, "ContainerAdministrator", None)]
#[case::pass_if_run_as_non_root_is_not_set(
    Some(windows(None, None)),
    "ContainerAdministrator",
    None
)]
#[case::pass_if_run_as_non_root_is_false_image_user_is_root(
    Some(windows(Some(false), None)),
    "ContainerAdministrator",
    None
)]
#[case::pass_if_run_as_non_root_is_false_run_as_user_name_is_root(
    Some(windows(Some(false), Some("ContainerAdministrator"))),
    "ContainerAdministrator",
    None
)]
#[case::fail_if_containers_run_as_user_name_is_root(
    Some(windows(Some(true), Some("ContainerAdministrator"))),
    "ContainerAdministrator",
    Some(
        "container's runAsUserName (ContainerAdministrator) which will be regarded as root identity and will break non-root policy"
    )
)]
#[case::fail_if_containers_run_as_user_name_is_root_case_insensitive(
    Some(windows(Some(true), Some("CONTAINERADMINISTRATOR"))),
    "anyone",
    Some(
        "container's runAsUserName (CONTAINERADMINISTRATOR) which will be regarded as root identity and will break non-root policy"
    )
)]
#[case::fail_if_images_user_is_root(
    Some(windows(Some(true), None)),
    "ContainerAdministrator",
    Some(
        "container's runAsUser (ContainerAdministrator) which will be regarded as root identity and will break non-root policy"
    )
)]
#[case::fail_if_images_user_is_root_case_insensitive(
    Some(windows(Some(true), None)),
    "CONTAINERADMINISTRATOR",
    Some(
        "container's runAsUser (CONTAINERADMINISTRATOR) which will be regarded as root identity and will break non-root policy"
    )
)]
#[case::pass_if_images_user_is_non_root(Some(windows(Some(true), None)), "anyone", None)]
#[case::pass_if_containers_user_and_images_user_arent_set(Some(RunAs { non_root: Some(true), user: Some(0), windows_user_name: None }), "", None)]
#[case::pass_if_images_user_is_root_and_run_as_user_name_is_not(
    Some(windows(Some(true), Some("anyone"))),
    "ContainerAdministrator",
    None
)]
#[case::pass_if_images_user_is_root_case_insensitive_and_run_as_user_name_is_not(
    Some(windows(Some(true), Some("anyone"))),
    "CONTAINERADMINISTRATOR",
    None
)]
fn kubelet_verify_run_as_non_root_windows(
    #[case] container: Option<RunAs>,
    #[case] image_username: &str,
    #[case] expected: Option<&str>,
) {
    let effective = container.unwrap_or_default().over(&RunAs::default());
    let got =
        verify_run_as_non_root_windows(&effective, image_username).map_err(|e| e.kubelet_message());
    assert_eq!(got.err().as_deref(), expected);
}

/// `DetermineEffectiveSecurityContext`: each container field over the pod's, `false` included
/// (derived from the code; upstream's tables set the container only).
#[rstest]
#[case::pod_only(run_as(Some(true), None), RunAs::default(), Some(true), None)]
#[case::container_false_beats_pod_true(
    run_as(Some(true), None),
    run_as(Some(false), None),
    Some(false),
    None
)]
#[case::container_user_over_pod_user(
    run_as(Some(true), Some(0)),
    run_as(None, Some(1000)),
    Some(true),
    Some(1000)
)]
#[case::pod_user_kept(
    run_as(None, Some(1000)),
    run_as(Some(true), None),
    Some(true),
    Some(1000)
)]
fn effective_security_context(
    #[case] pod: RunAs,
    #[case] container: RunAs,
    #[case] non_root: Option<bool>,
    #[case] user: Option<i64>,
) {
    let effective = container.over(&pod);
    assert_eq!((effective.non_root, effective.user), (non_root, user));
}

/// containerd `TestGetUserFromImage`, then edge cases of Go's `ParseInt` (derived).
#[rstest]
#[case::no_gid("0", Some(0), "")]
#[case::uid_gid("0:1", Some(0), "")]
#[case::empty_user("", None, "")]
#[case::multiple_separators("1:2:3", Some(1), "")]
#[case::root_username("root:root", None, "root")]
#[case::username("test:test", None, "test")]
#[case::plus_sign("+1000", Some(1000), "")]
#[case::negative("-1", Some(-1), "")]
#[case::beyond_int32("2147483648", Some(2_147_483_648), "")]
#[case::overflow_is_a_name("99999999999999999999", None, "99999999999999999999")]
#[case::no_spaces(" 1000", None, " 1000")]
#[case::base_ten_only("0x10", None, "0x10")]
#[case::group_only(":1000", None, "")]
fn containerd_get_user_from_image(
    #[case] user: &str,
    #[case] uid: Option<i64>,
    #[case] name: &str,
) {
    assert_eq!(user_from_image(user), image(uid, name));
}

/// The image `User` values the issue names, end to end: containerd's parse, kubelet's `getImageUser`,
/// `verifyRunAsNonRoot` with `runAsNonRoot: true` and no `runAsUser`.
#[rstest]
#[case::empty_is_root("", Some("container has runAsNonRoot and image will run as root"))]
#[case::zero("0", Some("container has runAsNonRoot and image will run as root"))]
#[case::zero_zero("0:0", Some("container has runAsNonRoot and image will run as root"))]
#[case::group_only_is_root(":1000", Some("container has runAsNonRoot and image will run as root"))]
#[case::numeric("1001", None)]
#[case::numeric_group("1001:1001", None)]
#[case::name(
    "nginx",
    Some(
        "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root"
    )
)]
#[case::name_group(
    "nginx:nginx",
    Some(
        "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root"
    )
)]
#[case::negative(
    "-1",
    Some(
        "container has runAsNonRoot and image has an invalid user id (-1). (Must be 1-(2147483647)): must be between 0 and 2147483647, inclusive"
    )
)]
fn image_user_end_to_end(#[case] user: &str, #[case] expected: Option<&str>) {
    let user = kubelet_image_user(user_from_image(user));
    let got = verify_run_as_non_root(&run_as(Some(true), None), &user);
    assert_eq!(
        got.map_err(|e| e.kubelet_message()).err().as_deref(),
        expected
    );
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn config(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
    ImageConfig {
        entrypoint: strings(entrypoint),
        cmd: strings(cmd),
        ..ImageConfig::default()
    }
}

/// Kubernetes' "Define a Command and Arguments for a Container" table (image `[/ep-1] [foo bar]`), then
/// containerd's `WithProcessArgs` edge cases: empty lists are unset (as kubelet passes them), an
/// Entrypoint of exactly `[""]` is none, empty strings are kept.
#[rstest]
#[case::neither_uses_the_image(None, None, &["/ep-1"], &["foo", "bar"], &["/ep-1", "foo", "bar"])]
#[case::command_drops_entrypoint_and_cmd(Some(&["/ep-2"][..]), None, &["/ep-1"], &["foo", "bar"], &["/ep-2"])]
#[case::args_replace_cmd(None, Some(&["zoo", "boo"][..]), &["/ep-1"], &["foo", "bar"], &["/ep-1", "zoo", "boo"])]
#[case::both_replace_both(Some(&["/ep-2"][..]), Some(&["zoo", "boo"][..]), &["/ep-1"], &["foo", "bar"], &["/ep-2", "zoo", "boo"])]
#[case::nothing_anywhere(None, None, &[], &[], &[])]
#[case::empty_lists_are_unset(Some(&[][..]), Some(&[][..]), &[], &[], &[])]
#[case::empty_command_keeps_image(Some(&[][..]), None, &["/ep-1"], &[], &["/ep-1"])]
#[case::cmd_only_image(None, None, &[], &["sh"], &["sh"])]
#[case::empty_entrypoint_string_is_none(None, None, &[""], &[], &[])]
#[case::empty_entrypoint_string_with_cmd(None, None, &[""], &["sh"], &["sh"])]
#[case::args_without_any_command(None, Some(&["--serve"][..]), &[], &["sh"], &["--serve"])]
#[case::empty_string_arg_is_kept(None, Some(&[""][..]), &[], &[], &[""])]
#[case::empty_string_command_is_kept(Some(&[""][..]), None, &[], &[], &[""])]
fn command_and_args_merge(
    #[case] command: Option<&[&str]>,
    #[case] args: Option<&[&str]>,
    #[case] entrypoint: &[&str],
    #[case] cmd: &[&str],
    #[case] expected: &[&str],
) {
    let command = command.map(strings);
    let args = args.map(strings);
    let image = config(entrypoint, cmd);
    let got = process_args(command.as_deref(), args.as_deref(), &image);
    assert_eq!(got, strings(expected));
    // What the rule asks, without building the process, agrees.
    let nothing = nothing_to_run(command.as_deref(), args.as_deref(), &image);
    assert_eq!(nothing, expected.is_empty());
}

fn container(command: Option<&[&str]>, run_as: RunAs) -> ContainerFacts {
    ContainerFacts::new(ContainerSpec {
        list: ContainerList::Containers,
        index: 0,
        name: "app".into(),
        image: "registry.example.com/app:1.0".into(),
        pull_policy: None,
        image_path: "spec.containers[0].image".into(),
        command: command.map(strings),
        args: None,
        run_as,
    })
}

fn platform(text: &str) -> Platform {
    text.parse().expect("platform")
}

fn found(starts: Vec<StartConfig>) -> Resolved {
    let mut resolved = Resolved::default();
    resolved.images.insert(
        "spec.containers[0].image".into(),
        ImageStatus::Found {
            digest: "sha256:abc".into(),
            platforms: None,
            secret_problems: Vec::new(),
            sizes: None,
            configs: Some(Ok(Starts::PerPlatform(starts))),
            windows: None,
        },
    );
    resolved
}

fn start(node: &str, entry: Option<&str>, config: ImageConfig) -> StartConfig {
    StartConfig {
        node: platform(node),
        entry: entry.map(|e| (platform(e), None)),
        config: Arc::new(config),
    }
}

fn user(user: &str) -> ImageConfig {
    ImageConfig {
        user: user.into(),
        cmd: strings(&["/app"]),
        ..ImageConfig::default()
    }
}

#[test]
fn the_config_is_needed_only_when_the_pod_spec_leaves_it_open() {
    let facts = Facts::default();
    let bare = container(None, RunAs::default());
    assert!(!needs_user(&bare, &facts), "no runAsNonRoot: no config");
    assert!(needs_command(&bare), "no command: the image decides");
    let explicit = container(Some(&["/app"]), run_as(Some(true), Some(1000)));
    assert!(!needs_user(&explicit, &facts), "runAsUser decides");
    assert!(!needs_command(&explicit), "command decides");
    let image_user = container(Some(&["/app"]), run_as(Some(true), None));
    assert!(needs_user(&image_user, &facts));
    let pod_level = Facts {
        pod_run_as: run_as(Some(true), Some(1000)),
        ..Facts::default()
    };
    assert!(!needs_user(&container(None, RunAs::default()), &pod_level));
    let windows = Facts {
        pod_os: Some("windows".into()),
        ..Facts::default()
    };
    // On Windows runAsUser means nothing: runAsUserName decides.
    assert!(needs_user(&explicit, &windows));
}

#[test]
fn run_as_non_root_denies_when_every_platform_refuses_and_warns_when_some_do() {
    let facts = Facts::default();
    let pod = container(None, run_as(Some(true), None));
    let all = found(vec![start("linux/amd64", None, user("nginx"))]);
    let outcome = run_as_non_root(&pod, &facts, &all).expect("refused");
    assert!(outcome.definitive);
    assert!(
        outcome
            .message
            .starts_with("container has runAsNonRoot and image has non-numeric user (nginx)"),
        "{outcome:?}"
    );
    assert!(
        outcome
            .message
            .ends_with("(kubelet: CreateContainerConfigError)")
    );
    assert!(
        outcome.fix.contains("runAsUser to the uid of \"nginx\""),
        "{}",
        outcome.fix
    );
    let some = found(vec![
        start("linux/amd64", Some("linux/amd64"), user("1001")),
        start("linux/arm64", Some("linux/arm64"), user("")),
    ]);
    let outcome = run_as_non_root(&pod, &facts, &some).expect("refused on arm64");
    assert!(!outcome.definitive);
    assert!(
        outcome.message.starts_with(
            "on linux/arm64 nodes: container has runAsNonRoot and image will run as root"
        ),
        "{outcome:?}"
    );
    assert!(
        outcome.fix.starts_with("the image sets no USER"),
        "{}",
        outcome.fix
    );
    let fine = found(vec![start("linux/amd64", None, user("1001:1001"))]);
    assert_eq!(run_as_non_root(&pod, &facts, &fine), None);
    // runAsUser: 0 with runAsNonRoot is refused whatever the image, without the registry.
    let root = container(None, run_as(Some(true), Some(0)));
    let outcome = run_as_non_root(&root, &facts, &Resolved::default()).expect("refused");
    assert!(outcome.definitive);
    assert!(
        outcome
            .message
            .starts_with("container's runAsUser breaks non-root policy")
    );
}

#[test]
fn windows_nodes_follow_kubelets_windows_rule() {
    let facts = Facts {
        pod_os: Some("windows".into()),
        ..Facts::default()
    };
    let pod = container(None, run_as(Some(true), Some(1000)));
    let admin = found(vec![start(
        "windows/amd64",
        None,
        user("ContainerAdministrator"),
    )]);
    let outcome = run_as_non_root(&pod, &facts, &admin).expect("administrator");
    assert!(
        outcome.message.starts_with(
            "container's runAsUser (ContainerAdministrator) which will be regarded as root identity"
        ),
        "{outcome:?}"
    );
    let numeric_root = found(vec![start("windows/amd64", None, user("0"))]);
    assert_eq!(
        run_as_non_root(&pod, &facts, &numeric_root),
        None,
        "uids mean nothing on Windows"
    );
}

#[test]
fn command_specified_denies_an_image_with_nothing_to_run() {
    let nothing = ImageConfig::default();
    let resolved = found(vec![start("linux/amd64", None, nothing)]);
    let pod = container(None, RunAs::default());
    let outcome = command_specified(&pod, &resolved).expect("no command");
    assert!(outcome.definitive);
    assert!(
        outcome.message.contains("no command specified"),
        "{outcome:?}"
    );
    assert!(outcome.fix.starts_with("add command:"));
    let with_command = container(Some(&["/bin/app"]), RunAs::default());
    assert_eq!(command_specified(&with_command, &resolved), None);
    let cmd_only = found(vec![start("linux/amd64", None, config(&[], &["sh"]))]);
    assert_eq!(command_specified(&pod, &cmd_only), None);
}

#[test]
fn config_platform_catches_an_index_entry_that_lies() {
    let built_for = |p: &str| ImageConfig {
        platform: Some(platform(p)),
        cmd: strings(&["/app"]),
        ..ImageConfig::default()
    };
    let pod = container(None, RunAs::default());
    let lying = found(vec![
        start("linux/amd64", Some("linux/amd64"), built_for("linux/amd64")),
        start("linux/arm64", Some("linux/arm64"), built_for("linux/amd64")),
    ]);
    let outcome = config_platform(&pod, &lying).expect("arm64 lies");
    assert!(!outcome.definitive, "amd64 nodes are fine: a warning");
    assert!(
        outcome
            .message
            .contains("index's linux/arm64 entry points to an image built for linux/amd64"),
        "{outcome:?}"
    );
    let only_arm = found(vec![start(
        "linux/arm64",
        Some("linux/arm64"),
        built_for("linux/amd64"),
    )]);
    assert!(config_platform(&pod, &only_arm).expect("lies").definitive);
    // arm/v7 binaries run on arm64 nodes; a single image is compared by platform-supported.
    let compatible = found(vec![start(
        "linux/arm64",
        Some("linux/arm64"),
        built_for("linux/arm/v7"),
    )]);
    assert_eq!(config_platform(&pod, &compatible), None);
    let single = found(vec![start("linux/arm64", None, built_for("linux/amd64"))]);
    assert_eq!(config_platform(&pod, &single), None);
}

#[test]
fn pod_os_denies_a_contradiction_and_warns_when_other_nodes_may_be_picked() {
    let pod = container(None, RunAs::default());
    let contradicts = Facts {
        pod_os: Some("windows".into()),
        pod_os_allowed: Some(false),
        containers: vec![pod.clone()],
        ..Facts::default()
    };
    let outcome = pod_os(&pod, &contradicts, &Resolved::default()).expect("contradiction");
    assert!(outcome.definitive);
    assert!(outcome.message.contains("PodOSNotSupported"), "{outcome:?}");
    let loose = Facts {
        pod_os_allowed: None,
        ..contradicts.clone()
    };
    let mut resolved = Resolved::default();
    assert_eq!(
        pod_os(&pod, &loose, &resolved),
        None,
        "no node list: nothing known"
    );
    resolved.pod_platforms = Some(crate::platform::PodPlatforms {
        candidates: vec![platform("windows/amd64")],
        constrained: false,
        other_os: vec![platform("linux/amd64")],
        windows_builds: Default::default(),
    });
    let outcome = pod_os(&pod, &loose, &resolved).expect("linux nodes too");
    assert!(!outcome.definitive);
    assert_eq!(outcome.fix, "add nodeSelector kubernetes.io/os: windows");
    let agrees = Facts {
        pod_os_allowed: Some(true),
        ..contradicts
    };
    assert_eq!(pod_os(&pod, &agrees, &resolved), None);
}

#[test]
fn a_single_images_config_counts_for_every_platform_the_pod_may_land_on() {
    let pod = container(None, run_as(Some(true), None));
    let mut resolved = found(Vec::new());
    if let Some(ImageStatus::Found { configs, .. }) =
        resolved.images.get_mut("spec.containers[0].image")
    {
        *configs = Some(Ok(Starts::Single(Arc::new(user("0")))));
    }
    // No candidate: nothing to say.
    assert_eq!(run_as_non_root(&pod, &Facts::default(), &resolved), None);
    resolved.pod_platforms = Some(crate::platform::PodPlatforms {
        candidates: vec![platform("linux/amd64"), platform("linux/arm64")],
        constrained: false,
        other_os: Vec::new(),
        windows_builds: Default::default(),
    });
    let outcome = run_as_non_root(&pod, &Facts::default(), &resolved).expect("root");
    assert!(outcome.definitive, "every platform refuses: {outcome:?}");
    // A single image never lies about its index entry: it has none.
    assert_eq!(config_platform(&pod, &resolved), None);
}
