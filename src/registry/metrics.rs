//! Registry request metrics: every exchange counted by registry host, request and outcome class, and
//! timed. Registered on the metrics registry handed to [`RegistryMetrics::register`].

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::facts::ResolveError;

/// Most distinct `registry` label values; further hosts are counted as `other`.
pub const MAX_REGISTRY_LABELS: usize = 64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    registry: String,
    request: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    registry: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimingLabels {
    registry: String,
    request: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// `pullgate_registry_requests`, `pullgate_registry_request_duration_seconds` and
/// `pullgate_registry_ratelimit_remaining`.
pub struct RegistryMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<TimingLabels, Histogram>,
    ratelimit_remaining: Family<BudgetLabels, Gauge>,
    seen_registries: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for RegistryMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryMetrics").finish_non_exhaustive()
    }
}

impl RegistryMetrics {
    /// Register the registry metrics on `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "registry_requests",
            "Registry requests, by registry host, request (manifest_head, manifest_get, blob_get, token, budget_probe) and outcome class",
            requests.clone(),
        );
        let seconds =
            Family::<TimingLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "registry_request_duration_seconds",
            "Time of one registry lookup, by registry host and request",
            seconds.clone(),
        );
        let ratelimit_remaining = Family::<BudgetLabels, Gauge>::default();
        registry.register(
            "registry_ratelimit_remaining",
            "Pulls left in the current window of a registry that publishes its pull budget",
            ratelimit_remaining.clone(),
        );
        Self {
            requests,
            seconds,
            ratelimit_remaining,
            seen_registries: Mutex::new(HashSet::new()),
        }
    }

    /// The registry label for a host: itself while fewer than [`MAX_REGISTRY_LABELS`] are known.
    fn registry_label(&self, host: &str) -> String {
        let mut seen = match self.seen_registries.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        if seen.contains(host) {
            return host.to_owned();
        }
        if seen.len() < MAX_REGISTRY_LABELS {
            seen.insert(host.to_owned());
            return host.to_owned();
        }
        "other".to_owned()
    }

    /// Set a registry's remaining pulls, as its answers publish them.
    pub fn budget(&self, registry: &str, remaining: u64) {
        self.ratelimit_remaining
            .get_or_create(&BudgetLabels {
                registry: self.registry_label(registry),
            })
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
    }

    /// Count one exchange with `host` and its time.
    pub fn record(
        &self,
        host: &str,
        request: &'static str,
        started: Instant,
        outcome: Result<(), &ResolveError>,
    ) {
        let registry = self.registry_label(host);
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(error) => outcome_label(error),
        };
        self.requests
            .get_or_create(&RequestLabels {
                registry: registry.clone(),
                request,
                outcome,
            })
            .inc();
        self.seconds
            .get_or_create(&TimingLabels { registry, request })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A failure's class as a metric label.
fn outcome_label(error: &ResolveError) -> &'static str {
    match error {
        ResolveError::NotFound(_) => "not_found",
        ResolveError::Unauthorized => "unauthorized",
        ResolveError::Denied => "denied",
        ResolveError::RateLimited(_) => "rate_limited",
        ResolveError::Tls(_) => "tls",
        ResolveError::Refused | ResolveError::Dns(_) | ResolveError::Connect(_) => "network",
        ResolveError::Timeout => "timeout",
        ResolveError::Server { .. } => "server_error",
        ResolveError::InvalidResponse(_) => "invalid_response",
        ResolveError::TokenService(_) => "token_service",
        ResolveError::TooLarge { .. } => "too_large",
        ResolveError::AddressRefused { .. } => "address_refused",
        ResolveError::CredentialsWithheld { .. } => "credentials_withheld",
        ResolveError::RequestBudgetSpent { .. } => "request_budget_spent",
    }
}
