//! One request of a conversation with an endpoint, authenticated: known challenges answered up front,
//! a `401` challenge answered once (Basic with the credential, or a token from the realm — with the
//! credential only where [`auth::may_send_credentials`] allows), tokens cached until they expire; and what
//! a failed answer means, in the light of what it carried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};

use super::Client;
use super::auth::{self, Challenge, Token, TokenKey};
use super::http::{self, Answer, Request, Tls};
use crate::credentials::Credential;
use crate::facts::{ResolveError, seconds};
use crate::registry::RequestCounter;
use crate::registry::budget::{self, Refused};
use crate::registry::classify::{self, sanitize};
use crate::registry::hosts::Endpoint;

/// Per-entry lifetime of a cached token: until it expires.
pub(super) struct TokenExpiry;

impl moka::Expiry<TokenKey, Token> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        token: &Token,
        created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(token.until.saturating_duration_since(created_at))
    }
}

/// What authorization the final attempt of an exchange carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    Nothing,
    Basic,
    /// A token; `with_credential` when the token service was given the credential.
    Token {
        with_credential: bool,
    },
}

/// One image's conversation with one endpoint.
pub(super) struct Conversation<'a> {
    pub(super) endpoint: &'a Endpoint,
    pub(super) tls: Tls,
    /// The image's registry as in image references.
    pub(super) registry: &'a str,
    pub(super) repository: &'a str,
    /// The credential, when it may go to this endpoint (the registry's own).
    pub(super) credential: Option<&'a Credential>,
    pub(super) requests: &'a RequestCounter,
    /// The registry is configured in `registries:`: its error messages may be quoted.
    pub(super) trusted: bool,
}

impl Conversation<'_> {
    /// The URL of `path` under the repository; on another host than the registry's own (a mirror), with
    /// `?ns=<registry>` as containerd adds it, so a mirror serving several registries knows which.
    pub(super) fn url(&self, path: &str) -> Result<Url, ResolveError> {
        let mut text = format!("{}/{}/{path}", self.endpoint.url(), self.repository);
        if !is_the_registry_host(self.endpoint, self.registry) {
            text.push_str("?ns=");
            text.push_str(self.registry);
        }
        Url::parse(&text).map_err(|_| {
            ResolveError::InvalidResponse(format!("cannot form a URL from {}", sanitize(&text)))
        })
    }
}

/// Whether an endpoint is on the image's own registry host (Docker Hub's upstream counts as `docker.io`).
pub(super) fn is_the_registry_host(endpoint: &Endpoint, registry: &str) -> bool {
    endpoint.host == registry
        || (registry == "docker.io" && endpoint.host == "registry-1.docker.io")
}

impl Client {
    pub(super) async fn exchange(
        &self,
        conv: &Conversation<'_>,
        method: Method,
        url: Url,
        accept: Option<&'static str>,
        label: &'static str,
    ) -> Result<(Answer, Sent), ResolveError> {
        let started = Instant::now();
        let result = self.authorized(conv, method, url, accept).await;
        let failed = match &result {
            Ok((answer, _)) if !answer.status.is_success() => {
                Some(classify::status(answer.status.as_u16(), b"", conv.trusted))
            }
            _ => None,
        };
        if let (Some(budget), Some(error)) = (&self.requests, &failed) {
            budget.observe(conv.registry, error);
        }
        let outcome = match (&result, &failed) {
            (Err(error), _) | (Ok(_), Some(error)) => Err(error),
            (Ok(_), None) => Ok(()),
        };
        self.metrics
            .record(&conv.endpoint.host, label, started, outcome);
        let (answer, sent) = result?;
        if let (Some(sink), true) = (&self.budgets, !conv.endpoint.is_mirror) {
            if let Some(found) = budget::from_headers(&answer.headers) {
                self.metrics.budget(conv.registry, found.remaining);
                sink.observed(conv.registry, found);
            }
        }
        Ok((answer, sent))
    }

    async fn authorized(
        &self,
        conv: &Conversation<'_>,
        method: Method,
        url: Url,
        accept: Option<&'static str>,
    ) -> Result<(Answer, Sent), ResolveError> {
        let host = http::authority(&url);
        let scope = format!("repository:{}:pull", conv.repository);
        // Authenticate up front where this host already challenged.
        let (mut header, mut sent) = (None, Sent::Nothing);
        match self.challenges.get(&host) {
            Some(Challenge::Basic) => {
                if let Some(credential) = conv.credential {
                    header = auth::basic(credential);
                    sent = Sent::Basic;
                }
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = self.token_key(conv, &realm, service.as_deref(), &scope);
                if let Some(token) = self.tokens.get(&key).await {
                    header = auth::bearer(&token.value);
                    sent = Sent::Token {
                        with_credential: key.credential != "anonymous",
                    };
                }
            }
            None => {}
        }
        let send = |header: Option<HeaderValue>| {
            let request = Request {
                method: method.clone(),
                url: url.clone(),
                accept,
                authorization: header.map(|h| (host.clone(), h)),
                role: "registry",
                http_fallback: conv.endpoint.http_fallback,
            };
            async move {
                if let Some(budget) = &self.requests {
                    budget
                        .take(conv.registry)
                        .map_err(|refused| match refused {
                            Refused::Spent(limit) => ResolveError::RequestBudgetSpent { limit },
                            Refused::BackedOff(answer) => answer,
                        })?;
                }
                self.http
                    .send(&conv.tls, request, || conv.requests.add())
                    .await
            }
        };
        let answer = send(header).await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return Ok((answer, sent));
        }
        let challenge = answer
            .headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge);
        let Some(challenge) = challenge else {
            return Ok((answer, sent));
        };
        match challenge {
            Challenge::Basic => {
                self.challenges.insert(host.clone(), Challenge::Basic);
                match conv.credential {
                    Some(credential) if sent != Sent::Basic => {
                        let answer = send(auth::basic(credential)).await?;
                        Ok((answer, Sent::Basic))
                    }
                    _ => Ok((answer, sent)),
                }
            }
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
                error,
            } => {
                let remembered = Challenge::Bearer {
                    realm: realm.clone(),
                    service: service.clone(),
                    scope: None,
                    error: None,
                };
                self.challenges.insert(host.clone(), remembered);
                let scope = asked.unwrap_or(scope);
                if matches!(sent, Sent::Token { .. }) {
                    if error.as_deref() == Some("insufficient_scope") {
                        // A fresh token for these credentials that grants no pull: no access.
                        return Ok((answer, sent));
                    }
                    // A cached token the registry no longer takes: fetch a new one below.
                    let key = self.token_key(conv, &realm, service.as_deref(), &scope);
                    self.tokens.invalidate(&key).await;
                }
                let realm_url = Url::parse(&realm).map_err(|_| {
                    ResolveError::TokenService("realm named by the registry is not a URL".into())
                })?;
                // Plain HTTP to the registry (configured, or containerd's localhost fallback): a
                // plain-HTTP token service there is no worse.
                let insecure = answer.url.scheme() == "http";
                let allowed = self.hosts.token_realms(conv.registry);
                let may_send =
                    auth::may_send_credentials(&realm_url, &conv.endpoint.host, insecure, allowed);
                let credential = conv.credential.filter(|_| may_send);
                let withheld = conv.credential.is_some() && credential.is_none();
                let token = match self
                    .token(conv, &realm_url, service.as_deref(), &scope, credential)
                    .await
                {
                    Ok(token) => token,
                    Err(ResolveError::Unauthorized) if withheld => {
                        return Err(ResolveError::CredentialsWithheld {
                            realm: http::authority(&realm_url),
                        });
                    }
                    Err(error) => return Err(error),
                };
                let answer = send(auth::bearer(&token.value)).await?;
                let sent = Sent::Token {
                    with_credential: credential.is_some(),
                };
                if withheld
                    && matches!(
                        answer.status,
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                    )
                {
                    return Err(ResolveError::CredentialsWithheld {
                        realm: http::authority(&realm_url),
                    });
                }
                Ok((answer, sent))
            }
        }
    }

    fn token_key(
        &self,
        conv: &Conversation<'_>,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> TokenKey {
        TokenKey {
            realm: realm.to_owned(),
            service: service.unwrap_or_default().to_owned(),
            scope: scope.to_owned(),
            credential: conv
                .credential
                .map_or_else(|| "anonymous".to_owned(), Credential::fingerprint),
        }
    }

    /// A token for `scope` from the realm, from the cache when one is valid. A failing token service is
    /// a registry failure; only its `401` to given credentials is a verdict on them.
    async fn token(
        &self,
        conv: &Conversation<'_>,
        realm: &Url,
        service: Option<&str>,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Result<Token, ResolveError> {
        let key = TokenKey {
            realm: realm.to_string(),
            service: service.unwrap_or_default().to_owned(),
            scope: scope.to_owned(),
            credential: credential.map_or_else(|| "anonymous".to_owned(), Credential::fingerprint),
        };
        let fetch = async {
            let started = Instant::now();
            let result = self
                .fetch_token(conv, realm, service, scope, credential)
                .await;
            self.metrics.record(
                &http::authority(realm),
                "token",
                started,
                result.as_ref().map(|_| ()),
            );
            result
        };
        self.tokens
            .entry(key)
            .or_try_insert_with(fetch)
            .await
            .map(|entry| entry.into_value())
            .map_err(|shared: Arc<ResolveError>| (*shared).clone())
    }

    async fn fetch_token(
        &self,
        conv: &Conversation<'_>,
        realm: &Url,
        service: Option<&str>,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Result<Token, ResolveError> {
        let host = http::authority(realm);
        let request = Request {
            method: Method::GET,
            url: auth::token_url(realm, service, scope),
            accept: Some("application/json"),
            authorization: credential
                .and_then(auth::basic)
                .map(|header| (host.clone(), header)),
            role: "token service",
            http_fallback: false,
        };
        let failed = |what: String| ResolveError::TokenService(format!("{host} {what}"));
        let answer = match self
            .http
            .send(&conv.tls, request, || conv.requests.add())
            .await
        {
            Ok(answer) => answer,
            Err(ResolveError::Timeout) => {
                return Err(failed(format!(
                    "did not answer within {}",
                    seconds(self.http_timeout())
                )));
            }
            Err(error @ (ResolveError::AddressRefused { .. } | ResolveError::Tls(_))) => {
                return Err(error);
            }
            Err(error) => return Err(failed(format!("could not be reached: {error}"))),
        };
        match answer.status {
            StatusCode::OK => {
                let body = answer
                    .body(auth::MAX_TOKEN_BYTES, "token answer")
                    .await
                    .map_err(|e| match e {
                        ResolveError::TooLarge { limit, .. } => {
                            failed(format!("answered more than {limit}"))
                        }
                        other => failed(format!("broke off its answer: {other}")),
                    })?;
                auth::read_token(&body, Instant::now())
                    .map_err(|_| failed("answered something that is not a token".into()))
            }
            StatusCode::UNAUTHORIZED => Err(ResolveError::Unauthorized),
            StatusCode::FORBIDDEN if credential.is_some() => Err(ResolveError::Denied),
            StatusCode::FORBIDDEN => Err(ResolveError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => {
                let body = answer.error_body().await;
                Err(classify::status(429, &body, conv.trusted))
            }
            status => Err(failed(format!("answered {}", status.as_u16()))),
        }
    }

    fn http_timeout(&self) -> Duration {
        self.http.timeouts().read
    }

    /// A failed answer as an error, in the light of what authorization it carried.
    pub(super) async fn failure(answer: Answer, sent: Sent, trusted: bool) -> ResolveError {
        let insufficient = answer
            .headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge)
            .is_some_and(|c| {
                matches!(c, Challenge::Bearer { error: Some(e), .. } if e == "insufficient_scope")
            });
        let status = answer.status.as_u16();
        let body = answer.error_body().await;
        match classify::status(status, &body, trusted) {
            ResolveError::Unauthorized
                if insufficient
                    && sent
                        == (Sent::Token {
                            with_credential: true,
                        }) =>
            {
                ResolveError::Denied
            }
            other => other,
        }
    }
}
