//! A flood from one address, with the default limits: the server must
//! keep serving a well-behaved client on another address (its latency is
//! printed). A binary of its own, so its load does not skew other tests.

mod common;

use signal_relay::wire::header;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{Peer, TestServer, parsed};
use reqwest::{Client, StatusCode};
use serde_json::json;

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
    let server = TestServer::start().await;
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
                if let Ok(r) = attacker
                    .get(url)
                    .header(header::PEER_TOKEN, token)
                    .send()
                    .await
                {
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
        assert_eq!(parsed(got.last().unwrap())["n"], n);
        bob.send_ok(Some("alice"), &json!({ "echo": n })).await;
        let back = alice.poll(10.0).await;
        assert_eq!(parsed(back.last().unwrap())["echo"], n);
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
