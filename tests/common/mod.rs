//! A real server on 127.0.0.1:0 and real HTTP clients, shared by the
//! integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use signal_relay::{Config, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const WEB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web");

/// A server running in this process until dropped or shut down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with `flags`, listening on a free loopback port and
    /// serving the project's web folder unless `flags` say otherwise.
    pub async fn start(flags: &[&str]) -> TestServer {
        let mut args = vec!["signal-relay"];
        for (flag, default) in [("--listen", "127.0.0.1:0"), ("--web-dir", WEB_DIR)] {
            if !flags.contains(&flag) {
                args.extend([flag, default]);
            }
        }
        args.extend_from_slice(flags);
        let config = Config::try_parse_from(&args).expect("test flags parse");
        let server = Server::bind(&config).await.expect("server starts");
        let addr = server.local_addr();
        let scheme = if config.tls { "https" } else { "http" };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            base: format!("{scheme}://{addr}"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// Starts graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task ends cleanly");
        }
    }

    /// A peer of `room` on this server.
    pub fn peer(&self, room: &str, name: &str) -> Peer {
        Peer::new(&self.base, room, name)
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

/// A client of the protocol that keeps its cursor, epoch and token the way
/// a real one does.
pub struct Peer {
    pub client: Client,
    pub base: String,
    pub room: String,
    pub name: String,
    pub token: Option<String>,
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
            since: 0,
            epoch: None,
        }
    }

    pub fn signal_url(&self, extra: &str) -> String {
        format!(
            "{}/signal?room={}&peer={}{extra}",
            self.base, self.room, self.name
        )
    }

    fn with_token(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.header("X-Peer-Token", token),
            None => request,
        }
    }

    fn keep_token(&mut self, response: &Response) {
        if let Some(token) = response.headers().get("x-peer-token") {
            self.token = Some(token.to_str().expect("token is ASCII").to_owned());
        }
    }

    /// Polls from the current cursor, waiting up to `timeout` seconds; on
    /// 200 the cursor and epoch advance. A transport error (a cut
    /// connection, a server gone) is returned, for fault tests.
    pub async fn try_poll(&mut self, timeout: f64) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut extra = format!("&since={}&timeout={timeout}", self.since);
        if let Some(epoch) = &self.epoch {
            extra.push_str(&format!("&epoch={epoch}"));
        }
        let response = self
            .with_token(self.client.get(self.signal_url(&extra)))
            .send()
            .await?;
        self.keep_token(&response);
        let status = response.status();
        let body: Value = response.json().await?;
        if status == StatusCode::OK {
            self.since = body["next"].as_u64().expect("next is a number");
            self.epoch = Some(body["epoch"].as_str().expect("epoch").to_owned());
        }
        Ok((status, body))
    }

    /// [`Peer::try_poll`] on a network that works.
    pub async fn poll_raw(&mut self, timeout: f64) -> (StatusCode, Value) {
        self.try_poll(timeout).await.expect("poll request")
    }

    /// Polls and returns the messages, asserting success.
    pub async fn poll(&mut self, timeout: f64) -> Vec<Value> {
        let (status, body) = self.poll_raw(timeout).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["messages"].as_array().expect("messages").clone()
    }

    /// Joins the room with a zero-wait poll; returns the `peers` list.
    pub async fn join(&mut self) -> Vec<String> {
        let messages = self.poll(0.0).await;
        assert_eq!(messages[0]["data"]["type"], "peers", "{messages:?}");
        assert!(self.token.is_some(), "the creating reply carries a token");
        messages[0]["data"]["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p.as_str().expect("name").to_owned())
            .collect()
    }

    /// Sends a JSON body, to `to` or to everyone.
    pub async fn send(&mut self, to: Option<&str>, body: &Value) -> Response {
        let extra = to.map(|to| format!("&to={to}")).unwrap_or_default();
        let response = self
            .with_token(self.client.post(self.signal_url(&extra)))
            .json(body)
            .send()
            .await
            .expect("send request");
        self.keep_token(&response);
        response
    }

    /// Sends and asserts 202; returns the receipt.
    pub async fn send_ok(&mut self, to: Option<&str>, body: &Value) -> Value {
        let response = self.send(to, body).await;
        let status = response.status();
        let receipt: Value = response.json().await.expect("receipt is JSON");
        assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
        receipt
    }
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
        .args(["--listen", "127.0.0.1:0", "--web-dir", WEB_DIR])
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

/// The `data` of each message, for comparisons.
pub fn data(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["data"].clone()).collect()
}
