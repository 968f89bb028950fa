//! Per-socket TCP settings, with Linux's defaults where Linux has one. The
//! shim maps `setsockopt` onto these fields.

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
        }
    }
}

impl TcpConfig {
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
