//! `cargo run --release -p accel-bench --features dpdk --bin dpdk`: the
//! stack over DPDK between two processes, raw DPDK forwarding, the kernel's
//! loopback TCP and the CPU an idle stack costs, one `name value unit` line
//! each, all measured in this run (as root: the idle net_tap measurement
//! creates a network namespace; not as root it is left out, saying so).
//!
//! This process (the client, 198.18.1.2) re-executes itself as the peer
//! (198.18.1.1); they share a `net_memif0` port (the peer the memif
//! server, a socket in /tmp), each its own EAL (`--no-huge -m 256
//! --no-shconf --no-pci`, its own `--file-prefix`), each pinned to its own
//! CPU (the first two this process may use). Each runs one stack on the
//! port, driven by the real-time driver of the stack's DPDK tests
//! (`stack/tests/dpdk_net/driver.rs`): polling, and when idle spinning
//! 100 µs then sleeping 50 µs growing to 1 ms (memif has no Rx interrupt in
//! DPDK 22.11). TCP runs with `TCP_NODELAY` and 1 MiB buffers on both
//! sides; memif has no checksum offload, so checksums are computed in
//! software. Release build, `panic = "abort"`: any failed guard ends the
//! run with a non-zero status.
//!
//! - `rr_us_p50`, `rr_us_p99`: 64-byte request/response round trips on one
//!   connection (the peer echoes), 2,000 rounds of warm-up then 50,000
//!   measured, each timed from the request's `send` to the last response
//!   byte's `recv` (both stacks' processing, memif both ways, the pollers'
//!   reaction); median and 99th percentile, microseconds.
//! - `bulk_gbps`: a stream of 1 GiB client→peer; the peer checks every
//!   byte (byte `i` is `i mod 251`) and answers the count at end of stream.
//!   Payload Gbit/s (10^9), from the established connection to the answer;
//!   the best of 3 streams.
//! - `echo_mpps`: 256 connections each keeping one 64-byte message in
//!   flight (send, wait for the echo, check it, send the next): echoes
//!   completed per second, in millions: the best of 5 windows of 0.5 s,
//!   after 0.5 s of warm-up.
//!   Each echo is one data segment each way; `echo_frames_per_msg` is the
//!   frames the client sent per echo (1.00 when every ACK rides on data).
//! - `raw_mpps`: then the same two processes, stacks no longer polled,
//!   forward raw frames: the client keeps 256 frames of 130 bytes (the size
//!   of those segments) in flight, the peer sends each back in the same
//!   mbuf with the addresses swapped, and the client checks each (order,
//!   contents). Echoes per second, in millions: the best of 5 windows of
//!   0.5 s, after 0.3 s.
//! - `echo_over_raw`: `echo_mpps / raw_mpps`, the share of the raw frame
//!   rate the stack keeps (the target is ≥ 0.5).
//! - `kernel_rr_us_p50`, `kernel_rr_us_p99`, `kernel_bulk_gbps`: the same
//!   definitions for the kernel's TCP on 127.0.0.1 (`std::net`, two threads
//!   on the same two CPUs, `TCP_NODELAY`, best of 3 streams), measured
//!   first.
//! - `idle_cpu_pct_tap`, `idle_cpu_pct_memif`: a stack with a listener and
//!   nothing to do for 10 s (`ACCEL_BENCH_IDLE_S`), one on net_tap (kernel
//!   end in a namespace) sleeping on its Rx interrupt descriptor, one on
//!   memif (no peer) backing off; the process's CPU time (user + system,
//!   all threads, `getrusage`) over that time, in percent of one CPU. The
//!   two run at the same time, unpinned.
//!
//! `ACCEL_BENCH_ONLY=echo` runs only `echo_mpps` (with
//! `echo_frames_per_msg`), `raw_mpps` and `echo_over_raw`, for profiling;
//! `ACCEL_BENCH_ONLY=rr` only `rr_us_p50`, `rr_us_p99` and `rr_per_s`
//! (round trips per second, one after the other) and the same three of a
//! raw frame ping-pong, `raw_rr_*` (one 130-byte frame in flight, both
//! ends busy polling the port with no stack: the limit of the memif path,
//! which `scripts/bench` puts beside its round trips);
//! `ACCEL_BENCH_LOOP_STATS=1` adds the drivers' loop figures on stderr
//! (busy time, frames per receiving poll) and `ACCEL_BENCH_RX_BUDGET` sets
//! both stacks' `rx_budget`.
//!
//! Rates are best-of (as `accel_bench::ns_per_iter` does) because the
//! machine's two CPUs are shared with whatever else runs: a busy-polling
//! pair is hurt by any other runnable thread. Percentiles are over all
//! rounds, so `rr_us_p99` shows such interference.
//!
//! Guards: wrong bytes anywhere (echoes, the stream, raw frames), a lost or
//! refused raw frame, a connection failing, or any wait without progress
//! for 2 s fails the run loudly; so does a peer exiting with an error.

#[allow(dead_code)]
#[path = "../../../stack/tests/dpdk_net/driver.rs"]
mod driver;

#[path = "dpdk/apps.rs"]
mod apps;
#[path = "dpdk/kernel.rs"]
mod kernel;

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as Clock};

use accel_bench::report;
use accel_stack::iface::IfaceConfig;
use accel_stack::phy::dpdk::{DpdkConfig, DpdkDevice, Eal};
use accel_stack::phy::Device;
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::EthernetAddress;

use driver::{allowed_cpus, pin_to, process_cpu, Driver};

/// Set in a child to its role.
const ROLE: &str = "ACCEL_BENCH_DPDK_ROLE";
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const ECHO_PORT: u16 = 7001;
const SINK_PORT: u16 = 7002;
const CTL_PORT: u16 = 7003;
/// Message size of the round trips and echoes.
const MSG: usize = 64;
const RR_WARM: usize = 2_000;
const RR_ROUNDS: usize = 50_000;
/// Bytes of the bulk streams.
const BULK: u64 = 1 << 30;
/// Messages (or raw frames) in flight.
const FLOWS: usize = 256;

/// The stream pattern (byte `i` is `i mod 251`), long enough for a 256 KiB
/// slice from any offset below 251.
fn pattern() -> Vec<u8> {
    (0..251 * 1100).map(|i| (i % 251) as u8).collect()
}

/// Checks a stream against the pattern.
struct Checker {
    pattern: Vec<u8>,
    pos: u64,
    ok: bool,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            pattern: pattern(),
            pos: 0,
            ok: true,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let off = (self.pos % 251) as usize;
            let n = data.len().min(self.pattern.len() - off);
            self.ok &= data[..n] == self.pattern[off..off + n];
            self.pos += n as u64;
            data = &data[n..];
        }
    }

    /// Bytes verified, or `u64::MAX` if any differed.
    fn result(&self) -> u64 {
        if self.ok {
            self.pos
        } else {
            u64::MAX
        }
    }
}

/// Median and 99th percentile in microseconds.
fn percentiles(rtts: &mut [Duration]) -> (f64, f64) {
    assert!(!rtts.is_empty());
    rtts.sort_unstable();
    let at = |q: usize| rtts[(rtts.len() * q / 100).min(rtts.len() - 1)].as_secs_f64() * 1e6;
    (at(50), at(99))
}

/// This process's DPDK file prefix.
fn prefix() -> String {
    std::env::var("ACCEL_BENCH_PREFIX").unwrap_or_else(|_| format!("accel-bench-{}", std::process::id()))
}

/// The EAL arguments: accel's defaults, quieter, this process's prefix,
/// and any in `ACCEL_BENCH_EAL_EXTRA` (e.g. `--log-level=pmd.net.memif:debug`).
fn eal_args(vdev: &str) -> Vec<String> {
    let mut args = Eal::default_args(&[vdev]);
    args.extend(["--log-level=*:warning".into(), "--file-prefix".into(), prefix()]);
    if let Ok(extra) = std::env::var("ACCEL_BENCH_EAL_EXTRA") {
        args.extend(extra.split_whitespace().map(String::from));
    }
    args
}

fn iface_config(ip: Ipv4Addr, mac: EthernetAddress) -> IfaceConfig {
    let mut cfg = IfaceConfig::new(mac, ip, 24);
    if let Ok(b) = std::env::var("ACCEL_BENCH_RX_BUDGET") {
        cfg.rx_budget = b.parse().expect("ACCEL_BENCH_RX_BUDGET");
    }
    let pid = std::process::id().to_le_bytes();
    cfg.secret = [
        ip.octets()[3],
        pid[0],
        pid[1],
        pid[2],
        pid[3],
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
    ];
    cfg
}

fn tcp_config() -> TcpConfig {
    TcpConfig {
        nodelay: true,
        send_buffer: 1 << 20,
        recv_buffer: 1 << 20,
        ..TcpConfig::default()
    }
}

/// Opens `net_memif0` in `role` on socket `sock`, after pinning to `cpu`.
fn memif(role: &str, sock: &str, cpu: Option<usize>) -> (Eal, DpdkDevice) {
    if let Some(cpu) = cpu {
        pin_to(cpu);
    }
    let vdev = format!("net_memif0,role={role},socket={sock}");
    let eal = Eal::init(&eal_args(&vdev)).unwrap_or_else(|e| panic!("EAL with {vdev}: {e}"));
    let dev = DpdkDevice::open(&eal, "net_memif0", DpdkConfig::default()).expect("open net_memif0");
    (eal, dev)
}

/// This program re-executed in a role, its output in files.
struct Kid {
    name: String,
    child: Option<Child>,
    out: PathBuf,
    prefix: String,
}

impl Kid {
    fn spawn(role: &str, env: &[(&str, String)]) -> Kid {
        let prefix = format!("accel-bench-{}-{role}", std::process::id());
        let out = std::env::temp_dir().join(format!("{prefix}.out"));
        let child = Command::new(std::env::current_exe().expect("this program"))
            .env(ROLE, role)
            .env("ACCEL_BENCH_PREFIX", &prefix)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("an output file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {role}: {e}"));
        Kid {
            name: role.to_owned(),
            child: Some(child),
            out,
            prefix,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for `needle` in its output (bounded).
    fn wait_for(&mut self, needle: &str, limit: Duration) {
        let end = Clock::now() + limit;
        while !self.stdout().contains(needle) {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before {needle:?}: {}",
                    self.name,
                    self.stdout()
                );
            }
            assert!(
                Clock::now() < end,
                "no {needle:?} from {} within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for it to exit successfully (bounded); returns its output.
    fn finish(&mut self, limit: Duration) -> String {
        let mut child = self.child.take().unwrap();
        let end = Clock::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Clock::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} still running after {limit:?}: {}", self.name, self.stdout());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            status.success(),
            "{} failed ({status}): {}",
            self.name,
            self.stdout()
        );
        self.stdout()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.out);
        for dir in ["/var/run/dpdk", "/run/dpdk"] {
            let _ = std::fs::remove_dir_all(format!("{dir}/{}", self.prefix));
        }
    }
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("peer") => peer(),
        Ok("idle_tap") => idle(true),
        Ok("idle_memif") => idle(false),
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => client(),
    }
}

fn client() {
    let cpus = allowed_cpus();
    let (a, b) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    if a == b {
        eprintln!("one CPU only: the two processes share it");
    }

    // ACCEL_BENCH_ONLY=echo: only the echo and raw measurements (for
    // profiling them: `perf record` over the whole run mixes the phases);
    // ACCEL_BENCH_ONLY=rr: only the round trips, the stack's and raw
    // frames' (scripts/bench's limits of the memif path).
    let only = std::env::var("ACCEL_BENCH_ONLY").unwrap_or_default();
    let (only_echo, only_rr) = (only == "echo", only == "rr");
    if !only_echo && !only_rr {
        let (p50, p99) = kernel::rr(a, b);
        report("kernel_rr_us_p50", p50, "us");
        report("kernel_rr_us_p99", p99, "us");
        let kernel_bulk = (0..3).map(|_| kernel::bulk(a, b, BULK)).fold(0.0, f64::max);
        report("kernel_bulk_gbps", kernel_bulk, "Gbit/s");
    }

    let sock = format!("/tmp/accel-bench-{}.sock", std::process::id());
    let _ = std::fs::remove_file(&sock);
    let mut peer = Kid::spawn(
        "peer",
        &[
            ("ACCEL_BENCH_SOCK", sock.clone()),
            ("ACCEL_BENCH_CPU", b.to_string()),
        ],
    );
    peer.wait_for("READY", Duration::from_secs(30));
    let (_eal, dev) = memif("client", &sock, Some(a));
    let end = Clock::now() + Duration::from_secs(10);
    while !dev.link().is_ok_and(|l| l.up) {
        assert!(Clock::now() < end, "the memif link did not come up within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut drv = Driver::new(iface_config(CLIENT_IP, dev.mac()), tcp_config(), dev);

    if only_rr {
        round_trips(&mut drv, "rr");
        apps::request_raw(&mut drv);
        let mut rtts = apps::raw_rr(&mut drv, RR_WARM, RR_ROUNDS);
        report_round_trips(&mut rtts, "raw_rr");
    } else {
        if !only_echo {
            round_trips(&mut drv, "rr");
            let bulk = (0..3).map(|_| apps::bulk(&mut drv, BULK)).fold(0.0, f64::max);
            report("bulk_gbps", bulk, "Gbit/s");
        }
        let flows = std::env::var("ACCEL_BENCH_FLOWS").map_or(FLOWS, |v| v.parse().unwrap());
        let (echo, frames) = apps::echo(
            &mut drv,
            flows,
            Duration::from_millis(500),
            Duration::from_millis(500),
        );
        report("echo_mpps", echo / 1e6, "Mpps");
        report("echo_frames_per_msg", frames, "frames");
        apps::request_raw(&mut drv);
        let raw = apps::raw(
            &mut drv,
            flows,
            Duration::from_millis(300),
            Duration::from_millis(500),
        );
        report("raw_mpps", raw / 1e6, "Mpps");
        report("echo_over_raw", echo / raw, "ratio");
    }
    let out = peer.finish(Duration::from_secs(10));
    assert!(out.contains("RAW_DONE"), "the peer: {out}");
    drop((drv, _eal));
    let _ = std::fs::remove_file(&sock);
    remove_runtime_dir();

    if !only_echo && !only_rr {
        idle_both();
    }
}

/// The stack's 64-byte round trips on one connection, reported as `name_*`.
fn round_trips(drv: &mut Driver, name: &str) {
    let mut rtts = apps::rr(drv, RR_WARM, RR_ROUNDS);
    report_round_trips(&mut rtts, name);
}

/// Reports `name_us_p50` and `name_us_p99` of `rtts`, and `name_per_s`,
/// round trips per second one after the other (the inverse of the mean).
fn report_round_trips(rtts: &mut [Duration], name: &str) {
    let (p50, p99) = percentiles(rtts);
    report(&format!("{name}_us_p50"), p50, "us");
    report(&format!("{name}_us_p99"), p99, "us");
    let total: Duration = rtts.iter().sum();
    report(
        &format!("{name}_per_s"),
        rtts.len() as f64 / total.as_secs_f64(),
        "1/s",
    );
}

fn peer() {
    die_with_parent();
    let sock = std::env::var("ACCEL_BENCH_SOCK").expect("ACCEL_BENCH_SOCK");
    let cpu = std::env::var("ACCEL_BENCH_CPU").ok().and_then(|c| c.parse().ok());
    let (_eal, dev) = memif("server", &sock, cpu);
    let mut drv = Driver::new(iface_config(PEER_IP, dev.mac()), tcp_config(), dev);
    println!("READY");
    apps::peer_stack(&mut drv);
    let echoed = apps::peer_raw(&mut drv);
    println!("RAW_DONE {echoed} frames; {:?}", drv.stack.device.stats());
    // Its work is done and reported: it ends without tearing the port and
    // the EAL down. That teardown, racing the client's on the same memif
    // link, crashed the peer (SIGSEGV after RAW_DONE) in 1 of about 16
    // runs of `scripts/bench --quick rr64_raw`, failing the run.
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

/// Runs both idle measurements at once and reports them.
fn idle_both() {
    let secs = std::env::var("ACCEL_BENCH_IDLE_S").unwrap_or_else(|_| "10".into());
    let limit = Duration::from_secs(secs.parse::<u64>().expect("ACCEL_BENCH_IDLE_S") + 30);
    let pid = std::process::id();
    let root = unsafe_free_euid() == 0;
    let ns = format!("accel-bench-idle-{pid}");
    let mut tap = root.then(|| {
        run(&["ip", "netns", "add", &ns]);
        let env = [
            ("ACCEL_BENCH_NETNS", ns.clone()),
            ("ACCEL_BENCH_IDLE_S", secs.clone()),
        ];
        Kid::spawn("idle_tap", &env)
    });
    if !root {
        eprintln!("idle_cpu_pct_tap left out: net_tap and a namespace need root");
    }
    let sock = format!("/tmp/accel-bench-idle-{pid}.sock");
    let mut memif = Kid::spawn(
        "idle_memif",
        &[("ACCEL_BENCH_SOCK", sock.clone()), ("ACCEL_BENCH_IDLE_S", secs)],
    );
    let pct = |out: String| -> f64 {
        let value = out.lines().find_map(|l| l.strip_prefix("idle_cpu_pct "));
        value
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("an idle_cpu_pct line")
    };
    let tap_pct = tap.as_mut().map(|k| pct(k.finish(limit)));
    let memif_pct = pct(memif.finish(limit));
    if root {
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    }
    let _ = std::fs::remove_file(&sock);
    if let Some(p) = tap_pct {
        report("idle_cpu_pct_tap", p, "%");
    }
    report("idle_cpu_pct_memif", memif_pct, "%");
}

/// Asks the kernel to kill this process when its parent dies (a failed
/// guard aborts the parent without running any clean-up).
fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// Removes DPDK's runtime directory of this process (its EAL is gone).
fn remove_runtime_dir() {
    let prefix = prefix();
    for dir in ["/var/run/dpdk", "/run/dpdk"] {
        let _ = std::fs::remove_dir_all(format!("{dir}/{prefix}"));
    }
}

/// The effective user id, from `/proc/self/status`.
fn unsafe_free_euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or_default();
    line.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Runs a command, panicking with its output if it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stack with a listener and nothing to do; prints `idle_cpu_pct <pct>`.
fn idle(tap: bool) {
    die_with_parent();
    let secs = Duration::from_secs(std::env::var("ACCEL_BENCH_IDLE_S").map_or(10, |s| s.parse().unwrap()));
    let (_eal, dev) = if tap {
        let iface = format!("abidl{}", std::process::id() % 100_000);
        let eal = Eal::init(&eal_args(&format!("net_tap0,iface={iface}"))).expect("EAL with net_tap0");
        let dev = DpdkDevice::open(&eal, "net_tap0", DpdkConfig::default()).expect("open net_tap0");
        let ns = std::env::var("ACCEL_BENCH_NETNS").expect("ACCEL_BENCH_NETNS");
        run(&["ip", "link", "set", "dev", &iface, "netns", &ns]);
        run(&["ip", "-n", &ns, "addr", "add", "198.18.5.1/24", "dev", &iface]);
        run(&["ip", "-n", &ns, "link", "set", &iface, "up"]);
        (eal, dev)
    } else {
        memif(
            "server",
            &std::env::var("ACCEL_BENCH_SOCK").expect("ACCEL_BENCH_SOCK"),
            None,
        )
    };
    let mut drv = Driver::new(
        iface_config(Ipv4Addr::new(198, 18, 5, 2), dev.mac()),
        tcp_config(),
        dev,
    );
    assert_eq!(
        matches!(drv.wait, driver::Wait::Interrupt(_)),
        tap,
        "{:?}",
        drv.wait
    );
    let l = drv.stack.iface.tcp.socket_new();
    let any = std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, ECHO_PORT);
    drv.stack.iface.tcp_bind(l, any).unwrap();
    drv.stack.iface.tcp.listen(l, 16).unwrap();
    let settle = Clock::now();
    let _ = drv.run("settle", Duration::from_secs(1), |_, _| {
        if settle.elapsed() > Duration::from_millis(300) {
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(false)
    });
    let (cpu0, t0) = (process_cpu(), Clock::now());
    drv.run("idle", secs + Duration::from_secs(5), |_, _| {
        if t0.elapsed() >= secs {
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(false)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (cpu, wall) = (process_cpu() - cpu0, t0.elapsed());
    let pct = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
    println!("idle_cpu_pct {pct:.3} ({cpu:?} in {wall:.2?}; {:?})", drv.stats);
}
