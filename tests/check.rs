//! `pullgate check` over the fixture tree (`tests/fixtures/check/tree`), against real `docker-registry`
//! processes on 127.0.0.1: golden outputs for every format, online and `--offline`; the JUnit output
//! parsed as XML and counted; the SARIF output checked against SARIF 2.1.0's required properties; exit
//! codes.
//!
//! Golden files are in `tests/fixtures/check/golden`; `UPDATE_GOLDEN=1 cargo test --test check`
//! rewrites them (then read the diff).

mod check_common;
mod support;

use check_common::{
    Registries, Run, Tree, assert_golden, config, normalise, registries, run, tree,
};
use pullgate::check::{Exit, Input, OutputFormat};
use serde_json::Value;
use support::registry;
use support::webhook::bounded;

const FORMATS: [(OutputFormat, &str); 5] = [
    (OutputFormat::Text, "txt"),
    (OutputFormat::Json, "json"),
    (OutputFormat::Junit, "xml"),
    (OutputFormat::Sarif, "sarif.json"),
    (OutputFormat::Github, "github.txt"),
];

async fn check_tree(regs: &Registries, tree: &Tree, online: bool, format: OutputFormat) -> Run {
    run(
        config(
            vec![Input::Path(tree.root.clone())],
            regs.settings(),
            online,
            format,
        ),
        "",
    )
    .await
}

/// Every format, online: a Deployment with `latest`, a CronJob whose tag is missing, an arm64-only
/// image under an amd64 nodeSelector, Secrets whose credentials work and are rejected, a ServiceAccount
/// lending a secret, a `List`, a JSON file, a multi-document file with a broken document.
#[tokio::test]
async fn golden_outputs_online() {
    registry::install_crypto();
    bounded(async {
        let regs = registries().await;
        let replacements = regs.replacements();
        let tree = tree("tree", &replacements);
        for (format, extension) in FORMATS {
            let Run {
                exit,
                stdout,
                stderr,
            } = check_tree(&regs, &tree, true, format).await;
            assert_eq!(exit, Exit::Error, "a broken document makes it 2; {stderr}");
            assert_eq!(stderr, "", "no notices expected");
            assert_golden(
                &format!("online.{extension}"),
                &normalise(&stdout, &tree, &replacements),
            );
        }
    })
    .await;
}

/// Every format, `--offline`: static rules only, each registry rule that would run reported as skipped.
#[tokio::test]
async fn golden_outputs_offline() {
    registry::install_crypto();
    bounded(async {
        let regs = registries().await;
        let replacements = regs.replacements();
        let tree = tree("tree", &replacements);
        let before = regs.plain.requests().len() + regs.auth.requests().len();
        for (format, extension) in FORMATS {
            let run = check_tree(&regs, &tree, false, format).await;
            assert_eq!(run.exit, Exit::Error, "{}", run.stderr);
            assert_golden(
                &format!("offline.{extension}"),
                &normalise(&run.stdout, &tree, &replacements),
            );
        }
        let after = regs.plain.requests().len() + regs.auth.requests().len();
        assert_eq!(before, after, "--offline asked a registry");
    })
    .await;
}

/// The same report in JSON has one record per finding with the documented fields.
#[tokio::test]
async fn json_records_carry_every_documented_field() {
    registry::install_crypto();
    bounded(async {
        let regs = registries().await;
        let tree = tree("tree", &regs.replacements());
        let run = check_tree(&regs, &tree, true, OutputFormat::Json).await;
        let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
        assert_eq!(report["apiVersion"], "pullgate.dev/check/v1");
        let fields = [
            "file",
            "line",
            "document",
            "kind",
            "namespace",
            "name",
            "container",
            "image",
            "imagePath",
            "rule",
            "action",
            "message",
            "fix",
        ];
        let findings = report["findings"].as_array().expect("findings");
        assert!(!findings.is_empty());
        for finding in findings {
            let keys: Vec<&str> = finding
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys.len(), fields.len(), "{finding}");
            for field in fields {
                assert!(keys.contains(&field), "{field} missing in {finding}");
            }
        }
        let rules: Vec<(&str, &str, &str)> = findings
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or(""),
                    f["rule"].as_str().unwrap_or(""),
                    f["action"].as_str().unwrap_or(""),
                )
            })
            .collect();
        for expected in [
            ("web", "tag-not-latest", "deny"),
            ("nightly", "image-exists", "deny"),
            ("edge", "platform-supported", "deny"),
            ("rejected", "pull-secret-valid", "deny"),
            ("debug", "pull-policy", "warn"),
            ("once", "tag-not-latest", "deny"),
            ("once", "image-exists", "deny"),
        ] {
            assert!(rules.contains(&expected), "{expected:?} not in {rules:?}");
        }
        for passing in ["works", "via-service-account", "api", "pinned", "agent"] {
            assert!(
                !rules.iter().any(|(name, _, _)| *name == passing),
                "{passing} should pass: {rules:?}"
            );
        }
        let errors = report["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0]["document"], 4);
        assert_eq!(errors[0]["line"], 45);
        assert!(
            errors[0]["file"]
                .as_str()
                .unwrap_or("")
                .ends_with("tree/apps.yaml")
        );
    })
    .await;
}

/// Counts of `<testsuites>`, `<testsuite>` and `<testcase>` children, read with an XML parser.
#[derive(Debug, Default, PartialEq, Eq)]
struct JunitCounts {
    declared: [usize; 4],
    cases: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

fn junit_counts(xml: &str) -> JunitCounts {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut counts = JunitCounts::default();
    let mut suites_declared = [0usize; 4];
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().as_ref().to_vec();
                let attribute = |key: &str| -> usize {
                    e.try_get_attribute(key)
                        .expect("attribute")
                        .map(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .expect("value")
                                .parse()
                                .expect("number")
                        })
                        .unwrap_or(0)
                };
                match name.as_slice() {
                    b"testsuites" => {
                        counts.declared = [
                            attribute("tests"),
                            attribute("failures"),
                            attribute("errors"),
                            attribute("skipped"),
                        ]
                    }
                    b"testsuite" => {
                        for (i, key) in ["tests", "failures", "errors", "skipped"]
                            .iter()
                            .enumerate()
                        {
                            suites_declared[i] += attribute(key);
                        }
                    }
                    b"testcase" => counts.cases += 1,
                    b"failure" => counts.failures += 1,
                    b"error" => counts.errors += 1,
                    b"skipped" => counts.skipped += 1,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        counts.declared, suites_declared,
        "the suites add up to the total"
    );
    counts
}

#[tokio::test]
async fn junit_parses_as_xml_with_the_right_counts() {
    registry::install_crypto();
    bounded(async {
        let regs = registries().await;
        let tree = tree("tree", &regs.replacements());
        let online = junit_counts(
            &check_tree(&regs, &tree, true, OutputFormat::Junit)
                .await
                .stdout,
        );
        // Containers: web, migrate, api, report, proxy, works/app, rejected/app, build, shell, run,
        // pinned/app, agent; plus the broken document.
        assert_eq!(online.cases, 13, "{online:?}");
        // Failures: web (latest), report (missing tag), proxy (arm64), rejected (401), run (untagged).
        assert_eq!(
            (online.failures, online.errors, online.skipped),
            (5, 1, 0),
            "{online:?}"
        );
        assert_eq!(online.declared, [13, 5, 1, 0]);
        let offline = junit_counts(
            &check_tree(&regs, &tree, false, OutputFormat::Junit)
                .await
                .stdout,
        );
        // Offline: web and run still fail (static rules); every other container whose image the
        // registry would be asked about is skipped (not shell: imagePullPolicy Never; not agent:
        // kube-system is excluded).
        assert_eq!(
            (offline.failures, offline.errors, offline.skipped),
            (2, 1, 8),
            "{offline:?}"
        );
    })
    .await;
}

/// Keys each SARIF 2.1.0 object may have (the schema's `additionalProperties: false`) and must have.
#[rustfmt::skip] // one object per line: the table reads as a table
fn allowed(kind: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        "sarifLog" => (&["$schema", "version", "runs", "inlineExternalProperties", "properties"], &["version", "runs"]),
        "run" => (&["tool", "invocations", "conversion", "language", "versionControlProvenance", "originalUriBaseIds", "artifacts", "logicalLocations", "graphs", "results", "automationDetails", "runAggregates", "baselineGuid", "redactionTokens", "defaultEncoding", "defaultSourceLanguage", "newlineSequences", "columnKind", "externalPropertyFileReferences", "threadFlowLocations", "taxonomies", "addresses", "translations", "policies", "webRequests", "webResponses", "specialLocations", "properties"], &["tool"]),
        "tool" => (&["driver", "extensions", "properties"], &["driver"]),
        "toolComponent" => (&["guid", "name", "organization", "product", "productSuite", "shortDescription", "fullDescription", "fullName", "version", "semanticVersion", "dottedQuadFileVersion", "releaseDateUtc", "downloadUri", "informationUri", "globalMessageStrings", "notifications", "rules", "taxa", "locations", "language", "contents", "isComprehensive", "localizedDataSemanticVersion", "minimumRequiredLocalizedDataSemanticVersion", "associatedComponent", "translationMetadata", "supportedTaxonomies", "properties"], &["name"]),
        "reportingDescriptor" => (&["id", "deprecatedIds", "guid", "deprecatedGuids", "name", "deprecatedNames", "shortDescription", "fullDescription", "messageStrings", "defaultConfiguration", "helpUri", "help", "relationships", "properties"], &["id"]),
        "reportingConfiguration" => (&["enabled", "level", "rank", "parameters", "properties"], &[]),
        "multiformatMessageString" => (&["text", "markdown", "properties"], &["text"]),
        "message" => (&["text", "markdown", "id", "arguments", "properties"], &[]),
        "result" => (&["ruleId", "ruleIndex", "rule", "kind", "level", "message", "analysisTarget", "locations", "guid", "correlationGuid", "occurrenceCount", "partialFingerprints", "fingerprints", "stacks", "codeFlows", "graphs", "graphTraversals", "relatedLocations", "suppressions", "baselineState", "rank", "attachments", "hostedViewerUri", "workItemUris", "provenance", "fixes", "taxa", "webRequest", "webResponse", "properties"], &["message"]),
        "location" => (&["id", "physicalLocation", "logicalLocations", "message", "annotations", "relationships", "properties"], &[]),
        "physicalLocation" => (&["address", "artifactLocation", "region", "contextRegion", "properties"], &[]),
        "artifactLocation" => (&["uri", "uriBaseId", "index", "description", "properties"], &[]),
        "region" => (&["startLine", "startColumn", "endLine", "endColumn", "charOffset", "charLength", "byteOffset", "byteLength", "snippet", "message", "sourceLanguage", "properties"], &[]),
        "logicalLocation" => (&["name", "index", "fullyQualifiedName", "decoratedName", "parentIndex", "kind", "properties"], &[]),
        "invocation" => (&["commandLine", "arguments", "responseFiles", "startTimeUtc", "endTimeUtc", "exitCode", "ruleConfigurationOverrides", "notificationConfigurationOverrides", "toolExecutionNotifications", "toolConfigurationNotifications", "exitCodeDescription", "exitSignalName", "exitSignalNumber", "processStartFailureMessage", "executionSuccessful", "machine", "account", "processId", "executableLocation", "workingDirectory", "environmentVariables", "stdin", "stdout", "stderr", "stdoutStderr", "properties"], &["executionSuccessful"]),
        "notification" => (&["locations", "message", "level", "threadId", "timeUtc", "exception", "descriptor", "associatedRule", "properties"], &["message"]),
        other => panic!("no schema entry for {other}"),
    }
}

fn object<'a>(value: &'a Value, kind: &str) -> &'a serde_json::Map<String, Value> {
    let map = value
        .as_object()
        .unwrap_or_else(|| panic!("{kind} is not an object: {value}"));
    let (keys, required) = allowed(kind);
    for key in map.keys() {
        assert!(keys.contains(&key.as_str()), "{kind} may not have {key:?}");
    }
    for key in required {
        assert!(map.contains_key(*key), "{kind} lacks required {key:?}");
    }
    map
}

const LEVELS: [&str; 4] = ["none", "note", "warning", "error"];
const KINDS: [&str; 6] = [
    "notApplicable",
    "pass",
    "fail",
    "review",
    "open",
    "informational",
];

fn check_message(value: &Value, kind: &str) {
    let message = object(value, kind);
    assert!(
        message.get("text").is_some_and(Value::is_string) || message.contains_key("id"),
        "{kind} needs text or id"
    );
}

fn check_location(value: &Value) {
    let location = object(value, "location");
    if let Some(physical) = location.get("physicalLocation") {
        let physical = object(physical, "physicalLocation");
        assert!(
            physical.contains_key("artifactLocation") || physical.contains_key("address"),
            "physicalLocation needs artifactLocation or address"
        );
        let artifact = object(&physical["artifactLocation"], "artifactLocation");
        let uri = artifact["uri"].as_str().expect("uri is a string");
        assert!(
            !uri.is_empty() && !uri.contains([' ', '<', '>', '"']),
            "uri-reference: {uri}"
        );
        if let Some(region) = physical.get("region") {
            let region = object(region, "region");
            assert!(region["startLine"].as_u64().expect("startLine integer") >= 1);
        }
    }
    for logical in location
        .get("logicalLocations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        object(logical, "logicalLocation");
    }
}

/// SARIF 2.1.0's structure: required properties, no unknown ones, enums, ruleIndex pointing at its
/// rule, `level` other than none only with kind `fail`.
fn check_sarif(log: &Value) {
    let root = object(log, "sarifLog");
    assert_eq!(root["version"], "2.1.0");
    let runs = root["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let run = object(&runs[0], "run");
    let tool = object(&run["tool"], "tool");
    let driver = object(&tool["driver"], "toolComponent");
    assert_eq!(driver["name"], "pullgate");
    let rules = driver["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), pullgate::policy::RuleId::ALL.len());
    for rule in rules {
        let rule = object(rule, "reportingDescriptor");
        assert!(rule["id"].is_string());
        for key in ["shortDescription", "fullDescription", "help"] {
            object(&rule[key], "multiformatMessageString");
        }
        let configuration = object(&rule["defaultConfiguration"], "reportingConfiguration");
        assert!(LEVELS.contains(&configuration["level"].as_str().expect("level")));
    }
    for invocation in run["invocations"].as_array().expect("invocations") {
        let invocation = object(invocation, "invocation");
        assert!(invocation["executionSuccessful"].is_boolean());
        for notification in invocation["toolExecutionNotifications"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let notification = object(notification, "notification");
            check_message(&notification["message"], "message");
            assert!(LEVELS.contains(&notification["level"].as_str().expect("level")));
            for location in notification["locations"].as_array().into_iter().flatten() {
                check_location(location);
            }
        }
    }
    for result in run["results"].as_array().expect("results") {
        let result = object(result, "result");
        check_message(&result["message"], "message");
        let index = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(
            rules[index]["id"], result["ruleId"],
            "ruleIndex points at its rule"
        );
        let level = result["level"].as_str().expect("level");
        let kind = result["kind"].as_str().expect("kind");
        assert!(LEVELS.contains(&level) && KINDS.contains(&kind));
        assert!(
            level == "none" || kind == "fail",
            "level {level} needs kind fail"
        );
        let locations = result["locations"].as_array().expect("locations");
        assert!(!locations.is_empty());
        locations.iter().for_each(check_location);
    }
}

#[tokio::test]
async fn sarif_has_the_structure_of_sarif_2_1_0() {
    registry::install_crypto();
    bounded(async {
        let regs = registries().await;
        let tree = tree("tree", &regs.replacements());
        for online in [true, false] {
            let run = check_tree(&regs, &tree, online, OutputFormat::Sarif).await;
            let log: Value = serde_json::from_str(&run.stdout).expect("JSON");
            check_sarif(&log);
            let results = log["runs"][0]["results"].as_array().expect("results");
            let open = results.iter().filter(|r| r["kind"] == "open").count();
            assert_eq!(
                open > 0,
                !online,
                "skipped registry rules are `open` results offline"
            );
            assert_eq!(
                log["runs"][0]["invocations"][0]["executionSuccessful"],
                false
            );
        }
    })
    .await;
}

#[tokio::test]
async fn exit_codes_follow_the_findings() {
    registry::install_crypto();
    bounded(async {
        let regs = registries().await;
        let replacements = regs.replacements();
        let tree = tree("tree", &replacements);
        let file = |name: &str| vec![Input::Path(tree.root.join(name))];
        let go = |inputs, warnings_as_errors| {
            let mut config = config(inputs, regs.settings(), true, OutputFormat::Text);
            config.warnings_as_errors = warnings_as_errors;
            run(config, "")
        };
        // Everything passes.
        let pinned = go(file("pod.json"), false).await;
        assert_eq!(pinned.exit, Exit::Passed, "{}", pinned.stdout);
        assert!(pinned.stdout.ends_with("1 objects, 1 images: 0 denied, 0 warnings\n"), "{}", pinned.stdout);
        // Deny findings.
        assert_eq!(go(file("cronjob.yaml"), false).await.exit, Exit::Denied);
        // Only a warning (imagePullPolicy Never) — plus a deny in the same List, so use stdin.
        let never = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: c, image: {}/team/api:v1, imagePullPolicy: Never}}\n",
            regs.plain.host()
        );
        let mut config_never = config(vec![Input::Stdin], regs.settings(), true, OutputFormat::Text);
        assert_eq!(run(config_never.clone(), &never).await.exit, Exit::Passed);
        config_never.warnings_as_errors = true;
        let strict = run(config_never, &never).await;
        assert_eq!(strict.exit, Exit::Denied, "{}", strict.stdout);
        assert!(strict.stdout.contains("<stdin>:6: warn"), "{}", strict.stdout);
        // Input errors win over findings.
        assert_eq!(go(file("apps.yaml"), false).await.exit, Exit::Error);
        let missing = go(file("no-such-file.yaml"), false).await;
        assert_eq!(missing.exit, Exit::Error);
        assert!(missing.stdout.contains("no-such-file.yaml: error: cannot read"), "{}", missing.stdout);
    })
    .await;
}

/// A directory without -R reads only its own files, and says so when it holds none.
#[tokio::test]
async fn directories_are_read_like_kubectl() {
    let tree = tree("tree", &[("REGISTRY", "registry.example.com".to_owned())]);
    let mut config = config(
        vec![Input::Path(tree.root.join("nested"))],
        Default::default(),
        false,
        OutputFormat::Text,
    );
    config.recursive = false;
    let flat = run(config.clone(), "").await;
    assert_eq!(flat.exit, Exit::Passed, "{}", flat.stdout);
    config.inputs = vec![Input::Path(tree.root.clone())];
    let top_only = run(config.clone(), "").await;
    assert!(!top_only.stdout.contains("agent"), "{}", top_only.stdout);
    let empty = tree.dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    config.inputs = vec![Input::Path(empty)];
    let none = run(config, "").await;
    assert_eq!(none.exit, Exit::Error);
    assert!(
        none.stdout.contains(
            "no .yaml, .yml or .json files in this directory (use -R to read subdirectories)"
        ),
        "{}",
        none.stdout
    );
}
