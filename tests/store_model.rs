//! Both stores against one reference model: random interleavings of
//! joins, sends, broadcasts, leaves, expiry and polls with arbitrary
//! cursors. The model is a plain Vec-based rendering of docs/protocol.md;
//! every reply of the store must equal the model's prediction exactly
//! (seqs, senders, payloads, room events, reset, receipts, refusals). So no
//! message is lost, none reaches the wrong peer, each sender's order holds,
//! and every mailbox stays within its cap. Each case runs on the
//! MemoryStore (2048 cases, a paused clock) and on the RedisStore against a
//! real redis-server (256 cases, its script clock moved forward), so a rule
//! that differs between the Rust and the Lua implementation fails here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

mod common;

use proptest::prelude::*;
use serde_json::value::RawValue;
use signal_relay::name::Name;
use signal_relay::store::{
    Credentials, Limits, MESSAGE_OVERHEAD, MemoryStore, PollRequest, RedisStore, SendRequest,
    Store, StoreError,
};
use signal_relay::token::Token;

const PEERS: usize = 4;
const MAILBOX: usize = 4;
const BACKLOG: usize = 2;
const ROOM_PEERS: usize = 3;

#[derive(Debug, Clone)]
enum Cursor {
    /// The `next` of the peer's last poll, with its epoch.
    Current,
    /// 0 with the current epoch (a client that lost its state).
    Zero,
    /// Some steps behind the current cursor.
    Behind(u64),
    /// Beyond the last message.
    Beyond,
    /// The right number, with an epoch from another incarnation.
    ForeignEpoch,
}

#[derive(Debug, Clone)]
enum Op {
    Poll(usize, Cursor),
    Send(usize, Option<usize>),
    Leave(usize),
    /// Everyone goes quiet for longer than the TTL and the backlog age.
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 0..PEERS;
    let cursor = prop_oneof![
        4 => Just(Cursor::Current),
        1 => Just(Cursor::Zero),
        1 => (1u64..4).prop_map(Cursor::Behind),
        1 => Just(Cursor::Beyond),
        1 => Just(Cursor::ForeignEpoch),
    ];
    prop_oneof![
        5 => (peer.clone(), cursor).prop_map(|(p, c)| Op::Poll(p, c)),
        5 => (peer.clone(), prop::option::of(0..PEERS)).prop_map(|(p, to)| Op::Send(p, to)),
        1 => peer.prop_map(Op::Leave),
        1 => Just(Op::Expire),
    ]
}

fn name(i: usize) -> String {
    format!("p{i}")
}

/// What a client remembers of its mailbox between polls.
#[derive(Debug, Clone, Default)]
struct ClientState {
    cursor: u64,
    epoch: Option<String>,
}

/// The model's mailbox: (seq, from, data text).
#[derive(Debug, Clone, Default)]
struct ModelMailbox {
    peer: usize,
    messages: VecDeque<(u64, Option<usize>, String)>,
    last_seq: u64,
    acked: u64,
    /// This incarnation's epoch, once a poll has shown it.
    epoch: Option<String>,
}

impl ModelMailbox {
    fn push(&mut self, from: Option<usize>, data: String) {
        self.last_seq += 1;
        self.messages.push_back((self.last_seq, from, data));
    }

    /// Messages that came from peers (room events are not capped).
    fn peer_messages(&self) -> usize {
        self.messages.len()
    }
}

#[derive(Debug, Default)]
struct Model {
    peers: Vec<ModelMailbox>,
    backlog: VecDeque<(usize, String)>,
}

impl Model {
    fn find(&self, peer: usize) -> Option<usize> {
        self.peers.iter().position(|m| m.peer == peer)
    }

    fn join(&mut self, peer: usize) {
        let present: Vec<String> = self
            .peers
            .iter()
            .map(|m| format!("\"{}\"", name(m.peer)))
            .collect();
        let mut mailbox = ModelMailbox {
            peer,
            ..Default::default()
        };
        mailbox.push(
            None,
            format!(r#"{{"type":"peers","peers":[{}]}}"#, present.join(",")),
        );
        for (from, data) in self.backlog.drain(..) {
            mailbox.push(Some(from), data);
        }
        for other in &mut self.peers {
            other.push(
                None,
                format!(r#"{{"type":"join","peer":"{}"}}"#, name(peer)),
            );
        }
        self.peers.push(mailbox);
    }

    fn remove(&mut self, index: usize) {
        let gone = self.peers.remove(index);
        for other in &mut self.peers {
            other.push(
                None,
                format!(
                    r#"{{"type":"leave","peer":"{}","reason":"left"}}"#,
                    name(gone.peer)
                ),
            );
        }
    }
}

fn token(peer: usize) -> Token {
    Token::parse(&format!("peer-token-0000000{peer}")).expect("valid")
}

fn who(peer: usize) -> Credentials {
    Credentials {
        room: Name::parse("room").expect("valid"),
        peer: Name::parse(&name(peer)).expect("valid"),
        token: Some(token(peer)),
    }
}

fn limits() -> Limits {
    Limits {
        peer_ttl: Duration::from_secs(10),
        mailbox_messages: MAILBOX,
        mailbox_bytes: 1 << 20,
        backlog_messages: BACKLOG,
        backlog_age: Duration::from_secs(10),
        room_peers: ROOM_PEERS,
        rooms: 10,
        parked_polls: 10,
        stored_bytes: 1 << 20,
    }
}

/// A store under test, and how a sweep after `by` of silence is made.
trait Subject {
    type Under: Store;
    fn store(&self) -> &Self::Under;
    async fn sweep_after(&self, by: Duration);
}

impl Subject for MemoryStore {
    type Under = MemoryStore;
    fn store(&self) -> &MemoryStore {
        self
    }
    async fn sweep_after(&self, by: Duration) {
        tokio::time::advance(by).await;
        self.sweep().await;
    }
}

/// The Redis store, and a connection to take its sweep lock away: one
/// instance sweeps per round, and here every Expire is a new round.
struct OnRedis {
    store: RedisStore,
    connection: redis::aio::MultiplexedConnection,
}

impl Subject for OnRedis {
    type Under = RedisStore;
    fn store(&self) -> &RedisStore {
        &self.store
    }
    async fn sweep_after(&self, by: Duration) {
        self.store.advance_clock(by);
        let mut connection = self.connection.clone();
        redis::cmd("DEL")
            .arg("sr:sweeper")
            .query_async::<()>(&mut connection)
            .await
            .expect("DEL");
        self.store.sweep().await;
    }
}

/// Runs `ops` on the subject's store and on the model, comparing every reply.
async fn check(subject: &impl Subject, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store = subject.store();
    {
        let mut model = Model::default();
        let mut clients = vec![ClientState::default(); PEERS];
        let mut sent = 0u64;

        for op in ops {
            match op {
                Op::Poll(peer, cursor) => {
                    let client = &clients[peer];
                    let (since, epoch) = match &cursor {
                        Cursor::Current => (client.cursor, client.epoch.clone()),
                        Cursor::Zero => (0, client.epoch.clone()),
                        Cursor::Behind(k) => {
                            (client.cursor.saturating_sub(*k), client.epoch.clone())
                        }
                        Cursor::Beyond => (client.cursor + 5, client.epoch.clone()),
                        Cursor::ForeignEpoch => (client.cursor, Some("not-this-one".into())),
                    };
                    let result = store
                        .poll(PollRequest {
                            reader: who(peer),
                            since,
                            epoch: epoch.clone().map(Into::into),
                            wait: Duration::ZERO,
                        })
                        .await;

                    // The model's prediction.
                    let created = model.find(peer).is_none();
                    if created {
                        if model.peers.len() >= ROOM_PEERS {
                            prop_assert!(
                                matches!(result, Err(StoreError::RoomFull { .. })),
                                "{result:?}"
                            );
                            continue;
                        }
                        model.join(peer);
                    }
                    let batch = result.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                    let index = model.find(peer).expect("joined");
                    let mailbox = &mut model.peers[index];
                    let same_incarnation = match epoch.as_deref() {
                        None => true,
                        Some(e) => mailbox.epoch.as_deref() == Some(e),
                    };
                    let honoured = !(created && since > 0)
                        && same_incarnation
                        && (mailbox.acked..=mailbox.last_seq).contains(&since);
                    if honoured {
                        while mailbox.messages.front().is_some_and(|m| m.0 <= since) {
                            mailbox.messages.pop_front();
                        }
                        mailbox.acked = since;
                    }
                    let expected: Vec<(u64, Option<String>, String)> = mailbox
                        .messages
                        .iter()
                        .map(|(seq, from, data)| (*seq, from.map(name), data.clone()))
                        .collect();
                    let actual: Vec<(u64, Option<String>, String)> = batch
                        .messages
                        .iter()
                        .map(|m| {
                            (
                                m.seq,
                                m.from.as_ref().map(|f| f.to_string()),
                                m.data.get().to_owned(),
                            )
                        })
                        .collect();
                    prop_assert_eq!(actual, expected, "poll {:?} {:?}", peer, cursor);
                    prop_assert_eq!(batch.reset, !honoured, "reset of {:?} {:?}", peer, cursor);
                    prop_assert_eq!(batch.next, mailbox.last_seq);
                    prop_assert_eq!(batch.issued_token.is_some(), created);
                    let shown = batch.epoch.to_string();
                    if let Some(known) = &mailbox.epoch {
                        prop_assert_eq!(known, &shown, "an incarnation keeps its epoch");
                    }
                    mailbox.epoch = Some(shown);
                    clients[peer] = ClientState {
                        cursor: batch.next,
                        epoch: Some(batch.epoch.to_string()),
                    };
                }
                Op::Send(from, to) => {
                    sent += 1;
                    let data = format!(r#"{{"from":{from},"n":{sent}}}"#);
                    let result = store
                        .send(SendRequest {
                            sender: who(from),
                            to: to.map(|t| Name::parse(&name(t)).expect("valid")),
                            data: Arc::from(RawValue::from_string(data.clone()).expect("json")),
                            idempotency_key: None,
                        })
                        .await;

                    let sender_index = model.find(from);
                    if sender_index.is_none() && model.peers.len() >= ROOM_PEERS {
                        prop_assert!(
                            matches!(result, Err(StoreError::RoomFull { .. })),
                            "{result:?}"
                        );
                        continue;
                    }
                    let recipients: Vec<usize> = match to {
                        Some(t) if t == from => {
                            prop_assert_eq!(result.err(), Some(StoreError::SendToSelf));
                            continue;
                        }
                        Some(t) => match model.find(t) {
                            Some(i) => vec![i],
                            None => {
                                prop_assert!(
                                    matches!(result, Err(StoreError::NoSuchPeer { .. })),
                                    "{result:?}"
                                );
                                continue;
                            }
                        },
                        None => (0..model.peers.len())
                            .filter(|&i| Some(i) != sender_index)
                            .collect(),
                    };
                    if let Some(&full) = recipients
                        .iter()
                        .find(|&&i| model.peers[i].peer_messages() >= MAILBOX)
                    {
                        let _ = full;
                        prop_assert!(
                            matches!(result, Err(StoreError::MailboxFull { .. })),
                            "{result:?}"
                        );
                        continue;
                    }
                    if recipients.is_empty() && model.backlog.len() >= BACKLOG {
                        prop_assert!(
                            matches!(result, Err(StoreError::BacklogFull { .. })),
                            "{result:?}"
                        );
                        continue;
                    }
                    let sent_ok = result.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                    let delivered: Vec<String> = recipients
                        .iter()
                        .map(|&i| name(model.peers[i].peer))
                        .collect();
                    if sender_index.is_none() {
                        model.join(from);
                        prop_assert!(sent_ok.issued_token.is_some());
                    }
                    for &i in &recipients {
                        model.peers[i].push(Some(from), data.clone());
                    }
                    if recipients.is_empty() {
                        model.backlog.push_back((from, data));
                    }
                    let actual: Vec<String> = sent_ok
                        .receipt
                        .delivered
                        .iter()
                        .map(|n| n.to_string())
                        .collect();
                    prop_assert_eq!(actual, delivered);
                    prop_assert_eq!(sent_ok.receipt.queued, recipients.is_empty());
                }
                Op::Leave(peer) => {
                    let left = store
                        .leave(who(peer))
                        .await
                        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                    let index = model.find(peer);
                    prop_assert_eq!(left, index.is_some());
                    if let Some(index) = index {
                        model.remove(index);
                    }
                }
                Op::Expire => {
                    subject.sweep_after(Duration::from_secs(11)).await;
                    model = Model::default();
                }
            }
            // Caps hold: the store holds what the model holds, no more.
            let stats = store.stats().await;
            prop_assert_eq!(stats.mailboxes, model.peers.len());
            // A room exists while it holds a peer or a backlog, no longer.
            let room_held = !model.peers.is_empty() || !model.backlog.is_empty();
            prop_assert_eq!(stats.rooms, usize::from(room_held), "rooms");
            // The global byte count is exactly what the model holds.
            let held: usize = model
                .peers
                .iter()
                .flat_map(|m| m.messages.iter().map(|(_, _, d)| d.len()))
                .chain(model.backlog.iter().map(|(_, d)| d.len()))
                .map(|len| len + MESSAGE_OVERHEAD)
                .sum();
            prop_assert_eq!(stats.stored_bytes, held);
        }
        Ok(())
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn the_memory_store_behaves_like_the_model(ops in ops()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(check(&MemoryStore::new(limits()), ops))?;
    }
}

/// One redis-server for all cases, emptied before each: its sweep lock and
/// counters are global.
#[test]
fn the_redis_store_behaves_like_the_model() {
    let redis = common::RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = redis.url();
    let client = redis::Client::open(url.as_str()).expect("a Redis URL");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    });
    let result = runner.run(&ops(), |ops| {
        rt.block_on(async {
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis answers");
            redis::cmd("FLUSHALL")
                .query_async::<()>(&mut connection)
                .await
                .expect("FLUSHALL");
            let store = RedisStore::connect(&url, None, limits(), Default::default())
                .await
                .expect("the store connects");
            check(&OnRedis { store, connection }, ops).await
        })
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
