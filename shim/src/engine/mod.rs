//! The engine: what moves the stacks, below the sockets layer. It knows
//! stacks, devices and threads, never sockets or epoll sets: where it must
//! call up (hand out what a poll signalled, watch the kernel halves of the
//! sets while the program computes) it calls [`Above`], which the sockets
//! layer registers at start-up.
//!
//! | module | holds |
//! | --- | --- |
//! | [`worker`] | the process's state (status, the waiting threads' roles), lazy start of the port and its stacks, the clock |
//! | [`stacks`], [`device`] | one stack per queue pair, each behind its own lock; the DPDK device under them |
//! | [`wait`] | how a thread waits: spinner, sleeper, parked, with accel-coro's parker |
//! | [`keeper`] | the thread that drives the stacks while the program computes |
//! | [`relay`] | the thread that sends the frames a program thread leaves when its stint as a transmit side's holder ends (net_tap) |
//! | [`lanes`], [`steer`] | on net_tap, a queue of the TAP interface per waiting thread, so the kernel wakes the thread a frame is for; the program that steers frames to them |
//! | [`procs`], [`owner`], [`migrate`] | many processes on one port: a process's attachment, the port owner, and connections a closing listener hands to another process |
//! | [`reaper`], [`flight`] | resets for a process that died; the per-connection flight recorder |
//! | [`netns`], [`stats`] | moving a tap into a namespace; the counters file |

pub mod contention;
pub mod device;
pub mod flight;
pub mod keeper;
pub mod lanes;
pub mod migrate;
pub mod netns;
pub mod owner;
pub mod parked;
pub mod procs;
pub mod reaper;
pub mod relay;
pub mod stacks;
pub mod stats;
pub mod steer;
pub mod wait;
pub mod worker;

use libc::c_int;
use std::sync::OnceLock;

/// What the engine asks of the layer above it. Registered once
/// ([`set_above`]) before the stacks start; until then nothing is asked.
pub trait Above: Sync {
    /// Hands what the stacks signalled to the sets and threads waiting
    /// for it, if anything is signalled. `wait`: take the tables' lock even
    /// if another thread holds it; else only if it is free (the holder
    /// hands out when it drops it). Never called with that lock held by
    /// the caller.
    fn hand_out(&self, wait: bool);

    /// The keeper's round ended: `seen` are the kernel halves (as tagged
    /// in `halves`) that were ready; hands out what the stacks signalled,
    /// notes those halves in order, and fills `halves` with the kernel fds
    /// to watch next (fd, tag). `wait` as for [`Above::hand_out`]; `false`
    /// if the lock was not taken (nothing done).
    fn round_done(&self, seen: &[u32], halves: &mut Vec<(c_int, u32)>, wait: bool) -> bool;

    /// How many sockets and epoll sets the shim holds (the counters file),
    /// or `None` if the tables are busy.
    fn table_sizes(&self) -> Option<(usize, usize)>;
}

static ABOVE: OnceLock<&'static dyn Above> = OnceLock::new();

/// Registers the layer above (once; later calls are ignored).
pub fn set_above(above: &'static dyn Above) {
    let _ = ABOVE.set(above);
}

/// The layer above, once registered.
pub(crate) fn above() -> Option<&'static dyn Above> {
    ABOVE.get().copied()
}
