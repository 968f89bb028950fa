//! Checksum offload between the stack and a DPDK port: which checksums the
//! software still owes (`Offloads::caps`), what a received frame's
//! checksum flags mean, and what an outgoing frame asks of the port.
//!
//! Receive: where the port verifies a checksum, the software no longer
//! does, so the device must not let a frame through unverified. A frame the
//! port marked *bad* is dropped; one it marked *unknown* (it did not look)
//! is verified here in software; *good* and *none* (data known intact)
//! pass. Transmit: the stack leaves offloaded checksum fields zero;
//! `prepare_tx` sets the mbuf request (`RTE_MBUF_F_TX_*`, header lengths)
//! and, for TCP and UDP, writes the pseudo-header sum into the checksum
//! field, as DPDK's offload contract requires. Frames that are not IPv4,
//! and IPv4 fragments' transport headers, are left alone.
//!
//! Pure functions over byte slices: no `unsafe`, and no panic on any input.
#![deny(unsafe_code)]

use core::net::IpAddr;

use accel_dpdk_sys as sys;

use crate::wire::checksum;
use crate::wire::{
    Checksum, ChecksumCaps, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

/// Ethernet header length (the stack sends no VLAN tags).
const ETH_LEN: usize = 14;
/// Offset of the checksum in a TCP header.
const TCP_CHECKSUM: usize = 16;
/// Offset of the checksum in a UDP header.
const UDP_CHECKSUM: usize = 6;

/// The checksum offloads a port was configured with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// The port verifies received IPv4 header checksums.
    pub rx_ipv4: bool,
    /// The port verifies received TCP checksums.
    pub rx_tcp: bool,
    /// The port verifies received UDP checksums.
    pub rx_udp: bool,
    /// The port fills transmitted IPv4 header checksums.
    pub tx_ipv4: bool,
    /// The port fills transmitted TCP checksums.
    pub tx_tcp: bool,
    /// The port fills transmitted UDP checksums.
    pub tx_udp: bool,
}

/// The receive offloads accel asks for, where a port has them.
pub(crate) fn wanted_rx() -> u64 {
    sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_RX_OFFLOAD_TCP_CKSUM | sys::RTE_ETH_RX_OFFLOAD_UDP_CKSUM
}

/// The transmit offloads accel asks for, where a port has them.
pub(crate) fn wanted_tx() -> u64 {
    sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM | sys::RTE_ETH_TX_OFFLOAD_UDP_CKSUM
}

impl Offloads {
    /// From the `rxmode.offloads` and `txmode.offloads` a port was
    /// configured with.
    pub fn from_flags(rx: u64, tx: u64) -> Offloads {
        let has = |flags: u64, bit: u64| flags & bit != 0;
        Offloads {
            rx_ipv4: has(rx, sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM),
            rx_tcp: has(rx, sys::RTE_ETH_RX_OFFLOAD_TCP_CKSUM),
            rx_udp: has(rx, sys::RTE_ETH_RX_OFFLOAD_UDP_CKSUM),
            tx_ipv4: has(tx, sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM),
            tx_tcp: has(tx, sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM),
            tx_udp: has(tx, sys::RTE_ETH_TX_OFFLOAD_UDP_CKSUM),
        }
    }

    /// What the software must still do (ICMP has no offload).
    pub fn caps(&self) -> ChecksumCaps {
        ChecksumCaps {
            ipv4: duty(self.rx_ipv4, self.tx_ipv4),
            tcp: duty(self.rx_tcp, self.tx_tcp),
            udp: duty(self.rx_udp, self.tx_udp),
            icmpv4: Checksum::Both,
        }
    }

    /// Whether any receive checksum is offloaded.
    pub fn any_rx(&self) -> bool {
        self.rx_ipv4 || self.rx_tcp || self.rx_udp
    }

    /// Whether any transmit checksum is offloaded.
    pub fn any_tx(&self) -> bool {
        self.tx_ipv4 || self.tx_tcp || self.tx_udp
    }
}

/// The software's duty for one protocol, given what the port offloads.
fn duty(rx_offloaded: bool, tx_offloaded: bool) -> Checksum {
    match (rx_offloaded, tx_offloaded) {
        (false, false) => Checksum::Both,
        (false, true) => Checksum::Rx,
        (true, false) => Checksum::Tx,
        (true, true) => Checksum::None,
    }
}

/// What a port said about one checksum of a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Unknown,
    Bad,
    Good,
    /// The field is wrong but the data is intact (for instance a frame
    /// from the local host that never left memory).
    Intact,
}

fn status(flags: u64, mask: u64, bad: u64, good: u64) -> Status {
    match flags & mask {
        f if f == bad => Status::Bad,
        f if f == good => Status::Good,
        0 => Status::Unknown,
        _ => Status::Intact,
    }
}

/// Whether a received frame may go to the stack: false when an offloaded
/// checksum is wrong, by the port's verdict or, where the port did not
/// look, by software.
pub(crate) fn rx_ok(off: &Offloads, ol_flags: u64, frame: &[u8]) -> bool {
    let ip = status(
        ol_flags,
        sys::RTE_MBUF_F_RX_IP_CKSUM_MASK,
        sys::RTE_MBUF_F_RX_IP_CKSUM_BAD,
        sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD,
    );
    let l4 = status(
        ol_flags,
        sys::RTE_MBUF_F_RX_L4_CKSUM_MASK,
        sys::RTE_MBUF_F_RX_L4_CKSUM_BAD,
        sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD,
    );
    let ip_owed = off.rx_ipv4 && ip != Status::Good && ip != Status::Intact;
    let l4_owed = (off.rx_tcp || off.rx_udp) && l4 != Status::Good && l4 != Status::Intact;
    if !ip_owed && !l4_owed {
        return true;
    }
    // Malformed frames pass: the stack's own parsing rejects them.
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return true;
    };
    if eth.ethertype() != EtherType::Ipv4 {
        return true;
    }
    let Ok(packet) = Ipv4Packet::new_checked(eth.payload()) else {
        return true;
    };
    if ip_owed && (ip == Status::Bad || !packet.verify_checksum()) {
        return false;
    }
    if !l4_owed || packet.more_frags() || packet.frag_offset() != 0 {
        return true;
    }
    let (src, dst) = (IpAddr::V4(packet.src_addr()), IpAddr::V4(packet.dst_addr()));
    match packet.protocol() {
        IpProtocol::Tcp if off.rx_tcp => {
            l4 != Status::Bad
                && match TcpPacket::new_checked(packet.payload()) {
                    Ok(tcp) => tcp.verify_checksum(src, dst),
                    Err(_) => true,
                }
        }
        IpProtocol::Udp if off.rx_udp => {
            l4 != Status::Bad
                && match UdpPacket::new_checked(packet.payload()) {
                    Ok(udp) => udp.verify_checksum(src, dst),
                    Err(_) => true,
                }
        }
        _ => true,
    }
}

/// Whether a frame that reached us past the port (a net_tap queue the shim
/// reads itself: no checksum flags) may go to the stack, which trusts the
/// port for the checksums in `off`: those are verified here in software.
pub fn rx_ok_in_software(off: &Offloads, frame: &[u8]) -> bool {
    rx_ok(off, 0, frame)
}

/// Fills, in software, the checksums of outgoing frame `frame` that the
/// stack left to the port (`off`'s transmit offloads): for a frame that
/// leaves past the port (a net_tap queue the shim writes itself). Frames
/// that are not IPv4, and fragments' transport headers, are left alone.
pub fn fill_tx_in_software(off: &Offloads, frame: &mut [u8]) {
    if !off.any_tx() {
        return;
    }
    let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
        return;
    };
    if eth.ethertype() != EtherType::Ipv4 {
        return;
    }
    let Ok(packet) = Ipv4Packet::new_checked(&frame[ETH_LEN..]) else {
        return;
    };
    let l3_len = usize::from(packet.header_len());
    let total = usize::from(packet.total_len());
    let whole = !packet.more_frags() && packet.frag_offset() == 0;
    let (src, dst) = (IpAddr::V4(packet.src_addr()), IpAddr::V4(packet.dst_addr()));
    let protocol = packet.protocol();
    let l4 = ETH_LEN + l3_len..ETH_LEN + total;
    if l4.end > frame.len() || l4.start > l4.end {
        return;
    }
    let l4_len = l4.end - l4.start;
    let field = match protocol {
        IpProtocol::Tcp if whole && off.tx_tcp && l4_len >= 20 => Some(TCP_CHECKSUM),
        IpProtocol::Udp if whole && off.tx_udp && l4_len >= 8 => Some(UDP_CHECKSUM),
        _ => None,
    };
    if let Some(offset) = field {
        let at = l4.start + offset;
        frame[at..at + 2].copy_from_slice(&[0, 0]);
        let pseudo = checksum::pseudo_header(src, dst, protocol, l4_len as u32);
        let mut sum = !checksum::combine(&[pseudo, checksum::sum(&frame[l4.clone()])]);
        // UDP sends an all-zero sum as all ones (zero: no checksum).
        if protocol == IpProtocol::Udp && sum == 0 {
            sum = 0xffff;
        }
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    if off.tx_ipv4 {
        let header = ETH_LEN..ETH_LEN + l3_len;
        frame[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&[0, 0]);
        let sum = !checksum::sum(&frame[header]);
        frame[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&sum.to_be_bytes());
    }
}

/// The transmit offload request for an outgoing frame: `(ol_flags, l2_len,
/// l3_len)` for the mbuf, having written the pseudo-header sum into the
/// TCP or UDP checksum field where that checksum is offloaded. `None` when
/// there is nothing to ask (not IPv4, or nothing offloaded).
pub(crate) fn prepare_tx(off: &Offloads, frame: &mut [u8]) -> Option<(u64, u8, u16)> {
    if !off.any_tx() {
        return None;
    }
    let eth = EthernetFrame::new_checked(&*frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(&frame[ETH_LEN..]).ok()?;
    let l3_len = usize::from(packet.header_len());
    let mut flags = sys::RTE_MBUF_F_TX_IPV4;
    if off.tx_ipv4 {
        flags |= sys::RTE_MBUF_F_TX_IP_CKSUM;
    }
    let whole = !packet.more_frags() && packet.frag_offset() == 0;
    let l4_len = usize::from(packet.total_len()) - l3_len;
    let (src, dst) = (IpAddr::V4(packet.src_addr()), IpAddr::V4(packet.dst_addr()));
    let protocol = packet.protocol();
    let field = match protocol {
        IpProtocol::Tcp if whole && off.tx_tcp && l4_len >= 20 => {
            flags |= sys::RTE_MBUF_F_TX_TCP_CKSUM;
            Some(TCP_CHECKSUM)
        }
        IpProtocol::Udp if whole && off.tx_udp && l4_len >= 8 => {
            flags |= sys::RTE_MBUF_F_TX_UDP_CKSUM;
            Some(UDP_CHECKSUM)
        }
        _ => None,
    };
    if let Some(offset) = field {
        let sum = checksum::pseudo_header(src, dst, protocol, l4_len as u32);
        let at = ETH_LEN + l3_len + offset;
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    Some((flags, ETH_LEN as u8, l3_len as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Offloads = Offloads {
        rx_ipv4: true,
        rx_tcp: true,
        rx_udp: true,
        tx_ipv4: true,
        tx_tcp: true,
        tx_udp: true,
    };

    /// Ethernet + IPv4 (198.18.0.1 → 198.18.0.2) + UDP port 9 → 9 with
    /// payload "hi", every checksum correct.
    fn udp_frame() -> Vec<u8> {
        let mut f = vec![
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
            0x45, 0, 0, 30, 0, 1, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2, // IPv4
            0, 9, 0, 9, 0, 10, 0, 0, b'h', b'i', // UDP
        ];
        let ip = !checksum::sum(&f[14..34]);
        f[24..26].copy_from_slice(&ip.to_be_bytes());
        let src = IpAddr::V4([198, 18, 0, 1].into());
        let dst = IpAddr::V4([198, 18, 0, 2].into());
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Udp, 10);
        let udp = !checksum::combine(&[pseudo, checksum::sum(&f[34..44])]);
        f[40..42].copy_from_slice(&udp.to_be_bytes());
        f
    }

    #[test]
    fn caps_follow_the_offloads() {
        assert_eq!(Offloads::default().caps(), ChecksumCaps::default());
        let caps = ALL.caps();
        assert_eq!(
            (caps.ipv4, caps.tcp, caps.udp),
            (Checksum::None, Checksum::None, Checksum::None)
        );
        assert_eq!(caps.icmpv4, Checksum::Both);
        let tx_only = Offloads::from_flags(0, wanted_tx());
        assert!(tx_only.any_tx() && !tx_only.any_rx());
        assert_eq!(
            tx_only.caps().tcp,
            Checksum::Rx,
            "software verifies, the port fills"
        );
        let rx_only = Offloads::from_flags(wanted_rx(), 0);
        assert_eq!(
            rx_only.caps().udp,
            Checksum::Tx,
            "software fills, the port verifies"
        );
    }

    #[test]
    fn received_flags_are_trusted_or_checked() {
        let good = udp_frame();
        let mut bad = good.clone();
        bad[43] ^= 1; // payload corrupt: UDP checksum wrong
        let ip_good = sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD;
        let l4_good = sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD;
        let l4_bad = sys::RTE_MBUF_F_RX_L4_CKSUM_BAD;
        let none = Offloads::default();
        assert!(rx_ok(&none, l4_bad, &bad), "no offload: the stack checks");
        assert!(rx_ok(&ALL, ip_good | l4_good, &bad), "the port's word is taken");
        assert!(!rx_ok(&ALL, ip_good | l4_bad, &good), "the port's word is taken");
        assert!(rx_ok(&ALL, 0, &good), "unknown: verified in software");
        assert!(!rx_ok(&ALL, 0, &bad), "unknown: verified in software");
        assert!(!rx_ok(&ALL, ip_good, &bad));
        let mut bad_ip = good.clone();
        bad_ip[22] = 63; // TTL changed, IP checksum now wrong
        assert!(!rx_ok(&ALL, l4_good, &bad_ip));
        assert!(rx_ok(&ALL, 0, &[1, 2, 3]), "malformed: left to the stack");
    }

    #[test]
    fn software_fills_what_was_left_to_the_port() {
        let good = udp_frame();
        let mut left = good.clone();
        left[24..26].copy_from_slice(&[0, 0]); // IPv4 header checksum
        left[40..42].copy_from_slice(&[0, 0]); // UDP checksum
        let mut frame = left.clone();
        fill_tx_in_software(&ALL, &mut frame);
        assert_eq!(frame, good);
        // Nothing offloaded: the stack filled them; untouched.
        let mut frame = left.clone();
        fill_tx_in_software(&Offloads::default(), &mut frame);
        assert_eq!(frame, left);
        // The IPv4 header's alone.
        let ip_only = Offloads {
            tx_ipv4: true,
            ..Offloads::default()
        };
        let mut frame = left.clone();
        fill_tx_in_software(&ip_only, &mut frame);
        assert_eq!(frame[24..26], good[24..26]);
        assert_eq!(frame[40..42], [0, 0]);
        // Truncated or not IPv4: no panic, nothing written past the frame.
        let mut short = good[..30].to_vec();
        fill_tx_in_software(&ALL, &mut short);
        fill_tx_in_software(&ALL, &mut [0u8; 3]);
        // What software filled, software verifies.
        assert!(rx_ok_in_software(&ALL, &frame_filled(&left)));
        let mut bad = good.clone();
        bad[43] ^= 1;
        assert!(!rx_ok_in_software(&ALL, &bad));
    }

    fn frame_filled(left: &[u8]) -> Vec<u8> {
        let mut f = left.to_vec();
        fill_tx_in_software(&ALL, &mut f);
        f
    }

    #[test]
    fn transmit_requests_offload_and_seeds_the_pseudo_header() {
        let mut frame = udp_frame();
        frame[40..42].copy_from_slice(&[0, 0]); // the stack leaves it zero
        let (flags, l2, l3) = prepare_tx(&ALL, &mut frame).unwrap();
        let want = sys::RTE_MBUF_F_TX_IPV4 | sys::RTE_MBUF_F_TX_IP_CKSUM | sys::RTE_MBUF_F_TX_UDP_CKSUM;
        assert_eq!((flags, l2, l3), (want, 14, 20));
        let src = IpAddr::V4([198, 18, 0, 1].into());
        let dst = IpAddr::V4([198, 18, 0, 2].into());
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Udp, 10);
        assert_eq!(frame[40..42], pseudo.to_be_bytes());
        // Nothing offloaded, or not IPv4: no request, frame untouched.
        let mut frame = udp_frame();
        assert_eq!(prepare_tx(&Offloads::default(), &mut frame), None);
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        let copy = frame.clone();
        assert_eq!(prepare_tx(&ALL, &mut frame), None);
        assert_eq!(frame, copy);
        assert_eq!(prepare_tx(&ALL, &mut [0u8; 10]), None);
    }
}
