//! A real-time driver: one [`Stack`] over a TAP device, polled on the
//! test's thread with the monotonic clock, the application running as a
//! state machine between polls (the stack is single-threaded).
//!
//! [`Driver::run`] loops: poll the stack at `now` (nanoseconds of
//! `std::time::Instant` since the driver started), give the application its
//! turn, and when neither did anything sleep in `ppoll(2)` on the TAP's
//! descriptor until a frame arrives, the stack's next timer
//! ([`PollResult::next`](accel_stack::iface::PollResult)) or a fault
//! injector's next release is due, or 1 ms has passed, whichever is first
//! (the application may be waiting for a program to exit). While there is
//! work it polls back to back. Every run is bounded in time and in polls.
//!
//! The device may be the bare [`TapDevice`], a [`PcapWriter`] capturing
//! around it, or a [`FaultInjector`] losing some of what it receives:
//! [`TapLike`] gives the driver the descriptor under each.

use std::io::Write;
use std::ops::ControlFlow;
use std::time::{Duration, Instant as Clock};

use accel_stack::iface::{IfaceConfig, Interface, Stack};
use accel_stack::phy::fault::FaultInjector;
use accel_stack::phy::pcap::PcapWriter;
use accel_stack::phy::tap::TapDevice;
use accel_stack::phy::Device;
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::EthernetAddress;
use accel_stack::Instant;

/// Longest sleep between polls when nothing is due.
pub const MAX_SLEEP: Duration = Duration::from_millis(1);
/// Idle turns in a row with a deadline already passed before the driver
/// suspects a busy loop.
pub const MAX_LATE: u32 = 100;

/// A device with a TAP at the bottom.
pub trait TapLike: Device {
    /// The TAP device.
    fn tap(&self) -> &TapDevice;

    /// When a frame held back by the device is due, if any.
    fn next_release(&self) -> Option<Instant> {
        None
    }
}

impl TapLike for TapDevice {
    fn tap(&self) -> &TapDevice {
        self
    }
}

impl<W: Write> TapLike for PcapWriter<TapDevice, W> {
    fn tap(&self) -> &TapDevice {
        self.inner()
    }
}

impl TapLike for FaultInjector<TapDevice> {
    fn tap(&self) -> &TapDevice {
        self.inner()
    }

    fn next_release(&self) -> Option<Instant> {
        FaultInjector::next_release(self)
    }
}

/// How the loop spent its time.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopStats {
    /// Polls of the stack.
    pub polls: u64,
    /// Sleeps in `ppoll`.
    pub sleeps: u64,
    /// Time spent asleep.
    pub slept: Duration,
    /// Idle turns whose next deadline had already passed when the loop
    /// was about to sleep (the application took that long): polled again
    /// at once.
    pub late: u64,
    /// Of those, turns that followed more than [`MAX_LATE`] such turns in a
    /// row: the stack kept asking to be polled at once with nothing to do.
    /// The driver then sleeps 50 µs rather than spin.
    pub stuck: u64,
}

/// A stack over a TAP, in real time.
pub struct Driver<D: TapLike> {
    /// The stack.
    pub stack: Stack<D>,
    start: Clock,
    /// Loop counters.
    pub stats: LoopStats,
    late_in_row: u32,
}

/// The interface configuration the tests use: `ip`/24, a locally
/// administered MAC ending in the third octet, a per-process secret.
pub fn iface_config(ip: std::net::Ipv4Addr) -> IfaceConfig {
    let o = ip.octets();
    let mut cfg = IfaceConfig::new(EthernetAddress([0x02, 0xac, 0, 0, o[2], o[3]]), ip, 24);
    let pid = std::process::id().to_le_bytes();
    cfg.secret = [
        o[2], o[3], pid[0], pid[1], pid[2], pid[3], 7, 6, 5, 4, 3, 2, 1, 0, 0x5a, 0xa5,
    ];
    cfg
}

impl<D: TapLike> Driver<D> {
    /// A stack at `cfg` over `device`, its clock starting now.
    pub fn new(cfg: IfaceConfig, tcp: TcpConfig, device: D) -> Driver<D> {
        Driver {
            stack: Stack::new(cfg, tcp, device),
            start: Clock::now(),
            stats: LoopStats::default(),
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
        let end = begin + limit;
        // A bound on the count as well as the time: no poll takes less
        // than a few hundred nanoseconds.
        let max_polls = (limit.as_micros() as u64).saturating_mul(4).max(1000);
        for _ in 0..max_polls {
            let res = self.stack.poll(self.now());
            self.stats.polls += 1;
            let now = self.now();
            let worked = match app(&mut self.stack.iface, now) {
                ControlFlow::Break(r) => return Ok(r),
                ControlFlow::Continue(worked) => worked,
            };
            if Clock::now() >= end {
                break;
            }
            if res.progress || worked {
                self.late_in_row = 0;
                continue;
            }
            self.sleep(res.next);
        }
        Err(format!(
            "{what}: not done after {:?} (limit {limit:?}); loop {:?}; interface {:?}; device {:?}",
            begin.elapsed(),
            self.stats,
            self.stack.iface.stats(),
            self.stack.device.stats()
        ))
    }

    /// Sleeps until the TAP is readable or the next deadline, at most
    /// [`MAX_SLEEP`].
    fn sleep(&mut self, next: Option<Instant>) {
        let now = self.now();
        let mut wake = now + MAX_SLEEP;
        for t in [next, self.stack.device.next_release()].into_iter().flatten() {
            wake = wake.min(t);
        }
        let mut wait = wake.saturating_since(now);
        if wait.is_zero() {
            self.stats.late += 1;
            self.late_in_row += 1;
            if self.late_in_row <= MAX_LATE {
                return;
            }
            self.stats.stuck += 1;
            wait = Duration::from_micros(50);
        } else {
            self.late_in_row = 0;
        }
        let mut pfd = libc::pollfd {
            fd: self.stack.device.tap().fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
        };
        let t0 = Clock::now();
        // SAFETY: `pfd` is one live, writable pollfd and the count says 1;
        // `ts` is a live timespec; a null signal mask leaves the mask alone.
        let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "ppoll on the TAP: {e}");
        }
        self.stats.sleeps += 1;
        self.stats.slept += t0.elapsed();
    }
}
