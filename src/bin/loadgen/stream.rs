//! The stream workload, on our server or on nginx+nchan: independent
//! pairs, each sender keeping a window of messages in flight to its
//! receiver's mailbox (a room's `rx` here, a channel there).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;

use crate::stats::{Arrivals, Latencies, cpu_seconds, round};
use crate::target::Target;
use crate::{Outcome, Probe, StreamArgs, err, now_us, unique_room};

/// Independent pairs, each sender keeping `args.window` messages in
/// flight to its receiver's mailbox, on `target`.
pub async fn stream(target: &Target, args: StreamArgs, server_pid: Option<u32>) -> Outcome {
    let room_base = unique_room("stream");
    let deadline_send = Duration::from_secs_f64(args.seconds);
    let sent = Arc::new(AtomicU64::new(0));
    let mut pairs = Vec::new();
    for p in 0..args.pairs {
        let own = target.own_pools()?;
        pairs.push(own.pair(&format!("{room_base}-{p}"), "tx", "rx").await?);
    }
    let cpu_before = server_pid.and_then(cpu_seconds);
    let own_cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (tx, mut rx) in pairs {
        let window = Arc::new(Semaphore::new(args.window));
        let pad = "x".repeat(args.size.saturating_sub(40));
        let sent = sent.clone();
        let stop_at = started + deadline_send;
        // Sender: a POST for every free slot in the window, concurrently (so
        // the window is really in flight), until time is up. A slot frees
        // when the receiver has the message.
        let sender_window = window.clone();
        let sender = tokio::spawn(async move {
            let mut n = 0u64;
            let mut posts = tokio::task::JoinSet::new();
            while Instant::now() < stop_at {
                let permit = sender_window.acquire().await.map_err(err)?;
                permit.forget();
                let body = serde_json::to_vec(&Probe {
                    n,
                    t: now_us(),
                    pad: pad.clone(),
                })
                .map_err(err)?;
                let tx = tx.clone();
                let sent = sent.clone();
                posts.spawn(async move {
                    tx.send(body.into()).await?;
                    sent.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), String>(())
                });
                while let Some(done) = posts.try_join_next() {
                    done.map_err(err)??;
                }
                n += 1;
            }
            while let Some(done) = posts.join_next().await {
                done.map_err(err)??;
            }
            Ok::<u64, String>(n)
        });
        // Receiver: polls, checks order and duplicates, frees window slots.
        let receiver = tokio::spawn(async move {
            let mut seen = Arrivals::default();
            let (mut duplicated, mut reordered) = (0u64, 0u64);
            let mut latencies = Latencies::new();
            let mut last = None;
            loop {
                let messages = rx.receive(Duration::from_secs(2)).await?;
                if messages.is_empty() && Instant::now() > stop_at + Duration::from_secs(2) {
                    break;
                }
                for message in messages {
                    let probe: Probe = serde_json::from_str(&message).map_err(err)?;
                    if !seen.insert(probe.n)? {
                        duplicated += 1;
                        continue;
                    }
                    if last.is_some_and(|l| probe.n < l) {
                        reordered += 1;
                    }
                    last = Some(probe.n);
                    latencies.record(Duration::from_micros(now_us().saturating_sub(probe.t)));
                    window.add_permits(1);
                }
            }
            Ok::<_, String>((seen.count, duplicated, reordered, latencies))
        });
        tasks.push((sender, receiver));
    }
    let (mut total_sent, mut unique, mut duplicated, mut reordered) = (0, 0, 0, 0);
    let mut latencies = Latencies::new();
    for (sender, receiver) in tasks {
        total_sent += sender.await.map_err(err)??;
        let (u, d, o, l) = receiver.await.map_err(err)??;
        unique += u;
        duplicated += d;
        reordered += o;
        latencies.add(&l);
    }
    let send_time = deadline_send.as_secs_f64();
    let per_message = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(before), Some(after)) if unique > 0 => {
            json!(round((after - before) * 1e6 / unique as f64))
        }
        _ => serde_json::Value::Null,
    };
    let cpu = per_message(cpu_before, server_pid.and_then(cpu_seconds));
    let own_cpu = per_message(own_cpu_before, cpu_seconds(std::process::id()));
    Ok(json!({
        "workload": "stream",
        "target": target.name(),
        "pairs": args.pairs,
        "window": args.window,
        "seconds": args.seconds,
        "sent": total_sent,
        "delivered": unique,
        "messages_per_s": round(unique as f64 / send_time),
        "one_way": latencies.percentiles(),
        "lost": total_sent - unique.min(total_sent),
        "duplicated": duplicated,
        // With concurrent POSTs the server's order is theirs to race for.
        "reordered": (args.window == 1).then_some(reordered),
        "server_cpu_us_per_message": cpu,
        "loadgen_cpu_us_per_message": own_cpu,
    }))
}
