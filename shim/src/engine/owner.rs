//! The port owner (`ACCEL_PROCS=multi`): the DPDK primary process of one
//! port, which configures the port with its queue pairs, never polls it,
//! and hands the queue pairs out to the accelerated processes (see
//! [`crate::engine::procs`] for their side and for how it is started).
//!
//! It is this library, run by the constructor instead of the program when
//! `ACCEL_OWNER=1` (the start-up stage stays at *Starting*, so every call
//! the owner or DPDK's threads make goes straight to libc). In order:
//! 1. It binds the control socket (abstract, named by the port's key): if
//!    another owner has it, this one leaves quietly (two processes may
//!    start one at once). It listens at once; requests wait until the port
//!    is up, or are answered with the reason it could not start. Before
//!    starting DPDK it waits for the previous owner of the port, which may
//!    still be stopping (see `outlive_predecessor`).
//! 2. It removes the runtime files that killed owners left, starts DPDK
//!    as the primary with huge pages (`--file-prefix` named by the key), opens the port with `ACCEL_PORT_QUEUES` queue
//!    pairs, and on net_tap finds the queues' descriptors, stops their
//!    per-frame signal, detaches every queue but one (the kernel sends
//!    frames only to attached queues: an attached queue nobody polls loses
//!    its flows) and moves the kernel side into `ACCEL_TAP_NETNS` as the
//!    single-process start does. Before the move it opens `ACCEL_LANES`
//!    more queues, detached: lanes (`engine::lanes`), for a process with
//!    several threads alone on the port.
//! 3. It serves: `take N PID` gets the N lowest free queue pairs, which
//!    are attached before the reply (frames that come before the process
//!    polls wait in the queue), with their descriptors. If fewer are free,
//!    the process waits, first come first, until others leave (an nginx
//!    reload's new workers, while the old ones finish), 20 s at most.
//!    `take N PID upto` (a process that did not set `ACCEL_QUEUES`) gets
//!    as many of the N as are free, at most half the port's, so that
//!    processes that come later find some; it waits only if none is
//!    free, for one. When a process's connection ends (exit, crash,
//!    `SIGKILL`: the kernel closes it; the reaper holds a copy until it
//!    has reset the connections), its queues are detached and free again.
//!    The last attached queue stays attached (the kernel refuses to detach
//!    it). `take N PID lanes=M` also asks for lanes: a process alone on
//!    the port gets them (their descriptors follow the queues'), and holds
//!    them until it leaves, when they are detached again. A process that
//!    comes to share the port with it ends the lanes' steering program
//!    (which sends every frame of no lane to the holder's queue).
//! 4. One second after the last process left (30 s if none ever came),
//!    it closes the control socket, stops the port (the tap goes), removes
//!    DPDK's runtime files of its prefix and exits.
//!
//! If the owner dies, the processes attached go on with the queues they
//! hold (DPDK's memory and the queues' descriptors stay theirs); none can
//! attach or give queues back until they are all gone, when the next
//! process starts a new owner. Each logs that the owner went.

use crate::config::{Cidr, Config};
use crate::engine::parked::Parked;
use crate::engine::procs::{self, Grant};
use crate::logging::log;
use crate::{engine::netns, engine::worker, sys};
use accel_stack::phy::dpdk::{hugepages_ready, set_log_echo, DpdkConfig, DpdkDevice, Eal, TapQueues};
use std::time::{Duration, Instant};

/// How long the owner stays after the last process left.
const LINGER: Duration = Duration::from_secs(1);
/// How long it waits for a first process.
const FIRST: Duration = Duration::from_secs(30);

/// Most queue pairs of a net_tap port, shared or not: DPDK 22.11's net_tap
/// passes each queue's two descriptors to the secondaries in one message,
/// which carries 8 at most, and it does so whenever the port starts, with
/// secondaries or without; with more queues it writes past that message
/// and the process aborts ("stack smashing detected").
pub const TAP_MAX_QUEUES: u16 = 4;

/// The queue pairs to open `vdev` with when `want` are asked for by
/// `setting`: `want`, or [`TAP_MAX_QUEUES`] on a net_tap port asked for
/// more, with a line saying so.
pub fn queues_for(vdev: &str, want: u16, setting: &str) -> u16 {
    if vdev.starts_with("net_tap") && want > TAP_MAX_QUEUES {
        log!(
            warn,
            "{setting}={want}, but a net_tap port has at most {TAP_MAX_QUEUES} queue pairs (DPDK 22.11 passes their descriptors to other processes in one message of at most 8, and aborts with more); using {TAP_MAX_QUEUES}"
        );
        return TAP_MAX_QUEUES;
    }
    want.max(1)
}

/// How many queue pairs `take N PID upto` gets with `free` of the port's
/// `port` free: what is free, at most half the port's, and one (waited
/// for) if none is.
fn upto_count(n: usize, free: usize, port: usize) -> usize {
    n.min(free).min(port.div_ceil(2)).max(1)
}

/// A process holding queue pairs.
struct Client {
    fd: i32,
    pid: i32,
    queues: Vec<u16>,
    /// Queue pairs it asked for that were not free yet, and since when.
    waiting: Option<(usize, Instant)>,
    /// Lanes it asked for (`take N PID lanes=M`).
    lanes: u16,
}

/// How long a process waits for queue pairs to come free (an nginx
/// reload's new workers wait for the old ones to leave).
const WAIT_MAX: Duration = Duration::from_secs(20);

/// The port, once up.
struct Port {
    /// Keeps the port (and DPDK) up; dropped to stop it.
    dev: DpdkDevice,
    _eal: Eal,
    taps: Option<TapQueues>,
    prefix: String,
    /// Which process holds each queue pair.
    held: Vec<Option<i32>>,
    /// The secret the processes' stacks share.
    secret: [u8; 16],
    /// Lanes (`engine::lanes`): queues of the TAP interface opened before
    /// it moved, detached, for one process alone on the port (a process
    /// of several threads under `ACCEL_PROCS=auto`); with packet
    /// information if `pi`.
    lanes: Vec<i32>,
    pi: bool,
    /// The connection of the process that holds the lanes.
    lane_holder: Option<i32>,
    /// The lanes' steering program is on the interface.
    steered: bool,
}

/// Runs the owner and exits the process; never returns.
pub fn run(cfg: &Config) -> ! {
    let code = match serve(cfg) {
        Ok(()) => 0,
        Err(why) => {
            log!(error, "port owner: {why}");
            1
        }
    };
    // SAFETY: ending this process (the owner) is always allowed.
    unsafe { libc::_exit(code) }
}

fn serve(cfg: &Config) -> Result<(), String> {
    let line = String::from_utf8_lossy(cfg.dpdk_args.as_bytes()).into_owned();
    let (_, vdev_port) = worker::eal_args(&line);
    let (vdev, port) = vdev_port.split_once('\0').unwrap_or(("", "0"));
    if vdev.is_empty() {
        return Err(format!(
            "ACCEL_DPDK_ARGS names no --vdev ({line:?}): a port owner creates its port"
        ));
    }
    let key = procs::key(vdev);
    let name = procs::control_name(key);
    let listener = procs::seqpacket().map_err(|e| format!("socket: errno {e}"))?;
    let (addr, len) = procs::abstract_addr(&name);
    // SAFETY: `addr` is a sockaddr_un of `len` bytes.
    let rc = unsafe { libc::syscall(libc::SYS_bind, listener, &addr as *const libc::sockaddr_un, len) };
    if rc != 0 {
        let e = sys::errno();
        if e == libc::EADDRINUSE {
            log!(info, "port owner: another owner serves {name}; leaving");
            return Ok(());
        }
        return Err(format!("bind {name}: errno {e}"));
    }
    // SAFETY: listen takes no pointers.
    if unsafe { libc::syscall(libc::SYS_listen, listener, 128) } != 0 {
        return Err(format!("listen {name}: errno {}", sys::errno()));
    }
    log!(
        info,
        "port owner {} for {vdev}: control socket @{name}",
        sys::getpid()
    );
    let mut clients: Vec<Client> = Vec::new();
    let port = match outlive_predecessor(&name).and_then(|()| start(cfg, vdev, port, key)) {
        Ok(p) => p,
        Err(why) => {
            // Tell whoever waits (and comes within a moment) why.
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if let Some(fd) = accept(listener, Duration::from_millis(100)) {
                    let mut buf = [0u8; procs::MSG_MAX];
                    let _ = procs::recv_msg(fd, &mut buf, Some(Duration::from_millis(500)));
                    let _ = procs::send_msg(fd, format!("err {why}").as_bytes(), &[]);
                    sys::close(fd);
                }
            }
            return Err(why);
        }
    };
    let mut port = port;
    let mut idle_since = Some((Instant::now(), FIRST));
    // Connections adrift that exiting processes leave here.
    let mut parked = Parked::open(key)
        .map_err(|e| {
            log!(
                warn,
                "port owner: cannot keep connections for exiting processes: {e}"
            )
        })
        .ok();
    loop {
        let mut fds: Vec<libc::pollfd> = std::iter::once(listener)
            .chain(clients.iter().map(|c| c.fd))
            .chain(parked.as_ref().map(Parked::fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let held: Vec<u16> = (0..port.held.len() as u16)
            .filter(|&q| port.held.get(usize::from(q)).is_some_and(Option::is_some))
            .collect();
        let offer = parked.as_mut().and_then(|p| p.tick(&held));
        let idle = idle_since.map(|(t, limit)| limit.saturating_sub(t.elapsed()));
        if idle.is_some_and(|t| t.is_zero()) {
            break;
        }
        // A wait that runs out is answered.
        let wait = clients
            .iter()
            .filter_map(|c| {
                c.waiting
                    .map(|(_, since)| WAIT_MAX.saturating_sub(since.elapsed()))
            })
            .min();
        let timeout = [idle, wait, offer].into_iter().flatten().min();
        // SAFETY: a null mask: the thread's own.
        match unsafe { sys::ppoll(&mut fds, timeout, std::ptr::null()) } {
            Ok(_) | Err(libc::EINTR) => {}
            Err(e) => return Err(format!("ppoll: errno {e}")),
        }
        if let (Some(p), Some(pfd)) = (parked.as_mut(), fds.last()) {
            if pfd.revents != 0 {
                p.on_readable();
            }
        }
        // Requests and departures, before new arrivals.
        let mut gone = Vec::new();
        for (i, p) in fds.iter().enumerate().skip(1).take(clients.len()) {
            if p.revents == 0 {
                continue;
            }
            let Some(c) = clients.get_mut(i - 1) else { continue };
            let mut buf = [0u8; procs::MSG_MAX];
            match procs::recv_msg(c.fd, &mut buf, Some(Duration::ZERO)) {
                Ok((0, _)) | Err(_) => gone.push(i - 1),
                Ok((n, extra)) => {
                    for f in extra {
                        sys::close(f);
                    }
                    let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
                    if let Err(why) = port.request(c, &text) {
                        log!(warn, "port owner: process {} asked {text:?}: {why}", c.pid);
                        let _ = procs::send_msg(c.fd, format!("err {why}").as_bytes(), &[]);
                    }
                }
            }
        }
        for i in gone.into_iter().rev() {
            let c = clients.remove(i);
            port.release(&c);
            sys::close(c.fd);
        }
        port.serve_waiting(&mut clients);
        if fds.first().is_some_and(|p| p.revents != 0) {
            while let Some(fd) = accept(listener, Duration::ZERO) {
                clients.push(Client {
                    fd,
                    pid: 0,
                    queues: Vec::new(),
                    waiting: None,
                    lanes: 0,
                });
            }
        }
        idle_since = match (clients.is_empty(), idle_since) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some((Instant::now(), LINGER)),
        };
    }
    // Refuse newcomers first (they start a new owner), then stop the port.
    sys::close(listener);
    log!(
        info,
        "port owner {}: no process left; stopping {}",
        sys::getpid(),
        port.prefix
    );
    let prefix = port.prefix.clone();
    drop(port);
    remove_runtime_dir(&prefix);
    Ok(())
}

/// How long a new owner waits for the previous one to finish stopping.
const PREDECESSOR: Duration = Duration::from_secs(20);

/// Waits until no earlier owner of this port is alive, then marks this
/// one alive until it exits.
///
/// An owner closes its control socket first and then stops the port,
/// which takes a while (DPDK's clean-up, the tap going, the runtime files
/// removed). A process that comes in that window starts a new owner,
/// which binds the control socket; if it started DPDK at once, it would
/// find the old primary's lock on the same `--file-prefix` and fail (the
/// suite saw it: nginx started again just after another nginx left). So
/// each owner also binds a second abstract name, `NAME-life`, and holds it
/// until it exits: the kernel releases it when the process ends, however
/// it ends, and the next owner waits for that before starting DPDK.
fn outlive_predecessor(name: &str) -> Result<(), String> {
    let life = format!("{name}-life");
    let fd = procs::seqpacket().map_err(|e| format!("socket: errno {e}"))?;
    let (addr, len) = procs::abstract_addr(&life);
    let start = Instant::now();
    loop {
        // SAFETY: `addr` is a sockaddr_un of `len` bytes.
        let rc = unsafe { libc::syscall(libc::SYS_bind, fd, &addr as *const libc::sockaddr_un, len) };
        if rc == 0 {
            if start.elapsed() > Duration::from_millis(10) {
                log!(
                    info,
                    "port owner: waited {} ms for the previous owner to stop",
                    start.elapsed().as_millis()
                );
            }
            // `fd` stays open until the process exits: that is the mark.
            return Ok(());
        }
        let e = sys::errno();
        if e != libc::EADDRINUSE {
            sys::close(fd);
            return Err(format!("bind {life}: errno {e}"));
        }
        if start.elapsed() > PREDECESSOR {
            sys::close(fd);
            return Err(format!(
                "the port's previous owner has not finished stopping within {} s",
                PREDECESSOR.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// DPDK's runtime directory (`/var/run/dpdk` for root, else under
/// `$XDG_RUNTIME_DIR` or `/tmp`).
fn runtime_base() -> String {
    // SAFETY: geteuid has no preconditions.
    let base = if unsafe { libc::geteuid() } == 0 {
        "/var/run".to_owned()
    } else {
        std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".to_owned())
    };
    format!("{base}/dpdk")
}

/// Removes the runtime files of port owners that died without removing
/// them (killed: a test's namespace going, say): a directory named as
/// ours (`accel-` and 16 hex digits) whose `config` no process locks (a
/// live DPDK primary keeps a write lock on it).
fn sweep_stale_runtime_dirs(ours: &str) {
    let base = runtime_base();
    let Ok(dir) = std::fs::read_dir(&base) else { return };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let hex = name.strip_prefix("accel-").unwrap_or("");
        if name == ours || hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let config = e.path().join("config");
        let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&config) else {
            continue;
        };
        // SAFETY: all zeroes is a valid flock; F_GETLK fills it in.
        let mut lk: libc::flock = unsafe { std::mem::zeroed() };
        lk.l_type = libc::F_WRLCK as libc::c_short;
        lk.l_whence = libc::SEEK_SET as libc::c_short;
        use std::os::fd::AsRawFd;
        // SAFETY: F_GETLK on a descriptor of ours with a valid flock.
        let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut lk) };
        if rc == 0 && lk.l_type == libc::F_UNLCK as libc::c_short {
            let _ = std::fs::remove_dir_all(e.path());
            remove_huge_files(&name);
            log!(info, "port owner: removed {name}, left by an owner that died");
        }
    }
}

/// Removes DPDK's runtime files of `prefix` (its configuration, memory
/// maps and multi-process sockets, about 2 MB in a tmpfs) and its huge
/// page files: every process of the port is gone, and the next owner of
/// the port makes new ones.
fn remove_runtime_dir(prefix: &str) {
    let dir = format!("{}/{prefix}", runtime_base());
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        log!(info, "port owner: cannot remove {dir}: {e}");
    }
    remove_huge_files(prefix);
}

/// Removes the huge page files DPDK made for `prefix` (`PREFIXmap_N` in
/// each hugetlbfs mount). DPDK keeps them after its primary ends, for
/// secondaries to map: left there, they hold the owner's 64 MB of huge
/// pages until some later DPDK primary sweeps them.
fn remove_huge_files(prefix: &str) {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    let start = format!("{prefix}map_");
    let mut removed = 0;
    for dir in mounts.lines().filter_map(|l| {
        let mut f = l.split_whitespace();
        let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "hugetlbfs").then_some(at)
    }) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&start) && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        log!(info, "port owner: removed {removed} huge page files of {prefix}");
    }
}

/// Accepts one connection, waiting at most `limit`.
fn accept(listener: i32, limit: Duration) -> Option<i32> {
    let mut p = [libc::pollfd {
        fd: listener,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: a null mask: the thread's own.
    if unsafe { sys::ppoll(&mut p, Some(limit), std::ptr::null()) }.ok()? == 0 {
        return None;
    }
    // SAFETY: accept4 with null address arguments.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_accept4,
            listener,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
            libc::SOCK_CLOEXEC,
        )
    };
    (fd >= 0).then_some(fd as i32)
}

/// Starts DPDK and the port; see the module documentation.
fn start(cfg: &Config, vdev: &str, port: &str, key: u64) -> Result<Port, String> {
    hugepages_ready(procs::OWNER_MEM_MB)?;
    sweep_stale_runtime_dirs(&procs::file_prefix(key));
    let queues = queues_for(vdev, cfg.port_queues, "port owner: ACCEL_PORT_QUEUES");
    let prefix = procs::file_prefix(key);
    let mut args = Eal::multi_process_args(&prefix, false, procs::OWNER_MEM_MB, &[vdev]);
    args.extend([
        "--lcores".to_owned(),
        format!("0@{}", worker::first_cpu()),
        "--no-telemetry".to_owned(),
    ]);
    set_log_echo(match cfg.log_level {
        crate::logging::Level::Debug => u32::MAX,
        crate::logging::Level::Info => 5,
        _ => 0,
    });
    let eal = Eal::init(&args).map_err(|e| format!("DPDK did not start ({}): {e}", args.join(" ")))?;
    let config = DpdkConfig {
        rx_queues: queues,
        tx_queues: queues,
        rx_desc: 256,
        tx_desc: 256,
        extra_mbufs: 2048 * u32::from(queues),
        rx_interrupts: false,
        ..DpdkConfig::default()
    };
    let dev = DpdkDevice::open(&eal, port, config).map_err(|e| format!("port {port}: {e}"))?;
    let mut taps = None;
    let mut lanes = Vec::new();
    let mut lanes_pi = false;
    if let Some(iface) = netns::tap_iface(vdev) {
        let mut t = TapQueues::find(iface, queues).map_err(|e| format!("port {port}: {e}"))?;
        t.quiet_signals().map_err(|e| format!("port {port}: {e}"))?;
        for q in 1..queues {
            t.set_attached(q, false)
                .map_err(|e| format!("port {port}: {e}"))?;
        }
        taps = Some(t);
        if cfg.lanes > 0 {
            // Before the move: there the name no longer reaches it.
            let opened = crate::engine::lanes::check(iface).and_then(|pi| {
                let n = cfg.lanes.min((procs::MAX_FDS - usize::from(queues)) as u16);
                crate::engine::lanes::open(iface, n).map(|fds| (fds, pi))
            });
            match opened {
                Ok((fds, pi)) => {
                    log!(info, "port owner: {} lanes of {iface}", fds.len());
                    lanes = fds;
                    lanes_pi = pi;
                }
                Err(why) => log!(info, "port owner: no lanes: {why}"),
            }
        }
        let ns = String::from_utf8_lossy(cfg.tap_netns.as_bytes()).into_owned();
        if !ns.is_empty() {
            let ip = cfg
                .ip
                .ok_or("ACCEL_TAP_NETNS needs ACCEL_IP (for the kernel side's address)")?;
            let peer_ip = cfg.tap_peer.unwrap_or(Cidr {
                addr: worker::first_host(ip.addr, ip.prefix_len),
                prefix_len: ip.prefix_len,
            });
            netns::move_tap(iface, &ns, peer_ip)?;
            log!(info, "port owner: {iface} moved into namespace {ns} as {peer_ip}");
        }
    }
    log!(
        info,
        "port owner: {port} up with {queues} queue pairs, pool {}, prefix {prefix}",
        dev.mempool_name()
    );
    Ok(Port {
        dev,
        _eal: eal,
        taps,
        prefix,
        held: vec![None; usize::from(queues)],
        secret: sys::random16(),
        lanes,
        pi: lanes_pi,
        lane_holder: None,
        steered: false,
    })
}

impl Port {
    /// Serves request `text` of client `c`.
    fn request(&mut self, c: &mut Client, text: &str) -> Result<(), String> {
        let mut words = text.split_whitespace();
        let (Some("take"), Some(n), Some(pid)) = (words.next(), words.next(), words.next()) else {
            return Err("not a request".into());
        };
        let n: usize = n.parse().map_err(|_| "a bad count")?;
        c.pid = pid.parse().map_err(|_| "a bad pid")?;
        c.lanes = 0;
        // `upto`: as many of the n as are free, one at least (a process
        // that did not set ACCEL_QUEUES).
        let mut upto = false;
        for w in words {
            match w.strip_prefix("lanes=") {
                Some(m) => c.lanes = m.parse().map_err(|_| "a bad lane count")?,
                None if w == "upto" => upto = true,
                None => return Err("not a request".into()),
            }
        }
        if !c.queues.is_empty() || c.waiting.is_some() {
            return Err("this process holds queue pairs already".into());
        }
        if n == 0 {
            return Err("0 queue pairs asked".into());
        }
        // Without ACCEL_QUEUES: what is free (waited for below if none is).
        let n = if upto {
            upto_count(n, self.free(n).len(), self.held.len())
        } else {
            n
        };
        if n > self.held.len() {
            // As a port of its own would be opened: with what there is.
            log!(
                warn,
                "port owner: process {} asked for {n} queue pairs of {}; it gets {} (ACCEL_PORT_QUEUES sets how many the port has)",
                c.pid,
                self.held.len(),
                self.held.len()
            );
        }
        let n = n.min(self.held.len());
        if self.free(n).len() < n {
            // Others hold them: wait (in the order asked) for some to
            // leave, WAIT_MAX at most.
            log!(
                info,
                "port owner: process {} waits for {n} queue pairs ({} of {} free)",
                c.pid,
                self.free(n).len(),
                self.held.len()
            );
            c.waiting = Some((n, Instant::now()));
            return Ok(());
        }
        self.grant(c, n)
    }

    /// The lowest `n` free queue pairs (fewer if fewer are free).
    fn free(&self, n: usize) -> Vec<u16> {
        (0..self.held.len() as u16)
            .filter(|&q| self.held.get(usize::from(q)).is_some_and(Option::is_none))
            .take(n)
            .collect()
    }

    /// Answers the processes that wait for queue pairs, first come first:
    /// with them if they are free now, with an error once they waited
    /// [`WAIT_MAX`].
    fn serve_waiting(&mut self, clients: &mut [Client]) {
        let mut order: Vec<(Instant, usize)> = clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.waiting.map(|(_, since)| (since, i)))
            .collect();
        order.sort_unstable();
        for (_, i) in order {
            let Some(c) = clients.get_mut(i) else { continue };
            let Some((n, since)) = c.waiting else { continue };
            if self.free(n).len() >= n {
                c.waiting = None;
                log!(
                    info,
                    "port owner: process {} waited {} ms for its queue pairs",
                    c.pid,
                    since.elapsed().as_millis()
                );
                if let Err(why) = self.grant(c, n) {
                    log!(warn, "port owner: process {}: {why}", c.pid);
                    let _ = procs::send_msg(c.fd, format!("err {why}").as_bytes(), &[]);
                }
            } else if since.elapsed() >= WAIT_MAX {
                c.waiting = None;
                let why = format!(
                    "{n} queue pairs asked, {} of {} free after waiting {} s for others to leave (ACCEL_PORT_QUEUES sets how many the port has)",
                    self.free(n).len(),
                    self.held.len(),
                    WAIT_MAX.as_secs()
                );
                log!(warn, "port owner: process {}: {why}", c.pid);
                let _ = procs::send_msg(c.fd, format!("err {why}").as_bytes(), &[]);
            }
        }
    }

    /// Gives `c` the lowest `n` free queue pairs (they are free) and tells
    /// it.
    fn grant(&mut self, c: &mut Client, n: usize) -> Result<(), String> {
        let free = self.free(n);
        let mut fds = Vec::new();
        if let Some(t) = self.taps.as_mut() {
            for &q in &free {
                t.set_attached(q, true).map_err(|e| e.to_string())?;
                fds.extend(t.fd(q));
            }
        }
        for &q in &free {
            if let Some(h) = self.held.get_mut(usize::from(q)) {
                *h = Some(c.pid);
            }
        }
        c.queues = free.clone();
        self.detach_unheld();
        let lanes = self.lanes_for(c, fds.len());
        fds.extend(self.lanes.iter().take(usize::from(lanes)));
        // The owner sets the lanes' steering program (the holder gets its
        // maps): so it alone takes it off when another process comes,
        // whatever the holder is doing then.
        let maps = match fds.first() {
            Some(&queue_fd) if lanes > 0 => match self
                .line_up(&free)
                .and_then(|ports| crate::engine::steer::load(queue_fd, lanes, &ports))
            {
                Ok(m) => Some(m),
                Err(why) => {
                    log!(info, "port owner: lanes without a steering program ({why})");
                    None
                }
            },
            _ => None,
        };
        if let Some((flows, queues)) = maps {
            fds.extend([flows, queues]);
            self.steered = true;
        }
        let grant = Grant {
            port: self.dev.name().to_owned(),
            pool: self.dev.mempool_name().to_owned(),
            prefix: self.prefix.clone(),
            queues: self.held.len() as u16,
            take: free,
            secret: self.secret,
            lanes,
            pi: self.pi,
            steer: maps.is_some(),
        };
        log!(
            info,
            "port owner: process {} takes queue pairs {:?}",
            c.pid,
            grant.take
        );
        let sent =
            procs::send_msg(c.fd, grant.reply().as_bytes(), &fds).map_err(|e| format!("send: errno {e}"));
        // The holder's copies and the program keep the maps.
        if let Some((flows, queues)) = maps {
            sys::close(flows);
            sys::close(queues);
        }
        sent
    }

    /// How many lanes `c`, just granted its queue pairs, gets along with
    /// them (`fds` descriptors go already): those it asked for, if it is
    /// alone on the port and nobody holds the lanes.
    /// A process that comes to share the port with the lanes' holder ends
    /// their steering program, which would send it no frame (every frame
    /// of no lane goes to the holder's queue): the lanes go on with the
    /// interface's own choice of queue.
    fn lanes_for(&mut self, c: &Client, fds: usize) -> u16 {
        let alone = self.held.iter().all(|h| h.is_none() || *h == Some(c.pid));
        if c.lanes > 0 && alone && self.lane_holder.is_none() && !self.lanes.is_empty() {
            // One message carries them all, and the steering program's two
            // maps after them.
            let room = procs::MAX_FDS.saturating_sub(fds + 2);
            let n = c.lanes.min(self.lanes.len() as u16).min(room as u16);
            if n > 0 {
                self.lane_holder = Some(c.fd);
            }
            return n;
        }
        if !alone {
            self.unsteer("another process shares the port");
        }
        0
    }

    /// The interface's queue index of each of `queues` (the queue pairs of a
    /// process alone on the port, attached, every other one detached), for
    /// the lanes' steering program. The kernel numbers a TAP's attached
    /// queues in the order they were attached, and a detach moves the last
    /// into the gap, so after the port's history the order is unknown:
    /// all but the last are detached and attached again in order, which
    /// makes the last index 0 and the others 1, 2, ... Frames that come to
    /// a queue while it is detached are lost (TCP sends them again); the
    /// holder has not started on them yet.
    fn line_up(&mut self, queues: &[u16]) -> Result<Vec<u32>, String> {
        let Some((_, rest)) = queues.split_last() else {
            return Err("no queue pair".into());
        };
        if rest.is_empty() {
            return Ok(vec![0]);
        }
        let t = self.taps.as_mut().ok_or("no TAP queues")?;
        let attached: Vec<u16> = (0..self.held.len() as u16)
            .filter(|&q| t.is_attached(q))
            .collect();
        let mut mine = queues.to_vec();
        mine.sort_unstable();
        if attached != mine {
            return Err(format!(
                "queues {attached:?} attached, the holder's are {queues:?}"
            ));
        }
        for on in [false, true] {
            for &q in rest {
                t.set_attached(q, on).map_err(|e| e.to_string())?;
            }
        }
        Ok((0..queues.len() as u32)
            .map(|i| (i + 1) % queues.len() as u32)
            .collect())
    }

    /// Removes the lanes' steering program, if it is on, for `why`.
    fn unsteer(&mut self, why: &str) {
        if !std::mem::take(&mut self.steered) {
            return;
        }
        // Through an attached queue (a detached one has no interface).
        let Some(t) = self.taps.as_ref() else { return };
        let Some(fd) = (0..self.held.len() as u16)
            .find(|&q| t.is_attached(q))
            .and_then(|q| t.fd(q))
        else {
            return;
        };
        match crate::engine::steer::Steering::remove(fd) {
            Ok(()) => log!(info, "port owner: the lanes' steering program is off: {why}"),
            Err(e) => log!(
                info,
                "port owner: removing the lanes' steering program: errno {e}"
            ),
        }
    }

    /// Gives back what `c` held.
    fn release(&mut self, c: &Client) {
        for &q in &c.queues {
            if let Some(h) = self.held.get_mut(usize::from(q)) {
                *h = None;
            }
        }
        if self.lane_holder == Some(c.fd) {
            self.unsteer("the process that held the lanes left");
            // Frames the interface would hand to them now reach nobody.
            for &fd in &self.lanes {
                let _ = accel_stack::phy::dpdk::tap_queues::set_queue(fd, false);
            }
            self.lane_holder = None;
        }
        self.detach_unheld();
        if !c.queues.is_empty() {
            log!(
                info,
                "port owner: process {} left; queue pairs {:?} are free",
                c.pid,
                c.queues
            );
        }
    }

    /// Detaches every queue nobody holds (but the last attached one).
    fn detach_unheld(&mut self) {
        let Some(t) = self.taps.as_mut() else { return };
        for (q, h) in self.held.iter().enumerate() {
            if h.is_none() && t.is_attached(q as u16) {
                // The last attached queue stays (EBUSY): nobody polls it.
                let _ = t.set_attached(q as u16, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_net_tap_port_is_opened_with_at_most_four_queue_pairs() {
        let tap = "net_tap0,iface=acc-x";
        assert_eq!(queues_for(tap, 8, "ACCEL_QUEUES"), TAP_MAX_QUEUES);
        assert_eq!(queues_for(tap, 3, "ACCEL_QUEUES"), 3);
        assert_eq!(queues_for(tap, 0, "ACCEL_QUEUES"), 1);
        // memif has no such limit.
        assert_eq!(queues_for("net_memif0,role=server", 8, "ACCEL_QUEUES"), 8);
    }

    #[test]
    fn a_process_that_did_not_set_its_queues_takes_what_is_free_up_to_half() {
        // Two of four, all free: two.
        assert_eq!(upto_count(2, 4, 4), 2);
        // One free: one; none: one, waited for.
        assert_eq!(upto_count(2, 1, 4), 1);
        assert_eq!(upto_count(2, 0, 4), 1);
        // Four asked of four: half, the rest for those who come later.
        assert_eq!(upto_count(4, 4, 4), 2);
        // A port of one queue pair, or three.
        assert_eq!(upto_count(2, 1, 1), 1);
        assert_eq!(upto_count(4, 3, 3), 2);
    }

    #[test]
    fn a_new_owner_waits_for_the_previous_one_to_be_gone() {
        let name = format!("accel-owner-test-{}", sys::getpid());
        // The previous owner: holds the mark for 300 ms, then exits.
        let (addr, len) = procs::abstract_addr(&format!("{name}-life"));
        let old = procs::seqpacket().unwrap();
        // SAFETY: `addr` is a sockaddr_un of `len` bytes.
        let rc = unsafe { libc::syscall(libc::SYS_bind, old, &addr as *const libc::sockaddr_un, len) };
        assert_eq!(rc, 0, "errno {}", sys::errno());
        let t = Instant::now();
        let gone = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            sys::close(old);
        });
        outlive_predecessor(&name).unwrap();
        let waited = t.elapsed();
        gone.join().unwrap();
        assert!(
            waited >= Duration::from_millis(300),
            "went ahead after {waited:?}"
        );
        // And now this one holds the mark: a third must wait for it.
        let third = procs::seqpacket().unwrap();
        // SAFETY: as above.
        let rc = unsafe { libc::syscall(libc::SYS_bind, third, &addr as *const libc::sockaddr_un, len) };
        let e = sys::errno();
        sys::close(third);
        assert_eq!((rc, e), (-1, libc::EADDRINUSE));
    }
}
