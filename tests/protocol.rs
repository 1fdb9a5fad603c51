//! The wire protocol of docs/protocol.md, exercised over real HTTP against
//! a real server on 127.0.0.1:0.

mod common;

use signal_relay::wire::header;
use std::time::{Duration, Instant};

use common::{Backend, client, data, metric, parsed, receipt as receipt_of, secs, sender};
use reqwest::StatusCode;
use serde_json::{Value, json};
use signal_relay::api::Cors;

async fn a_parked_poll_is_woken_by_a_post(store: Backend) {
    let server = store.start().await;
    let (mut alice, mut bob) = server.pair("r").await;

    let started = Instant::now();
    let parked = tokio::spawn(async move {
        let messages = alice.poll(20.0).await;
        (messages, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !parked.is_finished(),
        "the poll parks while the mailbox is empty"
    );
    let offer = json!({"type": "offer", "sdp": "v=0"});
    let receipt = bob.send_ok(Some("alice"), &offer).await;
    assert_eq!(receipt, receipt_of(&["alice"], false));
    let (messages, waited) = parked.await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(sender(&messages[0]), Some("bob"));
    assert_eq!(parsed(&messages[0]), offer);
    // Woken by the message, not by its 20 s timeout.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

async fn a_poll_with_nothing_times_out_with_an_empty_batch(store: Backend) {
    let server = store.start().await;
    let mut alice = server.peer("r", "alice");
    alice.join().await;
    let cursor = alice.since;
    let started = Instant::now();
    let (status, body) = alice.poll_batch(0.3).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(body.messages.is_empty());
    assert_eq!(body.next, cursor, "an empty batch leaves the cursor");
    assert!(!body.reset, "{body:?}");
}

async fn the_server_clamps_a_long_timeout(store: Backend) {
    let server = store
        .with(|s| {
            s.api.poll_timeout = secs(0.2);
            s.api.max_poll_timeout = secs(0.4);
        })
        .await;
    let mut alice = server.peer("r", "alice");
    alice.join().await;
    let started = Instant::now();
    assert!(alice.poll(3600.0).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

async fn acknowledging_frees_and_a_repeated_cursor_redelivers(store: Backend) {
    let server = store.start().await;
    let mut alice = server.peer("r", "alice");
    let mut bob = server.peer("r", "bob");
    alice.join().await;
    bob.join().await;
    for n in 1..=3 {
        bob.send_ok(Some("alice"), &json!({ "n": n })).await;
    }
    let cursor = alice.since;
    let first = alice.poll(0.0).await;
    let seqs: Vec<u64> = first.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [2, 3, 4, 5], "`join bob` then three messages");

    // The reply was lost: the client polls with the old cursor again.
    alice.since = cursor;
    let again = alice.poll(0.0).await;
    assert_eq!(
        data(&again),
        data(&first),
        "at-least-once: everything after the cursor again"
    );

    // Acknowledge up to seq 4, then only seq 5 remains.
    alice.since = 4;
    let rest = alice.poll(0.0).await;
    assert_eq!(data(&rest), [json!({"n": 3})]);
    // And seq 3 is gone for good: asking for it is a reset, not a gap.
    alice.since = 2;
    let (_, body) = alice.poll_batch(0.0).await;
    assert!(body.reset);
    assert_eq!(body.next, 5);
}

async fn broadcast_reaches_every_other_peer_and_to_only_one(store: Backend) {
    let server = store.start().await;
    let mut peers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|p| server.peer("r", p))
        .collect();
    for p in &mut peers {
        p.join().await;
    }
    let receipt = peers[0].send_ok(None, &json!({"m": "all"})).await;
    assert_eq!(receipt, receipt_of(&["b", "c"], false));
    let receipt = peers[0].send_ok(Some("c"), &json!({"m": "c only"})).await;
    assert_eq!(receipt, receipt_of(&["c"], false));

    let from_a = |messages: Vec<signal_relay::wire::Message>| -> Vec<Value> {
        messages
            .into_iter()
            .filter(|m| sender(m) == Some("a"))
            .map(|m| parsed(&m)["m"].clone())
            .collect()
    };
    assert_eq!(from_a(peers[1].poll(0.0).await), [json!("all")]);
    assert_eq!(
        from_a(peers[2].poll(0.0).await),
        [json!("all"), json!("c only")]
    );
    let own = peers[0].poll(0.0).await;
    assert!(own.iter().all(|m| sender(m).is_none()), "no echo: {own:?}");
}

async fn the_backlog_goes_to_the_next_joiner(store: Backend) {
    let server = store.start().await;
    let mut alice = server.peer("r", "alice");
    alice.join().await;
    let offer = json!({"type": "offer", "sdp": "v=0"});
    let receipt = alice.send_ok(None, &offer).await;
    assert_eq!(receipt, receipt_of(&[], true));

    let mut bob = server.peer("r", "bob");
    let first = bob.poll(0.0).await;
    assert_eq!(
        parsed(&first[0]),
        json!({"type": "peers", "peers": ["alice"]})
    );
    assert_eq!(sender(&first[1]), Some("alice"));
    assert_eq!(parsed(&first[1]), offer);

    let mut carol = server.peer("r", "carol");
    assert_eq!(
        carol.poll(0.0).await.len(),
        1,
        "the backlog went to bob only"
    );
}

async fn room_events_peers_join_and_leave_after_the_ttl(store: Backend) {
    let server = store
        .with(|s| {
            s.limits.peer_ttl = secs(0.5);
        })
        .await;
    let mut alice = server.peer("r", "alice");
    let mut bob = server.peer("r", "bob");
    assert!(alice.join().await.is_empty());
    assert_eq!(bob.join().await, ["alice"]);
    let events = alice.poll(0.0).await;
    assert_eq!(sender(&events[0]), None);
    assert_eq!(parsed(&events[0]), json!({"type": "join", "peer": "bob"}));

    // bob falls silent; alice keeps polling (a parked poll counts as alive,
    // even one longer than the TTL).
    let started = Instant::now();
    let events = alice.poll(10.0).await;
    // Not seen for the TTL: it went quiet, it did not hang up.
    assert_eq!(
        data(&events),
        [json!({"type": "leave", "peer": "bob", "reason": "expired"})]
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "woken by the leave"
    );

    // bob's name is free again, with a fresh token.
    let old_token = bob.token.take();
    bob.since = 0;
    bob.epoch = None;
    assert_eq!(bob.join().await, ["alice"]);
    assert_ne!(bob.token, old_token);
}

async fn delete_leaves_at_once(store: Backend) {
    let server = store.start().await;
    let (mut alice, bob) = server.pair("r").await;
    let left = bob.leave().await;
    assert_eq!(left.status(), StatusCode::OK);
    assert_eq!(left.json::<Value>().await.unwrap(), json!({"left": true}));
    assert_eq!(
        data(&alice.poll(0.0).await),
        [json!({"type": "leave", "peer": "bob", "reason": "left"})]
    );
}

/// `navigator.sendBeacon` can only POST, with a body of its choosing (none,
/// or text/plain): `POST …&leave=1` leaves exactly like DELETE, token and all.
async fn a_beacon_post_with_leave_leaves_like_delete(store: Backend) {
    let server = store.start().await;
    let (mut alice, bob) = server.pair("r").await;
    let token = bob.token.clone().expect("bob's token");
    let beacon = |query: &str| {
        client()
            .post(bob.signal_url(query))
            .header("Content-Type", "text/plain;charset=UTF-8")
            .body("ignored")
            .send()
    };
    // The token is checked as for DELETE, and a bad `leave` is refused.
    let no_token = beacon("&leave=1").await.unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let bad = beacon(&format!("&leave=yes&token={token}")).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        data(&alice.poll(0.0).await).is_empty(),
        "refusals change nothing"
    );
    let left = beacon(&format!("&leave=1&token={token}")).await.unwrap();
    assert_eq!(left.status(), StatusCode::OK);
    assert_eq!(left.json::<Value>().await.unwrap(), json!({"left": true}));
    assert_eq!(
        data(&alice.poll(0.0).await),
        [json!({"type": "leave", "peer": "bob", "reason": "left"})]
    );
}

async fn tokens_are_required_and_checked(store: Backend) {
    let server = store.start().await;
    let mut alice = server.peer("r", "alice");
    alice.join().await;
    let token = alice.token.clone().unwrap();
    assert_eq!(token.len(), 32, "128 bits as hex");

    // Someone else using alice's name: without the token, with a wrong one.
    let mut mallory = server.peer("r", "alice");
    let (status, error) = mallory.poll_error(0.0).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error.contains("X-Peer-Token"), "{error}");
    mallory.token = Some("0123456789abcdef0123456789abcdef".into());
    assert_eq!(mallory.poll_raw(0.0).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        mallory.send(None, &json!({})).await.status(),
        StatusCode::FORBIDDEN
    );
    let delete = client()
        .delete(server.url("/signal?room=r&peer=alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::FORBIDDEN);

    // The right token works in the header and in the query.
    assert_eq!(alice.poll_raw(0.0).await.0, StatusCode::OK);
    let by_query = client()
        .get(server.url(&format!(
            "/signal?room=r&peer=alice&timeout=0&token={token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), StatusCode::OK);
    assert!(
        by_query.headers().get(header::PEER_TOKEN).is_none(),
        "only on creation"
    );
}

async fn an_offered_token_is_adopted(store: Backend) {
    let server = store.start().await;
    let mut alice = server.peer("r", "alice");
    alice.token = Some("alice-chose-this-secret".into());
    let receipt = alice.send_ok(None, &json!({"hello": 1})).await;
    assert!(receipt.queued, "a first POST joins and queues");
    assert_eq!(alice.token.as_deref(), Some("alice-chose-this-secret"));
    assert_eq!(parsed(&alice.poll(0.0).await[0])["type"], "peers");
}

async fn a_second_poll_ends_the_first(store: Backend) {
    let server = store.start().await;
    let mut first = server.peer("r", "alice");
    first.join().await;
    let mut second = server.peer("r", "alice");
    second.token = first.token.clone();
    second.since = first.since;
    second.epoch = first.epoch.clone();

    let started = Instant::now();
    let parked = tokio::spawn(async move { first.poll_batch(20.0).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let newer = tokio::spawn(async move { second.poll_batch(0.5).await });
    let (status, body) = parked.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.messages.is_empty());
    assert!(started.elapsed() < Duration::from_secs(10), "ended early");
    assert_eq!(newer.await.unwrap().0, StatusCode::OK);
}

async fn a_poll_whose_client_hung_up_loses_nothing(store: Backend) {
    let server = store.start().await;
    let (mut alice, mut bob) = server.pair("r").await;
    // alice's poll is abandoned mid-wait (tab closed, proxy cut it).
    let url = alice.signal_url(&format!("&since={}&timeout=20", alice.since));
    let abandoned = client()
        .get(url)
        .header(header::PEER_TOKEN, alice.token.clone().unwrap())
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(abandoned.is_err());
    bob.send_ok(Some("alice"), &json!({"kept": true})).await;
    assert_eq!(data(&alice.poll(5.0).await), [json!({"kept": true})]);
}

async fn a_foreign_epoch_resets(store: Backend) {
    let server = store
        .with(|s| {
            s.limits.peer_ttl = secs(0.3);
        })
        .await;
    let mut alice = server.peer("r", "alice");
    alice.token = Some("alice-keeps-her-token".into());
    alice.join().await;
    let old_epoch = alice.epoch.clone().unwrap();
    // alice's connection drops for longer than the TTL: she expires.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = alice.poll_batch(0.0).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "her own token re-creates her: {body:?}"
    );
    assert!(body.reset, "{body:?}");
    assert_ne!(&*body.epoch, old_epoch.as_str());
    assert_eq!(
        parsed(&body.messages[0])["type"],
        "peers",
        "nothing skipped"
    );
    assert_eq!(body.next, 1);
    let (_, calm) = alice.poll_batch(0.0).await;
    assert!(!calm.reset, "the new cursor is honoured: {calm:?}");
}

async fn a_restarted_server_resets_its_clients(store: Backend) {
    let first = store.start().await;
    let mut alice = first.peer("r", "alice");
    alice.token = Some("alice-keeps-her-token".into());
    alice.join().await;
    let (old_cursor, old_epoch) = (alice.since, alice.epoch.clone());
    first.shutdown().await;

    let second = store.start().await;
    alice.base = second.base.clone();
    let (status, body) = alice.poll_batch(0.0).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert!(body.reset);
    assert_ne!(Some(body.epoch.to_string()), old_epoch);
    assert!(old_cursor > 0);
    assert_eq!(parsed(&body.messages[0])["type"], "peers");
}

async fn a_cursor_beyond_the_mailbox_resets(store: Backend) {
    let server = store.start().await;
    let mut alice = server.peer("r", "alice");
    alice.join().await;
    alice.since = 999;
    let (_, body) = alice.poll_batch(0.0).await;
    assert!(body.reset);
    assert_eq!(body.next, 1);
}

async fn a_batch_arrives_as_that_many_messages_in_order(store: Backend) {
    let server = store.start().await;
    let mut peers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|p| server.peer("r", p))
        .collect();
    for p in &mut peers {
        p.join().await;
    }
    let receipt = peers[0]
        .send_ok(Some("b"), &json!([{"n": 1}, {"n": 2}, {"n": 3}]))
        .await;
    assert_eq!(receipt, receipt_of(&["b"], false));
    let receipt = peers[0].send_ok(None, &json!([{"n": 4}, {"n": 5}])).await;
    assert_eq!(receipt, receipt_of(&["b", "c"], false));
    let from_a = |messages: Vec<signal_relay::wire::Message>| {
        let from_a: Vec<_> = messages
            .into_iter()
            .filter(|m| sender(m) == Some("a"))
            .collect();
        let seqs: Vec<u64> = from_a.iter().map(|m| m.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "one seq each: {seqs:?}"
        );
        from_a
            .iter()
            .map(|m| parsed(m)["n"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(from_a(peers[1].poll(0.0).await), [1, 2, 3, 4, 5]);
    assert_eq!(from_a(peers[2].poll(0.0).await), [4, 5]);

    // A batch sent to an empty room waits in the backlog, in order.
    let mut alone = server.peer("r2", "alone");
    alone.join().await;
    let receipt = alone.send_ok(None, &json!([{"n": 1}, {"n": 2}])).await;
    assert_eq!(receipt, receipt_of(&[], true));
    let mut joiner = server.peer("r2", "joiner");
    let first = joiner.poll(0.0).await;
    let queued: Vec<_> = first[1..].iter().map(|m| parsed(m)["n"].clone()).collect();
    assert_eq!(queued, [1, 2]);
}

async fn a_batch_is_stored_whole_or_not_at_all(store: Backend) {
    let server = store
        .with(|s| {
            s.limits.mailbox_messages = 4;
            s.limits.backlog_messages = 3;
        })
        .await;
    let mut alice = server.peer("r", "alice");
    let mut bob = server.peer("r", "bob");
    alice.join().await;
    bob.join().await;
    bob.poll(0.0).await;
    alice
        .send_ok(Some("bob"), &json!([{"n": 1}, {"n": 2}, {"n": 3}]))
        .await;
    let refused = alice.send(Some("bob"), &json!([{"n": 4}, {"n": 5}])).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    alice.send_ok(Some("bob"), &json!({"n": 4})).await;
    let got: Vec<_> = bob
        .poll(0.0)
        .await
        .iter()
        .map(|m| parsed(m)["n"].clone())
        .collect();
    assert_eq!(got, [1, 2, 3, 4], "nothing of the refused batch");

    // The backlog likewise.
    let mut alone = server.peer("r2", "alone");
    alone.join().await;
    alone.send_ok(None, &json!([{"n": 1}, {"n": 2}])).await;
    let refused = alone.send(None, &json!([{"n": 3}, {"n": 4}])).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let mut joiner = server.peer("r2", "joiner");
    assert_eq!(joiner.poll(0.0).await.len(), 1 + 2, "peers, then 1 and 2");

    // A retried batch is stored once.
    let mut carol = server.peer("r3", "carol");
    let mut dave = server.peer("r3", "dave");
    carol.join().await;
    dave.join().await;
    dave.poll(0.0).await;
    for _ in 0..2 {
        let reply = carol
            .client
            .post(carol.signal_url("&to=dave"))
            .header(header::PEER_TOKEN, carol.token.clone().unwrap())
            .header(header::IDEMPOTENCY_KEY, "candidates-1")
            .json(&json!([{"n": 1}, {"n": 2}]))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(dave.poll(0.0).await.len(), 2, "the batch once");
}

async fn an_idempotent_retry_is_stored_once(store: Backend) {
    let server = store.start().await;
    let mut alice = server.peer("r", "alice");
    let mut bob = server.peer("r", "bob");
    alice.join().await;
    bob.join().await;
    let post = |key: &str| {
        alice
            .client
            .post(alice.signal_url(""))
            .header(header::PEER_TOKEN, alice.token.clone().unwrap())
            .header(header::IDEMPOTENCY_KEY, key)
            .json(&json!({"type": "offer", "sdp": "v=0"}))
    };
    let first = post("offer-1").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    // A proxy answered 502 to the first attempt; the client retries.
    let retry = post("offer-1").send().await.unwrap();
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    let other = post("offer-2").send().await.unwrap();
    assert_eq!(other.status(), StatusCode::ACCEPTED);

    let offers = bob
        .poll(0.0)
        .await
        .into_iter()
        .filter(|m| sender(m) == Some("alice"))
        .count();
    assert_eq!(offers, 2, "offer-1 once, offer-2 once");
}

async fn raw_sdp_is_wrapped_like_a_session_description(store: Backend) {
    let server = store.start().await;
    let (mut alice, mut bob) = server.pair("r").await;
    let sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    for (query, kind) in [("", "offer"), ("&type=answer", "answer")] {
        let reply = bob.send_sdp(query, sdp).await;
        assert_eq!(reply.status(), StatusCode::ACCEPTED);
        // Read the raw reply: same shape and key order as
        // RTCSessionDescription.toJSON().
        let raw = client()
            .get(alice.signal_url(&format!("&since={}&timeout=0", alice.since)))
            .header(header::PEER_TOKEN, alice.token.clone().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            raw.contains(&format!(r#""data":{{"type":"{kind}","sdp":"v=0\r\n"#)),
            "{raw}"
        );
        let messages = alice.poll(0.0).await;
        assert_eq!(parsed(&messages[0]), json!({"type": kind, "sdp": sdp}));
    }
}

async fn every_signal_reply_is_no_store_and_cors_is_off_by_default(store: Backend) {
    let server = store.start().await;
    let ok = client()
        .get(server.url("/signal?room=r&peer=a&timeout=0"))
        .header("Origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    let error = client().get(server.url("/signal")).send().await.unwrap();
    for reply in [&ok, &error] {
        assert_eq!(reply.headers()["cache-control"], "no-store");
        assert!(reply.headers().get("access-control-allow-origin").is_none());
    }
    let preflight = client()
        .request(
            reqwest::Method::OPTIONS,
            server.url("/signal?room=r&peer=a"),
        )
        .header("Origin", "https://elsewhere.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

async fn cors_when_enabled_answers_preflight_and_exposes_the_token(store: Backend) {
    let server = store
        .with(|s| {
            s.api.cors = Cors::from_origins(&["https://app.example".into()]).unwrap();
        })
        .await;
    let preflight = client()
        .request(
            reqwest::Method::OPTIONS,
            server.url("/signal?room=r&peer=a"),
        )
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type, x-peer-token",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST") && methods.contains("GET"));
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains(header::PEER_TOKEN) && allowed.contains("content-type"));

    let reply = client()
        .get(server.url("/signal?room=r&peer=a&timeout=0"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = reply.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains(header::PEER_TOKEN));

    let stranger = client()
        .get(server.url("/signal?room=r&peer=b&timeout=0"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        stranger
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let any = store
        .with(|s| {
            s.api.cors = Cors::from_origins(&["*".into()]).unwrap();
        })
        .await;
    let reply = client()
        .get(any.url("/signal?room=r&peer=a&timeout=0"))
        .header("Origin", "https://whoever.example")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.headers()["access-control-allow-origin"], "*");
}

async fn health_and_the_page(store: Backend) {
    let server = store.start().await;
    let health = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let page = client().get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let etag = page.headers()["etag"].clone();
    assert!(page.text().await.unwrap().contains("<html"));

    // A browser revalidating an unchanged page gets a 304 and no body.
    let again = client()
        .get(server.url("/"))
        .header("If-None-Match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let icon = client()
        .get(server.url("/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), StatusCode::OK);
}

async fn config_serves_the_ice_servers(store: Backend) {
    let server = store.start().await;
    let reply = client().get(server.url("/config")).send().await.unwrap();
    assert_eq!(reply.headers()["cache-control"], "no-store");
    assert_eq!(
        reply.json::<Value>().await.unwrap(),
        json!({"iceServers": []})
    );

    let server = store
        .with(|s| {
            s.api.ice_servers = vec![
                json!({"urls": "stun:stun.example.org:3478"}),
                json!({"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}),
            ]
        })
        .await;
    let reply: Value = client()
        .get(server.url("/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        reply,
        json!({"iceServers": [
            {"urls": "stun:stun.example.org:3478"},
            {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}
        ]})
    );
}

async fn metrics_count_relays_latency_rejections_and_parked_polls(store: Backend) {
    let server = store.start().await;
    let (mut alice, mut bob) = server.pair("r").await;
    // The counters are the instance's own: both on the one scraped.
    alice.base = server.base.clone();
    bob.base = server.base.clone();
    bob.send_ok(Some("alice"), &json!({"n": 1})).await;
    bob.send_ok(None, &json!({"n": 2})).await;
    alice.poll(0.0).await;
    client().get(server.url("/nope")).send().await.unwrap();
    let parked = tokio::spawn(async move { alice.poll(5.0).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let reply = client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(
        reply.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = reply.text().await.unwrap();
    assert_eq!(
        metric(&text, "signal_messages_relayed_total"),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "signal_delivery_latency_seconds_count"),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"signal_rejected_requests_total{status="404"}"#),
        1.0
    );
    assert_eq!(metric(&text, "signal_parked_polls"), 1.0, "{text}");
    assert_eq!(metric(&text, "signal_mailboxes"), 2.0);
    assert_eq!(metric(&text, "signal_rooms"), 1.0);
    bob.send_ok(Some("alice"), &json!({"n": 3})).await;
    parked.await.unwrap();
}

on_every_store!(
    a_parked_poll_is_woken_by_a_post,
    a_poll_with_nothing_times_out_with_an_empty_batch,
    the_server_clamps_a_long_timeout,
    acknowledging_frees_and_a_repeated_cursor_redelivers,
    broadcast_reaches_every_other_peer_and_to_only_one,
    the_backlog_goes_to_the_next_joiner,
    room_events_peers_join_and_leave_after_the_ttl,
    delete_leaves_at_once,
    a_beacon_post_with_leave_leaves_like_delete,
    tokens_are_required_and_checked,
    an_offered_token_is_adopted,
    a_second_poll_ends_the_first,
    a_poll_whose_client_hung_up_loses_nothing,
    a_foreign_epoch_resets,
    a_restarted_server_resets_its_clients,
    a_cursor_beyond_the_mailbox_resets,
    a_batch_arrives_as_that_many_messages_in_order,
    a_batch_is_stored_whole_or_not_at_all,
    an_idempotent_retry_is_stored_once,
    raw_sdp_is_wrapped_like_a_session_description,
    every_signal_reply_is_no_store_and_cors_is_off_by_default,
    cors_when_enabled_answers_preflight_and_exposes_the_token,
    health_and_the_page,
    config_serves_the_ice_servers,
    metrics_count_relays_latency_rejections_and_parked_polls,
);
