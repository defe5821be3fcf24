//! Decoding only the fields that matching reads.
//!
//! A GitHub webhook payload is about 12 KB of JSON, and a trigger filter
//! names a handful of its fields. Building a whole `serde_json::Value` of
//! it costs several times more than checking that it is valid JSON, and
//! most events match no trigger, so their document is thrown away after
//! matching. [`parse`] therefore builds the document from the fields of a
//! [`FieldSet`] only: the fields that the source's trigger filters name,
//! plus those the flavor's decoder reads. Every other value is checked for
//! valid JSON syntax and skipped without allocating. The consumer decodes
//! the whole record again only for an event that matches a trigger, because
//! the action request carries the whole document.
//!
//! Matching a projected document gives the same result as matching the
//! whole one. A field that some pattern names as a leaf is kept whole, and
//! objects and arrays on the way to a nested field keep their shape. So
//! `exists`, `anything-but` and matching inside arrays see what they would
//! see in the whole document.
//!
//! Validation differs in one way. A skipped value is checked against the
//! JSON grammar (RFC 8259) and for UTF-8, but not against `serde_json`'s own
//! limits: numbers beyond the range of `f64`, nesting deeper than 128
//! levels, and `\u` escapes of lone UTF-16 surrogates. A record that
//! exceeds those limits only in fields no trigger names decodes for
//! matching. If it then matches a trigger, the whole decoding fails and the
//! record is dead-lettered as `invalid_json`, as before.
//!
//! Parsing is synchronous and allocates only for the values it keeps.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{github, json, DecodeError, Flavor};

/// [`FieldSet::WHOLE`] with a `'static` address, for the visitor's nodes.
static WHOLE_DOCUMENT: FieldSet = FieldSet::WHOLE;

/// A set of field paths of event documents, as a tree from the top level.
///
/// A node is either kept whole, or has the names of the fields kept below
/// it. [`FieldSet::default`] keeps no field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Whether the value here is kept whole, with everything below it.
    whole: bool,
    /// The fields kept below this node, when it is not kept whole. A map
    /// rather than a list, because the triggers of one source may name
    /// thousands of distinct fields.
    children: BTreeMap<Box<str>, FieldSet>,
}

impl FieldSet {
    /// The set that keeps the whole document.
    pub const WHOLE: FieldSet = FieldSet {
        whole: true,
        children: BTreeMap::new(),
    };

    /// Returns a set that keeps each of `paths` whole.
    pub fn of_paths(paths: &[&[&str]]) -> Self {
        let mut fields = Self::default();
        for path in paths {
            fields.insert_whole(path);
        }
        fields
    }

    /// Returns the fields that decoding an event of `flavor` reads, which
    /// every projected document of that flavor keeps.
    pub fn for_flavor(flavor: Flavor) -> &'static Self {
        static GITHUB: LazyLock<FieldSet> =
            LazyLock::new(|| FieldSet::of_paths(github::DECODER_FIELDS));
        static JSON: LazyLock<FieldSet> =
            LazyLock::new(|| FieldSet::of_paths(json::DECODER_FIELDS));
        static NO_FIELDS: FieldSet = FieldSet {
            whole: false,
            children: BTreeMap::new(),
        };

        match flavor {
            Flavor::Github => &GITHUB,
            Flavor::Json => &JSON,
            Flavor::Cloudevents => &NO_FIELDS,
        }
    }

    /// Keeps the value at `path` whole. An empty path keeps the whole
    /// document.
    pub fn insert_whole(&mut self, path: &[&str]) {
        let mut node = self;
        for name in path {
            if node.whole {
                return;
            }
            node = node.child_mut(name);
        }
        node.keep_whole();
    }

    /// Returns the node of the field `name` below this one, adding it if
    /// it is not in the set yet.
    pub fn child_mut(&mut self, name: &str) -> &mut FieldSet {
        self.children.entry(name.into()).or_default()
    }

    /// Tells whether the value at this node is kept whole.
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// Keeps the value at this node whole.
    pub fn keep_whole(&mut self) {
        self.whole = true;
        self.children = BTreeMap::new();
    }

    /// Adds every path of `other` to this set.
    pub fn merge(&mut self, other: &FieldSet) {
        if self.whole {
            return;
        }
        if other.whole {
            self.keep_whole();
            return;
        }
        for (name, child) in &other.children {
            self.child_mut(name).merge(child);
        }
    }

    /// Returns the node of the field `name`, if the set keeps it.
    fn child(&self, name: &str) -> Option<&FieldSet> {
        if self.whole {
            return Some(&WHOLE_DOCUMENT);
        }
        self.children.get(name)
    }
}

/// Parses `payload` as JSON, keeping only the fields in `fields`
/// ([`FieldSet::WHOLE`] keeps every field).
///
/// Fails with [`DecodeError::InvalidJson`] when `payload` is not UTF-8 or
/// not JSON, wherever the fault is.
pub fn parse(payload: &[u8], fields: &FieldSet) -> Result<Value, DecodeError> {
    // Skipped strings are not checked for UTF-8 by `serde_json`: check the
    // whole payload first, which also lets it borrow keys as `&str`.
    let text = std::str::from_utf8(payload)
        .map_err(|error| DecodeError::InvalidJson(format!("invalid UTF-8: {error}")))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let document = Projected(fields)
        .deserialize(&mut deserializer)
        .and_then(|document| deserializer.end().map(|()| document))
        .map_err(|error| DecodeError::InvalidJson(error.to_string()))?;
    Ok(document)
}

/// Deserializes a whole event document with the visitor of [`parse`], for
/// `#[serde(deserialize_with)]` on fields that carry one, such as the
/// `event.data` of an action request.
///
/// Unlike `Value`'s own deserializer with serde_json's `raw_value` feature,
/// it reads the key `$serde_json::private::RawValue` as an ordinary key,
/// so a reader of the document gets the fields that were matched.
pub fn deserialize_document<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    Projected(&WHOLE_DOCUMENT).deserialize(deserializer)
}

/// Deserializes a value keeping the fields of a [`FieldSet`] node.
struct Projected<'f>(&'f FieldSet);

impl<'de> DeserializeSeed<'de> for Projected<'_> {
    type Value = Value;

    /// Builds kept values with this visitor, never with `Value`'s own.
    /// With serde_json's `raw_value` feature, which other crates of the
    /// build enable, `Value` reads an object whose first key is
    /// `$serde_json::private::RawValue` as the JSON text in its value. Here
    /// that key is an ordinary key, in whole and projected documents alike.
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Projected<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // The same conversion as `Value`'s own: a non-finite number is null.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    /// Keeps every element of an array, each projected like the array
    /// itself, because patterns look into arrays as if each element were
    /// the field.
    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(sequence.size_hint().unwrap_or(0));
        while let Some(item) = sequence.next_element_seed(Projected(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    /// Keeps the fields of an object that the node names. A repeated key
    /// keeps its last value, as `Value` does.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            match key {
                Some((name, child)) => {
                    let value = map.next_value_seed(Projected(child))?;
                    object.insert(name, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// Deserializes an object key into its name and node when the set keeps
/// the field, and into `None` without allocating when it does not.
struct Key<'f>(&'f FieldSet);

impl<'de, 'f> DeserializeSeed<'de> for Key<'f> {
    type Value = Option<(String, &'f FieldSet)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'f> Visitor<'_> for Key<'f> {
    type Value = Option<(String, &'f FieldSet)>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.child(name).map(|node| (name.to_owned(), node)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn projected(document: &str, paths: &[&[&str]]) -> Result<Value, DecodeError> {
        parse(document.as_bytes(), &FieldSet::of_paths(paths))
    }

    #[test]
    fn keeps_named_fields_only() {
        let document = r#"{"a": {"b": 1, "c": [2, {"d": 3}]}, "e": "x", "f": {"g": null}}"#;
        assert_eq!(
            projected(document, &[&["a", "c"], &["f", "g"], &["h"]]).unwrap(),
            json!({"a": {"c": [2, {"d": 3}]}, "f": {"g": null}})
        );
        assert_eq!(projected(document, &[]).unwrap(), json!({}));
        assert_eq!(
            projected(document, &[&[]]).unwrap(),
            serde_json::from_str::<Value>(document).unwrap()
        );
    }

    #[test]
    fn projects_each_element_of_arrays() {
        let document = r#"{"commits": [{"id": "a", "message": "m"}, [{"id": "b"}], 7, "s"]}"#;
        assert_eq!(
            projected(document, &[&["commits", "id"]]).unwrap(),
            json!({"commits": [{"id": "a"}, [{"id": "b"}], 7, "s"]})
        );
    }

    #[test]
    fn keeps_scalars_where_objects_are_named() {
        assert_eq!(
            projected(
                r#"{"a": 1.5, "b": true, "c": -3}"#,
                &[&["a", "x"], &["b", "y"], &["c", "z"]]
            )
            .unwrap(),
            json!({"a": 1.5, "b": true, "c": -3})
        );
        assert_eq!(
            projected(r#"[{"a": 1, "b": 2}]"#, &[&["a"]]).unwrap(),
            json!([{"a": 1}])
        );
        assert_eq!(projected(r#""text""#, &[&["a"]]).unwrap(), json!("text"));
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        assert_eq!(
            projected(r#"{"a": 1, "b": 0, "a": {"x": 2}}"#, &[&["a"]]).unwrap(),
            json!({"a": {"x": 2}})
        );
    }

    #[test]
    fn escaped_keys_and_values() {
        let document = r#"{"r\u00e9po": "caf\u00e9", "\"q\"": ["\n"]}"#;
        assert_eq!(
            projected(document, &[&["répo"], &["\"q\""]]).unwrap(),
            json!({"répo": "café", "\"q\"": ["\n"]})
        );
    }

    #[test]
    fn rejects_invalid_json_in_skipped_fields() {
        let cases: [&[u8]; 9] = [
            b"",
            b"{\"a\": 1, \"skipped\": [1, 2}",
            b"{\"a\": 1, \"skipped\": \"unterminated}",
            b"{\"a\": 1, \"skipped\": 01}",
            b"{\"a\": 1, \"skipped\": tru}",
            b"{\"a\": 1, \"skipped\": \"bad \\x escape\"}",
            b"{\"a\": 1, \"skipped\": \"\xff\"}",
            b"{\"a\": 1} trailing",
            b"{\"a\": 1, \"skipped\": \"control \x01 char\"}",
        ];
        for case in cases {
            let result = parse(case, &FieldSet::of_paths(&[&["a"]]));
            assert!(
                matches!(result, Err(DecodeError::InvalidJson(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn invalid_utf8_message() {
        let error = parse(b"{\"a\": \"\xc3\"}", &FieldSet::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "value is not valid JSON: invalid UTF-8: invalid utf-8 sequence of 1 bytes from index 7"
        );
    }

    #[test]
    fn deep_nesting_kept_and_skipped() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let document = format!(r#"{{"kept": {deep}, "skipped": {deep}}}"#);
        assert!(matches!(
            parse(document.as_bytes(), &FieldSet::of_paths(&[&["kept"]])),
            Err(DecodeError::InvalidJson(_))
        ));
        assert_eq!(
            parse(document.as_bytes(), &FieldSet::of_paths(&[&["other"]])).unwrap(),
            json!({})
        );
    }

    #[test]
    fn merge_and_whole_nodes() {
        let mut fields = FieldSet::of_paths(&[&["a", "b"], &["c"]]);
        fields.merge(&FieldSet::of_paths(&[&["a"], &["d", "e"]]));
        assert_eq!(fields, FieldSet::of_paths(&[&["a"], &["c"], &["d", "e"]]));
        fields.insert_whole(&["a", "x"]);
        assert_eq!(fields, FieldSet::of_paths(&[&["a"], &["c"], &["d", "e"]]));
        fields.merge(&FieldSet::of_paths(&[&[]]));
        assert_eq!(fields, FieldSet::of_paths(&[&[]]));
    }
}
