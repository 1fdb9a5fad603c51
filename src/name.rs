//! Room and peer names.
//!
//! Names appear in URLs, JSON bodies and logs, so the protocol restricts them
//! to a small alphabet that needs no escaping anywhere: 1..=64 characters of
//! `[A-Za-z0-9_.-]`. A `Name` can only be built through [`Name::parse`], so any
//! value of this type is known to be safe to echo back.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest allowed room or peer name, in bytes (all allowed characters are ASCII).
pub const MAX_NAME_LEN: usize = 64;

/// A validated room or peer name.
///
/// Cheap to clone (`Arc<str>`): a broadcast stamps the sender's name on every
/// recipient's copy of the message.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Name(Arc<str>);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("may only contain letters, digits, '_', '.' and '-'")]
    BadCharacter,
}

impl Name {
    pub fn parse(s: &str) -> Result<Name, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(NameError::BadCharacter);
        }
        Ok(Name(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name read from JSON is validated like one in a query, so a client of
/// the protocol never holds a name the server could not have sent.
impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Name::parse(&text).map_err(|e| serde::de::Error::custom(format!("a name that {e}")))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_protocol_alphabet() {
        for ok in ["a", "Alice_01", "room.with-dots", &"x".repeat(64)] {
            assert_eq!(Name::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse(&"x".repeat(65)), Err(NameError::TooLong));
        for bad in ["a b", "a/b", "é", "a%20", "<script>", "a\nb"] {
            assert_eq!(Name::parse(bad), Err(NameError::BadCharacter), "{bad:?}");
        }
    }
}
