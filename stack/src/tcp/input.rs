//! Segment arrival: RFC 9293 §3.10.7 step by step, with RFC 5961's
//! defences (exact-sequence RST, challenge ACKs for in-window RST and SYN,
//! the ACK acceptability range; challenge ACKs and ACKs to empty
//! out-of-window segments rate-limited per connection, §7), RFC 7323's PAWS and timestamp echo, RFC
//! 2018 SACK blocks fed to the scoreboard, and loss detection for fast
//! retransmit and recovery (RFC 5681, 6582 NewReno, 6675 SACK).
//!
//! Nothing here sends: input decides what is owed (an ACK now, a delayed
//! ACK, a retransmission, a RST to the sender) and [`super::output`] builds
//! the segments.

use core::net::SocketAddrV4;

use super::config::TcpConfig;
use super::socket::{Event, State, TcpSocket, OOW_ACK_INTERVAL};
use crate::error::Errno;
use crate::time::Instant;
use crate::wire::{SeqNumber, TcpControl, TcpRepr};

/// What the interface must do after a segment was processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The socket handled it; the event tells of state changes.
    Done(Event),
    /// Answer the segment with a RST (RFC 9293: an unacceptable ACK in
    /// SYN-SENT or SYN-RECEIVED).
    Reset,
}

/// Is `seq` in `[start, start + len)`?
fn in_window(seq: SeqNumber, start: SeqNumber, len: usize) -> bool {
    let d = seq.distance(start);
    d >= 0 && (d as usize) < len
}

impl TcpSocket {
    /// A connection request arriving at a listener: a socket in
    /// SYN-RECEIVED whose SYN-ACK is due.
    pub(crate) fn accept_syn(
        cfg: TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &TcpRepr,
        iss: SeqNumber,
        now: Instant,
    ) -> TcpSocket {
        // Linux's accepted sockets start out of pingpong mode, whatever
        // TCP_QUICKACK their listener had.
        let mut s = TcpSocket::new(TcpConfig {
            pingpong: false,
            ..cfg
        });
        s.local = local;
        s.remote = remote;
        s.set_iss(iss);
        s.state = State::SynReceived;
        s.irs = syn.seq_number;
        s.rcv_nxt = syn.seq_number + 1;
        s.rcv_adv = s.rcv_nxt;
        s.take_syn_options(syn);
        s.snd_wnd = syn.window_len as usize; // never scaled in a SYN
        s.max_snd_wnd = s.snd_wnd;
        s.snd_wl1 = syn.seq_number;
        s.rto_at = Some(now + s.rtt.rto());
        s.last_rx(now);
        s.defer_deadline = cfg.defer_accept.map(|d| now + d);
        s
    }

    /// Takes the peer's SYN options: MSS, window scale, SACK, timestamps.
    fn take_syn_options(&mut self, syn: &TcpRepr) {
        // RFC 9293 §3.7.1: 536 when the peer names no MSS.
        let peer_mss = syn.max_seg_size.unwrap_or(536) as usize;
        self.mss = peer_mss
            .min(self.cfg.advertised_mss() as usize)
            .max(super::MIN_MSS as usize);
        self.cc.set_mss(self.mss);
        match syn.window_scale {
            Some(ws) if self.cfg.window_scaling => {
                self.ws_ok = true;
                self.snd_scale = ws.min(14);
                self.rcv_scale = self.cfg.rcv_scale();
            }
            _ => {
                self.ws_ok = false;
                self.snd_scale = 0;
                self.rcv_scale = 0;
            }
        }
        self.sack_ok = self.cfg.sack && syn.sack_permitted;
        self.ts_recent = match syn.timestamp {
            Some(ts) if self.cfg.timestamps => Some(ts.tsval),
            _ => None,
        };
    }

    /// A segment arrived: the peer is alive (keepalive starts over).
    fn last_rx(&mut self, now: Instant) {
        self.last_rx_at = now;
        self.keepalive_sent = 0;
        if let Some(k) = self.cfg.keepalive {
            self.keepalive_at = Some(now + k.idle);
        }
    }

    /// Processes one segment addressed to this connection.
    pub(crate) fn input(&mut self, now: Instant, seg: &TcpRepr, payload: &[u8]) -> Input {
        self.stats.segs_in += 1;
        let r = match self.state {
            State::Closed | State::Listen => {
                return if seg.control == TcpControl::Rst {
                    Input::Done(Event::None)
                } else {
                    Input::Reset
                };
            }
            State::SynSent => self.input_syn_sent(now, seg),
            _ => self.input_synchronized(now, seg, payload),
        };
        // An ACK that closes the peer's window may leave nothing to send:
        // the persist timer must start here, not only after a dispatch.
        self.arm_persist(now);
        self.touch();
        r
    }

    /// RFC 9293 §3.10.7.3.
    fn input_syn_sent(&mut self, now: Instant, seg: &TcpRepr) -> Input {
        // The acceptable ACK of our SYN, if the segment carries one.
        let ack = match seg.ack_number {
            Some(ack) => {
                if ack.distance(self.iss) <= 0 || ack.distance(self.snd_max) > 0 {
                    return if seg.control == TcpControl::Rst {
                        Input::Done(Event::None)
                    } else {
                        Input::Reset
                    };
                }
                Some(ack)
            }
            None => None,
        };
        if seg.control == TcpControl::Rst {
            if ack.is_some() {
                self.fail(Errno::ECONNREFUSED);
                return Input::Done(Event::Closed);
            }
            return Input::Done(Event::None);
        }
        if seg.control != TcpControl::Syn {
            return Input::Done(Event::None);
        }
        self.irs = seg.seq_number;
        self.rcv_nxt = seg.seq_number + 1;
        self.rcv_adv = self.rcv_nxt;
        self.take_syn_options(seg);
        self.last_rx(now);
        let Some(ack) = ack else {
            // Simultaneous open: answer with SYN-ACK (our SYN again).
            self.state = State::SynReceived;
            self.snd_nxt = self.iss;
            self.snd_wnd = seg.window_len as usize;
            self.snd_wl1 = seg.seq_number;
            return Input::Done(Event::None);
        };
        self.snd_una = ack;
        if self.snd_nxt.distance(ack) < 0 {
            self.snd_nxt = ack;
        }
        self.snd_wnd = seg.window_len as usize;
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq_number;
        self.snd_wl2 = ack;
        self.sample_rtt(now, seg, ack);
        self.after_handshake();
        self.rto_at = None;
        self.state = State::Established;
        if self.pingpong || self.cfg.defer_accept.is_some() {
            // Linux (tcp_rcv_synsent_state_process): an interactive
            // socket, or one with TCP_DEFER_ACCEPT, holds the handshake's
            // last ACK for a while so that the first data carries it.
            self.ack_due = Some(now + super::options::DELACK_MAX);
            self.quick = self.quickack_budget();
        } else {
            self.ack_now = true;
        }
        Input::Done(Event::Established)
    }

    /// RFC 9293 §3.10.7.4, for every state from SYN-RECEIVED on.
    fn input_synchronized(&mut self, now: Instant, seg: &TcpRepr, payload: &[u8]) -> Input {
        // A retransmitted SYN in SYN-RECEIVED: send the SYN-ACK again.
        if self.state == State::SynReceived
            && seg.control == TcpControl::Syn
            && seg.seq_number == self.irs
            && seg.ack_number.is_none()
        {
            self.snd_nxt = self.iss;
            return Input::Done(Event::None);
        }

        // First: is the segment acceptable?
        let wnd = self.rcv_adv.distance(self.rcv_nxt).max(0) as usize;
        let wnd = wnd.max(if self.state == State::SynReceived {
            self.rx.window()
        } else {
            0
        });
        let len = seg.segment_len();
        let seq = seg.seq_number;
        let mut acceptable = match (len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => in_window(seq, self.rcv_nxt, wnd),
            (_, 0) => false,
            (_, _) => in_window(seq, self.rcv_nxt, wnd) || in_window(seq + (len - 1), self.rcv_nxt, wnd),
        };
        // With our window closed, a segment at rcv_nxt is still acceptable
        // for its ACK, RST and SYN checks (RFC 9293 §3.10.7.4: "valid ACKs,
        // URGs and RSTs" are processed); its payload is trimmed to the zero
        // window, i.e. dropped and acknowledged.
        let mut drop_payload = false;
        if !acceptable && wnd == 0 && seq == self.rcv_nxt {
            acceptable = true;
            drop_payload = seg.payload_len > 0;
        }
        // RFC 7323 §5.3: PAWS.
        if let (Some(recent), Some(ts)) = (self.ts_recent, seg.timestamp) {
            if seg.control != TcpControl::Rst && (ts.tsval.wrapping_sub(recent) as i32) < 0 {
                acceptable = false;
            }
        }
        if !acceptable {
            self.stats.out_of_window += 1;
            if seg.control != TcpControl::Rst {
                // (A RST outside the window is dropped unanswered: RFC
                // 5961 §3.2 (1).)
                if seg.control == TcpControl::Syn {
                    // RFC 5961 §4.2: whatever its sequence number.
                    self.stats.syn_challenged += 1;
                    self.challenge_ack(now);
                } else if seg.segment_len() > 0 || seq + 1 == self.rcv_nxt {
                    // Data (or a FIN) gets its duplicate ACK every time, as
                    // on Linux: the sender's loss recovery may hang on it,
                    // and one segment draws at most one ACK. So does the
                    // zero-window or keepalive probe, <SEQ=RCV.NXT-1>: its
                    // answer is how a sender learns that our window opened
                    // (rate-limited, a window that closes and opens often
                    // would stall 200-600 ms each time), and it takes the
                    // exact sequence number, which a blind attacker does
                    // not have. (Linux limits these too.)
                    self.ack_now = true;
                } else {
                    self.rate_limited_ack(now);
                }
                if self.state == State::TimeWait && seg.control == TcpControl::Fin {
                    self.timewait_at = Some(now + self.cfg.time_wait);
                }
            }
            return Input::Done(Event::None);
        }

        // Second: RST (RFC 5961 §3.2: only an exact match resets).
        if seg.control == TcpControl::Rst {
            if seq != self.rcv_nxt {
                self.stats.rst_challenged += 1;
                self.challenge_ack(now);
                return Input::Done(Event::None);
            }
            return Input::Done(match self.state {
                // RFC 9293: from an active open (a simultaneous open), the
                // connection was refused; from a passive one, it just ends.
                State::SynReceived if self.active_open => {
                    self.fail(Errno::ECONNREFUSED);
                    Event::Closed
                }
                State::SynReceived => {
                    self.state = State::Closed;
                    Event::Closed
                }
                // Linux's tcp_reset: after the peer's FIN (CLOSE-WAIT) the
                // program learns of the reset as EPIPE, else ECONNRESET.
                State::CloseWait => {
                    self.fail(Errno::EPIPE);
                    Event::Closed
                }
                State::Established | State::FinWait1 | State::FinWait2 => {
                    self.fail(Errno::ECONNRESET);
                    Event::Closed
                }
                _ => {
                    self.state = State::Closed;
                    self.reset = true;
                    Event::Closed
                }
            });
        }

        // Fourth: a SYN in a synchronized state (RFC 5961 §4).
        if seg.control == TcpControl::Syn {
            self.stats.syn_challenged += 1;
            self.challenge_ack(now);
            return Input::Done(Event::None);
        }

        // RFC 7323 §4.3: remember the timestamp of in-order segments.
        if let (Some(_), Some(ts)) = (self.ts_recent, seg.timestamp) {
            if seq.distance(self.last_ack_sent) <= 0 {
                self.ts_recent = Some(ts.tsval);
            }
        }
        self.last_rx(now);

        // Fifth: the ACK field.
        let Some(ack) = seg.ack_number else {
            return Input::Done(Event::None);
        };
        let mut event = Event::None;
        if self.state == State::SynReceived {
            if ack.distance(self.snd_una) <= 0 || ack.distance(self.snd_max) > 0 {
                return Input::Reset;
            }
            self.state = State::Established;
            self.after_handshake();
            self.snd_wnd = (seg.window_len as usize) << self.snd_scale;
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            event = Event::Established;
            let bare = seg.payload_len == 0 && seg.control != TcpControl::Fin;
            if bare && self.defer_deadline.is_some_and(|t| t > now) {
                // TCP_DEFER_ACCEPT: a bare ACK does not make the connection
                // acceptable; data, a FIN or the deadline will.
                self.deferred = true;
                event = Event::None;
            }
        }
        if ack.distance(self.snd_max) > 0 {
            // Acknowledges something not yet sent (RFC 5961 §5.2: send
            // an ACK, rate-limited as a challenge ACK, and drop it).
            self.stats.ack_invalid += 1;
            self.rate_limited_ack(now);
            return Input::Done(event);
        }
        // RFC 5961 §5.2: too old to be credible.
        let floor = self.max_snd_wnd.max(65535);
        if ack.distance(self.snd_una) < -(floor.min(i32::MAX as usize) as i32) {
            self.stats.ack_invalid += 1;
            self.challenge_ack(now);
            return Input::Done(event);
        }
        // An acceptable ACK: the peer is there (it answers our probes).
        self.probes_out = 0;
        let wnd_scaled = (seg.window_len as usize) << self.snd_scale;
        if ack.distance(self.snd_una) > 0 {
            self.on_new_ack(now, seg, ack);
        } else if ack == self.snd_una
            && seg.payload_len == 0
            && seg.control == TcpControl::None
            && wnd_scaled == self.snd_wnd
            && self.snd_max != self.snd_una
        {
            self.on_dup_ack(now, seg);
        } else if self.sack_ok {
            self.take_sack(seg);
        }
        // Window update (RFC 9293 §3.10.7.4, fifth, "If SND.UNA =< SEG.ACK").
        if self.snd_wl1.distance(seq) < 0 || (self.snd_wl1 == seq && self.snd_wl2.distance(ack) <= 0) {
            let opened = wnd_scaled > self.snd_wnd;
            self.snd_wnd = wnd_scaled;
            self.max_snd_wnd = self.max_snd_wnd.max(wnd_scaled);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if opened && self.snd_wnd > 0 {
                self.persist_at = None;
                self.persist_backoff = 0;
            }
        }
        // Our FIN acknowledged? (A closing thread lingering for it, with
        // SO_LINGER, is woken.)
        if self.fin_acked() {
            match self.state {
                State::FinWait1 => {
                    self.state = State::FinWait2;
                    if self.orphan {
                        self.finwait2_at = Some(now + self.cfg.fin_wait2);
                    }
                    self.notify_writable();
                }
                State::Closing => {
                    event = self.enter_time_wait(now);
                    self.notify_writable();
                }
                State::LastAck => {
                    self.state = State::Closed;
                    self.notify_writable();
                    return Input::Done(Event::Closed);
                }
                _ => {}
            }
        }

        // Seventh: the data.
        if drop_payload {
            self.stats.zero_window_dropped += 1;
            self.ack_now = true;
        } else if seg.payload_len > 0 {
            if self.state.can_receive() {
                self.take_data(now, seq, payload);
            } else {
                self.ack_now = true;
            }
        }

        // Eighth: FIN.
        if seg.control == TcpControl::Fin {
            let fin = seq + seg.payload_len;
            if fin.distance(self.rcv_nxt) >= 0 && !self.fin_received {
                self.remote_fin = Some(fin);
            } else if self.state == State::TimeWait {
                self.ack_now = true;
                self.timewait_at = Some(now + self.cfg.time_wait);
            }
        }
        if self.remote_fin.is_some_and(|f| f.distance(self.rcv_nxt) < 0) {
            // Data held out of order from before the FIN arrived reached
            // past it: one of the two was a lie. The data stands; the FIN is
            // forgotten (the peer's next FIN ends the stream).
            self.remote_fin = None;
        }
        if self.remote_fin == Some(self.rcv_nxt) && !self.fin_received {
            if let Some(e) = self.take_fin(now) {
                event = e;
            }
        }
        if self.deferred && (seg.payload_len > 0 || seg.control == TcpControl::Fin) && event == Event::None {
            self.deferred = false;
            event = Event::Established;
        }
        Input::Done(event)
    }

    /// RFC 6298 §5.7: if the SYN or SYN-ACK was retransmitted and no RTT
    /// sample came of it, the RTO restarts from 3 s once the handshake is
    /// done (not from the backed-off value).
    fn after_handshake(&mut self) {
        if self.retries > 0 && self.rtt.srtt().is_none() {
            let initial = self.cfg.rto_initial.max(core::time::Duration::from_secs(3));
            self.rtt = super::rtt::RttEstimator::new(initial, self.cfg.rto_min, self.cfg.rto_max);
        }
        self.retries = 0;
    }

    /// RFC 5961's challenge ACK, at most one per [`OOW_ACK_INTERVAL`].
    fn challenge_ack(&mut self, now: Instant) {
        if self.rate_limited_ack(now) {
            self.stats.challenge_acks += 1;
        }
    }

    /// An ACK owed to a segment that could be forged blind (a challenge,
    /// or an answer to an out-of-window segment without data): sent unless
    /// one went out less than [`OOW_ACK_INTERVAL`] ago (Linux's
    /// `tcp_oow_rate_limited`). Whether it is sent.
    fn rate_limited_ack(&mut self, now: Instant) -> bool {
        if self.oow_ack_at.is_some_and(|t| now < t + OOW_ACK_INTERVAL) {
            self.stats.challenge_acks_limited += 1;
            return false;
        }
        self.oow_ack_at = Some(now);
        self.ack_now = true;
        true
    }

    fn enter_time_wait(&mut self, now: Instant) -> Event {
        self.state = State::TimeWait;
        self.timewait_at = Some(now + self.cfg.time_wait);
        self.rto_at = None;
        self.persist_at = None;
        self.keepalive_at = None;
        self.finwait2_at = None;
        Event::TimeWait
    }

    /// Processes the peer's FIN (now in order).
    fn take_fin(&mut self, now: Instant) -> Option<Event> {
        self.rcv_nxt += 1;
        self.fin_received = true;
        self.remote_fin = None;
        self.ack_now = true;
        self.notify_readable();
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => self.state = State::Closing,
            State::FinWait2 => return Some(self.enter_time_wait(now)),
            _ => {}
        }
        None
    }

    fn take_data(&mut self, now: Instant, seq: SeqNumber, payload: &[u8]) {
        let (mut seq, mut data) = (seq, payload);
        let behind = self.rcv_nxt.distance(seq);
        if behind > 0 {
            // Starts before rcv_nxt: skip what we already have.
            let skip = (behind as usize).min(data.len());
            data = &data[skip..];
            seq += skip;
        }
        if let Some(fin) = self.remote_fin {
            // Nothing follows the peer's FIN: bytes at or beyond it are not
            // data (a peer that sends them contradicts itself).
            let room = fin.distance(seq).max(0) as usize;
            data = &data[..data.len().min(room)];
        }
        if data.is_empty() {
            self.ack_now = true; // a pure duplicate: tell the sender again
            return;
        }
        let offset = seq.distance(self.rcv_nxt) as usize;
        let had_holes = self.rx.has_ooo();
        let refused = self.rx.refused();
        let fresh = self.rx.write_at(offset, data);
        if self.rx.refused() > refused {
            self.stats.ooo_refused += 1;
        }
        self.last_data_rx = Some(now);
        if fresh > 0 {
            self.rcv_nxt += fresh;
            self.stats.bytes_received += fresh as u64;
            if self.rd_shut {
                let n = self.rx.len();
                self.rx.consume(n);
            }
            self.notify_readable();
        }
        if offset > 0 || had_holes {
            // Out of order, or filling a hole: ACK at once (RFC 5681 §4.2)
            // so the sender learns fast (duplicate ACKs, SACK blocks).
            self.ack_now = true;
        } else {
            self.segs_unacked += 1;
            if self.segs_unacked >= 2 || self.quick > 0 && !self.pingpong {
                self.ack_now = true;
            } else if self.ack_due.is_none() {
                self.ack_due = Some(now + self.cfg.delayed_ack);
            }
        }
    }

    fn sample_rtt(&mut self, now: Instant, seg: &TcpRepr, ack: SeqNumber) {
        // As Linux (tcp_ack_update_rtt): the timed segment's own send time
        // first, to the nanosecond; the echoed timestamp, in milliseconds,
        // only while nothing is timed (after a retransmission, which Karn
        // leaves untimed). Taking every timestamp sample would pull the
        // estimate of a sub-millisecond path to zero.
        if let Some(rtt) = self.rtt_timer.on_ack(ack, now) {
            self.rtt.sample(rtt);
            return;
        }
        if self.rtt_timer.is_running() {
            return;
        }
        if let (Some(_), Some(ts)) = (self.ts_recent, seg.timestamp) {
            if ts.tsecr != 0 {
                let ms = self.ts_now(now).wrapping_sub(ts.tsecr);
                if (ms as i32) >= 0 {
                    self.rtt.sample(core::time::Duration::from_millis(ms as u64));
                }
            }
        }
    }

    /// Our timestamp clock: milliseconds, offset per connection.
    pub(crate) fn ts_now(&self, now: Instant) -> u32 {
        ((now.nanos() / 1_000_000) as u32).wrapping_add(self.ts_offset)
    }

    fn take_sack(&mut self, seg: &TcpRepr) -> usize {
        let mut blocks = [(SeqNumber(0), SeqNumber(0)); 3];
        let mut n = 0;
        for (l, r) in seg.sack_ranges.iter().flatten() {
            blocks[n] = (SeqNumber(*l), SeqNumber(*r));
            n += 1;
        }
        if n == 0 && self.scoreboard.is_empty() {
            return 0;
        }
        // Even without blocks: the ranges the cumulative ACK passed go.
        self.scoreboard.update(self.snd_una, self.snd_max, &blocks[..n])
    }

    fn on_new_ack(&mut self, now: Instant, seg: &TcpRepr, ack: SeqNumber) {
        // Grow the window only if it was what limited us (Linux's
        // tcp_is_cwnd_limited, after RFC 7661): a connection held back by
        // the peer's window or by the application must not build up a
        // congestion window it never tested, to burst with later.
        let flight = self.snd_max.distance(self.snd_una).max(0) as usize;
        let cwnd = self.cc.cwnd();
        let cwnd_limited = if self.cc.in_slow_start() {
            2 * flight >= cwnd
        } else {
            flight + self.mss >= cwnd
        };
        let data_acked = self.data_offset(ack).min(self.tx.len());
        self.tx.consume(data_acked);
        self.snd_una = ack;
        if self.snd_nxt.distance(ack) < 0 {
            self.snd_nxt = ack;
        }
        if self.high_rxt.distance(ack) < 0 {
            self.high_rxt = ack;
        }
        self.stats.bytes_acked += data_acked as u64;
        self.sample_rtt(now, seg, ack);
        self.retries = 0;
        self.dup_acks = 0;
        if self.sack_ok {
            self.take_sack(seg);
        }
        match self.recovery {
            Some(recover) if ack.distance(recover) >= 0 => {
                // Full acknowledgement: recovery is over (RFC 6582 §3.2 step 3).
                self.recovery = None;
                self.cc.on_recovery_exit(now);
            }
            Some(_) => {
                // Partial acknowledgement: retransmit the next hole at once.
                // NewReno deflates the window (RFC 6582 §3.2 step 3); with
                // SACK the pipe estimate governs instead (RFC 6675).
                if !self.sack_ok {
                    self.cc.on_partial_ack(data_acked);
                }
                self.rtx_una = true;
                self.stats.fast_retransmits += 1;
            }
            None if cwnd_limited => self.cc.on_ack(now, data_acked, self.rtt.srtt()),
            None => {}
        }
        if self.snd_una == self.snd_max {
            self.rto_at = None;
            self.unacked_since = None;
        } else {
            self.rto_at = Some(self.rtt.deadline(now));
            self.unacked_since = Some(now);
        }
        if data_acked > 0 {
            self.notify_writable();
        }
    }

    fn on_dup_ack(&mut self, now: Instant, seg: &TcpRepr) {
        self.dup_acks += 1;
        self.stats.dup_acks += 1;
        if self.sack_ok {
            self.take_sack(seg);
        }
        if self.recovery.is_some() {
            if !self.sack_ok {
                self.cc.on_dup_ack(); // a segment left the network (RFC 5681 §3.2 step 4)
            }
            return;
        }
        let lost = self.dup_acks >= 3 || self.sack_ok && self.scoreboard.is_lost(self.snd_una, self.mss);
        if lost {
            // Fast retransmit, then fast recovery (RFC 5681 §3.2, 6582, 6675).
            let flight = self.snd_max.distance(self.snd_una).max(0) as usize;
            self.cc.on_congestion_event(now, flight);
            if !self.sack_ok {
                // RFC 6582: cwnd = ssthresh + 3 MSS for the three duplicates.
                (0..3).for_each(|_| self.cc.on_dup_ack());
            }
            self.recovery = Some(self.snd_max);
            self.high_rxt = self.snd_una;
            self.rtx_una = true;
            self.rtt_timer.on_retransmit();
            self.stats.fast_retransmits += 1;
        }
    }
}
