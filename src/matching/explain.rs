//! Explanations of why a document does not match a pattern.
//!
//! [`Pattern::explain`] walks the pattern in the same order as
//! [`Pattern::matches`] and stops at the first condition that fails, so
//! `pattern.explain(document).is_ok() == pattern.matches(document)` for
//! every document.
//!
//! ```
//! use event_hub::matching::Pattern;
//! use serde_json::json;
//!
//! let pattern = Pattern::compile(&json!({"repo": "octo-org/api", "branch": ["main"]}))?;
//! let mismatch = pattern
//!     .explain(&json!({"repo": "octo-org/api", "branch": "dev"}))
//!     .unwrap_err();
//! assert_eq!(mismatch.path, "$.branch");
//! assert_eq!(mismatch.to_string(), r#"at $.branch: expected ["main"], found "dev""#);
//! # Ok::<(), event_hub::matching::PatternError>(())
//! ```

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::pattern::{
    child_path, compare_numbers, Affix, Condition, Exclusion, FieldPattern, Matcher, NumericRange,
    ObjectPattern, Pattern, Scalar,
};

/// Longest JSON text of a value that [`Mismatch`]'s `Display` prints whole.
const MAX_DISPLAYED_CHARS: usize = 120;

/// The first condition of a pattern that a document fails.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mismatch {
    /// JSON path of the tested value in the document, such as
    /// `$.repository.full_name`. It names the same field in the pattern,
    /// except that elements of document arrays carry their index, as in
    /// `$.commits[1].author`.
    pub path: String,
    /// What failed.
    pub kind: MismatchKind,
    /// The part of the pattern that failed, as JSON: the array of
    /// alternatives of a field, the nested pattern that no array element
    /// matches, or `{"$or": [...]}`.
    pub expected: Value,
    /// The document's value at `path` for a [`MismatchKind::Value`]
    /// mismatch, `None` when the field is missing. Always `None` for the
    /// other kinds, whose `causes` give the details.
    pub actual: Option<Value>,
    /// For [`MismatchKind::NoAlternative`], the mismatch of each `$or`
    /// alternative. For [`MismatchKind::NoElement`], the mismatch of the
    /// first object of the array.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Mismatch>,
}

/// The kind of condition that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The field is missing, or no value or operator of its array of
    /// alternatives matches the field's value.
    Value,
    /// The field is an array of objects and no object matches the nested
    /// pattern.
    NoElement,
    /// No alternative of a `$or` matches.
    NoAlternative,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            MismatchKind::Value => {
                let actual = match &self.actual {
                    Some(value) => abbreviated_json(value),
                    None => "no such field".to_owned(),
                };
                write!(
                    formatter,
                    "at {}: expected {}, found {actual}",
                    self.path,
                    abbreviated_json(&self.expected)
                )
            }
            MismatchKind::NoElement => {
                write!(
                    formatter,
                    "at {}: no object of the array matches {}",
                    self.path,
                    abbreviated_json(&self.expected)
                )?;
                if let Some(first) = self.causes.first() {
                    write!(formatter, "; the first one fails {first}")?;
                }
                Ok(())
            }
            MismatchKind::NoAlternative => {
                write!(
                    formatter,
                    "at {}: none of the {} $or alternatives matches (",
                    self.path,
                    self.causes.len()
                )?;
                for (index, cause) in self.causes.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str("; ")?;
                    }
                    write!(formatter, "{}: {cause}", index + 1)?;
                }
                formatter.write_str(")")
            }
        }
    }
}

impl Pattern {
    /// Tests `document` like [`Pattern::matches`] and returns the first
    /// condition that fails.
    ///
    /// Fields are tested in the pattern's key order and `$or` after the
    /// other fields of its object, as [`Pattern::matches`] does.
    pub fn explain(&self, document: &Value) -> Result<(), Mismatch> {
        explain_object(&self.root, Some(document), "$")
    }
}

fn explain_object(
    pattern: &ObjectPattern,
    value: Option<&Value>,
    path: &str,
) -> Result<(), Mismatch> {
    let object = value.and_then(Value::as_object);
    for field in &pattern.fields {
        let field_value = object.and_then(|object| object.get(&field.name));
        explain_field(field, field_value, &child_path(path, &field.name))?;
    }
    if pattern.alternatives.is_empty() {
        return Ok(());
    }

    let mut causes = Vec::with_capacity(pattern.alternatives.len());
    for alternative in &pattern.alternatives {
        match explain_object(alternative, value, path) {
            Ok(()) => return Ok(()),
            Err(mismatch) => causes.push(mismatch),
        }
    }
    let alternatives: Vec<Value> = pattern.alternatives.iter().map(object_json).collect();
    Err(Mismatch {
        path: path.to_owned(),
        kind: MismatchKind::NoAlternative,
        expected: json!({ "$or": alternatives }),
        actual: None,
        causes,
    })
}

fn explain_field(field: &FieldPattern, value: Option<&Value>, path: &str) -> Result<(), Mismatch> {
    match (&field.condition, value) {
        (Condition::Nested(nested), Some(array @ Value::Array(_))) => {
            explain_elements(nested, array, path)
        }
        (Condition::Nested(nested), other) => explain_object(nested, other, path),
        (Condition::AnyOf(matchers), _) => {
            if field.matches(value) {
                return Ok(());
            }
            Err(Mismatch {
                path: path.to_owned(),
                kind: MismatchKind::Value,
                expected: Value::Array(matchers.iter().map(matcher_json).collect()),
                actual: value.cloned(),
                causes: Vec::new(),
            })
        }
    }
}

/// Explains a nested pattern on an array field: one object element must
/// match it, and an array without objects is tested as a missing field.
fn explain_elements(nested: &ObjectPattern, array: &Value, path: &str) -> Result<(), Mismatch> {
    let Value::Array(items) = array else {
        return explain_object(nested, Some(array), path);
    };
    let mut first_mismatch = None;
    let mut has_object = false;

    // Depth-first over nested arrays with an explicit stack, because
    // documents may nest arrays deeper than the call stack allows. Each
    // level keeps the index path of its array, such as `[1][0]`.
    let mut stack = vec![(items.iter().enumerate(), String::new())];
    while let Some((elements, prefix)) = stack.last_mut() {
        let Some((index, element)) = elements.next() else {
            stack.pop();
            continue;
        };
        match element {
            Value::Array(inner) => {
                let inner_prefix = format!("{prefix}[{index}]");
                stack.push((inner.iter().enumerate(), inner_prefix));
            }
            Value::Object(_) => {
                has_object = true;
                let element_path = format!("{path}{prefix}[{index}]");
                match explain_object(nested, Some(element), &element_path) {
                    Ok(()) => return Ok(()),
                    Err(mismatch) => {
                        first_mismatch.get_or_insert(mismatch);
                    }
                }
            }
            _ => {}
        }
    }

    if !has_object {
        return explain_object(nested, None, path);
    }
    Err(Mismatch {
        path: path.to_owned(),
        kind: MismatchKind::NoElement,
        expected: object_json(nested),
        actual: None,
        causes: first_mismatch.into_iter().collect(),
    })
}

/// Writes `value` as compact JSON, cut to [`MAX_DISPLAYED_CHARS`] characters.
fn abbreviated_json(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(MAX_DISPLAYED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

// ---------------------------------------------------------------------------
// The compiled pattern written back as JSON
// ---------------------------------------------------------------------------

/// Writes a compiled object pattern back as a filter. A scalar shorthand
/// comes back as an array of one value, and case-insensitive texts come
/// back lowercased.
fn object_json(pattern: &ObjectPattern) -> Value {
    let mut object = Map::new();
    for field in &pattern.fields {
        let condition = match &field.condition {
            Condition::Nested(nested) => object_json(nested),
            Condition::AnyOf(matchers) => Value::Array(matchers.iter().map(matcher_json).collect()),
        };
        object.insert(field.name.clone(), condition);
    }
    if !pattern.alternatives.is_empty() {
        let alternatives = pattern.alternatives.iter().map(object_json).collect();
        object.insert("$or".to_owned(), Value::Array(alternatives));
    }
    Value::Object(object)
}

fn matcher_json(matcher: &Matcher) -> Value {
    match matcher {
        Matcher::Equals(scalar) => scalar_json(scalar),
        Matcher::EqualsIgnoreCase(text) => json!({ "equals-ignore-case": text }),
        Matcher::Prefix(affix) => json!({ "prefix": affix_json(affix) }),
        Matcher::Suffix(affix) => json!({ "suffix": affix_json(affix) }),
        Matcher::AnythingBut(exclusion) => {
            let excluded = match exclusion {
                Exclusion::Values(values) => match values.as_slice() {
                    [single] => scalar_json(single),
                    several => Value::Array(several.iter().map(scalar_json).collect()),
                },
                Exclusion::Prefix(affix) => json!({ "prefix": affix_json(affix) }),
                Exclusion::Suffix(affix) => json!({ "suffix": affix_json(affix) }),
            };
            json!({ "anything-but": excluded })
        }
        Matcher::Numeric(range) => json!({ "numeric": numeric_json(range) }),
        Matcher::Exists(expected) => json!({ "exists": expected }),
        Matcher::Wildcard(wildcard) => json!({ "wildcard": wildcard.text }),
        Matcher::Cidr(network) => json!({ "cidr": network.to_string() }),
    }
}

fn scalar_json(scalar: &Scalar) -> Value {
    match scalar {
        Scalar::String(text) => Value::String(text.clone()),
        Scalar::Number(number) => Value::Number(number.clone()),
        Scalar::Bool(flag) => Value::Bool(*flag),
        Scalar::Null => Value::Null,
    }
}

fn affix_json(affix: &Affix) -> Value {
    if affix.ignore_case {
        json!({ "equals-ignore-case": affix.text })
    } else {
        Value::String(affix.text.clone())
    }
}

fn numeric_json(range: &NumericRange) -> Value {
    if let (Some(lower), Some(upper)) = (&range.lower, &range.upper) {
        let same = compare_numbers(&lower.value, &upper.value) == Some(Ordering::Equal);
        if same && lower.inclusive && upper.inclusive {
            return json!(["=", lower.value]);
        }
    }
    let mut comparisons = Vec::new();
    if let Some(lower) = &range.lower {
        comparisons.push(json!(if lower.inclusive { ">=" } else { ">" }));
        comparisons.push(Value::Number(lower.value.clone()));
    }
    if let Some(upper) = &range.upper {
        comparisons.push(json!(if upper.inclusive { "<=" } else { "<" }));
        comparisons.push(Value::Number(upper.value.clone()));
    }
    Value::Array(comparisons)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn explain(pattern: Value, document: Value) -> Result<(), Mismatch> {
        match Pattern::compile(&pattern) {
            Ok(compiled) => compiled.explain(&document),
            Err(error) => panic!("pattern {pattern} is invalid: {error}"),
        }
    }

    #[test]
    fn explain_match_is_ok() {
        let result = explain(json!({"a": {"b": ["x"]}}), json!({"a": {"b": "x"}}));
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn explain_wrong_value() {
        let mismatch =
            explain(json!({"a": {"b": ["x", "y"]}}), json!({"a": {"b": "z"}})).unwrap_err();
        assert_eq!(mismatch.path, "$.a.b");
        assert_eq!(mismatch.kind, MismatchKind::Value);
        assert_eq!(mismatch.expected, json!(["x", "y"]));
        assert_eq!(mismatch.actual, Some(json!("z")));
        assert!(mismatch.causes.is_empty());
        assert_eq!(
            mismatch.to_string(),
            r#"at $.a.b: expected ["x","y"], found "z""#
        );
    }

    #[test]
    fn explain_missing_field() {
        let mismatch = explain(json!({"a": "x"}), json!({"b": "x"})).unwrap_err();
        assert_eq!(mismatch.path, "$.a");
        assert_eq!(mismatch.actual, None);
        assert_eq!(
            mismatch.to_string(),
            r#"at $.a: expected ["x"], found no such field"#
        );
    }

    #[test]
    fn explain_reports_first_failed_field() {
        // Keys are tested in the pattern's key order: "a" before "b".
        let mismatch =
            explain(json!({"a": "x", "b": "y"}), json!({"a": "1", "b": "2"})).unwrap_err();
        assert_eq!(mismatch.path, "$.a");
    }

    #[test]
    fn explain_quotes_unusual_field_names() {
        let mismatch =
            explain(json!({"client ip": [{"cidr": "10.0.0.0/8"}]}), json!({})).unwrap_err();
        assert_eq!(mismatch.path, r#"$["client ip"]"#);
        assert_eq!(mismatch.expected, json!([{"cidr": "10.0.0.0/8"}]));
    }

    #[test]
    fn explain_or_lists_each_alternative() {
        let mismatch = explain(
            json!({"repo": "r", "$or": [{"branch": "main"}, {"tag": [{"prefix": "v"}]}]}),
            json!({"repo": "r", "branch": "dev"}),
        )
        .unwrap_err();
        assert_eq!(mismatch.path, "$");
        assert_eq!(mismatch.kind, MismatchKind::NoAlternative);
        assert_eq!(
            mismatch.expected,
            json!({"$or": [{"branch": ["main"]}, {"tag": [{"prefix": "v"}]}]})
        );
        assert_eq!(mismatch.causes.len(), 2);
        assert_eq!(mismatch.causes[0].path, "$.branch");
        assert_eq!(mismatch.causes[1].path, "$.tag");
        assert_eq!(
            mismatch.to_string(),
            r#"at $: none of the 2 $or alternatives matches (1: at $.branch: expected ["main"], found "dev"; 2: at $.tag: expected [{"prefix":"v"}], found no such field)"#
        );
    }

    #[test]
    fn explain_array_of_objects() {
        let pattern = json!({"commits": {"author": "octocat", "distinct": [true]}});
        let document = json!({"commits": [
            {"author": "octocat", "distinct": false},
            {"author": "hubot", "distinct": true}
        ]});
        let mismatch = explain(pattern, document).unwrap_err();
        assert_eq!(mismatch.path, "$.commits");
        assert_eq!(mismatch.kind, MismatchKind::NoElement);
        assert_eq!(
            mismatch.expected,
            json!({"author": ["octocat"], "distinct": [true]})
        );
        assert_eq!(mismatch.causes.len(), 1);
        assert_eq!(mismatch.causes[0].path, "$.commits[0].distinct");
        assert_eq!(mismatch.causes[0].actual, Some(json!(false)));
    }

    #[test]
    fn explain_nested_arrays_of_objects_carry_indices() {
        let pattern = json!({"a": {"b": "x"}});
        let document = json!({"a": [1, [{"c": 1}, {"b": "y"}]]});
        let mismatch = explain(pattern, document).unwrap_err();
        assert_eq!(mismatch.kind, MismatchKind::NoElement);
        assert_eq!(mismatch.causes[0].path, "$.a[1][0].b");

        let matching = explain(
            json!({"a": {"b": "x"}}),
            json!({"a": [1, [{"c": 1}, {"b": "x"}]]}),
        );
        assert_eq!(matching, Ok(()));
    }

    #[test]
    fn explain_array_without_objects_is_missing() {
        let mismatch = explain(json!({"a": {"b": "x"}}), json!({"a": [1, 2]})).unwrap_err();
        assert_eq!(mismatch.kind, MismatchKind::Value);
        assert_eq!(mismatch.path, "$.a.b");
        assert_eq!(mismatch.actual, None);
    }

    #[test]
    fn explain_writes_operators_back() {
        let pattern = json!({"a": [
            {"prefix": {"equals-ignore-case": "Refs/"}},
            {"suffix": ".md"},
            {"equals-ignore-case": "X"},
            {"anything-but": ["p", "q"]},
            {"anything-but": "p"},
            {"anything-but": {"suffix": ".md"}},
            {"numeric": [">", 0, "<=", 5]},
            {"numeric": ["=", 3]},
            {"numeric": ["<", 1.5]},
            {"exists": true},
            {"wildcard": "a\\*b*"},
            {"cidr": "10.0.0.9/24"},
            null,
            false,
            7
        ]});
        let mismatch = explain(pattern, json!({"b": 1})).unwrap_err();
        assert_eq!(
            mismatch.expected,
            json!([
                {"prefix": {"equals-ignore-case": "refs/"}},
                {"suffix": ".md"},
                {"equals-ignore-case": "x"},
                {"anything-but": ["p", "q"]},
                {"anything-but": "p"},
                {"anything-but": {"suffix": ".md"}},
                {"numeric": [">", 0, "<=", 5]},
                {"numeric": ["=", 3]},
                {"numeric": ["<", 1.5]},
                {"exists": true},
                {"wildcard": "a\\*b*"},
                {"cidr": "10.0.0.0/24"},
                null,
                false,
                7
            ])
        );
    }

    #[test]
    fn display_abbreviates_long_values() {
        let long = "x".repeat(500);
        let mismatch = explain(json!({"a": ["y"]}), json!({ "a": long })).unwrap_err();
        let text = mismatch.to_string();
        assert!(text.ends_with('…'), "{text}");
        assert!(text.len() < 200, "{text}");
    }

    #[test]
    fn mismatch_serializes_kind_in_snake_case() {
        let mismatch = explain(json!({"a": {"b": "x"}}), json!({"a": [{"b": "y"}]})).unwrap_err();
        let serialized = serde_json::to_value(&mismatch).unwrap();
        assert_eq!(serialized["kind"], json!("no_element"));
        assert_eq!(serialized["causes"][0]["kind"], json!("value"));
        assert_eq!(serialized["causes"][0]["actual"], json!("y"));
        assert!(serialized["causes"][0].get("causes").is_none());
    }
}
