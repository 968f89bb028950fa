//! How a socket goes: the kernel freed an fd ([`dropped`]); the last
//! reference closes the socket ([`close_last`]: a connection sends what it
//! queued, then its FIN, or resets if data was left unread; `SO_LINGER`
//! waits; a listener on a shared port leaves what nobody accepted to
//! another process, see [`crate::engine::migrate`]); `dup` adds a
//! reference; `shutdown(SHUT_RD)` of a listener stops it listening.

use crate::engine::stacks::{self, Q};
use crate::engine::worker::now;
use crate::fdtable::{Entry, State, FDS};
use crate::interpose::real;
use crate::logging::log;
use crate::sockets::block::{block, WaitOn};
use crate::sockets::epoll;
use crate::sockets::sock::{Kind, Sock};
use crate::sockets::table::Core;
use crate::sys;
use accel_stack::iface::TcpHandle;
use libc::c_int;
use std::time::Duration;

use crate::sockets::socket::{deadline, sock_mut};

/// The kernel freed fd number `fd` whose entry was `entry`: the socket
/// loses a reference, and goes when it has none (a TCP connection then
/// closes gracefully on the stack).
pub fn dropped(fd: c_int, entry: Entry) {
    let mut core = crate::sockets::table::lock();
    match entry.state() {
        State::Epoll => epoll::forget_set(&mut core, entry.handle()),
        State::Pending | State::Tcp | State::Udp => {
            let Some(sock) = core.socks.get_mut(entry.handle()) else {
                return;
            };
            sock.refs = sock.refs.saturating_sub(1);
            if sock.refs > 0 {
                return;
            }
            if sock.children > 0 {
                // Children of fork still hold the connection (`proxy`):
                // it closes when the last of them lets it go. This
                // process's epoll sets no longer watch it.
                let children = sock.children;
                epoll::forget_socket(&mut core, entry.handle());
                log!(debug, "fd {fd}: closed here; {children} children still hold it");
                return;
            }
            close_last(core, fd, entry.handle());
        }
        _ => {}
    }
}

/// The last reference to socket `handle` is gone (an fd `fd` of this
/// process, -1 for a child's): the socket closes (a connection sends what
/// it queued, then its FIN, or resets if data was left unread).
pub fn close_last(mut core: crate::sockets::table::CoreGuard, fd: c_int, handle: u32) {
    let Some(sock) = core.socks.get_mut(handle) else {
        return;
    };
    if let Some(kept) = sock.kept.take() {
        FDS.clear(kept);
        sys::close(kept);
    }
    let kind = sock.kind.clone();
    if let Some(slot) = sock.reap.take() {
        crate::engine::reaper::forget(slot);
    }
    // SO_LINGER's wait is the last close's; a child's (fd -1) has
    // returned already, and the proxy that closes for it waits for nobody.
    if let (Kind::Tcp(q, h), Some(time), true) = (&kind, sock.opts.linger, fd >= 0) {
        // SO_LINGER with a timeout: close on the stack, then wait
        // (the socket stays known meanwhile, to be woken).
        let (q, h) = (*q, *h);
        if let Some(mut stack) = stacks::lock(q) {
            let _ = stack.iface.tcp.close(h, now());
        }
        drop(core);
        stacks::output(q);
        linger(handle, q, h, time);
        core = crate::sockets::table::lock();
        core.socks.remove(handle);
        epoll::forget_socket(&mut core, handle);
        log!(debug, "fd {fd}: closed (lingered)");
        return;
    }
    core.socks.remove(handle);
    epoll::forget_socket(&mut core, handle);
    let t = now();
    let mut touched = Vec::new();
    match kind {
        Kind::Tcp(q, h) => {
            if let Some(mut stack) = stacks::lock(q) {
                let _ = stack.iface.tcp.close(h, t);
            }
            touched.push(q);
        }
        Kind::Listener {
            tcp: Some(hs), local, ..
        } => {
            // Other processes may take this port's SYNs over (an nginx
            // reload): see `procs::listener_closed`; and the connections
            // nobody accepted (`migrate`).
            crate::engine::procs::listener_closed(local.port());
            for (q, h) in hs.iter().enumerate() {
                if let Some(mut stack) = stacks::lock(q as Q) {
                    crate::engine::migrate::close_listener(&mut stack, *h, t);
                }
                touched.push(q as Q);
            }
        }
        Kind::Udp(hs) => {
            for (q, h) in hs.iter().enumerate() {
                if let Some(mut stack) = stacks::lock(q as Q) {
                    let _ = stack.iface.udp_close(*h);
                }
            }
        }
        _ => {}
    }
    // A closed connection's FIN (or reset) goes out now.
    for q in touched {
        stacks::output(q);
    }
    log!(debug, "fd {fd}: closed");
}

/// `SO_LINGER` with a timeout, at the last close of connection `h` (of
/// socket object `handle`): waits until the FIN is acknowledged (the
/// connection left ESTABLISHED, CLOSE-WAIT, FIN-WAIT-1, CLOSING and
/// LAST-ACK), the connection ended, `time` passed or a signal came, as
/// Linux's `sk_stream_wait_close`. The connection then finishes on its own
/// either way.
fn linger(handle: u32, q: Q, h: TcpHandle, time: Duration) {
    use accel_stack::tcp::State::*;
    let done = |_: &mut Core| {
        let lingering = stacks::lock(q)
            .and_then(|s| s.iface.tcp.socket(h).map(|c| c.state()))
            .is_some_and(|st| matches!(st, Established | CloseWait | FinWait1 | Closing | LastAck));
        (!lingering).then_some(())
    };
    let _ = block(deadline(Some(time)), &[WaitOn::Sock(handle)], &mut [], None, done);
}

/// A `dup` made another fd refer to the socket of `entry`.
pub fn duplicated(entry: Entry) {
    if matches!(entry.state(), State::Pending | State::Tcp | State::Udp) {
        if let Some(s) = crate::sockets::table::lock().socks.get_mut(entry.handle()) {
            s.refs += 1;
        }
    }
}

/// Whether the socket of `entry` also lives in the kernel: a wildcard
/// listener (loopback clients) or a wildcard UDP socket (loopback
/// senders), whose placeholder then belongs in epoll and poll sets too.
pub fn kernel_side(core: &Core, entry: Entry) -> bool {
    match core.socks.get(entry.handle()) {
        Some(Sock {
            kind: Kind::Listener { kernel, .. },
            ..
        }) => *kernel,
        Some(Sock {
            kind: Kind::Udp(..),
            kernel_bound,
            ..
        }) => *kernel_bound,
        _ => false,
    }
}

/// `shutdown(SHUT_RD)` of a listener: it stops listening (its stack
/// listener goes, pending connections are reset, the kernel half stops
/// too) and is a bound, unconnected socket again.
pub fn unlisten(core: &mut Core, fd: c_int, entry: Entry) {
    let Ok(sock) = sock_mut(core, entry) else { return };
    let Kind::Listener {
        local,
        ref tcp,
        kernel,
        ..
    } = sock.kind
    else {
        return;
    };
    let tcp = tcp.clone();
    sock.kind = Kind::Pending {
        dgram: false,
        bound: Some(local),
        kernel_bound: kernel,
        epolls: Vec::new(),
    };
    if kernel {
        if let Some(f) = real::shutdown.get() {
            // SAFETY: shutdown takes no pointers.
            unsafe { f(fd, libc::SHUT_RD) };
        }
    }
    for (q, h) in tcp.iter().flat_map(|hs| hs.iter().enumerate()) {
        if let Some(mut stack) = stacks::lock(q as Q) {
            let _ = stack.iface.tcp.close(*h, now());
        }
    }
    let _ = FDS.transition(fd, entry, State::Pending);
}
