//! Wait for the first of several sources, as libwire's wait lists do: fd
//! readiness, a deadline, a channel having a value, a signal firing.
//!
//! ```
//! use accel_coro::{block_on, sync::bounded, waitlist::WaitList, Signal};
//! use std::time::Duration;
//! block_on(|| {
//!     let (tx, rx) = bounded::<u32>(1);
//!     let stop = Signal::new();
//!     tx.send(1).unwrap();
//!     let mut wl = WaitList::new();
//!     let on_msg = wl.recv(&rx);
//!     let on_stop = wl.signal(&stop);
//!     let on_timer = wl.timeout(Duration::from_secs(1));
//!     assert_eq!(wl.wait(), Ok(on_msg));
//!     # let _ = (on_stop, on_timer);
//! });
//! ```
//!
//! `wait` reports which source is ready and consumes nothing: the caller
//! then receives, reads or accepts (and copes with another consumer having
//! been faster). The wait itself is interruptible by the coroutine's own
//! subscriptions and cancellation, like every waiting call.

use std::os::fd::RawFd;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::reactor::Readiness;
use crate::sched::Scheduler;
use crate::signal::Signal;
use crate::sync::Receiver;
use crate::time;
use crate::wait::{current_waker, wait_until, Wait, WaitError};

/// Something a wait list can wait for.
pub trait Waitable {
    /// Ready now? Otherwise arrange for `cx`'s waker to be woken when it may be.
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()>;
}

impl<T> Waitable for Receiver<T> {
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_ready() {
            return Poll::Ready(());
        }
        self.register(cx.waker());
        if self.is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

enum Source<'a> {
    Fd(RawFd, Readiness),
    Deadline(u64),
    Item(&'a dyn Waitable),
    Signal(&'a Signal),
}

/// A set of sources; [`WaitList::wait`] returns the index of one that is ready.
#[derive(Default)]
pub struct WaitList<'a> {
    sources: Vec<Source<'a>>,
}

impl<'a> WaitList<'a> {
    /// An empty list.
    pub fn new() -> WaitList<'a> {
        WaitList { sources: Vec::new() }
    }

    fn push(&mut self, s: Source<'a>) -> usize {
        self.sources.push(s);
        self.sources.len() - 1
    }

    /// `fd` becoming ready for `interest`.
    pub fn fd(&mut self, fd: RawFd, interest: Readiness) -> usize {
        self.push(Source::Fd(fd, interest))
    }

    /// The monotonic time `deadline_ns` arriving.
    pub fn deadline(&mut self, deadline_ns: u64) -> usize {
        self.push(Source::Deadline(deadline_ns))
    }

    /// `d` passing from now.
    pub fn timeout(&mut self, d: Duration) -> usize {
        self.deadline(time::deadline_after(d))
    }

    /// A channel having a value (or being closed).
    pub fn recv<T>(&mut self, rx: &'a Receiver<T>) -> usize {
        self.push(Source::Item(rx))
    }

    /// Anything [`Waitable`].
    pub fn item(&mut self, w: &'a dyn Waitable) -> usize {
        self.push(Source::Item(w))
    }

    /// `sig` firing after the wait starts.
    pub fn signal(&mut self, sig: &'a Signal) -> usize {
        self.push(Source::Signal(sig))
    }

    /// Waits for the first ready source and returns its index. With no
    /// sources it waits until interrupted.
    pub fn wait(&self) -> Result<usize, WaitError> {
        let sched = Scheduler::current();
        let waker = current_waker();
        // Register what needs registering once.
        let mut fd_ids = Vec::new();
        let mut sig_ids = Vec::new();
        let mut sig_start = Vec::new();
        let mut result = Ok(usize::MAX);
        for (i, s) in self.sources.iter().enumerate() {
            match *s {
                Source::Fd(fd, interest) => {
                    if let (Some(sc), Some(w)) = (sched, &waker) {
                        match sc.reactor.borrow_mut().watch(fd, interest, w.clone()) {
                            Ok(id) => fd_ids.push((fd, id)),
                            Err(e) => result = Err(WaitError::Os(e.raw_os_error().unwrap_or(libc::EIO))),
                        }
                    }
                }
                Source::Signal(sig) => {
                    sig_start.push((i, sig.fired()));
                    if let Some(w) = &waker {
                        sig_ids.push((sig, sig.add_waker(w)));
                    }
                }
                _ => {}
            }
        }
        if result.is_ok() {
            let deadline = self
                .sources
                .iter()
                .filter_map(|s| match s {
                    Source::Deadline(d) => Some(*d),
                    _ => None,
                })
                .min();
            // Threads without a worker cannot sleep on fds and wakers at
            // once: they look at their fds every millisecond.
            let thread_fds = sched.is_none() && self.sources.iter().any(|s| matches!(s, Source::Fd(..)));
            let w = Wait {
                deadline,
                interruptible: true,
            };
            result = loop {
                let slice = if thread_fds {
                    Wait {
                        deadline: Some(deadline.unwrap_or(u64::MAX).min(time::now_ns() + 1_000_000)),
                        interruptible: true,
                    }
                } else {
                    w
                };
                match wait_until(slice, |cx| self.poll_all(sched, &sig_start, cx)) {
                    Err(WaitError::TimedOut)
                        if deadline.is_some_and(|d| time::now_ns() >= d) || !thread_fds =>
                    {
                        let d = deadline.unwrap_or(0);
                        break Ok(self
                            .sources
                            .iter()
                            .position(|s| matches!(s, Source::Deadline(x) if *x == d))
                            .unwrap_or(0));
                    }
                    Err(WaitError::TimedOut) => continue,
                    other => break other,
                }
            };
        }
        if let Some(sc) = sched {
            for (fd, id) in fd_ids {
                sc.reactor.borrow_mut().unwatch(fd, id);
            }
        }
        for (sig, id) in sig_ids {
            sig.remove_waker(id);
        }
        result
    }

    fn poll_all(
        &self,
        sched: Option<&Scheduler>,
        sig_start: &[(usize, u64)],
        cx: &mut Context<'_>,
    ) -> Poll<usize> {
        for (i, s) in self.sources.iter().enumerate() {
            let ready = match *s {
                Source::Fd(fd, interest) => match sched {
                    Some(sc) => sc.reactor.borrow().check(fd, interest).is_some(),
                    None => crate::wait::wait_fd_with(fd, interest, Wait::deadline(0)).is_ok(),
                },
                Source::Deadline(d) => time::now_ns() >= d,
                Source::Item(w) => w.poll_ready(cx).is_ready(),
                Source::Signal(sig) => sig_start.iter().any(|&(j, g)| j == i && sig.fired() != g),
            };
            if ready {
                return Poll::Ready(i);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{bounded, rendezvous};
    use crate::{block_on, spawn, yield_now};

    fn pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        (fds[0], fds[1])
    }

    #[test]
    fn timer_wins_when_nothing_else_happens() {
        block_on(|| {
            let (_tx, rx) = rendezvous::<u8>();
            let (r, w) = pipe();
            let mut wl = WaitList::new();
            wl.recv(&rx);
            wl.fd(r, Readiness::READ);
            // Before the timeout is armed: its deadline counts from there,
            // and a thread preempted in between would see less than 3 ms.
            let start = time::now_ns();
            let t = wl.timeout(Duration::from_millis(3));
            assert_eq!(wl.wait(), Ok(t));
            assert!(time::now_ns() - start >= 3_000_000);
            // SAFETY: closing our own pipe.
            unsafe { (libc::close(r), libc::close(w)) };
        });
    }

    #[test]
    fn fd_channel_and_signal_each_win() {
        block_on(|| {
            let (r, w) = pipe();
            let (tx, rx) = bounded::<u8>(1);
            let sig = Signal::new();
            let mut wl = WaitList::new();
            let i_fd = wl.fd(r, Readiness::READ);
            let i_rx = wl.recv(&rx);
            let i_sig = wl.signal(&sig);
            wl.timeout(Duration::from_secs(10));

            let h = spawn("writer", move || {
                // SAFETY: writing one byte from a valid buffer to our pipe.
                unsafe { libc::write(w, b"x".as_ptr().cast(), 1) };
            });
            assert_eq!(wl.wait(), Ok(i_fd));
            h.join().unwrap();
            let mut b = [0u8; 1];
            // SAFETY: reading one byte into a valid buffer.
            unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) };

            let h = spawn("sender", move || tx.send(9).unwrap());
            assert_eq!(wl.wait(), Ok(i_rx));
            assert_eq!(rx.recv(), Ok(9));
            h.join().unwrap();

            let s2 = sig.clone();
            let h = spawn("firer", move || {
                yield_now();
                s2.fire()
            });
            // The sender was dropped, so the closed channel counts as
            // ready: wait for the signal alone.
            let mut only_sig = WaitList::new();
            only_sig.signal(&sig);
            assert_eq!(only_sig.wait(), Ok(0));
            h.join().unwrap();
            let _ = i_sig;
            // SAFETY: closing our own pipe.
            unsafe { (libc::close(r), libc::close(w)) };
        });
    }
}
