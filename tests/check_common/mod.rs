//! Shared by the `check` tests: the fixture tree (`tests/fixtures/check/tree`) templated with live
//! `docker-registry` hosts, runs of the library entry point `pullgate::check::run` with in-memory
//! streams, and golden comparisons with the hosts and paths normalised back to placeholders.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};

use pullgate::check::{self, CheckConfig, Exit, Input, Io, OutputFormat, PolicySource};
use pullgate::config::Settings;
use pullgate::wiring::RegistryAccess;
use tempfile::TempDir;

use crate::support::registry::{self, Auth, ImageKind, Platform, RegistryOptions, TestRegistry};
use crate::support::webhook::settings_for;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/check");
pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret";

/// The registries the fixture tree points at: `REGISTRY` (anonymous) and `AUTH_REGISTRY` (htpasswd).
pub struct Registries {
    pub plain: TestRegistry,
    pub auth: TestRegistry,
    /// Digest of `REGISTRY/team/api:v1` (`API_DIGEST` in fixtures).
    pub api_digest: String,
}

impl Registries {
    /// Settings that reach both as the nodes would (plain HTTP).
    pub fn settings(&self) -> Settings {
        settings_for(&[&self.plain, &self.auth])
    }

    /// Placeholder → live value, longest value first so that no host is a prefix of another's
    /// replacement (`127.0.0.1:3456` vs `127.0.0.1:34567`).
    pub fn replacements(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("AUTH_REGISTRY", self.auth.host().to_owned()),
            ("REGISTRY", self.plain.host().to_owned()),
            ("API_DIGEST", self.api_digest.clone()),
        ];
        pairs.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        pairs
    }
}

/// Start both registries and push the fixture images (deterministic: same digests every run).
pub async fn registries() -> Registries {
    let plain = registry::start(RegistryOptions::default())
        .await
        .expect("registry starts");
    let auth = registry::start(RegistryOptions {
        auth: Auth::basic(USER, PASSWORD),
        ..Default::default()
    })
    .await
    .expect("registry with auth starts");
    let amd64 = || ImageKind::single(Platform::linux("amd64"));
    registry::push_image(&plain, "library/web", "latest", amd64())
        .await
        .expect("push web");
    let api_digest = registry::push_image(
        &plain,
        "team/api",
        "v1",
        ImageKind::OciIndex(vec![Platform::linux("amd64"), Platform::linux("arm64")]),
    )
    .await
    .expect("push api");
    registry::push_image(
        &plain,
        "team/arm-only",
        "v1",
        ImageKind::single(Platform::linux("arm64")),
    )
    .await
    .expect("push arm-only");
    registry::push_image(&auth, "team/private", "v1", amd64())
        .await
        .expect("push private");
    Registries {
        plain,
        auth,
        api_digest,
    }
}

/// A copy of a fixture directory with placeholders replaced.
pub struct Tree {
    pub dir: TempDir,
    /// `<dir>/tree`.
    pub root: PathBuf,
}

/// Copy `tests/fixtures/check/<name>` to a temporary `<dir>/tree` with `replacements` applied.
pub fn tree(name: &str, replacements: &[(&str, String)]) -> Tree {
    let dir = tempfile::Builder::new()
        .prefix("pullgate-check-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().join("tree");
    copy(&Path::new(FIXTURES).join(name), &root, replacements);
    Tree { dir, root }
}

fn copy(from: &Path, to: &Path, replacements: &[(&str, String)]) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list fixtures").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy(&entry.path(), &target, replacements);
        } else {
            let mut text = std::fs::read_to_string(entry.path()).expect("fixture text");
            for (placeholder, value) in replacements {
                text = text.replace(placeholder, value);
            }
            std::fs::write(target, text).expect("write fixture");
        }
    }
}

/// A config as the CLI builds it: the built-in policy, namespace `default`, no local docker config.
pub fn config(
    inputs: Vec<Input>,
    settings: Settings,
    online: bool,
    output: OutputFormat,
) -> CheckConfig {
    CheckConfig {
        inputs,
        recursive: true,
        policies: PolicySource::BuiltIn,
        settings,
        namespace: "default".into(),
        registry: online.then_some(RegistryAccess {
            docker_config: pullgate::credentials::LocalDockerConfig::Off,
            helper_path: None,
            cache_dir: None,
        }),
        output,
        warnings_as_errors: false,
        skip_non_kubernetes: false,
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Run {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
}

/// Run `check` with `stdin` as standard input.
pub async fn run(config: CheckConfig, stdin: &str) -> Run {
    let mut input = stdin.as_bytes();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let exit = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        check::run(
            config,
            Io {
                stdin: &mut input,
                stdout: &mut stdout,
                stderr: &mut stderr,
            },
        ),
    )
    .await
    .expect("check finished within 120 s");
    Run {
        exit,
        stdout: String::from_utf8(stdout).expect("UTF-8 report"),
        stderr: String::from_utf8(stderr).expect("UTF-8 errors"),
    }
}

/// Live values back to placeholders: hosts, the fixture digest, the temporary directory, the version.
pub fn normalise(text: &str, tree: &Tree, replacements: &[(&'static str, String)]) -> String {
    let dir = tree.dir.path().display().to_string();
    let mut text = text
        .replace(&format!("file://{dir}/"), "")
        .replace(&format!("{dir}/"), "");
    for (placeholder, value) in replacements {
        text = text.replace(value.as_str(), placeholder);
    }
    text.replace(&format!("\"{}\"", env!("CARGO_PKG_VERSION")), "\"VERSION\"")
}

/// Compare with `tests/fixtures/check/golden/<name>`; `UPDATE_GOLDEN=1` rewrites the file instead.
pub fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(FIXTURES).join("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n--- expected\n{}\n--- actual\n{}\n(UPDATE_GOLDEN=1 rewrites it)",
            path.display(),
            first + 1,
            expected
                .lines()
                .skip(first)
                .take(5)
                .collect::<Vec<_>>()
                .join("\n"),
            actual
                .lines()
                .skip(first)
                .take(5)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}
