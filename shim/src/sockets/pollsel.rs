//! `poll`, `ppoll`, `select` and `pselect` over any mix of accelerated and
//! kernel fds.
//!
//! A call whose fds are all plain kernel fds goes straight to libc (one
//! table load per fd to find out). Otherwise the accelerated fds are
//! answered from the stack's readiness and the kernel fds by the kernel
//! (a zero-timeout `poll` of just those), and if none is ready the
//! worker is driven and the thread sleeps on the kernel fds as well.
//! `select` is `poll` underneath: an fd is readable on `POLLIN`, `POLLHUP`
//! or `POLLERR`, writable on `POLLOUT` or `POLLERR`, exceptional on
//! `POLLPRI`, as in the kernel's `select`. A wildcard listener is polled on
//! both sides. Timeouts are rounded up to the next microsecond, never
//! down; `select` writes back the time left, as Linux does.

use crate::engine::wait::KernelLooks;
use crate::engine::worker::{self};
use crate::fdtable::{State, FDS};
use crate::interpose::skeleton::{Dispatch, Errno};
use crate::sockets::block::{block, WaitEnd, WaitOn};
use crate::sockets::socket::{self, activate, fail, ok, Answer};
use crate::sockets::table::Core;
use crate::sys;
use libc::{c_int, c_short, fd_set, pollfd};
use std::time::Duration;

/// Whether any fd of `fds` is the shim's to answer.
fn any_ours(fds: &[pollfd]) -> bool {
    fds.iter()
        .any(|p| matches!(FDS.get(p.fd).state(), State::Tcp | State::Udp | State::Pending))
}

/// How one pollfd is answered.
#[derive(Clone, Copy)]
enum Side {
    /// By the kernel only (its index in the kernel array).
    Kernel(usize),
    /// By the stack only.
    Stack,
    /// By both (a wildcard listener; its index in the kernel array).
    Both(usize),
    /// Negative fd: ignored.
    Skip,
}

/// epoll readiness bits as poll bits.
fn to_poll(m: u32) -> c_short {
    let mut r = 0;
    if m & libc::EPOLLIN as u32 != 0 {
        r |= libc::POLLIN | libc::POLLRDNORM;
    }
    if m & libc::EPOLLOUT as u32 != 0 {
        r |= libc::POLLOUT | libc::POLLWRNORM;
    }
    if m & libc::EPOLLRDHUP as u32 != 0 {
        r |= libc::POLLRDHUP;
    }
    if m & libc::EPOLLHUP as u32 != 0 {
        r |= libc::POLLHUP;
    }
    if m & libc::EPOLLERR as u32 != 0 {
        r |= libc::POLLERR;
    }
    r
}

/// The poll loop over `fds` (see the module documentation), with the
/// program's signals held off except while the thread sleeps (with
/// `sigmask`, or the mask it had), as `pselect` does: a handler then never
/// runs while this thread holds the shim's locks. (PostgreSQL 15's
/// postmaster unblocks its signals only around `select`, and its handlers
/// fork: a handler that ran while this thread held the worker's lock
/// would wait for it in the fork handler for ever.)
fn poll_fds(
    fds: &mut [pollfd],
    timeout: Option<Duration>,
    sigmask: Option<&libc::sigset_t>,
) -> Result<c_int, Errno> {
    let old = sys::block_signals();
    let r = poll_fds_masked(fds, timeout, Some(sigmask.unwrap_or(&old)));
    sys::set_mask(&old);
    r
}

/// [`poll_fds`] with signals blocked; `sigmask` is the mask to sleep with.
fn poll_fds_masked(
    fds: &mut [pollfd],
    timeout: Option<Duration>,
    sigmask: Option<&libc::sigset_t>,
) -> Result<c_int, Errno> {
    let mut sides = Vec::with_capacity(fds.len());
    let mut kernel: Vec<pollfd> = Vec::new();
    {
        let mut core = crate::sockets::table::lock();
        for p in fds.iter() {
            if p.fd < 0 {
                sides.push(Side::Skip);
                continue;
            }
            let e = activate(&mut core, p.fd, FDS.get(p.fd));
            let both = crate::sockets::close::kernel_side(&core, e);
            let side = match e.state() {
                State::Tcp | State::Udp if both => Side::Both(kernel.len()),
                State::Tcp | State::Udp => Side::Stack,
                _ => Side::Kernel(kernel.len()),
            };
            if matches!(side, Side::Kernel(_) | Side::Both(_)) {
                kernel.push(pollfd {
                    fd: p.fd,
                    events: p.events,
                    revents: 0,
                });
            }
            sides.push(side);
        }
    }
    // Woken for the accelerated sockets, and by the kernel's fds.
    let on: Vec<WaitOn> = fds
        .iter()
        .zip(&sides)
        .filter(|(_, side)| matches!(side, Side::Stack | Side::Both(_)))
        .map(|(p, _)| WaitOn::Sock(FDS.get(p.fd).handle()))
        .collect();
    // The call's first look asks the kernel; its wait's looks now and then.
    let mut looks = KernelLooks::default();
    let mut attempt = |core: &mut Core, kernel: &mut [pollfd]| -> Result<c_int, Errno> {
        if !kernel.is_empty() {
            if looks.due() {
                // SAFETY: a null mask leaves the thread's own.
                let r = unsafe { sys::ppoll(kernel, Some(Duration::ZERO), std::ptr::null()) };
                looks.answered(!matches!(r, Ok(0)));
                if let Err(e) = r {
                    if e != libc::EINTR {
                        return Err(Errno(e));
                    }
                }
            } else {
                // Nothing was ready when last asked, a moment ago.
                kernel.iter_mut().for_each(|k| k.revents = 0);
            }
        }
        let mut n = 0;
        for (p, side) in fds.iter_mut().zip(&sides) {
            let k = match side {
                Side::Kernel(i) | Side::Both(i) => kernel.get(*i).map_or(0, |k| k.revents),
                _ => 0,
            };
            let s = match side {
                Side::Stack | Side::Both(_) => socket::readiness(core, FDS.get(p.fd))
                    .map_or(libc::POLLNVAL, |(m, _)| {
                        to_poll(m) & (p.events | libc::POLLHUP | libc::POLLERR)
                    }),
                _ => 0,
            };
            p.revents = k | s;
            if p.revents != 0 {
                n += 1;
            }
        }
        Ok(n)
    };
    {
        crate::engine::stacks::poll_all_unless_fresh();
        let mut core = crate::sockets::table::lock();
        match attempt(&mut core, &mut kernel) {
            Ok(0) => {}
            r => return r,
        }
    }
    if timeout.is_some_and(|t| t.is_zero()) {
        return Ok(0);
    }
    let dl = socket::deadline(timeout);
    let mut sleep_on = kernel.clone();
    let mut f = |core: &mut Core| match attempt(core, &mut kernel) {
        Ok(0) => None,
        r => Some(r),
    };
    match block(dl, &on, &mut sleep_on, sigmask, &mut f) {
        Ok(r) => r,
        Err(WaitEnd::TimedOut) => Ok(0),
        Err(WaitEnd::Interrupted { .. }) => Err(Errno(libc::EINTR)),
    }
}

/// `poll(2)`/`ppoll(2)`: `NotOurs` when every fd is a kernel fd.
///
/// # Safety
///
/// `fds` valid for `nfds` entries; `sigmask` null or valid.
pub unsafe fn poll(
    fds: *mut pollfd,
    nfds: libc::nfds_t,
    timeout: Option<Duration>,
    sigmask: *const libc::sigset_t,
) -> Answer<c_int> {
    if fds.is_null() || nfds == 0 || nfds > 1 << 20 {
        return Dispatch::NotOurs;
    }
    // SAFETY: the caller's contract.
    let fds = unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) };
    // A child's inherited connections become kernel fds first.
    crate::sockets::forked::attach_each(fds.iter().map(|p| p.fd));
    if !any_ours(fds) {
        return Dispatch::NotOurs;
    }
    // SAFETY: the caller's contract: null or a valid mask.
    Dispatch::Done(poll_fds(fds, timeout, unsafe { sigmask.as_ref() }))
}

/// A `poll` timeout in milliseconds.
pub fn ms(timeout: c_int) -> Option<Duration> {
    (timeout >= 0).then(|| Duration::from_millis(timeout as u64))
}

/// A `timespec` timeout (null: forever); `EINVAL` if malformed.
///
/// # Safety
///
/// `ts` null or valid.
pub unsafe fn ts(ts: *const libc::timespec) -> Result<Option<Duration>, Errno> {
    if ts.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    let t = unsafe { ts.read_unaligned() };
    if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
        return Err(Errno(libc::EINVAL));
    }
    Ok(Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32)))
}

/// Whether `fd` is in `set`.
///
/// # Safety
///
/// `set` null or valid; `fd` below `FD_SETSIZE`.
unsafe fn isset(set: *const fd_set, fd: c_int) -> bool {
    // SAFETY: the caller's contract.
    !set.is_null() && unsafe { libc::FD_ISSET(fd, set) }
}

/// `select(2)`/`pselect(2)` over `nfds` fds.
///
/// # Safety
///
/// The sets are null or valid `fd_set`s; `sigmask` null or valid.
pub unsafe fn select(
    nfds: c_int,
    r: *mut fd_set,
    w: *mut fd_set,
    x: *mut fd_set,
    timeout: Option<Duration>,
    sigmask: *const libc::sigset_t,
) -> (Answer<c_int>, Option<Duration>) {
    if nfds < 0 || nfds > libc::FD_SETSIZE as c_int {
        return (Dispatch::NotOurs, None);
    }
    let mut fds: Vec<pollfd> = Vec::new();
    let mut ours = false;
    for fd in 0..nfds {
        // SAFETY: the caller's contract; `fd < nfds <= FD_SETSIZE`.
        let (ri, wi, xi) = unsafe { (isset(r, fd), isset(w, fd), isset(x, fd)) };
        if !(ri || wi || xi) {
            continue;
        }
        // A child's inherited connection becomes a kernel fd first.
        if crate::sockets::forked::any() {
            crate::sockets::forked::attach_each([fd]);
        }
        ours |= matches!(FDS.get(fd).state(), State::Tcp | State::Udp | State::Pending);
        let mut ev = 0;
        if ri {
            ev |= libc::POLLIN;
        }
        if wi {
            ev |= libc::POLLOUT;
        }
        if xi {
            ev |= libc::POLLPRI;
        }
        fds.push(pollfd {
            fd,
            events: ev,
            revents: 0,
        });
    }
    if !ours {
        return (Dispatch::NotOurs, None);
    }
    let start = worker::now();
    // SAFETY: the caller's contract: null or a valid mask.
    let res = poll_fds(&mut fds, timeout, unsafe { sigmask.as_ref() });
    let left = timeout.map(|t| t.saturating_sub(worker::now().saturating_since(start)));
    let n = match res {
        Ok(_) => {
            // SAFETY: the sets are the caller's (valid or null).
            unsafe {
                for set in [r, w, x] {
                    if !set.is_null() {
                        libc::FD_ZERO(set);
                    }
                }
            }
            let mut n = 0;
            for p in &fds {
                if p.revents & libc::POLLNVAL != 0 {
                    return (fail(libc::EBADF), left);
                }
                let readable = p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                    && p.events & libc::POLLIN != 0;
                let writable =
                    p.revents & (libc::POLLOUT | libc::POLLERR) != 0 && p.events & libc::POLLOUT != 0;
                let except = p.revents & libc::POLLPRI != 0 && p.events & libc::POLLPRI != 0;
                // SAFETY: the fd is below nfds <= FD_SETSIZE; the sets we
                // write were given (non-null) by the caller.
                unsafe {
                    if readable {
                        libc::FD_SET(p.fd, r);
                        n += 1;
                    }
                    if writable {
                        libc::FD_SET(p.fd, w);
                        n += 1;
                    }
                    if except {
                        libc::FD_SET(p.fd, x);
                        n += 1;
                    }
                }
            }
            ok(n)
        }
        Err(e) => Dispatch::Done(Err(e)),
    };
    (n, left)
}

/// A `timeval` timeout (null: forever); `EINVAL` if malformed.
///
/// # Safety
///
/// `tv` null or valid.
pub unsafe fn tv(tv: *const libc::timeval) -> Result<Option<Duration>, Errno> {
    if tv.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    let t = unsafe { tv.read_unaligned() };
    if t.tv_sec < 0 || t.tv_usec < 0 {
        return Err(Errno(libc::EINVAL));
    }
    Ok(Some(
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64),
    ))
}
