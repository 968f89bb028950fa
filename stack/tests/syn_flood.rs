//! A SYN flood from spoofed on-link addresses against a listener, over the
//! in-memory pair with a simulated clock: the backlog and the ARP queue
//! stay bounded, a legitimate client still connects (by SYN cookie) and
//! moves data both ways, cookies carry the MSS, window scale and SACK, a
//! forged or expired cookie makes nothing, and the embryonic connections
//! of the flood are given up once their addresses fail to resolve.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use accel_stack::iface::TcpHandle;
use accel_stack::phy::fault::FaultConfig;
use accel_stack::tcp::{State, TcpConfig};
use accel_stack::wire::{ArpOperation, EthernetAddress, SeqNumber, TcpControl, TcpRepr, TcpTimestamp};
use common::raw::{arp, parse_tcp, tcp_frame};
use common::{net_with_iface, Net, A_IP, B_IP, B_MAC};

const PORT: u16 = 80;

/// A and B on a /16, so that the flood's addresses are all on-link.
fn net16() -> Net {
    net_with_iface(FaultConfig::default(), TcpConfig::default(), |c| {
        c.prefix_len = 16
    })
}

fn listen(n: &mut Net, backlog: usize) -> TcpHandle {
    let l = n.b.iface.tcp.socket_new();
    n.b.iface
        .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT))
        .unwrap();
    n.b.iface.tcp.listen(l, backlog).unwrap();
    l
}

/// The i-th spoofed address: 198.18.1.0 on, never answering ARP.
fn spoofed(i: usize) -> SocketAddrV4 {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 1, 0)) + i as u32);
    SocketAddrV4::new(ip, 10_000 + (i % 50_000) as u16)
}

fn syn(seq: u32, mss: u16) -> TcpRepr {
    TcpRepr {
        control: TcpControl::Syn,
        seq_number: SeqNumber(seq),
        window_len: 64_240,
        max_seg_size: Some(mss),
        ..TcpRepr::default()
    }
}

/// `count` SYNs from spoofed addresses, starting with the `first`-th.
fn flood(n: &mut Net, first: usize, count: usize) {
    for i in first..first + count {
        let frame = tcp_frame(
            EthernetAddress([2, 0xee, 0, 0, (i >> 8) as u8, i as u8]),
            B_MAC,
            spoofed(i),
            SocketAddrV4::new(B_IP, PORT),
            &syn(i as u32 * 7919, 1460),
            &[],
        );
        n.inject_b(&frame);
    }
    n.poll_b();
}

/// A raw peer at `ip` whose address B has learned (from its ARP request).
struct Peer {
    ip: Ipv4Addr,
    mac: EthernetAddress,
}

impl Peer {
    fn new(n: &mut Net, last: u8) -> Peer {
        let p = Peer {
            ip: Ipv4Addr::new(198, 18, 0, last),
            mac: EthernetAddress([2, 0, 0, 0, 0x77, last]),
        };
        p.announce(n);
        p
    }

    /// Asks B for its address, which teaches B ours (again).
    fn announce(&self, n: &mut Net) {
        n.inject_b(&arp(
            ArpOperation::Request,
            self.mac,
            self.ip,
            EthernetAddress([0; 6]),
            B_IP,
        ));
        n.poll_b();
        n.sent_by_b();
    }

    fn send(&self, n: &mut Net, port: u16, repr: &TcpRepr, payload: &[u8]) {
        let from = SocketAddrV4::new(self.ip, port);
        n.inject_b(&tcp_frame(
            self.mac,
            B_MAC,
            from,
            SocketAddrV4::new(B_IP, PORT),
            repr,
            payload,
        ));
        n.poll_b();
    }

    /// The segments B sent to this peer's `port` since the last call.
    fn got(&self, n: &mut Net, port: u16) -> Vec<TcpRepr> {
        n.sent_by_b()
            .iter()
            .filter_map(|f| parse_tcp(f))
            .filter(|(_, to, _, _)| *to == SocketAddrV4::new(self.ip, port))
            .map(|(_, _, r, _)| r)
            .collect()
    }

    /// Sends a SYN from `port` (with window scale 7, SACK and timestamps,
    /// offering `mss`) and returns B's SYN-ACK.
    fn syn(&self, n: &mut Net, port: u16, mss: u16) -> TcpRepr {
        let s = TcpRepr {
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some(TcpTimestamp { tsval: 100, tsecr: 0 }),
            ..syn(u32::from(port) << 16, mss)
        };
        self.announce(n);
        self.send(n, port, &s, &[]);
        let got = self.got(n, port);
        assert_eq!(got.len(), 1, "one SYN-ACK: {got:?}");
        assert_eq!(got[0].control, TcpControl::Syn);
        got[0]
    }

    /// The ACK of `syn_ack` from `port`, echoing its timestamp.
    fn ack(&self, n: &mut Net, port: u16, syn_ack: &TcpRepr) {
        let a = TcpRepr {
            control: TcpControl::None,
            seq_number: syn_ack.ack_number.unwrap(),
            ack_number: Some(syn_ack.seq_number + 1),
            window_len: 1000,
            timestamp: syn_ack.timestamp.map(|t| TcpTimestamp {
                tsval: 101,
                tsecr: t.tsval,
            }),
            ..TcpRepr::default()
        };
        self.send(n, port, &a, &[]);
    }
}

fn accept_all(n: &mut Net, l: TcpHandle) -> Vec<(TcpHandle, SocketAddrV4)> {
    std::iter::from_fn(|| n.b.iface.tcp.accept(l).ok()).collect()
}

#[test]
fn a_client_connects_by_cookie_through_a_flood_and_data_flows_both_ways() {
    let mut n = net16();
    let backlog = 64;
    let l = listen(&mut n, backlog);
    flood(&mut n, 0, 2000);
    let st = n.b.iface.stats();
    assert_eq!(st.syn_cookies_sent, 2000 - backlog as u64, "{st:?}");
    assert_eq!(
        n.b.iface.tcp.len(),
        1 + backlog,
        "the listener and a full SYN backlog"
    );
    // One SYN-ACK per address waits for ARP, for at most 512 addresses.
    assert_eq!(st.drop_arp_pending_full, 2000 - 512, "{st:?}");

    // The legitimate client.
    let c = n.a.iface.tcp.socket_new();
    let now = n.now;
    n.a.iface
        .tcp_connect(c, SocketAddrV4::new(B_IP, PORT), now)
        .unwrap();
    let mut accepted = None;
    let ok = n.run_until(Duration::from_millis(500), |n| {
        accepted = accepted.or_else(|| n.b.iface.tcp.accept(l).ok());
        accepted.is_some() && n.a.iface.tcp.readiness(c).unwrap().writable
    });
    assert!(ok, "no connection through the flood: {:?}", n.b.iface.stats());
    let (h, remote) = accepted.unwrap();
    assert_eq!(*remote.ip(), A_IP);
    assert_eq!(n.b.iface.stats().syn_cookies_ok, 1);
    let info = n.b.iface.tcp.socket(h).unwrap().info();
    assert_eq!(info.snd_mss, 1460);
    assert!(info.sack && info.timestamps, "{info:?}");
    assert!(info.window_scale.is_some(), "{info:?}");

    // Data both ways, byte-exact.
    let up: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let down: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let (mut sent_up, mut sent_down, mut got_up, mut got_down) = (0, 0, Vec::new(), Vec::new());
    let mut buf = vec![0u8; 65536];
    let ok = n.run_until(Duration::from_secs(20), |n| {
        if sent_up < up.len() {
            sent_up += n.a.iface.tcp.send(c, &up[sent_up..]).unwrap_or(0);
        }
        if sent_down < down.len() {
            sent_down += n.b.iface.tcp.send(h, &down[sent_down..]).unwrap_or(0);
        }
        while let Ok(k @ 1..) = n.b.iface.tcp.recv(h, &mut buf) {
            got_up.extend_from_slice(&buf[..k]);
        }
        while let Ok(k @ 1..) = n.a.iface.tcp.recv(c, &mut buf) {
            got_down.extend_from_slice(&buf[..k]);
        }
        got_up.len() == up.len() && got_down.len() == down.len()
    });
    assert!(
        ok,
        "moved {} of {} up, {} of {} down",
        got_up.len(),
        up.len(),
        got_down.len(),
        down.len()
    );
    assert!(got_up == up && got_down == down, "the bytes differ");

    // The flood's embryonic connections go once ARP gives up on their
    // addresses (3 s), not after the SYN-ACK's retransmissions.
    n.run_until(Duration::from_secs(5), |_| false);
    let st = n.b.iface.stats();
    assert_eq!(st.syn_recv_dropped, backlog as u64, "{st:?}");
    assert_eq!(n.b.iface.tcp.len(), 2, "the listener and the connection");
    assert_eq!(n.b.iface.tcp.socket(h).unwrap().state(), State::Established);
}

#[test]
fn the_cookie_carries_mss_window_scale_and_sack_through_the_table() {
    let mut n = net16();
    let l = listen(&mut n, 4);
    flood(&mut n, 0, 4);
    let p = Peer::new(&mut n, 9);
    let syn_ack = p.syn(&mut n, 5001, 1400);
    assert_eq!(n.b.iface.stats().syn_cookies_sent, 1);
    assert_eq!(syn_ack.window_scale, Some(TcpConfig::default().rcv_scale()));
    assert!(syn_ack.sack_permitted && syn_ack.timestamp.is_some());
    let before = n.b.iface.tcp.len();
    p.ack(&mut n, 5001, &syn_ack);
    assert_eq!(n.b.iface.stats().syn_cookies_ok, 1);
    assert_eq!(n.b.iface.tcp.len(), before + 1);
    let got = accept_all(&mut n, l);
    assert_eq!(got.len(), 1);
    let info = n.b.iface.tcp.socket(got[0].0).unwrap().info();
    assert_eq!(info.snd_mss, 1300, "the cookie's MSS below the 1400 offered");
    assert_eq!(info.window_scale.map(|w| w.0), Some(7), "the peer's shift");
    assert!(info.sack && info.timestamps);
    assert_eq!(info.snd_wnd, 1000 << 7);
}

#[test]
fn a_forged_cookie_is_counted_reset_and_makes_nothing() {
    let mut n = net16();
    let _l = listen(&mut n, 8);
    let p = Peer::new(&mut n, 10);
    // Before any overflow an ACK for nothing is a plain stray: no cookie
    // is looked for.
    let forged = TcpRepr {
        control: TcpControl::None,
        seq_number: SeqNumber(5_000),
        ack_number: Some(SeqNumber(0xdead_beef)),
        window_len: 1000,
        ..TcpRepr::default()
    };
    p.send(&mut n, 6001, &forged, &[]);
    let st = n.b.iface.stats();
    assert_eq!((st.syn_cookies_failed, st.drop_tcp_no_socket), (0, 1));

    flood(&mut n, 0, 100);
    let (conns, socks) = (n.b.iface.tcp.conns_len(), n.b.iface.tcp.len());
    n.sent_by_b();
    for i in 0..50u32 {
        let f = TcpRepr {
            ack_number: Some(SeqNumber(0xdead_beef ^ i.wrapping_mul(2_654_435_761))),
            ..forged
        };
        p.send(&mut n, 6002 + i as u16, &f, b"GET / HTTP/1.0\r\n\r\n");
    }
    let st = n.b.iface.stats();
    assert_eq!(st.syn_cookies_failed, 50, "{st:?}");
    assert_eq!(st.syn_cookies_ok, 0);
    assert_eq!(n.b.iface.tcp.conns_len(), conns, "no connection made");
    assert_eq!(n.b.iface.tcp.len(), socks);
    let resets = (6002..6052)
        .filter(|&port| p.got(&mut n, port).iter().any(|r| r.control == TcpControl::Rst))
        .count();
    assert!(resets > 0, "each forged ACK is answered with a reset");
}

#[test]
fn a_cookie_expires_after_its_two_periods() {
    let mut n = net16();
    let l = listen(&mut n, 1);
    flood(&mut n, 0, 1);
    let p = Peer::new(&mut n, 11);
    let prompt = p.syn(&mut n, 7001, 1460);
    let late = p.syn(&mut n, 7002, 1460);
    assert_eq!(n.b.iface.stats().syn_cookies_sent, 2);
    // Acknowledged 30 s later: still good.
    n.now += Duration::from_secs(30);
    p.ack(&mut n, 7001, &prompt);
    assert_eq!(n.b.iface.stats().syn_cookies_ok, 1);
    assert_eq!(accept_all(&mut n, l).len(), 1);
    // 100 s on, the flood again keeps cookies in use ...
    n.now += Duration::from_secs(70);
    n.poll_b();
    flood(&mut n, 1, 1);
    assert_eq!(p.syn(&mut n, 7003, 1460).control, TcpControl::Syn);
    // ... but a cookie made 140 s ago is too old.
    n.now += Duration::from_secs(40);
    p.ack(&mut n, 7002, &late);
    let st = n.b.iface.stats();
    assert_eq!((st.syn_cookies_ok, st.syn_cookies_failed), (1, 1), "{st:?}");
    assert!(accept_all(&mut n, l).is_empty());
}
