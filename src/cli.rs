//! Command line: clap derive arguments (each flag also an environment variable), turned into a validated
//! [`ServeConfig`] or [`CheckConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

use crate::audit::{AuditConfig, AuditFormat, Scope};
use crate::check::{CheckConfig, Input, OutputFormat, PolicySource};
use crate::config::LogFormat;
use crate::config::{
    ConfigError, CredentialProviderSettings, DEFAULT_PROVIDER_TIMEOUT_SECONDS, KubeApi,
    ServeConfig, Settings, TlsSource,
};
use crate::credentials::LocalDockerConfig;
use crate::wiring::RegistryAccess;

/// The version `--version` prints: the crate's, and the git commit the binary was built from (`unknown`
/// outside a git checkout; see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PULLGATE_COMMIT"),
    ")"
);

/// pullgate: no pod reaches ImagePullBackOff for a reason that could be known when it was applied.
#[derive(Debug, Parser)]
#[command(name = "pullgate", version = VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the validating admission webhook over HTTPS.
    Serve(ServeArgs),
    /// Check manifest files (or stdin) with the webhook's rules, for CI.
    Check(CheckArgs),
    /// Report what in a live cluster would fail to pull now.
    Audit(AuditArgs),
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
    /// Directory of ImagePolicy YAML files (all merged; reloaded on change); default: `./policies` when
    /// it exists, else the built-in policy (the shipped policies/default.yaml).
    #[arg(long, env = "PULLGATE_POLICIES")]
    pub policies: Option<PathBuf>,
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
    #[command(flatten)]
    pub providers: ProviderArgs,
}

/// kubelet's credential provider flags, by the same names (they override the settings file's
/// `credentialProviders`).
#[derive(Debug, Args)]
pub struct ProviderArgs {
    /// kubelet's CredentialProviderConfig file.
    #[arg(
        long,
        env = "PULLGATE_IMAGE_CREDENTIAL_PROVIDER_CONFIG",
        requires = "image_credential_provider_bin_dir"
    )]
    pub image_credential_provider_config: Option<PathBuf>,
    /// The directory of the credential provider plugins.
    #[arg(
        long,
        env = "PULLGATE_IMAGE_CREDENTIAL_PROVIDER_BIN_DIR",
        requires = "image_credential_provider_config"
    )]
    pub image_credential_provider_bin_dir: Option<PathBuf>,
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
            providers:
                ProviderArgs {
                    image_credential_provider_config,
                    image_credential_provider_bin_dir,
                },
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
        let mut settings = match config {
            Some(file) => Settings::load(&file)?,
            None => Settings::default(),
        };
        if let (Some(config), Some(bin_dir)) = (
            image_credential_provider_config,
            image_credential_provider_bin_dir,
        ) {
            let timeout_seconds = settings
                .credential_providers
                .as_ref()
                .map_or(DEFAULT_PROVIDER_TIMEOUT_SECONDS, |p| p.timeout_seconds);
            settings.credential_providers = Some(CredentialProviderSettings {
                config,
                bin_dir,
                timeout_seconds,
            });
        }
        Ok(ServeConfig {
            listen,
            kube_api,
            tls,
            policies,
            settings,
            log_format,
        })
    }
}

/// `pullgate check` flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifest file, or directory of .yaml/.yml/.json files; `-` reads standard input. Repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "PATH",
        required_unless_present = "paths"
    )]
    pub filenames: Vec<PathBuf>,
    /// The same as -f, for tools that append file names (pre-commit, xargs).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also read the subdirectories of directories given with -f.
    #[arg(short = 'R', long, env = "PULLGATE_RECURSIVE", value_parser = BoolishValueParser::new())]
    pub recursive: bool,
    /// Directory of ImagePolicy YAML files; default: the built-in policy (the shipped policies/default.yaml).
    #[arg(long, env = "PULLGATE_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Optional YAML settings file (the same as serve's: registries, nodePlatforms, resolution).
    #[arg(long, env = "PULLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namespace of objects that name none: scopes policies and pull secrets.
    #[arg(
        short = 'n',
        long,
        env = "PULLGATE_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
    /// Run only the rules that need no network; registry rules are reported as skipped.
    #[arg(long, env = "PULLGATE_OFFLINE", value_parser = BoolishValueParser::new())]
    pub offline: bool,
    /// Report format.
    #[arg(short = 'o', long, env = "PULLGATE_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Exit 1 on warnings too.
    #[arg(long, env = "PULLGATE_WARNINGS_AS_ERRORS", value_parser = BoolishValueParser::new())]
    pub warnings_as_errors: bool,
    /// Skip documents that are not Kubernetes objects (no apiVersion or kind) instead of reporting
    /// them as input errors: for hooks that pass every changed YAML file.
    #[arg(long, env = "PULLGATE_SKIP_NON_KUBERNETES", value_parser = BoolishValueParser::new())]
    pub skip_non_kubernetes: bool,
    /// Docker config.json (or its directory, as DOCKER_CONFIG) whose credentials stand in for the
    /// nodes'; default: ~/.docker/config.json when it exists.
    #[arg(long, env = "DOCKER_CONFIG", value_name = "PATH")]
    pub docker_config: Option<PathBuf>,
    /// Keep registry answers that stay true (digest -> platforms, digest existence) here between runs.
    #[arg(long, env = "PULLGATE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Why `check` flags were refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckArgsError {
    /// The settings file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--namespace` is empty.
    #[error("--namespace must not be empty")]
    EmptyNamespace,
    /// `--docker-config` names a `.json` file that does not exist.
    #[error("--docker-config {}: no such file", .0.display())]
    MissingDockerConfig(PathBuf),
}

impl CheckArgs {
    /// Validate the flags and read the config file. `HOME` and `PATH` come from the environment.
    pub fn into_config(self) -> Result<CheckConfig, CheckArgsError> {
        self.into_config_with(
            std::env::var_os("HOME").map(PathBuf::from),
            crate::credentials::default_helper_path(),
        )
    }

    /// [`CheckArgs::into_config`] with the home directory (for `~/.docker/config.json`) and the `PATH`
    /// that credential helpers are looked up in given.
    pub fn into_config_with(
        self,
        home: Option<PathBuf>,
        helper_path: Option<std::ffi::OsString>,
    ) -> Result<CheckConfig, CheckArgsError> {
        let Self {
            filenames,
            paths,
            recursive,
            policies,
            config,
            namespace,
            offline,
            output,
            warnings_as_errors,
            skip_non_kubernetes,
            docker_config,
            cache_dir,
        } = self;
        if namespace.is_empty() {
            return Err(CheckArgsError::EmptyNamespace);
        }
        let settings = match config {
            Some(file) => Settings::load(&file)?,
            None => Settings::default(),
        };
        let docker_config = match docker_config {
            Some(path) if path.is_dir() => LocalDockerConfig::IfPresent(path.join("config.json")),
            Some(path) if path.exists() => LocalDockerConfig::File(path),
            // A missing file named as such is a mistake; a missing directory is docker's "no config".
            Some(path) if path.extension().is_some_and(|e| e == "json") => {
                return Err(CheckArgsError::MissingDockerConfig(path));
            }
            Some(path) => LocalDockerConfig::IfPresent(path.join("config.json")),
            None => match home {
                Some(home) => {
                    LocalDockerConfig::IfPresent(home.join(".docker").join("config.json"))
                }
                None => LocalDockerConfig::Off,
            },
        };
        let registry = (!offline).then_some(RegistryAccess {
            docker_config,
            helper_path,
            cache_dir,
        });
        Ok(CheckConfig {
            inputs: filenames
                .into_iter()
                .chain(paths)
                .map(Input::from_arg)
                .collect(),
            recursive,
            policies: policies.map_or(PolicySource::BuiltIn, PolicySource::Dir),
            settings,
            namespace,
            registry,
            output,
            warnings_as_errors,
            skip_non_kubernetes,
        })
    }
}

/// `pullgate audit` flags.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// kubeconfig file; default: KUBECONFIG / ~/.kube/config, else the in-cluster config.
    #[arg(long, env = "PULLGATE_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context; default: the current one.
    #[arg(long, env = "PULLGATE_CONTEXT")]
    pub context: Option<String>,
    /// Audit this namespace only.
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Audit every namespace (the default when no --namespace is given).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, as kubectl takes it (`app=web,tier!=cache`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Directory of ImagePolicy YAML files; default: the built-in policy.
    #[arg(long, env = "PULLGATE_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Also report the static rules (tag-not-latest, registry-allowed, …), not only what stops a pull.
    #[arg(long, value_parser = BoolishValueParser::new())]
    pub policy_rules: bool,
    /// Optional YAML settings file (the same as serve's).
    #[arg(long, env = "PULLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Report format.
    #[arg(short = 'o', long, value_enum, default_value_t = AuditFormat::Text)]
    pub output: AuditFormat,
    /// Most requests sent to each registry; default 1000, and 100 to Docker Hub, whose pull quota the
    /// cluster's nodes share.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests_per_registry: Option<u32>,
}

/// Why `audit` flags were refused.
#[derive(Debug, thiserror::Error)]
pub enum AuditArgsError {
    /// The settings file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--namespace` is empty.
    #[error("--namespace must not be empty")]
    EmptyNamespace,
}

impl AuditArgs {
    /// Validate the flags and read the config file.
    pub fn into_config(self) -> Result<AuditConfig, AuditArgsError> {
        let Self {
            kubeconfig,
            context,
            namespace,
            all_namespaces: _,
            selector,
            policies,
            policy_rules,
            config,
            output,
            max_requests_per_registry,
        } = self;
        let scope = match namespace {
            Some(namespace) if namespace.is_empty() => return Err(AuditArgsError::EmptyNamespace),
            Some(namespace) => Scope::Namespace(namespace),
            None => Scope::All,
        };
        let settings = match config {
            Some(file) => Settings::load(&file)?,
            None => Settings::default(),
        };
        Ok(AuditConfig {
            kubeconfig: kubeconfig.filter(|p| !p.as_os_str().is_empty()),
            context,
            scope,
            selector: selector.filter(|s| !s.is_empty()),
            policies: policies.map_or(PolicySource::BuiltIn, PolicySource::Dir),
            policy_rules,
            settings,
            output,
            max_requests_per_registry,
            progress: true,
        })
    }
}
