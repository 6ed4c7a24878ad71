//! The invariants every rendering of the install must hold, whatever its values: the webhook can never lock
//! the cluster out, RBAC is only what the code uses, the pods are hardened and reachable, and certificates and
//! policies are mounted so that changes reload without a restart. [`check_install`] asserts them and returns
//! what the rendering decided, for each test to compare with what it asked for.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use pullgate::config::Settings;

use crate::access::{check_rbac, check_trust, check_webhook, excluded_namespaces};
use crate::pods::{check_mounts, check_network, check_pods};
use crate::render::Rendered;

/// What a rendering decided, once its invariants hold.
#[derive(Debug)]
pub struct Install {
    pub replicas: i32,
    pub image: String,
    pub failure_policy: String,
    pub timeout_seconds: i32,
    pub excluded_namespaces: BTreeSet<String>,
    pub tls_secret: String,
    pub ca_bundle: Option<Vec<u8>>,
    /// `cert-manager.io/inject-ca-from`, checked to name a rendered Certificate writing `tls_secret`.
    pub ca_injected_from: Option<String>,
    /// Whether the ClusterRole grants `list nodes` (checked to match the settings).
    pub node_list: bool,
    pub policy_files: BTreeMap<String, String>,
    /// The mounted `--config` file, as the server reads it.
    pub settings: Settings,
}

pub fn check_install(r: &Rendered) -> Install {
    let pods = check_pods(r);
    check_namespaces(r, &pods.namespace);
    let container = &pods.spec.containers[0];
    let (tls_secret, policy_files, settings) = check_mounts(r, &pods.spec, container);
    let service = check_network(r, &pods, container);
    let granted = check_rbac(r, &pods);
    let node_list = granted.node_list;
    assert_eq!(
        granted.workload_list,
        settings.audit.is_some(),
        "{}: `list` on the workload kinds granted exactly when the continuous audit is on",
        r.source
    );
    crate::audit::check_lease_role(r, &pods, &settings);
    assert_eq!(
        node_list, settings.node_platform_discovery,
        "{}: `list nodes` granted exactly when nodePlatformDiscovery is on",
        r.source
    );
    let configuration = r.one::<ValidatingWebhookConfiguration>();
    let webhooks = configuration.webhooks.clone().unwrap_or_default();
    assert_eq!(webhooks.len(), 1, "{}: one webhook", r.source);
    let webhook = &webhooks[0];
    check_webhook(r, webhook, &service, &pods.namespace, &settings);
    let ca_bundle = webhook
        .client_config
        .ca_bundle
        .as_ref()
        .map(|b| b.0.clone());
    let ca_injected_from = configuration
        .metadata
        .annotations
        .unwrap_or_default()
        .remove("cert-manager.io/inject-ca-from");
    check_trust(
        r,
        &service,
        &tls_secret,
        ca_bundle.as_deref(),
        ca_injected_from.as_deref(),
    );
    Install {
        replicas: pods.replicas,
        image: container.image.clone().unwrap_or_default(),
        failure_policy: webhook
            .failure_policy
            .clone()
            .unwrap_or_else(|| "Fail".into()),
        timeout_seconds: webhook.timeout_seconds.unwrap_or(10),
        excluded_namespaces: excluded_namespaces(webhook),
        tls_secret,
        ca_bundle,
        ca_injected_from,
        node_list,
        policy_files,
        settings,
    }
}

fn check_namespaces(r: &Rendered, namespace: &str) {
    for object in &r.objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let cluster_scoped = matches!(
            kind,
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" | "ValidatingWebhookConfiguration"
        );
        if !cluster_scoped {
            assert_eq!(
                object["metadata"]["namespace"], namespace,
                "{}: {kind} {} is not in {namespace}",
                r.source, object["metadata"]["name"]
            );
        }
    }
    for ns in r.all::<Namespace>() {
        assert_eq!(
            ns.metadata.name.as_deref(),
            Some(namespace),
            "only pullgate's namespace"
        );
    }
}
