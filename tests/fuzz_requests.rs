//! Request parsing under arbitrary input: methods, paths, query strings,
//! headers and bodies of every content type, fed straight to the HTTP
//! layer (no network, so thousands of cases a second). No input may panic,
//! and every reply must be a well-formed status; every error carries a
//! JSON body `{"error": "..."}` and nothing else.
//!
//! `SIGNAL_FUZZ_CASES` sets the case count (CI runs the default, 4000).

use signal_relay::wire::header;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use proptest::prelude::*;
use signal_relay::admission::Admission;
use signal_relay::api::{Api, ApiSettings, Cors};
use signal_relay::store::{Limits, MemoryStore};
use signal_relay::turn::{TurnMinter, TurnSecret};

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["GET", "POST", "DELETE", "OPTIONS", "PUT", "HEAD", "PATCH"])
            .prop_map(str::to_owned),
        1 => "[A-Z]{1,8}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("/signal".to_owned()),
        1 => prop::sample::select(vec!["/", "/healthz", "/config", "/metrics", "/index.html", "/signal/"])
            .prop_map(str::to_owned),
        1 => "/[a-zA-Z0-9._%/-]{0,24}",
    ]
}

/// Query values: valid names and numbers, edge cases, and garbage,
/// including broken percent-escapes.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9_.-]{1,8}",
        2 => prop::sample::select(vec![
            "0", "1", "-1", "18446744073709551615", "18446744073709551616", "1e9", "NaN", "inf",
            "0.5", "", "offer", "answer", "rollback", "%", "%zz", "%00", "%ff%fe", "a%20b",
        ])
        .prop_map(str::to_owned),
        // Anything at all, percent-encoded as a client would send it: the
        // server sees it decoded (including invalid UTF-8).
        2 => prop::collection::vec(any::<u8>(), 0..70)
            .prop_map(|bytes| form_urlencoded::byte_serialize(&bytes).collect()),
        1 => "[a-zA-Z0-9]{60,70}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        8 => prop::sample::select(vec!["room", "peer", "to", "since", "epoch", "timeout", "token", "type"])
            .prop_map(str::to_owned),
        1 => "[a-z]{1,6}",
    ];
    prop::collection::vec((key, value()), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        4 => prop::sample::select(vec![
            "application/json", "application/sdp", "application/json; charset=utf-8",
            "APPLICATION/SDP", "text/plain", "application/x-www-form-urlencoded", "",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,30}",
    ])
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec![
            r#"{"type":"offer","sdp":"v=0"}"#, "{}", "[]", "\"s\"", "null", "{", "}", "{\"a\":",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        2 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (1usize..200).prop_map(|depth| format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        1 => "[ -~]{0,200}".prop_map(String::into_bytes),
    ]
}

fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        3 => "[a-zA-Z0-9_.~-]{0,140}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ])
}

fn api() -> (Api<MemoryStore>, tokio::runtime::Runtime) {
    let store = Arc::new(MemoryStore::new(Limits {
        rooms: 50,
        ..Limits::default()
    }));
    let api = Api::new(
        store,
        ApiSettings {
            max_body: 256,
            poll_timeout: Duration::ZERO,
            // Every poll answers at once: nothing parks in a fuzz run.
            max_poll_timeout: Duration::ZERO,
            cors: Cors::AnyOrigin,
            // So fuzzed /config queries reach the minting path too.
            turn: Some(TurnMinter::new(
                vec!["turn:127.0.0.1:3478?transport=tcp".into()],
                TurnSecret::new("fuzz-secret").expect("a secret"),
                Duration::from_secs(60),
            )),
            body_timeout: Duration::from_secs(1),
            ..ApiSettings::default()
        },
        Arc::default(),
        Arc::new(Admission::new(0, 0, Vec::new(), 0)),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (api, runtime)
}

thread_local! {
    static API: (Api<MemoryStore>, tokio::runtime::Runtime) = api();
}

fn cases() -> u32 {
    std::env::var("SIGNAL_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4000)
}

/// One generated request.
type Input = (
    String,
    String,
    String,
    Option<String>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<u8>,
);

fn input() -> impl Strategy<Value = Input> {
    (
        method(),
        path(),
        query(),
        content_type(),
        header_value(),
        header_value(),
        body(),
    )
}

/// Sends one input through the HTTP layer and checks the reply. Returns
/// false when the input is not even an HTTP request (hyper refuses those
/// before any handler runs).
fn check(input: Input) -> Result<bool, TestCaseError> {
    let (method, path, query, content_type, token, idempotency_key, body) = input;
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let mut builder = Request::builder().method(method.as_str()).uri(uri.as_str());
    if let Some(ct) = &content_type {
        builder = builder.header("content-type", ct.as_str());
    }
    for (name, value) in [
        (header::PEER_TOKEN, &token),
        (header::IDEMPOTENCY_KEY, &idempotency_key),
    ] {
        if let Some(Ok(value)) = value
            .as_ref()
            .map(|v| hyper::header::HeaderValue::from_bytes(v))
        {
            builder = builder.header(name, value);
        }
    }
    let Ok(request) = builder.body(Full::new(Bytes::from(body))) else {
        return Ok(false);
    };
    let (status, bytes) = API.with(|(api, runtime)| {
        runtime.block_on(async {
            let reply = api
                .handle(request, "127.0.0.1:9".parse().expect("addr"))
                .await;
            let status = reply.status();
            (
                status,
                reply.into_body().collect().await.expect("body").to_bytes(),
            )
        })
    });
    prop_assert!((200..600).contains(&status.as_u16()), "{status}");
    prop_assert!(
        status != hyper::StatusCode::INTERNAL_SERVER_ERROR,
        "{:?}",
        bytes
    );
    if status.is_client_error() || status.is_server_error() {
        let error: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {bytes:?}")))?;
        let object = error
            .as_object()
            .ok_or_else(|| TestCaseError::fail("not an object"))?;
        prop_assert_eq!(object.len(), 1, "{}", error);
        prop_assert!(
            error["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            error
        );
    }
    Ok(true)
}

#[test]
fn every_request_gets_a_well_formed_reply() {
    let cases = cases();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let handled = AtomicU64::new(0);
    let result = runner.run(&input(), |input| {
        if check(input)? {
            handled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    let handled = handled.into_inner();
    eprintln!("fuzz: {cases} cases, {handled} reached the HTTP layer, every reply well-formed");
    if let Err(error) = result {
        panic!("{error}");
    }
    // The generator must mostly produce real requests, or the test means little.
    assert!(
        handled * 10 >= u64::from(cases) * 8,
        "only {handled} of {cases} were requests"
    );
}
