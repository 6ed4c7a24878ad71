//! Where registry requests may go: no credential reaches a token service or redirect target on another
//! site, nothing is dialled on a refused address (127.0.0.2 stands in for link-local and metadata
//! addresses), `serve` refuses loopback in every spelling while `check` allows it, redirects are bounded,
//! and a registry the policies do not allow is never contacted. Scripted servers on loopback record every
//! request they get.

mod support;

use pullgate::config::{RegistrySettings, Settings};
use serde_json::{Value, json};
use support::hostile::{self, admit_image, answer, reach, warns};
use support::kube::{FakeKube, dockerconfigjson_secret};
use support::registry;
use support::webhook::{
    admit, app, bounded, insecure, message, one_container, pod_review, policy_text,
    shipped_policies, warnings,
};

async fn registry_with_realm(realm: String) -> hostile::Server {
    hostile::start(
        "127.0.0.1",
        false,
        answer(move |hit, _| {
            if hit.authorization.as_deref() == Some("Bearer good-token") {
                hostile::consistent_image(&hit.path, 7)
            } else {
                hostile::bearer_challenge(&realm)
            }
        }),
    )
    .await
}

/// A token service that hands `good-token` to Basic credentials and `anonymous-token` to anyone else.
async fn token_recorder(ip: &str) -> hostile::Server {
    hostile::start(
        ip,
        false,
        answer(|hit, _| {
            let token = if hit
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))
            {
                "good-token"
            } else {
                "anonymous-token"
            };
            hostile::status(
                200,
                if token == "good-token" {
                    r#"{"token":"good-token"}"#
                } else {
                    r#"{"token":"anonymous-token"}"#
                },
            )
        }),
    )
    .await
}

/// Admit `image` with a pull secret for its registry, read from a fake Kubernetes API.
async fn admit_with_secret(settings: &Settings, registry: &str, image: &str) -> Value {
    let kube = FakeKube::start().await.expect("fake API");
    kube.insert_secret(
        "demo",
        dockerconfigjson_secret("regcred", &[(registry, "alice", "s3cret")]),
    );
    let app = app(
        settings,
        Some(kube.client().expect("client")),
        shipped_policies(),
    );
    let spec = json!({"imagePullSecrets": [{"name": "regcred"}],
        "containers": [{"name": "app", "image": image}]});
    admit(&app, &pod_review(spec)).await
}

#[tokio::test]
async fn credentials_never_reach_a_token_service_on_another_site() {
    registry::install_crypto();
    bounded(async {
        // `localhost` is another site than `127.0.0.1`, though the same machine.
        let recorder = token_recorder("127.0.0.1").await;
        let port = recorder.host.rsplit_once(':').expect("port").1;
        let realm = format!("http://localhost:{port}/token");
        let reg = registry_with_realm(realm.clone()).await;
        let mut settings = Settings::default();
        reach(&mut settings, &reg);
        let image = format!("{}/team/app:v1", reg.host);
        let response = admit_with_secret(&settings, &reg.host, &image).await;
        assert!(
            recorder.hits().iter().all(|h| h.authorization.is_none()),
            "{:?}",
            recorder.hits()
        );
        assert!(
            reg.hits().iter().all(|h| !h
                .authorization
                .as_deref()
                .unwrap_or("")
                .starts_with("Basic")),
            "{:?}",
            reg.hits()
        );
        assert_eq!(response["allowed"], true, "{response}");
        let found = warnings(&response);
        assert!(
            found.iter().any(|w| w.contains("[registry-reachable]")
                && w.contains(&format!(
                    "its token service localhost:{port} is on another site"
                ))),
            "{found:?}"
        );

        // Listed in tokenRealms, the same token service gets them, and the pull is verified.
        let mut listed = settings.clone();
        if let Some(entry) = listed.registries.get_mut(reg.host.as_str()) {
            entry.token_realms = vec![realm];
        }
        let response = admit_with_secret(&listed, &reg.host, &image).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(warnings(&response).is_empty(), "{response}");
        assert!(
            recorder.hits().iter().any(|h| h
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))),
            "{:?}",
            recorder.hits()
        );
    })
    .await;
}

#[tokio::test]
async fn nothing_is_dialled_on_a_denied_address() {
    registry::install_crypto();
    bounded(async {
        // 127.0.0.2 stands in for a link-local or metadata address: denied, it must see nothing.
        let denied = token_recorder("127.0.0.2").await;
        let mut settings = Settings::default();
        settings
            .network
            .deny_cidrs
            .push("127.0.0.2/32".parse().expect("range"));
        // A realm there.
        let reg = registry_with_realm(format!("http://{}/token", denied.host)).await;
        reach(&mut settings, &reg);
        let (response, took) = admit_image(&settings, &format!("{}/team/app:v1", reg.host)).await;
        warns(
            &response,
            took,
            "registry-reachable",
            "token service address 127.0.0.2 is in a denied range: refused by network.denyCIDRs",
        );
        // A registry there.
        insecure(&mut settings, &denied.host);
        let (response, took) =
            admit_image(&settings, &format!("{}/team/app:v1", denied.host)).await;
        warns(
            &response,
            took,
            "registry-reachable",
            "registry address 127.0.0.2 is in a denied range: refused by network.denyCIDRs",
        );
        assert!(denied.hits().is_empty(), "{:?}", denied.hits());
    })
    .await;
}

#[tokio::test]
async fn serve_refuses_loopback_in_every_spelling_and_metadata_addresses_by_default() {
    registry::install_crypto();
    bounded(async {
        let listener = hostile::start(
            "127.0.0.1",
            false,
            answer(|_, _| hostile::manifest(hostile::index(1, 3))),
        )
        .await;
        let port = listener.host.rsplit_once(':').expect("port").1.to_owned();
        let mut settings = Settings::default();
        let spellings = [
            ("127.0.0.1", "loopback"),
            ("2130706433", "loopback"),
            ("0x7f.0.0.1", "loopback"),
            ("127.1", "loopback"),
            ("[::ffff:7f00:1]", "loopback"),
            ("localhost", "loopback"),
            ("169.254.169.254", "a cloud metadata address"),
            ("0.0.0.0", "unspecified"),
        ];
        for (host, _) in &spellings {
            settings.registries.insert(
                format!("{host}:{port}").parse().expect("registry host"),
                RegistrySettings {
                    insecure: true,
                    ..RegistrySettings::default()
                },
            );
        }
        // As `serve` builds it, with no network settings: no test allowance for loopback here.
        let mut metrics = pullgate::telemetry::metrics_registry();
        let wired = pullgate::wiring::serve(&settings, None, &mut metrics).expect("wired");
        for (host, class) in spellings {
            let image: pullgate::image::ImageRef =
                format!("{host}:{port}/demo/app:v1").parse().expect("image");
            let error = pullgate::registry::ImageResolver::manifest(
                wired.client.as_ref(),
                &image,
                None,
                true,
                &pullgate::registry::RequestCounter::default(),
            )
            .await
            .expect_err("refused");
            assert!(
                error.to_string().contains(&format!("is {class}")),
                "{host}: {error}"
            );
        }
        assert!(listener.hits().is_empty(), "{:?}", listener.hits());
    })
    .await;
}

#[tokio::test]
async fn redirects_are_bounded_and_carry_no_credentials_elsewhere() {
    registry::install_crypto();
    bounded(async {
        // A loop.
        let looping = hostile::start(
            "127.0.0.1",
            false,
            answer(|hit, base| hostile::redirect(&format!("{base}{}", hit.path))),
        )
        .await;
        let mut settings = Settings::default();
        reach(&mut settings, &looping);
        let (response, took) =
            admit_image(&settings, &format!("{}/demo/app:v1", looping.host)).await;
        warns(
            &response,
            took,
            "registry-reachable",
            "more than 5 redirects",
        );
        assert_eq!(looping.hits().len(), 6, "{:?}", looping.hits());

        // To another host, from a registry that wants Basic credentials.
        let elsewhere = hostile::start(
            "127.0.0.1",
            false,
            answer(|_, _| hostile::manifest(hostile::index(1, 5))),
        )
        .await;
        let port = elsewhere.host.rsplit_once(':').expect("port").1.to_owned();
        let basic = hostile::start(
            "127.0.0.1",
            false,
            answer(move |hit, _| match &hit.authorization {
                Some(_) => hostile::redirect(&format!("http://localhost:{port}{}", hit.path)),
                None => {
                    let mut response = hostile::status(401, "{}");
                    response.headers_mut().insert(
                        "www-authenticate",
                        r#"Basic realm="r""#.parse().expect("value"),
                    );
                    response
                }
            }),
        )
        .await;
        let mut settings = Settings::default();
        reach(&mut settings, &basic);
        let image = format!("{}/team/app:v1", basic.host);
        let response = admit_with_secret(&settings, &basic.host, &image).await;
        assert_eq!(response["allowed"], true, "{response}");
        assert!(
            basic.hits().iter().any(|h| h.authorization.is_some()),
            "the registry itself got them: {:?}",
            basic.hits()
        );
        assert!(!elsewhere.hits().is_empty());
        assert!(
            elsewhere.hits().iter().all(|h| h.authorization.is_none()),
            "{:?}",
            elsewhere.hits()
        );

        // From HTTPS to plain HTTP.
        let plain = hostile::start(
            "127.0.0.1",
            false,
            answer(|_, _| hostile::manifest(hostile::index(1, 6))),
        )
        .await;
        let target = plain.base.clone();
        let tls = hostile::start(
            "127.0.0.1",
            true,
            answer(move |hit, _| hostile::redirect(&format!("{target}{}", hit.path))),
        )
        .await;
        let mut settings = Settings::default();
        reach(&mut settings, &tls);
        let (response, took) = admit_image(&settings, &format!("{}/demo/app:v1", tls.host)).await;
        warns(
            &response,
            took,
            "registry-tls",
            "redirect from HTTPS to plain HTTP refused",
        );
        assert!(plain.hits().is_empty(), "{:?}", plain.hits());
    })
    .await;
}

#[tokio::test]
async fn a_registry_the_policies_do_not_allow_is_never_contacted() {
    registry::install_crypto();
    bounded(async {
        let server = hostile::start(
            "127.0.0.1",
            false,
            answer(|_, _| hostile::manifest(hostile::index(1, 2))),
        )
        .await;
        let mut settings = Settings::default();
        reach(&mut settings, &server);
        let policies = policy_text(
            "registry-allowed: {allow: [\"registry.example.com/*\"]}\nimage-exists: {}\nplatform-supported: {}",
        );
        let app = app(&settings, None, policies);
        let response = admit(
            &app,
            &pod_review(one_container(&format!("{}/demo/app:v1", server.host))),
        )
        .await;
        assert_eq!(response["allowed"], false, "{response}");
        assert!(message(&response).contains("[registry-allowed]"), "{response}");
        assert!(server.hits().is_empty(), "{:?}", server.hits());
    })
    .await;
}

#[tokio::test]
async fn check_allows_loopback_and_still_refuses_metadata_addresses() {
    registry::install_crypto();
    bounded(async {
        let server = hostile::start(
            "127.0.0.1",
            false,
            answer(|hit, _| hostile::consistent_image(&hit.path, 4)),
        )
        .await;
        // No network settings at all: `check` runs on the user's own machine, where loopback is normal.
        let mut settings = Settings::default();
        for host in [server.host.clone(), "169.254.169.254:5000".to_owned()] {
            settings.registries.insert(
                host.parse().expect("registry host"),
                RegistrySettings {
                    insecure: true,
                    ..RegistrySettings::default()
                },
            );
        }
        let access = pullgate::wiring::RegistryAccess {
            docker_config: pullgate::credentials::LocalDockerConfig::Off,
            helper_path: None,
            cache_dir: None,
        };
        let wired = pullgate::wiring::check(
            &settings,
            &access,
            pullgate::credentials::ManifestCredentials::new(Vec::new(), Vec::new()),
            &Default::default(),
            &mut prometheus_client::registry::Registry::default(),
        )
        .await
        .expect("wired");
        let policies = shipped_policies();
        for (image, expected) in [
            (format!("{}/demo/app:v1", server.host), None),
            (
                "169.254.169.254:5000/demo/app:v1".to_owned(),
                Some("registry address 169.254.169.254 is a cloud metadata address"),
            ),
        ] {
            let workload = pullgate::workload::Workload::from_object(
                pullgate::workload::WorkloadKind::Pod,
                &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": image}]}}),
            )
            .expect("pod");
            let subject = pullgate::engine::Subject::of_workload(workload, "default");
            let decision =
                pullgate::engine::decide(&subject, &policies, Some(&wired.resolver)).await;
            let messages: Vec<String> = decision
                .verdict
                .findings
                .iter()
                .map(|f| f.message.clone())
                .collect();
            match expected {
                None => assert!(messages.is_empty(), "{image}: {messages:?}"),
                Some(text) => assert!(
                    messages.iter().any(|m| m.contains(text)),
                    "{image}: {messages:?}"
                ),
            }
        }
        // The index, its amd64 manifest (image-size) and that manifest's config (the pod gives no
        // command): loopback reached, the metadata address never.
        assert_eq!(server.hits().len(), 3, "{:?}", server.hits());
    })
    .await;
}
