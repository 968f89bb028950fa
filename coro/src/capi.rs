//! The C API, declared in `coro/include/accel_coro.h`.
//!
//! Conventions: functions that wait return 0 (or a count) on success and a
//! negative errno on failure (`-EINTR` interrupted by a subscribed signal,
//! `-ETIMEDOUT`, `-ECANCELED`, `-EPIPE` closed channel); the `accel_wio_*`
//! calls behave like the libc calls they replace (-1 and `errno`). Objects
//! are opaque pointers created by `*_new` and released by `*_free`. No
//! function unwinds into C: a Rust panic inside one aborts the process
//! (`panic = "abort"`), and none is expected: every error is a return value.

#![allow(clippy::missing_safety_doc)] // each extern fn documents its contract in the header

use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::RawFd;
use std::time::Duration;

use crate::sync::{self, Lock, Receiver, RecvError, SendError, Sender};
use crate::task::{self, JoinHandle};
use crate::wait::{Wait, WaitError};
use crate::{reactor::Readiness, signal, wio, Config, Worker};

fn neg(e: WaitError) -> c_int {
    -e.errno()
}

fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

fn io_ret(r: std::io::Result<usize>) -> isize {
    match r {
        Ok(n) => n as isize,
        Err(e) => {
            set_errno(e.raw_os_error().unwrap_or(libc::EIO));
            -1
        }
    }
}

/// A spawned task (`accel_task_t`).
pub struct CTask(JoinHandle<usize>);

/// C function pointer of a coroutine body.
pub type CTaskFn = extern "C" fn(*mut c_void) -> *mut c_void;

/// A raw pointer we promise to hand to the C function unchanged.
#[derive(Clone, Copy)]
struct Arg(*mut c_void);
// SAFETY: the pointer is only passed back to C, which owns its meaning.
unsafe impl Send for Arg {}

/// `int accel_run(void *(*fn)(void *), void *arg, void **result)`
#[no_mangle]
pub unsafe extern "C" fn accel_run(f: CTaskFn, arg: *mut c_void, result: *mut *mut c_void) -> c_int {
    let w = match Worker::new(Config::default()) {
        Ok(w) => w,
        Err(e) => return -e.raw_os_error().unwrap_or(libc::EIO),
    };
    let a = Arg(arg);
    let h = match task::try_spawn("main", move || {
        let a = a;
        f(a.0) as usize
    }) {
        Ok(h) => h,
        Err(e) => return -e.raw_os_error().unwrap_or(libc::ENOMEM),
    };
    if let Err(e) = w.run() {
        return -e.raw_os_error().unwrap_or(libc::EIO);
    }
    match h.join() {
        Ok(v) => {
            if !result.is_null() {
                // SAFETY: the caller passed a valid out-pointer or NULL.
                unsafe { *result = v as *mut c_void };
            }
            0
        }
        Err(_) => -libc::ECANCELED,
    }
}

/// `accel_task_t *accel_spawn(const char *name, void *(*fn)(void *), void *arg)`
#[no_mangle]
pub unsafe extern "C" fn accel_spawn(name: *const c_char, f: CTaskFn, arg: *mut c_void) -> *mut CTask {
    let name = if name.is_null() {
        "c-task".to_owned()
    } else {
        // SAFETY: the caller passes a NUL-terminated string.
        unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
    };
    let a = Arg(arg);
    match task::try_spawn(name, move || {
        let a = a;
        f(a.0) as usize
    }) {
        Ok(h) => Box::into_raw(Box::new(CTask(h))),
        Err(e) => {
            set_errno(e.raw_os_error().unwrap_or(libc::ENOMEM));
            std::ptr::null_mut()
        }
    }
}

/// `int accel_join(accel_task_t *t, void **result)`: frees `t`.
#[no_mangle]
pub unsafe extern "C" fn accel_join(t: *mut CTask, result: *mut *mut c_void) -> c_int {
    if t.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: t came from accel_spawn and is consumed once.
    let t = unsafe { Box::from_raw(t) };
    match t.0.join() {
        Ok(v) => {
            if !result.is_null() {
                // SAFETY: valid out-pointer or NULL.
                unsafe { *result = v as *mut c_void };
            }
            0
        }
        Err(_) => -libc::ECANCELED,
    }
}

/// `void accel_cancel(accel_task_t *t)`
#[no_mangle]
pub unsafe extern "C" fn accel_cancel(t: *const CTask) {
    // SAFETY: t is NULL or a live task handle.
    if let Some(t) = unsafe { t.as_ref() } {
        t.0.cancel();
    }
}

/// `void accel_detach(accel_task_t *t)`
#[no_mangle]
pub unsafe extern "C" fn accel_detach(t: *mut CTask) {
    if !t.is_null() {
        // SAFETY: t came from accel_spawn and is consumed once.
        drop(unsafe { Box::from_raw(t) });
    }
}

/// `void accel_yield(void)`
#[no_mangle]
pub extern "C" fn accel_yield() {
    task::yield_now();
}

/// `int accel_sleep_ns(uint64_t ns)`
#[no_mangle]
pub extern "C" fn accel_sleep_ns(ns: u64) -> c_int {
    crate::time::sleep(Duration::from_nanos(ns)).map_or_else(neg, |_| 0)
}

/// `int accel_wait_fd(int fd, uint32_t events, int64_t timeout_ns)`:
/// returns the ready `EPOLL*` bits, or a negative errno.
#[no_mangle]
pub extern "C" fn accel_wait_fd(fd: RawFd, events: u32, timeout_ns: i64) -> c_int {
    let timeout = (timeout_ns >= 0).then(|| Duration::from_nanos(timeout_ns as u64));
    match crate::wait::wait_fd(fd, Readiness(events), timeout) {
        Ok(r) => r.0 as c_int,
        Err(e) => neg(e),
    }
}

/// A channel of pointers (`accel_chan_t`).
pub struct CChan {
    tx: parking_lot::Mutex<Option<Sender<usize>>>,
    rx: Receiver<usize>,
}

/// `accel_chan_t *accel_chan_new(size_t cap)`: 0 = rendezvous.
#[no_mangle]
pub extern "C" fn accel_chan_new(cap: usize) -> *mut CChan {
    let (tx, rx) = if cap == 0 {
        sync::rendezvous()
    } else {
        sync::bounded(cap)
    };
    Box::into_raw(Box::new(CChan {
        tx: parking_lot::Mutex::new(Some(tx)),
        rx,
    }))
}

/// `int accel_chan_send(accel_chan_t *c, void *msg)`
#[no_mangle]
pub unsafe extern "C" fn accel_chan_send(c: *const CChan, msg: *mut c_void) -> c_int {
    // SAFETY: c is NULL or a live channel.
    let Some(c) = (unsafe { c.as_ref() }) else {
        return -libc::EINVAL;
    };
    let Some(tx) = c.tx.lock().clone() else {
        return -libc::EPIPE;
    };
    match tx.send(msg as usize) {
        Ok(()) => 0,
        Err(SendError::Wait(e, _)) => neg(e),
        Err(_) => -libc::EPIPE,
    }
}

/// `int accel_chan_recv(accel_chan_t *c, void **msg)`
#[no_mangle]
pub unsafe extern "C" fn accel_chan_recv(c: *const CChan, msg: *mut *mut c_void) -> c_int {
    // SAFETY: c is NULL or a live channel.
    let Some(c) = (unsafe { c.as_ref() }) else {
        return -libc::EINVAL;
    };
    match c.rx.recv() {
        Ok(v) => {
            if !msg.is_null() {
                // SAFETY: valid out-pointer or NULL.
                unsafe { *msg = v as *mut c_void };
            }
            0
        }
        Err(RecvError::Wait(e)) => neg(e),
        Err(_) => -libc::EPIPE,
    }
}

/// `void accel_chan_close(accel_chan_t *c)`: no more sends; receivers drain.
#[no_mangle]
pub unsafe extern "C" fn accel_chan_close(c: *const CChan) {
    // SAFETY: c is NULL or a live channel.
    if let Some(c) = unsafe { c.as_ref() } {
        c.tx.lock().take();
    }
}

/// `void accel_chan_free(accel_chan_t *c)`
#[no_mangle]
pub unsafe extern "C" fn accel_chan_free(c: *mut CChan) {
    if !c.is_null() {
        // SAFETY: c came from accel_chan_new and is freed once.
        drop(unsafe { Box::from_raw(c) });
    }
}

/// A lock (`accel_lock_t`).
pub struct CLock(Lock<()>);

/// `accel_lock_t *accel_lock_new(void)`
#[no_mangle]
pub extern "C" fn accel_lock_new() -> *mut CLock {
    Box::into_raw(Box::new(CLock(Lock::new(()))))
}

/// `int accel_lock(accel_lock_t *l)`: interruptible; 0 or -EINTR/-ECANCELED.
#[no_mangle]
pub unsafe extern "C" fn accel_lock(l: *const CLock) -> c_int {
    // SAFETY: l is NULL or a live lock.
    let Some(l) = (unsafe { l.as_ref() }) else {
        return -libc::EINVAL;
    };
    match l.0.lock_with(Wait::forever()) {
        Ok(g) => {
            std::mem::forget(g); // released by accel_unlock
            0
        }
        Err(e) => neg(e),
    }
}

/// `void accel_unlock(accel_lock_t *l)`
#[no_mangle]
pub unsafe extern "C" fn accel_unlock(l: *const CLock) {
    // SAFETY: l is NULL or a live lock held by the caller.
    if let Some(l) = unsafe { l.as_ref() } {
        l.0.force_unlock();
    }
}

/// `void accel_lock_free(accel_lock_t *l)`
#[no_mangle]
pub unsafe extern "C" fn accel_lock_free(l: *mut CLock) {
    if !l.is_null() {
        // SAFETY: l came from accel_lock_new and is freed once.
        drop(unsafe { Box::from_raw(l) });
    }
}

/// A signal (`accel_signal_t`).
pub struct CSignal(signal::Signal);
/// A subscription (`accel_sub_t`).
pub struct CSub(#[allow(dead_code)] signal::Subscription);

/// `accel_signal_t *accel_signal_new(void)`
#[no_mangle]
pub extern "C" fn accel_signal_new() -> *mut CSignal {
    Box::into_raw(Box::new(CSignal(signal::Signal::new())))
}

/// `accel_sub_t *accel_signal_subscribe(accel_signal_t *s)`: NULL outside a coroutine.
#[no_mangle]
pub unsafe extern "C" fn accel_signal_subscribe(s: *const CSignal) -> *mut CSub {
    // SAFETY: s is NULL or a live signal.
    match unsafe { s.as_ref() }.and_then(|s| s.0.subscribe()) {
        Some(sub) => Box::into_raw(Box::new(CSub(sub))),
        None => std::ptr::null_mut(),
    }
}

/// `void accel_signal_unsubscribe(accel_sub_t *sub)`
#[no_mangle]
pub unsafe extern "C" fn accel_signal_unsubscribe(sub: *mut CSub) {
    if !sub.is_null() {
        // SAFETY: sub came from accel_signal_subscribe and is freed once.
        drop(unsafe { Box::from_raw(sub) });
    }
}

/// `void accel_signal_fire(accel_signal_t *s)`
#[no_mangle]
pub unsafe extern "C" fn accel_signal_fire(s: *const CSignal) {
    // SAFETY: s is NULL or a live signal.
    if let Some(s) = unsafe { s.as_ref() } {
        s.0.fire();
    }
}

/// `void accel_signal_free(accel_signal_t *s)`
#[no_mangle]
pub unsafe extern "C" fn accel_signal_free(s: *mut CSignal) {
    if !s.is_null() {
        // SAFETY: s came from accel_signal_new and is freed once.
        drop(unsafe { Box::from_raw(s) });
    }
}

/// `int accel_wio_open(const char *path, int flags, mode_t mode)`
#[no_mangle]
pub unsafe extern "C" fn accel_wio_open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    if path.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let p = unsafe { CStr::from_ptr(path) };
    io_ret(wio::open(p, flags, mode).map(|fd| fd as usize)) as c_int
}

/// `int accel_wio_close(int fd)`
#[no_mangle]
pub extern "C" fn accel_wio_close(fd: c_int) -> c_int {
    io_ret(wio::close(fd).map(|_| 0)) as c_int
}

/// `ssize_t accel_wio_read(int fd, void *buf, size_t n)`
#[no_mangle]
pub unsafe extern "C" fn accel_wio_read(fd: c_int, buf: *mut c_void, n: usize) -> isize {
    if buf.is_null() && n > 0 {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: the caller passes a buffer valid for n bytes.
    let b = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), n) };
    io_ret(wio::read(fd, b))
}

/// `ssize_t accel_wio_write(int fd, const void *buf, size_t n)`
#[no_mangle]
pub unsafe extern "C" fn accel_wio_write(fd: c_int, buf: *const c_void, n: usize) -> isize {
    if buf.is_null() && n > 0 {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: the caller passes a buffer valid for n bytes.
    let b = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) };
    io_ret(wio::write(fd, b))
}

/// `ssize_t accel_wio_pread(int fd, void *buf, size_t n, off_t off)`
#[no_mangle]
pub unsafe extern "C" fn accel_wio_pread(fd: c_int, buf: *mut c_void, n: usize, off: i64) -> isize {
    if buf.is_null() && n > 0 {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: the caller passes a buffer valid for n bytes.
    let b = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), n) };
    io_ret(wio::pread(fd, b, off))
}

/// `ssize_t accel_wio_pwrite(int fd, const void *buf, size_t n, off_t off)`
#[no_mangle]
pub unsafe extern "C" fn accel_wio_pwrite(fd: c_int, buf: *const c_void, n: usize, off: i64) -> isize {
    if buf.is_null() && n > 0 {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: the caller passes a buffer valid for n bytes.
    let b = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) };
    io_ret(wio::pwrite(fd, b, off))
}

/// `int accel_wio_fsync(int fd)`
#[no_mangle]
pub extern "C" fn accel_wio_fsync(fd: c_int) -> c_int {
    io_ret(wio::fsync(fd).map(|_| 0)) as c_int
}

/// `int accel_wio_fstat(int fd, struct stat *st)`
#[no_mangle]
pub unsafe extern "C" fn accel_wio_fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    if st.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    match wio::fstat(fd) {
        Ok(s) => {
            // SAFETY: st is a valid out-pointer.
            unsafe { *st = s };
            0
        }
        Err(e) => io_ret(Err(e)) as c_int,
    }
}
