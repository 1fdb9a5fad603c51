//! WHIP (RFC 9725) and WHEP on every room: a tool POSTs an SDP offer and
//! gets the answer of a peer in the room back in the same reply.
//!
//! A session is an ordinary peer of the room with a server-chosen name
//! (`whip-…`, `whep-…`) and token. Its offer reaches the target peer exactly
//! as a page's would, marked `"trickle": false` because the server cannot
//! trickle to a WHIP client: the page waits for its gathering to end and
//! answers with every candidate in the SDP. The request waits for that
//! answer (`--whip-timeout`). The session resource,
//! `/{whip|whep}/{room}/{peer}/{session}/{token}`, is unguessable (it holds
//! the session's peer token): `PATCH` relays the client's trickled
//! candidates to the peer, `DELETE` leaves the room (the page ends the call).
//! A session that is neither patched nor deleted expires like any peer.
//!
//! Everything goes through the [`Store`] interface, so WHIP works across
//! instances sharing Redis like `/signal` does.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Body, Bytes};
use hyper::header::{
    AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderMap, HeaderName, HeaderValue, IF_MATCH, LINK, LOCATION,
};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::params::body_media_type;
use super::sdpfrag::parse_sdpfrag;
use super::{Api, ApiError, Reply, to_payload};
use crate::name::Name;
use crate::store::{Credentials, PollRequest, SendRequest, Store, StoreError};
use crate::ticket::{Grant, bearer};
use crate::token::{Token, random_id};
use crate::wire::{self, Candidate, Description, RoomEvent, media};

/// Methods of a WHIP/WHEP endpoint and of a session resource.
pub const ENDPOINT_METHODS: &str = "POST, GET, HEAD, OPTIONS";
pub const SESSION_METHODS: &str = "PATCH, DELETE, GET, HEAD, OPTIONS";
const ACCEPT_POST: HeaderName = HeaderName::from_static("accept-post");
const ACCEPT_PATCH: HeaderName = HeaderName::from_static("accept-patch");

/// `--whip-token`: a server-wide bearer token every WHIP/WHEP request must
/// present. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct WhipToken(String);

impl WhipToken {
    pub fn new(text: &str) -> Result<WhipToken, String> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the WHIP token must be visible ASCII characters, at least one".into());
        }
        Ok(WhipToken(text.to_owned()))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WhipToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WhipToken(<redacted>)")
    }
}

/// Which convention a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// WHIP: the client publishes (a `sendonly` offer), the peer receives.
    Whip,
    /// WHEP: the client plays (a `recvonly` offer), the peer sends.
    Whep,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        }
    }
}

/// A WHIP/WHEP path, read.
#[derive(Debug, Clone)]
pub enum Target {
    /// `/{kind}/{room}[/{peer}]`: where offers are posted.
    Endpoint { room: Name, peer: Option<Name> },
    /// `/{kind}/{room}/{peer}/{session}/{token}`: one session.
    Session {
        room: Name,
        peer: Name,
        session: Name,
        token: Token,
    },
}

/// Reads `/whip/…` or `/whep/…`; `None` for any other path.
pub fn parse_path(path: &str) -> Option<Result<(Kind, Target), ApiError>> {
    let (kind, rest) = split_prefix(path)?;
    let not_found = || {
        ApiError::not_found(format!(
            "no {0} resource at {path}: post offers to /{0}/ROOM/PEER",
            kind.word()
        ))
    };
    Some(read_target(rest, not_found).map(|target| (kind, target)))
}

/// The room segment of a `/whip/…` or `/whep/…` path, unchecked: where
/// the connection is placed, not what the request may do.
pub fn room_segment(path: &str) -> Option<&str> {
    let (_, rest) = split_prefix(path)?;
    let room = rest.split('/').next()?;
    (!room.is_empty()).then_some(room)
}

/// Which of the two routes `path` is on, and what follows its prefix.
fn split_prefix(path: &str) -> Option<(Kind, &str)> {
    if let Some(rest) = path.strip_prefix(wire::WHIP_PREFIX) {
        Some((Kind::Whip, rest))
    } else {
        path.strip_prefix(wire::WHEP_PREFIX)
            .map(|rest| (Kind::Whep, rest))
    }
}

fn read_target(rest: &str, not_found: impl Fn() -> ApiError) -> Result<Target, ApiError> {
    let name = |segment: &str| Name::parse(segment).map_err(|_| not_found());
    let segments: Vec<&str> = rest.split('/').collect();
    Ok(match segments[..] {
        [room] => Target::Endpoint {
            room: name(room)?,
            peer: None,
        },
        [room, peer] => Target::Endpoint {
            room: name(room)?,
            peer: Some(name(peer)?),
        },
        [room, peer, session, token] => Target::Session {
            room: name(room)?,
            peer: name(peer)?,
            session: name(session)?,
            token: Token::parse(token).map_err(|_| not_found())?,
        },
        _ => return Err(not_found()),
    })
}

impl Target {
    pub fn allowed_methods(&self) -> &'static str {
        match self {
            Target::Endpoint { .. } => ENDPOINT_METHODS,
            Target::Session { .. } => SESSION_METHODS,
        }
    }
}

/// The strong ETag of a session. ICE restarts are refused (422), so it
/// never changes.
fn etag_of(session: &Name) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{session}.1\"")).expect("a name is a header value")
}

/// Leaves the room when dropped unless disarmed: a POST whose client gave
/// up, or that failed, leaves nothing behind.
struct LeaveOnDrop<S: Store> {
    store: Arc<S>,
    session: Option<Credentials>,
}

impl<S: Store> LeaveOnDrop<S> {
    fn disarm(mut self) {
        self.session = None;
    }
}

impl<S: Store> Drop for LeaveOnDrop<S> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let store = self.store.clone();
            tokio::spawn(async move {
                let _ = store.leave(session).await;
            });
        }
    }
}

impl<S: Store> Api<S> {
    /// Answers a request on a WHIP or WHEP path; errors are RFC 9457 problems.
    pub(super) async fn whip<B>(&self, request: Request<B>, kind: Kind, target: Target) -> Reply
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let result = match (request.method().clone(), &target) {
            (Method::OPTIONS, target) => Ok(options(target)),
            // The resources have no representation: RFC 9725 §4.1 asks for
            // a 2xx with no content.
            (Method::GET | Method::HEAD, _) => {
                let mut reply = Response::new(Full::default());
                *reply.status_mut() = StatusCode::NO_CONTENT;
                Ok(reply)
            }
            (Method::POST, Target::Endpoint { room, peer }) => {
                let (room, peer) = (room.clone(), peer.clone());
                Box::pin(self.create_session(request, kind, room, peer)).await
            }
            (Method::PATCH, Target::Session { .. }) => {
                Box::pin(self.patch_session(request, target)).await
            }
            (Method::DELETE, Target::Session { .. }) => {
                Box::pin(self.delete_session(request.headers(), target)).await
            }
            (method, target) => Err(ApiError::method_not_allowed(
                method,
                target.allowed_methods(),
            )),
        };
        result.unwrap_or_else(ApiError::into_problem_response)
    }

    /// May this POST offer to `room`? With tickets, it needs one that
    /// grants `kind` there, or the `--whip-token` when one is set too;
    /// without, the `--whip-token` when one is set. Answers whether the
    /// session's `Link`s may carry a TURN credential: a ticket must grant
    /// `turn` for that, as on `/config`.
    fn authorize_offer(
        &self,
        headers: &HeaderMap,
        room: &Name,
        kind: Kind,
    ) -> Result<bool, ApiError> {
        if !self.requires_tickets() {
            return self.authorize(headers).map(|()| true);
        }
        if self.settings.whip_token.is_some() && self.authorize(headers).is_ok() {
            return Ok(true);
        }
        let grant = match kind {
            Kind::Whip => Grant::Whip,
            Kind::Whep => Grant::Whep,
        };
        let ticket = self.require_ticket(headers, Some(room), grant)?;
        Ok(ticket.is_none_or(|ticket| ticket.grants(Grant::Turn)))
    }

    /// May this PATCH or DELETE act on a session? Its URL holds the
    /// session's token, which is what proves it (RFC 9725 §4.7.1): with
    /// tickets nothing else is asked, so a ticket that expires during a
    /// session stops nothing; without, the `--whip-token` when one is set.
    fn authorize_session(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.requires_tickets() {
            return Ok(());
        }
        self.authorize(headers)
    }

    /// Checks `Authorization: Bearer` against `--whip-token`, when one is set.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.settings.whip_token else {
            return Ok(());
        };
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        match presented {
            Some(token) if bool::from(token.as_bytes().ct_eq(expected.expose().as_bytes())) => {
                Ok(())
            }
            Some(_) => Err(ApiError::unauthorized(
                "the bearer token is not this server's WHIP token",
            )),
            None => Err(ApiError::unauthorized(
                "this server needs Authorization: Bearer <its WHIP token>",
            )),
        }
    }

    /// `POST /{kind}/{room}[/{peer}]`: join, offer, wait for the answer.
    async fn create_session<B>(
        &self,
        request: Request<B>,
        kind: Kind,
        room: Name,
        peer: Option<Name>,
    ) -> Result<Reply, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let turn_allowed = self.authorize_offer(request.headers(), &room, kind)?;
        expect_media_type(request.headers(), media::SDP, "an SDP offer")?;
        let body = self.read_body(request).await?;
        let offer = std::str::from_utf8(&body)
            .ok()
            .filter(|sdp| sdp.starts_with("v=0"))
            .ok_or_else(|| ApiError::bad_request("the body is not an SDP offer (v=0 …)"))?
            .to_owned();

        let session = Name::parse(&format!("{}-{}", kind.word(), random_id()))
            .expect("a word and a URL-safe id form a name");
        let token = Token::generate();
        let me = Credentials {
            room: room.clone(),
            peer: session.clone(),
            token: Some(token.clone()),
            may_claim: true,
        };
        let joined = self.store.poll(poll(&me, 0, None, Duration::ZERO)).await?;
        let guard = LeaveOnDrop {
            store: self.store.clone(),
            session: Some(me.clone()),
        };
        // A session that cannot go on leaves before the reply, so the room
        // holds nothing of it by the time the client reads the error.
        let (target, answer) = match self.offer_to_peer(&me, kind, peer, joined, offer).await {
            Ok(answered) => answered,
            Err(error) => {
                let _ = self.store.leave(me).await;
                guard.disarm();
                return Err(error);
            }
        };
        guard.disarm();

        let location = format!(
            "/{}/{room}/{target}/{session}/{}",
            kind.word(),
            token.expose()
        );
        let mut reply = Response::new(Full::new(Bytes::from(answer)));
        *reply.status_mut() = StatusCode::CREATED;
        let headers = reply.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(media::SDP));
        headers.insert(
            LOCATION,
            // Relative (RFC 9725 §4.2 allows it), so it holds through proxies.
            HeaderValue::from_str(&location).map_err(|_| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "unprintable location")
            })?,
        );
        headers.insert(ETAG, etag_of(&session));
        headers.insert(
            ACCEPT_PATCH,
            HeaderValue::from_static(media::TRICKLE_ICE_SDPFRAG),
        );
        for link in self.ice_server_links(&session, turn_allowed) {
            headers.append(LINK, link);
        }
        Ok(reply)
    }

    /// Finds the peer the offer is for, sends it, and waits for its answer.
    async fn offer_to_peer(
        &self,
        me: &Credentials,
        kind: Kind,
        peer: Option<Name>,
        joined: crate::store::Polled,
        offer: String,
    ) -> Result<(Name, String), ApiError> {
        let room = &me.room;
        let present = match joined.messages.first().map(|m| RoomEvent::parse(&m.data)) {
            Some(Some(RoomEvent::Peers { peers })) => peers,
            _ => Vec::new(),
        };
        let target = match peer {
            Some(peer) if present.contains(&peer) => peer,
            Some(peer) => {
                return Err(ApiError::not_found(format!(
                    "peer {peer} is not in room {room}: open the page there first"
                )));
            }
            None => match &present[..] {
                [only] => only.clone(),
                [] => {
                    return Err(ApiError::not_found(format!(
                        "room {room} is empty: open the page there first"
                    )));
                }
                _ => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "room {room} holds {} peers: name one, /{}/{room}/PEER",
                            present.len(),
                            kind.word()
                        ),
                    ));
                }
            },
        };
        let description = Description {
            kind: "offer".into(),
            sdp: offer,
            trickle: Some(false),
        };
        self.send_to_peer(me, &target, to_payload(&description)?)
            .await?;

        let answer = self
            .wait_for_answer(me, &target, joined.next, joined.epoch.clone())
            .await?;
        Ok((target, answer))
    }

    /// Sends `data` from the session to its peer; a peer that has left is a 404.
    async fn send_to_peer(
        &self,
        me: &Credentials,
        peer: &Name,
        data: crate::wire::Payload,
    ) -> Result<(), ApiError> {
        self.store
            .send(SendRequest {
                sender: me.clone(),
                to: Some(peer.clone()),
                messages: vec![data],
                idempotency_key: None,
            })
            .await
            .map(drop)
            .map_err(|e| match e {
                StoreError::NoSuchPeer { .. } => {
                    ApiError::not_found(format!("peer {peer} has left room {}", me.room))
                }
                other => other.into(),
            })
    }

    /// Polls the session's mailbox until `target` answers, it leaves, or
    /// `--whip-timeout` passes.
    async fn wait_for_answer(
        &self,
        me: &Credentials,
        target: &Name,
        mut since: u64,
        mut epoch: Arc<str>,
    ) -> Result<String, ApiError> {
        let timeout = self.settings.whip_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            if wait.is_zero() {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "peer {target} did not answer within {timeout:?}; the session has left the room"
                    ),
                ));
            }
            let polled = self.store.poll(poll(me, since, Some(&epoch), wait)).await?;
            for message in &polled.messages {
                if message.from.as_ref() == Some(target) {
                    if let Ok(description) = serde_json::from_str::<Description>(message.data.get())
                        && description.kind == "answer"
                    {
                        // Acknowledge what was read, so the mailbox starts empty.
                        let _ = self
                            .store
                            .poll(poll(me, polled.next, Some(&polled.epoch), Duration::ZERO))
                            .await;
                        return Ok(description.sdp);
                    }
                } else if let Some(RoomEvent::Leave { peer, .. }) = RoomEvent::parse(&message.data)
                    && &peer == target
                {
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("peer {target} left the room before it answered"),
                    ));
                }
            }
            since = polled.next;
            epoch = polled.epoch.clone();
        }
    }

    /// `Link: <url>; rel="ice-server"` for each ICE server `/config` would
    /// serve, with a TURN credential minted for this session (RFC 9725 §4.6).
    fn ice_server_links(&self, session: &Name, turn_allowed: bool) -> Vec<HeaderValue> {
        let mut servers = self.settings.ice_servers.clone();
        if let Some(turn) = self.settings.turn.as_ref().filter(|_| turn_allowed)
            && let Ok(minted) =
                serde_json::to_value(turn.mint(Some(session.as_str()), SystemTime::now()))
        {
            servers.push(minted);
        }
        let mut links = Vec::new();
        for server in &servers {
            let urls: Vec<&str> = match &server["urls"] {
                serde_json::Value::String(url) => vec![url.as_str()],
                serde_json::Value::Array(urls) => urls.iter().filter_map(|u| u.as_str()).collect(),
                _ => Vec::new(),
            };
            let mut params = String::new();
            if let (Some(user), Some(credential)) =
                (server["username"].as_str(), server["credential"].as_str())
            {
                params = format!(
                    "; username=\"{user}\"; credential=\"{credential}\"; credential-type=\"password\""
                );
            }
            for url in urls {
                let link = format!("<{url}>; rel=\"ice-server\"{params}");
                // A quote or a control character would break the header:
                // such a server is left out rather than sent garbled.
                if !link.contains('\\')
                    && let Ok(value) = HeaderValue::from_str(&link)
                {
                    links.push(value);
                }
            }
        }
        links
    }

    /// `PATCH` on a session: relay trickled candidates to the peer.
    async fn patch_session<B>(&self, request: Request<B>, target: Target) -> Result<Reply, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let Target::Session {
            room,
            peer,
            session,
            token,
        } = target
        else {
            unreachable!("routed on a session path");
        };
        self.authorize_session(request.headers())?;
        // RFC 9725 makes If-Match the client's duty, not a reason to lose
        // its candidates: players that never keep the 201's ETag (npm's
        // whip-whep WHEPClient) trickle without it, and a trickle-only
        // fragment changes nothing that a stale tag could clash with. A
        // restart is asked for with If-Match: "*" (refused below).
        match request.headers().get(IF_MATCH).map(HeaderValue::as_bytes) {
            None => {}
            Some(b"*") => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ICE restarts through PATCH are not supported: DELETE the session and POST a new offer",
                ));
            }
            Some(tag) if tag != etag_of(&session).as_bytes() => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "If-Match is not this session's ETag",
                ));
            }
            Some(_) => {}
        }
        expect_media_type(
            request.headers(),
            media::TRICKLE_ICE_SDPFRAG,
            "a trickle-ice-sdpfrag",
        )?;
        let body = self.read_body(request).await?;
        let fragment = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("the fragment is not UTF-8 text"))?;
        let candidates = parse_sdpfrag(fragment)?;
        let me = Credentials {
            room,
            peer: session,
            token: Some(token),
            may_claim: true,
        };
        self.touch_session(&me).await?;
        for ice in candidates {
            let message = Candidate {
                kind: "candidate".into(),
                ice,
            };
            self.send_to_peer(&me, &peer, to_payload(&message)?).await?;
        }
        let mut reply = Response::new(Full::default());
        *reply.status_mut() = StatusCode::NO_CONTENT;
        reply.headers_mut().insert(ETAG, etag_of(&me.peer));
        Ok(reply)
    }

    /// Keeps a live session alive and empties its mailbox; a session that
    /// has expired is not brought back (404).
    async fn touch_session(&self, me: &Credentials) -> Result<(), ApiError> {
        let first = self
            .store
            .poll(poll(me, 0, None, Duration::ZERO))
            .await
            .map_err(session_error)?;
        if first.issued_token.is_some() {
            // This poll created it anew: the session was gone.
            let _ = self.store.leave(me.clone()).await;
            return Err(no_such_session());
        }
        self.store
            .poll(poll(me, first.next, Some(&first.epoch), Duration::ZERO))
            .await
            .map_err(session_error)?;
        Ok(())
    }

    /// `DELETE` on a session: it leaves the room, and the page ends the call.
    async fn delete_session(&self, headers: &HeaderMap, target: Target) -> Result<Reply, ApiError> {
        let Target::Session {
            room,
            session,
            token,
            ..
        } = target
        else {
            unreachable!("routed on a session path");
        };
        self.authorize_session(headers)?;
        let me = Credentials {
            room,
            peer: session,
            token: Some(token),
            may_claim: true,
        };
        let left = self.store.leave(me).await.map_err(session_error)?;
        if !left {
            return Err(no_such_session());
        }
        Ok(Response::new(Full::default()))
    }
}

/// A session's token is its resource's secret: a wrong one is a 404, as if
/// the resource were not there, rather than a hint that it is.
fn session_error(error: StoreError) -> ApiError {
    match error {
        StoreError::TokenMismatch { .. } | StoreError::TokenMissing { .. } => no_such_session(),
        other => other.into(),
    }
}

/// The 404 of a session that is gone, or whose token is not the one given.
fn no_such_session() -> ApiError {
    ApiError::not_found("no such session: it was deleted or has expired")
}

fn poll(me: &Credentials, since: u64, epoch: Option<&Arc<str>>, wait: Duration) -> PollRequest {
    PollRequest {
        reader: me.clone(),
        since,
        epoch: epoch.map(|e| Box::from(&**e)),
        wait,
    }
}

/// `OPTIONS`: what the resource accepts (RFC 9725 §4.2, §4.3).
fn options(target: &Target) -> Reply {
    let mut reply = Response::new(Full::default());
    *reply.status_mut() = StatusCode::NO_CONTENT;
    let headers = reply.headers_mut();
    headers.insert(
        hyper::header::ALLOW,
        HeaderValue::from_static(target.allowed_methods()),
    );
    match target {
        Target::Endpoint { .. } => {
            headers.insert(ACCEPT_POST, HeaderValue::from_static(media::SDP))
        }
        Target::Session { .. } => headers.insert(
            ACCEPT_PATCH,
            HeaderValue::from_static(media::TRICKLE_ICE_SDPFRAG),
        ),
    };
    reply
}

fn expect_media_type(headers: &HeaderMap, wanted: &str, what: &str) -> Result<(), ApiError> {
    match body_media_type(headers) {
        Some(media_type) if media_type == wanted => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {} is not accepted here: send {what} as {wanted}",
                other.map_or_else(|| "(none)".to_owned(), |t| format!("{t:?}"))
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let endpoint = parse_path("/whip/room1/alice").unwrap().unwrap();
        assert_eq!(endpoint.0, Kind::Whip);
        assert!(matches!(endpoint.1, Target::Endpoint { peer: Some(_), .. }));
        let bare = parse_path("/whep/room1").unwrap().unwrap();
        assert!(matches!(bare.1, Target::Endpoint { peer: None, .. }));
        let token = Token::generate();
        let session = format!("/whip/r/alice/whip-abc/{}", token.expose());
        assert!(matches!(
            parse_path(&session).unwrap().unwrap().1,
            Target::Session { .. }
        ));
        assert!(parse_path("/whip/r/a/b").unwrap().is_err(), "a short token");
        assert!(parse_path("/whip/a%20b").unwrap().is_err());
        assert!(parse_path("/signal").is_none());
    }
}
