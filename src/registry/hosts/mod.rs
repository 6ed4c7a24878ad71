//! How the nodes reach a registry: pullgate's own `registries:` settings and containerd's `certs.d`,
//! validated once at start-up and resolved into the ordered [`Endpoint`]s tried for a registry host.
//!
//! `certs.d` is read the way containerd's `remotes/docker/config` reads it (1.6 to 2.x):
//! * registry `host:port` uses the first of `<dir>/host_port_`, `<dir>/host:port`, `<dir>/_default`
//!   that exists as a directory, whether or not it holds a `hosts.toml`;
//! * `[host."URL"]` tables are tried in file order, then `server` (default `https://<host>`, and
//!   `https://registry-1.docker.io` for `docker.io`); a URL not starting with `http` gets `https://`;
//! * `capabilities` default to pull, resolve and push; a tag is resolved only on endpoints with
//!   `resolve`, content is pulled only from those with `pull`, in the same order;
//! * the top-level `ca`, `skip_verify`, `capabilities` and `override_path` belong to `server`; with no
//!   `server`, only `ca` and `skip_verify` apply (to the default upstream);
//! * a URL path gets `/v2` appended unless it ends in `/v2` or `override_path = true`; relative `ca`
//!   paths are relative to the `hosts.toml` directory;
//! * a directory without `hosts.toml` (or with an empty one) trusts its `*.crt` files (Docker layout).
//!
//! Where pullgate differs, on purpose:
//! * a `hosts.toml` that does not parse, an unknown capability or a bad `ca` stops pullgate at
//!   start-up (containerd logs it at pull time and falls back to the `*.crt` files);
//! * keys pullgate does not imitate (`client` certificates, `proxy`, unknown keys) are logged as
//!   warnings; `header` and `dial_timeout` are accepted silently;
//! * containerd 2.x's plain HTTP for `localhost` and HTTPS-first for `http://` hosts with TLS
//!   settings are not imitated: the scheme written is the scheme used;
//! * a `registries:` entry for a host replaces that host's `certs.d` configuration whole: its
//!   `mirrors` in order, then the upstream; its `ca` and `skipVerify` apply to all of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::{fmt, fs, io, mem};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};
use serde::Deserialize;

use crate::config::RegistrySettings;
use crate::image::RegistryHost;
use toml::Spanned;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_UPSTREAM: &str = "registry-1.docker.io";
const DEFAULT_DIR: &str = "_default";
const API_ROOT: &str = "/v2";
/// `hosts.toml` keys that change nothing pullgate could observe.
const ACCEPTED_UNUSED: [&str; 2] = ["header", "dial_timeout"];

/// How to talk to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Https => "https",
        })
    }
}

/// One place a node would send registry requests to, with the trust it would use there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// `host[:port]` to connect to.
    pub host: String,
    /// The API root when it is not the standard `/v2`, as containerd computes it: `https://m/cache`
    /// gives `/cache/v2`; `https://m/v2/hub` with `override_path` gives `/v2/hub` (may be empty).
    pub path_prefix: Option<String>,
    /// CA files trusted besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// The contents of `ca_files`, one PEM document per file, each checked at load to hold at
    /// least one certificate, every certificate usable as a trust anchor.
    pub ca_pems: Vec<Vec<u8>>,
    pub skip_verify: bool,
    /// May resolve a tag to a digest.
    pub can_resolve: bool,
    /// May serve manifests and blobs by digest.
    pub can_pull: bool,
    /// A `[host]` entry or a `mirrors:` item, tried before the upstream (a `server` is never one).
    pub is_mirror: bool,
}

impl Endpoint {
    /// The API root URL, e.g. `https://registry-1.docker.io/v2`.
    pub fn url(&self) -> String {
        let root = self.path_prefix.as_deref().unwrap_or(API_ROOT);
        format!("{}://{}{root}", self.scheme, self.host)
    }

    /// The part of the API root below `/v2/`, for clients that always request `/v2/<repository>`:
    /// `Ok(Some("hub"))` for `/v2/hub`, `Ok(None)` for `/v2`, `Err(root)` for a root not under
    /// `/v2/` (e.g. `/cache/v2`), which such a client cannot reach.
    pub fn repository_prefix(&self) -> Result<Option<&str>, &str> {
        match self.path_prefix.as_deref() {
            None => Ok(None),
            Some(root) => root.strip_prefix("/v2/").map(Some).ok_or(root),
        }
    }
}

/// Why a mirror or host URL is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("the scheme must be http:// or https://")]
    Scheme,
    #[error("it has no host")]
    NoHost,
    #[error("its port is not a number from 0 to 65535")]
    Port,
    #[error("user info, query, fragment and whitespace are not allowed")]
    Unsupported,
}

/// Why a CA file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CaProblem {
    #[error("cannot be read")]
    Unreadable(#[source] io::Error),
    #[error("is not valid PEM")]
    Malformed(#[source] pem::Error),
    #[error("holds no PEM CERTIFICATE")]
    NoCertificate,
    #[error("holds a certificate that cannot be a trust anchor")]
    NotTrustAnchor(#[source] rustls::Error),
}

/// What failed while loading registry settings and `certs.d`. `origin` says where the value was
/// written: `registries."<host>".mirrors`, `<dir>/<host>/hosts.toml host."<url>".ca`, …
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// A mirror, `server` or `[host."URL"]` URL is unusable.
    #[error("{origin}: {url:?} is not a usable URL")]
    Url {
        origin: String,
        url: String,
        #[source]
        problem: UrlProblem,
    },
    /// A CA file is unusable.
    #[error("{origin}: CA file {}", .path.display())]
    Ca {
        origin: String,
        path: PathBuf,
        #[source]
        problem: CaProblem,
    },
    /// A `capabilities` item other than `pull`, `resolve` or `push`.
    #[error("{origin}: unknown capability {capability:?} (pull, resolve, push)")]
    UnknownCapability { origin: String, capability: String },
    /// The containerd hosts directory, a directory in it, or a `hosts.toml` cannot be read.
    #[error("cannot read {}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A `hosts.toml` is not TOML, or a key has the wrong type (the source names line and key).
    #[error("{} does not parse", .path.display())]
    HostsFileSyntax {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

/// For every registry host, the endpoints the nodes would use. Built once at start-up.
#[derive(Debug, Clone, Default)]
pub struct RegistryHosts {
    /// From `registries:`: complete lists.
    configured: BTreeMap<RegistryHost, Vec<Endpoint>>,
    /// From the containerd hosts directory, by directory name. As in containerd, the last
    /// endpoint is the upstream, and an empty host there means "the registry's default upstream".
    host_dirs: BTreeMap<String, Vec<Endpoint>>,
}

impl RegistryHosts {
    /// Reads and checks everything: registry keys, mirror URLs, every `hosts.toml` under
    /// `containerd_hosts_dir`, and every CA file. Errors name the file and the key.
    pub fn load(
        settings: &BTreeMap<RegistryHost, RegistrySettings>,
        containerd_hosts_dir: Option<&Path>,
    ) -> Result<Self, HostsError> {
        let configured = settings
            .iter()
            .map(|(key, entry)| Ok((key.clone(), configured_endpoints(key.as_str(), entry)?)))
            .collect::<Result<_, HostsError>>()?;
        let host_dirs = match containerd_hosts_dir {
            Some(root) => read_hosts_dir(root)?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            configured,
            host_dirs,
        })
    }

    /// Endpoints for a registry host in containerd's order: `[host]` entries (or `mirrors:`) in
    /// file (list) order, then the upstream, always last. As in containerd, capabilities do not
    /// reorder them: resolve a tag on those with `can_resolve`, pull by digest from those with
    /// `can_pull`, each in this order. A `registries:` entry for the host wins over `certs.d`.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        if let Some(endpoints) = self.configured.get(registry) {
            return endpoints.clone();
        }
        let names = host_dir_names(registry);
        let Some(dir) = names.iter().find_map(|name| self.host_dirs.get(name)) else {
            return vec![default_upstream(registry, Scheme::Https)];
        };
        let mut endpoints = dir.clone();
        if let Some(last) = endpoints.last_mut().filter(|last| last.host.is_empty()) {
            // containerd fills in scheme, host, root and every capability; the trust stays.
            let (ca_files, ca_pems) = (mem::take(&mut last.ca_files), mem::take(&mut last.ca_pems));
            let skip_verify = last.skip_verify;
            *last = Endpoint {
                ca_files,
                ca_pems,
                skip_verify,
                ..default_upstream(registry, Scheme::Https)
            };
        }
        endpoints
    }
}

impl Endpoint {
    /// An endpoint with every capability, trusting the system roots only.
    fn new(scheme: Scheme, host: &str, path_prefix: Option<String>) -> Self {
        Self {
            scheme,
            host: host.to_owned(),
            path_prefix,
            ca_files: Vec::new(),
            ca_pems: Vec::new(),
            skip_verify: false,
            can_resolve: true,
            can_pull: true,
            is_mirror: false,
        }
    }

    /// Reads and checks the CA files, `origin` naming where they were written.
    fn trusting(
        self,
        ca_files: Vec<PathBuf>,
        skip_verify: bool,
        origin: &str,
    ) -> Result<Self, HostsError> {
        let ca_pems = ca_files
            .iter()
            .map(|path| read_ca(path, origin))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            ca_files,
            ca_pems,
            skip_verify,
            ..self
        })
    }
}

fn default_upstream(registry: &str, scheme: Scheme) -> Endpoint {
    let host = if registry == DOCKER_HUB {
        DOCKER_HUB_UPSTREAM
    } else {
        registry
    };
    Endpoint::new(scheme, host, None)
}

fn configured_endpoints(
    key: &str,
    settings: &RegistrySettings,
) -> Result<Vec<Endpoint>, HostsError> {
    let RegistrySettings {
        insecure,
        ca,
        skip_verify,
        mirrors,
    } = settings;
    let scheme = if *insecure {
        Scheme::Http
    } else {
        Scheme::Https
    };
    let origin = format!("registries.\"{key}\".ca");
    let upstream = default_upstream(key, scheme).trusting(
        ca.iter().cloned().collect(),
        *skip_verify,
        &origin,
    )?;
    let mut endpoints = mirrors
        .iter()
        .map(|url| {
            let Endpoint {
                scheme,
                host,
                path_prefix,
                ..
            } = parse_url(url, false).map_err(|problem| {
                let origin = format!("registries.\"{key}\".mirrors");
                HostsError::Url {
                    origin,
                    url: url.clone(),
                    problem,
                }
            })?;
            Ok(Endpoint {
                scheme,
                host,
                path_prefix,
                is_mirror: true,
                ..upstream.clone()
            })
        })
        .collect::<Result<Vec<_>, HostsError>>()?;
    endpoints.push(upstream);
    Ok(endpoints)
}

/// Parses `http(s)://host[:port][/path]`, computing the API root as containerd does.
fn parse_url(url: &str, override_path: bool) -> Result<Endpoint, UrlProblem> {
    let (scheme, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (Scheme::Https, rest),
        (None, Some(rest)) => (Scheme::Http, rest),
        (None, None) => return Err(UrlProblem::Scheme),
    };
    if rest.contains(|c: char| c.is_whitespace() || matches!(c, '?' | '#' | '@')) {
        return Err(UrlProblem::Unsupported);
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(UrlProblem::NoHost);
    }
    if !port_is_valid(host) {
        return Err(UrlProblem::Port);
    }
    Ok(Endpoint::new(scheme, host, api_root(path, override_path)))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with a port that fits in 16 bits.
fn port_is_valid(host: &str) -> bool {
    let port = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((_, "")) => return true,
            Some((_, rest)) => rest.strip_prefix(':'),
            None => None,
        },
        None => match host.split_once(':') {
            None => return true,
            Some((name, port)) => Some(port).filter(|_| !name.is_empty()),
        },
    };
    port.is_some_and(|port| port.parse::<u16>().is_ok())
}

/// containerd: clean the path, then append `/v2` unless it ends in `/v2` or `override_path` is set.
/// `None` is the standard `/v2`. (A bare `/` counts as no path; containerd would make it `//v2`.)
fn api_root(path: &str, override_path: bool) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => drop(parts.pop()),
            part => parts.push(part),
        }
    }
    let mut root: String = parts.iter().map(|part| format!("/{part}")).collect();
    if !override_path && !root.ends_with(API_ROOT) {
        root.push_str(API_ROOT);
    }
    (root != API_ROOT).then_some(root)
}

/// containerd's lookup order for a registry's directory.
fn host_dir_names(registry: &str) -> Vec<String> {
    let mut names = Vec::with_capacity(3);
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => names.push(format!("{host}_{port}_")),
        _ => {}
    }
    names.push(registry.to_owned());
    names.push(DEFAULT_DIR.to_owned());
    names
}

fn read_ca(path: &Path, origin: &str) -> Result<Vec<u8>, HostsError> {
    let fail = |problem| HostsError::Ca {
        origin: origin.to_owned(),
        path: path.to_owned(),
        problem,
    };
    let pem = fs::read(path).map_err(|e| fail(CaProblem::Unreadable(e)))?;
    let mut certificates = 0_usize;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| fail(CaProblem::Malformed(e)))?;
        let mut store = RootCertStore::empty();
        store
            .add(certificate)
            .map_err(|e| fail(CaProblem::NotTrustAnchor(e)))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(fail(CaProblem::NoCertificate));
    }
    Ok(pem)
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, HostsError> {
    let unreadable = |source| HostsError::Unreadable {
        path: dir.to_owned(),
        source,
    };
    let entries = fs::read_dir(dir).map_err(unreadable)?;
    entries
        .map(|entry| entry.map(|entry| entry.path()).map_err(unreadable))
        .collect()
}

fn read_hosts_dir(root: &Path) -> Result<BTreeMap<String, Vec<Endpoint>>, HostsError> {
    let mut dirs = BTreeMap::new();
    for path in list_dir(root)? {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        // Registry names never start with a dot: skip `..data` and the like from ConfigMap mounts.
        if !name.starts_with('.') && path.is_dir() {
            dirs.insert(name.to_owned(), load_host_dir(&path)?);
        }
    }
    Ok(dirs)
}

fn load_host_dir(dir: &Path) -> Result<Vec<Endpoint>, HostsError> {
    let file = dir.join("hosts.toml");
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(HostsError::Unreadable { path: file, source }),
    };
    if !text.is_empty() {
        return parse_hosts_file(&file, &text);
    }
    let mut ca_files: Vec<PathBuf> = list_dir(dir)?
        .into_iter()
        .filter(|path| path.is_file())
        .collect();
    ca_files.retain(|path| path.extension().is_some_and(|ext| ext == "crt"));
    ca_files.sort();
    let origin = format!("{} *.crt", dir.display());
    Ok(vec![
        Endpoint::new(Scheme::Https, "", None).trusting(ca_files, false, &origin)?,
    ])
}

/// The keys containerd reads at the top of `hosts.toml` and in each `[host."URL"]` table.
#[derive(Debug, Deserialize)]
struct HostFields {
    #[serde(default)]
    capabilities: Vec<String>,
    ca: Option<CaPaths>,
    skip_verify: Option<bool>,
    #[serde(default)]
    override_path: bool,
    /// Everything else, kept to name it in a warning.
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CaPaths {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

#[derive(Debug, Deserialize)]
struct HostsFile {
    server: Option<String>,
    #[serde(default)]
    host: BTreeMap<String, Spanned<HostFields>>,
    #[serde(flatten)]
    top: HostFields,
}

fn parse_hosts_file(file: &Path, text: &str) -> Result<Vec<Endpoint>, HostsError> {
    let parsed: HostsFile = toml::from_str(text).map_err(|source| HostsError::HostsFileSyntax {
        path: file.to_owned(),
        source,
    })?;
    let mut tables: Vec<_> = parsed.host.into_iter().collect();
    tables.sort_by_key(|(_, fields)| fields.span().start);
    let mut endpoints = Vec::with_capacity(tables.len() + 1);
    for (url, fields) in tables {
        let table = format!("host.{url:?}");
        let mirror = file_url(
            &key_path(file, &table, ""),
            &url,
            fields.get_ref().override_path,
        )?;
        let mirror = file_endpoint(file, &table, mirror, fields.into_inner())?;
        endpoints.push(Endpoint {
            is_mirror: true,
            ..mirror
        });
    }
    let upstream = match parsed.server.filter(|server| !server.is_empty()) {
        Some(server) => file_url(
            &key_path(file, "", "server"),
            &server,
            parsed.top.override_path,
        )?,
        // Filled in per registry by `endpoints()`, which also drops the capabilities, as containerd.
        None => Endpoint::new(Scheme::Https, "", None),
    };
    endpoints.push(file_endpoint(file, "", upstream, parsed.top)?);
    Ok(endpoints)
}

/// A `server` or `[host]` URL; like containerd, one not starting with `http` gets `https://`.
fn file_url(origin: &str, url: &str, override_path: bool) -> Result<Endpoint, HostsError> {
    let full = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    parse_url(&full, override_path).map_err(|problem| HostsError::Url {
        origin: origin.to_owned(),
        url: url.to_owned(),
        problem,
    })
}

/// `<file> <table>.<key>`, naming a value in a `hosts.toml` (the table is empty at the top level).
fn key_path(file: &Path, table: &str, key: &str) -> String {
    let dot = if table.is_empty() || key.is_empty() {
        ""
    } else {
        "."
    };
    format!("{} {table}{dot}{key}", file.display())
}

/// Applies a table's `capabilities`, `ca` and `skip_verify`, and warns about keys not imitated.
fn file_endpoint(
    file: &Path,
    table: &str,
    endpoint: Endpoint,
    fields: HostFields,
) -> Result<Endpoint, HostsError> {
    let HostFields {
        capabilities,
        ca,
        skip_verify,
        override_path: _,
        other,
    } = fields;
    for key in other
        .keys()
        .filter(|key| !ACCEPTED_UNUSED.contains(&key.as_str()))
    {
        let key = key_path(file, table, key);
        tracing::warn!(%key, "hosts.toml key not imitated by pullgate: its checks may differ from the node's pulls");
    }
    let endpoint = with_capabilities(
        endpoint,
        &key_path(file, table, "capabilities"),
        &capabilities,
    )?;
    let dir = file.parent().unwrap_or(Path::new(""));
    endpoint.trusting(
        ca_paths(dir, ca),
        skip_verify.unwrap_or(false),
        &key_path(file, table, "ca"),
    )
}

/// Relative paths are relative to the `hosts.toml` directory.
fn ca_paths(dir: &Path, ca: Option<CaPaths>) -> Vec<PathBuf> {
    let paths = match ca {
        None => Vec::new(),
        Some(CaPaths::One(path)) => vec![path],
        Some(CaPaths::Many(paths)) => paths,
    };
    paths.into_iter().map(|path| dir.join(path)).collect()
}

/// containerd: no (or empty) `capabilities` means pull, resolve and push.
fn with_capabilities(
    endpoint: Endpoint,
    origin: &str,
    names: &[String],
) -> Result<Endpoint, HostsError> {
    if names.is_empty() {
        return Ok(endpoint);
    }
    let (mut can_resolve, mut can_pull) = (false, false);
    for name in names {
        match name.to_ascii_lowercase().as_str() {
            "pull" => can_pull = true,
            "resolve" => can_resolve = true,
            "push" => {}
            _ => {
                let origin = origin.to_owned();
                return Err(HostsError::UnknownCapability {
                    origin,
                    capability: name.clone(),
                });
            }
        }
    }
    Ok(Endpoint {
        can_resolve,
        can_pull,
        ..endpoint
    })
}

#[cfg(test)]
mod tests;
