//! Whether a waiting thread may spin without taking its CPU from threads
//! that could run there, judged by how often the kernel preempts it.
//!
//! A thread that polls the device in a loop ([`crate::engine::wait`]'s
//! spinner) wins a round trip only while its core would otherwise be idle.
//! When more threads can run than there are cores (a client's event loop
//! beside the ten threads of the server it talks to, on two cores), the
//! spinner holds a core the others wait for: the scheduler lets it finish
//! its slice before a thread it woke runs, and their requests wait up to a
//! slice (measured: a 10-connection client spinning on memif was preempted
//! 38,000 times a second, and the server's p99 doubled). The kernel's count
//! of the thread's preemptions says so without a guess: a thread that is
//! preempted more than [`MAX_PER_WINDOW`] times in a [`WINDOW_NS`] window
//! stops spinning for a back-off (10 ms, doubling to 200 ms while it lasts),
//! then tries again. A thread on a core of its own is preempted about once a
//! millisecond (the keepers' rounds) and spins as before.
//!
//! The counter is read once a window (one `getrusage` per 2 ms at most),
//! not per wait.

/// How long a window of preemptions is counted.
pub const WINDOW_NS: u64 = 2_000_000;

/// Preemptions in a window above which the CPU is contended (4 a
/// millisecond; a thread alone on its core sees about 1).
pub const MAX_PER_WINDOW: u64 = 8;

/// The first back-off, and its bound (each contended try doubles it).
const BACKOFF_NS: (u64, u64) = (10_000_000, 200_000_000);

/// One thread's account (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct Contention {
    /// Where the current window began: its time and the preemption count.
    window: Option<(u64, u64)>,
    /// No spinning before this time (a back-off).
    quiet_until: u64,
    /// The current back-off; 0 after a window that was not contended.
    backoff: u64,
}

impl Contention {
    /// A thread's account before its first spin.
    pub const fn new() -> Self {
        Contention {
            window: None,
            quiet_until: 0,
            backoff: 0,
        }
    }

    /// Whether the thread may spin at `t` (nanoseconds); `preemptions`
    /// reads its preemption count, called only when a window opens or
    /// closes.
    pub fn may_spin(&mut self, t: u64, preemptions: impl FnOnce() -> u64) -> bool {
        if t < self.quiet_until {
            return false;
        }
        let Some((at, seen)) = self.window else {
            self.window = Some((t, preemptions()));
            return true;
        };
        let span = t.saturating_sub(at);
        if span < WINDOW_NS {
            return true;
        }
        let count = preemptions();
        // Per window of WINDOW_NS, over however long this one was.
        let rate = count.saturating_sub(seen).saturating_mul(WINDOW_NS) / span;
        if rate > MAX_PER_WINDOW {
            self.backoff = (self.backoff * 2).clamp(BACKOFF_NS.0, BACKOFF_NS.1);
            self.quiet_until = t + self.backoff;
            // The next window opens when the back-off ends: what the
            // thread saw while it slept says nothing of its spins.
            self.window = None;
            false
        } else {
            self.backoff = 0;
            self.window = Some((t, count));
            true
        }
    }
}

impl Default for Contention {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_thread_alone_on_its_core_keeps_spinning() {
        let mut c = Contention::new();
        // One preemption a millisecond, asked every 100 us for a second.
        for i in 0..10_000u64 {
            let t = i * MS / 10;
            assert!(c.may_spin(t, || t / MS), "refused at {t} ns");
        }
    }

    #[test]
    fn a_preempted_spinner_backs_off_doubling_and_comes_back_when_the_core_frees() {
        let mut c = Contention::new();
        let mut count = 0u64;
        // 40 preemptions a millisecond while it spins.
        assert!(c.may_spin(0, || count));
        count += 40;
        assert!(c.may_spin(MS, || panic!("read within the window")));
        count += 40;
        assert!(!c.may_spin(2 * MS, || count), "contended window");
        // Quiet for 10 ms, whatever it is asked.
        assert!(!c.may_spin(11 * MS, || panic!("read while quiet")));
        // A new window; contended again: 20 ms.
        assert!(c.may_spin(12 * MS, || count));
        count += 80;
        assert!(!c.may_spin(14 * MS, || count));
        assert!(!c.may_spin(33 * MS, || count));
        assert!(c.may_spin(34 * MS, || count));
        // The core is free now: one preemption in the window.
        count += 1;
        assert!(c.may_spin(36 * MS, || count));
        assert!(c.may_spin(40 * MS, || count));
        // Contended anew: the back-off starts over at 10 ms.
        count += 100;
        assert!(!c.may_spin(42 * MS, || count));
        assert!(!c.may_spin(51 * MS, || count));
        assert!(c.may_spin(52 * MS, || count));
    }

    #[test]
    fn the_back_off_is_bounded() {
        let mut c = Contention::new();
        let (mut t, mut count) = (0u64, 0u64);
        let mut longest = 0;
        for _ in 0..20 {
            assert!(c.may_spin(t, || count));
            count += 100;
            t += WINDOW_NS;
            assert!(!c.may_spin(t, || count));
            let from = t;
            while !c.may_spin(t, || count) {
                t += MS;
            }
            longest = longest.max(t - from);
        }
        assert_eq!(longest, BACKOFF_NS.1);
    }

    #[test]
    fn a_long_window_is_judged_by_its_rate() {
        let mut c = Contention::new();
        assert!(c.may_spin(0, || 0));
        // 50 preemptions over 100 ms: 1 per 2 ms window.
        assert!(c.may_spin(100 * MS, || 50));
    }
}
