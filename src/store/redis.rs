//! The Redis store: any number of instances share one state, so any
//! instance can serve any request (docs/scaling.md).
//!
//! # How it keeps the in-memory store's rules
//! - Every operation is one Lua script (`redis.lua`) that Redis runs
//!   atomically: the script plays the part of the room's shard lock. A send
//!   stays all-or-nothing and in order, and an expiry or leave happens once
//!   however many instances sweep.
//! - Time is Redis's clock (`TIME` inside the scripts), so instances with
//!   skewed clocks agree on TTLs.
//! - Tokens are stored and compared as SHA-256 digests ([`Token::digest`]).
//!
//! # Wake-ups across instances
//! Messages live in per-mailbox lists; a script that changes a mailbox
//! publishes on that mailbox's channel, and an instance subscribes only to
//! the channels of mailboxes it has polls parked on ([`wakeups`]).
//!
//! A parked poll's waiter is armed *before* the script that may park it
//! runs, so a message published in between cannot be missed. A parked poll
//! holds a lease in Redis (`alive_until` = its deadline) instead of a
//! counter, so a peer whose instance died mid-poll still expires.
//!
//! If Redis is unreachable, every operation answers
//! [`StoreError::Unavailable`] (503); the connection manager reconnects by
//! itself, and the subscription is re-established by [`keep_subscribed`].

mod connection;
mod keyspace;
mod replies;
mod wakeups;

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redis::{RedisError, Script};

use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::{
    Credentials, IDEMPOTENCY_WINDOW, Limits, MAX_RECEIPTS_PER_ROOM, MESSAGE_OVERHEAD, PollRequest,
    Polled, SendRequest, Sent, Store, StoreError, StoreStats, new_epoch, sweep_interval, try_take,
};
use crate::metrics::Metrics;
use crate::name::Name;
use crate::token::Token;
use crate::wire::{Batch, Receipt};
use connection::{Clients, Connection, Target, Timeouts};
use keyspace::Keyspace;
use wakeups::{RESUBSCRIBE_MAX, Waiters, keep_sharded_subscribed, keep_subscribed};

pub use connection::Target as RedisTarget;

/// Held by the instance that sweeps this round; the others skip.
const SWEEP_LOCK: &str = "sr:sweeper";
/// Rooms swept per round trip batch.
const SWEEP_BATCH: usize = 256;
/// A Redis that does not answer within this is treated as down: the
/// request gets 503 rather than hanging.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long start-up waits for Redis before serving anyway (with 503s
/// until it is reachable).
const STARTUP_WAIT: Duration = Duration::from_secs(3);
/// The reply header of every batch-returning script (see `read` in redis.lua).
const BATCH_HEADER: usize = 8;

/// Why the Redis store cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    #[error("invalid --store URL: {0}")]
    Url(RedisError),
    #[error("cannot read --redis-ca-file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("Redis refused the credentials of the --store URL ({0}): check its user and password")]
    Refused(String),
    #[error(
        "TLS to Redis failed ({0}): check the certificate, or give its CA with --redis-ca-file"
    )]
    Tls(String),
}

/// A [`Store`] in Redis, shared by every instance pointed at the same one.
pub struct RedisStore {
    engine: Arc<Engine>,
    waiters: Arc<Waiters>,
    limits: Limits,
    /// Names this process in the sweep lock.
    instance: Arc<str>,
    parked_polls: AtomicUsize,
    /// The shared counts last read from Redis, for the metrics gauges.
    rooms: AtomicUsize,
    mailboxes: AtomicUsize,
    stored_bytes: AtomicUsize,
    closed: CancellationToken,
    metrics: Arc<Metrics>,
    subscriber: JoinHandle<()>,
}

/// The connection and the script: what a detached task needs to talk to Redis.
struct Engine {
    connection: Connection,
    script: Script,
    keyspace: Keyspace,
    /// Whether wake-ups go by sharded pub/sub (a Cluster).
    sharded: bool,
    /// The limits every call passes (the start of ARGV[3]).
    fixed_limits: [f64; 12],
    /// Per bucket, the rooms and bytes of all the other buckets, as last
    /// read ([`RedisStore::refresh_stats`]): the global limits' view past
    /// the script's own slot. Always 0 with one bucket.
    others: Vec<[AtomicUsize; 2]>,
    /// Added to Redis's clock in the scripts; 0 but in tests of expiry.
    clock_offset_ms: AtomicU64,
}

impl Engine {
    /// Runs one operation of redis.lua, routed to the room's bucket.
    async fn call(&self, op: &str, room: &Name, args: &[&str]) -> Result<Vec<String>, StoreError> {
        let bucket = self.keyspace.bucket(room);
        let mut invocation = self.script.prepare_invoke();
        let offset = self.clock_offset_ms.load(Ordering::Relaxed);
        let [other_rooms, other_bytes] = &self.others[usize::from(bucket)];
        let varying = [
            f64::from(u8::from(self.sharded)),
            other_rooms.load(Ordering::Relaxed) as f64,
            other_bytes.load(Ordering::Relaxed) as f64,
            offset as f64,
        ];
        // ARGV[3]: every limit as a big-endian double (struct.unpack in
        // redis.lua), far cheaper for the script than parsing text.
        let mut limits = Vec::with_capacity(8 * 16);
        for n in self.fixed_limits.iter().chain(&varying) {
            limits.extend_from_slice(&n.to_be_bytes());
        }
        invocation
            .key(Keyspace::rooms_key(bucket))
            .arg(op)
            .arg(room.as_str())
            .arg(&limits);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.connection.clone();
        invocation
            .invoke_async::<Vec<String>>(&mut connection)
            .await
            .map_err(unavailable)
    }
}

/// One connection and a PING, to tell a Redis that is not there yet (the
/// store starts and answers 503 until it is) from one that refuses us.
async fn check_credentials(clients: &Clients, deadline: Instant) -> Result<(), RedisStoreError> {
    let attempt = tokio::time::timeout_at(deadline, clients.ping()).await;
    let Ok(Err(error)) = attempt else {
        return Ok(());
    };
    use redis::ErrorKind;
    let text = error.to_string();
    // A Cluster's client wraps the node's error in an I/O one, keeping
    // only its text (the kind's name among it).
    if matches!(error.kind(), ErrorKind::AuthenticationFailed)
        || text.contains("AuthenticationFailed")
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
    {
        return Err(RedisStoreError::Refused(text));
    }
    let tls = text.contains("certificate")
        || text.contains("TLS")
        || text.contains("tls")
        || text.contains("handshake");
    if tls {
        return Err(RedisStoreError::Tls(text));
    }
    Ok(())
}

/// Every Redis failure is a 503 for the client; only failures that are
/// not about reaching Redis (a script error, say) are worth an error log.
fn unavailable(error: RedisError) -> StoreError {
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        debug!(%error, "Redis unreachable");
    } else {
        error!(%error, "Redis refused an operation");
    }
    StoreError::Unavailable
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, `rediss://` for TLS,
    /// trusting `ca_file` when given; `redis+cluster://h1:p1,h2:p2` or
    /// `rediss+cluster://` for a Cluster). Waits up to a few seconds for Redis;
    /// if it is not there yet, the store answers 503 until it is. A Redis
    /// that is there but refuses the password, or a TLS certificate that
    /// does not verify, is a start-up error: waiting would not fix it.
    pub async fn connect(
        url: &str,
        ca_file: Option<&std::path::Path>,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Result<RedisStore, RedisStoreError> {
        let ca_pem = match ca_file {
            None => None,
            Some(path) => Some(
                std::fs::read(path).map_err(|source| RedisStoreError::CaFile {
                    path: path.display().to_string(),
                    source,
                })?,
            ),
        };
        let target = Target::parse(url);
        let clients = Clients::open(&target, ca_pem.clone()).map_err(RedisStoreError::Url)?;
        // One wait for the whole start-up, however it is spent: a Redis
        // that does not answer delays the start by STARTUP_WAIT, once.
        let startup_deadline = Instant::now() + STARTUP_WAIT;
        check_credentials(&clients, startup_deadline).await?;
        let timeouts = Timeouts {
            connect: CONNECT_TIMEOUT,
            response: RESPONSE_TIMEOUT,
            max_reconnect_delay: RESUBSCRIBE_MAX,
        };
        let connection = clients.commands(&timeouts).map_err(RedisStoreError::Url)?;
        let keyspace = match target {
            Target::Single(_) => Keyspace::single(),
            Target::Cluster(_) => Keyspace::cluster(),
        };
        let fixed_limits = [
            limits.peer_ttl.as_millis(),
            limits.mailbox_messages as u128,
            limits.mailbox_bytes as u128,
            limits.backlog_messages as u128,
            limits.backlog_age.as_millis(),
            limits.room_peers as u128,
            limits.rooms as u128,
            limits.stored_bytes as u128,
            MESSAGE_OVERHEAD as u128,
            std::mem::size_of::<Name>() as u128,
            IDEMPOTENCY_WINDOW.as_millis(),
            MAX_RECEIPTS_PER_ROOM as u128,
        ]
        .map(|n| n as f64);
        let engine = Arc::new(Engine {
            connection,
            script: Script::new(include_str!("redis.lua")),
            keyspace,
            sharded: matches!(clients, Clients::Cluster { .. }),
            fixed_limits,
            others: (0..keyspace.buckets())
                .map(|_| Default::default())
                .collect(),
            clock_offset_ms: AtomicU64::new(0),
        });
        let (waiters, commands) = Waiters::new();
        let mut subscribed = waiters.subscribed.subscribe();
        let subscriber = match clients {
            Clients::Single(client) => tokio::spawn(keep_subscribed(
                client,
                waiters.clone(),
                commands,
                metrics.clone(),
            )),
            Clients::Cluster { nodes, .. } => {
                let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
                let client =
                    connection::sharded_subscriber_client(&nodes, ca_pem, &timeouts, pushes)
                        .map_err(RedisStoreError::Url)?;
                tokio::spawn(keep_sharded_subscribed(
                    client,
                    received,
                    waiters.clone(),
                    commands,
                    metrics.clone(),
                ))
            }
        };
        // Both connections (the subscription and the one for commands) are
        // opened before the first request, so it does not pay for them.
        let mut commands = engine.connection.clone();
        let ready = tokio::time::timeout_at(startup_deadline, async {
            let _ = subscribed.wait_for(|up| *up).await;
            redis::cmd("PING")
                .query_async::<String>(&mut commands)
                .await
        })
        .await;
        if !matches!(ready, Ok(Ok(_))) {
            warn!("Redis is not reachable yet: requests get 503 until it is");
        }
        Ok(RedisStore {
            engine,
            waiters,
            limits,
            instance: new_epoch(),
            parked_polls: AtomicUsize::new(0),
            rooms: AtomicUsize::new(0),
            mailboxes: AtomicUsize::new(0),
            stored_bytes: AtomicUsize::new(0),
            closed: CancellationToken::new(),
            metrics,
            subscriber,
        })
    }

    /// Moves the clock the scripts see `by` forward, for tests of expiry
    /// (the model test); a server never calls it. Redis's own key expiry
    /// and the sweep lock keep real time.
    pub fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.engine.clock_offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// How many polls of `peer` have parked so far (its mailbox's parked-poll
    /// generation), for tests that must know a poll has parked; a server
    /// never calls it.
    pub async fn parked_generation(&self, room: &Name, peer: &Name) -> Result<u64, StoreError> {
        let bucket = self.engine.keyspace.bucket(room);
        let key = format!("sr:{{{bucket}}}:{room}:p:{peer}");
        let mut connection = self.engine.connection.clone();
        let generation: Option<u64> = redis::cmd("HGET")
            .arg(key)
            .arg("gen")
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(generation.unwrap_or(0))
    }

    fn reserve_parked_slot(&self) -> Option<ParkedSlot<'_>> {
        try_take(&self.parked_polls, self.limits.parked_polls)
            .then(|| ParkedSlot(&self.parked_polls))
    }

    /// Sweeps every room, bucket by bucket, each batch of rooms at once.
    async fn sweep_rooms(&self) -> Result<(), StoreError> {
        let mut connection = self.engine.connection.clone();
        for bucket in 0..self.engine.keyspace.buckets() {
            let key = Keyspace::rooms_key(bucket);
            let mut cursor = 0u64;
            loop {
                let (next, rooms): (u64, Vec<String>) = redis::cmd("SSCAN")
                    .arg(&key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SWEEP_BATCH)
                    .query_async(&mut connection)
                    .await
                    .map_err(unavailable)?;
                let rooms: Vec<Name> = rooms.iter().filter_map(|r| Name::parse(r).ok()).collect();
                let sweeps = rooms
                    .iter()
                    .map(|room| self.engine.call("sweep", room, &[]));
                for reply in futures_util::future::join_all(sweeps).await {
                    if let Some(expired) = reply?.get(1).and_then(|n| n.parse::<usize>().ok())
                        && expired > 0
                    {
                        debug!(expired, "peers expired");
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// Reads every bucket's counters: the gauges are their sums, and each
    /// bucket's view of the others is the sum less its own.
    async fn refresh_stats(&self) -> Result<(), StoreError> {
        let reads = (0..self.engine.keyspace.buckets()).map(|bucket| {
            let mut connection = self.engine.connection.clone();
            async move {
                redis::pipe()
                    .cmd("SCARD")
                    .arg(Keyspace::rooms_key(bucket))
                    .cmd("GET")
                    .arg(Keyspace::mailboxes_key(bucket))
                    .cmd("GET")
                    .arg(Keyspace::bytes_key(bucket))
                    .query_async::<(usize, Option<i64>, Option<i64>)>(&mut connection)
                    .await
            }
        });
        let count = |n: Option<i64>| usize::try_from(n.unwrap_or(0)).unwrap_or(0);
        let mut buckets = Vec::new();
        for read in futures_util::future::join_all(reads).await {
            let (rooms, mailboxes, bytes) = read.map_err(unavailable)?;
            buckets.push([rooms, count(mailboxes), count(bytes)]);
        }
        let total = |i: usize| buckets.iter().map(|b| b[i]).sum::<usize>();
        let (rooms, mailboxes, bytes) = (total(0), total(1), total(2));
        if buckets.len() > 1 {
            for (others, own) in self.engine.others.iter().zip(&buckets) {
                others[0].store(rooms - own[0], Ordering::Relaxed);
                others[1].store(bytes - own[2], Ordering::Relaxed);
            }
        }
        self.rooms.store(rooms, Ordering::Relaxed);
        self.mailboxes.store(mailboxes, Ordering::Relaxed);
        self.stored_bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

/// The token arguments of a request that may create the peer.
struct TokenArgs {
    /// Digest of the presented token; empty when none was presented.
    presented: String,
    /// The token the peer gets if this request creates it: the presented
    /// one, or a fresh one.
    to_adopt: Token,
    /// Its digest (the presented digest again when a token was presented).
    to_adopt_digest: String,
}

impl TokenArgs {
    /// The digest to adopt as the script reads it: none when the request
    /// may not claim the name.
    fn adopt_arg(&self, may_claim: bool) -> &str {
        if may_claim { &self.to_adopt_digest } else { "" }
    }

    fn new(presented: &Option<Token>) -> TokenArgs {
        match presented {
            Some(token) => {
                let digest = token.digest();
                TokenArgs {
                    presented: digest.clone(),
                    to_adopt: token.clone(),
                    to_adopt_digest: digest,
                }
            }
            None => {
                let token = Token::generate();
                TokenArgs {
                    presented: String::new(),
                    to_adopt_digest: token.digest(),
                    to_adopt: token,
                }
            }
        }
    }
}

impl Store for RedisStore {
    async fn send(&self, request: SendRequest) -> Result<Sent, StoreError> {
        if self.closed.is_cancelled() {
            return Err(StoreError::ShuttingDown);
        }
        let SendRequest {
            sender,
            to,
            messages,
            idempotency_key,
        } = request;
        let tokens = TokenArgs::new(&sender.token);
        let epoch = new_epoch();
        let mut args: Vec<&str> = vec![
            &sender.peer,
            &tokens.presented,
            tokens.adopt_arg(sender.may_claim),
            &epoch,
            to.as_deref().unwrap_or(""),
            idempotency_key.as_deref().unwrap_or(""),
        ];
        args.extend(messages.iter().map(|data| data.get()));
        let reply = self.engine.call("send", &sender.room, &args).await?;
        replies::check(&reply, &sender, &self.limits)?;
        let flag = |i: usize| reply.get(i).is_some_and(|f| f == "1");
        let (issued, queued, fresh) = (flag(1), flag(2), flag(3));
        let delivered = reply
            .iter()
            .skip(4)
            .map(|name| Name::parse(name).map_err(|_| replies::corrupt("a recipient name")))
            .collect::<Result<Vec<Name>, StoreError>>()?;
        if fresh {
            self.metrics
                .relayed
                .inc_by((delivered.len().max(usize::from(queued)) * messages.len()) as u64);
        }
        Ok(Sent {
            receipt: Receipt { delivered, queued },
            issued_token: issued.then_some(tokens.to_adopt),
        })
    }

    async fn poll(&self, request: PollRequest) -> Result<Polled, StoreError> {
        let closing = self.closed.is_cancelled();
        let PollRequest {
            reader,
            since,
            epoch,
            wait,
        } = request;
        let deadline = Instant::now() + wait;
        let wants_to_park = !wait.is_zero() && !closing;
        let slot = if wants_to_park {
            self.reserve_parked_slot()
        } else {
            None
        };
        if slot.is_some() && !self.waiters.is_subscribed() {
            // Without the subscription nothing would wake a parked poll.
            return Err(StoreError::Unavailable);
        }
        // Armed before Redis is asked, so a wake-up published between the
        // script and the wait below is not missed.
        let waiter = match slot {
            Some(_) => Some(
                self.waiters
                    .register(self.engine.keyspace.channel(&reader.room, &reader.peer))
                    .await?,
            ),
            None => None,
        };
        let notify = waiter
            .as_ref()
            .map_or_else(Arc::default, |w| w.notify.clone());
        let mut woken = pin!(notify.notified());
        woken.as_mut().enable();

        let tokens = TokenArgs::new(&reader.token);
        let since_arg = since.to_string();
        let client_epoch = epoch.as_deref().unwrap_or("");
        let park_ms = if slot.is_some() {
            wait.as_millis().max(1).to_string()
        } else {
            "0".to_owned()
        };
        let reply = self
            .engine
            .call(
                "poll",
                &reader.room,
                &[
                    &reader.peer,
                    &tokens.presented,
                    tokens.adopt_arg(reader.may_claim),
                    &new_epoch(),
                    &since_arg,
                    client_epoch,
                    if closing { "1" } else { "0" },
                    &park_ms,
                ],
            )
            .await?;
        replies::check(&reply, &reader, &self.limits)?;
        let issued_token =
            (reply.get(6).map(String::as_str) == Some("1")).then_some(tokens.to_adopt);
        let generation = reply.get(7).cloned().unwrap_or_default();
        let first = Polled {
            batch: replies::batch(&reply, &self.metrics)?,
            issued_token,
        };
        if generation == "0" {
            if wants_to_park && slot.is_none() && first.messages.is_empty() && !first.reset {
                return Err(StoreError::TooManyParkedPolls {
                    max: self.limits.parked_polls,
                });
            }
            return Ok(first);
        }

        let mut lease = Lease {
            engine: self.engine.clone(),
            room: reader.room.clone(),
            args: [reader.peer.to_string(), first.epoch.to_string(), generation],
            settled: false,
        };
        loop {
            let ending = tokio::select! {
                () = woken.as_mut() => !self.waiters.is_subscribed(),
                () = sleep_until(deadline) => true,
                () = self.closed.cancelled() => true,
            };
            woken.set(notify.notified());
            woken.as_mut().enable();
            let [peer, mailbox_epoch, generation] = &lease.args;
            // The script that filled the mailbox read it for this poll and
            // ended the lease: no re-read.
            if let Some(handed) = waiter.as_ref().and_then(|w| w.take_handover(generation)) {
                lease.settled = true;
                return Ok(Polled {
                    batch: replies::batch(
                        &replies::handover_reply(&handed, generation)?,
                        &self.metrics,
                    )?,
                    issued_token: first.issued_token,
                });
            }
            let reply = self
                .engine
                .call(
                    "wait",
                    &reader.room,
                    &[
                        peer,
                        mailbox_epoch,
                        generation,
                        &since_arg,
                        client_epoch,
                        if ending { "1" } else { "0" },
                    ],
                )
                .await;
            lease.settled = reply.is_err();
            let reply = reply?;
            match reply.first().map(String::as_str) {
                Some("waiting") => continue,
                Some("gone") => {
                    lease.settled = true;
                    return Ok(Polled {
                        batch: Batch {
                            messages: Vec::new(),
                            next: since,
                            epoch: first.batch.epoch,
                            reset: false,
                        },
                        issued_token: first.issued_token,
                    });
                }
                _ => {
                    lease.settled = true;
                    return Ok(Polled {
                        batch: replies::batch(&reply, &self.metrics)?,
                        issued_token: first.issued_token,
                    });
                }
            }
        }
    }

    async fn leave(&self, peer: Credentials) -> Result<bool, StoreError> {
        let digest = peer.token.as_ref().map(Token::digest).unwrap_or_default();
        let reply = self
            .engine
            .call("leave", &peer.room, &[&peer.peer, &digest])
            .await?;
        replies::check(&reply, &peer, &self.limits)?;
        let left = reply.get(1).is_some_and(|l| l == "1");
        if left {
            debug!(room = %peer.room, peer = %peer.peer, "peer left");
        }
        Ok(left)
    }

    async fn sweep(&self) {
        // One instance sweeps per round: the lease expires before the next
        // round, so another instance takes over if this one dies.
        let lease = sweep_interval(self.limits.peer_ttl).mul_f64(0.9);
        let mut connection = self.engine.connection.clone();
        let acquired: Result<Option<String>, RedisError> = redis::cmd("SET")
            .arg(SWEEP_LOCK)
            .arg(&*self.instance)
            .arg("NX")
            .arg("PX")
            .arg(lease.as_millis().max(1) as u64)
            .query_async(&mut connection)
            .await;
        if matches!(acquired, Ok(Some(_))) {
            let _ = self.sweep_rooms().await;
        }
        // Every instance, sweeping or not, refreshes its view of the other
        // buckets for the global limits (a Cluster's; one bucket has none).
        if self.engine.keyspace.buckets() > 1 {
            let _ = self.refresh_stats().await;
        }
    }

    fn close(&self) {
        self.closed.cancel();
    }

    async fn stats(&self) -> StoreStats {
        // Shared counts come from Redis; if it is down, the last known ones.
        let _ = self.refresh_stats().await;
        StoreStats {
            rooms: self.rooms.load(Ordering::Relaxed),
            mailboxes: self.mailboxes.load(Ordering::Relaxed),
            parked_polls: self.parked_polls.load(Ordering::Relaxed),
            stored_bytes: self.stored_bytes.load(Ordering::Relaxed),
        }
    }
}

/// One parked-poll slot under --max-parked-polls (per instance).
struct ParkedSlot<'a>(&'a AtomicUsize);

impl Drop for ParkedSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A parked poll's lease in Redis. If the client hangs up (the future is
/// dropped), a detached task ends the lease so the peer's TTL counts from
/// now, as it does in the in-memory store.
struct Lease {
    engine: Arc<Engine>,
    room: Name,
    /// peer, mailbox epoch, generation
    args: [String; 3],
    settled: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // No runtime means the process is ending: the lease then simply
        // runs out at its deadline.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let engine = self.engine.clone();
        let room = self.room.clone();
        let args = std::mem::take(&mut self.args);
        runtime.spawn(async move {
            let [peer, epoch, generation] = &args;
            let _ = engine
                .call("release", &room, &[peer, epoch, generation])
                .await;
        });
    }
}
