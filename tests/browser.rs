//! The browser client in real Chromium, driven over WebDriver (chromedriver),
//! against a real server: vanilla and trickle ICE, a 3-peer mesh, a call
//! through an nginx reverse proxy that blocks WebSocket, and (in
//! `hostile_network/`) relay-only calls through a real coturn, a call that
//! outlives signaling silence and one that recovers by an ICE restart.
//!
//! Every packet stays on loopback: the binary re-executes itself inside a
//! fresh network namespace whose only interface is `lo` (`unshare --net`),
//! and Chromium gets `--allow-loopback-in-peer-connection`, without which it
//! gathers no ICE candidate on `lo`. Chromium, chromedriver and nginx are
//! installed with apt when missing, before entering the namespace.
//!
//! A custom harness (`harness = false`): scenarios run one after another,
//! each bounded in time, and the last line is `N passed, M failed`.

mod common;
mod hostile_network;
mod invite;
mod page;
mod proxy;
mod standalone;
mod whip_clients;

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use fantoccini::Client;
use page::{CHROMEDRIVER, CHROMIUM, Engine, FIREFOX, Page};
use proxy::{NGINX, Proxy};
use serde_json::{Value, json};
use signal_relay::settings::StoreChoice;
use tokio::net::TcpStream;

const IN_NETNS: &str = "SIGNAL_BROWSER_TEST_NETNS";
/// Longest any one scenario may take before it counts as failed.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);
/// How long to wait for one condition inside a scenario.
const WAIT: Duration = Duration::from_secs(30);

type Outcome = Result<String, String>;
type Scenario = fn(Env) -> Pin<Box<dyn Future<Output = Outcome>>>;

const CC: [Engine; 2] = [Engine::Chromium, Engine::Chromium];
const CF: [Engine; 2] = [Engine::Chromium, Engine::Firefox];
const FC: [Engine; 2] = [Engine::Firefox, Engine::Chromium];
const FF: [Engine; 2] = [Engine::Firefox, Engine::Firefox];

const SCENARIOS: [(&str, Scenario); 32] = [
    ("two_pages_vanilla_ice", |env| {
        Box::pin(two_pages(env, "vanilla", false, CC))
    }),
    ("two_pages_trickle_ice", |env| {
        Box::pin(two_pages(env, "trickle", false, CC))
    }),
    ("three_pages_auto_mesh", |env| {
        Box::pin(three_pages_auto(env, [Engine::Chromium; 3], 2))
    }),
    ("two_pages_through_a_proxy_that_blocks_websocket", |env| {
        Box::pin(two_pages(env, "trickle", true, CC))
    }),
    (
        "two_pages_through_round_robin_over_two_instances_sharing_redis",
        |env| Box::pin(two_pages_on_two_instances(env)),
    ),
    ("two_tabs_auto_over_https", |env| {
        Box::pin(two_tabs_auto_over_https(env))
    }),
    ("the_binary_alone_serves_the_page", |env| {
        Box::pin(standalone::the_binary_alone_serves_the_page(env))
    }),
    ("simple_whip_client_publishes_to_a_page", |env| {
        Box::pin(whip_clients::simple_whip_client_publishes_to_a_page(
            env,
            whip_clients::Via::Direct,
        ))
    }),
    ("simple_whip_client_publishes_through_the_proxy", |env| {
        Box::pin(whip_clients::simple_whip_client_publishes_to_a_page(
            env,
            whip_clients::Via::Proxy,
        ))
    }),
    ("simple_whip_client_publishes_with_a_ticket", |env| {
        Box::pin(whip_clients::simple_whip_client_publishes_to_a_page(
            env,
            whip_clients::Via::Ticket,
        ))
    }),
    ("a_whep_player_plays_a_pages_camera", |env| {
        Box::pin(whip_clients::a_whep_player_plays_a_pages_camera(env, false))
    }),
    ("a_whep_player_plays_through_the_proxy", |env| {
        Box::pin(whip_clients::a_whep_player_plays_a_pages_camera(env, true))
    }),
    ("whep_library_plays_a_pages_camera_with_a_ticket", |env| {
        Box::pin(whip_clients::whep_library::whep_library_plays_a_pages_camera_with_a_ticket(env))
    }),
    ("curl_posts_a_whip_offer_and_prints_the_answer", |env| {
        Box::pin(whip_clients::curl_posts_an_offer_and_prints_the_answer(
            env, false,
        ))
    }),
    ("curl_posts_a_whip_offer_through_the_proxy", |env| {
        Box::pin(whip_clients::curl_posts_an_offer_and_prints_the_answer(
            env, true,
        ))
    }),
    ("whip_errors_through_the_proxy", |env| {
        Box::pin(whip_clients::whip_errors_through_the_proxy(env))
    }),
    ("invite_link_with_a_ticket_chromium_then_firefox", |env| {
        Box::pin(invite::invite_link_connects_a_call(env, CF))
    }),
    ("invite_link_with_a_ticket_firefox_then_chromium", |env| {
        Box::pin(invite::invite_link_connects_a_call(env, FC))
    }),
    ("signal_js_recovers_from_a_server_restart", |env| {
        Box::pin(signal_js_recovers_from_a_server_restart(env))
    }),
    ("signal_js_sends_a_burst_as_batches", |env| {
        Box::pin(signal_js_sends_a_burst_as_batches(env))
    }),
    ("relay_only_call_through_coturn", |env| {
        Box::pin(hostile_network::relay_only_call_through_coturn(env))
    }),
    ("relay_only_call_with_tickets", |env| {
        Box::pin(hostile_network::relay_only_call_with_tickets(env))
    }),
    ("call_survives_signaling_silence", |env| {
        Box::pin(hostile_network::call_survives_signaling_silence(env))
    }),
    ("call_recovers_by_ice_restart", |env| {
        Box::pin(hostile_network::call_recovers_by_ice_restart(env))
    }),
    ("late_messages_open_no_connection", |env| {
        Box::pin(hostile_network::late_messages_open_no_connection(env))
    }),
    // Every engine: the same scenarios with Firefox ESR on one side or both.
    ("firefox_chromium_offers_firefox_answers_trickle", |env| {
        Box::pin(two_pages(env, "trickle", false, CF))
    }),
    ("firefox_chromium_offers_firefox_answers_vanilla", |env| {
        Box::pin(two_pages(env, "vanilla", false, CF))
    }),
    ("firefox_offers_chromium_answers_trickle", |env| {
        Box::pin(two_pages(env, "trickle", false, FC))
    }),
    ("firefox_offers_chromium_answers_vanilla", |env| {
        Box::pin(two_pages(env, "vanilla", false, FC))
    }),
    ("firefox_with_firefox_trickle", |env| {
        Box::pin(two_pages(env, "trickle", false, FF))
    }),
    ("firefox_through_a_proxy_that_blocks_websocket", |env| {
        Box::pin(two_pages(env, "trickle", true, CF))
    }),
    ("firefox_in_a_mixed_mesh_of_three", |env| {
        Box::pin(three_pages_auto(
            env,
            [Engine::Chromium, Engine::Firefox, Engine::Chromium],
            1,
        ))
    }),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in SCENARIOS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    if std::env::var_os(IN_NETNS).is_none() {
        if let Err(error) = install_missing() {
            eprintln!("browser tests cannot run: {error}");
            return ExitCode::FAILURE;
        }
        return reexec_in_private_netns(&args);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(run(filter))
}

/// Installs Chromium, chromedriver, nginx, Redis and coturn from Debian
/// when missing.
fn install_missing() -> Result<(), String> {
    common::apt_install_missing(&[
        (CHROMIUM, "chromium"),
        (CHROMEDRIVER, "chromium-driver"),
        (NGINX, "nginx"),
        (common::REDIS_SERVER, "redis-server"),
        (hostile_network::TURNSERVER, "coturn"),
        (hostile_network::TURN_CLIENT, "coturn"),
        (FIREFOX, "firefox-esr"),
        (whip_clients::WHIP_CLIENT, "simple-whip-client"),
        ("/usr/bin/gcc", "gcc"),
        ("/usr/bin/npm", "npm"),
    ])?;
    whip_clients::whep_library::fetch_if_missing()?;
    page::build_geckodriver_if_missing()
}

/// Runs this binary again in a new network namespace with only `lo`, up.
fn reexec_in_private_netns(args: &[String]) -> ExitCode {
    let exe = std::env::current_exe().expect("own path");
    let mut unshare = Command::new("unshare");
    if !common::is_root() {
        // Without root, a user namespace grants the right to make a netns.
        unshare.arg("--map-root-user");
    }
    let status = unshare
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$0" "$@""#,
        ])
        .arg(exe)
        .args(args)
        .env(IN_NETNS, "1")
        .status();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("browser tests failed ({status})");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("cannot run unshare to isolate the browser tests on loopback: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What every scenario gets: a signal server and a chromedriver.
#[derive(Clone)]
struct Env {
    server: SocketAddr,
    driver: String,
    scratch: PathBuf,
    /// Every browser session opened, so each is closed after its scenario
    /// even when the scenario failed or timed out half-way.
    sessions: Arc<Mutex<Vec<Client>>>,
    /// The geckodriver of each Firefox page, stopped after its scenario.
    drivers: Arc<Mutex<Vec<std::process::Child>>>,
}

impl Env {
    async fn close_sessions(&self) {
        let sessions: Vec<Client> = self
            .sessions
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        for session in sessions {
            let _ = session.close().await;
        }
        let drivers: Vec<std::process::Child> = self
            .drivers
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        for mut driver in drivers {
            let _ = driver.kill();
            let _ = driver.wait();
        }
    }
}

async fn run(filter: Option<String>) -> ExitCode {
    let scratch = std::env::temp_dir().join(format!("signal-browser-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let server = TestServer::start().await;
    let driver_port = free_port();
    let mut driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let env = Env {
        server: server.addr,
        driver: format!("http://127.0.0.1:{driver_port}"),
        scratch: scratch.clone(),
        sessions: Arc::default(),
        drivers: Arc::default(),
    };
    wait_for_port(driver_port).await;

    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in SCENARIOS {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        let outcome = match tokio::time::timeout(SCENARIO_LIMIT, scenario(env.clone())).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("did not finish within {SCENARIO_LIMIT:?}")),
        };
        env.close_sessions().await;
        let took = started.elapsed();
        match outcome {
            Ok(report) => {
                passed += 1;
                println!("test {name} ... ok ({took:.1?}; {report})");
            }
            Err(error) => {
                failed += 1;
                println!("test {name} ... FAILED ({took:.1?}): {error}");
            }
        }
    }
    let _ = driver.kill();
    let _ = driver.wait();
    // Last resort: any browser still running has our scratch folder as its
    // profile, so it can be found (and only it) by its command line.
    let _ = Command::new("pkill").arg("-f").arg(&scratch).status();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    println!("\n{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `a` and `b` are ICE-connected to each other and both show
/// the other's video; returns `b`'s summary.
async fn call_up(a: &Page, b: &Page) -> Result<Value, String> {
    a.wait_for("ICE connected", |s| connected_to(s, 1)).await?;
    let summary = b.wait_for("ICE connected", |s| connected_to(s, 1)).await?;
    a.wait_for_frames(1).await?;
    b.wait_for_frames(1).await?;
    Ok(summary)
}

fn ice_connected(remote: &Value) -> bool {
    matches!(remote["ice"].as_str(), Some("connected" | "completed"))
}

fn connected_to(summary: &Value, peers: usize) -> bool {
    let remotes = summary["remotes"].as_array().cloned().unwrap_or_default();
    remotes.len() == peers && remotes.iter().all(ice_connected)
}

fn members(summary: &Value) -> usize {
    summary["members"].as_array().map_or(0, Vec::len)
}

/// Two pages: Prepare both, Connect on one, both connect with video.
async fn two_pages(env: Env, ice: &str, through_proxy: bool, engines: [Engine; 2]) -> Outcome {
    let room = format!("{ice}-{}", free_port());
    let proxy = if through_proxy {
        Some(Proxy::start(&env, &[env.server]).await?)
    } else {
        None
    };
    let origin = match &proxy {
        Some(proxy) => format!("http://127.0.0.1:{}", proxy.port),
        None => format!("http://{}", env.server),
    };
    let url = format!("{origin}/?room={room}&ice={ice}");
    let (caller, callee, connect_ms) = prepare_and_connect_in(&env, engines, &url).await?;

    caller.no_console_errors().await?;
    callee.no_console_errors().await?;
    let mut report = format!("{ice} ICE: Connect click to ICE connected in {connect_ms:.0} ms");
    if engines != CC {
        report = format!("{:?} calls {:?}, {report}", engines[0], engines[1]);
    }
    if let Some(proxy) = proxy {
        report.push_str(&format!("; {}", proxy.websocket_blocked().await?));
        proxy.stop();
    } else if engines == CC {
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("call-{ice}.png"));
        caller.screenshot(&shot).await?;
        report.push_str(&format!("; screenshot {}", shot.display()));
    }
    caller.close().await;
    callee.close().await;
    Ok(report)
}

/// Opens a caller and a callee at `url`, Prepare on both, Connect on the
/// caller; returns them once both are ICE connected, with the connect time.
async fn prepare_and_connect(env: &Env, url: &str) -> Result<(Page, Page, f64), String> {
    prepare_and_connect_in(env, CC, url).await
}

/// [`prepare_and_connect`] with the caller and callee in `engines`.
async fn prepare_and_connect_in(
    env: &Env,
    [caller_engine, callee_engine]: [Engine; 2],
    url: &str,
) -> Result<(Page, Page, f64), String> {
    let (caller, callee) = open_and_call(
        env,
        (caller_engine, "caller", url),
        (callee_engine, "callee", url),
    )
    .await?;
    let connected = call_up(&callee, &caller).await?;
    let connect_ms = connected["remotes"][0]["connectMs"]
        .as_f64()
        .unwrap_or(f64::NAN);
    Ok((caller, callee, connect_ms))
}

/// Opens two pages (each `(engine, name, url)`), presses Prepare on both and
/// Connect on the first, without waiting for the call.
async fn open_and_call(
    env: &Env,
    (caller_engine, caller_name, caller_url): (Engine, &str, &str),
    (callee_engine, callee_name, callee_url): (Engine, &str, &str),
) -> Result<(Page, Page), String> {
    let caller = Page::open_in(env, caller_engine, caller_name, caller_url).await?;
    let callee = Page::open_in(env, callee_engine, callee_name, callee_url).await?;
    caller.click("prepare").await?;
    caller.wait_for("joining", |s| !s["peer"].is_null()).await?;
    callee.click("prepare").await?;
    caller
        .wait_for("seeing the callee", |s| members(s) == 1)
        .await?;
    caller.click("connect").await?;
    Ok((caller, callee))
}

/// Two instances sharing one Redis behind an nginx upstream that
/// round-robins every request, with no stickiness: the pages' polls and
/// posts land on either instance, and the call still connects.
async fn two_pages_on_two_instances(env: Env) -> Outcome {
    let redis = common::RedisServer::start();
    let url = redis.url();
    let a = TestServer::with(|s| s.store = StoreChoice::Redis(url.clone())).await;
    let b = TestServer::with(|s| s.store = StoreChoice::Redis(url.clone())).await;
    let proxy = Proxy::start(&env, &[a.addr, b.addr]).await?;
    let page = format!(
        "http://127.0.0.1:{}/?room=scale-{}&ice=trickle",
        proxy.port,
        free_port()
    );
    let (caller, callee, connect_ms) = prepare_and_connect(&env, &page).await?;
    caller.close().await;
    callee.close().await;
    proxy.stop();
    // Both instances relayed part of the call.
    let mut relayed = Vec::new();
    for server in [&a, &b] {
        let text = common::get_text(&server.url("/metrics")).await?;
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix("signal_messages_relayed_total "))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        relayed.push(count);
    }
    if relayed.contains(&0.0) {
        return Err(format!(
            "one instance relayed nothing ({relayed:?}): the proxy did not spread the requests"
        ));
    }
    a.shutdown().await;
    b.shutdown().await;
    Ok(format!(
        "trickle ICE through a round-robin proxy over 2 instances + Redis: connected in {connect_ms:.0} ms; messages relayed by each instance {relayed:?}"
    ))
}

/// Three pages with ?auto=1: a full mesh, then one page closes.
async fn three_pages_auto(env: Env, engines: [Engine; 3], closed: usize) -> Outcome {
    let room = format!("mesh-{}", free_port());
    let url = format!("http://{}/?room={room}&auto=1", env.server);
    let mut pages = Vec::new();
    for (name, engine) in ["p1", "p2", "p3"].into_iter().zip(engines) {
        let page = Page::open_in(&env, engine, name, &url).await?;
        page.wait_for("joining", |s| !s["peer"].is_null()).await?;
        pages.push(page);
    }
    let mut slowest: f64 = 0.0;
    for page in &pages {
        let summary = page
            .wait_for("two connections", |s| connected_to(s, 2))
            .await?;
        slowest = slowest.max(slowest_connect(&summary));
        page.wait_for_frames(2).await?;
    }
    let gone = pages.remove(closed);
    let gone_name = gone.summary().await?["peer"].clone();
    let started = Instant::now();
    // Closing the tab fires `pagehide`, and the page leaves the room. A
    // second tab keeps the browser running, as a user's would: closing the
    // last window makes Firefox quit before its keepalive DELETE is out.
    gone.close_tab().await?;
    for page in &pages {
        // Gone because it left (its DELETE), not because its media died.
        page.wait_for("the closed page's tile to go", |s| {
            let remotes = s["remotes"].as_array().cloned().unwrap_or_default();
            remotes.len() == 1
                && remotes[0]["peer"] != gone_name
                && gone_name
                    .as_str()
                    .is_some_and(|name| s["ended"][name] == "it left")
        })
        .await?;
    }
    let dropped_in = started.elapsed();
    // Only now the browser itself: one that quits at once may never send
    // what its closing tab queued.
    gone.close().await;
    for page in pages {
        page.close().await;
    }
    Ok(format!(
        "mesh of 3 ({engines:?}) with video, slowest pair ICE connected {slowest:.0} ms after negotiating began; closing {:?} p{} dropped its tile in {dropped_in:.1?}",
        engines[closed],
        closed + 1
    ))
}

/// The slowest connect time (ms) among a page's connections.
fn slowest_connect(summary: &Value) -> f64 {
    summary["remotes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["connectMs"].as_f64())
        .fold(0.0, f64::max)
}

/// The README's promise: two tabs on the default `/?auto=1` connect with no
/// other step, here over HTTPS with a generated self-signed certificate
/// (what `--tls` gives a LAN; the browser is told to accept it).
async fn two_tabs_auto_over_https(env: Env) -> Outcome {
    let cert_dir = env.scratch.join("tls");
    let cert = cert_dir.join("server.crt");
    let key = cert_dir.join("server.key");
    let server = TestServer::with(|s| s.tls = Some(common::tls(&cert, &key))).await;
    let url = format!("https://localhost:{}/?auto=1", server.addr.port());
    let trust = ["--ignore-certificate-errors"];
    let first = Page::open_with(&env, "tab1", &url, &trust).await?;
    first.wait_for("joining", |s| !s["peer"].is_null()).await?;
    let second = Page::open_with(&env, "tab2", &url, &trust).await?;
    let connected = call_up(&first, &second).await?;
    let room = first
        .eval("return document.getElementById('room-name').textContent")
        .await?;
    if room != "demo" {
        return Err(format!("the default room is {room}, not demo"));
    }
    first.close().await;
    second.close().await;
    server.shutdown().await;
    Ok(format!(
        "HTTPS, room demo: the second tab's call connected {:.0} ms after its offer",
        slowest_connect(&connected)
    ))
}

/// signal.js on its own: sends made while one is in flight go in the next
/// POST together, one batch per run of the same recipient, and arrive as
/// separate messages in the order they were made.
async fn signal_js_sends_a_burst_as_batches(env: Env) -> Outcome {
    let server = TestServer::start().await;
    let mut other = server.peer("burst", "other");
    other.join().await;
    let page = Page::open(&env, "module", &server.url("/")).await?;
    let posts = page
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const realFetch = window.fetch;
               let posts = 0;
               window.fetch = (url, init) => {
                 if (init?.method === 'POST') posts++;
                 return realFetch(url, init);
               };
               import('/signal.js').then(async ({ SignalClient }) => {
                 const client = new SignalClient({ room: 'burst', peer: 'module' });
                 await client.join();
                 posts = 0;
                 // Made at once, as onicecandidate fires in a burst: the
                 // first goes alone, the rest while it is in flight.
                 const sends = [];
                 for (let n = 0; n < 5; n++) sends.push(client.send({ n }, { to: 'other' }));
                 sends.push(client.send({ n: 5 }));
                 for (let n = 6; n < 10; n++) sends.push(client.send({ n }, { to: 'other' }));
                 const receipts = await Promise.all(sends);
                 done({ posts, delivered: receipts.map((r) => r.delivered.join()) });
               });"#,
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    let received: Vec<Value> = other
        .poll(0.0)
        .await
        .iter()
        .filter(|m| common::sender(m) == Some("module"))
        .map(|m| common::parsed(m)["n"].clone())
        .collect();
    page.close().await;
    server.shutdown().await;
    let expected: Vec<Value> = (0..10).map(Value::from).collect();
    if received != expected {
        return Err(format!("other received {received:?}"));
    }
    // [0], [1..=4] to other, [5] to everyone, [6..=9] to other.
    if posts["posts"] != 4 {
        return Err(format!("10 sends took {} POSTs, not 4", posts["posts"]));
    }
    if posts["delivered"]
        .as_array()
        .is_none_or(|d| d.iter().any(|r| r != "other"))
    {
        return Err(format!("receipts: {}", posts["delivered"]));
    }
    Ok("10 sends made at once took 4 POSTs ([0], [1-4], the broadcast [5], [6-9]), received in order".into())
}

/// signal.js on its own: the server restarts under a joined client, which
/// keeps retrying from its cursor, reclaims its name with its own token,
/// reports `reset`, and receives what is sent afterwards.
async fn signal_js_recovers_from_a_server_restart(env: Env) -> Outcome {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let first = TestServer::with(|s| s.listen = listen.parse().unwrap()).await;
    let page = Page::open(&env, "module", &format!("http://{listen}/")).await?;
    page.client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               import('/signal.js').then(async ({ SignalClient }) => {
                 const log = (window.signalLog = []);
                 const client = new SignalClient({ room: 'restart', peer: 'module', maxBackoff: 500 });
                 window.signalClient = client;
                 for (const type of ['peers', 'join', 'leave', 'reset', 'message']) {
                   client.addEventListener(type, (e) => log.push({ type, ...e.detail }));
                 }
                 await client.join();
                 done();
               });"#,
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    first.shutdown().await;
    tokio::time::sleep(Duration::from_millis(800)).await; // a few failed polls
    let second = TestServer::with(|s| s.listen = listen.parse().unwrap()).await;

    page.wait_for_log("a reset after the restart", |log| {
        log.iter().any(|e| e["type"] == "reset")
    })
    .await?;
    // The restarted server knows the module's peer again: message it.
    let mut other = second.peer("restart", "other");
    let peers = other.join().await;
    if peers != ["module"] {
        return Err(format!(
            "after the restart the room holds {peers:?}, not the module"
        ));
    }
    other
        .send_ok(Some("module"), &json!({"after": "restart"}))
        .await;
    page.wait_for_log("the message sent after the restart", |log| {
        log.iter().any(|e| {
            e["type"] == "message"
                && e["from"] == "other"
                && e["data"] == json!({"after": "restart"})
        })
    })
    .await?;
    page.close().await;
    second.shutdown().await;
    Ok("reset seen, name reclaimed with its own token, message delivered".into())
}
