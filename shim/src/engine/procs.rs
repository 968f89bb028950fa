//! Many processes on one port (`ACCEL_PROCS=multi`): DPDK's multi-process
//! model, as F-Stack uses it. One *port owner* (the DPDK primary, see
//! [`crate::engine::owner`]) creates the port with its queue pairs and never polls
//! it; each accelerated process attaches as a DPDK secondary and takes queue
//! pairs of its own, each with its own stack.
//!
//! This module is the accelerated process's side:
//! - [`key`]: the port's identity (its `--vdev` and this network
//!   namespace), which names the owner's control socket (abstract, so per
//!   namespace, like the port's kernel side) and DPDK's file prefix.
//! - [`attach`]: connects to the owner, starting it if there is none (the
//!   library re-executes the program's own binary with itself preloaded
//!   and `ACCEL_OWNER=1`: the library's constructor then runs the owner
//!   instead of the program; a clone with no exit signal, in a session of
//!   its own, so the program's `wait` never sees it), asks for
//!   `ACCEL_QUEUES` queue pairs, starts DPDK as a secondary and attaches
//!   to them.
//! - The connection to the owner stays open for the life of the process
//!   (close-on-exec, closed in the child of a `fork`, held by the reaper
//!   too): when it ends, whatever ended the process (`SIGKILL` included),
//!   the owner takes the queues back, after the reaper has reset the
//!   process's connections.
//!
//! Strays: the device hands a flow to whichever queue its hash (or what it
//! learned from our frames) says, which may be another process's: a SYN
//! for a port only another program listens on (two programs on one
//! address), a segment of a connection whose queue the device forgot
//! after queues came and went. A stack keeps a segment it has no socket
//! for ([`accel_stack::iface::Interface::set_handover`]), and it goes to
//! the next process round the port's queues ([`forward`]) over a datagram
//! socket per queue (abstract, `accel-fwd-KEY-Q`); a process that would
//! take it ([`accel_stack::iface::Interface::would_take`]) takes it, one
//! that would not passes it on, and the last before the one it came from
//! answers it with a reset, as the kernel would. Likewise a neighbour that
//! ARP taught one process is told to the others ([`share_neighbours`]):
//! the reply to a request comes in on one queue only.
//!
//! The protocol is one request and one reply, text in `SOCK_SEQPACKET`
//! messages: `take N PID [lanes=M] [upto]`; `ok port=P pool=M prefix=F
//! queues=T take=Q1,Q2 secret=HEX [lanes=K pi=0|1 steer=0|1]` with, on a
//! net_tap port, each queue's descriptor (`SCM_RIGHTS`: the process polls
//! it for frames, and the reaper writes its resets there), then the K
//! lanes' and, with `steer=1`, the steering program's two maps' (see
//! `owner`), or `err WHY`.
//!
//! Every system call here is raw (`libc::syscall`): the shim does not call
//! what it intercepts on its own behalf.

use crate::logging::log;
use crate::sys;
use accel_stack::phy::dpdk::{DpdkDevice, Eal};
use std::ffi::CString;
use std::sync::atomic::{AtomicI32, Ordering::*};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Huge-page memory the owner gives DPDK, MB.
pub const OWNER_MEM_MB: u32 = 64;
/// Most descriptors one message carries: the kernel's own limit
/// (`SCM_MAX_FD`), so that a reply holds the queue pairs, up to 200 lanes
/// (`ACCEL_LANES`'s most) and the steering program's two maps.
pub const MAX_FDS: usize = 253;
/// Longest message.
pub const MSG_MAX: usize = 1024;

/// The connection to the owner; -1 without one.
static CONTROL: AtomicI32 = AtomicI32::new(-1);

/// The identity of the port of `vdev` in this network namespace: a
/// 64-bit FNV-1a hash of both.
pub fn key(vdev: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(vdev.as_bytes());
    eat(&netns_inode().to_le_bytes());
    h
}

/// The inode of this process's network namespace (0 if unknown).
fn netns_inode() -> u64 {
    // SAFETY: a zeroed `stat` is a valid buffer for the kernel to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the path is NUL-terminated and `st` writable.
    let rc = unsafe { libc::syscall(libc::SYS_stat, c"/proc/self/ns/net".as_ptr(), &mut st) };
    if rc == 0 {
        st.st_ino
    } else {
        0
    }
}

/// The abstract name of the owner's control socket for port `key`.
pub fn control_name(key: u64) -> String {
    format!("accel-owner-{key:016x}")
}

/// DPDK's `--file-prefix` for port `key`.
pub fn file_prefix(key: u64) -> String {
    format!("accel-{key:016x}")
}

/// An abstract `sockaddr_un` for `name`, and its length.
pub fn abstract_addr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: all zeroes is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let room = addr.sun_path.len() - 1;
    let bytes = name.as_bytes().get(..name.len().min(room)).unwrap_or_default();
    for (d, s) in addr.sun_path.iter_mut().skip(1).zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + bytes.len();
    (addr, len as libc::socklen_t)
}

/// A close-on-exec `SOCK_SEQPACKET` Unix socket, raw.
pub fn seqpacket() -> Result<i32, i32> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        Err(sys::errno())
    } else {
        Ok(fd as i32)
    }
}

/// Sends `msg` with descriptors `fds` on `fd` (never `SIGPIPE`).
pub fn send_msg(fd: i32, msg: &[u8], fds: &[i32]) -> Result<(), i32> {
    let fds = fds.get(..fds.len().min(MAX_FDS)).unwrap_or_default();
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr().cast_mut().cast(),
        iov_len: msg.len(),
    };
    let mut cbuf = [0u64; (MAX_FDS * 4 + 64) / 8];
    // SAFETY: all zeroes is a valid msghdr.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is arithmetic.
        let space = unsafe { libc::CMSG_SPACE(bytes) } as usize;
        hdr.msg_control = cbuf.as_mut_ptr().cast();
        hdr.msg_controllen = space;
        // SAFETY: the control buffer is `space` bytes (it holds MAX_FDS
        // descriptors), so the first header and its data fit in it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&hdr);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<i32>(), fds.len());
        }
    }
    loop {
        // SAFETY: `hdr` points at live buffers of the lengths it gives.
        let rc = unsafe { libc::syscall(libc::SYS_sendmsg, fd, &hdr, libc::MSG_NOSIGNAL) };
        if rc >= 0 {
            return Ok(());
        }
        match sys::errno() {
            libc::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Receives one message on `fd` into `buf`, waiting at most `limit`
/// (`None`: no limit); its length (0: the peer closed) and the descriptors
/// it carried (close-on-exec).
pub fn recv_msg(fd: i32, buf: &mut [u8], limit: Option<Duration>) -> Result<(usize, Vec<i32>), i32> {
    let end = limit.map(|l| Instant::now() + l);
    loop {
        let left = end.map(|end| end.saturating_duration_since(Instant::now()));
        let mut p = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: a null mask: the thread's own.
        match unsafe { sys::ppoll(&mut p, left, std::ptr::null()) } {
            Ok(0) if left.is_some_and(|l| l.is_zero()) => return Err(libc::ETIMEDOUT),
            Ok(0) | Err(libc::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(e),
        }
    }
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; (MAX_FDS * 4 + 64) / 8];
    // SAFETY: all zeroes is a valid msghdr.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = cbuf.as_mut_ptr().cast();
    hdr.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: `hdr` points at live, writable buffers of its lengths.
        let rc = unsafe { libc::syscall(libc::SYS_recvmsg, fd, &mut hdr, libc::MSG_CMSG_CLOEXEC) };
        if rc >= 0 {
            break rc as usize;
        }
        match sys::errno() {
            libc::EINTR => continue,
            e => return Err(e),
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `hdr`'s control part; the CMSG macros walk
    // it within `msg_controllen`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<i32>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    fds.push(std::ptr::read_unaligned(data.add(i)));
                }
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    Ok((n, fds))
}

/// The forwarding sockets of this process: the port's key and queue
/// pairs, and per local stack its queue on the port and socket.
struct Forwarding {
    key: u64,
    total: u16,
    local: Vec<(u16, i32)>,
}

static FORWARDING: OnceLock<Forwarding> = OnceLock::new();

/// The abstract name of queue `q`'s forwarding socket on port `key`.
pub(crate) fn forward_name(key: u64, q: u16) -> String {
    format!("accel-fwd-{key:016x}-{q}")
}

/// Opens a forwarding socket for each of this process's queues `qs` (in
/// the order of its stacks) on port `key` of `total` queue pairs.
pub fn open_forwarding(key: u64, total: u16, qs: &[u16]) -> Result<(), String> {
    let mut local = Vec::with_capacity(qs.len());
    for &q in qs {
        let fd = bind_forwarding(key, q)
            .map_err(|e| format!("{e} (a process that held queue {q} still runs?)"))?;
        let _ = crate::fdtable::FDS.install(fd, crate::fdtable::State::Internal, 0);
        local.push((q, fd));
    }
    FORWARDING
        .set(Forwarding { key, total, local })
        .map_err(|_| "forwarding is set up already".to_owned())
}

/// A nonblocking datagram socket bound to the forwarding name of queue `q`
/// (or [`OWNER_Q`]) of port `key`.
pub(crate) fn bind_forwarding(key: u64, q: u16) -> Result<i32, String> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(format!("forwarding socket: errno {}", sys::errno()));
    }
    let fd = fd as i32;
    let name = forward_name(key, q);
    let (addr, len) = abstract_addr(&name);
    // SAFETY: `addr` is a sockaddr_un of `len` bytes.
    let rc = unsafe { libc::syscall(libc::SYS_bind, fd, &addr as *const libc::sockaddr_un, len) };
    if rc != 0 {
        let e = sys::errno();
        sys::close(fd);
        return Err(format!("bind {name}: errno {e}"));
    }
    Ok(fd)
}

/// Local stack `i`'s queue on the port (`i` without forwarding).
pub fn global(i: usize) -> u16 {
    FORWARDING
        .get()
        .and_then(|f| f.local.get(i))
        .map_or(i as u16, |&(q, _)| q)
}

/// The forwarding socket of local stack `i`, if any.
pub fn forward_fd(i: usize) -> Option<i32> {
    FORWARDING.get()?.local.get(i).map(|&(_, fd)| fd)
}

/// What became of a packet to forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// Sent to the next process.
    Sent,
    /// Kept to be sent later ([`retry_forwarding`]): the next process's
    /// socket is full (a Unix datagram socket queues few: a burst of SYNs
    /// fills it).
    Later,
    /// Nobody else is there, or the next would be the queue it came to
    /// first: the caller resets it.
    Nobody,
}

/// Packets waiting for room at the next process: (packet, the queue it came
/// to first, the local stack it goes on from).
static LATER: std::sync::Mutex<Vec<(Vec<u8>, u16, usize)>> = std::sync::Mutex::new(Vec::new());
/// Most packets kept for later; beyond, they are reset as if nobody took
/// them (as a full backlog drops a SYN).
const LATER_MAX: usize = 4096;

/// Sends IPv4 packet `packet`, which came to queue `origin` first, on from
/// local stack `from` to the next process round the port's queues.
pub fn forward(packet: &[u8], origin: u16, from: usize) -> Forwarded {
    match send_on(packet, origin, from) {
        Forwarded::Later => {
            let mut later = LATER.lock().unwrap_or_else(|e| e.into_inner());
            if later.len() >= LATER_MAX {
                return Forwarded::Nobody;
            }
            later.push((packet.to_vec(), origin, from));
            Forwarded::Later
        }
        other => other,
    }
}

/// Whether packets wait to be forwarded.
pub fn forwarding_later() -> bool {
    LATER.try_lock().is_ok_and(|l| !l.is_empty())
}

/// Tries the packets kept for later again, oldest first; those nobody
/// takes are handed to `reset`, with the local stack they were on.
pub fn retry_forwarding(mut reset: impl FnMut(&[u8], usize)) {
    let batch = {
        let Ok(mut later) = LATER.try_lock() else { return };
        if later.is_empty() {
            return;
        }
        std::mem::take(&mut *later)
    };
    let mut keep = Vec::new();
    for (packet, origin, from) in batch {
        match send_on(&packet, origin, from) {
            Forwarded::Sent => {}
            Forwarded::Later => keep.push((packet, origin, from)),
            Forwarded::Nobody => reset(&packet, from),
        }
    }
    if !keep.is_empty() {
        let mut later = LATER.lock().unwrap_or_else(|e| e.into_inner());
        keep.append(&mut later);
        *later = keep;
    }
}

/// One try of [`forward`].
fn send_on(packet: &[u8], origin: u16, from: usize) -> Forwarded {
    let Some(f) = FORWARDING.get() else {
        return Forwarded::Nobody;
    };
    let Some(&(me, _)) = f.local.get(from) else {
        return Forwarded::Nobody;
    };
    let mut msg = Vec::with_capacity(packet.len() + 4);
    msg.extend_from_slice(&origin.to_le_bytes());
    msg.extend_from_slice(&KIND_PACKET.to_le_bytes());
    msg.extend_from_slice(packet);
    for k in 1..f.total {
        let q = (me + k) % f.total;
        if q == origin {
            return Forwarded::Nobody;
        }
        if f.local.iter().any(|&(l, _)| l == q) {
            continue;
        }
        let (addr, len) = abstract_addr(&forward_name(f.key, q));
        // SAFETY: `msg` and `addr` are live for their lengths.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sendto,
                f.local.first().map_or(-1, |&(_, fd)| fd),
                msg.as_ptr(),
                msg.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                &addr as *const libc::sockaddr_un,
                len,
            )
        };
        if rc >= 0 {
            return Forwarded::Sent;
        }
        if sys::errno() == libc::EAGAIN {
            return Forwarded::Later;
        }
        // Nobody holds queue q: the next.
    }
    Forwarded::Nobody
}

/// A forwarded message: an IPv4 packet.
const KIND_PACKET: u16 = 0;
/// A forwarded message: a neighbour (IPv4 address, MAC) learned by ARP.
const KIND_NEIGHBOUR: u16 = 1;
/// A message: the sender has connections adrift on a port (see
/// [`crate::engine::migrate`]).
pub(crate) const KIND_OFFER: u16 = 2;
/// A message: the sender listens on the port offered; send them here.
const KIND_WANT: u16 = 3;
/// A message: a connection's image (`accel_stack::tcp::image`).
pub(crate) const KIND_CONN: u16 = 4;
/// A message to the port owner: keep this connection (port, image) for the
/// next process that listens on its port (see [`crate::engine::parked`]).
const KIND_PARK: u16 = 5;

/// The forwarding "queue" of the port owner, where a process that exits
/// with connections adrift leaves them ([`park`]).
pub const OWNER_Q: u16 = u16::MAX;

/// What another process sent to a stack of this one.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// An IPv4 packet, at offset 4 of the buffer.
    Packet {
        /// The queue it came to first.
        origin: u16,
        /// The message's length (the packet's plus 4).
        len: usize,
    },
    /// A neighbour ARP taught that process.
    Neighbour(std::net::Ipv4Addr, [u8; 6]),
    /// That process (queue `from`) has connections adrift on `port`.
    Offer {
        /// Where to answer.
        from: u16,
        /// The port.
        port: u16,
    },
    /// That process (queue `from`) listens on `port` and takes the
    /// connections adrift there.
    Want {
        /// Where to send them.
        from: u16,
        /// The port.
        port: u16,
    },
    /// A connection's image, at offset 4 of the buffer.
    Conn {
        /// The message's length (the image's plus 4).
        len: usize,
    },
    /// To the owner: a connection on `port` to keep, its image at offset 6
    /// of the buffer.
    Park {
        /// Its local port.
        port: u16,
        /// The message's length (the image's plus 6).
        len: usize,
    },
}

/// Tells every other process of the port the neighbours `learned` (an ARP
/// reply reaches one process only: the one whose queue the device gave it).
pub fn share_neighbours(learned: &[(std::net::Ipv4Addr, [u8; 6])]) {
    for &(ip, mac) in learned {
        let mut body = [0u8; 10];
        body[..4].copy_from_slice(&ip.octets());
        body[4..].copy_from_slice(&mac);
        // A queue nobody holds refuses it, which is fine.
        for q in others() {
            send_kind(q, 0, KIND_NEIGHBOUR, &body);
        }
    }
}

/// The port's queues this process does not hold.
fn others() -> impl Iterator<Item = u16> {
    let f = FORWARDING.get();
    let total = f.map_or(0, |f| f.total);
    (0..total).filter(move |q| f.is_some_and(|f| !f.local.iter().any(|&(l, _)| l == *q)))
}

/// Sends a message of `kind` with `body` from local stack `from` to the
/// process holding queue `q`; whether it was sent (a queue nobody holds,
/// or a full socket, refuses it).
fn send_kind(q: u16, from: usize, kind: u16, body: &[u8]) -> bool {
    let Some(f) = FORWARDING.get() else {
        return false;
    };
    let Some(&(me, fd)) = f.local.get(from) else {
        return false;
    };
    send_from(fd, me, f.key, q, kind, body)
}

/// Sends a message of `kind` with `body` on socket `fd`, from `me` (a
/// queue, or [`OWNER_Q`]) to the forwarding socket of queue `q` of port
/// `key`; whether it was sent.
pub(crate) fn send_from(fd: i32, me: u16, key: u64, q: u16, kind: u16, body: &[u8]) -> bool {
    let mut msg = Vec::with_capacity(body.len() + 4);
    msg.extend_from_slice(&me.to_le_bytes());
    msg.extend_from_slice(&kind.to_le_bytes());
    msg.extend_from_slice(body);
    let (addr, len) = abstract_addr(&forward_name(key, q));
    // SAFETY: `msg` and `addr` are live for their lengths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            msg.as_ptr(),
            msg.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            &addr as *const libc::sockaddr_un,
            len,
        )
    };
    rc >= 0
}

/// Leaves a connection adrift on `port` (its image) with the port owner,
/// for the next process that listens there; whether it went.
pub fn park(port: u16, image: &[u8]) -> bool {
    let mut body = Vec::with_capacity(image.len() + 2);
    body.extend_from_slice(&port.to_le_bytes());
    body.extend_from_slice(image);
    send_kind(OWNER_Q, 0, KIND_PARK, &body)
}

/// Tells every other process of the port that this one has connections
/// adrift on `port` (see [`crate::engine::migrate`]).
pub fn offer(port: u16) {
    for q in others() {
        send_kind(q, 0, KIND_OFFER, &port.to_le_bytes());
    }
}

/// Answers an offer from queue `to`: local stack `from` listens on `port`.
pub fn want(port: u16, to: u16, from: usize) {
    send_kind(to, from, KIND_WANT, &port.to_le_bytes());
}

/// Sends connection image `image` from local stack `from` to the process
/// holding queue `to`; whether it went.
pub fn send_conn(to: u16, from: usize, image: &[u8]) -> bool {
    send_kind(to, from, KIND_CONN, image)
}

/// Receives one message on local stack `i`'s socket into `buf`; `None`
/// when none waits.
pub fn receive_forwarded(i: usize, buf: &mut [u8]) -> Option<Message> {
    let fd = forward_fd(i)?;
    // SAFETY: `buf` is writable for its length; no address is asked.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            libc::MSG_DONTWAIT,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    parse(buf.get(..usize::try_from(n).ok()?)?)
}

/// The message in `buf` (one datagram of a forwarding socket).
pub fn parse(buf: &[u8]) -> Option<Message> {
    let n = buf.len();
    if n < 4 {
        return None;
    }
    let origin = u16::from_le_bytes([*buf.first()?, *buf.get(1)?]);
    match u16::from_le_bytes([*buf.get(2)?, *buf.get(3)?]) {
        KIND_NEIGHBOUR => {
            let ip: [u8; 4] = buf.get(4..8)?.try_into().ok()?;
            let mac: [u8; 6] = buf.get(8..14)?.try_into().ok()?;
            Some(Message::Neighbour(std::net::Ipv4Addr::from(ip), mac))
        }
        kind @ (KIND_OFFER | KIND_WANT) => {
            let port = u16::from_le_bytes(buf.get(4..6)?.try_into().ok()?);
            Some(if kind == KIND_OFFER {
                Message::Offer { from: origin, port }
            } else {
                Message::Want { from: origin, port }
            })
        }
        KIND_CONN => Some(Message::Conn { len: n }),
        KIND_PARK => {
            let port = u16::from_le_bytes(buf.get(4..6)?.try_into().ok()?);
            Some(Message::Park { port, len: n })
        }
        _ => Some(Message::Packet { origin, len: n }),
    }
}

/// Ports this process listened on and closed, with when (ns of the
/// monotonic clock): at most a few, the newest kept.
static CLOSED_PORTS: std::sync::Mutex<[(u16, u64); 8]> = std::sync::Mutex::new([(0, 0); 8]);

/// How long a SYN for a port whose listener this process closed is
/// dropped rather than reset, when no other process takes it.
const CLOSED_GRACE_NS: u64 = 10_000_000_000;

/// The program closed its listener on `port` (in every stack of this
/// process). With the port shared, it may be handing the port over to
/// processes that are only starting (an nginx reload: the old workers
/// close their listeners as the new ones come up): see
/// [`drop_unclaimed`].
pub fn listener_closed(port: u16) {
    if !attached() {
        return;
    }
    note_port(&CLOSED_PORTS, port);
}

/// When this process attached to the port (ns of the stack's clock; 0:
/// never).
static ATTACHED_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Ports on which another process (or the owner) offered connections
/// adrift lately, with when (ns of the monotonic clock).
static OFFERED_PORTS: std::sync::Mutex<[(u16, u64); 8]> = std::sync::Mutex::new([(0, 0); 8]);

/// How long after an offer on a port a segment there that nobody takes is
/// dropped rather than reset.
const OFFERED_GRACE_NS: u64 = 2_000_000_000;

/// Notes an offer of connections adrift on `port` (see [`drop_unclaimed`]).
pub fn offer_seen(port: u16) {
    note_port(&OFFERED_PORTS, port);
}

/// Notes that this process handed connections adrift on `port` to another
/// process or to the port owner. Their segments may still come here (a
/// process that exits polls on while its other connections close): they
/// go round the processes, and one that finds no process with the
/// connection yet is dropped rather than reset ([`drop_unclaimed`]), as
/// after an offer. The peer retransmits to the connection's new home.
pub fn handed_away(port: u16) {
    note_port(&OFFERED_PORTS, port);
}

fn note_port(list: &std::sync::Mutex<[(u16, u64); 8]>, port: u16) {
    let t = crate::engine::worker::now().nanos();
    let mut ports = list.lock().unwrap_or_else(|e| e.into_inner());
    let slot = ports
        .iter()
        .position(|&(p, _)| p == port)
        .or_else(|| (0..ports.len()).min_by_key(|&i| ports.get(i).map_or(0, |s| s.1)));
    if let Some(s) = slot.and_then(|i| ports.get_mut(i)) {
        *s = (port, t);
    }
}

fn noted_within(list: &std::sync::Mutex<[(u16, u64); 8]>, port: u16, grace: u64) -> bool {
    let t = crate::engine::worker::now().nanos();
    let ports = list.lock().unwrap_or_else(|e| e.into_inner());
    ports
        .iter()
        .any(|&(p, at)| p == port && p != 0 && t.saturating_sub(at) < grace)
}

/// Whether IPv4 packet `packet`, which no process took, is to be dropped
/// rather than reset, so that the client's retransmission finds the
/// process taking the port or the connection over, as the kernel's one
/// listening socket shared by all the workers would have kept it:
/// - a SYN for a port this process stopped listening on in the last 10 s,
///   or any SYN in the first 10 s after this process attached (a worker
///   just forked may not have made its inherited listeners live yet);
/// - any TCP segment but a reset for a port on which connections adrift
///   were offered in the last 2 s: it may belong to one of them, on its
///   way to another process (from a process that exited, through the
///   owner: [`crate::engine::parked`]);
/// - any TCP segment but a reset in the first 2 s after this process
///   attached: the owner offers the connections it keeps every
///   [`crate::engine::migrate::OFFER_EVERY`], and a segment for one of
///   them may come to a process that has not read an offer yet (the
///   process that takes the queue pair of an exited one, in an nginx
///   reload). The cost: a peer of a connection that died with its process
///   gets its reset up to 2 s later.
pub fn drop_unclaimed(packet: &[u8]) -> bool {
    if !attached() {
        return false;
    }
    let since_attach = crate::engine::worker::now()
        .nanos()
        .saturating_sub(ATTACHED_AT.load(Acquire));
    unclaimed_dropped(
        packet,
        since_attach,
        |port| noted_within(&OFFERED_PORTS, port, OFFERED_GRACE_NS),
        |port| noted_within(&CLOSED_PORTS, port, CLOSED_GRACE_NS),
    )
}

/// [`drop_unclaimed`]'s rule, for a process that attached `since_attach`
/// ns ago, given whether connections adrift were `offered` on a port
/// lately and whether it `closed` its listener there lately.
fn unclaimed_dropped(
    packet: &[u8],
    since_attach: u64,
    offered: impl Fn(u16) -> bool,
    closed: impl Fn(u16) -> bool,
) -> bool {
    if let Some(port) = tcp_port(packet) {
        if since_attach < OFFERED_GRACE_NS || offered(port) {
            return true;
        }
    }
    match syn_port(packet) {
        Some(port) => since_attach < CLOSED_GRACE_NS || closed(port),
        None => false,
    }
}

/// The destination port of IPv4 packet `packet` if it is a TCP segment
/// other than a reset.
fn tcp_port(packet: &[u8]) -> Option<u16> {
    tcp_dest(packet).and_then(|(port, flags)| (flags & 0x04 == 0).then_some(port))
}

/// The destination port of IPv4 packet `packet` if it is a TCP SYN
/// (without ACK).
fn syn_port(packet: &[u8]) -> Option<u16> {
    tcp_dest(packet).and_then(|(port, flags)| (flags & 0x12 == 0x02).then_some(port))
}

/// The destination port and flags of IPv4 packet `packet` if it is TCP.
fn tcp_dest(packet: &[u8]) -> Option<(u16, u8)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let (&proto, &d0, &d1, &flags) = (
        packet.get(9)?,
        packet.get(ihl + 2)?,
        packet.get(ihl + 3)?,
        packet.get(ihl + 13)?,
    );
    (ihl >= 20 && proto == 6).then(|| (u16::from_be_bytes([d0, d1]), flags))
}

/// What the owner gave this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The port's name (`net_tap0`).
    pub port: String,
    /// The owner's mempool.
    pub pool: String,
    /// DPDK's file prefix.
    pub prefix: String,
    /// The port's queue pairs in all.
    pub queues: u16,
    /// The queue pairs taken, first to last.
    pub take: Vec<u16>,
    /// The secret every process's stacks share (initial sequence numbers,
    /// SYN cookies: the ACK of a cookie may reach another process).
    pub secret: [u8; 16],
    /// Lanes given with the queue (`engine::lanes`): their descriptors
    /// follow the queues'. 0 unless asked for.
    pub lanes: u16,
    /// The lanes' frames carry packet information (`struct tun_pi`).
    pub pi: bool,
    /// The owner set the lanes' steering program on the interface: its
    /// two maps' descriptors follow the lanes' (`engine::steer`).
    pub steer: bool,
}

impl Grant {
    /// The reply that carries this grant.
    pub fn reply(&self) -> String {
        let take: Vec<String> = self.take.iter().map(u16::to_string).collect();
        let secret: String = self.secret.iter().map(|b| format!("{b:02x}")).collect();
        let lanes = if self.lanes > 0 {
            format!(
                " lanes={} pi={} steer={}",
                self.lanes,
                u8::from(self.pi),
                u8::from(self.steer)
            )
        } else {
            String::new()
        };
        format!(
            "ok port={} pool={} prefix={} queues={} take={} secret={secret}{lanes}",
            self.port,
            self.pool,
            self.prefix,
            self.queues,
            take.join(",")
        )
    }

    /// Parses a reply: the grant, or the owner's reason.
    pub fn parse(reply: &str) -> Result<Grant, String> {
        if let Some(why) = reply.strip_prefix("err ") {
            return Err(why.to_owned());
        }
        let body = reply
            .strip_prefix("ok ")
            .ok_or_else(|| format!("the port owner said {reply:?}"))?;
        let field = |name: &str| -> Result<&str, String> {
            body.split(' ')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| format!("the port owner's reply has no {name}: {reply:?}"))
        };
        let bad = |what: &str| format!("the port owner's reply has a bad {what}: {reply:?}");
        let take = field("take")?
            .split(',')
            .map(|q| q.parse::<u16>().map_err(|_| bad("take")))
            .collect::<Result<Vec<u16>, String>>()?;
        let queues = field("queues")?.parse().map_err(|_| bad("queues"))?;
        if take.is_empty() || take.iter().any(|&q| q >= queues) {
            return Err(bad("take"));
        }
        let hex = field("secret")?;
        let mut secret = [0u8; 16];
        if hex.len() != 32 {
            return Err(bad("secret"));
        }
        for (i, b) in secret.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2).ok_or_else(|| bad("secret"))?;
            *b = u8::from_str_radix(pair, 16).map_err(|_| bad("secret"))?;
        }
        // Lanes are optional (an owner gives them only to who asks).
        let lanes = match field("lanes") {
            Ok(v) => v.parse().map_err(|_| bad("lanes"))?,
            Err(_) => 0,
        };
        let pi = lanes > 0 && field("pi")? == "1";
        let steer = lanes > 0 && field("steer")? == "1";
        Ok(Grant {
            secret,
            port: field("port")?.to_owned(),
            pool: field("pool")?.to_owned(),
            prefix: field("prefix")?.to_owned(),
            queues,
            take,
            lanes,
            pi,
            steer,
        })
    }
}

/// The queue pairs this process attached to.
pub struct Attached {
    /// The port's key.
    pub key: u64,
    /// DPDK, as a secondary.
    pub eal: Eal,
    /// The queue pairs, with their numbers on the port.
    pub devs: Vec<(u16, DpdkDevice)>,
    /// What the owner said.
    pub grant: Grant,
    /// Each queue's descriptor (net_tap), in the order of `devs`.
    pub fds: Vec<i32>,
    /// The lanes' descriptors (`grant.lanes` of them).
    pub lane_fds: Vec<i32>,
    /// The steering program's maps (flows, queue indices), if the owner
    /// set one.
    pub steer_fds: Option<(i32, i32)>,
}

/// Attaches this process to the port of `vdev` with `want` queue pairs
/// (`upto`: as many as are free, one at least), starting its owner if
/// there is none, and asks for `lanes` lanes (see `engine::lanes`; the
/// owner gives them to a process alone on the port); see the module
/// documentation.
pub fn attach(vdev: &str, want: u16, upto: bool, lanes: u16, cpu: usize) -> Result<Attached, String> {
    let key = key(vdev);
    let name = control_name(key);
    let fd = connect_or_start(&name)?;
    let mut request = format!("take {want} {}", sys::getpid());
    if lanes > 0 {
        request.push_str(&format!(" lanes={lanes}"));
    }
    if upto {
        request.push_str(" upto");
    }
    let got = send_msg(fd, request.as_bytes(), &[]).and_then(|()| {
        let mut buf = [0u8; MSG_MAX];
        recv_msg(fd, &mut buf, Some(Duration::from_secs(60))).map(|(n, fds)| {
            (
                String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned(),
                fds,
            )
        })
    });
    let (reply, fds) = match got {
        Ok(r) => r,
        Err(e) => {
            sys::close(fd);
            return Err(format!(
                "the port owner ({name}) did not answer: {}",
                std::io::Error::from_raw_os_error(e)
            ));
        }
    };
    let mut fds = fds;
    let grant = match Grant::parse(&reply) {
        Ok(g)
            if g.lanes > 0 && fds.len() != g.take.len() + usize::from(g.lanes) + 2 * usize::from(g.steer) =>
        {
            let why = format!(
                "the port owner sent {} descriptors for {} queue pairs and {} lanes",
                fds.len(),
                g.take.len(),
                g.lanes
            );
            sys::close(fd);
            for f in fds {
                sys::close(f);
            }
            return Err(why);
        }
        Ok(g) => g,
        Err(why) => {
            sys::close(fd);
            for f in fds {
                sys::close(f);
            }
            if reply.is_empty() {
                return Err(format!(
                    "the port owner ({name}) closed the connection: see its log"
                ));
            }
            return Err(format!("the port owner refused: {why}"));
        }
    };
    // From here the connection stays: the owner takes the queues back when
    // it ends.
    CONTROL.store(fd, Release);
    ATTACHED_AT.store(crate::engine::worker::now().nanos().max(1), Release);
    let _ = crate::fdtable::FDS.install(fd, crate::fdtable::State::Internal, 0);
    for &f in &fds {
        let _ = crate::fdtable::FDS.install(f, crate::fdtable::State::Internal, 0);
    }
    let first = grant.take.first().copied().unwrap_or(0);
    let mut args = Eal::multi_process_args(&grant.prefix, true, 0, &[]);
    // Each process has a main lcore of its own (the mempool's per-lcore
    // caches are shared memory): 1 + its first queue; the owner is 0.
    args.extend([
        "--lcores".to_owned(),
        format!("{}@{cpu}", 1 + first),
        "--no-telemetry".to_owned(),
    ]);
    let eal = Eal::init(&args)
        .map_err(|e| format!("DPDK did not start as a secondary ({}): {e}", args.join(" ")))?;
    let mut devs = Vec::with_capacity(grant.take.len());
    let dev = DpdkDevice::attach(&eal, &grant.port, &grant.pool, first, 32)
        .map_err(|e| format!("port {}: {e}", grant.port))?;
    for &q in grant.take.iter().skip(1) {
        let more = dev
            .queue_pair(q)
            .map_err(|e| format!("port {}: {e}", grant.port))?;
        devs.push((q, more));
    }
    devs.insert(0, (first, dev));
    let mut lane_fds = if grant.lanes > 0 {
        fds.split_off(grant.take.len())
    } else {
        Vec::new()
    };
    let steer_fds = if grant.steer {
        let maps = lane_fds.split_off(usize::from(grant.lanes));
        maps.first().copied().zip(maps.get(1).copied())
    } else {
        None
    };
    Ok(Attached {
        key,
        eal,
        devs,
        grant,
        fds,
        lane_fds,
        steer_fds,
    })
}

/// A connection to the owner at `name`, starting one if nobody listens.
fn connect_or_start(name: &str) -> Result<i32, String> {
    let (addr, len) = abstract_addr(name);
    let start = Instant::now();
    let mut spawned = false;
    loop {
        let fd = seqpacket().map_err(|e| format!("socket: {}", std::io::Error::from_raw_os_error(e)))?;
        // SAFETY: `addr` is a sockaddr_un of `len` bytes.
        let rc = unsafe { libc::syscall(libc::SYS_connect, fd, &addr as *const libc::sockaddr_un, len) };
        if rc == 0 {
            return Ok(fd);
        }
        let e = sys::errno();
        sys::close(fd);
        if e != libc::ECONNREFUSED && e != libc::ENOENT && e != libc::EAGAIN {
            return Err(format!(
                "cannot reach the port owner ({name}): {}",
                std::io::Error::from_raw_os_error(e)
            ));
        }
        if !spawned {
            spawned = true;
            spawn_owner(name)?;
            log!(info, "no port owner for this port yet: started one ({name})");
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "the port owner ({name}) did not start within 20 s: see its log (ACCEL_LOG_FILE)"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where this library was loaded from.
fn library_path() -> Option<CString> {
    // SAFETY: all zeroes is a valid Dl_info.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = library_path as fn() -> Option<CString> as *const libc::c_void;
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: the loader's string for a loaded object, NUL-terminated.
    let path = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some(path.to_owned())
}

/// Starts the owner: this program's own binary, with this library
/// preloaded and `ACCEL_OWNER=1`, so that the library's constructor runs
/// the owner and the program's `main` never runs. A clone without an exit
/// signal (invisible to the program's `wait`), in a new session, with
/// nothing of the program's open but standard error.
fn spawn_owner(name: &str) -> Result<(), String> {
    let lib = library_path().ok_or("cannot find where libaccel.so was loaded from (dladdr)")?;
    // From the configuration read at start-up, not the environment: a
    // program may clear its environment (nginx's workers keep none of it).
    let cfg = crate::startup::config();
    let mut env: Vec<CString> = Vec::new();
    let mut put = |name: &str, value: &dyn std::fmt::Display| {
        if let Ok(c) = CString::new(format!("{name}={value}")) {
            env.push(c);
        }
    };
    put("ACCEL_DPDK_ARGS", &cfg.dpdk_args);
    put("ACCEL_LOG", &cfg.log_level.name());
    put("ACCEL_PORT_QUEUES", &cfg.port_queues);
    // The owner opens the lanes before the tap moves (see `owner`).
    put("ACCEL_LANES", &cfg.lanes);
    if !cfg.log_file.is_empty() {
        put("ACCEL_LOG_FILE", &cfg.log_file);
    }
    if let Some(ip) = cfg.ip {
        put("ACCEL_IP", &ip);
    }
    if !cfg.tap_netns.is_empty() {
        put("ACCEL_TAP_NETNS", &cfg.tap_netns);
    }
    if let Some(peer) = cfg.tap_peer {
        put("ACCEL_TAP_PEER", &peer);
    }
    let mut preload = b"LD_PRELOAD=".to_vec();
    preload.extend_from_slice(lib.as_bytes());
    env.push(CString::new(preload).map_err(|_| "a library path with a NUL")?);
    env.push(c"ACCEL_OWNER=1".to_owned());
    env.push(c"PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_owned());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let arg0 = c"accel-owner";
    let arg1 = CString::new(name).map_err(|_| "a name with a NUL")?;
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let exe = c"/proc/self/exe";
    let null = c"/dev/null";
    // SAFETY: clone without CLONE_VM copies the process; the child makes
    // only raw system calls on memory prepared above, then execs or exits.
    let pid = unsafe { libc::syscall(libc::SYS_clone, 0usize, 0usize, 0usize, 0usize, 0usize) };
    if pid == 0 {
        // SAFETY: the child: raw calls on the prepared, live strings.
        unsafe {
            libc::syscall(libc::SYS_setsid);
            let dn = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, null.as_ptr(), libc::O_RDWR);
            if dn >= 0 {
                libc::syscall(libc::SYS_dup2, dn, 0);
                libc::syscall(libc::SYS_dup2, dn, 1);
            }
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            libc::syscall(libc::SYS_execve, exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::syscall(libc::SYS_exit_group, 127);
        }
    }
    if pid < 0 {
        return Err(format!(
            "cannot start the port owner: clone: {}",
            std::io::Error::from_raw_os_error(sys::errno())
        ));
    }
    Ok(())
}

/// Whether this process is attached to a port owner.
pub fn attached() -> bool {
    CONTROL.load(Acquire) >= 0
}

/// In the child of `fork`: the connection is the parent's (the child
/// holding it would keep the parent's queues taken after the parent died).
/// Likewise the forwarding sockets: their names must go with the parent.
pub fn after_fork() {
    let fd = CONTROL.swap(-1, AcqRel);
    if fd >= 0 {
        crate::fdtable::FDS.clear(fd);
        sys::close(fd);
    }
    for &(_, fd) in FORWARDING.get().map_or(&[][..], |f| &f.local[..]) {
        crate::fdtable::FDS.clear(fd);
        sys::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_goes_there_and_back() {
        let g = Grant {
            port: "net_tap0".into(),
            pool: "accel_pool_1".into(),
            prefix: "accel-00ff".into(),
            queues: 8,
            take: vec![3, 5],
            secret: [0xa5; 16],
            lanes: 0,
            pi: false,
            steer: false,
        };
        let text = g.reply();
        assert_eq!(
            text,
            format!(
                "ok port=net_tap0 pool=accel_pool_1 prefix=accel-00ff queues=8 take=3,5 secret={}",
                "a5".repeat(16)
            )
        );
        assert_eq!(Grant::parse(&text), Ok(g.clone()));
        let none = format!(
            "ok port=p pool=m prefix=f queues=2 take=1 secret={}",
            "00".repeat(16)
        );
        assert_eq!(Grant::parse(&none).map(|g| g.take), Ok(vec![1]));
        // Lanes, with packet information or without.
        for (pi, steer) in [(true, true), (false, true), (true, false)] {
            let laned = Grant {
                take: vec![0],
                lanes: 12,
                pi,
                steer,
                ..g.clone()
            };
            let text = laned.reply();
            let tail = format!(" lanes=12 pi={} steer={}", u8::from(pi), u8::from(steer));
            assert!(text.ends_with(&tail), "{text}");
            assert_eq!(Grant::parse(&text), Ok(laned));
        }
        let bad = format!("{none} lanes=x pi=1");
        assert!(Grant::parse(&bad).is_err());
        let no_pi = format!("{none} lanes=3 steer=1");
        assert!(Grant::parse(&no_pi).is_err());
        let no_steer = format!("{none} lanes=3 pi=1");
        assert!(Grant::parse(&no_steer).is_err());
        assert!(Grant::parse("ok port=p pool=m prefix=f queues=2 take=1 secret=abc").is_err());
    }

    #[test]
    fn a_refusal_or_a_bad_reply_is_an_error() {
        assert_eq!(
            Grant::parse("err all 8 queue pairs are taken"),
            Err("all 8 queue pairs are taken".to_owned())
        );
        assert!(Grant::parse("ok port=p pool=m prefix=f queues=2 take=2").is_err());
        assert!(Grant::parse("ok port=p pool=m prefix=f queues=2 take=").is_err());
        assert!(Grant::parse("ok port=p pool=m queues=2 take=0").is_err());
        assert!(Grant::parse("hello").is_err());
    }

    /// A 40-byte IPv4/TCP packet to `port`, flags at byte 33 (0).
    fn tcp_packet(port: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[22..24].copy_from_slice(&port.to_be_bytes());
        p
    }

    #[test]
    fn only_a_syn_without_ack_names_its_port() {
        let mut p = tcp_packet(8080);
        p[33] = 0x02;
        assert_eq!(syn_port(&p), Some(8080));
        p[33] = 0x12; // SYN-ACK
        assert_eq!(syn_port(&p), None);
        p[33] = 0x10; // ACK
        assert_eq!(syn_port(&p), None);
        p[33] = 0x02;
        p[9] = 17; // UDP
        assert_eq!(syn_port(&p), None);
        assert_eq!(syn_port(&p[..30]), None, "too short");
        assert!(!drop_unclaimed(&p), "never without a port owner");
    }

    #[test]
    fn any_segment_but_a_reset_names_its_port_and_messages_parse() {
        let mut p = tcp_packet(80);
        for flags in [0x02, 0x10, 0x18, 0x11] {
            p[33] = flags;
            assert_eq!(tcp_port(&p), Some(80), "flags {flags:#x}");
        }
        p[33] = 0x14; // RST-ACK
        assert_eq!(tcp_port(&p), None);
        let mut park = vec![0xff, 0xff, 5, 0];
        park.extend_from_slice(&443u16.to_le_bytes());
        park.extend_from_slice(b"image");
        assert_eq!(parse(&park), Some(Message::Park { port: 443, len: 11 }));
        assert_eq!(
            parse(&[1, 0, 2, 0, 0x50, 0]),
            Some(Message::Offer { from: 1, port: 80 })
        );
        assert_eq!(parse(&[1, 0, 5, 0, 1]), None, "a park too short for its port");
        assert_eq!(parse(&[1, 0]), None);
    }

    #[test]
    fn an_unclaimed_segment_is_dropped_while_its_connection_may_be_on_its_way() {
        let mut p = tcp_packet(80);
        let (no, yes) = (|_: u16| false, |port: u16| port == 80);
        let s = 1_000_000_000u64;
        for (flags, what) in [(0x10, "an ACK"), (0x18, "data"), (0x11, "a FIN")] {
            p[33] = flags;
            assert!(unclaimed_dropped(&p, s, no, no), "{what} just after attaching");
            assert!(!unclaimed_dropped(&p, 3 * s, no, no), "{what} later: reset");
            assert!(
                unclaimed_dropped(&p, 3 * s, yes, no),
                "{what} on a port offered lately"
            );
            assert!(
                !unclaimed_dropped(&p, 3 * s, no, yes),
                "a closed listener keeps SYNs only"
            );
        }
        p[33] = 0x02;
        assert!(unclaimed_dropped(&p, 5 * s, no, no), "a SYN in the first 10 s");
        assert!(!unclaimed_dropped(&p, 11 * s, no, no));
        assert!(
            unclaimed_dropped(&p, 11 * s, no, yes),
            "a SYN for a listener closed lately"
        );
        p[33] = 0x14;
        assert!(!unclaimed_dropped(&p, 0, yes, yes), "a reset is never kept");
        p[9] = 17;
        assert!(!unclaimed_dropped(&p, 0, yes, yes), "nor anything but TCP");
    }

    #[test]
    fn the_key_depends_on_the_port() {
        assert_eq!(key("net_tap0,iface=a"), key("net_tap0,iface=a"));
        assert_ne!(key("net_tap0,iface=a"), key("net_tap0,iface=b"));
        assert!(control_name(1).starts_with("accel-owner-0000"));
        assert_eq!(file_prefix(0xab), "accel-00000000000000ab");
    }

    #[test]
    fn descriptors_travel_with_a_message() {
        let mut pair = [0i32; 2];
        // SAFETY: `pair` has room for two descriptors.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, pair.as_mut_ptr()) };
        assert_eq!(rc, 0);
        let file = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        send_msg(pair[0], b"hello", &[file.as_raw_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let (n, fds) = recv_msg(pair[1], &mut buf, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        assert_ne!(fds[0], file.as_raw_fd());
        sys::close(pair[0]);
        let (n, fds2) = recv_msg(pair[1], &mut buf, Some(Duration::from_secs(5))).unwrap();
        assert_eq!((n, fds2.len()), (0, 0), "the peer's close reads as 0");
        for fd in fds.into_iter().chain([pair[1]]) {
            sys::close(fd);
        }
    }
}
