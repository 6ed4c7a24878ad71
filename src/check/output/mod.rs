//! What `check` found, as plain data ([`Report`]), and its renderings: `text` for people, `json` (a
//! stable schema, `pullgate.dev/check/v1`), `junit` and `sarif` for CI systems, `github` annotations.
//! Every format carries the same findings, skipped registry checks and input errors.

mod junit;
mod sarif;

pub use junit::xml as xml_text;
pub use sarif::{level as sarif_level, rules as sarif_rules};
mod text;

use std::io::{self, Write};

use serde::Serialize;

use super::objects::InputError;
use crate::policy::{Action, Finding, RuleId};
use crate::workload::WorkloadKind;

/// The schema of `--output json` (and of this report's JSON rendering).
pub const JSON_SCHEMA: &str = "pullgate.dev/check/v1";

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One line per finding, grouped by file and object, then a summary line.
    Text,
    /// One JSON document: summary, findings, errors.
    Json,
    /// JUnit XML: one test case per container, failures for deny findings.
    Junit,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`).
    Github,
}

/// Everything found, in input order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: Vec<FileReport>,
    /// Registry rules were not run (`--offline`).
    pub offline: bool,
}

/// One input file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// As given (joined with directory entries), or `<stdin>`.
    pub name: String,
    pub items: Vec<Item>,
}

/// A checked workload or an input error, in document order.
#[derive(Debug, Clone)]
pub enum Item {
    Object(ObjectReport),
    Error(InputError),
}

/// One checked workload.
#[derive(Debug, Clone)]
pub struct ObjectReport {
    pub document: usize,
    pub line: usize,
    pub kind: WorkloadKind,
    /// The namespace policies were scoped with (the object's, else `--namespace`).
    pub namespace: String,
    pub name: String,
    pub containers: Vec<ContainerReport>,
}

/// One container of a checked workload.
#[derive(Debug, Clone)]
pub struct ContainerReport {
    pub name: String,
    pub image: String,
    pub image_path: String,
    /// Line of its `image:` field, when found.
    pub line: Option<usize>,
    pub findings: Vec<Finding>,
    /// Registry rules that would have run (`--offline`).
    pub skipped: Vec<RuleId>,
}

impl ContainerReport {
    fn with_action(&self, action: Action) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.action == action)
    }
}

/// Counts over the whole report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Files (and standard input) read.
    pub files: usize,
    /// Workloads checked.
    pub objects: usize,
    /// Container images checked (one per container).
    pub images: usize,
    /// Deny findings.
    pub denied: usize,
    /// Warn findings.
    pub warnings: usize,
    /// Registry rules not run on a container (`--offline`).
    pub skipped: usize,
    /// Input errors.
    pub errors: usize,
}

impl Report {
    /// Every checked workload with its file.
    pub fn objects(&self) -> impl Iterator<Item = (&FileReport, &ObjectReport)> {
        self.files.iter().flat_map(|file| {
            file.items.iter().filter_map(move |item| match item {
                Item::Object(object) => Some((file, object)),
                Item::Error(_) => None,
            })
        })
    }

    /// Every input error with its file.
    pub fn errors(&self) -> impl Iterator<Item = (&FileReport, &InputError)> {
        self.files.iter().flat_map(|file| {
            file.items.iter().filter_map(move |item| match item {
                Item::Error(error) => Some((file, error)),
                Item::Object(_) => None,
            })
        })
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            files: self.files.len(),
            errors: self.errors().count(),
            ..Summary::default()
        };
        for (_, object) in self.objects() {
            summary.objects += 1;
            summary.images += object.containers.len();
            for container in &object.containers {
                summary.denied += container.with_action(Action::Deny).count();
                summary.warnings += container.with_action(Action::Warn).count();
                summary.skipped += container.skipped.len();
            }
        }
        summary
    }

    /// Write the report in `format`.
    pub fn render(&self, format: OutputFormat, out: &mut dyn Write) -> io::Result<()> {
        match format {
            OutputFormat::Text => text::text(self, out),
            OutputFormat::Github => text::github(self, out),
            OutputFormat::Json => self.json(out),
            OutputFormat::Junit => junit::junit(self, out),
            OutputFormat::Sarif => sarif::sarif(self, out),
        }
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut findings = Vec::new();
        for (file, object) in self.objects() {
            for container in &object.containers {
                let record = |rule: RuleId, action: &'static str, message: String, fix: String| {
                    JsonFinding {
                        file: &file.name,
                        line: container.line.unwrap_or(object.line),
                        document: object.document,
                        kind: object.kind.as_str(),
                        namespace: &object.namespace,
                        name: &object.name,
                        container: &container.name,
                        image: &container.image,
                        image_path: &container.image_path,
                        rule: rule.as_str(),
                        action,
                        message,
                        fix,
                    }
                };
                for finding in &container.findings {
                    let action = match finding.action {
                        Action::Deny => "deny",
                        Action::Warn => "warn",
                        Action::Off => continue,
                    };
                    findings.push(record(
                        finding.rule,
                        action,
                        finding.message.clone(),
                        finding.fix.clone(),
                    ));
                }
                for rule in &container.skipped {
                    findings.push(record(
                        *rule,
                        "skipped",
                        SKIPPED_MESSAGE.into(),
                        SKIPPED_FIX.into(),
                    ));
                }
            }
        }
        let errors = self
            .errors()
            .map(|(file, error)| JsonError {
                file: &file.name,
                document: error.document,
                line: error.line,
                message: &error.message,
            })
            .collect();
        let document = JsonReport {
            api_version: JSON_SCHEMA,
            summary: self.summary(),
            findings,
            errors,
        };
        serde_json::to_writer_pretty(&mut *out, &document)?;
        writeln!(out)
    }
}

/// What a skipped registry rule says, in every format.
pub const SKIPPED_MESSAGE: &str = "not checked: --offline (this rule asks the image's registry)";
pub const SKIPPED_FIX: &str = "run without --offline to check it";

/// `--output json`, field order as documented.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    api_version: &'static str,
    summary: Summary,
    findings: Vec<JsonFinding<'a>>,
    errors: Vec<JsonError<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonFinding<'a> {
    file: &'a str,
    line: usize,
    document: usize,
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    container: &'a str,
    image: &'a str,
    image_path: &'a str,
    rule: &'static str,
    action: &'static str,
    message: String,
    fix: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonError<'a> {
    file: &'a str,
    document: Option<usize>,
    line: Option<usize>,
    message: &'a str,
}

/// The one-line summary: `N objects, N images: N denied, N warnings`, then skipped checks and input
/// errors when there are any.
pub fn summary_line(report: &Report) -> String {
    let s = report.summary();
    let mut line = format!(
        "{} objects, {} images: {} denied, {} warnings",
        s.objects, s.images, s.denied, s.warnings
    );
    if report.offline {
        line.push_str(&format!(
            ", {} registry checks skipped (--offline)",
            s.skipped
        ));
    }
    if s.errors > 0 {
        line.push_str(&format!("; {} input errors", s.errors));
    }
    line
}

/// `container "app" (image nginx): [image-exists, platform-supported] not checked (--offline): ...`
fn skipped_line(container: &ContainerReport) -> String {
    let rules: Vec<&str> = container.skipped.iter().map(|r| r.as_str()).collect();
    format!(
        "{} {:?} (image {}): [{}] not checked (--offline): these rules ask the image's registry",
        crate::policy::image_noun(&container.image_path),
        container.name,
        container.image,
        rules.join(", "),
    )
}

/// `Deployment demo/web`
fn object_title(object: &ObjectReport) -> String {
    format!("{} {}/{}", object.kind, object.namespace, object.name)
}

/// `document 3: message`, or the message alone for a file-level error.
fn error_text(error: &InputError) -> String {
    match error.document {
        Some(document) => format!("document {document}: {}", error.message),
        None => error.message.clone(),
    }
}
