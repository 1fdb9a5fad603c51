//! Servers the load generator starts for itself (ours for `compare`,
//! nginx+nchan for `--target nchan`), each on a free loopback port.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Runs `start` with a free port, up to 5 times: a port found free can be
/// taken before the server binds it, and then the server exits.
pub fn on_a_free_port<T>(mut start: impl FnMut(u16) -> Result<T, String>) -> Result<T, String> {
    let mut last = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        match start(port) {
            Ok(started) => return Ok(started),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Waits up to 5 s for `child`, named `name`, to accept on `port`; if it
/// exits first, the error is `exited`'s account of it.
pub fn wait_listening(
    child: &mut Child,
    port: u16,
    name: &str,
    exited: impl FnOnce(ExitStatus) -> String,
) -> Result<(), String> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(exited(status));
        }
        if started.elapsed() > Duration::from_secs(5) {
            return Err(format!("{name} did not listen within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
