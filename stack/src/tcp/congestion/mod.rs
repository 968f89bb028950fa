//! Pluggable congestion control: the [`CongestionControl`] trait, the
//! window arithmetic shared by its implementations, [`NewReno`] (RFC 5681,
//! with RFC 6582's partial-ACK deflation) and [`Cubic`] (RFC 9438).
//!
//! A controller only does window arithmetic; the socket owns loss
//! detection and the recovery state machine (RFC 6582's recover point,
//! RFC 6675's pipe) and tells the controller what happened:
//! - [`on_ack`](CongestionControl::on_ack) for each ACK that acknowledges
//!   new data outside recovery;
//! - [`on_congestion_event`](CongestionControl::on_congestion_event) when
//!   entering fast recovery, which sets `cwnd = ssthresh` (RFC 6675 §5
//!   step 4.2, RFC 9438 §4.6). A socket doing RFC 6582 NewReno without SACK
//!   inflates the window itself through
//!   [`on_dup_ack`](CongestionControl::on_dup_ack) (three calls give
//!   RFC 6582's `ssthresh + 3*SMSS`) and deflates it with
//!   [`on_partial_ack`](CongestionControl::on_partial_ack);
//! - [`on_recovery_exit`](CongestionControl::on_recovery_exit) on the ACK
//!   that ends recovery, and [`on_rto`](CongestionControl::on_rto) when the
//!   retransmission timer fires.
//!
//! Invariants: `cwnd >= 1 MSS` and `ssthresh >= 2 MSS` once set (it starts
//! "arbitrarily high", RFC 5681 §3.1). Slow start uses appropriate byte
//! counting (RFC 3465, L = 2·MSS per ACK). Congestion avoidance adds
//! MSS·acked/cwnd per ACK on average without ever rounding to zero: the
//! acknowledged bytes are counted, and each full cwnd of them adds one MSS
//! (RFC 3465 §2.1, as Linux's `tcp_cong_avoid_ai`), so one window's worth
//! adds exactly one MSS whatever the ACK pattern. No method allocates.

use core::time::Duration;

use crate::time::Instant;

pub mod cubic;
pub mod newreno;

pub use self::cubic::Cubic;
pub use self::newreno::NewReno;

/// Default initial window in segments (RFC 6928).
pub const DEFAULT_INITIAL_WINDOW: usize = 10;

/// A congestion control algorithm: the sender's `cwnd` and `ssthresh`, in
/// bytes, driven by the socket's view of ACKs and losses.
pub trait CongestionControl: core::fmt::Debug + Send {
    /// Congestion window in bytes.
    fn cwnd(&self) -> usize;

    /// Slow-start threshold in bytes (`usize::MAX` until the first loss).
    fn ssthresh(&self) -> usize;

    /// Sets the sender MSS (after the handshake, or on a path MTU change).
    /// Before any ACK or loss the initial window is recomputed for the new
    /// MSS; afterwards `cwnd` is kept (raised to 1 MSS if below).
    fn set_mss(&mut self, mss: usize);

    /// `acked` bytes of new data were cumulatively acknowledged at `now`,
    /// outside fast recovery. `srtt` is the smoothed RTT if known.
    fn on_ack(&mut self, now: Instant, acked: usize, srtt: Option<Duration>);

    /// A loss was detected by duplicate ACKs or SACK: fast recovery starts.
    /// Lowers `ssthresh` from `flight_size` (bytes outstanding) and sets
    /// `cwnd = ssthresh`.
    fn on_congestion_event(&mut self, now: Instant, flight_size: usize);

    /// Fast recovery ended (a full ACK): `cwnd = ssthresh`.
    fn on_recovery_exit(&mut self, now: Instant);

    /// The retransmission timer fired: `ssthresh` is lowered as for a
    /// congestion event (but not again on a repeated timeout with no new
    /// data acknowledged in between, RFC 5681 §3.1 eq. 4), and `cwnd`
    /// becomes the loss window of 1 MSS.
    fn on_rto(&mut self, now: Instant, flight_size: usize);

    /// A partial ACK during NewReno fast recovery acknowledged `acked`
    /// bytes: RFC 6582 §3.2 step 5 deflates `cwnd` by `acked` and adds back
    /// one MSS if at least one MSS was acknowledged (never below 1 MSS).
    /// The same for every algorithm: RFC 9438 §4.6 leaves recovery to
    /// RFC 6582/6675, so CUBIC needs nothing different.
    fn on_partial_ack(&mut self, acked: usize);

    /// An additional duplicate ACK during NewReno fast recovery: inflates
    /// `cwnd` by one MSS (RFC 5681 §3.2 step 4, RFC 6582 §3.2 step 3).
    /// Not for SACK-based recovery, which counts `pipe` instead.
    fn on_dup_ack(&mut self);

    /// Whether in slow start (`cwnd < ssthresh`).
    fn in_slow_start(&self) -> bool;

    /// The algorithm's name, as Linux spells it (`"reno"`, `"cubic"`).
    fn name(&self) -> &'static str;
}

/// The available algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// RFC 5681 / RFC 6582.
    NewReno,
    /// RFC 9438 (Linux's default).
    #[default]
    Cubic,
}

impl Algorithm {
    /// The algorithm with Linux's name (`TCP_CONGESTION`): `"reno"` or
    /// `"newreno"`, and `"cubic"`.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "reno" | "newreno" => Some(Algorithm::NewReno),
            "cubic" => Some(Algorithm::Cubic),
            _ => None,
        }
    }
}

/// A controller for `alg` with sender MSS `mss` and an initial window of
/// `initial_window_segments` segments (use [`DEFAULT_INITIAL_WINDOW`]).
/// The one allocation is here, per connection.
pub fn new_controller(
    alg: Algorithm,
    mss: usize,
    initial_window_segments: usize,
) -> Box<dyn CongestionControl> {
    match alg {
        Algorithm::NewReno => Box::new(NewReno::new(mss, initial_window_segments)),
        Algorithm::Cubic => Box::new(Cubic::new(mss, initial_window_segments)),
    }
}

/// The window state and arithmetic common to all algorithms.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub(crate) cwnd: usize,
    pub(crate) ssthresh: usize,
    pub(crate) mss: usize,
    iw_segments: usize,
    /// Bytes acknowledged in congestion avoidance not yet turned into cwnd.
    credit: usize,
    /// No ACK or loss yet: `set_mss` recomputes the initial window.
    fresh: bool,
    /// An RTO happened and no new data has been acknowledged since.
    rto_pending: bool,
}

impl Window {
    pub(crate) fn new(mss: usize, iw_segments: usize) -> Window {
        let mss = mss.max(1);
        let iw_segments = iw_segments.max(1);
        Window {
            cwnd: mss.saturating_mul(iw_segments),
            ssthresh: usize::MAX,
            mss,
            iw_segments,
            credit: 0,
            fresh: true,
            rto_pending: false,
        }
    }

    pub(crate) fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    pub(crate) fn set_mss(&mut self, mss: usize) {
        self.mss = mss.max(1);
        if self.fresh {
            self.cwnd = self.mss.saturating_mul(self.iw_segments);
        } else {
            self.cwnd = self.cwnd.max(self.mss);
        }
        self.credit = 0;
    }

    /// Book-keeping for an ACK of new data.
    pub(crate) fn acked(&mut self) {
        self.fresh = false;
        self.rto_pending = false;
    }

    /// RFC 3465 slow start: at most L = 2 MSS per ACK, not beyond ssthresh.
    pub(crate) fn slow_start(&mut self, acked: usize) {
        let inc = acked.min(2 * self.mss);
        self.cwnd = self.cwnd.saturating_add(inc).min(self.ssthresh.max(self.cwnd));
    }

    /// Congestion avoidance: one MSS per cwnd of acknowledged bytes.
    pub(crate) fn avoid(&mut self, acked: usize) {
        self.credit = self.credit.saturating_add(acked);
        if self.credit >= self.cwnd {
            let windows = self.credit / self.cwnd;
            self.credit -= windows * self.cwnd;
            self.cwnd = self.cwnd.saturating_add(windows.saturating_mul(self.mss));
        }
    }

    /// Sets ssthresh from the flight size and a reduction factor given as
    /// a fraction `num/den`, at least 2 MSS (RFC 5681 eq. 4, RFC 9438 §4.6).
    pub(crate) fn reduce_ssthresh(&mut self, flight_size: usize, num: usize, den: usize) {
        let reduced = (flight_size / den).saturating_mul(num) + (flight_size % den) * num / den;
        self.ssthresh = reduced.max(2 * self.mss);
        self.fresh = false;
        self.credit = 0;
    }

    /// Whether this RTO should lower ssthresh (not a repeated timeout), and
    /// records that one happened.
    pub(crate) fn rto_reduces(&mut self) -> bool {
        let first = !self.rto_pending;
        self.rto_pending = true;
        first
    }

    /// The RFC 5681 loss window.
    pub(crate) fn collapse(&mut self) {
        self.cwnd = self.mss;
        self.credit = 0;
        self.fresh = false;
    }

    /// RFC 6582 §3.2 step 5.
    pub(crate) fn partial_ack(&mut self, acked: usize) {
        let mut cwnd = self.cwnd.saturating_sub(acked);
        if acked >= self.mss {
            cwnd = cwnd.saturating_add(self.mss);
        }
        self.cwnd = cwnd.max(self.mss);
    }

    /// RFC 5681 §3.2 step 4.
    pub(crate) fn dup_ack(&mut self) {
        self.cwnd = self.cwnd.saturating_add(self.mss);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_and_names() {
        let reno = new_controller(Algorithm::NewReno, 1460, DEFAULT_INITIAL_WINDOW);
        assert_eq!(reno.name(), "reno");
        assert_eq!(reno.cwnd(), 14_600);
        assert_eq!(reno.ssthresh(), usize::MAX);
        assert!(reno.in_slow_start());
        let cubic = new_controller(Algorithm::default(), 1000, 4);
        assert_eq!(cubic.name(), "cubic");
        assert_eq!(cubic.cwnd(), 4000);
        assert_eq!(Algorithm::from_name("reno"), Some(Algorithm::NewReno));
        assert_eq!(Algorithm::from_name("cubic"), Some(Algorithm::Cubic));
        assert_eq!(Algorithm::from_name("bbr"), None);
    }

    #[test]
    fn window_edge_cases() {
        // A zero MSS or window is treated as one.
        let w = Window::new(0, 0);
        assert_eq!((w.mss, w.cwnd), (1, 1));
        // ssthresh from an odd flight size: floor(flight * 7 / 10) without
        // overflow, and at least 2 MSS.
        let mut w = Window::new(1000, 10);
        w.reduce_ssthresh(usize::MAX, 7, 10);
        assert_eq!(w.ssthresh, usize::MAX / 10 * 7 + 5 * 7 / 10);
        w.reduce_ssthresh(1001, 1, 2);
        assert_eq!(w.ssthresh, 2000);
        w.reduce_ssthresh(9999, 1, 2);
        assert_eq!(w.ssthresh, 4999);
        // Slow start stops at ssthresh.
        w.cwnd = 4000;
        w.slow_start(5000);
        assert_eq!(w.cwnd, 4999);
    }
}
