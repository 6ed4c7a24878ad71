//! Watching pull budgets (`rateLimitProbes`): each configured registry is probed periodically; the
//! budget goes to the resolver (which warns below the threshold) and to the metrics.

use std::sync::Arc;
use std::time::Duration;

use super::Metrics;
use crate::config::RateLimitProbe;
use crate::registry::budget;
use crate::registry::hosts::Endpoint;
use crate::resolve::Updates;

/// Probe `probe.registry` at `endpoint` every `intervalSeconds` until the task is dropped.
pub async fn keep_probing(
    probe: RateLimitProbe,
    endpoint: Endpoint,
    updates: Updates,
    metrics: Arc<Metrics>,
) {
    let client = match budget::client(&endpoint, Duration::from_secs(10)) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(registry = %probe.registry, %error, "cannot watch the pull budget");
            return;
        }
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(probe.interval_seconds));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match budget::probe(&client, &endpoint, &probe.repository).await {
            Ok(Some(found)) => {
                updates.set_budget(probe.registry.as_str(), found, probe.warn_below);
                metrics.budget(probe.registry.as_str(), found.remaining);
                tracing::debug!(registry = %probe.registry, remaining = found.remaining, "pull budget");
            }
            Ok(None) => {
                tracing::debug!(registry = %probe.registry, "registry publishes no pull budget")
            }
            Err(error) => {
                tracing::warn!(registry = %probe.registry, %error, "pull budget probe failed")
            }
        }
    }
}
