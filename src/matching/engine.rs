//! The matching engine: the patterns of one event source compiled into
//! hash tables, so that the cost of an event does not grow with the number
//! of patterns that cannot match it.
//!
//! # How it works
//!
//! At build time, each pattern gets index keys (see `engine/keys.rs`):
//! exact string conditions such as `repository.full_name = "octo-org/api"`
//! that every document it matches satisfies. The engine picks, per pattern, the keys
//! least likely to be met by an event, estimated from the patterns
//! themselves. The estimate for a condition with one value, on a path where
//! the source's patterns use 2,000 distinct values, is 1 event in 2,000.
//! For a condition with 3 values on a path with 3 distinct values, it is
//! every event.
//! Each key path gets one hash table from value to patterns. Patterns with
//! no key go to a scan list that every event is tested against.
//!
//! At match time, the engine walks only the document fields that some key
//! path names, looks each string found there up in that path's table, and
//! tests the candidates found plus the scan list against their conditions. The
//! work per event is the walk, one hash lookup per string found, and the
//! candidates, whatever the number of patterns indexed.
//!
//! # Memory layout
//!
//! With many patterns, the cost of an event is mostly cache misses: the
//! table slot of the value, then the candidate's pattern. Three choices
//! keep them few:
//!
//! - The tables are keyed by a 64-bit hash of the value, with a hash key
//!   chosen at random per engine, rather than by the value: a lookup reads
//!   no key text. Two values with the same hash share a key, which only
//!   adds a candidate that the full pattern then rejects.
//! - Each table is one array of `(hash, position, hint)` slots (see
//!   `engine/table.rs`). The hint is the number of the entry's most shared
//!   condition.
//! - The engine stores each distinct top-level field condition of its
//!   patterns once, and tests a candidate's most shared conditions first
//!   (see `engine/fields.rs`). A near miss is an event that names a
//!   trigger's key value but fails another of its conditions. Most near
//!   misses fail the hint, so they read only the table slot and a
//!   condition that other events keep in the cache. The others also read
//!   the candidate's list of condition numbers. The entry itself is read
//!   only when its fields match.
//!
//! The engine is immutable. [`crate::matching::TriggerIndex`] holds one per
//! event source behind an [`Arc`] and replaces it whole when triggers
//! change.

mod fields;
mod keys;
mod table;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use serde_json::{Map, Value};

use smallvec::SmallVec;

use self::fields::{FieldsResult, SharedFields, NO_HINT};
use self::table::{Found, KeyTable, MAX_POSITION};
use super::Pattern;

/// An item that the engine indexes: anything with a compiled pattern.
pub trait Matchable {
    /// Returns the pattern that documents are tested against.
    fn pattern(&self) -> &Pattern;
}

impl Matchable for Pattern {
    fn pattern(&self) -> &Pattern {
        self
    }
}

/// The compiled patterns of one event source.
#[derive(Debug)]
pub struct MatchEngine<T> {
    entries: Vec<Arc<T>>,
    /// The top-level field conditions of the entries, each stored once. It
    /// is `None` only past 4 billion distinct conditions, and then each
    /// entry's pattern is tested whole.
    fields: Option<SharedFields>,
    /// Field names of the key paths, as a tree from the top of documents.
    paths: PathNode,
    /// One table per key path, from the hash of a string value to the
    /// positions of the entries indexed under it.
    tables: Vec<KeyTable>,
    /// The hash function of the table keys.
    value_hasher: RandomState,
    /// Positions of the patterns without keys, tested against every
    /// document, in ascending order.
    scanned: Vec<usize>,
    /// Whether some pattern is indexed under more than one key, so that a
    /// document can find it twice.
    has_multi_key_entries: bool,
}

/// The entries found in the tables for one document.
type Candidates = SmallVec<[Found; 4]>;

/// A node of the tree of key paths.
#[derive(Debug, Default)]
struct PathNode {
    children: Vec<(Box<str>, PathNode)>,
    /// The table of the key path that ends here, if one does.
    table: Option<usize>,
}

/// Sizes of an engine, for logs and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Patterns in the engine.
    pub entries: usize,
    /// Patterns tested against every document because they have no index key.
    pub scanned: usize,
    /// Distinct top-level field conditions, each stored once however many
    /// patterns use it.
    pub conditions: usize,
    /// Key paths with their number of distinct values (of distinct hashes,
    /// fewer only after a hash collision), such as
    /// `("repository.full_name", 2000)`, in the order they were first used.
    pub key_paths: Vec<(String, usize)>,
}

/// The distinct values that patterns use on a key path.
#[derive(Default)]
struct PathUsage<'a> {
    values: HashSet<&'a str>,
}

impl<T> Default for MatchEngine<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            fields: None,
            paths: PathNode::default(),
            tables: Vec::new(),
            value_hasher: RandomState::new(),
            scanned: Vec::new(),
            has_multi_key_entries: false,
        }
    }
}

impl<T: Matchable> MatchEngine<T> {
    /// Builds the engine for `entries`. Matching returns entries in this
    /// order.
    pub fn new(entries: Vec<Arc<T>>) -> Self {
        // First pass: the distinct values of each key path, to estimate how
        // selective a condition on it is.
        let mut usage: HashMap<Vec<&str>, PathUsage<'_>> = HashMap::new();
        for entry in &entries {
            keys::visit_key_conditions(entry.pattern(), &mut |path, values| {
                let path_usage = usage.entry(path.to_vec()).or_default();
                path_usage.values.extend(values.iter().copied());
            });
        }
        let cost = |path: &[&str], value_count: usize| {
            let distinct = usage.get(path).map_or(1, |usage| usage.values.len().max(1));
            value_count as f64 / distinct as f64
        };

        let fields = SharedFields::new(entries.iter().map(|entry| &entry.pattern().root));

        // Second pass: choose each entry's keys and collect the table slots.
        let value_hasher = RandomState::new();
        let mut paths = PathNode::default();
        let mut table_slots: Vec<Vec<(u64, u32, u32)>> = Vec::new();
        let mut scanned = Vec::new();
        let mut has_multi_key_entries = false;
        for (position, entry) in entries.iter().enumerate() {
            let chosen = keys::choose_keys(entry.pattern(), &cost);
            // A position that a table cannot hold, past 2^32 - 2 entries,
            // is scanned instead.
            let slot_position = u32::try_from(position)
                .ok()
                .filter(|_| position <= MAX_POSITION);
            let (Some(chosen), Some(slot_position)) = (chosen, slot_position) else {
                scanned.push(position);
                continue;
            };
            let hint = fields
                .as_ref()
                .map_or(NO_HINT, |fields| fields.hint(position));
            let mut key_count = 0;
            for key in chosen {
                let table = paths.table_for(&key.path, &mut table_slots);
                for value in key.values {
                    table_slots[table].push((value_hasher.hash_one(value), slot_position, hint));
                    key_count += 1;
                }
            }
            has_multi_key_entries |= key_count > 1;
        }

        Self {
            entries,
            fields,
            paths,
            tables: table_slots.into_iter().map(KeyTable::new).collect(),
            value_hasher,
            scanned,
            has_multi_key_entries,
        }
    }

    /// Returns the entries whose pattern matches `document`, in the order
    /// the engine was built with.
    pub fn matching(&self, document: &Value) -> Vec<&T> {
        // Most events find no candidate or one: keep them off the heap.
        let mut candidates = Candidates::new();
        if let Value::Object(object) = document {
            self.collect_fields(&self.paths, object, &mut candidates);
        }
        if self.has_multi_key_entries || candidates.len() > 1 {
            candidates.sort_unstable();
            candidates.dedup();
        }

        // Candidates and scanned entries are disjoint sorted lists: merge
        // them to test entries in build order.
        let mut matched = Vec::new();
        let mut candidates = candidates.into_iter().peekable();
        let mut scanned = self.scanned.iter().copied().peekable();
        loop {
            let next = match (candidates.peek(), scanned.peek()) {
                (Some(candidate), Some(&scan)) if candidate.position < scan => candidates.next(),
                (Some(_), Some(_)) | (None, Some(_)) => scanned.next().map(|position| Found {
                    position,
                    hint: NO_HINT,
                }),
                (Some(_), None) => candidates.next(),
                (None, None) => break,
            };
            let Some(next) = next else {
                break;
            };
            if let Some(entry) = self.entry_matching(next, document) {
                matched.push(entry);
            }
        }
        matched
    }

    /// Returns the entry found if its pattern matches `document`.
    ///
    /// The hint, a condition that other entries share, is tested first,
    /// because it lies in the table slot just read and the condition itself
    /// is likely cached. Only if it passes are the entry's other conditions
    /// read.
    fn entry_matching(&self, found: Found, document: &Value) -> Option<&T> {
        let Found { position, hint } = found;
        let Some(fields) = &self.fields else {
            let entry = self.entries.get(position)?;
            return entry.pattern().matches(document).then_some(&**entry);
        };

        let hint_passed = hint != NO_HINT;
        if hint_passed && !fields.test_condition(hint, document) {
            return None;
        }
        let alternatives_left = match fields.test(position, document, hint_passed) {
            FieldsResult::Failed => return None,
            FieldsResult::Matched => false,
            FieldsResult::AlternativesLeft => true,
        };

        let entry = self.entries.get(position)?;
        if alternatives_left
            && !entry
                .pattern()
                .root
                .alternatives
                .iter()
                .any(|alternative| alternative.matches(Some(document)))
        {
            return None;
        }
        Some(&**entry)
    }

    /// Returns the entries in build order.
    pub fn entries(&self) -> &[Arc<T>] {
        &self.entries
    }

    /// Returns the sizes of the engine.
    pub fn stats(&self) -> EngineStats {
        // Tables are numbered in the order build first used their path.
        let mut numbered_paths = Vec::new();
        self.paths.list_paths(&mut Vec::new(), &mut |path, table| {
            let distinct = self.tables.get(table).map_or(0, KeyTable::distinct_hashes);
            numbered_paths.push((table, path.join("."), distinct));
        });
        numbered_paths.sort_unstable();
        EngineStats {
            entries: self.entries.len(),
            scanned: self.scanned.len(),
            conditions: self.fields.as_ref().map_or(0, SharedFields::distinct),
            key_paths: numbered_paths
                .into_iter()
                .map(|(_, path, distinct)| (path, distinct))
                .collect(),
        }
    }

    /// Collects the candidates found under the fields of `object` that the
    /// children of `node` name.
    fn collect_fields(&self, node: &PathNode, object: &Map<String, Value>, out: &mut Candidates) {
        for (name, child) in &node.children {
            if let Some(value) = object.get(&**name) {
                self.collect_value(child, value, out);
            }
        }
    }

    /// Collects the candidates found in `value`, the field at `node`'s path.
    /// Like the pattern, it looks into each element of an array, and into
    /// arrays inside arrays, with an explicit stack instead of recursion.
    fn collect_value(&self, node: &PathNode, value: &Value, out: &mut Candidates) {
        let Value::Array(items) = value else {
            self.collect_element(node, value, out);
            return;
        };
        let mut stack = vec![items.iter()];
        while let Some(elements) = stack.last_mut() {
            match elements.next() {
                None => {
                    stack.pop();
                }
                Some(Value::Array(inner)) => stack.push(inner.iter()),
                Some(element) => self.collect_element(node, element, out),
            }
        }
    }

    fn collect_element(&self, node: &PathNode, element: &Value, out: &mut Candidates) {
        match element {
            Value::String(text) => {
                if let Some(table) = node.table.and_then(|table| self.tables.get(table)) {
                    table.find(self.value_hasher.hash_one(text.as_str()), out);
                }
            }
            Value::Object(object) if !node.children.is_empty() => {
                self.collect_fields(node, object, out);
            }
            _ => {}
        }
    }
}

impl PathNode {
    /// Returns the table number of `path`, adding the path and an empty
    /// table if new.
    fn table_for<V>(&mut self, path: &[&str], tables: &mut Vec<Vec<V>>) -> usize {
        let mut node = self;
        for name in path {
            let index = match node
                .children
                .iter()
                .position(|(child, _)| &**child == *name)
            {
                Some(index) => index,
                None => {
                    node.children.push(((*name).into(), PathNode::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[index].1;
        }
        *node.table.get_or_insert_with(|| {
            tables.push(Vec::new());
            tables.len() - 1
        })
    }

    /// Calls `visit` with each key path below this node and its table.
    fn list_paths<'a>(&'a self, prefix: &mut Vec<&'a str>, visit: &mut impl FnMut(&[&str], usize)) {
        if let Some(table) = self.table {
            visit(prefix, table);
        }
        for (name, child) in &self.children {
            prefix.push(name);
            child.list_paths(prefix, visit);
            prefix.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn engine(filters: &[Value]) -> MatchEngine<Pattern> {
        let entries = filters
            .iter()
            .map(|filter| match Pattern::compile(filter) {
                Ok(pattern) => Arc::new(pattern),
                Err(error) => panic!("pattern {filter} is invalid: {error}"),
            })
            .collect();
        MatchEngine::new(entries)
    }

    /// Returns the positions of the matching patterns.
    fn positions(engine: &MatchEngine<Pattern>, document: &Value) -> Vec<usize> {
        engine
            .matching(document)
            .into_iter()
            .map(|found| {
                engine
                    .entries()
                    .iter()
                    .position(|entry| std::ptr::eq(&**entry, found))
                    .unwrap()
            })
            .collect()
    }

    /// Returns the positions that a scan of every pattern finds.
    fn scanned_positions(engine: &MatchEngine<Pattern>, document: &Value) -> Vec<usize> {
        (0..engine.entries().len())
            .filter(|position| engine.entries()[*position].matches(document))
            .collect()
    }

    #[test]
    fn empty_engine_matches_nothing() {
        let engine = engine(&[]);
        assert!(engine.matching(&json!({"a": "x"})).is_empty());
        assert_eq!(engine.stats(), EngineStats::default());
    }

    #[test]
    fn indexed_and_scanned_patterns_match() {
        let engine = engine(&[
            json!({"repo": "a", "branch": "main"}),
            json!({"ref": [{"prefix": "refs/tags/"}]}),
            json!({"repo": "b"}),
            json!({"repo": "a", "branch": [{"prefix": "release/"}]}),
        ]);
        let stats = engine.stats();
        assert_eq!(stats.entries, 4);
        assert_eq!(stats.scanned, 1);
        assert_eq!(stats.key_paths, [("repo".to_owned(), 2)]);

        assert_eq!(
            positions(&engine, &json!({"repo": "a", "branch": "main"})),
            [0]
        );
        assert_eq!(
            positions(
                &engine,
                &json!({"repo": "a", "branch": "release/1", "ref": "refs/tags/v1"})
            ),
            [1, 3]
        );
        assert_eq!(positions(&engine, &json!({"repo": "b"})), [2]);
        assert!(positions(&engine, &json!({"repo": "c"})).is_empty());
    }

    #[test]
    fn prefers_the_most_selective_path() {
        // Every pattern names "action" with one of two values and "repo"
        // with a value of its own, so "repo" is chosen.
        let filters: Vec<Value> = (0..20)
            .map(|n| {
                let action = if n % 2 == 0 { "opened" } else { "closed" };
                json!({"action": action, "repo": format!("o/r-{n}")})
            })
            .collect();
        let engine = engine(&filters);
        assert_eq!(engine.stats().key_paths, [("repo".to_owned(), 20)]);
        assert_eq!(
            positions(&engine, &json!({"action": "closed", "repo": "o/r-7"})),
            [7]
        );
    }

    #[test]
    fn nested_paths_and_arrays_of_objects() {
        let engine = engine(&[
            json!({"repository": {"full_name": "o/a"}}),
            json!({"commits": {"author": {"name": "ann"}, "distinct": [true]}}),
        ]);
        assert_eq!(
            positions(&engine, &json!({"repository": {"full_name": "o/a"}})),
            [0]
        );
        let push = json!({"commits": [
            {"author": {"name": "bob"}, "distinct": true},
            [{"author": {"name": "ann"}, "distinct": true}]
        ]});
        assert_eq!(positions(&engine, &push), [1]);
        let not_one_element = json!({"commits": [
            {"author": {"name": "ann"}, "distinct": false},
            {"author": {"name": "bob"}, "distinct": true}
        ]});
        assert!(positions(&engine, &not_one_element).is_empty());
    }

    #[test]
    fn string_arrays_in_documents() {
        let engine = engine(&[json!({"labels": ["bug"]}), json!({"labels": ["ui", "bug"]})]);
        assert_eq!(
            positions(&engine, &json!({"labels": ["x", ["bug"]]})),
            [0, 1]
        );
        assert_eq!(
            positions(&engine, &json!({"labels": ["ui", "bug"]})),
            [0, 1]
        );
        assert_eq!(positions(&engine, &json!({"labels": "ui"})), [1]);
    }

    #[test]
    fn or_patterns_found_once() {
        let engine = engine(&[
            json!({"$or": [{"branch": "main"}, {"tag": ["v1", "v2"]}]}),
            json!({"$or": [{"branch": "dev"}, {"tag": [{"prefix": "v"}]}]}),
        ]);
        assert_eq!(engine.stats().scanned, 1);
        let both = json!({"branch": "main", "tag": ["v1", "v2"]});
        assert_eq!(positions(&engine, &both), [0, 1]);
        assert_eq!(positions(&engine, &json!({"tag": "v3"})), [1]);
        assert!(positions(&engine, &json!({"tag": "x"})).is_empty());
    }

    #[test]
    fn documents_that_are_not_objects() {
        let engine = engine(&[json!({"a": "x"}), json!({"b": [{"exists": false}]})]);
        assert_eq!(positions(&engine, &json!(["x"])), [1]);
        assert_eq!(positions(&engine, &json!("x")), [1]);
        assert_eq!(positions(&engine, &json!({"a": "x"})), [0, 1]);
    }

    #[test]
    fn deep_arrays_do_not_recurse() {
        let engine = engine(&[json!({"a": ["x"]})]);
        let mut array = json!("x");
        for _ in 0..100_000 {
            array = Value::Array(vec![array]);
        }
        let mut document = Map::new();
        document.insert("a".to_owned(), array);
        let document = Value::Object(document);
        assert_eq!(positions(&engine, &document), [0]);

        // Take the value apart level by level: dropping it whole recurses.
        let mut value = document;
        loop {
            value = match value {
                Value::Object(mut map) => map.remove("a").unwrap_or(Value::Null),
                Value::Array(mut items) => items.pop().unwrap_or(Value::Null),
                _ => break,
            };
        }
    }

    #[test]
    fn same_result_as_scanning() {
        let filters = [
            json!({"repo": "a"}),
            json!({"repo": ["a", "b"], "n": [{"numeric": [">", 1]}]}),
            json!({"repo": "b", "$or": [{"x": "1"}, {"y": [{"exists": false}]}]}),
            json!({"d": {"e": ["1", "2"]}, "repo": [{"prefix": "a"}]}),
            json!({"d": {"$or": [{"e": "1"}, {"f": "2"}]}}),
            json!({"n": [5]}),
            json!({"repo": [null]}),
            json!({"repo": [{"anything-but": "a"}]}),
        ];
        let engine = engine(&filters);
        let documents = [
            json!({}),
            json!({"repo": "a"}),
            json!({"repo": "a", "n": 2}),
            json!({"repo": ["a", "b"], "n": [0, 3]}),
            json!({"repo": "b", "x": "1"}),
            json!({"repo": "b", "y": 1}),
            json!({"repo": "b"}),
            json!({"repo": "ab", "d": {"e": "2"}}),
            json!({"d": [{"f": "2"}, {"e": "3"}]}),
            json!({"d": {"e": ["1"]}, "repo": "a"}),
            json!({"n": 5.0, "repo": null}),
            json!({"repo": {"a": 1}}),
        ];
        for document in &documents {
            assert_eq!(
                positions(&engine, document),
                scanned_positions(&engine, document),
                "{document}"
            );
        }
    }
}
