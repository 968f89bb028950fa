//! The interface's input other than TCP connections: ARP, ICMP and UDP
//! (and whatever else a frame may be), with UDP sockets in use.
//!
//! The stack has UDP sockets bound to ports 7 and 53 (the latter
//! connected to the peer) and a TCP listener. The input is a list of
//! frames and calls: raw frames; ARP packets with any fields; IPv4 packets
//! with any header fields, carrying ICMP (echo requests, errors quoting
//! our datagrams), UDP (to our ports or not, any length field, good, zero
//! or bad checksums) or anything; the program's UDP calls; the passing of
//! time.
//!
//! Checked (a panic is the target's crash): after every poll, the stack's
//! invariants and the well-formedness of everything it sent
//! ([`crate::net`]); an echo request it answers is answered with the same
//! identifier, sequence number and data; a well-formed datagram to a
//! bound socket is what the program then reads, from the right sender.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use accel_stack::iface::UdpHandle;
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::{
    ArpPacket, ChecksumCaps, EtherType, EthernetAddress, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet,
    UdpPacket,
};
use accel_stack::Errno;

use crate::bytes::Bytes;
use crate::net::{eth_header, ip_frame, Out, Rig, P_IP, P_MAC, S_IP, S_MAC};

/// Most operations one input runs.
const MAX_OPS: usize = 256;

struct Iface {
    rig: Rig,
    /// Bound to port 7.
    echo: UdpHandle,
    /// Bound to 53, connected to the peer's port 53.
    dns: UdpHandle,
    /// Sockets the program made along the way.
    extra: Vec<UdpHandle>,
}

/// An address the input picks: ours, the peer's, broadcasts, or any.
fn addr(b: &mut Bytes) -> Ipv4Addr {
    match b.below(6) {
        0 => S_IP,
        1 => P_IP,
        2 => Ipv4Addr::BROADCAST,
        3 => Ipv4Addr::new(198, 18, 0, 255),
        4 => Ipv4Addr::new(198, 18, 0, b.u8()),
        _ => Ipv4Addr::from(b.u32()),
    }
}

/// A port the input picks: one of ours or any.
fn port(b: &mut Bytes) -> u16 {
    match b.below(4) {
        0 => 7,
        1 => 53,
        2 => 0,
        _ => b.u16(),
    }
}

impl Iface {
    fn new() -> Iface {
        let mut rig = Rig::new(TcpConfig::default(), |_| {});
        rig.only_to_peer = false; // ARP from the input may teach it anything
        let iface = &mut rig.stack.iface;
        let echo = iface.udp_socket();
        iface
            .udp_bind(echo, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7))
            .expect("bind 7");
        let dns = iface.udp_socket();
        iface.udp_bind(dns, SocketAddrV4::new(S_IP, 53)).expect("bind 53");
        iface
            .udp_connect(dns, SocketAddrV4::new(P_IP, 53))
            .expect("connect 53");
        let l = iface.tcp.socket_new();
        iface
            .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80))
            .expect("bind 80");
        iface.tcp.listen(l, 4).expect("listen");
        Iface {
            rig,
            echo,
            dns,
            extra: Vec::new(),
        }
    }

    /// Every socket the program holds.
    fn sockets(&self) -> Vec<UdpHandle> {
        let mut all = vec![self.echo, self.dns];
        all.extend(&self.extra);
        all
    }

    /// Reads and discards everything queued on every socket.
    fn drain(&mut self) {
        let mut buf = vec![0u8; 70_000];
        for h in self.sockets() {
            while let Some(s) = self.rig.stack.iface.udp_mut(h) {
                match s.recv_from(&mut buf) {
                    Ok(_) | Err(Errno::ECONNREFUSED) | Err(Errno::EHOSTUNREACH) => {}
                    Err(_) => break,
                }
            }
        }
    }

    fn ipv4(&mut self, b: &mut Bytes) {
        let src = addr(b);
        let dst = addr(b);
        let other = IpProtocol::Unknown(b.u8());
        let proto = b.pick(&[IpProtocol::Icmp, IpProtocol::Udp, IpProtocol::Tcp, other]);
        let mut check = None;
        let payload = match proto {
            IpProtocol::Icmp => self.icmp_payload(b, &mut check),
            IpProtocol::Udp => self.udp_payload(b, src, dst, &mut check),
            _ => b.slice(1).to_vec(),
        };
        let mut frame = ip_frame(src, dst, proto, &payload);
        // Header fields the input may change (the header checksum is
        // fixed up after, unless the input says not to).
        let hdr = b.u8();
        let ip_len = frame.len() - 14;
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
            if hdr & 1 != 0 {
                ip.set_ttl(b.u8());
            }
            if hdr & 2 != 0 {
                ip.set_frag_offset(b.u16());
                ip.set_more_frags(b.bool());
            }
            if hdr & 4 != 0 {
                ip.set_total_len(b.u16());
            }
            if hdr & 8 != 0 {
                ip.set_header_len(b.u8());
            }
            if hdr & 16 != 0 {
                ip.set_version(b.u8());
            }
            if hdr & 0x1f != 0 {
                check = None; // the header may no longer mean what it did
            }
            // (A header length beyond the packet leaves nothing to sum.)
            if hdr & 32 == 0 && usize::from(ip.header_len()) <= ip_len {
                ip.fill_checksum();
            }
        }
        if hdr & 64 != 0 {
            // Trailing bytes (Ethernet padding, or lies).
            frame.extend_from_slice(b.slice(1));
        }
        if hdr & 32 != 0 {
            check = None;
        }
        self.rig.inject(&frame);
        self.poll(check);
    }

    /// An ICMP message: an echo request, an error quoting one of our
    /// datagrams, or anything.
    fn icmp_payload(&mut self, b: &mut Bytes, check: &mut Option<Check>) -> Vec<u8> {
        let mut m = match b.below(3) {
            0 => {
                let data = b.slice(8);
                let mut m = vec![8, 0, 0, 0];
                let (ident, seq) = (b.u16(), b.u16());
                m.extend_from_slice(&ident.to_be_bytes());
                m.extend_from_slice(&seq.to_be_bytes());
                m.extend_from_slice(data);
                *check = Some(Check::Echo(ident, seq, data.to_vec()));
                m
            }
            1 => {
                // Destination unreachable or time exceeded, quoting a
                // datagram from one of our ports.
                let mut m = vec![b.pick(&[3, 11, 3]), b.u8() % 16, 0, 0, 0, 0, 0, 0];
                let quoted_dst = addr(b);
                let mut q = ip_frame(S_IP, quoted_dst, IpProtocol::Udp, &[0; 8])[14..].to_vec();
                q[20..22].copy_from_slice(&port(b).to_be_bytes());
                q[22..24].copy_from_slice(&port(b).to_be_bytes());
                let cut = b.below(q.len() + 1);
                m.extend_from_slice(&q[..q.len() - cut]);
                m
            }
            _ => {
                let mut m = vec![b.u8(), b.u8(), 0, 0];
                m.extend_from_slice(b.slice(1));
                m
            }
        };
        if m.len() >= 4 && b.u8() & 1 == 0 {
            let mut p = Icmpv4Packet::new_unchecked(&mut m[..]);
            p.set_checksum(0);
            let sum = !accel_stack::wire::checksum::sum(p.into_inner());
            m[2..4].copy_from_slice(&sum.to_be_bytes());
        } else {
            *check = None;
        }
        m
    }

    /// A UDP datagram: to one of our ports or not, with its length field
    /// and checksum right or not.
    fn udp_payload(
        &mut self,
        b: &mut Bytes,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        check: &mut Option<Check>,
    ) -> Vec<u8> {
        let (sport, dport) = (port(b), port(b));
        let data = b.slice(4).to_vec();
        let mut d = vec![0u8; 8 + data.len()];
        d[8..].copy_from_slice(&data);
        let mut u = UdpPacket::new_unchecked(&mut d[..]);
        u.set_src_port(sport);
        u.set_dst_port(dport);
        let how = b.u8();
        u.set_length(if how & 1 == 0 {
            (8 + data.len()) as u16
        } else {
            b.u16()
        });
        let fits = usize::from(u.length()) <= 8 + data.len();
        match (how >> 1) & 3 {
            // (A length field beyond the datagram leaves nothing to sum.)
            0 | 1 if fits => u.fill_checksum(src.into(), dst.into()),
            0 | 1 => u.set_checksum(0x1234),
            2 => u.set_checksum(0),
            _ => u.set_checksum(b.u16()),
        }
        // Delivered, if all is well and it is for a socket bound there.
        let good = how & 1 == 0 && (how >> 1) & 3 != 3;
        let to_us = dst == S_IP || dst == Ipv4Addr::BROADCAST || dst == Ipv4Addr::new(198, 18, 0, 255);
        if good && to_us && (dport == 7 || dport == 53 && dst == S_IP) {
            let h = if dport == 7 { self.echo } else { self.dns };
            *check = Some(Check::Delivered(h, SocketAddrV4::new(src, sport), data));
        }
        d
    }

    /// Polls, checks every frame the stack sent and what `check` expects.
    fn poll(&mut self, check: Option<Check>) {
        let out = self.rig.poll();
        for o in &out {
            if let Out::Udp(repr, dst, payload) = o {
                // Only the program sends datagrams here, all of 0x5a.
                assert!(
                    payload.iter().all(|&b| b == 0x5a),
                    "a datagram the program did not send"
                );
                assert!(!dst.is_unspecified() && repr.src_port != 0, "{repr:?} to {dst}");
            }
        }
        match check {
            Some(Check::Echo(ident, seq, data)) => {
                let replies: Vec<_> = out
                    .iter()
                    .filter_map(|o| match o {
                        Out::Icmp(ip, bytes) => Some((ip, bytes)),
                        _ => None,
                    })
                    .collect();
                for (ip, bytes) in replies {
                    let p = Icmpv4Packet::new_checked(&bytes[..]).expect("checked by the rig");
                    let r = Icmpv4Repr::parse(&p, &ChecksumCaps::default()).expect("checked by the rig");
                    if let Icmpv4Repr::EchoReply {
                        ident: i,
                        seq_no,
                        data: d,
                    } = r
                    {
                        assert_eq!(
                            (i, seq_no, d),
                            (ident, seq, &data[..]),
                            "echo reply to {}",
                            ip.dst_addr
                        );
                    }
                }
            }
            Some(Check::Delivered(h, from, data)) => {
                let mut buf = vec![0u8; 70_000];
                let s = self
                    .rig
                    .stack
                    .iface
                    .udp_mut(h)
                    .expect("a socket the program holds");
                // An error reported by an earlier ICMP message comes first.
                let r = loop {
                    match s.recv_from(&mut buf) {
                        Err(Errno::ECONNREFUSED) | Err(Errno::EHOSTUNREACH) => continue,
                        r => break r,
                    }
                };
                let connected_elsewhere = h == self.dns && from != SocketAddrV4::new(P_IP, 53);
                if !connected_elsewhere {
                    let (n, got_from, full) = r.expect("a well-formed datagram to a bound port is delivered");
                    assert_eq!((&buf[..n], got_from, full), (&data[..], from, data.len()));
                }
            }
            None => {}
        }
        self.drain();
    }

    fn op(&mut self, b: &mut Bytes) {
        match b.below(9) {
            0 => {
                // A raw frame, to us or broadcast, or to anyone.
                let mut frame = b.slice(2).to_vec();
                if frame.len() >= 6 && b.bool() {
                    frame[..6].copy_from_slice(&S_MAC.0);
                }
                self.rig.inject(&frame);
                self.poll(None);
            }
            1 => {
                let mut frame = eth_header(
                    if b.bool() {
                        S_MAC
                    } else {
                        EthernetAddress::BROADCAST
                    },
                    EtherType::Arp,
                );
                let mut arp = [0u8; 28];
                let valid = b.u8();
                let mac = |b: &mut Bytes| match b.below(3) {
                    0 => P_MAC,
                    1 => EthernetAddress([b.u8(), b.u8(), b.u8(), b.u8(), b.u8(), b.u8()]),
                    _ => EthernetAddress([0; 6]),
                };
                let (sha, spa, tha, tpa) = (mac(b), addr(b), mac(b), addr(b));
                let op = b.pick(&[1u16, 2, 0, 3]);
                let mut p = ArpPacket::new_unchecked(&mut arp[..]);
                p.set_hardware_type(1);
                p.set_protocol_type(0x0800);
                p.set_hardware_len(6);
                p.set_protocol_len(4);
                p.set_operation(op.into());
                p.set_source_hardware_addr(&sha.0);
                p.set_source_protocol_addr(&spa.octets());
                p.set_target_hardware_addr(&tha.0);
                p.set_target_protocol_addr(&tpa.octets());
                // Then, maybe, header fields that do not fit.
                if valid & 1 != 0 {
                    arp[0..2].copy_from_slice(&b.u16().to_be_bytes());
                }
                if valid & 2 != 0 {
                    arp[2..4].copy_from_slice(&b.u16().to_be_bytes());
                }
                if valid & 4 != 0 {
                    arp[4] = b.u8();
                }
                if valid & 8 != 0 {
                    arp[5] = b.u8();
                }
                let cut = if valid & 16 != 0 { b.below(28) } else { 0 };
                frame.extend_from_slice(&arp[..28 - cut]);
                self.rig.inject(&frame);
                self.poll(None);
            }
            2..=4 => self.ipv4(b),
            5 => {
                // The program sends.
                let hs = self.sockets();
                let h = b.pick(&hs);
                let len = b.pick(&[0, 1, 1472, 1473, 65507, 65508, 70_000]);
                let dst = b.bool().then(|| SocketAddrV4::new(addr(b), port(b)));
                let _ = self.rig.stack.iface.udp_send_to(h, &vec![0x5a; len], dst);
                self.poll(None);
            }
            6 => {
                // A new socket, bound or connected, or one closed.
                let hs = self.sockets();
                let iface = &mut self.rig.stack.iface;
                match b.below(4) {
                    0 => {
                        let h = iface.udp_socket();
                        let _ = iface.udp_bind(h, SocketAddrV4::new(addr(b), port(b)));
                        self.extra.push(h);
                    }
                    1 => {
                        let h = iface.udp_socket();
                        let _ = iface.udp_connect(h, SocketAddrV4::new(addr(b), port(b)));
                        self.extra.push(h);
                    }
                    2 if !self.extra.is_empty() => {
                        let i = b.below(self.extra.len());
                        let h = self.extra.swap_remove(i);
                        iface.udp_close(h).expect("close a live socket");
                    }
                    _ => {
                        let _ = iface.udp_disconnect(b.pick(&hs));
                    }
                }
                self.poll(None);
            }
            7 => {
                let d = b.pick(&[1, 100, 1000, 3000, 61_000]);
                self.rig.answer_arp = b.bool();
                self.rig.advance(Duration::from_millis(d));
                self.poll(None);
            }
            _ => {
                // An echo request of any size, to our address.
                let n = usize::from(b.u16());
                let (ident, seq) = (b.u16(), b.u16());
                let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
                let mut m = vec![8, 0, 0, 0];
                m.extend_from_slice(&ident.to_be_bytes());
                m.extend_from_slice(&seq.to_be_bytes());
                m.extend_from_slice(&data);
                let sum = !accel_stack::wire::checksum::sum(&m);
                m[2..4].copy_from_slice(&sum.to_be_bytes());
                if m.len() + 20 <= usize::from(u16::MAX) {
                    self.rig.inject(&ip_frame(P_IP, S_IP, IpProtocol::Icmp, &m));
                    self.poll(Some(Check::Echo(ident, seq, data)));
                }
            }
        }
    }
}

/// What a frame's outcome must be.
enum Check {
    /// Any echo reply carries this identifier, sequence number and data.
    Echo(u16, u16, Vec<u8>),
    /// The socket now holds this datagram from this sender.
    Delivered(UdpHandle, SocketAddrV4, Vec<u8>),
}

/// The fuzz target's body (see the module docs).
pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mut t = Iface::new();
    for _ in 0..MAX_OPS {
        if b.is_empty() {
            break;
        }
        t.op(&mut b);
    }
    let iface = &t.rig.stack.iface;
    let s = iface.stats();
    assert!(s.rx_frames > 0);
}
