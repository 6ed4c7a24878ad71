//! A real Debian `docker-registry` (distribution 2.8) on 127.0.0.1 for integration tests, and a
//! builder that pushes tiny, deterministic test images into it.
//!
//! [`start`] writes the registry's own config into a temporary directory (never
//! `/etc/docker/registry/config.yml`), listens on a random loopback port, logs every request to
//! an access log ([`TestRegistry::count_requests`]) and kills the process on drop. Modes: plain
//! HTTP or TLS with a CA generated at test time; no auth, Basic (htpasswd, bcrypt) or Token (an
//! in-process axum endpoint issuing ES256 JWTs whose signer certificate is in `x5c`).
//! [`push_image`] builds images in memory and pushes them with oci-client. Nothing here leaves
//! the loopback interface and no image comes from the internet.
//!
//! [`token`] is the token service; [`images`] builds and pushes the test images.
#![allow(dead_code)] // each test binary uses a different part of the harness

mod images;
mod token;

use token::{TokenServer, start_token_server};

#[allow(unused_imports)] // each test binary uses a different part
pub use images::{ImageKind, Platform, PushedImage, push_image, push_image_detailed, retag};

use std::fs::{self, File};
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// How long [`start`] waits for `GET /v2/` to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many random ports [`start`] tries when another process wins the bind race.
const START_ATTEMPTS: usize = 5;
/// The response header (and value) that tells our registry apart from whatever else holds a port.
const INSTANCE_HEADER: &str = "x-pullgate-instance";
const TOKEN_SERVICE: &str = "pullgate-test-registry";
const TOKEN_ISSUER: &str = "pullgate-test-token-issuer";
const TOKEN_TTL_SECS: u64 = 300;

/// Installs aws-lc-rs as the process-wide rustls provider; a second call is a no-op.
pub fn install_crypto() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// How clients must authenticate to a [`TestRegistry`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anonymous access.
    #[default]
    None,
    /// HTTP Basic against an htpasswd file (bcrypt).
    Basic { user: String, pass: String },
    /// HTTP Basic with several accounts; the first is the one [`Auth::credentials`] gives.
    BasicUsers(Vec<(String, String)>),
    /// Bearer tokens from an in-process token endpoint that checks these Basic credentials.
    Token { user: String, pass: String },
}

impl Auth {
    pub fn basic(user: &str, pass: &str) -> Self {
        Self::Basic {
            user: user.to_owned(),
            pass: pass.to_owned(),
        }
    }

    pub fn token(user: &str, pass: &str) -> Self {
        Self::Token {
            user: user.to_owned(),
            pass: pass.to_owned(),
        }
    }

    /// HTTP Basic accepting each of these `(user, pass)`.
    pub fn basic_users(users: &[(&str, &str)]) -> Self {
        Self::BasicUsers(
            users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
        )
    }

    /// The `(user, pass)` a client needs, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            Self::None => None,
            Self::Basic { user, pass } | Self::Token { user, pass } => Some((user, pass)),
            Self::BasicUsers(users) => users.first().map(|(u, p)| (u.as_str(), p.as_str())),
        }
    }
}

/// What [`start`] runs. The default is plain HTTP, no auth, storage in the registry's temp dir.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    pub tls: bool,
    pub auth: Auth,
    /// Share a storage directory with other registries (same content, other auth/TLS).
    pub storage: Option<PathBuf>,
}

/// A running `docker-registry` process; killed on drop.
pub struct TestRegistry {
    // Field order is drop order: the process goes before its temp dir.
    child: ChildGuard,
    token_server: Option<TokenServer>,
    host: String,
    auth: Auth,
    ca: Option<TestCa>,
    storage: PathBuf,
    access_log: PathBuf,
    registry_log: PathBuf,
    _dir: TempDir,
}

struct TestCa {
    pem: String,
    path: PathBuf,
}

impl TestRegistry {
    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The PEM of the CA that signed the server certificate (TLS registries only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|ca| ca.pem.as_str())
    }

    /// A file holding [`Self::ca_pem`].
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_ref().map(|ca| ca.path.as_path())
    }

    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// The registry's own log (stderr), for failure messages.
    pub fn registry_log(&self) -> String {
        read_or_empty(&self.registry_log)
    }

    /// Every request so far as `(method, path with query)`, from the access log.
    pub fn requests(&self) -> Vec<(String, String)> {
        read_or_empty(&self.access_log)
            .lines()
            .filter_map(parse_access_line)
            .collect()
    }

    /// The authenticated user of each `method` request whose path contains `path_contains`, in log
    /// order (`-` when the request carried no accepted credentials).
    pub fn users(&self, method: &str, path_contains: &str) -> Vec<String> {
        read_or_empty(&self.access_log)
            .lines()
            .filter_map(|line| {
                let (m, path) = parse_access_line(line)?;
                let user = line.split(' ').nth(2)?.to_owned();
                (m == method && path.contains(path_contains)).then_some(user)
            })
            .collect()
    }

    /// How many `method` requests whose path contains `path_contains` the registry has served.
    pub fn count_requests(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, path)| m == method && path.contains(path_contains))
            .count()
    }

    /// How many requests the token endpoint has answered (0 unless [`Auth::Token`]).
    pub fn token_requests(&self) -> usize {
        self.token_server
            .as_ref()
            .map_or(0, |t| t.requests.load(Ordering::SeqCst))
    }

    /// The token realm URL (only with [`Auth::Token`]).
    pub fn token_realm(&self) -> Option<&str> {
        self.token_server.as_ref().map(|t| t.realm.as_str())
    }

    /// The right protocol and CA for this registry, bounded connect/read times, monolithic push.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            protocol: if self.ca.is_some() {
                ClientProtocol::Https
            } else {
                ClientProtocol::Http
            },
            extra_root_certificates: self
                .ca
                .iter()
                .map(|ca| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: ca.pem.clone().into_bytes(),
                })
                .collect(),
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(10)),
            ..ClientConfig::default()
        }
    }

    /// A fresh client (oci-client keeps the first credentials per host: one client per credential).
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::try_from(self.client_config()).context("building oci-client")
    }

    /// The credentials this registry accepts, as oci-client wants them.
    pub fn registry_auth(&self) -> RegistryAuth {
        match self.auth.credentials() {
            Some((user, pass)) => RegistryAuth::Basic(user.to_owned(), pass.to_owned()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// `127.0.0.1:PORT/repo:tag` as a [`Reference`].
    pub fn reference(&self, repo: &str, tag: &str) -> anyhow::Result<Reference> {
        let image = format!("{}/{repo}:{tag}", self.host);
        image.parse().with_context(|| format!("parsing {image}"))
    }
}

/// `127.0.0.1 - - [date] "HEAD /v2/x/manifests/y HTTP/1.1" 200 ...` -> `("HEAD", "/v2/x/...")`.
fn parse_access_line(line: &str) -> Option<(String, String)> {
    let (_, rest) = line.split_once('"')?;
    let (request, _) = rest.split_once('"')?;
    let mut parts = request.split(' ');
    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
}

/// A log the registry has not written yet reads as empty.
fn read_or_empty(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a registry and waits (at most [`START_TIMEOUT`]) until `GET /v2/` answers.
pub async fn start(opts: RegistryOptions) -> anyhow::Result<TestRegistry> {
    install_crypto();
    let RegistryOptions { tls, auth, storage } = opts;
    let dir = tempfile::Builder::new()
        .prefix("pullgate-registry-")
        .tempdir()?;
    // The temp dir's random name tells this registry's answers from any other's.
    let instance = dir
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .context("temp dir has no name")?
        .to_owned();
    let storage = storage.unwrap_or_else(|| dir.path().join("storage"));
    fs::create_dir_all(&storage).with_context(|| format!("creating {}", storage.display()))?;

    let (ca, tls_yaml) = if tls {
        let (ca, yaml) = write_tls_files(dir.path())?;
        (Some(ca), yaml)
    } else {
        (None, String::new())
    };
    let (auth_yaml, token_server) = match &auth {
        Auth::None => (String::new(), None),
        Auth::Basic { user, pass } => (
            write_htpasswd(dir.path(), &[(user.clone(), pass.clone())])?,
            None,
        ),
        Auth::BasicUsers(users) => (write_htpasswd(dir.path(), users)?, None),
        Auth::Token { user, pass } => {
            let (yaml, server) = start_token_server(dir.path(), user, pass).await?;
            (yaml, Some(server))
        }
    };

    let config_path = dir.path().join("config.yml");
    let access_log = dir.path().join("access.log");
    let registry_log = dir.path().join("registry.log");
    for _ in 0..START_ATTEMPTS {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let host = format!("127.0.0.1:{port}");
        let config = config_yaml(&host, &instance, &storage, &tls_yaml, &auth_yaml);
        fs::write(&config_path, config)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(File::create(&access_log)?)
            .stderr(File::create(&registry_log)?)
            .spawn()
            .context("spawning docker-registry (Debian package `docker-registry`; see test.sh)")?;
        let mut child = ChildGuard(child);
        let scheme = if tls { "https" } else { "http" };
        let ca_pem = ca.as_ref().map(|ca| ca.pem.as_str());
        let ready = wait_until_ready(
            &mut child.0,
            &format!("{scheme}://{host}"),
            &instance,
            ca_pem,
        )
        .await
        .with_context(|| format!("registry log:\n{}", read_or_empty(&registry_log)))?;
        match ready {
            Ready::Yes => {
                return Ok(TestRegistry {
                    child,
                    token_server,
                    host,
                    auth,
                    ca,
                    storage,
                    access_log,
                    registry_log,
                    _dir: dir,
                });
            }
            Ready::Exited(status) => {
                let log = read_or_empty(&registry_log);
                if !log.contains("address already in use") {
                    anyhow::bail!("docker-registry exited ({status}) on {host}:\n{log}");
                }
            }
        }
    }
    anyhow::bail!("docker-registry found no free port in {START_ATTEMPTS} attempts")
}

/// The registry's config: access log on (stdout), uploads never purged, deletes allowed; the
/// instance header lets the readiness probe tell this process from anything else on the port.
fn config_yaml(host: &str, instance: &str, storage: &Path, tls: &str, auth: &str) -> String {
    let storage = yaml_str(storage);
    format!(
        "\
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {host}
  secret: {instance}
  headers:
    X-Pullgate-Instance: [{instance}]
{tls}{auth}"
    )
}

enum Ready {
    Yes,
    Exited(std::process::ExitStatus),
}

async fn wait_until_ready(
    child: &mut Child,
    url: &str,
    instance: &str,
    ca_pem: Option<&str>,
) -> anyhow::Result<Ready> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1));
    if let Some(pem) = ca_pem {
        builder = builder.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes())?]);
    }
    let http = builder.build()?;
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(Ready::Exited(status));
        }
        // Any answer (401 included) from *this* instance means it is serving.
        if let Ok(response) = http.get(format!("{url}/v2/")).send().await {
            if response
                .headers()
                .get(INSTANCE_HEADER)
                .is_some_and(|v| v == instance)
            {
                return Ok(Ready::Yes);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("docker-registry at {url} did not answer GET /v2/ within {START_TIMEOUT:?}")
}

/// A JSON string is a valid YAML scalar: no quoting rules of our own.
fn yaml_str(path: &Path) -> String {
    Value::from(path.to_string_lossy()).to_string()
}

/// Writes a CA and a server certificate for 127.0.0.1/localhost; returns the CA and the
/// `http.tls` YAML block.
/// A CA made for a test and a server certificate it signed for `127.0.0.1` and `localhost`, as PEM
/// files in a directory.
pub struct TlsFiles {
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Make a test CA and a server certificate under `dir`.
pub fn tls_files(dir: &Path) -> anyhow::Result<TlsFiles> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pullgate test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server_params =
        CertificateParams::new(["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let files = TlsFiles {
        ca_pem: ca_cert.pem(),
        ca_path: dir.join("ca.pem"),
        cert_path: dir.join("server.pem"),
        key_path: dir.join("server-key.pem"),
    };
    fs::write(&files.ca_path, &files.ca_pem)?;
    fs::write(&files.cert_path, server_cert.pem())?;
    fs::write(&files.key_path, server_key.serialize_pem())?;
    Ok(files)
}

fn write_tls_files(dir: &Path) -> anyhow::Result<(TestCa, String)> {
    let files = tls_files(dir)?;
    let yaml = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        yaml_str(&files.cert_path),
        yaml_str(&files.key_path)
    );
    Ok((
        TestCa {
            pem: files.ca_pem,
            path: files.ca_path,
        },
        yaml,
    ))
}

/// Writes an htpasswd file with one bcrypt entry; returns the `auth` YAML block.
fn write_htpasswd(dir: &Path, users: &[(String, String)]) -> anyhow::Result<String> {
    let path = dir.join("htpasswd");
    let mut file = File::create(&path)?;
    for (user, pass) in users {
        // Cost 4 (the minimum) keeps each request's check fast; strength is irrelevant here.
        let hash = bcrypt::hash(pass, 4)?;
        writeln!(file, "{user}:{hash}")?;
    }
    Ok(format!(
        "auth:\n  htpasswd:\n    realm: pullgate-test\n    path: {}\n",
        yaml_str(&path)
    ))
}
