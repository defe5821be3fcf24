//! A `tansu` broker as a separate process, for end-to-end tests against a
//! Kafka-protocol broker outside the test process.
//!
//! The binary is taken from `EVENT_HUB_TEST_TANSU`, else from `PATH`, else
//! from `~/.cargo/bin`. When it is missing the tests that need it are
//! skipped with a note, unless `EVENT_HUB_TEST_REQUIRE_TANSU=1` (set by CI),
//! which makes a missing broker a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// Set to `1` to fail, rather than skip, when tansu is not installed.
pub const REQUIRE_TANSU_ENV: &str = "EVENT_HUB_TEST_REQUIRE_TANSU";

/// Where a tansu broker keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// In memory: fast, lost when the broker stops.
    Memory,
    /// A SQLite file in the broker's working directory: survives a restart.
    Sqlite,
}

/// A tansu broker on a free loopback port.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub bootstrap_servers: String,
    binary: PathBuf,
    port: u16,
    storage: Storage,
    directory: tempfile::TempDir,
}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EVENT_HUB_TEST_TANSU") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join("tansu"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let candidate = PathBuf::from(home).join(".cargo/bin/tansu");
        candidate.is_file().then_some(candidate)
    })
}

impl Tansu {
    /// Starts a broker, or returns `None` (after a note) when tansu is not
    /// installed and not required.
    pub fn start() -> Option<Self> {
        Self::start_with(Storage::Memory)
    }

    /// Starts a broker with `storage`, or returns `None` like [`Self::start`].
    pub fn start_with(storage: Storage) -> Option<Self> {
        let Some(binary) = find_binary() else {
            let message = "tansu is not installed (cargo install tansu --version 0.6.0 --locked --features dynostore,libsql)";
            if std::env::var(REQUIRE_TANSU_ENV).as_deref() == Ok("1") {
                panic!("{message}");
            }
            eprintln!("note: skipping: {message}");
            return None;
        };

        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        // An empty working directory, so no stray .env file configures it.
        let directory = tempfile::tempdir().expect("temporary directory");
        let child = spawn_broker(&binary, port, storage, directory.path());
        let tansu = Self {
            child,
            bootstrap_servers: format!("127.0.0.1:{port}"),
            binary,
            port,
            storage,
            directory,
        };
        tansu.wait_listening();
        Some(tansu)
    }

    /// Kills the broker with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_broker(&self.binary, self.port, self.storage, self.directory.path());
        self.wait_listening();
    }

    fn wait_listening(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates `topics` with `partitions` partitions each.
    pub async fn create_topics(&self, topics: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap_servers)
            .create()
            .expect("admin client");
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .expect("CreateTopics");
        for result in results {
            result.unwrap_or_else(|(topic, error)| panic!("creating {topic} failed: {error:?}"));
        }
    }
}

fn spawn_broker(
    binary: &std::path::Path,
    port: u16,
    storage: Storage,
    directory: &std::path::Path,
) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    // The SQLite path is relative to the working directory: tansu prefixes
    // an absolute one with it.
    let engine = match storage {
        Storage::Memory => "memory://tansu/",
        Storage::Sqlite => "sqlite://tansu.db",
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(directory.join("tansu.log"))
        .expect("log file");
    Command::new(binary)
        .current_dir(directory)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", engine])
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env_remove("STORAGE_ENGINE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tansu starts")
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
