//! TURN credentials minted at `/config` (docs/security.md, "TURN
//! credentials"): their format, their lifetime, the rate limit over
//! minting, and that the secret never leaves the server. That coturn
//! accepts them, and refuses them with the wrong secret or once expired,
//! is proven with a real coturn in `tests/browser.rs`.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use clap::Parser;
use common::{TestServer, client};
use reqwest::StatusCode;
use serde_json::{Value, json};
use signal_relay::{Config, Settings};

const SECRET: &str = "turn-shared-secret-for-tests-7";
const UDP: &str = "turn:127.0.0.1:3478?transport=udp";
const TCP: &str = "turn:127.0.0.1:3478?transport=tcp";

async fn turn_server(extra: &[&str]) -> TestServer {
    // One file per server: the tests of this binary run at once, and one
    // removing a shared file would pull it from under another's start.
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let secret_file = std::env::temp_dir().join(format!("turn-secret-{}-{n}", std::process::id()));
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let mut flags = vec![
        "--ice-server",
        "stun:127.0.0.1:3478",
        "--turn-url",
        UDP,
        "--turn-url",
        TCP,
        "--turn-secret-file",
        secret_file.to_str().unwrap(),
    ];
    flags.extend_from_slice(extra);
    // Through the flags, as a user gives them: reading the secret file is
    // the part of minting that only the command line does.
    let config = Config::try_parse_from(["signal-relay"].iter().chain(&flags)).unwrap();
    let settings = Settings {
        listen: common::settings().listen,
        ..config.settings().unwrap()
    };
    let server = TestServer::from_settings(settings).await;
    std::fs::remove_file(&secret_file).unwrap();
    server
}

async fn config(server: &TestServer, query: &str) -> (StatusCode, Value) {
    let reply = client()
        .get(server.url(&format!("/config{query}")))
        .send()
        .await
        .unwrap();
    let status = reply.status();
    (status, reply.json().await.unwrap())
}

/// What coturn computes to check a password, written here independently
/// of the server's code: base64(HMAC-SHA1(secret, username)).
fn expected_credential(username: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, SECRET.as_bytes());
    base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, username.as_bytes()).as_ref())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn config_mints_a_credential_for_the_named_caller() {
    let server = turn_server(&["--turn-ttl", "600"]).await;
    let (status, body) = config(&server, "?peer=alice").await;
    assert_eq!(status, StatusCode::OK);
    let servers = body["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{body}");
    assert_eq!(servers[0], json!({"urls": "stun:127.0.0.1:3478"}));
    let turn = &servers[1];
    assert_eq!(turn["urls"], json!([UDP, TCP]));
    let username = turn["username"].as_str().unwrap();
    let (expiry, id) = username.split_once(':').unwrap();
    assert_eq!(id, "alice");
    let expiry: u64 = expiry.parse().unwrap();
    let now = unix_now();
    assert!(
        (now + 598..=now + 601).contains(&expiry),
        "expiry {expiry} is not now ({now}) + 600 s"
    );
    assert_eq!(turn["credential"], expected_credential(username));
    assert!(!body.to_string().contains(SECRET));
    server.shutdown().await;
}

#[tokio::test]
async fn an_unnamed_caller_gets_a_fresh_random_id_and_a_bad_name_a_400() {
    let server = turn_server(&[]).await;
    let (_, first) = config(&server, "").await;
    let (_, second) = config(&server, "").await;
    let ids: Vec<String> = [&first, &second]
        .iter()
        .map(|b| {
            let username = b["iceServers"][1]["username"].as_str().unwrap();
            assert_eq!(
                b["iceServers"][1]["credential"],
                expected_credential(username)
            );
            username.split_once(':').unwrap().1.to_owned()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
    // Default lifetime: one hour.
    let expiry: u64 = first["iceServers"][1]["username"]
        .as_str()
        .unwrap()
        .split_once(':')
        .unwrap()
        .0
        .parse()
        .unwrap();
    assert!(expiry.abs_diff(unix_now() + 3600) <= 2, "{expiry}");

    let (status, body) = config(&server, "?peer=not%20a%20name").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("`peer`"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn without_turn_flags_config_serves_only_the_static_servers() {
    let server = TestServer::with(|s| {
        s.api.ice_servers = vec![json!({"urls": "stun:127.0.0.1:3478"})];
    })
    .await;
    let (_, body) = config(&server, "?peer=alice").await;
    assert_eq!(
        body,
        json!({"iceServers": [{"urls": "stun:127.0.0.1:3478"}]})
    );
    server.shutdown().await;
}

/// Minting is covered by the per-address rate limit: a script that loops on
/// /config gets 429 like one that loops on /signal.
#[tokio::test]
async fn minting_is_rate_limited_per_address() {
    let server = turn_server(&["--rate-limit", "1", "--rate-burst", "3"]).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(config(&server, "?peer=alice").await.0);
    }
    let minted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(minted <= 4, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    server.shutdown().await;
}

/// `--help` shows the flags but not the secret an environment gives them.
#[test]
fn help_does_not_show_the_secret() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signal-relay"))
        .arg("--help")
        .env("SIGNAL_TURN_SECRET", "help-must-not-show-this")
        .env("SIGNAL_TURN_URL", TCP)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--turn-secret-file"), "{help}");
    assert!(help.contains("--turn-ttl"), "{help}");
    assert!(!help.contains("help-must-not-show-this"), "{help}");
}

/// A misconfiguration is refused at start, with the fix in the message.
#[test]
fn a_turn_url_without_a_secret_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signal-relay"))
        .args(["--listen", "127.0.0.1:0", "--turn-url", TCP])
        .env_remove("SIGNAL_TURN_SECRET")
        .env_remove("SIGNAL_TURN_SECRET_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("--turn-secret-file"), "{log}");
}
