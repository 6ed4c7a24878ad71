//! Registry authentication as the distribution spec describes it: `WWW-Authenticate` challenges
//! (`Basic`, `Bearer realm=…,service=…,scope=…`), token requests, and the token cache shared by every
//! admission — keyed by (realm, service, scope, credential fingerprint), kept until `expires_in`.
//!
//! Which credentials may go where:
//! - a registry's credentials go only to that registry's configured endpoints — its own host and its
//!   mirrors, which containerd offers them to as well — never after a redirect to another host;
//! - to a token service only when it is on the registry's site — the same host, or the same registrable
//!   domain (`registry.gitlab.com` → `gitlab.com`, `registry-1.docker.io` → `auth.docker.io`) — or listed
//!   in `registries.<host>.tokenRealms`, and only over HTTPS unless the registry itself is configured
//!   insecure. Elsewhere the token service is asked anonymously, and a refusal then says nothing about
//!   the credentials.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Url;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::http::authority;
use crate::credentials::Credential;

/// Largest token answer read.
pub const MAX_TOKEN_BYTES: u64 = 64 * 1024;
/// How long a token without `expires_in` is trusted (the spec's default).
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Longest a token is kept, whatever it says.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Tokens are renewed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        /// `invalid_token`, `insufficient_scope`, …
        error: Option<String>,
    },
}

/// Parse the first `Basic` or `Bearer` challenge of a `WWW-Authenticate` value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
        error: get("error"),
    })
}

/// `key="quoted, with \" escapes", key2=token` pairs.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_owned();
        if key.is_empty() {
            return params;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        params.push((key, value));
    }
}

/// `Authorization: Basic …` for a credential.
pub fn basic(credential: &Credential) -> Option<HeaderValue> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        credential.username,
        credential.password()
    ));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `Authorization: Bearer …` for a token.
pub fn bearer(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The registrable domain of a host (`registry-1.docker.io` → `docker.io`), or the host itself for IP
/// addresses and names the public suffix list does not know.
fn site(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return host;
    }
    match psl::domain(host.as_bytes()) {
        Some(domain) => String::from_utf8_lossy(domain.as_bytes()).into_owned(),
        None => host,
    }
}

/// Whether a registry's credentials may be sent to the token service at `realm`: it is on the site of
/// `registry_host` (host names compared without ports) or named in `allowed` (URLs or hosts), and it is
/// HTTPS unless the registry is reached over plain HTTP by configuration.
pub fn may_send_credentials(
    realm: &Url,
    registry_host: &str,
    registry_insecure: bool,
    allowed: &[String],
) -> bool {
    if realm.scheme() != "https" && !registry_insecure {
        return false;
    }
    let Some(realm_host) = realm.host_str() else {
        return false;
    };
    let listed = allowed.iter().any(|entry| match Url::parse(entry) {
        Ok(url) => url.host_str() == Some(realm_host) && url.port() == realm.port(),
        Err(_) => entry.eq_ignore_ascii_case(realm_host) || *entry == authority(realm),
    });
    let registry_name = Url::parse(&format!("https://{registry_host}/"))
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| registry_host.to_owned());
    listed || site(realm_host) == site(&registry_name)
}

/// A token and when it stops being used.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub until: Instant,
}

/// The answer of a token service.
#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Why a token answer is unusable.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenProblem {
    NotJson,
    NoToken,
}

/// Read a token service's 200 answer.
pub fn read_token(body: &[u8], now: Instant) -> Result<Token, TokenProblem> {
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|_| TokenProblem::NotJson)?;
    let value = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or(TokenProblem::NoToken)?;
    let ttl = answer
        .expires_in
        .map_or(DEFAULT_TOKEN_TTL, Duration::from_secs)
        .clamp(DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL);
    Ok(Token {
        value,
        until: now + ttl - TOKEN_MARGIN,
    })
}

/// The key a token is cached under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub realm: String,
    pub service: String,
    pub scope: String,
    /// Credential fingerprint, or `anonymous`.
    pub credential: String,
}

/// The URL of a token request: the realm with `service` and `scope` added.
pub fn token_url(realm: &Url, service: Option<&str>, scope: &str) -> Url {
    let mut url = realm.clone();
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        query.append_pair("scope", scope);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn docker_hub_challenge() {
        let challenge = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            challenge,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
                error: None,
            })
        );
    }

    #[rstest]
    #[case::basic(r#"Basic realm="registry""#, Some(Challenge::Basic))]
    #[case::lowercase_unquoted("bearer realm=https://r/t,error=insufficient_scope", Some(Challenge::Bearer { realm: "https://r/t".into(), service: None, scope: None, error: Some("insufficient_scope".into()) }))]
    #[case::escaped_quote(r#"Bearer realm="https://r/t\"x""#, Some(Challenge::Bearer { realm: "https://r/t\"x".into(), service: None, scope: None, error: None }))]
    #[case::no_realm(r#"Bearer service="x""#, None)]
    #[case::other_scheme("Negotiate abc", None)]
    #[case::empty("", None)]
    fn challenges_parse(#[case] header: &str, #[case] expected: Option<Challenge>) {
        assert_eq!(parse_challenge(header), expected);
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::same_host("https://r.example.com/token", "r.example.com", false, &[], true)]
    #[case::docker_hub("https://auth.docker.io/token", "registry-1.docker.io", false, &[], true)]
    #[case::gitlab("https://gitlab.com/jwt/auth", "registry.gitlab.com", false, &[], true)]
    #[case::same_ip_other_port("http://127.0.0.1:9000/token", "127.0.0.1:5000", true, &[], true)]
    #[case::other_site("https://evil.example.net/token", "r.example.com", false, &[], false)]
    #[case::public_suffix_is_not_a_site("https://evil.co.uk/token", "registry.victim.co.uk", false, &[], false)]
    #[case::other_ip("http://127.0.0.2:9000/token", "127.0.0.1:5000", true, &[], false)]
    #[case::name_vs_ip("http://localhost:9000/token", "127.0.0.1:5000", true, &[], false)]
    #[case::listed_url("https://auth.other.net/token", "r.example.com", false, &["https://auth.other.net/token".to_owned()], true)]
    #[case::listed_host("https://auth.other.net/token", "r.example.com", false, &["auth.other.net".to_owned()], true)]
    #[case::plain_http_realm_for_tls_registry("http://r.example.com/token", "r.example.com", false, &[], false)]
    fn credentials_go_only_to_the_registrys_site(
        #[case] realm: &str,
        #[case] registry: &str,
        #[case] insecure: bool,
        #[case] allowed: &[String],
        #[case] expected: bool,
    ) {
        let realm = Url::parse(realm).expect("realm");
        assert_eq!(may_send_credentials(&realm, registry, insecure, allowed), expected);
    }

    #[test]
    fn tokens_expire_as_they_say_within_bounds() {
        let now = Instant::now();
        let short = read_token(br#"{"token":"t","expires_in":10}"#, now).expect("token");
        assert_eq!(short.until, now + DEFAULT_TOKEN_TTL - TOKEN_MARGIN);
        let long = read_token(br#"{"access_token":"t","expires_in":300}"#, now).expect("token");
        assert_eq!(long.until, now + Duration::from_secs(300) - TOKEN_MARGIN);
        assert_eq!(
            read_token(b"<html>", now).err(),
            Some(TokenProblem::NotJson)
        );
        assert_eq!(
            read_token(br#"{"token":""}"#, now).err(),
            Some(TokenProblem::NoToken)
        );
    }
}
