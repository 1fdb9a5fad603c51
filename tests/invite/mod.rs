//! Rooms that only the invited enter, as an operator runs them: a server
//! started with `--ticket-secret-file`, an invite link printed by
//! `signal-relay ticket --url`, and two pages opened from it. The same link
//! with an expired ticket says why on the page and joins nothing, and no
//! ticket reaches the server's log at the most verbose level.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use signal_relay::ticket::{TicketClaims, TicketIssuer, TicketSecret};

use super::common::{self, metric};
use super::page::{Engine, Page};
use super::{Env, Outcome, call_up, free_port};

/// The secret a test operator keeps in a file (32 bytes and more).
const SECRET: &str = "invite-scenario-secret-0123456789abcdef";

pub async fn invite_link_connects_a_call(env: Env, engines: [Engine; 2]) -> Outcome {
    let secret_file = env.scratch.join(format!("ticket-secret-{}", free_port()));
    std::fs::write(&secret_file, format!("{SECRET}\n")).map_err(|e| e.to_string())?;
    let secret_flag = secret_file.display().to_string();
    let mut server = common::spawn_server(&["--ticket-secret-file", &secret_flag], "trace").await;
    let room = format!("invited-{}", free_port());

    // The operator's path: one command prints the link to send.
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_signal-relay"))
        .args(["ticket", "--room", &room, "--ttl", "10m"])
        .args(["--url", &format!("{}/?auto=1", server.base)])
        .env("SIGNAL_TICKET_SECRET_FILE", &secret_flag)
        .output()
        .map_err(|e| e.to_string())?;
    if !printed.status.success() {
        return Err(format!(
            "signal-relay ticket failed: {}",
            String::from_utf8_lossy(&printed.stderr)
        ));
    }
    let link = String::from_utf8_lossy(&printed.stdout).trim().to_owned();
    let ticket = link
        .split_once("#ticket=")
        .map(|(_, t)| t.to_owned())
        .ok_or(format!("no ticket in the link {link}"))?;

    // Both invited pages join from the link; with ?auto=1 the second calls.
    let first = Page::open_in(&env, engines[0], "invited-1", &link).await?;
    first.wait_for("joining", |s| s["online"] == true).await?;
    let second = Page::open_in(&env, engines[1], "invited-2", &link).await?;
    let connected = call_up(&first, &second).await?;
    let connect_ms = connected["remotes"][0]["connectMs"]
        .as_f64()
        .unwrap_or(f64::NAN);
    first.no_console_errors().await?;
    second.no_console_errors().await?;
    let before = mailboxes(&server.base).await?;

    // The same link with a ticket that has expired: the page says so, and
    // the room does not change.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let expired = TicketIssuer::new(None, &TicketSecret::new(SECRET)?)?.issue(&TicketClaims {
        exp: now - 3600,
        room: room.clone(),
        ..TicketClaims::default()
    })?;
    let (page_part, _) = link.split_once('#').ok_or("a link without a fragment")?;
    let stale_link = format!("{page_part}#ticket={expired}");
    let stale = Page::open_in(&env, engines[1], "expired", &stale_link).await?;
    let shown = stale
        .wait_until(
            "return window.signalDemo ? window.signalDemo.summary() : null",
            "the page to say why it cannot join",
            |s| Ok(s["error"].as_str().is_some_and(|e| e.contains("expired"))),
        )
        .await?;
    let reason = shown["error"].as_str().unwrap_or_default().to_owned();
    // Give a page that would retry its time to do so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still: Value = stale.summary().await?;
    if still["online"] == true || still["members"].as_array().is_some_and(|m| !m.is_empty()) {
        return Err(format!("the expired page joined: {still}"));
    }
    let after = mailboxes(&server.base).await?;
    if after != before {
        return Err(format!(
            "the expired ticket changed the server: {before} mailboxes before, {after} after"
        ));
    }
    for page in [&first, &second] {
        let summary = page.summary().await?;
        if summary["members"].as_array().map_or(0, Vec::len) != 1 {
            return Err(format!("an invited page saw a third member: {summary}"));
        }
    }
    stale.close().await;
    first.close().await;
    second.close().await;

    server.terminate();
    let log = server.rest_of_log().await;
    let all: Vec<&String> = server.startup.iter().chain(&log).collect();
    for secret in [ticket.as_str(), expired.as_str(), SECRET] {
        // Any of the ticket's three parts would be enough to spot it.
        for part in secret.split('.').filter(|p| p.len() > 8) {
            if let Some(line) = all.iter().find(|line| line.contains(part)) {
                return Err(format!("the log carries a ticket or the secret: {line}"));
            }
        }
    }
    Ok(format!(
        "{engines:?} from `signal-relay ticket --url` ({} bytes): ICE connected in {connect_ms:.0} ms; the expired link showed {reason:?} and joined nothing; {} log lines at trace, no ticket in them",
        link.len(),
        all.len()
    ))
}

async fn mailboxes(base: &str) -> Result<f64, String> {
    let text = common::get_text(&format!("{base}/metrics")).await?;
    Ok(metric(&text, "signal_mailboxes"))
}
