//! The shim's own I/O, made with raw system calls.
//!
//! The shim must never call a function it intercepts on its own behalf: the
//! call would come back into the interposer (and, before start-up is done,
//! into a real-function pointer not resolved yet). Everything the shim
//! needs for itself (writing a log line, opening the log file, mapping a
//! little memory for `execve`) goes through `libc::syscall`, which is not
//! intercepted and needs neither `malloc` nor `dlsym`.
//!
//! Guarantees: no function here allocates, takes a lock or panics, and
//! every one leaves the caller's `errno` as it found it (`libc::syscall`
//! sets `errno` on failure; the error is returned instead).

use libc::{c_int, c_long, c_void};
use std::ffi::CStr;

/// The calling thread's `errno`.
#[inline]
pub fn errno() -> c_int {
    // SAFETY: `__errno_location` returns the calling thread's errno slot,
    // valid for the thread's lifetime.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline]
pub fn set_errno(value: c_int) {
    // SAFETY: as in `errno`: the slot is the calling thread's own.
    unsafe { *libc::__errno_location() = value }
}

/// Runs `f` and restores `errno` afterwards: for the shim's own calls made
/// in the middle of an application's call.
#[inline]
pub fn keep_errno<T>(f: impl FnOnce() -> T) -> T {
    let saved = errno();
    let result = f();
    set_errno(saved);
    result
}

/// `Ok(return value)` or `Err(errno)` of a `libc::syscall` result.
fn check(ret: c_long) -> Result<c_long, c_int> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// `write(2)` of all of `buf` to `fd`, retrying on `EINTR` and short writes.
pub fn write_all(fd: c_int, mut buf: &[u8]) -> Result<(), c_int> {
    keep_errno(|| {
        while !buf.is_empty() {
            // SAFETY: `buf` is a valid readable slice of `buf.len()` bytes for
            // the duration of the call.
            let ret = unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), buf.len()) };
            match check(ret) {
                Ok(n) => buf = buf.get(n as usize..).unwrap_or_default(),
                Err(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
}

/// `openat(AT_FDCWD, path, flags, mode)`: the new fd or the errno.
pub fn open(path: &CStr, flags: c_int, mode: libc::mode_t) -> Result<c_int, c_int> {
    keep_errno(|| {
        // SAFETY: `path` is NUL-terminated and outlives the call.
        let ret = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags, mode) };
        check(ret).map(|fd| fd as c_int)
    })
}

/// `close(2)` of an fd the shim opened for itself (its entry, if it has
/// one as the shim's own, cleared first: see [`crate::fdtable::FdTable::clear_internal`]).
pub fn close(fd: c_int) {
    crate::fdtable::FDS.clear_internal(fd);
    keep_errno(|| {
        // SAFETY: closing an fd has no memory-safety preconditions.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    })
}

/// Blocks every signal a handler may take in the calling thread (not the
/// synchronous ones, nor glibc's own 32 and 33); returns the mask it had,
/// to sleep with and to restore ([`set_mask`]).
pub fn block_signals() -> libc::sigset_t {
    keep_errno(|| {
        // SAFETY: all-zero sigset_t values are empty sets; the kernel reads
        // and writes their first 8 bytes.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            for keep in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, 32, 33] {
                libc::sigdelset(&mut all, keep);
            }
            libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, &all, &mut old, 8usize);
            old
        }
    })
}

/// Sets the calling thread's signal mask to `mask`.
pub fn set_mask(mask: &libc::sigset_t) {
    keep_errno(|| {
        // SAFETY: `mask` is a valid set; no old set is asked for.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                mask as *const libc::sigset_t,
                std::ptr::null_mut::<libc::sigset_t>(),
                8usize,
            )
        };
    });
}

/// The calling process's id.
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_getpid) as libc::pid_t }
}

/// `len` bytes of fresh anonymous read-write memory, or `None`. Safe to call
/// in a `vfork` child, where `malloc` is not.
pub fn map(len: usize) -> Option<*mut u8> {
    keep_errno(|| {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        // SAFETY: an anonymous mapping at an address of the kernel's choosing
        // touches no existing memory.
        let ret = unsafe { libc::syscall(libc::SYS_mmap, 0usize, len, prot, flags, -1, 0usize) };
        check(ret).ok().map(|addr| addr as *mut u8)
    })
}

/// Unmaps memory returned by [`map`].
///
/// # Safety
///
/// `addr` and `len` are a mapping returned by [`map`], no longer used.
pub unsafe fn unmap(addr: *mut u8, len: usize) {
    keep_errno(|| {
        // SAFETY: the caller owns the mapping and no longer uses it.
        unsafe { libc::syscall(libc::SYS_munmap, addr as *mut c_void, len) };
    })
}

/// `ppoll(2)` on `fds` for at most `timeout` (`None`: no limit) with signal
/// mask `sigmask` (null: the thread's own): how many fds have events, or
/// the errno (`EINTR` when a signal handler ran).
///
/// # Safety
///
/// `sigmask` is null or points to a valid signal set.
pub unsafe fn ppoll(
    fds: &mut [libc::pollfd],
    timeout: Option<std::time::Duration>,
    sigmask: *const libc::sigset_t,
) -> Result<usize, c_int> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    keep_errno(|| {
        // SAFETY: `fds` is a live, writable array of `fds.len()` pollfds;
        // `tsp` is null or a live timespec; `sigmask` is null or the
        // program's valid mask (the caller's contract), 8 bytes for the
        // kernel.
        let ret =
            unsafe { libc::syscall(libc::SYS_ppoll, fds.as_mut_ptr(), fds.len(), tsp, sigmask, 8usize) };
        check(ret).map(|n| n as usize)
    })
}

/// A non-blocking, close-on-exec eventfd.
pub fn eventfd() -> Result<c_int, c_int> {
    keep_errno(|| {
        // SAFETY: eventfd2 has no memory arguments.
        let ret = unsafe { libc::syscall(libc::SYS_eventfd2, 0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        check(ret).map(|fd| fd as c_int)
    })
}

/// Empties an eventfd made by [`eventfd`].
pub fn drain(fd: c_int) {
    let mut v = [0u8; 8];
    keep_errno(|| {
        // SAFETY: `v` is 8 writable bytes, what an eventfd read takes.
        unsafe { libc::syscall(libc::SYS_read, fd, v.as_mut_ptr(), 8usize) };
    });
}

/// 16 random bytes from the kernel (zeros if it has none to give).
pub fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    keep_errno(|| {
        // SAFETY: `b` is 16 writable bytes.
        unsafe { libc::syscall(libc::SYS_getrandom, b.as_mut_ptr(), 16usize, 0) };
    });
    b
}

/// `fcntl(fd, F_GETFL)` / `F_SETFL`, raw.
pub fn set_nonblocking(fd: c_int, on: bool) -> Result<(), c_int> {
    keep_errno(|| {
        // SAFETY: F_GETFL and F_SETFL take no pointers.
        let fl = check(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) })? as c_int;
        let want = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        if want != fl {
            // SAFETY: as above.
            check(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFL, want) })?;
        }
        Ok(())
    })
}

/// `pread(2)`, raw.
pub fn pread(fd: c_int, buf: &mut [u8], offset: i64) -> Result<usize, c_int> {
    keep_errno(|| {
        // SAFETY: `buf` is writable for its length.
        let ret = unsafe { libc::syscall(libc::SYS_pread64, fd, buf.as_mut_ptr(), buf.len(), offset) };
        check(ret).map(|n| n as usize)
    })
}

/// `read(2)`, raw.
pub fn read(fd: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
    keep_errno(|| {
        // SAFETY: `buf` is writable for its length.
        let ret = unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
        check(ret).map(|n| n as usize)
    })
}

/// A write of `buf` to `fd` at its current position that never blocks
/// (`pwritev2` with `RWF_NOWAIT`: a pipe takes what fits, or `EAGAIN`),
/// whatever `fd`'s `O_NONBLOCK`.
pub fn write_nowait(fd: c_int, buf: &[u8]) -> Result<usize, c_int> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    keep_errno(|| {
        // SAFETY: `iov` describes `buf`, readable for its length; offset
        // -1 (low half; the high half 0) is "the current position". Every
        // argument is register-sized: a variadic `int` would leave the
        // upper half of its register undefined, and the kernel reads all
        // of it (unknown RWF_ flags: EOPNOTSUPP).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pwritev2,
                c_long::from(fd),
                &iov as *const libc::iovec,
                1 as c_long,
                -1 as c_long,
                0 as c_long,
                c_long::from(libc::RWF_NOWAIT),
            )
        };
        check(ret).map(|n| n as usize)
    })
}

/// `write(2)` once, raw: how much was written, or the errno.
pub fn write_once(fd: c_int, buf: &[u8]) -> Result<usize, c_int> {
    keep_errno(|| {
        // SAFETY: `buf` is readable for its length.
        let ret = unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), buf.len()) };
        check(ret).map(|n| n as usize)
    })
}

/// Bytes waiting to be read in `fd` (`FIONREAD`), raw.
pub fn fionread(fd: c_int) -> Result<usize, c_int> {
    let mut n: c_int = 0;
    keep_errno(|| {
        // SAFETY: FIONREAD writes one int, to `n`.
        check(unsafe { libc::syscall(libc::SYS_ioctl, fd, libc::FIONREAD, &mut n as *mut c_int) })
            .map(|_| n.max(0) as usize)
    })
}

/// A pipe's capacity in bytes (`F_GETPIPE_SZ`), raw.
pub fn pipe_size(fd: c_int) -> Result<usize, c_int> {
    keep_errno(|| {
        // SAFETY: F_GETPIPE_SZ takes no pointer.
        check(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETPIPE_SZ) }).map(|n| n as usize)
    })
}

/// The file type bits of `fd`'s `st_mode` and its file status flags
/// (`F_GETFL`), raw; `EBADF` for a closed fd.
pub fn kind_and_flags(fd: c_int) -> Result<(libc::mode_t, c_int), c_int> {
    keep_errno(|| {
        // SAFETY: an all-zero stat is a valid buffer for fstat to fill.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is writable.
        check(unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) })?;
        // SAFETY: F_GETFL takes no pointer.
        let fl = check(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) })?;
        Ok((st.st_mode & libc::S_IFMT, fl as c_int))
    })
}

/// The soft limit on open files (`RLIMIT_NOFILE`), raw; 1024 if unknown.
pub fn nofile_limit() -> usize {
    let mut lim = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    keep_errno(|| {
        // SAFETY: prlimit64 of this process (pid 0) writes one rlimit64.
        let r = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0 as c_long,
                libc::RLIMIT_NOFILE as c_long,
                std::ptr::null::<libc::rlimit64>(),
                &mut lim as *mut libc::rlimit64,
            )
        };
        if r == 0 {
            usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
        } else {
            1024
        }
    })
}

/// `lseek(2)`, raw.
pub fn lseek(fd: c_int, offset: i64, whence: c_int) -> Result<i64, c_int> {
    keep_errno(|| {
        // SAFETY: lseek takes no pointers.
        let ret = unsafe { libc::syscall(libc::SYS_lseek, fd, offset, whence) };
        check(ret)
    })
}

/// Whether a signal handler is installed without `SA_RESTART`: then an
/// interrupted blocking call must fail with `EINTR`, else it restarts (as
/// the kernel does; we cannot tell which signal ran, so any handler
/// without `SA_RESTART` counts).
pub fn some_handler_interrupts() -> bool {
    keep_errno(|| {
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP || crate::signals::is_internal(sig) {
                continue;
            }
            let mut old = [0u64; 4];
            // SAFETY: `old` is a writable kernel sigaction (handler, flags,
            // restorer, mask: 32 bytes); a null new action only reads.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    std::ptr::null::<u8>(),
                    old.as_mut_ptr(),
                    8usize,
                )
            };
            let [handler, flags, ..] = old;
            if r == 0 && handler > 1 && flags & libc::SA_RESTART as u64 == 0 {
                return true;
            }
        }
        false
    })
}

/// Sleeps while `word` holds `expected`, for at most `timeout` (a futex
/// wait; returns at once if the value already differs).
pub fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32, timeout: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    keep_errno(|| {
        // SAFETY: `word` is a live, aligned 32-bit atomic; `ts` a live
        // timespec; FUTEX_WAIT reads the word and sleeps.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                &ts as *const libc::timespec,
            )
        };
    });
}

/// Wakes one thread sleeping in [`futex_wait`] on `word`.
pub fn futex_wake(word: &std::sync::atomic::AtomicU32) {
    keep_errno(|| {
        // SAFETY: `word` is a live, aligned 32-bit atomic.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            )
        };
    });
}

/// Sends `fd`'s `O_ASYNC` signal to thread `tid` only (`F_SETOWN_EX`).
pub fn set_owner_thread(fd: c_int, tid: libc::pid_t) -> Result<(), c_int> {
    #[repr(C)]
    struct FOwnerEx {
        kind: c_int,
        pid: libc::pid_t,
    }
    const F_OWNER_TID: c_int = 0;
    // <linux/fcntl.h>: F_SETOWN_EX is 15 on every Linux architecture.
    const F_SETOWN_EX: c_int = 15;
    let owner = FOwnerEx {
        kind: F_OWNER_TID,
        pid: tid,
    };
    keep_errno(|| {
        // SAFETY: F_SETOWN_EX reads a struct f_owner_ex, which `owner` is.
        let r = unsafe { libc::syscall(libc::SYS_fcntl, fd, F_SETOWN_EX, &owner as *const FOwnerEx) };
        check(r).map(|_| ())
    })
}

/// The calling thread's id.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

/// How many times the kernel has preempted the calling thread (switched it
/// out while it could still run: `ru_nivcsw` of `getrusage(RUSAGE_THREAD)`).
pub fn preemptions() -> u64 {
    keep_errno(|| {
        // SAFETY: an all-zero rusage is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes one struct rusage, which `usage` is.
        let r = unsafe {
            libc::syscall(
                libc::SYS_getrusage,
                libc::RUSAGE_THREAD,
                &mut usage as *mut libc::rusage,
            )
        };
        if r < 0 {
            0
        } else {
            usage.ru_nivcsw.max(0) as u64
        }
    })
}
