//! RFC-behaviour tests of [`TcpSocket`], in the style of smoltcp's socket
//! tests: a fixture builds a socket straight into a state
//! (`socket_syn_sent()`, `socket_established()`, `socket_fin_wait_1()`,
//! ...), and the test drives it one segment at a time: [`send`] feeds a
//! segment from the peer to `TcpSocket::input`, [`recv`] collects what
//! `TcpSocket::dispatch` emits. Each test names the rule it checks.
//!
//! Conventions:
//! - The clock is in milliseconds from 0 ([`at`]). Every fixture's
//!   handshake is over by 10 ms (the peer's ACK of our SYN-ACK arrives at
//!   10 ms, so SRTT is 10 ms and the RTO the 200 ms minimum); the closing
//!   fixtures take steps at 20, 30 and 40 ms; tests start at 100 ms.
//! - Sequence numbers are written as stream offsets: [`lseq`]`(n)` is our
//!   n-th data byte, [`rseq`]`(n)` the peer's. The peer's ISS is close to
//!   2^32, so its stream wraps after 4094 bytes.
//! - Unless a test says otherwise the peer offers only an MSS of 1460 and a
//!   window of 65535 (no window scaling, SACK or timestamps), and our
//!   receive buffer is [`WIN`] bytes, so the windows we advertise are exact
//!   byte counts.
//!
//! Seven of these first exposed bugs (since fixed): a zero window dropping
//! the ACK of a data segment, the scaled window edge moving left, missing
//! receiver and sender SWS safeguards, recv after reset, the RFC 6298 §5.7
//! 3 s RTO, and ECONNREFUSED after a simultaneous-open RST.

use core::net::SocketAddrV4;
use core::time::Duration;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use super::config::{Keepalive, TcpConfig};
use super::congestion::Algorithm;
use super::input::Input;
use super::socket::{Event, State, TcpSocket};
use crate::error::Errno;
use crate::time::Instant;
use crate::wire::{SeqNumber, TcpControl, TcpRepr, TcpTimestamp};

// ---- Helpers and fixtures ----

const LOCAL_PORT: u16 = 80;
const REMOTE_PORT: u16 = 49_152;
/// Our initial sequence number.
const LOCAL_SEQ: SeqNumber = SeqNumber(10_000);
/// The peer's initial sequence number: its data wraps past 2^32.
const REMOTE_SEQ: SeqNumber = SeqNumber(u32::MAX - 4_095);
/// The MSS both sides use.
const MSS: usize = 1460;
/// Our receive buffer in the default test configuration.
const WIN: usize = 16 * 1024;
/// Our send buffer in the default test configuration.
const SND_BUF: usize = 64 * 1024;
/// The window field of every segment from the peer.
const PEER_WIN: u16 = 65_535;
/// The peer's timestamp clock at the time of its SYN.
const PEER_TS: u32 = 7_000_000;
/// A receive buffer that needs window scaling, and the shift it gets.
const BIG_RX: usize = 1 << 20;
const BIG_SCALE: u8 = 5;

/// A segment from the peer, with no options and no payload.
const SEND_TEMPL: TcpRepr = TcpRepr {
    src_port: REMOTE_PORT,
    dst_port: LOCAL_PORT,
    control: TcpControl::None,
    seq_number: SeqNumber(0),
    ack_number: None,
    window_len: PEER_WIN,
    window_scale: None,
    max_seg_size: None,
    sack_permitted: false,
    sack_ranges: [None; 3],
    timestamp: None,
    payload_len: 0,
};

/// A segment we send, with no options and no payload.
const RECV_TEMPL: TcpRepr = TcpRepr {
    src_port: LOCAL_PORT,
    dst_port: REMOTE_PORT,
    window_len: 0,
    ..SEND_TEMPL
};

/// A segment as emitted: header and payload.
type Segment = (TcpRepr, Vec<u8>);

fn local() -> SocketAddrV4 {
    SocketAddrV4::new([10, 0, 0, 1].into(), LOCAL_PORT)
}

fn remote() -> SocketAddrV4 {
    SocketAddrV4::new([10, 0, 0, 2].into(), REMOTE_PORT)
}

/// The instant `ms` milliseconds after the origin.
fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Our sequence number `n` bytes into our stream (after the SYN).
fn lseq(n: usize) -> SeqNumber {
    LOCAL_SEQ + 1 + n
}

/// The peer's sequence number `n` bytes into its stream (after its SYN).
fn rseq(n: usize) -> SeqNumber {
    REMOTE_SEQ + 1 + n
}

/// A SACK block `[left, right)` as carried in a `TcpRepr`.
fn sack(left: SeqNumber, right: SeqNumber) -> Option<(u32, u32)> {
    Some((left.0, right.0))
}

/// `n` bytes of a recognisable pattern.
fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// The default test configuration: Linux's defaults with small buffers.
fn cfg() -> TcpConfig {
    TcpConfig {
        send_buffer: SND_BUF,
        recv_buffer: WIN,
        ..TcpConfig::default()
    }
}

/// A receive buffer large enough to need window scaling ([`BIG_SCALE`]).
fn cfg_big_rx() -> TcpConfig {
    TcpConfig {
        recv_buffer: BIG_RX,
        ..cfg()
    }
}

/// NewReno (exact RFC 5681 arithmetic) and no Nagle.
fn cfg_reno() -> TcpConfig {
    TcpConfig {
        congestion: Algorithm::NewReno,
        nodelay: true,
        ..cfg()
    }
}

/// A segment from the peer at its stream offset `seq`, acknowledging our
/// stream offset `ack`.
fn from_peer(seq: usize, ack: usize) -> TcpRepr {
    TcpRepr {
        seq_number: rseq(seq),
        ack_number: Some(lseq(ack)),
        ..SEND_TEMPL
    }
}

/// A segment we send at our stream offset `seq`, acknowledging the peer's
/// stream offset `ack`, advertising the window field `window`.
fn to_peer(seq: usize, ack: usize, window: usize) -> TcpRepr {
    TcpRepr {
        seq_number: lseq(seq),
        ack_number: Some(rseq(ack)),
        window_len: u16::try_from(window).expect("window field"),
        ..RECV_TEMPL
    }
}

/// The peer's SYN: MSS 1460, nothing else.
fn peer_syn() -> TcpRepr {
    TcpRepr {
        control: TcpControl::Syn,
        seq_number: REMOTE_SEQ,
        max_seg_size: Some(MSS as u16),
        ..SEND_TEMPL
    }
}

/// The peer's SYN-ACK to our SYN: MSS 1460, nothing else.
fn peer_syn_ack() -> TcpRepr {
    TcpRepr {
        ack_number: Some(lseq(0)),
        ..peer_syn()
    }
}

/// The peer's timestamps option.
fn peer_ts(tsval: u32, tsecr: u32) -> Option<TcpTimestamp> {
    Some(TcpTimestamp { tsval, tsecr })
}

/// `(repr, payload)` with `repr.payload_len` set to match.
fn seg(repr: TcpRepr, payload: &[u8]) -> Segment {
    (
        TcpRepr {
            payload_len: payload.len(),
            ..repr
        },
        payload.to_vec(),
    )
}

/// Feeds `repr` with `payload` (its `payload_len` is set to match) to the
/// socket, as the interface would.
fn send(s: &mut TcpSocket, now: Instant, repr: TcpRepr, payload: &[u8]) -> Input {
    let repr = TcpRepr {
        payload_len: payload.len(),
        ..repr
    };
    s.input(now, &repr, payload)
}

/// Runs `dispatch` once with a device that takes everything; returns its
/// event and the segments emitted.
fn dispatch(s: &mut TcpSocket, now: Instant) -> (Event, Vec<Segment>) {
    let mut out = Vec::new();
    let d = s.dispatch(now, &mut |repr, a, b| {
        let payload = [a, b].concat();
        assert_eq!(repr.payload_len, payload.len(), "payload_len of {repr:?}");
        out.push((*repr, payload));
        true
    });
    assert_eq!(d.sent, out.len());
    assert!(!d.more, "a device with room takes everything");
    (d.event, out)
}

/// The segments the socket emits now.
fn recv(s: &mut TcpSocket, now: Instant) -> Vec<Segment> {
    dispatch(s, now).1
}

/// Asserts the socket has nothing to send now.
fn recv_nothing(s: &mut TcpSocket, now: Instant) {
    assert_eq!(recv(s, now), [], "nothing should be sent");
}

/// Reads everything readable.
fn read_all(s: &mut TcpSocket) -> Vec<u8> {
    let mut buf = vec![0; s.recv_queue() + 1];
    match s.recv(&mut buf) {
        Ok(n) => buf.truncate(n),
        Err(e) => panic!("recv: {e:?}"),
    }
    buf
}

/// Payload lengths and controls of emitted segments, for compact asserts.
fn shape(out: &[Segment]) -> Vec<(SeqNumber, usize, TcpControl)> {
    out.iter()
        .map(|(r, p)| (r.seq_number, p.len(), r.control))
        .collect()
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountingWaker {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// SYN-SENT: `connect` at 0 ms, the SYN sent.
fn socket_syn_sent_with(cfg: TcpConfig) -> TcpSocket {
    let mut s = TcpSocket::new(cfg);
    s.connect(local(), remote(), LOCAL_SEQ, at(0));
    let out = recv(&mut s, at(0));
    assert_eq!(shape(&out), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(s.state, State::SynSent);
    s
}

fn socket_syn_sent() -> TcpSocket {
    socket_syn_sent_with(cfg())
}

/// SYN-RECEIVED: `syn` arrived at a listener at 0 ms, the SYN-ACK sent.
fn socket_syn_received_with(cfg: TcpConfig, syn: &TcpRepr) -> TcpSocket {
    let mut s = TcpSocket::accept_syn(cfg, local(), remote(), syn, LOCAL_SEQ, at(0));
    let out = recv(&mut s, at(0));
    assert_eq!(shape(&out), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(out[0].0.ack_number, Some(rseq(0)));
    s
}

fn socket_syn_received() -> TcpSocket {
    socket_syn_received_with(cfg(), &peer_syn())
}

/// ESTABLISHED (passive open of `syn`): the peer's ACK of our SYN-ACK
/// arrived at 10 ms, echoing our timestamp if `syn` offered timestamps.
fn socket_established_with(cfg: TcpConfig, syn: &TcpRepr) -> TcpSocket {
    let mut s = socket_syn_received_with(cfg, syn);
    let timestamp = syn
        .timestamp
        .and_then(|ts| peer_ts(ts.tsval + 10, s.ts_now(at(0))));
    let ack = TcpRepr {
        timestamp,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(10), ack, b""), Input::Done(Event::Established));
    assert_eq!(s.state, State::Established);
    recv_nothing(&mut s, at(10));
    s
}

fn socket_established() -> TcpSocket {
    socket_established_with(cfg(), &peer_syn())
}

/// ESTABLISHED with RFC 7323 timestamps (TS.Recent = `PEER_TS + 10`).
fn socket_established_ts() -> TcpSocket {
    let syn = TcpRepr {
        timestamp: peer_ts(PEER_TS, 0),
        ..peer_syn()
    };
    let s = socket_established_with(cfg(), &syn);
    assert_eq!(s.ts_recent, Some(PEER_TS + 10));
    s
}

/// ESTABLISHED with RFC 2018 SACK.
fn socket_established_sack_with(cfg: TcpConfig) -> TcpSocket {
    let syn = TcpRepr {
        sack_permitted: true,
        ..peer_syn()
    };
    let s = socket_established_with(cfg, &syn);
    assert!(s.sack_ok);
    s
}

/// FIN-WAIT-1: `shutdown(SHUT_WR)` on an idle connection; our FIN (at our
/// offset 0) went out at 20 ms.
fn socket_fin_wait_1() -> TcpSocket {
    let mut s = socket_established();
    s.shutdown_write().unwrap();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(20)), [seg(fin, b"")]);
    assert_eq!(s.state, State::FinWait1);
    s
}

/// FIN-WAIT-2: the peer acknowledged our FIN at 30 ms.
fn socket_fin_wait_2() -> TcpSocket {
    let mut s = socket_fin_wait_1();
    assert_eq!(
        send(&mut s, at(30), from_peer(0, 1), b""),
        Input::Done(Event::None)
    );
    assert_eq!(s.state, State::FinWait2);
    s
}

/// CLOSING: in FIN-WAIT-1 the peer's FIN (not acknowledging ours) arrived
/// at 30 ms and was acknowledged.
fn socket_closing() -> TcpSocket {
    let mut s = socket_fin_wait_1();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(30), fin, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::Closing);
    assert_eq!(recv(&mut s, at(30)), [seg(to_peer(1, 1, WIN), b"")]);
    s
}

/// TIME-WAIT: in FIN-WAIT-2 the peer's FIN arrived at 40 ms and was
/// acknowledged; the timer ends at 40 ms + 60 s.
fn socket_time_wait() -> TcpSocket {
    let mut s = socket_fin_wait_2();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 1)
    };
    assert_eq!(send(&mut s, at(40), fin, b""), Input::Done(Event::TimeWait));
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(recv(&mut s, at(40)), [seg(to_peer(1, 1, WIN), b"")]);
    s
}

/// CLOSE-WAIT: the peer's FIN arrived at 20 ms and was acknowledged.
fn socket_close_wait() -> TcpSocket {
    let mut s = socket_established();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(20), fin, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::CloseWait);
    assert_eq!(recv(&mut s, at(20)), [seg(to_peer(0, 1, WIN), b"")]);
    s
}

/// LAST-ACK: in CLOSE-WAIT we shut down; our FIN went out at 30 ms.
fn socket_last_ack() -> TcpSocket {
    let mut s = socket_close_wait();
    s.shutdown_write().unwrap();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 1, WIN)
    };
    assert_eq!(recv(&mut s, at(30)), [seg(fin, b"")]);
    assert_eq!(s.state, State::LastAck);
    s
}

/// Fills our whole receive window with one segment from the peer at
/// `now` (acknowledging nothing new), lets the delayed ACK go out, and
/// checks it advertises a zero window.
fn fill_receive_window(s: &mut TcpSocket, now: Instant) {
    let rcv_nxt = s.rcv_nxt;
    let seq = rcv_nxt.distance(rseq(0)) as usize;
    assert_eq!(
        send(s, now, from_peer(seq, 0), &data(WIN)),
        Input::Done(Event::None)
    );
    assert_eq!(s.recv_queue(), WIN);
    s.on_timers(now + ms(40));
    let zero_window_ack = TcpRepr {
        seq_number: s.snd_max,
        ..to_peer(0, seq + WIN, 0)
    };
    assert_eq!(recv(s, now + ms(40)), [seg(zero_window_ack, b"")]);
}

/// NewReno without SACK, five full segments (our offsets 0..7300) in
/// flight at 100 ms, and the three duplicate ACKs that trigger fast
/// retransmit at 110-112 ms; returns the data sent.
fn socket_in_newreno_recovery() -> (TcpSocket, Vec<u8>) {
    let mut s = socket_established_with(cfg_reno(), &peer_syn());
    let payload = data(5 * MSS);
    s.send(&payload).unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 5);
    for t in [110, 111] {
        send(&mut s, at(t), from_peer(0, 0), b"");
        recv_nothing(&mut s, at(t));
        assert_eq!(s.recovery, None);
    }
    send(&mut s, at(112), from_peer(0, 0), b"");
    (s, payload)
}

fn cfg_keepalive() -> TcpConfig {
    TcpConfig {
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            count: 3,
        }),
        ..cfg()
    }
}

/// A keepalive probe: <SEQ=SND.UNA-1>, no data (as Linux sends it).
fn keepalive_probe() -> Segment {
    let probe = TcpRepr {
        seq_number: lseq(0) - 1,
        ..to_peer(0, 0, WIN)
    };
    seg(probe, b"")
}

mod closing;
mod opening;
mod options;
mod receiving;
mod sending;
