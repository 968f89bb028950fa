//! A blocking socket call's wait: the thread registers its waker on what
//! it waits for ([`WaitOn`]: a socket, or an epoll set) and tries its
//! condition under the sockets' lock, after each poll of the stacks that
//! the engine's wait makes ([`crate::engine::wait::drive_until`], which
//! decides who drives the device and how the thread sleeps). Whoever
//! drives hands each signalled socket to its sets and wakes the threads
//! registered on it or on those sets, and no others
//! (`epoll::distribute`).
//!
//! A registration outlives a failed look (the thread sleeps on it) and is
//! removed once the condition is met, so a later event is not this
//! thread's.
//!
//! A read's try does not sleep for its stack's lock under the sockets'
//! lock (every call of the program needs that one): if another thread
//! holds the stack, the look lets the sockets' lock go, waits for the
//! stack's alone, and tries again (`stacks::lock_or_mark_busy`).

use crate::sockets::table::{lock, Core};
use accel_coro::park::Parker;
use accel_stack::Instant;
use libc::{pollfd, sigset_t};
use std::task::Waker;

pub use crate::engine::wait::WaitEnd;

/// What a waiting thread is woken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOn {
    /// A socket (by handle): data, room, a connection, an error, the end.
    Sock(u32),
    /// A TCP connection (by socket handle) whose `attempt` arms the
    /// socket's stack wakers itself whenever it fails, under the stack's
    /// lock it tried with (a read: `Watch::arm_conn`); registering only
    /// puts the thread on the socket's list, which spares a stack lock per
    /// wait.
    Conn(u32),
    /// An epoll set (by handle): a member may be ready.
    Set(u32),
}

impl Core {
    /// Wakes `waker` when `on` may have changed: the socket's stack wakers
    /// are armed, and the thread is on its list.
    pub fn register(&mut self, on: WaitOn, waker: &Waker) {
        match on {
            WaitOn::Sock(h) => {
                let Core { socks, watch, .. } = self;
                watch.arm(socks, h);
                watch.wait_sock(h, waker);
            }
            WaitOn::Conn(h) => self.watch.wait_sock(h, waker),
            WaitOn::Set(h) => self.watch.wait_set(h, waker),
        }
    }

    /// The thread with `waker` no longer waits for `on`.
    pub fn unregister(&mut self, on: WaitOn, waker: &Waker) {
        match on {
            WaitOn::Sock(h) | WaitOn::Conn(h) => self.watch.unwait_sock(h, waker),
            WaitOn::Set(h) => self.watch.unwait_set(h, waker),
        }
    }
}

/// Waits until `attempt` returns a result, the `deadline` passes or a
/// signal arrives. `attempt` runs with the lock held, right after a poll
/// of the stacks and the registration of this thread on `on` (a thread
/// woken for the sockets it waits on tries once before it registers);
/// `extra` are kernel fds to sleep on as well (their `revents` are
/// overwritten); `sigmask` is the mask to sleep with (`ppoll`'s).
pub fn block<R>(
    deadline: Option<Instant>,
    on: &[WaitOn],
    extra: &mut [pollfd],
    sigmask: Option<&sigset_t>,
    attempt: impl FnMut(&mut Core) -> Option<R>,
) -> Result<R, WaitEnd> {
    // What woke the thread before it registers anew was for its last wait
    // (wakers reach a thread only through its registrations): a permit
    // left would end the first sleep at once for nothing (8 % of the
    // threaded echo's waits did).
    Parker::forget_current_permit();
    wait(deadline, on, extra, sigmask, false, attempt)
}

/// As [`block`], for a caller that has registered the thread on `on`
/// ([`Core::register`] with [`Parker::current_waker`], after
/// [`Parker::forget_current_permit`]) and tried its condition after, under
/// one hold of the sockets' lock (a blocking read that found nothing): the
/// first look is left out unless a stack signalled a socket since (the
/// thread registered is woken for its own; a look after that would find
/// what the try found). It spares a read that waits the sockets' lock and
/// a stack's.
pub fn block_registered<R>(
    deadline: Option<Instant>,
    on: &[WaitOn],
    attempt: impl FnMut(&mut Core) -> Option<R>,
) -> Result<R, WaitEnd> {
    wait(deadline, on, &mut [], None, true, attempt)
}

fn wait<R>(
    deadline: Option<Instant>,
    on: &[WaitOn],
    extra: &mut [pollfd],
    sigmask: Option<&sigset_t>,
    mut registered: bool,
    mut attempt: impl FnMut(&mut Core) -> Option<R>,
) -> Result<R, WaitEnd> {
    let waker = Parker::current_waker();
    let socks_only = on.iter().all(|o| matches!(o, WaitOn::Sock(_) | WaitOn::Conn(_)));
    crate::engine::wait::drive_until(deadline, extra, sigmask, |notified| {
        if std::mem::take(&mut registered) && !crate::sockets::ready::pending() {
            return None;
        }
        let mut notified = notified;
        loop {
            let mut core = lock();
            crate::sockets::epoll::distribute(&mut core);
            // The thread is awake and tries next, under this lock: a wake of
            // its own that the hand-out just queued would only leave a permit
            // that ends its next sleep at once, for a look that finds nothing
            // (a thread that reads its lane readied its socket itself; each
            // wait used to cost a second look). Wakes queued after the try
            // (when the lock is let go) stay.
            core.to_wake.retain(|w| !w.will_wake(&waker));
            let _ = crate::engine::stacks::take_busy();
            // Woken for its socket, the thread tries first: a registration
            // takes the socket's stack lock, and is needed only if the socket
            // is not ready after all (then it registers and tries again, so
            // that nothing that comes meanwhile is missed).
            let early = if notified && socks_only {
                attempt(&mut core)
            } else {
                None
            };
            let r = match early {
                Some(r) => r,
                None => {
                    for &o in on {
                        core.register(o, &waker);
                    }
                    let _ = crate::engine::stacks::take_busy();
                    match attempt(&mut core) {
                        Some(r) => r,
                        None => {
                            // If the try found the socket's stack held
                            // (`stacks::lock_or_mark_busy`), the thread waits
                            // for that lock without this one, and tries again
                            // (registered already: anything that comes
                            // meanwhile wakes it, and the next try finds it).
                            let busy = crate::engine::stacks::take_busy();
                            drop(core);
                            let q = busy?;
                            drop(crate::engine::stacks::lock(q));
                            notified = true;
                            continue;
                        }
                    }
                }
            };
            for &o in on {
                core.unregister(o, &waker);
            }
            return Some(r);
        }
    })
}
