//! The clock and sleeping.
//!
//! Time is `CLOCK_MONOTONIC` in nanoseconds (a vDSO read, ~20 ns). Sleeps go
//! on the worker's timer wheel, which fires at most one tick (65 µs) late and
//! never early; outside a worker they sleep the thread.

use std::time::Duration;

use crate::wait::{wait_until, Wait, WaitError};

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Converts a timeout into an absolute deadline (saturating).
pub fn deadline_after(d: Duration) -> u64 {
    now_ns().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64)
}

/// Sleeps for `d`. Inside a coroutine the worker runs others meanwhile.
/// Returns `Err(Interrupted)` if a subscribed signal fires, `Err(Cancelled)`
/// if the task is cancelled.
pub fn sleep(d: Duration) -> Result<(), WaitError> {
    sleep_until(deadline_after(d))
}

/// Sleeps until the monotonic time `deadline_ns`.
pub fn sleep_until(deadline_ns: u64) -> Result<(), WaitError> {
    match wait_until(Wait::deadline(deadline_ns), |_| std::task::Poll::<()>::Pending) {
        Err(WaitError::TimedOut) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}
