//! `cargo run --release -p accel-bench --bin stack`: the TCP/IP stack's own
//! cost, one `name value unit` line each, all measured in this run.
//!
//! Two stacks (A at 198.18.0.1, B at 198.18.0.2) are joined by the
//! in-memory pair device ([`accel_stack::phy::pair`]: frames move between
//! the ends by pointer, buffers are recycled, nothing is copied or
//! checksummed by the "device") and driven from ONE thread: an iteration of
//! the driving loop reads the real clock (`std::time::Instant`, converted
//! to the stacks' nanosecond [`accel_stack::Instant`], so every timer runs
//! in real time), polls one stack, then the other, then acts as the
//! application. Everything measured is therefore protocol work on one core:
//! both ends' Ethernet/IPv4/TCP processing, software checksums both ways
//! (the default [`accel_stack::phy::Capabilities`]: no offload, MTU 1500,
//! MSS 1460, no TSO), socket-buffer copies in and out, timers, tables, plus
//! the clock reads. No device or system-call cost is included.
//!
//! - `rr_ns`: one 64-byte request/response round trip on one established
//!   connection, `TCP_NODELAY` on both sides: A sends 64 B, B receives them
//!   and sends them back, A receives them (and checks they are the 64 B it
//!   sent, round number included). Nanoseconds per round trip, best of 5
//!   runs of at least 200 ms each after warm-up (as `ns_per_iter` does).
//! - `rr_segments`: TCP segments sent by both ends per round trip, over all
//!   the measured rounds (2.00: every ACK rides on data, no delayed-ACK
//!   timer fires; a 40 ms delayed-ACK or Nagle hold would show here).
//! - `bulk_gbps`: one stream A→B, payload bytes delivered to B's
//!   application (returned by `recv`) per second, in Gbit/s (10^9 bit/s),
//!   with 1 MiB send and receive buffers (Nagle on, the default). Measured
//!   after 64 MiB of warm-up (slow start over), until both at least 1 GiB
//!   was delivered and at least 2 s have passed. The application writes as
//!   much as the send buffer takes each iteration and reads in 256 KiB
//!   calls; it checks the first and last byte of every read against the
//!   stream's pattern (byte `i` is `i mod 251`) and every byte of one read
//!   in 16.
//! - `bulk_segments_per_ack`: segments A sent per segment B sent (ACKs
//!   and window updates) during the measurement. The stack decides on ACKs
//!   once per poll, after the whole receive batch, so B acknowledges each
//!   poll's batch (up to 64 segments from A) with one ACK.
//! - `conn_per_s`: connections completed per second, one at a time: A
//!   connects (ephemeral port) to a listener on B, sends 64 B, B accepts,
//!   receives them and sends 64 B back, A receives them and closes (the
//!   active close), B reads end of stream and closes. A connection is
//!   complete when neither side holds a socket for it any more: A's has
//!   become a TIME-WAIT table entry, B's is freed after LAST-ACK (which
//!   takes no timer: A acknowledges B's FIN at once). Best of 5 runs of at
//!   least 200 ms, after a warm-up of `time_wait_max` + 1,000 connections
//!   that fills A's TIME-WAIT table. TIME-WAIT keeps its default 60 s and
//!   the table its default bound of 16,384 entries (Linux's
//!   `tcp_max_tw_buckets` behaviour: the oldest entry is evicted), so in the
//!   steady state measured every connection creates one TIME-WAIT entry and
//!   evicts one, as on any host actively closing over 273 connections a
//!   second; at most 16,384 of the 28,232 ephemeral ports are held in
//!   TIME-WAIT, so the port space is never exhausted.
//! - `conn_frames`: frames both ends sent per connection, over the measured
//!   runs.
//! - `conn_time_wait`: entries in A's TIME-WAIT table at the end (the table
//!   size every measured connection worked against).
//!
//! Guards, so a broken stack cannot produce a fast-looking number: the
//! benchmark panics (and, `panic = "abort"`, exits non-zero) when any
//! socket measured counts a retransmission or a retransmission timeout,
//! when the pair device dropped a frame, when bytes arrive wrong, or when
//! any single wait makes no progress for 2 s (a stall); the panic message
//! names the wait and dumps both sockets. One check is specific: when A's
//! socket has gone to TIME-WAIT while B is still in LAST-ACK and nothing is
//! on its way to B, A never acknowledged B's FIN (B would finish only by
//! retransmitting its FIN after an RTO); that fails at once.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant as StdInstant};

use accel_bench::{ns_per_iter, report};
use accel_stack::iface::{IfaceConfig, Stack, TcpHandle};
use accel_stack::phy::pair::{pair, PairDevice};
use accel_stack::phy::{Capabilities, Device};
use accel_stack::tcp::{State, TcpConfig};
use accel_stack::wire::EthernetAddress;
use accel_stack::{Errno, Instant};

const A_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Longest any wait may go without progress before it counts as a stall.
const STALL: Duration = Duration::from_secs(2);

/// Frames each direction of the pair may queue (far more than a 1 MiB
/// window's 720 segments: a full queue would be a drop, which is checked).
const QUEUE_DEPTH: usize = 4096;

/// Which stack a poll pair starts with: the one that has just been given
/// something to send, so that the other receives it in the same iteration.
#[derive(Clone, Copy, Debug)]
enum First {
    A,
    B,
}

/// Two stacks over the pair, on the real clock.
struct Net {
    a: Stack<PairDevice>,
    b: Stack<PairDevice>,
    origin: StdInstant,
    /// The connection under test (A's handle, B's handle), dumped on a stall.
    watch: (Option<TcpHandle>, Option<TcpHandle>),
}

impl Net {
    fn new(tcp: TcpConfig) -> Net {
        let (da, db) = pair(Capabilities::default(), QUEUE_DEPTH);
        let mk = |ip: Ipv4Addr, last: u8, dev: PairDevice| {
            let mut cfg = IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, last]), ip, 24);
            cfg.secret = [last.wrapping_mul(0x3b); 16];
            Stack::new(cfg, tcp, dev)
        };
        Net {
            a: mk(A_IP, 1, da),
            b: mk(B_IP, 2, db),
            origin: StdInstant::now(),
            watch: (None, None),
        }
    }

    /// The real clock as the stacks' time (starting at 1 s, never zero).
    fn now(&self) -> Instant {
        Instant::from_nanos(1_000_000_000 + self.origin.elapsed().as_nanos() as u64)
    }

    /// Reads the clock once and polls both stacks, `first` first.
    fn poll(&mut self, first: First) -> Instant {
        let now = self.now();
        match first {
            First::A => {
                self.a.poll(now);
                self.b.poll(now);
            }
            First::B => {
                self.b.poll(now);
                self.a.poll(now);
            }
        }
        now
    }

    /// Polls (`first`, then the other) until `done` holds; panics when it
    /// has not held after [`STALL`].
    fn pump(&mut self, first: First, what: &str, mut done: impl FnMut(&mut Net) -> bool) {
        let deadline = self.now() + STALL;
        loop {
            let now = self.poll(first);
            if done(self) {
                return;
            }
            if now > deadline {
                self.fail(&format!("stalled {STALL:?} waiting for {what}"));
            }
        }
    }

    /// Panics with `why` and the state of the watched connection.
    fn fail(&self, why: &str) -> ! {
        let (ca, cb) = self.watch;
        panic!(
            "{why} at {}\nA socket: {:?}\nA stats: {:?}\nB socket: {:?}\nB stats: {:?}\n\
             A iface: {:?}\nB iface: {:?}\nA device: {:?}\nB device: {:?}",
            self.now(),
            ca.and_then(|h| self.a.iface.tcp.socket(h)),
            ca.and_then(|h| self.a.iface.tcp.socket(h)).map(|s| s.stats()),
            cb.and_then(|h| self.b.iface.tcp.socket(h)),
            cb.and_then(|h| self.b.iface.tcp.socket(h)).map(|s| s.stats()),
            self.a.iface.stats(),
            self.b.iface.stats(),
            self.a.device.stats(),
            self.b.device.stats(),
        )
    }

    /// Panics if either watched socket (while it exists) retransmitted or
    /// timed out, or if the device dropped a frame.
    fn check_clean(&self, what: &str) {
        let (ca, cb) = self.watch;
        let a = ca.and_then(|h| self.a.iface.tcp.socket(h)).map(|s| s.stats());
        let b = cb.and_then(|h| self.b.iface.tcp.socket(h)).map(|s| s.stats());
        let dirty = [a, b]
            .into_iter()
            .flatten()
            .any(|s| s.retransmits != 0 || s.timeouts != 0);
        let dropped = self.a.device.stats().tx_dropped + self.b.device.stats().tx_dropped;
        if dirty || dropped != 0 {
            self.fail(&format!(
                "{what}: a retransmission, timeout or device drop on a lossless pair"
            ));
        }
    }

    /// A listener on B at `port` (backlog 128).
    fn listen(&mut self, port: u16) -> TcpHandle {
        let l = self.b.iface.tcp.socket_new();
        self.b
            .iface
            .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
            .expect("bind the listener");
        self.b.iface.tcp.listen(l, 128).expect("listen");
        l
    }

    /// Connects A to B's listener `l` at `port`: (A's handle, B's handle).
    fn connect(&mut self, l: TcpHandle, port: u16) -> (TcpHandle, TcpHandle) {
        let c = self.a.iface.tcp.socket_new();
        let now = self.now();
        self.a
            .iface
            .tcp_connect(c, SocketAddrV4::new(B_IP, port), now)
            .expect("connect");
        self.watch = (Some(c), None);
        let mut accepted = None;
        self.pump(First::A, "the handshake", |n| {
            if accepted.is_none() {
                accepted = n.b.iface.tcp.accept(l).ok().map(|(h, _)| h);
            }
            accepted.is_some() && n.a.iface.tcp.readiness(c).is_ok_and(|r| r.writable)
        });
        let s = accepted.expect("accepted");
        self.watch = (Some(c), Some(s));
        (c, s)
    }

    /// Frames both devices have sent.
    fn frames(&self) -> u64 {
        self.a.device.stats().tx_frames + self.b.device.stats().tx_frames
    }
}

/// Receives on `h` of stack `s` into `buf[*got..]`; true once `buf` is full.
fn recv_into(s: &mut Stack<PairDevice>, h: TcpHandle, buf: &mut [u8], got: &mut usize) -> bool {
    match s.iface.tcp.recv(h, &mut buf[*got..]) {
        Ok(0) => panic!("end of stream after {got} of {} bytes", buf.len()),
        Ok(k) => *got += k,
        Err(Errno::EAGAIN) => {}
        Err(e) => panic!("recv: {e:?}"),
    }
    *got == buf.len()
}

/// One 64-byte exchange each way: A sends `msg`, B echoes what it got, A
/// checks the echo.
fn exchange(net: &mut Net, ca: TcpHandle, cb: TcpHandle, msg: &[u8; 64]) {
    assert_eq!(net.a.iface.tcp.send(ca, msg), Ok(64), "A's send");
    let mut at_b = [0u8; 64];
    let mut got = 0;
    net.pump(First::A, "the request", |n| {
        recv_into(&mut n.b, cb, &mut at_b, &mut got)
    });
    assert_eq!(net.b.iface.tcp.send(cb, &at_b), Ok(64), "B's send");
    let mut at_a = [0u8; 64];
    let mut got = 0;
    net.pump(First::B, "the response", |n| {
        recv_into(&mut n.a, ca, &mut at_a, &mut got)
    });
    if at_a != *msg {
        net.fail(&format!("echo differs: sent {msg:?}, got back {at_a:?}"));
    }
}

fn segs_out(net: &Net, ca: TcpHandle, cb: TcpHandle) -> u64 {
    let a = net.a.iface.tcp.socket(ca).expect("A's socket").stats();
    let b = net.b.iface.tcp.socket(cb).expect("B's socket").stats();
    a.segs_out + b.segs_out
}

/// `rr_ns` and `rr_segments`.
fn rr() -> (f64, f64) {
    let mut net = Net::new(TcpConfig {
        nodelay: true,
        ..TcpConfig::default()
    });
    let l = net.listen(7000);
    let (ca, cb) = net.connect(l, 7000);
    let mut msg = [0u8; 64];
    for (i, b) in msg.iter_mut().enumerate() {
        *b = i as u8 ^ 0xa5;
    }
    let round = Cell::new(0u64);
    let mut one = |net: &mut Net| {
        round.set(round.get() + 1);
        msg[..8].copy_from_slice(&round.get().to_le_bytes());
        exchange(net, ca, cb, &msg);
    };
    for _ in 0..10_000 {
        one(&mut net);
    }
    net.check_clean("rr warm-up");
    let (segs0, rounds0) = (segs_out(&net, ca, cb), round.get());
    let ns = ns_per_iter(200, 5, |n| {
        for _ in 0..n {
            one(&mut net);
        }
    });
    net.check_clean("rr");
    let segs = (segs_out(&net, ca, cb) - segs0) as f64 / (round.get() - rounds0) as f64;
    (ns, segs)
}

/// The bulk transfer's state: the connection, the stream's pattern, and
/// the bytes written by A's and read by B's application.
struct Bulk {
    net: Net,
    ca: TcpHandle,
    cb: TcpHandle,
    pat: Vec<u8>,
    buf: Vec<u8>,
    sent: u64,
    got: u64,
    reads: u64,
}

impl Bulk {
    const BUF: usize = 1 << 20;
    const READ: usize = 256 << 10;
    const PERIOD: u64 = 251;

    fn new() -> Bulk {
        let mut net = Net::new(TcpConfig {
            send_buffer: Self::BUF,
            recv_buffer: Self::BUF,
            ..TcpConfig::default()
        });
        let l = net.listen(7001);
        let (ca, cb) = net.connect(l, 7001);
        // Byte i of the stream is i mod 251: the sender writes from offset
        // (sent mod 251) of this buffer, the receiver compares the same way.
        let pat = (0..Self::BUF + Self::READ + Self::PERIOD as usize)
            .map(|i| (i as u64 % Self::PERIOD) as u8)
            .collect();
        Bulk {
            net,
            ca,
            cb,
            pat,
            buf: vec![0; Self::READ],
            sent: 0,
            got: 0,
            reads: 0,
        }
    }

    /// Segments sent by (A, B).
    fn segs(&self) -> (u64, u64) {
        let tcp = |s: &Stack<PairDevice>, h| s.iface.tcp.socket(h).expect("bulk socket").stats().segs_out;
        (tcp(&self.net.a, self.ca), tcp(&self.net.b, self.cb))
    }

    /// Runs the transfer (A writing only if `send`) until `stop(bytes
    /// read, time since the call)` holds.
    fn run(&mut self, send: bool, stop: impl Fn(u64, Duration) -> bool) {
        let from = StdInstant::now();
        let mut progress_at = self.net.now();
        loop {
            if send {
                let off = (self.sent % Self::PERIOD) as usize;
                if let Ok(k) = self
                    .net
                    .a
                    .iface
                    .tcp
                    .send(self.ca, &self.pat[off..off + Self::BUF])
                {
                    self.sent += k as u64;
                }
            }
            let now = self.net.poll(First::A);
            loop {
                match self.net.b.iface.tcp.recv(self.cb, &mut self.buf) {
                    Ok(0) => self.net.fail("bulk: end of stream"),
                    Ok(k) => {
                        let (buf, off) = (&self.buf[..k], (self.got % Self::PERIOD) as usize);
                        let want = &self.pat[off..off + k];
                        let ok = if self.reads.is_multiple_of(16) {
                            buf == want
                        } else {
                            buf[0] == want[0] && buf[k - 1] == want[k - 1]
                        };
                        if !ok {
                            let at = self.got;
                            self.net
                                .fail(&format!("bulk: wrong bytes in a {k}-byte read at offset {at}"));
                        }
                        self.got += k as u64;
                        self.reads += 1;
                        progress_at = now;
                    }
                    Err(Errno::EAGAIN) => break,
                    Err(e) => self.net.fail(&format!("bulk: recv: {e:?}")),
                }
            }
            if stop(self.got, from.elapsed()) {
                return;
            }
            if now - progress_at > STALL {
                let (got, sent) = (self.got, self.sent);
                self.net
                    .fail(&format!("bulk: stalled {STALL:?} at {got} of {sent} bytes"));
            }
        }
    }
}

/// `bulk_gbps` and `bulk_segments_per_ack`.
fn bulk() -> (f64, f64) {
    let mut b = Bulk::new();
    b.run(true, |got, _| got >= 64 << 20);
    b.net.check_clean("bulk warm-up");
    let (got0, segs0) = (b.got, b.segs());
    let t = StdInstant::now();
    b.run(true, |got, el| {
        got - got0 >= 1 << 30 && el >= Duration::from_secs(2)
    });
    let secs = t.elapsed().as_secs_f64();
    let gbps = (b.got - got0) as f64 * 8.0 / secs / 1e9;
    let segs1 = b.segs();
    // Deliver what is still in flight, then check nothing was lost.
    let total = b.sent;
    b.run(false, |got, _| got >= total);
    assert_eq!(b.got, b.sent, "bulk: bytes delivered differ from bytes sent");
    b.net.check_clean("bulk");
    let per_ack = (segs1.0 - segs0.0) as f64 / (segs1.1 - segs0.1) as f64;
    (gbps, per_ack)
}

/// `conn_per_s`, `conn_frames` and `conn_time_wait`.
fn conn() -> (f64, f64, usize) {
    const PORT: u16 = 7002;
    let mut net = Net::new(TcpConfig::default());
    let l = net.listen(PORT);
    let count = Cell::new(0u64);
    let one = |net: &mut Net| {
        count.set(count.get() + 1);
        let (ca, cb) = net.connect(l, PORT);
        let mut msg = [0x3cu8; 64];
        msg[..8].copy_from_slice(&count.get().to_le_bytes());
        exchange(net, ca, cb, &msg);
        net.check_clean("conn exchange");
        net.a.iface.tcp.close(ca, net.now()).expect("A's close");
        net.pump(First::A, "B to read end of stream", |n| {
            n.check_clean("conn FIN");
            n.b.iface.tcp.recv(cb, &mut [0u8; 1]) == Ok(0)
        });
        net.b.iface.tcp.close(cb, net.now()).expect("B's close");
        net.pump(First::B, "both sockets to finish", |n| {
            n.check_clean("conn close");
            let a_gone = n.a.iface.tcp.socket(ca).is_none();
            let b = n.b.iface.tcp.socket(cb).map(|s| s.state());
            if a_gone && b == Some(State::LastAck) && n.b.device.pending() == 0 {
                n.fail(
                    "conn close: A's orphaned socket entered TIME-WAIT without acknowledging \
                     B's FIN (B stays in LAST-ACK until its RTO retransmits the FIN)",
                );
            }
            a_gone && b.is_none()
        });
        net.watch = (None, None);
        // A's socket went to the TIME-WAIT table, B's is gone entirely.
        assert!(net.a.iface.tcp.time_wait_len() > 0, "A's TIME-WAIT entry");
        assert_eq!(net.a.iface.tcp.conns_len() + net.b.iface.tcp.conns_len(), 0);
    };
    // Warm-up: fill the TIME-WAIT table to its bound (the steady state).
    let tw_max = IfaceConfig::new(EthernetAddress([0; 6]), A_IP, 24).time_wait_max;
    for _ in 0..tw_max + 1000 {
        one(&mut net);
    }
    let (frames0, count0) = (net.frames(), count.get());
    let ns = ns_per_iter(200, 5, |n| {
        for _ in 0..n {
            one(&mut net);
        }
    });
    let frames = (net.frames() - frames0) as f64 / (count.get() - count0) as f64;
    (1e9 / ns, frames, net.a.iface.tcp.time_wait_len())
}

fn main() {
    let (rr_ns, rr_segments) = rr();
    report("rr_ns", rr_ns, "ns");
    report("rr_segments", rr_segments, "segments");
    let (gbps, per_ack) = bulk();
    report("bulk_gbps", gbps, "Gbit/s");
    report("bulk_segments_per_ack", per_ack, "segments");
    let (per_s, frames, time_wait) = conn();
    report("conn_per_s", per_s, "conn/s");
    report("conn_frames", frames, "frames");
    report("conn_time_wait", time_wait as f64, "entries");
}
