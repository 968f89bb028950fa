//! The process's worker: one stack on one DPDK queue pair, the shim's
//! socket and epoll objects, and the driving of the stack whenever a
//! thread is in the shim.
//!
//! Everything lives in one [`Core`] behind one lock ([`lock`]); a thread
//! holds it only for a bounded piece of work (one poll of the stack, one
//! socket operation), never while it sleeps. Each shim operation polls the
//! stack once before it looks at a socket, and once after it queued data,
//! so frames move without a thread of their own. Every poll hands the
//! sockets the stack signalled to the threads waiting for them
//! (`epoll::distribute`); their wakers run when the lock is dropped
//! ([`CoreGuard`]), so a woken thread does not wake into a held lock.
//!
//! Start is lazy ([`ensure_started`]): DPDK starts at the first socket call
//! that needs the stack, never at load. If it cannot start, the program
//! goes on with kernel sockets after one clear line (`ACCEL_FALLBACK=kernel`)
//! or exits with that line (`fail`).
//!
//! How threads wait is [`crate::wait`]'s; the keeper thread that drives the
//! stack while the program computes (and sleeps on the device when the
//! waiting threads leave it) is [`crate::keeper`]'s.

use crate::device::{self, ShimDevice};
use crate::epoll::EpollSet;
use crate::logging::{log, Level};
use crate::ready::Watch;
use crate::sock::{Slab, Sock};
use crate::startup;
use crate::{config::Fallback, keeper, netns, sys};
use accel_stack::iface::{IfaceConfig, PollResult, Stack};
use accel_stack::phy::dpdk::{set_log_echo, DpdkConfig, DpdkDevice, Eal};
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::EthernetAddress;
use accel_stack::Instant;
use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

/// The stack's type in the shim.
pub type ShimStack = Stack<ShimDevice>;

/// Everything the worker's lock guards: the tables above the stacks (each
/// stack has a lock of its own: [`crate::stacks`]).
pub struct Core {
    /// The shim's sockets, by fd-table handle.
    pub socks: Slab<Sock>,
    /// The shim's epoll interest sets, by fd-table handle.
    pub epolls: Slab<EpollSet>,
    /// Which sets watch which sockets, and the sockets' wakers.
    pub watch: Watch,
    /// The next port tried for a `bind` to port 0 before the stack runs.
    pub next_port: u16,
    /// Threads to wake once the lock is dropped (see [`CoreGuard`]).
    pub to_wake: Vec<Waker>,
    eal: Option<Eal>,
}

/// Where the worker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Not started (yet).
    Off = 0,
    /// Running.
    Up = 1,
    /// Could not start: every socket stays in the kernel.
    Failed = 2,
    /// In a child of `fork` of a process whose stack ran: the stack is the
    /// parent's, unusable here.
    Forked = 3,
}

/// The worker's shared state (the engine's modules read it).
pub(crate) struct Worker {
    core: Mutex<Core>,
    status: AtomicU8,
    /// Threads inside [`crate::wait::block`] (waiting on the shim); the
    /// keeper drives the stack while it is zero.
    pub(crate) waiters: AtomicU32,
    /// A thread is spinning on the device (at most one).
    pub(crate) spinning: AtomicBool,
    /// A thread sleeps on the device's Rx interrupt (or backs off polling
    /// it) for everyone (at most one; see `wait`).
    pub(crate) sleeping: AtomicBool,
    /// When the stack was last polled (ns of the monotonic clock).
    pub(crate) last_drive: AtomicU64,
    /// How many times a wait ended leaving the device to nobody (no
    /// thread waits any more, or those that wait have no spinner and no
    /// sleeper): the keeper reads from it whether the program came and
    /// went while it was parked.
    pub(crate) undriven: AtomicU64,
    /// The keeper is parked for longer than its period: the thread that
    /// leaves the last wait must nudge it (see `keeper`).
    pub(crate) keeper_away: AtomicBool,
}

pub(crate) static W: Worker = Worker {
    core: Mutex::new(Core {
        socks: Slab::new(),
        epolls: Slab::new(),
        watch: Watch::new(),
        next_port: 40000,
        to_wake: Vec::new(),
        eal: None,
    }),
    status: AtomicU8::new(Status::Off as u8),
    waiters: AtomicU32::new(0),
    spinning: AtomicBool::new(false),
    sleeping: AtomicBool::new(false),
    last_drive: AtomicU64::new(0),
    undriven: AtomicU64::new(0),
    keeper_away: AtomicBool::new(true),
};

/// The worker's state, locked. Threads that the holder's work woke are
/// woken when the guard is dropped, after the lock.
pub fn lock() -> CoreGuard {
    // A panic is an abort here: the lock is never poisoned.
    CoreGuard::new(W.core.lock().unwrap_or_else(|e| e.into_inner()))
}

/// As [`lock`], if nobody holds it.
pub fn try_lock() -> Option<CoreGuard> {
    W.core.try_lock().ok().map(CoreGuard::new)
}

/// The locked [`Core`]; dropping it unlocks, then wakes the threads in
/// [`Core::to_wake`] (mio's and tokio's habit: a thread woken while the
/// lock is held would only wait for it).
///
/// The lock is std's futex mutex: under contention it spins briefly, then
/// sleeps in the kernel. (parking_lot's yields the CPU a few times first:
/// with ten threads on two cores, `sched_yield` took 9 % of a
/// thread-per-connection server's time and doubled its context switches.)
pub struct CoreGuard {
    guard: ManuallyDrop<MutexGuard<'static, Core>>,
}

thread_local! {
    /// Each thread's buffer for the wakers it wakes after unlocking (traded
    /// with [`Core::to_wake`], so no wake-up allocates once both have grown).
    static SPARE: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
    /// The lock, held by this thread across `fork` ([`before_fork`]).
    static FORK_HOLD: RefCell<Option<MutexGuard<'static, Core>>> = const { RefCell::new(None) };
}

impl CoreGuard {
    fn new(guard: MutexGuard<'static, Core>) -> CoreGuard {
        let _ = HELD.try_with(|h| h.set(h.get() + 1));
        CoreGuard {
            guard: ManuallyDrop::new(guard),
        }
    }
}

thread_local! {
    /// How many [`CoreGuard`]s this thread holds (0 or 1; a stack guard
    /// dropped meanwhile leaves its frames to this one's drop).
    static HELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this thread holds the worker's lock.
pub fn held() -> bool {
    HELD.try_with(|h| h.get() > 0).unwrap_or(false)
}

/// At the program's normal exit (`exit`, a return from `main`): every
/// socket closes as the kernel closes those of a dying process: a
/// connection with data the program never read is reset, every other
/// sends what it queued, then its FIN; listeners and UDP sockets go. The
/// kernel goes on sending for the dead process; this process cannot, so it
/// polls the stacks until nothing is owed any more, for at most `linger`.
/// Returns how many connections still owed data when it gave up.
pub fn close_all_at_exit(linger: std::time::Duration) -> usize {
    if status() != Status::Up {
        return 0;
    }
    let t0 = now();
    // Another thread of the program may still hold the tables: a moment.
    let core = loop {
        if let Some(c) = try_lock() {
            break Some(c);
        }
        if now().saturating_since(t0) > std::time::Duration::from_millis(200) {
            break None;
        }
        std::thread::yield_now();
    };
    let Some(core) = core else { return 0 };
    let kinds: Vec<crate::sock::Kind> = core.socks.iter().map(|(_, s)| s.kind.clone()).collect();
    drop(core);
    let t = now();
    for kind in kinds {
        use crate::sock::Kind;
        match kind {
            Kind::Tcp(q, h) => {
                if let Some(mut s) = crate::stacks::lock(q) {
                    let unread = s.iface.tcp.socket(h).is_some_and(|c| c.recv_queue() > 0);
                    if unread {
                        let _ = s.iface.tcp.with_conn(h, |c| {
                            c.abort();
                            Ok(())
                        });
                    }
                    let _ = s.iface.tcp.close(h, t);
                }
            }
            Kind::Listener { tcp: Some(hs), .. } => {
                for (q, h) in hs.iter().enumerate() {
                    if let Some(mut s) = crate::stacks::lock(q as crate::stacks::Q) {
                        let _ = s.iface.tcp.close(*h, t);
                    }
                }
            }
            Kind::Udp(hs) => {
                for (q, h) in hs.iter().enumerate() {
                    if let Some(mut s) = crate::stacks::lock(q as crate::stacks::Q) {
                        let _ = s.iface.udp_close(*h);
                    }
                }
            }
            _ => {}
        }
    }
    loop {
        crate::stacks::poll_all();
        let owing: usize = (0..crate::stacks::count() as crate::stacks::Q)
            .filter_map(|q| Some(crate::stacks::lock(q)?.iface.tcp.owing()))
            .sum();
        if owing == 0 {
            // Every connection closed properly: the reaper has nothing to
            // reset.
            crate::reaper::quiet();
            return 0;
        }
        if now().saturating_since(t0) >= linger {
            // The reaper resets what is still open.
            return owing;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}

/// The `fork` prepare handler: the forking thread holds the lock across
/// the fork, so the child's copy of the core is consistent and unlocked
/// (no other thread of the parent's survives in the child to hold it).
pub extern "C" fn before_fork() {
    if held() {
        // A signal handler forks while this very thread is inside the
        // shim with the lock (its own wait holds signals off: this is some
        // other call). Waiting for the lock would wait for ever; the child
        // gets the tables as they are, and no channel to the proxy (its
        // connections are inert).
        log!(
            warn,
            "fork from a signal handler inside a socket call: the child's connections are inert"
        );
        return;
    }
    let mut g = W.core.lock().unwrap_or_else(|e| e.into_inner());
    // Connections a child will hold: its channel to the proxy.
    crate::proxy::before_fork(&mut g);
    let _ = FORK_HOLD.try_with(|h| *h.borrow_mut() = Some(g));
}

/// The `fork` parent handler: releases what [`before_fork`] took.
pub extern "C" fn after_fork_in_parent() {
    let _ = FORK_HOLD.try_with(|h| h.borrow_mut().take());
    crate::proxy::after_fork_in_parent();
}

impl std::ops::Deref for CoreGuard {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.guard
    }
}

impl std::ops::DerefMut for CoreGuard {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.guard
    }
}

impl Drop for CoreGuard {
    fn drop(&mut self) {
        if crate::ready::pending() {
            // A stack polled under this lock signalled sockets.
            crate::epoll::distribute(&mut self.guard);
        }
        let mut woken = Vec::new();
        if !self.guard.to_wake.is_empty() {
            let spare = SPARE
                .try_with(|s| std::mem::take(&mut *s.borrow_mut()))
                .unwrap_or_default();
            woken = std::mem::replace(&mut self.guard.to_wake, spare);
        }
        // SAFETY: the guard is dropped once, here, and not used after.
        drop(unsafe { ManuallyDrop::take(&mut self.guard) });
        let _ = HELD.try_with(|h| h.set(h.get().saturating_sub(1)));
        device::flush_all();
        if woken.is_empty() {
            return;
        }
        for w in woken.drain(..) {
            w.wake();
        }
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = woken;
            }
        });
    }
}

/// Where the worker is.
pub fn status() -> Status {
    match W.status.load(Acquire) {
        1 => Status::Up,
        2 => Status::Failed,
        3 => Status::Forked,
        _ => Status::Off,
    }
}

/// The monotonic clock, as the stack's time.
pub fn now() -> Instant {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Instant::from_nanos(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

impl Core {
    /// Polls every stack once, then hands the sockets they signalled to
    /// the sets and threads waiting for them. (Device I/O under the
    /// worker's lock: the waits and the data calls poll without it, with
    /// [`crate::stacks::poll`].)
    pub fn drive(&mut self) -> PollResult {
        let r = crate::stacks::poll_all();
        crate::epoll::distribute(self);
        r
    }
}

/// Starts the stack if it is not running; `true` if it runs now. Called
/// with the lock held. A failure is logged once and, with
/// `ACCEL_FALLBACK=fail`, ends the process.
pub fn ensure_started(core: &mut Core) -> bool {
    match status() {
        Status::Up => return true,
        Status::Failed | Status::Forked => return false,
        Status::Off => {}
    }
    let t0 = now();
    match start(core) {
        Ok(what) => {
            W.status.store(Status::Up as u8, Release);
            let ms = now().saturating_since(t0).as_millis();
            log!(info, "stack up in {ms} ms: {what}");
            if crate::procs::attached() {
                crate::socket::activate_all_deferred(core);
            }
            let keeper = keeper::spawn();
            // A shared port's queues signal nobody (the owner turned it
            // off): pointing them at this process would kill it with a
            // signal it has no handler for.
            let signalled = !crate::procs::attached();
            for cell in crate::stacks::cells()
                .iter()
                .filter(|c| c.rx_fd >= 0 && signalled)
            {
                let Some(tid) = keeper else { break };
                // net_tap's Rx trigger (a signal per frame, F_SETSIG) is
                // refused (`hooks::sigaction`): should a DPDK that asks
                // otherwise turn it on anyway, it goes to the keeper, so
                // that it never interrupts the program.
                if let Err(e) = sys::set_owner_thread(cell.rx_fd, tid) {
                    log!(warn, "cannot send the port's SIGIO to the keeper thread (errno {e}): it may interrupt the program's calls");
                }
            }
            true
        }
        Err(why) => {
            W.status.store(Status::Failed as u8, Release);
            if startup::config().fallback == Fallback::Fail {
                log!(
                    error,
                    "cannot start the stack: {why}; exiting (ACCEL_FALLBACK=fail)"
                );
                // SAFETY: ending the process is always allowed.
                unsafe { libc::_exit(1) };
            }
            log!(
                error,
                "cannot start the stack: {why}; every socket stays in the kernel (ACCEL_FALLBACK=kernel)"
            );
            false
        }
    }
}

/// The EAL arguments and the port name from `ACCEL_DPDK_ARGS`.
pub fn eal_args(line: &str) -> (Vec<String>, String) {
    let mut args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    if args.is_empty() {
        args = Eal::default_args(&["net_tap0"]);
    }
    // One lcore unless told otherwise: the shim drives the port from the
    // program's threads, and DPDK would otherwise start an idle worker
    // thread on every other core.
    let cores = args
        .iter()
        .any(|a| a.starts_with("-l") || a.starts_with("-c") || a.starts_with("--lcores"));
    if !cores {
        args.push("-l".to_owned());
        args.push(first_cpu().to_string());
    }
    let mut vdev = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--vdev=") {
            vdev = Some(v.to_owned());
            break;
        }
        if a == "--vdev" {
            vdev = it.next().cloned();
            break;
        }
    }
    let port = vdev
        .as_deref()
        .map(|v| v.split(',').next().unwrap_or(v).to_owned())
        .unwrap_or_else(|| "0".to_owned());
    (args, vdev.unwrap_or_default() + "\0" + &port)
}

/// Whether this process shares its port with others (`ACCEL_PROCS`):
/// `multi`; `auto` where huge pages are ready; never for a port named by
/// number (a PCI device: no owner creates it).
fn multi_process(cfg: &crate::config::Config, vdev: &str) -> Result<bool, String> {
    use crate::config::Procs;
    // Shared ports are net_tap's for now: DPDK 22.11's net_memif in a
    // secondary process reads and writes the primary's interrupt
    // descriptor *numbers* in its own descriptor table (an unrelated fd
    // of the program there), so it is not offered.
    let tap = netns::tap_iface(vdev).is_some() || vdev.starts_with("net_tap");
    match cfg.procs {
        Procs::Single => Ok(false),
        Procs::Multi if !tap => Err(format!(
            "ACCEL_PROCS=multi shares net_tap ports only (not {:?}); run one process per port \
             (ACCEL_PROCS=single)",
            vdev.split(',').next().unwrap_or(vdev)
        )),
        Procs::Auto if !tap => Ok(false),
        Procs::Multi => {
            accel_stack::phy::dpdk::hugepages_ready(crate::procs::OWNER_MEM_MB)?;
            Ok(true)
        }
        Procs::Auto => {
            let ready = accel_stack::phy::dpdk::hugepages_ready(crate::procs::OWNER_MEM_MB);
            if let Err(why) = &ready {
                log!(info, "ACCEL_PROCS=auto: one process on the port ({why})");
            }
            Ok(ready.is_ok())
        }
    }
}

fn start(core: &mut Core) -> Result<String, String> {
    let cfg = startup::config();
    let ip = cfg.ip.ok_or("ACCEL_IP is not set")?;
    let line = String::from_utf8_lossy(cfg.dpdk_args.as_bytes()).into_owned();
    let (args, vdev_port) = eal_args(&line);
    let (vdev, port) = vdev_port.split_once('\0').unwrap_or(("", "0"));
    // DPDK's own lines only at ACCEL_LOG=info (its warnings) or debug (all):
    // a failure is reported in one line of ours, with DPDK's reason in it.
    set_log_echo(match cfg.log_level {
        Level::Debug => u32::MAX,
        Level::Info => 5,
        _ => 0,
    });
    // The queue pairs, with their numbers on the port, and what the port
    // is shared with: (port queue pairs, the queues' descriptors from the
    // owner).
    let mut devs: Vec<(u16, DpdkDevice)>;
    let mut moved = String::new();
    let eal;
    let mut secret = None;
    let shared: Option<(u16, Vec<i32>)>;
    let attached = if multi_process(cfg, vdev)? {
        match crate::procs::attach(vdev, cfg.queues.max(1), first_cpu()) {
            Ok(a) => Some(a),
            Err(why) if cfg.procs == crate::config::Procs::Auto && !crate::procs::attached() => {
                log!(info, "ACCEL_PROCS=auto: one process on the port ({why})");
                None
            }
            Err(why) => return Err(why),
        }
    } else {
        None
    };
    if let Some(a) = attached {
        moved = format!(
            "; port shared (ACCEL_PROCS): queue pairs {:?} of {}, prefix {}",
            a.grant.take, a.grant.queues, a.grant.prefix
        );
        let qs: Vec<u16> = a.devs.iter().map(|(q, _)| *q).collect();
        crate::procs::open_forwarding(a.key, a.grant.queues, &qs)?;
        secret = Some(a.grant.secret);
        shared = Some((a.grant.queues, a.fds));
        devs = a.devs;
        eal = a.eal;
    } else {
        shared = None;
        eal = Eal::init(&args).map_err(|e| format!("DPDK did not start ({}): {e}", args.join(" ")))?;
        // One queue pair unless asked for more (see `stacks`: on net_tap
        // more queues cost more, and on two cores one stack is as fast).
        let want = cfg.queues.max(1);
        let dpdk = DpdkConfig {
            rx_queues: want,
            tx_queues: want,
            ..DpdkConfig::default()
        };
        let dev = DpdkDevice::open(&eal, port, dpdk).map_err(|e| format!("port {port}: {e}"))?;
        let ns = String::from_utf8_lossy(cfg.tap_netns.as_bytes()).into_owned();
        if !ns.is_empty() {
            let iface = netns::tap_iface(vdev).ok_or_else(|| {
                format!("ACCEL_TAP_NETNS={ns} needs a net_tap vdev with iface=NAME (have {vdev:?})")
            })?;
            let peer = cfg.tap_peer.unwrap_or(crate::config::Cidr {
                addr: first_host(ip.addr, ip.prefix_len),
                prefix_len: ip.prefix_len,
            });
            netns::move_tap(iface, &ns, peer)?;
            moved = format!("; {iface} moved into namespace {ns} as {peer}");
        }
        let n = dev.queue_counts().0.min(dev.queue_counts().1).max(1);
        devs = Vec::with_capacity(usize::from(n));
        for q in 1..n {
            devs.push((q, dev.queue_pair(q).map_err(|e| format!("port {port}: {e}"))?));
        }
        devs.insert(0, (0, dev));
    }
    let Some((_, first)) = devs.first() else {
        return Err(format!("port {port}: no queue pair"));
    };
    let mac = cfg.mac.map(EthernetAddress).unwrap_or_else(|| first.mac());
    let name = first.name().to_owned();
    let mut ic = IfaceConfig::new(mac, ip.addr, ip.prefix_len);
    ic.gateway = cfg.gateway;
    ic.secret = secret.unwrap_or_else(sys::random16);
    let n = devs.len() as u16;
    // Ephemeral ports are shared out by queue pair over the whole port.
    let of = shared.as_ref().map_or(n, |s| s.0);
    let mut stacks = Vec::with_capacity(devs.len());
    let mut txqs = Vec::with_capacity(devs.len());
    let mut flights = crate::flight::arenas(devs.len()).into_iter();
    for (i, (q, mut dev)) in devs.drain(..).enumerate() {
        let rx = match &shared {
            // The owner's copy of the queue's descriptor: readable when
            // frames wait (net_tap's Rx interrupt is that descriptor).
            Some((_, fds)) => fds.get(i).copied().unwrap_or(-1),
            None => match dev.rx_interrupt_fd() {
                Some(fd) if dev.arm_rx_interrupt().is_ok() => fd,
                _ => -1,
            },
        };
        let (dev, txq) = ShimDevice::new(dev).map_err(|e| format!("port {port}: {e}"))?;
        let mut stack = Stack::new(ic.clone(), TcpConfig::default(), dev);
        stack
            .iface
            .set_port_share(q, of)
            .map_err(|e| format!("port {port}: {e}"))?;
        if let Some(slots) = flights.next() {
            stack.iface.set_flight_recorder(slots);
        }
        stacks.push((stack, rx));
        txqs.push(txq);
    }
    let wait = if stacks.iter().all(|(_, rx)| *rx >= 0) {
        "sleeps on its Rx interrupts"
    } else {
        "no Rx interrupt: backs off"
    };
    device::install(txqs);
    let taps: Vec<i32> = stacks.iter().map(|(_, rx)| *rx).filter(|&fd| fd >= 0).collect();
    crate::stacks::install(stacks)?;
    if name.starts_with("net_tap") && taps.len() == usize::from(n) {
        // Something that outlives the process resets its connections if it
        // dies without closing them (see `reaper`).
        crate::reaper::start(&taps, ip.addr, mac.0);
    }
    core.eal = Some(eal);
    Ok(format!(
        "{name} at {ip}, mac {mac}, {n} queue pair(s), {wait}{moved}"
    ))
}

/// How many CPUs the calling thread may run on (at least 1).
pub fn cpus() -> u32 {
    // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity
    // fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (libc::CPU_COUNT(&set) as u32).max(1);
        }
    }
    1
}

/// The first CPU the calling thread may run on (the EAL's main lcore).
pub(crate) fn first_cpu() -> usize {
    // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity
    // fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            if let Some(c) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)) {
                return c;
            }
        }
    }
    0
}

/// The first host address of `ip`'s network (`198.18.0.1` for
/// `198.18.0.2/24`).
pub(crate) fn first_host(ip: core::net::Ipv4Addr, prefix_len: u8) -> core::net::Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    let first = (u32::from(ip) & mask) | 1;
    core::net::Ipv4Addr::from(if first == u32::from(ip) { first + 1 } else { first })
}

/// In the child of `fork` (from the `pthread_atfork` handler): a stack the
/// parent ran is the parent's; a stack not yet started may start here.
///
/// The lock may have been held by a parent thread that does not exist in
/// the child: it is released. The parent's stack is never dropped here
/// (that would stop the parent's port): it is forgotten.
pub fn after_fork_in_child() {
    // The lock this thread took before the fork ([`before_fork`]).
    let _ = FORK_HOLD.try_with(|h| h.borrow_mut().take());
    // Likewise the waiting threads and their roles, and the keeper.
    W.spinning.store(false, Release);
    W.sleeping.store(false, Release);
    W.waiters.store(0, Release);
    accel_coro::park::Parker::current().after_fork();
    keeper::after_fork();
    device::after_fork();
    crate::reaper::after_fork();
    crate::procs::after_fork();
    if status() == Status::Up {
        crate::ready::after_fork();
        // The stacks (in a static, never dropped) are the parent's: with
        // the status Forked nothing reaches them ([`crate::stacks::cells`]
        // is empty here).
        W.status.store(Status::Forked as u8, Release);
        // (Held only if a signal handler forked inside this thread's own
        // shim call, see `before_fork`: then that frame has it.)
        if let Some(mut core) = try_lock() {
            core.to_wake.clear();
            if let Some(eal) = core.eal.take() {
                std::mem::forget(eal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eal_arguments_name_their_port() {
        let (args, vp) = eal_args("--no-huge -m 256 --vdev=net_memif0,role=server,socket=/tmp/m");
        assert_eq!(args.len(), 6, "one lcore added: {args:?}");
        assert_eq!(args.get(4).map(String::as_str), Some("-l"));
        assert_eq!(vp, "net_memif0,role=server,socket=/tmp/m\0net_memif0");
        let (_, vp) = eal_args("--no-pci --vdev net_tap1,iface=x");
        assert_eq!(vp, "net_tap1,iface=x\0net_tap1");
        let (args, vp) = eal_args("");
        assert!(args.iter().any(|a| a == "--no-huge"));
        assert_eq!(vp, "net_tap0\0net_tap0");
        let (args, vp) = eal_args("-a 0000:01:00.0 -l 2-3");
        assert_eq!(vp, "\u{0}0");
        assert_eq!(args.len(), 4, "the user's lcores are kept");
    }

    #[test]
    fn the_peer_defaults_to_the_first_host() {
        use core::net::Ipv4Addr;
        assert_eq!(
            first_host(Ipv4Addr::new(198, 18, 0, 2), 24),
            Ipv4Addr::new(198, 18, 0, 1)
        );
        assert_eq!(
            first_host(Ipv4Addr::new(198, 18, 0, 1), 24),
            Ipv4Addr::new(198, 18, 0, 2)
        );
        assert_eq!(
            first_host(Ipv4Addr::new(10, 1, 2, 3), 8),
            Ipv4Addr::new(10, 0, 0, 1)
        );
    }
}
