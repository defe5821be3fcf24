//! Process signals and the graceful shutdown deadline.
//!
//! The first SIGTERM or SIGINT cancels the shared [`CancellationToken`]:
//! the consumer stops reading, finishes its batch, commits offsets and
//! returns. If that takes longer than the deadline, or a second signal
//! arrives, the process exits with status 1; records not committed are
//! redelivered to another replica.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Spawns the task that turns signals into cancellation of `shutdown`.
pub fn spawn_signal_handler(shutdown: CancellationToken, deadline: Duration) {
    tokio::spawn(async move {
        let (mut terminate, mut interrupt) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot install signal handlers; stop the process with SIGKILL");
                return;
            }
        };

        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            () = shutdown.cancelled() => return,
        }
        shutdown.cancel();

        tokio::select! {
            _ = terminate.recv() => tracing::warn!("second signal; exiting now"),
            _ = interrupt.recv() => tracing::warn!("second signal; exiting now"),
            () = tokio::time::sleep(deadline) => tracing::error!(
                deadline_ms = deadline.as_millis() as u64,
                "graceful shutdown did not finish in time; exiting"
            ),
        }
        std::process::exit(1);
    });
}
