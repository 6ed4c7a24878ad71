//! Credentials never reach the logs: a full debug-level log (pullgate, oci-client, reqwest, hyper, kube)
//! of authenticated admissions — Basic and token auth, right and wrong passwords — is searched for the
//! passwords, their base64 forms and bearer tokens.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::json;
use support::kube::{FakeKube, dockerconfigjson_secret};
use support::registry::{self, Auth, ImageKind, Platform, RegistryOptions};
use support::webhook::{admit, app, bounded, pod_review, settings_for, shipped_policies};

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn debug_logs_of_authenticated_runs_hold_no_credentials() {
    registry::install_crypto();
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber in this test binary");
    bounded(async {
        let basic = registry::start(RegistryOptions {
            auth: Auth::basic("alice", "Pa55-basic-secret"),
            ..Default::default()
        })
        .await
        .expect("registry");
        let token = registry::start(RegistryOptions {
            auth: Auth::token("bob", "Pa55-token-secret"),
            ..Default::default()
        })
        .await
        .expect("registry");
        for reg in [&basic, &token] {
            registry::push_image(
                reg,
                "team/app",
                "v1",
                ImageKind::single(Platform::linux("amd64")),
            )
            .await
            .expect("push");
        }
        let kube = FakeKube::start().await.expect("fake API");
        kube.insert_secret(
            "demo",
            dockerconfigjson_secret("basic", &[(basic.host(), "alice", "Pa55-basic-secret")]),
        );
        kube.insert_secret(
            "demo",
            dockerconfigjson_secret("token", &[(token.host(), "bob", "Pa55-token-secret")]),
        );
        kube.insert_secret(
            "demo",
            dockerconfigjson_secret("wrong", &[(basic.host(), "alice", "Pa55-wrong-secret")]),
        );
        let app = app(
            &settings_for(&[&basic, &token]),
            Some(kube.client().expect("client")),
            shipped_policies(),
        );
        for (reg, secret) in [(&basic, "basic"), (&token, "token"), (&basic, "wrong")] {
            let spec = json!({"imagePullSecrets": [{"name": secret}],
                "containers": [{"name": "app", "image": format!("{}/team/app:v1", reg.host())}]});
            let response = admit(&app, &pod_review(spec)).await;
            assert_eq!(
                response["allowed"],
                secret != "wrong",
                "{secret}: {response}"
            );
        }
    })
    .await;
    let log =
        String::from_utf8_lossy(&sink.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(log.contains("admission decided"), "the log was captured");
    assert!(
        log.lines().count() > 20,
        "a full debug log: {} lines",
        log.lines().count()
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for secret in [
        "Pa55-basic-secret",
        "Pa55-token-secret",
        "Pa55-wrong-secret",
    ] {
        assert!(!log.contains(secret), "password {secret} in the log");
    }
    for pair in [
        "alice:Pa55-basic-secret",
        "bob:Pa55-token-secret",
        "alice:Pa55-wrong-secret",
    ] {
        assert!(
            !log.contains(&b64(pair)),
            "base64 credentials of {pair} in the log"
        );
    }
    // Bearer tokens are JWTs: base64url JSON headers start with "eyJ".
    assert!(
        !log.contains("Bearer eyJ") && !log.contains("\"token\":\"eyJ"),
        "a bearer token in the log"
    );
}
