//! The HTTP face of the store: routes, request parsing and reply formatting.
//! Everything about delivery itself is in [`crate::store`]; this module only
//! translates between HTTP and the [`Store`] interface.

mod cors;
mod error;
mod params;
pub mod request_line;
mod sdpfrag;
mod tickets;
pub mod whip;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes};
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;

pub use cors::Cors;
use error::json_response_sized;
pub use error::{ApiError, json_response};
use params::{BodyKind, PEER_TOKEN, Params, body_kind, idempotency_key};

use crate::admission::{Admission, PollSlot, Refusal};
use crate::metrics::{Metrics, StatusLabel};
use crate::name::Name;
use crate::store::{Credentials, PollRequest, Polled, SendRequest, Store, StoreError};
use crate::ticket::{Grant, TicketKeys, TicketRefusal};
use crate::token::Token;
use crate::turn::TurnMinter;
use crate::web::{self, WebRoot};
use crate::wire::{self, Description, Health, IceConfig, Left, Payload};

/// Methods `/signal` answers, for `Allow` and CORS preflight.
pub const SIGNAL_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const STATIC_METHODS: &str = "GET, HEAD";
/// A body over `--max-body` but under this is read to its end (and thrown
/// away) before the 413, so a proxy that is still sending it gets the 413
/// rather than a reset connection, which it would turn into a 502. A larger
/// one is refused at once and its connection closed.
const MAX_DRAINED_BODY: u64 = 1 << 20;
/// Deepest nesting a relayed JSON message may have. Signaling messages use
/// three or four levels; a deeply nested one would make the receiver's
/// `JSON.parse` throw on every poll of its batch, a poison message.
pub const MAX_JSON_DEPTH: usize = 64;

/// The HTTP-facing settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub max_body: usize,
    pub poll_timeout: Duration,
    pub max_poll_timeout: Duration,
    pub cors: Cors,
    /// The browser client served at `/`.
    pub web: WebRoot,
    /// `RTCIceServer` objects for the browser client, served at `/config`.
    pub ice_servers: Vec<serde_json::Value>,
    /// Mints a TURN credential into every `/config` reply, when configured.
    pub turn: Option<TurnMinter>,
    /// Time a client has to send a request body.
    pub body_timeout: Duration,
    /// Send Strict-Transport-Security (only when serving TLS).
    pub hsts: bool,
    /// How long a WHIP/WHEP POST waits for the peer's answer.
    pub whip_timeout: Duration,
    /// A bearer token every WHIP/WHEP request must present, when set.
    pub whip_token: Option<whip::WhipToken>,
    /// The keys join tickets are checked with; when set, claiming a name,
    /// a TURN credential and a WHIP/WHEP offer each need a ticket.
    pub tickets: Option<Arc<TicketKeys>>,
}

impl Default for ApiSettings {
    fn default() -> ApiSettings {
        ApiSettings {
            max_body: 64 * 1024,
            poll_timeout: Duration::from_secs(25),
            max_poll_timeout: Duration::from_secs(60),
            cors: Cors::Off,
            web: WebRoot::Embedded,
            ice_servers: Vec::new(),
            turn: None,
            body_timeout: Duration::from_secs(10),
            hsts: false,
            whip_timeout: Duration::from_secs(15),
            whip_token: None,
            tickets: None,
        }
    }
}

/// Routes requests to the store and formats its answers.
pub struct Api<S> {
    store: Arc<S>,
    settings: ApiSettings,
    metrics: Arc<Metrics>,
    admission: Arc<Admission>,
}

type Reply = Response<Full<Bytes>>;

/// A routed request. Thousands of connections hold a parked poll at once,
/// each for up to a minute, and a future is as large as its largest
/// branch: so a poll is awaited inline with nothing but its parsed
/// parameters, and every other handler is boxed (it lives for a moment,
/// and its request and body-reading state would otherwise be in every
/// parked poll's future).
enum Routed<'a> {
    /// With the ticket refusal to answer if the poll had to claim its name.
    Poll(PollRequest, Option<Box<TicketRefusal>>),
    Ready(Reply),
    Later(Pin<Box<dyn Future<Output = Reply> + Send + 'a>>),
}

/// What [`Api::finish`] needs to know of a request, taken before it is routed.
struct ReplyHeaders {
    /// An API endpoint: never cached, CORS applies.
    api: bool,
    /// Refused by admission (429/503): never cached either.
    refused: bool,
    /// A CORS preflight, and the methods it may allow.
    preflight: Option<&'static str>,
    origin: Option<HeaderValue>,
}

/// What a `GET /signal` asks for. The request itself is dropped before the
/// poll parks: its headers share hyper's read buffer.
fn poll_request<B>(request: &Request<B>, settings: &ApiSettings) -> Result<PollRequest, ApiError> {
    let params = Params::parse(request.uri().query())?;
    Ok(PollRequest {
        reader: params.credentials(request.headers())?,
        since: params.since()?,
        epoch: params.epoch()?,
        wait: params
            .timeout()?
            .unwrap_or(settings.poll_timeout)
            .min(settings.max_poll_timeout),
    })
}

impl<S: Store> Api<S> {
    pub fn new(
        store: Arc<S>,
        settings: ApiSettings,
        metrics: Arc<Metrics>,
        admission: Arc<Admission>,
    ) -> Api<S> {
        Api {
            store,
            settings,
            metrics,
            admission,
        }
    }

    /// Answers one request from `peer` (the socket's remote address).
    /// Never fails: every error is a JSON reply.
    ///
    /// Everything but the handler itself happens before the returned future
    /// is first polled, so that future holds only the routed request and
    /// the few facts the reply's headers need: a parked poll is held this
    /// way by every idle client.
    pub fn handle<B>(
        &self,
        request: Request<B>,
        peer: SocketAddr,
    ) -> impl Future<Output = Reply> + Send + '_
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // The API's replies, admitted or refused, are never cached and carry
        // CORS headers: a cross-origin page must be able to read a 429's
        // Retry-After as much as a batch.
        let method = request.method();
        let path = request.uri().path();
        let signal = path == wire::SIGNAL_PATH;
        let whip_methods = match whip::parse_path(path) {
            Some(Ok((_, target))) => Some(target.allowed_methods()),
            Some(Err(_)) => Some(whip::ENDPOINT_METHODS),
            None => None,
        };
        let api =
            signal || whip_methods.is_some() || (path == wire::CONFIG_PATH && is_read(method));
        let preflight = ((signal || whip_methods.is_some()) && method == Method::OPTIONS)
            .then(|| whip_methods.unwrap_or(SIGNAL_METHODS));
        let mut headers = ReplyHeaders {
            api,
            refused: false,
            preflight,
            origin: if api {
                Cors::origin(request.headers())
            } else {
                None
            },
        };
        let (routed, slot) = match self.admit(&request, peer) {
            Ok(slot) => (self.route(request), slot),
            Err(refusal) => {
                headers.refused = true;
                (Routed::Ready(ApiError::from(refusal).into_response()), None)
            }
        };
        async move {
            let reply = match routed {
                Routed::Poll(poll, refusal) => self
                    .receive(poll)
                    .await
                    .unwrap_or_else(|error| self.refused(error, refusal).into_response()),
                Routed::Ready(reply) => reply,
                Routed::Later(reply) => reply.await,
            };
            drop(slot);
            self.finish(reply, headers)
        }
    }

    /// Adds the headers every reply of its kind carries, and counts errors.
    fn finish(&self, mut reply: Reply, facts: ReplyHeaders) -> Reply {
        let headers = reply.headers_mut();
        if facts.api || facts.refused {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if let Some(methods) = facts.preflight {
            self.settings
                .cors
                .preflight(facts.origin.as_ref(), headers, methods);
        } else if facts.api {
            self.settings.cors.decorate(facts.origin.as_ref(), headers);
        }
        if self.settings.hsts {
            headers.insert(
                hyper::header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
        let status = reply.status();
        if status.is_client_error() || status.is_server_error() {
            self.metrics
                .rejected
                .get_or_create(&StatusLabel {
                    status: status.as_u16(),
                })
                .inc();
        }
        reply
    }

    /// Applies the client's rate limit (operators' probes exempt) and, for
    /// a poll, takes one of the client's poll slots until the reply is made.
    fn admit<B>(
        &self,
        request: &Request<B>,
        peer: SocketAddr,
    ) -> Result<Option<PollSlot>, Refusal> {
        let path = request.uri().path();
        if path == wire::HEALTH_PATH || path == wire::METRICS_PATH {
            return Ok(None);
        }
        let client = self.admission.client_ip(peer, request.headers());
        self.admission.check_rate(client)?;
        if path == wire::SIGNAL_PATH && request.method() == Method::GET {
            return self.admission.open_poll(client).map(Some);
        }
        Ok(None)
    }

    /// Parses and routes a request without awaiting anything, so that
    /// [`Api::handle`]'s future is no larger than a parked poll needs.
    fn route<'a, B>(&'a self, request: Request<B>) -> Routed<'a>
    where
        B: Body<Data = Bytes> + Send + 'a,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = request.method().clone();
        match request.uri().path() {
            wire::METRICS_PATH if is_read(&method) => Routed::Later(Box::pin(async move {
                let mut reply = Response::new(Full::new(Bytes::from(
                    self.metrics.encode(self.store.stats().await),
                )));
                reply.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                reply
            })),
            wire::CONFIG_PATH if is_read(&method) => Routed::Ready(
                self.config(request.uri().query(), request.headers())
                    .unwrap_or_else(ApiError::into_response),
            ),
            wire::SIGNAL_PATH => self.signal(request),
            wire::HEALTH_PATH if is_read(&method) => Routed::Ready(json_response(
                StatusCode::OK,
                &Health {
                    status: "ok".into(),
                },
            )),
            path if path.starts_with(wire::WHIP_PREFIX) || path.starts_with(wire::WHEP_PREFIX) => {
                match whip::parse_path(path) {
                    Some(Ok((kind, target))) => {
                        Routed::Later(Box::pin(self.whip(request, kind, target)))
                    }
                    Some(Err(error)) => Routed::Ready(error.into_problem_response()),
                    None => unreachable!("the prefix was checked"),
                }
            }
            _ if is_read(&method) => Routed::Later(Box::pin(async move {
                web::serve(&self.settings.web, request.uri().path(), request.headers())
                    .await
                    .unwrap_or_else(ApiError::into_response)
            })),
            path => {
                let error = if [
                    wire::HEALTH_PATH,
                    wire::CONFIG_PATH,
                    wire::METRICS_PATH,
                    "/",
                ]
                .contains(&path)
                {
                    ApiError::method_not_allowed(&method, STATIC_METHODS)
                } else {
                    ApiError::not_found(format!(
                        "no endpoint {method} {path}: the API is GET, POST and DELETE /signal"
                    ))
                };
                Routed::Ready(error.into_response())
            }
        }
    }

    fn signal<'a, B>(&'a self, request: Request<B>) -> Routed<'a>
    where
        B: Body<Data = Bytes> + Send + 'a,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let answer = |result: Result<Reply, ApiError>| {
            Routed::Ready(result.unwrap_or_else(ApiError::into_response))
        };
        match *request.method() {
            Method::GET => match poll_request(&request, &self.settings) {
                Ok(mut poll) => {
                    let refusal = self.admit_claim(request.headers(), &mut poll.reader);
                    Routed::Poll(poll, refusal)
                }
                Err(error) => answer(Err(error)),
            },
            Method::POST => Routed::Later(Box::pin(async move {
                self.send(request)
                    .await
                    .unwrap_or_else(ApiError::into_response)
            })),
            Method::DELETE => Routed::Later(Box::pin(async move {
                self.leave(request)
                    .await
                    .unwrap_or_else(ApiError::into_response)
            })),
            Method::OPTIONS => {
                let mut reply = Response::new(Full::default());
                *reply.status_mut() = StatusCode::NO_CONTENT;
                reply.headers_mut().insert(
                    hyper::header::ALLOW,
                    HeaderValue::from_static(SIGNAL_METHODS),
                );
                answer(Ok(reply))
            }
            ref other => answer(Err(ApiError::method_not_allowed(other, SIGNAL_METHODS))),
        }
    }

    /// `GET /config[?peer=NAME]`: the ICE servers, with a TURN credential
    /// minted for this caller. Minting is a few microseconds of HMAC and is
    /// covered by the per-address rate limit like every other request; when
    /// the server requires tickets, it needs one with the `turn` grant.
    fn config(&self, query: Option<&str>, headers: &hyper::HeaderMap) -> Result<Reply, ApiError> {
        let mut ice_servers = self.settings.ice_servers.clone();
        if let Some(turn) = &self.settings.turn {
            let label = Params::parse(query)?.peer_label()?;
            let ticket = self.require_ticket(headers, None, Grant::Turn)?;
            // A ticket's peer is the holder's name: it labels the credential.
            let label = ticket.and_then(|t| t.peer).or(label);
            let minted = turn.mint(label.as_ref().map(Name::as_str), SystemTime::now());
            ice_servers.push(serde_json::to_value(minted).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot mint: {e}"),
                )
            })?);
        }
        Ok(json_response(StatusCode::OK, &IceConfig { ice_servers }))
    }

    /// `GET /signal`: long-poll the peer's mailbox.
    async fn receive(&self, poll: PollRequest) -> Result<Reply, StoreError> {
        let Polled {
            batch,
            issued_token,
        } = self.store.poll(poll).await?;
        let mut reply = json_response_sized(StatusCode::OK, &batch, batch.encoded_len_hint());
        attach_token(&mut reply, issued_token.as_ref());
        Ok(reply)
    }

    /// `POST /signal`: deliver a message.
    async fn send<B>(&self, request: Request<B>) -> Result<Reply, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let params = Params::parse(request.uri().query())?;
        if params.leave()? {
            // The body, if any, is not read: a beacon's is of no interest.
            return self.leave_as(params.credentials(request.headers())?).await;
        }
        let mut sender = params.credentials(request.headers())?;
        let refusal = self.admit_claim(request.headers(), &mut sender);
        let to = params.to()?;
        let kind = body_kind(request.headers())?;
        let sdp_type = match kind {
            BodyKind::Sdp => Some(params.sdp_type()?),
            BodyKind::Json => None,
        };
        let idempotency_key = idempotency_key(request.headers())?;
        // It borrows the query, which goes with the request.
        drop(params);
        let body = self.read_body(request).await?;
        let messages = match sdp_type {
            Some(sdp_type) => vec![wrap_sdp(sdp_type, &body)?],
            None => json_messages(&body)?,
        };
        let sent = self
            .store
            .send(SendRequest {
                sender,
                to,
                messages,
                idempotency_key,
            })
            .await
            .map_err(|error| self.refused(error, refusal))?;
        let mut reply = json_response(StatusCode::ACCEPTED, &sent.receipt);
        attach_token(&mut reply, sent.issued_token.as_ref());
        Ok(reply)
    }

    /// `DELETE /signal` (or `POST /signal?…&leave=1`): leave the room now
    /// rather than after the TTL.
    async fn leave<B>(&self, request: Request<B>) -> Result<Reply, ApiError> {
        let params = Params::parse(request.uri().query())?;
        self.leave_as(params.credentials(request.headers())?).await
    }

    async fn leave_as(&self, peer: Credentials) -> Result<Reply, ApiError> {
        let left = self.store.leave(peer).await?;
        Ok(json_response(StatusCode::OK, &Left { left }))
    }

    async fn read_body<B>(&self, request: Request<B>) -> Result<Bytes, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let limit = self.settings.max_body;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than {limit} bytes: send less (SDP and candidates fit easily)"
                ),
            )
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_DRAINED_BODY) {
            return Err(too_large());
        }
        let deadline = self.settings.body_timeout;
        let reading = async {
            let mut body = std::pin::pin!(request.into_body());
            let mut kept = Vec::new();
            let mut seen = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    ApiError::bad_request(format!("the request body could not be read: {e}"))
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                seen += data.len() as u64;
                if seen <= limit as u64 {
                    kept.extend_from_slice(&data);
                } else if seen > MAX_DRAINED_BODY {
                    break;
                }
            }
            if seen > limit as u64 {
                Err(too_large())
            } else {
                Ok(Bytes::from(kept))
            }
        };
        match tokio::time::timeout(deadline, reading).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {deadline:?}: send it at once, it is small"
                ),
            )),
        }
    }
}

fn is_read(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

fn attach_token(reply: &mut Reply, token: Option<&Token>) {
    // Tokens are a URL-safe alphabet, always a valid header value.
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(t.expose()).ok()) {
        reply.headers_mut().insert(PEER_TOKEN, value);
    }
}

/// A JSON body: one object, or an array of 1 to [`wire::MAX_BATCH`]
/// objects sent as that many messages. Each is kept as the sender's text.
fn json_messages(body: &[u8]) -> Result<Vec<Payload>, ApiError> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Ok(vec![json_object(body)?]);
    }
    let batch: Vec<Box<RawValue>> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if batch.is_empty() || batch.len() > wire::MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch is an array of 1 to {} JSON objects; this one has {}",
            wire::MAX_BATCH,
            batch.len()
        )));
    }
    batch
        .into_iter()
        .map(|raw| checked_object(raw, "each message of a batch must be a JSON object"))
        .collect()
}

/// A JSON body that is one object, kept as the sender's text.
fn json_object(body: &[u8]) -> Result<Payload, ApiError> {
    let raw: Box<RawValue> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    checked_object(
        raw,
        "the body must be one JSON object, like {\"type\":\"offer\",\"sdp\":\"...\"}, or an array of them",
    )
}

/// `raw` as a message, if it is an object nested no deeper than allowed.
fn checked_object(raw: Box<RawValue>, not_an_object: &str) -> Result<Payload, ApiError> {
    if !raw.get().starts_with('{') {
        return Err(ApiError::bad_request(not_an_object));
    }
    if bracket_count(raw.get()) > MAX_JSON_DEPTH && nesting_depth(raw.get()) > MAX_JSON_DEPTH {
        return Err(ApiError::bad_request(format!(
            "the body nests deeper than {MAX_JSON_DEPTH} levels; signaling messages need a handful"
        )));
    }
    Ok(Arc::from(raw))
}

/// Opening brackets anywhere in the text, strings included: a bound on
/// [`nesting_depth`] that is several times cheaper to take (no state from one
/// byte to the next), so a message with a handful of brackets, which is
/// every signaling message, is never scanned byte by byte.
fn bracket_count(json: &str) -> usize {
    // `{` is 0x7b and `[` is 0x5b: they differ only in bit 5.
    let is_opening = |b: u8| u8::from(b | 0x20 == b'{');
    // Fixed-size chunks counted in byte-sized lanes (a chunk's count fits
    // one), so the compiler counts 16 bytes per vector instruction: four
    // times faster than a plain filter and count, fifteen times faster than
    // the scan (measured on 300-byte messages).
    let mut chunks = json.as_bytes().chunks_exact(64);
    let mut count = 0;
    for chunk in &mut chunks {
        let in_chunk = chunk.iter().fold(0u8, |n, &b| n + is_opening(b));
        count += usize::from(in_chunk);
    }
    let rest = chunks.remainder().iter();
    count + rest.map(|&b| usize::from(is_opening(b))).sum::<usize>()
}

/// Deepest bracket nesting of valid JSON text, without recursion.
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Raw SDP becomes `{"type": T, "sdp": BODY}`, the shape an
/// `RTCSessionDescription` has, so the receiver cannot tell it from a JS peer.
fn wrap_sdp(sdp_type: &str, body: &[u8]) -> Result<Payload, ApiError> {
    let sdp = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the SDP body is not UTF-8 text"))?;
    if sdp.trim().is_empty() {
        return Err(ApiError::bad_request("the SDP body is empty"));
    }
    let description = Description {
        kind: sdp_type.to_owned(),
        sdp: sdp.to_owned(),
        trickle: None,
    };
    to_payload(&description)
}

/// A wire type as a message payload.
fn to_payload(data: &impl Serialize) -> Result<Payload, ApiError> {
    let raw = serde_json::value::to_raw_value(data).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the message: {e}"),
        )
    })?;
    Ok(Arc::from(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_ignores_brackets_in_strings() {
        assert_eq!(nesting_depth(r#"{}"#), 1);
        assert_eq!(nesting_depth(r#"{"a":[{"b":1}],"c":{}}"#), 3);
        assert_eq!(nesting_depth(r#"{"s":"[[[{{{\"]]]"}"#), 1);
        assert_eq!(nesting_depth(&("[".repeat(70) + &"]".repeat(70))), 70);
    }

    #[test]
    fn bracket_count_counts_every_opening_bracket() {
        // Across whole chunks and the remainder, inside strings and out.
        let text = format!(
            r#"{{"a":[{{}}],"s":"{}{}"}}"#,
            "[{".repeat(40),
            "x".repeat(100)
        );
        assert_eq!(bracket_count(&text), 3 + 80);
        assert_eq!(bracket_count(""), 0);
        assert_eq!(bracket_count("]}]}"), 0);
    }

    #[test]
    fn only_real_nesting_is_refused() {
        let object = |text: String| checked_object(RawValue::from_string(text).unwrap(), "");
        // Over the bracket bound but shallow: the scan has the last word.
        let shallow = format!(r#"{{"s":"{}"}}"#, "[".repeat(200));
        assert!(object(shallow).is_ok());
        let deep = format!(r#"{{"a":{}{}}}"#, "[".repeat(70), "]".repeat(70));
        assert!(object(deep).is_err());
    }

    #[tokio::test]
    async fn a_closing_store_answers_503_with_retry_after() {
        use crate::store::{Limits, MemoryStore};
        let store = Arc::new(MemoryStore::new(Limits::default()));
        let api = Api::new(
            store.clone(),
            ApiSettings::default(),
            Arc::default(),
            Arc::new(Admission::new(0, 0, Vec::new(), 0)),
        );
        store.close();
        let request = Request::get("/signal?room=r&peer=a")
            .body(Full::<Bytes>::default())
            .unwrap();
        let reply = api.handle(request, "127.0.0.1:9".parse().unwrap()).await;
        assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.headers()["retry-after"], "2");
        assert_eq!(reply.headers()["cache-control"], "no-store");
        let body = reply.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("shutting down"));
    }

    /// Every idle client holds a parked poll's future for up to a minute;
    /// 18 000 of them are allowed at once. 3 088 bytes before the routing
    /// was split from the awaiting; now the poll and the reply's facts.
    #[test]
    fn a_parked_polls_future_stays_small() {
        use crate::store::{Limits, MemoryStore};
        let api = Api::new(
            Arc::new(MemoryStore::new(Limits::default())),
            ApiSettings::default(),
            Arc::default(),
            Arc::new(Admission::new(0, 0, Vec::new(), 0)),
        );
        let request = Request::get("/signal?room=r&peer=a")
            .body(Full::<Bytes>::default())
            .unwrap();
        let parked = api.handle(request, "127.0.0.1:9".parse().unwrap());
        let size = std::mem::size_of_val(&parked);
        assert!(size <= 1280, "a parked poll's future is {size} bytes");
    }

    #[test]
    fn json_bodies() {
        assert!(json_object(br#" {"type":"offer"} "#).is_ok());
        assert!(json_object(b"[]").is_err());
        let batch = json_messages(br#" [{"n":1}, {"n":2}] "#).unwrap();
        assert_eq!(
            batch.iter().map(|m| m.get()).collect::<Vec<_>>(),
            [r#"{"n":1}"#, r#"{"n":2}"#]
        );
        assert!(json_messages(b"[]").is_err());
        assert!(json_messages(br#"[{"n":1}, 2]"#).is_err());
        assert!(json_messages(br#"[{"n":1}, [{}]]"#).is_err());
        let many = format!("[{}]", vec!["{}"; wire::MAX_BATCH + 1].join(","));
        assert!(json_messages(many.as_bytes()).is_err());
        let most = format!("[{}]", vec!["{}"; wire::MAX_BATCH].join(","));
        assert_eq!(
            json_messages(most.as_bytes()).unwrap().len(),
            wire::MAX_BATCH
        );
        let deep = format!("[{{\"a\":{}{}}}]", "[".repeat(64), "]".repeat(64));
        assert!(json_messages(deep.as_bytes()).is_err());
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(64), "]".repeat(64));
        assert!(json_object(deep.as_bytes()).is_err());
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(63), "]".repeat(63));
        assert!(json_object(ok.as_bytes()).is_ok());
    }
}
