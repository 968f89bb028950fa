//! The fork proxy's wire: the messages a child of `fork` and its parent's
//! proxy exchange on their control channel, and the raw system calls that
//! carry them and the connections' socketpairs.
//!
//! The control channel is an `AF_UNIX` `SOCK_SEQPACKET` socketpair made at
//! the fork (`proxy::before_fork`): one message is one [`Request`] or one
//! [`Reply`], fixed-size, little-endian. A child sends a request and waits
//! for its reply (its requests are serialised); only [`Op::Release`] has
//! no reply. The parent sends one message unasked, [`Op::Failed`] (a
//! request-sized message, told from a reply by its length). An attach's reply carries the child's end of the
//! connection's socketpair as `SCM_RIGHTS`.
//!
//! Every call here is a raw system call (`libc::syscall`): the shim never
//! calls a function it intercepts on its own behalf. None allocates; each
//! returns the errno instead of leaving it in `errno`.

use crate::sys::keep_errno;
use libc::{c_int, c_long};

/// The most bytes of option value or address a message carries.
pub const DATA: usize = 256;

/// What a child asks its parent's proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// Make the connection reachable: the reply carries the child's end of
    /// a socketpair the proxy pumps to and from the stack.
    Attach = 1,
    /// The child closed its last copy of a connection it never attached
    /// (no reply).
    Release = 2,
    /// `getsockopt(a, b)` with room for `len` bytes.
    GetOpt = 3,
    /// `setsockopt(a, b)` of the `len` bytes of `data`.
    SetOpt = 4,
    /// `getsockname` (`a` = 0) or `getpeername` (`a` = 1), room `len`.
    Name = 5,
    /// `shutdown(a)`.
    Shutdown = 6,
    /// From the parent, unasked: the connection failed with errno `a` (a
    /// reset); its socketpair end is shut.
    Failed = 7,
}

impl Op {
    fn from_u32(v: u32) -> Option<Op> {
        Some(match v {
            1 => Op::Attach,
            2 => Op::Release,
            3 => Op::GetOpt,
            4 => Op::SetOpt,
            5 => Op::Name,
            6 => Op::Shutdown,
            7 => Op::Failed,
            _ => return None,
        })
    }
}

/// A child's request: the operation, the parent's socket handle, two
/// integer arguments and up to [`DATA`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// What is asked.
    pub op: Op,
    /// The socket, by the parent's handle (the child's fd-table entry).
    pub handle: u32,
    /// First argument (level, peer, how).
    pub a: i32,
    /// Second argument (option name).
    pub b: i32,
    /// Length: of `data` (a value set), or the room the caller has.
    pub len: u32,
    /// The value set.
    pub data: [u8; DATA],
}

/// Bytes of an encoded [`Request`].
pub const REQUEST_LEN: usize = 20 + DATA;
/// Bytes of an encoded [`Reply`].
pub const REPLY_LEN: usize = 16 + DATA;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Request {
    /// A request with no data.
    pub fn new(op: Op, handle: u32, a: i32, b: i32, len: u32) -> Request {
        Request {
            op,
            handle,
            a,
            b,
            len,
            data: [0; DATA],
        }
    }

    /// With `d` (at most [`DATA`] bytes of it) as its data and length.
    pub fn with_data(mut self, d: &[u8]) -> Request {
        let n = d.len().min(DATA);
        if let (Some(dst), Some(src)) = (self.data.get_mut(..n), d.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.len = n as u32;
        self
    }

    /// The data, `len` bytes of it.
    pub fn data(&self) -> &[u8] {
        self.data.get(..(self.len as usize).min(DATA)).unwrap_or_default()
    }

    /// The message.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        let head = [
            self.op as u32,
            self.handle,
            self.a as u32,
            self.b as u32,
            self.len,
        ];
        for (i, v) in head.iter().enumerate() {
            if let Some(dst) = b.get_mut(4 * i..4 * i + 4) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
        }
        if let Some(dst) = b.get_mut(20..) {
            dst.copy_from_slice(&self.data);
        }
        b
    }

    /// The request of message `b`, if it is one.
    pub fn decode(b: &[u8]) -> Option<Request> {
        if b.len() != REQUEST_LEN {
            return None;
        }
        let mut data = [0u8; DATA];
        data.copy_from_slice(b.get(20..)?);
        Some(Request {
            op: Op::from_u32(u32_at(b, 0)?)?,
            handle: u32_at(b, 4)?,
            a: u32_at(b, 8)? as i32,
            b: u32_at(b, 12)? as i32,
            len: u32_at(b, 16)?.min(DATA as u32),
            data,
        })
    }
}

/// The proxy's answer: the call's result (or -1 and an errno) and up to
/// [`DATA`] bytes (an option value, an address) with their length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The result.
    pub ret: i64,
    /// The errno when `ret` is -1.
    pub errno: i32,
    /// The length the call reported (may exceed the data: an address
    /// longer than the room).
    pub len: u32,
    /// The bytes.
    pub data: [u8; DATA],
}

impl Reply {
    /// A success (`Ok(ret)`) or failure (`Err(errno)`) with no data.
    pub fn of(r: Result<i64, c_int>) -> Reply {
        let (ret, errno) = match r {
            Ok(v) => (v, 0),
            Err(e) => (-1, e),
        };
        Reply {
            ret,
            errno,
            len: 0,
            data: [0; DATA],
        }
    }

    /// With `d` as its data (at most [`DATA`] bytes) and `len` as the
    /// length reported.
    pub fn with_data(mut self, d: &[u8], len: u32) -> Reply {
        let n = d.len().min(DATA);
        if let (Some(dst), Some(src)) = (self.data.get_mut(..n), d.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.len = len;
        self
    }

    /// The result as the shim's: the value or the errno.
    pub fn result(&self) -> Result<i64, c_int> {
        if self.ret < 0 {
            Err(self.errno)
        } else {
            Ok(self.ret)
        }
    }

    /// The message.
    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let mut b = [0u8; REPLY_LEN];
        let parts: [&[u8]; 3] = [
            &self.ret.to_le_bytes(),
            &self.errno.to_le_bytes(),
            &self.len.to_le_bytes(),
        ];
        let mut at = 0;
        for p in parts {
            if let Some(dst) = b.get_mut(at..at + p.len()) {
                dst.copy_from_slice(p);
            }
            at += p.len();
        }
        if let Some(dst) = b.get_mut(16..) {
            dst.copy_from_slice(&self.data);
        }
        b
    }

    /// The reply of message `b`, if it is one.
    pub fn decode(b: &[u8]) -> Option<Reply> {
        if b.len() != REPLY_LEN {
            return None;
        }
        let mut data = [0u8; DATA];
        data.copy_from_slice(b.get(16..)?);
        Some(Reply {
            ret: i64::from_le_bytes(b.get(0..8)?.try_into().ok()?),
            errno: u32_at(b, 8)? as i32,
            len: u32_at(b, 12)?,
            data,
        })
    }
}

/// `Ok(value)` or `Err(errno)` of a raw call.
fn check(ret: c_long) -> Result<c_long, c_int> {
    if ret < 0 {
        Err(crate::sys::errno())
    } else {
        Ok(ret)
    }
}

/// An `AF_UNIX` socketpair of type `ty` (`SOCK_SEQPACKET` for a control
/// channel, `SOCK_STREAM` for a connection), both ends close-on-exec.
pub fn pair(ty: c_int) -> Result<(c_int, c_int), c_int> {
    let mut sv = [-1 as c_int; 2];
    keep_errno(|| {
        // SAFETY: `sv` has room for the two fds.
        check(unsafe {
            libc::syscall(
                libc::SYS_socketpair,
                libc::AF_UNIX,
                ty | libc::SOCK_CLOEXEC,
                0,
                sv.as_mut_ptr(),
            )
        })
    })?;
    Ok((sv[0], sv[1]))
}

/// Sends message `bytes` on `fd`, with `pass` as `SCM_RIGHTS` if given;
/// `flags` as for `sendmsg` (`MSG_NOSIGNAL` is added).
pub fn send_msg(fd: c_int, bytes: &[u8], pass: Option<c_int>, flags: c_int) -> Result<(), c_int> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // Room for one fd's control message, aligned.
    let mut cbuf = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(pfd) = pass {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(size_of::<c_int>() as u32) } as usize;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space.min(size_of_val(&cbuf));
        // SAFETY: the control buffer is aligned and holds one header and
        // one fd (CMSG_SPACE of an int is 24 bytes, the buffer 32).
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            if !c.is_null() {
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<c_int>() as u32) as usize;
                libc::CMSG_DATA(c).cast::<c_int>().write_unaligned(pfd);
            }
        }
    }
    loop {
        let r = keep_errno(|| {
            // SAFETY: `msg` points at live buffers for the call.
            check(unsafe { libc::syscall(libc::SYS_sendmsg, fd, &msg, flags | libc::MSG_NOSIGNAL) })
        });
        match r {
            Ok(_) => return Ok(()),
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Receives one message on `fd` into `buf`: its length (0: the channel's
/// end) and the fd it carried, if any (close-on-exec). `flags` as for
/// `recvmsg`.
pub fn recv_msg(fd: c_int, buf: &mut [u8], flags: c_int) -> Result<(usize, Option<c_int>), c_int> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&cbuf);
    let n = loop {
        let r = keep_errno(|| {
            // SAFETY: `msg` points at live, writable buffers for the call.
            check(unsafe { libc::syscall(libc::SYS_recvmsg, fd, &mut msg, flags | libc::MSG_CMSG_CLOEXEC) })
        });
        match r {
            Ok(n) => break n as usize,
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    };
    let mut got = None;
    // SAFETY: the kernel filled the control buffer; the CMSG macros walk
    // it within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let fd = libc::CMSG_DATA(c).cast::<c_int>().read_unaligned();
                match got {
                    None => got = Some(fd),
                    Some(_) => crate::sys::close(fd),
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, got))
}

/// `send(fd, buf, MSG_DONTWAIT | MSG_NOSIGNAL)` on a stream socket.
pub fn send_some(fd: c_int, buf: &[u8]) -> Result<usize, c_int> {
    keep_errno(|| {
        // SAFETY: `buf` is readable for its length.
        check(unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd,
                buf.as_ptr(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                0usize,
                0usize,
            )
        })
        .map(|n| n as usize)
    })
}

/// `recv(fd, buf, MSG_DONTWAIT)` on a stream socket (0: its end).
pub fn recv_some(fd: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
    keep_errno(|| {
        // SAFETY: `buf` is writable for its length.
        check(unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                fd,
                buf.as_mut_ptr(),
                buf.len(),
                libc::MSG_DONTWAIT,
                0usize,
                0usize,
            )
        })
        .map(|n| n as usize)
    })
}

/// `shutdown(fd, how)`.
pub fn shutdown(fd: c_int, how: c_int) -> Result<(), c_int> {
    // SAFETY: no pointers.
    keep_errno(|| check(unsafe { libc::syscall(libc::SYS_shutdown, fd, how) })).map(|_| ())
}

/// `dup3(old, new, flags)`.
pub fn dup3(old: c_int, new: c_int, flags: c_int) -> Result<(), c_int> {
    // SAFETY: no pointers.
    keep_errno(|| check(unsafe { libc::syscall(libc::SYS_dup3, old, new, flags) })).map(|_| ())
}

/// `fcntl(fd, cmd, arg)` of an int argument.
pub fn fcntl(fd: c_int, cmd: c_int, arg: c_int) -> Result<c_int, c_int> {
    // SAFETY: the commands used here take an int, no pointer.
    keep_errno(|| check(unsafe { libc::syscall(libc::SYS_fcntl, fd, cmd, arg) })).map(|v| v as c_int)
}

/// `setsockopt(fd, level, name, v)` of bytes `v`.
pub fn setsockopt(fd: c_int, level: c_int, name: c_int, v: &[u8]) -> Result<(), c_int> {
    keep_errno(|| {
        // SAFETY: `v` is readable for its length.
        check(unsafe { libc::syscall(libc::SYS_setsockopt, fd, level, name, v.as_ptr(), v.len()) })
    })
    .map(|_| ())
}

/// `getsockopt(fd, level, name)` into `v`: the length written.
pub fn getsockopt(fd: c_int, level: c_int, name: c_int, v: &mut [u8]) -> Result<usize, c_int> {
    let mut len = v.len() as libc::socklen_t;
    keep_errno(|| {
        // SAFETY: `v` is writable for `len` bytes; `len` is writable.
        check(unsafe { libc::syscall(libc::SYS_getsockopt, fd, level, name, v.as_mut_ptr(), &mut len) })
    })?;
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_its_bytes() {
        let r = Request::new(Op::SetOpt, 77, libc::IPPROTO_TCP, libc::TCP_NODELAY, 0)
            .with_data(&1i32.to_ne_bytes());
        let b = r.encode();
        assert_eq!(b.len(), REQUEST_LEN);
        assert_eq!(&b[..4], &[4, 0, 0, 0], "little-endian op first");
        let back = Request::decode(&b).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.data(), &1i32.to_ne_bytes());
        // A negative argument survives.
        let r = Request::new(Op::Shutdown, 1, -1, i32::MIN, 5);
        assert_eq!(Request::decode(&r.encode()), Some(r));
    }

    #[test]
    fn bad_messages_are_refused() {
        let mut b = Request::new(Op::Attach, 1, 0, 0, 0).encode();
        assert!(Request::decode(&b[..REQUEST_LEN - 1]).is_none(), "short");
        b[0] = 99;
        assert!(Request::decode(&b).is_none(), "unknown op");
        assert!(Reply::decode(&[0u8; 3]).is_none());
        // Data is clamped to its room.
        let big = Request::new(Op::SetOpt, 1, 0, 0, 0).with_data(&[7u8; 1000]);
        assert_eq!(big.len as usize, DATA);
        let mut b = big.encode();
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Request::decode(&b).unwrap().data().len(), DATA);
    }

    #[test]
    fn a_reply_carries_result_errno_and_data() {
        let ok = Reply::of(Ok(0)).with_data(&[1, 2, 3], 16);
        let back = Reply::decode(&ok.encode()).unwrap();
        assert_eq!(
            (back.result(), back.len, &back.data[..3]),
            (Ok(0), 16, &[1u8, 2, 3][..])
        );
        let err = Reply::of(Err(libc::ENOTCONN));
        assert_eq!(
            Reply::decode(&err.encode()).unwrap().result(),
            Err(libc::ENOTCONN)
        );
    }

    #[test]
    fn an_fd_travels_with_a_message() {
        let (a, b) = pair(libc::SOCK_SEQPACKET).unwrap();
        let (x, y) = pair(libc::SOCK_STREAM).unwrap();
        send_msg(a, &Reply::of(Ok(0)).encode(), Some(y), 0).unwrap();
        sys_close(y);
        let mut buf = [0u8; REPLY_LEN + 8];
        let (n, fd) = recv_msg(b, &mut buf, 0).unwrap();
        assert_eq!(n, REPLY_LEN, "one message, its boundary kept");
        let fd = fd.expect("an fd came");
        assert_ne!(fcntl(fd, libc::F_GETFD, 0).unwrap() & libc::FD_CLOEXEC, 0);
        // The fd is the other end of x.
        assert_eq!(send_some(x, b"hi").unwrap(), 2);
        let mut got = [0u8; 4];
        assert_eq!(recv_some(fd, &mut got).unwrap(), 2);
        assert_eq!(recv_some(fd, &mut got), Err(libc::EAGAIN));
        shutdown(x, libc::SHUT_WR).unwrap();
        assert_eq!(recv_some(fd, &mut got), Ok(0), "the end");
        for f in [a, b, x, fd] {
            sys_close(f);
        }
        // The channel's end reads as 0.
        let (a, b) = pair(libc::SOCK_SEQPACKET).unwrap();
        sys_close(a);
        assert_eq!(recv_msg(b, &mut buf, 0).unwrap(), (0, None));
        sys_close(b);
    }

    fn sys_close(fd: c_int) {
        crate::sys::close(fd);
    }
}
