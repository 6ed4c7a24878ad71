//! The metrics the server records itself — admissions, findings, latency, in-flight requests and
//! reloads — and the exposition of every metric registered on the same registry by the other
//! modules (registry requests, caches, Kubernetes lookups).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::policy::Verdict;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    kind: &'static str,
    operation: &'static str,
    verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    rule: &'static str,
    action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    what: &'static str,
    outcome: &'static str,
}

/// The server's metrics and the registry `/metrics` exposes.
pub struct Metrics {
    registry: Registry,
    admissions: Family<AdmissionLabels, Counter>,
    admission_seconds: Histogram,
    findings: Family<FindingLabels, Counter>,
    in_flight: Gauge,
    reloads: Family<ReloadLabels, Counter>,
    not_after: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Counts one admission in flight until dropped.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Register the server's metrics on `registry` (where the other modules registered theirs) and keep
    /// it for the exposition.
    pub fn new(mut registry: Registry) -> Self {
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews answered, by kind, operation and verdict (allowed, warned, denied, invalid)",
            admissions.clone(),
        );
        // 0.5 ms .. ~16 s
        let admission_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
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
        let not_after = Gauge::default();
        registry.register(
            "tls_certificate_not_after_seconds",
            "When the serving certificate expires (Unix time)",
            not_after.clone(),
        );
        Self {
            registry,
            admissions,
            admission_seconds,
            findings,
            in_flight,
            reloads,
            not_after,
        }
    }

    /// The served certificate's expiry (Unix seconds), when it could be read.
    pub fn certificate_not_after(&self, seconds: Option<i64>) {
        if let Some(seconds) = seconds {
            self.not_after.set(seconds);
        }
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// Count a reload of `what` (policies, certificates).
    pub fn reload(&self, what: &'static str, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                what,
                outcome: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// One more admission in flight, until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Count a body that was not a usable AdmissionReview.
    pub fn invalid_review(&self) {
        self.count_admission("unknown", "unknown", "invalid");
    }

    /// Count an answered admission, its findings and its time.
    pub fn admission(
        &self,
        kind: &'static str,
        operation: &'static str,
        outcome: &'static str,
        verdict: Option<&Verdict>,
        elapsed: Duration,
    ) {
        self.admission_seconds.observe(elapsed.as_secs_f64());
        for finding in verdict.iter().flat_map(|v| &v.findings) {
            self.findings
                .get_or_create(&FindingLabels {
                    rule: finding.rule.as_str(),
                    action: finding.action.as_str(),
                })
                .inc();
        }
        self.count_admission(kind, operation, outcome);
    }

    fn count_admission(&self, kind: &'static str, operation: &'static str, verdict: &'static str) {
        self.admissions
            .get_or_create(&AdmissionLabels {
                kind,
                operation,
                verdict,
            })
            .inc();
    }
}
