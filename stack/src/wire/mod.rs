//! Wire formats: zero-copy packet views and the small `Repr`s parsed from
//! them, for Ethernet II, ARP, IPv4, ICMPv4, TCP and UDP.
//!
//! # Design
//!
//! Every format comes in two layers, following smoltcp's wire module:
//!
//! * A **view** (`EthernetFrame`, `ArpPacket`, `Ipv4Packet`,
//!   `Icmpv4Packet`, `TcpPacket`, `UdpPacket`) wraps any `T: AsRef<[u8]>`
//!   (a slice, a `Vec`, a pooled buffer) without copying it. Getters need
//!   `AsRef<[u8]>`, setters need `AsMut<[u8]>`. Field positions live in a
//!   private `field` module of byte ranges. `new_unchecked` wraps blindly;
//!   `new_checked` wraps and calls `check_len`; `into_inner` gives the buffer
//!   back.
//! * A **`Repr`** (`EthernetRepr`, `ArpRepr`, `Ipv4Repr`, `Icmpv4Repr`,
//!   `TcpRepr`, `UdpRepr`) is a small `Copy` value holding the fields the
//!   stack acts on. `Repr::parse` validates a view (it calls `check_len`
//!   itself, so it never panics on any input), rejects what the stack does
//!   not support and verifies checksums unless [`ChecksumCaps`] says the
//!   device already did. `Repr::emit` writes *every* header field into a
//!   view and fills the checksum unless the device fills it on transmit.
//!
//! # Payloads
//!
//! Nothing here copies bulk data. A view's `payload()` is a sub-slice of the
//! caller's buffer, bounded by the format's own length field where it has one
//! (IPv4 total length, UDP length), so Ethernet padding and other trailing
//! bytes are ignored. TCP and ICMP have no length field: their view must be
//! built on exactly the IP payload, which `Ipv4Packet::payload` gives.
//!
//! [`TcpRepr`] and [`UdpRepr`] carry a **payload length**, not a borrowed
//! payload. To transmit, the caller writes the payload straight into the
//! outgoing buffer at `repr.header_len()` (for example in two pieces out of a
//! socket's ring buffer), then calls `emit`, which writes the header and
//! computes the checksum over the header and the payload already in place.
//! [`Icmpv4Repr`] borrows its (small) data, because ICMP messages are always
//! built from another packet: an echo request's data, or an offending
//! datagram's header.
//!
//! # Panics
//!
//! **After `check_len` (or `new_checked`) succeeds, no getter on that view
//! panics**, whatever the bytes say: lying header-length fields (IPv4 IHL
//! below 5 or beyond the total length, TCP data offset below 5 or beyond the
//! segment, length fields beyond the buffer) are rejected by `check_len`,
//! and TCP options are parsed by an iterator that reports malformed options
//! as errors. This holds as long as the length fields are not rewritten
//! through setters afterwards. `Repr::parse` never panics.
//!
//! On a view built with `new_unchecked` on a short buffer, getters and
//! setters may panic, as may `emit` into a buffer shorter than
//! `Repr::buffer_len` (a programming error, not an input error).
//!
//! # Errors
//!
//! There is one error type, [`Error`], with one variant per drop reason, so
//! the interface can count drops by reason:
//!
//! * [`Error::Truncated`]: the buffer is shorter than the header, or a length
//!   field points past the end of the buffer.
//! * [`Error::Malformed`]: a field is impossible by itself or inconsistent
//!   with another (IHL below 5, TCP option length below 2, SYN with FIN).
//! * [`Error::Checksum`]: a checksum the software had to verify is wrong.
//! * [`Error::Unsupported`]: well-formed, but not something this stack
//!   handles (ARP for other hardware, ICMP types other than echo,
//!   destination unreachable and time exceeded).
//!
//! # Adding IPv6
//!
//! [`IpProtocol`] is shared (it is also IPv6's next-header value) and the
//! checksum helpers already take [`core::net::IpAddr`]: the pseudo-header for
//! an IPv6 address pair is implemented, and `TcpRepr`/`UdpRepr` take
//! `IpAddr` source and destination, so TCP and UDP need no change. Add an
//! `ipv6.rs` with an `Ipv6Packet` view and `Ipv6Repr` following the pattern
//! above, `EtherType::Ipv6` already exists, an `icmpv6.rs` with an
//! `icmpv6` field in [`ChecksumCaps`], and re-export them here. Note that a
//! zero UDP checksum is rejected for IPv6 pseudo-headers already.

mod arp;
pub mod checksum;
mod ethernet;
mod icmpv4;
mod ip;
mod ipv4;
mod tcp;
mod udp;

use core::fmt;
use core::ops::Range;

pub use self::arp::{ArpOperation, ArpPacket, ArpRepr};
pub use self::checksum::{Checksum, ChecksumCaps};
pub use self::ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use self::icmpv4::{Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, Icmpv4Repr, Icmpv4TimeExceeded};
pub use self::ip::IpProtocol;
pub use self::ipv4::{Ipv4Packet, Ipv4Repr};
pub use self::tcp::{SeqNumber, TcpControl, TcpOption, TcpOptions, TcpPacket, TcpRepr, TcpTimestamp};
pub use self::udp::{UdpPacket, UdpRepr};

/// Why a packet was rejected by the wire layer.
///
/// Each variant is a distinct drop reason; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or a length field points past
    /// the end of the buffer.
    Truncated,
    /// A field is impossible by itself or inconsistent with another field.
    Malformed,
    /// A checksum that software had to verify does not match.
    Checksum,
    /// The packet is well formed but uses something this stack does not
    /// handle.
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Checksum => "checksum mismatch",
            Error::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for Error {}

/// Reads a big-endian `u16` from a two-byte field. Panics if out of bounds.
#[inline]
fn get_u16(data: &[u8], field: Range<usize>) -> u16 {
    let mut bytes = [0; 2];
    bytes.copy_from_slice(&data[field]);
    u16::from_be_bytes(bytes)
}

/// Reads a big-endian `u32` from a four-byte field. Panics if out of bounds.
#[inline]
fn get_u32(data: &[u8], field: Range<usize>) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&data[field]);
    u32::from_be_bytes(bytes)
}

/// Writes a big-endian `u16` into a two-byte field. Panics if out of bounds.
#[inline]
fn set_u16(data: &mut [u8], field: Range<usize>, value: u16) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian `u32` into a four-byte field. Panics if out of bounds.
#[inline]
fn set_u32(data: &mut [u8], field: Range<usize>, value: u32) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// Reads an IPv4 address from a four-byte field. Panics if out of bounds.
fn get_ipv4(data: &[u8], field: Range<usize>) -> core::net::Ipv4Addr {
    core::net::Ipv4Addr::from(get_u32(data, field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};

    #[test]
    fn error_display_is_distinct() {
        let all = [
            Error::Truncated,
            Error::Malformed,
            Error::Checksum,
            Error::Unsupported,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.to_string(), b.to_string());
            }
        }
        let boxed: Box<dyn std::error::Error> = Box::new(Error::Checksum);
        assert_eq!(boxed.to_string(), "checksum mismatch");
    }

    /// A whole frame, parsed layer by layer without copying: Ethernet
    /// (padded to 60 bytes) carrying IPv4 carrying UDP.
    #[test]
    fn layered_zero_copy_parse() {
        let frame: [u8; 60] = [
            // Ethernet: dst, src, type IPv4
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
            // IPv4: total length 32, ttl 64, UDP, 10.0.0.1 -> 10.0.0.2
            0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x66, 0xca, 0x0a, 0x00, 0x00, 0x01,
            0x0a, 0x00, 0x00, 0x02, // UDP: 1234 -> 5678, length 12, payload "ping"
            0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0c, 0xf2, 0x02, b'p', b'i', b'n', b'g',
            // Ethernet padding, must be ignored
            0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee,
        ];
        let caps = ChecksumCaps::default();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        let eth_repr = EthernetRepr::parse(&eth).unwrap();
        assert_eq!(eth_repr.ethertype, EtherType::Ipv4);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip, &caps).unwrap();
        assert_eq!(ip_repr.protocol, IpProtocol::Udp);
        assert_eq!(ip_repr.payload_len, 12);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        let src = IpAddr::V4(ip_repr.src_addr);
        let dst = IpAddr::V4(ip_repr.dst_addr);
        let udp_repr = UdpRepr::parse(&udp, src, dst, &caps).unwrap();
        assert_eq!((udp_repr.src_port, udp_repr.dst_port), (1234, 5678));
        assert_eq!(udp.payload(), b"ping");
        assert_eq!(ip_repr.dst_addr, Ipv4Addr::new(10, 0, 0, 2));
    }

    /// Runs every getter and parser of every view over `bytes`. Getters
    /// only run after `check_len` succeeded; parsers run unconditionally.
    fn exercise(bytes: &[u8]) {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let all_caps = [ChecksumCaps::default(), ChecksumCaps::ignored()];

        let eth = EthernetFrame::new_unchecked(bytes);
        if eth.check_len().is_ok() {
            let _ = (eth.dst_addr(), eth.src_addr(), eth.ethertype(), eth.payload());
        }
        let _ = EthernetRepr::parse(&eth);

        let arp = ArpPacket::new_unchecked(bytes);
        if arp.check_len().is_ok() {
            let _ = (arp.hardware_type(), arp.protocol_type(), arp.operation());
            let _ = (arp.source_hardware_addr(), arp.source_protocol_addr());
            let _ = (arp.target_hardware_addr(), arp.target_protocol_addr());
        }
        let _ = ArpRepr::parse(&arp);

        let ip = Ipv4Packet::new_unchecked(bytes);
        if ip.check_len().is_ok() {
            let _ = (ip.version(), ip.dscp(), ip.ecn(), ip.ident(), ip.ttl());
            let _ = (ip.dont_frag(), ip.more_frags(), ip.frag_offset());
            let _ = (ip.protocol(), ip.checksum(), ip.src_addr(), ip.dst_addr());
            let _ = (ip.verify_checksum(), ip.options(), ip.payload());
        }
        let icmp = Icmpv4Packet::new_unchecked(bytes);
        if icmp.check_len().is_ok() {
            let _ = (icmp.msg_type(), icmp.msg_code(), icmp.checksum());
            let _ = (icmp.echo_ident(), icmp.echo_seq_no(), icmp.next_hop_mtu());
            let _ = (icmp.verify_checksum(), icmp.payload());
        }
        let tcp = TcpPacket::new_unchecked(bytes);
        if tcp.check_len().is_ok() {
            let _ = (tcp.src_port(), tcp.dst_port(), tcp.seq_number(), tcp.ack_number());
            let _ = (tcp.fin(), tcp.syn(), tcp.rst(), tcp.psh(), tcp.ack(), tcp.urg());
            let _ = (tcp.ece(), tcp.cwr(), tcp.window_len(), tcp.checksum());
            let _ = (tcp.urgent_at(), tcp.options(), tcp.payload(), tcp.segment_len());
            let _ = tcp.verify_checksum(a, b);
            let _ = tcp.options_iter().count();
        }
        let udp = UdpPacket::new_unchecked(bytes);
        if udp.check_len().is_ok() {
            let _ = (udp.src_port(), udp.dst_port(), udp.length(), udp.checksum());
            let _ = (udp.verify_checksum(a, b), udp.payload());
        }

        for caps in &all_caps {
            let _ = Ipv4Repr::parse(&ip, caps);
            if let Ok(repr) = Icmpv4Repr::parse(&icmp, caps) {
                // Whatever parses must emit and parse back identically.
                let mut out = vec![0; repr.buffer_len()];
                repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]), caps);
                let again = Icmpv4Packet::new_checked(&out[..]).unwrap();
                let reparsed = Icmpv4Repr::parse(&again, caps).unwrap();
                // Quoted headers lose their options: compare what is kept.
                assert_eq!(reparsed.buffer_len(), repr.buffer_len());
            }
            if let Ok(repr) = TcpRepr::parse(&tcp, a, b, caps) {
                let mut out = vec![0; repr.buffer_len()];
                repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), a, b, caps);
                let again = TcpPacket::new_checked(&out[..]).unwrap();
                let reparsed = TcpRepr::parse(&again, a, b, caps).unwrap();
                assert_eq!(reparsed.segment_len(), repr.segment_len());
            }
            if let Ok(repr) = UdpRepr::parse(&udp, a, b, caps) {
                let mut out = vec![0; repr.buffer_len()];
                out[8..].copy_from_slice(udp.payload());
                repr.emit(&mut UdpPacket::new_unchecked(&mut out[..]), a, b, caps);
                let again = UdpPacket::new_checked(&out[..]).unwrap();
                assert_eq!(UdpRepr::parse(&again, a, b, caps), Ok(repr));
            }
        }
    }

    /// No accessor panics after `check_len`, and no parser panics at all,
    /// on pseudo-random buffers nudged towards plausible length fields.
    #[test]
    fn no_panics_on_arbitrary_bytes() {
        let mut state: u32 = 0x9e37_79b9;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for round in 0..50_000u32 {
            let len = (next() % 100) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            match round % 4 {
                // IPv4: version 4 and a total length near the buffer length.
                1 if len >= 4 => {
                    bytes[0] = 0x40 | (bytes[0] & 0x0f);
                    bytes[2] = 0;
                    bytes[3] = (len as u8).wrapping_sub(bytes[3] % 4);
                }
                // TCP: a plausible data offset, ports non-zero.
                2 if len >= 20 => {
                    bytes[12] = ((5 + next() % 11) << 4) as u8;
                    bytes[1] |= 1;
                    bytes[3] |= 1;
                }
                // UDP / ICMP error: plausible UDP length or quoted IHL.
                3 if len >= 12 => {
                    bytes[4] = 0;
                    bytes[5] = (len as u8).wrapping_sub(bytes[5] % 4);
                    bytes[8] = 0x45;
                    bytes[0] = [3, 11, 0, 8][(next() % 4) as usize];
                }
                _ => {}
            }
            exercise(&bytes);
        }
    }
}
