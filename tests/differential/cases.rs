//! The matrix: what kubelet would hand containerd for each case is written out by hand from kubelet's
//! rules (keyring.go: keys indexed and matched host label by label, equal ports, path prefixes; pull
//! secrets, then node config, then credential providers; anonymous only when nothing matched; one bad
//! secret fails them all), never computed by pullgate.

use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::support::kube::{dockerconfigjson_secret, typed_secret};
use super::{Case, Kubelet, ProviderSpec, World};

fn creds(list: &[(&str, &str)]) -> Kubelet {
    Kubelet::Creds(
        list.iter()
            .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
            .collect(),
    )
}

fn base(name: &str, class: u8, image: String) -> Case {
    Case {
        name: name.to_owned(),
        class,
        image,
        hosts: None,
        secrets: Vec::new(),
        service_account: None,
        kubelet: creds(&[]),
        node: "linux/amd64",
        config_platform: None,
        provider: None,
        says: None,
    }
}

const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

pub fn all(w: &World) -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(node_identity(w));
    cases.extend(hosts_toml(w));
    cases.extend(keyring(w));
    cases.extend(index_shapes(w));
    cases.extend(messages(w));
    cases
}

/// Class 1: credentials from a kubelet credential provider plugin.
fn node_identity(w: &World) -> Vec<Case> {
    let b = w.basic.host();
    let provider = |matching: &str, key: &str, pass: &str| ProviderSpec {
        match_images: matching.to_owned(),
        auth_key: key.to_owned(),
        user: "alice".into(),
        pass: pass.to_owned(),
    };
    let ecr_hosts = w.hosts(
        "ecr",
        &[(
            ECR,
            format!("server = \"http://{b}\"\n[host.\"http://{b}\"]\n"),
        )],
    );
    vec![
        Case {
            provider: Some(provider(b, b, "apass")),
            kubelet: creds(&[("alice", "apass")]),
            ..base("provider-good", 1, format!("{b}/team/single-amd:v1"))
        },
        Case {
            provider: Some(provider(b, b, "stale")),
            kubelet: creds(&[("alice", "stale")]),
            says: Some("credential provider \"test-provider\""),
            ..base("provider-wrong", 1, format!("{b}/team/single-amd:v1"))
        },
        Case {
            provider: Some(provider(b, b, "apass")),
            secrets: vec![dockerconfigjson_secret("stale", &[(b, "alice", "stale")])],
            kubelet: creds(&[("alice", "stale"), ("alice", "apass")]),
            ..base(
                "provider-after-a-rejected-secret",
                1,
                format!("{b}/team/single-amd:v1"),
            )
        },
        Case {
            provider: Some(provider(
                "registry.example.com",
                "registry.example.com",
                "apass",
            )),
            ..base(
                "provider-for-another-registry",
                1,
                format!("{b}/team/single-amd:v1"),
            )
        },
        Case {
            hosts: Some(ecr_hosts.clone()),
            provider: Some(provider("*.dkr.ecr.*.amazonaws.com", ECR, "apass")),
            kubelet: creds(&[("alice", "apass")]),
            ..base(
                "provider-for-an-ecr-name",
                1,
                format!("{ECR}/team/single-amd:v1"),
            )
        },
        Case {
            hosts: Some(ecr_hosts),
            provider: Some(provider("*.dkr.ecr.*.amazonaws.com", ECR, "stale")),
            kubelet: creds(&[("alice", "stale")]),
            ..base(
                "provider-for-an-ecr-name-wrong",
                1,
                format!("{ECR}/team/single-amd:v1"),
            )
        },
    ]
}

/// Class 2: containerd's certs.d (hosts.toml), mirrors and localhost.
fn hosts_toml(w: &World) -> Vec<Case> {
    let (t, bt, p, m, down) = (
        w.tls.host(),
        w.basic_tls.host(),
        w.plain.host(),
        w.mirror.host(),
        w.down.as_str(),
    );
    let own_table = |name: &str, host: &str, ca: Option<String>| {
        let ca = ca
            .map(|ca| format!("  ca = \"{ca}\"\n"))
            .unwrap_or_default();
        w.hosts(
            name,
            &[(
                host,
                format!(
                    "[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{ca}"
                ),
            )],
        )
    };
    let server = |name: &str, host: &str, ca: Option<String>| {
        let ca = ca.map(|ca| format!("ca = \"{ca}\"\n")).unwrap_or_default();
        w.hosts(
            name,
            &[(host, format!("server = \"https://{host}\"\n{ca}[host]\n"))],
        )
    };
    let mirror_for = |name: &str, registry: &str, capabilities: &str| {
        w.hosts(
            name,
            &[(
                registry,
                format!("[host.\"http://{m}\"]\n  capabilities = [{capabilities}]\n"),
            )],
        )
    };
    let carol = || {
        vec![dockerconfigjson_secret(
            "carol",
            &[(down, "carol", "cpass")],
        )]
    };
    vec![
        Case {
            hosts: Some(own_table("own-table", t, Some(w.ca(&w.tls)))),
            ..base(
                "registry-own-host-table-with-its-ca",
                2,
                format!("{t}/team/single-amd:v1"),
            )
        },
        Case {
            hosts: Some(server("server-ca", t, Some(w.ca(&w.tls)))),
            ..base("server-with-top-level-ca", 2, format!("{t}/team/multi:v1"))
        },
        Case {
            hosts: Some(server("server-no-ca", t, None)),
            ..base("server-without-the-ca", 2, format!("{t}/team/multi:v1"))
        },
        Case {
            hosts: Some(own_table("own-table-auth", bt, Some(w.ca(&w.basic_tls)))),
            secrets: vec![dockerconfigjson_secret("good", &[(bt, "alice", "apass")])],
            kubelet: creds(&[("alice", "apass")]),
            ..base(
                "own-host-table-with-credentials",
                2,
                format!("{bt}/team/single-amd:v1"),
            )
        },
        Case {
            hosts: Some(own_table("own-table-wrong", bt, Some(w.ca(&w.basic_tls)))),
            secrets: vec![dockerconfigjson_secret("wrong", &[(bt, "alice", "nope")])],
            kubelet: creds(&[("alice", "nope")]),
            ..base(
                "own-host-table-with-wrong-credentials",
                2,
                format!("{bt}/team/single-amd:v1"),
            )
        },
        Case {
            hosts: Some(own_table("own-table-none", bt, Some(w.ca(&w.basic_tls)))),
            ..base(
                "own-host-table-without-credentials",
                2,
                format!("{bt}/team/single-amd:v1"),
            )
        },
        Case {
            hosts: Some(mirror_for("mirror-auth", down, "\"pull\", \"resolve\"")),
            secrets: carol(),
            kubelet: creds(&[("carol", "cpass")]),
            ..base(
                "authenticated-mirror-gets-the-pod-credentials",
                2,
                format!("{down}/team/mirrored:v1"),
            )
        },
        Case {
            hosts: Some(mirror_for(
                "mirror-auth-none",
                down,
                "\"pull\", \"resolve\"",
            )),
            ..base(
                "authenticated-mirror-without-credentials",
                2,
                format!("{down}/team/mirrored:v1"),
            )
        },
        Case {
            hosts: Some(mirror_for("mirror-pull-digest", down, "\"pull\"")),
            secrets: carol(),
            kubelet: creds(&[("carol", "cpass")]),
            ..base(
                "digest-from-a-pull-only-mirror",
                2,
                format!("{down}/team/mirrored@{}", w.mirrored_digest),
            )
        },
        Case {
            hosts: Some(mirror_for("mirror-pull-tag", down, "\"pull\"")),
            secrets: carol(),
            kubelet: creds(&[("carol", "cpass")]),
            ..base(
                "tag-needs-a-resolve-host",
                2,
                format!("{down}/team/mirrored:v1"),
            )
        },
        base(
            "localhost-plain-http-without-config",
            2,
            format!("{p}/team/single-amd:v1"),
        ),
        base(
            "localhost-plain-http-missing-tag",
            2,
            format!("{p}/team/single-amd:v9"),
        ),
        Case {
            hosts: Some(mirror_for("mirror-miss", p, "\"pull\", \"resolve\"")),
            ..base(
                "mirror-without-the-image-falls-through",
                2,
                format!("{p}/team/multi:v1"),
            )
        },
    ]
}

/// Class 3: kubelet's keyring over pull secrets.
fn keyring(w: &World) -> Vec<Case> {
    let b = w.basic.host();
    let port = b.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    let image = format!("{b}/team/single-amd:v1");
    let keyed = |name: &str, key: &str, matches: bool| Case {
        secrets: vec![dockerconfigjson_secret("key", &[(key, "alice", "apass")])],
        kubelet: if matches {
            creds(&[("alice", "apass")])
        } else {
            creds(&[])
        },
        ..base(name, 3, image.clone())
    };
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("builder".into()),
            ..ObjectMeta::default()
        },
        image_pull_secrets: Some(vec![LocalObjectReference {
            name: "sa-key".into(),
        }]),
        ..ServiceAccount::default()
    };
    vec![
        keyed("key-host-and-port", b, true),
        keyed("key-with-http-scheme", &format!("http://{b}"), true),
        keyed("key-with-v2-path", &format!("https://{b}/v2/"), true),
        keyed("key-with-a-path-prefix", &format!("{b}/team"), true),
        keyed("key-for-another-path", &format!("{b}/other"), false),
        keyed("key-without-the-port", "127.0.0.1", false),
        keyed("key-glob-on-a-label", &format!("127.0.0.*:{port}"), true),
        Case {
            secrets: vec![
                dockerconfigjson_secret("first-wrong", &[(b, "alice", "nope")]),
                dockerconfigjson_secret("then-right", &[(b, "alice", "apass")]),
            ],
            kubelet: creds(&[("alice", "nope"), ("alice", "apass")]),
            ..base("second-secret-after-a-rejected-one", 3, image.clone())
        },
        Case {
            secrets: vec![
                typed_secret(
                    "undecodable",
                    "kubernetes.io/dockerconfigjson",
                    &[(
                        ".dockerconfigjson",
                        br#"{"auths": {"x.example": {"auth": "%%%"}}}"#,
                    )],
                ),
                dockerconfigjson_secret("good", &[(b, "alice", "apass")]),
            ],
            kubelet: Kubelet::Fails,
            ..base(
                "one-undecodable-secret-fails-them-all",
                3,
                format!("{}/team/multi:v1", w.plain.host()),
            )
        },
        Case {
            secrets: vec![typed_secret("opaque", "Opaque", &[("password", b"apass")])],
            ..base("opaque-secret-is-ignored", 3, image.clone())
        },
        Case {
            secrets: vec![typed_secret(
                "legacy",
                "kubernetes.io/dockercfg",
                &[(
                    ".dockercfg",
                    format!(r#"{{"{b}": {{"username": "alice", "password": "apass"}}}}"#)
                        .as_bytes(),
                )],
            )],
            kubelet: creds(&[("alice", "apass")]),
            ..base("legacy-dockercfg-secret", 3, image.clone())
        },
        Case {
            secrets: vec![dockerconfigjson_secret("sa-key", &[(b, "alice", "apass")])],
            service_account: Some(account),
            kubelet: creds(&[("alice", "apass")]),
            ..base("service-account-secrets", 3, image)
        },
    ]
}

/// Class 4: index shapes and platforms.
fn index_shapes(w: &World) -> Vec<Case> {
    let p = w.plain.host();
    let image = |repo: &str| format!("{p}/team/{repo}:v1");
    vec![
        base("index-with-the-node-platform", 4, image("multi")),
        base("index-without-the-node-platform", 4, image("arm-index")),
        base("entries-without-platform", 4, image("unnamed")),
        base(
            "entries-without-platform-none-for-the-node",
            4,
            image("unnamed-arm"),
        ),
        base("nested-index", 4, image("nested")),
        base("nested-index-none-for-the-node", 4, image("nested-arm")),
        Case {
            config_platform: Some("linux/arm64"),
            ..base("single-manifest-of-another-arch", 4, image("single-arm"))
        },
        base("docker-manifest-list", 4, image("list")),
        base("attestation-entries-are-ignored", 4, image("attested")),
        Case {
            node: "linux/arm64",
            ..base("index-on-an-arm64-node", 4, image("multi"))
        },
        Case {
            node: "linux/arm64",
            config_platform: Some("linux/amd64"),
            ..base("amd64-manifest-on-an-arm64-node", 4, image("single-amd"))
        },
    ]
}

/// Class 5: what the messages say.
fn messages(w: &World) -> Vec<Case> {
    let (k, b, m, down) = (
        w.token.host(),
        w.basic.host(),
        w.mirror.host(),
        w.down.as_str(),
    );
    let _ = m;
    vec![
        Case {
            secrets: vec![dockerconfigjson_secret("bob", &[(k, "bob", "bpass")])],
            kubelet: creds(&[("bob", "bpass")]),
            ..base(
                "token-auth-with-good-credentials",
                5,
                format!("{k}/team/single-amd:v1"),
            )
        },
        Case {
            secrets: vec![dockerconfigjson_secret("bob", &[(k, "bob", "wrong")])],
            kubelet: creds(&[("bob", "wrong")]),
            says: Some("rejected by"),
            ..base(
                "token-auth-with-rejected-credentials",
                5,
                format!("{k}/team/single-amd:v1"),
            )
        },
        Case {
            secrets: vec![dockerconfigjson_secret("bob", &[(k, "bob", "bpass")])],
            kubelet: creds(&[("bob", "bpass")]),
            says: Some("is valid but has no pull access to forbidden/app"),
            ..base(
                "valid-credentials-without-pull-access",
                5,
                format!("{k}/forbidden/app:v1"),
            )
        },
        Case {
            hosts: Some(w.hosts(
                "mirror-wants-credentials",
                &[(down, format!("[host.\"http://{}\"]\n", w.mirror.host()))],
            )),
            says: Some("requires credentials"),
            ..base(
                "a-mirror-that-wants-credentials-is-named-so",
                5,
                format!("{down}/team/mirrored:v1"),
            )
        },
        Case {
            secrets: vec![dockerconfigjson_secret("alice", &[(b, "alice", "apass")])],
            kubelet: creds(&[("alice", "apass")]),
            says: Some("tag \"v9\" not found"),
            ..base(
                "missing-tag-behind-auth",
                5,
                format!("{b}/team/single-amd:v9"),
            )
        },
    ]
}
