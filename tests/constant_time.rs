//! Token comparison never branches on the secret: a ctgrind-style check.
//!
//! Timing a 32-byte comparison measures noise; this check is deterministic
//! instead. Valgrind's memcheck reports every conditional jump, and every
//! memory address, computed from bytes it considers uninitialised. The probe
//! tells memcheck that a stored token's bytes are uninitialised (a client
//! request), calls [`Token::matches`], marks only the one-bit answer as
//! defined again (the answer may be known; how it was reached may not), and
//! asks memcheck how many errors it saw in between. Zero means no branch and
//! no table lookup depended on the secret, so timing cannot reveal how much
//! of a guess was right. An early-exit comparison (`==`, i.e. `memcmp`) is
//! reported: the probe runs one as a control, so a memcheck that sees nothing
//! cannot make the check pass.
//!
//! The probe is the release build of this file, run under valgrind: the
//! optimiser is what could turn a branch-free loop back into an early exit, so
//! the code checked is the code shipped. Valgrind is installed with apt when
//! missing. A custom harness (`harness = false`), one check, bounded in time.

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use signal_relay::token::Token;

const NAME: &str = "token_comparison_does_not_branch_on_the_secret";
const VALGRIND: &str = "/usr/bin/valgrind";
/// Set in the probe's environment: run the comparisons, not the harness.
const IN_PROBE: &str = "SIGNAL_CT_PROBE";
/// Longest the probe may run under valgrind (it takes a second or two).
const PROBE_LIMIT_SECS: &str = "300";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return ExitCode::SUCCESS;
    }
    if std::env::var_os(IN_PROBE).is_some() {
        return probe::run();
    }
    let filter = args.iter().find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !NAME.contains(f.as_str())) {
        println!("0 passed, 0 failed ({NAME} filtered out)");
        return ExitCode::SUCCESS;
    }
    match check() {
        Ok(summary) => {
            println!("{NAME} ... ok\n{summary}\n1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{NAME} ... FAILED\n{error}\n0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

/// Builds the probe, runs it under memcheck, and returns its report.
fn check() -> Result<String, String> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Ok("skipped: the client-request sequence here is for x86_64 Linux".into());
    }
    common::apt_install_missing(&[(VALGRIND, "valgrind")])?;
    let probe = if cfg!(debug_assertions) {
        build_release_probe()?
    } else {
        std::env::current_exe().map_err(|e| format!("own path: {e}"))?
    };
    let log = std::env::temp_dir().join(format!("signal-ct-probe-{}.log", std::process::id()));
    let output = Command::new("timeout")
        .args([
            PROBE_LIMIT_SECS,
            VALGRIND,
            "--tool=memcheck",
            "--leak-check=no",
        ])
        .arg(format!("--log-file={}", log.display()))
        .arg(&probe)
        .env(IN_PROBE, "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let valgrind_log = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(report.trim_end().to_owned())
    } else {
        Err(format!(
            "probe {} exited with {}\n{report}{}\n--- memcheck's log ---\n{valgrind_log}",
            probe.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `cargo test --release --no-run` for this file; returns the executable.
fn build_release_probe() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // Cargo describes this package to its tests in CARGO_PKG_* and the like;
    // build scripts that watch those names (ring's does) would see them
    // change and rebuild, here and again in the next plain `cargo build`.
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_EXE_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| name_str.starts_with(prefix))
        {
            build.env_remove(&name);
        }
    }
    let output = build
        .args(["test", "--release", "--no-run", "--test", "constant_time"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the release probe failed ({})",
            output.status
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "constant_time")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo named no executable for the release probe".into())
}

/// Runs inside valgrind: the comparisons, each between two error counts.
mod probe {
    use super::*;

    /// A stored token and a presented one, and whether they should match.
    struct Case {
        what: &'static str,
        stored: String,
        presented: String,
    }

    fn cases() -> Vec<Case> {
        // Runtime values (a fresh random token), so nothing is folded away
        // at compile time.
        let generated = Token::generate().expose().to_owned();
        let long: String = generated.repeat(4);
        let short: String = generated[..16].to_owned();
        let flip = |s: &str, at: usize| -> String {
            let mut bytes = s.as_bytes().to_vec();
            bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
            String::from_utf8(bytes).expect("ASCII stays UTF-8")
        };
        let last = generated.len() - 1;
        vec![
            Case {
                what: "generated, equal",
                stored: generated.clone(),
                presented: generated.clone(),
            },
            Case {
                what: "generated, first byte wrong",
                stored: generated.clone(),
                presented: flip(&generated, 0),
            },
            Case {
                what: "generated, last byte wrong",
                stored: generated.clone(),
                presented: flip(&generated, last),
            },
            Case {
                what: "generated, every byte wrong",
                stored: generated.clone(),
                presented: (0..generated.len()).fold(generated.clone(), |s, i| flip(&s, i)),
            },
            Case {
                what: "128 bytes, middle byte wrong",
                stored: long.clone(),
                presented: flip(&long, 64),
            },
            Case {
                what: "16 bytes, equal",
                stored: short.clone(),
                presented: short.clone(),
            },
        ]
    }

    pub fn run() -> ExitCode {
        if !valgrind::running() {
            println!("the probe must run under valgrind");
            return ExitCode::FAILURE;
        }
        let mut ok = true;
        for case in cases() {
            let stored = Token::parse(&case.stored).expect("valid token");
            let presented = Token::parse(&case.presented).expect("valid token");
            let expected = case.stored == case.presented;

            let (matched, errors) = with_secret(&stored, || stored.matches(&presented));
            let verdict = if errors == 0 && matched == expected {
                "ok"
            } else {
                ok = false;
                "LEAKS"
            };
            println!(
                "ct: Token::matches, {}: {errors} memcheck errors, matched={matched} ({verdict})",
                case.what
            );

            // The control: the same secret through an early-exit comparison.
            let (matched, errors) = with_secret(&stored, || {
                early_exit_eq(stored.expose().as_bytes(), presented.expose().as_bytes())
            });
            let verdict = if errors > 0 && matched == expected {
                "ok: seen"
            } else {
                ok = false;
                "NOT SEEN: memcheck is not watching"
            };
            println!(
                "ct: control ==, {}: {errors} memcheck errors ({verdict})",
                case.what
            );
        }
        if ok {
            println!("ct: no branch or address depended on a stored token's bytes");
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// Runs `compare` with the stored token's bytes marked secret, then marks
    /// its answer public. Returns the answer and how many memcheck errors
    /// (uses of the secret) happened in between.
    fn with_secret(stored: &Token, compare: impl FnOnce() -> bool) -> (bool, usize) {
        let secret = stored.expose().as_bytes();
        let before = valgrind::errors();
        valgrind::make_undefined(secret);
        let answer = black_box(compare());
        valgrind::make_defined(&answer);
        valgrind::make_defined(secret);
        let errors = valgrind::errors() - before;
        (answer, errors)
    }

    #[inline(never)]
    fn early_exit_eq(a: &[u8], b: &[u8]) -> bool {
        black_box(a) == black_box(b)
    }
}

/// Valgrind client requests (valgrind.h, memcheck.h) for x86_64 Linux.
///
/// Written out rather than taken from a crate: the crates that wrap them
/// generate bindings from valgrind's C headers at build time, which would make
/// every `cargo test` need valgrind's headers (and libclang) before this test
/// could install valgrind. The request numbers are fixed by valgrind's ABI.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod valgrind {
    const RUNNING_ON_VALGRIND: usize = 0x1001;
    const COUNT_ERRORS: usize = 0x1201;
    /// `VG_USERREQ_TOOL_BASE('M','C')` + 1 and + 2.
    const MAKE_MEM_UNDEFINED: usize = 0x4d43_0001;
    const MAKE_MEM_DEFINED: usize = 0x4d43_0002;

    /// The client-request trapdoor: rotations of rdi by 3+13+61+51 = 128 bits
    /// (a no-op natively) followed by `xchg rbx, rbx`, which valgrind's JIT
    /// recognises; it reads the request from the array rax points at and
    /// writes the answer to rdx. Natively rdx keeps its default of 0.
    fn request(request: usize, arg1: usize, arg2: usize) -> usize {
        let args: [usize; 6] = [request, arg1, arg2, 0, 0, 0];
        let mut result: usize = 0;
        // SAFETY: the sequence only rotates rdi back to itself and exchanges
        // rbx with itself; valgrind reads `args` (alive for the whole
        // statement) and writes only rdx.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                inout("rdx") result,
                in("rax") args.as_ptr(),
                out("rdi") _,
            );
        }
        result
    }

    pub fn running() -> bool {
        request(RUNNING_ON_VALGRIND, 0, 0) > 0
    }

    /// Errors memcheck has found so far in this process.
    pub fn errors() -> usize {
        request(COUNT_ERRORS, 0, 0)
    }

    /// Memcheck's shadow state changes; the bytes themselves do not.
    pub fn make_undefined<T: ?Sized>(value: &T) {
        let address = std::ptr::from_ref(value).cast::<u8>() as usize;
        request(MAKE_MEM_UNDEFINED, address, std::mem::size_of_val(value));
    }

    pub fn make_defined<T: ?Sized>(value: &T) {
        let address = std::ptr::from_ref(value).cast::<u8>() as usize;
        request(MAKE_MEM_DEFINED, address, std::mem::size_of_val(value));
    }
}

/// Elsewhere the check reports itself skipped before the probe is built.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod valgrind {
    pub fn running() -> bool {
        false
    }
    pub fn errors() -> usize {
        0
    }
    pub fn make_undefined<T: ?Sized>(_: &T) {}
    pub fn make_defined<T: ?Sized>(_: &T) {}
}
