//! kubelet's credential keyring (`pkg/credentialprovider/keyring.go`): how a docker config key is indexed
//! and which keys match an image, rule for rule — hosts split on `.` and globbed label by label
//! (`filepath.Match`, equal label counts), ports equal, the path a plain string prefix, `/v1/` and `/v2/`
//! stripped, more specific keys first, `index.docker.io` as the Docker Hub fallback. Its test tables are
//! ported in `keyring_tests.rs`.

use std::collections::BTreeMap;

/// The keyring key kubelet falls back to for Docker Hub images when nothing else matched.
const DEFAULT_REGISTRY_KEY: &str = "index.docker.io";

/// The host and path of a scheme-less URL, as Go's `url.Parse("https://" + s)` splits them, or
/// `None` where Go reports an error (bad port, blank or control characters in the host).
pub(super) fn split_url(schemeless: &str) -> Option<(&str, &str)> {
    let end = schemeless.find(['/', '?', '#']).unwrap_or(schemeless.len());
    let (authority, rest) = schemeless.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = if rest.starts_with('/') {
        &rest[..rest.find(['?', '#']).unwrap_or(rest.len())]
    } else {
        ""
    };
    let port = match host.rfind(']') {
        Some(bracket) => host[bracket + 1..].strip_prefix(':'),
        None => host.rsplit_once(':').map(|(_, port)| port),
    };
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.chars().any(|c| c.is_whitespace() || c.is_control());
    (port_ok && host_ok).then_some((host, path))
}

/// kubelet's `BasicDockerKeyring.Add` key: no scheme, `/v1/…`/`/v2/…` cut to `/…`, bare `/` dropped.
pub(super) fn index_key(location: &str) -> Option<String> {
    let schemeless = ["https://", "http://"]
        .iter()
        .find_map(|scheme| location.strip_prefix(scheme))
        .unwrap_or(location);
    let (host, path) = split_url(schemeless)?;
    let path = if path.starts_with("/v1/") || path.starts_with("/v2/") {
        &path[3..]
    } else {
        path
    };
    Some(if path.is_empty() || path == "/" {
        host.to_owned()
    } else {
        format!("{host}{path}")
    })
}

/// Go's `net.SplitHostPort` as kubelet's `SplitURL` uses it: on error the whole host, no port;
/// then the host split at `.`.
fn split_host_port(host: &str) -> (Vec<&str>, &str) {
    let split = match host.strip_prefix('[') {
        Some(inner) => inner
            .split_once(']')
            .and_then(|(address, rest)| Some((address, rest.strip_prefix(':')?))),
        None => host.split_once(':').filter(|(_, port)| !port.contains(':')),
    };
    let (name, port) = split.unwrap_or((host, ""));
    (name.split('.').collect(), port)
}

/// kubelet's `URLsMatchStr(glob, target)`.
pub(super) fn urls_match(glob: &str, target: &str) -> bool {
    let (Some((glob_host, glob_path)), Some((target_host, target_path))) =
        (split_url(glob), split_url(target))
    else {
        return false;
    };
    let (glob_labels, glob_port) = split_host_port(glob_host);
    let (target_labels, target_port) = split_host_port(target_host);
    glob_port == target_port
        && glob_labels.len() == target_labels.len()
        && target_path.starts_with(glob_path)
        && glob_labels
            .iter()
            .zip(&target_labels)
            .all(|(g, t)| glob_match(g, t))
}

/// Go's `filepath.Match` for one host label (`*`, `?`, `[...]` classes, `\` escapes); a malformed
/// pattern matches nothing, as kubelet ignores the error.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> Option<bool> {
        let Some((&first, rest)) = p.split_first() else {
            return Some(t.is_empty());
        };
        match first {
            '*' => {
                for skip in 0..=t.len() {
                    if go(rest, &t[skip..])? {
                        return Some(true);
                    }
                }
                Some(false)
            }
            '?' => match t.split_first() {
                Some((_, t_rest)) => go(rest, t_rest),
                None => Some(false),
            },
            '[' => {
                let (matched, rest) = class(rest, *t.first()?)?;
                if matched {
                    go(rest, &t[1..])
                } else {
                    Some(false)
                }
            }
            '\\' => {
                let (&literal, rest) = rest.split_first()?;
                if t.first() == Some(&literal) {
                    go(rest, &t[1..])
                } else {
                    Some(false)
                }
            }
            c => {
                if t.first() == Some(&c) {
                    go(rest, &t[1..])
                } else {
                    Some(false)
                }
            }
        }
    }
    /// A `[...]` class after its `[`: whether `c` is in it, and the pattern after `]`.
    fn class(mut p: &[char], c: char) -> Option<(bool, &[char])> {
        let negated = p.first() == Some(&'^');
        if negated {
            p = &p[1..];
        }
        let mut matched = false;
        let mut ranges = 0;
        loop {
            if p.first() == Some(&']') && ranges > 0 {
                return Some((matched != negated, &p[1..]));
            }
            let lo;
            (lo, p) = escaped(p)?;
            let mut hi = lo;
            if p.first() == Some(&'-') {
                (hi, p) = escaped(&p[1..])?;
            }
            matched |= lo <= c && c <= hi;
            ranges += 1;
        }
    }
    fn escaped(p: &[char]) -> Option<(char, &[char])> {
        match p {
            [] | ['-' | ']', ..] => None,
            ['\\', c, rest @ ..] => Some((*c, rest)),
            ['\\'] => None,
            [c, rest @ ..] => Some((*c, rest)),
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    go(&pattern, &text) == Some(true)
}

/// kubelet's `isDefaultRegistryMatch`, exactly: a name whose first component has no `.` or `:` (or that
/// has only one) is a Docker Hub name, as are `docker.io/…` and `index.docker.io/…`.
fn is_default_registry_match(target: &str) -> bool {
    let mut parts = target.splitn(2, '/');
    let first = parts.next().unwrap_or("");
    if first.is_empty() {
        return false;
    }
    if parts.next().is_none() {
        return true;
    }
    first == "docker.io" || first == DEFAULT_REGISTRY_KEY || !first.contains(['.', ':'])
}

/// kubelet's `BasicDockerKeyring.Lookup` over `(indexed key, item)` pairs added in order. The
/// `index.docker.io` fallback applies only when `hub_fallback` allows it: pullgate passes it for Docker Hub
/// images only, where kubelet would also hand Docker Hub credentials to a registry such as `localhost`
/// (its first component has no `.` or `:`). Credentials go only to the registry they are for.
pub(super) fn keyring_lookup<'a, T: Copy>(
    entries: impl IntoIterator<Item = (&'a str, T)>,
    target: &str,
    hub_fallback: bool,
) -> Vec<T> {
    let mut index: BTreeMap<&str, Vec<T>> = BTreeMap::new();
    for (key, item) in entries {
        index.entry(key).or_default().push(item);
    }
    let found: Vec<T> = index
        .iter()
        .rev()
        .filter(|(key, _)| urls_match(key, target))
        .flat_map(|(_, items)| items.iter().copied())
        .collect();
    if found.is_empty() && hub_fallback && is_default_registry_match(target) {
        return index.get(DEFAULT_REGISTRY_KEY).cloned().unwrap_or_default();
    }
    found
}

#[cfg(test)]
#[path = "keyring_tests.rs"]
mod tests;
