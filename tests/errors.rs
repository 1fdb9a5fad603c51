//! Every error status of the protocol, provoked for real: each must come with
//! a JSON body `{"error": "..."}` that says what to fix.

mod common;

use signal_relay::wire::header;
use std::time::Duration;

use common::{Backend, client, sender};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Asserts the status and the JSON error shape; returns the message.
async fn expect_error(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("error body is JSON");
    let message = body["error"]
        .as_str()
        .expect("an `error` string")
        .to_owned();
    assert!(message.len() > 10, "a useful message: {message}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    message
}

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Response {
    client()
        .post(url)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn bad_parameters_are_400(store: Backend) {
    let server = store.start().await;
    let cases = [
        ("/signal", "missing `room`"),
        ("/signal?room=r", "missing `peer`"),
        ("/signal?room=r&peer=has%20space", "`peer` may only contain"),
        ("/signal?room=&peer=a", "`room` is empty"),
        (
            "/signal?room=r&peer=a&since=-3",
            "`since` must be a whole number",
        ),
        (
            "/signal?room=r&peer=a&timeout=soon",
            "`timeout` must be a number",
        ),
        (
            "/signal?room=r&room=s&peer=a",
            "`room` is given more than once",
        ),
        (
            "/signal?room=r&peer=a&token=short",
            "`token` must be 16..=128",
        ),
    ];
    for (path, expected) in cases {
        let reply = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(reply.headers()["cache-control"], "no-store");
        let message = expect_error(reply, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(expected), "{path}: {message}");
    }
    let long = format!("/signal?room={}&peer=a", "x".repeat(65));
    let message = expect_error(
        client().get(server.url(&long)).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("longer than 64"), "{message}");
}

async fn bad_bodies_are_400(store: Backend) {
    let server = store.start().await;
    let url = server.url("/signal?room=r&peer=a");
    let too_many = format!("[{}]", vec!["{}"; 33].join(","));
    for (body, expected) in [
        ("{not json", "not valid JSON"),
        ("[1,2]", "each message of a batch must be a JSON object"),
        (
            "[{\"a\":1},\"x\"]",
            "each message of a batch must be a JSON object",
        ),
        ("[]", "an array of 1 to 32 JSON objects; this one has 0"),
        (
            too_many.as_str(),
            "an array of 1 to 32 JSON objects; this one has 33",
        ),
        ("\"offer\"", "one JSON object"),
        ("", "not valid JSON"),
    ] {
        let message = expect_error(
            post(&url, "application/json", body.to_owned()).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains(expected), "{body:?}: {message}");
    }
    let deep = "[".repeat(1000) + &"]".repeat(1000);
    let message = expect_error(
        post(&url, "application/json", format!("{{\"a\":{deep}}}")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("nests deeper than 64"), "{message}");

    let sdp_url = server.url("/signal?room=r&peer=a&type=rollback");
    let message = expect_error(
        post(&sdp_url, "application/sdp", "v=0").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        message.contains("`type` must be offer or answer"),
        "{message}"
    );
    let message = expect_error(
        post(&url, "application/sdp", vec![0xff, 0xfe]).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("not UTF-8"), "{message}");
}

async fn nothing_is_created_by_a_refused_request(store: Backend) {
    let server = store.start().await;
    let url = server.url("/signal?room=r&peer=a");
    expect_error(
        post(&url, "application/json", "[]").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    // `a` is still free: claiming it now succeeds and issues a token.
    let mut a = server.peer("r", "a");
    a.join().await;
}

async fn wrong_token_is_403(store: Backend) {
    let server = store.start().await;
    server.peer("r", "alice").join().await;
    let reply = client()
        .get(server.url("/signal?room=r&peer=alice&timeout=0"))
        .header(header::PEER_TOKEN, "not-alices-token-at-all")
        .send()
        .await
        .unwrap();
    let message = expect_error(reply, StatusCode::FORBIDDEN).await;
    assert!(message.contains("token"), "{message}");
}

async fn unknown_paths_and_recipients_are_404(store: Backend) {
    let server = store.start().await;
    let message = expect_error(
        client().get(server.url("/signall")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(message.contains("/signal"), "{message}");
    expect_error(
        client().post(server.url("/api/v2")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;

    let mut alice = server.peer("r", "alice");
    alice.join().await;
    let message = expect_error(
        alice.send(Some("bob"), &json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(message.contains("bob is not in room r"), "{message}");
}

async fn wrong_methods_are_405_with_allow(store: Backend) {
    let server = store.start().await;
    for method in [reqwest::Method::PUT, reqwest::Method::PATCH] {
        let reply = client()
            .request(method, server.url("/signal?room=r&peer=a"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.headers()["allow"], "GET, POST, DELETE, OPTIONS");
        expect_error(reply, StatusCode::METHOD_NOT_ALLOWED).await;
    }
    let reply = client().post(server.url("/healthz")).send().await.unwrap();
    assert_eq!(reply.headers()["allow"], "GET, HEAD");
    expect_error(reply, StatusCode::METHOD_NOT_ALLOWED).await;
}

async fn a_full_room_is_409(store: Backend) {
    let server = store
        .with(|s| {
            s.limits.room_peers = 2;
        })
        .await;
    server.peer("r", "a").join().await;
    server.peer("r", "b").join().await;
    let reply = client()
        .get(server.url("/signal?room=r&peer=c&timeout=0"))
        .send()
        .await
        .unwrap();
    let message = expect_error(reply, StatusCode::CONFLICT).await;
    assert!(message.contains("already has 2 peers"), "{message}");
}

async fn oversized_bodies_are_413_declared_or_streamed(store: Backend) {
    let server = store
        .with(|s| {
            s.api.max_body = 1024;
        })
        .await;
    let url = server.url("/signal?room=r&peer=a");
    let big = format!("{{\"sdp\":\"{}\"}}", "x".repeat(2000));
    expect_error(
        post(&url, "application/json", big.clone()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    // Chunked, so the length is only discovered while reading.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST /signal?room=r&peer=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
        .await
        .expect("the server answers")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(
        reply.contains(r#"{"error":"the body is larger than 1024 bytes"#),
        "{reply}"
    );
}

async fn other_content_types_are_415(store: Backend) {
    let server = store.start().await;
    let url = server.url("/signal?room=r&peer=a");
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let message = expect_error(
            post(&url, content_type, "{}").await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )
        .await;
        assert!(message.contains("application/json"), "{message}");
    }
    let bare = client().post(&url).body("{}").send().await.unwrap();
    expect_error(bare, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

async fn a_full_mailbox_is_429_and_stores_nothing_for_anyone(store: Backend) {
    let server = store
        .with(|s| {
            s.limits.mailbox_messages = 3;
            s.limits.backlog_messages = 3;
        })
        .await;
    let mut a = server.peer("r", "a");
    let mut b = server.peer("r", "b");
    let mut c = server.peer("r", "c");
    a.join().await;
    b.join().await;
    c.join().await;
    // c holds the peers event; fill it with two direct messages.
    a.send_ok(Some("c"), &json!({"n": 1})).await;
    a.send_ok(Some("c"), &json!({"n": 2})).await;
    let reply = a.send(None, &json!({"n": "broadcast"})).await;
    assert_eq!(reply.headers()["retry-after"], "1");
    let message = expect_error(reply, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(message.contains("mailbox of c is full"), "{message}");
    let b_got: Vec<_> = b
        .poll(0.0)
        .await
        .into_iter()
        .filter(|m| sender(m) == Some("a"))
        .collect();
    assert!(b_got.is_empty(), "all or nothing: {b_got:?}");
    // Once c polls, the retry goes through.
    c.poll(0.0).await;
    c.poll(0.0).await;
    a.send_ok(None, &json!({"n": "broadcast"})).await;
}

async fn too_many_parked_polls_and_rooms_are_503(store: Backend) {
    let server = store
        .with(|s| {
            s.limits.parked_polls = 1;
            s.limits.rooms = 2;
        })
        .await;
    let mut a = server.peer("r1", "a");
    let mut b = server.peer("r2", "b");
    // --max-parked-polls is per instance: both on the same one.
    b.base = a.base.clone();
    a.join().await;
    b.join().await;
    let parked = tokio::spawn(async move { a.poll_raw(5.0).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, error) = b.poll_error(5.0).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert!(error.contains("parked polls"), "{error}");
    let reply = client()
        .get(b.signal_url(&format!("&since={}&timeout=5", b.since)))
        .header(header::PEER_TOKEN, b.token.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["retry-after"], "2");
    expect_error(reply, StatusCode::SERVICE_UNAVAILABLE).await;

    if store == Backend::Cluster {
        // A Cluster counts the rooms of other buckets (slots) as last read,
        // once per sweep interval (5 s with the default TTL): the limit is
        // exact only from then on (docs/scaling.md).
        tokio::time::sleep(Duration::from_millis(5_500)).await;
    }
    let third_room = client()
        .get(server.url("/signal?room=r3&peer=c&timeout=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(third_room.headers()["retry-after"], "2");
    let message = expect_error(third_room, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(message.contains("2 rooms"), "{message}");
    drop(parked);
}

on_every_store!(
    bad_parameters_are_400,
    bad_bodies_are_400,
    nothing_is_created_by_a_refused_request,
    wrong_token_is_403,
    unknown_paths_and_recipients_are_404,
    wrong_methods_are_405_with_allow,
    a_full_room_is_409,
    oversized_bodies_are_413_declared_or_streamed,
    other_content_types_are_415,
    a_full_mailbox_is_429_and_stores_nothing_for_anyone,
    too_many_parked_polls_and_rooms_are_503,
);
