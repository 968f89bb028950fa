//! TCP options (RFC 9293 §3.1, RFC 7323, RFC 2018): [`TcpOption`] and the
//! [`TcpOptions`] iterator over a header's option area.
//!
//! Parsing delimits every option by its length byte: unknown kinds, and
//! known kinds with an unexpected length, are returned as
//! [`TcpOption::Unknown`] and skipped; an option whose length byte is
//! missing, below 2, or runs past the option area is [`Error::Malformed`].
//! No input makes parsing panic.

use core::iter::FusedIterator;

use crate::wire::{get_u16, get_u32, set_u16, set_u32, Error};

/// Option kinds.
mod opt {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WS: u8 = 3;
    pub const SACKPERM: u8 = 4;
    pub const SACKRNG: u8 = 5;
    pub const TSTAMP: u8 = 8;
}

/// A TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption {
    /// End of option list (kind 0); the rest of the option area is padding.
    EndOfList,
    /// No-operation (kind 1), used for alignment.
    NoOperation,
    /// Maximum segment size (kind 2).
    MaxSegmentSize(u16),
    /// Window scale shift count (kind 3; RFC 7323 caps it at 14).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5) as `(left, right)` edges, up to four.
    SackRange([Option<(u32, u32)>; 4]),
    /// Timestamps (kind 8).
    Timestamps {
        /// Sender's timestamp value.
        tsval: u32,
        /// Echoed timestamp.
        tsecr: u32,
    },
    /// Any other option, or a known kind with the wrong length; its data is
    /// skipped. Emitted with zeroed data.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option length, kind and length bytes included.
        length: u8,
    },
}

impl TcpOption {
    /// Parses the option at the start of `data` (the remaining option
    /// area), returning it and the number of bytes it occupies.
    ///
    /// Fails with [`Error::Malformed`] if `data` is empty, or the option's
    /// length byte is missing, below 2, or runs past `data`.
    pub fn parse(data: &[u8]) -> Result<(TcpOption, usize), Error> {
        let kind = *data.first().ok_or(Error::Malformed)?;
        match kind {
            opt::END => return Ok((TcpOption::EndOfList, 1)),
            opt::NOP => return Ok((TcpOption::NoOperation, 1)),
            _ => {}
        }
        let length = *data.get(1).ok_or(Error::Malformed)?;
        let len = usize::from(length);
        if len < 2 || len > data.len() {
            return Err(Error::Malformed);
        }
        let body = &data[2..len];
        let option = match (kind, len) {
            (opt::MSS, 4) => TcpOption::MaxSegmentSize(get_u16(body, 0..2)),
            (opt::WS, 3) => TcpOption::WindowScale(body[0]),
            (opt::SACKPERM, 2) => TcpOption::SackPermitted,
            (opt::SACKRNG, 10 | 18 | 26 | 34) => {
                let mut ranges = [None; 4];
                for (slot, block) in ranges.iter_mut().zip(body.chunks_exact(8)) {
                    *slot = Some((get_u32(block, 0..4), get_u32(block, 4..8)));
                }
                TcpOption::SackRange(ranges)
            }
            (opt::TSTAMP, 10) => TcpOption::Timestamps {
                tsval: get_u32(body, 0..4),
                tsecr: get_u32(body, 4..8),
            },
            _ => TcpOption::Unknown { kind, length },
        };
        Ok((option, len))
    }

    /// Number of bytes this option occupies when emitted.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(ranges) => 2 + 8 * ranges.iter().flatten().count(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { length, .. } => usize::from(*length).max(2),
        }
    }

    /// Writes the option at the start of `buffer`, returning the number of
    /// bytes written ([`buffer_len`](Self::buffer_len)).
    ///
    /// # Panics
    ///
    /// If `buffer` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buffer: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let out = &mut buffer[..len];
        match *self {
            TcpOption::EndOfList => out[0] = opt::END,
            TcpOption::NoOperation => out[0] = opt::NOP,
            TcpOption::MaxSegmentSize(mss) => {
                out[..2].copy_from_slice(&[opt::MSS, 4]);
                set_u16(out, 2..4, mss);
            }
            TcpOption::WindowScale(shift) => {
                out.copy_from_slice(&[opt::WS, 3, shift]);
            }
            TcpOption::SackPermitted => out.copy_from_slice(&[opt::SACKPERM, 2]),
            TcpOption::SackRange(ranges) => {
                out[..2].copy_from_slice(&[opt::SACKRNG, len as u8]);
                for (block, (left, right)) in out[2..].chunks_exact_mut(8).zip(ranges.iter().flatten()) {
                    set_u32(block, 0..4, *left);
                    set_u32(block, 4..8, *right);
                }
            }
            TcpOption::Timestamps { tsval, tsecr } => {
                out[..2].copy_from_slice(&[opt::TSTAMP, 10]);
                set_u32(out, 2..6, tsval);
                set_u32(out, 6..10, tsecr);
            }
            TcpOption::Unknown { kind, .. } => {
                out[..2].copy_from_slice(&[kind, len as u8]);
                out[2..].fill(0);
            }
        }
        len
    }
}

/// An iterator over the options of a TCP header.
///
/// Yields `Ok` options in order; stops after [`TcpOption::EndOfList`] (the
/// rest is padding) or after yielding one `Err(Error::Malformed)` for an
/// option it cannot delimit.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    data: &'a [u8],
}

impl<'a> TcpOptions<'a> {
    /// Iterates over the options in `data` (a header's option area).
    pub const fn new(data: &'a [u8]) -> Self {
        TcpOptions { data }
    }
}

impl Iterator for TcpOptions<'_> {
    type Item = Result<TcpOption, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        match TcpOption::parse(self.data) {
            Ok((TcpOption::EndOfList, _)) => {
                self.data = &[];
                Some(Ok(TcpOption::EndOfList))
            }
            Ok((option, len)) => {
                self.data = self.data.get(len..).unwrap_or(&[]);
                Some(Ok(option))
            }
            Err(err) => {
                self.data = &[];
                Some(Err(err))
            }
        }
    }
}

impl FusedIterator for TcpOptions<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &[u8]) -> Vec<Result<TcpOption, Error>> {
        TcpOptions::new(data).collect()
    }

    #[test]
    fn option_emit_round_trips() {
        let options = [
            TcpOption::EndOfList,
            TcpOption::NoOperation,
            TcpOption::MaxSegmentSize(536),
            TcpOption::WindowScale(14),
            TcpOption::SackPermitted,
            TcpOption::SackRange([Some((1, 2)), Some((3, 4)), None, None]),
            TcpOption::Timestamps { tsval: 7, tsecr: 9 },
            TcpOption::Unknown { kind: 99, length: 5 },
        ];
        for option in options {
            let mut buf = [0xeeu8; 40];
            let len = option.emit(&mut buf);
            assert_eq!(len, option.buffer_len());
            assert_eq!(TcpOption::parse(&buf[..len]), Ok((option, len)));
        }
    }

    #[test]
    fn malformed_lengths() {
        for data in [
            &[0x02, 0x00, 0x01, 0x01][..],                     // length 0
            &[0x01, 0x1e, 0x01, 0x01],                         // length 1
            &[0x02, 0x04, 0x05, 0xb4, 0x08, 0x0a, 0x00, 0x00], // past the end
            &[0x01, 0x01, 0x01, 0x1e],                         // length byte missing
            &[0x1e, 0xff, 0x00, 0x00],                         // 255, past the end
        ] {
            let options = collect(data);
            // Exactly one error, last: iteration stops there.
            assert_eq!(options.last(), Some(&Err(Error::Malformed)), "{data:x?}");
            assert_eq!(options.iter().filter(|o| o.is_err()).count(), 1);
        }
        assert_eq!(TcpOption::parse(&[]), Err(Error::Malformed));
        let mut iter = TcpOptions::new(&[0x05, 0x01]);
        assert_eq!(iter.next(), Some(Err(Error::Malformed)));
        assert_eq!(iter.next(), None);
        assert_eq!(iter.next(), None);
    }

    #[test]
    fn unknown_and_wrong_length_skipped_end_stops() {
        let data = [
            0x1e, 0x06, 0xaa, 0xbb, 0xcc, 0xdd, // kind 30, length 6
            0x03, 0x04, 0x05, 0x00, // window scale with length 4
            0x02, 0x04, 0x05, 0xb4, // MSS 1460
            0x00, 0x02, 0x00, // EOL, then bytes that would be malformed
        ];
        assert_eq!(
            collect(&data),
            [
                Ok(TcpOption::Unknown { kind: 30, length: 6 }),
                Ok(TcpOption::Unknown { kind: 3, length: 4 }),
                Ok(TcpOption::MaxSegmentSize(1460)),
                Ok(TcpOption::EndOfList),
            ]
        );
        assert!(collect(&[]).is_empty());
    }

    #[test]
    fn sack_blocks() {
        let mut data = vec![0x05, 0x22];
        for n in 1..=4u32 {
            data.extend_from_slice(&(n * 1000).to_be_bytes());
            data.extend_from_slice(&(n * 1000 + 500).to_be_bytes());
        }
        let blocks = [1, 2, 3, 4].map(|n| Some((n * 1000, n * 1000 + 500)));
        assert_eq!(TcpOption::parse(&data), Ok((TcpOption::SackRange(blocks), 34)));
        // One block; a length that is not 2 + 8n is unknown.
        data[1] = 10;
        let one = TcpOption::SackRange([blocks[0], None, None, None]);
        assert_eq!(TcpOption::parse(&data), Ok((one, 10)));
        data[1] = 12;
        let odd = TcpOption::Unknown { kind: 5, length: 12 };
        assert_eq!(TcpOption::parse(&data), Ok((odd, 12)));
    }
}
