//! TLS for the webhook: loading a PEM certificate chain and key into a rustls config, generating a
//! self-signed CA and serving certificate for local use, and reloading the files when they change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate/key pair was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a broken one.
    #[error("{file}: no valid PEM certificate found ({reason})")]
    NoCertificate { file: PathBuf, reason: String },
    /// The key file holds no PEM private key, or a broken one.
    #[error("{file}: no valid PEM private key found ({reason})")]
    NoKey { file: PathBuf, reason: String },
    /// rustls refused the pair (e.g. the key does not belong to the certificate).
    #[error("{cert} + {key}: {source}")]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// Generating the development certificates failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing the generated files failed.
    #[error("{file}: cannot write: {source}")]
    Write {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate file and its key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|source| TlsError::Read {
        file: file.to_owned(),
        source,
    })
}

/// Build a server config from PEM bytes. ALPN offers HTTP/2 and HTTP/1.1.
pub fn server_config(
    paths: &CertPaths,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate {
            file: paths.cert.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: paths.cert.clone(),
            reason: "the file has no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
        file: paths.key.clone(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rejected {
            cert: paths.cert.clone(),
            key: paths.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate and key file contents a config was built from (to notice changes).
pub type Loaded = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Read both files and build a server config; also returns what was read, for [`watch`].
pub fn load(paths: &CertPaths) -> Result<(Arc<ServerConfig>, Loaded), TlsError> {
    let (cert, key) = (read(&paths.cert)?, read(&paths.key)?);
    let config = server_config(paths, &cert, &key)?;
    Ok((config, (Some(cert), Some(key))))
}

/// When the first certificate of a PEM chain expires (Unix seconds), for
/// `pullgate_tls_certificate_not_after_seconds`.
pub fn not_after(pem: &[u8]) -> Option<i64> {
    use rustls::pki_types::pem::PemObject as _;
    let first = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(&first).ok()?;
    Some(certificate.validity().not_after.timestamp())
}

/// What [`generate_dev_certs`] wrote.
#[derive(Debug, Clone)]
pub struct GeneratedCerts {
    pub paths: CertPaths,
    /// The CA certificate clients must trust (`curl --cacert`).
    pub ca: PathBuf,
}

/// Generate a throw-away CA and a serving certificate for `localhost`, `127.0.0.1` and `::1`, and write
/// `ca.pem`, `tls.crt` (certificate then CA) and `tls.key` (mode 0600) into `dir`.
pub fn generate_dev_certs(dir: &Path) -> Result<GeneratedCerts, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pullgate development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf_params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        file: dir.to_owned(),
        source,
    })?;
    let write = |name: &str, contents: String, private: bool| -> Result<PathBuf, TlsError> {
        let file = dir.join(name);
        let err = |source| TlsError::Write {
            file: file.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut handle = options.open(&file).map_err(err)?;
        std::io::Write::write_all(&mut handle, contents.as_bytes()).map_err(err)?;
        Ok(file)
    };
    let ca = write("ca.pem", ca_cert.pem(), false)?;
    let cert = write(
        "tls.crt",
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        false,
    )?;
    let key = write("tls.key", leaf_key.serialize_pem(), true)?;
    Ok(GeneratedCerts {
        paths: CertPaths { cert, key },
        ca,
    })
}

/// Watch the certificate and key files and swap the served pair when they change. A new pair that does
/// not load is refused with a log line and the old pair keeps serving. `loaded` is what the served config
/// was built from, so a change made before the first check is noticed too. Runs until the task is dropped.
pub async fn watch(
    paths: CertPaths,
    config: RustlsConfig,
    interval: Duration,
    metrics: std::sync::Arc<super::Metrics>,
    loaded: Loaded,
) {
    let snapshot = |paths: &CertPaths| {
        (
            std::fs::read(&paths.cert).ok(),
            std::fs::read(&paths.key).ok(),
        )
    };
    let mut last = loaded;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let current = snapshot(&paths);
        if current == last {
            continue;
        }
        match (&current.0, &current.1) {
            (Some(cert), Some(key)) => match server_config(&paths, cert, key) {
                Ok(new) => {
                    config.reload_from_config(new);
                    metrics.reload("certificates", true);
                    metrics.certificate_not_after(not_after(cert));
                    tracing::info!(cert = %paths.cert.display(), "serving certificate reloaded");
                }
                Err(error) => {
                    metrics.reload("certificates", false);
                    tracing::error!(%error, "new certificate refused; still serving the previous one");
                }
            },
            _ => {
                metrics.reload("certificates", false);
                tracing::error!(
                    cert = %paths.cert.display(),
                    key = %paths.key.display(),
                    "certificate or key file unreadable; still serving the previous one"
                );
            }
        }
        last = current;
    }
}
