//! Hostile peers against one connection, over the in-memory pair with a
//! simulated clock (the stack-level half of issue 13, part 3; the
//! end-to-end half is `tests/tests/hostile.rs`): a blind attacker who
//! knows the connection's 4-tuple but not its sequence numbers forges
//! RSTs, SYNs and data with unacceptable ACKs (RFC 5961); segments outside
//! the window, with bad checksums, bad lengths, garbage IP options; ARP
//! replies claiming the peer's address. Each is counted (in the
//! interface's counters) and dropped, challenge ACKs are rate-limited,
//! and the legitimate peer's connection goes on, byte-exact.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use accel_stack::iface::TcpHandle;
use accel_stack::wire::{
    ArpOperation, EtherType, EthernetAddress, Ipv4Packet, SeqNumber, TcpControl, TcpRepr,
};
use common::raw::{arp, ethernet, ipv4_tcp, parse_tcp, tcp_frame};
use common::{net, Net, B_IP, B_MAC};

const PORT: u16 = 80;
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);
const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x77, 9]);
const FAKE_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x66, 6]);
const PEER_PORT: u16 = 40_000;
const PEER_ISS: u32 = 1_000_000;

/// A raw peer's connection to B: B's handle and the sequence numbers.
struct Conn {
    h: TcpHandle,
    /// The peer's next sequence number (B's RCV.NXT).
    seq: SeqNumber,
    /// B's next sequence number (what the peer acknowledges).
    ack: SeqNumber,
}

fn peer() -> SocketAddrV4 {
    SocketAddrV4::new(PEER_IP, PEER_PORT)
}

fn server() -> SocketAddrV4 {
    SocketAddrV4::new(B_IP, PORT)
}

fn inject(n: &mut Net, mac: EthernetAddress, repr: &TcpRepr, payload: &[u8]) {
    n.inject_b(&tcp_frame(mac, B_MAC, peer(), server(), repr, payload));
}

/// B's segments to the peer since the last call, with the Ethernet
/// destination each went to.
fn sent(n: &mut Net) -> Vec<(EthernetAddress, TcpRepr, Vec<u8>)> {
    n.sent_by_b()
        .iter()
        .filter_map(|f| {
            let dst = EthernetAddress([f[0], f[1], f[2], f[3], f[4], f[5]]);
            parse_tcp(f)
                .filter(|(_, to, _, _)| *to == peer())
                .map(|(_, _, r, p)| (dst, r, p))
        })
        .collect()
}

/// A listener on B and a connection to it from the raw peer (B learned
/// the peer's MAC from its ARP request).
fn connect(n: &mut Net) -> Conn {
    let l = n.b.iface.tcp.socket_new();
    n.b.iface.tcp_bind(l, server()).unwrap();
    n.b.iface.tcp.listen(l, 16).unwrap();
    n.inject_b(&arp(
        ArpOperation::Request,
        PEER_MAC,
        PEER_IP,
        EthernetAddress([0; 6]),
        B_IP,
    ));
    n.poll_b();
    let syn = TcpRepr {
        control: TcpControl::Syn,
        seq_number: SeqNumber(PEER_ISS),
        window_len: 65_535,
        max_seg_size: Some(1460),
        ..TcpRepr::default()
    };
    inject(n, PEER_MAC, &syn, &[]);
    n.poll_b();
    let got = sent(n);
    let syn_ack = got
        .iter()
        .find(|(_, r, _)| r.control == TcpControl::Syn)
        .unwrap()
        .1;
    let c = Conn {
        h: l,
        seq: SeqNumber(PEER_ISS + 1),
        ack: syn_ack.seq_number + 1,
    };
    inject(n, PEER_MAC, &c.segment(0), &[]);
    n.poll_b();
    let (h, _) = n.b.iface.tcp.accept(l).expect("accepted");
    Conn { h, ..c }
}

impl Conn {
    /// A plain segment at the peer's sequence number plus `off`.
    fn segment(&self, off: u32) -> TcpRepr {
        TcpRepr {
            seq_number: self.seq + off as usize,
            ack_number: Some(self.ack),
            window_len: 65_535,
            ..TcpRepr::default()
        }
    }
}

/// IPv4 packet `p` with `opts` (a multiple of 4 bytes) inserted as its
/// options, lengths and header checksum fixed.
fn with_ip_options(p: &[u8], opts: &[u8]) -> Vec<u8> {
    let mut out = p[..20].to_vec();
    out.extend_from_slice(opts);
    out.extend_from_slice(&p[20..]);
    let mut ip = Ipv4Packet::new_unchecked(&mut out[..]);
    ip.set_header_len((20 + opts.len()) as u8);
    ip.set_total_len((p.len() + opts.len()) as u16);
    ip.fill_checksum();
    out
}

#[test]
fn blind_injection_is_challenged_counted_and_the_connection_survives() {
    let mut n = net();
    let c = connect(&mut n);
    sent(&mut n);
    let before = n.b.iface.stats();

    // 100 rounds in 100 ms of simulated time: an in-window RST that is
    // not exact, a SYN, data acknowledging what B never sent, data far
    // outside the window.
    for i in 0..100u32 {
        let rst = TcpRepr {
            control: TcpControl::Rst,
            ack_number: None,
            ..c.segment(1 + 577 * i)
        };
        inject(&mut n, FAKE_MAC, &rst, &[]);
        let syn = TcpRepr {
            control: TcpControl::Syn,
            ack_number: None,
            ..c.segment(3 * i)
        };
        inject(&mut n, FAKE_MAC, &syn, &[]);
        let bad_ack = TcpRepr {
            ack_number: Some(c.ack + 1_000_000 + i as usize),
            ..c.segment(0)
        };
        inject(&mut n, FAKE_MAC, &bad_ack, b"forged");
        inject(&mut n, FAKE_MAC, &c.segment(10_000_000 + i), b"far away");
        n.poll_b();
        n.now += Duration::from_millis(1);
    }
    let out = sent(&mut n);
    let st = n.b.iface.stats();
    assert_eq!(st.tcp_rst_challenged - before.tcp_rst_challenged, 100, "{st:?}");
    assert_eq!(st.tcp_syn_challenged - before.tcp_syn_challenged, 100, "{st:?}");
    assert_eq!(st.tcp_ack_invalid - before.tcp_ack_invalid, 100, "{st:?}");
    assert_eq!(st.tcp_out_of_window - before.tcp_out_of_window, 100, "{st:?}");
    // The out-of-window data segments get their duplicate ACK each (as
    // Linux); the 300 challenges share one per 500 ms (the first round's
    // going out with that round's duplicate ACK: one ACK owed is one ACK).
    assert_eq!(st.tcp_challenge_acks - before.tcp_challenge_acks, 1, "{st:?}");
    assert_eq!(
        st.tcp_challenge_acks_limited - before.tcp_challenge_acks_limited,
        299,
        "{st:?}"
    );
    assert_eq!(out.len(), 100, "ACKs sent");
    assert!(out
        .iter()
        .all(|(_, r, p)| r.control == TcpControl::None && p.is_empty()));

    // Bad checksums and lengths, garbage IP options, a source route.
    let good = ipv4_tcp(peer(), server(), &c.segment(0), b"x");
    let mut bad_tcp_sum = good.clone();
    bad_tcp_sum[20 + 16] ^= 0x5a;
    let mut bad_ip_sum = good.clone();
    bad_ip_sum[10] ^= 0x5a;
    let mut too_long = good.clone();
    too_long[2..4].copy_from_slice(&((good.len() + 100) as u16).to_be_bytes());
    Ipv4Packet::new_unchecked(&mut too_long[..]).fill_checksum();
    let mut bad_offset = good.clone();
    bad_offset[20 + 12] = 0xf0; // data offset 60 > segment
    let garbage_opts = with_ip_options(&good, &[0x99, 0x00, 0xff, 0xff]);
    let source_route = with_ip_options(&good, &[0x83, 0x07, 0x04, 198, 18, 0, 1, 0]);
    for p in [
        &bad_tcp_sum,
        &bad_ip_sum,
        &too_long,
        &bad_offset,
        &garbage_opts,
        &source_route,
    ] {
        n.inject_b(&ethernet(FAKE_MAC, B_MAC, EtherType::Ipv4, p));
    }
    n.poll_b();
    let st2 = n.b.iface.stats();
    assert_eq!(st2.drop_tcp_checksum - st.drop_tcp_checksum, 1);
    assert_eq!(st2.drop_ip_checksum - st.drop_ip_checksum, 1);
    assert_eq!(st2.drop_ip_malformed - st.drop_ip_malformed, 1, "too long");
    assert_eq!(st2.drop_tcp_malformed - st.drop_tcp_malformed, 1, "bad offset");
    assert_eq!(st2.drop_ip_options - st.drop_ip_options, 2);
    assert!(sent(&mut n).is_empty(), "nothing answers them");

    // Well-formed IP options that mean nothing to us (router alert) are
    // accepted, as on Linux: the peer's data arrives, byte-exact.
    let alert = with_ip_options(
        &ipv4_tcp(peer(), server(), &c.segment(0), b"hello "),
        &[0x94, 0x04, 0x00, 0x00],
    );
    n.inject_b(&ethernet(PEER_MAC, B_MAC, EtherType::Ipv4, &alert));
    inject(&mut n, PEER_MAC, &c.segment(6), b"world");
    n.poll_b();
    let mut buf = [0u8; 64];
    let got = n.b.iface.tcp.recv(c.h, &mut buf).unwrap();
    assert_eq!(&buf[..got], b"hello world");
    assert_eq!(
        n.b.iface.tcp.socket(c.h).unwrap().state(),
        accel_stack::tcp::State::Established
    );

    // 500 ms after the last challenge, a forged RST draws one again (a
    // peer that really lost the connection learns of it).
    n.now += Duration::from_millis(500);
    n.poll_b();
    sent(&mut n); // the delayed ACK of the data
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ack_number: None,
        ..c.segment(100)
    };
    inject(&mut n, FAKE_MAC, &rst, &[]);
    n.poll_b();
    assert_eq!(sent(&mut n).len(), 1);
    // The exact RST, which only the peer can know, ends it.
    let exact = TcpRepr {
        control: TcpControl::Rst,
        ack_number: None,
        ..c.segment(11)
    };
    inject(&mut n, PEER_MAC, &exact, &[]);
    n.poll_b();
    assert_ne!(
        n.b.iface.tcp.socket(c.h).unwrap().state(),
        accel_stack::tcp::State::Established
    );
}

/// B's frames since the last call: ARP requests B sent to ask the peer
/// (answered from the peer's card when `alive`), and the TCP segments to
/// the peer with the Ethernet destination each went to.
fn drain(n: &mut Net, alive: bool) -> (usize, Vec<(EthernetAddress, TcpRepr, Vec<u8>)>) {
    use accel_stack::wire::{ArpPacket, ArpRepr, EthernetFrame};
    let mut asked = 0;
    let mut segs = Vec::new();
    for f in n.sent_by_b() {
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        if eth.ethertype() == EtherType::Arp {
            let r = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
            if r.operation == ArpOperation::Request && r.target_protocol_addr == PEER_IP {
                asked += 1;
                assert_eq!(eth.dst_addr(), PEER_MAC, "the old address is asked alone");
                if alive {
                    n.inject_b(&arp(ArpOperation::Reply, PEER_MAC, PEER_IP, B_MAC, B_IP));
                }
            }
        } else if let Some((_, _, r, p)) = parse_tcp(&f).filter(|(_, to, _, _)| *to == peer()) {
            segs.push((eth.dst_addr(), r, p));
        }
    }
    (asked, segs)
}

#[test]
fn arp_replies_claiming_the_peer_do_not_hijack_its_connection() {
    let mut n = net();
    let c = connect(&mut n);
    sent(&mut n);
    // Unsolicited replies and gratuitous requests, 200 of them over 10 s;
    // the peer answers when B asks it.
    let mut asked = 0;
    for i in 0..200 {
        let (op, dst) = if i % 2 == 0 {
            (ArpOperation::Reply, B_MAC)
        } else {
            (ArpOperation::Request, EthernetAddress::BROADCAST)
        };
        let target = if op == ArpOperation::Reply { B_IP } else { PEER_IP };
        n.inject_b(&arp(op, FAKE_MAC, PEER_IP, dst, target));
        n.poll_b();
        asked += drain(&mut n, true).0;
        n.poll_b();
        n.now += Duration::from_millis(50);
    }
    n.poll_b();
    let st = n.b.iface.stats();
    assert_eq!((st.drop_arp_conflict, st.arp_claims_won), (200, 0), "{st:?}");
    assert_eq!(asked, 200, "each claim verified with the peer");
    n.b.iface.tcp.send(c.h, b"to the real peer").unwrap();
    n.poll_b();
    let (_, out) = drain(&mut n, true);
    let data: Vec<_> = out.iter().filter(|(_, _, p)| !p.is_empty()).collect();
    assert_eq!(data.len(), 1, "{out:?}");
    assert_eq!(data[0].0, PEER_MAC, "sent to the real peer's card");
    assert_eq!(data[0].2, b"to the real peer");

    // The peer's card is replaced (it no longer answers): the new one's
    // claim wins 100 ms later, and the retransmission reaches it.
    n.inject_b(&arp(ArpOperation::Reply, FAKE_MAC, PEER_IP, B_MAC, B_IP));
    n.poll_b();
    assert_eq!(drain(&mut n, false).0, 1);
    n.now += Duration::from_millis(100);
    n.poll_b();
    assert_eq!(n.b.iface.stats().arp_claims_won, 1);
    assert_eq!(n.b.iface.neighbour(PEER_IP, n.now), Some(FAKE_MAC));
    n.now += Duration::from_secs(2);
    n.poll_b();
    let (_, out) = drain(&mut n, false);
    assert!(
        out.iter()
            .any(|(mac, _, p)| *mac == FAKE_MAC && p == b"to the real peer"),
        "{out:?}"
    );
}
