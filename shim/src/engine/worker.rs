//! The process's worker: its status, the roles of the threads that wait
//! (read by [`crate::engine::wait`] and [`crate::engine::keeper`]), the
//! lazy start of the port and its stacks, and the clock.
//!
//! Start is lazy ([`ensure_started`]): DPDK starts at the first socket call
//! that needs the stack, never at load. If it cannot start, the program
//! goes on with kernel sockets after one clear line (`ACCEL_FALLBACK=kernel`)
//! or exits with that line (`fail`). The stacks, one per queue pair, each
//! behind its own lock, are [`crate::engine::stacks`]'s; how threads wait
//! is [`crate::engine::wait`]'s; the keeper thread that drives the stacks
//! while the program computes (and sleeps on the device when the waiting
//! threads leave it) is [`crate::engine::keeper`]'s.

use crate::engine::device::{self, ShimDevice};
use crate::engine::{keeper, netns};
use crate::logging::{log, Level};
use crate::startup;
use crate::{config::Fallback, sys};
use accel_stack::iface::{IfaceConfig, Stack};
use accel_stack::phy::dpdk::{set_log_echo, DpdkConfig, DpdkDevice, Eal};
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::EthernetAddress;
use accel_stack::Instant;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::Mutex;

/// The stack's type in the shim.
pub type ShimStack = Stack<ShimDevice>;

/// Who holds the sleeper's role (see `wait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Sleeper {
    Nobody = 0,
    /// A waiting thread of the program.
    Thread = 1,
    /// The keeper, for waiting threads that are all parked.
    Keeper = 2,
    /// The fork proxy, while it pumps connections for children.
    Proxy = 3,
}

impl Worker {
    /// Takes the sleeper's role for `who`, if nobody holds it; a
    /// program's thread takes it from the keeper too (the keeper steps
    /// aside at its next wake: the thread that waits is the busy one, and
    /// with the keeper on the device every frame for it would wake two
    /// threads).
    pub(crate) fn take_sleeper(&self, who: Sleeper) -> bool {
        let from = |f: Sleeper| {
            self.sleeping
                .compare_exchange(f as u8, who as u8, AcqRel, Relaxed)
                .is_ok()
        };
        from(Sleeper::Nobody) || (who == Sleeper::Thread && from(Sleeper::Keeper))
    }

    /// Gives the role up, if `who` still holds it.
    pub(crate) fn release_sleeper(&self, who: Sleeper) {
        let _ = self
            .sleeping
            .compare_exchange(who as u8, Sleeper::Nobody as u8, AcqRel, Relaxed);
    }

    /// Whether `who` holds the role.
    pub(crate) fn sleeper_is(&self, who: Sleeper) -> bool {
        self.sleeping.load(SeqCst) == who as u8
    }

    /// Whether anybody sleeps on the device.
    pub(crate) fn device_watched(&self) -> bool {
        !self.sleeper_is(Sleeper::Nobody)
    }
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
    status: AtomicU8,
    /// Threads inside [`crate::engine::wait::drive_until`] (waiting on the shim); the
    /// keeper drives the stack while it is zero.
    pub(crate) waiters: AtomicU32,
    /// The program's threads that have waited in the shim and live (the
    /// spinner's rule, in `wait`).
    pub(crate) threads: AtomicU32,
    /// A thread is spinning on the device (at most one).
    pub(crate) spinning: AtomicBool,
    /// Who sleeps on the device's Rx interrupt (or backs off polling it)
    /// for everyone, a [`Sleeper`] (at most one; see `wait`). Use
    /// [`Worker::take_sleeper`] and [`Worker::release_sleeper`].
    sleeping: AtomicU8,
    /// When a thread of the program last polled the stack (ns of the
    /// monotonic clock; the keeper's polls do not count).
    pub(crate) last_drive: AtomicU64,
    /// How many times a wait ended leaving the device to nobody (no
    /// thread waits any more, or those that wait have no spinner and no
    /// sleeper): the keeper reads from it whether the program came and
    /// went while it was parked.
    pub(crate) undriven: AtomicU64,
    /// How many waits began: the keeper on the device steps aside when a
    /// program thread comes to wait (it takes the device itself).
    pub(crate) entered: AtomicU64,
    /// The keeper is parked, or sleeps a round, for longer than its
    /// period: a thread that leaves the device to nobody must nudge it
    /// (see `keeper`).
    pub(crate) keeper_away: AtomicBool,
}

pub(crate) static W: Worker = Worker {
    status: AtomicU8::new(Status::Off as u8),
    waiters: AtomicU32::new(0),
    threads: AtomicU32::new(0),
    spinning: AtomicBool::new(false),
    sleeping: AtomicU8::new(Sleeper::Nobody as u8),
    last_drive: AtomicU64::new(0),
    undriven: AtomicU64::new(0),
    entered: AtomicU64::new(0),
    keeper_away: AtomicBool::new(true),
};

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

/// The EAL, once the stacks run (never dropped: DPDK's memory is in use
/// until the process ends). Its lock is the start's: one thread starts
/// the stacks, the others wait and see them up.
static EAL: Mutex<Option<Eal>> = Mutex::new(None);

/// Starts the stacks if they are not running; `true` if they run now. A
/// failure is logged once and, with `ACCEL_FALLBACK=fail`, ends the
/// process.
pub fn ensure_started() -> bool {
    match status() {
        Status::Up => return true,
        Status::Failed | Status::Forked => return false,
        Status::Off => {}
    }
    // A panic is an abort here: the lock is never poisoned.
    let mut eal = EAL.lock().unwrap_or_else(|e| e.into_inner());
    match status() {
        Status::Up => return true,
        Status::Failed | Status::Forked => return false,
        Status::Off => {}
    }
    let t0 = now();
    match start() {
        Ok((what, started)) => {
            *eal = Some(started);
            W.status.store(Status::Up as u8, Release);
            let ms = now().saturating_since(t0).as_millis();
            log!(info, "stack up in {ms} ms: {what}");
            let keeper = keeper::spawn();
            if crate::engine::stacks::cells().iter().any(|c| c.costly()) {
                crate::engine::relay::spawn();
            }
            // A shared port's queues signal nobody (the owner turned it
            // off): pointing them at this process would kill it with a
            // signal it has no handler for.
            let signalled = !crate::engine::procs::attached();
            for cell in crate::engine::stacks::cells()
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

/// For a `net_memif` vdev: the name of its link's bells (from its socket,
/// its interface id and the network namespace, the same at both ends) and
/// whether this end is the server (memif's default role is client).
fn memif_bells(vdev: &str) -> Option<(String, bool)> {
    let mut parts = vdev.split(',');
    if !parts.next()?.starts_with("net_memif") {
        return None;
    }
    let (mut socket, mut id, mut server) = ("/run/memif.sock", "0", false);
    for kv in parts {
        match kv.split_once('=') {
            Some(("socket", v)) => socket = v,
            Some(("id", v)) => id = v,
            Some(("role", v)) => server = v == "server" || v == "master",
            _ => {}
        }
    }
    let key = crate::engine::procs::key(&format!("memif-bell:{socket}:{id}"));
    Some((format!("{key:016x}"), server))
}

/// Whether this process shares its port with others (`ACCEL_PROCS`):
/// `multi`; `auto` where huge pages are ready; never for a port named by
/// number (a PCI device: no owner creates it).
fn multi_process(cfg: &crate::config::Config, vdev: &str) -> Result<bool, String> {
    use crate::config::Procs;
    // Shared ports are net_tap's and net_memif's (whose secondaries watch
    // the link: `LinkWatch` in the stack). `auto` shares tap ports only: a
    // shared memif port needs its peer to open as many queue pairs as the
    // owner does (README, "Many processes"), which only the user knows.
    let tap = netns::tap_iface(vdev).is_some() || vdev.starts_with("net_tap");
    let memif = vdev.starts_with("net_memif");
    match cfg.procs {
        Procs::Single => Ok(false),
        Procs::Multi if !tap && !memif => Err(format!(
            "ACCEL_PROCS=multi shares net_tap and net_memif ports only (not {:?}); run one process per port \
             (ACCEL_PROCS=single)",
            vdev.split(',').next().unwrap_or(vdev)
        )),
        Procs::Auto if !tap => Ok(false),
        Procs::Multi => {
            accel_stack::phy::dpdk::hugepages_ready(crate::engine::procs::OWNER_MEM_MB)?;
            Ok(true)
        }
        Procs::Auto => {
            let ready = accel_stack::phy::dpdk::hugepages_ready(crate::engine::procs::OWNER_MEM_MB);
            if let Err(why) = &ready {
                log!(info, "ACCEL_PROCS=auto: one process on the port ({why})");
            }
            Ok(ready.is_ok())
        }
    }
}

fn start() -> Result<(String, Eal), String> {
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
    let lanes;
    let shared: Option<(u16, Vec<i32>)>;
    let want = queues_wanted(cfg.queues, vdev);
    let attached = if multi_process(cfg, vdev)? {
        // Lanes on net_tap (the owner gives them to a process alone on the
        // port).
        let tap = netns::tap_iface(vdev).is_some() || vdev.starts_with("net_tap");
        let lanes = if tap { cfg.lanes } else { 0 };
        // Unset, the count is a wish: what is free, one at least.
        match crate::engine::procs::attach(vdev, want, cfg.queues == 0, lanes, first_cpu()) {
            Ok(a) => Some(a),
            Err(why) if cfg.procs == crate::config::Procs::Auto && !crate::engine::procs::attached() => {
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
        crate::engine::procs::open_forwarding(a.key, a.grant.queues, &qs)?;
        secret = Some(a.grant.secret);
        lanes = given_lanes(&a);
        shared = Some((a.grant.queues, a.fds));
        devs = a.devs;
        eal = a.eal;
    } else {
        shared = None;
        eal = Eal::init(&args).map_err(|e| format!("DPDK did not start ({}): {e}", args.join(" ")))?;
        let want = crate::engine::owner::queues_for(vdev, want, "ACCEL_QUEUES");
        let dpdk = DpdkConfig {
            rx_queues: want,
            tx_queues: want,
            ..DpdkConfig::default()
        };
        let dev = DpdkDevice::open(&eal, port, dpdk).map_err(|e| format!("port {port}: {e}"))?;
        lanes = open_lanes(cfg, &dev, vdev);
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
    let mut flights = crate::engine::flight::arenas(devs.len()).into_iter();
    let bells = memif_bells(vdev);
    for (i, (q, mut dev)) in devs.drain(..).enumerate() {
        let rx = match (&shared, &bells) {
            // A memif link between two accel stacks: the queue pair's bell,
            // which the peer rings while this end sleeps (without it, an
            // idle end polls).
            (_, Some((id, server))) => match dev.ring_bells(id, *server) {
                Ok(fd) => {
                    let _ = crate::fdtable::FDS.install(fd, crate::fdtable::State::Internal, 0);
                    fd
                }
                Err(e) => {
                    log!(info, "port {port}: queue pair {q} polls when idle: {e}");
                    -1
                }
            },
            // The owner's copy of the queue's descriptor: readable when
            // frames wait (net_tap's Rx interrupt is that descriptor).
            (Some((_, fds)), None) => fds.get(i).copied().unwrap_or(-1),
            (None, None) => match dev.rx_interrupt_fd() {
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
        // An RSS NIC, or a TAP's steering program that hashes as one:
        // connect from ports whose replies come to this queue.
        let steering = stack
            .device
            .dpdk
            .rss_steering()
            .or_else(|| crate::engine::lanes::rss(i as u16));
        if q == 0 && steering.is_some() {
            log!(
                info,
                "port {port}: RSS steers flows; connects pick source ports answered on their own queue"
            );
        }
        stack.iface.set_rss_steering(steering);
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
    crate::engine::stacks::install(stacks)?;
    if name.starts_with("net_tap") && taps.len() == usize::from(n) {
        // Something that outlives the process resets its connections if it
        // dies without closing them (see `reaper`).
        crate::engine::reaper::start(&taps, ip.addr, mac.0);
    }
    Ok((
        format!("{name} at {ip}, mac {mac}, {n} queue pair(s), {wait}{lanes}{moved}"),
        eal,
    ))
}

/// Opens the lanes of a net_tap port (`lanes`), while its interface is
/// still in this namespace: only for a port that this process alone uses.
/// What the start line says of them.
fn open_lanes(cfg: &crate::config::Config, dev: &DpdkDevice, vdev: &str) -> String {
    let tap = netns::tap_iface(vdev).is_some() || vdev.starts_with("net_tap");
    if !tap || cfg.lanes == 0 {
        return String::new();
    }
    let (rxq, txq) = dev.queue_counts();
    if rxq != txq {
        return "; no lanes (as many receive as transmit queues needed)".into();
    }
    let Some(fd) = dev.rx_interrupt_fd() else {
        return "; no lanes (no queue descriptor)".into();
    };
    match crate::engine::lanes::prepare(fd, cfg.lanes, rxq, dev.offloads()) {
        Ok(n) => format!(", {n} lanes"),
        Err(why) => {
            log!(info, "net_tap without lanes: {why}");
            "; no lanes".into()
        }
    }
}

/// Makes the pool of the lanes the port's owner gave with the queue pair
/// (`procs::attach`). What the start line says of them.
fn given_lanes(a: &crate::engine::procs::Attached) -> String {
    let (Some(&queue_fd), Some((_, dev))) = (a.fds.first(), a.devs.first()) else {
        return String::new();
    };
    if a.lane_fds.is_empty() {
        return String::new();
    }
    let steer = match a.steer_fds {
        Some((flows, queues)) => crate::engine::lanes::Steer::Given(flows, queues),
        None => crate::engine::lanes::Steer::Without,
    };
    let ports = a.devs.len() as u16;
    match crate::engine::lanes::install(
        queue_fd,
        a.lane_fds.clone(),
        a.grant.pi,
        dev.offloads(),
        steer,
        ports,
    ) {
        Ok(n) => format!(", {n} lanes from the port's owner"),
        Err(why) => {
            log!(info, "net_tap without lanes: {why}");
            let maps = a.steer_fds.map_or([-1, -1], |(f, q)| [f, q]);
            for &fd in a.lane_fds.iter().chain(maps.iter().filter(|&&fd| fd >= 0)) {
                sys::close(fd);
            }
            "; no lanes".into()
        }
    }
}

/// The queue pairs to open the port with: `ACCEL_QUEUES` (`set`), or,
/// unset (0), on net_tap one per CPU (net_tap's most at most) if the
/// program has several threads as its stack starts, else one. A program
/// that starts its workers before its first socket (memcached's `-t N`, a
/// pool of event loops) gets a stack (a lock) per core, which its threads
/// share the calls of; a single-threaded event loop, or a server that
/// starts a thread per connection once it listens (each thread's
/// connection then has a lane), pays nothing for more stacks, and gets
/// one. Other devices get one: memif's threaded servers are faster than
/// the kernel with one, and its peer must open as many (README, "Threads
/// and queues").
fn queues_wanted(set: u16, vdev: &str) -> u16 {
    if set > 0 {
        return set;
    }
    let tap = netns::tap_iface(vdev).is_some() || vdev.starts_with("net_tap");
    let threads = threads_now();
    let n = auto_queues(tap, threads, cpus());
    if n > 1 {
        log!(
            info,
            "ACCEL_QUEUES=auto: {n} queue pairs, one per CPU (the program has {} threads as its stack starts)",
            threads.unwrap_or(0)
        );
    }
    n
}

/// [`queues_wanted`]'s rule: on a tap, with `threads` (if known) above
/// one, one per CPU up to net_tap's most; else one.
fn auto_queues(tap: bool, threads: Option<u32>, cpus: u32) -> u16 {
    if tap && threads.is_some_and(|t| t > 1) {
        (cpus.min(u32::from(crate::engine::owner::TAP_MAX_QUEUES)) as u16).max(1)
    } else {
        1
    }
}

/// The threads of this process now (`/proc/self/stat`), if it can be read.
fn threads_now() -> Option<u32> {
    let fd = sys::open(c"/proc/self/stat", libc::O_RDONLY | libc::O_CLOEXEC, 0).ok()?;
    let mut buf = [0u8; 1024];
    let n = sys::read(fd, &mut buf);
    sys::close(fd);
    stat_threads(buf.get(..n.ok()?)?)
}

/// The thread count in the text of a `/proc/PID/stat` (its 20th field;
/// the second, the command's name in parentheses, may hold spaces and
/// parentheses itself).
fn stat_threads(stat: &[u8]) -> Option<u32> {
    let after = stat.get(stat.iter().rposition(|&b| b == b')')? + 1..)?;
    let text = std::str::from_utf8(after).ok()?;
    text.split_ascii_whitespace().nth(17)?.parse().ok()
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
    // The waiting threads and their roles, and the keeper.
    W.spinning.store(false, Release);
    W.sleeping.store(Sleeper::Nobody as u8, Release);
    W.waiters.store(0, Release);
    crate::engine::wait::after_fork();
    accel_coro::park::Parker::current().after_fork();
    keeper::after_fork();
    crate::engine::relay::after_fork();
    device::after_fork();
    crate::engine::reaper::after_fork();
    crate::engine::procs::after_fork();
    crate::engine::lanes::after_fork();
    if status() == Status::Up {
        // The stacks (in a static, never dropped) are the parent's: with
        // the status Forked nothing reaches them ([`crate::engine::stacks::cells`]
        // is empty here).
        W.status.store(Status::Forked as u8, Release);
        // (The start's lock is free: the stacks start under the sockets'
        // lock, which the forking thread held.)
        if let Ok(mut eal) = EAL.try_lock() {
            if let Some(eal) = eal.take() {
                std::mem::forget(eal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_a_tap_gets_a_queue_pair_per_cpu_for_a_program_with_threads() {
        let tap = true;
        assert_eq!(auto_queues(tap, Some(9), 2), 2);
        assert_eq!(
            auto_queues(tap, Some(9), 16),
            crate::engine::owner::TAP_MAX_QUEUES
        );
        // One thread, or unknown, or memif: one.
        assert_eq!(auto_queues(tap, Some(1), 2), 1);
        assert_eq!(auto_queues(tap, None, 2), 1);
        assert_eq!(auto_queues(!tap, Some(9), 2), 1);
        // Set, it is what was set.
        assert_eq!(queues_wanted(3, "net_memif0"), 3);
    }

    #[test]
    fn the_thread_count_is_read_past_the_commands_name() {
        let stat = b"4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 123 4096 300 18446744073709551615";
        assert_eq!(stat_threads(stat), Some(7));
        assert_eq!(stat_threads(b"4242 (short) S 1"), None);
        // This test's own process has the test harness's threads, one at least.
        assert!(threads_now().is_some_and(|t| t >= 1));
    }

    #[test]
    fn eal_arguments_name_their_port() {
        let (args, vp) = eal_args("--no-huge -m 256 --vdev=net_memif0,role=server,socket=/tmp/m");
        assert_eq!(args.len(), 6, "one lcore added: {args:?}");
        assert_eq!(args.get(4).map(String::as_str), Some("-l"));
        assert_eq!(vp, "net_memif0,role=server,socket=/tmp/m\0net_memif0");
        let (_, vp) = eal_args("--no-pci --vdev net_tap1,iface=x");
        let (id, server) = memif_bells("net_memif0,role=server,socket=/tmp/m").unwrap();
        assert!(server);
        assert_eq!(
            memif_bells("net_memif1,socket=/tmp/m,role=client"),
            Some((id.clone(), false))
        );
        assert_ne!(
            memif_bells("net_memif0,role=client,socket=/tmp/m,id=1")
                .unwrap()
                .0,
            id
        );
        assert_ne!(memif_bells("net_memif0,role=client").unwrap().0, id);
        assert_eq!(memif_bells("net_tap0,iface=x"), None);
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
