//! The parts of a workload object pullgate reads, decoded straight from the request's JSON (or from a
//! YAML document's value) into narrow types: metadata names and labels, and of the pod spec only the
//! container lists (name, image, pull policy, and what decides how it starts: command, args and the
//! security context's user fields), image volumes, pull secrets, ServiceAccount, node selector,
//! affinity, node name, the pod's security context user fields and its declared `os`. Everything else is skipped by the parser without being built,
//! so an admission never holds a `serde_json::Value` tree of the object.
//!
//! One [`ObjectView`] fits every kind: a Pod's `spec` is a pod spec; a Deployment's (or Job's, ...)
//! `spec` holds a `template`, a CronJob's a `jobTemplate`, a PodTemplate has a top-level `template`.
//! [`ObjectView::pod_spec`] walks the path the kind names.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EphemeralContainer, ImageVolumeSource, LocalObjectReference, PodOS,
    PodSecurityContext, PodSpec, SecurityContext, Volume, WindowsSecurityContextOptions,
};
use serde::Deserialize;

use super::WorkloadKind;

/// A workload object, as far as pullgate reads it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectView {
    #[serde(default)]
    metadata: MetadataView,
    spec: Option<SpecView>,
    /// A PodTemplate's template.
    template: Option<TemplateView>,
}

/// `metadata`: names and labels.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataView {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    /// Labels whose value is a string (others, possible in hand-written YAML, are left out).
    #[serde(default)]
    pub labels: BTreeMap<String, MaybeText>,
}

/// A value kept only when it is a string.
#[derive(Debug, Clone, Default)]
pub struct MaybeText(pub Option<String>);

impl<'de> Deserialize<'de> for MaybeText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = MaybeText;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E>(self, v: &str) -> Result<MaybeText, E> {
                Ok(MaybeText(Some(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<MaybeText, E> {
                Ok(MaybeText(Some(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MaybeText, E> {
                Ok(MaybeText(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<MaybeText, E> {
                Ok(MaybeText(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<MaybeText, E> {
                Ok(MaybeText(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<MaybeText, E> {
                Ok(MaybeText(None))
            }
            fn visit_unit<E>(self) -> Result<MaybeText, E> {
                Ok(MaybeText(None))
            }
            fn visit_none<E>(self) -> Result<MaybeText, E> {
                Ok(MaybeText(None))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<MaybeText, D::Error> {
                MaybeText::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<MaybeText, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(MaybeText(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MaybeText, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(MaybeText(None))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A `spec`: the pod spec's fields (a Pod's) and the template fields (the other kinds').
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecView {
    containers: Option<Vec<ContainerView>>,
    init_containers: Option<Vec<ContainerView>>,
    ephemeral_containers: Option<Vec<ContainerView>>,
    volumes: Option<Vec<VolumeView>>,
    image_pull_secrets: Option<Vec<LocalObjectReference>>,
    service_account_name: Option<String>,
    service_account: Option<String>,
    node_selector: Option<BTreeMap<String, String>>,
    affinity: Option<Affinity>,
    node_name: Option<String>,
    security_context: Option<RunAsView>,
    os: Option<PodOS>,
    template: Option<Box<TemplateView>>,
    job_template: Option<Box<JobTemplateView>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TemplateView {
    spec: Option<SpecView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct JobTemplateView {
    spec: Option<SpecView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerView {
    #[serde(default)]
    name: String,
    image: Option<String>,
    image_pull_policy: Option<String>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    security_context: Option<RunAsView>,
}

/// The user fields of a (pod or container) `securityContext`: what kubelet's runAsNonRoot check reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunAsView {
    run_as_non_root: Option<bool>,
    run_as_user: Option<i64>,
    windows_options: Option<WindowsView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WindowsView {
    run_as_user_name: Option<String>,
    host_process: Option<bool>,
}

impl RunAsView {
    fn windows(&self) -> Option<WindowsSecurityContextOptions> {
        self.windows_options
            .as_ref()
            .map(|w| WindowsSecurityContextOptions {
                run_as_user_name: w.run_as_user_name.clone(),
                host_process: w.host_process,
                ..WindowsSecurityContextOptions::default()
            })
    }

    fn container(self) -> SecurityContext {
        SecurityContext {
            windows_options: self.windows(),
            run_as_non_root: self.run_as_non_root,
            run_as_user: self.run_as_user,
            ..SecurityContext::default()
        }
    }

    fn pod(self) -> PodSecurityContext {
        PodSecurityContext {
            windows_options: self.windows(),
            run_as_non_root: self.run_as_non_root,
            run_as_user: self.run_as_user,
            ..PodSecurityContext::default()
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct VolumeView {
    #[serde(default)]
    name: String,
    image: Option<ImageVolumeSource>,
}

impl ObjectView {
    /// The metadata, and the pod spec where `kind` puts it (`None` when the object has none there).
    pub fn into_parts(self, kind: WorkloadKind) -> (MetadataView, Option<PodSpec>) {
        let Self {
            metadata,
            spec,
            template,
        } = self;
        let templated = |spec: Option<SpecView>| spec?.template?.spec;
        let spec = match kind {
            WorkloadKind::Pod => spec,
            WorkloadKind::PodTemplate => template.and_then(|t| t.spec),
            WorkloadKind::CronJob => templated(spec.and_then(|s| s.job_template?.spec)),
            WorkloadKind::Deployment
            | WorkloadKind::ReplicaSet
            | WorkloadKind::StatefulSet
            | WorkloadKind::DaemonSet
            | WorkloadKind::Job
            | WorkloadKind::ReplicationController => templated(spec),
        };
        (metadata, spec.map(SpecView::into_pod_spec))
    }
}

impl SpecView {
    /// The pod spec with only what pullgate reads set.
    fn into_pod_spec(self) -> PodSpec {
        let container = |c: ContainerView| Container {
            name: c.name,
            image: c.image,
            image_pull_policy: c.image_pull_policy,
            command: c.command,
            args: c.args,
            security_context: c.security_context.map(RunAsView::container),
            ..Container::default()
        };
        let ephemeral = |c: ContainerView| EphemeralContainer {
            name: c.name,
            image: c.image,
            image_pull_policy: c.image_pull_policy,
            command: c.command,
            args: c.args,
            security_context: c.security_context.map(RunAsView::container),
            ..EphemeralContainer::default()
        };
        let volume = |v: VolumeView| Volume {
            name: v.name,
            image: v.image,
            ..Volume::default()
        };
        PodSpec {
            containers: self
                .containers
                .unwrap_or_default()
                .into_iter()
                .map(container)
                .collect(),
            init_containers: self
                .init_containers
                .map(|list| list.into_iter().map(container).collect()),
            ephemeral_containers: self
                .ephemeral_containers
                .map(|list| list.into_iter().map(ephemeral).collect()),
            volumes: self
                .volumes
                .map(|list| list.into_iter().map(volume).collect()),
            image_pull_secrets: self.image_pull_secrets,
            service_account_name: self.service_account_name,
            service_account: self.service_account,
            node_selector: self.node_selector,
            affinity: self.affinity,
            node_name: self.node_name,
            security_context: self.security_context.map(RunAsView::pod),
            os: self.os,
            ..PodSpec::default()
        }
    }
}
