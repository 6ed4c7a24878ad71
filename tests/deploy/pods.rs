//! The pods' side of the install: the Deployment's hardened, sized, probed and spread pods with their
//! disruption budget, the directory mounts of certificates, policies and settings, and the Service and
//! NetworkPolicy in front of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, Service, Volume};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pullgate::config::Settings;

use crate::render::Rendered;

pub const CONTAINER_PORT: i32 = 8443;

/// The pods' part of the install.
pub struct Pods {
    pub namespace: String,
    pub replicas: i32,
    pub labels: BTreeMap<String, String>,
    pub spec: PodSpec,
}

pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector.match_expressions.is_none(),
        "selectors here use matchLabels only"
    );
    let wanted = selector.match_labels.clone().unwrap_or_default();
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The container port a Service target or probe port names.
pub fn resolve_port(container: &Container, port: &IntOrString) -> i32 {
    let ports = container.ports.clone().unwrap_or_default();
    let found = match port {
        IntOrString::Int(n) => ports.iter().find(|p| p.container_port == *n),
        IntOrString::String(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
    };
    found
        .unwrap_or_else(|| {
            panic!(
                "port {port:?} is not a port of container {}",
                container.name
            )
        })
        .container_port
}

pub fn check_probe(container: &Container, probe: Option<&Probe>, which: &str, path: &str) {
    let probe = probe.unwrap_or_else(|| panic!("{which} probe missing"));
    let get = probe
        .http_get
        .as_ref()
        .unwrap_or_else(|| panic!("{which} probe is not an httpGet"));
    assert_eq!(get.path.as_deref(), Some(path), "{which} probe path");
    assert_eq!(get.scheme.as_deref(), Some("HTTPS"), "{which} probe scheme");
    assert_eq!(
        resolve_port(container, &get.port),
        CONTAINER_PORT,
        "{which} probe port"
    );
}

/// The value of `--flag=value` in the container's arguments.
pub fn arg<'a>(container: &'a Container, flag: &str) -> &'a str {
    let prefix = format!("{flag}=");
    container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("container has no {flag}=… argument"))
}

/// Deployment: hardened, sized, probed pods, spread over nodes, with a disruption budget.
pub fn check_pods(r: &Rendered) -> Pods {
    let deployment = r.one::<Deployment>();
    let namespace = deployment
        .metadata
        .namespace
        .clone()
        .expect("namespaced Deployment");
    let spec = deployment.spec.expect("deployment spec");
    let replicas = spec.replicas.unwrap_or(1);
    let labels = spec
        .template
        .metadata
        .clone()
        .unwrap_or_default()
        .labels
        .unwrap_or_default();
    assert!(
        selects(&spec.selector, &labels),
        "Deployment selector matches its pods"
    );
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.containers.len(), 1, "one container");
    let container = &pod.containers[0];
    check_security(&pod, container);
    check_resources(container);
    check_probe(
        container,
        container.liveness_probe.as_ref(),
        "liveness",
        "/healthz",
    );
    check_probe(
        container,
        container.readiness_probe.as_ref(),
        "readiness",
        "/readyz",
    );
    if let Some(startup) = container.startup_probe.as_ref() {
        check_probe(container, Some(startup), "startup", "/healthz");
    }
    let first = container.args.as_ref().and_then(|a| a.first());
    assert_eq!(first.map(String::as_str), Some("serve"));
    assert_eq!(
        arg(container, "--listen"),
        format!("0.0.0.0:{CONTAINER_PORT}")
    );
    assert_eq!(arg(container, "--log-format"), "json");

    let spread = pod.topology_spread_constraints.clone().unwrap_or_default();
    let anti_affinity = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref());
    let spread_over_nodes = spread.iter().any(|c| {
        c.topology_key == "kubernetes.io/hostname"
            && c.label_selector
                .as_ref()
                .is_some_and(|s| selects(s, &labels))
    });
    assert!(
        spread_over_nodes || anti_affinity.is_some(),
        "replicas spread over nodes"
    );
    if replicas >= 2 {
        let budget = r.one::<PodDisruptionBudget>().spec.expect("pdb spec");
        assert!(selects(
            budget.selector.as_ref().expect("pdb selector"),
            &labels
        ));
        match budget.min_available {
            Some(IntOrString::Int(n)) => {
                assert!(
                    n >= 1 && n < replicas,
                    "minAvailable {n} of {replicas}: drains must be possible"
                )
            }
            other => panic!("PDB minAvailable {other:?}: expected a number below replicas"),
        }
    }
    Pods {
        namespace,
        replicas,
        labels,
        spec: pod,
    }
}

pub fn check_security(pod: &PodSpec, container: &Container) {
    let pod_security = pod.security_context.clone().unwrap_or_default();
    let security = container
        .security_context
        .clone()
        .expect("container securityContext");
    let non_root = security.run_as_non_root.or(pod_security.run_as_non_root);
    assert_eq!(non_root, Some(true), "runAsNonRoot");
    let user = security.run_as_user.or(pod_security.run_as_user);
    assert!(user.is_some_and(|u| u != 0), "a non-zero runAsUser");
    assert_eq!(
        security.read_only_root_filesystem,
        Some(true),
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        security.allow_privilege_escalation,
        Some(false),
        "allowPrivilegeEscalation"
    );
    assert_ne!(security.privileged, Some(true), "privileged");
    let capabilities = security.capabilities.clone().expect("capabilities");
    assert_eq!(
        capabilities.drop,
        Some(vec!["ALL".to_owned()]),
        "drop ALL capabilities"
    );
    assert!(
        capabilities.add.unwrap_or_default().is_empty(),
        "no capability added"
    );
    let seccomp = security
        .seccomp_profile
        .or(pod_security.seccomp_profile)
        .expect("seccompProfile");
    assert_eq!(seccomp.type_, "RuntimeDefault");
    assert!(
        pod.host_network != Some(true) && pod.host_pid != Some(true),
        "no host namespaces"
    );
}

pub fn check_resources(container: &Container) {
    let resources = container.resources.clone().expect("resources");
    for (which, list) in [
        ("requests", resources.requests),
        ("limits", resources.limits),
    ] {
        let list = list.unwrap_or_else(|| panic!("resources.{which} missing"));
        for name in ["cpu", "memory"] {
            assert!(list.contains_key(name), "resources.{which}.{name} missing");
        }
    }
}

/// The volume holding `path`, mounted as a whole directory (a subPath mount never sees updates).
pub fn volume_for<'a>(pod: &'a PodSpec, container: &Container, path: &str) -> &'a Volume {
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| Path::new(path).starts_with(&m.mount_path))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| panic!("{path} is on no volume mount"));
    assert!(
        mount.sub_path.is_none() && mount.sub_path_expr.is_none(),
        "{path}: subPath mounts are not updated when the Secret or ConfigMap changes"
    );
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| panic!("volume {} is mounted but not declared", mount.name))
}

/// Certificates, policies and settings: where the flags point, directory mounts of the rendered objects.
/// Returns the TLS Secret's name, the policy files and the parsed settings.
pub fn check_mounts(
    r: &Rendered,
    pod: &PodSpec,
    container: &Container,
) -> (String, BTreeMap<String, String>, Settings) {
    let cert = arg(container, "--tls-cert");
    let key = arg(container, "--tls-key");
    let tls = volume_for(pod, container, cert);
    assert_eq!(
        volume_for(pod, container, key).name,
        tls.name,
        "certificate and key from one Secret"
    );
    let tls_secret = tls
        .secret
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .expect("TLS from a Secret");
    for (file, expected) in [(cert, "tls.crt"), (key, "tls.key")] {
        assert!(
            file.ends_with(&format!("/{expected}")),
            "{file}: the kubernetes.io/tls key {expected}"
        );
    }

    let policies_dir = arg(container, "--policies");
    let policies = volume_for(pod, container, &format!("{policies_dir}/any.yaml"));
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == policies.name);
    assert_eq!(
        mount.map(|m| m.mount_path.as_str()),
        Some(policies_dir),
        "the policy dir is the mount"
    );
    let map = policies
        .config_map
        .as_ref()
        .map(|c| c.name.clone())
        .expect("policies from a ConfigMap");
    let policy_files = r.config_map(&map).data.unwrap_or_default();
    assert!(!policy_files.is_empty(), "{}: no policy files", r.source);
    for (file, text) in &policy_files {
        let documents = pullgate::policy::parse_file(Path::new(file), text)
            .unwrap_or_else(|e| panic!("{}: policy {file}: {e}", r.source));
        assert!(!documents.is_empty(), "{file}: no policy");
    }

    let config_path = arg(container, "--config");
    let config = volume_for(pod, container, config_path);
    let map = config
        .config_map
        .as_ref()
        .map(|c| c.name.clone())
        .expect("config from a ConfigMap");
    let file = Path::new(config_path)
        .file_name()
        .and_then(|f| f.to_str())
        .expect("a file name");
    let text = r.config_map(&map).data.unwrap_or_default().remove(file);
    let text = text.unwrap_or_else(|| panic!("ConfigMap {map} has no {file}"));
    let settings = Settings::parse(Path::new(file), &text)
        .unwrap_or_else(|e| panic!("{}: the server would refuse its settings: {e}", r.source));

    for mount in container.volume_mounts.iter().flatten() {
        let scratch = pod
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name == mount.name && v.empty_dir.is_some());
        assert!(
            mount.read_only == Some(true) || scratch,
            "{} is read-only",
            mount.mount_path
        );
    }
    (tls_secret, policy_files, settings)
}

/// Service 443 reaches the container's 8443; the NetworkPolicy lets in only that and lets out DNS and 443.
pub fn check_network(r: &Rendered, pods: &Pods, container: &Container) -> Service {
    let service = r.one::<Service>();
    let spec = service.spec.clone().expect("service spec");
    let selector = LabelSelector {
        match_labels: spec.selector.clone(),
        ..Default::default()
    };
    assert!(
        selects(&selector, &pods.labels),
        "the Service selects the pods"
    );
    let https = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == 443)
        .expect("Service port 443");
    let target = https
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(https.port));
    assert_eq!(
        resolve_port(container, &target),
        CONTAINER_PORT,
        "Service 443 reaches the container"
    );

    for policy in r.all::<NetworkPolicy>() {
        let spec = policy.spec.expect("networkpolicy spec");
        assert!(selects(
            spec.pod_selector.as_ref().expect("podSelector"),
            &pods.labels
        ));
        let types = spec.policy_types.unwrap_or_default();
        assert!(types.contains(&"Ingress".into()) && types.contains(&"Egress".into()));
        let ingress = spec.ingress.unwrap_or_default();
        assert!(!ingress.is_empty(), "the webhook port is open");
        for rule in &ingress {
            let ports: Vec<_> = rule
                .ports
                .iter()
                .flatten()
                .map(|p| (p.port.clone(), p.protocol.clone()))
                .collect();
            let webhook_port = (
                Some(IntOrString::Int(CONTAINER_PORT)),
                Some("TCP".to_owned()),
            );
            assert_eq!(ports, vec![webhook_port], "ingress to 8443 only");
        }
        let egress: BTreeSet<(i32, String)> = spec
            .egress
            .unwrap_or_default()
            .into_iter()
            .flat_map(|rule| rule.ports.unwrap_or_default())
            .filter_map(|p| match p.port {
                Some(IntOrString::Int(n)) => Some((n, p.protocol.unwrap_or_else(|| "TCP".into()))),
                _ => None,
            })
            .collect();
        for (port, protocol) in [(53, "UDP"), (53, "TCP"), (443, "TCP")] {
            assert!(
                egress.contains(&(port, protocol.into())),
                "egress {port}/{protocol}"
            );
        }
    }
    service
}
