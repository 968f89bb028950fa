//! Parking a plain thread until it is woken: the bottom of every wait that
//! runs outside a coroutine (here in [`crate::wait`], and the shim's waits
//! for its sockets).
//!
//! Each thread has one [`Parker`]: a futex word and, made on first need, an
//! eventfd. [`Parker::park`] sleeps on the futex; [`Parker::park_poll`]
//! sleeps in `ppoll` on the eventfd *and* the caller's fds (a thread that
//! must also hear kernel fds, or take a signal mask, as `epoll_pwait`
//! does). [`Parker::unpark`] (or the thread's [`Waker`]) wakes it from
//! either: a futex wake or an eventfd write, whichever it sleeps in, and no
//! system call at all when it does not sleep.
//!
//! Guarantees:
//! - No lost wake-up: an `unpark` that comes before the `park` leaves a
//!   permit, and the `park` returns at once (consuming it).
//! - A signal handler that runs in the parked thread ends the park as
//!   [`Woke::Interrupted`] (the futex and `ppoll` return `EINTR`; nothing
//!   restarts them), so a caller can apply its own restart rules.
//! - Only raw system calls (`futex`, `ppoll`, `eventfd2`, `read`, `write`,
//!   `close`), never a libc function that an interposer may replace, and
//!   `errno` is left as it was: the shim parks inside the calls it
//!   intercepts.
//! - Spurious returns are possible (as for every park); callers re-check.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering::*};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

/// Not parked, no permit.
const EMPTY: u32 = 0;
/// Asleep on the futex.
const PARKED: u32 = 1;
/// Woken (or about to be): the next park returns at once.
const NOTIFIED: u32 = 2;
/// Asleep in `ppoll` on the eventfd.
const POLLING: u32 = 3;

/// How a park ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woke {
    /// [`Parker::unpark`] was called (now or before the park).
    Notified,
    /// One of the caller's fds has an event ([`Parker::park_poll`]).
    Fds,
    /// The timeout passed (or a spurious return).
    TimedOut,
    /// A signal handler ran.
    Interrupted,
}

/// A thread's parking place. Shared through an `Arc` with whoever may wake
/// it (its [`Waker`] holds one).
#[derive(Debug)]
pub struct Parker {
    state: AtomicU32,
    /// The eventfd of [`Parker::park_poll`], made on first need; -1 before.
    efd: AtomicI32,
}

impl Parker {
    /// A parker for a thread (normally [`Parker::current`]'s).
    pub fn new() -> Parker {
        Parker {
            state: AtomicU32::new(EMPTY),
            efd: AtomicI32::new(-1),
        }
    }

    /// The calling thread's parker.
    pub fn current() -> Arc<Parker> {
        CURRENT.with(|c| c.0.clone())
    }

    /// A waker that unparks the calling thread (cheap: a reference count).
    pub fn current_waker() -> Waker {
        CURRENT.with(|c| c.1.get_or_init(|| Waker::from(c.0.clone())).clone())
    }

    /// Drops a permit waiting in the calling thread's parker, if any: for
    /// a caller about to register its waker anew, to whom a wake that came
    /// before is stale (it was for what the thread waited for last), and
    /// would only end its next park at once, for nothing.
    pub fn forget_current_permit() {
        let _ = CURRENT.try_with(|c| c.0.forget_permit());
    }

    /// Drops a permit waiting in this parker, if any (see
    /// [`Parker::forget_current_permit`]).
    pub fn forget_permit(&self) {
        let _ = self.state.compare_exchange(NOTIFIED, EMPTY, Acquire, Relaxed);
    }

    /// Sleeps until unparked, a signal handler runs, or `timeout` passes
    /// (`None`: no limit). Returns at once if a permit is waiting.
    pub fn park(&self, timeout: Option<Duration>) -> Woke {
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Acquire, Acquire)
            .is_ok()
        {
            return Woke::Notified;
        }
        if self
            .state
            .compare_exchange(EMPTY, PARKED, Acquire, Acquire)
            .is_err()
        {
            // NOTIFIED arrived in between.
            self.state.store(EMPTY, Release);
            return Woke::Notified;
        }
        let r = futex_wait(&self.state, PARKED, timeout);
        match self.state.swap(EMPTY, Acquire) {
            NOTIFIED => Woke::Notified,
            _ if r == Err(libc::EINTR) => Woke::Interrupted,
            _ => Woke::TimedOut,
        }
    }

    /// As [`Parker::park`], also waking for an event on any of `fds` (their
    /// `revents` are set), with the signal mask `sigmask` while asleep
    /// (null: the thread's own). `fds` is the caller's buffer: the
    /// eventfd is pushed on it for the sleep and popped after. Fails only if
    /// no eventfd can be made (its errno).
    ///
    /// # Safety
    ///
    /// `sigmask` is null or points to a valid signal set.
    pub unsafe fn park_poll(
        &self,
        fds: &mut Vec<libc::pollfd>,
        timeout: Option<Duration>,
        sigmask: *const libc::sigset_t,
    ) -> Result<Woke, i32> {
        let efd = self.eventfd()?;
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Acquire, Acquire)
            .is_ok()
        {
            return Ok(Woke::Notified);
        }
        if self
            .state
            .compare_exchange(EMPTY, POLLING, Acquire, Acquire)
            .is_err()
        {
            self.state.store(EMPTY, Release);
            return Ok(Woke::Notified);
        }
        fds.push(libc::pollfd {
            fd: efd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: `fds` is a live vector of pollfds; `sigmask` the caller's.
        let r = unsafe { ppoll(fds, timeout, sigmask) };
        let bell = fds.pop().is_some_and(|p| p.revents & libc::POLLIN != 0);
        let state = self.state.swap(EMPTY, Acquire);
        if bell {
            drain(efd);
        }
        Ok(match r {
            _ if state == NOTIFIED => Woke::Notified,
            Err(libc::EINTR) => Woke::Interrupted,
            Ok(n) if n > 0 => Woke::Fds,
            _ => Woke::TimedOut,
        })
    }

    /// Wakes the thread (now, or at its next park).
    pub fn unpark(&self) {
        match self.state.swap(NOTIFIED, Release) {
            PARKED => futex_wake(&self.state),
            POLLING => {
                let efd = self.efd.load(Acquire);
                if efd >= 0 {
                    ring(efd);
                }
            }
            _ => {}
        }
    }

    /// In the child of `fork`: the eventfd is the parent's too (a wake
    /// here would wake the parent's thread), so the child makes its own at
    /// its next [`Parker::park_poll`]; no permit survives.
    pub fn after_fork(&self) {
        let old = self.efd.swap(-1, AcqRel);
        if old >= 0 {
            close(old);
        }
        self.state.store(EMPTY, Release);
    }

    /// The eventfd, made if need be.
    fn eventfd(&self) -> Result<i32, i32> {
        let fd = self.efd.load(Acquire);
        if fd >= 0 {
            return Ok(fd);
        }
        let made = keep_errno(|| {
            // SAFETY: eventfd2 takes no pointers.
            let r = unsafe { libc::syscall(libc::SYS_eventfd2, 0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if r < 0 {
                Err(errno())
            } else {
                Ok(r as i32)
            }
        })?;
        match self.efd.compare_exchange(-1, made, AcqRel, Acquire) {
            Ok(_) => Ok(made),
            Err(other) => {
                close(made);
                Ok(other)
            }
        }
    }
}

impl Default for Parker {
    fn default() -> Parker {
        Parker::new()
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        let fd = *self.efd.get_mut();
        if fd >= 0 {
            close(fd);
        }
    }
}

impl Wake for Parker {
    fn wake(self: Arc<Self>) {
        self.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.unpark();
    }
}

thread_local! {
    /// This thread's parker, and its waker once asked for.
    static CURRENT: (Arc<Parker>, OnceCell<Waker>) = (Arc::new(Parker::new()), OnceCell::new());
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Runs `f` and puts `errno` back as it was.
fn keep_errno<T>(f: impl FnOnce() -> T) -> T {
    let saved = errno();
    let r = f();
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = saved };
    r
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<(), i32> {
    let ts = timeout.map(timespec);
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    keep_errno(|| {
        // SAFETY: `word` is a live, aligned 32-bit atomic; `tsp` null or a
        // live timespec (a relative timeout for FUTEX_WAIT).
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                tsp,
            )
        };
        if r < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    })
}

fn futex_wake(word: &AtomicU32) {
    keep_errno(|| {
        // SAFETY: `word` is a live, aligned 32-bit atomic.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            )
        };
    });
}

/// `ppoll(2)`: how many fds have events, or the errno.
///
/// # Safety
///
/// `sigmask` is null or a valid signal set.
unsafe fn ppoll(
    fds: &mut [libc::pollfd],
    timeout: Option<Duration>,
    sigmask: *const libc::sigset_t,
) -> Result<usize, i32> {
    let ts = timeout.map(timespec);
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    keep_errno(|| {
        // SAFETY: `fds` is a live array of its length; `tsp` null or a live
        // timespec; `sigmask` null or valid (the caller's contract), 8
        // bytes for the kernel.
        let r = unsafe { libc::syscall(libc::SYS_ppoll, fds.as_mut_ptr(), fds.len(), tsp, sigmask, 8usize) };
        if r < 0 {
            Err(errno())
        } else {
            Ok(r as usize)
        }
    })
}

fn ring(efd: i32) {
    let one = 1u64;
    keep_errno(|| {
        // SAFETY: writes the 8 bytes of `one` to the eventfd.
        unsafe { libc::syscall(libc::SYS_write, efd, &one as *const u64, 8usize) };
    });
}

fn drain(efd: i32) {
    let mut v = 0u64;
    keep_errno(|| {
        // SAFETY: reads 8 bytes into `v` from the non-blocking eventfd.
        unsafe { libc::syscall(libc::SYS_read, efd, &mut v as *mut u64, 8usize) };
    });
}

fn close(fd: i32) {
    keep_errno(|| {
        // SAFETY: closes a descriptor this parker owns.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn an_unpark_before_the_park_is_kept() {
        let p = Parker::new();
        p.unpark();
        assert_eq!(p.park(Some(Duration::from_secs(5))), Woke::Notified);
        let t = Instant::now();
        assert_eq!(
            p.park(Some(Duration::from_millis(20))),
            Woke::TimedOut,
            "the permit was used"
        );
        assert!(t.elapsed() >= Duration::from_millis(19));
    }

    #[test]
    fn a_forgotten_permit_is_gone_and_a_later_one_is_kept() {
        let p = Parker::new();
        p.unpark();
        p.forget_permit();
        assert_eq!(p.park(Some(Duration::from_millis(10))), Woke::TimedOut);
        // Nothing to forget: nothing changes.
        p.forget_permit();
        p.unpark();
        assert_eq!(p.park(Some(Duration::from_secs(5))), Woke::Notified);
        // The calling thread's own.
        Parker::current().unpark();
        Parker::forget_current_permit();
        assert_eq!(
            Parker::current().park(Some(Duration::from_millis(10))),
            Woke::TimedOut
        );
    }

    #[test]
    fn another_thread_wakes_a_parked_one_through_its_waker() {
        // Each wake waits for the previous one to be taken: two wakes
        // before a park are one permit (as they should be), which a
        // fixed pause cannot rule out on a loaded machine or under
        // Valgrind.
        let (tx, rx) = std::sync::mpsc::channel();
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(Parker::current_waker()).unwrap();
            let mut woke = Vec::new();
            for _ in 0..100 {
                woke.push(Parker::current().park(Some(Duration::from_secs(10))));
                ack_tx.send(()).unwrap();
            }
            woke
        });
        let waker = rx.recv().unwrap();
        for _ in 0..100 {
            waker.wake_by_ref();
            ack_rx.recv().unwrap();
        }
        let woke = t.join().unwrap();
        assert!(woke.iter().all(|w| *w == Woke::Notified), "{woke:?}");
    }

    #[test]
    fn park_poll_wakes_for_an_unpark_an_fd_or_the_timeout() {
        let p = Arc::new(Parker::new());
        let mut fds = Vec::new();
        // SAFETY: no signal mask.
        let park = |p: &Parker, fds: &mut Vec<libc::pollfd>, ms| unsafe {
            p.park_poll(fds, Some(Duration::from_millis(ms)), std::ptr::null())
        };
        assert_eq!(park(&p, &mut fds, 10), Ok(Woke::TimedOut));
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            p2.unpark();
        });
        assert_eq!(park(&p, &mut fds, 5000), Ok(Woke::Notified));
        t.join().unwrap();
        assert!(fds.is_empty(), "the eventfd was taken off again");
        // The caller's fd: a pipe with a byte in it.
        let mut pipe = [0; 2];
        // SAFETY: `pipe` has room for two fds.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: writes one byte from a live buffer.
        assert_eq!(unsafe { libc::write(pipe[1], b"x".as_ptr().cast(), 1) }, 1);
        fds.push(libc::pollfd {
            fd: pipe[0],
            events: libc::POLLIN,
            revents: 0,
        });
        assert_eq!(park(&p, &mut fds, 5000), Ok(Woke::Fds));
        assert_eq!(fds.len(), 1);
        assert_ne!(fds[0].revents & libc::POLLIN, 0);
        // The eventfd was drained: the next park sleeps its time.
        fds.clear();
        assert_eq!(park(&p, &mut fds, 10), Ok(Woke::TimedOut));
        // SAFETY: closing the test's own pipe.
        unsafe {
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
    }

    extern "C" fn on_usr2(_: libc::c_int) {}

    #[test]
    fn a_signal_handler_interrupts_a_park() {
        // SAFETY: installs a handler that does nothing, without SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_usr2 as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() }).unwrap();
            let futex = Parker::current().park(Some(Duration::from_secs(10)));
            let mut fds = Vec::new();
            // SAFETY: no signal mask.
            let poll = unsafe {
                Parker::current().park_poll(&mut fds, Some(Duration::from_secs(10)), std::ptr::null())
            };
            (futex, poll)
        });
        let thread = rx.recv().unwrap();
        let start = Instant::now();
        let mut kicks = 0;
        while !t.is_finished() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
            // SAFETY: the thread is alive (not finished) and takes SIGUSR2.
            unsafe { libc::pthread_kill(thread, libc::SIGUSR2) };
            kicks += 1;
        }
        let (futex, poll) = t.join().unwrap();
        assert_eq!(futex, Woke::Interrupted);
        assert_eq!(poll, Ok(Woke::Interrupted));
        assert!(kicks >= 2 && start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn errno_is_left_alone() {
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() = libc::EXDEV };
        let p = Parker::new();
        assert_eq!(p.park(Some(Duration::from_millis(1))), Woke::TimedOut);
        p.unpark();
        // SAFETY: as above.
        assert_eq!(unsafe { *libc::__errno_location() }, libc::EXDEV);
    }
}
