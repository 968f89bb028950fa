//! The process's worker: one stack on one DPDK queue pair, the shim's
//! socket and epoll objects, and the loop that drives them whenever the
//! program waits.
//!
//! Everything lives in one [`Core`] behind one lock ([`lock`]); a thread
//! holds it only for a bounded piece of work (one poll of the stack, one
//! socket operation), never while it sleeps. Each shim operation polls the
//! stack once before it looks at a socket, and once after it queued data,
//! so frames move without a thread of their own.
//!
//! Start is lazy ([`ensure_started`]): DPDK starts at the first socket call
//! that needs the stack, never at load. If it cannot start, the program
//! goes on with kernel sockets after one clear line (`ACCEL_FALLBACK=kernel`)
//! or exits with that line (`fail`).
//!
//! Waiting ([`block`]): a thread that must wait (a blocking call, or
//! `epoll_wait`/`poll`/`select` with nothing ready) polls for up to
//! `ACCEL_SPIN_US` (one thread at a time; the others sleep at once), then
//! sleeps in `ppoll` on the port's Rx interrupt fd
//! (where the driver has one), the worker's doorbell eventfd and the
//! program's own kernel fds, never past the stack's next timer or the
//! caller's deadline; without an interrupt fd it sleeps in a back-off of
//! 50 µs doubling to 1 ms. A thread whose poll received frames rings the
//! doorbell if others sleep, since those frames may be theirs; a thread
//! about to sleep first checks that no poll received frames since it last
//! looked, so no wake-up is lost between the two. A signal ends the sleep
//! as `Interrupted`.
//!
//! The keeper thread drives the stack when no thread has for
//! `ACCEL_KEEPER_US` and none is waiting (the program is computing), so
//! ACKs, retransmissions and ARP go on. While a thread waits in the shim
//! (and so drives the worker itself) the keeper sleeps on a futex until the
//! last waiter leaves, so an idle server costs no keeper wake-ups. Between
//! rounds the keeper sleeps in `ppoll` on the epoll fds of the shim's sets,
//! so that a kernel member's event is placed among the stack's in the order
//! it happened (see `epoll`'s module docs on order).

use crate::epoll::EpollSet;
use crate::logging::{log, Level};
use crate::ready::Watch;
use crate::sock::{Slab, Sock};
use crate::{config::Fallback, netns, sys};
use crate::{signals, startup};
use accel_stack::iface::{IfaceConfig, PollResult, Stack};
use accel_stack::phy::dpdk::{set_log_echo, DpdkConfig, DpdkDevice, Eal};
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::EthernetAddress;
use accel_stack::Instant;
use libc::{pollfd, sigset_t};
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::time::Duration;

/// The stack's type in the shim.
pub type ShimStack = Stack<DpdkDevice>;

/// Everything the worker's lock guards.
pub struct Core {
    /// The stack, once started.
    pub stack: Option<ShimStack>,
    /// The shim's sockets, by fd-table handle.
    pub socks: Slab<Sock>,
    /// The shim's epoll interest sets, by fd-table handle.
    pub epolls: Slab<EpollSet>,
    /// Which sets watch which sockets, and the sockets' wakers.
    pub watch: Watch,
    /// The next port tried for a `bind` to port 0 before the stack runs.
    pub next_port: u16,
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

struct Worker {
    core: Mutex<Core>,
    status: AtomicU8,
    /// The eventfd that wakes sleeping waiters; -1 before start.
    doorbell: AtomicI32,
    /// The port's Rx interrupt fd; -1 if none.
    rx_fd: AtomicI32,
    /// Threads asleep in [`block`] (or about to be).
    sleepers: AtomicU32,
    /// Polls that received frames, counted: a thread about to sleep checks
    /// that none came in since its last look (see [`block`]).
    rx_epoch: AtomicU64,
    /// Rings of the doorbell, counted.
    rings: AtomicU64,
    /// Threads inside [`block`] (driving the stack themselves); the keeper
    /// sleeps on this word (a futex) while it is not zero.
    waiters: AtomicU32,
    /// The keeper sleeps until `waiters` drops to zero.
    keeper_parked: AtomicBool,
    /// A thread is spinning on the device in [`block`].
    spinning: AtomicBool,
    /// When the stack was last polled (ns of the monotonic clock).
    last_drive: AtomicU64,
}

static W: Worker = Worker {
    core: Mutex::new(Core {
        stack: None,
        socks: Slab::new(),
        epolls: Slab::new(),
        watch: Watch::new(),
        next_port: 40000,
        eal: None,
    }),
    status: AtomicU8::new(Status::Off as u8),
    doorbell: AtomicI32::new(-1),
    rx_fd: AtomicI32::new(-1),
    sleepers: AtomicU32::new(0),
    rx_epoch: AtomicU64::new(0),
    rings: AtomicU64::new(0),
    waiters: AtomicU32::new(0),
    keeper_parked: AtomicBool::new(false),
    spinning: AtomicBool::new(false),
    last_drive: AtomicU64::new(0),
};

/// The worker's state, locked.
pub fn lock() -> MutexGuard<'static, Core> {
    W.core.lock()
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
    /// Polls the stack once (if it runs); rings the doorbell if frames came
    /// in while other threads sleep.
    pub fn drive(&mut self) -> PollResult {
        let Some(stack) = self.stack.as_mut() else {
            return PollResult::default();
        };
        let t = now();
        let r = stack.poll(t);
        W.last_drive.store(t.nanos(), Relaxed);
        // With `block`'s going to sleep, a Dekker pair (both SeqCst): either
        // this sees the sleeper and rings, or the sleeper sees the epoch move
        // and does not sleep.
        if r.rx > 0 {
            W.rx_epoch.fetch_add(1, SeqCst);
            if W.sleepers.load(SeqCst) > 0 {
                ring();
            }
        }
        r
    }

    /// The stack, if it runs.
    pub fn stack(&mut self) -> Option<&mut ShimStack> {
        self.stack.as_mut()
    }
}

/// Wakes the threads asleep in [`block`].
pub fn ring() {
    let fd = W.doorbell.load(Relaxed);
    if fd >= 0 {
        W.rings.fetch_add(1, SeqCst);
        let one: u64 = 1;
        let _ = sys::write_all(fd, &one.to_ne_bytes());
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
            let keeper = spawn_keeper();
            let rx = W.rx_fd.load(Relaxed);
            if let (Some(tid), true) = (keeper, rx >= 0) {
                // net_tap signals every frame (its Rx trigger, F_SETSIG):
                // send it to the keeper, so that it never interrupts the
                // program.
                if let Err(e) = sys::set_owner_thread(rx, tid) {
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
    let eal = Eal::init(&args).map_err(|e| format!("DPDK did not start ({}): {e}", args.join(" ")))?;
    let dpdk = DpdkConfig::default();
    let mut dev = DpdkDevice::open(&eal, port, dpdk).map_err(|e| format!("port {port}: {e}"))?;
    let ns = String::from_utf8_lossy(cfg.tap_netns.as_bytes()).into_owned();
    let mut moved = String::new();
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
    let mac = cfg.mac.map(EthernetAddress).unwrap_or_else(|| dev.mac());
    let mut ic = IfaceConfig::new(mac, ip.addr, ip.prefix_len);
    ic.gateway = cfg.gateway;
    ic.secret = sys::random16();
    if let Some(fd) = dev.rx_interrupt_fd() {
        if dev.arm_rx_interrupt().is_ok() {
            W.rx_fd.store(fd, Relaxed);
        }
    }
    let bell = sys::eventfd().map_err(|e| format!("eventfd: {}", std::io::Error::from_raw_os_error(e)))?;
    W.doorbell.store(bell, Relaxed);
    let name = dev.name().to_owned();
    let wait = if W.rx_fd.load(Relaxed) >= 0 {
        "sleeps on its Rx interrupt"
    } else {
        "no Rx interrupt: backs off"
    };
    core.stack = Some(Stack::new(ic, TcpConfig::default(), dev));
    core.eal = Some(eal);
    Ok(format!("{name} at {ip}, mac {mac}, {wait}{moved}"))
}

/// The first CPU the calling thread may run on (the EAL's main lcore).
fn first_cpu() -> usize {
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
fn first_host(ip: core::net::Ipv4Addr, prefix_len: u8) -> core::net::Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    let first = (u32::from(ip) & mask) | 1;
    core::net::Ipv4Addr::from(if first == u32::from(ip) { first + 1 } else { first })
}

/// How a wait ended without its condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// The deadline passed.
    TimedOut,
    /// A signal handler ran; `restart`: the kernel would restart the call
    /// (every handler that ran had `SA_RESTART`, and the call has no
    /// timeout).
    Interrupted {
        /// Whether to go on waiting rather than fail with `EINTR`.
        restart: bool,
    },
}

/// Drives the worker until `attempt` returns a result, the `deadline`
/// passes or a signal arrives (see the module documentation). `attempt`
/// runs with the lock held, right after a poll of the stack; `extra` are
/// kernel fds to sleep on as well (their `revents` are overwritten);
/// `sigmask` is the mask to sleep with (`ppoll`'s).
pub fn block<R>(
    deadline: Option<Instant>,
    extra: &mut [pollfd],
    sigmask: Option<&sigset_t>,
    mut attempt: impl FnMut(&mut Core) -> Option<R>,
) -> Result<R, WaitEnd> {
    W.waiters.fetch_add(1, Relaxed);
    let r = block_inner(deadline, extra, sigmask, &mut attempt);
    if W.waiters.fetch_sub(1, Release) == 1 && W.keeper_parked.load(Acquire) {
        // Nobody drives the worker now: the keeper takes over.
        sys::futex_wake(&W.waiters);
    }
    r
}

fn block_inner<R>(
    deadline: Option<Instant>,
    extra: &mut [pollfd],
    sigmask: Option<&sigset_t>,
    attempt: &mut impl FnMut(&mut Core) -> Option<R>,
) -> Result<R, WaitEnd> {
    let spin = Duration::from_micros(u64::from(startup::config().spin_us));
    let mut idle_since: Option<Instant> = None;
    let mut backoff = Duration::from_micros(50);
    // Filled (and allocated) only if the wait comes to sleeping.
    let mut fds: Vec<pollfd> = Vec::new();
    let start = signals::epoch();
    // A call with a timeout is never restarted (signal(7)).
    let interrupted = |known: bool| {
        let e = signals::epoch();
        let restart = if e.0 != start.0 {
            e.1 == start.1
        } else {
            known && !sys::some_handler_interrupts()
        };
        WaitEnd::Interrupted {
            restart: restart && deadline.is_none(),
        }
    };
    let mut spinner = Spinner(false);
    // The ring this thread woke to and left ringing for other sleepers,
    // and whether it has napped once without the bell since.
    let mut heard: Option<(u64, bool)> = None;
    // The caller's kernel fds woke the last sleep: their events came before
    // whatever frames the device holds now, so they are looked at first.
    let mut kernel_first = false;
    loop {
        if std::mem::take(&mut kernel_first) {
            if let Some(r) = attempt(&mut lock()) {
                return Ok(r);
            }
        }
        let (progress, next, epoch) = {
            let mut core = lock();
            let res = core.drive();
            // Frames that come in after this (another thread's poll) may
            // be what `attempt` waits for.
            let epoch = W.rx_epoch.load(SeqCst);
            if let Some(r) = attempt(&mut core) {
                return Ok(r);
            }
            // Hand the lock to a thread waiting for it (a thread with data
            // to send) rather than take it straight back on the next turn.
            MutexGuard::unlock_fair(core);
            (res.progress, res.next, epoch)
        };
        if signals::epoch().0 != start.0 {
            // A handler ran while we polled: the kernel's call would have
            // been interrupted in its sleep.
            return Err(interrupted(false));
        }
        let t = now();
        if deadline.is_some_and(|d| t >= d) {
            return Err(WaitEnd::TimedOut);
        }
        if progress {
            backoff = Duration::from_micros(50);
        }
        // Spin for ACCEL_SPIN_US after entering and after each wake-up, if
        // no other thread is spinning already (on two cores, two spinners
        // starve the peer; the one spinning rings the others' doorbell when
        // frames come in).
        let since = *idle_since.get_or_insert(t);
        if t.saturating_since(since) < spin && spinner.take() {
            std::hint::spin_loop();
            continue;
        }
        spinner.release();
        // Sleep.
        let rx = W.rx_fd.load(Relaxed);
        let mut wait = if rx >= 0 || W.status.load(Relaxed) != Status::Up as u8 {
            Duration::from_millis(100)
        } else {
            let w = backoff;
            backoff = (backoff * 2).min(Duration::from_millis(1));
            w
        };
        if let Some(n) = next {
            wait = wait.min(n.saturating_since(t));
        }
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_since(t));
        }
        fds.clear();
        let mut bell = W.doorbell.load(Relaxed);
        let rings = W.rings.load(SeqCst);
        if heard == Some((rings, false)) {
            // Still ringing for sleepers not yet up: sleeping on it would
            // return at once. Nap once without it, briefly (a new ring in
            // that time waits at most 1 ms); after that this thread drains
            // it itself.
            heard = Some((rings, true));
            bell = -1;
            wait = wait.min(Duration::from_millis(1));
        }
        if bell >= 0 {
            fds.push(pollfd {
                fd: bell,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if rx >= 0 {
            if let Some(s) = lock().stack() {
                let _ = s.device.arm_rx_interrupt();
            }
            fds.push(pollfd {
                fd: rx,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let own = fds.len();
        fds.extend(extra.iter().map(|p| pollfd { revents: 0, ..*p }));
        W.sleepers.fetch_add(1, SeqCst);
        if W.rx_epoch.load(SeqCst) != epoch {
            // Another thread received frames since our attempt, and may
            // not have seen us here to ring: look again instead of
            // sleeping through them (until the next timer).
            W.sleepers.fetch_sub(1, Relaxed);
            idle_since = None;
            continue;
        }
        let mask = sigmask.map_or(std::ptr::null(), |m| m as *const sigset_t);
        // SAFETY: `mask` is null or a live signal set.
        let r = unsafe { sys::ppoll(&mut fds, Some(wait), mask) };
        let others = W.sleepers.fetch_sub(1, SeqCst).saturating_sub(1);
        for (dst, src) in extra.iter_mut().zip(fds.iter().skip(own)) {
            dst.revents = src.revents;
            kernel_first |= src.revents != 0;
        }
        // The last sleeper up silences the bell (or one that already napped
        // once without it, above). One that drained it while others slept
        // would take their wake-up away: a poller woken by the eventfd
        // looks again before it returns, finds it silent, and sleeps on
        // (until its timeout: the stack's next timer).
        if bell >= 0 && fds.first().is_some_and(|p| p.revents & libc::POLLIN != 0) {
            let rings = W.rings.load(SeqCst);
            if others == 0 || heard == Some((rings, true)) {
                sys::drain(bell);
                heard = None;
            } else {
                heard = Some((rings, false));
            }
        }
        if r == Err(libc::EINTR) {
            return Err(interrupted(true));
        }
        idle_since = None;
    }
}

/// Whether this thread is the one spinning on the device (at most one is).
struct Spinner(bool);

impl Spinner {
    /// Becomes (or stays) the spinner, if no other thread is.
    fn take(&mut self) -> bool {
        if !self.0 {
            self.0 = W.spinning.compare_exchange(false, true, AcqRel, Relaxed).is_ok();
        }
        self.0
    }

    /// Stops spinning.
    fn release(&mut self) {
        if std::mem::take(&mut self.0) {
            W.spinning.store(false, Release);
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.release();
    }
}

/// Starts the keeper thread (once per process that starts the stack);
/// returns its thread id.
fn spawn_keeper() -> Option<libc::pid_t> {
    static TID: AtomicI32 = AtomicI32::new(0);
    let period = Duration::from_micros(u64::from(startup::config().keeper_us.max(1)));
    let spawned = std::thread::Builder::new()
        .name("accel-keeper".into())
        .spawn(move || {
            keeper_signals();
            TID.store(sys::gettid(), Release);
            keeper(period)
        });
    if let Err(e) = spawned {
        log!(
            warn,
            "cannot start the keeper thread ({e}): the stack moves only while the program is in a socket call"
        );
        return None;
    }
    for _ in 0..1000 {
        let tid = TID.load(Acquire);
        if tid > 0 {
            return Some(tid);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    None
}

/// The keeper takes no signal of the program's (they go to the
/// program's threads), only DPDK's own (net_tap's Rx trigger, a realtime
/// signal set with F_SETSIG; it must be taken, or the queue of pending
/// ones overflows into a SIGIO that would end the process) and SIGIO.
fn keeper_signals() {
    // SAFETY: sigset operations on a local set; pthread_sigmask changes
    // only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigdelset(&mut set, libc::SIGIO);
        for sig in 1..=64 {
            if signals::is_internal(sig) {
                libc::sigdelset(&mut set, sig);
            }
        }
        for sync in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL] {
            libc::sigdelset(&mut set, sync);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// The keeper's loop. Its sleep between rounds is a `ppoll` on the epoll
/// fds of the shim's sets (their kernel halves, see [`crate::ready`]): a
/// kernel member that becomes ready while the program computes is noted
/// then, after a poll of the stack, so that its event is ordered after the
/// stack's earlier ones and before its later ones.
fn keeper(period: Duration) {
    let mut fds: Vec<pollfd> = Vec::new();
    let mut sets: Vec<u32> = Vec::new();
    loop {
        if fds.is_empty() {
            std::thread::sleep(period);
        } else {
            // SAFETY: no signal mask pointer.
            let _ = unsafe { sys::ppoll(&mut fds, Some(period), std::ptr::null()) };
        }
        if status() != Status::Up {
            return;
        }
        let w = W.waiters.load(Acquire);
        if w > 0 {
            // A thread waiting in the shim drives the worker (and sees the
            // kernel halves it waits for): sleep until none does (or a
            // second has passed), without waking each period.
            W.keeper_parked.store(true, Release);
            sys::futex_wait(&W.waiters, w, Duration::from_secs(1));
            W.keeper_parked.store(false, Release);
            fds.clear();
            sets.clear();
            continue;
        }
        let seen = fds.iter().any(|p| p.revents != 0);
        let last = W.last_drive.load(Relaxed);
        let due = now().nanos().saturating_sub(last) >= period.as_nanos() as u64;
        // Something seen must be noted: wait for the lock then.
        let core = if seen {
            Some(W.core.lock())
        } else {
            W.core.try_lock()
        };
        let Some(mut core) = core else { continue };
        if due || seen {
            core.drive();
        }
        for (p, &set) in fds.iter().zip(&sets) {
            if p.revents != 0 {
                core.watch.kernel_half_seen(set);
            }
        }
        fds.clear();
        sets.clear();
        for &(fd, set) in core.watch.kernel_halves() {
            fds.push(pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            sets.push(set);
        }
    }
}

/// In the child of `fork` (from the `pthread_atfork` handler): a stack the
/// parent ran is the parent's; a stack not yet started may start here.
///
/// The lock may have been held by a parent thread that does not exist in
/// the child: it is released. The parent's stack is never dropped here
/// (that would stop the parent's port): it is forgotten.
pub fn after_fork_in_child() {
    if W.core.is_locked() {
        // SAFETY: the thread that held the lock is not in this process
        // (only the forking thread is), so nothing else can be using it.
        unsafe { W.core.force_unlock() };
    }
    // Likewise the spinning thread, and the keeper.
    W.spinning.store(false, Release);
    W.keeper_parked.store(false, Release);
    if status() == Status::Up {
        W.status.store(Status::Forked as u8, Release);
        W.rx_fd.store(-1, Relaxed);
        W.doorbell.store(-1, Relaxed);
        let mut core = lock();
        if let Some(stack) = core.stack.take() {
            std::mem::forget(stack);
        }
        if let Some(eal) = core.eal.take() {
            std::mem::forget(eal);
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
