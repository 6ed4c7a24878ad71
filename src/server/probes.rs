//! Watching pull budgets (`rateLimitProbes`): each configured registry is probed periodically with an
//! anonymous `HEAD` through the registry client (which reads every answer's `ratelimit-*` headers into the
//! `pullgate_registry_ratelimit_remaining` gauge and the resolver's low-budget warnings); the probe keeps
//! the budget known for registries that pods have not pulled from lately.

use std::sync::Arc;
use std::time::Duration;

use crate::config::RateLimitProbe;
use crate::registry::client::Client;
use crate::resolve::Updates;

/// Probe `probe.registry` every `intervalSeconds` until the task is dropped.
pub async fn keep_probing(probe: RateLimitProbe, client: Arc<Client>, updates: Updates) {
    let mut ticker = tokio::time::interval(Duration::from_secs(probe.interval_seconds));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match client
            .budget(probe.registry.as_str(), &probe.repository)
            .await
        {
            Ok(Some(found)) => {
                // The client told `updates` already; a 429 carries no headers, so say it here too.
                updates.set_budget(probe.registry.as_str(), found, probe.warn_below);
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
