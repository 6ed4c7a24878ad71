//! Mirror and host URLs as containerd reads them: `http(s)://host[:port][/path]`, the API root computed
//! from the path.

use super::endpoint::{API_ROOT, Endpoint, Scheme};

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
/// Parses `http(s)://host[:port][/path]`, computing the API root as containerd does.
pub(super) fn parse_url(url: &str, override_path: bool) -> Result<Endpoint, UrlProblem> {
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
pub(super) fn port_is_valid(host: &str) -> bool {
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
