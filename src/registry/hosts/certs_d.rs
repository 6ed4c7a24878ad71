//! containerd's `certs.d` directory: `<dir>/<host>/hosts.toml` (and Docker's `*.crt` layout), read the
//! way containerd's `remotes/docker/config` reads it (see the parent module for the rules and where
//! pullgate differs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::{fs, io};

use serde::Deserialize;
use toml::Spanned;

use super::url::parse_url;
use super::{Endpoint, HostsError, Scheme};

const DEFAULT_DIR: &str = "_default";
/// `hosts.toml` keys that change nothing pullgate could observe.
const ACCEPTED_UNUSED: [&str; 2] = ["header", "dial_timeout"];

/// containerd's lookup order for a registry's directory.
pub(super) fn host_dir_names(registry: &str) -> Vec<String> {
    let mut names = Vec::with_capacity(3);
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => names.push(format!("{host}_{port}_")),
        _ => {}
    }
    names.push(registry.to_owned());
    names.push(DEFAULT_DIR.to_owned());
    names
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

pub(super) fn read_hosts_dir(root: &Path) -> Result<BTreeMap<String, Vec<Endpoint>>, HostsError> {
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

pub(super) fn parse_hosts_file(file: &Path, text: &str) -> Result<Vec<Endpoint>, HostsError> {
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
