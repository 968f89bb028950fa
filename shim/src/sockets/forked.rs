//! The child's side of `fork` (issue 10, item 3): an accelerated TCP
//! connection inherited from a parent whose stack runs is reached through
//! the parent's proxy (`proxy`), since the device is the parent's.
//!
//! At the fork ([`after_fork_in_child`], in the child's handler: raw
//! system calls only, no allocation, no lock another thread may hold) the
//! child closes the parent's proxy fds, keeps its end of the control
//! channel the fork made, and its inherited connections become
//! [`State::Inherited`]: nothing moves until the child uses one (redis's
//! `BGSAVE` child never touches its clients, and must not take their
//! bytes). Listeners and UDP sockets stay inert (`EBADF`, as before: a
//! prefork `accept` in children belongs to the multi-process issue), as
//! does everything in a child that has no channel (a grandchild).
//!
//! The first use of an inherited connection ([`attach`]: a data call,
//! `poll`/`select`/`epoll_ctl`, `fcntl`, `ioctl`, `setsockopt`,
//! `shutdown`, or an `exec` that keeps the fd) asks the parent to attach
//! it: the reply carries one end of a socketpair the parent pumps to and
//! from the stack, and the child puts it on every fd number that holds the
//! connection (`dup3`, keeping each one's `FD_CLOEXEC`), with the
//! socket's `O_NONBLOCK` and timeouts. The fds are then
//! [`State::Proxied`]: kernel fds for the data calls and readiness, the
//! parent's connection for the names, the options and `shutdown`, which
//! are RPCs on the control channel. Closing an inherited connection that
//! was never attached releases it ([`released`]); an attached one is
//! released by the parent when the child's end is closed.
//!
//! Requests are serialised by one lock (taken only outside the fork
//! handler); a failed channel (the parent is gone) answers `EBADF`.

use crate::fdtable::{Entry, State, FDS};
use crate::interpose::skeleton::{Dispatch, Errno};
use crate::logging::log;
use crate::sockets::forkwire::{self as wire, Op, Reply, Request, DATA, REPLY_LEN};
use crate::sockets::socket::Answer;
use crate::sys;
use libc::{c_int, c_void, sockaddr, socklen_t};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::*};
use std::sync::Mutex;

/// This child's end of its control channel (-1: none).
static CTL: AtomicI32 = AtomicI32::new(-1);
/// Whether inherited connections may be in the table (the calls that scan
/// for them do nothing otherwise).
static ANY: AtomicBool = AtomicBool::new(false);
/// One request at a time on the channel.
static RPC: Mutex<()> = Mutex::new(());
/// Failures the parent reported (a reset), by socket handle, not yet
/// reported to the program.
static FAILED: Mutex<Vec<(u32, c_int)>> = Mutex::new(Vec::new());

/// Records message `msg` if it is the parent's unasked notice of a
/// failure; whether it was.
fn note(msg: &[u8]) -> bool {
    match Request::decode(msg) {
        Some(r) if r.op == Op::Failed => {
            FAILED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((r.handle, r.a));
            true
        }
        _ => false,
    }
}

/// The failure the parent reported for connection `handle` (a reset),
/// once: a read that found the end of the stream, or a write that found
/// it shut, reports it instead, as the kernel's TCP reports a reset. The
/// notices waiting on the channel are read first.
pub fn failure(handle: u32) -> Option<c_int> {
    let ctl = CTL.load(Acquire);
    if ctl < 0 {
        return None;
    }
    {
        let _one = RPC.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = [0u8; REPLY_LEN + 8];
        while let Ok((n, fd)) = wire::recv_msg(ctl, &mut buf, libc::MSG_DONTWAIT) {
            if let Some(fd) = fd {
                sys::close(fd);
            }
            if n == 0 || !note(buf.get(..n).unwrap_or_default()) {
                break;
            }
        }
    }
    let mut failed = FAILED.lock().unwrap_or_else(|e| e.into_inner());
    let i = failed.iter().position(|&(h, _)| h == handle)?;
    Some(failed.swap_remove(i).1)
}

/// A read on an attached connection returned `r` (for `want` bytes):
/// the end of the stream is the connection's failure, if the parent
/// reported one.
pub fn after_read(entry: Entry, r: isize, want: usize) -> Answer<isize> {
    if r < 0 {
        return Dispatch::Done(Err(Errno(sys::errno())));
    }
    if r == 0 && want > 0 {
        if let Some(e) = failure(entry.handle()) {
            return Dispatch::Done(Err(Errno(e)));
        }
    }
    Dispatch::Done(Ok(r))
}

/// A write on an attached connection (made with `MSG_NOSIGNAL`) returned
/// `r`: `EPIPE` is the connection's failure if the parent reported one
/// (no `SIGPIPE` then, as the kernel's TCP), else `EPIPE` with `SIGPIPE`
/// unless the program asked for none (`nosignal`).
pub fn after_write(entry: Entry, r: isize, nosignal: bool) -> Answer<isize> {
    if r >= 0 {
        return Dispatch::Done(Ok(r));
    }
    let e = sys::errno();
    if e != libc::EPIPE {
        return Dispatch::Done(Err(Errno(e)));
    }
    if let Some(f) = failure(entry.handle()) {
        return Dispatch::Done(Err(Errno(f)));
    }
    if !nosignal {
        crate::sockets::io::sigpipe();
    }
    Dispatch::Done(Err(Errno(libc::EPIPE)))
}

/// In the child of `fork`, from its handler: `ctl` is the channel's end
/// the fork made (-1: none). Returns how many fds became inert and how
/// many inherited.
pub fn after_fork_in_child(ctl: c_int) -> (usize, usize) {
    // The parent's proxy fds (its channels to other children, its
    // socketpair ends, kept placeholders, its eventfd) are not ours; nor
    // is a channel of our own parent's, if this is a grandchild.
    FDS.each_in(State::Proxy, |fd, _| {
        FDS.clear(fd);
        sys::close(fd);
    });
    crate::sockets::proxy::after_fork_in_child();
    CTL.store(ctl, Release);
    if ctl < 0 {
        let r = FDS.mark_after_fork(None);
        ANY.store(false, Release);
        return r;
    }
    let _ = FDS.install(ctl, State::Proxy, 0);
    let core = crate::sockets::table::lock();
    let is_conn = |h: u32| {
        matches!(
            core.socks.get(h).map(|s| &s.kind),
            Some(crate::sockets::sock::Kind::Tcp(..))
        )
    };
    let r = FDS.mark_after_fork(Some(&is_conn));
    drop(core);
    ANY.store(r.1 > 0, Release);
    r
}

/// Sends `req` and waits for the reply (and the fd it carries).
fn rpc(req: &Request) -> Result<(Reply, Option<c_int>), Errno> {
    rpc_with(req, None)
}

/// [`rpc`], passing `fd` along.
fn rpc_with(req: &Request, fd: Option<c_int>) -> Result<(Reply, Option<c_int>), Errno> {
    let _one = RPC.lock().unwrap_or_else(|e| e.into_inner());
    let ctl = CTL.load(Acquire);
    if ctl < 0 {
        return Err(Errno(libc::EBADF));
    }
    wire::send_msg(ctl, &req.encode(), fd, 0).map_err(|_| Errno(libc::EBADF))?;
    let mut buf = [0u8; REPLY_LEN + 8];
    let mut got = wire::recv_msg(ctl, &mut buf, 0);
    // The parent's notices may come first.
    while let Ok((n, None)) = got {
        if n == 0 || !note(buf.get(..n).unwrap_or_default()) {
            break;
        }
        got = wire::recv_msg(ctl, &mut buf, 0);
    }
    match got {
        Ok((n, fd)) => match buf.get(..n).and_then(Reply::decode) {
            Some(r) => Ok((r, fd)),
            None => {
                if let Some(fd) = fd {
                    sys::close(fd);
                }
                log!(warn, "fork: the parent's proxy answered nonsense ({n} bytes)");
                Err(Errno(libc::EBADF))
            }
        },
        Err(_) => Err(Errno(libc::EBADF)),
    }
}

/// Attaches the inherited connection of `fd` (entry `entry`): see the
/// module docs. Every fd holding it is [`State::Proxied`] after.
pub fn attach(fd: c_int, entry: Entry) -> Result<(), Errno> {
    let handle = entry.handle();
    // The placeholder goes along: the parent keeps it for the options.
    let (r, got) = rpc_with(&Request::new(Op::Attach, handle, 0, 0, 0), Some(fd))?;
    if let Err(e) = r.result() {
        log!(
            warn,
            "fd {fd}: the parent would not attach its connection (errno {e})"
        );
        return Err(Errno(libc::EBADF));
    }
    let Some(end) = got else {
        return Err(Errno(libc::EBADF));
    };
    // The socket as this child's copy of the parent's table knew it.
    let (nonblock, rcv, snd) = {
        let core = crate::sockets::table::lock();
        core.socks.get(handle).map_or((false, None, None), |s| {
            (s.nonblock, s.opts.rcvtimeo, s.opts.sndtimeo)
        })
    };
    let _ = sys::set_nonblocking(end, nonblock);
    for (name, t) in [(libc::SO_RCVTIMEO, rcv), (libc::SO_SNDTIMEO, snd)] {
        if let Some(t) = t {
            let tv = libc::timeval {
                tv_sec: t.as_secs() as libc::time_t,
                tv_usec: t.subsec_micros() as libc::suseconds_t,
            };
            // SAFETY: a timeval is plain bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&tv as *const libc::timeval).cast::<u8>(),
                    size_of::<libc::timeval>(),
                )
            };
            let _ = wire::setsockopt(end, libc::SOL_SOCKET, name, bytes);
        }
    }
    let mut failed = None;
    FDS.each_in(State::Inherited, |f, e| {
        if e.handle() != handle {
            return;
        }
        let cloexec = wire::fcntl(f, libc::F_GETFD, 0).is_ok_and(|fl| fl & libc::FD_CLOEXEC != 0);
        match wire::dup3(end, f, if cloexec { libc::O_CLOEXEC } else { 0 }) {
            Ok(()) => {
                let _ = FDS.rehandle(f, e, State::Proxied, handle);
            }
            Err(err) => failed = Some(err),
        }
    });
    sys::close(end);
    if let Some(e) = failed {
        log!(
            warn,
            "fd {fd}: cannot put the attached connection in place (errno {e})"
        );
    }
    log!(debug, "fd {fd}: the parent's connection attached");
    if FDS.get(fd).state() == State::Proxied {
        Ok(())
    } else {
        Err(Errno(libc::EBADF))
    }
}

/// Attaches `fd` if it is an inherited connection; its entry after.
pub fn attach_if_inherited(fd: c_int) -> Entry {
    let e = FDS.get(fd);
    if e.state() == State::Inherited {
        let _ = attach(fd, e);
        return FDS.get(fd);
    }
    e
}

/// Before `poll` or `select`: attaches every inherited connection among
/// `fds`.
pub fn attach_each(fds: impl IntoIterator<Item = c_int>) {
    if !ANY.load(Acquire) {
        return;
    }
    for fd in fds {
        attach_if_inherited(fd);
    }
}

/// Whether inherited connections may be in the table.
pub fn any() -> bool {
    ANY.load(Acquire)
}

/// Before an `exec` (or a spawn): attaches every inherited connection the
/// new program keeps (not close-on-exec), so that it gets a working fd.
pub fn before_exec() {
    if !ANY.load(Acquire) {
        return;
    }
    // Collected first (attaching changes the table under the scan), in
    // rounds of up to 64.
    let mut todo = [-1 as c_int; 64];
    loop {
        let mut n = 0;
        FDS.each_in(State::Inherited, |fd, _| {
            let kept = wire::fcntl(fd, libc::F_GETFD, 0).is_ok_and(|fl| fl & libc::FD_CLOEXEC == 0);
            if let (true, Some(slot)) = (kept, todo.get_mut(n)) {
                *slot = fd;
                n += 1;
            }
        });
        let mut moved = false;
        for &fd in todo.get(..n).unwrap_or_default() {
            moved |= attach(fd, FDS.get(fd)).is_ok();
        }
        if !moved {
            return;
        }
    }
}

/// An inherited connection's fd was closed (its entry was `entry`): if no
/// other fd of this child holds it, the parent drops the child's
/// reference.
pub fn released(entry: Entry) {
    let mut others = false;
    FDS.each_in(State::Inherited, |_, e| others |= e.handle() == entry.handle());
    FDS.each_in(State::Proxied, |_, e| others |= e.handle() == entry.handle());
    if others {
        return;
    }
    let _one = RPC.lock().unwrap_or_else(|e| e.into_inner());
    let ctl = CTL.load(Acquire);
    if ctl >= 0 {
        let req = Request::new(Op::Release, entry.handle(), 0, 0, 0);
        let _ = wire::send_msg(ctl, &req.encode(), None, 0);
    }
}

/// One of the shim's own fds of this child was closed by the program (a
/// `closefrom`): if it was the control channel, the parent's proxy is out
/// of reach from now on.
pub fn proxy_fd_dropped(fd: c_int) {
    let _ = CTL.compare_exchange(fd, -1, AcqRel, Acquire);
}

/// `getsockopt` on an inherited or attached connection: the parent's
/// answer.
///
/// # Safety
///
/// `val`/`len` as for `getsockopt`.
pub unsafe fn getsockopt(
    fd: c_int,
    entry: Entry,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> Answer<c_int> {
    // The parent answers on the placeholder the attach hands it.
    let entry = if entry.state() == State::Inherited {
        attach_if_inherited(fd)
    } else {
        entry
    };
    if len.is_null() {
        return Dispatch::Done(Err(Errno(libc::EFAULT)));
    }
    // SAFETY: the caller's contract.
    let room = unsafe { len.read_unaligned() };
    if (room as c_int) < 0 {
        return Dispatch::Done(Err(Errno(libc::EINVAL)));
    }
    let req = Request::new(Op::GetOpt, entry.handle(), level, name, room.min(DATA as u32));
    let r = match rpc(&req) {
        Ok((r, _)) => r,
        Err(e) => return Dispatch::Done(Err(e)),
    };
    if let Err(e) = r.result() {
        return Dispatch::Done(Err(Errno(e)));
    }
    // SAFETY: the caller's contract; at most `room` bytes.
    Dispatch::Done(
        unsafe {
            crate::sockets::io::put_bytes(
                val,
                len,
                r.data.get(..(r.len as usize).min(DATA)).unwrap_or_default(),
            )
        }
        .map(|_| 0),
    )
}

/// `setsockopt` on an inherited or attached connection: the parent's
/// answer; the timeouts also on this child's end (its blocking calls are
/// the kernel's).
///
/// # Safety
///
/// `val` valid for `len` bytes, as for `setsockopt`.
pub unsafe fn setsockopt(
    fd: c_int,
    entry: Entry,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> Answer<c_int> {
    let entry = if entry.state() == State::Inherited {
        attach_if_inherited(fd)
    } else {
        entry
    };
    if (len as usize) > DATA {
        return Dispatch::Done(Err(Errno(libc::EINVAL)));
    }
    let bytes: &[u8] = if val.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(val.cast(), len as usize) }
    };
    if val.is_null() && len > 0 {
        return Dispatch::Done(Err(Errno(libc::EFAULT)));
    }
    let req = Request::new(Op::SetOpt, entry.handle(), level, name, 0).with_data(bytes);
    let r = match rpc(&req) {
        Ok((r, _)) => r.result(),
        Err(e) => return Dispatch::Done(Err(e)),
    };
    if r.is_ok()
        && level == libc::SOL_SOCKET
        && matches!(name, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO)
        && entry.state() == State::Proxied
    {
        let _ = wire::setsockopt(fd, level, name, bytes);
    }
    Dispatch::Done(r.map(|_| 0).map_err(Errno))
}

/// `getsockname`/`getpeername` on an inherited or attached connection.
///
/// # Safety
///
/// `addr`/`len` as for those calls.
pub unsafe fn name(entry: Entry, peer: bool, addr: *mut sockaddr, len: *mut socklen_t) -> Answer<c_int> {
    if len.is_null() {
        return Dispatch::Done(Err(Errno(libc::EFAULT)));
    }
    // SAFETY: the caller's contract.
    let room = unsafe { len.read_unaligned() };
    if (room as c_int) < 0 {
        return Dispatch::Done(Err(Errno(libc::EINVAL)));
    }
    if addr.is_null() && room > 0 {
        return Dispatch::Done(Err(Errno(libc::EFAULT)));
    }
    let req = Request::new(Op::Name, entry.handle(), c_int::from(peer), 0, DATA as u32);
    let r = match rpc(&req) {
        Ok((r, _)) => r,
        Err(e) => return Dispatch::Done(Err(e)),
    };
    if let Err(e) = r.result() {
        return Dispatch::Done(Err(Errno(e)));
    }
    let full = (r.len as usize).min(DATA);
    let n = full.min(room as usize);
    if n > 0 {
        // SAFETY: `addr` has room for `room >= n` bytes.
        unsafe { std::ptr::copy_nonoverlapping(r.data.as_ptr(), addr.cast::<u8>(), n) };
    }
    // SAFETY: the caller's contract.
    unsafe { len.write_unaligned(r.len) };
    Dispatch::Done(Ok(0))
}

/// `shutdown` on an inherited or attached connection: announced to the
/// parent (which checks it, and sends the FIN once the child's data has
/// gone), then done on this child's end.
pub fn shutdown(fd: c_int, entry: Entry, how: c_int) -> Answer<c_int> {
    if !matches!(how, libc::SHUT_RD | libc::SHUT_WR | libc::SHUT_RDWR) {
        return Dispatch::Done(Err(Errno(libc::EINVAL)));
    }
    let entry = if entry.state() == State::Inherited {
        attach_if_inherited(fd)
    } else {
        entry
    };
    if entry.state() != State::Proxied {
        return Dispatch::Done(Err(Errno(libc::EBADF)));
    }
    let r = match rpc(&Request::new(Op::Shutdown, entry.handle(), how, 0, 0)) {
        Ok((r, _)) => r.result(),
        Err(e) => return Dispatch::Done(Err(e)),
    };
    if let Err(e) = r {
        return Dispatch::Done(Err(Errno(e)));
    }
    Dispatch::Done(wire::shutdown(fd, how).map(|()| 0).map_err(Errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests that set the channel run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn without_a_channel_every_request_fails_cleanly() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // The test process is no child of a fork: no channel.
        assert_eq!(CTL.load(Acquire), -1);
        assert_eq!(
            rpc(&Request::new(Op::Name, 1, 0, 0, 16)).err(),
            Some(Errno(libc::EBADF))
        );
        assert_eq!(attach(3, Entry::of(State::Inherited, 1)), Err(Errno(libc::EBADF)));
    }

    #[test]
    fn an_attach_reply_lands_on_every_fd_of_the_connection() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // A pretend parent on the other end of a channel: it answers one
        // attach with one end of a stream pair.
        let (parent, child) = wire::pair(libc::SOCK_SEQPACKET).unwrap();
        let (far, near) = wire::pair(libc::SOCK_STREAM).unwrap();
        // Two fds holding handle 7 (a dup), far from the test's own.
        let (a, b) = (1001, 1002);
        for fd in [a, b] {
            wire::dup3(parent, fd, 0).unwrap();
            FDS.install(fd, State::Inherited, 7).unwrap();
        }
        wire::fcntl(b, libc::F_SETFD, libc::FD_CLOEXEC).unwrap();
        wire::send_msg(parent, &Reply::of(Ok(0)).encode(), Some(near), 0).unwrap();
        sys::close(near);
        CTL.store(child, Release);
        assert_eq!(attach(a, FDS.get(a)), Ok(()));
        CTL.store(-1, Release);
        // The request the parent got.
        let mut buf = [0u8; wire::REQUEST_LEN];
        let (n, _) = wire::recv_msg(parent, &mut buf, libc::MSG_DONTWAIT).unwrap();
        let req = Request::decode(&buf[..n]).unwrap();
        assert_eq!((req.op, req.handle), (Op::Attach, 7));
        for fd in [a, b] {
            assert_eq!((FDS.get(fd).state(), FDS.get(fd).handle()), (State::Proxied, 7));
        }
        // Each fd kept its own close-on-exec flag.
        assert_eq!(wire::fcntl(a, libc::F_GETFD, 0).unwrap() & libc::FD_CLOEXEC, 0);
        assert_ne!(wire::fcntl(b, libc::F_GETFD, 0).unwrap() & libc::FD_CLOEXEC, 0);
        // Both are the socketpair's end now.
        assert_eq!(wire::send_some(far, b"x").unwrap(), 1);
        let mut got = [0u8; 2];
        assert_eq!(wire::recv_some(b, &mut got), Ok(1));
        for fd in [a, b, far, parent, child] {
            FDS.clear(fd);
            sys::close(fd);
        }
    }
}
