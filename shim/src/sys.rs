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

/// `close(2)` of an fd the shim opened for itself.
pub fn close(fd: c_int) {
    keep_errno(|| {
        // SAFETY: closing an fd has no memory-safety preconditions.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    })
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
