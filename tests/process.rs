//! Tests of the `event-hub` binary as a process: graceful shutdown on
//! SIGTERM against the mock cluster, and a SIGKILL mid-stream against a
//! separate tansu broker.

mod common;
mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use event_hub::store::entity::trigger_execution::ExecutionStatus;
use harness::process::{daemon_env, DaemonProcess};
use harness::tansu::Tansu;
use harness::workload::{
    assert_committed_prefix_dispatched, count, create_json_pipeline, produce_pushes,
};
use harness::{headers_of, read_topic, test_settings, unique, wait_until, Hub};

const ACTION_TOPIC: &str = "event-hub.actions.builtin.pipeline_run";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_commits_and_exits_zero() {
    let topic = unique("json-events");
    let hub = Hub::new(&[&topic]).await;
    create_json_pipeline(&hub.db, &topic).await;
    const EVENTS: usize = 3_000;
    produce_pushes(&hub.bootstrap_servers(), &topic, EVENTS).await;

    let env = daemon_env(&hub.settings);
    let mut daemon = DaemonProcess::spawn(&env, &hub.directory().join("first.log"));
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(&hub.db, None).await > 300
        })
        .await,
        "processing started: {}",
        daemon.log()
    );

    daemon.signal("TERM");
    let (status, took) = daemon
        .wait_for_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit within 10 s after SIGTERM: {}", daemon.log()));
    assert!(status.success(), "exit status {status}: {}", daemon.log());
    assert!(took < Duration::from_secs(10));
    assert!(
        daemon.log().contains("event-hub stopped"),
        "{}",
        daemon.log()
    );
    assert_eq!(
        count(&hub.db, Some(ExecutionStatus::Pending)).await,
        0,
        "in-flight work finished"
    );

    // Every record below the committed offset of its partition has its
    // execution dispatched.
    let committed_total = assert_committed_prefix_dispatched(
        &hub.bootstrap_servers(),
        &hub.settings.kafka.group_id,
        &topic,
        6,
        &hub.db,
    )
    .await;
    assert!(committed_total > 0, "offsets were committed");

    // A second run picks up where the first stopped.
    let mut daemon = DaemonProcess::spawn(&env, &hub.directory().join("second.log"));
    assert!(
        wait_until(Duration::from_secs(60), || async {
            count(&hub.db, None).await == EVENTS
        })
        .await,
        "all events processed after restart: {}",
        daemon.log()
    );
    daemon.signal("TERM");
    let (status, _) = daemon
        .wait_for_exit(Duration::from_secs(10))
        .expect("second exit");
    assert!(status.success());
    assert_eq!(
        count(&hub.db, Some(ExecutionStatus::Dispatched)).await,
        EVENTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_sigkill_mid_stream_loses_and_duplicates_nothing() {
    let Some(tansu) = Tansu::start() else {
        return;
    };
    let topic = unique("json-events");
    tansu.create_topics(&[&topic], 6).await;
    tansu
        .create_topics(&["event-hub.dlq", ACTION_TOPIC], 3)
        .await;

    // PostgreSQL, the production database, when it is available.
    let database = match common::databases::fresh_server_database(
        "postgres",
        common::databases::POSTGRES_URL_ENV,
        &[
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://root@127.0.0.1:5432/test",
        ],
    )
    .await
    {
        Some(database) => database,
        None => common::databases::fresh_sqlite().await,
    };
    create_json_pipeline(&database.db, &topic).await;

    let pair = event_hub::auth::generate_key_pair().unwrap();
    let settings = test_settings(&tansu.bootstrap_servers, &database.url, &pair.private_pem);
    let env = daemon_env(&settings);
    let directory = tempfile::tempdir().unwrap();

    const EVENTS: usize = 2_000;
    produce_pushes(&tansu.bootstrap_servers, &topic, EVENTS).await;

    let mut daemon = DaemonProcess::spawn(&env, &directory.path().join("first.log"));
    assert!(
        wait_until(Duration::from_secs(60), || async {
            count(&database.db, None).await > 200
        })
        .await,
        "processing started: {}",
        daemon.log()
    );
    daemon.signal("KILL");
    daemon
        .wait_for_exit(Duration::from_secs(5))
        .expect("killed");
    let after_kill = count(&database.db, None).await;

    let mut daemon = DaemonProcess::spawn(&env, &directory.path().join("second.log"));
    assert!(
        wait_until(Duration::from_secs(90), || async {
            count(&database.db, Some(ExecutionStatus::Dispatched)).await == EVENTS
        })
        .await,
        "all events dispatched after the restart: {}",
        daemon.log()
    );
    daemon.signal("TERM");
    let (status, _) = daemon
        .wait_for_exit(Duration::from_secs(10))
        .expect("exit after SIGTERM");
    assert!(status.success(), "{}", daemon.log());

    assert!(after_kill < EVENTS, "the kill happened mid-stream");
    assert_eq!(
        count(&database.db, None).await,
        EVENTS,
        "one execution per event"
    );
    let messages = read_topic(
        &tansu.bootstrap_servers,
        ACTION_TOPIC,
        EVENTS,
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    let published: BTreeSet<String> = messages
        .iter()
        .map(|message| headers_of(message)["ce_id"].clone())
        .collect();
    assert_eq!(published.len(), EVENTS, "every execution published");
    eprintln!(
        "{} backend: {after_kill} executions before SIGKILL, {} action requests for {EVENTS} executions",
        database.backend,
        messages.len()
    );
    database.drop_database().await;
}

/// Runs `event-hub` with `arguments` in `directory`, the way a user in a
/// second terminal would, and returns its stdout; panics with its stderr on
/// failure.
fn cli(directory: &std::path::Path, bootstrap_servers: &str, arguments: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_event-hub"))
        .args(arguments)
        .current_dir(directory)
        .env("EVENT_HUB__KAFKA__BOOTSTRAP_SERVERS", bootstrap_servers)
        .env_remove("EVENT_HUB__DATABASE__URL")
        .output()
        .expect("event-hub runs");
    assert!(
        output.status.success(),
        "event-hub {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_walkthrough_from_the_readme() {
    use std::io::BufRead as _;

    let directory = tempfile::tempdir().unwrap();
    let mut dev = std::process::Command::new(env!("CARGO_BIN_EXE_event-hub"))
        .arg("dev")
        .current_dir(directory.path())
        .env("EVENT_HUB__HTTP__LISTEN", "127.0.0.1:0")
        .env_remove("EVENT_HUB__DATABASE__URL")
        .env_remove("EVENT_HUB__KAFKA__BOOTSTRAP_SERVERS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // The banner names the broker. Keep reading stdout afterwards, as a
    // terminal would.
    let stdout = std::io::BufReader::new(dev.stdout.take().unwrap());
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("Kafka bootstrap servers") {
                let _ = sender.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let bootstrap_servers = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("dev prints its bootstrap servers");
    let run = |arguments: &[&str]| cli(directory.path(), &bootstrap_servers, arguments);

    run(&[
        "event-source",
        "create",
        "gh",
        "--flavor",
        "github",
        "--subtype",
        "webhook",
        "--topic",
        "github-events",
    ]);
    run(&[
        "action",
        "create",
        "run-pipeline",
        "--flavor",
        "builtin",
        "--subtype",
        "pipeline_run",
        "--configuration",
        r#"{"template_id": "t-1"}"#,
        "--service-account",
        "sa-ci",
        "--auth-window-minutes",
        "60",
    ]);
    run(&[
        "trigger",
        "create",
        "on-push",
        "--event-source",
        "gh",
        "--action",
        "run-pipeline",
        "--filter",
        r#"{"repo": "Codertocat/Hello-World", "branch": "master", "event_type": "push"}"#,
    ]);
    let fixture = harness::fixtures_dir().join("push/with-new-branch.payload.json");
    run(&[
        "publish",
        "--topic",
        "github-events",
        "--header",
        "x-github-event=push",
        "--header",
        "x-github-delivery=walkthrough-1",
        "--file",
        fixture.to_str().unwrap(),
    ]);

    let dispatched = wait_until(Duration::from_secs(30), || async {
        let listed: serde_json::Value =
            serde_json::from_str(&run(&["execution", "list", "--output", "json"])).unwrap();
        listed
            .as_array()
            .is_some_and(|rows| rows.len() == 1 && rows[0]["status"] == "dispatched")
    })
    .await;
    assert!(dispatched, "the push became a dispatched execution");

    let consumed = run(&[
        "consume",
        "--topic",
        ACTION_TOPIC,
        "--max-records",
        "1",
        "--idle-timeout",
        "10",
    ]);
    let record: serde_json::Value = serde_json::from_str(consumed.lines().next().unwrap()).unwrap();
    let request: event_hub::dispatch::ActionRequest =
        serde_json::from_value(record["value"].clone()).unwrap();
    let mut verifier = event_hub::auth::TokenVerifier::new(Some("event-hub".into()));
    let public_pem =
        std::fs::read_to_string(directory.path().join(".event-hub/signing-key.pub.pem")).unwrap();
    verifier.add_public_pem(&public_pem).unwrap();
    let claims = verifier
        .verify(&request.auth.token, "builtin.pipeline_run")
        .unwrap();
    assert_eq!(claims.jti, request.execution_id.to_string());
    assert_eq!(request.event.id, "walkthrough-1");

    let status = std::process::Command::new("kill")
        .args(["-INT", &dev.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = dev.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "dev exits within 10 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "dev exit status {exit}");
}
