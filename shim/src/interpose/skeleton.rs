//! The one skeleton every intercepted call runs, written once and
//! instantiated by the `interpose!` table for each exported function.
//!
//! For an `fd(P)` call ([`by_fd`]):
//! 1. count the call;
//! 2. look fd `P` up in the fd table (one load): a kernel fd, the common
//!    case, goes straight to libc. Nothing is in the table before start-up
//!    has finished, so this also covers "not initialised yet";
//! 3. re-entered on this thread (the shim's own code, or DPDK's start-up
//!    inside it, made the call) → straight to libc;
//! 4. ask the shim's operations ([`Ops`](crate::interpose::Ops)): an answer
//!    is returned, errno set here and only here; "not ours" goes to libc.
//!
//! An `any` call ([`any`]) has no fd to look up: before start-up has
//! finished it goes straight to libc, then steps 3 and 4.
//!
//! Guarantees: nothing here allocates, locks or panics; libc's own errno is
//! never touched on the way through; the shim's operations never run
//! re-entered, and the re-entry mark is cleared before libc is called (so a
//! libc function that calls back into an intercepted one, such as `fork`
//! running the program's `atfork` handlers, is intercepted normally).

use crate::counters::{Outcome, COUNTERS, STRIPES};
use crate::fdtable::{Entry, FDS};
use crate::interpose::{Call, NAMES, N_CALLS};
use crate::logging::log;
use crate::{startup, sys};
use libc::c_int;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// An errno value, as the shim's operations report a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub c_int);

/// The shim's answer to a call it was asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch<R> {
    /// Not the shim's: the call goes to libc.
    NotOurs,
    /// Answered: the value, or the errno the program will see (with the
    /// C function's failure value).
    Done(Result<R, Errno>),
}

/// A C return type, with the value a failing call returns.
pub trait CRet: Copy {
    /// What the C function returns when it fails (and sets errno).
    const FAILED: Self;
}

impl CRet for i32 {
    const FAILED: Self = -1;
}

impl CRet for isize {
    const FAILED: Self = -1;
}

impl CRet for i64 {
    const FAILED: Self = -1;
}

impl CRet for () {
    const FAILED: Self = ();
}

/// What the skeleton keeps per thread.
struct ThreadState {
    /// Inside the shim's own operations.
    in_shim: Cell<bool>,
    /// This thread's counter stripe, `usize::MAX` until first used.
    stripe: Cell<usize>,
}

thread_local! {
    // Const-initialised and without a destructor: every access is a plain
    // TLS access, never a lazy registration that could allocate.
    static THREAD: ThreadState = const {
        ThreadState { in_shim: Cell::new(false), stripe: Cell::new(usize::MAX) }
    };
}

/// The calling thread's counter stripe (assigned round-robin on first use).
#[inline]
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    THREAD
        .try_with(|t| {
            let mut s = t.stripe.get();
            if s == usize::MAX {
                s = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
                t.stripe.set(s);
            }
            s
        })
        .unwrap_or(0)
}

/// Marks the thread as inside the shim's own code until dropped.
pub struct InShim(());

impl InShim {
    /// The mark, or `None` if the thread is already inside the shim (the
    /// call is a re-entry) or has no thread-local storage any more.
    pub fn enter() -> Option<InShim> {
        THREAD
            .try_with(|t| (!t.in_shim.replace(true)).then(|| InShim(())))
            .ok()
            .flatten()
    }

    /// Whether the calling thread is inside the shim's own code.
    pub fn active() -> bool {
        THREAD.try_with(|t| t.in_shim.get()).unwrap_or(true)
    }
}

impl Drop for InShim {
    fn drop(&mut self) {
        let _ = THREAD.try_with(|t| t.in_shim.set(false));
    }
}

/// An `fd(P)` call: the fd table decides (see the module documentation).
#[inline(always)]
pub fn by_fd<R: CRet>(
    call: Call,
    fd: c_int,
    ours: impl FnOnce(Entry) -> Dispatch<R>,
    real: impl FnOnce() -> R,
) -> R {
    on_entry(call, FDS.get(fd), ours, real)
}

/// An `fd(P)` call whose entry the caller already looked up (the hooks).
#[inline(always)]
pub fn on_entry<R: CRet>(
    call: Call,
    entry: Entry,
    ours: impl FnOnce(Entry) -> Dispatch<R>,
    real: impl FnOnce() -> R,
) -> R {
    let stripe = stripe();
    COUNTERS.call(stripe, call);
    if entry.is_kernel() {
        return real();
    }
    in_shim(stripe, || ours(entry), real)
}

/// An `any` call: the shim's operations are asked once start-up is done.
#[inline(always)]
pub fn any<R: CRet>(call: Call, ours: impl FnOnce() -> Dispatch<R>, real: impl FnOnce() -> R) -> R {
    let stripe = stripe();
    COUNTERS.call(stripe, call);
    if !startup::ready() {
        COUNTERS.outcome(stripe, Outcome::Early);
        return real();
    }
    in_shim(stripe, ours, real)
}

/// A `pass` call: counted, then libc.
#[inline(always)]
pub fn pass<R>(call: Call, real: impl FnOnce() -> R) -> R {
    COUNTERS.call(stripe(), call);
    real()
}

/// Steps 3 and 4 of the skeleton: re-entry check, the shim's operations,
/// errno at the boundary.
#[inline(always)]
fn in_shim<R: CRet>(stripe: usize, ours: impl FnOnce() -> Dispatch<R>, real: impl FnOnce() -> R) -> R {
    let Some(mark) = InShim::enter() else {
        COUNTERS.outcome(stripe, Outcome::Reentrant);
        return real();
    };
    let answer = ours();
    drop(mark);
    match answer {
        Dispatch::NotOurs => real(),
        Dispatch::Done(result) => {
            COUNTERS.outcome(stripe, Outcome::Ours);
            boundary(result)
        }
    }
}

/// The one place the shim's answers become C return values and errno.
#[inline]
pub fn boundary<R: CRet>(result: Result<R, Errno>) -> R {
    match result {
        Ok(value) => value,
        Err(Errno(e)) => {
            sys::set_errno(e);
            R::FAILED
        }
    }
}

/// The answer when libc has no function of that name: `ENOSYS`, with one
/// log line per function.
#[cold]
pub fn missing<R: CRet>(call: Call) -> R {
    static LOGGED: [AtomicBool; N_CALLS] = [const { AtomicBool::new(false) }; N_CALLS];
    COUNTERS.outcome(stripe(), Outcome::Missing);
    let first = LOGGED
        .get(call as usize)
        .is_some_and(|l| !l.swap(true, Ordering::Relaxed));
    if first {
        let name = NAMES.get(call as usize).copied().unwrap_or("?");
        log!(warn, "{name}: not found in the C library; failing with ENOSYS");
    }
    boundary(Err(Errno(libc::ENOSYS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentry_is_detected_and_cleared() {
        assert!(!InShim::active());
        let outer = InShim::enter().expect("first entry");
        assert!(InShim::active());
        assert!(InShim::enter().is_none(), "a nested entry is a re-entry");
        assert!(
            InShim::active(),
            "a refused nested entry leaves the outer mark alone"
        );
        drop(outer);
        assert!(!InShim::active());
        assert!(InShim::enter().is_some());
    }

    #[test]
    fn boundary_sets_errno_only_on_failure() {
        sys::set_errno(0);
        assert_eq!(boundary::<isize>(Ok(7)), 7);
        assert_eq!(sys::errno(), 0);
        assert_eq!(boundary::<c_int>(Err(Errno(libc::EAGAIN))), -1);
        assert_eq!(sys::errno(), libc::EAGAIN);
    }

    #[test]
    fn a_kernel_fd_never_reaches_the_shim() {
        let r = by_fd(Call::read, 12345, |_| -> Dispatch<isize> { unreachable!() }, || 3);
        assert_eq!(r, 3);
    }

    #[test]
    fn an_fd_of_ours_is_answered_and_errno_set_once() {
        let fd = 40_001;
        FDS.install(fd, crate::fdtable::State::Udp, 1).unwrap();
        sys::set_errno(0);
        let r = by_fd(
            Call::recv,
            fd,
            |e| Dispatch::Done(Err::<isize, _>(Errno(e.handle() as c_int + 10))),
            || 0,
        );
        assert_eq!((r, sys::errno()), (-1, 11));
        let r = by_fd(Call::recv, fd, |_| Dispatch::NotOurs, || 5isize);
        assert_eq!(r, 5, "not ours: libc answers");
        // Re-entered: libc answers without asking the shim.
        let mark = InShim::enter().unwrap();
        let r = by_fd(Call::recv, fd, |_| -> Dispatch<isize> { unreachable!() }, || 6);
        drop(mark);
        assert_eq!(r, 6);
        FDS.clear(fd);
    }

    #[test]
    fn the_mark_is_dropped_before_libc_runs() {
        let fd = 40_002;
        FDS.install(fd, crate::fdtable::State::Tcp, 1).unwrap();
        let r = by_fd(
            Call::send,
            fd,
            |_| Dispatch::NotOurs,
            || if InShim::active() { 1isize } else { 0 },
        );
        assert_eq!(r, 0);
        FDS.clear(fd);
    }
}
