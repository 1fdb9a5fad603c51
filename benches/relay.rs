//! End to end over loopback: a real server (started once, on port 0) and
//! the project's Rust client, through HTTP/1.1.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use signal_relay::client::{Client, Peer};
use signal_relay::{Server, Settings};

fn relay_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("an address"),
        ..Settings::default()
    };
    // One client address makes every request: lift the per-address limit.
    settings.admission.rate_limit = 0;
    let server = rt.block_on(Server::bind(settings)).expect("server binds");
    let base = format!("http://{}", server.local_addr());
    rt.spawn(server.run(std::future::pending()));

    let client = Client::new(&base).expect("client");
    let (a, mut b) = rt.block_on(async {
        let mut a = Peer::new(&client, "bench", "a");
        let mut b = Peer::new(&client, "bench", "b");
        a.join().await.expect("a joins");
        b.join().await.expect("b joins");
        (a, b)
    });
    let message = json!({"type": "candidate", "ice": {"candidate": "x".repeat(256)}});
    let mut group = c.benchmark_group("relay");

    // b's poll is in flight (parked, or about to be) when a posts: the
    // server wakes it and it returns with the message.
    group.bench_function("one_message_post_wakes_parked_poll", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let mut poller = b.clone();
                let parked = tokio::spawn(async move {
                    let batch = poller.poll(Duration::from_secs(25)).await.expect("poll");
                    (poller, batch.messages.len())
                });
                a.send(Some("b"), &message).await.expect("send");
                let (poller, n) = parked.await.expect("task");
                assert!(n >= 1);
                b = poller;
            })
        })
    });

    group.bench_function("burst_of_16_then_one_poll", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                for _ in 0..16 {
                    a.send(Some("b"), &message).await.expect("send");
                }
                let batch = b.poll(Duration::from_secs(25)).await.expect("poll");
                assert_eq!(batch.messages.len(), 16);
            })
        })
    });

    // The same 16 messages as one POST: how the browser client sends a
    // burst of trickled candidates.
    let burst = vec![message.clone(); 16];
    group.bench_function("batch_of_16_then_one_poll", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                a.send(Some("b"), &burst).await.expect("send");
                let batch = b.poll(Duration::from_secs(25)).await.expect("poll");
                assert_eq!(batch.messages.len(), 16);
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = relay_benches
}
criterion_main!(benches);
