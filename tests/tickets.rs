//! Join tickets made by a foreign issuer (PyJWT, installed from PyPI when
//! missing), checked by a real server: each algorithm admits, each kind of
//! bad ticket is refused with its status and RFC 6750 error, and a refusal
//! leaves the room exactly as it was.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use common::{Peer, RedisServer, TestServer, metric};
use reqwest::StatusCode;
use serde_json::{Value, json};
use signal_relay::settings::StoreChoice;
use signal_relay::{Config, Settings};

const ISSUER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tickets/issuer.py");

/// PyJWT and cryptography, installed with pip when this Python lacks them.
fn ensure_pyjwt() {
    let has = || {
        Command::new("python3")
            .args(["-c", "import jwt, cryptography"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has() {
        return;
    }
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "pyjwt", "cryptography"])
            .args(extra)
            .status()
            .is_ok_and(|s| s.success())
    };
    // Debian's own python3 comes without pip, and is "externally managed"
    // (PEP 668).
    let installed = pip(&[]) || pip(&["--break-system-packages"]) || {
        common::apt_install_missing(&[("/usr/bin/pip3", "python3-pip")])
            .expect("cannot install python3-pip");
        pip(&[]) || pip(&["--break-system-packages"])
    };
    assert!(installed, "cannot install PyJWT with pip");
    assert!(has(), "PyJWT installed but not importable");
}

/// A folder with the issuer's secret and key pairs, made once per run.
fn keys() -> &'static Path {
    static KEYS: OnceLock<PathBuf> = OnceLock::new();
    KEYS.get_or_init(|| {
        ensure_pyjwt();
        let dir = std::env::temp_dir().join(format!("signal-relay-tickets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("python3")
            .args([ISSUER, "keys", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "the issuer could not make keys");
        dir
    })
}

/// Tickets signed by PyJWT as `specs` say (see issuer.py).
fn sign(specs: &Value) -> Value {
    let mut child = Command::new("python3")
        .args([ISSUER, "sign", keys().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(specs.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the issuer failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The settings the binary makes of these ticket flags (and `extra`): the
/// secret and all three public keys, each under its key id.
fn ticket_settings(extra: &[&str]) -> Settings {
    let dir = keys();
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let mut args = vec![
        "signal-relay".to_owned(),
        "--ticket-secret-file".into(),
        format!("hs={}", file("hs.secret")),
    ];
    for key in ["es", "rs", "ed"] {
        args.push("--ticket-public-key-file".into());
        args.push(format!("{key}={}", file(&format!("{key}.pub.pem"))));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut settings = Config::parse_from(args).settings().unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings
}

fn claims(room: &str) -> Value {
    json!({"room": room, "exp": now() + 600, "iat": now()})
}

/// What a second peer and the gauges see of a room: a refusal must leave it
/// exactly as it was.
struct RoomView {
    mailboxes: f64,
    rooms: f64,
}

async fn view(server: &TestServer, witness: &mut Peer) -> RoomView {
    let events = witness.poll(0.0).await;
    assert!(events.is_empty(), "the witness saw {events:?}");
    let text = common::get_text(&server.url("/metrics")).await.unwrap();
    RoomView {
        mailboxes: metric(&text, "signal_mailboxes"),
        rooms: metric(&text, "signal_rooms"),
    }
}

#[tokio::test]
async fn each_algorithm_admits_its_holder_and_the_call_goes_on_without_it() {
    let server = TestServer::from_settings(ticket_settings(&[])).await;
    for key in ["hs", "es", "rs", "ed"] {
        let room = format!("room-{key}");
        let tickets = sign(&json!([
            {"name": "alice", "key": key, "claims": claims(&room), "headers": {"kid": key}},
            {"name": "bob", "key": key, "claims": claims(&room)},
        ]));
        let mut alice = server.peer(&room, "alice");
        alice.ticket = Some(tickets["alice"].as_str().unwrap().to_owned());
        assert_eq!(alice.join().await, Vec::<String>::new(), "{key}");
        let mut bob = server.peer(&room, "bob");
        // Without a kid every key that takes its algorithm is tried.
        bob.ticket = Some(tickets["bob"].as_str().unwrap().to_owned());
        // Bob joins by sending: a POST claims a name as a poll does.
        bob.send_ok(Some("alice"), &json!({"type": "offer"})).await;
        // Once claimed, the peer token is all a request needs.
        alice.ticket = None;
        bob.ticket = None;
        let got = alice.poll(1.0).await;
        assert_eq!(common::data(&got)[1], json!({"type": "offer"}), "{key}");
        bob.send_ok(Some("alice"), &json!({"type": "candidate"}))
            .await;
        // And a ticket that has expired since does not stop it either.
        let expired = sign(&json!([{"name": "t", "key": key,
            "claims": {"room": room, "exp": now() - 3600}}]));
        alice.ticket = Some(expired["t"].as_str().unwrap().to_owned());
        assert_eq!(alice.poll(1.0).await.len(), 1, "{key}");
    }
}

/// Every kind of bad ticket, its status, its RFC 6750 error and the reason
/// label it is counted under.
#[tokio::test]
async fn bad_tickets_are_refused_and_change_nothing() {
    let server = TestServer::from_settings(ticket_settings(&[])).await;
    let room = "guarded";
    let good = sign(&json!([{"name": "t", "key": "es", "claims": claims(room)}]));
    let mut witness = server.peer(room, "witness");
    witness.ticket = Some(good["t"].as_str().unwrap().to_owned());
    witness.join().await;
    witness.ticket = None;

    let mut big = claims(room);
    big["padding"] = json!("x".repeat(5000));
    let tickets = sign(&json!([
        {"name": "alg_none", "key": "hs", "claims": claims(room), "forge": "none"},
        {"name": "hs_with_pem", "key": "es", "claims": claims(room), "forge": "hs-with-pem"},
        {"name": "expired", "key": "rs", "claims": {"room": room, "exp": now() - 120}},
        {"name": "not_yet", "key": "ed", "claims": {"room": room, "exp": now() + 600, "nbf": now() + 300}},
        {"name": "wrong_room", "key": "hs", "claims": claims("elsewhere")},
        {"name": "wrong_peer", "key": "es", "claims": {"room": room, "exp": now() + 600, "peer": "someone"}},
        {"name": "no_join", "key": "ed", "claims": {"room": room, "exp": now() + 600, "grants": ["turn"]}},
        {"name": "tampered", "key": "rs", "claims": {"room": "other", "exp": now() + 600,
            "tampered": {"room": room, "exp": now() + 600}}, "forge": "tamper"},
        {"name": "unknown_kid", "key": "hs", "claims": claims(room), "headers": {"kid": "retired"}},
        {"name": "oversized", "key": "hs", "claims": big},
    ]));
    let ticket = |name: &str| Some(tickets[name].as_str().unwrap().to_owned());
    let cases: Vec<(&str, Option<String>, StatusCode, &str, &str)> = vec![
        (
            "no ticket",
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "missing",
        ),
        (
            "garbage",
            Some("not.a.ticket".into()),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "malformed",
        ),
        (
            "alg none",
            ticket("alg_none"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unsigned",
        ),
        (
            "HS256 with the public PEM",
            ticket("hs_with_pem"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "bad_signature",
        ),
        (
            "expired",
            ticket("expired"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "expired",
        ),
        (
            "nbf in the future",
            ticket("not_yet"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "not_yet_valid",
        ),
        (
            "wrong room",
            ticket("wrong_room"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "wrong_room",
        ),
        (
            "wrong peer",
            ticket("wrong_peer"),
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "wrong_peer",
        ),
        (
            "no join grant",
            ticket("no_join"),
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "grant_missing",
        ),
        (
            "tampered payload",
            ticket("tampered"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "bad_signature",
        ),
        (
            "unknown kid",
            ticket("unknown_kid"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unknown_kid",
        ),
        (
            "oversized",
            ticket("oversized"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "oversized",
        ),
    ];
    let before = view(&server, &mut witness).await;
    for (case, ticket, status, error, reason) in cases {
        for method in ["GET", "POST"] {
            let mut intruder = server.peer(room, "intruder");
            intruder.token = Some("intruder-own-token-1".into());
            intruder.ticket = ticket.clone();
            let response = if method == "GET" {
                intruder
                    .client
                    .get(intruder.poll_url(0.0))
                    .header("X-Peer-Token", "intruder-own-token-1")
            } else {
                intruder
                    .client
                    .post(intruder.signal_url(""))
                    .header("X-Peer-Token", "intruder-own-token-1")
                    .json(&json!({"type": "offer"}))
            };
            let response = match &ticket {
                Some(ticket) => response.bearer_auth(ticket),
                None => response,
            }
            .send()
            .await
            .unwrap();
            assert_eq!(response.status(), status, "{case} ({method})");
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                challenge.starts_with(&format!("Bearer error=\"{error}\", error_description=\"")),
                "{case}: {challenge}"
            );
            assert!(response.headers().get("x-peer-token").is_none(), "{case}");
            let body: Value = response.json().await.unwrap();
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{case}"
            );
            if let Some(ticket) = &ticket {
                assert!(
                    !challenge.contains(ticket.as_str()),
                    "{case}: the ticket is echoed"
                );
            }
            let after = view(&server, &mut witness).await;
            assert_eq!(
                (after.mailboxes, after.rooms),
                (before.mailboxes, before.rooms),
                "{case} ({method}) changed the room"
            );
        }
        let text = common::get_text(&server.url("/metrics")).await.unwrap();
        let counted = metric(
            &text,
            &format!("signal_ticket_refusals_total{{reason=\"{reason}\"}}"),
        );
        assert!(counted >= 2.0, "{case}: {reason} counted {counted}");
    }
    // The name was never claimed: a ticket holder takes it now.
    let mut late = server.peer(room, "intruder");
    late.ticket = Some(good["t"].as_str().unwrap().to_owned());
    assert_eq!(late.join().await, vec!["witness".to_owned()]);
}

/// Someone without a ticket learns nothing of who is in a room: asking for
/// a name that is taken gets the same 401 as one that is free.
#[tokio::test]
async fn without_a_ticket_a_taken_name_looks_like_a_free_one() {
    let server = TestServer::from_settings(ticket_settings(&[])).await;
    let good = sign(&json!([{"name": "t", "key": "hs", "claims": claims("quiet")}]));
    let mut alice = server.peer("quiet", "alice");
    alice.ticket = Some(good["t"].as_str().unwrap().to_owned());
    alice.join().await;
    for name in ["alice", "nobody"] {
        let (status, _) = server.peer("quiet", name).poll_error(0.0).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
    }
    // With a ticket, a taken name is the usual 403 for a wrong token.
    let mut thief = server.peer("quiet", "alice");
    thief.ticket = alice.ticket.clone();
    let (status, _) = thief.poll_error(0.0).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_audience_is_checked_when_configured() {
    let server =
        TestServer::from_settings(ticket_settings(&["--ticket-audience", "signal.example"])).await;
    let tickets = sign(&json!([
        {"name": "none", "key": "hs", "claims": claims("aud")},
        {"name": "other", "key": "hs", "claims": {"room": "aud", "exp": now() + 60, "aud": "other.example"}},
        {"name": "right", "key": "hs", "claims": {"room": "aud", "exp": now() + 60, "aud": "signal.example"}},
    ]));
    for (name, status) in [
        ("none", StatusCode::UNAUTHORIZED),
        ("other", StatusCode::UNAUTHORIZED),
        ("right", StatusCode::OK),
    ] {
        let mut peer = server.peer("aud", name);
        peer.ticket = Some(tickets[name].as_str().unwrap().to_owned());
        assert_eq!(peer.poll_raw(0.0).await.0, status, "{name}");
    }
}

/// TURN credentials only for a ticket with the `turn` grant; STUN-only
/// `/config` needs no ticket.
#[tokio::test]
async fn turn_credentials_need_the_turn_grant() {
    let server = TestServer::from_settings(ticket_settings(&[
        "--turn-url",
        "turn:127.0.0.1:3478?transport=tcp",
        "--turn-secret",
        "turn-shared-secret",
        "--ice-server",
        "stun:127.0.0.1:3478",
    ]))
    .await;
    let tickets = sign(&json!([
        {"name": "call", "key": "ed", "claims": {"room": "t", "exp": now() + 60, "peer": "carol"}},
        {"name": "whip_only", "key": "ed", "claims": {"room": "t", "exp": now() + 60, "grants": ["whip"]}},
    ]));
    let config = |ticket: Option<&str>| {
        let request = common::client().get(server.url("/config?peer=label"));
        let request = match ticket {
            Some(ticket) => request.bearer_auth(ticket),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, challenge, response.json::<Value>().await.unwrap())
        }
    };
    let (status, challenge, _) = config(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains("invalid_token"));
    let (status, challenge, _) = config(tickets["whip_only"].as_str()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.unwrap().contains("insufficient_scope"));
    let (status, _, body) = config(tickets["call"].as_str()).await;
    assert_eq!(status, StatusCode::OK);
    let servers = body["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{body}");
    let username = servers[1]["username"].as_str().unwrap();
    assert!(
        username.ends_with(":carol"),
        "labelled with the ticket's peer: {username}"
    );
    let text = common::get_text(&server.url("/metrics")).await.unwrap();
    assert_eq!(
        metric(&text, "signal_ticket_refusals_total{reason=\"missing\"}"),
        1.0
    );

    // Without TURN, /config hands out nothing a ticket guards.
    let open =
        TestServer::from_settings(ticket_settings(&["--ice-server", "stun:127.0.0.1:3478"])).await;
    let response = common::client()
        .get(open.url("/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A WHIP or WHEP offer needs a ticket with that grant for that room (its
/// refusals are problems, as the rest of the route's errors).
#[tokio::test]
async fn whip_and_whep_offers_need_their_grant() {
    let server = TestServer::from_settings(ticket_settings(&[])).await;
    let tickets = sign(&json!([
        {"name": "join", "key": "rs", "claims": claims("studio")},
        {"name": "whip", "key": "rs", "claims": {"room": "studio", "exp": now() + 60, "grants": ["whip"]}},
        {"name": "whep", "key": "rs", "claims": {"room": "studio", "exp": now() + 60, "grants": ["whep"]}},
        {"name": "elsewhere", "key": "rs", "claims": {"room": "other", "exp": now() + 60, "grants": ["whip", "whep"]}},
    ]));
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let post = |path: &str, ticket: Option<&str>| {
        let request = common::client()
            .post(server.url(path))
            .header("Content-Type", "application/sdp")
            .body(offer);
        let request = match ticket {
            Some(ticket) => request.bearer_auth(ticket),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let kind = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            (status, kind)
        }
    };
    for (path, ticket, status) in [
        ("/whip/studio", None, StatusCode::UNAUTHORIZED),
        (
            "/whip/studio",
            tickets["join"].as_str(),
            StatusCode::FORBIDDEN,
        ),
        (
            "/whip/studio",
            tickets["whep"].as_str(),
            StatusCode::FORBIDDEN,
        ),
        (
            "/whip/studio",
            tickets["elsewhere"].as_str(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/whep/studio",
            tickets["whip"].as_str(),
            StatusCode::FORBIDDEN,
        ),
        // Admitted: the room is empty, so nobody can answer.
        (
            "/whip/studio",
            tickets["whip"].as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/whep/studio",
            tickets["whep"].as_str(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (got, kind) = post(path, ticket).await;
        assert_eq!(got, status, "{path} {ticket:?}");
        assert_eq!(kind, "application/problem+json");
    }
}

/// Checking a ticket needs no shared state: two instances on one Redis
/// accept the same issuer's tickets, and a refusal on either leaves
/// nothing in Redis for the other to see.
#[tokio::test]
async fn two_instances_sharing_redis_accept_a_ticket_on_either() {
    let redis = RedisServer::start();
    let on_redis = || {
        let mut settings = ticket_settings(&[]);
        settings.store = StoreChoice::Redis(redis.url());
        settings
    };
    let one = TestServer::from_settings(on_redis()).await;
    let two = TestServer::from_settings(on_redis()).await;
    let tickets = sign(&json!([
        {"name": "alice", "key": "es", "claims": {"room": "shared", "exp": now() + 60, "peer": "alice"}},
        {"name": "bob", "key": "ed", "claims": {"room": "shared", "exp": now() + 60, "peer": "bob"}},
    ]));
    let mut alice = one.peer("shared", "alice");
    alice.ticket = tickets["alice"].as_str().map(str::to_owned);
    alice.join().await;
    let mut bob = two.peer("shared", "bob");
    bob.ticket = tickets["bob"].as_str().map(str::to_owned);
    assert_eq!(bob.join().await, vec!["alice".to_owned()]);
    bob.send_ok(Some("alice"), &json!({"type": "offer"})).await;
    let got = alice.poll(2.0).await;
    assert_eq!(common::data(&got).last(), Some(&json!({"type": "offer"})));
    // Alice's ticket on the other instance, for another name: refused there.
    let mut mallory = two.peer("shared", "mallory");
    mallory.ticket = alice.ticket.clone();
    assert_eq!(mallory.poll_error(0.0).await.0, StatusCode::FORBIDDEN);
    let mut nobody = one.peer("shared", "nobody");
    assert_eq!(nobody.poll_error(0.0).await.0, StatusCode::UNAUTHORIZED);
    assert!(alice.poll(0.0).await.is_empty(), "alice saw a join");
    assert!(bob.poll(0.0).await.is_empty(), "bob saw a join");
}

/// `signal-relay ticket` signs with the server's secret: what it prints
/// admits its holder, and PyJWT reads it as the claims it was given.
#[tokio::test]
async fn the_ticket_subcommand_prints_a_ticket_the_server_accepts() {
    let secret = keys().join("hs.secret");
    let secret = format!("hs={}", secret.display());
    let run = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_signal-relay"))
            .args(["ticket", "--room", "cli", "--peer", "dan", "--ttl", "5m"])
            .args(extra)
            .env("SIGNAL_TICKET_SECRET_FILE", &secret)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let ticket = run(&[]);
    let server = TestServer::from_settings(ticket_settings(&[])).await;
    let mut dan = server.peer("cli", "dan");
    dan.ticket = Some(ticket.clone());
    dan.join().await;
    let decoded = Command::new("python3")
        .args([
            "-c",
            "import jwt, sys; secret = open(sys.argv[1]).read().strip(); \
             c = jwt.decode(sys.argv[2], secret, algorithms=['HS256']); \
             h = jwt.get_unverified_header(sys.argv[2]); \
             print(c['room'], c['peer'], ','.join(c['grants']), c['exp'] - c['iat'], h['kid'])",
            keys().join("hs.secret").to_str().unwrap(),
            &ticket,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&decoded.stdout).trim(),
        "cli dan join,turn 300 hs"
    );
    let link = run(&["--url", "https://signal.example/", "--grant", "join"]);
    let (page, fragment) = link.split_once('#').unwrap();
    assert_eq!(page, "https://signal.example/?room=cli");
    assert!(fragment.starts_with("ticket=ey"), "{link}");
}

/// Without a ticket key the server is open, and says so when it listens
/// beyond loopback; with one it says tickets are required.
#[tokio::test]
async fn the_server_says_when_its_rooms_are_open() {
    // Inside a network namespace of its own (only `lo`), so listening on
    // every interface exposes nothing.
    let isolated = Command::new("unshare")
        .args(["--net", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !isolated {
        eprintln!("skipped: unshare --net is not allowed here");
        return;
    }
    let log_of = |flags: &[&str]| {
        let mut child = Command::new("unshare")
            .args(["--net", env!("CARGO_BIN_EXE_signal-relay")])
            .args(flags)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let listening = line.contains("listening on");
            seen.push(line);
            if listening {
                break;
            }
        }
        // The warning follows the listening line when there is one.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        seen.extend(lines.map_while(Result::ok));
        let _ = child.wait();
        seen.join("\n")
    };
    let open = log_of(&["--listen", "0.0.0.0:0"]);
    assert!(open.contains("rooms are open to anyone"), "{open}");
    let local = log_of(&["--listen", "127.0.0.1:0"]);
    assert!(!local.contains("rooms are open"), "{local}");
    let secret = format!("{}", keys().join("hs.secret").display());
    let guarded = log_of(&["--listen", "0.0.0.0:0", "--ticket-secret-file", &secret]);
    assert!(!guarded.contains("rooms are open"), "{guarded}");
    assert!(guarded.contains("a ticket is required"), "{guarded}");
    let secret_text = std::fs::read_to_string(keys().join("hs.secret")).unwrap();
    assert!(
        !guarded.contains(secret_text.trim()),
        "the secret is logged"
    );
}

/// The Rust client presents its ticket where it claims its name.
#[tokio::test]
async fn the_rust_client_joins_with_a_ticket() {
    use signal_relay::client::{Client, ClientError, Peer as RustPeer};
    let server = TestServer::from_settings(ticket_settings(&[])).await;
    let tickets = sign(&json!([{"name": "t", "key": "ed", "claims": claims("rusty")}]));
    let client = Client::new(&server.base).unwrap();
    let refused = RustPeer::new(&client, "rusty", "a").join().await;
    assert!(
        matches!(&refused, Err(ClientError::Status { status, .. }) if *status == StatusCode::UNAUTHORIZED),
        "{refused:?}"
    );
    let mut alice =
        RustPeer::new(&client, "rusty", "alice").with_ticket(tickets["t"].as_str().unwrap());
    assert!(alice.join().await.unwrap().is_empty());
    let bob = RustPeer::new(&client, "rusty", "bob").with_ticket(tickets["t"].as_str().unwrap());
    // A send claims the name as a poll does.
    bob.send(Some("alice"), &json!({"type": "offer"}))
        .await
        .unwrap();
    let batch = alice.poll(std::time::Duration::from_secs(1)).await.unwrap();
    assert_eq!(batch.messages.len(), 2, "join and offer");
}
