//! `GET /v2/<name>/tags/list`, for "did you mean" on a missing tag: at most [`MAX_PAGES`] pages
//! (`Link: <…>; rel="next"`, followed only on the same endpoint), [`MAX_TAGS`] tags, [`TAGS_TIME`] in all,
//! each page's body capped. Through the same exchange as manifests: the network guard, credentials only
//! to that endpoint, the request budget, the metrics (`tags_list`).

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::Client;
use super::http;
use super::session::Conversation;
use crate::credentials::Credential;
use crate::facts::ResolveError;
use crate::image::ImageRef;
use crate::registry::RequestCounter;

/// Most pages read.
pub const MAX_PAGES: usize = 5;
/// Most tags kept.
pub const MAX_TAGS: usize = 10_000;
/// The whole listing's time.
pub const TAGS_TIME: Duration = Duration::from_secs(1);
/// Largest page body (10,000 tags of 100 characters).
const MAX_PAGE_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The `rel="next"` target of an answer's `Link` header, relative to where the answer came from.
fn next_link(answer: &http::Answer) -> Option<Url> {
    let value = answer.headers.get("link")?.to_str().ok()?;
    value.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then(|| {
                let target = target.trim().trim_start_matches('<').trim_end_matches('>');
                answer.url.join(target).ok()
            })
            .flatten()
    })
}

impl Client {
    /// The repository's tags, as far as the caps allow (in the registry's order). An error status on
    /// the first page is an error; later pages that fail end the listing.
    pub async fn tags(
        &self,
        image: &ImageRef,
        credential: Option<&Credential>,
        requests: &RequestCounter,
    ) -> Result<Vec<String>, ResolveError> {
        let endpoints = self.hosts.endpoints(image.registry());
        let conversations =
            self.conversations(&endpoints, image, credential, requests, |e| e.can_resolve);
        let Some(conv) = conversations.first() else {
            return Ok(Vec::new());
        };
        tokio::time::timeout(TAGS_TIME, self.list_tags(conv))
            .await
            .unwrap_or(Err(ResolveError::Timeout))
    }

    async fn list_tags(&self, conv: &Conversation<'_>) -> Result<Vec<String>, ResolveError> {
        let mut url = conv.url("tags/list")?;
        url.query_pairs_mut().append_pair("n", "1000");
        let authority = http::authority(&url);
        let mut tags = Vec::new();
        for page in 0..MAX_PAGES {
            let (answer, _) = self
                .exchange(conv, Method::GET, url.clone(), None, "tags_list")
                .await?;
            if answer.status != StatusCode::OK {
                return if page == 0 {
                    Err(ResolveError::Server {
                        status: answer.status.as_u16(),
                    })
                } else {
                    Ok(tags)
                };
            }
            let next = next_link(&answer);
            let body = answer.body(MAX_PAGE_BYTES, "tags list").await?;
            let listed: Page = serde_json::from_slice(&body)
                .map_err(|_| ResolveError::InvalidResponse("tags list is not JSON".into()))?;
            for tag in listed.tags.unwrap_or_default() {
                if tags.len() >= MAX_TAGS {
                    return Ok(tags);
                }
                tags.push(tag);
            }
            match next.filter(|n| http::authority(n) == authority) {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(tags)
    }
}
