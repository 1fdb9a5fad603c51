//! The room a connection's first request names, read from the raw bytes
//! the kernel holds before hyper parses anything: what
//! [`crate::event_loops`] places the connection by. Anything unusual
//! (no full line yet, an absolute-form target, another path) names no room,
//! which only means the connection is placed in turn.

use std::borrow::Cow;

use super::params::query_pairs;
use super::whip;
use crate::wire::{self, query};

/// The room named by the request line at the start of `head`: `room=` of
/// a `/signal` query, or the room segment of a WHIP or WHEP path.
pub fn room_named_by(head: &[u8]) -> Option<Cow<'_, str>> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let _method = parts.next()?;
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == wire::SIGNAL_PATH {
        return query_pairs(query)
            .find(|(key, _)| key == query::ROOM)
            .map(|(_, room)| room);
    }
    whip::room_segment(path).map(Cow::Borrowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(head: &str) -> Option<String> {
        room_named_by(head.as_bytes()).map(Cow::into_owned)
    }

    #[test]
    fn the_room_is_read_where_each_route_names_it() {
        let get = "GET /signal?peer=bob&room=demo&since=3 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(room(get).as_deref(), Some("demo"));
        let post = "POST /signal?room=a%20b&peer=alice HTTP/1.1\r\n";
        assert_eq!(room(post).as_deref(), Some("a b"));
        assert_eq!(
            room("POST /whip/stage/cam HTTP/1.1\r\n").as_deref(),
            Some("stage")
        );
        assert_eq!(
            room("POST /whep/stage HTTP/1.1\r\n").as_deref(),
            Some("stage")
        );
        assert_eq!(
            room("PATCH /whip/stage/cam/s1/t0k HTTP/1.1\r\n").as_deref(),
            Some("stage")
        );
    }

    #[test]
    fn anything_else_names_no_room() {
        for head in [
            "GET / HTTP/1.1\r\n",
            "GET /config?peer=bob HTTP/1.1\r\n",
            "GET /signal?peer=bob HTTP/1.1\r\n",
            // The line is not complete yet: nothing is guessed from a part.
            "GET /signal?room=demo",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET http://relay/signal?room=demo HTTP/1.1\r\n",
            "GET /whip/ HTTP/1.1\r\n",
        ] {
            assert_eq!(room(head), None, "{head:?}");
        }
        assert_eq!(room_named_by(b"GET /signal?room=\xff HTTP/1.1\r\n"), None);
    }
}
