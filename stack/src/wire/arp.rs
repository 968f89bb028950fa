//! ARP (RFC 826): a zero-copy packet view for any hardware and protocol
//! address lengths, and a `Repr` for Ethernet/IPv4, the only kind the stack
//! speaks.
//!
//! The view locates the four addresses from the packet's own length fields;
//! `check_len` ensures they all fit, after which no accessor panics.
//! [`ArpRepr::parse`] rejects anything but hardware type 1 (Ethernet),
//! protocol 0x0800 (IPv4), lengths 6 and 4, and operations other than
//! request and reply, as [`Error::Unsupported`].

use core::net::Ipv4Addr;
use core::ops::Range;

use super::{get_u16, set_u16, Error, EthernetAddress};

/// An ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Request (1).
    Request,
    /// Reply (2).
    Reply,
    /// Any other operation (RARP and friends).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> Self {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    /// Start of the variable-length address block.
    pub const ADDRS: usize = 8;

    // Fixed positions for Ethernet/IPv4, used by emit.
    pub const ETH_IPV4_LEN: usize = 28;
}

/// Hardware type: Ethernet.
const HTYPE_ETHERNET: u16 = 1;
/// Protocol type: IPv4.
const PTYPE_IPV4: u16 = 0x0800;

/// A zero-copy view of an ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Length of the fixed part, before the addresses.
    pub const FIXED_LEN: usize = field::ADDRS;

    /// Wraps a buffer without checking it; accessors may then panic.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the fixed part and all four addresses (as sized by the
    /// length fields) fit in the buffer, so no accessor panics.
    ///
    /// Returns [`Error::Truncated`] otherwise.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < field::ADDRS || len < self.target_protocol_range().end {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (an EtherType; 0x0800 for IPv4).
    pub fn protocol_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length in bytes.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length in bytes.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(get_u16(self.buffer.as_ref(), field::OPER))
    }

    fn source_hardware_range(&self) -> Range<usize> {
        let start = field::ADDRS;
        start..start + usize::from(self.hardware_len())
    }

    fn source_protocol_range(&self) -> Range<usize> {
        let start = self.source_hardware_range().end;
        start..start + usize::from(self.protocol_len())
    }

    fn target_hardware_range(&self) -> Range<usize> {
        let start = self.source_protocol_range().end;
        start..start + usize::from(self.hardware_len())
    }

    fn target_protocol_range(&self) -> Range<usize> {
        let start = self.target_hardware_range().end;
        start..start + usize::from(self.protocol_len())
    }

    /// Sender hardware address bytes.
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.source_hardware_range()]
    }

    /// Sender protocol address bytes.
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.source_protocol_range()]
    }

    /// Target hardware address bytes.
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.target_hardware_range()]
    }

    /// Target protocol address bytes.
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.target_protocol_range()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::HTYPE, value);
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::PTYPE, value);
    }

    /// Sets the hardware address length (moves the address fields).
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length (moves the address fields).
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, value: ArpOperation) {
        set_u16(self.buffer.as_mut(), field::OPER, value.into());
    }

    /// Sets the sender hardware address; `value` must be `hardware_len` long.
    pub fn set_source_hardware_addr(&mut self, value: &[u8]) {
        let range = self.source_hardware_range();
        self.buffer.as_mut()[range].copy_from_slice(value);
    }

    /// Sets the sender protocol address; `value` must be `protocol_len` long.
    pub fn set_source_protocol_addr(&mut self, value: &[u8]) {
        let range = self.source_protocol_range();
        self.buffer.as_mut()[range].copy_from_slice(value);
    }

    /// Sets the target hardware address; `value` must be `hardware_len` long.
    pub fn set_target_hardware_addr(&mut self, value: &[u8]) {
        let range = self.target_hardware_range();
        self.buffer.as_mut()[range].copy_from_slice(value);
    }

    /// Sets the target protocol address; `value` must be `protocol_len` long.
    pub fn set_target_protocol_addr(&mut self, value: &[u8]) {
        let range = self.target_protocol_range();
        self.buffer.as_mut()[range].copy_from_slice(value);
    }
}

/// An Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply (never `Unknown` after parsing).
    pub operation: ArpOperation,
    /// Sender MAC address.
    pub source_hardware_addr: EthernetAddress,
    /// Sender IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC address (zero in a request).
    pub target_hardware_addr: EthernetAddress,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an Ethernet/IPv4 request or reply.
    ///
    /// Other hardware or protocol types, other address lengths and other
    /// operations are [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &ArpPacket<&T>) -> Result<Self, Error> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET
            || packet.protocol_type() != PTYPE_IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        let operation = packet.operation();
        if let ArpOperation::Unknown(_) = operation {
            return Err(Error::Unsupported);
        }
        let mac = |bytes: &[u8]| {
            let mut addr = [0; 6];
            addr.copy_from_slice(bytes);
            EthernetAddress(addr)
        };
        let ip = |bytes: &[u8]| Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        Ok(ArpRepr {
            operation,
            source_hardware_addr: mac(packet.source_hardware_addr()),
            source_protocol_addr: ip(packet.source_protocol_addr()),
            target_hardware_addr: mac(packet.target_hardware_addr()),
            target_protocol_addr: ip(packet.target_protocol_addr()),
        })
    }

    /// Length of the packet this repr emits (28 bytes).
    pub const fn buffer_len(&self) -> usize {
        field::ETH_IPV4_LEN
    }

    /// Length of the header; ARP is all header, so this is
    /// [`buffer_len`](Self::buffer_len).
    pub const fn header_len(&self) -> usize {
        field::ETH_IPV4_LEN
    }

    /// Writes every field of the packet.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(PTYPE_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(&self.source_hardware_addr.0);
        packet.set_source_protocol_addr(&self.source_protocol_addr.octets());
        packet.set_target_hardware_addr(&self.target_hardware_addr.0);
        packet.set_target_protocol_addr(&self.target_protocol_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who has 192.168.1.1? Tell 192.168.1.100 (52:54:00:12:34:56).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4, request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x01, 0x64, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, // target
    ];

    /// 192.168.1.1 is at 02:00:00:aa:bb:cc.
    const REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // eth/ipv4, reply
        0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc, 0xc0, 0xa8, 0x01, 0x01, // sender
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x01, 0x64, // target
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            source_protocol_addr: Ipv4Addr::new(192, 168, 1, 100),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::new(192, 168, 1, 1),
        }
    }

    fn reply_repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress([0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc]),
            source_protocol_addr: Ipv4Addr::new(192, 168, 1, 1),
            target_hardware_addr: EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            target_protocol_addr: Ipv4Addr::new(192, 168, 1, 100),
        }
    }

    #[test]
    fn parse_request() {
        let packet = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(packet.hardware_type(), 1);
        assert_eq!(packet.protocol_type(), 0x0800);
        assert_eq!((packet.hardware_len(), packet.protocol_len()), (6, 4));
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(packet.source_protocol_addr(), &[192, 168, 1, 100]);
        assert_eq!(ArpRepr::parse(&packet).unwrap(), request_repr());
    }

    #[test]
    fn parse_reply_ignores_padding() {
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&REPLY);
        let packet = ArpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet).unwrap(), reply_repr());
    }

    #[test]
    fn emit_both() {
        for (repr, bytes) in [(request_repr(), REQUEST), (reply_repr(), REPLY)] {
            let mut buf = [0u8; 28];
            assert_eq!(repr.buffer_len(), 28);
            assert_eq!(repr.header_len(), 28);
            repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn truncated() {
        for len in 0..REQUEST.len() {
            let packet = ArpPacket::new_unchecked(&REQUEST[..len]);
            assert_eq!(packet.check_len(), Err(Error::Truncated), "len {len}");
            assert_eq!(ArpRepr::parse(&packet), Err(Error::Truncated));
        }
    }

    #[test]
    fn other_lengths_are_viewable_but_unsupported() {
        // hlen 255, plen 255 needs 8 + 2 * 510 bytes.
        let mut bytes = [0u8; 8 + 1020];
        bytes[..8].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 0xff, 0xff, 0x00, 0x01]);
        assert_eq!(
            ArpPacket::new_checked(&bytes[..1027]).unwrap_err(),
            Error::Truncated
        );
        let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.target_protocol_addr().len(), 255);
        assert_eq!(ArpRepr::parse(&packet), Err(Error::Unsupported));
    }

    #[test]
    fn unsupported() {
        let cases: [(usize, u8); 6] = [
            (1, 0x06), // hardware type 6 (IEEE 802)
            (2, 0x86), // protocol 0x8600
            (3, 0x01), // protocol 0x0801
            (4, 0x08), // hlen 8
            (5, 0x10), // plen 16
            (7, 0x03), // RARP request
        ];
        for (at, value) in cases {
            let mut bytes = [0u8; 64];
            bytes[..28].copy_from_slice(&REQUEST);
            bytes[at] = value;
            let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(ArpRepr::parse(&packet), Err(Error::Unsupported), "byte {at}");
        }
        assert_eq!(ArpOperation::from(3), ArpOperation::Unknown(3));
        assert_eq!(u16::from(ArpOperation::Unknown(3)), 3);
    }
}
