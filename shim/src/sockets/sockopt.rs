//! Socket options of accelerated sockets: the kernel checks them, the
//! stack acts on them.
//!
//! Every `setsockopt` goes to the socket's kernel placeholder first, so a
//! bad value, length or pointer, or an option Linux does not know, gets
//! the kernel's errno. For an option the stack implements, the value the
//! kernel *kept* is then read back from the placeholder (normalised as
//! Linux does: `IP_TOS` without a stream socket's ECN bits,
//! `TCP_DEFER_ACCEPT` rounded to its SYN-ACK schedule, the keepalive times
//! with the system's defaults for those not set), recorded in the socket's
//! [`Opts`] (so a socket not on the stack yet gets it later) and handed to
//! the stack as a [`SockOpt`] ([`record`]). `getsockopt` reads the
//! placeholder too, so a program reads back what the kernel would have
//! kept; the stack answers only what a connection decides itself
//! (`TCP_MAXSEG`'s segment size, `TCP_QUICKACK`'s pingpong mode: see
//! `io::getsockopt`).
//!
//! Where the placeholder's state differs from the socket's, the shim gives
//! the answer Linux gives for the socket's state ([`to_kernel`]):
//! `TCP_FASTOPEN` on a connection is `EINVAL`.
//!
//! What each option does on the stack is in `accel_stack::tcp::options`;
//! here, what is particular to the shim:
//! - `SO_LINGER` with a timeout: the last `close` of a connection waits
//!   until its FIN is acknowledged or the time runs out, then returns 0
//!   and leaves the connection to finish on its own, as Linux's
//!   `tcp_close` does (no reset: Linux resets only with a zero timeout, or
//!   unread data). It waits for a non-blocking socket too, as Linux does.
//! - Options an accepted connection inherits from its listener on Linux
//!   (keepalive and its times, `TCP_USER_TIMEOUT`, `TCP_NODELAY`,
//!   `TCP_CORK`, `IP_TOS`, `TCP_MAXSEG`, `SO_LINGER`, `SO_REUSEPORT`) are
//!   copied from the listener's placeholder to the new connection's
//!   ([`inherit`]), so they read back there as on Linux; the stack copies
//!   its side from the listener's settings.
//! - `TCP_FASTOPEN`: the stack has no TCP Fast Open. Where this system's
//!   `net.ipv4.tcp_fastopen` leaves the server side off (Linux's default,
//!   1: client only), Linux accepts the option on a listener and serves
//!   no TFO: a SYN's data is not acknowledged and no cookie is sent. The
//!   stack does exactly that, so the option is accepted as the kernel
//!   accepts it. Where the server side is on, Linux would answer with
//!   cookies and take data from SYNs, which the stack cannot: the option
//!   is refused with `EOPNOTSUPP` (the kernel's errno for TFO that is not
//!   available) and one log line, so a program can tell (nginx logs it and
//!   goes on without).
//! - `SO_REUSEPORT`: listeners on one address that all set it form a
//!   group in each stack, as on Linux: each has its own accept queue and
//!   takes the connections whose 4-tuple hashes to it
//!   (`accel_stack::iface::TcpTable`); the kernel placeholders are bound
//!   with it too, so the kernel side agrees.

use crate::interpose::real;
use crate::interpose::skeleton::Errno;
use crate::logging::log;
use crate::sockets::sock::Opts;
use crate::sys;
use accel_stack::tcp::{Keepalive, SockOpt};
use libc::{c_int, c_void, socklen_t};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::Relaxed};
use std::time::Duration;

/// Options a connection accepted on Linux inherits from its listener and
/// whose value the kernel (not the stack) reports.
const INHERITED: [(c_int, c_int); 11] = [
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
    (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
    (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
    (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_CORK),
    (libc::IPPROTO_IP, libc::IP_TOS),
    (libc::IPPROTO_TCP, libc::TCP_MAXSEG),
    (libc::SOL_SOCKET, libc::SO_LINGER),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT),
];

/// The bit of `(level, name)` in [`Opts::inherit`], if it is inherited.
fn inherit_bit(level: c_int, name: c_int) -> Option<u16> {
    INHERITED
        .iter()
        .position(|o| *o == (level, name))
        .map(|i| 1u16 << i)
}

/// Reads an int option of the placeholder `fd` as the kernel holds it.
fn kernel_int(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let f = real::getsockopt.get()?;
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: `v` and `len` are valid for the call.
    let r = unsafe { f(fd, level, name, (&raw mut v).cast(), &mut len) };
    (r == 0).then_some(v)
}

/// Reads the placeholder's `SO_LINGER`.
fn kernel_linger(fd: c_int) -> Option<libc::linger> {
    let f = real::getsockopt.get()?;
    let mut v = libc::linger {
        l_onoff: 0,
        l_linger: 0,
    };
    let mut len = size_of::<libc::linger>() as socklen_t;
    // SAFETY: `v` and `len` are valid for the call.
    let r = unsafe {
        f(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw mut v).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

/// Sets an int option on the placeholder `fd`.
fn set_kernel_int(fd: c_int, level: c_int, name: c_int, v: c_int) -> bool {
    let Some(f) = real::setsockopt.get() else {
        return false;
    };
    // SAFETY: `v` is a valid int for the call.
    unsafe {
        f(
            fd,
            level,
            name,
            (&raw const v).cast(),
            size_of::<c_int>() as socklen_t,
        ) == 0
    }
}

/// The keepalive times the kernel holds for the placeholder `fd` (the
/// system's defaults where the program set none).
fn kernel_keepalive(fd: c_int) -> Keepalive {
    let d = Keepalive::default();
    let secs = |name, or: Duration| {
        kernel_int(fd, libc::IPPROTO_TCP, name)
            .filter(|v| *v > 0)
            .map_or(or, |v| Duration::from_secs(v as u64))
    };
    Keepalive {
        idle: secs(libc::TCP_KEEPIDLE, d.idle),
        interval: secs(libc::TCP_KEEPINTVL, d.interval),
        count: kernel_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT)
            .filter(|v| *v > 0)
            .map_or(d.count, |v| v as u32),
    }
}

/// `net.ipv4.tcp_fastopen` bits that make Linux serve TFO: the server
/// side on (`TFO_SERVER_ENABLE`), or on for every listener
/// (`TFO_SERVER_WO_SOCKOPT1`).
const TFO_SERVER: c_int = 0x2 | 0x400;

/// This system's `net.ipv4.tcp_fastopen` (Linux's default, 1, when it
/// cannot be read), read once.
fn tcp_fastopen_sysctl() -> c_int {
    static VALUE: AtomicI32 = AtomicI32::new(-1);
    let v = VALUE.load(Relaxed);
    if v >= 0 {
        return v;
    }
    let v = read_sysctl(c"/proc/sys/net/ipv4/tcp_fastopen").unwrap_or(1);
    VALUE.store(v, Relaxed);
    v
}

/// A number from a `/proc/sys` file.
fn read_sysctl(path: &std::ffi::CStr) -> Option<c_int> {
    let fd = sys::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0).ok()?;
    let mut buf = [0u8; 32];
    let n = sys::pread(fd, &mut buf, 0);
    sys::close(fd);
    parse_sysctl(buf.get(..n.ok()?)?)
}

/// The number a sysctl file holds (decimal, maybe a trailing newline).
fn parse_sysctl(text: &[u8]) -> Option<c_int> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// Whether the kernel here would serve TCP Fast Open on a listener with
/// `TCP_FASTOPEN` set.
fn tfo_server(sysctl: c_int) -> bool {
    sysctl & TFO_SERVER != 0
}

/// Passes a `setsockopt` the kernel accepted for the socket's state to
/// the placeholder `fd` (which holds the value from then on): `Err` with
/// the errno the program gets. `connected`: the socket is a connection
/// (on the stack; its placeholder is not connected).
///
/// # Safety
///
/// `val` is valid for `len` bytes (or the kernel reports `EFAULT`).
pub unsafe fn to_kernel(
    fd: c_int,
    connected: bool,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> Result<(), Errno> {
    let Some(f) = real::setsockopt.get() else {
        return Err(Errno(libc::ENOSYS));
    };
    let fastopen = (level, name) == (libc::IPPROTO_TCP, libc::TCP_FASTOPEN);
    let before = if fastopen {
        kernel_int(fd, level, name)
    } else {
        None
    };
    // SAFETY: the caller's arguments, passed on.
    if unsafe { f(fd, level, name, val, len) } < 0 {
        return Err(Errno(sys::errno()));
    }
    if !fastopen {
        return Ok(());
    }
    // The kernel checked the size, the pointer and the sign. A connection
    // (the placeholder is not connected) takes no TCP_FASTOPEN: EINVAL.
    let refuse = if connected {
        Some(libc::EINVAL)
    } else if tfo_server(tcp_fastopen_sysctl()) {
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Relaxed) {
            log!(
                warn,
                "fd {fd}: TCP_FASTOPEN refused (EOPNOTSUPP): net.ipv4.tcp_fastopen enables the server side, and the stack has no TCP Fast Open"
            );
        }
        Some(libc::EOPNOTSUPP)
    } else {
        None
    };
    match refuse {
        Some(e) => {
            // Put the placeholder back as it was.
            set_kernel_int(fd, level, name, before.unwrap_or(0));
            Err(Errno(e))
        }
        None => Ok(()),
    }
}

/// After the placeholder `fd` took `(level, name)` (see [`to_kernel`]):
/// records the option in `opts` as the kernel kept it, and returns what
/// the stack must be told, if anything.
///
/// # Safety
///
/// `val` is valid for `len` bytes (the kernel accepted them).
pub unsafe fn record(
    fd: c_int,
    opts: &mut Opts,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> Option<SockOpt> {
    if let Some(bit) = inherit_bit(level, name) {
        opts.inherit |= bit;
    }
    let kept = || kernel_int(fd, level, name);
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE)
        | (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE | libc::TCP_KEEPINTVL | libc::TCP_KEEPCNT) => {
            opts.keepalive = kernel_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE).is_some_and(|v| v != 0);
            opts.keep_times = Some(kernel_keepalive(fd));
            Some(SockOpt::Keepalive(
                opts.keepalive.then_some(opts.keep_times).flatten(),
            ))
        }
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => {
            opts.user_timeout = kept()
                .filter(|ms| *ms > 0)
                .map(|ms| Duration::from_millis(ms as u64));
            Some(SockOpt::UserTimeout(opts.user_timeout))
        }
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => {
            opts.nodelay = kept()? != 0;
            Some(SockOpt::NoDelay(opts.nodelay))
        }
        (libc::IPPROTO_TCP, libc::TCP_CORK) => {
            opts.cork = kept()? != 0;
            Some(SockOpt::Cork(opts.cork))
        }
        (libc::IPPROTO_IP, libc::IP_TOS) => {
            opts.tos = kept()? as u8;
            Some(SockOpt::Tos(opts.tos))
        }
        (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => {
            // What was set (the kernel accepted 0 or 88..=32767); the
            // placeholder reads 536 for "none", which is ambiguous.
            if val.is_null() || (len as usize) < size_of::<c_int>() {
                return None;
            }
            // SAFETY: checked size; the caller's contract.
            let v = unsafe { val.cast::<c_int>().read_unaligned() };
            opts.maxseg = u16::try_from(v).ok().filter(|v| *v > 0);
            Some(SockOpt::MaxSeg(opts.maxseg))
        }
        (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT) => {
            opts.defer_accept = kept().filter(|s| *s > 0).map(|s| Duration::from_secs(s as u64));
            Some(SockOpt::DeferAccept(opts.defer_accept))
        }
        (libc::IPPROTO_TCP, libc::TCP_QUICKACK) => {
            opts.quickack_off = kept()? == 0;
            Some(SockOpt::QuickAck(!opts.quickack_off))
        }
        (libc::SOL_SOCKET, libc::SO_REUSEPORT) => {
            // Takes effect at `listen` (the stack's listener groups).
            opts.reuse_port = kept()? != 0;
            None
        }
        (libc::SOL_SOCKET, libc::SO_LINGER) => {
            let l = kernel_linger(fd)?;
            opts.linger_zero = l.l_onoff != 0 && l.l_linger == 0;
            opts.linger = match (l.l_onoff != 0, l.l_linger) {
                (false, _) | (true, 0) => None,
                // Linux: a timeout too large for its clock lingers "for
                // ever" (and reads back negative).
                (true, s) if s < 0 => Some(Duration::from_secs(i32::MAX as u64)),
                (true, s) => Some(Duration::from_secs(s as u64)),
            };
            Some(SockOpt::LingerZero(opts.linger_zero))
        }
        _ => None,
    }
}

/// Everything `opts` holds for the stack, for a socket that goes on the
/// stack now (its settings are fresh: no side effects apply).
pub fn stack_opts(opts: &Opts) -> [SockOpt; 9] {
    [
        SockOpt::NoDelay(opts.nodelay),
        SockOpt::Cork(opts.cork),
        SockOpt::Keepalive(opts.keepalive.then(|| opts.keep_times.unwrap_or_default())),
        SockOpt::UserTimeout(opts.user_timeout),
        SockOpt::LingerZero(opts.linger_zero),
        SockOpt::Tos(opts.tos),
        SockOpt::MaxSeg(opts.maxseg),
        SockOpt::DeferAccept(opts.defer_accept),
        SockOpt::QuickAck(!opts.quickack_off),
    ]
}

/// Copies the inherited options set on the listener's placeholder
/// `listener` to the placeholder `child` of a connection it accepted, as
/// the kernel's accepted sockets inherit them.
pub fn inherit(listener: c_int, child: c_int, opts: &Opts) {
    let (Some(get), Some(set)) = (real::getsockopt.get(), real::setsockopt.get()) else {
        return;
    };
    for (i, (level, name)) in INHERITED.iter().enumerate() {
        if opts.inherit & (1 << i) == 0 {
            continue;
        }
        let mut buf = [0u8; 16];
        let mut len = buf.len() as socklen_t;
        // SAFETY: `buf` and `len` are valid for the calls; the value read
        // is passed back as it came.
        unsafe {
            if get(listener, *level, *name, buf.as_mut_ptr().cast(), &mut len) == 0 {
                set(child, *level, *name, buf.as_ptr().cast(), len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tfo_is_served_only_with_a_server_bit() {
        assert!(!tfo_server(0));
        assert!(!tfo_server(1), "Linux's default: client only");
        assert!(tfo_server(2));
        assert!(tfo_server(3));
        assert!(tfo_server(0x401));
        assert!(!tfo_server(0x201), "cookie-less client only");
    }

    #[test]
    fn sysctl_text_parses() {
        assert_eq!(parse_sysctl(b"1\n"), Some(1));
        assert_eq!(parse_sysctl(b"1027\n"), Some(1027));
        assert_eq!(parse_sysctl(b""), None);
        assert_eq!(parse_sysctl(b"x\n"), None);
    }

    #[test]
    fn inherited_options_have_distinct_bits() {
        let bits: Vec<u16> = INHERITED
            .iter()
            .map(|(l, n)| inherit_bit(*l, *n).unwrap())
            .collect();
        let all = bits.iter().fold(0u16, |a, b| {
            assert_eq!(a & b, 0);
            a | b
        });
        assert_eq!(all.count_ones() as usize, INHERITED.len());
        assert_eq!(inherit_bit(libc::SOL_SOCKET, libc::SO_RCVTIMEO), None);
    }

    /// A real kernel TCP socket: what `record` reads back is what the
    /// kernel kept.
    fn tcp_socket() -> c_int {
        // SAFETY: socket takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        fd
    }

    fn set(fd: c_int, opts: &mut Opts, level: c_int, name: c_int, v: c_int) -> Option<SockOpt> {
        // SAFETY: `v` is valid for the calls.
        unsafe {
            let p = (&raw const v).cast();
            let l = size_of::<c_int>() as socklen_t;
            to_kernel(fd, false, level, name, p, l).unwrap();
            record(fd, opts, level, name, p, l)
        }
    }

    #[test]
    fn record_takes_the_values_the_kernel_kept() {
        let fd = tcp_socket();
        let mut o = Opts::default();
        assert_eq!(
            set(fd, &mut o, libc::IPPROTO_IP, libc::IP_TOS, 0xff),
            Some(SockOpt::Tos(0xfc)),
            "a stream socket's ECN bits are the kernel's"
        );
        assert_eq!(
            set(fd, &mut o, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 30),
            Some(SockOpt::Keepalive(None)),
            "times alone do not switch keepalive on"
        );
        let k = Keepalive {
            idle: Duration::from_secs(30),
            ..o.keep_times.unwrap()
        };
        assert_eq!(
            set(fd, &mut o, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
            Some(SockOpt::Keepalive(Some(k)))
        );
        assert_eq!(
            set(fd, &mut o, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 2),
            Some(SockOpt::DeferAccept(Some(Duration::from_secs(3)))),
            "rounded up to Linux's SYN-ACK schedule (1 + 2 s)"
        );
        assert_eq!(
            set(fd, &mut o, libc::IPPROTO_TCP, libc::TCP_MAXSEG, 0),
            Some(SockOpt::MaxSeg(None))
        );
        assert_eq!(
            set(fd, &mut o, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 1500),
            Some(SockOpt::UserTimeout(Some(Duration::from_millis(1500))))
        );
        assert_eq!(
            set(fd, &mut o, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 0),
            Some(SockOpt::QuickAck(false))
        );
        assert!(o.quickack_off);
        assert_eq!(set(fd, &mut o, libc::SOL_SOCKET, libc::SO_RCVLOWAT, 1), None);
        let lg = libc::linger {
            l_onoff: 1,
            l_linger: 3,
        };
        // SAFETY: `lg` is valid for the calls.
        let r = unsafe {
            let p = (&raw const lg).cast();
            let l = size_of::<libc::linger>() as socklen_t;
            to_kernel(fd, false, libc::SOL_SOCKET, libc::SO_LINGER, p, l).unwrap();
            record(fd, &mut o, libc::SOL_SOCKET, libc::SO_LINGER, p, l)
        };
        assert_eq!(r, Some(SockOpt::LingerZero(false)));
        assert_eq!(o.linger, Some(Duration::from_secs(3)));
        assert_ne!(o.inherit, 0);
        sys::close(fd);
    }

    #[test]
    fn to_kernel_keeps_the_kernels_errnos() {
        let fd = tcp_socket();
        let v: c_int = 0;
        // SAFETY: `v` is valid; the null pointer is the kernel's to refuse.
        unsafe {
            let p = (&raw const v).cast();
            assert_eq!(
                to_kernel(fd, false, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, p, 4),
                Err(Errno(libc::EINVAL)),
                "0 is out of 1..=32767"
            );
            assert_eq!(
                to_kernel(
                    fd,
                    false,
                    libc::IPPROTO_TCP,
                    libc::TCP_KEEPCNT,
                    std::ptr::null(),
                    4
                ),
                Err(Errno(libc::EFAULT))
            );
            assert_eq!(
                to_kernel(fd, false, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, p, 2),
                Err(Errno(libc::EINVAL))
            );
        }
        sys::close(fd);
    }

    #[test]
    fn fastopen_on_a_connection_is_einval_and_leaves_the_placeholder_alone() {
        let fd = tcp_socket();
        let v: c_int = 5;
        // SAFETY: `v` is valid for the call.
        let r = unsafe {
            to_kernel(
                fd,
                true,
                libc::IPPROTO_TCP,
                libc::TCP_FASTOPEN,
                (&raw const v).cast(),
                4,
            )
        };
        assert_eq!(r, Err(Errno(libc::EINVAL)));
        assert_eq!(kernel_int(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN), Some(0));
        sys::close(fd);
    }
}
