//! The shape of the house (STYLE.md, README "Development layout"), checked so it keeps holding:
//!
//! - every `crate::<module>` reference in `src/` is an edge the intended order allows, and that order has
//!   no cycle: `image, platform, workload -> facts -> { policy | credentials -> registry } -> resolve ->
//!   engine <- wiring -> { admission, check } -> server -> main`;
//! - `policy` and `facts` name no network crate (they compile without reqwest, oci-client, kube, moka,
//!   tokio, axum or hyper);
//! - no Rust file in the repository is over 600 lines, and `src/check/` stays under 2,400.
//!
//! Test modules (`tests.rs`, `mod tests { … }`) may use anything below their module and are not scanned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module and the modules it may name with `crate::`. Leaves first; `main` is the binary.
const ALLOWED: &[(&str, &[&str])] = &[
    ("yaml", &[]),
    ("image", &[]),
    ("platform", &[]),
    ("workload", &[]),
    ("facts", &["image", "platform", "workload"]),
    ("config", &["image", "platform", "yaml"]),
    ("telemetry", &["config"]),
    (
        "policy",
        &["facts", "image", "platform", "workload", "yaml"],
    ),
    ("credentials", &["facts", "image"]),
    (
        "registry",
        &["config", "credentials", "facts", "image", "platform"],
    ),
    (
        "resolve",
        &["credentials", "facts", "image", "platform", "registry"],
    ),
    (
        "engine",
        &["facts", "platform", "policy", "resolve", "workload"],
    ),
    ("wiring", &["config", "credentials", "registry", "resolve"]),
    (
        "admission",
        &["engine", "facts", "policy", "resolve", "workload"],
    ),
    (
        "check",
        &[
            "config",
            "credentials",
            "engine",
            "facts",
            "image",
            "policy",
            "resolve",
            "wiring",
            "workload",
            "yaml",
        ],
    ),
    (
        "audit",
        &[
            "check", "config", "engine", "facts", "platform", "policy", "registry", "resolve",
            "wiring", "workload",
        ],
    ),
    (
        "server",
        &[
            "admission",
            "audit",
            "config",
            "engine",
            "facts",
            "platform",
            "policy",
            "registry",
            "resolve",
            "telemetry",
            "wiring",
            "workload",
        ],
    ),
    (
        "cli",
        &[
            "audit",
            "check",
            "config",
            "credentials",
            "telemetry",
            "wiring",
        ],
    ),
    (
        "fuzz",
        &[
            "admission",
            "check",
            "config",
            "credentials",
            "engine",
            "image",
            "policy",
            "registry",
        ],
    ),
];

/// Crates that talk to the network (or run the async machinery that does).
const NETWORK_CRATES: &[&str] = &[
    "reqwest",
    "oci_client",
    "kube",
    "hyper",
    "axum",
    "axum_server",
    "tokio",
    "moka",
    "rustls",
    "tower",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("readable directory")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The top-level module a file of `src/` belongs to (`src/registry/hosts/mod.rs` → `registry`).
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(root().join("src")).expect("under src");
    let first = relative
        .components()
        .next()
        .expect("a component")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests { … }` block.
fn code(text: &str) -> String {
    let without_tests = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    without_tests
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::<name>` in the code.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `crate::{a, b}` groups are not used in this code base; a bare `crate::` would be caught here.
        assert!(!name.is_empty(), "unreadable crate path near {tail:.40}");
        names.insert(name);
        rest = tail;
    }
    names
}

/// The edges actually present: module → modules it names.
fn actual_edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&root().join("src")) {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "tests.rs" || name == "lib.rs" || name == "main.rs" {
            continue;
        }
        let module = module_of(&file);
        let text = std::fs::read_to_string(&file).expect("readable");
        let used = crate_references(&code(&text));
        edges
            .entry(module.clone())
            .or_default()
            .extend(used.into_iter().filter(|m| *m != module));
    }
    edges
}

#[test]
fn imports_follow_the_intended_order() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(module, deps)| (*module, deps.iter().copied().collect()))
        .collect();
    let mut wrong = Vec::new();
    for (module, used) in actual_edges() {
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.push(format!(
                "module {module} is not in the intended order (tests/layout.rs ALLOWED)"
            ));
            continue;
        };
        for dep in used {
            if !may.contains(dep.as_str()) {
                wrong.push(format!("{module} -> {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the intended order:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_intended_order_has_no_cycle() {
    // Kahn's algorithm over ALLOWED: every module must be placed.
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(module, deps)| (*module, deps.iter().copied().collect()))
        .collect();
    let mut placed = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| placed.contains(d)))
            .map(|(module, _)| *module)
            .collect();
        assert!(!ready.is_empty(), "cycle among {:?}", remaining.keys());
        for module in ready {
            remaining.remove(module);
            placed.push(module);
        }
    }
    // Every dependency named is itself a module of the order.
    for (module, deps) in ALLOWED {
        for dep in *deps {
            assert!(placed.contains(dep), "{module} -> unknown module {dep}");
        }
    }
}

#[test]
fn the_decision_compiles_without_network_crates() {
    for file in rust_files(&root().join("src")) {
        let module = module_of(&file);
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !matches!(module.as_str(), "policy" | "facts") || name == "tests.rs" {
            continue;
        }
        let text = code(&std::fs::read_to_string(&file).expect("readable"));
        for krate in NETWORK_CRATES {
            for pattern in [
                format!("use {krate}::"),
                format!(" {krate}::"),
                format!("({krate}::"),
            ] {
                assert!(
                    !text.contains(&pattern),
                    "{} names the network crate {krate}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn no_rust_file_is_over_600_lines_and_check_stays_small() {
    let mut long = Vec::new();
    for dir in ["src", "tests", "benches"] {
        for file in rust_files(&root().join(dir)) {
            let lines = std::fs::read_to_string(&file)
                .expect("readable")
                .lines()
                .count();
            if lines > 600 {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over 600 lines:\n{}",
        long.join("\n")
    );
    let check: usize = rust_files(&root().join("src/check"))
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .expect("readable")
                .lines()
                .count()
        })
        .sum();
    assert!(check < 2400, "src/check/ has {check} lines");
}
