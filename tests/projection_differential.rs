//! Randomized differential tests of decoding only the fields that matching
//! reads (`event::projection`) against decoding the whole value.
//!
//! Fixed seeds generate trigger filters with every operator, nested
//! objects, `$or` and arrays of alternatives. They also generate documents
//! as raw JSON text, with duplicate keys, escapes in keys and strings,
//! arrays of objects, arrays in arrays, scalars where a filter expects an
//! object, and several spellings of each number (`5`, `5.0`, `5e0`, `-0`).
//! For each document the tests check that:
//!
//! - every pattern matches the projected document exactly when it matches
//!   the whole one, projected on the pattern's own fields and on those of
//!   every pattern of its batch;
//! - a [`MatchEngine`] of the batch returns on the projected document the
//!   patterns that a scan of the whole one returns;
//! - [`TriggerIndex::decode_and_match`] returns the triggers and the event
//!   that [`event::decode`] and a scan give, for a `json` and a `github`
//!   source;
//! - after random edits of the text, serde_json accepting it implies the
//!   projection accepting it, and the projection accepting it implies that
//!   the text is JSON (RFC 8259) in UTF-8. A text between the two may only
//!   exceed one of serde_json's limits that `event::projection` documents.
//!
//! The tests at the end check that serde_json's private raw value key is an
//! ordinary key in event documents.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::DateTime;
use event_hub::event::{
    self, projection, DecodeError, EventSource, FieldSet, Flavor, InboundRecord,
};
use event_hub::matching::{MatchEngine, Pattern, TriggerIndex};
use event_hub::store::entity::{action, event_source, trigger};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Seeds of the random batches. Each batch has [`PATTERNS_PER_BATCH`]
/// patterns and [`DOCUMENTS_PER_BATCH`] documents.
const SEEDS: std::ops::Range<u64> = 0..48;
const PATTERNS_PER_BATCH: usize = 16;
const DOCUMENTS_PER_BATCH: usize = 24;

/// The messages of serde_json's limits that a skipped value need not meet
/// (see `event::projection`): numbers beyond `f64`, nesting deeper than
/// 128 levels, and `\u` escapes of lone UTF-16 surrogates.
const LIMIT_MESSAGES: &[&str] = &[
    "number out of range",
    "recursion limit exceeded",
    "lone leading surrogate in hex escape",
    "unexpected end of hex escape",
];

// ---------------------------------------------------------------------------
// Random generation
// ---------------------------------------------------------------------------

/// SplitMix64, a small generator whose output is the same on every
/// platform and every version of the crates, so a failing seed reproduces.
struct Random(u64);

impl Random {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..bound`.
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    /// Returns true with the probability `numerator / denominator`.
    fn chance(&mut self, numerator: usize, denominator: usize) -> bool {
        self.below(denominator) < numerator
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Field names of patterns and documents: GitHub's derived fields and some
/// of their inputs, names that JSON must escape, and the empty name.
const NAMES: &[&str] = &[
    "a",
    "b",
    "c",
    "ref",
    "branch",
    "tag",
    "repo",
    "event_type",
    "action",
    "é",
    "k y",
    "\"q\"",
    "a.b",
    "",
    "😀",
    "\\/",
    "tab\t",
];

/// Keys that only documents have. `$or` is pattern syntax, never a field
/// name, and `z` is where the limit-breaking values go.
const DOCUMENT_ONLY_NAMES: &[&str] = &["$or", "z", "prefix", "exists"];

const STRINGS: &[&str] = &[
    "x",
    "X",
    "main",
    "Main",
    "refs/heads/main",
    "refs/tags/v1",
    "v1.4",
    "10.0.0.1",
    "10.1.2.3",
    "2001:db8::1",
    "src/a.rs",
    "straße",
    "STRASSE",
    "",
    "café",
    "5",
    "null",
    "a*b",
    "😀",
];

/// Numbers as documents write them: one value in several spellings, the
/// edges of `i64` and `u64`, integers around 2^53 and both zeros.
const NUMBERS: &[&str] = &[
    "5",
    "5.0",
    "5e0",
    "50e-1",
    "0.5E+1",
    "-5",
    "0",
    "-0",
    "-0.0",
    "0e10",
    "1.5",
    "9007199254740993",
    "9007199254740992",
    "18446744073709551615",
    "-9223372036854775808",
    "1e308",
    "-1e-300",
    "100",
];

/// Values that break one of serde_json's limits, written only under `z`.
const LIMIT_BREAKERS: &[&str] = &[
    "1e400",
    "-1e400",
    "\"\\ud800\"",
    "\"\\udc00x\"",
    "\"\\ud83d\\n\"",
];

const PREFIXES: &[&str] = &["refs/", "REFS/", "ma", "", "caf", "x", "1"];
const SUFFIXES: &[&str] = &["/main", "MAIN", ".rs", "", "é", "1"];
const WILDCARDS: &[&str] = &["*", "refs/*", "*main", "*a*b*", "x", "src/\\*.rs", "*\\\\*"];
const NETWORKS: &[&str] = &["10.0.0.0/8", "10.0.0.0/24", "2001:db8::/32", "0.0.0.0/0"];
/// Bounds of `numeric` ranges, in ascending order.
const BOUNDS: &[&str] = &[
    "-10",
    "-0.5",
    "0",
    "1",
    "5",
    "5.0",
    "9007199254740992",
    "1e300",
];

fn number_value(text: &str) -> Value {
    serde_json::from_str(text).expect("number constants are valid JSON")
}

fn random_scalar_value(random: &mut Random) -> Value {
    match random.below(6) {
        0 | 1 => Value::String(random.pick(STRINGS).to_string()),
        2 | 3 => number_value(random.pick(NUMBERS)),
        4 => Value::Bool(random.chance(1, 2)),
        _ => Value::Null,
    }
}

/// Returns the argument of `prefix` or `suffix`: text, or text compared
/// without regard to case.
fn random_affix(random: &mut Random, texts: &[&str]) -> Value {
    let text = random.pick(texts).to_string();
    if random.chance(1, 3) {
        json!({ "equals-ignore-case": text })
    } else {
        Value::String(text)
    }
}

fn random_numeric(random: &mut Random) -> Value {
    if random.chance(1, 2) {
        let operator = random.pick(&["=", "<", "<=", ">", ">="]);
        return json!([operator, number_value(random.pick(NUMBERS))]);
    }
    let low = random.below(BOUNDS.len() - 1);
    let high = low + 1 + random.below(BOUNDS.len() - low - 1);
    let lower = random.pick(&[">", ">="]);
    let upper = random.pick(&["<", "<="]);
    json!([
        lower,
        number_value(BOUNDS[low]),
        upper,
        number_value(BOUNDS[high])
    ])
}

fn random_matcher(random: &mut Random) -> Value {
    match random.below(11) {
        0 | 1 => random_scalar_value(random),
        2 => json!({ "prefix": random_affix(random, PREFIXES) }),
        3 => json!({ "suffix": random_affix(random, SUFFIXES) }),
        4 => json!({ "equals-ignore-case": random.pick(STRINGS).to_string() }),
        5 => {
            let exclusion = match random.below(4) {
                0 => random_scalar_value(random),
                1 => Value::Array(
                    (0..1 + random.below(3))
                        .map(|_| random_scalar_value(random))
                        .collect(),
                ),
                2 => json!({ "prefix": random_affix(random, PREFIXES) }),
                _ => json!({ "suffix": random_affix(random, SUFFIXES) }),
            };
            json!({ "anything-but": exclusion })
        }
        6 => json!({ "numeric": random_numeric(random) }),
        7 => json!({ "exists": random.chance(1, 2) }),
        8 => json!({ "wildcard": random.pick(WILDCARDS).to_string() }),
        9 => json!({ "cidr": random.pick(NETWORKS).to_string() }),
        _ => Value::String(random.pick(STRINGS).to_string()),
    }
}

/// Returns a filter object: leaf conditions, nested objects and `$or`.
fn random_filter(random: &mut Random, depth: usize) -> Value {
    let mut object = Map::new();
    for _ in 0..1 + random.below(3) {
        let name = random.pick(NAMES).to_string();
        let condition = if depth < 4 && random.chance(1, 4) {
            random_filter(random, depth + 1)
        } else if random.chance(1, 6) {
            random_scalar_value(random)
        } else {
            Value::Array(
                (0..1 + random.below(3))
                    .map(|_| random_matcher(random))
                    .collect(),
            )
        };
        object.insert(name, condition);
    }
    if depth < 4 && random.chance(1, 6) {
        let alternatives = (0..2 + random.below(2))
            .map(|_| random_filter(random, depth + 1))
            .collect();
        object.insert("$or".to_owned(), Value::Array(alternatives));
    }
    Value::Object(object)
}

/// Returns a filter that compiles, with its compiled pattern.
fn random_pattern(random: &mut Random) -> (Value, Pattern) {
    loop {
        let filter = random_filter(random, 1);
        // A random `numeric` range can be empty, which compiling rejects.
        if let Ok(pattern) = Pattern::compile(&filter) {
            return (filter, pattern);
        }
    }
}

/// A JSON value as the tests write it: objects keep duplicate keys, and
/// scalars keep the spelling they are written with.
#[derive(Clone, Debug)]
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// A string, written with random escapes.
    Text(String),
    /// A number, `true`, `false` or `null`, written as is.
    Raw(String),
}

fn random_scalar_node(random: &mut Random) -> Node {
    match random.below(6) {
        0 | 1 => Node::Text(random.pick(STRINGS).to_string()),
        2 | 3 => Node::Raw(random.pick(NUMBERS).to_string()),
        4 => Node::Raw(random.pick(&["true", "false"]).to_string()),
        _ => Node::Raw("null".to_owned()),
    }
}

fn random_key(random: &mut Random) -> String {
    if random.chance(1, 7) {
        random.pick(DOCUMENT_ONLY_NAMES).to_string()
    } else {
        random.pick(NAMES).to_string()
    }
}

/// Returns a random value, at most 6 levels deep below `depth`.
fn random_node(random: &mut Random, depth: usize) -> Node {
    let kind = if depth >= 6 { 9 } else { random.below(10) };
    match kind {
        0..=3 => {
            let mut entries: Vec<(String, Node)> = (0..random.below(5))
                .map(|_| (random_key(random), random_node(random, depth + 1)))
                .collect();
            if !entries.is_empty() && random.chance(1, 4) {
                // A duplicate key with another value; the last one counts.
                let key = entries[random.below(entries.len())].0.clone();
                entries.push((key, random_node(random, depth + 1)));
            }
            Node::Object(entries)
        }
        4 | 5 => Node::Array(
            (0..random.below(4))
                .map(|_| random_node(random, depth + 1))
                .collect(),
        ),
        _ => random_scalar_node(random),
    }
}

/// Returns a document: mostly an object, sometimes another value, and
/// sometimes with a value under `z` that breaks a serde_json limit.
fn random_document(random: &mut Random) -> Node {
    let mut document = random_node(random, 1);
    if random.chance(1, 8) {
        document = random_node(random, 0);
    } else if !matches!(document, Node::Object(_)) {
        document = Node::Object(vec![("a".to_owned(), document)]);
    }
    if let Node::Object(entries) = &mut document {
        if random.chance(1, 10) {
            entries.push((
                "z".to_owned(),
                Node::Raw(random.pick(LIMIT_BREAKERS).to_string()),
            ));
        }
        if random.chance(1, 40) {
            entries.push(("z".to_owned(), nested_arrays(130)));
        }
    }
    document
}

/// Returns a document that likely matches `filter`: each field gets a
/// value that one of its conditions accepts, in an equal spelling and
/// sometimes inside arrays. One leaf in about eight gets a random value
/// instead, so that some documents miss.
fn witness(random: &mut Random, filter: &Value) -> Node {
    let Value::Object(fields) = filter else {
        return random_scalar_node(random);
    };
    let mut entries = Vec::new();
    for (name, condition) in fields {
        if name == "$or" {
            let alternatives = condition.as_array().map(Vec::as_slice).unwrap_or_default();
            if alternatives.is_empty() {
                continue;
            }
            let chosen = &alternatives[random.below(alternatives.len())];
            if let Node::Object(more) = witness(random, chosen) {
                entries.extend(more);
            }
            continue;
        }
        let value = match condition {
            Value::Object(_) => witness(random, condition),
            Value::Array(matchers) => {
                let matcher = &matchers[random.below(matchers.len())];
                if matcher == &json!({"exists": false}) {
                    continue;
                }
                witness_of_matcher(random, matcher)
            }
            scalar => witness_of_matcher(random, scalar),
        };
        let value = match random.below(8) {
            0 => Node::Array(vec![random_node(random, 5), value]),
            1 => Node::Array(vec![Node::Array(vec![value]), random_scalar_node(random)]),
            _ => value,
        };
        entries.push((name.clone(), value));
    }
    for _ in 0..random.below(3) {
        entries.push((random_key(random), random_node(random, 4)));
    }
    // Fields in another order than the filter's.
    let shift = random.below(entries.len().max(1));
    entries.rotate_left(shift);
    Node::Object(entries)
}

/// Returns a value that `matcher`, an exact value or an operator object,
/// most likely accepts.
fn witness_of_matcher(random: &mut Random, matcher: &Value) -> Node {
    if random.chance(1, 8) {
        return random_node(random, 5);
    }
    let text_of = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Object(affix) => affix
            .get("equals-ignore-case")
            .and_then(Value::as_str)
            .map(str::to_uppercase)
            .unwrap_or_default(),
        _ => String::new(),
    };
    let Value::Object(operator) = matcher else {
        return scalar_spelling(random, matcher);
    };
    let Some((name, argument)) = operator.iter().next() else {
        return random_scalar_node(random);
    };
    match name.as_str() {
        "prefix" => Node::Text(format!("{}{}", text_of(argument), random.pick(STRINGS))),
        "suffix" => Node::Text(format!("{}{}", random.pick(STRINGS), text_of(argument))),
        "equals-ignore-case" => Node::Text(text_of(argument).to_uppercase()),
        "numeric" => {
            let bounds: Vec<&Value> = argument
                .as_array()
                .map(|items| items.iter().filter(|item| item.is_number()).collect())
                .unwrap_or_default();
            match bounds.as_slice() {
                [only] => scalar_spelling(random, only),
                [low, high] => {
                    let bound = if random.chance(1, 2) { low } else { high };
                    scalar_spelling(random, bound)
                }
                _ => random_scalar_node(random),
            }
        }
        "wildcard" => {
            let mut text = String::new();
            let mut characters = argument.as_str().unwrap_or_default().chars();
            while let Some(character) = characters.next() {
                match character {
                    '*' => text.push_str(random.pick(&["", "x", "/", "main"])),
                    '\\' => text.extend(characters.next()),
                    other => text.push(other),
                }
            }
            Node::Text(text)
        }
        "cidr" => Node::Text(
            random
                .pick(&["10.0.0.1", "10.1.2.3", "2001:db8::1", "::1"])
                .to_string(),
        ),
        _ => random_node(random, 5),
    }
}

/// Writes a scalar in one of its spellings: `5` as `5.0`, `5e0` or `50e-1`.
fn scalar_spelling(random: &mut Random, value: &Value) -> Node {
    match value {
        Value::String(text) => Node::Text(text.clone()),
        Value::Number(number) => {
            let spelling = if let Some(integer) = number.as_i64() {
                match random.below(4) {
                    0 => format!("{integer}.0"),
                    1 => format!("{integer}e0"),
                    2 => format!("{integer}0e-1"),
                    _ => integer.to_string(),
                }
            } else if let Some(float) = number.as_f64().filter(|_| random.chance(1, 2)) {
                format!("{float:e}")
            } else {
                number.to_string()
            };
            Node::Raw(spelling)
        }
        other => Node::Raw(other.to_string()),
    }
}

fn nested_arrays(depth: usize) -> Node {
    let mut node = Node::Raw("1".to_owned());
    for _ in 0..depth {
        node = Node::Array(vec![node]);
    }
    node
}

/// Returns a GitHub webhook body: the fields that the decoder reads,
/// sometimes with values of another type, sometimes the derived fields
/// themselves, and random other fields.
fn random_github_body(random: &mut Random) -> Node {
    const REFS: &[&str] = &[
        "refs/heads/main",
        "refs/tags/v1",
        "refs/notes/x",
        "main",
        "v1",
    ];
    fn leaf(random: &mut Random, texts: &[&str]) -> Node {
        if random.chance(1, 6) {
            random_node(random, 4)
        } else {
            Node::Text(random.pick(texts).to_string())
        }
    }
    fn nested(random: &mut Random, path: &[&str], value: Node) -> Node {
        let Some((first, rest)) = path.split_first() else {
            return value;
        };
        let mut entries = vec![(first.to_string(), nested(random, rest, value))];
        if random.chance(1, 3) {
            entries.push((random_key(random), random_node(random, 4)));
        }
        let object = Node::Object(entries);
        match random.below(8) {
            0 => Node::Array(vec![object]),
            1 => random_scalar_node(random),
            _ => object,
        }
    }

    let mut entries = Vec::new();
    let inputs: &[(&str, &[&str])] = &[
        ("ref", &["ref"]),
        ("after", &["after"]),
        ("action", &["action"]),
        ("ref_type", &["ref_type"]),
        ("full_name", &["repository", "full_name"]),
        ("base", &["pull_request", "base", "ref"]),
        ("head", &["pull_request", "head", "sha"]),
        ("tag_name", &["release", "tag_name"]),
        ("login", &["sender", "login"]),
        ("run", &["workflow_run", "head_branch"]),
        ("job", &["workflow_job", "head_branch"]),
        ("suite", &["check_suite", "head_branch"]),
        ("check", &["check_run", "check_suite", "head_branch"]),
        ("branch", &["branch"]),
        ("tag", &["tag"]),
        ("repo", &["repo"]),
        ("event_type", &["event_type"]),
    ];
    for (kind, path) in inputs {
        let derived = matches!(*kind, "branch" | "tag" | "repo" | "event_type");
        if !random.chance(if derived { 1 } else { 2 }, 3) {
            continue;
        }
        let value = match *kind {
            "ref" | "base" | "run" | "job" | "suite" | "check" => leaf(random, REFS),
            "ref_type" => leaf(random, &["branch", "tag", "repository"]),
            "action" => leaf(random, &["opened", "closed", "published"]),
            _ => leaf(random, STRINGS),
        };
        let (first, rest) = path.split_first().expect("paths are not empty");
        entries.push((first.to_string(), nested(random, rest, value)));
    }
    if let Node::Object(extra) = random_node(random, 5) {
        entries.extend(extra);
    }
    if !entries.is_empty() && random.chance(1, 5) {
        let key = entries[random.below(entries.len())].0.clone();
        entries.push((key, random_node(random, 4)));
    }
    Node::Object(entries)
}

// ---------------------------------------------------------------------------
// Writing JSON text
// ---------------------------------------------------------------------------

fn push_space(random: &mut Random, out: &mut String) {
    if random.chance(1, 4) {
        out.push_str(random.pick(&[" ", "\n", "\t", "\r\n  "]));
    }
}

/// Writes `text` as a JSON string, escaping some characters that need no
/// escape: `\/`, `\uXXXX` in either case, surrogate pairs for characters
/// outside the Basic Multilingual Plane.
fn push_string(random: &mut Random, text: &str, out: &mut String) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' if random.chance(1, 2) => out.push_str("\\t"),
            '/' if random.chance(1, 2) => out.push_str("\\/"),
            character if (character as u32) < 0x20 || random.chance(1, 8) => {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    if random.chance(1, 2) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    } else {
                        out.push_str(&format!("\\u{unit:04X}"));
                    }
                }
            }
            character => out.push(character),
        }
    }
    out.push('"');
}

fn push_node(random: &mut Random, node: &Node, out: &mut String) {
    match node {
        Node::Object(entries) => {
            out.push('{');
            for (position, (key, value)) in entries.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                push_space(random, out);
                push_string(random, key, out);
                push_space(random, out);
                out.push(':');
                push_space(random, out);
                push_node(random, value, out);
                push_space(random, out);
            }
            out.push('}');
        }
        Node::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                push_space(random, out);
                push_node(random, item, out);
                push_space(random, out);
            }
            out.push(']');
        }
        Node::Text(text) => push_string(random, text, out),
        Node::Raw(text) => out.push_str(text),
    }
}

fn write_json(random: &mut Random, node: &Node) -> String {
    let mut out = String::new();
    push_space(random, &mut out);
    push_node(random, node, &mut out);
    push_space(random, &mut out);
    out
}

// ---------------------------------------------------------------------------
// A JSON recognizer without serde_json's limits
// ---------------------------------------------------------------------------

/// Tells whether `bytes` is a JSON text by the grammar of RFC 8259, in
/// UTF-8. It puts no limit on nesting, on the size of numbers or on `\u`
/// escapes of surrogates, and it nests with a stack, not recursion.
fn is_json_text(bytes: &[u8]) -> bool {
    if std::str::from_utf8(bytes).is_err() {
        return false;
    }
    Scanner { bytes, position: 0 }.scan_text()
}

struct Scanner<'a> {
    bytes: &'a [u8],
    position: usize,
}

#[derive(Clone, Copy)]
enum Container {
    Array,
    Object,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.position += 1;
        }
    }

    fn eat_literal(&mut self, literal: &[u8]) -> bool {
        if self.bytes[self.position..].starts_with(literal) {
            self.position += literal.len();
            true
        } else {
            false
        }
    }

    fn eat_digits(&mut self) -> bool {
        let start = self.position;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.position += 1;
        }
        self.position > start
    }

    fn scan_number(&mut self) -> bool {
        self.eat(b'-');
        let has_integer_part =
            self.eat(b'0') || (matches!(self.peek(), Some(b'1'..=b'9')) && self.eat_digits());
        if !has_integer_part {
            return false;
        }
        if self.eat(b'.') && !self.eat_digits() {
            return false;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !self.eat_digits() {
                return false;
            }
        }
        true
    }

    fn scan_string(&mut self) -> bool {
        if !self.eat(b'"') {
            return false;
        }
        loop {
            let Some(byte) = self.peek() else {
                return false;
            };
            self.position += 1;
            match byte {
                b'"' => return true,
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                        self.position += 1;
                    }
                    Some(b'u') => {
                        self.position += 1;
                        for _ in 0..4 {
                            if !matches!(self.peek(), Some(digit) if digit.is_ascii_hexdigit()) {
                                return false;
                            }
                            self.position += 1;
                        }
                    }
                    _ => return false,
                },
                0x00..=0x1f => return false,
                _ => {}
            }
        }
    }

    /// Scans `"key" :` and the whitespace after it.
    fn scan_key(&mut self) -> bool {
        self.skip_whitespace();
        if !self.scan_string() {
            return false;
        }
        self.skip_whitespace();
        if !self.eat(b':') {
            return false;
        }
        self.skip_whitespace();
        true
    }

    fn scan_text(&mut self) -> bool {
        let mut stack = Vec::new();
        self.skip_whitespace();
        'value: loop {
            match self.peek() {
                Some(b'{') => {
                    self.position += 1;
                    self.skip_whitespace();
                    if !self.eat(b'}') {
                        stack.push(Container::Object);
                        if !self.scan_key() {
                            return false;
                        }
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.position += 1;
                    self.skip_whitespace();
                    if !self.eat(b']') {
                        stack.push(Container::Array);
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    if !self.scan_string() {
                        return false;
                    }
                }
                Some(b't') if self.eat_literal(b"true") => {}
                Some(b'f') if self.eat_literal(b"false") => {}
                Some(b'n') if self.eat_literal(b"null") => {}
                Some(b'-' | b'0'..=b'9') => {
                    if !self.scan_number() {
                        return false;
                    }
                }
                _ => return false,
            }
            // A value ended: close containers until one continues.
            loop {
                self.skip_whitespace();
                match stack.last() {
                    None => return self.position == self.bytes.len(),
                    Some(Container::Array) => {
                        if self.eat(b',') {
                            self.skip_whitespace();
                            continue 'value;
                        }
                        if !self.eat(b']') {
                            return false;
                        }
                        stack.pop();
                    }
                    Some(Container::Object) => {
                        if self.eat(b',') {
                            if !self.scan_key() {
                                return false;
                            }
                            continue 'value;
                        }
                        if !self.eat(b'}') {
                            return false;
                        }
                        stack.pop();
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Batches and checks
// ---------------------------------------------------------------------------

/// The patterns and documents of one seed.
struct Batch {
    filters: Vec<Value>,
    patterns: Vec<Arc<Pattern>>,
    /// Per pattern, the fields that it reads.
    own_fields: Vec<FieldSet>,
    /// The fields that any pattern of the batch reads.
    all_fields: FieldSet,
    documents: Vec<String>,
    github_bodies: Vec<String>,
    random: Random,
}

fn batch(seed: u64) -> Batch {
    let mut random = Random(seed);
    let (filters, patterns): (Vec<Value>, Vec<Arc<Pattern>>) = (0..PATTERNS_PER_BATCH)
        .map(|_| {
            let (filter, pattern) = random_pattern(&mut random);
            (filter, Arc::new(pattern))
        })
        .unzip();
    let own_fields: Vec<FieldSet> = patterns
        .iter()
        .map(|pattern| {
            let mut fields = FieldSet::default();
            pattern.add_fields_to(&mut fields);
            fields
        })
        .collect();
    let mut all_fields = FieldSet::default();
    for pattern in &patterns {
        pattern.add_fields_to(&mut all_fields);
    }
    // Half of the documents are random, half are built to match a filter.
    let documents = (0..DOCUMENTS_PER_BATCH)
        .map(|number| {
            let document = if number % 2 == 0 {
                random_document(&mut random)
            } else {
                let filter = &filters[random.below(filters.len())];
                witness(&mut random, filter)
            };
            write_json(&mut random, &document)
        })
        .collect();
    let github_bodies = (0..DOCUMENTS_PER_BATCH)
        .map(|_| {
            let body = random_github_body(&mut random);
            write_json(&mut random, &body)
        })
        .collect();
    Batch {
        filters,
        patterns,
        own_fields,
        all_fields,
        documents,
        github_bodies,
        random,
    }
}

/// Returns at most the first 10 failures, one per line, for an assert.
fn report(failures: &[String]) -> String {
    let first_failures: Vec<&str> = failures.iter().take(10).map(String::as_str).collect();
    format!(
        "{} failures:\n{}",
        failures.len(),
        first_failures.join("\n")
    )
}

/// Checks one text against serde_json and the recognizer, projected on
/// `fields`, and returns what is wrong. `whole` is serde_json's result for
/// the text.
fn check_acceptance(
    bytes: &[u8],
    whole: &Result<Value, serde_json::Error>,
    fields: &FieldSet,
) -> Option<String> {
    let projected = projection::parse(bytes, fields);
    if let Err(error) = &projected {
        if !matches!(error, DecodeError::InvalidJson(_)) {
            return Some(format!("projection failed with {error:?}, not InvalidJson"));
        }
    }
    match (whole, &projected) {
        (Ok(_), Err(error)) => Some(format!(
            "serde_json accepts the text and the projection rejects it: {error}"
        )),
        (Err(error), Ok(_)) if !is_json_text(bytes) => Some(format!(
            "the projection accepts a text that is not JSON (serde_json: {error})"
        )),
        (Err(error), Ok(_)) => {
            let message = error.to_string();
            let is_limit = LIMIT_MESSAGES
                .iter()
                .any(|limit| message.starts_with(limit));
            (!is_limit).then(|| {
                format!("the projection accepts a text that serde_json rejects for: {message}")
            })
        }
        _ => None,
    }
}

#[test]
fn recognizer_agrees_on_plain_texts() {
    // Without any value that breaks serde_json's limits, the recognizer
    // and serde_json accept the same texts.
    let cases: [(&[u8], bool); 16] = [
        (b"{}", true),
        (b" [ 1 , -0.5e+3 , \"\\u00e9\" ] ", true),
        (b"{\"a\":{\"b\":[true,false,null]}}", true),
        (b"", false),
        (b" ", false),
        (b"{\"a\":1,}", false),
        (b"[1,]", false),
        (b"01", false),
        (b"1.", false),
        (b"-", false),
        (b"1e", false),
        (b"\"\t\"", false),
        (b"\"\\x\"", false),
        (b"{} {}", false),
        (b"\xef\xbb\xbf{}", false),
        (b"\"\xff\"", false),
    ];
    for (text, expected) in cases {
        let printable = String::from_utf8_lossy(text);
        assert_eq!(is_json_text(text), expected, "recognizer on {printable:?}");
        assert_eq!(
            serde_json::from_slice::<Value>(text).is_ok(),
            expected,
            "serde_json on {printable:?}"
        );
    }
}

#[test]
fn projected_documents_match_like_whole_ones() {
    let mut failures = Vec::new();
    let mut compared = 0;
    for seed in SEEDS {
        let batch = batch(seed);
        for text in &batch.documents {
            let Ok(whole) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            let all = projection::parse(text.as_bytes(), &batch.all_fields)
                .expect("serde_json accepts the text");
            // The raw text, with duplicate keys and escapes, projects like
            // serde_json's own writing of the whole value.
            let canonical = projection::parse(whole.to_string().as_bytes(), &batch.all_fields);
            if canonical.as_ref() != Ok(&all) {
                failures.push(format!(
                    "seed {seed}: {text} projects to {all}, its canonical text to {canonical:?}"
                ));
            }
            let kept_whole = projection::parse(text.as_bytes(), &FieldSet::of_paths(&[&[]]));
            if kept_whole.as_ref() != Ok(&whole) {
                failures.push(format!("seed {seed}: {text} kept whole is {kept_whole:?}"));
            }
            for ((pattern, filter), own_fields) in batch
                .patterns
                .iter()
                .zip(&batch.filters)
                .zip(&batch.own_fields)
            {
                compared += 1;
                let expected = pattern.matches(&whole);
                let own = projection::parse(text.as_bytes(), own_fields)
                    .expect("serde_json accepts the text");
                for (projected, label) in [(&own, "own fields"), (&all, "all fields")] {
                    if pattern.matches(projected) != expected {
                        failures.push(format!(
                            "seed {seed}: filter {filter} on {text}: whole {expected}, \
                             projected on {label} to {projected} differs"
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", report(&failures));
    assert!(compared > 10_000, "only {compared} comparisons");
}

#[test]
fn engine_on_projected_documents_agrees_with_scan() {
    let mut failures = Vec::new();
    let mut matched = 0;
    for seed in SEEDS {
        let batch = batch(seed);
        let engine = MatchEngine::new(batch.patterns.clone());
        let index_of = |found: &Pattern| {
            batch
                .patterns
                .iter()
                .position(|pattern| std::ptr::eq(pattern.as_ref(), found))
                .expect("the engine returns its own patterns")
        };
        for text in &batch.documents {
            let Ok(whole) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            let projected = projection::parse(text.as_bytes(), &batch.all_fields)
                .expect("serde_json accepts the text");
            let expected: BTreeSet<usize> = (0..batch.patterns.len())
                .filter(|&index| batch.patterns[index].matches(&whole))
                .collect();
            let found: BTreeSet<usize> = engine
                .matching(&projected)
                .into_iter()
                .map(index_of)
                .collect();
            matched += expected.len();
            if found != expected {
                failures.push(format!(
                    "seed {seed}: {text}: the scan matches {expected:?}, \
                     the engine on the projected document {found:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", report(&failures));
    assert!(
        matched > 100,
        "only {matched} matches, the test is too weak"
    );
}

/// The GitHub events whose `branch`, `tag` or `sha` come from different
/// fields, and two events for which the decoder derives neither.
const GITHUB_EVENTS: &[&str] = &[
    "push",
    "pull_request",
    "pull_request_review",
    "create",
    "delete",
    "release",
    "workflow_run",
    "workflow_job",
    "check_suite",
    "check_run",
    "repository_dispatch",
    "issues",
];

fn at_epoch() -> DateTime<chrono::Utc> {
    DateTime::UNIX_EPOCH
}

fn source_row(name: &str, flavor: &str, subtype: &str) -> event_source::Model {
    event_source::Model {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        flavor: flavor.to_owned(),
        plugin_subtype: subtype.to_owned(),
        description: None,
        configuration: json!({ "topics": [name] }),
        is_active: true,
        created_at: at_epoch(),
        updated_at: at_epoch(),
    }
}

fn action_row() -> action::Model {
    action::Model {
        id: Uuid::new_v4(),
        name: "run".to_owned(),
        flavor: "builtin".to_owned(),
        plugin_subtype: "pipeline_run".to_owned(),
        description: None,
        configuration: json!({}),
        service_account: "sa-ci".to_owned(),
        auth_window_minutes: 10,
        created_at: at_epoch(),
        updated_at: at_epoch(),
    }
}

fn trigger_row(
    number: usize,
    source: &event_source::Model,
    action: &action::Model,
    filter: &Value,
) -> trigger::Model {
    trigger::Model {
        id: Uuid::new_v4(),
        name: format!("{}-{number}", source.name),
        description: None,
        event_source_id: source.id,
        action_id: action.id,
        event_filter: filter.clone(),
        is_active: true,
        created_at: at_epoch(),
        updated_at: at_epoch(),
    }
}

fn record(topic: &str, offset: i64, payload: &[u8], headers: &[(&str, &str)]) -> InboundRecord {
    InboundRecord {
        topic: topic.to_owned(),
        partition: 0,
        offset,
        payload: Some(payload.to_vec()),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), Some(value.as_bytes().to_vec())))
            .collect(),
        ..InboundRecord::default()
    }
}

/// Compares [`TriggerIndex::decode_and_match`] on `record` with decoding
/// it whole and scanning every trigger of `source`, and returns what
/// differs.
fn compare_decode_and_match(
    index: &TriggerIndex,
    source: &EventSource,
    triggers: &[(Uuid, Arc<Pattern>)],
    record: &InboundRecord,
) -> Option<String> {
    let whole = event::decode(source, record);
    let decoded = index.decode_and_match(source, record);
    let (whole, (event, found)) = match (whole, decoded) {
        (Ok(whole), Ok(decoded)) => (whole, decoded),
        (Err(whole), Err(decoded)) if whole.reason() == decoded.reason() => return None,
        (Err(whole), Err(decoded)) => {
            return Some(format!(
                "decode fails with {whole}, decode_and_match with {decoded}"
            ))
        }
        (Err(error), Ok(_)) => {
            // decode_and_match succeeds where decode fails only when a
            // skipped value breaks a serde_json limit and no trigger
            // matches, because a match parses the whole value again.
            let message = error.to_string();
            let is_limit = LIMIT_MESSAGES.iter().any(|limit| message.contains(limit));
            return (!is_limit)
                .then(|| format!("decode fails with {error}, decode_and_match succeeds"));
        }
        (Ok(_), Err(error)) => {
            return Some(format!(
                "decode succeeds, decode_and_match fails with {error}"
            ))
        }
    };
    let expected: BTreeSet<Uuid> = triggers
        .iter()
        .filter(|(_, pattern)| pattern.matches(&whole.document))
        .map(|(id, _)| *id)
        .collect();
    let found: BTreeSet<Uuid> = found.iter().map(|entry| entry.trigger.id).collect();
    if found != expected {
        return Some(format!(
            "{} triggers match the whole event, decode_and_match returns {}",
            expected.len(),
            found.len()
        ));
    }
    if !found.is_empty() && event != whole {
        return Some(format!(
            "matched event differs from the whole one: {event:?} != {whole:?}"
        ));
    }
    let same_fields = (&event.id, &event.event_type, &event.metadata)
        == (&whole.id, &whole.event_type, &whole.metadata);
    (!same_fields).then(|| {
        format!(
            "id, type or metadata differ: ({}, {}, {}) != ({}, {}, {})",
            event.id, event.event_type, event.metadata, whole.id, whole.event_type, whole.metadata
        )
    })
}

#[test]
fn decode_and_match_agrees_with_whole_decoding() {
    let mut failures = Vec::new();
    let mut matched_records = 0;
    for seed in SEEDS {
        let mut batch = batch(seed);
        let action = action_row();
        let json_row = source_row("json-events", "json", "kafka");
        let github_row = source_row("github-events", "github", "webhook");
        let mut rows = Vec::new();
        let mut triggers_of_json = Vec::new();
        let mut triggers_of_github = Vec::new();
        for (number, (filter, pattern)) in batch.filters.iter().zip(&batch.patterns).enumerate() {
            let json_trigger = trigger_row(number, &json_row, &action, filter);
            let github_trigger = trigger_row(number, &github_row, &action, filter);
            triggers_of_json.push((json_trigger.id, Arc::clone(pattern)));
            triggers_of_github.push((github_trigger.id, Arc::clone(pattern)));
            rows.push(json_trigger);
            rows.push(github_trigger);
        }
        let index = TriggerIndex::build(&[json_row.clone(), github_row.clone()], &[action], &rows);

        for (offset, text) in batch.documents.iter().enumerate() {
            let record = record("json-events", offset as i64, text.as_bytes(), &[]);
            let source = index.resolve_source(&record).expect("the topic is bound");
            if let Some(failure) =
                compare_decode_and_match(&index, source, &triggers_of_json, &record)
            {
                failures.push(format!("seed {seed}: json {text}: {failure}"));
            }
            if index
                .decode_and_match(source, &record)
                .is_ok_and(|(_, found)| !found.is_empty())
            {
                matched_records += 1;
            }
        }
        let bodies = batch.github_bodies.clone();
        for (offset, text) in bodies.iter().chain(&batch.documents).enumerate() {
            let github_event = batch.random.pick(GITHUB_EVENTS);
            let mut headers = vec![("x-github-event", github_event)];
            if batch.random.chance(1, 2) {
                headers.push(("x-github-delivery", "delivery-1"));
            }
            let record = record("github-events", offset as i64, text.as_bytes(), &headers);
            let source = index.resolve_source(&record).expect("the topic is bound");
            if let Some(failure) =
                compare_decode_and_match(&index, source, &triggers_of_github, &record)
            {
                failures.push(format!("seed {seed}: {github_event} {text}: {failure}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", report(&failures));
    assert!(
        matched_records > 50,
        "only {matched_records} records matched"
    );
}

fn github_source() -> EventSource {
    EventSource {
        id: Uuid::nil(),
        name: "github".to_owned(),
        flavor: Flavor::Github,
        subtype: "webhook".to_owned(),
        topics: vec!["github".to_owned()],
        secret: None,
        is_active: true,
    }
}

/// Decodes `body` as a delivery of `github_event` whole and for matching
/// on `fields`, and returns what differs between the two events.
fn compare_github_decoding(body: &[u8], github_event: &str, fields: &FieldSet) -> Option<String> {
    let source = github_source();
    let record = record(
        "github",
        7,
        body,
        &[
            ("x-github-event", github_event),
            ("x-github-delivery", "d-1"),
        ],
    );
    let whole = event::decode(&source, &record);
    let projected = event::decode_for_matching(&source, &record, fields);
    let (whole, projected) = match (whole, projected) {
        (Ok(whole), Ok(projected)) => (whole, projected),
        (Err(_), Err(_)) => return None,
        (whole, projected) => {
            return Some(format!(
                "whole decoding {:?}, decoding for matching {:?}",
                whole.err(),
                projected.err()
            ))
        }
    };
    let event = projected.event();
    if (&event.id, &event.event_type, &event.metadata)
        != (&whole.id, &whole.event_type, &whole.metadata)
    {
        return Some(format!(
            "id, type or metadata differ: {} {} {} != {} {} {}",
            event.id, event.event_type, event.metadata, whole.id, whole.event_type, whole.metadata
        ));
    }
    for key in ["event_type", "repo", "branch", "tag"] {
        if event.document.get(key) != whole.document.get(key) {
            return Some(format!(
                "top-level {key}: {:?} != {:?}",
                event.document.get(key),
                whole.document.get(key)
            ));
        }
    }
    match projected.into_whole(&record) {
        Ok(restored) if restored == whole => None,
        Ok(restored) => Some(format!(
            "into_whole gives {} instead of {}",
            restored.document, whole.document
        )),
        Err(error) => Some(format!("into_whole fails with {error}")),
    }
}

#[test]
fn github_projected_events_equal_whole() {
    let mut failures = Vec::new();
    for seed in SEEDS {
        let mut batch = batch(seed);
        let mut fields = FieldSet::for_flavor(Flavor::Github).clone();
        fields.merge(&batch.all_fields);
        let flavor_only = FieldSet::for_flavor(Flavor::Github);
        let bodies = batch.github_bodies.clone();
        for text in &bodies {
            let github_event = batch.random.pick(GITHUB_EVENTS);
            for fields in [&fields, flavor_only] {
                if let Some(failure) =
                    compare_github_decoding(text.as_bytes(), github_event, fields)
                {
                    failures.push(format!("seed {seed}: {github_event} {text}: {failure}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", report(&failures));
}

#[test]
fn github_body_own_derived_fields() {
    // Bodies that already carry `branch`, `repo`, `event_type` or `tag`,
    // as strings or other values, for every kind of event: the body's
    // value wins in both decodings.
    let inputs = json!({
        "ref": "refs/tags/v2",
        "ref_type": "tag",
        "after": "abc",
        "action": "opened",
        "repository": {"full_name": "octo/api"},
        "pull_request": {"base": {"ref": "main"}, "head": {"sha": "def"}},
        "release": {"tag_name": "v3"},
        "sender": {"login": "octocat"},
        "workflow_run": {"head_branch": "dev"},
        "workflow_job": {"head_branch": "dev"},
        "check_suite": {"head_branch": "dev"},
        "check_run": {"check_suite": {"head_branch": "dev"}},
    });
    let own_values = [
        json!({"branch": "mine"}),
        json!({"repo": {"name": "x"}, "tag": null}),
        json!({"event_type": 7, "branch": ["a"]}),
        json!({"tag": "t", "repo": "r", "branch": "b", "event_type": "e"}),
    ];
    let mut fields = FieldSet::for_flavor(Flavor::Github).clone();
    Pattern::compile(&json!({"branch": [{"exists": true}], "repository": {"id": [1]}}))
        .unwrap()
        .add_fields_to(&mut fields);
    let flavor_only = FieldSet::for_flavor(Flavor::Github);

    let mut failures = Vec::new();
    for github_event in GITHUB_EVENTS {
        for own in &own_values {
            let mut body = inputs.as_object().unwrap().clone();
            body.extend(own.as_object().unwrap().clone());
            let body = serde_json::to_vec(&Value::Object(body)).unwrap();
            for fields in [&fields, flavor_only] {
                if let Some(failure) = compare_github_decoding(&body, github_event, fields) {
                    failures.push(format!("{github_event} with {own}: {failure}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", report(&failures));
}

/// Bytes that random edits insert or write over a byte.
const EDITS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"0",
    b"-",
    b".",
    b"e",
    b"+",
    b" ",
    b"\n",
    b"\x01",
    b"\xff",
    b"\xc3",
    b"u",
    b"\\ud800",
    b"\\udc00",
    b"1e400",
    b"\xef\xbb\xbf",
    b"nul",
    b"tru",
    b"\"\\ud83d\\ude00\"",
];

fn edit(random: &mut Random, text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + random.below(2) {
        let position = random.below(bytes.len() + 1);
        let piece = random.pick(EDITS);
        match random.below(4) {
            0 => bytes.truncate(position),
            1 if position < bytes.len() => {
                bytes.remove(position);
            }
            2 if position < bytes.len() => {
                bytes.splice(position..=position, piece.iter().copied());
            }
            _ => {
                bytes.splice(position..position, piece.iter().copied());
            }
        }
    }
    bytes
}

#[test]
fn projection_rejects_what_serde_json_rejects() {
    let nothing = FieldSet::default();
    let everything = FieldSet::of_paths(&[&[]]);
    let mut failures = Vec::new();
    let mut rejected = 0;
    let mut limits_only = 0;
    for seed in SEEDS {
        let mut batch = batch(seed);
        let texts: Vec<String> = batch.documents.clone();
        for text in &texts {
            for _ in 0..6 {
                let bytes = edit(&mut batch.random, text);
                let printable = String::from_utf8_lossy(&bytes);
                let whole = serde_json::from_slice::<Value>(&bytes);
                if whole.is_ok() && !is_json_text(&bytes) {
                    failures.push(format!("seed {seed}: recognizer rejects {printable}"));
                }
                if whole.is_err() {
                    rejected += 1;
                    if is_json_text(&bytes) {
                        limits_only += 1;
                    }
                }
                for (fields, label) in [
                    (&nothing, "no fields"),
                    (&batch.all_fields, "all fields"),
                    (&everything, "whole"),
                ] {
                    if let Some(failure) = check_acceptance(&bytes, &whole, fields) {
                        failures.push(format!("seed {seed}: {label}: {printable}: {failure}"));
                    }
                }
                // Kept whole, the projection is serde_json's own parse.
                let kept_whole = projection::parse(&bytes, &everything);
                if kept_whole.as_ref().ok() != whole.as_ref().ok() {
                    failures.push(format!(
                        "seed {seed}: {printable}: kept whole {kept_whole:?}"
                    ));
                }
                // An edited text that still parses matches like the whole.
                if let (Ok(whole), Ok(projected)) =
                    (&whole, projection::parse(&bytes, &batch.all_fields))
                {
                    for (pattern, filter) in batch.patterns.iter().zip(&batch.filters) {
                        if pattern.matches(whole) != pattern.matches(&projected) {
                            failures.push(format!(
                                "seed {seed}: filter {filter} on edited {printable} differs"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", report(&failures));
    assert!(rejected > 2_000, "only {rejected} edited texts rejected");
    assert!(
        limits_only > 20,
        "only {limits_only} texts break only a limit"
    );
}

#[test]
fn edge_texts_against_serde_json() {
    let cases: &[&[u8]] = &[
        b"",
        b" ",
        b"\n",
        b"\xef\xbb\xbf{}",
        b"{} ",
        b" \t\r\n{}\n",
        b"{}x",
        b"{}{}",
        b"{} 1",
        b"\x00",
        b"{\"a\":1}\x00",
        b"{\"a\" :1 , }",
        b"{,}",
        b"{\"a\"}",
        b"{\"a\":}",
        b"{'z':1}",
        b"{\"z\":/*c*/1}",
        b"{\"\\u0061\":1,\"a\":2}",
        b"{\"a\":1,\"\\u0061\":{\"b\":2}}",
        b"{\"a\\u0000b\":1}",
        b"{\"\\ud83d\\ude00\":1}",
        b"{\"\\ud83d\":1}",
        b"{\"\\udc00\":{\"z\":1}}",
        b"{\"z\":\"\\ud83d\"}",
        b"{\"z\":\"\\udc00\"}",
        b"{\"z\":\"\\ud83dx\"}",
        b"{\"z\":\"\\ud83d\\u0041\"}",
        b"{\"z\":1e400}",
        b"{\"z\":-1e400}",
        b"{\"z\":1e-400}",
        b"{\"z\":0e999999999999999999999}",
        b"{\"z\":123456789012345678901234567890}",
        b"{\"z\":01}",
        b"{\"z\":-}",
        b"{\"z\":1.}",
        b"{\"z\":.5}",
        b"{\"z\":1e}",
        b"{\"z\":+1}",
        b"{\"z\":NaN}",
        b"{\"z\":Infinity}",
        b"{\"z\":\"\t\"}",
        b"{\"z\":\"\\x\"}",
        b"{\"z\":\"\\u12\"}",
        b"{\"z\":\"\\u12G4\"}",
        b"{\"z\":tru}",
        b"{\"z\":nulll}",
        b"{\"z\":[}]}",
        b"{\"z\":\"\xc3\"}",
        b"{\"z\":\"\xed\xa0\x80\"}",
        b"{\"z\":\"\xf4\x90\x80\x80\"}",
        b"{\"z\":1}\n\n",
        b"\"text\"",
        b"[{\"a\":[{\"b\":1}]},[[{\"a\":2}]]]",
    ];
    let field_sets = [
        FieldSet::default(),
        FieldSet::of_paths(&[&["a"]]),
        FieldSet::of_paths(&[&["z"]]),
        FieldSet::of_paths(&[&["z", "q"]]),
        FieldSet::of_paths(&[&["a", "b"]]),
        FieldSet::of_paths(&[&[]]),
    ];
    let mut failures = Vec::new();
    for text in cases {
        let whole = serde_json::from_slice::<Value>(text);
        for fields in &field_sets {
            if let Some(failure) = check_acceptance(text, &whole, fields) {
                failures.push(format!(
                    "{:?} on {fields:?}: {failure}",
                    String::from_utf8_lossy(text)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", report(&failures));
}

fn deep_arrays(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn nesting_at_serde_json_limit() {
    // The value of `a.b` is `depth` arrays deep. Kept, whole or through a
    // node with named children, it meets serde_json's limit of 128 levels
    // exactly where serde_json does. Skipped, it is never too deep.
    let kept_field_sets = [
        ("whole", FieldSet::of_paths(&[&[]])),
        ("a.b whole", FieldSet::of_paths(&[&["a", "b"]])),
        ("a.b.c", FieldSet::of_paths(&[&["a", "b", "c"]])),
    ];
    let skipped = FieldSet::of_paths(&[&["a", "x"]]);
    let mut accepted_depths = Vec::new();
    for depth in 120..=132 {
        let text = format!("{{\"a\": {{\"b\": {}}}}}", deep_arrays(depth));
        let whole = serde_json::from_str::<Value>(&text);
        if whole.is_ok() {
            accepted_depths.push(depth);
        }
        for (label, fields) in &kept_field_sets {
            let projected = projection::parse(text.as_bytes(), fields);
            assert_eq!(
                projected.is_ok(),
                whole.is_ok(),
                "{depth} levels kept as {label}: {projected:?} against {whole:?}"
            );
        }
        assert_eq!(
            projection::parse(text.as_bytes(), &skipped).ok(),
            Some(json!({"a": {}})),
            "{depth} levels skipped"
        );
    }
    assert!(
        accepted_depths.len() > 1 && accepted_depths.len() < 13,
        "the depths straddle serde_json's limit: {accepted_depths:?}"
    );
}

#[test]
fn huge_inputs_neither_overflow_nor_hang() {
    let started = std::time::Instant::now();
    let deep = deep_arrays(1_000_000);
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(1_000_000), "}".repeat(1_000_000));

    // Skipped, a million levels are only syntax.
    let text = format!("{{\"a\": 1, \"z\": {deep}}}");
    assert_eq!(
        projection::parse(text.as_bytes(), &FieldSet::of_paths(&[&["a"]])).ok(),
        Some(json!({"a": 1}))
    );
    // Kept through nodes with named children, or whole, they fail cleanly.
    let kept_paths: [&[&str]; 3] = [&["z", "q"], &["z"], &[]];
    for path in kept_paths {
        let result = projection::parse(text.as_bytes(), &FieldSet::of_paths(&[path]));
        assert!(
            matches!(result, Err(DecodeError::InvalidJson(_))),
            "kept {path:?}"
        );
    }
    let object_paths: [(&[&str], bool); 2] = [(&["a", "a", "a"], false), (&["a", "a", "x"], true)];
    for (path, accepted) in object_paths {
        let result = projection::parse(deep_objects.as_bytes(), &FieldSet::of_paths(&[path]));
        assert_eq!(result.is_ok(), accepted, "nested objects kept {path:?}");
    }

    // Unclosed nesting and a huge array.
    let unclosed = "[".repeat(1_000_000);
    assert!(projection::parse(unclosed.as_bytes(), &FieldSet::default()).is_err());
    let items = vec!["{\"a\":[1,{\"b\":2}],\"c\":\"x\"}"; 100_000].join(",");
    let array = format!("{{\"list\": [{items}], \"z\": [{items}]}}");
    let projected = projection::parse(array.as_bytes(), &FieldSet::of_paths(&[&["list", "a"]]))
        .expect("valid JSON");
    assert_eq!(projected["list"].as_array().map(Vec::len), Some(100_000));
    assert_eq!(projected["list"][7], json!({"a": [1, {"b": 2}]}));

    // Many keys, each with escapes.
    let keys: Vec<String> = (0..100_000)
        .map(|number| format!("\"k\\u00e9\\n{number}\": [{number}]"))
        .collect();
    let object = format!("{{{}}}", keys.join(","));
    let projected = projection::parse(
        object.as_bytes(),
        &FieldSet::of_paths(&[&["ké\n99999"], &["missing"]]),
    )
    .expect("valid JSON");
    assert_eq!(projected, json!({"ké\n99999": [99999]}));

    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "huge inputs took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// serde_json's private raw value key. With serde_json's `raw_value`
// feature, which axum and sqlx enable in this build, `serde_json::Value`
// reads an object whose first key is `$serde_json::private::RawValue` as
// the JSON text in that key's string value. Event decoding builds its
// documents with its own visitor, so there that key is an ordinary key,
// whole and projected alike.
// ---------------------------------------------------------------------------

const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

#[test]
fn raw_value_key_is_ordinary() {
    let text = format!(r#"{{"x": {{"{RAW_VALUE_KEY}": "{{\"y\": \"v\"}}"}}}}"#);
    let mut inner = Map::new();
    inner.insert(RAW_VALUE_KEY.to_owned(), json!(r#"{"y": "v"}"#));
    let expected = json!({ "x": Value::Object(inner) });
    assert_eq!(
        projection::parse(text.as_bytes(), &FieldSet::WHOLE).unwrap(),
        expected
    );

    let pattern = Pattern::compile(&json!({"x": {"y": ["v"]}})).unwrap();
    let mut fields = FieldSet::default();
    pattern.add_fields_to(&mut fields);
    let projected = projection::parse(text.as_bytes(), &fields).unwrap();
    assert!(!pattern.matches(&expected));
    assert!(!pattern.matches(&projected), "projected to {projected}");
}

#[test]
fn raw_value_key_accepted_like_whole() {
    for value in ["5", r#""[1""#, r#""1", "b": 2"#] {
        let text = format!(r#"{{"x": {{"{RAW_VALUE_KEY}": {value}}}}}"#);
        let whole = projection::parse(text.as_bytes(), &FieldSet::WHOLE);
        assert!(whole.is_ok(), "{text}: {whole:?}");
        let projected = projection::parse(text.as_bytes(), &FieldSet::of_paths(&[&["x", "y"]]));
        assert_eq!(projected.unwrap(), json!({"x": {}}), "{text}");
    }
}

#[test]
fn raw_value_key_github_event_type() {
    // serde_json's `Value` would read this body as a push of a tag. Both
    // decodings read it as a push with one unknown field.
    let body = format!(r#"{{"{RAW_VALUE_KEY}": "{{\"ref\": \"refs/tags/v1\"}}"}}"#);
    let failure = compare_github_decoding(
        body.as_bytes(),
        "push",
        FieldSet::for_flavor(Flavor::Github),
    );
    assert_eq!(failure, None);
}

#[test]
fn raw_value_key_same_triggers() {
    // The consumer's decode_and_match finds the triggers that a scan of
    // the whole decoded event finds.
    let action = action_row();
    let github_row = source_row("github-events", "github", "webhook");
    let filter = json!({"event_type": ["tag"]});
    let trigger = trigger_row(0, &github_row, &action, &filter);
    let triggers = [(trigger.id, Arc::new(Pattern::compile(&filter).unwrap()))];
    let index = TriggerIndex::build(&[github_row], &[action], &[trigger]);
    let body = format!(r#"{{"{RAW_VALUE_KEY}": "{{\"ref\": \"refs/tags/v1\"}}"}}"#);
    let record = record(
        "github-events",
        0,
        body.as_bytes(),
        &[("x-github-event", "push")],
    );
    let source = index.resolve_source(&record).unwrap();
    assert_eq!(
        compare_decode_and_match(&index, source, &triggers, &record),
        None
    );
}

#[test]
fn raw_value_key_in_action_request() {
    // Workers, the retry sweep and `event-hub consume` parse the request
    // again, and must see the document that was matched.
    let data = format!(r#"{{"{RAW_VALUE_KEY}": "{{\"type\": \"evil\"}}", "type": "deploy"}}"#);
    let text = format!(
        r#"{{"execution_id": "{id}", "attempt": 1,
            "trigger": {{"id": "{id}", "name": "t"}},
            "action": {{"id": "{id}", "name": "a", "flavor": "builtin", "subtype": "run", "configuration": {{}}}},
            "event": {{"id": "e", "source": {{"id": "{id}", "name": "s", "flavor": "json"}},
                       "type": "deploy", "metadata": {{}}, "data": {data}}},
            "auth": {{"service_account": "sa", "token": "x", "expires_at": "2026-12-05T00:00:00Z"}},
            "created_at": "2026-12-05T00:00:00Z"}}"#,
        id = Uuid::nil()
    );
    let request: event_hub::dispatch::ActionRequest = serde_json::from_str(&text).unwrap();
    assert_eq!(
        request.event.data,
        projection::parse(data.as_bytes(), &FieldSet::WHOLE).unwrap()
    );
    assert_eq!(request.event.data["type"], "deploy");
    assert_eq!(request.event.data[RAW_VALUE_KEY], r#"{"type": "evil"}"#);
}
