//! The one waiting primitive everything else is built on.
//!
//! [`wait_until`] polls a condition with a [`Waker`]; while it is not met it
//! parks the caller until the waker fires, the deadline passes, or (for an
//! interruptible wait) the task is cancelled or a signal it subscribed to
//! fires. Where the caller runs decides how it parks:
//! - inside a coroutine: the coroutine is suspended and the worker runs
//!   others (the waker is the task's free [`crate::TaskKey`] waker);
//! - on a worker's thread outside any coroutine (the "driver", as the shim's
//!   application threads will be): the thread turns the worker's loop itself
//!   until the condition's waker fires;
//! - on any other thread: the thread parks ([`crate::park`]: a futex).
//!
//! Spurious wake-ups are normal and harmless: the condition is re-polled.
//! A timed-out wait is detected by its timer having fired, not by reading
//! the clock, so a coroutine that ran long cannot miss its deadline.

use std::fmt;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::park::{Parker, Woke};
use crate::reactor::Readiness;
use crate::sched::{Scheduler, Suspend, Task};
use crate::time;
use crate::wheel::TimerKey;

/// Why a waiting call returned without its condition being met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitError {
    /// The deadline passed (`ETIMEDOUT`).
    TimedOut,
    /// A signal the coroutine subscribed to fired (`EINTR`).
    Interrupted,
    /// The coroutine was cancelled through its join handle (`ECANCELED`).
    Cancelled,
    /// The system refused (the errno), e.g. waiting on a closed fd.
    Os(i32),
}

impl WaitError {
    /// The errno the equivalent system call would report.
    pub fn errno(self) -> i32 {
        match self {
            WaitError::TimedOut => libc::ETIMEDOUT,
            WaitError::Interrupted => libc::EINTR,
            WaitError::Cancelled => libc::ECANCELED,
            WaitError::Os(e) => e,
        }
    }
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::TimedOut => f.write_str("timed out"),
            WaitError::Interrupted => f.write_str("interrupted by a signal"),
            WaitError::Cancelled => f.write_str("cancelled"),
            WaitError::Os(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
        }
    }
}

impl std::error::Error for WaitError {}

impl From<WaitError> for std::io::Error {
    fn from(e: WaitError) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.errno())
    }
}

/// How long and how a wait may last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Absolute `CLOCK_MONOTONIC` deadline in ns; `None` waits forever.
    pub deadline: Option<u64>,
    /// Whether signals and cancellation end the wait.
    pub interruptible: bool,
}

impl Wait {
    /// No deadline; interruptible.
    pub fn forever() -> Wait {
        Wait {
            deadline: None,
            interruptible: true,
        }
    }
    /// No deadline; neither signals nor cancellation end it.
    pub fn uninterruptible() -> Wait {
        Wait {
            deadline: None,
            interruptible: false,
        }
    }
    /// Until the absolute time `deadline_ns`; interruptible.
    pub fn deadline(deadline_ns: u64) -> Wait {
        Wait {
            deadline: Some(deadline_ns),
            interruptible: true,
        }
    }
    /// For at most `timeout` (`None`: forever); interruptible.
    pub fn timeout(timeout: Option<Duration>) -> Wait {
        match timeout {
            Some(d) => Wait::deadline(time::deadline_after(d)),
            None => Wait::forever(),
        }
    }
}

/// The waker a wait started here would use: the running task's, the
/// driver's, or `None` on a thread without a worker.
pub fn current_waker() -> Option<Waker> {
    let s = Scheduler::current()?;
    Some(match s.current_task() {
        Some((_, k)) => k.waker(),
        None => s.driver_key().waker(),
    })
}

/// Waits until `poll` returns `Ready`, the deadline passes, or an
/// interruption ends the wait (see the module docs for where it parks).
pub fn wait_until<T>(w: Wait, mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Result<T, WaitError> {
    match Scheduler::current() {
        Some(s) => match s.current_task() {
            Some((task, key)) => wait_coroutine(s, task, key.waker(), w, &mut poll),
            None => wait_driver(s, w, &mut poll),
        },
        None => wait_thread(w, &mut poll),
    }
}

/// Checks the running task for cancellation and fired signals.
pub(crate) fn interruption(task: &Task) -> Option<WaitError> {
    let p = task.shared.get();
    // SAFETY: a non-null pointer names the TaskShared kept alive by the
    // task's own closure until the task ends.
    if !p.is_null() && unsafe { (*p).cancelled.load(Ordering::Acquire) } {
        return Some(WaitError::Cancelled);
    }
    crate::signal::take_fired(task).then_some(WaitError::Interrupted)
}

fn wait_coroutine<T>(
    s: &Scheduler,
    task: &Task,
    waker: Waker,
    w: Wait,
    poll: &mut impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Result<T, WaitError> {
    let mut cx = Context::from_waker(&waker);
    let mut timer: Option<TimerKey> = None;
    let r = loop {
        if let Poll::Ready(v) = poll(&mut cx) {
            break Ok(v);
        }
        if w.interruptible {
            if let Some(e) = interruption(task) {
                break Err(e);
            }
        }
        if let Some(d) = w.deadline {
            match timer {
                None if s.now() >= d => break Err(WaitError::TimedOut),
                None => timer = Some(s.timers.borrow_mut().insert(d, waker.clone())),
                Some(k) if s.timers.borrow().deadline(k).is_none() => {
                    timer = None; // it fired
                    break Err(WaitError::TimedOut);
                }
                Some(_) => {}
            }
        }
        s.suspend(Suspend::Park);
    };
    if let Some(k) = timer {
        s.timers.borrow_mut().cancel(k);
    }
    r
}

fn wait_driver<T>(
    s: &Scheduler,
    w: Wait,
    poll: &mut impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Result<T, WaitError> {
    let waker = s.driver_key().waker();
    let mut cx = Context::from_waker(&waker);
    loop {
        s.take_driver_woken();
        if let Poll::Ready(v) = poll(&mut cx) {
            return Ok(v);
        }
        loop {
            let now = time::now_ns();
            let left = match w.deadline {
                Some(d) if now >= d => return Err(WaitError::TimedOut),
                Some(d) => Some(d - now),
                None => None,
            };
            if s.turn(left).is_err() {
                // Re-entered from a poll source or timer callback: the
                // outer turn drives the worker; just look again.
                std::thread::yield_now();
                break;
            }
            if s.take_driver_woken() {
                break;
            }
        }
    }
}

fn wait_thread<T>(w: Wait, poll: &mut impl FnMut(&mut Context<'_>) -> Poll<T>) -> Result<T, WaitError> {
    let waker = Parker::current_waker();
    let parker = Parker::current();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = poll(&mut cx) {
            return Ok(v);
        }
        let timeout = match w.deadline {
            Some(d) => {
                let now = time::now_ns();
                if now >= d {
                    return Err(WaitError::TimedOut);
                }
                Some(Duration::from_nanos(d - now))
            }
            None => None,
        };
        // A signal handler's return (Woke::Interrupted) is one more
        // spurious wake-up here: a plain thread's wait ends by its
        // condition or its deadline, as before.
        let _: Woke = parker.park(timeout);
    }
}

/// Waits until `fd` is ready for `interest` (errors and hang-ups always
/// count) or the timeout passes; returns the readiness seen.
pub fn wait_fd(fd: RawFd, interest: Readiness, timeout: Option<Duration>) -> Result<Readiness, WaitError> {
    wait_fd_with(fd, interest, Wait::timeout(timeout))
}

/// [`wait_fd`] with an explicit [`Wait`].
pub fn wait_fd_with(fd: RawFd, interest: Readiness, w: Wait) -> Result<Readiness, WaitError> {
    let Some(s) = Scheduler::current() else {
        return poll_fd_thread(fd, interest, w);
    };
    let waker = current_waker().expect("a worker thread has a waker");
    let id = s
        .reactor
        .borrow_mut()
        .watch(fd, interest, waker)
        .map_err(|e| WaitError::Os(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let r = wait_until(w, |_| match s.reactor.borrow().check(fd, interest) {
        Some(r) => Poll::Ready(r),
        None => Poll::Pending,
    });
    s.reactor.borrow_mut().unwatch(fd, id);
    r
}

fn poll_fd_thread(fd: RawFd, interest: Readiness, w: Wait) -> Result<Readiness, WaitError> {
    let mut events = 0i16;
    if interest.intersects(Readiness::READ) {
        events |= libc::POLLIN;
    }
    if interest.intersects(Readiness::WRITE) {
        events |= libc::POLLOUT;
    }
    loop {
        let timeout = match w.deadline {
            None => -1,
            Some(d) => d
                .saturating_sub(time::now_ns())
                .div_ceil(1_000_000)
                .min(i32::MAX as u64) as i32,
        };
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if e == libc::EINTR && !w.interruptible {
                continue;
            }
            return Err(if e == libc::EINTR {
                WaitError::Interrupted
            } else {
                WaitError::Os(e)
            });
        }
        if n == 0 {
            return Err(WaitError::TimedOut);
        }
        if p.revents & libc::POLLNVAL != 0 {
            return Err(WaitError::Os(libc::EBADF));
        }
        let mut r = 0u32;
        if p.revents & libc::POLLIN != 0 {
            r |= Readiness::READ.0;
        }
        if p.revents & libc::POLLOUT != 0 {
            r |= Readiness::WRITE.0;
        }
        if p.revents & libc::POLLERR != 0 {
            r |= libc::EPOLLERR as u32;
        }
        if p.revents & libc::POLLHUP != 0 {
            r |= libc::EPOLLHUP as u32;
        }
        return Ok(Readiness(r));
    }
}
