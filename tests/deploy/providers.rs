//! Credential provider plugins in the install: the Helm values and the kustomize components mount kubelet's
//! `CredentialProviderConfig` and the plugins, point the server at them, and grant `create` on
//! `serviceaccounts/token` only when asked. The mounted config must load as pullgate loads it.

use std::path::Path;

use clap::Parser;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::api::rbac::v1::ClusterRole;
use pullgate::cli::{Cli, Command};
use pullgate::credentials::CredentialProviders;

use crate::invariants::check_install;
use crate::pods::volume_for;
use crate::render::{Rendered, fixture, helm_template, kustomize};

/// The config file mounted at `config_path` loads as pullgate's loader reads it, with stub plugins, and the
/// plugin directory is a volume of its own.
fn check_provider_mounts(
    r: &Rendered,
    pod: &PodSpec,
    container: &Container,
    config_path: &str,
    bin_dir: &str,
) {
    let config = volume_for(pod, container, config_path);
    let map = config
        .config_map
        .as_ref()
        .map(|c| c.name.clone())
        .expect("the provider config from a ConfigMap");
    let file = Path::new(config_path)
        .file_name()
        .and_then(|f| f.to_str())
        .expect("a file name");
    let text = r
        .config_map(&map)
        .data
        .unwrap_or_default()
        .remove(file)
        .unwrap_or_else(|| panic!("{}: ConfigMap {map} has no {file}", r.source));
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::write(dir.path().join("config.yaml"), &text).expect("config");
    let document: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    for provider in document["providers"].as_array().expect("providers") {
        let program = bin.join(provider["name"].as_str().expect("name"));
        std::fs::write(&program, "#!/bin/sh\n").expect("stub");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
    }
    CredentialProviders::load(
        &dir.path().join("config.yaml"),
        &bin,
        std::time::Duration::from_secs(5),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{}: pullgate would refuse the provider config: {e}",
            r.source
        )
    });
    let plugins = volume_for(
        pod,
        container,
        &format!("{bin_dir}/ecr-credential-provider"),
    );
    assert!(
        plugins.host_path.is_some()
            || plugins.image.is_some()
            || plugins.persistent_volume_claim.is_some(),
        "{}: the plugins come from a volume of their own",
        r.source
    );
}

fn grants_tokens(r: &Rendered) -> bool {
    r.all::<ClusterRole>()
        .iter()
        .flat_map(|role| role.rules.iter().flatten())
        .any(|rule| {
            rule.resources
                .iter()
                .flatten()
                .any(|res| res == "serviceaccounts/token")
                && rule.verbs.iter().any(|v| v == "create")
        })
}

#[test]
fn helm_mounts_credential_providers_when_enabled() {
    if crate::render::helm_skipped("helm_mounts_credential_providers_when_enabled") {
        return;
    }
    let values = fixture("values-credential-providers.yaml");
    let r = Rendered::parse(
        "helm (values-credential-providers.yaml)",
        &helm_template(&[&values], &[]),
    );
    let install = check_install(&r);
    let providers = install
        .settings
        .credential_providers
        .clone()
        .expect("credentialProviders in the server's settings");
    assert_eq!(providers.timeout_seconds, 4.0);
    let deployment = r.one::<k8s_openapi::api::apps::v1::Deployment>();
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let container = &pod.containers[0];
    check_provider_mounts(
        &r,
        &pod,
        container,
        &providers.config.display().to_string(),
        &providers.bin_dir.display().to_string(),
    );
    assert!(
        grants_tokens(&r),
        "serviceAccountTokens: true grants create on serviceaccounts/token"
    );

    let plain = Rendered::parse("helm (defaults)", &helm_template(&[], &[]));
    assert!(!grants_tokens(&plain), "no token rights unless asked");
    assert!(
        check_install(&plain)
            .settings
            .credential_providers
            .is_none()
    );
}

#[test]
fn kustomize_components_mount_credential_providers_and_grant_tokens() {
    let r = Rendered::parse(
        "kustomize overlay-credential-providers",
        &kustomize(&fixture("overlay-credential-providers")),
    );
    check_install(&r);
    let deployment = r.one::<k8s_openapi::api::apps::v1::Deployment>();
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let container = &pod.containers[0];
    let mut argv = vec!["pullgate".to_owned()];
    argv.extend(container.args.iter().flatten().cloned());
    let cli = Cli::try_parse_from(&argv).expect("the server accepts its args");
    let Command::Serve(args) = cli.command else {
        panic!("serve")
    };
    let config = args
        .providers
        .image_credential_provider_config
        .expect("--image-credential-provider-config");
    let bin = args
        .providers
        .image_credential_provider_bin_dir
        .expect("--image-credential-provider-bin-dir");
    check_provider_mounts(
        &r,
        &pod,
        container,
        &config.display().to_string(),
        &bin.display().to_string(),
    );
    assert!(grants_tokens(&r));
    let base = Rendered::parse("kustomize base", &kustomize(Path::new("deploy/base")));
    assert!(!grants_tokens(&base));
}
