//! The local docker config (`--docker-config`, `DOCKER_CONFIG`, `~/.docker/config.json`), which stands in
//! for the nodes' credentials in `pullgate check`, with its `credHelpers` and `credsStore` asked as docker
//! asks them (`docker-credential-NAME get`, the server on stdin, JSON out).
//!
//! No secret is ever logged, formatted or put in an error: helper failures name the helper, the server
//! and the exit status; config errors describe shapes and positions.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use super::DockerConfig;
use crate::facts::SecretProblemKind;

/// Which local docker config to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalDockerConfig {
    /// None.
    Off,
    /// This file; an error when it cannot be read (`--docker-config FILE`).
    File(PathBuf),
    /// This file when it exists (`DOCKER_CONFIG/config.json`, `~/.docker/config.json`).
    IfPresent(PathBuf),
}

/// How long one `docker-credential-*` call may take.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(15);
/// Server address docker uses for Docker Hub credentials.
const HUB_SERVER: &str = "https://index.docker.io/v1/";
/// What helpers print when they hold nothing for a server.
const NOT_FOUND: &str = "credentials not found in native keychain";
/// The username helpers return for an identity token (a refresh token, not a password).
const TOKEN_USERNAME: &str = "<token>";

/// Why the local docker config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalConfigError {
    /// The file could not be read.
    #[error("docker config {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a docker config (the reason describes the shape, never a value).
    #[error("docker config {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The local docker config, turned into node-style credentials for the registries that will be asked.
#[derive(Debug, Default)]
pub struct LocalCredentials {
    pub config: Option<DockerConfig>,
    /// One line per helper that failed (never a secret).
    pub notices: Vec<String>,
}

/// Read the local docker config and ask its credential helpers about `registries` (registry hosts as in
/// image references, `docker.io` for Docker Hub). Helpers are looked up in `helper_path` (a `PATH`).
pub async fn local_credentials(
    source: &LocalDockerConfig,
    helper_path: Option<&OsStr>,
    registries: &BTreeSet<String>,
) -> Result<LocalCredentials, LocalConfigError> {
    let path = match source {
        LocalDockerConfig::Off => return Ok(LocalCredentials::default()),
        LocalDockerConfig::IfPresent(path) if !path.exists() => {
            return Ok(LocalCredentials::default());
        }
        LocalDockerConfig::File(path) | LocalDockerConfig::IfPresent(path) => path,
    };
    let bytes = std::fs::read(path).map_err(|source| LocalConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let invalid = |reason: String| LocalConfigError::Invalid {
        path: path.clone(),
        reason,
    };
    let file = ConfigFile::parse(&bytes).map_err(invalid)?;
    let mut config = file
        .static_entries()
        .map_err(|kind| invalid(kind.reason()))?;
    config = config.with_path(path);
    let asks: Vec<(String, String)> = registries
        .iter()
        .map(|registry| server_address(registry))
        .filter_map(|server| Some((file.helper_for(&server)?.to_owned(), server)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let answers = join_all(
        asks.iter()
            .map(|(helper, server)| run_helper(helper, server, helper_path)),
    )
    .await;
    let mut notices = Vec::new();
    for ((helper, server), answer) in asks.iter().zip(answers) {
        match answer {
            Ok(Some((username, secret))) => config.push(server, username, secret),
            Ok(None) => {}
            Err(reason) => notices.push(format!(
                "docker-credential-{helper} get for {server}: {reason}; continuing without its credentials"
            )),
        }
    }
    Ok(LocalCredentials {
        config: Some(config),
        notices,
    })
}

/// The server address docker hands helpers for a registry.
fn server_address(registry: &str) -> String {
    if registry == "docker.io" {
        HUB_SERVER.to_owned()
    } else {
        registry.to_owned()
    }
}

/// docker's `ConvertToHostname`: no scheme, nothing after the first `/`.
fn hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// The parts of a docker `config.json` that give credentials.
#[derive(Debug, Default)]
struct ConfigFile {
    auths: Map<String, Value>,
    cred_helpers: BTreeMap<String, String>,
    creds_store: Option<String>,
}

impl ConfigFile {
    fn parse(bytes: &[u8]) -> Result<Self, String> {
        // serde_json's syntax errors give positions, never the input.
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("is not valid JSON: {e}"))?;
        let Value::Object(mut object) = value else {
            return Err("is not a JSON object".into());
        };
        let auths = match object.remove("auths") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(auths)) => auths,
            Some(_) => return Err("has an \"auths\" that is not an object".into()),
        };
        let cred_helpers = match object.remove("credHelpers") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(helpers)) => helpers
                .into_iter()
                .map(|(server, helper)| match helper {
                    Value::String(helper) => Ok((server, helper)),
                    _ => Err(format!("credHelpers entry {server:?} is not a string")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("has a \"credHelpers\" that is not an object".into()),
        };
        let creds_store = match object.remove("credsStore") {
            None | Some(Value::Null) => None,
            Some(Value::String(store)) if store.is_empty() => None,
            Some(Value::String(store)) => Some(store),
            Some(_) => return Err("has a \"credsStore\" that is not a string".into()),
        };
        Ok(Self {
            auths,
            cred_helpers,
            creds_store,
        })
    }

    /// The helper docker would run for a server address: its `credHelpers` entry, else `credsStore`.
    fn helper_for(&self, server: &str) -> Option<&str> {
        self.cred_helpers
            .get(server)
            .or(self.creds_store.as_ref())
            .map(String::as_str)
    }

    /// The `auths` entries docker would use: none when `credsStore` is set (every lookup goes to the
    /// store), else those whose host has no `credHelpers` entry.
    fn static_entries(&self) -> Result<DockerConfig, SecretProblemKind> {
        let helped: BTreeSet<&str> = self.cred_helpers.keys().map(|k| hostname(k)).collect();
        let kept: Map<String, Value> = match self.creds_store {
            Some(_) => Map::new(),
            None => self
                .auths
                .iter()
                .filter(|(key, _)| !helped.contains(hostname(key)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        DockerConfig::from_auths(&kept, None)
    }
}

/// A helper name is a suffix of a program name: no path separators or odd characters.
fn valid_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

/// `docker-credential-NAME` in the directories of `path`.
fn find_helper(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let program = format!("docker-credential-{name}");
    std::env::split_paths(path?)
        .map(|dir| dir.join(&program))
        .find(|candidate| is_executable(candidate))
}

/// A regular file with an execute bit (credential helpers, credential provider plugins).
#[cfg(unix)]
pub(super) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
pub(super) fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Run `docker-credential-NAME get` with the server on stdin: `Ok(Some((username, secret)))`,
/// `Ok(None)` when it holds nothing for the server (or only an identity token), `Err` with a reason
/// that never includes the helper's output on success.
async fn run_helper(
    name: &str,
    server: &str,
    path: Option<&OsStr>,
) -> Result<Option<(String, String)>, String> {
    if !valid_helper_name(name) {
        return Err(format!("{name:?} is not a valid credential helper name"));
    }
    let program = find_helper(name, path).ok_or_else(|| "not found in PATH".to_owned())?;
    let mut command = tokio::process::Command::new(&program);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let exchange = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading stdin is judged by its answer, not by this write.
            let _ = stdin.write_all(server.as_bytes()).await;
            let _ = stdin.shutdown().await;
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(HELPER_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {} s", HELPER_TIMEOUT.as_secs()))?
        .map_err(|e| format!("failed: {e}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout);
        let said = said.trim();
        if said == NOT_FOUND {
            return Ok(None);
        }
        // On failure the protocol's stdout is an error message, not a credential.
        let said: String = said
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Err(format!("failed ({}): {said}", output.status));
    }
    let answer: Value = serde_json::from_slice(&output.stdout)
        .map_err(|_| "answered something that is not the helper protocol's JSON".to_owned())?;
    let field = |key: &str| answer.get(key).and_then(Value::as_str).map(str::to_owned);
    match (field("Username"), field("Secret")) {
        (Some(username), Some(_)) if username == TOKEN_USERNAME => Ok(None),
        (Some(username), Some(secret)) => Ok(Some((username, secret))),
        _ => Err("answered JSON without Username and Secret".into()),
    }
}

/// The PATH to look helpers up in, as the environment has it.
pub fn default_helper_path() -> Option<OsString> {
    std::env::var_os("PATH")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageRef;
    use rstest::rstest;

    fn users(config: &DockerConfig, image: &str) -> Vec<String> {
        let image: ImageRef = image.parse().expect("image");
        config
            .matching(&image)
            .into_iter()
            .map(|(u, _)| u)
            .collect()
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::plain(r#"{"auths": {"r.io": {"username": "a", "password": "p"}}}"#, "r.io/app:1", vec!["a"])]
    #[case::helper_hides_auths(r#"{"auths": {"https://r.io/v1/": {"username": "a", "password": "p"}}, "credHelpers": {"r.io": "x"}}"#, "r.io/app:1", vec![])]
    #[case::helper_for_other_host(r#"{"auths": {"r.io": {"username": "a", "password": "p"}}, "credHelpers": {"q.io": "x"}}"#, "r.io/app:1", vec!["a"])]
    #[case::store_hides_all(r#"{"auths": {"r.io": {"username": "a", "password": "p"}}, "credsStore": "desktop"}"#, "r.io/app:1", vec![])]
    #[case::no_auths(r#"{"credsStore": "desktop"}"#, "r.io/app:1", vec![])]
    fn static_entries_follow_docker(#[case] text: &str, #[case] image: &str, #[case] expected: Vec<&str>) {
        let file = ConfigFile::parse(text.as_bytes()).expect("parses");
        assert_eq!(users(&file.static_entries().expect("valid"), image), expected);
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::not_json("{", "is not valid JSON")]
    #[case::auths_string(r#"{"auths": "hunter2"}"#, "has an \"auths\" that is not an object")]
    #[case::helper_not_string(r#"{"credHelpers": {"r.io": ["hunter2"]}}"#, "credHelpers entry \"r.io\" is not a string")]
    fn config_errors_never_quote_values(#[case] text: &str, #[case] expected: &str) {
        let error = ConfigFile::parse(text.as_bytes()).expect_err("invalid");
        assert!(error.starts_with(expected), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn helper_lookup_prefers_cred_helpers() {
        let file =
            ConfigFile::parse(br#"{"credHelpers": {"r.io": "ecr"}, "credsStore": "desktop"}"#)
                .expect("parses");
        assert_eq!(file.helper_for("r.io"), Some("ecr"));
        assert_eq!(file.helper_for(HUB_SERVER), Some("desktop"));
        assert_eq!(server_address("docker.io"), HUB_SERVER);
    }

    #[rstest]
    #[case::plain("desktop", true)]
    #[case::dashes("ecr-login", true)]
    #[case::path("../evil", false)]
    #[case::slash("a/b", false)]
    #[case::empty("", false)]
    fn helper_names_are_checked(#[case] name: &str, #[case] valid: bool) {
        assert_eq!(valid_helper_name(name), valid);
    }
}
