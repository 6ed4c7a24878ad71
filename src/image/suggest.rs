//! "Did you mean": the existing tags nearest to one that does not exist — the same version line first
//! (`v1.2.4` missing: `v1.2.3`, `v1.2.5`), then the longest shared prefix, then the smallest edit distance.
//! Never `latest` (a missing pinned tag is not fixed by a moving one).

/// Most tags suggested.
pub const MAX_SUGGESTIONS: usize = 3;

/// A tag read as a version: its prefix up to the first digit, its numeric components, the rest.
fn version(tag: &str) -> Option<(&str, Vec<u64>, &str)> {
    let start = tag.find(|c: char| c.is_ascii_digit())?;
    let (prefix, rest) = tag.split_at(start);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (numbers, suffix) = rest.split_at(end);
    let numbers: Vec<u64> = numbers
        .trim_end_matches('.')
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some((prefix, numbers, suffix))
}

/// How far `tag` is from `missing` on the same version line (all but the last component equal, same
/// prefix, suffix and length), if it is on it.
fn line_distance(missing: &str, tag: &str) -> Option<u64> {
    let (p1, n1, s1) = version(missing)?;
    let (p2, n2, s2) = version(tag)?;
    let last = n1.len().checked_sub(1)?;
    (p1 == p2 && s1 == s2 && n1.len() == n2.len() && n1[..last] == n2[..last])
        .then(|| n1[last].abs_diff(n2[last]))
}

fn shared_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Levenshtein distance by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Adds `ranked` to `chosen`, without repeats, up to [`MAX_SUGGESTIONS`].
fn take<'a>(ranked: Vec<&'a str>, chosen: &mut Vec<&'a str>) {
    for tag in ranked {
        if chosen.len() < MAX_SUGGESTIONS && !chosen.contains(&tag) {
            chosen.push(tag);
        }
    }
}

/// Up to [`MAX_SUGGESTIONS`] of `tags` near `missing`, best first.
pub fn nearby_tags(missing: &str, tags: &[String]) -> Vec<String> {
    let candidates: Vec<&str> = tags
        .iter()
        .map(String::as_str)
        .filter(|t| *t != "latest" && *t != missing && !t.is_empty())
        .collect();
    let mut chosen: Vec<&str> = Vec::new();
    let mut line: Vec<(u64, &str)> = candidates
        .iter()
        .filter_map(|t| Some((line_distance(missing, t)?, *t)))
        .collect();
    line.sort();
    take(line.into_iter().map(|(_, t)| t).collect(), &mut chosen);
    let least_prefix = 2.max(missing.chars().count() / 2);
    let mut prefixed: Vec<(std::cmp::Reverse<usize>, &str)> = candidates
        .iter()
        .map(|t| (std::cmp::Reverse(shared_prefix(missing, t)), *t))
        .filter(|(std::cmp::Reverse(n), _)| *n >= least_prefix)
        .collect();
    prefixed.sort();
    take(prefixed.into_iter().map(|(_, t)| t).collect(), &mut chosen);
    let most_edits = 2.max(missing.chars().count() / 3);
    let mut close: Vec<(usize, &str)> = candidates
        .iter()
        .map(|t| (edit_distance(missing, t), *t))
        .filter(|(d, _)| *d <= most_edits)
        .collect();
    close.sort();
    take(close.into_iter().map(|(_, t)| t).collect(), &mut chosen);
    chosen.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    #[rstest]
    #[case::same_line_both_sides("v1.2.4", &["v1.2.5", "latest", "v2.0.0", "v1.2.3", "v1.1.9"], &["v1.2.3", "v1.2.5", "v1.1.9"])]
    #[case::nearest_patch_first("1.25.3", &["1.25.0", "1.25.2", "1.24.9", "1.26.0"], &["1.25.2", "1.25.0", "1.24.9"])]
    #[case::prefix_then_edits("main-abc123", &["main-abc124", "release", "main-zzz"], &["main-abc124", "main-zzz"])]
    #[case::typo("stabel", &["stable", "edge", "latest"], &["stable"])]
    #[case::never_latest("lates", &["latest"], &[])]
    #[case::nothing_near("v9", &["alpha", "beta"], &[])]
    #[case::suffix_kept_apart("v1.2.4-alpine", &["v1.2.3-alpine", "v1.2.3"], &["v1.2.3-alpine"])]
    fn suggestions(#[case] missing: &str, #[case] existing: &[&str], #[case] expected: &[&str]) {
        assert_eq!(nearby_tags(missing, &tags(existing)), tags(expected));
    }

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("é1", "e1"), 1);
    }
}
