//! `--output junit`: one `<testsuite>` per file, one `<testcase>` per container of each workload (per
//! workload when it has none); deny findings are `<failure>`s, input errors `<error>`s, registry checks
//! not run (`--offline`) `<skipped>`, warnings go to `<system-out>`.

use std::io::{self, Write};

use super::{
    ContainerReport, FileReport, Item, ObjectReport, Report, error_text, object_title, skipped_line,
};
use crate::policy::Action;

/// Text safe in XML content and attribute values: markup escaped, characters XML 1.0 forbids dropped.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// What one test case says.
enum Outcome {
    Passed,
    Failed { message: String, details: String },
    Errored { message: String },
    Skipped { message: String },
}

struct Case {
    name: String,
    line: Option<usize>,
    outcome: Outcome,
    system_out: String,
}

fn container_case(file: &FileReport, object: &ObjectReport, container: &ContainerReport) -> Case {
    let line = container.line.unwrap_or(object.line);
    let at = format!("{}:{line}", file.name);
    let denied: Vec<String> = container
        .with_action(Action::Deny)
        .map(|f| format!("{at}: deny {}", f.deny_line()))
        .collect();
    let warned: Vec<String> = container
        .with_action(Action::Warn)
        .map(|f| format!("{at}: warn {}", f.deny_line()))
        .collect();
    let outcome = if let Some(first) = container.with_action(Action::Deny).next() {
        let more = denied.len() - 1;
        let mut message = format!("[{}] {}", first.rule, first.message);
        if more > 0 {
            message.push_str(&format!(" (and {more} more)"));
        }
        Outcome::Failed {
            message,
            details: denied.join("\n"),
        }
    } else if !container.skipped.is_empty() {
        Outcome::Skipped {
            message: skipped_line(container),
        }
    } else {
        Outcome::Passed
    };
    Case {
        name: format!("{}: container {}", object_title(object), container.name),
        line: Some(line),
        outcome,
        system_out: warned.join("\n"),
    }
}

fn cases(file: &FileReport) -> Vec<Case> {
    let mut cases = Vec::new();
    for item in &file.items {
        match item {
            Item::Object(object) if object.containers.is_empty() => cases.push(Case {
                name: object_title(object),
                line: Some(object.line),
                outcome: Outcome::Passed,
                system_out: String::new(),
            }),
            Item::Object(object) => cases.extend(
                object
                    .containers
                    .iter()
                    .map(|c| container_case(file, object, c)),
            ),
            Item::Error(error) => cases.push(Case {
                name: match error.document {
                    Some(document) => format!("document {document}"),
                    None => "read".to_owned(),
                },
                line: error.line,
                outcome: Outcome::Errored {
                    message: error_text(error),
                },
                system_out: String::new(),
            }),
        }
    }
    cases
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

impl Counts {
    fn of(cases: &[Case]) -> Self {
        let mut counts = Self {
            tests: cases.len(),
            ..Self::default()
        };
        for case in cases {
            match case.outcome {
                Outcome::Failed { .. } => counts.failures += 1,
                Outcome::Errored { .. } => counts.errors += 1,
                Outcome::Skipped { .. } => counts.skipped += 1,
                Outcome::Passed => {}
            }
        }
        counts
    }

    fn add(self, other: Self) -> Self {
        Self {
            tests: self.tests + other.tests,
            failures: self.failures + other.failures,
            errors: self.errors + other.errors,
            skipped: self.skipped + other.skipped,
        }
    }

    fn attributes(self) -> String {
        format!(
            "tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\"",
            self.tests, self.failures, self.errors, self.skipped
        )
    }
}

pub fn junit(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let suites: Vec<(&FileReport, Vec<Case>)> = report
        .files
        .iter()
        .map(|file| (file, cases(file)))
        .filter(|(_, cases)| !cases.is_empty())
        .collect();
    let total = suites.iter().fold(Counts::default(), |sum, (_, cases)| {
        sum.add(Counts::of(cases))
    });
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="pullgate check" {}>"#,
        total.attributes()
    )?;
    for (file, cases) in &suites {
        let name = xml(&file.name);
        writeln!(
            out,
            r#"  <testsuite name="{name}" {}>"#,
            Counts::of(cases).attributes()
        )?;
        for case in cases {
            let line = case
                .line
                .map(|l| format!(r#" line="{l}""#))
                .unwrap_or_default();
            write!(
                out,
                r#"    <testcase name="{}" classname="{name}" file="{name}"{line}"#,
                xml(&case.name)
            )?;
            if matches!(case.outcome, Outcome::Passed) && case.system_out.is_empty() {
                writeln!(out, "/>")?;
                continue;
            }
            writeln!(out, ">")?;
            match &case.outcome {
                Outcome::Passed => {}
                Outcome::Failed { message, details } => writeln!(
                    out,
                    r#"      <failure type="deny" message="{}">{}</failure>"#,
                    xml(message),
                    xml(details)
                )?,
                Outcome::Errored { message } => writeln!(
                    out,
                    r#"      <error type="input" message="{}"/>"#,
                    xml(message)
                )?,
                Outcome::Skipped { message } => {
                    writeln!(out, r#"      <skipped message="{}"/>"#, xml(message))?
                }
            }
            if !case.system_out.is_empty() {
                writeln!(
                    out,
                    "      <system-out>{}</system-out>",
                    xml(&case.system_out)
                )?;
            }
            writeln!(out, "    </testcase>")?;
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped_and_forbidden_characters_dropped() {
        assert_eq!(xml("a<b>&\"c'\u{1}\nd"), "a&lt;b&gt;&amp;&quot;c&apos;\nd");
    }
}
