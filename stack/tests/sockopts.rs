//! Socket options between two stacks over the in-memory pair on a
//! simulated clock, observed on the wire: every frame a stack receives is
//! recorded (time, TOS, TCP flags, sequence number, payload length, MSS
//! option), and either stack can be made deaf (its received frames are
//! dropped after recording) to play a peer that went silent.
//!
//! A is the connecting side, B the listening one; `b_saw` holds what A
//! sent, `a_saw` what B sent.

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use accel_stack::iface::{IfaceConfig, Stack, TcpHandle};
use accel_stack::phy::pair::{pair, PairBuf, PairDevice};
use accel_stack::phy::{Capabilities, Device, DeviceStats};
use accel_stack::tcp::{Keepalive, SockOpt, TcpConfig};
use accel_stack::wire::{EthernetFrame, IpProtocol, Ipv4Packet, TcpOption, TcpPacket};
use accel_stack::{Errno, Instant};

const A_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// One received IPv4 frame.
#[derive(Clone, Copy, Debug)]
struct Seen {
    at: Instant,
    tos: u8,
    tcp: Option<Seg>,
}

/// The TCP header of a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seg {
    syn: bool,
    fin: bool,
    rst: bool,
    seq: u32,
    len: usize,
    mss: Option<u16>,
}

type Log = Rc<RefCell<Vec<Seen>>>;

/// A pair end that records what it receives and can drop it.
struct Rec {
    inner: PairDevice,
    log: Log,
    deaf: Rc<Cell<bool>>,
}

fn parse(at: Instant, frame: &[u8]) -> Option<Seen> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let tos = (ip.dscp() << 2) | ip.ecn();
    let tcp = (ip.protocol() == IpProtocol::Tcp)
        .then(|| TcpPacket::new_checked(ip.payload()).ok())
        .flatten()
        .map(|t| Seg {
            syn: t.syn(),
            fin: t.fin(),
            rst: t.rst(),
            seq: t.seq_number().0,
            len: t.payload().len(),
            mss: t.options_iter().find_map(|o| match o {
                Ok(TcpOption::MaxSegmentSize(m)) => Some(m),
                _ => None,
            }),
        });
    Some(Seen { at, tos, tcp })
}

impl Device for Rec {
    type RxBuf = PairBuf;
    type TxBuf = PairBuf;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn receive(&mut self, now: Instant, out: &mut Vec<PairBuf>, max: usize) -> usize {
        let start = out.len();
        let n = self.inner.receive(now, out, max);
        for f in &out[start..] {
            if let Some(s) = parse(now, f.as_ref()) {
                self.log.borrow_mut().push(s);
            }
        }
        if self.deaf.get() {
            out.truncate(start);
            return 0;
        }
        n
    }

    fn alloc_tx(&mut self, len: usize) -> Option<PairBuf> {
        self.inner.alloc_tx(len)
    }

    fn transmit(&mut self, now: Instant, batch: &mut Vec<PairBuf>) -> usize {
        self.inner.transmit(now, batch)
    }

    fn stats(&self) -> DeviceStats {
        self.inner.stats()
    }
}

struct Two {
    a: Stack<Rec>,
    b: Stack<Rec>,
    now: Instant,
    a_saw: Log,
    b_saw: Log,
    b_deaf: Rc<Cell<bool>>,
}

fn two() -> Two {
    let (da, db) = pair(Capabilities::default(), 4096);
    let (a_saw, b_saw): (Log, Log) = Default::default();
    let b_deaf = Rc::new(Cell::new(false));
    let mk = |ip: Ipv4Addr, last: u8, dev: Rec| {
        let mut cfg = IfaceConfig::new(accel_stack::wire::EthernetAddress([2, 0, 0, 0, 0, last]), ip, 24);
        cfg.secret = [last; 16];
        Stack::new(cfg, TcpConfig::default(), dev)
    };
    let a = mk(
        A_IP,
        1,
        Rec {
            inner: da,
            log: a_saw.clone(),
            deaf: Rc::new(Cell::new(false)),
        },
    );
    let b = mk(
        B_IP,
        2,
        Rec {
            inner: db,
            log: b_saw.clone(),
            deaf: b_deaf.clone(),
        },
    );
    Two {
        a,
        b,
        now: Instant::from_millis(1000),
        a_saw,
        b_saw,
        b_deaf,
    }
}

impl Two {
    /// Polls both stacks until neither has work at this instant.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let ra = self.a.poll(self.now);
            let rb = self.b.poll(self.now);
            if !ra.progress && !rb.progress {
                return;
            }
        }
    }

    /// Runs until `done` or `until`, jumping from timer to timer; the
    /// clock ends at the instant `done` first held (or at `until`).
    fn run_until(&mut self, until: Instant, mut done: impl FnMut(&mut Two) -> bool) -> bool {
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            let next = [self.a.iface.poll_at(), self.b.iface.poll_at()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => self.now = t.max(self.now + Duration::from_micros(1)),
                _ => {
                    self.now = until;
                    self.settle();
                    return done(self);
                }
            }
        }
    }

    /// Advances the clock by `d`, running every timer on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end, |_| false);
    }

    /// A listener on B at `port` (with `opts` set before listening) and a
    /// connection from A (with `a_opts` set before connecting), accepted.
    fn connect_with(&mut self, port: u16, a_opts: &[SockOpt], b_opts: &[SockOpt]) -> (TcpHandle, TcpHandle) {
        let l = self.listen(port, b_opts);
        let c = self.dial(port, a_opts);
        let mut accepted = None;
        assert!(
            self.run_until(self.now + Duration::from_secs(5), |n| {
                accepted = accepted.or_else(|| n.b.iface.tcp.accept(l).ok().map(|(h, _)| h));
                accepted.is_some()
            }),
            "not accepted"
        );
        self.b.iface.tcp.close(l, self.now).unwrap();
        (c, accepted.unwrap())
    }

    fn listen(&mut self, port: u16, opts: &[SockOpt]) -> TcpHandle {
        let now = self.now;
        let tcp = &mut self.b.iface.tcp;
        let l = tcp.socket_new();
        for o in opts {
            tcp.set_option(l, *o, now).unwrap();
        }
        self.b
            .iface
            .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
            .unwrap();
        self.b.iface.tcp.listen(l, 16).unwrap();
        l
    }

    fn dial(&mut self, port: u16, opts: &[SockOpt]) -> TcpHandle {
        let now = self.now;
        let c = self.a.iface.tcp.socket_new();
        for o in opts {
            self.a.iface.tcp.set_option(c, *o, now).unwrap();
        }
        self.a
            .iface
            .tcp_connect(c, SocketAddrV4::new(B_IP, port), now)
            .unwrap();
        c
    }

    /// What A sent since `t`: TCP segments with their times.
    fn sent_by_a_since(&self, t: Instant) -> Vec<(Instant, Seg)> {
        self.b_saw
            .borrow()
            .iter()
            .filter(|s| s.at >= t)
            .filter_map(|s| s.tcp.map(|g| (s.at, g)))
            .collect()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn read_all(s: &mut Stack<Rec>, h: TcpHandle) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.iface.tcp.recv(h, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn keepalive_probes_at_the_set_times_then_resets_with_etimedout() {
    let mut n = two();
    let (a, _b) = n.connect_with(7000, &[], &[]);
    n.settle();
    let t0 = n.now;
    let k = Keepalive {
        idle: Duration::from_secs(2),
        interval: Duration::from_secs(1),
        count: 3,
    };
    n.a.iface
        .tcp
        .set_option(a, SockOpt::Keepalive(Some(k)), t0)
        .unwrap();
    // Answered: a probe every idle time (each answer starts it over).
    n.advance(ms(4_500));
    let probes = |n: &Two| -> Vec<Duration> {
        n.sent_by_a_since(t0)
            .iter()
            .filter(|(at, g)| *at > t0 && g.len == 0 && !g.syn && !g.fin && !g.rst)
            .map(|(at, _)| *at - t0)
            .collect()
    };
    assert_eq!(probes(&n), [ms(2_000), ms(4_000)]);
    // B goes deaf: three unanswered probes a second apart, then the RST.
    n.b_deaf.set(true);
    let dead = n.run_until(t0 + ms(20_000), |n| n.a.iface.tcp.readiness(a).unwrap().error);
    assert!(dead);
    assert_eq!(
        n.now - t0,
        ms(9_000),
        "idle 2 s after the last answer, then 3 x 1 s"
    );
    assert_eq!(
        probes(&n),
        [ms(2_000), ms(4_000), ms(6_000), ms(7_000), ms(8_000)]
    );
    let rsts: Vec<Duration> = n
        .sent_by_a_since(t0)
        .iter()
        .filter(|(_, g)| g.rst)
        .map(|(at, _)| *at - t0)
        .collect();
    assert_eq!(rsts, [ms(9_000)]);
    let mut buf = [0u8; 8];
    assert_eq!(n.a.iface.tcp.recv(a, &mut buf), Err(Errno::ETIMEDOUT));
}

#[test]
fn user_timeout_fails_unacknowledged_data_at_the_set_time() {
    let mut n = two();
    let (a, _b) = n.connect_with(7001, &[SockOpt::UserTimeout(Some(ms(1_500)))], &[]);
    n.settle();
    n.b_deaf.set(true);
    let t0 = n.now;
    n.a.iface.tcp.send(a, b"lost").unwrap();
    let dead = n.run_until(t0 + ms(30_000), |n| n.a.iface.tcp.readiness(a).unwrap().error);
    assert!(dead);
    assert_eq!(n.now - t0, ms(1_500));
    let sent = n.sent_by_a_since(t0);
    assert!(sent.len() >= 3, "sent and retransmitted: {sent:?}");
    assert!(sent.iter().all(|(_, g)| !g.rst), "no RST on a write timeout");
    let mut buf = [0u8; 8];
    assert_eq!(n.a.iface.tcp.recv(a, &mut buf), Err(Errno::ETIMEDOUT));
}

#[test]
fn cork_coalesces_small_writes() {
    for cork in [true, false] {
        let mut n = two();
        let (a, b) = n.connect_with(7002, &[SockOpt::NoDelay(true)], &[]);
        n.settle();
        let t0 = n.now;
        let now = n.now;
        n.a.iface.tcp.set_option(a, SockOpt::Cork(cork), now).unwrap();
        for i in 0..10u8 {
            n.a.iface.tcp.send(a, &[i; 100]).unwrap();
            n.advance(ms(1));
        }
        let now = n.now;
        n.a.iface.tcp.set_option(a, SockOpt::Cork(false), now).unwrap();
        n.advance(ms(50));
        let sizes: Vec<usize> = n
            .sent_by_a_since(t0)
            .iter()
            .map(|(_, g)| g.len)
            .filter(|l| *l > 0)
            .collect();
        if cork {
            assert_eq!(sizes, [1000], "corked: one segment");
        } else {
            assert_eq!(sizes, [100; 10], "not corked, no Nagle: one per write");
        }
        assert_eq!(read_all(&mut n.b, b).len(), 1000);
    }
}

#[test]
fn corked_data_goes_out_after_an_rto() {
    let mut n = two();
    let (a, b) = n.connect_with(7003, &[SockOpt::Cork(true)], &[]);
    n.settle();
    let t0 = n.now;
    n.a.iface.tcp.send(a, b"held").unwrap();
    let got = n.run_until(t0 + ms(5_000), |n| n.b.iface.tcp.readiness(b).unwrap().readable);
    assert!(got);
    let waited = n.now - t0;
    assert!((ms(200)..ms(300)).contains(&waited), "{waited:?}");
    assert_eq!(read_all(&mut n.b, b), b"held");
}

#[test]
fn tos_marks_every_packet_of_the_socket() {
    let mut n = two();
    let (a, b) = n.connect_with(7004, &[SockOpt::Tos(0xb8)], &[]);
    n.a.iface.tcp.send(a, b"x").unwrap();
    n.advance(ms(100));
    let t1 = n.now;
    n.a.iface.tcp.set_option(a, SockOpt::Tos(0x28), t1).unwrap();
    n.a.iface.tcp.send(a, b"y").unwrap();
    n.advance(ms(100));
    n.a.iface.tcp.close(a, n.now).unwrap();
    n.advance(ms(100));
    let tos = |log: &Log, from: Instant, to: Instant| -> Vec<u8> {
        log.borrow()
            .iter()
            .filter(|s| s.tcp.is_some() && s.at >= from && s.at < to)
            .map(|s| s.tos)
            .collect()
    };
    let before = tos(&n.b_saw, Instant::ZERO, t1);
    assert!(
        before.len() >= 3 && before.iter().all(|t| *t == 0xb8),
        "{before:?}"
    );
    let after = tos(&n.b_saw, t1, n.now + ms(1));
    assert!(after.len() >= 2 && after.iter().all(|t| *t == 0x28), "{after:?}");
    let theirs = tos(&n.a_saw, Instant::ZERO, n.now + ms(1));
    assert!(
        !theirs.is_empty() && theirs.iter().all(|t| *t == 0),
        "B's packets: {theirs:?}"
    );
    assert_eq!(read_all(&mut n.b, b), b"xy");
}

#[test]
fn udp_tos_marks_datagrams() {
    let mut n = two();
    let u = n.a.iface.udp_socket();
    n.a.iface.udp_mut(u).unwrap().set_tos(0x10);
    let r = n.b.iface.udp_socket();
    n.b.iface
        .udp_bind(r, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9))
        .unwrap();
    n.a.iface
        .udp_send_to(u, b"hi", Some(SocketAddrV4::new(B_IP, 9)))
        .unwrap();
    n.advance(ms(10));
    let udp: Vec<u8> = n
        .b_saw
        .borrow()
        .iter()
        .filter(|s| s.tcp.is_none())
        .map(|s| s.tos)
        .collect();
    assert_eq!(udp, [0x10]);
}

#[test]
fn maxseg_clamps_the_mss_advertised_and_used_both_ways() {
    let mut n = two();
    let t0 = n.now;
    let (a, b) = n.connect_with(7005, &[SockOpt::MaxSeg(Some(500)), SockOpt::NoDelay(true)], &[]);
    let syn = n.sent_by_a_since(t0)[0].1;
    assert!(syn.syn);
    assert_eq!(syn.mss, Some(500));
    // Both sides send 488-byte segments (500 less the timestamps).
    assert_eq!(n.a.iface.tcp.socket(a).unwrap().maxseg(), 488);
    assert_eq!(n.b.iface.tcp.socket(b).unwrap().maxseg(), 488);
    let t1 = n.now;
    n.a.iface.tcp.send(a, &[7; 2000]).unwrap();
    n.b.iface.tcp.send(b, &[9; 2000]).unwrap();
    n.advance(ms(100));
    let largest = |log: &Log| {
        log.borrow()
            .iter()
            .filter(|s| s.at >= t1)
            .filter_map(|s| s.tcp.map(|g| g.len))
            .max()
    };
    assert_eq!(largest(&n.b_saw), Some(488));
    assert_eq!(largest(&n.a_saw), Some(488));
    assert_eq!(read_all(&mut n.b, b).len(), 2000);
}

#[test]
fn maxseg_on_the_listener_clamps_its_syn_ack() {
    let mut n = two();
    let t0 = n.now;
    let (_a, b) = n.connect_with(7006, &[], &[SockOpt::MaxSeg(Some(600))]);
    let synack = n
        .a_saw
        .borrow()
        .iter()
        .filter(|s| s.at >= t0)
        .find_map(|s| s.tcp.filter(|g| g.syn))
        .unwrap();
    assert_eq!(synack.mss, Some(600));
    assert_eq!(n.b.iface.tcp.socket(b).unwrap().maxseg(), 588);
}

#[test]
fn defer_accept_waits_for_data_or_the_deadline() {
    let mut n = two();
    let l = n.listen(7007, &[SockOpt::DeferAccept(Some(Duration::from_secs(2)))]);
    // A connection that sends after a second is accepted then, with its data.
    let t0 = n.now;
    let c1 = n.dial(7007, &[]);
    n.advance(ms(1_000));
    assert_eq!(n.b.iface.tcp.accept(l).err(), Some(Errno::EAGAIN));
    assert!(n.a.iface.tcp.readiness(c1).unwrap().writable, "A is connected");
    n.a.iface.tcp.send(c1, b"hello").unwrap();
    n.settle();
    let (b1, _) = n.b.iface.tcp.accept(l).expect("accepted on data");
    assert_eq!(read_all(&mut n.b, b1), b"hello");
    assert!(n.now - t0 < ms(1_100));
    // One that stays silent is accepted 2 s after its SYN.
    let t1 = n.now;
    let _c2 = n.dial(7007, &[]);
    let got = n.run_until(t1 + ms(10_000), |n| n.b.iface.tcp.accept(l).is_ok());
    assert!(got);
    assert_eq!(n.now - t1, ms(2_000));
}

#[test]
fn quickack_acks_at_once_where_the_ack_was_delayed() {
    let mut n = two();
    let (a, b) = n.connect_with(7008, &[], &[SockOpt::NoDelay(true)]);
    n.advance(ms(10));
    let ack_delay = |n: &mut Two, byte: u8| -> Duration {
        let t = n.now;
        n.b.iface.tcp.send(b, &[byte]).unwrap();
        n.advance(ms(100));
        let acks: Vec<Instant> = n
            .b_saw
            .borrow()
            .iter()
            .filter(|s| s.at >= t)
            .filter_map(|s| s.tcp.map(|g| (s.at, g)))
            .filter(|(_, g)| g.len == 0 && !g.syn && !g.fin && !g.rst)
            .map(|(at, _)| at)
            .collect();
        assert_eq!(acks.len(), 1, "one ACK: {:?}", n.sent_by_a_since(t));
        acks[0] - t
    };
    assert_eq!(ack_delay(&mut n, 1), ms(40), "delayed");
    let now = n.now;
    n.a.iface.tcp.set_option(a, SockOpt::QuickAck(true), now).unwrap();
    assert_eq!(ack_delay(&mut n, 2), Duration::ZERO, "quick");
    assert_eq!(ack_delay(&mut n, 3), Duration::ZERO, "still quick");
    let now = n.now;
    n.a.iface
        .tcp
        .set_option(a, SockOpt::QuickAck(false), now)
        .unwrap();
    assert_eq!(ack_delay(&mut n, 4), ms(40), "pingpong: delayed");
    assert_eq!(read_all(&mut n.a, a), [1, 2, 3, 4]);
}
