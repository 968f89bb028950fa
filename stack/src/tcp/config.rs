//! Per-socket TCP settings, with Linux's defaults where Linux has one. The
//! shim maps `setsockopt` onto these fields, after the kernel has checked
//! and normalised the value (so the ranges here are Linux's).
//!
//! A listener's settings are the template of the connections it accepts
//! (Linux's accepted sockets inherit their listener's options). Settings
//! that matter only at the handshake (`mss`, `user_mss`, `window_scaling`,
//! the buffers) change nothing on a connection once it is open, as on
//! Linux; the others take effect at once through
//! [`crate::iface::TcpTable::set_option`].

use core::time::Duration;

use super::congestion::Algorithm;

/// Keepalive probing (`SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`ETIMEDOUT`).
    pub count: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            count: 9,
        }
    }
}

/// Settings of one TCP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Send buffer size in bytes (`SO_SNDBUF`).
    pub send_buffer: usize,
    /// Receive buffer size in bytes (`SO_RCVBUF`).
    pub recv_buffer: usize,
    /// The MSS we advertise (MTU minus 40), and the most we send.
    pub mss: u16,
    /// Congestion control algorithm.
    pub congestion: Algorithm,
    /// Initial congestion window in segments (RFC 6928).
    pub initial_window: usize,
    /// `TCP_NODELAY`: send small segments without waiting (no Nagle).
    pub nodelay: bool,
    /// Longest an ACK may be delayed (Linux: 40 ms minimum).
    pub delayed_ack: Duration,
    /// Offer RFC 7323 timestamps.
    pub timestamps: bool,
    /// Offer RFC 2018 selective acknowledgements.
    pub sack: bool,
    /// Offer RFC 7323 window scaling.
    pub window_scaling: bool,
    /// SYN retransmissions before `connect` fails with `ETIMEDOUT`.
    pub syn_retries: u32,
    /// SYN-ACK retransmissions before a passive open is given up (Linux's
    /// `tcp_synack_retries`: 5, so an unanswered SYN-ACK holds its backlog
    /// slot for 1 + 2 + 4 + 8 + 16 + 32 = 63 s).
    pub synack_retries: u32,
    /// Data retransmissions before the connection fails with `ETIMEDOUT`.
    pub max_retries: u32,
    /// Retransmission timeout bounds (RFC 6298; Linux's 200 ms minimum).
    pub rto_min: Duration,
    /// Largest retransmission timeout.
    pub rto_max: Duration,
    /// RTO before any RTT sample (RFC 6298: 1 s).
    pub rto_initial: Duration,
    /// Keepalive probing, when enabled.
    pub keepalive: Option<Keepalive>,
    /// How long a connection stays in TIME-WAIT (Linux: 60 s).
    pub time_wait: Duration,
    /// How long an orphaned connection may sit in FIN-WAIT-2 (Linux: 60 s).
    pub fin_wait2: Duration,
    /// `TCP_USER_TIMEOUT`: longest data may stay unacknowledged.
    pub user_timeout: Option<Duration>,
    /// `SO_LINGER` with a zero timeout: `close` resets the connection.
    pub linger_zero: bool,
    /// `TCP_CORK`: partial segments wait until uncorked, a full segment
    /// fills, or nothing has been in flight for an RTO (Linux's "200 ms
    /// ceiling": its zero-window probe timer sends the held data).
    pub cork: bool,
    /// `TCP_MAXSEG` as set before connecting or listening: the MSS we
    /// advertise and the most we send are at most this (Linux's
    /// `user_mss`; 88..=32767).
    pub user_mss: Option<u16>,
    /// `IP_TOS`: the TOS byte of every IPv4 packet of the connection (DSCP
    /// in the upper six bits; Linux keeps a stream socket's ECN bits its
    /// own, so the shim passes them as 0).
    pub tos: u8,
    /// `TCP_DEFER_ACCEPT`, in seconds as Linux reports it back: a
    /// listener queues a connection for `accept` only once data (or a
    /// FIN) arrives, or this long after the SYN. On a connecting socket it
    /// delays the handshake's last ACK (up to 200 ms) so it can carry the
    /// first data, as Linux does.
    pub defer_accept: Option<Duration>,
    /// `TCP_QUICKACK` set to 0 before the connection opened: it starts in
    /// Linux's pingpong mode (ACKs delayed; the handshake's last ACK waits
    /// up to 200 ms for data to ride on).
    pub pingpong: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            mss: 1460,
            congestion: Algorithm::Cubic,
            initial_window: 10,
            nodelay: false,
            delayed_ack: Duration::from_millis(40),
            timestamps: true,
            sack: true,
            window_scaling: true,
            syn_retries: 6,
            synack_retries: 5,
            max_retries: 15,
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(120),
            rto_initial: Duration::from_secs(1),
            keepalive: None,
            time_wait: Duration::from_secs(60),
            fin_wait2: Duration::from_secs(60),
            user_timeout: None,
            linger_zero: false,
            cork: false,
            user_mss: None,
            tos: 0,
            defer_accept: None,
            pingpong: false,
        }
    }
}

impl TcpConfig {
    /// The MSS we advertise in a SYN or SYN-ACK: the device's, lowered by
    /// `TCP_MAXSEG`.
    pub fn advertised_mss(&self) -> u16 {
        match self.user_mss {
            Some(u) => self.mss.min(u),
            None => self.mss,
        }
    }

    /// The window scale we offer so that the receive buffer fits the
    /// 16-bit window field (RFC 7323 §2.3; at most 14).
    pub fn rcv_scale(&self) -> u8 {
        if !self.window_scaling {
            return 0;
        }
        let mut shift = 0u8;
        while shift < 14 && (self.recv_buffer >> shift) > 65535 {
            shift += 1;
        }
        shift
    }
}
