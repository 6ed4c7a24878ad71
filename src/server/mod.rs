//! The HTTPS server: `router()` with `/validate`, `/healthz` and `/readyz`, the policy store that reloads
//! `policies/` on change, and `run`, which serves with rustls, reloads certificates and drains on shutdown.

pub mod nodes;
pub mod probes;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kube::core::admission::AdmissionResponse;
use tracing::Instrument;

use crate::admission;
use crate::config::{KubeApi, ServeConfig, TlsSource};
use crate::policy::{PolicySet, load_dir};
use crate::resolve::Resolver;
use crate::telemetry::metrics::{AdmissionLabels, FindingLabels, Metrics};

/// The loaded policies, the last good set kept when a change is invalid.
#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    state: RwLock<PolicyState>,
}

#[derive(Debug)]
struct PolicyState {
    current: Arc<PolicySet>,
    /// The error of the newest version on disk, when it is invalid.
    error: Option<String>,
    /// Contents of the files the current state was built from, to notice changes.
    fingerprint: Vec<(PathBuf, Vec<u8>)>,
}

/// The policy files' names and contents, in order.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    crate::policy::policy_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let contents = std::fs::read(&f).unwrap_or_default();
            (f, contents)
        })
        .collect()
}

impl PolicyStore {
    /// Load the directory; an invalid set is an error here (start-up refuses to serve it).
    pub fn load(dir: &Path) -> Result<Self, crate::policy::PolicyError> {
        let print = fingerprint(dir);
        let loaded = load_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            state: RwLock::new(PolicyState {
                current: Arc::new(PolicySet::from_loaded(&loaded)),
                error: None,
                fingerprint: print,
            }),
        })
    }

    /// A store holding the given set, for tests and embedding.
    pub fn fixed(set: PolicySet) -> Self {
        Self {
            dir: PathBuf::new(),
            state: RwLock::new(PolicyState {
                current: Arc::new(set),
                error: None,
                fingerprint: Vec::new(),
            }),
        }
    }

    /// The policies in force.
    pub fn current(&self) -> Arc<PolicySet> {
        match self.state.read() {
            Ok(state) => state.current.clone(),
            Err(poisoned) => poisoned.into_inner().current.clone(),
        }
    }

    /// `None` when the files on disk are in force; otherwise why the newest version was refused.
    pub fn error(&self) -> Option<String> {
        match self.state.read() {
            Ok(state) => state.error.clone(),
            Err(poisoned) => poisoned.into_inner().error.clone(),
        }
    }

    /// Re-read the directory if any file changed. A valid change replaces the set; an invalid one keeps the
    /// last good set and records the error (so `/readyz` turns red).
    /// `None` when nothing changed, else whether the change was accepted.
    pub fn reload_if_changed(&self) -> Option<bool> {
        let print = fingerprint(&self.dir);
        let mut state = match self.state.write() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.fingerprint == print {
            return None;
        }
        state.fingerprint = print;
        match load_dir(&self.dir) {
            Ok(loaded) => {
                let set = PolicySet::from_loaded(&loaded);
                tracing::info!(policies = ?set.names(), "policies reloaded");
                state.current = Arc::new(set);
                state.error = None;
                Some(true)
            }
            Err(error) => {
                tracing::error!(%error, "policy change refused; keeping the last valid policies");
                state.error = Some(error.to_string());
                Some(false)
            }
        }
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub policies: Arc<PolicyStore>,
    /// Registry resolution; `None` runs the static rules only.
    pub resolver: Option<Arc<Resolver>>,
    pub max_request_bytes: usize,
    pub metrics: Arc<Metrics>,
}

/// The routes, with no TLS or listener: tests drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.policies.error() {
        None => (StatusCode::OK, "ok").into_response(),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: policies invalid: {error}\n"),
        )
            .into_response(),
    }
}

/// JSON response with the given status.
fn review_response(status: StatusCode, response: AdmissionResponse) -> Response {
    match serde_json::to_vec(&response.into_review()) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the AdmissionReview response: {error}"),
        )
            .into_response(),
    }
}

/// `POST /validate`: always answers with an AdmissionReview. A usable request gets HTTP 200 with the
/// verdict; a body that is not an AdmissionReview gets 400 (413 when too large) with `allowed: false` and
/// the reason, so a misconfigured caller sees why and the apiserver applies its `failurePolicy`.
async fn validate(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let limit = state.max_request_bytes;
    let too_large = || {
        let bad = admission::BadReview {
            uid: None,
            error: admission::ReviewError::TooLarge { limit },
        };
        review_response(StatusCode::PAYLOAD_TOO_LARGE, admission::reject(&bad))
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return too_large();
    }
    let body: Body = request.into_body();
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return too_large(),
        Err(error) => {
            let bad = admission::BadReview {
                uid: None,
                error: admission::ReviewError::InvalidRequest(format!(
                    "request body could not be read: {error}"
                )),
            };
            return review_response(StatusCode::BAD_REQUEST, admission::reject(&bad));
        }
    };
    let request = match admission::decode(&bytes) {
        Ok(request) => request,
        Err(bad) => {
            state
                .metrics
                .admissions
                .get_or_create(&AdmissionLabels {
                    kind: "unknown",
                    operation: "unknown",
                    verdict: "invalid",
                })
                .inc();
            tracing::warn!(error = %bad.error, uid = bad.uid.as_deref().unwrap_or(""), "bad AdmissionReview");
            return review_response(StatusCode::BAD_REQUEST, admission::reject(&bad));
        }
    };
    let review = &request.review;
    let span = tracing::info_span!(
        "admission",
        uid = %review.uid,
        kind = %review.kind.kind,
        namespace = review.namespace.as_deref().unwrap_or(""),
        name = %review.name,
        operation = ?review.operation,
        dry_run = review.dry_run,
    );
    let metrics = state.metrics.clone();
    let kind =
        crate::workload::WorkloadKind::from_group_kind(&review.kind.group, &review.kind.kind)
            .map_or("other", |k| k.as_str());
    let operation = operation_label(&review.operation);
    let decide = async {
        let started = std::time::Instant::now();
        metrics.in_flight.inc();
        let policies = state.policies.current();
        let ((response, verdict), registry_calls) = crate::telemetry::count_registry_calls(
            admission::review(&request, &policies, state.resolver.as_deref()),
        )
        .await;
        metrics.in_flight.dec();
        let elapsed = started.elapsed();
        metrics.admission_seconds.observe(elapsed.as_secs_f64());
        let fired: Vec<String> = verdict
            .as_ref()
            .map(|v| {
                v.findings
                    .iter()
                    .map(|f| format!("{}:{}", f.rule, f.action))
                    .collect()
            })
            .unwrap_or_default();
        for finding in verdict.iter().flat_map(|v| &v.findings) {
            metrics
                .findings
                .get_or_create(&FindingLabels {
                    rule: finding.rule.as_str(),
                    action: finding.action.as_str(),
                })
                .inc();
        }
        let outcome = match (&response.allowed, &response.warnings) {
            (false, _) => "denied",
            (true, Some(w)) if !w.is_empty() => "warned",
            (true, _) => "allowed",
        };
        metrics
            .admissions
            .get_or_create(&AdmissionLabels {
                kind,
                operation,
                verdict: outcome,
            })
            .inc();
        tracing::info!(
            verdict = outcome,
            rules = ?fired,
            warnings = response.warnings.as_ref().map_or(0, Vec::len),
            registry_calls,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "admission decided"
        );
        review_response(StatusCode::OK, response)
    };
    decide.instrument(span).await
}

/// The operation as a metric label.
fn operation_label(operation: &kube::core::admission::Operation) -> &'static str {
    use kube::core::admission::Operation;
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// A server started by [`start`].
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The CA to trust when certificates were generated.
    pub generated_ca: Option<PathBuf>,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish within `grace`, and wait for the server to end.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        self.handle.graceful_shutdown(Some(grace));
        let result = self.task.await.context("server task failed")?;
        for task in self.background {
            task.abort();
        }
        result.context("server stopped with an error")
    }
}

/// Load policies and certificates, bind, and serve in the background.
pub async fn start(config: ServeConfig) -> anyhow::Result<Running> {
    let ServeConfig {
        listen,
        kube_api,
        tls,
        policies_dir,
        settings,
        log_format: _,
    } = config;
    let kube = connect_kube(&kube_api).await?;
    let metrics = Arc::new(Metrics::new());
    let resolver = Arc::new(
        Resolver::from_settings_with_metrics(&settings, kube.clone(), metrics.clone())
            .context("invalid registry settings")?,
    );
    let probes = budget_probes(&settings, &resolver, &metrics)?;
    let discovery = match (&kube, settings.node_platform_discovery) {
        (Some(client), true) => Some(tokio::spawn(nodes::keep_discovering(
            client.clone(),
            resolver.clone(),
            Duration::from_secs(60),
        ))),
        _ => None,
    };
    let server_settings = settings.server;
    let policies = Arc::new(
        PolicyStore::load(&policies_dir)
            .with_context(|| format!("cannot load policies from {}", policies_dir.display()))?,
    );
    let names = policies.current().names().to_vec();
    if names.is_empty() {
        tracing::warn!(dir = %policies_dir.display(), "no policies found: every request will be allowed");
    } else {
        tracing::info!(dir = %policies_dir.display(), policies = ?names, "policies loaded");
    }
    let (paths, generated_ca) = match tls {
        TlsSource::Files { cert, key } => (tls::CertPaths { cert, key }, None),
        TlsSource::Generate { dir } => {
            let generated = tls::generate_dev_certs(&dir)?;
            (generated.paths, Some(generated.ca))
        }
    };
    let (served, loaded) = tls::load(&paths)?;
    let rustls_config = RustlsConfig::from_config(served);

    let handle: Handle<SocketAddr> = Handle::new();
    let state = AppState {
        policies: policies.clone(),
        resolver: Some(resolver),
        max_request_bytes: server_settings.max_request_bytes,
        metrics: metrics.clone(),
    };
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls_config.clone())
        .handshake_timeout(server_settings.handshake_timeout());
    let mut server = axum_server::bind(listen)
        .acceptor(acceptor)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(server_settings.header_read_timeout());
    let app = router(state);
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    let addr = handle
        .listening()
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;

    let interval = server_settings.reload_interval();
    let watch_policies = {
        let policies = policies.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let store = policies.clone();
                // Reading files blocks: keep it off the request threads.
                match tokio::task::spawn_blocking(move || store.reload_if_changed()).await {
                    Ok(Some(ok)) => metrics.reload("policies", ok),
                    Ok(None) => {}
                    Err(error) => tracing::error!(%error, "policy reload task failed"),
                }
            }
        })
    };
    let watch_certs = tokio::spawn(tls::watch(
        paths,
        rustls_config,
        interval,
        metrics.clone(),
        loaded,
    ));

    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    match &generated_ca {
        Some(ca) => tracing::info!(
            %addr,
            ca = %ca.display(),
            try_it = %format!("curl --cacert {} https://{shown}/healthz", ca.display()),
            "serving HTTPS with a generated self-signed certificate"
        ),
        None => tracing::info!(%addr, "serving HTTPS"),
    }
    Ok(Running {
        addr,
        generated_ca,
        handle,
        task,
        background: [Some(watch_policies), Some(watch_certs), discovery]
            .into_iter()
            .flatten()
            .chain(probes)
            .collect(),
    })
}

/// Start one pull-budget probe per `rateLimitProbes` entry, against the registry's own upstream endpoint.
fn budget_probes(
    settings: &crate::config::Settings,
    resolver: &Arc<Resolver>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    if settings.rate_limit_probes.is_empty() {
        return Ok(Vec::new());
    }
    let hosts = crate::registry::hosts::RegistryHosts::load(
        &settings.registries,
        settings.containerd_hosts_dir.as_deref(),
    )?;
    Ok(settings
        .rate_limit_probes
        .iter()
        .filter_map(|probe| {
            let endpoint = hosts
                .endpoints(probe.registry.as_str())
                .into_iter()
                .rfind(|e| !e.is_mirror)?;
            Some(tokio::spawn(probes::keep_probing(
                probe.clone(),
                endpoint,
                resolver.clone(),
                metrics.clone(),
            )))
        })
        .collect())
}

/// A Kubernetes client for reading pull secrets: from `--kubeconfig` when given (an error if it is
/// unusable), else in-cluster config or the usual kubeconfig, else none — then pull-secret checks are
/// reported as not verifiable.
async fn connect_kube(access: &KubeApi) -> anyhow::Result<Option<kube::Client>> {
    let config = match access {
        KubeApi::Off => {
            tracing::warn!("Kubernetes API off: pull-secret checks are reported as not verifiable");
            return Ok(None);
        }
        KubeApi::Kubeconfig(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("unusable kubeconfig {}", path.display()))?
        }
        KubeApi::Infer => match kube::Config::infer().await {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!(%error, "no Kubernetes API: pull secrets and ServiceAccounts cannot be read, pull-secret checks are reported as not verifiable");
                return Ok(None);
            }
        },
    };
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("cannot build the Kubernetes client")?;
    tracing::info!(%url, "reading pull secrets through the Kubernetes API");
    Ok(Some(client))
}

/// Serve until `shutdown` resolves, then drain in-flight requests.
pub async fn run(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let grace = config.settings.server.shutdown_grace();
    let running = start(config).await?;
    shutdown.await;
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    running.shutdown(grace).await
}
