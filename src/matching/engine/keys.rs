//! Index keys of a pattern: exact string conditions that every matching
//! document satisfies.
//!
//! A field condition whose alternatives are all exact strings, such as
//! `{"repository": {"full_name": ["octo-org/api"]}}`, can only match a
//! document that has one of those strings at that path. The engine looks
//! such strings up in a hash table instead of testing the pattern. A `$or`
//! can be indexed too, by one key of each alternative: a matching document
//! satisfies at least one of them.

use super::super::pattern::{Condition, Matcher, ObjectPattern, Pattern, Scalar};

/// An exact string condition: the field at `path` (field names from the
/// top of the document) has one of `values`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KeyCondition<'a> {
    pub(super) path: Vec<&'a str>,
    pub(super) values: Vec<&'a str>,
}

/// Calls `visit` with the path and values of every exact string condition
/// of `pattern`, those inside `$or` alternatives included.
pub(super) fn visit_key_conditions<'a>(
    pattern: &'a Pattern,
    visit: &mut impl FnMut(&[&'a str], &[&'a str]),
) {
    let mut path = Vec::new();
    visit_object(&pattern.root, &mut path, visit);
}

fn visit_object<'a>(
    object: &'a ObjectPattern,
    path: &mut Vec<&'a str>,
    visit: &mut impl FnMut(&[&'a str], &[&'a str]),
) {
    for field in &object.fields {
        path.push(&field.name);
        match &field.condition {
            Condition::Nested(nested) => visit_object(nested, path, visit),
            Condition::AnyOf(matchers) => {
                if let Some(values) = exact_strings(matchers) {
                    visit(path, &values);
                }
            }
        }
        path.pop();
    }
    for alternative in &object.alternatives {
        visit_object(alternative, path, visit);
    }
}

/// Chooses the key conditions to index `pattern` under: a set of which
/// every matching document satisfies at least one, with the lowest total
/// `cost`. Returns `None` when the pattern has no such set, as when a
/// field it requires has no exact string condition.
///
/// `cost(path, value_count)` estimates how often a condition on `path`
/// with that many values is met by an event.
pub(super) fn choose_keys<'a>(
    pattern: &'a Pattern,
    cost: &impl Fn(&[&'a str], usize) -> f64,
) -> Option<Vec<KeyCondition<'a>>> {
    let mut path = Vec::new();
    cheapest_keys(&pattern.root, &mut path, cost).map(|(_, keys)| keys)
}

/// Returns the cheapest key set of an object pattern and its cost. Any one
/// field of the object must match, so one field's key is enough. A `$or`
/// needs a key from every alternative.
fn cheapest_keys<'a>(
    object: &'a ObjectPattern,
    path: &mut Vec<&'a str>,
    cost: &impl Fn(&[&'a str], usize) -> f64,
) -> Option<(f64, Vec<KeyCondition<'a>>)> {
    let mut best: Option<(f64, Vec<KeyCondition<'a>>)> = None;
    let mut consider = |candidate: (f64, Vec<KeyCondition<'a>>)| {
        if best
            .as_ref()
            .is_none_or(|(lowest, _)| candidate.0 < *lowest)
        {
            best = Some(candidate);
        }
    };

    for field in &object.fields {
        path.push(&field.name);
        match &field.condition {
            Condition::Nested(nested) => {
                if let Some(candidate) = cheapest_keys(nested, path, cost) {
                    consider(candidate);
                }
            }
            Condition::AnyOf(matchers) => {
                if let Some(values) = exact_strings(matchers) {
                    let key = KeyCondition {
                        path: path.clone(),
                        values,
                    };
                    consider((cost(path, key.values.len()), vec![key]));
                }
            }
        }
        path.pop();
    }

    if !object.alternatives.is_empty() {
        let mut total = 0.0;
        let mut keys = Vec::new();
        let mut every_alternative_has_keys = true;
        for alternative in &object.alternatives {
            match cheapest_keys(alternative, path, cost) {
                Some((alternative_cost, alternative_keys)) => {
                    total += alternative_cost;
                    keys.extend(alternative_keys);
                }
                None => {
                    every_alternative_has_keys = false;
                    break;
                }
            }
        }
        if every_alternative_has_keys {
            consider((total, keys));
        }
    }
    best
}

/// Returns the values of an array of alternatives made only of exact
/// strings, each once, or `None` when it has anything else.
fn exact_strings(matchers: &[Matcher]) -> Option<Vec<&str>> {
    let mut values: Vec<&str> = Vec::with_capacity(matchers.len());
    for matcher in matchers {
        match matcher {
            Matcher::Equals(Scalar::String(text)) => {
                if !values.contains(&text.as_str()) {
                    values.push(text);
                }
            }
            _ => return None,
        }
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn compile(filter: Value) -> Pattern {
        match Pattern::compile(&filter) {
            Ok(pattern) => pattern,
            Err(error) => panic!("pattern {filter} is invalid: {error}"),
        }
    }

    /// Lists the key conditions as `path=values` strings.
    fn visited(filter: Value) -> Vec<String> {
        let pattern = compile(filter);
        let mut found = Vec::new();
        visit_key_conditions(&pattern, &mut |path, values| {
            found.push(format!("{}={}", path.join("."), values.join("|")));
        });
        found
    }

    /// Chooses keys with a cost of one per value, and lists them.
    fn chosen(filter: Value) -> Option<Vec<String>> {
        let pattern = compile(filter);
        let keys = choose_keys(&pattern, &|_, count| count as f64)?;
        Some(
            keys.iter()
                .map(|key| format!("{}={}", key.path.join("."), key.values.join("|")))
                .collect(),
        )
    }

    #[test]
    fn visit_finds_exact_string_conditions() {
        let found = visited(json!({
            "repository": {"full_name": "o/r", "private": [false]},
            "ref": ["a", "b", "a"],
            "branch": ["main", {"prefix": "release/"}],
            "$or": [{"action": "opened"}, {"label": {"name": ["bug"]}}]
        }));
        assert_eq!(
            found,
            [
                "ref=a|b",
                "repository.full_name=o/r",
                "action=opened",
                "label.name=bug"
            ]
        );
    }

    #[test]
    fn visit_skips_non_string_values() {
        let found = visited(json!({"n": [1], "b": [true], "z": [null], "e": [{"exists": true}]}));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn choose_prefers_lowest_cost() {
        let keys = chosen(json!({"action": ["a", "b", "c"], "repo": "o/r"}));
        assert_eq!(keys, Some(vec!["repo=o/r".to_owned()]));
    }

    #[test]
    fn choose_descends_into_nested_objects() {
        let keys =
            chosen(json!({"repository": {"full_name": ["o/r"]}, "ref": [{"prefix": "refs/"}]}));
        assert_eq!(keys, Some(vec!["repository.full_name=o/r".to_owned()]));
    }

    #[test]
    fn choose_none_without_exact_strings() {
        assert_eq!(chosen(json!({"ref": [{"prefix": "refs/"}]})), None);
        assert_eq!(chosen(json!({"n": [{"numeric": [">", 1]}]})), None);
        assert_eq!(chosen(json!({"ref": ["main", {"prefix": "r"}]})), None);
    }

    #[test]
    fn choose_indexes_or_by_each_alternative() {
        let keys = chosen(json!({"$or": [{"branch": "main"}, {"tag": ["v1", "v2"]}]}));
        assert_eq!(
            keys,
            Some(vec!["branch=main".to_owned(), "tag=v1|v2".to_owned()])
        );
    }

    #[test]
    fn choose_or_needs_every_alternative() {
        let keys = chosen(json!({"$or": [{"branch": "main"}, {"tag": [{"prefix": "v"}]}]}));
        assert_eq!(keys, None);
        // A field outside the $or is enough on its own.
        let keys =
            chosen(json!({"repo": "o/r", "$or": [{"branch": "main"}, {"tag": [{"prefix": "v"}]}]}));
        assert_eq!(keys, Some(vec!["repo=o/r".to_owned()]));
    }

    #[test]
    fn choose_or_inside_nested_object_keeps_prefix() {
        let keys = chosen(json!({"data": {"$or": [{"region": "eu"}, {"zone": "z1"}]}}));
        assert_eq!(
            keys,
            Some(vec!["data.region=eu".to_owned(), "data.zone=z1".to_owned()])
        );
    }

    #[test]
    fn choose_or_when_cheaper_than_field() {
        // Three values on "action" cost 3; the $or costs 1 + 1.
        let keys = chosen(json!({"action": ["a", "b", "c"], "$or": [{"x": "1"}, {"y": "2"}]}));
        assert_eq!(keys, Some(vec!["x=1".to_owned(), "y=2".to_owned()]));
    }
}
