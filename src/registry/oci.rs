//! The oci-client implementation of [`ImageResolver`].
//!
//! One oci-client `Client` per (endpoint, credential fingerprint): a `Client` keeps the first credentials
//! it sees per host for its whole life, so sharing one across credentials would let a wrong password pass
//! after a right one. Credentials go only to the registry they are for: mirrors are asked anonymously.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

use super::hosts::{Endpoint, RegistryHosts, Scheme};
use super::{ImageResolver, RegistryMetrics, RequestCounter, classify};
use crate::credentials::Credential;
use crate::facts::{ManifestDigest, ResolveError};
use crate::image::ImageRef;
use crate::platform::Platform;

/// Media types accepted for a manifest GET: OCI and Docker v2, single images and indexes.
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Largest image config blob read (real ones are a few KiB).
const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Timeouts of each HTTP exchange (the whole resolution has its own deadline on top).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

/// Resolves images with oci-client against the endpoints [`RegistryHosts`] gives for each registry.
pub struct OciResolver {
    hosts: Arc<RegistryHosts>,
    timeouts: Timeouts,
    metrics: Arc<RegistryMetrics>,
    clients: moka::sync::Cache<(String, String), Arc<Client>>,
}

impl OciResolver {
    /// Every exchange is counted in `metrics`.
    pub fn new(
        hosts: Arc<RegistryHosts>,
        timeouts: Timeouts,
        metrics: Arc<RegistryMetrics>,
    ) -> Self {
        Self {
            hosts,
            timeouts,
            metrics,
            clients: moka::sync::Cache::builder()
                .max_capacity(2_000)
                .time_to_idle(Duration::from_secs(15 * 60))
                .build(),
        }
    }

    /// The client for an endpoint and a credential, made on first use.
    fn client(
        &self,
        endpoint: &Endpoint,
        auth: &RegistryAuth,
    ) -> Result<Arc<Client>, ResolveError> {
        let fingerprint = match auth {
            RegistryAuth::Basic(user, pass) => Credential::fingerprint_of(user, pass),
            _ => "anonymous".to_owned(),
        };
        // The TLS settings are part of the key: two registries may share a mirror URL with different CAs.
        let endpoint_key = format!(
            "{} skip_verify={} ca={:?}",
            endpoint.url(),
            endpoint.skip_verify,
            endpoint.ca_files
        );
        let key = (endpoint_key, fingerprint);
        if let Some(client) = self.clients.get(&key) {
            return Ok(client);
        }
        let config = ClientConfig {
            protocol: match endpoint.scheme {
                Scheme::Http => ClientProtocol::Http,
                Scheme::Https => ClientProtocol::Https,
            },
            accept_invalid_certificates: endpoint.skip_verify,
            extra_root_certificates: endpoint
                .ca_pems
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            connect_timeout: Some(self.timeouts.connect),
            read_timeout: Some(self.timeouts.read),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| ResolveError::Connect(format!("cannot build a registry client: {e}")))?;
        let client = Arc::new(client);
        self.clients.insert(key, client.clone());
        Ok(client)
    }

    /// Try each usable endpoint in order; the first success wins, else the last failure is returned.
    async fn each_endpoint<T, F>(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
        requests: &RequestCounter,
        usable: fn(&Endpoint) -> bool,
        request: &'static str,
        call: F,
    ) -> Result<T, ResolveError>
    where
        F: for<'c> Fn(
            &'c Client,
            Reference,
            &'c RegistryAuth,
        ) -> BoxFuture<'c, Result<T, ResolveError>>,
    {
        let endpoints: Vec<Endpoint> = self
            .hosts
            .endpoints(image.registry())
            .into_iter()
            .filter(usable)
            .collect();
        let mut last =
            ResolveError::Connect(format!("no endpoint configured for {}", image.registry()));
        for endpoint in &endpoints {
            // Credentials belong to the registry itself: never sent to a mirror or another host.
            let auth = match credential {
                Some(c) if is_the_registry(endpoint, image.registry()) => {
                    RegistryAuth::Basic(c.username.clone(), c.password().to_owned())
                }
                _ => RegistryAuth::Anonymous,
            };
            let repository = match endpoint.repository_prefix() {
                Ok(None) => image.repository().to_owned(),
                Ok(Some(prefix)) => format!("{}/{}", prefix.trim_matches('/'), image.repository()),
                Err(root) => {
                    last = ResolveError::Connect(format!(
                        "endpoint {} has API root {root}, which pullgate cannot reach",
                        endpoint.url()
                    ));
                    continue;
                }
            };
            let client = self.client(endpoint, &auth)?;
            let reference = match (image.digest(), image.effective_tag()) {
                (Some(digest), _) => {
                    Reference::with_digest(endpoint.host.clone(), repository, digest.to_string())
                }
                (None, Some(tag)) => {
                    Reference::with_tag(endpoint.host.clone(), repository, tag.to_owned())
                }
                (None, None) => {
                    Reference::with_tag(endpoint.host.clone(), repository, "latest".into())
                }
            };
            let started = Instant::now();
            let result = call(&client, reference, &auth).await;
            requests.add();
            self.metrics.record(
                &endpoint.host,
                request,
                started,
                result.as_ref().map(|_| ()),
            );
            match result {
                Ok(found) => return Ok(found),
                Err(error) => {
                    tracing::debug!(endpoint = %endpoint.url(), %error, "endpoint failed");
                    last = error;
                }
            }
        }
        Err(last)
    }
}

impl ImageResolver for OciResolver {
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ManifestDigest, ResolveError>> {
        Box::pin(self.each_endpoint(
            image,
            credential,
            requests,
            |e| e.can_resolve,
            "manifest_head",
            |client, reference, auth| {
                Box::pin(async move {
                    let digest = client
                        .fetch_manifest_digest(&reference, auth)
                        .await
                        .map_err(|e| classify(&e))?;
                    Ok(ManifestDigest(digest))
                })
            },
        ))
    }

    fn platforms<'a>(
        &'a self,
        image: &'a ImageRef,
        digest: &'a ManifestDigest,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Vec<Platform>, ResolveError>> {
        Box::pin(self.each_endpoint(
            image,
            credential,
            requests,
            |e| e.can_pull,
            "manifest_get",
            move |client, reference, auth| {
                let reference = Reference::with_digest(
                    reference.registry().to_owned(),
                    reference.repository().to_owned(),
                    digest.0.clone(),
                );
                Box::pin(async move { fetch_platforms(client, &reference, auth).await })
            },
        ))
    }
}

/// Whether an endpoint is the image's own registry (Docker Hub's upstream host counts as `docker.io`).
fn is_the_registry(endpoint: &Endpoint, registry: &str) -> bool {
    !endpoint.is_mirror
        && (endpoint.host == registry
            || (registry == "docker.io" && endpoint.host == "registry-1.docker.io"))
}

/// The fields of a manifest (OCI or Docker, index or single image) that say which platforms it has.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    manifests: Option<Vec<RawIndexEntry>>,
    config: Option<RawDescriptor>,
    /// Docker schema 1 manifests name the architecture at the top level.
    architecture: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawIndexEntry {
    platform: Option<RawPlatform>,
}

#[derive(Debug, Deserialize)]
struct RawDescriptor {
    digest: String,
    size: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct RawPlatform {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

impl RawPlatform {
    fn platform(&self) -> Option<Platform> {
        Some(Platform {
            os: self.os.clone().filter(|s| !s.is_empty())?,
            architecture: self.architecture.clone().filter(|s| !s.is_empty())?,
            variant: self.variant.clone().filter(|s| !s.is_empty()),
        })
    }
}

async fn fetch_platforms(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
) -> Result<Vec<Platform>, ResolveError> {
    let (bytes, _digest) = client
        .pull_manifest_raw(reference, auth, &MANIFEST_TYPES)
        .await
        .map_err(|e| classify(&e))?;
    let manifest: RawManifest = serde_json::from_slice(&bytes)
        .map_err(|e| ResolveError::InvalidResponse(format!("manifest is not valid JSON: {e}")))?;
    if let Some(entries) = manifest.manifests {
        return Ok(entries
            .iter()
            .filter_map(|e| e.platform.as_ref()?.platform())
            .collect());
    }
    if manifest.schema_version == Some(1) {
        let architecture = manifest.architecture.unwrap_or_default();
        return Ok(vec![Platform {
            os: "linux".into(),
            architecture,
            variant: None,
        }]);
    }
    let config = manifest.config.ok_or_else(|| {
        ResolveError::InvalidResponse("manifest has neither `manifests` nor `config`".into())
    })?;
    if config
        .size
        .is_some_and(|s| s < 0 || s as usize > MAX_CONFIG_BYTES)
    {
        return Err(ResolveError::InvalidResponse(format!(
            "image config is larger than {MAX_CONFIG_BYTES} bytes"
        )));
    }
    let mut sink = LimitedBuffer::default();
    client
        .pull_blob(reference, config.digest.as_str(), &mut sink)
        .await
        .map_err(|e| classify(&e))?;
    let raw: RawPlatform = serde_json::from_slice(&sink.data).map_err(|e| {
        ResolveError::InvalidResponse(format!("image config is not valid JSON: {e}"))
    })?;
    raw.platform().map(|p| vec![p]).ok_or_else(|| {
        ResolveError::InvalidResponse("image config names no os/architecture".into())
    })
}

/// An in-memory sink that refuses to grow past [`MAX_CONFIG_BYTES`].
#[derive(Default)]
struct LimitedBuffer {
    data: Vec<u8>,
}

impl tokio::io::AsyncWrite for LimitedBuffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.data.len() + buf.len() > MAX_CONFIG_BYTES {
            return Poll::Ready(Err(std::io::Error::other("image config too large")));
        }
        self.data.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
