//! Node platform discovery: the platforms unconstrained pods may land on, read from the Node objects'
//! `kubernetes.io/os` / `kubernetes.io/arch` labels (metadata only), and the Windows nodes' builds
//! (`node.kubernetes.io/windows-build`), refreshed periodically.

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
            Ok((found, builds)) if !found.is_empty() => {
                let builds_changed = !builds.is_empty() && builds != updates.windows_builds();
                if found != updates.node_platforms() || builds_changed {
                    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
                    let windows: Vec<String> = builds.values().flatten().cloned().collect();
                    tracing::info!(platforms = ?shown, windows_builds = ?windows, "node platforms discovered from Node labels");
                    updates.set_nodes(found, builds);
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
