//! The sockets layer: what a socket call means, above the engine and below
//! the interposer. A call arrives here from [`crate::interpose::ops`] with
//! its C arguments converted; it decides stack or kernel, runs the
//! operation on the engine's stacks, and waits through [`block`] when it
//! must. The tables of sockets and epoll sets live behind one lock
//! ([`table`]); readiness reaches the sets and the waiting threads through
//! [`ready`] and [`epoll::distribute`].
//!
//! | module | holds |
//! | --- | --- |
//! | [`table`] | the sockets and sets behind their lock, handing out what the stacks signalled, closing at exit, the lock across `fork` |
//! | [`block`] | a blocking call's wait: registration on a socket or set, the condition tried under the lock, around the engine's driving loop |
//! | [`socket`], [`open`], [`close`], [`sock`], [`acceptors`] | a socket's making and the stack-or-kernel decisions; `accept` and `connect`; the last close; the socket objects; blocked accepts in order |
//! | [`io`], [`udp`], [`splice`] | data and control on accelerated sockets |
//! | [`sockopt`], [`tcpinfo`] | socket options: the kernel checks, the stack acts; `TCP_INFO` |
//! | [`sockaddr`] | C addresses |
//! | [`epoll`], [`pollsel`], [`ready`] | readiness over mixed fds, and how the stack's wakers reach it |
//! | [`uring`] | io_uring (through liburing) refused on accelerated sockets |
//! | [`proxy`], [`forked`], [`forkwire`] | `fork`: a child's inherited connections, served through the parent's proxy |

pub mod acceptors;
pub mod block;
pub mod close;
pub mod epoll;
pub mod forked;
pub mod forkwire;
pub mod io;
pub mod open;
pub mod pollsel;
pub mod proxy;
pub mod ready;
pub mod sock;
pub mod sockaddr;
pub mod socket;
pub mod sockopt;
pub mod splice;
pub mod table;
pub mod tcpinfo;
pub mod udp;
pub mod uring;
