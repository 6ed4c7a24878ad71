use std::fs;

use super::url::parse_url;
use super::*;
use rstest::rstest;
use tempfile::TempDir;

/// A CA certificate made for the test.
fn ca_pem() -> String {
    let issued = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]);
    issued.expect("generate a certificate").cert.pem()
}

/// A fresh directory holding `(relative path, contents)` files.
fn tree(files: &[(&str, &str)]) -> TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    for (relative, text) in files {
        let path = root.path().join(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
    root
}

fn load(
    settings: &[(&str, RegistrySettings)],
    certs_d: Option<&TempDir>,
) -> Result<RegistryHosts, HostsError> {
    let settings = settings
        .iter()
        .map(|(k, s)| (k.parse().expect("registry host"), s.clone()))
        .collect();
    RegistryHosts::load(&settings, certs_d.map(TempDir::path))
}

/// One line per endpoint: URL, capabilities and flags.
fn summary(endpoints: &[Endpoint]) -> Vec<String> {
    let line = |e: &Endpoint| {
        let flags = [
            (e.can_resolve, " resolve"),
            (e.can_pull, " pull"),
            (e.is_mirror, " mirror"),
        ];
        let flags = flags.into_iter().chain([
            (e.skip_verify, " skip-verify"),
            (e.http_fallback, " http-fallback"),
        ]);
        let flags: String = flags.filter_map(|(on, name)| on.then_some(name)).collect();
        format!("{}{flags}", e.url())
    };
    endpoints.iter().map(line).collect()
}

const DOCKER_HOSTS: &str = r#"
server = "https://registry-1.docker.io"
[host."https://public-mirror.example.com"]
  capabilities = ["pull"]
[host."https://docker-mirror.internal"]
  capabilities = ["pull", "resolve"]
  [host."https://docker-mirror.internal".header]
    x-custom = "ignored"
"#;

#[rstest]
#[case::nothing_configured(&[], "registry.example.com", &["https://registry.example.com/v2 resolve pull"])]
#[case::docker_hub_default(&[], "docker.io", &["https://registry-1.docker.io/v2 resolve pull"])]
#[case::localhost_with_port(&[], "localhost:5000", &["https://localhost:5000/v2 resolve pull skip-verify http-fallback"])]
#[case::loopback_with_port(&[], "127.0.0.1:5000", &["https://127.0.0.1:5000/v2 resolve pull skip-verify http-fallback"])]
#[case::loopback_v6_with_port(&[], "[::1]:5000", &["https://[::1]:5000/v2 resolve pull skip-verify http-fallback"])]
#[case::localhost_port_80(&[], "localhost:80", &["http://localhost:80/v2 resolve pull skip-verify"])]
#[case::localhost_no_port(&[], "localhost", &["https://localhost/v2 resolve pull skip-verify"])]
#[case::localhost_port_443(&[], "localhost:443", &["https://localhost:443/v2 resolve pull skip-verify"])]
#[case::other_loopback(&[], "127.0.0.254:5000", &["https://127.0.0.254:5000/v2 resolve pull skip-verify http-fallback"])]
#[case::not_local(&[], "example.com:5000", &["https://example.com:5000/v2 resolve pull"])]
#[case::localhost_dir_without_server(
    &[("localhost:5000/hosts.toml", "[host.\"https://m.example.com\"]\n")],
    "localhost:5000",
    &["https://m.example.com/v2 resolve pull mirror", "https://localhost:5000/v2 resolve pull skip-verify http-fallback"],
)]
#[case::hosts_in_file_order_then_server(
    &[("docker.io/hosts.toml", DOCKER_HOSTS)],
    "docker.io",
    &["https://public-mirror.example.com/v2 pull mirror", "https://docker-mirror.internal/v2 resolve pull mirror",
      "https://registry-1.docker.io/v2 resolve pull"],
)]
#[case::default_dir_fallback(
    &[("_default/hosts.toml", "[host.\"https://m.example.com\"]\n")],
    "other.example.com",
    &["https://m.example.com/v2 resolve pull mirror", "https://other.example.com/v2 resolve pull"],
)]
#[case::own_dir_beats_default(
    &[("_default/hosts.toml", "server = \"https://all.example.com\"\n"),
      ("r.example.com/hosts.toml", "server = \"http://r.example.com:8080\"\n")],
    "r.example.com",
    &["http://r.example.com:8080/v2 resolve pull"],
)]
#[case::dir_with_port(
    &[("127.0.0.1:5000/hosts.toml", "server = \"http://127.0.0.1:5000\"\n")],
    "127.0.0.1:5000",
    &["http://127.0.0.1:5000/v2 resolve pull"],
)]
#[case::underscore_port_dir_first(
    &[("127.0.0.1:5000/hosts.toml", "server = \"http://127.0.0.1:5000\"\n"),
      ("127.0.0.1_5000_/hosts.toml", "server = \"https://127.0.0.1:5000\"\n")],
    "127.0.0.1:5000",
    &["https://127.0.0.1:5000/v2 resolve pull"],
)]
#[case::server_without_scheme_is_https(
    &[("r.example.com/hosts.toml", "server = \"r.example.com:5000\"\ncapabilities = [\"PULL\"]\n")],
    "r.example.com",
    &["https://r.example.com:5000/v2 pull"],
)]
#[case::top_level_skip_verify_is_the_upstreams(
    &[("r.example.com/hosts.toml", "skip_verify = true\ncapabilities = [\"pull\"]\n[host.\"http://m:5000\"]\n")],
    "r.example.com",
    &["http://m:5000/v2 resolve pull mirror", "https://r.example.com/v2 resolve pull skip-verify"],
)]
#[case::override_path_and_url_paths(
    &[("r/hosts.toml", "[host.\"https://a/v2/hub\"]\noverride_path = true\n[host.\"https://b/cache/\"]\n\
        [host.\"https://c/x/v2/\"]\nskip_verify = true\n")],
    "r",
    &["https://a/v2/hub resolve pull mirror", "https://b/cache/v2 resolve pull mirror",
      "https://c/x/v2 resolve pull mirror skip-verify", "https://r/v2 resolve pull"],
)]
#[case::dir_without_hosts_toml(&[("r/notes.txt", "")], "r", &["https://r/v2 resolve pull"])]
fn endpoints_from_certs_d(
    #[case] files: &[(&str, &str)],
    #[case] registry: &str,
    #[case] expected: &[&str],
) {
    let certs_d = tree(files);
    let hosts = load(&[], Some(&certs_d)).expect("load");
    assert_eq!(summary(&hosts.endpoints(registry)), expected);
}

#[rstest]
#[case::insecure(
    RegistrySettings { insecure: true, ..Default::default() },
    &["http://r.example.com:5000/v2 resolve pull"],
)]
#[case::mirrors_in_order(
    RegistrySettings { mirrors: vec!["https://m1.example.com".into(), "http://m2:5000/cache".into()], ..Default::default() },
    &["https://m1.example.com/v2 resolve pull mirror", "http://m2:5000/cache/v2 resolve pull mirror",
      "https://r.example.com:5000/v2 resolve pull"],
)]
#[case::skip_verify_on_all(
    RegistrySettings { skip_verify: true, mirrors: vec!["https://m".into()], ..Default::default() },
    &["https://m/v2 resolve pull mirror skip-verify", "https://r.example.com:5000/v2 resolve pull skip-verify"],
)]
fn endpoints_from_settings_win_over_certs_d(
    #[case] settings: RegistrySettings,
    #[case] expected: &[&str],
) {
    let certs_d = tree(&[(
        "r.example.com:5000/hosts.toml",
        "[host.\"https://ignored\"]\n",
    )]);
    let hosts = load(&[("r.example.com:5000", settings)], Some(&certs_d)).expect("load");
    assert_eq!(summary(&hosts.endpoints("r.example.com:5000")), expected);
}

#[test]
fn ca_files_are_read_once_and_kept() {
    let pem = ca_pem();
    let certs_d = tree(&[
        ("ca.pem", &pem),
        (
            "r/hosts.toml",
            "ca = \"r.crt\"\n[host.\"https://m\"]\nca = [\"m.pem\", \"../ca.pem\"]\n",
        ),
        ("r/r.crt", &pem),
        ("r/m.pem", &pem),
        ("d/d.crt", &pem),
    ]);
    let settings = RegistrySettings {
        ca: Some(certs_d.path().join("ca.pem")),
        ..Default::default()
    };
    let hosts = load(&[("s", settings)], Some(&certs_d)).expect("load");
    let dir = certs_d.path();
    let configured = &hosts.endpoints("s")[0];
    assert_eq!(
        (configured.ca_files.clone(), configured.ca_pems.clone()),
        (vec![dir.join("ca.pem")], vec![pem.clone().into_bytes()])
    );
    let [mirror, upstream] = &hosts.endpoints("r")[..] else {
        panic!("two endpoints")
    };
    assert_eq!(
        mirror.ca_files,
        [dir.join("r/m.pem"), dir.join("r/../ca.pem")]
    );
    assert_eq!(
        (upstream.ca_files.clone(), upstream.ca_pems.len()),
        (vec![dir.join("r/r.crt")], 1)
    );
    let docker_layout = &hosts.endpoints("d")[0];
    assert_eq!(docker_layout.ca_files, [dir.join("d/d.crt")]);
}

#[rstest]
#[case::garbage("this is not a certificate\n", "holds no PEM CERTIFICATE")]
#[case::broken_base64(
    "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    "is not valid PEM"
)]
#[case::not_a_certificate(
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "holds a certificate that cannot be a trust anchor"
)]
#[case::missing("", "cannot be read")]
fn bad_ca_is_rejected_naming_key_and_file(#[case] contents: &str, #[case] problem: &str) {
    let dir = tree(&[("ca.pem", contents)][..usize::from(!contents.is_empty())]);
    let ca = dir.path().join("ca.pem");
    let settings = RegistrySettings {
        ca: Some(ca.clone()),
        ..Default::default()
    };
    let error = load(&[("r.example.com", settings)], None).expect_err("bad CA");
    assert_eq!(
        error.to_string(),
        format!("registries.\"r.example.com\".ca: CA file {}", ca.display())
    );
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some(problem));
}

#[rstest]
#[case::not_toml("server = \n", "hosts.toml does not parse")]
#[case::wrong_type("skip_verify = \"yes\"\n", "hosts.toml does not parse")]
#[case::unknown_capability(
    "[host.\"https://m\"]\ncapabilities = [\"pull\", \"fetch\"]\n",
    "hosts.toml host.\"https://m\".capabilities: unknown capability \"fetch\""
)]
#[case::bad_host_url(
    "[host.\"ftp://m\"]\n",
    "hosts.toml host.\"ftp://m\": \"ftp://m\" is not a usable URL"
)]
#[case::bad_server_port(
    "server = \"https://r:http\"\n",
    "hosts.toml server: \"https://r:http\" is not a usable URL"
)]
#[case::garbage_ca(
    "[host.\"https://m\"]\nca = \"m.pem\"\n",
    "hosts.toml host.\"https://m\".ca: CA file"
)]
fn bad_hosts_toml_is_rejected_naming_file_and_key(#[case] text: &str, #[case] message: &str) {
    let certs_d = tree(&[("r/hosts.toml", text), ("r/m.pem", "junk")]);
    let error = load(&[], Some(&certs_d))
        .expect_err("bad hosts.toml")
        .to_string();
    let file = certs_d.path().join("r/hosts.toml");
    assert!(
        error.starts_with(&file.display().to_string()) && error.contains(message),
        "{error}"
    );
}

#[test]
fn bad_mirror_and_missing_hosts_dir_are_rejected() {
    let settings = RegistrySettings {
        mirrors: vec!["mirror.example.com".into()],
        ..Default::default()
    };
    let error = load(&[("r", settings)], None).expect_err("no scheme");
    assert_eq!(
        error.to_string(),
        "registries.\"r\".mirrors: \"mirror.example.com\" is not a usable URL"
    );
    let gone = tempfile::tempdir().expect("tempdir").path().join("gone");
    let error = RegistryHosts::load(&BTreeMap::new(), Some(&gone)).expect_err("missing dir");
    assert!(
        matches!(error, HostsError::Unreadable { ref path, .. } if *path == gone),
        "{error:?}"
    );
}

#[rstest]
#[case::plain("https://m.example.com", Ok((Scheme::Https, "m.example.com", None)))]
#[case::http_port_path("http://m:5000/a/./b/../c/", Ok((Scheme::Http, "m:5000", Some("/a/c/v2"))))]
#[case::ends_in_v2("https://m/v2", Ok((Scheme::Https, "m", None)))]
#[case::ipv6("https://[::1]:5000", Ok((Scheme::Https, "[::1]:5000", None)))]
#[case::no_scheme("m.example.com", Err(UrlProblem::Scheme))]
#[case::ftp("ftp://m", Err(UrlProblem::Scheme))]
#[case::no_host("https:///v2", Err(UrlProblem::NoHost))]
#[case::bad_port("https://m:99999", Err(UrlProblem::Port))]
#[case::user_info("https://u:p@m", Err(UrlProblem::Unsupported))]
#[case::query("https://m?ns=x", Err(UrlProblem::Unsupported))]
fn urls_parse_like_containerd(
    #[case] url: &str,
    #[case] expected: Result<(Scheme, &str, Option<&str>), UrlProblem>,
) {
    let parsed = parse_url(url, false).map(|e| (e.scheme, e.host, e.path_prefix));
    let expected = expected.map(|(s, h, p)| (s, h.to_owned(), p.map(str::to_owned)));
    assert_eq!(parsed, expected);
}

#[rstest]
#[case::standard(None, Ok(None))]
#[case::under_v2(Some("/v2/hub"), Ok(Some("hub")))]
#[case::not_under_v2(Some("/cache/v2"), Err("/cache/v2"))]
fn repository_prefix_for_v2_clients(
    #[case] root: Option<&str>,
    #[case] expected: Result<Option<&str>, &str>,
) {
    let endpoint = Endpoint {
        path_prefix: root.map(str::to_owned),
        ..Endpoint::new(Scheme::Https, "r", None)
    };
    assert_eq!(endpoint.repository_prefix(), expected);
}
