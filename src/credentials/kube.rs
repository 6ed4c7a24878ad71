//! Reading Secrets and ServiceAccounts from the Kubernetes API: [`KubeCredentialSource`] (a
//! deadline per `get`, a short-lived lookup cache, read metrics) and [`ApiError`], why a read
//! failed.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use moka::future::Cache;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;

use super::CredentialSource;

/// Why a Secret or ServiceAccount could not be read. Messages come from the API server or the
/// transport (kube's errors are not `Clone`, and a cached failure is shared by every waiter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No connection to the API server (refused, DNS, TLS, transport).
    #[error("Kubernetes API unreachable: {reason}")]
    Unreachable { reason: String },
    /// No answer within the lookup deadline.
    #[error("Kubernetes API did not answer within {}ms", after.as_millis())]
    Timeout { after: Duration },
    /// RBAC (or authentication) refused the read: the webhook needs `get` on secrets and
    /// serviceaccounts.
    #[error(
        "forbidden by the Kubernetes API (grant the webhook get on secrets and serviceaccounts): {message}"
    )]
    Forbidden { message: String },
    /// Any other error status from the API server.
    #[error("Kubernetes API answered {code}: {message}")]
    Status { code: u16, message: String },
    /// An answer that is not the expected object.
    #[error("unreadable answer from the Kubernetes API: {reason}")]
    InvalidResponse { reason: String },
}

impl From<kube::Error> for ApiError {
    fn from(error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if matches!(status.code, 401 | 403) => Self::Forbidden {
                message: status.message.clone(),
            },
            kube::Error::Api(status) => Self::Status {
                code: status.code,
                message: status.message.clone(),
            },
            kube::Error::SerdeError(e) => Self::InvalidResponse {
                reason: e.to_string(),
            },
            other => Self::Unreachable {
                reason: error_chain(&other),
            },
        }
    }
}

/// An error and its sources, `: `-joined (kube's `Display` alone hides the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

type Lookups<K> = Cache<(String, String), Option<K>>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    resource: &'static str,
    outcome: &'static str,
}

/// `pullgate_kubernetes_lookups`: API reads (not cache hits), by resource and outcome.
#[derive(Debug)]
pub struct KubeMetrics {
    lookups: Family<LookupLabels, Counter>,
}

impl KubeMetrics {
    /// Register the Kubernetes lookup metrics on `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "kubernetes_lookups",
            "Kubernetes API reads, by resource and outcome",
            lookups.clone(),
        );
        Self { lookups }
    }
}

/// [`CredentialSource`] over a kube client: each `get` has a deadline, answers (including "not
/// found") are cached for a short TTL, concurrent lookups of one object share one request, and
/// errors are not cached. `Debug` shows settings only, never cached secrets.
#[derive(Clone)]
pub struct KubeCredentialSource {
    client: kube::Client,
    secrets: Lookups<Secret>,
    service_accounts: Lookups<ServiceAccount>,
    ttl: Duration,
    timeout: Duration,
    metrics: std::sync::Arc<KubeMetrics>,
}

impl KubeCredentialSource {
    /// Deadline of one `get`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Longest reuse of "not found": someone told to create a secret sees it on their next try.
    pub const MAX_NOT_FOUND_TTL: Duration = Duration::from_secs(5);
    /// Most objects of each kind kept.
    const CAPACITY: u64 = 10_000;

    /// Answers are reused for `ttl` (a rotated secret is seen within this time), "not found" for at most
    /// [`Self::MAX_NOT_FOUND_TTL`]; API reads are counted in `metrics`.
    pub fn new(client: kube::Client, ttl: Duration, metrics: std::sync::Arc<KubeMetrics>) -> Self {
        fn cache<K: Clone + Send + Sync + 'static>(ttl: Duration) -> Lookups<K> {
            Cache::builder()
                .max_capacity(KubeCredentialSource::CAPACITY)
                .expire_after(LookupExpiry {
                    found: ttl,
                    not_found: ttl.min(KubeCredentialSource::MAX_NOT_FOUND_TTL),
                })
                .build()
        }
        Self {
            client,
            secrets: cache(ttl),
            service_accounts: cache(ttl),
            ttl,
            timeout: Self::DEFAULT_TIMEOUT,
            metrics,
        }
    }

    /// Sets the deadline of each `get` (default [`Self::DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn get<K>(
        &self,
        cache: &Lookups<K>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>, ApiError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let api: kube::Api<K> = kube::Api::namespaced(self.client.clone(), namespace);
        let timeout = self.timeout;
        let metrics = &self.metrics;
        let load = async move {
            tracing::debug!(kind = %K::kind(&()), namespace, name, "reading from the Kubernetes API");
            let answer = match tokio::time::timeout(timeout, api.get_opt(name)).await {
                Ok(answer) => answer.map_err(ApiError::from),
                Err(_) => Err(ApiError::Timeout { after: timeout }),
            };
            let outcome = match &answer {
                Ok(Some(_)) => "found",
                Ok(None) => "not_found",
                Err(ApiError::Forbidden { .. }) => "forbidden",
                Err(ApiError::Timeout { .. }) => "timeout",
                Err(_) => "error",
            };
            let resource = if K::kind(&()) == "Secret" {
                "secrets"
            } else {
                "serviceaccounts"
            };
            metrics
                .lookups
                .get_or_create(&LookupLabels { resource, outcome })
                .inc();
            answer
        };
        cache
            .try_get_with((namespace.to_owned(), name.to_owned()), load)
            .await
            .map_err(|shared| ApiError::clone(&shared))
    }
}

/// Per-entry lifetime of a lookup: existing objects for the TTL, absent ones for less.
struct LookupExpiry {
    found: Duration,
    not_found: Duration,
}

impl<K> moka::Expiry<(String, String), Option<K>> for LookupExpiry {
    fn expire_after_create(
        &self,
        _key: &(String, String),
        value: &Option<K>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.found
        } else {
            self.not_found
        })
    }
}

impl fmt::Debug for KubeCredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeCredentialSource")
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CredentialSource for KubeCredentialSource {
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, ApiError>> {
        Box::pin(self.get(&self.secrets, namespace, name))
    }

    fn service_account<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, ApiError>> {
        Box::pin(self.get(&self.service_accounts, namespace, name))
    }

    fn service_account_token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(async move {
            use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
            let api: kube::Api<ServiceAccount> =
                kube::Api::namespaced(self.client.clone(), namespace);
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![audience.to_owned()],
                    // Short-lived: a plugin exchanges it at once.
                    expiration_seconds: Some(600),
                    bound_object_ref: None,
                },
                ..TokenRequest::default()
            };
            let answer = tokio::time::timeout(
                self.timeout,
                api.create_token_request(name, &kube::api::PostParams::default(), &request),
            )
            .await
            .map_err(|_| ApiError::Timeout {
                after: self.timeout,
            })?
            .map_err(ApiError::from)?;
            answer
                .status
                .map(|status| status.token)
                .filter(|token| !token.is_empty())
                .ok_or_else(|| ApiError::InvalidResponse {
                    reason: "the TokenRequest answer holds no token".into(),
                })
        })
    }
}
