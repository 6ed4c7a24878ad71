//! From documents to what `check` works on: the workloads (every pod-template kind the webhook handles),
//! and the pull Secrets and ServiceAccounts the input carries. `List` and `<Kind>List` documents are
//! opened; any other kind is skipped silently. Documents that are not Kubernetes objects, and
//! workloads whose pod spec cannot be read, are input errors.

use std::collections::{HashMap, VecDeque};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use serde_json::Value;

use super::input::{Document, ImageLine, SourceText, parse_documents};
use crate::facts::{printable, truncate_chars};
use crate::workload::{Workload, WorkloadKind};

/// A workload found in the input.
#[derive(Debug, Clone)]
pub struct WorkloadEntry {
    /// 1-based document index in its file.
    pub document: usize,
    /// Line of the document.
    pub line: usize,
    pub workload: Workload,
    /// Line of each container's `image` field, in [`Workload::containers`] order, when found.
    pub image_lines: Vec<Option<usize>>,
}

/// Something wrong with the input: a file that cannot be read, a document that does not parse or is
/// not a Kubernetes object, a workload whose pod spec cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub document: Option<usize>,
    pub line: Option<usize>,
    pub message: String,
}

/// One entry of a file, in document order.
#[derive(Debug, Clone)]
pub enum Entry {
    Workload(Box<WorkloadEntry>),
    Error(InputError),
}

/// One input file and what it holds.
#[derive(Debug, Clone)]
pub struct FileEntries {
    pub name: String,
    pub entries: Vec<Entry>,
}

/// Everything read from the input.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub files: Vec<FileEntries>,
    /// Secrets with their namespace (the object's, else the default one), in input order.
    pub secrets: Vec<(String, Secret)>,
    /// ServiceAccounts with their namespace, in input order.
    pub service_accounts: Vec<(String, ServiceAccount)>,
    /// Documents that are not Kubernetes objects are skipped, not input errors.
    skip_non_kubernetes: bool,
}

impl Manifests {
    /// Split, parse and classify every source. `default_namespace` is where objects without a
    /// namespace go (Secrets and ServiceAccounts here; workloads keep `None` for the engine). With
    /// `skip_non_kubernetes`, a document that is not a Kubernetes object (not a mapping, no kind, no
    /// apiVersion) is left out instead of being an input error.
    pub fn collect(
        sources: Vec<SourceText>,
        default_namespace: &str,
        skip_non_kubernetes: bool,
    ) -> Self {
        let mut manifests = Self {
            skip_non_kubernetes,
            ..Self::default()
        };
        for source in sources {
            let mut file = FileEntries {
                name: source.name,
                entries: Vec::new(),
            };
            match source.text {
                Err(message) => file.entries.push(Entry::Error(InputError {
                    document: None,
                    line: None,
                    message,
                })),
                Ok(text) => {
                    for document in parse_documents(&text) {
                        match document {
                            Ok(document) => {
                                manifests.add_document(&mut file, document, default_namespace)
                            }
                            Err(e) => file.entries.push(Entry::Error(InputError {
                                document: Some(e.index),
                                line: Some(e.line),
                                message: e.message,
                            })),
                        }
                    }
                }
            }
            manifests.files.push(file);
        }
        manifests
    }

    fn add_document(&mut self, file: &mut FileEntries, document: Document, namespace: &str) {
        let Document {
            index,
            line,
            value,
            images,
        } = document;
        let mut context = Context {
            file,
            document: index,
            line,
            namespace,
            lines: LineMatcher::new(&images),
        };
        self.add_object(&mut context, value, None, "");
    }

    /// One object (a document, or an item of a list); `inherited` is the `(apiVersion, kind)` a
    /// `<Kind>List` gives items that name none; `label` prefixes messages about list items.
    fn add_object(
        &mut self,
        cx: &mut Context<'_>,
        value: Value,
        inherited: Option<(&str, &str)>,
        label: &str,
    ) {
        // Another tool's YAML, when asked to pass over it (only whole documents: a list's items are
        // Kubernetes objects or errors).
        let other_yaml = self.skip_non_kubernetes && inherited.is_none() && label.is_empty();
        let error = |cx: &mut Context<'_>, message: String| {
            cx.file.entries.push(Entry::Error(InputError {
                document: Some(cx.document),
                line: Some(cx.line),
                message: format!("{label}{message}"),
            }))
        };
        let not_an_object = |cx: &mut Context<'_>, message: String| {
            if !other_yaml {
                error(cx, message);
            }
        };
        let object = match &value {
            Value::Null => return,
            Value::Object(object) => object,
            other => {
                let what = match other {
                    Value::Array(_) => "a sequence",
                    Value::String(_) => "a string",
                    _ => "a scalar",
                };
                return not_an_object(
                    cx,
                    format!("not a Kubernetes object: the document is {what}"),
                );
            }
        };
        // Text from the object reaches messages: cut, never echoed whole.
        let text = |key: &str| object.get(key).and_then(Value::as_str).map(echo);
        let (api_version, kind) = match (text("apiVersion"), text("kind"), inherited) {
            (Some(api_version), Some(kind), _) => (api_version, kind),
            (api_version, None, Some((list_api_version, list_kind))) => (
                api_version.unwrap_or_else(|| list_api_version.to_owned()),
                list_kind.to_owned(),
            ),
            (None, Some(kind), Some((list_api_version, _))) => (list_api_version.to_owned(), kind),
            (_, None, None) => {
                return not_an_object(cx, "not a Kubernetes object: it has no kind".into());
            }
            (None, Some(kind), None) => {
                return not_an_object(cx, format!("{kind} has no apiVersion"));
            }
        };
        if is_list(&kind, object) {
            let item_kind = kind.strip_suffix("List").unwrap_or_default().to_owned();
            let inherit =
                (!item_kind.is_empty()).then_some((api_version.as_str(), item_kind.as_str()));
            let Value::Object(mut object) = value else {
                return;
            };
            let Some(Value::Array(items)) = object.remove("items") else {
                return;
            };
            for (i, item) in items.into_iter().enumerate() {
                let label = format!("{label}{kind} item {}: ", i + 1);
                self.add_object(cx, item, inherit, &label);
            }
            return;
        }
        let group = api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
            .to_owned();
        let name = echo(&object_name(object));
        let namespace = echo(
            object
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .unwrap_or(cx.namespace),
        );
        if let Some(workload_kind) = WorkloadKind::from_group_kind(&group, &kind) {
            match Workload::from_object(workload_kind, &value) {
                Ok(workload) => {
                    let image_lines = workload
                        .containers()
                        .iter()
                        .map(|c| cx.lines.take(&c.image))
                        .collect();
                    cx.file
                        .entries
                        .push(Entry::Workload(Box::new(WorkloadEntry {
                            document: cx.document,
                            line: cx.line,
                            workload,
                            image_lines,
                        })));
                }
                Err(e) => error(cx, format!("{kind} {namespace}/{name}: {e}")),
            }
            return;
        }
        match (group.as_str(), kind.as_str()) {
            ("", "Secret") => match secret(value) {
                Ok(secret) => self.secrets.push((namespace, secret)),
                Err(e) => error(cx, format!("Secret {namespace}/{name}: {e}")),
            },
            ("", "ServiceAccount") => match serde_json::from_value::<ServiceAccount>(value) {
                Ok(account) => self.service_accounts.push((namespace, account)),
                Err(e) => error(cx, format!("ServiceAccount {namespace}/{name}: {e}")),
            },
            _ => {}
        }
    }
}

/// Where the current document is, and its `image:` lines still to be matched.
struct Context<'a> {
    file: &'a mut FileEntries,
    document: usize,
    line: usize,
    namespace: &'a str,
    lines: LineMatcher,
}

/// Whether the object is a `List` or `<Kind>List` with an `items` sequence.
fn is_list(kind: &str, object: &serde_json::Map<String, Value>) -> bool {
    kind.ends_with("List") && object.get("items").is_some_and(Value::is_array)
}

/// Longest piece of user text (kind, name, namespace) echoed in a message.
const ECHO_MAX: usize = 256;

/// User text as a message may quote it: printable and at most [`ECHO_MAX`] characters.
fn echo(text: &str) -> String {
    truncate_chars(&printable(text), ECHO_MAX)
}

fn object_name(object: &serde_json::Map<String, Value>) -> String {
    let metadata = object.get("metadata");
    let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str);
    text("name")
        .or_else(|| text("generateName"))
        .unwrap_or("")
        .to_owned()
}

/// A Secret as the API server stores it: `stringData` merged into `data` (and winning). Errors name the
/// field, never its value.
fn secret(value: Value) -> Result<Secret, String> {
    let mut secret: Secret = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        match path.split('.').next() {
            Some("data") => format!("{path} is not base64 text"),
            Some("stringData") => format!("{path} is not a string"),
            _ => format!("{path}: {}", e.into_inner()),
        }
    })?;
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (key, text) in strings {
            data.insert(key, ByteString(text.into_bytes()));
        }
    }
    Ok(secret)
}

/// Matches containers to the `image:` lines of their document: the first unused line with the same
/// value, so repeated images map to successive lines.
struct LineMatcher {
    lines: HashMap<String, VecDeque<usize>>,
}

impl LineMatcher {
    fn new(found: &[ImageLine]) -> Self {
        let mut lines: HashMap<String, VecDeque<usize>> = HashMap::new();
        for line in found {
            lines
                .entry(line.image.clone())
                .or_default()
                .push_back(line.line);
        }
        Self { lines }
    }

    fn take(&mut self, image: &str) -> Option<usize> {
        self.lines.get_mut(image)?.pop_front()
    }
}
