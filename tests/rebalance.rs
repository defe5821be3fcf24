//! Replicas of the daemon that stop while their consumer group rebalances
//! with the default cooperative-sticky assignment.
//!
//! librdkafka 2.12.1 can abort the whole process when a cooperative
//! consumer is closed during a rebalance, so an abort here kills the test
//! binary. The test starts and stops in-process daemons in one group in a
//! loop and then checks that every event was processed exactly once.

mod harness;

use std::time::{Duration, Instant};

use event_hub::store::entity::trigger_execution::ExecutionStatus;
use harness::workload::{count, create_json_pipeline, produce_pushes};
use harness::{unique, wait_until, Hub};
use rand::Rng as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Events produced before the replicas start.
const EVENTS: usize = 600;
/// Time spent starting and stopping replicas.
const CHURN: Duration = Duration::from_secs(25);
/// Replicas running at once, at most.
const MAX_REPLICAS: usize = 3;

type Replica = (CancellationToken, JoinHandle<event_hub::Result<()>>);

fn start_replica(hub: &Hub) -> Replica {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(event_hub::daemon::run(
        hub.settings.clone(),
        shutdown.clone(),
    ));
    (shutdown, handle)
}

async fn stop_replica((shutdown, handle): Replica) {
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), handle)
        .await
        .expect("replica stops within 15 s")
        .expect("replica task does not panic");
    result.expect("replica stops without an error");
}

#[test]
fn consumer_default_is_cooperative_sticky() {
    let settings = harness::test_settings(
        "127.0.0.1:9092",
        "sqlite::memory:",
        &secrecy::SecretString::from("unused"),
    );
    let config = event_hub::kafka::consumer_config(&settings.kafka);
    assert_eq!(
        config.get("partition.assignment.strategy"),
        Some("cooperative-sticky")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stopped_during_rebalances() {
    let topic = unique("json-events");
    let hub = Hub::new(&[&topic]).await;
    create_json_pipeline(&hub.db, &topic).await;
    produce_pushes(&hub.bootstrap_servers(), &topic, EVENTS).await;

    let mut replicas: Vec<Replica> = vec![start_replica(&hub)];
    let mut stops = 0;
    let started = Instant::now();
    while started.elapsed() < CHURN {
        // A replica joins, which starts a rebalance, and another one stops at a
        // random point of it. Half of the stopped replicas are the newest.
        let (join_delay, stop_delay, newest) = {
            let mut random = rand::thread_rng();
            (
                random.gen_range(0..300),
                random.gen_range(0..300),
                random.gen_bool(0.5),
            )
        };
        tokio::time::sleep(Duration::from_millis(join_delay)).await;
        replicas.push(start_replica(&hub));
        tokio::time::sleep(Duration::from_millis(stop_delay)).await;
        while replicas.len() > MAX_REPLICAS - 1 {
            let index = if newest {
                replicas.len() - 1
            } else {
                rand::thread_rng().gen_range(0..replicas.len())
            };
            stop_replica(replicas.swap_remove(index)).await;
            stops += 1;
        }
    }
    eprintln!("{stops} replicas stopped during rebalances");
    assert!(stops >= 10, "only {stops} replicas stopped in {CHURN:?}");

    // The remaining replicas finish the topic.
    let all_dispatched = wait_until(Duration::from_secs(30), || async {
        count(&hub.db, Some(ExecutionStatus::Dispatched)).await == EVENTS
    })
    .await;
    for replica in replicas {
        stop_replica(replica).await;
    }
    assert!(
        all_dispatched,
        "{} of {EVENTS} events dispatched",
        count(&hub.db, Some(ExecutionStatus::Dispatched)).await
    );
    assert_eq!(
        count(&hub.db, None).await,
        EVENTS,
        "one execution per event"
    );
}
