use super::*;
use k8s_openapi::api::core::v1::PodSpec;
use rstest::rstest;
use serde_json::{Value, json};

const A: &str = "kubernetes.io/arch";
const O: &str = "kubernetes.io/os";

fn p(s: &str) -> Platform {
    s.parse().unwrap()
}

fn ps(list: &[&str]) -> Vec<Platform> {
    list.iter().map(|s| p(s)).collect()
}

/// A PodSpec with this nodeSelector and, unless `terms` is null, these required terms.
fn spec(selector: Value, terms: Value) -> PodSpec {
    let mut spec =
        json!({"containers": [{"name": "app", "image": "app"}], "nodeSelector": selector});
    if !terms.is_null() {
        let required = json!({"nodeSelectorTerms": terms});
        spec["affinity"] =
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}});
    }
    serde_json::from_value(spec).unwrap()
}

fn term(expressions: &[Value]) -> Value {
    json!({"matchExpressions": expressions})
}

fn req(key: &str, operator: &str, values: &[&str]) -> Value {
    json!({"key": key, "operator": operator, "values": values})
}

#[rustfmt::skip]
#[rstest]
#[case::amd64("linux/amd64", "linux", "amd64", None)]
#[case::arm64_v8("linux/arm64/v8", "linux", "arm64", Some("v8"))]
#[case::arm_v7("linux/arm/v7", "linux", "arm", Some("v7"))]
#[case::windows("windows/amd64", "windows", "amd64", None)]
#[case::kept_as_written("Linux/x86_64", "Linux", "x86_64", None)]
fn parses_and_displays(#[case] text: &str, #[case] os: &str, #[case] arch: &str, #[case] variant: Option<&str>) {
    let platform = p(text);
    assert_eq!((platform.os.as_str(), platform.architecture.as_str(), platform.variant.as_deref()), (os, arch, variant));
    assert_eq!(platform.to_string(), text);
}

#[rustfmt::skip]
#[rstest]
#[case::empty("", PlatformError::Empty)]
#[case::os_only("linux", PlatformError::ComponentCount { input: "linux".into(), count: 1 })]
#[case::too_many("linux/arm/v7/x", PlatformError::ComponentCount { input: "linux/arm/v7/x".into(), count: 4 })]
#[case::empty_arch("linux/", PlatformError::InvalidComponent { input: "linux/".into(), component: "".into() })]
#[case::space("linux/amd 64", PlatformError::InvalidComponent { input: "linux/amd 64".into(), component: "amd 64".into() })]
#[case::os_version("windows(10.0.17763)/amd64", PlatformError::InvalidComponent { input: "windows(10.0.17763)/amd64".into(), component: "windows(10.0.17763)".into() })]
fn rejects(#[case] text: &str, #[case] expected: PlatformError) {
    assert_eq!(text.parse::<Platform>(), Err(expected));
}

#[test]
fn deserializes_via_from_str() {
    let parse = |value| serde_json::from_value::<Vec<Platform>>(value);
    let list = parse(json!(["linux/amd64", "linux/arm/v7"])).unwrap();
    assert_eq!(list, ps(&["linux/amd64", "linux/arm/v7"]));
    let error = parse(json!(["amd64"])).unwrap_err().to_string();
    assert!(error.contains("invalid platform \"amd64\""), "{error}");
}

#[rustfmt::skip]
#[rstest]
#[case::x86_64("linux/x86_64", "linux/amd64")]
#[case::x86_dash_64("linux/x86-64", "linux/amd64")]
#[case::amd64_v1("linux/amd64/v1", "linux/amd64")]
#[case::amd64_v3_kept("linux/amd64/v3", "linux/amd64/v3")]
#[case::aarch64("linux/aarch64", "linux/arm64")]
#[case::arm64_v8("linux/arm64/v8", "linux/arm64")]
#[case::arm64_8("linux/arm64/8", "linux/arm64")]
#[case::arm_means_v7("linux/arm", "linux/arm/v7")]
#[case::arm_7("linux/arm/7", "linux/arm/v7")]
#[case::armhf("linux/armhf", "linux/arm/v7")]
#[case::armel("linux/armel", "linux/arm/v6")]
#[case::i386("linux/i386", "linux/386")]
#[case::case_folded("Windows/AMD64", "windows/amd64")]
#[case::macos("macos/arm64", "darwin/arm64")]
#[case::unknown_arch_kept("linux/riscv64", "linux/riscv64")]
fn normalizes(#[case] text: &str, #[case] expected: &str) {
    assert_eq!(p(text).normalized().to_string(), expected);
}

#[rustfmt::skip]
#[rstest]
#[case::same("linux/amd64", "linux/amd64", true)]
#[case::spelling("linux/x86_64", "linux/amd64", true)]
#[case::arm64_v8_on_aarch64("linux/arm64/v8", "linux/aarch64", true)]
#[case::arm64_on_amd64("linux/arm64", "linux/amd64", false)]
#[case::amd64_on_arm64("linux/amd64", "linux/arm64", false)]
#[case::i386_on_amd64("linux/386", "linux/amd64", true)]
#[case::amd64_on_386("linux/amd64", "linux/386", false)]
#[case::amd64_v2_on_amd64("linux/amd64/v2", "linux/amd64", false)]
#[case::amd64_on_amd64_v3("linux/amd64", "linux/amd64/v3", true)]
#[case::arm_v7_on_arm64("linux/arm/v7", "linux/arm64", true)]
#[case::arm_v5_on_arm64("linux/arm/v5", "linux/arm64/v8", true)]
#[case::arm_v6_on_arm_v7("linux/arm/v6", "linux/arm", true)]
#[case::arm_v7_on_arm_v6("linux/arm/v7", "linux/arm/v6", false)]
#[case::arm64_on_arm_v7("linux/arm64", "linux/arm/v7", false)]
#[case::arm64_v8_2_on_v9("linux/arm64/v8.2", "linux/arm64/v9", true)]
#[case::arm64_v9_on_v8("linux/arm64/v9", "linux/arm64", false)]
#[case::windows_on_linux("windows/amd64", "linux/amd64", false)]
fn runs_on(#[case] image: &str, #[case] node: &str, #[case] expected: bool) {
    assert_eq!(p(image).runs_on(&p(node)), expected);
}

#[rustfmt::skip]
#[rstest]
#[case::unconstrained(json!({}), Value::Null, &["linux/arm64", "linux/amd64"], &["linux/amd64", "linux/arm64"], false)]
#[case::unconstrained_normalises(json!({}), Value::Null, &["linux/x86_64", "linux/arm"], &["linux/amd64", "linux/arm/v7"], false)]
#[case::other_keys_ignored(json!({"disktype": "ssd"}), json!([term(&[req("topology.kubernetes.io/zone", "In", &["a"])])]), &["linux/amd64"], &["linux/amd64"], false)]
#[case::selector_arch(json!({A: "arm64"}), Value::Null, &["linux/amd64", "linux/arm64"], &["linux/arm64"], true)]
#[case::selector_legacy_os(json!({"beta.kubernetes.io/os": "linux"}), Value::Null, &["linux/amd64", "windows/amd64"], &["linux/amd64"], true)]
#[case::selector_outside_nodes(json!({A: "arm64"}), Value::Null, &["linux/amd64"], &["linux/arm64"], true)]
#[case::selector_exact(json!({O: "windows", A: "arm64"}), Value::Null, &["linux/amd64"], &["windows/arm64"], true)]
#[case::selector_keeps_node_variant(json!({A: "arm"}), Value::Null, &["linux/arm/v6", "linux/amd64"], &["linux/arm/v6"], true)]
#[case::affinity_in(json!({}), json!([term(&[req(A, "In", &["amd64", "arm64"])])]), &["linux/amd64"], &["linux/amd64", "linux/arm64"], true)]
#[case::affinity_not_in(json!({}), json!([term(&[req(A, "NotIn", &["arm64"])])]), &["linux/amd64", "linux/arm64"], &["linux/amd64"], true)]
#[case::affinity_exists(json!({}), json!([term(&[req(A, "Exists", &[])])]), &["linux/amd64", "linux/arm64"], &["linux/amd64", "linux/arm64"], true)]
#[case::affinity_does_not_exist(json!({}), json!([term(&[req(O, "DoesNotExist", &[])])]), &["linux/amd64"], &[], true)]
#[case::selector_outside_nodes_os_from_nodes(json!({A: "arm64"}), Value::Null, &["linux/amd64", "windows/amd64"], &["linux/arm64", "windows/arm64"], true)]
#[case::terms_ored(json!({}), json!([term(&[req(A, "In", &["arm64"])]), term(&[req(O, "In", &["windows"])])]), &["linux/amd64", "linux/arm64", "windows/amd64"], &["linux/arm64", "windows/amd64"], true)]
#[case::expressions_anded(json!({}), json!([term(&[req(O, "In", &["linux"]), req(A, "NotIn", &["amd64"])])]), &["linux/amd64", "linux/arm64", "windows/arm64"], &["linux/arm64"], true)]
#[case::selector_and_affinity(json!({O: "windows"}), json!([term(&[req(A, "In", &["arm64"])])]), &["linux/amd64"], &["windows/arm64"], true)]
#[case::contradiction(json!({A: "amd64"}), json!([term(&[req(A, "NotIn", &["amd64"])])]), &["linux/amd64", "linux/arm64"], &[], true)]
#[case::selector_vs_affinity_in(json!({A: "amd64"}), json!([term(&[req(A, "In", &["arm64"])])]), &["linux/amd64"], &[], true)]
#[case::empty_term_matches_nothing(json!({}), json!([{}]), &["linux/amd64"], &[], true)]
#[case::match_fields_only(json!({}), json!([{"matchFields": [req("metadata.name", "In", &["n1"])]}]), &["linux/amd64"], &["linux/amd64"], false)]
fn pod_platforms_from(#[case] selector: Value, #[case] terms: Value, #[case] nodes: &[&str], #[case] expected: &[&str], #[case] constrained: bool) {
    let got = pod_platforms(&spec(selector, terms), &ps(nodes));
    assert_eq!(got, PodPlatforms { candidates: expected.iter().map(|s| p(s).normalized()).collect(), constrained, other_os: Vec::new(), windows_builds: Default::default() });
}

const INDEX: &[&str] = &[
    "linux/amd64",
    "linux/arm64/v8",
    "unknown/unknown",
    "unknown/unknown",
];

#[rustfmt::skip]
#[rstest]
#[case::index_covers_all(INDEX, &["linux/amd64", "linux/arm64"], PlatformMatch::All)]
#[case::arm_v7_image_on_arm64(&["linux/arm/v7"], &["linux/arm64"], PlatformMatch::All)]
#[case::unschedulable_is_not_an_image_problem(&["linux/amd64"], &[], PlatformMatch::All)]
#[case::index_lacks_s390x(INDEX, &["linux/amd64", "linux/s390x"], PlatformMatch::Some { missing: ps(&["linux/s390x"]) })]
#[case::amd64_only_on_arm64(&["linux/amd64"], &["linux/arm64"], PlatformMatch::None { wanted: ps(&["linux/arm64"]), offered: ps(&["linux/amd64"]) })]
#[case::attestations_are_not_offered(INDEX, &["linux/ppc64le"], PlatformMatch::None { wanted: ps(&["linux/ppc64le"]), offered: ps(&["linux/amd64", "linux/arm64"]) })]
#[case::only_attestations(&["unknown/unknown"], &["linux/amd64"], PlatformMatch::None { wanted: ps(&["linux/amd64"]), offered: vec![] })]
fn compares(#[case] image: &[&str], #[case] candidates: &[&str], #[case] expected: PlatformMatch) {
    let pod = PodPlatforms { candidates: ps(candidates), constrained: false, other_os: Vec::new(), windows_builds: Default::default() };
    assert_eq!(compare(&ps(image), &pod), expected);
}

#[rstest]
#[case::own_platform_first("linux/amd64", &["linux/386", "linux/amd64"], Some(1))]
#[case::older_variant_when_alone("linux/arm/v7", &["linux/arm64", "linux/arm/v6"], Some(1))]
#[case::nearest_variant("linux/arm64", &["linux/arm/v6", "linux/arm/v7"], Some(1))]
#[case::first_listed_on_a_tie("linux/amd64", &["linux/x86_64", "linux/amd64"], Some(0))]
#[case::nothing_runs("linux/arm64", &["linux/amd64", "windows/arm64"], None)]
fn preferred_entry(#[case] node: &str, #[case] offered: &[&str], #[case] expected: Option<usize>) {
    assert_eq!(preferred(&p(node), &ps(offered)), expected);
}

#[rstest]
#[case("linux/amd64")]
#[case("linux/amd64/v1")]
#[case("linux/x86_64")]
#[case("Linux/amd64")]
#[case("macos/arm64")]
#[case("linux/aarch64")]
#[case("linux/arm64/v8")]
#[case("linux/arm64/v8.2")]
#[case("linux/arm")]
#[case("linux/arm/7")]
#[case("linux/arm/v7")]
#[case("linux/armhf")]
#[case("linux/i386")]
#[case("windows/amd64")]
#[case("linux/AMD64")]
#[case("linux/arm/V7")]
fn is_normalized_agrees_with_normalized(#[case] text: &str) {
    let platform = p(text);
    assert_eq!(
        platform.is_normalized(),
        platform.normalized() == platform,
        "{text}"
    );
}

/// A PodSpec with this nodeSelector, required terms (unless null) and `spec.os.name`.
fn spec_with_os(selector: Value, terms: Value, os: &str) -> PodSpec {
    let mut spec = spec(selector, terms);
    spec.os = Some(k8s_openapi::api::core::v1::PodOS { name: os.into() });
    spec
}

#[rustfmt::skip]
#[rstest]
#[case::unconstrained(json!({}), Value::Null, "windows", None)]
#[case::selector_agrees(json!({O: "windows"}), Value::Null, "windows", Some(true))]
#[case::selector_contradicts(json!({O: "linux"}), Value::Null, "windows", Some(false))]
#[case::legacy_label(json!({"beta.kubernetes.io/os": "linux"}), Value::Null, "windows", Some(false))]
#[case::arch_only_is_no_os_constraint(json!({A: "arm64"}), Value::Null, "linux", None)]
#[case::affinity_not_in(json!({}), json!([term(&[req(O, "NotIn", &["windows"])])]), "windows", Some(false))]
#[case::affinity_either_term(json!({}), json!([term(&[req(O, "In", &["linux"])]), term(&[req(O, "In", &["windows"])])]), "windows", Some(true))]
#[case::affinity_arch_term_leaves_os_open(json!({}), json!([term(&[req(O, "In", &["linux"])]), term(&[req(A, "In", &["amd64"])])]), "windows", Some(true))]
fn the_declared_os_against_the_scheduling_constraints(#[case] selector: Value, #[case] terms: Value, #[case] os: &str, #[case] expected: Option<bool>) {
    assert_eq!(os_allowed(&spec(selector, terms), os), expected);
}

#[rustfmt::skip]
#[rstest]
// A Windows pod in a cluster pullgate knows as Linux-only runs (if anywhere) on windows nodes: the image
// is compared with those, and the Linux nodes the scheduler may still pick are kept apart.
#[case::unconstrained(json!({}), &["linux/amd64"], "windows", &["windows/amd64"], &["linux/amd64"])]
#[case::mixed_cluster(json!({}), &["linux/amd64", "linux/arm64", "windows/amd64"], "windows", &["windows/amd64"], &["linux/amd64", "linux/arm64"])]
#[case::selected(json!({O: "windows"}), &["linux/amd64", "windows/amd64"], "windows", &["windows/amd64"], &[])]
#[case::linux_pod(json!({}), &["linux/amd64", "windows/amd64"], "linux", &["linux/amd64"], &["windows/amd64"])]
fn a_declared_os_narrows_where_the_pod_runs(#[case] selector: Value, #[case] nodes: &[&str], #[case] os: &str, #[case] runs: &[&str], #[case] other: &[&str]) {
    let got = pod_platforms(&spec_with_os(selector, Value::Null, os), &ps(nodes));
    assert_eq!(got.candidates, ps(runs));
    assert_eq!(got.other_os, ps(other));
}
