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
