//! A real server on 127.0.0.1:0 and real HTTP clients, shared by the
//! integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use signal_relay::name::Name;
use signal_relay::settings::{StoreChoice, TlsSettings};
use signal_relay::wire::{
    Batch, ErrorBody, Message, Receipt, RoomEvent, SIGNAL_PATH, header, query,
};
use signal_relay::{Server, Settings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Which store a test server runs on: the protocol suites run on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    /// A Redis of the test's own, started for it and stopped with it.
    Redis,
    /// A 3-master Redis Cluster of the test's own, and two instances on
    /// it: the peers of [`TestServer::peer`] alternate between them.
    Cluster,
}

impl Backend {
    /// Starts a server on this store with the test defaults.
    pub async fn start(self) -> TestServer {
        self.with(|_| {}).await
    }

    /// Starts a server on this store with the test defaults as changed by
    /// `configure` (see [`TestServer::with`]).
    pub async fn with(self, configure: impl FnOnce(&mut Settings)) -> TestServer {
        match self {
            Backend::Memory => TestServer::with(configure).await,
            Backend::Redis => {
                let redis = RedisServer::start();
                let url = redis.url();
                let mut server = TestServer::with(|settings| {
                    configure(settings);
                    settings.store = StoreChoice::Redis(url);
                })
                .await;
                server.redis = Some(redis);
                server
            }
            Backend::Cluster => {
                let cluster = RedisCluster::start();
                let mut settings = settings();
                configure(&mut settings);
                settings.store = StoreChoice::Redis(cluster.url());
                let mut server = TestServer::from_settings(settings.clone()).await;
                let twin = TestServer::from_settings(settings).await;
                server.twin = Some(Box::new(twin));
                server.cluster = Some(cluster);
                server
            }
        }
    }
}

/// The settings every test server starts from: a free loopback port, and
/// otherwise what the binary does with no flags.
pub fn settings() -> Settings {
    Settings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Settings::default()
    }
}

/// TLS from `cert` and `key`, generated there when missing.
pub fn tls(cert: &Path, key: &Path) -> TlsSettings {
    TlsSettings {
        cert: cert.to_owned(),
        key: key.to_owned(),
        ..TlsSettings::default()
    }
}

/// Seconds, as the flags give them.
pub fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}

/// Runs a test body once per store, as `memory::name`, `redis::name` and
/// `cluster::name`.
#[macro_export]
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::common::Backend::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::common::Backend::Redis).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::common::Backend::Cluster).await
                }
            )*
        }
    };
}

/// A server running in this process until dropped or shut down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The Redis this server's store lives in, when it has its own.
    pub redis: Option<RedisServer>,
    /// The Cluster, likewise.
    pub cluster: Option<RedisCluster>,
    /// A second instance on the same store, serving every other peer.
    pub twin: Option<Box<TestServer>>,
    peers_made: AtomicU32,
}

impl TestServer {
    /// Starts a server with the test [`settings`].
    pub async fn start() -> TestServer {
        TestServer::with(|_| {}).await
    }

    /// Starts a server with the test [`settings`] as changed by `configure`.
    pub async fn with(configure: impl FnOnce(&mut Settings)) -> TestServer {
        let mut settings = settings();
        configure(&mut settings);
        TestServer::from_settings(settings).await
    }

    /// Starts a server with exactly `settings`.
    pub async fn from_settings(settings: Settings) -> TestServer {
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let server = Server::bind(settings).await.expect("server starts");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            base: format!("{scheme}://{addr}"),
            stop: Some(stop),
            task: Some(task),
            redis: None,
            cluster: None,
            twin: None,
            peers_made: AtomicU32::new(0),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// Starts graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(twin) = self.twin.take() {
            Box::pin(twin.shutdown()).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task ends cleanly");
        }
    }

    /// A peer of `room` on this server, or every other one on its twin.
    pub fn peer(&self, room: &str, name: &str) -> Peer {
        let made = self.peers_made.fetch_add(1, Ordering::Relaxed);
        match &self.twin {
            Some(twin) if made % 2 == 1 => Peer::new(&twin.base, room, name),
            _ => Peer::new(&self.base, room, name),
        }
    }
}

impl TestServer {
    /// alice and bob in `room`, each having read everything so far (bob the
    /// `peers` event, alice `peers` and `join bob`): both mailboxes empty.
    pub async fn pair(&self, room: &str) -> (Peer, Peer) {
        let mut alice = self.peer(room, "alice");
        let mut bob = self.peer(room, "bob");
        alice.join().await;
        bob.join().await;
        let joined = alice.poll(0.0).await;
        assert_eq!(
            data(&joined),
            [serde_json::json!({"type": "join", "peer": "bob"})]
        );
        (alice, bob)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A plain client: no proxy from the environment, bounded waits.
pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client builds")
}

/// The body of a GET to `url`, for scenarios that report errors as text.
pub async fn get_text(url: &str) -> Result<String, String> {
    client()
        .get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())
}

/// The value of a metric line `name value` in a /metrics exposition.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// A client of the protocol that keeps its cursor, epoch and token the way
/// a real one does.
pub struct Peer {
    pub client: Client,
    pub base: String,
    pub room: String,
    pub name: String,
    pub token: Option<String>,
    /// A join ticket, sent as `Authorization: Bearer` with every request.
    pub ticket: Option<String>,
    pub since: u64,
    pub epoch: Option<String>,
}

impl Peer {
    /// A new peer of `room` on the server at `base`, with its own client.
    pub fn new(base: &str, room: &str, name: &str) -> Peer {
        Peer {
            client: client(),
            base: base.to_owned(),
            room: room.into(),
            name: name.into(),
            token: None,
            ticket: None,
            since: 0,
            epoch: None,
        }
    }

    pub fn signal_url(&self, extra: &str) -> String {
        format!(
            "{}{SIGNAL_PATH}?{}={}&{}={}{extra}",
            self.base,
            query::ROOM,
            self.room,
            query::PEER,
            self.name
        )
    }

    /// The URL of a poll from the current cursor and epoch.
    pub fn poll_url(&self, timeout: f64) -> String {
        let mut extra = format!(
            "&{}={}&{}={timeout}",
            query::SINCE,
            self.since,
            query::TIMEOUT
        );
        if let Some(epoch) = &self.epoch {
            extra.push_str(&format!("&{}={epoch}", query::EPOCH));
        }
        self.signal_url(&extra)
    }

    fn with_token(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = match &self.ticket {
            Some(ticket) => request.bearer_auth(ticket),
            None => request,
        };
        match &self.token {
            Some(token) => request.header(header::PEER_TOKEN, token),
            None => request,
        }
    }

    fn keep_token(&mut self, response: &Response) {
        if let Some(token) = response.headers().get(header::PEER_TOKEN) {
            self.token = Some(token.to_str().expect("token is ASCII").to_owned());
        }
    }

    /// Polls from the current cursor, waiting up to `timeout` seconds; on
    /// 200 the cursor and epoch advance. A transport error (a cut
    /// connection, a server gone) is returned, for fault tests.
    pub async fn try_poll(
        &mut self,
        timeout: f64,
    ) -> Result<(StatusCode, Reply<Batch>), reqwest::Error> {
        let response = self
            .with_token(self.client.get(self.poll_url(timeout)))
            .send()
            .await?;
        self.keep_token(&response);
        let (status, body) = read_reply::<Batch>(response).await?;
        if let Ok(batch) = &body {
            self.since = batch.next;
            self.epoch = Some(batch.epoch.to_string());
        }
        Ok((status, body))
    }

    /// [`Peer::try_poll`] on a network that works.
    pub async fn poll_raw(&mut self, timeout: f64) -> (StatusCode, Reply<Batch>) {
        self.try_poll(timeout).await.expect("poll request")
    }

    /// A poll whose reply must be a batch (of any success status).
    pub async fn poll_batch(&mut self, timeout: f64) -> (StatusCode, Batch) {
        let (status, body) = self.poll_raw(timeout).await;
        (status, body.unwrap_or_else(|e| panic!("{status}: {e:?}")))
    }

    /// A poll whose reply must be an error.
    pub async fn poll_error(&mut self, timeout: f64) -> (StatusCode, String) {
        let (status, body) = self.poll_raw(timeout).await;
        match body {
            Err(ErrorBody { error }) => (status, error),
            Ok(batch) => panic!("{status} with a batch where an error was due: {batch:?}"),
        }
    }

    /// Polls and returns the messages, asserting success.
    pub async fn poll(&mut self, timeout: f64) -> Vec<Message> {
        let (status, body) = self.poll_raw(timeout).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        body.expect("a batch").messages
    }

    /// Joins the room with a zero-wait poll; returns the `peers` list.
    pub async fn join(&mut self) -> Vec<String> {
        let messages = self.poll(0.0).await;
        assert!(self.token.is_some(), "the creating reply carries a token");
        match RoomEvent::parse(&messages[0].data) {
            Some(RoomEvent::Peers { peers }) => peers.iter().map(|p| p.to_string()).collect(),
            _ => panic!("a new mailbox starts with `peers`: {messages:?}"),
        }
    }

    /// Sends a JSON body, to `to` or to everyone.
    pub async fn send(&mut self, to: Option<&str>, body: &Value) -> Response {
        let extra = to
            .map(|to| format!("&{}={to}", query::TO))
            .unwrap_or_default();
        let response = self
            .with_token(self.client.post(self.signal_url(&extra)))
            .json(body)
            .send()
            .await
            .expect("send request");
        self.keep_token(&response);
        response
    }

    /// Sends a raw SDP body (`Content-Type: application/sdp`); `extra` is
    /// appended to the query (`&to=bob`, `&type=answer`).
    pub async fn send_sdp(&mut self, extra: &str, sdp: &str) -> Response {
        let response = self
            .with_token(self.client.post(self.signal_url(extra)))
            .header("Content-Type", "application/sdp")
            .body(sdp.to_owned())
            .send()
            .await
            .expect("send request");
        self.keep_token(&response);
        response
    }

    /// Leaves the room (`DELETE /signal`).
    pub async fn leave(&self) -> Response {
        self.with_token(self.client.delete(self.signal_url("")))
            .send()
            .await
            .expect("leave request")
    }

    /// Sends and asserts 202; returns the receipt.
    pub async fn send_ok(&mut self, to: Option<&str>, body: &Value) -> Receipt {
        let response = self.send(to, body).await;
        let (status, receipt) = read_reply::<Receipt>(response).await.expect("reply body");
        assert_eq!(status, StatusCode::ACCEPTED, "{receipt:?}");
        receipt.expect("a receipt")
    }
}

/// A receipt, for comparisons.
pub fn receipt(delivered: &[&str], queued: bool) -> Receipt {
    Receipt {
        delivered: delivered
            .iter()
            .map(|name| Name::parse(name).expect("a valid name"))
            .collect(),
        queued,
    }
}

/// A reply's body: its wire type on success, the error body otherwise.
pub type Reply<T> = Result<T, ErrorBody>;

/// Reads a reply as `T` when its status is a success, as the error body
/// when not. A body of neither shape is returned as an error body that
/// says so, which fails any test expecting the wire type.
pub async fn read_reply<T: serde::de::DeserializeOwned>(
    response: Response,
) -> Result<(StatusCode, Reply<T>), reqwest::Error> {
    let status = response.status();
    let bytes = response.bytes().await?;
    let not_wire = |e: serde_json::Error| ErrorBody {
        error: format!(
            "a {status} body that is not the wire type ({e}): {}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    let body = if status.is_success() {
        serde_json::from_slice(&bytes).map_err(not_wire)
    } else {
        Err(serde_json::from_slice(&bytes).unwrap_or_else(not_wire))
    };
    Ok((status, body))
}

/// The server binary, started as a user would start it, its log piped.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub base: String,
    /// The log up to and including the line that names the address.
    pub startup: Vec<String>,
    log: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
}

/// Starts the binary on a free loopback port with `flags` and `RUST_LOG`
/// set to `log_level`, and waits for the line that names its address.
pub async fn spawn_server(flags: &[&str], log_level: &str) -> ServerProcess {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_signal-relay"))
        .args(["--listen", "127.0.0.1:0"])
        .args(flags)
        .env("RUST_LOG", log_level)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut log = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut startup = Vec::new();
    let base = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), log.next_line())
            .await
            .expect("the server logs its address")
            .expect("stderr readable")
            .expect("stderr open");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(|u| u.trim_end_matches('/').to_owned());
        startup.push(line);
        if let Some(url) = url {
            break url;
        }
    };
    ServerProcess {
        child,
        base,
        startup,
        log,
    }
}

impl ServerProcess {
    pub fn pid(&self) -> String {
        self.child.id().expect("running").to_string()
    }

    pub fn peer(&self, room: &str, name: &str) -> Peer {
        Peer::new(&self.base, room, name)
    }

    /// Sends SIGTERM, as systemd or Kubernetes would.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The rest of the log, until the process closes it (bounded wait).
    pub async fn rest_of_log(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(5), self.log.next_line()).await
        {
            lines.push(line);
        }
        lines
    }

    /// Keeps reading the log in the background, so the server never
    /// blocks on a full pipe.
    pub fn drain_log(self) -> tokio::process::Child {
        let ServerProcess { child, mut log, .. } = self;
        tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
        child
    }
}

/// The `data` of each message, parsed, for comparisons with `json!`.
pub fn data(messages: &[Message]) -> Vec<Value> {
    messages.iter().map(parsed).collect()
}

/// One message's `data`, parsed.
pub fn parsed(message: &Message) -> Value {
    serde_json::from_str(message.data.get()).expect("data is JSON")
}

/// The sender of a message, as text (`None` for a room event).
pub fn sender(message: &Message) -> Option<&str> {
    message.from.as_deref()
}

/// A redis-server of the test's own on a free loopback port, killed when
/// dropped. Installed with apt when missing (as root, or via `sudo -n`).
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    persistent: bool,
    /// Further redis-server arguments (a cluster node's).
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// An in-memory Redis: nothing survives its restart.
    pub fn start() -> RedisServer {
        RedisServer::launch(false)
    }

    /// A Redis that writes every change to its append-only file before
    /// answering (`appendfsync always`), so a restart loses nothing.
    pub fn start_persistent() -> RedisServer {
        RedisServer::launch(true)
    }

    fn launch(persistent: bool) -> RedisServer {
        RedisServer::launch_with(persistent, |_, _| Vec::new())
    }

    /// Launches one with the arguments `extra(port, dir)` gives.
    fn launch_with(persistent: bool, extra: impl Fn(u16, &Path) -> Vec<String>) -> RedisServer {
        install_redis();
        static LAUNCHED: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "signal-relay-redis-{}-{}",
            std::process::id(),
            LAUNCHED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = RedisServer {
            port: 0,
            dir,
            persistent,
            extra: Vec::new(),
            child: None,
        };
        // A port found free can be taken by a concurrent test before Redis
        // binds it; then Redis exits and another port is tried.
        for _ in 0..5 {
            redis.port = free_port();
            redis.extra = extra(redis.port, &redis.dir);
            if redis.run() {
                return redis;
            }
        }
        panic!("redis-server could not get a free port in 5 tries");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts Redis on `self.port`; false if the port turned out to be
    /// someone else's.
    fn run(&mut self) -> bool {
        let port = self.port.to_string();
        let mut command = Command::new(REDIS_SERVER);
        command
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.persistent {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let mut child = command.spawn().expect("redis-server starts");
        let pid = child.id();
        let started = Instant::now();
        // Whatever answers on the port must be this Redis, by process id:
        // a listener that is not means ours could not bind.
        let ours = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break false;
            }
            if let Some(answered) = redis_pid(self.port) {
                break answered == pid;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        self.child = Some(child);
        if !ours {
            self.kill();
        }
        ours
    }

    /// Kills Redis at once (SIGKILL): what a crash looks like.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data folder.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.run(),
            "port {} was taken while Redis was down",
            self.port
        );
    }

    /// Whether the port answers.
    pub fn is_up(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The process id of the Redis answering on `port`, if a Redis answers.
fn redis_pid(port: u16) -> Option<u32> {
    query(port, b"INFO server\r\n", "process_id:")?.parse().ok()
}

/// The value of the `field:` line in what Redis on `port` answers `command`.
fn query(port: u16, command: &[u8], field: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(command).ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some((_, rest)) = text.split_once(field)
            && let Some((value, _)) = rest.split_once("\r\n")
        {
            return Some(value.trim().to_owned());
        }
    }
}

/// A Redis Cluster of three masters, Debian's redis-server in cluster mode
/// on free loopback ports, created with `redis-cli --cluster create`;
/// stopped when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::launch_with(false, |_, dir| {
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        dir.join("nodes.conf").display().to_string(),
                        // The bus port is port + 10000 unless given, which
                        // may be past 65535 or taken.
                        "--cluster-port".into(),
                        free_port().to_string(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                    ]
                })
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("/usr/bin/redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes };
        let started = Instant::now();
        while !cluster.nodes.iter().all(|n| n.cluster_ok()) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the cluster never reported cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The `--store` URL: every master as a seed node.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }
}

impl RedisServer {
    /// Whether this node sees the whole cluster as up.
    fn cluster_ok(&self) -> bool {
        let reply = query(self.port, b"CLUSTER INFO\r\n", "cluster_state:");
        reply.is_some_and(|state| state == "ok")
    }
}

/// Installs redis-server once per test binary when it is missing.
fn install_redis() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed {
        let wanted = [
            (REDIS_SERVER, "redis-server"),
            ("/usr/bin/redis-cli", "redis-tools"),
        ];
        if let Err(error) = apt_install_missing(&wanted) {
            panic!("the Redis tests need redis-server: {error}");
        }
        *installed = true;
    }
}

/// Installs the Debian packages whose marker file is missing.
pub fn apt_install_missing(wanted: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {}",
        missing.join(" ")
    );
    eprintln!("installing {}: {install}", missing.join(", "));
    let as_root = if is_root() { "" } else { "sudo -n " };
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{as_root}sh -c '{install}'"))
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{install}` failed ({status}); run it as root and try again"
        ))
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
