//! The shim's own operations: the [`Ops`] implementation the interposer
//! calls for fds that are not plain kernel fds (and for the `any` calls),
//! and what happens to an fd's entry when the kernel frees its number.
//!
//! Each method maps one C call onto the modules that implement it:
//! [`socket`] (life and decisions), [`io`] (data
//! and control), [`udp`], [`epoll`],
//! [`pollsel`]. In a child of `fork` of a process whose stack ran, an
//! inherited connection is `Inherited` (attached through the parent's
//! proxy at its first use, then `Proxied`: data calls go to the kernel,
//! names, options and `shutdown` to the parent; see [`forked`]), and any
//! other accelerated socket is `Inert`: `close` works, every other call
//! fails with `EBADF` and a log line. A method that returns
//! [`Dispatch::NotOurs`] sends the call on to libc: that is how pending
//! sockets (still the kernel's placeholders) answer most calls.

use crate::fdtable::{Entry, State};
use crate::interpose::skeleton::{Dispatch, Errno};
use crate::interpose::Ops;
use crate::logging;
use crate::sockets::epoll;
use crate::sockets::forked;
use crate::sockets::io::{self, one};
use crate::sockets::pollsel;
use crate::sockets::socket::{self, fail, ok};
use crate::sockets::udp;
use libc::{
    c_int, c_uint, c_ulong, c_void, epoll_event, fd_set, iovec, mmsghdr, msghdr, nfds_t, off64_t, off_t,
    pollfd, sigset_t, size_t, sockaddr, socklen_t, ssize_t, timespec, timeval,
};

/// The accelerating operations.
pub struct Accel;

/// The operations in use.
pub static ACTIVE: Accel = Accel;

/// The kernel freed (or replaced, by `dup2`) fd number `fd`, whose entry
/// was `entry`: release what the entry held.
///
/// This is the one place an entry is released, whichever call freed the
/// number (`close`, `dup2`/`dup3` onto it, `close_range`, `closefrom`) and
/// even when the call was a re-entry: the table is cleared first, then the
/// call runs. A socket loses one reference; the last one closes it on the
/// stack (a TCP connection sends its FIN).
pub fn fd_dropped(fd: c_int, entry: Entry) {
    match entry.state() {
        State::Internal => logging::fd_lost(fd),
        State::Pending | State::Tcp | State::Udp | State::Epoll => crate::sockets::close::dropped(fd, entry),
        State::Inherited => forked::released(entry),
        State::Proxy => forked::proxy_fd_dropped(fd),
        _ => {}
    }
}

/// A `dup` made another fd number refer to the object of `entry`.
pub fn fd_duplicated(entry: Entry) {
    crate::sockets::close::duplicated(entry);
}

/// An fd of the parent's stack (after `fork`): `EBADF` and a log line if
/// it is inert; attached first if it is an inherited connection (see
/// `forked`), then, as an attached one, the kernel's (a socketpair end).
macro_rules! inert {
    ($entry:expr, $fd:expr, $what:literal) => {
        match $entry.state() {
            State::Inert => {
                return match io::inert($fd, $what) {
                    Dispatch::Done(Err(e)) => Dispatch::Done(Err(e)),
                    _ => fail(libc::EBADF),
                };
            }
            State::Inherited => {
                return match forked::attach($fd, $entry) {
                    Ok(()) => Dispatch::NotOurs,
                    Err(e) => Dispatch::Done(Err(e)),
                };
            }
            State::Proxied => return Dispatch::NotOurs,
            _ => {}
        }
    };
}

/// The real function `$name` called with `$args` (the program's, passed
/// on), or `NotOurs` if libc has none.
macro_rules! real_call {
    ($name:ident($($a:expr),*)) => {
        match crate::interpose::real::$name.get() {
            // SAFETY: the program's arguments, passed on to the function of
            // that name and C type.
            Some(f) => unsafe { f($($a),*) },
            None => return Dispatch::NotOurs,
        }
    };
}

/// `sendmsg` of `iov` with `MSG_NOSIGNAL` added to `flags`, for a write
/// on an attached connection (see `forked::after_write`).
fn proxied_send_iov(
    entry: Entry,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    flags: c_int,
) -> Dispatch<ssize_t> {
    // SAFETY: an all-zero msghdr is valid (no name, no control).
    let mut m: msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov as *mut iovec;
    m.msg_iovlen = iovcnt.max(0) as usize;
    let r = real_call!(sendmsg(fd, &m, flags | libc::MSG_NOSIGNAL));
    forked::after_write(entry, r, flags & libc::MSG_NOSIGNAL != 0)
}

/// Whether the entry is a connection of the parent's stack (inherited or
/// attached), whose names, options and shutdown the parent answers.
fn parents(entry: Entry) -> bool {
    matches!(entry.state(), State::Inherited | State::Proxied)
}

/// The iovecs of a `msghdr`, as a slice.
///
/// # Safety
///
/// `msg` valid; its iovec array valid for `msg_iovlen` entries.
pub unsafe fn msg_iov<'a>(msg: *const msghdr) -> Result<&'a [iovec], Errno> {
    if msg.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: the caller's contract.
    let m = unsafe { &*msg };
    if m.msg_iovlen > 1024 {
        return Err(Errno(libc::EMSGSIZE));
    }
    if m.msg_iov.is_null() || m.msg_iovlen == 0 {
        return Ok(&[]);
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(m.msg_iov, m.msg_iovlen) })
}

/// `recvmsg` on a socket of ours.
///
/// # Safety
///
/// As for `recvmsg`.
unsafe fn recvmsg_ours(entry: Entry, fd: c_int, msg: *mut msghdr, flags: c_int) -> Dispatch<ssize_t> {
    // SAFETY: the caller's contract.
    let iov = match unsafe { msg_iov(msg) } {
        Ok(v) => v,
        Err(e) => return Dispatch::Done(Err(e)),
    };
    // SAFETY: `msg` is valid (checked by msg_iov).
    let m = unsafe { &mut *msg };
    let mut truncated = false;
    let r = if entry.state() == State::Udp {
        let mut alen = m.msg_namelen;
        let name = m.msg_name.cast::<sockaddr>();
        // SAFETY: the caller's contract.
        let r = unsafe {
            udp::recv_msg(
                entry,
                fd,
                iov,
                flags,
                name,
                if name.is_null() {
                    std::ptr::null_mut()
                } else {
                    &mut alen
                },
                &mut truncated,
            )
        };
        if !name.is_null() {
            m.msg_namelen = alen;
        }
        r
    } else {
        // SAFETY: the caller's contract.
        let r = unsafe { io::recv(entry, fd, iov, flags) };
        m.msg_namelen = 0;
        r
    };
    if matches!(r, Dispatch::Done(Ok(_))) {
        m.msg_controllen = 0;
        m.msg_flags = if truncated { libc::MSG_TRUNC } else { 0 };
    }
    r
}

/// `sendmsg` on a socket of ours.
///
/// # Safety
///
/// As for `sendmsg`.
unsafe fn sendmsg_ours(entry: Entry, fd: c_int, msg: *const msghdr, flags: c_int) -> Dispatch<ssize_t> {
    // SAFETY: the caller's contract.
    let iov = match unsafe { msg_iov(msg) } {
        Ok(v) => v,
        Err(e) => return Dispatch::Done(Err(e)),
    };
    // SAFETY: valid (checked by msg_iov).
    let m = unsafe { &*msg };
    if entry.state() == State::Udp && !m.msg_name.is_null() {
        // SAFETY: the caller's contract.
        let dst = match unsafe { crate::sockets::sockaddr::read_in(m.msg_name.cast(), m.msg_namelen) } {
            Ok(crate::sockets::sockaddr::Addr::V4(a)) => a,
            Ok(_) => return fail(libc::EAFNOSUPPORT),
            Err(e) => return Dispatch::Done(Err(e)),
        };
        if !socket::routed(*dst.ip()) {
            let _ = fd;
            return Dispatch::NotOurs; // through the kernel placeholder
        }
        // SAFETY: the caller's contract.
        return unsafe { udp::send(entry, iov, flags, Some(dst)) };
    }
    // SAFETY: the caller's contract.
    unsafe { io::send(entry, iov, flags) }
}

/// The program's iovec array, checked as `readv`/`writev` check it.
///
/// # Safety
///
/// `iov` is valid for `iovcnt` entries, or null.
pub unsafe fn iovs<'a>(iov: *const iovec, iovcnt: c_int) -> Result<&'a [iovec], Errno> {
    if !(0..=1024).contains(&iovcnt) {
        return Err(Errno(libc::EINVAL));
    }
    if iovcnt == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) })
}

/// `recvmmsg`/`sendmmsg`: `one` for each message in turn (given how many
/// went before), recording each length, until one fails; the count, or
/// the first message's error.
///
/// # Safety
///
/// `msgs` is valid for `vlen` entries, or null; `one` is safe to call on
/// each message header.
unsafe fn each_msg(
    msgs: *mut mmsghdr,
    vlen: c_uint,
    mut one: impl FnMut(usize, *mut msghdr) -> Dispatch<ssize_t>,
) -> Dispatch<c_int> {
    if msgs.is_null() {
        return fail(libc::EFAULT);
    }
    let mut n = 0;
    for i in 0..vlen.min(1024) as usize {
        // SAFETY: the caller's array of `vlen` messages.
        let m = unsafe { &mut *msgs.add(i) };
        match one(n, &mut m.msg_hdr) {
            Dispatch::Done(Ok(k)) => {
                m.msg_len = k as c_uint;
                n += 1;
            }
            Dispatch::Done(Err(e)) if n == 0 => return Dispatch::Done(Err(e)),
            _ => break,
        }
    }
    ok(n as c_int)
}

/// glibc's answer to a fortified call whose buffer is too small.
fn chk_fail() -> ! {
    crate::logging::log!(error, "buffer overflow detected by a fortified call: aborting");
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

impl Ops for Accel {
    unsafe fn socket(&self, domain: c_int, ty: c_int, protocol: c_int) -> Dispatch<c_int> {
        socket::socket(domain, ty, protocol)
    }

    unsafe fn bind(&self, entry: Entry, fd: c_int, addr: *const sockaddr, len: socklen_t) -> Dispatch<c_int> {
        inert!(entry, fd, "bind");
        // SAFETY: the program's arguments.
        unsafe { socket::bind(entry, fd, addr, len) }
    }

    unsafe fn listen(&self, entry: Entry, fd: c_int, backlog: c_int) -> Dispatch<c_int> {
        inert!(entry, fd, "listen");
        if !matches!(entry.state(), State::Pending | State::Tcp) {
            return Dispatch::NotOurs;
        }
        socket::listen(entry, fd, backlog)
    }

    unsafe fn accept(
        &self,
        entry: Entry,
        fd: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
    ) -> Dispatch<c_int> {
        inert!(entry, fd, "accept");
        // SAFETY: the program's arguments.
        unsafe { crate::sockets::open::accept(entry, fd, addr, len, 0) }
    }

    unsafe fn accept4(
        &self,
        entry: Entry,
        fd: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
        flags: c_int,
    ) -> Dispatch<c_int> {
        inert!(entry, fd, "accept4");
        // SAFETY: the program's arguments.
        unsafe { crate::sockets::open::accept(entry, fd, addr, len, flags) }
    }

    unsafe fn connect(
        &self,
        entry: Entry,
        fd: c_int,
        addr: *const sockaddr,
        len: socklen_t,
    ) -> Dispatch<c_int> {
        inert!(entry, fd, "connect");
        if !matches!(entry.state(), State::Pending | State::Tcp | State::Udp) {
            return Dispatch::NotOurs;
        }
        // SAFETY: the program's arguments.
        unsafe { crate::sockets::open::connect(entry, fd, addr, len) }
    }

    unsafe fn shutdown(&self, entry: Entry, fd: c_int, how: c_int) -> Dispatch<c_int> {
        if parents(entry) {
            return forked::shutdown(fd, entry, how);
        }
        inert!(entry, fd, "shutdown");
        io::shutdown(entry, fd, how)
    }

    unsafe fn getsockopt(
        &self,
        entry: Entry,
        fd: c_int,
        level: c_int,
        name: c_int,
        val: *mut c_void,
        len: *mut socklen_t,
    ) -> Dispatch<c_int> {
        if parents(entry) {
            // SAFETY: the program's arguments.
            return unsafe { forked::getsockopt(fd, entry, level, name, val, len) };
        }
        inert!(entry, fd, "getsockopt");
        if !matches!(entry.state(), State::Pending | State::Tcp | State::Udp) {
            return Dispatch::NotOurs;
        }
        // SAFETY: the program's arguments.
        unsafe { io::getsockopt(entry, level, name, val, len) }
    }

    unsafe fn setsockopt(
        &self,
        entry: Entry,
        fd: c_int,
        level: c_int,
        name: c_int,
        val: *const c_void,
        len: socklen_t,
    ) -> Dispatch<c_int> {
        if parents(entry) {
            // SAFETY: the program's arguments.
            return unsafe { forked::setsockopt(fd, entry, level, name, val, len) };
        }
        inert!(entry, fd, "setsockopt");
        if !matches!(entry.state(), State::Pending | State::Tcp | State::Udp) {
            return Dispatch::NotOurs;
        }
        // SAFETY: the program's arguments.
        unsafe { io::setsockopt(entry, fd, level, name, val, len) }
    }

    unsafe fn getsockname(
        &self,
        entry: Entry,
        fd: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
    ) -> Dispatch<c_int> {
        if parents(entry) {
            // SAFETY: the program's arguments.
            return unsafe { forked::name(entry, false, addr, len) };
        }
        inert!(entry, fd, "getsockname");
        // SAFETY: the program's arguments.
        unsafe { io::name(entry, false, addr, len) }
    }

    unsafe fn getpeername(
        &self,
        entry: Entry,
        fd: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
    ) -> Dispatch<c_int> {
        if parents(entry) {
            // SAFETY: the program's arguments.
            return unsafe { forked::name(entry, true, addr, len) };
        }
        inert!(entry, fd, "getpeername");
        // SAFETY: the program's arguments.
        unsafe { io::name(entry, true, addr, len) }
    }

    unsafe fn read(&self, entry: Entry, fd: c_int, buf: *mut c_void, count: size_t) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            return forked::after_read(entry, real_call!(read(fd, buf, count)), count);
        }
        inert!(entry, fd, "read");
        // SAFETY: the program's buffer.
        unsafe { io::recv(entry, fd, &[one(buf, count)], 0) }
    }

    unsafe fn readv(&self, entry: Entry, fd: c_int, iov: *const iovec, iovcnt: c_int) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            let r = real_call!(readv(fd, iov, iovcnt));
            // SAFETY: the program's iovec array (the kernel took it).
            let want = unsafe { iovs(iov, iovcnt) }.map_or(0, io::iov_len);
            return forked::after_read(entry, r, want);
        }
        inert!(entry, fd, "readv");
        // SAFETY: the program's iovec array.
        match unsafe { iovs(iov, iovcnt) } {
            // SAFETY: as above.
            Ok(v) => unsafe { io::recv(entry, fd, v, 0) },
            Err(e) => Dispatch::Done(Err(e)),
        }
    }

    unsafe fn write(&self, entry: Entry, fd: c_int, buf: *const c_void, count: size_t) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            let r = real_call!(send(fd, buf, count, libc::MSG_NOSIGNAL));
            return forked::after_write(entry, r, false);
        }
        inert!(entry, fd, "write");
        // SAFETY: the program's buffer.
        unsafe { io::send(entry, &[one(buf, count)], 0) }
    }

    unsafe fn writev(&self, entry: Entry, fd: c_int, iov: *const iovec, iovcnt: c_int) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            if !(0..=1024).contains(&iovcnt) {
                return fail(libc::EINVAL);
            }
            return proxied_send_iov(entry, fd, iov, iovcnt, 0);
        }
        inert!(entry, fd, "writev");
        // SAFETY: the program's iovec array.
        match unsafe { iovs(iov, iovcnt) } {
            // SAFETY: as above.
            Ok(v) => unsafe { io::send(entry, v, 0) },
            Err(e) => Dispatch::Done(Err(e)),
        }
    }

    unsafe fn recv(
        &self,
        entry: Entry,
        fd: c_int,
        buf: *mut c_void,
        len: size_t,
        flags: c_int,
    ) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            return forked::after_read(entry, real_call!(recv(fd, buf, len, flags)), len);
        }
        inert!(entry, fd, "recv");
        // SAFETY: the program's buffer.
        unsafe { io::recv(entry, fd, &[one(buf, len)], flags) }
    }

    unsafe fn recvfrom(
        &self,
        entry: Entry,
        fd: c_int,
        buf: *mut c_void,
        len: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        alen: *mut socklen_t,
    ) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            let r = real_call!(recvfrom(fd, buf, len, flags, addr, alen));
            return forked::after_read(entry, r, len);
        }
        inert!(entry, fd, "recvfrom");
        if entry.state() == State::Udp {
            // SAFETY: the program's buffers.
            return unsafe { udp::recv(entry, fd, &[one(buf, len)], flags, addr, alen) };
        }
        // SAFETY: the program's buffer.
        let r = unsafe { io::recv(entry, fd, &[one(buf, len)], flags) };
        if matches!(r, Dispatch::Done(Ok(_))) && !addr.is_null() && !alen.is_null() {
            // A stream socket reports no address, as the kernel's.
            // SAFETY: the program's length pointer.
            unsafe { alen.write_unaligned(0) };
        }
        r
    }

    unsafe fn recvmsg(&self, entry: Entry, fd: c_int, msg: *mut msghdr, flags: c_int) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            let r = real_call!(recvmsg(fd, msg, flags));
            // SAFETY: the program's message (the kernel took it).
            let want = unsafe { msg_iov(msg) }.map_or(0, io::iov_len);
            return forked::after_read(entry, r, want);
        }
        inert!(entry, fd, "recvmsg");
        if !matches!(entry.state(), State::Tcp | State::Udp) {
            return Dispatch::NotOurs;
        }
        // SAFETY: the program's message.
        unsafe { recvmsg_ours(entry, fd, msg, flags) }
    }

    unsafe fn recvmmsg(
        &self,
        entry: Entry,
        fd: c_int,
        msgs: *mut mmsghdr,
        vlen: c_uint,
        flags: c_int,
        timeout: *mut timespec,
    ) -> Dispatch<c_int> {
        inert!(entry, fd, "recvmmsg");
        if !matches!(entry.state(), State::Tcp | State::Udp) {
            return Dispatch::NotOurs;
        }
        let _ = timeout;
        // SAFETY: the program's array of `vlen` messages.
        unsafe {
            each_msg(msgs, vlen, |n, hdr| {
                // A blocking call waits for every message; with
                // MSG_WAITFORONE only for the first (recvmmsg(2)).
                let f = if n > 0 && flags & libc::MSG_WAITFORONE != 0 {
                    (flags & !libc::MSG_WAITFORONE) | libc::MSG_DONTWAIT
                } else {
                    flags & !libc::MSG_WAITFORONE
                };
                recvmsg_ours(entry, fd, hdr, f)
            })
        }
    }

    unsafe fn send(
        &self,
        entry: Entry,
        fd: c_int,
        buf: *const c_void,
        len: size_t,
        flags: c_int,
    ) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            let r = real_call!(send(fd, buf, len, flags | libc::MSG_NOSIGNAL));
            return forked::after_write(entry, r, flags & libc::MSG_NOSIGNAL != 0);
        }
        inert!(entry, fd, "send");
        // SAFETY: the program's buffer.
        unsafe { io::send(entry, &[one(buf, len)], flags) }
    }

    unsafe fn sendto(
        &self,
        entry: Entry,
        fd: c_int,
        buf: *const c_void,
        len: size_t,
        flags: c_int,
        addr: *const sockaddr,
        alen: socklen_t,
    ) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            // A stream socket ignores the address, as Linux's TCP does
            // (the socketpair end would say EISCONN).
            let _ = (addr, alen);
            let r = real_call!(send(fd, buf, len, flags | libc::MSG_NOSIGNAL));
            return forked::after_write(entry, r, flags & libc::MSG_NOSIGNAL != 0);
        }
        inert!(entry, fd, "sendto");
        if !addr.is_null() && matches!(entry.state(), State::Udp | State::Pending) {
            // SAFETY: the program's buffers.
            return unsafe { udp::sendto(entry, fd, buf, len, flags, addr, alen) };
        }
        // A stream socket ignores the address, as Linux's TCP does.
        // SAFETY: the program's buffer.
        unsafe { io::send(entry, &[one(buf, len)], flags) }
    }

    unsafe fn sendmsg(&self, entry: Entry, fd: c_int, msg: *const msghdr, flags: c_int) -> Dispatch<ssize_t> {
        if entry.state() == State::Proxied {
            // The data only: a stream socket ignores the address, and the
            // socketpair must not carry control messages (fds) to the
            // proxy.
            // SAFETY: the program's message.
            return match unsafe { msg_iov(msg) } {
                Ok(v) => proxied_send_iov(entry, fd, v.as_ptr(), v.len() as c_int, flags),
                Err(e) => Dispatch::Done(Err(e)),
            };
        }
        inert!(entry, fd, "sendmsg");
        if !matches!(entry.state(), State::Tcp | State::Udp) {
            return Dispatch::NotOurs;
        }
        // SAFETY: the program's message.
        unsafe { sendmsg_ours(entry, fd, msg, flags) }
    }

    unsafe fn sendmmsg(
        &self,
        entry: Entry,
        fd: c_int,
        msgs: *mut mmsghdr,
        vlen: c_uint,
        flags: c_int,
    ) -> Dispatch<c_int> {
        inert!(entry, fd, "sendmmsg");
        if !matches!(entry.state(), State::Tcp | State::Udp) {
            return Dispatch::NotOurs;
        }
        // SAFETY: the program's array of `vlen` messages.
        unsafe { each_msg(msgs, vlen, |_, hdr| sendmsg_ours(entry, fd, hdr, flags)) }
    }

    unsafe fn sendfile(
        &self,
        entry: Entry,
        out_fd: c_int,
        in_fd: c_int,
        offset: *mut off_t,
        count: size_t,
    ) -> Dispatch<ssize_t> {
        inert!(entry, out_fd, "sendfile");
        // SAFETY: the program's offset pointer (off_t is 64-bit here).
        unsafe { io::sendfile(entry, in_fd, offset.cast(), count) }
    }

    unsafe fn sendfile64(
        &self,
        entry: Entry,
        out_fd: c_int,
        in_fd: c_int,
        offset: *mut off64_t,
        count: size_t,
    ) -> Dispatch<ssize_t> {
        inert!(entry, out_fd, "sendfile64");
        // SAFETY: the program's offset pointer.
        unsafe { io::sendfile(entry, in_fd, offset, count) }
    }

    unsafe fn splice(
        &self,
        fd_in: c_int,
        off_in: *mut off64_t,
        fd_out: c_int,
        off_out: *mut off64_t,
        len: size_t,
        flags: c_uint,
    ) -> Dispatch<ssize_t> {
        // SAFETY: the program's offset pointers.
        unsafe { crate::sockets::splice::splice(fd_in, off_in, fd_out, off_out, len, flags) }
    }

    unsafe fn io_uring_submit(&self, ring: *mut c_void) -> Dispatch<c_int> {
        // SAFETY: the program's ring.
        unsafe { crate::sockets::uring::before_submit(ring) }
    }

    unsafe fn io_uring_submit_and_wait(&self, ring: *mut c_void, wait_nr: c_uint) -> Dispatch<c_int> {
        let _ = wait_nr;
        // SAFETY: the program's ring.
        unsafe { crate::sockets::uring::before_submit(ring) }
    }

    unsafe fn io_uring_submit_and_wait_timeout(
        &self,
        ring: *mut c_void,
        cqe: *mut *mut c_void,
        wait_nr: c_uint,
        ts: *mut c_void,
        sigmask: *mut sigset_t,
    ) -> Dispatch<c_int> {
        let _ = (cqe, wait_nr, ts, sigmask);
        // SAFETY: the program's ring.
        unsafe { crate::sockets::uring::before_submit(ring) }
    }

    unsafe fn io_uring_submit_and_get_events(&self, ring: *mut c_void) -> Dispatch<c_int> {
        // SAFETY: the program's ring.
        unsafe { crate::sockets::uring::before_submit(ring) }
    }

    unsafe fn io_uring_wait_cqes(
        &self,
        ring: *mut c_void,
        cqe: *mut *mut c_void,
        wait_nr: c_uint,
        ts: *mut c_void,
        sigmask: *mut sigset_t,
    ) -> Dispatch<c_int> {
        let _ = (cqe, wait_nr, ts, sigmask);
        // SAFETY: the program's ring.
        unsafe { crate::sockets::uring::before_submit(ring) }
    }

    unsafe fn io_uring_register_files(
        &self,
        ring: *mut c_void,
        files: *const c_int,
        nr: c_uint,
    ) -> Dispatch<c_int> {
        // SAFETY: the program's arguments.
        unsafe { crate::sockets::uring::register_files(ring, files, nr) }
    }

    unsafe fn io_uring_register_files_update(
        &self,
        ring: *mut c_void,
        off: c_uint,
        files: *const c_int,
        nr: c_uint,
    ) -> Dispatch<c_int> {
        // SAFETY: the program's arguments.
        unsafe { crate::sockets::uring::register_files_update(ring, off, files, nr) }
    }

    unsafe fn __read_chk(
        &self,
        entry: Entry,
        fd: c_int,
        buf: *mut c_void,
        count: size_t,
        buflen: size_t,
    ) -> Dispatch<ssize_t> {
        if count > buflen {
            chk_fail();
        }
        // SAFETY: the program's buffer.
        unsafe { self.read(entry, fd, buf, count) }
    }

    unsafe fn __recv_chk(
        &self,
        entry: Entry,
        fd: c_int,
        buf: *mut c_void,
        len: size_t,
        buflen: size_t,
        flags: c_int,
    ) -> Dispatch<ssize_t> {
        if len > buflen {
            chk_fail();
        }
        // SAFETY: the program's buffer.
        unsafe { self.recv(entry, fd, buf, len, flags) }
    }

    unsafe fn __recvfrom_chk(
        &self,
        entry: Entry,
        fd: c_int,
        buf: *mut c_void,
        len: size_t,
        buflen: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        alen: *mut socklen_t,
    ) -> Dispatch<ssize_t> {
        if len > buflen {
            chk_fail();
        }
        // SAFETY: the program's buffers.
        unsafe { self.recvfrom(entry, fd, buf, len, flags, addr, alen) }
    }

    unsafe fn __poll_chk(
        &self,
        fds: *mut pollfd,
        nfds: nfds_t,
        timeout: c_int,
        fdslen: size_t,
    ) -> Dispatch<c_int> {
        if fdslen / size_of::<pollfd>() < nfds as usize {
            chk_fail();
        }
        // SAFETY: the program's array.
        unsafe { pollsel::poll(fds, nfds, pollsel::ms(timeout), std::ptr::null()) }
    }

    unsafe fn __ppoll_chk(
        &self,
        fds: *mut pollfd,
        nfds: nfds_t,
        timeout: *const timespec,
        sigmask: *const sigset_t,
        fdslen: size_t,
    ) -> Dispatch<c_int> {
        if fdslen / size_of::<pollfd>() < nfds as usize {
            chk_fail();
        }
        // SAFETY: the program's arguments.
        unsafe { self.ppoll(fds, nfds, timeout, sigmask) }
    }

    unsafe fn fcntl(&self, entry: Entry, fd: c_int, cmd: c_int, arg: c_ulong) -> Dispatch<c_int> {
        inert!(entry, fd, "fcntl");
        io::fcntl(entry, fd, cmd, arg)
    }

    unsafe fn fcntl64(&self, entry: Entry, fd: c_int, cmd: c_int, arg: c_ulong) -> Dispatch<c_int> {
        inert!(entry, fd, "fcntl64");
        io::fcntl(entry, fd, cmd, arg)
    }

    unsafe fn ioctl(&self, entry: Entry, fd: c_int, request: c_ulong, arg: c_ulong) -> Dispatch<c_int> {
        inert!(entry, fd, "ioctl");
        if !matches!(entry.state(), State::Pending | State::Tcp | State::Udp) {
            return Dispatch::NotOurs;
        }
        // SAFETY: the program's argument.
        unsafe { io::ioctl(entry, request, arg) }
    }

    unsafe fn epoll_ctl(
        &self,
        entry: Entry,
        epfd: c_int,
        op: c_int,
        fd: c_int,
        event: *mut epoll_event,
    ) -> Dispatch<c_int> {
        inert!(entry, fd, "epoll_ctl");
        // SAFETY: the program's event.
        unsafe { epoll::ctl(epfd, op, fd, entry, event) }
    }

    unsafe fn epoll_wait(
        &self,
        entry: Entry,
        epfd: c_int,
        events: *mut epoll_event,
        maxevents: c_int,
        timeout: c_int,
    ) -> Dispatch<c_int> {
        // SAFETY: the program's arguments.
        unsafe {
            epoll::wait(
                epfd,
                entry,
                events,
                maxevents,
                epoll::ms(timeout),
                std::ptr::null(),
            )
        }
    }

    unsafe fn epoll_pwait(
        &self,
        entry: Entry,
        epfd: c_int,
        events: *mut epoll_event,
        maxevents: c_int,
        timeout: c_int,
        sigmask: *const sigset_t,
    ) -> Dispatch<c_int> {
        // SAFETY: the program's arguments.
        unsafe { epoll::wait(epfd, entry, events, maxevents, epoll::ms(timeout), sigmask) }
    }

    unsafe fn epoll_pwait2(
        &self,
        entry: Entry,
        epfd: c_int,
        events: *mut epoll_event,
        maxevents: c_int,
        timeout: *const timespec,
        sigmask: *const sigset_t,
    ) -> Dispatch<c_int> {
        // SAFETY: the program's timeout.
        let t = match unsafe { pollsel::ts(timeout) } {
            Ok(t) => t,
            Err(e) => return Dispatch::Done(Err(e)),
        };
        // SAFETY: the program's arguments.
        unsafe { epoll::wait(epfd, entry, events, maxevents, t, sigmask) }
    }

    unsafe fn poll(&self, fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> Dispatch<c_int> {
        // SAFETY: the program's array.
        unsafe { pollsel::poll(fds, nfds, pollsel::ms(timeout), std::ptr::null()) }
    }

    unsafe fn ppoll(
        &self,
        fds: *mut pollfd,
        nfds: nfds_t,
        timeout: *const timespec,
        sigmask: *const sigset_t,
    ) -> Dispatch<c_int> {
        // SAFETY: the program's timeout.
        let t = match unsafe { pollsel::ts(timeout) } {
            Ok(t) => t,
            Err(_) => return Dispatch::NotOurs, // the kernel says EINVAL
        };
        // SAFETY: the program's arguments.
        unsafe { pollsel::poll(fds, nfds, t, sigmask) }
    }

    unsafe fn select(
        &self,
        nfds: c_int,
        r: *mut fd_set,
        w: *mut fd_set,
        e: *mut fd_set,
        timeout: *mut timeval,
    ) -> Dispatch<c_int> {
        // SAFETY: the program's timeout.
        let t = match unsafe { pollsel::tv(timeout) } {
            Ok(t) => t,
            Err(_) => return Dispatch::NotOurs,
        };
        // SAFETY: the program's sets.
        let (answer, left) = unsafe { pollsel::select(nfds, r, w, e, t, std::ptr::null()) };
        if let (Some(left), false) = (left, timeout.is_null()) {
            if !matches!(answer, Dispatch::NotOurs) {
                let tv = timeval {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_usec: left.subsec_micros() as libc::suseconds_t,
                };
                // SAFETY: the program's timeval, non-null.
                unsafe { timeout.write_unaligned(tv) };
            }
        }
        answer
    }

    unsafe fn pselect(
        &self,
        nfds: c_int,
        r: *mut fd_set,
        w: *mut fd_set,
        e: *mut fd_set,
        timeout: *const timespec,
        sigmask: *const sigset_t,
    ) -> Dispatch<c_int> {
        // SAFETY: the program's timeout.
        let t = match unsafe { pollsel::ts(timeout) } {
            Ok(t) => t,
            Err(_) => return Dispatch::NotOurs,
        };
        // SAFETY: the program's sets.
        unsafe { pollsel::select(nfds, r, w, e, t, sigmask).0 }
    }

    unsafe fn pread(
        &self,
        entry: Entry,
        fd: c_int,
        buf: *mut c_void,
        count: size_t,
        offset: off_t,
    ) -> Dispatch<ssize_t> {
        let _ = (buf, count, offset);
        inert!(entry, fd, "pread");
        Dispatch::NotOurs
    }
}
