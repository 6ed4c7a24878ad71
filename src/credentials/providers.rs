//! kubelet's credential provider plugins (`ecr-credential-provider`, `auth-provider-gcp`,
//! `acr-credential-provider`, …), run the way kubelet runs them: its own `CredentialProviderConfig` file
//! (`kubelet.config.k8s.io/v1`), `matchImages` with the keyring's glob rules, the exec protocol
//! (`credentialprovider.kubelet.k8s.io/v1`: a `CredentialProviderRequest` on stdin, a
//! `CredentialProviderResponse` on stdout), the response's `auth` keys matched like keyring keys, and its
//! cache (`cacheKeyType` Image, Registry or Global; `cacheDuration`, else `defaultCacheDuration`). With
//! `tokenAttributes`, the plugin gets a ServiceAccount token for the configured audience (TokenRequest
//! API) and the account's annotations.
//!
//! Where pullgate differs: a plugin has `credentialProviders.timeoutSeconds` (default 5) instead of
//! kubelet's minute, so an admission stays within its budget; its stdout is read up to 1 MiB; its stderr
//! is never read (it may hold secrets); the ServiceAccount token is not bound to the pod, which does not
//! exist yet. A plugin that fails gives no credentials, as in kubelet — and makes a refusal unverifiable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::keyring::{index_key, keyring_lookup, urls_match};
use super::local::is_executable;
use super::{Credential, CredentialSource};
use crate::facts::CredentialOrigin;
use crate::image::ImageRef;

/// The only `CredentialProviderConfig` version read.
const CONFIG_API_VERSION: &str = "kubelet.config.k8s.io/v1";
/// Exec protocol versions kubelet speaks.
const EXEC_API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];
/// Largest plugin answer read.
const MAX_STDOUT: u64 = 1024 * 1024;

/// Why the credential provider configuration is unusable (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum ProviderConfigError {
    /// The file cannot be read.
    #[error("credentialProviders.config {}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a `CredentialProviderConfig`, or a field is invalid.
    #[error("credentialProviders.config {}: {reason}", file.display())]
    Invalid { file: PathBuf, reason: String },
    /// A plugin named in the file is not an executable in `binDir`.
    #[error("credentialProviders.binDir {}: no executable {name:?}", dir.display())]
    MissingPlugin { dir: PathBuf, name: String },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<ProviderEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProviderEntry {
    name: String,
    match_images: Vec<String>,
    default_cache_duration: Option<String>,
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    token_attributes: Option<TokenAttributes>,
}

#[derive(Debug, Clone, Deserialize)]
struct EnvVar {
    name: String,
    value: String,
}

/// `tokenAttributes`: the plugin wants a ServiceAccount token.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenAttributes {
    service_account_token_audience: String,
    #[serde(default)]
    require_service_account: bool,
    #[serde(default)]
    required_service_account_annotation_keys: Vec<String>,
    #[serde(default)]
    optional_service_account_annotation_keys: Vec<String>,
}

/// One configured plugin.
#[derive(Debug, Clone)]
struct Provider {
    name: String,
    program: PathBuf,
    match_images: Vec<String>,
    default_cache: Duration,
    api_version: String,
    args: Vec<String>,
    env: Vec<EnvVar>,
    token: Option<TokenAttributes>,
}

/// A Go duration (`12h`, `1m30s`, `0s`, `1.5h`, `500ms`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    // A plugin may answer any number: an overflowing one is no duration (never a panic).
    Duration::try_from_secs_f64(total).ok()
}

/// The plugin's answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    kind: String,
    api_version: String,
    cache_key_type: String,
    cache_duration: Option<String>,
    #[serde(default)]
    auth: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Clone, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// A cached answer: its `auth` entries, indexed as keyring keys.
#[derive(Debug, Clone)]
struct Answer {
    entries: Vec<(String, AuthEntry)>,
    until: Instant,
}

/// Per-entry lifetime of a cached answer.
struct AnswerExpiry;

impl moka::Expiry<(usize, String), Arc<Answer>> for AnswerExpiry {
    fn expire_after_create(
        &self,
        _key: &(usize, String),
        answer: &Arc<Answer>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(answer.until.saturating_duration_since(created_at))
    }
}

/// What the providers said for one image.
#[derive(Debug, Clone, Default)]
pub struct ProviderCredentials {
    /// Matching credentials, in provider order.
    pub credentials: Vec<Credential>,
    /// One line per provider that matched the image but failed (`credential provider "x" …`).
    pub failures: Vec<String>,
}

/// Who asks: the pod's namespace and ServiceAccount, and where tokens and annotations come from.
pub struct Asker<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub source: Option<&'a dyn CredentialSource>,
}

/// The configured plugins, their cache and their timeout.
pub struct CredentialProviders {
    providers: Vec<Provider>,
    timeout: Duration,
    cache: moka::future::Cache<(usize, String), Arc<Answer>>,
}

impl std::fmt::Debug for CredentialProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
        f.debug_struct("CredentialProviders")
            .field("providers", &names)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CredentialProviders {
    /// Read and check kubelet's `CredentialProviderConfig` file; every plugin must be an executable in
    /// `bin_dir`.
    pub fn load(
        file: &Path,
        bin_dir: &Path,
        timeout: Duration,
    ) -> Result<Self, ProviderConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ProviderConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let invalid = |reason: String| ProviderConfigError::Invalid {
            file: file.to_owned(),
            reason,
        };
        let config: ConfigFile =
            serde_saphyr::from_str(&text).map_err(|e| invalid(format!("not valid: {e}")))?;
        if config.api_version != CONFIG_API_VERSION || config.kind != "CredentialProviderConfig" {
            return Err(invalid(format!(
                "expected apiVersion {CONFIG_API_VERSION} and kind CredentialProviderConfig"
            )));
        }
        let mut providers = Vec::new();
        for entry in config.providers {
            let at = |what: &str| format!("providers[{}] {what}", entry.name);
            if entry.name.is_empty() || entry.name.contains(['/', '\\']) || entry.name == ".." {
                return Err(invalid(format!(
                    "provider name {:?} is not a file name",
                    entry.name
                )));
            }
            if entry.match_images.is_empty() {
                return Err(invalid(at("has no matchImages")));
            }
            if !EXEC_API_VERSIONS.contains(&entry.api_version.as_str()) {
                return Err(invalid(at(&format!(
                    "apiVersion {:?} is not one of {}",
                    entry.api_version,
                    EXEC_API_VERSIONS.join(", ")
                ))));
            }
            let default_cache = match &entry.default_cache_duration {
                None => Duration::ZERO,
                Some(text) => parse_go_duration(text).ok_or_else(|| {
                    invalid(at(&format!(
                        "defaultCacheDuration {text:?} is not a duration"
                    )))
                })?,
            };
            let program = bin_dir.join(&entry.name);
            if !is_executable(&program) {
                return Err(ProviderConfigError::MissingPlugin {
                    dir: bin_dir.to_owned(),
                    name: entry.name,
                });
            }
            providers.push(Provider {
                name: entry.name,
                program,
                match_images: entry.match_images,
                default_cache,
                api_version: entry.api_version,
                args: entry.args,
                env: entry.env,
                token: entry.token_attributes,
            });
        }
        Ok(Self {
            providers,
            timeout,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .expire_after(AnswerExpiry)
                .build(),
        })
    }

    /// Whether some provider's `matchImages` covers the image (then nodes get credentials for it).
    pub fn covers(&self, image: &ImageRef) -> bool {
        let name = image.name();
        self.providers
            .iter()
            .any(|p| p.match_images.iter().any(|m| urls_match(m, name)))
    }

    /// Whether some provider asks for ServiceAccount tokens (`tokenAttributes`).
    pub fn wants_tokens(&self) -> bool {
        self.providers.iter().any(|p| p.token.is_some())
    }

    /// The credentials every matching provider gives for `image`, in provider order.
    pub async fn credentials(&self, image: &ImageRef, asker: &Asker<'_>) -> ProviderCredentials {
        let name = image.name();
        let registry_key = name.split('/').next().unwrap_or_default().to_owned();
        let mut out = ProviderCredentials::default();
        for (index, provider) in self.providers.iter().enumerate() {
            if !provider.match_images.iter().any(|m| urls_match(m, name)) {
                continue;
            }
            let scope = provider
                .token
                .as_ref()
                .map(|_| format!("|{}/{}", asker.namespace, asker.service_account))
                .unwrap_or_default();
            let keys = [
                format!("{name}{scope}"),
                format!("{registry_key}{scope}"),
                format!("<global>{scope}"),
            ];
            let mut cached = None;
            for key in &keys {
                if let Some(answer) = self.cache.get(&(index, key.clone())).await {
                    cached = Some(answer);
                    break;
                }
            }
            let answer = match cached {
                Some(answer) => answer,
                None => match self.ask(provider, name, asker).await {
                    Ok(None) => continue,
                    Ok(Some((answer, key_type))) => {
                        let answer = Arc::new(answer);
                        if answer.until > Instant::now() {
                            let key = match key_type {
                                KeyType::Image => keys[0].clone(),
                                KeyType::Registry => keys[1].clone(),
                                KeyType::Global => keys[2].clone(),
                            };
                            self.cache.insert((index, key), answer.clone()).await;
                        }
                        answer
                    }
                    Err(reason) => {
                        out.failures.push(format!(
                            "credential provider {:?} failed: {reason}",
                            provider.name
                        ));
                        continue;
                    }
                },
            };
            let origin = CredentialOrigin::Provider {
                name: provider.name.clone(),
            };
            let indexed = answer
                .entries
                .iter()
                .map(|(key, entry)| (key.as_str(), entry));
            let hub = image.registry() == "docker.io";
            out.credentials.extend(
                keyring_lookup(indexed, name, hub)
                    .into_iter()
                    .map(|entry| Credential::new(&entry.username, &entry.password, origin.clone())),
            );
        }
        out
    }

    /// Run one plugin for `image`. `Ok(None)`: kubelet would skip it (no ServiceAccount where one is
    /// required, a required annotation missing).
    async fn ask(
        &self,
        provider: &Provider,
        image: &str,
        asker: &Asker<'_>,
    ) -> Result<Option<(Answer, KeyType)>, String> {
        let mut request = serde_json::json!({
            "kind": "CredentialProviderRequest",
            "apiVersion": provider.api_version,
            "image": image,
        });
        if let Some(token) = &provider.token {
            match token_fields(token, asker).await? {
                Some((value, annotations)) => {
                    request["serviceAccountToken"] = serde_json::Value::String(value);
                    request["serviceAccountAnnotations"] = serde_json::json!(annotations);
                }
                None => return Ok(None),
            }
        }
        let stdout = tokio::time::timeout(self.timeout, run(provider, &request.to_string()))
            .await
            .map_err(|_| format!("no answer within {}", crate::facts::seconds(self.timeout)))??;
        let response: Response = serde_json::from_slice(&stdout).map_err(|_| {
            "answered something that is not a CredentialProviderResponse".to_owned()
        })?;
        if response.kind != "CredentialProviderResponse"
            || response.api_version != provider.api_version
        {
            return Err(format!(
                "answered kind {:?} apiVersion {:?}, expected CredentialProviderResponse {}",
                crate::facts::truncate_chars(&response.kind, 60),
                crate::facts::truncate_chars(&response.api_version, 60),
                provider.api_version
            ));
        }
        let key_type = match response.cache_key_type.as_str() {
            "Image" => KeyType::Image,
            "Registry" => KeyType::Registry,
            "Global" => KeyType::Global,
            other => {
                return Err(format!(
                    "answered cacheKeyType {:?} (Image, Registry or Global)",
                    crate::facts::truncate_chars(other, 60)
                ));
            }
        };
        let duration = match &response.cache_duration {
            None => provider.default_cache,
            Some(text) => parse_go_duration(text).ok_or_else(|| {
                format!(
                    "answered cacheDuration {:?}, not a duration",
                    crate::facts::truncate_chars(text, 60)
                )
            })?,
        };
        let entries = response
            .auth
            .into_iter()
            .filter_map(|(key, entry)| Some((index_key(&key)?, entry)))
            .collect();
        Ok(Some((
            Answer {
                entries,
                until: Instant::now() + duration,
            },
            key_type,
        )))
    }
}

#[derive(Debug, Clone, Copy)]
enum KeyType {
    Image,
    Registry,
    Global,
}

/// The ServiceAccount token and annotations for a plugin with `tokenAttributes`; `None` when kubelet
/// would skip the plugin.
async fn token_fields(
    token: &TokenAttributes,
    asker: &Asker<'_>,
) -> Result<Option<(String, BTreeMap<String, String>)>, String> {
    let Some(source) = asker.source else {
        return Err("it needs a ServiceAccount token and no Kubernetes API is available".into());
    };
    let account = source
        .service_account(asker.namespace, asker.service_account)
        .await
        .map_err(|e| {
            format!(
                "cannot read ServiceAccount {:?}: {e}",
                asker.service_account
            )
        })?;
    let Some(account) = account else {
        return if token.require_service_account {
            Ok(None)
        } else {
            Err(format!(
                "ServiceAccount {:?} not found in namespace {}",
                asker.service_account, asker.namespace
            ))
        };
    };
    let annotations = account.metadata.annotations.unwrap_or_default();
    if token
        .required_service_account_annotation_keys
        .iter()
        .any(|key| !annotations.contains_key(key))
    {
        return Ok(None);
    }
    let wanted: BTreeMap<String, String> = annotations
        .into_iter()
        .filter(|(key, _)| {
            token.required_service_account_annotation_keys.contains(key)
                || token.optional_service_account_annotation_keys.contains(key)
        })
        .collect();
    let value = source
        .service_account_token(
            asker.namespace,
            asker.service_account,
            &token.service_account_token_audience,
        )
        .await
        .map_err(|e| format!("cannot get a ServiceAccount token: {e}"))?;
    Ok(Some((value, wanted)))
}

/// Run the plugin with the request on stdin; its stdout, at most [`MAX_STDOUT`] bytes.
async fn run(provider: &Provider, request: &str) -> Result<Vec<u8>, String> {
    let mut command = tokio::process::Command::new(&provider.program);
    command
        .args(&provider.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for EnvVar { name, value } in &provider.env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", provider.program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading stdin is judged by its answer, not by this write.
        let _ = stdin.write_all(request.as_bytes()).await;
        let _ = stdin.shutdown().await;
    }
    let mut stdout = Vec::new();
    if let Some(out) = child.stdout.take() {
        out.take(MAX_STDOUT + 1)
            .read_to_end(&mut stdout)
            .await
            .map_err(|e| format!("its output could not be read: {e}"))?;
    }
    if stdout.len() as u64 > MAX_STDOUT {
        return Err("answered more than 1 MiB".into());
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("could not be waited for: {e}"))?;
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("12h", Some(12 * 3600))]
    #[case("1m30s", Some(90))]
    #[case("0s", Some(0))]
    #[case("0", Some(0))]
    #[case("1.5h", Some(5400))]
    #[case("10", None)]
    #[case("5 minutes", None)]
    #[case("", None)]
    #[case("99999999999999999999999h", None)]
    fn go_durations(#[case] text: &str, #[case] seconds: Option<u64>) {
        assert_eq!(parse_go_duration(text).map(|d| d.as_secs()), seconds);
    }
}
