//! Wakers that cost nothing to create, clone or drop, and the registry that
//! lets any thread wake a coroutine on any worker.
//!
//! A [`TaskKey`] (worker id, slot generation, slot index) fits in one `u64`,
//! which is stored directly in the `RawWaker`'s data pointer: no allocation,
//! no reference count. Waking from the worker's own thread pushes the task on
//! its run queue; waking from elsewhere pushes the key into the worker's
//! bounded inbox ([`Remote`]) and rings its eventfd only if the worker is
//! asleep in `epoll_wait`. A key whose worker is gone or whose slot was
//! reused causes at most a spurious wake-up, which every wait tolerates
//! (each re-checks its condition), so a stale waker is harmless.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Waker};

use crossbeam_queue::ArrayQueue;
use parking_lot::{Mutex, RwLock};

use crate::sched::Scheduler;

/// The slot index that names a worker's driver (the OS thread running
/// `turn`, outside any coroutine) rather than a task.
pub(crate) const DRIVER: u32 = u32::MAX;

/// Identifies one task on one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskKey {
    pub(crate) worker: u16,
    pub(crate) gen: u16,
    pub(crate) idx: u32,
}

impl TaskKey {
    pub(crate) fn pack(self) -> u64 {
        (self.worker as u64) << 48 | (self.gen as u64) << 32 | self.idx as u64
    }

    pub(crate) fn unpack(v: u64) -> TaskKey {
        TaskKey {
            worker: (v >> 48) as u16,
            gen: (v >> 32) as u16,
            idx: v as u32,
        }
    }

    /// The waker for this task.
    pub fn waker(self) -> Waker {
        // SAFETY: the vtable functions treat the data pointer as a plain
        // integer and never dereference it, so any value is valid, and all
        // of them are thread-safe (wake goes through the registry).
        unsafe { Waker::from_raw(RawWaker::new(self.pack() as usize as *const (), &VTABLE)) }
    }

    /// Wakes the task (or driver) this key names, from any thread.
    pub fn wake(self) {
        if let Some(s) = Scheduler::current() {
            if s.id() == self.worker {
                s.wake_local(self);
                return;
            }
        }
        wake_remote(self);
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_raw, drop_raw);

fn clone_raw(p: *const ()) -> RawWaker {
    RawWaker::new(p, &VTABLE)
}

fn wake_raw(p: *const ()) {
    TaskKey::unpack(p as usize as u64).wake();
}

fn drop_raw(_: *const ()) {}

/// A job sent to a worker from another thread (a remote spawn).
pub(crate) type RemoteJob = Box<dyn FnOnce() + Send>;

/// The part of a worker that other threads may touch.
pub(crate) struct Remote {
    pub(crate) id: u16,
    inbox: ArrayQueue<u64>,
    /// Wakes that found the inbox full: never dropped, only slower.
    overflow: Mutex<Vec<u64>>,
    jobs: ArrayQueue<RemoteJob>,
    doorbell: OwnedFd,
    /// Set (SeqCst) just before the worker sleeps; wakers that see it ring.
    pub(crate) sleeping: AtomicBool,
    pub(crate) shutdown: AtomicBool,
}

/// Capacity of a worker's wake inbox and of its job queue.
pub(crate) const INBOX_CAP: usize = 4096;

impl Remote {
    pub(crate) fn doorbell_fd(&self) -> RawFd {
        self.doorbell.as_raw_fd()
    }

    fn push_wake(&self, v: u64) {
        if let Err(v) = self.inbox.push(v) {
            self.overflow.lock().push(v);
        }
        self.ring_if_sleeping();
    }

    /// Queues a job for the worker; gives it back when the queue is full
    /// (the caller backs off: a bounded queue pushes back).
    pub(crate) fn push_job(&self, job: RemoteJob) -> Result<(), RemoteJob> {
        self.jobs.push(job)?;
        self.ring_if_sleeping();
        Ok(())
    }

    pub(crate) fn ring_if_sleeping(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            self.ring();
        }
    }

    pub(crate) fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.doorbell.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Empties the doorbell after a wake-up (it is non-blocking).
    pub(crate) fn clear_doorbell(&self) {
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our eventfd.
        unsafe { libc::read(self.doorbell.as_raw_fd(), (&raw mut v).cast(), 8) };
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.inbox.is_empty() || !self.jobs.is_empty() || self.shutdown.load(Ordering::Relaxed)
    }

    /// Takes every pending remote wake and job.
    pub(crate) fn drain(&self, mut wake: impl FnMut(TaskKey), mut job: impl FnMut(RemoteJob)) {
        while let Some(v) = self.inbox.pop() {
            wake(TaskKey::unpack(v));
        }
        if !self.overflow.is_locked() {
            let spilled = std::mem::take(&mut *self.overflow.lock());
            for v in spilled {
                wake(TaskKey::unpack(v));
            }
        }
        while let Some(j) = self.jobs.pop() {
            job(j);
        }
    }
}

static REGISTRY: RwLock<Vec<Option<Arc<Remote>>>> = RwLock::new(Vec::new());

/// Creates and registers the remote half of a new worker.
pub(crate) fn register() -> std::io::Result<Arc<Remote>> {
    // SAFETY: eventfd has no memory preconditions.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that we own.
    let doorbell = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut reg = REGISTRY.write();
    let id = match reg.iter().position(Option::is_none) {
        Some(i) => i,
        None if reg.len() < u16::MAX as usize => {
            reg.push(None);
            reg.len() - 1
        }
        None => return Err(std::io::Error::from_raw_os_error(libc::EMFILE)),
    };
    let remote = Arc::new(Remote {
        id: id as u16,
        inbox: ArrayQueue::new(INBOX_CAP),
        overflow: Mutex::new(Vec::new()),
        jobs: ArrayQueue::new(INBOX_CAP),
        doorbell,
        sleeping: AtomicBool::new(false),
        shutdown: AtomicBool::new(false),
    });
    reg[id] = Some(remote.clone());
    Ok(remote)
}

/// Removes a worker from the registry; later wakes for it are ignored.
pub(crate) fn unregister(id: u16) {
    if let Some(slot) = REGISTRY.write().get_mut(id as usize) {
        *slot = None;
    }
}

/// The remote half of worker `id`, if it still exists.
pub(crate) fn remote(id: u16) -> Option<Arc<Remote>> {
    REGISTRY.read().get(id as usize).cloned().flatten()
}

fn wake_remote(key: TaskKey) {
    if let Some(r) = remote(key.worker) {
        r.push_wake(key.pack());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_u64() {
        let k = TaskKey {
            worker: 0xBEEF,
            gen: 0x1234,
            idx: 0xDEAD_0001,
        };
        assert_eq!(TaskKey::unpack(k.pack()), k);
        let d = TaskKey {
            worker: 3,
            gen: 0,
            idx: DRIVER,
        };
        assert_eq!(TaskKey::unpack(d.pack()), d);
    }

    #[test]
    fn waking_an_unknown_worker_is_harmless() {
        let k = TaskKey {
            worker: u16::MAX - 1,
            gen: 0,
            idx: 0,
        };
        let w = k.waker();
        w.wake_by_ref();
        let c = w.clone();
        drop(w);
        c.wake();
    }
}
