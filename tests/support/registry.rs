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
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::fmt;
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

    /// The `(user, pass)` a client needs, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            Self::None => None,
            Self::Basic { user, pass } | Self::Token { user, pass } => Some((user, pass)),
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
        Auth::Basic { user, pass } => (write_htpasswd(dir.path(), user, pass)?, None),
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
fn write_tls_files(dir: &Path) -> anyhow::Result<(TestCa, String)> {
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

    let ca = TestCa {
        pem: ca_cert.pem(),
        path: dir.join("ca.pem"),
    };
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server-key.pem");
    fs::write(&ca.path, &ca.pem)?;
    fs::write(&cert_path, server_cert.pem())?;
    fs::write(&key_path, server_key.serialize_pem())?;
    let yaml = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        yaml_str(&cert_path),
        yaml_str(&key_path)
    );
    Ok((ca, yaml))
}

/// Writes an htpasswd file with one bcrypt entry; returns the `auth` YAML block.
fn write_htpasswd(dir: &Path, user: &str, pass: &str) -> anyhow::Result<String> {
    // Cost 4 (the minimum) keeps each request's check fast; strength is irrelevant here.
    let hash = bcrypt::hash(pass, 4)?;
    let path = dir.join("htpasswd");
    let mut file = File::create(&path)?;
    writeln!(file, "{user}:{hash}")?;
    Ok(format!(
        "auth:\n  htpasswd:\n    realm: pullgate-test\n    path: {}\n",
        yaml_str(&path)
    ))
}

struct TokenServer {
    task: JoinHandle<()>,
    requests: Arc<AtomicUsize>,
    realm: String,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct TokenIssuer {
    user: String,
    pass: String,
    signer: EcdsaKeyPair,
    /// base64 (standard, padded) DER of the signer's self-signed certificate.
    x5c: String,
    rng: SystemRandom,
    requests: Arc<AtomicUsize>,
}

/// Serves `GET /token` on a random loopback port; returns the `auth` YAML block.
async fn start_token_server(
    dir: &Path,
    user: &str,
    pass: &str,
) -> anyhow::Result<(String, TokenServer)> {
    let key = KeyPair::generate()?; // ECDSA P-256, so ES256
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "pullgate test token signer");
    let cert = params.self_signed(&key)?;
    let bundle = dir.join("token-signer.pem");
    fs::write(&bundle, cert.pem())?;

    let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der())
        .map_err(|e| anyhow!("loading the token signing key: {e}"))?;
    let requests = Arc::new(AtomicUsize::new(0));
    let issuer = Arc::new(TokenIssuer {
        user: user.to_owned(),
        pass: pass.to_owned(),
        signer,
        x5c: STANDARD.encode(cert.der()),
        rng: SystemRandom::new(),
        requests: Arc::clone(&requests),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let realm = format!("http://{}/token", listener.local_addr()?);
    let app = Router::new()
        .route("/token", get(issue_token))
        .with_state(issuer);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let yaml = format!(
        "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
        Value::from(realm.as_str()),
        yaml_str(&bundle)
    );
    Ok((
        yaml,
        TokenServer {
            task,
            requests,
            realm,
        },
    ))
}

/// Checks Basic credentials; grants every requested scope action to the right user.
async fn issue_token(
    State(issuer): State<Arc<TokenIssuer>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    issuer.requests.fetch_add(1, Ordering::SeqCst);
    let right = basic_credentials(&headers)
        .is_some_and(|(user, pass)| user == issuer.user && pass == issuer.pass);
    if !right {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"pullgate-test\"")],
            Json(json!({ "details": "wrong or missing username or password" })),
        )
            .into_response();
    }
    let access: Vec<Value> = params
        .iter()
        .filter(|(key, _)| key == "scope")
        .flat_map(|(_, scopes)| scopes.split(' '))
        .filter_map(scope_claim)
        .collect();
    match issuer.sign(&access) {
        Ok(token) => Json(json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_TTL_SECS,
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// `repository:team/app:pull,push` -> `{"type", "name", "actions"}`.
fn scope_claim(scope: &str) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(json!({ "type": kind, "name": name, "actions": actions }))
}

impl TokenIssuer {
    fn sign(&self, access: &[Value]) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let n = self.requests.load(Ordering::SeqCst);
        let header = json!({ "alg": "ES256", "typ": "JWT", "x5c": [self.x5c] });
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": self.user,
            "aud": TOKEN_SERVICE,
            "iat": now,
            "nbf": now.saturating_sub(10),
            "exp": now + TOKEN_TTL_SECS,
            "jti": format!("{now}-{n}"),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        );
        let signature = self
            .signer
            .sign(&self.rng, input.as_bytes())
            .map_err(|e| anyhow!("signing a token: {e}"))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// One platform of a test image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, arch: &str) -> Self {
        Self {
            os: os.to_owned(),
            arch: arch.to_owned(),
            variant: None,
        }
    }

    pub fn linux(arch: &str) -> Self {
        Self::new("linux", arch)
    }

    pub fn windows_amd64() -> Self {
        Self::new("windows", "amd64")
    }

    pub fn with_variant(mut self, variant: &str) -> Self {
        self.variant = Some(variant.to_owned());
        self
    }

    /// `{"architecture", "os", "variant"?}` as in an image config and an index entry.
    fn json(&self) -> Value {
        let mut value = json!({ "architecture": self.arch, "os": self.os });
        if let Some(variant) = &self.variant {
            value["variant"] = Value::from(variant.as_str());
        }
        value
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// What [`push_image`] builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// One OCI image manifest.
    Single {
        os: String,
        arch: String,
        variant: Option<String>,
    },
    /// An OCI image index over OCI image manifests.
    OciIndex(Vec<Platform>),
    /// A Docker schema2 manifest list over Docker schema2 manifests.
    DockerManifestList(Vec<Platform>),
}

impl ImageKind {
    pub fn single(platform: Platform) -> Self {
        let Platform { os, arch, variant } = platform;
        Self::Single { os, arch, variant }
    }
}

/// What [`push_image_detailed`] pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedImage {
    /// Digest of the tagged manifest (the index for multi-platform images).
    pub digest: String,
    pub media_type: &'static str,
    /// Each platform's image manifest digest (one entry for a single image).
    pub platforms: Vec<(Platform, String)>,
}

/// The media types of one image format.
struct MediaTypes {
    index: &'static str,
    manifest: &'static str,
    config: &'static str,
    layer: &'static str,
}

const OCI: MediaTypes = MediaTypes {
    index: "application/vnd.oci.image.index.v1+json",
    manifest: "application/vnd.oci.image.manifest.v1+json",
    config: "application/vnd.oci.image.config.v1+json",
    layer: "application/vnd.oci.image.layer.v1.tar+gzip",
};

const DOCKER: MediaTypes = MediaTypes {
    index: "application/vnd.docker.distribution.manifest.list.v2+json",
    manifest: "application/vnd.docker.distribution.manifest.v2+json",
    config: "application/vnd.docker.container.image.v1+json",
    layer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
};

/// Bytes plus their `sha256:` digest and media type: a blob or a manifest.
struct Content {
    media_type: &'static str,
    bytes: Vec<u8>,
    digest: String,
}

impl Content {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        let digest = sha256(&bytes);
        Self {
            media_type,
            bytes,
            digest,
        }
    }

    fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

fn sha256(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Pushes a test image as `repo:tag` and returns the tagged manifest's digest.
///
/// Images are deterministic: the same `(repo, tag, kind)` gives the same digest on every run and
/// every registry; the layer's text names repo, tag and platform, so different tags differ.
pub async fn push_image(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    kind: ImageKind,
) -> anyhow::Result<String> {
    Ok(push_image_detailed(reg, repo, tag, kind).await?.digest)
}

/// [`push_image`], also returning each platform's manifest digest.
pub async fn push_image_detailed(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    kind: ImageKind,
) -> anyhow::Result<PushedImage> {
    let client = reg.client()?;
    let auth = reg.registry_auth();
    let tagged = reg.reference(repo, tag)?;
    client
        .auth(&tagged, &auth, RegistryOperation::Push)
        .await
        .with_context(|| format!("authenticating to push {tagged}"))?;

    let (media, platforms) = match kind {
        ImageKind::Single { os, arch, variant } => {
            let platform = Platform { os, arch, variant };
            let manifest = push_platform(&client, &tagged, &OCI, &platform).await?;
            push_manifest(&client, &tagged, &manifest).await?;
            return Ok(PushedImage {
                digest: manifest.digest.clone(),
                media_type: manifest.media_type,
                platforms: vec![(platform, manifest.digest)],
            });
        }
        ImageKind::OciIndex(platforms) => (&OCI, platforms),
        ImageKind::DockerManifestList(platforms) => (&DOCKER, platforms),
    };

    let mut entries = Vec::new();
    let mut pushed = Vec::new();
    for platform in platforms {
        let manifest = push_platform(&client, &tagged, media, &platform).await?;
        let by_digest: Reference = format!("{}/{repo}@{}", reg.host(), manifest.digest).parse()?;
        push_manifest(&client, &by_digest, &manifest).await?;
        let mut entry = manifest.descriptor();
        entry["platform"] = platform.json();
        entries.push(entry);
        pushed.push((platform, manifest.digest));
    }
    let index = json!({ "schemaVersion": 2, "mediaType": media.index, "manifests": entries });
    let index = Content::new(media.index, serde_json::to_vec(&index)?);
    push_manifest(&client, &tagged, &index).await?;
    Ok(PushedImage {
        digest: index.digest,
        media_type: index.media_type,
        platforms: pushed,
    })
}

/// Builds one platform's layer and config, pushes both blobs, returns the (unpushed) manifest.
async fn push_platform(
    client: &Client,
    tagged: &Reference,
    media: &MediaTypes,
    platform: &Platform,
) -> anyhow::Result<Content> {
    // Not the host: the same image must have the same digest on every registry.
    let tag = tagged.tag().unwrap_or_default();
    let text = format!(
        "pullgate test image {}:{tag} {platform}\n",
        tagged.repository()
    );
    let tar = layer_tar(&text)?;
    let layer = Content::new(media.layer, gzip(&tar)?);

    let mut config = platform.json();
    config["created"] = Value::from("1970-01-01T00:00:00Z");
    config["config"] = json!({ "Cmd": ["/pullgate-test.txt"] });
    config["rootfs"] = json!({ "type": "layers", "diff_ids": [sha256(&tar)] });
    config["history"] =
        json!([{ "created": "1970-01-01T00:00:00Z", "created_by": "pullgate test harness" }]);
    let config = Content::new(media.config, serde_json::to_vec(&config)?);

    for blob in [&layer, &config] {
        client
            .push_blob(tagged, blob.bytes.clone(), &blob.digest)
            .await
            .with_context(|| format!("pushing blob {} to {tagged}", blob.digest))?;
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media.manifest,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    });
    Ok(Content::new(media.manifest, serde_json::to_vec(&manifest)?))
}

async fn push_manifest(
    client: &Client,
    reference: &Reference,
    manifest: &Content,
) -> anyhow::Result<()> {
    client
        .push_manifest_raw(
            reference,
            manifest.bytes.clone(),
            HeaderValue::from_static(manifest.media_type),
        )
        .await
        .with_context(|| format!("pushing manifest {} as {reference}", manifest.digest))?;
    Ok(())
}

/// A one-file tar with fixed mode, owner and mtime.
fn layer_tar(text: &str) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path("pullgate-test.txt")?;
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, text.as_bytes())?;
    builder.into_inner()
}

/// gzip with mtime 0 and no file name, so equal input gives equal bytes.
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}
