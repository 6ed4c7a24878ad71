//! Asking registries about images: the [`ImageResolver`] trait (tag → digest, digest → platforms), the
//! errors a registry conversation can end in — classified the way the troubleshooting guide names them —
//! and the oci-client implementation in [`oci`]. [`hosts`] says how the nodes reach each registry
//! (mirrors, CA, plain HTTP), so pullgate sees registries the way the nodes do.

pub mod budget;
mod classify;
pub mod hosts;
pub mod oci;

use std::fmt;

use futures::future::BoxFuture;

use crate::credentials::Credential;
use crate::image::ImageRef;
use crate::platform::Platform;

pub use classify::classify;

/// What a manifest lookup found missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Missing {
    /// The tag (or the repository: distribution answers MANIFEST_UNKNOWN for both).
    Manifest,
    /// The registry said the repository name is unknown.
    Repository,
}

/// How a registry conversation failed. Each maps to one rule of the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// 404 MANIFEST_UNKNOWN / NAME_UNKNOWN: the tag, digest or repository does not exist.
    #[error("not found")]
    NotFound(Missing),
    /// 401: no credentials, or the credentials were rejected.
    #[error("unauthorized (401)")]
    Unauthorized,
    /// 403 DENIED: authenticated, but not allowed to pull this repository.
    #[error("access denied (403)")]
    Denied,
    /// 429 TOOMANYREQUESTS.
    #[error("rate limited (429){}", detail_suffix(.0))]
    RateLimited(String),
    /// The TLS handshake failed: unknown CA, expired or mismatched certificate, or a plain-HTTP server.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// TCP connection refused.
    #[error("connection refused")]
    Refused,
    /// The registry host name does not resolve.
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    /// No answer within the time allowed.
    #[error("timed out")]
    Timeout,
    /// Any other failure to connect or to complete the exchange.
    #[error("connection failed: {0}")]
    Connect(String),
    /// 5xx, or another unexpected status.
    #[error("registry answered HTTP {status}")]
    Server { status: u16 },
    /// The registry answered something that is not a valid manifest or config.
    #[error("invalid registry response: {0}")]
    InvalidResponse(String),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// The class of a failure, which decides the rule that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    NotFound,
    Auth,
    RateLimited,
    Tls,
    Unreachable,
}

impl ResolveError {
    /// Which rule reports this failure.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::NotFound(_) => FailureClass::NotFound,
            Self::Unauthorized | Self::Denied => FailureClass::Auth,
            Self::RateLimited(_) => FailureClass::RateLimited,
            Self::Tls(_) => FailureClass::Tls,
            Self::Refused
            | Self::Dns(_)
            | Self::Timeout
            | Self::Connect(_)
            | Self::Server { .. }
            | Self::InvalidResponse(_) => FailureClass::Unreachable,
        }
    }

    /// The outcome class as a metric label.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::Denied => "denied",
            Self::RateLimited(_) => "rate_limited",
            Self::Tls(_) => "tls",
            Self::Refused | Self::Dns(_) | Self::Connect(_) => "network",
            Self::Timeout => "timeout",
            Self::Server { .. } => "server_error",
            Self::InvalidResponse(_) => "invalid_response",
        }
    }
}

/// A manifest digest, `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ManifestDigest(pub String);

impl fmt::Display for ManifestDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Asks a registry about images, with one credential (or anonymously).
pub trait ImageResolver: Send + Sync {
    /// The manifest digest the image's tag (or digest) resolves to: a HEAD request, no pull quota used.
    fn digest<'a>(
        &'a self,
        image: &'a ImageRef,
        credential: Option<&'a Credential>,
    ) -> BoxFuture<'a, Result<ManifestDigest, ResolveError>>;

    /// The platforms of the manifest with this digest: an index lists them; a single image's config
    /// blob names its one platform.
    fn platforms<'a>(
        &'a self,
        image: &'a ImageRef,
        digest: &'a ManifestDigest,
        credential: Option<&'a Credential>,
    ) -> BoxFuture<'a, Result<Vec<Platform>, ResolveError>>;
}
