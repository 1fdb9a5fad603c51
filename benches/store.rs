//! The room/mailbox store in-process, without HTTP: what one operation
//! costs the server's CPU.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::value::RawValue;
use signal_relay::name::Name;
use signal_relay::store::{Credentials, Limits, MemoryStore, PollRequest, SendRequest, Store};
use signal_relay::token::Token;
use tokio::runtime::Runtime;

/// A 300-byte message, the size of an ICE candidate.
fn candidate() -> Arc<RawValue> {
    let text = format!(
        r#"{{"type":"candidate","ice":{{"candidate":"{}"}}}}"#,
        "x".repeat(256)
    );
    Arc::from(RawValue::from_string(text).expect("valid JSON"))
}

struct Member {
    who: Credentials,
    since: u64,
}

/// A room with `n` joined peers, everything read.
fn room(rt: &Runtime, store: &MemoryStore, n: usize) -> Vec<Member> {
    let mut members = Vec::new();
    for i in 0..n {
        let who = Credentials {
            room: Name::parse("bench").expect("name"),
            peer: Name::parse(&format!("p{i}")).expect("name"),
            token: Some(Token::generate()),
            may_claim: true,
        };
        members.push(Member { who, since: 0 });
    }
    for m in &mut members {
        m.since = poll(rt, store, m).0;
    }
    for m in &mut members {
        m.since = poll(rt, store, m).0; // the later joins
    }
    members
}

/// One zero-wait poll from the member's cursor: (next cursor, messages).
fn poll(rt: &Runtime, store: &MemoryStore, member: &Member) -> (u64, usize) {
    let batch = rt
        .block_on(store.poll(PollRequest {
            reader: member.who.clone(),
            since: member.since,
            epoch: None,
            wait: Duration::ZERO,
        }))
        .expect("poll");
    (batch.next, batch.messages.len())
}

fn send(
    rt: &Runtime,
    store: &MemoryStore,
    from: &Member,
    to: Option<&Member>,
    data: &Arc<RawValue>,
) {
    rt.block_on(store.send(SendRequest {
        sender: from.who.clone(),
        to: to.map(|m| m.who.peer.clone()),
        messages: vec![data.clone()],
        idempotency_key: None,
    }))
    .expect("send");
}

fn store_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let data = candidate();
    let mut group = c.benchmark_group("store");

    let store = MemoryStore::new(Limits::default());
    let mut pair = room(&rt, &store, 2);
    group.bench_function("send_to_peer_then_poll_and_ack", |b| {
        b.iter(|| {
            send(&rt, &store, &pair[0], Some(&pair[1]), &data);
            let (next, n) = poll(&rt, &store, &pair[1]);
            debug_assert_eq!(n, 1);
            pair[1].since = next;
        })
    });

    let store = MemoryStore::new(Limits::default());
    let mut six = room(&rt, &store, 6);
    group.bench_function("broadcast_to_room_of_6_then_5_polls", |b| {
        b.iter(|| {
            send(&rt, &store, &six[0], None, &data);
            for member in six.iter_mut().skip(1) {
                member.since = poll(&rt, &store, member).0;
            }
        })
    });

    let store = MemoryStore::new(Limits::default());
    let mut pair = room(&rt, &store, 2);
    group.bench_function("16_sends_then_one_poll_of_16", |b| {
        b.iter(|| {
            for _ in 0..16 {
                send(&rt, &store, &pair[0], Some(&pair[1]), &data);
            }
            let (next, n) = poll(&rt, &store, &pair[1]);
            debug_assert_eq!(n, 16);
            pair[1].since = next;
        })
    });

    let store = MemoryStore::new(Limits::default());
    let mut pair = room(&rt, &store, 2);
    group.bench_function("batch_of_16_then_one_poll_of_16", |b| {
        b.iter(|| {
            rt.block_on(store.send(SendRequest {
                sender: pair[0].who.clone(),
                to: Some(pair[1].who.peer.clone()),
                messages: vec![data.clone(); 16],
                idempotency_key: None,
            }))
            .expect("send");
            let (next, n) = poll(&rt, &store, &pair[1]);
            debug_assert_eq!(n, 16);
            pair[1].since = next;
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = store_benches
}
criterion_main!(benches);
