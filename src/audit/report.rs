//! What `audit` found, as plain data ([`AuditReport`]), and its renderings: `text` grouped by namespace
//! and workload, `json` (schema `pullgate.dev/audit/v1`), `junit` (a test suite per namespace, a test
//! case per workload) and `sarif` (results at logical locations `Kind/namespace/name/container`). Every
//! format carries the same findings and errors; messages are the webhook's.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Value, json};

use crate::check::{sarif_level, sarif_rules, xml_text};
use crate::policy::{Action, Finding, RuleId};
use crate::workload::WorkloadKind;

/// The schema of `--output json`.
pub const JSON_SCHEMA: &str = "pullgate.dev/audit/v1";

/// `audit --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// Findings grouped by namespace and workload, then a summary.
    Text,
    /// One JSON document: summary, findings, errors, registry requests.
    Json,
    /// JUnit XML: a test suite per namespace, a test case per workload, failures for deny findings.
    Junit,
    /// SARIF 2.1.0.
    Sarif,
}

/// One audited workload.
#[derive(Debug, Clone)]
pub struct WorkloadReport {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// Containers, init and ephemeral containers and image volumes checked.
    pub images: usize,
    pub findings: Vec<Finding>,
}

/// Everything the audit found.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    /// By namespace, kind (owners first) and name.
    pub workloads: Vec<WorkloadReport>,
    /// Kinds that could not be listed, objects that could not be read.
    pub errors: Vec<String>,
    /// Objects listed.
    pub read: usize,
    /// Objects left out because an audited workload controls them.
    pub collapsed: usize,
    /// Finished Pods and Jobs left out.
    pub finished: usize,
    /// Requests sent to each registry.
    pub registry_requests: BTreeMap<String, u32>,
}

/// Counts over the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub workloads: usize,
    pub images: usize,
    pub denied: usize,
    pub warnings: usize,
    pub errors: usize,
    pub objects_read: usize,
    pub owned_by_audited: usize,
    pub finished: usize,
}

fn kind_rank(kind: WorkloadKind) -> usize {
    super::KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
}

fn shown(finding: &Finding) -> Option<&'static str> {
    match finding.action {
        Action::Deny => Some("deny"),
        Action::Warn => Some("warn"),
        Action::Off => None,
    }
}

impl AuditReport {
    /// Order workloads by namespace, kind (owners first) and name.
    pub fn sort(&mut self) {
        self.workloads.sort_by(|a, b| {
            (&a.namespace, kind_rank(a.kind), &a.name).cmp(&(
                &b.namespace,
                kind_rank(b.kind),
                &b.name,
            ))
        });
    }

    pub fn summary(&self) -> Summary {
        let count = |action: Action| {
            self.workloads
                .iter()
                .flat_map(|w| &w.findings)
                .filter(|f| f.action == action)
                .count()
        };
        Summary {
            workloads: self.workloads.len(),
            images: self.workloads.iter().map(|w| w.images).sum(),
            denied: count(Action::Deny),
            warnings: count(Action::Warn),
            errors: self.errors.len(),
            objects_read: self.read,
            owned_by_audited: self.collapsed,
            finished: self.finished,
        }
    }

    /// Write the report in `format`.
    pub fn render(&self, format: AuditFormat, out: &mut dyn Write) -> io::Result<()> {
        match format {
            AuditFormat::Text => self.text(out),
            AuditFormat::Json => self.json(out),
            AuditFormat::Junit => self.junit(out),
            AuditFormat::Sarif => self.sarif(out),
        }
    }

    /// `12 workloads (40 objects read, 28 owned by an audited workload, 0 finished), 15 images: 3 denied, 1 warning`
    pub fn summary_line(&self) -> String {
        let s = self.summary();
        let mut line = format!(
            "{} workloads ({} objects read, {} owned by an audited workload, {} finished), {} images: {} denied, {} warnings",
            s.workloads,
            s.objects_read,
            s.owned_by_audited,
            s.finished,
            s.images,
            s.denied,
            s.warnings
        );
        if s.errors > 0 {
            line.push_str(&format!("; {} errors: the audit is incomplete", s.errors));
        }
        line
    }

    /// ```text
    /// namespace demo
    ///   Deployment web
    ///     deny container "app" (image …): [image-exists] … — …
    ///
    /// error: cannot list cronjobs: …
    /// 3 workloads (…), 4 images: 1 denied, 0 warnings
    /// registry requests: 127.0.0.1:5000 7
    /// ```
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut namespace: Option<&str> = None;
        for workload in self.workloads.iter().filter(|w| !w.findings.is_empty()) {
            if namespace != Some(&workload.namespace) {
                if namespace.is_some() {
                    writeln!(out)?;
                }
                writeln!(out, "namespace {}", workload.namespace)?;
                namespace = Some(&workload.namespace);
            }
            writeln!(out, "  {} {}", workload.kind, workload.name)?;
            for finding in &workload.findings {
                if let Some(action) = shown(finding) {
                    writeln!(out, "    {action} {}", finding.deny_line())?;
                }
            }
        }
        if namespace.is_some() {
            writeln!(out)?;
        }
        for error in &self.errors {
            writeln!(out, "error: {error}")?;
        }
        writeln!(out, "{}", self.summary_line())?;
        if !self.registry_requests.is_empty() {
            let each: Vec<String> = self
                .registry_requests
                .iter()
                .map(|(registry, n)| format!("{registry} {n}"))
                .collect();
            writeln!(out, "registry requests: {}", each.join(", "))?;
        }
        Ok(())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        let findings: Vec<JsonFinding<'_>> = self
            .workloads
            .iter()
            .flat_map(|w| w.findings.iter().map(move |f| (w, f)))
            .filter_map(|(w, f)| {
                Some(JsonFinding {
                    kind: w.kind.as_str(),
                    namespace: &w.namespace,
                    name: &w.name,
                    container: &f.container,
                    image: &f.image,
                    image_path: &f.image_path,
                    rule: f.rule.as_str(),
                    action: shown(f)?,
                    message: &f.message,
                    fix: &f.fix,
                })
            })
            .collect();
        let document = JsonReport {
            api_version: JSON_SCHEMA,
            summary: self.summary(),
            findings,
            errors: &self.errors,
            registry_requests: &self.registry_requests,
        };
        serde_json::to_writer_pretty(&mut *out, &document)?;
        writeln!(out)
    }

    fn junit(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = self.summary();
        writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(
            out,
            r#"<testsuites name="pullgate audit" tests="{}" failures="{}" errors="{}">"#,
            s.workloads + s.errors,
            self.workloads
                .iter()
                .filter(|w| w.findings.iter().any(|f| f.action == Action::Deny))
                .count(),
            s.errors
        )?;
        let mut namespaces: BTreeMap<&str, Vec<&WorkloadReport>> = BTreeMap::new();
        for workload in &self.workloads {
            namespaces
                .entry(&workload.namespace)
                .or_default()
                .push(workload);
        }
        for (namespace, workloads) in namespaces {
            let failures = workloads
                .iter()
                .filter(|w| w.findings.iter().any(|f| f.action == Action::Deny))
                .count();
            writeln!(
                out,
                r#"  <testsuite name="{}" tests="{}" failures="{failures}" errors="0">"#,
                xml_text(namespace),
                workloads.len()
            )?;
            for workload in workloads {
                junit_case(workload, out)?;
            }
            writeln!(out, "  </testsuite>")?;
        }
        if !self.errors.is_empty() {
            writeln!(
                out,
                r#"  <testsuite name="pullgate audit errors" tests="{0}" failures="0" errors="{0}">"#,
                self.errors.len()
            )?;
            for error in &self.errors {
                let text = xml_text(error);
                writeln!(
                    out,
                    r#"    <testcase name="{text}" classname="pullgate.audit"><error message="{text}"/></testcase>"#
                )?;
            }
            writeln!(out, "  </testsuite>")?;
        }
        writeln!(out, "</testsuites>")
    }

    fn sarif(&self, out: &mut dyn Write) -> io::Result<()> {
        let index = |rule: RuleId| RuleId::ALL.iter().position(|r| *r == rule).unwrap_or(0);
        let results: Vec<Value> = self
            .workloads
            .iter()
            .flat_map(|w| w.findings.iter().map(move |f| (w, f)))
            .filter(|(_, f)| f.action != Action::Off)
            .map(|(w, f)| {
                json!({
                    "ruleId": f.rule.as_str(),
                    "ruleIndex": index(f.rule),
                    "level": sarif_level(f.action),
                    "message": {"text": format!("{} {}/{}: {}", w.kind, w.namespace, w.name, f.deny_line())},
                    "locations": [{"logicalLocations": [{
                        "fullyQualifiedName": format!("{}/{}/{}/{}", w.kind, w.namespace, w.name, f.container),
                        "kind": "object",
                    }]}],
                    "properties": {"image": f.image, "imagePath": f.image_path, "fix": f.fix},
                })
            })
            .collect();
        let notifications: Vec<Value> = self
            .errors
            .iter()
            .map(|e| json!({"level": "error", "message": {"text": e}}))
            .collect();
        let log = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "pullgate",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://pullgate.dev",
                    "rules": sarif_rules(),
                }},
                "invocations": [{
                    "executionSuccessful": self.errors.is_empty(),
                    "toolExecutionNotifications": notifications,
                }],
                "results": results,
                "properties": {"summary": self.summary()},
            }],
        });
        serde_json::to_writer_pretty(&mut *out, &log)?;
        writeln!(out)
    }
}

fn junit_case(workload: &WorkloadReport, out: &mut dyn Write) -> io::Result<()> {
    let name = xml_text(&format!("{} {}", workload.kind, workload.name));
    let classname = xml_text(&format!("{}.{}", workload.namespace, workload.kind));
    writeln!(
        out,
        r#"    <testcase name="{name}" classname="{classname}">"#
    )?;
    let lines = |action: Action| -> Vec<String> {
        workload
            .findings
            .iter()
            .filter(|f| f.action == action)
            .map(Finding::deny_line)
            .collect()
    };
    let (denied, warned) = (lines(Action::Deny), lines(Action::Warn));
    if let Some(first) = denied.first() {
        writeln!(
            out,
            r#"      <failure message="{}">{}</failure>"#,
            xml_text(first),
            xml_text(&denied.join("\n"))
        )?;
    }
    if !warned.is_empty() {
        writeln!(
            out,
            "      <system-out>{}</system-out>",
            xml_text(&warned.join("\n"))
        )?;
    }
    writeln!(out, "    </testcase>")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    api_version: &'static str,
    summary: Summary,
    findings: Vec<JsonFinding<'a>>,
    errors: &'a [String],
    registry_requests: &'a BTreeMap<String, u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonFinding<'a> {
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    container: &'a str,
    image: &'a str,
    image_path: &'a str,
    rule: &'static str,
    action: &'static str,
    message: &'a str,
    fix: &'a str,
}
