//! How pullgate reads YAML: its own files (policies and settings) and the manifests `check` reads.
//!
//! - YAML 1.2 booleans, so `action: off` stays the word "off" instead of turning into `false`.
//! - Bounded: alias expansion, nodes, nesting and text are capped (an alias bomb is an error in
//!   milliseconds, not gigabytes), and unknown tags (`!custom`) are errors; standard ones are read as
//!   kubectl reads them (`!!binary` is base64 text).
//! - Errors in the user's terms ([`describe`]): "line 7, column 5: key \"tag-not-latest\" appears twice",
//!   never the parser's internals (`<input>:7:5`, "set DuplicateKeyPolicy in Options", `Nodes { … }`).
//! - [`Strict`]: typed settings are read from the parsed value without serde's positional reading, so
//!   a list where a mapping belongs (`metadata: [name]`) is an error naming the key, not field 1.

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;
use serde_saphyr::budget::BudgetBreach;

/// Most values (nodes) one YAML document may expand to: a 1,000-container pod is about 20,000.
pub const MAX_NODES: usize = 250_000;
/// Most bytes of scalar text in one document (Kubernetes objects are at most 1.5 MB).
pub const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;
/// Deepest nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 64;
/// Most aliases (`*name`) in one document.
pub const MAX_ALIASES: usize = 1_000;

/// The parsing options for pullgate's own files (policies, settings).
pub fn options() -> serde_saphyr::Options {
    let mut options = manifest_options();
    options.strict_booleans = true;
    options.reject_unsupported_tags = true;
    // `.nan`/`.inf` stay text, so the typed reading refuses them naming the key.
    options.non_finite_float_policy = serde_saphyr::options::NonFiniteFloatPolicy::AsString;
    options
}

/// The parsing options for Kubernetes manifests (`check`): read as kubectl reads them, within the caps.
pub fn manifest_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = MAX_NODES;
    budget.max_total_scalar_bytes = MAX_TEXT_BYTES;
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = MAX_ALIASES;
    options.budget = Some(budget);
    options
}

/// A parse error as a user reads it: what is wrong, at `line L, column C` of the text given. The
/// caller names the file (and adds a line offset when the text is part of one).
pub fn describe(error: &serde_saphyr::Error, line_offset: usize) -> String {
    let error = error.without_snippet();
    let mut original = error;
    #[allow(deprecated)] // `msg` is not read; the original error is
    while let serde_saphyr::Error::AliasError { error: inner, .. } = original {
        original = inner.without_snippet();
    }
    let what = match original {
        serde_saphyr::Error::Budget { breach, .. } => budget(breach),
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => match key {
            Some(key) => format!("key {key:?} appears twice in one mapping"),
            None => "a key appears twice in one mapping".to_owned(),
        },
        serde_saphyr::Error::UnsupportedTag { tag, .. } => {
            format!("the tag {tag} is not supported here (remove it)")
        }
        other => {
            let options = serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
            };
            plain(&other.render_with_options(options))
        }
    };
    match error.location().filter(|l| l.line() > 0) {
        Some(at) => format!(
            "line {}, column {}: {what}",
            at.line() as usize + line_offset,
            at.column()
        ),
        None => what,
    }
}

/// The parser's message without its own `error: line L column C:` prefix and location arrows.
fn plain(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    let without_location = match first.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") && head.contains(" column ") => rest,
        _ => first,
    };
    // The location is said once, first.
    let without_location = match without_location.rfind(" at line ") {
        Some(at) if without_location[at..].contains(", column ") => &without_location[..at],
        _ => without_location,
    };
    without_location.to_owned()
}

fn budget(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => format!(
            "the document expands to more than {MAX_NODES} values (are aliases repeating a large anchor?)"
        ),
        BudgetBreach::Aliases { .. } => format!("more than {MAX_ALIASES} aliases (*name)"),
        BudgetBreach::Depth { .. } => format!("nested more than {MAX_DEPTH} levels deep"),
        BudgetBreach::ScalarBytes { .. } => format!(
            "more than {} MiB of text in one document",
            MAX_TEXT_BYTES / (1024 * 1024)
        ),
        BudgetBreach::Documents { .. } => "too many documents".to_owned(),
        _ => "too large or too repetitive to read (aliases, anchors or nesting)".to_owned(),
    }
}

/// Read a typed value from parsed YAML/JSON: errors carry the key path (`spec.rules.tag-not-latest`)
/// and a mapping is never filled from a list by position.
pub fn typed<T: de::DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(Strict(value)).map_err(|e| {
        let path = e.path().to_string();
        (path, e.into_inner().to_string())
    })
}

/// A deserializer over a parsed value that refuses a sequence where a struct (mapping) is expected.
/// serde's derived structs otherwise accept `[a, b]` as their fields in order.
pub struct Strict<'a>(pub &'a Value);

impl<'de, 'a> Deserializer<'de> for Strict<'a> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => n.clone().deserialize_any(visitor),
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            Value::Object(map) => visitor.visit_map(Entries {
                entries: map.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(other), &"a mapping")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => other.clone().deserialize_enum(name, variants, visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("a number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Items<'a>(std::slice::Iter<'a, Value>);

impl<'de, 'a> SeqAccess<'de> for Items<'a> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Strict(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'de, 'a> MapAccess<'de> for Entries<'a> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(key.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value was asked for before its key"))?;
        seed.deserialize(Strict(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read by Debug in assertions only
    struct Inner {
        name: String,
        count: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
        list: Vec<Inner>,
    }

    fn parse(text: &str) -> Result<Value, String> {
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| describe(&e, 0))
    }

    #[test]
    fn a_list_where_a_mapping_belongs_is_an_error_naming_the_key() {
        let value = parse("inner: [x, 1]\nlist: []\n").expect("yaml");
        let (path, reason) = typed::<Outer>(&value).expect_err("positional");
        assert_eq!(path, "inner");
        assert!(reason.contains("expected a mapping"), "{reason}");
        let value = parse("inner: {name: x}\nlist: [{name: y}, [z]]\n").expect("yaml");
        let (path, _) = typed::<Outer>(&value).expect_err("positional in a list");
        assert_eq!(path, "list[1]");
        let value = parse("inner: {name: x, count: 2}\nlist: [{name: y}]\n").expect("yaml");
        assert!(typed::<Outer>(&value).is_ok());
    }

    #[test]
    fn errors_are_in_the_user_s_terms() {
        let duplicate = parse("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(
            duplicate,
            r#"line 3, column 1: key "a" appears twice in one mapping"#
        );
        let tag = parse("a: !custom 1\n").expect_err("tag");
        assert!(tag.contains("the tag !custom is not supported"), "{tag}");
        // A standard tag is read as kubectl reads it: !!binary is base64 text.
        let binary = parse("a: !!binary aGVsbG8=\n").expect("binary");
        assert_eq!(binary["a"], "hello");
        let unclosed = parse("a: [1, 2\n").expect_err("unclosed");
        assert_eq!(unclosed, "line 1, column 4: unclosed bracket '['");
    }

    #[test]
    fn an_alias_bomb_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let error = parse(&text).expect_err("bomb");
        assert!(error.contains("expands to more than"), "{error}");
    }
}
