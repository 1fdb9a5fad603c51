//! The ticket flags' share of the configuration: the keys a server checks
//! tickets with, read from their files, and `signal-relay ticket`, which
//! signs one with the same secret so an operator can invite from a shell.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::parse_duration;
use crate::name::Name;
use crate::ticket::{Grant, TicketClaims, TicketIssuer, TicketKeys, TicketSecret, split_kid};

/// Where tickets' keys come from: the flags both the server and
/// `signal-relay ticket` read.
#[derive(Debug, Clone, Default, Args)]
pub struct TicketKeyFlags {
    /// File holding an HS256 secret join tickets are signed with (at least
    /// 32 bytes; surrounding whitespace ignored), as `[KID=]PATH`: KID is
    /// matched against a ticket's `kid`. Repeatable, for rotation. Any
    /// ticket key makes a ticket required to join a room, get TURN
    /// credentials and offer over WHIP/WHEP.
    #[arg(
        long = "ticket-secret-file",
        env = "SIGNAL_TICKET_SECRET_FILE",
        value_name = "[KID=]PATH",
        value_delimiter = ','
    )]
    pub secret_files: Vec<String>,

    /// An HS256 ticket secret itself (visible in `ps`: prefer the file);
    /// never logged, hidden from --help.
    #[arg(long = "ticket-secret", env = "SIGNAL_TICKET_SECRET", value_name = "SECRET", hide_env_values = true, value_parser = TicketSecret::new)]
    pub secret: Option<TicketSecret>,

    /// File holding a PEM public key tickets are signed with (ES256, ES384,
    /// EdDSA, RS256..RS512, PS256..PS512, by the key's kind), as
    /// `[KID=]PATH`. Repeatable.
    #[arg(
        long = "ticket-public-key-file",
        env = "SIGNAL_TICKET_PUBLIC_KEY_FILE",
        value_name = "[KID=]PATH",
        value_delimiter = ','
    )]
    pub public_key_files: Vec<String>,

    /// The audience (`aud`) a ticket must name; unchecked when not given.
    #[arg(
        long = "ticket-audience",
        env = "SIGNAL_TICKET_AUDIENCE",
        value_name = "AUD"
    )]
    pub audience: Option<String>,
}

impl TicketKeyFlags {
    /// The keys, read from their files; `None` when no key is given (rooms
    /// are open to anyone who reaches the server).
    pub fn keys(&self) -> Result<Option<Arc<TicketKeys>>, String> {
        let mut keys = TicketKeys::new(self.audience.clone());
        if let Some(secret) = &self.secret {
            keys.add_secret(None, secret)?;
        }
        for arg in &self.secret_files {
            let (kid, secret) = read_secret(arg)?;
            keys.add_secret(kid, &secret)?;
        }
        for arg in &self.public_key_files {
            let (kid, path) = split_kid(arg);
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --ticket-public-key-file {path}: {e}"))?;
            keys.add_public_key_pem(kid, &pem)
                .map_err(|e| format!("--ticket-public-key-file {path}: {e}"))?;
        }
        Ok((!keys.is_empty()).then(|| Arc::new(keys)))
    }

    /// The secret `signal-relay ticket` signs with: `--ticket-secret`, else
    /// the first `--ticket-secret-file` (the newest, in a rotation).
    fn issuer(&self) -> Result<TicketIssuer, String> {
        if let Some(secret) = &self.secret {
            return TicketIssuer::new(None, secret);
        }
        let Some(arg) = self.secret_files.first() else {
            return Err(
                "signing a ticket needs the server's HS256 secret: give --ticket-secret-file PATH (or SIGNAL_TICKET_SECRET_FILE)"
                    .into(),
            );
        };
        let (kid, secret) = read_secret(arg)?;
        TicketIssuer::new(kid, &secret)
    }
}

fn read_secret(arg: &str) -> Result<(Option<String>, TicketSecret), String> {
    let (kid, path) = split_kid(arg);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --ticket-secret-file {path}: {e}"))?;
    let secret = TicketSecret::new(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok((kid, secret))
}

/// `signal-relay ticket`: print a join ticket, or an invite link.
#[derive(Debug, Clone, Args)]
pub struct TicketCommand {
    /// The room the ticket admits to.
    #[arg(long, value_parser = parse_name)]
    pub room: Name,

    /// The only peer name its holder may claim (any, when not given).
    #[arg(long, value_parser = parse_name)]
    pub peer: Option<Name>,

    /// How long the ticket is valid for joining (a call that joined goes
    /// on after it): seconds, or with an ms, s, m or h suffix.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub ttl: Duration,

    /// What the holder may do: join, whip, whep, turn (repeatable, or
    /// comma-separated).
    #[arg(long = "grant", value_delimiter = ',', default_values = ["join", "turn"], value_parser = parse_grant)]
    pub grants: Vec<Grant>,

    /// Print an invite link to the page at this URL instead of the bare
    /// ticket (`https://HOST/` gives `https://HOST/?room=R#ticket=…`).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    #[command(flatten)]
    pub keys: TicketKeyFlags,
}

impl TicketCommand {
    /// The ticket (or the link) to print, signed at `now`.
    pub fn run(&self, now: SystemTime) -> Result<String, String> {
        if self.ttl < Duration::from_secs(1) {
            return Err("--ttl must be at least 1 s".into());
        }
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = TicketClaims {
            exp: now + self.ttl.as_secs(),
            iat: Some(now),
            nbf: None,
            aud: self.keys.audience.clone(),
            room: self.room.to_string(),
            peer: self.peer.as_ref().map(Name::to_string),
            grants: Some(self.grants.iter().map(|g| g.as_str().to_owned()).collect()),
        };
        let ticket = self.keys.issuer()?.issue(&claims)?;
        Ok(match &self.url {
            None => ticket,
            Some(url) => invite_link(url, &self.room, &ticket),
        })
    }
}

/// The page at `url` for `room`, with the ticket in the fragment: a
/// browser never sends a fragment, so the ticket reaches no server log and
/// no `Referer`.
pub fn invite_link(url: &str, room: &Name, ticket: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}room={room}#ticket={ticket}")
}

fn parse_name(text: &str) -> Result<Name, String> {
    Name::parse(text).map_err(|_| "a name is 1 to 64 characters of A-Z a-z 0-9 _ . -".into())
}

fn parse_grant(text: &str) -> Result<Grant, String> {
    Grant::parse(text).ok_or_else(|| "a grant is one of join, whip, whep, turn".into())
}
