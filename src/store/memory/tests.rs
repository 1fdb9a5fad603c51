use std::time::Duration;

use serde_json::{Value, json};

use super::*;

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn who(peer: &str, token: Option<&Token>) -> Credentials {
    Credentials {
        room: name("room"),
        peer: name(peer),
        token: token.cloned(),
        may_claim: true,
    }
}

fn payload(value: Value) -> Payload {
    Arc::from(serde_json::value::to_raw_value(&value).unwrap())
}

fn data(message: &Message) -> Value {
    serde_json::from_str(message.data.get()).unwrap()
}

fn poll_req(peer: &str, token: Option<&Token>, since: u64, epoch: Option<&str>) -> PollRequest {
    PollRequest {
        reader: who(peer, token),
        since,
        epoch: epoch.map(Into::into),
        wait: Duration::ZERO,
    }
}

fn send_req(from: &str, token: &Token, to: Option<&str>, body: Value) -> SendRequest {
    SendRequest {
        sender: who(from, Some(token)),
        to: to.map(name),
        messages: vec![payload(body)],
        idempotency_key: None,
    }
}

/// Joins `peer` with a zero-wait poll and returns its token and first batch.
async fn join(store: &MemoryStore, peer: &str) -> (Token, Batch) {
    let Polled {
        batch,
        issued_token,
    } = store.poll(poll_req(peer, None, 0, None)).await.unwrap();
    (issued_token.expect("a new peer gets a token"), batch)
}

fn small_limits() -> Limits {
    Limits {
        mailbox_messages: 4,
        mailbox_bytes: 1000,
        backlog_messages: 2,
        room_peers: 3,
        rooms: 2,
        parked_polls: 1,
        peer_ttl: Duration::from_secs(10),
        backlog_age: Duration::from_secs(5),
        stored_bytes: 1 << 20,
    }
}

#[tokio::test]
async fn newcomer_learns_the_room_and_the_room_learns_the_newcomer() {
    let store = MemoryStore::new(Limits::default());
    let (alice, first) = join(&store, "alice").await;
    assert_eq!(first.messages.len(), 1);
    assert_eq!(
        data(&first.messages[0]),
        json!({"type": "peers", "peers": []})
    );
    assert_eq!(first.messages[0].from, None);
    assert_eq!(first.messages[0].seq, 1);

    let (_, bob_first) = join(&store, "bob").await;
    assert_eq!(
        data(&bob_first.messages[0]),
        json!({"type": "peers", "peers": ["alice"]})
    );
    let seen = store
        .poll(poll_req("alice", Some(&alice), 1, Some(&first.epoch)))
        .await
        .unwrap();
    assert_eq!(seen.messages.len(), 1);
    assert_eq!(seen.messages[0].seq, 2);
    assert_eq!(
        data(&seen.messages[0]),
        json!({"type": "join", "peer": "bob"})
    );
    assert_eq!(seen.next, 2);
}

#[tokio::test]
async fn ack_frees_and_a_repeated_cursor_redelivers() {
    let store = MemoryStore::new(Limits::default());
    let (alice, _) = join(&store, "alice").await;
    let (bob, b0) = join(&store, "bob").await;
    for i in 0..3 {
        store
            .send(send_req("alice", &alice, Some("bob"), json!({"n": i})))
            .await
            .unwrap();
    }
    let epoch = Some(&*b0.epoch);
    let first = store
        .poll(poll_req("bob", Some(&bob), 1, epoch))
        .await
        .unwrap();
    let seqs: Vec<u64> = first.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert_eq!(first.messages[0].from, Some(name("alice")));
    // The response was "lost": the same cursor gets the same messages.
    let again = store
        .poll(poll_req("bob", Some(&bob), 1, epoch))
        .await
        .unwrap();
    assert_eq!(again.messages.len(), 3);
    assert!(!again.reset);
    // Acknowledging 3 frees 2 and 3 only.
    let rest = store
        .poll(poll_req("bob", Some(&bob), 3, epoch))
        .await
        .unwrap();
    assert_eq!(rest.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [4]);
    assert_eq!(data(&rest.messages[0]), json!({"n": 2}));
}

#[tokio::test]
async fn broadcast_reaches_everyone_else_and_direct_only_its_target() {
    let store = MemoryStore::new(Limits::default());
    let (alice, _) = join(&store, "alice").await;
    let (bob, _) = join(&store, "bob").await;
    let (carol, _) = join(&store, "carol").await;
    let all = store
        .send(send_req("alice", &alice, None, json!({"to": "all"})))
        .await
        .unwrap();
    assert_eq!(all.receipt.delivered, [name("bob"), name("carol")]);
    assert!(!all.receipt.queued);
    let direct = store
        .send(send_req(
            "alice",
            &alice,
            Some("carol"),
            json!({"to": "carol"}),
        ))
        .await
        .unwrap();
    assert_eq!(direct.receipt.delivered, [name("carol")]);

    let bob_box = store
        .poll(poll_req("bob", Some(&bob), 0, None))
        .await
        .unwrap();
    let bodies: Vec<Value> = bob_box.messages.iter().map(data).collect();
    assert!(bodies.contains(&json!({"to": "all"})));
    assert!(!bodies.contains(&json!({"to": "carol"})));
    let carol_box = store
        .poll(poll_req("carol", Some(&carol), 0, None))
        .await
        .unwrap();
    let bodies: Vec<Value> = carol_box.messages.iter().map(data).collect();
    assert!(bodies.contains(&json!({"to": "all"})) && bodies.contains(&json!({"to": "carol"})));
    let alice_box = store
        .poll(poll_req("alice", Some(&alice), 0, None))
        .await
        .unwrap();
    assert!(
        alice_box.messages.iter().all(|m| m.from.is_none()),
        "no echo to the sender"
    );

    let missing = store
        .send(send_req("alice", &alice, Some("dave"), json!({})))
        .await;
    assert!(matches!(missing, Err(StoreError::NoSuchPeer { .. })));
    let to_self = store
        .send(send_req("alice", &alice, Some("alice"), json!({})))
        .await;
    assert_eq!(to_self.unwrap_err(), StoreError::SendToSelf);
}

#[tokio::test(start_paused = true)]
async fn backlog_goes_to_the_next_joiner_only_and_ages_out() {
    let store = MemoryStore::new(small_limits());
    let (alice, _) = join(&store, "alice").await;
    let sent = store
        .send(send_req("alice", &alice, None, json!({"type": "offer"})))
        .await
        .unwrap();
    assert!(sent.receipt.queued);
    assert!(sent.receipt.delivered.is_empty());

    let (_, bob) = join(&store, "bob").await;
    assert_eq!(bob.messages.len(), 2);
    assert_eq!(bob.messages[1].from, Some(name("alice")));
    assert_eq!(data(&bob.messages[1]), json!({"type": "offer"}));
    let (_, carol) = join(&store, "carol").await;
    assert_eq!(carol.messages.len(), 1, "the backlog went to bob only");

    // A fresh room: a queued message older than backlog_age is dropped.
    let solo = |p: &str, t: Option<&Token>| Credentials {
        room: name("other"),
        ..who(p, t)
    };
    let first = store
        .poll(PollRequest {
            reader: solo("dave", None),
            ..poll_req("dave", None, 0, None)
        })
        .await
        .unwrap();
    let dave = first.issued_token.unwrap();
    let mut req = send_req("dave", &dave, None, json!({"old": true}));
    req.sender = solo("dave", Some(&dave));
    store.send(req).await.unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    let late = store
        .poll(PollRequest {
            reader: solo("erin", None),
            ..poll_req("erin", None, 0, None)
        })
        .await
        .unwrap();
    assert_eq!(late.messages.len(), 1, "only the peers event: {late:?}");
}

#[tokio::test]
async fn full_backlog_refuses() {
    let store = MemoryStore::new(small_limits());
    let (alice, _) = join(&store, "alice").await;
    for _ in 0..2 {
        store
            .send(send_req("alice", &alice, None, json!({})))
            .await
            .unwrap();
    }
    let refused = store.send(send_req("alice", &alice, None, json!({}))).await;
    assert!(matches!(refused, Err(StoreError::BacklogFull { .. })));
}

#[tokio::test]
async fn a_full_mailbox_refuses_the_whole_broadcast() {
    let store = MemoryStore::new(small_limits());
    let (alice, _) = join(&store, "alice").await;
    let (bob, _) = join(&store, "bob").await;
    let (_carol, _) = join(&store, "carol").await;
    // carol's mailbox: the peers event + 3 messages = 4 = full; bob's
    // (peers event + `join carol`) still has room.
    for i in 0..3 {
        store
            .send(send_req("alice", &alice, Some("carol"), json!({"i": i})))
            .await
            .unwrap();
    }
    let refused = store
        .send(send_req("alice", &alice, None, json!({"x": 1})))
        .await;
    assert_eq!(
        refused.unwrap_err(),
        StoreError::MailboxFull {
            peer: name("carol")
        }
    );
    let bob_box = store
        .poll(poll_req("bob", Some(&bob), 0, None))
        .await
        .unwrap();
    assert!(
        bob_box.messages.iter().all(|m| m.from.is_none()),
        "nothing stored for bob either: {bob_box:?}"
    );
    // Bytes count too.
    let big = "x".repeat(990);
    let too_big = store
        .send(send_req("carol", &_carol, Some("bob"), json!({ "b": big })))
        .await;
    assert_eq!(
        too_big.unwrap_err(),
        StoreError::MailboxFull { peer: name("bob") }
    );
}

#[tokio::test]
async fn tokens_guard_every_later_request() {
    let store = MemoryStore::new(Limits::default());
    let offered = Token::parse("alice-secret-0001").unwrap();
    let first = store
        .poll(poll_req("alice", Some(&offered), 0, None))
        .await
        .unwrap();
    assert_eq!(
        first.issued_token.as_ref().map(Token::expose),
        Some(offered.expose())
    );
    let again = store
        .poll(poll_req("alice", Some(&offered), 1, None))
        .await
        .unwrap();
    assert!(
        again.issued_token.is_none(),
        "only the creating reply carries it"
    );

    let stranger = Token::parse("mallory-guess-0001").unwrap();
    assert!(matches!(
        store
            .poll(poll_req("alice", Some(&stranger), 0, None))
            .await,
        Err(StoreError::TokenMismatch { .. })
    ));
    assert!(matches!(
        store.poll(poll_req("alice", None, 0, None)).await,
        Err(StoreError::TokenMissing { .. })
    ));
    assert!(matches!(
        store
            .send(send_req("alice", &stranger, None, json!({})))
            .await,
        Err(StoreError::TokenMismatch { .. })
    ));
    assert!(matches!(
        store.leave(who("alice", None)).await,
        Err(StoreError::TokenMissing { .. })
    ));
}

#[tokio::test]
async fn a_first_send_creates_the_sender() {
    let store = MemoryStore::new(Limits::default());
    let (_, _) = join(&store, "bob").await;
    let offered = Token::parse("alice-secret-0001").unwrap();
    let sent = store
        .send(send_req("alice", &offered, None, json!({"hi": 1})))
        .await
        .unwrap();
    assert_eq!(
        sent.issued_token.as_ref().map(Token::expose),
        Some(offered.expose())
    );
    assert_eq!(sent.receipt.delivered, [name("bob")]);
    let alice = store
        .poll(poll_req("alice", Some(&offered), 0, None))
        .await
        .unwrap();
    assert_eq!(
        data(&alice.messages[0]),
        json!({"type": "peers", "peers": ["bob"]})
    );
    // A refused first send leaves no trace: carol is not created.
    let carol = Token::parse("carol-secret-0001").unwrap();
    let refused = store
        .send(send_req("carol", &carol, Some("nobody"), json!({})))
        .await;
    assert!(refused.is_err());
    let join_carol = store.poll(poll_req("carol", None, 0, None)).await.unwrap();
    assert!(join_carol.issued_token.is_some(), "carol was free to claim");
}

#[tokio::test]
async fn cursors_that_cannot_be_honoured_reset() {
    let store = MemoryStore::new(Limits::default());
    let (alice, a0) = join(&store, "alice").await;
    let (_bob, _) = join(&store, "bob").await;
    let epoch = Some(&*a0.epoch);

    let other_epoch = store
        .poll(poll_req("alice", Some(&alice), 1, Some("Zz9Zz9Zz")))
        .await
        .unwrap();
    assert!(other_epoch.reset);
    assert_eq!(other_epoch.messages.len(), 2, "everything retained");
    assert_eq!(other_epoch.next, 2);

    let beyond = store
        .poll(poll_req("alice", Some(&alice), 99, epoch))
        .await
        .unwrap();
    assert!(beyond.reset);
    assert_eq!(beyond.next, 2);

    // Acknowledge everything, then come back with an older cursor: the
    // messages after it are gone, which must be said, not skipped.
    let acked = store
        .poll(poll_req("alice", Some(&alice), 2, epoch))
        .await
        .unwrap();
    assert!(!acked.reset && acked.messages.is_empty());
    let stale = store
        .poll(poll_req("alice", Some(&alice), 1, epoch))
        .await
        .unwrap();
    assert!(stale.reset);
    assert!(stale.messages.is_empty());
    assert_eq!(stale.next, 2);

    // A cursor presented to a mailbox that this request creates.
    let fresh = store.poll(poll_req("carol", None, 5, None)).await.unwrap();
    assert!(fresh.reset);
    assert_eq!(fresh.messages.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_parked_poll_wakes_on_arrival() {
    let store = Arc::new(MemoryStore::new(Limits::default()));
    let (alice, _) = join(&store, "alice").await;
    let (bob, b0) = join(&store, "bob").await;
    let epoch = b0.epoch.to_string();
    let started = Instant::now();
    let parked = {
        let store = store.clone();
        let bob = bob.clone();
        tokio::spawn(async move {
            let mut req = poll_req("bob", Some(&bob), 1, Some(&epoch));
            req.wait = Duration::from_secs(25);
            store.poll(req).await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(store.stats().await.parked_polls, 1);
    store
        .send(send_req(
            "alice",
            &alice,
            Some("bob"),
            json!({"wake": true}),
        ))
        .await
        .unwrap();
    let batch = parked.await.unwrap().unwrap();
    assert_eq!(batch.messages.len(), 1);
    assert_eq!(data(&batch.messages[0]), json!({"wake": true}));
    // Woken by the send, not found at the deadline (the paused clock would
    // otherwise jump straight to it).
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(store.stats().await.parked_polls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_parked_poll_times_out_empty() {
    let store = MemoryStore::new(Limits::default());
    let (bob, b0) = join(&store, "bob").await;
    let mut req = poll_req("bob", Some(&bob), 1, Some(&b0.epoch));
    req.wait = Duration::from_secs(3);
    let started = Instant::now();
    let batch = store.poll(req).await.unwrap();
    assert!(batch.messages.is_empty() && !batch.reset);
    assert_eq!(batch.next, 1);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_second_poll_ends_the_first() {
    let store = Arc::new(MemoryStore::new(small_limits_with_parked(4)));
    let (bob, _) = join(&store, "bob").await;
    let spawn_poll = |store: Arc<MemoryStore>, bob: Token| {
        tokio::spawn(async move {
            let mut req = poll_req("bob", Some(&bob), 1, None);
            req.wait = Duration::from_secs(25);
            store.poll(req).await
        })
    };
    let first = spawn_poll(store.clone(), bob.clone());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = spawn_poll(store.clone(), bob.clone());
    let started = Instant::now();
    let ended = first.await.unwrap().unwrap();
    assert!(ended.messages.is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!second.is_finished(), "the newer poll stays parked");
    store.close();
    let closed = second.await.unwrap().unwrap();
    assert!(closed.messages.is_empty());
    assert_eq!(
        store
            .poll(poll_req("bob", Some(&bob), 1, None))
            .await
            .unwrap_err(),
        StoreError::ShuttingDown
    );
}

fn small_limits_with_parked(parked_polls: usize) -> Limits {
    Limits {
        parked_polls,
        ..small_limits()
    }
}

#[tokio::test(start_paused = true)]
async fn idle_peers_expire_parked_ones_do_not() {
    let store = Arc::new(MemoryStore::new(small_limits()));
    let (alice, a0) = join(&store, "alice").await;
    let (_bob, _) = join(&store, "bob").await;
    // alice parks for longer than the TTL; bob goes quiet.
    let epoch = a0.epoch.to_string();
    let started = Instant::now();
    let parked = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut req = poll_req("alice", Some(&alice), 2, Some(&epoch));
            req.wait = Duration::from_secs(30);
            store.poll(req).await
        })
    };
    tokio::time::sleep(Duration::from_secs(11)).await;
    store.sweep().await;
    let batch = parked.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "woken by the leave event"
    );
    assert_eq!(
        data(&batch.messages[0]),
        json!({"type": "leave", "peer": "bob", "reason": "expired"})
    );
    // bob's name is free again.
    let (_, rejoined) = join(&store, "bob").await;
    assert_eq!(
        data(&rejoined.messages[0]),
        json!({"type": "peers", "peers": ["alice"]})
    );
}

#[tokio::test(start_paused = true)]
async fn empty_rooms_are_removed_and_the_room_cap_holds() {
    let store = MemoryStore::new(small_limits());
    for room in ["r1", "r2"] {
        store
            .poll(PollRequest {
                reader: Credentials {
                    room: name(room),
                    peer: name("p"),
                    token: None,
                    may_claim: true,
                },
                ..poll_req("p", None, 0, None)
            })
            .await
            .unwrap();
    }
    let third = store
        .poll(PollRequest {
            reader: Credentials {
                room: name("r3"),
                peer: name("p"),
                token: None,
                may_claim: true,
            },
            ..poll_req("p", None, 0, None)
        })
        .await;
    assert_eq!(third.unwrap_err(), StoreError::TooManyRooms { max: 2 });
    assert_eq!(store.stats().await.rooms, 2);
    tokio::time::advance(Duration::from_secs(11)).await;
    store.sweep().await;
    assert_eq!(store.stats().await.rooms, 0);
}

#[tokio::test]
async fn a_full_room_refuses_newcomers() {
    let store = MemoryStore::new(small_limits());
    for p in ["a", "b", "c"] {
        join(&store, p).await;
    }
    assert_eq!(
        store.poll(poll_req("d", None, 0, None)).await.unwrap_err(),
        StoreError::RoomFull {
            room: name("room"),
            max: 3
        }
    );
}

#[tokio::test(start_paused = true)]
async fn the_parked_poll_cap_holds_and_frees() {
    let store = Arc::new(MemoryStore::new(Limits {
        parked_polls: 1,
        ..Limits::default()
    }));
    // Two peers in separate rooms, so neither hears of the other.
    let park = |room: &str, token: Token| PollRequest {
        reader: Credentials {
            room: name(room),
            peer: name("p"),
            token: Some(token),
            may_claim: true,
        },
        since: 1,
        epoch: None,
        wait: Duration::from_secs(5),
    };
    let mut tokens = Vec::new();
    for room in ["r1", "r2"] {
        let first = store
            .poll(PollRequest {
                wait: Duration::ZERO,
                since: 0,
                ..park(room, Token::generate())
            })
            .await;
        tokens.push(first.unwrap().issued_token.unwrap());
    }
    let holder = {
        let store = store.clone();
        let req = park("r1", tokens[0].clone());
        tokio::spawn(async move { store.poll(req).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(store.stats().await.parked_polls, 1);
    assert_eq!(
        store.poll(park("r2", tokens[1].clone())).await.unwrap_err(),
        StoreError::TooManyParkedPolls { max: 1 }
    );
    // A zero-wait poll never parks, so it is still served.
    let mut quick = park("r2", tokens[1].clone());
    quick.wait = Duration::ZERO;
    assert!(store.poll(quick).await.is_ok());
    // The slot frees when the parked poll ends, however it ends.
    holder.abort();
    let _ = holder.await;
    assert_eq!(store.stats().await.parked_polls, 0);
    let again = store.poll(park("r2", tokens[1].clone())).await.unwrap();
    assert!(again.messages.is_empty());
}

#[tokio::test]
async fn an_idempotent_retry_is_stored_once() {
    let store = MemoryStore::new(Limits::default());
    let (alice, _) = join(&store, "alice").await;
    let (bob, _) = join(&store, "bob").await;
    let keyed = || SendRequest {
        idempotency_key: Some("k-1".into()),
        ..send_req("alice", &alice, None, json!({"once": true}))
    };
    let first = store.send(keyed()).await.unwrap();
    let retry = store.send(keyed()).await.unwrap();
    assert_eq!(first.receipt, retry.receipt);
    let bob_box = store
        .poll(poll_req("bob", Some(&bob), 0, None))
        .await
        .unwrap();
    let copies = bob_box
        .messages
        .iter()
        .filter(|m| data(m) == json!({"once": true}))
        .count();
    assert_eq!(copies, 1);
    // The same key from another sender is another message.
    let other = SendRequest {
        idempotency_key: Some("k-1".into()),
        ..send_req("bob", &bob, None, json!({"from": "bob"}))
    };
    assert_eq!(
        store.send(other).await.unwrap().receipt.delivered,
        [name("alice")]
    );
}

/// Idempotency records are part of the memory ceiling: at most
/// `MAX_RECEIPTS_PER_ROOM` per room (the oldest forgotten first), and none
/// older than `IDEMPOTENCY_WINDOW` once the sweep has run.
#[tokio::test(start_paused = true)]
async fn idempotency_records_are_bounded_in_count_and_age() {
    let store = MemoryStore::new(Limits {
        mailbox_messages: 4 * MAX_RECEIPTS_PER_ROOM,
        peer_ttl: 10 * IDEMPOTENCY_WINDOW,
        ..Limits::default()
    });
    let (alice, a0) = join(&store, "alice").await;
    let (bob, b0) = join(&store, "bob").await;
    let keyed = |n: usize| SendRequest {
        idempotency_key: Some(format!("k-{n}").into()),
        ..send_req("alice", &alice, Some("bob"), json!({ "n": n }))
    };
    let newest = MAX_RECEIPTS_PER_ROOM;
    for n in 0..=newest {
        store.send(keyed(n)).await.unwrap();
    }
    // One record too many: k-0 was forgotten, k-newest is remembered.
    store.send(keyed(0)).await.unwrap();
    store.send(keyed(newest)).await.unwrap();
    let copies = |batch: &Batch, n: usize| {
        batch
            .messages
            .iter()
            .filter(|m| data(m) == json!({ "n": n }))
            .count()
    };
    let seen = store
        .poll(poll_req("bob", Some(&bob), b0.next, Some(&b0.epoch)))
        .await
        .unwrap();
    assert_eq!(copies(&seen, 0), 2, "the oldest record was dropped");
    assert_eq!(copies(&seen, newest), 1, "a recent record still holds");

    // Both mailboxes acknowledged: what is left are the records.
    let acked = store
        .poll(poll_req("bob", Some(&bob), seen.next, Some(&b0.epoch)))
        .await
        .unwrap();
    assert!(acked.messages.is_empty());
    store
        .poll(poll_req(
            "alice",
            Some(&alice),
            a0.next + 1,
            Some(&a0.epoch),
        ))
        .await
        .unwrap();
    assert!(store.stored_bytes() > 0);
    tokio::time::advance(IDEMPOTENCY_WINDOW).await;
    store.sweep().await;
    assert_eq!(store.stored_bytes(), 0, "the sweep forgot every record");
    store.send(keyed(newest)).await.unwrap();
    let again = store
        .poll(poll_req("bob", Some(&bob), acked.next, Some(&b0.epoch)))
        .await
        .unwrap();
    assert_eq!(copies(&again, newest), 1, "a key past the window is new");
}

#[tokio::test]
async fn leave_tells_the_others_and_frees_the_name() {
    let store = MemoryStore::new(Limits::default());
    let (alice, a0) = join(&store, "alice").await;
    let (bob, _) = join(&store, "bob").await;
    assert!(store.leave(who("bob", Some(&bob))).await.unwrap());
    assert!(!store.leave(who("bob", Some(&bob))).await.unwrap());
    let seen = store
        .poll(poll_req("alice", Some(&alice), 1, Some(&a0.epoch)))
        .await
        .unwrap();
    let events: Vec<Value> = seen.messages.iter().map(data).collect();
    assert_eq!(
        events,
        [
            json!({"type": "join", "peer": "bob"}),
            json!({"type": "leave", "peer": "bob", "reason": "left"})
        ]
    );
    let (_, back) = join(&store, "bob").await;
    assert_eq!(back.messages.len(), 1);
}

#[tokio::test]
async fn closing_refuses_sends_but_lets_waiting_messages_out() {
    let store = MemoryStore::new(Limits::default());
    let (alice, _) = join(&store, "alice").await;
    let (bob, b0) = join(&store, "bob").await;
    store
        .send(send_req(
            "alice",
            &alice,
            Some("bob"),
            json!({"last": true}),
        ))
        .await
        .unwrap();
    store.close();
    assert_eq!(
        store
            .send(send_req("alice", &alice, Some("bob"), json!({})))
            .await
            .unwrap_err(),
        StoreError::ShuttingDown
    );
    // Accepted before the close: still collected.
    let batch = store
        .poll(poll_req("bob", Some(&bob), 1, Some(&b0.epoch)))
        .await
        .unwrap();
    assert_eq!(data(batch.messages.last().unwrap()), json!({"last": true}));
    // Nothing left: refused, so the client backs off instead of spinning.
    assert_eq!(
        store
            .poll(poll_req("bob", Some(&bob), batch.next, Some(&b0.epoch)))
            .await
            .unwrap_err(),
        StoreError::ShuttingDown
    );
    // And nobody new joins a closing server.
    assert_eq!(
        store
            .poll(poll_req("carol", None, 0, None))
            .await
            .unwrap_err(),
        StoreError::ShuttingDown
    );
}

#[tokio::test]
async fn the_global_byte_budget_refuses_and_frees() {
    let message = json!({"pad": "x".repeat(100)});
    let one = payload(message.clone()).get().len() + MESSAGE_OVERHEAD;
    // Room for the `peers` and `join` events and two messages, not three.
    let events = 3 * MESSAGE_OVERHEAD + 60;
    let store = MemoryStore::new(Limits {
        stored_bytes: events + 2 * one + one / 2,
        ..Limits::default()
    });
    let (alice, _) = join(&store, "alice").await;
    let (bob, b0) = join(&store, "bob").await;
    for _ in 0..2 {
        store
            .send(send_req("alice", &alice, Some("bob"), message.clone()))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .send(send_req("alice", &alice, Some("bob"), message.clone()))
            .await
            .unwrap_err(),
        StoreError::StoreFull {
            max: events + 2 * one + one / 2
        }
    );
    // Delivered and acknowledged, the bytes are free again.
    let batch = store
        .poll(poll_req("bob", Some(&bob), 1, Some(&b0.epoch)))
        .await
        .unwrap();
    store
        .poll(poll_req("bob", Some(&bob), batch.next, Some(&b0.epoch)))
        .await
        .unwrap();
    store
        .send(send_req("alice", &alice, Some("bob"), message))
        .await
        .unwrap();
    // And everyone leaving frees everything.
    store.leave(who("alice", Some(&alice))).await.unwrap();
    store.leave(who("bob", Some(&bob))).await.unwrap();
    assert_eq!(store.stored_bytes(), 0);
}

#[tokio::test]
async fn a_refused_first_send_leaves_no_room_behind() {
    let store = MemoryStore::new(Limits {
        rooms: 1,
        ..Limits::default()
    });
    let offered = Token::parse("alice-secret-0001").unwrap();
    let refused = store
        .send(send_req("alice", &offered, Some("ghost"), json!({})))
        .await;
    assert!(matches!(refused, Err(StoreError::NoSuchPeer { .. })));
    assert_eq!(
        store.stats().await.rooms,
        0,
        "not counted against --max-rooms"
    );
    let other = Credentials {
        room: name("elsewhere"),
        ..who("carol", None)
    };
    let joined = store
        .poll(PollRequest {
            reader: other,
            ..poll_req("carol", None, 0, None)
        })
        .await;
    assert!(joined.is_ok(), "{joined:?}");
}

#[tokio::test]
async fn a_silent_peer_drowned_in_room_events_is_evicted() {
    let store = MemoryStore::new(Limits {
        mailbox_messages: 8,
        ..Limits::default()
    });
    let (_silent, _) = join(&store, "silent").await;
    // Others come and go; `silent` never polls: join + leave per visit.
    for n in 0..10 {
        let visitor = format!("v{n}");
        let (token, _) = join(&store, &visitor).await;
        store.leave(who(&visitor, Some(&token))).await.unwrap();
    }
    // Past twice its cap (16 events), it was taken as gone.
    let back = store.poll(poll_req("silent", None, 0, None)).await.unwrap();
    assert!(
        back.issued_token.is_some(),
        "silent was evicted and its name freed"
    );
    assert_eq!(store.stats().await.mailboxes, 1);
}
