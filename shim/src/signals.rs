//! Knowing when a signal handler ran, so that a call the shim is running
//! (spinning on the device, or asleep) ends with `EINTR`, or restarts under
//! `SA_RESTART`, exactly when the kernel's call would.
//!
//! `sigaction` and `signal` are intercepted: a handler the program installs
//! is kept in a table of the shim's, and the kernel gets a trampoline
//! instead, with the program's flags and mask. The trampoline counts the
//! delivery (one counter for every handler, one for handlers without
//! `SA_RESTART`) and calls the program's handler with the arguments it
//! asked for. The program always sees its own handler: the old action
//! `sigaction` returns is the program's, never the trampoline.
//!
//! A waiting call ([`crate::sockets::block::block`]) reads the counters when it
//! starts and after each poll: a change is an interruption, also while it
//! spins and no system call could have been interrupted. Handlers installed
//! before the library started, or with a raw system call, are not seen
//! here; for those a sleep interrupted with `EINTR` still ends the wait,
//! and [`crate::sys::some_handler_interrupts`] decides about restarting.
//!
//! Guarantees: the trampoline is async-signal-safe (atomics only; it
//! allocates nothing, takes no lock, leaves `errno` alone); the table is
//! fixed-size atomics.

use libc::{c_int, c_void, sighandler_t, siginfo_t};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

/// Signals 1 to 64.
const NSIG: usize = 65;

/// The program's handler per signal (0: none of ours: default, ignore, or
/// not installed through us).
static HANDLER: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];
/// The program's `sa_flags` per signal.
static FLAGS: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];

/// Deliveries of any handler the shim knows.
static RAN: AtomicU64 = AtomicU64::new(0);
/// Deliveries of handlers without `SA_RESTART`.
static RAN_NO_RESTART: AtomicU64 = AtomicU64::new(0);

/// Signals whose handler the shim's own code (DPDK) installed, one bit
/// each: never the program's, never an interruption.
static INTERNAL: AtomicU64 = AtomicU64::new(0);

/// DPDK (inside the shim) sets an action for `sig`.
pub fn internal(sig: c_int, act: *const libc::sigaction) {
    if !act.is_null() && (1..NSIG as c_int).contains(&sig) {
        INTERNAL.fetch_or(1 << (sig - 1), AcqRel);
    }
}

/// Whether the handler of `sig` is the shim's own (DPDK's).
pub fn is_internal(sig: c_int) -> bool {
    (1..NSIG as c_int).contains(&sig) && INTERNAL.load(Acquire) & (1 << (sig - 1)) != 0
}

/// The delivery counters now: `(any, without SA_RESTART)`.
#[inline]
pub fn epoch() -> (u64, u64) {
    (RAN.load(Acquire), RAN_NO_RESTART.load(Acquire))
}

/// The kernel's trampoline: counts, then runs the program's handler.
extern "C" fn trampoline(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    let i = sig as usize;
    let (Some(h), Some(f)) = (HANDLER.get(i), FLAGS.get(i)) else {
        return;
    };
    let handler = h.load(Acquire);
    let flags = f.load(Acquire) as c_int;
    RAN.fetch_add(1, AcqRel);
    if flags & libc::SA_RESTART == 0 {
        RAN_NO_RESTART.fetch_add(1, AcqRel);
    }
    if flags & libc::SA_RESETHAND != 0 {
        // The kernel reset the action to the default on delivery.
        h.store(0, Release);
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return;
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed `handler` as an sa_sigaction
        // (SA_SIGINFO), whose type this is.
        let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) = unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the program installed `handler` as an sa_handler.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// The program's action for `sig` as it set it, if the shim installed it.
fn user_action(sig: c_int, kernel: &libc::sigaction) -> libc::sigaction {
    let i = sig as usize;
    let h = HANDLER.get(i).map_or(0, |h| h.load(Acquire));
    if h == 0 || kernel.sa_sigaction != tramp() {
        return *kernel;
    }
    let mut a = *kernel;
    a.sa_sigaction = h;
    a.sa_flags = FLAGS.get(i).map_or(kernel.sa_flags as usize, |f| f.load(Acquire)) as c_int;
    a
}

/// `sigaction(2)` as the program sees it (see the module documentation).
///
/// # Safety
///
/// `act` and `old` are null or valid.
pub unsafe fn sigaction(
    real: unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int,
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let catchable = (1..NSIG as c_int).contains(&sig) && sig != libc::SIGKILL && sig != libc::SIGSTOP;
    // SAFETY: an all-zero sigaction is a valid value to overwrite.
    let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
    if !catchable || act.is_null() {
        // SAFETY: the program's arguments; `prev` is writable.
        let r = unsafe { real(sig, act, &mut prev) };
        if r == 0 && !old.is_null() {
            let shown = if catchable { user_action(sig, &prev) } else { prev };
            // SAFETY: `old` is valid (the caller's contract).
            unsafe { old.write(shown) };
        }
        return r;
    }
    // SAFETY: `act` is valid (the caller's contract).
    let mut want = unsafe { act.read() };
    let handler = want.sa_sigaction;
    let want_flags = want.sa_flags as usize;
    let i = sig as usize;
    let ours = handler != libc::SIG_DFL && handler != libc::SIG_IGN;
    if ours {
        want.sa_sigaction = tramp();
        want.sa_flags |= libc::SA_SIGINFO;
    }
    // Publish the program's handler before the kernel can call the
    // trampoline with it.
    let saved = (
        HANDLER.get(i).map_or(0, |h| h.load(Acquire)),
        FLAGS.get(i).map_or(0, |f| f.load(Acquire)),
    );
    if ours {
        if let (Some(h), Some(f)) = (HANDLER.get(i), FLAGS.get(i)) {
            f.store(want_flags, Release);
            h.store(handler, Release);
        }
    }
    // SAFETY: `want` and `prev` are live.
    let r = unsafe { real(sig, &want, &mut prev) };
    if r != 0 {
        if let (Some(h), Some(f)) = (HANDLER.get(i), FLAGS.get(i)) {
            h.store(saved.0, Release);
            f.store(saved.1, Release);
        }
        return r;
    }
    if !ours {
        if let Some(h) = HANDLER.get(i) {
            h.store(0, Release);
        }
    }
    if !old.is_null() {
        let mut shown = prev;
        if prev.sa_sigaction == tramp() && saved.0 != 0 {
            shown.sa_sigaction = saved.0;
            shown.sa_flags = saved.1 as c_int;
        }
        // SAFETY: `old` is valid (the caller's contract).
        unsafe { old.write(shown) };
    }
    0
}

/// The trampoline's address, as `sa_sigaction` holds it.
fn tramp() -> usize {
    trampoline as *const () as usize
}

/// `signal(3)`: glibc's BSD semantics (`SA_RESTART`, the signal blocked
/// while its handler runs), through [`sigaction`].
///
/// # Safety
///
/// None beyond `signal`'s.
pub unsafe fn signal(
    real: unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int,
    sig: c_int,
    handler: sighandler_t,
) -> sighandler_t {
    if handler == libc::SIG_ERR || !(1..NSIG as c_int).contains(&sig) {
        crate::sys::set_errno(libc::EINVAL);
        return libc::SIG_ERR;
    }
    // SAFETY: an all-zero sigaction is valid; the mask is then emptied.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `act.sa_mask` is a live sigset.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: live arguments.
    if unsafe { sigaction(real, sig, &act, &mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    static HIT: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_usr2(_: c_int) {
        HIT.store(true, SeqCst);
    }

    fn real() -> unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int {
        libc::sigaction
    }

    #[test]
    fn handlers_run_counted_and_the_program_sees_its_own() {
        let handler = on_usr2 as extern "C" fn(c_int) as sighandler_t;
        // SAFETY: installing a handler that only sets a flag.
        let old = unsafe { signal(real(), libc::SIGUSR2, handler) };
        assert_ne!(old, libc::SIG_ERR);
        let before = epoch();
        // SAFETY: raising a signal this test handles.
        unsafe { libc::raise(libc::SIGUSR2) };
        assert!(HIT.load(SeqCst), "the program's handler ran");
        let after = epoch();
        assert!(after.0 > before.0, "the delivery was counted");
        assert_eq!(after.1, before.1, "signal() handlers restart");
        // The program sees its own handler, not the trampoline.
        // SAFETY: a query with a writable old action.
        let mut q: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a query: no new action, a writable old one.
        let r = unsafe { sigaction(real(), libc::SIGUSR2, std::ptr::null(), &mut q) };
        assert_eq!(r, 0);
        assert_eq!(q.sa_sigaction, handler);
        assert_eq!(q.sa_flags & libc::SA_SIGINFO, 0, "the program's flags");
        // Back to the default.
        // SAFETY: restoring the default action.
        let prev = unsafe { signal(real(), libc::SIGUSR2, libc::SIG_DFL) };
        assert_eq!(prev, handler);
        // SAFETY: a query, as above.
        let r = unsafe { sigaction(real(), libc::SIGUSR2, std::ptr::null(), &mut q) };
        assert_eq!(r, 0);
        assert_eq!(q.sa_sigaction, libc::SIG_DFL);
    }

    #[test]
    fn bad_signals_are_refused_like_the_kernel() {
        // SAFETY: invalid signal numbers touch nothing.
        assert_eq!(unsafe { signal(real(), 0, libc::SIG_IGN) }, libc::SIG_ERR);
        assert_eq!(crate::sys::errno(), libc::EINVAL);
        // SAFETY: as above.
        let mut q: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: SIGKILL cannot be caught; the kernel says EINVAL.
        let r = unsafe { sigaction(real(), libc::SIGKILL, &q, &mut q) };
        assert_eq!((r, crate::sys::errno()), (-1, libc::EINVAL));
    }
}
