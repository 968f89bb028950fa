//! A lock for coroutines that may be held across suspensions.
//!
//! Uncontended, `lock` and unlock are one compare-and-swap each. Contended,
//! waiters queue in FIFO order and the unlocker hands ownership directly to
//! the first of them (the lock never becomes free in between, so nobody can
//! barge in): fair, and no thundering herd. A waiter that gives up (timeout,
//! signal, cancellation) leaves the queue; if ownership reached it at that
//! moment it passes it on.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

use crate::wait::{wait_until, Wait, WaitError};

const UNLOCKED: u8 = 0;
const LOCKED: u8 = 1;
const CONTENDED: u8 = 2;

/// A FIFO lock guarding a `T`.
pub struct Lock<T: ?Sized> {
    state: AtomicU8,
    queue: Mutex<VecDeque<(Arc<AtomicBool>, Waker)>>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `data` to one holder at a time, like
// std's Mutex; moving T between threads requires T: Send.
unsafe impl<T: ?Sized + Send> Send for Lock<T> {}
// SAFETY: as above: shared access to the lock gives exclusive access to T.
unsafe impl<T: ?Sized + Send> Sync for Lock<T> {}

/// Access to the data; unlocks when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a, T: ?Sized> {
    lock: &'a Lock<T>,
}

impl<T> Lock<T> {
    /// An unlocked lock around `value`.
    pub fn new(value: T) -> Lock<T> {
        Lock {
            state: AtomicU8::new(UNLOCKED),
            queue: Mutex::new(VecDeque::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// The value, when nobody else can hold the lock.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Lock<T> {
    /// Locks, waiting as long as it takes; not interruptible.
    pub fn lock(&self) -> LockGuard<'_, T> {
        match self.lock_with(Wait::uninterruptible()) {
            Ok(g) => g,
            Err(e) => unreachable!("an uninterruptible wait without deadline ended: {e}"),
        }
    }

    /// Locks unless the wait ends first (timeout, signal, cancellation).
    pub fn lock_with(&self, w: Wait) -> Result<LockGuard<'_, T>, WaitError> {
        if let Some(g) = self.try_lock() {
            return Ok(g);
        }
        let granted = Arc::new(AtomicBool::new(false));
        let mut queued = false;
        let r = wait_until(w, |cx| {
            if granted.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if !queued {
                let mut q = self.queue.lock();
                if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                    return Poll::Ready(());
                }
                q.push_back((granted.clone(), cx.waker().clone()));
                queued = true;
            }
            Poll::Pending
        });
        match r {
            Ok(()) => Ok(LockGuard { lock: self }),
            Err(e) => {
                let mut q = self.queue.lock();
                q.retain(|(g, _)| !Arc::ptr_eq(g, &granted));
                drop(q);
                if granted.load(Ordering::Acquire) {
                    self.unlock(); // ownership arrived as we left: pass it on
                }
                Err(e)
            }
        }
    }

    /// Locks only if the lock is free.
    pub fn try_lock(&self) -> Option<LockGuard<'_, T>> {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| LockGuard { lock: self })
    }

    /// Whether someone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }

    /// Releases a lock whose guard was forgotten (the C API's `accel_unlock`).
    /// Releasing a lock nobody holds is ignored.
    pub(crate) fn force_unlock(&self) {
        if self.is_locked() {
            self.unlock();
        }
    }

    fn unlock(&self) {
        if self
            .state
            .compare_exchange(LOCKED, UNLOCKED, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        let mut q = self.queue.lock();
        match q.pop_front() {
            Some((granted, waker)) => {
                if q.is_empty() {
                    self.state.store(LOCKED, Ordering::Relaxed);
                }
                granted.store(true, Ordering::Release);
                drop(q);
                waker.wake();
            }
            None => self.state.store(UNLOCKED, Ordering::Release),
        }
    }
}

impl<T: ?Sized> Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: holding the guard means holding the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: holding the guard means holding the lock exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for LockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{block_on, spawn, yield_now, Signal};
    use std::rc::Rc;
    use std::time::Duration;

    #[test]
    fn uncontended_and_try_lock() {
        let l = Lock::new(1);
        {
            let mut g = l.lock();
            *g += 1;
            assert!(l.try_lock().is_none());
        }
        assert_eq!(*l.try_lock().unwrap(), 2);
        assert!(!l.is_locked());
    }

    #[test]
    fn contended_hand_over_is_fifo() {
        block_on(|| {
            let l = Rc::new(Lock::new(Vec::new()));
            let g = l.lock();
            let hs: Vec<_> = (0..5)
                .map(|i| {
                    let l = l.clone();
                    spawn("locker", move || {
                        let mut g = l.lock();
                        yield_now(); // hold it across a suspension
                        g.push(i);
                    })
                })
                .collect();
            yield_now();
            drop(g);
            hs.into_iter().for_each(|h| h.join().unwrap());
            assert_eq!(*l.lock(), vec![0, 1, 2, 3, 4]);
        });
    }

    #[test]
    fn timed_out_and_interrupted_lockers_leave_the_queue() {
        block_on(|| {
            let l = Rc::new(Lock::new(()));
            let g = l.lock();
            let r = l.lock_with(Wait::timeout(Some(Duration::from_millis(1))));
            assert_eq!(r.err(), Some(WaitError::TimedOut));
            let sig = Signal::new();
            let (l2, s2) = (l.clone(), sig.clone());
            let h = spawn("w", move || {
                let _sub = s2.subscribe().unwrap();
                l2.lock_with(Wait::forever()).map(|_| ())
            });
            yield_now();
            sig.fire();
            assert_eq!(h.join().unwrap(), Err(WaitError::Interrupted));
            drop(g);
            assert!(!l.is_locked());
        });
    }

    #[test]
    fn threads_contend_without_losing_updates() {
        let l = Arc::new(Lock::new(0u64));
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| *l.lock() += 1))
            })
            .collect();
        ts.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*l.lock(), 40_000);
    }
}
