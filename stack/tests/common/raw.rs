//! A raw peer, the tests' scapy: frames built field by field (ARP, IPv4
//! with TCP segments carrying any options, payloads), injected into a
//! stack's device, and the TCP segments a stack sent read back.

use std::net::{Ipv4Addr, SocketAddrV4};

use accel_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumCaps, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr,
};

const ETH: usize = 14;

/// An Ethernet frame from `src` to `dst` carrying `payload`.
pub fn ethernet(src: EthernetAddress, dst: EthernetAddress, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ETH + payload.len()];
    EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    f[ETH..].copy_from_slice(payload);
    f
}

/// An IPv4 packet (no options) from `src` to `dst` carrying TCP segment
/// `repr` with `payload`, checksums right.
pub fn ipv4_tcp(src: SocketAddrV4, dst: SocketAddrV4, repr: &TcpRepr, payload: &[u8]) -> Vec<u8> {
    let repr = TcpRepr {
        payload_len: payload.len(),
        src_port: src.port(),
        dst_port: dst.port(),
        ..*repr
    };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        protocol: IpProtocol::Tcp,
        payload_len: repr.buffer_len(),
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let caps = ChecksumCaps::default();
    let mut p = vec![0u8; 20 + repr.buffer_len()];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut p[..]), &caps);
    let h = repr.header_len();
    p[20 + h..].copy_from_slice(payload);
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut p[20..]),
        (*src.ip()).into(),
        (*dst.ip()).into(),
        &caps,
    );
    p
}

/// A whole frame: [`ipv4_tcp`] in Ethernet.
pub fn tcp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    repr: &TcpRepr,
    payload: &[u8],
) -> Vec<u8> {
    ethernet(
        src_mac,
        dst_mac,
        EtherType::Ipv4,
        &ipv4_tcp(src, dst, repr, payload),
    )
}

/// An ARP packet in a frame; requests are broadcast.
pub fn arp(
    op: ArpOperation,
    src_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    dst_mac: EthernetAddress,
    dst_ip: Ipv4Addr,
) -> Vec<u8> {
    let repr = ArpRepr {
        operation: op,
        source_hardware_addr: src_mac,
        source_protocol_addr: src_ip,
        target_hardware_addr: if op == ArpOperation::Request {
            EthernetAddress([0; 6])
        } else {
            dst_mac
        },
        target_protocol_addr: dst_ip,
    };
    let mut a = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut a[..]));
    let to = if op == ArpOperation::Request {
        EthernetAddress::BROADCAST
    } else {
        dst_mac
    };
    ethernet(src_mac, to, EtherType::Arp, &a)
}

/// A TCP segment read back from a frame: (source, destination, segment,
/// payload); `None` for anything else.
pub fn parse_tcp(frame: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, TcpRepr, Vec<u8>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != IpProtocol::Tcp {
        return None;
    }
    let caps = ChecksumCaps::default();
    let (s, d) = (ip.src_addr(), ip.dst_addr());
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let repr = TcpRepr::parse(&tcp, s.into(), d.into(), &caps).ok()?;
    Some((
        SocketAddrV4::new(s, repr.src_port),
        SocketAddrV4::new(d, repr.dst_port),
        repr,
        tcp.payload().to_vec(),
    ))
}
