//! Every relative link in the repository's Markdown, and every repository path named in a YAML comment,
//! points at something that exists — and a `#fragment` into a Markdown file at one of its headings (as
//! GitHub makes their anchors). A moved or missing document fails here, not in a new user's browser.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files under the repository with one of `extensions`, skipping build output and fuzz corpora.
fn files(extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let skipped = ["target", ".git", "corpus", "artifacts", "node_modules"];
                if !skipped.contains(&name.as_str()) && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if extensions.iter().any(|e| name.ends_with(e)) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// GitHub's anchor for a heading: lowercased, punctuation other than `-` and `_` dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of `[text](target)` links outside code blocks and code spans.
fn markdown_links(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut links = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans: a `[x](y)` inside backticks is an example, not a link.
        let plain: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            links.push(after[..end].trim().to_owned());
            rest = &after[end..];
        }
    }
    links
}

fn check_target(from: &Path, target: &str, problems: &mut Vec<String>) {
    if target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:")
        || target.is_empty()
    {
        return;
    }
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (target, None),
    };
    let dir = from.parent().expect("dir");
    let resolved = if path.is_empty() {
        from.to_owned()
    } else {
        dir.join(path)
    };
    let shown = from
        .strip_prefix(root())
        .unwrap_or(from)
        .display()
        .to_string();
    if !resolved.exists() {
        problems.push(format!(
            "{shown}: link to {target}: {} does not exist",
            resolved.display()
        ));
        return;
    }
    if let (Some(fragment), true) = (fragment, resolved.extension().is_some_and(|e| e == "md")) {
        let text = std::fs::read_to_string(&resolved).expect("markdown");
        if !anchors(&text).contains(fragment) {
            problems.push(format!(
                "{shown}: link to {target}: no heading with anchor #{fragment}"
            ));
        }
    }
}

#[test]
fn every_relative_markdown_link_resolves() {
    let mut problems = Vec::new();
    let markdown = files(&[".md"]);
    assert!(markdown.len() >= 5, "{markdown:?}");
    for file in &markdown {
        let text = std::fs::read_to_string(file).expect("markdown");
        for target in markdown_links(&text) {
            check_target(file, &target, &mut problems);
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// Repository paths in comments: a run of path characters with a `/` and a document or manifest extension.
fn commented_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((_, comment)) = line.split_once('#') else {
            continue;
        };
        // Helm's `# Source: chart/templates/x.yaml` names a template of the rendered chart.
        if comment.trim_start().starts_with("Source:") {
            continue;
        }
        for word in comment.split(|c: char| !(c.is_alphanumeric() || "._-/".contains(c))) {
            let word = word.trim_end_matches('.');
            let documented = [".md", ".yaml", ".yml", ".sh", ".json"]
                .iter()
                .any(|e| word.ends_with(e));
            if documented && word.contains('/') && !word.starts_with('/') {
                out.push(word.to_owned());
            }
        }
    }
    out
}

#[test]
fn every_path_named_in_a_yaml_comment_exists() {
    let mut problems = Vec::new();
    for file in files(&[".yaml", ".yml"]) {
        let text = std::fs::read_to_string(&file).expect("yaml");
        for path in commented_paths(&text) {
            let from_dir = file.parent().expect("dir").join(&path);
            if !root().join(&path).exists() && !from_dir.exists() {
                let shown = file
                    .strip_prefix(root())
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                problems.push(format!(
                    "{shown}: comment names {path}, which does not exist"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_what_it_should() {
    let text = "see [install](docs/install.md#verify) and `[not](a/link.md)`\n```\n[x](y.md)\n```\n# A Heading: with, punctuation\n";
    assert_eq!(markdown_links(text), vec!["docs/install.md#verify"]);
    assert!(anchors(text).contains("a-heading-with-punctuation"));
    let yaml = "key: value  # see docs/install.md, and deploy/base/webhook.yaml.\nother: 1\n";
    assert_eq!(
        commented_paths(yaml),
        vec![
            "docs/install.md".to_owned(),
            "deploy/base/webhook.yaml".to_owned()
        ]
    );
}
