//! Offsets that are safe to commit while requests of one partition finish
//! out of order.
//!
//! An offset may be committed only when every record before it is
//! finished, so the commit point of a partition is its lowest unfinished
//! offset, or one past the highest finished offset when none is in flight.
//!
//! Concurrency: owned by the worker's consumer loop, never shared.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
struct PartitionOffsets {
    in_flight: BTreeSet<i64>,
    highest_finished: Option<i64>,
    stored: Option<i64>,
}

/// Per-partition tracking of the records in flight.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    partitions: HashMap<(String, i32), PartitionOffsets>,
}

impl OffsetTracker {
    /// Records that the record at `offset` started.
    pub(crate) fn start(&mut self, topic: &str, partition: i32, offset: i64) {
        self.partitions
            .entry((topic.to_owned(), partition))
            .or_default()
            .in_flight
            .insert(offset);
    }

    /// Records that the record at `offset` finished, and returns the offset
    /// to store for its partition when the commit point moved forward.
    pub(crate) fn finish(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        state.in_flight.remove(&offset);
        state.highest_finished = Some(state.highest_finished.map_or(offset, |h| h.max(offset)));
        let commit_point = match state.in_flight.first() {
            Some(lowest) => *lowest,
            None => state.highest_finished? + 1,
        };
        if state.stored.is_some_and(|stored| stored >= commit_point) {
            return None;
        }
        state.stored = Some(commit_point);
        Some(commit_point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_point_waits_for_earlier_records() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..13 {
            tracker.start("t", 0, offset);
        }
        assert_eq!(tracker.finish("t", 0, 11), Some(10));
        assert_eq!(tracker.finish("t", 0, 12), None);
        assert_eq!(tracker.finish("t", 0, 10), Some(13));
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = OffsetTracker::default();
        tracker.start("t", 0, 5);
        tracker.start("t", 1, 7);
        assert_eq!(tracker.finish("t", 1, 7), Some(8));
        assert_eq!(tracker.finish("t", 0, 5), Some(6));
        assert_eq!(tracker.finish("other", 0, 1), None);
    }
}
