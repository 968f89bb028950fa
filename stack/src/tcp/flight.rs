//! The flight recorder: for each connection, a ring of its last
//! [`EVENTS`] events (segments in and out with their flags, numbers and
//! window, state changes, timer expiries, the end), cheap enough to stay
//! on, to read after a process died.
//!
//! The rings live in memory the embedder hands over ([`Flight::new`], an
//! arena of [`FlightSlot`]s): the shim maps it shared with the reaper, the
//! process that outlives a crashed or killed one, which writes the rings
//! out as text ([`FlightSlot::write_text`], which formats into a stack
//! buffer and allocates nothing). A slot is taken when a connection first
//! records something and handed back when its socket is freed; freed slots
//! are reused oldest first, so the record of a connection that just ended
//! survives as long as possible. With no arena, or every slot taken,
//! nothing is recorded (counted in [`Flight::unrecorded`]).
//!
//! Recording an event is a few stores into the slot: no allocation, no
//! lock (the table's owner holds the stack's lock already).

use core::fmt::{self, Write};
use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::VecDeque;

use super::State;
use crate::time::Instant;
use crate::wire::{TcpControl, TcpRepr};

/// Events kept per connection.
pub const EVENTS: usize = 32;

/// What happened.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A segment from the peer.
    In = 1,
    /// A segment we sent.
    Out = 2,
    /// The connection's state changed (to `state`).
    State = 3,
    /// A timer ran (`extra`: retransmissions so far).
    Timer = 4,
    /// The connection ended (`extra`: its error, 0 for none).
    End = 5,
}

/// One event: 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlightEvent {
    /// When, in microseconds of the stack's clock.
    pub at_us: u64,
    /// Sequence number (segments).
    pub seq: u32,
    /// Acknowledgement number (segments with ACK).
    pub ack: u32,
    /// Payload length (segments).
    pub len: u16,
    /// Window field (segments).
    pub wnd: u16,
    /// A [`Kind`] (0: no event).
    pub kind: u8,
    /// TCP flags: FIN 1, SYN 2, RST 4, PSH 8, ACK 16.
    pub flags: u8,
    /// The connection's state after the event (an index of [`STATES`]).
    pub state: u8,
    /// Padding.
    pub _pad: u8,
    /// See [`Kind`].
    pub extra: u32,
    /// Padding.
    pub _pad2: u32,
}

/// One connection's record: who, and its ring.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlightSlot {
    /// 1 while the connection's socket exists, 2 once freed, 0 never used.
    pub used: u32,
    /// Events recorded so far (the ring's next index is this modulo
    /// [`EVENTS`]).
    pub count: u32,
    /// Our address (host order).
    pub local_ip: u32,
    /// The peer's address (host order).
    pub remote_ip: u32,
    /// Our port << 16 | the peer's.
    pub ports: u32,
    /// Padding.
    pub _pad: [u32; 3],
    /// The ring.
    pub events: [FlightEvent; EVENTS],
}

impl Default for FlightSlot {
    fn default() -> FlightSlot {
        FlightSlot {
            used: 0,
            count: 0,
            local_ip: 0,
            remote_ip: 0,
            ports: 0,
            _pad: [0; 3],
            events: [FlightEvent::default(); EVENTS],
        }
    }
}

/// State names, by the index [`FlightEvent::state`] holds.
pub const STATES: [&str; 11] = [
    "CLOSED",
    "LISTEN",
    "SYN-SENT",
    "SYN-RECEIVED",
    "ESTABLISHED",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "CLOSE-WAIT",
    "CLOSING",
    "LAST-ACK",
    "TIME-WAIT",
];

fn state_index(s: State) -> u8 {
    match s {
        State::Closed => 0,
        State::Listen => 1,
        State::SynSent => 2,
        State::SynReceived => 3,
        State::Established => 4,
        State::FinWait1 => 5,
        State::FinWait2 => 6,
        State::CloseWait => 7,
        State::Closing => 8,
        State::LastAck => 9,
        State::TimeWait => 10,
    }
}

/// The flags byte of a segment.
fn flags(seg: &TcpRepr) -> u8 {
    let control = match seg.control {
        TcpControl::None => 0,
        TcpControl::Fin => 1,
        TcpControl::Syn => 2,
        TcpControl::Rst => 4,
        TcpControl::Psh => 8,
    };
    control | if seg.ack_number.is_some() { 16 } else { 0 }
}

/// The arena and who holds which slot; see the module documentation.
#[derive(Debug, Default)]
pub struct Flight {
    slots: &'static mut [FlightSlot],
    /// Slots never used yet start here.
    fresh: usize,
    /// Freed slots, oldest first.
    freed: VecDeque<u32>,
    /// Connections that found no free slot.
    pub unrecorded: u64,
}

impl Flight {
    /// A recorder over `slots` (zeroed memory of the embedder's; see the
    /// module documentation).
    pub fn new(slots: &'static mut [FlightSlot]) -> Flight {
        Flight {
            slots,
            fresh: 0,
            freed: VecDeque::new(),
            unrecorded: 0,
        }
    }

    /// The slots, as recorded so far.
    pub fn slots(&self) -> &[FlightSlot] {
        self.slots
    }

    /// Whether there is an arena.
    pub fn is_on(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Takes a slot for the connection `local`–`remote`; `None` when none
    /// is free.
    pub(crate) fn take(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let i = if self.fresh < self.slots.len() {
            self.fresh += 1;
            self.fresh - 1
        } else if let Some(i) = self.freed.pop_front() {
            i as usize
        } else {
            self.unrecorded += 1;
            return None;
        };
        let slot = self.slots.get_mut(i)?;
        *slot = FlightSlot {
            used: 1,
            local_ip: u32::from(*local.ip()),
            remote_ip: u32::from(*remote.ip()),
            ports: (u32::from(local.port()) << 16) | u32::from(remote.port()),
            ..FlightSlot::default()
        };
        Some(i as u32)
    }

    /// The connection of slot `i` is gone: its record stays readable until
    /// the slot is reused.
    pub(crate) fn free(&mut self, i: u32) {
        if let Some(slot) = self.slots.get_mut(i as usize) {
            slot.used = 2;
            self.freed.push_back(i);
        }
    }

    fn push(&mut self, i: u32, ev: FlightEvent) {
        if let Some(slot) = self.slots.get_mut(i as usize) {
            let at = slot.count as usize % EVENTS;
            slot.events[at] = ev;
            slot.count = slot.count.wrapping_add(1);
        }
    }

    /// Records segment `seg` of `len` payload bytes, in or out.
    pub(crate) fn segment(
        &mut self,
        i: u32,
        now: Instant,
        kind: Kind,
        seg: &TcpRepr,
        len: usize,
        state: State,
    ) {
        self.push(
            i,
            FlightEvent {
                at_us: now.nanos() / 1000,
                seq: seg.seq_number.0,
                ack: seg.ack_number.map_or(0, |a| a.0),
                len: len.min(usize::from(u16::MAX)) as u16,
                wnd: seg.window_len,
                kind: kind as u8,
                flags: flags(seg),
                state: state_index(state),
                ..FlightEvent::default()
            },
        );
    }

    /// Records an event without a segment.
    pub(crate) fn mark(&mut self, i: u32, now: Instant, kind: Kind, state: State, extra: u32) {
        self.push(
            i,
            FlightEvent {
                at_us: now.nanos() / 1000,
                kind: kind as u8,
                state: state_index(state),
                extra,
                ..FlightEvent::default()
            },
        );
    }
}

/// A fixed buffer that `write!` fills without allocating (what does not
/// fit is cut).
struct Line {
    buf: [u8; 192],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl FlightSlot {
    /// Writes the record as text, one line per call of `out`: a line
    /// naming the connection, then its events oldest first. Allocates
    /// nothing (for a process that outlived a crashed one).
    pub fn write_text(&self, out: &mut dyn FnMut(&[u8])) {
        if self.used == 0 {
            return;
        }
        let mut line = Line {
            buf: [0; 192],
            len: 0,
        };
        let local = SocketAddrV4::new(Ipv4Addr::from(self.local_ip), (self.ports >> 16) as u16);
        let remote = SocketAddrV4::new(Ipv4Addr::from(self.remote_ip), self.ports as u16);
        let status = if self.used == 1 { "open" } else { "freed" };
        let _ = writeln!(
            line,
            "connection {local} - {remote} ({status}), {} events:",
            self.count
        );
        out(&line.buf[..line.len]);
        let n = (self.count as usize).min(EVENTS);
        let first = self.count as usize - n;
        for k in first..first + n {
            let e = &self.events[k % EVENTS];
            line.len = 0;
            let state = STATES.get(usize::from(e.state)).copied().unwrap_or("?");
            let _ = write!(line, "  {:>10}.{:06} ", e.at_us / 1_000_000, e.at_us % 1_000_000);
            let _ = match e.kind {
                1 | 2 => {
                    let dir = if e.kind == 1 { "in " } else { "out" };
                    let mut f = [b'.'; 5];
                    for (bit, c) in [(2, b'S'), (1, b'F'), (4, b'R'), (8, b'P'), (16, b'A')]
                        .iter()
                        .enumerate()
                    {
                        if e.flags & c.0 != 0 {
                            f[bit] = c.1;
                        }
                    }
                    let f = core::str::from_utf8(&f).unwrap_or("?????");
                    write!(
                        line,
                        "{dir} [{f}] seq={} ack={} len={} wnd={} -> {state}",
                        e.seq, e.ack, e.len, e.wnd
                    )
                }
                3 => write!(line, "state -> {state}"),
                4 => write!(line, "timer (retransmissions {}) -> {state}", e.extra),
                5 => write!(line, "end (errno {}) -> {state}", e.extra),
                _ => write!(line, "?"),
            };
            let _ = writeln!(line);
            out(&line.buf[..line.len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SeqNumber;

    fn arena(n: usize) -> &'static mut [FlightSlot] {
        Box::leak(vec![FlightSlot::default(); n].into_boxed_slice())
    }

    fn text(slot: &FlightSlot) -> String {
        let mut s = String::new();
        slot.write_text(&mut |b| s.push_str(std::str::from_utf8(b).unwrap()));
        s
    }

    const L: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
    const R: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000);

    #[test]
    fn an_event_is_32_bytes_and_a_slot_1056() {
        assert_eq!(size_of::<FlightEvent>(), 32);
        assert_eq!(size_of::<FlightSlot>(), 32 + 32 * EVENTS);
    }

    #[test]
    fn the_ring_keeps_the_last_events_oldest_first() {
        let mut f = Flight::new(arena(1));
        let i = f.take(L, R).unwrap();
        let syn = TcpRepr {
            control: TcpControl::Syn,
            seq_number: SeqNumber(7),
            window_len: 1000,
            ..TcpRepr::default()
        };
        f.segment(i, Instant::from_millis(1), Kind::In, &syn, 0, State::SynReceived);
        for k in 0..EVENTS as u32 + 5 {
            let ack = TcpRepr {
                seq_number: SeqNumber(100 + k),
                ack_number: Some(SeqNumber(8)),
                ..TcpRepr::default()
            };
            f.segment(
                i,
                Instant::from_millis(2),
                Kind::Out,
                &ack,
                10,
                State::Established,
            );
        }
        f.mark(i, Instant::from_millis(3), Kind::End, State::Closed, 104);
        let t = text(&f.slots[0]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 1 + EVENTS, "{t}");
        assert_eq!(
            lines[0],
            "connection 198.18.0.2:80 - 198.18.0.1:40000 (open), 39 events:"
        );
        assert!(!t.contains("[S"), "the SYN was overwritten: {t}");
        assert!(
            lines[1].ends_with("out [....A] seq=106 ack=8 len=10 wnd=0 -> ESTABLISHED"),
            "{}",
            lines[1]
        );
        assert!(lines[EVENTS].ends_with("end (errno 104) -> CLOSED"), "{t}");
        assert!(lines[EVENTS].contains("0.003000"), "{t}");
    }

    #[test]
    fn freed_slots_are_reused_oldest_first_and_overflow_is_counted() {
        let mut f = Flight::new(arena(2));
        let a = f.take(L, R).unwrap();
        let b = f.take(L, R).unwrap();
        assert_eq!(f.take(L, R), None);
        assert_eq!(f.unrecorded, 1);
        f.free(b);
        f.free(a);
        assert!(text(&f.slots[a as usize]).contains("(freed)"));
        assert_eq!(f.take(L, R), Some(b), "the oldest freed first");
        let mut off = Flight::default();
        assert!(!off.is_on());
        assert_eq!(off.take(L, R), None);
    }
}
