//! Table tests of image reference parsing and normalisation.

use super::*;
use rstest::rstest;

const SHA256: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

const TAG_128: &str = concat!(
    "t123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
);

fn hex(len: usize) -> String {
    "0123456789abcdef".chars().cycle().take(len).collect()
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::bare("nginx", "docker.io", "library/nginx", None, false, "docker.io/library/nginx:latest")]
#[case::bare_tag("nginx:1.25", "docker.io", "library/nginx", Some("1.25"), false, "docker.io/library/nginx:1.25")]
#[case::single_letter("a", "docker.io", "library/a", None, false, "docker.io/library/a:latest")]
#[case::library_written("library/nginx:1.25", "docker.io", "library/nginx", Some("1.25"), false, "docker.io/library/nginx:1.25")]
#[case::docker_io_gets_library("docker.io/nginx", "docker.io", "library/nginx", None, false, "docker.io/library/nginx:latest")]
#[case::docker_io_library("docker.io/library/nginx", "docker.io", "library/nginx", None, false, "docker.io/library/nginx:latest")]
#[case::index_docker_io("index.docker.io/nginx:1", "docker.io", "library/nginx", Some("1"), false, "docker.io/library/nginx:1")]
#[case::index_docker_io_user("index.docker.io/user/app", "docker.io", "user/app", None, false, "docker.io/user/app:latest")]
#[case::hub_user_repo("bitnami/redis:7.2", "docker.io", "bitnami/redis", Some("7.2"), false, "docker.io/bitnami/redis:7.2")]
#[case::hub_deep_path("a/b/c", "docker.io", "a/b/c", None, false, "docker.io/a/b/c:latest")]
#[case::hub_dotted_single_name("foo.bar", "docker.io", "library/foo.bar", None, false, "docker.io/library/foo.bar:latest")]
#[case::host("registry.example.com/app:v1", "registry.example.com", "app", Some("v1"), false, "registry.example.com/app:v1")]
#[case::host_port("registry.example.com:5000/team/app:v1", "registry.example.com:5000", "team/app", Some("v1"), false, "registry.example.com:5000/team/app:v1")]
#[case::host_port_no_tag("host:5000/app", "host:5000", "app", None, false, "host:5000/app:latest")]
#[case::host_with_dash("my-registry.local:443/app", "my-registry.local:443", "app", None, false, "my-registry.local:443/app:latest")]
#[case::localhost("localhost/app", "localhost", "app", None, false, "localhost/app:latest")]
#[case::localhost_port("localhost:5000/a", "localhost:5000", "a", None, false, "localhost:5000/a:latest")]
#[case::bare_localhost_port_is_a_tag("localhost:5000", "docker.io", "library/localhost", Some("5000"), false, "docker.io/library/localhost:5000")]
#[case::ipv4_port("10.0.0.1:5000/app:1.0", "10.0.0.1:5000", "app", Some("1.0"), false, "10.0.0.1:5000/app:1.0")]
#[case::ipv6_port("[::1]:5000/app", "[::1]:5000", "app", None, false, "[::1]:5000/app:latest")]
#[case::ipv6_no_port("[fe80::1]/app:v2", "[fe80::1]", "app", Some("v2"), false, "[fe80::1]/app:v2")]
#[case::deep_path("ghcr.io/org/team/sub/app:v1", "ghcr.io", "org/team/sub/app", Some("v1"), false, "ghcr.io/org/team/sub/app:v1")]
#[case::numeric_components("reg.io/123/456", "reg.io", "123/456", None, false, "reg.io/123/456:latest")]
#[case::double_underscore("reg.io/my__app", "reg.io", "my__app", None, false, "reg.io/my__app:latest")]
#[case::dash_run("reg.io/my---app", "reg.io", "my---app", None, false, "reg.io/my---app:latest")]
#[case::dot_and_underscore("reg.io/app.v2/x_y", "reg.io", "app.v2/x_y", None, false, "reg.io/app.v2/x_y:latest")]
#[case::tag_dots_dashes("nginx:1.25.3-alpine_v1", "docker.io", "library/nginx", Some("1.25.3-alpine_v1"), false, "docker.io/library/nginx:1.25.3-alpine_v1")]
#[case::tag_leading_underscore("nginx:_x", "docker.io", "library/nginx", Some("_x"), false, "docker.io/library/nginx:_x")]
#[case::tag_uppercase("nginx:V1.RC", "docker.io", "library/nginx", Some("V1.RC"), false, "docker.io/library/nginx:V1.RC")]
#[case::tag_128_chars(format!("nginx:{TAG_128}"), "docker.io", "library/nginx", Some(TAG_128), false, format!("docker.io/library/nginx:{TAG_128}"))]
#[case::digest_only(format!("reg.io/app@{SHA256}"), "reg.io", "app", None, true, format!("reg.io/app@{SHA256}"))]
#[case::hub_digest_only(format!("nginx@{SHA256}"), "docker.io", "library/nginx", None, true, format!("docker.io/library/nginx@{SHA256}"))]
#[case::tag_and_digest(format!("reg:5000/app:v1@{SHA256}"), "reg:5000", "app", Some("v1"), true, format!("reg:5000/app:v1@{SHA256}"))]
#[case::latest_and_digest(format!("nginx:latest@{SHA256}"), "docker.io", "library/nginx", Some("latest"), true, format!("docker.io/library/nginx:latest@{SHA256}"))]
#[case::sha384(format!("reg.io/app@sha384:{}", hex(96)), "reg.io", "app", None, true, format!("reg.io/app@sha384:{}", hex(96)))]
#[case::sha512(format!("reg.io/app@sha512:{}", hex(128)), "reg.io", "app", None, true, format!("reg.io/app@sha512:{}", hex(128)))]
#[case::uppercase_registry("Registry.Example.com/app", "Registry.Example.com", "app", None, false, "Registry.Example.com/app:latest")]
#[case::uppercase_single_label_is_registry("Foo/bar", "Foo", "bar", None, false, "Foo/bar:latest")]
#[case::path_of_255_beside_long_registry(format!("registry.example.com:5000/{}", "a".repeat(255)), "registry.example.com:5000", "a".repeat(255), None, false, format!("registry.example.com:5000/{}:latest", "a".repeat(255)))]
fn parses_valid_references(
    #[case] input: String,
    #[case] registry: &str,
    #[case] repository: String,
    #[case] tag: Option<&str>,
    #[case] has_digest: bool,
    #[case] display: String,
) {
    let image: ImageRef = input.parse().unwrap();
    assert_eq!(image.registry(), registry);
    assert_eq!(image.repository(), repository);
    assert_eq!(image.tag(), tag);
    assert_eq!(image.digest().is_some(), has_digest);
    assert_eq!(image.to_string(), display);
    assert_eq!(image.original(), input);
    assert_eq!(image.name(), format!("{registry}/{repository}"));
    // Normalisation is idempotent: the displayed form parses back to itself.
    assert_eq!(display.parse::<ImageRef>().unwrap().to_string(), display);
}

/// The variant name of an error, e.g. `InvalidTag`, read from its `Debug` form.
fn variant(error: &ImageRefError) -> String {
    format!("{error:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::empty("", "Empty")]
#[case::leading_space(" nginx", "SurroundingWhitespace")]
#[case::trailing_space("nginx ", "SurroundingWhitespace")]
#[case::trailing_newline("nginx:1\n", "SurroundingWhitespace")]
#[case::inner_space("ngi nx", "InvalidRepository")]
#[case::non_ascii("ñginx", "InvalidRepository")]
#[case::bare_hex_id(hex(64), "HexIdentifier")]
#[case::uppercase_repo("Nginx", "UppercaseRepository")]
#[case::uppercase_path_on_registry("reg.io/Team/app", "UppercaseRepository")]
#[case::uppercase_hub_repo("user/App:v1", "UppercaseRepository")]
#[case::double_slash("team//app", "InvalidRepository")]
#[case::double_slash_after_registry("reg.io//app", "InvalidRepository")]
#[case::trailing_slash("reg.io/app/", "InvalidRepository")]
#[case::registry_only("reg.io/", "InvalidRepository")]
#[case::no_name_before_tag(":v1", "InvalidRepository")]
#[case::no_name_before_digest(format!("@{SHA256}"), "InvalidRepository")]
#[case::two_at_signs(format!("a@b@{SHA256}"), "InvalidRepository")]
#[case::leading_dash_component("reg.io/-app", "InvalidRepository")]
#[case::trailing_dash_component("team/app-", "InvalidRepository")]
#[case::double_dot("a..b", "InvalidRepository")]
#[case::triple_underscore("a___b", "InvalidRepository")]
#[case::mixed_separator("a._b", "InvalidRepository")]
#[case::trailing_colon("nginx:", "InvalidTag")]
#[case::tag_129_chars(format!("nginx:{TAG_128}x"), "InvalidTag")]
#[case::tag_leading_dot("nginx:.x", "InvalidTag")]
#[case::tag_leading_dash("nginx:-x", "InvalidTag")]
#[case::tag_bad_char("nginx:v1+build", "InvalidTag")]
#[case::at_without_digest("nginx@", "InvalidDigest")]
#[case::digest_without_colon("nginx@sha256", "InvalidDigest")]
#[case::digest_without_hex("nginx@sha256:", "InvalidDigest")]
#[case::digest_too_short(format!("nginx@sha256:{}", hex(63)), "DigestLength")]
#[case::digest_too_long(format!("nginx@sha256:{}", hex(65)), "DigestLength")]
#[case::sha512_with_sha256_length(format!("nginx@sha512:{}", hex(64)), "DigestLength")]
#[case::digest_uppercase_hex(format!("nginx@sha256:{}", hex(64).to_uppercase()), "DigestEncoding")]
#[case::digest_non_hex(format!("nginx@sha256:{}", "g".repeat(64)), "DigestEncoding")]
#[case::md5_algorithm(format!("nginx@md5:{}", hex(32)), "UnsupportedDigestAlgorithm")]
#[case::uppercase_algorithm(format!("nginx@SHA256:{}", hex(64)), "UnsupportedDigestAlgorithm")]
#[case::port_not_numeric("reg.io:abc/app", "InvalidRegistry")]
#[case::port_empty("reg.io:/app", "InvalidRegistry")]
#[case::host_leading_dash("-reg.io/app", "InvalidRegistry")]
#[case::host_empty_label("reg..io/app", "InvalidRegistry")]
#[case::host_underscore("my_host.com/app", "InvalidRegistry")]
#[case::uppercase_host_underscore("My_Reg/app", "InvalidRegistry")]
#[case::ipv6_unclosed("[::1/app", "InvalidRegistry")]
#[case::ipv6_bad_char("[::g]/app", "InvalidRegistry")]
#[case::ipv6_without_brackets("::1/app", "InvalidRegistry")]
#[case::hub_name_too_long("a".repeat(248), "RepositoryTooLong")]
#[case::path_too_long(format!("reg.io/{}", "a".repeat(256)), "RepositoryTooLong")]
fn rejects_invalid_references(#[case] input: String, #[case] expected: &str) {
    let error = input.parse::<ImageRef>().unwrap_err();
    assert_eq!(variant(&error), expected, "{input:?} gave {error}");
    assert!(!error.to_string().contains('\n'), "message must be one line: {error}");
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::no_tag("nginx", Some("latest"), true)]
#[case::explicit_latest("nginx:latest", Some("latest"), true)]
#[case::other_tag("nginx:1.25", Some("1.25"), false)]
#[case::digest_only(format!("nginx@{SHA256}"), None, false)]
#[case::digest_pins_latest(format!("nginx:latest@{SHA256}"), Some("latest"), false)]
#[case::digest_with_tag(format!("nginx:1.25@{SHA256}"), Some("1.25"), false)]
fn effective_tag_and_latest(
    #[case] input: String,
    #[case] effective_tag: Option<&str>,
    #[case] is_latest: bool,
) {
    let image: ImageRef = input.parse().unwrap();
    assert_eq!(image.effective_tag(), effective_tag);
    assert_eq!(image.is_latest(), is_latest);
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::sha256(SHA256, "sha256", 64)]
#[case::sha384(&format!("sha384:{}", hex(96)), "sha384", 96)]
#[case::sha512(&format!("sha512:{}", hex(128)), "sha512", 128)]
fn digest_round_trips(#[case] input: &str, #[case] algorithm: &str, #[case] hex_len: usize) {
    let digest: Digest = input.parse().unwrap();
    assert_eq!(digest.algorithm(), algorithm);
    assert_eq!(digest.encoded().len(), hex_len);
    assert_eq!(digest.to_string(), input);
}

#[rustfmt::skip] // one case per line: the table reads as a table
#[rstest]
#[case::empty("", "image reference is empty")]
#[case::uppercase("Nginx", "repository name must be lowercase: \"Nginx\"")]
#[case::tag("nginx:-x", "invalid tag \"-x\": must start with a letter, digit or '_'")]
#[case::port("reg.io:abc/app", "invalid reference format: registry \"reg.io:abc\" has a port that is not a number")]
#[case::double_slash("a//b", "invalid reference format: repository \"a//b\" has an empty path component (\"//\" or a leading or trailing '/')")]
#[case::algorithm("nginx@md5:0123", "invalid digest: unsupported algorithm \"md5\" (use sha256, sha384 or sha512)")]
#[case::length("nginx@sha256:abc", "invalid digest: sha256 needs 64 hex characters, got 3")]
#[case::too_long(&format!("reg.io/{}", "a".repeat(256)), "repository name is longer than 255 characters (256)")]
fn error_messages_are_readable(#[case] input: &str, #[case] message: &str) {
    assert_eq!(input.parse::<ImageRef>().unwrap_err().to_string(), message);
}
