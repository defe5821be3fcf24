//! Prints the memory of the trigger index as a Markdown table, for the
//! workloads of `examples/matching_bench.rs`: GitHub and synthetic
//! triggers, 100, 10,000 and 100,000 of them over 50 event sources.
//!
//! ```sh
//! cargo bench --bench matching_memory
//! ```
//!
//! A counting global allocator (`stats_alloc`) counts the bytes that
//! `TriggerIndex::build` allocates and does not free, which is what the
//! index keeps: the copies of the trigger rows, the compiled filters and
//! the engines. Allocator overhead per block is not included. The counter
//! costs an atomic operation per allocation, which is why the throughput
//! benchmarks run in other binaries.

#[path = "support/workload.rs"]
mod workload;

use std::alloc::System;

use event_hub::matching::TriggerIndex;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use workload::{Kind, Workload, MAX_TRIGGERS};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TRIGGER_COUNTS: [usize; 3] = [100, 10_000, MAX_TRIGGERS];

fn main() {
    println!("## Memory of the trigger index\n");
    println!("| events | triggers | trigger rows | index | index per trigger |");
    println!("|---|---:|---:|---:|---:|");
    for kind in Kind::ALL {
        for trigger_count in TRIGGER_COUNTS {
            let rows_region = Region::new(ALLOCATOR);
            let workload = Workload::new(kind, trigger_count);
            let rows_bytes = net_bytes(&rows_region);

            let index_region = Region::new(ALLOCATOR);
            let index =
                TriggerIndex::build(&workload.sources, &workload.actions, &workload.triggers);
            let index_bytes = net_bytes(&index_region);
            assert_eq!(index.trigger_count(), trigger_count);

            println!(
                "| {} | {} | {:.1} MiB | {:.1} MiB | {} bytes |",
                kind.label(),
                thousands(trigger_count),
                mebibytes(rows_bytes),
                mebibytes(index_bytes),
                thousands((index_bytes.max(0) as usize).div_ceil(trigger_count)),
            );
        }
    }
}

/// Returns the bytes allocated and not freed since `region` started.
fn net_bytes(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
}

/// Formats a count with thousands separators.
fn thousands(count: usize) -> String {
    let digits = count.to_string();
    let mut grouped = String::new();
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

fn mebibytes(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
