//! `pullgate audit`: what in a live cluster would fail to pull now.
//!
//! ```text
//! kubeconfig -> cluster (every workload kind, paginated; owner-collapsed; finished Pods and Jobs left
//!                        out; the nodes' platforms)
//!            -> engine  (engine::decide, as serve: pull secrets and ServiceAccounts through the API,
//!                        node credentials and providers from the settings; registry rules, and the
//!                        static rules with --policy-rules; each registry asked at most
//!                        --max-requests-per-registry times, never again after a 429 or 5xx)
//!            -> report  (text grouped by namespace and workload | json | junit | sarif) and the exit code
//! ```
//!
//! Each distinct (image, credential) is looked up once: the engine's caches key on exactly that (and
//! an image's platforms on its digest), and concurrent lookups of one key share one request. Exit codes:
//! 0 nothing would fail, 1 deny findings, 2 usage errors or a cluster that could not be read (also
//! when one kind could not be listed: the audit is then incomplete).

mod cluster;
pub mod continuous;
pub mod lease;
mod report;
pub mod status;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;

pub use cluster::{KINDS, PAGE_SIZE, Scope, node_platforms};
pub use report::{AuditFormat, AuditReport, Summary, WorkloadReport};

use crate::check::{Exit, PolicySource, load_policies};
use crate::config::Settings;
use crate::engine::{self, Subject};
use crate::policy::{PolicySet, RuleId};
use crate::registry::budget::RequestBudget;
use crate::registry::net::Loopback;
use crate::resolve::Resolver;
use crate::wiring;
use crate::workload::Workload;
use cluster::Listed;

/// Requests per registry when `--max-requests-per-registry` is not given.
pub const DEFAULT_MAX_REQUESTS: u32 = 1000;
/// Requests to Docker Hub when `--max-requests-per-registry` is not given: its pull quota is shared by
/// every node behind the cluster's egress address.
pub const DEFAULT_MAX_REQUESTS_DOCKER_HUB: u32 = 100;
/// Workloads decided at once (each resolves its images in parallel, within per-registry limits).
const CONCURRENCY: usize = 16;

/// Everything `audit` runs with, validated.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// kubeconfig file; default: KUBECONFIG / ~/.kube/config, else the in-cluster config.
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context; default: the current one.
    pub context: Option<String>,
    pub scope: Scope,
    /// Label selector (`app=web,tier!=cache`).
    pub selector: Option<String>,
    pub policies: PolicySource,
    /// Report the static rules too (tag-not-latest, registry-allowed, …); else only what stops a pull.
    pub policy_rules: bool,
    pub settings: Settings,
    pub output: AuditFormat,
    /// Per-registry request cap; `None`: [`DEFAULT_MAX_REQUESTS`], Docker Hub
    /// [`DEFAULT_MAX_REQUESTS_DOCKER_HUB`].
    pub max_requests_per_registry: Option<u32>,
    /// A progress bar on standard error when it is a terminal.
    pub progress: bool,
}

/// The streams `audit` writes: the report to `stdout`, errors, notices and progress to `stderr`.
pub struct Io<'a> {
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// The request budget of the flags.
fn request_budget(max: Option<u32>) -> RequestBudget {
    match max {
        Some(max) => RequestBudget::new(max, BTreeMap::new()),
        None => RequestBudget::new(
            DEFAULT_MAX_REQUESTS,
            BTreeMap::from([("docker.io".to_owned(), DEFAULT_MAX_REQUESTS_DOCKER_HUB)]),
        ),
    }
}

/// A client for the kubeconfig and context given (else the usual lookup, then in-cluster).
pub async fn connect(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<kube::Client, String> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {}", path.display(), cause(&e)))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| format!("unusable kubeconfig {}: {}", path.display(), cause(&e)))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("unusable kubeconfig: {e}"))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes API found (give --kubeconfig): {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| format!("cannot build the Kubernetes client: {e}"))
}

/// The innermost cause of an error (kubeconfig errors repeat the path in their outer layers).
fn cause(error: &dyn std::error::Error) -> String {
    let mut inner = error;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// Audit the cluster and write the report; the exit code says how it went.
pub async fn run(config: AuditConfig, io: Io<'_>) -> Exit {
    let Io { stdout, stderr } = io;
    let mut say = |message: String| {
        // Nothing more can be said if stderr itself is gone.
        let _ = writeln!(stderr, "pullgate audit: {message}");
    };
    let policies = match load_policies(&config.policies) {
        Ok(policies) => policies,
        Err(error) => {
            say(format!("cannot load policies: {error}"));
            return Exit::Error;
        }
    };
    let client = match connect(config.kubeconfig.as_deref(), config.context.as_deref()).await {
        Ok(client) => client,
        Err(error) => {
            say(error);
            return Exit::Error;
        }
    };
    let listing = cluster::list(&client, &config.scope, config.selector.as_deref()).await;
    let budget = Arc::new(request_budget(config.max_requests_per_registry));
    // The audit exports no metrics: the parts record into a registry nobody reads.
    let mut unexported = prometheus_client::registry::Registry::default();
    let wired = match wiring::audit(
        &config.settings,
        client.clone(),
        budget.clone(),
        Loopback::Allowed,
        &mut unexported,
    ) {
        Ok(wired) => wired,
        Err(error) => {
            say(error.to_string());
            return Exit::Error;
        }
    };
    match node_platforms(client).await {
        Ok((platforms, builds)) => wired.updates.set_nodes(platforms, builds),
        Err(error) => say(format!(
            "cannot list nodes ({}): unconstrained pods are checked against the settings' nodePlatforms",
            cluster::describe(&error)
        )),
    }

    let mut report = AuditReport::default();
    let mut workloads = Vec::new();
    for item in listing.items {
        match item {
            Listed::Workload(workload) => workloads.push(*workload),
            Listed::Unreadable {
                kind,
                namespace,
                name,
                reason,
            } => report
                .errors
                .push(format!("{kind} {namespace}/{name}: {reason}")),
        }
    }
    report
        .errors
        .extend(listing.errors.iter().map(ToString::to_string));
    let progress = progress_bar(config.progress, workloads.len());
    report.workloads = futures::stream::iter(workloads)
        .map(|workload| {
            let progress = progress.clone();
            let (policies, resolver) = (&policies, &wired.resolver);
            async move {
                let decided = audit_one(workload, policies, resolver, config.policy_rules).await;
                if let Some(bar) = progress {
                    bar.inc(1);
                }
                decided
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    report.sort();
    report.read = listing.read;
    report.collapsed = listing.collapsed;
    report.finished = listing.finished;
    report.registry_requests = budget.spent();

    if let Err(error) = report
        .render(config.output, stdout)
        .and_then(|()| stdout.flush())
    {
        say(format!("cannot write the report: {error}"));
        return Exit::Error;
    }
    let summary = report.summary();
    Exit::of(summary.errors, summary.denied > 0)
}

/// A progress bar on standard error, when asked for and standard error is a terminal.
fn progress_bar(wanted: bool, total: usize) -> Option<indicatif::ProgressBar> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(u64::MAX));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} auditing {pos}/{len} workloads [{bar:30}] {elapsed}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

/// Decide one workload with the webhook's engine, keeping what the audit reports.
async fn audit_one(
    workload: Workload,
    policies: &PolicySet,
    resolver: &Resolver,
    policy_rules: bool,
) -> WorkloadReport {
    let (kind, name) = (workload.kind, workload.name.clone());
    let subject = Subject::of_workload(workload, "default");
    let images = subject.facts.containers.len();
    let decision = engine::decide(&subject, policies, Some(resolver)).await;
    let findings = decision
        .verdict
        .findings
        .into_iter()
        .filter(|f| policy_rules || stops_a_pull(f.rule))
        .collect();
    WorkloadReport {
        kind,
        namespace: subject.facts.namespace,
        name,
        images,
        findings,
    }
}

/// The rules whose findings mean the image would not pull (or could not be checked): the registry rules
/// and an invalid reference.
fn stops_a_pull(rule: RuleId) -> bool {
    rule.needs_registry() || rule == RuleId::ImageReferenceValid
}
