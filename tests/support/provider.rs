//! A kubelet credential provider plugin for tests: a shell script speaking the exec protocol, configured
//! by environment (`AUTH_KEY`, `PLUGIN_USER`, `PLUGIN_PASS`, `KEY_TYPE`, `DURATION`; `MODE` hang, crash or
//! garbage; `NEED_TOKEN`), counting its runs, with kubelet's `CredentialProviderConfig` naming it
//! `test-provider`.

use pullgate::config::CredentialProviderSettings;
use serde_json::{Value, json};

const PLUGIN: &str = r#"#!/bin/sh
input=$(cat)
echo run >> "$COUNT_FILE"
case "$MODE" in
  hang) sleep 30 ;;
  crash) exit 3 ;;
  garbage) echo 'this is not JSON'; exit 0 ;;
esac
if [ -n "$NEED_TOKEN" ] && ! printf '%s' "$input" | grep -q "\"serviceAccountToken\":\"$NEED_TOKEN\""; then
  printf '{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","cacheDuration":"0s","auth":{}}'
  exit 0
fi
printf '{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"%s","cacheDuration":"%s","auth":{"%s":{"username":"%s","password":"%s"}}}' \
  "$KEY_TYPE" "$DURATION" "$AUTH_KEY" "$PLUGIN_USER" "$PLUGIN_PASS"
"#;

/// A plugin directory and config for one provider named `test-provider`.
pub struct Plugin {
    dir: tempfile::TempDir,
}

impl Plugin {
    pub fn new(match_images: &str, env: &[(&str, &str)], token_audience: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        let program = bin.join("test-provider");
        std::fs::write(&program, PLUGIN).expect("plugin");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let count = dir.path().join("count");
        let mut env: Vec<Value> = env
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        env.push(json!({"name": "COUNT_FILE", "value": count.display().to_string()}));
        let mut provider = json!({
            "name": "test-provider",
            "matchImages": [match_images],
            "defaultCacheDuration": "1m",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "env": env,
        });
        if let Some(audience) = token_audience {
            provider["tokenAttributes"] = json!({
                "serviceAccountTokenAudience": audience,
                "requireServiceAccount": true,
            });
        }
        let config = json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [provider],
        });
        std::fs::write(dir.path().join("config.yaml"), config.to_string()).expect("config");
        Self { dir }
    }

    pub fn settings(&self) -> CredentialProviderSettings {
        CredentialProviderSettings {
            config: self.dir.path().join("config.yaml"),
            bin_dir: self.dir.path().join("bin"),
            timeout_seconds: 2.0,
        }
    }

    pub fn runs(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("count"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}
