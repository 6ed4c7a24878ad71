//! pullgate's own distribution client: the registry conversation is the heart of the product, and every
//! pod author chooses the registry, so it is written here rather than taken from oci-client 0.18, which
//! cannot meet the requirements: it reads manifest and token bodies whole (no size limit), drops
//! token-service errors and retries anonymously (an outage of a token service then reads as "requires
//! credentials"), falls back to `GET` after a `HEAD` 404, sends Basic credentials to whatever realm a
//! registry names, follows redirects anywhere, pings `/v2/` before operations and exposes no response
//! headers (so no passive pull budgets).
//!
//! The conversation, per endpoint of the image's registry (mirrors first, as the nodes use them):
//! - tag or digest → digest: `HEAD` (no body, no pull counted); `404` is not found, as containerd reads
//!   it; a `200` without `Docker-Content-Digest` falls back to `GET`;
//! - manifest and platforms: one `GET` (the digest comes from the header, checked against the body); an
//!   index names its platforms, a single image's config blob is one more `GET`;
//! - authentication: a `401` challenge is answered once (Basic with the credential, or a token), and
//!   remembered per host, so later requests authenticate up front; tokens are cached per (realm, service,
//!   scope, credential) until they expire — no `/v2/` ping, no token request while a token is valid;
//! - every body is capped: manifests at `resolution.maxManifestBytes`, tokens at 64 KiB, configs at
//!   1 MiB, error bodies at 16 KiB; an index at `resolution.maxIndexEntries` entries;
//! - every answer of a registry's own endpoint is read for `ratelimit-*` headers (pull budgets).

pub mod auth;
pub mod http;
pub mod manifest;
mod session;
mod tags;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};

use self::auth::{Challenge, Token, TokenKey};
use self::http::{Answer, Http, Tls};
use self::manifest::Manifest;
use self::session::{Conversation, TokenExpiry};
use super::budget::{self, BudgetSink, RequestBudget};
use super::hosts::{Endpoint, RegistryHosts};
use super::{Found, ImageResolver, RegistryMetrics, RequestCounter};
use crate::credentials::Credential;
use crate::facts::{Budget, FailureClass, ImageConfig, ManifestDigest, ResolveError};
use crate::image::ImageRef;
use crate::platform::Platform;

/// Most manifests read to learn the platforms of index entries that name none.
const MAX_CHILDREN: usize = 16;
/// Deepest nesting of image indexes followed.
const MAX_DEPTH: usize = 3;

/// What the client reads at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest manifest body.
    pub manifest_bytes: u64,
    /// Most entries of an image index.
    pub index_entries: usize,
}

/// The distribution client: [`ImageResolver`] over the endpoints [`RegistryHosts`] gives.
pub struct Client {
    hosts: Arc<RegistryHosts>,
    http: Http,
    limits: Limits,
    metrics: Arc<RegistryMetrics>,
    budgets: Option<Arc<dyn BudgetSink>>,
    /// How many requests each registry may still be sent (`pullgate audit`); unbounded when `None`.
    requests: Option<Arc<RequestBudget>>,
    tokens: moka::future::Cache<TokenKey, Token>,
    /// The last challenge of each `host[:port]`, so later requests authenticate up front.
    challenges: moka::sync::Cache<String, Challenge>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client over `hosts`, reading at most `limits`, dialling through `http`'s network policy,
    /// counting in `metrics`, and telling `budgets` of every pull budget a registry publishes.
    pub fn new(
        hosts: Arc<RegistryHosts>,
        http: Http,
        limits: Limits,
        metrics: Arc<RegistryMetrics>,
        budgets: Option<Arc<dyn BudgetSink>>,
    ) -> Self {
        Self {
            hosts,
            http,
            limits,
            metrics,
            budgets,
            requests: None,
            tokens: moka::future::Cache::builder()
                .max_capacity(16 * 1024 * 1024)
                .weigher(|key: &TokenKey, token: &Token| {
                    u32::try_from(
                        key.realm.len() + key.scope.len() + key.service.len() + token.value.len(),
                    )
                    .unwrap_or(u32::MAX)
                })
                .expire_after(TokenExpiry)
                .build(),
            challenges: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60 * 60))
                .build(),
        }
    }

    /// The same client, sending each registry at most what `budget` allows; past it, lookups fail with
    /// [`ResolveError::RequestBudgetSpent`] without a request.
    pub fn with_request_budget(mut self, budget: Arc<RequestBudget>) -> Self {
        self.requests = Some(budget);
        self
    }

    /// The conversations to try for an image, in containerd's order, keeping those `usable`.
    fn conversations<'a>(
        &self,
        endpoints: &'a [Endpoint],
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
        usable: fn(&Endpoint) -> bool,
    ) -> Vec<Conversation<'a>> {
        endpoints
            .iter()
            .filter(|e| usable(e))
            .map(|endpoint| Conversation {
                endpoint,
                tls: Tls {
                    ca_pems: endpoint.ca_pems.clone(),
                    skip_verify: endpoint.skip_verify,
                },
                registry: image.registry(),
                repository: image.repository(),
                // As containerd: the pod's credentials answer any configured host that challenges
                // (mirrors too), never a redirect target on another host.
                credential,
                requests,
                trusted: self.hosts.is_configured(image.registry()),
            })
            .collect()
    }

    /// Send one request of a conversation, answering a `401` challenge once. Returns the answer and what
    /// authorization it carried.
    /// `HEAD` a manifest: its digest, falling back to `GET` when the answer names none.
    async fn head(
        &self,
        conv: &Conversation<'_>,
        reference: &str,
    ) -> Result<ManifestDigest, ResolveError> {
        let url = conv.url(&format!("manifests/{reference}"))?;
        let (answer, sent) = self
            .exchange(
                conv,
                Method::HEAD,
                url,
                Some(manifest::ACCEPT),
                "manifest_head",
            )
            .await?;
        match answer.status {
            status if status.is_success() => match digest_header(&answer) {
                Some(digest) => Ok(ManifestDigest(digest)),
                None => Ok(self.get(conv, reference, false).await?.digest),
            },
            StatusCode::NOT_FOUND => Err(ResolveError::NotFound(crate::facts::Missing::Manifest)),
            _ => Err(Self::failure(answer, sent, conv.trusted).await),
        }
    }

    /// `GET` a manifest: its digest, what it holds and, when asked, the platforms it offers.
    async fn get(
        &self,
        conv: &Conversation<'_>,
        reference: &str,
        platforms: bool,
    ) -> Result<Found, ResolveError> {
        let (digest, body) = self.fetch_manifest(conv, reference).await?;
        let parsed = manifest::parse(&body, self.limits.index_entries);
        let contents = parsed.as_ref().ok().map(Manifest::contents);
        if !platforms {
            // Asked for the digest only: a body that is no manifest does not make it wrong.
            return Ok(Found {
                digest: ManifestDigest(digest),
                platforms: None,
                contents,
                config: None,
            });
        }
        let (offered, config) = match self.offered(conv, parsed?).await {
            Ok((offered, config)) => (Ok(offered), config),
            Err(error) => (Err(error), None),
        };
        Ok(Found {
            digest: ManifestDigest(digest),
            platforms: Some(offered),
            contents,
            config,
        })
    }

    /// `GET` a manifest by tag or digest: its digest (the header's, or the body's own) and its body,
    /// capped and checked against the digest.
    async fn fetch_manifest(
        &self,
        conv: &Conversation<'_>,
        reference: &str,
    ) -> Result<(String, Vec<u8>), ResolveError> {
        let url = conv.url(&format!("manifests/{reference}"))?;
        let (answer, sent) = self
            .exchange(
                conv,
                Method::GET,
                url,
                Some(manifest::ACCEPT),
                "manifest_get",
            )
            .await?;
        if !answer.status.is_success() {
            return Err(Self::failure(answer, sent, conv.trusted).await);
        }
        let header = digest_header(&answer);
        let body = answer.body(self.limits.manifest_bytes, "manifest").await?;
        let digest = match (reference.contains(':'), header) {
            (true, _) => reference.to_owned(),
            (false, Some(digest)) => digest,
            (false, None) => manifest::sha256(&body),
        };
        manifest::verify(&body, &digest, "manifest")?;
        Ok((digest, body))
    }

    /// The platforms a manifest offers: a single image's config names one; an index lists its entries'
    /// — and, as containerd does, an entry that names none is read for its own (its config, or the
    /// entries of a nested index), at most [`MAX_CHILDREN`] such manifests and [`MAX_DEPTH`] levels.
    /// With them, a single image's config (read for its platform anyway).
    async fn offered(
        &self,
        conv: &Conversation<'_>,
        top: Manifest,
    ) -> Result<(Vec<Platform>, Option<Arc<ImageConfig>>), ResolveError> {
        if let Manifest::Image {
            config,
            config_size,
            ..
        } = &top
        {
            let config = self.config(conv, config, *config_size).await?;
            let platform = manifest::platform_of(&config)?;
            return Ok((vec![platform], Some(Arc::new(config))));
        }
        let mut offered = Vec::new();
        let mut pending = vec![(top, 0_usize)];
        let mut children = 0;
        while let Some((manifest, depth)) = pending.pop() {
            match manifest {
                Manifest::Schema1(platform) => offered.push(platform),
                Manifest::Image {
                    config,
                    config_size,
                    ..
                } => {
                    let config = self.config(conv, &config, config_size).await?;
                    offered.push(manifest::platform_of(&config)?);
                }
                Manifest::Index(entries) => {
                    for entry in entries {
                        if let Some(platform) = entry.platform {
                            offered.push(platform);
                            continue;
                        }
                        if depth + 1 > MAX_DEPTH {
                            return Err(ResolveError::InvalidResponse(format!(
                                "image indexes nested more than {MAX_DEPTH} deep"
                            )));
                        }
                        children += 1;
                        if children > MAX_CHILDREN {
                            return Err(ResolveError::InvalidResponse(format!(
                                "more than {MAX_CHILDREN} index entries name no platform"
                            )));
                        }
                        let digest = entry
                            .digest
                            .parse::<crate::image::Digest>()
                            .map_err(|_| {
                                ResolveError::InvalidResponse(
                                    "an index entry has a digest that is not one".into(),
                                )
                            })?
                            .to_string();
                        let (_, body) = self.fetch_manifest(conv, &digest).await?;
                        let child = manifest::parse(&body, self.limits.index_entries)?;
                        pending.push((child, depth + 1));
                    }
                }
            }
        }
        Ok((offered, None))
    }

    /// An image's config blob, read for what decides how its container starts.
    async fn config(
        &self,
        conv: &Conversation<'_>,
        digest: &str,
        size: Option<i64>,
    ) -> Result<ImageConfig, ResolveError> {
        // The digest comes from the registry's manifest: only a digest goes into the URL.
        let digest = digest
            .parse::<crate::image::Digest>()
            .map_err(|_| {
                ResolveError::InvalidResponse("the image config's digest is not a digest".into())
            })?
            .to_string();
        let digest = digest.as_str();
        let too_large = || ResolveError::TooLarge {
            what: "image config".into(),
            limit: http::size(manifest::MAX_CONFIG_BYTES),
        };
        if size.is_some_and(|s| s < 0 || s as u64 > manifest::MAX_CONFIG_BYTES) {
            return Err(too_large());
        }
        let url = conv.url(&format!("blobs/{digest}"))?;
        let (answer, sent) = self
            .exchange(conv, Method::GET, url, None, "blob_get")
            .await?;
        if !answer.status.is_success() {
            return Err(Self::failure(answer, sent, conv.trusted).await);
        }
        let body = answer
            .body(manifest::MAX_CONFIG_BYTES, "image config")
            .await?;
        manifest::verify(&body, digest, "image config")?;
        manifest::image_config(&body)
    }

    /// Try each usable endpoint in order; the first success wins, else the last failure is returned.
    async fn each_endpoint(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
        requests: &RequestCounter,
        op: Op<'_>,
    ) -> Result<Found, ResolveError> {
        let endpoints = self.hosts.endpoints(image.registry());
        // As containerd: a digest (a blob's too) can come from any host that may pull; a tag needs one
        // that may resolve.
        let usable: fn(&Endpoint) -> bool =
            if image.digest().is_some() || matches!(op, Op::Config(_)) {
                |e| e.can_pull
            } else {
                |e| e.can_resolve && e.can_pull
            };
        let conversations = self.conversations(&endpoints, image, credential, requests, usable);
        let reference = reference(image);
        let mut last =
            ResolveError::Connect(format!("no endpoint configured for {}", image.registry()));
        let mut telling: Option<ResolveError> = None;
        for conv in &conversations {
            let result = match op {
                Op::Head => self.head(conv, &reference).await.map(|digest| Found {
                    digest,
                    platforms: None,
                    contents: None,
                    config: None,
                }),
                Op::Get { platforms } => self.get(conv, &reference, platforms).await,
                Op::Config(digest) => self.config(conv, digest, None).await.map(|config| Found {
                    digest: ManifestDigest(digest.to_owned()),
                    platforms: None,
                    contents: None,
                    config: Some(Arc::new(config)),
                }),
            };
            match result {
                Ok(found) => return Ok(found),
                Err(error) => {
                    tracing::debug!(endpoint = %conv.endpoint.url(), %error, "endpoint failed");
                    // A host that wanted credentials says more than one that could not be reached:
                    // the first such answer is reported (a mirror asking for them, say, before an
                    // upstream that is down).
                    if telling.is_none() && error.class() == FailureClass::Auth {
                        telling = Some(error.clone());
                    }
                    last = error;
                }
            }
        }
        Err(match (telling, last.class()) {
            (Some(auth), FailureClass::Unreachable | FailureClass::Tls) => auth,
            (_, _) => last,
        })
    }

    /// The pull budget `registry` publishes, read from an anonymous `HEAD` of `repository:latest` on its
    /// own endpoint (Docker documents `ratelimitpreview/test`; a `HEAD` is not counted as a pull).
    /// `Ok(None)`: the registry answered but publishes no budget.
    pub async fn budget(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Budget>, ResolveError> {
        let endpoints = self.hosts.endpoints(registry);
        let Some(endpoint) = endpoints.iter().rfind(|e| !e.is_mirror) else {
            return Ok(None);
        };
        let requests = RequestCounter::default();
        let conv = Conversation {
            endpoint,
            tls: Tls {
                ca_pems: endpoint.ca_pems.clone(),
                skip_verify: endpoint.skip_verify,
            },
            registry,
            repository,
            credential: None,
            requests: &requests,
            trusted: self.hosts.is_configured(registry),
        };
        let url = conv.url("manifests/latest")?;
        let (answer, _) = self
            .exchange(
                &conv,
                Method::HEAD,
                url,
                Some(manifest::ACCEPT),
                "budget_probe",
            )
            .await?;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            return Ok(Some(Budget {
                remaining: 0,
                limit: None,
                window_seconds: None,
            }));
        }
        Ok(budget::from_headers(&answer.headers))
    }
}

/// The `Docker-Content-Digest` of an answer, when it is a plausible digest.
fn digest_header(answer: &Answer) -> Option<String> {
    let value = answer.headers.get("docker-content-digest")?.to_str().ok()?;
    value
        .parse::<crate::image::Digest>()
        .ok()
        .map(|d| d.to_string())
}

/// What to ask each endpoint.
#[derive(Debug, Clone, Copy)]
enum Op<'a> {
    Head,
    Get {
        platforms: bool,
    },
    /// The config blob with this digest.
    Config(&'a str),
}

impl ImageResolver for Client {
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ManifestDigest, ResolveError>> {
        Box::pin(async move {
            let found = self
                .each_endpoint(image, credential, requests, Op::Head)
                .await?;
            Ok(found.digest)
        })
    }

    fn manifest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        platforms: bool,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Found, ResolveError>> {
        Box::pin(self.each_endpoint(image, credential, requests, Op::Get { platforms }))
    }

    fn config<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        digest: &'a str,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<ImageConfig, ResolveError>> {
        Box::pin(async move {
            let found = self
                .each_endpoint(image, credential, requests, Op::Config(digest))
                .await?;
            let config = found
                .config
                .ok_or_else(|| ResolveError::InvalidResponse("no image config was read".into()))?;
            Ok(Arc::unwrap_or_clone(config))
        })
    }

    fn tags<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
        requests: &'a RequestCounter,
    ) -> BoxFuture<'a, Result<Vec<String>, ResolveError>> {
        Box::pin(Client::tags(self, image, credential, requests))
    }

    fn head_first(&self, registry: &str) -> bool {
        self.hosts.pull_quota(registry)
    }
}

/// What an image names in the URL: its digest, else its tag (`latest` when it has none).
fn reference(image: &ImageRef) -> String {
    match (image.digest(), image.effective_tag()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_owned(),
        (None, None) => "latest".to_owned(),
    }
}
