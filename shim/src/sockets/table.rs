//! The sockets layer's tables behind their one lock: the shim's sockets,
//! its epoll sets, who watches what, and the threads to wake. A thread
//! holds the lock ([`lock`]) only for a bounded piece of work (one socket
//! operation, one hand-out of what a poll signalled), never while it
//! sleeps; each stack has a lock of its own below it
//! ([`crate::engine::stacks`]), taken after this one when both are held.
//!
//! Dropping the guard hands out what the stacks signalled meanwhile
//! ([`crate::sockets::epoll::distribute`]) and wakes the threads it
//! concerned, after the lock is released ([`CoreGuard`]), so a woken
//! thread does not wake into a held lock. [`Tables`] is how the engine
//! asks for that hand-out ([`crate::engine::Above`]).

use crate::engine::device;
use crate::engine::worker::{now, status, Status};
use crate::logging::log;
use crate::sockets::epoll::EpollSet;
use crate::sockets::ready::Watch;
use crate::sockets::sock::{Slab, Sock};
use accel_stack::iface::PollResult;
use libc::c_int;
use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

/// Everything the worker's lock guards: the tables above the stacks (each
/// stack has a lock of its own: [`crate::engine::stacks`]).
pub struct Core {
    /// The shim's sockets, by fd-table handle.
    pub socks: Slab<Sock>,
    /// The shim's epoll interest sets, by fd-table handle.
    pub epolls: Slab<EpollSet>,
    /// Which sets watch which sockets, and the sockets' wakers.
    pub watch: Watch,
    /// The next port tried for a `bind` to port 0 before the stack runs.
    pub next_port: u16,
    /// Threads to wake once the lock is dropped (see [`CoreGuard`]).
    pub to_wake: Vec<Waker>,
}

static CORE: Mutex<Core> = Mutex::new(Core {
    socks: Slab::new(),
    epolls: Slab::new(),
    watch: Watch::new(),
    next_port: 40000,
    to_wake: Vec::new(),
});

/// The worker's state, locked. Threads that the holder's work woke are
/// woken when the guard is dropped, after the lock.
pub fn lock() -> CoreGuard {
    if let Ok(g) = CORE.try_lock() {
        return CoreGuard::new(g);
    }
    // Held: how long the wait lasts is counted (the counters file).
    let since = crate::engine::worker::now();
    // A panic is an abort here: the lock is never poisoned.
    let g = CoreGuard::new(CORE.lock().unwrap_or_else(|e| e.into_inner()));
    crate::engine::stats::lock_waited(crate::engine::stats::Lock::Sockets, since);
    g
}

/// As [`lock`], if nobody holds it.
pub fn try_lock() -> Option<CoreGuard> {
    CORE.try_lock().ok().map(CoreGuard::new)
}

/// The locked [`Core`]; dropping it unlocks, then wakes the threads in
/// [`Core::to_wake`] (mio's and tokio's habit: a thread woken while the
/// lock is held would only wait for it).
///
/// The lock is std's futex mutex: under contention it spins briefly, then
/// sleeps in the kernel. (parking_lot's yields the CPU a few times first:
/// with ten threads on two cores, `sched_yield` took 9 % of a
/// thread-per-connection server's time and doubled its context switches.)
pub struct CoreGuard {
    guard: ManuallyDrop<MutexGuard<'static, Core>>,
}

thread_local! {
    /// Each thread's buffer for the wakers it wakes after unlocking (traded
    /// with [`Core::to_wake`], so no wake-up allocates once both have grown).
    static SPARE: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
    /// The lock, held by this thread across `fork` ([`before_fork`]).
    static FORK_HOLD: RefCell<Option<MutexGuard<'static, Core>>> = const { RefCell::new(None) };
}

impl CoreGuard {
    fn new(guard: MutexGuard<'static, Core>) -> CoreGuard {
        let _ = HELD.try_with(|h| h.set(h.get() + 1));
        device::hold_flushes();
        CoreGuard {
            guard: ManuallyDrop::new(guard),
        }
    }
}

thread_local! {
    /// How many [`CoreGuard`]s this thread holds (0 or 1; a stack guard
    /// dropped meanwhile leaves its frames to this one's drop).
    static HELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this thread holds the worker's lock.
pub fn held() -> bool {
    HELD.try_with(|h| h.get() > 0).unwrap_or(false)
}

/// At the program's normal exit (`exit`, a return from `main`): every
/// socket closes as the kernel closes those of a dying process: a
/// connection with data the program never read is reset, every other
/// sends what it queued, then its FIN; listeners and UDP sockets go. The
/// kernel goes on sending for the dead process; this process cannot, so it
/// polls the stacks until nothing is owed any more, for at most `linger`.
/// Returns how many connections still owed data when it gave up.
pub fn close_all_at_exit(linger: std::time::Duration) -> usize {
    if status() != Status::Up {
        return 0;
    }
    let t0 = now();
    // Another thread of the program may still hold the tables: a moment.
    let core = loop {
        if let Some(c) = try_lock() {
            break Some(c);
        }
        if now().saturating_since(t0) > std::time::Duration::from_millis(200) {
            break None;
        }
        std::thread::yield_now();
    };
    let Some(core) = core else { return 0 };
    let kinds: Vec<crate::sockets::sock::Kind> = core.socks.iter().map(|(_, s)| s.kind.clone()).collect();
    drop(core);
    let t = now();
    for kind in kinds {
        use crate::sockets::sock::Kind;
        match kind {
            Kind::Tcp(q, h) => {
                if let Some(mut s) = crate::engine::stacks::lock(q) {
                    let unread = s.iface.tcp.socket(h).is_some_and(|c| c.recv_queue() > 0);
                    if unread {
                        let _ = s.iface.tcp.with_conn(h, |c| {
                            c.abort();
                            Ok(())
                        });
                    }
                    let _ = s.iface.tcp.close(h, t);
                }
            }
            Kind::Listener { tcp: Some(hs), .. } => {
                // With the port shared, what nobody accepted goes to
                // another process (`migrate`) while the loop below waits.
                for (q, h) in hs.iter().enumerate() {
                    if let Some(mut s) = crate::engine::stacks::lock(q as crate::engine::stacks::Q) {
                        crate::engine::migrate::close_listener(&mut s, *h, t);
                    }
                }
            }
            Kind::Udp(hs) => {
                for (q, h) in hs.iter().enumerate() {
                    if let Some(mut s) = crate::engine::stacks::lock(q as crate::engine::stacks::Q) {
                        let _ = s.iface.udp_close(*h);
                    }
                }
            }
            _ => {}
        }
    }
    // What nobody accepted goes to the port owner, which outlives us.
    crate::engine::migrate::park_all(t);
    loop {
        crate::engine::stacks::poll_all();
        crate::engine::device::flush_all_now();
        let owing: usize = (0..crate::engine::stacks::count() as crate::engine::stacks::Q)
            .filter_map(|q| Some(crate::engine::stacks::lock(q)?.iface.tcp.owing()))
            .sum();
        if owing == 0 {
            // Every connection closed properly: the reaper has nothing to
            // reset.
            crate::engine::reaper::quiet();
            return 0;
        }
        if now().saturating_since(t0) >= linger {
            // The reaper resets what is still open.
            return owing;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}

/// The `fork` prepare handler: the forking thread holds the lock across
/// the fork, so the child's copy of the core is consistent and unlocked
/// (no other thread of the parent's survives in the child to hold it).
pub extern "C" fn before_fork() {
    if held() {
        // A signal handler forks while this very thread is inside the
        // shim with the lock (its own wait holds signals off: this is some
        // other call). Waiting for the lock would wait for ever; the child
        // gets the tables as they are, and no channel to the proxy (its
        // connections are inert).
        log!(
            warn,
            "fork from a signal handler inside a socket call: the child's connections are inert"
        );
        return;
    }
    let mut g = CORE.lock().unwrap_or_else(|e| e.into_inner());
    // Connections a child will hold: its channel to the proxy.
    crate::sockets::proxy::before_fork(&mut g);
    let _ = FORK_HOLD.try_with(|h| *h.borrow_mut() = Some(g));
}

/// The `fork` parent handler: releases what [`before_fork`] took.
pub extern "C" fn after_fork_in_parent() {
    let _ = FORK_HOLD.try_with(|h| h.borrow_mut().take());
    crate::sockets::proxy::after_fork_in_parent();
}

/// In the child of `fork`: the lock this thread took before the fork
/// ([`before_fork`]) is released, and threads of the parent's are not
/// woken here.
pub fn after_fork_in_child() {
    let _ = FORK_HOLD.try_with(|h| h.borrow_mut().take());
    crate::sockets::ready::after_fork();
    // (Held only if a signal handler forked inside this thread's own shim
    // call, see `before_fork`: then that frame has it.)
    if let Some(mut core) = try_lock() {
        core.to_wake.clear();
    }
}

impl std::ops::Deref for CoreGuard {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.guard
    }
}

impl std::ops::DerefMut for CoreGuard {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.guard
    }
}

impl Drop for CoreGuard {
    fn drop(&mut self) {
        if crate::sockets::ready::pending() {
            // A stack polled under this lock signalled sockets.
            crate::sockets::epoll::distribute(&mut self.guard);
        }
        let mut woken = Vec::new();
        if !self.guard.to_wake.is_empty() {
            let spare = SPARE
                .try_with(|s| std::mem::take(&mut *s.borrow_mut()))
                .unwrap_or_default();
            woken = std::mem::replace(&mut self.guard.to_wake, spare);
        }
        // SAFETY: the guard is dropped once, here, and not used after.
        drop(unsafe { ManuallyDrop::take(&mut self.guard) });
        let _ = HELD.try_with(|h| h.set(h.get().saturating_sub(1)));
        device::release_flushes();
        if woken.is_empty() {
            return;
        }
        crate::engine::wait::note_woken(woken.len());
        for w in woken.drain(..) {
            w.wake();
        }
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = woken;
            }
        });
    }
}

impl Core {
    /// Polls every stack once, then hands the sockets they signalled to
    /// the sets and threads waiting for them. (Device I/O under the
    /// worker's lock: the waits and the data calls poll without it, with
    /// [`crate::engine::stacks::poll`].)
    pub fn drive(&mut self) -> PollResult {
        let r = crate::engine::stacks::poll_all();
        crate::sockets::epoll::distribute(self);
        r
    }
}

/// The tables, as the engine sees them ([`crate::engine::Above`]).
pub struct Tables;

impl crate::engine::Above for Tables {
    fn hand_out(&self, wait: bool) {
        if held() || !crate::sockets::ready::pending() {
            // The holder hands out as it drops the lock.
            return;
        }
        let core = if wait { Some(lock()) } else { try_lock() };
        if let Some(mut core) = core {
            crate::sockets::epoll::distribute(&mut core);
        }
    }

    fn round_done(&self, seen: &[u32], halves: &mut Vec<(c_int, u32)>, wait: bool) -> bool {
        let core = if wait { Some(lock()) } else { try_lock() };
        let Some(mut core) = core else { return false };
        crate::sockets::epoll::distribute(&mut core);
        for &set in seen {
            core.watch.kernel_half_seen(set);
        }
        halves.clear();
        halves.extend_from_slice(core.watch.kernel_halves());
        true
    }

    fn table_sizes(&self) -> Option<(usize, usize)> {
        let core = try_lock()?;
        Some((core.socks.len(), core.epolls.len()))
    }
}
