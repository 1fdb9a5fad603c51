//! Real WHIP and WHEP clients against pages in Chromium: Debian's
//! simple-whip-client (GStreamer webrtcbin) publishing to a page, a plain
//! `fetch` + `RTCPeerConnection` WHEP player pulling a page's camera, and the
//! README's one-line curl. Each runs direct and through the browser tests'
//! WebSocket-blocking nginx.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{self, TestServer};
use super::page::Page;
use super::{Env, Outcome, Proxy, connected_to, free_port};

pub mod whep_library;

pub const WHIP_CLIENT: &str = "/usr/bin/whip-client";
/// The offer the README's curl line posts: simple-whip-client's own
/// (sendonly VP8 and Opus, candidates included), captured once.
const OFFER_FILE: &str = "tests/whip_clients/offer.sdp";
const VIDEO: &str = "videotestsrc is-live=true pattern=ball ! videoconvert ! queue ! vp8enc deadline=1 ! rtpvp8pay pt=96 ssrc=2 ! queue ! application/x-rtp,media=video,encoding-name=VP8,payload=96";
const AUDIO: &str = "audiotestsrc is-live=true wave=red-noise ! audioconvert ! audioresample ! queue ! opusenc ! rtpopuspay pt=100 ssrc=1 ! queue ! application/x-rtp,media=audio,encoding-name=OPUS,payload=100";

/// Where a scenario's pages and clients reach the server: straight, or
/// through the nginx that blocks WebSocket.
async fn origin(env: &Env, through_proxy: bool) -> Result<(String, Option<Proxy>), String> {
    if through_proxy {
        let proxy = Proxy::start(env, &[env.server]).await?;
        Ok((format!("http://127.0.0.1:{}", proxy.port), Some(proxy)))
    } else {
        Ok((format!("http://{}", env.server), None))
    }
}

/// A page in `room`, prepared (camera on), with the WHIP/WHEP URLs it shows.
async fn prepared_page(
    env: &Env,
    name: &str,
    origin: &str,
    room: &str,
) -> Result<(Page, Value), String> {
    let page = Page::open(env, name, &format!("{origin}/?room={room}")).await?;
    page.click("prepare").await?;
    let summary = page
        .wait_for("the page's WHIP and WHEP URLs", |s| {
            s["online"] == true && s["whip"].as_str().is_some_and(|u| !u.is_empty())
        })
        .await?;
    Ok((page, summary))
}

/// A second address inside the browser tests' network namespace: libnice
/// gathers no host candidate on loopback, so with `lo` alone GStreamer has
/// nothing to offer. A veth pair stays inside the namespace.
struct Veth;

impl Veth {
    fn add() -> Result<Veth, String> {
        let _ = Command::new("ip").args(["link", "del", "whip0"]).status();
        for args in [
            &[
                "link", "add", "whip0", "type", "veth", "peer", "name", "whip1",
            ][..],
            &["addr", "add", "10.213.0.1/24", "dev", "whip0"],
            &["link", "set", "whip0", "up"],
            &["link", "set", "whip1", "up"],
        ] {
            let status = Command::new("ip")
                .args(args)
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("ip {} failed", args.join(" ")));
            }
        }
        Ok(Veth)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", "whip0"]).status();
    }
}

/// Builds `no_upnp.c` into `scratch` once; returns the folder to put first
/// on `LD_LIBRARY_PATH` (see that file for why).
fn no_upnp_library(scratch: &Path) -> Result<PathBuf, String> {
    let dir = scratch.join("no-upnp");
    let library = dir.join("libgupnp-igd-1.0.so.4");
    if library.exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/whip_clients/no_upnp.c");
    let status = Command::new("gcc")
        .args([
            "-shared",
            "-fPIC",
            "-Wl,-soname,libgupnp-igd-1.0.so.4",
            "-o",
        ])
        .arg(&library)
        .arg(&source)
        .status()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if status.success() {
        Ok(dir)
    } else {
        Err("gcc could not build no_upnp.c".into())
    }
}

/// simple-whip-client, publishing GStreamer's test video and audio.
struct WhipClient {
    child: Child,
    log: PathBuf,
}

impl WhipClient {
    /// Publishes to `url`, with `token` as its bearer token when given.
    fn publish(env: &Env, url: &str, token: Option<&str>) -> Result<WhipClient, String> {
        let log = env.scratch.join(format!("whip-client-{}.log", free_port()));
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let token_args = token.map(|t| vec!["-t", t]).unwrap_or_default();
        let child = Command::new(WHIP_CLIENT)
            .args(["-u", url, "-V", VIDEO, "-A", AUDIO, "-l", "5", "-o"])
            .args(token_args)
            .env("LD_LIBRARY_PATH", no_upnp_library(&env.scratch)?)
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start whip-client: {e}"))?;
        Ok(WhipClient { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it exited by itself within `limit`.
    async fn exits_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// SIGTERM, by its id: it DELETEs its session and exits.
    async fn stop(mut self) -> Result<String, String> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "whip-client did not exit on SIGTERM:\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for WhipClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Proof 1: simple-whip-client publishes to a page through
/// `/whip/{room}/{peer}`, trickling its candidates with PATCH; the page
/// shows its video with frames advancing; its DELETE removes the tile.
/// How a scenario's WHIP client reaches the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Straight to the browser tests' open server.
    Direct,
    /// Through the nginx that blocks WebSocket.
    Proxy,
    /// To a server that admits ticket holders only: the page joins from a
    /// `#ticket=` link, the tool's `-t` is a ticket with the `whip` grant
    /// (after one without it was refused).
    Ticket,
}

/// A server that admits ticket holders only, and a ticket maker for it.
struct Invited {
    server: TestServer,
    issuer: signal_relay::ticket::TicketIssuer,
}

impl Invited {
    const SECRET: &str = "whip-scenario-ticket-secret-0123456789";

    async fn start() -> Result<Invited, String> {
        let secret = signal_relay::ticket::TicketSecret::new(Invited::SECRET)?;
        let mut keys = signal_relay::ticket::TicketKeys::new(None);
        keys.add_secret(None, &secret)?;
        let keys = std::sync::Arc::new(keys);
        Ok(Invited {
            server: TestServer::with(|s| s.api.tickets = Some(keys)).await,
            issuer: signal_relay::ticket::TicketIssuer::new(None, &secret)?,
        })
    }

    fn ticket(&self, room: &str, grants: &[&str]) -> Result<String, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        self.issuer.issue(&signal_relay::ticket::TicketClaims {
            exp: now + 600,
            room: room.to_owned(),
            grants: Some(grants.iter().map(|g| g.to_string()).collect()),
            ..Default::default()
        })
    }
}

pub async fn simple_whip_client_publishes_to_a_page(env: Env, via: Via) -> Outcome {
    let _veth = Veth::add()?;
    let invited = match via {
        Via::Ticket => Some(Invited::start().await?),
        _ => None,
    };
    let (origin, proxy) = match &invited {
        Some(invited) => (format!("http://{}", invited.server.addr), None),
        None => origin(&env, via == Via::Proxy).await?,
    };
    let room = format!("whip-{}", free_port());
    let (page, summary) = match &invited {
        Some(invited) => {
            let link_room = format!("{room}#ticket={}", invited.ticket(&room, &["join"])?);
            prepared_page(&env, "studio", &origin, &link_room).await?
        }
        None => prepared_page(&env, "studio", &origin, &room).await?,
    };
    let url = summary["whip"].as_str().unwrap_or_default().to_owned();
    let mut refused = String::new();
    let token = match &invited {
        Some(invited) => {
            // A ticket that may join but not publish: the tool gives up.
            let join_only = invited.ticket(&room, &["join"])?;
            let mut tool = WhipClient::publish(&env, &url, Some(&join_only))?;
            if !tool.exits_within(Duration::from_secs(15)).await {
                return Err(format!(
                    "whip-client with a join-only ticket kept going:\n{}",
                    tool.log()
                ));
            }
            let metrics = common::get_text(&invited.server.url("/metrics")).await?;
            let counted = common::metric(
                &metrics,
                "signal_ticket_refusals_total{reason=\"grant_missing\"}",
            );
            if counted != 1.0
                || !page.summary().await?["remotes"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
            {
                return Err(format!(
                    "the join-only ticket was not refused as it should be ({counted} refusals counted)"
                ));
            }
            refused = "; a join-only ticket was refused (403) and left no tile".into();
            Some(invited.ticket(&room, &["whip"])?)
        }
        None => None,
    };
    let started = Instant::now();
    let tool = WhipClient::publish(&env, &url, token.as_deref())?;
    let connected = page
        .wait_for("the tool's call", |s| connected_to(s, 1))
        .await;
    if let Err(error) = connected {
        return Err(format!("{error}\nwhip-client:\n{}", tool.log()));
    }
    page.wait_for_frames(1).await?;
    let playing_in = started.elapsed();
    // The page learnt the tool's candidates from its PATCHes (its offer
    // carried none): the pair's remote candidate is a host candidate, not
    // a peer-reflexive one discovered from the tool's checks.
    let pairs = page
        .eval_async("window.signalDemo.selectedPairs().then(done)")
        .await?;
    if pairs[0]["remote"] != "host" {
        return Err(format!(
            "the selected pair is {pairs}: the PATCHed candidates did not arrive"
        ));
    }
    let log = tool.stop().await?;
    if !log.contains("Disconnecting from server") || log.contains("[WARN]  [") {
        return Err(format!("whip-client's DELETE did not succeed:\n{log}"));
    }
    let deleted = Instant::now();
    page.wait_for("the tile removed", |s| {
        s["remotes"].as_array().is_some_and(Vec::is_empty)
    })
    .await?;
    let removed_in = deleted.elapsed();
    page.no_console_errors().await?;
    page.close().await;
    let ticketed = if token.is_some() {
        " with a whip ticket (-t)"
    } else {
        ""
    };
    let mut report = format!(
        "simple-whip-client published to {url}{ticketed}: video playing {playing_in:.1?} after start, selected pair {}/{} (candidates by PATCH); SIGTERM's DELETE removed the tile in {removed_in:.1?}{refused}",
        pairs[0]["local"].as_str().unwrap_or("?"),
        pairs[0]["remote"].as_str().unwrap_or("?"),
    );
    if let Some(proxy) = proxy {
        report.push_str(&format!("; {}", proxy.websocket_blocked().await?));
        proxy.stop();
    }
    Ok(report)
}

/// A WHEP player with no page of ours: on a blank page of the same origin,
/// a script makes a `recvonly` offer, POSTs it, plays the answer.
const WHEP_PLAYER: &str = r#"
const url = WHEP_URL;
(async () => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  document.body.append(video);
  pc.ontrack = ({ track, streams }) => {
    video.srcObject = streams[0] ?? new MediaStream([track]);
  };
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
  });
  const reply = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  if (reply.status !== 201) return done({ error: `${reply.status}: ${await reply.text()}` });
  const resource = reply.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: await reply.text() });
  window.player = { pc, video, resource };
  done({ resource });
})().catch((e) => done({ error: String(e) }));
"#;

/// Proof 2: a WHEP player in a second Chromium page pulls the first page's
/// camera through `/whep/{room}/{peer}` and shows frames.
pub async fn a_whep_player_plays_a_pages_camera(env: Env, through_proxy: bool) -> Outcome {
    let (origin, proxy) = origin(&env, through_proxy).await?;
    let room = format!("whep-{}", free_port());
    let (camera, summary) = prepared_page(&env, "camera", &origin, &room).await?;
    let url = summary["whep"].as_str().unwrap_or_default().to_owned();
    let player = Page::open(&env, "player", &format!("{origin}/healthz")).await?;
    let started = Instant::now();
    let posted = player
        .eval_async(&WHEP_PLAYER.replace("WHEP_URL", &format!("{url:?}")))
        .await?;
    if let Some(error) = posted["error"].as_str() {
        return Err(format!("the WHEP player failed: {error}"));
    }
    let frames = |s: &Value| s["time"].as_f64().unwrap_or(0.0);
    let state = "return { ice: window.player.pc.iceConnectionState, width: window.player.video.videoWidth, time: window.player.video.currentTime }";
    let first = player
        .wait_until(state, "the camera's frames in the player", |s| {
            Ok(s["width"].as_u64().unwrap_or(0) > 0 && frames(s) > 0.0)
        })
        .await?;
    let playing_in = started.elapsed();
    player
        .wait_until(state, "the frames advancing", |s| {
            Ok(frames(s) > frames(&first))
        })
        .await?;
    camera
        .wait_for("the player's call", |s| connected_to(s, 1))
        .await?;
    camera.no_console_errors().await?;
    player.no_console_errors().await?;
    player.close().await;
    camera.close().await;
    let mut report = format!(
        "a fetch + RTCPeerConnection player pulled {url}: the camera's video ({}px wide) playing {playing_in:.1?} after its POST",
        first["width"]
    );
    if let Some(proxy) = proxy {
        report.push_str(&format!("; {}", proxy.websocket_blocked().await?));
        proxy.stop();
    }
    Ok(report)
}

/// The README's curl line, from its "Publish with WHIP" block.
fn readme_curl_line() -> Result<String, String> {
    let readme = include_str!("../../README.md");
    let section = readme
        .find("WHIP with curl")
        .map(|at| &readme[at..])
        .ok_or("README has no WHIP with curl block")?;
    let start = section.find("```sh\n").ok_or("no sh block")? + "```sh\n".len();
    let end = start + section[start..].find("```").ok_or("block not closed")?;
    Ok(section[start..end].trim().to_owned())
}

/// Proof 3: the README's one curl command posts the captured offer file
/// and prints the page's answer SDP.
pub async fn curl_posts_an_offer_and_prints_the_answer(env: Env, through_proxy: bool) -> Outcome {
    let (origin, proxy) = origin(&env, through_proxy).await?;
    let room = format!("curl-{}", free_port());
    let (page, _) = prepared_page(&env, "answering", &origin, &room).await?;
    let line = readme_curl_line()?;
    let command = line
        .replace("http://127.0.0.1:3000", &origin)
        .replace("/whip/demo", &format!("/whip/{room}"));
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&command)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() || !answer.starts_with("v=0") || !answer.contains("a=candidate:") {
        return Err(format!(
            "`{command}` printed:\n{answer}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    page.wait_for("the curl session in the page", |s| {
        s["remotes"].as_array().is_some_and(|r| r.len() == 1)
    })
    .await?;
    page.no_console_errors().await?;
    page.close().await;
    let candidates = answer.matches("a=candidate:").count();
    let mut report = format!(
        "`{line}` printed the page's answer ({} bytes, {candidates} candidates, {OFFER_FILE})",
        answer.len()
    );
    if let Some(proxy) = proxy {
        report.push_str(&format!("; {}", proxy.websocket_blocked().await?));
        proxy.stop();
    }
    Ok(report)
}

/// Proof 4 through the proxy (tests/whip.rs proves it direct, on both
/// stores): 404, 415, 413, 412, a PATCH without If-Match taken, and a peer that ignores the offer,
/// a clear 504 that leaves nothing behind in the room.
pub async fn whip_errors_through_the_proxy(env: Env) -> Outcome {
    let server = TestServer::with(|s| s.api.whip_timeout = Duration::from_secs(1)).await;
    let proxy = Proxy::start(&env, &[server.addr]).await?;
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let offer = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(OFFER_FILE))
        .map_err(|e| e.to_string())?;
    let mut silent = common::Peer::new(&base, "errors", "silent");
    silent.join().await;
    let http = common::client();
    let post = |path: &str, content_type: &str, body: String| {
        http.post(format!("{base}{path}"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let mut seen = Vec::new();
    let mut expect = async |reply: Result<reqwest::Response, reqwest::Error>, status: u16| {
        let reply = reply.map_err(|e| e.to_string())?;
        let got = reply.status().as_u16();
        let media = reply.headers().get("content-type").cloned();
        let body = reply.text().await.unwrap_or_default();
        if got != status
            || media
                .as_ref()
                .is_none_or(|m| m != "application/problem+json")
        {
            return Err(format!(
                "expected a {status} problem, got {got} {media:?}: {body}"
            ));
        }
        seen.push(status);
        Ok::<(), String>(())
    };
    expect(
        post("/whip/errors/nobody", "application/sdp", offer.clone()).await,
        404,
    )
    .await?;
    expect(
        post("/whip/errors/silent", "text/plain", offer.clone()).await,
        415,
    )
    .await?;
    let huge = format!("v=0\r\n{}", "a=x\r\n".repeat(20_000));
    expect(
        post("/whip/errors/silent", "application/sdp", huge).await,
        413,
    )
    .await?;
    let started = Instant::now();
    expect(
        post("/whip/errors/silent", "application/sdp", offer.clone()).await,
        504,
    )
    .await?;
    let waited = started.elapsed();
    let mut probe = common::Peer::new(&base, "errors", "probe");
    let present = probe.join().await;
    if present != ["silent"] {
        return Err(format!(
            "the timed-out session stayed in the room: {present:?}"
        ));
    }
    probe.leave().await;

    // A live session, answered by a protocol peer, for PATCH's preconditions.
    silent.poll(0.0).await;
    let answering = tokio::spawn(async move {
        for _ in 0..10 {
            for message in silent.poll(2.0).await {
                let data = common::parsed(&message);
                if data["type"] == "offer" {
                    let from = common::sender(&message).unwrap_or_default().to_owned();
                    let answer = serde_json::json!({"type": "answer", "sdp": "v=0\r\n"});
                    silent.send_ok(Some(&from), &answer).await;
                    return;
                }
            }
        }
    });
    let created = post("/whip/errors/silent", "application/sdp", offer)
        .await
        .map_err(|e| e.to_string())?;
    let _ = answering.await;
    let location = created
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or("no Location")?
        .to_owned();
    let patch = |if_match: Option<&str>| {
        let mut request = http
            .patch(format!("{base}{location}"))
            .header("Content-Type", "application/trickle-ice-sdpfrag")
            .body("a=end-of-candidates\r\n");
        if let Some(tag) = if_match {
            request = request.header("If-Match", tag);
        }
        request.send()
    };
    expect(patch(Some("\"stale\"")).await, 412).await?;
    // Without If-Match a trickle PATCH is taken (RFC 9725 makes If-Match
    // the client's duty, and some players never send it).
    let unconditional = patch(None).await.map_err(|e| e.to_string())?.status();
    if unconditional != 204 {
        return Err(format!(
            "a PATCH without If-Match got {unconditional}, not 204"
        ));
    }
    let report = format!(
        "through the proxy: {seen:?} as problems; the unanswered offer gave 504 after {waited:.1?} and left nothing in the room; {}",
        proxy.websocket_blocked().await?
    );
    proxy.stop();
    server.shutdown().await;
    Ok(report)
}
