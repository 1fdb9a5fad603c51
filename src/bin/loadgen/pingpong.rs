//! The pingpong workload, on our server or on nginx+nchan: one pair, a
//! sends, b echoes, a sends the next on the echo's arrival. Like a real
//! client, each side keeps a poll parked at all times and sends
//! independently of it, so a message is picked up the moment it arrives.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use signal_relay::client::Client;

use crate::stats::{Latencies, round};
use crate::target::{Outbox, Target};
use crate::{Outcome, PingpongArgs, Probe, err, floor_samples, now_us, unique_room};

pub async fn pingpong(target: &Target, args: PingpongArgs) -> Outcome {
    let [(to_b, mut a_inbox), (to_a, mut b_inbox)] =
        target.own_pools()?.call(&unique_room("pingpong")).await?;
    // b echoes everything from a back to a, until told to stop.
    let echo = tokio::spawn(async move {
        let mut posts = tokio::task::JoinSet::new();
        loop {
            for message in b_inbox.receive(Duration::from_secs(25)).await? {
                if message.contains("\"stop\"") {
                    while let Some(done) = posts.join_next().await {
                        done.map_err(err)??;
                    }
                    return Ok::<_, String>(());
                }
                let to_a = to_a.clone();
                posts.spawn(async move { to_a.send(Bytes::from(message)).await });
            }
            while let Some(done) = posts.try_join_next() {
                done.map_err(err)??;
            }
        }
    });
    let (echoes_tx, mut echoes) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let a_receiver = tokio::spawn(async move {
        loop {
            for message in a_inbox.receive(Duration::from_secs(25)).await? {
                if let Ok(probe) = serde_json::from_str::<Probe>(&message)
                    && echoes_tx.send(probe.n).is_err()
                {
                    return Ok::<_, String>(());
                }
            }
        }
    });

    let pad = "x".repeat(args.size.saturating_sub(40));
    let warm_up = args.count / 10 + 1;
    round_trips(&to_b, &mut echoes, 0, warm_up, &pad).await?;
    let started = Instant::now();
    let samples = round_trips(&to_b, &mut echoes, warm_up as u64, args.count, &pad).await?;
    let elapsed = started.elapsed();
    to_b.send(Bytes::from_static(br#"{"stop": true}"#)).await?;
    echo.await.map_err(err)??;
    a_receiver.abort();

    let rtt = Latencies::of(&samples).percentiles();
    let mut report = json!({
        "workload": "pingpong",
        "target": target.name(),
        "round_trips": args.count,
        "size": args.size,
        "round_trips_per_s": round(args.count as f64 / elapsed.as_secs_f64()),
        "rtt": rtt,
        "lost": 0,
        "duplicated": 0,
    });
    // Two bare exchanges (GET /healthz), measured the same way in the same
    // run: the floor an RTT is compared with. nchan has no such endpoint.
    if let Target::Ours { senders, .. } = target {
        let two_bare = two_bare_exchanges(senders, args.count).await?;
        let ratio =
            rtt["p50_us"].as_f64().unwrap_or(0.0) / two_bare["p50_us"].as_f64().unwrap_or(1.0);
        report["two_bare_exchanges"] = two_bare;
        report["rtt_p50_over_two_bare_p50"] = json!((ratio * 100.0).round() / 100.0);
    }
    Ok(report)
}

async fn two_bare_exchanges(client: &Client, count: usize) -> Result<serde_json::Value, String> {
    let floor = floor_samples(client, count).await.map_err(err)?;
    let pairs: Vec<Duration> = floor.chunks(2).map(|c| c.iter().sum()).collect();
    Ok(Latencies::of(&pairs).percentiles())
}

/// `count` round trips numbered from `first`: each is timed from the send
/// to the echo's arrival on a's parked poll; the POST's own reply is
/// awaited off that path.
async fn round_trips(
    to_b: &Outbox,
    echoes: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    first: u64,
    count: usize,
    pad: &str,
) -> Result<Vec<Duration>, String> {
    let mut samples = Vec::with_capacity(count);
    for n in first..first + count as u64 {
        let body = serde_json::to_vec(&Probe {
            n,
            t: now_us(),
            pad: pad.to_owned(),
        })
        .map_err(err)?;
        let started = Instant::now();
        let sender = to_b.clone();
        let post = tokio::spawn(async move { sender.send(body.into()).await });
        loop {
            match echoes.recv().await {
                Some(echoed) if echoed == n => break,
                Some(_) => continue,
                None => return Err("a's poll loop ended".to_owned()),
            }
        }
        samples.push(started.elapsed());
        post.await.map_err(err)??;
    }
    Ok(samples)
}
