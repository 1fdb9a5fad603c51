//! Both stores against one reference model: random interleavings of
//! joins, sends and batches (with and without an `Idempotency-Key`, retried
//! with the same or another body, across leaves and rejoins), broadcasts,
//! leaves, expiry and polls with arbitrary cursors. The model is a plain Vec-based rendering of docs/protocol.md;
//! every reply of the store must equal the model's prediction exactly
//! (seqs, senders, payloads, room events, reset, receipts, refusals). So no
//! message is lost, none reaches the wrong peer, each sender's order holds,
//! and every mailbox stays within its cap. Each case runs on the
//! MemoryStore (2048 cases, a paused clock) and on the RedisStore against a
//! real redis-server (256 cases, its script clock moved forward) and on a
//! 3-master Redis Cluster (128 cases), so a rule
//! that differs between the Rust and the Lua implementation fails here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

mod common;

use proptest::prelude::*;
use serde_json::value::RawValue;
use signal_relay::name::Name;
use signal_relay::store::{
    Credentials, IDEMPOTENCY_WINDOW, Limits, MESSAGE_OVERHEAD, MemoryStore, PollRequest, Polled,
    RedisStore, SendRequest, Sent, Store, StoreError,
};
use signal_relay::token::Token;

const PEERS: usize = 4;
const MAILBOX: usize = 4;
const BACKLOG: usize = 2;
const ROOM_PEERS: usize = 3;
/// How long a parked poll of the model test waits when nothing wakes it
/// (instant on the memory store's paused clock, real on Redis).
const PARK: Duration = Duration::from_millis(400);
/// The silence an Expire makes: the TTL and backlog age (10 s) and a tenth
/// of a second, less than a parked poll's deadline.
const EXPIRE_AFTER: Duration = Duration::from_millis(10_100);

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

/// What a send carries besides its recipient.
#[derive(Debug, Clone)]
struct Sending {
    /// Messages in the request: 1 is a single send, more a batch.
    count: usize,
    key: KeyUse,
}

#[derive(Debug, Clone)]
enum KeyUse {
    None,
    /// A key this sender has not used.
    New,
    /// The key of this sender's `back`-th latest keyed send (a new key if
    /// it has none), with that send's body or another.
    Again {
        back: usize,
        same_body: bool,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Poll(usize, Cursor),
    Send(usize, Option<usize>, Sending),
    Leave(usize),
    /// A poll parks on an idle mailbox, then a send is made while it waits:
    /// the wake-up path, which on Redis crosses pub/sub.
    ParkThenSend(usize, usize, Option<usize>),
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
        5 => (peer.clone(), prop::option::of(0..PEERS), sending())
            .prop_map(|(p, to, sending)| Op::Send(p, to, sending)),
        1 => peer.clone().prop_map(Op::Leave),
        3 => (peer.clone(), peer.clone(), prop::option::of(0..PEERS))
            .prop_map(|(p, from, to)| Op::ParkThenSend(p, from, to)),
        1 => Just(Op::Expire),
    ]
}

fn sending() -> impl Strategy<Value = Sending> {
    let key = prop_oneof![
        2 => Just(KeyUse::None),
        2 => Just(KeyUse::New),
        3 => (0..3usize, any::<bool>()).prop_map(|(back, same_body)| KeyUse::Again { back, same_body }),
    ];
    (prop_oneof![3 => Just(1usize), 1 => 2..=3usize], key)
        .prop_map(|(count, key)| Sending { count, key })
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

/// An idempotency record: what a send with a key stored, and when.
#[derive(Debug, Clone)]
struct ModelRecord {
    sender: usize,
    key: String,
    delivered: Vec<String>,
    queued: bool,
    at: Duration,
}

impl ModelRecord {
    /// What the stores count it as, toward the byte budget.
    fn bytes(&self) -> usize {
        self.key.len() + self.delivered.len() * std::mem::size_of::<Name>() + MESSAGE_OVERHEAD
    }
}

#[derive(Debug, Default)]
struct Model {
    peers: Vec<ModelMailbox>,
    backlog: VecDeque<(usize, String)>,
    records: Vec<ModelRecord>,
    /// How far the clock has moved (only Expire moves it).
    now: Duration,
}

impl Model {
    /// The record a repeat of `key` by `sender` finds: within the window.
    fn record(&self, sender: usize, key: &str) -> Option<&ModelRecord> {
        self.records
            .iter()
            .find(|r| r.sender == sender && r.key == key && self.now - r.at < IDEMPOTENCY_WINDOW)
    }

    /// Everything goes quiet past the TTL: peers and backlog are gone, and
    /// records older than the window are swept.
    fn expire(&mut self, by: Duration) {
        self.now += by;
        self.peers.clear();
        self.backlog.clear();
        let now = self.now;
        self.records.retain(|r| now - r.at < IDEMPOTENCY_WINDOW);
    }

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
        may_claim: true,
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
    /// A mark of `peer`'s parked polls so far, for [`Subject::until_parked`].
    async fn parks(&self, peer: usize) -> u64;
    /// Returns once a poll of `peer` has parked since `parks` said `before`,
    /// so a send made then reaches a parked poll (the path under test).
    async fn until_parked(&self, peer: usize, before: u64);
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
    async fn parks(&self, _peer: usize) -> u64 {
        0
    }
    async fn until_parked(&self, _peer: usize, _before: u64) {
        // The poll runs to its park before a yielding task resumes.
        tokio::task::yield_now().await;
    }
}

/// The Redis store, and a connection to each node, to take its sweep lock
/// away: one instance sweeps per round, and here every Expire is a new round.
struct OnRedis {
    store: RedisStore,
    nodes: Vec<redis::aio::MultiplexedConnection>,
}

impl Subject for OnRedis {
    type Under = RedisStore;
    fn store(&self) -> &RedisStore {
        &self.store
    }
    async fn sweep_after(&self, by: Duration) {
        self.store.advance_clock(by);
        for node in &self.nodes {
            // In a Cluster, the nodes that do not hold the key say MOVED.
            let _ = redis::cmd("DEL")
                .arg("sr:sweeper")
                .query_async::<()>(&mut node.clone())
                .await;
        }
        self.store.sweep().await;
    }
    async fn parks(&self, peer: usize) -> u64 {
        let peer = Name::parse(&name(peer)).expect("valid");
        self.store
            .parked_generation(&who(0).room, &peer)
            .await
            .expect("Redis answers")
    }
    async fn until_parked(&self, peer: usize, before: u64) {
        // The script that parks a poll bumps the mailbox's generation.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.parks(peer).await == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the poll never parked"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The cursor a client sends for `cursor`.
fn cursor_of(client: &ClientState, cursor: &Cursor) -> (u64, Option<String>) {
    match cursor {
        Cursor::Current => (client.cursor, client.epoch.clone()),
        Cursor::Zero => (0, client.epoch.clone()),
        Cursor::Behind(k) => (client.cursor.saturating_sub(*k), client.epoch.clone()),
        Cursor::Beyond => (client.cursor + 5, client.epoch.clone()),
        Cursor::ForeignEpoch => (client.cursor, Some("not-this-one".into())),
    }
}

fn send_request(from: usize, to: Option<usize>, data: &[String], key: Option<&str>) -> SendRequest {
    SendRequest {
        sender: who(from),
        to: to.map(|t| Name::parse(&name(t)).expect("valid")),
        messages: data
            .iter()
            .map(|d| Arc::from(RawValue::from_string(d.clone()).expect("json")))
            .collect(),
        idempotency_key: key.map(Into::into),
    }
}

/// A send's body and key as a client makes them; `keys` is what each
/// sender sent with a key so far (key, body), newest last.
fn compose(
    from: usize,
    sending: &Sending,
    sent: &mut u64,
    keys: &mut [Vec<(String, Vec<String>)>],
) -> (Vec<String>, Option<String>) {
    let mut fresh_body = || -> Vec<String> {
        *sent += 1;
        (0..sending.count)
            .map(|i| format!(r#"{{"from":{from},"n":{sent},"i":{i}}}"#))
            .collect()
    };
    let used = &mut keys[from];
    match sending.key {
        KeyUse::None => (fresh_body(), None),
        KeyUse::Again { back, same_body } if back < used.len() => {
            let (key, body) = used[used.len() - 1 - back].clone();
            let body = if same_body { body } else { fresh_body() };
            (body, Some(key))
        }
        KeyUse::New | KeyUse::Again { .. } => {
            let body = fresh_body();
            let key = format!("key-{from}-{}", used.len());
            used.push((key.clone(), body.clone()));
            (body, Some(key))
        }
    }
}

/// Checks a poll's result against the model, and moves both on.
fn expect_poll(
    model: &mut Model,
    clients: &mut [ClientState],
    peer: usize,
    since: u64,
    epoch: Option<String>,
    result: Result<Polled, StoreError>,
) -> Result<(), TestCaseError> {
    let created = model.find(peer).is_none();
    if created {
        if model.peers.len() >= ROOM_PEERS {
            prop_assert!(
                matches!(result, Err(StoreError::RoomFull { .. })),
                "{result:?}"
            );
            return Ok(());
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
    prop_assert_eq!(
        actual,
        expected,
        "poll {:?} from {:?} {:?}",
        peer,
        since,
        epoch
    );
    prop_assert_eq!(
        batch.reset,
        !honoured,
        "reset of {:?} from {:?}",
        peer,
        since
    );
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
    Ok(())
}

/// Checks a send's result against the model, and moves it on.
fn expect_send(
    model: &mut Model,
    from: usize,
    to: Option<usize>,
    data: Vec<String>,
    key: Option<String>,
    result: Result<Sent, StoreError>,
) -> Result<(), TestCaseError> {
    let sender_index = model.find(from);
    // A repeat from a peer that is still here gets the first reply and
    // stores nothing; one that joins the sender is never a repeat.
    if sender_index.is_some()
        && let Some(key) = &key
        && let Some(record) = model.record(from, key)
    {
        let sent_ok = result.map_err(|e| TestCaseError::fail(format!("repeat: {e:?}")))?;
        let actual: Vec<String> = sent_ok
            .receipt
            .delivered
            .iter()
            .map(|n| n.to_string())
            .collect();
        prop_assert_eq!(&actual, &record.delivered, "a repeat's receipt");
        prop_assert_eq!(sent_ok.receipt.queued, record.queued);
        prop_assert!(sent_ok.issued_token.is_none());
        return Ok(());
    }
    let count = data.len();
    if sender_index.is_none() && model.peers.len() >= ROOM_PEERS {
        prop_assert!(
            matches!(result, Err(StoreError::RoomFull { .. })),
            "{result:?}"
        );
        return Ok(());
    }
    let recipients: Vec<usize> = match to {
        Some(t) if t == from => {
            prop_assert_eq!(result.err(), Some(StoreError::SendToSelf));
            return Ok(());
        }
        Some(t) => match model.find(t) {
            Some(i) => vec![i],
            None => {
                prop_assert!(
                    matches!(result, Err(StoreError::NoSuchPeer { .. })),
                    "{result:?}"
                );
                return Ok(());
            }
        },
        None => (0..model.peers.len())
            .filter(|&i| Some(i) != sender_index)
            .collect(),
    };
    if let Some(&full) = recipients
        .iter()
        .find(|&&i| model.peers[i].peer_messages() + count > MAILBOX)
    {
        let _ = full;
        prop_assert!(
            matches!(result, Err(StoreError::MailboxFull { .. })),
            "{result:?}"
        );
        return Ok(());
    }
    if recipients.is_empty() && model.backlog.len() + count > BACKLOG {
        prop_assert!(
            matches!(result, Err(StoreError::BacklogFull { .. })),
            "{result:?}"
        );
        return Ok(());
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
        for d in &data {
            model.peers[i].push(Some(from), d.clone());
        }
    }
    if recipients.is_empty() {
        model.backlog.extend(data.into_iter().map(|d| (from, d)));
    }
    if let Some(key) = key {
        // One record per sender and key: the new one replaces the old.
        model
            .records
            .retain(|r| !(r.sender == from && r.key == key));
        model.records.push(ModelRecord {
            sender: from,
            key,
            delivered: delivered.clone(),
            queued: recipients.is_empty(),
            at: model.now,
        });
    }
    let actual: Vec<String> = sent_ok
        .receipt
        .delivered
        .iter()
        .map(|n| n.to_string())
        .collect();
    prop_assert_eq!(actual, delivered);
    prop_assert_eq!(sent_ok.receipt.queued, recipients.is_empty());
    Ok(())
}

/// Runs `ops` on the subject's store and on the model, comparing every reply.
async fn check(subject: &impl Subject, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store = subject.store();
    {
        let mut model = Model::default();
        let mut clients = vec![ClientState::default(); PEERS];
        let mut sent = 0u64;
        let mut keys = vec![Vec::new(); PEERS];

        for op in ops {
            match op {
                Op::Poll(peer, cursor) => {
                    let (since, epoch) = cursor_of(&clients[peer], &cursor);
                    let result = store
                        .poll(PollRequest {
                            reader: who(peer),
                            since,
                            epoch: epoch.clone().map(Into::into),
                            wait: Duration::ZERO,
                        })
                        .await;
                    expect_poll(&mut model, &mut clients, peer, since, epoch, result)?;
                }
                Op::Send(from, to, sending) => {
                    let (data, key) = compose(from, &sending, &mut sent, &mut keys);
                    let result = store
                        .send(send_request(from, to, &data, key.as_deref()))
                        .await;
                    expect_send(&mut model, from, to, data, key, result)?;
                }
                Op::ParkThenSend(peer, from, to) => {
                    // Only a poll that finds nothing parks; one that would
                    // return at once is Op::Poll's case.
                    let client = clients[peer].clone();
                    let idle = model.find(peer).is_some_and(|i| {
                        let mailbox = &model.peers[i];
                        mailbox.epoch.is_some()
                            && client.epoch == mailbox.epoch
                            && client.cursor == mailbox.last_seq
                    });
                    // ...and only for a send meant for it: one that is not
                    // would leave it to time out, which costs real time on
                    // Redis and proves nothing more.
                    let for_it = from != peer && to.is_none_or(|t| t == peer);
                    if !idle || !for_it {
                        continue;
                    }
                    sent += 1;
                    let data = format!(r#"{{"from":{from},"n":{sent}}}"#);
                    let before = subject.parks(peer).await;
                    let parked = store.poll(PollRequest {
                        reader: who(peer),
                        since: client.cursor,
                        epoch: client.epoch.clone().map(Into::into),
                        wait: PARK,
                    });
                    let sending = async {
                        // The poll acknowledges and parks first: a send that
                        // landed before would meet the unacknowledged mailbox.
                        subject.until_parked(peer, before).await;
                        store
                            .send(send_request(from, to, std::slice::from_ref(&data), None))
                            .await
                    };
                    let started = tokio::time::Instant::now();
                    let (polled, sent_result) = tokio::join!(parked, sending);
                    // A send that reached the mailbox wakes the poll: it
                    // does not wait for its deadline (on the memory store's
                    // paused clock this is exact; on Redis the margin is
                    // milliseconds against 200 ms).
                    if sent_result.is_ok() {
                        prop_assert!(
                            started.elapsed() < PARK / 2,
                            "the parked poll was not woken: {:?}",
                            started.elapsed()
                        );
                    }
                    // The poll acknowledged its cursor before it parked,
                    // so before the send: the model frees those first.
                    if let Some(i) = model.find(peer) {
                        let mailbox = &mut model.peers[i];
                        mailbox.messages.retain(|m| m.0 > client.cursor);
                        mailbox.acked = client.cursor;
                    }
                    expect_send(&mut model, from, to, vec![data], None, sent_result)?;
                    expect_poll(
                        &mut model,
                        &mut clients,
                        peer,
                        client.cursor,
                        client.epoch,
                        polled,
                    )?;
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
                    // Just past the TTL (and the backlog age): a peer whose
                    // last poll ended a moment ago must be gone too, so a
                    // lease that outlived its poll would show.
                    subject.sweep_after(EXPIRE_AFTER).await;
                    model.expire(EXPIRE_AFTER);
                }
            }
            // Caps hold: the store holds what the model holds, no more.
            let stats = store.stats().await;
            prop_assert_eq!(stats.mailboxes, model.peers.len());
            // A room exists while it holds a peer or a backlog, no longer.
            let room_held =
                !model.peers.is_empty() || !model.backlog.is_empty() || !model.records.is_empty();
            prop_assert_eq!(stats.rooms, usize::from(room_held), "rooms");
            // The global byte count is exactly what the model holds.
            let held: usize = model
                .peers
                .iter()
                .flat_map(|m| m.messages.iter().map(|(_, _, d)| d.len()))
                .chain(model.backlog.iter().map(|(_, d)| d.len()))
                .map(|len| len + MESSAGE_OVERHEAD)
                .chain(model.records.iter().map(ModelRecord::bytes))
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

/// Runs every case on a Redis store at `url`, whose nodes (one, or a
/// Cluster's masters) answer on `ports`, emptied before each case: the
/// sweep lock and the counters are shared by every room.
fn run_on_redis(url: &str, ports: &[u16], cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clients: Vec<redis::Client> = ports
        .iter()
        .map(|port| redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("a URL"))
        .collect();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    let result = runner.run(&ops(), |ops| {
        rt.block_on(async {
            let mut nodes = Vec::new();
            for client in &clients {
                let mut node = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("Redis answers");
                redis::cmd("FLUSHALL")
                    .query_async::<()>(&mut node)
                    .await
                    .expect("FLUSHALL");
                nodes.push(node);
            }
            let store = RedisStore::connect(url, None, limits(), Default::default())
                .await
                .expect("the store connects");
            check(&OnRedis { store, nodes }, ops).await
        })
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn the_redis_store_behaves_like_the_model() {
    let redis = common::RedisServer::start();
    run_on_redis(&redis.url(), &[redis.port], 256);
}

/// The same on a 3-master Cluster: the room's keys in one bucket's slot,
/// sharded pub/sub for the wake-ups.
#[test]
fn the_redis_cluster_store_behaves_like_the_model() {
    let cluster = common::RedisCluster::start();
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    run_on_redis(&cluster.url(), &ports, 128);
}
