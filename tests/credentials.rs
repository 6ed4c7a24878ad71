//! Pull credentials gathered through a real `kube::Client` from an in-process fake Kubernetes API:
//! pod secrets, ServiceAccount fallback, broken secrets, the TTL cache, and no API at all.

mod support;

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{LocalObjectReference, PodSpec};
use pullgate::credentials::{CredentialSource, KubeCredentialSource, KubeMetrics, PodCredentials};
use pullgate::facts::{CredentialOrigin, SecretProblem, SecretProblemKind};
use pullgate::image::ImageRef;
use support::kube::{
    FakeKube, dockerconfigjson_secret, secret_path, service_account, service_account_path,
    typed_secret,
};

const NS: &str = "demo";
const REGISTRY: &str = "127.0.0.1:5000";
/// How long answers are reused by default (`resolution.kubernetesTtlSeconds`).
fn default_ttl() -> Duration {
    pullgate::config::Settings::default()
        .resolution
        .kubernetes_ttl()
}

/// Lookup metrics recorded into a registry these tests do not read.
fn metrics() -> std::sync::Arc<KubeMetrics> {
    std::sync::Arc::new(KubeMetrics::register(
        &mut pullgate::telemetry::metrics_registry(),
    ))
}

fn image() -> ImageRef {
    format!("{REGISTRY}/team/app:v1")
        .parse()
        .expect("valid image")
}

fn pod(pull_secrets: &[&str], service_account: Option<&str>) -> PodSpec {
    PodSpec {
        image_pull_secrets: Some(
            pull_secrets
                .iter()
                .map(|name| LocalObjectReference {
                    name: (*name).to_owned(),
                })
                .collect(),
        ),
        service_account_name: service_account.map(str::to_owned),
        ..PodSpec::default()
    }
}

async fn fake_with_source(ttl: Duration) -> anyhow::Result<(FakeKube, KubeCredentialSource)> {
    let fake = FakeKube::start().await?;
    let source = KubeCredentialSource::new(fake.client()?, ttl, metrics());
    Ok((fake, source))
}

async fn gather(source: &KubeCredentialSource, spec: &PodSpec) -> PodCredentials {
    PodCredentials::gather(Some(source as &dyn CredentialSource), NS, spec, None).await
}

fn kinds(problems: &[SecretProblem]) -> Vec<(&str, &SecretProblemKind)> {
    problems
        .iter()
        .map(|p| (p.secret.as_str(), &p.kind))
        .collect()
}

#[tokio::test]
async fn pod_secret_is_found_and_matched() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("regcred", &[(REGISTRY, "alice", "s3cret")]),
    );

    let credentials = gather(&source, &pod(&["regcred"], None)).await;
    let for_image = credentials.for_image(&image());

    assert_eq!(for_image.candidates.len(), 1, "{for_image:?}");
    let credential = &for_image.candidates[0];
    assert_eq!(credential.username, "alice");
    assert_eq!(credential.password(), "s3cret");
    assert_eq!(
        credential.origin,
        CredentialOrigin::PodSecret {
            secret: "regcred".into()
        }
    );
    assert!(for_image.problems.is_empty(), "{:?}", for_image.problems);
    assert!(!credentials.api_unavailable());
    // The pod listed secrets, so its ServiceAccount is never read.
    assert_eq!(fake.requests(&service_account_path(NS, "default")), 0);
    Ok(())
}

#[tokio::test]
async fn service_account_secrets_when_the_pod_lists_none() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    fake.insert_service_account(NS, service_account("builder", &["sa-cred"]));
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("sa-cred", &[(REGISTRY, "bob", "pw")]),
    );

    let credentials = gather(&source, &pod(&[], Some("builder"))).await;
    let for_image = credentials.for_image(&image());

    assert_eq!(for_image.candidates.len(), 1, "{for_image:?}");
    assert_eq!(for_image.candidates[0].username, "bob");
    assert_eq!(
        for_image.candidates[0].origin,
        CredentialOrigin::ServiceAccountSecret {
            service_account: "builder".into(),
            secret: "sa-cred".into()
        }
    );
    assert_eq!(fake.requests(&service_account_path(NS, "builder")), 1);
    Ok(())
}

#[tokio::test]
async fn default_service_account_when_none_is_named() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    fake.insert_service_account(NS, service_account("default", &["default-cred"]));
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("default-cred", &[(REGISTRY, "carol", "pw")]),
    );

    let credentials = gather(&source, &PodSpec::default()).await;

    let for_image = credentials.for_image(&image());
    assert_eq!(for_image.candidates.len(), 1, "{for_image:?}");
    assert_eq!(for_image.candidates[0].username, "carol");
    Ok(())
}

#[tokio::test]
async fn pod_secrets_win_over_service_account_secrets() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    fake.insert_service_account(NS, service_account("builder", &["sa-cred"]));
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("sa-cred", &[(REGISTRY, "sa-user", "pw")]),
    );
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("pod-cred", &[(REGISTRY, "pod-user", "pw")]),
    );

    let credentials = gather(&source, &pod(&["pod-cred"], Some("builder"))).await;
    let usernames: Vec<_> = credentials
        .for_image(&image())
        .candidates
        .into_iter()
        .map(|c| c.username)
        .collect();

    assert_eq!(usernames, ["pod-user"]);
    assert_eq!(fake.requests(&service_account_path(NS, "builder")), 0);
    assert_eq!(fake.requests(&secret_path(NS, "sa-cred")), 0);
    Ok(())
}

#[tokio::test]
async fn missing_wrong_type_and_malformed_secrets_are_problems() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    fake.insert_secret(
        NS,
        typed_secret("opaque", "Opaque", &[(".dockerconfigjson", b"{}")]),
    );
    fake.insert_secret(
        NS,
        typed_secret(
            "broken",
            "kubernetes.io/dockerconfigjson",
            &[(".dockerconfigjson", br#"{"auths": {"#)],
        ),
    );
    fake.insert_secret(
        NS,
        typed_secret(
            "badauth",
            "kubernetes.io/dockerconfigjson",
            &[(
                ".dockerconfigjson",
                br#"{"auths": {"127.0.0.1:5000": {"auth": "hunter2!"}}}"#,
            )],
        ),
    );
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("elsewhere", &[("quay.io", "u", "p")]),
    );
    let spec = pod(
        &["missing", "opaque", "broken", "badauth", "elsewhere"],
        None,
    );

    let credentials = gather(&source, &spec).await;
    let for_image = credentials.for_image(&image());

    assert!(for_image.candidates.is_empty(), "{for_image:?}");
    let problems = kinds(&for_image.problems);
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert_eq!(problems[0], ("missing", &SecretProblemKind::NotFound));
    assert_eq!(
        problems[1],
        (
            "opaque",
            &SecretProblemKind::WrongType {
                found: "Opaque".into()
            }
        )
    );
    assert!(matches!(
        problems[2],
        ("broken", SecretProblemKind::MalformedJson { .. })
    ));
    assert!(matches!(
        problems[3],
        ("badauth", SecretProblemKind::MalformedBase64 { .. })
    ));
    assert_eq!(
        problems[4],
        (
            "elsewhere",
            &SecretProblemKind::NoEntryForRegistry {
                registry: REGISTRY.into()
            }
        )
    );
    let messages: Vec<String> = for_image.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages[0],
        r#"secret "missing" not found in namespace demo"#
    );
    assert_eq!(
        messages[1],
        r#"secret "opaque" has type Opaque, not kubernetes.io/dockerconfigjson"#
    );
    assert!(
        messages[2].starts_with(r#"secret "broken" .dockerconfigjson is not valid JSON: "#),
        "{}",
        messages[2]
    );
    assert!(
        messages.iter().all(|m| !m.contains("hunter2")),
        "{messages:?}"
    );
    assert_eq!(
        messages[4],
        r#"secret "elsewhere" has no entry for 127.0.0.1:5000"#
    );
    // The secret meant for quay.io is not a problem for a quay.io image.
    let quay: ImageRef = "quay.io/team/app:v1".parse()?;
    assert_eq!(credentials.for_image(&quay).problems.len(), 4);
    assert!(!credentials.api_unavailable());
    Ok(())
}

#[tokio::test]
async fn missing_service_account_is_a_problem() -> anyhow::Result<()> {
    let (_fake, source) = fake_with_source(default_ttl()).await?;

    let credentials = gather(&source, &pod(&[], Some("ghost"))).await;

    let problems = credentials.for_image(&image()).problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].to_string(),
        r#"ServiceAccount "ghost" not found in namespace demo"#
    );
    Ok(())
}

#[tokio::test]
async fn forbidden_reads_make_the_api_unavailable() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("regcred", &[(REGISTRY, "alice", "pw")]),
    );
    fake.forbid(&secret_path(NS, "regcred"));

    let credentials = gather(&source, &pod(&["regcred"], None)).await;

    assert!(credentials.api_unavailable());
    let problems = credentials.for_image(&image()).problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    let SecretProblemKind::ApiUnavailable { reason } = &problems[0].kind else {
        panic!("expected ApiUnavailable, got {problems:?}");
    };
    assert!(reason.contains("forbidden"), "{reason}");
    assert!(
        reason.contains("cannot get resource \"secrets\""),
        "{reason}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_gathers_share_one_request_and_the_ttl_serves_repeats() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("regcred", &[(REGISTRY, "alice", "pw")]),
    );
    // Slow answers keep the first request in flight while the other 49 ask.
    fake.set_delay(Duration::from_millis(300));
    let spec = pod(&["regcred"], None);
    let path = secret_path(NS, "regcred");

    let all = join_all((0..50).map(|_| gather(&source, &spec))).await;

    assert!(
        all.iter()
            .all(|c| c.for_image(&image()).candidates.len() == 1)
    );
    assert_eq!(fake.requests(&path), 1);

    fake.set_delay(Duration::ZERO);
    let again = gather(&source, &spec).await;
    assert_eq!(again.for_image(&image()).candidates.len(), 1);
    assert_eq!(
        fake.requests(&path),
        1,
        "a repeat within the TTL reads the cache"
    );
    Ok(())
}

#[tokio::test]
async fn answers_expire_after_the_ttl_and_not_found_is_cached_too() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(Duration::from_millis(300)).await?;
    let spec = pod(&["regcred"], None);
    let path = secret_path(NS, "regcred");

    let before = gather(&source, &spec).await;
    assert_eq!(
        kinds(before.problems()),
        [("regcred", &SecretProblemKind::NotFound)]
    );
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("regcred", &[(REGISTRY, "alice", "pw")]),
    );
    let cached = gather(&source, &spec).await;
    assert_eq!(
        cached.problems().len(),
        1,
        "not found is reused within the TTL"
    );
    assert_eq!(fake.requests(&path), 1);

    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = gather(&source, &spec).await;
    assert!(after.problems().is_empty(), "{:?}", after.problems());
    assert_eq!(after.for_image(&image()).candidates.len(), 1);
    assert_eq!(fake.requests(&path), 2);
    Ok(())
}

#[tokio::test]
async fn errors_are_not_cached() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    fake.forbid(&secret_path(NS, "regcred"));
    let spec = pod(&["regcred"], None);

    assert!(gather(&source, &spec).await.api_unavailable());
    assert!(gather(&source, &spec).await.api_unavailable());

    assert_eq!(fake.requests(&secret_path(NS, "regcred")), 2);
    Ok(())
}

#[tokio::test]
async fn slow_api_times_out_as_unavailable() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    let source = source.with_timeout(Duration::from_millis(200));
    fake.set_delay(Duration::from_secs(5));

    let started = std::time::Instant::now();
    let credentials = gather(&source, &pod(&["regcred"], None)).await;

    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(credentials.api_unavailable());
    let problems = credentials.problems();
    assert!(
        matches!(&problems[0].kind, SecretProblemKind::ApiUnavailable { reason } if reason.contains("did not answer within 200ms")),
        "{problems:?}"
    );
    Ok(())
}

#[tokio::test]
async fn without_an_api_secrets_are_not_verifiable() {
    let with_secrets =
        PodCredentials::gather(None, NS, &pod(&["regcred", "other"], None), None).await;
    assert!(with_secrets.api_unavailable());
    let problems = with_secrets.for_image(&image()).problems;
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| matches!(p.kind, SecretProblemKind::ApiUnavailable { .. }))
    );
    assert_eq!(
        problems[0].to_string(),
        r#"secret "regcred" in namespace demo could not be read: no Kubernetes API is available to read it"#
    );

    let without_secrets = PodCredentials::gather(None, NS, &PodSpec::default(), None).await;
    assert!(without_secrets.api_unavailable());
    let problems = without_secrets.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].secret, "");
    assert_eq!(problems[0].service_account.as_deref(), Some("default"));
    assert!(matches!(
        problems[0].kind,
        SecretProblemKind::ApiUnavailable { .. }
    ));
}

#[tokio::test]
async fn node_credentials_come_after_pod_secrets() -> anyhow::Result<()> {
    let (fake, source) = fake_with_source(default_ttl()).await?;
    fake.insert_secret(
        NS,
        dockerconfigjson_secret("regcred", &[(REGISTRY, "pod-user", "a")]),
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("config.json");
    std::fs::write(
        &file,
        r#"{"auths": {"127.0.0.1:5000": {"username": "node-user", "password": "b"}}}"#,
    )?;
    let node = pullgate::credentials::DockerConfig::from_file(&file)?;

    let credentials = PodCredentials::gather(
        Some(&source as &dyn CredentialSource),
        NS,
        &pod(&["regcred"], None),
        Some(std::sync::Arc::new(node)),
    )
    .await;
    let candidates = credentials.for_image(&image()).candidates;

    let users: Vec<_> = candidates.iter().map(|c| c.username.as_str()).collect();
    assert_eq!(users, ["pod-user", "node-user"]);
    assert_eq!(candidates[1].origin, CredentialOrigin::Node { file });
    Ok(())
}

#[tokio::test]
async fn unreachable_api_is_unavailable() -> anyhow::Result<()> {
    let fake = FakeKube::start().await?;
    let client = fake.client()?;
    drop(fake); // nothing listens on its port any more
    let source = KubeCredentialSource::new(client, default_ttl(), metrics())
        .with_timeout(Duration::from_secs(3));

    let credentials = gather(&source, &pod(&["regcred"], None)).await;

    assert!(credentials.api_unavailable());
    let problems = credentials.problems();
    assert!(
        matches!(&problems[0].kind, SecretProblemKind::ApiUnavailable { reason } if reason.starts_with("Kubernetes API unreachable")),
        "{problems:?}"
    );
    Ok(())
}
