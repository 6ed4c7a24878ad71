//! kubelet's own keyring tables (`pkg/credentialprovider/keyring_test.go`), ported case for case. Every
//! secret value there is `{"auth": base64("foo:bar")}`; here each entry's item is its key.

use rstest::rstest;

use super::*;

/// The items of `keys` (each added under its indexed form) that kubelet's `Lookup(target)` returns.
fn lookup<'a>(keys: &[&'a str], target: &str) -> Vec<&'a str> {
    let indexed: Vec<(String, &str)> = keys
        .iter()
        .filter_map(|key| Some((index_key(key)?, *key)))
        .collect();
    keyring_lookup(indexed.iter().map(|(k, v)| (k.as_str(), *v)), target, true)
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case("*.kubernetes.io", "prefix.kubernetes.io", true)]
#[case("prefix.*.io", "prefix.kubernetes.io", true)]
#[case("prefix.kubernetes.*", "prefix.kubernetes.io", true)]
#[case("*-good.kubernetes.io", "prefix-good.kubernetes.io", true)]
#[case("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true)]
#[case("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true)]
#[case("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", true)]
#[case("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", true)]
#[case("*.kubernetes.io", "kubernetes.io", false)]
#[case("*.*.kubernetes.io", "prefix.kubernetes.io", false)]
#[case("*.*.kubernetes.io", "kubernetes.io", false)]
#[case("*kubernetes.io", "a.kubernetes.io", false)]
#[case("*kubernetes.io", "kubernetes.io", true)]
#[case("*.*.*.kubernetes.io", "a.b.c.kubernetes.io", true)]
#[case("kubernetes.io", "kubernetes.com", false)]
#[case("k*.io", "quay.io", false)]
#[case("*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", false)]
#[case("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", false)]
fn test_urls_match(#[case] glob: &str, #[case] target: &str, #[case] matches: bool) {
    assert_eq!(urls_match(glob, target), matches, "{glob} vs {target}");
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case("https://hello.kubernetes.io", "hello.kubernetes.io")]
#[case("https://*.docker.io", "prefix.docker.io")]
#[case("https://prefix.*.io", "prefix.docker.io")]
#[case("https://prefix.docker.*", "prefix.docker.io")]
#[case("https://*.docker.io/path", "prefix.docker.io/path")]
#[case("https://prefix.*.io/path", "prefix.docker.io/path/subpath")]
#[case("https://prefix.docker.*/path", "prefix.docker.io/path")]
#[case("https://*.docker.io:8888", "prefix.docker.io:8888")]
#[case("https://prefix.*.io:8888", "prefix.docker.io:8888")]
#[case("https://prefix.docker.*:8888", "prefix.docker.io:8888")]
#[case("https://*.docker.io/path:1111", "prefix.docker.io/path:1111")]
#[case("https://*.docker.io/v1/", "prefix.docker.io/path:1111")]
#[case("https://*.docker.io/v2/", "prefix.docker.io/path:1111")]
#[case("https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111")]
#[case("prefix.docker.io:1111", "prefix.docker.io:1111/path")]
#[case("*.docker.io:1111", "prefix.docker.io:1111/path")]
fn test_docker_keyring_for_glob(#[case] key: &str, #[case] target: &str) {
    assert_eq!(lookup(&[key], &format!("{target}/foo/bar")), vec![key]);
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case("https://hello.kubernetes.io", "world.mesos.org/foo/bar")]
#[case("https://*.docker.com", "prefix.docker.io")]
#[case("https://suffix.*.io", "prefix.docker.io")]
#[case("https://prefix.docker.c*", "prefix.docker.io")]
#[case("https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111")]
#[case("suffix.*.io", "prefix.docker.io")]
fn test_keyring_miss(#[case] key: &str, #[case] target: &str) {
    assert!(lookup(&[key], &format!("{target}/foo/bar")).is_empty());
}

const HUB_KEY: &str = "https://index.docker.io/v1/";

#[test]
fn test_keyring_miss_with_docker_hub_credentials() {
    assert!(lookup(&[HUB_KEY], "world.mesos.org/foo/bar").is_empty());
}

#[test]
fn test_keyring_hit_with_unqualified_docker_hub() {
    assert_eq!(lookup(&[HUB_KEY], "google/docker-registry"), vec![HUB_KEY]);
}

#[test]
fn test_keyring_hit_with_unqualified_library_docker_hub() {
    assert_eq!(lookup(&[HUB_KEY], "jenkins"), vec![HUB_KEY]);
}

#[test]
fn test_keyring_hit_with_qualified_docker_hub() {
    let found = lookup(&[HUB_KEY], "index.docker.io/v1//google/docker-registry");
    assert!(!found.is_empty() && found.len() <= 2, "{found:?}");
    assert_eq!(found[0], HUB_KEY);
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case("foo/bar", true)]
#[case("docker.io/foo/bar", true)]
#[case("index.docker.io/foo/bar", true)]
#[case("foo", true)]
#[case("", false)]
#[case("registry.tld/foo/bar", false)]
#[case("registry:5000/foo/bar", false)]
#[case("myhostdocker.io/foo/bar", false)]
fn test_is_default_registry_match(#[case] image: &str, #[case] matches: bool) {
    assert_eq!(is_default_registry_match(image), matches, "{image}");
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case("bar.example.com", &["bar.example.com"])]
#[case("bar.example.com/pong", &["bar.example.com/pong", "bar.example.com"])]
#[case("bar.example.com/ping", &["bar.example.com"])]
#[case("bar.example.com/pongz", &["bar.example.com/pong", "bar.example.com"])]
#[case("bar.example.com/pong/pang", &["bar.example.com/pong", "bar.example.com"])]
#[case("example.com", &[])]
#[case("foo.example.com", &[])]
fn test_docker_keyring_lookup(#[case] image: &str, #[case] expected: &[&str]) {
    // grace/squash under `bar.example.com/pong`, ada/smash under `bar.example.com`.
    assert_eq!(lookup(&["bar.example.com/pong", "bar.example.com"], image), expected);
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case("quay.io")]
#[case("quay.io/foo")]
#[case("quay.io/foo/bar")]
fn test_issue_3797(#[case] image: &str) {
    assert_eq!(lookup(&["https://quay.io/v1/"], image), vec!["https://quay.io/v1/"]);
}

/// Where pullgate parts from kubelet on purpose: kubelet also hands Docker Hub credentials to a registry
/// whose host has no `.` or `:` (`localhost/app`); pullgate sends them only to Docker Hub.
#[test]
fn docker_hub_credentials_stay_on_docker_hub() {
    let indexed = [("index.docker.io", HUB_KEY)];
    assert_eq!(
        keyring_lookup(indexed, "localhost/app", true),
        vec![HUB_KEY],
        "kubelet's rule"
    );
    assert!(
        keyring_lookup(indexed, "localhost/app", false).is_empty(),
        "pullgate's call"
    );
}
