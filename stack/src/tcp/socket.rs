//! The TCP socket: its state (RFC 9293 names), its sequence variables, and
//! the operations a program performs on it (send, receive, shutdown, close,
//! readiness). Segment arrival is in [`super::input`], segment generation
//! and timers in [`super::output`].
//!
//! Invariants:
//! - `snd_una <= snd_nxt <= snd_max`; the send buffer holds the bytes from
//!   the first unacknowledged data byte on (the SYN and FIN occupy sequence
//!   space but no buffer space).
//! - `rcv_nxt` is the next byte expected; the receive buffer's readable
//!   bytes end at `rcv_nxt`; the advertised right edge `rcv_adv` never moves
//!   left (RFC 9293 §3.8.6.2.2: the window is not shrunk).
//! - Every operation is non-blocking and reports the errno the Linux kernel
//!   would: `EAGAIN` when it would block, `EPIPE` after shutdown, the
//!   pending error (`ECONNRESET`, `ECONNREFUSED`, `ETIMEDOUT`) once.
//! - Readiness changes bump `tick` and wake the registered wakers.

use core::fmt;
use core::net::SocketAddrV4;
use core::task::Waker;
use core::time::Duration;

use super::buffer::{RecvBuffer, SendBuffer};
use super::config::TcpConfig;
use super::congestion::{new_controller, CongestionControl};
use super::rtt::{RttEstimator, RttTimer};
use super::scoreboard::Scoreboard;
use crate::error::{Errno, Result};
use crate::time::Instant;
use crate::wire::SeqNumber;

/// The connection states of RFC 9293 §3.3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection.
    Closed,
    /// Waiting for a connection request (listening sockets live in the
    /// interface's listener table; a socket in this state is about to be).
    Listen,
    /// SYN sent, waiting for the peer's SYN.
    SynSent,
    /// SYN received and answered, waiting for its acknowledgement.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We closed; our FIN is not yet acknowledged.
    FinWait1,
    /// We closed and our FIN is acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer closed; waiting for us to close.
    CloseWait,
    /// Both closed at once; waiting for the ACK of our FIN.
    Closing,
    /// The peer closed, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both closed; waiting out 2 MSL for stray segments.
    TimeWait,
}

impl State {
    /// Whether the handshake has completed in this state (RFC 9293's
    /// "synchronized" states).
    pub fn synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// Whether we may still send data.
    pub fn can_send(self) -> bool {
        matches!(self, State::Established | State::CloseWait)
    }

    /// Whether data from the peer may still arrive.
    pub fn can_receive(self) -> bool {
        matches!(self, State::Established | State::FinWait1 | State::FinWait2)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        };
        f.write_str(s)
    }
}

/// What a socket is ready for, with the tick of its last change (a waiter
/// that saw tick `t` and then finds a larger one knows something happened:
/// no lost wake-ups).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Data (or end of stream, or an error) can be read.
    pub readable: bool,
    /// Data can be written.
    pub writable: bool,
    /// The peer shut down its sending side (`EPOLLRDHUP`).
    pub read_closed: bool,
    /// Both directions are closed (`EPOLLHUP`).
    pub hangup: bool,
    /// An error is pending (`EPOLLERR`).
    pub error: bool,
    /// Incremented on every change.
    pub tick: u64,
}

/// Per-connection counters (`TCP_INFO`-like).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Segments received for this connection.
    pub segs_in: u64,
    /// Segments sent.
    pub segs_out: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Payload bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Segments retransmitted (any reason).
    pub retransmits: u64,
    /// Fast retransmissions (three duplicate ACKs or SACK loss detection).
    pub fast_retransmits: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Duplicate ACKs received.
    pub dup_acks: u64,
    /// Segments dropped as outside the window.
    pub out_of_window: u64,
    /// Challenge ACKs sent (RFC 5961).
    pub challenge_acks: u64,
    /// Zero-window probes sent.
    pub window_probes: u64,
    /// Challenge ACKs and ACKs to out-of-window segments not sent: one
    /// went out less than [`OOW_ACK_INTERVAL`] before (RFC 5961 §7).
    pub challenge_acks_limited: u64,
    /// RSTs in the window but not at RCV.NXT (RFC 5961 §3.2): challenged,
    /// not obeyed.
    pub rst_challenged: u64,
    /// SYNs on a synchronized connection (RFC 5961 §4): challenged, not
    /// obeyed.
    pub syn_challenged: u64,
    /// Segments dropped for an unacceptable ACK: of data not yet sent, or
    /// older than the peer's largest window allows (RFC 5961 §5.2).
    pub ack_invalid: u64,
    /// Out-of-order segments the reassembly queue refused (it tracks at
    /// most [`super::buffer::MAX_OOO_RANGES`] holes; the peer retransmits).
    pub ooo_refused: u64,
    /// Segments whose payload met our closed window (dropped, ACKed).
    pub zero_window_dropped: u64,
}

impl TcpStats {
    /// Adds `other`'s counters to these (the connections of an interface).
    pub fn add(&mut self, other: &TcpStats) {
        let TcpStats {
            segs_in,
            segs_out,
            bytes_sent,
            bytes_acked,
            bytes_received,
            retransmits,
            fast_retransmits,
            timeouts,
            dup_acks,
            out_of_window,
            challenge_acks,
            window_probes,
            challenge_acks_limited,
            rst_challenged,
            syn_challenged,
            ack_invalid,
            ooo_refused,
            zero_window_dropped,
        } = *other;
        self.segs_in += segs_in;
        self.segs_out += segs_out;
        self.bytes_sent += bytes_sent;
        self.bytes_acked += bytes_acked;
        self.bytes_received += bytes_received;
        self.retransmits += retransmits;
        self.fast_retransmits += fast_retransmits;
        self.timeouts += timeouts;
        self.dup_acks += dup_acks;
        self.out_of_window += out_of_window;
        self.challenge_acks += challenge_acks;
        self.window_probes += window_probes;
        self.challenge_acks_limited += challenge_acks_limited;
        self.rst_challenged += rst_challenged;
        self.syn_challenged += syn_challenged;
        self.ack_invalid += ack_invalid;
        self.ooo_refused += ooo_refused;
        self.zero_window_dropped += zero_window_dropped;
    }
}

/// At most one challenge ACK, or ACK to an out-of-window segment without
/// data, per connection in this time (Linux's `tcp_invalid_ratelimit`,
/// 500 ms; RFC 5961 §7): a blind attacker's flood of forged RSTs, SYNs or
/// ACKs cannot make the connection flood its peer in turn.
pub const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);

/// What a timer or input step asks the interface to do with the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing beyond what the socket did itself.
    None,
    /// The handshake completed (a passive socket joins its accept queue).
    Established,
    /// The connection is over: the socket can be freed once its owner
    /// closed it (or at once if it was orphaned).
    Closed,
    /// The connection entered TIME-WAIT.
    TimeWait,
}

/// A TCP connection.
pub struct TcpSocket {
    pub(crate) state: State,
    pub(crate) cfg: TcpConfig,
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,

    pub(crate) iss: SeqNumber,
    pub(crate) snd_una: SeqNumber,
    pub(crate) snd_nxt: SeqNumber,
    pub(crate) snd_max: SeqNumber,
    pub(crate) snd_wnd: usize,
    pub(crate) max_snd_wnd: usize,
    pub(crate) snd_wl1: SeqNumber,
    pub(crate) snd_wl2: SeqNumber,
    /// Shift applied to the peer's window field.
    pub(crate) snd_scale: u8,
    /// Shift applied to our window field.
    pub(crate) rcv_scale: u8,
    /// Maximum segment size we send.
    pub(crate) mss: usize,

    pub(crate) irs: SeqNumber,
    pub(crate) rcv_nxt: SeqNumber,
    pub(crate) rcv_adv: SeqNumber,
    pub(crate) last_ack_sent: SeqNumber,

    pub(crate) tx: SendBuffer,
    pub(crate) rx: RecvBuffer,
    /// The program shut down its sending side: a FIN follows the data.
    pub(crate) fin_queued: bool,
    /// The sequence number our FIN occupies, once sent.
    pub(crate) fin_sent: Option<SeqNumber>,
    /// The peer's FIN has been received in order.
    pub(crate) fin_received: bool,
    /// The sequence number of a FIN received ahead of missing data.
    pub(crate) remote_fin: Option<SeqNumber>,
    /// The program shut down its receiving side.
    pub(crate) rd_shut: bool,
    /// The connection was reset or timed out: both directions are shut.
    pub(crate) reset: bool,
    /// The connection was opened by `connect` (not accepted).
    pub(crate) active_open: bool,
    /// The persist timer found the peer's window too small for the held
    /// data: send a partial segment anyway (RFC 9293 §3.8.6.2.1 override).
    pub(crate) sws_override: bool,
    /// The peer offered window scaling (we answer in kind).
    pub(crate) ws_ok: bool,
    /// Retransmit one segment from `snd_una` (fast retransmit, partial ACK).
    pub(crate) rtx_una: bool,

    /// RFC 7323 timestamps in use: (TS.Recent, our clock offset).
    pub(crate) ts_recent: Option<u32>,
    pub(crate) ts_offset: u32,
    pub(crate) sack_ok: bool,

    pub(crate) rto_at: Option<Instant>,
    pub(crate) retries: u32,
    /// When the oldest unacknowledged data was first sent (user timeout).
    pub(crate) unacked_since: Option<Instant>,
    pub(crate) ack_due: Option<Instant>,
    pub(crate) ack_now: bool,
    pub(crate) segs_unacked: u32,
    pub(crate) persist_at: Option<Instant>,
    pub(crate) persist_backoff: u32,
    /// Zero-window probes sent since the peer last acknowledged anything
    /// (Linux's `icsk_probes_out`): a peer that answers none of
    /// `max_retries` is gone.
    pub(crate) probes_out: u32,
    /// A zero-window or keepalive probe is to be sent.
    pub(crate) probe_pending: bool,
    /// When the last rate-limited ACK went out ([`OOW_ACK_INTERVAL`]).
    pub(crate) oow_ack_at: Option<Instant>,
    pub(crate) keepalive_at: Option<Instant>,
    pub(crate) keepalive_sent: u32,
    /// When a segment last arrived (keepalive counts idleness from here).
    pub(crate) last_rx_at: Instant,
    /// When data last arrived (Linux's `lrcvtime`, for pingpong mode).
    pub(crate) last_data_rx: Option<Instant>,
    /// Linux's pingpong mode: the connection is interactive, so ACKs wait
    /// to ride on the reply (`TCP_QUICKACK` reads back its negation).
    pub(crate) pingpong: bool,
    /// ACKs still to be sent at once rather than delayed (Linux's
    /// `icsk_ack.quick`), while not in pingpong mode.
    pub(crate) quick: u32,
    /// `TCP_NODELAY` was set while data waited: the data queued up to here
    /// goes out even if corked (Linux's `TCP_NAGLE_PUSH`).
    pub(crate) push_seq: Option<SeqNumber>,
    /// When zero-window probing began (`TCP_USER_TIMEOUT` bounds it).
    pub(crate) probes_since: Option<Instant>,
    /// `TCP_DEFER_ACCEPT`: a passive connection goes to the accept queue
    /// by this time even without data.
    pub(crate) defer_deadline: Option<Instant>,
    /// The handshake is complete but the connection waits (for data or
    /// `defer_deadline`) before joining the accept queue.
    pub(crate) deferred: bool,
    pub(crate) timewait_at: Option<Instant>,
    pub(crate) finwait2_at: Option<Instant>,
    /// A RST is to be sent (abortive close).
    pub(crate) rst_pending: bool,

    pub(crate) rtt: RttEstimator,
    pub(crate) rtt_timer: RttTimer,
    pub(crate) cc: Box<dyn CongestionControl>,
    /// In fast recovery until `snd_una` passes this point (RFC 6582).
    pub(crate) recovery: Option<SeqNumber>,
    pub(crate) dup_acks: u32,
    /// Highest sequence retransmitted in this recovery (RFC 6675 HighRxt).
    pub(crate) high_rxt: SeqNumber,
    pub(crate) scoreboard: Scoreboard,

    pub(crate) error: Option<Errno>,
    /// The program closed its handle; the stack finishes the connection.
    pub(crate) orphan: bool,
    pub(crate) readiness_tick: u64,
    pub(crate) last_readiness: Readiness,
    pub(crate) rx_waker: Option<Waker>,
    pub(crate) tx_waker: Option<Waker>,
    pub(crate) stats: TcpStats,
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSocket")
            .field("state", &self.state)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("snd_max", &self.snd_max)
            .field("snd_wnd", &self.snd_wnd)
            .field("cwnd", &self.cc.cwnd())
            .field("tx", &self.tx.len())
            .field("rcv_nxt", &self.rcv_nxt)
            .field("rcv_adv", &self.rcv_adv)
            .field("rx", &self.rx.len())
            .field("rx_window", &self.rx.window())
            .field("rto_at", &self.rto_at)
            .field("persist_at", &self.persist_at)
            .field("ack_due", &self.ack_due)
            .field("ack_now", &self.ack_now)
            .field("recovery", &self.recovery)
            .field("rtx_una", &self.rtx_una)
            .field("high_rxt", &self.high_rxt)
            .field("dup_acks", &self.dup_acks)
            .finish()
    }
}

impl TcpSocket {
    /// A closed socket with `cfg`'s buffers.
    pub fn new(cfg: TcpConfig) -> TcpSocket {
        let zero = SeqNumber(0);
        TcpSocket {
            state: State::Closed,
            local: SocketAddrV4::new([0, 0, 0, 0].into(), 0),
            remote: SocketAddrV4::new([0, 0, 0, 0].into(), 0),
            iss: zero,
            snd_una: zero,
            snd_nxt: zero,
            snd_max: zero,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: zero,
            snd_wl2: zero,
            snd_scale: 0,
            rcv_scale: 0,
            mss: 536,
            irs: zero,
            rcv_nxt: zero,
            rcv_adv: zero,
            last_ack_sent: zero,
            tx: SendBuffer::new(cfg.send_buffer),
            rx: RecvBuffer::new(cfg.recv_buffer),
            fin_queued: false,
            fin_sent: None,
            fin_received: false,
            remote_fin: None,
            rd_shut: false,
            reset: false,
            active_open: false,
            sws_override: false,
            ws_ok: false,
            rtx_una: false,
            ts_recent: None,
            ts_offset: 0,
            sack_ok: false,
            rto_at: None,
            retries: 0,
            unacked_since: None,
            ack_due: None,
            ack_now: false,
            segs_unacked: 0,
            persist_at: None,
            persist_backoff: 0,
            probes_out: 0,
            probe_pending: false,
            oow_ack_at: None,
            keepalive_at: None,
            keepalive_sent: 0,
            last_rx_at: Instant::ZERO,
            last_data_rx: None,
            pingpong: cfg.pingpong,
            quick: 0,
            push_seq: None,
            probes_since: None,
            defer_deadline: None,
            deferred: false,
            timewait_at: None,
            finwait2_at: None,
            rst_pending: false,
            rtt: RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            rtt_timer: RttTimer::default(),
            cc: new_controller(cfg.congestion, cfg.mss as usize, cfg.initial_window),
            recovery: None,
            dup_acks: 0,
            high_rxt: zero,
            scoreboard: Scoreboard::default(),
            error: None,
            orphan: false,
            readiness_tick: 0,
            last_readiness: Readiness::default(),
            rx_waker: None,
            tx_waker: None,
            stats: TcpStats::default(),
            cfg,
        }
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The initial sequence numbers: ours and the peer's.
    pub fn initial_seqs(&self) -> (SeqNumber, SeqNumber) {
        (self.iss, self.irs)
    }

    /// Local address.
    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    /// Remote address.
    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    /// The settings.
    pub fn config(&self) -> &TcpConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> TcpStats {
        self.stats
    }

    /// Smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        self.cc.cwnd()
    }

    /// The maximum segment size in use for sending.
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// What `TCP_MAXSEG` reads, as on Linux (its `mss_cache`): the payload
    /// of a full segment less the options every segment carries
    /// (timestamps), SACK blocks aside; on a closed socket, the
    /// `TCP_MAXSEG` set, if any.
    pub fn maxseg(&self) -> usize {
        let ts = |on: bool| if on { 12 } else { 0 };
        match (self.state, self.cfg.user_mss) {
            (State::Closed | State::Listen, Some(u)) => usize::from(u),
            (State::SynSent, _) => {
                usize::from(self.cfg.advertised_mss()).saturating_sub(ts(self.cfg.timestamps))
            }
            _ => self.mss.saturating_sub(ts(self.ts_recent.is_some())),
        }
    }

    /// Bytes waiting to be sent or acknowledged (`SIOCOUTQ`).
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }

    /// Bytes a send could queue now (free room in the send buffer).
    pub fn send_room(&self) -> usize {
        self.tx.free()
    }

    /// Bytes waiting to be read (`FIONREAD`).
    pub fn recv_queue(&self) -> usize {
        self.rx.len()
    }

    /// Begins an active open (the interface chose `local` and `iss`).
    pub(crate) fn connect(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        now: Instant,
    ) {
        self.local = local;
        self.remote = remote;
        self.set_iss(iss);
        self.rcv_scale = self.cfg.rcv_scale();
        self.last_rx_at = now;
        self.active_open = true;
        self.state = State::SynSent;
        self.rto_at = Some(self.rtt.deadline(now));
        self.touch();
    }

    pub(crate) fn set_iss(&mut self, iss: SeqNumber) {
        self.iss = iss;
        self.snd_una = iss;
        self.snd_nxt = iss;
        self.snd_max = iss;
        self.high_rxt = iss;
        self.ts_offset = Self::ts_offset_for(iss);
    }

    /// Our timestamp clock's offset on a connection with initial sequence
    /// number `iss` (each connection's clock starts somewhere of its own).
    fn ts_offset_for(iss: SeqNumber) -> u32 {
        iss.0.rotate_left(13)
    }

    /// What our timestamp clock reads at `now` on a connection with
    /// initial sequence number `iss` (a SYN cookie's SYN-ACK is timestamped
    /// before that connection exists).
    pub(crate) fn ts_clock(iss: SeqNumber, now: Instant) -> u32 {
        ((now.nanos() / 1_000_000) as u32).wrapping_add(Self::ts_offset_for(iss))
    }

    /// Queues data; returns how much was taken. `EAGAIN` when the buffer is
    /// full or the connection is still opening, `EPIPE` after shutdown or
    /// on a connection that never opened, the pending error otherwise.
    pub fn send(&mut self, data: &[u8]) -> Result<usize> {
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        if self.fin_queued || self.rst_pending {
            return Err(Errno::EPIPE);
        }
        match self.state {
            State::Established | State::CloseWait => {}
            State::SynSent | State::SynReceived => return Err(Errno::EAGAIN),
            _ => return Err(Errno::EPIPE),
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = self.tx.write(data);
        if n == 0 {
            return Err(Errno::EAGAIN);
        }
        self.touch();
        Ok(n)
    }

    /// Reads received data; `Ok(0)` at end of stream. `EAGAIN` when nothing
    /// is there yet, `ENOTCONN` on a socket that never connected, the
    /// pending error (`ECONNRESET`...) once.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_with(buf, false)
    }

    /// Like [`Self::recv`] but leaves the data in place (`MSG_PEEK`).
    pub fn peek(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_with(buf, true)
    }

    fn recv_with(&mut self, buf: &mut [u8], peek: bool) -> Result<usize> {
        if !self.rx.is_empty() && !buf.is_empty() {
            let n = if peek {
                let (a, b) = self.rx.peek(buf.len());
                buf[..a.len()].copy_from_slice(a);
                buf[a.len()..a.len() + b.len()].copy_from_slice(b);
                a.len() + b.len()
            } else {
                self.rx.read(buf)
            };
            if !peek {
                self.after_read();
            }
            return Ok(n);
        }
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        if self.rcv_shutdown() {
            return Ok(0);
        }
        match self.state {
            State::Closed | State::Listen => Err(Errno::ENOTCONN),
            _ if buf.is_empty() => Ok(0),
            _ => Err(Errno::EAGAIN),
        }
    }

    /// After the program read: if the window opened by a meaningful amount
    /// (two segments, or half the buffer), announce it now.
    fn after_read(&mut self) {
        let wnd = self.rx.window();
        let advertised = self.rcv_adv.distance(self.rcv_nxt).max(0) as usize;
        if self.state.can_receive() && wnd >= advertised + (2 * self.mss).min(self.rx.capacity() / 2) {
            self.ack_now = true;
        }
        self.touch();
    }

    /// `shutdown(SHUT_WR)`: a FIN follows the queued data.
    pub fn shutdown_write(&mut self) -> Result<()> {
        match self.state {
            State::Closed | State::Listen => Err(Errno::ENOTCONN),
            State::SynSent => {
                self.state = State::Closed;
                self.touch();
                Ok(())
            }
            _ => {
                self.fin_queued = true;
                self.touch();
                Ok(())
            }
        }
    }

    /// `shutdown(SHUT_RD)`: reads return end of stream; received data is
    /// discarded.
    pub fn shutdown_read(&mut self) -> Result<()> {
        if matches!(self.state, State::Closed | State::Listen) {
            return Err(Errno::ENOTCONN);
        }
        self.rd_shut = true;
        let n = self.rx.len();
        self.rx.consume(n);
        self.touch();
        Ok(())
    }

    /// `close()`: the program gives the socket up. Unread data, or a zero
    /// linger, resets the connection (as Linux does); otherwise it is shut
    /// down gracefully and finished by the stack. Returns whether the socket
    /// can be freed at once.
    ///
    /// An orphan must not wait for the peer forever: one already in
    /// FIN-WAIT-2 (the program shut down its side first) starts the
    /// FIN-WAIT-2 timer here, as Linux's `tcp_close` does.
    pub(crate) fn close(&mut self, now: Instant) -> bool {
        self.orphan = true;
        self.rx_waker = None;
        self.tx_waker = None;
        match self.state {
            State::Closed | State::Listen | State::SynSent => {
                self.state = State::Closed;
                true
            }
            State::TimeWait => true,
            _ if !self.rx.is_empty() || self.cfg.linger_zero || self.rd_shut && self.rx.has_ooo() => {
                self.abort();
                false
            }
            _ => {
                self.fin_queued = true;
                if self.state == State::FinWait2 {
                    self.finwait2_at.get_or_insert(now + self.cfg.fin_wait2);
                }
                false
            }
        }
    }

    /// Resets the connection: one RST goes out and the socket is closed.
    pub fn abort(&mut self) {
        if self.state.synchronized() || self.state == State::SynReceived {
            self.rst_pending = true;
        } else {
            self.state = State::Closed;
        }
        self.touch();
    }

    /// The pending error (`SO_ERROR`), left pending.
    pub fn error(&self) -> Option<Errno> {
        self.error
    }

    /// Takes the pending error (`SO_ERROR`).
    pub fn take_error(&mut self) -> Option<Errno> {
        let e = self.error.take();
        if e.is_some() {
            self.touch();
        }
        e
    }

    /// Gives up a connection still in SYN-RECEIVED, silently (Linux drops
    /// the request sock): no RST, no error for anyone.
    pub(crate) fn drop_embryonic(&mut self) {
        self.state = State::Closed;
        self.stop_timers();
        self.touch();
    }

    /// Records a fatal error: the connection is over.
    pub(crate) fn fail(&mut self, e: Errno) {
        self.error = Some(e);
        self.reset = true;
        self.state = State::Closed;
        self.rto_at = None;
        self.persist_at = None;
        self.keepalive_at = None;
        self.ack_due = None;
        self.touch();
    }

    /// Whether the receiving side is shut: FIN received, `SHUT_RD`, or reset.
    pub(crate) fn rcv_shutdown(&self) -> bool {
        self.fin_received || self.rd_shut || self.reset
    }

    /// Whether the sending side is shut: `SHUT_WR`/close, or reset.
    pub(crate) fn snd_shutdown(&self) -> bool {
        self.fin_queued || self.reset
    }

    /// What the socket is ready for now, computed as Linux's `tcp_poll`
    /// does: HUP when both directions are shut or the socket is closed
    /// (a fresh socket included); IN on data or a shut receiving side;
    /// OUT when there is room (or the sending side is shut), except while
    /// the handshake is under way.
    pub fn readiness(&self) -> Readiness {
        let opening = matches!(self.state, State::SynSent | State::SynReceived);
        let rcv_shut = self.rcv_shutdown();
        let snd_shut = self.snd_shutdown();
        let room = {
            let free = self.tx.free();
            free > 0 && free >= self.tx.len() / 2
        };
        Readiness {
            readable: rcv_shut || !opening && !self.rx.is_empty(),
            writable: !opening && (snd_shut || room),
            read_closed: rcv_shut,
            hangup: rcv_shut && snd_shut || self.state == State::Closed,
            error: self.error.is_some(),
            tick: self.readiness_tick,
        }
    }

    /// Registers the waker to wake when the socket becomes readable.
    pub fn register_recv_waker(&mut self, w: &Waker) {
        match &self.rx_waker {
            Some(old) if old.will_wake(w) => {}
            _ => self.rx_waker = Some(w.clone()),
        }
    }

    /// Registers the waker to wake when the socket becomes writable.
    pub fn register_send_waker(&mut self, w: &Waker) {
        match &self.tx_waker {
            Some(old) if old.will_wake(w) => {}
            _ => self.tx_waker = Some(w.clone()),
        }
    }

    /// Notes a possible readiness change: when the readiness differs from
    /// what was last reported, bumps the tick and wakes the waiters
    /// concerned. Returns whether it changed.
    pub(crate) fn touch(&mut self) -> bool {
        let mut now = self.readiness();
        now.tick = self.last_readiness.tick;
        if now == self.last_readiness {
            return false;
        }
        let old = self.last_readiness;
        self.bump(
            now.readable && !old.readable || now.read_closed != old.read_closed || now.error || now.hangup,
            now.writable && !old.writable || now.error || now.hangup,
        );
        true
    }

    /// New data arrived: an event even if the socket was readable already
    /// (edge-triggered waiters must hear of every arrival, as on Linux).
    pub(crate) fn notify_readable(&mut self) {
        self.bump(true, false);
    }

    /// Send space was freed.
    pub(crate) fn notify_writable(&mut self) {
        self.bump(false, true);
    }

    fn bump(&mut self, wake_rx: bool, wake_tx: bool) {
        self.readiness_tick += 1;
        let mut r = self.readiness();
        r.tick = self.readiness_tick;
        self.last_readiness = r;
        if wake_rx {
            if let Some(w) = self.rx_waker.take() {
                w.wake();
            }
        }
        if wake_tx {
            if let Some(w) = self.tx_waker.take() {
                w.wake();
            }
        }
    }

    /// The tick of the last readiness change.
    pub fn tick(&self) -> u64 {
        self.readiness_tick
    }

    /// The earliest time a timer of this socket needs attention.
    pub fn poll_at(&self) -> Option<Instant> {
        // Straight-line (no iterator chain): this runs several times per
        // segment, from every `schedule`.
        #[inline(always)]
        fn min(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, None) => a,
                (None, b) => b,
            }
        }
        let a = min(self.rto_at, self.ack_due);
        let b = min(self.persist_at, self.keepalive_at);
        let c = min(self.timewait_at, self.finwait2_at);
        let d = if self.deferred { self.defer_deadline } else { None };
        min(min(a, b), min(c, d))
    }

    /// Whether the socket has something to send right now (an ACK, data,
    /// a FIN, a probe, a RST) without waiting for a timer.
    pub fn wants_to_send(&self) -> bool {
        self.ack_now || self.probe_pending || self.rst_pending || self.has_sendable()
    }

    /// Data or control that the windows would let us send now.
    pub(crate) fn has_sendable(&self) -> bool {
        match self.state {
            State::SynSent | State::SynReceived => self.snd_nxt == self.iss,
            State::Closed | State::Listen | State::TimeWait => false,
            _ => {
                let sent = self.data_offset(self.snd_nxt);
                let unsent = self.tx.len().saturating_sub(sent);
                (unsent > 0 && self.send_window_left() > 0)
                    || self.fin_to_send()
                    // Stuck behind the peer's window: a dispatch starts the
                    // persist timer (data queued after the window closed).
                    || self.persist_at.is_none() && self.stuck()
            }
        }
    }

    /// Offset in the send buffer of sequence number `seq` (data bytes only).
    pub(crate) fn data_offset(&self, seq: SeqNumber) -> usize {
        let base = if self.snd_una == self.iss {
            self.iss + 1
        } else {
            self.snd_una
        };
        seq.distance(base).max(0) as usize
    }

    /// Sequence number of our FIN (after the last queued byte).
    pub(crate) fn fin_seq(&self) -> SeqNumber {
        let base = if self.snd_una == self.iss {
            self.iss + 1
        } else {
            self.snd_una
        };
        base + self.tx.len()
    }

    /// Whether the peer acknowledged our FIN.
    pub(crate) fn fin_acked(&self) -> bool {
        self.fin_sent.is_some_and(|f| self.snd_una.distance(f) > 0)
    }

    /// A FIN is due at `snd_nxt` (first send or retransmission).
    pub(crate) fn fin_to_send(&self) -> bool {
        self.fin_queued
            && matches!(
                self.state,
                State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck
            )
            && self.snd_nxt == self.fin_seq()
            && !self.fin_acked()
    }

    /// Bytes the congestion and peer windows allow beyond what is in flight.
    pub(crate) fn send_window_left(&self) -> usize {
        let in_flight = if self.recovery.is_some() && self.sack_ok {
            self.scoreboard
                .pipe(self.snd_una, self.snd_max, self.high_rxt, self.mss)
        } else {
            self.snd_nxt.distance(self.snd_una).max(0) as usize
        };
        self.snd_wnd.min(self.cc.cwnd()).saturating_sub(in_flight)
    }
}
