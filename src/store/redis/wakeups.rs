//! Wake-ups across instances, targeted: a script that changes a mailbox
//! publishes on that mailbox's own channel ([`Keyspace::channel`]), and an
//! instance subscribes only to the channels of mailboxes it has a poll
//! parked on. So an instance hears about its own share of the traffic, not
//! the whole cluster's.
//!
//! On a single Redis that is classic pub/sub. In a Cluster it is sharded
//! pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7): a classic `PUBLISH` is
//! broadcast over the cluster bus to every node, so every node's load would
//! grow with the whole cluster's traffic; a sharded one stays on the node
//! that holds the channel's slot (the room's bucket), and the instance
//! subscribes there ([`keep_sharded_subscribed`]).
//!
//! [`Keyspace::channel`]: super::keyspace::Keyspace::channel
//!
//! Subscribing costs a round trip, so a channel is kept for [`LINGER`] after
//! its last parked poll ends: a peer that polls again (they do, at once)
//! finds it still there. The over-approximation is bounded by that: an
//! instance hears about mailboxes polled here in the last [`LINGER`].
//!
//! A notification for a mailbox with a parked poll carries that poll's
//! reply (the script that filled the mailbox read it on the poll's behalf
//! and ended its lease, see `hand_over` in redis.lua), so the woken poll
//! answers without another script. Any other notification is only a
//! doorbell: the poll re-reads Redis. So a notification lost while the
//! subscription is down costs nothing: every local poll is woken when it
//! drops and when it comes back, and re-reads; the messages a lost hand-over
//! carried are still in the mailbox, unacknowledged.
//!
//! # Locking
//! [`Waiters::by_mailbox`] is the only shared state; its entries are
//! changed under DashMap's shard lock, and every subscribe or unsubscribe
//! is decided under it and carried out, in order, by the one subscriber
//! task. So a channel dropped by [`prune`](Waiters::prune) while a new poll
//! registers is unsubscribed and then subscribed again, never the reverse.
//! A waiter's hand-over slot has its own mutex, held only to put or take.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use futures_util::StreamExt;
use redis::cluster::ClusterClient;
use redis::{Client, PushInfo, PushKind, RedisError, Value};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, sleep};
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::store::StoreError;

/// How long a mailbox's channel stays subscribed after its last poll here.
pub const LINGER: Duration = Duration::from_secs(10);
/// The longest a poll waits for its channel's subscription to be confirmed.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnecting the subscription backs off between these.
pub const RESUBSCRIBE_MIN: Duration = Duration::from_millis(50);
pub const RESUBSCRIBE_MAX: Duration = Duration::from_secs(1);

/// This instance's parked polls, by mailbox channel.
pub struct Waiters {
    by_mailbox: DashMap<Box<str>, Waiter>,
    /// Whether the subscription connection is up.
    pub subscribed: watch::Sender<bool>,
    /// What the subscriber task is to subscribe or drop, in order.
    commands: mpsc::UnboundedSender<Command>,
}

struct Waiter {
    notify: Arc<Notify>,
    polls: usize,
    /// When its last poll ended, while it has none.
    idle_since: Option<Instant>,
    /// True once the subscription to its channel is confirmed (on this
    /// connection or the one before: a new one resubscribes first).
    listening: watch::Sender<bool>,
    /// The last hand-over received: "<generation> <reply>", for the poll
    /// of that generation.
    handed: Mutex<Option<String>>,
}

enum Command {
    Subscribe(Box<str>),
    Unsubscribe(Box<str>),
}

impl Waiters {
    /// The waiters, and the receiving end [`keep_subscribed`] runs on.
    pub fn new() -> (Arc<Waiters>, Commands) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let waiters = Arc::new(Waiters {
            by_mailbox: DashMap::new(),
            subscribed: watch::Sender::new(false),
            commands,
        });
        (waiters, Commands(receiver))
    }

    /// Arms a waiter for the mailbox whose channel is `key`, subscribing
    /// to it if this instance is not yet; returns once a notification would
    /// reach it.
    pub async fn register(self: &Arc<Self>, key: Box<str>) -> Result<Registration, StoreError> {
        let (notify, mut listening) = {
            let mut waiter = self.by_mailbox.entry(key.clone()).or_insert_with(|| {
                // The task outlives the store's use of it; a send that fails
                // means the store is being dropped, and the wait below fails.
                let _ = self.commands.send(Command::Subscribe(key.clone()));
                Waiter {
                    notify: Arc::new(Notify::new()),
                    polls: 0,
                    idle_since: None,
                    listening: watch::Sender::new(false),
                    handed: Mutex::new(None),
                }
            });
            waiter.polls += 1;
            waiter.idle_since = None;
            (waiter.notify.clone(), waiter.listening.subscribe())
        };
        let registration = Registration {
            notify,
            waiters: self.clone(),
            key,
        };
        match tokio::time::timeout(SUBSCRIBE_WAIT, listening.wait_for(|up| *up)).await {
            Ok(Ok(_)) => Ok(registration),
            _ => Err(StoreError::Unavailable),
        }
    }

    /// Marks `keys` as listened to, releasing the polls waiting for that.
    fn confirm<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        for key in keys {
            if let Some(waiter) = self.by_mailbox.get(key) {
                waiter.listening.send_replace(true);
            }
        }
    }

    /// Rings the mailbox's doorbell; a non-empty `payload` is a hand-over.
    fn wake(&self, key: &str, payload: &[u8]) {
        if let Some(waiter) = self.by_mailbox.get(key) {
            if !payload.is_empty()
                && let Ok(handed) = std::str::from_utf8(payload)
            {
                *lock(&waiter.handed) = Some(handed.to_owned());
            }
            waiter.notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for waiter in self.by_mailbox.iter() {
            waiter.notify.notify_waiters();
        }
    }

    pub fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }

    /// Drops the channels no poll here has used for [`LINGER`].
    fn prune(&self, now: Instant) {
        let idle: Vec<Box<str>> = self
            .by_mailbox
            .iter()
            .filter(|w| w.idle_since.is_some_and(|t| now - t >= LINGER))
            .map(|w| w.key().clone())
            .collect();
        for key in idle {
            let removed = self.by_mailbox.remove_if(&key, |_, w| {
                w.polls == 0 && w.idle_since.is_some_and(|t| now - t >= LINGER)
            });
            if removed.is_some() {
                let _ = self.commands.send(Command::Unsubscribe(key));
            }
        }
    }
}

/// A parked poll's place in [`Waiters`]; dropping it starts the linger.
pub struct Registration {
    pub notify: Arc<Notify>,
    waiters: Arc<Waiters>,
    key: Box<str>,
}

impl Registration {
    /// The reply handed over for the poll of `generation`, if one came.
    pub fn take_handover(&self, generation: &str) -> Option<String> {
        let waiter = self.waiters.by_mailbox.get(&self.key)?;
        let mut handed = lock(&waiter.handed);
        let ours = handed
            .as_deref()?
            .strip_prefix(generation)?
            .starts_with(' ');
        if !ours {
            return None;
        }
        let payload = handed.take()?;
        Some(payload[generation.len() + 1..].to_owned())
    }
}

/// A poisoned slot only means a panic elsewhere mid-assignment; its value
/// is still a whole `Option`.
fn lock(slot: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(mut waiter) = self.waiters.by_mailbox.get_mut(&self.key) {
            waiter.polls -= 1;
            if waiter.polls == 0 {
                waiter.idle_since = Some(Instant::now());
                // Meant for a poll that is gone: its messages stay in the
                // mailbox for the next poll.
                *lock(&waiter.handed) = None;
            }
        }
    }
}

/// The subscriber task's end of [`Waiters`]' command queue.
pub struct Commands(mpsc::UnboundedReceiver<Command>);

/// Keeps this instance subscribed to the channels its waiters need on one
/// Redis (classic pub/sub), reconnecting with backoff.
pub async fn keep_subscribed(
    client: Client,
    waiters: Arc<Waiters>,
    commands: Commands,
    metrics: Arc<Metrics>,
) {
    stay_subscribed(Single(client), waiters, commands, metrics).await;
}

/// [`keep_subscribed`] for a Cluster: sharded pub/sub through the cluster
/// client, which sends each `SSUBSCRIBE` to the node holding the channel's
/// slot and delivers messages as RESP3 pushes on `pushes`.
///
/// The client reconnects a node by itself and subscribes again to what
/// that node served; every local parked poll is woken then (a message
/// published in the gap rang no bell), and when the whole client has to be
/// rebuilt. A channel the server unsubscribes us from (its slot moved to
/// another node) is subscribed again, which the client routes to the new
/// owner.
pub async fn keep_sharded_subscribed(
    client: ClusterClient,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    waiters: Arc<Waiters>,
    commands: Commands,
    metrics: Arc<Metrics>,
) {
    stay_subscribed(Sharded { client, pushes }, waiters, commands, metrics).await;
}

/// What happened on a subscription.
enum Heard {
    /// A notification.
    Message(Notification),
    /// Some notifications may have been missed (a node reconnected).
    Gap,
    /// The server dropped `channel` (its slot moved): subscribe again.
    Dropped(String),
    /// Nothing to act on.
    Other,
    /// The connection is lost: reconnect.
    Lost,
    /// The client is gone, and so is the store.
    Gone,
}

/// A notification as it arrived, read in place: a hand-over carries a
/// whole poll reply, which is not copied on its way to the waiter.
enum Notification {
    Classic(redis::Msg),
    Sharded { channel: String, payload: Vec<u8> },
}

impl Notification {
    fn channel(&self) -> &str {
        match self {
            Notification::Classic(message) => message.get_channel_name(),
            Notification::Sharded { channel, .. } => channel,
        }
    }

    fn payload(&self) -> &[u8] {
        match self {
            Notification::Classic(message) => message.get_payload_bytes(),
            Notification::Sharded { payload, .. } => payload,
        }
    }
}

/// One way to subscribe: classic pub/sub on one Redis, or sharded pub/sub
/// in a Cluster. [`stay_subscribed`] holds the one reconnect rule for both.
trait Transport {
    /// What commands go through (subscribe, unsubscribe).
    type Sink;
    /// Where notifications arrive, per connection.
    type Heard;
    /// Names what is reached, in logs.
    const REACHES: &'static str;
    async fn connect(&self) -> Result<(Self::Sink, Self::Heard), RedisError>;
    /// Subscribes a new connection to every channel in `keys`.
    async fn subscribe_all(sink: &mut Self::Sink, keys: &[Box<str>]) -> Result<(), RedisError>;
    async fn subscribe(sink: &mut Self::Sink, key: &str) -> Result<(), RedisError>;
    async fn unsubscribe(sink: &mut Self::Sink, key: &str) -> Result<(), RedisError>;
    async fn next(&mut self, heard: &mut Self::Heard) -> Heard;
}

struct Single(Client);

impl Transport for Single {
    type Sink = redis::aio::PubSubSink;
    type Heard = redis::aio::PubSubStream;
    const REACHES: &'static str = "Redis";

    async fn connect(&self) -> Result<(Self::Sink, Self::Heard), RedisError> {
        Ok(self.0.get_async_pubsub().await?.split())
    }

    /// In batches, one command each.
    async fn subscribe_all(sink: &mut Self::Sink, keys: &[Box<str>]) -> Result<(), RedisError> {
        for batch in keys.chunks(512) {
            let batch: Vec<&str> = batch.iter().map(|k| &**k).collect();
            sink.subscribe(batch).await?;
        }
        Ok(())
    }

    async fn subscribe(sink: &mut Self::Sink, key: &str) -> Result<(), RedisError> {
        sink.subscribe(key).await
    }

    async fn unsubscribe(sink: &mut Self::Sink, key: &str) -> Result<(), RedisError> {
        sink.unsubscribe(key).await
    }

    async fn next(&mut self, heard: &mut Self::Heard) -> Heard {
        match heard.next().await {
            Some(message) => Heard::Message(Notification::Classic(message)),
            None => Heard::Lost,
        }
    }
}

struct Sharded {
    client: ClusterClient,
    /// Every connection's pushes, for the client's whole life.
    pushes: mpsc::UnboundedReceiver<PushInfo>,
}

impl Transport for Sharded {
    type Sink = redis::cluster_async::ClusterConnection;
    type Heard = ();
    const REACHES: &'static str = "the Redis Cluster";

    async fn connect(&self) -> Result<(Self::Sink, ()), RedisError> {
        Ok((self.client.get_async_connection().await?, ()))
    }

    /// One SSUBSCRIBE per channel: channels of different slots cannot share
    /// one. They go out at once over the multiplexed connections.
    async fn subscribe_all(sink: &mut Self::Sink, keys: &[Box<str>]) -> Result<(), RedisError> {
        let subscribed = futures_util::future::join_all(keys.iter().map(|key| {
            let mut connection = sink.clone();
            async move { connection.ssubscribe(&**key).await }
        }))
        .await;
        subscribed.into_iter().collect()
    }

    async fn subscribe(sink: &mut Self::Sink, key: &str) -> Result<(), RedisError> {
        sink.ssubscribe(key).await
    }

    async fn unsubscribe(sink: &mut Self::Sink, key: &str) -> Result<(), RedisError> {
        sink.sunsubscribe(key).await
    }

    async fn next(&mut self, (): &mut ()) -> Heard {
        let Some(PushInfo { kind, data }) = self.pushes.recv().await else {
            return Heard::Gone;
        };
        // Taken apart, not cloned: the payload may be a whole poll reply.
        let mut data = data.into_iter();
        let channel = data.next().and_then(channel_name);
        match (kind, channel) {
            (PushKind::SMessage, Some(channel)) => Heard::Message(Notification::Sharded {
                channel,
                payload: match data.next() {
                    Some(Value::BulkString(bytes)) => bytes,
                    _ => Vec::new(),
                },
            }),
            (PushKind::Disconnection, _) => Heard::Gap,
            (PushKind::SUnsubscribe, Some(channel)) => Heard::Dropped(channel),
            _ => Heard::Other,
        }
    }
}

/// Keeps this instance subscribed to the channels its waiters need,
/// reconnecting with backoff. Whenever the subscription drops or comes
/// back, every local parked poll is woken to re-read Redis.
async fn stay_subscribed<T: Transport>(
    mut transport: T,
    waiters: Arc<Waiters>,
    mut commands: Commands,
    metrics: Arc<Metrics>,
) {
    let mut backoff = RESUBSCRIBE_MIN;
    let mut was_up = true;
    let mut prune_every = tokio::time::interval(LINGER / 2);
    loop {
        let connected = match tokio::time::timeout(CONNECT_TIMEOUT, transport.connect()).await {
            Ok(connected) => connected.map_err(|e| e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        let (mut sink, mut heard) = match connected {
            Ok(connection) => connection,
            Err(error) => {
                if was_up {
                    warn!(%error, "cannot reach {}; retrying", T::REACHES);
                }
                was_up = false;
                sleep(backoff).await;
                backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
                continue;
            }
        };
        // Every channel a waiter has, again: this connection is new.
        let keys: Vec<Box<str>> = waiters.by_mailbox.iter().map(|w| w.key().clone()).collect();
        if !keys.is_empty() && T::subscribe_all(&mut sink, &keys).await.is_err() {
            sleep(backoff).await;
            continue;
        }
        waiters.confirm(keys.iter().map(|k| &**k));
        if !was_up {
            info!("{} is reachable again", T::REACHES);
        }
        backoff = RESUBSCRIBE_MIN;
        waiters.subscribed.send_replace(true);
        waiters.wake_all();
        let lost = loop {
            tokio::select! {
                heard = transport.next(&mut heard) => match heard {
                    Heard::Message(notification) => {
                        metrics.wakeups_received.inc();
                        waiters.wake(notification.channel(), notification.payload());
                    }
                    Heard::Gap => waiters.wake_all(),
                    Heard::Dropped(channel) => {
                        if waiters.by_mailbox.contains_key(channel.as_str()) {
                            let _ = waiters.commands.send(Command::Subscribe(channel.into()));
                        }
                    }
                    Heard::Other => {}
                    Heard::Lost => break "the connection closed",
                    Heard::Gone => return,
                },
                command = commands.0.recv() => match command {
                    Some(Command::Subscribe(key)) => {
                        if T::subscribe(&mut sink, &key).await.is_err() {
                            break "a subscribe failed";
                        }
                        waiters.confirm([&*key]);
                    }
                    Some(Command::Unsubscribe(key)) => {
                        if T::unsubscribe(&mut sink, &key).await.is_err() {
                            break "an unsubscribe failed";
                        }
                    }
                    // The store is gone.
                    None => return,
                },
                _ = prune_every.tick() => waiters.prune(Instant::now()),
            }
        };
        waiters.subscribed.send_replace(false);
        waiters.wake_all();
        warn!(
            reason = lost,
            "lost the subscription to {}: parked polls end, requests get 503 until it is back",
            T::REACHES
        );
        was_up = false;
        sleep(backoff).await;
    }
}

/// The channel a sharded pub/sub push is about (its first element).
fn channel_name(first: Value) -> Option<String> {
    match first {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}
