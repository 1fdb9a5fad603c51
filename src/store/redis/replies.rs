//! The scripts' replies, decoded: batches, hand-overs and refusals. A
//! reply the script cannot have produced (a bug, or another program writing
//! `sr:*` keys) is logged and answered 503, never trusted.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tracing::error;

use super::BATCH_HEADER;
use crate::metrics::Metrics;
use crate::name::Name;
use crate::store::{Credentials, Limits, StoreError};
use crate::wire::{Batch, Message};

/// Decodes a batch reply: the header, then one element per message,
/// `"<stored ms> <len> <from|*> <data>"`, in seq order. The first delivery
/// of each message is timed into `metrics`.
pub fn batch(reply: &[String], metrics: &Metrics) -> Result<Batch, StoreError> {
    let number = |i: usize| -> Result<u64, StoreError> {
        reply
            .get(i)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt("a batch header"))
    };
    let next = number(1)?;
    let epoch: Arc<str> = reply.get(2).map(|e| e.as_str().into()).unwrap_or_default();
    let reset = number(3)? == 1;
    let returned_before = number(4)?;
    let redis_now = number(5)?;
    let elements = reply.get(BATCH_HEADER..).unwrap_or_default();
    let first_seq = next + 1 - elements.len() as u64;
    let mut messages = Vec::with_capacity(elements.len());
    for (seq, element) in (first_seq..).zip(elements) {
        let mut parts = element.splitn(4, ' ');
        let (Some(stored_ms), Some(_len), Some(from), Some(data)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt("a message"));
        };
        let age = Duration::from_millis(
            redis_now.saturating_sub(stored_ms.parse().map_err(|_| corrupt("a timestamp"))?),
        );
        let from = match from {
            "*" => None,
            name => Some(Name::parse(name).map_err(|_| corrupt("a sender name"))?),
        };
        if seq > returned_before && from.is_some() {
            metrics.delivery_latency.observe(age.as_secs_f64());
        }
        let data = RawValue::from_string(data.to_owned()).map_err(|_| corrupt("a payload"))?;
        messages.push(Message {
            seq,
            from,
            data: Arc::from(data),
        });
    }
    Ok(Batch {
        messages,
        next,
        epoch,
        reset,
    })
}

/// A hand-over (see `hand_over` in redis.lua) as the batch reply the
/// re-read would have given: "<next> <epoch> <returned before> <now>\n"
/// then the stored messages back to back, each "<ms> <len> <from> <data>".
pub fn handover_reply(handed: &str, generation: &str) -> Result<Vec<String>, StoreError> {
    let malformed = || corrupt("a hand-over");
    let (header, mut rest) = handed.split_once('\n').ok_or_else(malformed)?;
    let mut fields = header.split(' ');
    let mut field = || fields.next().map(str::to_owned).ok_or_else(malformed);
    let (next, epoch, returned, now) = (field()?, field()?, field()?, field()?);
    let mut reply = vec![
        "ok".to_owned(),
        next,
        epoch,
        "0".to_owned(),
        returned,
        now,
        "0".to_owned(),
        generation.to_owned(),
    ];
    while !rest.is_empty() {
        // "<ms> <len> <from> " then <len> bytes of data.
        let mut end = 0;
        let mut len = 0;
        for part in 0..3 {
            let space = rest[end..].find(' ').ok_or_else(malformed)?;
            if part == 1 {
                len = rest[end..end + space]
                    .parse::<usize>()
                    .map_err(|_| malformed())?;
            }
            end += space + 1;
        }
        let element = rest.get(..end + len).ok_or_else(malformed)?;
        reply.push(element.to_owned());
        rest = &rest[end + len..];
    }
    Ok(reply)
}

/// Turns a script's refusal into the store's error.
pub fn check(reply: &[String], who: &Credentials, limits: &Limits) -> Result<(), StoreError> {
    let room = || who.room.clone();
    let peer_named = |i: usize| {
        reply
            .get(i)
            .and_then(|name| Name::parse(name).ok())
            .ok_or_else(|| corrupt("a peer name"))
    };
    Err(match reply.first().map(String::as_str) {
        Some("ok") => return Ok(()),
        Some("token_missing") => StoreError::TokenMissing {
            room: room(),
            peer: who.peer.clone(),
        },
        Some("token_mismatch") => StoreError::TokenMismatch {
            room: room(),
            peer: who.peer.clone(),
        },
        Some("claim_refused") => StoreError::ClaimRefused {
            room: room(),
            peer: who.peer.clone(),
        },
        Some("no_such_peer") => StoreError::NoSuchPeer {
            room: room(),
            peer: peer_named(1)?,
        },
        Some("send_to_self") => StoreError::SendToSelf,
        Some("mailbox_full") => StoreError::MailboxFull {
            peer: peer_named(1)?,
        },
        Some("backlog_full") => StoreError::BacklogFull { room: room() },
        Some("room_full") => StoreError::RoomFull {
            room: room(),
            max: limits.room_peers,
        },
        Some("too_many_rooms") => StoreError::TooManyRooms { max: limits.rooms },
        Some("store_full") => StoreError::StoreFull {
            max: limits.stored_bytes,
        },
        Some("shutting_down") => StoreError::ShuttingDown,
        _ => corrupt("a reply"),
    })
}

/// A reply the script cannot have produced: a bug or a foreign writer.
pub fn corrupt(what: &str) -> StoreError {
    error!("Redis returned a malformed {what}; is another program writing sr:* keys?");
    StoreError::Unavailable
}

#[cfg(test)]
mod tests {
    use super::handover_reply;

    #[test]
    fn a_handover_splits_by_each_messages_length() {
        // Payloads may hold spaces and newlines; only <len> delimits them.
        let a = r#"{"sdp":"v=0\r\n a b"}"#;
        let b = "{\"n\":\n2}";
        let handed = format!(
            "7 ep-1 5 1000\n990 {} alice {a}995 {} * {b}",
            a.len(),
            b.len()
        );
        let reply = handover_reply(&handed, "3").unwrap();
        assert_eq!(reply[..8], ["ok", "7", "ep-1", "0", "5", "1000", "0", "3"]);
        assert_eq!(reply[8], format!("990 {} alice {a}", a.len()));
        assert_eq!(reply[9], format!("995 {} * {b}", b.len()));
        assert_eq!(reply.len(), 10);
        assert!(handover_reply("7 ep-1 5 1000\n990 99 alice {}", "3").is_err());
        assert!(handover_reply("7 ep-1", "3").is_err());
    }
}
