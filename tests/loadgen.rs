//! A seconds-long smoke run of every load-generator workload against the
//! real server binary: each must report 0 lost and 0 duplicated. No timing
//! assertions: speed is measured by the load generator and the benches.

mod common;

use std::process::Command;

use serde_json::Value;

struct Server {
    child: tokio::process::Child,
    url: String,
}

async fn start_server() -> Server {
    // A load test from one address is what the rate limit exists to stop.
    let server = common::spawn_server(&["--rate-limit", "0"], "info").await;
    let url = server.base.clone();
    Server {
        child: server.drain_log(),
        url,
    }
}

fn run(server: &Server, args: &[&str]) -> Value {
    let pid = server.child.id().expect("running").to_string();
    let mut all = vec!["--url", &server.url, "--server-pid", &pid];
    all.extend_from_slice(args);
    loadgen(&all)
}

/// Runs the load generator with `args` to its end; its one JSON line.
fn loadgen(args: &[&str]) -> Value {
    let loadgen = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("loadgen runs");
    let out = String::from_utf8_lossy(&loadgen.stdout);
    let log = String::from_utf8_lossy(&loadgen.stderr);
    assert!(
        loadgen.status.success(),
        "loadgen {args:?} failed: {out}\n{log}"
    );
    let report: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    println!("{report}");
    report
}

/// Debian's nginx-light and libnginx-mod-nchan, for `--target nchan`,
/// installed once per test binary when missing.
fn install_nchan() {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return;
    }
    if let Err(error) = common::apt_install_missing(&[
        ("/usr/sbin/nginx", "nginx-light"),
        (
            "/usr/lib/nginx/modules/ngx_nchan_module.so",
            "libnginx-mod-nchan",
        ),
    ]) {
        panic!("the nchan comparison needs nginx and its nchan module: {error}");
    }
    *installed = true;
}

fn assert_nothing_lost(report: &Value) {
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicated"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_workload_runs_and_loses_nothing() {
    let server = start_server().await;
    let floor = tokio::task::block_in_place(|| run(&server, &["floor", "--count", "200"]));
    assert_eq!(floor["exchanges"], 200);

    let pingpong = tokio::task::block_in_place(|| run(&server, &["pingpong", "--count", "200"]));
    assert_nothing_lost(&pingpong);
    assert_eq!(pingpong["round_trips"], 200);

    for (pairs, window) in [("1", "16"), ("10", "1")] {
        let stream = tokio::task::block_in_place(|| {
            run(
                &server,
                &[
                    "stream",
                    "--pairs",
                    pairs,
                    "--window",
                    window,
                    "--seconds",
                    "1",
                ],
            )
        });
        assert_nothing_lost(&stream);
        assert!(stream["delivered"].as_u64().unwrap() > 0, "{stream}");
        assert_eq!(stream["delivered"], stream["sent"], "{stream}");
        if window == "1" {
            assert_eq!(stream["reordered"], 0, "per-sender order: {stream}");
        }
    }

    let soak = tokio::task::block_in_place(|| {
        run(
            &server,
            &[
                "soak",
                "--pairs",
                "4",
                "--window",
                "4",
                "--seconds",
                "3",
                "--churn",
                "20",
            ],
        )
    });
    assert_nothing_lost(&soak);
    assert!(soak["churn_cycles"].as_u64().unwrap() > 0, "{soak}");

    let parked = tokio::task::block_in_place(|| {
        run(&server, &["parked", "--clients", "200", "--hold", "0.5"])
    });
    assert_nothing_lost(&parked);
    assert_eq!(parked["received"], 200);
}

/// The same stream workload against an nginx+nchan the load generator
/// starts itself (Debian's nginx-light and libnginx-mod-nchan, installed
/// when missing): it too must lose nothing, or a comparison means nothing.
#[test]
fn the_nchan_target_streams_and_loses_nothing() {
    install_nchan();
    for (pairs, window) in [("1", "16"), ("10", "1")] {
        let report = loadgen(&[
            "--target",
            "nchan",
            "stream",
            "--pairs",
            pairs,
            "--window",
            window,
            "--seconds",
            "1",
        ]);
        assert_eq!(report["target"], "nchan", "{report}");
        assert_nothing_lost(&report);
        assert!(report["delivered"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["delivered"], report["sent"], "{report}");
        assert!(report["server_cpu_us_per_message"].is_number(), "{report}");
    }
}

/// The call set-up workload on both targets: every offer, answer and
/// candidate of every call arrives exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn the_call_setup_workload_runs_on_both_targets() {
    install_nchan();
    let server = start_server().await;
    let ours =
        tokio::task::block_in_place(|| run(&server, &["setup", "--pairs", "4", "--seconds", "1"]));
    let theirs = tokio::task::block_in_place(|| {
        run(
            &server,
            &[
                "--target",
                "nchan",
                "setup",
                "--pairs",
                "4",
                "--seconds",
                "1",
            ],
        )
    });
    for report in [&ours, &theirs] {
        assert_nothing_lost(report);
        assert!(report["calls"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["messages_per_call"], 18, "{report}");
    }
    assert_eq!(ours["target"], "signal-relay");
    assert_eq!(theirs["target"], "nchan");
}

/// The side-by-side run the README's performance table comes from, cut
/// short: one run of each workload on each server, fresh ones each time.
#[test]
fn compare_runs_every_shared_workload_on_both_servers() {
    install_nchan();
    let report = loadgen(&[
        "compare",
        "--runs",
        "1",
        "--seconds",
        "0.5",
        "--parked",
        "200",
        "--server",
        env!("CARGO_BIN_EXE_signal-relay"),
    ]);
    assert_nothing_lost(&report);
    let table = report["table"].as_str().expect("a table");
    println!("{table}");
    for row in [
        "pingpong",
        "stream P=10 W=1",
        "stream P=100 W=1",
        "stream P=1 W=16",
        "call set-up P=20",
        "parked",
    ] {
        assert!(table.contains(row), "{row} missing from {table}");
    }
}
