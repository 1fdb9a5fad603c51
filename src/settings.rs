//! What a server is built from, as typed values with the defaults the
//! command line has. [`crate::Config`] (the flags) produces a [`Settings`];
//! a program that embeds the server, and the tests and benches, build one
//! directly:
//!
//! ```no_run
//! # async fn demo() -> Result<(), signal_relay::server::StartError> {
//! use signal_relay::{Server, Settings};
//! let server = Server::bind(Settings {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     ..Settings::default()
//! })
//! .await?;
//! println!("listening on {}", server.local_addr());
//! server.run(std::future::pending()).await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::api::ApiSettings;
use crate::store::{Limits, RedisTarget};

/// Everything [`crate::Server::bind`] needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) when set.
    pub tls: Option<TlsSettings>,
    pub store: StoreChoice,
    /// With a `rediss://` store: the CA (PEM) that signed Redis's
    /// certificate, when it is not in the system's roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Routes, bodies, the page, ICE servers.
    pub api: ApiSettings,
    /// Rooms, mailboxes and their bounds.
    pub limits: Limits,
    /// Per-address rate limit and poll cap.
    pub admission: AdmissionSettings,
    /// Open connections accepted at once; past it, new ones wait in the
    /// kernel's queue.
    pub max_connections: usize,
    /// Time to send request headers; also how long an idle connection stays.
    pub header_timeout: Duration,
    /// Threads that serve connections, each an event loop of its own that
    /// a room's connections share (see [`crate::event_loops`]).
    pub event_loops: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            tls: None,
            store: StoreChoice::Memory,
            redis_ca_file: None,
            api: ApiSettings::default(),
            limits: Limits::default(),
            admission: AdmissionSettings::default(),
            max_connections: 18_000,
            header_timeout: Duration::from_secs(10),
            event_loops: one_per_core(),
        }
    }
}

/// As many event loops as the process may run threads at once.
pub fn one_per_core() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Certificate, key, and how a missing pair is generated.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Certificate chain (PEM); generated self-signed if missing.
    pub cert: PathBuf,
    /// Private key (PEM); generated if missing.
    pub key: PathBuf,
    /// Names for a generated certificate besides localhost, 127.0.0.1, ::1.
    pub extra_sans: Vec<String>,
    pub handshake_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            cert: PathBuf::from("ssl/server.crt"),
            key: PathBuf::from("ssl/server.key"),
            extra_sans: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Who may make how many requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Requests per second per client address (0: no limit).
    pub rate_limit: u32,
    /// Requests a client may make in a burst above the rate.
    pub rate_burst: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// Polls one client address may hold open (0: no cap).
    pub max_polls_per_ip: usize,
}

impl Default for AdmissionSettings {
    fn default() -> AdmissionSettings {
        AdmissionSettings {
            rate_limit: 100,
            rate_burst: 400,
            trusted_proxies: Vec::new(),
            max_polls_per_ip: 1000,
        }
    }
}

/// Which [`crate::store::Store`] the server runs on.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum StoreChoice {
    #[default]
    Memory,
    /// A `redis://` or `rediss://` (TLS) URL, which may carry a user and
    /// password (`redis://user:password@host:port/db`, Redis 6 ACLs); or a
    /// Cluster's seed nodes, `redis+cluster://[user:password@]h1:p1,h2:p2`
    /// (`rediss+cluster://` for TLS).
    Redis(String),
}

/// The URL's password never reaches a log line or `{:?}`.
impl fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreChoice::Memory => f.write_str("Memory"),
            StoreChoice::Redis(url) => write!(f, "Redis({})", redact_url(url)),
        }
    }
}

/// A URL with the password of its user-info part (`user:PASSWORD@`)
/// replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rfind('@').map(|at| (&rest[..at], &rest[at..])) {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl Settings {
    /// Checks the combinations that single values cannot express. The
    /// messages name the flags, which is how a person sets them.
    pub fn validate(&self) -> Result<(), String> {
        let api = &self.api;
        let limits = &self.limits;
        if api.poll_timeout > api.max_poll_timeout {
            return Err(format!(
                "--poll-timeout ({:?}) must not exceed --max-poll-timeout ({:?})",
                api.poll_timeout, api.max_poll_timeout
            ));
        }
        if api.max_body > limits.mailbox_bytes {
            return Err(format!(
                "--max-body ({}) must not exceed --mailbox-bytes ({}), or a largest message could never be delivered",
                api.max_body, limits.mailbox_bytes
            ));
        }
        if limits.backlog_messages > limits.mailbox_messages {
            return Err(format!(
                "--backlog-messages ({}) must not exceed --mailbox-messages ({}): the backlog goes into one mailbox",
                limits.backlog_messages, limits.mailbox_messages
            ));
        }
        if api.max_body > limits.stored_bytes {
            return Err("--max-body must not exceed --max-stored-bytes".into());
        }
        if limits.room_peers < 2 {
            return Err("--room-peers must be at least 2".into());
        }
        for (flag, value) in [
            ("--mailbox-messages", limits.mailbox_messages),
            ("--max-rooms", limits.rooms),
            ("--max-body", api.max_body),
            ("--max-connections", self.max_connections),
            ("--event-loops", self.event_loops),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        let tls_store =
            matches!(&self.store, StoreChoice::Redis(url) if RedisTarget::is_tls_url(url));
        if self.redis_ca_file.is_some() && !tls_store {
            return Err("--redis-ca-file needs a rediss:// or rediss+cluster:// --store".into());
        }
        if api.hsts && self.tls.is_none() {
            return Err("--hsts only makes sense with --tls".into());
        }
        let handshake = self.tls.as_ref().map(|tls| tls.handshake_timeout);
        for (flag, value) in [
            ("--peer-ttl", Some(limits.peer_ttl)),
            ("--header-timeout", Some(self.header_timeout)),
            ("--body-timeout", Some(api.body_timeout)),
            ("--whip-timeout", Some(api.whip_timeout)),
            ("--tls-handshake-timeout", handshake),
        ] {
            if value.is_some_and(|v| v.is_zero()) {
                return Err(format!("{flag} must be more than zero"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_consistent() {
        assert_eq!(Settings::default().validate(), Ok(()));
    }

    #[test]
    fn passwords_are_redacted() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
            ("redis://user:pw@h:1/0", "redis://user:***@h:1/0"),
            ("rediss://user:p%40w@h/0", "rediss://user:***@h/0"),
            ("redis://user@h:1", "redis://user@h:1"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        let store = StoreChoice::Redis("redis://u:hunter2@h:1/0".into());
        assert!(!format!("{store:?}").contains("hunter2"));
    }
}
