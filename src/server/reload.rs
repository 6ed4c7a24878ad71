//! Policies that change on disk: [`PolicyStore`] holds the set in force (the last good one when a change is
//! invalid, which turns `/readyz` red) and [`watch`] re-reads the directory periodically.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::metrics::Metrics;
use crate::policy::{PolicySet, load_dir};

/// The loaded policies, the last good set kept when a change is invalid.
#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    state: RwLock<PolicyState>,
}

#[derive(Debug)]
struct PolicyState {
    current: Arc<PolicySet>,
    /// The error of the newest version on disk, when it is invalid.
    error: Option<String>,
    /// Contents of the files the current state was built from, to notice changes.
    fingerprint: Vec<(PathBuf, Vec<u8>)>,
}

/// The policy files' names and contents, in order.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    crate::policy::policy_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let contents = std::fs::read(&f).unwrap_or_default();
            (f, contents)
        })
        .collect()
}

impl PolicyStore {
    /// Load the directory; an invalid set is an error here (start-up refuses to serve it).
    pub fn load(dir: &Path) -> Result<Self, crate::policy::PolicyError> {
        let print = fingerprint(dir);
        let loaded = load_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            state: RwLock::new(PolicyState {
                current: Arc::new(PolicySet::from_loaded(&loaded)),
                error: None,
                fingerprint: print,
            }),
        })
    }

    /// A store holding the given set, for tests and embedding.
    pub fn fixed(set: PolicySet) -> Self {
        Self {
            dir: PathBuf::new(),
            state: RwLock::new(PolicyState {
                current: Arc::new(set),
                error: None,
                fingerprint: Vec::new(),
            }),
        }
    }

    /// The policies in force.
    pub fn current(&self) -> Arc<PolicySet> {
        match self.state.read() {
            Ok(state) => state.current.clone(),
            Err(poisoned) => poisoned.into_inner().current.clone(),
        }
    }

    /// `None` when the files on disk are in force; otherwise why the newest version was refused.
    pub fn error(&self) -> Option<String> {
        match self.state.read() {
            Ok(state) => state.error.clone(),
            Err(poisoned) => poisoned.into_inner().error.clone(),
        }
    }

    /// Re-read the directory if any file changed. A valid change replaces the set; an invalid one keeps the
    /// last good set and records the error (so `/readyz` turns red).
    /// `None` when nothing changed, else whether the change was accepted.
    pub fn reload_if_changed(&self) -> Option<bool> {
        let print = fingerprint(&self.dir);
        let mut state = match self.state.write() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.fingerprint == print {
            return None;
        }
        state.fingerprint = print;
        match load_dir(&self.dir) {
            Ok(loaded) => {
                let set = PolicySet::from_loaded(&loaded);
                tracing::info!(policies = ?set.names(), "policies reloaded");
                state.current = Arc::new(set);
                state.error = None;
                Some(true)
            }
            Err(error) => {
                tracing::error!(%error, "policy change refused; keeping the last valid policies");
                state.error = Some(error.to_string());
                Some(false)
            }
        }
    }
}

/// Re-read the policy directory every `interval` until the task is dropped, counting reloads.
pub async fn watch(policies: Arc<PolicyStore>, interval: Duration, metrics: Arc<Metrics>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let store = policies.clone();
        // Reading files blocks: keep it off the request threads.
        match tokio::task::spawn_blocking(move || store.reload_if_changed()).await {
            Ok(Some(ok)) => metrics.reload("policies", ok),
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "policy reload task failed"),
        }
    }
}
