//! The engine's counters, written every second to `ACCEL_STATS_FILE` (one
//! JSON object per line), for the soak and for whoever watches a long
//! run: what must not grow without bound (mbufs in use, sockets, epoll
//! sets, connections, TIME-WAIT entries), what the link did (frames,
//! frames dropped on purpose by `ACCEL_LOSS`, frames the device's
//! checksum offload found bad, segments handed between stacks, stints of
//! sending others' frames handed to the relay thread), and,
//! under `iface`, every counter of the stacks' interfaces summed (each
//! drop by its reason: SYN cookies, ARP, checksums, RFC 5961's
//! challenges...), and under `drivers` who took the frames in (a
//! program's call, a thread entering a wait, the spinner, the sleeper,
//! the keeper for parked threads, the keeper's rounds, a thread reading a
//! lane), under `lanes` the net_tap lanes in use and their frames, and under
//! `lock_waits` how long threads waited for the sockets' lock and the
//! stacks' locks when another held them.
//!
//! The keeper calls [`tick`]; the file is opened, appended to and closed
//! each time with raw system calls (the shim never calls what it
//! intercepts on its own behalf), so the program never sees its fd for
//! longer than a write. Nothing is written when the variable is unset.

use crate::engine::stacks::{self, Q};
use crate::engine::worker::now;
use crate::{startup, sys};
use std::ffi::CStr;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// When the last line was written (ns of the monotonic clock).
static LAST: AtomicU64 = AtomicU64::new(0);

/// Who polled the stacks: the frames each took in are counted (under
/// `drivers` in the line), which says who moves the frames of a workload:
/// frames the keeper took waited for it, up to a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Driver {
    /// A program's call outside a wait (a read, write, `epoll_wait`'s
    /// first look).
    Call = 0,
    /// A thread entering a wait (its first poll).
    Enter = 1,
    /// The spinning thread.
    Spin = 2,
    /// The thread asleep on the device for everyone.
    Sleep = 3,
    /// The keeper, on the device for parked threads.
    Keeper = 4,
    /// The keeper's rounds while no thread waits.
    Round = 5,
    /// A thread reading a lane, its own or a stranded one
    /// ([`crate::engine::lanes`]).
    Lane = 6,
}

const DRIVER_NAMES: [&str; 7] = ["call", "enter", "spin", "sleep", "keeper", "round", "lane"];

/// A lock whose waits are counted (under `lock_waits` in the line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Lock {
    /// The sockets layer's lock (`sockets::table::lock`).
    Sockets = 0,
    /// A stack's lock (any queue pair's).
    Stack = 1,
}

/// Waits for a lock that another thread held, by how long they lasted:
/// bucket 0 under 1 us, bucket i from 2^(i-1) to 2^i us, the last 16 ms
/// and over. A thread preempted while it holds a lock makes the others
/// wait for as long as it is off its CPU.
static LOCK_WAITS: [[AtomicU64; 16]; 2] = [const { [const { AtomicU64::new(0) }; 16] }; 2];

/// Counts a wait for `lock` that began at `since` and ends now (the lock
/// was held by another thread: the caller's `try_lock` failed).
pub(crate) fn lock_waited(lock: Lock, since: accel_stack::Instant) {
    let us = now().saturating_since(since).as_micros() as u64;
    if let Some(b) = LOCK_WAITS.get(lock as usize).and_then(|w| w.get(bucket(us))) {
        b.fetch_add(1, Relaxed);
    }
}

/// The bucket of a wait of `us` microseconds (see `LOCK_WAITS`).
fn bucket(us: u64) -> usize {
    (64 - us.leading_zeros()).min(15) as usize
}

/// Frames taken in, and polls that took some, by driver.
static DRIVEN: [[AtomicU64; 2]; 7] = [const { [const { AtomicU64::new(0) }; 2] }; 7];

thread_local! {
    static DRIVER: std::cell::Cell<Driver> = const { std::cell::Cell::new(Driver::Call) };
}

/// Runs `f` with the calling thread's polls counted as `d`'s.
pub(crate) fn as_driver<R>(d: Driver, f: impl FnOnce() -> R) -> R {
    let before = DRIVER.try_with(|c| c.replace(d)).unwrap_or(Driver::Call);
    let r = f();
    let _ = DRIVER.try_with(|c| c.set(before));
    r
}

/// Counts a poll that took `rx` frames in, as the calling thread's
/// driver's (only while the counters are written somewhere).
pub(crate) fn drove(rx: usize) {
    if rx == 0 || startup::config().stats_file.is_empty() {
        return;
    }
    let d = DRIVER.try_with(|c| c.get()).unwrap_or(Driver::Call) as usize;
    if let Some([frames, polls]) = DRIVEN.get(d) {
        frames.fetch_add(rx as u64, Relaxed);
        polls.fetch_add(1, Relaxed);
    }
}

/// Writes a line if a second has passed since the last one.
pub fn tick() {
    let cfg = startup::config();
    if cfg.stats_file.is_empty() {
        return;
    }
    let t = now().nanos();
    let last = LAST.load(Relaxed);
    if t.saturating_sub(last) < 1_000_000_000 || LAST.compare_exchange(last, t, Relaxed, Relaxed).is_err() {
        return;
    }
    let Some(line) = snapshot(t) else { return };
    let Ok(path) = CStr::from_bytes_with_nul(cfg.stats_file.as_bytes_with_nul()) else {
        return;
    };
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
    if let Ok(fd) = sys::open(path, flags, 0o644) {
        let _ = sys::write_all(fd, line.as_bytes());
        sys::close(fd);
    }
}

/// One line of counters, or `None` if the tables are busy (the next tick
/// tries again).
fn snapshot(t: u64) -> Option<String> {
    let (sockets, sets) = crate::engine::above()?.table_sizes()?;
    let (mut conns, mut listeners, mut time_wait) = (0, 0, 0);
    let (mut rx, mut tx, mut lost_rx, mut lost_tx, mut handed) = (0, 0, 0, 0, 0);
    let (mut mbufs, mut mbufs_free) = (0, 0);
    let mut bad_sum = 0;
    let mut all = accel_stack::iface::IfaceStats::default();
    for q in 0..stacks::count() as Q {
        let s = stacks::lock(q)?;
        let (c, l, tw) = s.iface.tcp.counts();
        conns += c;
        listeners += l;
        time_wait += tw;
        let st = s.iface.stats();
        all.add(&st);
        rx += st.rx_frames;
        tx += st.tx_frames;
        handed += st.tcp_handed_over;
        lost_rx += s.device.lost.0;
        lost_tx += s.device.lost.1;
        bad_sum += s.device.dpdk.counters().rx_checksum_dropped;
        // One pool per port: every queue reports the same.
        (mbufs, mbufs_free) = s.device.dpdk.mempool_free();
    }
    let mut line = String::with_capacity(1536);
    let _ = write!(
        line,
        "{{\"t_ms\":{},\"pid\":{},\"sockets\":{sockets},\"epoll_sets\":{sets},\"tcp_conns\":{conns},\
         \"tcp_listeners\":{listeners},\"time_wait\":{time_wait},\"mbufs_in_use\":{},\"rx_frames\":{rx},\
         \"tx_frames\":{tx},\"rx_checksum_dropped\":{bad_sum},\"lost_rx\":{lost_rx},\"lost_tx\":{lost_tx},\"handed_over\":{handed},\"tx_hand_overs\":{},\"iface\":{{",
        t / 1_000_000,
        sys::getpid(),
        mbufs.saturating_sub(mbufs_free),
        crate::engine::relay::hand_overs(),
    );
    // Every interface counter, summed over the stacks: each drop by its
    // reason (SYN cookies, ARP, checksums, ...).
    for (i, (name, v)) in all.fields().enumerate() {
        let _ = write!(line, "{}\"{name}\":{v}", if i == 0 { "" } else { "," });
    }
    // Who took the frames in: [frames, polls that took some].
    line.push_str("},\"drivers\":{");
    for (i, (name, [frames, polls])) in DRIVER_NAMES.iter().zip(&DRIVEN).enumerate() {
        let _ = write!(
            line,
            "{}\"{name}\":[{},{}]",
            if i == 0 { "" } else { "," },
            frames.load(Relaxed),
            polls.load(Relaxed)
        );
    }
    // Lanes in use, frames read from and written to them, and read
    // frames dropped for a bad checksum.
    let (taken, lrx, ltx, lbad) = crate::engine::lanes::counters();
    let _ = write!(
        line,
        "}},\"lanes\":{{\"taken\":{taken},\"rx\":{lrx},\"tx\":{ltx},\"rx_checksum_dropped\":{lbad}"
    );
    // Waits for a lock another thread held, by log2 of their microseconds.
    line.push_str("},\"lock_waits\":{");
    for (i, (name, waits)) in ["sockets", "stacks"].iter().zip(&LOCK_WAITS).enumerate() {
        let _ = write!(line, "{}\"{name}\":[", if i == 0 { "" } else { "," });
        for (j, w) in waits.iter().enumerate() {
            let _ = write!(line, "{}{}", if j == 0 { "" } else { "," }, w.load(Relaxed));
        }
        line.push(']');
    }
    line.push_str("}}\n");
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn lock_waits_go_by_powers_of_two() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 1);
        assert_eq!((bucket(2), bucket(3)), (2, 2));
        assert_eq!((bucket(64), bucket(127)), (7, 7));
        assert_eq!(bucket(16_383), 14);
        assert_eq!((bucket(16_384), bucket(u64::MAX)), (15, 15));
    }
}
