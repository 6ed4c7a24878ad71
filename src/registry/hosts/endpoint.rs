//! The endpoint model: one place a node sends registry requests to, with its scheme, API root,
//! capabilities and the trust it uses there (CA files read and checked once).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};

use super::HostsError;

/// The standard API root.
pub(super) const API_ROOT: &str = "/v2";

/// How to talk to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Https => "https",
        })
    }
}

/// One place a node would send registry requests to, with the trust it would use there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// `host[:port]` to connect to.
    pub host: String,
    /// The API root when it is not the standard `/v2`, as containerd computes it: `https://m/cache`
    /// gives `/cache/v2`; `https://m/v2/hub` with `override_path` gives `/v2/hub` (may be empty).
    pub path_prefix: Option<String>,
    /// CA files trusted besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// The contents of `ca_files`, one PEM document per file, each checked at load to hold at
    /// least one certificate, every certificate usable as a trust anchor.
    pub ca_pems: Vec<Vec<u8>>,
    pub skip_verify: bool,
    /// May resolve a tag to a digest.
    pub can_resolve: bool,
    /// May serve manifests and blobs by digest.
    pub can_pull: bool,
    /// A `[host]` entry or a `mirrors:` item, tried before the upstream (a `server` is never one).
    pub is_mirror: bool,
    /// HTTPS first, then plain HTTP when the server answers TLS with HTTP (containerd's `localhost`
    /// default on ports other than 80 and 443).
    pub http_fallback: bool,
}

impl Endpoint {
    /// The API root URL, e.g. `https://registry-1.docker.io/v2`.
    pub fn url(&self) -> String {
        let root = self.path_prefix.as_deref().unwrap_or(API_ROOT);
        format!("{}://{}{root}", self.scheme, self.host)
    }

    /// The part of the API root below `/v2/`, for clients that always request `/v2/<repository>`:
    /// `Ok(Some("hub"))` for `/v2/hub`, `Ok(None)` for `/v2`, `Err(root)` for a root not under
    /// `/v2/` (e.g. `/cache/v2`), which such a client cannot reach.
    pub fn repository_prefix(&self) -> Result<Option<&str>, &str> {
        match self.path_prefix.as_deref() {
            None => Ok(None),
            Some(root) => root.strip_prefix("/v2/").map(Some).ok_or(root),
        }
    }
}
/// Why a CA file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CaProblem {
    #[error("cannot be read")]
    Unreadable(#[source] io::Error),
    #[error("is not valid PEM")]
    Malformed(#[source] pem::Error),
    #[error("holds no PEM CERTIFICATE")]
    NoCertificate,
    #[error("holds a certificate that cannot be a trust anchor")]
    NotTrustAnchor(#[source] rustls::Error),
}
impl Endpoint {
    /// An endpoint with every capability, trusting the system roots only.
    pub(super) fn new(scheme: Scheme, host: &str, path_prefix: Option<String>) -> Self {
        Self {
            scheme,
            host: host.to_owned(),
            path_prefix,
            ca_files: Vec::new(),
            ca_pems: Vec::new(),
            skip_verify: false,
            can_resolve: true,
            can_pull: true,
            is_mirror: false,
            http_fallback: false,
        }
    }

    /// Reads and checks the CA files, `origin` naming where they were written.
    pub(super) fn trusting(
        self,
        ca_files: Vec<PathBuf>,
        skip_verify: bool,
        origin: &str,
    ) -> Result<Self, HostsError> {
        let ca_pems = ca_files
            .iter()
            .map(|path| read_ca(path, origin))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            ca_files,
            ca_pems,
            skip_verify,
            ..self
        })
    }
}
fn read_ca(path: &Path, origin: &str) -> Result<Vec<u8>, HostsError> {
    let fail = |problem| HostsError::Ca {
        origin: origin.to_owned(),
        path: path.to_owned(),
        problem,
    };
    let pem = fs::read(path).map_err(|e| fail(CaProblem::Unreadable(e)))?;
    let mut certificates = 0_usize;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| fail(CaProblem::Malformed(e)))?;
        let mut store = RootCertStore::empty();
        store
            .add(certificate)
            .map_err(|e| fail(CaProblem::NotTrustAnchor(e)))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(fail(CaProblem::NoCertificate));
    }
    Ok(pem)
}
