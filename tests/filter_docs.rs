//! Checks every example of `docs/filters.md`, so that the guide and the
//! pattern engine cannot drift apart.
//!
//! The guide marks its examples with the info string of fenced code blocks:
//!
//! - a `json filter` block is a pattern. The `json match` and `json no-match`
//!   blocks after it, up to the next `json filter`, are documents that it
//!   must and must not match. Each filter needs at least one of each.
//! - a `json invalid` block is a pattern that must be rejected, and the
//!   `text error` block right after it is the exact error message.
//! - a `text record <flavor>` block is a Kafka record: `name: value` header
//!   lines, a blank line and the record value, or only the value when the
//!   block has no blank line. The `json document` block right after it is
//!   the document that the decoder of that flavor must produce.
//!
//! Blocks with other info strings (`json`, `sh`, ...) are not checked, and an
//! unknown `json` or `text` tag fails the test so that a typo cannot hide an
//! example.

use std::str::FromStr;

use event_hub::event::{self, EventSource, Flavor, InboundRecord};
use event_hub::matching::pattern::{MAX_DEPTH, MAX_WILDCARDS};
use event_hub::matching::Pattern;
use serde_json::Value;
use uuid::Uuid;

const GUIDE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/filters.md");

/// A fenced code block of the guide.
struct Block {
    /// Info string after the opening fence, such as `json filter`.
    info: String,
    body: String,
    /// 1-based line number of the opening fence.
    line: usize,
}

/// A `json filter` block with the documents after it.
struct FilterExample {
    line: usize,
    filter: Value,
    matches: Vec<(usize, Value)>,
    no_matches: Vec<(usize, Value)>,
}

/// A `json invalid` block with its `text error` block.
struct InvalidExample {
    line: usize,
    filter: Value,
    message: String,
}

/// A `text record <flavor>` block with its `json document` block.
struct RecordExample {
    line: usize,
    flavor: Flavor,
    record: InboundRecord,
    document: Value,
}

/// The checked examples of the guide.
#[derive(Default)]
struct Examples {
    filters: Vec<FilterExample>,
    invalid: Vec<InvalidExample>,
    records: Vec<RecordExample>,
}

fn read_guide() -> String {
    std::fs::read_to_string(GUIDE_PATH)
        .unwrap_or_else(|error| panic!("cannot read {GUIDE_PATH}: {error}"))
}

/// Splits Markdown into its fenced code blocks. Fences must start at the
/// beginning of a line, because an indented fence would be read differently
/// by Markdown renderers inside lists.
fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let is_fence = line.starts_with("```");
        assert!(
            is_fence || !line.trim_start().starts_with("```"),
            "{GUIDE_PATH}:{number}: indented fence; start fences at column 0"
        );
        match (&mut open, is_fence) {
            (None, true) => {
                open = Some(Block {
                    info: line.trim_start_matches('`').trim().to_owned(),
                    body: String::new(),
                    line: number,
                });
            }
            (Some(_), true) => blocks.extend(open.take()),
            (Some(block), false) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            (None, false) => {}
        }
    }
    assert!(
        open.is_none(),
        "{GUIDE_PATH}: a fenced block is never closed"
    );
    blocks
}

fn parse_json(block: &Block) -> Value {
    serde_json::from_str(&block.body).unwrap_or_else(|error| {
        panic!(
            "{GUIDE_PATH}:{}: `{}` block is not valid JSON: {error}",
            block.line, block.info
        )
    })
}

/// Parses a `text record` body into a record on topic `events`.
fn parse_record(block: &Block) -> InboundRecord {
    let body = block.body.trim_end_matches('\n');
    let (header_text, value) = match body.split_once("\n\n") {
        Some((headers, value)) => (headers, value),
        None => ("", body),
    };
    let headers = header_text
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap_or_else(|| {
                panic!(
                    "{GUIDE_PATH}:{}: header line {line:?} is not `name: value`",
                    block.line
                )
            });
            (
                name.trim().to_owned(),
                Some(value.trim().as_bytes().to_vec()),
            )
        })
        .collect();
    InboundRecord {
        topic: "events".to_owned(),
        payload: Some(value.as_bytes().to_vec()),
        headers,
        ..InboundRecord::default()
    }
}

/// Reads the checked examples, failing on a block out of place.
fn parse_examples(blocks: &[Block]) -> Examples {
    let mut examples = Examples::default();
    let mut previous: Option<&Block> = None;
    for block in blocks {
        let place = format!("{GUIDE_PATH}:{}", block.line);
        let tags: Vec<&str> = block.info.split_whitespace().collect();
        let previous_info = previous.map(|block| block.info.as_str());
        match tags.as_slice() {
            ["json", "filter"] => examples.filters.push(FilterExample {
                line: block.line,
                filter: parse_json(block),
                matches: Vec::new(),
                no_matches: Vec::new(),
            }),
            ["json", kind @ ("match" | "no-match")] => {
                let example = examples
                    .filters
                    .last_mut()
                    .unwrap_or_else(|| panic!("{place}: `json {kind}` before any `json filter`"));
                let document = (block.line, parse_json(block));
                if *kind == "match" {
                    example.matches.push(document);
                } else {
                    example.no_matches.push(document);
                }
            }
            ["json", "invalid"] => examples.invalid.push(InvalidExample {
                line: block.line,
                filter: parse_json(block),
                message: String::new(),
            }),
            ["text", "error"] => {
                assert_eq!(
                    previous_info,
                    Some("json invalid"),
                    "{place}: `text error` must follow a `json invalid` block"
                );
                let example = examples.invalid.last_mut().expect("follows json invalid");
                example.message = block.body.trim().to_owned();
            }
            ["text", "record", flavor] => {
                let flavor =
                    Flavor::from_str(flavor).unwrap_or_else(|error| panic!("{place}: {error}"));
                examples.records.push(RecordExample {
                    line: block.line,
                    flavor,
                    record: parse_record(block),
                    document: Value::Null,
                });
            }
            ["json", "document"] => {
                assert!(
                    previous_info.is_some_and(|info| info.starts_with("text record")),
                    "{place}: `json document` must follow a `text record` block"
                );
                let example = examples.records.last_mut().expect("follows text record");
                example.document = parse_json(block);
            }
            ["json" | "text", tag, ..] => {
                panic!("{place}: unknown example tag {tag:?} in `{}`", block.info)
            }
            _ => {}
        }
        previous = Some(block);
    }

    for example in &examples.invalid {
        assert!(
            !example.message.is_empty(),
            "{GUIDE_PATH}:{}: `json invalid` block has no `text error` block after it",
            example.line
        );
    }
    for example in &examples.records {
        assert!(
            !example.document.is_null(),
            "{GUIDE_PATH}:{}: `text record` block has no `json document` block after it",
            example.line
        );
    }
    examples
}

fn guide_examples() -> Examples {
    parse_examples(&fenced_blocks(&read_guide()))
}

/// Builds an active event source of `flavor` without a secret.
fn source_of(flavor: Flavor) -> EventSource {
    EventSource {
        id: Uuid::nil(),
        name: flavor.as_str().to_owned(),
        flavor,
        subtype: flavor.subtypes()[0].to_owned(),
        topics: vec!["events".to_owned()],
        secret: None,
        is_active: true,
    }
}

#[test]
fn filter_examples_match_as_documented() {
    let examples = guide_examples();
    let mut failures = Vec::new();
    for example in &examples.filters {
        let place = format!("{GUIDE_PATH}:{}", example.line);
        let pattern = match Pattern::compile(&example.filter) {
            Ok(pattern) => pattern,
            Err(error) => {
                failures.push(format!(
                    "{place}: filter {} is invalid: {error}",
                    example.filter
                ));
                continue;
            }
        };
        if example.matches.is_empty() || example.no_matches.is_empty() {
            failures.push(format!(
                "{place}: filter needs at least one `json match` and one `json no-match` block"
            ));
        }
        for (line, document) in &example.matches {
            if !pattern.matches(document) {
                failures.push(format!(
                    "{GUIDE_PATH}:{line}: filter of line {} does not match {document}",
                    example.line
                ));
            }
        }
        for (line, document) in &example.no_matches {
            if pattern.matches(document) {
                failures.push(format!(
                    "{GUIDE_PATH}:{line}: filter of line {} matches {document}",
                    example.line
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_examples_fail_with_documented_message() {
    let examples = guide_examples();
    let mut failures = Vec::new();
    for example in &examples.invalid {
        match Pattern::compile(&example.filter) {
            Ok(_) => failures.push(format!(
                "{GUIDE_PATH}:{}: filter {} compiles",
                example.line, example.filter
            )),
            Err(error) if error.to_string() != example.message => failures.push(format!(
                "{GUIDE_PATH}:{}: filter {} fails with\n  {error}\nbut the guide says\n  {}",
                example.line, example.filter, example.message
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn record_examples_decode_to_documented_document() {
    let examples = guide_examples();
    let mut failures = Vec::new();
    for example in &examples.records {
        let source = source_of(example.flavor);
        match event::decode(&source, &example.record) {
            Ok(decoded) if decoded.document != example.document => failures.push(format!(
                "{GUIDE_PATH}:{}: record decodes to\n  {}\nbut the guide says\n  {}",
                example.line, decoded.document, example.document
            )),
            Ok(_) => {}
            Err(error) => failures.push(format!(
                "{GUIDE_PATH}:{}: record does not decode: {error}",
                example.line
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn guide_covers_every_flavor_and_operator() {
    let examples = guide_examples();
    for flavor in Flavor::ALL {
        assert!(
            examples
                .records
                .iter()
                .any(|example| example.flavor == flavor),
            "no `text record {flavor}` example"
        );
    }

    let filters: Vec<String> = examples
        .filters
        .iter()
        .map(|example| example.filter.to_string())
        .collect();
    let operators = [
        "prefix",
        "suffix",
        "equals-ignore-case",
        "anything-but",
        "numeric",
        "exists",
        "wildcard",
        "cidr",
        "$or",
    ];
    for operator in operators {
        let key = format!("{{\"{operator}\":");
        assert!(
            filters.iter().any(|filter| filter.contains(&key)),
            "no `json filter` example uses {operator}"
        );
    }
    // A broken parser would find no examples and pass the other tests.
    assert!(
        examples.filters.len() >= 40,
        "{} filter examples",
        examples.filters.len()
    );
    assert!(
        examples.invalid.len() >= 10,
        "{} invalid examples",
        examples.invalid.len()
    );
}

#[test]
fn guide_states_current_limits() {
    let guide = read_guide();
    let depth = format!("Patterns nest at most {MAX_DEPTH} objects deep");
    assert!(guide.contains(&depth), "guide lacks {depth:?}");
    let wildcards = format!("a wildcard contains at most {MAX_WILDCARDS} `*`");
    assert!(guide.contains(&wildcards), "guide lacks {wildcards:?}");
}
