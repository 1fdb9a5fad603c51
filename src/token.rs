//! Peer tokens: the secret that proves a request speaks for a peer.
//!
//! The first request that creates a peer's mailbox either offers a token or
//! is given a fresh one (128 random bits); every later request as that peer
//! must present it. Offering one's own token makes that first request safe to
//! retry: a lost reply does not lose the secret.

use std::fmt;

use subtle::ConstantTimeEq;

/// Shortest token a client may offer: shorter ones are too easy to guess.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token a client may offer.
pub const MAX_TOKEN_LEN: usize = 128;

/// A peer's secret. `Debug` never prints it, so it cannot leak into logs.
///
/// Deliberately not `PartialEq`: `==` would compare with an early exit, so
/// the only way to compare two tokens is [`Token::matches`].
#[derive(Clone)]
pub struct Token(Box<str>);

/// Why an offered token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be {MIN_TOKEN_LEN}..={MAX_TOKEN_LEN} characters of letters, digits, '_', '.', '~' and '-'"
)]
pub struct TokenError;

impl Token {
    /// A fresh token: 128 bits from the OS random source, as 32 hex digits.
    pub fn generate() -> Token {
        let bytes: [u8; 16] = random_bytes();
        let mut hex = String::with_capacity(32);
        for b in bytes {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        Token(hex.into())
    }

    /// Validates a token offered by a client. The alphabet is URL-safe, so the
    /// same token works in the `X-Peer-Token` header and in `token=`.
    pub fn parse(s: &str) -> Result<Token, TokenError> {
        let len_ok = (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&s.len());
        let chars_ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'~' | b'-'));
        if len_ok && chars_ok {
            Ok(Token(s.into()))
        } else {
            Err(TokenError)
        }
    }

    /// Compares in constant time, so response timing does not reveal how
    /// many leading characters of a guess were right.
    pub fn matches(&self, presented: &Token) -> bool {
        self.0.as_bytes().ct_eq(presented.0.as_bytes()).into()
    }

    /// SHA-256 of the token, in hex: what a shared store keeps and compares
    /// instead of the secret. A store that compares digests with plain
    /// equality leaks at most a prefix of a digest, which does not help
    /// anyone build a token; and a dump of the store holds no secrets.
    pub fn digest(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The secret itself, for the `X-Peer-Token` reply header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Random bytes from the OS. Failure means the OS cannot provide randomness
/// at all, in which case no secret this server could issue would be safe.
/// 8 characters of the URL-safe base64 alphabet (48 random bits), all
/// valid in a room or peer name: for epochs, session names and TURN labels.
pub(crate) fn random_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 6] = random_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_valid_distinct_and_128_bit() {
        let a = Token::generate();
        let b = Token::generate();
        assert_eq!(a.expose().len(), 32);
        assert!(Token::parse(a.expose()).is_ok());
        assert!(!a.matches(&b));
        assert!(a.matches(&a.clone()));
    }

    #[test]
    fn offered_tokens_are_checked() {
        assert!(Token::parse("alice-secret-0001").is_ok());
        assert_eq!(Token::parse("short").err(), Some(TokenError));
        assert_eq!(Token::parse(&"x".repeat(129)).err(), Some(TokenError));
        assert_eq!(Token::parse("has space in it!!").err(), Some(TokenError));
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let t = Token::parse("alice-secret-0001").unwrap();
        assert!(!format!("{t:?}").contains("alice"));
    }
}
