//! What a `/signal` request says, read from its query and headers and
//! checked, with an error that tells the client how to fix each mistake.

use std::borrow::Cow;
use std::time::Duration;

use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderName};

use super::error::ApiError;
use crate::name::Name;
use crate::store::Credentials;
use crate::token::Token;
use crate::wire::{header, media, query};

pub const PEER_TOKEN: HeaderName = HeaderName::from_static(header::PEER_TOKEN);
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static(header::IDEMPOTENCY_KEY);

const NAME_RULE: &str = "1 to 64 characters of A-Z a-z 0-9 _ . -";
const MAX_EPOCH_LEN: usize = 64;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The query parameters `/signal` understands, each at most once. Unknown
/// parameters are ignored so clients can add cache-busters.
///
/// Values borrow from the query unless they had to be decoded: a client's
/// query is names, numbers and tokens, which need no escaping, and every
/// request parses one.
#[derive(Debug, Default)]
pub struct Params<'q> {
    room: Option<Cow<'q, str>>,
    peer: Option<Cow<'q, str>>,
    to: Option<Cow<'q, str>>,
    since: Option<Cow<'q, str>>,
    epoch: Option<Cow<'q, str>>,
    timeout: Option<Cow<'q, str>>,
    token: Option<Cow<'q, str>>,
    sdp_type: Option<Cow<'q, str>>,
    leave: Option<Cow<'q, str>>,
}

/// How a POST body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// One JSON object, relayed as is.
    Json,
    /// Raw SDP, wrapped as `{"type": ..., "sdp": ...}`.
    Sdp,
}

impl<'q> Params<'q> {
    pub fn parse(query: Option<&'q str>) -> Result<Params<'q>, ApiError> {
        let mut params = Params::default();
        for (key, value) in query_pairs(query.unwrap_or("")) {
            let slot = match &*key {
                query::ROOM => &mut params.room,
                query::PEER => &mut params.peer,
                query::TO => &mut params.to,
                query::SINCE => &mut params.since,
                query::EPOCH => &mut params.epoch,
                query::TIMEOUT => &mut params.timeout,
                query::TOKEN => &mut params.token,
                query::SDP_TYPE => &mut params.sdp_type,
                query::LEAVE => &mut params.leave,
                _ => continue,
            };
            if slot.is_some() {
                return Err(ApiError::bad_request(format!(
                    "`{key}` is given more than once; give it once"
                )));
            }
            *slot = Some(value);
        }
        Ok(params)
    }

    /// Room, peer and token: who the request speaks for.
    pub fn credentials(&self, headers: &HeaderMap) -> Result<Credentials, ApiError> {
        Ok(Credentials {
            room: required_name(query::ROOM, self.room.as_deref())?,
            peer: required_name(query::PEER, self.peer.as_deref())?,
            token: self.token(headers)?,
            may_claim: true,
        })
    }

    fn token(&self, headers: &HeaderMap) -> Result<Option<Token>, ApiError> {
        let header = match headers.get(&PEER_TOKEN) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| bad_token("X-Peer-Token"))?),
        };
        let text = match (header, self.token.as_deref()) {
            (Some(h), Some(q)) if h != q => {
                return Err(ApiError::bad_request(
                    "the X-Peer-Token header and token= disagree; send one of them",
                ));
            }
            (Some(h), _) => Some((h, "X-Peer-Token")),
            (None, Some(q)) => Some((q, "token")),
            (None, None) => None,
        };
        text.map(|(text, field)| Token::parse(text).map_err(|_| bad_token(field)))
            .transpose()
    }

    /// The optional `peer` of a request that does not speak for a peer
    /// (`/config?peer=NAME`, which labels a minted TURN credential).
    pub fn peer_label(&self) -> Result<Option<Name>, ApiError> {
        self.peer
            .as_deref()
            .map(|peer| name(query::PEER, peer))
            .transpose()
    }

    pub fn to(&self) -> Result<Option<Name>, ApiError> {
        self.to.as_deref().map(|to| name(query::TO, to)).transpose()
    }

    pub fn since(&self) -> Result<u64, ApiError> {
        match self.since.as_deref() {
            None => Ok(0),
            Some(text) => text.parse().map_err(|_| {
                ApiError::bad_request(
                    "`since` must be a whole number of at least 0: the `next` of your last poll, or 0 at first",
                )
            }),
        }
    }

    pub fn epoch(&self) -> Result<Option<Box<str>>, ApiError> {
        match self.epoch.as_deref() {
            Some(epoch) if epoch.len() > MAX_EPOCH_LEN => Err(ApiError::bad_request(
                "`epoch` is too long: send back the `epoch` of your last poll",
            )),
            Some("") | None => Ok(None),
            Some(epoch) => Ok(Some(epoch.into())),
        }
    }

    pub fn timeout(&self) -> Result<Option<Duration>, ApiError> {
        self.timeout
            .as_deref()
            .map(|text| {
                text.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| Duration::from_secs_f64(s.min(1e6)))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "`timeout` must be a number of seconds of at least 0 (e.g. 25 or 0.5)",
                        )
                    })
            })
            .transpose()
    }

    /// `leave=1` on a POST: leave instead of send, for `navigator.sendBeacon`,
    /// which can only POST.
    pub fn leave(&self) -> Result<bool, ApiError> {
        match self.leave.as_deref() {
            None => Ok(false),
            Some("1") => Ok(true),
            Some(_) => Err(ApiError::bad_request(
                "`leave` must be 1 (POST ...&leave=1 leaves the room, like DELETE)",
            )),
        }
    }

    /// The SDP type of an `application/sdp` body: `offer` unless told.
    pub fn sdp_type(&self) -> Result<&'static str, ApiError> {
        match self.sdp_type.as_deref() {
            None | Some("offer") => Ok("offer"),
            Some("answer") => Ok("answer"),
            Some(_) => Err(ApiError::bad_request(
                "`type` must be offer or answer for an application/sdp body",
            )),
        }
    }
}

/// The `application/x-www-form-urlencoded` pairs of a query, as
/// `form_urlencoded::parse` reads them (empty pairs skipped, a missing `=`
/// is an empty value), but a pair with nothing to decode is borrowed
/// rather than checked byte by byte for escapes and UTF-8.
pub(super) fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    // Cut at ASCII bytes, so every piece is text: no UTF-8 check.
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let bytes = pair.as_bytes();
            if bytes.iter().any(|&b| b == b'%' || b == b'+') {
                return form_urlencoded::parse(bytes).next().unwrap_or_default();
            }
            match bytes.iter().position(|&b| b == b'=') {
                Some(eq) => (Cow::Borrowed(&pair[..eq]), Cow::Borrowed(&pair[eq + 1..])),
                None => (Cow::Borrowed(pair), Cow::Borrowed("")),
            }
        })
}

pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<Box<str>>, ApiError> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !bytes.iter().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        )));
    }
    // Every byte is ASCII, so this is the same text.
    Ok(Some(String::from_utf8_lossy(bytes).into()))
}

/// The body's media type, lower case, without parameters.
pub fn body_media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
}

pub fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let media_type = body_media_type(headers);
    match media_type.as_deref() {
        Some(media::JSON) => Ok(BodyKind::Json),
        Some(media::SDP) => Ok(BodyKind::Sdp),
        other => Err(ApiError::new(
            hyper::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {} is not accepted: send application/json (one JSON object) or application/sdp (raw SDP, with type=offer|answer in the query)",
                other.map_or_else(|| "(none)".to_owned(), |t| format!("{t:?}"))
            ),
        )),
    }
}

fn required_name(field: &str, value: Option<&str>) -> Result<Name, ApiError> {
    match value {
        None => Err(ApiError::bad_request(format!(
            "missing `{field}`: add {field}=NAME to the query ({NAME_RULE})"
        ))),
        Some(value) => name(field, value),
    }
}

fn name(field: &str, value: &str) -> Result<Name, ApiError> {
    Name::parse(value).map_err(|e| ApiError::bad_request(format!("`{field}` {e}: use {NAME_RULE}")))
}

fn bad_token(field: &str) -> ApiError {
    ApiError::bad_request(format!(
        "`{field}` {}: send the token from the reply that created this peer",
        crate::token::TokenError
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let p = Params::parse(Some("room=r1&peer=al%69ce&since=7&timeout=0.5&x=1")).unwrap();
        let who = p.credentials(&HeaderMap::new()).unwrap();
        assert_eq!(who.peer.as_str(), "alice");
        assert_eq!(p.since().unwrap(), 7);
        assert_eq!(p.timeout().unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(p.to().unwrap(), None);
        assert_eq!(p.sdp_type().unwrap(), "offer");
    }

    #[test]
    fn query_pairs_read_as_form_urlencoded_does() {
        // The borrowed fast path and the decoding one, proven equal to the
        // crate they shortcut on what clients send and on what they should not.
        for query in [
            "room=r1&peer=alice&since=7&timeout=25&token=abc-_.~",
            "room=a%20b&peer=c+d&x=%E2%82%AC&y=%ff",
            "&&room=&=v&flag&peer==x&&",
            "",
        ] {
            let ours: Vec<_> = query_pairs(query).collect();
            let theirs: Vec<_> = form_urlencoded::parse(query.as_bytes()).collect();
            assert_eq!(ours, theirs, "{query:?}");
        }
    }

    #[test]
    fn refuses_duplicates_and_garbage() {
        assert!(Params::parse(Some("room=a&room=b")).is_err());
        let p = Params::parse(Some("room=a&peer=b&since=-1&timeout=abc&type=bogus")).unwrap();
        assert!(p.since().is_err());
        assert!(p.timeout().is_err());
        assert!(p.sdp_type().is_err());
        let missing = Params::parse(Some("peer=b")).unwrap();
        let err = missing.credentials(&HeaderMap::new()).unwrap_err();
        assert!(err.message.contains("missing `room`"), "{}", err.message);
    }

    #[test]
    fn header_and_query_tokens_must_agree() {
        let p = Params::parse(Some("room=a&peer=b&token=aaaaaaaaaaaaaaaa")).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(PEER_TOKEN, "bbbbbbbbbbbbbbbb".parse().unwrap());
        assert!(p.credentials(&headers).is_err());
        headers.insert(PEER_TOKEN, "aaaaaaaaaaaaaaaa".parse().unwrap());
        assert!(p.credentials(&headers).unwrap().token.is_some());
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert!(body_kind(&headers).is_err());
        headers.insert(
            CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(body_kind(&headers).unwrap(), BodyKind::Json);
        headers.insert(CONTENT_TYPE, "application/sdp".parse().unwrap());
        assert_eq!(body_kind(&headers).unwrap(), BodyKind::Sdp);
        headers.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(body_kind(&headers).unwrap_err().status, 415);
    }
}
