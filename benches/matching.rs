//! Criterion benchmarks of trigger matching: 100, 10,000 and 100,000
//! triggers over 50 event sources, with 1% of events matching.
//!
//! ```sh
//! cargo bench --bench matching
//! cargo bench --bench matching -- match_only/github   # one group
//! ```
//!
//! Each iteration processes a batch of events, and criterion reports
//! events per second as "elements". `examples/matching_bench.rs` prints
//! the full table with every match rate, memory and the scan baseline.

#[path = "support/workload.rs"]
mod workload;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use event_hub::matching::{Pattern, TriggerIndex};
use uuid::Uuid;
use workload::{BenchEvent, Kind, Misses, Workload, MAX_TRIGGERS};

const TRIGGER_COUNTS: [usize; 3] = [100, 10_000, MAX_TRIGGERS];

/// Events per iteration.
const BATCH: usize = 500;

fn matching(criterion: &mut Criterion) {
    for kind in Kind::ALL {
        let events = workload::events(kind, 1, Misses::NearMiss, BATCH);
        let workloads: Vec<Workload> = TRIGGER_COUNTS
            .iter()
            .map(|&count| Workload::new(kind, count))
            .collect();
        let indexes: Vec<TriggerIndex> = workloads
            .iter()
            .map(|workload| {
                TriggerIndex::build(&workload.sources, &workload.actions, &workload.triggers)
            })
            .collect();

        let mut group = criterion.benchmark_group(format!("match_only/{}", kind.label()));
        group.throughput(Throughput::Elements(events.len() as u64));
        for (workload, index) in workloads.iter().zip(&indexes) {
            group.bench_with_input(
                BenchmarkId::from_parameter(workload.triggers.len()),
                index,
                |bencher, index| {
                    bencher.iter(|| {
                        events
                            .iter()
                            .map(|event| index.matching(event.source_id, &event.document).len())
                            .sum::<usize>()
                    });
                },
            );
        }
        group.finish();

        let mut group = criterion.benchmark_group(format!("decode_and_match/{}", kind.label()));
        group.throughput(Throughput::Elements(events.len() as u64));
        for (workload, index) in workloads.iter().zip(&indexes) {
            group.bench_with_input(
                BenchmarkId::from_parameter(workload.triggers.len()),
                index,
                |bencher, index| {
                    bencher.iter(|| {
                        events
                            .iter()
                            .map(|event| workload::decode_and_match(index, event))
                            .sum::<usize>()
                    });
                },
            );
        }
        group.finish();

        let mut group = criterion.benchmark_group(format!("scan/{}", kind.label()));
        group.throughput(Throughput::Elements(events.len() as u64));
        for workload in &workloads {
            let scan = scan_baseline(workload);
            group.bench_with_input(
                BenchmarkId::from_parameter(workload.triggers.len()),
                &scan,
                |bencher, scan| {
                    bencher.iter(|| {
                        events
                            .iter()
                            .map(|event| scan_matches(scan, event))
                            .sum::<usize>()
                    });
                },
            );
        }
        group.finish();

        if let (Some(workload), Some(index)) = (workloads.last(), indexes.last()) {
            let trigger = workload.trigger(MAX_TRIGGERS);
            criterion.bench_function(
                &format!("add_one_trigger/{}/{}", kind.label(), MAX_TRIGGERS),
                |bencher| bencher.iter(|| black_box(index.with_trigger(&trigger)).is_ok()),
            );
        }
    }
}

fn scan_baseline(workload: &Workload) -> HashMap<Uuid, Vec<Pattern>> {
    let mut by_source: HashMap<Uuid, Vec<Pattern>> = HashMap::new();
    for trigger in &workload.triggers {
        if let Ok(pattern) = Pattern::compile(&trigger.event_filter) {
            by_source
                .entry(trigger.event_source_id)
                .or_default()
                .push(pattern);
        }
    }
    by_source
}

fn scan_matches(scan: &HashMap<Uuid, Vec<Pattern>>, event: &BenchEvent) -> usize {
    scan.get(&event.source_id).map_or(0, |patterns| {
        patterns
            .iter()
            .filter(|pattern| pattern.matches(&event.document))
            .count()
    })
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = matching
}
criterion_main!(benches);
