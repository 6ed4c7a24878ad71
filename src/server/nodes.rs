//! Node platform discovery: the platforms unconstrained pods may land on, read from the Node objects'
//! `kubernetes.io/os` / `kubernetes.io/arch` labels (metadata only) and refreshed periodically.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;

use crate::platform::{self, Platform};
use crate::resolve::Updates;

/// The platforms of the cluster's nodes, from one metadata-only list of Nodes.
pub async fn discover(client: kube::Client) -> Result<Vec<Platform>, kube::Error> {
    let nodes: Api<Node> = Api::all(client);
    let list = nodes.list_metadata(&ListParams::default()).await?;
    let labels: Vec<BTreeMap<String, String>> = list
        .items
        .into_iter()
        .map(|node| node.metadata.labels.unwrap_or_default())
        .collect();
    Ok(platform::from_node_labels(&labels))
}

/// Refresh the resolver's node platforms (through `updates`) every `interval`. A failure (e.g. no `list` on nodes) keeps the
/// configured `nodePlatforms` and is logged once.
pub async fn keep_discovering(client: kube::Client, updates: Updates, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        match discover(client.clone()).await {
            Ok(found) if !found.is_empty() => {
                if found != updates.node_platforms() {
                    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
                    tracing::info!(platforms = ?shown, "node platforms discovered from Node labels");
                    updates.set_node_platforms(found);
                }
                failing = false;
            }
            Ok(_) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot list nodes; keeping the configured nodePlatforms");
            }
            Err(_) => {}
        }
    }
}
