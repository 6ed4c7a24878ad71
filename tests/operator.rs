//! What an operator sees of a real `pullgate serve` process: a JSON log line per admission that says which
//! object was decided (the span's `object`, not a `name` that collides with the span's own name) with a
//! duration to the microsecond; a listen error that says why; and policies that need no setup (the
//! built-in policy when there is neither `--policies` nor `./policies`) or a clear error naming
//! `--policies` when the given directory is missing.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::process::{Process, free_port, serve_command};
use support::webhook::{bounded, one_container, pod_review};

/// Start `serve` with `args` added, stderr into `log`; wait until it answers `/healthz` over HTTPS.
async fn serve(
    dir: &std::path::Path,
    args: &[&str],
    log: &std::path::Path,
) -> (Process, reqwest::Client, String) {
    let config = dir.join("config.yaml");
    std::fs::write(&config, "{}\n").expect("config");
    let certs = dir.join("certs");
    let port = free_port();
    let mut command = serve_command(port, &config, &certs);
    command.args(["--kube-api", "off"]).args(args);
    started(command, port, &certs, log).await
}

/// Spawn `command` (a `serve` on `port` generating its certificate into `certs`), stderr into `log`;
/// wait until it answers `/healthz` over HTTPS.
async fn started(
    mut command: std::process::Command,
    port: u16,
    certs: &std::path::Path,
    log: &std::path::Path,
) -> (Process, reqwest::Client, String) {
    let child = command
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("pullgate serve starts");
    let process = Process(child);
    let url = format!("https://127.0.0.1:{port}");
    for _ in 0..200 {
        if let Ok(pem) = std::fs::read(certs.join("ca.pem")) {
            let ca = reqwest::Certificate::from_pem(&pem).expect("CA");
            let client = reqwest::Client::builder()
                .tls_certs_only([ca])
                .build()
                .expect("client");
            let up = client.get(format!("{url}/healthz")).send().await;
            if up.is_ok_and(|r| r.status().is_success()) {
                return (process, client, url);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "pullgate serve did not come up: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Admit a Pod running `nginx:latest` (denied by the shipped policy); the AdmissionReview answered.
async fn admit_latest(client: &reqwest::Client, url: &str) -> Value {
    let body = serde_json::to_vec(&pod_review(one_container("nginx:latest"))).expect("JSON");
    client
        .post(format!("{url}/validate"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn a_json_log_line_names_the_object_decided() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("stderr.log");
        let (_serve, client, url) = serve(dir.path(), &["--log-format", "json"], &log).await;
        let answer = admit_latest(&client, &url).await;
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        let mut decided = None;
        for _ in 0..100 {
            let text = std::fs::read_to_string(&log).expect("log");
            decided = text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|line| line["message"] == "admission decided");
            if decided.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let line = decided.expect("an `admission decided` JSON line");
        let span = &line["span"];
        assert_eq!(span["name"], "admission", "{line}");
        assert_eq!(span["object"], "web", "the object's name: {line}");
        assert_eq!(span["namespace"], "demo", "{line}");
        assert_eq!(line["verdict"], "denied", "{line}");
        let rules = line["rules"].as_array().expect("rules as a JSON array");
        assert!(rules.iter().any(|r| r == "tag-not-latest:deny"), "{line}");
        let text = std::fs::read_to_string(&log).expect("log");
        let loaded = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["message"] == "policies loaded")
            .expect("a `policies loaded` JSON line");
        let names = loaded["policies"]
            .as_array()
            .expect("policies as a JSON array");
        assert!(
            !names.is_empty() && names.iter().all(Value::is_string),
            "{loaded}"
        );
        let duration = line["duration_ms"].to_string();
        let decimals = duration.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 3, "to the microsecond: {duration}");
    })
    .await;
}

#[test]
fn a_port_in_use_is_said_with_the_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "{}\n").expect("config");
    let output = serve_command(port, &config, &dir.path().join("certs"))
        .args(["--kube-api", "off"])
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("pullgate serve runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{stderr}"
    );
}

/// `pullgate serve` on `port` run from `cwd`, with `args`; no `--policies` unless `args` has one.
fn bare_serve(cwd: &std::path::Path, port: u16, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"));
    command
        .current_dir(cwd)
        .args(["serve", "--kube-api", "off", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--generated-cert-dir")
        .arg(cwd.join("certs"))
        .args(args);
    command
}

#[tokio::test]
async fn without_policies_anywhere_the_built_in_policy_decides() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("stderr.log");
        let port = free_port();
        let mut command = bare_serve(dir.path(), port, &[]);
        command.stdout(std::process::Stdio::null());
        let (_serve, client, url) = started(command, port, &dir.path().join("certs"), &log).await;
        let answer = admit_latest(&client, &url).await;
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.contains("using the built-in policy"), "{text}");
    })
    .await;
}

#[test]
fn a_missing_policies_directory_is_named_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = bare_serve(
        dir.path(),
        free_port(),
        &["--policies", "/nonexistent/policies"],
    )
    .output()
    .expect("serve runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--policies /nonexistent/policies: no such directory"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("/nonexistent/policies").count(),
        1,
        "said once: {stderr}"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .arg("--version")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    assert_eq!(
        text,
        format!("pullgate {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
    let sub = std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .arg("version")
        .output()
        .expect("runs");
    assert_eq!(String::from_utf8_lossy(&sub.stdout).trim(), text);
}

#[tokio::test]
async fn text_logs_to_a_file_have_no_colour_codes() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("stderr.log");
        let (_serve, client, url) = serve(dir.path(), &[], &log).await;
        let answer = admit_latest(&client, &url).await;
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&log).expect("log");
            if text.contains("admission decided") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(text.contains("admission decided"), "{text}");
        assert!(!text.contains('\u{1b}'), "ANSI escapes in a file: {text:?}");
    })
    .await;
}

#[test]
fn an_unreadable_kubeconfig_is_one_line_naming_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pullgate"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("serve runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "--kubeconfig /nonexistent/kubeconfig: cannot read it: No such file or directory"
        ),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("/nonexistent/kubeconfig").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("Caused by"), "{stderr}");
}
