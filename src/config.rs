//! Command-line flags, each with an environment-variable twin (`SIGNAL_*`),
//! so the same binary is configured by hand, by systemd or by a container
//! platform without a config file. [`Config::settings`] turns them into the
//! typed [`Settings`] a server is built from; nothing else reads flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::api::whip::WhipToken;
use crate::api::{ApiSettings, Cors};
use crate::settings::{AdmissionSettings, Settings, StoreChoice, TlsSettings};
use crate::store::{Limits, RedisTarget};
use crate::turn::{TurnMinter, TurnSecret, parse_turn_url};
use crate::web::WebRoot;

mod ticket;
pub use ticket::{TicketCommand, TicketKeyFlags, invite_link};

/// Where container platforms (Cloud Run, Fly.io, Heroku, Knative) put the
/// port they route to.
pub const PORT_VARIABLE: &str = "PORT";

/// WebRTC signaling over plain HTTP long-polling, for networks where
/// WebSocket does not get through.
///
/// Durations are in seconds and may be fractional (`0.5`), or carry an `ms`
/// or `s` suffix (`500ms`).
#[derive(Debug, Clone, Parser)]
#[command(name = "signal-relay", version, about, long_about = None)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address and port to listen on; `0.0.0.0:3000` accepts other machines.
    /// Default: `0.0.0.0:$PORT` when the PORT variable is set (as container
    /// platforms do), else 127.0.0.1:3000.
    #[arg(long, env = "SIGNAL_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1) instead of plain HTTP.
    #[arg(long, env = "SIGNAL_TLS")]
    pub tls: bool,

    /// Certificate chain (PEM). With --tls, generated self-signed if missing.
    #[arg(
        long,
        env = "SIGNAL_TLS_CERT",
        value_name = "PATH",
        default_value = "ssl/server.crt"
    )]
    pub tls_cert: PathBuf,

    /// Private key (PEM). With --tls, generated if missing.
    #[arg(
        long,
        env = "SIGNAL_TLS_KEY",
        value_name = "PATH",
        default_value = "ssl/server.key"
    )]
    pub tls_key: PathBuf,

    /// Extra DNS name or IP address for a generated certificate, besides
    /// localhost, 127.0.0.1 and ::1 (repeatable, or comma-separated).
    #[arg(
        long = "tls-san",
        env = "SIGNAL_TLS_SAN",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub tls_sans: Vec<String>,

    /// Where rooms and mailboxes live: `memory` (this process only), or
    /// `redis://[USER:PASSWORD@]HOST:PORT/DB` (`rediss://` for TLS) to share
    /// them with every instance pointed at the same Redis, or
    /// `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]`
    /// (`rediss+cluster://`) for a Redis Cluster's seed nodes (see
    /// docs/scaling.md). Its value is hidden
    /// here and redacted in logs: it can carry a password.
    #[arg(
        long,
        env = "SIGNAL_STORE",
        value_name = "memory|URL",
        default_value = "memory",
        hide_env_values = true,
        hide_default_value = true,
        value_parser = parse_store
    )]
    pub store: StoreChoice,

    /// With a `rediss://` store: the CA certificate (PEM) that signed the
    /// Redis server's certificate, for a private CA. Without it the system's
    /// roots are used.
    #[arg(long, env = "SIGNAL_REDIS_CA_FILE", value_name = "PATH")]
    pub redis_ca_file: Option<PathBuf>,

    /// Serve the browser client from this folder, read on every request,
    /// instead of the copy built into the binary (for working on web/).
    #[arg(long, env = "SIGNAL_WEB_DIR", value_name = "DIR")]
    pub web_dir: Option<PathBuf>,

    /// Allow browsers on this origin to call /signal cross-origin; `*` for
    /// any (repeatable, or comma-separated). Off by default.
    #[arg(
        long = "cors-origin",
        env = "SIGNAL_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// ICE server for the browser client, served at /config: a URL
    /// (`stun:host:3478`), a JSON object with `urls`, `username` and
    /// `credential` for TURN, or a JSON array of them (repeatable). None
    /// by default, which is right on a LAN.
    #[arg(long = "ice-server", env = "SIGNAL_ICE_SERVER", value_name = "URL|JSON", value_parser = parse_ice_servers)]
    pub ice_servers: Vec<IceServers>,

    /// TURN server URL for which /config mints short-lived credentials
    /// (repeatable): `turn:HOST:3478?transport=udp`,
    /// `turn:HOST:3478?transport=tcp`, `turns:HOST:443?transport=tcp`.
    /// Needs --turn-secret or --turn-secret-file.
    #[arg(long = "turn-url", env = "SIGNAL_TURN_URL", value_name = "URL", value_delimiter = ',', value_parser = parse_turn_url)]
    pub turn_urls: Vec<String>,

    /// The TURN server's `static-auth-secret` (coturn `use-auth-secret`).
    /// Prefer --turn-secret-file: a flag's value shows in `ps`.
    #[arg(long, env = "SIGNAL_TURN_SECRET", value_name = "SECRET", hide_env_values = true, value_parser = TurnSecret::new, conflicts_with = "turn_secret_file")]
    pub turn_secret: Option<TurnSecret>,

    /// File holding the TURN secret (surrounding whitespace ignored).
    #[arg(long, env = "SIGNAL_TURN_SECRET_FILE", value_name = "PATH")]
    pub turn_secret_file: Option<PathBuf>,

    /// The longest a minted TURN credential lives; keep it short, since a
    /// leaked credential relays for anyone until it expires.
    #[arg(long, env = "SIGNAL_TURN_TTL", value_name = "SECS", default_value = "3600", value_parser = parse_duration)]
    pub turn_ttl: Duration,

    /// How long a WHIP/WHEP offer waits for the peer's answer before the
    /// request fails with 504 (the page waits for its ICE gathering first).
    #[arg(long, env = "SIGNAL_WHIP_TIMEOUT", value_name = "SECS", default_value = "15", value_parser = parse_duration)]
    pub whip_timeout: Duration,

    /// A bearer token every WHIP/WHEP request must present
    /// (`Authorization: Bearer TOKEN`); without it, anyone who can reach the
    /// server may publish to or play from a room's pages.
    #[arg(long, env = "SIGNAL_WHIP_TOKEN", value_name = "TOKEN", hide_env_values = true, value_parser = WhipToken::new)]
    pub whip_token: Option<WhipToken>,

    #[command(flatten)]
    pub tickets: TicketKeyFlags,

    /// How long a poll parks when it gives no `timeout`.
    #[arg(long, env = "SIGNAL_POLL_TIMEOUT", value_name = "SECS", default_value = "25", value_parser = parse_duration)]
    pub poll_timeout: Duration,

    /// The longest a poll may ask to park; longer requests are clamped.
    #[arg(long, env = "SIGNAL_MAX_POLL_TIMEOUT", value_name = "SECS", default_value = "60", value_parser = parse_duration)]
    pub max_poll_timeout: Duration,

    /// A peer not seen for this long leaves its room (others get `leave`).
    #[arg(long, env = "SIGNAL_PEER_TTL", value_name = "SECS", default_value = "60", value_parser = parse_duration)]
    pub peer_ttl: Duration,

    /// Largest accepted POST body, in bytes.
    #[arg(long, env = "SIGNAL_MAX_BODY", value_name = "BYTES", default_value_t = 64 * 1024)]
    pub max_body: usize,

    /// Most unacknowledged messages one mailbox holds before sends to it get 429.
    #[arg(long, env = "SIGNAL_MAILBOX_MESSAGES", value_name = "N", default_value_t = Limits::default().mailbox_messages)]
    pub mailbox_messages: usize,

    /// Most unacknowledged bytes one mailbox holds before sends to it get 429.
    #[arg(long, env = "SIGNAL_MAILBOX_BYTES", value_name = "BYTES", default_value_t = Limits::default().mailbox_bytes)]
    pub mailbox_bytes: usize,

    /// Most messages waiting in a room for its next peer.
    #[arg(long, env = "SIGNAL_BACKLOG_MESSAGES", value_name = "N", default_value_t = Limits::default().backlog_messages)]
    pub backlog_messages: usize,

    /// How long a message waits in a room for its next peer.
    #[arg(long, env = "SIGNAL_BACKLOG_AGE", value_name = "SECS", default_value = "60", value_parser = parse_duration)]
    pub backlog_age: Duration,

    /// Most peers in one room.
    #[arg(long, env = "SIGNAL_ROOM_PEERS", value_name = "N", default_value_t = Limits::default().room_peers)]
    pub room_peers: usize,

    /// Most rooms on the server.
    #[arg(long, env = "SIGNAL_MAX_ROOMS", value_name = "N", default_value_t = Limits::default().rooms)]
    pub max_rooms: usize,

    /// Bytes of undelivered messages the server holds in all, each message
    /// counted per recipient plus a fixed overhead; past it sends get 503.
    #[arg(long, env = "SIGNAL_MAX_STORED_BYTES", value_name = "BYTES", default_value_t = Limits::default().stored_bytes)]
    pub max_stored_bytes: usize,

    /// Most polls parked at once on the server; past it polls get 503.
    #[arg(long, env = "SIGNAL_MAX_PARKED_POLLS", value_name = "N", default_value_t = Limits::default().parked_polls)]
    pub max_parked_polls: usize,

    /// Requests per second one client address may make (0: no limit);
    /// past it, 429 with Retry-After. /healthz and /metrics are exempt.
    #[arg(
        long,
        env = "SIGNAL_RATE_LIMIT",
        value_name = "N",
        default_value_t = 100
    )]
    pub rate_limit: u32,

    /// Requests one client address may make in a burst above the rate.
    #[arg(
        long,
        env = "SIGNAL_RATE_BURST",
        value_name = "N",
        default_value_t = 400
    )]
    pub rate_burst: u32,

    /// Address of a reverse proxy in front of the server, whose
    /// X-Forwarded-For names the real client (repeatable). Without it the
    /// header is ignored: anyone could write it.
    #[arg(
        long = "trusted-proxy",
        env = "SIGNAL_TRUSTED_PROXY",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Polls one client address may hold open at once (0: no cap); past it, 503.
    #[arg(
        long,
        env = "SIGNAL_MAX_POLLS_PER_IP",
        value_name = "N",
        default_value_t = 1000
    )]
    pub max_polls_per_ip: usize,

    /// Open connections the server accepts; past it, new ones wait in the
    /// kernel's queue until one closes.
    #[arg(
        long,
        env = "SIGNAL_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 18_000
    )]
    pub max_connections: usize,

    /// Time a client has to send a request body, once its headers are in.
    #[arg(long, env = "SIGNAL_BODY_TIMEOUT", value_name = "SECS", default_value = "10", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Time a client has to finish the TLS handshake.
    #[arg(long, env = "SIGNAL_TLS_HANDSHAKE_TIMEOUT", value_name = "SECS", default_value = "10", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,

    /// With --tls, tell browsers to use HTTPS only for this host for a year
    /// (Strict-Transport-Security).
    #[arg(long, env = "SIGNAL_HSTS")]
    pub hsts: bool,

    /// Time a client has to send its request headers; also how long an
    /// idle connection stays open.
    #[arg(long, env = "SIGNAL_HEADER_TIMEOUT", value_name = "SECS", default_value = "10", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Threads serving connections, each an event loop that a room's
    /// connections share; one per core when not given.
    #[arg(long, env = "SIGNAL_EVENT_LOOPS", value_name = "N")]
    pub event_loops: Option<usize>,
}

/// What the binary can do besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print a join ticket signed with the ticket secret (--ticket-secret-file
    /// or SIGNAL_TICKET_SECRET_FILE), or with --url an invite link.
    Ticket(TicketCommand),
}

impl Config {
    /// The typed settings these flags describe, with `PORT` read from the
    /// environment; also reads the TURN secret file. Checks what single
    /// flags cannot express.
    pub fn settings(&self) -> Result<Settings, String> {
        let port = std::env::var(PORT_VARIABLE).ok();
        let settings = Settings {
            listen: self.listen_address(port.as_deref())?,
            tls: self.tls.then(|| TlsSettings {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                extra_sans: self.tls_sans.clone(),
                handshake_timeout: self.tls_handshake_timeout,
            }),
            store: self.store.clone(),
            redis_ca_file: self.redis_ca_file.clone(),
            api: ApiSettings {
                max_body: self.max_body,
                poll_timeout: self.poll_timeout,
                max_poll_timeout: self.max_poll_timeout,
                cors: Cors::from_origins(&self.cors_origins)?,
                web: self.web_dir.clone().map_or(WebRoot::Embedded, WebRoot::Dir),
                ice_servers: self
                    .ice_servers
                    .iter()
                    .flat_map(|servers| servers.0.iter().cloned())
                    .collect(),
                turn: self.turn_minter()?,
                body_timeout: self.body_timeout,
                hsts: self.hsts,
                whip_timeout: self.whip_timeout,
                whip_token: self.whip_token.clone(),
                tickets: self.tickets.keys()?,
            },
            limits: self.limits(),
            admission: AdmissionSettings {
                rate_limit: self.rate_limit,
                rate_burst: self.rate_burst,
                trusted_proxies: self.trusted_proxies.clone(),
                max_polls_per_ip: self.max_polls_per_ip,
            },
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            event_loops: self
                .event_loops
                .unwrap_or_else(crate::settings::one_per_core),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// `--listen` when given; else every interface on `port` (the `PORT`
    /// variable) when set, as container platforms expect; else loopback.
    pub fn listen_address(&self, port: Option<&str>) -> Result<SocketAddr, String> {
        if let Some(listen) = self.listen {
            return Ok(listen);
        }
        match port {
            None => Ok(SocketAddr::from(([127, 0, 0, 1], 3000))),
            Some(port) => port
                .trim()
                .parse::<u16>()
                .map(|port| SocketAddr::from(([0, 0, 0, 0], port)))
                .map_err(|_| format!("{PORT_VARIABLE}={port:?} is not a port number (0 to 65535)")),
        }
    }

    /// Whether the address comes from `PORT` rather than a flag.
    pub fn listens_on_port_variable(&self) -> bool {
        self.listen.is_none() && std::env::var_os(PORT_VARIABLE).is_some()
    }

    /// The TURN credential minter, when --turn-url is given; reads the
    /// secret file.
    pub fn turn_minter(&self) -> Result<Option<TurnMinter>, String> {
        let has_secret = self.turn_secret.is_some() || self.turn_secret_file.is_some();
        if !self.turn_urls.is_empty() && !has_secret {
            return Err(
                "--turn-url needs the TURN server's static-auth-secret: give --turn-secret-file PATH (or --turn-secret)"
                    .into(),
            );
        }
        if self.turn_urls.is_empty() && has_secret {
            return Err("a TURN secret without --turn-url mints nothing: add --turn-url".into());
        }
        if self.turn_ttl < Duration::from_secs(1) {
            return Err("--turn-ttl must be at least 1 s".into());
        }
        if self.turn_urls.is_empty() {
            return Ok(None);
        }
        let secret = match (&self.turn_secret, &self.turn_secret_file) {
            (Some(secret), _) => secret.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("cannot read --turn-secret-file {}: {e}", path.display())
                })?;
                TurnSecret::new(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            (None, None) => return Err("--turn-url needs --turn-secret-file".into()),
        };
        Ok(Some(TurnMinter::new(
            self.turn_urls.clone(),
            secret,
            self.turn_ttl,
        )))
    }

    /// The store's share of the configuration.
    fn limits(&self) -> Limits {
        Limits {
            peer_ttl: self.peer_ttl,
            mailbox_messages: self.mailbox_messages,
            mailbox_bytes: self.mailbox_bytes,
            backlog_messages: self.backlog_messages,
            backlog_age: self.backlog_age,
            room_peers: self.room_peers,
            rooms: self.max_rooms,
            parked_polls: self.max_parked_polls,
            stored_bytes: self.max_stored_bytes,
        }
    }
}

fn parse_store(value: &str) -> Result<StoreChoice, String> {
    if value == "memory" {
        Ok(StoreChoice::Memory)
    } else if value.starts_with("redis://")
        || value.starts_with("rediss://")
        || RedisTarget::is_cluster_url(value)
    {
        Ok(StoreChoice::Redis(value.to_owned()))
    } else {
        Err(
            "expected `memory`, a redis://HOST:PORT/DB or rediss://HOST:PORT/DB (TLS) URL, \
             or a Cluster's redis+cluster://HOST:PORT[,HOST:PORT...] (rediss+cluster:// for TLS)"
                .to_owned(),
        )
    }
}

/// The ICE servers one `--ice-server` value names, as `RTCIceServer` objects.
#[derive(Debug, Clone, PartialEq)]
pub struct IceServers(pub Vec<serde_json::Value>);

/// Parses one `--ice-server` value: a URL, an `RTCIceServer` object, or an
/// array of them; each must name `stun:`, `turn:` or `turns:` URLs.
pub fn parse_ice_servers(text: &str) -> Result<IceServers, String> {
    use serde_json::{Value, json};
    let text = text.trim();
    let servers = if text.starts_with('{') || text.starts_with('[') {
        match serde_json::from_str::<Value>(text).map_err(|e| format!("invalid JSON: {e}"))? {
            Value::Array(servers) => servers,
            server => vec![server],
        }
    } else {
        vec![json!({ "urls": text })]
    };
    let ice_url = |url: &Value| {
        url.as_str().is_some_and(|u| {
            ["stun:", "turn:", "turns:"]
                .iter()
                .any(|scheme| u.starts_with(scheme))
        })
    };
    for server in &servers {
        let valid = match server.get("urls") {
            Some(Value::Array(urls)) => !urls.is_empty() && urls.iter().all(ice_url),
            Some(url) => ice_url(url),
            None => false,
        };
        if !valid {
            return Err(format!(
                "{server} is not an ICE server: give a stun:, turn: or turns: URL, or {{\"urls\":\"turn:host:3478\",\"username\":\"u\",\"credential\":\"p\"}}"
            ));
        }
    }
    Ok(IceServers(servers))
}

/// Parses `25`, `0.5`, `2s`, `500ms`, `10m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else if let Some(h) = text.strip_suffix('h') {
        (h, 3600.0)
    } else {
        (text, 1.0)
    };
    let seconds = number
        .trim()
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 1e9);
    seconds.map(Duration::from_secs_f64).ok_or_else(|| {
        format!("{text:?} is not a duration: use seconds (25, 0.5, 2s), 500ms, 10m or 1h")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("25"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "-1", "abc", "NaN", "inf", "1e99"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ice_servers() {
        let stun = parse_ice_servers("stun:stun.example.org:3478").unwrap();
        assert_eq!(
            stun.0,
            [serde_json::json!({"urls": "stun:stun.example.org:3478"})]
        );
        let turn = parse_ice_servers(
            r#"{"urls":["turn:t.example:3478"],"username":"u","credential":"p"}"#,
        )
        .unwrap();
        assert_eq!(turn.0[0]["username"], "u");
        let both = parse_ice_servers(r#"[{"urls":"stun:a"},{"urls":"turns:b"}]"#).unwrap();
        assert_eq!(both.0.len(), 2);
        for bad in ["http://x", "{}", r#"{"urls":[]}"#, "[1]", "{nope"] {
            assert!(parse_ice_servers(bad).is_err(), "{bad}");
        }
    }

    /// The flags' defaults are written as clap strings, the typed ones in
    /// `Settings::default()`: they must be the same server.
    #[test]
    fn the_flag_defaults_are_the_typed_defaults() {
        let config = Config::parse_from(["signal-relay"]);
        let mut settings = config.settings().unwrap();
        settings.listen = config.listen_address(None).unwrap();
        assert_eq!(
            format!("{settings:?}"),
            format!("{:?}", Settings::default())
        );
    }

    #[test]
    fn the_port_variable_is_the_container_convention() {
        let config = Config::parse_from(["signal-relay"]);
        assert_eq!(
            config.listen_address(None),
            Ok("127.0.0.1:3000".parse().unwrap())
        );
        assert_eq!(
            config.listen_address(Some("8080")),
            Ok("0.0.0.0:8080".parse().unwrap())
        );
        assert!(config.listen_address(Some("http")).is_err());
        let flagged = Config::parse_from(["signal-relay", "--listen", "127.0.0.1:9"]);
        assert_eq!(
            flagged.listen_address(Some("8080")),
            Ok("127.0.0.1:9".parse().unwrap()),
            "--listen wins"
        );
    }

    #[test]
    fn the_store_url_is_hidden_from_help() {
        use clap::CommandFactory;
        let store = Config::command()
            .get_arguments()
            .find(|a| a.get_long() == Some("store"))
            .map(|a| a.is_hide_env_values_set())
            .unwrap();
        assert!(store, "SIGNAL_STORE can carry a Redis password");
    }

    #[test]
    fn inconsistent_flags_are_refused() {
        let refusal = |flags: &[&str]| {
            let config = Config::parse_from(["signal-relay"].iter().chain(flags));
            config.settings().unwrap_err()
        };
        assert!(refusal(&["--poll-timeout", "90"]).contains("--max-poll-timeout"));
        assert!(refusal(&["--max-body", "2000000"]).contains("--mailbox-bytes"));
        assert!(refusal(&["--turn-url", "turn:t:3478"]).contains("--turn-secret"));
        assert!(refusal(&["--turn-secret", "s"]).contains("--turn-url"));
        assert!(refusal(&["--hsts"]).contains("--tls"));
        let both = ["--turn-url", "turn:t:3478", "--turn-secret", "s"];
        let config = Config::parse_from(["signal-relay"].into_iter().chain(both));
        assert!(config.settings().is_ok());
        assert!(
            Config::try_parse_from(["signal-relay", "--turn-url", "stun:t:3478"]).is_err(),
            "a STUN URL cannot carry TURN credentials"
        );
    }

    #[test]
    fn the_turn_secret_comes_from_its_file() {
        let path = std::env::temp_dir().join(format!("turn-secret-{}", std::process::id()));
        std::fs::write(&path, "from-the-file\n").unwrap();
        let config = Config::parse_from([
            "signal-relay",
            "--turn-url",
            "turn:t:3478",
            "--turn-secret-file",
            path.to_str().unwrap(),
        ]);
        let minted = config.turn_minter().unwrap().unwrap();
        let direct = Config::parse_from([
            "signal-relay",
            "--turn-url",
            "turn:t:3478",
            "--turn-secret",
            "from-the-file",
        ]);
        let now = std::time::SystemTime::now();
        assert_eq!(
            minted.mint(Some("a"), now),
            direct.turn_minter().unwrap().unwrap().mint(Some("a"), now)
        );
        std::fs::remove_file(&path).unwrap();
        assert!(config.turn_minter().unwrap_err().contains("cannot read"));
    }
}
