//! One event loop per core, and the rule that puts a room's connections on
//! one of them.
//!
//! A relayed message is two requests that meet in one mailbox: the
//! sender's POST wakes the receiver's parked poll. On tokio's work-stealing
//! runtime those two tasks sit on different threads about half the time,
//! and every hand-over between them is a futex wake, a context switch and
//! a steal. So each loop here is a current-thread runtime on its own
//! thread, nothing is stolen, and a connection is served on its room's
//! *home* loop, chosen from its first request line. A room's peers then
//! meet on one thread and a relay is a local wake, while rooms spread
//! across cores. (Measured, stream P=10 W=1 on a 2-core VM: 0.55 futex
//! calls and 26–28 µs of server CPU per message on two work-stealing
//! workers; 0 futex calls and 20–23 µs on two of these loops.)
//!
//! The home is a placement, never a rule of delivery: the store is shared
//! by every loop, so a connection served elsewhere (a browser reusing one
//! connection for two rooms, TLS, HTTP/2) is only a little slower.

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The running loops; dropping this stops them (their tasks are dropped,
/// so shut connections down gracefully first).
#[derive(Debug)]
pub struct EventLoops {
    loops: Vec<EventLoop>,
    /// Keyed at random per process, so no client can pick room names that
    /// all land on one loop.
    homes: RandomState,
    /// Round-robin for connections with no room in their first request.
    next: AtomicUsize,
}

#[derive(Debug)]
struct EventLoop {
    handle: Handle,
    /// Dropped to stop the loop: its thread then drops the runtime itself,
    /// which an async context (where `EventLoops` is dropped) may not.
    _stop: oneshot::Sender<()>,
}

impl EventLoops {
    /// Starts `count` loops (at least one), each on a thread of its own.
    pub fn start(count: usize) -> io::Result<EventLoops> {
        let mut loops = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("event-loop-{index}"))
                .spawn(move || {
                    // Err means the sender was dropped: stop either way.
                    let _ = runtime.block_on(stopped);
                })?;
            loops.push(EventLoop {
                handle,
                _stop: stop,
            });
        }
        Ok(EventLoops {
            loops,
            homes: RandomState::new(),
            next: AtomicUsize::new(0),
        })
    }

    /// The loop that serves `room`'s connections: the same one for every
    /// connection naming it.
    pub fn home_of(&self, room: &str) -> &Handle {
        let index = self.homes.hash_one(room) as usize % self.loops.len();
        &self.loops[index].handle
    }

    /// A loop for a connection with no room: the next one in turn.
    pub fn any(&self) -> &Handle {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.loops.len();
        &self.loops[index].handle
    }

    /// Every loop, in order.
    pub fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.loops.iter().map(|event_loop| &event_loop.handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_always_has_the_same_home_and_rooms_spread() {
        let loops = EventLoops::start(2).unwrap();
        let home = |room: &str| loops.home_of(room).id();
        assert_eq!(home("demo"), home("demo"));
        let first = home("room-0");
        assert!(
            (1..64).any(|n| home(&format!("room-{n}")) != first),
            "64 rooms all on one of two loops"
        );
    }

    #[tokio::test]
    async fn a_task_runs_on_the_loop_it_was_given_to() {
        let loops = EventLoops::start(2).unwrap();
        for room in ["demo", "stage", "lobby"] {
            let home = loops.home_of(room);
            let ran_on = home.spawn(async { Handle::current().id() }).await.unwrap();
            assert_eq!(ran_on, home.id(), "{room}");
        }
    }
}
