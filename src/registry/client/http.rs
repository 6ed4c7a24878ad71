//! The guarded HTTP layer under the registry client: one reqwest client per TLS setting (a credential is
//! a header, not a client), every address checked by the [`NetworkPolicy`], redirects followed by hand
//! (at most [`MAX_REDIRECTS`] hops, each checked, never from HTTPS to plain HTTP, credentials never
//! carried to another host), and bodies read into a capped buffer — the connection is dropped past the
//! cap, whatever `Content-Length` says.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::super::classify;
use super::super::net::{GuardedResolver, NetworkPolicy};
use crate::facts::ResolveError;

/// Most redirect hops followed for one request.
pub const MAX_REDIRECTS: usize = 5;

/// Timeouts of each exchange (the whole resolution has its own deadline on top).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting (TCP and TLS).
    pub connect: Duration,
    /// The whole request, connecting included, until the last byte of the answer.
    pub read: Duration,
}

/// The trust an endpoint uses: extra CA certificates (PEM) and whether verification is skipped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tls {
    pub ca_pems: Vec<Vec<u8>>,
    pub skip_verify: bool,
}

/// One request: where, what, and the `Authorization` header with the host it belongs to.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub accept: Option<&'static str>,
    /// Sent only while the request stays on this `host[:port]`.
    pub authorization: Option<(String, HeaderValue)>,
    /// What the first address dialled is, for refusals ("registry", "token service").
    pub role: &'static str,
    /// Retry over plain HTTP when the server answers TLS with HTTP (containerd's `localhost` default).
    pub http_fallback: bool,
}

/// An answer whose body has not been read yet.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Where the answer came from, after redirects.
    pub url: Url,
    response: reqwest::Response,
}

/// `host[:port]` of a URL, as compared for credentials.
pub fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

/// A size in the words of messages: `4 MiB`, `64 KiB`, `512 bytes`.
pub fn size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

impl Answer {
    /// The body, at most `cap` bytes: past that, the connection is dropped and `what` is reported too
    /// large. A `Content-Length` above the cap is refused before anything is read.
    pub async fn body(self, cap: u64, what: &str) -> Result<Vec<u8>, ResolveError> {
        let too_large = || ResolveError::TooLarge {
            what: what.to_owned(),
            limit: size(cap),
        };
        if self.response.content_length().is_some_and(|n| n > cap) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut stream = self.response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify::transport(&e, "registry"))?;
            if body.len() as u64 + chunk.len() as u64 > cap {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The body of an error answer, read for its error codes: at most 16 KiB, and nothing when it is
    /// larger or unreadable (the status still says what happened).
    pub async fn error_body(self) -> Vec<u8> {
        self.body(16 * 1024, "error body").await.unwrap_or_default()
    }
}

/// HTTP clients by TLS setting, behind the network policy.
pub struct Http {
    policy: Arc<NetworkPolicy>,
    timeouts: Timeouts,
    clients: Mutex<HashMap<Tls, reqwest::Client>>,
    /// Hosts that fell back to plain HTTP once: asked over HTTP straight away.
    plain_http: moka::sync::Cache<String, ()>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub fn new(policy: Arc<NetworkPolicy>, timeouts: Timeouts) -> Self {
        Self {
            policy,
            timeouts,
            clients: Mutex::new(HashMap::new()),
            plain_http: moka::sync::Cache::builder()
                .max_capacity(1_000)
                .time_to_live(Duration::from_secs(60 * 60))
                .build(),
        }
    }

    /// The timeouts of each exchange.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The client for a TLS setting, made on first use (the CA store is loaded once per setting).
    fn client(&self, tls: &Tls) -> Result<reqwest::Client, ResolveError> {
        let mut clients = match self.clients.lock() {
            Ok(clients) => clients,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(client) = clients.get(tls) {
            return Ok(client.clone());
        }
        let mut roots = Vec::new();
        for pem in &tls.ca_pems {
            roots.extend(
                reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| ResolveError::Tls(format!("unusable CA: {e}")))?,
            );
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                policy: self.policy.clone(),
            }))
            .connect_timeout(self.timeouts.connect)
            .timeout(self.timeouts.read)
            .tls_certs_merge(roots)
            .danger_accept_invalid_certs(tls.skip_verify)
            .user_agent(concat!("pullgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ResolveError::Connect(format!("cannot build an HTTP client: {e}")))?;
        clients.insert(tls.clone(), client.clone());
        Ok(client)
    }

    /// Refuse a URL whose host is an address the policy refuses (names are checked when resolved).
    fn check_literal(&self, url: &Url, role: &str) -> Result<(), ResolveError> {
        let address = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => {
                return Err(ResolveError::InvalidResponse(format!(
                    "{role} URL has no host"
                )));
            }
        };
        self.policy
            .check(address)
            .map_err(|refused| classify::refused(&refused, role))
    }

    /// Send `request`, following redirects by hand. Every hop is one request in `on_hop`'s count.
    pub async fn send(
        &self,
        tls: &Tls,
        request: Request,
        mut on_hop: impl FnMut(),
    ) -> Result<Answer, ResolveError> {
        let client = self.client(tls)?;
        let Request {
            mut method,
            mut url,
            accept,
            authorization,
            mut role,
            http_fallback,
        } = request;
        let mut fallback = http_fallback && url.scheme() == "https";
        if fallback && self.plain_http.contains_key(&authority(&url)) {
            let _ = url.set_scheme("http");
            fallback = false;
        }
        for hop in 0..=MAX_REDIRECTS {
            self.check_literal(&url, role)?;
            let build = |url: &Url| {
                let mut builder = client.request(method.clone(), url.clone());
                if let Some(accept) = accept {
                    builder = builder.header(header::ACCEPT, accept);
                }
                match &authorization {
                    Some((host, value)) if *host == authority(url) => {
                        builder.header(header::AUTHORIZATION, value.clone())
                    }
                    _ => builder,
                }
            };
            on_hop();
            let response = match build(&url).send().await {
                Ok(response) => response,
                Err(error) if fallback && hop == 0 && classify::is_plain_http(&error) => {
                    // As containerd: the same request again over plain HTTP, and from now on.
                    fallback = false;
                    self.plain_http.insert(authority(&url), ());
                    let _ = url.set_scheme("http");
                    on_hop();
                    build(&url)
                        .send()
                        .await
                        .map_err(|e| classify::transport(&e, role))?
                }
                Err(error) => return Err(classify::transport(&error, role)),
            };
            let status = response.status();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (true, Some(location)) = (status.is_redirection(), location) else {
                return Ok(Answer {
                    status,
                    headers: response.headers().clone(),
                    url,
                    response,
                });
            };
            if hop == MAX_REDIRECTS {
                return Err(ResolveError::InvalidResponse(format!(
                    "more than {MAX_REDIRECTS} redirects"
                )));
            }
            let next = url.join(&location).map_err(|_| {
                ResolveError::InvalidResponse("redirect to an unusable location".into())
            })?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(ResolveError::InvalidResponse(
                    "redirect to a URL that is not HTTP(S) refused".into(),
                ));
            }
            if url.scheme() == "https" && next.scheme() == "http" {
                return Err(ResolveError::Tls(
                    "redirect from HTTPS to plain HTTP refused".into(),
                ));
            }
            if status == StatusCode::SEE_OTHER && method != Method::HEAD {
                method = Method::GET;
            }
            url = next;
            role = "redirect target";
        }
        Err(ResolveError::InvalidResponse(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(4 * 1024 * 1024, "4 MiB")]
    #[case(64 * 1024, "64 KiB")]
    #[case(1000, "1000 bytes")]
    fn sizes_read_like_messages(#[case] bytes: u64, #[case] text: &str) {
        assert_eq!(size(bytes), text);
    }

    #[rstest]
    #[case("https://r.example.com/v2/", "r.example.com")]
    #[case("http://127.0.0.1:5000/v2/", "127.0.0.1:5000")]
    #[case("https://[::1]:5000/v2/", "[::1]:5000")]
    fn authorities_keep_the_port(#[case] url: &str, #[case] expected: &str) {
        assert_eq!(authority(&Url::parse(url).expect("url")), expected);
    }
}
