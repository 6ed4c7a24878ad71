//! The narrow decode (no `serde_json::Value` tree on the hot path) reads exactly what the general one
//! did: every captured AdmissionReview in `tests/fixtures/admission`, and hand-made requests for the
//! shapes the captures lack (every workload kind, init and ephemeral containers, image volumes, pull
//! secrets, ServiceAccounts, node selectors and affinity, non-string labels, UPDATE with an old object),
//! are decoded both ways and compared field by field.
//!
//! The reference below is the decode pullgate used before: the body as a `Value`, the request through
//! kube's `AdmissionReview<DynamicObject>`, the pod spec through k8s-openapi's full `PodSpec`.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::PodSpec;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use pullgate::admission::{self, Request};
use pullgate::workload::{ContainerSpec, Workload, WorkloadKind};
use serde_json::{Value, json};

/// What the decision reads of one object, from either decode.
#[derive(Debug, PartialEq)]
struct Read {
    uid: String,
    kind: (String, String, String),
    resource: (String, String, String),
    sub_resource: Option<String>,
    name: String,
    namespace: Option<String>,
    operation: String,
    dry_run: bool,
    object: Option<Object>,
    old_object: Option<Object>,
}

#[derive(Debug, PartialEq)]
struct Object {
    name: String,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    containers: Vec<ContainerSpec>,
    /// The pod spec fields that decide credentials and platforms, as JSON.
    pull_context: Value,
}

fn pull_context(spec: &PodSpec) -> Value {
    json!({
        "imagePullSecrets": spec.image_pull_secrets,
        "serviceAccountName": spec.service_account_name,
        "serviceAccount": spec.service_account,
        "nodeSelector": spec.node_selector,
        "affinity": spec.affinity,
        "nodeName": spec.node_name,
    })
}

fn object(workload: Workload) -> Object {
    Object {
        containers: workload.containers(),
        pull_context: pull_context(&workload.spec),
        name: workload.name,
        namespace: workload.namespace,
        labels: workload.labels,
    }
}

/// The narrow decode, as `serve` runs it.
fn narrow(body: &[u8]) -> Read {
    let Request {
        review,
        object: new,
        old_object,
    } = admission::decode(body).expect("decodes");
    let kind = WorkloadKind::from_group_kind(&review.kind.group, &review.kind.kind);
    let read = |decoded: Option<admission::Object>| {
        let (kind, decoded) = (kind?, decoded?);
        Some(object(decoded.workload(kind).expect("workload")))
    };
    Read {
        uid: review.uid.clone(),
        kind: (
            review.kind.group.clone(),
            review.kind.version.clone(),
            review.kind.kind.clone(),
        ),
        resource: (
            review.resource.group.clone(),
            review.resource.version.clone(),
            review.resource.resource.clone(),
        ),
        sub_resource: review.sub_resource.clone(),
        name: review.name.clone(),
        namespace: review.namespace.clone(),
        operation: format!("{:?}", review.operation),
        dry_run: review.dry_run,
        object: read(new),
        old_object: read(old_object),
    }
}

/// The general decode pullgate used before.
fn general(body: &[u8]) -> Read {
    let mut value: Value = serde_json::from_slice(body).expect("JSON");
    let mut take = |key: &str| {
        value
            .get_mut("request")
            .and_then(Value::as_object_mut)
            .and_then(|r| r.remove(key))
            .filter(|v| !v.is_null())
    };
    let (new, old) = (take("object"), take("oldObject"));
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(value).expect("review");
    let review: AdmissionRequest<DynamicObject> = review.try_into().expect("request");
    let kind = WorkloadKind::from_group_kind(&review.kind.group, &review.kind.kind);
    let read = |object: &Option<Value>| {
        let (kind, object) = (kind?, object.as_ref()?);
        Some(reference_workload(kind, object))
    };
    Read {
        uid: review.uid.clone(),
        kind: (
            review.kind.group.clone(),
            review.kind.version.clone(),
            review.kind.kind.clone(),
        ),
        resource: (
            review.resource.group.clone(),
            review.resource.version.clone(),
            review.resource.resource.clone(),
        ),
        sub_resource: review.sub_resource.clone(),
        name: review.name.clone(),
        namespace: review.namespace.clone(),
        operation: format!("{:?}", review.operation),
        dry_run: review.dry_run,
        object: read(&new),
        old_object: read(&old),
    }
}

/// The pod spec read whole with k8s-openapi's types, at the kind's path, as before.
fn reference_workload(kind: WorkloadKind, object: &Value) -> Object {
    let path: &[&str] = match kind {
        WorkloadKind::Pod => &["spec"],
        WorkloadKind::PodTemplate => &["template", "spec"],
        WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    };
    let spec_value = path
        .iter()
        .try_fold(object, |v, key| v.get(key))
        .expect("spec");
    let spec: PodSpec = serde_json::from_value(spec_value.clone()).expect("PodSpec");
    let metadata = object.get("metadata");
    let text = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let labels = metadata
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let workload = Workload {
        kind,
        namespace: text("namespace"),
        name: text("name")
            .or_else(|| text("generateName"))
            .unwrap_or_default(),
        labels,
        spec,
    };
    object_of(workload)
}

fn object_of(workload: Workload) -> Object {
    object(workload)
}

fn review(kind: (&str, &str, &str), operation: &str, object: Value, old: Value) -> Vec<u8> {
    let (group, version, name) = kind;
    let resource = format!("{}s", name.to_lowercase());
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": format!("uid-{name}-{operation}"),
            "kind": {"group": group, "version": version, "kind": name},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": name},
            "subResource": if name == "Pod" && operation == "UPDATE" { json!("ephemeralcontainers") } else { Value::Null },
            "name": "web", "namespace": "demo", "operation": operation,
            "userInfo": {"username": "tester", "groups": ["system:authenticated"], "extra": {"a": ["b"]}},
            "object": object, "oldObject": old, "dryRun": operation == "UPDATE",
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}
    }))
    .expect("JSON")
}

fn rich_pod_spec(image: &str) -> Value {
    json!({
        "initContainers": [{"name": "init", "image": "busybox:1.36", "resources": {"limits": {"cpu": "1"}},
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}],
        "containers": [
            {"name": "app", "image": image, "imagePullPolicy": "Always", "ports": [{"containerPort": 80}],
             "livenessProbe": {"httpGet": {"path": "/", "port": 80}}, "securityContext": {"runAsNonRoot": true}},
            {"name": "sidecar", "image": "registry.example.com/team/side@sha256:0000000000000000000000000000000000000000000000000000000000000001"}],
        "ephemeralContainers": [{"name": "debug", "image": "busybox", "targetContainerName": "app"}],
        "volumes": [{"name": "data", "emptyDir": {}},
            {"name": "models", "image": {"reference": "registry.example.com/models:v3", "pullPolicy": "IfNotPresent"}}],
        "imagePullSecrets": [{"name": "regcred"}, {"name": "other"}],
        "serviceAccountName": "builder", "serviceAccount": "builder",
        "nodeSelector": {"kubernetes.io/arch": "arm64", "pool": "edge"},
        "nodeName": "node-1",
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a"]}]}}]},
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
        "securityContext": {"fsGroup": 2000},
    })
}

fn metadata(name: &str) -> Value {
    json!({"name": name, "namespace": "demo", "uid": "x", "generation": 3,
        "labels": {"app": "web", "tier": "1", "numeric": 1, "flag": true},
        "annotations": {"a": "b"},
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]})
}

fn made() -> Vec<(String, Vec<u8>)> {
    let spec = rich_pod_spec("registry.example.com/team/app:v1");
    let templated = |kind: &str| {
        json!({"apiVersion": "apps/v1", "kind": kind, "metadata": metadata("web"),
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec.clone()}}})
    };
    let mut made = Vec::new();
    for (group, kind) in [
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
        ("", "ReplicationController"),
    ] {
        let old = templated(kind);
        let mut new = templated(kind);
        new["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!("registry.example.com/team/app:v2");
        for operation in ["CREATE", "UPDATE"] {
            let old = if operation == "UPDATE" {
                old.clone()
            } else {
                Value::Null
            };
            made.push((
                format!("{kind} {operation}"),
                review((group, "v1", kind), operation, new.clone(), old),
            ));
        }
    }
    let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata("nightly"),
        "spec": {"schedule": "0 1 * * *", "jobTemplate": {"spec": {"template": {"spec": spec.clone()}}}}});
    made.push((
        "CronJob".into(),
        review(("batch", "v1", "CronJob"), "CREATE", cronjob, Value::Null),
    ));
    let template = json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": metadata("t"),
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": spec.clone()}});
    made.push((
        "PodTemplate".into(),
        review(("", "v1", "PodTemplate"), "CREATE", template, Value::Null),
    ));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-", "namespace": "demo"},
        "spec": spec.clone(), "status": {"phase": "Pending"}});
    for operation in ["CREATE", "UPDATE"] {
        let old = if operation == "UPDATE" {
            pod.clone()
        } else {
            Value::Null
        };
        made.push((
            format!("Pod {operation}"),
            review(("", "v1", "Pod"), operation, pod.clone(), old),
        ));
    }
    let minimal =
        json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}]}});
    made.push((
        "Pod without metadata or image".into(),
        review(("", "v1", "Pod"), "CREATE", minimal, Value::Null),
    ));
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata("svc"), "spec": {"ports": []}});
    made.push((
        "a Service".into(),
        review(("", "v1", "Service"), "CREATE", service, Value::Null),
    ));
    made.push((
        "DELETE".into(),
        review(("", "v1", "Pod"), "DELETE", Value::Null, pod),
    ));
    made
}

#[test]
fn every_captured_review_decodes_to_the_same_fields_both_ways() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "{files:?}");
    for file in files {
        let body = std::fs::read(&file).expect("fixture");
        let decoded = admission::decode(&body).expect("decodes");
        assert!(
            matches!(decoded.object, Some(admission::Object::View(_))),
            "{}: the object is read in the envelope's pass",
            file.display()
        );
        let (narrow, general) = (narrow(&body), general(&body));
        assert!(
            narrow.object.is_some(),
            "{}: no object read",
            file.display()
        );
        assert_eq!(narrow, general, "{}", file.display());
    }
}

#[test]
fn every_shape_decodes_to_the_same_fields_both_ways() {
    for (name, body) in made() {
        let (narrow, general) = (narrow(&body), general(&body));
        assert_eq!(narrow, general, "{name}");
        if name.starts_with("Deployment UPDATE") {
            let object = narrow.object.as_ref().expect("object");
            assert_eq!(
                object.containers.len(),
                5,
                "init, two, ephemeral, image volume"
            );
            assert_eq!(
                object.labels.len(),
                2,
                "string labels only: {:?}",
                object.labels
            );
            assert!(narrow.old_object.is_some());
        }
    }
}

#[test]
fn the_decision_is_the_same_both_ways() {
    // The engine's subject (what policy and resolution see) from the narrow decode equals the one built
    // from the general decode's workload.
    for (name, body) in made() {
        let mut request = admission::decode(&body).expect("decodes");
        let had_old_object = request.old_object.is_some();
        let Ok(Some(subject)) = admission::subject(&mut request) else {
            continue;
        };
        let general = general(&body);
        let object = general.object.expect("object");
        let images: Vec<_> = subject
            .facts
            .containers
            .iter()
            .map(|c| c.spec.clone())
            .collect();
        if !had_old_object {
            assert_eq!(images, object.containers, "{name}");
        }
        assert_eq!(pull_context(&subject.spec), object.pull_context, "{name}");
        assert_eq!(subject.facts.labels, object.labels, "{name}");
    }
}

#[test]
fn an_object_of_another_shape_is_an_error_only_for_a_checked_kind() {
    // `spec.containers` as a string: no workload has that shape. The envelope still decodes (the
    // object kept as text); a kind pullgate does not check is allowed, a Deployment is refused with
    // the reason, exactly as when the object was always read after the envelope.
    let odd = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": metadata("w"),
        "spec": {"containers": "not a list"}});
    let body = review(
        ("example.com", "v1", "Widget"),
        "CREATE",
        odd.clone(),
        Value::Null,
    );
    let mut request = admission::decode(&body).expect("the envelope decodes");
    assert!(
        matches!(request.object, Some(admission::Object::Text(_))),
        "{:?}",
        request.object
    );
    assert!(matches!(admission::subject(&mut request), Ok(None)));

    let body = review(("apps", "v1", "Deployment"), "CREATE", odd, Value::Null);
    let mut request = admission::decode(&body).expect("the envelope decodes");
    let error = admission::subject(&mut request).expect_err("not a Deployment");
    assert!(
        error
            .to_string()
            .starts_with("Deployment is not a valid Deployment object: "),
        "{error}"
    );
}
