//! ICMPv4 (RFC 792): a zero-copy message view and a `Repr` for the
//! messages the stack handles: echo request and reply, destination
//! unreachable and time exceeded.
//!
//! ICMP has no length field, so the view must be built on exactly the IP
//! payload; the checksum covers the whole message. `check_len` ensures the
//! 8-byte header is present, after which no accessor panics.
//!
//! [`Icmpv4Repr`] borrows its data from the packet (echo data, or the
//! leading bytes of the offending datagram's payload). Error messages carry
//! the offending datagram's IPv4 header as an [`Ipv4Repr`]; parsing it
//! tolerates the datagram itself being cut short (only the header and at
//! least eight payload bytes, or the whole payload if shorter, are required).
//! Other message types are [`Error::Unsupported`].

use super::checksum;
use super::{get_u16, set_u16, ChecksumCaps, Error, Ipv4Packet, Ipv4Repr};

/// An ICMPv4 message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Message {
    /// Echo reply (0).
    EchoReply,
    /// Destination unreachable (3).
    DstUnreachable,
    /// Redirect (5).
    Redirect,
    /// Echo request (8).
    EchoRequest,
    /// Time exceeded (11).
    TimeExceeded,
    /// Parameter problem (12).
    ParamProblem,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Icmpv4Message {
    fn from(value: u8) -> Self {
        match value {
            0 => Icmpv4Message::EchoReply,
            3 => Icmpv4Message::DstUnreachable,
            5 => Icmpv4Message::Redirect,
            8 => Icmpv4Message::EchoRequest,
            11 => Icmpv4Message::TimeExceeded,
            12 => Icmpv4Message::ParamProblem,
            other => Icmpv4Message::Unknown(other),
        }
    }
}

impl From<Icmpv4Message> for u8 {
    fn from(value: Icmpv4Message) -> Self {
        match value {
            Icmpv4Message::EchoReply => 0,
            Icmpv4Message::DstUnreachable => 3,
            Icmpv4Message::Redirect => 5,
            Icmpv4Message::EchoRequest => 8,
            Icmpv4Message::TimeExceeded => 11,
            Icmpv4Message::ParamProblem => 12,
            Icmpv4Message::Unknown(other) => other,
        }
    }
}

/// Defines a code enum with known values and an `Unknown(u8)` fallback.
macro_rules! icmp_code {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// Any other code.
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(value: u8) -> Self {
                match value {
                    $($value => $name::$variant,)*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> Self {
                match value {
                    $($name::$variant => $value,)*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

icmp_code! {
    /// The code of a destination unreachable message.
    Icmpv4DstUnreachable {
        /// Network unreachable (0).
        NetUnreachable = 0,
        /// Host unreachable (1).
        HostUnreachable = 1,
        /// Protocol unreachable (2).
        ProtoUnreachable = 2,
        /// Port unreachable (3).
        PortUnreachable = 3,
        /// Fragmentation needed and DF set (4).
        FragRequired = 4,
        /// Source route failed (5).
        SrcRouteFailed = 5,
        /// Destination network unknown (6).
        DstNetUnknown = 6,
        /// Destination host unknown (7).
        DstHostUnknown = 7,
        /// Source host isolated (8).
        SrcHostIsolated = 8,
        /// Network administratively prohibited (9).
        NetProhibited = 9,
        /// Host administratively prohibited (10).
        HostProhibited = 10,
        /// Network unreachable for type of service (11).
        NetUnreachToS = 11,
        /// Host unreachable for type of service (12).
        HostUnreachToS = 12,
        /// Communication administratively prohibited (13).
        CommProhibited = 13,
        /// Host precedence violation (14).
        HostPrecedenceViolation = 14,
        /// Precedence cutoff in effect (15).
        PrecedenceCutoff = 15,
    }
}

icmp_code! {
    /// The code of a time exceeded message.
    Icmpv4TimeExceeded {
        /// Time to live exceeded in transit (0).
        TtlExpired = 0,
        /// Fragment reassembly time exceeded (1).
        FragExpired = 1,
    }
}

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// Unused in destination unreachable / time exceeded messages.
    pub const UNUSED: Range<usize> = 4..8;
    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    pub const MTU: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Bytes of the offending datagram's payload RFC 792 requires in an error.
const QUOTED_PAYLOAD_LEN: usize = 8;

/// A zero-copy view of an ICMPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Length of the ICMPv4 header.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps a buffer without checking it; accessors may then panic.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the 8-byte header is present, so no accessor panics.
    ///
    /// Returns [`Error::Truncated`] otherwise.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < field::PAYLOAD {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Identifier of an echo message.
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Sequence number of an echo message.
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Next-hop MTU of a "fragmentation needed" message (0 if unknown).
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::MTU)
    }

    /// Whether the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xffff
    }

    /// Everything after the 8-byte header: echo data, or the offending
    /// datagram of an error message.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the identifier of an echo message.
    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the sequence number of an echo message.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, value);
    }

    /// Computes and writes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::sum(self.buffer.as_ref());
        self.set_checksum(!sum);
    }

    /// Everything after the 8-byte header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// An ICMPv4 message the stack handles. Data is borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    /// Echo request ("ping").
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data, to be echoed back.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data, as in the request.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// Why.
        reason: Icmpv4DstUnreachable,
        /// The offending datagram's header; `payload_len` is its original
        /// payload length, which may exceed `data`.
        header: Ipv4Repr,
        /// The leading bytes of the offending datagram's payload.
        data: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// Why.
        reason: Icmpv4TimeExceeded,
        /// The offending datagram's header, as for `DstUnreachable`.
        header: Ipv4Repr,
        /// The leading bytes of the offending datagram's payload.
        data: &'a [u8],
    },
}

/// Parses the IPv4 header and leading payload quoted in an error message.
/// The quoted datagram is usually cut short, so its total length may exceed
/// what is present; its checksum is not verified.
fn parse_quoted(bytes: &[u8]) -> Result<(Ipv4Repr, &[u8]), Error> {
    if bytes.len() < Ipv4Packet::<&[u8]>::MIN_HEADER_LEN {
        return Err(Error::Truncated);
    }
    let packet = Ipv4Packet::new_unchecked(bytes);
    let header_len = usize::from(packet.header_len());
    let total_len = usize::from(packet.total_len());
    if packet.version() != 4 || header_len < Ipv4Packet::<&[u8]>::MIN_HEADER_LEN || total_len < header_len {
        return Err(Error::Malformed);
    }
    let payload_len = total_len - header_len;
    let rest = bytes.get(header_len..).ok_or(Error::Truncated)?;
    if rest.len() < payload_len.min(QUOTED_PAYLOAD_LEN) {
        return Err(Error::Truncated);
    }
    let header = Ipv4Repr {
        src_addr: packet.src_addr(),
        dst_addr: packet.dst_addr(),
        protocol: packet.protocol(),
        payload_len,
        ttl: packet.ttl(),
        dscp: packet.dscp(),
        ecn: packet.ecn(),
        ident: packet.ident(),
        dont_frag: packet.dont_frag(),
        more_frags: packet.more_frags(),
        frag_offset: packet.frag_offset(),
    };
    Ok((header, &rest[..rest.len().min(payload_len)]))
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses a message.
    ///
    /// * [`Error::Checksum`]: wrong checksum while `caps.icmpv4.rx()`.
    /// * [`Error::Malformed`]: an echo with a nonzero code, or a quoted
    ///   header that is not a valid IPv4 header.
    /// * [`Error::Truncated`]: a quoted datagram too short to use.
    /// * [`Error::Unsupported`]: any other message type.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
        caps: &ChecksumCaps,
    ) -> Result<Self, Error> {
        packet.check_len()?;
        if caps.icmpv4.rx() && !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let payload: &'a [u8] = &<T as AsRef<[u8]>>::as_ref(packet.buffer)[field::PAYLOAD..];
        let (ident, seq_no) = (packet.echo_ident(), packet.echo_seq_no());
        match (packet.msg_type(), packet.msg_code()) {
            (Icmpv4Message::EchoRequest, 0) => Ok(Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data: payload,
            }),
            (Icmpv4Message::EchoReply, 0) => Ok(Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data: payload,
            }),
            (Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply, _) => Err(Error::Malformed),
            (Icmpv4Message::DstUnreachable, code) => {
                let (header, data) = parse_quoted(payload)?;
                Ok(Icmpv4Repr::DstUnreachable {
                    reason: code.into(),
                    header,
                    data,
                })
            }
            (Icmpv4Message::TimeExceeded, code) => {
                let (header, data) = parse_quoted(payload)?;
                Ok(Icmpv4Repr::TimeExceeded {
                    reason: code.into(),
                    header,
                    data,
                })
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// Length of the message header (8).
    pub const fn header_len(&self) -> usize {
        field::PAYLOAD
    }

    /// Length of the whole message this repr emits.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                field::PAYLOAD + data.len()
            }
            Icmpv4Repr::DstUnreachable { data, .. } | Icmpv4Repr::TimeExceeded { data, .. } => {
                field::PAYLOAD + Ipv4Packet::<&[u8]>::MIN_HEADER_LEN + data.len()
            }
        }
    }

    /// Writes the whole message (header and data) and, if
    /// `caps.icmpv4.tx()`, the checksum over the first
    /// [`buffer_len`](Self::buffer_len) bytes (otherwise zero). A quoted
    /// header is emitted without options and always with its checksum.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len), or a
    /// quoted header's `payload_len` does not fit IPv4's total length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>, caps: &ChecksumCaps) {
        let len = self.buffer_len();
        let bytes = &mut packet.buffer.as_mut()[..len];
        let mut message = Icmpv4Packet::new_unchecked(bytes);
        match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, data }
            | Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                let msg_type = match self {
                    Icmpv4Repr::EchoRequest { .. } => Icmpv4Message::EchoRequest,
                    _ => Icmpv4Message::EchoReply,
                };
                message.set_msg_type(msg_type);
                message.set_msg_code(0);
                message.set_echo_ident(ident);
                message.set_echo_seq_no(seq_no);
                message.payload_mut().copy_from_slice(data);
            }
            Icmpv4Repr::DstUnreachable {
                reason,
                ref header,
                data,
            } => {
                message.set_msg_type(Icmpv4Message::DstUnreachable);
                message.set_msg_code(reason.into());
                emit_quoted(&mut message, header, data);
            }
            Icmpv4Repr::TimeExceeded {
                reason,
                ref header,
                data,
            } => {
                message.set_msg_type(Icmpv4Message::TimeExceeded);
                message.set_msg_code(reason.into());
                emit_quoted(&mut message, header, data);
            }
        }
        if caps.icmpv4.tx() {
            message.fill_checksum();
        } else {
            message.set_checksum(0);
        }
    }
}

/// Writes the unused word, the quoted header and the quoted data.
fn emit_quoted(message: &mut Icmpv4Packet<&mut [u8]>, header: &Ipv4Repr, data: &[u8]) {
    message.buffer[field::UNUSED].fill(0);
    let quoted = message.payload_mut();
    let (ip, rest) = quoted.split_at_mut(Ipv4Packet::<&[u8]>::MIN_HEADER_LEN);
    header.emit(&mut Ipv4Packet::new_unchecked(ip), &ChecksumCaps::default());
    rest.copy_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Checksum, IpProtocol};
    use core::net::Ipv4Addr;

    /// Echo request, ident 0x1234, seq 1, 16 bytes of data.
    const ECHO_REQUEST: [u8; 24] = [
        0x08, 0x00, 0xa2, 0x7f, 0x12, 0x34, 0x00, 0x01, // header
        b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h', b'i', b'j', b'k', b'l', b'm', b'n', b'o', b'p',
    ];

    /// The matching echo reply.
    const ECHO_REPLY: [u8; 24] = [
        0x00, 0x00, 0xaa, 0x7f, 0x12, 0x34, 0x00, 0x01, // header
        b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h', b'i', b'j', b'k', b'l', b'm', b'n', b'o', b'p',
    ];

    /// Port unreachable for a UDP datagram 192.168.1.100:53000 ->
    /// 192.168.1.1:53 (total length 39), quoting its header and UDP header.
    const PORT_UNREACHABLE: [u8; 36] = [
        0x03, 0x03, 0x12, 0xa6, 0x00, 0x00, 0x00, 0x00, // header
        0x45, 0x00, 0x00, 0x27, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xb7, 0x0f, // quoted IPv4
        0xc0, 0xa8, 0x01, 0x64, 0xc0, 0xa8, 0x01, 0x01, // quoted addresses
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x13, 0x1b, 0x06, // quoted UDP header
    ];

    /// TTL exceeded in transit for the same datagram.
    const TIME_EXCEEDED: [u8; 36] = [
        0x0b, 0x00, 0x0a, 0xa9, 0x00, 0x00, 0x00, 0x00, // header
        0x45, 0x00, 0x00, 0x27, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0xb7, 0x0f, // quoted IPv4
        0xc0, 0xa8, 0x01, 0x64, 0xc0, 0xa8, 0x01, 0x01, // quoted addresses
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x13, 0x1b, 0x06, // quoted UDP header
    ];

    fn quoted_header() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 168, 1, 100),
            dst_addr: Ipv4Addr::new(192, 168, 1, 1),
            protocol: IpProtocol::Udp,
            payload_len: 19,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 1,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    fn all_cases() -> [(Icmpv4Repr<'static>, &'static [u8]); 4] {
        [
            (
                Icmpv4Repr::EchoRequest {
                    ident: 0x1234,
                    seq_no: 1,
                    data: &ECHO_REQUEST[8..],
                },
                &ECHO_REQUEST,
            ),
            (
                Icmpv4Repr::EchoReply {
                    ident: 0x1234,
                    seq_no: 1,
                    data: &ECHO_REPLY[8..],
                },
                &ECHO_REPLY,
            ),
            (
                Icmpv4Repr::DstUnreachable {
                    reason: Icmpv4DstUnreachable::PortUnreachable,
                    header: quoted_header(),
                    data: &PORT_UNREACHABLE[28..],
                },
                &PORT_UNREACHABLE,
            ),
            (
                Icmpv4Repr::TimeExceeded {
                    reason: Icmpv4TimeExceeded::TtlExpired,
                    header: quoted_header(),
                    data: &TIME_EXCEEDED[28..],
                },
                &TIME_EXCEEDED,
            ),
        ]
    }

    fn caps_with(icmpv4: Checksum) -> ChecksumCaps {
        ChecksumCaps {
            icmpv4,
            ..ChecksumCaps::default()
        }
    }

    #[test]
    fn parse_literals() {
        for (repr, bytes) in all_cases() {
            let packet = Icmpv4Packet::new_checked(bytes).unwrap();
            assert!(packet.verify_checksum());
            let parsed = Icmpv4Repr::parse(&packet, &ChecksumCaps::default()).unwrap();
            assert_eq!(parsed, repr);
        }
        let packet = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(packet.msg_type(), Icmpv4Message::EchoRequest);
        assert_eq!(packet.msg_code(), 0);
        assert_eq!(packet.checksum(), 0xa27f);
        assert_eq!((packet.echo_ident(), packet.echo_seq_no()), (0x1234, 1));
        assert_eq!(packet.payload(), b"abcdefghijklmnop");
    }

    #[test]
    fn emit_literals() {
        for (repr, bytes) in all_cases() {
            assert_eq!(repr.buffer_len(), bytes.len());
            assert_eq!(repr.header_len(), 8);
            // Extra room in the buffer is left alone and not checksummed.
            let mut buf = vec![0u8; bytes.len() + 5];
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
                &ChecksumCaps::default(),
            );
            assert_eq!(&buf[..bytes.len()], bytes);
            assert_eq!(&buf[bytes.len()..], &[0; 5]);
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
                &caps_with(Checksum::Rx),
            );
            assert_eq!(buf[2..4], [0, 0]);
        }
    }

    #[test]
    fn truncated() {
        for len in 0..8 {
            let packet = Icmpv4Packet::new_unchecked(&ECHO_REQUEST[..len]);
            assert_eq!(packet.check_len(), Err(Error::Truncated), "len {len}");
            let caps = ChecksumCaps::ignored();
            assert_eq!(Icmpv4Repr::parse(&packet, &caps), Err(Error::Truncated));
        }
        // An error message must quote a whole header and 8 payload bytes.
        for len in 8..PORT_UNREACHABLE.len() {
            let packet = Icmpv4Packet::new_checked(&PORT_UNREACHABLE[..len]).unwrap();
            let caps = ChecksumCaps::ignored();
            assert_eq!(Icmpv4Repr::parse(&packet, &caps), Err(Error::Truncated), "{len}");
        }
    }

    #[test]
    fn bad_checksum() {
        let mut bytes = ECHO_REQUEST;
        bytes[20] ^= 0x04;
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        for (rx, ok) in [
            (Checksum::Both, false),
            (Checksum::Rx, false),
            (Checksum::Tx, true),
            (Checksum::None, true),
        ] {
            let result = Icmpv4Repr::parse(&packet, &caps_with(rx));
            assert_eq!(result.is_ok(), ok, "{rx:?}");
            if !ok {
                assert_eq!(result, Err(Error::Checksum));
            }
        }
    }

    #[test]
    fn unsupported_and_malformed() {
        let caps = ChecksumCaps::default();
        // Timestamp request (13): unsupported.
        let mut bytes = ECHO_REQUEST;
        bytes[0] = 13;
        let mut packet = Icmpv4Packet::new_unchecked(&mut bytes[..]);
        packet.fill_checksum();
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.msg_type(), Icmpv4Message::Unknown(13));
        assert_eq!(Icmpv4Repr::parse(&packet, &caps), Err(Error::Unsupported));
        // Echo request with code 1: malformed.
        let mut bytes = ECHO_REQUEST;
        bytes[1] = 1;
        let mut packet = Icmpv4Packet::new_unchecked(&mut bytes[..]);
        packet.fill_checksum();
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet, &caps), Err(Error::Malformed));
        // Quoted header with IHL 4, version 6, or total length below IHL.
        for (at, value) in [(8, 0x44), (8, 0x65), (11, 0x10)] {
            let mut bytes = PORT_UNREACHABLE;
            bytes[at] = value;
            let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
            let caps = ChecksumCaps::ignored();
            assert_eq!(Icmpv4Repr::parse(&packet, &caps), Err(Error::Malformed), "{at}");
        }
    }

    #[test]
    fn quoted_lengths() {
        let caps = ChecksumCaps::ignored();
        // A router quoting more than 8 bytes: data is bounded by the
        // original datagram's payload length.
        let mut long = [0u8; 8 + 20 + 24];
        long[..36].copy_from_slice(&PORT_UNREACHABLE);
        let packet = Icmpv4Packet::new_checked(&long[..]).unwrap();
        match Icmpv4Repr::parse(&packet, &caps).unwrap() {
            Icmpv4Repr::DstUnreachable { data, header, .. } => {
                assert_eq!(header.payload_len, 19);
                assert_eq!(data.len(), 19);
            }
            other => panic!("{other:?}"),
        }
        // An original payload shorter than 8 bytes is quoted whole.
        let mut short = [0u8; 8 + 20 + 4];
        short[..32].copy_from_slice(&PORT_UNREACHABLE[..32]);
        short[11] = 24;
        let packet = Icmpv4Packet::new_checked(&short[..]).unwrap();
        match Icmpv4Repr::parse(&packet, &caps).unwrap() {
            Icmpv4Repr::DstUnreachable { data, header, .. } => {
                assert_eq!((header.payload_len, data.len()), (4, 4));
            }
            other => panic!("{other:?}"),
        }
        // Quoted header with options (IHL 6) beyond the message.
        let mut bytes = PORT_UNREACHABLE;
        bytes[8] = 0x4f;
        bytes[11] = 0xff;
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet, &caps), Err(Error::Truncated));
    }

    #[test]
    fn codes_round_trip() {
        for n in 0..=u8::MAX {
            assert_eq!(u8::from(Icmpv4Message::from(n)), n);
            assert_eq!(u8::from(Icmpv4DstUnreachable::from(n)), n);
            assert_eq!(u8::from(Icmpv4TimeExceeded::from(n)), n);
        }
        assert_eq!(Icmpv4DstUnreachable::from(4), Icmpv4DstUnreachable::FragRequired);
        assert_eq!(Icmpv4TimeExceeded::from(2), Icmpv4TimeExceeded::Unknown(2));
    }

    #[test]
    fn next_hop_mtu() {
        let mut bytes = PORT_UNREACHABLE;
        bytes[1] = 4;
        bytes[6..8].copy_from_slice(&1400u16.to_be_bytes());
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.next_hop_mtu(), 1400);
    }
}
