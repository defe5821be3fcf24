//! The worker's memory of executions it finished or is running, to drop
//! duplicate deliveries.
//!
//! Concurrency: one instance is shared by every request task behind a
//! mutex, held only for a map lookup or update.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

/// The outcome of one finished attempt of an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Completion {
    /// The attempt that finished.
    pub attempt: u32,
    /// Whether the hub will not deliver the execution again: it succeeded,
    /// or failed with an error marked permanent.
    pub is_final: bool,
}

/// Whether to run a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Run the handler.
    Run,
    /// The same or a later attempt is running in this process.
    InProgress,
    /// This process finished the execution already.
    Completed(Completion),
}

/// In-flight executions and a bounded LRU of completed ones.
#[derive(Debug)]
pub(crate) struct CompletedExecutions {
    capacity: usize,
    in_flight: HashMap<Uuid, u32>,
    completed: HashMap<Uuid, (Completion, u64)>,
    recency: BTreeMap<u64, Uuid>,
    clock: u64,
}

impl CompletedExecutions {
    /// Creates an empty memory that keeps up to `capacity` completed ids.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            in_flight: HashMap::new(),
            completed: HashMap::new(),
            recency: BTreeMap::new(),
            clock: 0,
        }
    }

    /// Decides whether attempt `attempt` of `execution_id` runs, and marks
    /// it in flight if so.
    ///
    /// A request is a duplicate when the same or a later attempt is in
    /// flight, or when this process finished the execution finally or at
    /// the same or a later attempt. A retry after a retryable failure runs.
    pub(crate) fn admit(&mut self, execution_id: Uuid, attempt: u32) -> Admission {
        if let Some(running) = self.in_flight.get(&execution_id) {
            if *running >= attempt {
                return Admission::InProgress;
            }
        }
        if let Some(completion) = self.touch(execution_id) {
            if completion.is_final || attempt <= completion.attempt {
                return Admission::Completed(completion);
            }
        }
        self.in_flight.insert(execution_id, attempt);
        Admission::Run
    }

    /// Records that an admitted attempt finished and its status was
    /// acknowledged.
    pub(crate) fn finish(&mut self, execution_id: Uuid, completion: Completion) {
        if self.in_flight.get(&execution_id) == Some(&completion.attempt) {
            self.in_flight.remove(&execution_id);
        }
        let completion = match self.completed.get(&execution_id) {
            Some((known, _)) if known.attempt > completion.attempt => *known,
            _ => completion,
        };
        self.clock += 1;
        if let Some((_, old_tick)) = self
            .completed
            .insert(execution_id, (completion, self.clock))
        {
            self.recency.remove(&old_tick);
        }
        self.recency.insert(self.clock, execution_id);
        while self.completed.len() > self.capacity {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            self.completed.remove(&oldest);
        }
    }

    /// Forgets an admitted attempt that did not finish, so that its
    /// redelivery runs.
    pub(crate) fn abandon(&mut self, execution_id: Uuid, attempt: u32) {
        if self.in_flight.get(&execution_id) == Some(&attempt) {
            self.in_flight.remove(&execution_id);
        }
    }

    /// Returns the completion of `execution_id` and marks it recently used.
    fn touch(&mut self, execution_id: Uuid) -> Option<Completion> {
        let (completion, tick) = self.completed.get_mut(&execution_id)?;
        self.recency.remove(tick);
        self.clock += 1;
        *tick = self.clock;
        self.recency.insert(self.clock, execution_id);
        Some(*completion)
    }

    /// Number of completed executions remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.completed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(attempt: u32, is_final: bool) -> Completion {
        Completion { attempt, is_final }
    }

    #[test]
    fn duplicate_of_finished_execution_is_dropped() {
        let mut memory = CompletedExecutions::new(10);
        let id = Uuid::new_v4();
        assert_eq!(memory.admit(id, 1), Admission::Run);
        assert_eq!(memory.admit(id, 1), Admission::InProgress);
        memory.finish(id, done(1, true));
        assert_eq!(memory.admit(id, 1), Admission::Completed(done(1, true)));
        assert_eq!(memory.admit(id, 2), Admission::Completed(done(1, true)));
    }

    #[test]
    fn retry_after_retryable_failure_runs() {
        let mut memory = CompletedExecutions::new(10);
        let id = Uuid::new_v4();
        assert_eq!(memory.admit(id, 1), Admission::Run);
        memory.finish(id, done(1, false));
        assert_eq!(memory.admit(id, 1), Admission::Completed(done(1, false)));
        assert_eq!(memory.admit(id, 2), Admission::Run);
    }

    #[test]
    fn abandoned_attempt_runs_again() {
        let mut memory = CompletedExecutions::new(10);
        let id = Uuid::new_v4();
        assert_eq!(memory.admit(id, 1), Admission::Run);
        memory.abandon(id, 1);
        assert_eq!(memory.admit(id, 1), Admission::Run);
    }

    #[test]
    fn least_recently_used_is_evicted() {
        let mut memory = CompletedExecutions::new(2);
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for id in &ids[..2] {
            memory.admit(*id, 1);
            memory.finish(*id, done(1, true));
        }
        // Touch the first so that the second is the least recently used.
        assert!(matches!(memory.admit(ids[0], 1), Admission::Completed(_)));
        memory.admit(ids[2], 1);
        memory.finish(ids[2], done(1, true));

        assert_eq!(memory.len(), 2);
        assert!(matches!(memory.admit(ids[0], 1), Admission::Completed(_)));
        assert_eq!(memory.admit(ids[1], 1), Admission::Run);
    }
}
