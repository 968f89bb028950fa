//! How a connection opens: `accept` (the stack's listener, then the
//! kernel's half of a wildcard listener, in the order connections came;
//! blocking in arrival order through [`crate::sockets::acceptors`]) and
//! `connect` (on the stack when it routes the address, in the kernel
//! otherwise; again while connecting: `EALREADY`, then `EISCONN`;
//! `AF_UNSPEC` disconnects). Errors are the kernel's errnos.

use crate::counters::{self, Stay};
use crate::engine::stacks::{self, Q};
use crate::engine::worker::now;
use crate::fdtable::{Entry, State, FDS};
use crate::interpose::real;
use crate::interpose::skeleton::{Dispatch, Errno};
use crate::sockets::acceptors;
use crate::sockets::block::{block, WaitEnd, WaitOn};
use crate::sockets::epoll;
use crate::sockets::sock::{Kind, Opts, Sock};
use crate::sockets::sockaddr::{self as sa, Addr};
use crate::sockets::table::Core;
use crate::sys;
use accel_stack::iface::TcpHandle;
use libc::{c_int, sockaddr, socklen_t};

use crate::sockets::socket::{
    activate, activate_own_listeners, apply_opts, deadline, ensure_started, fail, ok, our_ip, routed, se,
    sock_mut, to_kernel, Answer,
};

/// `accept4(2)` (and `accept`, with no flags).
///
/// # Safety
///
/// `addr`/`len` are null or valid as for `accept`.
pub unsafe fn accept(
    entry: Entry,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> Answer<c_int> {
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        return fail(libc::EINVAL);
    }
    let (entry, timeout, nonblock, kernel) = {
        let mut core = crate::sockets::table::lock();
        let entry = activate(&mut core, fd, entry);
        match core.socks.get(entry.handle()) {
            Some(Sock {
                kind: Kind::Listener {
                    tcp: Some(_), kernel, ..
                },
                opts,
                nonblock,
                ..
            }) if entry.state() == State::Tcp => (entry, opts.rcvtimeo, *nonblock, *kernel),
            _ if entry.state() == State::Tcp => return fail(libc::EINVAL),
            _ => return Dispatch::NotOurs,
        }
    };
    let mut extra = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    let extra: &mut [libc::pollfd] = if kernel { &mut extra } else { &mut [] };
    let try_accept = |core: &mut Core| -> Option<Result<c_int, Errno>> {
        // SAFETY: the caller's contract.
        match unsafe { accept_once(core, entry, fd, addr, len, flags, kernel) } {
            Err(Errno(libc::EAGAIN)) => None,
            r => Some(r),
        }
    };
    if nonblock {
        // What the queue holds first; the devices only when it holds
        // nothing (on net_tap a poll that finds no frame is a system call).
        if let Some(r) = try_accept(&mut crate::sockets::table::lock()) {
            return Dispatch::Done(r);
        }
        stacks::poll_all_unless_fresh();
        let mut core = crate::sockets::table::lock();
        let f = try_accept;
        return Dispatch::Done(f(&mut core).unwrap_or(Err(Errno(libc::EAGAIN))));
    }
    let deadline = deadline(timeout);
    // Blocked threads take the connections in the order they blocked, as
    // the kernel's exclusive waits give them (see `acceptors`).
    let mut line = acceptors::Place::default();
    let mut f = |core: &mut Core| line.attempt(core, entry.handle(), &try_accept);
    let r = loop {
        match block(deadline, &[WaitOn::Sock(entry.handle())], extra, None, &mut f) {
            Ok(r) => break Dispatch::Done(r),
            Err(WaitEnd::TimedOut) => break fail(libc::EAGAIN),
            Err(WaitEnd::Interrupted { restart: false }) => break fail(libc::EINTR),
            Err(WaitEnd::Interrupted { .. }) => {}
        }
    };
    line.leave(&mut crate::sockets::table::lock(), entry.handle());
    r
}

/// One try at accepting: a stack connection first, then a kernel one.
///
/// # Safety
///
/// As for [`accept`].
unsafe fn accept_once(
    core: &mut Core,
    entry: Entry,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
    kernel: bool,
) -> Result<c_int, Errno> {
    let Some(Sock {
        kind: Kind::Listener { tcp: Some(lhs), .. },
        opts,
        ..
    }) = core.socks.get(entry.handle())
    else {
        return Err(Errno(libc::EINVAL));
    };
    let opts = *opts;
    if FDS.get(fd) != entry {
        return Err(Errno(libc::EBADF)); // closed while we waited
    }
    // The oldest connection of any stack's listener first, as the
    // kernel's one accept queue is FIFO (a single accepting thread gets
    // every connection, in order).
    let mut order: Vec<(accel_stack::Instant, Q)> = stacks::mine_first()
        .filter_map(|q| {
            let lh = *lhs.get(usize::from(q))?;
            Some((stacks::lock(q)?.iface.tcp.accept_since(lh)?, q))
        })
        .collect();
    order.sort_by_key(|&(t, _)| t);
    let mut got = None;
    for q in order.into_iter().map(|(_, q)| q) {
        let Some(&lh) = lhs.get(usize::from(q)) else {
            continue;
        };
        let Some(mut stack) = stacks::lock(q) else {
            continue;
        };
        match stack.iface.tcp.accept(lh) {
            Ok((h, remote)) => {
                got = Some((q, h, remote, stack));
                break;
            }
            Err(e) if e.0 != libc::EAGAIN => return Err(se(e)),
            Err(_) => {}
        }
    }
    match got {
        Some((q, h, remote, mut stack)) => {
            let Some(real_socket) = real::socket.get() else {
                return Err(Errno(libc::ENOSYS));
            };
            // SAFETY: socket takes no pointers.
            let nfd =
                unsafe { real_socket(libc::AF_INET, libc::SOCK_STREAM | (flags & libc::SOCK_CLOEXEC), 0) };
            if nfd < 0 {
                let e = sys::errno();
                let _ = stack.iface.tcp.close(h, now());
                return Err(Errno(e));
            }
            let local = stack.iface.tcp.local_addr(h).ok().flatten();
            let mac = stack.iface.neighbour(*remote.ip(), now());
            drop(stack);
            // Linux's accepted socket inherits its listener's options, but
            // not its timeouts, accept-queue settings or ACK mode.
            crate::sockets::sockopt::inherit(fd, nfd, &opts);
            let mut sock = Sock::pending(false, flags & libc::SOCK_NONBLOCK != 0);
            sock.kind = Kind::Tcp(q, h);
            sock.reap = local.and_then(|l| crate::engine::reaper::record(l, remote, mac.map(|m| m.0)));
            sock.opts = Opts {
                rcvtimeo: None,
                sndtimeo: None,
                defer_accept: None,
                quickack_off: false,
                ..opts
            };
            let sh = core.socks.insert(sock);
            if FDS.install(nfd, State::Tcp, sh).is_err() {
                FDS.clear(nfd);
                let _ = FDS.install(nfd, State::Tcp, sh);
            }
            // SAFETY: the caller's contract.
            unsafe { sa::write(remote, addr, len) }?;
            Ok(nfd)
        }
        None if kernel => {
            let Some(f) = real::accept4.get() else {
                return Err(Errno(libc::EAGAIN));
            };
            // SAFETY: the caller's buffers, passed on.
            let r = unsafe { f(fd, addr, len, flags) };
            if r >= 0 {
                Ok(r)
            } else {
                Err(Errno(sys::errno()))
            }
        }
        None => Err(Errno(libc::EAGAIN)),
    }
}

/// `connect(2)`.
///
/// # Safety
///
/// `addr` is valid for `len` bytes or null.
pub unsafe fn connect(entry: Entry, fd: c_int, addr: *const sockaddr, len: socklen_t) -> Answer<c_int> {
    // SAFETY: the caller's contract.
    let parsed = unsafe { sa::read_in(addr, len) };
    let mut core = crate::sockets::table::lock();
    let Ok(sock) = sock_mut(&mut core, entry) else {
        return Dispatch::NotOurs;
    };
    let (opts, nonblock) = (sock.opts, sock.nonblock);
    match (&sock.kind, parsed) {
        (Kind::Udp(..), Ok(a)) => return crate::sockets::udp::connect(&mut core, entry, a),
        (_, Err(e)) => return Dispatch::Done(Err(e)),
        (Kind::Pending { dgram, bound, .. }, Ok(Addr::V4(a))) => {
            let (dgram, bound) = (*dgram, *bound);
            if !routed(*a.ip())
                || bound.is_some_and(|b| !b.ip().is_unspecified() && Some(*b.ip()) != our_ip())
            {
                to_kernel(&mut core, fd, entry, Stay::NotRouted);
                return Dispatch::NotOurs;
            }
            if !ensure_started(&mut core) {
                to_kernel(&mut core, fd, entry, Stay::StackDown);
                return Dispatch::NotOurs;
            }
            if !dgram && our_ip() == Some(*a.ip()) {
                activate_own_listeners(&mut core, a.port());
            }
            if dgram {
                let r = crate::sockets::udp::activate_for(&mut core, fd, entry, bound);
                return match r {
                    Ok(e) => crate::sockets::udp::connect(&mut core, e, Addr::V4(a)),
                    Err(e) => Dispatch::Done(Err(e)),
                };
            }
            let epolls = match sock_mut(&mut core, entry) {
                Ok(Sock {
                    kind: Kind::Pending { epolls, .. },
                    ..
                }) => std::mem::take(epolls),
                _ => Vec::new(),
            };
            // On this thread's stack: the flow's frames come back on its
            // queue (net_tap learns it from what we send, memif's queue i
            // talks to the peer's i).
            let q = stacks::mine();
            let Some(mut stack) = stacks::lock(q) else {
                return fail(libc::ENETDOWN);
            };
            let h = stack.iface.tcp.socket_new();
            apply_opts(&mut stack.iface.tcp, h, &opts);
            let mut r = Ok(());
            if let Some(b) = bound {
                r = stack.iface.tcp_bind(h, b).map(|_| ());
            }
            let r = r.and_then(|()| stack.iface.tcp_connect(h, a, now()));
            if let Err(e) = r {
                let _ = stack.iface.tcp.close(h, now());
                return Dispatch::Done(Err(se(e)));
            }
            let local = stack.iface.tcp.local_addr(h).ok().flatten();
            let mac = stack.iface.neighbour(*a.ip(), now());
            drop(stack);
            if let Ok(s) = sock_mut(&mut core, entry) {
                s.kind = Kind::Tcp(q, h);
                s.reap = local.and_then(|l| crate::engine::reaper::record(l, a, mac.map(|m| m.0)));
            }
            let entry = match FDS.transition(fd, entry, State::Tcp) {
                Ok(e) => e,
                Err(e) => e,
            };
            counters::accelerated();
            epoll::moved_to_shim(&mut core, fd, entry, &epolls);
            // The SYN goes out now.
            stacks::output(q);
        }
        (Kind::Pending { .. }, Ok(_)) => return Dispatch::NotOurs,
        (Kind::Listener { .. }, _) => return fail(libc::EISCONN),
        (Kind::Tcp(..), Ok(Addr::Unspec)) => {
            // AF_UNSPEC: the connection is dropped (a reset) and the socket
            // may connect again, as Linux's tcp_disconnect.
            disconnect(&mut core, fd, entry, true);
            return ok(0);
        }
        (Kind::Tcp(q, h), Ok(Addr::V4(_))) => {
            let (q, h) = (*q, *h);
            return again(&mut core, fd, entry, q, h);
        }
        (Kind::Tcp(..), Ok(_)) => return fail(libc::EAFNOSUPPORT),
    }
    if nonblock {
        if let Ok(s) = sock_mut(&mut core, entry) {
            s.in_progress = true;
        }
        return fail(libc::EINPROGRESS);
    }
    drop(core);
    let deadline = deadline(opts.sndtimeo);
    let mut f = |core: &mut Core| connected(core, entry);
    // A timed-out connect reports EINPROGRESS and goes on, as Linux's;
    // an interrupted one EINTR (it goes on too). Either way a later
    // connect reports how it ended. Under SA_RESTART (and without
    // SO_SNDTIMEO) Linux restarts the call, which waits on for the same
    // connection: so does this one.
    let r = loop {
        match block(deadline, &[WaitOn::Sock(entry.handle())], &mut [], None, &mut f) {
            Ok(r) => break r,
            Err(WaitEnd::TimedOut) => break Err(Errno(libc::EINPROGRESS)),
            Err(WaitEnd::Interrupted { restart: true }) => {}
            Err(WaitEnd::Interrupted { restart: false }) => break Err(Errno(libc::EINTR)),
        }
    };
    let mut core = crate::sockets::table::lock();
    match r {
        Err(Errno(e)) if e == libc::EINPROGRESS || e == libc::EINTR => {
            if let Ok(s) = sock_mut(&mut core, entry) {
                s.in_progress = true;
            }
        }
        // A blocking connect that failed leaves the socket unconnected.
        Err(_) => disconnect(&mut core, fd, entry, false),
        Ok(()) => {}
    }
    Dispatch::Done(r.map(|()| 0))
}

/// `connect` on a socket already connected or connecting (Linux's
/// `inet_stream_connect`): `EALREADY` while the handshake runs; once a
/// non-blocking connect has finished, the next `connect` reports it (0, or
/// its error, after which the socket is unconnected again and may connect
/// anew); `EISCONN` after that.
fn again(core: &mut Core, fd: c_int, entry: Entry, q: Q, h: TcpHandle) -> Answer<c_int> {
    let in_progress = sock_mut(core, entry).is_ok_and(|s| s.in_progress);
    let Some(mut stack) = stacks::lock(q) else {
        return fail(libc::EBADF);
    };
    let state = stack.iface.tcp.socket(h).map(|s| s.state());
    use accel_stack::tcp::State as T;
    match state {
        Some(T::SynSent | T::SynReceived) => fail(libc::EALREADY),
        Some(s) if s.synchronized() || s == T::TimeWait => {
            if in_progress {
                if let Ok(s) = sock_mut(core, entry) {
                    s.in_progress = false;
                }
                ok(0)
            } else {
                fail(libc::EISCONN)
            }
        }
        _ => {
            let e = stack
                .iface
                .tcp
                .with_conn(h, |s| Ok(s.take_error()))
                .ok()
                .flatten()
                .map_or(Errno(libc::ECONNABORTED), se);
            drop(stack);
            disconnect(core, fd, entry, false);
            Dispatch::Done(Err(e))
        }
    }
}

/// The TCP connection of `entry` is over for the program (a failed connect,
/// `connect(AF_UNSPEC)`): the stack socket goes (reset if `abort`) and the
/// socket is pending again, bound where the program bound it, free to
/// connect anew.
fn disconnect(core: &mut Core, fd: c_int, entry: Entry, abort: bool) {
    let Ok(sock) = sock_mut(core, entry) else { return };
    let Kind::Tcp(q, h) = sock.kind else { return };
    if let Some(slot) = sock.reap.take() {
        crate::engine::reaper::forget(slot);
    }
    sock.kind = Kind::Pending {
        dgram: false,
        bound: sock.user_bound,
        kernel_bound: sock.user_bound.is_some_and(|b| b.ip().is_unspecified()),
        epolls: Vec::new(),
    };
    sock.in_progress = false;
    if let Some(mut stack) = stacks::lock(q) {
        if abort {
            let _ = stack.iface.tcp.with_conn(h, |s| {
                s.abort();
                Ok(())
            });
        }
        let _ = stack.iface.tcp.close(h, now());
    }
    stacks::output(q);
    let _ = FDS.transition(fd, entry, State::Pending);
}

/// `Some` once the connection of `entry` is open or has failed.
fn connected(core: &mut Core, entry: Entry) -> Option<Result<(), Errno>> {
    let Some(Sock {
        kind: Kind::Tcp(q, h),
        ..
    }) = core.socks.get(entry.handle())
    else {
        return Some(Err(Errno(libc::EBADF)));
    };
    let (q, h) = (*q, *h);
    let mut stack = stacks::lock(q)?;
    let sock = stack.iface.tcp.socket(h)?;
    let outcome = connect_outcome(sock.state(), sock.error())?;
    if outcome.is_err() {
        // The error is the connect's: taken.
        let _ = stack.iface.tcp.with_conn(h, |s| Ok(s.take_error()));
    }
    Some(outcome)
}

/// How a blocking connect ends, from its connection's state and pending
/// error; `None`: not yet. A connection that was established and then
/// reset (the peer accepted and reset at once; `ECONNRESET`, or `EPIPE`
/// after its FIN) did connect: the reset is for the next call, as the
/// kernel reports it whenever the connecting thread runs before the reset
/// is processed. Ours may run after: parked while another thread (the
/// keeper) took both the SYN-ACK and the reset, it saw only the end (the
/// differential test's `peer_reset` failed so once, under load), and the
/// outcome must not hang on our scheduling.
fn connect_outcome(
    state: accel_stack::tcp::State,
    error: Option<accel_stack::Errno>,
) -> Option<Result<(), Errno>> {
    use accel_stack::tcp::State as T;
    if state.synchronized() {
        return Some(Ok(()));
    }
    if matches!(state, T::SynSent | T::SynReceived) {
        return None;
    }
    match error.map(se) {
        Some(Errno(libc::ECONNRESET | libc::EPIPE)) => Some(Ok(())),
        e => Some(Err(e.unwrap_or(Errno(libc::ECONNREFUSED)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accel_stack::tcp::State as T;

    fn e(n: i32) -> Option<accel_stack::Errno> {
        Some(accel_stack::Errno(n))
    }

    #[test]
    fn a_connect_ends_once_the_handshake_does() {
        assert_eq!(connect_outcome(T::SynSent, None), None);
        assert_eq!(connect_outcome(T::SynReceived, None), None);
        assert_eq!(connect_outcome(T::Established, None), Some(Ok(())));
        // The peer's FIN came with the handshake's end: connected all the same.
        assert_eq!(connect_outcome(T::CloseWait, None), Some(Ok(())));
    }

    #[test]
    fn a_refused_or_timed_out_connect_fails_with_its_error() {
        let refused = Some(Err(Errno(libc::ECONNREFUSED)));
        assert_eq!(connect_outcome(T::Closed, e(libc::ECONNREFUSED)), refused);
        assert_eq!(connect_outcome(T::Closed, None), refused);
        assert_eq!(
            connect_outcome(T::Closed, e(libc::ETIMEDOUT)),
            Some(Err(Errno(libc::ETIMEDOUT)))
        );
    }

    #[test]
    fn a_connection_reset_after_its_handshake_connected() {
        // Established, then reset before the connecting thread looked: the
        // reset is the next call's.
        assert_eq!(connect_outcome(T::Closed, e(libc::ECONNRESET)), Some(Ok(())));
        assert_eq!(connect_outcome(T::Closed, e(libc::EPIPE)), Some(Ok(())));
    }
}
