//! The wire parsers, one entry point per format: each parses arbitrary
//! bytes (nothing may panic, whatever they say), reads every field of a
//! view that passed `check_len`, and for whatever parses, emits the
//! `Repr` again and checks that the emitted bytes parse back to the same
//! `Repr`. The Ethernet entry also runs the tracer's one-line summary,
//! which parses whole frames.

use core::net::{IpAddr, Ipv4Addr};

use accel_stack::phy::tracer;
use accel_stack::wire::{
    ArpPacket, ArpRepr, ChecksumCaps, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Ipv4Packet,
    Ipv4Repr, TcpOption, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

use crate::bytes::Bytes;

/// Both checksum duties: software verifies, and the device did.
fn all_caps() -> [ChecksumCaps; 2] {
    [ChecksumCaps::default(), ChecksumCaps::ignored()]
}

/// The address pair the first input byte picks (IPv4 mostly; the
/// pseudo-header code also serves IPv6).
fn addrs(b: u8) -> (IpAddr, IpAddr) {
    match b % 4 {
        0 => (
            Ipv4Addr::new(198, 18, 0, 1).into(),
            Ipv4Addr::new(198, 18, 0, 2).into(),
        ),
        1 => (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::BROADCAST.into()),
        2 => ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap()),
        _ => (Ipv4Addr::new(10, 0, 0, 1).into(), "::1".parse().unwrap()),
    }
}

/// Ethernet II: the view, the `Repr` round trip, and the tracer's summary.
pub fn ethernet(data: &[u8]) {
    let _ = tracer::summarize(data);
    let _ = tracer::FrameSummary::with_checksums(data, ChecksumCaps::ignored()).to_string();
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (
        frame.dst_addr(),
        frame.src_addr(),
        frame.ethertype(),
        frame.payload(),
    );
    let Ok(repr) = EthernetRepr::parse(&frame) else {
        return;
    };
    let mut out = vec![0; repr.buffer_len(frame.payload().len())];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    let again = EthernetFrame::new_checked(&out[..]).expect("an emitted frame parses");
    assert_eq!(EthernetRepr::parse(&again), Ok(repr));
    assert_eq!(
        &out[..repr.header_len()],
        &data[..repr.header_len()],
        "header bytes round trip"
    );
}

/// ARP: every field of a checked view; what parses round-trips byte for byte.
pub fn arp(data: &[u8]) {
    let packet = ArpPacket::new_unchecked(data);
    if packet.check_len().is_ok() {
        let _ = (packet.hardware_type(), packet.protocol_type(), packet.operation());
        let _ = (packet.hardware_len(), packet.protocol_len());
        let _ = (packet.source_hardware_addr(), packet.source_protocol_addr());
        let _ = (packet.target_hardware_addr(), packet.target_protocol_addr());
    }
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return;
    };
    let mut out = vec![0; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
    let again = ArpPacket::new_checked(&out[..]).expect("an emitted ARP packet parses");
    assert_eq!(ArpRepr::parse(&again), Ok(repr));
    assert_eq!(
        &out[..],
        &data[..out.len()],
        "an Ethernet/IPv4 ARP packet round-trips exactly"
    );
}

/// IPv4: the view and the `Repr` round trip (options are not emitted).
pub fn ipv4(data: &[u8]) {
    let packet = Ipv4Packet::new_unchecked(data);
    if packet.check_len().is_ok() {
        let _ = (packet.version(), packet.header_len(), packet.dscp(), packet.ecn());
        let _ = (
            packet.total_len(),
            packet.ident(),
            packet.ttl(),
            packet.checksum(),
        );
        let _ = (packet.dont_frag(), packet.more_frags(), packet.frag_offset());
        let _ = (packet.protocol(), packet.src_addr(), packet.dst_addr());
        let _ = (packet.verify_checksum(), packet.options(), packet.payload());
    }
    for caps in all_caps() {
        let Ok(repr) = Ipv4Repr::parse(&packet, &caps) else {
            continue;
        };
        assert_eq!(repr.payload_len, packet.payload().len());
        let mut out = vec![0; repr.buffer_len()];
        let mut view = Ipv4Packet::new_unchecked(&mut out[..]);
        repr.emit(&mut view, &ChecksumCaps::default());
        view.payload_mut().copy_from_slice(packet.payload());
        let again = Ipv4Packet::new_checked(&out[..]).expect("an emitted IPv4 packet parses");
        assert_eq!(Ipv4Repr::parse(&again, &ChecksumCaps::default()), Ok(repr));
        assert_eq!(again.payload(), packet.payload());
    }
}

/// ICMPv4: the view and the `Repr` round trip.
pub fn icmpv4(data: &[u8]) {
    let packet = Icmpv4Packet::new_unchecked(data);
    if packet.check_len().is_ok() {
        let _ = (packet.msg_type(), packet.msg_code(), packet.checksum());
        let _ = (packet.echo_ident(), packet.echo_seq_no(), packet.next_hop_mtu());
        let _ = (packet.verify_checksum(), packet.payload());
    }
    for caps in all_caps() {
        let Ok(repr) = Icmpv4Repr::parse(&packet, &caps) else {
            continue;
        };
        let mut out = vec![0; repr.buffer_len()];
        repr.emit(
            &mut Icmpv4Packet::new_unchecked(&mut out[..]),
            &ChecksumCaps::default(),
        );
        let again = Icmpv4Packet::new_checked(&out[..]).expect("an emitted ICMP message parses");
        let back = Icmpv4Repr::parse(&again, &ChecksumCaps::default()).expect("and its Repr parses");
        // A quoted header loses its options, so compare what is kept.
        assert_eq!(back.buffer_len(), repr.buffer_len());
        if matches!(
            repr,
            Icmpv4Repr::EchoRequest { .. } | Icmpv4Repr::EchoReply { .. }
        ) {
            assert_eq!(back, repr, "echo messages round-trip exactly");
        }
    }
}

/// TCP: the view, every option, and the `Repr` round trip (emit writes as
/// many SACK blocks as fit beside the other options).
pub fn tcp(data: &[u8]) {
    let mut b = Bytes::new(data);
    let (src, dst) = addrs(b.u8());
    let data = b.take(data.len());
    let packet = TcpPacket::new_unchecked(data);
    if packet.check_len().is_ok() {
        let _ = (
            packet.src_port(),
            packet.dst_port(),
            packet.seq_number(),
            packet.ack_number(),
        );
        let _ = (
            packet.fin(),
            packet.syn(),
            packet.rst(),
            packet.psh(),
            packet.ack(),
            packet.urg(),
        );
        let _ = (packet.ece(), packet.cwr(), packet.window_len(), packet.checksum());
        let _ = (
            packet.urgent_at(),
            packet.options(),
            packet.payload(),
            packet.segment_len(),
        );
        let _ = packet.verify_checksum(src, dst);
        for option in packet.options_iter().flatten() {
            let mut out = vec![0; option.buffer_len()];
            assert_eq!(option.emit(&mut out), out.len());
            let (back, len) = TcpOption::parse(&out).expect("an emitted option parses");
            assert_eq!(len, out.len());
            match option {
                TcpOption::Unknown { .. } => {}
                // Only the blocks present are emitted.
                TcpOption::SackRange(_) => assert!(matches!(back, TcpOption::SackRange(_))),
                _ => assert_eq!(back, option),
            }
        }
    }
    for caps in all_caps() {
        let Ok(repr) = TcpRepr::parse(&packet, src, dst, &caps) else {
            continue;
        };
        assert_eq!(repr.payload_len, packet.payload().len());
        let mut out = vec![0; repr.buffer_len()];
        let h = repr.header_len();
        assert!(h <= 60 && h % 4 == 0, "header length {h}");
        out[h..].copy_from_slice(packet.payload());
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut out[..]),
            src,
            dst,
            &ChecksumCaps::default(),
        );
        let again = TcpPacket::new_checked(&out[..]).expect("an emitted segment parses");
        let mut back = TcpRepr::parse(&again, src, dst, &ChecksumCaps::default()).expect("and its Repr");
        let kept: Vec<_> = repr.sack_ranges.iter().flatten().collect();
        let got: Vec<_> = back.sack_ranges.iter().flatten().collect();
        assert!(
            kept.starts_with(&got),
            "SACK blocks {got:?} not a prefix of {kept:?}"
        );
        back.sack_ranges = repr.sack_ranges;
        assert_eq!(back, repr);
        assert_eq!(again.payload(), packet.payload());
    }
}

/// UDP: the view and the `Repr` round trip.
pub fn udp(data: &[u8]) {
    let mut b = Bytes::new(data);
    let (src, dst) = addrs(b.u8());
    let data = b.take(data.len());
    let packet = UdpPacket::new_unchecked(data);
    if packet.check_len().is_ok() {
        let _ = (
            packet.src_port(),
            packet.dst_port(),
            packet.length(),
            packet.checksum(),
        );
        let _ = (packet.verify_checksum(src, dst), packet.payload());
    }
    for caps in all_caps() {
        let Ok(repr) = UdpRepr::parse(&packet, src, dst, &caps) else {
            continue;
        };
        let mut out = vec![0; repr.buffer_len()];
        out[8..].copy_from_slice(packet.payload());
        repr.emit(
            &mut UdpPacket::new_unchecked(&mut out[..]),
            src,
            dst,
            &ChecksumCaps::default(),
        );
        let again = UdpPacket::new_checked(&out[..]).expect("an emitted datagram parses");
        assert_eq!(
            UdpRepr::parse(&again, src, dst, &ChecksumCaps::default()),
            Ok(repr)
        );
        assert_eq!(again.payload(), packet.payload());
    }
}
