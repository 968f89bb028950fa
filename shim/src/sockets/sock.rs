//! The shim's socket objects: what it knows about each socket whose fd is
//! not a plain kernel fd, indexed by the handle in the fd table entry.
//!
//! A [`Sock`] lives from `socket()` (as [`Kind::Pending`]) until the last
//! fd referring to it is closed (`refs` counts `dup`s). Its kind follows
//! the socket's fate: `Pending` until `bind`/`listen`/`connect` decide;
//! `Listener` for an accelerated listening socket (deferred until the
//! stack runs in this process, see `tcp_ops`), listening in every stack;
//! `Tcp` (on one stack) or `Udp` (in every stack) once the stacks hold it. A socket that stays in the kernel loses its `Sock` and
//! its fd becomes a plain kernel fd again.
//!
//! Options set before the stack holds the socket are kept in [`Opts`] and
//! applied when it does.

use crate::engine::stacks::Q;
use accel_stack::iface::{TcpHandle, UdpHandle};
use core::net::SocketAddrV4;
use std::time::Duration;

/// Socket options the stack needs to know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opts {
    /// `SO_REUSEADDR`.
    pub reuse_addr: bool,
    /// `SO_REUSEPORT`.
    pub reuse_port: bool,
    /// `TCP_NODELAY`.
    pub nodelay: bool,
    /// `SO_KEEPALIVE`.
    pub keepalive: bool,
    /// `SO_RCVBUF` as set (the stack's receive buffer).
    pub rcvbuf: Option<usize>,
    /// `SO_SNDBUF` as set.
    pub sndbuf: Option<usize>,
    /// `SO_LINGER` with a zero timeout: close resets.
    pub linger_zero: bool,
    /// `SO_RCVTIMEO`: a blocking receive gives up after this long.
    pub rcvtimeo: Option<Duration>,
    /// `SO_SNDTIMEO`: a blocking send or connect gives up after this long.
    pub sndtimeo: Option<Duration>,
    /// `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT` as the kernel holds
    /// them, once a keepalive option was set.
    pub keep_times: Option<accel_stack::tcp::Keepalive>,
    /// `TCP_USER_TIMEOUT` (`None`: 0).
    pub user_timeout: Option<Duration>,
    /// `TCP_CORK`.
    pub cork: bool,
    /// `IP_TOS` as the kernel kept it.
    pub tos: u8,
    /// `TCP_MAXSEG` (`None`: 0).
    pub maxseg: Option<u16>,
    /// `TCP_DEFER_ACCEPT`, in seconds as the kernel rounds it.
    pub defer_accept: Option<Duration>,
    /// `TCP_QUICKACK` set to 0.
    pub quickack_off: bool,
    /// `SO_LINGER` on with a timeout: the last close waits this long for
    /// the connection's FIN to be acknowledged.
    pub linger: Option<Duration>,
    /// Which of the options an accepted connection inherits were set
    /// (bits of `sockopt::INHERITED`).
    pub inherit: u16,
}

/// Where a socket is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Made by `socket()`; `bind`/`listen`/`connect` decide.
    Pending {
        /// Datagram (UDP) rather than stream (TCP).
        dgram: bool,
        /// The address `bind` recorded (ours or the wildcard).
        bound: Option<SocketAddrV4>,
        /// Whether the kernel placeholder is bound too (a wildcard bind,
        /// so loopback clients still reach it).
        kernel_bound: bool,
        /// Epoll sets the placeholder is registered in (`epfd`, events,
        /// data), moved to the shim if the socket is accelerated later.
        epolls: Vec<(i32, u32, u64)>,
    },
    /// An accelerated listening TCP socket.
    Listener {
        /// The address and port it listens on.
        local: SocketAddrV4,
        /// `listen`'s backlog.
        backlog: i32,
        /// The stacks' listeners, one per stack (by queue pair); `None`
        /// until the stack runs in this process (deferred: created before a
        /// `fork`).
        tcp: Option<Box<[TcpHandle]>>,
        /// Whether the kernel placeholder also listens (wildcard address).
        kernel: bool,
        /// Threads blocked in `accept`, by ticket, oldest first (see
        /// `acceptors`).
        blocked: std::collections::VecDeque<u64>,
    },
    /// A TCP connection on stack `.0` (a queue pair).
    Tcp(Q, TcpHandle),
    /// A UDP socket: one per stack (by queue pair), all bound alike, since a
    /// datagram may come in on any queue.
    Udp(Box<[UdpHandle]>),
}

/// The next [`Sock::id`].
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sock {
    /// Where it is.
    pub kind: Kind,
    /// `O_NONBLOCK` as the program set it (the placeholder's own flag may
    /// differ: a listening placeholder is always non-blocking).
    pub nonblock: bool,
    /// Options.
    pub opts: Opts,
    /// fds referring to it (1, plus one per `dup`).
    pub refs: u32,
    /// The placeholder is bound in the kernel too (a wildcard bind): a UDP
    /// socket also receives the kernel's (loopback) datagrams through it.
    pub kernel_bound: bool,
    /// This socket object among all the process ever made (epoll members
    /// name it, so a closed and reused fd number is never mistaken for it).
    pub id: u64,
    /// What `bind` gave it (kept when a failed connect leaves it
    /// unconnected again).
    pub user_bound: Option<SocketAddrV4>,
    /// A non-blocking `connect` returned `EINPROGRESS` and no later
    /// `connect` has reported how it ended.
    pub in_progress: bool,
    /// Its slot in the reaper's table (a TCP connection), if any.
    pub reap: Option<u32>,
    /// Children of `fork` that hold the connection (see `proxy`): the
    /// socket closes when neither an fd of this process nor a child
    /// refers to it.
    pub children: u32,
    /// A copy of the placeholder the fork proxy keeps (a child's, handed
    /// over when it attached the connection), for the children's socket
    /// options; closed with the socket.
    pub kept: Option<i32>,
}

impl Sock {
    /// A socket fresh from `socket()`.
    pub fn pending(dgram: bool, nonblock: bool) -> Sock {
        Sock {
            kind: Kind::Pending {
                dgram,
                bound: None,
                kernel_bound: false,
                epolls: Vec::new(),
            },
            nonblock,
            opts: Opts::default(),
            refs: 1,
            kernel_bound: false,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            user_bound: None,
            in_progress: false,
            reap: None,
            children: 0,
            kept: None,
        }
    }
}

/// A slab of values with `u32` handles; freed slots are reused LIFO.
#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// An empty slab.
    pub const fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Stores `v`; returns its handle.
    pub fn insert(&mut self, v: T) -> u32 {
        if let Some(h) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(h as usize) {
                *slot = Some(v);
                return h;
            }
        }
        self.slots.push(Some(v));
        (self.slots.len() - 1) as u32
    }

    /// The value of `h`.
    pub fn get(&self, h: u32) -> Option<&T> {
        self.slots.get(h as usize).and_then(Option::as_ref)
    }

    /// The value of `h`, mutably.
    pub fn get_mut(&mut self, h: u32) -> Option<&mut T> {
        self.slots.get_mut(h as usize).and_then(Option::as_mut)
    }

    /// Takes `h`'s value out; the handle may be reused.
    pub fn remove(&mut self, h: u32) -> Option<T> {
        let v = self.slots.get_mut(h as usize).and_then(Option::take);
        if v.is_some() {
            self.free.push(h);
        }
        v
    }

    /// Every live value with its handle.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|v| (i as u32, v)))
    }

    /// Every live value with its handle, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|v| (i as u32, v)))
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_freed_handles() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!((s.get(a), s.get(b), s.len()), (Some(&"a"), Some(&"b"), 2));
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None, "removed once");
        assert_eq!(s.get(a), None);
        let c = s.insert("c");
        assert_eq!(c, a, "LIFO reuse");
        assert_eq!(s.iter().map(|(_, v)| *v).collect::<Vec<_>>(), ["c", "b"]);
        assert!(!s.is_empty());
    }
}
