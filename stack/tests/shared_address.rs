//! Two stacks sharing one address and MAC, as the queue pairs of one port
//! do (the shim runs one stack per queue pair), against a peer stack, over
//! an in-memory link that steers each frame from the peer to one of the
//! two queues the way a test asks (all to one queue, or by a rule), with a
//! simulated clock.
//!
//! What must hold when the device steers a frame to the "wrong" queue:
//! - a segment of a connection of the other stack is handed over (kept,
//!   not reset) and, ingested by the other stack, goes on as if it had
//!   arrived there; with handover off it is reset, as before;
//! - an ARP reply taught to one stack is taught to the other, which then
//!   sends what waited for it;
//! - the stacks' ephemeral ports never collide (each its share);
//! - the ACK of a SYN cookie that one stack sent makes the connection
//!   there, even when the device delivers it to another;
//! - a SYN for a port only the other stack listens on (two programs on
//!   one address, each in a process of its own) is handed to it;
//! - a listener that closes keeping its connections (a process leaving a
//!   shared port) leaves them alive until another stack's listener takes
//!   their images: the requests, FINs and handshakes they held go on
//!   there, the peer none the wiser; adrift too long, they are reset; an
//!   image the other listener would not have negotiated is refused.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use accel_stack::iface::{IfaceConfig, Stack, TcpHandle};
use accel_stack::phy::{Capabilities, Device, DeviceStats};
use accel_stack::tcp::{State, TcpConfig};
use accel_stack::wire::EthernetAddress;
use accel_stack::Instant;

#[path = "common/raw.rs"]
#[allow(dead_code)]
mod raw;

const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Where the peer's frames go: queue 0, queue 1, or the queue a rule picks.
type Steer = Box<dyn Fn(&[u8]) -> usize>;

#[derive(Default)]
struct Wire {
    to_peer: VecDeque<Vec<u8>>,
    to_q: [VecDeque<Vec<u8>>; 2],
}

/// One end of the link: the peer (`q: None`) or one of our two queues.
struct End {
    wire: Rc<RefCell<Wire>>,
    q: Option<usize>,
    steer: Rc<RefCell<Steer>>,
}

impl Device for End {
    type RxBuf = Vec<u8>;
    type TxBuf = Vec<u8>;

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn receive(&mut self, _now: Instant, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        let mut w = self.wire.borrow_mut();
        let from = match self.q {
            None => &mut w.to_peer,
            Some(q) => &mut w.to_q[q],
        };
        let n = from.len().min(max);
        out.extend(from.drain(..n));
        n
    }

    fn alloc_tx(&mut self, len: usize) -> Option<Vec<u8>> {
        Some(vec![0; len])
    }

    fn transmit(&mut self, _now: Instant, batch: &mut Vec<Vec<u8>>) -> usize {
        let n = batch.len();
        let mut w = self.wire.borrow_mut();
        for frame in batch.drain(..) {
            match self.q {
                None => {
                    let q = (self.steer.borrow())(&frame);
                    w.to_q[q].push_back(frame);
                }
                Some(_) => w.to_peer.push_back(frame),
            }
        }
        n
    }

    fn stats(&self) -> DeviceStats {
        DeviceStats::default()
    }
}

struct Net {
    peer: Stack<End>,
    ours: [Stack<End>; 2],
    steer: Rc<RefCell<Steer>>,
    now: Instant,
    /// Segments handed from one stack to the other.
    handed: usize,
}

fn net(handover: bool) -> Net {
    let wire = Rc::new(RefCell::new(Wire::default()));
    let steer: Rc<RefCell<Steer>> = Rc::new(RefCell::new(Box::new(|_: &[u8]| 0)));
    let end = |q| End {
        wire: Rc::clone(&wire),
        q,
        steer: Rc::clone(&steer),
    };
    let mut pc = IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]), PEER_IP, 24);
    pc.secret = [1; 16];
    let mut oc = IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, 2]), OUR_IP, 24);
    oc.secret = [2; 16];
    let mut ours = [
        Stack::new(oc.clone(), TcpConfig::default(), end(Some(0))),
        Stack::new(oc, TcpConfig::default(), end(Some(1))),
    ];
    for (q, s) in ours.iter_mut().enumerate() {
        s.iface.set_port_share(q as u16, 2).unwrap();
        s.iface.set_handover(handover);
    }
    Net {
        peer: Stack::new(pc, TcpConfig::default(), end(None)),
        ours,
        steer,
        now: Instant::from_millis(1000),
        handed: 0,
    }
}

impl Net {
    /// Polls everything until quiet, passing strays and learned neighbours
    /// between our stacks as the shim does; then, if nothing moved, jumps
    /// to the next timer. Stops after `limit` of simulated time or when
    /// `done` holds.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            let mut progress = self.peer.poll(self.now).progress;
            for q in 0..2 {
                progress |= self.ours[q].poll(self.now).progress;
                let other = 1 - q;
                for (ip, mac) in self.ours[q].iface.take_learned_neighbours() {
                    self.ours[other].learn_neighbour(ip, mac, self.now);
                }
                for packet in self.ours[q].iface.take_handover() {
                    self.handed += 1;
                    progress = true;
                    let owner = if self.ours[other].iface.would_take(&packet, self.now) {
                        other
                    } else {
                        q
                    };
                    self.ours[owner].ingest(&packet, self.now);
                }
            }
            if !progress {
                let next = [
                    self.peer.iface.poll_at(),
                    self.ours[0].iface.poll_at(),
                    self.ours[1].iface.poll_at(),
                ]
                .into_iter()
                .flatten()
                .min();
                self.now = match next {
                    Some(t) if t > self.now => t.min(end),
                    _ => self.now + Duration::from_millis(1),
                };
            }
        }
        done(self)
    }

    fn steer(&self, f: impl Fn(&[u8]) -> usize + 'static) {
        *self.steer.borrow_mut() = Box::new(f);
    }
}

/// Our stack `q` connects to a peer listener on `port`; the peer's
/// connection handle is returned with ours.
fn connect_from(n: &mut Net, q: usize, port: u16) -> (TcpHandle, TcpHandle) {
    let l = n.peer.iface.tcp.socket_new();
    n.peer
        .iface
        .tcp_bind(l, SocketAddrV4::new(PEER_IP, port))
        .unwrap();
    n.peer.iface.tcp.listen(l, 16).unwrap();
    let c = n.ours[q].iface.tcp.socket_new();
    n.ours[q]
        .iface
        .tcp_connect(c, SocketAddrV4::new(PEER_IP, port), n.now)
        .unwrap();
    let mut accepted = None;
    let ok = n.run_until(Duration::from_secs(5), |n| {
        if accepted.is_none() {
            accepted = n.peer.iface.tcp.accept(l).ok().map(|(h, _)| h);
        }
        accepted.is_some()
            && n.ours[q]
                .iface
                .tcp
                .socket(c)
                .is_some_and(|s| s.state() == State::Established)
    });
    assert!(ok, "no connection: {:?}", n.ours[q].iface.tcp.socket(c));
    (c, accepted.unwrap())
}

#[test]
fn a_segment_on_the_other_queue_is_handed_to_the_connections_stack() {
    let mut n = net(true);
    // Every frame of the peer lands on queue 1, the connection is stack 0's
    // (its SYN-ACK, like net_tap's first answer, comes on the wrong queue).
    n.steer(|_| 1);
    let (c, p) = connect_from(&mut n, 0, 7001);
    assert!(n.handed > 0, "the SYN-ACK came through a handover");
    // Data both ways, every segment of the peer's on the wrong queue.
    let msg = b"hello over the other queue";
    n.ours[0].iface.tcp.send(c, msg).unwrap();
    n.peer.iface.tcp.send(p, b"and back").unwrap();
    let (mut at_peer, mut at_us) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 64];
    let ok = n.run_until(Duration::from_secs(5), |n| {
        if let Ok(k) = n.peer.iface.tcp.recv(p, &mut buf) {
            at_peer.extend_from_slice(&buf[..k]);
        }
        if let Ok(k) = n.ours[0].iface.tcp.recv(c, &mut buf) {
            at_us.extend_from_slice(&buf[..k]);
        }
        at_peer == msg && at_us == b"and back"
    });
    assert!(ok, "peer got {at_peer:?}, we got {at_us:?}");
    assert_eq!(n.ours[1].iface.stats().drop_tcp_no_socket, 0, "nothing was reset");
    assert_eq!(n.ours[0].iface.tcp.socket(c).unwrap().state(), State::Established);
}

#[test]
fn without_handover_the_other_queue_resets_the_connection() {
    let mut n = net(false);
    n.steer(|_| 1);
    let l = n.peer.iface.tcp.socket_new();
    n.peer
        .iface
        .tcp_bind(l, SocketAddrV4::new(PEER_IP, 7002))
        .unwrap();
    n.peer.iface.tcp.listen(l, 16).unwrap();
    let c = n.ours[0].iface.tcp.socket_new();
    n.ours[0]
        .iface
        .tcp_connect(c, SocketAddrV4::new(PEER_IP, 7002), n.now)
        .unwrap();
    let established = n.run_until(Duration::from_millis(500), |n| {
        n.ours[0]
            .iface
            .tcp
            .socket(c)
            .is_some_and(|s| s.state() == State::Established)
    });
    assert!(!established);
    assert!(
        n.ours[1].iface.stats().drop_tcp_no_socket > 0,
        "stack 1 reset the SYN-ACK"
    );
    assert_eq!(n.handed, 0);
}

#[test]
fn a_neighbour_one_stack_learns_is_taught_to_the_other() {
    let mut n = net(true);
    // ARP replies (and everything else) land on queue 0; stack 1 asks.
    n.steer(|_| 0);
    let (c, _) = connect_from(&mut n, 1, 7003);
    assert_eq!(n.ours[1].iface.tcp.socket(c).unwrap().state(), State::Established);
    assert!(n.handed > 0, "stack 0 handed stack 1 its segments");
}

#[test]
fn a_syn_for_a_port_only_the_other_stack_listens_on_is_handed_to_it() {
    let mut n = net(true);
    n.steer(|_| 1);
    let l = n.ours[0].iface.tcp.socket_new();
    n.ours[0]
        .iface
        .tcp_bind(l, SocketAddrV4::new(OUR_IP, 8080))
        .unwrap();
    n.ours[0].iface.tcp.listen(l, 16).unwrap();
    let c = n.peer.iface.tcp.socket_new();
    n.peer
        .iface
        .tcp_connect(c, SocketAddrV4::new(OUR_IP, 8080), n.now)
        .unwrap();
    let mut accepted = None;
    let ok = n.run_until(Duration::from_secs(2), |n| {
        if accepted.is_none() {
            accepted = n.ours[0].iface.tcp.accept(l).ok().map(|(h, _)| h);
        }
        accepted.is_some()
    });
    assert!(ok, "stack 0 accepted nothing: {:?}", n.peer.iface.tcp.socket(c));
    assert!(n.handed > 0, "the SYN came through a handover");
    assert_eq!(n.ours[1].iface.stats().drop_tcp_no_socket, 0, "nothing was reset");
    let syn = {
        // A SYN to port 8080 and one to port 9, as IPv4 packets.
        let mut v = Vec::new();
        for port in [8080u16, 9] {
            let mut p = vec![0u8; 40];
            p[0] = 0x45;
            p[3] = 40;
            p[8] = 64;
            p[9] = 6;
            p[12..16].copy_from_slice(&PEER_IP.octets());
            p[16..20].copy_from_slice(&OUR_IP.octets());
            p[20..22].copy_from_slice(&40000u16.to_be_bytes());
            p[22..24].copy_from_slice(&port.to_be_bytes());
            p[32] = 0x50;
            p[33] = 0x02;
            v.push(p);
        }
        v
    };
    assert!(
        n.ours[0].iface.would_take(&syn[0], n.now),
        "a SYN to its listener"
    );
    assert!(
        !n.ours[0].iface.would_take(&syn[1], n.now),
        "a SYN to no listener"
    );
    assert!(
        !n.ours[1].iface.would_take(&syn[0], n.now),
        "not the other stack's"
    );
}

#[test]
fn a_segment_for_nobody_is_still_reset_after_the_handover() {
    let mut n = net(true);
    n.steer(|_| 1);
    // A peer connecting to a port nobody listens on: stack 1 keeps the SYN,
    // stack 0 has no such flow, so stack 1 itself resets it.
    let c = n.peer.iface.tcp.socket_new();
    n.peer
        .iface
        .tcp_connect(c, SocketAddrV4::new(OUR_IP, 9), n.now)
        .unwrap();
    let refused = n.run_until(Duration::from_secs(2), |n| {
        n.peer
            .iface
            .tcp
            .socket(c)
            .is_none_or(|s| s.state() == State::Closed)
    });
    assert!(refused, "{:?}", n.peer.iface.tcp.socket(c));
    assert_eq!(n.ours[1].iface.stats().drop_tcp_no_socket, 1);
}

#[test]
fn the_two_stacks_pick_ephemeral_ports_of_their_own_share() {
    let mut n = net(true);
    for q in 0..2 {
        for _ in 0..50 {
            let h = n.ours[q].iface.tcp.socket_new();
            let a = n.ours[q]
                .iface
                .tcp_bind(h, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
                .unwrap();
            assert_eq!(usize::from(a.port() % 2), q, "port {} on stack {q}", a.port());
        }
    }
    assert!(n.ours[0].iface.set_port_share(2, 2).is_err());
    assert!(n.ours[0].iface.set_port_share(0, 0).is_err());
}

#[test]
fn connections_queued_on_both_stacks_are_accepted_in_the_order_they_came() {
    let mut n = net(true);
    // A listener in each stack on one port, as the shim makes them.
    let ls: Vec<TcpHandle> = (0..2)
        .map(|q| listen_on(&mut n, q, SocketAddrV4::new(OUR_IP, 8080), 16))
        .collect();
    // Four connections, one at a time, steered to queues 1, 0, 1, 0.
    let mut ports = Vec::new();
    for (i, q) in [1usize, 0, 1, 0].into_iter().enumerate() {
        n.steer(move |_| q);
        let c = n.peer.iface.tcp.socket_new();
        n.peer
            .iface
            .tcp_connect(c, SocketAddrV4::new(OUR_IP, 8080), n.now)
            .unwrap();
        let ok = n.run_until(Duration::from_secs(2), |n| {
            n.peer
                .iface
                .tcp
                .socket(c)
                .is_some_and(|s| s.state() == State::Established)
        });
        assert!(ok, "connection {i}");
        ports.push(n.peer.iface.tcp.local_addr(c).unwrap().unwrap().port());
        n.now += Duration::from_millis(1);
        let _ = n.run_until(Duration::from_millis(1), |_| false);
    }
    // Oldest first across the two stacks, as the shim's accept does.
    let mut order = Vec::new();
    loop {
        let next = (0..2)
            .filter_map(|q| Some((n.ours[q].iface.tcp.accept_since(ls[q])?, q)))
            .min();
        let Some((_, q)) = next else { break };
        let (_, remote) = n.ours[q].iface.tcp.accept(ls[q]).unwrap();
        order.push(remote.port());
    }
    assert_eq!(order, ports, "accepted in the order they were established");
    assert!(n.ours[0].iface.tcp.accept_since(ls[0]).is_none());
}

#[test]
fn a_cookies_ack_on_the_other_queue_makes_the_connection_where_it_checks_out() {
    let mut n = net(true);
    let ls: Vec<TcpHandle> = (0..2)
        .map(|q| listen_on(&mut n, q, SocketAddrV4::new(OUR_IP, 8081), 1))
        .collect();
    // A SYN from an address that never answers fills stack 0's backlog.
    let spoofed = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 99), 4000);
    let syn = accel_stack::wire::TcpRepr {
        control: accel_stack::wire::TcpControl::Syn,
        seq_number: accel_stack::wire::SeqNumber(1),
        window_len: 1000,
        ..Default::default()
    };
    let frame = raw::tcp_frame(
        EthernetAddress([2, 0, 0, 0, 0, 99]),
        EthernetAddress([2, 0, 0, 0, 0, 2]),
        spoofed,
        SocketAddrV4::new(OUR_IP, 8081),
        &syn,
        &[],
    );
    n.ours[0].device.wire.borrow_mut().to_q[0].push_back(frame);
    let _ = n.run_until(Duration::from_millis(1), |_| false);
    // The peer's SYN comes to stack 0 (a cookie), everything else to 1.
    n.steer(|f| match raw::parse_tcp(f) {
        Some((_, _, r, _)) if r.control == accel_stack::wire::TcpControl::Syn => 0,
        _ => 1,
    });
    let c = n.peer.iface.tcp.socket_new();
    n.peer
        .iface
        .tcp_connect(c, SocketAddrV4::new(OUR_IP, 8081), n.now)
        .unwrap();
    let mut accepted = None;
    let ok = n.run_until(Duration::from_millis(500), |n| {
        accepted = accepted.or_else(|| n.ours[0].iface.tcp.accept(ls[0]).ok());
        accepted.is_some()
            && n.peer
                .iface
                .tcp
                .socket(c)
                .is_some_and(|s| s.state() == State::Established)
    });
    let (s0, s1) = (n.ours[0].iface.stats(), n.ours[1].iface.stats());
    assert!(ok, "no connection: {s0:?} {s1:?}");
    assert_eq!((s0.syn_cookies_sent, s0.syn_cookies_ok), (1, 1));
    assert_eq!(s1.syn_cookies_failed + s1.drop_tcp_no_socket, 0, "{s1:?}");
    assert!(s1.tcp_handed_over > 0, "the ACK came through stack 1: {s1:?}");
    assert!(
        n.ours[1].iface.tcp.accept(ls[1]).is_err(),
        "made on stack 0 alone"
    );
    // Data flows, every segment of the peer's through stack 1.
    let (h, _) = accepted.unwrap();
    n.peer.iface.tcp.send(c, b"through the cookie").unwrap();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    let ok = n.run_until(Duration::from_secs(2), |n| {
        if let Ok(k) = n.ours[0].iface.tcp.recv(h, &mut buf) {
            got.extend_from_slice(&buf[..k]);
        }
        got == b"through the cookie"
    });
    assert!(ok, "got {got:?}");
}

/// A listener on `at` in our stack `q`, with `backlog`.
fn listen_on(n: &mut Net, q: usize, at: SocketAddrV4, backlog: usize) -> TcpHandle {
    let l = n.ours[q].iface.tcp.socket_new();
    n.ours[q].iface.tcp_bind(l, at).unwrap();
    n.ours[q].iface.tcp.listen(l, backlog).unwrap();
    l
}

/// A listener on the wildcard address's `port` in our stack `q`.
fn listen_any(n: &mut Net, q: usize, port: u16) -> TcpHandle {
    listen_on(n, q, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port), 16)
}

/// The peer connects to our `port`; runs until it is established there.
fn peer_connects(n: &mut Net, port: u16) -> TcpHandle {
    let c = n.peer.iface.tcp.socket_new();
    n.peer
        .iface
        .tcp_connect(c, SocketAddrV4::new(OUR_IP, port), n.now)
        .unwrap();
    let ok = n.run_until(Duration::from_secs(2), |n| {
        n.peer
            .iface
            .tcp
            .socket(c)
            .is_some_and(|s| s.state() == State::Established)
    });
    assert!(ok, "the peer's connection did not open");
    c
}

#[test]
fn a_closing_listeners_connections_move_to_a_listener_of_the_other_stack() {
    move_connections(true);
}

#[test]
fn a_connection_still_in_its_handshake_moves_too() {
    move_connections(false);
}

/// Three connections (two queued, one in the handshake) of a listener of
/// stack 0 that closes keeping them move to stack 1's, after a while
/// adrift (`wait`: the handshake completes meanwhile) or at once.
fn move_connections(wait: bool) {
    let mut n = net(true);
    // Everything the peer sends lands on queue 0, whose program closes its
    // listener (an old nginx worker); stack 1's listens afterwards (the
    // new worker).
    n.steer(|_| 0);
    let l0 = listen_any(&mut n, 0, 8090);
    // c1 sent a request; c2 sent one and its FIN; c3 is in the handshake
    // (our SYN-ACK is on its way back when the listener closes).
    let c1 = peer_connects(&mut n, 8090);
    n.peer.iface.tcp.send(c1, b"request one").unwrap();
    let c2 = peer_connects(&mut n, 8090);
    n.peer.iface.tcp.send(c2, b"request two").unwrap();
    n.peer.iface.tcp.shutdown(c2, false, true).unwrap();
    let _ = n.run_until(Duration::from_millis(50), |_| false);
    let c3 = n.peer.iface.tcp.socket_new();
    n.peer
        .iface
        .tcp_connect(c3, SocketAddrV4::new(OUR_IP, 8090), n.now)
        .unwrap();
    let _ = n.peer.poll(n.now);
    let _ = n.ours[0].poll(n.now);
    let kept = n.ours[0].iface.tcp.close_keeping(l0, n.now).unwrap();
    assert_eq!(kept, 3, "two queued connections and one in the handshake");
    assert_eq!(n.ours[0].iface.tcp.adrift_ports(), vec![8090]);
    let on_0 = |n: &Net| {
        let at = n.peer.iface.tcp.local_addr(c3).unwrap().unwrap();
        let s = &n.ours[0].iface.tcp;
        let h = s.find(SocketAddrV4::new(OUR_IP, 8090), at)?;
        Some(s.socket(h)?.state())
    };
    assert_eq!(on_0(&n), Some(State::SynReceived));
    if wait {
        // A while with nobody listening: the connections live on (c3's
        // handshake completes) and nothing is reset.
        let _ = n.run_until(Duration::from_millis(300), |_| false);
        assert_eq!(n.ours[0].iface.tcp.adrift_len(), 3);
        assert_eq!(on_0(&n), Some(State::Established));
    }
    let l1 = listen_any(&mut n, 1, 8090);
    let now = n.now;
    let [s0, s1] = &mut n.ours;
    let moved = s0
        .iface
        .tcp
        .export_adrift(8090, now, |image| s1.iface.tcp_import(image, now).is_ok());
    assert_eq!(moved, 3);
    assert_eq!(n.ours[0].iface.tcp.adrift_len(), 0);
    // Stack 1 accepts them in the order they were queued, reads the
    // requests and answers; the peer's segments still land on queue 0
    // and are handed over.
    let mut accepted = Vec::new();
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); 3];
    let mut eof = [false; 3];
    let mut answered = [false; 3];
    let mut buf = [0u8; 64];
    let ok = n.run_until(Duration::from_secs(5), |n| {
        while let Ok((h, _)) = n.ours[1].iface.tcp.accept(l1) {
            accepted.push(h);
        }
        for (i, &h) in accepted.iter().enumerate() {
            loop {
                match n.ours[1].iface.tcp.recv(h, &mut buf) {
                    Ok(0) => {
                        eof[i] = true;
                        break;
                    }
                    Ok(k) => got[i].extend_from_slice(&buf[..k]),
                    Err(_) => break,
                }
            }
            if !answered[i] && (!got[i].is_empty() || i == 2) {
                n.ours[1]
                    .iface
                    .tcp
                    .send(h, format!("answer {i}").as_bytes())
                    .unwrap();
                answered[i] = true;
            }
        }
        accepted.len() == 3 && answered.iter().all(|&a| a)
    });
    assert!(ok, "accepted {}, got {got:?}", accepted.len());
    assert_eq!(got[0], b"request one");
    assert_eq!(got[1], b"request two");
    assert!(eof[1] && !eof[0], "c2's FIN came with it, c1 sent none");
    let mut at_peer: Vec<Vec<u8>> = vec![Vec::new(); 3];
    let ok = n.run_until(Duration::from_secs(5), |n| {
        for (i, &c) in [c1, c2, c3].iter().enumerate() {
            if let Ok(k) = n.peer.iface.tcp.recv(c, &mut buf) {
                at_peer[i].extend_from_slice(&buf[..k]);
            }
        }
        (0..3).all(|i| at_peer[i] == format!("answer {i}").as_bytes())
    });
    assert!(ok, "the peer got {at_peer:?}");
    // c3, still opening when it moved, carries data both ways too.
    n.peer.iface.tcp.send(c3, b"late").unwrap();
    let mut late = Vec::new();
    let ok = n.run_until(Duration::from_secs(2), |n| {
        if let Ok(k) = n.ours[1].iface.tcp.recv(accepted[2], &mut buf) {
            late.extend_from_slice(&buf[..k]);
        }
        late == b"late"
    });
    assert!(ok, "c3's data after the move: {late:?}");
    for (q, s) in n.ours.iter().enumerate() {
        assert_eq!(s.iface.stats().drop_tcp_no_socket, 0, "stack {q} reset something");
        s.iface.tcp.check_invariants().unwrap();
    }
    for c in [c1, c2, c3] {
        assert!(n.peer.iface.tcp.socket(c).unwrap().state().synchronized());
    }
}

#[test]
fn connections_adrift_that_nobody_takes_are_reset_in_time() {
    let mut n = net(true);
    n.steer(|_| 0);
    let l0 = listen_any(&mut n, 0, 8091);
    let c = peer_connects(&mut n, 8091);
    n.peer.iface.tcp.send(c, b"anyone?").unwrap();
    let _ = n.run_until(Duration::from_millis(50), |_| false);
    assert_eq!(n.ours[0].iface.tcp.close_keeping(l0, n.now).unwrap(), 1);
    let start = n.now;
    let reset = n.run_until(Duration::from_secs(30), |n| {
        n.peer.iface.tcp.readiness(c).unwrap().error
    });
    assert!(reset, "the peer never learned");
    let took = n.now.saturating_since(start);
    assert!(
        took >= accel_stack::iface::ADRIFT_MAX
            && took < accel_stack::iface::ADRIFT_MAX + Duration::from_secs(1),
        "reset after {took:?}"
    );
    assert_eq!(n.ours[0].iface.tcp.adrift_len(), 0);
    assert_eq!(n.ours[0].iface.tcp.len(), 0, "nothing left in the table");
    n.ours[0].iface.tcp.check_invariants().unwrap();
}

#[test]
fn an_image_this_listener_would_not_have_negotiated_is_refused() {
    let mut n = net(true);
    n.steer(|_| 0);
    let l0 = listen_any(&mut n, 0, 8092);
    let _c = peer_connects(&mut n, 8092);
    n.ours[0].iface.tcp.close_keeping(l0, n.now).unwrap();
    // Stack 1 listens without window scaling; the connection scales.
    let l1 = n.ours[1].iface.tcp.socket_new();
    n.ours[1].iface.tcp.config_mut(l1).unwrap().window_scaling = false;
    n.ours[1]
        .iface
        .tcp_bind(l1, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8092))
        .unwrap();
    n.ours[1].iface.tcp.listen(l1, 16).unwrap();
    let now = n.now;
    let [s0, s1] = &mut n.ours;
    let mut errors = Vec::new();
    let moved = s0
        .iface
        .tcp
        .export_adrift(8092, now, |image| match s1.iface.tcp_import(image, now) {
            Ok(_) => true,
            Err(e) => {
                errors.push(e);
                false
            }
        });
    assert_eq!(moved, 0);
    assert_eq!(errors, vec![accel_stack::Errno::EINVAL]);
    assert_eq!(n.ours[0].iface.tcp.adrift_len(), 1, "kept where it was");
    assert!(n.ours[1].iface.tcp.accept(l1).is_err());
    n.ours[1].iface.tcp.check_invariants().unwrap();
}
