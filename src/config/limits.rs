//! Range checks for every numeric setting, so that no value in `--config` can panic pullgate or make it
//! useless: durations are finite, positive and bounded (a `Duration` from `-1` or `1e300` panics;
//! a timer interval of 0 panics), counts and sizes are within sane ranges. Each refusal names the key
//! and says the allowed range.

use super::Settings;

/// A refused setting: its key path and why.
pub type Refusal = (String, String);

/// The longest timeout or interval, in seconds (one hour).
const MAX_SECONDS: u64 = 3600;
/// The longest cache lifetime, in seconds (a year).
const MAX_TTL_SECONDS: u64 = 366 * 24 * 3600;
const MIB: u64 = 1024 * 1024;

/// Check every numeric setting.
pub fn check(settings: &Settings) -> Result<(), Refusal> {
    let s = &settings.server;
    whole(
        "server.maxRequestBytes",
        s.max_request_bytes as u64,
        1024,
        1024 * MIB,
    )?;
    for (key, value) in [
        ("headerReadTimeoutSeconds", s.header_read_timeout_seconds),
        ("handshakeTimeoutSeconds", s.handshake_timeout_seconds),
        ("bodyReadTimeoutSeconds", s.body_read_timeout_seconds),
        ("reloadIntervalSeconds", s.reload_interval_seconds),
        (
            "http2KeepaliveIntervalSeconds",
            s.http2_keepalive_interval_seconds,
        ),
    ] {
        whole(&format!("server.{key}"), value, 1, MAX_SECONDS)?;
    }
    whole(
        "server.idleTimeoutSeconds",
        s.idle_timeout_seconds,
        1,
        24 * MAX_SECONDS,
    )?;
    whole(
        "server.shutdownGraceSeconds",
        s.shutdown_grace_seconds,
        0,
        MAX_SECONDS,
    )?;
    whole(
        "server.maxConnections",
        s.max_connections as u64,
        1,
        1_000_000,
    )?;
    whole(
        "server.http2MaxConcurrentStreams",
        u64::from(s.http2_max_concurrent_streams),
        1,
        10_000,
    )?;

    let r = &settings.resolution;
    for (key, value) in [
        ("budgetSeconds", r.budget_seconds),
        ("perImageTimeoutSeconds", r.per_image_timeout_seconds),
        ("connectTimeoutSeconds", r.connect_timeout_seconds),
        ("readTimeoutSeconds", r.read_timeout_seconds),
    ] {
        seconds(&format!("resolution.{key}"), value, 300.0)?;
    }
    whole(
        "resolution.perRegistryConcurrency",
        r.per_registry_concurrency as u64,
        1,
        10_000,
    )?;
    for (key, value) in [
        ("tagTtlSeconds", r.tag_ttl_seconds),
        ("notFoundTtlSeconds", r.not_found_ttl_seconds),
        ("kubernetesTtlSeconds", r.kubernetes_ttl_seconds),
    ] {
        whole(&format!("resolution.{key}"), value, 0, MAX_TTL_SECONDS)?;
    }
    whole(
        "resolution.cacheMaxBytes",
        r.cache_max_bytes,
        MIB,
        64 * 1024 * MIB,
    )?;
    whole(
        "resolution.maxManifestBytes",
        r.max_manifest_bytes,
        1024,
        1024 * MIB,
    )?;
    whole(
        "resolution.maxIndexEntries",
        r.max_index_entries as u64,
        1,
        1_000_000,
    )?;

    for (i, probe) in settings.rate_limit_probes.iter().enumerate() {
        whole(
            &format!("rateLimitProbes[{i}].intervalSeconds"),
            probe.interval_seconds,
            1,
            24 * MAX_SECONDS,
        )?;
    }
    if let Some(audit) = &settings.audit {
        whole(
            "audit.intervalSeconds",
            audit.interval_seconds,
            1,
            24 * MAX_SECONDS,
        )?;
        whole(
            "audit.maxRequestsPerRegistryPerInterval",
            u64::from(audit.max_requests_per_registry_per_interval),
            1,
            1_000_000,
        )?;
        whole("audit.maxSeries", audit.max_series as u64, 1, 10_000_000)?;
        whole(
            "audit.leaseDurationSeconds",
            audit.lease_duration_seconds,
            2,
            MAX_SECONDS,
        )?;
    }
    if let Some(providers) = &settings.credential_providers {
        seconds(
            "credentialProviders.timeoutSeconds",
            providers.timeout_seconds,
            600.0,
        )?;
    }
    Ok(())
}

/// A duration in seconds: finite, more than 0, at most `max`.
fn seconds(key: &str, value: f64, max: f64) -> Result<(), Refusal> {
    let refuse = |why: String| Err((key.to_owned(), why));
    if !value.is_finite() {
        return refuse(format!("must be a number of seconds, not {value}"));
    }
    if value <= 0.0 {
        return refuse(format!("must be more than 0 seconds (found {value})"));
    }
    if value > max {
        return refuse(format!("must be at most {max} seconds (found {value})"));
    }
    Ok(())
}

/// A whole number within `least..=most`.
fn whole(key: &str, value: u64, least: u64, most: u64) -> Result<(), Refusal> {
    if value < least {
        return Err((
            key.to_owned(),
            format!("must be at least {least} (found {value})"),
        ));
    }
    if value > most {
        return Err((
            key.to_owned(),
            format!("must be at most {most} (found {value})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rstest::rstest;

    use super::super::Settings;

    /// Every numeric key, with the YAML that sets it inside its section.
    #[rustfmt::skip] // one key per line: the table reads as a table
    #[rstest]
    #[case("server.maxRequestBytes", "server: {maxRequestBytes: V}")]
    #[case("server.headerReadTimeoutSeconds", "server: {headerReadTimeoutSeconds: V}")]
    #[case("server.handshakeTimeoutSeconds", "server: {handshakeTimeoutSeconds: V}")]
    #[case("server.bodyReadTimeoutSeconds", "server: {bodyReadTimeoutSeconds: V}")]
    #[case("server.reloadIntervalSeconds", "server: {reloadIntervalSeconds: V}")]
    #[case("server.http2KeepaliveIntervalSeconds", "server: {http2KeepaliveIntervalSeconds: V}")]
    #[case("server.idleTimeoutSeconds", "server: {idleTimeoutSeconds: V}")]
    #[case("server.shutdownGraceSeconds", "server: {shutdownGraceSeconds: V}")]
    #[case("server.maxConnections", "server: {maxConnections: V}")]
    #[case("server.http2MaxConcurrentStreams", "server: {http2MaxConcurrentStreams: V}")]
    #[case("resolution.budgetSeconds", "resolution: {budgetSeconds: V}")]
    #[case("resolution.perImageTimeoutSeconds", "resolution: {perImageTimeoutSeconds: V}")]
    #[case("resolution.connectTimeoutSeconds", "resolution: {connectTimeoutSeconds: V}")]
    #[case("resolution.readTimeoutSeconds", "resolution: {readTimeoutSeconds: V}")]
    #[case("resolution.perRegistryConcurrency", "resolution: {perRegistryConcurrency: V}")]
    #[case("resolution.tagTtlSeconds", "resolution: {tagTtlSeconds: V}")]
    #[case("resolution.notFoundTtlSeconds", "resolution: {notFoundTtlSeconds: V}")]
    #[case("resolution.kubernetesTtlSeconds", "resolution: {kubernetesTtlSeconds: V}")]
    #[case("resolution.cacheMaxBytes", "resolution: {cacheMaxBytes: V}")]
    #[case("resolution.maxManifestBytes", "resolution: {maxManifestBytes: V}")]
    #[case("resolution.maxIndexEntries", "resolution: {maxIndexEntries: V}")]
    #[case("resolution.pullBudgetWarnBelow", "resolution: {pullBudgetWarnBelow: V}")]
    #[case("rateLimitProbes[0].intervalSeconds", "rateLimitProbes: [{registry: docker.io, intervalSeconds: V}]")]
    #[case("rateLimitProbes[0].warnBelow", "rateLimitProbes: [{registry: docker.io, warnBelow: V}]")]
    #[case("credentialProviders.timeoutSeconds", "credentialProviders: {config: /c, binDir: /b, timeoutSeconds: V}")]
    #[case("audit.intervalSeconds", "audit: {intervalSeconds: V}")]
    #[case("audit.maxRequestsPerRegistryPerInterval", "audit: {maxRequestsPerRegistryPerInterval: V}")]
    #[case("audit.maxSeries", "audit: {maxSeries: V}")]
    #[case("audit.leaseDurationSeconds", "audit: {leaseDurationSeconds: V}")]
    fn bad_numbers_are_refused_by_key(#[case] key: &str, #[case] template: &str) {
        for bad in ["-1", ".nan", ".inf", "1e300", "99999999999999999999", "lots"] {
            let text = template.replace('V', bad);
            let refused = std::panic::catch_unwind(|| Settings::parse(Path::new("c.yaml"), &text))
                .unwrap_or_else(|_| panic!("{text} panicked"));
            match refused {
                Err(error) => {
                    let error = error.to_string();
                    assert!(error.starts_with(&format!("c.yaml: {key}")), "{text}: {error}");
                }
                // Only a key with no upper bound may take a huge whole number.
                Ok(_) => assert!(
                    key.ends_with("warnBelow") || key.ends_with("WarnBelow"),
                    "{text} was accepted"
                ),
            }
        }
        // Zero: refused by key, except where it means something (no grace, no caching, warn never).
        let text = template.replace('V', "0");
        let zero_means_something = [
            "server.shutdownGraceSeconds",
            "resolution.tagTtlSeconds",
            "resolution.notFoundTtlSeconds",
            "resolution.kubernetesTtlSeconds",
            "resolution.pullBudgetWarnBelow",
            "rateLimitProbes[0].warnBelow",
        ];
        match Settings::parse(Path::new("c.yaml"), &text) {
            Err(error) => {
                assert!(!zero_means_something.contains(&key), "{text}: {error}");
                assert!(error.to_string().starts_with(&format!("c.yaml: {key}")), "{text}: {error}");
            }
            Ok(_) => assert!(zero_means_something.contains(&key), "{text} was accepted"),
        }
    }

    #[rstest]
    #[case::zero_interval(
        "rateLimitProbes: [{registry: docker.io, intervalSeconds: 0}]",
        "rateLimitProbes[0].intervalSeconds: must be at least 1"
    )]
    #[case::zero_audit_interval(
        "audit: {intervalSeconds: 0}",
        "audit.intervalSeconds: must be at least 1"
    )]
    #[case::zero_budget(
        "resolution: {budgetSeconds: 0}",
        "resolution.budgetSeconds: must be more than 0 seconds"
    )]
    #[case::zero_concurrency(
        "resolution: {perRegistryConcurrency: 0}",
        "resolution.perRegistryConcurrency: must be at least 1"
    )]
    #[case::zero_connections(
        "server: {maxConnections: 0}",
        "server.maxConnections: must be at least 1"
    )]
    #[case::zero_provider_timeout(
        "credentialProviders: {config: /c, binDir: /b, timeoutSeconds: 0}",
        "credentialProviders.timeoutSeconds: must be more than 0"
    )]
    fn zero_is_refused_where_it_cannot_work(#[case] text: &str, #[case] said: &str) {
        let error = Settings::parse(Path::new("c.yaml"), text).expect_err("zero");
        assert!(
            error.to_string().starts_with(&format!("c.yaml: {said}")),
            "{error}"
        );
    }
}
