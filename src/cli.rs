//! Command line: clap derive arguments (each flag also an environment variable), turned into a validated
//! [`ServeConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ConfigError, KubeApi, ServeConfig, Settings, TlsSource};
use crate::telemetry::LogFormat;

/// pullgate: no pod reaches ImagePullBackOff for a reason that could be known when it was applied.
#[derive(Debug, Parser)]
#[command(name = "pullgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the validating admission webhook over HTTPS.
    Serve(ServeArgs),
    /// Print the version.
    Version,
}

/// `pullgate serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PULLGATE_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Directory of ImagePolicy YAML files (all merged; reloaded on change).
    #[arg(long, env = "PULLGATE_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// Optional YAML settings file.
    #[arg(long, env = "PULLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// kubeconfig for reading pull secrets; default: in-cluster config, then KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "PULLGATE_KUBECONFIG", conflicts_with = "kube_api")]
    pub kubeconfig: Option<PathBuf>,
    /// `auto` reads pull secrets through the Kubernetes API when one is found; `off` never does.
    #[arg(long, env = "PULLGATE_KUBE_API", value_enum, default_value_t = KubeApiMode::Auto)]
    pub kube_api: KubeApiMode,
    /// Log line format.
    #[arg(long, env = "PULLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Whether to use the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KubeApiMode {
    Auto,
    Off,
}

/// Serving certificate: PEM files, or generated at start-up when none are given.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serving certificate (PEM; may hold the chain). Reloaded when it changes on disk.
    #[arg(long, env = "PULLGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "PULLGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where to write the self-signed CA and certificate when no --tls-cert is given.
    #[arg(long, env = "PULLGATE_GENERATED_CERT_DIR")]
    pub generated_cert_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// Validate the flags and read the config file.
    pub fn into_config(self) -> Result<ServeConfig, ConfigError> {
        let Self {
            listen,
            tls:
                TlsArgs {
                    tls_cert,
                    tls_key,
                    generated_cert_dir,
                },
            policies,
            config,
            kubeconfig,
            kube_api,
            log_format,
        } = self;
        let kube_api = match (kubeconfig, kube_api) {
            (Some(file), _) => KubeApi::Kubeconfig(file),
            (None, KubeApiMode::Auto) => KubeApi::Infer,
            (None, KubeApiMode::Off) => KubeApi::Off,
        };
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => TlsSource::Generate {
                dir: generated_cert_dir
                    .unwrap_or_else(|| std::env::temp_dir().join("pullgate-dev-certs")),
            },
        };
        let settings = match config {
            Some(file) => Settings::load(&file)?,
            None => Settings::default(),
        };
        Ok(ServeConfig {
            listen,
            kube_api,
            tls,
            policies_dir: policies,
            settings,
            log_format,
        })
    }
}
