//! The parked workload: many idle parked polls (the server's memory per
//! poll), then one message to each mailbox (the fan-out's time). On ours,
//! rooms of `room_size` peers; on nchan, a channel per poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use signal_relay::client::{Client, Peer};
use tokio::sync::Semaphore;

use crate::nchan::{self, Nchan};
use crate::stats::{round, rss_kib};
use crate::{Outcome, ParkedArgs, err, unique_room};

pub async fn parked(client: &Client, args: ParkedArgs, server_pid: Option<u32>) -> Outcome {
    let room_base = unique_room("parked");
    let room_size = args.room_size.max(2);
    let rss_before = server_pid.and_then(rss_kib);
    // Join everyone (bounded concurrency), then park them all.
    let joiner = Arc::new(Semaphore::new(args.senders));
    let mut joins = Vec::new();
    for c in 0..args.clients {
        let mut peer = Peer::new(
            client,
            &format!("{room_base}-{}", c / room_size),
            &format!("p{}", c % room_size),
        );
        let joiner = joiner.clone();
        joins.push(tokio::spawn(async move {
            let _slot = joiner.acquire().await.map_err(err)?;
            peer.join().await.map_err(err)?;
            Ok::<_, String>(peer)
        }));
    }
    let mut joined = Vec::with_capacity(args.clients);
    for join in joins {
        joined.push(join.await.map_err(err)??);
    }
    // Take the `join` events of later joiners now, on the joiners' few
    // connections, so each parked poll below parks at once. Polls that
    // returned and polled again would each take a fresh connection while
    // the pool still held the old one, and the load generator would run
    // out of descriptors long before the server did.
    let mut drains = Vec::new();
    for mut peer in joined {
        let joiner = joiner.clone();
        drains.push(tokio::spawn(async move {
            let _slot = joiner.acquire().await.map_err(err)?;
            while !peer
                .poll(Duration::ZERO)
                .await
                .map_err(err)?
                .messages
                .is_empty()
            {}
            Ok::<_, String>(peer)
        }));
    }
    let mut peers = Vec::with_capacity(args.clients);
    for drain in drains {
        peers.push(drain.await.map_err(err)??);
    }
    // A poll that returns anyway (with no message from a peer) polls again.
    let hold = Duration::from_secs_f64(args.hold);
    let parked_for = hold + Duration::from_secs(30);
    let received_at = Arc::new(std::sync::Mutex::new(Vec::with_capacity(args.clients)));
    let mut polls = Vec::new();
    let senders: Vec<Peer> = peers.to_vec();
    for (i, mut peer) in peers.into_iter().enumerate() {
        // Connect in waves, as real clients arrive, not in one SYN flood.
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let received_at = received_at.clone();
        polls.push(tokio::spawn(async move {
            loop {
                let batch = peer.poll(parked_for).await.map_err(err)?;
                if batch.messages.iter().any(|m| m.from.is_some()) {
                    received_at.lock().map_err(err)?.push(Instant::now());
                    return Ok::<_, String>(());
                }
            }
        }));
    }
    tokio::time::sleep(hold).await;
    let rss_parked = server_pid.and_then(rss_kib);

    // Fan-out: in each room, p0 broadcasts (reaching everyone else) and p1
    // sends to p0, so every mailbox gets exactly one message.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.senders));
    let mut sends = Vec::new();
    for sender in senders {
        let to = match sender.name() {
            "p0" => None,
            "p1" => Some("p0"),
            _ => continue,
        };
        let gate = gate.clone();
        sends.push(tokio::spawn(async move {
            let _slot = gate.acquire().await.map_err(err)?;
            sender
                .send(to, &json!({"fanout": true}))
                .await
                .map_err(err)
                .map(drop)
        }));
    }
    for send in sends {
        send.await.map_err(err)??;
    }
    for poll in polls {
        poll.await.map_err(err)??;
    }
    let last = received_at
        .lock()
        .map_err(err)?
        .iter()
        .max()
        .copied()
        .unwrap_or(started);
    let received = received_at.lock().map_err(err)?.len();
    let mut report = report(
        "signal-relay",
        &args,
        rss_before,
        rss_parked,
        last.duration_since(started),
        received,
    );
    report["room_size"] = json!(room_size);
    Ok(report)
}

/// The same on nginx+nchan: `clients` subscribers, each long-polling its
/// own channel, then one publish to each channel.
pub async fn on_nchan(server: &Nchan, args: ParkedArgs) -> Outcome {
    let base = unique_room("parked");
    let http = nchan::http_client()?;
    let rss_before = rss_kib(server.pid());
    let hold = Duration::from_secs_f64(args.hold);
    let parked_for = hold + Duration::from_secs(30);
    let received_at = Arc::new(std::sync::Mutex::new(Vec::with_capacity(args.clients)));
    let mut publishers = Vec::with_capacity(args.clients);
    let mut polls = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (publisher, mut subscriber) =
            nchan::channel(&http, &http, &server.base, &format!("{base}-{i}"));
        publishers.push(publisher);
        let received_at = received_at.clone();
        polls.push(tokio::spawn(async move {
            loop {
                if subscriber.poll(parked_for).await?.is_some() {
                    received_at.lock().map_err(err)?.push(Instant::now());
                    return Ok::<_, String>(());
                }
            }
        }));
    }
    tokio::time::sleep(hold).await;
    let rss_parked = rss_kib(server.pid());
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.senders));
    let mut sends = Vec::with_capacity(args.clients);
    for publisher in publishers {
        let gate = gate.clone();
        sends.push(tokio::spawn(async move {
            let _slot = gate.acquire().await.map_err(err)?;
            publisher
                .send(bytes::Bytes::from_static(br#"{"fanout":true}"#))
                .await
        }));
    }
    for send in sends {
        send.await.map_err(err)??;
    }
    for poll in polls {
        poll.await.map_err(err)??;
    }
    let received = received_at.lock().map_err(err)?.clone();
    let last = received.iter().max().copied().unwrap_or(started);
    Ok(report(
        "nchan",
        &args,
        rss_before,
        rss_parked,
        last.duration_since(started),
        received.len(),
    ))
}

/// One report, alike for both targets.
fn report(
    target: &str,
    args: &ParkedArgs,
    rss_before: Option<u64>,
    rss_parked: Option<u64>,
    fanout: Duration,
    received: usize,
) -> serde_json::Value {
    let per_poll = match (rss_before, rss_parked) {
        (Some(before), Some(parked)) => json!(round(
            (parked.saturating_sub(before)) as f64 * 1024.0 / args.clients as f64
        )),
        _ => serde_json::Value::Null,
    };
    json!({
        "workload": "parked",
        "target": target,
        "clients": args.clients,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_parked": rss_parked,
        "server_bytes_per_parked_poll": per_poll,
        "fanout_ms": round(fanout.as_secs_f64() * 1e3),
        "received": received,
        "lost": args.clients - received.min(args.clients),
        "duplicated": received.saturating_sub(args.clients),
    })
}
