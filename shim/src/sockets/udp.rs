//! UDP sockets on the stack: bound to the accelerated address or the
//! wildcard, or connected (or sent) to an address the stack routes.
//!
//! A UDP socket moves to the stack at `bind` (no deferral: datagram
//! servers do not fork listeners) or at its first `connect`/`sendto` to a
//! routed address. Datagrams to addresses the stack does not route
//! (loopback) leave through the kernel placeholder, which a wildcard bind
//! also bound; datagrams arriving there (from loopback) are received too,
//! after the stack's. Receives copy at most the buffer and report
//! `MSG_TRUNC` as the kernel does; a blocking receive drives the worker.

use crate::counters::{self, Stay};
use crate::engine::stacks;
use crate::fdtable::{Entry, State, FDS};
use crate::interpose::real;
use crate::interpose::skeleton::{Dispatch, Errno};
use crate::sockets::block::{block, WaitEnd, WaitOn};
use crate::sockets::io::Iov;
use crate::sockets::sock::{Kind, Sock};
use crate::sockets::sockaddr::{self as sa, Addr};
use crate::sockets::socket::ensure_started;
use crate::sockets::socket::{deadline, fail, ok, routed, se, sock_mut, to_kernel, Answer};
use crate::sockets::table::Core;
use crate::sys;
use core::net::{Ipv4Addr, SocketAddrV4};
use libc::{c_int, sockaddr, socklen_t};

/// Puts the pending UDP socket of `fd` on the stack, bound to `bound` (or
/// an ephemeral port); returns its entry. If the stack cannot run, the
/// socket stays in the kernel (`Err(EAGAIN)` is never returned: the
/// caller gets `Ok` with a kernel entry).
pub fn activate_for(
    core: &mut Core,
    fd: c_int,
    entry: Entry,
    bound: Option<SocketAddrV4>,
) -> Result<Entry, Errno> {
    if !ensure_started(core) {
        if bound.is_some_and(|b| !b.ip().is_unspecified()) {
            log_down(fd);
        }
        to_kernel(core, fd, entry, Stay::StackDown);
        return Ok(FDS.get(fd));
    }
    // One socket per stack, all on the same port: a datagram comes in on
    // any queue. The first picks the port (if the program did not).
    let mut addr = bound.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let mut hs = Vec::with_capacity(stacks::count());
    let mut failed = None;
    let tos = core.socks.get(entry.handle()).map_or(0, |s| s.opts.tos);
    for q in 0..stacks::count() as stacks::Q {
        let Some(mut stack) = stacks::lock(q) else {
            failed = Some(Errno(libc::ENETDOWN));
            break;
        };
        let h = stack.iface.udp_socket();
        if let Some(u) = stack.iface.udp_mut(h) {
            u.set_tos(tos); // IP_TOS set before the socket came to the stack
        }
        match stack.iface.udp_bind(h, addr) {
            Ok(a) => {
                addr = a;
                hs.push(h);
            }
            Err(e) => {
                let _ = stack.iface.udp_close(h);
                failed = Some(se(e));
                break;
            }
        }
    }
    if let Some(e) = failed.or(hs.is_empty().then_some(Errno(libc::ENETDOWN))) {
        for (q, h) in hs.into_iter().enumerate() {
            if let Some(mut stack) = stacks::lock(q as stacks::Q) {
                let _ = stack.iface.udp_close(h);
            }
        }
        return Err(e);
    }
    let h = hs.into_boxed_slice();
    if let Ok(s) = sock_mut(core, entry) {
        s.kernel_bound = matches!(
            s.kind,
            Kind::Pending {
                kernel_bound: true,
                ..
            }
        );
        s.kind = Kind::Udp(h);
    }
    counters::accelerated();
    Ok(FDS.transition(fd, entry, State::Udp).unwrap_or_else(|e| e))
}

fn log_down(fd: c_int) {
    crate::logging::log!(
        warn,
        "fd {fd}: a UDP socket bound to the accelerated address stays in the kernel, where that address does not exist"
    );
}

/// `connect` on a UDP socket of the stack.
pub fn connect(core: &mut Core, entry: Entry, a: Addr) -> Answer<c_int> {
    let Some(Sock {
        kind: Kind::Udp(hs), ..
    }) = core.socks.get(entry.handle())
    else {
        return Dispatch::NotOurs; // it went to the kernel
    };
    if matches!(a, Addr::Other) {
        return fail(libc::EAFNOSUPPORT);
    }
    // Every stack's socket alike (a reply may come in on any queue).
    let mut r = Err(Errno(libc::EBADF));
    for (q, &h) in hs.iter().enumerate() {
        let Some(mut stack) = stacks::lock(q as stacks::Q) else {
            return fail(libc::EBADF);
        };
        r = match a {
            Addr::V4(r) => stack.iface.udp_connect(h, r).map(|()| 0).map_err(se),
            // AF_UNSPEC dissolves the association; the socket stays bound.
            _ => stack.iface.udp_disconnect(h).map(|()| 0).map_err(se),
        };
        if r.is_err() {
            break;
        }
    }
    Dispatch::Done(r)
}

/// One try at receiving a datagram into `iov`: `(copied, sender, full)`.
///
/// # Safety
///
/// `iov` describes writable buffers.
unsafe fn recv_once(
    core: &mut Core,
    entry: Entry,
    fd: c_int,
    iov: Iov<'_>,
    peek: bool,
) -> Result<(usize, SocketAddrV4, usize), Errno> {
    let Some(Sock {
        kind: Kind::Udp(hs),
        kernel_bound,
        ..
    }) = core.socks.get(entry.handle())
    else {
        return Err(Errno(libc::EBADF));
    };
    let kernel_bound = *kernel_bound;
    // The stack whose next datagram came first, as one kernel socket's
    // queue would give them (else this thread's, for the error or EAGAIN).
    let mine = stacks::mine();
    let q = stacks::mine_first()
        .filter_map(|q| {
            let h = *hs.get(usize::from(q))?;
            Some((stacks::lock(q)?.iface.udp(h)?.next_arrival()?, q))
        })
        .min()
        .map_or(mine, |(_, q)| q);
    let h = *hs.get(usize::from(q)).or(hs.first()).ok_or(Errno(libc::EBADF))?;
    let mut stack = stacks::lock(q)
        .or_else(|| stacks::lock(0))
        .ok_or(Errno(libc::EBADF))?;
    let u = stack.iface.udp_mut(h).ok_or(Errno(libc::EBADF))?;
    if u.next_len() == 0 && kernel_bound {
        // Nothing on the stack: a datagram the kernel received (loopback)?
        // SAFETY: the caller's contract.
        match unsafe { kernel_recv(fd, iov, peek) } {
            Err(Errno(libc::EAGAIN)) => {}
            r => return r,
        }
    }
    if let [v] = iov {
        // One buffer (read, recv, recvfrom): straight into it.
        let b: &mut [u8] = if v.iov_len == 0 || v.iov_base.is_null() {
            &mut []
        } else {
            // SAFETY: the caller's buffer, writable for its length.
            unsafe { std::slice::from_raw_parts_mut(v.iov_base.cast::<u8>(), v.iov_len) }
        };
        return if peek { u.peek_from(b) } else { u.recv_from(b) }.map_err(se);
    }
    let mut tmp = vec![0u8; u.next_len()];
    let (n, from, full) = if peek {
        u.peek_from(&mut tmp)
    } else {
        u.recv_from(&mut tmp)
    }
    .map_err(se)?;
    let data = tmp.get(..n).unwrap_or_default();
    let mut off = 0;
    for v in iov {
        if off >= data.len() {
            break;
        }
        let take = v.iov_len.min(data.len() - off);
        if take > 0 && !v.iov_base.is_null() {
            // SAFETY: the caller's buffer holds `iov_len >= take` bytes.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr().add(off), v.iov_base.cast::<u8>(), take) };
        }
        off += take;
    }
    Ok((off, from, full))
}

/// One non-blocking receive from the kernel placeholder into `iov`.
///
/// # Safety
///
/// `iov` describes writable buffers.
unsafe fn kernel_recv(fd: c_int, iov: Iov<'_>, peek: bool) -> Result<(usize, SocketAddrV4, usize), Errno> {
    let Some(f) = real::recvmsg.get() else {
        return Err(Errno(libc::EAGAIN));
    };
    let mut from = sa::to_c(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    // SAFETY: all-zero is a valid msghdr, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as socklen_t;
    msg.msg_iov = iov.as_ptr().cast_mut();
    msg.msg_iovlen = iov.len();
    let flags = libc::MSG_DONTWAIT | libc::MSG_TRUNC | if peek { libc::MSG_PEEK } else { 0 };
    // SAFETY: `msg` points at live locals and the caller's buffers.
    let full = unsafe { f(fd, &mut msg, flags) };
    if full < 0 {
        return Err(Errno(sys::errno()));
    }
    let room: usize = iov.iter().map(|v| v.iov_len).sum();
    let a = SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr)),
        u16::from_be(from.sin_port),
    );
    Ok(((full as usize).min(room), a, full as usize))
}

/// `recvfrom`/`recvmsg` on a UDP socket of the stack; the sender is
/// written to `addr`/`alen` when given.
///
/// # Safety
///
/// `iov` describes writable buffers; `addr`/`alen` null or valid.
pub unsafe fn recv(
    entry: Entry,
    fd: c_int,
    iov: Iov<'_>,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> Answer<isize> {
    // SAFETY: the caller's contract.
    unsafe { recv_msg(entry, fd, iov, flags, addr, alen, &mut false) }
}

/// [`recv`], also saying whether the datagram was longer than `iov`
/// (`MSG_TRUNC` in `recvmsg`'s `msg_flags`).
///
/// # Safety
///
/// As for [`recv`].
pub unsafe fn recv_msg(
    entry: Entry,
    fd: c_int,
    iov: Iov<'_>,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
    truncated: &mut bool,
) -> Answer<isize> {
    let peek = flags & libc::MSG_PEEK != 0;
    stacks::poll_all();
    let (nonblock, timeout) = {
        let mut core = crate::sockets::table::lock();
        match sock_mut(&mut core, entry) {
            Ok(s) => (s.nonblock || flags & libc::MSG_DONTWAIT != 0, s.opts.rcvtimeo),
            Err(e) => return Dispatch::Done(Err(e)),
        }
    };
    let mut f = |core: &mut Core| {
        // SAFETY: the caller's contract.
        match unsafe { recv_once(core, entry, fd, iov, peek) } {
            Err(Errno(libc::EAGAIN)) => None,
            r => Some(r),
        }
    };
    let r = if nonblock {
        let mut core = crate::sockets::table::lock();
        f(&mut core).unwrap_or(Err(Errno(libc::EAGAIN)))
    } else {
        let dl = deadline(timeout);
        // A wildcard socket also sleeps on its placeholder (loopback senders).
        let mut kfd = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        let kernel_bound = crate::sockets::table::lock()
            .socks
            .get(entry.handle())
            .is_some_and(|s| s.kernel_bound);
        let extra: &mut [libc::pollfd] = if kernel_bound { &mut kfd } else { &mut [] };
        loop {
            match block(dl, &[WaitOn::Sock(entry.handle())], extra, None, &mut f) {
                Ok(r) => break r,
                Err(WaitEnd::TimedOut) => break Err(Errno(libc::EAGAIN)),
                Err(WaitEnd::Interrupted { restart: false }) => break Err(Errno(libc::EINTR)),
                Err(WaitEnd::Interrupted { .. }) => {}
            }
        }
    };
    match r {
        Ok((n, from, full)) => {
            // SAFETY: the caller's contract.
            if let Err(e) = unsafe { sa::write(from, addr, alen) } {
                return Dispatch::Done(Err(e));
            }
            *truncated = full > n;
            let n = if flags & libc::MSG_TRUNC != 0 { full } else { n };
            ok(n as isize)
        }
        Err(e) => Dispatch::Done(Err(e)),
    }
}

/// `sendto`/`sendmsg`/`write` on a UDP socket of the stack. A destination
/// the stack does not route leaves through the kernel placeholder.
///
/// # Safety
///
/// `iov` describes readable buffers.
pub unsafe fn send(entry: Entry, iov: Iov<'_>, flags: c_int, dst: Option<SocketAddrV4>) -> Answer<isize> {
    // A datagram never blocks: the flags change nothing here.
    let _ = flags;
    // One buffer (write, send, sendto) is sent from where it is; several
    // are gathered first.
    let mut gathered = Vec::new();
    let data: &[u8] = match iov {
        [v] if v.iov_len > 0 && !v.iov_base.is_null() => {
            // SAFETY: the caller's buffer, readable for its length.
            unsafe { std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len) }
        }
        _ => {
            for v in iov {
                if v.iov_len > 0 && !v.iov_base.is_null() {
                    // SAFETY: the caller's buffers.
                    gathered.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len)
                    });
                }
            }
            &gathered
        }
    };
    let core = crate::sockets::table::lock();
    let Some(Sock {
        kind: Kind::Udp(hs), ..
    }) = core.socks.get(entry.handle())
    else {
        return fail(libc::EBADF);
    };
    // From this thread's stack.
    let q = stacks::mine();
    let Some(&h) = hs.get(usize::from(q)) else {
        return fail(libc::EBADF);
    };
    drop(core);
    let Some(mut stack) = stacks::lock(q) else {
        return fail(libc::EBADF);
    };
    let r = stack
        .iface
        .udp_send_to(h, data, dst)
        .map(|n| n as isize)
        .map_err(se);
    drop(stack);
    stacks::output(q);
    Dispatch::Done(r)
}

/// `sendto` with an explicit destination on a socket of ours: a pending
/// socket moves to the stack for a routed destination (and to the kernel
/// for any other); a stack socket sends a non-routed destination through
/// the kernel placeholder.
///
/// # Safety
///
/// `buf` readable for `len`; `addr` valid for `alen` or null.
pub unsafe fn sendto(
    entry: Entry,
    fd: c_int,
    buf: *const libc::c_void,
    len: usize,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> Answer<isize> {
    // SAFETY: the caller's contract.
    let dst = match unsafe { sa::read_in(addr, alen) } {
        Ok(Addr::V4(a)) => a,
        _ => return Dispatch::NotOurs,
    };
    let iov = [crate::sockets::io::one(buf, len)];
    let mut entry = entry;
    if entry.state() == State::Pending {
        let mut core = crate::sockets::table::lock();
        let dgram = matches!(
            core.socks.get(entry.handle()),
            Some(Sock {
                kind: Kind::Pending {
                    dgram: true,
                    bound: None,
                    ..
                },
                ..
            })
        );
        if !dgram {
            return Dispatch::NotOurs;
        }
        if !routed(*dst.ip()) {
            to_kernel(&mut core, fd, entry, Stay::NotRouted);
            return Dispatch::NotOurs;
        }
        match activate_for(&mut core, fd, entry, None) {
            Ok(e) if e.state() == State::Udp => entry = e,
            Ok(_) => return Dispatch::NotOurs,
            Err(e) => return Dispatch::Done(Err(e)),
        }
    }
    if entry.state() != State::Udp {
        return Dispatch::NotOurs;
    }
    if !routed(*dst.ip()) {
        let Some(f) = real::sendto.get() else {
            return Dispatch::NotOurs;
        };
        // SAFETY: the caller's arguments, passed on.
        let r = unsafe { f(fd, buf, len, flags, addr, alen) };
        return if r < 0 { fail(sys::errno()) } else { ok(r) };
    }
    // SAFETY: the caller's contract.
    unsafe { send(entry, &iov, flags, Some(dst)) }
}
