//! Slow and silent clients against the real `pullgate serve` (the binary, TLS, its own config with
//! 2-second timeouts, started under a 1,024 open-file limit): slow bodies, silent HTTP/2 connections,
//! HTTP/2 connections kept open after a request, and stalled multi-megabyte bodies are all cut within
//! the timeouts; memory stays under 256 MiB; an admission on the API server's kept-alive connection is
//! answered meanwhile within a second; an oversized body over HTTP/2 gets the 413 AdmissionReview.
//! Loopback only; every loop is bounded.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use support::process::{Process, free_port};
use support::registry::install_crypto;
use support::webhook::{one_container, pod_review};

/// The server's timeouts in these tests (seconds): header, body, idle.
const TIMEOUT: u64 = 2;
/// A cut connection must end within the timeout plus this (handshakes of a crowd on 2 cores).
const SLACK: Duration = Duration::from_secs(8);

struct Serve {
    process: Process,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    tls_h2: Arc<rustls::ClientConfig>,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn status_kib(&self, field: &str) -> u64 {
        self.process.status_kib(field)
    }

    async fn tls(&self, h2: bool) -> std::io::Result<TlsStream<TcpStream>> {
        let config = if h2 { &self.tls_h2 } else { &self.tls };
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let name = ServerName::try_from("127.0.0.1").expect("name");
        TlsConnector::from(config.clone()).connect(name, tcp).await
    }

    /// A client that keeps its connection alive, as kube-apiserver does.
    fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca).expect("CA");
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA")])
            .pool_max_idle_per_host(1)
            .build()
            .expect("client")
    }
}

/// One server at a time: the floods measure the server, not two servers fighting over 2 cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serve() -> Serve {
    install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  headerReadTimeoutSeconds: {TIMEOUT}\n  bodyReadTimeoutSeconds: {TIMEOUT}\n  idleTimeoutSeconds: {TIMEOUT}\n"
        ),
    )
    .expect("config");
    let port = free_port();
    let certs = dir.path().join("certs");
    let command = format!(
        "ulimit -n 1024 && exec {bin} serve --kube-api off --listen 127.0.0.1:{port} --config {config} --policies {policies} --generated-cert-dir {certs}",
        bin = env!("CARGO_BIN_EXE_pullgate"),
        config = config.display(),
        policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies"),
        certs = certs.display(),
    );
    let child = Command::new("sh")
        .args(["-c", &command])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pullgate serve starts");
    let ca = certs.join("ca.pem");
    let process = Process(child);
    for _ in 0..200 {
        if ca.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ders: Vec<CertificateDer<'static>> = match CertificateDer::pem_file_iter(&ca) {
        Ok(ders) => ders.flatten().collect(),
        Err(error) => panic!("pullgate serve wrote no CA: {error}"),
    };
    let mut roots = rustls::RootCertStore::empty();
    for der in ders {
        roots.add(der).expect("CA");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut h2 = config.clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    wait_up(Serve {
        process,
        port,
        tls: Arc::new(config),
        tls_h2: Arc::new(h2),
        ca,
        _dir: dir,
    })
    .await
}

async fn wait_up(serve: Serve) -> Serve {
    for _ in 0..200 {
        if serve.tls(false).await.is_ok() {
            return serve;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pullgate serve did not come up");
}

fn review_body() -> Vec<u8> {
    serde_json::to_vec(&pod_review(one_container("nginx:latest"))).expect("JSON")
}

/// A client with its connection open (as the API server's is before any flood).
async fn warmed(serve: &Serve) -> reqwest::Client {
    let client = serve.client();
    admissions_meanwhile(serve, &client, Instant::now()).await;
    client
}

/// Admissions on `client`'s kept-alive connection every 300 ms until `until` (at least one); the
/// slowest answer.
async fn admissions_meanwhile(serve: &Serve, client: &reqwest::Client, until: Instant) -> Duration {
    let url = format!("https://127.0.0.1:{}/validate", serve.port);
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while answered == 0 || Instant::now() < until {
        let started = Instant::now();
        let answer: Value = client
            .post(&url)
            .header("content-type", "application/json")
            .body(review_body())
            .send()
            .await
            .expect("answered during the flood")
            .json()
            .await
            .expect("JSON");
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        slowest = slowest.max(started.elapsed());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    slowest
}

/// How long after it was opened a connection ended (EOF, error or a refused handshake). At most
/// `handshakes` connections are being opened at once (all of them are then held at once).
async fn held(
    serve: &Serve,
    handshakes: &tokio::sync::Semaphore,
    h2: bool,
    first: &'static [u8],
) -> Duration {
    let permit = handshakes.acquire().await.expect("semaphore");
    let opened = Instant::now();
    let stream = serve.tls(h2).await;
    drop(permit);
    let Ok(mut stream) = stream else {
        return opened.elapsed();
    };
    if stream.write_all(first).await.is_err() {
        return opened.elapsed();
    }
    let mut buffer = [0u8; 4096];
    let deadline = opened + Duration::from_secs(TIMEOUT) + SLACK + SLACK;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return opened.elapsed(),
            Ok(Ok(_)) => {} // a 408 answer, HTTP/2 settings or pings: keep reading until closed
            Err(_) => return opened.elapsed(),
        }
    }
}

const SLOW_BODY: &[u8] = b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"apiVersion\":";
/// The HTTP/2 preface and an empty SETTINGS frame, then silence.
const SILENT_H2: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_and_silent_http2_connections_are_cut_while_admissions_go_on() {
    raise_own_open_file_limit();
    let _turn = ONE_AT_A_TIME.lock().await;
    let serve = serve().await;
    let handshakes = tokio::sync::Semaphore::new(50);
    let flood = async {
        let slow = (0..1000).map(|_| held(&serve, &handshakes, false, SLOW_BODY));
        let silent = (0..1000).map(|_| held(&serve, &handshakes, true, SILENT_H2));
        let (slow, silent) = futures::future::join(
            futures::future::join_all(slow),
            futures::future::join_all(silent),
        )
        .await;
        slow.into_iter().chain(silent).max().expect("connections")
    };
    let client = warmed(&serve).await;
    let meanwhile = admissions_meanwhile(&serve, &client, Instant::now() + Duration::from_secs(6));
    let (longest, slowest) = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join(flood, meanwhile),
    )
    .await
    .expect("bounded");
    assert!(
        longest <= Duration::from_secs(TIMEOUT) + SLACK,
        "a connection was held {longest:?}"
    );
    eprintln!("longest held connection {longest:?}, slowest admission {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "an admission took {slowest:?} during the flood"
    );
    // The policy reloader never ran out of file descriptors: still ready.
    let ready = serve
        .client()
        .get(format!("https://127.0.0.1:{}/readyz", serve.port))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_left_idle_after_a_request_is_closed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let serve = serve().await;
    let stream = serve.tls(true).await.expect("TLS");
    let (send, connection) = h2::client::handshake(stream).await.expect("h2");
    // The client library keeps answering the server's pings and the client keeps its handle: only
    // the server's idle timeout can end it.
    let connection = tokio::spawn(connection);
    let (status, answer) = h2_post(send.clone(), review_body()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let idle_since = Instant::now();
    tokio::time::timeout(Duration::from_secs(TIMEOUT) + SLACK, connection)
        .await
        .expect("the server closes an idle HTTP/2 connection")
        .expect("task")
        .ok();
    assert!(idle_since.elapsed() >= Duration::from_secs(TIMEOUT) - Duration::from_millis(500));
    drop(send);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_over_http2_gets_the_413_review() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let serve = serve().await;
    let stream = serve.tls(true).await.expect("TLS");
    let (send, connection) = h2::client::handshake(stream).await.expect("h2");
    tokio::spawn(connection);
    let (status, answer) = h2_post(send, vec![b' '; 20 << 20]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_large_bodies_keep_memory_bounded() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let serve = serve().await;
    let before = serve.status_kib("VmRSS:");
    let client = warmed(&serve).await;
    // 70 clients each send 7.8 MB of an 8 MB body and stop.
    let stall = (0..70).map(|_| async {
        let Ok(mut stream) = serve.tls(false).await else {
            return;
        };
        let head = "POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 8000000\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 100_000];
        for _ in 0..78 {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(SLACK + SLACK, stream.read_to_end(&mut rest)).await;
    });
    let meanwhile = admissions_meanwhile(&serve, &client, Instant::now() + Duration::from_secs(4));
    let (_, slowest) = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join(futures::future::join_all(stall), meanwhile),
    )
    .await
    .expect("bounded");
    let peak = serve.status_kib("VmHWM:");
    assert!(
        peak < 256 * 1024,
        "peak RSS {} MiB (at start {} MiB)",
        peak / 1024,
        before / 1024
    );
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
}

/// POST `body` on an HTTP/2 connection, within flow control; the status and the decoded answer.
async fn h2_post(send: h2::client::SendRequest<Bytes>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut send = send.ready().await.expect("ready");
    let request = Request::post("https://127.0.0.1/validate")
        .header("content-type", "application/json")
        .body(())
        .expect("request");
    let (response, mut stream) = send.send_request(request, false).expect("sent");
    let mut data = Bytes::from(body);
    while !data.is_empty() {
        stream.reserve_capacity(data.len().min(1 << 20));
        let Some(Ok(capacity)) = std::future::poll_fn(|cx| stream.poll_capacity(cx)).await else {
            break; // the server answered early
        };
        let chunk = data.split_to(capacity.min(data.len()));
        if stream.send_data(chunk, data.is_empty()).is_err() {
            break;
        }
    }
    let response = response.await.expect("an answer, not a reset");
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let answer = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, answer)
}

/// This test process opens 2,000 connections at once.
fn raise_own_open_file_limit() {
    let _ = rlimit::increase_nofile_limit(8192);
}
