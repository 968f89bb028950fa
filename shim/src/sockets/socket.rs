//! A socket's making in the shim: `socket`, `bind`, `listen` and the
//! deferred listeners, and the decisions between stack and kernel
//! (DESIGN.md, "File descriptors"); `accept` and `connect` are in
//! [`crate::sockets::open`], the last `close` in [`crate::sockets::close`].
//!
//! - `socket(AF_INET, SOCK_STREAM|SOCK_DGRAM)` makes the kernel socket (the
//!   placeholder) and marks its fd `Pending`.
//! - `bind` to the accelerated address or the wildcard records the address
//!   (a wildcard bind also binds the placeholder, so loopback clients still
//!   reach it); any other address binds in the kernel and the socket is
//!   the kernel's from then on.
//! - `listen` on a recorded address makes a *deferred* listener: the stack
//!   listener is made when the stack runs in this process, at the first
//!   `accept`, `epoll_ctl` or `poll` on it (so an nginx master that listens
//!   and forks leaves it to the worker that accepts). A wildcard listener
//!   listens in the kernel as well, and `accept` takes from both.
//! - `connect` to an address the stack routes (on its network, or anywhere
//!   but loopback when `ACCEL_GW` is set) starts the stack and connects
//!   there; anything else goes to the kernel.
//! - If the stack cannot start, every deciding call leaves the socket in
//!   the kernel.
//!
//! Errors are the kernel's errnos, from the stack or from the placeholder.

use crate::counters::{self, Stay};
use crate::engine::stacks::{self, Q};
use crate::engine::worker::{self, now};
use crate::fdtable::{Entry, State, FDS};
use crate::interpose::real;
use crate::interpose::skeleton::{Dispatch, Errno};
use crate::logging::log;
use crate::sockets::epoll;
use crate::sockets::sock::{Kind, Opts, Sock};
use crate::sockets::sockaddr::{self as sa, Addr};
use crate::sockets::table::Core;
use crate::startup;
use crate::sys;
use accel_stack::iface::TcpHandle;
use core::net::{Ipv4Addr, SocketAddrV4};
use libc::{c_int, sockaddr, socklen_t};
use std::time::Duration;

/// Result of a shim operation that may also leave the call to libc.
pub type Answer<T> = Dispatch<T>;

/// `Done(Err(e))`.
pub fn fail<T>(e: c_int) -> Answer<T> {
    Dispatch::Done(Err(Errno(e)))
}

/// `Done(Ok(v))`.
pub fn ok<T>(v: T) -> Answer<T> {
    Dispatch::Done(Ok(v))
}

/// A stack errno as the shim's.
pub fn se(e: accel_stack::Errno) -> Errno {
    Errno(e.0)
}

/// The accelerated address, if any.
pub fn our_ip() -> Option<Ipv4Addr> {
    startup::config().ip.map(|c| c.addr)
}

/// Whether the stack routes `ip`: on its network (its own address
/// included: the stack loops packets to itself back, as the kernel's `lo`
/// does for an interface's address, so a program connects to its own
/// servers on the stack), or anywhere but loopback when a gateway is set.
pub fn routed(ip: Ipv4Addr) -> bool {
    let cfg = startup::config();
    let Some(c) = cfg.ip else { return false };
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    let mask = u32::MAX
        .checked_shl(32 - u32::from(c.prefix_len.min(32)))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(c.addr) & mask || cfg.gateway.is_some()
}

/// The placeholder's errno of a real call that returned `r`.
fn real_result(r: c_int) -> Result<c_int, Errno> {
    if r < 0 {
        Err(Errno(sys::errno()))
    } else {
        Ok(r)
    }
}

/// The socket behind `entry`.
pub fn sock_mut(core: &mut Core, entry: Entry) -> Result<&mut Sock, Errno> {
    core.socks.get_mut(entry.handle()).ok_or(Errno(libc::EBADF))
}

/// The socket of an fd becomes the kernel's for good: its entry becomes a
/// kernel entry, its `Sock` goes.
pub fn to_kernel(core: &mut Core, fd: c_int, entry: Entry, why: Stay) {
    if FDS.transition(fd, entry, State::Kernel).is_ok() {
        core.socks.remove(entry.handle());
        epoll::forget_socket(core, entry.handle());
    }
    counters::stayed(why);
    log!(info, "fd {fd}: stays in the kernel: {}", why.text());
}

/// `socket(2)`: AF_INET TCP and UDP sockets get a `Pending` entry.
pub fn socket(domain: c_int, ty: c_int, protocol: c_int) -> Answer<c_int> {
    if domain != libc::AF_INET || our_ip().is_none() {
        return Dispatch::NotOurs;
    }
    if matches!(worker::status(), worker::Status::Failed | worker::Status::Forked) {
        return Dispatch::NotOurs;
    }
    let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let dgram = match (base, protocol) {
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => false,
        (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => true,
        _ => return Dispatch::NotOurs,
    };
    let Some(real_socket) = real::socket.get() else {
        return Dispatch::NotOurs;
    };
    // SAFETY: socket takes no pointers.
    let fd = unsafe { real_socket(domain, ty, protocol) };
    if fd < 0 {
        return Dispatch::Done(Err(Errno(sys::errno())));
    }
    let mut core = crate::sockets::table::lock();
    let h = core
        .socks
        .insert(Sock::pending(dgram, ty & libc::SOCK_NONBLOCK != 0));
    if FDS.install(fd, State::Pending, h).is_err() {
        // A stale entry (a number the program closed behind our back):
        // take it over.
        FDS.clear(fd);
        if FDS.install(fd, State::Pending, h).is_err() {
            core.socks.remove(h);
        }
    }
    ok(fd)
}

/// `bind(2)`.
///
/// # Safety
///
/// `addr` is valid for `len` bytes or null.
pub unsafe fn bind(entry: Entry, fd: c_int, addr: *const sockaddr, len: socklen_t) -> Answer<c_int> {
    if entry.state() != State::Pending {
        return match entry.state() {
            State::Tcp | State::Udp => fail(libc::EINVAL),
            _ => Dispatch::NotOurs,
        };
    }
    // SAFETY: the caller's contract.
    let Ok(Addr::V4(a)) = (unsafe { sa::read_in(addr, len) }) else {
        return Dispatch::NotOurs; // the kernel reports what is wrong
    };
    let mut core = crate::sockets::table::lock();
    let ours = our_ip() == Some(*a.ip());
    if !ours && !a.ip().is_unspecified() {
        let Some(real_bind) = real::bind.get() else {
            return Dispatch::NotOurs;
        };
        // SAFETY: the caller's address, passed on.
        let r = unsafe { real_bind(fd, addr, len) };
        if r == 0 {
            to_kernel(&mut core, fd, entry, Stay::OtherAddress);
        }
        return Dispatch::Done(real_result(r));
    }
    let (reuse, reuse_port) = core
        .socks
        .get(entry.handle())
        .map_or((false, false), |s| (s.opts.reuse_addr, s.opts.reuse_port));
    match core.socks.get(entry.handle()).map(|s| &s.kind) {
        Some(Kind::Pending {
            bound: None,
            kernel_bound: false,
            ..
        }) => {}
        Some(_) => return fail(libc::EINVAL),
        None => return fail(libc::EBADF),
    }
    let mut local = a;
    let mut kernel_bound = false;
    if a.ip().is_unspecified() {
        let Some(real_bind) = real::bind.get() else {
            return Dispatch::NotOurs;
        };
        // SAFETY: as above.
        let r = unsafe { real_bind(fd, addr, len) };
        if r < 0 {
            return Dispatch::Done(real_result(r));
        }
        kernel_bound = true;
        if a.port() == 0 {
            local = SocketAddrV4::new(*a.ip(), kernel_port(fd).unwrap_or(0));
        }
    } else {
        let dgram = matches!(
            core.socks.get(entry.handle()).map(|s| &s.kind),
            Some(Kind::Pending { dgram: true, .. })
        );
        if a.port() == 0 {
            match free_port(&mut core, *a.ip(), dgram) {
                Some(p) => local = SocketAddrV4::new(*a.ip(), p),
                None => return fail(libc::EADDRINUSE),
            }
        } else if port_taken(&core, local, dgram, (reuse, reuse_port), entry.handle()) {
            return fail(libc::EADDRINUSE);
        }
    }
    let mut is_dgram = false;
    if let Some(s) = core.socks.get_mut(entry.handle()) {
        s.user_bound = Some(local);
    }
    if let Some(Sock {
        kind:
            Kind::Pending {
                bound,
                kernel_bound: kb,
                dgram,
                ..
            },
        ..
    }) = core.socks.get_mut(entry.handle())
    {
        *bound = Some(local);
        *kb = kernel_bound;
        is_dgram = *dgram;
    }
    if is_dgram {
        // UDP sockets need no deferral: they move to the stack now.
        return match crate::sockets::udp::activate_for(&mut core, fd, entry, Some(local)) {
            Ok(_) => ok(0),
            Err(e) => Dispatch::Done(Err(e)),
        };
    }
    ok(0)
}

/// The port the kernel gave the placeholder.
fn kernel_port(fd: c_int) -> Option<u16> {
    let mut sin: libc::sockaddr_in = sa::to_c(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let mut len = size_of::<libc::sockaddr_in>() as socklen_t;
    let f = real::getsockname.get()?;
    // SAFETY: `sin` and `len` are live and writable.
    let r = unsafe { f(fd, (&raw mut sin).cast(), &mut len) };
    (r == 0).then(|| u16::from_be(sin.sin_port))
}

/// Whether another socket of ours holds `local` (Linux's bind conflict
/// rules, simplified: both must have `SO_REUSEADDR` and neither listen, or
/// both `SO_REUSEPORT`). `reuse` is the binding socket's (`SO_REUSEADDR`,
/// `SO_REUSEPORT`).
fn port_taken(core: &Core, local: SocketAddrV4, dgram: bool, reuse: (bool, bool), except: u32) -> bool {
    core.socks.iter().any(|(h, s)| {
        if h == except {
            return false;
        }
        let (addr, listening, is_dgram) = match &s.kind {
            Kind::Pending {
                bound: Some(b),
                dgram,
                ..
            } => (*b, false, *dgram),
            Kind::Listener { local, .. } => (*local, true, false),
            _ => return false,
        };
        is_dgram == dgram
            && addr.port() == local.port()
            && (addr.ip() == local.ip() || addr.ip().is_unspecified() || local.ip().is_unspecified())
            && !(reuse.0 && s.opts.reuse_addr && !listening)
            && !(reuse.1 && s.opts.reuse_port)
    })
}

/// A port for a `bind` to port 0 before the stack runs.
fn free_port(core: &mut Core, ip: Ipv4Addr, dgram: bool) -> Option<u16> {
    for _ in 0..20000 {
        let p = core.next_port;
        core.next_port = if p >= 59999 { 40000 } else { p + 1 };
        if !port_taken(core, SocketAddrV4::new(ip, p), dgram, (false, false), u32::MAX) {
            return Some(p);
        }
    }
    None
}

/// `listen(2)`.
pub fn listen(entry: Entry, fd: c_int, backlog: c_int) -> Answer<c_int> {
    let mut core = crate::sockets::table::lock();
    let Ok(sock) = sock_mut(&mut core, entry) else {
        return Dispatch::NotOurs;
    };
    let backlog = backlog.clamp(1, 65535);
    match &mut sock.kind {
        Kind::Pending { dgram: true, .. } => Dispatch::NotOurs,
        Kind::Listener {
            backlog: b,
            kernel,
            tcp,
            ..
        } => {
            *b = backlog;
            let (kernel, tcp) = (*kernel, tcp.clone());
            for (q, h) in tcp.iter().flat_map(|hs| hs.iter().enumerate()) {
                if let Some(mut stack) = stacks::lock(q as Q) {
                    let _ = stack.iface.tcp.listen(*h, backlog as usize);
                }
            }
            if kernel {
                if let Some(f) = real::listen.get() {
                    // SAFETY: listen takes no pointers.
                    unsafe { f(fd, backlog) };
                }
            }
            ok(0)
        }
        Kind::Pending {
            bound, kernel_bound, ..
        } => {
            let (mut local, mut kernel) = (*bound, *kernel_bound);
            if local.is_none() {
                // Linux binds an unbound listener to the wildcard.
                kernel = true;
            }
            if kernel {
                let Some(f) = real::listen.get() else {
                    return Dispatch::NotOurs;
                };
                // SAFETY: listen takes no pointers.
                let r = unsafe { f(fd, backlog) };
                if r < 0 {
                    return Dispatch::Done(real_result(r));
                }
                if local.is_none() {
                    local = Some(SocketAddrV4::new(
                        Ipv4Addr::UNSPECIFIED,
                        kernel_port(fd).unwrap_or(0),
                    ));
                }
                // `accept` takes from the kernel without blocking in it.
                let _ = sys::set_nonblocking(fd, true);
            }
            let local = local.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
            sock.kind = Kind::Listener {
                local,
                backlog,
                tcp: None,
                kernel,
                blocked: Default::default(),
            };
            if worker::status() == worker::Status::Up {
                activate(&mut core, fd, entry);
            }
            ok(0)
        }
        Kind::Tcp(..) | Kind::Udp(..) => fail(libc::EINVAL),
    }
}

/// Makes sure the socket of `fd` is where it will live: a deferred
/// listener gets its stack listener (starting the stack if need be), or
/// falls back to the kernel. Returns the entry to use from now on (a
/// kernel entry if the socket ended up there).
pub fn activate(core: &mut Core, fd: c_int, entry: Entry) -> Entry {
    let Some(&Sock {
        kind:
            Kind::Listener {
                local,
                backlog,
                tcp: None,
                kernel,
                ..
            },
        opts,
        nonblock,
        ..
    }) = core.socks.get(entry.handle())
    else {
        // Not (or no longer) a deferred listener. The caller read `entry`
        // before it took the lock: another thread may have made the
        // listener live meanwhile (a shared port's stack makes every
        // deferred listener live as it starts), and a stale `Pending`
        // would register an epoll interest with the kernel only.
        let current = FDS.get(fd);
        return if (current.handle(), current.generation()) == (entry.handle(), entry.generation()) {
            current
        } else {
            entry
        };
    };
    let fallback = |core: &mut Core, why: Stay| {
        if kernel {
            if !nonblock {
                let _ = sys::set_nonblocking(fd, false);
            }
            to_kernel(core, fd, entry, why);
        } else {
            log!(
                error,
                "fd {fd}: listening on {local} failed ({}); the socket accepts nothing",
                why.text()
            );
        }
        FDS.get(fd)
    };
    if !ensure_started(core) {
        return fallback(core, Stay::StackDown);
    }
    // Starting the stack of a process that shares its port makes every
    // deferred listener live (`activate_all_deferred`), this one too.
    if !matches!(
        core.socks.get(entry.handle()),
        Some(Sock {
            kind: Kind::Listener { tcp: None, .. },
            ..
        })
    ) {
        return FDS.get(fd);
    }
    // A listener in every stack: a connection comes in on any queue.
    let mut hs = Vec::with_capacity(stacks::count());
    let mut failed = None;
    for q in 0..stacks::count() as Q {
        let Some(mut stack) = stacks::lock(q) else {
            failed = Some(accel_stack::Errno(libc::ENETDOWN));
            break;
        };
        let tcp = &mut stack.iface.tcp;
        let h = tcp.socket_new();
        apply_opts(tcp, h, &opts);
        let r = stack
            .iface
            .tcp_bind(h, local)
            .and_then(|_| stack.iface.tcp.listen(h, backlog as usize));
        if let Err(e) = r {
            let _ = stack.iface.tcp.close(h, now());
            failed = Some(e);
            break;
        }
        hs.push(h);
    }
    if hs.is_empty() || failed.is_some() {
        for (q, h) in hs.into_iter().enumerate() {
            if let Some(mut stack) = stacks::lock(q as Q) {
                let _ = stack.iface.tcp.close(h, now());
            }
        }
        let e = failed.unwrap_or(accel_stack::Errno(libc::ENETDOWN));
        log!(warn, "fd {fd}: the stack cannot listen on {local}: {e}");
        return fallback(core, Stay::Refused);
    }
    if let Some(Sock {
        kind: Kind::Listener { tcp, .. },
        ..
    }) = core.socks.get_mut(entry.handle())
    {
        *tcp = Some(hs.into_boxed_slice());
    }
    match FDS.transition(fd, entry, State::Tcp) {
        Ok(e) => {
            counters::accelerated();
            log!(
                info,
                "fd {fd}: listening on {local} on the stack{}",
                if kernel { " and in the kernel" } else { "" }
            );
            e
        }
        Err(e) => e,
    }
}

/// The state `fd` has once a deferred listener on it is made live (the
/// stack started if need be), for calls that bypass `accept`, `epoll_ctl`
/// and `poll` (io_uring's accept waits in the kernel, where no connection
/// for an accelerated listener arrives). Any other fd's state unchanged.
pub fn settle(fd: c_int) -> State {
    let entry = FDS.get(fd);
    if entry.state() != State::Pending {
        return entry.state();
    }
    let mut core = crate::sockets::table::lock();
    let entry = FDS.get(fd);
    match core.socks.get(entry.handle()) {
        Some(Sock {
            kind: Kind::Listener { tcp: None, .. },
            ..
        }) if entry.state() == State::Pending => activate(&mut core, fd, entry).state(),
        _ => entry.state(),
    }
}

/// Starts the stacks if they are not running (with the lock held, so one
/// thread does); `true` if they run now. A process that shares its port
/// makes its deferred listeners live as its stacks start
/// ([`activate_all_deferred`]).
pub fn ensure_started(core: &mut Core) -> bool {
    let was = worker::status();
    let up = worker::ensure_started();
    if up && was != worker::Status::Up && crate::engine::procs::attached() {
        activate_all_deferred(core);
    }
    up
}

/// Makes every deferred listener of this process live (see `activate`):
/// a process that shares its port with others (`procs`) binds them as its
/// stack starts, before anything polls the stack, so that a SYN the device
/// hands its queue finds them (else it would go round the other
/// processes, none of which may listen yet while an nginx reload replaces
/// every worker).
pub fn activate_all_deferred(core: &mut Core) {
    activate_deferred_where(core, |_| true);
}

/// A connection to our own address finds its listener on the stack: this
/// process's deferred listeners on `port` are made now. (The kernel's
/// `listen` is immediate; a deferred one waits for the first `accept`,
/// `epoll_ctl` or `poll`, which a program connecting to itself may not
/// have made yet.)
pub fn activate_own_listeners(core: &mut Core, port: u16) {
    activate_deferred_where(core, |local| local.port() == port);
}

/// Makes live the deferred listeners whose local address `wanted` picks.
/// Their fds are found by a scan of the fd table up to the open-files
/// limit, only when such a listener exists.
fn activate_deferred_where(core: &mut Core, wanted: impl Fn(SocketAddrV4) -> bool) {
    let deferred = |s: &Sock| matches!(s.kind, Kind::Listener { local, tcp: None, .. } if wanted(local));
    if !core.socks.iter().any(|(_, s)| deferred(s)) {
        return;
    }
    let limit = sys::nofile_limit().min(crate::fdtable::MAX_FDS);
    for fd in 0..limit as c_int {
        let e = FDS.get(fd);
        if e.state() == State::Pending && core.socks.get(e.handle()).is_some_and(deferred) {
            activate(core, fd, e);
        }
    }
}

/// Applies recorded options to a stack socket (one that is not connected
/// yet, or a listener: its settings, with no side effects).
pub fn apply_opts(tcp: &mut accel_stack::iface::TcpTable, h: TcpHandle, o: &Opts) {
    let _ = tcp.set_reuse_addr(h, o.reuse_addr);
    let _ = tcp.set_reuse_port(h, o.reuse_port);
    if let Ok(cfg) = tcp.config_mut(h) {
        for opt in crate::sockets::sockopt::stack_opts(o) {
            cfg.apply(opt);
        }
        if let Some(b) = o.rcvbuf {
            cfg.recv_buffer = b.max(2048);
        }
        if let Some(b) = o.sndbuf {
            cfg.send_buffer = b.max(2048);
        }
    }
}

/// The deadline of a blocking call with timeout `t`.
pub fn deadline(t: Option<Duration>) -> Option<accel_stack::Instant> {
    t.map(|d| accel_stack::Instant::from_nanos(now().nanos().saturating_add(d.as_nanos() as u64)))
}

/// The TCP connection of `entry` (its stack and handle), or the errno for
/// what it is instead.
pub fn conn_of(core: &Core, entry: Entry) -> Result<(Q, TcpHandle), Errno> {
    match core.socks.get(entry.handle()).map(|s| &s.kind) {
        Some(Kind::Tcp(q, h)) => Ok((*q, *h)),
        Some(Kind::Listener { .. } | Kind::Pending { .. }) => Err(Errno(libc::ENOTCONN)),
        Some(Kind::Udp(..)) => Err(Errno(libc::EOPNOTSUPP)),
        None => Err(Errno(libc::EBADF)),
    }
}

/// Stack `q`, locked; `EBADF` if there is none (the stack is gone).
pub fn stack(q: Q) -> Result<stacks::StackGuard, Errno> {
    stacks::lock(q).ok_or(Errno(libc::EBADF))
}

/// What the socket of `entry` is ready for, as epoll bits, with its tick;
/// `None` if it is not a socket on the stack.
pub fn readiness(core: &mut Core, entry: Entry) -> Option<(u32, u64)> {
    readiness_of(core, entry.handle())
}

/// [`readiness`] of the socket object `handle`: for a socket in every
/// stack (a listener, a UDP socket), what any of them is ready for, its
/// tick the sum of theirs (so it moves whenever one of theirs does).
pub fn readiness_of(core: &mut Core, handle: u32) -> Option<(u32, u64)> {
    let r = match &core.socks.get(handle)?.kind {
        Kind::Tcp(q, h) => stacks::lock(*q)?.iface.tcp.readiness(*h).ok()?,
        Kind::Listener { tcp: Some(hs), .. } => {
            let mut all: Option<accel_stack::tcp::Readiness> = None;
            for (q, h) in hs.iter().enumerate() {
                let Some(r) = stacks::lock(q as Q).and_then(|s| s.iface.tcp.readiness(*h).ok()) else {
                    continue;
                };
                all = Some(match all {
                    None => r,
                    Some(a) => merge(a, r),
                });
            }
            all?
        }
        Kind::Udp(hs) => {
            let mut all: Option<accel_stack::tcp::Readiness> = None;
            for (q, h) in hs.iter().enumerate() {
                let Some(stack) = stacks::lock(q as Q) else {
                    continue;
                };
                let Some(u) = stack.iface.udp(*h) else {
                    continue;
                };
                let mut r = u.readiness();
                // Linux's datagram_poll: readable only with a datagram
                // queued (a pending error is EPOLLERR alone).
                r.readable = u.next_len() > 0;
                all = Some(match all {
                    None => r,
                    Some(a) => merge(a, r),
                });
            }
            all?
        }
        _ => return None,
    };
    let mut m = 0u32;
    if r.readable {
        m |= libc::EPOLLIN as u32 | libc::EPOLLRDNORM as u32;
    }
    if r.writable {
        m |= libc::EPOLLOUT as u32 | libc::EPOLLWRNORM as u32;
    }
    if r.read_closed {
        m |= libc::EPOLLRDHUP as u32;
    }
    if r.hangup {
        m |= libc::EPOLLHUP as u32;
    }
    if r.error {
        m |= libc::EPOLLERR as u32;
    }
    Some((m, r.tick))
}

/// The readiness of a socket present in two stacks: what either is ready
/// for; ticks added.
fn merge(a: accel_stack::tcp::Readiness, b: accel_stack::tcp::Readiness) -> accel_stack::tcp::Readiness {
    accel_stack::tcp::Readiness {
        readable: a.readable || b.readable,
        writable: a.writable || b.writable,
        read_closed: a.read_closed || b.read_closed,
        hangup: a.hangup || b.hangup,
        error: a.error || b.error,
        tick: a.tick.wrapping_add(b.tick),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_routed_without_an_address() {
        // The unit tests run without ACCEL_IP: the stack routes nothing.
        assert!(!routed(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(!routed(Ipv4Addr::LOCALHOST));
    }
}
