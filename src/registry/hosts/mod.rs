//! How the nodes reach a registry: pullgate's own `registries:` settings and containerd's `certs.d`,
//! validated once at start-up and resolved into the ordered [`Endpoint`]s tried for a registry host.
//!
//! `certs.d` is read the way containerd's `remotes/docker/config` reads it (1.6 to 2.x):
//! * registry `host:port` uses the first of `<dir>/host_port_`, `<dir>/host:port`, `<dir>/_default`
//!   that exists as a directory, whether or not it holds a `hosts.toml`;
//! * `[host."URL"]` tables are tried in file order, then `server` (default `https://<host>`, and
//!   `https://registry-1.docker.io` for `docker.io`); a URL not starting with `http` gets `https://`.
//!   A table naming the registry itself is one more entry before the upstream, with its own trust —
//!   containerd does not merge the two;
//! * `capabilities` default to pull, resolve and push; a tag is resolved only on endpoints with both
//!   `pull` and `resolve`, a digest on any with `pull`, in the same order;
//! * the top-level `ca`, `skip_verify`, `capabilities` and `override_path` belong to `server`; with no
//!   `server`, only `ca` and `skip_verify` apply (to the default upstream);
//! * with no `server` (or no configuration), `localhost` and loopback addresses skip verification and
//!   fall back to plain HTTP on ports other than 80 and 443 (port 80: plain HTTP), as containerd
//!   1.6.25+/1.7.8+/2.x do;
//! * a URL path gets `/v2` appended unless it ends in `/v2` or `override_path = true`; relative `ca`
//!   paths are relative to the `hosts.toml` directory;
//! * a directory without `hosts.toml` (or with an empty one) trusts its `*.crt` files (Docker layout).
//!
//! Where pullgate differs, on purpose:
//! * a `hosts.toml` that does not parse, an unknown capability or a bad `ca` stops pullgate at
//!   start-up (containerd logs it at pull time and falls back to the `*.crt` files);
//! * keys pullgate does not imitate (`client` certificates, `proxy`, unknown keys) are logged as
//!   warnings; `header` and `dial_timeout` are accepted silently;
//! * a `hosts.toml` with `server` but no `[host]` table is read as written (containerd 2.x and 1.7.32+);
//!   containerd 1.5–1.7.31 ignores such a file, so give it a `[host]` table for those nodes;
//! * HTTPS first for `http://` hosts that have TLS settings (containerd 1.7.24+) is not imitated: the
//!   scheme written is the scheme used;
//! * a `registries:` entry for a host replaces that host's `certs.d` configuration whole: its
//!   `mirrors` in order, then the upstream; its `ca` and `skipVerify` apply to all of them.

mod certs_d;
mod endpoint;
mod settings;
mod url;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::{io, mem};

use crate::config::RegistrySettings;
use crate::image::RegistryHost;

pub use endpoint::{CaProblem, Endpoint, Scheme};
pub use url::UrlProblem;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_UPSTREAM: &str = "registry-1.docker.io";

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
    /// `registries.<host>.pullQuota`, where set.
    pull_quota: BTreeMap<RegistryHost, bool>,
    /// `registries.<host>.tokenRealms`.
    token_realms: BTreeMap<RegistryHost, Vec<String>>,
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
            .map(|(key, entry)| {
                let endpoints = settings::configured_endpoints(key.as_str(), entry)?;
                Ok((key.clone(), endpoints))
            })
            .collect::<Result<_, HostsError>>()?;
        let host_dirs = match containerd_hosts_dir {
            Some(root) => certs_d::read_hosts_dir(root)?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            configured,
            host_dirs,
            pull_quota: settings
                .iter()
                .filter_map(|(host, s)| Some((host.clone(), s.pull_quota?)))
                .collect(),
            token_realms: settings
                .iter()
                .map(|(host, s)| (host.clone(), s.token_realms.clone()))
                .collect(),
        })
    }

    /// Endpoints for a registry host in containerd's order: `[host]` entries (or `mirrors:`) in
    /// file (list) order, then the upstream, always last. As in containerd, capabilities do not
    /// reorder them: resolve a tag on those with `can_resolve`, pull by digest from those with
    /// `can_pull`, each in this order. A `registries:` entry for the host wins over `certs.d`.
    /// Whether manifest GETs count against a pull quota at `registry` (`pullQuota`; Docker Hub by
    /// default): tags are then resolved with a `HEAD` first.
    pub fn pull_quota(&self, registry: &str) -> bool {
        self.pull_quota
            .get(registry)
            .copied()
            .unwrap_or(registry == DOCKER_HUB)
    }

    /// Token services on another site that may receive `registry`'s credentials (`tokenRealms`).
    pub fn token_realms(&self, registry: &str) -> &[String] {
        self.token_realms.get(registry).map_or(&[], Vec::as_slice)
    }

    /// Parse one `hosts.toml` text as the nodes' containerd reads it; the number of endpoints it gives.
    /// For fuzzing: `RegistryHosts::load` reads whole directories.
    pub fn parse_hosts_toml(text: &str) -> Result<usize, HostsError> {
        certs_d::parse_hosts_file(std::path::Path::new("hosts.toml"), text).map(|e| e.len())
    }

    /// The registry is configured in `registries:` (trusted: its error messages may be quoted).
    pub fn is_configured(&self, registry: &str) -> bool {
        self.configured.contains_key(registry)
    }

    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        if let Some(endpoints) = self.configured.get(registry) {
            return endpoints.clone();
        }
        let names = certs_d::host_dir_names(registry);
        let Some(dir) = names.iter().find_map(|name| self.host_dirs.get(name)) else {
            return vec![implicit_upstream(registry)];
        };
        let mut endpoints = dir.clone();
        if let Some(last) = endpoints.last_mut().filter(|last| last.host.is_empty()) {
            // containerd fills in scheme, host, root and every capability; the trust stays.
            let (ca_files, ca_pems) = (mem::take(&mut last.ca_files), mem::take(&mut last.ca_pems));
            let implicit = implicit_upstream(registry);
            let skip_verify = last.skip_verify || implicit.skip_verify;
            *last = Endpoint {
                ca_files,
                ca_pems,
                skip_verify,
                ..implicit
            };
        }
        endpoints
    }
}
/// The upstream containerd fills in when nothing names one (no `registries:` entry, no `server`): HTTPS,
/// except for `localhost` and loopback addresses, where containerd (1.6.25+, 1.7.8+, 2.x) skips
/// verification and, on a port other than 80 and 443, falls back to plain HTTP (port 80: HTTP only).
/// containerd 1.6.0–1.6.24 and 1.7.0–1.7.6 used plain HTTP only for them: the same verdict for a plain
/// HTTP registry there.
fn implicit_upstream(registry: &str) -> Endpoint {
    let mut endpoint = default_upstream(registry, Scheme::Https);
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (registry, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local {
        endpoint.skip_verify = true;
        match port {
            Some("80") => endpoint.scheme = Scheme::Http,
            Some("443") | None => {}
            Some(_) => endpoint.http_fallback = true,
        }
    }
    endpoint
}

/// The registry's own upstream endpoint (Docker Hub's is `registry-1.docker.io`).
fn default_upstream(registry: &str, scheme: Scheme) -> Endpoint {
    let host = if registry == DOCKER_HUB {
        DOCKER_HUB_UPSTREAM
    } else {
        registry
    };
    Endpoint::new(scheme, host, None)
}

#[cfg(test)]
mod tests;
