//! The wire format of protocol v1, declared once: the paths, query
//! parameters and headers a request carries, and every JSON body the server
//! replies with or delivers (docs/protocol.md is the specification; the
//! tests at the end pin each body to the bytes that file shows).
//!
//! The API serializes these types, the Rust client ([`crate::client`]) and
//! the tests deserialize them, and the stores fill them in. Nothing else
//! in the crate spells a field name of the protocol.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::name::Name;

/// The one API endpoint: send, poll, leave.
pub const SIGNAL_PATH: &str = "/signal";
/// The browser client's ICE servers.
pub const CONFIG_PATH: &str = "/config";
/// Liveness probe.
pub const HEALTH_PATH: &str = "/healthz";
/// Prometheus exposition.
pub const METRICS_PATH: &str = "/metrics";

/// Query parameters of `/signal` (and `peer` of `/config`).
pub mod query {
    pub const ROOM: &str = "room";
    pub const PEER: &str = "peer";
    /// The recipient of a direct message; absent for everyone in the room.
    pub const TO: &str = "to";
    /// The poll cursor: the `next` of the last batch.
    pub const SINCE: &str = "since";
    pub const EPOCH: &str = "epoch";
    /// Seconds a poll may park.
    pub const TIMEOUT: &str = "timeout";
    /// The peer token, for clients that cannot set headers.
    pub const TOKEN: &str = "token";
    /// `offer` or `answer`, for an `application/sdp` body.
    pub const SDP_TYPE: &str = "type";
    /// `1` on a POST: leave instead of send (for `navigator.sendBeacon`).
    pub const LEAVE: &str = "leave";
}

/// The WHIP endpoints: `POST /whip/{room}[/{peer}]` publishes to a peer.
pub const WHIP_PREFIX: &str = "/whip/";
/// The WHEP endpoints: `POST /whep/{room}[/{peer}]` plays a peer's media.
pub const WHEP_PREFIX: &str = "/whep/";

/// Media types of the bodies this server reads and writes.
pub mod media {
    pub const JSON: &str = "application/json";
    pub const SDP: &str = "application/sdp";
    /// RFC 8840's fragment, the body of a WHIP/WHEP `PATCH`.
    pub const TRICKLE_ICE_SDPFRAG: &str = "application/trickle-ice-sdpfrag";
    pub const PROBLEM: &str = "application/problem+json";
}

/// Request and reply headers of `/signal` (lower case, as HTTP/2 sends them).
pub mod header {
    /// The peer's token: offered by the creating request, or issued in its reply.
    pub const PEER_TOKEN: &str = "x-peer-token";
    /// Makes a send safe to retry: one key, one stored message.
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
}

/// Messages one send may carry as a JSON array: a burst of trickled ICE
/// candidates in one request instead of one each.
pub const MAX_BATCH: usize = 32;

/// A message body as relayed: one JSON object, kept as the sender's text and
/// shared between the recipients of a broadcast.
pub type Payload = Arc<RawValue>;

/// One message of a mailbox, as a poll returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub seq: u64,
    /// The sending peer; `None` for room events ([`RoomEvent`]).
    pub from: Option<Name>,
    pub data: Payload,
}

/// The reply to `GET /signal`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub messages: Vec<Message>,
    /// The cursor to send as `since` on the next poll.
    pub next: u64,
    /// The incarnation of the mailbox that `next` belongs to.
    pub epoch: Arc<str>,
    /// The request's cursor could not be honoured: `messages` holds
    /// everything retained instead. Sent only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

impl Batch {
    /// About the length of this batch as JSON, a little over rather than
    /// under: the payloads, and a generous allowance for the rest.
    pub fn encoded_len_hint(&self) -> usize {
        let per_message = r#"{"seq":18446744073709551615,"from":"","data":},"#.len();
        let messages: usize = self
            .messages
            .iter()
            .map(|m| per_message + m.from.as_ref().map_or(0, |f| f.len()) + m.data.get().len())
            .sum();
        let envelope =
            r#"{"messages":[],"next":18446744073709551615,"epoch":"","reset":true}"#.len();
        envelope + self.epoch.len() + messages
    }
}

/// The reply to `POST /signal` (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The peers whose mailboxes now hold the message.
    pub delivered: Vec<Name>,
    /// Nobody else was in the room: the message waits in the room backlog
    /// for the next peer that joins.
    pub queued: bool,
}

/// The reply to `DELETE /signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// False when the peer was not in the room.
    pub left: bool,
}

/// The body of every error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and how to fix it, for a person.
    pub error: String,
}

/// The body of an error on the WHIP and WHEP paths: an RFC 9457 problem
/// (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// The reply to `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// The reply to `GET /config`: an `RTCConfiguration`'s `iceServers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceConfig {
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<serde_json::Value>,
}

/// An offer or an answer, as a message's data: what an
/// `RTCSessionDescription` holds, so a page passes it on as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// `offer` or `answer`.
    #[serde(rename = "type")]
    pub kind: String,
    pub sdp: String,
    /// `false` on an offer whose sender cannot take trickled candidates
    /// (a WHIP or WHEP client): the answer must carry every candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trickle: Option<bool>,
}

/// A trickled ICE candidate, as a message's data:
/// `{"type":"candidate","ice":{…}}`, `ice` being an `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Always `candidate`.
    #[serde(rename = "type")]
    pub kind: String,
    pub ice: IceCandidate,
}

/// `RTCIceCandidateInit`: an empty `candidate` is the end of candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// What the server itself tells a room, delivered with `"from": null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RoomEvent {
    /// First message of every mailbox: who was already in the room.
    Peers {
        peers: Vec<Name>,
    },
    Join {
        peer: Name,
    },
    Leave {
        peer: Name,
        /// Absent from older servers, which only sent leaves for peers that left.
        #[serde(default)]
        reason: LeaveReason,
    },
}

/// Why a peer is no longer in its room, sent with its `leave` event. The
/// difference matters to a caller: a peer that left hung up, while a peer
/// that expired only stopped polling (a cut network, a sleeping laptop) and
/// may still be in a call whose media does not touch this server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaveReason {
    /// It sent `DELETE` (the page was closed or hung up).
    #[default]
    Left,
    /// It was not seen for the peer TTL, or stopped reading its mailbox
    /// until it overflowed.
    Expired,
}

impl LeaveReason {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Expired => "expired",
        }
    }
}

impl RoomEvent {
    /// The event as a message payload.
    pub fn payload(&self) -> Payload {
        let raw = serde_json::value::to_raw_value(self)
            .expect("room events are names and strings, which always serialize");
        Arc::from(raw)
    }

    /// Reads a message's data as a room event, if it is one.
    pub fn parse(data: &RawValue) -> Option<RoomEvent> {
        serde_json::from_str(data.get()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::parse(text).unwrap()
    }

    fn raw(json: &str) -> Payload {
        Arc::from(RawValue::from_string(json.to_owned()).unwrap())
    }

    /// Each body as docs/protocol.md shows it, byte for byte, and back.
    #[test]
    fn bodies_are_the_documented_bytes() {
        let batch = Batch {
            messages: vec![
                Message {
                    seq: 1,
                    from: None,
                    data: RoomEvent::Peers { peers: vec![] }.payload(),
                },
                Message {
                    seq: 2,
                    from: Some(name("alice")),
                    data: raw(r#"{"type":"offer","sdp":"v=0"}"#),
                },
            ],
            next: 2,
            epoch: "kX3q9Tz0".into(),
            reset: false,
        };
        let text = serde_json::to_string(&batch).unwrap();
        assert_eq!(
            text,
            r#"{"messages":[{"seq":1,"from":null,"data":{"type":"peers","peers":[]}},{"seq":2,"from":"alice","data":{"type":"offer","sdp":"v=0"}}],"next":2,"epoch":"kX3q9Tz0"}"#
        );
        let back: Batch = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back.messages[1].data.get(),
            r#"{"type":"offer","sdp":"v=0"}"#
        );
        assert!(!back.reset);
        let reset = Batch {
            reset: true,
            ..batch
        };
        assert!(
            serde_json::to_string(&reset)
                .unwrap()
                .ends_with(r#""reset":true}"#)
        );

        let receipt = Receipt {
            delivered: vec![name("bob")],
            queued: false,
        };
        assert_eq!(
            serde_json::to_string(&receipt).unwrap(),
            r#"{"delivered":["bob"],"queued":false}"#
        );
        assert_eq!(
            serde_json::to_string(&Left { left: true }).unwrap(),
            r#"{"left":true}"#
        );
        assert_eq!(
            serde_json::to_string(&ErrorBody { error: "x".into() }).unwrap(),
            r#"{"error":"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&IceConfig {
                ice_servers: vec![]
            })
            .unwrap(),
            r#"{"iceServers":[]}"#
        );
    }

    #[test]
    fn room_events() {
        let cases = [
            (
                RoomEvent::Peers {
                    peers: vec![name("a"), name("b")],
                },
                r#"{"type":"peers","peers":["a","b"]}"#,
            ),
            (
                RoomEvent::Join { peer: name("bob") },
                r#"{"type":"join","peer":"bob"}"#,
            ),
            (
                RoomEvent::Leave {
                    peer: name("bob"),
                    reason: LeaveReason::Expired,
                },
                r#"{"type":"leave","peer":"bob","reason":"expired"}"#,
            ),
        ];
        for (event, text) in cases {
            assert_eq!(event.payload().get(), text);
            assert_eq!(RoomEvent::parse(&raw(text)), Some(event));
        }
        assert_eq!(
            RoomEvent::parse(&raw(r#"{"type":"leave","peer":"bob"}"#)),
            Some(RoomEvent::Leave {
                peer: name("bob"),
                reason: LeaveReason::Left
            }),
            "an older server's leave means the peer left"
        );
        assert_eq!(RoomEvent::parse(&raw(r#"{"type":"offer"}"#)), None);
    }

    #[test]
    fn names_are_validated_when_read() {
        assert!(serde_json::from_str::<Name>(r#""ok_name""#).is_ok());
        assert!(serde_json::from_str::<Name>(r#""a b""#).is_err());
        assert!(
            serde_json::from_str::<Receipt>(r#"{"delivered":["<x>"],"queued":false}"#).is_err()
        );
    }
}
