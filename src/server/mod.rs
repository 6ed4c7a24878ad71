//! The HTTPS server: [`router()`] with `/validate`, `/healthz`, `/readyz` and `/metrics`, and [`start`],
//! which connects to the Kubernetes API, has [`wiring`](crate::wiring) build the resolver, serves with
//! rustls, and runs the background tasks: policy and certificate reloads, node platform discovery and
//! pull-budget probes. [`run`] drains in-flight requests on shutdown.

mod body;
mod connections;
mod metrics;
pub mod nodes;
pub mod probes;
mod reload;
mod router;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

pub use body::BodyLimits;
pub use metrics::Metrics;
pub use reload::PolicyStore;
pub use router::{AppState, router};

use crate::audit::continuous::{Continuous, Policies};
use crate::audit::lease::Elector;
use crate::audit::status::AuditMetrics;
use crate::config::{AuditSettings, KubeApi, ServeConfig, Settings, TlsSource};

/// The policies `serve` starts with: `--policies` (which must be a directory), else `./policies` when it
/// exists, else the built-in policy (said in the log).
fn load_policies(given: Option<&std::path::Path>) -> anyhow::Result<PolicyStore> {
    let dir = match given {
        Some(dir) if !dir.is_dir() => {
            anyhow::bail!("--policies {}: no such directory", dir.display())
        }
        Some(dir) => dir,
        None if std::path::Path::new("policies").is_dir() => std::path::Path::new("policies"),
        None => {
            let set = crate::policy::built_in().context("the built-in policy")?;
            tracing::info!(
                policies = ?set.names(),
                "no --policies and no ./policies directory: using the built-in policy (policies/default.yaml)"
            );
            return Ok(PolicyStore::fixed(set));
        }
    };
    // The error names the file, document and key already.
    let store =
        PolicyStore::load(dir).map_err(|e| anyhow::anyhow!("--policies {}: {e}", dir.display()))?;
    let names = store.current().names().to_vec();
    if names.is_empty() {
        tracing::warn!(dir = %dir.display(), "no policies found: every request will be allowed");
    } else {
        tracing::info!(dir = %dir.display(), policies = ?names, "policies loaded");
    }
    Ok(store)
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
    /// The audit Lease, released on shutdown so another replica takes over at once.
    lease: Option<Arc<Elector>>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish within `grace`, and wait for the server to end.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        self.handle.graceful_shutdown(Some(grace));
        let result = self.task.await.context("server task failed")?;
        for task in self.background {
            task.abort();
        }
        if let Some(lease) = self.lease {
            lease.release().await;
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
        policies: policies_dir,
        settings,
        log_format: _,
    } = config;
    let kube = connect_kube(&kube_api).await?;
    let mut registry = crate::telemetry::metrics_registry();
    let wired = crate::wiring::serve(&settings, kube.clone(), &mut registry)
        .context("invalid registry settings")?;
    let audit_metrics = match (&settings.audit, &kube) {
        (Some(audit), Some(_)) => Some(Arc::new(AuditMetrics::register(
            &mut registry,
            audit.max_series,
        ))),
        (Some(_), None) => {
            tracing::warn!(
                "audit is set but there is no Kubernetes API: continuous re-verification is off"
            );
            None
        }
        (None, _) => None,
    };
    let metrics = Arc::new(Metrics::new(registry));
    let probes: Vec<_> = settings
        .rate_limit_probes
        .iter()
        .map(|probe| {
            tokio::spawn(probes::keep_probing(
                probe.clone(),
                wired.client.clone(),
                wired.updates.clone(),
            ))
        })
        .collect();
    let discovery = match (&kube, settings.node_platform_discovery) {
        (Some(client), true) => Some(tokio::spawn(nodes::keep_discovering(
            client.clone(),
            wired.updates.clone(),
            Duration::from_secs(60),
        ))),
        _ => None,
    };
    let server_settings = settings.server.clone();
    let policies = Arc::new(load_policies(policies_dir.as_deref())?);
    let (lease, audit_tasks) = match (&settings.audit, &kube, audit_metrics) {
        (Some(audit), Some(client), Some(audit_metrics)) => {
            let store = policies.clone();
            let (elector, tasks) = start_audit(
                &settings,
                audit,
                client.clone(),
                Arc::new(move || store.current()),
                audit_metrics,
            );
            (Some(elector), tasks)
        }
        _ => (None, Vec::new()),
    };
    let (paths, generated_ca) = match tls {
        TlsSource::Files { cert, key } => (tls::CertPaths { cert, key }, None),
        TlsSource::Generate { dir } => {
            let generated = tls::generate_dev_certs(&dir)?;
            (generated.paths, Some(generated.ca))
        }
    };
    let (served, loaded) = tls::load(&paths)?;
    metrics.certificate_not_after(loaded.0.as_deref().and_then(tls::not_after));
    let rustls_config = RustlsConfig::from_config(served);

    let handle: Handle<SocketAddr> = Handle::new();
    let state = AppState {
        policies: policies.clone(),
        resolver: Some(Arc::new(wired.resolver)),
        body: BodyLimits::new(
            server_settings.max_request_bytes,
            server_settings.body_read_timeout(),
        ),
        metrics: metrics.clone(),
    };
    let open_files = connections::raise_open_file_limit();
    tracing::debug!(?open_files, "open-file limit");
    let acceptor = connections::acceptor(
        rustls_config.clone(),
        server_settings.handshake_timeout(),
        connections::fit_to_open_files(server_settings.max_connections, open_files),
        server_settings.idle_timeout(),
    );
    let mut server = axum_server::bind(listen)
        .acceptor(acceptor)
        .handle(handle.clone())
        .first_request_timeout(server_settings.header_read_timeout());
    server
        .http_builder()
        .http1()
        .header_read_timeout(server_settings.header_read_timeout());
    server
        .http_builder()
        .http2()
        .max_concurrent_streams(server_settings.http2_max_concurrent_streams)
        .keep_alive_interval(server_settings.http2_keepalive_interval())
        .keep_alive_timeout(Duration::from_secs(10));
    let app = router(state);
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    let Some(addr) = handle.listening().await else {
        // The server task ended before listening: its error says why (address in use, not available).
        let cause = match task.await {
            Ok(Err(error)) => error.to_string(),
            Ok(Ok(())) => "the server stopped before listening".to_owned(),
            Err(error) => error.to_string(),
        };
        anyhow::bail!("cannot listen on {listen}: {cause}");
    };

    let interval = server_settings.reload_interval();
    let watch_policies = tokio::spawn(reload::watch(policies.clone(), interval, metrics.clone()));
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
            .chain(audit_tasks)
            .collect(),
        lease,
    })
}

/// The continuous audit's two tasks: the Lease election and the rounds (which run while it is held).
fn start_audit(
    settings: &Settings,
    audit: &AuditSettings,
    client: kube::Client,
    policies: Policies,
    metrics: Arc<AuditMetrics>,
) -> (Arc<Elector>, Vec<tokio::task::JoinHandle<()>>) {
    let namespace = audit
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "pullgate-system".to_owned());
    let host = std::env::var("POD_NAME")
        .or_else(|_| {
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|_| "pullgate".to_owned());
    let identity = format!("{host}-{}", std::process::id());
    let elector = Arc::new(Elector::new(
        client.clone(),
        &namespace,
        &audit.lease_name,
        identity,
        Duration::from_secs(audit.lease_duration_seconds),
    ));
    tracing::info!(
        lease = %format!("{namespace}/{}", audit.lease_name),
        identity = %elector.identity(),
        interval_seconds = audit.interval_seconds,
        "continuous audit on (runs while this replica holds the Lease)"
    );
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(false);
    let electing = {
        let elector = elector.clone();
        tokio::spawn(async move { elector.keep_electing(leader_tx).await })
    };
    let continuous = Continuous {
        settings: settings.clone(),
        audit: audit.clone(),
        client,
        policies,
        metrics,
    };
    let rounds = tokio::spawn(continuous.run(leader_rx));
    (elector, vec![electing, rounds])
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
            // One line naming the path once: kube's own errors quote it again and repeat their cause.
            let file = kube::config::Kubeconfig::read_from(path).map_err(|error| {
                let cause = std::iter::successors(
                    Some(&error as &(dyn std::error::Error + 'static)),
                    |e| e.source(),
                )
                .last()
                .map_or_else(|| error.to_string(), ToString::to_string);
                anyhow::anyhow!("--kubeconfig {}: cannot read it: {cause}", path.display())
            })?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|error| {
                    anyhow::anyhow!("--kubeconfig {}: unusable: {error}", path.display())
                })?
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
