//! A runtime of N worker threads, one per core, each a [`crate::Worker`]
//! with its own scheduler, optionally pinned to its core.
//!
//! Work reaches a worker only when it is spawned there ([`Runtime::spawn_on`])
//! — through the worker's bounded job queue and its doorbell — and stays
//! there: there is no work stealing (shared-nothing, as DESIGN.md requires).
//! A full job queue pushes back on the spawner (it yields or backs off and
//! retries), never grows without bound. Dropping the runtime stops every
//! worker; coroutines still parked then are leaked, never unwound, and
//! their join handles report [`crate::JoinError::Abandoned`], as do those of
//! spawns still queued (they never run).

use std::borrow::Cow;
use std::io;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::task::{self, JoinError, JoinHandle};
use crate::waker::Remote;
use crate::{Config, Scheduler, Worker};

/// Builds a [`Runtime`].
#[derive(Clone, Debug)]
pub struct RuntimeBuilder {
    workers: usize,
    pin: bool,
    config: Config,
    name: String,
}

impl RuntimeBuilder {
    /// Number of worker threads (default: one per online CPU).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }
    /// Pin worker `i` to CPU `i % ncpus` (default: off).
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }
    /// Settings of every worker.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    /// Thread name prefix (default `accel-worker`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts the worker threads.
    pub fn build(self) -> io::Result<Runtime> {
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut workers = Vec::with_capacity(self.workers);
        for i in 0..self.workers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Arc<Remote>>>(1);
            let config = self.config.clone();
            let pin = self.pin.then_some(i % ncpu);
            let thread = std::thread::Builder::new()
                .name(format!("{}-{i}", self.name))
                .spawn(move || worker_main(config, pin, tx))?;
            let remote = rx
                .recv()
                .map_err(|_| io::Error::other("worker thread died during start-up"))??;
            workers.push(WorkerThread {
                remote,
                thread: Some(thread),
            });
        }
        Ok(Runtime { workers })
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn worker_main(config: Config, pin: Option<usize>, tx: std::sync::mpsc::SyncSender<io::Result<Arc<Remote>>>) {
    if let Some(cpu) = pin {
        pin_to(cpu);
    }
    let w = match Worker::new(config) {
        Ok(w) => w,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let remote = w.scheduler().remote().clone();
    if tx.send(Ok(remote.clone())).is_err() {
        return;
    }
    while !remote.shutdown.load(Ordering::Acquire) {
        if w.turn(None).is_err() {
            break;
        }
    }
}

/// The worker's half of a remote spawn's join handle. A job dropped before
/// it ran (its worker stopped first) completes the join with
/// [`JoinError::Abandoned`], so no `join` waits for a task that never comes.
struct Unrun<T>(Option<JoinHandle<T>>);

impl<T> Drop for Unrun<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.fail(JoinError::Abandoned);
        }
    }
}

struct WorkerThread {
    remote: Arc<Remote>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// N worker threads.
pub struct Runtime {
    workers: Vec<WorkerThread>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: false,
            config: Config::default(),
            name: "accel-worker".into(),
        }
    }

    /// `n` unpinned workers with the default configuration.
    pub fn new(n: usize) -> io::Result<Runtime> {
        Runtime::builder().workers(n).build()
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The worker id (as in [`crate::TaskKey`]) of worker `i`.
    pub fn worker_id(&self, i: usize) -> u16 {
        self.workers[i % self.workers.len()].remote.id
    }

    /// Spawns `f` as a coroutine on worker `worker % workers()`, from any
    /// thread or coroutine.
    pub fn spawn_on<T, F>(&self, worker: usize, name: impl Into<Cow<'static, str>>, f: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let handle = task::unstarted::<T>();
        let mut theirs = Unrun(Some(handle.share()));
        let name = name.into();
        let mut job: crate::waker::RemoteJob = Box::new(move || {
            let Some(theirs) = theirs.0.take() else { return };
            match Scheduler::current() {
                Some(s) => {
                    let _ = task::start(s, name, None, &theirs, f);
                }
                None => theirs.fail(JoinError::Spawn("no worker on this thread".into())),
            }
        });
        let remote = &self.workers[worker % self.workers.len()].remote;
        loop {
            match remote.push_job(job) {
                Ok(()) => break,
                Err(back) => {
                    job = back;
                    if task::current().is_some() {
                        task::yield_now();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(20));
                    }
                }
            }
        }
        handle
    }

    /// Runs `f(i)` for every `i` in `range`, split evenly across the
    /// workers, and returns when all have finished. `f` may borrow from the
    /// caller. A panic in any part is re-raised here after every part ended.
    pub fn parallel_for<F: Fn(usize) + Sync>(&self, range: Range<usize>, f: F) {
        let f_ref: &(dyn Fn(usize) + Sync) = &f;
        // SAFETY: the reference is used only by the coroutines spawned below,
        // and every one of them is joined before this function returns
        // (join is uninterruptible; a panicking part is caught and joined
        // too; a part left parked by a shutdown is leaked, never resumed),
        // so no use outlives `f`.
        let f_static: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f_ref) };
        let n = self.workers.len();
        let len = range.len();
        let handles: Vec<_> = (0..n)
            .map(|w| {
                let part = range.start + len * w / n..range.start + len * (w + 1) / n;
                self.spawn_on(w, "parallel_for", move || part.for_each(f_static))
            })
            .collect();
        let mut failure = None;
        for h in handles {
            if let Err(e) = h.join() {
                failure.get_or_insert(e);
            }
        }
        if let Some(e) = failure {
            panic!("parallel_for: {e}");
        }
    }

    /// Stops every worker and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for w in &self.workers {
            w.remote.shutdown.store(true, Ordering::Release);
            w.remote.ring();
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn spawn_on_runs_on_the_chosen_worker_and_stays_there() {
        let rt = Runtime::new(2).unwrap();
        for w in 0..2 {
            let want = rt.worker_id(w);
            let (id, thread) = rt
                .spawn_on(w, "where", move || {
                    let id = Scheduler::current().unwrap().id();
                    let t = std::thread::current().id();
                    for _ in 0..10 {
                        crate::yield_now();
                        assert_eq!(std::thread::current().id(), t, "a coroutine moved thread");
                    }
                    (id, format!("{t:?}"))
                })
                .join()
                .unwrap();
            assert_eq!(id, want);
            assert_ne!(thread, format!("{:?}", std::thread::current().id()));
        }
    }

    #[test]
    fn parallel_for_covers_the_range_once_and_borrows() {
        let rt = Runtime::new(2).unwrap();
        let hits: Vec<AtomicU64> = (0..1000).map(|_| AtomicU64::new(0)).collect();
        rt.parallel_for(0..1000, |i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        rt.parallel_for(5..5, |_| panic!("empty range runs nothing"));
    }

    #[test]
    #[should_panic(expected = "parallel_for")]
    fn parallel_for_propagates_a_panic() {
        let rt = Runtime::new(2).unwrap();
        rt.parallel_for(0..10, |i| assert!(i != 7, "seven"));
    }

    #[test]
    fn shutdown_abandons_parked_tasks() {
        let rt = Runtime::new(1).unwrap();
        // The shutdown comes once the task runs (it then parks before its
        // worker looks at the flag again): a fixed pause let a loaded
        // machine shut down before the worker ran the spawn, which tests
        // the queued case instead (shutdown_abandons_spawns_still_queued).
        let (started, running) = std::sync::mpsc::channel();
        let h = rt.spawn_on(0, "stuck", move || {
            started.send(()).unwrap();
            crate::sleep(std::time::Duration::from_secs(3600))
        });
        running
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the task did not start within 10 s");
        rt.shutdown();
        assert!(matches!(h.join(), Err(JoinError::Abandoned)));
    }

    #[test]
    fn shutdown_abandons_spawns_still_queued() {
        for _ in 0..200 {
            let rt = Runtime::new(1).unwrap();
            let handles: Vec<_> = (0..8).map(|_| rt.spawn_on(0, "late", || 1)).collect();
            rt.shutdown();
            for h in handles {
                assert!(matches!(h.join(), Ok(1) | Err(JoinError::Abandoned)));
            }
        }
    }

    #[test]
    fn pinned_workers_start() {
        let rt = Runtime::builder().workers(2).pin(true).build().unwrap();
        assert_eq!(rt.spawn_on(1, "p", || 5).join().unwrap(), 5);
    }
}
