//! A Rust client of the protocol (docs/protocol.md), used by the load
//! generator and usable by any Rust program that wants to signal.
//!
//! ```no_run
//! # async fn demo() -> Result<(), signal_relay::client::ClientError> {
//! use signal_relay::client::{Client, Peer};
//! let client = Client::new("http://127.0.0.1:3000")?;
//! let mut alice = Peer::new(&client, "demo", "alice");
//! let peers = alice.join().await?;                  // who is already in the room
//! alice.send(Some("bob"), &serde_json::json!({"type": "offer", "sdp": "v=0"})).await?;
//! let batch = alice.poll(std::time::Duration::from_secs(25)).await?;
//! for message in &batch.messages { println!("{:?}: {}", message.from, message.data.get()); }
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::token::Token;
pub use crate::wire::{Batch, Message, Receipt};
use crate::wire::{ErrorBody, HEALTH_PATH, RoomEvent, SIGNAL_PATH, header, media, query};

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP: {}", with_causes(.0))]
    Http(#[from] reqwest::Error),
    #[error("the server answered {status}: {message}")]
    Status {
        status: reqwest::StatusCode,
        message: String,
    },
    #[error("the first poll did not start with a peers event")]
    NoPeersEvent,
}

/// An error and what caused it, as one line: reqwest's own message says
/// only which request failed, its causes say why (refused, reset, timed out).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        line.push_str(": ");
        line.push_str(&inner.to_string());
        cause = inner.source();
    }
    line
}

/// A connection pool to one server, shared by any number of peers.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:3000`).
    pub fn new(base: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Client::with_http(http, base))
    }

    /// A client on a configured `reqwest::Client` (TLS roots, HTTP/2, ...).
    pub fn with_http(http: reqwest::Client, base: &str) -> Client {
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// The server's base URL, as given (without a trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /healthz`: one bare HTTP exchange, the floor under every figure.
    pub async fn health(&self) -> Result<(), ClientError> {
        let response = self
            .http
            .get(format!("{}{HEALTH_PATH}", self.base))
            .send()
            .await?;
        check(response).await.map(drop)
    }
}

/// One peer of one room: its token (offered by us, so the first request
/// is safe to retry) and its cursor.
#[derive(Debug, Clone)]
pub struct Peer {
    client: Client,
    room: String,
    name: String,
    token: String,
    /// A join ticket, for a server that requires one: presented until the
    /// name is claimed, and again after a poll finds it lost.
    ticket: Option<String>,
    claimed: bool,
    since: u64,
    epoch: Option<String>,
}

impl Peer {
    pub fn new(client: &Client, room: &str, name: &str) -> Peer {
        Peer {
            client: client.clone(),
            room: room.to_owned(),
            name: name.to_owned(),
            token: Token::generate().expose().to_owned(),
            ticket: None,
            claimed: false,
            since: 0,
            epoch: None,
        }
    }

    /// The same peer presenting a join ticket (docs/protocol.md, *Tickets*)
    /// where it claims its name: on its first requests, and on the poll
    /// after one that found the name lost (a `401`), so a retried poll
    /// rejoins.
    pub fn with_ticket(mut self, ticket: impl Into<String>) -> Peer {
        self.ticket = Some(ticket.into());
        self
    }

    /// The ticket, where this request may have to claim the name.
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.ticket {
            Some(ticket) if !self.claimed => request.bearer_auth(ticket),
            _ => request,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cursor: the `seq` of the last message received.
    pub fn since(&self) -> u64 {
        self.since
    }

    fn url(&self) -> String {
        format!(
            "{}{SIGNAL_PATH}?{}={}&{}={}",
            self.client.base,
            query::ROOM,
            self.room,
            query::PEER,
            self.name
        )
    }

    /// Joins the room (a poll that does not wait); returns the peers
    /// already there.
    pub async fn join(&mut self) -> Result<Vec<String>, ClientError> {
        let batch = self.poll(Duration::ZERO).await?;
        let first = batch.messages.first().ok_or(ClientError::NoPeersEvent)?;
        match RoomEvent::parse(&first.data) {
            Some(RoomEvent::Peers { peers }) => Ok(peers.iter().map(|p| p.to_string()).collect()),
            _ => Err(ClientError::NoPeersEvent),
        }
    }

    /// Polls from the cursor, parking up to `wait`; on success the cursor
    /// moves past the batch (acknowledging it on the next poll).
    pub async fn poll(&mut self, wait: Duration) -> Result<Batch, ClientError> {
        let mut url = format!(
            "{}&{}={}&{}={}",
            self.url(),
            query::SINCE,
            self.since,
            query::TIMEOUT,
            wait.as_secs_f64()
        );
        if let Some(epoch) = &self.epoch {
            url.push_str(&format!("&{}={epoch}", query::EPOCH));
        }
        let request = self.client.http.get(url);
        let response = self
            .authorize(request)
            .header(header::PEER_TOKEN, &self.token)
            .send()
            .await?;
        let unauthorized = response.status() == reqwest::StatusCode::UNAUTHORIZED;
        let body = check(response).await.inspect_err(|_| {
            // Our name was lost (we expired, the server restarted): the
            // next poll claims it again with the ticket.
            if unauthorized {
                self.claimed = false;
            }
        })?;
        self.claimed = true;
        let batch: Batch = serde_json::from_slice(&body).map_err(|e| ClientError::Status {
            status: reqwest::StatusCode::OK,
            message: format!("unreadable batch: {e}"),
        })?;
        self.since = batch.next;
        self.epoch = Some(batch.epoch.to_string());
        Ok(batch)
    }

    /// Sends a JSON object to `to`, or to everyone else in the room.
    pub async fn send(
        &self,
        to: Option<&str>,
        data: &impl Serialize,
    ) -> Result<Receipt, ClientError> {
        let body = serde_json::to_vec(data).map_err(|e| ClientError::Status {
            status: reqwest::StatusCode::BAD_REQUEST,
            message: format!("cannot encode the message: {e}"),
        })?;
        self.send_json(to, Bytes::from(body)).await
    }

    /// Sends an already-encoded JSON object, or an array of up to
    /// [`crate::wire::MAX_BATCH`] of them: a batch, stored as that many
    /// messages in order, all or none. ([`Peer::send`] of a slice is one.)
    pub async fn send_json(&self, to: Option<&str>, json: Bytes) -> Result<Receipt, ClientError> {
        let mut url = self.url();
        if let Some(to) = to {
            url.push_str(&format!("&{}={to}", query::TO));
        }
        let request = self.client.http.post(url);
        let response = self
            .authorize(request)
            .header(header::PEER_TOKEN, &self.token)
            .header("Content-Type", media::JSON)
            .body(json)
            .send()
            .await?;
        let body = check(response).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Status {
            status: reqwest::StatusCode::ACCEPTED,
            message: format!("unreadable receipt: {e}"),
        })
    }

    /// Leaves the room now.
    pub async fn leave(&self) -> Result<(), ClientError> {
        let response = self
            .client
            .http
            .delete(self.url())
            .header(header::PEER_TOKEN, &self.token)
            .send()
            .await?;
        check(response).await.map(drop)
    }
}

/// The body of a successful reply, or the server's error.
async fn check(response: reqwest::Response) -> Result<Bytes, ClientError> {
    let status = response.status();
    let body = response.bytes().await?;
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_slice::<ErrorBody>(&body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    Err(ClientError::Status { status, message })
}
