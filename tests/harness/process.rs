//! The `event-hub` binary as a child process, for tests of signals and
//! crashes that an in-process daemon cannot show.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use event_hub::config::Settings;
use secrecy::ExposeSecret;

/// Returns the environment that configures a child daemon like `settings`.
pub fn daemon_env(settings: &Settings) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "EVENT_HUB__DATABASE__URL".to_owned(),
            settings.database.url.expose_secret().to_owned(),
        ),
        (
            "EVENT_HUB__KAFKA__BOOTSTRAP_SERVERS".to_owned(),
            settings.kafka.bootstrap_servers.clone(),
        ),
        (
            "EVENT_HUB__KAFKA__GROUP_ID".to_owned(),
            settings.kafka.group_id.clone(),
        ),
        (
            "EVENT_HUB__PIPELINE__BATCH_TIMEOUT_MS".to_owned(),
            settings.pipeline.batch_timeout_ms.to_string(),
        ),
        (
            "EVENT_HUB__PIPELINE__BATCH_SIZE".to_owned(),
            settings.pipeline.batch_size.to_string(),
        ),
        (
            "EVENT_HUB__PIPELINE__TRIGGER_REFRESH_INTERVAL_MS".to_owned(),
            settings.pipeline.trigger_refresh_interval_ms.to_string(),
        ),
        (
            "EVENT_HUB__PIPELINE__MAX_RETRY_BACKOFF_MS".to_owned(),
            settings.pipeline.max_retry_backoff_ms.to_string(),
        ),
        (
            "EVENT_HUB__HTTP__LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("EVENT_HUB__LOG__FORMAT".to_owned(), "json".to_owned()),
        (
            "EVENT_HUB__LOG__FILTER".to_owned(),
            "info,event_hub=debug".to_owned(),
        ),
    ];
    let properties = [
        ("CONSUMER_PROPERTIES", &settings.kafka.consumer_properties),
        ("PRODUCER_PROPERTIES", &settings.kafka.producer_properties),
    ];
    for (section, map) in properties {
        for (name, value) in map {
            let key = name.to_uppercase().replace('.', "__");
            env.push((format!("EVENT_HUB__KAFKA__{section}__{key}"), value.clone()));
        }
    }
    if let Some(key) = &settings.auth.signing_key {
        env.push((
            "EVENT_HUB__AUTH__SIGNING_KEY".to_owned(),
            key.expose_secret().to_owned(),
        ));
    }
    env
}

/// A running `event-hub run` process whose log goes to a file.
pub struct DaemonProcess {
    child: Child,
    /// The file with the process's stderr.
    pub log_path: PathBuf,
}

impl DaemonProcess {
    /// Starts `event-hub run` with `env`, logging to `log_path`.
    pub fn spawn(env: &[(String, String)], log_path: &Path) -> Self {
        let log = std::fs::File::create(log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_event-hub"))
            .arg("run")
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("event-hub starts");
        Self {
            child,
            log_path: log_path.to_owned(),
        }
    }

    /// Returns the process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends `signal` (such as `TERM` or `KILL`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the process to exit; returns its status and
    /// how long it took, or `None` if it is still running.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
