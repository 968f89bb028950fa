//! NewReno window arithmetic (RFC 5681 §3.1–3.2, RFC 6582 §3.2).
//!
//! Slow start while `cwnd < ssthresh`, growing by the bytes acknowledged
//! up to 2 MSS per ACK (RFC 3465); then congestion avoidance, one MSS per
//! cwnd of acknowledged bytes. A congestion event halves: `ssthresh =
//! max(FlightSize/2, 2*MSS)` (RFC 5681 eq. 4) and `cwnd = ssthresh`; an RTO
//! sets the same `ssthresh` (once per run of timeouts) and `cwnd = 1 MSS`.
//! The recovery state machine (recover point, partial ACKs) lives in the
//! socket, which calls [`on_partial_ack`](CongestionControl::on_partial_ack)
//! and [`on_dup_ack`](CongestionControl::on_dup_ack) during recovery.

use core::time::Duration;

use super::{CongestionControl, Window};
use crate::time::Instant;

/// The NewReno controller.
#[derive(Debug, Clone)]
pub struct NewReno {
    w: Window,
}

impl NewReno {
    /// A controller with sender MSS `mss` and an initial window of
    /// `initial_window_segments` segments.
    pub fn new(mss: usize, initial_window_segments: usize) -> NewReno {
        NewReno {
            w: Window::new(mss, initial_window_segments),
        }
    }
}

impl CongestionControl for NewReno {
    fn cwnd(&self) -> usize {
        self.w.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.w.ssthresh
    }

    fn set_mss(&mut self, mss: usize) {
        self.w.set_mss(mss);
    }

    fn on_ack(&mut self, _now: Instant, acked: usize, _srtt: Option<Duration>) {
        if acked == 0 {
            return;
        }
        self.w.acked();
        if self.w.in_slow_start() {
            self.w.slow_start(acked);
        } else {
            self.w.avoid(acked);
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, flight_size: usize) {
        self.w.reduce_ssthresh(flight_size, 1, 2);
        self.w.cwnd = self.w.ssthresh;
    }

    fn on_recovery_exit(&mut self, _now: Instant) {
        self.w.cwnd = self.w.ssthresh;
    }

    fn on_rto(&mut self, _now: Instant, flight_size: usize) {
        if self.w.rto_reduces() {
            self.w.reduce_ssthresh(flight_size, 1, 2);
        }
        self.w.collapse();
    }

    fn on_partial_ack(&mut self, acked: usize) {
        self.w.partial_ack(acked);
    }

    fn on_dup_ack(&mut self) {
        self.w.dup_ack();
    }

    fn in_slow_start(&self) -> bool {
        self.w.in_slow_start()
    }

    fn name(&self) -> &'static str {
        "reno"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    const T0: Instant = Instant::ZERO;

    /// Acknowledges `bytes` in ACKs of `per_ack` bytes.
    fn ack_bytes(cc: &mut dyn CongestionControl, bytes: usize, per_ack: usize) {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(per_ack);
            cc.on_ack(T0, n, None);
            left -= n;
        }
    }

    #[test]
    fn slow_start_doubles_per_round_trip() {
        let mut cc = NewReno::new(MSS, 10);
        assert_eq!(cc.cwnd(), 10 * MSS);
        for round in 1..=4 {
            let cwnd = cc.cwnd();
            ack_bytes(&mut cc, cwnd, MSS);
            assert_eq!(cc.cwnd(), (10 * MSS) << round);
        }
        assert!(cc.in_slow_start());
        // Delayed ACKs (2 segments each) double too: L = 2 MSS.
        let mut cc = NewReno::new(MSS, 10);
        ack_bytes(&mut cc, 10 * MSS, 2 * MSS);
        assert_eq!(cc.cwnd(), 20 * MSS);
    }

    #[test]
    fn stretch_acks_are_limited_to_two_segments() {
        let mut cc = NewReno::new(MSS, 10);
        cc.on_ack(T0, 10 * MSS, None);
        assert_eq!(cc.cwnd(), 12 * MSS);
        cc.on_ack(T0, 0, None);
        assert_eq!(cc.cwnd(), 12 * MSS, "an ACK of nothing changes nothing");
    }

    #[test]
    fn congestion_avoidance_adds_one_mss_per_window() {
        let mut cc = NewReno::new(MSS, 10);
        cc.on_congestion_event(T0, 40 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (20 * MSS, 20 * MSS));
        assert!(!cc.in_slow_start());
        // One window in MSS-sized ACKs: exactly +1 MSS.
        ack_bytes(&mut cc, 20 * MSS, MSS);
        assert_eq!(cc.cwnd(), 21 * MSS);
        // Small ACKs accumulate instead of rounding to zero.
        let before = cc.cwnd();
        ack_bytes(&mut cc, before, 100);
        assert_eq!(cc.cwnd(), before + MSS);
        // Delayed ACKs grow at the same rate.
        let before = cc.cwnd();
        ack_bytes(&mut cc, before, 2 * MSS);
        assert_eq!(cc.cwnd(), before + MSS);
    }

    #[test]
    fn slow_start_hands_over_at_ssthresh() {
        let mut cc = NewReno::new(MSS, 10);
        cc.on_rto(T0, 9 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 4500));
        ack_bytes(&mut cc, 4 * MSS, MSS);
        assert_eq!(cc.cwnd(), 4500, "slow start stops at ssthresh");
        assert!(!cc.in_slow_start());
        ack_bytes(&mut cc, 4500, MSS);
        assert_eq!(cc.cwnd(), 5500);
    }

    #[test]
    fn loss_halves_with_a_two_segment_floor() {
        let mut cc = NewReno::new(MSS, 10);
        ack_bytes(&mut cc, 90 * MSS, MSS);
        assert_eq!(cc.cwnd(), 100 * MSS);
        cc.on_congestion_event(T0, 100 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (50 * MSS, 50 * MSS));
        cc.on_recovery_exit(T0);
        assert_eq!(cc.cwnd(), 50 * MSS);
        cc.on_congestion_event(T0, MSS);
        assert_eq!(cc.ssthresh(), 2 * MSS);
        cc.on_congestion_event(T0, 0);
        assert_eq!(cc.cwnd(), 2 * MSS);
    }

    #[test]
    fn rto_collapses_to_one_segment_once_per_run_of_timeouts() {
        let mut cc = NewReno::new(MSS, 10);
        ack_bytes(&mut cc, 30 * MSS, MSS);
        cc.on_rto(T0, 40 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 20 * MSS));
        assert!(cc.in_slow_start());
        // The same segment times out again: ssthresh is kept.
        cc.on_rto(T0, 40 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 20 * MSS));
        // After progress, a new timeout reduces again.
        cc.on_ack(T0, MSS, None);
        assert_eq!(cc.cwnd(), 2 * MSS);
        cc.on_rto(T0, 10 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 5 * MSS));
    }

    #[test]
    fn newreno_recovery_inflation_and_partial_ack_deflation() {
        let mut cc = NewReno::new(MSS, 10);
        ack_bytes(&mut cc, 10 * MSS, MSS);
        cc.on_congestion_event(T0, 20 * MSS);
        for _ in 0..3 {
            cc.on_dup_ack();
        }
        assert_eq!(cc.cwnd(), 13 * MSS, "RFC 6582: ssthresh + 3*SMSS");
        cc.on_dup_ack();
        assert_eq!(cc.cwnd(), 14 * MSS);
        // A partial ACK of 3 segments: deflate by 3, add back 1.
        cc.on_partial_ack(3 * MSS);
        assert_eq!(cc.cwnd(), 12 * MSS);
        // Less than one segment: no add-back.
        cc.on_partial_ack(500);
        assert_eq!(cc.cwnd(), 12 * MSS - 500);
        // Never below one segment.
        cc.on_partial_ack(100 * MSS);
        assert_eq!(cc.cwnd(), MSS);
        cc.on_recovery_exit(T0);
        assert_eq!(cc.cwnd(), 10 * MSS);
    }

    #[test]
    fn set_mss_rescales_only_the_initial_window() {
        let mut cc = NewReno::new(536, 10);
        cc.set_mss(1460);
        assert_eq!(cc.cwnd(), 14_600);
        cc.on_ack(T0, 1460, None);
        cc.set_mss(9000);
        assert_eq!(cc.cwnd(), 16_060);
        cc.on_rto(T0, 0);
        cc.set_mss(536);
        assert_eq!(cc.cwnd(), 9000, "cwnd kept, not rescaled");
    }
}
