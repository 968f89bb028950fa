//! Data and control on accelerated sockets: the `read`/`recv` family, the
//! `write`/`send` family, `sendfile`, `shutdown`, socket options, `fcntl`
//! and `ioctl`, and the address queries.
//!
//! Blocking follows the program's view of the socket (`O_NONBLOCK`,
//! `MSG_DONTWAIT`): a call that would block drives the worker until it can
//! go on (see `wait::block`), up to `SO_RCVTIMEO`/`SO_SNDTIMEO`
//! (`EAGAIN` then, as from the kernel). A blocking send returns when all
//! of it is queued; a receive as soon as there is data (all of it with
//! `MSG_WAITALL`). `EPIPE` raises `SIGPIPE` unless `MSG_NOSIGNAL`. A signal
//! ends the wait with `EINTR` unless every handler has `SA_RESTART`.
//!
//! Every receive polls the stack first, so data that arrived is seen;
//! every send polls after, so queued data leaves at once.

use crate::engine::stacks::{self, Q};
use crate::engine::worker::{self};
use crate::fdtable::{Entry, State};
use crate::interpose::skeleton::{Dispatch, Errno};
use crate::logging::log;
use crate::sockets::block::{block, block_registered, WaitEnd, WaitOn};
use crate::sockets::sock::{Kind, Sock};
use crate::sockets::sockaddr as sa;
use crate::sockets::socket::{self, conn_of, deadline, fail, ok, se, sock_mut, Answer};
use crate::sockets::sockopt;
use crate::sockets::table::Core;
use crate::sockets::tcpinfo;
use crate::sys;
use accel_stack::iface::TcpHandle;
use accel_stack::tcp::SockOpt;
use core::net::SocketAddrV4;
use libc::{c_int, c_void, iovec, sockaddr, socklen_t};
use std::time::Duration;

/// The program's buffers, as iovecs (unchecked).
pub type Iov<'a> = &'a [iovec];

/// `len` bytes at `base` as a slice (empty for a zero length).
///
/// # Safety
///
/// `base` is valid for reading and writing `len` bytes, or `len` is 0.
unsafe fn buf<'a>(base: *mut c_void, len: usize) -> &'a mut [u8] {
    if len == 0 || base.is_null() {
        return &mut [];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(base.cast(), len) }
}

/// One try at reading a TCP connection into `iov`.
///
/// # Safety
///
/// `iov` describes buffers valid for writing.
unsafe fn tcp_read(
    core: &mut Core,
    entry: Entry,
    iov: Iov<'_>,
    peek: bool,
    discard: bool,
) -> Result<usize, Errno> {
    let (q, h) = conn_of(core, entry)?;
    // Held by another thread: not waited for under the sockets' lock (the
    // wait lets that go first, then tries again: `block`).
    let stack = match stacks::lock_or_mark_busy(q) {
        Ok(s) => s,
        Err(stacks::NotLocked::Held) => return Err(Errno(libc::EAGAIN)),
        Err(stacks::NotLocked::Gone) => return Err(Errno(libc::EBADF)),
    };
    let arm = Some((&mut core.watch, entry.handle()));
    // SAFETY: the caller's contract.
    unsafe { tcp_read_on(stack, h, iov, peek, discard, Then::Output, arm) }
}

/// What a read that took bytes, or a write that queued them, does next
/// with the stack's lock it holds (one acquisition for both: with ten
/// threads on two cores each acquisition is a chance to be preempted
/// holding it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Sends what the stack has to send: the window update after a read.
    Output,
    /// [`stacks::output_or_poll`].
    OutputOrPoll,
}

impl Then {
    fn run(self, mut stack: stacks::StackGuard) {
        match self {
            Then::Output => {
                stack.output(crate::engine::worker::now());
            }
            Then::OutputOrPoll => stacks::output_or_poll(stack),
        }
    }
}

/// [`tcp_read`] of connection `h` of the locked `stack` (without the
/// worker's lock); if it read something, `then` runs under the same lock;
/// if it would block, the socket's wakers are armed under it (`arm`: the
/// watch and the socket's handle, for a wait on [`WaitOn::Conn`]).
///
/// # Safety
///
/// As for [`tcp_read`].
unsafe fn tcp_read_on(
    mut stack: stacks::StackGuard,
    h: TcpHandle,
    iov: Iov<'_>,
    peek: bool,
    discard: bool,
    then: Then,
    arm: Option<(&mut crate::sockets::ready::Watch, u32)>,
) -> Result<usize, Errno> {
    // A reader with a lane waits there for the connection's next frames.
    if crate::engine::lanes::mine_index().is_some() {
        crate::engine::lanes::route(&mut stack, h);
    }
    let mut total = 0;
    let mut failed = None;
    let mut scratch = Vec::new();
    for v in iov {
        let b = if discard {
            // MSG_TRUNC on a stream: the bytes are consumed, not copied.
            scratch.resize(v.iov_len.min(1 << 20), 0);
            scratch.as_mut_slice()
        } else {
            // SAFETY: the caller's contract.
            unsafe { buf(v.iov_base, v.iov_len) }
        };
        if b.is_empty() {
            continue;
        }
        let want = b.len();
        let r = if peek {
            stack.iface.tcp.with_conn(h, |s| s.peek(b))
        } else {
            stack.iface.tcp.recv(h, b)
        };
        match r {
            Ok(n) => {
                total += n;
                if n < want || peek {
                    break;
                }
            }
            Err(_) if total > 0 => break,
            Err(e) => {
                failed = Some(se(e));
                break;
            }
        }
    }
    let r = match failed {
        Some(e) => Err(e),
        // A zero-length read: 0, or the pending error.
        None if total == 0 && iov.iter().all(|v| v.iov_len == 0) => {
            stack.iface.tcp.recv(h, &mut []).map_err(se)
        }
        None => Ok(total),
    };
    match (r, arm) {
        (Ok(n), _) if n > 0 => then.run(stack),
        (Err(Errno(libc::EAGAIN)), Some((watch, sock))) => watch.arm_conn(sock, &mut stack, h),
        _ => {}
    }
    r
}

/// One try at queueing `iov` (from byte `skip` on) on a TCP connection,
/// and sending it ([`write_and_send`]).
///
/// # Safety
///
/// `iov` describes buffers valid for reading.
unsafe fn tcp_write(core: &mut Core, entry: Entry, iov: Iov<'_>, skip: usize) -> Result<usize, Errno> {
    let h = conn_of(core, entry).map_err(|e| {
        if e.0 == libc::ENOTCONN {
            Errno(libc::EPIPE)
        } else {
            e
        }
    })?;
    let (q, h) = h;
    // SAFETY: the caller's contract.
    unsafe { write_and_send(q, h, iov, skip) }
}

/// [`tcp_write`] on connection `h` of stack `q` (without the worker's lock);
/// if it queued `send_from` bytes or more, what it queued goes out under
/// the same lock ([`stacks::output_or_poll`]).
///
/// # Safety
///
/// As for [`tcp_write`].
unsafe fn tcp_write_on(
    q: Q,
    h: TcpHandle,
    iov: Iov<'_>,
    mut skip: usize,
    send_from: usize,
) -> Result<usize, Errno> {
    let mut stack = socket::stack(q)?;
    let mut total = 0;
    let mut any = false;
    for v in iov {
        // SAFETY: the caller's contract.
        let b = unsafe { buf(v.iov_base, v.iov_len) };
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        let b = b.get(skip..).unwrap_or_default();
        skip = 0;
        any = true;
        match stack.iface.tcp.send(h, b) {
            Ok(n) => {
                total += n;
                if n < b.len() {
                    break;
                }
            }
            Err(_) if total > 0 => break,
            Err(e) => return Err(se(e)),
        }
    }
    if !any {
        // Nothing to send: 0, or the error a send would report.
        total = stack.iface.tcp.send(h, &[]).map_err(se)?;
    }
    if total >= send_from {
        Then::OutputOrPoll.run(stack);
    }
    Ok(total)
}

/// [`tcp_write_on`], then what it queued goes out. A write the buffer
/// could not take whole polls the device first and tries the rest once
/// more: the kernel takes ACKs as they come, so its send buffer never
/// holds data the peer has acknowledged, and neither may ours when it
/// answers `EAGAIN` (a write that took it all sends without receiving).
///
/// # Safety
///
/// As for [`tcp_write`].
unsafe fn write_and_send(q: Q, h: TcpHandle, iov: Iov<'_>, skip: usize) -> Result<usize, Errno> {
    let want = iov_len(iov).saturating_sub(skip);
    // SAFETY: the caller's contract.
    let first = unsafe { tcp_write_on(q, h, iov, skip, want) };
    let took = match first {
        Ok(n) if n >= want => return first,
        Ok(n) => n,
        Err(Errno(libc::EAGAIN)) => 0,
        Err(e) => return Err(e),
    };
    stacks::poll(q);
    // SAFETY: as above.
    match unsafe { tcp_write_on(q, h, iov, skip + took, 1) } {
        Ok(n) => Ok(took + n),
        Err(_) if took > 0 => Ok(took),
        Err(e) => Err(e),
    }
}

/// Total length of `iov`.
pub fn iov_len(iov: Iov<'_>) -> usize {
    iov.iter().map(|v| v.iov_len).fold(0usize, usize::saturating_add)
}

/// The socket's blocking view and timeouts.
pub(crate) fn mode(
    core: &mut Core,
    entry: Entry,
) -> Result<(bool, Option<Duration>, Option<Duration>), Errno> {
    let s = sock_mut(core, entry)?;
    Ok((s.nonblock, s.opts.rcvtimeo, s.opts.sndtimeo))
}

/// Whether the entry is one the data calls answer (not pending, not
/// inert): `None` means "not ours" (the kernel answers).
fn answers(entry: Entry) -> bool {
    matches!(entry.state(), State::Tcp | State::Udp)
}

/// The `read`/`recv` family on a TCP socket (UDP goes to `udp`).
///
/// # Safety
///
/// `iov` describes buffers valid for writing.
pub unsafe fn recv(entry: Entry, fd: c_int, iov: Iov<'_>, flags: c_int) -> Answer<isize> {
    if !answers(entry) {
        return Dispatch::NotOurs;
    }
    if entry.state() == State::Udp {
        // SAFETY: the caller's contract.
        return unsafe {
            crate::sockets::udp::recv(entry, fd, iov, flags, std::ptr::null_mut(), std::ptr::null_mut())
        };
    }
    let peek = flags & libc::MSG_PEEK != 0;
    let trunc = flags & libc::MSG_TRUNC != 0 && !peek;
    let waitall = flags & libc::MSG_WAITALL != 0 && !peek;
    let want = iov_len(iov);
    // The connection (its stack and handle), for the wait.
    let focus: Option<(Q, TcpHandle)>;
    // The thread tried and registered on the socket under one hold of the
    // sockets' lock (see below).
    let mut registered = false;
    let timeout = {
        // The socket's stack and mode under the worker's lock; the poll and
        // the read under the stack's alone.
        let mut core = crate::sockets::table::lock();
        let conn = conn_of(&core, entry);
        let (nb, rt, _) = match mode(&mut core, entry) {
            Ok(m) => m,
            Err(e) => return Dispatch::Done(Err(e)),
        };
        let nonblock = nb || flags & libc::MSG_DONTWAIT != 0;
        focus = conn.as_ref().ok().copied();
        // A blocking read (a thread per connection) reads under the
        // sockets' lock too, and if it finds nothing, arms the socket under
        // the stack's and registers the thread before it lets go: its
        // wait then starts asleep, not with a look that takes both locks
        // again to find the same nothing. (Not before the thread has its
        // lane: taking one is a system call.) What it read is sent on
        // (the window update) without a poll of the device under the lock.
        // Only if the stack's lock is free: a thread that waited for it
        // holding the sockets' lock would make every other call wait too
        // (with 200 threads, twice the waits of 0.5 ms and more for the
        // sockets' lock); it reads under the stack's alone then.
        let lane_ready = !crate::engine::lanes::on() || crate::engine::lanes::mine_index().is_some();
        let held = match &conn {
            Ok((q, _)) if !nonblock && lane_ready => match stacks::try_lock_briefly(*q) {
                Some(stack) => Some((core, stack)),
                None => {
                    drop(core);
                    None
                }
            },
            _ => {
                drop(core);
                None
            }
        };
        let r = match (conn, held) {
            (Ok((_, h)), Some((mut core, stack))) => {
                let sock = entry.handle();
                // SAFETY: the caller's contract.
                let r = unsafe {
                    tcp_read_on(
                        stack,
                        h,
                        iov,
                        peek,
                        trunc,
                        Then::Output,
                        Some((&mut core.watch, sock)),
                    )
                };
                if r == Err(Errno(libc::EAGAIN)) {
                    // A permit from before is stale (see `block`).
                    accel_coro::park::Parker::forget_current_permit();
                    core.register(WaitOn::Conn(sock), &accel_coro::park::Parker::current_waker());
                    registered = true;
                }
                r
            }
            (Ok((q, h)), _) => {
                // What the socket holds first; the device only when it
                // holds nothing and the call would fail (on net_tap a poll
                // that finds no frame is a system call; a blocking read's
                // wait polls first anyway). A read that takes bytes sends
                // the window update at once.
                let then = Then::OutputOrPoll;
                let read = || {
                    // SAFETY: the caller's contract.
                    socket::stack(q).and_then(|s| unsafe { tcp_read_on(s, h, iov, peek, trunc, then, None) })
                };
                let mut r = read();
                if r == Err(Errno(libc::EAGAIN)) && nonblock {
                    stacks::poll_unless_fresh(q);
                    r = read();
                }
                r
            }
            (Err(e), _) => Err(e),
        };
        match r {
            Ok(n) if n > 0 && (!waitall || n == want || nonblock) => {
                return ok(n as isize);
            }
            Ok(0) => return ok(0),
            Ok(n) => {
                // MSG_WAITALL, partly filled: wait for the rest.
                // SAFETY: the caller's contract.
                return unsafe { recv_rest(entry, iov, n, rt) };
            }
            Err(e) if e.0 != libc::EAGAIN || nonblock => return Dispatch::Done(Err(e)),
            Err(_) => rt,
        }
    };
    let dl = deadline(timeout);
    let mut f = |core: &mut Core| {
        // SAFETY: the caller's contract.
        match unsafe { tcp_read(core, entry, iov, peek, trunc) } {
            Err(Errno(libc::EAGAIN)) => None,
            r => Some(r),
        }
    };
    // Only the connection's stack can ready it.
    let _focus = focus.map(|(q, _)| crate::engine::wait::Focus::on(q));
    if let Some((q, h)) =
        focus.filter(|_| crate::engine::lanes::on() && crate::engine::lanes::mine_index().is_none())
    {
        // The connection's frames come to the lane this thread will sleep
        // on (taken now, at its first blocking read).
        // (Taken before the stack's lock: attaching is a system call.)
        if crate::engine::lanes::take_mine().is_some() {
            if let Some(mut s) = stacks::lock(q) {
                crate::engine::lanes::route(&mut s, h);
            }
        }
    }
    loop {
        let on = [WaitOn::Conn(entry.handle())];
        let waited = if std::mem::take(&mut registered) {
            block_registered(dl, &on, &mut f)
        } else {
            block(dl, &on, &mut [], None, &mut f)
        };
        match waited {
            Ok(Ok(n)) if waitall && n > 0 && n < want => {
                // SAFETY: the caller's contract.
                return unsafe { recv_rest(entry, iov, n, timeout) };
            }
            // A read that took bytes sent the window update.
            Ok(r) => return Dispatch::Done(r.map(|n| n as isize)),
            Err(WaitEnd::TimedOut) => return fail(libc::EAGAIN),
            Err(WaitEnd::Interrupted { restart: false }) => return fail(libc::EINTR),
            Err(WaitEnd::Interrupted { .. }) => {}
        }
    }
}

/// `MSG_WAITALL` after `got` bytes: read until `iov` is full, the stream
/// ends, an error or the timeout (what was read is returned then).
///
/// # Safety
///
/// As for [`recv`].
unsafe fn recv_rest(entry: Entry, iov: Iov<'_>, mut got: usize, timeout: Option<Duration>) -> Answer<isize> {
    let want = iov_len(iov);
    let dl = deadline(timeout);
    while got < want {
        // The iovecs that remain after `got` bytes.
        let rest = trimmed(iov, got);
        let mut f = |core: &mut Core| {
            // SAFETY: the caller's contract; `rest` points into `iov`.
            match unsafe { tcp_read(core, entry, &rest, false, false) } {
                Err(Errno(libc::EAGAIN)) => None,
                r => Some(r),
            }
        };
        match block(dl, &[WaitOn::Conn(entry.handle())], &mut [], None, &mut f) {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(WaitEnd::Interrupted { restart: true }) => {}
            Err(_) => break,
        }
    }
    ok(got as isize)
}

/// `iov` without its first `skip` bytes.
pub fn trimmed(iov: Iov<'_>, mut skip: usize) -> Vec<iovec> {
    let mut out = Vec::with_capacity(iov.len());
    for v in iov {
        if skip >= v.iov_len {
            skip -= v.iov_len;
            continue;
        }
        out.push(iovec {
            iov_base: v.iov_base.cast::<u8>().wrapping_add(skip).cast(),
            iov_len: v.iov_len - skip,
        });
        skip = 0;
    }
    out
}

/// Raises `SIGPIPE` in the calling thread, as the kernel does for a send
/// on a shut socket.
pub(crate) fn sigpipe() {
    // SAFETY: gettid/tgkill take no pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        libc::syscall(libc::SYS_tgkill, sys::getpid(), tid, libc::SIGPIPE);
    }
}

/// The `write`/`send` family on a TCP socket (UDP goes to `udp`).
///
/// # Safety
///
/// `iov` describes buffers valid for reading.
pub unsafe fn send(entry: Entry, iov: Iov<'_>, flags: c_int) -> Answer<isize> {
    if !answers(entry) {
        return Dispatch::NotOurs;
    }
    if entry.state() == State::Udp {
        // SAFETY: the caller's contract.
        return unsafe { crate::sockets::udp::send(entry, iov, flags, None) };
    }
    let total = iov_len(iov);
    let (nonblock, timeout, first) = {
        let (conn, mode) = {
            let mut core = crate::sockets::table::lock();
            (conn_of(&core, entry), mode(&mut core, entry))
        };
        let (nb, _, st) = match mode {
            Ok(m) => m,
            Err(e) => return Dispatch::Done(Err(e)),
        };
        // Queued under the stack's lock, sent by a poll of it (not under
        // the worker's lock).
        let r = match conn {
            Ok((q, h)) => {
                // SAFETY: the caller's contract.
                unsafe { write_and_send(q, h, iov, 0) }
            }
            Err(Errno(libc::ENOTCONN)) => Err(Errno(libc::EPIPE)),
            Err(e) => Err(e),
        };
        (nb || flags & libc::MSG_DONTWAIT != 0, st, r)
    };
    let mut done = match first {
        Ok(n) if n == total || nonblock => return ok(n as isize),
        Ok(n) => n,
        Err(Errno(libc::EAGAIN)) if !nonblock => 0,
        Err(e) => {
            if e.0 == libc::EPIPE && flags & libc::MSG_NOSIGNAL == 0 {
                sigpipe();
            }
            return Dispatch::Done(Err(e));
        }
    };
    let dl = deadline(timeout);
    while done < total {
        let mut f = |core: &mut Core| {
            // SAFETY: the caller's contract.
            let r = unsafe { tcp_write(core, entry, iov, done) };
            match r {
                Err(Errno(libc::EAGAIN)) => None,
                r => Some(r),
            }
        };
        match block(dl, &[WaitOn::Sock(entry.handle())], &mut [], None, &mut f) {
            Ok(Ok(n)) => done += n,
            Ok(Err(e)) if done == 0 => {
                if e.0 == libc::EPIPE && flags & libc::MSG_NOSIGNAL == 0 {
                    sigpipe();
                }
                return Dispatch::Done(Err(e));
            }
            Ok(Err(_)) => break,
            Err(WaitEnd::Interrupted { restart: true }) => {}
            Err(WaitEnd::TimedOut) if done == 0 => return fail(libc::EAGAIN),
            Err(WaitEnd::Interrupted { .. }) if done == 0 => return fail(libc::EINTR),
            Err(_) => break,
        }
    }
    ok(done as isize)
}

/// One iovec for a plain buffer.
pub fn one(base: *const c_void, len: usize) -> iovec {
    iovec {
        iov_base: base.cast_mut(),
        iov_len: len,
    }
}

/// `sendfile(out_fd = ours, in_fd, offset, count)`: the file read with raw
/// `pread` and queued on the connection; `*offset` (or the file position,
/// when `offset` is null) advances by what was queued.
///
/// # Safety
///
/// `offset` is null or valid.
pub unsafe fn sendfile(entry: Entry, in_fd: c_int, offset: *mut i64, count: usize) -> Answer<isize> {
    if entry.state() != State::Tcp {
        return if answers(entry) {
            fail(libc::EINVAL)
        } else {
            Dispatch::NotOurs
        };
    }
    let mut pos = if offset.is_null() {
        match sys::lseek(in_fd, 0, libc::SEEK_CUR) {
            Ok(p) => p,
            Err(e) => return fail(e),
        }
    } else {
        // SAFETY: the caller's contract.
        unsafe { offset.read_unaligned() }
    };
    let (nonblock, timeout) = {
        let mut core = crate::sockets::table::lock();
        match mode(&mut core, entry) {
            Ok((nb, _, st)) => (nb, st),
            Err(e) => return Dispatch::Done(Err(e)),
        }
    };
    // Sized to the request: nginx sends small files with one call each, and
    // a zeroed 128 KiB per call (an mmap at glibc's threshold) is not free.
    let mut chunk = vec![0u8; count.min(128 * 1024)];
    let mut sent = 0usize;
    let dl = deadline(timeout);
    let mut result: Result<(), Errno> = Ok(());
    'outer: while sent < count {
        let want = (count - sent).min(chunk.len());
        let Some(b) = chunk.get_mut(..want) else { break };
        let n = match sys::pread(in_fd, b, pos) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                result = Err(Errno(e));
                break;
            }
        };
        let data = b.get(..n).unwrap_or_default();
        let mut off = 0;
        while off < n {
            let v = [one(data.as_ptr().wrapping_add(off).cast(), n - off)];
            let r = {
                let conn = conn_of(&crate::sockets::table::lock(), entry);
                match conn {
                    Ok((q, h)) => {
                        // SAFETY: `v` points into `chunk`.
                        unsafe { write_and_send(q, h, &v, 0) }
                    }
                    Err(Errno(libc::ENOTCONN)) => Err(Errno(libc::EPIPE)),
                    Err(e) => Err(e),
                }
            };
            match r {
                Ok(k) => off += k,
                Err(Errno(libc::EAGAIN)) if nonblock => {
                    if sent + off == 0 {
                        result = Err(Errno(libc::EAGAIN));
                    }
                    sent += off;
                    pos += off as i64;
                    break 'outer;
                }
                Err(Errno(libc::EAGAIN)) => {
                    let mut f = |core: &mut Core| {
                        let (q, h) = conn_of(core, entry).ok()?;
                        let r = socket::stack(q).ok()?.iface.tcp.readiness(h).ok()?;
                        (r.writable || r.hangup || r.error).then_some(())
                    };
                    match block(dl, &[WaitOn::Sock(entry.handle())], &mut [], None, &mut f) {
                        Ok(()) => {}
                        Err(WaitEnd::Interrupted { restart: true }) => {}
                        Err(e) => {
                            if sent + off == 0 {
                                result = Err(Errno(if e == WaitEnd::TimedOut {
                                    libc::EAGAIN
                                } else {
                                    libc::EINTR
                                }));
                            }
                            sent += off;
                            pos += off as i64;
                            break 'outer;
                        }
                    }
                }
                Err(e) => {
                    if sent + off == 0 {
                        if e.0 == libc::EPIPE {
                            sigpipe();
                        }
                        result = Err(e);
                    }
                    sent += off;
                    pos += off as i64;
                    break 'outer;
                }
            }
        }
        sent += n;
        pos += n as i64;
    }
    if offset.is_null() {
        let _ = sys::lseek(in_fd, pos, libc::SEEK_SET);
    } else {
        // SAFETY: the caller's contract.
        unsafe { offset.write_unaligned(pos) };
    }
    match result {
        Err(e) if sent == 0 => Dispatch::Done(Err(e)),
        _ => ok(sent as isize),
    }
}

/// `shutdown(2)`, as Linux's `inet_shutdown`: `ENOTCONN` on a closed
/// connection; on a listener, `SHUT_RD` (or `SHUT_RDWR`) stops listening.
pub fn shutdown(entry: Entry, fd: c_int, how: c_int) -> Answer<c_int> {
    if !matches!(entry.state(), State::Tcp | State::Udp | State::Pending) {
        return Dispatch::NotOurs;
    }
    let (rd, wr) = match how {
        libc::SHUT_RD => (true, false),
        libc::SHUT_WR => (false, true),
        libc::SHUT_RDWR => (true, true),
        _ => return fail(libc::EINVAL),
    };
    let mut core = crate::sockets::table::lock();
    if let Ok(Sock {
        kind: Kind::Listener { .. },
        ..
    }) = sock_mut(&mut core, entry)
    {
        if rd {
            crate::sockets::close::unlisten(&mut core, fd, entry);
        }
        return ok(0);
    }
    if entry.state() == State::Pending {
        return Dispatch::NotOurs;
    }
    let (q, h) = match conn_of(&core, entry) {
        Ok(h) => h,
        Err(e) => return Dispatch::Done(Err(e)),
    };
    drop(core);
    use accel_stack::tcp::State as T;
    let r = match socket::stack(q) {
        Ok(mut s) => match s.iface.tcp.socket(h).map(|c| c.state()) {
            None | Some(T::Closed | T::TimeWait) => Err(Errno(libc::ENOTCONN)),
            Some(_) => s.iface.tcp.shutdown(h, rd, wr).map_err(se),
        },
        Err(_) => Err(Errno(libc::ENOTCONN)),
    };
    // The FIN goes out now.
    stacks::output(q);
    Dispatch::Done(r.map(|()| 0))
}

/// `getsockname(2)` / `getpeername(2)`.
///
/// # Safety
///
/// `addr`/`len` as for those calls.
pub unsafe fn name(entry: Entry, peer: bool, addr: *mut sockaddr, len: *mut socklen_t) -> Answer<c_int> {
    // The kernel reads the length first and copies out only into a real
    // buffer: a null one with room is EFAULT.
    // SAFETY: `len` is null or valid (the caller's contract).
    if len.is_null() || (addr.is_null() && unsafe { len.read_unaligned() } > 0) {
        if matches!(entry.state(), State::Tcp | State::Udp) {
            return fail(libc::EFAULT);
        }
        return Dispatch::NotOurs;
    }
    let core = crate::sockets::table::lock();
    let kind = match core.socks.get(entry.handle()) {
        Some(s) => s.kind.clone(),
        None => return Dispatch::NotOurs,
    };
    let a: Result<SocketAddrV4, Errno> = match (&kind, peer) {
        (Kind::Pending { bound: Some(b), .. }, false) => Ok(*b),
        (Kind::Pending { .. }, _) => return Dispatch::NotOurs,
        (Kind::Listener { local, .. }, false) => Ok(*local),
        (Kind::Listener { .. }, true) => Err(Errno(libc::ENOTCONN)),
        (Kind::Tcp(q, h), _) => match stacks::lock(*q) {
            // Linux has no peer while the handshake is under way.
            Some(s)
                if peer
                    && s.iface
                        .tcp
                        .socket(*h)
                        .is_some_and(|c| c.state() == accel_stack::tcp::State::SynSent) =>
            {
                Err(Errno(libc::ENOTCONN))
            }
            Some(s) if peer => s.iface.tcp.peer_addr(*h).map_err(se),
            Some(s) => s
                .iface
                .tcp
                .local_addr(*h)
                .map_err(se)
                .map(|a| a.unwrap_or(SocketAddrV4::new(core::net::Ipv4Addr::UNSPECIFIED, 0))),
            None => Err(Errno(libc::EBADF)),
        },
        (Kind::Udp(hs), _) => {
            // Every stack's socket is bound and connected alike: the first
            // answers.
            let ends = hs
                .first()
                .and_then(|&h| stacks::lock(0)?.iface.udp(h).map(|u| (u.local(), u.remote())));
            match ends {
                Some((_, remote)) if peer => remote.ok_or(Errno(libc::ENOTCONN)),
                Some((local, remote)) => {
                    let local = local.unwrap_or(SocketAddrV4::new(core::net::Ipv4Addr::UNSPECIFIED, 0));
                    // Connected, the socket has a source address (Linux sets
                    // it at connect), the stack's.
                    Ok(match (remote, crate::sockets::socket::our_ip()) {
                        (Some(_), Some(ip)) if local.ip().is_unspecified() => {
                            SocketAddrV4::new(ip, local.port())
                        }
                        _ => local,
                    })
                }
                None => Err(Errno(libc::EBADF)),
            }
        }
    };
    drop(core);
    // SAFETY: the caller's contract.
    Dispatch::Done(a.and_then(|a| unsafe { sa::write(a, addr, len) }).map(|()| 0))
}

/// Reads an int option value.
///
/// # Safety
///
/// `val` is valid for `len` bytes.
pub unsafe fn int_val(val: *const c_void, len: socklen_t) -> Option<c_int> {
    if val.is_null() || (len as usize) < size_of::<c_int>() {
        return None;
    }
    // SAFETY: checked size; the caller's contract.
    Some(unsafe { val.cast::<c_int>().read_unaligned() })
}

/// A timeval option value as a timeout (`None`: no timeout).
///
/// # Safety
///
/// `val` is valid for `len` bytes.
pub unsafe fn time_val(val: *const c_void, len: socklen_t) -> Option<Option<Duration>> {
    if val.is_null() || (len as usize) < size_of::<libc::timeval>() {
        return None;
    }
    // SAFETY: checked size; the caller's contract.
    let tv = unsafe { val.cast::<libc::timeval>().read_unaligned() };
    let d = Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64);
    Some((!d.is_zero()).then_some(d))
}

/// `setsockopt(2)`: the placeholder takes every option first (so errors
/// are the kernel's); the ones the stack needs are recorded and applied
/// (see [`crate::sockets::sockopt`]).
///
/// # Safety
///
/// `val` is valid for `len` bytes.
pub unsafe fn setsockopt(
    entry: Entry,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> Answer<c_int> {
    let connected = {
        let mut core = crate::sockets::table::lock();
        matches!(sock_mut(&mut core, entry).map(|s| &s.kind), Ok(Kind::Tcp(..)))
    };
    // SAFETY: the caller's arguments, passed on.
    if let Err(e) = unsafe { sockopt::to_kernel(fd, connected, level, name, val, len) } {
        return Dispatch::Done(Err(e));
    }
    let mut core = crate::sockets::table::lock();
    let Ok(s) = sock_mut(&mut core, entry) else {
        return ok(0);
    };
    // SAFETY: the caller's contract (the kernel accepted the sizes).
    unsafe {
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => s.opts.reuse_addr = int_val(val, len).unwrap_or(0) != 0,
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
                s.opts.rcvbuf = int_val(val, len).map(|v| v.max(0) as usize * 2)
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                s.opts.sndbuf = int_val(val, len).map(|v| v.max(0) as usize * 2)
            }
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO) => s.opts.rcvtimeo = time_val(val, len).flatten(),
            (libc::SOL_SOCKET, libc::SO_SNDTIMEO) => s.opts.sndtimeo = time_val(val, len).flatten(),
            _ => {
                let Some(o) = sockopt::record(fd, &mut s.opts, level, name, val, len) else {
                    return ok(0);
                };
                let kind = s.kind.clone();
                let t = worker::now();
                if let Kind::Udp(hs) = &kind {
                    if let SockOpt::Tos(tos) = o {
                        for (q, h) in hs.iter().enumerate() {
                            if let Some(u) = stacks::lock(q as Q).as_mut().and_then(|st| st.iface.udp_mut(*h))
                            {
                                u.set_tos(tos);
                            }
                        }
                    }
                }
                for (q, h) in tcp_handles(&kind) {
                    if let Some(mut stack) = stacks::lock(q) {
                        let _ = stack.iface.tcp.set_option(h, o, t);
                    }
                    stacks::output(q);
                }
                return ok(0);
            }
        }
    }
    let (kind, opts) = (s.kind.clone(), s.opts);
    for (q, h) in tcp_handles(&kind) {
        if let Some(mut stack) = stacks::lock(q) {
            crate::sockets::socket::apply_opts(&mut stack.iface.tcp, h, &opts);
        }
    }
    ok(0)
}

/// The stack connections a socket is: a connection's one, or a listener's
/// one per stack.
fn tcp_handles(kind: &Kind) -> Vec<(Q, TcpHandle)> {
    match kind {
        Kind::Tcp(q, h) => vec![(*q, *h)],
        Kind::Listener { tcp: Some(hs), .. } => hs.iter().enumerate().map(|(q, h)| (q as Q, *h)).collect(),
        _ => Vec::new(),
    }
}

/// Writes an int option value the way the kernel does (truncated to
/// `*len`, `*len` set to what was written).
///
/// # Safety
///
/// `val`/`len` valid as for `getsockopt`.
pub unsafe fn put_int(val: *mut c_void, len: *mut socklen_t, v: c_int) -> Result<c_int, Errno> {
    if len.is_null() || val.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: the caller's contract.
    let room = unsafe { len.read_unaligned() };
    if (room as c_int) < 0 {
        return Err(Errno(libc::EINVAL));
    }
    let n = (room as usize).min(size_of::<c_int>());
    let bytes = v.to_ne_bytes();
    // SAFETY: `val` has `room >= n` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), val.cast::<u8>(), n);
        len.write_unaligned(n as socklen_t);
    }
    Ok(0)
}

/// Writes a struct option value the way the kernel does: at most `*len`
/// bytes of `v`, `*len` set to what was written; `EINVAL` for a negative
/// `*len`.
///
/// # Safety
///
/// `val`/`len` valid as for `getsockopt`.
pub unsafe fn put_bytes(val: *mut c_void, len: *mut socklen_t, v: &[u8]) -> Result<c_int, Errno> {
    if len.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: the caller's contract.
    let room = unsafe { len.read_unaligned() };
    if (room as c_int) < 0 {
        return Err(Errno(libc::EINVAL));
    }
    let n = (room as usize).min(v.len());
    if n > 0 && val.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: `val` has `room >= n` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(v.as_ptr(), val.cast::<u8>(), n);
        len.write_unaligned(n as socklen_t);
    }
    Ok(0)
}

/// `getsockopt(2)`: what the stack knows; the rest from the placeholder.
///
/// # Safety
///
/// `val`/`len` valid as for `getsockopt`.
pub unsafe fn getsockopt(
    entry: Entry,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> Answer<c_int> {
    let core = crate::sockets::table::lock();
    let Some(Sock { kind, opts, .. }) = core.socks.get(entry.handle()).cloned() else {
        return Dispatch::NotOurs;
    };
    // A connection's stack; a listener is alike in every stack (its
    // queue of connections is the sum of theirs).
    let tcp = match &kind {
        Kind::Tcp(q, h) => Some((*q, *h)),
        Kind::Listener { tcp: Some(hs), .. } => hs.first().map(|h| (0, *h)),
        _ => None,
    };
    let stack = tcp.and_then(|(q, _)| stacks::lock(q));
    let tcp = tcp.map(|(_, h)| h);
    if (level, name) == (libc::IPPROTO_TCP, libc::TCP_INFO) {
        let info = match (tcp, &kind, stack) {
            (Some(h), Kind::Tcp(..), Some(s)) => {
                s.iface.tcp.socket(h).map(|c| tcpinfo::connection(&c.info()))
            }
            (Some(_), Kind::Listener { tcp: Some(hs), .. }, Some(s)) => {
                drop(s);
                let (mut queued, mut backlog) = (0, 0);
                for (q, h) in hs.iter().enumerate() {
                    if let Some((n, b)) =
                        stacks::lock(q as stacks::Q).and_then(|s| s.iface.tcp.listen_queue(*h).ok())
                    {
                        queued += n;
                        backlog = b;
                    }
                }
                Some(tcpinfo::listener(queued, backlog))
            }
            _ => None,
        };
        let Some(info) = info else {
            return Dispatch::NotOurs;
        };
        drop(core);
        // SAFETY: the caller's contract.
        return Dispatch::Done(unsafe { put_bytes(val, len, tcpinfo::bytes(&info)) });
    }
    let v: c_int = match (level, name) {
        (libc::SOL_SOCKET, libc::SO_ERROR) => match (tcp, &kind, stack) {
            (Some(h), Kind::Tcp(..), Some(mut s)) => s
                .iface
                .tcp
                .with_conn(h, |c| Ok(c.take_error()))
                .ok()
                .flatten()
                .map_or(0, |e| e.0),
            _ => return Dispatch::NotOurs,
        },
        (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => c_int::from(matches!(kind, Kind::Listener { .. })),
        (libc::SOL_SOCKET, libc::SO_REUSEADDR) => c_int::from(opts.reuse_addr),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => c_int::from(opts.keepalive),
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => c_int::from(opts.nodelay),
        (libc::SOL_SOCKET, libc::SO_RCVBUF | libc::SO_SNDBUF) => match (tcp, stack) {
            (Some(h), Some(s)) => match s.iface.tcp.config(h) {
                Ok(c) if name == libc::SO_RCVBUF => c.recv_buffer as c_int,
                Ok(c) => c.send_buffer as c_int,
                Err(_) => return Dispatch::NotOurs,
            },
            _ => return Dispatch::NotOurs,
        },
        // A connection's segment size and pingpong mode are the stack's;
        // elsewhere the placeholder holds the option as set.
        (libc::IPPROTO_TCP, libc::TCP_MAXSEG | libc::TCP_QUICKACK) => match (tcp, &kind, stack) {
            (Some(h), Kind::Tcp(..), Some(s)) => match s.iface.tcp.socket(h) {
                Some(c) if name == libc::TCP_MAXSEG => c.maxseg() as c_int,
                Some(c) => c_int::from(c.quickack()),
                None => return Dispatch::NotOurs,
            },
            _ => return Dispatch::NotOurs,
        },
        _ => return Dispatch::NotOurs,
    };
    drop(core);
    // SAFETY: the caller's contract.
    Dispatch::Done(unsafe { put_int(val, len, v) })
}

/// `fcntl(2)`: `O_NONBLOCK` is the program's view; everything else is the
/// placeholder's.
pub fn fcntl(entry: Entry, fd: c_int, cmd: c_int, arg: libc::c_ulong) -> Answer<c_int> {
    if !matches!(entry.state(), State::Pending | State::Tcp | State::Udp)
        || !matches!(cmd, libc::F_GETFL | libc::F_SETFL)
    {
        return Dispatch::NotOurs;
    }
    let mut core = crate::sockets::table::lock();
    let Ok(s) = sock_mut(&mut core, entry) else {
        return Dispatch::NotOurs;
    };
    let listener_in_kernel = matches!(s.kind, Kind::Listener { kernel: true, .. });
    let Some(real) = crate::interpose::real::fcntl.get() else {
        return Dispatch::NotOurs;
    };
    if cmd == libc::F_GETFL {
        // SAFETY: F_GETFL takes no argument.
        let fl = unsafe { real(fd, libc::F_GETFL) };
        if fl < 0 {
            return fail(sys::errno());
        }
        let fl = if s.nonblock {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        return ok(fl);
    }
    let want = arg as c_int;
    s.nonblock = want & libc::O_NONBLOCK != 0;
    // A listening placeholder stays non-blocking: `accept` takes from it.
    let placeholder = if listener_in_kernel {
        want | libc::O_NONBLOCK
    } else {
        want
    };
    // SAFETY: F_SETFL takes an int.
    let r = unsafe { real(fd, libc::F_SETFL, placeholder) };
    if r < 0 {
        return fail(sys::errno());
    }
    ok(0)
}

/// `ioctl(2)`: `FIONBIO`, `FIONREAD`, `SIOCOUTQ`; the rest to the kernel.
///
/// # Safety
///
/// `arg` is what the request takes.
pub unsafe fn ioctl(entry: Entry, request: libc::c_ulong, arg: libc::c_ulong) -> Answer<c_int> {
    let mut core = crate::sockets::table::lock();
    let Ok(s) = sock_mut(&mut core, entry) else {
        return Dispatch::NotOurs;
    };
    let p = arg as *mut c_int;
    match request {
        libc::FIONBIO => {
            if p.is_null() {
                return fail(libc::EFAULT);
            }
            // SAFETY: FIONBIO takes an int pointer.
            s.nonblock = unsafe { p.read_unaligned() } != 0;
            if entry.state() == State::Pending {
                return Dispatch::NotOurs; // the placeholder follows
            }
            ok(0)
        }
        libc::FIONREAD | libc::TIOCOUTQ => {
            let kind = s.kind.clone();
            let n = match kind {
                Kind::Tcp(q, h) => match stacks::lock(q) {
                    Some(st) => match st.iface.tcp.socket(h) {
                        Some(c) if request == libc::FIONREAD => c.recv_queue(),
                        Some(c) => c.send_queue(),
                        None => 0,
                    },
                    None => 0,
                },
                // The next datagram's length: this thread's stack first.
                Kind::Udp(hs) if request == libc::FIONREAD => stacks::mine_first()
                    .filter_map(|q| {
                        let h = *hs.get(usize::from(q))?;
                        let n = stacks::lock(q)?.iface.udp(h)?.next_len();
                        (n > 0).then_some(n)
                    })
                    .next()
                    .unwrap_or(0),
                Kind::Listener { .. } => return fail(libc::EINVAL),
                Kind::Pending { .. } => return Dispatch::NotOurs,
                _ => 0,
            };
            if p.is_null() {
                return fail(libc::EFAULT);
            }
            // SAFETY: these requests take an int pointer.
            unsafe { p.write_unaligned(n.min(c_int::MAX as usize) as c_int) };
            ok(0)
        }
        _ => Dispatch::NotOurs,
    }
}

/// Any call on an fd of the parent's stack (after `fork`): fails.
pub fn inert(fd: c_int, what: &str) -> Answer<isize> {
    log!(
        warn,
        "{what} on fd {fd}: an accelerated socket of the parent process, unusable after fork (close it)"
    );
    fail(libc::EBADF)
}
