//! `loadgen compare`: every workload that runs on both targets, on our
//! server and on nginx+nchan, interleaved in one run. Each run of each
//! workload gets a fresh server of each kind (ours started from
//! `--server`, nchan from benches/nchan.conf), the order alternating run by
//! run, and the table shows medians and their ratio. Bounded: runs times
//! workloads times seconds.

use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use signal_relay::client::Client;

use crate::nchan::Nchan;
use crate::stats::round;
use crate::target::Target;
use crate::{
    Outcome, ParkedArgs, PingpongArgs, StreamArgs, call, parked, pingpong, spawned, stream,
};

/// One of our servers, started for one measurement and killed after it.
struct Ours {
    child: Child,
    base: String,
}

impl Ours {
    fn start(binary: &str) -> Result<Ours, String> {
        spawned::on_a_free_port(|port| {
            let child = Command::new(binary)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                // One address is all a load test has: lift the per-address caps.
                .args(["--rate-limit", "0", "--max-polls-per-ip", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("{binary}: {e}"))?;
            let mut ours = Ours {
                child,
                base: format!("http://127.0.0.1:{port}"),
            };
            spawned::wait_listening(&mut ours.child, port, binary, |status| {
                format!("{binary} exited: {status}")
            })?;
            Ok(ours)
        })
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
enum Workload {
    Stream {
        pairs: usize,
        window: usize,
    },
    Setup {
        pairs: usize,
    },
    /// Round trips: about 2 000 per second of the run's length; with
    /// `one_core`, the server and the load generator share CPU 0.
    Pingpong {
        one_core: bool,
    },
    /// Idle parked polls, then one message to each.
    Parked {
        polls: usize,
    },
}

impl Workload {
    fn label(self) -> String {
        match self {
            Workload::Stream { pairs, window } => format!("stream P={pairs} W={window}"),
            Workload::Setup { pairs } => format!("call set-up P={pairs}"),
            Workload::Pingpong { one_core: false } => "pingpong".to_owned(),
            Workload::Pingpong { one_core: true } => "pingpong, one core".to_owned(),
            Workload::Parked { polls } => format!("parked C={polls}"),
        }
    }

    async fn run(self, target: &Target, seconds: f64, pid: u32) -> Outcome {
        match self {
            // Needs the server itself: see `measure`.
            Workload::Parked { .. } => Err("parked is run by measure".to_owned()),
            Workload::Stream { pairs, window } => {
                let args = StreamArgs {
                    pairs,
                    window,
                    seconds,
                    size: 300,
                };
                stream(target, args, Some(pid)).await
            }
            Workload::Setup { pairs } => call::setup(target, pairs, seconds, Some(pid)).await,
            Workload::Pingpong { one_core } => {
                let args = PingpongArgs {
                    count: ((seconds * 2000.0) as usize).max(100),
                    size: 300,
                };
                let _pinned = match one_core {
                    true => Some(OneCore::pin(pid)?),
                    false => None,
                };
                pingpong::pingpong(target, args).await
            }
        }
    }
}

/// The server and this process (every thread of each) on CPU 0, with
/// `taskset`, until dropped: where each wake-up is a switch on one core
/// rather than a hop between two. The server is not unpinned: it is
/// stopped after the measurement.
struct OneCore {
    all: String,
}

impl OneCore {
    fn pin(server: u32) -> Result<OneCore, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        taskset("0", server)?;
        taskset("0", std::process::id())?;
        Ok(OneCore {
            all: format!("0-{}", cores - 1),
        })
    }
}

impl Drop for OneCore {
    fn drop(&mut self) {
        let _ = taskset(&self.all, std::process::id());
    }
}

fn taskset(cpus: &str, pid: u32) -> Result<(), String> {
    let status = Command::new("taskset")
        .args(["--all-tasks", "--pid", "--cpu-list", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("taskset {cpus} {pid}: {status}")),
    }
}

const WORKLOADS: [Workload; 6] = [
    Workload::Pingpong { one_core: false },
    Workload::Pingpong { one_core: true },
    Workload::Stream {
        pairs: 10,
        window: 1,
    },
    Workload::Stream {
        pairs: 100,
        window: 1,
    },
    Workload::Stream {
        pairs: 1,
        window: 16,
    },
    Workload::Setup { pairs: 20 },
];

/// Runs one workload once on a fresh server of one kind (`parked`
/// parked polls for the parked workload).
async fn measure(workload: Workload, on_nchan: bool, binary: &str, seconds: f64) -> Outcome {
    let parked_args = ParkedArgs {
        clients: match workload {
            Workload::Parked { polls } => polls,
            _ => 0,
        },
        room_size: 4,
        hold: 2.0,
        senders: 64,
    };
    if on_nchan {
        let server = Nchan::start()?;
        if let Workload::Parked { .. } = workload {
            return parked::on_nchan(&server, parked_args).await;
        }
        let target = Target::on_nchan(&server.base)?;
        workload.run(&target, seconds, server.pid()).await
    } else {
        let server = Ours::start(binary)?;
        let client = Client::new(&server.base).map_err(|e| e.to_string())?;
        if let Workload::Parked { .. } = workload {
            return parked::parked(&client, parked_args, Some(server.child.id())).await;
        }
        let target = Target::Ours {
            senders: client.clone(),
            receivers: client,
        };
        workload.run(&target, seconds, server.child.id()).await
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The figures a workload's table rows show: (row, JSON pointer, higher is
/// better).
fn figures(workload: Workload) -> Vec<(&'static str, &'static str, bool)> {
    match workload {
        Workload::Stream { .. } => vec![
            ("msg/s", "/messages_per_s", true),
            ("one-way p50, µs", "/one_way/p50_us", false),
            ("one-way p99, µs", "/one_way/p99_us", false),
            (
                "server CPU per message, µs",
                "/server_cpu_us_per_message",
                false,
            ),
            (
                "load generator CPU per message, µs",
                "/loadgen_cpu_us_per_message",
                false,
            ),
        ],
        Workload::Pingpong { .. } => vec![
            ("round trips/s", "/round_trips_per_s", true),
            ("RTT p50, µs", "/rtt/p50_us", false),
            ("RTT p99, µs", "/rtt/p99_us", false),
        ],
        Workload::Parked { .. } => vec![
            (
                "server memory per parked poll, bytes",
                "/server_bytes_per_parked_poll",
                false,
            ),
            ("fan-out to every poll, ms", "/fanout_ms", false),
        ],
        Workload::Setup { .. } => vec![
            ("set-ups/s", "/setups_per_s", true),
            ("set-up p50, µs", "/setup_time/p50_us", false),
            ("set-up p99, µs", "/setup_time/p99_us", false),
            ("server CPU per call, µs", "/server_cpu_us_per_call", false),
            (
                "load generator CPU per call, µs",
                "/loadgen_cpu_us_per_call",
                false,
            ),
        ],
    }
}

pub async fn compare(binary: &str, runs: usize, seconds: f64, parked: &[usize]) -> Outcome {
    let parked = parked.iter().map(|&polls| Workload::Parked { polls });
    let mut results: Vec<(Workload, Vec<Value>, Vec<Value>)> = WORKLOADS
        .into_iter()
        .chain(parked)
        .map(|w| (w, Vec::new(), Vec::new()))
        .collect();
    for run in 0..runs {
        for (workload, ours, theirs) in &mut results {
            // Alternate who goes first, so neither always meets a warmer
            // or a cooler machine.
            for on_nchan in [run % 2 == 1, run % 2 == 0] {
                let report = measure(*workload, on_nchan, binary, seconds).await?;
                eprintln!("{report}");
                if on_nchan { &mut *theirs } else { &mut *ours }.push(report);
            }
        }
    }
    let mut table = String::from(
        "| workload | figure | signal-relay | nchan | ours / nchan |\n|---|---|---|---|---|\n",
    );
    let (mut lost, mut duplicated) = (0, 0);
    for (workload, ours, theirs) in &results {
        for report in ours.iter().chain(theirs) {
            lost += report["lost"].as_u64().unwrap_or(0);
            duplicated += report["duplicated"].as_u64().unwrap_or(0);
        }
        for (name, pointer, _) in figures(*workload) {
            let values = |reports: &[Value]| {
                median(
                    reports
                        .iter()
                        .filter_map(|r| r.pointer(pointer).and_then(Value::as_f64))
                        .collect(),
                )
            };
            let (a, b) = (values(ours), values(theirs));
            table.push_str(&format!(
                "| {} | {name} | {} | {} | {:.2}x |\n",
                workload.label(),
                round(a),
                round(b),
                a / b
            ));
        }
    }
    eprintln!("{table}");
    Ok(json!({
        "workload": "compare",
        "runs": runs,
        "seconds": seconds,
        "table": table,
        "lost": lost,
        "duplicated": duplicated,
    }))
}
