//! Several instances sharing one Redis (`--store redis://…`) or one Redis
//! Cluster (`--store redis+cluster://…`): any instance serves any request,
//! a POST on one wakes a poll parked on another, room events happen once,
//! and neither a dead instance nor a restarted Redis loses an acknowledged
//! message. Each test has its own redis-server, or its own 3-master
//! Cluster (`cluster::…`).

mod common;

use signal_relay::wire::{Message, header};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Peer, RedisCluster, RedisServer, TestServer, data, secs, spawn_server};
use signal_relay::Settings;
use signal_relay::settings::StoreChoice;

/// What the instances share.
enum Shared {
    Redis(RedisServer),
    Cluster(RedisCluster),
}

#[derive(Clone, Copy)]
enum Kind {
    Redis,
    Cluster,
}

impl Shared {
    fn start(kind: Kind) -> Shared {
        match kind {
            Kind::Redis => Shared::Redis(RedisServer::start()),
            Kind::Cluster => Shared::Cluster(RedisCluster::start()),
        }
    }

    fn url(&self) -> String {
        match self {
            Shared::Redis(redis) => redis.url(),
            Shared::Cluster(cluster) => cluster.url(),
        }
    }
}

/// Runs each test body on one Redis (`redis::name`) and on a Cluster
/// (`cluster::name`).
macro_rules! on_redis_and_cluster {
    ($($test:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Kind::Redis).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Kind::Cluster).await
                }
            )*
        }
    };
}

on_redis_and_cluster!(
    each_request_of_an_exchange_can_land_on_another_instance,
    leave_and_expiry_happen_once_across_three_instances,
    an_instance_killed_mid_exchange_loses_nothing,
    each_instance_hears_only_its_own_share_of_wake_ups,
);

async fn instances(url: &str, n: usize, configure: impl Fn(&mut Settings)) -> Vec<TestServer> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(
            TestServer::with(|s| {
                configure(s);
                s.store = StoreChoice::Redis(url.to_owned());
            })
            .await,
        );
    }
    all
}

/// Points the peer's next requests at another instance.
fn via(peer: &mut Peer, server: &TestServer) {
    peer.base = server.base.clone();
}

/// Parks a poll (on whatever instance the peer points at) in the background.
fn park(mut peer: Peer, timeout: f64) -> tokio::task::JoinHandle<(Peer, Vec<Message>, Instant)> {
    tokio::spawn(async move {
        let messages = peer.poll(timeout).await;
        (peer, messages, Instant::now())
    })
}

/// Long enough for a poll to be parked in Redis before the test goes on.
async fn let_it_park() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn each_request_of_an_exchange_can_land_on_another_instance(kind: Kind) {
    let redis = Shared::start(kind);
    let servers = instances(&redis.url(), 2, |_| {}).await;
    let (a, b) = (&servers[0], &servers[1]);
    let mut alice = a.peer("call", "alice");
    let mut bob = b.peer("call", "bob");
    alice.join().await;
    assert_eq!(bob.join().await, ["alice"]);
    via(&mut alice, b);
    assert_eq!(
        data(&alice.poll(0.0).await),
        [json!({"type": "join", "peer": "bob"})]
    );

    // bob's poll parks on A; alice's offer is posted to B.
    via(&mut bob, a);
    let parked = park(bob, 5.0);
    let_it_park().await;
    let posted = Instant::now();
    alice
        .send_ok(Some("bob"), &json!({"type": "offer", "sdp": "v=0"}))
        .await;
    let (mut bob, messages, woken) = parked.await.unwrap();
    let offer_wake = woken - posted;
    assert_eq!(data(&messages), [json!({"type": "offer", "sdp": "v=0"})]);

    // And the other way round: alice parks on A, bob answers through B.
    via(&mut alice, a);
    let parked = park(alice, 5.0);
    let_it_park().await;
    via(&mut bob, b);
    let posted = Instant::now();
    bob.send_ok(Some("alice"), &json!({"type": "answer", "sdp": "v=0"}))
        .await;
    let (mut alice, messages, woken) = parked.await.unwrap();
    let answer_wake = woken - posted;
    assert_eq!(data(&messages), [json!({"type": "answer", "sdp": "v=0"})]);
    println!(
        "cross-instance wake-up, POST on one instance to the parked poll's reply on another: {offer_wake:?} and {answer_wake:?}"
    );
    // A missed wake-up would show as the 5 s poll timeout.
    assert!(offer_wake < Duration::from_secs(1) && answer_wake < Duration::from_secs(1));

    // A retry that lands on the other instance is still stored once.
    for server in [a, b] {
        via(&mut bob, server);
        let reply = send_with_key(
            &bob,
            "alice",
            &json!({"type": "candidate", "n": 1}),
            "cand-1",
        )
        .await;
        assert_eq!(reply.status(), StatusCode::ACCEPTED);
    }
    via(&mut alice, b);
    assert_eq!(
        data(&alice.poll(0.0).await),
        [json!({"type": "candidate", "n": 1})]
    );

    // A new poll on B ends the one parked on A with an empty batch.
    via(&mut alice, a);
    let stale = alice.poll_url(5.0);
    let token = alice.token.clone().unwrap();
    let client = alice.client.clone();
    let first = tokio::spawn(async move {
        let reply = client
            .get(stale)
            .header(header::PEER_TOKEN, token)
            .send()
            .await
            .unwrap();
        let status = reply.status();
        (status, reply.json::<Value>().await.unwrap(), Instant::now())
    });
    let_it_park().await;
    via(&mut alice, b);
    let second_started = Instant::now();
    let _second = alice.try_poll(0.5).await.unwrap();
    let (status, body, ended) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["messages"], json!([]));
    assert!(
        ended - second_started < Duration::from_secs(1),
        "the superseded poll on the other instance ended after {:?}",
        ended - second_started
    );
}

async fn leave_and_expiry_happen_once_across_three_instances(kind: Kind) {
    let redis = Shared::start(kind);
    let servers = instances(&redis.url(), 3, |s| s.limits.peer_ttl = secs(0.4)).await;
    let mut alice = servers[0].peer("room", "alice");
    let mut carol = servers[1].peer("room", "carol");
    let mut dave = servers[2].peer("room", "dave");
    alice.join().await;
    carol.join().await;
    dave.join().await;

    via(&mut dave, &servers[0]);
    let left = dave.leave().await;
    assert_eq!(left.json::<Value>().await.unwrap(), json!({"left": true}));

    // carol goes silent; alice keeps polling, through every instance in
    // turn, while all three sweep.
    let mut events = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    let mut turn = 0;
    while Instant::now() < until {
        via(&mut alice, &servers[turn % 3]);
        turn += 1;
        events.extend(data(&alice.poll(0.1).await));
    }
    let count = |event: Value| events.iter().filter(|e| **e == event).count();
    assert_eq!(
        count(json!({"type": "join", "peer": "carol"})),
        1,
        "{events:?}"
    );
    assert_eq!(
        count(json!({"type": "join", "peer": "dave"})),
        1,
        "{events:?}"
    );
    assert_eq!(
        count(json!({"type": "leave", "peer": "dave", "reason": "left"})),
        1,
        "{events:?}"
    );
    assert_eq!(
        count(json!({"type": "leave", "peer": "carol", "reason": "expired"})),
        1,
        "{events:?}"
    );
    assert_eq!(events.len(), 4, "{events:?}");
}

async fn an_instance_killed_mid_exchange_loses_nothing(kind: Kind) {
    let redis = Shared::start(kind);
    let url = redis.url();
    let mut a = spawn_server(&["--store", &url], "info").await;
    let b = spawn_server(&["--store", &url], "info").await;
    let mut alice = Peer::new(&b.base, "call", "alice");
    let mut bob = Peer::new(&a.base, "call", "bob");
    alice.join().await;
    bob.join().await;
    alice.poll(0.0).await;
    let epoch = bob.epoch.clone();

    // bob's poll is parked on A when A dies.
    let parked = tokio::spawn(async move {
        let result = bob.try_poll(10.0).await.map(|(status, _)| status);
        (bob, result)
    });
    let_it_park().await;
    a.child.start_kill().unwrap();
    a.child.wait().await.unwrap();
    let (mut bob, result) = parked.await.unwrap();
    assert!(
        result.is_err(),
        "the poll on the dead instance fails: {result:?}"
    );

    // alice's messages go through B; bob's next poll lands on B and
    // continues from his cursor.
    for n in 1..=3 {
        alice.send_ok(Some("bob"), &json!({"n": n})).await;
    }
    bob.base = b.base.clone();
    let (status, body) = bob.poll_raw(1.0).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let batch = body.expect("a batch");
    assert!(!batch.reset, "{batch:?}");
    assert_eq!(bob.epoch, epoch);
    assert_eq!(
        data(&batch.messages),
        [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
    );
}

#[tokio::test]
async fn a_restarted_redis_loses_nothing_acknowledged_and_the_instances_recover() {
    let mut redis = RedisServer::start_persistent();
    let servers = instances(&redis.url(), 2, |_| {}).await;
    let (a, b) = (&servers[0], &servers[1]);
    let mut alice = b.peer("call", "alice");
    let mut bob = a.peer("call", "bob");
    alice.join().await;
    bob.join().await;
    alice.poll(0.0).await;
    alice.send_ok(Some("bob"), &json!({"n": 1})).await;
    let epoch = bob.epoch.clone();
    let since = bob.since;

    // A poll parked while Redis dies ends cleanly: a JSON 503 to retry.
    let mut watcher = a.peer("call", "alice");
    watcher.token = alice.token.clone();
    watcher.since = alice.since;
    watcher.epoch = alice.epoch.clone();
    let parked = park_raw(watcher, 10.0);
    let_it_park().await;
    redis.kill();
    let (status, body, retry_after) = parked.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Redis"), "{body}");
    assert_eq!(retry_after.as_deref(), Some("2"));

    // While it is down, a send is refused with the same clear error.
    let reply = send_with_key(&alice, "bob", &json!({"n": 2}), "n-2").await;
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers()["retry-after"], "2");
    assert!(reply.text().await.unwrap().contains("unreachable"));

    // Redis comes back; the instances recover by themselves, and the
    // client's retry (same Idempotency-Key) goes through.
    redis.restart();
    let back = Instant::now();
    loop {
        let reply = send_with_key(&alice, "bob", &json!({"n": 2}), "n-2").await;
        if reply.status() == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no recovery in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "Redis restart: first accepted send {:?} after Redis was back",
        back.elapsed()
    );

    // bob, through the other instance, gets both, in order, no reset.
    via(&mut bob, b);
    let (status, body) = bob.poll_raw(1.0).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let batch = body.expect("a batch");
    assert!(!batch.reset, "{batch:?}");
    assert_eq!(bob.epoch, epoch);
    assert_eq!(batch.messages[0].seq, since + 1);
    assert_eq!(data(&batch.messages), [json!({"n": 1}), json!({"n": 2})]);
}

fn park_raw(
    mut peer: Peer,
    timeout: f64,
) -> tokio::task::JoinHandle<(StatusCode, Value, Option<String>)> {
    tokio::spawn(async move {
        let reply = peer
            .client
            .get(peer.poll_url(timeout))
            .header(header::PEER_TOKEN, peer.token.take().unwrap())
            .send()
            .await
            .unwrap();
        let status = reply.status();
        let retry_after = reply
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, reply.json().await.unwrap(), retry_after)
    })
}

async fn send_with_key(peer: &Peer, to: &str, body: &Value, key: &str) -> reqwest::Response {
    peer.client
        .post(peer.signal_url(&format!("&to={to}")))
        .header(header::PEER_TOKEN, peer.token.clone().unwrap())
        .header(header::IDEMPOTENCY_KEY, key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Wake-ups are targeted: an instance hears about the mailboxes it has
/// polls parked on, not the whole cluster's traffic. With 10 pairs per
/// instance on 2, 4 and 6 instances (each pair's receiver parked on one
/// instance, its sender posting through the next), what each instance
/// receives stays at its own share as the cluster grows.
async fn each_instance_hears_only_its_own_share_of_wake_ups(kind: Kind) {
    for instances in [2, 4, 6] {
        wake_ups_per_instance(kind, instances, 10 * instances).await;
    }
}

async fn wake_ups_per_instance(kind: Kind, count: usize, pairs: usize) {
    const MESSAGES: u64 = 10;
    let redis = Shared::start(kind);
    let servers = instances(&redis.url(), count, |s| s.admission.rate_limit = 0).await;
    let mut tasks = Vec::new();
    for pair in 0..pairs {
        let room = format!("share-{pair}");
        let mut receiver = servers[pair % count].peer(&room, "receiver");
        let mut sender = servers[(pair + 1) % count].peer(&room, "sender");
        receiver.join().await;
        sender.join().await;
        receiver.poll(0.0).await;
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            let sending = tokio::spawn(async move {
                for n in 0..MESSAGES {
                    sender.send_ok(Some("receiver"), &json!({ "n": n })).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            while got < MESSAGES {
                got += receiver.poll(5.0).await.len() as u64;
            }
            sending.await.unwrap();
            got
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), MESSAGES);
    }
    let mut received = Vec::new();
    for server in &servers {
        let text = common::get_text(&server.url("/metrics")).await.unwrap();
        received.push(common::metric(&text, "signal_wakeups_received_total") as u64);
    }
    let total: u64 = received.iter().sum();
    let own_share = (pairs / count) as u64 * MESSAGES;
    let everything = pairs as u64 * MESSAGES;
    let store = match kind {
        Kind::Redis => "one Redis",
        Kind::Cluster => "a 3-master Cluster",
    };
    println!(
        "targeted wake-ups on {store}: {count} instances, {pairs} pairs, {MESSAGES} messages each: received per instance {received:?}, total {total} (each instance's own receivers got {own_share} messages; one channel for all would give each instance about {everything} notifications)"
    );
    // Every notification is one message (or room event) for one mailbox:
    // all of them together are about pairs * MESSAGES, so an instance that
    // heard twice its share heard others' traffic.
    for (instance, got) in received.iter().enumerate() {
        assert!(
            *got >= own_share / 2 && *got <= 2 * own_share,
            "instance {instance} of {count} received {got} wake-ups for {own_share} messages of its own"
        );
    }
}

/// A message to a parked poll costs two scripts, counted by Redis
/// (`INFO commandstats`): the send, which reads the mailbox for the parked
/// poll and hands its reply over in the notification, and the next poll.
/// The woken poll's own re-read (a third script) is gone.
#[tokio::test]
async fn a_message_to_a_parked_poll_costs_two_scripts() {
    const MESSAGES: u64 = 20;
    let redis = RedisServer::start();
    let servers = instances(&redis.url(), 2, |s| s.admission.rate_limit = 0).await;
    let mut receiver = servers[0].peer("cost", "receiver");
    let mut sender = servers[1].peer("cost", "sender");
    receiver.join().await;
    sender.join().await;
    receiver.poll(0.0).await;
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut connection)
        .await
        .unwrap();
    for n in 0..MESSAGES {
        let parked = park(receiver, 5.0);
        let_it_park().await;
        sender.send_ok(Some("receiver"), &json!({ "n": n })).await;
        let (back, messages, _) = parked.await.unwrap();
        assert_eq!(data(&messages), [json!({ "n": n })]);
        receiver = back;
    }
    let stats: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    let calls = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let scripts = calls("evalsha") + calls("eval");
    println!(
        "scripts per message to a parked poll: {:.2} ({scripts} for {MESSAGES})",
        scripts as f64 / MESSAGES as f64
    );
    // Each round: the poll that parks, the send. A woken poll that re-read
    // Redis would add a third.
    assert!(
        scripts <= 2 * MESSAGES + 2,
        "{scripts} scripts for {MESSAGES} messages"
    );
}
