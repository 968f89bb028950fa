//! Interruption, after libtcr's `tc_signal`: a [`Signal`] that coroutines
//! subscribe to explicitly; firing it wakes every subscriber, and the waiting
//! call each is parked in (or the next one it makes) returns
//! [`crate::WaitError::Interrupted`].
//!
//! A fire is never lost: a subscription remembers the signal's generation it
//! last saw, so a signal fired while the subscriber was running (not
//! waiting) interrupts its next interruptible wait. Each fire interrupts one
//! wait per subscriber. Any thread may fire; subscribing is for coroutines
//! (a subscription belongs to the coroutine that made it and ends when it is
//! dropped or the coroutine ends).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;

use crate::sched::{Scheduler, Task};

struct Inner {
    gen: AtomicU64,
    next_id: AtomicU64,
    subscribers: Mutex<Vec<(u64, Waker)>>,
}

/// A signal that interrupts the waiting calls of its subscribers.
#[derive(Clone)]
pub struct Signal {
    inner: Arc<Inner>,
}

impl Default for Signal {
    fn default() -> Self {
        Signal::new()
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("fired", &self.inner.gen.load(Ordering::Relaxed))
            .finish()
    }
}

/// One subscription recorded on the subscribing task.
pub(crate) struct SubEntry {
    id: u64,
    signal: Arc<Inner>,
    seen: u64,
}

/// Keeps the calling coroutine subscribed until dropped.
#[must_use = "the subscription ends when this is dropped"]
pub struct Subscription {
    id: u64,
    signal: Arc<Inner>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Signal {
    /// A signal nobody subscribed to yet.
    pub fn new() -> Signal {
        Signal {
            inner: Arc::new(Inner {
                gen: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                subscribers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Subscribes the running coroutine. Returns `None` outside a coroutine.
    pub fn subscribe(&self) -> Option<Subscription> {
        let (task, key) = Scheduler::current()?.current_task()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let seen = {
            let mut subs = self.inner.subscribers.lock();
            subs.push((id, key.waker()));
            self.inner.gen.load(Ordering::Acquire)
        };
        task.subs.borrow_mut().push(SubEntry {
            id,
            signal: self.inner.clone(),
            seen,
        });
        Some(Subscription {
            id,
            signal: self.inner.clone(),
            _not_send: std::marker::PhantomData,
        })
    }

    /// Interrupts every subscriber's current or next waiting call.
    pub fn fire(&self) {
        let wakers: Vec<Waker> = {
            let subs = self.inner.subscribers.lock();
            self.inner.gen.fetch_add(1, Ordering::AcqRel);
            subs.iter().map(|(_, w)| w.clone()).collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    /// How many coroutines are subscribed.
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers.lock().len()
    }
}

impl Signal {
    /// How many times the signal has fired.
    pub fn fired(&self) -> u64 {
        self.inner.gen.load(Ordering::Acquire)
    }

    /// Adds a waker woken on every fire (for wait lists); returns its id.
    pub(crate) fn add_waker(&self, waker: &Waker) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.subscribers.lock().push((id, waker.clone()));
        id
    }

    /// Removes a waker added with [`Self::add_waker`].
    pub(crate) fn remove_waker(&self, id: u64) {
        self.inner.subscribers.lock().retain(|(i, _)| *i != id);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.signal.subscribers.lock().retain(|(id, _)| *id != self.id);
        if let Some((task, _)) = Scheduler::current().and_then(|s| s.current_task()) {
            task.subs.borrow_mut().retain(|e| e.id != self.id);
        }
    }
}

/// Consumes one pending fire of any of the task's subscriptions.
pub(crate) fn take_fired(task: &Task) -> bool {
    let Ok(mut subs) = task.subs.try_borrow_mut() else {
        return false;
    };
    for e in subs.iter_mut() {
        let g = e.signal.gen.load(Ordering::Acquire);
        if g != e.seen {
            e.seen = g;
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::Readiness;
    use crate::waitlist::WaitList;
    use crate::{block_on, spawn, wait_fd, yield_now, WaitError};
    use std::time::Duration;

    /// Runs `call` in a subscribed coroutine, fires once it is parked, and
    /// returns what the call returned.
    fn interrupted<T: 'static>(call: impl FnOnce() -> T + 'static) -> T {
        block_on(move || {
            let sig = Signal::new();
            let s2 = sig.clone();
            let h = spawn("victim", move || {
                let _sub = s2.subscribe().unwrap();
                call()
            });
            yield_now();
            assert_eq!(sig.subscribers(), 1);
            sig.fire();
            let r = h.join().unwrap();
            assert_eq!(sig.subscribers(), 0, "the subscription ends with its guard");
            r
        })
    }

    #[test]
    fn interrupts_sleep() {
        assert_eq!(
            interrupted(|| crate::sleep(Duration::from_secs(3600))),
            Err(WaitError::Interrupted)
        );
    }

    #[test]
    fn interrupts_wait_fd() {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let r = fds[0];
        assert_eq!(
            interrupted(move || wait_fd(r, Readiness::READ, None)),
            Err(WaitError::Interrupted)
        );
        // SAFETY: closing our own pipe.
        unsafe { (libc::close(fds[0]), libc::close(fds[1])) };
    }

    #[test]
    fn interrupts_a_wait_list() {
        let r = interrupted(|| {
            let mut wl = WaitList::new();
            wl.timeout(Duration::from_secs(3600));
            wl.wait()
        });
        assert_eq!(r, Err(WaitError::Interrupted));
    }

    #[test]
    fn a_fire_while_running_interrupts_the_next_wait_once() {
        block_on(|| {
            let sig = Signal::new();
            let s2 = sig.clone();
            let h = spawn("busy", move || {
                let _sub = s2.subscribe().unwrap();
                s2.fire(); // fired while we run, not wait
                let first = crate::sleep(Duration::from_millis(1));
                let second = crate::sleep(Duration::from_millis(1));
                (first, second)
            });
            assert_eq!(h.join().unwrap(), (Err(WaitError::Interrupted), Ok(())));
        });
    }

    #[test]
    fn unsubscribed_coroutines_are_not_interrupted() {
        block_on(|| {
            let sig = Signal::new();
            let h = spawn("bystander", || crate::sleep(Duration::from_millis(5)));
            yield_now();
            sig.fire();
            assert_eq!(h.join().unwrap(), Ok(()));
            assert!(sig.subscribe().is_some(), "block_on's body is a coroutine");
        });
        assert!(Signal::new().subscribe().is_none(), "threads cannot subscribe");
    }

    #[test]
    fn fire_from_another_thread() {
        let r = block_on(|| {
            let sig = Signal::new();
            let _sub = sig.subscribe().unwrap();
            let s2 = sig.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                s2.fire();
            });
            let r = crate::sleep(Duration::from_secs(3600));
            t.join().unwrap();
            r
        });
        assert_eq!(r, Err(WaitError::Interrupted));
    }
}
