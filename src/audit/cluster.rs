//! Reading a live cluster: every workload kind pullgate checks, listed page by page (`limit` /
//! `continue`), narrowed to what will pull again, and the nodes' platforms.
//!
//! - **Owner collapse.** An object whose controlling owner (`ownerReferences[].controller`) was listed
//!   too is left out: a Pod of a ReplicaSet of a Deployment is audited once, as the Deployment. An object
//!   controlled by something pullgate does not list (an operator's custom resource) is kept.
//! - **Finished work is left out.** Pods in phase `Succeeded` or `Failed` and Jobs with a `Complete` or
//!   `Failed` condition never pull again.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplate, ReplicationController};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;

use crate::platform::{self, Platform, WindowsBuilds};
use crate::workload::{Workload, WorkloadKind};

/// Objects asked for per list request.
pub const PAGE_SIZE: u32 = 500;
/// Most objects of one kind read in one audit: a bound on an API that keeps handing out pages.
pub const MAX_OBJECTS_PER_KIND: usize = 1_000_000;

/// The kinds audited, owners first (the order of the report within a namespace).
pub const KINDS: [WorkloadKind; 9] = [
    WorkloadKind::CronJob,
    WorkloadKind::Deployment,
    WorkloadKind::StatefulSet,
    WorkloadKind::DaemonSet,
    WorkloadKind::ReplicationController,
    WorkloadKind::Job,
    WorkloadKind::ReplicaSet,
    WorkloadKind::Pod,
    WorkloadKind::PodTemplate,
];

/// Which namespaces to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `-A`: every namespace.
    All,
    /// `-n NAME`.
    Namespace(String),
}

/// Why a kind could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot list {plural}: {reason}")]
pub struct ListError {
    pub plural: String,
    pub reason: String,
}

/// A workload to audit, or why a listed object could not be read as one.
#[derive(Debug)]
pub enum Listed {
    Workload(Box<Workload>),
    Unreadable {
        kind: WorkloadKind,
        namespace: String,
        name: String,
        reason: String,
    },
}

/// What listing the cluster found.
#[derive(Debug, Default)]
pub struct Listing {
    pub items: Vec<Listed>,
    /// Objects read, before owner collapse.
    pub read: usize,
    /// Objects left out because a listed owner controls them.
    pub collapsed: usize,
    /// Finished Pods and Jobs left out.
    pub finished: usize,
    /// List requests made (pages).
    pub pages: usize,
    pub errors: Vec<ListError>,
}

fn api_resource(kind: WorkloadKind) -> ApiResource {
    match kind {
        WorkloadKind::Pod => ApiResource::erase::<Pod>(&()),
        WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
        WorkloadKind::ReplicaSet => ApiResource::erase::<ReplicaSet>(&()),
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        WorkloadKind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
        WorkloadKind::Job => ApiResource::erase::<Job>(&()),
        WorkloadKind::CronJob => ApiResource::erase::<CronJob>(&()),
        WorkloadKind::ReplicationController => ApiResource::erase::<ReplicationController>(&()),
        WorkloadKind::PodTemplate => ApiResource::erase::<PodTemplate>(&()),
    }
}

/// What is kept of one listed object: enough to collapse owners and to audit it. Each page is reduced
/// to these as it arrives, so the listing holds pod specs, not whole objects (status, managed fields).
struct Read {
    uid: Option<String>,
    controller: Option<String>,
    /// `None` for finished work.
    item: Option<Listed>,
}

impl Read {
    fn of(kind: WorkloadKind, object: &Value) -> Self {
        let item = (!finished(kind, object)).then(|| match Workload::from_object(kind, object) {
            Ok(workload) => Listed::Workload(Box::new(workload)),
            Err(error) => Listed::Unreadable {
                kind,
                namespace: text(object, &["metadata", "namespace"])
                    .unwrap_or_default()
                    .to_owned(),
                name: text(object, &["metadata", "name"])
                    .unwrap_or_default()
                    .to_owned(),
                reason: error.to_string(),
            },
        });
        Self {
            uid: text(object, &["metadata", "uid"]).map(str::to_owned),
            controller: controller(object).map(str::to_owned),
            item,
        }
    }
}

/// Every object of `kind` in `scope` matching `selector`, one page of [`PAGE_SIZE`] at a time. The
/// error says whether the API could not be reached at all (then listing other kinds is pointless).
async fn list_kind(
    client: &kube::Client,
    kind: WorkloadKind,
    scope: &Scope,
    selector: Option<&str>,
    pages: &mut usize,
) -> Result<Vec<Read>, (ListError, bool)> {
    let resource = api_resource(kind);
    let api: Api<DynamicObject> = match scope {
        Scope::All => Api::all_with(client.clone(), &resource),
        Scope::Namespace(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
    };
    let failed = |reason: String| ListError {
        plural: resource.plural.clone(),
        reason,
    };
    let mut params = ListParams::default().limit(PAGE_SIZE);
    if let Some(selector) = selector {
        params = params.labels(selector);
    }
    let mut objects = Vec::new();
    loop {
        *pages += 1;
        let page = api.list(&params).await.map_err(|e| {
            let transport = !matches!(e, kube::Error::Api(_));
            (failed(describe(&e)), transport)
        })?;
        for item in page.items {
            let value = serde_json::to_value(&item).map_err(|e| (failed(e.to_string()), false))?;
            objects.push(Read::of(kind, &value));
        }
        if objects.len() > MAX_OBJECTS_PER_KIND {
            return Err((
                failed(format!(
                    "more than {MAX_OBJECTS_PER_KIND} objects: audit one namespace at a time"
                )),
                false,
            ));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(objects),
        }
    }
}

/// A kube error in one line: the API's own message for status errors, else the transport chain.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

fn text<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(object, |v, key| v.get(key))?.as_str()
}

/// The uid of the object's controlling owner.
fn controller(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|owner| owner["controller"].as_bool() == Some(true))
        .and_then(|owner| owner["uid"].as_str())
}

/// A Pod or Job that has run to its end.
fn finished(kind: WorkloadKind, object: &Value) -> bool {
    match kind {
        WorkloadKind::Pod => matches!(
            text(object, &["status", "phase"]),
            Some("Succeeded" | "Failed")
        ),
        WorkloadKind::Job => object["status"]["conditions"]
            .as_array()
            .is_some_and(|conditions| {
                conditions.iter().any(|c| {
                    matches!(c["type"].as_str(), Some("Complete" | "Failed"))
                        && c["status"].as_str() == Some("True")
                })
            }),
        _ => false,
    }
}

/// Every workload in `scope`: listed kind by kind, then owner-collapsed and without finished work. A
/// kind that cannot be listed is an error of the listing (the audit is then incomplete); an API that
/// cannot be reached stops the listing at the first kind.
pub async fn list(client: &kube::Client, scope: &Scope, selector: Option<&str>) -> Listing {
    let mut listing = Listing::default();
    let mut listed: Vec<Read> = Vec::new();
    for kind in KINDS {
        match list_kind(client, kind, scope, selector, &mut listing.pages).await {
            Ok(objects) => listed.extend(objects),
            Err((error, transport)) => {
                listing.errors.push(error);
                if transport {
                    break;
                }
            }
        }
    }
    listing.read = listed.len();
    let uids: HashSet<String> = listed.iter().filter_map(|r| r.uid.clone()).collect();
    for read in listed {
        if read
            .controller
            .as_ref()
            .is_some_and(|uid| uids.contains(uid))
        {
            listing.collapsed += 1;
            continue;
        }
        match read.item {
            Some(item) => listing.items.push(item),
            None => listing.finished += 1,
        }
    }
    listing
}

/// The platforms of the cluster's nodes and the builds of its Windows nodes, from one metadata-only
/// list of Nodes.
pub async fn node_platforms(
    client: kube::Client,
) -> Result<(Vec<Platform>, WindowsBuilds), kube::Error> {
    let nodes: Api<Node> = Api::all(client);
    let list = nodes.list_metadata(&ListParams::default()).await?;
    let labels: Vec<BTreeMap<String, String>> = list
        .items
        .into_iter()
        .map(|node| node.metadata.labels.unwrap_or_default())
        .collect();
    let builds = platform::windows::builds_from_node_labels(&labels);
    Ok((platform::from_node_labels(&labels), builds))
}
