//! CUBIC window arithmetic (RFC 9438).
//!
//! Below `ssthresh`, slow start as Reno (RFC 3465 byte counting). Above,
//! the window follows the cubic function of the time `t` since the start of
//! the congestion avoidance epoch (§4.2):
//! `W_cubic(t) = C·(t − K)³ + W_max`, with `C = 0.4`, `W_max` the window
//! before the last reduction and `K = ∛((W_max − cwnd_epoch)/C)`, which is
//! `∛(W_max·(1 − β)/C)` when the epoch starts at `β·W_max`. Windows are in
//! segments and times in seconds, as `f64`; `cwnd` itself stays in bytes.
//! On each ACK the target is `W_cubic(t + RTT)` clamped to
//! `[cwnd, 1.5·cwnd]`, and cwnd grows by `(target − cwnd)/cwnd` per
//! segment acknowledged (§4.4, §4.5), fractions carried over. The
//! Reno-friendly estimate `W_est` grows by `α·segments_acked/cwnd` with
//! `α = 3(1 − β)/(1 + β)` (1 once `W_est` passes the window before the
//! reduction), and when `W_cubic(t) < W_est` cwnd is set to `W_est` (§4.3).
//!
//! A congestion event multiplies by `β = 0.7` (§4.6): `ssthresh =
//! max(0.7·FlightSize, 2·MSS)`, `cwnd = ssthresh`, and `W_max` becomes the
//! window at the loss, or `W_max·(1 + β)/2` with fast convergence when that
//! window is below the previous `W_max` (§4.7). The epoch starts when
//! recovery ends, or at the first ACK in congestion avoidance otherwise
//! (after slow start); if cwnd is then above `W_max`, `W_max = cwnd` and
//! `K = 0`. An RTO (§4.8) reduces `ssthresh` the same way and collapses
//! cwnd to 1 MSS (slow start follows).

use core::time::Duration;

use super::{CongestionControl, Window};
use crate::time::Instant;

/// The cubic constant C, in segments per second³.
pub const C: f64 = 0.4;
/// The multiplicative decrease factor beta_cubic.
pub const BETA: f64 = 0.7;
/// The Reno-friendly additive increase factor alpha_cubic = 3(1-β)/(1+β).
pub const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// The CUBIC controller.
#[derive(Debug, Clone)]
pub struct Cubic {
    w: Window,
    /// Window before the last reduction, in segments (0 before any loss).
    w_max: f64,
    /// Time for W_cubic to climb from the epoch's start back to W_max, in
    /// seconds.
    k: f64,
    /// Start of the current congestion avoidance epoch.
    epoch: Option<Instant>,
    /// The Reno-friendly window estimate, in segments.
    w_est: f64,
    /// cwnd when ssthresh was last set, in segments.
    cwnd_prior: f64,
    /// Fractional bytes of cwnd growth carried over between ACKs.
    frac: f64,
}

impl Cubic {
    /// A controller with sender MSS `mss` and an initial window of
    /// `initial_window_segments` segments.
    pub fn new(mss: usize, initial_window_segments: usize) -> Cubic {
        Cubic {
            w: Window::new(mss, initial_window_segments),
            w_max: 0.0,
            k: 0.0,
            epoch: None,
            w_est: 0.0,
            cwnd_prior: 0.0,
            frac: 0.0,
        }
    }

    /// `W_max`, in segments (0 before any loss).
    pub fn w_max(&self) -> f64 {
        self.w_max
    }

    /// `K` of the current (or last) epoch, in seconds.
    pub fn k(&self) -> f64 {
        self.k
    }

    /// `W_cubic(t)` in segments, `t` in seconds since the epoch started.
    pub fn w_cubic(&self, t: f64) -> f64 {
        let d = t - self.k;
        C * d * d * d + self.w_max
    }

    fn cwnd_segments(&self) -> f64 {
        self.w.cwnd as f64 / self.w.mss as f64
    }

    fn start_epoch(&mut self, now: Instant) {
        let cwnd = self.cwnd_segments();
        self.epoch = Some(now);
        self.w_est = cwnd;
        self.frac = 0.0;
        if self.w_max > cwnd {
            self.k = ((self.w_max - cwnd) / C).cbrt();
        } else {
            self.k = 0.0;
            self.w_max = cwnd;
        }
    }

    /// §4.6 and §4.7: remember W_max (with fast convergence), lower
    /// ssthresh. The caller sets cwnd.
    fn reduce(&mut self, flight_size: usize) {
        let cwnd = self.cwnd_segments();
        self.w_max = if cwnd < self.w_max {
            cwnd * (1.0 + BETA) / 2.0
        } else {
            cwnd
        };
        self.cwnd_prior = cwnd;
        self.w.reduce_ssthresh(flight_size, 7, 10);
        self.epoch = None;
        self.frac = 0.0;
    }
}

impl CongestionControl for Cubic {
    fn cwnd(&self) -> usize {
        self.w.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.w.ssthresh
    }

    fn set_mss(&mut self, mss: usize) {
        self.w.set_mss(mss);
        self.frac = 0.0;
    }

    fn on_ack(&mut self, now: Instant, acked: usize, srtt: Option<Duration>) {
        if acked == 0 {
            return;
        }
        self.w.acked();
        if self.w.in_slow_start() {
            self.w.slow_start(acked);
            return;
        }
        let epoch = match self.epoch {
            Some(epoch) => epoch,
            None => {
                self.start_epoch(now);
                now
            }
        };
        let t = now.saturating_since(epoch).as_secs_f64();
        let cwnd = self.cwnd_segments();
        let segments = acked as f64 / self.w.mss as f64;
        let alpha = if self.w_est >= self.cwnd_prior { 1.0 } else { ALPHA };
        self.w_est += alpha * segments / cwnd;
        if self.w_cubic(t) < self.w_est {
            // Reno-friendly region (§4.3).
            let est = (self.w_est * self.w.mss as f64) as usize;
            if est > self.w.cwnd {
                self.w.cwnd = est;
                self.frac = 0.0;
            }
            return;
        }
        // Concave or convex region (§4.4, §4.5).
        let rtt = srtt.map_or(0.0, |d| d.as_secs_f64());
        let target = self.w_cubic(t + rtt).clamp(cwnd, 1.5 * cwnd);
        self.frac += (target - cwnd) / cwnd * acked as f64;
        if self.frac >= 1.0 {
            let whole = self.frac.floor();
            self.frac -= whole;
            self.w.cwnd = self.w.cwnd.saturating_add(whole as usize);
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, flight_size: usize) {
        self.reduce(flight_size);
        self.w.cwnd = self.w.ssthresh;
    }

    fn on_recovery_exit(&mut self, now: Instant) {
        self.w.cwnd = self.w.ssthresh;
        self.start_epoch(now);
    }

    fn on_rto(&mut self, _now: Instant, flight_size: usize) {
        if self.w.rto_reduces() {
            self.reduce(flight_size);
        }
        self.epoch = None;
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
        "cubic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    /// One round trip of ACKs, one per segment of the current window,
    /// spread evenly over `rtt`; returns the time after it.
    fn round_trip(cc: &mut Cubic, mut now: Instant, rtt: Duration) -> Instant {
        let acks = (cc.cwnd() / MSS).max(1);
        let step = rtt / acks as u32;
        for _ in 0..acks {
            now += step;
            cc.on_ack(now, MSS, Some(rtt));
        }
        now
    }

    /// A controller that has just lost at a window of `w_max` segments
    /// (with that much in flight) and left recovery at `now`.
    fn after_loss(w_max: usize, now: Instant) -> Cubic {
        let mut cc = Cubic::new(MSS, 10);
        cc.w.cwnd = w_max * MSS;
        cc.on_congestion_event(now, w_max * MSS);
        cc.on_recovery_exit(now);
        cc
    }

    #[test]
    fn constants() {
        assert!((ALPHA - 0.9 / 1.7).abs() < 1e-12);
        let cc = Cubic::new(MSS, 10);
        assert_eq!((cc.cwnd(), cc.name()), (10 * MSS, "cubic"));
        assert!(cc.in_slow_start());
    }

    #[test]
    fn slow_start_doubles_per_round_trip() {
        let mut cc = Cubic::new(MSS, 10);
        let mut now = Instant::ZERO;
        for round in 1..=3 {
            now = round_trip(&mut cc, now, Duration::from_millis(10));
            assert_eq!(cc.cwnd(), (10 * MSS) << round);
        }
    }

    #[test]
    fn loss_multiplies_by_beta_and_sets_k() {
        let cc = after_loss(100, Instant::ZERO);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (70 * MSS, 70 * MSS));
        assert_eq!(cc.w_max(), 100.0);
        // K = cbrt(W_max * (1 - beta) / C) = cbrt(75) ≈ 4.2172 s.
        let expected = (100.0 * (1.0 - BETA) / C).cbrt();
        assert!((cc.k() - expected).abs() < 1e-9, "K = {}", cc.k());
        assert!((cc.k() - 4.217_163_326).abs() < 1e-6);
        assert!((cc.w_cubic(cc.k()) - 100.0).abs() < 1e-9);
        assert!((cc.w_cubic(0.0) - 70.0).abs() < 1e-9);
        // A small flight still leaves 2 MSS.
        let mut cc = Cubic::new(MSS, 10);
        cc.on_congestion_event(Instant::ZERO, MSS);
        assert_eq!(cc.cwnd(), 2 * MSS);
    }

    #[test]
    fn fast_convergence_lowers_w_max() {
        let mut cc = after_loss(100, Instant::ZERO);
        // The next loss comes at 80 segments, below W_max = 100.
        cc.w.cwnd = 80 * MSS;
        cc.on_congestion_event(Instant::ZERO, 80 * MSS);
        assert!((cc.w_max() - 80.0 * 0.85).abs() < 1e-9);
        assert_eq!(cc.cwnd(), 56 * MSS);
        // A loss above W_max takes the window as is.
        cc.w.cwnd = 90 * MSS;
        cc.on_congestion_event(Instant::ZERO, 90 * MSS);
        assert_eq!(cc.w_max(), 90.0);
    }

    #[test]
    fn concave_then_plateau_then_convex_growth() {
        let rtt = Duration::from_millis(100);
        let mut now = Instant::from_millis(1000);
        let start = now;
        let mut cc = after_loss(1000, now);
        let k = cc.k();
        assert!((k - 750f64.cbrt()).abs() < 1e-9);
        // Window (in segments) sampled at the end of each round trip.
        let mut samples = vec![(0.0, cc.cwnd() as f64 / MSS as f64)];
        while (now - start).as_secs_f64() < k + 6.0 {
            now = round_trip(&mut cc, now, rtt);
            samples.push(((now - start).as_secs_f64(), cc.cwnd() as f64 / MSS as f64));
        }
        let at = |t: f64| samples.iter().find(|s| s.0 >= t).unwrap().1;
        assert!(samples.windows(2).all(|w| w[1].1 >= w[0].1), "never shrinks");
        // Concave: fast first, slowing down as W_max nears.
        let first_half = at(k / 2.0) - at(0.0);
        let second_half = at(k) - at(k / 2.0);
        assert!(first_half > 2.0 * second_half, "{first_half} vs {second_half}");
        // Plateau at W_max around t = K.
        assert!((at(k) - 1000.0).abs() < 10.0, "cwnd at K: {}", at(k));
        assert!(at(k + 1.0) - at(k - 1.0) < 5.0);
        // Convex: accelerating past W_max.
        let early = at(k + 3.0) - at(k);
        let late = at(k + 6.0) - at(k + 3.0);
        assert!(late > 3.0 * early && early > 0.0, "{early} vs {late}");
        // And it tracks W_cubic.
        let t = k + 6.0;
        assert!((at(t) - cc.w_cubic(t)).abs() < 0.05 * cc.w_cubic(t));
    }

    #[test]
    fn reno_friendly_region_with_short_rtt() {
        let rtt = Duration::from_micros(200);
        let mut now = Instant::ZERO;
        let mut cc = after_loss(20, now);
        for _ in 0..500 {
            now = round_trip(&mut cc, now, rtt);
        }
        // 0.1 s in: W_cubic has barely moved, but Reno would have grown by
        // about one segment per round trip.
        let t = now.nanos() as f64 / 1e9;
        let cwnd = cc.cwnd() as f64 / MSS as f64;
        assert!(
            cwnd > cc.w_cubic(t) + 100.0,
            "cwnd {cwnd}, W_cubic {}",
            cc.w_cubic(t)
        );
        assert!((cwnd - cc.w_est).abs() < 1.0);
    }

    #[test]
    fn rto_collapses_then_epoch_starts_in_congestion_avoidance() {
        let mut cc = after_loss(100, Instant::ZERO);
        cc.on_rto(Instant::from_millis(500), 70 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 49 * MSS));
        assert!(cc.in_slow_start());
        assert!(cc.epoch.is_none());
        // Fast convergence applied at the loss window of 70 < 100.
        assert!((cc.w_max() - 59.5).abs() < 1e-9);
        cc.on_rto(Instant::from_millis(1500), 70 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 49 * MSS), "repeated RTO");
        let mut now = Instant::from_millis(2000);
        while cc.in_slow_start() {
            now += Duration::from_millis(1);
            cc.on_ack(now, MSS, None);
        }
        assert_eq!(cc.cwnd(), 49 * MSS, "slow start stops at ssthresh");
        assert!(cc.epoch.is_none());
        now += Duration::from_millis(1);
        cc.on_ack(now, MSS, None);
        assert_eq!(cc.epoch, Some(now));
        assert!((cc.k() - (10.5f64 / C).cbrt()).abs() < 1e-9);
    }

    #[test]
    fn epoch_above_w_max_starts_convex() {
        let mut cc = Cubic::new(MSS, 10);
        cc.w.ssthresh = 10 * MSS;
        let now = Instant::from_millis(1);
        cc.on_ack(now, MSS, None);
        assert_eq!((cc.k(), cc.w_max()), (0.0, 10.0));
        // W_cubic(0) = W_max = cwnd, so the Reno estimate (alpha = 1 with
        // no earlier loss) leads: +1/cwnd segment.
        assert_eq!(cc.cwnd(), 10 * MSS + 100);
        cc.on_dup_ack();
        assert_eq!(cc.cwnd(), 11 * MSS + 100);
        cc.on_partial_ack(2 * MSS);
        assert_eq!(cc.cwnd(), 10 * MSS + 100);
    }
}
