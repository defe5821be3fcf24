//! The moving parts of the chaos run and the faults injected into them: a
//! tansu broker that is restarted, a database reached through a proxy that
//! is cut, and replicas that are killed with SIGKILL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use sea_orm::{ConnectionTrait, Database as SeaDatabase, DatabaseConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Args;

/// Counts and peaks of the run, for the report.
#[derive(Debug, Default)]
pub struct Stats {
    /// Replicas killed with SIGKILL.
    pub kills: usize,
    /// Broker restarts.
    pub broker_restarts: usize,
    /// Database outages.
    pub database_outages: usize,
    /// Highest total consumer lag seen while draining.
    pub max_lag: i64,
    /// Highest resident set size of a replica, in KiB.
    pub max_rss_kib: u64,
}

/// Storage engine of the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// In memory: fastest, lost when the broker stops.
    Memory,
    /// A SQLite file: survives a restart.
    Sqlite,
}

impl Storage {
    fn engine(self) -> &'static str {
        match self {
            Self::Memory => "memory://tansu/",
            // Relative to the working directory: tansu prefixes an absolute
            // path with it.
            Self::Sqlite => "sqlite://tansu.db",
        }
    }
}

/// A tansu broker; with SQLite storage a restart keeps the data.
pub struct Tansu {
    child: Child,
    binary: PathBuf,
    port: u16,
    directory: PathBuf,
    storage: Storage,
    /// `127.0.0.1:<port>`.
    pub bootstrap_servers: String,
}

impl Tansu {
    /// Starts the broker in `work/tansu` on a free loopback port.
    pub async fn start(
        binary: Option<PathBuf>,
        work: &Path,
        storage: Storage,
    ) -> anyhow::Result<Self> {
        let binary = match binary {
            Some(binary) => binary,
            None => find_tansu().context("tansu not found; install it with `cargo install tansu --version 0.6.0 --locked --features dynostore,libsql` or pass --tansu-binary")?,
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let directory = work.join("tansu");
        std::fs::create_dir_all(&directory)?;
        let child = spawn_tansu(&binary, port, &directory, storage)?;
        let tansu = Self {
            child,
            binary,
            port,
            directory,
            storage,
            bootstrap_servers: format!("127.0.0.1:{port}"),
        };
        tansu.wait_listening()?;
        if storage == Storage::Sqlite {
            tansu.index_headers().await?;
        }
        Ok(tansu)
    }

    /// Adds the index that tansu's SQLite schema lacks on its `header`
    /// table.
    ///
    /// NOTE: tansu 0.6.0 reads the headers of each record it serves with a
    /// query on `header (topition, offset_id)`, and its schema has no index
    /// there, so every record served scans every header stored. The cost of
    /// a fetch grows with all the data the broker holds: at about 30,000
    /// events the broker spent its time in those scans and stopped
    /// responding to heartbeats, which looked like a failed broker restart. The
    /// index survives restarts; tansu's own `create table if not exists`
    /// leaves it alone.
    async fn index_headers(&self) -> anyhow::Result<()> {
        let url = format!(
            "sqlite://{}?mode=rw",
            self.directory.join("tansu.db").display()
        );
        let started = Instant::now();
        loop {
            // The broker creates its tables as it starts: retry until the
            // `header` table exists.
            let created = async {
                let db = SeaDatabase::connect(url.as_str()).await?;
                db.execute_unprepared(
                    "CREATE INDEX IF NOT EXISTS event_hub_chaos_header_record \
                     ON header (topition, offset_id)",
                )
                .await?;
                db.close().await
            };
            match created.await {
                Ok(()) => return Ok(()),
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    return Err(error).context("cannot add the header index to tansu's database")
                }
            }
        }
    }

    /// Creates `topics` with `partitions` partitions each.
    pub async fn create_topics(&self, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap_servers)
            .create()?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&new_topics, &options).await? {
            result.map_err(|(topic, error)| {
                anyhow::anyhow!("creating topic {topic} failed: {error}")
            })?;
        }
        Ok(())
    }

    /// Kills the broker with SIGKILL and starts it again on the same port
    /// and data after `downtime`.
    pub async fn restart(&mut self, downtime: Duration) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tokio::time::sleep(downtime).await;
        self.child = spawn_tansu(&self.binary, self.port, &self.directory, self.storage)?;
        self.wait_listening()
    }

    /// Stops the broker.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_listening(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

fn find_tansu() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join("tansu"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let candidate = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/tansu");
        candidate.is_file().then_some(candidate)
    })
}

fn spawn_tansu(
    binary: &Path,
    port: u16,
    directory: &Path,
    storage: Storage,
) -> anyhow::Result<Child> {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(directory.join("tansu.log"))?;
    Command::new(binary)
        .current_dir(directory)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", storage.engine()])
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env_remove("STORAGE_ENGINE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start tansu")
}

/// A fresh PostgreSQL database for the run.
pub struct Database {
    /// Direct connection, for checks; the replicas go through the proxy.
    pub db: DatabaseConnection,
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    /// Creates and migrates a database named `eh_chaos_<random>`.
    pub async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let admin = SeaDatabase::connect(admin_url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {admin_url}"))?;
        let name = format!("eh_chaos_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        admin.close().await?;

        let (base, _) = admin_url
            .rsplit_once('/')
            .context("PostgreSQL URL has no database name")?;
        let url = format!("{base}/{name}");
        let db = SeaDatabase::connect(url.as_str()).await?;
        event_hub::store::migrate(&db).await?;
        Ok(Self {
            db,
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    /// Returns the database URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Returns the database URL with the server replaced by `proxy`.
    pub fn url_through(&self, proxy: &Proxy) -> String {
        self.url
            .replace("127.0.0.1:5432", &proxy.address.to_string())
    }

    /// Drops the database; failures are printed, not raised.
    pub async fn drop(self) {
        let _ = self.db.close().await;
        let dropped = async {
            let admin = SeaDatabase::connect(self.admin_url.as_str()).await?;
            admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .await?;
            admin.close().await
        };
        if let Err(error) = dropped.await {
            eprintln!("note: dropping database {} failed: {error}", self.name);
        }
    }
}

/// A TCP proxy to the database that the run cuts to simulate an outage:
/// while cut it closes open connections and refuses new ones.
pub struct Proxy {
    /// The proxy's address, used in the replicas' database URL.
    pub address: SocketAddr,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0_u64);
        let accept_up = Arc::clone(&up);
        let accept_generation = generation.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !accept_up.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cut = accept_generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            address,
            up,
            generation,
            accept,
        })
    }

    /// Closes open connections and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The hub replicas, each an `event-hub run` child process.
pub struct Replicas {
    binary: PathBuf,
    work: PathBuf,
    env: Vec<(String, String)>,
    children: Vec<Option<Child>>,
    spawned: usize,
}

impl Replicas {
    /// Prepares replicas that share one consumer group.
    pub fn new(
        binary: PathBuf,
        work: &Path,
        bootstrap_servers: &str,
        database_url: &str,
        key_file: &Path,
    ) -> Self {
        let env = [
            ("EVENT_HUB__DATABASE__URL", database_url.to_owned()),
            ("EVENT_HUB__DATABASE__CONNECT_TIMEOUT_SECS", "2".to_owned()),
            (
                "EVENT_HUB__KAFKA__BOOTSTRAP_SERVERS",
                bootstrap_servers.to_owned(),
            ),
            ("EVENT_HUB__KAFKA__GROUP_ID", "event-hub-chaos".to_owned()),
            (
                "EVENT_HUB__KAFKA__CONSUMER_PROPERTIES__SESSION__TIMEOUT__MS",
                "6000".to_owned(),
            ),
            (
                "EVENT_HUB__KAFKA__CONSUMER_PROPERTIES__FETCH__WAIT__MAX__MS",
                "20".to_owned(),
            ),
            (
                "EVENT_HUB__AUTH__SIGNING_KEY_FILE",
                key_file.display().to_string(),
            ),
            (
                "EVENT_HUB__PIPELINE__MAX_RETRY_BACKOFF_MS",
                "2000".to_owned(),
            ),
            ("EVENT_HUB__LOG__FORMAT", "json".to_owned()),
            ("EVENT_HUB__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
            // NOTE: tansu 0.6.0 with SQLite storage fails InitProducerId after
            // a restart, so an idempotent producer never sends again. The
            // replicas run without idempotence here. The guarantee checked
            // does not depend on it (executions are deduplicated by id, and
            // action requests may repeat across a fault).
            (
                "EVENT_HUB__KAFKA__PRODUCER_PROPERTIES__ENABLE__IDEMPOTENCE",
                "false".to_owned(),
            ),
        ];
        Self {
            binary,
            work: work.to_owned(),
            env: env
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
            children: Vec::new(),
            spawned: 0,
        }
    }

    /// Sets an environment variable of the replicas started from now on,
    /// replacing the value [`Replicas::new`] chose for it.
    pub fn set_env(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|(name, _)| name == key) {
            Some((_, current)) => value.clone_into(current),
            None => self.env.push((key.to_owned(), value.to_owned())),
        }
    }

    /// Starts one more replica.
    pub fn spawn_new(&mut self) -> anyhow::Result<()> {
        let child = self.spawn()?;
        self.children.push(Some(child));
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<Child> {
        self.spawned += 1;
        let log = std::fs::File::create(self.work.join(format!("replica-{}.log", self.spawned)))?;
        Command::new(&self.binary)
            .arg("run")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start an event-hub replica")
    }

    /// Kills a random replica with SIGKILL and starts a new one in its slot.
    pub fn kill_and_replace_random(&mut self) -> anyhow::Result<()> {
        let slot = rand::thread_rng().gen_range(0..self.children.len());
        if let Some(mut child) = self.children[slot].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children[slot] = Some(self.spawn()?);
        Ok(())
    }

    /// Returns the process ids of the live replicas.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().flatten().map(Child::id).collect()
    }

    /// Returns the highest resident set size of the live replicas, in KiB.
    pub fn max_rss_kib(&self) -> u64 {
        self.children
            .iter()
            .flatten()
            .filter_map(|child| {
                std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()
            })
            .filter_map(|status| {
                status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))
                    .and_then(|line| line.split_whitespace().nth(1))
                    .and_then(|kib| kib.parse().ok())
            })
            .max()
            .unwrap_or(0)
    }

    /// Stops every replica with SIGTERM, then SIGKILL after `grace`.
    pub fn stop_all(&mut self, grace: Duration) {
        for child in self.children.iter().flatten() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + grace;
        for child in self.children.iter_mut().flatten() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Injects faults while the producer runs: a replica kill every
/// `kill_interval_secs`, one broker restart after a quarter of the events
/// and one database outage at half, then a few more kills after the
/// producer is done.
pub async fn inject(
    args: &Args,
    replicas: &mut Replicas,
    tansu: &mut Tansu,
    proxy: &Proxy,
    producer: &tokio::task::JoinHandle<anyhow::Result<usize>>,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let expected_secs = (args.events as u64)
        .checked_div(args.produce_rate)
        .unwrap_or(20)
        .max(20);
    let started = Instant::now();
    let mut broker_restarted = args.skip_broker_restart;
    let mut database_cut = false;
    let mut kills_after_producer = 0;

    while kills_after_producer < 3 {
        tokio::time::sleep(Duration::from_secs(args.kill_interval_secs)).await;
        stats.max_rss_kib = stats.max_rss_kib.max(replicas.max_rss_kib());
        let elapsed = started.elapsed().as_secs();

        if !broker_restarted && elapsed >= expected_secs / 4 {
            println!("[{elapsed:>4} s] restarting the broker");
            tansu.restart(Duration::from_secs(2)).await?;
            stats.broker_restarts += 1;
            broker_restarted = true;
            continue;
        }
        if !database_cut && elapsed >= expected_secs / 2 {
            println!(
                "[{elapsed:>4} s] database unreachable for {} s",
                args.database_outage_secs
            );
            proxy.cut();
            tokio::time::sleep(Duration::from_secs(args.database_outage_secs)).await;
            proxy.restore();
            stats.database_outages += 1;
            database_cut = true;
            continue;
        }

        println!("[{elapsed:>4} s] killing a replica");
        replicas.kill_and_replace_random()?;
        stats.kills += 1;
        if producer.is_finished() && broker_restarted && database_cut {
            kills_after_producer += 1;
        }
    }
    Ok(())
}
