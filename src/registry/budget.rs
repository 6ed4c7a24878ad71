//! Pull budgets: how many pulls a rate-limited registry (Docker Hub) still allows from here, read from
//! the `ratelimit-remaining` / `ratelimit-limit` headers that such a registry puts on its answers. Every
//! answer of a registry's own endpoint is read for them (passively, at no cost); `rateLimitProbes` add a
//! periodic anonymous `HEAD`, which does not count as a pull.
//!
//! [`RequestBudget`] is the other side: how many requests pullgate itself may send each registry in one
//! run (`pullgate audit --max-requests-per-registry`), so that one audit cannot spend the pull quota
//! the cluster's nodes need.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use crate::facts::{Budget, ResolveError};

/// Where observed budgets go (the resolver's low-budget warnings).
pub trait BudgetSink: Send + Sync {
    /// `registry` (as in image references) answered with this budget.
    fn observed(&self, registry: &str, budget: Budget);
}

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

/// A cap on the requests sent to each registry (by the image's registry name; a mirror's requests count
/// for the registry it stands in for) over the life of a client. A registry that answers 429 is not
/// asked again.
#[derive(Debug)]
pub struct RequestBudget {
    limits: BTreeMap<String, u32>,
    default: u32,
    spent: Mutex<HashMap<String, Spent>>,
}

#[derive(Debug, Default, Clone)]
struct Spent {
    requests: u32,
    /// The answer that made pullgate stop asking (429, 5xx).
    backed_off: Option<ResolveError>,
}

/// Why [`RequestBudget::take`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The registry's cap (the number) is used up.
    Spent(u32),
    /// The registry answered this (429, 5xx) earlier in this run.
    BackedOff(ResolveError),
}

impl RequestBudget {
    /// `default` requests per registry, except the registries `limits` names.
    pub fn new(default: u32, limits: BTreeMap<String, u32>) -> Self {
        Self {
            limits,
            default,
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// The cap of `registry`.
    pub fn limit(&self, registry: &str) -> u32 {
        self.limits.get(registry).copied().unwrap_or(self.default)
    }

    /// Takes one request from `registry`'s budget.
    pub fn take(&self, registry: &str) -> Result<(), Refused> {
        let limit = self.limit(registry);
        let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        let used = spent.entry(registry.to_owned()).or_default();
        if let Some(answer) = &used.backed_off {
            return Err(Refused::BackedOff(answer.clone()));
        }
        if used.requests >= limit {
            return Err(Refused::Spent(limit));
        }
        used.requests += 1;
        Ok(())
    }

    /// `registry` answered `error`: when it is a 429 or a 5xx, ask it nothing more in this run.
    pub fn observe(&self, registry: &str, error: &ResolveError) {
        let overloaded = match error {
            ResolveError::RateLimited(_) => true,
            ResolveError::Server { status } => *status >= 500,
            _ => false,
        };
        if overloaded {
            let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = spent.entry(registry.to_owned()).or_default();
            entry.backed_off.get_or_insert_with(|| error.clone());
        }
    }

    /// Requests taken so far, per registry.
    pub fn spent(&self) -> BTreeMap<String, u32> {
        let spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        spent
            .iter()
            .filter(|(_, v)| v.requests > 0)
            .map(|(k, v)| (k.clone(), v.requests))
            .collect()
    }
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
    fn request_budgets_stop_at_their_limit_per_registry() {
        let budget = RequestBudget::new(2, BTreeMap::from([("docker.io".to_owned(), 1)]));
        assert_eq!(budget.take("docker.io"), Ok(()));
        assert_eq!(budget.take("docker.io"), Err(Refused::Spent(1)));
        assert_eq!(budget.take("ghcr.io"), Ok(()));
        assert_eq!(budget.take("ghcr.io"), Ok(()));
        assert_eq!(budget.take("ghcr.io"), Err(Refused::Spent(2)));
        let limited = ResolveError::RateLimited(String::new());
        budget.observe("quay.io", &limited);
        assert_eq!(budget.take("quay.io"), Err(Refused::BackedOff(limited)));
        let broken = ResolveError::Server { status: 503 };
        budget.observe(
            "ghcr.io",
            &ResolveError::NotFound(crate::facts::Missing::Manifest),
        );
        budget.observe("registry.example", &broken);
        assert_eq!(
            budget.take("registry.example"),
            Err(Refused::BackedOff(broken))
        );
        assert_eq!(
            budget.spent(),
            BTreeMap::from([("docker.io".to_owned(), 1), ("ghcr.io".to_owned(), 2)])
        );
    }

    #[test]
    fn budgets_come_from_headers() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(from_headers(&headers), None);
        headers.insert("ratelimit-remaining", "7;w=21600".parse().expect("value"));
        headers.insert("ratelimit-limit", "100;w=21600".parse().expect("value"));
        assert_eq!(
            from_headers(&headers),
            Some(Budget {
                remaining: 7,
                limit: Some(100),
                window_seconds: Some(21600)
            })
        );
    }
}
