//! `splice(2)` between an accelerated TCP socket and a pipe, both ways
//! (haproxy and nginx move data so). The kernel cannot do it: the
//! socket's fd is a placeholder with no data (the call would act on it and
//! fail, or worse), so the shim moves the bytes itself, with raw system
//! calls on the pipe.
//!
//! - socket → pipe: waits for room in the pipe (with `SPLICE_F_NONBLOCK`
//!   or the pipe's `O_NONBLOCK`: `EAGAIN` instead), then looks at the
//!   socket's data as a `recv(MSG_PEEK)` would (the socket's own
//!   `O_NONBLOCK`, `SO_RCVTIMEO`, signals, 0 at the end of the stream),
//!   writes what the pipe takes without blocking (`RWF_NOWAIT`) and
//!   consumes exactly that from the socket: nothing is lost when the pipe
//!   takes less. At most `len` bytes and the pipe's capacity.
//! - pipe → socket: waits for data in the pipe (the same rule; 0 when it
//!   is empty and has no writer), then for room on the socket (the
//!   socket's `O_NONBLOCK`, `SO_SNDTIMEO`, signals; a shut or broken
//!   connection fails before a byte leaves the pipe: `EPIPE` with
//!   `SIGPIPE`), reads from the pipe at most what the socket can queue
//!   now and `len`, and queues it.
//!
//! `SPLICE_F_NONBLOCK` is about the pipe only, as the man page says: the
//! socket's side blocks unless the socket is non-blocking. A signal ends a
//! wait with `EINTR`, or restarts it under `SA_RESTART` (not a socket wait
//! with a timeout), as for the other calls.
//!
//! The argument checks are the kernel's, in its order (`splice` and
//! `do_splice` in fs/splice.c): `len` 0 → 0; an unknown flag → `EINVAL`;
//! a closed fd → `EBADF`; an offset for a pipe → `ESPIPE`; an end that
//! cannot be read (in) or written (out), a pipe's wrong end → `EBADF`; no
//! pipe at either end → `EINVAL`; an offset for the socket (which has no
//! position) → `EINVAL`.
//!
//! In a child of `fork`, an inherited connection is attached first (see
//! `forked`): its fd is then a kernel socketpair end, spliced by the
//! kernel.
//!
//! Not intercepted: `tee` and `vmsplice` take pipes only, and the
//! placeholder (a socket) gets the kernel's own answer (`EINVAL`,
//! `EBADF`), which is right. An accelerated UDP socket: `EINVAL` and a log
//! line (not supported).

use crate::fdtable::{Entry, State, FDS};
use crate::interpose::skeleton::{Dispatch, Errno};
use crate::logging::log;
use crate::signals;
use crate::sockets::block::{block, WaitEnd, WaitOn};
use crate::sockets::io::{self, one};
use crate::sockets::socket::{self, conn_of, deadline, fail, ok, se, Answer};
use crate::sockets::table::Core;
use crate::sys;
use libc::{c_int, c_uint, pollfd};
use std::time::Duration;

/// `SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT`.
const SPLICE_F_ALL: c_uint = 0x0f;

/// The most one call moves, whatever the pipe's capacity.
const MAX_CHUNK: usize = 1 << 20;

/// One end of a splice.
enum End {
    /// An accelerated socket.
    Ours(Entry),
    /// A pipe (kernel), with its file status flags.
    Pipe(c_int),
    /// Anything else the kernel has, with its file status flags.
    Other(c_int),
}

impl End {
    fn of(fd: c_int, entry: Entry) -> Result<End, Errno> {
        if is_ours(entry) {
            return Ok(End::Ours(entry));
        }
        let (kind, flags) = sys::kind_and_flags(fd).map_err(Errno)?;
        Ok(if kind == libc::S_IFIFO {
            End::Pipe(flags)
        } else {
            End::Other(flags)
        })
    }

    fn is_pipe(&self) -> bool {
        matches!(self, End::Pipe(_))
    }

    /// Whether the kernel's file may be read (`FMODE_READ`): a socket
    /// always, else not when opened write-only.
    fn readable(&self) -> bool {
        match self {
            End::Ours(_) => true,
            End::Pipe(f) | End::Other(f) => f & libc::O_ACCMODE != libc::O_WRONLY,
        }
    }

    /// Whether it may be written (`FMODE_WRITE`).
    fn writable(&self) -> bool {
        match self {
            End::Ours(_) => true,
            End::Pipe(f) | End::Other(f) => f & libc::O_ACCMODE != libc::O_RDONLY,
        }
    }
}

/// Whether the shim answers for `entry`'s fd.
fn is_ours(entry: Entry) -> bool {
    matches!(entry.state(), State::Tcp | State::Udp | State::Inert)
}

/// `splice(2)`: the shim's when either fd is an accelerated socket (see
/// the module documentation), else the kernel's.
///
/// # Safety
///
/// `off_in` and `off_out` are null or valid, as for `splice`.
pub unsafe fn splice(
    fd_in: c_int,
    off_in: *mut i64,
    fd_out: c_int,
    off_out: *mut i64,
    len: usize,
    flags: c_uint,
) -> Answer<isize> {
    // A fork child's inherited connection becomes a kernel fd (a
    // socketpair end the parent's proxy pumps, see `forked`) first: the
    // kernel splices that.
    if crate::sockets::forked::any() {
        crate::sockets::forked::attach_each([fd_in, fd_out]);
    }
    let (ein, eout) = (FDS.get(fd_in), FDS.get(fd_out));
    if !is_ours(ein) && !is_ours(eout) {
        return Dispatch::NotOurs;
    }
    if len == 0 {
        return ok(0);
    }
    if flags & !SPLICE_F_ALL != 0 {
        return fail(libc::EINVAL);
    }
    for (e, fd) in [(ein, fd_in), (eout, fd_out)] {
        if e.state() == State::Inert {
            return io::inert(fd, "splice");
        }
    }
    let (a, b) = match (End::of(fd_in, ein), End::of(fd_out, eout)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Dispatch::Done(Err(e)),
    };
    if a.is_pipe() && !off_in.is_null() || b.is_pipe() && !off_out.is_null() {
        return fail(libc::ESPIPE);
    }
    if !a.readable() || !b.writable() {
        return fail(libc::EBADF);
    }
    let pipe_nonblock =
        |pipe_flags: c_int| pipe_flags & libc::O_NONBLOCK != 0 || flags & libc::SPLICE_F_NONBLOCK != 0;
    match (a, b) {
        (End::Pipe(pf), End::Ours(e)) => {
            if !off_out.is_null() {
                return fail(libc::EINVAL);
            }
            if e.state() != State::Tcp {
                return udp_unsupported(fd_out);
            }
            pipe_to_socket(fd_in, pipe_nonblock(pf), e, fd_out, len)
        }
        (End::Ours(e), End::Pipe(pf)) => {
            if !off_in.is_null() {
                return fail(libc::EINVAL);
            }
            if e.state() != State::Tcp {
                return udp_unsupported(fd_in);
            }
            socket_to_pipe(e, fd_in, fd_out, pipe_nonblock(pf), len)
        }
        _ => fail(libc::EINVAL),
    }
}

fn udp_unsupported(fd: c_int) -> Answer<isize> {
    log!(
        warn,
        "splice on fd {fd}: an accelerated UDP socket; not supported (EINVAL)"
    );
    fail(libc::EINVAL)
}

/// Waits until pipe `fd` has `events` (or an error or hang-up, which the
/// read or write that follows reports); at once `EAGAIN` if `nonblock`.
/// A signal: `EINTR`, or the wait goes on when every handler that ran
/// has `SA_RESTART`.
fn wait_pipe(fd: c_int, events: i16, nonblock: bool) -> Result<(), Errno> {
    let start = signals::epoch();
    loop {
        let mut p = [pollfd {
            fd,
            events,
            revents: 0,
        }];
        let timeout = nonblock.then_some(Duration::ZERO);
        // SAFETY: a null signal mask: the thread's own.
        match unsafe { sys::ppoll(&mut p, timeout, std::ptr::null()) } {
            Ok(0) => return Err(Errno(libc::EAGAIN)),
            Ok(_) => return Ok(()),
            Err(libc::EINTR) => {
                let now = signals::epoch();
                let interrupts = if now.1 != start.1 {
                    true
                } else if now.0 != start.0 {
                    false
                } else {
                    sys::some_handler_interrupts()
                };
                if interrupts {
                    return Err(Errno(libc::EINTR));
                }
            }
            Err(e) => return Err(Errno(e)),
        }
    }
}

/// Socket → pipe (see the module documentation).
fn socket_to_pipe(entry: Entry, sfd: c_int, pfd: c_int, nonblock: bool, len: usize) -> Answer<isize> {
    let cap = sys::pipe_size(pfd).unwrap_or(1 << 16).clamp(4096, MAX_CHUNK);
    let mut chunk = Vec::new();
    loop {
        // The kernel waits for room in the pipe first.
        if let Err(e) = wait_pipe(pfd, libc::POLLOUT, nonblock) {
            return Dispatch::Done(Err(e));
        }
        chunk.resize(len.min(cap), 0);
        let v = [one(chunk.as_mut_ptr().cast(), chunk.len())];
        // SAFETY: `v` describes `chunk`, writable.
        let n = match unsafe { io::recv(entry, sfd, &v, libc::MSG_PEEK) } {
            Dispatch::Done(Ok(n)) => n as usize,
            other => return other,
        };
        if n == 0 {
            return ok(0);
        }
        let data = chunk.get(..n).unwrap_or_default();
        // RWF_NOWAIT has been seen to fail with EOPNOTSUPP on a pipe
        // (kernel 6.18, under the shim): then a write of one page at
        // most, which a pipe with room (POLLOUT: a free slot) takes whole.
        let wrote = match sys::write_nowait(pfd, data) {
            Err(libc::EOPNOTSUPP) => sys::write_once(pfd, data.get(..n.min(4096)).unwrap_or_default()),
            r => r,
        };
        match wrote {
            Ok(w) => {
                // What the pipe took leaves the socket; the rest stays.
                let v = [one(chunk.as_mut_ptr().cast(), w)];
                // SAFETY: as above; the bytes were peeked, so this does
                // not wait.
                let _ = unsafe { io::recv(entry, sfd, &v, libc::MSG_DONTWAIT) };
                return ok(w as isize);
            }
            // Filled by another writer meanwhile: wait again.
            Err(libc::EAGAIN) if !nonblock => {}
            Err(e) => return fail(e),
        }
    }
}

/// Room on the connection of `entry` now; an error a send would report
/// (with its `SIGPIPE`) first.
fn room_now(entry: Entry) -> Result<usize, Answer<isize>> {
    // SAFETY: an empty send reads no buffer.
    match unsafe { io::send(entry, &[], 0) } {
        Dispatch::Done(Ok(_)) => {}
        other => return Err(other),
    }
    let conn = conn_of(&crate::sockets::table::lock(), entry);
    let room = conn.and_then(|(q, h)| {
        socket::stack(q)?
            .iface
            .tcp
            .with_conn(h, |s| Ok(s.send_room()))
            .map_err(se)
    });
    room.map_err(|e| Dispatch::Done(Err(e)))
}

/// Waits for room on the connection of `entry`, as a send waits.
fn wait_room(entry: Entry) -> Result<usize, Answer<isize>> {
    let (nonblock, timeout) = {
        let mut core = crate::sockets::table::lock();
        match io::mode(&mut core, entry) {
            Ok((nb, _, st)) => (nb, st),
            Err(e) => return Err(Dispatch::Done(Err(e))),
        }
    };
    let dl = deadline(timeout);
    loop {
        match room_now(entry)? {
            0 => {}
            n => return Ok(n),
        }
        if nonblock {
            return Err(fail(libc::EAGAIN));
        }
        let mut f = |core: &mut Core| {
            let (q, h) = conn_of(core, entry).ok()?;
            let r = socket::stack(q).ok()?.iface.tcp.readiness(h).ok()?;
            (r.writable || r.hangup || r.error).then_some(())
        };
        match block(dl, &[WaitOn::Sock(entry.handle())], &mut [], None, &mut f) {
            Ok(()) | Err(WaitEnd::Interrupted { restart: true }) => {}
            Err(WaitEnd::TimedOut) => return Err(fail(libc::EAGAIN)),
            Err(WaitEnd::Interrupted { .. }) => return Err(fail(libc::EINTR)),
        }
    }
}

/// Pipe → socket (see the module documentation).
fn pipe_to_socket(pfd: c_int, nonblock: bool, entry: Entry, sfd: c_int, len: usize) -> Answer<isize> {
    let _ = sfd;
    let mut chunk = Vec::new();
    loop {
        if let Err(e) = wait_pipe(pfd, libc::POLLIN, nonblock) {
            return Dispatch::Done(Err(e));
        }
        let room = match wait_room(entry) {
            Ok(n) => n,
            Err(answer) => return answer,
        };
        // What the pipe holds now is read without blocking; an empty pipe
        // that polled ready has no writer (0), or another reader emptied it.
        let avail = match sys::fionread(pfd) {
            Ok(n) => n,
            Err(e) => return fail(e),
        };
        if avail == 0 {
            let mut p = [pollfd {
                fd: pfd,
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: a null signal mask: the thread's own.
            let hup = unsafe { sys::ppoll(&mut p, Some(Duration::ZERO), std::ptr::null()) }
                .is_ok_and(|_| p.first().is_some_and(|p| p.revents & libc::POLLHUP != 0));
            match (hup, nonblock) {
                (true, _) => return ok(0),
                (false, true) => return fail(libc::EAGAIN),
                (false, false) => continue,
            }
        }
        chunk.resize(len.min(room).min(avail).min(MAX_CHUNK), 0);
        let n = match sys::read(pfd, &mut chunk) {
            Ok(0) => return ok(0),
            Ok(n) => n,
            Err(libc::EAGAIN) if !nonblock => continue,
            Err(e) => return fail(e),
        };
        let v = [one(chunk.as_ptr().cast(), n)];
        // SAFETY: `v` describes `chunk`'s first `n` bytes. There was room
        // for them: the send queues them all without waiting.
        let r = unsafe { io::send(entry, &v, 0) };
        if let Dispatch::Done(Ok(k)) = r {
            if (k as usize) < n {
                log!(
                    warn,
                    "splice to fd {sfd}: {} bytes read from the pipe could not be queued",
                    n - k as usize
                );
            }
        }
        return r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (c_int, c_int) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        (fds[0], fds[1])
    }

    fn errno_of(a: Answer<isize>) -> c_int {
        match a {
            Dispatch::Done(Err(Errno(e))) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn the_arguments_are_checked_as_the_kernel_checks_them() {
        let (r, w) = pipe();
        // A socket of ours, as far as the table knows: the checks come
        // before any use of it.
        // SAFETY: socket(2) takes no pointers.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        let ours = FDS.install(s, State::Tcp, 77).unwrap();
        let mut off = 0i64;
        let o: *mut i64 = &mut off;
        let null = std::ptr::null_mut();
        // SAFETY: each call's offsets are null or point to `off`.
        unsafe {
            assert_eq!(
                splice(r, null, w, null, 10, 0),
                Dispatch::NotOurs,
                "two pipes: the kernel's"
            );
            assert_eq!(splice(s, null, w, null, 0, 0x100), ok(0), "len 0 first");
            assert_eq!(errno_of(splice(s, null, w, null, 10, 0x100)), libc::EINVAL);
            assert_eq!(errno_of(splice(s, null, 99_999, null, 10, 0)), libc::EBADF);
            assert_eq!(errno_of(splice(s, null, w, o, 10, 0)), libc::ESPIPE);
            assert_eq!(errno_of(splice(r, o, s, null, 10, 0)), libc::ESPIPE);
            assert_eq!(
                errno_of(splice(s, null, r, null, 10, 0)),
                libc::EBADF,
                "a pipe's read end as out"
            );
            assert_eq!(
                errno_of(splice(w, null, s, null, 10, 0)),
                libc::EBADF,
                "a pipe's write end as in"
            );
            assert_eq!(errno_of(splice(s, null, s, null, 10, 0)), libc::EINVAL, "no pipe");
            assert_eq!(
                errno_of(splice(s, o, w, null, 10, 0)),
                libc::EINVAL,
                "a socket has no position"
            );
            assert_eq!(errno_of(splice(r, null, s, o, 10, 0)), libc::EINVAL);
        }
        assert_eq!(FDS.get(s), ours);
        FDS.clear(s);
        for fd in [r, w, s] {
            // SAFETY: fds this test owns.
            unsafe { libc::close(fd) };
        }
    }
}
