//! Glob patterns for namespaces, registries and images: `*` matches any run of characters (including `/`),
//! `?` matches exactly one; everything else matches itself.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A validated glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Glob(String);

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobError {
    /// An empty pattern would match nothing and is almost certainly a typo.
    #[error("pattern is empty")]
    Empty,
    /// Patterns are single tokens; white space means a mistake in the file.
    #[error("pattern {0:?} contains white space")]
    Whitespace(String),
}

impl FromStr for Glob {
    type Err = GlobError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(GlobError::Empty);
        }
        if s.chars().any(char::is_whitespace) {
            return Err(GlobError::Whitespace(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for Glob {
    type Error = GlobError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Glob {
    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        // Most patterns in practice are plain names: compare without allocating.
        if !self.0.contains(['*', '?']) {
            return self.0 == text;
        }
        if let Some(prefix) = self.0.strip_suffix('*').filter(|p| !p.contains(['*', '?'])) {
            return text.starts_with(prefix);
        }
        let pattern: Vec<char> = self.0.chars().collect();
        let text: Vec<char> = text.chars().collect();
        // Iterative wildcard matching with single-star backtracking: linear in practice, never exponential.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some('?') => {
                    p += 1;
                    t += 1;
                }
                Some(c) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }

    /// Whether any of the patterns matches.
    pub fn any(patterns: &[Glob], text: &str) -> bool {
        patterns.iter().any(|g| g.matches(text))
    }
}

/// In the JSON Schema of policy files: a non-empty pattern.
impl schemars::JsonSchema for Glob {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Glob".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "description": "a pattern where `*` matches any run of characters"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::exact("kube-system", "kube-system", true)]
    #[case::exact_differs("kube-system", "kube-public", false)]
    #[case::prefix_star("team-*", "team-a", true)]
    #[case::prefix_star_empty_rest("team-*", "team-", true)]
    #[case::prefix_star_no("team-*", "teams", false)]
    #[case::star_crosses_slash("registry.example.com/*", "registry.example.com/a/b/c", true)]
    #[case::star_needs_prefix("registry.example.com/*", "registry.example.com", false)]
    #[case::middle_star("docker.io/*/nginx", "docker.io/library/nginx", true)]
    #[case::question("app-?", "app-1", true)]
    #[case::question_one_only("app-?", "app-12", false)]
    #[case::star_alone("*", "", true)]
    #[case::suffix("*-dev", "payments-dev", true)]
    #[case::suffix_no("*-dev", "payments-prod", false)]
    #[case::backtrack("a*b*c", "aXbYbZc", true)]
    #[case::backtrack_no("a*b*c", "aXbYbZ", false)]
    fn glob_matching(#[case] pattern: &str, #[case] text: &str, #[case] expected: bool) {
        let glob: Glob = pattern.parse().expect("valid pattern");
        assert_eq!(glob.matches(text), expected);
    }

    #[rstest]
    #[case::empty("", GlobError::Empty)]
    #[case::space("a b", GlobError::Whitespace("a b".into()))]
    fn invalid_patterns(#[case] pattern: &str, #[case] expected: GlobError) {
        assert_eq!(pattern.parse::<Glob>(), Err(expected));
    }
}
