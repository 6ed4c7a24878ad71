//! Leader election on a `coordination.k8s.io/v1` Lease, so that with several replicas exactly one
//! scans (no double registry load, no duplicate series), as client-go's `leaderelection` does it:
//!
//! - the holder renews `renewTime` every third of the Lease duration;
//! - another replica takes over when the record (holder and `renewTime`) has not changed for a whole
//!   Lease duration *as observed on its own clock* (no trust in clock agreement between nodes);
//! - writes carry the `resourceVersion` read, so of two replicas racing for a free Lease one wins and the
//!   other gets 409 Conflict;
//! - a replica that stops cleanly releases the Lease (empty holder), so the next takes over at its
//!   next try.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

/// One replica's side of the election.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The record last seen and when it was first seen as it is.
    observed: std::sync::Mutex<Option<(String, Instant)>>,
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: String,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
            duration,
            observed: std::sync::Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Try to acquire or renew the Lease once: whether this replica holds it now.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = format!(
            "{}@{:?}",
            holder.as_deref().unwrap_or_default(),
            spec.renew_time
        );
        let unchanged_for = {
            let mut observed = self
                .observed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match observed.as_ref() {
                Some((seen, since)) if *seen == record => since.elapsed(),
                _ => {
                    *observed = Some((record, Instant::now()));
                    Duration::ZERO
                }
            }
        };
        let transitions = spec.lease_transitions.unwrap_or(0);
        let next = match holder.as_deref() {
            Some(me) if me == self.identity => {
                self.spec(spec.acquire_time.unwrap_or(now.clone()), now, transitions)
            }
            Some(_) if unchanged_for < self.duration => return Ok(false),
            // Free, released, or its holder stopped renewing: take it.
            _ => self.spec(now.clone(), now, transitions.saturating_add(1)),
        };
        lease.spec = Some(next);
        conflict_is_false(
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await,
        )
    }

    fn spec(&self, acquired: MicroTime, renewed: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired),
            renew_time: Some(renewed),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Give the Lease up if this replica holds it (on a clean stop).
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(error) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(%error, "could not release the audit Lease");
        }
    }

    /// Keep trying every third of the Lease duration; `leader` says whether this replica holds it. A
    /// failure to reach the API counts as not holding it (another replica may have taken over).
    pub async fn keep_electing(&self, leader: watch::Sender<bool>) {
        let mut ticker = tokio::time::interval(self.duration / 3);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let holds = match self.try_hold().await {
                Ok(holds) => holds,
                Err(error) => {
                    tracing::warn!(%error, lease = %self.name, "audit Lease not reachable");
                    false
                }
            };
            leader.send_if_modified(|was| {
                if *was == holds {
                    return false;
                }
                *was = holds;
                tracing::info!(identity = %self.identity, leader = holds, "audit Lease");
                true
            });
        }
    }
}

/// A 409 Conflict (another replica wrote first) means "not held"; other errors are errors.
fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}
