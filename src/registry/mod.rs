//! Asking registries about images: the [`ImageResolver`] trait (tag → digest, digest → platforms), the
//! errors a registry conversation can end in — classified the way the troubleshooting guide names them —
//! and the oci-client implementation in [`oci`]. [`hosts`] says how the nodes reach each registry
//! (mirrors, CA, plain HTTP), so pullgate sees registries the way the nodes do.

pub mod budget;
mod classify;
pub mod hosts;
pub mod oci;

use futures::future::BoxFuture;

use crate::credentials::Credential;
use crate::facts::{ManifestDigest, ResolveError};
use crate::image::ImageRef;
use crate::platform::Platform;

pub use classify::classify;

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

/// A failure's class as a metric label.
pub fn outcome_label(error: &ResolveError) -> &'static str {
    match error {
        ResolveError::NotFound(_) => "not_found",
        ResolveError::Unauthorized => "unauthorized",
        ResolveError::Denied => "denied",
        ResolveError::RateLimited(_) => "rate_limited",
        ResolveError::Tls(_) => "tls",
        ResolveError::Refused | ResolveError::Dns(_) | ResolveError::Connect(_) => "network",
        ResolveError::Timeout => "timeout",
        ResolveError::Server { .. } => "server_error",
        ResolveError::InvalidResponse(_) => "invalid_response",
    }
}
