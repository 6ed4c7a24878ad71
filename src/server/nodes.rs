//! Node platform discovery: the platforms unconstrained pods may land on, read from the Node objects'
//! `kubernetes.io/os` / `kubernetes.io/arch` labels (metadata only) and refreshed periodically.

use std::time::Duration;

pub use crate::audit::node_platforms as discover;
use crate::resolve::Updates;

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
