//! [`TcpInfo`]: a connection's state and counters in one snapshot, the
//! numbers Linux reports through `getsockopt(TCP_INFO)` (which the shim
//! fills from it), in the stack's own units.
//!
//! Every field is read from the socket at the moment of the call; nothing
//! is estimated except where Linux estimates too (the receive MSS, which
//! both take as our own MSS until segments say otherwise).

use core::time::Duration;

use super::socket::{State, TcpSocket};

/// A snapshot of one connection (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    /// The RFC 9293 state.
    pub state: State,
    /// In fast recovery (a loss repaired by fast retransmit or SACK).
    pub in_recovery: bool,
    /// Retransmission timeouts in a row for the current data.
    pub retries: u32,
    /// Back-offs of the retransmission timer in force.
    pub backoff: u32,
    /// RFC 7323 timestamps negotiated.
    pub timestamps: bool,
    /// SACK negotiated.
    pub sack: bool,
    /// Window scaling negotiated: (our send shift, our receive shift).
    pub window_scale: Option<(u8, u8)>,
    /// Current retransmission timeout.
    pub rto: Duration,
    /// Delayed-ACK timeout.
    pub ato: Duration,
    /// MSS we send with.
    pub snd_mss: usize,
    /// MSS we advertised.
    pub adv_mss: usize,
    /// Segments sent and not yet acknowledged.
    pub unacked: usize,
    /// Smoothed RTT, once measured.
    pub srtt: Option<Duration>,
    /// RTT variation.
    pub rttvar: Duration,
    /// Congestion window, bytes.
    pub cwnd: usize,
    /// Slow-start threshold, bytes.
    pub ssthresh: usize,
    /// The peer's receive window, bytes.
    pub snd_wnd: usize,
    /// The window we offer, bytes.
    pub rcv_wnd: usize,
    /// Receive buffer capacity, bytes.
    pub rcv_space: usize,
    /// Bytes queued and not yet sent.
    pub notsent: usize,
    /// Segments retransmitted, in all.
    pub total_retrans: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Segments sent.
    pub segs_out: u64,
    /// Segments received.
    pub segs_in: u64,
}

impl TcpSocket {
    /// The connection's state and counters now.
    pub fn info(&self) -> TcpInfo {
        let mss = self.mss.max(1);
        let flight = self.snd_max.distance(self.snd_una).max(0) as usize;
        // Past the highest byte sent (snd_nxt rewinds after a timeout).
        let sent = self.data_offset(self.snd_max);
        TcpInfo {
            state: self.state,
            in_recovery: self.recovery.is_some(),
            retries: self.retries,
            backoff: self.rtt.backoff_count(),
            timestamps: self.ts_recent.is_some(),
            sack: self.sack_ok,
            window_scale: self.ws_ok.then_some((self.snd_scale, self.rcv_scale)),
            rto: self.rtt.rto(),
            ato: self.cfg.delayed_ack,
            snd_mss: self.mss,
            adv_mss: usize::from(self.cfg.mss),
            unacked: flight.div_ceil(mss),
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            cwnd: self.cc.cwnd(),
            ssthresh: self.cc.ssthresh(),
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rx.window(),
            rcv_space: self.rx.capacity(),
            notsent: self.tx.len().saturating_sub(sent),
            total_retrans: self.stats.retransmits,
            bytes_sent: self.stats.bytes_sent,
            bytes_acked: self.stats.bytes_acked,
            bytes_received: self.stats.bytes_received,
            segs_out: self.stats.segs_out,
            segs_in: self.stats.segs_in,
        }
    }
}
