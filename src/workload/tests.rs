//! Workload views: every kind's containers and paths, limits, names.

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
