//! `worker`: a ready-made handler worker for one `(flavor, subtype)`.
//!
//! Without `--exec` it logs each verified request and reports success,
//! which is enough to watch executions complete in `dev` mode. With
//! `--exec` it runs a shell command per request, with the request JSON on
//! standard input. Exit status 0 is success. Any other status is a
//! retryable failure whose error is the end of the command's standard
//! error.
//!
//! Concurrency: up to `worker.concurrency` commands run at once, one per
//! request, each in its own child process.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::dispatch::ActionRequest;
use crate::worker::{Handler, HandlerError, Worker};

/// Bytes of the command's standard error kept as the error of a failure.
const STDERR_TAIL_BYTES: usize = 2000;

/// Arguments of `worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Handler family of the actions to handle (the action's --flavor).
    #[arg(long, value_name = "FLAVOR")]
    pub flavor: String,
    /// Handler variant of the actions to handle (the action's --subtype).
    #[arg(long, value_name = "SUBTYPE")]
    pub subtype: String,
    /// Shell command (run with sh -c) for each verified request. It reads
    /// the request JSON on standard input and gets EVENT_HUB_EXECUTION_ID
    /// and EVENT_HUB_ATTEMPT in its environment. Without it, the worker
    /// logs each request and reports success.
    #[arg(long, value_name = "COMMAND")]
    pub exec: Option<String>,
    /// Seconds the command may run before it is killed and the attempt
    /// fails as retryable.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub exec_timeout_secs: u64,
}

/// Runs the worker until SIGTERM or SIGINT.
pub async fn run(settings: Settings, args: WorkerArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // The worker's own deadline, plus time to commit and leave the group.
    let deadline = settings.pipeline.shutdown_timeout() + Duration::from_secs(5);
    crate::shutdown::spawn_signal_handler(shutdown.clone(), deadline);

    let handler = BuiltinHandler {
        command: args.exec,
        timeout: Duration::from_secs(args.exec_timeout_secs.max(1)),
    };
    let worker = Worker::builder(settings)
        .handle(args.flavor, args.subtype, handler)
        .build()?;
    worker.run(shutdown).await?;
    Ok(())
}

/// Logs the request, or runs the `--exec` command with it.
struct BuiltinHandler {
    command: Option<String>,
    timeout: Duration,
}

#[async_trait::async_trait]
impl Handler for BuiltinHandler {
    async fn handle(&self, request: &ActionRequest) -> Result<(), HandlerError> {
        match &self.command {
            None => {
                tracing::info!(
                    execution_id = %request.execution_id,
                    attempt = request.attempt,
                    trigger = %request.trigger.name,
                    action = %request.action.name,
                    event_id = %request.event.id,
                    event_type = %request.event.event_type,
                    "request verified"
                );
                Ok(())
            }
            Some(command) => run_command(command, request, self.timeout).await,
        }
    }
}

/// Runs `command` with the request on standard input.
async fn run_command(
    command: &str,
    request: &ActionRequest,
    timeout: Duration,
) -> Result<(), HandlerError> {
    let input = serde_json::to_vec(request)
        .map_err(|error| HandlerError::permanent(format!("cannot encode the request: {error}")))?;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("EVENT_HUB_EXECUTION_ID", request.execution_id.to_string())
        .env("EVENT_HUB_ATTEMPT", request.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| HandlerError::retryable(format!("cannot start sh: {error}")))?;

    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input closes the pipe early;
        // its exit status decides the outcome.
        let _ignored = stdin.write_all(&input).await;
    }
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => {
            return Err(HandlerError::retryable(format!(
                "waiting for the command failed: {error}"
            )))
        }
        Err(_elapsed) => {
            return Err(HandlerError::retryable(format!(
                "the command did not finish within {} s and was killed",
                timeout.as_secs()
            )))
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let status = match output.status.code() {
        Some(code) => format!("exit status {code}"),
        None => "a signal".to_owned(),
    };
    let tail = stderr_tail(&output.stderr, STDERR_TAIL_BYTES);
    Err(HandlerError::retryable(if tail.is_empty() {
        format!("the command ended with {status}")
    } else {
        format!("the command ended with {status}: {tail}")
    }))
}

/// Returns the last `max` bytes of `stderr` as trimmed text, cut at a
/// character boundary.
fn stderr_tail(stderr: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_end() {
        assert_eq!(stderr_tail(b"  one\ntwo  \n", 100), "one\ntwo");
        assert_eq!(stderr_tail(b"abcdef", 3), "def");
        assert_eq!(stderr_tail("xé".as_bytes(), 1), "");
    }
}
