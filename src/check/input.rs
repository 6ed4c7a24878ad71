//! Reading manifests: files, directories (`-R` for subdirectories) and standard input, split into
//! YAML or JSON documents, each parsed on its own so that one broken document is reported — with its
//! file, index and line — while the others are still checked.
//!
//! Documents are split at `---` and `...` lines (YAML forbids those markers inside a document), so a
//! document's line numbers are known before it is parsed; the lines of `image:` fields are found by a
//! text scan of the document and matched to containers by value later ([`ImageLines`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// What `-f` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `-`: read standard input.
    Stdin,
    /// A file, or a directory of `.yaml`, `.yml` and `.json` files.
    Path(PathBuf),
}

impl Input {
    /// `-` is standard input; anything else a path.
    pub fn from_arg(arg: PathBuf) -> Self {
        if arg.as_os_str() == "-" {
            Self::Stdin
        } else {
            Self::Path(arg)
        }
    }
}

/// How standard input is named in reports.
pub const STDIN_NAME: &str = "<stdin>";

/// Extensions read from directories (as `kubectl apply -f DIR`).
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];
/// Largest file (or standard input) `check` reads.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// Largest YAML document `check` parses.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// One file's text, or why it could not be had.
#[derive(Debug)]
pub struct SourceText {
    /// The path as given (joined with directory entries), or [`STDIN_NAME`].
    pub name: String,
    pub text: Result<String, String>,
}

/// Read every input in order; directories are listed sorted by name. Problems (missing paths, unreadable
/// or non-UTF-8 files, directories with no manifests) are returned as sources with an error.
pub fn read_inputs(inputs: &[Input], recursive: bool, stdin: &mut dyn Read) -> Vec<SourceText> {
    let mut sources = Vec::new();
    let mut stdin_read = false;
    for input in inputs {
        match input {
            Input::Stdin if stdin_read => sources.push(SourceText {
                name: STDIN_NAME.into(),
                text: Err("`-` is given more than once; standard input is read once".into()),
            }),
            Input::Stdin => {
                stdin_read = true;
                let text = read_capped(&mut *stdin)
                    .map_err(|e| format!("cannot read standard input: {e}"))
                    .and_then(utf8);
                sources.push(SourceText {
                    name: STDIN_NAME.into(),
                    text,
                });
            }
            Input::Path(path) => read_path(path, recursive, true, &mut sources),
        }
    }
    sources
}

fn read_path(path: &Path, recursive: bool, top: bool, sources: &mut Vec<SourceText>) {
    let name = path.display().to_string();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) => {
            sources.push(SourceText {
                name,
                text: Err(format!("cannot read: {e}")),
            });
            return;
        }
    };
    if !metadata.is_dir() {
        let text = std::fs::File::open(path)
            .and_then(read_capped)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(utf8);
        sources.push(SourceText { name, text });
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => {
            sources.push(SourceText {
                name,
                text: Err(format!("cannot list directory: {e}")),
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    let before = sources.len();
    for entry in paths {
        // A symlink to a directory is not followed: it could loop.
        let is_dir = std::fs::symlink_metadata(&entry).is_ok_and(|m| m.is_dir());
        if is_dir {
            if recursive {
                read_path(&entry, recursive, false, sources);
            }
        } else if has_manifest_extension(&entry) {
            read_path(&entry, recursive, false, sources);
        }
    }
    if top && sources.len() == before {
        let hint = if recursive {
            ""
        } else {
            " (use -R to read subdirectories)"
        };
        sources.push(SourceText {
            name,
            text: Err(format!(
                "no .yaml, .yml or .json files in this directory{hint}"
            )),
        });
    }
}

/// All of `reader`, or an error past [`MAX_FILE_BYTES`] (read no further than that).
fn read_capped(reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "larger than {} MiB, the most pullgate check reads from one input",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    Ok(bytes)
}

fn has_manifest_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e))
}

fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// One document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based position among the file's non-empty documents.
    pub index: usize,
    /// 1-based line of the document's first content line.
    pub line: usize,
    pub value: Value,
    /// Every `image` field found in the document's text, in order.
    pub images: Vec<ImageLine>,
}

/// A document that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    pub index: usize,
    /// Where the error is, else where the document starts.
    pub line: usize,
    pub message: String,
}

/// An `image:` field as written: its line and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLine {
    pub line: usize,
    pub image: String,
}

/// Split a file into documents and parse each: a JSON stream when the text starts with `{` or `[` (and
/// parses as JSON), else YAML. Empty documents (blank, comments only) are skipped.
pub fn parse_documents(text: &str) -> Vec<Result<Document, DocumentError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Some(documents) = parse_json_stream(text) {
            return documents;
        }
    }
    split_yaml(text)
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| parse_yaml_chunk(i + 1, &chunk))
        .collect()
}

/// A JSON stream (one or more values, as `kubectl get -o json` prints), or `None` when the first value
/// is not JSON (it may be a YAML flow mapping). A later error ends the stream with that error.
fn parse_json_stream(text: &str) -> Option<Vec<Result<Document, DocumentError>>> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut documents = Vec::new();
    let mut lines = LineCounter::default();
    let mut start = 0;
    loop {
        let skipped = text[start..].len() - text[start..].trim_start().len();
        let value_start = start + skipped;
        match stream.next() {
            None => return Some(documents),
            Some(Ok(value)) => {
                let end = stream.byte_offset();
                let line = lines.line_at(text, value_start);
                documents.push(Ok(Document {
                    index: documents.len() + 1,
                    line,
                    value,
                    images: scan_images(&text[value_start..end], line),
                }));
                start = end;
            }
            Some(Err(_)) if documents.is_empty() => return None,
            Some(Err(e)) => {
                documents.push(Err(DocumentError {
                    index: documents.len() + 1,
                    line: e.line(),
                    message: format!("not valid JSON: {e}"),
                }));
                return Some(documents);
            }
        }
    }
}

/// 1-based line numbers of increasing byte offsets, counting each newline once.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    newlines: usize,
}

impl LineCounter {
    fn line_at(&mut self, text: &str, offset: usize) -> usize {
        let offset = offset.min(text.len());
        if offset > self.offset {
            self.newlines += text.as_bytes()[self.offset..offset]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.offset = offset;
        }
        self.newlines + 1
    }
}

/// The text of one YAML document and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    /// 1-based line where the chunk's text starts (its `---` line, when it has one).
    first_line: usize,
    /// 1-based line of the first content line.
    content_line: usize,
    text: String,
}

/// Whether `line` starts with the marker (`---` or `...`) followed by nothing or blank space.
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Whether a line holds YAML content (not blank, a comment, or a directive).
fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    !(trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with('%'))
}

/// Split YAML text at document markers, dropping documents with no content.
fn split_yaml(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    let mut content_line = None;
    let mut has_marker = false;
    let mut close = |current: &mut String, first_line: usize, content_line: Option<usize>| {
        if let Some(content_line) = content_line {
            chunks.push(Chunk {
                first_line,
                content_line,
                text: std::mem::take(current),
            });
        }
        current.clear();
    };
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let number = i + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_marker(bare, "---") {
            // Directives and comments before the first marker belong to this document.
            if content_line.is_some() || has_marker {
                close(&mut current, first_line, content_line.take());
                first_line = number;
            }
            has_marker = true;
            current.push_str(line);
            if is_content(&bare[3..]) {
                content_line = Some(number);
            }
            continue;
        }
        if is_marker(bare, "...") {
            close(&mut current, first_line, content_line.take());
            first_line = number + 1;
            has_marker = false;
            continue;
        }
        if content_line.is_none() && is_content(bare) {
            content_line = Some(number);
        }
        current.push_str(line);
    }
    close(&mut current, first_line, content_line);
    chunks
}

fn parse_yaml_chunk(index: usize, chunk: &Chunk) -> Result<Document, DocumentError> {
    if chunk.text.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError {
            index,
            line: chunk.content_line,
            message: format!(
                "the document is {} MiB; pullgate check reads documents of at most {} MiB (Kubernetes objects are at most 1.5 MB)",
                chunk.text.len() / (1024 * 1024),
                MAX_DOCUMENT_BYTES / (1024 * 1024)
            ),
        });
    }
    match serde_saphyr::from_str_with_options::<Value>(&chunk.text, crate::yaml::manifest_options())
    {
        Ok(value) => Ok(Document {
            index,
            line: chunk.content_line,
            value,
            images: scan_images(&chunk.text, chunk.first_line),
        }),
        Err(error) => {
            let offset = chunk.first_line - 1;
            let line = error
                .location()
                .map(|l| l.line() as usize)
                .filter(|l| *l > 0)
                .map_or(chunk.content_line, |l| l + offset);
            Err(DocumentError {
                index,
                line,
                message: format!("not valid YAML: {}", crate::yaml::describe(&error, offset)),
            })
        }
    }
}

/// The keys whose scalar values are image references: containers' `image`, image volumes' `reference`.
const IMAGE_KEYS: [&str; 2] = ["image", "reference"];

/// Every `image` (and image volume `reference`) key with a scalar value in the text, with its line
/// (`first_line` is the text's first). Handles block style (`image: x`, `- image: "x"`), flow style
/// (`{name: a, image: x}`) and JSON (`"image": "x",`), several per line.
pub fn scan_images(text: &str, first_line: usize) -> Vec<ImageLine> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some((at, key)) = IMAGE_KEYS
            .iter()
            .filter_map(|key| find_key(rest, key).map(|at| (at, *key)))
            .min()
        {
            let after = &rest[at..];
            let Some((value, consumed)) = scalar_after_key(after, key) else {
                rest = &after[key.len()..];
                continue;
            };
            found.push(ImageLine {
                line: first_line + i,
                image: value,
            });
            rest = &after[consumed..];
        }
    }
    found
}

/// Byte offset of the next `key` (bare or quoted) that starts a key: at the line start, or after
/// `- `, `{`, `,`, a space, or a quote.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = text[from..].find(key) {
        let at = from + pos;
        let before = text[..at].chars().next_back();
        let starts_key = matches!(
            before,
            None | Some(' ' | '\t' | '{' | ',' | '"' | '\'' | '-')
        );
        let end = at + key.len();
        let after = text[end..].trim_start_matches(['"', '\'']);
        if starts_key && after.trim_start_matches([' ', '\t']).starts_with(':') {
            return Some(at);
        }
        from = end;
    }
    None
}

/// The scalar value after `key":` / `key:`, and how many bytes of `text` it took.
fn scalar_after_key(text: &str, key: &str) -> Option<(String, usize)> {
    let after_key = text[key.len()..].trim_start_matches(['"', '\'']);
    let colon = after_key.find(':')?;
    let value_part = &after_key[colon + 1..];
    let leading = value_part.len() - value_part.trim_start().len();
    let value_text = &value_part[leading..];
    let base = text.len() - value_text.len();
    let (value, used) = match value_text.chars().next()? {
        '"' => {
            let mut out = String::new();
            let mut chars = value_text.char_indices().skip(1);
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, end?)
        }
        '\'' => {
            let body = &value_text[1..];
            let close = body.find('\'')?;
            (body[..close].to_owned(), close + 2)
        }
        // A flow mapping or sequence is not a scalar (`image: {reference: x}`): its keys are scanned next.
        '{' | '[' => return None,
        _ => {
            let end = value_text
                .find([',', '}', ']', '#'])
                .unwrap_or(value_text.len());
            let value = value_text[..end].trim();
            if value.is_empty() {
                return None;
            }
            (value.to_owned(), end)
        }
    };
    Some((value, base + used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn lines(text: &str) -> Vec<(usize, String)> {
        scan_images(text, 1)
            .into_iter()
            .map(|l| (l.line, l.image))
            .collect()
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::block("containers:\n- name: a\n  image: nginx:1.0\n", vec![(3, "nginx:1.0")])]
    #[case::dash("- image: nginx:1.0\n", vec![(1, "nginx:1.0")])]
    #[case::volume_flow("- {name: m, image: {reference: \"r.io/m:1\"}}\n", vec![(1, "r.io/m:1")])]
    #[case::volume_block("  image:\n    reference: r.io/m:1\n", vec![(2, "r.io/m:1")])]
    #[case::double_quoted("  image: \"r.io/a:1\"\n", vec![(1, "r.io/a:1")])]
    #[case::single_quoted("  image: 'r.io/a:1' # pinned\n", vec![(1, "r.io/a:1")])]
    #[case::comment("  image: r.io/a:1 # pinned\n", vec![(1, "r.io/a:1")])]
    #[case::flow("  - {name: a, image: r.io/a:1}\n", vec![(1, "r.io/a:1")])]
    #[case::json_minified(r#"{"containers":[{"name":"a","image":"a:1"},{"image":"b:2"}]}"#, vec![(1, "a:1"), (1, "b:2")])]
    #[case::json_pretty("      \"image\": \"a:1\",\n", vec![(1, "a:1")])]
    #[case::other_keys_ignored("  imagePullPolicy: Always\n  baseimage: x\n  image_name: y\n", vec![])]
    #[case::empty_value("  image:\n", vec![])]
    fn finds_image_fields(#[case] text: &str, #[case] expected: Vec<(usize, &str)>) {
        let expected: Vec<(usize, String)> = expected.into_iter().map(|(l, s)| (l, s.to_owned())).collect();
        assert_eq!(lines(text), expected);
    }

    /// `(index, line, value)` of each document, or `(index, line, message)` of each error.
    type Parsed = Result<(usize, usize, Value), (usize, usize, String)>;

    fn summary(text: &str) -> Vec<Parsed> {
        parse_documents(text)
            .into_iter()
            .map(|d| match d {
                Ok(d) => Ok((d.index, d.line, d.value)),
                Err(e) => Err((e.index, e.line, e.message)),
            })
            .collect()
    }

    #[test]
    fn splits_documents_and_keeps_line_numbers() {
        let text = "# leading comment\n---\na: 1\n---\n\n---\n# only a comment\n---\nb: 2\n...\n--- {c: 3}\n";
        assert_eq!(
            summary(text),
            vec![
                Ok((1, 3, json!({"a": 1}))),
                Ok((2, 9, json!({"b": 2}))),
                Ok((3, 11, json!({"c": 3}))),
            ]
        );
    }

    #[test]
    fn directives_stay_with_their_document() {
        assert_eq!(
            summary("%YAML 1.2\n---\na: 1\n"),
            vec![Ok((1, 3, json!({"a": 1})))]
        );
    }

    #[test]
    fn a_broken_document_is_reported_with_its_absolute_line_and_the_rest_parse() {
        let text = "a: 1\n---\nb: [1,\n---\nc: 3\n";
        let parsed = summary(text);
        assert_eq!(parsed[0], Ok((1, 1, json!({"a": 1}))));
        let Err((index, line, message)) = &parsed[1] else {
            panic!("{parsed:?}")
        };
        assert_eq!((*index, *line), (2, 3), "{message}");
        assert!(message.starts_with("not valid YAML: "), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert_eq!(parsed[2], Ok((3, 5, json!({"c": 3}))));
    }

    #[test]
    fn yaml_1_1_booleans_parse_as_manifests_expect() {
        assert_eq!(
            summary("a: yes\nb: \"yes\"\n"),
            vec![Ok((1, 1, json!({"a": true, "b": "yes"})))]
        );
    }

    #[test]
    fn json_streams_are_documents() {
        let text = "{\"a\": 1}\n\n{\n  \"b\": 2\n}\n";
        assert_eq!(
            summary(text),
            vec![Ok((1, 1, json!({"a": 1}))), Ok((2, 3, json!({"b": 2})))]
        );
    }

    #[test]
    fn broken_json_after_a_good_value_is_an_error() {
        let parsed = summary("{\"a\": 1}\n{\"b\": \n");
        assert_eq!(parsed[0], Ok((1, 1, json!({"a": 1}))));
        assert!(
            matches!(&parsed[1], Err((2, 3, m)) if m.starts_with("not valid JSON")),
            "{parsed:?}"
        );
    }

    #[test]
    fn yaml_flow_mapping_at_the_top_is_yaml() {
        assert_eq!(
            summary("{a: 1}\n---\nb: 2\n"),
            vec![Ok((1, 1, json!({"a": 1}))), Ok((2, 3, json!({"b": 2})))]
        );
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(summary("\u{feff}a: 1\n"), vec![Ok((1, 1, json!({"a": 1})))]);
    }
}
