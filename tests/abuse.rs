//! Hostile clients and broken networks, with the default limits: the server
//! must keep serving a well-behaved client (its latency is printed) and
//! must lose nothing when a proxy cuts polls short.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Peer, TestServer};
use reqwest::{Client, StatusCode};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

fn client_from(ip: &str) -> Client {
    Client::builder()
        .no_proxy()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn peer(server: &TestServer, client: &Client, room: &str, name: &str) -> Peer {
    Peer {
        client: client.clone(),
        ..server.peer(room, name)
    }
}

/// One address floods the server every way it can; meanwhile two peers
/// on another address keep signaling, and their round trips are timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_from_one_address_do_not_starve_another() {
    let server = TestServer::start(&[]).await;
    let attacker = client_from("127.0.0.1");
    let base = server.base.clone();

    // The victim whose token the attacker will guess.
    let mut victim = peer(&server, &client_from("127.0.0.3"), "victim-room", "victim");
    victim.join().await;

    let flood = {
        let attacker = attacker.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
            let mut tally = |s: StatusCode| *statuses.entry(s.as_u16()).or_default() += 1;
            // Thousands of polls, each in a room of its own: join (with
            // its own token), then park.
            let polls: Vec<_> = (0..1500)
                .map(|i| {
                    let attacker = attacker.clone();
                    let room =
                        format!("{base}/signal?room=flood-{i}&peer=p&token=attacker-token-0001");
                    tokio::spawn(async move {
                        let joined = attacker
                            .get(format!("{room}&timeout=0"))
                            .send()
                            .await?
                            .status();
                        if joined != StatusCode::OK {
                            return Ok(vec![joined]);
                        }
                        let parked = attacker
                            .get(format!("{room}&since=1&timeout=3"))
                            .send()
                            .await?
                            .status();
                        Ok::<_, reqwest::Error>(vec![joined, parked])
                    })
                })
                .collect();
            for poll in polls {
                if let Ok(Ok(seen)) = poll.await {
                    seen.into_iter().for_each(&mut tally);
                }
            }
            // Guessing the victim's token.
            for guess in 0..300u32 {
                let url = format!("{base}/signal?room=victim-room&peer=victim&timeout=0");
                let token = format!("{guess:032x}");
                if let Ok(r) = attacker.get(url).header("X-Peer-Token", token).send().await {
                    assert_ne!(r.status(), StatusCode::OK, "a guessed token worked");
                    tally(r.status());
                }
            }
            // 10 000 rooms.
            for i in 0..10_000 {
                let url = format!("{base}/signal?room=spam-{i}&peer=p&timeout=0");
                if let Ok(r) = attacker.get(url).send().await {
                    tally(r.status());
                }
            }
            statuses
        })
    };

    // A 100 MB body, declared, and deep JSON, from the same address.
    let big = attacker
        .post(format!("{base}/signal?room=r&peer=big"))
        .header("Content-Type", "application/json")
        .header("Content-Length", (100u64 << 20).to_string())
        .body(vec![b' '; 1024])
        .send()
        .await;
    if let Ok(reply) = big {
        assert!(
            matches!(
                reply.status(),
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS
            ),
            "{}",
            reply.status()
        );
    }

    // The well-behaved pair, on another address, throughout.
    let good = client_from("127.0.0.2");
    let mut alice = peer(&server, &good, "calm", "alice");
    let mut bob = peer(&server, &good, "calm", "bob");
    alice.join().await;
    bob.join().await;
    alice.poll(0.0).await;
    let mut rtts = Vec::new();
    for n in 0..40 {
        let started = Instant::now();
        alice.send_ok(Some("bob"), &json!({ "n": n })).await;
        let got = bob.poll(10.0).await;
        assert_eq!(got.last().unwrap()["data"]["n"], n);
        bob.send_ok(Some("alice"), &json!({ "echo": n })).await;
        let back = alice.poll(10.0).await;
        assert_eq!(back.last().unwrap()["data"]["echo"], n);
        rtts.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let statuses = flood.await.unwrap();
    rtts.sort();
    println!(
        "well-behaved round trips during the flood: p50 {:?}, max {:?}; attacker's replies by status: {statuses:?}",
        rtts[rtts.len() / 2],
        rtts[rtts.len() - 1]
    );
    // The attacker was refused, not served: the limits did their work.
    assert!(
        statuses.get(&429).copied().unwrap_or(0) > 5_000,
        "{statuses:?}"
    );
    assert!(!statuses.contains_key(&500), "{statuses:?}");
}

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
    let server = TestServer::start(&[]).await;
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
        let Ok((_, body)) = receiver.try_poll(5.0).await else {
            cut += 1;
            continue;
        };
        for message in body["messages"].as_array().unwrap() {
            received.push(message["data"]["n"].as_u64().unwrap());
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
    let first = TestServer::start(&["--listen", &listen, "--rate-limit", "0"]).await;
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
                    .header("X-Peer-Token", &token)
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
            while let Ok((StatusCode::OK, body)) = receiver.try_poll(1.0).await {
                if body["reset"] == true {
                    saw_reset = true;
                    break;
                }
                for m in body["messages"].as_array().unwrap() {
                    if m["from"] == "bob" {
                        received.push(m["data"]["n"].as_u64().unwrap());
                    }
                }
            }
            (receiver, received, saw_reset)
        });
        tasks.push((sending, receiving));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.shutdown().await;

    let second = TestServer::start(&["--listen", &listen, "--rate-limit", "0"]).await;
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
        if !saw_reset {
            let (status, body) = receiver.poll_raw(0.0).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                body["reset"], true,
                "the new server must say the cursor is gone: {body}"
            );
        }
    }
    second.shutdown().await;
}
