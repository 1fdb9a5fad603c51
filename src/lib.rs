//! WebRTC signaling over plain HTTP long-polling, for networks where
//! WebSocket does not get through.
//!
//! Peers swap SDP offers, answers and ICE candidates through per-peer
//! mailboxes: `POST /signal` to send, `GET /signal` with a cursor to
//! long-poll. The wire protocol is specified in `docs/protocol.md`.
//!
//! - [`wire`]: the protocol's paths, parameters, headers and bodies, declared once;
//! - [`store`]: rooms, mailboxes and delivery rules, behind the [`store::Store`] trait;
//! - [`api`]: HTTP routes, parsing and formatting over a store;
//! - [`server`]: sockets, TLS, connections and graceful shutdown;
//! - [`settings`]: the typed settings a server is built from, with defaults;
//! - [`ticket`]: join tickets (JWTs) that admit to a room, checked with the operator's keys;
//! - [`config`]: command-line flags and their environment variables, which produce settings;
//! - `client` (with the `client` feature): a Rust client of the protocol,
//!   on reqwest; the load generator (`--features loadgen`) is built on it.
//!   The server binary links neither.

pub mod admission;
pub mod api;
#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod event_loops;
pub mod metrics;
pub mod name;
pub mod server;
pub mod settings;
pub mod store;
pub mod ticket;
pub mod tls;
pub mod token;
pub mod turn;
pub mod web;
pub mod wire;

pub use config::Config;
pub use server::Server;
pub use settings::Settings;
