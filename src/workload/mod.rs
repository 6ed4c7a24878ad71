//! Workloads: every kind that carries a pod spec (Pod, Deployment, ..., CronJob) reduced to one view of
//! the pod spec — its container lists, pull secrets, ServiceAccount and scheduling constraints — with the
//! field path that Kubernetes uses for each container, so that messages point at the right line.

use std::collections::BTreeMap;
use std::fmt;

mod view;

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, PodSpec};
use serde::Deserialize;
use serde_json::Value;
pub use view::ObjectView;

/// The kinds that carry a pod spec, with where in the object that spec lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController,
    PodTemplate,
}

impl WorkloadKind {
    /// The kind for an API group and kind name, or `None` for kinds that carry no pod spec.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        let found = match (group, kind) {
            ("", "Pod") => Self::Pod,
            ("apps", "Deployment") => Self::Deployment,
            ("apps", "ReplicaSet") => Self::ReplicaSet,
            ("apps", "StatefulSet") => Self::StatefulSet,
            ("apps", "DaemonSet") => Self::DaemonSet,
            ("batch", "Job") => Self::Job,
            ("batch", "CronJob") => Self::CronJob,
            ("", "ReplicationController") => Self::ReplicationController,
            ("", "PodTemplate") => Self::PodTemplate,
            _ => return None,
        };
        Some(found)
    }

    /// The kind's name as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::Deployment => "Deployment",
            Self::ReplicaSet => "ReplicaSet",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::ReplicationController => "ReplicationController",
            Self::PodTemplate => "PodTemplate",
        }
    }

    /// Path of the pod spec inside the object, dotted (`spec.template.spec`).
    pub fn spec_path(self) -> &'static str {
        match self {
            Self::Pod => "spec",
            Self::PodTemplate => "template.spec",
            Self::CronJob => "spec.jobTemplate.spec.template.spec",
            Self::Deployment
            | Self::ReplicaSet
            | Self::StatefulSet
            | Self::DaemonSet
            | Self::Job
            | Self::ReplicationController => "spec.template.spec",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which container list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContainerList {
    InitContainers,
    Containers,
    EphemeralContainers,
    /// `volumes[].image` (ImageVolume): kubelet pulls the reference like a container image.
    ImageVolumes,
}

impl ContainerList {
    /// The field name in the pod spec.
    pub fn field(self) -> &'static str {
        match self {
            Self::InitContainers => "initContainers",
            Self::Containers => "containers",
            Self::EphemeralContainers => "ephemeralContainers",
            Self::ImageVolumes => "volumes",
        }
    }
}

/// One container of a workload, with where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub list: ContainerList,
    pub index: usize,
    pub name: String,
    /// The image exactly as written (may be empty or invalid: the policy reports that).
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never` as written; `None` when unset.
    pub pull_policy: Option<String>,
    /// Field path of the `image` field, e.g. `spec.template.spec.containers[0].image`.
    pub image_path: String,
}

/// The pod-spec view of a workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: Option<String>,
    pub name: String,
    /// The object's own labels (used by policy scoping).
    pub labels: BTreeMap<String, String>,
    pub spec: PodSpec,
}

/// Most containers, init and ephemeral containers and image volumes one object may have: far above any
/// real pod (the apiserver's 1.5 MB object limit allows about 20,000 minimal ones), low enough that one
/// object can never cost a noticeable share of an admission's time.
pub const MAX_CONTAINERS: usize = 1000;
/// Longest object, namespace or container name Kubernetes accepts (a DNS subdomain).
pub const MAX_NAME: usize = 253;
/// Longest image reference accepted; longer ones are invalid (and never echoed).
pub const MAX_IMAGE: usize = 4096;

/// Why an object could not be read as its kind.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// More containers (of all lists, with image volumes) than [`MAX_CONTAINERS`].
    #[error(
        "{kind} has {count} containers and image volumes; pullgate checks at most {MAX_CONTAINERS} per object (no real pod comes near): split it"
    )]
    TooManyContainers { kind: WorkloadKind, count: usize },
    /// A name longer than Kubernetes allows: said by its length, never echoed.
    #[error("{field} is {length} characters long; Kubernetes names have at most {MAX_NAME}")]
    NameTooLong { field: String, length: usize },
    /// An image reference longer than [`MAX_IMAGE`]: said by its length, never echoed.
    #[error(
        "{field} is {length} bytes long; an image reference longer than {MAX_IMAGE} bytes is not valid"
    )]
    ImageTooLong { field: String, length: usize },
    /// The object has no pod spec where its kind puts one.
    #[error("{kind} has no pod spec at .{path}")]
    MissingSpec { kind: WorkloadKind, path: String },
    /// The object (its metadata or pod spec) does not have the shape of its kind.
    #[error("{kind} is not a valid {kind} object: {source}")]
    InvalidSpec {
        kind: WorkloadKind,
        #[source]
        source: serde_json::Error,
    },
}

impl Workload {
    /// Read the pod spec of an object of the given kind (a YAML document, or a value from the API).
    pub fn from_object(kind: WorkloadKind, object: &Value) -> Result<Self, WorkloadError> {
        let view = ObjectView::deserialize(object)
            .map_err(|source| WorkloadError::InvalidSpec { kind, source })?;
        Self::from_view(kind, view)
    }

    /// Read the pod spec of an object of the given kind from its JSON text (an AdmissionReview's
    /// `object`), without building a tree of the rest.
    pub fn from_json(kind: WorkloadKind, json: &str) -> Result<Self, WorkloadError> {
        let view: ObjectView = serde_json::from_str(json)
            .map_err(|source| WorkloadError::InvalidSpec { kind, source })?;
        Self::from_view(kind, view)
    }

    /// Read the pod spec of an object already decoded as a view.
    pub fn from_view(kind: WorkloadKind, view: ObjectView) -> Result<Self, WorkloadError> {
        let (metadata, spec) = view.into_parts(kind);
        for (key, value) in [
            ("name", &metadata.name),
            ("generateName", &metadata.generate_name),
            ("namespace", &metadata.namespace),
        ] {
            let length = value.as_deref().map_or(0, |t| t.chars().count());
            if length > MAX_NAME {
                let field = format!("metadata.{key}");
                return Err(WorkloadError::NameTooLong { field, length });
            }
        }
        let spec = spec.ok_or_else(|| WorkloadError::MissingSpec {
            kind,
            path: kind.spec_path().to_owned(),
        })?;
        let count = spec.init_containers.as_ref().map_or(0, Vec::len)
            + spec.containers.len()
            + spec.ephemeral_containers.as_ref().map_or(0, Vec::len)
            + spec
                .volumes
                .iter()
                .flatten()
                .filter(|v| v.image.is_some())
                .count();
        if count > MAX_CONTAINERS {
            return Err(WorkloadError::TooManyContainers { kind, count });
        }
        let workload = Self {
            kind,
            namespace: metadata.namespace,
            name: metadata.name.or(metadata.generate_name).unwrap_or_default(),
            labels: metadata
                .labels
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.0?)))
                .collect(),
            spec,
        };
        workload.check_lengths()?;
        Ok(workload)
    }

    /// Refuse container names longer than Kubernetes allows and images longer than [`MAX_IMAGE`], by
    /// their field path (said by length, never echoed). Paths are only made for what is refused.
    fn check_lengths(&self) -> Result<(), WorkloadError> {
        let spec = &self.spec;
        fn plain(c: &Container) -> (&str, Option<&str>, &'static str) {
            (c.name.as_str(), c.image.as_deref(), "image")
        }
        fn ephemeral(c: &EphemeralContainer) -> (&str, Option<&str>, &'static str) {
            (c.name.as_str(), c.image.as_deref(), "image")
        }
        let lists = [
            (
                ContainerList::InitContainers,
                spec.init_containers
                    .iter()
                    .flatten()
                    .map(plain)
                    .collect::<Vec<_>>(),
            ),
            (
                ContainerList::Containers,
                spec.containers.iter().map(plain).collect(),
            ),
            (
                ContainerList::EphemeralContainers,
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .map(ephemeral)
                    .collect(),
            ),
            (
                ContainerList::ImageVolumes,
                spec.volumes
                    .iter()
                    .flatten()
                    .map(|v| {
                        let image = v.image.as_ref().and_then(|i| i.reference.as_deref());
                        (v.name.as_str(), image, "image.reference")
                    })
                    .collect(),
            ),
        ];
        let prefix = self.spec_prefix();
        for (list, entries) in lists {
            for (index, (name, image, image_field)) in entries.into_iter().enumerate() {
                let at = |field: &str| format!("{prefix}.{}[{index}].{field}", list.field());
                let length = name.chars().count();
                if length > MAX_NAME {
                    let field = at("name");
                    return Err(WorkloadError::NameTooLong { field, length });
                }
                let length = image.map_or(0, str::len);
                if length > MAX_IMAGE {
                    let field = at(image_field);
                    return Err(WorkloadError::ImageTooLong { field, length });
                }
            }
        }
        Ok(())
    }

    /// Dotted prefix of the pod spec, as used in warnings (`spec.template.spec`).
    pub fn spec_prefix(&self) -> &'static str {
        self.kind.spec_path()
    }

    /// Every container of every list, init containers first, then the image volumes (pulled by kubelet
    /// like container images; their field path is `…volumes[N].image.reference`).
    pub fn containers(&self) -> Vec<ContainerSpec> {
        self.clone().take_containers()
    }

    /// [`containers`](Self::containers), their names, images and pull policies moved out of the pod
    /// spec (left empty there) rather than copied: what an admission does with the object it decides on.
    pub fn take_containers(&mut self) -> Vec<ContainerSpec> {
        let prefix = self.spec_prefix();
        let spec = &mut self.spec;
        let mut all = Vec::with_capacity(
            spec.init_containers.as_ref().map_or(0, Vec::len)
                + spec.containers.len()
                + spec.ephemeral_containers.as_ref().map_or(0, Vec::len),
        );
        let mut push = |list: ContainerList,
                        index: usize,
                        name: &mut String,
                        image: &mut Option<String>,
                        policy: &mut Option<String>,
                        field: &str| {
            all.push(ContainerSpec {
                list,
                index,
                name: std::mem::take(name),
                image: image.take().unwrap_or_default(),
                pull_policy: policy.take(),
                image_path: field_path(prefix, list, index, field),
            })
        };
        for (i, c) in spec.init_containers.iter_mut().flatten().enumerate() {
            let (image, policy) = (&mut c.image, &mut c.image_pull_policy);
            push(
                ContainerList::InitContainers,
                i,
                &mut c.name,
                image,
                policy,
                "image",
            );
        }
        for (i, c) in spec.containers.iter_mut().enumerate() {
            let (image, policy) = (&mut c.image, &mut c.image_pull_policy);
            push(
                ContainerList::Containers,
                i,
                &mut c.name,
                image,
                policy,
                "image",
            );
        }
        for (i, c) in spec.ephemeral_containers.iter_mut().flatten().enumerate() {
            let (image, policy) = (&mut c.image, &mut c.image_pull_policy);
            push(
                ContainerList::EphemeralContainers,
                i,
                &mut c.name,
                image,
                policy,
                "image",
            );
        }
        for (i, volume) in spec.volumes.iter_mut().flatten().enumerate() {
            let Some(image) = &mut volume.image else {
                continue;
            };
            let (reference, policy) = (&mut image.reference, &mut image.pull_policy);
            let name = &mut volume.name;
            push(
                ContainerList::ImageVolumes,
                i,
                name,
                reference,
                policy,
                "image.reference",
            );
        }
        all
    }

    /// True when what decides how images are pulled or where the pod runs differs between two versions:
    /// pull secrets, ServiceAccount, node selector, affinity or tolerations.
    pub fn pull_context_changed(&self, old: &Workload) -> bool {
        let (a, b) = (&self.spec, &old.spec);
        a.image_pull_secrets != b.image_pull_secrets
            || a.service_account_name != b.service_account_name
            || a.node_selector != b.node_selector
            || a.affinity != b.affinity
            || a.node_name != b.node_name
    }
}

/// `PREFIX.LIST[INDEX].FIELD`, e.g. `spec.template.spec.containers[0].image`, made without the
/// formatting machinery (every admission makes one per container).
fn field_path(prefix: &str, list: ContainerList, index: usize, field: &str) -> String {
    let list = list.field();
    let mut path = String::with_capacity(prefix.len() + list.len() + field.len() + 24);
    path.push_str(prefix);
    path.push('.');
    path.push_str(list);
    path.push('[');
    let mut digits = [0_u8; 20];
    let mut start = digits.len();
    let mut rest = index;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    digits[start..]
        .iter()
        .for_each(|&digit| path.push(char::from(digit)));
    path.push_str("].");
    path.push_str(field);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    #[rstest]
    fn field_paths_read_as_formatted(
        #[values(0, 7, 10, 99, 1000, 123456)] index: usize,
        #[values(ContainerList::Containers, ContainerList::ImageVolumes)] list: ContainerList,
    ) {
        assert_eq!(
            field_path("spec.template.spec", list, index, "image"),
            format!("spec.template.spec.{}[{index}].image", list.field())
        );
    }

    fn pod_spec() -> Value {
        json!({
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "containers": [{"name": "app", "image": "nginx:latest", "imagePullPolicy": "IfNotPresent"}],
        })
    }

    #[rstest]
    #[case::pod("", "Pod", json!({"spec": pod_spec()}), "spec")]
    #[case::deployment("apps", "Deployment", json!({"spec": {"template": {"spec": pod_spec()}}}), "spec.template.spec")]
    #[case::replicaset("apps", "ReplicaSet", json!({"spec": {"template": {"spec": pod_spec()}}}), "spec.template.spec")]
    #[case::statefulset("apps", "StatefulSet", json!({"spec": {"template": {"spec": pod_spec()}}}), "spec.template.spec")]
    #[case::daemonset("apps", "DaemonSet", json!({"spec": {"template": {"spec": pod_spec()}}}), "spec.template.spec")]
    #[case::job("batch", "Job", json!({"spec": {"template": {"spec": pod_spec()}}}), "spec.template.spec")]
    #[case::cronjob("batch", "CronJob", json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec()}}}}}), "spec.jobTemplate.spec.template.spec")]
    #[case::rc("", "ReplicationController", json!({"spec": {"template": {"spec": pod_spec()}}}), "spec.template.spec")]
    #[case::podtemplate("", "PodTemplate", json!({"template": {"spec": pod_spec()}}), "template.spec")]
    fn every_kind_yields_its_containers_with_paths(
        #[case] group: &str,
        #[case] kind: &str,
        #[case] object: Value,
        #[case] prefix: &str,
    ) {
        let kind = WorkloadKind::from_group_kind(group, kind).expect("known kind");
        let workload = Workload::from_object(kind, &object).expect("readable");
        let containers = workload.containers();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0].list, ContainerList::InitContainers);
        assert_eq!(
            containers[0].image_path,
            format!("{prefix}.initContainers[0].image")
        );
        assert_eq!(containers[1].name, "app");
        assert_eq!(containers[1].image, "nginx:latest");
        assert_eq!(containers[1].pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            containers[1].image_path,
            format!("{prefix}.containers[0].image")
        );
    }

    #[rstest]
    #[case::service("", "Service")]
    #[case::configmap("", "ConfigMap")]
    #[case::wrong_group("extensions", "Deployment")]
    #[case::custom("example.com", "Pod")]
    fn other_kinds_are_not_workloads(#[case] group: &str, #[case] kind: &str) {
        assert_eq!(WorkloadKind::from_group_kind(group, kind), None);
    }

    #[test]
    fn ephemeral_containers_are_listed() {
        let object = json!({"spec": {"containers": [{"name": "app", "image": "a:1"}],
            "ephemeralContainers": [{"name": "debugger", "image": "busybox"}]}});
        let workload = Workload::from_object(WorkloadKind::Pod, &object).expect("readable");
        let containers = workload.containers();
        assert_eq!(containers[1].list, ContainerList::EphemeralContainers);
        assert_eq!(
            containers[1].image_path,
            "spec.ephemeralContainers[0].image"
        );
    }

    #[test]
    fn missing_spec_is_a_clear_error() {
        let err = Workload::from_object(WorkloadKind::Deployment, &json!({"spec": {}}))
            .expect_err("no template");
        assert_eq!(
            err.to_string(),
            "Deployment has no pod spec at .spec.template.spec"
        );
    }

    #[test]
    fn malformed_spec_is_a_clear_error() {
        let err = Workload::from_object(WorkloadKind::Pod, &json!({"spec": {"containers": 5}}))
            .expect_err("bad shape");
        assert!(
            err.to_string().starts_with(
                "Pod is not a valid Pod object: invalid type: integer `5`, expected a sequence"
            ),
            "{err}"
        );
    }

    #[test]
    fn too_many_containers_is_refused_before_reading_them() {
        let containers: Vec<Value> = (0..MAX_CONTAINERS + 1)
            .map(|i| json!({"name": format!("c{i}"), "image": "a:1"}))
            .collect();
        let object = json!({"spec": {"containers": containers}});
        let err = Workload::from_object(WorkloadKind::Pod, &object).expect_err("too many");
        assert_eq!(
            err.to_string(),
            "Pod has 1001 containers and image volumes; pullgate checks at most 1000 per object (no real pod comes near): split it"
        );
        let containers: Vec<Value> = (0..MAX_CONTAINERS)
            .map(|i| json!({"name": format!("c{i}"), "image": "a:1"}))
            .collect();
        let object = json!({"spec": {"containers": containers}});
        assert!(Workload::from_object(WorkloadKind::Pod, &object).is_ok());
    }

    #[rstest]
    #[case::object_name(json!({"metadata": {"name": "n".repeat(100_000)}, "spec": {"containers": []}}), "metadata.name is 100000 characters long")]
    #[case::namespace(json!({"metadata": {"name": "p", "namespace": "n".repeat(254)}, "spec": {"containers": []}}), "metadata.namespace is 254 characters long")]
    #[case::container_name(json!({"spec": {"containers": [{"name": "c".repeat(300), "image": "a:1"}]}}), "spec.containers[0].name is 300 characters long")]
    #[case::volume_name(json!({"spec": {"containers": [], "volumes": [{"name": "v".repeat(300), "image": {"reference": "a:1"}}]}}), "spec.volumes[0].name is 300 characters long")]
    #[case::image(json!({"spec": {"containers": [{"name": "c", "image": format!("r.io/{}", "a".repeat(1 << 20))}]}}), "spec.containers[0].image is 1048581 bytes long")]
    fn oversized_text_is_refused_by_length_without_echo(#[case] object: Value, #[case] said: &str) {
        let err = Workload::from_object(WorkloadKind::Pod, &object).expect_err("too long");
        let text = err.to_string();
        assert!(text.starts_with(said), "{text}");
        assert!(text.len() < 200, "never echoed: {} bytes", text.len());
    }

    #[test]
    fn name_and_labels_come_from_metadata() {
        let object = json!({"metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"}},
            "spec": {"containers": []}});
        let workload = Workload::from_object(WorkloadKind::Pod, &object).expect("readable");
        assert_eq!(workload.name, "web");
        assert_eq!(workload.namespace.as_deref(), Some("demo"));
        assert_eq!(workload.labels.get("app").map(String::as_str), Some("web"));
    }
}
