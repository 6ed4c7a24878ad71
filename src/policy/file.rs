//! Policy files: the `ImagePolicy` YAML format, loading every file of a directory, and validation with the
//! file, the key and the reason in each error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::glob::Glob;
use super::{Action, RuleId};

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "pullgate.dev/v1alpha1";
/// The only accepted `kind`.
pub const KIND: &str = "ImagePolicy";

/// One `ImagePolicy` document.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "pullgate ImagePolicy")]
pub struct PolicyDocument {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: PolicySpec,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
}

/// What a policy applies to and which rules it runs.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Objects and images the policy applies to; empty means everything.
    #[serde(default)]
    pub include: Scope,
    /// Objects and images the policy never applies to.
    #[serde(default)]
    pub exclude: Scope,
    /// The rules this policy runs; a rule it does not list does not run in it.
    #[serde(default)]
    pub rules: Rules,
}

/// A set of namespaces, object labels and images.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Namespace globs (any may match).
    #[serde(default)]
    pub namespaces: Vec<Glob>,
    /// Object labels (all must match).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Image globs over the normalised name `registry/repository` (any may match).
    #[serde(default)]
    pub images: Vec<Glob>,
}

/// Each rule's settings; the field names are the rule ids.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Rules {
    pub image_reference_valid: Option<SimpleRule>,
    pub tag_not_latest: Option<SimpleRule>,
    pub pull_policy: Option<SimpleRule>,
    pub digest_pinned: Option<SimpleRule>,
    pub registry_allowed: Option<RegistryAllowedRule>,
    pub registry_deprecated: Option<RegistryDeprecatedRule>,
    pub image_exists: Option<ImageExistsRule>,
    pub platform_supported: Option<SimpleRule>,
    pub pull_secret_valid: Option<SimpleRule>,
    pub registry_reachable: Option<SimpleRule>,
    pub registry_tls: Option<SimpleRule>,
    pub rate_limited: Option<SimpleRule>,
    pub image_size: Option<ImageSizeRule>,
    pub run_as_non_root: Option<SimpleRule>,
    pub command_specified: Option<SimpleRule>,
    pub config_platform: Option<SimpleRule>,
    pub pod_os: Option<SimpleRule>,
    pub windows_build: Option<SimpleRule>,
}

/// `image-size`: its action, and the largest compressed image a node may be asked to pull (default
/// `2Gi`), per platform the pod may land on.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageSizeRule {
    pub action: Option<Action>,
    pub max_compressed_size: Option<super::quantity::ByteQuantity>,
}

/// `image-exists`: its action, and whether a missing tag gets "did you mean" (one `tags/list` request,
/// on a definitive tag-not-found only; default on).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageExistsRule {
    pub action: Option<Action>,
    pub suggest_tags: Option<bool>,
}

/// A rule whose only setting is its action.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimpleRule {
    pub action: Option<Action>,
}

/// `registry-allowed`: images must match an `allow` pattern (when any are given) and no `deny` pattern.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryAllowedRule {
    pub action: Option<Action>,
    #[serde(default)]
    pub allow: Vec<Glob>,
    #[serde(default)]
    pub deny: Vec<Glob>,
}

/// `registry-deprecated`: registries or repository prefixes that are frozen or moved.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryDeprecatedRule {
    pub action: Option<Action>,
    /// The moves to report; when absent, the built-in list ([`default_deprecations`]).
    pub registries: Option<Vec<Deprecation>>,
}

/// One moved registry: images under `from` now live under `to`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deprecation {
    /// Prefix of `registry/repository` (whole path segments), e.g. `k8s.gcr.io`.
    pub from: String,
    /// What replaces that prefix, e.g. `registry.k8s.io`.
    pub to: String,
}

/// The moves that `registry-deprecated` reports when a policy gives no list of its own.
pub fn default_deprecations() -> Vec<Deprecation> {
    [
        ("k8s.gcr.io", "registry.k8s.io"),
        ("gcr.io/google-containers", "registry.k8s.io"),
        ("gcr.io/google_containers", "registry.k8s.io"),
    ]
    .into_iter()
    .map(|(from, to)| Deprecation {
        from: from.into(),
        to: to.into(),
    })
    .collect()
}

/// A policy document together with the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub file: PathBuf,
    pub document: PolicyDocument,
}

/// Why a policy directory could not be loaded. Each names the file, and the key where there is one.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The directory itself could not be listed.
    #[error("{dir}: cannot read policy directory: {source}")]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A policy file could not be read.
    #[error("{file}: cannot read: {source}")]
    ReadFile {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{file}: not valid YAML: {reason}")]
    Yaml { file: PathBuf, reason: String },
    /// A document has a wrong or unknown key, or a value of the wrong type.
    #[error("{file}: document {document}: {key}: {reason}")]
    Invalid {
        file: PathBuf,
        document: usize,
        key: String,
        reason: String,
    },
    /// A file with no policy document (empty, or only comments): refused, so that emptying a file never
    /// silently turns every rule off. Rules are turned off with `action: off`.
    #[error(
        "{file}: no policy document (the file is empty or only comments); to turn rules off, set `action: off` in a policy"
    )]
    Empty { file: PathBuf },
    /// The directory holds no policy file at all.
    #[error(
        "{dir}: no policy files (.yaml or .yml); pullgate needs at least one policy (rules are turned off with `action: off`)"
    )]
    NoPolicies { dir: PathBuf },
    /// Two documents share one `metadata.name`.
    #[error("{file}: metadata.name: policy name {name:?} is already used in {first}")]
    DuplicateName {
        file: PathBuf,
        name: String,
        first: PathBuf,
    },
}

/// Whether a path is a policy file (`.yaml` or `.yml`, not hidden — Kubernetes ConfigMap mounts add hidden
/// `..data` links that must be skipped).
fn is_policy_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    !hidden && yaml && path.is_file()
}

/// The policy files of a directory, sorted by name.
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::ReadDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_policy_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Parse the text of one policy file (one or more YAML documents).
pub fn parse_file(file: &Path, text: &str) -> Result<Vec<PolicyDocument>, PolicyError> {
    let values: Vec<serde_json::Value> =
        serde_saphyr::from_multiple_with_options(text, crate::yaml::options()).map_err(|e| {
            PolicyError::Yaml {
                file: file.to_owned(),
                reason: crate::yaml::describe(&e, 0),
            }
        })?;
    let mut documents = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        let invalid = |key: &str, reason: String| PolicyError::Invalid {
            file: file.to_owned(),
            document: index + 1,
            key: key.to_owned(),
            reason,
        };
        let document: PolicyDocument =
            crate::yaml::typed(&value).map_err(|(key, reason)| invalid(&key, reason))?;
        if document.api_version != API_VERSION {
            return Err(invalid(
                "apiVersion",
                format!("expected {API_VERSION}, found {:?}", document.api_version),
            ));
        }
        if document.kind != KIND {
            return Err(invalid(
                "kind",
                format!("expected {KIND}, found {:?}", document.kind),
            ));
        }
        if document.metadata.name.is_empty() {
            return Err(invalid("metadata.name", "must not be empty".into()));
        }
        if let Some(rule) = &document.spec.rules.registry_deprecated {
            for (i, d) in rule.registries.iter().flatten().enumerate() {
                if d.from.is_empty() || d.to.is_empty() {
                    return Err(invalid(
                        &format!("spec.rules.{}.registries[{i}]", RuleId::RegistryDeprecated),
                        "`from` and `to` must not be empty".into(),
                    ));
                }
            }
        }
        documents.push(document);
    }
    Ok(documents)
}

/// Load and validate every policy file of a directory. Any error rejects the whole set.
pub fn load_dir(dir: &Path) -> Result<Vec<LoadedPolicy>, PolicyError> {
    let mut loaded: Vec<LoadedPolicy> = Vec::new();
    for file in policy_files(dir)? {
        let text = std::fs::read_to_string(&file).map_err(|source| PolicyError::ReadFile {
            file: file.clone(),
            source,
        })?;
        let documents = parse_file(&file, &text)?;
        if documents.is_empty() {
            return Err(PolicyError::Empty { file });
        }
        for document in documents {
            if let Some(first) = loaded
                .iter()
                .find(|p| p.document.metadata.name == document.metadata.name)
            {
                return Err(PolicyError::DuplicateName {
                    file,
                    name: document.metadata.name,
                    first: first.file.clone(),
                });
            }
            loaded.push(LoadedPolicy {
                file: file.clone(),
                document,
            });
        }
    }
    if loaded.is_empty() {
        return Err(PolicyError::NoPolicies {
            dir: dir.to_owned(),
        });
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const GOOD: &str = r#"
apiVersion: pullgate.dev/v1alpha1
kind: ImagePolicy
metadata: {name: default}
spec:
  exclude: {namespaces: [kube-system], images: ["registry.internal/legacy/*"]}
  rules:
    tag-not-latest: {action: deny}
    registry-allowed: {action: off, allow: ["registry.example.com/*"]}
"#;

    #[test]
    fn the_documented_example_parses() {
        let docs = parse_file(Path::new("p.yaml"), GOOD).expect("valid");
        assert_eq!(docs.len(), 1);
        let rules = &docs[0].spec.rules;
        assert_eq!(
            rules.tag_not_latest.as_ref().and_then(|r| r.action),
            Some(Action::Deny)
        );
        assert_eq!(
            rules.registry_allowed.as_ref().map(|r| r.allow.len()),
            Some(1)
        );
        assert_eq!(
            docs[0].spec.exclude.namespaces[0].to_string(),
            "kube-system"
        );
    }

    #[test]
    fn several_documents_in_one_file() {
        let text = format!(
            "{GOOD}---\n{}\n---\n",
            GOOD.replace("name: default", "name: second")
        );
        let docs = parse_file(Path::new("p.yaml"), &text).expect("valid");
        assert_eq!(docs.len(), 2);
    }

    #[rstest]
    #[case::unknown_rule(
        GOOD.replace("tag-not-latest:", "tag-not-lates:"),
        "spec.rules.tag-not-lates",
        "unknown field `tag-not-lates`"
    )]
    #[case::bad_action(
        GOOD.replace("{action: deny}", "{action: block}"),
        "spec.rules.tag-not-latest.action",
        "unknown variant `block`"
    )]
    #[case::unknown_scope_key(
        GOOD.replace("exclude: {namespaces", "exclude: {namespace"),
        "spec.exclude.namespace",
        "unknown field `namespace`"
    )]
    #[case::wrong_api_version(
        GOOD.replace("v1alpha1", "v9"),
        "apiVersion",
        "expected pullgate.dev/v1alpha1"
    )]
    #[case::wrong_kind(
        GOOD.replace("kind: ImagePolicy", "kind: Policy"),
        "kind",
        "expected ImagePolicy"
    )]
    #[case::empty_glob(
        GOOD.replace("[kube-system]", "[\"\"]"),
        "spec.exclude.namespaces[0]",
        "pattern is empty"
    )]
    #[case::metadata_as_a_list(
        GOOD.replace("metadata: {name: default}", "metadata: [seqname]"),
        "metadata",
        "expected a mapping"
    )]
    #[case::spec_as_a_list(
        "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\nspec: [{}, {namespaces: [team]}, {tag-not-latest: [off]}]\n".to_owned(),
        "spec",
        "expected a mapping"
    )]
    #[case::rule_as_a_list(
        GOOD.replace("tag-not-latest: {action: deny}", "tag-not-latest: [off]"),
        "spec.rules.tag-not-latest",
        "expected a mapping"
    )]
    #[case::registry_allowed_as_a_list(
        GOOD.replace("registry-allowed: {action: off, allow: [\"registry.example.com/*\"]}", "registry-allowed: [deny, [], ['docker.io/*']]"),
        "spec.rules.registry-allowed",
        "expected a mapping"
    )]
    fn invalid_documents_name_the_key(
        #[case] text: String,
        #[case] key: &str,
        #[case] reason: &str,
    ) {
        let err = parse_file(Path::new("policies/bad.yaml"), &text).expect_err("invalid");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("policies/bad.yaml: document 1: {key}: ")),
            "{shown}"
        );
        assert!(shown.contains(reason), "{shown}");
    }

    #[test]
    fn broken_yaml_names_the_file() {
        let err = parse_file(Path::new("policies/x.yaml"), "spec: [unclosed").expect_err("bad");
        assert!(
            err.to_string()
                .starts_with("policies/x.yaml: not valid YAML"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_names_across_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), GOOD).expect("write");
        std::fs::write(dir.path().join("b.yml"), GOOD).expect("write");
        std::fs::write(dir.path().join("README.md"), "not a policy").expect("write");
        std::fs::write(dir.path().join(".hidden.yaml"), "garbage: [").expect("write");
        let err = load_dir(dir.path()).expect_err("duplicate");
        assert!(
            matches!(err, PolicyError::DuplicateName { ref name, .. } if name == "default"),
            "{err}"
        );
    }

    #[test]
    fn shipped_policies_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let loaded = load_dir(&dir).expect("shipped policies load");
        assert!(!loaded.is_empty());
    }
}
