//! pullgate's own `registries:` settings, turned into endpoints: the mirrors in order, then the
//! upstream; the entry's `ca` and `skipVerify` apply to all of them.

use super::url::parse_url;
use super::{Endpoint, HostsError, Scheme, default_upstream};
use crate::config::RegistrySettings;

pub(super) fn configured_endpoints(
    key: &str,
    settings: &RegistrySettings,
) -> Result<Vec<Endpoint>, HostsError> {
    let RegistrySettings {
        insecure,
        ca,
        skip_verify,
        mirrors,
        // Read by `RegistryHosts` itself: they are not about endpoints.
        pull_quota: _,
        token_realms: _,
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
