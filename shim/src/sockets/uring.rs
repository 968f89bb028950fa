//! io_uring on accelerated sockets: refused, clearly.
//!
//! io_uring is not accelerated: its requests go to the kernel, which
//! knows an accelerated socket only as its placeholder (a kernel socket
//! that is not the connection). Left alone, a request on it would fail
//! with an error that says nothing (`ENOTCONN`, `EPIPE` with a
//! `SIGPIPE`), or, on a wildcard listener's placeholder, which also takes
//! kernel (loopback) clients, accept one of those.
//!
//! What the shim can see: liburing issues its system calls itself (its
//! own `syscall` instructions), so `io_uring_setup` and `io_uring_enter`
//! are invisible; but a program linked dynamically against `liburing.so`
//! calls liburing's submit functions through its PLT, and those the shim
//! interposes. Before the real function publishes the program's
//! submission queue entries to the kernel, every entry not yet consumed
//! whose fd is an accelerated socket (or, for `IORING_OP_CONNECT`, a
//! socket not decided yet whose address the stack routes) gets fd -1: the
//! kernel completes it with `-EBADF`, and the shim logs one line,
//! "io_uring is not accelerated: ...", the first time. The same for the
//! fds of `io_uring_register_files` (registered as empty slots, -1).
//!
//! In a child of `fork`, an inherited connection (see `forked`) is
//! attached instead: its fd becomes a kernel socketpair end the parent's
//! proxy pumps, and the request goes through.
//!
//! Not covered: liburing linked statically, and other io_uring libraries
//! (raw system calls): their requests reach the placeholder as above.
//!
//! The layout read here is liburing's `struct io_uring` (its `sq` part and
//! `flags`), unchanged from liburing 2.0 to 2.3 (Debian 12), and the
//! kernel's `struct io_uring_sqe`.

use crate::fdtable::{State, FDS};
use crate::interpose::real;
use crate::interpose::skeleton::Dispatch;
use crate::logging::log;
use crate::sockets::socket;
use libc::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

/// `IOSQE_FIXED_FILE`: the fd is an index into the registered files.
const IOSQE_FIXED_FILE: u8 = 1;
/// `IORING_SETUP_SQPOLL`: a kernel thread consumes the entries as soon
/// as they are published.
const IORING_SETUP_SQPOLL: u32 = 1 << 1;
/// `IORING_SETUP_SQE128`: entries of 128 bytes.
const IORING_SETUP_SQE128: u32 = 1 << 10;

const OP_CONNECT: u8 = 16;
const OP_SPLICE: u8 = 30;
const OP_TEE: u8 = 33;

/// Offsets in liburing's `struct io_uring`.
mod ring {
    pub const KHEAD: usize = 0;
    pub const KTAIL: usize = 8;
    pub const KRING_MASK: usize = 16;
    pub const ARRAY: usize = 48;
    pub const SQES: usize = 56;
    pub const SQE_HEAD: usize = 64;
    pub const SQE_TAIL: usize = 68;
    pub const RING_MASK: usize = 88;
    pub const FLAGS: usize = 192;
}

/// Offsets in `struct io_uring_sqe`.
mod sqe {
    pub const OPCODE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const FD: usize = 4;
    pub const OFF: usize = 8;
    pub const ADDR: usize = 16;
    pub const SPLICE_FD_IN: usize = 44;
}

/// The name of opcode `op`, for the log.
fn op_name(op: u8) -> &'static str {
    match op {
        1 => "IORING_OP_READV",
        2 => "IORING_OP_WRITEV",
        4 => "IORING_OP_READ_FIXED",
        5 => "IORING_OP_WRITE_FIXED",
        6 => "IORING_OP_POLL_ADD",
        9 => "IORING_OP_SENDMSG",
        10 => "IORING_OP_RECVMSG",
        13 => "IORING_OP_ACCEPT",
        16 => "IORING_OP_CONNECT",
        22 => "IORING_OP_READ",
        23 => "IORING_OP_WRITE",
        26 => "IORING_OP_SEND",
        27 => "IORING_OP_RECV",
        30 => "IORING_OP_SPLICE",
        33 => "IORING_OP_TEE",
        34 => "IORING_OP_SHUTDOWN",
        _ => "an io_uring request",
    }
}

/// Logs the refusal, the first time only.
fn refused(what: &str, fd: c_int, why: &str) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        log!(
            warn,
            "io_uring is not accelerated: {what} on fd {fd} ({why}) fails with EBADF; \
             use the socket calls (read, recv, send, epoll, ...) on accelerated sockets \
             (logged once)"
        );
    }
}

/// Why an io_uring request on `fd` must be refused, if it must.
fn refuse(fd: c_int) -> Option<&'static str> {
    // A fork child's inherited connection is attached first: its fd is
    // then a kernel socketpair end (see `forked`), which io_uring serves.
    if fd >= 0 && crate::sockets::forked::any() {
        crate::sockets::forked::attach_each([fd]);
    }
    (fd >= 0 && matches!(socket::settle(fd), State::Tcp | State::Udp | State::Inert))
        .then_some("an accelerated socket")
}

/// Reads a `T` at `base + off`.
///
/// # Safety
///
/// `base + off` is valid for reading a `T`.
unsafe fn at<T: Copy>(base: *const u8, off: usize) -> T {
    // SAFETY: the caller's contract.
    unsafe { base.add(off).cast::<T>().read_unaligned() }
}

/// Refuses submission queue entry `e` if it names an accelerated socket.
///
/// # Safety
///
/// `e` is a valid, writable entry of the program's ring.
unsafe fn check_entry(e: *mut u8) {
    // SAFETY: the caller's contract, for every access below.
    unsafe {
        let op: u8 = at(e, sqe::OPCODE);
        let flags: u8 = at(e, sqe::FLAGS);
        if flags & IOSQE_FIXED_FILE == 0 {
            let fd: c_int = at(e, sqe::FD);
            let why = refuse(fd).or_else(|| {
                (op == OP_CONNECT && fd >= 0 && FDS.get(fd).state() == State::Pending && {
                    let addr = at::<u64>(e, sqe::ADDR) as usize as *const libc::sockaddr;
                    let len = at::<u64>(e, sqe::OFF) as libc::socklen_t;
                    matches!(crate::sockets::sockaddr::read_in(addr, len), Ok(crate::sockets::sockaddr::Addr::V4(a)) if socket::routed(*a.ip()))
                })
                .then_some("a connect to an address of the stack")
            });
            if let Some(why) = why {
                refused(op_name(op), fd, why);
                e.add(sqe::FD).cast::<c_int>().write_unaligned(-1);
            }
        }
        if op == OP_SPLICE || op == OP_TEE {
            let fd_in: c_int = at(e, sqe::SPLICE_FD_IN);
            // SPLICE_F_FD_IN_FIXED (1 << 31) in splice_flags marks a
            // registered file; only plain fds are looked up.
            let fixed = at::<u32>(e, 28) & (1 << 31) != 0;
            if let (false, Some(why)) = (fixed, refuse(fd_in)) {
                refused(op_name(op), fd_in, why);
                e.add(sqe::SPLICE_FD_IN).cast::<c_int>().write_unaligned(-1);
            }
        }
    }
}

/// Checks every entry of the program's ring `r` not yet consumed by the
/// kernel: those liburing holds (`sqe_head..sqe_tail`) and, unless a
/// kernel thread polls the ring, those published and not yet consumed.
///
/// # Safety
///
/// `r` is null or liburing's `struct io_uring`, set up by
/// `io_uring_queue_init*`.
unsafe fn check_ring(r: *mut c_void) {
    if r.is_null() {
        return;
    }
    let r = r.cast::<u8>().cast_const();
    // SAFETY: the caller's contract: the fields of a live ring.
    unsafe {
        let sqes: *mut u8 = at(r, ring::SQES);
        let flags: u32 = at(r, ring::FLAGS);
        let mut mask: u32 = at(r, ring::RING_MASK);
        if mask == 0 {
            let k: *const u32 = at(r, ring::KRING_MASK);
            if !k.is_null() {
                mask = k.read_volatile();
            }
        }
        if sqes.is_null() || mask > 32767 || !(mask + 1).is_power_of_two() {
            return;
        }
        let size = if flags & IORING_SETUP_SQE128 != 0 { 128 } else { 64 };
        let entry = |i: u32| sqes.add((i & mask) as usize * size);
        let (head, tail): (u32, u32) = (at(r, ring::SQE_HEAD), at(r, ring::SQE_TAIL));
        for k in 0..tail.wrapping_sub(head).min(mask + 1) {
            check_entry(entry(head.wrapping_add(k)));
        }
        if flags & IORING_SETUP_SQPOLL != 0 {
            return;
        }
        let (kh, kt, array): (*const u32, *const u32, *const u32) =
            (at(r, ring::KHEAD), at(r, ring::KTAIL), at(r, ring::ARRAY));
        if kh.is_null() || kt.is_null() || array.is_null() {
            return;
        }
        let (h, t) = (kh.read_volatile(), kt.read_volatile());
        for k in 0..t.wrapping_sub(h).min(mask + 1) {
            let slot = array.add((h.wrapping_add(k) & mask) as usize).read_volatile();
            check_entry(entry(slot));
        }
    }
}

/// Before a liburing call that submits: the ring's entries checked; then
/// liburing's own function runs.
///
/// # Safety
///
/// `r` is null or liburing's `struct io_uring`, set up by
/// `io_uring_queue_init*`.
pub unsafe fn before_submit(r: *mut c_void) -> Dispatch<c_int> {
    // SAFETY: the caller's contract.
    unsafe { check_ring(r) };
    Dispatch::NotOurs
}

/// `files` with every accelerated socket replaced by -1 (an empty slot),
/// or `None` if it has none.
///
/// # Safety
///
/// `files` is null or valid for `nr` fds.
unsafe fn registrable(files: *const c_int, nr: c_uint) -> Option<Vec<c_int>> {
    if files.is_null() || nr == 0 || nr > 1 << 20 {
        return None;
    }
    // SAFETY: the caller's contract.
    let fds = unsafe { std::slice::from_raw_parts(files, nr as usize) };
    let first = fds.iter().position(|&fd| refuse(fd).is_some())?;
    if let Some(&fd) = fds.get(first) {
        refused("io_uring_register_files", fd, "an accelerated socket");
    }
    Some(
        fds.iter()
            .map(|&fd| if refuse(fd).is_some() { -1 } else { fd })
            .collect(),
    )
}

/// The answer of a real liburing function `r` (0 or more, or `-errno`:
/// liburing reports errors in its return value, not in `errno`).
fn passed(r: Option<c_int>) -> Dispatch<c_int> {
    Dispatch::Done(Ok(r.unwrap_or(-libc::ENOSYS)))
}

/// `io_uring_register_files`, its accelerated sockets as empty slots.
///
/// # Safety
///
/// As for liburing's function.
pub unsafe fn register_files(r: *mut c_void, files: *const c_int, nr: c_uint) -> Dispatch<c_int> {
    // SAFETY: the caller's contract.
    let Some(v) = (unsafe { registrable(files, nr) }) else {
        return Dispatch::NotOurs;
    };
    // SAFETY: liburing's function, with an array of `nr` fds.
    passed(
        real::io_uring_register_files
            .get()
            .map(|f| unsafe { f(r, v.as_ptr(), nr) }),
    )
}

/// `io_uring_register_files_update`, likewise.
///
/// # Safety
///
/// As for liburing's function.
pub unsafe fn register_files_update(
    r: *mut c_void,
    off: c_uint,
    files: *const c_int,
    nr: c_uint,
) -> Dispatch<c_int> {
    // SAFETY: the caller's contract.
    let Some(v) = (unsafe { registrable(files, nr) }) else {
        return Dispatch::NotOurs;
    };
    // SAFETY: liburing's function, with an array of `nr` fds.
    passed(
        real::io_uring_register_files_update
            .get()
            .map(|f| unsafe { f(r, off, v.as_ptr(), nr) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring as liburing lays it out, with `n` entries pending in
    /// liburing's hands (none published).
    struct FakeRing {
        ring: [u64; 27],
        sqes: Vec<[u8; 64]>,
    }

    impl FakeRing {
        fn new(fds: &[(u8, c_int, u8)]) -> FakeRing {
            let mut sqes = vec![[0u8; 64]; 8];
            for (i, &(op, fd, flags)) in fds.iter().enumerate() {
                sqes[i][sqe::OPCODE] = op;
                sqes[i][sqe::FLAGS] = flags;
                sqes[i][sqe::FD..sqe::FD + 4].copy_from_slice(&fd.to_ne_bytes());
            }
            let mut r = FakeRing { ring: [0; 27], sqes };
            let b = r.ring.as_mut_ptr().cast::<u8>();
            // SAFETY: offsets inside the 216-byte ring.
            unsafe {
                b.add(ring::SQES)
                    .cast::<*mut u8>()
                    .write_unaligned(r.sqes.as_mut_ptr().cast());
                b.add(ring::SQE_TAIL)
                    .cast::<u32>()
                    .write_unaligned(fds.len() as u32);
                b.add(ring::RING_MASK).cast::<u32>().write_unaligned(7);
            }
            r
        }

        fn fd(&self, i: usize) -> c_int {
            c_int::from_ne_bytes(self.sqes[i][sqe::FD..sqe::FD + 4].try_into().unwrap())
        }
    }

    #[test]
    fn entries_on_accelerated_sockets_get_fd_minus_one_and_no_other() {
        let (ours, kernel) = (40_101, 0);
        FDS.install(ours, State::Tcp, 5).unwrap();
        let mut r = FakeRing::new(&[
            (27, ours, 0),
            (22, kernel, 0),
            (26, ours, IOSQE_FIXED_FILE),
            (0, -1, 0),
        ]);
        // SAFETY: a ring laid out as liburing's.
        unsafe { check_ring(r.ring.as_mut_ptr().cast()) };
        assert_eq!(r.fd(0), -1, "RECV on ours: refused");
        assert_eq!(r.fd(1), kernel, "a kernel fd: untouched");
        assert_eq!(r.fd(2), ours, "a registered file's index: untouched");
        assert_eq!(r.fd(3), -1);
        FDS.clear(ours);
        // SAFETY: a null ring is ignored.
        unsafe { check_ring(std::ptr::null_mut()) };
    }

    #[test]
    fn registered_files_lose_only_accelerated_sockets() {
        let ours = 40_102;
        FDS.install(ours, State::Udp, 6).unwrap();
        // SAFETY: arrays of the length given.
        unsafe {
            assert_eq!(registrable([0, 1, 2].as_ptr(), 3), None);
            assert_eq!(registrable([0, ours, 2].as_ptr(), 3), Some(vec![0, -1, 2]));
        }
        FDS.clear(ours);
    }
}
