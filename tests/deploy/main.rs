//! The install manifests as a cluster would receive them: the kustomize base and overlays rendered by
//! `kubectl kustomize`, the Helm chart linted and rendered by `helm` with default and non-default values, every
//! object read into its k8s-openapi type with no field lost ([`render`]), then the invariants a platform team
//! relies on ([`invariants`]) and the values each rendering was asked for (here).
//!
//! kubectl and helm come from `scripts/install-tools.sh` (which `./test.sh` runs) in `target/tools/bin`; a
//! missing tool fails the tests with that instruction.

mod access;
mod audit;
mod docs;
mod invariants;
mod pods;
mod providers;
mod render;

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use invariants::{Install, check_install};
use render::{CHART, NAMESPACE, Rendered, fixture, helm, helm_template, kustomize, repo, run};

fn shipped_policy() -> String {
    std::fs::read_to_string(repo().join("policies/default.yaml")).expect("policies/default.yaml")
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The defaults both install paths promise (docs/install.md).
fn assert_documented_defaults(install: &Install) {
    assert_eq!(install.replicas, 2);
    assert_eq!(
        install.failure_policy, "Ignore",
        "pullgate down must not stop the cluster"
    );
    assert_eq!(install.timeout_seconds, 10);
    assert_eq!(install.settings.resolution.budget_seconds, 8.0);
    assert_eq!(
        install.excluded_namespaces,
        set(&["kube-system", NAMESPACE])
    );
    assert_eq!(install.tls_secret, "pullgate-tls");
    assert!(install.node_list && install.settings.node_platform_discovery);
    let files: Vec<&String> = install.policy_files.keys().collect();
    assert_eq!(files, vec!["default.yaml"], "the shipped policy only");
    assert_eq!(
        install.policy_files["default.yaml"],
        shipped_policy(),
        "the ConfigMap's policy drifted from policies/default.yaml"
    );
}

// kustomize

#[test]
fn kustomize_base_holds_the_invariants_and_the_documented_defaults() {
    let r = Rendered::parse("deploy/base", &kustomize(Path::new("deploy/base")));
    let install = check_install(&r);
    assert_documented_defaults(&install);
    assert!(
        install.ca_bundle.is_none() && install.ca_injected_from.is_none(),
        "the certificate overlays bring the CA"
    );
    assert!(
        r.all::<Secret>().is_empty(),
        "the Secret comes from an overlay"
    );
    assert!(
        install.image.ends_with(":0.1.0"),
        "a pinned tag: {}",
        install.image
    );
    let namespace = r.one::<Namespace>();
    assert_eq!(namespace.metadata.name.as_deref(), Some(NAMESPACE));
    let labels = namespace.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("pullgate.dev/ignore").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted"),
        "pullgate's own pods pass the restricted Pod Security Standard"
    );
}

#[test]
fn kustomize_cert_manager_overlay_injects_the_ca_of_the_serving_certificate() {
    let dir = "deploy/overlays/cert-manager";
    let r = Rendered::parse(dir, &kustomize(Path::new(dir)));
    let install = check_install(&r);
    assert_documented_defaults(&install);
    assert_eq!(
        install.ca_injected_from.as_deref(),
        Some("pullgate-system/pullgate-serving")
    );
    let certificates = r.custom("cert-manager.io/v1", "Certificate");
    let serving = certificates
        .iter()
        .find(|c| c["metadata"]["name"] == "pullgate-serving");
    let serving = serving.expect("serving Certificate");
    let ca = certificates
        .iter()
        .find(|c| c["spec"]["isCA"] == true)
        .expect("a CA Certificate");
    let issuers = r.custom("cert-manager.io/v1", "Issuer");
    let ca_issuer = issuers
        .iter()
        .find(|i| i["metadata"]["name"] == serving["spec"]["issuerRef"]["name"])
        .expect("the serving certificate's Issuer is rendered");
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"], ca["spec"]["secretName"],
        "the serving certificate is signed by the long-lived CA, so renewals keep the caBundle"
    );
    assert_eq!(serving["spec"]["privateKey"]["rotationPolicy"], "Always");
}

#[test]
fn kustomize_example_overlay_sets_image_failure_policy_and_policies() {
    let dir = fixture("overlay-example");
    let r = Rendered::parse("overlay-example (docs/install.md)", &kustomize(&dir));
    let install = check_install(&r);
    assert_eq!(
        install.image,
        "registry.mycorp.example/platform/pullgate:0.1.0"
    );
    assert_eq!(install.failure_policy, "Fail");
    assert_eq!(
        install.excluded_namespaces,
        set(&["kube-system", NAMESPACE])
    );
    let files: Vec<&String> = install.policy_files.keys().collect();
    assert_eq!(files, vec!["default.yaml", "team.yaml"]);
    assert_eq!(install.policy_files["default.yaml"], shipped_policy());
    let names: Vec<String> = r
        .all::<ConfigMap>()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert!(
        names.contains(&"pullgate-policies".to_owned()),
        "the policies keep their fixed name (reloaded in place): {names:?}"
    );
}

#[test]
fn kustomize_base_policy_configmap_is_the_shipped_policy() {
    let path = repo().join("deploy/base/policies.yaml");
    let text = std::fs::read_to_string(path).expect("policies.yaml");
    let map: ConfigMap = serde_saphyr::from_str(&text).expect("policies.yaml is a ConfigMap");
    assert_eq!(
        map.data.unwrap_or_default().get("default.yaml"),
        Some(&shipped_policy()),
        "deploy/base/policies.yaml drifted from policies/default.yaml: copy the file into it"
    );
}

// Helm

#[test]
fn helm_lint_is_clean_for_default_and_test_values() {
    if render::helm_skipped("helm_lint_is_clean_for_default_and_test_values") {
        return;
    }
    let mut runs: Vec<Vec<String>> = vec![vec![]];
    for file in ["values-nondefault.yaml", "values-existing-secret.yaml"] {
        runs.push(vec!["--values".into(), fixture(file).display().to_string()]);
    }
    for extra in runs {
        let mut args = vec!["lint", "--strict", CHART, "--namespace", NAMESPACE];
        args.extend(extra.iter().map(String::as_str));
        let out = run(helm(&args));
        assert!(
            out.contains("0 chart(s) failed"),
            "helm lint {extra:?}:\n{out}"
        );
        let clean = !out.contains("[WARNING]") && !out.contains("[ERROR]");
        assert!(clean, "helm lint {extra:?}:\n{out}");
    }
}

#[test]
fn helm_default_values_hold_the_invariants_and_the_documented_defaults() {
    if render::helm_skipped("helm_default_values_hold_the_invariants_and_the_documented_defaults") {
        return;
    }
    let r = Rendered::parse("helm (default values)", &helm_template(&[], &[]));
    let install = check_install(&r);
    assert_documented_defaults(&install);
    assert!(
        r.all::<Namespace>().is_empty(),
        "helm installs into --namespace"
    );
    assert!(
        install.ca_bundle.is_some(),
        "generated mode: the chart's CA is the caBundle"
    );
    assert_eq!(
        r.all::<Secret>().len(),
        1,
        "generated mode: the chart's Secret"
    );
    assert!(
        install.image.ends_with(":0.1.0"),
        "appVersion tag: {}",
        install.image
    );
    assert!(
        r.custom("monitoring.coreos.com/v1", "ServiceMonitor")
            .is_empty()
    );
    let values =
        std::fs::read_to_string(repo().join(CHART).join("values.yaml")).expect("values.yaml");
    let values: Value = serde_saphyr::from_str(&values).expect("values.yaml parses");
    assert_eq!(
        values["policies"]["default.yaml"],
        shipped_policy(),
        "values.yaml policy drifted"
    );
}

#[test]
fn helm_non_default_values_render_as_asked() {
    if render::helm_skipped("helm_non_default_values_render_as_asked") {
        return;
    }
    let values = fixture("values-nondefault.yaml");
    let r = Rendered::parse(
        "helm (values-nondefault.yaml)",
        &helm_template(&[&values], &[]),
    );
    let install = check_install(&r);
    assert_eq!(install.replicas, 3);
    assert_eq!(
        install.image,
        "registry.example.com/platform/pullgate@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(install.failure_policy, "Fail");
    assert_eq!(install.timeout_seconds, 15);
    assert_eq!(install.settings.resolution.budget_seconds, 12.0);
    assert_eq!(
        install.excluded_namespaces,
        set(&["kube-system", "monitoring", NAMESPACE])
    );
    assert!(!install.node_list, "no `list nodes` when discovery is off");
    assert_eq!(install.settings.node_platforms.len(), 2);
    assert!(
        install
            .settings
            .registries
            .contains_key("registry.example.com:5000")
    );
    let files: Vec<&String> = install.policy_files.keys().collect();
    assert_eq!(
        files,
        vec!["default.yaml", "team.yaml"],
        "added files join the default"
    );

    assert_eq!(
        install.ca_injected_from.as_deref(),
        Some("pullgate-system/pullgate-serving")
    );
    assert!(
        r.all::<Secret>().is_empty(),
        "cert-manager writes the Secret"
    );
    let certificates = r.custom("cert-manager.io/v1", "Certificate");
    assert_eq!(certificates.len(), 1, "the user's issuer: no CA of our own");
    assert_eq!(
        certificates[0]["spec"]["issuerRef"]["kind"],
        "ClusterIssuer"
    );
    assert_eq!(certificates[0]["spec"]["issuerRef"]["name"], "platform-ca");
    assert_eq!(certificates[0]["spec"]["duration"], "720h");
    assert!(r.custom("cert-manager.io/v1", "Issuer").is_empty());

    let template = r.one::<Deployment>().spec.expect("spec").template;
    let annotations = template
        .metadata
        .expect("metadata")
        .annotations
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        annotations.get("prometheus.io/scheme").map(String::as_str),
        Some("https")
    );
    assert_eq!(
        annotations.get("prometheus.io/path").map(String::as_str),
        Some("/metrics")
    );
    let pod = template.spec.expect("pod");
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert_eq!(pod.tolerations.map(|t| t.len()), Some(1));
    let container = &pod.containers[0];
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
    let limits = container
        .resources
        .clone()
        .and_then(|r| r.limits)
        .expect("limits");
    assert_eq!(limits["memory"].0, "1Gi");
    let env = container.env.clone().unwrap_or_default();
    let log = env
        .iter()
        .find(|e| e.name == "RUST_LOG")
        .and_then(|e| e.value.as_deref());
    assert_eq!(log, Some("pullgate=debug,info"));
    let budget = r.one::<PodDisruptionBudget>().spec.expect("spec");
    assert_eq!(budget.min_available, Some(IntOrString::Int(2)));
    let egress = r
        .one::<NetworkPolicy>()
        .spec
        .expect("spec")
        .egress
        .unwrap_or_default();
    let ports: Vec<IntOrString> = egress
        .into_iter()
        .flat_map(|e| e.ports.unwrap_or_default())
        .filter_map(|p| p.port)
        .collect();
    assert!(
        ports.contains(&IntOrString::Int(8443)),
        "egress ports from values"
    );

    let monitors = r.custom("monitoring.coreos.com/v1", "ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    let endpoint = &monitors[0]["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "https");
    assert_eq!(
        endpoint["tlsConfig"]["serverName"],
        "pullgate.pullgate-system.svc"
    );
    assert_eq!(
        endpoint["tlsConfig"]["ca"]["secret"]["name"],
        install.tls_secret.as_str()
    );
}

#[test]
fn helm_existing_secret_mode_mounts_that_secret_and_trusts_the_given_ca() {
    if render::helm_skipped("helm_existing_secret_mode_mounts_that_secret_and_trusts_the_given_ca")
    {
        return;
    }
    let values = fixture("values-existing-secret.yaml");
    let r = Rendered::parse(
        "helm (values-existing-secret.yaml)",
        &helm_template(&[&values], &[]),
    );
    let install = check_install(&r);
    assert_eq!(install.tls_secret, "my-pullgate-tls");
    assert!(r.all::<Secret>().is_empty(), "the Secret is the user's");
    let bundle = String::from_utf8(install.ca_bundle.expect("caBundle")).expect("PEM");
    assert!(
        bundle.starts_with("-----BEGIN CERTIFICATE-----\nMIIBczCCARmgAwIBAgIU"),
        "{bundle}"
    );
    assert!(install.ca_injected_from.is_none());
}

#[test]
fn helm_can_make_the_namespace_labelled_as_the_kustomize_base() {
    if render::helm_skipped("helm_can_make_the_namespace_labelled_as_the_kustomize_base") {
        return;
    }
    use k8s_openapi::api::core::v1::Namespace;
    let default = Rendered::parse("helm (default)", &helm_template(&[], &[]));
    assert!(default.all::<Namespace>().is_empty(), "opt-in only");
    let r = Rendered::parse(
        "helm (namespace.create=true)",
        &helm_template(&[], &["namespace.create=true"]),
    );
    let namespaces = r.all::<Namespace>();
    assert_eq!(namespaces.len(), 1, "{namespaces:?}");
    let labels = namespaces[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        namespaces[0].metadata.name.as_deref(),
        Some("pullgate-system")
    );
    assert_eq!(
        labels.get("pullgate.dev/ignore").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
}

#[test]
fn helm_cert_manager_mode_without_an_issuer_brings_its_own_ca() {
    if render::helm_skipped("helm_cert_manager_mode_without_an_issuer_brings_its_own_ca") {
        return;
    }
    let r = Rendered::parse(
        "helm (certs.mode=cert-manager)",
        &helm_template(&[], &["certs.mode=cert-manager"]),
    );
    let install = check_install(&r);
    assert_documented_defaults(&install);
    assert_eq!(
        install.ca_injected_from.as_deref(),
        Some("pullgate-system/pullgate-serving")
    );
    assert!(
        r.all::<Secret>().is_empty(),
        "cert-manager writes the Secret"
    );
    let certificates = r.custom("cert-manager.io/v1", "Certificate");
    let ca = certificates
        .iter()
        .find(|c| c["spec"]["isCA"] == true)
        .expect("a CA Certificate");
    let serving = certificates
        .iter()
        .find(|c| c["metadata"]["name"] == "pullgate-serving");
    let issuer_name = &serving.expect("serving Certificate")["spec"]["issuerRef"]["name"];
    let issuers = r.custom("cert-manager.io/v1", "Issuer");
    let issuer = issuers
        .iter()
        .find(|i| i["metadata"]["name"] == *issuer_name);
    let issuer = issuer.expect("the serving certificate's Issuer is rendered");
    assert_eq!(issuer["spec"]["ca"]["secretName"], ca["spec"]["secretName"]);
}

#[test]
fn helm_refuses_a_budget_at_or_above_the_timeout_and_unknown_values() {
    if render::helm_skipped("helm_refuses_a_budget_at_or_above_the_timeout_and_unknown_values") {
        return;
    }
    let cases: [(&[&str], &str); 5] = [
        (
            &["--set", "webhook.timeoutSeconds=8"],
            "must be below webhook.timeoutSeconds",
        ),
        (&["--set", "webhook.timeoutSeconds=31"], "timeoutSeconds"),
        (&["--set", "webhook.failurePolicy=Open"], "failurePolicy"),
        (&["--set", "webhok.timeoutSeconds=5"], "webhok"),
        (
            &["--set", "certs.mode=existing-secret"],
            "certs.existingSecret",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["template", "pullgate", CHART, "--namespace", NAMESPACE];
        args.extend(extra);
        let output = helm(&args).output().expect("helm runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "helm accepted {extra:?}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}
