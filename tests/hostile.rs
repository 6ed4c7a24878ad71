//! The registry conversation against registries that misbehave on purpose (scripted servers on
//! 127.0.0.1): endless and huge bodies, huge indexes, broken token services, a `HEAD` that says 404 while
//! `GET` would answer, `429` anywhere. Every admission answers within its budget, with the right rule and
//! a true message; where pullgate cannot know, it warns — never as a verdict on credentials.

mod support;

use std::time::Duration;

use pullgate::config::Settings;
use support::hostile::{self, BUDGET, Hit, admit_image, answer, reach, warns, with_token_service};
use support::registry;
use support::webhook::{bounded, message};

fn is_manifest(hit: &Hit) -> bool {
    hit.path.contains("/manifests/")
}

#[tokio::test]
async fn endless_and_huge_manifests_are_cut_off_with_a_clear_warning() {
    registry::install_crypto();
    bounded(async {
        for tls in [false, true] {
            for (total, content_length) in [
                (2u64 << 30, false),
                (2u64 << 30, true),
                (10 << 20, true),
                (10 << 20, false),
            ] {
                let server = hostile::start(
                    "127.0.0.1",
                    tls,
                    answer(move |hit, _| {
                        if is_manifest(hit) {
                            hostile::endless(total, content_length)
                        } else {
                            hostile::status(404, "{}")
                        }
                    }),
                )
                .await;
                let mut settings = Settings::default();
                reach(&mut settings, &server);
                let (response, took) =
                    admit_image(&settings, &format!("{}/demo/app:v1", server.host)).await;
                warns(
                    &response,
                    took,
                    "registry-reachable",
                    "manifest larger than 4 MiB",
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn an_index_with_too_many_entries_is_not_verified() {
    registry::install_crypto();
    bounded(async {
        let server = hostile::start(
            "127.0.0.1",
            false,
            answer(|_, _| hostile::manifest(hostile::index(2_000, 1))),
        )
        .await;
        let mut settings = Settings::default();
        reach(&mut settings, &server);
        let (response, took) =
            admit_image(&settings, &format!("{}/demo/app:v1", server.host)).await;
        warns(
            &response,
            took,
            "registry-reachable",
            "lists 2000 manifests, more than the 1024",
        );
    })
    .await;
}

/// A registry that challenges for a token from `/token` on itself, answered by `token`.
#[tokio::test]
async fn token_service_failures_never_read_as_bad_credentials() {
    registry::install_crypto();
    bounded(async {
        let garbage = with_token_service(|_| hostile::status(200, "<html>oops</html>")).await;
        let unavailable = with_token_service(|_| hostile::status(503, "down")).await;
        let huge = with_token_service(|_| hostile::endless(16 << 20, false)).await;
        let hanging = hostile::start(
            "127.0.0.1",
            false,
            std::sync::Arc::new(|hit: Hit, base: String| {
                Box::pin(async move {
                    if hit.path.starts_with("/token") {
                        tokio::time::sleep(Duration::from_secs(20)).await;
                    }
                    hostile::bearer_challenge(&format!("{base}/token"))
                }) as futures::future::BoxFuture<'static, _>
            }),
        )
        .await;
        for (server, text) in [
            (
                &garbage,
                "answered something that is not a token".to_owned(),
            ),
            (&unavailable, "answered 503".to_owned()),
            (&huge, "answered more than 64 KiB".to_owned()),
            (&hanging, "did not answer within 3 s".to_owned()),
        ] {
            let mut settings = Settings::default();
            reach(&mut settings, server);
            settings.resolution.read_timeout_seconds = 3.0;
            let (response, took) =
                admit_image(&settings, &format!("{}/library/app:v1", server.host)).await;
            warns(
                &response,
                took,
                "registry-reachable",
                &format!("token service {} {text}", server.host),
            );
        }
    })
    .await;
}

/// A registry behind Bearer auth whose token service is `realm`; it takes only `Bearer good-token`.
#[tokio::test]
async fn a_head_404_is_not_found_as_containerd_reads_it() {
    registry::install_crypto();
    bounded(async {
        let server = hostile::start(
            "127.0.0.1",
            false,
            answer(|hit, _| match hit.method.as_str() {
                "HEAD" => hostile::status(404, ""),
                _ => hostile::manifest(hostile::index(1, 2)),
            }),
        )
        .await;
        let mut settings = Settings::default();
        reach(&mut settings, &server);
        // Where pulls are counted, tags are resolved with a HEAD first.
        if let Some(entry) = settings.registries.get_mut(server.host.as_str()) {
            entry.pull_quota = Some(true);
        }
        let (response, took) =
            admit_image(&settings, &format!("{}/demo/app:v1", server.host)).await;
        assert!(took < BUDGET);
        assert_eq!(response["allowed"], false, "{response}");
        assert!(
            message(&response).contains("[image-exists] tag \"v1\" not found"),
            "{response}"
        );
        assert_eq!(server.count("GET", "/manifests/"), 0, "{:?}", server.hits());
    })
    .await;
}

#[tokio::test]
async fn too_many_requests_anywhere_is_rate_limited() {
    registry::install_crypto();
    bounded(async {
        const BODY: &str =
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        let on_head = hostile::start(
            "127.0.0.1",
            false,
            answer(|hit, _| match hit.method.as_str() {
                "HEAD" => hostile::status(429, ""),
                _ => hostile::manifest(hostile::index(1, 2)),
            }),
        )
        .await;
        let on_get = hostile::start("127.0.0.1", false, answer(|_, _| hostile::status(429, BODY))).await;
        let on_token = with_token_service(|_| hostile::status(429, BODY)).await;
        for (server, quota) in [(&on_head, true), (&on_get, false), (&on_token, false)] {
            let mut settings = Settings::default();
            reach(&mut settings, server);
            if let Some(entry) = settings.registries.get_mut(server.host.as_str()) {
                entry.pull_quota = Some(quota);
            }
            let (response, took) =
                admit_image(&settings, &format!("{}/library/app:v1", server.host)).await;
            warns(&response, took, "rate-limited", "rate limited (429)");
        }
    })
    .await;
}

#[tokio::test]
async fn registry_error_text_reaches_an_answer_only_from_a_configured_registry() {
    registry::install_crypto();
    bounded(async {
        const SECRET: &str = "db_password=hunter2 host=10.1.2.3";
        const BODY: &str =
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"db_password=hunter2 host=10.1.2.3"}]}"#;
        let server = hostile::start(
            "127.0.0.1",
            true,
            answer(|hit, _| match hit.method.as_str() {
                "HEAD" => hostile::status(500, SECRET),
                _ => hostile::status(429, BODY),
            }),
        )
        .await;
        let ca = server.ca_path.clone().expect("TLS");
        // Not in `registries:`: trusted for TLS through the nodes' certs.d only.
        let hosts = tempfile::tempdir().expect("tempdir");
        let dir = hosts.path().join(&server.host);
        std::fs::create_dir_all(&dir).expect("hosts dir");
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "[host.\"https://{}\"]\n  ca = {:?}\n",
                server.host,
                ca.display().to_string()
            ),
        )
        .expect("hosts.toml");
        let mut unconfigured = Settings::default();
        support::webhook::allow_loopback(&mut unconfigured);
        unconfigured.containerd_hosts_dir = Some(hosts.path().to_owned());
        let mut configured = Settings::default();
        reach(&mut configured, &server);
        for (settings, quoted) in [(&unconfigured, false), (&configured, true)] {
            let image = format!("{}/library/app:v1", server.host);
            let (response, took) = admit_image(settings, &image).await;
            warns(
                &response,
                took,
                "rate-limited",
                "rate limited (429): TOOMANYREQUESTS",
            );
            let text = response.to_string();
            assert_eq!(text.contains("hunter2"), quoted, "{text}");
        }
    })
    .await;
}
