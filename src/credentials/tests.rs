use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use rstest::rstest;
use serde_json::{Map, Value, json};

use super::keyring::glob_match;
use super::*;

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// A `.dockerconfigjson` with one `username`/`password` entry per `(key, username, password)`.
fn config(entries: &[(&str, &str, &str)]) -> DockerConfig {
    let auths: Map<String, Value> = entries
        .iter()
        .map(|(key, user, pass)| (key.to_string(), json!({"username": user, "password": pass})))
        .collect();
    let bytes = serde_json::to_vec(&json!({ "auths": auths })).unwrap();
    DockerConfig::from_dockerconfigjson(&bytes).unwrap()
}

fn usernames(config: &DockerConfig, image: &str) -> Vec<String> {
    let image: ImageRef = image.parse().unwrap();
    config
        .matching(&image)
        .into_iter()
        .map(|(user, _)| user)
        .collect()
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::bare_host("reg.io", "reg.io/app", true)]
#[case::https_scheme("https://reg.io", "reg.io/app", true)]
#[case::http_scheme("http://reg.io", "reg.io/team/app:v1", true)]
#[case::trailing_slash("https://reg.io/", "reg.io/app", true)]
#[case::hub_v1_url_official_image("https://index.docker.io/v1/", "nginx", true)]
#[case::hub_v1_url_user_image("https://index.docker.io/v1/", "user/app:1", true)]
#[case::hub_v1_url_explicit_docker_io("https://index.docker.io/v1/", "docker.io/library/nginx", true)]
#[case::hub_index_host("index.docker.io", "library/nginx", true)]
#[case::hub_docker_io("docker.io", "nginx", true)]
#[case::hub_docker_io_scheme("https://docker.io", "index.docker.io/user/app", true)]
#[case::hub_key_not_for_quay("https://index.docker.io/v1/", "quay.io/app", false)]
#[case::hub_key_not_for_port_registry("docker.io", "localhost:5000/app", false)]
#[case::hub_key_never_for_localhost("https://index.docker.io/v1/", "localhost/app", false)]
#[case::glob_one_label("*.example.com", "reg.example.com/app", true)]
#[case::glob_not_two_labels("*.example.com", "a.b.example.com/app", false)]
#[case::glob_not_apex("*.example.com", "example.com/app", false)]
#[case::glob_partial_label("reg-*.example.com", "reg-eu.example.com/app", true)]
#[case::question_mark_starts_a_url_query("reg?.io", "reg1.io/app", false)]
#[case::glob_class("reg[0-9].io", "reg7.io/app", true)]
#[case::glob_negated_class("reg[^0-9].io", "reg7.io/app", false)]
#[case::glob_bad_pattern("reg[.io", "rega.io/app", false)]
#[case::port_equal("127.0.0.1:5000", "127.0.0.1:5000/team/app", true)]
#[case::port_missing_in_key("reg.io", "reg.io:5000/app", false)]
#[case::port_missing_in_image("reg.io:5000", "reg.io/app", false)]
#[case::port_differs("reg.io:5000", "reg.io:5001/app", false)]
#[case::port_not_numeric_ignored("reg.io:abc", "reg.io/app", false)]
#[case::ipv6_with_port("[::1]:5000", "[::1]:5000/app", true)]
#[case::path_prefix("reg.io/team", "reg.io/team/app", true)]
#[case::path_other_team("reg.io/team", "reg.io/other/app", false)]
#[case::path_is_string_prefix("reg.io/te", "reg.io/team/app", true)]
#[case::path_longer_than_image("reg.io/team/app/x", "reg.io/team/app", false)]
#[case::v2_path_dropped("https://reg.io/v2/", "reg.io/app", true)]
#[case::v1_path_kept_after_prefix("https://reg.io/v1/team", "reg.io/team/app", true)]
#[case::v1_path_kept_other_team("https://reg.io/v1/team", "reg.io/other/app", false)]
#[case::other_host("reg.io", "other.io/app", false)]
#[case::subdomain_is_not_host("reg.io", "eu.reg.io/app", false)]
#[case::case_sensitive_like_go("REG.io", "reg.io/app", false)]
fn keys_match_like_kubelet(#[case] key: &str, #[case] image: &str, #[case] matches: bool) {
    let config = config(&[(key, "user", "pass")]);
    let found = usernames(&config, image);
    assert_eq!(!found.is_empty(), matches, "key {key:?} for image {image:?}");
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::literal("reg", "reg", true)]
#[case::literal_differs("reg", "reh", false)]
#[case::star_any("*", "anything", true)]
#[case::star_empty("*", "", true)]
#[case::star_inside("a*z", "abcz", true)]
#[case::star_inside_no("a*z", "abcy", false)]
#[case::question("re?", "reg", true)]
#[case::question_needs_a_char("reg?", "reg", false)]
#[case::class_range("r[a-f]g", "reg", true)]
#[case::class_range_no("r[a-d]g", "reg", false)]
#[case::class_negated("r[^a-d]g", "reg", true)]
#[case::escaped_star("re\\*", "re*", true)]
#[case::escaped_star_is_literal("re\\*", "reg", false)]
#[case::unclosed_class("r[a", "ra", false)]
#[case::empty_class("r[]a", "ra", false)]
fn globs_match_like_go_filepath_match(#[case] pattern: &str, #[case] text: &str, #[case] matches: bool) {
    assert_eq!(glob_match(pattern, text), matches, "{pattern:?} vs {text:?}");
}

#[test]
fn most_specific_key_first() {
    let config = config(&[
        ("*.io", "glob", "p"),
        ("https://reg.io", "host", "p"),
        ("reg.io/team", "team", "p"),
        ("reg.io/team/app", "app", "p"),
        ("other.io", "other", "p"),
    ]);
    assert_eq!(
        usernames(&config, "reg.io/team/app:v1"),
        ["app", "team", "host", "glob"]
    );
}

#[test]
fn hub_index_key_is_only_a_fallback() {
    let config = config(&[
        ("https://index.docker.io/v1/", "index", "p"),
        ("docker.io", "hub", "p"),
    ]);
    assert_eq!(usernames(&config, "nginx"), ["hub"]);
    let index_only = config_with_index_only();
    assert_eq!(usernames(&index_only, "nginx"), ["index"]);
}

fn config_with_index_only() -> DockerConfig {
    config(&[("https://index.docker.io/v1/", "index", "p")])
}

/// `(key, username, password)` of every entry, or the problem's variant name.
fn parsed(
    result: Result<DockerConfig, SecretProblemKind>,
) -> Result<Vec<(String, String, String)>, String> {
    result
        .map(|config| {
            config
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.username.clone(), e.password.clone()))
                .collect()
        })
        .map_err(|kind| {
            format!("{kind:?}")
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect()
        })
}

fn entry(key: &str, user: &str, pass: &str) -> Result<Vec<(String, String, String)>, String> {
    Ok(vec![(key.into(), user.into(), pass.into())])
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::auth_field(json!({"auths": {"reg.io": {"auth": b64("alice:s3cret")}}}), entry("reg.io", "alice", "s3cret"))]
#[case::auth_splits_at_first_colon(json!({"auths": {"reg.io": {"auth": b64("alice:a:b")}}}), entry("reg.io", "alice", "a:b"))]
#[case::auth_unpadded(json!({"auths": {"reg.io": {"auth": "YWI6Y2Q"}}}), entry("reg.io", "ab", "cd"))]
#[case::username_password(json!({"auths": {"reg.io": {"username": "bob", "password": "pw"}}}), entry("reg.io", "bob", "pw"))]
#[case::auth_wins(json!({"auths": {"reg.io": {"auth": b64("alice:a"), "username": "bob", "password": "b"}}}), entry("reg.io", "alice", "a"))]
#[case::neither_is_skipped(json!({"auths": {"reg.io": {"email": "x@example.com"}, "b.io": {"identitytoken": "t"}}}), Ok(vec![]))]
#[case::empty_auths(json!({"auths": {}}), Ok(vec![]))]
#[case::null_fields_are_empty(json!({"auths": {"reg.io": {"auth": null, "username": "u", "password": null}}}), entry("reg.io", "u", ""))]
#[case::bad_base64(json!({"auths": {"reg.io": {"auth": "!!!="}}}), Err("MalformedBase64".into()))]
#[case::auth_without_colon(json!({"auths": {"reg.io": {"auth": b64("nocolon")}}}), Err("MalformedBase64".into()))]
#[case::no_auths(json!({"reg.io": {"auth": b64("a:b")}}), Err("WrongLayout".into()))]
#[case::auths_not_object(json!({"auths": []}), Err("MalformedJson".into()))]
#[case::entry_not_object(json!({"auths": {"reg.io": "a:b"}}), Err("MalformedJson".into()))]
#[case::auth_not_string(json!({"auths": {"reg.io": {"auth": 5}}}), Err("MalformedJson".into()))]
#[case::not_an_object(json!(["reg.io"]), Err("MalformedJson".into()))]
fn parses_dockerconfigjson(#[case] document: Value, #[case] expected: Result<Vec<(String, String, String)>, String>) {
    let bytes = serde_json::to_vec(&document).unwrap();
    assert_eq!(parsed(DockerConfig::from_dockerconfigjson(&bytes)), expected);
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::legacy_auth(json!({"https://reg.io": {"auth": b64("carol:pw"), "email": "c@example.com"}}), entry("https://reg.io", "carol", "pw"))]
#[case::legacy_username(json!({"reg.io": {"username": "dan", "password": "pw"}}), entry("reg.io", "dan", "pw"))]
#[case::config_json_layout_in_dockercfg(json!({"auths": {"reg.io": {"auth": b64("a:b")}}}), Err("WrongLayout".into()))]
#[case::legacy_bad_base64(json!({"reg.io": {"auth": "%%%"}}), Err("MalformedBase64".into()))]
fn parses_dockercfg(#[case] document: Value, #[case] expected: Result<Vec<(String, String, String)>, String>) {
    let bytes = serde_json::to_vec(&document).unwrap();
    assert_eq!(parsed(DockerConfig::from_dockercfg(&bytes)), expected);
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::truncated_json(br#"{"auths": {"reg.io": {"auth": "hunter2"#.as_slice())]
#[case::bad_base64(br#"{"auths": {"reg.io": {"auth": "hunter2!!"}}}"#.as_slice())]
#[case::no_colon(br#"{"auths": {"reg.io": {"auth": "aHVudGVyMg=="}}}"#.as_slice())]
#[case::wrong_type(br#"{"auths": {"reg.io": {"password": ["hunter2"]}}}"#.as_slice())]
fn parse_errors_never_quote_values(#[case] bytes: &[u8]) {
    let kind = DockerConfig::from_dockerconfigjson(bytes).unwrap_err();
    let problem = SecretProblem { secret: "regcred".into(), service_account: None, namespace: "demo".into(), kind };
    let message = problem.to_string();
    assert!(!message.contains("hunter2") && !message.contains("aHVudGVyMg"), "{message}");
    assert!(message.starts_with("secret \"regcred\" .dockerconfigjson "), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

fn secret(type_: Option<&str>, data: &[(&str, &[u8])]) -> Secret {
    Secret {
        type_: type_.map(str::to_owned),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::dockerconfigjson(secret(Some("kubernetes.io/dockerconfigjson"), &[(".dockerconfigjson", br#"{"auths":{"r.io":{"username":"u","password":"p"}}}"#)]), Ok(1))]
#[case::dockercfg(secret(Some("kubernetes.io/dockercfg"), &[(".dockercfg", br#"{"r.io":{"username":"u","password":"p"}}"#)]), Ok(1))]
#[case::opaque(secret(Some("Opaque"), &[(".dockerconfigjson", b"{}")]), Err(SecretProblemKind::WrongType { found: "Opaque".into() }))]
#[case::untyped_is_opaque(secret(None, &[]), Err(SecretProblemKind::WrongType { found: "Opaque".into() }))]
#[case::key_of_other_type(secret(Some("kubernetes.io/dockerconfigjson"), &[(".dockercfg", b"{}")]), Err(SecretProblemKind::MissingKey { key: ".dockerconfigjson" }))]
#[case::empty_data(secret(Some("kubernetes.io/dockercfg"), &[(".dockercfg", b"")]), Err(SecretProblemKind::MissingKey { key: ".dockercfg" }))]
fn reads_pull_secrets_like_kubelet(#[case] secret: Secret, #[case] expected: Result<usize, SecretProblemKind>) {
    assert_eq!(docker_config(&secret).map(|c| c.entries.len()), expected);
}

fn problem(secret: &str, service_account: Option<&str>, kind: SecretProblemKind) -> SecretProblem {
    SecretProblem {
        secret: secret.into(),
        service_account: service_account.map(Into::into),
        namespace: "demo".into(),
        kind,
    }
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::not_found(problem("regcred", None, SecretProblemKind::NotFound), r#"secret "regcred" not found in namespace demo"#)]
#[case::wrong_type(problem("regcred", None, SecretProblemKind::WrongType { found: "Opaque".into() }), r#"secret "regcred" has type Opaque, not kubernetes.io/dockerconfigjson"#)]
#[case::missing_key(problem("regcred", None, SecretProblemKind::MissingKey { key: ".dockerconfigjson" }), r#"secret "regcred" has no .dockerconfigjson data"#)]
#[case::malformed(problem("regcred", None, SecretProblemKind::MalformedJson { reason: ".dockerconfigjson is not valid JSON: EOF while parsing".into() }), r#"secret "regcred" .dockerconfigjson is not valid JSON: EOF while parsing"#)]
#[case::no_entry(problem("regcred", None, SecretProblemKind::NoEntryForRegistry { registry: "127.0.0.1:5000".into() }), r#"secret "regcred" has no entry for 127.0.0.1:5000"#)]
#[case::of_service_account(problem("regcred", Some("builder"), SecretProblemKind::NotFound), r#"secret "regcred" of ServiceAccount "builder" not found in namespace demo"#)]
#[case::service_account_missing(problem("", Some("builder"), SecretProblemKind::NotFound), r#"ServiceAccount "builder" not found in namespace demo"#)]
#[case::no_api(problem("regcred", None, SecretProblemKind::ApiUnavailable { reason: NO_API.into() }), r#"secret "regcred" in namespace demo could not be read: no Kubernetes API is available to read it"#)]
fn problems_read_as_one_line(#[case] problem: SecretProblem, #[case] message: &str) {
    assert_eq!(problem.to_string(), message);
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::pod(CredentialOrigin::PodSecret { secret: "regcred".into() }, r#"secret "regcred""#)]
#[case::service_account(CredentialOrigin::ServiceAccountSecret { service_account: "builder".into(), secret: "regcred".into() }, r#"secret "regcred" of ServiceAccount "builder""#)]
#[case::node(CredentialOrigin::Node { file: "/var/lib/kubelet/config.json".into() }, "node credentials (/var/lib/kubelet/config.json)")]
fn origins_display(#[case] origin: CredentialOrigin, #[case] text: &str) {
    assert_eq!(origin.to_string(), text);
}

#[test]
fn credential_debug_and_display_redact_the_password() {
    let credential = Credential::new(
        "alice",
        "hunter2",
        CredentialOrigin::PodSecret {
            secret: "regcred".into(),
        },
    );
    for text in [
        format!("{credential:?}"),
        format!("{credential:#?}"),
        credential.to_string(),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("alice"), "{text}");
    }
    assert_eq!(credential.password(), "hunter2");
}

/// A hand-written [`CredentialSource`] over fixed objects.
struct Fixed {
    secrets: Vec<Secret>,
}

impl CredentialSource for Fixed {
    fn secret<'a>(
        &'a self,
        _: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, ApiError>> {
        let found = self
            .secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn service_account<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, ApiError>> {
        Box::pin(async { Ok(None) })
    }
}

#[tokio::test]
async fn pod_credentials_debug_redacts_every_password() {
    let document = json!({"auths": {"reg.io": {"auth": b64("alice:hunter2")}}});
    let mut regcred = secret(
        Some("kubernetes.io/dockerconfigjson"),
        &[(".dockerconfigjson", &serde_json::to_vec(&document).unwrap())],
    );
    regcred.metadata.name = Some("regcred".into());
    let source = Fixed {
        secrets: vec![regcred],
    };
    let spec = PodSpec {
        image_pull_secrets: Some(vec![LocalObjectReference {
            name: "regcred".into(),
        }]),
        ..PodSpec::default()
    };
    let node = Arc::new(config(&[("reg.io", "node-user", "node-hunter3")]));
    let gathered = PodCredentials::gather(Some(&source), "demo", &spec, Some(node.clone())).await;
    let for_image = gathered.for_image(&"reg.io/app:v1".parse().unwrap());
    assert_eq!(for_image.candidates.len(), 2, "{for_image:?}");
    assert_eq!(for_image.candidates[0].password(), "hunter2");
    for text in [
        format!("{gathered:?}"),
        format!("{gathered:#?}"),
        format!("{for_image:?}"),
        format!("{node:?}"),
    ] {
        assert!(!text.contains("hunter"), "{text}");
        assert!(!text.contains(&b64("alice:hunter2")), "{text}");
    }
}

#[test]
fn fingerprint_tells_credentials_apart_without_revealing_them() {
    let origin = CredentialOrigin::PodSecret { secret: "s".into() };
    let fingerprint =
        |user: &str, pass: &str| Credential::new(user, pass, origin.clone()).fingerprint();
    let first = fingerprint("alice", "one");
    assert_eq!(first.len(), 16);
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(first, fingerprint("alice", "one"));
    assert_ne!(first, fingerprint("alice", "two"));
    assert_ne!(fingerprint("a:b", "c"), fingerprint("a", "b:c"));
    assert_eq!(first, Credential::fingerprint_of("alice", "one"));
}
