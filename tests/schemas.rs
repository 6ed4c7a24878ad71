//! JSON Schemas of the policy file (`policies/imagepolicy.schema.json`) and of the settings file
//! (`deploy/settings.schema.json`), generated from the same types pullgate reads them with (schemars):
//! the checked-in files are what the types generate (`UPDATE_SCHEMAS=1` rewrites them), every shipped
//! file validates, and every shape pullgate refuses is refused by the schema too.

use std::path::{Path, PathBuf};

use pullgate::config::Settings;
use pullgate::policy::PolicyDocument;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The schema the types generate, after checking it against the file (or rewriting the file).
fn schema(generated: schemars::Schema, file: &str) -> Value {
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&generated).expect("schema JSON")
    );
    let path = root().join(file);
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &text).expect("write schema");
    }
    let checked_in = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{file}: {e} (run with UPDATE_SCHEMAS=1 to create it)"));
    assert_eq!(
        checked_in, text,
        "{file} is not what the types generate: run the tests with UPDATE_SCHEMAS=1"
    );
    serde_json::from_str(&text).expect("schema")
}

/// Every YAML document of a text, as pullgate reads its own files.
fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple_with_options::<Value>(text, pullgate::yaml::options())
        .expect("YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn valid(schema: &Value, document: &Value) -> Result<(), String> {
    let validator = jsonschema::validator_for(schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_policy_schema_accepts_shipped_policies_and_refuses_what_pullgate_refuses() {
    let schema = schema(
        schemars::schema_for!(PolicyDocument),
        "policies/imagepolicy.schema.json",
    );
    let shipped: Vec<PathBuf> = yaml_files(&root().join("policies"))
        .into_iter()
        .chain(yaml_files(&root().join("fuzz/corpus/policy_file")))
        .collect();
    assert!(shipped.len() >= 3, "{shipped:?}");
    for file in shipped {
        let text = std::fs::read_to_string(&file).expect("read");
        pullgate::policy::parse_file(&file, &text)
            .unwrap_or_else(|e| panic!("pullgate reads it: {e}"));
        for document in documents(&text) {
            valid(&schema, &document).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
    }
    let good = "apiVersion: pullgate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p}\nspec:\n  rules:\n    tag-not-latest: {action: deny}\n    registry-allowed: {action: off, allow: ['r.example/*']}\n";
    for refused in [
        good.replace("metadata: {name: p}", "metadata: [seqname]"),
        good.replace(
            "spec:\n  rules:\n    tag-not-latest: {action: deny}\n    registry-allowed: {action: off, allow: ['r.example/*']}\n",
            "spec: [{}, {namespaces: [team]}, {tag-not-latest: [off]}]\n",
        ),
        good.replace("tag-not-latest: {action: deny}", "tag-not-latest: [off]"),
        good.replace(
            "registry-allowed: {action: off, allow: ['r.example/*']}",
            "registry-allowed: [deny, [], ['docker.io/*']]",
        ),
        good.replace("action: deny", "action: block"),
        good.replace("tag-not-latest", "tag-not-lates"),
        good.replace("['r.example/*']", "['']"),
    ] {
        let document = &documents(&refused)[0];
        assert!(
            pullgate::policy::parse_file(Path::new("p.yaml"), &refused).is_err(),
            "pullgate refuses {refused}"
        );
        assert!(valid(&schema, document).is_err(), "the schema refuses {refused}");
    }
}

#[test]
fn the_settings_schema_accepts_shipped_settings_and_refuses_what_pullgate_refuses() {
    let schema = schema(
        schemars::schema_for!(Settings),
        "deploy/settings.schema.json",
    );
    let shipped = [
        root().join("deploy/base/config.yaml"),
        root().join("fuzz/corpus/settings/seed-0.yaml"),
    ];
    for file in &shipped {
        let text = std::fs::read_to_string(file).expect("read");
        Settings::parse(file, &text).unwrap_or_else(|e| panic!("pullgate reads it: {e}"));
        for document in documents(&text) {
            valid(&schema, &document).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
    }
    for refused in [
        "resolution: {budgetSeconds: -1}",
        "resolution: {budgetSeconds: 0}",
        "resolution: {perRegistryConcurrency: 0}",
        "rateLimitProbes: [{registry: docker.io, intervalSeconds: 0}]",
        "server: {maxConnections: 0}",
        "server: {maxRequestBytes: 10}",
        "server: [maxRequestBytes]",
        "serverz: {}",
        "registries: {\"r.example\": [insecure]}",
        "registries: {\"https://r.example\": {insecure: true}}",
        "nodePlatforms: [linux]",
        "credentialProviders: {config: /c, binDir: /b, timeoutSeconds: 0}",
    ] {
        assert!(
            Settings::parse(Path::new("c.yaml"), refused).is_err(),
            "pullgate refuses {refused}"
        );
        let document = &documents(refused)[0];
        assert!(
            valid(&schema, document).is_err(),
            "the schema refuses {refused}"
        );
    }
}

#[test]
fn the_shipped_policy_names_its_schema_for_editors() {
    let text = std::fs::read_to_string(root().join("policies/default.yaml")).expect("policy");
    let first = text.lines().next().unwrap_or("");
    let schema = first
        .strip_prefix("# yaml-language-server: $schema=")
        .unwrap_or_else(|| panic!("first line is not a schema modeline: {first}"));
    assert!(root().join("policies").join(schema).is_file(), "{schema}");
}
