//! RFC 8840's `application/trickle-ice-sdpfrag`, the body of a WHIP/WHEP
//! `PATCH`: SDP lines carrying trickled candidates, read into the
//! `RTCIceCandidateInit`s a page adds.

use super::ApiError;
use crate::wire::IceCandidate;

/// The candidates of an RFC 8840 fragment, with the `sdpMid` and
/// `sdpMLineIndex` of the media section each follows; `a=end-of-candidates`
/// becomes an empty candidate, the end-of-candidates of `addIceCandidate`.
pub fn parse_sdpfrag(fragment: &str) -> Result<Vec<IceCandidate>, ApiError> {
    let mut ufrag: Option<String> = None;
    let mut section: Option<u32> = None;
    let mut mid: Option<String> = None;
    let mut found = Vec::new();
    for line in fragment.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            section = Some(section.map_or(0, |n| n + 1));
            mid = None;
        } else if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("a=ice-ufrag:") {
            ufrag = Some(value.to_owned());
        } else if let Some(candidate) = line.strip_prefix("a=") {
            let is_candidate = candidate.starts_with("candidate:");
            if !is_candidate && candidate != "end-of-candidates" {
                continue;
            }
            found.push((
                if is_candidate {
                    candidate.to_owned()
                } else {
                    String::new()
                },
                section,
                mid.clone(),
            ));
        } else if !line.contains('=') {
            return Err(ApiError::bad_request(format!(
                "{line:?} is not an SDP line: send a trickle-ice-sdpfrag (RFC 8840)"
            )));
        }
    }
    Ok(found
        .into_iter()
        .map(|(candidate, section, mid)| IceCandidate {
            candidate,
            sdp_m_line_index: Some(section.unwrap_or(0)),
            sdp_mid: mid,
            username_fragment: ufrag.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments() {
        let fragment = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 UDP 2130706431 10.0.0.1 8998 typ host\r\na=candidate:2 1 UDP 1694498815 192.0.2.3 45664 typ srflx raddr 10.0.0.1 rport 8998\r\nm=video 9 RTP/AVP 0\r\na=mid:1\r\na=end-of-candidates\r\n";
        let found = parse_sdpfrag(fragment).unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(
            found[0].candidate,
            "candidate:1 1 UDP 2130706431 10.0.0.1 8998 typ host"
        );
        assert_eq!(found[0].sdp_mid.as_deref(), Some("0"));
        assert_eq!(found[0].sdp_m_line_index, Some(0));
        assert_eq!(found[0].username_fragment.as_deref(), Some("EsAw"));
        assert_eq!(found[2].candidate, "", "end of candidates");
        assert_eq!(found[2].sdp_mid.as_deref(), Some("1"));
        assert_eq!(found[2].sdp_m_line_index, Some(1));
        assert!(parse_sdpfrag("not sdp at all").is_err());
    }
}
