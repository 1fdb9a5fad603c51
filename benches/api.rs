//! The HTTP face without sockets: requests built in memory and handed to
//! `Api::handle` over the memory store, so what is timed is the server's own
//! work per request (query and header parsing, the body's checks, routing,
//! the reply's JSON), which the loopback benches in `relay.rs` bury under
//! the client and the kernel.

use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use signal_relay::admission::Admission;
use signal_relay::api::{Api, ApiSettings};
use signal_relay::metrics::Metrics;
use signal_relay::store::{Limits, MemoryStore};

fn api_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryStore::new(Limits::default()));
    let api = Api::new(
        store,
        ApiSettings::default(),
        Arc::new(Metrics::new()),
        Arc::new(Admission::new(0, 0, Vec::new(), 0)),
    );
    let client: SocketAddr = "127.0.0.1:50000".parse().expect("an address");
    let request = |method: Method, query: String, token: &str, body: &str| {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("/signal?{query}"))
            .header("content-type", "application/json");
        if !token.is_empty() {
            builder = builder.header("x-peer-token", token);
        }
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("a request")
    };
    let token_of = |reply: &hyper::Response<Full<Bytes>>| {
        reply.headers()["x-peer-token"]
            .to_str()
            .expect("a token")
            .to_owned()
    };
    // Both peers join with a first poll; their tokens come back.
    let (a, b) = rt.block_on(async {
        let join = |peer: &str| {
            request(
                Method::GET,
                format!("room=bench&peer={peer}&timeout=0"),
                "",
                "",
            )
        };
        let a = token_of(&api.handle(join("a"), client).await);
        let b = token_of(&api.handle(join("b"), client).await);
        (a, b)
    });
    // A trickled candidate of the load generator's size, 300 bytes.
    let candidate = format!(
        r#"{{"type":"candidate","candidate":{{"candidate":"{}","sdpMid":"0"}}}}"#,
        "x".repeat(238)
    );
    assert_eq!(candidate.len(), 300);

    let mut group = c.benchmark_group("api");
    let mut since = 0u64;
    group.bench_function("post_300_bytes_then_poll_it", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let post = request(
                    Method::POST,
                    "room=bench&peer=a&to=b".into(),
                    &a,
                    &candidate,
                );
                let sent = api.handle(post, client).await;
                assert_eq!(sent.status(), 202);
                let poll = request(
                    Method::GET,
                    format!("room=bench&peer=b&since={since}&timeout=0"),
                    &b,
                    "",
                );
                let polled = api.handle(poll, client).await;
                assert_eq!(polled.status(), 200);
                let body = polled
                    .into_body()
                    .collect()
                    .await
                    .expect("a body")
                    .to_bytes();
                let batch: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                since = batch["next"].as_u64().expect("a cursor");
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = api_benches
}
criterion_main!(benches);
