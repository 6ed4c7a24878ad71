//! `--output sarif`: one SARIF 2.1.0 run with every rule's metadata (`tool.driver.rules`), one result
//! per finding (`level` error for deny, warning for warn) and per registry rule not run (`kind: open`,
//! `level: none`), each located at the file and line of the container's `image:` field; input errors
//! are tool execution notifications and make `executionSuccessful` false.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Value, json};

use super::{Report, SKIPPED_MESSAGE};
use crate::policy::{Action, RuleId};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The log, with its top-level keys in the order the specification lists them.
#[derive(Serialize)]
struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<Run<'a>>,
}

#[derive(Serialize)]
struct Run<'a> {
    tool: Value,
    invocations: Vec<Value>,
    results: Vec<SarifResult<'a>>,
    properties: Value,
}

/// Short and full description of each rule.
fn describe(rule: RuleId) -> (&'static str, &'static str) {
    match rule {
        RuleId::ImageReferenceValid => (
            "Image reference is valid",
            "The image is a valid reference, [registry/]repository[:tag][@sha256:digest] with a lowercase repository; kubelet reports InvalidImageName otherwise.",
        ),
        RuleId::TagNotLatest => (
            "Image tag is not latest",
            "The image has a tag other than latest, or a digest: with no tag or :latest, what runs can change without a deploy.",
        ),
        RuleId::PullPolicy => (
            "Pull policy fits the tag",
            "imagePullPolicy Never runs whatever the node has cached; IfNotPresent with a mutable tag lets nodes run stale copies.",
        ),
        RuleId::DigestPinned => (
            "Image is pinned by digest",
            "The image reference carries an @sha256: digest.",
        ),
        RuleId::RegistryAllowed => (
            "Registry is allowed",
            "The image matches none of the policy's denied patterns and, when it has allowed patterns, one of them.",
        ),
        RuleId::RegistryDeprecated => (
            "Registry is not frozen",
            "The image is not under a frozen or moved registry such as k8s.gcr.io.",
        ),
        RuleId::ImageExists => (
            "Image exists",
            "The image's tag, digest and repository exist in its registry (else the pod fails with ErrImagePull).",
        ),
        RuleId::PlatformSupported => (
            "Image runs on the pod's platforms",
            "The image has a variant for the platforms the pod may be scheduled on (else the container fails with exec format error).",
        ),
        RuleId::PullSecretValid => (
            "Pull credentials work",
            "The pod's pull secrets, its ServiceAccount's, or the node's credentials let it pull the image.",
        ),
        RuleId::RunAsNonRoot => (
            "runAsNonRoot can be verified",
            "With runAsNonRoot, kubelet must see a non-zero numeric user: runAsUser, else the image's USER (else CreateContainerConfigError).",
        ),
        RuleId::CommandSpecified => (
            "Container has a command",
            "The container's command/args or the image's ENTRYPOINT/CMD give the runtime something to run (else CreateContainerError: no command specified).",
        ),
        RuleId::ConfigPlatform => (
            "Index entries match their configs",
            "The image index entry a node selects is built for the platform it claims (else exec format error after a clean pull).",
        ),
        RuleId::PodOs => (
            "spec.os.name matches the nodes",
            "The pod declares the OS of every node it may be scheduled on (else kubelet rejects it: PodOSNotSupported).",
        ),
        RuleId::WindowsBuild => (
            "Image matches the Windows build",
            "A Windows node runs only images of a build it is compatible with: an index needs an entry for the node's build (else no matching manifest), a single image the node's build (else the container operating system does not match the host).",
        ),
        RuleId::RegistryReachable => (
            "Registry is reachable",
            "The image's registry answered within the time budget.",
        ),
        RuleId::RegistryTls => (
            "Registry TLS is trusted",
            "The registry's certificate is trusted as the nodes would trust it.",
        ),
        RuleId::RateLimited => (
            "Registry does not rate-limit pulls",
            "The registry did not answer 429 Too Many Requests.",
        ),
        RuleId::ImageSize => (
            "Image fits the nodes' disk",
            "What a node of each platform the pod may land on pulls (config and layers, compressed) is not larger than the policy's maxCompressedSize (else the pull fails with no space left on device).",
        ),
    }
}

/// `TagNotLatest` from `tag-not-latest`.
fn pascal(rule: RuleId) -> String {
    rule.as_str()
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A SARIF level of an action.
pub fn level(action: Action) -> &'static str {
    match action {
        Action::Deny => "error",
        Action::Warn => "warning",
        Action::Off => "none",
    }
}

/// `tool.driver.rules`: every rule's metadata (also `pullgate audit`'s).
pub fn rules() -> Vec<Value> {
    RuleId::ALL
        .iter()
        .map(|rule| {
            let (short, full) = describe(*rule);
            json!({
                "id": rule.as_str(),
                "name": pascal(*rule),
                "shortDescription": {"text": short},
                "fullDescription": {"text": full},
                "help": {"text": format!("{full} Each result's message ends with the fix.")},
                "defaultConfiguration": {"level": level(rule.default_action())},
                "properties": {
                    "tags": if rule.needs_registry() { vec!["registry"] } else { vec!["static"] },
                },
            })
        })
        .collect()
}

/// A URI reference for a path: relative paths stay relative, absolute ones become `file://` URIs;
/// characters outside RFC 3986's unreserved set and `/` are percent-encoded.
fn uri(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                encoded.push(byte as char)
            }
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    if path.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded
    }
}

/// The location of an input error: the file, and the line when known.
fn error_location(file: &str, line: Option<usize>) -> Value {
    let mut physical = json!({"artifactLocation": {"uri": uri(file)}});
    if let Some(line) = line.filter(|l| *l > 0) {
        physical["region"] = json!({"startLine": line});
    }
    json!({"physicalLocation": physical})
}

/// One result, serialised straight from the report (a large offline run has hundreds of thousands).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'a> {
    rule_id: &'static str,
    rule_index: usize,
    kind: &'static str,
    level: &'static str,
    message: Text,
    locations: [Location<'a>; 1],
    properties: ResultProperties<'a>,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location<'a> {
    physical_location: PhysicalLocation<'a>,
    logical_locations: [LogicalLocation<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation<'a> {
    artifact_location: ArtifactLocation<'a>,
    region: Region,
}

#[derive(Serialize)]
struct ArtifactLocation<'a> {
    uri: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogicalLocation<'a> {
    fully_qualified_name: &'a str,
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultProperties<'a> {
    document: usize,
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    container: &'a str,
    image: &'a str,
    image_path: &'a str,
}

/// Where each container is: its file's URI and its `Kind/namespace/name/container`.
struct Place {
    uri: String,
    logical: String,
}

pub fn sarif(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let index = |rule: RuleId| RuleId::ALL.iter().position(|r| *r == rule).unwrap_or(0);
    let places: Vec<Vec<Place>> = report
        .objects()
        .map(|(file, object)| {
            let uri = uri(&file.name);
            object
                .containers
                .iter()
                .map(|container| Place {
                    uri: uri.clone(),
                    logical: format!(
                        "{}/{}/{}/{}",
                        object.kind, object.namespace, object.name, container.name
                    ),
                })
                .collect()
        })
        .collect();
    let mut results = Vec::new();
    for ((_, object), places) in report.objects().zip(&places) {
        for (container, place) in object.containers.iter().zip(places) {
            let location = || {
                [Location {
                    physical_location: PhysicalLocation {
                        artifact_location: ArtifactLocation { uri: &place.uri },
                        region: Region {
                            start_line: container.line.unwrap_or(object.line).max(1),
                        },
                    },
                    logical_locations: [LogicalLocation {
                        fully_qualified_name: &place.logical,
                        kind: "object",
                    }],
                }]
            };
            let properties = || ResultProperties {
                document: object.document,
                kind: object.kind.as_str(),
                namespace: &object.namespace,
                name: &object.name,
                container: &container.name,
                image: &container.image,
                image_path: &container.image_path,
            };
            for finding in &container.findings {
                results.push(SarifResult {
                    rule_id: finding.rule.as_str(),
                    rule_index: index(finding.rule),
                    kind: "fail",
                    level: level(finding.action),
                    message: Text {
                        text: finding.deny_line(),
                    },
                    locations: location(),
                    properties: properties(),
                });
            }
            for rule in &container.skipped {
                results.push(SarifResult {
                    rule_id: rule.as_str(),
                    rule_index: index(*rule),
                    kind: "open",
                    level: "none",
                    message: Text {
                        text: format!(
                            "container {:?} (image {}): [{rule}] {SKIPPED_MESSAGE}",
                            container.name, container.image
                        ),
                    },
                    locations: location(),
                    properties: properties(),
                });
            }
        }
    }
    let notifications: Vec<Value> = report
        .errors()
        .map(|(file, error)| {
            let text = match error.document {
                Some(document) => format!("{}: document {document}: {}", file.name, error.message),
                None => format!("{}: {}", file.name, error.message),
            };
            json!({
                "level": "error",
                "message": {"text": text},
                "locations": [error_location(&file.name, error.line)],
            })
        })
        .collect();
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: vec![Run {
            tool: json!({"driver": {
                "name": "pullgate",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules(),
            }}),
            invocations: vec![json!({
                "executionSuccessful": notifications.is_empty(),
                "toolExecutionNotifications": notifications,
            })],
            results,
            properties: json!({"summary": report.summary(), "offline": report.offline}),
        }],
    };
    serde_json::to_writer_pretty(&mut *out, &log)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_encoded() {
        assert_eq!(uri("k8s/app one.yaml"), "k8s/app%20one.yaml");
        assert_eq!(uri("/tmp/x#1.yaml"), "file:///tmp/x%231.yaml");
        assert_eq!(uri("<stdin>"), "%3Cstdin%3E");
    }

    #[test]
    fn rule_names_are_pascal_case() {
        assert_eq!(pascal(RuleId::TagNotLatest), "TagNotLatest");
        assert_eq!(pascal(RuleId::RegistryTls), "RegistryTls");
    }
}
