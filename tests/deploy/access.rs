//! The API side of the install: RBAC limited to what the code reads, the webhook that can never lock the
//! cluster out, and how the apiserver comes to trust the serving certificate.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhook;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use pullgate::config::Settings;
use serde_json::Value;

use crate::pods::Pods;
use crate::render::Rendered;

/// What the ClusterRoles grant beyond `get` on secrets and serviceaccounts.
pub struct Granted {
    /// `list nodes` (node platform discovery).
    pub node_list: bool,
    /// `list` on every workload kind (the continuous audit).
    pub workload_list: bool,
}

/// The workload kinds by API group, as the audit lists them (and the webhook rules name them).
fn workload_resources() -> BTreeSet<(String, String)> {
    required_rules()
        .into_iter()
        .flat_map(|(group, resources)| {
            resources
                .into_iter()
                .filter(|r| !r.contains('/'))
                .map(move |r| (group.to_owned(), r.to_owned()))
        })
        .collect()
}

/// RBAC: `get` secrets and serviceaccounts, `list` nodes at most, `list` on the workload kinds at most,
/// bound to the pods' ServiceAccount.
pub fn check_rbac(r: &Rendered, pods: &Pods) -> Granted {
    let account = r.one::<ServiceAccount>();
    assert_eq!(
        pods.spec.service_account_name, account.metadata.name,
        "pods run as the ServiceAccount"
    );
    let roles = r.all::<ClusterRole>();
    let mut granted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in roles.iter().flat_map(|role| role.rules.iter().flatten()) {
        assert!(rule.non_resource_urls.is_none(), "no non-resource URLs");
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let verbs = granted
                    .entry((group.clone(), resource.clone()))
                    .or_default();
                verbs.extend(rule.verbs.iter().cloned());
            }
        }
    }
    for ((group, resource), verbs) in &granted {
        if matches!(group.as_str(), "" | "*") && matches!(resource.as_str(), "secrets" | "*") {
            for verb in ["list", "watch", "*"] {
                assert!(
                    !verbs.contains(verb),
                    "{}: ClusterRole grants {verb} on secrets",
                    r.source
                );
            }
        }
        if workload_resources().contains(&(group.clone(), resource.clone())) {
            assert_eq!(
                verbs,
                &BTreeSet::from(["list".to_owned()]),
                "{}: {group}/{resource}: list only (the audit)",
                r.source
            );
            continue;
        }
        let allowed: &[&str] = match resource.as_str() {
            "secrets" | "serviceaccounts" => &["get"],
            "nodes" => &["list"],
            // Only for credential provider plugins with tokenAttributes (checked in providers.rs).
            "serviceaccounts/token" => &["create"],
            other => panic!(
                "{}: ClusterRole grants {other}, which the code never reads",
                r.source
            ),
        };
        assert!(
            group.is_empty(),
            "{}: core group only, not {group:?}",
            r.source
        );
        assert!(
            verbs.iter().all(|v| allowed.contains(&v.as_str())),
            "{resource}: {verbs:?}"
        );
    }
    for resource in ["secrets", "serviceaccounts"] {
        assert!(
            granted.contains_key(&(String::new(), resource.to_owned())),
            "get {resource}"
        );
    }
    let bindings = r.all::<ClusterRoleBinding>();
    for role in &roles {
        let bound = bindings.iter().any(|binding| {
            binding.role_ref.kind == "ClusterRole"
                && Some(&binding.role_ref.name) == role.metadata.name.as_ref()
                && binding.subjects.iter().flatten().any(|s| {
                    s.kind == "ServiceAccount"
                        && Some(&s.name) == account.metadata.name.as_ref()
                        && s.namespace.as_deref() == Some(pods.namespace.as_str())
                })
        });
        assert!(
            bound,
            "{}: ClusterRole {:?} is bound to the pods' ServiceAccount",
            r.source, role.metadata.name
        );
    }
    let workloads = workload_resources();
    let listed = workloads
        .iter()
        .filter(|k| granted.contains_key(*k))
        .count();
    assert!(
        listed == 0 || listed == workloads.len(),
        "{}: list on all workload kinds or none",
        r.source
    );
    Granted {
        node_list: granted.contains_key(&(String::new(), "nodes".to_owned())),
        workload_list: listed == workloads.len(),
    }
}

/// The resources each API group's webhook rule must cover (README "What is checked").
pub fn required_rules() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    BTreeMap::from([
        (
            "",
            BTreeSet::from([
                "pods",
                "pods/ephemeralcontainers",
                "replicationcontrollers",
                "podtemplates",
            ]),
        ),
        (
            "apps",
            BTreeSet::from(["deployments", "replicasets", "statefulsets", "daemonsets"]),
        ),
        ("batch", BTreeSet::from(["jobs", "cronjobs"])),
    ])
}

pub fn check_webhook(
    r: &Rendered,
    webhook: &ValidatingWebhook,
    service: &Service,
    namespace: &str,
    settings: &Settings,
) {
    let name = &webhook.name;
    let source = &r.source;
    assert!(
        name.split('.').count() >= 3,
        "webhook {name}: the apiserver wants at least three segments"
    );
    assert_eq!(webhook.side_effects, "None", "{name}: sideEffects");
    assert_eq!(
        webhook.admission_review_versions,
        vec!["v1"],
        "{name}: admissionReviewVersions"
    );
    assert_eq!(
        webhook.match_policy.as_deref(),
        Some("Equivalent"),
        "{name}: matchPolicy"
    );
    assert!(
        webhook.object_selector.is_none(),
        "{name}: no objectSelector: every object is checked"
    );
    let failure_policy = webhook.failure_policy.as_deref();
    assert!(
        matches!(failure_policy, Some("Ignore" | "Fail")),
        "{name}: failurePolicy set explicitly"
    );
    let timeout = webhook.timeout_seconds.unwrap_or(10);
    let budget = settings.resolution.budget_seconds;
    assert!(
        timeout <= 30 && f64::from(timeout) > budget,
        "{source}: timeoutSeconds {timeout} must be at most 30 and above the server's budget {budget}"
    );

    let mut covered: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for rule in webhook.rules.iter().flatten() {
        assert_eq!(
            rule.operations.clone().unwrap_or_default(),
            vec!["CREATE", "UPDATE"],
            "{name}: operations"
        );
        assert_eq!(
            rule.api_versions.clone().unwrap_or_default(),
            vec!["v1"],
            "{name}: apiVersions"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                covered.entry(group).or_default().insert(resource);
            }
        }
    }
    assert_eq!(covered, required_rules(), "{name}: rules");

    let target = webhook
        .client_config
        .service
        .as_ref()
        .expect("clientConfig.service");
    assert!(
        webhook.client_config.url.is_none(),
        "{name}: service, not url"
    );
    assert_eq!(
        Some(&target.name),
        service.metadata.name.as_ref(),
        "{name}: service"
    );
    assert_eq!(target.namespace, namespace, "{name}: service namespace");
    assert_eq!(target.path.as_deref(), Some("/validate"), "{name}: path");
    let port = target.port.unwrap_or(443);
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    assert!(
        ports.iter().any(|p| p.port == port),
        "{name}: Service has no port {port}"
    );

    let selector = webhook.namespace_selector.clone();
    let selector = selector.unwrap_or_else(|| panic!("{source}: {name} has no namespaceSelector"));
    let expressions = selector.match_expressions.unwrap_or_default();
    let by_name = expressions
        .iter()
        .find(|e| e.key == "kubernetes.io/metadata.name");
    let by_name = by_name.expect("namespaceSelector excludes namespaces by name");
    assert_eq!(by_name.operator, "NotIn");
    let excluded = excluded_namespaces(webhook);
    for must in ["kube-system", namespace] {
        assert!(excluded.contains(must), "{source}: {must} is not excluded");
    }
    let ignore = expressions.iter().find(|e| e.key == "pullgate.dev/ignore");
    let ignore = ignore.expect("namespaceSelector honours pullgate.dev/ignore");
    assert_eq!(ignore.operator, "NotIn");
    assert_eq!(ignore.values, Some(vec!["true".to_owned()]));
    assert!(
        selector.match_labels.unwrap_or_default().is_empty(),
        "{name}: matchLabels would leave unlabelled namespaces unchecked"
    );
}

pub fn excluded_namespaces(webhook: &ValidatingWebhook) -> BTreeSet<String> {
    webhook
        .namespace_selector
        .iter()
        .flat_map(|s| s.match_expressions.clone().unwrap_or_default())
        .filter(|e| e.key == "kubernetes.io/metadata.name")
        .flat_map(|e| e.values.unwrap_or_default())
        .collect()
}

/// How the apiserver comes to trust the serving certificate: cert-manager's injection from the Certificate
/// that writes the mounted Secret, or a caBundle that is the rendered Secret's CA.
pub fn check_trust(
    r: &Rendered,
    service: &Service,
    tls_secret: &str,
    ca_bundle: Option<&[u8]>,
    injected_from: Option<&str>,
) {
    if let Some(from) = injected_from {
        assert!(ca_bundle.is_none(), "caBundle is cert-manager's to set");
        let id = |c: &Value| {
            let meta = &c["metadata"];
            format!(
                "{}/{}",
                meta["namespace"].as_str().unwrap_or_default(),
                meta["name"].as_str().unwrap_or_default()
            )
        };
        let certificates = r.custom("cert-manager.io/v1", "Certificate");
        let certificate = certificates.into_iter().find(|c| id(c) == from);
        let certificate = certificate
            .unwrap_or_else(|| panic!("{}: inject-ca-from {from}: no such Certificate", r.source));
        assert_eq!(
            certificate["spec"]["secretName"], tls_secret,
            "the Certificate writes the mounted Secret"
        );
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let host = format!(
            "{}.{namespace}.svc",
            service.metadata.name.clone().unwrap_or_default()
        );
        let names = certificate["spec"]["dnsNames"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            names.contains(&Value::String(host.clone())),
            "the Certificate names {host}"
        );
    }
    if let Some(bundle) = ca_bundle {
        let text = String::from_utf8(bundle.to_vec()).expect("caBundle is PEM text");
        assert!(
            text.contains("-----BEGIN CERTIFICATE-----"),
            "caBundle is PEM"
        );
    }
    for secret in r.all::<Secret>() {
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some(tls_secret),
            "only the TLS Secret"
        );
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.data.unwrap_or_default();
        assert!(data.contains_key("tls.crt") && data.contains_key("tls.key"));
        let ca = data.get("ca.crt").map(|b| b.0.as_slice());
        assert_eq!(ca, ca_bundle, "the caBundle is the Secret's CA");
    }
}
