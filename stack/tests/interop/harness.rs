//! What the interop tests share: the bulk-transfer lock, size and CPU
//! pinning, running the driver until the kernel-side programs exit, curl
//! and body checks, the Python echo server, tshark counts.

use std::ops::ControlFlow;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant as Clock};

use accel_stack::iface::Interface;
use accel_stack::Instant;

use super::apps::Pattern;
use super::driver::{Driver, TapLike};
use super::netns::{self, sha256_of_bytes, sha256_of_file, Pinned, Proc, Topo};
use super::scripts;

/// Serialises the bulk transfers: on two cores, two at once would halve
/// each other's throughput.
static BULK: Mutex<()> = Mutex::new(());

pub fn bulk_lock() -> MutexGuard<'static, ()> {
    BULK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes each bulk transfer moves each way: `ACCEL_INTEROP_MB` MiB, 1 GiB
/// by default.
pub fn bulk_bytes() -> u64 {
    let mib: u64 = std::env::var("ACCEL_INTEROP_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    mib << 20
}

/// For a bulk transfer: this thread (the stack) pinned to one CPU, and
/// another for the kernel-side program, when there are two. Unpinned, the
/// scheduler tends to wake the program on the stack's CPU (wake-affine)
/// and the two take turns: on two cores that halves the throughput and
/// makes it erratic.
pub fn pin_for_bulk() -> (Option<Pinned>, Option<usize>) {
    match Pinned::split() {
        Some((pinned, other)) => {
            println!(
                "pinned: the stack's thread on CPU {}, the kernel-side program on CPU {other}",
                pinned.cpu
            );
            (Some(pinned), Some(other))
        }
        None => {
            println!("one CPU: the stack and the kernel-side program share it");
            (None, None)
        }
    }
}

/// Mebibytes per second.
pub fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

/// Runs the driver, with `step` as the application, until every program
/// in `procs` has exited (and `done` holds), failing after `limit`.
pub fn try_run_until_exit<D: TapLike>(
    drv: &mut Driver<D>,
    what: &str,
    limit: Duration,
    procs: &mut [&mut Proc],
    mut step: impl FnMut(&mut Interface, Instant) -> bool,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let mut checked = Clock::now();
    let result = drv.run(what, limit, |iface, now| {
        let worked = step(iface, now);
        // Reaping is a system call per program: not on every poll.
        if checked.elapsed() >= Duration::from_millis(2) {
            checked = Clock::now();
            // Each program is reaped as soon as it ends (`all` would stop
            // at the first one still running), so its `elapsed` is its own
            // run time, which a test may bound.
            let mut all = true;
            for p in procs.iter_mut() {
                all &= p.exited();
            }
            if all && done() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(worked)
    });
    result.map_err(|e| {
        let reports: Vec<String> = procs.iter().map(|p| p.report()).collect();
        format!("{e}\n{}", reports.join("\n"))
    })
}

/// [`try_run_until_exit`], failing the test on a time-out.
pub fn run_until_exit<D: TapLike>(
    drv: &mut Driver<D>,
    what: &str,
    limit: Duration,
    procs: &mut [&mut Proc],
    step: impl FnMut(&mut Interface, Instant) -> bool,
    done: impl FnMut() -> bool,
) {
    if let Err(e) = try_run_until_exit(drv, what, limit, procs, step, done) {
        panic!("{e}");
    }
}

/// A curl fetching each URL of `urls` into its file, printing status,
/// size, speed and connections made for each transfer.
pub fn curl(topo: &Topo, name: &str, extra: &[&str], urls: &[(String, String)]) -> Proc {
    let mut args = vec![
        "curl",
        "-sS",
        "--max-time",
        "50",
        "-w",
        "%{http_code} %{size_download} %{speed_download} %{num_connects}\\n",
    ];
    args.extend_from_slice(extra);
    for (url, out) in urls {
        args.extend_from_slice(&[url.as_str(), "-o", out.as_str()]);
    }
    topo.spawn(name, Duration::from_secs(60), &args)
}

/// Checks that `path` holds exactly the first `len` bytes of the pattern.
pub fn check_body(pattern: &Pattern, path: &std::path::Path, len: usize) {
    let got = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    assert_eq!(got, len as u64, "size of {}", path.display());
    let want = sha256_of_bytes(&pattern.bytes(len));
    assert_eq!(sha256_of_file(path), want, "sha256 of {}", path.display());
}

/// Starts the Python echo server on `port` and waits until it listens.
pub fn start_echo_server(topo: &Topo, port: u16, cpu: Option<usize>) -> Proc {
    let mut server = topo.spawn_on(
        cpu,
        "echo-server",
        Duration::from_secs(170),
        &[
            "python3",
            "-c",
            scripts::ECHO_SERVER,
            &topo.kernel_ip.to_string(),
            &port.to_string(),
        ],
    );
    let end = Clock::now() + Duration::from_secs(10);
    while !server.stdout().contains("LISTENING") {
        assert!(!server.exited(), "echo server ended early: {}", server.report());
        assert!(
            Clock::now() < end,
            "echo server not listening: {}",
            server.report()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server
}

/// Frames of the capture at `path` that match display filter `filter`.
pub fn tshark_count(path: &str, filter: &str) -> usize {
    let out = netns::run(
        "tshark",
        &["-r", path, "-Y", filter, "-T", "fields", "-e", "frame.number"],
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The Python reader that asks for `GET /n` on `port` with a 16 KiB
/// receive buffer and reads nothing for `stall` seconds.
pub fn stalled_reader(topo: &Topo, port: u16, n: usize, stall: &str) -> Proc {
    topo.spawn(
        "stalled-reader",
        Duration::from_secs(30),
        &[
            "python3",
            "-c",
            scripts::STALLED_READER,
            &topo.stack_ip.to_string(),
            &port.to_string(),
            &n.to_string(),
            stall,
        ],
    )
}

/// Checks that the stalled reader got `n` bytes of the pattern with a 200.
pub fn check_stalled_reader(reader: &Proc, pattern: &Pattern, n: usize) {
    reader.expect_success();
    let digest = sha256_of_bytes(&pattern.bytes(n));
    assert_eq!(
        reader.stdout().trim(),
        format!("OK status=200 bytes={n} sha256={digest}"),
        "{}",
        reader.report()
    );
}
