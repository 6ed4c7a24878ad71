//! What the continuous audit knows of each running container's image, and the metrics it exports:
//!
//! - `pullgate_workload_image_status{namespace,kind,name,container,status}`: one-hot gauges, one series
//!   per [`Status`] for each container (1 for the current one), while there are at most `audit.maxSeries`
//!   of them; beyond, only the totals are exported (and `pullgate_audit_series_limited` is 1);
//! - `pullgate_audit_images{status}`: containers per status;
//! - `pullgate_audit_checks_total`, `pullgate_audit_last_run_timestamp_seconds`, `pullgate_audit_leader`.
//!
//! A replica that does not hold the audit Lease exports no per-workload series (no duplicates).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::facts::{ContainerFacts, ImageStatus, ResolveError};
use crate::platform::PlatformMatch;
use crate::workload::WorkloadKind;

/// Whether a running container's image would pull now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    Absent,
    Unauthorized,
    Forbidden,
    PlatformMismatch,
    RegistryUnavailable,
    RateLimited,
    InvalidReference,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Self::Ok,
        Self::Absent,
        Self::Unauthorized,
        Self::Forbidden,
        Self::PlatformMismatch,
        Self::RegistryUnavailable,
        Self::RateLimited,
        Self::InvalidReference,
    ];

    /// The `status` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Absent => "absent",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::PlatformMismatch => "platform_mismatch",
            Self::RegistryUnavailable => "registry_unavailable",
            Self::RateLimited => "rate_limited",
            Self::InvalidReference => "invalid_reference",
        }
    }

    /// The status of a container from the engine's answer; `None` when this round says nothing (not
    /// asked: the request budget was spent, no registry rule applies, or the answer cannot be known).
    pub fn of(container: &ContainerFacts, answer: Option<&ImageStatus>) -> Option<Self> {
        if container.image.is_err() {
            return Some(Self::InvalidReference);
        }
        Some(match answer? {
            ImageStatus::Found { platforms, .. } => match platforms {
                Some(Ok(PlatformMatch::None { .. } | PlatformMatch::Some { .. })) => {
                    Self::PlatformMismatch
                }
                _ => Self::Ok,
            },
            ImageStatus::NotFound { .. } => Self::Absent,
            ImageStatus::AuthFailed {
                attempts,
                anonymous,
                api_unavailable,
                unverifiable,
                ..
            } => {
                if *api_unavailable || unverifiable.is_some() {
                    return None;
                }
                let denied = attempts
                    .iter()
                    .map(|a| &a.error)
                    .chain(anonymous)
                    .any(|e| *e == ResolveError::Denied);
                if denied {
                    Self::Forbidden
                } else {
                    Self::Unauthorized
                }
            }
            ImageStatus::CredentialsUnbuildable(_) => Self::Unauthorized,
            ImageStatus::Failed(ResolveError::RequestBudgetSpent { .. }) => return None,
            ImageStatus::Failed(ResolveError::RateLimited(_)) => Self::RateLimited,
            ImageStatus::Failed(_) | ImageStatus::TimedOut(_) => Self::RegistryUnavailable,
        })
    }
}

/// One container of a running workload.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerKey {
    pub namespace: String,
    pub kind: WorkloadKind,
    pub name: String,
    pub container: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    namespace: String,
    kind: &'static str,
    name: String,
    container: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TotalLabels {
    status: &'static str,
}

/// The continuous audit's metrics.
#[derive(Debug)]
pub struct AuditMetrics {
    status: Family<StatusLabels, Gauge>,
    images: Family<TotalLabels, Gauge>,
    limited: Gauge,
    checks: Counter,
    last_run: Gauge<f64, AtomicU64>,
    leader: Gauge,
    max_series: usize,
}

impl AuditMetrics {
    /// Register on `registry` (names get the registry's `pullgate_` prefix).
    pub fn register(registry: &mut Registry, max_series: usize) -> Self {
        let metrics = Self {
            status: Family::default(),
            images: Family::default(),
            limited: Gauge::default(),
            checks: Counter::default(),
            last_run: Gauge::default(),
            leader: Gauge::default(),
            max_series,
        };
        registry.register(
            "workload_image_status",
            "Whether each running container's image would pull now (one-hot over status)",
            metrics.status.clone(),
        );
        registry.register(
            "audit_images",
            "Running containers by the status of their image",
            metrics.images.clone(),
        );
        registry.register(
            "audit_series_limited",
            "1 when there are more containers than audit.maxSeries allows per-workload series for",
            metrics.limited.clone(),
        );
        registry.register(
            "audit_checks",
            "Container images re-resolved by the continuous audit",
            metrics.checks.clone(),
        );
        registry.register(
            "audit_last_run_timestamp_seconds",
            "When the last audit round ended (Unix time)",
            metrics.last_run.clone(),
        );
        registry.register(
            "audit_leader",
            "1 on the replica that holds the audit Lease and scans",
            metrics.leader.clone(),
        );
        metrics
    }

    /// `checked` more container images were asked about.
    pub fn checked(&self, checked: usize) {
        self.checks
            .inc_by(u64::try_from(checked).unwrap_or(u64::MAX));
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Export `statuses` (every running container's last known status) in place of the last round's;
    /// `ended_at` is the Unix time the round ended.
    pub fn publish(&self, statuses: &BTreeMap<ContainerKey, Status>, ended_at: f64) {
        self.status.clear();
        self.images.clear();
        for status in Status::ALL {
            let count = statuses.values().filter(|s| **s == status).count();
            self.images
                .get_or_create(&TotalLabels {
                    status: status.as_str(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let series = statuses.len().saturating_mul(Status::ALL.len());
        let limited = series > self.max_series;
        self.limited.set(i64::from(limited));
        if !limited {
            for (key, current) in statuses {
                for status in Status::ALL {
                    let labels = StatusLabels {
                        namespace: key.namespace.clone(),
                        kind: key.kind.as_str(),
                        name: key.name.clone(),
                        container: key.container.clone(),
                        status: status.as_str(),
                    };
                    self.status
                        .get_or_create(&labels)
                        .set(i64::from(status == *current));
                }
            }
        }
        self.last_run.set(ended_at);
    }

    /// Forget every result (this replica no longer holds the Lease).
    pub fn withdraw(&self) {
        self.status.clear();
        self.images.clear();
        self.limited.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{AuthAttempt, CredentialOrigin, Missing};
    use crate::workload::{ContainerList, ContainerSpec};

    fn container(image: &str) -> ContainerFacts {
        ContainerFacts::new(ContainerSpec {
            list: ContainerList::Containers,
            index: 0,
            name: "app".into(),
            image: image.into(),
            pull_policy: None,
            image_path: "spec.containers[0].image".into(),
            command: None,
            args: None,
            run_as: Default::default(),
        })
    }

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
        text
    }

    fn key(name: &str) -> ContainerKey {
        ContainerKey {
            namespace: "shop".into(),
            kind: WorkloadKind::Deployment,
            name: name.into(),
            container: "app".into(),
        }
    }

    #[test]
    fn series_are_one_hot_capped_and_withdrawn() {
        let mut full = Registry::with_prefix("pullgate");
        // Two containers need 16 series: allowed at 16, aggregated at 15.
        let metrics = AuditMetrics::register(&mut full, 16);
        let statuses = BTreeMap::from([(key("web"), Status::Absent), (key("api"), Status::Ok)]);
        metrics.publish(&statuses, 1.0);
        let text = encode(&full);
        let one_hot = |name: &str, status: &str| {
            format!(
                "pullgate_workload_image_status{{namespace=\"shop\",kind=\"Deployment\",name=\"{name}\",container=\"app\",status=\"{status}\"}}"
            )
        };
        assert!(
            text.contains(&format!("{} 1\n", one_hot("web", "absent"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 0\n", one_hot("web", "ok"))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} 1\n", one_hot("api", "ok"))),
            "{text}"
        );
        assert!(
            text.contains("pullgate_audit_images{status=\"absent\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("pullgate_audit_series_limited 0\n"), "{text}");

        let mut registry = Registry::with_prefix("pullgate");
        let capped = AuditMetrics::register(&mut registry, 15);
        capped.publish(&statuses, 1.0);
        let text = encode(&registry);
        assert!(!text.contains("pullgate_workload_image_status{"), "{text}");
        assert!(
            text.contains("pullgate_audit_images{status=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("pullgate_audit_series_limited 1\n"), "{text}");

        metrics.withdraw();
        let text = encode(&full);
        assert!(!text.contains("pullgate_workload_image_status{"), "{text}");
        assert!(!text.contains("pullgate_audit_images{"), "{text}");
    }

    #[test]
    fn statuses_follow_the_registry_answer() {
        let app = container("registry.example/app:v1");
        let failed = |error: ResolveError| ImageStatus::Failed(error);
        let auth = |error: ResolveError| ImageStatus::AuthFailed {
            attempts: vec![AuthAttempt {
                origin: CredentialOrigin::PodSecret { secret: "s".into() },
                error,
            }],
            problems: vec![],
            anonymous: None,
            api_unavailable: false,
            unverifiable: None,
        };
        let cases = [
            (
                ImageStatus::NotFound {
                    missing: Missing::Manifest,
                    suggestions: vec![],
                },
                Some(Status::Absent),
            ),
            (auth(ResolveError::Unauthorized), Some(Status::Unauthorized)),
            (auth(ResolveError::Denied), Some(Status::Forbidden)),
            (
                failed(ResolveError::RateLimited(String::new())),
                Some(Status::RateLimited),
            ),
            (
                failed(ResolveError::Refused),
                Some(Status::RegistryUnavailable),
            ),
            (failed(ResolveError::RequestBudgetSpent { limit: 1 }), None),
        ];
        for (answer, expected) in cases {
            assert_eq!(Status::of(&app, Some(&answer)), expected, "{answer:?}");
        }
        assert_eq!(Status::of(&app, None), None);
        assert_eq!(
            Status::of(&container("Not Valid"), None),
            Some(Status::InvalidReference)
        );
    }
}
