//! The call set-up workload, the job the server exists for: pairs of
//! peers, each pair in a loop of join, offer, answer, 8 trickled ICE
//! candidates each way, and leave. The same messages on either target (on
//! nchan, a channel per peer, and a leave deletes it); ours gets the
//! candidates as the browser client sends them, nchan one publish each.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::stats::{Latencies, cpu_seconds, round};
use crate::target::{Inbox, Outbox, Target};
use crate::{Outcome, err, unique_room};

/// Candidates each peer trickles.
pub const CANDIDATES: usize = 8;
/// A message not delivered within this is counted lost, and the call given
/// up.
const DELIVERY_WAIT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct Signal {
    /// "offer", "answer" or "candidate".
    kind: String,
    n: usize,
    sdp: String,
}

/// What `concurrent` pairs achieve in `seconds` of back-to-back calls.
pub async fn setup(
    target: &Target,
    concurrent: usize,
    seconds: f64,
    server_pid: Option<u32>,
) -> Outcome {
    let base = unique_room("call");
    let stop_at = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu_before = server_pid.and_then(cpu_seconds);
    let own_cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrent {
        // Two browsers making call after call: connections are reused
        // across calls, never shared with another worker's.
        let target = target.own_pools();
        let base = base.clone();
        workers.spawn(async move {
            let target = target?;
            let mut times = Latencies::new();
            let (mut calls, mut lost, mut duplicated) = (0u64, 0u64, 0u64);
            while Instant::now() < stop_at {
                let id = format!("{base}-{worker}-{calls}");
                let outcome = one_call(&target, &id).await?;
                times.record(outcome.took);
                lost += outcome.lost;
                duplicated += outcome.duplicated;
                calls += 1;
            }
            Ok::<_, String>((calls, lost, duplicated, times))
        });
    }
    let (mut calls, mut lost, mut duplicated) = (0, 0, 0);
    let mut times = Latencies::new();
    while let Some(done) = workers.join_next().await {
        let (c, l, d, t) = done.map_err(err)??;
        calls += c;
        lost += l;
        duplicated += d;
        times.add(&t);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_call = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(before), Some(after)) if calls > 0 => {
            json!(round((after - before) * 1e6 / calls as f64))
        }
        _ => serde_json::Value::Null,
    };
    Ok(json!({
        "workload": "setup",
        "target": target.name(),
        "concurrent": concurrent,
        "seconds": seconds,
        "calls": calls,
        "setups_per_s": round(calls as f64 / elapsed),
        "setup_time": times.percentiles(),
        "messages_per_call": 2 + 2 * CANDIDATES,
        "lost": lost,
        "duplicated": duplicated,
        "server_cpu_us_per_call": per_call(cpu_before, server_pid.and_then(cpu_seconds)),
        "loadgen_cpu_us_per_call": per_call(own_cpu_before, cpu_seconds(std::process::id())),
    }))
}

struct CallOutcome {
    /// From the first request to the last candidate delivered.
    took: Duration,
    lost: u64,
    duplicated: u64,
}

/// One call: a joins and offers, b (joined) answers, both trickle their
/// candidates, both leave.
async fn one_call(target: &Target, id: &str) -> Result<CallOutcome, String> {
    let started = Instant::now();
    let [(to_b, mut a_inbox), (to_a, mut b_inbox)] = target.call(id).await?;
    let mut tally = Tally::default();
    send(&to_b, "offer", 0).await?;
    tally.expect(&mut b_inbox, "offer", 1).await?;
    send(&to_a, "answer", 0).await?;
    tally.expect(&mut a_inbox, "answer", 1).await?;
    // Both trickle at once, as two browsers do, each reading the other's.
    let (a_side, b_side) = (trickle(&to_b), trickle(&to_a));
    let mut a_tally = Tally::default();
    let mut b_tally = Tally::default();
    let (sent_a, sent_b, got_a, got_b) = tokio::join!(
        a_side,
        b_side,
        a_tally.expect(&mut a_inbox, "candidate", CANDIDATES),
        b_tally.expect(&mut b_inbox, "candidate", CANDIDATES),
    );
    sent_a?;
    sent_b?;
    got_a?;
    got_b?;
    let took = started.elapsed();
    a_inbox.leave().await?;
    b_inbox.leave().await?;
    Ok(CallOutcome {
        took,
        lost: tally.lost + a_tally.lost + b_tally.lost,
        duplicated: tally.duplicated + a_tally.duplicated + b_tally.duplicated,
    })
}

/// Sends [`CANDIDATES`] candidates found at once, as `web/signal.js` sends
/// them: the first at once, and the rest, made while it was in flight, in
/// the next request as one batch. On nchan, one publish each.
async fn trickle(outbox: &Outbox) -> Result<(), String> {
    send(outbox, "candidate", 0).await?;
    let rest = (1..CANDIDATES)
        .map(|n| signal("candidate", n))
        .collect::<Result<_, _>>()?;
    outbox.send_batch(rest).await
}

async fn send(outbox: &Outbox, kind: &str, n: usize) -> Result<(), String> {
    outbox.send(signal(kind, n)?).await
}

fn signal(kind: &str, n: usize) -> Result<Bytes, String> {
    // About the size of a real offer's SDP, and of a candidate line.
    let sdp = if kind == "candidate" { 90 } else { 2000 };
    let body = serde_json::to_vec(&Signal {
        kind: kind.to_owned(),
        n,
        sdp: "x".repeat(sdp),
    })
    .map_err(err)?;
    Ok(body.into())
}

#[derive(Default)]
struct Tally {
    lost: u64,
    duplicated: u64,
}

impl Tally {
    /// Reads `inbox` until `count` distinct messages of `kind` arrived, or
    /// until [`DELIVERY_WAIT`] passes without one (the rest are lost).
    async fn expect(&mut self, inbox: &mut Inbox, kind: &str, count: usize) -> Result<(), String> {
        let mut seen = vec![false; count];
        let mut arrived = 0;
        while arrived < count {
            let messages = inbox.receive(DELIVERY_WAIT).await?;
            if messages.is_empty() {
                self.lost += (count - arrived) as u64;
                return Ok(());
            }
            for message in messages {
                let signal: Signal = serde_json::from_str(&message).map_err(err)?;
                if signal.kind != kind || signal.n >= count {
                    return Err(format!("expected {kind}, got {} {}", signal.kind, signal.n));
                }
                if std::mem::replace(&mut seen[signal.n], true) {
                    self.duplicated += 1;
                } else {
                    arrived += 1;
                }
            }
        }
        Ok(())
    }
}
