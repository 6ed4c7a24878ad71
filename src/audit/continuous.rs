//! Continuous re-verification in `serve` (setting `audit`): on the replica that holds the audit Lease,
//! every `intervalSeconds` the running workloads are listed (as `pullgate audit` lists them), each
//! distinct (image, credential) is asked again — a fresh resolver per round, so nothing is answered from
//! an earlier round's cache — and the statuses are exported as metrics ([`super::status`]).
//!
//! - **Budget**: each registry gets at most `maxRequestsPerRegistryPerInterval` requests a round, none
//!   after a 429 or 5xx (later lookups get that answer: `rate_limited`, `registry_unavailable`); what is left over keeps its last status and is asked first next round (the round
//!   resumes where the budget ran out), so N distinct images are all re-checked within
//!   `interval × ceil(N / budget)`.
//! - **Spread**: a round's lookups start evenly over 80 % of the interval, not all at once.
//! - **Deleted workloads** lose their series at the end of the next round that lists without errors.
//!
//! The workloads are re-listed each round (paginated) rather than watched: one list per kind per
//! interval costs the API server little at the intervals this runs at (minutes).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tokio::sync::watch;

use super::cluster::{self, Listed, Scope};
use super::status::{AuditMetrics, ContainerKey, Status};
use crate::config::{AuditSettings, Settings};
use crate::engine::{self, Subject};
use crate::facts::{ImageStatus, ResolveError};
use crate::policy::PolicySet;
use crate::registry::budget::RequestBudget;
use crate::registry::net::Loopback;
use crate::wiring;
use crate::workload::{Workload, WorkloadKind};

/// The current policies (they reload while `serve` runs).
pub type Policies = Arc<dyn Fn() -> Arc<PolicySet> + Send + Sync>;

/// A workload's identity, in listing order.
type WorkloadKey = (String, WorkloadKind, String);

/// One workload's round: its place in the round, its key, each container's status, and whether the
/// budget ran out on it.
struct Checked {
    place: usize,
    key: WorkloadKey,
    statuses: Vec<(String, Option<Status>)>,
    spent: bool,
}

/// Workloads re-checked at once.
const CONCURRENCY: usize = 8;

/// The re-verification loop of one replica.
pub struct Continuous {
    pub settings: Settings,
    pub audit: AuditSettings,
    pub client: kube::Client,
    pub policies: Policies,
    pub metrics: Arc<AuditMetrics>,
}

/// What a round leaves for the next.
#[derive(Debug, Default)]
struct Memory {
    statuses: BTreeMap<ContainerKey, Status>,
    /// The first workload the last round's budget did not reach.
    resume_at: Option<WorkloadKey>,
}

fn key_of(workload: &Workload) -> WorkloadKey {
    (
        workload.namespace.clone().unwrap_or_default(),
        workload.kind,
        workload.name.clone(),
    )
}

/// Resolves when `leader` says this replica no longer leads (or its sender is gone).
async fn lost(leader: &mut watch::Receiver<bool>) {
    // An Err means the elector stopped: treat as lost.
    let _ = leader.wait_for(|leads| !*leads).await;
}

impl Continuous {
    /// Run rounds while this replica leads; withdraw the results when it stops leading.
    pub async fn run(self, mut leader: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.audit.interval_seconds);
        let mut memory = Memory::default();
        loop {
            if leader.wait_for(|leads| *leads).await.is_err() {
                return;
            }
            self.metrics.set_leader(true);
            let started = Instant::now();
            let finished = tokio::select! {
                () = self.round(&mut memory, interval) => true,
                () = lost(&mut leader) => false,
            };
            if finished {
                tokio::select! {
                    () = tokio::time::sleep_until((started + interval).into()) => continue,
                    () = lost(&mut leader) => {}
                }
            }
            self.metrics.set_leader(false);
            self.metrics.withdraw();
            memory = Memory::default();
        }
    }

    async fn round(&self, memory: &mut Memory, interval: Duration) {
        let listing = cluster::list(&self.client, &Scope::All, None).await;
        for error in &listing.errors {
            tracing::warn!(%error, "audit: listing incomplete; series of unlisted workloads are kept");
        }
        let budget = Arc::new(RequestBudget::new(
            self.audit.max_requests_per_registry_per_interval,
            BTreeMap::new(),
        ));
        // Registry metrics of the rounds are not exported: the webhook's own are.
        let mut unexported = prometheus_client::registry::Registry::default();
        let wired = match wiring::audit(
            &self.settings,
            self.client.clone(),
            budget,
            Loopback::Refused,
            &mut unexported,
        ) {
            Ok(wired) => wired,
            Err(error) => {
                tracing::warn!(%error, "audit: cannot set up resolution");
                return;
            }
        };
        if self.settings.node_platform_discovery {
            if let Ok((platforms, builds)) = cluster::node_platforms(self.client.clone()).await {
                wired.updates.set_nodes(platforms, builds);
            }
        }
        let mut workloads: Vec<Workload> = listing
            .items
            .into_iter()
            .filter_map(|item| match item {
                Listed::Workload(workload) => Some(*workload),
                Listed::Unreadable { .. } => None,
            })
            .collect();
        workloads.sort_by_cached_key(key_of);
        let listed: BTreeSet<WorkloadKey> = workloads.iter().map(key_of).collect();
        // Resume where the last round's budget ran out.
        if let Some(at) = &memory.resume_at {
            let start = workloads.iter().position(|w| key_of(w) >= *at).unwrap_or(0);
            workloads.rotate_left(start);
        }
        let spacing =
            interval.mul_f64(0.8) / u32::try_from(workloads.len().max(1)).unwrap_or(u32::MAX);
        let started = tokio::time::Instant::now();
        let policies = (self.policies)();
        let resolver = &wired.resolver;
        let results: Vec<Checked> = futures::stream::iter(workloads.into_iter().enumerate())
            .map(|(i, workload)| {
                let policies = policies.clone();
                async move {
                    let at = started + spacing * u32::try_from(i).unwrap_or(u32::MAX);
                    tokio::time::sleep_until(at).await;
                    let key = key_of(&workload);
                    let subject = Subject::of_workload(workload, "default");
                    let decision = engine::decide(&subject, &policies, Some(resolver)).await;
                    let spent = decision.statuses.iter().flatten().any(|s| {
                        matches!(
                            s,
                            ImageStatus::Failed(ResolveError::RequestBudgetSpent { .. })
                        )
                    });
                    let statuses = subject
                        .facts
                        .containers
                        .iter()
                        .zip(&decision.statuses)
                        .map(|(c, s)| (c.spec.name.clone(), Status::of(c, s.as_ref())))
                        .collect();
                    Checked {
                        place: i,
                        key,
                        statuses,
                        spent,
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;

        let mut checked = 0;
        let mut first_spent: Option<(usize, WorkloadKey)> = None;
        for Checked {
            place: i,
            key: (namespace, kind, name),
            statuses,
            spent,
        } in results
        {
            if spent && first_spent.as_ref().is_none_or(|(j, _)| i < *j) {
                first_spent = Some((i, (namespace.clone(), kind, name.clone())));
            }
            for (container, status) in statuses {
                let Some(status) = status else { continue };
                checked += 1;
                let key = ContainerKey {
                    namespace: namespace.clone(),
                    kind,
                    name: name.clone(),
                    container,
                };
                memory.statuses.insert(key, status);
            }
        }
        if listing.errors.is_empty() {
            memory
                .statuses
                .retain(|k, _| listed.contains(&(k.namespace.clone(), k.kind, k.name.clone())));
        }
        memory.resume_at = first_spent.map(|(_, key)| key);
        self.metrics.checked(checked);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.metrics.publish(&memory.statuses, now);
        tracing::info!(
            workloads = listed.len(),
            images_checked = checked,
            resumes_next_round = memory.resume_at.is_some(),
            "audit round done"
        );
    }
}
