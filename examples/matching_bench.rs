//! Prints the matching benchmark as Markdown tables.
//!
//! The tables give events per second on one core for GitHub payloads and
//! synthetic 1 KB events, against 100, 10,000 and 100,000 triggers over 50
//! event sources, with 0%, 1% and 100% of events matching. Matching alone
//! is measured twice: on documents decoded in advance, which are no longer
//! in the CPU cache when matched, and on documents decoded just before, as
//! in the consumer. A scan of every trigger of the source is the baseline.
//! The tables also give the build time of the index and the time to add
//! one trigger to the largest index.
//! `cargo bench --bench matching_memory` prints the memory of the index,
//! because the counting allocator it needs would slow down every
//! allocation here.
//!
//! ```sh
//! cargo run --release --example matching_bench
//! # A quick look at one kind of event and one index size:
//! cargo run --release --example matching_bench -- --seconds 0.2 --kind github --triggers 100000
//! ```
//!
//! The workload is described in `benches/support/workload.rs`.

#[path = "../benches/support/workload.rs"]
mod workload;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use event_hub::event;
use event_hub::matching::{Pattern, TriggerIndex};
use uuid::Uuid;
use workload::{BenchEvent, Kind, Misses, Workload, MAX_TRIGGERS};

/// Trigger counts of the table.
const TRIGGER_COUNTS: [usize; 3] = [100, 10_000, MAX_TRIGGERS];

/// The event mixes: the percentage of events that match a trigger, and
/// what the others look like.
const MIXES: [(usize, Misses); 5] = [
    (0, Misses::NearMiss),
    (1, Misses::NearMiss),
    (100, Misses::NearMiss),
    (0, Misses::UnknownRepository),
    (1, Misses::SharedNearMiss),
];

/// Rounds of each throughput measurement; the fastest is reported.
const ROUNDS: u32 = 5;

/// Times `with_trigger` is measured; the median is reported.
const ADD_ONE_REPEATS: usize = 21;

/// One row of the throughput table.
struct Row {
    kind: Kind,
    triggers: usize,
    match_percent: usize,
    misses: Misses,
    matched_share: f64,
    match_only: f64,
    match_fresh: f64,
    decode_and_match: f64,
    scan: f64,
}

/// Build figures of one index.
struct BuildRow {
    kind: Kind,
    triggers: usize,
    build: Duration,
    indexed_paths: String,
    scanned: usize,
    /// Distinct top-level field conditions over all sources.
    conditions: usize,
}

/// Command-line options.
struct Options {
    /// Time spent on each measurement.
    seconds: f64,
    /// The kinds of events to run, all by default.
    kinds: Vec<Kind>,
    /// The trigger counts to run, all by default.
    trigger_counts: Vec<usize>,
    /// Whether to measure the scan of every trigger too.
    scan: bool,
}

fn main() {
    let options = parse_options();
    let seconds = options.seconds;
    let measure_time = Duration::from_secs_f64(seconds);
    println!("# Matching benchmark\n");
    println!("- CPU: {} ({} cores available)", cpu_model(), cores());
    println!("- load average at start: {}", load_average());
    println!(
        "- time per measurement: {seconds} s per index size, in {ROUNDS} rounds that \
         alternate the sizes; the fastest round of each size counts\n"
    );

    let mut rows = Vec::new();
    let mut builds = Vec::new();
    let mut add_one = Vec::new();
    for &kind in &options.kinds {
        let event_count = match kind {
            Kind::Github => 1_000,
            Kind::Synthetic => 5_000,
        };
        let event_sets: Vec<(usize, Misses, Vec<BenchEvent>)> = MIXES
            .iter()
            .map(|&(percent, misses)| {
                let events = workload::events(kind, percent, misses, event_count);
                (percent, misses, events)
            })
            .collect();
        let mean_bytes = mean_payload_bytes(&event_sets[0].2);
        println!(
            "{}: {event_count} events per match rate, {mean_bytes} bytes on average",
            kind.label()
        );

        // Build every index size first, so that each measurement can go
        // round by round over all sizes.
        let mut sizes = Vec::new();
        for &trigger_count in &options.trigger_counts {
            let workload = Workload::new(kind, trigger_count);
            let started = Instant::now();
            let index =
                TriggerIndex::build(&workload.sources, &workload.actions, &workload.triggers);
            let build = started.elapsed();
            let stats = index.engine_stats(workload.sources[0].id);
            builds.push(BuildRow {
                kind,
                triggers: trigger_count,
                build,
                indexed_paths: stats
                    .key_paths
                    .iter()
                    .map(|(path, _)| path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                scanned: workload
                    .sources
                    .iter()
                    .map(|source| index.engine_stats(source.id).scanned)
                    .sum(),
                conditions: workload
                    .sources
                    .iter()
                    .map(|source| index.engine_stats(source.id).conditions)
                    .sum(),
            });
            if trigger_count == MAX_TRIGGERS {
                add_one.push((kind, time_add_one(&index, &workload)));
            }
            let scan = if options.scan {
                scan_baseline(&workload)
            } else {
                HashMap::new()
            };
            sizes.push((trigger_count, index, scan));
        }

        for (percent, misses, events) in &event_sets {
            let match_only = throughput(sizes.len(), events, measure_time, |size, event| {
                sizes[size]
                    .1
                    .matching(event.source_id, &event.document)
                    .len()
            });
            let indexes: Vec<&TriggerIndex> = sizes.iter().map(|(_, index, _)| index).collect();
            let match_fresh = fresh_match_throughput(&indexes, events, measure_time);
            let decode_and_match = throughput(sizes.len(), events, measure_time, |size, event| {
                workload::decode_and_match(&sizes[size].1, event)
            });
            let scan_rates = if options.scan {
                throughput(sizes.len(), events, measure_time, |size, event| {
                    sizes[size].2.get(&event.source_id).map_or(0, |patterns| {
                        patterns
                            .iter()
                            .filter(|pattern| pattern.matches(&event.document))
                            .count()
                    })
                })
            } else {
                vec![0.0; sizes.len()]
            };
            for (size, (trigger_count, index, _)) in sizes.iter().enumerate() {
                eprintln!(
                    "{} {trigger_count} triggers {}: {:.0} events/s",
                    kind.label(),
                    mix_label(*percent, *misses),
                    match_only[size]
                );
                rows.push(Row {
                    kind,
                    triggers: *trigger_count,
                    match_percent: *percent,
                    misses: *misses,
                    matched_share: matched_share(index, events),
                    match_only: match_only[size],
                    match_fresh: match_fresh[size],
                    decode_and_match: decode_and_match[size],
                    scan: scan_rates[size],
                });
            }
        }
    }

    // Rows go by event mix within a kind; the tables list them by size.
    rows.sort_by_key(|row| (row.kind.label(), row.triggers));
    print_throughput(&rows);
    print_ratios(&rows);
    print_builds(&builds);
    print_add_one(&add_one);
    println!("\nload average at end: {}", load_average());
}

/// Reads `--seconds S`, `--kind github|synthetic` and `--triggers N`.
fn parse_options() -> Options {
    let mut options = Options {
        seconds: 1.5,
        kinds: Vec::new(),
        trigger_counts: Vec::new(),
        scan: true,
    };
    let mut arguments: Vec<String> = std::env::args().skip(1).collect();
    if let Some(position) = arguments
        .iter()
        .position(|argument| argument == "--no-scan")
    {
        arguments.remove(position);
        options.scan = false;
    }
    for pair in arguments.chunks(2) {
        let [flag, value] = pair else {
            exit_with_usage(&format!("{} needs a value", pair[0]));
        };
        match flag.as_str() {
            "--seconds" => match value.parse::<f64>() {
                Ok(seconds) if seconds > 0.0 => options.seconds = seconds,
                _ => exit_with_usage(&format!("invalid --seconds value {value:?}")),
            },
            "--kind" => match Kind::ALL.iter().find(|kind| kind.label() == value) {
                Some(kind) => options.kinds.push(*kind),
                None => exit_with_usage(&format!("unknown --kind {value:?}")),
            },
            "--triggers" => match value.parse::<usize>() {
                Ok(count) if count > 0 && count <= MAX_TRIGGERS => {
                    options.trigger_counts.push(count);
                }
                _ => exit_with_usage(&format!("invalid --triggers value {value:?}")),
            },
            other => exit_with_usage(&format!("unknown option {other:?}")),
        }
    }
    if options.kinds.is_empty() {
        options.kinds = Kind::ALL.to_vec();
    }
    if options.trigger_counts.is_empty() {
        options.trigger_counts = TRIGGER_COUNTS.to_vec();
    }
    options
}

fn exit_with_usage(problem: &str) -> ! {
    eprintln!(
        "error: {problem}\n\
         usage: matching_bench [--seconds SECONDS_PER_MEASUREMENT] \
         [--kind github|synthetic]... [--triggers 1..=100000]... [--no-scan]"
    );
    std::process::exit(2);
}

/// Compiles every trigger's filter again, grouped by source, for the scan.
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

/// Returns the share of events that match at least one trigger.
fn matched_share(index: &TriggerIndex, events: &[BenchEvent]) -> f64 {
    let matched = events
        .iter()
        .filter(|event| !index.matching(event.source_id, &event.document).is_empty())
        .count();
    matched as f64 / events.len() as f64
}

/// Runs `work` over the events for each of `sizes` index sizes, and
/// returns the events per second of each size.
///
/// After one warm-up pass per size, each of `ROUNDS` rounds runs every size
/// in turn for its share of `measure_time`, and the fastest round of each
/// size counts. Other processes on the machine slow some rounds down, and
/// alternating the sizes spreads such slow periods over all of them.
fn throughput(
    sizes: usize,
    events: &[BenchEvent],
    measure_time: Duration,
    mut work: impl FnMut(usize, &BenchEvent) -> usize,
) -> Vec<f64> {
    for size in 0..sizes {
        for event in events {
            black_box(work(size, black_box(event)));
        }
    }
    let round_time = measure_time / ROUNDS;
    let mut best = vec![0.0_f64; sizes];
    for _ in 0..ROUNDS {
        for (size, best) in best.iter_mut().enumerate() {
            let started = Instant::now();
            let mut processed = 0_usize;
            'round: loop {
                for event in events {
                    black_box(work(size, black_box(event)));
                    processed += 1;
                    // Check the clock every 64 events, so slow work stops in time.
                    if processed.is_multiple_of(64) && started.elapsed() >= round_time {
                        break 'round;
                    }
                }
            }
            *best = best.max(processed as f64 / started.elapsed().as_secs_f64());
        }
    }
    best
}

/// Number of events that [`fresh_match_throughput`] decodes at a time
/// before matching them. Their documents, a few KB each, stay in the
/// CPU cache until matched.
const FRESH_CHUNK: usize = 16;

/// Measures matching alone on documents decoded just before, as the
/// consumer matches each record right after decoding the fields that
/// matching reads, and returns the events per second of each index.
///
/// [`throughput`] on pre-decoded documents measures matching on documents
/// that are no longer in the CPU cache: thousands of them were read since.
/// Here the events are decoded [`FRESH_CHUNK`] at a time, untimed, and then
/// matched, timed. Rounds and sizes alternate as in [`throughput`]. A round
/// lasts its share of `measure_time` in wall time, decoding included.
fn fresh_match_throughput(
    indexes: &[&TriggerIndex],
    events: &[BenchEvent],
    measure_time: Duration,
) -> Vec<f64> {
    let round_time = measure_time / ROUNDS;
    let mut best = vec![0.0_f64; indexes.len()];
    for round in 0..=ROUNDS {
        for (index, best) in indexes.iter().zip(best.iter_mut()) {
            let started = Instant::now();
            let mut matching_time = Duration::ZERO;
            let mut processed = 0_usize;
            'round: loop {
                for chunk in events.chunks(FRESH_CHUNK) {
                    let documents: Vec<(Uuid, serde_json::Value)> = chunk
                        .iter()
                        .filter_map(|event| {
                            let source = index.resolve_source(&event.record).ok()?;
                            let fields = index.matching_fields(source);
                            let decoded =
                                event::decode_for_matching(source, &event.record, fields).ok()?;
                            Some((source.id, decoded.into_event().document))
                        })
                        .collect();
                    let matching_started = Instant::now();
                    for (source_id, document) in &documents {
                        black_box(index.matching(*source_id, black_box(document)).len());
                    }
                    matching_time += matching_started.elapsed();
                    processed += documents.len();
                    drop(documents);
                    if started.elapsed() >= round_time {
                        break 'round;
                    }
                }
            }
            // Round 0 warms up.
            if round > 0 && !matching_time.is_zero() {
                *best = best.max(processed as f64 / matching_time.as_secs_f64());
            }
        }
    }
    best
}

/// Measures `with_trigger` on the largest index: median of several runs.
fn time_add_one(index: &TriggerIndex, workload: &Workload) -> Duration {
    let mut times: Vec<Duration> = (0..ADD_ONE_REPEATS)
        .map(|repeat| {
            let trigger = workload.trigger(MAX_TRIGGERS + repeat);
            let started = Instant::now();
            let updated = index.with_trigger(&trigger);
            let elapsed = started.elapsed();
            match updated {
                Ok(updated) => assert_eq!(updated.trigger_count(), index.trigger_count() + 1),
                Err(error) => panic!("with_trigger failed: {error}"),
            }
            elapsed
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

fn mean_payload_bytes(events: &[BenchEvent]) -> usize {
    let total: usize = events
        .iter()
        .map(|event| event.record.payload.as_ref().map_or(0, Vec::len))
        .sum();
    total / events.len().max(1)
}

/// Names an event mix: `1%` when the other events are near misses,
/// `0%, unknown repos` when they name repositories without triggers, and
/// `1%, shared near misses` when they miss a trigger of every size.
fn mix_label(percent: usize, misses: Misses) -> String {
    match misses {
        Misses::NearMiss => format!("{percent}%"),
        Misses::UnknownRepository => format!("{percent}%, unknown repos"),
        Misses::SharedNearMiss => format!("{percent}%, shared near misses"),
    }
}

fn print_throughput(rows: &[Row]) {
    println!("\n## Events per second on one core\n");
    println!(
        "| events | triggers | matching | matched | match only, cold documents | \
         match only, just decoded | decode + match | scan, match only |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {:.1}% | {} | {} | {} | {} |",
            row.kind.label(),
            thousands(row.triggers as f64),
            mix_label(row.match_percent, row.misses),
            row.matched_share * 100.0,
            thousands(row.match_only),
            thousands(row.match_fresh),
            thousands(row.decode_and_match),
            if row.scan > 0.0 {
                thousands(row.scan)
            } else {
                "-".to_owned()
            },
        );
    }
}

fn print_ratios(rows: &[Row]) {
    println!("\n## Time per event with 100,000 triggers over time with 100\n");
    println!(
        "| events | matching | match only, cold documents | match only, just decoded | \
         decode + match | scan, match only |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for kind in Kind::ALL {
        for (percent, misses) in MIXES {
            let find = |triggers: usize| {
                rows.iter().find(|row| {
                    row.kind == kind
                        && row.match_percent == percent
                        && row.misses == misses
                        && row.triggers == triggers
                })
            };
            let (Some(small), Some(large)) = (find(100), find(MAX_TRIGGERS)) else {
                continue;
            };
            let scan = if small.scan > 0.0 && large.scan > 0.0 {
                format!("{:.0}", small.scan / large.scan)
            } else {
                "-".to_owned()
            };
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {scan} |",
                kind.label(),
                mix_label(percent, misses),
                small.match_only / large.match_only,
                small.match_fresh / large.match_fresh,
                small.decode_and_match / large.decode_and_match,
            );
        }
    }
}

fn print_builds(builds: &[BuildRow]) {
    println!("\n## Building the index\n");
    println!(
        "| events | triggers | build time | key paths | scanned triggers | distinct field conditions |"
    );
    println!("|---|---:|---:|---|---:|---:|");
    for build in builds {
        println!(
            "| {} | {} | {:.1} ms | {} | {} | {} |",
            build.kind.label(),
            thousands(build.triggers as f64),
            build.build.as_secs_f64() * 1000.0,
            build.indexed_paths,
            build.scanned,
            thousands(build.conditions as f64),
        );
    }
}

fn print_add_one(add_one: &[(Kind, Duration)]) {
    println!("\n## Adding one trigger to 100,000 (`TriggerIndex::with_trigger`, median of {ADD_ONE_REPEATS})\n");
    println!("| events | time |");
    println!("|---|---:|");
    for (kind, time) in add_one {
        println!(
            "| {} | {:.2} ms |",
            kind.label(),
            time.as_secs_f64() * 1000.0
        );
    }
}

/// Formats a number rounded to an integer with thousands separators.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::new();
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}
