//! Pull budgets: every answer of a registry's own endpoint is read for Docker Hub's `ratelimit-*`
//! headers (passively), and `rateLimitProbes` ask anonymously behind the registry's Bearer challenge. A
//! low budget turns into a `rate-limited` warning on admissions of that registry's images and into the
//! `pullgate_registry_ratelimit_remaining` gauge. Registries are real (docker-registry behind a proxy
//! that adds the headers) or scripted, on 127.0.0.1.

mod support;

use std::time::Duration;

use pullgate::config::{RateLimitProbe, Settings};
use pullgate::facts::Budget;
use pullgate::server::probes;
use support::registry::{self, ImageKind, Platform, RegistryOptions};
use support::scripted;
use support::webhook::{
    admit, app_with_resolver, bounded, insecure, one_container, pod_review, shipped_policies,
    warnings,
};

fn budget(remaining: u64) -> Budget {
    Budget {
        remaining,
        limit: Some(100),
        window_seconds: Some(21600),
    }
}

#[tokio::test]
async fn the_probe_reads_the_budget_behind_a_bearer_challenge() {
    registry::install_crypto();
    bounded(async {
        let hub = scripted::budgeted(7).await;
        let mut settings = Settings::default();
        insecure(&mut settings, &hub.host);
        let mut metrics = pullgate::telemetry::metrics_registry();
        let wired = pullgate::wiring::serve(&settings, None, &mut metrics).expect("wired");
        let found = wired
            .client
            .budget(&hub.host, "ratelimitpreview/test")
            .await
            .expect("probe");
        assert_eq!(found, Some(budget(7)));
    })
    .await;
}

#[tokio::test]
async fn budgets_on_registry_answers_warn_on_that_registrys_images_and_show_in_metrics() {
    registry::install_crypto();
    bounded(async {
        let reg = registry::start(RegistryOptions::default())
            .await
            .expect("registry");
        registry::push_image(
            &reg,
            "demo/app",
            "v1",
            ImageKind::single(Platform::linux("amd64")),
        )
        .await
        .expect("push");
        let hub = scripted::proxy_with_headers(
            reg.host().to_owned(),
            Duration::ZERO,
            vec![
                ("ratelimit-limit", "100;w=21600".into()),
                ("ratelimit-remaining", "3;w=21600".into()),
            ],
        )
        .await;
        let mut settings = Settings::default();
        insecure(&mut settings, &hub.host);
        let (app, updates, metrics) = app_with_resolver(&settings, None, shipped_policies());
        let review = pod_review(one_container(&format!("{}/demo/app:v1", hub.host)));
        let found = warnings(&admit(&app, &review).await);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains(&format!(
                "[rate-limited] {} pull budget is low: 3 of 100 per 6 h left",
                hub.host
            )),
            "{found:?}"
        );
        let gauge = format!(
            r#"pullgate_registry_ratelimit_remaining{{registry="{}"}} 3"#,
            hub.host
        );
        assert!(metrics.encode().contains(&gauge), "{}", metrics.encode());

        // Back above the threshold: no warning.
        updates.set_budget(&hub.host, budget(80), 20);
        assert!(warnings(&admit(&app, &review).await).is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_watched_registry_s_low_budget_warns_and_shows_in_metrics() {
    registry::install_crypto();
    bounded(async {
        let hub = scripted::budgeted(3).await;
        let mut settings = Settings::default();
        insecure(&mut settings, &hub.host);
        let probe = RateLimitProbe {
            registry: hub.host.parse().expect("registry host"),
            repository: "ratelimitpreview/test".into(),
            interval_seconds: 1,
            warn_below: 20,
        };
        settings.rate_limit_probes.push(probe.clone());
        let mut registry = pullgate::telemetry::metrics_registry();
        let wired = pullgate::wiring::serve(&settings, None, &mut registry).expect("wired");
        let metrics = std::sync::Arc::new(pullgate::server::Metrics::new(registry));
        let task = tokio::spawn(probes::keep_probing(
            probe,
            wired.client.clone(),
            wired.updates.clone(),
        ));
        let gauge = format!(
            r#"pullgate_registry_ratelimit_remaining{{registry="{}"}} 3"#,
            hub.host
        );
        let mut seen = false;
        for _ in 0..50 {
            if metrics.encode().contains(&gauge) {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.abort();
        assert!(seen, "{}", metrics.encode());
        // The scripted registry serves no image: what matters is the budget warning beside its failure.
        let app = support::webhook::router_for(wired.resolver, metrics, shipped_policies());
        let review = pod_review(one_container(&format!("{}/demo/app:v1", hub.host)));
        let found = warnings(&admit(&app, &review).await);
        assert!(
            found.iter().any(|w| w.contains(&format!(
                "[rate-limited] {} pull budget is low: 3 of 100 per 6 h left",
                hub.host
            ))),
            "{found:?}"
        );
    })
    .await;
}
