//! Segment generation and timers.
//!
//! `TcpSocket::dispatch` decides, in order of priority, what the socket
//! owes the network — a RST, a SYN or SYN-ACK, retransmissions (fast
//! retransmit, SACK holes, go-back-N after a timeout), new data within the
//! peer's and the congestion window (with Nagle and sender-side silly
//! window avoidance), a FIN, a probe, an ACK — and hands each segment to
//! the interface, which writes it into a device buffer. State advances only
//! for segments the device accepted, so a full device loses nothing.
//!
//! `TcpSocket::on_timers` runs the retransmission (RFC 6298, with back-off
//! and connection timeouts), delayed-ACK, persist (zero-window probes, and
//! the release of corked data), keepalive, deferred-accept, TIME-WAIT and
//! FIN-WAIT-2 timers.
//!
//! `TCP_USER_TIMEOUT` bounds the time data stays unacknowledged (the RTO
//! is clamped to it once a retransmission went out, and its expiry fails
//! the connection with `ETIMEDOUT`), the time the peer's window stays
//! closed to our probes, and, in place of `TCP_KEEPCNT`, the time keepalive
//! probes go unanswered: Linux's rules.

use core::time::Duration;

use super::options::ATO_MIN;
use super::socket::{Event, State, TcpSocket};
use crate::error::Errno;
use crate::time::Instant;
use crate::wire::{SeqNumber, TcpControl, TcpRepr, TcpTimestamp};

/// Writes one segment: its header and its payload (in up to two pieces,
/// from the send ring); false when the device has no room.
pub type Emit<'a> = dyn FnMut(&TcpRepr, &[u8], &[u8]) -> bool + 'a;

/// Most segments one socket sends per poll (bounded work).
pub const SEGMENTS_PER_POLL: usize = 64;

/// What one call to `dispatch` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// A state change for the interface to act on.
    pub event: Event,
    /// Segments handed to the device.
    pub sent: usize,
    /// Stopped early (budget used up, or the device full) with more to send.
    pub more: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Syn,
    SynAck,
    Data,
    Ack,
    Probe,
    Rst,
}

#[derive(Clone, Copy, Debug)]
struct Plan {
    kind: Kind,
    seq: SeqNumber,
    len: usize,
    fin: bool,
    push: bool,
}

/// Zero-window probes an orphaned connection sends before it is given up,
/// whether its peer answers them or not (Linux's `tcp_orphan_retries`
/// when left at 0, its default, on a peer that answers: 8).
pub const ORPHAN_PROBES: u32 = 8;

impl TcpSocket {
    /// Runs the timers that are due.
    pub(crate) fn on_timers(&mut self, now: Instant) -> Event {
        if self.state == State::Closed {
            // Nothing runs on a closed connection; a deadline left over
            // would come due again and again.
            self.stop_timers();
            return Event::None;
        }
        let mut event = Event::None;
        if self.ack_due.is_some_and(|t| t <= now) {
            self.ack_due = None;
            self.ack_now = true;
            // Linux: a delayed ACK that had to wait its full time means the
            // reply it waited for did not come: not interactive after all.
            self.pingpong = false;
        }
        if self.timewait_at.is_some_and(|t| t <= now) || self.finwait2_at.is_some_and(|t| t <= now) {
            self.timewait_at = None;
            self.finwait2_at = None;
            self.state = State::Closed;
            self.touch();
            return Event::Closed;
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            event = self.on_rto(now);
            if event == Event::Closed {
                return event;
            }
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            if self.snd_wnd > 0 {
                // Data held by silly-window avoidance or a cork: send it
                // anyway.
                self.sws_override = true;
            } else {
                // As Linux's tcp_probe_timer: a peer that acknowledged none
                // of `max_retries` probes is gone (else a peer that closes
                // its window and vanishes would hold the connection, and
                // an orphan's memory, for ever). The first probe starts
                // the clock that TCP_USER_TIMEOUT bounds.
                let since = *self.probes_since.get_or_insert(now);
                let timed_out = self.cfg.user_timeout.is_some_and(|t| now - since >= t);
                // An orphan (the program closed it) whose peer answers
                // every probe with its window still closed would hold its
                // queued data for ever: as Linux (tcp_orphan_retries), it
                // is given up after ORPHAN_PROBES backed-off probes,
                // answered or not (about 100 s with a 200 ms RTO).
                let orphan_done = self.orphan && self.persist_backoff >= ORPHAN_PROBES;
                if self.probes_out >= self.cfg.max_retries || timed_out || orphan_done {
                    self.fail(Errno::ETIMEDOUT);
                    return Event::Closed;
                }
                self.probes_out += 1;
                self.probe_pending = true;
            }
            self.persist_backoff = (self.persist_backoff + 1).min(16);
            let mut at = now + self.persist_interval();
            if let (Some(t), Some(since)) = (self.cfg.user_timeout, self.probes_since) {
                at = at.min((since + t).max(now));
            }
            self.persist_at = Some(at);
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.on_keepalive(now);
        }
        if event == Event::None && self.deferred && self.defer_deadline.is_some_and(|t| t <= now) {
            // TCP_DEFER_ACCEPT ran out: the connection is accepted without
            // data (Linux: after the SYN-ACK retransmission it waited for).
            self.deferred = false;
            return Event::Established;
        }
        event
    }

    /// Clears every deadline.
    pub(crate) fn stop_timers(&mut self) {
        self.rto_at = None;
        self.ack_due = None;
        self.persist_at = None;
        self.keepalive_at = None;
        self.timewait_at = None;
        self.finwait2_at = None;
        self.defer_deadline = None;
    }

    /// Linux's `tcp_keepalive_timer`: nothing while data is in flight or
    /// queued (retransmission covers that); after `idle` without a
    /// segment from the peer a probe, then one every `interval`; after
    /// `count` unanswered probes (or, with `TCP_USER_TIMEOUT`, once the
    /// peer has been silent that long and a probe went unanswered) a RST
    /// and `ETIMEDOUT`.
    fn on_keepalive(&mut self, now: Instant) {
        let Some(k) = self.cfg.keepalive.filter(|_| self.keepalive_state()) else {
            self.keepalive_at = None;
            return;
        };
        let busy = self.snd_max != self.snd_una || !self.tx.is_empty() || self.fin_to_send();
        if busy {
            self.keepalive_at = Some(now + k.idle);
            return;
        }
        let elapsed = now - self.last_rx_at;
        if elapsed < k.idle {
            self.keepalive_at = Some(self.last_rx_at + k.idle);
            return;
        }
        let dead = match self.cfg.user_timeout {
            Some(t) => elapsed >= t && self.keepalive_sent > 0,
            None => self.keepalive_sent >= k.count,
        };
        if dead {
            // The RST goes out with the next dispatch, which reports the
            // connection closed.
            self.fail(Errno::ETIMEDOUT);
            self.rst_pending = true;
            return;
        }
        self.keepalive_sent += 1;
        self.probe_pending = true;
        self.keepalive_at = Some(now + k.interval);
    }

    fn persist_interval(&self) -> Duration {
        (self.rtt.rto() * (1 << self.persist_backoff.min(10)))
            .clamp(self.cfg.rto_min, Duration::from_secs(60))
    }

    fn on_rto(&mut self, now: Instant) -> Event {
        let limit = match self.state {
            State::SynReceived if !self.active_open => self.cfg.synack_retries,
            State::SynSent | State::SynReceived => self.cfg.syn_retries,
            _ => self.cfg.max_retries,
        };
        // Linux's retransmits_timed_out: the user timeout counts from the
        // first transmission of what is unacknowledged, once something
        // was retransmitted.
        let user_timeout = match (self.cfg.user_timeout, self.unacked_since) {
            (Some(t), Some(since)) => self.retries > 0 && now - since >= t,
            _ => false,
        };
        if self.retries >= limit || user_timeout {
            if self.state == State::SynReceived && !self.active_open {
                // An embryonic connection of a listener goes silently.
                self.drop_embryonic();
            } else {
                // A connect() (a simultaneous open included) fails.
                self.fail(Errno::ETIMEDOUT);
            }
            return Event::Closed;
        }
        self.retries += 1;
        self.stats.timeouts += 1;
        self.rtt.on_timeout();
        self.rtt_timer.on_retransmit();
        if self.state.synchronized() {
            let flight = self.snd_max.distance(self.snd_una).max(0) as usize;
            self.cc.on_rto(now, flight);
            self.recovery = None;
            self.dup_acks = 0;
            self.scoreboard.clear();
        }
        // Go back to the first unacknowledged byte (or the SYN).
        self.snd_nxt = self.snd_una;
        self.high_rxt = self.snd_una;
        // Linux's tcp_clamp_rto_to_user_timeout: the next expiry comes no
        // later than the user timeout; one already past (this was the
        // first timeout, which only starts the count) fires a tick later,
        // never now (a deadline that stays due would spin the timers).
        let mut at = self.rtt.deadline(now);
        if let (Some(t), Some(since)) = (self.cfg.user_timeout, self.unacked_since) {
            at = at.min((since + t).max(now + Duration::from_millis(1)));
        }
        self.rto_at = Some(at);
        Event::None
    }

    /// Sends what the socket owes, through `emit(segment, payload_a,
    /// payload_b)`, which writes one segment and returns false when the
    /// device has no room (the rest waits for the next poll).
    pub(crate) fn dispatch(&mut self, now: Instant, emit: &mut Emit<'_>) -> Dispatch {
        let mut event = Event::None;
        let mut sent = 0;
        let mut more = false;
        for i in 0..=SEGMENTS_PER_POLL {
            let Some(plan) = self.plan(now) else { break };
            if i == SEGMENTS_PER_POLL {
                more = true; // budget used up with more to send
                break;
            }
            let repr = self.repr(now, &plan);
            let ok = if plan.len > 0 {
                let off = self.data_offset(plan.seq);
                let (a, b) = self.tx.peek(off, plan.len);
                emit(&repr, a, b)
            } else {
                emit(&repr, &[], &[])
            };
            if !ok {
                more = true;
                break;
            }
            sent += 1;
            if let Some(e) = self.commit(now, &plan, &repr) {
                event = e;
                break;
            }
        }
        self.arm_persist(now);
        Dispatch { event, sent, more }
    }

    /// Decides the next segment, if any.
    fn plan(&mut self, now: Instant) -> Option<Plan> {
        let seg = |kind, seq, len, fin, push| {
            Some(Plan {
                kind,
                seq,
                len,
                fin,
                push,
            })
        };
        // Pure ACKs and RSTs carry the highest sequence number sent, not a
        // rewound snd_nxt: after a timeout snd_nxt goes back to snd_una, and
        // a segment behind the peer's rcv_nxt would be unacceptable to it,
        // its ACK discarded with it (both sides doing that deadlocks).
        if self.rst_pending {
            return seg(Kind::Rst, self.snd_max, 0, false, false);
        }
        match self.state {
            State::Closed | State::Listen => return None,
            State::SynSent if self.snd_nxt == self.iss => return seg(Kind::Syn, self.iss, 0, false, false),
            State::SynReceived if self.snd_nxt == self.iss => {
                return seg(Kind::SynAck, self.iss, 0, false, false);
            }
            State::SynSent | State::SynReceived => return None,
            _ => {}
        }
        if let Some(p) = self.plan_retransmit() {
            return Some(p);
        }
        if let Some(p) = self.plan_data(now) {
            return Some(p);
        }
        if self.probe_pending {
            return seg(Kind::Probe, self.snd_una - 1, 0, false, false);
        }
        if self.ack_now {
            return seg(Kind::Ack, self.snd_max, 0, false, false);
        }
        None
    }

    /// Fast retransmit, partial-ACK and SACK-hole retransmissions.
    fn plan_retransmit(&mut self) -> Option<Plan> {
        if self.rtx_una {
            let len = self.retransmit_len(self.snd_una);
            if len > 0 || self.fin_at(self.snd_una) {
                return Some(self.data_plan(self.snd_una, len));
            }
            self.rtx_una = false;
        }
        if self.recovery.is_none() || !self.sack_ok || self.send_window_left() == 0 {
            return None;
        }
        let from = if self.high_rxt.distance(self.snd_una) > 0 {
            self.high_rxt
        } else {
            self.snd_una
        };
        let (start, end) = self.scoreboard.next_hole(from, self.snd_una, self.snd_max)?;
        if !self.scoreboard.is_lost(start, self.mss) {
            return None;
        }
        let len = (end.distance(start).max(0) as usize)
            .min(self.payload_max())
            .min(self.retransmit_len(start));
        (len > 0).then(|| self.data_plan(start, len))
    }

    /// Payload bytes a retransmission from `seq` carries (up to an MSS of
    /// data that was already sent).
    fn retransmit_len(&self, seq: SeqNumber) -> usize {
        let sent_end = self.data_offset(self.snd_max).min(self.tx.len());
        sent_end
            .saturating_sub(self.data_offset(seq))
            .min(self.payload_max())
    }

    /// Whether our FIN sits at `seq`.
    fn fin_at(&self, seq: SeqNumber) -> bool {
        self.fin_queued && seq == self.fin_seq() && self.snd_max.distance(seq) > 0
    }

    fn data_plan(&self, seq: SeqNumber, len: usize) -> Plan {
        let end_of_data = self.data_offset(seq) + len == self.tx.len();
        let fin = self.fin_queued && end_of_data && self.fin_allowed();
        Plan {
            kind: Kind::Data,
            seq,
            len,
            fin,
            push: end_of_data && len > 0,
        }
    }

    fn fin_allowed(&self) -> bool {
        matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck
        )
    }

    /// New data (and the FIN) at `snd_nxt`, within the windows.
    fn plan_data(&mut self, _now: Instant) -> Option<Plan> {
        let off = self.data_offset(self.snd_nxt);
        let unsent = self.tx.len().saturating_sub(off);
        if unsent == 0 {
            return self.fin_to_send().then(|| self.data_plan(self.snd_nxt, 0));
        }
        let room = self.send_window_left();
        let full = self.payload_max();
        let len = unsent.min(room).min(full);
        if len == 0 {
            return None;
        }
        let in_flight = self.snd_nxt != self.snd_una;
        let all_of_it = len == unsent;
        if len < full {
            // Nagle (RFC 896): a small segment waits while data is in flight.
            // A cork replaces it (Linux's tcp_nagle_check).
            let nagle_holds = !self.cfg.cork && !self.cfg.nodelay && in_flight;
            // TCP_CORK: the partial tail waits, unless TCP_NODELAY pushed
            // it (the persist timer sends it if nothing is in flight).
            let cork_holds = self.cfg.cork && all_of_it && !self.pushed();
            // Sender silly-window avoidance (RFC 9293 §3.8.6.2.1): send a
            // partial segment only if it is all we have or half the peer's
            // largest window.
            let sws_holds = !all_of_it && len < self.max_snd_wnd / 2;
            // A FIN is never held back (Linux's tcp_nagle_test).
            let held = ((nagle_holds || cork_holds) && !(all_of_it && self.fin_queued)) || sws_holds;
            if held && !self.sws_override {
                return None;
            }
        }
        Some(self.data_plan(self.snd_nxt, len))
    }

    /// Whether `TCP_NODELAY` pushed the data at `snd_nxt` past a cork.
    fn pushed(&self) -> bool {
        self.push_seq.is_some_and(|p| p.distance(self.snd_nxt) > 0)
    }

    /// Whether a cork holds the unsent tail (a partial segment, no FIN
    /// behind it, not pushed).
    fn corked_tail(&self, unsent: usize) -> bool {
        self.cfg.cork && unsent < self.payload_max() && !self.fin_queued && !self.pushed()
    }

    /// The window field we advertise and the right edge it means.
    ///
    /// The edge never moves left (RFC 9293 §3.8.6.2.2), and while less than
    /// half the buffer is free it moves right only by at least min(half the
    /// buffer, one MSS): receiver-side silly-window avoidance (MUST-39). A scaled field is rounded up, not
    /// down, when rounding down would pull the edge left (as Linux aligns
    /// it).
    fn window_field(&self, syn: bool) -> (u16, SeqNumber) {
        let wnd = self.rx.window();
        let current = self.rcv_adv.distance(self.rcv_nxt).max(0) as usize;
        let step = (self.rx.capacity() / 2).min(self.mss).max(1);
        // As Linux: a window of half the buffer or more is never silly.
        let opens = syn || wnd >= current + step || wnd >= self.rx.capacity() / 2;
        let adv = if opens { wnd.max(current) } else { current };
        let shift = if syn { 0 } else { self.rcv_scale };
        let mut field = adv >> shift;
        if (field << shift) < current {
            field = current.div_ceil(1 << shift);
        }
        let field = field.min(u16::MAX as usize);
        (field as u16, self.rcv_nxt + (field << shift))
    }

    fn repr(&self, now: Instant, p: &Plan) -> TcpRepr {
        let syn = matches!(p.kind, Kind::Syn | Kind::SynAck);
        let (window_len, _) = self.window_field(syn);
        let mut r = TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            control: TcpControl::None,
            seq_number: p.seq,
            ack_number: Some(self.rcv_nxt),
            window_len,
            payload_len: p.len,
            ..TcpRepr::default()
        };
        match p.kind {
            Kind::Syn => {
                r.control = TcpControl::Syn;
                r.ack_number = None;
                r.max_seg_size = Some(self.cfg.advertised_mss());
                r.window_scale = self.cfg.window_scaling.then(|| self.cfg.rcv_scale());
                r.sack_permitted = self.cfg.sack;
                r.timestamp = self.cfg.timestamps.then(|| TcpTimestamp {
                    tsval: self.ts_now(now),
                    tsecr: 0,
                });
                return r;
            }
            Kind::SynAck => {
                r.control = TcpControl::Syn;
                r.max_seg_size = Some(self.cfg.advertised_mss());
                r.window_scale = self.ws_ok.then_some(self.rcv_scale);
                r.sack_permitted = self.sack_ok;
            }
            Kind::Rst => {
                r.control = TcpControl::Rst;
                r.window_len = 0;
            }
            Kind::Data if p.fin => r.control = TcpControl::Fin,
            Kind::Data if p.push => r.control = TcpControl::Psh,
            _ => {}
        }
        if let Some(recent) = self.ts_recent {
            r.timestamp = Some(TcpTimestamp {
                tsval: self.ts_now(now),
                tsecr: recent,
            });
        }
        if self.sack_ok && self.rx.has_ooo() && !matches!(p.kind, Kind::Rst) {
            // RFC 2018 §4: the most recently changed block first.
            let last = self.rx.last_ooo_range();
            let ranges = last
                .into_iter()
                .chain(self.rx.ooo_ranges().filter(|r| Some(*r) != last));
            for (i, (start, end)) in ranges.take(3).enumerate() {
                r.sack_ranges[i] = Some(((self.rcv_nxt + start).0, (self.rcv_nxt + end).0));
            }
        }
        r
    }

    /// Advances state for a segment the device accepted.
    fn commit(&mut self, now: Instant, p: &Plan, r: &TcpRepr) -> Option<Event> {
        self.stats.segs_out += 1;
        if r.ack_number.is_some() {
            if self.segs_unacked > 0 || self.ack_due.is_some() {
                // An ACK of new data: one less in quickack mode.
                self.quick = self.quick.saturating_sub(1);
            }
            self.ack_now = false;
            self.ack_due = None;
            self.segs_unacked = 0;
            self.last_ack_sent = self.rcv_nxt;
            let (_, edge) = self.window_field(r.control == TcpControl::Syn);
            if edge.distance(self.rcv_adv) > 0 {
                self.rcv_adv = edge;
            }
        }
        match p.kind {
            Kind::Rst => {
                self.rst_pending = false;
                self.state = State::Closed;
                self.reset = true;
                self.rto_at = None;
                self.touch();
                return Some(Event::Closed);
            }
            Kind::Probe => {
                self.probe_pending = false;
                self.stats.window_probes += 1;
                return None;
            }
            Kind::Ack => return None,
            Kind::Syn | Kind::SynAck | Kind::Data => {}
        }
        let end =
            p.seq + (p.len + usize::from(p.fin) + usize::from(matches!(p.kind, Kind::Syn | Kind::SynAck)));
        let retransmission = p.seq.distance(self.snd_max) < 0;
        if retransmission {
            self.stats.retransmits += 1;
            self.rtt_timer.on_retransmit();
        } else if end != p.seq {
            self.rtt_timer.start(end, now);
        }
        if p.seq == self.snd_una && self.rtx_una {
            self.rtx_una = false;
        }
        if self.recovery.is_some() && retransmission && end.distance(self.high_rxt) > 0 {
            self.high_rxt = end;
        }
        if p.seq == self.snd_nxt || self.snd_nxt.distance(end) < 0 && p.seq.distance(self.snd_nxt) <= 0 {
            self.snd_nxt = end;
        }
        if self.snd_max.distance(self.snd_nxt) < 0 {
            self.snd_max = self.snd_nxt;
        }
        self.stats.bytes_sent += p.len as u64;
        if p.len > 0 {
            self.sws_override = false;
            // Linux's tcp_event_data_sent: data sent soon after data came
            // means an interactive connection (pingpong mode).
            if self.last_data_rx.is_some_and(|t| now - t < ATO_MIN) {
                self.pingpong = true;
            }
        }
        if self.push_seq.is_some_and(|ps| self.snd_nxt.distance(ps) >= 0) {
            self.push_seq = None;
        }
        if end != p.seq {
            self.rto_at.get_or_insert(self.rtt.deadline(now));
            self.unacked_since.get_or_insert(now);
        }
        if p.fin {
            self.fin_sent.get_or_insert(p.seq + p.len);
            match self.state {
                State::Established => self.state = State::FinWait1,
                State::CloseWait => self.state = State::LastAck,
                _ => {}
            }
            self.touch();
        }
        None
    }

    /// Payload bytes a full-sized segment carries: the MSS less the options
    /// every segment carries now (timestamps, SACK blocks), so a full
    /// segment fits the MTU (RFC 9293 §3.7.1: the MSS counts no options).
    pub(crate) fn payload_max(&self) -> usize {
        let mut options = 0;
        if self.ts_recent.is_some() {
            options += 12;
        }
        if self.sack_ok && self.rx.has_ooo() {
            options += 4 + 8 * self.rx.ooo_ranges().count().min(3);
        }
        self.mss.saturating_sub(options).max(1)
    }

    /// Whether the socket is stuck without the persist timer: data waits,
    /// nothing is in flight to bring an ACK back, and the peer's window is
    /// closed (probe it) or too small for what silly-window avoidance lets
    /// us send (override it, RFC 9293 §3.8.6.2.1). Either way the persist
    /// timer gets things moving.
    pub(crate) fn stuck(&self) -> bool {
        let unsent = self.tx.len().saturating_sub(self.data_offset(self.snd_nxt));
        self.state.synchronized()
            && unsent > 0
            && self.snd_nxt == self.snd_una
            && self.snd_max == self.snd_una
            && (self.send_window_left() < unsent.min(self.payload_max()) || self.corked_tail(unsent))
    }

    /// Starts the persist timer when the peer's window is closed with data
    /// waiting and nothing in flight to bring an ACK back (or, as Linux's
    /// probe timer, when a cork holds a partial segment: it goes after an
    /// RTO, the "200 ms ceiling" of tcp(7)).
    pub(crate) fn arm_persist(&mut self, now: Instant) {
        if self.stuck() {
            if self.persist_at.is_none() {
                self.persist_at = Some(now + self.persist_interval());
            }
        } else {
            self.persist_at = None;
            self.persist_backoff = 0;
            self.probes_since = None;
        }
    }
}
