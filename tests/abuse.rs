//! Broken networks and shutdowns, with the default limits: nothing
//! accepted may be lost when a proxy cuts polls short or the server stops.
//! (Floods live in tests/flood.rs, a binary of their own, so their load
//! does not skew these.)

mod common;

use signal_relay::wire::header;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{TestServer, parsed};
use reqwest::{Client, StatusCode};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy that cuts every connection `after` it opens, like a proxy
/// with a short read timeout. Returns its address.
async fn cutting_proxy(upstream: SocketAddr, after: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::time::timeout(
                    after,
                    tokio::io::copy_bidirectional(&mut inbound, &mut outbound),
                )
                .await;
                // Dropping both ends cuts the exchange wherever it was.
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_proxy_cutting_every_poll_loses_nothing() {
    let server = TestServer::start().await;
    let proxy = cutting_proxy(server.addr, Duration::from_millis(150)).await;
    let (mut receiver, sender) = server.pair("r").await;
    // The receiver reaches the server only through the proxy, with polls
    // far longer than the proxy allows: every parked poll is cut.
    receiver.base = format!("http://{proxy}");
    receiver.client = Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let sending = tokio::spawn(async move {
        let mut sender = sender;
        // Sparser than the proxy's cut, so polls are cut while parked.
        for n in 0..10 {
            sender.send_ok(Some("alice"), &json!({ "n": n })).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    let mut received = Vec::new();
    let mut cut = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < 10 && Instant::now() < deadline {
        // A cut poll is an error for the client, which polls again from
        // the same cursor, as signal.js does.
        let Ok((_, Ok(batch))) = receiver.try_poll(5.0).await else {
            cut += 1;
            continue;
        };
        for message in &batch.messages {
            received.push(parsed(message)["n"].as_u64().unwrap());
        }
    }
    sending.await.unwrap();
    assert!(
        cut > 0,
        "the proxy never cut a poll, so this proved nothing"
    );
    assert_eq!(
        received,
        (0..10).collect::<Vec<u64>>(),
        "each once, in order ({cut} polls cut)"
    );
    println!("10 messages through a proxy that cut {cut} polls: each delivered once, in order");
}

/// Shutdown in the middle of a stream, then a new server on the same port.
/// Every message accepted (202) before the close is delivered: receivers
/// collect it during the drain. Sends after the close are refused, so the
/// senders know. Nothing is duplicated, reordered or invented, and on the
/// new server every receiver sees `reset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_swallows_nothing_silently() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let first = TestServer::with(|s| {
        s.listen = listen.parse().unwrap();
        s.admission.rate_limit = 0;
    })
    .await;
    let mut pairs = Vec::new();
    for p in 0..4 {
        let (receiver, sender) = first.pair(&format!("load-{p}")).await;
        pairs.push((receiver, sender));
    }
    let mut tasks = Vec::new();
    for (mut receiver, sender) in pairs {
        let sending = tokio::spawn(async move {
            let mut accepted = Vec::new();
            let url = sender.signal_url("&to=alice");
            let token = sender.token.clone().unwrap();
            for n in 0u64.. {
                let reply = sender
                    .client
                    .post(&url)
                    .header(header::PEER_TOKEN, &token)
                    .json(&json!({ "n": n }))
                    .send()
                    .await;
                // Refused (503) or unreachable: the sender knows it was not
                // accepted. Only a 202 is a promise.
                match reply.map(|r| r.status()) {
                    Ok(StatusCode::ACCEPTED) => accepted.push(n),
                    _ => break,
                }
            }
            accepted
        });
        let receiving = tokio::spawn(async move {
            let mut received = Vec::new();
            let mut saw_reset = false;
            // Until an error, or a new server already up (a reset): then
            // this incarnation is over.
            while let Ok((StatusCode::OK, Ok(batch))) = receiver.try_poll(1.0).await {
                if batch.reset {
                    saw_reset = true;
                    break;
                }
                for m in &batch.messages {
                    if common::sender(m) == Some("bob") {
                        received.push(parsed(m)["n"].as_u64().unwrap());
                    }
                }
            }
            (receiver, received, saw_reset)
        });
        tasks.push((sending, receiving));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.shutdown().await;

    let second = TestServer::with(|s| {
        s.listen = listen.parse().unwrap();
        s.admission.rate_limit = 0;
    })
    .await;
    for (sending, receiving) in tasks {
        let accepted = sending.await.unwrap();
        let (mut receiver, received, saw_reset) = receiving.await.unwrap();
        // Nothing invented, nothing twice, nothing out of order.
        let mut sorted = received.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, received, "duplicated or reordered");
        assert!(!accepted.is_empty(), "the load never ran");
        // The drain lets every message accepted before the close out.
        assert_eq!(received, accepted, "every accepted message delivered");
        println!(
            "{} accepted, {} received, across a shutdown",
            accepted.len(),
            received.len()
        );
        // The new server says the cursor is gone, not a silent fresh start.
        // (The first try may meet a pooled connection the old server
        // closed; a client retries that, as signal.js does.)
        if !saw_reset {
            let mut reply = None;
            for _ in 0..3 {
                if let Ok(answer) = receiver.try_poll(0.0).await {
                    reply = Some(answer);
                    break;
                }
            }
            let (status, body) = reply.expect("the new server answers");
            assert_eq!(status, StatusCode::OK);
            let batch = body.expect("a batch");
            assert!(
                batch.reset,
                "the new server must say the cursor is gone: {batch:?}"
            );
        }
    }
    second.shutdown().await;
}
