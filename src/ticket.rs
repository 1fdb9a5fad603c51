//! Join tickets: a JWT (RFC 7519, compact JWS) that the operator's own
//! backend issues and this server checks, so that only the invited join a
//! room, publish or play with WHIP/WHEP, or get a TURN credential.
//!
//! A ticket is checked with keys the server is given at start
//! ([`TicketKeys`]); checking needs no shared state, so any instance of a
//! deployment accepts any ticket, in any order. The algorithm is fixed by
//! the key, never by the token: an HMAC secret verifies HS256 only, an EC
//! key ES256 (P-256) or ES384 (P-384), an Ed25519 key EdDSA, an RSA key the
//! RSA signatures. `alg: none`, and HS256 "signed" with a public key's PEM,
//! are refused before any signature is computed. The claims are declared
//! once, in [`TicketClaims`], for the checker and for the issuer behind
//! `signal-relay ticket`.
//!
//! A ticket is needed where a name is claimed, not on every request: once a
//! peer holds its name its token carries it, so a ticket that expires
//! mid-call hangs nothing up (docs/protocol.md, *Tickets*).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::name::Name;

/// The largest ticket accepted. A ticket with a room, a peer and four
/// grants signed with RS512 is under 1 KiB; a bound keeps a client from
/// making the server decode and hash whatever fits in a request head.
pub const MAX_TICKET_BYTES: usize = 4096;

/// Clock skew forgiven on `exp`, `nbf` and `iat`, between the issuer's
/// clock and this server's.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// The shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least
/// as long as the hash, 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// What a ticket lets its holder do, named in its `grants` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    /// Claim a peer name in the room through `/signal`.
    Join,
    /// Publish to a page of the room with WHIP.
    Whip,
    /// Play a page of the room with WHEP.
    Whep,
    /// Get a TURN credential from `/config`.
    Turn,
}

impl Grant {
    pub const ALL: [Grant; 4] = [Grant::Join, Grant::Whip, Grant::Whep, Grant::Turn];
    /// What a ticket without a `grants` claim may do: make a call.
    pub const DEFAULT: [Grant; 2] = [Grant::Join, Grant::Turn];

    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Join => "join",
            Grant::Whip => "whip",
            Grant::Whep => "whep",
            Grant::Turn => "turn",
        }
    }

    pub fn parse(text: &str) -> Option<Grant> {
        Grant::ALL.into_iter().find(|grant| grant.as_str() == text)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The claims of a ticket, as the issuer writes them and the server reads
/// them. Times are Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// Expiry: required.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Checked against `--ticket-audience` when the server has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The room the ticket admits to.
    pub room: String,
    /// The only peer name the holder may claim, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// `join`, `whip`, `whep`, `turn`; [`Grant::DEFAULT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<String>>,
}

/// A ticket whose signature, times and audience have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub room: Name,
    pub peer: Option<Name>,
    grants: u8,
}

impl Ticket {
    pub fn grants(&self, grant: Grant) -> bool {
        self.grants & grant.bit() != 0
    }

    /// Whether the ticket lets its holder do `grant` in `room`, as `peer`
    /// when the request names one.
    pub fn admits(
        &self,
        room: &Name,
        peer: Option<&Name>,
        grant: Grant,
    ) -> Result<(), TicketRefusal> {
        if self.room != *room {
            return Err(TicketRefusal::new(
                Reason::WrongRoom,
                format!("the ticket is for room {}, not {room}", self.room),
            ));
        }
        if let (Some(only), Some(peer)) = (&self.peer, peer)
            && only != peer
        {
            return Err(TicketRefusal::new(
                Reason::WrongPeer,
                format!("the ticket admits peer {only} only, not {peer}"),
            ));
        }
        if !self.grants(grant) {
            return Err(TicketRefusal::new(
                Reason::GrantMissing,
                format!("the ticket does not grant {}", grant.as_str()),
            ));
        }
        Ok(())
    }
}

/// Why a ticket was refused, by kind: the metric's label and which RFC 6750
/// error it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Missing,
    Oversized,
    Malformed,
    Unsigned,
    Algorithm,
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    Audience,
    WrongRoom,
    WrongPeer,
    GrantMissing,
}

impl Reason {
    /// The `reason` label of `signal_ticket_refusals_total`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Oversized => "oversized",
            Reason::Malformed => "malformed",
            Reason::Unsigned => "unsigned",
            Reason::Algorithm => "algorithm",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Audience => "audience",
            Reason::WrongRoom => "wrong_room",
            Reason::WrongPeer => "wrong_peer",
            Reason::GrantMissing => "grant_missing",
        }
    }

    /// A valid ticket that does not allow this (RFC 6750 `insufficient_scope`,
    /// 403), rather than one that is no ticket at all (`invalid_token`, 401).
    pub fn is_insufficient_scope(self) -> bool {
        matches!(self, Reason::WrongPeer | Reason::GrantMissing)
    }
}

/// A refused ticket: what kind of refusal, and a description for the
/// client that never quotes the ticket itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRefusal {
    pub reason: Reason,
    pub description: String,
}

impl TicketRefusal {
    pub fn new(reason: Reason, description: impl Into<String>) -> TicketRefusal {
        TicketRefusal {
            reason,
            description: description.into(),
        }
    }

    pub fn missing() -> TicketRefusal {
        TicketRefusal::new(
            Reason::Missing,
            "this server admits ticket holders only: send Authorization: Bearer TICKET",
        )
    }
}

impl fmt::Display for TicketRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// An HS256 secret given on the command line or in the environment
/// (`--ticket-secret`); its `Debug` is redacted. Surrounding whitespace (a
/// file's trailing newline) is not part of it.
#[derive(Clone)]
pub struct TicketSecret(Box<[u8]>);

impl TicketSecret {
    pub fn new(text: &str) -> Result<TicketSecret, String> {
        let trimmed = text.trim();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "a ticket secret must be at least {MIN_SECRET_BYTES} bytes (256 bits, RFC 7518 §3.2); this one has {}: make one with `head -c 32 /dev/urandom | base64`",
                trimmed.len()
            ));
        }
        Ok(TicketSecret(trimmed.as_bytes().into()))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketSecret(<redacted>)")
    }
}

/// One key tickets may be signed with.
struct TicketKey {
    /// Matched against a ticket's `kid` when it names one.
    kid: Option<String>,
    key: DecodingKey,
    /// What this key verifies, decided by its kind, never by a token.
    algorithms: Vec<Algorithm>,
}

/// The keys a server checks tickets with, and the audience it expects.
pub struct TicketKeys {
    keys: Vec<TicketKey>,
    audience: Option<String>,
}

/// Keys are never printed: only how many there are, their ids and kinds.
impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{:?}@{}", k.algorithms, k.kid.as_deref().unwrap_or("-")))
            .collect();
        f.debug_struct("TicketKeys")
            .field("keys", &keys)
            .field("audience", &self.audience)
            .finish()
    }
}

/// The part of a ticket's JOSE header read before any key is chosen.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl TicketKeys {
    /// No keys yet; `audience` is `--ticket-audience`.
    pub fn new(audience: Option<String>) -> TicketKeys {
        TicketKeys {
            keys: Vec::new(),
            audience,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// An HS256 secret (`--ticket-secret-file`, `--ticket-secret`); its
    /// length was checked when it was read.
    pub fn add_secret(&mut self, kid: Option<String>, secret: &TicketSecret) -> Result<(), String> {
        let key = DecodingKey::from_secret(secret.expose())
            .map_err(|e| format!("unusable secret: {e}"))?;
        self.keys.push(TicketKey {
            kid,
            key,
            algorithms: vec![Algorithm::HS256],
        });
        Ok(())
    }

    /// A public key in PEM (SubjectPublicKeyInfo, or PKCS#1 for RSA): EC
    /// P-256 (ES256) or P-384 (ES384), Ed25519 (EdDSA), or RSA (RS256,
    /// RS384, RS512, PS256, PS384, PS512).
    pub fn add_public_key_pem(&mut self, kid: Option<String>, pem: &[u8]) -> Result<(), String> {
        if std::str::from_utf8(pem).is_ok_and(|text| text.contains("PRIVATE KEY")) {
            return Err(
                "this is a private key: give the server the public key only (openssl pkey -pubout)"
                    .into(),
            );
        }
        let (key, algorithms) = if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            let der = pem_body(pem).unwrap_or_default();
            let algorithm = if contains(&der, &P384_OID) {
                Algorithm::ES384
            } else if contains(&der, &P256_OID) {
                Algorithm::ES256
            } else {
                return Err("an EC key must be on P-256 (ES256) or P-384 (ES384)".into());
            };
            (key, vec![algorithm])
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (key, vec![Algorithm::EdDSA])
        } else if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            let rsa = [
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ];
            (key, rsa.to_vec())
        } else {
            return Err(
                "not a PEM public key of a kind tickets use (EC P-256/P-384, Ed25519 or RSA)"
                    .into(),
            );
        };
        self.keys.push(TicketKey {
            kid,
            key,
            algorithms,
        });
        Ok(())
    }

    /// Checks a ticket's size, form, signature, times and audience, at
    /// `now`. What it admits to is [`Ticket::admits`]'s to say.
    pub fn check(&self, ticket: &str, now: SystemTime) -> Result<Ticket, TicketRefusal> {
        if ticket.len() > MAX_TICKET_BYTES {
            return Err(TicketRefusal::new(
                Reason::Oversized,
                format!("the ticket is larger than {MAX_TICKET_BYTES} bytes"),
            ));
        }
        let malformed =
            |what: &str| TicketRefusal::new(Reason::Malformed, format!("the ticket is {what}"));
        let header = ticket
            .split('.')
            .next()
            .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .and_then(|bytes| serde_json::from_slice::<RawHeader>(&bytes).ok())
            .ok_or_else(|| {
                malformed("not a JWT (three base64url parts: header.payload.signature)")
            })?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TicketRefusal::new(
                Reason::Unsigned,
                "the ticket is unsigned (alg none): tickets must be signed",
            ));
        }
        let Ok(algorithm) = header.alg.parse::<Algorithm>() else {
            return Err(TicketRefusal::new(
                Reason::Algorithm,
                "the ticket's alg is not a JWS algorithm this server knows",
            ));
        };
        let named: Vec<&TicketKey> = match &header.kid {
            Some(kid) => {
                let named: Vec<&TicketKey> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .collect();
                if named.is_empty() {
                    return Err(TicketRefusal::new(
                        Reason::UnknownKid,
                        "the ticket's kid names no key of this server",
                    ));
                }
                named
            }
            None => self.keys.iter().collect(),
        };
        let candidates: Vec<&TicketKey> = named
            .into_iter()
            .filter(|k| k.algorithms.contains(&algorithm))
            .collect();
        if candidates.is_empty() {
            return Err(TicketRefusal::new(
                Reason::Algorithm,
                format!(
                    "the ticket is signed with {algorithm:?}, which no key of this server verifies"
                ),
            ));
        }
        let mut refusal = TicketRefusal::new(
            Reason::BadSignature,
            "the ticket's signature does not verify",
        );
        for key in candidates {
            match self.check_with(key, ticket, now) {
                Ok(ticket) => return Ok(ticket),
                // Another key with the same algorithm may have signed it
                // (a rotation without kids).
                Err(r) if r.reason == Reason::BadSignature => {}
                Err(r) => refusal = r,
            }
        }
        Err(refusal)
    }

    fn check_with(
        &self,
        key: &TicketKey,
        ticket: &str,
        now: SystemTime,
    ) -> Result<Ticket, TicketRefusal> {
        let mut validation = Validation::new(key.algorithms[0]);
        validation.algorithms = key.algorithms.clone();
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<TicketClaims>(ticket, &key.key, &validation)
            .map_err(|error| refusal_of(error.kind()))?
            .claims;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        // jsonwebtoken reads the clock itself for exp and nbf; iat is ours
        // to honour: a ticket issued in the future is not valid yet.
        if claims.iat.is_some_and(|iat| iat > now + LEEWAY.as_secs()) {
            return Err(TicketRefusal::new(
                Reason::NotYetValid,
                "the ticket's iat is in the future: check the issuer's clock",
            ));
        }
        ticket_of(claims)
    }
}

/// The claims as a [`Ticket`]: names valid, grants known.
fn ticket_of(claims: TicketClaims) -> Result<Ticket, TicketRefusal> {
    let malformed = |what: String| TicketRefusal::new(Reason::Malformed, what);
    let room = Name::parse(&claims.room)
        .map_err(|_| malformed("the ticket's room is not a room name".into()))?;
    let peer = claims
        .peer
        .map(|peer| Name::parse(&peer))
        .transpose()
        .map_err(|_| malformed("the ticket's peer is not a peer name".into()))?;
    let grants = match claims.grants {
        None => Grant::DEFAULT.iter().fold(0, |bits, g| bits | g.bit()),
        Some(names) => names.iter().try_fold(0, |bits, name| {
            Grant::parse(name).map(|g| bits | g.bit()).ok_or_else(|| {
                malformed("the ticket names a grant other than join, whip, whep and turn".into())
            })
        })?,
    };
    Ok(Ticket { room, peer, grants })
}

fn refusal_of(kind: &ErrorKind) -> TicketRefusal {
    let (reason, description) = match kind {
        ErrorKind::InvalidSignature => (
            Reason::BadSignature,
            "the ticket's signature does not verify",
        ),
        ErrorKind::ExpiredSignature => (Reason::Expired, "the ticket has expired"),
        ErrorKind::ImmatureSignature => (Reason::NotYetValid, "the ticket is not valid yet (nbf)"),
        ErrorKind::InvalidAudience => {
            (Reason::Audience, "the ticket is for another audience (aud)")
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
            (Reason::Audience, "the ticket names no audience (aud)")
        }
        ErrorKind::MissingRequiredClaim(_) => (Reason::Malformed, "the ticket has no expiry (exp)"),
        ErrorKind::InvalidAlgorithm => (
            Reason::Algorithm,
            "the ticket's alg is not one this server's key verifies",
        ),
        _ => (
            Reason::Malformed,
            "the ticket is not a well-formed JWT with a room and an expiry",
        ),
    };
    TicketRefusal::new(reason, description)
}

// DER of the curve OIDs in an EC SubjectPublicKeyInfo.
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The DER inside a PEM block.
fn pem_body(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Issues HS256 tickets with a secret the server also checks with: what
/// `signal-relay ticket` runs, and what a backend in Rust would.
pub struct TicketIssuer {
    key: EncodingKey,
    kid: Option<String>,
}

impl TicketIssuer {
    pub fn new(kid: Option<String>, secret: &TicketSecret) -> Result<TicketIssuer, String> {
        let key = EncodingKey::from_secret(secret.expose())
            .map_err(|e| format!("unusable secret: {e}"))?;
        Ok(TicketIssuer { key, kid })
    }

    /// The compact JWS of `claims`.
    pub fn issue(&self, claims: &TicketClaims) -> Result<String, String> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| format!("cannot sign: {e}"))
    }
}

/// Reads a `[KID=]PATH` key argument: the key id before the first `=`, or
/// none.
pub fn split_kid(arg: &str) -> (Option<String>, &str) {
    match arg.split_once('=') {
        Some((kid, path)) if !kid.is_empty() && !kid.contains('/') => (Some(kid.to_owned()), path),
        _ => (None, arg),
    }
}

/// The ticket of an `Authorization: Bearer` header value, if it is one.
pub fn bearer(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, token) = text.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn secret() -> TicketSecret {
        TicketSecret::new(SECRET).unwrap()
    }

    fn claims(room: &str) -> TicketClaims {
        TicketClaims {
            exp: now_secs() + 600,
            room: room.into(),
            ..TicketClaims::default()
        }
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn keys() -> TicketKeys {
        let mut keys = TicketKeys::new(None);
        keys.add_secret(None, &secret()).unwrap();
        keys
    }

    #[test]
    fn an_issued_ticket_checks() {
        let issuer = TicketIssuer::new(None, &secret()).unwrap();
        let ticket = issuer.issue(&claims("demo")).unwrap();
        let checked = keys().check(&ticket, SystemTime::now()).unwrap();
        let demo = Name::parse("demo").unwrap();
        assert_eq!(checked.room, demo);
        assert!(checked.admits(&demo, None, Grant::Join).is_ok());
        assert!(checked.admits(&demo, None, Grant::Turn).is_ok());
        let whip = checked.admits(&demo, None, Grant::Whip).unwrap_err();
        assert_eq!(whip.reason, Reason::GrantMissing);
        let other = checked
            .admits(&Name::parse("other").unwrap(), None, Grant::Join)
            .unwrap_err();
        assert_eq!(other.reason, Reason::WrongRoom);
    }

    #[test]
    fn refusals_say_why() {
        let issuer = TicketIssuer::new(None, &secret()).unwrap();
        let keys = keys();
        let reason = |ticket: &str| keys.check(ticket, SystemTime::now()).unwrap_err().reason;
        assert_eq!(reason("garbage"), Reason::Malformed);
        let expired = TicketClaims {
            exp: now_secs() - 120,
            ..claims("demo")
        };
        assert_eq!(reason(&issuer.issue(&expired).unwrap()), Reason::Expired);
        let early = TicketClaims {
            nbf: Some(now_secs() + 120),
            ..claims("demo")
        };
        assert_eq!(reason(&issuer.issue(&early).unwrap()), Reason::NotYetValid);
        let future = TicketClaims {
            iat: Some(now_secs() + 120),
            ..claims("demo")
        };
        assert_eq!(reason(&issuer.issue(&future).unwrap()), Reason::NotYetValid);
        let other = TicketIssuer::new(
            None,
            &TicketSecret::new("another secret of thirty-two bytes!!").unwrap(),
        )
        .unwrap();
        let forged = other.issue(&claims("demo")).unwrap();
        assert_eq!(reason(&forged), Reason::BadSignature);
        let named = TicketIssuer::new(Some("k2".into()), &secret()).unwrap();
        assert_eq!(
            reason(&named.issue(&claims("demo")).unwrap()),
            Reason::UnknownKid
        );
        let unknown_grant = TicketClaims {
            grants: Some(vec!["admin".into()]),
            ..claims("demo")
        };
        assert_eq!(
            reason(&issuer.issue(&unknown_grant).unwrap()),
            Reason::Malformed
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"room":"demo","exp":9999999999}"#)
        );
        assert_eq!(reason(&none), Reason::Unsigned);
        assert_eq!(reason(&"a".repeat(MAX_TICKET_BYTES + 1)), Reason::Oversized);
    }

    #[test]
    fn the_leeway_forgives_a_little_skew() {
        let issuer = TicketIssuer::new(None, &secret()).unwrap();
        let just_expired = TicketClaims {
            exp: now_secs() - 5,
            ..claims("demo")
        };
        let ticket = issuer.issue(&just_expired).unwrap();
        assert!(keys().check(&ticket, SystemTime::now()).is_ok());
    }

    #[test]
    fn the_audience_is_checked_when_configured() {
        let mut keys = TicketKeys::new(Some("signal.example".into()));
        keys.add_secret(None, &secret()).unwrap();
        let issuer = TicketIssuer::new(None, &secret()).unwrap();
        let reason = |claims: TicketClaims| {
            keys.check(&issuer.issue(&claims).unwrap(), SystemTime::now())
                .err()
                .map(|r| r.reason)
        };
        assert_eq!(reason(claims("demo")), Some(Reason::Audience));
        let wrong = TicketClaims {
            aud: Some("other.example".into()),
            ..claims("demo")
        };
        assert_eq!(reason(wrong), Some(Reason::Audience));
        let right = TicketClaims {
            aud: Some("signal.example".into()),
            ..claims("demo")
        };
        assert_eq!(reason(right), None);
    }

    #[test]
    fn short_secrets_and_private_keys_are_refused() {
        let mut keys = TicketKeys::new(None);
        assert!(TicketSecret::new("short").is_err());
        let private =
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert!(
            keys.add_public_key_pem(None, private)
                .unwrap_err()
                .contains("private")
        );
        assert!(keys.add_public_key_pem(None, b"not a pem").is_err());
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"bearer  abc "), Some("abc"));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(
            split_kid("k1=/etc/key.pem"),
            (Some("k1".into()), "/etc/key.pem")
        );
        assert_eq!(split_kid("/etc/a=b.pem"), (None, "/etc/a=b.pem"));
        assert_eq!(split_kid("key.pem"), (None, "key.pem"));
    }

    #[test]
    fn debug_prints_no_secret() {
        let shown = format!("{:?}", keys());
        assert!(!shown.contains("0123456789"), "{shown}");
    }
}
