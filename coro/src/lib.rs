//! accel-coro: the coroutine runtime under accel, after libtcr and libwire.
//!
//! Layers, each reviewable alone, bottom up:
//! - [`stack`]: guarded mmap'd stacks, pooled LIFO, or the caller's memory;
//!   [`overflow`] names the coroutine that runs off its stack.
//! - the switch is corosensei's (no syscalls, no signal-mask save); a
//!   coroutine is `!Send` and never leaves the thread that spawned it.
//! - [`sched`]: one [`Scheduler`] per thread, FIFO run queue, a hierarchical
//!   timer [`wheel`], the [`reactor`] (epoll + eventfd doorbell) and
//!   pluggable [`PollSource`]s, idling by spinning then sleeping in epoll.
//! - [`wait`]: the one waiting primitive, parking a plain thread with
//!   [`park`] (a futex, or `ppoll` with kernel fds); [`time`] sleeps;
//!   [`waitlist`] waits for the first of several sources.
//! - [`sync`]: wait queues, channels (rendezvous and bounded), a FIFO lock;
//!   [`signal`]: interruption; [`pool`]: bounded coroutine pools.
//! - [`runtime`]: N worker threads, spawn onto a chosen worker, parallel-for.
//! - [`wio`]: a bounded thread pool that performs blocking calls for parked
//!   coroutines.
//! - [`capi`]: the C API (`include/accel_coro.h`).
//!
//! Coroutines never leave the thread that spawned them. What owns them is
//! `!Send`, so the compiler refuses to move it:
//!
//! ```compile_fail
//! // A worker (its scheduler and every coroutine on it) stays on its thread.
//! let w = accel_coro::Worker::new(accel_coro::Config::default()).unwrap();
//! std::thread::spawn(move || drop(w));
//! ```
//!
//! ```compile_fail
//! // A coroutine's subscription to a signal belongs to that coroutine.
//! let s = accel_coro::Signal::new();
//! accel_coro::block_on(move || {
//!     let sub = s.subscribe();
//!     std::thread::spawn(move || drop(sub));
//! });
//! ```
//!
//! while `spawn` happily runs a coroutine that owns `!Send` data:
//!
//! ```
//! let rc = std::rc::Rc::new(5);
//! let v = accel_coro::block_on(move || accel_coro::spawn("rc", move || *rc).join().unwrap());
//! assert_eq!(v, 5);
//! ```

pub mod capi;
pub mod overflow;
pub mod park;
pub mod pool;
pub mod reactor;
pub mod runtime;
pub mod sched;
pub mod signal;
pub mod stack;
pub mod sync;
pub mod task;
pub mod time;
mod valgrind;
pub mod wait;
pub mod waitlist;
mod waker;
pub mod wheel;
pub mod wio;

use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;

pub use reactor::Readiness;
pub use runtime::{Runtime, RuntimeBuilder};
pub use sched::Scheduler;
pub use signal::{Signal, Subscription};
pub use task::{
    current, is_cancelled, spawn, spawn_detached, spawn_with_stack, try_spawn, yield_now, JoinError,
    JoinHandle,
};
pub use time::{now_ns, sleep, sleep_until};
pub use wait::{wait_fd, wait_until, Wait, WaitError};
pub use waker::TaskKey;

/// Settings of one worker.
#[derive(Clone, Debug)]
pub struct Config {
    /// Usable bytes of each coroutine stack (rounded up to pages).
    pub stack_size: usize,
    /// How long an idle worker spins before it sleeps in `epoll_wait`, ns.
    pub spin_ns: u64,
    /// How many tasks a turn runs before it looks at timers and fds again.
    pub budget: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stack_size: stack::DEFAULT_STACK_SIZE,
            spin_ns: 20_000,
            budget: 1024,
        }
    }
}

/// An event source that the worker's loop polls: the network stack plugs in
/// here. `poll` does a bounded amount of work; the loop calls it every turn,
/// while spinning, and after waking up.
pub trait PollSource {
    /// Does a bounded amount of work at time `now_ns`; returns whether it
    /// made progress (which keeps the worker from sleeping).
    fn poll(&mut self, now_ns: u64) -> bool;
    /// When `poll` must run again even if nothing wakes the worker.
    fn next_deadline(&self) -> Option<u64> {
        None
    }
    /// An fd that becomes readable when the source has work (a device's Rx
    /// interrupt fd); the loop sleeps on it but never reads it.
    fn wake_fd(&self) -> Option<RawFd> {
        None
    }
}

/// The calling thread's worker: owns its scheduler. `!Send`.
pub struct Worker {
    sched: Box<Scheduler>,
    _not_send: PhantomData<*const ()>,
}

impl Worker {
    /// Creates a worker on the calling thread. Fails with `EBUSY` if the
    /// thread already has one.
    pub fn new(config: Config) -> io::Result<Worker> {
        let sched = Scheduler::new(config)?;
        if !sched.set_current() {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        Ok(Worker {
            sched,
            _not_send: PhantomData,
        })
    }

    /// This worker's scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// One turn of the loop; see [`Scheduler::turn`].
    pub fn turn(&self, max_wait_ns: Option<u64>) -> io::Result<usize> {
        self.sched.turn(max_wait_ns)
    }

    /// Runs until no task is alive.
    pub fn run(&self) -> io::Result<()> {
        while self.sched.live_tasks() > 0 {
            self.sched.turn(None)?;
        }
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.sched.abandon_all();
        // Spawns still queued never run: dropping them abandons their joins.
        self.sched.remote().drain(|_| {}, drop);
        Scheduler::clear_current();
    }
}

/// Runs `f` as a coroutine on the calling thread's worker (creating one for
/// the duration if the thread has none) and drives the worker until `f`
/// returns. Panics in `f` are propagated.
pub fn block_on<T: 'static>(f: impl FnOnce() -> T + 'static) -> T {
    let own = match Scheduler::current() {
        Some(s) if s.in_coroutine() => return f(),
        Some(_) => None,
        None => Some(Worker::new(Config::default()).unwrap_or_else(|e| panic!("block_on: {e}"))),
    };
    let r = spawn("main", f).join();
    drop(own);
    r.unwrap_or_else(|e| panic!("{e}"))
}
