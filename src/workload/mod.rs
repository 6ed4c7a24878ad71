//! Workloads: every kind that carries a pod spec (Pod, Deployment, ..., CronJob) reduced to one view of
//! the pod spec — its container lists, pull secrets, ServiceAccount and scheduling constraints — with the
//! field path that Kubernetes uses for each container, so that messages point at the right line.

use std::collections::BTreeMap;
use std::fmt;

mod view;

use k8s_openapi::api::core::v1::{
    Container, EphemeralContainer, PodSecurityContext, PodSpec, SecurityContext,
    WindowsSecurityContextOptions,
};
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// `command` as written (`None` when unset; image volumes have none).
    pub command: Option<Vec<String>>,
    /// `args` as written (`None` when unset).
    pub args: Option<Vec<String>>,
    /// The container's own `securityContext` user fields (not merged with the pod's).
    pub run_as: RunAs,
}

/// The user fields of a `securityContext` (pod or container) that kubelet's runAsNonRoot check reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RunAs {
    /// `runAsNonRoot`.
    pub non_root: Option<bool>,
    /// `runAsUser`.
    pub user: Option<i64>,
    /// `windowsOptions.runAsUserName`.
    pub windows_user_name: Option<String>,
}

impl RunAs {
    /// kubelet's `DetermineEffectiveSecurityContext` for these fields: each set container field over
    /// the pod's (`windowsOptions.runAsUserName` too, field by field).
    pub fn over(&self, pod: &RunAs) -> RunAs {
        RunAs {
            non_root: self.non_root.or(pod.non_root),
            user: self.user.or(pod.user),
            windows_user_name: self
                .windows_user_name
                .clone()
                .or_else(|| pod.windows_user_name.clone()),
        }
    }

    /// The fields of a container's security context.
    pub fn of_container(context: Option<&SecurityContext>) -> RunAs {
        context.map_or_else(RunAs::default, |c| {
            RunAs::of_fields(c.run_as_non_root, c.run_as_user, c.windows_options.as_ref())
        })
    }

    /// The fields of a pod's security context.
    pub fn of_pod(context: Option<&PodSecurityContext>) -> RunAs {
        context.map_or_else(RunAs::default, |c| {
            RunAs::of_fields(c.run_as_non_root, c.run_as_user, c.windows_options.as_ref())
        })
    }

    fn of_fields(
        non_root: Option<bool>,
        user: Option<i64>,
        windows: Option<&WindowsSecurityContextOptions>,
    ) -> RunAs {
        RunAs {
            non_root,
            user,
            windows_user_name: windows.and_then(|w| w.run_as_user_name.clone()),
        }
    }
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
        let mut push = |list: ContainerList, index: usize, parts: Parts<'_>| {
            all.push(ContainerSpec {
                list,
                index,
                name: std::mem::take(parts.name),
                image: parts.image.take().unwrap_or_default(),
                pull_policy: parts.policy.take(),
                image_path: field_path(prefix, list, index, parts.field),
                command: parts.command.and_then(Option::take),
                args: parts.args.and_then(Option::take),
                run_as: RunAs::of_container(parts.security),
            })
        };
        for (i, c) in spec.init_containers.iter_mut().flatten().enumerate() {
            push(ContainerList::InitContainers, i, Parts::container(c));
        }
        for (i, c) in spec.containers.iter_mut().enumerate() {
            push(ContainerList::Containers, i, Parts::container(c));
        }
        for (i, c) in spec.ephemeral_containers.iter_mut().flatten().enumerate() {
            let parts = Parts {
                name: &mut c.name,
                image: &mut c.image,
                policy: &mut c.image_pull_policy,
                command: Some(&mut c.command),
                args: Some(&mut c.args),
                security: c.security_context.as_ref(),
                field: "image",
            };
            push(ContainerList::EphemeralContainers, i, parts);
        }
        for (i, volume) in spec.volumes.iter_mut().flatten().enumerate() {
            let Some(image) = &mut volume.image else {
                continue;
            };
            let parts = Parts {
                name: &mut volume.name,
                image: &mut image.reference,
                policy: &mut image.pull_policy,
                command: None,
                args: None,
                security: None,
                field: "image.reference",
            };
            push(ContainerList::ImageVolumes, i, parts);
        }
        all
    }

    /// True when what decides how images are pulled, where the pod runs or how every container starts
    /// differs between two versions: pull secrets, ServiceAccount, node selector, affinity, node name,
    /// the pod's security context or its declared `os`.
    pub fn pull_context_changed(&self, old: &Workload) -> bool {
        let (a, b) = (&self.spec, &old.spec);
        a.image_pull_secrets != b.image_pull_secrets
            || a.service_account_name != b.service_account_name
            || a.node_selector != b.node_selector
            || a.affinity != b.affinity
            || a.node_name != b.node_name
            || a.security_context != b.security_context
            || a.os != b.os
    }
}

/// The fields of one container (or image volume) that [`Workload::take_containers`] moves out.
struct Parts<'a> {
    name: &'a mut String,
    image: &'a mut Option<String>,
    policy: &'a mut Option<String>,
    command: Option<&'a mut Option<Vec<String>>>,
    args: Option<&'a mut Option<Vec<String>>>,
    security: Option<&'a SecurityContext>,
    field: &'static str,
}

impl<'a> Parts<'a> {
    fn container(c: &'a mut Container) -> Self {
        Self {
            name: &mut c.name,
            image: &mut c.image,
            policy: &mut c.image_pull_policy,
            command: Some(&mut c.command),
            args: Some(&mut c.args),
            security: c.security_context.as_ref(),
            field: "image",
        }
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
mod tests;
