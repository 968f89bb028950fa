//! Lanes: on net_tap, each waiting thread of a program with several
//! threads gets a queue of the TAP interface of its own, so that the
//! kernel wakes the thread a frame is for, and no other.
//!
//! Without lanes, every frame the kernel sends to the tap lands on the
//! port's queue: one thread sleeps on it for everyone (`wait`'s sleeper),
//! reads the frame and wakes the thread whose socket it readied. Two
//! wake-ups per request where the kernel's own server pays one: a
//! thread-per-connection echo over net_tap ran at 0.6-0.67 of the kernel
//! with twice its CPU per round trip.
//!
//! A multi-queue TAP interface hands each frame to one of its attached
//! queues: by a steering program if it has one, else the queue the flow's
//! last frame from us was written on (it learns from what we send), else
//! one by the flow's hash. So:
//! - at start, before the tap moves into its namespace (where its name no
//!   longer reaches it), the pool opens `ACCEL_LANES` more queues of the
//!   interface and detaches them ([`prepare`]): a detached queue gets no
//!   frames;
//! - a thread that comes to wait while others use the shim too takes a
//!   lane and attaches it ([`take_mine`]); it gives it back when it ends;
//! - a read on a connection *routes* the connection to the reader's lane
//!   ([`route`]): the steering program ([`crate::engine::steer`]) sends
//!   the flow's frames there, where the reader sleeps (`wait` puts the
//!   lane among its fds), and every frame of no routed connection (a SYN,
//!   an ARP reply) to the port's queue. The connection's frames are also
//!   written on the lane ([`crate::engine::device`]), so that without the
//!   program (a kernel that refuses it) the interface learns the flow's
//!   queue from them; frames of flows no lane was written for then come by
//!   hash to any queue, lanes too;
//! - each thread reads its own lane when it wakes or spins, and feeds what
//!   it reads to the stack.
//!
//! Liveness: a lane whose thread is away (computing, or in a call that is
//! not the shim's) is nobody's to read. Once it has been away for
//! `AWAY_NS`, it is *stranded*: whoever sleeps on the device sleeps on it
//! too, and any poll of the stacks reads it (at most every `AWAY_NS`,
//! [`sweep`]). Until then, a sleep on the device lasts at most until the
//! lane is stranded ([`sleep_cap`]), so a frame waits about `AWAY_NS` at
//! most. A lane given back (its thread ended) is read once more and
//! detached by the keeper ([`keep`]): frames that come in between are lost
//! to the queue, and TCP's retransmission brings them again (the kernel
//! purges a detached queue).
//!
//! Frames on a lane pass no DPDK offload: the checksums the stack leaves
//! to the port are filled here before a write, and those it trusts the
//! port to verify are verified here after a read.
//!
//! Several queue pairs (`ACCEL_QUEUES`): the port's queues are the
//! interface's first, and the steering program sends each flow that no
//! lane has to the port's queue of its RSS hash with the symmetric key
//! ([`crate::engine::steer`]), which the stacks are told ([`rss`]):
//! `connect` picks source ports answered on the caller's queue, as on a
//! NIC. A lane's frames go each to the stack of their flow's queue, by the
//! same hash. Without the program (a kernel that refuses it) such a port
//! has no lanes. When a lane is detached, the kernel gives its queue
//! index to the last lane attached, whose connections are unrouted
//! meanwhile (`detach`).
//!
//! Behind a port owner (`ACCEL_PROCS=multi`, or `auto` with huge pages)
//! the owner opens the lanes before it moves the tap, and gives them with
//! its queue pairs (lined up first: `owner`) to a process alone on the
//! port that asks (`procs::attach`, which hands them to [`install`]); when
//! a second process comes, the owner turns the steering program off (it
//! would send the newcomer nothing), and the lanes go on with the
//! interface's own choice of queue (a holder of several queue pairs hands
//! the segments that choice sends to the wrong stack over to the right
//! one).
//!
//! On by default (`ACCEL_LANES`, 64): a program with one thread never
//! takes one, and pays their fds and a few ms of start (up to 20 for 64;
//! once per port behind an owner). README, "Threads and queues", has the
//! figures.
#![allow(unsafe_code)]

use crate::engine::stats::{self, Driver};
use crate::engine::steer::Steering;
use crate::engine::worker::{now, ShimStack, W};
use crate::logging::log;
use crate::sys;
use accel_stack::phy::dpdk::Offloads;
use core::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Mutex, OnceLock};

use accel_stack::phy::dpdk::tap_queues;

// The interface flags (`struct ifreq`'s are a short).
const IFF_TAP: libc::c_short = libc::IFF_TAP as libc::c_short;
const IFF_NO_PI: libc::c_short = libc::IFF_NO_PI as libc::c_short;
const IFF_MULTI_QUEUE: libc::c_short = libc::IFF_MULTI_QUEUE as libc::c_short;
const IFF_VNET_HDR: libc::c_short = libc::IFF_VNET_HDR as libc::c_short;

/// How long a lane's thread may be away before its lane is read by others,
/// ns (see the module docs).
const AWAY_NS: u64 = 1_000_000;

/// The most frames one read of a lane takes in.
const READ_MAX: usize = 64;

/// One lane: a queue of the TAP interface that the shim reads and writes
/// itself.
pub struct Lane {
    fd: i32,
    /// Its thread waits in the shim now, and hears the lane.
    watched: AtomicBool,
    /// When its thread last left a wait (ns of [`now`]); 1: it is being
    /// given back; 0: free.
    away_since: AtomicU64,
    /// A thread reads it (one at a time: a flow's frames keep their order).
    reading: AtomicBool,
    /// A sleep it woke: the next poll reads it ([`sweep`]).
    due: AtomicBool,
}

/// The lanes of the process, and their counters.
struct Pool {
    lanes: Box<[Lane]>,
    free: Mutex<Vec<u16>>,
    /// Lanes being given back, read once more and detached by the keeper
    /// ([`keep`]).
    retiring: Mutex<Vec<u16>>,
    /// `retiring` may hold some.
    retiring_any: AtomicBool,
    /// An attach failed: no more lanes are taken.
    broken: AtomicBool,
    /// The interface's steering program, if the kernel took it
    /// ([`crate::engine::steer`]); else the interface's own choice.
    steer: Mutex<Option<Steering>>,
    offloads: Offloads,
    /// Frames come and go with a `struct tun_pi` before them.
    pi: bool,
    /// With several port queues, how the steering program spreads the
    /// flows of no lane over them (the stack of a lane's frame).
    rss: Option<accel_stack::iface::rss::Steering>,
    /// When stranded lanes were last looked at (ns of [`now`]).
    swept_at: AtomicU64,
    taken: AtomicU32,
    rx: AtomicU64,
    tx: AtomicU64,
    bad: AtomicU64,
}

static POOL: OnceLock<Pool> = OnceLock::new();
/// In the child of a fork: the lanes are the parent's.
static GONE: AtomicBool = AtomicBool::new(false);

fn pool() -> Option<&'static Pool> {
    if GONE.load(Relaxed) {
        return None;
    }
    POOL.get()
}

/// Whether lanes are in use (a pool was opened).
pub fn on() -> bool {
    pool().is_some()
}

/// Opens the pool: `n` queues of the TAP interface of queue descriptor
/// `queue_fd` (the port's queue 0 of `ports`, the interface's first),
/// detached; `offloads` are the port's. Called once, at start, while the
/// interface is still in this process's namespace (a process with a port
/// of its own). Returns how many lanes it opened.
pub fn prepare(queue_fd: i32, n: u16, ports: u16, offloads: Offloads) -> Result<u16, String> {
    let name = tap_queues::interface_of(queue_fd).ok_or("its queue names no TAP interface")?;
    let pi = check(&name)?;
    let fds = open(&name, n)?;
    for &fd in &fds {
        let _ = crate::fdtable::FDS.install(fd, crate::fdtable::State::Internal, 0);
    }
    let keep = fds.clone();
    install(queue_fd, fds, pi, offloads, Steer::Install, ports).inspect_err(|_| {
        for fd in keep {
            sys::close(fd);
        }
    })
}

/// Who sets the lanes' steering program ([`crate::engine::steer`]).
pub enum Steer {
    /// This process, on its interface (a port of its own).
    Install,
    /// The port's owner did: its maps' descriptors (flows, queue indices).
    Given(i32, i32),
    /// Nobody: the interface's own choice of queue.
    Without,
}

/// Whether TAP interface `name` can have lanes (a plain multi-queue TAP);
/// if so, whether its frames carry packet information (`struct tun_pi`,
/// as net_tap makes it). Read from sysfs: in this namespace only.
pub fn check(name: &str) -> Result<bool, String> {
    // The interface's own flags (TUNGETIFF's are the descriptor's view:
    // its 0x1000 there means "no filter", not IFF_NO_PI).
    let flags = device_flags(name)?;
    if flags & IFF_TAP == 0 || flags & IFF_MULTI_QUEUE == 0 || flags & IFF_VNET_HDR != 0 {
        return Err(format!(
            "the TAP interface's flags are {flags:#x}, not a plain multi-queue TAP"
        ));
    }
    Ok(flags & IFF_NO_PI == 0)
}

/// `n` new queues of TAP interface `name`, detached (fewer if the kernel
/// refuses more: said in the log; an error if it refuses the first).
pub fn open(name: &str, n: u16) -> Result<Vec<i32>, String> {
    let mut fds = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        match tap_queues::open_queue(name) {
            Ok(fd) => fds.push(fd),
            Err(e) if fds.is_empty() => return Err(format!("a queue of {name}: errno {e}")),
            Err(e) => {
                log!(info, "{} lanes of {n} (a queue of {name}: errno {e})", fds.len());
                break;
            }
        }
    }
    if fds.is_empty() {
        return Err("none asked for".into());
    }
    Ok(fds)
}

/// Makes the pool of lanes `fds` (queues of the interface of `queue_fd`,
/// the port's queue or this process's, detached; the process's own fds),
/// with packet information if `pi`, steered as `steer` says, beside
/// `ports` port queues. Returns how many lanes there are.
pub fn install(
    queue_fd: i32,
    fds: Vec<i32>,
    pi: bool,
    offloads: Offloads,
    steer: Steer,
    ports: u16,
) -> Result<u16, String> {
    let lanes: Vec<Lane> = fds
        .into_iter()
        .map(|fd| Lane {
            fd,
            watched: AtomicBool::new(false),
            away_since: AtomicU64::new(0),
            reading: AtomicBool::new(false),
            due: AtomicBool::new(false),
        })
        .collect();
    if lanes.is_empty() {
        return Err("none given".into());
    }
    let count = lanes.len() as u16;
    let steer = match steer {
        Steer::Install => {
            match Steering::install(queue_fd, count, &(0..u32::from(ports)).collect::<Vec<_>>()) {
                Ok(s) => Some(s),
                Err(why) if ports > 1 => {
                    return Err(format!("{ports} queue pairs need the steering program: {why}"))
                }
                Err(why) => {
                    log!(
                        info,
                        "lanes without a steering program ({why}): a SYN may wake a lane's thread"
                    );
                    None
                }
            }
        }
        Steer::Given(flows, queues) => Some(Steering::with_maps(flows, queues, count, ports)),
        Steer::Without if ports > 1 => return Err(format!("{ports} queue pairs need the steering program")),
        Steer::Without => {
            log!(
                info,
                "lanes without a steering program (the port's owner set none): a SYN may wake a lane's thread"
            );
            None
        }
    };
    let pool = Pool {
        lanes: lanes.into_boxed_slice(),
        // Taken from the end: lane 0 first.
        free: Mutex::new((0..count).rev().collect()),
        retiring: Mutex::new(Vec::new()),
        retiring_any: AtomicBool::new(false),
        broken: AtomicBool::new(false),
        steer: Mutex::new(steer),
        offloads,
        pi,
        rss: (ports > 1).then(|| accel_stack::iface::rss::Steering {
            key: accel_stack::iface::rss::SYMMETRIC_KEY.to_vec(),
            reta: (0..ports).collect(),
            queue: 0,
        }),
        swept_at: AtomicU64::new(0),
        taken: AtomicU32::new(0),
        rx: AtomicU64::new(0),
        tx: AtomicU64::new(0),
        bad: AtomicU64::new(0),
    };
    POOL.set(pool)
        .map_err(|_| "the lanes are open already".to_owned())?;
    Ok(count)
}

/// How the steering program spreads the flows of no lane over the port's
/// queues, for the stack of queue `q` (`connect` picks ports answered
/// there): with lanes and several port queues only.
pub fn rss(q: u16) -> Option<accel_stack::iface::rss::Steering> {
    let mut s = pool()?.rss.clone()?;
    s.queue = q;
    Some(s)
}

/// The stack whose queue frame `frame` is for: the port's queue of its
/// flow's hash, as the steering program gives it (a lane holds only TCP
/// segments over IPv4, of routed connections); 0 for anything else.
fn stack_of(rss: Option<&accel_stack::iface::rss::Steering>, frame: &[u8]) -> crate::engine::stacks::Q {
    let Some(rss) = rss else { return 0 };
    let at = |i: usize| frame.get(i).copied().map_or(0, usize::from);
    if frame.get(12..14) != Some(&[0x08, 0x00]) || at(23) != 6 {
        return 0;
    }
    let ip = |i: usize| {
        frame
            .get(i..i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(core::net::Ipv4Addr::UNSPECIFIED, core::net::Ipv4Addr::from)
    };
    let port = |i: usize| u16::from_be_bytes([at(i) as u8, at(i + 1) as u8]);
    let l4 = 14 + (at(14) & 0x0f) * 4;
    let remote = SocketAddrV4::new(ip(26), port(l4));
    let local = SocketAddrV4::new(ip(30), port(l4 + 2));
    rss.queue_of(local, remote)
}

/// The TAP interface `name`'s flags, from sysfs.
fn device_flags(name: &str) -> Result<libc::c_short, String> {
    let mut path = b"/sys/class/net/".to_vec();
    path.extend_from_slice(name.as_bytes());
    path.extend_from_slice(b"/tun_flags\0");
    let path = std::ffi::CStr::from_bytes_with_nul(&path).map_err(|_| "a bad interface name".to_owned())?;
    let fd =
        sys::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0).map_err(|e| format!("{path:?}: errno {e}"))?;
    let mut buf = [0u8; 32];
    let n = sys::read(fd, &mut buf);
    sys::close(fd);
    let n = n.map_err(|e| format!("{path:?}: errno {e}"))?;
    parse_flags(buf.get(..n).unwrap_or_default()).ok_or_else(|| format!("{path:?}: not a number"))
}

/// `0x1102\n` as sysfs writes a TAP interface's flags.
fn parse_flags(text: &[u8]) -> Option<libc::c_short> {
    let t = std::str::from_utf8(text).ok()?.trim();
    let hex = t.strip_prefix("0x")?;
    u16::from_str_radix(hex, 16).ok().map(|v| v as libc::c_short)
}

/// `readv(fd, [head, body])`, raw: the bytes read in all.
fn readv(fd: i32, head: &mut [u8], body: &mut [u8]) -> Result<usize, i32> {
    let iov = [
        libc::iovec {
            iov_base: head.as_mut_ptr().cast(),
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: body.as_mut_ptr().cast(),
            iov_len: body.len(),
        },
    ];
    sys::keep_errno(|| {
        // SAFETY: both iovecs describe live, writable buffers.
        let r = unsafe { libc::syscall(libc::SYS_readv, fd, iov.as_ptr(), 2) };
        if r < 0 {
            Err(sys::errno())
        } else {
            Ok(r as usize)
        }
    })
}

/// `writev(fd, [head, body])`, raw.
fn writev(fd: i32, head: &[u8], body: &[u8]) -> Result<usize, i32> {
    let iov = [
        libc::iovec {
            iov_base: head.as_ptr() as *mut libc::c_void,
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    sys::keep_errno(|| {
        // SAFETY: both iovecs describe live buffers, which the kernel only
        // reads.
        let r = unsafe { libc::syscall(libc::SYS_writev, fd, iov.as_ptr(), 2) };
        if r < 0 {
            Err(sys::errno())
        } else {
            Ok(r as usize)
        }
    })
}

/// The calling thread's lane; given back when the thread ends.
struct Mine(std::cell::Cell<u16>);

const NONE: u16 = u16::MAX;

impl Drop for Mine {
    fn drop(&mut self) {
        let i = self.0.replace(NONE);
        let Some(p) = pool() else { return };
        if let Some(lane) = p.lanes.get(usize::from(i)) {
            // Read once more and detached by the keeper ([`keep`]; not
            // here: a thread that ends may have lost the thread-locals a
            // read needs). Stranded at once meanwhile.
            lane.watched.store(false, SeqCst);
            lane.away_since.store(1, SeqCst);
            p.retiring.lock().unwrap_or_else(|e| e.into_inner()).push(i);
            p.retiring_any.store(true, Release);
            p.swept_at.store(0, Relaxed);
            crate::engine::keeper::nudge();
        }
    }
}

thread_local! {
    static MINE: Mine = const { Mine(std::cell::Cell::new(NONE)) };
}

/// The calling thread's lane index, if it has one.
pub fn mine_index() -> Option<u16> {
    pool()?;
    MINE.try_with(|m| m.0.get()).ok().filter(|&i| i != NONE)
}

/// The calling thread's lane, if it has one.
fn mine() -> Option<&'static Lane> {
    let i = mine_index()?;
    pool()?.lanes.get(usize::from(i))
}

/// The calling thread's lane, taken now if it has none, while more than
/// one thread of the program uses the shim (a single-threaded program's
/// thread sleeps on the port's queue itself: a lane would change nothing)
/// and a lane is free.
pub fn take_mine() -> Option<&'static Lane> {
    let p = pool()?;
    if let Some(l) = mine() {
        return Some(l);
    }
    if W.threads.load(Relaxed) < 2
        || p.taken.load(Relaxed) as usize >= p.lanes.len()
        || p.broken.load(Relaxed)
        || crate::engine::keeper::on_keeper()
    {
        return None;
    }
    let i = p.free.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
    let lane = p.lanes.get(usize::from(i))?;
    {
        // The kernel's order and the steering's record of it change
        // together ([`detach`]).
        let mut steer = p.steer.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = tap_queues::set_queue(lane.fd, true) {
            drop(steer);
            // Not tried again: threads go without from now on.
            p.free.lock().unwrap_or_else(|e| e.into_inner()).push(i);
            if !p.broken.swap(true, Relaxed) {
                log!(
                    warn,
                    "lane {i}: attach failed (errno {e}); no more lanes are taken"
                );
            }
            return None;
        }
        if let Some(s) = steer.as_mut() {
            s.attached(i);
        }
    }
    lane.away_since.store(now().nanos().max(2), SeqCst);
    if MINE.try_with(|m| m.0.set(i)).is_err() {
        // The thread is ending: give it back at once.
        detach(p, lane, i);
        lane.away_since.store(0, SeqCst);
        p.free.lock().unwrap_or_else(|e| e.into_inner()).push(i);
        return None;
    }
    p.taken.fetch_add(1, Relaxed);
    Some(lane)
}

impl Lane {
    /// Its fd, to sleep on.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// Its thread begins a wait that hears it.
    pub fn watch(&self) {
        self.watched.store(true, SeqCst);
        self.away_since.store(0, SeqCst);
    }

    /// Its thread's wait ended.
    pub fn unwatch(&self) {
        self.away_since.store(now().nanos().max(2), SeqCst);
        self.watched.store(false, SeqCst);
    }
}

/// Routes connection `h` of stack `s` to the calling thread's lane, if it
/// has one (a read on it: the reader waits for its next bytes; a thread
/// about to block in a read takes a lane first, [`take_mine`]).
pub fn route(s: &mut ShimStack, h: accel_stack::iface::TcpHandle) {
    let Some(i) = mine_index() else { return };
    let tcp = &s.iface.tcp;
    let (Ok(Some(local)), Ok(remote)) = (tcp.local_addr(h), tcp.peer_addr(h)) else {
        return;
    };
    if s.device.route(local, remote, i) {
        with_steering(|st| st.route(local, remote, i));
    }
    if s.device.routes_need_pruning() {
        let tcp = &s.iface.tcp;
        s.device.prune_routes(
            |l, r| tcp.has_conn(l, r),
            |l, r| with_steering(|st| st.unroute(l, r)),
        );
    }
}

/// Runs `f` on the steering program's maps, if there is one.
fn with_steering(f: impl FnOnce(&mut Steering)) {
    if let Some(p) = pool() {
        if let Some(s) = p.steer.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f(s);
        }
    }
}

/// Writes frame `frame` on lane `i` (its checksums filled first). Counted;
/// a lane gone or full drops it, as a full transmit queue would.
pub fn send(i: u16, frame: &mut [u8]) {
    let Some(p) = pool() else { return };
    let Some(lane) = p.lanes.get(usize::from(i)) else {
        return;
    };
    accel_stack::phy::dpdk::fill_tx_in_software(&p.offloads, frame);
    // The packet information: no flags, the frame's EtherType.
    let proto: [u8; 2] = frame
        .get(12..14)
        .and_then(|t| t.try_into().ok())
        .unwrap_or([0, 0]);
    let pi = [0, 0, proto[0], proto[1]];
    let head: &[u8] = if p.pi { &pi } else { &[] };
    if writev(lane.fd, head, frame).is_ok() {
        p.tx.fetch_add(1, Relaxed);
    }
}

/// Reads up to `max` frames of lane `lane` into the stack, unless
/// another thread reads it now. The frames are read before the stack's
/// lock is taken (a `readv` is a system call: others' work on the stack
/// goes on meanwhile), up to `BATCH` at a time, and taken in under one
/// hold of it, which also sends what they made the stack send once: an
/// event loop's wake brings several (memcached -t 4: 3.5 on average),
/// and each used to take the lock and run the stack's output on its own.
/// What the frames signalled is handed out by the caller (a wait looks
/// next; a poll hands out after its sweep). Returns the frames taken in.
fn read(lane: &Lane, max: usize) -> usize {
    let Some(p) = pool() else { return 0 };
    if lane.reading.swap(true, Acquire) {
        return 0;
    }
    thread_local! {
        static BUF: std::cell::RefCell<Batch> = const { std::cell::RefCell::new(Batch::new()) };
    }
    let mut taken = 0;
    let _ = BUF.try_with(|b| {
        let Ok(mut batch) = b.try_borrow_mut() else { return };
        let Batch {
            buf,
            frames,
            lens,
            stacks,
        } = &mut *batch;
        if buf.is_empty() {
            // The largest frame a TAP queue hands out (64 KiB MTU).
            buf.resize(65_550, 0);
        }
        let mut pi = [0u8; 4];
        let mut more = true;
        while more && taken < max {
            frames.clear();
            lens.clear();
            stacks.clear();
            while lens.len() < BATCH && taken + lens.len() < max && frames.len() < BATCH_BYTES {
                let head: &mut [u8] = if p.pi { &mut pi } else { &mut [] };
                let n = match readv(lane.fd, head, buf) {
                    Ok(n) if n >= head.len() => n - head.len(),
                    Ok(_) => continue,
                    Err(_) => {
                        more = false;
                        break;
                    }
                };
                let frame = buf.get(..n).unwrap_or_default();
                if !accel_stack::phy::dpdk::rx_ok_in_software(&p.offloads, frame) {
                    p.bad.fetch_add(1, Relaxed);
                    continue;
                }
                stacks.push(stack_of(p.rss.as_ref(), frame));
                frames.extend_from_slice(frame);
                lens.push(n);
            }
            if lens.is_empty() {
                break;
            }
            // Each run of frames for one stack under one hold of its lock
            // (a flow's frames all go to one stack, in order).
            let (mut i, mut at) = (0, 0);
            while let Some(&q) = stacks.get(i) {
                let run = stacks
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|&&s| s == q)
                    .count();
                let Some(mut s) = crate::engine::stacks::lock(q) else {
                    break;
                };
                let end = i + run;
                s.receive_frames(now(), run, buf, |into| {
                    if i >= end {
                        return None;
                    }
                    let n = *lens.get(i)?;
                    let frame = frames.get(at..at + n)?;
                    into.get_mut(..n)?.copy_from_slice(frame);
                    i += 1;
                    at += n;
                    Some(n)
                });
                // Segments of no connection of this stack: to the stack
                // that has theirs now, not at this one's next poll.
                let strays = s.iface.take_handover();
                drop(s);
                if !strays.is_empty() {
                    crate::engine::stacks::hand_over(q, &strays, now());
                }
                if i < end {
                    break;
                }
            }
            taken += lens.len();
        }
    });
    lane.reading.store(false, Release);
    if taken > 0 {
        p.rx.fetch_add(taken as u64, Relaxed);
        stats::as_driver(Driver::Lane, || stats::drove(taken));
        if !crate::engine::keeper::on_keeper() {
            W.last_drive.store(now().nanos(), Relaxed);
        }
    }
    taken
}

/// The frames a lane read holds before it takes the stack's lock: at most
/// this many, so the first waits for the stack no longer than a few
/// `readv`s...
const BATCH: usize = 16;
/// ...and about this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// A lane reader's buffers (one per thread): the frame being read, and the
/// frames read so far (their bytes one after another, their lengths and
/// their stacks).
struct Batch {
    buf: Vec<u8>,
    frames: Vec<u8>,
    lens: Vec<usize>,
    stacks: Vec<crate::engine::stacks::Q>,
}

impl Batch {
    const fn new() -> Batch {
        Batch {
            buf: Vec::new(),
            frames: Vec::new(),
            lens: Vec::new(),
            stacks: Vec::new(),
        }
    }
}

/// Reads the calling thread's lane (it woke the thread's sleep, or the
/// thread spins): one frame for a thread that waits for one connection's
/// bytes (with more, its next sleep ends at once, and no `readv` is spent
/// finding the lane empty), all it holds for one that waits on a set (an
/// event loop's connections: memcached -t 1 over net_tap served 40 %
/// fewer requests reading one frame per wake).
pub fn read_mine(one: bool) -> usize {
    mine().map_or(0, |l| read(l, if one { 1 } else { READ_MAX }))
}

/// Whether lane `l` has been away long enough to be read by others, at
/// `t`.
fn stranded(l: &Lane, t: u64) -> bool {
    let since = l.away_since.load(SeqCst);
    since == 1 || (since != 0 && !l.watched.load(SeqCst) && t.saturating_sub(since) >= AWAY_NS)
}

/// Adds the stranded lanes' fds to a sleep on the device (`out`).
pub fn arm(out: &mut Vec<libc::pollfd>) {
    let Some(p) = pool() else { return };
    if p.taken.load(Relaxed) == 0 {
        return;
    }
    let t = now().nanos();
    for l in p.lanes.iter().filter(|l| stranded(l, t)) {
        out.push(libc::pollfd {
            fd: l.fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }
}

/// How long a sleep on the device may last, if a lane's thread is away
/// but its lane not yet stranded: until it is (then the next sleep hears
/// it, and the next poll reads it).
pub fn sleep_cap() -> Option<std::time::Duration> {
    let p = pool()?;
    if p.taken.load(Relaxed) == 0 {
        return None;
    }
    let t = now().nanos();
    p.lanes
        .iter()
        .filter_map(|l| {
            let since = l.away_since.load(Relaxed);
            (since > 1 && !l.watched.load(Relaxed) && !stranded(l, t))
                .then(|| AWAY_NS.saturating_sub(t.saturating_sub(since)))
        })
        .min()
        .map(|ns| std::time::Duration::from_nanos(ns + 50_000))
}

/// After a sleep on `fds`: the lanes among them that woke it are read at
/// the next poll.
pub fn slept(fds: &[libc::pollfd]) {
    let Some(p) = pool() else { return };
    for pfd in fds.iter().filter(|f| f.revents != 0) {
        if let Some(l) = p.lanes.iter().find(|l| l.fd == pfd.fd) {
            l.due.store(true, Relaxed);
            p.swept_at.store(0, Relaxed);
        }
    }
}

/// Reads the stranded lanes that hold frames, and gives back the lanes of
/// threads that ended: at most every `AWAY_NS`, or at once after a sleep
/// that one woke (see the module docs). Called after a poll of the stacks.
pub fn sweep(t: u64) {
    let Some(p) = pool() else { return };
    if p.taken.load(Relaxed) == 0 {
        return;
    }
    let last = p.swept_at.load(Relaxed);
    if last != 0 && t.saturating_sub(last) < AWAY_NS {
        return;
    }
    if p.swept_at
        .compare_exchange(last, t.max(1), AcqRel, Relaxed)
        .is_err()
    {
        return;
    }
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut which: Vec<&Lane> = Vec::new();
    for l in p.lanes.iter() {
        if l.due.swap(false, Relaxed) || stranded(l, t) {
            fds.push(libc::pollfd {
                fd: l.fd,
                events: libc::POLLIN,
                revents: 0,
            });
            which.push(l);
        }
    }
    if !fds.is_empty() {
        // SAFETY: no signal mask pointer.
        let ready = unsafe { sys::ppoll(&mut fds, Some(std::time::Duration::ZERO), std::ptr::null()) };
        if ready.is_ok_and(|n| n > 0) {
            for (l, f) in which.iter().zip(&fds) {
                if f.revents != 0 {
                    read(l, READ_MAX);
                }
            }
        }
    }
    // The keeper gives lanes back ([`keep`]): a detach waits for the
    // kernel's RCU grace period (about 0.2 ms here), which no request
    // should pay.
    if !crate::engine::keeper::running() {
        retire(p);
    }
}

/// The keeper's part: gives back the lanes of threads that ended.
pub fn keep() {
    if let Some(p) = pool() {
        if p.retiring_any.load(Acquire) {
            retire(p);
        }
    }
}

/// Gives back the lanes of threads that ended: read once more, detached,
/// unrouted, free.
fn retire(p: &Pool) {
    let gone: Vec<u16> = {
        let mut r = p.retiring.lock().unwrap_or_else(|e| e.into_inner());
        p.retiring_any.store(false, Release);
        std::mem::take(&mut *r)
    };
    for i in gone {
        let Some(l) = p.lanes.get(usize::from(i)) else {
            continue;
        };
        // Unrouted first: what comes from now on goes to the port's queues
        // (a route to a detached lane would send it to whatever queue has
        // the index the lane had).
        for q in 0..crate::engine::stacks::count() as crate::engine::stacks::Q {
            if let Some(mut s) = crate::engine::stacks::lock(q) {
                s.device
                    .unroute_lane(i, |l, r| with_steering(|st| st.unroute(l, r)));
            }
        }
        read(l, READ_MAX);
        detach(p, l, i);
        l.due.store(false, Relaxed);
        l.away_since.store(0, SeqCst);
        p.taken.fetch_sub(1, Relaxed);
        p.free.lock().unwrap_or_else(|e| e.into_inner()).push(i);
    }
}

/// Detaches lane `l` (index `i`), unrouted and read. The kernel purges
/// what came to it since (TCP sends it again), and moves the last lane
/// attached into its queue index: until the steering program's map says
/// so, that lane's frames would carry an index the kernel now has one
/// queue too few for, which it takes modulo their number (queue 0, a port
/// queue whose stack may not have their connections). So that lane's
/// connections are unrouted around the detach: meanwhile their frames go
/// to their port queues. The steering's lock is held across the detach
/// and the record's update, so that its record of the kernel's order
/// follows the kernel's (an attach holds it too, [`take_mine`]).
fn detach(p: &Pool, l: &Lane, i: u16) {
    let successor = p
        .steer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|st| st.successor(i));
    // The stacks' locks are taken before the steering's, as a read's
    // routing does ([`route`]): not under it.
    let moving: Vec<(SocketAddrV4, SocketAddrV4)> = successor.map_or_else(Vec::new, |y| {
        (0..crate::engine::stacks::count() as crate::engine::stacks::Q)
            .filter_map(crate::engine::stacks::lock)
            .flat_map(|s| s.device.routes_to(y))
            .collect()
    });
    let mut steer = p.steer.lock().unwrap_or_else(|e| e.into_inner());
    let unrouted = match (steer.as_mut(), successor) {
        (Some(st), Some(_)) if st.successor(i) == successor => {
            for &(local, remote) in &moving {
                st.unroute(local, remote);
            }
            true
        }
        _ => false,
    };
    let _ = tap_queues::set_queue(l.fd, false);
    if let Some(st) = steer.as_mut() {
        st.detached(i);
        if let (true, Some(y)) = (unrouted, successor) {
            for &(local, remote) in &moving {
                st.route(local, remote, y);
            }
        }
    }
}

/// The counters: lanes in use, frames read, written, and dropped for a
/// bad checksum.
pub fn counters() -> (u32, u64, u64, u64) {
    pool().map_or((0, 0, 0, 0), |p| {
        (
            p.taken.load(Relaxed),
            p.rx.load(Relaxed),
            p.tx.load(Relaxed),
            p.bad.load(Relaxed),
        )
    })
}

/// In the child of `fork`: the lanes are the parent's; the child's copies
/// of their fds are closed (the queues stay the parent's).
pub fn after_fork() {
    if let Some(p) = POOL.get() {
        if !GONE.swap(true, SeqCst) {
            for l in p.lanes.iter() {
                sys::close(l.fd);
                let _ = crate::fdtable::FDS.clear(l.fd);
            }
            if let Ok(s) = p.steer.try_lock() {
                if let Some(s) = s.as_ref() {
                    s.forget();
                }
            }
        }
    }
}

/// A TCP segment over IPv4 from `src` to `dst` with an IPv4 header of
/// `ihl` words (headers only), as a lane hands it out (from the Ethernet
/// header): for the tests here and of the steering program.
#[cfg(test)]
pub(crate) fn test_segment(src: SocketAddrV4, dst: SocketAddrV4, ether_type: u16, ihl: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ether_type.to_be_bytes());
    let mut ip = vec![0x40 | ihl, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    ip.resize(usize::from(ihl) * 4, 1);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.resize(f.len() + 16, 0);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(away_since: u64, watched: bool) -> Lane {
        Lane {
            fd: -1,
            watched: AtomicBool::new(watched),
            away_since: AtomicU64::new(away_since),
            reading: AtomicBool::new(false),
            due: AtomicBool::new(false),
        }
    }

    #[test]
    fn a_lanes_frame_goes_to_the_stack_of_its_flows_hash() {
        let ours = |port: u16| SocketAddrV4::new([198, 18, 0, 2].into(), port);
        for n in [2u16, 3, 4] {
            let rss = accel_stack::iface::rss::Steering {
                key: accel_stack::iface::rss::SYMMETRIC_KEY.to_vec(),
                reta: (0..n).collect(),
                queue: 0,
            };
            let mut seen = vec![0; usize::from(n)];
            for port in 40_000..40_400u16 {
                let peer = SocketAddrV4::new([198, 18, 0, 1].into(), port);
                let want = rss.queue_of(ours(11211), peer);
                for ihl in [5, 6] {
                    let f = test_segment(peer, ours(11211), 0x0800, ihl);
                    assert_eq!(stack_of(Some(&rss), &f), want, "{peer}, {n} stacks");
                }
                seen[usize::from(want)] += 1;
                // Not IPv4, not TCP, cut short, or one stack: stack 0.
                assert_eq!(
                    stack_of(Some(&rss), &test_segment(peer, ours(11211), 0x86dd, 5)),
                    0
                );
                let mut udp = test_segment(peer, ours(11211), 0x0800, 5);
                udp[23] = 17;
                assert_eq!(stack_of(Some(&rss), &udp), 0);
                let whole = test_segment(peer, ours(11211), 0x0800, 5);
                assert!(
                    stack_of(Some(&rss), whole.get(..30).unwrap_or_default()) < n,
                    "cut short"
                );
                assert_eq!(stack_of(None, &whole), 0);
            }
            assert!(seen.iter().all(|&k| k > 400 / usize::from(n) / 2), "{seen:?}");
        }
    }

    #[test]
    fn a_lane_is_read_by_others_only_once_its_thread_stays_away() {
        let t = 9_000_000_000;
        // Free, or watched by its waiting thread: never.
        assert!(!stranded(&lane(0, false), t));
        assert!(!stranded(&lane(0, true), t));
        // Away for less than AWAY_NS: its thread is likely back soon.
        assert!(!stranded(&lane(t - AWAY_NS / 2, false), t));
        // Away for AWAY_NS or longer, or being given back: yes.
        assert!(stranded(&lane(t - AWAY_NS, false), t));
        assert!(stranded(&lane(1, false), t));
        // Back in a wait since (the stamp is stale): no.
        assert!(!stranded(&lane(t - 2 * AWAY_NS, true), t));
    }

    #[test]
    fn sysfs_flags_are_read_as_written() {
        assert_eq!(parse_flags(b"0x1102\n"), Some(0x1102));
        assert_eq!(parse_flags(b"0x902"), Some(0x902));
        assert_eq!(parse_flags(b"1102"), None);
        assert_eq!(parse_flags(b""), None);
        assert_eq!(parse_flags(b"0xzz"), None);
    }
}
