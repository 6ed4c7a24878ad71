//! Entry points for fuzzing: each takes arbitrary bytes, runs one parser (or the whole admission
//! decision) on them as pullgate would on real input, and returns. A panic, a hang or runaway memory in
//! any of them is a bug. Driven by the `fuzz/` cargo-fuzz crate (nightly, libFuzzer) and by the
//! stable mutation driver in `tests/fuzz.rs` (bounded in `cargo test`, timed with `./fuzz.sh SECONDS`).

use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::check::{self, CheckConfig, Input, OutputFormat, PolicySource};
use crate::config::Settings;
use crate::credentials::DockerConfig;
use crate::engine;
use crate::image::ImageRef;
use crate::policy::{self, PolicySet};
use crate::registry::client::{auth, manifest};
use crate::registry::hosts::RegistryHosts;

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target, by name (the `fuzz/` crate and `./fuzz.sh` use these names).
pub const TARGETS: [(&str, Target); 9] = [
    ("admission", admission),
    ("image_reference", image_reference),
    ("pull_secret", pull_secret),
    ("policy_file", policy_file),
    ("settings", settings),
    ("hosts_toml", hosts_toml),
    ("challenge", challenge),
    ("manifest", manifest),
    ("check", check_manifests),
];

fn policies() -> &'static PolicySet {
    static POLICIES: OnceLock<PolicySet> = OnceLock::new();
    POLICIES.get_or_init(|| {
        check::load_policies(&PolicySource::BuiltIn).unwrap_or_else(|_| PolicySet::default())
    })
}

/// An AdmissionReview body: decoded, turned into a subject, decided with the shipped policy (no
/// registry), answered.
pub fn admission(data: &[u8]) {
    let Ok(mut request) = crate::admission::decode(data) else {
        return;
    };
    let Ok(Some(subject)) = crate::admission::subject(&mut request) else {
        return;
    };
    let decision = futures::executor::block_on(engine::decide(&subject, policies(), None));
    let response = crate::admission::respond(&request.review, &decision.verdict);
    let _ = crate::admission::encode(&response);
    let _ = policy::plan(&subject.facts, policies());
}

/// An image reference as written in a pod spec.
pub fn image_reference(data: &[u8]) {
    if let Ok(image) = ImageRef::from_str(&String::from_utf8_lossy(data)) {
        let _ = (image.to_string(), image.registry(), image.repository());
    }
}

/// A pull secret's `.dockerconfigjson` / `.dockercfg`, and the keyring lookup on it.
pub fn pull_secret(data: &[u8]) {
    for config in [
        DockerConfig::from_dockerconfigjson(data),
        DockerConfig::from_dockercfg(data),
    ]
    .into_iter()
    .flatten()
    {
        for image in ["nginx", "registry.example.com:5000/team/app:v1"] {
            if let Ok(image) = ImageRef::from_str(image) {
                let _ = config.matching(&image);
            }
        }
    }
}

/// A policy file.
pub fn policy_file(data: &[u8]) {
    let _ = policy::parse_file(Path::new("fuzz.yaml"), &String::from_utf8_lossy(data));
}

/// A `--config` settings file.
pub fn settings(data: &[u8]) {
    let _ = Settings::parse(Path::new("fuzz.yaml"), &String::from_utf8_lossy(data));
}

/// A containerd `hosts.toml`.
pub fn hosts_toml(data: &[u8]) {
    let _ = RegistryHosts::parse_hosts_toml(&String::from_utf8_lossy(data));
}

/// A `WWW-Authenticate` header.
pub fn challenge(data: &[u8]) {
    let _ = auth::parse_challenge(&String::from_utf8_lossy(data));
}

/// A manifest or index body, and a config blob.
pub fn manifest(data: &[u8]) {
    let _ = manifest::parse(data, 1024);
    let _ = manifest::config_platform(data);
}

/// Manifests given to `pullgate check --offline` on standard input, rendered as JSON.
pub fn check_manifests(data: &[u8]) {
    let config = CheckConfig {
        inputs: vec![Input::Stdin],
        recursive: false,
        policies: PolicySource::BuiltIn,
        settings: Settings::default(),
        namespace: "default".into(),
        registry: None,
        output: OutputFormat::Json,
        warnings_as_errors: false,
        skip_non_kubernetes: false,
    };
    let mut stdin = data;
    let (mut stdout, mut stderr) = (std::io::sink(), std::io::sink());
    let io = check::Io {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let _ = futures::executor::block_on(check::run(config, io));
}
