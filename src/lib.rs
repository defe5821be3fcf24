//! event-hub relays events from Kafka topics to action requests.
//!
//! A record on an event topic is decoded according to its event source
//! ([`event`]), matched against the active triggers of that source
//! ([`matching`]), recorded as one trigger execution per matching trigger
//! ([`store`]), and published as an action request to the topic of the
//! action's flavor and subtype ([`dispatch`]). The [`consumer`] module runs
//! that pipeline over a Kafka consumer group; [`cli`] is the command line.
//! Handler workers built on [`worker`] report what became of each
//! execution, and [`status`] applies those reports and retries failures.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod daemon;
pub mod dev;
pub mod dispatch;
pub mod error;
pub mod event;
pub mod health;
pub mod kafka;
pub mod matching;
pub mod metrics;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod worker;

pub use error::{Error, Result};
