//! Event patterns: the language of trigger filters.
//!
//! A trigger's `event_filter` is an event pattern in the style of Amazon
//! EventBridge: a JSON object that describes the events it matches.
//! [`Pattern::compile`] validates a filter once, and [`Pattern::matches`]
//! tests event documents against the compiled form.
//!
//! ```
//! use event_hub::matching::Pattern;
//! use serde_json::json;
//!
//! let pattern = Pattern::compile(&json!({
//!     "repository": {"full_name": ["Codertocat/Hello-World"]},
//!     "action": ["opened", "reopened"]
//! }))?;
//! assert!(pattern.matches(&json!({
//!     "action": "opened",
//!     "repository": {"full_name": "Codertocat/Hello-World", "private": false}
//! })));
//! assert!(!pattern.matches(&json!({"action": "closed"})));
//! # Ok::<(), event_hub::matching::PatternError>(())
//! ```
//!
//! # Fields and values
//!
//! - Each key of a pattern names a field of the event document, and an event
//!   matches only if every key matches.
//! - A nested object matches the fields of the nested object:
//!   `{"repository": {"full_name": ["Codertocat/Hello-World"]}}`.
//! - An array lists alternatives, and the field matches if any of them
//!   matches: `{"action": ["opened", "reopened"]}`.
//! - A single value is short for an array of one element, so
//!   `{"action": "opened"}` means `{"action": ["opened"]}`.
//! - Exact values are strings, numbers, booleans and `null`. The JSON type must
//!   agree, so `"5"` does not match the number `5`. Numbers compare by value,
//!   so `5` matches `5.0`. `[null]` matches a field that is present and null.
//!   Strings compare byte for byte, without Unicode normalization.
//! - When the event's field is an array, the field matches if any element
//!   matches: `{"labels": ["bug"]}` matches `{"labels": ["ui", "bug"]}`.
//!   Arrays inside arrays are flattened.
//! - When the event's field is an array and the pattern is a nested object,
//!   the field matches if one element object matches the whole nested pattern.
//!   Unlike EventBridge, fields of different elements are never combined:
//!   `{"commits": {"id": ["a"], "distinct": [true]}}` does not match
//!   `{"commits": [{"id": "a", "distinct": false}, {"id": "b", "distinct": true}]}`.
//! - A field that is missing from the event matches only `{"exists": false}`.
//!   Below a missing field, or below a field that is not an object, every
//!   field is missing.
//!
//! # Operators
//!
//! An operator is an object with one key, written as an element of the array
//! of alternatives, and it may be mixed with exact values:
//! `{"ref": ["refs/heads/main", {"prefix": "refs/tags/v"}]}`. An operator
//! object written without the array is a nested pattern on a field of that
//! name, as in EventBridge: `{"ref": {"prefix": "refs/tags/"}}` matches the
//! field `ref.prefix`.
//!
//! Unless stated otherwise, an operator tests each scalar value of the field
//! (each element when the field is an array) and never matches a missing field
//! or an object.
//!
//! - `prefix` matches strings that start with the text:
//!   `{"ref": [{"prefix": "refs/tags/"}]}`. With
//!   `{"prefix": {"equals-ignore-case": "Refs/Tags/"}}` the comparison ignores
//!   case.
//! - `suffix` matches strings that end with the text:
//!   `{"file": [{"suffix": ".png"}]}`, or without regard to case with
//!   `{"suffix": {"equals-ignore-case": ".PNG"}}`.
//! - `equals-ignore-case` matches strings equal to the text without regard to
//!   case: `{"sender": {"login": [{"equals-ignore-case": "codertocat"}]}}`.
//! - `anything-but` matches a present value (null included) that is not
//!   excluded. The exclusion is a value, a list of values, a `prefix` or a
//!   `suffix`:
//!   `{"action": [{"anything-but": "deleted"}]}`,
//!   `{"action": [{"anything-but": ["deleted", "closed"]}]}`,
//!   `{"ref": [{"anything-but": {"prefix": "refs/tags/"}}]}`,
//!   `{"file": [{"anything-but": {"suffix": ".md"}}]}`.
//!   On an array field it matches if any element is not excluded.
//! - `numeric` matches numbers that satisfy one comparison or a range of
//!   two, with the operators `=`, `<`, `<=`, `>` and `>=`:
//!   `{"size": [{"numeric": [">", 0, "<=", 5]}]}`,
//!   `{"installation": {"id": [{"numeric": ["=", 42]}]}}`. A range needs one
//!   lower bound (`>` or `>=`) and one upper bound (`<` or `<=`), and must not
//!   be empty. Strings such as `"5"` never match.
//! - `exists` tests whether the field is present:
//!   `{"release": {"tag_name": [{"exists": true}]}}` matches any present value,
//!   including `null`, `[]` and objects, and `{"exists": false}` matches only a
//!   missing field. This differs from EventBridge, where `exists` looks only at
//!   leaf values.
//! - `wildcard` matches strings against a glob where `*` stands for any run of
//!   characters, the empty run included: `{"file": [{"wildcard": "src/*.rs"}]}`.
//!   `\*` is a literal star and `\\` a literal backslash. Consecutive
//!   wildcards (`**`) are rejected, and a wildcard contains at most 5 `*`.
//! - `cidr` matches strings that are IPv4 or IPv6 addresses inside the network:
//!   `{"source_ip": [{"cidr": "10.0.0.0/24"}]}`, `{"source_ip": [{"cidr": "2001:db8::/32"}]}`.
//! - `$or` is a key of an object pattern whose value lists at least two
//!   patterns, and it matches if any of them matches at the same level:
//!   `{"repo": "a/b", "$or": [{"branch": "main"}, {"tag": [{"prefix": "v"}]}]}`.
//!
//! Case-insensitive comparisons lowercase both sides with [`str::to_lowercase`],
//! which is Unicode lowercase mapping but not full case folding (`"STRASSE"`
//! does not match `"straße"`).
//!
//! # Validation
//!
//! [`Pattern::compile`] rejects, with a [`PatternError`] whose path points at
//! the offending part: a pattern that is not an object, an empty object or
//! array, an unknown operator, an operator with a value of the wrong type, an
//! invalid numeric comparison or range, an invalid CIDR block, an invalid
//! wildcard, a `$or` with fewer than two patterns, objects nested deeper
//! than [`MAX_DEPTH`], more than [`MAX_CONDITIONS`] conditions and more than
//! [`MAX_OR_ALTERNATIVES`] `$or` alternatives.
//!
//! # Explanations
//!
//! [`Pattern::explain`] tests a document like [`Pattern::matches`] and, when
//! it does not match, returns the first condition that failed, with its path,
//! the condition as JSON and the document's value there.

use std::cmp::Ordering;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Number, Value};

use crate::event::FieldSet;

/// Maximum nesting of objects in a pattern, the top-level object counting as
/// 1 and each `$or` alternative as one more level.
pub const MAX_DEPTH: usize = 32;

/// Maximum number of `*` in a `wildcard` operator.
pub const MAX_WILDCARDS: usize = 5;

/// Maximum number of conditions in a pattern: exact values and operators,
/// with each value listed in an `anything-but` counting as one.
///
/// A trigger that is a candidate for an event is tested condition by
/// condition, so this bounds the time one trigger can take per event.
pub const MAX_CONDITIONS: usize = 1000;

/// Maximum number of `$or` alternatives in a pattern, over all its `$or` keys.
///
/// An event that matches no alternative is tested against each of them, and
/// the matching engine may index a `$or` pattern under a key of each
/// alternative, so this bounds both.
pub const MAX_OR_ALTERNATIVES: usize = 100;

/// Operator names, in the order error messages list them.
const OPERATORS: &str =
    "prefix, suffix, equals-ignore-case, anything-but, numeric, exists, wildcard, cidr";

/// A compiled event pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub(super) root: ObjectPattern,
}

/// Why an event filter is not a valid pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at {path}: {message}")]
pub struct PatternError {
    /// JSON path of the offending part, such as `$.repository.full_name[0]`.
    pub path: String,
    /// Description of the problem and of the value expected instead.
    pub message: String,
}

impl PatternError {
    fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// Counts of what a pattern compiled so far contains, checked against
/// [`MAX_CONDITIONS`] and [`MAX_OR_ALTERNATIVES`].
#[derive(Default)]
struct Budget {
    conditions: usize,
    alternatives: usize,
}

impl Budget {
    fn add_conditions(&mut self, count: usize, path: &str) -> Result<(), PatternError> {
        self.conditions += count;
        if self.conditions > MAX_CONDITIONS {
            return Err(PatternError::new(
                path,
                format!(
                    "pattern contains more than {MAX_CONDITIONS} conditions \
                     (exact values and operators); split it into several triggers"
                ),
            ));
        }
        Ok(())
    }

    fn add_alternatives(&mut self, count: usize, path: &str) -> Result<(), PatternError> {
        self.alternatives += count;
        if self.alternatives > MAX_OR_ALTERNATIVES {
            return Err(PatternError::new(
                path,
                format!(
                    "pattern lists more than {MAX_OR_ALTERNATIVES} $or alternatives in all; \
                     split it into several triggers"
                ),
            ));
        }
        Ok(())
    }
}

impl Pattern {
    /// Validates an event filter and compiles it for matching.
    ///
    /// Returns a [`PatternError`] naming the first invalid part found.
    pub fn compile(filter: &Value) -> Result<Self, PatternError> {
        let root = compile_object(filter, "$", 1, &mut Budget::default())?;
        Ok(Self { root })
    }

    /// Tests an event document against the pattern.
    ///
    /// Recursion depth is bounded by the pattern's nesting, never by the
    /// document's, so deeply nested documents are safe to test.
    pub fn matches(&self, document: &Value) -> bool {
        self.root.matches(Some(document))
    }

    /// Adds to `fields` every field that matching this pattern reads: a
    /// field with a leaf condition whole, and the named fields below a
    /// nested object. A document projected on these fields (see
    /// [`crate::event::projection`]) matches exactly when the whole one does.
    pub fn add_fields_to(&self, fields: &mut FieldSet) {
        self.root.add_fields_to(fields);
    }
}

/// An object pattern: every field must match, and one of the `$or`
/// alternatives too when there are any.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ObjectPattern {
    pub(super) fields: Vec<FieldPattern>,
    /// Alternatives of the object's `$or` key, empty when it has none.
    pub(super) alternatives: Vec<ObjectPattern>,
}

/// The condition on one named field of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct FieldPattern {
    pub(super) name: String,
    pub(super) condition: Condition,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Condition {
    /// The field is an object (or an array containing one) matching the pattern.
    Nested(ObjectPattern),
    /// The field matches at least one of the matchers.
    AnyOf(Vec<Matcher>),
}

/// One alternative of a leaf field: an exact value or an operator.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Matcher {
    Equals(Scalar),
    /// Lowercased text.
    EqualsIgnoreCase(String),
    Prefix(Affix),
    Suffix(Affix),
    AnythingBut(Exclusion),
    Numeric(NumericRange),
    Exists(bool),
    Wildcard(Wildcard),
    Cidr(IpNet),
}

/// An exact JSON value other than an array or object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Scalar {
    String(String),
    Number(Number),
    Bool(bool),
    Null,
}

/// The text of a `prefix` or `suffix`, lowercased when `ignore_case` is set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Affix {
    pub(super) text: String,
    pub(super) ignore_case: bool,
}

/// Values excluded by an `anything-but`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Exclusion {
    Values(Vec<Scalar>),
    Prefix(Affix),
    Suffix(Affix),
}

/// A `numeric` condition. An `=` comparison is stored as two inclusive bounds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct NumericRange {
    pub(super) lower: Option<Bound>,
    pub(super) upper: Option<Bound>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Bound {
    pub(super) value: Number,
    pub(super) inclusive: bool,
}

/// A wildcard split at its stars: `a*b*c` is `["a", "b", "c"]`, so a value
/// must start with the first part, end with the last, and contain the
/// middle ones in order between them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Wildcard {
    /// The wildcard as written in the filter, for explanations.
    pub(super) text: String,
    parts: Vec<String>,
}

// ---------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------

fn compile_object(
    value: &Value,
    path: &str,
    depth: usize,
    budget: &mut Budget,
) -> Result<ObjectPattern, PatternError> {
    if depth > MAX_DEPTH {
        return Err(PatternError::new(
            path,
            format!("pattern nests objects deeper than {MAX_DEPTH} levels; flatten it"),
        ));
    }
    let Value::Object(map) = value else {
        return Err(PatternError::new(
            path,
            format!(
                "expected a pattern object such as {{\"field\": [\"value\"]}}, found {}",
                describe(value)
            ),
        ));
    };
    if map.is_empty() {
        return Err(PatternError::new(
            path,
            "pattern object is empty; name at least one field to match",
        ));
    }

    let mut fields = Vec::with_capacity(map.len());
    let mut alternatives = Vec::new();
    for (name, field_value) in map {
        let field_path = child_path(path, name);
        if name == "$or" {
            alternatives = compile_or(field_value, &field_path, depth, budget)?;
        } else {
            let condition = compile_condition(field_value, &field_path, depth, budget)?;
            fields.push(FieldPattern {
                name: name.clone(),
                condition,
            });
        }
    }
    Ok(ObjectPattern {
        fields,
        alternatives,
    })
}

fn compile_or(
    value: &Value,
    path: &str,
    depth: usize,
    budget: &mut Budget,
) -> Result<Vec<ObjectPattern>, PatternError> {
    let Value::Array(items) = value else {
        return Err(PatternError::new(
            path,
            format!(
                "$or expects an array of at least 2 patterns, found {}",
                describe(value)
            ),
        ));
    };
    if items.len() < 2 {
        return Err(PatternError::new(
            path,
            format!(
                "$or expects an array of at least 2 patterns, found {}",
                items.len()
            ),
        ));
    }
    budget.add_alternatives(items.len(), path)?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| compile_object(item, &format!("{path}[{index}]"), depth + 1, budget))
        .collect()
}

fn compile_condition(
    value: &Value,
    path: &str,
    depth: usize,
    budget: &mut Budget,
) -> Result<Condition, PatternError> {
    match value {
        Value::Object(_) => Ok(Condition::Nested(compile_object(
            value,
            path,
            depth + 1,
            budget,
        )?)),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(PatternError::new(
                    path,
                    "array of alternatives is empty; list at least one value or operator",
                ));
            }
            let matchers = items
                .iter()
                .enumerate()
                .map(|(index, item)| compile_matcher(item, &format!("{path}[{index}]"), budget))
                .collect::<Result<_, _>>()?;
            Ok(Condition::AnyOf(matchers))
        }
        scalar => {
            let matcher = Matcher::Equals(scalar_of(scalar, path)?);
            budget.add_conditions(1, path)?;
            Ok(Condition::AnyOf(vec![matcher]))
        }
    }
}

fn compile_matcher(
    value: &Value,
    path: &str,
    budget: &mut Budget,
) -> Result<Matcher, PatternError> {
    let matcher =
        match value {
            Value::Array(_) => return Err(PatternError::new(
                path,
                "arrays cannot be nested in an array of alternatives; list all values in one array",
            )),
            Value::Object(operator) => compile_operator(operator, path)?,
            scalar => Matcher::Equals(scalar_of(scalar, path)?),
        };
    let conditions = match &matcher {
        Matcher::AnythingBut(Exclusion::Values(values)) => values.len(),
        _ => 1,
    };
    budget.add_conditions(conditions, path)?;
    Ok(matcher)
}

fn compile_operator(operator: &Map<String, Value>, path: &str) -> Result<Matcher, PatternError> {
    let mut entries = operator.iter();
    let (Some((name, argument)), None) = (entries.next(), entries.next()) else {
        return Err(PatternError::new(
            path,
            format!(
                "an operator object must contain exactly one operator, found {} keys; \
                 expected one of {OPERATORS}",
                operator.len()
            ),
        ));
    };
    let path = child_path(path, name);
    let path = path.as_str();
    match name.as_str() {
        "prefix" => Ok(Matcher::Prefix(compile_affix(argument, path, "prefix")?)),
        "suffix" => Ok(Matcher::Suffix(compile_affix(argument, path, "suffix")?)),
        "equals-ignore-case" => match argument {
            Value::String(text) => Ok(Matcher::EqualsIgnoreCase(text.to_lowercase())),
            other => Err(PatternError::new(
                path,
                format!(
                    "equals-ignore-case expects a string, found {}",
                    describe(other)
                ),
            )),
        },
        "anything-but" => Ok(Matcher::AnythingBut(compile_exclusion(argument, path)?)),
        "numeric" => Ok(Matcher::Numeric(compile_numeric(argument, path)?)),
        "exists" => match argument {
            Value::Bool(expected) => Ok(Matcher::Exists(*expected)),
            other => Err(PatternError::new(
                path,
                format!("exists expects true or false, found {}", describe(other)),
            )),
        },
        "wildcard" => match argument {
            Value::String(text) => Ok(Matcher::Wildcard(compile_wildcard(text, path)?)),
            other => Err(PatternError::new(
                path,
                format!("wildcard expects a string, found {}", describe(other)),
            )),
        },
        "cidr" => match argument {
            Value::String(text) => Ok(Matcher::Cidr(compile_cidr(text, path)?)),
            other => Err(PatternError::new(
                path,
                format!(
                    "cidr expects a string such as \"10.0.0.0/24\", found {}",
                    describe(other)
                ),
            )),
        },
        unknown => Err(PatternError::new(
            path,
            format!(
                "unknown operator {unknown:?}; expected one of {OPERATORS} \
                 (to match a nested field, use an object instead of an array)"
            ),
        )),
    }
}

/// Compiles the argument of `prefix` or `suffix`: a string, or
/// `{"equals-ignore-case": string}`.
fn compile_affix(value: &Value, path: &str, operator: &str) -> Result<Affix, PatternError> {
    if let Value::String(text) = value {
        return Ok(Affix {
            text: text.clone(),
            ignore_case: false,
        });
    }
    if let Value::Object(map) = value {
        if let (1, Some(Value::String(text))) = (map.len(), map.get("equals-ignore-case")) {
            return Ok(Affix {
                text: text.to_lowercase(),
                ignore_case: true,
            });
        }
    }
    Err(PatternError::new(
        path,
        format!(
            "{operator} expects a string or {{\"equals-ignore-case\": string}}, found {}",
            describe(value)
        ),
    ))
}

fn compile_exclusion(value: &Value, path: &str) -> Result<Exclusion, PatternError> {
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(PatternError::new(
                    path,
                    "anything-but list is empty; list at least one value to exclude",
                ));
            }
            let values = items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::Array(_) | Value::Object(_) => Err(PatternError::new(
                        &format!("{path}[{index}]"),
                        format!(
                            "anything-but list expects strings, numbers, booleans or null, found {}",
                            describe(item)
                        ),
                    )),
                    scalar => scalar_of(scalar, path),
                })
                .collect::<Result<_, _>>()?;
            Ok(Exclusion::Values(values))
        }
        Value::Object(map) => {
            let mut entries = map.iter();
            match (entries.next(), entries.next()) {
                (Some((name, argument)), None) if name == "prefix" => Ok(Exclusion::Prefix(
                    compile_affix(argument, &child_path(path, name), "prefix")?,
                )),
                (Some((name, argument)), None) if name == "suffix" => Ok(Exclusion::Suffix(
                    compile_affix(argument, &child_path(path, name), "suffix")?,
                )),
                _ => Err(PatternError::new(
                    path,
                    "anything-but expects a value, a list of values, {\"prefix\": ...} or {\"suffix\": ...}",
                )),
            }
        }
        scalar => Ok(Exclusion::Values(vec![scalar_of(scalar, path)?])),
    }
}

fn compile_numeric(value: &Value, path: &str) -> Result<NumericRange, PatternError> {
    const EXPECTED: &str =
        "numeric expects [operator, number] or [operator, number, operator, number] \
         with operators =, <, <=, >, >=";

    let Value::Array(items) = value else {
        return Err(PatternError::new(
            path,
            format!("{EXPECTED}, found {}", describe(value)),
        ));
    };
    if items.len() != 2 && items.len() != 4 {
        return Err(PatternError::new(
            path,
            format!("{EXPECTED}, found an array of {} items", items.len()),
        ));
    }

    let mut range = NumericRange {
        lower: None,
        upper: None,
    };
    for (index, pair) in items.chunks(2).enumerate() {
        let operator_path = format!("{path}[{}]", index * 2);
        let number_path = format!("{path}[{}]", index * 2 + 1);
        let operator = match &pair[0] {
            Value::String(operator) => operator.as_str(),
            other => {
                return Err(PatternError::new(
                    &operator_path,
                    format!(
                        "expected a comparison operator (=, <, <=, >, >=), found {}",
                        describe(other)
                    ),
                ))
            }
        };
        let number = match &pair[1] {
            Value::Number(number) => number.clone(),
            other => {
                return Err(PatternError::new(
                    &number_path,
                    format!(
                        "expected a number after {operator:?}, found {}",
                        describe(other)
                    ),
                ))
            }
        };
        let (is_lower, inclusive) = match operator {
            "=" if items.len() == 2 => {
                range.lower = Some(Bound {
                    value: number.clone(),
                    inclusive: true,
                });
                range.upper = Some(Bound {
                    value: number,
                    inclusive: true,
                });
                continue;
            }
            "=" => {
                return Err(PatternError::new(
                    &operator_path,
                    "\"=\" cannot be combined with a second comparison; use it alone",
                ))
            }
            ">" => (true, false),
            ">=" => (true, true),
            "<" => (false, false),
            "<=" => (false, true),
            other => {
                return Err(PatternError::new(
                    &operator_path,
                    format!("unknown comparison operator {other:?}; expected =, <, <=, > or >="),
                ))
            }
        };
        let slot = if is_lower {
            &mut range.lower
        } else {
            &mut range.upper
        };
        if slot.is_some() {
            return Err(PatternError::new(
                &operator_path,
                "a range needs one lower bound (> or >=) and one upper bound (< or <=)",
            ));
        }
        *slot = Some(Bound {
            value: number,
            inclusive,
        });
    }

    if let (Some(lower), Some(upper)) = (&range.lower, &range.upper) {
        let empty = match compare_numbers(&lower.value, &upper.value) {
            Some(Ordering::Less) => false,
            Some(Ordering::Equal) => !(lower.inclusive && upper.inclusive),
            Some(Ordering::Greater) | None => true,
        };
        if empty {
            return Err(PatternError::new(
                path,
                format!(
                    "range is empty: lower bound {} is not below upper bound {}; \
                     write the lower bound first in value order",
                    lower.value, upper.value
                ),
            ));
        }
    }
    Ok(range)
}

fn compile_wildcard(text: &str, path: &str) -> Result<Wildcard, PatternError> {
    let mut parts = vec![String::new()];
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        match character {
            '*' => {
                let previous_is_star =
                    parts.len() > 1 && parts.last().is_some_and(String::is_empty);
                if previous_is_star {
                    return Err(PatternError::new(
                        path,
                        format!(
                            "wildcard {text:?} contains consecutive wildcards (**); use a single *"
                        ),
                    ));
                }
                parts.push(String::new());
            }
            '\\' => {
                let escaped = match characters.next() {
                    Some(escaped @ ('*' | '\\')) => escaped,
                    _ => {
                        return Err(PatternError::new(
                            path,
                            format!(
                                "wildcard {text:?} contains an invalid escape; \
                                 only \\* and \\\\ are allowed"
                            ),
                        ))
                    }
                };
                push_to_last(&mut parts, escaped);
            }
            other => push_to_last(&mut parts, other),
        }
    }

    let stars = parts.len() - 1;
    if stars > MAX_WILDCARDS {
        return Err(PatternError::new(
            path,
            format!(
                "wildcard {text:?} contains {stars} wildcards; at most {MAX_WILDCARDS} are allowed"
            ),
        ));
    }
    Ok(Wildcard {
        text: text.to_owned(),
        parts,
    })
}

fn push_to_last(parts: &mut [String], character: char) {
    if let Some(last) = parts.last_mut() {
        last.push(character);
    }
}

fn compile_cidr(text: &str, path: &str) -> Result<IpNet, PatternError> {
    text.parse::<IpNet>()
        .map(|network| network.trunc())
        .map_err(|_| {
            PatternError::new(
                path,
                format!(
                    "invalid CIDR block {text:?}; expected an IPv4 or IPv6 network \
                     such as 10.0.0.0/24 or 2001:db8::/32"
                ),
            )
        })
}

/// Converts a string, number, boolean or null into a [`Scalar`], and
/// rejects arrays and objects.
fn scalar_of(value: &Value, path: &str) -> Result<Scalar, PatternError> {
    match value {
        Value::String(text) => Ok(Scalar::String(text.clone())),
        Value::Number(number) => Ok(Scalar::Number(number.clone())),
        Value::Bool(flag) => Ok(Scalar::Bool(*flag)),
        Value::Null => Ok(Scalar::Null),
        other => Err(PatternError::new(
            path,
            format!(
                "expected a string, number, boolean or null, found {}",
                describe(other)
            ),
        )),
    }
}

/// Returns the JSON path of the member `name` of the object at `parent`,
/// using dot notation for plain names and bracket notation for the rest.
pub(super) fn child_path(parent: &str, name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == '$')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
    if plain {
        format!("{parent}.{name}")
    } else {
        // serde_json only fails on I/O errors and non-string map keys, so this
        // fallback is never taken.
        let quoted = serde_json::to_string(name).unwrap_or_else(|_| format!("{name:?}"));
        format!("{parent}[{quoted}]")
    }
}

/// Names the JSON type of a value for error messages.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------

impl ObjectPattern {
    fn add_fields_to(&self, fields: &mut FieldSet) {
        if fields.is_whole() {
            return;
        }
        for field in &self.fields {
            let node = fields.child_mut(&field.name);
            match &field.condition {
                Condition::Nested(nested) => nested.add_fields_to(node),
                Condition::AnyOf(_) => node.keep_whole(),
            }
        }
        for alternative in &self.alternatives {
            alternative.add_fields_to(fields);
        }
    }

    /// Tests the object at this level, where `None` is a missing field. A
    /// value that is not an object has no fields, like a missing one.
    pub(super) fn matches(&self, value: Option<&Value>) -> bool {
        let object = value.and_then(Value::as_object);
        let fields_match = self
            .fields
            .iter()
            .all(|field| field.matches(object.and_then(|object| object.get(&field.name))));
        fields_match
            && (self.alternatives.is_empty()
                || self
                    .alternatives
                    .iter()
                    .any(|alternative| alternative.matches(value)))
    }
}

impl FieldPattern {
    pub(super) fn matches(&self, value: Option<&Value>) -> bool {
        match &self.condition {
            Condition::Nested(pattern) => match value {
                Some(array @ Value::Array(_)) => {
                    let mut has_object = false;
                    let found = any_element(array, |element| {
                        if element.is_object() {
                            has_object = true;
                            pattern.matches(Some(element))
                        } else {
                            false
                        }
                    });
                    // An array without objects has no nested fields at all.
                    found || (!has_object && pattern.matches(None))
                }
                other => pattern.matches(other),
            },
            Condition::AnyOf(matchers) => {
                let exists_matches = matchers.iter().any(|matcher| match matcher {
                    Matcher::Exists(expected) => value.is_some() == *expected,
                    _ => false,
                });
                exists_matches
                    || value.is_some_and(|value| {
                        any_element(value, |element| {
                            matchers.iter().any(|matcher| matcher.matches(element))
                        })
                    })
            }
        }
    }
}

impl Matcher {
    /// Tests one value that is not an array. The caller decides `exists`,
    /// which depends on the field rather than its values.
    fn matches(&self, value: &Value) -> bool {
        match self {
            Self::Equals(expected) => expected.equals(value),
            Self::EqualsIgnoreCase(expected) => value
                .as_str()
                .is_some_and(|text| text.to_lowercase() == *expected),
            Self::Prefix(affix) => value.as_str().is_some_and(|text| affix.is_prefix_of(text)),
            Self::Suffix(affix) => value.as_str().is_some_and(|text| affix.is_suffix_of(text)),
            Self::AnythingBut(exclusion) => !value.is_object() && !exclusion.excludes(value),
            Self::Numeric(range) => match value {
                Value::Number(number) => range.contains(number),
                _ => false,
            },
            Self::Exists(_) => false,
            Self::Wildcard(wildcard) => value.as_str().is_some_and(|text| wildcard.matches(text)),
            Self::Cidr(network) => value
                .as_str()
                .and_then(|text| text.parse::<IpAddr>().ok())
                .is_some_and(|address| network.contains(&address)),
        }
    }
}

impl Scalar {
    fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::String(expected), Value::String(text)) => expected == text,
            (Self::Number(expected), Value::Number(number)) => {
                compare_numbers(number, expected) == Some(Ordering::Equal)
            }
            (Self::Bool(expected), Value::Bool(flag)) => expected == flag,
            (Self::Null, Value::Null) => true,
            _ => false,
        }
    }
}

impl Affix {
    fn is_prefix_of(&self, text: &str) -> bool {
        if self.ignore_case {
            text.to_lowercase().starts_with(&self.text)
        } else {
            text.starts_with(&self.text)
        }
    }

    fn is_suffix_of(&self, text: &str) -> bool {
        if self.ignore_case {
            text.to_lowercase().ends_with(&self.text)
        } else {
            text.ends_with(&self.text)
        }
    }
}

impl Exclusion {
    fn excludes(&self, value: &Value) -> bool {
        match self {
            Self::Values(values) => values.iter().any(|excluded| excluded.equals(value)),
            Self::Prefix(affix) => value.as_str().is_some_and(|text| affix.is_prefix_of(text)),
            Self::Suffix(affix) => value.as_str().is_some_and(|text| affix.is_suffix_of(text)),
        }
    }
}

impl NumericRange {
    fn contains(&self, number: &Number) -> bool {
        let above_lower =
            self.lower
                .as_ref()
                .is_none_or(|bound| match compare_numbers(number, &bound.value) {
                    Some(Ordering::Greater) => true,
                    Some(Ordering::Equal) => bound.inclusive,
                    Some(Ordering::Less) | None => false,
                });
        let below_upper =
            self.upper
                .as_ref()
                .is_none_or(|bound| match compare_numbers(number, &bound.value) {
                    Some(Ordering::Less) => true,
                    Some(Ordering::Equal) => bound.inclusive,
                    Some(Ordering::Greater) | None => false,
                });
        above_lower && below_upper
    }
}

impl Wildcard {
    fn matches(&self, text: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return false,
        };
        let Some((last, middle)) = rest.split_last() else {
            // No star: the whole text must equal the literal.
            return text == first;
        };
        let Some(after_first) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some(mut between) = after_first.strip_suffix(last.as_str()) else {
            return false;
        };
        // Taking the leftmost occurrence of each middle part leaves the most
        // room for the parts after it, so it finds a match whenever one exists.
        for part in middle {
            match between.find(part.as_str()) {
                Some(index) => between = &between[index + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// Compares two JSON numbers by value: exactly when both are integers, else
/// as `f64`, so integers beyond 2^53 compare approximately against floats.
pub(super) fn compare_numbers(left: &Number, right: &Number) -> Option<Ordering> {
    match (integer_of(left), integer_of(right)) {
        (Some(left), Some(right)) => Some(left.cmp(&right)),
        _ => left.as_f64()?.partial_cmp(&right.as_f64()?),
    }
}

fn integer_of(number: &Number) -> Option<i128> {
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
}

/// Calls `test` on `value`, or on each element of `value` when it is an
/// array, flattening nested arrays with an explicit stack instead of
/// recursion. Returns whether any call returned true.
fn any_element<'a>(value: &'a Value, mut test: impl FnMut(&'a Value) -> bool) -> bool {
    let Value::Array(items) = value else {
        return test(value);
    };
    let mut stack = vec![items.iter()];
    while let Some(iterator) = stack.last_mut() {
        match iterator.next() {
            None => {
                stack.pop();
            }
            Some(Value::Array(inner)) => stack.push(inner.iter()),
            Some(element) => {
                if test(element) {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Compiles `pattern` and tests `document`, failing on an invalid pattern.
    fn check(pattern: &Value, document: &Value) -> bool {
        match Pattern::compile(pattern) {
            Ok(compiled) => compiled.matches(document),
            Err(error) => panic!("pattern {pattern} is invalid: {error}"),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn matching_table() {
        // (case, pattern, document, expected)
        let cases = [
            // Exact values, AND across keys, OR inside arrays.
            ("string", json!({"a": ["x"]}), json!({"a": "x"}), true),
            ("string mismatch", json!({"a": ["x"]}), json!({"a": "y"}), false),
            ("scalar shorthand", json!({"a": "x"}), json!({"a": "x"}), true),
            ("or", json!({"a": ["x", "y"]}), json!({"a": "y"}), true),
            ("and", json!({"a": "x", "b": "y"}), json!({"a": "x", "b": "y"}), true),
            ("and one fails", json!({"a": "x", "b": "y"}), json!({"a": "x", "b": "z"}), false),
            ("missing field", json!({"a": "x"}), json!({"b": "x"}), false),
            ("extra document fields", json!({"a": "x"}), json!({"a": "x", "b": 1}), true),
            ("integer equals float", json!({"n": [5]}), json!({"n": 5.0}), true),
            ("float equals integer", json!({"n": [5.0]}), json!({"n": 5}), true),
            ("negative number", json!({"n": [-3]}), json!({"n": -3}), true),
            ("large integers exact", json!({"n": [9007199254740993_u64]}), json!({"n": 9007199254740992_u64}), false),
            ("u64 max", json!({"n": [u64::MAX]}), json!({"n": u64::MAX}), true),
            ("string is not number", json!({"n": ["5"]}), json!({"n": 5}), false),
            ("number is not string", json!({"n": [5]}), json!({"n": "5"}), false),
            ("bool", json!({"b": [true]}), json!({"b": true}), true),
            ("bool mismatch", json!({"b": [true]}), json!({"b": false}), false),
            ("bool is not string", json!({"b": ["true"]}), json!({"b": true}), false),
            ("null matches null", json!({"a": [null]}), json!({"a": null}), true),
            ("null shorthand", json!({"a": null}), json!({"a": null}), true),
            ("null needs presence", json!({"a": [null]}), json!({}), false),
            ("null is not empty string", json!({"a": [null]}), json!({"a": ""}), false),
            ("object is not scalar", json!({"a": ["x"]}), json!({"a": {"b": "x"}}), false),
            ("unicode exact", json!({"a": ["héllo 世界 🎉"]}), json!({"a": "héllo 世界 🎉"}), true),
            // Precomposed "é" does not match "e" followed by a combining acute accent.
            ("unicode not normalized", json!({"a": ["\u{e9}"]}), json!({"a": "e\u{301}"}), false),
            ("key with dot is literal", json!({"a.b": "x"}), json!({"a": {"b": "x"}}), false),
            ("key with dot", json!({"a.b": "x"}), json!({"a.b": "x"}), true),
            // Nested objects.
            ("nested", json!({"a": {"b": "x"}}), json!({"a": {"b": "x"}}), true),
            ("nested mismatch", json!({"a": {"b": "x"}}), json!({"a": {"b": "y"}}), false),
            ("nested missing parent", json!({"a": {"b": "x"}}), json!({}), false),
            ("nested parent not object", json!({"a": {"b": "x"}}), json!({"a": "x"}), false),
            ("nested and", json!({"a": {"b": "x", "c": 1}}), json!({"a": {"b": "x", "c": 1}}), true),
            ("nested and fails", json!({"a": {"b": "x", "c": 1}}), json!({"a": {"b": "x", "c": 2}}), false),
            // Arrays in documents.
            ("array any element", json!({"a": ["x"]}), json!({"a": ["y", "x"]}), true),
            ("array no element", json!({"a": ["x"]}), json!({"a": ["y", "z"]}), false),
            ("empty array", json!({"a": ["x"]}), json!({"a": []}), false),
            ("nested arrays flattened", json!({"a": [3]}), json!({"a": [[1, [2, 3]]]}), true),
            ("array of objects", json!({"a": {"b": "x"}}), json!({"a": [{"b": "y"}, {"b": "x"}]}), true),
            ("array of objects none", json!({"a": {"b": "x"}}), json!({"a": [{"b": "y"}]}), false),
            ("array elements not combined", json!({"a": {"b": "x", "c": 1}}), json!({"a": [{"b": "x", "c": 2}, {"b": "y", "c": 1}]}), false),
            ("array element matches all", json!({"a": {"b": "x", "c": 1}}), json!({"a": [{"b": "x", "c": 2}, {"b": "x", "c": 1}]}), true),
            ("array of arrays of objects", json!({"a": {"b": "x"}}), json!({"a": [[{"b": "x"}]]}), true),
            ("array scalars skipped for nested", json!({"a": {"b": "x"}}), json!({"a": ["x", {"b": "x"}]}), true),
            ("arrays at two levels", json!({"a": {"b": ["x"]}}), json!({"a": [{"b": ["y", "x"]}]}), true),
            // prefix and suffix.
            ("prefix", json!({"r": [{"prefix": "refs/tags/"}]}), json!({"r": "refs/tags/v1"}), true),
            ("prefix mismatch", json!({"r": [{"prefix": "refs/tags/"}]}), json!({"r": "refs/heads/main"}), false),
            ("prefix is case sensitive", json!({"r": [{"prefix": "Refs/"}]}), json!({"r": "refs/x"}), false),
            ("prefix ignore case", json!({"r": [{"prefix": {"equals-ignore-case": "REFS/Tags/"}}]}), json!({"r": "refs/tags/v1"}), true),
            ("prefix on number", json!({"r": [{"prefix": "1"}]}), json!({"r": 12}), false),
            ("prefix on array", json!({"r": [{"prefix": "b"}]}), json!({"r": ["a", "bc"]}), true),
            ("prefix unicode", json!({"r": [{"prefix": "日本"}]}), json!({"r": "日本語"}), true),
            ("empty prefix matches strings", json!({"r": [{"prefix": ""}]}), json!({"r": "x"}), true),
            ("suffix", json!({"f": [{"suffix": ".png"}]}), json!({"f": "a.png"}), true),
            ("suffix mismatch", json!({"f": [{"suffix": ".png"}]}), json!({"f": "a.PNG"}), false),
            ("suffix ignore case", json!({"f": [{"suffix": {"equals-ignore-case": ".png"}}]}), json!({"f": "a.PNG"}), true),
            ("suffix missing field", json!({"f": [{"suffix": ".png"}]}), json!({}), false),
            // equals-ignore-case.
            ("equals-ignore-case", json!({"u": [{"equals-ignore-case": "CoderToCat"}]}), json!({"u": "codertocat"}), true),
            ("equals-ignore-case mismatch", json!({"u": [{"equals-ignore-case": "abc"}]}), json!({"u": "abcd"}), false),
            ("equals-ignore-case unicode", json!({"u": [{"equals-ignore-case": "ÉCOLE"}]}), json!({"u": "école"}), true),
            ("equals-ignore-case no folding", json!({"u": [{"equals-ignore-case": "STRASSE"}]}), json!({"u": "straße"}), false),
            ("equals-ignore-case on number", json!({"u": [{"equals-ignore-case": "1"}]}), json!({"u": 1}), false),
            // anything-but.
            ("anything-but value", json!({"a": [{"anything-but": "deleted"}]}), json!({"a": "created"}), true),
            ("anything-but excluded", json!({"a": [{"anything-but": "deleted"}]}), json!({"a": "deleted"}), false),
            ("anything-but list", json!({"a": [{"anything-but": ["x", "y"]}]}), json!({"a": "y"}), false),
            ("anything-but list other", json!({"a": [{"anything-but": ["x", "y"]}]}), json!({"a": "z"}), true),
            ("anything-but missing", json!({"a": [{"anything-but": "x"}]}), json!({}), false),
            ("anything-but null value", json!({"a": [{"anything-but": "x"}]}), json!({"a": null}), true),
            ("anything-but excludes null", json!({"a": [{"anything-but": [null]}]}), json!({"a": null}), false),
            ("anything-but number", json!({"a": [{"anything-but": [1, 2]}]}), json!({"a": 2.0}), false),
            ("anything-but other type", json!({"a": [{"anything-but": 5}]}), json!({"a": "5"}), true),
            ("anything-but object", json!({"a": [{"anything-but": "x"}]}), json!({"a": {"b": 1}}), false),
            ("anything-but array any", json!({"a": [{"anything-but": "x"}]}), json!({"a": ["x", "y"]}), true),
            ("anything-but array all excluded", json!({"a": [{"anything-but": "x"}]}), json!({"a": ["x", "x"]}), false),
            ("anything-but prefix", json!({"a": [{"anything-but": {"prefix": "refs/tags/"}}]}), json!({"a": "refs/heads/x"}), true),
            ("anything-but prefix excluded", json!({"a": [{"anything-but": {"prefix": "refs/tags/"}}]}), json!({"a": "refs/tags/x"}), false),
            ("anything-but prefix number", json!({"a": [{"anything-but": {"prefix": "1"}}]}), json!({"a": 12}), true),
            ("anything-but prefix ignore case", json!({"a": [{"anything-but": {"prefix": {"equals-ignore-case": "X"}}}]}), json!({"a": "xy"}), false),
            ("anything-but suffix", json!({"a": [{"anything-but": {"suffix": ".md"}}]}), json!({"a": "a.rs"}), true),
            ("anything-but suffix excluded", json!({"a": [{"anything-but": {"suffix": ".md"}}]}), json!({"a": "README.md"}), false),
            // numeric.
            ("numeric range", json!({"n": [{"numeric": [">", 0, "<=", 5]}]}), json!({"n": 5}), true),
            ("numeric range low edge", json!({"n": [{"numeric": [">", 0, "<=", 5]}]}), json!({"n": 0}), false),
            ("numeric range high", json!({"n": [{"numeric": [">", 0, "<=", 5]}]}), json!({"n": 5.5}), false),
            ("numeric range float", json!({"n": [{"numeric": [">", 0, "<=", 5]}]}), json!({"n": 0.001}), true),
            ("numeric reversed order", json!({"n": [{"numeric": ["<", 10, ">=", 1]}]}), json!({"n": 1}), true),
            ("numeric equals", json!({"n": [{"numeric": ["=", 42]}]}), json!({"n": 42.0}), true),
            ("numeric equals mismatch", json!({"n": [{"numeric": ["=", 42]}]}), json!({"n": 43}), false),
            ("numeric less", json!({"n": [{"numeric": ["<", 0]}]}), json!({"n": -1}), true),
            ("numeric less edge", json!({"n": [{"numeric": ["<", 0]}]}), json!({"n": 0}), false),
            ("numeric at most", json!({"n": [{"numeric": ["<=", 0]}]}), json!({"n": 0}), true),
            ("numeric greater", json!({"n": [{"numeric": [">", 1.5]}]}), json!({"n": 2}), true),
            ("numeric at least", json!({"n": [{"numeric": [">=", 2]}]}), json!({"n": 2}), true),
            ("numeric point range", json!({"n": [{"numeric": [">=", 2, "<=", 2]}]}), json!({"n": 2}), true),
            ("numeric on string", json!({"n": [{"numeric": [">", 0]}]}), json!({"n": "5"}), false),
            ("numeric on missing", json!({"n": [{"numeric": [">", 0]}]}), json!({}), false),
            ("numeric on array", json!({"n": [{"numeric": [">", 10]}]}), json!({"n": [1, 20]}), true),
            ("numeric large u64", json!({"n": [{"numeric": [">", 0]}]}), json!({"n": u64::MAX}), true),
            // exists.
            ("exists true present", json!({"a": [{"exists": true}]}), json!({"a": "x"}), true),
            ("exists true missing", json!({"a": [{"exists": true}]}), json!({}), false),
            ("exists true null", json!({"a": [{"exists": true}]}), json!({"a": null}), true),
            ("exists true empty array", json!({"a": [{"exists": true}]}), json!({"a": []}), true),
            ("exists true object", json!({"a": [{"exists": true}]}), json!({"a": {"b": 1}}), true),
            ("exists false missing", json!({"a": [{"exists": false}]}), json!({}), true),
            ("exists false present", json!({"a": [{"exists": false}]}), json!({"a": 1}), false),
            ("exists false null", json!({"a": [{"exists": false}]}), json!({"a": null}), false),
            ("exists false under missing parent", json!({"a": {"b": [{"exists": false}]}}), json!({}), true),
            ("exists false under scalar parent", json!({"a": {"b": [{"exists": false}]}}), json!({"a": 1}), true),
            ("exists false under empty array", json!({"a": {"b": [{"exists": false}]}}), json!({"a": []}), true),
            ("exists false under objects", json!({"a": {"b": [{"exists": false}]}}), json!({"a": [{"b": 1}, {"c": 1}]}), true),
            ("exists true under objects", json!({"a": {"b": [{"exists": true}]}}), json!({"a": [{"c": 1}, {"b": 1}]}), true),
            ("exists or value", json!({"a": [{"exists": false}, "x"]}), json!({"a": "x"}), true),
            ("exists or value missing", json!({"a": [{"exists": false}, "x"]}), json!({}), true),
            ("exists or value other", json!({"a": [{"exists": false}, "x"]}), json!({"a": "y"}), false),
            // wildcard.
            ("wildcard", json!({"f": [{"wildcard": "src/*.rs"}]}), json!({"f": "src/main.rs"}), true),
            ("wildcard empty run", json!({"f": [{"wildcard": "src/*.rs"}]}), json!({"f": "src/.rs"}), true),
            ("wildcard mismatch", json!({"f": [{"wildcard": "src/*.rs"}]}), json!({"f": "lib/main.rs"}), false),
            ("wildcard no star", json!({"f": [{"wildcard": "abc"}]}), json!({"f": "abc"}), true),
            ("wildcard no star longer", json!({"f": [{"wildcard": "abc"}]}), json!({"f": "abcd"}), false),
            ("wildcard star only", json!({"f": [{"wildcard": "*"}]}), json!({"f": ""}), true),
            ("wildcard several", json!({"f": [{"wildcard": "*a*b*"}]}), json!({"f": "xxaxxbxx"}), true),
            ("wildcard order", json!({"f": [{"wildcard": "*a*b*"}]}), json!({"f": "xxbxxaxx"}), false),
            ("wildcard no overlap", json!({"f": [{"wildcard": "a*a"}]}), json!({"f": "a"}), false),
            ("wildcard overlap ok", json!({"f": [{"wildcard": "a*a"}]}), json!({"f": "aa"}), true),
            ("wildcard middle backtrack", json!({"f": [{"wildcard": "a*bc*d"}]}), json!({"f": "abxbcyd"}), true),
            ("wildcard escaped star", json!({"f": [{"wildcard": "a\\*b"}]}), json!({"f": "a*b"}), true),
            ("wildcard escaped star literal", json!({"f": [{"wildcard": "a\\*b"}]}), json!({"f": "axb"}), false),
            ("wildcard escaped backslash", json!({"f": [{"wildcard": "a\\\\*"}]}), json!({"f": "a\\z"}), true),
            ("wildcard unicode", json!({"f": [{"wildcard": "日*語"}]}), json!({"f": "日本語"}), true),
            ("wildcard on number", json!({"f": [{"wildcard": "*"}]}), json!({"f": 1}), false),
            // cidr.
            ("cidr v4", json!({"ip": [{"cidr": "10.0.0.0/24"}]}), json!({"ip": "10.0.0.77"}), true),
            ("cidr v4 outside", json!({"ip": [{"cidr": "10.0.0.0/24"}]}), json!({"ip": "10.0.1.1"}), false),
            ("cidr host bits", json!({"ip": [{"cidr": "10.0.0.9/24"}]}), json!({"ip": "10.0.0.1"}), true),
            ("cidr v6", json!({"ip": [{"cidr": "2001:db8::/32"}]}), json!({"ip": "2001:db8:1::5"}), true),
            ("cidr v6 outside", json!({"ip": [{"cidr": "2001:db8::/32"}]}), json!({"ip": "2001:db9::1"}), false),
            ("cidr v4 against v6", json!({"ip": [{"cidr": "10.0.0.0/8"}]}), json!({"ip": "::1"}), false),
            ("cidr not an address", json!({"ip": [{"cidr": "10.0.0.0/8"}]}), json!({"ip": "10.x"}), false),
            ("cidr on number", json!({"ip": [{"cidr": "10.0.0.0/8"}]}), json!({"ip": 10}), false),
            // $or.
            ("or first", json!({"$or": [{"a": "x"}, {"b": "y"}]}), json!({"a": "x"}), true),
            ("or second", json!({"$or": [{"a": "x"}, {"b": "y"}]}), json!({"b": "y"}), true),
            ("or none", json!({"$or": [{"a": "x"}, {"b": "y"}]}), json!({"a": "y"}), false),
            ("or with field", json!({"c": 1, "$or": [{"a": "x"}, {"b": "y"}]}), json!({"c": 1, "b": "y"}), true),
            ("or with field fails", json!({"c": 1, "$or": [{"a": "x"}, {"b": "y"}]}), json!({"c": 2, "b": "y"}), false),
            ("or nested", json!({"d": {"$or": [{"a": "x"}, {"b": "y"}]}}), json!({"d": {"b": "y"}}), true),
            ("or inside or", json!({"$or": [{"a": "x"}, {"$or": [{"b": "y"}, {"c": "z"}]}]}), json!({"c": "z"}), true),
            // Mixed alternatives and documents that are not objects.
            ("mixed alternatives", json!({"r": ["main", {"prefix": "release/"}]}), json!({"r": "release/1"}), true),
            ("root array document", json!({"a": "x"}), json!(["x"]), false),
            ("root string document", json!({"a": [{"exists": false}]}), json!("text"), true),
        ];

        for (case, pattern, document, expected) in cases {
            assert_eq!(check(&pattern, &document), expected, "{case}: {pattern} on {document}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn compile_errors_table() {
        // (pattern, path, message fragment)
        let cases = [
            (json!("x"), "$", "expected a pattern object"),
            (json!([]), "$", "found an array"),
            (json!(null), "$", "found null"),
            (json!({}), "$", "pattern object is empty"),
            (json!({"a": {}}), "$.a", "pattern object is empty"),
            (json!({"a": []}), "$.a", "array of alternatives is empty"),
            (json!({"a": [["x"]]}), "$.a[0]", "arrays cannot be nested"),
            (json!({"a": [{"prefx": "x"}]}), "$.a[0].prefx", "unknown operator \"prefx\""),
            (json!({"a": [{"b": "x"}]}), "$.a[0].b", "use an object instead of an array"),
            (json!({"a": [{}]}), "$.a[0]", "exactly one operator, found 0 keys"),
            (json!({"a": [{"prefix": "x", "suffix": "y"}]}), "$.a[0]", "exactly one operator, found 2 keys"),
            (json!({"a": [{"prefix": 1}]}), "$.a[0].prefix", "prefix expects a string"),
            (json!({"a": [{"prefix": {"equals-ignore-case": 1}}]}), "$.a[0].prefix", "prefix expects a string"),
            (json!({"a": [{"prefix": {"other": "x"}}]}), "$.a[0].prefix", "prefix expects a string"),
            (json!({"a": [{"suffix": null}]}), "$.a[0].suffix", "suffix expects a string"),
            (json!({"a": [{"equals-ignore-case": ["x"]}]}), "$.a[0].equals-ignore-case", "expects a string, found an array"),
            (json!({"a": [{"anything-but": []}]}), "$.a[0].anything-but", "anything-but list is empty"),
            (json!({"a": [{"anything-but": [["x"]]}]}), "$.a[0].anything-but[0]", "found an array"),
            (json!({"a": [{"anything-but": [{"prefix": "x"}]}]}), "$.a[0].anything-but[0]", "found an object"),
            (json!({"a": [{"anything-but": {"numeric": [">", 1]}}]}), "$.a[0].anything-but", "anything-but expects"),
            (json!({"a": [{"anything-but": {"prefix": 1}}]}), "$.a[0].anything-but.prefix", "prefix expects a string"),
            (json!({"a": [{"numeric": 5}]}), "$.a[0].numeric", "numeric expects"),
            (json!({"a": [{"numeric": [">"]}]}), "$.a[0].numeric", "found an array of 1 items"),
            (json!({"a": [{"numeric": [">", 1, "<"]}]}), "$.a[0].numeric", "found an array of 3 items"),
            (json!({"a": [{"numeric": ["!=", 1]}]}), "$.a[0].numeric[0]", "unknown comparison operator \"!=\""),
            (json!({"a": [{"numeric": [1, 1]}]}), "$.a[0].numeric[0]", "expected a comparison operator"),
            (json!({"a": [{"numeric": [">", "1"]}]}), "$.a[0].numeric[1]", "expected a number after \">\", found a string"),
            (json!({"a": [{"numeric": [">", 0, "<", "5"]}]}), "$.a[0].numeric[3]", "expected a number"),
            (json!({"a": [{"numeric": [">", 5, "<", 1]}]}), "$.a[0].numeric", "range is empty"),
            (json!({"a": [{"numeric": [">", 5, "<=", 5]}]}), "$.a[0].numeric", "range is empty"),
            (json!({"a": [{"numeric": [">", 1, ">=", 2]}]}), "$.a[0].numeric[2]", "one lower bound"),
            (json!({"a": [{"numeric": ["<", 1, "<", 2]}]}), "$.a[0].numeric[2]", "one upper bound"),
            (json!({"a": [{"numeric": ["=", 1, "<", 2]}]}), "$.a[0].numeric[0]", "\"=\" cannot be combined"),
            (json!({"a": [{"exists": "true"}]}), "$.a[0].exists", "exists expects true or false"),
            (json!({"a": [{"wildcard": 1}]}), "$.a[0].wildcard", "wildcard expects a string"),
            (json!({"a": [{"wildcard": "a**b"}]}), "$.a[0].wildcard", "consecutive wildcards"),
            (json!({"a": [{"wildcard": "**"}]}), "$.a[0].wildcard", "consecutive wildcards"),
            (json!({"a": [{"wildcard": "*a*b*c*d*e*"}]}), "$.a[0].wildcard", "contains 6 wildcards; at most 5"),
            (json!({"a": [{"wildcard": "a\\b"}]}), "$.a[0].wildcard", "invalid escape"),
            (json!({"a": [{"wildcard": "a\\"}]}), "$.a[0].wildcard", "invalid escape"),
            (json!({"a": [{"cidr": "10.0.0.0/33"}]}), "$.a[0].cidr", "invalid CIDR block \"10.0.0.0/33\""),
            (json!({"a": [{"cidr": "10.0.0.1"}]}), "$.a[0].cidr", "invalid CIDR block"),
            (json!({"a": [{"cidr": "2001:db8::/129"}]}), "$.a[0].cidr", "invalid CIDR block"),
            (json!({"a": [{"cidr": 10}]}), "$.a[0].cidr", "cidr expects a string"),
            (json!({"$or": [{"a": "x"}]}), "$.$or", "at least 2 patterns, found 1"),
            (json!({"$or": []}), "$.$or", "at least 2 patterns, found 0"),
            (json!({"$or": {"a": "x"}}), "$.$or", "found an object"),
            (json!({"$or": [{"a": "x"}, "b"]}), "$.$or[1]", "expected a pattern object"),
            (json!({"$or": [{"a": "x"}, {}]}), "$.$or[1]", "pattern object is empty"),
            (json!({"a": {"b c": [{"nope": 1}]}}), "$.a[\"b c\"][0].nope", "unknown operator"),
            (json!({"detail": {"count": [{"numeric": [">", "x"]}]}}), "$.detail.count[0].numeric[1]", "expected a number"),
        ];

        for (pattern, path, fragment) in cases {
            let error = match Pattern::compile(&pattern) {
                Ok(_) => panic!("pattern {pattern} compiled, expected an error at {path}"),
                Err(error) => error,
            };
            assert_eq!(error.path, path, "{pattern}: {error}");
            assert!(
                error.message.contains(fragment),
                "{pattern}: message {:?} lacks {fragment:?}",
                error.message
            );
        }
    }

    #[test]
    fn conditions_at_limit_compile() {
        let values: Vec<Value> = (0..MAX_CONDITIONS).map(|n| json!(n)).collect();
        let pattern = json!({ "a": values });
        assert!(check(&pattern, &json!({"a": MAX_CONDITIONS - 1})));
    }

    #[test]
    fn conditions_beyond_limit_are_rejected() {
        let values: Vec<Value> = (0..=MAX_CONDITIONS).map(|n| json!(n)).collect();
        let error = Pattern::compile(&json!({ "a": values })).unwrap_err();
        assert_eq!(error.path, format!("$.a[{MAX_CONDITIONS}]"));
        assert_eq!(
            error.message,
            "pattern contains more than 1000 conditions (exact values and operators); \
             split it into several triggers"
        );
    }

    #[test]
    fn conditions_count_across_fields() {
        // 500 values on "a" and 500 on "b" are at the limit; one scalar more
        // on "c" crosses it, and the error names that field.
        let half: Vec<Value> = (0..MAX_CONDITIONS / 2).map(|n| json!(n)).collect();
        let at_limit = json!({"a": half.clone(), "b": {"c": half.clone()}});
        assert!(Pattern::compile(&at_limit).is_ok());
        let beyond = json!({"a": half.clone(), "b": {"c": half}, "d": "x"});
        let error = Pattern::compile(&beyond).unwrap_err();
        assert_eq!(error.path, "$.d");
        assert!(
            error.message.contains("more than 1000 conditions"),
            "{error}"
        );
    }

    #[test]
    fn anything_but_values_count_as_conditions() {
        let excluded: Vec<Value> = (0..MAX_CONDITIONS).map(|n| json!(n)).collect();
        let at_limit = json!({"a": [{"anything-but": excluded.clone()}]});
        assert!(Pattern::compile(&at_limit).is_ok());
        let beyond = json!({"a": [{"anything-but": excluded}, "x"]});
        let error = Pattern::compile(&beyond).unwrap_err();
        assert_eq!(error.path, "$.a[1]");
    }

    #[test]
    fn or_alternatives_at_limit_compile() {
        let alternatives: Vec<Value> = (0..MAX_OR_ALTERNATIVES)
            .map(|n| json!({ "a": format!("v{n}") }))
            .collect();
        let pattern = json!({ "$or": alternatives });
        assert!(check(&pattern, &json!({"a": "v99"})));
    }

    #[test]
    fn or_alternatives_beyond_limit_are_rejected() {
        // 60 alternatives at the top and 41 in a nested object: 101 in all.
        let top: Vec<Value> = (0..60).map(|n| json!({ "a": n })).collect();
        let nested: Vec<Value> = (0..41).map(|n| json!({ "b": n })).collect();
        let pattern = json!({"$or": top, "d": {"$or": nested}});
        let error = Pattern::compile(&pattern).unwrap_err();
        assert_eq!(error.path, "$.d.$or");
        assert_eq!(
            error.message,
            "pattern lists more than 100 $or alternatives in all; split it into several triggers"
        );
    }

    #[test]
    fn wildcard_at_limit_compiles() {
        let pattern = json!({"a": [{"wildcard": "*a*b*c*d*"}]});
        assert!(check(&pattern, &json!({"a": "xaybzcwdv"})));
    }

    #[test]
    fn error_display_includes_path() {
        let error = Pattern::compile(&json!({"a": []})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "at $.a: array of alternatives is empty; list at least one value or operator"
        );
    }

    /// Builds `{"a": {"a": ... {"a": leaf}}}` with `levels` objects.
    fn nested_pattern(levels: usize, leaf: Value) -> Value {
        let mut pattern = leaf;
        for _ in 0..levels {
            // Built by hand because `json!` would copy the value recursively.
            let mut object = Map::new();
            object.insert("a".to_owned(), pattern);
            pattern = Value::Object(object);
        }
        pattern
    }

    /// Takes a deeply nested value apart level by level, because dropping it
    /// whole would recurse once per level.
    fn drop_iteratively(mut value: Value) {
        loop {
            value = match value {
                Value::Object(mut map) => map.remove("a").unwrap_or(Value::Null),
                Value::Array(mut items) => items.pop().unwrap_or(Value::Null),
                _ => break,
            };
        }
    }

    #[test]
    fn nesting_at_limit_compiles() {
        let pattern = nested_pattern(MAX_DEPTH, json!(["x"]));
        let document = nested_pattern(MAX_DEPTH, json!("x"));
        assert!(check(&pattern, &document));
    }

    #[test]
    fn nesting_beyond_limit_is_rejected() {
        let pattern = nested_pattern(MAX_DEPTH + 1, json!(["x"]));
        let error = Pattern::compile(&pattern).unwrap_err();
        assert_eq!(error.path, format!("${}", ".a".repeat(MAX_DEPTH)));
        assert!(
            error.message.contains("deeper than 32"),
            "{}",
            error.message
        );
    }

    #[test]
    fn or_alternatives_count_toward_depth() {
        let mut pattern = json!({"a": "x"});
        for _ in 0..MAX_DEPTH {
            pattern = json!({"$or": [pattern, {"b": "y"}]});
        }
        let error = Pattern::compile(&pattern).unwrap_err();
        assert!(error.message.contains("deeper than"), "{}", error.message);
    }

    #[test]
    fn very_deep_pattern_value_is_rejected_without_overflow() {
        // Far deeper than MAX_DEPTH: compilation stops at the limit.
        let pattern = nested_pattern(10_000, json!("x"));
        assert!(Pattern::compile(&pattern).is_err());
        drop_iteratively(pattern);
    }

    #[test]
    fn deep_documents_do_not_recurse() {
        // Arrays nested 100,000 deep are flattened with a heap stack.
        let mut array = json!("x");
        for _ in 0..100_000 {
            array = Value::Array(vec![array]);
        }
        let mut document = Map::new();
        document.insert("a".to_owned(), array);
        let document = Value::Object(document);
        assert!(check(&json!({"a": ["x"]}), &document));
        assert!(!check(&json!({"a": ["y"]}), &document));
        assert!(check(&json!({"a": {"b": [{"exists": false}]}}), &document));

        // Objects nested deeper than the pattern are never visited.
        let deep_object = nested_pattern(100_000, json!("x"));
        assert!(check(
            &json!({"a": {"a": [{"exists": true}]}}),
            &deep_object
        ));

        drop_iteratively(document);
        drop_iteratively(deep_object);
    }

    #[test]
    fn github_short_filter() {
        let pattern =
            json!({"repo": "Codertocat/Hello-World", "branch": "master", "event_type": "push"});
        let push = json!({
            "ref": "refs/heads/master",
            "repo": "Codertocat/Hello-World",
            "branch": "master",
            "event_type": "push"
        });
        assert!(check(&pattern, &push));
        let mut tag = push.clone();
        tag["event_type"] = json!("tag");
        assert!(!check(&pattern, &tag));
    }
}
