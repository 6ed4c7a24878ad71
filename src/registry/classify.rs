//! Turning oci-client errors into [`ResolveError`]s. reqwest's own message says only "error sending
//! request", so the cause is read from the `source()` chain (refused, DNS, timeout, unknown CA).

use std::error::Error as StdError;

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::facts::{Missing, ResolveError};

/// Classify an oci-client error.
pub fn classify(error: &OciDistributionError) -> ResolveError {
    match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let has = |wanted: fn(&OciErrorCode) -> bool| codes.iter().any(|c| wanted(c));
            if has(|c| matches!(c, OciErrorCode::NameUnknown)) {
                ResolveError::NotFound(Missing::Repository)
            } else if has(|c| matches!(c, OciErrorCode::ManifestUnknown | OciErrorCode::NotFound)) {
                ResolveError::NotFound(Missing::Manifest)
            } else if has(|c| matches!(c, OciErrorCode::Toomanyrequests)) {
                let detail = envelope
                    .errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .find(|m| !m.is_empty())
                    .unwrap_or_default();
                ResolveError::RateLimited(short(detail))
            } else if has(|c| matches!(c, OciErrorCode::Denied)) {
                ResolveError::Denied
            } else if has(|c| matches!(c, OciErrorCode::Unauthorized)) {
                ResolveError::Unauthorized
            } else {
                ResolveError::InvalidResponse(short(&envelope.to_string()))
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            401 => ResolveError::Unauthorized,
            403 => ResolveError::Denied,
            404 => ResolveError::NotFound(Missing::Manifest),
            429 => ResolveError::RateLimited(short(message)),
            // A plain HTTP request to a TLS port gets 400 "Client sent an HTTP request to an HTTPS server".
            400 if message.contains("HTTPS") => ResolveError::Tls(
                "the registry serves HTTPS but was contacted over plain HTTP".into(),
            ),
            status => ResolveError::Server { status: *status },
        },
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => ResolveError::Unauthorized,
        OciDistributionError::RequestError(e) => classify_request(e),
        OciDistributionError::IoError(e) => ResolveError::Connect(short(&e.to_string())),
        other => ResolveError::InvalidResponse(short(&other.to_string())),
    }
}

/// Classify a transport error by walking its causes.
fn classify_request(error: &reqwest::Error) -> ResolveError {
    let chain = causes(error);
    let lower = chain.to_lowercase();
    if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
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

/// Cap registry-supplied text: a hostile registry must not fill our messages.
fn short(text: &str) -> String {
    crate::facts::truncate_chars(text.trim(), 160)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::OciEnvelope;
    use rstest::rstest;

    fn registry_error(json: &str) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: serde_json::from_str::<OciEnvelope>(json).expect("envelope parses"),
            url: "http://127.0.0.1/v2/x/manifests/y".into(),
        }
    }

    fn server_error(code: u16, message: &str) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://127.0.0.1/v2/x/manifests/y".into(),
            message: message.into(),
        }
    }

    #[rstest]
    #[case::manifest_unknown(
        registry_error(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#),
        ResolveError::NotFound(Missing::Manifest)
    )]
    #[case::name_unknown(
        registry_error(
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}"#
        ),
        ResolveError::NotFound(Missing::Repository)
    )]
    #[case::denied(
        registry_error(r#"{"errors":[{"code":"DENIED","message":"denied"}]}"#),
        ResolveError::Denied
    )]
    #[case::unauthorized(
        registry_error(
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
        ),
        ResolveError::Unauthorized
    )]
    #[case::rate_limited(registry_error(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#), ResolveError::RateLimited("You have reached your pull rate limit.".into()))]
    #[case::html_404(
        server_error(404, "<html>not found</html>"),
        ResolveError::NotFound(Missing::Manifest)
    )]
    #[case::plain_429(server_error(429, "slow down"), ResolveError::RateLimited("slow down".into()))]
    #[case::plain_401(server_error(401, ""), ResolveError::Unauthorized)]
    #[case::plain_403(server_error(403, ""), ResolveError::Denied)]
    #[case::server_500(server_error(500, "{\"oops\":1}"), ResolveError::Server { status: 500 })]
    #[case::http_to_https(server_error(400, "Client sent an HTTP request to an HTTPS server."), ResolveError::Tls("the registry serves HTTPS but was contacted over plain HTTP".into()))]
    #[case::unauthorized_error(OciDistributionError::UnauthorizedError { url: "u".into() }, ResolveError::Unauthorized)]
    #[case::token_failure(OciDistributionError::AuthenticationFailure("401".into()), ResolveError::Unauthorized)]
    fn registry_answers_are_classified(
        #[case] error: OciDistributionError,
        #[case] expected: ResolveError,
    ) {
        assert_eq!(classify(&error), expected);
    }

    #[test]
    fn hostile_registry_text_is_capped() {
        let huge = "A".repeat(100_000);
        let ResolveError::RateLimited(detail) = classify(&server_error(429, &huge)) else {
            panic!("429 is a rate limit");
        };
        assert!(detail.chars().count() <= 160, "{}", detail.len());
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
