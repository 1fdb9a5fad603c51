//! The README must stay true: its curl walkthrough runs verbatim and prints
//! what the README says, and its flag table lists exactly the real flags.

mod common;

use std::collections::BTreeSet;

use clap::CommandFactory;
use common::TestServer;
use signal_relay::Config;

const README: &str = include_str!("../README.md");

/// The first fenced block of `lang` after `heading`.
fn block_after(heading: &str, lang: &str) -> &'static str {
    let section = &README[README.find(heading).expect("heading exists")..];
    let fence = format!("```{lang}\n");
    let start = section.find(&fence).expect("block exists") + fence.len();
    let end = start + section[start..].find("```").expect("block closes");
    &section[start..end]
}

/// Epochs are random; everything else must match exactly.
fn normalized(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| match line.find(r#""epoch":""#) {
            Some(at) => {
                let value = at + r#""epoch":""#.len();
                let end = value + line[value..].find('"').expect("epoch closes");
                format!("{}EPOCH{}", &line[..value], &line[end..])
            }
            None => line.to_owned(),
        })
        .collect();
    // The background poll and the POST that wakes it answer at the same
    // moment, so their two lines may come in either order.
    lines.sort();
    lines
}

#[tokio::test]
async fn the_curl_walkthrough_works_verbatim() {
    let server = TestServer::start().await;
    let script = block_after("## Try it with curl", "sh")
        .replace("127.0.0.1:3000", &server.addr.to_string());
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .output()
        .await
        .expect("bash and curl are installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = block_after("What it prints", "text");
    assert_eq!(normalized(&stdout), normalized(expected), "\n{stdout}");
}

#[test]
fn the_flag_table_lists_every_flag() {
    let real: BTreeSet<String> = Config::command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(|long| format!("--{long}"))
        .collect();
    let table = &README[README.find("## Flags").expect("flags section")..];
    let table = &table[..table[3..].find("\n## ").map_or(table.len(), |end| end + 3)];
    let documented: BTreeSet<String> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| `--"))
        .filter_map(|rest| rest.split('`').next())
        .map(|flag| format!("--{flag}"))
        .collect();
    assert_eq!(documented, real);
    for arg in Config::command().get_arguments() {
        if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| `--{long}`")))
                .expect("row exists");
            assert!(row.contains(&*env.to_string_lossy()), "{row}");
        }
    }
}

/// The section under `heading`, up to the next `## ` heading.
fn section(heading: &str) -> &'static str {
    let start = README.find(heading).expect("section exists");
    let rest = &README[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The layout table names every tracked file (a `mod.rs` by its folder,
/// dot-files aside), and every path in its first column exists.
#[test]
fn the_layout_table_matches_the_tree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = section("## Layout");
    let quoted =
        |text: &'static str| -> Vec<&'static str> { text.split('`').skip(1).step_by(2).collect() };
    for row in table.lines().filter(|line| line.starts_with("| `")) {
        let first_column = row.split('|').nth(1).expect("a first column");
        for path in quoted(first_column) {
            assert!(
                root.join(path).exists(),
                "the layout names {path}, which is not there"
            );
        }
    }
    let named: BTreeSet<&str> = quoted(table)
        .into_iter()
        .flat_map(|path| path.split('/'))
        .filter(|part| !part.is_empty())
        .collect();
    let tracked = std::process::Command::new("git")
        .current_dir(root)
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .output()
        .expect("git runs");
    assert!(tracked.status.success(), "git ls-files failed");
    let mut unnamed = BTreeSet::new();
    for file in String::from_utf8_lossy(&tracked.stdout).lines() {
        for part in file.split('/') {
            let hidden = part.starts_with('.') && part != ".ci";
            if !hidden && part != "mod.rs" && !named.contains(part) {
                unnamed.insert(file.to_owned());
            }
        }
    }
    assert!(
        unnamed.is_empty(),
        "the README's layout table does not name {unnamed:?}"
    );
}
