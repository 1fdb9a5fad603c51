//! The server a workload runs against, and one mailbox's two ends on it:
//! our `/signal` (a room whose peers post to each other), or nginx+nchan
//! (one channel per receiving mailbox).
//!
//! Each peer has a connection pool of its own, as each is a browser of its
//! own: requests of different rooms never share a connection, on either
//! server.

use std::time::Duration;

use bytes::Bytes;
use signal_relay::client::{Client, Peer};

use crate::{err, nchan};

/// The server the workload runs against.
#[derive(Clone)]
pub enum Target {
    /// Ours: senders post through one instance, receivers poll another
    /// (the same one unless `--receive-url` names a second).
    Ours { senders: Client, receivers: Client },
    /// nginx+nchan: one channel per receiving mailbox; publishing to the
    /// receiver goes through `senders`, subscribing through `receivers`.
    Nchan {
        senders: reqwest::Client,
        receivers: reqwest::Client,
        base: String,
    },
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Ours { .. } => "signal-relay",
            Target::Nchan { .. } => "nchan",
        }
    }

    /// The nginx+nchan at `base`, a pool for each side.
    pub fn on_nchan(base: &str) -> Result<Target, String> {
        Ok(Target::Nchan {
            senders: nchan::http_client()?,
            receivers: nchan::http_client()?,
            base: base.to_owned(),
        })
    }

    /// The same servers through fresh connection pools: what the peers of
    /// one pair or call use, as the browsers of one call share nothing.
    pub fn own_pools(&self) -> Result<Target, String> {
        match self {
            Target::Ours { senders, receivers } => Ok(Target::Ours {
                senders: Client::new(senders.base()).map_err(err)?,
                receivers: Client::new(receivers.base()).map_err(err)?,
            }),
            Target::Nchan { base, .. } => Target::on_nchan(base),
        }
    }

    /// `from`'s way into `to`'s mailbox, and `to`'s end of it, in room
    /// (or channel family) `id`. On ours both peers join first.
    pub async fn pair(&self, id: &str, from: &str, to: &str) -> Result<(Outbox, Inbox), String> {
        match self {
            Target::Ours { senders, receivers } => {
                let mut sender = Peer::new(senders, id, from);
                let mut receiver = Peer::new(receivers, id, to);
                sender.join().await.map_err(err)?;
                receiver.join().await.map_err(err)?;
                Ok((
                    Outbox::Ours {
                        peer: sender,
                        to: to.to_owned(),
                    },
                    Inbox::Ours {
                        peer: receiver,
                        from: from.to_owned(),
                    },
                ))
            }
            Target::Nchan {
                senders,
                receivers,
                base,
            } => {
                let id = format!("{id}-{to}");
                let (publisher, subscriber) = nchan::channel(senders, receivers, base, &id);
                Ok((Outbox::Nchan(publisher), Inbox::Nchan(subscriber)))
            }
        }
    }
}

impl Target {
    /// The two peers of one call in room `id`: for each, its way into the
    /// other's mailbox and its own mailbox. On ours both join. Peer `a`
    /// uses the `senders` pool, `b` the `receivers` one.
    pub async fn call(&self, id: &str) -> Result<[(Outbox, Inbox); 2], String> {
        match self {
            Target::Ours { senders, receivers } => {
                let mut a = Peer::new(senders, id, "a");
                let mut b = Peer::new(receivers, id, "b");
                a.join().await.map_err(err)?;
                b.join().await.map_err(err)?;
                let ends = |peer: Peer, other: &str| {
                    let outbox = Outbox::Ours {
                        peer: peer.clone(),
                        to: other.to_owned(),
                    };
                    let inbox = Inbox::Ours {
                        peer,
                        from: other.to_owned(),
                    };
                    (outbox, inbox)
                };
                Ok([ends(a, "b"), ends(b, "a")])
            }
            Target::Nchan {
                senders: a,
                receivers: b,
                base,
            } => {
                let (to_b, b_inbox) = nchan::channel(a, b, base, &format!("{id}-b"));
                let (to_a, a_inbox) = nchan::channel(b, a, base, &format!("{id}-a"));
                Ok([
                    (Outbox::Nchan(to_b), Inbox::Nchan(a_inbox)),
                    (Outbox::Nchan(to_a), Inbox::Nchan(b_inbox)),
                ])
            }
        }
    }
}

/// A way into one mailbox.
#[derive(Clone)]
pub enum Outbox {
    Ours { peer: Peer, to: String },
    Nchan(nchan::Publisher),
}

impl Outbox {
    pub async fn send(&self, body: Bytes) -> Result<(), String> {
        match self {
            Outbox::Ours { peer, to } => {
                peer.send_json(Some(to), body).await.map(drop).map_err(err)
            }
            Outbox::Nchan(publisher) => publisher.send(body).await,
        }
    }

    /// Sends `bodies` in order: on ours as one batch (a JSON array, one
    /// request), on nchan one publish each (it has no batch publish).
    pub async fn send_batch(&self, bodies: Vec<Bytes>) -> Result<(), String> {
        match self {
            Outbox::Ours { peer, to } => {
                let mut array = Vec::with_capacity(bodies.iter().map(|b| b.len() + 1).sum());
                array.push(b'[');
                for (i, body) in bodies.iter().enumerate() {
                    if i > 0 {
                        array.push(b',');
                    }
                    array.extend_from_slice(body);
                }
                array.push(b']');
                peer.send_json(Some(to), array.into())
                    .await
                    .map(drop)
                    .map_err(err)
            }
            Outbox::Nchan(publisher) => {
                for body in bodies {
                    publisher.send(body).await?;
                }
                Ok(())
            }
        }
    }
}

/// A mailbox's reading end.
pub enum Inbox {
    Ours { peer: Peer, from: String },
    Nchan(nchan::Subscriber),
}

impl Inbox {
    /// The payloads from the sender that one poll returns (ours returns a
    /// batch, nchan one message per reply); empty when `wait` passed. On
    /// ours a batch of room events only (`join`, `peers`) is read past.
    pub async fn receive(&mut self, wait: Duration) -> Result<Vec<String>, String> {
        match self {
            Inbox::Ours { peer, from } => loop {
                let batch = peer.poll(wait).await.map_err(err)?;
                if batch.messages.is_empty() {
                    return Ok(Vec::new());
                }
                let payloads: Vec<String> = batch
                    .messages
                    .into_iter()
                    .filter(|m| m.from.as_deref() == Some(from.as_str()))
                    .map(|m| m.data.get().to_owned())
                    .collect();
                if !payloads.is_empty() {
                    return Ok(payloads);
                }
            },
            Inbox::Nchan(subscriber) => Ok(subscriber.poll(wait).await?.into_iter().collect()),
        }
    }

    /// Ends the mailbox: ours leaves the room, nchan's channel is deleted.
    pub async fn leave(&self) -> Result<(), String> {
        match self {
            Inbox::Ours { peer, .. } => peer.leave().await.map_err(err),
            Inbox::Nchan(subscriber) => subscriber.delete().await,
        }
    }
}
