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

// ---- CLOSED: a fresh socket ----

#[test]
fn closed_fresh_socket_is_writable_and_hung_up() {
    // Linux tcp_poll: TCP_CLOSE reports EPOLLHUP, and EPOLLOUT since the
    // send side is not shut and there is room.
    let s = TcpSocket::new(cfg());
    let r = s.readiness();
    assert!(r.writable);
    assert!(r.hangup);
    assert!(!r.readable);
    assert!(!r.read_closed);
    assert!(!r.error);
}

#[test]
fn closed_send_before_connect_is_epipe() {
    // Linux tcp_sendmsg -> sk_stream_wait_connect: EPIPE outside the
    // opening and open states.
    let mut s = TcpSocket::new(cfg());
    assert_eq!(s.send(b"hello"), Err(Errno::EPIPE));
}

#[test]
fn closed_recv_before_connect_is_enotconn() {
    // Linux tcp_recvmsg: ENOTCONN "when user tries to read from never
    // connected socket".
    let mut s = TcpSocket::new(cfg());
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::ENOTCONN));
}

#[test]
fn closed_segment_is_answered_with_rst_except_rst() {
    // RFC 9293 §3.10.7.1: in CLOSED every segment but a RST draws a RST.
    let mut s = TcpSocket::new(cfg());
    assert_eq!(send(&mut s, at(100), from_peer(0, 0), b"x"), Input::Reset);
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(100), rst, b""), Input::Done(Event::None));
    recv_nothing(&mut s, at(100));
}

// ---- SYN-SENT: active open ----

#[test]
fn syn_sent_syn_carries_mss_window_scale_sack_and_timestamps() {
    // RFC 9293 §3.7.1 (MSS), RFC 7323 §2.2 (WS in the SYN, window field
    // unscaled) and §3.2 (TSecr 0 in the SYN), RFC 2018 §2 (SACK-permitted).
    let mut s = TcpSocket::new(cfg_big_rx());
    s.connect(local(), remote(), LOCAL_SEQ, at(0));
    assert_eq!(s.state, State::SynSent);
    let syn = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: None,
        window_len: 65_535,
        max_seg_size: Some(1460),
        window_scale: Some(BIG_SCALE),
        sack_permitted: true,
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(0)),
            tsecr: 0,
        }),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(0)), [seg(syn, b"")]);
    assert_eq!((s.snd_una, s.snd_nxt, s.snd_max), (LOCAL_SEQ, lseq(0), lseq(0)));
    // RFC 6298 §2.1: the initial RTO is 1 s.
    assert_eq!(s.rto_at, Some(at(1000)));
    recv_nothing(&mut s, at(0));
}

#[test]
fn syn_sent_syn_ack_with_acceptable_ack_establishes_and_is_acked() {
    // RFC 9293 §3.10.7.3: SYN with an acceptable ACK -> ESTABLISHED, send
    // <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>. RFC 7323 §2.2: the SYN-ACK's
    // window is not scaled; §3.2: TSecr echoes its TSval.
    let mut s = socket_syn_sent_with(cfg_big_rx());
    let syn_ack = TcpRepr {
        max_seg_size: Some(1400),
        window_scale: Some(2),
        sack_permitted: true,
        window_len: 40_000,
        timestamp: peer_ts(PEER_TS, s.ts_now(at(0))),
        ..peer_syn_ack()
    };
    assert_eq!(
        send(&mut s, at(30), syn_ack, b""),
        Input::Done(Event::Established)
    );
    assert_eq!(s.state, State::Established);
    assert_eq!((s.snd_una, s.snd_nxt, s.rcv_nxt), (lseq(0), lseq(0), rseq(0)));
    assert_eq!(s.snd_wnd, 40_000);
    assert_eq!((s.snd_scale, s.rcv_scale), (2, BIG_SCALE));
    assert_eq!(s.mss(), 1400);
    assert!(s.sack_ok);
    assert_eq!(s.ts_recent, Some(PEER_TS));
    assert_eq!(s.rto_at, None);
    // The RTT of the handshake, measured by the echoed timestamp.
    assert_eq!(s.srtt(), Some(ms(30)));
    let ack = TcpRepr {
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(30)),
            tsecr: PEER_TS,
        }),
        ..to_peer(0, 0, BIG_RX >> BIG_SCALE)
    };
    assert_eq!(recv(&mut s, at(30)), [seg(ack, b"")]);
    recv_nothing(&mut s, at(30));
}

#[test]
fn syn_sent_unacceptable_ack_is_answered_with_reset() {
    // RFC 9293 §3.10.7.3: SEG.ACK =< ISS or SEG.ACK > SND.NXT -> send a
    // RST (unless the segment is a RST) and discard it.
    let mut s = socket_syn_sent();
    for ack in [LOCAL_SEQ, LOCAL_SEQ + 2, LOCAL_SEQ - 1000] {
        let syn_ack = TcpRepr {
            ack_number: Some(ack),
            ..peer_syn_ack()
        };
        assert_eq!(send(&mut s, at(30), syn_ack, b""), Input::Reset, "ack {ack}");
        let ack_only = TcpRepr {
            control: TcpControl::None,
            ..syn_ack
        };
        assert_eq!(send(&mut s, at(30), ack_only, b""), Input::Reset, "ack {ack}");
        assert_eq!(s.state, State::SynSent);
    }
    recv_nothing(&mut s, at(30));
}

#[test]
fn syn_sent_rst_without_acceptable_ack_is_ignored() {
    // RFC 9293 §3.10.7.3: a RST with an unacceptable ACK is dropped; a RST
    // without an ACK is dropped.
    let mut s = socket_syn_sent();
    for ack in [None, Some(LOCAL_SEQ + 5)] {
        let rst = TcpRepr {
            control: TcpControl::Rst,
            seq_number: SeqNumber(0),
            ack_number: ack,
            window_len: 0,
            ..SEND_TEMPL
        };
        assert_eq!(send(&mut s, at(30), rst, b""), Input::Done(Event::None));
        assert_eq!(s.state, State::SynSent);
    }
    assert_eq!(s.error, None);
    recv_nothing(&mut s, at(30));
}

#[test]
fn syn_sent_rst_with_acceptable_ack_is_connection_refused() {
    // RFC 9293 §3.10.7.3: RST with an acceptable ACK -> "connection
    // reset", CLOSED; the program sees ECONNREFUSED.
    let mut s = socket_syn_sent();
    let rst = TcpRepr {
        control: TcpControl::Rst,
        seq_number: SeqNumber(0),
        ack_number: Some(lseq(0)),
        window_len: 0,
        ..SEND_TEMPL
    };
    assert_eq!(send(&mut s, at(30), rst, b""), Input::Done(Event::Closed));
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.rto_at, None);
    assert!(s.readiness().error);
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::ECONNREFUSED));
    assert!(!s.readiness().error, "the error is reported once");
    recv_nothing(&mut s, at(30));
}

#[test]
fn syn_sent_syn_ack_without_options_negotiates_them_off() {
    // RFC 7323 §2.2: no WS in the SYN-ACK -> both shifts 0; §3.2: no TS in
    // the SYN-ACK -> no timestamps sent; RFC 2018: no SACK;
    // RFC 9293 §3.7.1: no MSS option -> 536.
    let mut s = socket_syn_sent_with(cfg_big_rx());
    let syn_ack = TcpRepr {
        max_seg_size: None,
        ..peer_syn_ack()
    };
    assert_eq!(
        send(&mut s, at(30), syn_ack, b""),
        Input::Done(Event::Established)
    );
    assert_eq!((s.snd_scale, s.rcv_scale), (0, 0));
    assert!(!s.ws_ok);
    assert!(!s.sack_ok);
    assert_eq!(s.ts_recent, None);
    assert_eq!(s.mss(), 536);
    // RFC 6928: the initial window counts segments of the MSS in use.
    assert_eq!(s.cwnd(), 10 * 536);
    // The window field is unscaled: the 1 MiB buffer shows as 65535.
    assert_eq!(recv(&mut s, at(30)), [seg(to_peer(0, 0, 65_535), b"")]);
    // Data goes out in 536-byte segments, without timestamps.
    s.cfg.nodelay = true;
    s.send(&data(1000)).unwrap();
    let out = recv(&mut s, at(40));
    assert_eq!(
        shape(&out),
        [
            (lseq(0), 536, TcpControl::None),
            (lseq(536), 464, TcpControl::Psh)
        ]
    );
    assert!(out.iter().all(|(r, _)| r.timestamp.is_none()));
}

#[test]
fn syn_sent_mss_is_the_smaller_of_both() {
    // RFC 9293 §3.7.1: send segments no larger than the peer's MSS (and
    // our own).
    for (peer, expected) in [(1000u16, 1000usize), (9000, 1460)] {
        let mut s = socket_syn_sent();
        let syn_ack = TcpRepr {
            max_seg_size: Some(peer),
            ..peer_syn_ack()
        };
        assert_eq!(
            send(&mut s, at(30), syn_ack, b""),
            Input::Done(Event::Established)
        );
        assert_eq!(s.mss(), expected, "peer MSS {peer}");
    }
}

#[test]
fn syn_sent_syn_is_simultaneous_open() {
    // RFC 9293 §3.10.7.3 (fourth, SYN without ACK): -> SYN-RECEIVED, send
    // <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>; the options answer the peer's.
    let mut s = socket_syn_sent();
    assert_eq!(send(&mut s, at(30), peer_syn(), b""), Input::Done(Event::None));
    assert_eq!(s.state, State::SynReceived);
    assert_eq!(s.rcv_nxt, rseq(0));
    let syn_ack = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: Some(rseq(0)),
        window_len: WIN as u16,
        max_seg_size: Some(1460),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(30)), [seg(syn_ack, b"")]);
    // The ACK of our SYN completes it.
    assert_eq!(
        send(&mut s, at(40), from_peer(0, 0), b""),
        Input::Done(Event::Established)
    );
    assert_eq!(s.state, State::Established);
    assert_eq!(s.snd_una, lseq(0));
    recv_nothing(&mut s, at(40));
}

#[test]
fn syn_sent_simultaneous_open_rst_is_connection_refused() {
    // RFC 9293 §3.10.7.4 (second, SYN-RECEIVED): "If this connection was
    // initiated with an active OPEN (i.e., came from SYN-SENT state), then
    // the connection was refused; signal the user 'connection refused'."
    // Without the error, a program waiting for connect() to complete
    // reads SO_ERROR = 0 on a closed socket.
    let mut s = socket_syn_sent();
    send(&mut s, at(30), peer_syn(), b"");
    assert_eq!(recv(&mut s, at(30)).len(), 1);
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ack_number: None,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(40), rst, b""), Input::Done(Event::Closed));
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.take_error(), Some(Errno::ECONNREFUSED));
}

#[test]
fn syn_sent_send_is_eagain() {
    // Linux: send on a connecting non-blocking socket -> EAGAIN.
    let mut s = socket_syn_sent();
    assert_eq!(s.send(b"early"), Err(Errno::EAGAIN));
    assert_eq!(s.send_queue(), 0);
}

#[test]
fn syn_sent_is_neither_readable_nor_writable() {
    // Linux tcp_poll: nothing but HUP/ERR is reported in SYN-SENT.
    let s = socket_syn_sent();
    let r = s.readiness();
    assert!(!r.readable);
    assert!(!r.writable);
    assert!(!r.hangup);
    assert!(!r.error);
}

#[test]
fn syn_sent_syn_is_retransmitted_then_times_out() {
    // RFC 6298 §5.5: back off on every expiry; `syn_retries`
    // retransmissions, then ETIMEDOUT (Linux tcp_syn_retries).
    let mut s = socket_syn_sent_with(TcpConfig {
        syn_retries: 2,
        ..cfg()
    });
    assert_eq!(s.rto_at, Some(at(1000)));
    assert_eq!(s.on_timers(at(999)), Event::None);
    recv_nothing(&mut s, at(999));
    assert_eq!(s.on_timers(at(1000)), Event::None);
    let out = recv(&mut s, at(1000));
    assert_eq!(shape(&out), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(out[0].0.max_seg_size, Some(1460), "the options are sent again");
    assert_eq!(s.rto_at, Some(at(3000)));
    assert_eq!(s.on_timers(at(3000)), Event::None);
    assert_eq!(shape(&recv(&mut s, at(3000))), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(s.rto_at, Some(at(7000)));
    assert_eq!(s.stats.timeouts, 2);
    assert_eq!(s.on_timers(at(7000)), Event::Closed);
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(7000));
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::ETIMEDOUT));
}

#[test]
fn syn_sent_rto_is_three_seconds_after_a_syn_timeout() {
    // RFC 6298 §5.7: "If the timer expires awaiting the ACK of a SYN
    // segment and the TCP implementation is using an RTO less than 3
    // seconds, the RTO MUST be re-initialized to 3 seconds when data
    // transmission begins" (Linux: TCP_TIMEOUT_FALLBACK). Without
    // timestamps Karn's rule leaves no RTT sample from the handshake.
    let mut s = socket_syn_sent();
    s.on_timers(at(1000));
    assert_eq!(shape(&recv(&mut s, at(1000))), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(
        send(&mut s, at(1050), peer_syn_ack(), b""),
        Input::Done(Event::Established)
    );
    assert_eq!(s.srtt(), None, "Karn: no sample from a retransmitted SYN");
    assert!(s.rto() >= Duration::from_secs(3), "RTO {:?}", s.rto());
}

// ---- SYN-RECEIVED: passive open ----

#[test]
fn syn_received_syn_ack_carries_only_options_the_peer_offered() {
    // RFC 7323 §2.2 / §3.2 and RFC 2018 §2: WS, TS and SACK-permitted go
    // in the SYN-ACK only if the SYN had them. The SYN-ACK's window is
    // unscaled (RFC 7323 §2.2).
    let mut s = TcpSocket::accept_syn(cfg_big_rx(), local(), remote(), &peer_syn(), LOCAL_SEQ, at(0));
    assert_eq!(s.state, State::SynReceived);
    let syn_ack = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: Some(rseq(0)),
        window_len: 65_535,
        max_seg_size: Some(1460),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(0)), [seg(syn_ack, b"")]);
    assert_eq!((s.snd_scale, s.rcv_scale), (0, 0));
}

#[test]
fn syn_received_syn_ack_answers_every_offered_option() {
    let syn = TcpRepr {
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: peer_ts(PEER_TS, 0),
        max_seg_size: Some(1200),
        ..peer_syn()
    };
    let mut s = TcpSocket::accept_syn(cfg_big_rx(), local(), remote(), &syn, LOCAL_SEQ, at(0));
    let syn_ack = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: Some(rseq(0)),
        window_len: 65_535,
        max_seg_size: Some(1460),
        window_scale: Some(BIG_SCALE),
        sack_permitted: true,
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(0)),
            tsecr: PEER_TS,
        }),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(0)), [seg(syn_ack, b"")]);
    assert_eq!((s.snd_scale, s.rcv_scale, s.mss()), (7, BIG_SCALE, 1200));
}

#[test]
fn syn_received_syn_ack_omits_options_our_config_disables() {
    let syn = TcpRepr {
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: peer_ts(PEER_TS, 0),
        ..peer_syn()
    };
    let cfg = TcpConfig {
        window_scaling: false,
        sack: false,
        timestamps: false,
        ..cfg_big_rx()
    };
    let mut s = TcpSocket::accept_syn(cfg, local(), remote(), &syn, LOCAL_SEQ, at(0));
    let out = recv(&mut s, at(0));
    assert_eq!(out.len(), 1);
    let r = out[0].0;
    assert_eq!(
        (r.window_scale, r.sack_permitted, r.timestamp),
        (None, false, None)
    );
    assert_eq!(
        (s.snd_scale, s.rcv_scale, s.sack_ok, s.ts_recent),
        (0, 0, false, None)
    );
}

#[test]
fn syn_received_window_scale_above_14_is_capped() {
    // RFC 7323 §2.3: a shift above 14 is used as 14.
    let syn = TcpRepr {
        window_scale: Some(15),
        ..peer_syn()
    };
    let s = socket_syn_received_with(cfg(), &syn);
    assert_eq!(s.snd_scale, 14);
}

#[test]
fn syn_received_retransmitted_syn_gets_the_syn_ack_again() {
    // RFC 9293 §3.10.7.4 / Linux: a retransmitted SYN in SYN-RECEIVED
    // means the SYN-ACK was lost: send it again.
    let mut s = socket_syn_received();
    assert_eq!(send(&mut s, at(5), peer_syn(), b""), Input::Done(Event::None));
    assert_eq!(s.state, State::SynReceived);
    let syn_ack = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: Some(rseq(0)),
        window_len: WIN as u16,
        max_seg_size: Some(1460),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(5)), [seg(syn_ack, b"")]);
    recv_nothing(&mut s, at(5));
}

#[test]
fn syn_received_ack_establishes() {
    // RFC 9293 §3.10.7.4 (fifth, SYN-RECEIVED): SND.UNA < SEG.ACK =<
    // SND.NXT -> ESTABLISHED; from now on the window field is scaled
    // (RFC 7323 §2.2).
    let syn = TcpRepr {
        window_scale: Some(7),
        ..peer_syn()
    };
    let mut s = socket_syn_received_with(cfg(), &syn);
    let ack = TcpRepr {
        window_len: 100,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(10), ack, b""), Input::Done(Event::Established));
    assert_eq!(s.state, State::Established);
    assert_eq!((s.snd_una, s.snd_nxt), (lseq(0), lseq(0)));
    assert_eq!(s.snd_wnd, 100 << 7);
    assert_eq!(s.rto_at, None);
    assert_eq!(s.srtt(), Some(ms(10)));
    recv_nothing(&mut s, at(10));
}

#[test]
fn syn_received_ack_with_data_establishes_and_delivers_it() {
    let mut s = socket_syn_received();
    assert_eq!(
        send(&mut s, at(10), from_peer(0, 0), b"hello"),
        Input::Done(Event::Established)
    );
    assert_eq!(s.state, State::Established);
    assert_eq!(s.rcv_nxt, rseq(5));
    assert_eq!(read_all(&mut s), b"hello");
}

#[test]
fn syn_received_unacceptable_ack_is_answered_with_reset() {
    // RFC 9293 §3.10.7.4 (fifth, SYN-RECEIVED): an unacceptable ACK ->
    // <SEQ=SEG.ACK><CTL=RST>; the state does not change.
    let mut s = socket_syn_received();
    for ack in [LOCAL_SEQ, LOCAL_SEQ + 2, LOCAL_SEQ + 100_000] {
        let bad = TcpRepr {
            ack_number: Some(ack),
            ..from_peer(0, 0)
        };
        assert_eq!(send(&mut s, at(10), bad, b""), Input::Reset, "ack {ack}");
        assert_eq!(s.state, State::SynReceived);
    }
    recv_nothing(&mut s, at(10));
}

#[test]
fn syn_received_rst_closes() {
    // RFC 9293 §3.10.7.4 (second, SYN-RECEIVED, passive open): a RST
    // ends the embryonic connection.
    let mut s = socket_syn_received();
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ack_number: None,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(10), rst, b""), Input::Done(Event::Closed));
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(10));
}

#[test]
fn syn_received_syn_ack_is_retransmitted_then_given_up() {
    // RFC 6298 §5.4/5.5 for the SYN-ACK; Linux tcp_synack_retries: the
    // embryonic connection is dropped silently after the retries.
    let mut s = socket_syn_received_with(
        TcpConfig {
            syn_retries: 1,
            ..cfg()
        },
        &peer_syn(),
    );
    assert_eq!(s.rto_at, Some(at(1000)));
    assert_eq!(s.on_timers(at(1000)), Event::None);
    let out = recv(&mut s, at(1000));
    assert_eq!(shape(&out), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(out[0].0.ack_number, Some(rseq(0)));
    assert_eq!(s.rto_at, Some(at(3000)));
    assert_eq!(s.on_timers(at(3000)), Event::Closed);
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(3000));
}

// ---- ESTABLISHED: receiving data ----

#[test]
fn established_in_order_data_is_readable() {
    // RFC 9293 §3.10.7.4 (seventh): in-order text goes to the user.
    let mut s = socket_established();
    assert_eq!(
        send(&mut s, at(100), from_peer(0, 0), b"abcdef"),
        Input::Done(Event::None)
    );
    assert_eq!(s.rcv_nxt, rseq(6));
    assert_eq!(s.recv_queue(), 6);
    assert!(s.readiness().readable);
    let mut buf = [0; 64];
    assert_eq!(s.recv(&mut buf), Ok(6));
    assert_eq!(&buf[..6], b"abcdef");
    assert_eq!(s.recv(&mut buf), Err(Errno::EAGAIN));
    assert_eq!(s.stats.bytes_received, 6);
}

#[test]
fn established_one_segment_is_acked_after_the_delay() {
    // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: the ACK may be delayed (here the
    // Linux minimum, 40 ms) but not longer.
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), &data(MSS));
    recv_nothing(&mut s, at(100));
    assert_eq!(s.ack_due, Some(at(140)));
    assert_eq!(s.poll_at(), Some(at(140)));
    s.on_timers(at(139));
    recv_nothing(&mut s, at(139));
    s.on_timers(at(140));
    assert_eq!(recv(&mut s, at(140)), [seg(to_peer(0, MSS, WIN - MSS), b"")]);
    assert_eq!(s.ack_due, None);
    recv_nothing(&mut s, at(140));
}

#[test]
fn established_every_second_full_segment_is_acked_at_once() {
    // RFC 5681 §4.2: "an ACK SHOULD be generated for at least every second
    // full-sized segment".
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), &data(MSS));
    recv_nothing(&mut s, at(100));
    send(&mut s, at(101), from_peer(MSS, 0), &data(MSS));
    assert_eq!(
        recv(&mut s, at(101)),
        [seg(to_peer(0, 2 * MSS, WIN - 2 * MSS), b"")]
    );
    assert_eq!(s.ack_due, None);
    // The count starts again: the third segment waits.
    send(&mut s, at(102), from_peer(2 * MSS, 0), &data(MSS));
    recv_nothing(&mut s, at(102));
    assert_eq!(s.ack_due, Some(at(142)));
}

#[test]
fn established_out_of_order_data_gets_dup_ack_with_sack_most_recent_first() {
    // RFC 5681 §4.2: an out-of-order segment is ACKed at once (a duplicate
    // ACK). RFC 2018 §4: the first SACK block holds the segment that
    // triggered the ACK; the others repeat earlier blocks.
    let mut s = socket_established_sack_with(cfg());
    send(&mut s, at(100), from_peer(6, 0), b"ghijkl");
    assert_eq!(s.rcv_nxt, rseq(0));
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::EAGAIN));
    let ack = TcpRepr {
        sack_ranges: [sack(rseq(6), rseq(12)), None, None],
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(ack, b"")]);
    send(&mut s, at(101), from_peer(18, 0), b"stuvwx");
    let ack = TcpRepr {
        sack_ranges: [sack(rseq(18), rseq(24)), sack(rseq(6), rseq(12)), None],
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(101)), [seg(ack, b"")]);
    // Data extending the older block makes it the most recent again.
    send(&mut s, at(102), from_peer(12, 0), b"mno");
    let ack = TcpRepr {
        sack_ranges: [sack(rseq(6), rseq(15)), sack(rseq(18), rseq(24)), None],
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(102)), [seg(ack, b"")]);
}

#[test]
fn established_out_of_order_data_without_sack_gets_plain_dup_ack() {
    // RFC 5681 §4.2; no SACK blocks unless SACK was negotiated (RFC 2018).
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(6, 0), b"ghijkl");
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
}

#[test]
fn established_filling_the_hole_acks_everything() {
    // RFC 5681 §4.2: a segment that fills a gap is ACKed at once; the ACK
    // covers all contiguous data, and SACK reports what is still missing.
    let mut s = socket_established_sack_with(cfg());
    send(&mut s, at(100), from_peer(6, 0), b"ghijkl");
    send(&mut s, at(100), from_peer(18, 0), b"stuvwx");
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    send(&mut s, at(101), from_peer(0, 0), b"abcdef");
    assert_eq!(s.rcv_nxt, rseq(12));
    let ack = TcpRepr {
        sack_ranges: [sack(rseq(18), rseq(24)), None, None],
        ..to_peer(0, 12, WIN - 12)
    };
    assert_eq!(recv(&mut s, at(101)), [seg(ack, b"")]);
    send(&mut s, at(102), from_peer(12, 0), b"mnopqr");
    assert_eq!(s.rcv_nxt, rseq(24));
    assert_eq!(recv(&mut s, at(102)), [seg(to_peer(0, 24, WIN - 24), b"")]);
    assert_eq!(read_all(&mut s), b"abcdefghijklmnopqrstuvwx");
}

#[test]
fn established_duplicate_data_is_acked_and_not_delivered_twice() {
    // RFC 9293 §3.10.7.4 (first): an old duplicate is not acceptable; send
    // an ACK (so a sender whose ACK was lost learns rcv_nxt).
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), b"abcdef");
    recv_nothing(&mut s, at(100));
    send(&mut s, at(110), from_peer(0, 0), b"abcdef");
    assert_eq!(recv(&mut s, at(110)), [seg(to_peer(0, 6, WIN - 6), b"")]);
    assert_eq!(s.recv_queue(), 6);
    assert_eq!(s.stats.out_of_window, 1);
    // Overlapping the edge: only the new part is taken.
    send(&mut s, at(120), from_peer(3, 0), b"DEFghi");
    assert_eq!(s.rcv_nxt, rseq(9));
    assert_eq!(read_all(&mut s), b"abcdefghi");
}

#[test]
fn established_data_beyond_the_window_is_trimmed() {
    // RFC 9293 §3.10.7.4: a segment is trimmed to the window; what lies
    // beyond it is not acknowledged.
    let mut s = socket_established();
    let payload = data(WIN + 100);
    send(&mut s, at(100), from_peer(0, 0), &payload);
    assert_eq!(s.rcv_nxt, rseq(WIN));
    assert_eq!(s.recv_queue(), WIN);
    s.on_timers(at(140));
    assert_eq!(recv(&mut s, at(140)), [seg(to_peer(0, WIN, 0), b"")]);
    assert_eq!(read_all(&mut s), &payload[..WIN]);
}

#[test]
fn established_data_with_fin_is_delivered_then_eof() {
    // RFC 9293 §3.10.7.4 (eighth): FIN -> CLOSE-WAIT, ACK at once; the
    // program reads the data, then end of stream.
    let mut s = socket_established();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(100), fin, b"bye"), Input::Done(Event::None));
    assert_eq!(s.state, State::CloseWait);
    assert_eq!(s.rcv_nxt, rseq(4));
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 4, WIN - 3), b"")]);
    let mut buf = [0; 16];
    assert_eq!(s.recv(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"bye");
    assert_eq!(s.recv(&mut buf), Ok(0));
}

#[test]
fn established_out_of_order_fin_is_taken_when_the_hole_fills() {
    // RFC 9293 §3.10.7.4 (eighth): a FIN is processed only once everything
    // before it arrived.
    let mut s = socket_established();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(6, 0)
    };
    send(&mut s, at(100), fin, b"ghijkl");
    assert_eq!(s.state, State::Established);
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
    send(&mut s, at(101), from_peer(0, 0), b"abcdef");
    assert_eq!(s.state, State::CloseWait);
    assert_eq!(s.rcv_nxt, rseq(13));
    assert_eq!(recv(&mut s, at(101)), [seg(to_peer(0, 13, WIN - 12), b"")]);
    assert_eq!(read_all(&mut s), b"abcdefghijkl");
    assert_eq!(s.recv(&mut [0; 4]), Ok(0));
}

// ---- ESTABLISHED: sequence acceptability (RFC 9293 §3.10.7.4) ----

#[test]
fn established_segment_beyond_the_window_is_acked_and_dropped() {
    // RFC 9293 §3.10.7.4 (first): not acceptable -> send <SEQ=SND.NXT>
    // <ACK=RCV.NXT><CTL=ACK> and drop it (its ACK field included).
    let mut s = socket_established();
    s.send(b"hi").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    send(&mut s, at(110), from_peer(WIN, 2), b"x");
    assert_eq!(recv(&mut s, at(110)), [seg(to_peer(2, 0, WIN), b"")]);
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(
        s.snd_una,
        lseq(0),
        "the ACK field of a dropped segment is ignored"
    );
    assert_eq!(s.stats.out_of_window, 1);
    // The last byte of the window is still acceptable.
    send(&mut s, at(120), from_peer(WIN - 1, 0), b"y");
    assert_eq!(s.rx.ooo_ranges().collect::<Vec<_>>(), [(WIN - 1, WIN)]);
}

#[test]
fn established_empty_segment_outside_the_window_is_acked() {
    // RFC 9293 §3.10.7.4: SEG.LEN = 0, RCV.WND > 0 is acceptable only if
    // RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND.
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(WIN, 0), b"");
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
    // A probe below the window (SEG.SEQ = RCV.NXT - 1) is answered too.
    let probe = TcpRepr {
        seq_number: rseq(0) - 1,
        ..from_peer(0, 0)
    };
    send(&mut s, at(110), probe, b"");
    assert_eq!(recv(&mut s, at(110)), [seg(to_peer(0, 0, WIN), b"")]);
    assert_eq!(s.stats.out_of_window, 2);
}

#[test]
fn established_zero_window_accepts_a_pure_ack_at_rcv_nxt() {
    // RFC 9293 §3.10.7.4: with RCV.WND = 0 a zero-length segment at
    // RCV.NXT is acceptable ("special allowance ... to accept valid ACKs").
    let mut s = socket_established();
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    fill_receive_window(&mut s, at(110));
    assert_eq!(
        send(&mut s, at(160), from_peer(WIN, 5), b""),
        Input::Done(Event::None)
    );
    assert_eq!(s.snd_una, lseq(5));
    assert_eq!(s.send_queue(), 0);
    recv_nothing(&mut s, at(160));
}

#[test]
fn established_zero_window_drops_data_and_acks() {
    // RFC 9293 §3.10.7.4: with RCV.WND = 0 no data is acceptable; ACK it.
    let mut s = socket_established();
    fill_receive_window(&mut s, at(100));
    send(&mut s, at(160), from_peer(WIN, 0), b"more");
    assert_eq!(s.recv_queue(), WIN);
    assert_eq!(s.rcv_nxt, rseq(WIN));
    assert_eq!(recv(&mut s, at(160)), [seg(to_peer(0, WIN, 0), b"")]);
}

#[test]
fn established_zero_window_still_processes_the_ack_of_a_data_segment() {
    // RFC 9293 §3.10.7.4: "If the RCV.WND is zero, no segments will be
    // acceptable, but special allowance should be made to accept valid
    // ACKs" — Linux (tcp_sequence accepts SEG.SEQ = RCV.NXT, tcp_ack runs,
    // tcp_data_queue drops the data) processes the ACK field.
    let mut s = socket_established();
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    fill_receive_window(&mut s, at(110));
    send(&mut s, at(160), from_peer(WIN, 5), b"more");
    assert_eq!(s.recv_queue(), WIN, "the data is dropped");
    assert_eq!(recv(&mut s, at(160)), [seg(to_peer(5, WIN, 0), b"")]);
    assert_eq!(s.snd_una, lseq(5), "the ACK field is processed");
    assert_eq!(s.rto_at, None);
}

#[test]
fn established_zero_window_accepts_a_bare_fin_at_rcv_nxt() {
    // Linux tcp_data_queue: a FIN without data at RCV.NXT is queued even
    // with a zero window (the FIN needs no buffer space).
    let mut s = socket_established();
    fill_receive_window(&mut s, at(100));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(WIN, 0)
    };
    send(&mut s, at(160), fin, b"");
    assert_eq!(s.state, State::CloseWait);
    assert_eq!(recv(&mut s, at(160)), [seg(to_peer(0, WIN + 1, 0), b"")]);
}

#[test]
fn established_zero_window_drops_empty_segment_elsewhere() {
    // RFC 9293 §3.10.7.4: SEG.LEN = 0, RCV.WND = 0: acceptable only if
    // SEG.SEQ = RCV.NXT.
    let mut s = socket_established();
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    fill_receive_window(&mut s, at(110));
    send(&mut s, at(160), from_peer(WIN + 1, 5), b"");
    assert_eq!(s.snd_una, lseq(0));
    assert_eq!(recv(&mut s, at(160)), [seg(to_peer(5, WIN, 0), b"")]);
}

// ---- ESTABLISHED: RFC 5961 (blind in-window attacks) ----

#[test]
fn established_rst_at_rcv_nxt_resets() {
    // RFC 5961 §3.2: a RST whose SEG.SEQ = RCV.NXT resets the connection;
    // the program sees ECONNRESET.
    let mut s = socket_established();
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(100), rst, b""), Input::Done(Event::Closed));
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(100));
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::ECONNRESET));
}

#[test]
fn established_rst_in_window_gets_challenge_ack() {
    // RFC 5961 §3.2: a RST in the window but not at RCV.NXT draws a
    // challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT> and is dropped.
    let mut s = socket_established();
    for off in [1, 1000, WIN - 1] {
        let rst = TcpRepr {
            control: TcpControl::Rst,
            ..from_peer(off, 0)
        };
        assert_eq!(send(&mut s, at(100), rst, b""), Input::Done(Event::None));
        assert_eq!(s.state, State::Established);
        assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
    }
    assert_eq!(s.stats.challenge_acks, 3);
    assert_eq!(s.error, None);
}

#[test]
fn established_rst_outside_the_window_is_ignored() {
    // RFC 5961 §3.2 (1): a RST outside the window is silently dropped.
    let mut s = socket_established();
    for seq in [rseq(WIN), rseq(0) - 1] {
        let rst = TcpRepr {
            control: TcpControl::Rst,
            seq_number: seq,
            ..from_peer(0, 0)
        };
        assert_eq!(send(&mut s, at(100), rst, b""), Input::Done(Event::None));
    }
    assert_eq!(s.state, State::Established);
    recv_nothing(&mut s, at(100));
}

#[test]
fn established_syn_gets_challenge_ack() {
    // RFC 5961 §4.2: a SYN in a synchronized state, whatever its sequence
    // number, draws a challenge ACK; the connection is not reset.
    let mut s = socket_established();
    let syn = TcpRepr {
        control: TcpControl::Syn,
        ack_number: None,
        ..from_peer(100, 0)
    };
    assert_eq!(send(&mut s, at(100), syn, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::Established);
    assert_eq!(s.rcv_nxt, rseq(0));
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
    assert_eq!(s.stats.challenge_acks, 1);
    // One outside the window gets an ACK too.
    let syn = TcpRepr {
        seq_number: REMOTE_SEQ - 1_000_000,
        ..syn
    };
    assert_eq!(send(&mut s, at(110), syn, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::Established);
    assert_eq!(recv(&mut s, at(110)), [seg(to_peer(0, 0, WIN), b"")]);
}

#[test]
fn established_ack_of_unsent_data_is_acked_and_dropped() {
    // RFC 5961 §5.2 / RFC 9293 §3.10.7.4 (fifth): SEG.ACK > SND.NXT ->
    // send an ACK, drop the segment (its data included).
    let mut s = socket_established();
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    send(&mut s, at(110), from_peer(0, 100), b"data");
    assert_eq!(recv(&mut s, at(110)), [seg(to_peer(5, 0, WIN), b"")]);
    assert_eq!(s.snd_una, lseq(0));
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(s.rcv_nxt, rseq(0));
}

#[test]
fn established_ack_too_old_is_challenged_and_dropped() {
    // RFC 5961 §5.2: SEG.ACK must be >= SND.UNA - MAX.SND.WND; otherwise
    // the segment is discarded and an ACK sent.
    let mut s = socket_established();
    let old = TcpRepr {
        ack_number: Some(lseq(0) - 70_000),
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), old, b"data");
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(s.stats.challenge_acks, 1);
}

// ---- ESTABLISHED: timestamps and PAWS (RFC 7323) ----

#[test]
fn established_paws_drops_an_old_timestamp() {
    // RFC 7323 §5.3: SEG.TSval < TS.Recent (and no RST) -> not acceptable:
    // send an ACK, drop the segment.
    let mut s = socket_established_ts();
    let old = TcpRepr {
        timestamp: peer_ts(PEER_TS + 5, s.ts_now(at(0))),
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), old, b"stale");
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(s.rcv_nxt, rseq(0));
    assert_eq!(s.ts_recent, Some(PEER_TS + 10));
    assert_eq!(s.stats.out_of_window, 1);
    let ack = TcpRepr {
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(100)),
            tsecr: PEER_TS + 10,
        }),
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(ack, b"")]);
}

#[test]
fn established_ts_recent_is_taken_from_segments_at_last_ack_sent() {
    // RFC 7323 §4.3: TS.Recent <- SEG.TSval only if SEG.SEQ =<
    // Last.ACK.sent, so a delayed ACK of two segments echoes the first
    // one's TSval; our TSecr is TS.Recent and our TSval is our clock.
    let mut s = socket_established_ts();
    let ours = s.ts_now(at(0));
    let first = TcpRepr {
        timestamp: peer_ts(PEER_TS + 100, ours),
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), first, &data(MSS));
    assert_eq!(s.ts_recent, Some(PEER_TS + 100));
    let second = TcpRepr {
        timestamp: peer_ts(PEER_TS + 101, ours),
        ..from_peer(MSS, 0)
    };
    send(&mut s, at(101), second, &data(MSS));
    assert_eq!(s.ts_recent, Some(PEER_TS + 100), "beyond Last.ACK.sent");
    let ack = TcpRepr {
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(101)),
            tsecr: PEER_TS + 100,
        }),
        ..to_peer(0, 2 * MSS, WIN - 2 * MSS)
    };
    assert_eq!(recv(&mut s, at(101)), [seg(ack, b"")]);
    // The next segment starts at Last.ACK.sent: its TSval is taken.
    let third = TcpRepr {
        timestamp: peer_ts(PEER_TS + 150, ours),
        ..from_peer(2 * MSS, 0)
    };
    send(&mut s, at(150), third, b"x");
    assert_eq!(s.ts_recent, Some(PEER_TS + 150));
    s.on_timers(at(190));
    let out = recv(&mut s, at(190));
    assert_eq!(out.len(), 1);
    let ts = out[0].0.timestamp.expect("timestamps in every segment");
    assert_eq!(ts.tsecr, PEER_TS + 150);
    assert_eq!(
        ts.tsval.wrapping_sub(ack.timestamp.unwrap().tsval),
        89,
        "TSval counts milliseconds"
    );
}

#[test]
fn established_timestamps_give_an_rtt_sample() {
    // RFC 7323 §4.1 / RFC 6298 §2: an ACK of new data echoing our TSval
    // yields RTT = now - TSecr; SRTT and RTTVAR follow RFC 6298 §2.3.
    let mut s = socket_established_ts();
    assert_eq!((s.srtt(), s.rtt.rttvar()), (Some(ms(10)), ms(5)));
    s.send(&data(1000)).unwrap();
    let out = recv(&mut s, at(100));
    let ts = out[0].0.timestamp.expect("TS in data");
    assert_eq!(
        ts,
        TcpTimestamp {
            tsval: s.ts_now(at(100)),
            tsecr: PEER_TS + 10
        }
    );
    let ack = TcpRepr {
        timestamp: peer_ts(PEER_TS + 20, ts.tsval),
        ..from_peer(0, 1000)
    };
    send(&mut s, at(180), ack, b"");
    // R = 80 ms: RTTVAR = 3/4 * 5 + 1/4 * |10 - 80|, SRTT = 7/8 * 10 + 1/8 * 80.
    assert_eq!(s.rtt.rttvar(), Duration::from_micros(21_250));
    assert_eq!(s.srtt(), Some(Duration::from_micros(18_750)));
}

// ---- ESTABLISHED: windows (RFC 7323 scaling, RFC 9293 §3.8.6) ----

#[test]
fn established_peer_window_is_shifted_by_snd_scale() {
    // RFC 7323 §2.3: SND.WND = SEG.WND << Snd.Wind.Shift on non-SYN
    // segments.
    let syn = TcpRepr {
        window_scale: Some(7),
        ..peer_syn()
    };
    let mut s = socket_established_with(cfg(), &syn);
    assert_eq!(s.snd_wnd, (PEER_WIN as usize) << 7);
    let update = TcpRepr {
        window_len: 100,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), update, b"");
    assert_eq!(s.snd_wnd, 12_800);
}

#[test]
fn established_our_window_is_shifted_by_rcv_scale() {
    // RFC 7323 §2.3: the window field we send is RCV.WND >> Rcv.Wind.Shift.
    let syn = TcpRepr {
        window_scale: Some(7),
        ..peer_syn()
    };
    let mut s = socket_established_with(cfg_big_rx(), &syn);
    assert_eq!(s.rcv_scale, BIG_SCALE);
    send(&mut s, at(100), from_peer(0, 0), &data(1000));
    s.on_timers(at(140));
    assert_eq!(
        recv(&mut s, at(140)),
        [seg(to_peer(0, 1000, (BIG_RX - 1000) >> BIG_SCALE), b"")]
    );
}

#[test]
fn established_right_edge_does_not_move_left_unscaled() {
    // RFC 9293 §3.8.6.2.2 (SHLD-14): the right window edge does not move
    // left. Unread data shrinks the window by exactly its length.
    let mut s = socket_established();
    let mut edges = Vec::new();
    for (i, len) in [700usize, 1460, 3].into_iter().enumerate() {
        let t = 100 + 100 * i as u64;
        let seq = s.rcv_nxt.distance(rseq(0)) as usize;
        send(&mut s, at(t), from_peer(seq, 0), &data(len));
        s.on_timers(at(t + 40));
        let out = recv(&mut s, at(t + 40));
        assert_eq!(out.len(), 1);
        let r = out[0].0;
        edges.push(r.ack_number.unwrap() + r.window_len as usize);
    }
    assert_eq!(edges, [rseq(WIN); 3]);
}

#[test]
fn established_right_edge_does_not_move_left_scaled() {
    // RFC 9293 §3.8.6.2.2 (SHLD-14) and this module's invariant: the right
    // edge we advertise (SEG.ACK + (SEG.WND << Rcv.Wind.Shift)) never
    // moves left. Linux rounds the scaled window up (ALIGN) to ensure it.
    let syn = TcpRepr {
        window_scale: Some(7),
        ..peer_syn()
    };
    let mut s = socket_established_with(cfg_big_rx(), &syn);
    let mut last_edge = rseq(0);
    for (i, len) in [7usize, 30, 1, 100, 31].into_iter().enumerate() {
        let t = 100 + 100 * i as u64;
        let seq = s.rcv_nxt.distance(rseq(0)) as usize;
        send(&mut s, at(t), from_peer(seq, 0), &data(len));
        s.on_timers(at(t + 40));
        let out = recv(&mut s, at(t + 40));
        assert_eq!(out.len(), 1);
        let r = out[0].0;
        let edge = r.ack_number.unwrap() + ((r.window_len as usize) << BIG_SCALE);
        assert!(
            edge.distance(last_edge) >= 0,
            "after {len} more bytes the edge moved left by {}",
            last_edge.distance(edge)
        );
        last_edge = edge;
    }
}

#[test]
fn established_window_update_after_the_program_reads() {
    // RFC 9293 §3.8.6.2.2 / RFC 1122 §4.2.3.3: once the window opens by
    // enough (here 2 MSS), announce it without waiting for data.
    let mut s = socket_established();
    fill_receive_window(&mut s, at(100));
    let mut buf = vec![0; 2 * MSS];
    assert_eq!(s.recv(&mut buf[..1000]), Ok(1000));
    recv_nothing(&mut s, at(200));
    assert_eq!(s.recv(&mut buf), Ok(2 * MSS));
    assert_eq!(recv(&mut s, at(201)), [seg(to_peer(0, WIN, 1000 + 2 * MSS), b"")]);
}

#[test]
fn established_receiver_sws_avoidance_keeps_the_edge_for_tiny_openings() {
    // RFC 9293 §3.8.6.2.2 (MUST-39): the receiver keeps RCV.NXT + RCV.WND
    // fixed until the window can grow by min(RCV.BUFF / 2, Eff.snd.MSS).
    // After a 1-byte read, the answer to the peer's zero-window probe
    // must still offer a zero window.
    let mut s = socket_established();
    fill_receive_window(&mut s, at(100));
    assert_eq!(s.recv(&mut [0; 1]), Ok(1));
    let probe = TcpRepr {
        seq_number: rseq(WIN) - 1,
        ..from_peer(0, 0)
    };
    send(&mut s, at(300), probe, b"");
    assert_eq!(recv(&mut s, at(300)), [seg(to_peer(0, WIN, 0), b"")]);
}

// ---- ESTABLISHED: sending ----

#[test]
fn established_nagle_holds_a_small_segment_while_data_is_in_flight() {
    // RFC 896 / RFC 1122 §4.2.3.4: with unacknowledged data outstanding, a
    // small segment waits until it is acknowledged.
    let mut s = socket_established();
    s.send(b"a").unwrap();
    let first = TcpRepr {
        control: TcpControl::Psh,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(first, b"a")]);
    s.send(b"b").unwrap();
    recv_nothing(&mut s, at(101));
    s.send(b"c").unwrap();
    recv_nothing(&mut s, at(102));
    send(&mut s, at(150), from_peer(0, 1), b"");
    let second = TcpRepr {
        control: TcpControl::Psh,
        ..to_peer(1, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(150)), [seg(second, b"bc")]);
}

#[test]
fn established_nodelay_sends_a_small_segment_at_once() {
    // TCP_NODELAY disables Nagle.
    let mut s = socket_established_with(
        TcpConfig {
            nodelay: true,
            ..cfg()
        },
        &peer_syn(),
    );
    s.send(b"a").unwrap();
    assert_eq!(shape(&recv(&mut s, at(100))), [(lseq(0), 1, TcpControl::Psh)]);
    s.send(b"b").unwrap();
    assert_eq!(shape(&recv(&mut s, at(101))), [(lseq(1), 1, TcpControl::Psh)]);
}

#[test]
fn established_large_write_is_cut_into_mss_segments_with_psh_on_the_last() {
    // RFC 9293 §3.7.1: segments no larger than the MSS; §3.9.1.2: PSH on
    // the segment that empties the send buffer.
    let mut s = socket_established_with(
        TcpConfig {
            nodelay: true,
            ..cfg()
        },
        &peer_syn(),
    );
    let payload = data(4000);
    assert_eq!(s.send(&payload), Ok(4000));
    let out = recv(&mut s, at(100));
    assert_eq!(
        shape(&out),
        [
            (lseq(0), MSS, TcpControl::None),
            (lseq(MSS), MSS, TcpControl::None),
            (lseq(2 * MSS), 4000 - 2 * MSS, TcpControl::Psh),
        ]
    );
    assert_eq!(
        out.iter().flat_map(|(_, p)| p.clone()).collect::<Vec<_>>(),
        payload
    );
    assert_eq!((s.snd_nxt, s.snd_max), (lseq(4000), lseq(4000)));
    assert_eq!(s.rto_at, Some(at(300)));
}

#[test]
fn established_nagle_holds_the_tail_of_a_large_write() {
    // RFC 896: the sub-MSS tail of a write waits for the ACK of the full
    // segments before it.
    let mut s = socket_established();
    s.send(&data(4000)).unwrap();
    assert_eq!(
        shape(&recv(&mut s, at(100))),
        [
            (lseq(0), MSS, TcpControl::None),
            (lseq(MSS), MSS, TcpControl::None)
        ]
    );
    send(&mut s, at(150), from_peer(0, 2 * MSS), b"");
    assert_eq!(
        shape(&recv(&mut s, at(150))),
        [(lseq(2 * MSS), 1080, TcpControl::Psh)]
    );
}

#[test]
fn established_send_is_limited_by_the_peer_window() {
    // RFC 9293 §3.8.6: never send beyond SND.UNA + SND.WND.
    let mut s = socket_established_with(cfg_reno(), &peer_syn());
    let update = TcpRepr {
        window_len: (2 * MSS) as u16,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), update, b"");
    assert_eq!(s.snd_wnd, 2 * MSS);
    s.send(&data(10_000)).unwrap();
    assert_eq!(
        shape(&recv(&mut s, at(100))),
        [
            (lseq(0), MSS, TcpControl::None),
            (lseq(MSS), MSS, TcpControl::None)
        ]
    );
    recv_nothing(&mut s, at(101));
    // The window slides with the ACK.
    let ack = TcpRepr {
        window_len: (2 * MSS) as u16,
        ..from_peer(0, MSS)
    };
    send(&mut s, at(150), ack, b"");
    assert_eq!(
        shape(&recv(&mut s, at(150))),
        [(lseq(2 * MSS), MSS, TcpControl::None)]
    );
    assert_eq!(s.snd_nxt, lseq(3 * MSS), "SND.UNA + SND.WND");
    recv_nothing(&mut s, at(151));
}

#[test]
fn established_send_is_limited_by_cwnd() {
    // RFC 5681 §3.1: at most cwnd in flight; RFC 6928: IW = 10 segments;
    // slow start grows cwnd by the bytes acknowledged (at most 2 MSS per
    // ACK, RFC 3465).
    let mut s = socket_established();
    assert_eq!(s.cwnd(), 10 * MSS);
    s.send(&data(30_000)).unwrap();
    let out = recv(&mut s, at(100));
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|(_, p)| p.len() == MSS));
    assert_eq!(s.snd_nxt, lseq(10 * MSS));
    send(&mut s, at(150), from_peer(0, 2 * MSS), b"");
    assert_eq!(s.cwnd(), 12 * MSS);
    let out = recv(&mut s, at(150));
    assert_eq!(out.len(), 4, "12 MSS of window, 8 in flight");
    assert_eq!(out[0].0.seq_number, lseq(10 * MSS));
    assert_eq!(s.snd_nxt, lseq(14 * MSS));
}

#[test]
fn established_zero_window_arms_persist_and_probes() {
    // RFC 9293 §3.8.6.1 / RFC 1122 §4.2.2.17: with a zero window and data
    // to send, probe periodically with exponential back-off; the probe is
    // Linux's <SEQ=SND.UNA-1> with no data.
    let mut s = socket_established();
    let closed = TcpRepr {
        window_len: 0,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), closed, b"");
    assert_eq!(s.snd_wnd, 0);
    s.send(b"hello").unwrap();
    recv_nothing(&mut s, at(100));
    assert_eq!(s.persist_at, Some(at(300)));
    assert_eq!(s.rto_at, None);
    s.on_timers(at(299));
    recv_nothing(&mut s, at(299));
    s.on_timers(at(300));
    let probe = TcpRepr {
        seq_number: lseq(0) - 1,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(300)), [seg(probe, b"")]);
    assert_eq!(s.stats.window_probes, 1);
    assert_eq!(s.persist_at, Some(at(700)), "backed off");
    // The peer answers: still closed.
    send(&mut s, at(310), closed, b"");
    recv_nothing(&mut s, at(310));
    s.on_timers(at(700));
    assert_eq!(recv(&mut s, at(700)), [seg(probe, b"")]);
    assert_eq!(s.persist_at, Some(at(1500)));
    assert_eq!(s.stats.window_probes, 2);
}

#[test]
fn established_window_reopening_cancels_persist_and_sends() {
    let mut s = socket_established();
    let closed = TcpRepr {
        window_len: 0,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), closed, b"");
    s.send(b"hello").unwrap();
    recv_nothing(&mut s, at(100));
    assert_eq!(s.persist_at, Some(at(300)));
    let open = TcpRepr {
        window_len: 1000,
        ..from_peer(0, 0)
    };
    send(&mut s, at(150), open, b"");
    assert_eq!(s.persist_at, None);
    let data_seg = TcpRepr {
        control: TcpControl::Psh,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(150)), [seg(data_seg, b"hello")]);
    assert_eq!(s.persist_at, None);
    assert_eq!(s.rto_at, Some(at(350)));
}

#[test]
fn established_sws_override_timer_sends_held_data() {
    // RFC 9293 §3.8.6.2.1: a sender holding back a small segment (SWS
    // avoidance) must send it when the override timeout (0.1-1 s, "may be
    // combined with the timer used to probe zero windows") expires.
    // Linux arms its probe timer whenever data waits with nothing in
    // flight. Here the peer's window shrinks to 1000 bytes with 5000
    // queued: without a timer, nothing would ever be sent.
    let mut s = socket_established();
    let small = TcpRepr {
        window_len: 1000,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), small, b"");
    s.send(&data(5000)).unwrap();
    recv_nothing(&mut s, at(100));
    let due = s.poll_at().expect("a timer must be armed");
    assert!(due <= at(100) + Duration::from_secs(1), "due {due}");
    s.on_timers(due);
    assert_eq!(shape(&recv(&mut s, due)), [(lseq(0), 1000, TcpControl::None)]);
}

// ---- ESTABLISHED: retransmission (RFC 6298) ----

#[test]
fn established_rto_retransmits_from_snd_una_and_backs_off() {
    // RFC 6298 §5.4-5.6: on expiry retransmit the earliest unacknowledged
    // segment, double the RTO, restart the timer.
    let mut s = socket_established();
    assert_eq!(s.rto(), ms(200));
    s.send(&data(1000)).unwrap();
    let out = recv(&mut s, at(100));
    assert_eq!(out.len(), 1);
    assert_eq!(s.rto_at, Some(at(300)));
    assert_eq!(s.on_timers(at(299)), Event::None);
    recv_nothing(&mut s, at(299));
    assert_eq!(s.on_timers(at(300)), Event::None);
    assert_eq!(recv(&mut s, at(300)), out);
    assert_eq!(s.rto(), ms(400));
    assert_eq!(s.rto_at, Some(at(700)));
    assert_eq!((s.stats.timeouts, s.stats.retransmits), (1, 1));
    // RFC 5681 §3.1: after a timeout cwnd is the loss window, 1 MSS.
    assert_eq!(s.cwnd(), MSS);
    assert_eq!(s.on_timers(at(700)), Event::None);
    assert_eq!(recv(&mut s, at(700)), out);
    assert_eq!(s.rto(), ms(800));
    assert_eq!(s.rto_at, Some(at(1500)));
    assert_eq!((s.stats.timeouts, s.stats.retransmits), (2, 2));
    // The ACK stops the timer.
    send(&mut s, at(750), from_peer(0, 1000), b"");
    assert_eq!(s.rto_at, None);
    assert_eq!(s.retries, 0);
}

#[test]
fn established_rto_goes_back_n_from_snd_una() {
    // RFC 5681 §3.1 / RFC 6298 §5.4: after a timeout, resend from SND.UNA,
    // one segment at a time (cwnd = 1 MSS).
    let mut s = socket_established();
    s.send(&data(3 * MSS)).unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 3);
    send(&mut s, at(150), from_peer(0, MSS), b"");
    assert_eq!(s.rto_at, Some(at(350)));
    s.on_timers(at(350));
    assert_eq!(
        shape(&recv(&mut s, at(350))),
        [(lseq(MSS), MSS, TcpControl::None)]
    );
    assert_eq!(s.snd_max, lseq(3 * MSS));
}

#[test]
fn established_max_retries_times_out() {
    // RFC 9293 §3.8.3 (R2) / Linux tcp_retries2: after `max_retries`
    // retransmissions the connection fails with ETIMEDOUT.
    let mut s = socket_established_with(
        TcpConfig {
            max_retries: 2,
            ..cfg()
        },
        &peer_syn(),
    );
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    assert_eq!(s.on_timers(at(300)), Event::None);
    assert_eq!(recv(&mut s, at(300)).len(), 1);
    assert_eq!(s.on_timers(at(700)), Event::None);
    assert_eq!(recv(&mut s, at(700)).len(), 1);
    assert_eq!(s.rto_at, Some(at(1500)));
    assert_eq!(s.on_timers(at(1500)), Event::Closed);
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(1500));
    assert_eq!(s.poll_at(), None);
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::ETIMEDOUT));
    assert_eq!(s.send(b"x"), Err(Errno::EPIPE));
}

#[test]
fn established_user_timeout_times_out() {
    // RFC 5482 / TCP_USER_TIMEOUT: data unacknowledged for longer than
    // the user timeout fails the connection at the next expiry.
    let mut s = socket_established_with(
        TcpConfig {
            user_timeout: Some(ms(500)),
            ..cfg()
        },
        &peer_syn(),
    );
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    assert_eq!(s.on_timers(at(300)), Event::None);
    assert_eq!(recv(&mut s, at(300)).len(), 1);
    assert_eq!(s.on_timers(at(700)), Event::Closed);
    assert_eq!(s.take_error(), Some(Errno::ETIMEDOUT));
}

#[test]
fn established_karn_no_rtt_sample_from_a_retransmitted_segment() {
    // RFC 6298 §3 (Karn): no sample from a retransmitted segment; the
    // backed-off RTO is kept until a valid sample (§5.7).
    let mut s = socket_established();
    assert_eq!((s.srtt(), s.rtt.rttvar()), (Some(ms(10)), ms(5)));
    s.send(&data(1000)).unwrap();
    recv(&mut s, at(100));
    s.on_timers(at(300));
    assert_eq!(recv(&mut s, at(300)).len(), 1);
    send(&mut s, at(350), from_peer(0, 1000), b"");
    assert_eq!(s.snd_una, lseq(1000));
    assert_eq!((s.srtt(), s.rtt.rttvar()), (Some(ms(10)), ms(5)), "no sample");
    assert_eq!(s.rto(), ms(400), "still backed off");
    // New data, not retransmitted: sampled (R = 50 ms).
    s.send(&data(100)).unwrap();
    assert_eq!(recv(&mut s, at(400)).len(), 1);
    send(&mut s, at(450), from_peer(0, 1100), b"");
    assert_eq!(s.srtt(), Some(ms(15)));
    assert_eq!(s.rtt.rttvar(), Duration::from_micros(13_750));
    assert_eq!(s.rto(), ms(200));
}

// ---- ESTABLISHED: fast retransmit and recovery (RFC 5681, 6582, 6675) ----

#[test]
fn established_three_dup_acks_trigger_fast_retransmit() {
    // RFC 5681 §3.2: on the third duplicate ACK retransmit the segment at
    // SND.UNA, ssthresh = max(FlightSize / 2, 2 MSS), cwnd = ssthresh +
    // 3 MSS; RFC 6582: recover = highest sequence sent.
    let (mut s, payload) = socket_in_newreno_recovery();
    assert_eq!(s.stats.dup_acks, 3);
    assert_eq!(s.recovery, Some(lseq(5 * MSS)));
    assert_eq!(s.cc.ssthresh(), 5 * MSS / 2);
    assert_eq!(s.cwnd(), 5 * MSS / 2 + 3 * MSS);
    assert_eq!(recv(&mut s, at(112)), [seg(to_peer(0, 0, WIN), &payload[..MSS])]);
    assert_eq!((s.stats.fast_retransmits, s.stats.retransmits), (1, 1));
    assert_eq!(s.snd_nxt, lseq(5 * MSS), "SND.NXT is not rewound");
    // RFC 5681 §3.2 step 4: each further duplicate inflates cwnd by 1 MSS.
    send(&mut s, at(113), from_peer(0, 0), b"");
    assert_eq!(s.cwnd(), 5 * MSS / 2 + 4 * MSS);
    recv_nothing(&mut s, at(113));
}

#[test]
fn established_newreno_partial_ack_retransmits_the_next_segment() {
    // RFC 6582 §3.2 step 5: a partial ACK retransmits the first
    // unacknowledged segment, deflates cwnd by the amount acknowledged and
    // adds back 1 MSS; recovery goes on.
    let (mut s, payload) = socket_in_newreno_recovery();
    assert_eq!(recv(&mut s, at(112)).len(), 1);
    let cwnd = s.cwnd();
    send(&mut s, at(120), from_peer(0, MSS), b"");
    assert_eq!(s.recovery, Some(lseq(5 * MSS)));
    assert_eq!(s.cwnd(), cwnd);
    assert_eq!(
        recv(&mut s, at(120)),
        [seg(to_peer(MSS, 0, WIN), &payload[MSS..2 * MSS])]
    );
    assert_eq!(s.stats.fast_retransmits, 2);
}

#[test]
fn established_full_ack_ends_recovery() {
    // RFC 6582 §3.2 step 6: an ACK covering `recover` ends fast recovery;
    // cwnd = ssthresh.
    let (mut s, _) = socket_in_newreno_recovery();
    assert_eq!(recv(&mut s, at(112)).len(), 1);
    send(&mut s, at(130), from_peer(0, 5 * MSS), b"");
    assert_eq!(s.recovery, None);
    assert_eq!(s.cwnd(), 5 * MSS / 2);
    assert_eq!(s.rto_at, None);
    recv_nothing(&mut s, at(130));
}

#[test]
fn established_sack_recovery_retransmits_the_holes() {
    // RFC 6675: segments 0 and 2 of 6 are lost. The third duplicate ACK
    // starts recovery (cwnd = ssthresh = FlightSize / 2, no inflation) and
    // retransmits segment 0; once SACKed data above segment 2 exceeds
    // (DupThresh - 1) * MSS, IsLost(2) holds and NextSeg sends it, within
    // cwnd - pipe. SACKed segments are never resent.
    let mut s = socket_established_sack_with(cfg_reno());
    let payload = data(6 * MSS);
    s.send(&payload).unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 6);
    let seg_at = |i: usize| lseq(i * MSS);
    let dup = |blocks: [Option<(u32, u32)>; 3]| TcpRepr {
        sack_ranges: blocks,
        ..from_peer(0, 0)
    };
    send(
        &mut s,
        at(110),
        dup([sack(seg_at(1), seg_at(2)), None, None]),
        b"",
    );
    send(
        &mut s,
        at(111),
        dup([sack(seg_at(3), seg_at(4)), sack(seg_at(1), seg_at(2)), None]),
        b"",
    );
    recv_nothing(&mut s, at(111));
    send(
        &mut s,
        at(112),
        dup([sack(seg_at(3), seg_at(5)), sack(seg_at(1), seg_at(2)), None]),
        b"",
    );
    assert_eq!(s.recovery, Some(seg_at(6)));
    assert_eq!(s.cwnd(), 3 * MSS);
    assert_eq!(recv(&mut s, at(112)), [seg(to_peer(0, 0, WIN), &payload[..MSS])]);
    send(
        &mut s,
        at(113),
        dup([sack(seg_at(3), seg_at(6)), sack(seg_at(1), seg_at(2)), None]),
        b"",
    );
    assert_eq!(
        recv(&mut s, at(113)),
        [seg(to_peer(2 * MSS, 0, WIN), &payload[2 * MSS..3 * MSS])]
    );
    assert_eq!((s.stats.fast_retransmits, s.stats.retransmits), (1, 2));
    // The ACK of everything ends recovery.
    send(&mut s, at(120), from_peer(0, 6 * MSS), b"");
    assert_eq!(s.recovery, None);
    assert_eq!(s.send_queue(), 0);
    recv_nothing(&mut s, at(120));
}

// ---- ESTABLISHED: keepalive (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6) ----

#[test]
fn established_keepalive_probes_after_idle() {
    let mut s = socket_established_with(cfg_keepalive(), &peer_syn());
    assert_eq!(s.keepalive_at, Some(at(10_010)));
    assert_eq!(s.on_timers(at(10_009)), Event::None);
    recv_nothing(&mut s, at(10_009));
    assert_eq!(s.on_timers(at(10_010)), Event::None);
    assert_eq!(recv(&mut s, at(10_010)), [keepalive_probe()]);
    assert_eq!(s.keepalive_at, Some(at(11_010)));
}

#[test]
fn established_keepalive_answer_rearms_the_idle_timer() {
    let mut s = socket_established_with(cfg_keepalive(), &peer_syn());
    s.on_timers(at(10_010));
    assert_eq!(recv(&mut s, at(10_010)), [keepalive_probe()]);
    send(&mut s, at(10_020), from_peer(0, 0), b"");
    assert_eq!(s.keepalive_at, Some(at(20_020)));
    assert_eq!(s.keepalive_sent, 0);
    assert_eq!(s.state, State::Established);
}

#[test]
fn established_keepalive_unanswered_times_out() {
    // Linux: after `count` unanswered probes the connection fails with
    // ETIMEDOUT.
    let mut s = socket_established_with(cfg_keepalive(), &peer_syn());
    for t in [10_010, 11_010, 12_010] {
        assert_eq!(s.on_timers(at(t)), Event::None);
        assert_eq!(recv(&mut s, at(t)), [keepalive_probe()]);
    }
    assert_eq!(s.on_timers(at(13_010)), Event::Closed);
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(13_010));
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::ETIMEDOUT));
}

#[test]
fn established_no_keepalive_unless_configured() {
    let s = socket_established();
    assert_eq!(s.keepalive_at, None);
    assert_eq!(s.poll_at(), None);
}

// ---- ESTABLISHED: closing ----

#[test]
fn established_shutdown_sends_fin_after_the_queued_data() {
    // RFC 9293 §3.10.4: CLOSE queues a FIN after the data; -> FIN-WAIT-1.
    let mut s = socket_established();
    s.send(&data(3000)).unwrap();
    s.shutdown_write().unwrap();
    assert_eq!(s.state, State::Established, "until the FIN is sent");
    assert_eq!(
        shape(&recv(&mut s, at(100))),
        [
            (lseq(0), MSS, TcpControl::None),
            (lseq(MSS), MSS, TcpControl::None),
            (lseq(2 * MSS), 3000 - 2 * MSS, TcpControl::Fin),
        ]
    );
    assert_eq!(s.state, State::FinWait1);
    assert_eq!(s.fin_sent, Some(lseq(3000)));
    assert_eq!(s.snd_nxt, lseq(3001));
    // Data and FIN acknowledged.
    send(&mut s, at(150), from_peer(0, 3001), b"");
    assert_eq!(s.state, State::FinWait2);
    assert_eq!(s.send_queue(), 0);
}

#[test]
fn established_close_sends_fin() {
    // close() with nothing unread is a graceful close.
    let mut s = socket_established();
    assert!(!s.close(), "the stack finishes the connection");
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(fin, b"")]);
    assert_eq!(s.state, State::FinWait1);
}

#[test]
fn established_close_with_unread_data_resets() {
    // RFC 2525 §2.17 / Linux tcp_close: closing with unread data sends a
    // RST instead of a FIN.
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), b"abc");
    assert!(!s.close());
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..to_peer(0, 3, 0)
    };
    assert_eq!(dispatch(&mut s, at(101)), (Event::Closed, vec![seg(rst, b"")]));
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(102));
}

#[test]
fn established_close_with_linger_zero_resets() {
    // SO_LINGER {on, 0}: close() aborts with a RST.
    let mut s = socket_established_with(
        TcpConfig {
            linger_zero: true,
            ..cfg()
        },
        &peer_syn(),
    );
    assert!(!s.close());
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..to_peer(0, 0, 0)
    };
    assert_eq!(dispatch(&mut s, at(100)), (Event::Closed, vec![seg(rst, b"")]));
    assert_eq!(s.state, State::Closed);
}

#[test]
fn established_send_after_shutdown_is_epipe() {
    let mut s = socket_established();
    s.shutdown_write().unwrap();
    assert_eq!(s.send(b"late"), Err(Errno::EPIPE));
}

#[test]
fn established_recv_without_data_is_eagain() {
    let mut s = socket_established();
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::EAGAIN));
}

#[test]
fn established_recv_after_reset_error_is_end_of_stream() {
    // Linux tcp_reset -> tcp_done sets sk_shutdown = SHUTDOWN_MASK: the
    // first recv reports ECONNRESET (sk_err), later ones return 0
    // (RCV_SHUTDOWN), not ENOTCONN (which is for never-connected sockets).
    // readiness() agrees: it reports the socket readable and read-closed.
    let mut s = socket_established();
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), rst, b"");
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::ECONNRESET));
    let r = s.readiness();
    assert!(r.readable && r.read_closed);
    assert_eq!(s.recv(&mut [0; 8]), Ok(0));
}

// ---- FIN-WAIT-1 ----

#[test]
fn fin_wait_1_ack_of_fin_enters_fin_wait_2() {
    // RFC 9293 §3.10.7.4 (fifth, FIN-WAIT-1): our FIN acknowledged ->
    // FIN-WAIT-2.
    let mut s = socket_fin_wait_1();
    assert_eq!(
        send(&mut s, at(100), from_peer(0, 1), b""),
        Input::Done(Event::None)
    );
    assert_eq!(s.state, State::FinWait2);
    assert_eq!(s.rto_at, None);
    assert_eq!(s.finwait2_at, None, "the program still owns the socket");
    recv_nothing(&mut s, at(100));
}

#[test]
fn fin_wait_1_fin_is_retransmitted() {
    // RFC 9293 §3.8.1: the FIN is retransmitted like data.
    let mut s = socket_fin_wait_1();
    assert_eq!(s.rto_at, Some(at(220)));
    s.on_timers(at(220));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(220)), [seg(fin, b"")]);
    assert_eq!(s.state, State::FinWait1);
}

#[test]
fn fin_wait_1_peer_fin_enters_closing() {
    // RFC 9293 §3.10.7.4 (eighth, FIN-WAIT-1): FIN without the ACK of
    // ours -> CLOSING (simultaneous close).
    let mut s = socket_fin_wait_1();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(100), fin, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::Closing);
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(1, 1, WIN), b"")]);
}

#[test]
fn fin_wait_1_fin_acking_ours_enters_time_wait() {
    // RFC 9293 §3.10.7.4 (eighth, FIN-WAIT-1): "If our FIN has been ACKed
    // ... enter the TIME-WAIT state, start the time-wait timer".
    let mut s = socket_fin_wait_1();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 1)
    };
    assert_eq!(send(&mut s, at(100), fin, b""), Input::Done(Event::TimeWait));
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(s.timewait_at, Some(at(60_100)));
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(1, 1, WIN), b"")]);
}

#[test]
fn fin_wait_1_still_receives_data() {
    // RFC 9293 §3.10.7.4 (seventh): text is processed in FIN-WAIT-1.
    let mut s = socket_fin_wait_1();
    send(&mut s, at(100), from_peer(0, 0), b"late");
    assert_eq!(read_all(&mut s), b"late");
}

// ---- FIN-WAIT-2 ----

#[test]
fn fin_wait_2_peer_fin_enters_time_wait() {
    // RFC 9293 §3.10.7.4 (eighth, FIN-WAIT-2): FIN -> TIME-WAIT, ACK it,
    // start the 2 MSL timer.
    let mut s = socket_fin_wait_2();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 1)
    };
    assert_eq!(send(&mut s, at(100), fin, b""), Input::Done(Event::TimeWait));
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(s.timewait_at, Some(at(60_100)));
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(1, 1, WIN), b"")]);
    assert_eq!(s.recv(&mut [0; 8]), Ok(0));
}

#[test]
fn fin_wait_2_half_close_still_receives_data() {
    // RFC 9293 §3.6: after our FIN the peer may keep sending (half-close).
    let mut s = socket_fin_wait_2();
    send(&mut s, at(100), from_peer(0, 1), b"more data");
    assert!(s.readiness().readable);
    assert_eq!(read_all(&mut s), b"more data");
    s.on_timers(at(140));
    assert_eq!(recv(&mut s, at(140)), [seg(to_peer(1, 9, WIN), b"")]);
}

#[test]
fn fin_wait_2_orphan_times_out() {
    // Linux tcp_fin_timeout: an orphaned connection leaves FIN-WAIT-2
    // after `fin_wait2`.
    let mut s = socket_established();
    assert!(!s.close());
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    send(&mut s, at(150), from_peer(0, 1), b"");
    assert_eq!(s.state, State::FinWait2);
    assert_eq!(s.finwait2_at, Some(at(60_150)));
    assert_eq!(s.on_timers(at(60_149)), Event::None);
    assert_eq!(s.on_timers(at(60_150)), Event::Closed);
    assert_eq!(s.state, State::Closed);
}

// ---- CLOSING ----

#[test]
fn closing_ack_of_fin_enters_time_wait() {
    // RFC 9293 §3.10.7.4 (fifth, CLOSING): our FIN acknowledged ->
    // TIME-WAIT.
    let mut s = socket_closing();
    assert_eq!(
        send(&mut s, at(100), from_peer(1, 1), b""),
        Input::Done(Event::TimeWait)
    );
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(s.timewait_at, Some(at(60_100)));
    recv_nothing(&mut s, at(100));
}

// ---- TIME-WAIT ----

#[test]
fn time_wait_retransmitted_fin_is_acked_and_restarts_the_timer() {
    // RFC 9293 §3.10.7.4 (eighth, TIME-WAIT): a retransmitted FIN is
    // acknowledged and the 2 MSL timeout restarted.
    let mut s = socket_time_wait();
    assert_eq!(s.timewait_at, Some(at(60_040)));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 1)
    };
    assert_eq!(send(&mut s, at(5_000), fin, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(recv(&mut s, at(5_000)), [seg(to_peer(1, 1, WIN), b"")]);
    assert_eq!(s.timewait_at, Some(at(65_000)));
}

#[test]
fn time_wait_expires_after_time_wait() {
    let mut s = socket_time_wait();
    assert_eq!(s.poll_at(), Some(at(60_040)));
    assert_eq!(s.on_timers(at(60_039)), Event::None);
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(s.on_timers(at(60_040)), Event::Closed);
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(60_040));
}

// ---- CLOSE-WAIT ----

#[test]
fn close_wait_recv_at_eof_is_zero() {
    let mut s = socket_close_wait();
    assert_eq!(s.recv(&mut [0; 8]), Ok(0));
    assert_eq!(s.recv(&mut [0; 8]), Ok(0));
}

#[test]
fn close_wait_is_readable_and_read_closed() {
    // Linux tcp_poll: RCV_SHUTDOWN -> EPOLLIN | EPOLLRDHUP.
    let s = socket_close_wait();
    let r = s.readiness();
    assert!(r.readable && r.read_closed && r.writable);
    assert!(!r.hangup);
}

#[test]
fn close_wait_both_sides_shut_is_hangup() {
    // Linux tcp_poll: sk_shutdown == SHUTDOWN_MASK -> EPOLLHUP.
    let mut s = socket_close_wait();
    s.shutdown_write().unwrap();
    assert!(s.readiness().hangup);
}

#[test]
fn close_wait_can_still_send() {
    // RFC 9293 §3.10.2: SEND in CLOSE-WAIT is allowed.
    let mut s = socket_close_wait();
    assert_eq!(s.send(b"reply"), Ok(5));
    let reply = TcpRepr {
        control: TcpControl::Psh,
        ..to_peer(0, 1, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(reply, b"reply")]);
}

#[test]
fn close_wait_close_sends_fin_and_enters_last_ack() {
    // RFC 9293 §3.10.4 (CLOSE-WAIT): send FIN, -> LAST-ACK.
    let mut s = socket_close_wait();
    assert!(!s.close());
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 1, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(fin, b"")]);
    assert_eq!(s.state, State::LastAck);
}

// ---- LAST-ACK ----

#[test]
fn last_ack_ack_of_fin_closes() {
    // RFC 9293 §3.10.7.4 (fifth, LAST-ACK): our FIN acknowledged -> CLOSED.
    let mut s = socket_last_ack();
    assert_eq!(
        send(&mut s, at(100), from_peer(1, 1), b""),
        Input::Done(Event::Closed)
    );
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(100));
}

#[test]
fn last_ack_fin_is_retransmitted() {
    let mut s = socket_last_ack();
    assert_eq!(s.rto_at, Some(at(230)));
    s.on_timers(at(230));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 1, WIN)
    };
    assert_eq!(recv(&mut s, at(230)), [seg(fin, b"")]);
}

// ---- ESTABLISHED: readiness and wakers ----

#[test]
fn established_is_writable_not_readable() {
    let s = socket_established();
    let r = s.readiness();
    assert!(r.writable);
    assert!(!r.readable && !r.read_closed && !r.hangup && !r.error);
}

#[test]
fn established_not_writable_when_the_send_buffer_is_full() {
    // Linux sk_stream_is_writeable: free space >= half the queued bytes.
    let mut s = socket_established();
    assert_eq!(s.send(&data(SND_BUF + 10)), Ok(SND_BUF));
    assert!(!s.readiness().writable);
    assert_eq!(s.send(b"x"), Err(Errno::EAGAIN));
}

#[test]
fn established_tick_increments_on_every_arrival() {
    // Edge-triggered waiters must hear of every arrival, even when the
    // socket was readable already (Linux wakes on each skb).
    let mut s = socket_established();
    let t0 = s.tick();
    send(&mut s, at(100), from_peer(0, 0), b"one");
    let t1 = s.tick();
    assert!(s.readiness().readable);
    assert!(t1 > t0);
    send(&mut s, at(101), from_peer(3, 0), b"two");
    let t2 = s.tick();
    assert!(t2 > t1, "already readable, still a new tick");
    assert_eq!(s.readiness().tick, t2);
}

#[test]
fn established_recv_waker_is_woken_on_data() {
    let mut s = socket_established();
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    s.register_recv_waker(&waker);
    send(&mut s, at(100), from_peer(0, 0), b"x");
    assert_eq!(counter.count(), 1);
    // Woken once per registration.
    send(&mut s, at(101), from_peer(1, 0), b"y");
    assert_eq!(counter.count(), 1);
    s.register_recv_waker(&waker);
    send(&mut s, at(102), from_peer(2, 0), b"z");
    assert_eq!(counter.count(), 2);
}

#[test]
fn established_send_waker_is_woken_when_space_is_freed() {
    let mut s = socket_established();
    s.send(&data(1000)).unwrap();
    recv(&mut s, at(100));
    let counter = Arc::new(CountingWaker::default());
    s.register_send_waker(&Waker::from(counter.clone()));
    send(&mut s, at(150), from_peer(0, 1000), b"");
    assert_eq!(counter.count(), 1);
}

#[test]
fn established_reset_sets_the_error_flag() {
    // Linux tcp_poll: sk_err -> EPOLLERR; a reset connection is also
    // readable, read-closed and hung up.
    let mut s = socket_established();
    let counter = Arc::new(CountingWaker::default());
    s.register_recv_waker(&Waker::from(counter.clone()));
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), rst, b"");
    let r = s.readiness();
    assert!(r.error && r.hangup && r.readable && r.read_closed);
    assert_eq!(counter.count(), 1);
    assert_eq!(s.take_error(), Some(Errno::ECONNRESET));
    assert!(!s.readiness().error);
}
