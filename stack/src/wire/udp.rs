//! UDP (RFC 768): a zero-copy datagram view and its `Repr`.
//!
//! The view must be built on the IP payload. `check_len` validates the UDP
//! length field against the header and the buffer, after which no accessor
//! panics; the payload is bounded by the length field, not the buffer.
//!
//! Checksums use the pseudo-header of the given [`IpAddr`] pair. A received
//! zero checksum means "not computed" and is accepted over IPv4 (rejected
//! over IPv6, where it is mandatory); a computed zero is transmitted as
//! `0xffff`.
//!
//! [`UdpRepr`] carries the payload length, not the payload: the caller
//! writes the payload at [`UdpRepr::header_len`] and `emit` then writes the
//! header and checksums header and payload together.

use core::net::IpAddr;

use super::checksum;
use super::{get_u16, set_u16, ChecksumCaps, Error, IpProtocol};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the UDP header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps a buffer without checking it; accessors may then panic.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the length field is consistent with the header and the
    /// buffer, so no accessor panics.
    ///
    /// * [`Error::Truncated`]: fewer than 8 bytes, or a length beyond the
    ///   buffer.
    /// * [`Error::Malformed`]: a length below 8.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < field::PAYLOAD {
            return Err(Error::Truncated);
        }
        let length = usize::from(self.length());
        if length < field::PAYLOAD {
            Err(Error::Malformed)
        } else if length > len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field: header plus payload, in bytes.
    pub fn length(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether the checksum is correct for this address pair. A zero
    /// checksum ("not computed") passes over IPv4 and fails over IPv6.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4() && dst.is_ipv4();
        }
        let length = self.length();
        let data = &self.buffer.as_ref()[..usize::from(length)];
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Udp, u32::from(length));
        checksum::add(pseudo, checksum::sum(data)) == 0xffff
    }

    /// The payload, bounded by the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.length())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the length field.
    pub fn set_length(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes and writes the checksum over the header and the payload (as
    /// bounded by the length field). A computed zero is written as `0xffff`.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let length = self.length();
        let data = &self.buffer.as_ref()[..usize::from(length)];
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Udp, u32::from(length));
        let value = !checksum::add(pseudo, checksum::sum(data));
        self.set_checksum(if value == 0 { 0xffff } else { value });
    }

    /// The payload, mutably, bounded by the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.length());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

/// The header fields of a UDP datagram, with the payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port (0 means "no reply expected").
    pub src_port: u16,
    /// Destination port (never 0 after parsing).
    pub dst_port: u16,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parses a datagram sent from `src` to `dst`.
    ///
    /// Fails with [`Error::Malformed`] for destination port 0, and with
    /// [`Error::Checksum`] if the checksum is wrong and `caps.udp.rx()` says
    /// software must verify it (a zero checksum over IPv4 is accepted).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &UdpPacket<&T>,
        src: IpAddr,
        dst: IpAddr,
        caps: &ChecksumCaps,
    ) -> Result<Self, Error> {
        packet.check_len()?;
        if packet.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        if caps.udp.rx() && !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.length()) - field::PAYLOAD,
        })
    }

    /// Length of the UDP header (8).
    pub const fn header_len(&self) -> usize {
        field::PAYLOAD
    }

    /// Length of the datagram: header plus payload.
    pub const fn buffer_len(&self) -> usize {
        field::PAYLOAD + self.payload_len
    }

    /// Writes every header field and, if `caps.udp.tx()`, the checksum
    /// (otherwise zero, for the device to fill). The payload must already be
    /// in place at [`header_len`](Self::header_len): it is checksummed, not
    /// written.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len) or the
    /// length does not fit in 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src: IpAddr,
        dst: IpAddr,
        caps: &ChecksumCaps,
    ) {
        let length = u16::try_from(self.buffer_len()).expect("UDP payload too long");
        assert!(
            packet.buffer.as_ref().len() >= self.buffer_len(),
            "buffer too short"
        );
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_length(length);
        if caps.udp.tx() {
            packet.fill_checksum(src, dst);
        } else {
            packet.set_checksum(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Checksum;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));

    /// 53000 -> 53, "hello world".
    const DATAGRAM: [u8; 19] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x13, 0x1b, 0x06, // header
        b'h', b'e', b'l', b'l', b'o', b' ', b'w', b'o', b'r', b'l', b'd',
    ];

    /// 53000 -> 53, a payload whose checksum computes to zero: sent as ffff.
    const ZERO_SUM: [u8; 12] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0xff, 0xff, b'a', b'b', 0x4b, 0x80,
    ];

    fn repr(payload_len: usize) -> UdpRepr {
        UdpRepr {
            src_port: 53000,
            dst_port: 53,
            payload_len,
        }
    }

    fn caps_with(udp: Checksum) -> ChecksumCaps {
        ChecksumCaps {
            udp,
            ..ChecksumCaps::default()
        }
    }

    #[test]
    fn parse_literal() {
        let packet = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(packet.src_port(), 53000);
        assert_eq!(packet.dst_port(), 53);
        assert_eq!(packet.length(), 19);
        assert_eq!(packet.checksum(), 0x1b06);
        assert!(packet.verify_checksum(SRC, DST));
        assert_eq!(packet.payload(), b"hello world");
        let parsed = UdpRepr::parse(&packet, SRC, DST, &ChecksumCaps::default()).unwrap();
        assert_eq!(parsed, repr(11));
    }

    #[test]
    fn emit_literal() {
        let r = repr(11);
        assert_eq!((r.header_len(), r.buffer_len()), (8, 19));
        let mut buf = [0u8; 19];
        buf[8..].copy_from_slice(b"hello world");
        r.emit(
            &mut UdpPacket::new_unchecked(&mut buf[..]),
            SRC,
            DST,
            &ChecksumCaps::default(),
        );
        assert_eq!(buf, DATAGRAM);
        // Transmit offloaded: the checksum is left zero for the device.
        r.emit(
            &mut UdpPacket::new_unchecked(&mut buf[..]),
            SRC,
            DST,
            &caps_with(Checksum::Rx),
        );
        assert_eq!(buf[6..8], [0, 0]);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        let mut buf = [0u8; 12];
        buf[8..].copy_from_slice(&ZERO_SUM[8..]);
        let mut packet = UdpPacket::new_unchecked(&mut buf[..]);
        repr(4).emit(&mut packet, SRC, DST, &ChecksumCaps::default());
        assert_eq!(buf, ZERO_SUM);
        let packet = UdpPacket::new_checked(&ZERO_SUM[..]).unwrap();
        assert!(packet.verify_checksum(SRC, DST));
        let caps = ChecksumCaps::default();
        assert_eq!(UdpRepr::parse(&packet, SRC, DST, &caps).unwrap(), repr(4));
    }

    #[test]
    fn zero_checksum_accepted_over_ipv4_only() {
        let mut bytes = DATAGRAM;
        bytes[6] = 0;
        bytes[7] = 0;
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        let caps = ChecksumCaps::default();
        assert_eq!(UdpRepr::parse(&packet, SRC, DST, &caps).unwrap(), repr(11));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(!packet.verify_checksum(v6, v6));
        assert_eq!(UdpRepr::parse(&packet, v6, v6, &caps), Err(Error::Checksum));
    }

    #[test]
    fn bad_checksum() {
        for bit in 0..DATAGRAM.len() * 8 {
            let mut bytes = DATAGRAM;
            bytes[bit / 8] ^= 1 << (bit % 8);
            let packet = UdpPacket::new_unchecked(&bytes[..]);
            if packet.check_len().is_err() || packet.dst_port() == 0 {
                continue;
            }
            for (udp, ok) in [
                (Checksum::Both, false),
                (Checksum::Rx, false),
                (Checksum::Tx, true),
                (Checksum::None, true),
            ] {
                let result = UdpRepr::parse(&packet, SRC, DST, &caps_with(udp));
                if ok {
                    assert!(result.is_ok(), "bit {bit} {udp:?}");
                } else {
                    assert_eq!(result, Err(Error::Checksum), "bit {bit} {udp:?}");
                }
            }
        }
        // The right bytes with the wrong addresses fail too.
        let packet = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        let caps = ChecksumCaps::default();
        assert_eq!(UdpRepr::parse(&packet, DST, DST, &caps), Err(Error::Checksum));
    }

    #[test]
    fn truncated_and_lying_lengths() {
        for len in 0..8 {
            let packet = UdpPacket::new_unchecked(&DATAGRAM[..len]);
            assert_eq!(packet.check_len(), Err(Error::Truncated), "len {len}");
            let caps = ChecksumCaps::ignored();
            assert_eq!(UdpRepr::parse(&packet, SRC, DST, &caps), Err(Error::Truncated));
        }
        for len in 8..DATAGRAM.len() {
            let packet = UdpPacket::new_unchecked(&DATAGRAM[..len]);
            assert_eq!(packet.check_len(), Err(Error::Truncated), "len {len}");
        }
        for length in 0..8 {
            let mut bytes = DATAGRAM;
            bytes[5] = length;
            assert_eq!(UdpPacket::new_checked(&bytes[..]).unwrap_err(), Error::Malformed);
        }
        let mut bytes = DATAGRAM;
        bytes[4] = 0x01;
        assert_eq!(UdpPacket::new_checked(&bytes[..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn payload_bounded_by_length_field() {
        let mut padded = [0x55u8; 32];
        padded[..19].copy_from_slice(&DATAGRAM);
        let packet = UdpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.payload(), b"hello world");
        let caps = ChecksumCaps::default();
        assert_eq!(UdpRepr::parse(&packet, SRC, DST, &caps).unwrap(), repr(11));
    }

    #[test]
    fn dst_port_zero_is_malformed() {
        let mut bytes = DATAGRAM;
        bytes[2] = 0;
        bytes[3] = 0;
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        let caps = ChecksumCaps::ignored();
        assert_eq!(UdpRepr::parse(&packet, SRC, DST, &caps), Err(Error::Malformed));
    }
}
