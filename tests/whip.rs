//! WHIP and WHEP over real HTTP against a real server: how each request
//! maps to room messages, and every error. The answering peer here is a
//! protocol client that answers like a page would; the browser tests
//! (`tests/whip_clients/`) answer with real Chromium pages and publish with
//! Debian's simple-whip-client.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Peer, TestServer, client, parsed, secs, sender};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use signal_relay::api::whip::WhipToken;
use signal_relay::turn::{TurnMinter, TurnSecret};
use signal_relay::wire::{Description, RoomEvent};

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=ice-ufrag:Ufr4\r\na=ice-pwd:pw0123456789012345678901\r\na=rtpmap:96 VP8/90000\r\n";
const ANSWER: &str = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n";

async fn post_offer(server: &TestServer, path: &str, sdp: &str) -> Response {
    client()
        .post(server.url(path))
        .header("Content-Type", "application/sdp")
        .body(sdp.to_owned())
        .send()
        .await
        .expect("POST")
}

/// `peer` in `room` answers the first offer it gets with [`ANSWER`], and
/// returns the offer's data.
fn answer_one_offer(mut peer: Peer) -> tokio::task::JoinHandle<(Peer, Value)> {
    tokio::spawn(async move {
        loop {
            for message in peer.poll(5.0).await {
                let data = parsed(&message);
                if data["type"] == "offer" {
                    let from = sender(&message).expect("an offer has a sender").to_owned();
                    let answer = json!({"type": "answer", "sdp": ANSWER});
                    peer.send_ok(Some(&from), &answer).await;
                    return (peer, data);
                }
            }
        }
    })
}

fn problem(detail_has: &str) -> impl Fn(&Value) {
    let wanted = detail_has.to_owned();
    move |body: &Value| {
        assert_eq!(body["type"], "about:blank", "{body}");
        assert!(body["title"].is_string(), "{body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains(&wanted),
            "{body}"
        );
    }
}

async fn expect_problem(reply: Response, status: StatusCode, detail_has: &str) -> Value {
    assert_eq!(reply.status(), status);
    assert_eq!(reply.headers()["content-type"], "application/problem+json");
    let body: Value = reply.json().await.expect("a problem body");
    assert_eq!(body["status"], status.as_u16());
    problem(detail_has)(&body);
    body
}

/// The peers present in `room`, as a newcomer sees them.
async fn members(server: &TestServer, room: &str) -> Vec<String> {
    let mut probe = server.peer(room, &format!("probe{}", rand_suffix()));
    let peers = probe.join().await;
    probe.leave().await;
    peers
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

async fn a_whip_offer_gets_the_peers_answer_and_a_session(store: Backend) {
    let server = store.start().await;
    let mut page = server.peer("studio", "page");
    page.join().await;
    let answering = answer_one_offer(page);

    let started = Instant::now();
    let reply = post_offer(&server, "/whip/studio/page", OFFER).await;
    assert_eq!(reply.status(), StatusCode::CREATED);
    let headers = reply.headers().clone();
    assert_eq!(headers["content-type"], "application/sdp");
    assert_eq!(headers["accept-patch"], "application/trickle-ice-sdpfrag");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    let location = headers["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/whip/studio/page/whip-"),
        "{location}"
    );
    assert!(
        location.rsplit('/').next().unwrap().len() >= 32,
        "the resource holds a 128-bit secret: {location}"
    );
    assert_eq!(reply.text().await.unwrap(), ANSWER);
    let (mut page, offer) = answering.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));

    // The page got the offer as a page's offer, marked as not trickling.
    let description: Description = serde_json::from_value(offer).unwrap();
    assert_eq!(description.kind, "offer");
    assert_eq!(description.sdp, OFFER);
    assert_eq!(description.trickle, Some(false));
    let session = location.split('/').nth(4).unwrap().to_owned();
    assert!(members(&server, "studio").await.contains(&session));

    // PATCH: each candidate becomes a candidate message, the end an empty one.
    let fragment = "a=ice-ufrag:Ufr4\r\na=ice-pwd:pw0123456789012345678901\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n";
    let patched = client()
        .patch(server.url(&location))
        .header("Content-Type", "application/trickle-ice-sdpfrag")
        .header("If-Match", &etag)
        .body(fragment)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    let got: Vec<Value> = page
        .poll(1.0)
        .await
        .iter()
        .filter(|m| sender(m) == Some(session.as_str()))
        .map(parsed)
        .collect();
    assert_eq!(
        got,
        [
            json!({"type": "candidate", "ice": {"candidate": "candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "Ufr4"}}),
            json!({"type": "candidate", "ice": {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "Ufr4"}}),
        ]
    );

    // DELETE: the session leaves, as a peer that hung up.
    let deleted = client().delete(server.url(&location)).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let events: Vec<Value> = page.poll(1.0).await.iter().map(parsed).collect();
    assert_eq!(
        events,
        [json!({"type": "leave", "peer": session, "reason": "left"})]
    );
    let again = client().delete(server.url(&location)).send().await.unwrap();
    expect_problem(again, StatusCode::NOT_FOUND, "no such session").await;
}

async fn whep_and_the_bare_endpoint_reach_the_only_peer(store: Backend) {
    let server = store.start().await;
    let mut page = server.peer("stage", "camera");
    page.join().await;
    let answering = answer_one_offer(page);
    let reply = post_offer(&server, "/whep/stage", OFFER).await;
    assert_eq!(reply.status(), StatusCode::CREATED);
    let location = reply.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/whep/stage/camera/whep-"),
        "{location}"
    );
    answering.await.unwrap();

    // Two peers: the bare endpoint cannot choose.
    let mut other = server.peer("stage", "other");
    other.join().await;
    let reply = post_offer(&server, "/whep/stage", OFFER).await;
    expect_problem(reply, StatusCode::CONFLICT, "name one").await;
    let reply = post_offer(&server, "/whep/empty-room", OFFER).await;
    expect_problem(reply, StatusCode::NOT_FOUND, "empty").await;
}

async fn the_errors(store: Backend) {
    let server = store.with(|s| s.api.whip_timeout = secs(0.5)).await;
    let mut silent = server.peer("errs", "silent");
    silent.join().await;

    let reply = post_offer(&server, "/whip/errs/nobody", OFFER).await;
    expect_problem(reply, StatusCode::NOT_FOUND, "nobody is not in room errs").await;
    let reply = client()
        .post(server.url("/whip/errs/silent"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_problem(reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/sdp").await;
    let huge = format!("v=0\r\n{}", "a=x\r\n".repeat(20_000));
    let reply = post_offer(&server, "/whip/errs/silent", &huge).await;
    expect_problem(reply, StatusCode::PAYLOAD_TOO_LARGE, "larger than").await;
    let reply = post_offer(&server, "/whip/errs/silent", "hello").await;
    expect_problem(reply, StatusCode::BAD_REQUEST, "not an SDP offer").await;

    // A peer that ignores the offer: a clear timeout, and the session gone.
    let started = Instant::now();
    let reply = post_offer(&server, "/whip/errs/silent", OFFER).await;
    expect_problem(reply, StatusCode::GATEWAY_TIMEOUT, "did not answer").await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let present = members(&server, "errs").await;
    assert_eq!(present, ["silent"], "nothing left behind: {present:?}");

    // PATCH preconditions, on a live session (the timed-out offer, and the
    // session's join and leave, are read first).
    silent.poll(0.0).await;
    let answering = answer_one_offer(silent);
    let reply = post_offer(&server, "/whip/errs/silent", OFFER).await;
    assert_eq!(reply.status(), StatusCode::CREATED);
    let location = reply.headers()["location"].to_str().unwrap().to_owned();
    let etag = reply.headers()["etag"].to_str().unwrap().to_owned();
    answering.await.unwrap();
    let patch = |if_match: Option<&str>, content_type: &str, body: &str| {
        let mut request = client()
            .patch(server.url(&location))
            .header("Content-Type", content_type)
            .body(body.to_owned());
        if let Some(tag) = if_match {
            request = request.header("If-Match", tag);
        }
        request.send()
    };
    let fragment =
        "a=ice-ufrag:Ufr4\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=end-of-candidates\r\n";
    let frag = "application/trickle-ice-sdpfrag";
    // If-Match is the client's duty (RFC 9725), not a reason to lose its
    // candidates: a trickle PATCH without it is taken.
    let reply = patch(None, frag, fragment).await.unwrap();
    assert_eq!(reply.status(), StatusCode::NO_CONTENT);
    let reply = patch(Some("\"stale\""), frag, fragment).await.unwrap();
    expect_problem(reply, StatusCode::PRECONDITION_FAILED, "ETag").await;
    let reply = patch(Some("*"), frag, fragment).await.unwrap();
    expect_problem(reply, StatusCode::UNPROCESSABLE_ENTITY, "ICE restart").await;
    let reply = patch(Some(&etag), "text/plain", fragment).await.unwrap();
    expect_problem(reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "sdpfrag").await;
    let reply = patch(Some(&etag), frag, "garbage").await.unwrap();
    expect_problem(reply, StatusCode::BAD_REQUEST, "not an SDP line").await;
    let reply = patch(Some(&etag), frag, fragment).await.unwrap();
    assert_eq!(reply.status(), StatusCode::NO_CONTENT);

    // The resource's secret is its token: another one is not found.
    let forged = format!(
        "{}/{}",
        location.rsplit_once('/').unwrap().0,
        "f".repeat(32)
    );
    let reply = client().delete(server.url(&forged)).send().await.unwrap();
    expect_problem(reply, StatusCode::NOT_FOUND, "no such session").await;
    // No representation: GET is a 204 with no body (RFC 9725 §4.1); a
    // method the resource does not take is a 405 naming those it does.
    let reply = client().get(server.url(&location)).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::NO_CONTENT);
    let reply = client().put(server.url(&location)).send().await.unwrap();
    assert_eq!(
        reply.headers()["allow"],
        "PATCH, DELETE, GET, HEAD, OPTIONS"
    );
    expect_problem(reply, StatusCode::METHOD_NOT_ALLOWED, "PATCH").await;
}

async fn options_and_cors(store: Backend) {
    let server = store
        .with(|s| s.api.cors = signal_relay::api::Cors::AnyOrigin)
        .await;
    let reply = client()
        .request(reqwest::Method::OPTIONS, server.url("/whip/any/peer"))
        .header("Origin", "https://tool.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::NO_CONTENT);
    let headers = reply.headers();
    assert_eq!(headers["accept-post"], "application/sdp");
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let exposed = headers["access-control-expose-headers"].to_str().unwrap();
    for name in ["location", "etag", "link", "accept-patch"] {
        assert!(exposed.contains(name), "{exposed}");
    }
}

async fn a_bearer_token_guards_every_request(store: Backend) {
    let server = store
        .with(|s| {
            s.api.whip_token = Some(WhipToken::new("studio-secret").unwrap());
            s.api.ice_servers = vec![json!({"urls": "stun:127.0.0.1:3478"})];
            s.api.turn = Some(TurnMinter::new(
                vec!["turn:127.0.0.1:3478?transport=tcp".into()],
                TurnSecret::new("turn-secret").unwrap(),
                Duration::from_secs(600),
            ));
        })
        .await;
    let mut page = server.peer("guarded", "page");
    page.join().await;
    let reply = post_offer(&server, "/whip/guarded/page", OFFER).await;
    assert_eq!(reply.headers()["www-authenticate"], "Bearer");
    expect_problem(reply, StatusCode::UNAUTHORIZED, "Bearer").await;
    let answering = answer_one_offer(page);
    let reply = client()
        .post(server.url("/whip/guarded/page"))
        .header("Content-Type", "application/sdp")
        .header("Authorization", "Bearer studio-secret")
        .body(OFFER)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
    let links: Vec<&str> = reply
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(links[0], r#"<stun:127.0.0.1:3478>; rel="ice-server""#);
    // The TURN credential is minted for this session: its label is the
    // session's name (RFC 9725 §4.6's username/credential attributes).
    let location = reply.headers()["location"].to_str().unwrap().to_owned();
    let session = location.split('/').nth(4).unwrap();
    assert!(
        links[1]
            .starts_with(r#"<turn:127.0.0.1:3478?transport=tcp>; rel="ice-server"; username=""#)
            && links[1].contains(&format!(":{session}\"; credential=\""))
            && links[1].ends_with(r#"credential-type="password""#),
        "{}",
        links[1]
    );
    answering.await.unwrap();
    let reply = client().delete(server.url(&location)).send().await.unwrap();
    expect_problem(reply, StatusCode::UNAUTHORIZED, "Bearer").await;
    let reply = client()
        .delete(server.url(&location))
        .header("Authorization", "Bearer studio-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
}

/// A client that gives up waiting leaves nothing behind either.
async fn a_client_that_hangs_up_leaves_nothing(store: Backend) {
    let server = store.start().await;
    let mut silent = server.peer("hangup", "silent");
    silent.join().await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let reply = impatient
        .post(server.url("/whip/hangup/silent"))
        .header("Content-Type", "application/sdp")
        .body(OFFER)
        .send()
        .await;
    assert!(reply.is_err(), "the client timed out");
    let mut left = false;
    for _ in 0..20 {
        for message in silent.poll(0.5).await {
            if let Some(RoomEvent::Leave { peer, .. }) = RoomEvent::parse(&message.data)
                && peer.starts_with("whip-")
            {
                left = true;
            }
        }
        if left {
            break;
        }
    }
    assert!(left, "the abandoned session left the room");
}

on_every_store!(
    a_whip_offer_gets_the_peers_answer_and_a_session,
    whep_and_the_bare_endpoint_reach_the_only_peer,
    the_errors,
    options_and_cors,
    a_bearer_token_guards_every_request,
    a_client_that_hangs_up_leaves_nothing,
);
