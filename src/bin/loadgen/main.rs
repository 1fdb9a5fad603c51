//! Load generator for signal-relay. Every workload is bounded in count and
//! time, and prints one JSON line with its figures.
//!
//!   loadgen floor    --count 20000
//!   loadgen pingpong --count 20000
//!   loadgen stream   --pairs 100 --window 1 --seconds 10 --server-pid PID
//!   loadgen parked   --clients 5000 --hold 5 --server-pid PID
//!   loadgen setup    --pairs 20 --seconds 10 --server-pid PID
//!   loadgen --target nchan stream --pairs 100 --window 1 --seconds 10
//!   loadgen compare  --runs 3 --seconds 5   (ours against nchan, interleaved)
//!
//! Run the server first (`cargo run --release`); `--url` points elsewhere.
//! With `--target nchan` the load generator starts an nginx+nchan of its
//! own (`benches/nchan.conf`) and runs the workload against it instead.

mod call;
mod compare;
mod nchan;
mod parked;
mod pingpong;
mod spawned;
mod stats;
mod stream;
mod target;

use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::json;
use signal_relay::client::{Client, ClientError, Peer};

use stats::{Latencies, round, rss_kib};
use stream::stream;
use target::Target;

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for signal-relay")]
struct Cli {
    /// The server's base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Where `stream` receivers poll, when not at --url: another instance
    /// sharing the same Redis, so every message crosses instances.
    #[arg(long, global = true)]
    receive_url: Option<String>,
    /// The server's process id, to report its CPU time and memory from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// What to load: our server at --url, or an nginx+nchan the load
    /// generator starts (every workload but floor and soak).
    #[arg(long, global = true, value_enum, default_value_t = TargetKind::SignalRelay)]
    target: TargetKind,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    SignalRelay,
    Nchan,
}

#[derive(Subcommand)]
enum Workload {
    /// Sequential bare exchanges (GET /healthz): the cost of HTTP itself.
    Floor {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
    /// One pair: A sends to B, B echoes, A sends the next on receipt.
    Pingpong(PingpongArgs),
    /// Independent pairs, each sender keeping a window of messages in flight.
    Stream(StreamArgs),
    /// Many idle parked polls; then one message to each mailbox.
    Parked(ParkedArgs),
    /// Call set-ups back to back: join, offer, answer, 8 trickled
    /// candidates each way, leave.
    Setup(SetupArgs),
    /// Every workload that runs on both, on a fresh server of ours and a
    /// fresh nginx+nchan per measurement, interleaved; prints a table of
    /// medians (on stderr, with every run's report).
    Compare(CompareArgs),
    /// A steady mixed load for a long time: streaming pairs plus rooms
    /// coming and going, with the server's memory sampled every second.
    Soak(SoakArgs),
}

#[derive(Args)]
struct SoakArgs {
    #[command(flatten)]
    stream: StreamArgs,
    /// Rooms created and left per second alongside the stream.
    #[arg(long, default_value_t = 50)]
    churn: u32,
}

#[derive(Args)]
pub struct PingpongArgs {
    /// Round trips.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Message size in bytes (an ICE candidate is about 300).
    #[arg(long, default_value_t = 300)]
    pub size: usize,
}

#[derive(Args)]
pub struct StreamArgs {
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    /// Messages each sender keeps in flight. Above 1 the POSTs race each
    /// other, so the order they are stored in is not the order they were
    /// numbered in, and `reordered` is reported only for a window of 1.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 300)]
    pub size: usize,
}

#[derive(Args)]
struct CompareArgs {
    /// Our server's binary (by default the signal-relay beside this one).
    #[arg(long)]
    server: Option<String>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Parked polls in the parked workload, one measurement per count.
    #[arg(long, value_delimiter = ',', default_value = "5000,15000")]
    parked: Vec<usize>,
}

#[derive(Args)]
struct SetupArgs {
    /// Calls being set up at once.
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// How long to start new calls, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

#[derive(Args)]
pub struct ParkedArgs {
    /// Idle parked polls to hold.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Peers per room (ours; on nchan every poll has its own channel).
    #[arg(long, default_value_t = 4)]
    pub room_size: usize,
    /// Seconds to hold them before the fan-out.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// Concurrent sends during the fan-out.
    #[arg(long, default_value_t = 64)]
    pub senders: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    raise_nofile_limit();
    let clients = Client::new(&cli.url).and_then(|client| {
        let receiving = match &cli.receive_url {
            Some(url) => Client::new(url)?,
            None => client.clone(),
        };
        Ok((client, receiving))
    });
    let (client, receiving) = match clients {
        Ok(clients) => clients,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Workload::Compare(args) = &cli.workload {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("signal-relay")))
            .map(|path| path.display().to_string());
        let Some(server) = args.server.clone().or(beside) else {
            eprintln!("loadgen: name our server's binary with --server");
            return std::process::ExitCode::FAILURE;
        };
        let runs = args.runs.max(1);
        let parked: Vec<usize> = args.parked.iter().map(|&n| n.max(1)).collect();
        return report(compare::compare(&server, runs, args.seconds, &parked).await);
    }
    if cli.target == TargetKind::Nchan {
        let started = nchan::Nchan::start()
            .and_then(|server| Target::on_nchan(&server.base).map(|target| (server, target)));
        let result = match started {
            Ok((server, target)) => {
                let pid = Some(server.pid());
                match cli.workload {
                    Workload::Stream(args) => stream(&target, args, pid).await,
                    Workload::Setup(args) => {
                        call::setup(&target, args.pairs, args.seconds, pid).await
                    }
                    Workload::Pingpong(args) => pingpong::pingpong(&target, args).await,
                    Workload::Parked(args) => parked::on_nchan(&server, args).await,
                    _ => Err("--target nchan runs every workload but floor and soak".to_owned()),
                }
            }
            Err(error) => Err(error),
        };
        return report(result);
    }
    let result = match cli.workload {
        Workload::Floor { count } => floor(&client, count).await,
        Workload::Pingpong(args) => {
            let target = Target::Ours {
                senders: client.clone(),
                receivers: client.clone(),
            };
            pingpong::pingpong(&target, args).await
        }
        Workload::Stream(args) => {
            let target = Target::Ours {
                senders: client,
                receivers: receiving,
            };
            stream(&target, args, cli.server_pid).await
        }
        Workload::Parked(args) => parked::parked(&client, args, cli.server_pid).await,
        Workload::Soak(args) => soak(&client, args, cli.server_pid).await,
        Workload::Setup(args) => {
            let target = Target::Ours {
                senders: client.clone(),
                receivers: client,
            };
            call::setup(&target, args.pairs, args.seconds, cli.server_pid).await
        }
        Workload::Compare(_) => Err("compare runs on its own (above)".to_owned()),
    };
    report(result)
}

fn report(result: Outcome) -> std::process::ExitCode {
    match result {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("loadgen: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn raise_nofile_limit() {
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("loadgen: cannot raise the open-files limit: {error}");
    }
}

pub type Outcome = Result<serde_json::Value, String>;

pub fn unique_room(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{kind}-{}-{nanos}", std::process::id())
}

pub async fn floor_samples(client: &Client, count: usize) -> Result<Vec<Duration>, ClientError> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        client.health().await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

async fn floor(client: &Client, count: usize) -> Outcome {
    floor_samples(client, count / 10 + 1).await.map_err(err)?; // warm-up
    let started = Instant::now();
    let samples = floor_samples(client, count).await.map_err(err)?;
    let elapsed = started.elapsed();
    Ok(json!({
        "workload": "floor",
        "exchanges": count,
        "exchanges_per_s": round(count as f64 / elapsed.as_secs_f64()),
        "latency": Latencies::of(&samples).percentiles(),
    }))
}

pub fn err(error: impl std::fmt::Display) -> String {
    error.to_string()
}

#[derive(Serialize, Deserialize)]
pub struct Probe {
    /// Sequence number within its sender.
    pub n: u64,
    /// Microseconds since the load generator started, when sent.
    pub t: u64,
    pub pad: String,
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

pub fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

async fn soak(client: &Client, args: SoakArgs, server_pid: Option<u32>) -> Outcome {
    let seconds = args.stream.seconds;
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    // Memory, once a second.
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        while Instant::now() < stop {
            if let Some(kib) = server_pid.and_then(rss_kib) {
                samples.push(kib);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        samples
    });
    // Churn: a fresh peer joins a fresh room, sends, reads, leaves.
    let churner = {
        let client = client.clone();
        let pause = Duration::from_secs_f64(1.0 / f64::from(args.churn.max(1)));
        tokio::spawn(async move {
            let mut cycles = 0u64;
            while Instant::now() < stop {
                let room = unique_room("churn");
                let mut a = Peer::new(&client, &room, "a");
                a.join().await.map_err(err)?;
                a.send(None, &json!({"churn": cycles})).await.map_err(err)?;
                let mut b = Peer::new(&client, &room, "b");
                b.join().await.map_err(err)?;
                a.leave().await.map_err(err)?;
                b.leave().await.map_err(err)?;
                cycles += 1;
                tokio::time::sleep(pause).await;
            }
            Ok::<_, String>(cycles)
        })
    };
    let target = Target::Ours {
        senders: client.clone(),
        receivers: client.clone(),
    };
    let mut report = stream(&target, args.stream, server_pid).await?;
    let cycles = churner.await.map_err(err)??;
    let samples = sampler.await.map_err(err)?;
    // Warm-up is the first fifth of the run; "flat" means the end is
    // close to the level reached after it.
    let after_warmup = samples.get(samples.len() / 5).copied();
    let end = samples.last().copied();
    let peak = samples.iter().max().copied();
    report["workload"] = json!("soak");
    report["churn_cycles"] = json!(cycles);
    report["server_rss_kib_after_warmup"] = json!(after_warmup);
    report["server_rss_kib_end"] = json!(end);
    report["server_rss_kib_peak"] = json!(peak);
    report["server_rss_growth_after_warmup_kib"] =
        json!(after_warmup.zip(end).map(|(w, e)| e as i64 - w as i64));
    Ok(report)
}
