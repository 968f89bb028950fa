//! Spawning coroutines and joining them.
//!
//! [`spawn`] starts a coroutine on the calling thread's worker and returns a
//! [`JoinHandle`]; [`crate::Runtime::spawn_on`] does the same on a chosen
//! worker from any thread. A panic inside a coroutine is caught at its
//! boundary and handed to the joiner as [`JoinError::Panicked`] (under
//! `panic = "abort"` it aborts, as everywhere else).
//!
//! Cancellation is cooperative and defined: [`JoinHandle::cancel`] marks the
//! task cancelled and wakes it; from then on every interruptible waiting call
//! it makes (sleep, fd waits, channels, wait queues, locks, wait lists)
//! returns [`crate::WaitError::Cancelled`] at once, and the coroutine is
//! expected to return. A coroutine is never torn down while suspended.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

use crate::sched::Scheduler;
use crate::stack::CoroStack;
use crate::wait::{wait_until, Wait};
use crate::waker::TaskKey;

/// State shared between a task and its join handle. It is the first field
/// of the `#[repr(C)]` join state, so the type-erased `abandon` can find the
/// rest.
pub(crate) struct TaskShared {
    pub(crate) cancelled: AtomicBool,
    /// The task's key once it is spawned (0 before).
    key: AtomicU64,
    /// Completes the join with [`JoinError::Abandoned`].
    pub(crate) abandon: unsafe fn(*const TaskShared),
}

struct Slot<T> {
    result: Option<Result<T, JoinError>>,
    waker: Option<Waker>,
}

#[repr(C)]
struct JoinInner<T> {
    shared: TaskShared,
    slot: Mutex<Slot<T>>,
}

/// Why [`JoinHandle::join`] has no value.
#[derive(Debug)]
pub enum JoinError {
    /// The coroutine panicked; the payload's message if it was a string.
    Panicked(String),
    /// Its worker shut down while the coroutine was still parked.
    Abandoned,
    /// It could not be started (no stack could be mapped).
    Spawn(String),
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(m) => write!(f, "coroutine panicked: {m}"),
            JoinError::Abandoned => f.write_str("the coroutine's worker shut down before it ended"),
            JoinError::Spawn(e) => write!(f, "the coroutine could not start: {e}"),
        }
    }
}

impl std::error::Error for JoinError {}

/// Owns the right to a coroutine's result. Dropping it detaches the task.
pub struct JoinHandle<T> {
    inner: Arc<JoinInner<T>>,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("key", &self.key()).finish()
    }
}

impl<T> JoinHandle<T> {
    /// Waits for the coroutine to end and returns its result. Inside a
    /// coroutine this parks the caller; on a worker's thread outside any
    /// coroutine it drives the worker meanwhile; elsewhere it blocks the
    /// thread. Not interruptible: use [`Self::cancel`] to end the task.
    pub fn join(self) -> Result<T, JoinError> {
        let r = wait_until(Wait::uninterruptible(), |cx| {
            let mut s = self.inner.slot.lock();
            match s.result.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        match r {
            Ok(r) => r,
            Err(e) => unreachable!("an uninterruptible wait without deadline ended: {e}"),
        }
    }

    /// Whether the coroutine has ended (its result waits to be joined).
    pub fn is_finished(&self) -> bool {
        self.inner.slot.lock().result.is_some()
    }

    /// Asks the coroutine to stop: its current and later waiting calls
    /// return [`crate::WaitError::Cancelled`].
    pub fn cancel(&self) {
        self.inner.shared.cancelled.store(true, Ordering::Release);
        if let Some(k) = self.key() {
            k.wake();
        }
    }

    /// The key that wakes this task, once it has been spawned.
    pub fn key(&self) -> Option<TaskKey> {
        match self.inner.shared.key.load(Ordering::Acquire) {
            0 => None,
            k => Some(TaskKey::unpack(k)),
        }
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl<T> JoinInner<T> {
    fn new() -> Arc<JoinInner<T>> {
        Arc::new(JoinInner {
            shared: TaskShared {
                cancelled: AtomicBool::new(false),
                key: AtomicU64::new(0),
                abandon: abandon::<T>,
            },
            slot: Mutex::new(Slot {
                result: None,
                waker: None,
            }),
        })
    }

    fn complete(&self, r: Result<T, JoinError>) {
        let w = {
            let mut s = self.slot.lock();
            if s.result.is_some() {
                return;
            }
            s.result = Some(r);
            s.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// # Safety
/// `p` must point at the `shared` field of a live `JoinInner<T>`.
unsafe fn abandon<T>(p: *const TaskShared) {
    // SAFETY: JoinInner is repr(C) with `shared` first, so the pointers
    // coincide; the caller guarantees it is live.
    let inner = unsafe { &*(p as *const JoinInner<T>) };
    inner.complete(Err(JoinError::Abandoned));
}

impl<T> JoinHandle<T> {
    /// A second handle on the same join state (for the spawning side).
    pub(crate) fn share(&self) -> JoinHandle<T> {
        JoinHandle {
            inner: self.inner.clone(),
        }
    }

    /// Completes the join with an error (the task never started).
    pub(crate) fn fail(&self, e: JoinError) {
        self.inner.complete(Err(e));
    }
}

/// A join handle whose task does not exist yet (for remote spawns).
pub(crate) fn unstarted<T>() -> JoinHandle<T> {
    JoinHandle {
        inner: JoinInner::new(),
    }
}

/// Spawns onto `sched` (the calling thread's scheduler), completing `handle`.
pub(crate) fn start<T: 'static>(
    sched: &Scheduler,
    name: Cow<'static, str>,
    stack: Option<CoroStack>,
    handle: &JoinHandle<T>,
    f: impl FnOnce() -> T + 'static,
) -> io::Result<()> {
    let done = handle.inner.clone();
    let shared = &handle.inner.shared as *const TaskShared;
    let r = sched.spawn_raw(name, stack, shared, move || {
        let r = panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| JoinError::Panicked(panic_message(p)));
        done.complete(r);
    });
    match r {
        Ok(key) => {
            handle.inner.shared.key.store(key.pack(), Ordering::Release);
            Ok(())
        }
        Err(e) => {
            handle.inner.complete(Err(JoinError::Spawn(e.to_string())));
            Err(e)
        }
    }
}

pub(crate) fn spawn_in<T: 'static>(
    sched: &Scheduler,
    name: Cow<'static, str>,
    stack: Option<CoroStack>,
    f: impl FnOnce() -> T + 'static,
) -> io::Result<JoinHandle<T>> {
    let h = unstarted();
    start(sched, name, stack, &h, f)?;
    Ok(h)
}

/// Spawns a coroutine named `name` on the calling thread's worker.
///
/// # Panics
/// If the calling thread has no worker (see [`crate::Worker`] and
/// [`crate::block_on`]) or no stack can be mapped; [`try_spawn`] reports
/// those as errors instead.
pub fn spawn<T: 'static>(
    name: impl Into<Cow<'static, str>>,
    f: impl FnOnce() -> T + 'static,
) -> JoinHandle<T> {
    try_spawn(name, f).unwrap_or_else(|e| panic!("spawn: {e}"))
}

/// Like [`spawn`], reporting a missing worker or a failed stack mapping.
pub fn try_spawn<T: 'static>(
    name: impl Into<Cow<'static, str>>,
    f: impl FnOnce() -> T + 'static,
) -> io::Result<JoinHandle<T>> {
    let sched = Scheduler::current().ok_or_else(no_worker)?;
    spawn_in(sched, name.into(), None, f)
}

/// Spawns a coroutine nobody will join (a connection handler, say): no join
/// state is allocated, so this is the cheapest way to start one. A panic is
/// reported on stderr with the coroutine's name. It cannot be cancelled
/// through a handle; give it a [`crate::Signal`] to subscribe to instead.
pub fn spawn_detached(name: impl Into<Cow<'static, str>>, f: impl FnOnce() + 'static) -> io::Result<TaskKey> {
    let sched = Scheduler::current().ok_or_else(no_worker)?;
    sched.spawn_raw(name.into(), None, std::ptr::null(), move || {
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(f)) {
            let name = current_name().unwrap_or_default();
            eprintln!(
                "accel-coro: detached coroutine {name} panicked: {}",
                panic_message(p)
            );
        }
    })
}

/// Spawns on memory the caller supplies (libwire's rule).
pub fn spawn_with_stack<T: 'static>(
    name: impl Into<Cow<'static, str>>,
    stack: CoroStack,
    f: impl FnOnce() -> T + 'static,
) -> io::Result<JoinHandle<T>> {
    let sched = Scheduler::current().ok_or_else(no_worker)?;
    spawn_in(sched, name.into(), Some(stack), f)
}

pub(crate) fn no_worker() -> io::Error {
    io::Error::other("this thread has no accel-coro worker")
}

/// Gives other runnable coroutines a turn; returns at once outside a
/// coroutine.
pub fn yield_now() {
    if let Some(s) = Scheduler::current() {
        s.suspend(crate::sched::Suspend::Yield);
    }
}

/// Suspends the running coroutine until someone resumes it with
/// [`resume`] (libwire's `wire_suspend`). Like every wait it may also
/// return early on an unrelated wake-up, so call it in a loop over the
/// condition you are waiting for. Outside a coroutine it returns at once.
pub fn suspend() {
    if let Some(s) = Scheduler::current() {
        if s.in_coroutine() {
            s.suspend(crate::sched::Suspend::Park);
        }
    }
}

/// Makes a coroutine suspended with [`suspend`] (or parked in any wait)
/// runnable again; callable from any thread (libwire's `wire_resume`).
pub fn resume(key: TaskKey) {
    key.wake();
}

/// The running coroutine's key, if the caller runs inside one.
pub fn current() -> Option<TaskKey> {
    Scheduler::current()?.current_task().map(|(_, k)| k)
}

/// The running coroutine's name, if the caller runs inside one.
pub fn current_name() -> Option<String> {
    Scheduler::current()?
        .current_task()
        .map(|(t, _)| t.name().to_owned())
}

/// Whether the running coroutine was cancelled.
pub fn is_cancelled() -> bool {
    Scheduler::current()
        .and_then(|s| s.current_task())
        .map(|(t, _)| {
            let p = t.shared.get();
            // SAFETY: a non-null pointer names the TaskShared inside the
            // join state, kept alive by the task's own closure until it ends.
            !p.is_null() && unsafe { (*p).cancelled.load(Ordering::Acquire) }
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{block_on, sleep, Signal, WaitError};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    #[test]
    fn spawn_and_join_return_the_value() {
        assert_eq!(block_on(|| spawn("child", || 6 * 7).join().unwrap()), 42);
    }

    #[test]
    fn run_queue_is_fifo_and_yield_interleaves() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        block_on(move || {
            let hs: Vec<_> = (0..3)
                .map(|i| {
                    let l = l.clone();
                    spawn(format!("t{i}"), move || {
                        for round in 0..2 {
                            l.borrow_mut().push((round, i));
                            yield_now();
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        });
        assert_eq!(
            *log.borrow(),
            vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
        );
    }

    #[test]
    fn a_panic_reaches_the_joiner() {
        let r = block_on(|| spawn("boom", || -> u8 { panic!("kaboom") }).join());
        match r {
            Err(JoinError::Panicked(m)) => assert_eq!(m, "kaboom"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cancel_ends_a_sleep_and_every_later_wait() {
        let r = block_on(|| {
            let h = spawn("sleeper", || {
                let first = sleep(Duration::from_secs(3600));
                let second = sleep(Duration::from_secs(3600));
                (first, second, is_cancelled())
            });
            yield_now(); // let it park
            h.cancel();
            h.join().unwrap()
        });
        assert_eq!(r, (Err(WaitError::Cancelled), Err(WaitError::Cancelled), true));
    }

    #[test]
    fn names_and_keys_are_visible_inside() {
        let (name, key) = block_on(|| spawn("named", || (current_name(), current())).join().unwrap());
        assert_eq!(name.as_deref(), Some("named"));
        assert!(key.is_some());
        assert!(current().is_none());
    }

    #[test]
    fn dropping_a_worker_abandons_parked_tasks() {
        let w = crate::Worker::new(crate::Config::default()).unwrap();
        let h = spawn("forever", || {
            Signal::new()
                .subscribe()
                .map(|_| sleep(Duration::from_secs(3600)))
        });
        w.turn(Some(0)).unwrap();
        assert!(!h.is_finished());
        drop(w);
        assert!(matches!(h.join(), Err(JoinError::Abandoned)));
    }

    #[test]
    fn suspend_waits_for_resume() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        block_on(move || {
            let flag = Rc::new(std::cell::Cell::new(false));
            let (f2, l2) = (flag.clone(), l.clone());
            let h = spawn("sleeper", move || {
                l2.borrow_mut().push("suspended");
                while !f2.get() {
                    suspend();
                }
                l2.borrow_mut().push("resumed");
            });
            for _ in 0..5 {
                yield_now(); // nobody resumes it: it stays suspended
            }
            l.borrow_mut().push("resuming");
            flag.set(true);
            resume(h.key().unwrap());
            h.join().unwrap();
        });
        assert_eq!(*log.borrow(), vec!["suspended", "resuming", "resumed"]);
    }

    #[test]
    fn detached_coroutines_run_to_their_end() {
        let hits = Rc::new(std::cell::Cell::new(0));
        let h2 = hits.clone();
        block_on(move || {
            for _ in 0..10 {
                let h = h2.clone();
                spawn_detached("d", move || h.set(h.get() + 1)).unwrap();
            }
            spawn_detached("panics", || panic!("reported, not propagated")).unwrap();
            let s = crate::Scheduler::current().unwrap();
            while s.live_tasks() > 1 {
                yield_now();
            }
        });
        assert_eq!(hits.get(), 10);
    }

    #[test]
    fn spawn_without_worker_is_an_error() {
        std::thread::spawn(|| assert!(try_spawn("x", || ()).is_err()))
            .join()
            .unwrap();
    }
}
