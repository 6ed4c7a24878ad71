//! The real `pullgate check` binary: exit codes (0, 1, 2 and clap's usage errors), standard input as
//! `-`, environment variables, and 10,000 generated manifests with `--offline`. Nothing here reaches a
//! registry: every run is `--offline`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const LATEST: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:latest\n";
const PINNED: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: \"nginx:1.27\"}\n";
const NEVER: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: \"nginx:1.27\", imagePullPolicy: Never}\n";

/// `pullgate check ARGS` with `stdin`, in an environment with no pullgate or docker settings.
fn pullgate(args: &[&str], stdin: &str, envs: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().expect("home");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pullgate"));
    command
        .arg("check")
        .args(args)
        .env("HOME", home.path())
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("PULLGATE_") {
            command.env_remove(key);
        }
    }
    command.envs(envs.iter().copied());
    let mut child = command.spawn().expect("pullgate runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("pullgate exits")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn stdin_is_read_with_a_dash_and_deny_findings_exit_1() {
    let output = pullgate(&["-f", "-", "--offline"], LATEST, &[]);
    let stdout = text(&output.stdout);
    assert_eq!(code(&output), 1, "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("<stdin>:9: deny container \"web\" (image nginx:latest): [tag-not-latest]"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            "1 objects, 1 images: 1 denied, 0 warnings, 9 registry checks skipped (--offline)\n"
        ),
        "{stdout}"
    );
}

#[test]
fn github_annotations_of_standard_input_name_no_file() {
    let output = pullgate(&["-f", "-", "--offline", "-o", "github"], LATEST, &[]);
    let stdout = text(&output.stdout);
    assert_eq!(code(&output), 1, "{stdout}{}", text(&output.stderr));
    assert!(!stdout.contains("file="), "no file for stdin: {stdout}");
    // The title names the object instead.
    assert!(
        stdout.contains(
            "::error title=pullgate tag-not-latest%3A Deployment shop/web::container \"web\""
        ),
        "{stdout}"
    );
}

#[test]
fn clean_input_exits_0_and_warnings_only_with_the_flag() {
    assert_eq!(code(&pullgate(&["-f", "-", "--offline"], PINNED, &[])), 0);
    // DOCKER_CONFIG naming a directory that does not exist is docker's "no config", not an error.
    let no_dir = pullgate(
        &["-f", "-", "--offline"],
        PINNED,
        &[("DOCKER_CONFIG", "/no/such/dir")],
    );
    assert_eq!(code(&no_dir), 0, "{}", text(&no_dir.stderr));
    assert_eq!(code(&pullgate(&["-f", "-", "--offline"], NEVER, &[])), 0);
    assert_eq!(
        code(&pullgate(
            &["-f", "-", "--offline", "--warnings-as-errors"],
            NEVER,
            &[]
        )),
        1
    );
    // Flags also come from the environment (booleans as true/false, 1/0, yes/no, on/off).
    let by_env = pullgate(
        &["-f", "-"],
        NEVER,
        &[
            ("PULLGATE_OFFLINE", "1"),
            ("PULLGATE_WARNINGS_AS_ERRORS", "true"),
            ("PULLGATE_OUTPUT", "json"),
        ],
    );
    assert_eq!(code(&by_env), 1, "{}", text(&by_env.stderr));
    let report: Value = serde_json::from_slice(&by_env.stdout).expect("JSON");
    assert_eq!(report["summary"]["warnings"], 1);
}

#[test]
fn input_and_usage_errors_exit_2() {
    let broken = pullgate(&["-f", "-", "--offline"], "a: [1,\n", &[]);
    assert_eq!(code(&broken), 2);
    assert!(
        text(&broken.stdout).contains("<stdin>:1: error: document 1: not valid YAML"),
        "{}",
        text(&broken.stdout)
    );
    for args in [
        vec![],
        vec!["-f", "-", "--output", "yaml"],
        vec![
            "-f",
            "-",
            "--offline",
            "--docker-config",
            "/no/such/docker/config.json",
        ],
        vec!["-f", "-", "--offline", "--namespace", ""],
        vec!["-f", "-", "--offline", "--policies", "/no/such/policies"],
        vec!["-f", "-", "--offline", "--config", "/no/such/config.yaml"],
    ] {
        let output = pullgate(&args, PINNED, &[]);
        assert_eq!(code(&output), 2, "{args:?}: {}", text(&output.stderr));
        assert!(!output.stderr.is_empty(), "{args:?} says why");
    }
}

#[test]
fn policies_and_namespace_flags_scope_the_rules() {
    let dir = tempfile::tempdir().expect("policies");
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\nspec:\n  include: {namespaces: [prod]}\n  rules:\n    digest-pinned: {action: deny}\n",
    )
    .expect("write policy");
    let policies = dir.path().to_str().expect("path");
    let elsewhere = pullgate(
        &["-f", "-", "--offline", "--policies", policies],
        PINNED,
        &[],
    );
    assert_eq!(code(&elsewhere), 0, "{}", text(&elsewhere.stdout));
    let prod = pullgate(
        &["-f", "-", "--offline", "--policies", policies, "-n", "prod"],
        PINNED,
        &[],
    );
    assert_eq!(code(&prod), 1, "{}", text(&prod.stdout));
    assert!(
        text(&prod.stdout).contains("[digest-pinned]"),
        "{}",
        text(&prod.stdout)
    );
}

/// Writes `count` Deployments (two containers each) as one file per manifest.
fn generate(dir: &Path, count: usize) {
    for i in 0..count {
        let manifest = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: team-{}\n  labels: {{app: app-{i}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}}}}}\n    spec:\n      containers:\n        - name: app\n          image: registry.example.com/team/app-{}:1.{i}\n          ports: [{{containerPort: 8080}}]\n        - name: proxy\n          image: {}\n",
            i % 50,
            i % 100,
            if i % 10 == 0 {
                "envoyproxy/envoy:latest"
            } else {
                "envoyproxy/envoy:v1.31.0"
            }
        );
        std::fs::write(dir.join(format!("app-{i:05}.yaml")), manifest).expect("write manifest");
    }
}

/// 10,000 manifests with `--offline`: all read, all checked, in bounded time (the release-build time is
/// measured separately; this debug build only has to finish).
#[test]
fn ten_thousand_manifests_offline() {
    let dir = tempfile::tempdir().expect("manifests");
    generate(dir.path(), 10_000);
    let started = Instant::now();
    let output = pullgate(
        &[
            "-f",
            dir.path().to_str().expect("path"),
            "--offline",
            "--output",
            "json",
        ],
        "",
        &[],
    );
    let elapsed = started.elapsed();
    eprintln!("pullgate check --offline on 10,000 manifests: {elapsed:?}");
    assert_eq!(code(&output), 1, "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["summary"]["files"], 10_000);
    assert_eq!(report["summary"]["objects"], 10_000);
    assert_eq!(report["summary"]["images"], 20_000);
    assert_eq!(
        report["summary"]["denied"], 1_000,
        "every tenth uses envoy:latest"
    );
    assert_eq!(report["summary"]["errors"], 0);
    assert!(elapsed < Duration::from_secs(120), "{elapsed:?}");
}

#[test]
fn image_volumes_are_named_and_located_as_written() {
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: demo}\nspec:\n  containers: [{name: app, image: \"nginx:1.27\"}]\n  volumes:\n  - {name: m, image: {reference: \"r.example/models:latest\", pullPolicy: IfNotPresent}}\n";
    let output = pullgate(&["--offline", "-f", "-"], manifest, &[]);
    assert_eq!(code(&output), 1, "{}", text(&output.stderr));
    let out = text(&output.stdout);
    assert!(
        out.contains(
            r#"<stdin>:7: deny image volume "m" (image r.example/models:latest): [tag-not-latest]"#
        ),
        "{out}"
    );
    assert!(out.contains("set pullPolicy: Always"), "{out}");
    assert!(
        out.contains(r#"<stdin>:7: skipped image volume "m""#),
        "{out}"
    );
}

#[test]
fn oversized_documents_get_a_short_clear_error() {
    let mut huge = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: demo}\nspec:\n  containers:\n",
    );
    for i in 0..20_000 {
        huge.push_str(&format!(
            "  - {{name: c{i}, image: \"r.example/app{i}\"}}\n"
        ));
    }
    let long_name = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {}}}\nspec:\n  template:\n    spec:\n      containers: [{{name: a, image: nginx}}]\n",
        "n".repeat(100_000)
    );
    let mut bomb = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    for (input, said) in [
        (
            huge,
            "Pod demo/p: Pod has 20000 containers and image volumes; pullgate checks at most 1000 per object",
        ),
        (
            long_name,
            "metadata.name is 100000 characters long; Kubernetes names have at most 253",
        ),
        (bomb, "the document expands to more than 250000 values"),
    ] {
        let output = pullgate(&["--offline", "-o", "json", "-f", "-"], &input, &[]);
        assert_eq!(code(&output), 2, "{}", text(&output.stderr));
        let out = text(&output.stdout);
        assert!(out.contains(said), "{}", &out[..out.len().min(2000)]);
        assert!(
            out.len() < 2_000,
            "the input is never echoed: {} bytes",
            out.len()
        );
    }
}
