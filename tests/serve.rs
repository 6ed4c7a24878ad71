//! `pullgate serve` over real TLS: a real HTTPS client, bad bodies against the live server, certificate
//! rotation on disk without a restart, and the header-read timeout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pullgate::config::LogFormat;
use pullgate::config::{KubeApi, ServeConfig, Settings, TlsSource};
use pullgate::server::{self, Running, tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The static rules of the shipped policy only: the fixtures name public images, and these tests must
/// not reach beyond loopback (registry rules are tested against local registries in tests/resolution.rs).
fn policies_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pullgate-serve-policies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("policy dir");
    std::fs::write(
        dir.join("static.yaml"),
        "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: static}\nspec:\n  rules:\n    image-reference-valid: {}\n    tag-not-latest: {}\n    pull-policy: {}\n",
    )
    .expect("policy file");
    dir
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/admission")
            .join(name),
    )
    .expect("fixture exists")
}

fn config(tls: TlsSource) -> ServeConfig {
    let mut settings = Settings::default();
    settings.server.reload_interval_seconds = 1;
    settings.server.header_read_timeout_seconds = 1;
    ServeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        kube_api: KubeApi::Off,
        tls,
        policies: Some(policies_dir()),
        settings,
        log_format: LogFormat::Text,
    }
}

fn https_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("CA readable");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA parses")])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}

async fn validate(client: &reqwest::Client, running: &Running, body: Vec<u8>) -> (u16, Value) {
    let response = client
        .post(format!(
            "https://localhost:{}/validate",
            running.addr.port()
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request completes");
    let status = response.status().as_u16();
    let answer = response.json::<Value>().await.expect("JSON answer");
    (status, answer)
}

#[tokio::test]
async fn generated_certificate_serves_real_https() {
    install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server::start(config(TlsSource::Generate {
        dir: dir.path().to_owned(),
    }))
    .await
    .expect("server starts");
    let ca = running.generated_ca.clone().expect("CA generated");
    let client = https_client(&ca);
    for host in ["localhost", "127.0.0.1"] {
        let health = client
            .get(format!("https://{host}:{}/healthz", running.addr.port()))
            .send()
            .await
            .expect("healthz over TLS");
        assert_eq!(health.status(), 200, "{host}");
    }
    let (status, answer) = validate(
        &client,
        &running,
        fixture_bytes("admissionreview-v1-pod-create-latest-denied.json"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["response"]["uid"],
        "2171066e-56d4-4361-9fbb-3798c563a1dd"
    );
    assert_eq!(answer["response"]["allowed"], false);
    running
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn bad_bodies_over_tls_get_clear_answers_and_the_server_stays_up() {
    install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server::start(config(TlsSource::Generate {
        dir: dir.path().to_owned(),
    }))
    .await
    .expect("server starts");
    let client = https_client(running.generated_ca.as_deref().expect("CA"));
    let mut truncated = fixture_bytes("admissionreview-v1-pod-create.json");
    truncated.truncate(truncated.len() / 3);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\n\xff\xfe".to_vec(),
            400,
            "not valid JSON",
        ),
        ("empty", Vec::new(), 400, "request body is empty"),
        ("truncated", truncated, 400, "not valid JSON"),
        (
            "20 MiB",
            vec![b'{'; 20 * 1024 * 1024],
            413,
            "larger than the 8388608-byte limit",
        ),
    ];
    for (name, body, expected_status, expected) in cases {
        let (status, answer) = validate(&client, &running, body).await;
        assert_eq!(status, expected_status, "{name}");
        let message = answer["response"]["status"]["message"]
            .as_str()
            .unwrap_or("");
        assert!(message.contains(expected), "{name}: {message}");
        let health = client
            .get(format!("https://localhost:{}/healthz", running.addr.port()))
            .send()
            .await
            .expect("server still up");
        assert_eq!(health.status(), 200, "after {name}");
    }
    running
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

/// The leaf certificate the server presents, trusting any of `cas`.
async fn served_leaf(addr: SocketAddr, cas: &[&Path]) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        let pem = std::fs::read(ca).ok()?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.ok()?).ok()?;
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("localhost").ok()?;
    let stream = connector.connect(name, tcp).await.ok()?;
    let (_, connection) = stream.get_ref();
    Some(connection.peer_certificates()?.first()?.to_vec())
}

fn leaf_of(cert_file: &Path) -> Vec<u8> {
    let pem = std::fs::read(cert_file).expect("cert readable");
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate")
        .expect("parses")
        .to_vec()
}

/// Poll until the served leaf is `expected` or the deadline passes.
async fn wait_for_leaf(addr: SocketAddr, cas: &[&Path], expected: &[u8], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if served_leaf(addr, cas).await.as_deref() == Some(expected) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn certificate_rotation_on_disk_is_served_without_restart() {
    install_crypto();
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let live = tempfile::tempdir().expect("tempdir");
    let a = tls::generate_dev_certs(first.path()).expect("certs A");
    let b = tls::generate_dev_certs(second.path()).expect("certs B");
    let cert = live.path().join("tls.crt");
    let key = live.path().join("tls.key");
    std::fs::copy(&a.paths.cert, &cert).expect("copy");
    std::fs::copy(&a.paths.key, &key).expect("copy");
    let running = server::start(config(TlsSource::Files {
        cert: cert.clone(),
        key: key.clone(),
    }))
    .await
    .expect("server starts");
    let cas = [a.ca.as_path(), b.ca.as_path()];
    assert_eq!(
        served_leaf(running.addr, &cas).await,
        Some(leaf_of(&a.paths.cert))
    );

    // A broken new pair is refused: the old certificate keeps serving.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        served_leaf(running.addr, &cas).await,
        Some(leaf_of(&a.paths.cert))
    );
    // A mismatched pair (B's certificate with A's key) is refused too.
    std::fs::copy(&a.paths.key, &key).expect("copy");
    std::fs::copy(&b.paths.cert, &cert).expect("copy");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        served_leaf(running.addr, &cas).await,
        Some(leaf_of(&a.paths.cert))
    );

    // The complete new pair is picked up within seconds.
    std::fs::copy(&b.paths.key, &key).expect("copy");
    assert!(
        wait_for_leaf(
            running.addr,
            &cas,
            &leaf_of(&b.paths.cert),
            Duration::from_secs(10)
        )
        .await,
        "rotated certificate not served within 10 s"
    );
    running
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let running = server::start(config(TlsSource::Generate {
        dir: dir.path().to_owned(),
    }))
    .await
    .expect("server starts");
    let ca = running.generated_ca.clone().expect("CA");
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&ca).expect("CA");
    roots
        .add(CertificateDer::from_pem_slice(&pem).expect("parses"))
        .expect("adds");
    let mut client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(running.addr)
        .await
        .expect("connects");
    let mut stream = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("partial headers");
    // The header-read timeout is 1 s: the server must close (or answer 408) well before 10 s.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "connection with unfinished headers was kept open"
    );
    running
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}
