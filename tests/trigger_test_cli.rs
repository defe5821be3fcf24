//! Tests of `event-hub trigger test` as a process against a fresh SQLite
//! database: the table and JSON reports, decoding errors, signatures and
//! standard input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const PUSH_FIXTURE: &str = "tests/fixtures/github-webhooks/push/with-new-branch.payload.json";

/// A migrated SQLite database in a temporary directory.
struct Hub {
    directory: tempfile::TempDir,
}

impl Hub {
    fn new() -> Self {
        let hub = Self {
            directory: tempfile::tempdir().expect("temporary directory"),
        };
        hub.run_ok(&["migrate"]);
        hub
    }

    fn database_url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.directory.path().join("hub.db").display()
        )
    }

    /// Runs `event-hub` with `arguments` and `stdin` as standard input.
    fn run_with_input(&self, arguments: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_event-hub"))
            .args(arguments)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("EVENT_HUB__DATABASE__URL", self.database_url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("event-hub starts");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin).expect("write standard input");
        }
        child.wait_with_output().expect("event-hub runs")
    }

    fn run(&self, arguments: &[&str]) -> Output {
        self.run_with_input(arguments, b"")
    }

    /// Runs `event-hub` and returns its standard output, failing the test
    /// with its standard error when it fails.
    fn run_ok(&self, arguments: &[&str]) -> String {
        let output = self.run(arguments);
        assert!(
            output.status.success(),
            "event-hub {arguments:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `event-hub`, expects exit status 1, and returns standard error.
    fn run_failing(&self, arguments: &[&str]) -> String {
        let output = self.run(arguments);
        assert_eq!(
            output.status.code(),
            Some(1),
            "event-hub {arguments:?}: stdout {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }
}

/// Creates a GitHub source `gh` (with `secret` when given), an action and
/// three triggers: `on-push` and `on-tag` active, `paused` inactive.
fn github_setup(hub: &Hub, secret: Option<&str>) {
    let mut source = vec![
        "event-source",
        "create",
        "gh",
        "--flavor",
        "github",
        "--topic",
        "github-events",
    ];
    if let Some(secret) = secret {
        source.extend(["--secret", secret]);
    }
    hub.run_ok(&source);
    hub.run_ok(&[
        "action",
        "create",
        "run-pipeline",
        "--flavor",
        "builtin",
        "--subtype",
        "pipeline_run",
        "--service-account",
        "sa-ci",
        "--auth-window-minutes",
        "60",
    ]);
    let triggers = [
        (
            "on-push",
            r#"{"repo": "Codertocat/Hello-World", "branch": "master", "event_type": "push"}"#,
        ),
        ("on-tag", r#"{"ref": [{"prefix": "refs/tags/"}]}"#),
        ("paused", r#"{"event_type": "push"}"#),
    ];
    for (name, filter) in triggers {
        hub.run_ok(&[
            "trigger",
            "create",
            name,
            "--event-source",
            "gh",
            "--action",
            "run-pipeline",
            "--filter",
            filter,
        ]);
    }
    hub.run_ok(&["trigger", "deactivate", "paused"]);
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn fixture_bytes() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PUSH_FIXTURE);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

#[test]
fn trigger_test_prints_table() {
    let hub = Hub::new();
    github_setup(&hub, None);

    let stdout = hub.run_ok(&[
        "trigger",
        "test",
        "--event-source",
        "gh",
        "--file",
        PUSH_FIXTURE,
        "--header",
        "x-github-event=push",
        "--header",
        "x-github-delivery=delivery-1",
    ]);

    let expected = "\
event source: gh (github)
event: delivery-1 (type push)

TRIGGER  ACTIVE  RESULT    FIRST FAILED CONDITION
on-push  yes     match     -
on-tag   yes     no match  at $.ref: expected [{\"prefix\":\"refs/tags/\"}], found \"refs/heads/master\"
paused   no      match     -

1 of 2 active triggers match
";
    assert_eq!(stdout, expected);
}

#[test]
fn trigger_test_prints_json() {
    let hub = Hub::new();
    github_setup(&hub, None);

    let stdout = hub.run_ok(&[
        "trigger",
        "test",
        "--event-source",
        "gh",
        "--file",
        PUSH_FIXTURE,
        "--header",
        "x-github-event=push",
        "--output",
        "json",
    ]);
    let report: Value = serde_json::from_str(&stdout).expect("JSON output");

    assert_eq!(report["event_source"]["name"], "gh");
    assert_eq!(report["event_source"]["flavor"], "github");
    assert_eq!(report["event_source"]["active"], true);
    assert_eq!(report["signature_verified"], false);
    assert_eq!(report["event"]["type"], "push");
    assert_eq!(report["event"]["document"]["branch"], "master");
    assert_eq!(
        report["event"]["document"]["repo"],
        "Codertocat/Hello-World"
    );
    assert_eq!(report["matching_active_triggers"], 1);

    let triggers = report["triggers"].as_array().expect("triggers array");
    let names: Vec<&str> = triggers
        .iter()
        .map(|trigger| trigger["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["on-push", "on-tag", "paused"]);
    assert_eq!(triggers[0]["matches"], true);
    assert!(triggers[0].get("mismatch").is_none());
    assert_eq!(triggers[1]["matches"], false);
    assert_eq!(
        triggers[1]["mismatch"],
        json!({
            "path": "$.ref",
            "kind": "value",
            "expected": [{"prefix": "refs/tags/"}],
            "actual": "refs/heads/master"
        })
    );
    assert_eq!(triggers[2]["active"], false);
}

#[test]
fn trigger_test_explains_or_and_missing_fields() {
    let hub = Hub::new();
    hub.run_ok(&[
        "event-source",
        "create",
        "app",
        "--flavor",
        "json",
        "--topic",
        "app-events",
    ]);
    hub.run_ok(&[
        "action",
        "create",
        "notify",
        "--flavor",
        "builtin",
        "--subtype",
        "notify",
        "--service-account",
        "sa-ci",
        "--auth-window-minutes",
        "5",
    ]);
    hub.run_ok(&[
        "trigger",
        "create",
        "deploys",
        "--event-source",
        "app",
        "--action",
        "notify",
        "--filter",
        r#"{"type": "deploy", "$or": [{"env": "prod"}, {"replicas": [{"numeric": [">", 5]}]}]}"#,
    ]);

    // The event comes from standard input.
    let output = hub.run_with_input(
        &[
            "trigger",
            "test",
            "--event-source",
            "app",
            "--file",
            "-",
            "--output",
            "json",
        ],
        br#"{"type": "deploy", "env": "dev", "replicas": 3}"#,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    let mismatch = &report["triggers"][0]["mismatch"];
    assert_eq!(mismatch["path"], "$");
    assert_eq!(mismatch["kind"], "no_alternative");
    assert_eq!(mismatch["causes"][0]["path"], "$.env");
    assert_eq!(mismatch["causes"][0]["actual"], "dev");
    assert_eq!(mismatch["causes"][1]["path"], "$.replicas");
    assert_eq!(mismatch["causes"][1]["actual"], 3);
    assert_eq!(report["matching_active_triggers"], 0);

    let event = hub.path("missing-type.json");
    std::fs::write(&event, br#"{"env": "prod"}"#).expect("write event file");
    let stdout = hub.run_ok(&[
        "trigger",
        "test",
        "--event-source",
        "app",
        "--file",
        event.to_str().expect("UTF-8 path"),
    ]);
    assert!(
        stdout.contains(
            r#"deploys  yes     no match  at $.type: expected ["deploy"], found no such field"#
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("0 of 1 active triggers match\n"),
        "{stdout}"
    );
}

#[test]
fn trigger_test_reports_decoding_errors() {
    let hub = Hub::new();
    github_setup(&hub, None);

    let stderr = hub.run_failing(&[
        "trigger",
        "test",
        "--event-source",
        "gh",
        "--file",
        PUSH_FIXTURE,
    ]);
    assert!(
        stderr.contains(
            "as an event of github event source gh: missing or invalid header \"x-github-event\"; \
             pass it with --header x-github-event=VALUE"
        ),
        "{stderr}"
    );

    let stderr = hub.run_failing(&[
        "trigger",
        "test",
        "--event-source",
        "no-such-source",
        "--file",
        PUSH_FIXTURE,
    ]);
    assert!(stderr.contains("no-such-source"), "{stderr}");

    let stderr = hub.run_failing(&[
        "trigger",
        "test",
        "--event-source",
        "gh",
        "--file",
        "does-not-exist.json",
    ]);
    assert!(
        stderr.contains("cannot read event file does-not-exist.json"),
        "{stderr}"
    );

    let output = hub.run(&[
        "trigger",
        "test",
        "--event-source",
        "gh",
        "--file",
        PUSH_FIXTURE,
        "--header",
        "x-github-event",
    ]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expected NAME=VALUE"), "{stderr}");
}

#[test]
fn trigger_test_verifies_signature_only_when_given() {
    let hub = Hub::new();
    github_setup(&hub, Some("topsecret"));

    // Without a signature header the event is decoded unverified.
    let stdout = hub.run_ok(&[
        "trigger",
        "test",
        "--event-source",
        "gh",
        "--file",
        PUSH_FIXTURE,
        "--header",
        "x-github-event=push",
    ]);
    assert!(
        stdout.contains("signature: not verified, because no x-hub-signature-256 header was given"),
        "{stdout}"
    );

    let signature = sign("topsecret", &fixture_bytes());
    let good = format!("x-hub-signature-256={signature}");
    let stdout = hub.run_ok(&[
        "trigger",
        "test",
        "--event-source",
        "gh",
        "--file",
        PUSH_FIXTURE,
        "--header",
        "x-github-event=push",
        "--header",
        &good,
        "--output",
        "json",
    ]);
    let report: Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(report["signature_verified"], true);
    assert_eq!(report["matching_active_triggers"], 1);

    let wrong = format!(
        "x-hub-signature-256={}",
        sign("other secret", &fixture_bytes())
    );
    let stderr = hub.run_failing(&[
        "trigger",
        "test",
        "--event-source",
        "gh",
        "--file",
        PUSH_FIXTURE,
        "--header",
        "x-github-event=push",
        "--header",
        &wrong,
    ]);
    assert!(
        stderr.contains("signature does not match the record value"),
        "{stderr}"
    );
}
