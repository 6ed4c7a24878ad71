//! Table tests of `evaluate`: every static rule, scoping, merging and message shape.

use std::path::Path;

use rstest::rstest;

use super::*;
use crate::facts::ContainerFacts;
use crate::workload::{ContainerList, ContainerSpec};

fn container(name: &str, image: &str, pull_policy: Option<&str>) -> ContainerFacts {
    ContainerFacts::new(ContainerSpec {
        list: ContainerList::Containers,
        index: 0,
        name: name.into(),
        image: image.into(),
        pull_policy: pull_policy.map(Into::into),
        image_path: format!("spec.containers[{name}].image"),
        command: None,
        args: None,
        run_as: Default::default(),
    })
}

fn facts(namespace: &str, containers: Vec<ContainerFacts>) -> Facts {
    Facts {
        namespace: namespace.into(),
        labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
        containers,
        ..Facts::default()
    }
}

fn policies(yaml: &str) -> PolicySet {
    let docs = parse_file(Path::new("test.yaml"), yaml).expect("test policy parses");
    let loaded: Vec<LoadedPolicy> = docs
        .into_iter()
        .map(|document| LoadedPolicy {
            file: "test.yaml".into(),
            document,
        })
        .collect();
    PolicySet::from_loaded(&loaded)
}

fn policy_with(rules: &str) -> PolicySet {
    policies(&format!(
        "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: t}}\nspec:\n  rules:\n{rules}"
    ))
}

/// Evaluate with no registry answers: only the static rules can fire.
fn decide(facts: &Facts, policies: &PolicySet) -> Verdict {
    evaluate(facts, &Resolved::default(), policies)
}

/// (rule, action) of each finding.
fn fired(verdict: &Verdict) -> Vec<(RuleId, Action)> {
    verdict
        .findings
        .iter()
        .map(|f| (f.rule, f.action))
        .collect()
}

const ALL_DEFAULTS: &str = "    image-reference-valid: {}\n    tag-not-latest: {}\n    pull-policy: {}\n    registry-deprecated: {}\n";

#[rstest]
#[case::pinned_tag("nginx:1.25.3", None, vec![])]
#[case::explicit_latest("nginx:latest", Some("Always"), vec![(RuleId::TagNotLatest, Action::Deny)])]
#[case::untagged("nginx", Some("Always"), vec![(RuleId::TagNotLatest, Action::Deny)])]
#[case::port_is_not_a_tag("registry.example.com:5000/app", Some("Always"), vec![(RuleId::TagNotLatest, Action::Deny)])]
#[case::digest_only("app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", None, vec![])]
#[case::latest_pinned_by_digest("app:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Some("IfNotPresent"), vec![])]
#[case::latest_if_not_present("nginx:latest", Some("IfNotPresent"), vec![(RuleId::TagNotLatest, Action::Deny), (RuleId::PullPolicy, Action::Warn)])]
#[case::never("nginx:1.25.3", Some("Never"), vec![(RuleId::PullPolicy, Action::Warn)])]
#[case::unset_policy_latest_defaults_to_always("nginx:latest", None, vec![(RuleId::TagNotLatest, Action::Deny)])]
#[case::uppercase("Nginx:1.0", None, vec![(RuleId::ImageReferenceValid, Action::Deny)])]
#[case::empty("", None, vec![(RuleId::ImageReferenceValid, Action::Deny)])]
#[case::deprecated("k8s.gcr.io/pause:3.9", None, vec![(RuleId::RegistryDeprecated, Action::Warn)])]
#[case::deprecated_path_prefix("gcr.io/google-containers/pause:3.1", None, vec![(RuleId::RegistryDeprecated, Action::Warn)])]
#[case::not_deprecated_lookalike("k8s.gcr.io.example.com/pause:3.9", None, vec![])]
fn default_rules(
    #[case] image: &str,
    #[case] pull_policy: Option<&str>,
    #[case] expected: Vec<(RuleId, Action)>,
) {
    let verdict = decide(
        &facts("demo", vec![container("app", image, pull_policy)]),
        &policy_with(ALL_DEFAULTS),
    );
    assert_eq!(fired(&verdict), expected);
    assert_eq!(
        verdict.allowed(),
        !expected.iter().any(|(_, a)| *a == Action::Deny)
    );
}

#[rstest]
#[case::digest_pinned_fires("    digest-pinned: {action: deny}\n", "nginx:1.25.3", vec![(RuleId::DigestPinned, Action::Deny)])]
#[case::digest_pinned_passes("    digest-pinned: {action: deny}\n", "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", vec![])]
#[case::allowed_registry("    registry-allowed: {allow: [\"registry.example.com/*\"]}\n", "registry.example.com/team/app:1", vec![])]
#[case::not_allowed_registry("    registry-allowed: {allow: [\"registry.example.com/*\"]}\n", "nginx:1.25.3", vec![(RuleId::RegistryAllowed, Action::Deny)])]
#[case::denied_registry("    registry-allowed: {action: warn, deny: [\"docker.io/*\"]}\n", "nginx:1.25.3", vec![(RuleId::RegistryAllowed, Action::Warn)])]
#[case::off_rule("    tag-not-latest: {action: off}\n", "nginx:latest", vec![])]
#[case::warn_rule("    tag-not-latest: {action: warn}\n", "nginx:latest", vec![(RuleId::TagNotLatest, Action::Warn)])]
#[case::unlisted_rule_does_not_run("    digest-pinned: {action: off}\n", "nginx:latest", vec![])]
#[case::custom_deprecation("    registry-deprecated: {registries: [{from: old.example.com, to: new.example.com}]}\n", "old.example.com/a:1", vec![(RuleId::RegistryDeprecated, Action::Warn)])]
fn configured_rules(
    #[case] rules: &str,
    #[case] image: &str,
    #[case] expected: Vec<(RuleId, Action)>,
) {
    let verdict = decide(
        &facts("demo", vec![container("app", image, Some("IfNotPresent"))]),
        &policy_with(rules),
    );
    assert_eq!(fired(&verdict), expected);
}

const SCOPED: &str = r#"
apiVersion: pullgate.dev/v1alpha1
kind: ImagePolicy
metadata: {name: scoped}
spec:
  include: {namespaces: ["team-*"], labels: {app: web}}
  exclude: {namespaces: [team-legacy], images: ["registry.internal/legacy/*"]}
  rules:
    tag-not-latest: {}
"#;

#[rstest]
#[case::included_namespace("team-a", "nginx:latest", 1)]
#[case::other_namespace("default", "nginx:latest", 0)]
#[case::excluded_namespace("team-legacy", "nginx:latest", 0)]
#[case::excluded_image("team-a", "registry.internal/legacy/app:latest", 0)]
#[case::image_glob_is_normalised("team-a", "registry.internal/legacy/app", 0)]
fn scoping(#[case] namespace: &str, #[case] image: &str, #[case] count: usize) {
    let verdict = decide(
        &facts(namespace, vec![container("app", image, None)]),
        &policies(SCOPED),
    );
    assert_eq!(verdict.findings.len(), count);
}

#[test]
fn label_scoping_requires_every_label() {
    let mut f = facts("team-a", vec![container("app", "nginx:latest", None)]);
    f.labels.clear();
    assert!(decide(&f, &policies(SCOPED)).findings.is_empty());
}

#[test]
fn strictest_action_wins_across_policies() {
    let two = format!(
        "{}---\n{}",
        "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: a}\nspec:\n  rules:\n    tag-not-latest: {action: warn}\n",
        "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: b}\nspec:\n  rules:\n    tag-not-latest: {action: deny}\n"
    );
    let verdict = decide(
        &facts("demo", vec![container("app", "nginx", None)]),
        &policies(&two),
    );
    assert_eq!(fired(&verdict), vec![(RuleId::TagNotLatest, Action::Deny)]);
}

#[test]
fn findings_follow_container_order() {
    let verdict = decide(
        &facts(
            "demo",
            vec![
                container("first", "nginx:latest", Some("Always")),
                container("second", "Bad", None),
            ],
        ),
        &policy_with(ALL_DEFAULTS),
    );
    let names: Vec<&str> = verdict
        .findings
        .iter()
        .map(|f| f.container.as_str())
        .collect();
    assert_eq!(names, ["first", "second"]);
}

#[test]
fn deny_line_names_container_image_rule_and_fix() {
    let verdict = decide(
        &facts(
            "demo",
            vec![container("app", "nginx:latest", Some("Always"))],
        ),
        &policy_with(ALL_DEFAULTS),
    );
    let line = verdict.findings[0].deny_line();
    assert!(
        line.starts_with("container \"app\" (image nginx:latest): [tag-not-latest] "),
        "{line}"
    );
    assert!(line.contains("pin a version tag or a digest"), "{line}");
}

#[test]
fn every_warning_fits_kubernetes_limits() {
    let long = format!("k8s.gcr.io/{}:1", "a".repeat(200));
    let verdict = decide(
        &facts("demo", vec![container("app", &long, None)]),
        &policy_with(ALL_DEFAULTS),
    );
    let warning = verdict.findings[0].warning_line();
    assert!(warning.chars().count() <= WARNING_MAX, "{warning}");
    assert!(warning.ends_with('…'));
}

#[test]
fn typical_warning_is_short() {
    let verdict = decide(
        &facts("demo", vec![container("app", "k8s.gcr.io/pause:3.9", None)]),
        &policy_with(ALL_DEFAULTS),
    );
    let warning = verdict.findings[0].warning_line();
    assert!(warning.chars().count() <= 120, "{warning}");
}

const SHIPPED: &str = include_str!("../../policies/default.yaml");

/// The registry rules `plan` lists for each container.
fn planned(facts: &Facts, policies: &PolicySet) -> Vec<Vec<RuleId>> {
    plan(facts, policies)
        .into_iter()
        .map(|p| p.registry_rules.into_iter().collect())
        .collect()
}

#[test]
fn every_registry_rule_of_the_shipped_policy_is_planned() {
    // No command and no runAsNonRoot: the config is read for the command (and then checked against
    // the index entry), not for the user; a pod not meant for Windows has no Windows build to match.
    let facts = facts("demo", vec![container("a", "r.io/a:1", None)]);
    let all: Vec<RuleId> = RuleId::ALL
        .into_iter()
        .filter(|r| r.needs_registry())
        .filter(|r| ![RuleId::RunAsNonRoot, RuleId::WindowsBuild].contains(r))
        .collect();
    assert_eq!(planned(&facts, &policies(SHIPPED)), vec![all]);
    let need = plan(&facts, &policies(SHIPPED))[0].need();
    assert!(
        need.resolve && need.platforms && need.sizes && need.config,
        "{need:?}"
    );
}

#[test]
fn the_image_config_is_asked_for_only_when_the_pod_spec_leaves_it_open() {
    let with = |command: Option<&[&str]>, run_as: crate::workload::RunAs| {
        let mut c = container("a", "r.io/a:1", None);
        c.spec.command = command.map(|c| c.iter().map(|w| (*w).to_owned()).collect());
        c.spec.run_as = run_as;
        let facts = facts("demo", vec![c]);
        plan(&facts, &policies(SHIPPED)).remove(0)
    };
    let non_root = |user: Option<i64>| crate::workload::RunAs {
        non_root: Some(true),
        user,
        windows_user_name: None,
    };
    // An explicit command and no runAsNonRoot: no config, and config-platform does not ask for one.
    let plain = with(Some(&["/app"]), Default::default());
    assert!(!plain.need().config, "{plain:?}");
    assert!(!plain.registry_rules.contains(RuleId::ConfigPlatform));
    assert!(!plain.registry_rules.contains(RuleId::CommandSpecified));
    // runAsNonRoot with runAsUser: the pod spec decides.
    assert!(!with(Some(&["/app"]), non_root(Some(1000))).need().config);
    // runAsNonRoot without runAsUser: the image's user decides.
    let open = with(Some(&["/app"]), non_root(None));
    assert!(open.need().config);
    assert!(open.registry_rules.contains(RuleId::RunAsNonRoot));
    assert!(open.registry_rules.contains(RuleId::ConfigPlatform));
    // An empty command is no command (kubelet passes it as unset).
    assert!(with(Some(&[]), Default::default()).need().config);
}

#[test]
fn only_a_pod_meant_for_windows_asks_for_the_windows_build() {
    let mut windows = facts("demo", vec![container("a", "r.io/a:1", None)]);
    assert!(!plan(&windows, &policies(SHIPPED))[0].need().windows);
    windows.pod_windows = true;
    let plan = plan(&windows, &policies(SHIPPED)).remove(0);
    assert!(plan.need().windows && plan.registry_rules.contains(RuleId::WindowsBuild));
}

#[test]
fn containers_the_registry_is_not_asked_about_have_no_plan() {
    let facts = facts(
        "demo",
        vec![
            container("never", "r.io/a:1", Some("Never")),
            container("invalid", "Bad:Ref", None),
            container("checked", "r.io/b:1", None),
        ],
    );
    let rules = planned(&facts, &policies(SHIPPED));
    assert!(rules[0].is_empty() && rules[1].is_empty(), "{rules:?}");
    assert_eq!(rules[2].len(), 9, "{rules:?}");
    assert!(!plan(&facts, &policies(SHIPPED))[0].need().resolve);
}

#[test]
fn plan_scoping_and_off_actions_are_the_policys() {
    let text = "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\nspec:\n  exclude: {namespaces: [kube-system]}\n  rules:\n    image-exists: {action: deny}\n    platform-supported: {action: off}\n    tag-not-latest: {action: deny}\n";
    let scoped = facts("demo", vec![container("a", "r.io/a:1", None)]);
    assert_eq!(
        planned(&scoped, &policies(text)),
        vec![vec![RuleId::ImageExists]]
    );
    assert!(!plan(&scoped, &policies(text))[0].need().platforms);
    let excluded = facts("kube-system", vec![container("a", "r.io/a:1", None)]);
    assert_eq!(
        planned(&excluded, &policies(text)),
        vec![Vec::<RuleId>::new()]
    );
}

#[test]
fn a_disallowed_registry_is_never_planned_for() {
    let text = "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\nspec:\n  rules:\n    registry-allowed: {allow: [\"good.io/*\"]}\n    image-exists: {}\n";
    let facts = facts(
        "demo",
        vec![
            container("bad", "evil.example.com/app:1", None),
            container("good", "good.io/app:1", None),
        ],
    );
    assert_eq!(
        planned(&facts, &policies(text)),
        vec![vec![], vec![RuleId::ImageExists]]
    );
}

/// What the registry said of one container `name`: found, a node of each platform pulling `sizes` bytes.
fn weighed(name: &str, sizes: &[(&str, u64)]) -> Resolved {
    let sizes = sizes
        .iter()
        .map(|(platform, bytes)| crate::facts::PlatformSize {
            platform: platform.parse().expect("platform"),
            bytes: *bytes,
        })
        .collect();
    let status = crate::facts::ImageStatus::Found {
        digest: format!("sha256:{}", "a".repeat(64)),
        platforms: None,
        secret_problems: Vec::new(),
        sizes: Some(Ok(sizes)),
        configs: None,
        windows: None,
    };
    Resolved {
        images: BTreeMap::from([(format!("spec.containers[{name}].image"), status)]),
        ..Resolved::default()
    }
}

const GIB: u64 = 1 << 30;

#[rstest]
#[case::below_the_default("    image-size: {}\n", &[("linux/amd64", GIB)], None)]
#[case::above_the_default_warns("    image-size: {}\n", &[("linux/amd64", 3 * GIB)], Some((Action::Warn, "the image is 3.0 GiB for linux/amd64 compressed, over the 2Gi limit")))]
#[case::exactly_the_limit("    image-size: {maxCompressedSize: 2Gi}\n", &[("linux/amd64", 2 * GIB)], None)]
#[case::own_limit_and_action("    image-size: {action: deny, maxCompressedSize: 500Mi}\n", &[("linux/amd64", 600 << 20)], Some((Action::Deny, "600.0 MiB for linux/amd64 compressed, over the 500Mi limit")))]
#[case::only_the_platforms_over_it_named("    image-size: {maxCompressedSize: 1G}\n", &[("linux/amd64", 2 * GIB), ("linux/arm64", 900_000_000), ("linux/arm/v7", 2 * GIB)], Some((Action::Warn, "the image is 2.0 GiB for linux/amd64 and linux/arm/v7 compressed, over the 1G limit")))]
#[case::largest_first("    image-size: {maxCompressedSize: 1Gi}\n", &[("linux/amd64", 2 * GIB), ("linux/arm64", 3 * GIB)], Some((Action::Warn, "3.0 GiB for linux/arm64, 2.0 GiB for linux/amd64 compressed")))]
#[case::off("    image-size: {action: off}\n", &[("linux/amd64", 9 * GIB)], None)]
fn image_size(
    #[case] rules: &str,
    #[case] sizes: &[(&str, u64)],
    #[case] expected: Option<(Action, &str)>,
) {
    let facts = facts("demo", vec![container("app", "r.io/app:1", None)]);
    let verdict = evaluate(&facts, &weighed("app", sizes), &policy_with(rules));
    match (verdict.findings.as_slice(), expected) {
        ([], None) => {}
        ([finding], Some((action, text))) => {
            assert_eq!((finding.rule, finding.action), (RuleId::ImageSize, action));
            assert!(finding.message.contains(text), "{}", finding.message);
            assert!(finding.fix.contains("multi-stage build"), "{}", finding.fix);
        }
        (findings, expected) => panic!("{findings:?}, expected {expected:?}"),
    }
}

#[test]
fn a_size_that_cannot_be_read_is_only_a_warning() {
    let facts = facts("demo", vec![container("app", "r.io/app:1", None)]);
    let mut resolved = weighed("app", &[]);
    if let Some(crate::facts::ImageStatus::Found { sizes, .. }) =
        resolved.images.values_mut().next()
    {
        *sizes = Some(Err(crate::facts::ResolveError::Timeout));
    }
    let verdict = evaluate(
        &facts,
        &resolved,
        &policy_with("    image-size: {action: deny}\n"),
    );
    assert_eq!(fired(&verdict), vec![(RuleId::ImageSize, Action::Warn)]);
    let message = &verdict.findings[0].message;
    assert_eq!(
        message,
        "could not read the image's size from r.io: timed out"
    );
}

#[test]
fn a_stricter_namespace_policy_sets_its_own_limit() {
    let two = |name: &str, ns: &str, limit: &str| {
        format!(
            "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: {name}}}\nspec:\n  include: {{namespaces: [{ns}]}}\n  rules:\n    image-size: {{maxCompressedSize: {limit}}}\n"
        )
    };
    let set = policies(&format!(
        "{}---\n{}",
        two("everyone", "\"*\"", "2Gi"),
        two("edge", "edge", "100Mi")
    ));
    let resolved = weighed("app", &[("linux/arm64", 300 << 20)]);
    for (namespace, fires) in [("demo", false), ("edge", true)] {
        let facts = facts(namespace, vec![container("app", "r.io/app:1", None)]);
        let verdict = evaluate(&facts, &resolved, &set);
        assert_eq!(
            !verdict.findings.is_empty(),
            fires,
            "{namespace}: {verdict:?}"
        );
    }
}

#[rstest]
#[case::zero("0", "must be more than zero")]
#[case::milli("100m", "not a number of bytes")]
#[case::words("big", "not a number of bytes")]
fn a_bad_size_names_the_key(#[case] value: &str, #[case] reason: &str) {
    let yaml = format!(
        "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: t}}\nspec:\n  rules:\n    image-size: {{maxCompressedSize: {value}}}\n"
    );
    let error = parse_file(Path::new("t.yaml"), &yaml)
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("maxCompressedSize") || error.contains("image-size"),
        "{error}"
    );
    assert!(error.contains(reason), "{error}");
}
