//! `--output text` (for people) and `--output github` (GitHub Actions workflow commands).

use std::io::{self, Write};

use super::{
    ContainerReport, FileReport, Item, ObjectReport, Report, error_text, object_title,
    skipped_line, summary_line,
};
use crate::policy::{Action, Finding};

/// Whether an object has anything to show.
fn has_output(object: &ObjectReport) -> bool {
    object
        .containers
        .iter()
        .any(|c| !c.findings.is_empty() || !c.skipped.is_empty())
}

fn location(file: &FileReport, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", file.name),
        None => file.name.clone(),
    }
}

fn container_line(object: &ObjectReport, container: &ContainerReport) -> usize {
    container.line.unwrap_or(object.line)
}

/// The finding as a denial line (`container "app" (image …): [rule] cause — fix`), whatever its action.
fn finding_line(finding: &Finding) -> String {
    finding.deny_line()
}

/// ```text
/// deploy/web.yaml
///   Deployment demo/web (document 1, line 1)
///     deploy/web.yaml:18: deny container "app" (image nginx:latest): [tag-not-latest] … — …
///   deploy/web.yaml:40: error: document 3: not valid YAML: …
///
/// 3 objects, 4 images: 1 denied, 0 warnings
/// ```
pub fn text(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    for file in &report.files {
        let shown = file.items.iter().any(|item| match item {
            Item::Object(object) => has_output(object),
            Item::Error(_) => true,
        });
        if !shown {
            continue;
        }
        writeln!(out, "{}", file.name)?;
        for item in &file.items {
            match item {
                Item::Error(error) => writeln!(
                    out,
                    "  {}: error: {}",
                    location(file, error.line),
                    error_text(error)
                )?,
                Item::Object(object) if has_output(object) => {
                    writeln!(
                        out,
                        "  {} (document {}, line {})",
                        object_title(object),
                        object.document,
                        object.line
                    )?;
                    for container in &object.containers {
                        let at = location(file, Some(container_line(object, container)));
                        for finding in &container.findings {
                            writeln!(
                                out,
                                "    {at}: {} {}",
                                finding.action,
                                finding_line(finding)
                            )?;
                        }
                        if !container.skipped.is_empty() {
                            writeln!(out, "    {at}: skipped {}", skipped_line(container))?;
                        }
                    }
                }
                Item::Object(_) => {}
            }
        }
        writeln!(out)?;
    }
    writeln!(out, "{}", summary_line(report))
}

/// Escape a workflow command's message.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escape a workflow command's property value.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

fn command(
    out: &mut dyn Write,
    level: &str,
    file: &FileReport,
    line: Option<usize>,
    title: &str,
    message: &str,
) -> io::Result<()> {
    let mut properties = Vec::new();
    // Standard input is no file of the repository: GitHub would annotate a path that does not exist.
    if file.name != crate::check::input::STDIN_NAME {
        properties.push(format!("file={}", escape_property(&file.name)));
        if let Some(line) = line {
            properties.push(format!("line={line}"));
        }
    }
    properties.push(format!("title={}", escape_property(title)));
    writeln!(
        out,
        "::{level} {}::{}",
        properties.join(","),
        escape_data(message)
    )
}

/// `::error file=…,line=…,title=pullgate tag-not-latest::container "app" (image …): […] … — …` for deny
/// findings and input errors, `::warning` for warn findings, `::notice` for skipped registry checks; then
/// the summary line.
pub fn github(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    for file in &report.files {
        for item in &file.items {
            match item {
                Item::Error(error) => command(
                    out,
                    "error",
                    file,
                    error.line,
                    "pullgate input error",
                    &error_text(error),
                )?,
                Item::Object(object) => {
                    for container in &object.containers {
                        let line = Some(container_line(object, container));
                        for finding in &container.findings {
                            let level = match finding.action {
                                Action::Deny => "error",
                                Action::Warn => "warning",
                                Action::Off => continue,
                            };
                            let title =
                                format!("pullgate {}: {}", finding.rule, object_title(object));
                            command(out, level, file, line, &title, &finding_line(finding))?;
                        }
                        if !container.skipped.is_empty() {
                            let title = format!("pullgate skipped: {}", object_title(object));
                            command(out, "notice", file, line, &title, &skipped_line(container))?;
                        }
                    }
                }
            }
        }
    }
    writeln!(out, "{}", summary_line(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_commands_are_escaped() {
        assert_eq!(escape_data("a%b\nc\rd"), "a%25b%0Ac%0Dd");
        assert_eq!(escape_property("x: y, z"), "x%3A y%2C z");
    }
}
