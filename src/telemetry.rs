//! Logging: `tracing` with a text or JSON formatter, level from `RUST_LOG` (default `info`); and the
//! metrics registry every module registers its metrics on.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a file, a pipe or a log collector gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_writer(|| ListFields(std::io::stderr()))
            .init(),
    }
}

/// Fields whose value is a list (recorded as its `Debug` text, `["a", "b"]`: tracing records only text,
/// numbers and booleans), as the JSON formatter starts them: `"FIELD":"[`.
const LIST_FIELDS: [&str; 3] = [r#""rules":"["#, r#""policies":"["#, r#""platforms":"["#];

/// In JSON logs, [`LIST_FIELDS`] as JSON arrays rather than strings holding one: the formatter writes
/// each event in one call, and the line is rewritten on its way out. A value that does not read as a
/// list of strings stays as it was.
struct ListFields<W>(W);

impl<W: std::io::Write> std::io::Write for ListFields<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf).ok().and_then(lists_as_arrays) {
            Some(line) => self.0.write_all(line.as_bytes())?,
            None => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `line` with every `"FIELD":"[…]"` of [`LIST_FIELDS`] written as the array it holds; `None` when
/// there is nothing to rewrite.
fn lists_as_arrays(line: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = line;
    let mut changed = false;
    while let Some((at, key)) = LIST_FIELDS
        .iter()
        .filter_map(|key| rest.find(key).map(|at| (at, key)))
        .min()
    {
        let value_at = at + key.len() - 2; // the opening quote of the string value
        let mut values =
            serde_json::Deserializer::from_str(&rest[value_at..]).into_iter::<String>();
        let array = match values.next() {
            Some(Ok(text)) => serde_json::from_str::<Vec<String>>(&text).ok(),
            _ => None,
        };
        let end = value_at + values.byte_offset();
        out.push_str(&rest[..value_at]);
        match array.and_then(|list| serde_json::to_string(&list).ok()) {
            Some(array) => {
                out.push_str(&array);
                changed = true;
            }
            None => out.push_str(&rest[value_at..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// The metrics registry `/metrics` exposes: every module registers its own metrics on it, each named
/// `pullgate_*`.
pub fn metrics_registry() -> prometheus_client::registry::Registry {
    prometheus_client::registry::Registry::with_prefix("pullgate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_fields_become_arrays_and_the_rest_stays() {
        let line = r#"{"message":"admission decided","rules":"[\"tag-not-latest:deny\", \"image-size:warn\"]","policies":"[]","other":"[\"x\"]","n":1}"#;
        let rewritten = lists_as_arrays(line).expect("rewritten");
        let value: serde_json::Value = serde_json::from_str(&rewritten).expect("JSON");
        assert_eq!(
            value["rules"],
            serde_json::json!(["tag-not-latest:deny", "image-size:warn"])
        );
        assert_eq!(value["policies"], serde_json::json!([]));
        assert_eq!(value["other"], "[\"x\"]", "only the list fields");
        assert!(rewritten.starts_with(r#"{"message":"admission decided","rules":["#));
        assert_eq!(lists_as_arrays(r#"{"message":"no lists"}"#), None);
        // Not a list of strings: left as it was.
        let odd = r#"{"rules":"[not json"}"#;
        assert_eq!(lists_as_arrays(odd), None);
    }
}
