//! TCP (RFC 9293): sequence numbers, a zero-copy segment view, options and
//! the segment `Repr`.
//!
//! [`SeqNumber`] does wrapping arithmetic and compares by signed distance
//! (RFC 1982), for the state machine. `check_len` validates the data offset
//! against the header and the buffer, after which no accessor panics; the
//! view must be built on exactly the IP payload, since TCP has no length
//! field. Options are read by [`TcpOptions`], which skips unknown options by
//! their length and reports an option whose length is below 2 or runs past
//! the header as [`Error::Malformed`], so no option bytes can cause a panic.
//!
//! [`TcpRepr`] carries the payload *length*: to send, write the payload at
//! `repr.header_len()` in the outgoing buffer (e.g. straight from a socket's
//! ring buffer, in two pieces if it wraps), then `emit` writes the header
//! and options (padded to a multiple of 4) and checksums header and payload.

use core::cmp::Ordering;
use core::fmt;
use core::net::IpAddr;
use core::ops;

mod option;

pub use self::option::{TcpOption, TcpOptions};

use super::checksum;
use super::{get_u16, get_u32, set_u16, set_u32, ChecksumCaps, Error, IpProtocol};

/// A TCP sequence number: arithmetic wraps modulo 2^32 and ordering is by
/// signed distance (RFC 1982), so `SeqNumber(u32::MAX) < SeqNumber(0)`.
///
/// The order is only meaningful between numbers less than 2^31 apart (as
/// any two numbers within one TCP window are); it is not transitive across
/// the whole space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Signed distance from `other` to `self` (positive if `self` is later).
    pub const fn distance(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl Ord for SeqNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance(*other).cmp(&0)
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl ops::Add<usize> for SeqNumber {
    type Output = SeqNumber;

    /// Advances by `rhs` bytes, wrapping. `rhs` must be below 2^31.
    fn add(self, rhs: usize) -> SeqNumber {
        debug_assert!(rhs <= i32::MAX as usize, "sequence number step too large");
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl ops::AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl ops::Sub<usize> for SeqNumber {
    type Output = SeqNumber;

    /// Goes back by `rhs` bytes, wrapping. `rhs` must be below 2^31.
    fn sub(self, rhs: usize) -> SeqNumber {
        debug_assert!(rhs <= i32::MAX as usize, "sequence number step too large");
        SeqNumber(self.0.wrapping_sub(rhs as u32))
    }
}

impl ops::Sub<SeqNumber> for SeqNumber {
    type Output = i32;

    /// Signed distance, as [`SeqNumber::distance`].
    fn sub(self, rhs: SeqNumber) -> i32 {
        self.distance(rhs)
    }
}

impl From<u32> for SeqNumber {
    fn from(value: u32) -> Self {
        SeqNumber(value)
    }
}

impl From<SeqNumber> for u32 {
    fn from(value: SeqNumber) -> Self {
        value.0
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const FLAGS: Range<usize> = 12..14;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    /// End of the fixed header; options (if any) follow.
    pub const OPTIONS: usize = 20;

    pub const FLG_FIN: u16 = 0x001;
    pub const FLG_SYN: u16 = 0x002;
    pub const FLG_RST: u16 = 0x004;
    pub const FLG_PSH: u16 = 0x008;
    pub const FLG_ACK: u16 = 0x010;
    pub const FLG_URG: u16 = 0x020;
    pub const FLG_ECE: u16 = 0x040;
    pub const FLG_CWR: u16 = 0x080;
}

/// Longest header (data offset 15).
const MAX_HEADER_LEN: usize = 60;
/// Longest option area.
const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - field::OPTIONS;

/// Checksum value for `bytes` (a whole segment) with its pseudo-header.
fn segment_checksum(bytes: &[u8], src: IpAddr, dst: IpAddr) -> u16 {
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp, length);
    !checksum::add(pseudo, checksum::sum(bytes))
}

/// A zero-copy view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

macro_rules! flag_accessors {
    ($($(#[$doc:meta])* $get:ident, $set:ident, $mask:expr;)*) => {
        impl<T: AsRef<[u8]>> TcpPacket<T> {
            $($(#[$doc])* pub fn $get(&self) -> bool {
                get_u16(self.buffer.as_ref(), field::FLAGS) & $mask != 0
            })*
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
            $($(#[$doc])* pub fn $set(&mut self, value: bool) {
                self.set_flag($mask, value);
            })*
        }
    };
}

flag_accessors! {
    /// FIN flag.
    fin, set_fin, field::FLG_FIN;
    /// SYN flag.
    syn, set_syn, field::FLG_SYN;
    /// RST flag.
    rst, set_rst, field::FLG_RST;
    /// PSH flag.
    psh, set_psh, field::FLG_PSH;
    /// ACK flag.
    ack, set_ack, field::FLG_ACK;
    /// URG flag.
    urg, set_urg, field::FLG_URG;
    /// ECE flag.
    ece, set_ece, field::FLG_ECE;
    /// CWR flag.
    cwr, set_cwr, field::FLG_CWR;
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS;

    /// Wraps a buffer without checking it; accessors may then panic.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the data offset is consistent with the header and the
    /// buffer, so no accessor panics.
    ///
    /// * [`Error::Truncated`]: fewer than 20 bytes, or a header beyond the
    ///   buffer.
    /// * [`Error::Malformed`]: a data offset below 5.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < field::OPTIONS {
            return Err(Error::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < field::OPTIONS {
            Err(Error::Malformed)
        } else if header_len > len {
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

    /// Sequence number.
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(get_u32(self.buffer.as_ref(), field::SEQ_NUM))
    }

    /// Acknowledgement number (meaningful only with ACK set).
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(get_u32(self.buffer.as_ref(), field::ACK_NUM))
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    /// Window size field (unscaled).
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The raw option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..usize::from(self.header_len())]
    }

    /// An iterator over the options.
    pub fn options_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }

    /// The payload: everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..]
    }

    /// Sequence space the segment occupies: payload plus SYN and FIN.
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Whether the checksum is correct for this address pair.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        segment_checksum(self.buffer.as_ref(), src, dst) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: SeqNumber) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, value.0);
    }

    /// Sets the acknowledgement number.
    pub fn set_ack_number(&mut self, value: SeqNumber) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, value.0);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4).
    pub fn set_header_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::FLAGS.start];
        *b = (*b & 0x0f) | ((value / 4) << 4);
    }

    fn set_flag(&mut self, mask: u16, value: bool) {
        let word = get_u16(self.buffer.as_ref(), field::FLAGS);
        let word = if value { word | mask } else { word & !mask };
        set_u16(self.buffer.as_mut(), field::FLAGS, word);
    }

    /// Clears all flags and the reserved bits, keeping the data offset.
    pub fn clear_flags(&mut self) {
        let word = get_u16(self.buffer.as_ref(), field::FLAGS) & 0xf000;
        set_u16(self.buffer.as_mut(), field::FLAGS, word);
    }

    /// Sets the window size field.
    pub fn set_window_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// The raw option bytes, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.header_len());
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and writes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let value = segment_checksum(self.buffer.as_ref(), src, dst);
        self.set_checksum(value);
    }
}

/// The control flag a segment carries (at most one of SYN, FIN, RST; PSH
/// only when none of them is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TcpControl {
    /// No control flag.
    #[default]
    None,
    /// PSH.
    Psh,
    /// SYN.
    Syn,
    /// FIN.
    Fin,
    /// RST.
    Rst,
}

impl TcpControl {
    /// Sequence space the flag occupies: 1 for SYN and FIN, else 0.
    pub const fn sequence_len(self) -> usize {
        match self {
            TcpControl::Syn | TcpControl::Fin => 1,
            _ => 0,
        }
    }
}

/// The RFC 7323 timestamps option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpTimestamp {
    /// Sender's timestamp value.
    pub tsval: u32,
    /// Echoed timestamp.
    pub tsecr: u32,
}

/// The fields of a TCP segment the stack acts on, with the payload length.
///
/// The payload is not borrowed: see the module documentation for how to
/// emit a segment with zero copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Control flag.
    pub control: TcpControl,
    /// Sequence number.
    pub seq_number: SeqNumber,
    /// Acknowledgement number; `Some` exactly when ACK is set.
    pub ack_number: Option<SeqNumber>,
    /// Window size field (unscaled).
    pub window_len: u16,
    /// Window scale option (raw shift count, not capped).
    pub window_scale: Option<u8>,
    /// Maximum segment size option.
    pub max_seg_size: Option<u16>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// SACK blocks `(left, right)`; a fourth received block is dropped, and
    /// emit drops trailing blocks that do not fit in the option area.
    pub sack_ranges: [Option<(u32, u32)>; 3],
    /// Timestamps option.
    pub timestamp: Option<TcpTimestamp>,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl TcpRepr {
    /// Parses a segment sent from `src` to `dst`.
    ///
    /// * [`Error::Malformed`]: port 0, more than one of SYN/FIN/RST, or a
    ///   malformed option.
    /// * [`Error::Checksum`]: wrong checksum while `caps.tcp.rx()`.
    ///
    /// Unknown options are skipped; URG, ECE and CWR are ignored.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&T>,
        src: IpAddr,
        dst: IpAddr,
        caps: &ChecksumCaps,
    ) -> Result<Self, Error> {
        packet.check_len()?;
        if packet.src_port() == 0 || packet.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        if caps.tcp.rx() && !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        let control = match (packet.syn(), packet.fin(), packet.rst()) {
            (false, false, false) if packet.psh() => TcpControl::Psh,
            (false, false, false) => TcpControl::None,
            (true, false, false) => TcpControl::Syn,
            (false, true, false) => TcpControl::Fin,
            (false, false, true) => TcpControl::Rst,
            _ => return Err(Error::Malformed),
        };
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            control,
            seq_number: packet.seq_number(),
            ack_number: packet.ack().then(|| packet.ack_number()),
            window_len: packet.window_len(),
            payload_len: packet.payload().len(),
            ..TcpRepr::default()
        };
        let options = packet.options();
        if let [1, 1, 8, 10, v0, v1, v2, v3, e0, e1, e2, e3] = *options {
            // The layout of almost every segment on an established
            // connection (RFC 7323 Appendix A: NOP, NOP, timestamps),
            // without the general parser.
            repr.timestamp = Some(TcpTimestamp {
                tsval: u32::from_be_bytes([v0, v1, v2, v3]),
                tsecr: u32::from_be_bytes([e0, e1, e2, e3]),
            });
            return Ok(repr);
        }
        for option in packet.options_iter() {
            match option? {
                TcpOption::MaxSegmentSize(mss) => repr.max_seg_size = Some(mss),
                TcpOption::WindowScale(shift) => repr.window_scale = Some(shift),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::SackRange(ranges) => {
                    repr.sack_ranges = [ranges[0], ranges[1], ranges[2]];
                }
                TcpOption::Timestamps { tsval, tsecr } => {
                    repr.timestamp = Some(TcpTimestamp { tsval, tsecr });
                }
                _ => {}
            }
        }
        Ok(repr)
    }

    /// Option bytes other than SACK blocks, as emitted (a multiple of 4).
    fn fixed_options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.timestamp.is_some() {
            len += 12; // NOP NOP TS, or SACKPERM TS
        } else if self.sack_permitted {
            len += 4; // NOP NOP SACKPERM
        }
        if self.window_scale.is_some() {
            len += 4; // NOP WS
        }
        len
    }

    /// Number of SACK blocks emit writes: as many as fit.
    fn sack_blocks(&self) -> usize {
        if self.sack_ranges == [None; 3] {
            return 0; // the common case, without the arithmetic
        }
        let wanted = self.sack_ranges.iter().flatten().count();
        let room = MAX_OPTIONS_LEN - self.fixed_options_len();
        wanted.min(room.saturating_sub(4) / 8)
    }

    /// Length of the header emit writes, options included (a multiple of 4,
    /// at most 60).
    pub fn header_len(&self) -> usize {
        let sack = match self.sack_blocks() {
            0 => 0,
            n => 4 + 8 * n, // NOP NOP SACK
        };
        field::OPTIONS + self.fixed_options_len() + sack
    }

    /// Length of the segment: header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Sequence space the segment occupies: payload plus SYN and FIN.
    pub const fn segment_len(&self) -> usize {
        self.payload_len + self.control.sequence_len()
    }

    /// Writes every header field and the options (laid out as Linux does:
    /// MSS, SACK-permitted and timestamps, window scale, SACK blocks, each
    /// aligned to 4 bytes with NOPs), and, if `caps.tcp.tx()`, the checksum
    /// over the first [`buffer_len`](Self::buffer_len) bytes (otherwise
    /// zero). The payload must already be in place at
    /// [`header_len`](Self::header_len): it is checksummed, not written.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src: IpAddr,
        dst: IpAddr,
        caps: &ChecksumCaps,
    ) {
        let header_len = self.header_len();
        let total = self.buffer_len();
        assert!(packet.buffer.as_ref().len() >= total, "buffer too short");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number.unwrap_or_default());
        packet.set_header_len(header_len as u8);
        packet.clear_flags();
        packet.set_ack(self.ack_number.is_some());
        match self.control {
            TcpControl::None => {}
            TcpControl::Psh => packet.set_psh(true),
            TcpControl::Syn => packet.set_syn(true),
            TcpControl::Fin => packet.set_fin(true),
            TcpControl::Rst => packet.set_rst(true),
        }
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(0);
        self.emit_options(packet.options_mut());
        let value = if caps.tcp.tx() {
            packet.set_checksum(0);
            segment_checksum(&packet.buffer.as_ref()[..total], src, dst)
        } else {
            0
        };
        packet.set_checksum(value);
    }

    /// Writes the options into `out`, exactly `header_len() - 20` bytes.
    fn emit_options(&self, out: &mut [u8]) {
        if let (None, false, Some(ts), None, 0) = (
            self.max_seg_size,
            self.sack_permitted,
            self.timestamp,
            self.window_scale,
            self.sack_blocks(),
        ) {
            // What the general code below writes for timestamps alone (NOP,
            // NOP, timestamps), in one go: almost every segment.
            out[..4].copy_from_slice(&[1, 1, 8, 10]);
            out[4..8].copy_from_slice(&ts.tsval.to_be_bytes());
            out[8..12].copy_from_slice(&ts.tsecr.to_be_bytes());
            return;
        }
        let mut at = 0;
        let mut put = |option: TcpOption| at += option.emit(&mut out[at..]);
        if let Some(mss) = self.max_seg_size {
            put(TcpOption::MaxSegmentSize(mss));
        }
        match (self.sack_permitted, self.timestamp) {
            (true, Some(_)) => put(TcpOption::SackPermitted),
            (false, Some(_)) | (true, None) => {
                put(TcpOption::NoOperation);
                put(TcpOption::NoOperation);
            }
            (false, None) => {}
        }
        match self.timestamp {
            Some(TcpTimestamp { tsval, tsecr }) => put(TcpOption::Timestamps { tsval, tsecr }),
            None if self.sack_permitted => put(TcpOption::SackPermitted),
            None => {}
        }
        if let Some(shift) = self.window_scale {
            put(TcpOption::NoOperation);
            put(TcpOption::WindowScale(shift));
        }
        let blocks = self.sack_blocks();
        if blocks > 0 {
            let mut ranges = [None; 4];
            for (slot, range) in ranges
                .iter_mut()
                .zip(self.sack_ranges.iter().flatten())
                .take(blocks)
            {
                *slot = Some(*range);
            }
            put(TcpOption::NoOperation);
            put(TcpOption::NoOperation);
            put(TcpOption::SackRange(ranges));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Checksum;
    use core::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    /// A Linux SYN, 10.0.0.1:54321 -> 10.0.0.2:80: MSS 1460, SACK
    /// permitted, timestamps, NOP, window scale 7.
    const SYN: [u8; 40] = [
        0xd4, 0x31, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, // ports, seq, ack
        0xa0, 0x02, 0xfa, 0xf0, 0x19, 0x9d, 0x00, 0x00, // offset 10, SYN, window, cksum, urg
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, // SACKP, TS
        0x01, 0x03, 0x03, 0x07, // NOP, WS 7
    ];

    /// Data with ACK|PSH, 10.0.0.2:80 -> 10.0.0.1:54321, sequence number
    /// about to wrap, timestamps and one SACK block, payload "hello".
    const DATA: [u8; 49] = [
        0x00, 0x50, 0xd4, 0x31, 0xff, 0xff, 0xff, 0xf0, 0x12, 0x34, 0x56, 0x79, // ports, seq, ack
        0xb0, 0x18, 0x01, 0xf6, 0xd2, 0x9f, 0x00, 0x00, // offset 11, ACK|PSH, window 502
        0x01, 0x01, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x64, 0x00, 0x01, 0xe2, 0x40, // NOP NOP TS
        0x01, 0x01, 0x05, 0x0a, 0x12, 0x34, 0x60, 0x00, 0x12, 0x34, 0x70, 0x00, // NOP NOP SACK
        b'h', b'e', b'l', b'l', b'o',
    ];

    fn syn_repr() -> TcpRepr {
        TcpRepr {
            src_port: 54321,
            dst_port: 80,
            control: TcpControl::Syn,
            seq_number: SeqNumber(0x1234_5678),
            ack_number: None,
            window_len: 64240,
            window_scale: Some(7),
            max_seg_size: Some(1460),
            sack_permitted: true,
            sack_ranges: [None; 3],
            timestamp: Some(TcpTimestamp {
                tsval: 123_456,
                tsecr: 0,
            }),
            payload_len: 0,
        }
    }

    fn data_repr() -> TcpRepr {
        TcpRepr {
            src_port: 80,
            dst_port: 54321,
            control: TcpControl::Psh,
            seq_number: SeqNumber(0xffff_fff0),
            ack_number: Some(SeqNumber(0x1234_5679)),
            window_len: 502,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [Some((0x1234_6000, 0x1234_7000)), None, None],
            timestamp: Some(TcpTimestamp {
                tsval: 100,
                tsecr: 123_456,
            }),
            payload_len: 5,
        }
    }

    fn caps_with(tcp: Checksum) -> ChecksumCaps {
        ChecksumCaps {
            tcp,
            ..ChecksumCaps::default()
        }
    }

    /// Rewrites the data offset and option bytes of SYN, fixing the
    /// checksum, for option tests.
    fn syn_with_options(options: &[u8]) -> Vec<u8> {
        let mut bytes = SYN[..20].to_vec();
        bytes.extend_from_slice(options);
        let mut packet = TcpPacket::new_unchecked(&mut bytes[..]);
        packet.set_header_len((20 + options.len()) as u8);
        packet.fill_checksum(A, B);
        bytes
    }

    #[test]
    fn parse_syn() {
        let packet = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!((packet.src_port(), packet.dst_port()), (54321, 80));
        assert_eq!(packet.seq_number(), SeqNumber(0x1234_5678));
        assert!(packet.syn() && !packet.ack() && !packet.fin() && !packet.rst());
        assert!(!packet.psh() && !packet.urg() && !packet.ece() && !packet.cwr());
        assert_eq!(packet.header_len(), 40);
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.checksum(), 0x199d);
        assert_eq!(packet.urgent_at(), 0);
        assert!(packet.verify_checksum(A, B));
        assert!(packet.payload().is_empty());
        assert_eq!(packet.segment_len(), 1);
        let options: Vec<_> = packet.options_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            options,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps {
                    tsval: 123_456,
                    tsecr: 0
                },
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
            ]
        );
        let repr = TcpRepr::parse(&packet, A, B, &ChecksumCaps::default()).unwrap();
        assert_eq!(repr, syn_repr());
        assert_eq!(repr.segment_len(), 1);
    }

    #[test]
    fn parse_data() {
        let packet = TcpPacket::new_checked(&DATA[..]).unwrap();
        assert!(packet.ack() && packet.psh());
        assert_eq!(packet.payload(), b"hello");
        assert_eq!(packet.segment_len(), 5);
        let repr = TcpRepr::parse(&packet, B, A, &ChecksumCaps::default()).unwrap();
        assert_eq!(repr, data_repr());
    }

    #[test]
    fn emit_literals() {
        for (repr, bytes, src, dst) in [(syn_repr(), &SYN[..], A, B), (data_repr(), &DATA[..], B, A)] {
            assert_eq!(repr.buffer_len(), bytes.len());
            let mut buf = vec![0u8; bytes.len()];
            let header_len = repr.header_len();
            buf[header_len..].copy_from_slice(&bytes[header_len..]);
            repr.emit(
                &mut TcpPacket::new_unchecked(&mut buf[..]),
                src,
                dst,
                &ChecksumCaps::default(),
            );
            assert_eq!(buf, bytes);
            // Transmit offloaded: checksum left zero; garbage overwritten.
            let mut buf = vec![0xffu8; bytes.len()];
            repr.emit(
                &mut TcpPacket::new_unchecked(&mut buf[..]),
                src,
                dst,
                &caps_with(Checksum::Rx),
            );
            assert_eq!(buf[..16], bytes[..16]);
            assert_eq!(buf[16..20], [0, 0, 0, 0]);
            assert_eq!(buf[20..header_len], bytes[20..header_len]);
        }
    }

    #[test]
    fn timestamps_alone_take_the_short_paths_both_ways() {
        let mut repr = data_repr();
        repr.sack_ranges = [None; 3];
        repr.payload_len = 5;
        assert_eq!(repr.header_len(), 32);
        let mut buf = vec![0u8; 37];
        buf[32..].copy_from_slice(b"hello");
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut buf[..]),
            B,
            A,
            &ChecksumCaps::default(),
        );
        assert_eq!(
            buf[20..32],
            [0x01, 0x01, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x64, 0x00, 0x01, 0xe2, 0x40]
        );
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(TcpRepr::parse(&packet, B, A, &ChecksumCaps::default()), Ok(repr));
        // The same option in another legal layout (timestamps, then two
        // NOPs) goes through the general parser to the same result.
        let mut other = buf.clone();
        other[20..30].copy_from_slice(&buf[22..32]);
        other[30..32].copy_from_slice(&[0x01, 0x01]);
        let mut p = TcpPacket::new_unchecked(&mut other[..]);
        p.set_checksum(0);
        let c = segment_checksum(&other, B, A);
        TcpPacket::new_unchecked(&mut other[..]).set_checksum(c);
        let packet = TcpPacket::new_checked(&other[..]).unwrap();
        assert_eq!(TcpRepr::parse(&packet, B, A, &ChecksumCaps::default()), Ok(repr));
    }

    #[test]
    fn truncated_and_lying_offsets() {
        let caps = ChecksumCaps::ignored();
        for len in 0..20 {
            let packet = TcpPacket::new_unchecked(&SYN[..len]);
            assert_eq!(packet.check_len(), Err(Error::Truncated), "len {len}");
            assert_eq!(TcpRepr::parse(&packet, A, B, &caps), Err(Error::Truncated));
        }
        for len in 20..40 {
            // Data offset 10 runs past the segment.
            let packet = TcpPacket::new_unchecked(&SYN[..len]);
            assert_eq!(packet.check_len(), Err(Error::Truncated), "len {len}");
        }
        for offset in 0..5u8 {
            let mut bytes = SYN;
            bytes[12] = offset << 4;
            assert_eq!(TcpPacket::new_checked(&bytes[..]).unwrap_err(), Error::Malformed);
        }
        let mut bytes = SYN;
        bytes[12] = 0xf0;
        assert_eq!(TcpPacket::new_checked(&bytes[..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn bad_checksum() {
        for bit in 0..DATA.len() * 8 {
            let mut bytes = DATA;
            bytes[bit / 8] ^= 1 << (bit % 8);
            let packet = TcpPacket::new_unchecked(&bytes[..]);
            if packet.check_len().is_err() {
                continue;
            }
            assert!(!packet.verify_checksum(B, A), "bit {bit}");
            let result = TcpRepr::parse(&packet, B, A, &ChecksumCaps::default());
            assert_eq!(result, Err(Error::Checksum), "bit {bit}");
            assert_eq!(TcpRepr::parse(&packet, B, A, &caps_with(Checksum::Rx)), result);
        }
        // Receive offloaded: the corrupted segment is accepted.
        let mut bytes = DATA;
        bytes[48] ^= 0x20;
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        for tcp in [Checksum::Tx, Checksum::None] {
            let repr = TcpRepr::parse(&packet, B, A, &caps_with(tcp)).unwrap();
            assert_eq!(repr, data_repr());
        }
        // Wrong pseudo-header (a swapped pair sums the same, so change one).
        let packet = TcpPacket::new_checked(&DATA[..]).unwrap();
        let caps = ChecksumCaps::default();
        assert!(TcpRepr::parse(&packet, A, B, &caps).is_ok());
        assert_eq!(TcpRepr::parse(&packet, B, B, &caps), Err(Error::Checksum));
    }

    #[test]
    fn options_in_repr() {
        // Option parsing itself is tested in `option`; here, its effect.
        let caps = ChecksumCaps::default();
        for options in [
            &[0x02, 0x00, 0x01, 0x01][..], // length 0
            &[0x01, 0x1e, 0x01, 0x01],     // length 1
            &[0x1e, 0xff, 0x00, 0x00],     // length past the end
        ] {
            let bytes = syn_with_options(options);
            let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(TcpRepr::parse(&packet, A, B, &caps), Err(Error::Malformed));
        }
        // Unknown kind 30 skipped; EOL ends the list before bad padding.
        let options = [0x1e, 0x06, 0, 0, 0, 0, 0x02, 0x04, 0x05, 0xb4, 0x00, 0x02];
        let bytes = syn_with_options(&options);
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        let repr = TcpRepr::parse(&packet, A, B, &caps).unwrap();
        assert_eq!((repr.max_seg_size, repr.window_scale), (Some(1460), None));
        // Four SACK blocks: the repr keeps the first three.
        let mut options = vec![0x01, 0x01, 0x05, 0x22];
        for n in 1..=4u32 {
            options.extend_from_slice(&(n * 1000).to_be_bytes());
            options.extend_from_slice(&(n * 1000 + 500).to_be_bytes());
        }
        let bytes = syn_with_options(&options);
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        let repr = TcpRepr::parse(&packet, A, B, &caps).unwrap();
        let blocks = [1, 2, 3].map(|n| Some((n * 1000, n * 1000 + 500)));
        assert_eq!(repr.sack_ranges, blocks);
    }

    #[test]
    fn emitted_options_are_padded_and_round_trip() {
        let ranges = [Some((10, 20)), Some((30, 40)), Some((50, 60))];
        for mask in 0..32u32 {
            let bit = |n: u32| mask & (1 << n) != 0;
            let repr = TcpRepr {
                src_port: 1,
                dst_port: 2,
                max_seg_size: bit(0).then_some(1400),
                window_scale: bit(1).then_some(3),
                sack_permitted: bit(2),
                timestamp: bit(3).then_some(TcpTimestamp { tsval: 5, tsecr: 6 }),
                sack_ranges: if bit(4) { ranges } else { [None; 3] },
                payload_len: 3,
                ..TcpRepr::default()
            };
            let header_len = repr.header_len();
            assert_eq!(header_len % 4, 0, "mask {mask}");
            assert!(header_len <= 60, "mask {mask}");
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(
                &mut TcpPacket::new_unchecked(&mut buf[..]),
                A,
                B,
                &ChecksumCaps::default(),
            );
            let packet = TcpPacket::new_checked(&buf[..]).unwrap();
            assert_eq!(usize::from(packet.header_len()), header_len);
            let parsed = TcpRepr::parse(&packet, A, B, &ChecksumCaps::default()).unwrap();
            let mut expected = repr;
            // Blocks beyond the 40-byte option area are dropped.
            let other = 4 * usize::from(bit(0))
                + if bit(3) { 12 } else { 4 * usize::from(bit(2)) }
                + 4 * usize::from(bit(1));
            let fits = (40 - other - 4) / 8;
            for slot in expected.sack_ranges.iter_mut().skip(fits) {
                *slot = None;
            }
            if bit(4) && fits < 3 {
                assert!(header_len + 8 > 60, "mask {mask}: another block fits");
            }
            assert_eq!(parsed, expected, "mask {mask}");
        }
        // Only window scale: NOP + WS, 4 bytes.
        let repr = TcpRepr {
            src_port: 1,
            dst_port: 2,
            window_scale: Some(2),
            ..TcpRepr::default()
        };
        let mut buf = [0u8; 24];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut buf[..]),
            A,
            B,
            &ChecksumCaps::ignored(),
        );
        assert_eq!(buf[12], 0x60);
        assert_eq!(buf[20..], [0x01, 0x03, 0x03, 0x02]);
    }

    #[test]
    fn control_flags() {
        let caps = ChecksumCaps::ignored();
        let cases: [(u8, Result<TcpControl, Error>); 8] = [
            (0x10, Ok(TcpControl::None)),
            (0x18, Ok(TcpControl::Psh)),
            (0x12, Ok(TcpControl::Syn)),
            (0x19, Ok(TcpControl::Fin)),
            (0x04, Ok(TcpControl::Rst)),
            (0x03, Err(Error::Malformed)), // SYN+FIN
            (0x06, Err(Error::Malformed)), // SYN+RST
            (0x05, Err(Error::Malformed)), // FIN+RST
        ];
        for (flags, expected) in cases {
            let mut bytes = DATA;
            bytes[13] = flags;
            let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
            let result = TcpRepr::parse(&packet, B, A, &caps).map(|r| r.control);
            assert_eq!(result, expected, "flags {flags:#x}");
        }
        for at in [0, 2] {
            let mut bytes = DATA;
            bytes[at] = 0;
            bytes[at + 1] = 0;
            let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(TcpRepr::parse(&packet, B, A, &caps), Err(Error::Malformed));
        }
        assert_eq!(TcpControl::Syn.sequence_len(), 1);
        assert_eq!(TcpControl::Psh.sequence_len(), 0);
    }

    #[test]
    fn seq_number_wraps() {
        let near_end = SeqNumber(0xffff_fff0);
        let wrapped = near_end + 0x20;
        assert_eq!(wrapped, SeqNumber(0x10));
        assert!(near_end < wrapped);
        assert_eq!(wrapped.cmp(&near_end), Ordering::Greater);
        assert!(near_end + 0x0f < wrapped && near_end + 0x10 <= wrapped);
        assert_eq!(wrapped - near_end, 0x20);
        assert_eq!(near_end - wrapped, -0x20);
        assert_eq!(wrapped - 0x20, near_end);
        assert_eq!(near_end.max(wrapped), wrapped);
        assert_eq!(SeqNumber(u32::MAX).cmp(&SeqNumber(0)), Ordering::Less);
        assert!(SeqNumber(0x7fff_ffff) > SeqNumber(0));
        assert!(SeqNumber(0x8000_0001) < SeqNumber(0));
        let mut seq = SeqNumber(u32::MAX);
        seq += 1;
        assert_eq!(seq, SeqNumber(0));
        assert_eq!(seq.distance(SeqNumber(u32::MAX)), 1);
        assert_eq!(u32::from(SeqNumber::from(7)), 7);
        assert_eq!(SeqNumber(42).to_string(), "42");
    }
}
