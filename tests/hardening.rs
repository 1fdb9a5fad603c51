//! The defences of docs/security.md, each shown to hold against a real
//! server: rate limits per client address (and X-Forwarded-For only from a
//! trusted proxy), polls per address, the connection cap, slow bodies, HSTS.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{TestServer, secs};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use signal_relay::Settings;
use signal_relay::api::Cors;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client whose requests come from `ip` (any 127.x address is loopback).
fn client_from(ip: &str) -> Client {
    Client::builder()
        .no_proxy()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn status_and_retry_after(
    response: reqwest::Response,
) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry, body)
}

#[tokio::test]
async fn the_rate_limit_is_per_client_address() {
    let server = TestServer::with(|s| {
        s.admission.rate_limit = 1;
        s.admission.rate_burst = 3;
    })
    .await;
    let one = client_from("127.0.0.1");
    for _ in 0..3 {
        let reply = one.get(server.url("/config")).send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK);
    }
    let (status, retry, body) =
        status_and_retry_after(one.get(server.url("/config")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.unwrap().parse::<u32>().unwrap() >= 1);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests"),
        "{body}"
    );
    // Other addresses, and the operators' probes, are not affected.
    let other = client_from("127.0.0.2");
    assert_eq!(
        other
            .get(server.url("/config"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        one.get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let limited = |s: &mut Settings| {
        s.admission.rate_limit = 1;
        s.admission.rate_burst = 1;
    };
    let forwarded = |client: &Client, url: String, from: &str| {
        client.get(url).header("X-Forwarded-For", from).send()
    };
    // Behind a trusted proxy, each forwarded client has its own allowance.
    let behind_proxy = TestServer::with(|s| {
        limited(s);
        s.admission.trusted_proxies = vec![IpAddr::from([127, 0, 0, 1])];
    })
    .await;
    let proxy = client_from("127.0.0.1");
    for from in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let reply = forwarded(&proxy, behind_proxy.url("/config"), from)
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{from}");
    }
    let again = forwarded(&proxy, behind_proxy.url("/config"), "203.0.113.1")
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);

    // Without the flag, the header is the client's own words: ignored.
    let direct = TestServer::with(limited).await;
    let client = client_from("127.0.0.1");
    let first = forwarded(&client, direct.url("/config"), "203.0.113.1")
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let spoofed = forwarded(&client, direct.url("/config"), "203.0.113.2")
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn polls_per_client_address_are_capped() {
    let server = TestServer::with(|s| {
        s.admission.max_polls_per_ip = 2;
    })
    .await;
    let mut parked = Vec::new();
    for peer in ["a", "b"] {
        // Separate rooms: a `join` event would end the other's poll.
        let mut p = server.peer(&format!("room-{peer}"), peer);
        p.join().await;
        parked.push(tokio::spawn(async move { p.poll_raw(5.0).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, retry, body) = status_and_retry_after(
        client_from("127.0.0.1")
            .get(server.url("/signal?room=r&peer=c&timeout=0"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(
        body["error"].as_str().unwrap().contains("2 open polls"),
        "{body}"
    );
    let other = client_from("127.0.0.2")
        .get(server.url("/signal?room=r&peer=d&timeout=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    // The slots free as the polls end.
    for poll in parked {
        poll.abort();
        let _ = poll.await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = client_from("127.0.0.1")
        .get(server.url("/signal?room=r&peer=c&timeout=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::OK);
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait() {
    let server = TestServer::with(|s| {
        s.max_connections = 2;
    })
    .await;
    // Two connections take the two slots (they stay open, saying nothing).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third is queued by the kernel and not served...
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let waited =
        tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut reply)).await;
    assert!(
        waited.is_err(),
        "served past the cap: {}",
        String::from_utf8_lossy(&reply)
    );
    // ...until a slot frees.
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut reply))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_slow_body_is_408() {
    let server = TestServer::with(|s| {
        s.api.body_timeout = secs(0.3);
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /signal?room=r&peer=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"type\":",
        )
        .await
        .unwrap();
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("answered in time")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        reply.contains(r#"{"error":"the body did not arrive within"#),
        "{reply}"
    );
}

#[tokio::test]
async fn hsts_only_when_asked_for_with_tls() {
    let dir = std::env::temp_dir().join(format!("signal-hsts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    for hsts in [true, false] {
        let server = TestServer::with(|s| {
            s.tls = Some(common::tls(&cert, &key));
            s.api.hsts = hsts;
        })
        .await;
        let client = Client::builder()
            .no_proxy()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
            )
            .resolve("localhost", server.addr)
            .build()
            .unwrap();
        let reply = client
            .get(format!("https://localhost:{}/healthz", server.addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            reply.headers().get("strict-transport-security").is_some(),
            hsts,
            "--hsts {hsts}"
        );
        server.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_oversized_request_head_is_431() {
    let server = TestServer::start().await;
    let client = client_from("127.0.0.1");
    let big = "a".repeat(20_000);
    let reply = client
        .get(server.url("/healthz"))
        .header("x-big", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // The cap is 8 KiB of head, hyper's smallest buffer.
    let over = "a".repeat(9_000);
    let reply = client
        .get(server.url("/healthz"))
        .header("x-big", &over)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let fits = "a".repeat(7_000);
    let reply = client
        .get(server.url("/healthz"))
        .header("x-big", &fits)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_refused_request_still_carries_cors_headers() {
    let server = TestServer::with(|s| {
        s.admission.rate_limit = 1;
        s.admission.rate_burst = 1;
        s.api.cors = Cors::from_origins(&["*".into()]).unwrap();
    })
    .await;
    let client = client_from("127.0.0.1");
    let get = || {
        client
            .get(server.url("/signal?room=r&peer=a&timeout=0"))
            .header("Origin", "https://app.example")
            .send()
    };
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    let refused = get().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // The page must be able to read why, and when to retry.
    assert_eq!(refused.headers()["access-control-allow-origin"], "*");
    let exposed = refused.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("retry-after"), "{exposed}");
    assert_eq!(refused.headers()["cache-control"], "no-store");
}
