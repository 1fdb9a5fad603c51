//! The server binary links no HTTP client and no load-generation crate:
//! the Rust client (`client` feature) and the load generator (`loadgen`
//! feature) are built only when asked for. Read from `cargo tree`, the same
//! resolution `cargo build --release` makes.

use std::collections::BTreeSet;
use std::process::Command;

/// Crates only a client or a load generator has any use for.
const NOT_IN_THE_SERVER: &[&str] = &["reqwest", "hdrhistogram", "hyper-rustls"];

/// The crates `cargo build` links with `features`, by name.
fn linked(features: &[&str]) -> BTreeSet<String> {
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--offline", "--locked", "--edges", "normal,build"])
        .args(["--prefix", "none", "--format", "{p}"]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_server_binary_links_no_http_client_and_no_load_generator() {
    let server = linked(&[]);
    assert!(
        server.contains("hyper") && server.contains("tokio"),
        "{server:?}"
    );
    let found: Vec<&&str> = NOT_IN_THE_SERVER
        .iter()
        .filter(|name| server.contains(**name))
        .collect();
    assert!(found.is_empty(), "the server links {found:?}");

    // The control: the same query does see them where they belong.
    let loadgen = linked(&["loadgen"]);
    for name in ["reqwest", "hdrhistogram"] {
        assert!(loadgen.contains(name), "{name} missing from {loadgen:?}");
    }
}
