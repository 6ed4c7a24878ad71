//! Pull budgets: how many pulls a rate-limited registry (Docker Hub) still allows from here, read from
//! the `ratelimit-remaining` / `ratelimit-limit` headers of a `HEAD` on a manifest — which itself does not
//! count against the budget. Anonymous, with the registry's own Bearer challenge, as Docker documents.

use std::time::Duration;

use serde::Deserialize;

use super::hosts::{Endpoint, Scheme};
use crate::facts::{Budget, ResolveError};

/// `76;w=21600` → (76, Some(21600)).
fn parse_header(value: &str) -> Option<(u64, Option<u64>)> {
    let mut parts = value.split(';');
    let count = parts.next()?.trim().parse().ok()?;
    let window = parts
        .filter_map(|p| p.trim().strip_prefix("w="))
        .find_map(|w| w.parse().ok());
    Some((count, window))
}

/// The budget from response headers, when they carry one.
pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Budget> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (remaining, window) = parse_header(text("ratelimit-remaining")?)?;
    let limit = text("ratelimit-limit").and_then(parse_header);
    Some(Budget {
        remaining,
        limit: limit.map(|(n, _)| n),
        window_seconds: window.or(limit.and_then(|(_, w)| w)),
    })
}

/// `Bearer realm="…",service="…"` → (realm, service).
fn bearer_challenge(header: &str) -> Option<(String, Option<String>)> {
    let rest = header.trim().strip_prefix("Bearer ")?;
    let mut realm = None;
    let mut service = None;
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        let value = value.trim_matches('"').to_owned();
        match key.trim() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
    }
    Some((realm?, service))
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
}

/// A client for probing one endpoint, trusting what the nodes trust.
pub fn client(endpoint: &Endpoint, timeout: Duration) -> Result<reqwest::Client, ResolveError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .danger_accept_invalid_certs(endpoint.skip_verify);
    for pem in &endpoint.ca_pems {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ResolveError::Tls(format!("unusable CA: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ResolveError::Connect(format!("cannot build the probe client: {e}")))
}

fn network(error: &reqwest::Error) -> ResolveError {
    if error.is_timeout() {
        ResolveError::Timeout
    } else {
        ResolveError::Connect(crate::facts::truncate_chars(&error.to_string(), 160))
    }
}

/// `HEAD` a manifest of `repository` (anonymously, answering a Bearer challenge) and read the budget.
/// `Ok(None)`: the registry answered but does not publish a budget.
pub async fn probe(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    repository: &str,
) -> Result<Option<Budget>, ResolveError> {
    let scheme = match endpoint.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let url = format!(
        "{scheme}://{}/v2/{repository}/manifests/latest",
        endpoint.host
    );
    let first = client.head(&url).send().await.map_err(|e| network(&e))?;
    let answer = if first.status() == reqwest::StatusCode::UNAUTHORIZED {
        let challenge = first
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_challenge)
            .ok_or(ResolveError::Unauthorized)?;
        let (realm, service) = challenge;
        let mut query = vec![("scope", format!("repository:{repository}:pull"))];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let realm = reqwest::Url::parse_with_params(&realm, &query)
            .map_err(|e| ResolveError::InvalidResponse(format!("token realm: {e}")))?;
        let body = client
            .get(realm)
            .send()
            .await
            .map_err(|e| network(&e))?
            .error_for_status()
            .map_err(|_| ResolveError::Unauthorized)?
            .bytes()
            .await
            .map_err(|e| network(&e))?;
        let token: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| ResolveError::InvalidResponse(format!("token answer: {e}")))?;
        let token = token
            .token
            .or(token.access_token)
            .ok_or_else(|| ResolveError::InvalidResponse("token answer has no token".into()))?;
        client
            .head(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| network(&e))?
    } else {
        first
    };
    if answer.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Ok(Some(Budget {
            remaining: 0,
            limit: None,
            window_seconds: None,
        }));
    }
    Ok(from_headers(answer.headers()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::docker_hub("76;w=21600", Some((76, Some(21600))))]
    #[case::plain("5", Some((5, None)))]
    #[case::garbage("lots", None)]
    fn header_values(#[case] value: &str, #[case] expected: Option<(u64, Option<u64>)>) {
        assert_eq!(parse_header(value), expected);
    }

    #[test]
    fn docker_hub_challenge() {
        let (realm, service) = bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
        )
        .expect("challenge");
        assert_eq!(realm, "https://auth.docker.io/token");
        assert_eq!(service.as_deref(), Some("registry.docker.io"));
        assert!(bearer_challenge("Basic realm=x").is_none());
    }
}
