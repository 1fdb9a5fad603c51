//! Every failure a client can see, as a value: a status, a message that says
//! what was wrong and how to fix it, and the headers the status calls for.
//! This is the only place errors become HTTP responses.

use std::fmt::Display;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::admission::Refusal;
use crate::store::StoreError;
use crate::ticket::{Reason, TicketRefusal};
use crate::wire::{ErrorBody, Problem, media};

/// Seconds a client should wait before retrying a 429: a recipient's
/// mailbox drains as soon as it polls, which is within one round trip.
const RETRY_FULL_MAILBOX: u32 = 1;
/// Seconds before retrying a 503: a restarting server is back in about this.
const RETRY_UNAVAILABLE: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u32>,
    pub allow: Option<&'static str>,
    /// The `WWW-Authenticate` challenge of a 401 (or of a ticket's 403).
    pub challenge: Option<HeaderValue>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            allow: None,
            challenge: None,
        }
    }

    /// A 401 that asks for a bearer token (RFC 6750).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            challenge: Some(HeaderValue::from_static("Bearer")),
            ..ApiError::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn method_not_allowed(method: impl Display, allow: &'static str) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} is not allowed here; use one of: {allow}"),
            )
        }
    }

    fn retry_after(self, seconds: u32) -> ApiError {
        ApiError {
            retry_after: Some(seconds),
            ..self
        }
    }

    /// The error as `/signal` and the other JSON endpoints send it.
    pub fn into_response(mut self) -> Response<Full<Bytes>> {
        let mut response = json_response(
            self.status,
            &ErrorBody {
                error: std::mem::take(&mut self.message),
            },
        );
        self.add_headers(&mut response);
        response
    }

    /// The error as an RFC 9457 problem, the form WHIP and WHEP clients read.
    pub fn into_problem_response(mut self) -> Response<Full<Bytes>> {
        let mut response = json_response(
            self.status,
            &Problem {
                kind: "about:blank".into(),
                title: self.status.canonical_reason().unwrap_or("Error").into(),
                status: self.status.as_u16(),
                detail: std::mem::take(&mut self.message),
            },
        );
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(media::PROBLEM));
        self.add_headers(&mut response);
        response
    }

    /// The headers the status calls for, whichever body form the error took.
    fn add_headers(&self, response: &mut Response<Full<Bytes>>) {
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(challenge) = &self.challenge {
            headers.insert(WWW_AUTHENTICATE, challenge.clone());
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        use StatusCode as S;
        use StoreError as E;
        match &error {
            E::TokenMissing { .. } => ApiError::new(
                S::FORBIDDEN,
                format!(
                    "{error}: send the X-Peer-Token header (or token= in the query) from the reply that created this peer, or pick another peer name"
                ),
            ),
            E::TokenMismatch { .. } => ApiError::new(
                S::FORBIDDEN,
                format!(
                    "{error}: use the token from the reply that created this peer, or pick another peer name"
                ),
            ),
            E::ClaimRefused { .. } => ApiError::from(TicketRefusal::missing()),
            E::NoSuchPeer { .. } => ApiError::not_found(format!(
                "{error}: it has not polled yet or has left; send without `to` to reach everyone in the room"
            )),
            E::SendToSelf => ApiError::bad_request(format!("{error}: drop `to`, or name another peer")),
            E::MailboxFull { .. } => ApiError::new(
                S::TOO_MANY_REQUESTS,
                format!(
                    "{error}: nothing was stored for anyone; retry once it has polled (see Retry-After)"
                ),
            )
            .retry_after(RETRY_FULL_MAILBOX),
            E::BacklogFull { .. } => ApiError::new(
                S::TOO_MANY_REQUESTS,
                format!(
                    "{error}: nobody else has joined yet; retry once a peer is in the room (see Retry-After)"
                ),
            )
            .retry_after(RETRY_FULL_MAILBOX),
            E::RoomFull { .. } => ApiError::new(
                S::CONFLICT,
                format!("{error}: use another room, or wait for a peer to leave"),
            ),
            E::TooManyRooms { .. } | E::TooManyParkedPolls { .. } | E::StoreFull { .. } => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                format!("{error}: retry later (see Retry-After)"),
            )
            .retry_after(RETRY_UNAVAILABLE),
            E::Unavailable => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                format!(
                    "{error}: retry after Retry-After, polls with the same cursor and sends with the same Idempotency-Key"
                ),
            )
            .retry_after(RETRY_UNAVAILABLE),
            E::ShuttingDown => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                format!("{error}: retry in a moment (see Retry-After)"),
            )
            .retry_after(RETRY_UNAVAILABLE),
        }
    }
}

/// A refused ticket as RFC 6750 §3 says: `401` with `invalid_token` for
/// what is no valid ticket for this room, `403` with `insufficient_scope`
/// for a valid one that does not allow the request.
impl From<TicketRefusal> for ApiError {
    fn from(refusal: TicketRefusal) -> ApiError {
        let (status, code) = if refusal.reason.is_insufficient_scope() {
            (StatusCode::FORBIDDEN, "insufficient_scope")
        } else {
            (StatusCode::UNAUTHORIZED, "invalid_token")
        };
        // A quoted-string may not hold `"` or `\` (RFC 6750 §3); the
        // descriptions never quote a ticket, only validated names.
        let description: String = refusal
            .description
            .chars()
            .map(|c| {
                if c == '"' || c == '\\' || !(' '..='~').contains(&c) {
                    '\''
                } else {
                    c
                }
            })
            .collect();
        let challenge = format!("Bearer error=\"{code}\", error_description=\"{description}\"");
        let fix = match refusal.reason {
            Reason::Missing => " (an invite link carries one)",
            reason if reason.is_insufficient_scope() => ": ask for a ticket that allows it",
            _ => ": ask whoever invited you for a new ticket",
        };
        ApiError {
            challenge: HeaderValue::from_str(&challenge).ok(),
            ..ApiError::new(status, format!("{}{fix}", refusal.description))
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::TooFast { retry_after } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests from your address: slow down and retry after Retry-After seconds",
            )
            .retry_after(u32::try_from(retry_after.as_secs() + 1).unwrap_or(u32::MAX)),
            Refusal::TooManyPolls { max } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "your address already holds {max} open polls: close some (one per peer is enough) and retry"
                ),
            )
            .retry_after(RETRY_UNAVAILABLE),
        }
    }
}

/// A JSON response. Serializing the types this crate replies with cannot
/// fail (plain structs, strings and already-validated raw JSON), so a
/// failure is a bug and becomes a plain 500 rather than a panic.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    json_response_sized(status, body, 128)
}

/// [`json_response`] for a body of about `size_hint` bytes, written into one
/// allocation of that size rather than grown (and copied) step by step.
pub fn json_response_sized(
    status: StatusCode,
    body: &impl Serialize,
    size_hint: usize,
) -> Response<Full<Bytes>> {
    let mut bytes = Vec::with_capacity(size_hint);
    let (status, bytes) = match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => (status, bytes),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":"the server failed to encode its reply"}"#.to_vec(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media::JSON));
    response
}
