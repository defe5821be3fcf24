//! A hash table from value hashes to entry positions, laid out as one
//! array of slots.
//!
//! Each slot also carries a hint chosen by the engine: the number of the
//! first condition to test for the entry. It fills the slot's padding, so
//! the engine can reject most near misses from the slot alone.
//!
//! A lookup reads the slot at the hash and the slots after it up to an
//! empty one (linear probing). With at most half of the slots used, that
//! is one or two slots, usually in one cache line, where a general hash
//! map reads a control group and then a separate bucket.

/// One slot: a value hash, the position of an entry indexed under it, and
/// the entry's hint.
#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u64,
    position: u32,
    hint: u32,
}

/// An entry that a table stores under a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Found {
    /// The entry's position.
    pub(super) position: usize,
    /// The hint stored with it.
    pub(super) hint: u32,
}

/// Position of an empty slot.
const EMPTY: u32 = u32::MAX;

/// Largest entry position a table can hold.
pub(super) const MAX_POSITION: usize = EMPTY as usize - 1;

/// The table of one key path.
#[derive(Debug)]
pub(super) struct KeyTable {
    slots: Box<[Slot]>,
    /// `slots.len() - 1`; the length is a power of two.
    mask: usize,
    distinct_hashes: usize,
}

impl KeyTable {
    /// Builds a table from `(hash, position, hint)` triples. A triple given
    /// twice is stored once. Positions above [`MAX_POSITION`] are the
    /// caller's to keep out.
    pub(super) fn new(mut pairs: Vec<(u64, u32, u32)>) -> Self {
        pairs.sort_unstable();
        pairs.dedup();
        let mut distinct_hashes = 0;
        let mut previous = None;
        for (hash, _, _) in &pairs {
            if previous != Some(*hash) {
                distinct_hashes += 1;
                previous = Some(*hash);
            }
        }

        // At most half of the slots are used, so probes stay short.
        let capacity = (pairs.len() * 2).max(8).next_power_of_two();
        let mask = capacity - 1;
        let mut slots = vec![
            Slot {
                hash: 0,
                position: EMPTY,
                hint: 0,
            };
            capacity
        ]
        .into_boxed_slice();
        for (hash, position, hint) in pairs {
            let mut index = slot_index(hash, mask);
            while slots[index].position != EMPTY {
                index = (index + 1) & mask;
            }
            slots[index] = Slot {
                hash,
                position,
                hint,
            };
        }
        Self {
            slots,
            mask,
            distinct_hashes,
        }
    }

    /// Appends the entries stored under `hash` to `out`.
    pub(super) fn find(&self, hash: u64, out: &mut impl Extend<Found>) {
        let mut index = slot_index(hash, self.mask);
        loop {
            let Some(slot) = self.slots.get(index) else {
                return;
            };
            if slot.position == EMPTY {
                return;
            }
            if slot.hash == hash {
                out.extend([Found {
                    position: slot.position as usize,
                    hint: slot.hint,
                }]);
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Returns the number of distinct hashes in the table.
    pub(super) fn distinct_hashes(&self) -> usize {
        self.distinct_hashes
    }
}

fn slot_index(hash: u64, mask: usize) -> usize {
    // Truncating to the low bits is the point: they pick the slot.
    (hash as usize) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(table: &KeyTable, hash: u64) -> Vec<usize> {
        let mut entries = Vec::new();
        table.find(hash, &mut entries);
        let mut positions: Vec<usize> = entries.iter().map(|found| found.position).collect();
        positions.sort_unstable();
        positions
    }

    #[test]
    fn empty_table_finds_nothing() {
        let table = KeyTable::new(Vec::new());
        assert!(found(&table, 7).is_empty());
        assert_eq!(table.distinct_hashes(), 0);
    }

    #[test]
    fn finds_every_position_of_a_hash() {
        let table = KeyTable::new(vec![(5, 0, 0), (9, 1, 0), (5, 2, 0), (5, 0, 0)]);
        assert_eq!(found(&table, 5), [0, 2]);
        assert_eq!(found(&table, 9), [1]);
        assert!(found(&table, 6).is_empty());
        assert_eq!(table.distinct_hashes(), 2);
    }

    #[test]
    fn colliding_slots_probe_past_each_other() {
        // Hashes that share their low bits land on the same slot.
        let pairs: Vec<(u64, u32, u32)> = (0..100).map(|n| ((n << 32) | 3, n as u32, 0)).collect();
        let table = KeyTable::new(pairs);
        for n in 0..100_u64 {
            assert_eq!(found(&table, (n << 32) | 3), [n as usize]);
        }
        assert!(found(&table, (100 << 32) | 3).is_empty());
        assert_eq!(table.distinct_hashes(), 100);
    }

    #[test]
    fn wraps_around_the_end() {
        // Five pairs get 16 slots, and all five hashes start at the last one.
        let pairs: Vec<(u64, u32, u32)> = (0..5).map(|n| (15 + 16 * n, n as u32, 0)).collect();
        let table = KeyTable::new(pairs);
        assert_eq!(table.slots.len(), 16);
        assert_eq!(found(&table, 15 + 16 * 4), [4]);
        assert_eq!(found(&table, 15), [0]);
    }

    #[test]
    fn returns_the_hint_of_each_entry() {
        let table = KeyTable::new(vec![(5, 0, 7), (5, 2, 9)]);
        let mut entries = Vec::new();
        table.find(5, &mut entries);
        entries.sort_unstable();
        assert_eq!(
            entries,
            [
                Found {
                    position: 0,
                    hint: 7
                },
                Found {
                    position: 2,
                    hint: 9
                }
            ]
        );
    }
}
