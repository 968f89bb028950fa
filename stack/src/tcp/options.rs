//! Socket options: what setting each one does, as Linux does it.
//!
//! The shim lets the kernel check an option first (its placeholder socket
//! takes every `setsockopt`, so a bad value gets the kernel's errno) and
//! hands the value, normalised by the kernel, here as a [`SockOpt`]. On a
//! socket that is not connected yet, or a listener (whose settings are the
//! template of the connections it accepts), an option only changes the
//! [`TcpConfig`]. On a connection some also act at once, with Linux's side
//! effects:
//! - `TCP_NODELAY` on pushes what waits, corked or not (Linux's
//!   `TCP_NAGLE_PUSH`);
//! - `SO_KEEPALIVE` on arms the keepalive timer a full idle time from now;
//!   a new `TCP_KEEPIDLE` moves it to the new idle time after the last
//!   segment received (or now, if that has passed);
//! - `TCP_QUICKACK` on leaves pingpong mode, sends a delayed ACK now and
//!   sends the next ACKs at once; off enters pingpong mode (ACKs delayed).
//!
//! Options that only shape the handshake (`TCP_MAXSEG`) change nothing
//! on an open connection, as on Linux.

use core::time::Duration;

use super::config::{Keepalive, TcpConfig};
use super::socket::{State, TcpSocket};
use crate::time::Instant;

/// An option a program sets on a TCP socket, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockOpt {
    /// `TCP_NODELAY`.
    NoDelay(bool),
    /// `TCP_CORK`.
    Cork(bool),
    /// `SO_KEEPALIVE` with the `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and
    /// `TCP_KEEPCNT` in force (`None`: keepalive off).
    Keepalive(Option<Keepalive>),
    /// `TCP_USER_TIMEOUT` (`None`: 0, the retry limits decide).
    UserTimeout(Option<Duration>),
    /// `SO_LINGER` with `l_onoff` set and `l_linger` 0: close resets.
    LingerZero(bool),
    /// `IP_TOS` (ECN bits clear).
    Tos(u8),
    /// `TCP_MAXSEG` (`None`: 0, no clamp).
    MaxSeg(Option<u16>),
    /// `TCP_DEFER_ACCEPT`, in seconds as Linux reports it back (`None`: 0).
    DeferAccept(Option<Duration>),
    /// `TCP_QUICKACK`.
    QuickAck(bool),
}

/// Linux's `TCP_MAX_QUICKACKS`: the most ACKs quickack mode sends at once.
const MAX_QUICKACKS: u32 = 16;

/// Linux's `TCP_DELACK_MAX`: the longest an ACK is delayed; here, the
/// handshake's last ACK of a connecting socket in pingpong mode or with
/// `TCP_DEFER_ACCEPT`, waiting for data to ride on.
pub(crate) const DELACK_MAX: Duration = Duration::from_millis(200);

/// Linux's `TCP_ATO_MIN`: data sent this soon after data arrived makes the
/// connection interactive (pingpong mode).
pub(crate) const ATO_MIN: Duration = Duration::from_millis(40);

impl TcpConfig {
    /// Records `o` in the settings, with no side effects (an open
    /// connection takes options through
    /// [`crate::iface::TcpTable::set_option`]).
    pub fn apply(&mut self, o: SockOpt) {
        match o {
            SockOpt::NoDelay(on) => self.nodelay = on,
            SockOpt::Cork(on) => self.cork = on,
            SockOpt::Keepalive(k) => self.keepalive = k,
            SockOpt::UserTimeout(t) => self.user_timeout = t,
            SockOpt::LingerZero(on) => self.linger_zero = on,
            SockOpt::Tos(t) => self.tos = t,
            SockOpt::MaxSeg(m) => self.user_mss = m,
            SockOpt::DeferAccept(d) => self.defer_accept = d,
            SockOpt::QuickAck(on) => self.pingpong = !on,
        }
    }
}

impl TcpSocket {
    /// Sets `o` on this connection at `now`: the setting, then its side
    /// effects (see the module documentation). The caller schedules the
    /// socket (output may be due, a timer may have moved).
    pub(crate) fn set_option(&mut self, o: SockOpt, now: Instant) {
        let old = self.cfg;
        self.cfg.apply(o);
        match o {
            SockOpt::NoDelay(true) => self.push_queued(),
            SockOpt::Keepalive(_) => self.rearm_keepalive(old.keepalive, now),
            SockOpt::QuickAck(on) => self.set_quickack(on),
            _ => {}
        }
    }

    /// Whether the connection is out of pingpong mode (`TCP_QUICKACK`
    /// reads this back).
    pub fn quickack(&self) -> bool {
        !self.pingpong
    }

    /// Everything queued now goes out even if corked.
    fn push_queued(&mut self) {
        let unsent = self.tx.len().saturating_sub(self.data_offset(self.snd_nxt));
        if unsent > 0 {
            self.push_seq = Some(self.fin_seq());
        }
    }

    /// Keepalive was switched or retimed: Linux's `tcp_set_keepalive` and
    /// `TCP_KEEPIDLE`.
    fn rearm_keepalive(&mut self, old: Option<Keepalive>, now: Instant) {
        if !self.keepalive_state() {
            self.keepalive_at = None;
            return;
        }
        match (old, self.cfg.keepalive) {
            (_, None) => self.keepalive_at = None,
            (None, Some(k)) => self.keepalive_at = Some(now + k.idle),
            (Some(o), Some(k)) if o.idle != k.idle => {
                self.keepalive_at = Some((self.last_rx_at + k.idle).max(now));
            }
            (Some(_), Some(_)) => {}
        }
    }

    /// Whether keepalive probing applies in this state (Linux: not in
    /// CLOSE, LISTEN or SYN-SENT; a TIME-WAIT socket has no timer).
    pub(crate) fn keepalive_state(&self) -> bool {
        self.state.synchronized() && self.state != State::TimeWait
    }

    fn set_quickack(&mut self, on: bool) {
        if !on {
            self.pingpong = true;
            return;
        }
        self.pingpong = false;
        self.quick = self.quick.max(self.quickack_budget());
        if matches!(self.state, State::Established | State::CloseWait) && self.ack_due.is_some() {
            self.ack_now = true;
        }
    }

    /// ACKs quickack mode sends at once: Linux's `tcp_incr_quickack`, half
    /// the receive window in segments (2 if that is none), at most 16.
    pub(crate) fn quickack_budget(&self) -> u32 {
        let q = self.rx.window() / (2 * self.mss.max(1));
        match q {
            0 => 2,
            q => (q as u32).min(MAX_QUICKACKS),
        }
    }
}
