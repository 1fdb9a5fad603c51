//! Cross-origin access to `/signal`: off unless the operator names origins,
//! because a signaling server that answers any page lets any site on the
//! internet drive its users' browsers into rooms.

use hyper::HeaderMap;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, HeaderValue, ORIGIN, VARY,
};

#[derive(Debug, Clone, Default)]
pub enum Cors {
    #[default]
    Off,
    AnyOrigin,
    Origins(Vec<HeaderValue>),
}

impl Cors {
    /// From `--cors-origin` values; `*` anywhere means any origin.
    pub fn from_origins(origins: &[String]) -> Result<Cors, String> {
        if origins.is_empty() {
            return Ok(Cors::Off);
        }
        if origins.iter().any(|o| o == "*") {
            return Ok(Cors::AnyOrigin);
        }
        origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/'))
                    .map_err(|_| format!("--cors-origin {o:?} is not a valid origin"))
            })
            .collect::<Result<_, _>>()
            .map(Cors::Origins)
    }

    fn allowed_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            Cors::Off => None,
            Cors::AnyOrigin => Some(HeaderValue::from_static("*")),
            Cors::Origins(allowed) => origin.filter(|o| allowed.contains(o)).cloned(),
        }
    }

    /// The request's `Origin`, the only request header CORS needs.
    pub fn origin(request: &HeaderMap) -> Option<HeaderValue> {
        request.get(ORIGIN).cloned()
    }

    /// Headers for an actual (non-preflight) response.
    pub fn decorate(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        if let Cors::Origins(_) = self {
            // The answer depends on the Origin, so caches must key on it.
            response.append(VARY, HeaderValue::from_static("origin"));
        }
        if let Some(origin) = self.allowed_origin(origin) {
            response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            response.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                // WHIP/WHEP clients in a page read the session's location,
                // tag, ICE servers and what it accepts.
                HeaderValue::from_static(
                    "x-peer-token, retry-after, www-authenticate, location, etag, link, accept-patch, accept-post",
                ),
            );
        }
    }

    /// Headers for a preflight (`OPTIONS`) response to a path that
    /// answers `methods`.
    pub fn preflight(
        &self,
        origin: Option<&HeaderValue>,
        response: &mut HeaderMap,
        methods: &'static str,
    ) {
        self.decorate(origin, response);
        if response.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            response.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            );
            response.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "content-type, x-peer-token, idempotency-key, authorization, if-match",
                ),
            );
            response.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
    }
}
