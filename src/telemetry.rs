//! Logging: `tracing` with a text or JSON formatter, level from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

tokio::task_local! {
    /// Registry requests made on behalf of the admission running in this task.
    static REGISTRY_CALLS: std::cell::Cell<u32>;
}

/// Run `work`, counting the registry requests it makes (for the admission's log line).
pub async fn count_registry_calls<T>(work: impl std::future::Future<Output = T>) -> (T, u32) {
    REGISTRY_CALLS
        .scope(std::cell::Cell::new(0), async {
            let out = work.await;
            (out, REGISTRY_CALLS.with(std::cell::Cell::get))
        })
        .await
}

/// Note one registry request in the current admission's count (no-op outside one).
pub fn note_registry_call() {
    let _ = REGISTRY_CALLS.try_with(|calls| calls.set(calls.get() + 1));
}

/// Prometheus metrics, passed explicitly to whoever records them (no globals). Label values come from
/// small fixed sets; registry hosts are capped at `MAX_REGISTRY_LABELS` distinct values, then `other`.
pub mod metrics {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::registry::Registry;

    /// Most distinct `registry` label values; further hosts are counted as `other`.
    pub const MAX_REGISTRY_LABELS: usize = 64;

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct AdmissionLabels {
        pub kind: &'static str,
        pub operation: &'static str,
        pub verdict: &'static str,
    }

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct FindingLabels {
        pub rule: &'static str,
        pub action: &'static str,
    }

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct RegistryLabels {
        pub registry: String,
        pub request: &'static str,
        pub outcome: &'static str,
    }

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct RegistryTimingLabels {
        pub registry: String,
        pub request: &'static str,
    }

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct BudgetLabels {
        pub registry: String,
    }

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct CacheLabels {
        pub cache: &'static str,
        pub result: &'static str,
    }

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct KubeLabels {
        pub resource: &'static str,
        pub outcome: &'static str,
    }

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    pub struct ReloadLabels {
        pub what: &'static str,
        pub outcome: &'static str,
    }

    fn latency_histogram() -> Histogram {
        // 0.5 ms .. ~16 s
        Histogram::new(exponential_buckets(0.0005, 2.0, 16))
    }

    /// Every metric pullgate exports.
    pub struct Metrics {
        registry: Registry,
        pub admissions: Family<AdmissionLabels, Counter>,
        pub admission_seconds: Histogram,
        pub findings: Family<FindingLabels, Counter>,
        pub registry_requests: Family<RegistryLabels, Counter>,
        pub registry_request_seconds: Family<RegistryTimingLabels, Histogram>,
        pub cache_lookups: Family<CacheLabels, Counter>,
        pub kube_lookups: Family<KubeLabels, Counter>,
        pub in_flight: Gauge,
        pub reloads: Family<ReloadLabels, Counter>,
        pub ratelimit_remaining: Family<BudgetLabels, Gauge>,
        seen_registries: Mutex<HashSet<String>>,
    }

    impl std::fmt::Debug for Metrics {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Metrics").finish_non_exhaustive()
        }
    }

    impl Default for Metrics {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Metrics {
        pub fn new() -> Self {
            let mut registry = Registry::with_prefix("pullgate");
            let admissions = Family::<AdmissionLabels, Counter>::default();
            registry.register(
                "admissions",
                "Admission reviews answered, by kind, operation and verdict (allowed, warned, denied, invalid)",
                admissions.clone(),
            );
            let admission_seconds = latency_histogram();
            registry.register(
                "admission_duration_seconds",
                "Time to answer one admission review",
                admission_seconds.clone(),
            );
            let findings = Family::<FindingLabels, Counter>::default();
            registry.register(
                "findings",
                "Findings reported, by rule and action",
                findings.clone(),
            );
            let registry_requests = Family::<RegistryLabels, Counter>::default();
            registry.register(
                "registry_requests",
                "Registry lookups, by registry host, request (manifest_head, manifest_get) and outcome class",
                registry_requests.clone(),
            );
            let registry_request_seconds =
                Family::<RegistryTimingLabels, Histogram>::new_with_constructor(
                    latency_histogram as fn() -> Histogram,
                );
            registry.register(
                "registry_request_duration_seconds",
                "Time of one registry lookup, by registry host and request",
                registry_request_seconds.clone(),
            );
            let cache_lookups = Family::<CacheLabels, Counter>::default();
            registry.register(
                "cache_lookups",
                "Cache lookups, by cache (digest, platforms) and result (hit, miss)",
                cache_lookups.clone(),
            );
            let kube_lookups = Family::<KubeLabels, Counter>::default();
            registry.register(
                "kubernetes_lookups",
                "Kubernetes API reads, by resource and outcome",
                kube_lookups.clone(),
            );
            let in_flight = Gauge::default();
            registry.register(
                "admissions_in_flight",
                "Admission reviews being answered",
                in_flight.clone(),
            );
            let reloads = Family::<ReloadLabels, Counter>::default();
            registry.register(
                "reloads",
                "Reloads of policies and certificates, by outcome (ok, failed)",
                reloads.clone(),
            );
            let ratelimit_remaining = Family::<BudgetLabels, Gauge>::default();
            registry.register(
                "registry_ratelimit_remaining",
                "Pulls left in the current window of a watched registry (rateLimitProbes)",
                ratelimit_remaining.clone(),
            );
            Self {
                registry,
                ratelimit_remaining,
                admissions,
                admission_seconds,
                findings,
                registry_requests,
                registry_request_seconds,
                cache_lookups,
                kube_lookups,
                in_flight,
                reloads,
                seen_registries: Mutex::new(HashSet::new()),
            }
        }

        /// The registry label for a host: itself while fewer than `MAX_REGISTRY_LABELS` are known.
        pub fn registry_label(&self, host: &str) -> String {
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

        /// Count a reload.
        pub fn reload(&self, what: &'static str, ok: bool) {
            self.reloads
                .get_or_create(&ReloadLabels {
                    what,
                    outcome: if ok { "ok" } else { "failed" },
                })
                .inc();
        }

        /// Count a cache lookup.
        pub fn cache(&self, cache: &'static str, hit: bool) {
            self.cache_lookups
                .get_or_create(&CacheLabels {
                    cache,
                    result: if hit { "hit" } else { "miss" },
                })
                .inc();
        }

        /// The Prometheus text exposition.
        pub fn encode(&self) -> String {
            let mut text = String::new();
            if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
                text.clear();
            }
            text
        }
    }
}
