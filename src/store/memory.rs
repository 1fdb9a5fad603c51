//! The in-memory store: one process, rooms in a [`DashMap`].
//!
//! # Locking rules
//! - All state of a room (its mailboxes, backlog and idempotency records)
//!   lives in one map entry, so every operation takes exactly one shard lock,
//!   for one room, briefly. Rooms are small (bounded by `room_peers`), so a
//!   broadcast under that lock is cheap, and it is what makes a send
//!   all-or-nothing and keeps each sender's messages in order.
//! - No lock is held across an `.await`, and no code path takes a second map
//!   lock while holding one (DashMap shard locks are not re-entrant).
//! - A parked poll holds no lock: it holds a clone of its mailbox's
//!   [`Notify`] and a timer. Its waiter is armed *before* the room lock is
//!   released, so a message pushed in between cannot be missed.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{
    Credentials, IDEMPOTENCY_WINDOW, Limits, MAX_RECEIPTS_PER_ROOM, PollRequest, Polled,
    SendRequest, Sent, Store, StoreError, new_epoch, try_take,
};
use crate::metrics::Metrics;
use crate::name::Name;
use crate::store::StoreStats;
use crate::token::Token;
use crate::wire::{Batch, LeaveReason, Message, Payload, Receipt, RoomEvent};

/// Rooms yield to the scheduler after this many rooms in one sweep, so a
/// large sweep shares its worker thread with request handling.
const SWEEP_BATCH: usize = 256;
/// What one stored message costs beyond its payload (envelope, queue slot,
/// reference count), counted in every byte budget.
pub const MESSAGE_OVERHEAD: usize = 64;

/// The default [`Store`]: everything in this process's memory.
pub struct MemoryStore {
    rooms: DashMap<Name, Room>,
    /// Kept beside the map because `DashMap::len` locks every shard, which
    /// must not happen while one is held.
    room_count: AtomicUsize,
    /// Bytes of all stored messages (see [`MESSAGE_OVERHEAD`]).
    stored_bytes: AtomicUsize,
    mailbox_count: AtomicUsize,
    parked_polls: AtomicUsize,
    limits: Limits,
    closed: CancellationToken,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Room {
    /// In join order, which is the order the `peers` event lists them in.
    peers: Vec<Mailbox>,
    /// Broadcasts sent while nobody else was here, for the next joiner.
    backlog: VecDeque<Queued>,
    /// Receipts of recent sends that carried an idempotency key, oldest first.
    receipts: VecDeque<IdempotencyRecord>,
}

struct Queued {
    from: Name,
    data: Payload,
    at: Instant,
}

struct IdempotencyRecord {
    sender: Name,
    key: Box<str>,
    receipt: Receipt,
    at: Instant,
}

impl IdempotencyRecord {
    /// What the record costs, for the global byte budget.
    fn bytes(&self) -> usize {
        self.key.len()
            + self.receipt.delivered.len() * std::mem::size_of::<Name>()
            + MESSAGE_OVERHEAD
    }
}

/// A message in a mailbox, with when it arrived (for the latency metric).
struct Stored {
    message: Message,
    stored_at: std::time::Instant,
}

struct Mailbox {
    peer: Name,
    token: Token,
    /// Names this incarnation of the mailbox; a cursor from another one
    /// cannot be honoured.
    epoch: Arc<str>,
    /// Unacknowledged messages, `seq` ascending and contiguous.
    messages: VecDeque<Stored>,
    bytes: usize,
    last_seq: u64,
    /// Every message with `seq <= acked` has been acknowledged and freed.
    acked: u64,
    /// Highest `seq` returned by a poll so far: later returns are
    /// re-deliveries, not counted again in the latency metric.
    returned: u64,
    last_seen: Instant,
    /// Polls currently parked here; a peer with one is alive and never expires.
    parked: u32,
    /// Bumped by every poll that parks; a parked poll whose generation is
    /// no longer current has been superseded and ends empty.
    poll_generation: u64,
    wake: Arc<Notify>,
}

impl MemoryStore {
    pub fn new(limits: Limits) -> MemoryStore {
        MemoryStore::with_metrics(limits, Arc::default())
    }

    /// A store that records into `metrics` (the server's, served at /metrics).
    pub fn with_metrics(limits: Limits, metrics: Arc<Metrics>) -> MemoryStore {
        MemoryStore {
            rooms: DashMap::new(),
            room_count: AtomicUsize::new(0),
            stored_bytes: AtomicUsize::new(0),
            mailbox_count: AtomicUsize::new(0),
            parked_polls: AtomicUsize::new(0),
            limits,
            closed: CancellationToken::new(),
            metrics,
        }
    }

    fn ensure_open(&self) -> Result<(), StoreError> {
        if self.closed.is_cancelled() {
            Err(StoreError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// The room's entry, created if missing, within the room cap.
    fn room_mut(&self, name: &Name) -> Result<RefMut<'_, Name, Room>, StoreError> {
        if let Some(room) = self.rooms.get_mut(name) {
            return Ok(room);
        }
        match self.rooms.entry(name.clone()) {
            Entry::Occupied(room) => Ok(room.into_ref()),
            Entry::Vacant(slot) => {
                let max = self.limits.rooms;
                if !try_take(&self.room_count, max) {
                    return Err(StoreError::TooManyRooms { max });
                }
                Ok(slot.insert(Room::default()))
            }
        }
    }

    fn reserve_parked_slot(&self) -> Result<(), StoreError> {
        let max = self.limits.parked_polls;
        if !try_take(&self.parked_polls, max) {
            return Err(StoreError::TooManyParkedPolls { max });
        }
        Ok(())
    }

    /// Bytes of messages held, across all rooms (what --max-stored-bytes caps).
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes.load(Ordering::Relaxed)
    }

    /// Every operation measures its room's bytes before and after: one
    /// place keeps the global count, whatever the operation did.
    fn account(&self, before: usize, after: usize) {
        if after >= before {
            self.stored_bytes
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.stored_bytes
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    fn discard_if_empty(&self, name: &Name) {
        if self
            .rooms
            .remove_if(name, |_, room| room.is_empty())
            .is_some()
        {
            self.room_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn send_in(&self, room: &mut Room, request: SendRequest) -> Result<Sent, StoreError> {
        let SendRequest {
            sender,
            to,
            messages,
            idempotency_key,
        } = request;
        let now = Instant::now();
        let limits = &self.limits;

        let sender_index = room.authenticate(&sender)?;
        if let Some(i) = sender_index {
            room.peers[i].last_seen = now;
            if let Some(key) = &idempotency_key
                && let Some(receipt) = room.recorded_receipt(&sender.peer, key, now)
            {
                return Ok(Sent {
                    receipt,
                    issued_token: None,
                });
            }
        } else if !sender.may_claim {
            return Err(claim_refused(&sender));
        } else {
            room.check_can_join(&sender.room, limits)?;
        }

        // Decide everything that can fail before changing anything, so a
        // refused send leaves no trace (not even the sender's join).
        let recipients: Vec<usize> = match &to {
            Some(to) if *to == sender.peer => return Err(StoreError::SendToSelf),
            Some(to) => vec![room.find(to).ok_or_else(|| StoreError::NoSuchPeer {
                room: sender.room.clone(),
                peer: to.clone(),
            })?],
            None => (0..room.peers.len())
                .filter(|&i| Some(i) != sender_index)
                .collect(),
        };
        let count = messages.len();
        let size: usize = messages.iter().map(|data| data.get().len()).sum();
        if let Some(&full) = recipients
            .iter()
            .find(|&&i| !room.peers[i].has_room_for(count, size, limits))
        {
            return Err(StoreError::MailboxFull {
                peer: room.peers[full].peer.clone(),
            });
        }
        let queued = recipients.is_empty();
        if queued {
            room.expire_backlog(now, limits);
            if room.backlog.len() + count > limits.backlog_messages {
                return Err(StoreError::BacklogFull {
                    room: sender.room.clone(),
                });
            }
        }
        let cost = recipients.len().max(1) * (size + count * MESSAGE_OVERHEAD);
        if self.stored_bytes() + cost > limits.stored_bytes {
            return Err(StoreError::StoreFull {
                max: limits.stored_bytes,
            });
        }

        // Joining appends, so the recipient indices above stay valid.
        let issued_token = match sender_index {
            Some(_) => None,
            None => Some(self.join(room, &sender, now)),
        };
        let delivered = recipients
            .iter()
            .map(|&i| {
                let mailbox = &mut room.peers[i];
                for data in &messages {
                    mailbox.push(Some(sender.peer.clone()), data.clone());
                }
                mailbox.peer.clone()
            })
            .collect();
        if queued {
            room.backlog.extend(messages.into_iter().map(|data| Queued {
                from: sender.peer.clone(),
                data,
                at: now,
            }));
        }
        self.metrics
            .relayed
            .inc_by((recipients.len().max(usize::from(queued)) * count) as u64);
        let receipt = Receipt { delivered, queued };
        if let Some(key) = idempotency_key {
            room.record_receipt(sender.peer, key, receipt.clone(), now);
        }
        Ok(Sent {
            receipt,
            issued_token,
        })
    }

    /// Adds the peer to the room (see [`Room::join`]), counting its mailbox;
    /// peers drowned in the join event are evicted.
    fn join(&self, room: &mut Room, who: &Credentials, now: Instant) -> Token {
        self.mailbox_count.fetch_add(1, Ordering::Relaxed);
        let token = room.join(who, now, &self.limits);
        let evicted = room.evict_overflowing(&who.room, &self.limits);
        self.mailbox_count.fetch_sub(evicted, Ordering::Relaxed);
        token
    }
}

impl Store for MemoryStore {
    async fn send(&self, request: SendRequest) -> Result<Sent, StoreError> {
        self.ensure_open()?;
        let room_name = request.sender.room.clone();
        let mut room = if request.sender.may_claim {
            self.room_mut(&room_name)?
        } else {
            // Nothing of a room may be made for a request that cannot join.
            self.rooms
                .get_mut(&room_name)
                .ok_or_else(|| claim_refused(&request.sender))?
        };
        let before = room.stored_bytes();
        let result = self.send_in(&mut room, request);
        self.account(before, room.stored_bytes());
        let empty = room.is_empty();
        drop(room);
        if result.is_err() && empty {
            // A refused first request must not leave a room counted
            // against --max-rooms until the next sweep.
            self.discard_if_empty(&room_name);
        }
        result
    }

    async fn poll(&self, request: PollRequest) -> Result<Polled, StoreError> {
        // While closing, a poll still collects what is already waiting (so
        // nothing accepted is stranded), but nothing new is created and
        // nothing parks; an empty mailbox is refused so clients back off.
        let closing = self.closed.is_cancelled();
        let PollRequest {
            reader,
            since,
            epoch,
            wait,
        } = request;
        let now = Instant::now();
        let deadline = now + wait;

        let mut room = if closing {
            self.rooms
                .get_mut(&reader.room)
                .ok_or(StoreError::ShuttingDown)?
        } else if !reader.may_claim {
            self.rooms
                .get_mut(&reader.room)
                .ok_or_else(|| claim_refused(&reader))?
        } else {
            self.room_mut(&reader.room)?
        };
        let before = room.stored_bytes();
        let (index, issued_token) = match room.authenticate(&reader)? {
            Some(i) => (i, None),
            None if closing => return Err(StoreError::ShuttingDown),
            None if !reader.may_claim => return Err(claim_refused(&reader)),
            None => {
                room.check_can_join(&reader.room, &self.limits)?;
                let token = self.join(&mut room, &reader, now);
                // The newcomer is last: evictions only remove others.
                (room.peers.len() - 1, Some(token))
            }
        };
        let mailbox = &mut room.peers[index];
        mailbox.last_seen = now;
        // A cursor sent to a mailbox this very request created belongs to
        // some earlier incarnation, whatever its number says.
        let cursor_is_stale = issued_token.is_some() && since > 0;
        let batch = mailbox.read(since, epoch.as_deref(), cursor_is_stale, &self.metrics);
        self.account(before, room.stored_bytes());
        let mailbox = &mut room.peers[index];
        if closing && batch.messages.is_empty() {
            return Err(StoreError::ShuttingDown);
        }
        if !batch.messages.is_empty() || batch.reset || wait.is_zero() || closing {
            return Ok(Polled {
                batch,
                issued_token,
            });
        }

        self.reserve_parked_slot()?;
        let parked = ParkedPoll {
            store: self,
            room: reader.room.clone(),
            peer: reader.peer.clone(),
            epoch: mailbox.epoch.clone(),
        };
        mailbox.poll_generation += 1;
        mailbox.parked += 1;
        let generation = mailbox.poll_generation;
        // One parked poll per mailbox: wake the previous one, which sees it
        // has been superseded, before arming our own waiter.
        mailbox.wake.notify_waiters();
        let wake = Arc::clone(&mailbox.wake);
        let mut woken = pin!(wake.notified());
        woken.as_mut().enable();
        drop(room);

        loop {
            let ending = tokio::select! {
                () = woken.as_mut() => false,
                () = sleep_until(deadline) => true,
                () = self.closed.cancelled() => true,
            };
            let empty = Polled {
                batch: Batch {
                    messages: Vec::new(),
                    next: since,
                    epoch: parked.epoch.clone(),
                    reset: false,
                },
                issued_token: None,
            };
            let Some(mut room) = self.rooms.get_mut(&parked.room) else {
                return Ok(empty);
            };
            let Some(mailbox) = room.mailbox_mut(&parked.peer, &parked.epoch) else {
                return Ok(empty);
            };
            if mailbox.poll_generation != generation {
                return Ok(empty);
            }
            let batch = mailbox.read(since, epoch.as_deref(), false, &self.metrics);
            if !batch.messages.is_empty() || batch.reset || ending {
                return Ok(Polled {
                    batch,
                    issued_token: None,
                });
            }
            // Woken for someone else's sake (a join event was acknowledged
            // meanwhile, say): re-arm under the lock and wait again.
            woken.set(wake.notified());
            woken.as_mut().enable();
        }
    }

    async fn leave(&self, peer: Credentials) -> Result<bool, StoreError> {
        let Some(mut room) = self.rooms.get_mut(&peer.room) else {
            return Ok(false);
        };
        let Some(index) = room.authenticate(&peer)? else {
            return Ok(false);
        };
        let before = room.stored_bytes();
        room.remove(index, LeaveReason::Left);
        let evicted = room.evict_overflowing(&peer.room, &self.limits);
        self.mailbox_count.fetch_sub(1 + evicted, Ordering::Relaxed);
        self.account(before, room.stored_bytes());
        let empty = room.is_empty();
        drop(room);
        // As the Redis store does: a room the last peer left is gone now,
        // not at the next sweep.
        if empty {
            self.discard_if_empty(&peer.room);
        }
        debug!(room = %peer.room, peer = %peer.peer, "peer left");
        Ok(true)
    }

    async fn sweep(&self) {
        let now = Instant::now();
        // Collect the names first: holding an iterator's shard lock while
        // locking entries would deadlock, and would stall the shard.
        let names: Vec<Name> = self.rooms.iter().map(|room| room.key().clone()).collect();
        for (n, name) in names.iter().enumerate() {
            if n % SWEEP_BATCH == SWEEP_BATCH - 1 {
                tokio::task::yield_now().await;
            }
            let empty = match self.rooms.get_mut(name) {
                Some(mut room) => {
                    let before = room.stored_bytes();
                    let expired = room.expire(name, now, &self.limits);
                    self.mailbox_count.fetch_sub(expired, Ordering::Relaxed);
                    self.account(before, room.stored_bytes());
                    room.is_empty()
                }
                None => continue,
            };
            if empty {
                self.discard_if_empty(name);
            }
        }
    }

    fn close(&self) {
        self.closed.cancel();
    }

    async fn stats(&self) -> StoreStats {
        StoreStats {
            rooms: self.room_count.load(Ordering::Relaxed),
            mailboxes: self.mailbox_count.load(Ordering::Relaxed),
            parked_polls: self.parked_polls.load(Ordering::Relaxed),
            stored_bytes: self.stored_bytes(),
        }
    }
}

/// Accounting for one parked poll, released however the poll ends,
/// including when the client hangs up and hyper drops the future.
struct ParkedPoll<'a> {
    store: &'a MemoryStore,
    room: Name,
    peer: Name,
    epoch: Arc<str>,
}

impl Drop for ParkedPoll<'_> {
    fn drop(&mut self) {
        self.store.parked_polls.fetch_sub(1, Ordering::Relaxed);
        if let Some(mut room) = self.store.rooms.get_mut(&self.room)
            && let Some(mailbox) = room.mailbox_mut(&self.peer, &self.epoch)
        {
            mailbox.parked -= 1;
            // The peer was alive all along: its TTL counts from now.
            mailbox.last_seen = Instant::now();
        }
    }
}

fn claim_refused(who: &Credentials) -> StoreError {
    StoreError::ClaimRefused {
        room: who.room.clone(),
        peer: who.peer.clone(),
    }
}

impl Room {
    fn find(&self, peer: &Name) -> Option<usize> {
        self.peers.iter().position(|m| m.peer == *peer)
    }

    fn mailbox_mut(&mut self, peer: &Name, epoch: &Arc<str>) -> Option<&mut Mailbox> {
        self.peers
            .iter_mut()
            .find(|m| m.peer == *peer && Arc::ptr_eq(&m.epoch, epoch))
    }

    /// The index of the peer's mailbox if it exists and the token is right;
    /// `None` if the peer is not in the room (the request may create it).
    fn authenticate(&self, who: &Credentials) -> Result<Option<usize>, StoreError> {
        let Some(index) = self.find(&who.peer) else {
            return Ok(None);
        };
        match &who.token {
            Some(token) if self.peers[index].token.matches(token) => Ok(Some(index)),
            Some(_) => Err(StoreError::TokenMismatch {
                room: who.room.clone(),
                peer: who.peer.clone(),
            }),
            None => Err(StoreError::TokenMissing {
                room: who.room.clone(),
                peer: who.peer.clone(),
            }),
        }
    }

    fn check_can_join(&self, room: &Name, limits: &Limits) -> Result<(), StoreError> {
        if self.peers.len() >= limits.room_peers {
            return Err(StoreError::RoomFull {
                room: room.clone(),
                max: limits.room_peers,
            });
        }
        Ok(())
    }

    /// Adds the peer's mailbox: it starts with the `peers` event and the
    /// backlog; everyone else hears `join`. Returns the peer's token.
    fn join(&mut self, who: &Credentials, now: Instant, limits: &Limits) -> Token {
        let token = who.token.clone().unwrap_or_else(Token::generate);
        let mut mailbox = Mailbox::new(who.peer.clone(), token.clone(), now);
        let peers = self.peers.iter().map(|m| m.peer.clone()).collect();
        mailbox.push(None, RoomEvent::Peers { peers }.payload());
        self.expire_backlog(now, limits);
        for queued in self.backlog.drain(..) {
            mailbox.push(Some(queued.from), queued.data);
        }
        let joined = RoomEvent::Join {
            peer: who.peer.clone(),
        }
        .payload();
        for other in &mut self.peers {
            other.push(None, joined.clone());
        }
        self.peers.push(mailbox);
        debug!(room = %who.room, peer = %who.peer, "peer joined");
        token
    }

    /// Removes a mailbox; everyone else hears `leave` with its reason, and
    /// a poll parked on it wakes, finds it gone, and ends empty.
    fn remove(&mut self, index: usize, reason: LeaveReason) {
        let gone = self.peers.remove(index);
        gone.wake.notify_waiters();
        let left = RoomEvent::Leave {
            peer: gone.peer.clone(),
            reason,
        }
        .payload();
        for other in &mut self.peers {
            other.push(None, left.clone());
        }
    }

    /// Drops what has outlived its limits; returns how many peers left.
    fn expire(&mut self, name: &Name, now: Instant, limits: &Limits) -> usize {
        let mut expired = 0;
        while let Some(index) = self.peers.iter().position(|m| {
            m.parked == 0 && now.saturating_duration_since(m.last_seen) >= limits.peer_ttl
        }) {
            debug!(room = %name, peer = %self.peers[index].peer, "peer expired");
            self.remove(index, LeaveReason::Expired);
            expired += 1;
        }
        self.expire_backlog(now, limits);
        while self
            .receipts
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.at) >= IDEMPOTENCY_WINDOW)
        {
            self.receipts.pop_front();
        }
        expired
    }

    fn expire_backlog(&mut self, now: Instant, limits: &Limits) {
        while self
            .backlog
            .front()
            .is_some_and(|q| now.saturating_duration_since(q.at) >= limits.backlog_age)
        {
            self.backlog.pop_front();
        }
    }

    fn recorded_receipt(&self, sender: &Name, key: &str, now: Instant) -> Option<Receipt> {
        self.receipts
            .iter()
            .find(|r| {
                r.sender == *sender
                    && *r.key == *key
                    && now.saturating_duration_since(r.at) < IDEMPOTENCY_WINDOW
            })
            .map(|r| r.receipt.clone())
    }

    /// One record per sender and key: a send stored anew (past the window,
    /// or one that joined the sender and so was no repeat) replaces the
    /// earlier record, which no repeat may find again (docs/protocol.md).
    fn record_receipt(&mut self, sender: Name, key: Box<str>, receipt: Receipt, now: Instant) {
        self.receipts
            .retain(|r| !(r.sender == sender && r.key == key));
        if self.receipts.len() >= MAX_RECEIPTS_PER_ROOM {
            self.receipts.pop_front();
        }
        self.receipts.push_back(IdempotencyRecord {
            sender,
            key,
            receipt,
            at: now,
        });
    }

    fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.backlog.is_empty() && self.receipts.is_empty()
    }

    /// Bytes this room holds for clients: messages in mailboxes and
    /// backlog, and the idempotency records (keys and receipts).
    fn stored_bytes(&self) -> usize {
        let mailboxes: usize = self.peers.iter().map(|m| m.bytes).sum();
        let backlog: usize = self
            .backlog
            .iter()
            .map(|q| q.data.get().len() + MESSAGE_OVERHEAD)
            .sum();
        let receipts: usize = self.receipts.iter().map(IdempotencyRecord::bytes).sum();
        mailboxes + backlog + receipts
    }

    /// Room events are stored even in a full mailbox (dropping one would
    /// mislead the reader), so a peer that never polls while others come
    /// and go could grow without bound. Past twice its cap it is taken as
    /// gone: it leaves (and gets `reset` if it ever returns). Returns how
    /// many left.
    fn evict_overflowing(&mut self, room: &Name, limits: &Limits) -> usize {
        let hard_cap = limits.mailbox_messages.saturating_mul(2).max(16);
        let mut evicted = 0;
        while let Some(index) = self.peers.iter().position(|m| m.messages.len() > hard_cap) {
            debug!(room = %room, peer = %self.peers[index].peer, "peer evicted: its mailbox overflowed with room events");
            // Drowned because it stopped polling: as quiet as an expiry.
            self.remove(index, LeaveReason::Expired);
            evicted += 1;
        }
        evicted
    }
}

impl Mailbox {
    fn new(peer: Name, token: Token, now: Instant) -> Mailbox {
        Mailbox {
            peer,
            token,
            epoch: new_epoch(),
            messages: VecDeque::new(),
            bytes: 0,
            last_seq: 0,
            acked: 0,
            returned: 0,
            last_seen: now,
            parked: 0,
            poll_generation: 0,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Whether `count` more messages of `size` bytes in all fit.
    fn has_room_for(&self, count: usize, size: usize, limits: &Limits) -> bool {
        self.messages.len() + count <= limits.mailbox_messages
            && self.bytes + size + count * MESSAGE_OVERHEAD <= limits.mailbox_bytes
    }

    /// Appends a message and wakes a parked poll. Room events go through
    /// here without a capacity check: they are small, and dropping one would
    /// leave the reader with a wrong picture of the room.
    fn push(&mut self, from: Option<Name>, data: Payload) {
        self.last_seq += 1;
        self.bytes += data.get().len() + MESSAGE_OVERHEAD;
        self.messages.push_back(Stored {
            message: Message {
                seq: self.last_seq,
                from,
                data,
            },
            stored_at: std::time::Instant::now(),
        });
        self.wake.notify_waiters();
    }

    /// Acknowledges up to `since` if the cursor can be honoured, and returns
    /// what the reader has not seen. `force_reset` marks a cursor known to
    /// belong to another incarnation.
    fn read(
        &mut self,
        since: u64,
        epoch: Option<&str>,
        force_reset: bool,
        metrics: &Metrics,
    ) -> Batch {
        let honoured = !force_reset
            && epoch.is_none_or(|e| e == &*self.epoch)
            && (self.acked..=self.last_seq).contains(&since);
        if honoured {
            while self
                .messages
                .front()
                .is_some_and(|m| m.message.seq <= since)
            {
                if let Some(m) = self.messages.pop_front() {
                    self.bytes -= m.message.data.get().len() + MESSAGE_OVERHEAD;
                }
            }
            self.acked = since;
        }
        for stored in self
            .messages
            .iter()
            .filter(|m| m.message.seq > self.returned)
        {
            if stored.message.from.is_some() {
                metrics
                    .delivery_latency
                    .observe(stored.stored_at.elapsed().as_secs_f64());
            }
        }
        self.returned = self.returned.max(self.last_seq);
        Batch {
            messages: self.messages.iter().map(|m| m.message.clone()).collect(),
            // Whether honoured or reset, the batch holds everything up to
            // `last_seq`, so that is where the reader stands afterwards.
            next: self.last_seq,
            epoch: self.epoch.clone(),
            reset: !honoured,
        }
    }
}

#[cfg(test)]
mod tests;
