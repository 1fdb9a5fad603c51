//! Rooms, mailboxes and the rules of delivery: the part of the protocol that
//! is independent of HTTP.
//!
//! [`Store`] is the narrow interface the HTTP layer talks to. It speaks in
//! validated names, tokens and JSON payloads; it never sees a request, a
//! header or a status code. The in-memory implementation is
//! [`MemoryStore`]; another (for example one shared by many instances through
//! Redis) can slot in behind the same trait.
//!
//! The delivery rules every implementation keeps:
//! - each peer has a mailbox of messages numbered 1, 2, 3, ... (`seq`);
//! - a poll with cursor `since = N` acknowledges and frees every message with
//!   `seq <= N` and returns all messages after it, so a lost response is
//!   delivered again (at-least-once) because the client's cursor did not move;
//! - a cursor the mailbox cannot honour (another epoch, beyond the last seq,
//!   or pointing at messages already freed) returns everything retained with
//!   `reset = true`, never an error and never a silent gap;
//! - a send is all-or-nothing: if any recipient's mailbox is full, nobody
//!   gets the message;
//! - messages from one sender reach each recipient in the order sent;
//! - a request whose credentials may not claim ([`Credentials::may_claim`])
//!   creates nothing: no room, no mailbox, no join event.

mod memory;
mod redis;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use memory::{MESSAGE_OVERHEAD, MemoryStore};
pub use redis::{RedisStore, RedisStoreError, RedisTarget};

use crate::name::Name;
use crate::token::{Token, random_id};
use crate::wire::{Batch, Payload, Receipt};

/// How long an `Idempotency-Key` remembers the reply it produced.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(60);

/// How often expiry runs for a given peer TTL: often enough that a peer
/// leaves within about a quarter TTL of expiring, rarely enough that
/// sweeping costs nothing.
pub fn sweep_interval(peer_ttl: Duration) -> Duration {
    (peer_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// Idempotency records kept per room; past it the oldest is forgotten early.
pub(crate) const MAX_RECEIPTS_PER_ROOM: usize = 256;

/// Who a request claims to be.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub room: Name,
    pub peer: Name,
    /// The token presented with the request. When the request creates the
    /// peer's mailbox this is the token the client offers for itself.
    pub token: Option<Token>,
    /// Whether this request may claim the name when nobody holds it (create
    /// the peer's mailbox). False when the server requires a ticket and the
    /// request has none for this room and name: it may then only speak for
    /// a peer that already exists, with its token.
    pub may_claim: bool,
}

/// A message to deliver.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub sender: Credentials,
    /// `Some(peer)` for a direct message, `None` for everyone else in the room.
    pub to: Option<Name>,
    /// One message, or a batch (at most [`crate::wire::MAX_BATCH`]): each
    /// is stored as its own message, in this order, and the batch is
    /// all-or-nothing like a single send.
    pub messages: Vec<Payload>,
    /// A retry with the same key within [`IDEMPOTENCY_WINDOW`] is stored once
    /// and gets the first receipt again.
    pub idempotency_key: Option<Box<str>>,
}

/// The result of a successful send.
#[derive(Debug, Clone)]
pub struct Sent {
    pub receipt: Receipt,
    /// The sender's token when this request created the sender's mailbox.
    pub issued_token: Option<Token>,
}

/// A long-poll for a peer's mailbox.
#[derive(Debug, Clone)]
pub struct PollRequest {
    pub reader: Credentials,
    /// The client's cursor: everything up to it has been received.
    pub since: u64,
    /// The mailbox incarnation the cursor belongs to, when the client knows it.
    pub epoch: Option<Box<str>>,
    /// How long to park when nothing is waiting. Zero answers at once.
    pub wait: Duration,
}

/// The answer to a poll: the batch as the reader gets it.
#[derive(Debug, Clone)]
pub struct Polled {
    pub batch: Batch,
    /// The reader's token when this request created the reader's mailbox.
    pub issued_token: Option<Token>,
}

/// A poll's result reads as its batch; the token is the one extra.
impl std::ops::Deref for Polled {
    type Target = Batch;
    fn deref(&self) -> &Batch {
        &self.batch
    }
}

/// Why the store refused a request. The HTTP layer maps each to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("peer {peer} in room {room} belongs to someone else: present its token")]
    TokenMissing { room: Name, peer: Name },
    #[error("the token presented for peer {peer} in room {room} is wrong")]
    TokenMismatch { room: Name, peer: Name },
    #[error("peer {peer} is not in room {room}, and only a ticket holder may join it")]
    ClaimRefused { room: Name, peer: Name },
    #[error("peer {peer} is not in room {room}")]
    NoSuchPeer { room: Name, peer: Name },
    #[error("a peer cannot address a message to itself")]
    SendToSelf,
    #[error("the mailbox of {peer} is full")]
    MailboxFull { peer: Name },
    #[error("the backlog of room {room} is full")]
    BacklogFull { room: Name },
    #[error("room {room} already has {max} peers")]
    RoomFull { room: Name, max: usize },
    #[error("the server already holds {max} rooms")]
    TooManyRooms { max: usize },
    #[error("the server already holds {max} parked polls")]
    TooManyParkedPolls { max: usize },
    #[error("the server already holds its maximum of {max} bytes of undelivered messages")]
    StoreFull { max: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the shared store (Redis) is unreachable")]
    Unavailable,
}

/// The bounds a store keeps. Every one is a command-line flag.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A peer not seen for this long leaves its room.
    pub peer_ttl: Duration,
    pub mailbox_messages: usize,
    pub mailbox_bytes: usize,
    pub backlog_messages: usize,
    pub backlog_age: Duration,
    pub room_peers: usize,
    pub rooms: usize,
    pub parked_polls: usize,
    /// All stored messages together, in bytes (payload + overhead).
    pub stored_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            peer_ttl: Duration::from_secs(60),
            mailbox_messages: 256,
            mailbox_bytes: 1 << 20,
            backlog_messages: 32,
            backlog_age: Duration::from_secs(60),
            room_peers: 16,
            rooms: 20_000,
            parked_polls: 20_000,
            stored_bytes: 256 << 20,
        }
    }
}

/// The room/mailbox store behind the `/signal` endpoints.
pub trait Store: Send + Sync + 'static {
    /// Delivers a message: to `to`, or to every other peer in the room, or to
    /// the room backlog when nobody else is there. Creates the sender's
    /// mailbox (the sender joins) when it does not exist yet.
    fn send(&self, request: SendRequest) -> impl Future<Output = Result<Sent, StoreError>> + Send;

    /// Returns the reader's messages after `since`, parking up to
    /// `request.wait` for one to arrive. Creates the reader's mailbox (the
    /// reader joins) when it does not exist yet. A newer poll on the same
    /// mailbox, or [`Store::close`], ends a parked poll with an empty batch.
    fn poll(&self, request: PollRequest)
    -> impl Future<Output = Result<Polled, StoreError>> + Send;

    /// Removes the peer from its room at once (the others see `leave`).
    /// Returns false when the peer was not there.
    fn leave(&self, peer: Credentials) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Expires peers not seen for the TTL, old backlog and idempotency
    /// records, and empty rooms. Called periodically by the server.
    fn sweep(&self) -> impl Future<Output = ()> + Send;

    /// Starts shutdown: parked polls end with an empty batch, sends and
    /// joins are refused with [`StoreError::ShuttingDown`], and a poll
    /// still collects messages already waiting (refused once none are).
    fn close(&self);

    /// How much the store holds now, for the metrics gauges (read when
    /// scraped).
    fn stats(&self) -> impl Future<Output = StoreStats> + Send;
}

/// Counts for the metrics gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub rooms: usize,
    pub mailboxes: usize,
    pub parked_polls: usize,
    /// Undelivered messages and idempotency records, in bytes, as
    /// `--max-stored-bytes` counts them.
    pub stored_bytes: usize,
}

/// Takes one unit of `count` if that keeps it within `max`; false if not.
/// Lock-free: concurrent callers may overshoot `max` for an instant, but
/// each one that does gives its unit back, so no caller is admitted past it.
pub(crate) fn try_take(count: &AtomicUsize, max: usize) -> bool {
    if count.fetch_add(1, Ordering::Relaxed) >= max {
        count.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// 48 random bits: enough that a restarted server or a rejoined peer never
/// reuses a live epoch.
pub(crate) fn new_epoch() -> Arc<str> {
    random_id().into()
}
