//! The continuous audit and monitoring in the install: the Lease Role (only with `audit:`), the settings the
//! components and the chart render, and the alerts and dashboard they ship.

use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use pullgate::config::Settings;
use serde_json::Value;

use crate::invariants::check_install;
use crate::pods::Pods;
use crate::render::{Rendered, fixture, helm_template, kustomize, repo};

/// With `audit:`, a Role in the pods' namespace lets the pods' ServiceAccount create Leases and read and
/// renew only the audit's one; without it, no Role at all. The Lease lives where the settings say, else
/// in the pods' namespace (`POD_NAMESPACE` from the downward API).
pub fn check_lease_role(r: &Rendered, pods: &Pods, settings: &Settings) {
    let roles = r.all::<Role>();
    let Some(audit) = &settings.audit else {
        assert!(roles.is_empty(), "{}: no Role without the audit", r.source);
        return;
    };
    let namespace = audit
        .lease_namespace
        .clone()
        .unwrap_or_else(|| pods.namespace.clone());
    assert_eq!(
        namespace, pods.namespace,
        "{}: the Lease is in the pods' namespace",
        r.source
    );
    let env = pods.spec.containers[0].env.clone().unwrap_or_default();
    let downward = env
        .iter()
        .find(|e| e.name == "POD_NAMESPACE")
        .and_then(|e| e.value_from.clone());
    let field = downward.and_then(|v| v.field_ref).map(|f| f.field_path);
    assert_eq!(
        field.as_deref(),
        Some("metadata.namespace"),
        "{}: POD_NAMESPACE",
        r.source
    );

    assert_eq!(roles.len(), 1, "{}: one Role", r.source);
    let role = &roles[0];
    assert_eq!(role.metadata.namespace.as_deref(), Some(namespace.as_str()));
    let mut create = false;
    let mut named = false;
    for rule in role.rules.iter().flatten() {
        assert_eq!(
            rule.api_groups.as_deref(),
            Some(&["coordination.k8s.io".to_owned()][..])
        );
        assert_eq!(rule.resources.as_deref(), Some(&["leases".to_owned()][..]));
        match rule.resource_names.as_deref() {
            None | Some([]) => {
                assert_eq!(rule.verbs, ["create"], "{}: unnamed: create only", r.source);
                create = true;
            }
            Some(names) => {
                assert_eq!(
                    names,
                    std::slice::from_ref(&audit.lease_name),
                    "{}: the audit's Lease only",
                    r.source
                );
                assert_eq!(rule.verbs, ["get", "update"], "{}", r.source);
                named = true;
            }
        }
    }
    assert!(
        create && named,
        "{}: create, and get/update on the Lease",
        r.source
    );
    let binding = r.one::<RoleBinding>();
    assert_eq!(
        binding.role_ref.name,
        role.metadata.name.clone().unwrap_or_default()
    );
    let subject = &binding.subjects.unwrap_or_default()[0];
    assert_eq!(Some(&subject.name), pods.spec.service_account_name.as_ref());
}

/// The rendered dashboard ConfigMap's JSON and the PrometheusRule's spec.
fn monitoring(r: &Rendered) -> (Value, Value) {
    let dashboard = r
        .all::<ConfigMap>()
        .into_iter()
        .find(|c| {
            c.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get("grafana_dashboard").map(String::as_str) == Some("1"))
        })
        .expect("a dashboard ConfigMap for the Grafana sidecar");
    let json = dashboard
        .data
        .unwrap_or_default()
        .remove("pullgate-dashboard.json")
        .expect("dashboard file");
    let rules = r.custom("monitoring.coreos.com/v1", "PrometheusRule");
    assert_eq!(rules.len(), 1, "{}: one PrometheusRule", r.source);
    let rule = rules[0].clone();
    (
        serde_json::from_str(&json).expect("dashboard JSON"),
        rule["spec"].clone(),
    )
}

#[test]
fn audit_and_monitoring_components_render_as_documented() {
    let r = Rendered::parse(
        "kustomize overlay-audit",
        &kustomize(&fixture("overlay-audit")),
    );
    let install = check_install(&r);
    let audit = install
        .settings
        .audit
        .clone()
        .expect("audit: in the settings");
    assert_eq!(audit.lease_name, "pullgate-audit");
    // The component's settings are the base's plus the audit block.
    let base =
        std::fs::read_to_string(repo().join("deploy/base/config.yaml")).expect("base config");
    let component = std::fs::read_to_string(repo().join("deploy/components/audit/config.yaml"))
        .expect("component config");
    assert!(
        component.starts_with(&base),
        "deploy/components/audit/config.yaml starts with deploy/base/config.yaml"
    );
    let without = Rendered::parse("kustomize base", &kustomize(Path::new("deploy/base")));
    assert!(check_install(&without).settings.audit.is_none());

    let (dashboard, rules) = monitoring(&r);
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo().join("deploy/components/monitoring/pullgate-dashboard.json"),
        )
        .expect("dashboard"),
    )
    .expect("JSON");
    assert_eq!(dashboard, shipped);
    assert!(
        rules["groups"][0]["rules"]
            .as_array()
            .is_some_and(|r| r.len() >= 6)
    );
}

#[test]
fn helm_audit_and_monitoring_values_render_the_same_artefacts() {
    if crate::render::helm_skipped("helm_audit_and_monitoring_values_render_the_same_artefacts") {
        return;
    }
    let sets = [
        "audit.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "metrics.grafanaDashboard.enabled=true",
    ];
    let r = Rendered::parse("helm (audit, monitoring)", &helm_template(&[], &sets));
    let install = check_install(&r);
    let audit = install.settings.audit.expect("audit: in the settings");
    assert_eq!(audit.interval_seconds, 600);
    assert!(audit.lease_name.ends_with("-audit"), "{}", audit.lease_name);

    let kustomized = Rendered::parse(
        "kustomize overlay-audit",
        &kustomize(&fixture("overlay-audit")),
    );
    let (dashboard, rules) = monitoring(&r);
    let (same_dashboard, same_rules) = monitoring(&kustomized);
    assert_eq!(
        dashboard, same_dashboard,
        "one dashboard for Helm and kustomize"
    );
    assert_eq!(
        rules, same_rules,
        "one set of alerts for Helm and kustomize"
    );

    let defaults = Rendered::parse("helm (default values)", &helm_template(&[], &[]));
    assert!(
        defaults
            .custom("monitoring.coreos.com/v1", "PrometheusRule")
            .is_empty()
    );
}
