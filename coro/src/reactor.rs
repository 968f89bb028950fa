//! The kernel side of a worker's event loop: one epoll instance holding the
//! worker's doorbell eventfd, the fds coroutines wait on, and the wake fds of
//! poll sources (a device's Rx interrupt fd, later).
//!
//! An fd is in the epoll set only while someone waits on it (level-triggered,
//! added on the first waiter, removed with the last), so a program that closes
//! and reuses an fd number never meets a stale registration. Several
//! coroutines may wait on one fd; an event wakes every waiter whose interest
//! it matches, and each re-checks. Nothing here blocks except `Reactor::wait`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::Waker;

/// Token of the doorbell eventfd.
const TOKEN_DOORBELL: u64 = u64::MAX;
/// Tokens at or above this name poll-source wake fds.
const TOKEN_SOURCE: u64 = 1 << 40;

/// Readiness bits, as epoll reports them (`EPOLLIN`, `EPOLLOUT`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Readiness(pub u32);

impl Readiness {
    /// Readable (`EPOLLIN`).
    pub const READ: Readiness = Readiness(libc::EPOLLIN as u32);
    /// Writable (`EPOLLOUT`).
    pub const WRITE: Readiness = Readiness(libc::EPOLLOUT as u32);
    /// Error or hang-up: always reported, never asked for.
    pub const ERROR: Readiness = Readiness((libc::EPOLLERR | libc::EPOLLHUP) as u32);
    /// The peer shut down its writing side (`EPOLLRDHUP`).
    pub const RDHUP: Readiness = Readiness(libc::EPOLLRDHUP as u32);

    /// Whether any bit of `other` is set here.
    pub fn intersects(self, other: Readiness) -> bool {
        self.0 & other.0 != 0
    }

    /// Both sets of bits.
    pub fn union(self, other: Readiness) -> Readiness {
        Readiness(self.0 | other.0)
    }
}

struct Waiter {
    id: u64,
    interest: Readiness,
    waker: Waker,
}

#[derive(Default)]
struct FdSlot {
    waiters: Vec<Waiter>,
    registered: u32,
    ready: Readiness,
}

/// An epoll instance and the fds waited on through it.
pub(crate) struct Reactor {
    epfd: OwnedFd,
    fds: HashMap<RawFd, FdSlot>,
    next_id: u64,
    events: Vec<libc::epoll_event>,
}

/// What a call to [`Reactor::wait`] saw.
#[derive(Default, Debug)]
pub(crate) struct Woken {
    pub doorbell: bool,
    /// Indices of poll sources whose wake fd fired.
    pub sources: u64,
    pub fds: usize,
}

impl Reactor {
    pub(crate) fn new(doorbell: RawFd) -> io::Result<Reactor> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let r = Reactor {
            // SAFETY: a fresh fd that we own.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            fds: HashMap::new(),
            next_id: 1,
            events: Vec::with_capacity(256),
        };
        r.ctl(
            libc::EPOLL_CTL_ADD,
            doorbell,
            libc::EPOLLIN as u32,
            TOKEN_DOORBELL,
        )?;
        Ok(r)
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Adds a poll source's wake fd (level-triggered, read interest).
    pub(crate) fn add_source_fd(&self, fd: RawFd, index: usize) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd,
            libc::EPOLLIN as u32,
            TOKEN_SOURCE + index as u64,
        )
    }

    /// Removes a poll source's wake fd.
    pub(crate) fn remove_source_fd(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Starts waiting on `fd`; returns the waiter's id for [`Self::check`]
    /// and [`Self::unwatch`].
    pub(crate) fn watch(&mut self, fd: RawFd, interest: Readiness, waker: Waker) -> io::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let slot = self.fds.entry(fd).or_default();
        let want = slot.registered | interest.0 | libc::EPOLLRDHUP as u32;
        let op = if slot.registered == 0 {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        if want != slot.registered {
            let r = self.ctl(op, fd, want, fd as u64);
            let slot = self.fds.get_mut(&fd).expect("inserted above");
            if let Err(e) = r {
                if slot.waiters.is_empty() {
                    self.fds.remove(&fd);
                }
                return Err(e);
            }
            slot.registered = want;
        }
        let slot = self.fds.get_mut(&fd).expect("inserted above");
        slot.waiters.push(Waiter { id, interest, waker });
        Ok(id)
    }

    /// The readiness seen on `fd` that matches `interest` (errors always
    /// match), if any.
    pub(crate) fn check(&self, fd: RawFd, interest: Readiness) -> Option<Readiness> {
        let slot = self.fds.get(&fd)?;
        let hit = Readiness(slot.ready.0 & (interest.0 | Readiness::ERROR.0 | libc::EPOLLRDHUP as u32));
        (hit.intersects(interest) || hit.intersects(Readiness::ERROR)).then_some(hit)
    }

    /// Stops waiting; the fd leaves the epoll set with its last waiter.
    pub(crate) fn unwatch(&mut self, fd: RawFd, id: u64) {
        let Some(slot) = self.fds.get_mut(&fd) else {
            return;
        };
        slot.waiters.retain(|w| w.id != id);
        if slot.waiters.is_empty() {
            self.fds.remove(&fd);
            // The fd may have been closed meanwhile: then the kernel already
            // dropped it from the set and DEL fails harmlessly.
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
        }
    }

    /// Whether any fd is being waited on.
    pub(crate) fn has_fd_waiters(&self) -> bool {
        !self.fds.is_empty()
    }

    /// Waits up to `timeout_ms` (-1: forever, 0: just look) and wakes the
    /// waiters of every fd that became ready.
    pub(crate) fn wait(&mut self, timeout_ms: i32) -> io::Result<Woken> {
        self.events.clear();
        let cap = self.events.capacity();
        // SAFETY: the buffer has room for `cap` events; the kernel writes at
        // most that many and we set the length to what it reports.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                cap as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(Woken::default());
            }
            return Err(e);
        }
        // SAFETY: the kernel initialised the first n entries.
        unsafe { self.events.set_len(n as usize) };
        let mut woken = Woken::default();
        for i in 0..self.events.len() {
            let ev = self.events[i];
            let (token, bits) = (ev.u64, ev.events);
            if token == TOKEN_DOORBELL {
                woken.doorbell = true;
            } else if token >= TOKEN_SOURCE {
                woken.sources |= 1 << ((token - TOKEN_SOURCE) % 64);
            } else if let Some(slot) = self.fds.get_mut(&(token as RawFd)) {
                slot.ready = Readiness(bits);
                woken.fds += 1;
                for w in &slot.waiters {
                    if w.interest.intersects(Readiness(bits)) || Readiness(bits).intersects(Readiness::ERROR)
                    {
                        w.waker.wake_by_ref();
                    }
                }
            }
        }
        Ok(woken)
    }
}
