//! A real-time driver for one [`Stack`] over a [`DpdkDevice`], polled on
//! the calling thread with the monotonic clock, the application running as
//! a state machine between polls (the stack is single-threaded).
//!
//! [`Driver::run`] loops: poll the stack at `now` (nanoseconds of
//! `std::time::Instant` since the driver started), give the application
//! its turn, and while either did something poll again at once. When
//! neither did, how it waits depends on the port ([`Wait`]):
//!
//! - [`Wait::Interrupt`]: the port's Rx interrupt descriptor
//!   ([`DpdkDevice::rx_interrupt_fd`], net_tap): the interrupt is armed
//!   ([`DpdkDevice::arm_rx_interrupt`]) and the thread sleeps in `ppoll(2)`
//!   on the descriptor for `POLLIN` (it is never read: for net_tap it is
//!   the TAP descriptor itself) until a frame waits, the stack's next timer
//!   is due, or [`Driver::max_sleep`] has passed.
//! - [`Wait::Backoff`]: no interrupt (memif, af_packet in DPDK 22.11): the
//!   loop keeps polling for [`SPIN`] after the last work, then sleeps
//!   [`BACKOFF_MIN`], doubling each idle turn up to [`BACKOFF_MAX`], never
//!   past the stack's next timer; any work resets it.
//!
//! Every run is bounded in time and in polls. The same file is included by
//! the DPDK benchmark (`bench/src/bin/dpdk.rs`).

use std::ops::ControlFlow;
use std::os::fd::RawFd;
use std::time::{Duration, Instant as Clock};

use accel_stack::iface::{IfaceConfig, Interface, Stack};
use accel_stack::phy::dpdk::DpdkDevice;
use accel_stack::phy::Device;
use accel_stack::tcp::TcpConfig;
use accel_stack::Instant;

/// Polling goes on this long after the last work before the first sleep.
pub const SPIN: Duration = Duration::from_micros(100);
/// First sleep of the back-off.
pub const BACKOFF_MIN: Duration = Duration::from_micros(50);
/// Longest sleep of the back-off.
pub const BACKOFF_MAX: Duration = Duration::from_millis(1);
/// Idle turns in a row with a deadline already passed before the driver
/// suspects a busy loop (and sleeps 50 µs rather than spin).
pub const MAX_LATE: u32 = 100;

/// How the driver waits when idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Sleep on the port's Rx interrupt descriptor.
    Interrupt(RawFd),
    /// Spin briefly, then sleep with a growing back-off.
    Backoff,
}

/// How the loop spent its time.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopStats {
    /// Polls of the stack.
    pub polls: u64,
    /// Sleeps (in `ppoll` or `nanosleep`).
    pub sleeps: u64,
    /// Time spent asleep.
    pub slept: Duration,
    /// Sleeps the interrupt descriptor ended.
    pub woken: u64,
    /// Idle turns whose deadline had already passed (polled again at once).
    pub late: u64,
    /// Turns in which the stack or the application did something.
    pub busy_turns: u64,
    /// Time spent in those turns (from a busy turn's clock read to the
    /// next turn's).
    pub busy: Duration,
    /// Polls that received at least one frame.
    pub rx_polls: u64,
    /// Frames those polls received.
    pub rx_frames: u64,
}

/// A stack over a DPDK port, in real time.
pub struct Driver {
    /// The stack.
    pub stack: Stack<DpdkDevice>,
    /// Loop counters.
    pub stats: LoopStats,
    /// How it waits.
    pub wait: Wait,
    /// Longest sleep on the interrupt descriptor.
    pub max_sleep: Duration,
    start: Clock,
    idle_since: Option<Instant>,
    backoff: Duration,
    late_in_row: u32,
}

impl Driver {
    /// A stack at `cfg` over `device`, its clock starting now; it sleeps on
    /// the port's Rx interrupt when the port has one (armed here), else
    /// backs off.
    pub fn new(cfg: IfaceConfig, tcp: TcpConfig, mut device: DpdkDevice) -> Driver {
        let wait = match device.rx_interrupt_fd() {
            Some(fd) if device.arm_rx_interrupt().is_ok() => Wait::Interrupt(fd),
            _ => Wait::Backoff,
        };
        let mut stack = Stack::new(cfg, tcp, device);
        if std::env::var_os("ACCEL_BENCH_FLIGHT").is_some() {
            // The flight recorder on, as the shim runs it (to measure its
            // cost in the benchmark).
            let slots = vec![accel_stack::tcp::flight::FlightSlot::default(); 4096];
            stack
                .iface
                .set_flight_recorder(Box::leak(slots.into_boxed_slice()));
        }
        Driver {
            stack,
            stats: LoopStats::default(),
            wait,
            max_sleep: Duration::from_millis(10),
            start: Clock::now(),
            idle_since: None,
            backoff: BACKOFF_MIN,
            late_in_row: 0,
        }
    }

    /// The stack's time: nanoseconds since the driver started.
    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    /// Polls the stack and runs `app` between polls until `app` breaks
    /// with a result, or fails once `limit` has passed. `app` gets the
    /// interface and the time, and continues with whether it did anything.
    pub fn run<R>(
        &mut self,
        what: &str,
        limit: Duration,
        mut app: impl FnMut(&mut Interface, Instant) -> ControlFlow<R, bool>,
    ) -> Result<R, String> {
        let begin = Clock::now();
        // Compared with each turn's time: an idle turn reads no clock of
        // its own while it spins.
        let end = self.now() + limit;
        // A bound on the count as well as the time: no turn takes less
        // than ~50 ns.
        let max_polls = (limit.as_micros() as u64).saturating_mul(20).max(1000);
        let mut busy_since: Option<Instant> = None;
        for _ in 0..max_polls {
            // One clock read per turn: the application gets the poll's time.
            let now = self.now();
            if let Some(t) = busy_since.take() {
                self.stats.busy += now.saturating_since(t);
            }
            let res = self.stack.poll(now);
            self.stats.polls += 1;
            if res.rx > 0 {
                self.stats.rx_polls += 1;
                self.stats.rx_frames += res.rx as u64;
            }
            let worked = match app(&mut self.stack.iface, now) {
                ControlFlow::Break(r) => return Ok(r),
                ControlFlow::Continue(worked) => worked,
            };
            if res.progress || worked {
                self.stats.busy_turns += 1;
                busy_since = Some(now);
                self.idle_since = None;
                self.backoff = BACKOFF_MIN;
                self.late_in_row = 0;
                continue;
            }
            if now >= end {
                break;
            }
            self.idle(res.next, now);
        }
        Err(format!(
            "{what}: not done after {:?} (limit {limit:?}); loop {:?}; interface {:?}; device {:?}; {:?}",
            begin.elapsed(),
            self.stats,
            self.stack.iface.stats(),
            self.stack.device.stats(),
            self.stack.device.counters(),
        ))
    }

    /// One idle turn at `now`: spin, or sleep as [`Wait`] says, never past
    /// `next`.
    fn idle(&mut self, next: Option<Instant>, now: Instant) {
        let since = *self.idle_since.get_or_insert(now);
        let mut wait = match self.wait {
            Wait::Interrupt(_) => self.max_sleep,
            Wait::Backoff => {
                if now.saturating_since(since) < SPIN {
                    return;
                }
                let w = self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                w
            }
        };
        if let Some(next) = next {
            wait = wait.min(next.saturating_since(self.now()));
        }
        if wait.is_zero() {
            self.stats.late += 1;
            self.late_in_row += 1;
            if self.late_in_row <= MAX_LATE {
                return;
            }
            wait = Duration::from_micros(50);
        } else {
            self.late_in_row = 0;
        }
        let t0 = Clock::now();
        match self.wait {
            Wait::Interrupt(fd) => {
                // net_tap takes this as a no-op (its descriptor is always
                // armed); a NIC needs it before every sleep.
                let _ = self.stack.device.arm_rx_interrupt();
                if sleep_on(fd, wait) {
                    self.stats.woken += 1;
                }
            }
            Wait::Backoff => std::thread::sleep(wait),
        }
        self.stats.sleeps += 1;
        self.stats.slept += t0.elapsed();
    }
}

/// Sleeps in `ppoll` until `fd` is readable or `wait` has passed; true if
/// it became readable. The descriptor is never read.
pub fn sleep_on(fd: RawFd, wait: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
    };
    // SAFETY: `pfd` is one live, writable pollfd and the count says 1; `ts`
    // is a live timespec; a null signal mask leaves the mask alone.
    let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::Interrupted,
            "ppoll on the Rx interrupt: {e}"
        );
    }
    rc > 0 && pfd.revents & libc::POLLIN != 0
}

/// CPU time (user + system, all threads) this process has used so far.
pub fn process_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is writable; RUSAGE_SELF covers every thread.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv =
        |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Pins the calling thread to CPU `cpu` (before `Eal::init`, this also
/// limits the EAL to that CPU's lcore).
pub fn pin_to(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE on any machine we run on.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size given; 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(rc, 0, "pin to CPU {cpu}: {}", std::io::Error::last_os_error());
}

/// CPUs this thread may run on (of the first 64).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and of the size given; 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity: {}", std::io::Error::last_os_error());
    // SAFETY: `set` was filled in above; every index is below CPU_SETSIZE.
    (0..64).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}
