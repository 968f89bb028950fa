//! wio: blocking calls performed by a bounded pool of OS threads while the
//! calling coroutine is parked, after libwire's `wire_io`.
//!
//! Inside a coroutine, `wio::read(fd, buf)` and friends hand the call to a
//! pool thread and park; the worker goes on running other coroutines and
//! the stack; the result (and its errno, read on the pool thread) comes back
//! with the wake-up. Outside a coroutine the same functions call libc
//! directly. The pool has a fixed number of threads (`ACCEL_WIO_THREADS`,
//! default 4) started on first use, and a bounded queue
//! (`ACCEL_WIO_QUEUE`, default 1024): when it is full the caller waits for
//! room. A thread is never created per request (the GNU Hurd thread storms).
//!
//! A call still queued can be abandoned by a signal or cancellation (it then
//! returns `EINTR`/`ECANCELED` and never runs); once a pool thread has
//! taken it, the coroutine waits for it to finish, since the thread may be
//! writing into the caller's buffer.

use std::collections::VecDeque;
use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::sched::Scheduler;
use crate::sync::WaitQueue;
use crate::wait::{wait_until, Wait, WaitError};

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const DONE: u8 = 2;
const ABANDONED: u8 = 3;

/// The part of a job that outlives the caller's frame if it is abandoned.
struct JobState {
    state: AtomicU8,
    waker: Waker,
}

/// A queued job: its state and the work, a pointer into the caller's frame
/// that is dereferenced only after the pool thread won `QUEUED → TAKEN`.
struct Job {
    state: Arc<JobState>,
    work: *mut (dyn FnMut() + Send),
}

// SAFETY: `work` points at a `dyn FnMut() + Send` that is called only by
// the one pool thread that took the job, while its owner waits for DONE.
unsafe impl Send for Job {}

struct Queue {
    jobs: VecDeque<Job>,
    cap: usize,
}

/// The process-wide pool.
struct Pool {
    queue: Mutex<Queue>,
    work_ready: Condvar,
    room: WaitQueue,
    threads: usize,
    stats: Stats,
}

/// Counters of the pool.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls handed to the pool.
    pub submitted: AtomicU64,
    /// Calls a pool thread finished.
    pub completed: AtomicU64,
    /// Calls abandoned while still queued.
    pub abandoned: AtomicU64,
    /// Times a caller found the queue full and waited.
    pub full: AtomicU64,
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let threads = env_usize("ACCEL_WIO_THREADS", 4).min(256);
        let cap = env_usize("ACCEL_WIO_QUEUE", 1024);
        for i in 0..threads {
            let spawned = std::thread::Builder::new()
                .name(format!("accel-wio-{i}"))
                .stack_size(256 * 1024)
                .spawn(pool_thread);
            if spawned.is_err() && i == 0 {
                // Not even one thread: callers fall back to direct calls.
                break;
            }
        }
        Pool {
            queue: Mutex::new(Queue {
                jobs: VecDeque::with_capacity(cap.min(4096)),
                cap,
            }),
            work_ready: Condvar::new(),
            room: WaitQueue::new(),
            threads,
            stats: Stats::default(),
        }
    })
}

fn pool_thread() {
    let p = pool();
    loop {
        let job = {
            let mut q = p.queue.lock();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                p.work_ready.wait(&mut q);
            }
        };
        p.room.notify_one();
        if job
            .state
            .state
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue; // abandoned while queued: its frame may be gone
        }
        // SAFETY: we won QUEUED → TAKEN, so the owner is parked waiting for
        // DONE and its frame (holding the closure) stays put until then.
        unsafe { (*job.work)() };
        let waker = job.state.waker.clone();
        job.state.state.store(DONE, Ordering::Release);
        p.stats.completed.fetch_add(1, Ordering::Relaxed);
        waker.wake();
    }
}

/// The pool's counters (starts the pool if it is not running).
pub fn stats() -> &'static Stats {
    &pool().stats
}

/// Calls waiting in the queue for a pool thread.
pub fn queued() -> usize {
    pool().queue.lock().jobs.len()
}

/// Number of pool threads.
pub fn threads() -> usize {
    pool().threads
}

/// Runs `f` on a pool thread if the caller is a coroutine (parking it
/// meanwhile), or directly otherwise. `Err` only if a signal or
/// cancellation abandoned the call before it started.
pub fn run_blocking<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, WaitError> {
    let Some(sched) = Scheduler::current() else {
        return Ok(f());
    };
    let Some((_, key)) = sched.current_task() else {
        return Ok(f());
    };
    let p = pool();
    if p.threads == 0 {
        return Ok(f());
    }
    let mut f = Some(f);
    let mut out: Option<R> = None;
    let mut work = || {
        if let Some(f) = f.take() {
            out = Some(f());
        }
    };
    let work_dyn: &mut (dyn FnMut() + Send) = &mut work;
    // SAFETY: only the lifetime is erased. The pointer is dereferenced by a
    // pool thread only after it wins QUEUED → TAKEN, and from then on this
    // frame waits (uninterruptibly) for DONE before it returns.
    let work_ptr: *mut (dyn FnMut() + Send + 'static) = unsafe { std::mem::transmute(work_dyn) };
    let state = Arc::new(JobState {
        state: AtomicU8::new(QUEUED),
        waker: key.waker(),
    });
    // Submit, waiting for room while the queue is full.
    loop {
        let mut q = p.queue.lock();
        if q.jobs.len() < q.cap {
            q.jobs.push_back(Job {
                state: state.clone(),
                work: work_ptr,
            });
            drop(q);
            p.work_ready.notify_one();
            p.stats.submitted.fetch_add(1, Ordering::Relaxed);
            break;
        }
        drop(q);
        p.stats.full.fetch_add(1, Ordering::Relaxed);
        p.room.wait(Wait::forever())?;
    }
    let r = wait_until(Wait::forever(), |_| match state.state.load(Ordering::Acquire) {
        DONE => Poll::Ready(()),
        _ => Poll::Pending,
    });
    if let Err(e) = r {
        if state
            .state
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            p.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        // Already running: wait it out; the result stands.
        let _ = wait_until(Wait::uninterruptible(), |_| {
            match state.state.load(Ordering::Acquire) {
                DONE => Poll::Ready(()),
                _ => Poll::Pending,
            }
        });
    }
    Ok(out.expect("the job ran"))
}

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn call(f: impl FnOnce() -> isize + Send) -> io::Result<usize> {
    run_blocking(|| cvt(f())).unwrap_or_else(|e| Err(e.into()))
}

/// `open(2)`.
pub fn open(path: &CStr, flags: i32, mode: libc::mode_t) -> io::Result<RawFd> {
    // SAFETY: path is a valid C string.
    call(|| unsafe { libc::open(path.as_ptr(), flags, mode as libc::c_uint) } as isize).map(|fd| fd as RawFd)
}

/// `openat(2)`.
pub fn openat(dirfd: RawFd, path: &CStr, flags: i32, mode: libc::mode_t) -> io::Result<RawFd> {
    // SAFETY: path is a valid C string.
    call(|| unsafe { libc::openat(dirfd, path.as_ptr(), flags, mode as libc::c_uint) } as isize)
        .map(|fd| fd as RawFd)
}

/// `close(2)`.
pub fn close(fd: RawFd) -> io::Result<()> {
    // SAFETY: closing a descriptor touches no memory of ours.
    call(|| unsafe { libc::close(fd) } as isize).map(drop)
}

/// `read(2)`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let (p, n) = (buf.as_mut_ptr() as usize, buf.len());
    // SAFETY: buf is valid for n bytes and borrowed for the whole call.
    call(move || unsafe { libc::read(fd, p as *mut libc::c_void, n) })
}

/// `pread(2)`.
pub fn pread(fd: RawFd, buf: &mut [u8], offset: i64) -> io::Result<usize> {
    let (p, n) = (buf.as_mut_ptr() as usize, buf.len());
    // SAFETY: buf is valid for n bytes and borrowed for the whole call.
    call(move || unsafe { libc::pread(fd, p as *mut libc::c_void, n, offset) })
}

/// `write(2)`.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let (p, n) = (buf.as_ptr() as usize, buf.len());
    // SAFETY: buf is valid for n bytes and borrowed for the whole call.
    call(move || unsafe { libc::write(fd, p as *const libc::c_void, n) })
}

/// `pwrite(2)`.
pub fn pwrite(fd: RawFd, buf: &[u8], offset: i64) -> io::Result<usize> {
    let (p, n) = (buf.as_ptr() as usize, buf.len());
    // SAFETY: buf is valid for n bytes and borrowed for the whole call.
    call(move || unsafe { libc::pwrite(fd, p as *const libc::c_void, n, offset) })
}

/// `fsync(2)`.
pub fn fsync(fd: RawFd) -> io::Result<()> {
    // SAFETY: no memory is passed.
    call(|| unsafe { libc::fsync(fd) } as isize).map(drop)
}

/// `fdatasync(2)`.
pub fn fdatasync(fd: RawFd) -> io::Result<()> {
    // SAFETY: no memory is passed.
    call(|| unsafe { libc::fdatasync(fd) } as isize).map(drop)
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: RawFd, len: i64) -> io::Result<()> {
    // SAFETY: no memory is passed.
    call(|| unsafe { libc::ftruncate(fd, len) } as isize).map(drop)
}

/// `fallocate(2)`.
pub fn fallocate(fd: RawFd, mode: i32, offset: i64, len: i64) -> io::Result<()> {
    // SAFETY: no memory is passed.
    call(|| unsafe { libc::fallocate(fd, mode, offset, len) } as isize).map(drop)
}

/// `fstat(2)`.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let p = &raw mut st as usize;
    // SAFETY: p points at `st`, alive for the whole call.
    call(move || unsafe { libc::fstat(fd, p as *mut libc::stat) } as isize)?;
    Ok(st)
}

/// `stat(2)`.
pub fn stat(path: &CStr) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let p = &raw mut st as usize;
    // SAFETY: path is a valid C string; p points at `st`.
    call(move || unsafe { libc::stat(path.as_ptr(), p as *mut libc::stat) } as isize)?;
    Ok(st)
}

/// The list `getaddrinfo(3)` returned; freed with `freeaddrinfo` on drop.
#[derive(Debug)]
pub struct AddrInfo {
    head: *mut libc::addrinfo,
}

// SAFETY: the list is owned exclusively and freed once.
unsafe impl Send for AddrInfo {}

impl AddrInfo {
    /// The first entry (the list is never empty on success).
    pub fn as_ptr(&self) -> *const libc::addrinfo {
        self.head
    }

    /// Gives up ownership (the caller must call `freeaddrinfo`).
    pub fn into_raw(self) -> *mut libc::addrinfo {
        let p = self.head;
        std::mem::forget(self);
        p
    }

    /// The socket addresses in the list, in order.
    pub fn addrs(&self) -> Vec<std::net::SocketAddr> {
        let mut out = Vec::new();
        let mut p = self.head;
        while !p.is_null() {
            // SAFETY: p walks the list getaddrinfo built, which we own.
            let ai = unsafe { &*p };
            if !ai.ai_addr.is_null() {
                // SAFETY: ai_addr points at ai_addrlen bytes of address.
                if let Some(a) = unsafe { sockaddr_to_std(ai.ai_addr, ai.ai_addrlen) } {
                    out.push(a);
                }
            }
            p = ai.ai_next;
        }
        out
    }
}

/// # Safety
/// `sa` must point at `len` readable bytes of socket address.
unsafe fn sockaddr_to_std(sa: *const libc::sockaddr, len: libc::socklen_t) -> Option<std::net::SocketAddr> {
    // SAFETY: the caller guarantees sa is readable; the family field is first.
    let family = unsafe { (*sa).sa_family } as i32;
    match family {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family and length say it is a sockaddr_in.
            let sin = unsafe { &*(sa as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some((ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: family and length say it is a sockaddr_in6.
            let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some((ip, u16::from_be(sin6.sin6_port)).into())
        }
        _ => None,
    }
}

impl Drop for AddrInfo {
    fn drop(&mut self) {
        // SAFETY: head came from a successful getaddrinfo and is freed once.
        unsafe { libc::freeaddrinfo(self.head) };
    }
}

/// `getaddrinfo(3)`; the error is the `EAI_*` code (with errno for
/// `EAI_SYSTEM`, as `(code, errno)`).
pub fn getaddrinfo(
    node: Option<&CStr>,
    service: Option<&CStr>,
    hints: Option<&libc::addrinfo>,
) -> Result<AddrInfo, (i32, i32)> {
    let node = node.map_or(0, |c| c.as_ptr() as usize);
    let service = service.map_or(0, |c| c.as_ptr() as usize);
    let hints = hints.map_or(0, |h| h as *const libc::addrinfo as usize);
    let r = run_blocking(move || {
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        // SAFETY: the pointers are null or valid for the whole call (the
        // caller's borrows outlive it); res is a valid out-pointer.
        let rc = unsafe {
            libc::getaddrinfo(
                node as *const libc::c_char,
                service as *const libc::c_char,
                hints as *const libc::addrinfo,
                &mut res,
            )
        };
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        (rc, errno, res as usize)
    });
    match r {
        Ok((0, _, res)) => Ok(AddrInfo {
            head: res as *mut libc::addrinfo,
        }),
        Ok((rc, errno, _)) => Err((rc, errno)),
        Err(e) => Err((libc::EAI_SYSTEM, e.errno())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{block_on, spawn, time, yield_now, Signal};
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::atomic::AtomicU32;
    use std::time::{Duration, Instant};

    /// The pool is process-wide and tests run in parallel: a test that
    /// fills every pool thread on purpose, or counts the pool's
    /// submissions, takes this exclusively; the others that use the pool
    /// share it, so none waits behind another's deliberately blocked calls
    /// or adds to another's count.
    static POOL: std::sync::RwLock<()> = std::sync::RwLock::new(());

    fn shared_pool() -> std::sync::RwLockReadGuard<'static, ()> {
        POOL.read().unwrap_or_else(|e| e.into_inner())
    }

    fn exclusive_pool() -> std::sync::RwLockWriteGuard<'static, ()> {
        POOL.write().unwrap_or_else(|e| e.into_inner())
    }

    fn pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        (fds[0], fds[1])
    }

    #[test]
    fn outside_a_coroutine_calls_go_straight_to_libc() {
        // Alone: the count of submissions is process-wide.
        let _pool = exclusive_pool();
        let before = stats().submitted.load(Ordering::Relaxed);
        let (r, w) = pipe();
        assert_eq!(write(w, b"abc").unwrap(), 3);
        let mut b = [0u8; 8];
        assert_eq!(read(r, &mut b).unwrap(), 3);
        assert_eq!(&b[..3], b"abc");
        close(r).unwrap();
        close(w).unwrap();
        assert_eq!(
            stats().submitted.load(Ordering::Relaxed),
            before,
            "no pool hop outside coroutines"
        );
        assert_eq!(read(-1, &mut b).unwrap_err().raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn a_worker_keeps_running_while_a_pool_thread_blocks() {
        let _pool = shared_pool();
        // A read on a pipe that a thread fills once the worker has ticked
        // 10 times while the read blocked (or after 10 s: the test then
        // fails). It used to be filled 50 ms later, and a loaded machine
        // ran only 6 ticks of 1 ms in those 50 ms.
        let (r, w) = pipe();
        let ticks = Arc::new(AtomicU32::new(0));
        let seen = ticks.clone();
        let filler = std::thread::spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(10);
            while seen.load(Ordering::Acquire) < 10 && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(1));
            }
            // SAFETY: writing from a valid buffer to our pipe.
            unsafe { libc::write(w, b"late".as_ptr().cast(), 4) };
            w
        });
        let t2 = ticks.clone();
        let (n, data) = block_on(move || {
            let done = Rc::new(Cell::new(false));
            let d2 = done.clone();
            // Runs only once this coroutine is parked in the read below.
            let ticker = spawn("ticker", move || {
                while !d2.get() {
                    t2.fetch_add(1, Ordering::Release);
                    time::sleep(Duration::from_millis(1)).unwrap();
                }
            });
            let mut buf = [0u8; 16];
            let n = read(r, &mut buf).unwrap();
            done.set(true);
            ticker.join().unwrap();
            (n, buf[..n].to_vec())
        });
        assert_eq!((n, data.as_slice()), (4, &b"late"[..]));
        let ticks = ticks.load(Ordering::Acquire);
        assert!(
            ticks >= 10,
            "the worker ran only {ticks} ticks during a blocking read (10 s)"
        );
        close(r).unwrap();
        close(filler.join().unwrap()).unwrap();
    }

    #[test]
    fn file_calls_round_trip_through_the_pool() {
        let _pool = shared_pool();
        let dir = std::env::temp_dir().join(format!("accel-wio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = std::ffi::CString::new(dir.join("f").to_str().unwrap()).unwrap();
        block_on(move || {
            let fd = open(&path, libc::O_CREAT | libc::O_RDWR | libc::O_TRUNC, 0o600).unwrap();
            assert_eq!(pwrite(fd, b"hello world", 0).unwrap(), 11);
            fsync(fd).unwrap();
            fdatasync(fd).unwrap();
            let mut b = [0u8; 5];
            assert_eq!(pread(fd, &mut b, 6).unwrap(), 5);
            assert_eq!(&b, b"world");
            ftruncate(fd, 5).unwrap();
            assert_eq!(fstat(fd).unwrap().st_size, 5);
            fallocate(fd, 0, 0, 4096).unwrap();
            assert_eq!(stat(&path).unwrap().st_size, 4096);
            close(fd).unwrap();
            let missing = std::ffi::CString::new("/nonexistent/accel").unwrap();
            assert_eq!(
                open(&missing, libc::O_RDONLY, 0).unwrap_err().raw_os_error(),
                Some(libc::ENOENT)
            );
            let dfd = open(c"/", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
            let tmp = openat(dfd, c"tmp", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
            close(tmp).unwrap();
            close(dfd).unwrap();
        });
        assert!(stats().submitted.load(Ordering::Relaxed) >= 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn getaddrinfo_resolves_localhost() {
        let _pool = shared_pool();
        let addrs = block_on(|| {
            getaddrinfo(Some(c"127.0.0.1"), Some(c"80"), None)
                .unwrap()
                .addrs()
        });
        assert!(addrs.contains(&"127.0.0.1:80".parse().unwrap()));
        let bad = block_on(|| getaddrinfo(Some(c"127.0.0.1"), Some(c"no-such-service-xyz"), None).err());
        assert!(bad.is_some());
    }

    #[test]
    fn a_signal_abandons_a_call_still_queued_never_one_running() {
        let _pool = exclusive_pool();
        // Fill every pool thread with a slow read, then queue one more and
        // interrupt it: it must come back EINTR without ever running.
        let n = threads();
        let pipes: Vec<_> = (0..n).map(|_| pipe()).collect();
        let writers: Vec<RawFd> = pipes.iter().map(|p| p.1).collect();
        let readers: Vec<RawFd> = pipes.iter().map(|p| p.0).collect();
        let (res, ran) = block_on(move || {
            let hs: Vec<_> = readers
                .iter()
                .map(|&r| {
                    spawn("slow", move || {
                        let mut b = [0u8; 1];
                        read(r, &mut b)
                    })
                })
                .collect();
            // Let every slow read reach a pool thread: all n threads are then
            // blocked, so the next call has to stay queued.
            for _ in 0..n {
                yield_now();
            }
            let give_up = time::now_ns() + 10_000_000_000;
            while queued() > 0 {
                assert!(
                    time::now_ns() < give_up,
                    "the slow reads never reached the pool threads"
                );
                time::sleep(Duration::from_millis(1)).unwrap();
            }
            let sig = Signal::new();
            let ran = Rc::new(Cell::new(false));
            let (s2, r2) = (sig.clone(), ran.clone());
            let ran_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let rf = ran_flag.clone();
            let victim = spawn("victim", move || {
                let _sub = s2.subscribe().unwrap();
                let r = run_blocking(move || rf.store(true, Ordering::SeqCst));
                r2.set(true);
                r
            });
            time::sleep(Duration::from_millis(5)).unwrap();
            sig.fire();
            let res = victim.join().unwrap();
            assert!(ran.get());
            for &w in &writers {
                // SAFETY: releasing the slow reads.
                unsafe { libc::write(w, b"x".as_ptr().cast(), 1) };
            }
            for h in hs {
                assert_eq!(h.join().unwrap().unwrap(), 1);
            }
            (res, ran_flag.load(Ordering::SeqCst))
        });
        assert_eq!(res, Err(WaitError::Interrupted));
        assert!(!ran, "an abandoned call must never run");
        for (r, w) in pipes {
            close(r).unwrap();
            close(w).unwrap();
        }
    }
}
