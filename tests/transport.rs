//! Below the protocol: TLS with a generated certificate, HTTP/2, timeouts
//! for silent connections, and graceful shutdown (in-process and of the
//! real binary on SIGTERM).

mod common;

use signal_relay::wire::header;
use std::path::PathBuf;

use std::time::{Duration, Instant};

use common::{TestServer, client, secs};
use reqwest::{Certificate, Client, StatusCode, Version};
use serde_json::{Value, json};
use signal_relay::settings::TlsSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A fresh, empty folder for one test's files.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("signal-relay-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TLS server whose certificate it generates itself into a scratch folder.
async fn tls_server(test: &str) -> (TestServer, PathBuf) {
    let dir = scratch_dir(test);
    let cert = dir.join("ssl/server.crt");
    let key = dir.join("ssl/server.key");
    let server = TestServer::with(|s| {
        s.tls = Some(TlsSettings {
            extra_sans: vec!["signal.test".into()],
            ..common::tls(&cert, &key)
        })
    })
    .await;
    (server, cert)
}

/// A client that trusts exactly `cert` as its root, and nothing else.
fn trusting(cert: &PathBuf, server: &TestServer) -> reqwest::ClientBuilder {
    let pem = std::fs::read(cert).expect("the server wrote its certificate");
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .tls_built_in_root_certs(false)
        .add_root_certificate(Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", server.addr)
        .resolve("signal.test", server.addr)
}

#[tokio::test]
async fn tls_with_the_generated_certificate_trusted_as_root() {
    let (server, cert) = tls_server("tls").await;
    let port = server.addr.port();
    let client = trusting(&cert, &server).http1_only().build().unwrap();
    for host in ["localhost", "127.0.0.1", "signal.test"] {
        let reply = client
            .get(format!("https://{host}:{port}/healthz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(reply.status(), StatusCode::OK, "{host}");
        assert_eq!(reply.version(), Version::HTTP_11);
    }
    // A name the certificate does not cover is refused by the client.
    let other = trusting(&cert, &server)
        .resolve("other.test", server.addr)
        .build()
        .unwrap();
    assert!(
        other
            .get(format!("https://other.test:{port}/healthz"))
            .send()
            .await
            .is_err()
    );
    // And the same certificate is loaded, not regenerated, next time.
    let pem = std::fs::read(&cert).unwrap();
    server.shutdown().await;
    let key = cert.with_file_name("server.key");
    let again = TestServer::with(|s| s.tls = Some(common::tls(&cert, &key))).await;
    assert_eq!(std::fs::read(&cert).unwrap(), pem);
    let reply = trusting(&cert, &again)
        .build()
        .unwrap()
        .get(format!("https://localhost:{}/healthz", again.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
}

#[tokio::test]
async fn http2_over_tls_carries_a_whole_exchange() {
    let (server, cert) = tls_server("h2").await;
    let client = trusting(&cert, &server).build().unwrap();
    let base = format!("https://localhost:{}", server.addr.port());
    let get =
        |peer: &str, extra: &str| client.get(format!("{base}/signal?room=r&peer={peer}{extra}"));

    let alice = get("alice", "&timeout=0").send().await.unwrap();
    assert_eq!(alice.version(), Version::HTTP_2, "ALPN chose h2");
    let alice_token = alice.headers()[header::PEER_TOKEN]
        .to_str()
        .unwrap()
        .to_owned();
    let bob = get("bob", "&timeout=0").send().await.unwrap();
    let bob_token = bob.headers()[header::PEER_TOKEN]
        .to_str()
        .unwrap()
        .to_owned();

    // alice parks on one stream while bob posts on another of the same
    // connection: HTTP/2 multiplexing, no head-of-line blocking.
    let parked = get("alice", "&since=2&timeout=20")
        .header(header::PEER_TOKEN, &alice_token)
        .send();
    let post = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .post(format!("{base}/signal?room=r&peer=bob&to=alice"))
            .header(header::PEER_TOKEN, &bob_token)
            .json(&json!({"type": "offer", "sdp": "v=0"}))
            .send()
            .await
            .unwrap()
    };
    let (parked, posted) = tokio::join!(parked, post);
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    assert_eq!(posted.version(), Version::HTTP_2);
    let batch: Value = parked.unwrap().json().await.unwrap();
    assert_eq!(batch["messages"][0]["data"]["type"], "offer", "{batch}");
}

/// A client that speaks HTTP/2 without TLS from the first byte (h2c).
fn h2c_client() -> Client {
    Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

#[tokio::test]
async fn cleartext_http2_with_prior_knowledge() {
    let server = TestServer::start().await;
    let h2c = h2c_client();
    let reply = h2c.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.version(), Version::HTTP_2);
}

/// One HTTP/2 connection holds at most 64 requests at once (docs/security.md):
/// the client queues the rest until a stream frees, so nothing is refused.
#[tokio::test]
async fn one_http2_connection_parks_at_most_64_polls() {
    const POLLS: usize = 80;
    let server = TestServer::start().await;
    let h2c = h2c_client();
    // A room each, so no peer's arrival wakes another's poll.
    let mut peers = Vec::new();
    for n in 0..POLLS {
        let mut peer = common::Peer {
            client: h2c.clone(),
            ..server.peer(&format!("h2-{n}"), "p")
        };
        peer.join().await;
        peers.push(peer);
    }
    // All joined first, so every poll's 4 s runs from about now.
    let parked: Vec<_> = peers
        .into_iter()
        .map(|mut peer| tokio::spawn(async move { peer.poll_raw(4.0).await.0 }))
        .collect();
    let parked_now = || async {
        let text = client()
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        common::metric(&text, "signal_parked_polls")
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while parked_now().await < 64.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(parked_now().await, 64.0, "streams past 64 wait");
    for poll in parked {
        assert_eq!(poll.await.unwrap(), StatusCode::OK);
    }
}

/// Reads until the server closes the connection; panics if it does not
/// within `limit`. Returns what it sent.
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> String {
    let mut received = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut received)).await {
        Ok(_) => String::from_utf8_lossy(&received).into_owned(),
        Err(_) => panic!("the server kept a silent connection open for {limit:?}"),
    }
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed() {
    let server = TestServer::with(|s| {
        s.header_timeout = secs(0.3);
    })
    .await;
    let limit = Duration::from_secs(5);

    // Connects and says nothing.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    until_closed(&mut silent, limit).await;

    // Starts a request head and stalls (slowloris).
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let reply = until_closed(&mut slow, limit).await;
    assert!(!reply.contains("200 OK"), "{reply}");

    // Idles on a keep-alive connection after a request.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = until_closed(&mut idle, limit).await;
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed() {
    let dir = scratch_dir("handshake");
    let server = TestServer::with(|s| {
        s.tls = Some(TlsSettings {
            handshake_timeout: secs(0.3),
            ..common::tls(&dir.join("c.pem"), &dir.join("k.pem"))
        })
    })
    .await;
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    until_closed(&mut stalled, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn graceful_shutdown_answers_a_parked_poll() {
    let server = TestServer::start().await;
    let mut alice = server.peer("r", "alice");
    alice.join().await;
    let parked = tokio::spawn(async move { alice.poll_batch(20.0).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let addr = server.addr;
    let started = Instant::now();
    server.shutdown().await;
    let stopped_in = started.elapsed();
    let (status, body) = parked.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.messages.is_empty(), "an empty batch, cursor intact");
    assert!(stopped_in < Duration::from_secs(2), "{stopped_in:?}");
    assert!(
        client()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn the_binary_logs_its_address_and_exits_cleanly_on_sigterm() {
    let mut server = common::spawn_server(&[], "info").await;
    assert!(
        server
            .startup
            .iter()
            .any(|l| l.contains("open-files limit")),
        "the start-up says what happened to the open-files limit: {:?}",
        server.startup
    );
    let line = server.startup.last().expect("the listening line");
    assert!(
        line.contains("tls=false") && line.contains("web=built in"),
        "{line}"
    );

    let mut alice = server.peer("r", "alice");
    alice.join().await;
    let parked = tokio::spawn(async move { alice.poll_batch(20.0).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    server.terminate();
    let (status, body) = parked.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.messages.is_empty());
    let exit = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("the process exits")
        .unwrap();
    let exited_in = started.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(exited_in < Duration::from_secs(2), "{exited_in:?}");
    let rest = server.rest_of_log().await;
    assert!(rest.iter().any(|l| l.contains("shut down")), "{rest:?}");
}

/// At the most verbose level the server uses, a whole session leaves no
/// token, SDP, candidate, TURN secret or minted credential in the log (they
/// carry secrets and addresses).
#[tokio::test]
async fn logs_never_carry_tokens_or_session_descriptions() {
    let turn = [
        "--turn-url",
        "turn:127.0.0.1:3478?transport=tcp",
        "--turn-secret",
        "turn-secret-never-logged-9",
    ];
    let mut flags = vec!["--peer-ttl", "0.3"];
    flags.extend(turn);
    let mut server = common::spawn_server(&flags, "debug").await;
    let base = server.base.clone();
    let peer = |name: &str| common::Peer {
        token: Some(format!("{name}-very-secret-token-1")),
        ..server.peer("logged", name)
    };
    let (mut alice, mut bob) = (peer("alice"), peer("bob"));
    alice.join().await;
    bob.join().await;
    let sdp = "v=0\r\no=- 42 2 IN IP4 198.51.100.77\r\ns=-\r\nc=IN IP4 198.51.100.77\r\n";
    let offer = alice.send_sdp("&to=bob", sdp).await;
    assert_eq!(offer.status(), StatusCode::ACCEPTED);
    let candidate = json!({"type": "candidate", "ice": {"candidate": "candidate:1 1 udp 1 203.0.113.99 4444 typ host"}});
    bob.send_ok(Some("alice"), &candidate).await;
    bob.poll(0.0).await;
    alice.poll(0.0).await;
    // A wrong token too: the refusal must not echo what was presented.
    let wrong = client()
        .get(format!("{base}/signal?room=logged&peer=alice&timeout=0"))
        .header(header::PEER_TOKEN, "mallory-guessed-token-0")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let config: Value = client()
        .get(format!("{base}/config?peer=alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let minted = config["iceServers"][0]["credential"]
        .as_str()
        .expect("a minted TURN credential")
        .to_owned();
    // bob expires (a leave is logged at debug), then the server stops.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.terminate();
    let mut lines = server.startup.clone();
    lines.extend(server.rest_of_log().await);
    let text = lines.join("\n");
    assert!(text.contains("peer joined"), "debug logging is on: {text}");
    for secret in [
        "turn-secret-never-logged-9",
        minted.as_str(),
        "alice-very-secret-token-1",
        "bob-very-secret-token-1",
        "mallory-guessed-token-0",
        "198.51.100.77",
        "203.0.113.99",
        "v=0",
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} reached the log:\n{text}"
        );
    }
}

/// TLS 1.2 and 1.3 are both served (rustls implements nothing older, so
/// that is the whole range): a client pinned to each version negotiates
/// exactly it and gets an answer.
#[tokio::test]
async fn tls_1_2_and_1_3_are_served() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;

    let (server, cert) = tls_server("versions").await;
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(der.unwrap()).unwrap();
    }
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", version.version));
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let reply = until_closed(&mut tls, Duration::from_secs(10)).await;
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "{:?}: {reply}",
            version.version
        );
    }
}

/// A Redis URL can carry a password: `--help` must not show the value taken
/// from `SIGNAL_STORE`, and the log of a server started with it (whose
/// Redis is not there yet) must not print it.
#[tokio::test]
async fn the_store_password_is_never_printed() {
    const PASSWORD: &str = "hunter2-store-password";
    let url = format!("redis://:{PASSWORD}@127.0.0.1:1/0");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_signal-relay"))
        .arg("--help")
        .env("SIGNAL_STORE", &url)
        .output()
        .expect("the binary runs");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("SIGNAL_STORE"), "{help}");
    assert!(
        !help.contains(PASSWORD),
        "--help shows the password:\n{help}"
    );

    let mut server = common::spawn_server(&["--store", &url], "debug").await;
    server.terminate();
    let mut log = server.startup.clone();
    log.extend(server.rest_of_log().await);
    assert!(
        log.iter().any(|line| line.contains("Redis")),
        "the server said nothing about its store: {log:?}"
    );
    let leaked: Vec<&String> = log.iter().filter(|line| line.contains(PASSWORD)).collect();
    assert!(leaked.is_empty(), "the log prints the password: {leaked:?}");
}
