//! The relay thread: it sends the frames that a program thread leaves
//! when its stint as a transmit side's holder ends ([`crate::engine::device`]),
//! so that no thread of the program writes the others' frames for long.
//!
//! On net_tap a transmit is a `writev` per frame, in which the kernel runs
//! the peer's receive, and often hands the core to the peer it wakes. The
//! holder of a queue pair's transmit side sends what the others staged
//! meanwhile (they do not wait for it); with ten threads replying, it
//! could not keep up, never got out, and its own connection waited.
//! Now a program thread holds the side for `device`'s stint at most, then
//! hands what is left to the relay, which holds on as long as frames keep
//! coming, and parks when they stop. While it holds the side, the
//! program's threads leave their frames to it and go back to their own
//! work at once, as they did to a holder before.
//!
//! Started with the keeper, for a port whose transmits are system calls
//! (net_tap); elsewhere, and in the child of a fork (threads do not
//! survive it), [`hand_over`] refuses and the holder goes on itself, as
//! before. It takes no signal of the program's (as the keeper).

use crate::engine::worker::{status, Status};
use crate::logging::log;
use accel_coro::park::Parker;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The relay's parker, once it runs.
static PARKER: OnceLock<Arc<Parker>> = OnceLock::new();
/// Frames were handed over: the relay flushes.
static HANDED: AtomicBool = AtomicBool::new(false);
/// The relay runs in this process (not in the child of a fork).
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Hand-overs so far (the stats' `tx_hand_overs`).
static HAND_OVERS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread is the relay.
    static RELAY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a stint of the calling thread can end with a hand-over: the
/// relay runs, and this is not it (its stints are unbounded).
pub fn can_take_over() -> bool {
    RUNNING.load(Relaxed) && !RELAY.try_with(|r| r.get()).unwrap_or(false)
}

/// Hands the frames staged now to the relay (the caller let go of the
/// transmit side first); whether the relay runs to take them.
pub fn hand_over() -> bool {
    if !RUNNING.load(Acquire) {
        return false;
    }
    let Some(p) = PARKER.get() else { return false };
    HANDED.store(true, SeqCst);
    p.unpark();
    HAND_OVERS.fetch_add(1, Relaxed);
    true
}

/// How many stints ended with a hand-over to the relay.
pub fn hand_overs() -> u64 {
    HAND_OVERS.load(Relaxed)
}

/// Starts the relay thread (once per process that starts the stack).
pub fn spawn() {
    let spawned = std::thread::Builder::new()
        .name("accel-relay".into())
        .stack_size(256 * 1024)
        .spawn(|| {
            crate::engine::keeper::program_signals_off();
            let _ = RELAY.try_with(|r| r.set(true));
            let parker = Parker::current();
            let _ = PARKER.set(Arc::clone(&parker));
            RUNNING.store(true, Release);
            relay(&parker);
        });
    if let Err(e) = spawned {
        log!(
            warn,
            "cannot start the relay thread ({e}): a thread that sends others' frames goes on until they stop"
        );
    }
}

fn relay(parker: &Parker) {
    loop {
        if status() != Status::Up {
            RUNNING.store(false, Release);
            return;
        }
        while HANDED.swap(false, SeqCst) {
            crate::engine::device::flush_all();
        }
        // A hand-over unparks it; the timeout only looks at the status.
        let _ = parker.park(Some(Duration::from_secs(1)));
    }
}

/// In the child of `fork`: the relay is not there; holders go on
/// themselves.
pub fn after_fork() {
    RUNNING.store(false, Release);
    HANDED.store(false, Relaxed);
    if let Some(p) = PARKER.get() {
        p.after_fork();
    }
}

#[cfg(test)]
mod tests {
    use super::{can_take_over, hand_over, hand_overs};

    #[test]
    fn without_a_relay_a_holder_keeps_its_frames() {
        // No stack starts in the unit tests, so no relay runs: a holder's
        // stint is unbounded, and a hand-over is refused (the holder must
        // go on sending, or the frames would wait for nobody).
        assert!(!can_take_over());
        assert!(!hand_over());
        assert_eq!(hand_overs(), 0);
    }
}
