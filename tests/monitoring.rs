//! The shipped alerts and dashboard (deploy/components/monitoring, the same in the Helm chart) name only
//! metrics and labels a running `pullgate serve` exports, and the alerts are valid Prometheus rules that
//! fire as documented: `promtool check rules` and `promtool test rules` (promtool from
//! scripts/install-tools.sh, which ./test.sh runs).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use pullgate::config::{KubeApi, LogFormat, ServeConfig, Settings, TlsSource};
use serde_json::{Value, json};
use support::hostile;
use support::kube::FakeKube;
use support::registry::{self, ImageKind, Platform, RegistryOptions};
use support::webhook::{allow_loopback, insecure, one_container, pod_review, settings_for};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    let tool = repo().join("target/tools/bin/promtool");
    assert!(
        tool.exists(),
        "promtool missing: run scripts/install-tools.sh (./test.sh does)"
    );
    tool
}

/// The alert rules: the `spec` of the kustomize component's PrometheusRule.
fn rules() -> Value {
    let text =
        std::fs::read_to_string(repo().join("deploy/components/monitoring/prometheusrule.yaml"))
            .expect("prometheusrule.yaml");
    let rule: Value = serde_saphyr::from_str(&text).expect("YAML");
    rule["spec"].clone()
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(
        repo().join("deploy/components/monitoring/pullgate-dashboard.json"),
    )
    .expect("dashboard");
    serde_json::from_str(&text).expect("dashboard JSON")
}

/// Every PromQL expression of the rules and the dashboard.
fn expressions() -> Vec<String> {
    let mut exprs: Vec<String> = rules()["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["expr"].as_str().map(str::to_owned))
        .collect();
    for panel in dashboard()["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.extend(target["expr"].as_str().map(str::to_owned));
        }
    }
    exprs
}

/// Sample names and, for each, the label names seen on its samples, from a `/metrics` text.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.entry(format!("{name}{suffix}")).or_default();
            }
        } else if !line.starts_with('#') {
            let (name, labels) = match line.split_once('{') {
                Some((name, rest)) => (name, rest.split_once('}').map_or("", |(l, _)| l)),
                None => (line.split_whitespace().next().unwrap_or_default(), ""),
            };
            let entry = names.entry(name.to_owned()).or_default();
            for pair in labels.split("\",") {
                if let Some((label, _)) = pair.split_once('=') {
                    entry.insert(label.trim_matches(',').to_owned());
                }
            }
        }
    }
    names
}

/// `(metric, labels it is selected or grouped by)` in an expression: `m{a="x"}`, and `by (a, b)` applied
/// to the metrics after it.
fn references(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut found = Vec::new();
    let bytes = expr.as_bytes();
    let mut grouping: BTreeSet<String> = BTreeSet::new();
    let mut i = 0;
    while i < expr.len() {
        let rest = &expr[i..];
        if let Some(after) = rest.strip_prefix("by (") {
            let close = after.find(')').expect("closed by");
            grouping = after[..close]
                .split(',')
                .map(|l| l.trim().to_owned())
                .collect();
            i += 4 + close;
            continue;
        }
        if rest.starts_with("pullgate_") && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = rest[..end].to_owned();
            let mut labels = grouping.clone();
            if let Some(selector) = rest[end..].strip_prefix('{') {
                let close = selector.find('}').expect("closed selector");
                for matcher in selector[..close].split(',') {
                    let label: String = matcher
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    labels.insert(label);
                }
            }
            labels.remove("le");
            found.push((name, labels));
            i += end;
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    found
}

#[test]
fn expressions_are_parsed_into_metrics_and_labels() {
    let refs = references(
        "sum by (registry, outcome) (rate(pullgate_registry_requests_total{outcome=~\"a|b\"}[5m]))",
    );
    assert_eq!(
        refs,
        vec![(
            "pullgate_registry_requests_total".to_owned(),
            BTreeSet::from(["outcome".to_owned(), "registry".to_owned()])
        )]
    );
}

/// A `pullgate serve` with the audit on, after an audit round, admissions (allowed and denied) and a
/// registry that publishes a pull budget: every metric family has samples.
async fn scrape() -> String {
    registry::install_crypto();
    let reg = registry::start(RegistryOptions::default())
        .await
        .expect("registry");
    registry::push_image(
        &reg,
        "team/app",
        "v1",
        ImageKind::single(Platform::linux("amd64")),
    )
    .await
    .expect("push");
    let budgeted = hostile::start(
        "127.0.0.1",
        false,
        hostile::answer(|_, _| {
            (
                StatusCode::NOT_FOUND,
                [
                    ("ratelimit-remaining", "7;w=21600"),
                    ("ratelimit-limit", "100;w=21600"),
                ],
                "",
            )
                .into_response()
        }),
    )
    .await;
    let kube = FakeKube::start().await.expect("fake API");
    let image = format!("{}/team/app:v1", reg.host());
    kube.insert_object(
        "demo",
        "pods",
        json!({"metadata": {"name": "web"}, "spec": one_container(&image)}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings: Settings = settings_for(&[&reg]);
    allow_loopback(&mut settings);
    insecure(&mut settings, &budgeted.host);
    settings.audit = Some(pullgate::config::AuditSettings {
        interval_seconds: 1,
        lease_namespace: Some("pullgate-system".into()),
        ..Default::default()
    });
    let running = pullgate::server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        kube_api: KubeApi::Kubeconfig(kube.kubeconfig(dir.path())),
        tls: TlsSource::Generate {
            dir: dir.path().join("certs"),
        },
        policies: Some(repo().join("policies")),
        settings,
        log_format: LogFormat::Text,
    })
    .await
    .expect("serve starts");
    let ca = std::fs::read(running.generated_ca.clone().expect("generated CA")).expect("CA");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("CA")])
        .build()
        .expect("client");
    let base = format!("https://127.0.0.1:{}", running.addr.port());
    for image in [
        image.clone(),
        "nginx:latest".to_owned(),
        format!("{}/x/y:v1", budgeted.host),
    ] {
        let review = pod_review(one_container(&image));
        let answer = client
            .post(format!("{base}/validate"))
            .json(&review)
            .send()
            .await
            .expect("admission");
        assert!(answer.status().is_success());
    }
    let mut text = String::new();
    for _ in 0..100 {
        text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.contains("pullgate_workload_image_status{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running
        .shutdown(Duration::from_secs(1))
        .await
        .expect("shutdown");
    text
}

#[tokio::test]
async fn rules_and_dashboard_name_only_exported_metrics_and_labels() {
    let text = scrape().await;
    let exported = exported(&text);
    let mut checked = BTreeSet::new();
    for expr in expressions() {
        for (metric, labels) in references(&expr) {
            let Some(have) = exported.get(&metric) else {
                panic!("{metric} (in `{expr}`) is not exported:\n{text}")
            };
            for label in &labels {
                assert!(
                    have.contains(label),
                    "{metric} has no label {label} (in `{expr}`): {have:?}"
                );
            }
            checked.insert(metric);
        }
    }
    // Everything the issue asks to see is there.
    for metric in [
        "pullgate_admissions_total",
        "pullgate_admission_duration_seconds_bucket",
        "pullgate_registry_requests_total",
        "pullgate_cache_lookups_total",
        "pullgate_registry_ratelimit_remaining",
        "pullgate_workload_image_status",
        "pullgate_tls_certificate_not_after_seconds",
    ] {
        assert!(
            checked.contains(metric),
            "{metric} is not on the dashboard or in an alert"
        );
    }
}

#[test]
fn promtool_accepts_the_rules_and_the_alerts_fire_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_file = dir.path().join("rules.yaml");
    std::fs::write(
        &rules_file,
        serde_json::to_string(&rules()).expect("JSON is YAML"),
    )
    .expect("write");
    let check = Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(&rules_file)
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let tests = json!({
        "rule_files": [rules_file],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": "pullgate_workload_image_status{namespace=\"shop\",kind=\"Deployment\",name=\"web\",container=\"app\",status=\"absent\"}", "values": "1x30"},
                {"series": "pullgate_workload_image_status{namespace=\"shop\",kind=\"Deployment\",name=\"web\",container=\"app\",status=\"ok\"}", "values": "0x30"},
                {"series": "pullgate_workload_image_status{namespace=\"shop\",kind=\"Deployment\",name=\"api\",container=\"app\",status=\"ok\"}", "values": "1x30"},
                {"series": "pullgate_admissions_total{kind=\"Pod\",operation=\"CREATE\",verdict=\"denied\"}", "values": "0+30x30"},
                {"series": "pullgate_admissions_total{kind=\"Pod\",operation=\"CREATE\",verdict=\"allowed\"}", "values": "0+70x30"},
                {"series": "pullgate_tls_certificate_not_after_seconds", "values": "864000x120"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "PullgateImageNotPullable", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "PullgateImageNotPullable", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "namespace": "shop", "kind": "Deployment", "name": "web", "container": "app", "status": "absent"},
                    "exp_annotations": {
                        "summary": "Deployment shop/web: the image of container app would not pull now (absent)",
                        "description": "The next reschedule, scale-up or node drain of this workload ends in ImagePullBackOff. Run `pullgate audit -n shop` for the cause and the fix.",
                    },
                }]},
                {"eval_time": "30m", "alertname": "PullgateDenyingTooMuch", "exp_alerts": [{
                    "exp_labels": {"severity": "warning"},
                    "exp_annotations": {
                        "summary": "pullgate denies 30% of admissions",
                        "description": "More than 20% of admissions denied: a policy change gone wrong, or a registry outage.",
                    },
                }]},
                {"eval_time": "30m", "alertname": "PullgateCertificateExpiring", "exp_alerts": []},
                {"eval_time": "90m", "alertname": "PullgateCertificateExpiring", "exp_alerts": [{
                    "exp_labels": {"severity": "warning"},
                    "exp_annotations": {
                        "summary": "pullgate's serving certificate expires in 9d 22h 30m 0s",
                        "description": "When it expires the apiserver cannot call the webhook. Renew it (cert-manager, or certs/generate.sh).",
                    },
                }]},
            ],
        }],
    });
    let tests_file = dir.path().join("tests.yaml");
    std::fs::write(&tests_file, tests.to_string()).expect("write");
    let run = Command::new(promtool())
        .arg("test")
        .arg("rules")
        .arg(&tests_file)
        .output()
        .expect("promtool");
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn helm_ships_the_same_rules_and_dashboard() {
    let helm_rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("deploy/helm/pullgate/files/prometheus-rules.yaml"))
            .expect("rules"),
    )
    .expect("YAML");
    assert_eq!(helm_rules, rules());
    let helm_dashboard =
        std::fs::read(repo().join("deploy/helm/pullgate/files/pullgate-dashboard.json"))
            .expect("dashboard");
    let dashboard =
        std::fs::read(repo().join("deploy/components/monitoring/pullgate-dashboard.json"))
            .expect("dashboard");
    assert_eq!(
        helm_dashboard, dashboard,
        "one dashboard file for Helm and kustomize"
    );
}
