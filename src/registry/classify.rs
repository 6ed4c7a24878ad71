//! Turning what a registry conversation ended in into a [`ResolveError`], in the words the troubleshooting
//! guide uses: statuses and distribution error codes, and transport errors — whose `Display` says only
//! "error sending request", so the cause is read from the `source()` chain (refused, DNS, timeout,
//! unknown CA, an address the network policy refused).
//!
//! Registry-supplied text never reaches a message raw: error bodies are reduced to their error codes
//! (their message is quoted only for registries configured in `registries:`), and what is quoted goes
//! through [`sanitize`]: quoted, control characters escaped (kube-apiserver drops a warning that has
//! any), at most 160 characters.

use std::error::Error as StdError;

use serde::Deserialize;

use super::net::Refused;
use crate::facts::{Missing, ResolveError, truncate_chars};

/// Longest registry-supplied text quoted in a message.
const QUOTED_MAX: usize = 160;

/// Registry-supplied text, fit for a message: trimmed, at most 160 characters, quoted, with control
/// characters escaped.
pub fn sanitize(text: &str) -> String {
    format!("{:?}", truncate_chars(text.trim(), QUOTED_MAX))
}

/// The error envelope of the distribution API: `{"errors": [{"code": …, "message": …}]}`.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A registry's error answer: its status and (capped) body. What the registry said is reduced to its
/// distribution error codes (`TOOMANYREQUESTS`, `DENIED`, …); its free-text message is quoted only for a
/// `trusted` registry (one configured in `registries:`): another registry's text — which may carry
/// internal details, or whatever its operator put there — never reaches the pod author.
pub fn status(status: u16, body: &[u8], trusted: bool) -> ResolveError {
    let envelope: Envelope = serde_json::from_slice(body).unwrap_or_default();
    let has = |code: &str| envelope.errors.iter().any(|e| e.code == code);
    let detail = || {
        let codes: Vec<&str> = envelope
            .errors
            .iter()
            .map(|e| e.code.as_str())
            .filter(|c| is_error_code(c))
            .take(3)
            .collect();
        let message = envelope
            .errors
            .iter()
            .map(|e| e.message.as_str())
            .find(|m| !m.trim().is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let quoted = (trusted && !message.trim().is_empty()).then(|| sanitize(&message));
        [Some(codes.join(", ")).filter(|c| !c.is_empty()), quoted]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    };
    match status {
        404 if has("NAME_UNKNOWN") => ResolveError::NotFound(Missing::Repository),
        404 => ResolveError::NotFound(Missing::Manifest),
        429 => ResolveError::RateLimited(detail()),
        _ if has("TOOMANYREQUESTS") => ResolveError::RateLimited(detail()),
        401 => ResolveError::Unauthorized,
        403 => ResolveError::Denied,
        // A plain HTTP request to a TLS port gets 400 "Client sent an HTTP request to an HTTPS server".
        400 if String::from_utf8_lossy(body).contains("HTTPS") => {
            ResolveError::Tls("the registry serves HTTPS but was contacted over plain HTTP".into())
        }
        status => ResolveError::Server { status },
    }
}

/// A distribution error code as the spec spells them (`MANIFEST_UNKNOWN`): upper-case letters and
/// underscores, short. Anything else a registry puts in `code` is not repeated.
fn is_error_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 32 && code.chars().all(|c| c.is_ascii_uppercase() || c == '_')
}

/// An address the network policy refused, dialled as `role` ("registry", "token service", …).
pub fn refused(refused: &Refused, role: &str) -> ResolveError {
    ResolveError::AddressRefused {
        role: role.to_owned(),
        address: refused.address.to_string(),
        class: refused.class.to_string(),
    }
}

/// Whether a TLS connection failed because the server answered in plain HTTP.
pub fn is_plain_http(error: &reqwest::Error) -> bool {
    let lower = causes(error).to_lowercase();
    lower.contains("invalidcontenttype") || lower.contains("corrupt message")
}

/// A transport error of a request to `role`, classified by walking its causes.
pub fn transport(error: &reqwest::Error, role: &str) -> ResolveError {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(why) = current.downcast_ref::<Refused>() {
            return refused(why, role);
        }
        cause = current.source();
    }
    let chain = causes(error);
    let lower = chain.to_lowercase();
    if is_plain_http(error) {
        return ResolveError::Tls(
            "the registry does not speak TLS here (plain HTTP?); mark it insecure if that is intended"
                .into(),
        );
    }
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("tls") {
        return ResolveError::Tls(tls_reason(&chain));
    }
    if error.is_timeout() {
        return ResolveError::Timeout;
    }
    if lower.contains("connection refused") {
        return ResolveError::Refused;
    }
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        return ResolveError::Dns(short(&last_cause(error)));
    }
    ResolveError::Connect(short(&last_cause(error)))
}

/// The innermost cause's message.
fn last_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current: &(dyn StdError + 'static) = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Every cause's message, outermost first.
fn causes(error: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error.source();
    while let Some(cause) = current {
        parts.push(cause.to_string());
        current = cause.source();
    }
    parts.join(": ")
}

/// A user-facing reason in the words of the runtime's x509 errors.
fn tls_reason(chain: &str) -> String {
    let lower = chain.to_lowercase();
    if lower.contains("unknownissuer") {
        "x509: certificate signed by unknown authority".into()
    } else if lower.contains("expired") {
        "x509: certificate has expired or is not yet valid".into()
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        "x509: certificate is not valid for this host name".into()
    } else {
        short(chain)
    }
}

/// Cap text from the transport: it may quote what a hostile peer sent.
fn short(text: &str) -> String {
    truncate_chars(
        &text
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>(),
        QUOTED_MAX,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::manifest_unknown(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#, ResolveError::NotFound(Missing::Manifest))]
    #[case::name_unknown(404, r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}"#, ResolveError::NotFound(Missing::Repository))]
    #[case::html_404(404, "<html>not found</html>", ResolveError::NotFound(Missing::Manifest))]
    #[case::empty_404(404, "", ResolveError::NotFound(Missing::Manifest))]
    #[case::denied(403, r#"{"errors":[{"code":"DENIED","message":"denied"}]}"#, ResolveError::Denied)]
    #[case::unauthorized(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#, ResolveError::Unauthorized)]
    #[case::rate_limited(429, r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#, ResolveError::RateLimited("TOOMANYREQUESTS \"You have reached your pull rate limit.\"".into()))]
    #[case::plain_429(429, "slow down", ResolveError::RateLimited("\"slow down\"".into()))]
    #[case::bare_429(429, "", ResolveError::RateLimited(String::new()))]
    #[case::server_500(500, "{\"oops\":1}", ResolveError::Server { status: 500 })]
    #[case::http_to_https(400, "Client sent an HTTP request to an HTTPS server.", ResolveError::Tls("the registry serves HTTPS but was contacted over plain HTTP".into()))]
    fn registry_answers_are_classified(#[case] code: u16, #[case] body: &str, #[case] expected: ResolveError) {
        assert_eq!(status(code, body.as_bytes(), true), expected);
    }

    #[rstest]
    #[case::envelope(
        r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"db_password=hunter2 host=10.1.2.3"}]}"#,
        "TOOMANYREQUESTS"
    )]
    #[case::odd_code(r#"{"errors":[{"code":"password=hunter2","message":"x"}]}"#, "")]
    #[case::plain_body("internal: password=hunter2 at 10.1.2.3", "")]
    fn an_unconfigured_registry_s_text_is_reduced_to_its_codes(
        #[case] body: &str,
        #[case] said: &str,
    ) {
        let ResolveError::RateLimited(detail) = status(429, body.as_bytes(), false) else {
            panic!("429 is a rate limit");
        };
        assert_eq!(detail, said);
    }

    #[test]
    fn hostile_registry_text_is_capped_quoted_and_has_no_control_characters() {
        let huge = format!("{}\u{7}\r\n{}", "A".repeat(100), "B".repeat(100_000));
        let ResolveError::RateLimited(detail) = status(429, huge.as_bytes(), true) else {
            panic!("429 is a rate limit");
        };
        assert!(
            detail.chars().count() <= QUOTED_MAX + 12,
            "{}",
            detail.len()
        );
        assert!(detail.starts_with('"') && detail.ends_with('"'), "{detail}");
        assert!(!detail.chars().any(char::is_control), "{detail:?}");
    }

    #[rstest]
    #[case::unknown_issuer(
        "invalid peer certificate: UnknownIssuer",
        "x509: certificate signed by unknown authority"
    )]
    #[case::expired(
        "invalid peer certificate: Expired",
        "x509: certificate has expired or is not yet valid"
    )]
    #[case::name(
        "invalid peer certificate: NotValidForName",
        "x509: certificate is not valid for this host name"
    )]
    fn tls_causes_read_like_the_runtime(#[case] chain: &str, #[case] expected: &str) {
        assert_eq!(tls_reason(chain), expected);
    }
}
