//! The WHEP player most used from npm, `whip-whep`'s `WHEPClient`, pulling
//! a page's camera on a server that admits ticket holders only: its offer
//! carries a ticket with the `whep` grant as its bearer token, and its
//! trickle PATCHes, which never carry `If-Match` (it does not keep the
//! 201's ETag), are each taken.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value;
use signal_relay::ticket::{TicketClaims, TicketIssuer, TicketKeys, TicketSecret};

use super::super::common::TestServer;
use super::super::page::Page;
use super::super::{Env, Outcome, connected_to, free_port};
use super::prepared_page;

const PACKAGE: &str = "whip-whep@1.2.0";
const SECRET: &str = "whep-library-scenario-secret-0123456789";

/// Where `npm pack` unpacked the package, in the cache the test runs share.
fn package_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("signal-relay").join(PACKAGE.replace('@', "-"))
}

/// Fetches the package from the npm registry when it is not in the cache;
/// runs before the tests enter their network namespace.
pub fn fetch_if_missing() -> Result<(), String> {
    let dir = package_dir();
    if dir.join("package/whep.js").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let packed = Command::new("npm")
        .args(["pack", PACKAGE, "--silent"])
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    let tarball = String::from_utf8_lossy(&packed.stdout).trim().to_owned();
    if !packed.status.success() || tarball.is_empty() {
        return Err(format!(
            "npm pack {PACKAGE} failed: {}",
            String::from_utf8_lossy(&packed.stderr)
        ));
    }
    let unpacked = Command::new("tar")
        .args(["xzf", &tarball])
        .current_dir(&dir)
        .status()
        .map_err(|e| e.to_string())?;
    if unpacked.success() {
        Ok(())
    } else {
        Err(format!("cannot unpack {tarball}"))
    }
}

/// In the player page: `fetch` records each PATCH's status, and the
/// library's module is imported from a `data:` URL (the page is the
/// server's own origin, which serves no npm module).
const PLAYER: &str = r#"
(async () => {
  window.patches = [];
  const realFetch = window.fetch.bind(window);
  window.fetch = async (url, options) => {
    const reply = await realFetch(url, options);
    if (options?.method === 'PATCH') window.patches.push({ status: reply.status, ifMatch: options.headers?.['If-Match'] ?? null });
    return reply;
  };
  const { WHEPClient } = await import('data:text/javascript;base64,MODULE');
  const attempt = async (token) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const client = new WHEPClient();
    try {
      await client.view(pc, URL_, token);
      return { pc, client };
    } catch (error) {
      pc.close();
      return { error: String(error) };
    }
  };
  const refused = await attempt(JOIN_ONLY);
  if (!refused.error) return done({ error: 'a ticket without the whep grant was taken' });
  const { pc, client, error } = await attempt(WHEP_TICKET);
  if (error) return done({ error });
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  document.body.append(video);
  const track = pc.getReceivers().find((r) => r.track.kind === 'video').track;
  video.srcObject = new MediaStream([track]);
  window.player = { pc, video, client };
  done({ refused: refused.error });
})().catch((e) => done({ error: String(e) }));
"#;

pub async fn whep_library_plays_a_pages_camera_with_a_ticket(env: Env) -> Outcome {
    let secret = TicketSecret::new(SECRET)?;
    let mut keys = TicketKeys::new(None);
    keys.add_secret(None, &secret)?;
    let server = TestServer::with(|s| s.api.tickets = Some(Arc::new(keys))).await;
    let origin = format!("http://{}", server.addr);
    let room = format!("whep-lib-{}", free_port());
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs()
        + 600;
    let issuer = TicketIssuer::new(None, &secret)?;
    let ticket = |grants: &[&str]| {
        issuer.issue(&TicketClaims {
            exp,
            room: room.clone(),
            grants: Some(grants.iter().map(|g| g.to_string()).collect()),
            ..TicketClaims::default()
        })
    };
    let camera_ticket = ticket(&["join"])?;
    let (camera, summary) = prepared_page(
        &env,
        "camera",
        &origin,
        &format!("{room}#ticket={camera_ticket}"),
    )
    .await?;
    let url = summary["whep"].as_str().unwrap_or_default().to_owned();

    let module = std::fs::read(package_dir().join("package/whep.js"))
        .map_err(|e| format!("{PACKAGE} is not in the cache: {e}"))?;
    let script = PLAYER
        .replace(
            "MODULE",
            &base64::engine::general_purpose::STANDARD.encode(module),
        )
        .replace("URL_", &format!("{url:?}"))
        .replace("JOIN_ONLY", &format!("{:?}", ticket(&["join"])?))
        .replace("WHEP_TICKET", &format!("{:?}", ticket(&["whep"])?));
    let player = Page::open(&env, "whep-library", &format!("{origin}/healthz")).await?;
    let started = Instant::now();
    let viewed = player.eval_async(&script).await?;
    if let Some(error) = viewed["error"].as_str() {
        return Err(format!("WHEPClient failed: {error}"));
    }
    let frames = |s: &Value| s["time"].as_f64().unwrap_or(0.0);
    let state = "return { width: window.player.video.videoWidth, time: window.player.video.currentTime, patches: window.patches }";
    let first = player
        .wait_until(state, "the camera's frames in WHEPClient's player", |s| {
            Ok(s["width"].as_u64().unwrap_or(0) > 0 && frames(s) > 0.0)
        })
        .await?;
    let playing_in = started.elapsed();
    camera
        .wait_for("the player's call", |s| connected_to(s, 1))
        .await?;
    let last = player
        .wait_until(state, "the frames advancing", |s| {
            Ok(frames(s) > frames(&first))
        })
        .await?;
    let patches = last["patches"].as_array().cloned().unwrap_or_default();
    if patches.is_empty() {
        return Err("WHEPClient trickled nothing: no PATCH was made".into());
    }
    if let Some(bad) = patches
        .iter()
        .find(|p| p["status"] != 204 || !p["ifMatch"].is_null())
    {
        return Err(format!(
            "a trickle PATCH was not taken as sent: {bad} of {patches:?}"
        ));
    }
    camera.no_console_errors().await?;
    player.close().await;
    camera.close().await;
    server.shutdown().await;
    Ok(format!(
        "{PACKAGE} WHEPClient.view with a whep ticket pulled {url}: video ({}px wide) playing {playing_in:.1?} after its POST; its {} PATCHes without If-Match each got 204; a join-only ticket was refused ({})",
        first["width"],
        patches.len(),
        viewed["refused"].as_str().unwrap_or_default()
    ))
}
