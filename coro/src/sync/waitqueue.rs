//! A queue of waiting coroutines (or threads): `wait` parks the caller
//! until `notify_one` (the longest waiter first) or `notify_all` wakes it.
//!
//! Every waiter has its own flag, so a notification is delivered to exactly
//! the waiters it chose, a waiter that leaves early (timeout, signal,
//! cancellation) takes itself off the queue, and a notification that races
//! with such a departure is passed on to the next waiter, never lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

use crate::wait::{wait_until, Wait, WaitError};

struct Waiter {
    woken: Arc<AtomicBool>,
    waker: Waker,
}

/// Coroutines (or threads) waiting for an event.
#[derive(Default)]
pub struct WaitQueue {
    waiters: Mutex<VecDeque<Waiter>>,
}

impl std::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitQueue").field("waiters", &self.len()).finish()
    }
}

impl WaitQueue {
    /// An empty queue.
    pub fn new() -> WaitQueue {
        WaitQueue::default()
    }

    /// Parks the caller until it is notified or `w` ends the wait.
    pub fn wait(&self, w: Wait) -> Result<(), WaitError> {
        let woken = Arc::new(AtomicBool::new(false));
        let mut queued = false;
        let r = wait_until(w, |cx| {
            if woken.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if !queued {
                self.waiters.lock().push_back(Waiter {
                    woken: woken.clone(),
                    waker: cx.waker().clone(),
                });
                queued = true;
            }
            Poll::Pending
        });
        if r.is_err() {
            let mut q = self.waiters.lock();
            let before = q.len();
            q.retain(|x| !Arc::ptr_eq(&x.woken, &woken));
            let removed = before != q.len();
            drop(q);
            if !removed && woken.load(Ordering::Acquire) {
                // Notified while leaving: hand the notification on.
                self.notify_one();
            }
        }
        r
    }

    /// Wakes the longest-waiting caller; returns whether there was one.
    pub fn notify_one(&self) -> bool {
        let w = self.waiters.lock().pop_front();
        match w {
            Some(w) => {
                w.woken.store(true, Ordering::Release);
                w.waker.wake();
                true
            }
            None => false,
        }
    }

    /// Wakes every current waiter; returns how many.
    pub fn notify_all(&self) -> usize {
        let all = std::mem::take(&mut *self.waiters.lock());
        let n = all.len();
        for w in all {
            w.woken.store(true, Ordering::Release);
            w.waker.wake();
        }
        n
    }

    /// How many are waiting.
    pub fn len(&self) -> usize {
        self.waiters.lock().len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{block_on, spawn, yield_now, Signal};
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    #[test]
    fn notify_one_wakes_in_fifo_order_and_notify_all_wakes_the_rest() {
        block_on(|| {
            let q = Rc::new(WaitQueue::new());
            let order = Rc::new(std::cell::RefCell::new(Vec::new()));
            let hs: Vec<_> = (0..4)
                .map(|i| {
                    let (q, order) = (q.clone(), order.clone());
                    spawn("waiter", move || {
                        q.wait(Wait::forever()).unwrap();
                        order.borrow_mut().push(i);
                    })
                })
                .collect();
            yield_now();
            assert_eq!(q.len(), 4);
            assert!(q.notify_one());
            yield_now();
            assert_eq!(*order.borrow(), vec![0]);
            assert_eq!(q.notify_all(), 3);
            hs.into_iter().for_each(|h| h.join().unwrap());
            assert_eq!(*order.borrow(), vec![0, 1, 2, 3]);
            assert!(!q.notify_one());
        });
    }

    #[test]
    fn timeout_leaves_the_queue() {
        block_on(|| {
            let q = WaitQueue::new();
            let r = q.wait(Wait::timeout(Some(Duration::from_millis(2))));
            assert_eq!(r, Err(WaitError::TimedOut));
            assert!(q.is_empty());
        });
    }

    #[test]
    fn a_signal_interrupts_a_waiter() {
        block_on(|| {
            let q = Rc::new(WaitQueue::new());
            let sig = Signal::new();
            let got = Rc::new(Cell::new(None));
            let (q2, s2, g2) = (q.clone(), sig.clone(), got.clone());
            let h = spawn("w", move || {
                let _sub = s2.subscribe().unwrap();
                g2.set(Some(q2.wait(Wait::forever())));
            });
            yield_now();
            sig.fire();
            h.join().unwrap();
            assert_eq!(got.get(), Some(Err(WaitError::Interrupted)));
            assert!(q.is_empty());
        });
    }

    #[test]
    fn threads_can_wait_too() {
        let q = Arc::new(WaitQueue::new());
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.wait(Wait::forever()));
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while q.is_empty() {
            assert!(
                !t.is_finished() && std::time::Instant::now() < give_up,
                "the thread never queued"
            );
            std::thread::yield_now();
        }
        q.notify_one();
        assert_eq!(t.join().unwrap(), Ok(()));
    }
}
