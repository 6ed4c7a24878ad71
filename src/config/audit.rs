//! `audit`: continuous re-verification in `serve` (off when the key is absent).

use serde::Deserialize;

/// Re-resolve every running workload's images each interval, within a request budget per registry, on
/// the replica that holds the audit Lease; the results are the `pullgate_workload_image_status` metrics.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditSettings {
    /// How often every distinct (image, credential) is asked again.
    #[schemars(range(min = 1, max = 86400))]
    pub interval_seconds: u64,
    /// Requests each registry may get per interval; what is left over waits for the next interval.
    #[schemars(range(min = 1, max = 1000000))]
    pub max_requests_per_registry_per_interval: u32,
    /// Most `pullgate_workload_image_status` series; beyond, only the per-status totals are exported.
    #[schemars(range(min = 1, max = 10000000))]
    pub max_series: usize,
    /// The `coordination.k8s.io` Lease that elects the one replica that scans.
    pub lease_name: String,
    /// Namespace of the Lease; default: the pod's own (`POD_NAMESPACE`), else `pullgate-system`.
    pub lease_namespace: Option<String>,
    /// A leader that has not renewed the Lease for this long is replaced.
    #[schemars(range(min = 2, max = 3600))]
    pub lease_duration_seconds: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            interval_seconds: 600,
            max_requests_per_registry_per_interval: 100,
            max_series: 20_000,
            lease_name: "pullgate-audit".to_owned(),
            lease_namespace: None,
            lease_duration_seconds: 30,
        }
    }
}
