//! Calls in the networks this server is for, in real Chromium (issue 11):
//! relay-only through a real coturn with minted credentials, a call that
//! outlives its signaling going quiet, and a call whose media path breaks
//! and comes back by an ICE restart. Everything runs on loopback, inside the
//! browser tests' private network namespace.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use signal_relay::token::Token;
use signal_relay::turn::{TurnMinter, TurnSecret};

use super::common::{self, TestServer, secs};
use super::page::{Engine, Page};
use super::{Env, Outcome, call_up, free_port, members, wait_for_port};

pub const TURNSERVER: &str = "/usr/bin/turnserver";
pub const TURN_CLIENT: &str = "/usr/bin/turnutils_uclient";

/// Debian's coturn on free loopback ports, with `use-auth-secret`: it
/// accepts exactly the credentials minted from `secret`, and only until
/// their expiry.
pub struct Coturn {
    pub port: u16,
    relay_ports: (u16, u16),
    secret: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Coturn {
    pub async fn start(scratch: &Path, secret: &str) -> Result<Coturn, String> {
        let port = free_port();
        // A relay range of its own, so two coturns never share ports.
        let low = 20_000 + (port % 2_000) * 20;
        let dir = scratch.join(format!("coturn-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut coturn = Coturn {
            port,
            relay_ports: (low, low + 19),
            secret: secret.to_owned(),
            dir,
            child: None,
        };
        coturn.run().await?;
        Ok(coturn)
    }

    /// Starts (again) on the same ports with the same secret.
    pub async fn run(&mut self) -> Result<(), String> {
        let config = format!(
            "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port={port}\n\
             min-port={low}\nmax-port={high}\nuse-auth-secret\nstatic-auth-secret={secret}\n\
             realm=signal-relay.test\n\
             # both browsers are on loopback: coturn refuses such peers by default\n\
             allow-loopback-peers\nno-tls\nno-dtls\nno-cli\nno-multicast-peers\nfingerprint\n\
             no-software-attribute\nsimple-log\nlog-file=stdout\npidfile={dir}/turnserver.pid\n\
             userdb={dir}/turndb\n",
            port = self.port,
            low = self.relay_ports.0,
            high = self.relay_ports.1,
            secret = self.secret,
            dir = self.dir.display(),
        );
        let conf = self.dir.join("turnserver.conf");
        std::fs::write(&conf, config).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(self.dir.join("turnserver.log")).map_err(|e| e.to_string())?;
        let child = Command::new(TURNSERVER)
            .arg("-c")
            .arg(&conf)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start coturn: {e}"))?;
        self.child = Some(child);
        wait_for_port(self.port).await;
        Ok(())
    }

    /// Stops the coturn this test started, by its process id.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=tcp", self.port)
    }

    /// What mints credentials for this coturn from `secret`, each living
    /// `ttl` (`--turn-url`, `--turn-secret`, `--turn-ttl`).
    pub fn minter(&self, secret: &str, ttl: Duration) -> TurnMinter {
        let secret = TurnSecret::new(secret).expect("a test secret is not empty");
        TurnMinter::new(vec![self.url()], secret, ttl)
    }

    /// Asks coturn for an allocation with coturn's own client, over TCP:
    /// true when it was granted (and data relayed).
    pub fn allocates(&self, username: &str, credential: &str) -> bool {
        let status = Command::new("timeout")
            .args(["10", TURN_CLIENT, "-t", "-y", "-n", "1", "-m", "1"])
            .args(["-u", username, "-w", credential])
            .args(["-p", &self.port.to_string(), "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        status.is_ok_and(|s| s.success())
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP forwarder in front of the server that the test can cut and
/// restore on the same port: a proxy that drops every request, then comes
/// back, as a sleeping laptop or a switching network looks to the server.
pub struct Gate {
    pub port: u16,
    upstream: SocketAddr,
    accepting: Option<JoinHandle<()>>,
}

impl Gate {
    pub async fn open(upstream: SocketAddr) -> Result<Gate, String> {
        let mut gate = Gate {
            port: free_port(),
            upstream,
            accepting: None,
        };
        gate.restore().await?;
        Ok(gate)
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) -> Result<(), String> {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("the gate cannot listen on {}: {e}", self.port))?;
        let upstream = self.upstream;
        self.accepting = Some(tokio::spawn(async move {
            // Dropped with this task, so cutting the gate ends every
            // connection through it too.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
        Ok(())
    }

    /// Refuses new connections and cuts the open ones.
    pub fn cut(&mut self) {
        if let Some(task) = self.accepting.take() {
            task.abort();
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A TURN credential from a server's `/config`.
async fn minted(server: &TestServer) -> Result<(String, String), String> {
    minted_with(server, None).await
}

/// [`minted`], presenting `ticket` when given.
async fn minted_with(
    server: &TestServer,
    ticket: Option<&str>,
) -> Result<(String, String), String> {
    let request = common::client().get(server.url("/config?peer=probe"));
    let request = match ticket {
        Some(ticket) => request.bearer_auth(ticket),
        None => request,
    };
    let config: Value = request
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let turn = config["iceServers"]
        .as_array()
        .and_then(|servers| servers.iter().find(|s| s["username"].is_string()))
        .ok_or(format!("no TURN credential in {config}"))?;
    Ok((
        turn["username"].as_str().unwrap_or_default().to_owned(),
        turn["credential"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// 128 random bits, as the server's own tokens are made.
fn random_secret() -> String {
    Token::generate().expose().to_owned()
}

/// Waits until every page's selected candidate pair is relay on both ends.
async fn relayed_both_ways(page: &Page) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pairs = page
            .eval_async("window.signalDemo.selectedPairs().then(done)")
            .await?;
        let all_relay = pairs.as_array().is_some_and(|pairs| {
            !pairs.is_empty()
                && pairs
                    .iter()
                    .all(|p| p["local"] == "relay" && p["remote"] == "relay")
        });
        if all_relay {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{}: the selected pair is not relay/relay: {pairs}",
                page.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Proof 1: a relay-only call through a real coturn with credentials
/// minted by the server; the wrong secret cannot connect; coturn refuses an
/// expired credential.
pub async fn relay_only_call_through_coturn(env: Env) -> Outcome {
    let secret = random_secret();
    let coturn = Coturn::start(&env.scratch, &secret).await?;
    let hour = Duration::from_secs(3600);
    let server = TestServer::with(|s| s.api.turn = Some(coturn.minter(&secret, hour))).await;

    // coturn's own client: what the server mints is what coturn accepts...
    let (username, credential) = minted(&server).await?;
    if !coturn.allocates(&username, &credential) {
        return Err(format!("coturn refused a fresh credential {username}"));
    }
    // ...and not once it has expired,
    let second = Duration::from_secs(1);
    let short_lived = TestServer::with(|s| s.api.turn = Some(coturn.minter(&secret, second))).await;
    let (old_user, old_credential) = minted(&short_lived).await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    if coturn.allocates(&old_user, &old_credential) {
        return Err(format!("coturn accepted the expired credential {old_user}"));
    }
    short_lived.shutdown().await;
    // ...nor under another secret.
    let wrong = coturn.minter("not-the-secret", hour);
    let wrong_server = TestServer::with(|s| s.api.turn = Some(wrong)).await;
    let (bad_user, bad_credential) = minted(&wrong_server).await?;
    if coturn.allocates(&bad_user, &bad_credential) {
        return Err("coturn accepted a credential minted with the wrong secret".into());
    }

    // Two pages that may only use the relay.
    let room = format!("relay-{}", free_port());
    let url = format!("http://{}/?room={room}&ice=trickle&relay=1", server.addr);
    let (caller, callee, connect_ms) = super::prepare_and_connect(&env, &url).await?;
    relayed_both_ways(&caller).await?;
    relayed_both_ways(&callee).await?;
    caller.no_console_errors().await?;
    callee.no_console_errors().await?;
    caller.close().await;
    callee.close().await;

    // The same call against a server with the wrong secret never connects.
    let url = format!(
        "http://{}/?room={room}-wrong&ice=trickle&relay=1",
        wrong_server.addr
    );
    let (caller, callee) = super::open_and_call(
        &env,
        (Engine::Chromium, "wrong-caller", &url),
        (Engine::Chromium, "wrong-callee", &url),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let summary = caller.summary().await?;
    let connected = summary["remotes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["connection"] == "connected");
    if connected {
        return Err(format!(
            "a call connected with the wrong TURN secret: {summary}"
        ));
    }
    let errors = summary["remotes"][0]["candidateErrors"].clone();
    caller.close().await;
    callee.close().await;
    wrong_server.shutdown().await;
    server.shutdown().await;
    Ok(format!(
        "relay-only through coturn (TURN/TCP): Connect click to ICE connected in {connect_ms:.0} ms, selected pair relay/relay on both pages; coturn accepted the minted credential, refused it expired and under the wrong secret; the wrong-secret call did not connect in 6 s (ICE candidate errors {errors})"
    ))
}

/// Proof 2: one page's signaling is cut for longer than the peer TTL. The
/// other page hears `leave` "expired", and the call stays up with frames
/// the whole time; when signaling returns, each page sees the other again,
/// with one tile each.
pub async fn call_survives_signaling_silence(env: Env) -> Outcome {
    // A poll parks at most 2 s: the cut page's last poll (which the server
    // may not see end) stops keeping it alive soon after the cut.
    let server = TestServer::with(|s| {
        s.limits.peer_ttl = secs(1.5);
        s.api.poll_timeout = secs(2.0);
        s.api.max_poll_timeout = secs(2.0);
    })
    .await;
    let mut gate = Gate::open(server.addr).await?;
    let room = format!("quiet-{}", free_port());
    let direct = format!("http://{}/?room={room}", server.addr);
    let gated = format!("http://127.0.0.1:{}/?room={room}", gate.port);
    let (steady, sleepy) = super::open_and_call(
        &env,
        (Engine::Chromium, "steady", &direct),
        (Engine::Chromium, "sleepy", &gated),
    )
    .await?;
    call_up(&sleepy, &steady).await?;
    let sleepy_name = sleepy.summary().await?["peer"].clone();

    // Its page load was clean; what it logs once cut is the point of the test.
    sleepy.no_console_errors().await?;
    steady.no_console_errors().await?;
    gate.cut();
    let cut_at = Instant::now();
    let mut checks = 0;
    let mut expired_after = None;
    let mut last_time = 0.0;
    // Through the silence and 3 s past the expiry, every 500 ms: the call
    // is connected and its video moves.
    while expired_after.is_none_or(|at: Duration| cut_at.elapsed() < at + Duration::from_secs(3)) {
        if cut_at.elapsed() > Duration::from_secs(20) {
            return Err("the quiet page never expired".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let summary = steady.summary().await?;
        if let Some(error) = summary["error"].as_str() {
            return Err(format!("steady: the page reports: {error}"));
        }
        let remotes = summary["remotes"].as_array().cloned().unwrap_or_default();
        if remotes.len() != 1 || remotes[0]["connection"] != "connected" {
            return Err(format!(
                "steady: the call dropped {:?} after signaling was cut: {summary}",
                cut_at.elapsed()
            ));
        }
        let time = remotes[0]["currentTime"].as_f64().unwrap_or(0.0);
        if time <= last_time {
            return Err(format!(
                "steady: the video froze during the silence: {summary}"
            ));
        }
        last_time = time;
        checks += 1;
        if expired_after.is_none()
            && summary["quiet"]
                .as_array()
                .is_some_and(|q| q.contains(&sleepy_name))
        {
            expired_after = Some(cut_at.elapsed());
        }
    }
    let expired_after = expired_after.unwrap_or_default();

    gate.restore().await?;
    let back_at = Instant::now();
    let one_live_tile = |s: &Value| {
        let remotes = s["remotes"].as_array().cloned().unwrap_or_default();
        members(s) == 1 && remotes.len() == 1 && remotes[0]["connection"] == "connected"
    };
    steady
        .wait_for("the quiet peer back", |s| {
            one_live_tile(s) && s["quiet"].as_array().is_some_and(Vec::is_empty)
        })
        .await?;
    sleepy
        .wait_for("signaling back", |s| {
            one_live_tile(s) && s["online"] == true
        })
        .await?;
    let back_in = back_at.elapsed();
    steady.wait_for_frames(1).await?;
    sleepy.wait_for_frames(1).await?;
    let tiles = sleepy
        .eval("return document.querySelectorAll('.tile.remote').length")
        .await?;
    if tiles != 1 {
        return Err(format!("sleepy shows {tiles} remote tiles"));
    }
    steady.no_console_errors().await?;
    steady.close().await;
    sleepy.close().await;
    gate.cut();
    server.shutdown().await;
    Ok(format!(
        "signaling cut: leave \"expired\" seen {expired_after:.1?} after the cut, call connected with moving video at all {checks} checks; signaling back: both pages see each other, one tile each, after {back_in:.1?}"
    ))
}

/// Proof 3: a relay-only call whose coturn is killed and started again on
/// the same ports: the allocations are gone, so only an ICE restart brings
/// the call back, without reloading either page.
pub async fn call_recovers_by_ice_restart(env: Env) -> Outcome {
    let secret = random_secret();
    let mut coturn = Coturn::start(&env.scratch, &secret).await?;
    let hour = Duration::from_secs(3600);
    let server = TestServer::with(|s| s.api.turn = Some(coturn.minter(&secret, hour))).await;
    let room = format!("restart-{}", free_port());
    let url = format!("http://{}/?room={room}&ice=trickle&relay=1", server.addr);
    let (caller, callee, connect_ms) = super::prepare_and_connect(&env, &url).await?;

    coturn.stop();
    let broken_at = Instant::now();
    let broken = |s: &Value| {
        s["remotes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["connection"] != "connected")
    };
    caller
        .wait_for("the call to notice the lost relay", broken)
        .await?;
    let noticed = broken_at.elapsed();
    coturn.run().await?;
    let restored_at = Instant::now();
    let recovered = |s: &Value| {
        let remotes = s["remotes"].as_array().cloned().unwrap_or_default();
        remotes.len() == 1 && remotes[0]["connection"] == "connected"
    };
    let caller_summary = caller.wait_for("recovery", recovered).await?;
    let callee_summary = callee.wait_for("recovery", recovered).await?;
    let recovered_in = restored_at.elapsed();
    let restarts = caller_summary["remotes"][0]["restarts"]
        .as_u64()
        .unwrap_or(0)
        + callee_summary["remotes"][0]["restarts"]
            .as_u64()
            .unwrap_or(0);
    if restarts == 0 {
        return Err(format!(
            "the call came back without an ICE restart: {caller_summary} {callee_summary}"
        ));
    }
    caller.wait_for_frames(1).await?;
    callee.wait_for_frames(1).await?;
    relayed_both_ways(&caller).await?;
    caller.no_console_errors().await?;
    callee.no_console_errors().await?;
    let page_recovery = caller_summary["remotes"][0]["recoveries"].clone();
    caller.close().await;
    callee.close().await;
    server.shutdown().await;
    Ok(format!(
        "relay-only call connected in {connect_ms:.0} ms; coturn killed, the page saw it {noticed:.1?} later; coturn back on the same ports, both pages connected again {recovered_in:.1?} later by {restarts} ICE restart(s) (caller's broken-to-connected: {page_recovery} ms)"
    ))
}

/// A connection the page does not have is not created by a stray answer or
/// candidate (say, one for a call that just ended): only an offer starts
/// one. Before, each such message opened a never-negotiated connection and
/// an empty tile.
pub async fn late_messages_open_no_connection(env: Env) -> Outcome {
    let server = TestServer::start().await;
    let room = format!("late-{}", free_port());
    let page = Page::open(
        &env,
        "page",
        &format!("http://{}/?room={room}", server.addr),
    )
    .await?;
    page.click("prepare").await?;
    let summary = page.wait_for("joining", |s| s["online"] == true).await?;
    let name = summary["peer"].as_str().unwrap_or_default().to_owned();
    let mut stranger = server.peer(&room, "stranger");
    stranger.join().await;
    let candidate = serde_json::json!({"type": "candidate", "ice": {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host",
        "sdpMid": "0", "sdpMLineIndex": 0}});
    stranger.send_ok(Some(&name), &candidate).await;
    stranger
        .send_ok(
            Some(&name),
            &serde_json::json!({"type": "answer", "sdp": "v=0\r\n"}),
        )
        .await;
    page.wait_for("the stranger to be a member", |s| members(s) == 1)
        .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let summary = page.summary().await?;
    let tiles = page
        .eval("return document.querySelectorAll('.tile.remote').length")
        .await?;
    if summary["remotes"].as_array().is_none_or(|r| !r.is_empty()) || tiles != 0 {
        return Err(format!(
            "a late message opened a connection: {summary}, {tiles} tiles"
        ));
    }
    if let Some(error) = summary["error"].as_str() {
        return Err(format!(
            "the page reports an error for a late message: {error}"
        ));
    }
    page.no_console_errors().await?;
    page.close().await;
    server.shutdown().await;
    Ok("a late answer and candidate were dropped: no connection, no tile, no error".into())
}

/// On a server that admits ticket holders only, TURN credentials go to the
/// holders of a ticket with the `turn` grant: no ticket and a join-only one
/// are refused, the granted one is accepted by coturn, and two pages opened
/// from `#ticket=` links make a relay-only call; a page whose ticket lacks
/// the grant says why it cannot get its ICE servers.
pub async fn relay_only_call_with_tickets(env: Env) -> Outcome {
    use signal_relay::ticket::{TicketClaims, TicketIssuer, TicketKeys, TicketSecret};
    let ticket_secret = TicketSecret::new("coturn-scenario-ticket-secret-0123456789")?;
    let secret = random_secret();
    let coturn = Coturn::start(&env.scratch, &secret).await?;
    let mut keys = TicketKeys::new(None);
    keys.add_secret(None, &ticket_secret)?;
    let keys = std::sync::Arc::new(keys);
    let server = TestServer::with(|s| {
        s.api.turn = Some(coturn.minter(&secret, Duration::from_secs(3600)));
        s.api.tickets = Some(keys);
    })
    .await;
    let room = format!("invited-relay-{}", free_port());
    let issuer = TicketIssuer::new(None, &ticket_secret)?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs()
        + 600;
    let ticket = |grants: &[&str]| {
        issuer.issue(&TicketClaims {
            exp,
            room: room.clone(),
            grants: Some(grants.iter().map(|g| g.to_string()).collect()),
            ..TicketClaims::default()
        })
    };
    let (call, join_only) = (ticket(&["join", "turn"])?, ticket(&["join"])?);
    for (ticket, status) in [(None, 401), (Some(join_only.as_str()), 403)] {
        let request = common::client().get(server.url("/config"));
        let request = match ticket {
            Some(ticket) => request.bearer_auth(ticket),
            None => request,
        };
        let got = request.send().await.map_err(|e| e.to_string())?.status();
        if got != status {
            return Err(format!(
                "/config with {ticket:?} answered {got}, not {status}"
            ));
        }
    }
    let (username, credential) = minted_with(&server, Some(&call)).await?;
    if !coturn.allocates(&username, &credential) {
        return Err(format!(
            "coturn refused the credential minted for a ticket: {username}"
        ));
    }

    let page = format!("http://{}/?room={room}&ice=trickle&relay=1", server.addr);
    let url = format!("{page}#ticket={call}");
    let (caller, callee, connect_ms) = super::prepare_and_connect(&env, &url).await?;
    relayed_both_ways(&caller).await?;
    relayed_both_ways(&callee).await?;
    caller.no_console_errors().await?;
    callee.no_console_errors().await?;

    let refused = Page::open(&env, "no-turn", &format!("{page}#ticket={join_only}")).await?;
    refused.click("prepare").await?;
    let summary = refused
        .wait_until(
            "return window.signalDemo.summary()",
            "the page to say it may not use TURN",
            |s| Ok(s["error"].as_str().is_some_and(|e| e.contains("403"))),
        )
        .await?;
    if summary["online"] == true {
        return Err(format!("the page without the turn grant joined: {summary}"));
    }
    refused.close().await;
    caller.close().await;
    callee.close().await;
    server.shutdown().await;
    Ok(format!(
        "relay-only through coturn from #ticket= links: ICE connected in {connect_ms:.0} ms, relay/relay on both pages; /config refused no ticket (401) and a join-only one (403), and coturn accepted the credential minted for the turn grant; the join-only page said {:?}",
        summary["error"].as_str().unwrap_or_default()
    ))
}
