//! `Containerfile` as README "Install" promises it: every base image pinned by digest (`scratch` is not an
//! image), a final stage that runs as a non-root numeric user and needs no shell (no `RUN` or `SHELL` in
//! it, `ENTRYPOINT`/`CMD` in exec form). No container engine runs here, so the file is read, not built;
//! the lint is shown to refuse each broken variant.

use std::path::Path;

/// One instruction: its keyword (upper case) and the rest, continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            (keyword.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

/// What is wrong with a Containerfile, if anything.
fn problems(text: &str) -> Vec<String> {
    let all = instructions(text);
    let mut problems = Vec::new();
    for (_, from) in all.iter().filter(|(k, _)| k == "FROM") {
        let image = from
            .split_whitespace()
            .find(|word| !word.starts_with("--"))
            .unwrap_or("");
        let pinned = image.split_once("@sha256:").is_some_and(|(_, digest)| {
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if image != "scratch" && !pinned {
            problems.push(format!("base image {image} is not pinned by digest"));
        }
    }
    let Some(last_from) = all.iter().rposition(|(k, _)| k == "FROM") else {
        return vec!["no FROM".into()];
    };
    let last = &all[last_from..];
    for (keyword, rest) in last {
        match keyword.as_str() {
            "RUN" | "SHELL" => problems.push(format!("{keyword} in the final stage needs a shell")),
            "ENTRYPOINT" | "CMD" if !rest.starts_with('[') => {
                problems.push(format!("{keyword} in shell form needs a shell"))
            }
            _ => {}
        }
    }
    match last.iter().rev().find(|(k, _)| k == "USER") {
        None => problems.push("the final stage runs as root (no USER)".into()),
        Some((_, user)) => {
            let uid = user.split(':').next().unwrap_or("");
            if uid.parse::<u32>().map_or(true, |uid| uid == 0) {
                problems.push(format!("USER {user} is not a non-root numeric UID"));
            }
        }
    }
    if !last.iter().any(|(k, _)| k == "ENTRYPOINT") {
        problems.push("no ENTRYPOINT".into());
    }
    problems
}

#[test]
fn the_containerfile_is_pinned_non_root_and_shell_free() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile"))
        .expect("Containerfile");
    assert_eq!(problems(&text), Vec::<String>::new());
    let (_, from) = instructions(&text)
        .into_iter()
        .rfind(|(k, _)| k == "FROM")
        .expect("FROM");
    assert_eq!(from, "scratch", "the final image has no shell at all");
}

#[test]
fn the_lint_refuses_each_broken_variant() {
    let good = "FROM docker.io/library/rust:1.95-alpine@sha256:606fd313a0f49743ee2a7bd49a0914bab7deedb12791f3a846a34a4711db7ed2 AS build\nRUN cargo build\nFROM scratch\nCOPY --from=build /out/pullgate /pullgate\nUSER 65532:65532\nENTRYPOINT [\"/pullgate\"]\n";
    assert_eq!(problems(good), Vec::<String>::new());
    for (broken, expected) in [
        (
            good.replace(
                "@sha256:606fd313a0f49743ee2a7bd49a0914bab7deedb12791f3a846a34a4711db7ed2",
                "",
            ),
            "is not pinned by digest",
        ),
        (good.replace("USER 65532:65532\n", ""), "runs as root"),
        (
            good.replace("USER 65532:65532", "USER 0"),
            "not a non-root numeric UID",
        ),
        (
            good.replace("USER 65532:65532", "USER nobody"),
            "not a non-root numeric UID",
        ),
        (
            good.replace("ENTRYPOINT [\"/pullgate\"]", "ENTRYPOINT /pullgate serve"),
            "shell form",
        ),
        (
            good.replace("USER 65532", "RUN chmod +x /pullgate\nUSER 65532"),
            "RUN in the final stage",
        ),
    ] {
        let found = problems(&broken);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expected}: {found:?}\n{broken}"
        );
    }
}
