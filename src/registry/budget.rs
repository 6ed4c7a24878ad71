//! Pull budgets: how many pulls a rate-limited registry (Docker Hub) still allows from here, read from
//! the `ratelimit-remaining` / `ratelimit-limit` headers that such a registry puts on its answers. Every
//! answer of a registry's own endpoint is read for them (passively, at no cost); `rateLimitProbes` add a
//! periodic anonymous `HEAD`, which does not count as a pull.

use crate::facts::Budget;

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
