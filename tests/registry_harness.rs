//! End-to-end checks of the test-registry harness: each mode (plain HTTP, TLS, Basic, Token,
//! shared storage) and each image kind, exercised with oci-client against a real
//! `docker-registry` on 127.0.0.1.

mod support;

use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciImageIndex, OciManifest};
use oci_client::secrets::RegistryAuth;
use support::registry::{
    self, Auth, ImageKind, Platform, RegistryOptions, TestRegistry, push_image, push_image_detailed,
};

/// Upper bound for one whole test, registry start included.
const TEST_BUDGET: Duration = Duration::from_secs(60);

async fn bounded<T>(test: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(TEST_BUDGET, test)
        .await
        .map_err(|_| anyhow!("test exceeded {TEST_BUDGET:?}"))?
}

/// Every message in an error's `source()` chain, outermost first.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        chain.push_str(" <- ");
        chain.push_str(&inner.to_string());
        source = inner.source();
    }
    chain
}

fn basic(user: &str, pass: &str) -> RegistryAuth {
    RegistryAuth::Basic(user.to_owned(), pass.to_owned())
}

/// `(os, architecture, variant)` of every entry of an index, in order.
fn index_platforms(index: &OciImageIndex) -> Vec<(String, String, Option<String>)> {
    index
        .manifests
        .iter()
        .filter_map(|entry| entry.platform.as_ref())
        .map(|p| {
            (
                p.os.to_string(),
                p.architecture.to_string(),
                p.variant.clone(),
            )
        })
        .collect()
}

fn expected_platforms(platforms: &[Platform]) -> Vec<(String, String, Option<String>)> {
    platforms
        .iter()
        .map(|p| (p.os.clone(), p.arch.clone(), p.variant.clone()))
        .collect()
}

async fn pull_index(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
) -> anyhow::Result<(OciImageIndex, String)> {
    let (manifest, digest) = reg
        .client()?
        .pull_manifest(&reg.reference(repo, tag)?, &reg.registry_auth())
        .await?;
    match manifest {
        OciManifest::ImageIndex(index) => Ok((index, digest)),
        OciManifest::Image(image) => Err(anyhow!("expected an index, got {image:?}")),
    }
}

#[tokio::test]
async fn plain_http_push_then_fetch_digest_counts_each_head() -> anyhow::Result<()> {
    bounded(async {
        let reg = registry::start(RegistryOptions::default()).await?;
        assert!(reg.host().starts_with("127.0.0.1:"), "{}", reg.host());
        let pushed = push_image(
            &reg,
            "team/app",
            "v1",
            ImageKind::single(Platform::linux("amd64")),
        )
        .await?;
        assert!(
            pushed.starts_with("sha256:") && pushed.len() == 71,
            "{pushed}"
        );

        let client = reg.client()?;
        let reference = reg.reference("team/app", "v1")?;
        for expected_heads in 1..=3 {
            let digest = client
                .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
                .await?;
            assert_eq!(digest, pushed);
            // The access log line is already there when the response arrives.
            assert_eq!(
                reg.count_requests("HEAD", "/v2/team/app/manifests/v1"),
                expected_heads
            );
        }
        assert_eq!(
            reg.count_requests("GET", "/manifests/"),
            0,
            "HEAD answered with a digest"
        );
        assert_eq!(reg.count_requests("PUT", "/v2/team/app/manifests/v1"), 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn tls_needs_the_test_ca() -> anyhow::Result<()> {
    bounded(async {
        let reg = registry::start(RegistryOptions {
            tls: true,
            ..Default::default()
        })
        .await?;
        let ca_pem = reg.ca_pem().context("TLS registry has a CA")?;
        assert!(
            ca_pem.starts_with("-----BEGIN CERTIFICATE-----"),
            "{ca_pem}"
        );
        let ca_path = reg.ca_path().context("TLS registry has a CA file")?;
        assert_eq!(std::fs::read_to_string(ca_path)?, ca_pem);
        assert!(reg.url().starts_with("https://127.0.0.1:"));

        let pushed = push_image(
            &reg,
            "secure/app",
            "v1",
            ImageKind::single(Platform::linux("amd64")),
        )
        .await?;
        let reference = reg.reference("secure/app", "v1")?;
        let digest = reg
            .client()?
            .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
            .await?;
        assert_eq!(digest, pushed);

        let without_ca = Client::try_from(ClientConfig {
            protocol: ClientProtocol::Https,
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(10)),
            ..ClientConfig::default()
        })?;
        let err = without_ca
            .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
            .await
            .expect_err("a client without the test CA must not trust the registry");
        let chain = error_chain(&err);
        assert!(chain.contains("UnknownIssuer"), "{chain}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn basic_auth_accepts_the_right_password_only() -> anyhow::Result<()> {
    bounded(async {
        let reg = registry::start(RegistryOptions {
            auth: Auth::basic("alice", "s3cret"),
            ..Default::default()
        })
        .await?;
        let pushed = push_image(
            &reg,
            "private/app",
            "v1",
            ImageKind::single(Platform::linux("arm64")),
        )
        .await?;
        let reference = reg.reference("private/app", "v1")?;

        let digest = reg
            .client()?
            .fetch_manifest_digest(&reference, &basic("alice", "s3cret"))
            .await?;
        assert_eq!(digest, pushed);

        // A fresh client per credential: oci-client keeps the first credentials per host.
        for auth in [basic("alice", "wrong"), RegistryAuth::Anonymous] {
            let err = reg
                .client()?
                .fetch_manifest_digest(&reference, &auth)
                .await
                .expect_err("wrong or missing credentials must fail");
            assert!(
                matches!(err, OciDistributionError::UnauthorizedError { .. }),
                "{err:?}"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn token_auth_issues_tokens_for_the_right_credentials_only() -> anyhow::Result<()> {
    bounded(async {
        let reg = registry::start(RegistryOptions {
            auth: Auth::token("bob", "hunter2"),
            ..Default::default()
        })
        .await?;
        assert!(
            reg.token_realm()
                .is_some_and(|r| r.starts_with("http://127.0.0.1:"))
        );
        let pushed = push_image(
            &reg,
            "tokened/app",
            "v1",
            ImageKind::single(Platform::linux("amd64")),
        )
        .await?;
        let pushes_token_requests = reg.token_requests();
        assert!(pushes_token_requests >= 1);
        let reference = reg.reference("tokened/app", "v1")?;

        let digest = reg
            .client()?
            .fetch_manifest_digest(&reference, &basic("bob", "hunter2"))
            .await?;
        assert_eq!(digest, pushed);
        assert!(
            reg.token_requests() > pushes_token_requests,
            "a pull token was requested"
        );

        for auth in [basic("bob", "wrong"), RegistryAuth::Anonymous] {
            let err = reg
                .client()?
                .fetch_manifest_digest(&reference, &auth)
                .await
                .expect_err("wrong or missing credentials must fail");
            // The token endpoint's 401 is swallowed; the registry then answers the
            // unauthenticated manifest request with 401.
            assert!(
                matches!(err, OciDistributionError::UnauthorizedError { .. }),
                "{err:?}"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn oci_index_lists_its_platforms() -> anyhow::Result<()> {
    bounded(async {
        let reg = registry::start(RegistryOptions::default()).await?;
        let platforms = vec![
            Platform::linux("amd64"),
            Platform::linux("arm64").with_variant("v8"),
            Platform::windows_amd64(),
        ];
        let pushed = push_image_detailed(
            &reg,
            "multi/oci",
            "v1",
            ImageKind::OciIndex(platforms.clone()),
        )
        .await?;
        assert_eq!(pushed.media_type, "application/vnd.oci.image.index.v1+json");

        let (index, digest) = pull_index(&reg, "multi/oci", "v1").await?;
        assert_eq!(digest, pushed.digest);
        assert_eq!(
            index.media_type.as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        assert_eq!(index_platforms(&index), expected_platforms(&platforms));
        for entry in &index.manifests {
            assert_eq!(
                entry.media_type,
                "application/vnd.oci.image.manifest.v1+json"
            );
        }

        // The windows child is a real image whose config says so.
        let (_, windows_digest) = &pushed.platforms[2];
        let by_digest = format!("{}/multi/oci@{windows_digest}", reg.host()).parse()?;
        let (manifest, digest, config) = reg
            .client()?
            .pull_manifest_and_config(&by_digest, &RegistryAuth::Anonymous)
            .await?;
        assert_eq!(&digest, windows_digest);
        assert_eq!(
            manifest.config.media_type,
            "application/vnd.oci.image.config.v1+json"
        );
        let config: serde_json::Value = serde_json::from_str(&config)?;
        assert_eq!(config["os"], "windows");
        assert_eq!(config["architecture"], "amd64");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn docker_manifest_list_keeps_docker_media_types() -> anyhow::Result<()> {
    bounded(async {
        let reg = registry::start(RegistryOptions::default()).await?;
        let platforms = vec![
            Platform::linux("amd64"),
            Platform::linux("arm").with_variant("v7"),
        ];
        let pushed = push_image_detailed(
            &reg,
            "multi/docker",
            "v1",
            ImageKind::DockerManifestList(platforms.clone()),
        )
        .await?;

        let (index, digest) = pull_index(&reg, "multi/docker", "v1").await?;
        assert_eq!(digest, pushed.digest);
        assert_eq!(
            index.media_type.as_deref(),
            Some("application/vnd.docker.distribution.manifest.list.v2+json")
        );
        assert_eq!(index_platforms(&index), expected_platforms(&platforms));

        let (_, child_digest) = &pushed.platforms[1];
        let by_digest = format!("{}/multi/docker@{child_digest}", reg.host()).parse()?;
        let (manifest, _, config) = reg
            .client()?
            .pull_manifest_and_config(&by_digest, &RegistryAuth::Anonymous)
            .await?;
        assert_eq!(
            manifest.media_type.as_deref(),
            Some("application/vnd.docker.distribution.manifest.v2+json")
        );
        assert_eq!(
            manifest.config.media_type,
            "application/vnd.docker.container.image.v1+json"
        );
        assert_eq!(
            manifest.layers[0].media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let config: serde_json::Value = serde_json::from_str(&config)?;
        assert_eq!(config["variant"], "v7");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn registries_share_storage_and_images_are_deterministic() -> anyhow::Result<()> {
    bounded(async {
        let plain = registry::start(RegistryOptions::default()).await?;
        let guarded = registry::start(RegistryOptions {
            tls: true,
            auth: Auth::basic("carol", "pw"),
            storage: Some(plain.storage_dir().to_owned()),
        })
        .await?;
        assert_eq!(guarded.storage_dir(), plain.storage_dir());
        let kind = ImageKind::OciIndex(vec![Platform::linux("amd64"), Platform::linux("s390x")]);
        let pushed = push_image(&plain, "shared/app", "v1", kind.clone()).await?;

        let reference = guarded.reference("shared/app", "v1")?;
        let digest = guarded
            .client()?
            .fetch_manifest_digest(&reference, &basic("carol", "pw"))
            .await?;
        assert_eq!(digest, pushed);
        assert_eq!(plain.count_requests("HEAD", "/manifests/"), 0);
        assert_eq!(
            guarded.count_requests("HEAD", "/v2/shared/app/manifests/v1"),
            1
        );

        let elsewhere = registry::start(RegistryOptions::default()).await?;
        assert_eq!(
            push_image(&elsewhere, "shared/app", "v1", kind.clone()).await?,
            pushed
        );
        assert_ne!(
            push_image(&elsewhere, "shared/app", "v2", kind).await?,
            pushed
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn dropping_the_registry_stops_it() -> anyhow::Result<()> {
    bounded(async {
        let reg = registry::start(RegistryOptions::default()).await?;
        let client = reg.client()?;
        let reference = reg.reference("gone/app", "v1")?;
        drop(reg);
        let err = client
            .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
            .await
            .expect_err("nothing listens after drop");
        let chain = error_chain(&err);
        assert!(chain.contains("Connection refused"), "{chain}");
        Ok(())
    })
    .await
}
