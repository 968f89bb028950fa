//! The shim's readers and writers of the program's arguments, fed
//! arbitrary values: socket addresses, socket option values, iovec arrays
//! and message headers, epoll events and timeouts.
//!
//! Each entry point lays the input out in real memory exactly as the
//! function's safety contract allows (a buffer of the length the call is
//! told, or null), surrounded by guard bytes, then checks what the kernel
//! would: the result, and that nothing was written outside what the
//! program offered (the guard bytes are intact).

use core::net::{Ipv4Addr, SocketAddrV4};

use accel::interpose::skeleton::Errno;
use accel::sockets::sockaddr::{self as sa, Addr};
use accel::{interpose::ops, sockets::epoll, sockets::io};
use libc::{c_int, c_void, epoll_event, iovec, msghdr, sockaddr, socklen_t};

use crate::bytes::Bytes;

/// Guard bytes around every buffer the functions write into.
const GUARD: usize = 32;
const CANARY: u8 = 0xa5;

/// A buffer of `len` bytes (from the input, zero-filled past its end)
/// between two guards.
struct Guarded {
    mem: Vec<u8>,
    len: usize,
}

impl Guarded {
    fn new(len: usize, fill: &[u8]) -> Guarded {
        let mut mem = vec![CANARY; GUARD + len + GUARD];
        for (i, b) in mem[GUARD..GUARD + len].iter_mut().enumerate() {
            *b = fill.get(i).copied().unwrap_or(0);
        }
        Guarded { mem, len }
    }

    fn ptr(&mut self) -> *mut u8 {
        self.mem[GUARD..].as_mut_ptr()
    }

    fn bytes(&self) -> &[u8] {
        &self.mem[GUARD..GUARD + self.len]
    }

    /// Panics if anything outside the buffer changed.
    fn check_guards(&self) {
        let (before, rest) = self.mem.split_at(GUARD);
        let after = &rest[self.len..];
        assert!(
            before.iter().chain(after).all(|&b| b == CANARY),
            "written outside the buffer"
        );
    }
}

/// `sockaddr::read_in` and `sockaddr::write`.
pub fn sockaddr(data: &[u8]) {
    let mut b = Bytes::new(data);
    // Reading: a buffer of `len` bytes, or null.
    let len = b.u16() as socklen_t % 200;
    let null = b.u8() == 0xff;
    let mut g = Guarded::new(len as usize, b.take(len as usize));
    let p = if null {
        std::ptr::null()
    } else {
        g.ptr() as *const sockaddr
    };
    // SAFETY: `p` is null or valid for `len` bytes.
    let r = unsafe { sa::read_in(p, len) };
    let bytes = g.bytes();
    let family = (bytes.len() >= 2).then(|| c_int::from(u16::from_ne_bytes([bytes[0], bytes[1]])));
    match r {
        Err(Errno(libc::EFAULT)) => assert!(null),
        Err(Errno(libc::EINVAL)) => assert!(len < 2 || family == Some(libc::AF_INET) && len < 16),
        Err(e) => panic!("read_in: {e:?}"),
        Ok(Addr::V4(a)) => {
            assert!(family == Some(libc::AF_INET) && len >= 16);
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            assert_eq!(a, SocketAddrV4::new(ip, port));
        }
        Ok(Addr::Unspec) => assert_eq!(family, Some(libc::AF_UNSPEC)),
        Ok(Addr::Other) => assert!(!matches!(family, Some(libc::AF_INET | libc::AF_UNSPEC) | None)),
    }

    // Writing: `*len` says how much room there is (maybe negative), the
    // buffer has exactly that much (or is null, as is `len` maybe).
    let a = SocketAddrV4::new(Ipv4Addr::from(b.u32()), b.u16());
    let room = b.u32() as socklen_t;
    let (null_addr, null_len) = (b.u8() == 0xff, b.u8() == 0xff);
    let size = (room as c_int).clamp(0, 64) as usize;
    let mut g = Guarded::new(size, &[]);
    let mut l = room;
    let ap = if null_addr {
        std::ptr::null_mut()
    } else {
        g.ptr() as *mut sockaddr
    };
    let lp = if null_len {
        std::ptr::null_mut()
    } else {
        &raw mut l
    };
    // A room beyond the buffer would break the contract: keep it within.
    if (room as c_int) > 64 {
        l = 64;
    }
    let offered = l;
    // SAFETY: `ap` is null or holds `*lp` bytes; `lp` is null or valid.
    let r = unsafe { sa::write(a, ap, lp) };
    g.check_guards();
    match r {
        Ok(()) if null_addr => assert_eq!(l, offered, "nothing written for a null address"),
        Ok(()) => {
            assert!(!null_len && (offered as c_int) >= 0);
            assert_eq!(l as usize, size_of::<libc::sockaddr_in>());
            let full = sa::to_c(a);
            // SAFETY: a sockaddr_in is plain bytes.
            let full: [u8; 16] = unsafe { core::mem::transmute(full) };
            let n = (offered as usize).min(16);
            assert_eq!(&g.bytes()[..n], &full[..n]);
        }
        Err(Errno(libc::EFAULT)) => assert!(null_len && !null_addr),
        Err(Errno(libc::EINVAL)) => assert!((offered as c_int) < 0),
        Err(e) => panic!("write: {e:?}"),
    }
}

/// The socket option readers (`int_val`, `time_val`) and writers
/// (`put_int`, `put_bytes`).
pub fn sockopt(data: &[u8]) {
    let mut b = Bytes::new(data);
    let len = socklen_t::from(b.u8());
    let null = b.u8() == 0xff;
    let mut g = Guarded::new(len as usize, b.take(len as usize));
    let p = if null {
        std::ptr::null()
    } else {
        g.ptr() as *const c_void
    };
    // SAFETY: `p` is null or valid for `len` bytes.
    let int = unsafe { io::int_val(p, len) };
    // SAFETY: as above.
    let time = unsafe { io::time_val(p, len) };
    let bytes = g.bytes();
    if null || len < 4 {
        assert_eq!(int, None);
    } else {
        assert_eq!(int, Some(c_int::from_ne_bytes(bytes[..4].try_into().unwrap())));
    }
    if null || (len as usize) < size_of::<libc::timeval>() {
        assert_eq!(time, None);
    } else {
        let sec = i64::from_ne_bytes(bytes[..8].try_into().unwrap());
        let usec = i64::from_ne_bytes(bytes[8..16].try_into().unwrap());
        let t = time.expect("a timeval");
        match t {
            None => assert!(sec <= 0 && usec <= 0, "a zero timeout means none"),
            Some(d) => {
                assert!(sec > 0 || usec > 0);
                assert!(d.as_secs() >= sec.max(0) as u64, "{d:?} from {sec} s {usec} us");
            }
        }
    }

    // Writers: `*len` of room (maybe negative), a buffer that size.
    let v = b.u32() as c_int;
    let room = b.u32() as socklen_t;
    let raw = b.slice(1).to_vec();
    for put_bytes in [false, true] {
        let size = (room as c_int).clamp(0, 300) as usize;
        let mut g = Guarded::new(size, &[]);
        let mut l: socklen_t = if (room as c_int) > 300 { 300 } else { room };
        let offered = l;
        let null_val = b.u8() == 0xff;
        let vp = if null_val {
            std::ptr::null_mut()
        } else {
            g.ptr() as *mut c_void
        };
        // SAFETY: `vp` is null or holds `l` bytes; `l` is valid.
        let r = unsafe {
            if put_bytes {
                io::put_bytes(vp, &raw mut l, &raw)
            } else {
                io::put_int(vp, &raw mut l, v)
            }
        };
        g.check_guards();
        let value = if put_bytes {
            raw.clone()
        } else {
            v.to_ne_bytes().to_vec()
        };
        match r {
            Ok(0) => {
                let n = (offered as usize).min(value.len());
                assert_eq!(l as usize, n);
                assert_eq!(&g.bytes()[..n], &value[..n]);
            }
            Err(Errno(libc::EINVAL)) => assert!((offered as c_int) < 0),
            Err(Errno(libc::EFAULT)) => assert!(null_val),
            r => panic!("put: {r:?}"),
        }
    }
}

/// The iovec readers: `ops::iovs` (readv/writev), `ops::msg_iov`
/// (sendmsg/recvmsg), `io::iov_len` and `io::trimmed`.
pub fn iovec(data: &[u8]) {
    let mut b = Bytes::new(data);
    let count = b.u16() as c_int - 8;
    let lens: Vec<usize> = (0..count.clamp(0, 1100))
        .map(|_| match b.below(4) {
            0 => 0,
            1 => usize::from(b.u8()),
            2 => b.u32() as usize,
            _ => usize::MAX - usize::from(b.u8()),
        })
        .collect();
    // The buffers are never dereferenced here: bases are fake addresses.
    let iov: Vec<iovec> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| iovec {
            iov_base: (0x1000 * (i + 1)) as *mut c_void,
            iov_len: n,
        })
        .collect();
    let null = b.u8() == 0xff;
    let p = if null { std::ptr::null() } else { iov.as_ptr() };
    // SAFETY: `p` is null or holds `count` entries when `count` is in range.
    let r = unsafe { ops::iovs(p, count) };
    match r {
        Ok(s) => {
            assert!((0..=1024).contains(&count));
            assert_eq!(s.len(), count as usize);
        }
        Err(Errno(libc::EINVAL)) => assert!(!(0..=1024).contains(&count)),
        Err(Errno(libc::EFAULT)) => assert!(null && count > 0),
        Err(e) => panic!("iovs: {e:?}"),
    }

    // SAFETY: a zeroed msghdr is valid.
    let mut msg: msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = if null {
        std::ptr::null_mut()
    } else {
        iov.as_ptr() as *mut iovec
    };
    msg.msg_iovlen = if b.bool() {
        iov.len()
    } else {
        b.u32() as usize % 1100
    };
    let msg_iovlen = msg.msg_iovlen.min(iov.len());
    msg.msg_iovlen = msg_iovlen;
    // SAFETY: `msg` is valid, its array holds `msg_iovlen` entries.
    match unsafe { ops::msg_iov(&msg) } {
        Ok(s) => assert_eq!(s.len(), if null { 0 } else { msg_iovlen }),
        Err(Errno(libc::EMSGSIZE)) => assert!(msg_iovlen > 1024),
        Err(e) => panic!("msg_iov: {e:?}"),
    }
    // SAFETY: null is refused before any read.
    let none = unsafe { ops::msg_iov(std::ptr::null()) };
    assert_eq!(none.map(|s| s.len()), Err(Errno(libc::EFAULT)));

    let total = io::iov_len(&iov);
    assert_eq!(total, lens.iter().fold(0usize, |a, &n| a.saturating_add(n)));
    let skip = match b.below(3) {
        0 => b.u32() as usize,
        1 => total,
        _ => total / 2,
    };
    let rest = io::trimmed(&iov, skip);
    let left: usize = rest.iter().fold(0usize, |a, v| a.saturating_add(v.iov_len));
    if total < usize::MAX {
        assert_eq!(left, total.saturating_sub(skip), "{skip} skipped of {total}");
    }
    assert!(
        rest.iter().all(|v| v.iov_len > 0),
        "no empty iovec after trimming"
    );
    // The first remaining iovec starts `skip` bytes into the stream.
    if let Some(first) = rest.first() {
        let mut before = 0usize;
        for (v, &n) in iov.iter().zip(&lens) {
            match before.checked_add(n) {
                Some(end) if end <= skip => before = end,
                _ => {
                    let off = skip - before;
                    assert_eq!(first.iov_base as usize, (v.iov_base as usize).wrapping_add(off));
                    assert_eq!(first.iov_len, n - off);
                    break;
                }
            }
        }
    }
}

/// The epoll argument checks: `epoll::ctl_event`, `epoll::wait_events` and
/// `epoll::ms`.
pub fn epoll(data: &[u8]) {
    let mut b = Bytes::new(data);
    let other = c_int::from(b.u8());
    let op = b.pick(&[
        libc::EPOLL_CTL_ADD,
        libc::EPOLL_CTL_MOD,
        libc::EPOLL_CTL_DEL,
        other,
    ]);
    let (epfd, fd) = (c_int::from(b.u8()), c_int::from(b.u8()));
    let ev = epoll_event {
        events: b.u32(),
        u64: u64::from(b.u32()),
    };
    let null = b.bool();
    let p = if null { std::ptr::null() } else { &raw const ev };
    // SAFETY: `p` is null or a live event.
    let r = unsafe { epoll::ctl_event(op, epfd, fd, p) };
    match r {
        Ok(got) => {
            assert!(epfd != fd);
            if null {
                assert_eq!(op, libc::EPOLL_CTL_DEL);
                assert_eq!((got.events, { got.u64 }), (0, 0));
            } else {
                assert_eq!((got.events, { got.u64 }), (ev.events, { ev.u64 }));
                assert!(op != libc::EPOLL_CTL_MOD || ev.events & libc::EPOLLEXCLUSIVE as u32 == 0);
            }
        }
        Err(Errno(libc::EFAULT)) => assert!(null && op != libc::EPOLL_CTL_DEL),
        Err(Errno(libc::EINVAL)) => {
            assert!(epfd == fd || op == libc::EPOLL_CTL_MOD && ev.events & libc::EPOLLEXCLUSIVE as u32 != 0)
        }
        Err(e) => panic!("ctl_event: {e:?}"),
    }

    let maxevents = b.u32() as c_int;
    let null = b.bool();
    let n = maxevents.clamp(0, 4096) as usize;
    let mut events = vec![epoll_event { events: 0, u64: 0 }; n];
    let p = if null {
        std::ptr::null_mut()
    } else {
        events.as_mut_ptr()
    };
    // Beyond the array only if the call must refuse before writing.
    let limit = (i32::MAX as usize) / size_of::<epoll_event>();
    if maxevents as usize <= n || maxevents <= 0 || maxevents as usize > limit {
        // SAFETY: `p` is null or holds `maxevents` entries when in range.
        match unsafe { epoll::wait_events(p, maxevents) } {
            Ok(s) => assert!(!null && s.len() == maxevents as usize),
            Err(Errno(libc::EINVAL)) => assert!(maxevents <= 0 || maxevents as usize > limit),
            Err(Errno(libc::EFAULT)) => assert!(null),
            Err(e) => panic!("wait_events: {e:?}"),
        }
    }

    let timeout = b.u32() as c_int;
    match epoll::ms(timeout) {
        None => assert!(timeout < 0),
        Some(d) => assert_eq!(d.as_millis(), timeout as u128),
    }
}
