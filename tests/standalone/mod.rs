//! The server binary on its own, the way a container platform runs it: copied
//! into an empty folder, started there with no flag and only `PORT` set. It
//! must serve the call page it was built with, the API, and a page load that
//! makes no failed request.
//!
//! Run inside the browser tests' private network namespace, so the
//! `0.0.0.0:$PORT` it listens on reaches nothing but `lo`.

use std::process::Stdio;
use std::time::Duration;

use signal_relay::wire::{Batch, RoomEvent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::common;
use super::page::Page;
use super::{Env, Outcome};

/// The copied binary, running; killed if the scenario ends early.
struct Alone {
    child: Child,
    base: String,
    startup: Vec<String>,
}

impl Alone {
    async fn start(env: &Env) -> Result<Alone, String> {
        let folder = env.scratch.join("alone");
        std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
        let binary = folder.join("signal-relay");
        std::fs::copy(env!("CARGO_BIN_EXE_signal-relay"), &binary)
            .map_err(|e| format!("cannot copy the binary: {e}"))?;
        let mut child = Command::new(&binary)
            .current_dir(&folder)
            // Nothing from the test's environment: no SIGNAL_* variable, no
            // RUST_LOG, only what a container platform sets.
            .env_clear()
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("the copied binary does not start: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut startup = Vec::new();
        let port = loop {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .map_err(|_| format!("no listening line in 10 s: {startup:?}"))?
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("the binary exited: {startup:?}"))?;
            let port = line
                .split_once("listening on http://0.0.0.0:")
                .and_then(|(_, rest)| rest.split('/').next())
                .and_then(|port| port.parse::<u16>().ok());
            startup.push(line);
            if let Some(port) = port {
                break port;
            }
        };
        // Keep reading, so the binary never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Alone {
            child,
            base: format!("http://127.0.0.1:{port}"),
            startup,
        })
    }

    /// SIGTERM, by its process id, and wait for a clean exit.
    async fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().ok_or("already exited")?;
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .map_err(|_| "no exit 10 s after SIGTERM".to_owned())?
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("exited with {status} after SIGTERM"))
        }
    }
}

/// How many requests the server answered with a 4xx or 5xx, by its metrics.
async fn failed_requests(base: &str) -> Result<u64, String> {
    let text = common::get_text(&format!("{base}/metrics")).await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("signal_rejected_requests_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

pub async fn the_binary_alone_serves_the_page(env: Env) -> Outcome {
    let alone = Alone::start(&env).await?;
    let said_port = alone.startup.iter().any(|line| line.contains("PORT"));
    if !said_port {
        return Err(format!(
            "the start-up lines do not say the port came from PORT: {:?}",
            alone.startup
        ));
    }

    // The API, from the folder with nothing in it.
    let reply = common::client()
        .get(format!(
            "{}/signal?room=alone&peer=probe&timeout=0",
            alone.base
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if reply.status() != reqwest::StatusCode::OK {
        return Err(format!("/signal answered {}", reply.status()));
    }
    let batch: Batch = reply.json().await.map_err(|e| e.to_string())?;
    if !matches!(
        batch
            .messages
            .first()
            .and_then(|m| RoomEvent::parse(&m.data)),
        Some(RoomEvent::Peers { .. })
    ) {
        return Err(format!("the first poll is not a peers event: {batch:?}"));
    }

    // The page, in Chromium: every request it makes succeeds.
    let page = Page::open(&env, "alone", &format!("{}/?room=alone-page", alone.base)).await?;
    page.wait_for("the page's module", |s| s["online"] == false)
        .await?;
    // Late loads (the icon) come after the module has run.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    page.no_console_errors().await?;
    let resources = page
        .eval(
            "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).map(e => [e.name, e.responseStatus])",
        )
        .await?;
    let loads: Vec<(String, u64)> = resources
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| Some((entry[0].as_str()?.to_owned(), entry[1].as_u64()?)))
        .collect();
    let failed: Vec<&(String, u64)> = loads.iter().filter(|(_, s)| *s >= 400).collect();
    if loads.len() < 4 || !failed.is_empty() {
        return Err(format!("page loads {loads:?}, failed {failed:?}"));
    }
    let refused = failed_requests(&alone.base).await?;
    if refused > 0 {
        return Err(format!(
            "the server answered {refused} request(s) of the page load with an error"
        ));
    }
    let names: Vec<&str> = loads
        .iter()
        .filter_map(|(url, _)| url.rsplit('/').next())
        .collect();
    page.close().await;
    alone.stop().await?;
    Ok(format!(
        "the binary alone in an empty folder with only PORT=0: /signal answered, the page loaded {names:?} with no failed request (console, resource statuses, server's 4xx/5xx count 0), SIGTERM exited 0"
    ))
}
