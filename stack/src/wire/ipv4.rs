//! IPv4 (RFC 791): a zero-copy packet view and its `Repr`.
//!
//! `check_len` validates the header length (IHL) and total length against
//! each other and the buffer, after which no accessor panics. Options are
//! never interpreted: [`Ipv4Packet::options`] exposes their bytes and the
//! payload starts after them. The payload is bounded by the total length,
//! not the buffer, so link-layer padding is ignored.
//!
//! [`Ipv4Repr`] carries no options (emit always writes IHL = 5) and keeps
//! the fragmentation fields so the interface can count and drop fragments
//! (see [`Ipv4Repr::is_fragment`]); this layer does not reassemble.

use core::net::Ipv4Addr;

use super::checksum;
use super::{get_ipv4, get_u16, set_u16, ChecksumCaps, Error, IpProtocol};

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
    /// End of the fixed header; options (if any) follow.
    pub const OPTIONS: usize = 20;
}

/// Don't Fragment flag bit in the flags/offset word.
const FLAG_DF: u16 = 0x4000;
/// More Fragments flag bit in the flags/offset word.
const FLAG_MF: u16 = 0x2000;
/// Fragment offset bits (in units of 8 bytes).
const OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS;

    /// Wraps a buffer without checking it; accessors may then panic.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the length fields are consistent with each other and the
    /// buffer, so no accessor panics.
    ///
    /// * [`Error::Truncated`]: fewer than 20 bytes, or a total length beyond
    ///   the buffer.
    /// * [`Error::Malformed`]: IHL below 5, or a header longer than the
    ///   total length.
    ///
    /// The version is not checked here; [`Ipv4Repr::parse`] checks it.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < field::OPTIONS {
            return Err(Error::Truncated);
        }
        let header_len = usize::from(self.header_len());
        let total_len = usize::from(self.total_len());
        if header_len < field::OPTIONS || total_len < header_len {
            Err(Error::Malformed)
        } else if total_len > len {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4 for IPv4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point (6 bits).
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification (2 bits).
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length of the packet in bytes, header included.
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Upper-layer protocol.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..usize::from(self.header_len())];
        checksum::sum(header) == 0xffff
    }

    /// The raw option bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..usize::from(self.header_len())]
    }

    /// The payload: from the end of the header to the total length, so
    /// trailing padding in the buffer is excluded.
    pub fn payload(&self) -> &[u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version.
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4).
    pub fn set_header_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((value / 4) & 0x0f);
    }

    /// Sets the DSCP (6 bits).
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (value << 2);
    }

    /// Sets the ECN bits (2 bits).
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (value & 0x03);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    fn set_flag(&mut self, flag: u16, value: bool) {
        let word = get_u16(self.buffer.as_ref(), field::FLG_OFF);
        let word = if value { word | flag } else { word & !flag };
        set_u16(self.buffer.as_mut(), field::FLG_OFF, word);
    }

    /// Sets the Don't Fragment flag.
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flag(FLAG_DF, value);
    }

    /// Sets the More Fragments flag.
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flag(FLAG_MF, value);
    }

    /// Sets the fragment offset in bytes (rounded down to a multiple of 8).
    /// The reserved flag bit is cleared.
    pub fn set_frag_offset(&mut self, value: u16) {
        let word = get_u16(self.buffer.as_ref(), field::FLG_OFF);
        let word = (word & (FLAG_DF | FLAG_MF)) | (value >> 3);
        set_u16(self.buffer.as_mut(), field::FLG_OFF, word);
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the upper-layer protocol.
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into();
    }

    /// Sets the header checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Computes and writes the header checksum (options included).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = usize::from(self.header_len());
        let sum = checksum::sum(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(!sum);
    }

    /// The payload, mutably, bounded by the total length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// The IPv4 header fields the stack acts on. Options are not carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Differentiated services code point (6 bits).
    pub dscp: u8,
    /// Explicit congestion notification (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_frag: bool,
    /// More Fragments flag.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// Parses a packet's header.
    ///
    /// Fails with [`Error::Malformed`] if the version is not 4, and with
    /// [`Error::Checksum`] if the header checksum is wrong and
    /// `caps.ipv4.rx()` says software must verify it. Fragments are
    /// accepted; check [`is_fragment`](Self::is_fragment).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Ipv4Packet<&T>,
        caps: &ChecksumCaps,
    ) -> Result<Self, Error> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::Malformed);
        }
        if caps.ipv4.rx() && !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - usize::from(packet.header_len()),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Whether this is a fragment of a larger datagram (more fragments
    /// follow, or it is not the first).
    pub const fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// Length of the header this repr emits (20: no options).
    pub const fn header_len(&self) -> usize {
        field::OPTIONS
    }

    /// Length of the packet this repr emits: header plus payload.
    pub const fn buffer_len(&self) -> usize {
        field::OPTIONS + self.payload_len
    }

    /// Writes every header field (IHL 5, no options) and, if
    /// `caps.ipv4.tx()`, the header checksum (otherwise zero). The payload is
    /// left untouched.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`header_len`](Self::header_len), or
    /// the payload length does not fit the 16-bit total length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>, caps: &ChecksumCaps) {
        let total_len = u16::try_from(self.buffer_len()).expect("IPv4 payload too long");
        packet.set_version(4);
        packet.set_header_len(field::OPTIONS as u8);
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.set_frag_offset(self.frag_offset);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        if caps.ipv4.tx() {
            packet.fill_checksum();
        } else {
            packet.set_checksum(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Checksum;

    /// 10.0.0.1 -> 10.0.0.2, UDP, ident 0x1c46, DF, TTL 64, DSCP 46 (EF),
    /// ECN 1, with an 8-byte payload.
    const PACKET: [u8; 28] = [
        0x45, 0xb9, 0x00, 0x1c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x09, 0xd0, // header
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, // addresses
        0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, // payload
    ];

    /// Same packet with a 4-byte Router Alert option (IHL 6).
    const WITH_OPTIONS: [u8; 32] = [
        0x46, 0xb9, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, // header
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, // addresses
        0x94, 0x04, 0x00, 0x00, // option: router alert
        0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, // payload
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::Udp,
            payload_len: 8,
            ttl: 64,
            dscp: 46,
            ecn: 1,
            ident: 0x1c46,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    fn caps_with(ipv4: Checksum) -> ChecksumCaps {
        ChecksumCaps {
            ipv4,
            ..ChecksumCaps::default()
        }
    }

    #[test]
    fn parse_literal() {
        let packet = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.total_len(), 28);
        assert_eq!(packet.checksum(), 0x09d0);
        assert!(packet.verify_checksum());
        assert!(packet.options().is_empty());
        assert_eq!(packet.payload(), &PACKET[20..]);
        let parsed = Ipv4Repr::parse(&packet, &ChecksumCaps::default()).unwrap();
        assert_eq!(parsed, repr());
        assert!(!parsed.is_fragment());
    }

    #[test]
    fn emit_literal() {
        let r = repr();
        assert_eq!((r.header_len(), r.buffer_len()), (20, 28));
        let mut buf = [0u8; 28];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut packet, &ChecksumCaps::default());
        packet.payload_mut().copy_from_slice(&PACKET[20..]);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn emit_overwrites_garbage_and_honours_tx_offload() {
        let mut buf = [0xffu8; 28];
        repr().emit(
            &mut Ipv4Packet::new_unchecked(&mut buf[..]),
            &caps_with(Checksum::Rx),
        );
        let mut expected = PACKET;
        expected[10] = 0;
        expected[11] = 0;
        assert_eq!(buf[..20], expected[..20]);
    }

    #[test]
    fn known_good_header() {
        // A widely published header (checksum b861), payload zeroed.
        let mut bytes = [0u8; 0x73];
        bytes[..20].copy_from_slice(&[
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ]);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let parsed = Ipv4Repr::parse(&packet, &ChecksumCaps::default()).unwrap();
        assert_eq!(parsed.src_addr, Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(parsed.dst_addr, Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(parsed.payload_len, 0x73 - 20);
        let mut out = [0u8; 20];
        parsed.emit(
            &mut Ipv4Packet::new_unchecked(&mut out[..]),
            &ChecksumCaps::default(),
        );
        assert_eq!(out, bytes[..20]);
    }

    #[test]
    fn truncated_header() {
        for len in 0..20 {
            let packet = Ipv4Packet::new_unchecked(&PACKET[..len]);
            assert_eq!(packet.check_len(), Err(Error::Truncated), "len {len}");
            let caps = ChecksumCaps::default();
            assert_eq!(Ipv4Repr::parse(&packet, &caps), Err(Error::Truncated));
        }
        for len in 20..PACKET.len() {
            // Total length 28 lies beyond the buffer.
            let packet = Ipv4Packet::new_unchecked(&PACKET[..len]);
            assert_eq!(packet.check_len(), Err(Error::Truncated), "len {len}");
        }
    }

    #[test]
    fn lying_lengths() {
        for ihl in 0..5u8 {
            let mut bytes = PACKET;
            bytes[0] = 0x40 | ihl;
            assert_eq!(Ipv4Packet::new_checked(&bytes[..]).unwrap_err(), Error::Malformed);
        }
        // IHL 15 (60 bytes) beyond a total length of 28 and the buffer.
        let mut bytes = PACKET;
        bytes[0] = 0x4f;
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]).unwrap_err(), Error::Malformed);
        // IHL 6 (24 bytes) within the buffer but beyond a total length of 22.
        let mut bytes = PACKET;
        bytes[0] = 0x46;
        bytes[3] = 22;
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]).unwrap_err(), Error::Malformed);
        // Total length below the minimum header.
        for total in 0..20 {
            let mut bytes = PACKET;
            bytes[3] = total;
            assert_eq!(Ipv4Packet::new_checked(&bytes[..]).unwrap_err(), Error::Malformed);
        }
        // Total length beyond the buffer.
        let mut bytes = PACKET;
        bytes[3] = 29;
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]).unwrap_err(), Error::Truncated);
        bytes[2] = 0xff;
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn wrong_version() {
        let mut bytes = PACKET;
        bytes[0] = 0x65;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let caps = ChecksumCaps::ignored();
        assert_eq!(Ipv4Repr::parse(&packet, &caps), Err(Error::Malformed));
    }

    #[test]
    fn bad_checksum() {
        for bit in 0..160 {
            let mut bytes = PACKET;
            bytes[bit / 8] ^= 1 << (bit % 8);
            let packet = Ipv4Packet::new_unchecked(&bytes[..]);
            if packet.check_len().is_err() || packet.version() != 4 {
                continue;
            }
            assert!(!packet.verify_checksum(), "bit {bit}");
            for (rx, expect_ok) in [
                (Checksum::Both, false),
                (Checksum::Rx, false),
                (Checksum::Tx, true),
                (Checksum::None, true),
            ] {
                let result = Ipv4Repr::parse(&packet, &caps_with(rx));
                assert_eq!(result.is_ok(), expect_ok, "bit {bit} {rx:?}");
                if !expect_ok {
                    assert_eq!(result, Err(Error::Checksum));
                }
            }
        }
    }

    #[test]
    fn options_are_skipped() {
        let mut bytes = WITH_OPTIONS;
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        packet.fill_checksum();
        let checksum = packet.checksum();
        // By hand: the PACKET header sum plus 0x0100 (IHL) + 0x0004 (length)
        // + 0x9404 (option) gives the complement of this.
        assert_eq!(checksum, 0x74c7);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(packet.payload(), &PACKET[20..]);
        let parsed = Ipv4Repr::parse(&packet, &ChecksumCaps::default()).unwrap();
        assert_eq!(parsed, repr());
        // Emitting drops the options.
        let mut out = [0u8; 28];
        parsed.emit(
            &mut Ipv4Packet::new_unchecked(&mut out[..]),
            &ChecksumCaps::default(),
        );
        assert_eq!(out[..20], PACKET[..20]);
    }

    #[test]
    fn ethernet_padding_ignored() {
        let mut padded = [0xaau8; 46];
        padded[..28].copy_from_slice(&PACKET);
        let packet = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.payload(), &PACKET[20..]);
        let parsed = Ipv4Repr::parse(&packet, &ChecksumCaps::default()).unwrap();
        assert_eq!(parsed.payload_len, 8);
    }

    #[test]
    fn fragments() {
        let mut bytes = PACKET;
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_dont_frag(false);
        packet.set_more_frags(true);
        packet.fill_checksum();
        let caps = ChecksumCaps::default();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let first = Ipv4Repr::parse(&packet, &caps).unwrap();
        assert!(first.more_frags && first.is_fragment() && !first.dont_frag);

        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_more_frags(false);
        packet.set_frag_offset(1480);
        packet.fill_checksum();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(bytes[6..8], [0x00, 0xb9]);
        let last = Ipv4Repr::parse(&packet, &caps).unwrap();
        assert_eq!(last.frag_offset, 1480);
        assert!(last.is_fragment() && !last.more_frags);

        let mut out = [0u8; 28];
        last.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]), &caps);
        assert_eq!(out[..20], bytes[..20]);
    }
}
