//! The top-level field conditions of an engine's patterns, each distinct
//! condition stored once, and per pattern the list of conditions to test.
//!
//! Many triggers of a source differ only in the value of their key field
//! and share every other condition: `"action": ["opened"]` or
//! `"ref": [{"prefix": "refs/tags/"}]` appear in thousands of filters. Stored
//! once, such a condition stays in the CPU cache, because every event that
//! reaches a candidate tests it. A candidate is tested against its shared
//! conditions first. So an event that names a trigger's repository but
//! misses its other conditions, a near miss, is rejected without reading
//! memory that belongs to that one trigger alone. With 100,000 triggers,
//! that memory is almost never cached, and reading it cost a near-miss
//! event several times the work of the lookup before it.

use std::collections::HashMap;

use serde_json::Value;

use super::super::pattern::{FieldPattern, ObjectPattern};

/// A hint that names no condition.
pub(super) const NO_HINT: u32 = u32::MAX;

/// The result of testing a pattern's top-level fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FieldsResult {
    /// A field fails, so the pattern does not match.
    Failed,
    /// Every field matches and the pattern has no top-level `$or`.
    Matched,
    /// Every field matches, and the top-level `$or` alternatives decide.
    AlternativesLeft,
}

/// The conditions to test for one pattern, as a range of
/// [`SharedFields::plan_fields`], and whether the pattern also has `$or`
/// alternatives at the top level.
#[derive(Clone, Copy, Debug)]
struct Plan {
    start: u32,
    end: u32,
    has_alternatives: bool,
}

/// The distinct top-level field conditions of a list of patterns.
#[derive(Debug, Default)]
pub(super) struct SharedFields {
    /// Distinct conditions, numbered by descending number of patterns that
    /// use them, so the most shared come first.
    fields: Vec<FieldPattern>,
    /// Per pattern, in build order.
    plans: Vec<Plan>,
    /// Condition numbers of every plan, each plan's sorted ascending so that
    /// its most shared conditions are tested first.
    plan_fields: Vec<u32>,
}

impl SharedFields {
    /// Collects the top-level conditions of `roots`, the root objects of
    /// the engine's patterns in build order.
    ///
    /// Returns `None` if the conditions cannot be numbered with `u32`, past
    /// 4 billion of them. The engine then tests the patterns whole.
    pub(super) fn new<'a>(roots: impl Iterator<Item = &'a ObjectPattern>) -> Option<Self> {
        // Number the distinct conditions in the order first seen, and count
        // the patterns that use each.
        let mut numbers: HashMap<&FieldPattern, usize> = HashMap::new();
        let mut distinct: Vec<(&FieldPattern, usize)> = Vec::new();
        let mut plans: Vec<(Vec<usize>, bool)> = Vec::new();
        for root in roots {
            let mut plan = Vec::with_capacity(root.fields.len());
            for field in &root.fields {
                let number = *numbers.entry(field).or_insert_with(|| {
                    distinct.push((field, 0));
                    distinct.len() - 1
                });
                // The keys of a JSON object are unique, so this only guards
                // the count.
                if !plan.contains(&number) {
                    distinct[number].1 += 1;
                    plan.push(number);
                }
            }
            plans.push((plan, !root.alternatives.is_empty()));
        }

        // Renumber by descending use, the first seen first among equals.
        let mut order: Vec<usize> = (0..distinct.len()).collect();
        order.sort_by_key(|&number| std::cmp::Reverse(distinct[number].1));
        let mut renumbered = vec![0_u32; distinct.len()];
        for (new, &old) in order.iter().enumerate() {
            renumbered[old] = u32::try_from(new).ok()?;
        }

        let mut plan_fields = Vec::new();
        let mut compact_plans = Vec::with_capacity(plans.len());
        for (plan, has_alternatives) in plans {
            let start = u32::try_from(plan_fields.len()).ok()?;
            let mut numbers: Vec<u32> = plan.iter().map(|&old| renumbered[old]).collect();
            numbers.sort_unstable();
            plan_fields.extend(numbers);
            compact_plans.push(Plan {
                start,
                end: u32::try_from(plan_fields.len()).ok()?,
                has_alternatives,
            });
        }
        Some(Self {
            fields: order
                .into_iter()
                .map(|number| distinct[number].0.clone())
                .collect(),
            plans: compact_plans,
            plan_fields,
        })
    }

    /// Returns the number of the first condition of the pattern at
    /// `position`, its most shared one, or [`NO_HINT`] if it has none.
    pub(super) fn hint(&self, position: usize) -> u32 {
        self.plans
            .get(position)
            .filter(|plan| plan.start < plan.end)
            .and_then(|plan| self.plan_fields.get(plan.start as usize))
            .copied()
            .unwrap_or(NO_HINT)
    }

    /// Tests condition `number` against `document`. An unknown number
    /// passes, so that a bad hint can only add work.
    pub(super) fn test_condition(&self, number: u32, document: &Value) -> bool {
        let Some(field) = self.fields.get(number as usize) else {
            return true;
        };
        field.matches(
            document
                .as_object()
                .and_then(|object| object.get(&field.name)),
        )
    }

    /// Tests the top-level fields of the pattern at `position` against
    /// `document`. With `hint_passed` set, the caller has tested the first
    /// one already, and it is skipped.
    ///
    /// A position out of range fails.
    pub(super) fn test(
        &self,
        position: usize,
        document: &Value,
        hint_passed: bool,
    ) -> FieldsResult {
        let Some(plan) = self.plans.get(position) else {
            return FieldsResult::Failed;
        };
        let start = plan.start as usize + usize::from(hint_passed && plan.start < plan.end);
        let numbers = self
            .plan_fields
            .get(start..plan.end as usize)
            .unwrap_or_default();
        for &number in numbers {
            if !self.test_condition(number, document) {
                return FieldsResult::Failed;
            }
        }
        if plan.has_alternatives {
            FieldsResult::AlternativesLeft
        } else {
            FieldsResult::Matched
        }
    }

    /// Returns the number of distinct conditions.
    pub(super) fn distinct(&self) -> usize {
        self.fields.len()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::matching::Pattern;

    fn compile(filters: &[Value]) -> Vec<Pattern> {
        filters
            .iter()
            .map(|filter| match Pattern::compile(filter) {
                Ok(pattern) => pattern,
                Err(error) => panic!("pattern {filter} is invalid: {error}"),
            })
            .collect()
    }

    fn shared(patterns: &[Pattern]) -> SharedFields {
        SharedFields::new(patterns.iter().map(|pattern| &pattern.root))
            .expect("a few conditions fit in u32")
    }

    #[test]
    fn stores_each_condition_once_most_shared_first() {
        let patterns = compile(&[
            json!({"repo": "a", "action": "opened"}),
            json!({"repo": "b", "action": "opened"}),
            json!({"repo": "c", "action": "opened", "ref": [{"prefix": "v"}]}),
            json!({"repo": "d", "ref": [{"prefix": "v"}]}),
        ]);
        let fields = shared(&patterns);
        assert_eq!(fields.distinct(), 6);
        assert_eq!(fields.fields[0].name, "action");
        assert_eq!(fields.fields[1].name, "ref");
        // Pattern 2 tests action, then ref, then its repository.
        let plan = fields.plans[2];
        assert_eq!(
            &fields.plan_fields[plan.start as usize..plan.end as usize],
            [0, 1, 4]
        );
    }

    #[test]
    fn tests_fields_and_defers_alternatives() {
        let patterns = compile(&[
            json!({"repo": "a", "action": "opened"}),
            json!({"repo": "a", "$or": [{"x": "1"}, {"y": "2"}]}),
            json!({"$or": [{"x": "1"}, {"y": "2"}]}),
        ]);
        let fields = shared(&patterns);
        let opened = json!({"repo": "a", "action": "opened"});
        assert_eq!(fields.test(0, &opened, false), FieldsResult::Matched);
        assert_eq!(
            fields.test(0, &json!({"repo": "a"}), false),
            FieldsResult::Failed
        );
        assert_eq!(
            fields.test(1, &opened, false),
            FieldsResult::AlternativesLeft
        );
        assert_eq!(
            fields.test(1, &json!({"repo": "b"}), false),
            FieldsResult::Failed
        );
        assert_eq!(
            fields.test(2, &json!("not an object"), false),
            FieldsResult::AlternativesLeft
        );
        assert_eq!(fields.test(3, &opened, false), FieldsResult::Failed);
    }

    #[test]
    fn hints_name_the_most_shared_condition() {
        let patterns = compile(&[
            json!({"repo": "a", "action": "opened"}),
            json!({"repo": "b", "action": "opened"}),
            json!({"$or": [{"x": "1"}, {"y": "2"}]}),
        ]);
        let fields = shared(&patterns);
        let hint = fields.hint(1);
        assert_eq!(fields.fields[hint as usize].name, "action");
        assert_eq!(fields.hint(2), NO_HINT);
        assert_eq!(fields.hint(3), NO_HINT);

        let closed = json!({"repo": "b", "action": "closed"});
        assert!(!fields.test_condition(hint, &closed));
        assert!(fields.test_condition(NO_HINT, &closed));
        // With the hint passed, only the repository is left to test.
        assert_eq!(fields.test(1, &closed, true), FieldsResult::Matched);
        assert_eq!(fields.test(0, &closed, true), FieldsResult::Failed);
    }
}
