//! One scheduler per OS thread: the task slab, the FIFO run queue, the
//! timer wheel, the reactor and the poll sources, driven by [`Scheduler::turn`].
//!
//! Invariants:
//! - A task runs only on the thread whose scheduler created it; coroutines are
//!   `!Send` and never migrate (C code caches `&errno` and `pthread_self()`).
//! - Only the scheduler loop resumes coroutines, and it is not re-entrant: a
//!   coroutine that calls [`Scheduler::turn`] gets an error, never a nested loop.
//! - Task slots live in fixed chunks that are never moved or freed while the
//!   scheduler exists, so a `&Task` stays valid across resumes and spawns.
//! - A suspended coroutine is never dropped by unwinding (we build without
//!   corosensei's `unwind`): when a scheduler is torn down with coroutines
//!   still parked, they are leaked, stack and all, and counted
//!   ([`Scheduler::leaked`]). Cancellation is cooperative: see
//!   [`crate::JoinHandle::cancel`].
//! - Run order is FIFO; a turn runs at most `budget` tasks before it looks at
//!   timers, poll sources and fds again, so nothing starves.

use std::borrow::Cow;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::overflow;
use crate::stack::{self, CoroStack};
use crate::time;
use crate::waker::{self, Remote, TaskKey, DRIVER};
use crate::wheel::TimerWheel;
use crate::{Config, PollSource};

/// Why a coroutine gave control back to the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// Still runnable: go to the back of the queue.
    Yield,
    /// Waiting for a wake-up.
    Park,
}

type Coro = Coroutine<(), Suspend, (), CoroStack>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Free,
    Runnable,
    Running,
    /// Woken while running: goes straight back to the queue when it parks.
    Notified,
    Parked,
}

/// What the overflow handler reads about the running task.
#[repr(C)]
pub(crate) struct OverflowInfo {
    pub guard_lo: usize,
    pub guard_hi: usize,
    pub size: usize,
    pub name_ptr: *const u8,
    pub name_len: usize,
}

/// One task slot. All fields are cells: the slot is reached through a shared
/// reference while its coroutine runs.
pub(crate) struct Task {
    idx: Cell<u32>,
    pub(crate) gen: Cell<u16>,
    pub(crate) state: Cell<State>,
    co: UnsafeCell<Option<Coro>>,
    yielder: Cell<*const Yielder<(), Suspend>>,
    name: UnsafeCell<Cow<'static, str>>,
    overflow: UnsafeCell<OverflowInfo>,
    /// Cancellation flag shared with the task's join handle (null if none).
    pub(crate) shared: Cell<*const crate::task::TaskShared>,
    /// Signal subscriptions: `(signal, last generation seen)`.
    pub(crate) subs: RefCell<Vec<crate::signal::SubEntry>>,
}

impl Task {
    fn new() -> Task {
        Task {
            idx: Cell::new(0),
            gen: Cell::new(0),
            state: Cell::new(State::Free),
            co: UnsafeCell::new(None),
            yielder: Cell::new(std::ptr::null()),
            name: UnsafeCell::new(Cow::Borrowed("")),
            overflow: UnsafeCell::new(OverflowInfo {
                guard_lo: 0,
                guard_hi: 0,
                size: 0,
                name_ptr: std::ptr::null(),
                name_len: 0,
            }),
            shared: Cell::new(std::ptr::null()),
            subs: RefCell::new(Vec::new()),
        }
    }

    /// The task's name.
    pub(crate) fn name(&self) -> &str {
        // SAFETY: the name is written only in `spawn`, before the task first
        // runs, and in `finish`, after it ended; never while borrowed here.
        unsafe { &*self.name.get() }
    }
}

const CHUNK: usize = 256;

/// Task slots in chunks that never move.
struct Slab {
    chunks: UnsafeCell<Vec<*mut [Task; CHUNK]>>,
    free: UnsafeCell<Vec<u32>>,
}

impl Slab {
    fn get(&self, idx: u32) -> Option<&Task> {
        // SAFETY: chunks is only mutated by `alloc`, which pushes; the
        // pointers it holds stay valid until the slab is dropped.
        let chunks = unsafe { &*self.chunks.get() };
        let chunk = *chunks.get(idx as usize / CHUNK)?;
        // SAFETY: chunk points to a live, never-moved array of tasks.
        Some(unsafe { &(*chunk)[idx as usize % CHUNK] })
    }

    fn alloc(&self) -> u32 {
        // SAFETY: not re-entrant (no callbacks run while these borrows live).
        let free = unsafe { &mut *self.free.get() };
        if let Some(i) = free.pop() {
            return i;
        }
        // SAFETY: as above.
        let chunks = unsafe { &mut *self.chunks.get() };
        let base = (chunks.len() * CHUNK) as u32;
        // Built on the heap: a [Task; CHUNK] temporary would be ~40 KiB on
        // the stack, and spawns happen on coroutine stacks.
        let chunk: Box<[Task]> = (0..CHUNK)
            .map(|i| {
                let t = Task::new();
                t.idx.set(base + i as u32);
                t
            })
            .collect();
        let chunk: Box<[Task; CHUNK]> = chunk.try_into().ok().expect("CHUNK tasks");
        chunks.push(Box::into_raw(chunk));
        free.extend((base + 1..base + CHUNK as u32).rev());
        base
    }

    fn release(&self, idx: u32) {
        // SAFETY: not re-entrant.
        unsafe { &mut *self.free.get() }.push(idx);
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        for &c in self.chunks.get_mut().iter() {
            // SAFETY: every pointer came from Box::into_raw in `alloc`.
            let mut chunk = unsafe { Box::from_raw(c) };
            for t in chunk.iter_mut() {
                if let Some(co) = t.co.get_mut().take() {
                    if co.started() && !co.done() {
                        // Never unwind a suspended coroutine: leak it whole.
                        std::mem::forget(co);
                    }
                }
            }
        }
    }
}

/// A FIFO of runnable tasks, held as pointers into the never-moving slab so
/// the switch path does no slab lookup: a power-of-two ring that grows when
/// full. Hand written because it is the hottest structure of the scheduler
/// (a push and a pop per switch) and `VecDeque` costs ~25 instructions per
/// round there.
struct RunQueue {
    buf: UnsafeCell<Vec<*const Task>>,
    head: Cell<u32>,
    tail: Cell<u32>,
}

impl RunQueue {
    fn with_capacity(cap: usize) -> RunQueue {
        RunQueue {
            buf: UnsafeCell::new(vec![std::ptr::null(); cap.next_power_of_two()]),
            head: Cell::new(0),
            tail: Cell::new(0),
        }
    }

    #[inline]
    fn push(&self, i: *const Task) {
        // SAFETY: the borrow ends inside this call and nothing re-enters.
        let buf = unsafe { &mut *self.buf.get() };
        let (head, tail) = (self.head.get(), self.tail.get());
        if tail.wrapping_sub(head) as usize == buf.len() {
            self.grow(buf);
            return self.push(i);
        }
        let mask = buf.len() - 1;
        buf[tail as usize & mask] = i;
        self.tail.set(tail.wrapping_add(1));
    }

    #[cold]
    fn grow(&self, buf: &mut Vec<*const Task>) {
        let (head, n) = (self.head.get(), self.len());
        let mask = buf.len() - 1;
        let mut bigger = vec![std::ptr::null(); buf.len() * 2];
        for (k, slot) in bigger.iter_mut().enumerate().take(n) {
            *slot = buf[(head as usize + k) & mask];
        }
        *buf = bigger;
        self.head.set(0);
        self.tail.set(n as u32);
    }

    #[inline]
    fn pop(&self) -> Option<*const Task> {
        let head = self.head.get();
        if head == self.tail.get() {
            return None;
        }
        // SAFETY: as in push.
        let buf = unsafe { &*self.buf.get() };
        let i = buf[head as usize & (buf.len() - 1)];
        self.head.set(head.wrapping_add(1));
        Some(i)
    }

    fn len(&self) -> usize {
        self.tail.get().wrapping_sub(self.head.get()) as usize
    }
}

thread_local! {
    static CURRENT: Cell<*const Scheduler> = const { Cell::new(std::ptr::null()) };
}

/// The overflow record of the coroutine running on this thread, or null.
/// Async-signal-safe: plain loads of a const thread-local and of memory
/// that lives as long as the scheduler.
pub(crate) fn running_overflow_info() -> *const OverflowInfo {
    let s = CURRENT.with(|c| c.get());
    // SAFETY: CURRENT is null or names a live scheduler (see `current`).
    let Some(s) = (unsafe { s.as_ref() }) else {
        return std::ptr::null();
    };
    // SAFETY: `cur` is null or points into the never-moved slab.
    match unsafe { s.cur.get().as_ref() } {
        Some(t) => t.overflow.get(),
        None => std::ptr::null(),
    }
}

/// A worker's scheduler. Reach the one of the calling thread with
/// [`Scheduler::current`]; create one with [`crate::Worker::new`].
pub struct Scheduler {
    remote: Arc<Remote>,
    tasks: Slab,
    runq: RunQueue,
    /// The running task, or null when the driver runs.
    cur: Cell<*const Task>,
    driver_woken: Cell<bool>,
    now: Cell<u64>,
    pub(crate) timers: RefCell<TimerWheel<std::task::Waker>>,
    pub(crate) reactor: RefCell<crate::reactor::Reactor>,
    sources: RefCell<Vec<Option<Box<dyn PollSource>>>>,
    config: Config,
    /// Usable size of this worker's default stacks (rounded).
    stack_size: usize,
    /// Idle default-size stacks, reused LIFO (hottest first); the per-thread
    /// pool in `stack` serves other sizes.
    stacks: UnsafeCell<Vec<CoroStack>>,
    live: Cell<usize>,
    leaked: Cell<usize>,
    in_turn: Cell<bool>,
}

/// Explains a failed stack mapping: past ~32,000 guarded stacks the
/// kernel's per-process mapping limit, not memory, is what runs out.
pub(crate) fn spawn_error(e: io::Error) -> io::Error {
    let hint = if e.raw_os_error() == Some(libc::ENOMEM) {
        " (each guarded stack takes 2 of the vm.max_map_count mappings: raise it, \
         e.g. sysctl -w vm.max_map_count=1048576)"
    } else {
        ""
    };
    io::Error::new(e.kind(), format!("cannot map a coroutine stack: {e}{hint}"))
}

impl Scheduler {
    pub(crate) fn new(config: Config) -> io::Result<Box<Scheduler>> {
        overflow::install_for_this_thread();
        let remote = waker::register()?;
        let reactor = crate::reactor::Reactor::new(remote.doorbell_fd()).inspect_err(|_| {
            waker::unregister(remote.id);
        })?;
        let now = time::now_ns();
        Ok(Box::new(Scheduler {
            remote,
            tasks: Slab {
                chunks: UnsafeCell::new(Vec::new()),
                free: UnsafeCell::new(Vec::new()),
            },
            runq: RunQueue::with_capacity(1024),
            cur: Cell::new(std::ptr::null()),
            driver_woken: Cell::new(false),
            now: Cell::new(now),
            timers: RefCell::new(TimerWheel::new(now)),
            reactor: RefCell::new(reactor),
            sources: RefCell::new(Vec::new()),
            stack_size: stack::rounded_size(config.stack_size),
            stacks: UnsafeCell::new(Vec::new()),
            config,
            live: Cell::new(0),
            leaked: Cell::new(0),
            in_turn: Cell::new(false),
        }))
    }

    /// Makes `self` the calling thread's scheduler. Returns false if the
    /// thread already has one.
    pub(crate) fn set_current(self: &Scheduler) -> bool {
        CURRENT.with(|c| {
            if !c.get().is_null() {
                return false;
            }
            c.set(self);
            true
        })
    }

    pub(crate) fn clear_current() {
        CURRENT.with(|c| c.set(std::ptr::null()));
    }

    /// The calling thread's scheduler, if it has one.
    pub fn current() -> Option<&'static Scheduler> {
        let p = CURRENT.with(|c| c.get());
        // SAFETY: CURRENT is set only while the scheduler's owner (a Worker)
        // keeps it alive, and cleared before the box is freed; 'static is a
        // white lie bounded by that: callers never hold it past the worker.
        unsafe { p.as_ref() }
    }

    /// This worker's id (unique among live workers).
    pub fn id(&self) -> u16 {
        self.remote.id
    }

    pub(crate) fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    /// This worker's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The time cached at the start of this turn (ns, `CLOCK_MONOTONIC`).
    pub fn now(&self) -> u64 {
        self.now.get()
    }

    /// Reads the clock and updates the cached time.
    pub fn refresh_now(&self) -> u64 {
        let t = time::now_ns();
        self.now.set(t);
        t
    }

    /// Live tasks (spawned and not finished).
    pub fn live_tasks(&self) -> usize {
        self.live.get()
    }

    /// Coroutines that were still parked when their scheduler was dropped.
    pub fn leaked(&self) -> usize {
        self.leaked.get()
    }

    /// Runnable tasks waiting in the queue.
    pub fn runnable(&self) -> usize {
        self.runq.len()
    }

    /// The task running now, if any.
    #[inline]
    pub(crate) fn current_task(&self) -> Option<(&Task, TaskKey)> {
        // SAFETY: `cur` is null or points into the never-moved slab.
        let t = unsafe { self.cur.get().as_ref() }?;
        Some((t, self.key(t.idx.get(), t)))
    }

    fn key(&self, idx: u32, t: &Task) -> TaskKey {
        TaskKey {
            worker: self.id(),
            gen: t.gen.get(),
            idx,
        }
    }

    /// The key that wakes the driver (the thread, outside any coroutine).
    pub(crate) fn driver_key(&self) -> TaskKey {
        TaskKey {
            worker: self.id(),
            gen: 0,
            idx: DRIVER,
        }
    }

    pub(crate) fn take_driver_woken(&self) -> bool {
        self.driver_woken.replace(false)
    }

    /// Starts a coroutine on this scheduler. `body` runs on the new stack and
    /// must not unwind (the caller wraps it in `catch_unwind`).
    pub(crate) fn spawn_raw(
        &self,
        name: Cow<'static, str>,
        stack: Option<CoroStack>,
        shared: *const crate::task::TaskShared,
        body: impl FnOnce() + 'static,
    ) -> io::Result<TaskKey> {
        let stack = match stack {
            Some(s) => s,
            // SAFETY: the borrow ends here; nothing re-enters.
            None => match unsafe { &mut *self.stacks.get() }.pop() {
                Some(s) => s,
                None => stack::map(self.stack_size).map_err(spawn_error)?,
            },
        };
        let guard = stack.guard_range();
        let size = stack.usable_size();
        let idx = self.tasks.alloc();
        let t = self.tasks.get(idx).expect("just allocated");
        let co = Coro::with_stack(stack, move |y: &Yielder<(), Suspend>, ()| {
            if let Some(s) = Scheduler::current() {
                if let Some(t) = s.tasks.get(idx) {
                    t.yielder.set(y);
                }
            }
            body();
        });
        // SAFETY: the slot is free: no coroutine runs on it and nothing else
        // borrows its cells.
        unsafe {
            *t.co.get() = Some(co);
            *t.name.get() = name;
            let name = &*t.name.get();
            *t.overflow.get() = OverflowInfo {
                guard_lo: guard.0,
                guard_hi: guard.1,
                size,
                name_ptr: name.as_ptr(),
                name_len: name.len(),
            };
        }
        t.shared.set(shared);
        t.state.set(State::Runnable);
        self.live.set(self.live.get() + 1);
        self.runq.push(t);
        Ok(self.key(idx, t))
    }

    /// Wakes a task of this scheduler (called on its own thread).
    pub(crate) fn wake_local(&self, key: TaskKey) {
        if key.idx == DRIVER {
            self.driver_woken.set(true);
            return;
        }
        let Some(t) = self.tasks.get(key.idx) else {
            return;
        };
        if t.gen.get() != key.gen {
            return;
        }
        match t.state.get() {
            State::Parked => {
                t.state.set(State::Runnable);
                self.runq.push(t);
            }
            State::Running => t.state.set(State::Notified),
            State::Runnable | State::Notified | State::Free => {}
        }
    }

    /// Gives control back to the scheduler from inside a coroutine.
    #[inline]
    pub(crate) fn suspend(&self, why: Suspend) {
        // SAFETY: `cur` is null or points into the never-moved slab.
        let Some(t) = (unsafe { self.cur.get().as_ref() }) else {
            return;
        };
        let y = t.yielder.get();
        debug_assert!(!y.is_null());
        // SAFETY: the yielder lives on this coroutine's stack for as long as
        // the coroutine runs, and we are running on that coroutine now.
        unsafe { (*y).suspend(why) };
    }

    #[inline]
    fn run_task(&self, t: &Task) {
        if t.state.get() != State::Runnable {
            return;
        }
        t.state.set(State::Running);
        self.cur.set(t);
        // SAFETY: only this loop touches `co`, the loop is not re-entrant
        // (turn() refuses to run inside a coroutine), and the slot stays put.
        let co = unsafe { &mut *t.co.get() };
        let r = match co.as_mut() {
            Some(co) => co.resume(()),
            None => CoroutineResult::Return(()),
        };
        self.cur.set(std::ptr::null());
        match r {
            CoroutineResult::Yield(Suspend::Yield) => {
                t.state.set(State::Runnable);
                self.runq.push(t);
            }
            CoroutineResult::Yield(Suspend::Park) => {
                if t.state.get() == State::Notified {
                    t.state.set(State::Runnable);
                    self.runq.push(t);
                } else {
                    t.state.set(State::Parked);
                }
            }
            CoroutineResult::Return(()) => self.finish(t),
        }
    }

    fn finish(&self, t: &Task) {
        // SAFETY: the coroutine has returned; nothing else borrows the slot.
        let co = unsafe { (*t.co.get()).take() };
        if let Some(co) = co {
            let st = co.into_stack();
            // SAFETY: the borrow ends here; nothing re-enters.
            let cache = unsafe { &mut *self.stacks.get() };
            if !st.is_user() && st.usable_size() == self.stack_size && cache.len() < stack::POOL_MAX {
                cache.push(st);
            } else {
                stack::give_back(st);
            }
        }
        // SAFETY: as above; the overflow info pointing at the name is
        // cleared with the name.
        unsafe { *t.name.get() = Cow::Borrowed("") };
        t.subs.borrow_mut().clear();
        t.shared.set(std::ptr::null());
        t.yielder.set(std::ptr::null());
        t.gen.set(t.gen.get().wrapping_add(1));
        t.state.set(State::Free);
        self.tasks.release(t.idx.get());
        self.live.set(self.live.get() - 1);
    }

    /// Registers a poll source; returns its index.
    pub fn add_source(&self, source: Box<dyn PollSource>) -> io::Result<usize> {
        let fd = source.wake_fd();
        let mut sources = self.sources.borrow_mut();
        let index = sources.iter().position(Option::is_none).unwrap_or(sources.len());
        if let Some(fd) = fd {
            self.reactor.borrow().add_source_fd(fd, index)?;
        }
        if index == sources.len() {
            sources.push(Some(source));
        } else {
            sources[index] = Some(source);
        }
        Ok(index)
    }

    /// Removes a poll source.
    pub fn remove_source(&self, index: usize) -> Option<Box<dyn PollSource>> {
        let s = self.sources.borrow_mut().get_mut(index)?.take()?;
        if let Some(fd) = s.wake_fd() {
            self.reactor.borrow().remove_source_fd(fd);
        }
        Some(s)
    }

    fn poll_sources(&self, now: u64) -> bool {
        let Ok(mut sources) = self.sources.try_borrow_mut() else {
            return false;
        };
        let mut progress = false;
        for s in sources.iter_mut().flatten() {
            progress |= s.poll(now);
        }
        progress
    }

    fn sources_deadline(&self) -> Option<u64> {
        let sources = self.sources.try_borrow().ok()?;
        sources.iter().flatten().filter_map(|s| s.next_deadline()).min()
    }

    fn fire_timers(&self, now: u64) -> usize {
        let Ok(mut timers) = self.timers.try_borrow_mut() else {
            return 0;
        };
        // Waking only touches the run queue, never the wheel.
        timers.poll(now, |_, w| w.wake())
    }

    fn drain_remote(&self) {
        self.remote.drain(
            |k| self.wake_local(k),
            |job| {
                job();
            },
        );
    }

    /// Runs ready tasks, fires due timers, polls sources and fds; if there
    /// is nothing to do, spins for the configured time and then sleeps in
    /// `epoll_wait` until a timer, an fd, a poll source or another thread
    /// wakes it, or until `max_wait_ns` passed (`None`: no limit, `Some(0)`:
    /// never sleep). Returns how many tasks ran.
    ///
    /// Must be called on the scheduler's own thread, outside any coroutine.
    pub fn turn(&self, max_wait_ns: Option<u64>) -> io::Result<usize> {
        if self.in_coroutine() || self.in_turn.replace(true) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "Scheduler::turn called from inside a coroutine",
            ));
        }
        let r = self.turn_inner(max_wait_ns);
        self.in_turn.set(false);
        r
    }

    fn turn_inner(&self, max_wait_ns: Option<u64>) -> io::Result<usize> {
        let start = self.refresh_now();
        self.drain_remote();
        self.fire_timers(start);
        let mut ran = 0;
        while ran < self.config.budget {
            let Some(t) = self.runq.pop() else { break };
            // SAFETY: the queue holds pointers into the never-moved slab.
            self.run_task(unsafe { &*t });
            ran += 1;
        }
        let now = self.refresh_now();
        let mut progress = self.poll_sources(now) | (ran > 0);
        if self.reactor.borrow().has_fd_waiters() {
            progress |= self.reactor.borrow_mut().wait(0)?.fds > 0;
        }
        if progress || self.runq.len() > 0 || self.driver_woken.get() || max_wait_ns == Some(0) {
            return Ok(ran);
        }
        let limit = max_wait_ns.map(|w| start.saturating_add(w));
        // Idle: spin first, looking at everything that can make work.
        let spin_until = now
            .saturating_add(self.config.spin_ns)
            .min(limit.unwrap_or(u64::MAX));
        let mut t = now;
        while t < spin_until {
            if self.remote.has_pending() || self.poll_sources(t) {
                self.drain_remote();
                return Ok(ran);
            }
            if self.timers.borrow().next_deadline().is_some_and(|d| d <= t) {
                self.fire_timers(t);
                return Ok(ran);
            }
            std::hint::spin_loop();
            t = self.refresh_now();
        }
        // Then sleep in the kernel.
        let deadline = [
            self.timers.borrow().next_deadline(),
            self.sources_deadline(),
            limit,
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout_ms = match deadline {
            None => -1,
            // Round up: waking early would only spin again; never round a
            // sub-millisecond wait down to a busy 0.
            Some(d) => d.saturating_sub(t).div_ceil(1_000_000).min(i32::MAX as u64) as i32,
        };
        self.remote.sleeping.store(true, Ordering::SeqCst);
        let woken = if self.remote.has_pending() {
            None
        } else {
            Some(self.reactor.borrow_mut().wait(timeout_ms))
        };
        self.remote.sleeping.store(false, Ordering::SeqCst);
        if let Some(w) = woken {
            if w?.doorbell {
                self.remote.clear_doorbell();
            }
        }
        let now = self.refresh_now();
        self.drain_remote();
        self.fire_timers(now);
        self.poll_sources(now);
        Ok(ran)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let mut parked = 0;
        for i in 0..(self.tasks_capacity() as u32) {
            if let Some(t) = self.tasks.get(i) {
                if t.state.get() != State::Free {
                    parked += 1;
                }
            }
        }
        self.leaked.set(parked);
        waker::unregister(self.remote.id);
    }
}

impl Scheduler {
    /// Completes the join handles of every task still alive with
    /// `JoinError::Abandoned` (the worker is shutting down).
    pub(crate) fn abandon_all(&self) {
        for i in 0..(self.tasks_capacity() as u32) {
            let Some(t) = self.tasks.get(i) else { continue };
            let p = t.shared.get();
            if t.state.get() != State::Free && !p.is_null() {
                // SAFETY: a live task's shared pointer is kept alive by its
                // closure (which is never dropped while the task is alive).
                unsafe { ((*p).abandon)(p) };
            }
        }
    }

    fn tasks_capacity(&self) -> usize {
        // SAFETY: read-only look at the chunk list; nothing runs meanwhile.
        unsafe { &*self.tasks.chunks.get() }.len() * CHUNK
    }

    /// Whether the calling code runs inside a coroutine of this scheduler.
    pub fn in_coroutine(&self) -> bool {
        !self.cur.get().is_null()
    }

    /// Frees idle poll-source slots and reports how many sources are live.
    pub fn sources(&self) -> usize {
        self.sources.borrow().iter().flatten().count()
    }

    /// The fd epoll sleeps on for this worker's doorbell.
    pub fn doorbell_fd(&self) -> RawFd {
        self.remote.doorbell_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{block_on, spawn, yield_now, Worker};
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    /// A source with work for `left` polls that wakes a task when done.
    struct Countdown {
        left: Rc<Cell<u32>>,
        waker: Rc<Cell<Option<std::task::Waker>>>,
    }

    impl PollSource for Countdown {
        fn poll(&mut self, _now: u64) -> bool {
            if self.left.get() == 0 {
                return false;
            }
            self.left.set(self.left.get() - 1);
            if self.left.get() == 0 {
                if let Some(w) = self.waker.take() {
                    w.wake();
                }
            }
            true
        }
    }

    #[test]
    fn poll_sources_run_every_turn_and_can_wake_tasks() {
        let left = Rc::new(Cell::new(50));
        let waker = Rc::new(Cell::new(None));
        let (l2, w2) = (left.clone(), waker.clone());
        block_on(move || {
            let s = Scheduler::current().unwrap();
            let id = s
                .add_source(Box::new(Countdown {
                    left: l2.clone(),
                    waker: w2.clone(),
                }))
                .unwrap();
            crate::wait_until(crate::Wait::forever(), |cx| {
                if l2.get() == 0 {
                    std::task::Poll::Ready(())
                } else {
                    w2.set(Some(cx.waker().clone()));
                    std::task::Poll::Pending
                }
            })
            .unwrap();
            assert!(s.remove_source(id).is_some());
            assert_eq!(s.sources(), 0);
        });
        assert_eq!(left.get(), 0);
    }

    #[test]
    fn turn_refuses_to_nest_inside_a_coroutine() {
        block_on(|| {
            let err = Scheduler::current().unwrap().turn(Some(0)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        });
    }

    #[test]
    fn a_second_worker_on_one_thread_is_refused() {
        let _w = Worker::new(Config::default()).unwrap();
        let e = Worker::new(Config::default()).err().unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
    }

    #[test]
    fn wakes_from_another_thread_reach_a_sleeping_worker() {
        let w = Worker::new(Config {
            spin_ns: 0,
            ..Config::default()
        })
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f2 = flag.clone();
        let h = spawn("parked", move || {
            crate::wait_until(crate::Wait::forever(), |cx| {
                if f2.load(std::sync::atomic::Ordering::Acquire) {
                    std::task::Poll::Ready(())
                } else {
                    tx.send(cx.waker().clone()).unwrap();
                    std::task::Poll::Pending
                }
            })
            .unwrap();
            7
        });
        w.turn(Some(0)).unwrap();
        let waker = rx.recv().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            flag.store(true, std::sync::atomic::Ordering::Release);
            waker.wake();
        });
        // Sleeps in epoll (no timers, no spin) until the other thread rings;
        // a wake that never arrives fails the test after 10 s instead of
        // hanging it.
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while !h.is_finished() {
            let left = give_up.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "the other thread's wake never reached the worker"
            );
            w.turn(Some(left.as_nanos() as u64)).unwrap();
        }
        t.join().unwrap();
        assert_eq!(h.join().unwrap(), 7);
    }

    #[test]
    fn an_idle_worker_sleeps_instead_of_spinning() {
        let w = Worker::new(Config {
            spin_ns: 0,
            ..Config::default()
        })
        .unwrap();
        let cpu = || {
            // SAFETY: getrusage writes into a valid struct.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
            ru.ru_utime.tv_sec as u64 * 1_000_000
                + ru.ru_utime.tv_usec as u64
                + ru.ru_stime.tv_sec as u64 * 1_000_000
                + ru.ru_stime.tv_usec as u64
        };
        let before = cpu();
        let start = crate::now_ns();
        while crate::now_ns() - start < 200_000_000 {
            w.turn(Some(50_000_000)).unwrap();
        }
        let used_us = cpu() - before;
        assert!(
            used_us < 20_000,
            "an idle worker used {used_us} µs of CPU in 200 ms"
        );
    }

    #[test]
    fn user_supplied_stacks_run_and_are_not_pooled() {
        let len = 64 * 1024;
        let mut mem = vec![0u8; len];
        let base = mem.as_mut_ptr();
        // SAFETY: `mem` outlives the coroutine (joined below); its lowest
        // page is not a guard page, which this test accepts.
        let st = unsafe { crate::stack::UserStack::new(base, len) }.unwrap();
        let before = crate::stack::pooled();
        let r = block_on(move || {
            crate::spawn_with_stack("user", st.into(), || {
                yield_now();
                let probe = 0u8;
                &probe as *const u8 as usize
            })
            .unwrap()
            .join()
            .unwrap()
        });
        assert!(
            r > base as usize && r < base as usize + len,
            "ran on the caller's memory"
        );
        assert!(
            crate::stack::pooled() <= before + 1,
            "user memory never enters the pool"
        );
        drop(mem);
    }
}

#[cfg(test)]
mod runq_tests {
    use super::RunQueue;

    #[test]
    fn ring_is_fifo_across_growth_and_wrap() {
        // The queue only stores and returns the pointers; these are never
        // dereferenced, so plain numbers stand in for tasks.
        let as_ptr = |v: usize| v as *const super::Task;
        let q = RunQueue::with_capacity(4);
        let mut next_in = 1usize;
        let mut next_out = 1usize;
        for round in 0..50 {
            for _ in 0..(round % 7 + 1) {
                q.push(as_ptr(next_in));
                next_in += 1;
            }
            for _ in 0..(round % 5) {
                if let Some(v) = q.pop() {
                    assert_eq!(v, as_ptr(next_out));
                    next_out += 1;
                }
            }
        }
        while let Some(v) = q.pop() {
            assert_eq!(v, as_ptr(next_out));
            next_out += 1;
        }
        assert_eq!(next_in, next_out);
        assert_eq!(q.len(), 0);
    }
}
