//! `pullgate check`: the webhook's rules over manifest files, for CI.
//!
//! ```text
//! -f files, dirs, stdin -> input   (documents: YAML or JSON, with file, index and lines)
//!                       -> objects (workloads of every pod-template kind; pull Secrets, ServiceAccounts;
//!                                   List / <Kind>List opened; input errors)
//!                       -> engine  (engine::decide, as serve: same policies, resolution, messages;
//!                                   the resolver from wiring::check: credentials from the input
//!                                   and the local docker config, --cache-dir on disk;
//!                                   --offline: no resolver, the plan's registry rules skipped)
//!                       -> output  (text | json | junit | sarif | github) and the exit code
//! ```
//!
//! Exit codes: 0 no deny findings; 1 deny findings (or warnings with `--warnings-as-errors`); 2 usage
//! or input errors (a document that does not parse, a workload whose pod spec cannot be read, a file
//! that cannot be read) — input errors win over findings, since the check is incomplete.

mod input;
mod objects;
mod output;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::PathBuf;

use futures::StreamExt;

pub use input::{Input, STDIN_NAME, scan_images};
pub use objects::InputError;
pub use output::{
    ContainerReport, FileReport, Item, JSON_SCHEMA, ObjectReport, OutputFormat, Report, Summary,
    sarif_level, sarif_rules, summary_line, xml_text,
};

use crate::config::Settings;
use crate::credentials::ManifestCredentials;
use crate::engine::{self, Decision, Subject};
use crate::policy::{self, Finding, PolicyError, PolicySet};
use crate::resolve::Resolver;
use crate::wiring::{self, RegistryAccess};
use crate::workload::Workload;
use objects::{Entry, Manifests};

pub use crate::policy::BUILT_IN_POLICY;
/// How many workloads are checked at once (each resolves its images in parallel).
const CONCURRENCY: usize = 16;

/// Where the policies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// [`BUILT_IN_POLICY`].
    BuiltIn,
    /// Every policy file of a directory, as `serve --policies`.
    Dir(PathBuf),
}

/// Everything `check` runs with, validated.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub inputs: Vec<Input>,
    /// Read subdirectories of directories.
    pub recursive: bool,
    pub policies: PolicySource,
    pub settings: Settings,
    /// Namespace of objects that name none.
    pub namespace: String,
    /// How to reach registries; `None` is `--offline`.
    pub registry: Option<RegistryAccess>,
    pub output: OutputFormat,
    pub warnings_as_errors: bool,
    /// Documents that are not Kubernetes objects are skipped, not input errors.
    pub skip_non_kubernetes: bool,
}

/// How `check` ended; the process exit code is its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: no deny findings.
    Passed = 0,
    /// 1: deny findings (or warnings with `--warnings-as-errors`).
    Denied = 1,
    /// 2: usage or input errors.
    Error = 2,
}

impl Exit {
    /// Errors win (the run is incomplete), then findings that fail the run.
    pub fn of(errors: usize, failing: bool) -> Self {
        if errors > 0 {
            Self::Error
        } else if failing {
            Self::Denied
        } else {
            Self::Passed
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// The streams `check` reads and writes: the report goes to `stdout`, errors and notices to `stderr`.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// Load the configured policies.
pub fn load_policies(source: &PolicySource) -> Result<PolicySet, PolicyError> {
    match source {
        PolicySource::Dir(dir) => PolicySet::load(dir),
        PolicySource::BuiltIn => crate::policy::built_in(),
    }
}

/// Check every workload of the input and write the report; the exit code says how it went.
pub async fn run(config: CheckConfig, io: Io<'_>) -> Exit {
    let Io {
        stdin,
        stdout,
        stderr,
    } = io;
    let mut say = |message: String| {
        // Nothing more can be said if stderr itself is gone.
        let _ = writeln!(stderr, "pullgate check: {message}");
    };
    let policies = match load_policies(&config.policies) {
        Ok(policies) => policies,
        Err(error) => {
            say(format!("cannot load policies: {error}"));
            return Exit::Error;
        }
    };
    let sources = input::read_inputs(&config.inputs, config.recursive, stdin);
    let manifests = Manifests::collect(sources, &config.namespace, config.skip_non_kubernetes);
    let workloads: Vec<&objects::WorkloadEntry> = manifests
        .files
        .iter()
        .flat_map(|f| &f.entries)
        .filter_map(|entry| match entry {
            Entry::Workload(workload) => Some(&**workload),
            Entry::Error(_) => None,
        })
        .collect();

    let online = match &config.registry {
        None => None,
        Some(access) => {
            let list: Vec<&Workload> = workloads.iter().map(|w| &w.workload).collect();
            let registries = registries_to_ask(&list, &policies, &config.namespace);
            let credentials = ManifestCredentials::new(
                manifests.secrets.clone(),
                manifests.service_accounts.clone(),
            );
            // `check` exports no metrics: the parts record into a registry nobody reads.
            let mut unexported = prometheus_client::registry::Registry::default();
            match wiring::check(
                &config.settings,
                access,
                credentials,
                &registries,
                &mut unexported,
            )
            .await
            {
                Ok(online) => Some(online),
                Err(error) => {
                    say(error.to_string());
                    return Exit::Error;
                }
            }
        }
    };
    if let Some(online) = &online {
        for notice in &online.notices {
            say(notice.clone());
        }
    }
    let resolver = online.as_ref().map(|o| &o.resolver);
    let checked: Vec<Checked> = futures::stream::iter(&workloads)
        .map(|entry| {
            check(
                entry.workload.clone(),
                &config.namespace,
                &policies,
                resolver,
            )
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;

    let report = build_report(&manifests, checked, config.registry.is_none());
    if let Some(disk) = online.as_ref().and_then(|o| o.disk.as_ref()) {
        if let (_, Some(error)) = disk.write_summary() {
            say(format!(
                "cache directory: some answers could not be saved ({error})"
            ));
        }
    }
    if let Err(error) = report
        .render(config.output, stdout)
        .and_then(|()| stdout.flush())
    {
        say(format!("cannot write the report: {error}"));
        return Exit::Error;
    }
    let summary = report.summary();
    Exit::of(
        summary.errors,
        summary.denied > 0 || (config.warnings_as_errors && summary.warnings > 0),
    )
}

/// The registries the registry rules will ask, over every workload of the input.
fn registries_to_ask(
    workloads: &[&Workload],
    policies: &PolicySet,
    namespace: &str,
) -> BTreeSet<String> {
    let mut registries = BTreeSet::new();
    for workload in workloads {
        let subject = Subject::of_workload((*workload).clone(), namespace);
        let plan = policy::plan(&subject.facts, policies);
        for (container, plan) in subject.facts.containers.iter().zip(plan) {
            if let (true, Ok(image)) = (plan.need().resolve, &container.image) {
                registries.insert(image.registry().to_owned());
            }
        }
    }
    registries
}

/// What checking one workload found.
#[derive(Debug, Clone)]
struct Checked {
    /// The namespace the policies were scoped with.
    namespace: String,
    decision: Decision,
}

/// Check one workload with the webhook's engine.
async fn check(
    workload: Workload,
    namespace: &str,
    policies: &PolicySet,
    resolver: Option<&Resolver>,
) -> Checked {
    let subject = Subject::of_workload(workload, namespace);
    let decision = engine::decide(&subject, policies, resolver).await;
    Checked {
        namespace: subject.facts.namespace,
        decision,
    }
}

/// Put each workload's verdict next to its containers, in input order.
fn build_report(manifests: &Manifests, checked: Vec<Checked>, offline: bool) -> Report {
    let mut checked = checked.into_iter();
    let files = manifests
        .files
        .iter()
        .map(|file| FileReport {
            name: file.name.clone(),
            items: file
                .entries
                .iter()
                .filter_map(|entry| match entry {
                    Entry::Error(error) => Some(Item::Error(error.clone())),
                    Entry::Workload(entry) => {
                        let result = checked.next()?;
                        Some(Item::Object(object_report(entry, result)))
                    }
                })
                .collect(),
        })
        .collect();
    Report { files, offline }
}

fn object_report(entry: &objects::WorkloadEntry, checked: Checked) -> ObjectReport {
    let Checked {
        namespace,
        decision: Decision {
            verdict, skipped, ..
        },
    } = checked;
    // Findings come grouped by container, in container order: one pass hands each its own.
    let mut by_path: HashMap<String, Vec<Finding>> = HashMap::new();
    for finding in verdict.findings {
        by_path
            .entry(finding.image_path.clone())
            .or_default()
            .push(finding);
    }
    let containers = entry
        .workload
        .containers()
        .into_iter()
        .zip(&entry.image_lines)
        .zip(skipped)
        .map(|((container, line), skipped)| ContainerReport {
            findings: by_path.remove(&container.image_path).unwrap_or_default(),
            name: container.name,
            image: container.image,
            image_path: container.image_path,
            line: *line,
            skipped,
        })
        .collect();
    ObjectReport {
        document: entry.document,
        line: entry.line,
        kind: entry.workload.kind,
        namespace,
        name: entry.workload.name.clone(),
        containers,
    }
}
