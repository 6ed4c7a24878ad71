//! P6: the requests a cold lookup costs, counted in a real registry's access log (and its token
//! service's count), next to the minimum the distribution protocol allows — for a pod that gives its
//! command (nothing is left to the image config) and, for the start rules, for one that does not (the
//! config of what its node pulls is read too).

use super::*;
use support::registry::{Auth, Platform};

/// The registry requests one admission of `image` makes, against an app built as `serve` builds it.
async fn requests_for(
    reg: &TestRegistry,
    settings: &Settings,
    kube: Option<kube::Client>,
    image: &str,
    command: bool,
) -> anyhow::Result<usize> {
    let mut settings = settings.clone();
    settings
        .network
        .allow_cidrs
        .push("127.0.0.0/8".parse().expect("range"));
    let mut metrics = pullgate::telemetry::metrics_registry();
    let wired = pullgate::wiring::serve(&settings, kube, &mut metrics)?;
    let before = reg.requests().len();
    let mut container = json!({"name": "app", "image": image});
    if command {
        container["command"] = json!(["/app"]);
    }
    let subject = pullgate::engine::Subject::of_workload(
        pullgate::workload::Workload::from_object(
            pullgate::workload::WorkloadKind::Pod,
            &json!({"metadata": {"name": "p", "namespace": "demo"},
                "spec": {"containers": [container]}}),
        )?,
        "demo",
    );
    let policies =
        pullgate::policy::PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))?;
    pullgate::engine::decide(&subject, &policies, Some(&wired.resolver)).await;
    Ok(reg.requests().len() - before)
}

fn row(name: &'static str, measured: usize, limit: usize) -> Row {
    Row {
        name,
        measured: format!("{measured} requests"),
        target: match limit {
            1 => "1",
            2 => "2",
            _ => "3",
        },
        verdict: yes(measured <= limit),
    }
}

pub async fn p6_round_trips() -> anyhow::Result<Vec<Row>> {
    let plain = registry::start(RegistryOptions::default()).await?;
    let multi = ImageKind::OciIndex(vec![Platform::linux("amd64"), Platform::linux("arm64")]);
    registry::push_image(&plain, "rt/multi", "v1", multi).await?;
    registry::push_image(&plain, "rt/single", "v1", amd64()).await?;
    let mut settings = settings_for(&plain);
    let multi = format!("{}/rt/multi:v1", plain.host());
    let single = format!("{}/rt/single:v1", plain.host());
    let index = requests_for(&plain, &settings, None, &multi, true).await?;
    let index_config = requests_for(&plain, &settings, None, &multi, false).await?;
    let single_config = requests_for(&plain, &settings, None, &single, false).await?;
    let single = requests_for(&plain, &settings, None, &single, true).await?;

    let basic = registry::start(RegistryOptions {
        auth: Auth::basic("alice", "s3cret"),
        storage: Some(plain.storage_dir().to_owned()),
        ..Default::default()
    })
    .await?;
    settings.registries.insert(
        basic.host().parse().expect("registry host"),
        RegistrySettings {
            insecure: true,
            ..Default::default()
        },
    );
    let node = tempfile::tempdir()?;
    let file = node.path().join("config.json");
    std::fs::write(
        &file,
        json!({"auths": {basic.host(): {"username": "alice", "password": "s3cret"}}}).to_string(),
    )?;
    settings.node_credentials = Some(file);
    let behind_basic = requests_for(
        &basic,
        &settings,
        None,
        &format!("{}/rt/single:v1", basic.host()),
        true,
    )
    .await?;
    Ok(vec![
        row(
            "P6 cold lookup of an image index (index + the amd64 manifest, for image-size)",
            index,
            2,
        ),
        row(
            "P6 cold lookup of a single-platform image (manifest + config)",
            single,
            2,
        ),
        row(
            "P6 an index, no command given (+ the amd64 entry's config, for the start rules)",
            index_config,
            3,
        ),
        row(
            "P6 a single-platform image, no command given (its config, read once for both)",
            single_config,
            2,
        ),
        row(
            "P6 the same behind Basic auth (challenge + manifest + config)",
            behind_basic,
            3,
        ),
    ])
}
