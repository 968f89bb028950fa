//! Bounded pools of worker coroutines, after libwire's `wire_pool`.
//!
//! A [`CoPool`] runs jobs on at most `max` coroutines of the calling
//! worker. A finished coroutine waits for its next job instead of exiting,
//! and idle ones are reused last-in first-out (its stack is the hottest).
//! When all `max` are busy, [`CoPool::try_run`] gives the job back and
//! [`CoPool::run`] waits for one to become free: the caller chooses, and
//! the pool never grows past its bound. Dropping the pool lets idle
//! coroutines exit; busy ones finish their job first.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::sync::WaitQueue;
use crate::task::spawn;
use crate::wait::{wait_until, Wait, WaitError};

type Job = Box<dyn FnOnce()>;

struct Slot {
    job: RefCell<Option<Job>>,
    waker: RefCell<Option<Waker>>,
}

struct Inner {
    name: String,
    max: usize,
    live: Cell<usize>,
    idle: RefCell<Vec<Rc<Slot>>>,
    closed: Cell<bool>,
    free: WaitQueue,
    completed: Cell<u64>,
}

/// A bounded pool of reusable coroutines on the calling worker. `!Send`.
pub struct CoPool {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for CoPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoPool")
            .field("name", &self.inner.name)
            .field("max", &self.inner.max)
            .field("live", &self.live())
            .field("idle", &self.idle())
            .finish()
    }
}

impl CoPool {
    /// A pool of at most `max` coroutines (at least 1).
    pub fn new(name: impl Into<String>, max: usize) -> CoPool {
        CoPool {
            inner: Rc::new(Inner {
                name: name.into(),
                max: max.max(1),
                live: Cell::new(0),
                idle: RefCell::new(Vec::new()),
                closed: Cell::new(false),
                free: WaitQueue::new(),
                completed: Cell::new(0),
            }),
        }
    }

    /// Runs `job` on an idle or new coroutine; gives it back if all `max`
    /// are busy.
    pub fn try_run<F: FnOnce() + 'static>(&self, job: F) -> Result<(), F> {
        if let Some(slot) = self.inner.idle.borrow_mut().pop() {
            *slot.job.borrow_mut() = Some(Box::new(job));
            if let Some(w) = slot.waker.borrow_mut().take() {
                w.wake();
            }
            return Ok(());
        }
        if self.inner.live.get() >= self.inner.max {
            return Err(job);
        }
        let slot = Rc::new(Slot {
            job: RefCell::new(Some(Box::new(job))),
            waker: RefCell::new(None),
        });
        self.inner.live.set(self.inner.live.get() + 1);
        let inner = self.inner.clone();
        drop(spawn(self.inner.name.clone(), move || worker(inner, slot)));
        Ok(())
    }

    /// Runs `job`, first waiting (interruptibly) for a coroutine to be free.
    pub fn run<F: FnOnce() + 'static>(&self, job: F) -> Result<(), WaitError> {
        let mut job = job;
        loop {
            match self.try_run(job) {
                Ok(()) => return Ok(()),
                Err(j) => {
                    job = j;
                    self.inner.free.wait(Wait::forever())?;
                }
            }
        }
    }

    /// Coroutines alive (busy or idle).
    pub fn live(&self) -> usize {
        self.inner.live.get()
    }

    /// Coroutines waiting for a job.
    pub fn idle(&self) -> usize {
        self.inner.idle.borrow().len()
    }

    /// Jobs finished so far.
    pub fn completed(&self) -> u64 {
        self.inner.completed.get()
    }
}

impl Drop for CoPool {
    fn drop(&mut self) {
        self.inner.closed.set(true);
        for slot in self.inner.idle.borrow_mut().drain(..) {
            if let Some(w) = slot.waker.borrow_mut().take() {
                w.wake();
            }
        }
        self.inner.free.notify_all();
    }
}

fn worker(inner: Rc<Inner>, slot: Rc<Slot>) {
    loop {
        let job = wait_until(Wait::uninterruptible(), |cx| {
            if let Some(j) = slot.job.borrow_mut().take() {
                return Poll::Ready(Some(j));
            }
            if inner.closed.get() {
                return Poll::Ready(None);
            }
            *slot.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        let Ok(Some(job)) = job else { break };
        job();
        inner.completed.set(inner.completed.get() + 1);
        if inner.closed.get() {
            break;
        }
        inner.idle.borrow_mut().push(slot.clone());
        inner.free.notify_one();
    }
    inner.live.set(inner.live.get() - 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{block_on, yield_now};

    #[test]
    fn bounded_reused_lifo_and_pushes_back() {
        block_on(|| {
            let pool = CoPool::new("pool", 2);
            let log = Rc::new(RefCell::new(Vec::new()));
            for i in 0..2 {
                let l = log.clone();
                pool.try_run(move || {
                    yield_now();
                    l.borrow_mut().push(i);
                })
                .ok()
                .unwrap();
            }
            assert_eq!(pool.live(), 2);
            let back = pool.try_run(|| ());
            assert!(back.is_err(), "a third job must be refused while both are busy");
            // `run` waits for a free coroutine instead.
            let l = log.clone();
            pool.run(move || l.borrow_mut().push(2)).unwrap();
            while pool.completed() < 3 {
                yield_now();
            }
            assert_eq!(pool.live(), 2, "never more than max coroutines");
            assert_eq!(*log.borrow(), vec![0, 1, 2]);
            // Reuse: no new coroutine for later jobs.
            for _ in 0..10 {
                pool.run(|| ()).unwrap();
                yield_now();
            }
            assert_eq!(pool.live(), 2);
            assert_eq!(pool.idle(), 2);
        });
    }

    #[test]
    fn dropping_the_pool_ends_idle_coroutines() {
        block_on(|| {
            let sched = crate::Scheduler::current().unwrap();
            let base = sched.live_tasks();
            let pool = CoPool::new("p", 4);
            for _ in 0..4 {
                pool.try_run(|| ()).ok().unwrap();
            }
            yield_now();
            assert_eq!(sched.live_tasks(), base + 4);
            drop(pool);
            yield_now();
            assert_eq!(sched.live_tasks(), base);
        });
    }
}
