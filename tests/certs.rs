//! Serving certificates as the apiserver would see them: `certs/generate.sh` and the Helm chart's generated
//! mode each produce a certificate and a caBundle; `pullgate serve` (in-process, on 127.0.0.1) serves the
//! certificate from the files, and a real TLS client that trusts only the caBundle connects with the name the
//! apiserver uses, `pullgate.pullgate-system.svc`. Also: a renewal keeps the CA and is picked up without a
//! restart, and a CA rotation with `--also-trust` keeps both the old and the new certificate trusted.

#[allow(dead_code)]
#[path = "deploy/render.rs"]
mod render;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use pullgate::config::LogFormat;
use pullgate::config::{KubeApi, ServeConfig, Settings, TlsSource};
use pullgate::server::{self, Running};
use render::{Rendered, helm_template, kustomize, repo, run};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The name the apiserver connects with (the webhook's Service).
const SERVICE_HOST: &str = "pullgate.pullgate-system.svc";

fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn generate(out: &Path, extra: &[&str]) -> String {
    let mut command = Command::new("bash");
    command
        .arg(repo().join("certs/generate.sh"))
        .args(extra)
        .arg(out);
    let output = command.output().expect("bash runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "generate.sh failed:\n{stderr}");
    stderr
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `pullgate serve` on 127.0.0.1 with this certificate and key, policies as shipped, no Kubernetes API.
async fn serve(cert: PathBuf, key: PathBuf) -> Running {
    let mut settings = Settings::default();
    settings.server.reload_interval_seconds = 1;
    server::start(ServeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        kube_api: KubeApi::Off,
        tls: TlsSource::Files { cert, key },
        policies: Some(repo().join("policies")),
        settings,
        log_format: LogFormat::Text,
    })
    .await
    .expect("pullgate serve starts with the certificate")
}

/// Connect to 127.0.0.1 as the apiserver would, trusting only the PEM certificates in `ca_bundle`, with
/// `name` as the server name; then `GET path`. The served leaf certificate and the HTTP status line, or
/// the handshake error.
async fn connect(
    running: &Running,
    ca_bundle: &[u8],
    name: &str,
    path: &str,
) -> Result<(Vec<u8>, String), std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle) {
        roots.add(cert.expect("caBundle PEM")).expect("a usable CA");
    }
    assert!(!roots.is_empty(), "caBundle holds no certificate");
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(running.addr).await?;
    let server_name = ServerName::try_from(name.to_owned()).expect("a DNS name");
    let mut stream = connector.connect(server_name, tcp).await?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a served certificate")
        .to_vec();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status = answer.lines().next().unwrap_or_default().to_owned();
    Ok((leaf, status))
}

/// A handshake refused because the certificate does not chain to a trusted CA.
fn untrusted(error: &std::io::Error) -> bool {
    let text = error.to_string();
    text.contains("UnknownIssuer") || text.contains("BadSignature")
}

fn leaf_of(pem: &[u8]) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .expect("a certificate")
        .expect("PEM parses")
        .to_vec()
}

/// The webhook's caBundle and the Secret's data, as `kubectl kustomize` renders the generated overlay.
fn rendered_trust(out: &Path) -> (Vec<u8>, Secret) {
    let r = Rendered::parse(&out.display().to_string(), &kustomize(out));
    let webhook = r.one::<ValidatingWebhookConfiguration>();
    let bundle = webhook.webhooks.unwrap_or_default()[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("generate.sh sets the caBundle")
        .0;
    (bundle, r.one::<Secret>())
}

async fn wait_for_leaf(running: &Running, ca_bundle: &[u8], expected: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (leaf, _) = connect(running, ca_bundle, SERVICE_HOST, "/healthz")
            .await
            .expect("handshake verifies");
        if leaf == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up from disk"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn generate_sh_certificate_verifies_for_the_service_name_with_the_generated_ca() {
    install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    generate(&out, &[]);
    let (ca, cert, key) = (out.join("ca.crt"), out.join("tls.crt"), out.join("tls.key"));

    // What kubectl would apply: the Secret holds these files and the caBundle is this CA.
    let (bundle, secret) = rendered_trust(&out);
    assert_eq!(bundle, read(&ca), "caBundle is the generated CA");
    let data = secret.data.expect("data");
    assert_eq!(secret.metadata.name.as_deref(), Some("pullgate-tls"));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(data["tls.crt"].0, read(&cert));
    assert_eq!(data["tls.key"].0, read(&key));

    let running = serve(cert.clone(), key).await;
    for host in [
        SERVICE_HOST,
        "pullgate.pullgate-system.svc.cluster.local",
        "pullgate.pullgate-system",
    ] {
        let (leaf, status) = connect(&running, &bundle, host, "/healthz")
            .await
            .unwrap_or_else(|e| panic!("{host}: handshake failed: {e}"));
        assert_eq!(
            leaf,
            leaf_of(&read(&cert)),
            "{host}: the generated certificate"
        );
        assert!(status.starts_with("HTTP/1.1 200"), "{host}: {status}");
    }
    let (_, ready) = connect(&running, &bundle, SERVICE_HOST, "/readyz")
        .await
        .expect("handshake");
    assert!(
        ready.starts_with("HTTP/1.1 200"),
        "readiness probe path: {ready}"
    );

    // Verification is real: another name, or another CA, is refused.
    let error = connect(&running, &bundle, "other.pullgate-system.svc", "/healthz")
        .await
        .expect_err("a name outside the SANs must not verify");
    assert!(error.to_string().contains("not valid for name"), "{error}");
    let other = dir.path().join("other");
    generate(&other, &[]);
    let error = connect(
        &running,
        &read(&other.join("ca.crt")),
        SERVICE_HOST,
        "/healthz",
    )
    .await
    .expect_err("another CA must not verify");
    assert!(untrusted(&error), "{error}");
    running
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn renewal_keeps_the_ca_and_ca_rotation_keeps_both_trusted() {
    install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    generate(&out, &[]);
    let (ca, cert, key) = (out.join("ca.crt"), out.join("tls.crt"), out.join("tls.key"));
    let first_ca = read(&ca);
    let first_leaf = leaf_of(&read(&cert));
    // Files changed right after start-up are noticed too: the watcher compares with what was loaded.
    let running = serve(cert.clone(), key.clone()).await;

    // Renewal: same CA (so the caBundle is unchanged), new serving certificate, reloaded without a restart.
    let log = generate(&out, &["--days", "30"]);
    assert!(log.contains("reusing the CA"), "{log}");
    assert_eq!(read(&ca), first_ca, "a renewal keeps the CA");
    let renewed = leaf_of(&read(&cert));
    assert_ne!(renewed, first_leaf, "a renewal issues a new certificate");
    wait_for_leaf(&running, &first_ca, &renewed).await;

    // CA rotation: a new CA, the old one kept in the caBundle; both the certificate still served and the new
    // one verify with that bundle, so no request fails while kubelet updates the Secret in the pods.
    let previous = dir.path().join("previous-ca.crt");
    std::fs::copy(&ca, &previous).expect("copy CA");
    let previous_arg = previous.display().to_string();
    generate(&out, &["--new-ca", "--also-trust", &previous_arg]);
    let (bundle, _) = rendered_trust(&out);
    assert_ne!(read(&ca), first_ca, "--new-ca makes a new CA");
    let mut both = read(&ca);
    both.extend(&first_ca);
    assert_eq!(bundle, both, "caBundle: the new CA, then the previous one");
    let (served, _) = connect(&running, &bundle, SERVICE_HOST, "/healthz")
        .await
        .expect("the old certificate verifies with the rotation bundle");
    let rotated = leaf_of(&read(&cert));
    if served != rotated {
        wait_for_leaf(&running, &bundle, &rotated).await;
    }
    let error = connect(&running, &first_ca, SERVICE_HOST, "/healthz")
        .await
        .expect_err("the new certificate does not verify with the old CA alone");
    assert!(untrusted(&error), "{error}");
    running
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn helm_generated_certificate_verifies_for_the_service_name_with_its_ca_bundle() {
    if render::helm_skipped(
        "helm_generated_certificate_verifies_for_the_service_name_with_its_ca_bundle",
    ) {
        return;
    }
    install_crypto();
    let r = Rendered::parse("helm (default values)", &helm_template(&[], &[]));
    let webhook = r.one::<ValidatingWebhookConfiguration>();
    let bundle = webhook.webhooks.unwrap_or_default()[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("caBundle")
        .0;
    let data = r.one::<Secret>().data.expect("Secret data");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &data["tls.crt"].0).expect("write");
    std::fs::write(&key, &data["tls.key"].0).expect("write");
    let running = serve(cert, key).await;
    let (_, status) = connect(&running, &bundle, SERVICE_HOST, "/healthz")
        .await
        .expect("the chart's certificate verifies with the chart's caBundle");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    running
        .shutdown(Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

/// A mistyped option stops the script with the usage status; `--help` documents every option.
#[test]
fn generate_sh_rejects_unknown_options() {
    let mut command = Command::new("bash");
    command.arg(repo().join("certs/generate.sh")).arg("--bogus");
    let output = command.output().expect("bash runs");
    assert_eq!(output.status.code(), Some(2));
    let help = {
        let mut command = Command::new("bash");
        command.arg(repo().join("certs/generate.sh")).arg("--help");
        run(command)
    };
    assert!(help.contains("--also-trust"), "{help}");
}
