//! Short-lived TURN credentials, minted per caller of `/config`.
//!
//! A TURN server in front of networks that block UDP is only safe to hand
//! out if its password is not the same for every visitor forever. The TURN
//! REST convention (draft-uberti-behave-turn-rest, implemented by coturn as
//! `use-auth-secret` + `static-auth-secret`) solves it with a secret shared
//! between this server and the TURN server, and nothing else:
//!
//! - username = `<unix expiry>:<id>`, so the TURN server can refuse it once
//!   the expiry has passed without any state of its own;
//! - credential = base64(HMAC-SHA1(secret, username)), which the TURN server
//!   recomputes from the username to check the password.
//!
//! `<id>` is the peer name the caller gives (`/config?peer=alice`), or a
//! random 8-character id when it gives none: it only labels the allocation
//! in the TURN server's logs and is not trusted for anything.
//!
//! The secret lives in [`TurnSecret`], whose `Debug` is redacted, and leaves
//! this process only as the HMAC of a username.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use crate::token::random_id;

/// The `static-auth-secret` shared with the TURN server.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(Box<[u8]>);

impl TurnSecret {
    /// A secret from its text; surrounding whitespace (a file's trailing
    /// newline) is not part of it, as coturn does not read it either.
    pub fn new(text: &str) -> Result<TurnSecret, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("the TURN secret is empty".into());
        }
        Ok(TurnSecret(trimmed.as_bytes().into()))
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TurnSecret(<redacted>)")
    }
}

/// What it takes to mint credentials: the TURN URLs, the shared secret and
/// the longest a credential may live.
#[derive(Debug, Clone)]
pub struct TurnMinter {
    urls: Vec<String>,
    secret: TurnSecret,
    ttl: Duration,
}

/// One `RTCIceServer` with a minted credential, as served at `/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnCredential {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

impl TurnMinter {
    pub fn new(urls: Vec<String>, secret: TurnSecret, ttl: Duration) -> TurnMinter {
        TurnMinter { urls, secret, ttl }
    }

    /// A credential for `id` that expires `ttl` after `now`.
    pub fn mint(&self, id: Option<&str>, now: SystemTime) -> TurnCredential {
        let expiry = now
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let id = match id {
            Some(id) => id.to_owned(),
            None => random_id(),
        };
        let username = format!("{expiry}:{id}");
        TurnCredential {
            urls: self.urls.clone(),
            credential: credential(&self.secret, &username),
            username,
        }
    }
}

/// base64(HMAC-SHA1(secret, username)): what coturn computes to check it.
/// SHA-1 is what the convention and coturn fix; as an HMAC it is not broken.
fn credential(secret: &TurnSecret, username: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &secret.0);
    BASE64.encode(ring::hmac::sign(&key, username.as_bytes()).as_ref())
}

/// A `--turn-url` value: a `turn:` or `turns:` URL.
pub fn parse_turn_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let host = text
        .strip_prefix("turn:")
        .or_else(|| text.strip_prefix("turns:"));
    match host {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
            Ok(text.to_owned())
        }
        _ => Err(format!(
            "{text:?} is not a TURN URL: give turn:HOST:3478?transport=udp, turn:HOST:3478?transport=tcp or turns:HOST:443?transport=tcp"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned to an independent computation of what coturn checks:
    /// HMAC-SHA1 keyed with the secret, over the whole username.
    #[test]
    fn credential_is_base64_hmac_sha1_of_the_username() {
        let secret = TurnSecret::new("north").unwrap();
        // printf '1700000000:alice' | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(
            credential(&secret, "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
    }

    #[test]
    fn username_is_expiry_then_id() {
        let minter = TurnMinter::new(
            vec!["turn:t.example:3478?transport=tcp".into()],
            TurnSecret::new("s3cret\n").unwrap(),
            Duration::from_secs(600),
        );
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let minted = minter.mint(Some("bob"), now);
        assert_eq!(minted.username, "1000600:bob");
        assert_eq!(minted.urls, ["turn:t.example:3478?transport=tcp"]);
        assert_eq!(
            minted.credential,
            credential(&TurnSecret::new("s3cret").unwrap(), "1000600:bob")
        );
        let anonymous = minter.mint(None, now);
        let (expiry, id) = anonymous.username.split_once(':').unwrap();
        assert_eq!(expiry, "1000600");
        assert_eq!(id.len(), 8);
        assert_ne!(minter.mint(None, now).username, anonymous.username);
    }

    #[test]
    fn the_secret_is_not_printed() {
        let secret = TurnSecret::new("hunter2-turn").unwrap();
        let minter = TurnMinter::new(vec![], secret.clone(), Duration::from_secs(1));
        assert!(!format!("{secret:?} {minter:?}").contains("hunter2"));
        assert!(TurnSecret::new(" \n").is_err());
    }

    #[test]
    fn turn_urls() {
        for good in [
            "turn:h:3478?transport=udp",
            "turn:h:3478?transport=tcp",
            "turns:h:443?transport=tcp",
        ] {
            assert_eq!(parse_turn_url(good).as_deref(), Ok(good));
        }
        for bad in ["stun:h", "turn:", "http://h", "turn:a b"] {
            assert!(parse_turn_url(bad).is_err(), "{bad}");
        }
    }
}
