//! Watched pull budgets (`rateLimitProbes`): the probe answers a Bearer challenge and reads Docker Hub's
//! `ratelimit-*` headers from a scripted registry on 127.0.0.1; a low budget turns into a `rate-limited`
//! warning on admissions of that registry's images, and into the `pullgate_registry_ratelimit_remaining`
//! gauge.

mod support;

use std::time::Duration;

use pullgate::config::RegistrySettings;
use pullgate::config::{RateLimitProbe, Settings};
use pullgate::facts::Budget;
use pullgate::registry::budget;
use pullgate::registry::hosts::RegistryHosts;
use pullgate::server::probes;
use support::registry::{self, ImageKind, Platform, RegistryOptions};
use support::scripted;
use support::webhook::{
    admit, app_with_resolver, bounded, one_container, pod_review, settings_for, shipped_policies,
    warnings,
};

fn upstream(settings: &Settings, registry: &str) -> pullgate::registry::hosts::Endpoint {
    RegistryHosts::load(&settings.registries, None)
        .expect("hosts")
        .endpoints(registry)
        .into_iter()
        .rfind(|e| !e.is_mirror)
        .expect("upstream endpoint")
}

#[tokio::test]
async fn the_probe_reads_the_budget_behind_a_bearer_challenge() {
    registry::install_crypto();
    bounded(async {
        let hub = scripted::budgeted(7).await;
        let mut settings = Settings::default();
        settings.registries.insert(
            hub.host.parse().expect("registry host"),
            RegistrySettings {
                insecure: true,
                ..Default::default()
            },
        );
        let endpoint = upstream(&settings, &hub.host);
        let client = budget::client(&endpoint, Duration::from_secs(5)).expect("client");
        let found = budget::probe(&client, &endpoint, "ratelimitpreview/test")
            .await
            .expect("probe");
        assert_eq!(
            found,
            Some(Budget {
                remaining: 7,
                limit: Some(100),
                window_seconds: Some(21600)
            })
        );
    })
    .await;
}

#[tokio::test]
async fn a_low_budget_warns_on_that_registrys_images_and_shows_in_metrics() {
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
        let hub = scripted::budgeted(3).await;
        let mut settings = settings_for(&[&reg]);
        settings.registries.insert(
            hub.host.parse().expect("registry host"),
            RegistrySettings {
                insecure: true,
                ..Default::default()
            },
        );
        let (app, updates, metrics) = app_with_resolver(&settings, None, shipped_policies());
        let review = pod_review(one_container(&format!("{}/demo/app:v1", reg.host())));
        assert!(warnings(&admit(&app, &review).await).is_empty());

        // The real registry's budget is watched through the scripted one (same probe, another address).
        let probe = RateLimitProbe {
            registry: reg.host().parse().expect("registry host"),
            repository: "ratelimitpreview/test".into(),
            interval_seconds: 1,
            warn_below: 20,
        };
        let task = tokio::spawn(probes::keep_probing(
            probe,
            upstream(&settings, &hub.host),
            updates.clone(),
            metrics.clone(),
        ));
        let gauge = format!(
            r#"pullgate_registry_ratelimit_remaining{{registry="{}"}} 3"#,
            reg.host()
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
        let found = warnings(&admit(&app, &review).await);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains(&format!(
                "[rate-limited] {} pull budget is low: 3 of 100 per 6 h left",
                reg.host()
            )),
            "{found:?}"
        );

        // Back above the threshold: no warning.
        updates.set_budget(
            reg.host(),
            Budget {
                remaining: 80,
                limit: Some(100),
                window_seconds: Some(21600),
            },
            20,
        );
        assert!(warnings(&admit(&app, &review).await).is_empty());
    })
    .await;
}
