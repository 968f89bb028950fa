//! When the process dies without closing its sockets (SIGKILL, a crash, an
//! abort, `_exit`), or replaces itself with `exec`, its stack goes with it
//! and its peers would wait for a keepalive or a retransmission timeout to
//! learn that. The kernel closes a dead process's sockets; this module
//! makes something outlive the process to do the same: a *reaper* process,
//! made when the stack starts on a net_tap port.
//!
//! How: the reaper is a clone of the process made with no exit signal (so
//! the program's `wait` never sees it), in a session of its own, with all
//! signals blocked; it holds the tap's queue fds and a shared mapping with
//! the table of open connections (4-tuple and the peer's MAC, written by
//! the process when a connection is made, erased when the program closes
//! it). It sleeps on a pidfd of the process and on a pipe whose write end
//! the process holds close-on-exec. When the process is gone (or its exec
//! succeeded), it resets each connection still in the table: a SYN on the
//! connection makes the peer answer with a challenge ACK carrying the
//! sequence number it expects (RFC 5961 §4), and a reset with exactly that
//! number ends the connection there (RFC 5961 §3); it answers ARP for our
//! address meanwhile, asks for a peer MAC it lacks, and gives up after 2 s.
//! A normal exit, which closed everything properly, tells it to leave
//! quietly. Before resetting, it writes out the flight recorder (see
//! `flight`), unless the process exec'd.
//!
//! Why not the port owner of issue 12: there is none yet; the reaper needs
//! nothing but the tap's fds. Memif and other ports have no reaper (their
//! peer is another process of ours, which sees the link go down).
//!
//! The reaper runs only raw system calls on buffers of its stack: it is a
//! fork of a multithreaded process and must not touch a lock or the heap.

use crate::logging::log;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering::*};
use std::sync::Mutex;

/// Connections the table holds at most (a slot is 32 bytes).
const SLOTS: usize = 65536;
/// Tap queue fds the reaper polls at most.
const MAX_FDS: usize = 16;
const FREE: u32 = 0;
const USED: u32 = 1;
const DONE: u32 = 2;

/// One connection, as the reaper needs it (every field an atomic: two
/// processes share it).
#[repr(C)]
struct Slot {
    state: AtomicU32,
    /// Our address and the peer's, as in the IPv4 header.
    local_ip: AtomicU32,
    remote_ip: AtomicU32,
    /// Our port << 16 | the peer's.
    ports: AtomicU32,
    /// The peer's MAC: bytes 0-3, and 4-5 in the low half (0: unknown).
    mac_hi: AtomicU32,
    mac_lo: AtomicU32,
    _pad: [u32; 2],
}

/// The head of the shared mapping.
#[repr(C)]
struct Head {
    /// Set by a normal exit: leave without resetting anything.
    quiet: AtomicU32,
    /// 1 while an `exec` is under way (the pipe's end then means success).
    exec: AtomicU32,
    our_ip: AtomicU32,
    our_mac_hi: AtomicU32,
    our_mac_lo: AtomicU32,
    _pad: [u32; 11],
}

/// The shared mapping: a head, then the slots.
#[repr(C)]
struct Shared {
    head: Head,
    slots: [Slot; SLOTS],
}

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());
/// The write end of the pipe the reaper watches; -1 without a reaper.
static PIPE: AtomicI32 = AtomicI32::new(-1);
/// Free slots (the process's side only).
static FREE_SLOTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Slots never used yet start here.
static FRESH: AtomicU32 = AtomicU32::new(0);

fn shared() -> Option<&'static Shared> {
    let p = SHARED.load(Acquire);
    // SAFETY: a non-null pointer is the mapping made in `start`, never
    // unmapped while the process lives.
    (!p.is_null()).then(|| unsafe { &*p })
}

fn mac_words(mac: [u8; 6]) -> (u32, u32) {
    (
        u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_be_bytes([0, 0, mac[4], mac[5]]),
    )
}

fn mac_of(hi: u32, lo: u32) -> [u8; 6] {
    let h = hi.to_be_bytes();
    let l = lo.to_be_bytes();
    [h[0], h[1], h[2], h[3], l[2], l[3]]
}

/// Starts the reaper for a net_tap port whose queue fds are `tap_fds`, our
/// address `ip` and `mac`. Logs and does nothing on failure (the process
/// runs on without one).
pub fn start(tap_fds: &[i32], ip: core::net::Ipv4Addr, mac: [u8; 6]) {
    if tap_fds.is_empty() || tap_fds.len() > MAX_FDS || shared().is_some() {
        return;
    }
    let len = size_of::<Shared>();
    // SAFETY: a fresh anonymous shared mapping; no pointer of ours is
    // involved.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        log!(
            warn,
            "no reaper: cannot map its table; a killed process's peers will time out"
        );
        return;
    }
    let shared = p.cast::<Shared>();
    // SAFETY: the mapping is zeroed (all slots FREE), ours, of its size.
    let sh = unsafe { &*shared };
    sh.head.our_ip.store(u32::from(ip), Relaxed);
    let (hi, lo) = mac_words(mac);
    sh.head.our_mac_hi.store(hi, Relaxed);
    sh.head.our_mac_lo.store(lo, Relaxed);
    let mut pipe = [0i32; 2];
    // SAFETY: `pipe` has room for two fds.
    if unsafe { libc::syscall(libc::SYS_pipe2, pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        log!(warn, "no reaper: pipe2 failed");
        return;
    }
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::syscall(libc::SYS_getpid) } as i32;
    let mut fds = [-1i32; MAX_FDS];
    for (d, s) in fds.iter_mut().zip(tap_fds) {
        *d = *s;
    }
    let n = tap_fds.len();
    // A fork with no exit signal: the program's `wait` never reports it.
    // SAFETY: clone without CLONE_VM duplicates the process like fork; the
    // child runs only `reap`, which makes raw system calls on its stack.
    let pid = unsafe { libc::syscall(libc::SYS_clone, 0usize, 0usize, 0usize, 0usize, 0usize) };
    if pid == 0 {
        reap(sh, pipe[0], pipe[1], parent, fds.get(..n).unwrap_or_default());
    }
    // SAFETY: closing our copy of the read end, ours.
    unsafe { libc::syscall(libc::SYS_close, pipe[0]) };
    if pid < 0 {
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_close, pipe[1]) };
        log!(
            warn,
            "no reaper: clone failed; a killed process's peers will time out"
        );
        return;
    }
    let _ = crate::fdtable::FDS.install(pipe[1], crate::fdtable::State::Internal, 0);
    PIPE.store(pipe[1], Release);
    SHARED.store(shared, Release);
    log!(
        info,
        "reaper {pid} watches this process: a crash resets its connections"
    );
}

/// Records a connection (our end `local`, the peer `remote` at `mac`, if
/// known) for the reaper; its slot, to [`forget`] when the program closes
/// it.
pub fn record(
    local: core::net::SocketAddrV4,
    remote: core::net::SocketAddrV4,
    mac: Option<[u8; 6]>,
) -> Option<u32> {
    let sh = shared()?;
    let i = match FREE_SLOTS.lock().unwrap_or_else(|e| e.into_inner()).pop() {
        Some(i) => i,
        None => {
            let i = FRESH.fetch_add(1, Relaxed);
            if i as usize >= SLOTS {
                FRESH.store(SLOTS as u32, Relaxed);
                return None;
            }
            i
        }
    };
    let slot = sh.slots.get(i as usize)?;
    slot.local_ip.store(u32::from(*local.ip()), Relaxed);
    slot.remote_ip.store(u32::from(*remote.ip()), Relaxed);
    slot.ports.store(
        (u32::from(local.port()) << 16) | u32::from(remote.port()),
        Relaxed,
    );
    let (hi, lo) = mac.map_or((0, 0), mac_words);
    slot.mac_hi.store(hi, Relaxed);
    slot.mac_lo.store(lo, Relaxed);
    slot.state.store(USED, Release);
    Some(i)
}

/// The program closed the connection of slot `i`: the reaper leaves it.
pub fn forget(i: u32) {
    let Some(sh) = shared() else { return };
    if let Some(slot) = sh.slots.get(i as usize) {
        slot.state.store(FREE, Release);
        FREE_SLOTS.lock().unwrap_or_else(|e| e.into_inner()).push(i);
    }
}

/// A normal exit closed every connection properly: the reaper leaves
/// without a reset.
pub fn quiet() {
    if let Some(sh) = shared() {
        sh.head.quiet.store(1, Release);
    }
}

/// An `exec` is about to replace the process (the pipe, close-on-exec,
/// then ends when it succeeds).
pub fn exec_begins() {
    if let Some(sh) = shared() {
        sh.head.exec.store(1, Release);
    }
}

/// The `exec` failed: the process goes on.
pub fn exec_failed() {
    if let Some(sh) = shared() {
        sh.head.exec.store(0, Release);
    }
}

/// In the child of `fork`: the reaper watches the parent, not this child,
/// whose copy of the pipe's end is closed (held open here, it would hide
/// the parent's death from the reaper while this child lives; the program
/// cannot close it: the shim keeps its own fds, see `interpose::hooks`).
pub fn after_fork() {
    SHARED.store(std::ptr::null_mut(), Release);
    let fd = PIPE.swap(-1, AcqRel);
    if fd >= 0 {
        let _ = crate::fdtable::FDS.clear(fd);
        sys_close(fd);
    }
}

// ----- the reaper process: raw system calls, stack buffers only -----------

fn sys_close(fd: i32) {
    // SAFETY: closes a descriptor of this process.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

fn sys_exit() -> ! {
    // SAFETY: ends this process (the reaper) only.
    unsafe { libc::syscall(libc::SYS_exit_group, 0) };
    #[allow(clippy::empty_loop)]
    loop {}
}

/// `ppoll` on `fds` for at most `ms` (negative: no limit).
fn sys_poll(fds: &mut [libc::pollfd], ms: i64) -> i64 {
    let ts = libc::timespec {
        tv_sec: (ms.max(0) / 1000) as libc::time_t,
        tv_nsec: ((ms.max(0) % 1000) * 1_000_000) as libc::c_long,
    };
    let tsp = if ms < 0 {
        std::ptr::null()
    } else {
        &ts as *const libc::timespec
    };
    // SAFETY: `fds` is a live array of its length; `tsp` null or live.
    unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            fds.as_mut_ptr(),
            fds.len(),
            tsp,
            std::ptr::null::<u8>(),
            8usize,
        )
    }
}

fn now_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable.
    unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_MONOTONIC,
            &mut ts as *mut libc::timespec,
        )
    };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

fn csum(data: &[u8], mut sum: u32) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        if let [a, b] = w {
            sum += u32::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Copies `bytes` into `buf` at `at` (nothing if it does not fit).
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Sets byte `at` of `buf`.
fn set(buf: &mut [u8], at: usize, v: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = v;
    }
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes a frame (with the tun packet-information header net_tap's fds
/// carry) of `proto` with `body` after the Ethernet header.
fn send_frame(fd: i32, dst: [u8; 6], src: [u8; 6], proto: u16, body: &[u8]) {
    let mut buf = [0u8; 128];
    let n = 4 + 14 + body.len();
    if n > buf.len() {
        return;
    }
    put(&mut buf, 2, &proto.to_be_bytes());
    put(&mut buf, 4, &dst);
    put(&mut buf, 10, &src);
    put(&mut buf, 16, &proto.to_be_bytes());
    put(&mut buf, 18, body);
    // SAFETY: writes `n` bytes of `buf`.
    unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), n) };
}

/// A TCP segment of ours to the peer of `slot`, with `flags`, `seq`.
fn send_tcp(fd: i32, head: &Head, slot: &Slot, flags: u8, seq: u32) {
    let (lip, rip) = (slot.local_ip.load(Relaxed), slot.remote_ip.load(Relaxed));
    let ports = slot.ports.load(Relaxed);
    let mac = mac_of(slot.mac_hi.load(Relaxed), slot.mac_lo.load(Relaxed));
    let ours = mac_of(head.our_mac_hi.load(Relaxed), head.our_mac_lo.load(Relaxed));
    let mut p = [0u8; 40];
    // IPv4
    set(&mut p, 0, 0x45);
    set(&mut p, 3, 40);
    set(&mut p, 6, 0x40); // DF
    set(&mut p, 8, 64);
    set(&mut p, 9, 6);
    put(&mut p, 12, &lip.to_be_bytes());
    put(&mut p, 16, &rip.to_be_bytes());
    let ip_sum = fold(csum(p.get(..20).unwrap_or_default(), 0));
    put(&mut p, 10, &ip_sum.to_be_bytes());
    // TCP
    put(&mut p, 20, &ports.to_be_bytes());
    put(&mut p, 24, &seq.to_be_bytes());
    set(&mut p, 32, 5 << 4);
    set(&mut p, 33, flags);
    if flags & 0x02 != 0 {
        put(&mut p, 34, &1024u16.to_be_bytes());
    }
    let mut pseudo = [0u8; 12];
    put(&mut pseudo, 0, &lip.to_be_bytes());
    put(&mut pseudo, 4, &rip.to_be_bytes());
    set(&mut pseudo, 9, 6);
    put(&mut pseudo, 10, &20u16.to_be_bytes());
    let tcp_sum = fold(csum(p.get(20..).unwrap_or_default(), csum(&pseudo, 0)));
    put(&mut p, 36, &tcp_sum.to_be_bytes());
    send_frame(fd, mac, ours, 0x0800, &p);
}

/// An ARP request (`op` 1) or reply (`op` 2) from us.
fn send_arp(fd: i32, head: &Head, op: u16, dst_mac: [u8; 6], target_mac: [u8; 6], target_ip: u32) {
    let ours = mac_of(head.our_mac_hi.load(Relaxed), head.our_mac_lo.load(Relaxed));
    let mut a = [0u8; 28];
    put(&mut a, 0, &1u16.to_be_bytes());
    put(&mut a, 2, &0x0800u16.to_be_bytes());
    set(&mut a, 4, 6);
    set(&mut a, 5, 4);
    put(&mut a, 6, &op.to_be_bytes());
    put(&mut a, 8, &ours);
    put(&mut a, 14, &head.our_ip.load(Relaxed).to_be_bytes());
    put(&mut a, 18, &target_mac);
    put(&mut a, 24, &target_ip.to_be_bytes());
    send_frame(fd, dst_mac, ours, 0x0806, &a);
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// The reaper's life (see the module docs); never returns.
fn reap(sh: &Shared, pipe: i32, pipe_w: i32, parent: i32, taps: &[i32]) -> ! {
    sys_close(pipe_w);
    // Every fd but the pipe and the taps goes: a copy held here would keep
    // the program's files and kernel sockets open after it closed them
    // (and its stdout open for whoever reads it).
    let mut keep = [i32::MAX; MAX_FDS + 1];
    let mut ks = keep.iter_mut();
    if let Some(k) = ks.next() {
        *k = pipe;
    }
    for (k, &t) in ks.zip(taps) {
        *k = t;
    }
    keep.sort_unstable();
    let mut from: i64 = 0;
    for &k in &keep {
        let k = i64::from(k);
        if k > from {
            let to = if k == i64::from(i32::MAX) {
                u32::MAX as i64
            } else {
                k - 1
            };
            // SAFETY: close_range takes plain integers.
            unsafe { libc::syscall(libc::SYS_close_range, from as u32, to as u32, 0u32) };
        }
        from = k + 1;
        if k == i64::from(i32::MAX) {
            break;
        }
    }
    // Out of the program's session and signals: a Ctrl-C or a kill of the
    // process group must not take the reaper first.
    // SAFETY: setsid and sigprocmask on this process only.
    unsafe {
        libc::syscall(libc::SYS_setsid);
        let all: u64 = !0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &all as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
    // SAFETY: pidfd_open takes plain integers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, parent, 0) } as i32;
    let mut pipe_open = true;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if pipe_open { pipe } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if sys_poll(&mut fds, -1) < 0 {
            continue;
        }
        let [pid_ev, pipe_ev] = fds;
        let dead = pidfd >= 0 && pid_ev.revents != 0;
        if pipe_open && pipe_ev.revents != 0 {
            // Nothing is ever written: this is the end of the pipe.
            pipe_open = false;
            sys_close(pipe);
            if sh.head.exec.load(Acquire) == 0 && !dead && pidfd >= 0 {
                // The program closed our fd while it lives: watch the pid.
                continue;
            }
            break;
        }
        if dead || pidfd < 0 && !pipe_open {
            break;
        }
    }
    if sh.head.quiet.load(Acquire) != 0 {
        sys_exit();
    }
    if sh.head.exec.load(Acquire) == 0 {
        // Died rather than exec'd: its connections' last events.
        crate::engine::flight::dump(parent);
    }
    reset_all(sh, taps);
    sys_exit()
}

/// Resets every connection in the table (see the module docs), for at
/// most 2 s.
fn reset_all(sh: &Shared, taps: &[i32]) {
    let head = &sh.head;
    let our_ip = head.our_ip.load(Relaxed);
    let Some(&out) = taps.first() else { return };
    let end = now_ms() + 2000;
    let mut next_probe = 0i64;
    let mut buf = [0u8; 2048];
    loop {
        let t = now_ms();
        let mut left = 0;
        if t >= next_probe {
            next_probe = t + 100;
            for slot in sh.slots.iter() {
                if slot.state.load(Acquire) != USED {
                    continue;
                }
                left += 1;
                if slot.mac_hi.load(Relaxed) == 0 && slot.mac_lo.load(Relaxed) == 0 {
                    send_arp(out, head, 1, [0xff; 6], [0; 6], slot.remote_ip.load(Relaxed));
                } else {
                    // A SYN on an open connection: the peer answers with a
                    // challenge ACK telling the sequence number it expects.
                    send_tcp(out, head, slot, 0x02, 0);
                }
            }
            if left == 0 || t >= end {
                return;
            }
        }
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; MAX_FDS];
        for (p, &fd) in fds.iter_mut().zip(taps) {
            p.fd = fd;
        }
        let polled = fds.get_mut(..taps.len()).unwrap_or_default();
        sys_poll(polled, (next_probe - t).clamp(1, 100));
        for p in polled.iter() {
            if p.revents == 0 {
                continue;
            }
            loop {
                // SAFETY: reads into our buffer, at most its length.
                let n = unsafe { libc::syscall(libc::SYS_read, p.fd, buf.as_mut_ptr(), buf.len()) };
                if n <= 18 {
                    break;
                }
                let f = buf.get(4..n as usize).unwrap_or_default();
                handle(sh, out, our_ip, f);
            }
        }
        if !sh.slots.iter().any(|s| s.state.load(Acquire) == USED) {
            // Every connection reset: the tap goes with the reaper.
            return;
        }
    }
}

/// A frame the tap gave the reaper: ARP is answered or learned from; a
/// challenge ACK gets its reset.
fn handle(sh: &Shared, out: i32, our_ip: u32, f: &[u8]) {
    let head = &sh.head;
    match be16(f, 12) {
        0x0806 => {
            let a = f.get(14..).unwrap_or_default();
            let (op, sender_ip, target_ip) = (be16(a, 6), be32(a, 14), be32(a, 24));
            let mut sender_mac = [0u8; 6];
            if let Some(m) = a.get(8..14) {
                sender_mac.copy_from_slice(m);
            }
            if op == 1 && target_ip == our_ip {
                send_arp(out, head, 2, sender_mac, sender_mac, sender_ip);
            }
            let (hi, lo) = mac_words(sender_mac);
            for slot in sh.slots.iter() {
                if slot.state.load(Acquire) == USED && slot.remote_ip.load(Relaxed) == sender_ip {
                    slot.mac_hi.store(hi, Relaxed);
                    slot.mac_lo.store(lo, Relaxed);
                }
            }
        }
        0x0800 => {
            let ip = f.get(14..).unwrap_or_default();
            if ip.len() < 20 || byte(ip, 9) != 6 {
                return;
            }
            let ihl = usize::from(byte(ip, 0) & 0x0f) * 4;
            let (src, dst) = (be32(ip, 12), be32(ip, 16));
            let tcp = ip.get(ihl..).unwrap_or_default();
            if tcp.len() < 20 || dst != our_ip || byte(tcp, 13) & 0x10 == 0 {
                return;
            }
            // Their port << 16 | ours, seen from our side: ours << 16 | theirs.
            let ports = (u32::from(be16(tcp, 2)) << 16) | u32::from(be16(tcp, 0));
            let ack = be32(tcp, 8);
            for slot in sh.slots.iter() {
                if slot.state.load(Acquire) == USED
                    && slot.remote_ip.load(Relaxed) == src
                    && slot.ports.load(Relaxed) == ports
                {
                    send_tcp(out, head, slot, 0x04, ack);
                    slot.state.store(DONE, Release);
                }
            }
        }
        _ => {}
    }
}
