//! Round-trip time estimation and the retransmission timeout (RFC 6298).
//!
//! [`RttEstimator`] keeps SRTT and RTTVAR (§2: the first sample R sets
//! SRTT = R, RTTVAR = R/2; later ones use alpha = 1/8, beta = 1/4) and
//! derives RTO = SRTT + max(G, 4·RTTVAR) with a clock granularity G of
//! 1 ms, clamped to `[min_rto, max_rto]`. Before any sample the RTO is the
//! initial one (§2.1: 1 s). Each expiry of the timer doubles the RTO (§5.5,
//! "back off the timer"), up to `max_rto`; the next sample ends the
//! back-off (§5.7 leaves that to the implementation; Linux does the same).
//! The minimum defaults to Linux's 200 ms rather than the RFC's 1 s (§2.4
//! allows a lower bound of the implementer's choosing).
//!
//! Karn's algorithm (§3) is the caller's: it must not sample a
//! retransmitted segment except through timestamps. [`RttTimer`] helps a
//! socket without timestamps: it times one segment at a time and forgets
//! it when anything is retransmitted.
//!
//! Arithmetic is on [`Duration`]s and saturates instead of overflowing.

use core::time::Duration;

use crate::time::Instant;
use crate::wire::SeqNumber;

/// Clock granularity G of RFC 6298 §2 (our clock has nanoseconds, but the
/// term keeps RTO from collapsing onto SRTT when RTTVAR is tiny).
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(1);

/// The RFC 6298 estimator of SRTT, RTTVAR and the retransmission timeout.
///
/// Kept in nanoseconds (`u64`, saturating): a sample is taken on every
/// ACK, and `Duration` arithmetic (its divisions by 4 and 8 included)
/// showed in per-packet profiles. The results are those of the same
/// formulas on `Duration`s, which also truncate to whole nanoseconds.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    /// SRTT in nanoseconds, once there is a sample.
    srtt: Option<u64>,
    rttvar: u64,
    /// RTO without back-off, already clamped.
    base_rto: u64,
    backoff: u32,
    min_rto: u64,
    max_rto: u64,
}

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

const GRANULARITY_NS: u64 = CLOCK_GRANULARITY.as_nanos() as u64;

impl Default for RttEstimator {
    /// Initial RTO 1 s (RFC 6298 §2.1), minimum 200 ms (Linux), maximum
    /// 120 s (Linux's `TCP_RTO_MAX`).
    fn default() -> Self {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(120),
        )
    }
}

impl RttEstimator {
    /// An estimator with no sample yet, whose RTO is `initial_rto` (clamped
    /// to the bounds). A `max_rto` below `min_rto` is raised to it.
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        let (min_rto, max_rto) = (nanos(min_rto), nanos(max_rto));
        let max_rto = max_rto.max(min_rto);
        RttEstimator {
            srtt: None,
            rttvar: 0,
            base_rto: nanos(initial_rto).clamp(min_rto, max_rto),
            backoff: 0,
            min_rto,
            max_rto,
        }
    }

    /// Takes one RTT measurement (RFC 6298 §2.2, §2.3) and ends any
    /// back-off.
    pub fn sample(&mut self, rtt: Duration) {
        let rtt = nanos(rtt);
        let srtt = match self.srtt {
            None => {
                self.rttvar = rtt / 2;
                rtt
            }
            Some(srtt) => {
                // RTTVAR first, from the old SRTT.
                let err = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar.saturating_mul(3).saturating_add(err) / 4;
                srtt.saturating_mul(7).saturating_add(rtt) / 8
            }
        };
        self.srtt = Some(srtt);
        let var = GRANULARITY_NS.max(self.rttvar.saturating_mul(4));
        self.base_rto = srtt.saturating_add(var).clamp(self.min_rto, self.max_rto);
        self.backoff = 0;
    }

    /// The current retransmission timeout in nanoseconds, back-off
    /// included (at most `max_rto`).
    fn rto_nanos(&self) -> u64 {
        let factor = u64::from(1u32.checked_shl(self.backoff).unwrap_or(0));
        match self.base_rto.checked_mul(factor) {
            Some(rto) if factor != 0 => rto.min(self.max_rto),
            _ => self.max_rto,
        }
    }

    /// The current retransmission timeout, back-off included (at most
    /// `max_rto`).
    pub fn rto(&self) -> Duration {
        Duration::from_nanos(self.rto_nanos())
    }

    /// When a retransmission timer started at `now` expires.
    pub(crate) fn deadline(&self, now: Instant) -> Instant {
        Instant(now.0.saturating_add(self.rto_nanos()))
    }

    /// The retransmission timer expired: doubles the RTO (RFC 6298 §5.5),
    /// which stays at `max_rto` once it gets there. The count of back-offs
    /// keeps going up (see [`backoff_count`](Self::backoff_count)).
    pub fn on_timeout(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Expiries since the last sample (for give-up policies such as
    /// `tcp_retries2`).
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }

    /// Smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt.map(Duration::from_nanos)
    }

    /// RTT variation (zero before the first sample).
    pub fn rttvar(&self) -> Duration {
        Duration::from_nanos(self.rttvar)
    }
}

/// Times one segment at a time, for RTT samples without timestamps.
///
/// The socket [`start`](Self::start)s it when sending new data (if it is
/// not already timing something), passes each cumulative ACK to
/// [`on_ack`](Self::on_ack), and calls [`on_retransmit`](Self::on_retransmit)
/// on any retransmission, which discards the timing (Karn's algorithm: the
/// ACK could be for either transmission).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttTimer {
    /// End sequence number of the timed segment, and when it was sent.
    timed: Option<(SeqNumber, Instant)>,
}

impl RttTimer {
    /// A timer timing nothing.
    pub const fn new() -> RttTimer {
        RttTimer { timed: None }
    }

    /// Starts timing the segment ending (exclusive) at `seq_end`, sent at
    /// `now`, unless a segment is being timed already; returns whether it
    /// started.
    pub fn start(&mut self, seq_end: SeqNumber, now: Instant) -> bool {
        if self.timed.is_some() {
            return false;
        }
        self.timed = Some((seq_end, now));
        true
    }

    /// Whether a segment is being timed.
    pub fn is_running(&self) -> bool {
        self.timed.is_some()
    }

    /// A cumulative ACK `ack` arrived at `now`: if it covers the timed
    /// segment, returns the sample and stops timing.
    pub fn on_ack(&mut self, ack: SeqNumber, now: Instant) -> Option<Duration> {
        let (end, sent_at) = self.timed?;
        if ack >= end {
            self.timed = None;
            Some(now.saturating_since(sent_at))
        } else {
            None
        }
    }

    /// Something was retransmitted: the timing is no longer trustworthy
    /// (Karn), so it is dropped.
    pub fn on_retransmit(&mut self) {
        self.timed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn initial_rto_before_any_sample() {
        let est = RttEstimator::default();
        assert_eq!(est.rto(), Duration::from_secs(1));
        assert_eq!(est.srtt(), None);
        assert_eq!(est.rttvar(), Duration::ZERO);
        let est = RttEstimator::new(MS, 200 * MS, Duration::from_secs(60));
        assert_eq!(est.rto(), 200 * MS, "initial RTO is clamped");
    }

    #[test]
    fn first_and_later_samples_follow_rfc6298() {
        let mut est = RttEstimator::new(Duration::from_secs(1), Duration::ZERO, Duration::from_secs(60));
        est.sample(100 * MS);
        // SRTT = R, RTTVAR = R/2, RTO = 100 + 4*50.
        assert_eq!(est.srtt(), Some(100 * MS));
        assert_eq!(est.rttvar(), 50 * MS);
        assert_eq!(est.rto(), 300 * MS);
        est.sample(200 * MS);
        // RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5.
        assert_eq!(est.rttvar(), Duration::from_micros(62_500));
        assert_eq!(est.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(est.rto(), Duration::from_micros(112_500 + 250_000));
        est.sample(Duration::from_micros(112_500));
        // RTTVAR = 3/4*62.5 + 0; SRTT unchanged.
        assert_eq!(est.rttvar(), Duration::from_nanos(46_875_000));
        assert_eq!(est.srtt(), Some(Duration::from_micros(112_500)));
    }

    #[test]
    fn granularity_and_clamping() {
        let mut est = RttEstimator::new(Duration::from_secs(1), Duration::ZERO, Duration::from_secs(2));
        // A run of identical samples drives RTTVAR toward 0; G keeps RTO
        // above SRTT.
        for _ in 0..200 {
            est.sample(10 * MS);
        }
        assert_eq!(est.srtt(), Some(10 * MS));
        assert!(est.rttvar() < Duration::from_micros(1));
        assert_eq!(est.rto(), 11 * MS);
        // Linux's 200 ms floor.
        let mut est = RttEstimator::default();
        est.sample(MS);
        assert_eq!(est.rto(), 200 * MS);
        // The ceiling.
        est.sample(Duration::from_secs(200));
        assert_eq!(est.rto(), Duration::from_secs(120));
        // A zero RTT (same-tick echo) is a valid sample.
        let mut est = RttEstimator::new(Duration::from_secs(1), Duration::ZERO, Duration::from_secs(60));
        est.sample(Duration::ZERO);
        assert_eq!(est.rto(), MS);
    }

    #[test]
    fn backoff_doubles_up_to_max_and_a_sample_resets_it() {
        let mut est = RttEstimator::new(Duration::from_secs(1), 200 * MS, Duration::from_secs(60));
        est.on_timeout();
        assert_eq!(est.rto(), Duration::from_secs(2));
        est.on_timeout();
        assert_eq!(est.rto(), Duration::from_secs(4));
        for _ in 0..100 {
            est.on_timeout();
        }
        assert_eq!(est.backoff_count(), 102);
        assert_eq!(est.rto(), Duration::from_secs(60));
        est.sample(100 * MS);
        assert_eq!(est.backoff_count(), 0);
        assert_eq!(est.rto(), 300 * MS);
        for _ in 0..u32::BITS + 5 {
            est.on_timeout();
        }
        assert_eq!(est.rto(), Duration::from_secs(60), "no overflow on huge back-off");
    }

    #[test]
    fn timer_samples_the_timed_segment_only() {
        let mut timer = RttTimer::new();
        assert!(!timer.is_running());
        assert!(timer.start(SeqNumber(1000), Instant::from_millis(10)));
        assert!(
            !timer.start(SeqNumber(2000), Instant::from_millis(11)),
            "one at a time"
        );
        assert_eq!(timer.on_ack(SeqNumber(999), Instant::from_millis(20)), None);
        assert!(timer.is_running());
        assert_eq!(
            timer.on_ack(SeqNumber(1500), Instant::from_millis(60)),
            Some(50 * MS)
        );
        assert!(!timer.is_running());
        assert_eq!(timer.on_ack(SeqNumber(2000), Instant::from_millis(70)), None);
    }

    #[test]
    fn timer_karn_and_wraparound() {
        let mut timer = RttTimer::default();
        timer.start(SeqNumber(u32::MAX - 10), Instant::from_millis(0));
        timer.on_retransmit();
        assert_eq!(timer.on_ack(SeqNumber(u32::MAX), Instant::from_millis(5)), None);
        // A segment ending past 2^32: an ACK before the wrap does not cover
        // it, one after does.
        timer.start(SeqNumber(20), Instant::from_millis(100));
        assert_eq!(
            timer.on_ack(SeqNumber(u32::MAX - 5), Instant::from_millis(110)),
            None
        );
        assert_eq!(
            timer.on_ack(SeqNumber(20), Instant::from_millis(130)),
            Some(30 * MS)
        );
    }
}
