//! The internet checksum (RFC 1071) and checksum offload capabilities.
//!
//! [`sum`] computes the folded one's-complement sum of a byte slice, adding
//! 64-bit native-endian words with end-around carry (RFC 1071 §2: the sum
//! may be taken in any word size and is byte-order independent, so one
//! byte swap of the folded result replaces a swap per word) and folding
//! once at the end. Partial sums combine with
//! [`combine`]; [`pseudo_header`] sums the TCP/UDP pseudo-header for IPv4 or
//! IPv6. A checksum *field* holds the complement of the total: a packet
//! verifies when the sum over it, checksum included, is `0xffff`.
//!
//! None of these functions panic or overflow, for any input length.
//!
//! [`ChecksumCaps`] records, per protocol, which directions software must
//! handle; the rest is offloaded to the device.

use core::net::IpAddr;

use super::IpProtocol;

/// Folds a 64-bit accumulator of 16-bit words into a one's-complement
/// 16-bit sum.
///
/// Four fixed end-around-carry steps, no loop: 64 bits to < 2^33, then to
/// < 2^18, then to at most 0x10001, then to at most 0xffff. Each step keeps
/// the value modulo 0xffff and keeps a non-zero value non-zero, so the
/// result is what folding until it fits gives: 0 only for 0, otherwise the
/// value in 1..=0xffff congruent to `acc`.
#[inline]
fn fold(acc: u64) -> u16 {
    let a = (acc & 0xffff_ffff) + (acc >> 32);
    let a = (a & 0xffff) + (a >> 16);
    let a = (a & 0xffff) + (a >> 16);
    let a = (a & 0xffff) + (a >> 16);
    a as u16
}

/// `a + b` with the carry out of bit 63 added back in (one's-complement
/// addition in 64 bits). Never zero unless both are.
#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // No overflow: with a carry, `s` is at most 2^64 - 2.
    s + u64::from(carry)
}

/// Native-endian sum of `data` taken as 16-bit words, a trailing odd byte
/// padded with zero, as a 64-bit one's-complement value: congruent to the
/// 16-bit sum modulo 0xffff (which divides 2^64 - 1), zero only if every
/// byte is. Eight bytes per addition, in two independent chains; no
/// length limit.
fn native_sum(data: &[u8]) -> u64 {
    let word = |c: &[u8]| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    let (mut a, mut b) = (0u64, 0u64);
    let mut pairs = data.chunks_exact(16);
    for p in &mut pairs {
        a = add_carry(a, word(&p[..8]));
        b = add_carry(b, word(&p[8..]));
    }
    let mut rest = pairs.remainder();
    if rest.len() >= 8 {
        a = add_carry(a, word(rest));
        rest = &rest[8..];
    }
    // The last 0..=7 bytes, zero-padded to a word: the same 16-bit words
    // (an odd byte the high-order byte of a zero-padded one, RFC 1071).
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    b = add_carry(b, u64::from_ne_bytes(tail));
    add_carry(a, b)
}

/// Returns the one's-complement sum of `data` taken as big-endian 16-bit
/// words (an odd trailing byte is padded with zero), folded to 16 bits and
/// *not* complemented.
///
/// Sums of pieces can be joined with [`combine`] as long as every piece but
/// the last has an even length.
pub fn sum(data: &[u8]) -> u16 {
    // The native-endian sum is the byte-swapped big-endian sum.
    u16::from_be(fold(native_sum(data)))
}

/// Adds two partial one's-complement sums: [`combine`] of two, without
/// the slice.
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// Combines partial one's-complement sums (from [`sum`] or
/// [`pseudo_header`]) into one folded sum.
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc: u64 = 0;
    for chunk in sums.chunks(1 << 16) {
        let part: u64 = chunk.iter().map(|&s| u64::from(s)).sum();
        acc += u64::from(fold(part));
    }
    fold(acc)
}

/// Returns the one's-complement sum of the TCP/UDP pseudo-header.
///
/// For an IPv4 pair this is RFC 793's source, destination, zero, protocol
/// and 16-bit length; for an IPv6 pair RFC 8200's source, destination,
/// 32-bit length, zeros and next header. Both reduce to the same sum, so
/// `length` is the upper-layer length in bytes either way. Mixing an IPv4
/// and an IPv6 address is meaningless but harmless.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: IpProtocol, length: u32) -> u16 {
    if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
        // The common case without the slices: the two 16-bit halves of
        // each address, as numbers (big-endian words).
        let (s, d) = (u32::from(s), u32::from(d));
        let acc = u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff)
            + u64::from(u8::from(protocol))
            + u64::from(length >> 16)
            + u64::from(length & 0xffff);
        return fold(acc);
    }
    fn addr_sum(addr: IpAddr) -> u16 {
        match addr {
            IpAddr::V4(a) => sum(&a.octets()),
            IpAddr::V6(a) => sum(&a.octets()),
        }
    }
    combine(&[
        addr_sum(src),
        addr_sum(dst),
        u16::from(u8::from(protocol)),
        (length >> 16) as u16,
        (length & 0xffff) as u16,
    ])
}

/// Which directions *software* must handle a checksum in; the other
/// directions are offloaded to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Checksum {
    /// No offload: software verifies received and fills transmitted
    /// checksums.
    #[default]
    Both,
    /// Transmit offload: software verifies received checksums; the device
    /// fills transmitted ones.
    Rx,
    /// Receive offload: the device has verified received checksums; software
    /// fills transmitted ones.
    Tx,
    /// Full offload: software neither verifies nor fills.
    None,
}

impl Checksum {
    /// Whether software must verify the checksum of a received packet.
    pub fn rx(&self) -> bool {
        matches!(self, Checksum::Both | Checksum::Rx)
    }

    /// Whether software must fill the checksum of a transmitted packet.
    pub fn tx(&self) -> bool {
        matches!(self, Checksum::Both | Checksum::Tx)
    }
}

/// Per-protocol checksum duties of the software, given a device's offloads.
///
/// The default has software do everything (no offload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChecksumCaps {
    /// IPv4 header checksum.
    pub ipv4: Checksum,
    /// TCP checksum.
    pub tcp: Checksum,
    /// UDP checksum.
    pub udp: Checksum,
    /// ICMPv4 checksum.
    pub icmpv4: Checksum,
}

impl ChecksumCaps {
    /// Software neither verifies nor fills any checksum: for tests and for
    /// devices (such as loopback) where checksums are meaningless.
    pub fn ignored() -> Self {
        ChecksumCaps {
            ipv4: Checksum::None,
            tcp: Checksum::None,
            udp: Checksum::None,
            icmpv4: Checksum::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    /// Straightforward RFC 1071 reference: big-endian pairs, fold each step.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u32::from(b));
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Deterministic pseudo-random bytes.
    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(!sum(&data), 0x220d);
    }

    #[test]
    fn known_ipv4_header() {
        // The widely published example header, checksum b861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(sum(&header), 0xffff);
        header[10] = 0;
        header[11] = 0;
        assert_eq!(!sum(&header), 0xb861);
    }

    #[test]
    fn matches_reference_for_all_lengths_and_alignments() {
        let data = noise(300, 7);
        for start in 0..8 {
            for end in start..data.len() {
                let slice = &data[start..end];
                assert_eq!(sum(slice), reference(slice), "{start}..{end}");
            }
        }
    }

    #[test]
    fn odd_lengths() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x6834);
        assert_eq!(sum(&[0xff, 0xff, 0x01]), 0x0100);
    }

    #[test]
    fn all_ones() {
        for len in [2, 4, 6, 8, 64, 1500, 65_536, 1 << 20] {
            assert_eq!(sum(&vec![0xff; len]), 0xffff, "len {len}");
        }
        for len in [1, 3, 5, 1501] {
            let data = vec![0xff; len];
            assert_eq!(sum(&data), reference(&data), "len {len}");
        }
        assert_eq!(sum(&[0xff]), 0xff00);
    }

    #[test]
    fn fold_matches_folding_until_it_fits() {
        let slow = |mut acc: u64| {
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let edges = [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
            u64::MAX - 1,
        ];
        for v in edges.into_iter().chain((0..10_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 48)
        })) {
            assert_eq!(fold(v), slow(v), "{v:#x}");
        }
    }

    #[test]
    fn add_is_combine_of_two() {
        for (a, b) in [
            (0, 0),
            (0, 0xffff),
            (0xffff, 0xffff),
            (0x1234, 0xfedc),
            (1, 0xfffe),
        ] {
            assert_eq!(add(a, b), combine(&[a, b]));
        }
    }

    #[test]
    fn incremental_combine_equals_one_shot() {
        let data = noise(1000, 42);
        let whole = sum(&data);
        for cut in (0..=data.len()).step_by(2) {
            let (a, b) = data.split_at(cut);
            assert_eq!(combine(&[sum(a), sum(b)]), whole, "cut {cut}");
        }
        let pieces: Vec<u16> = data.chunks(6).map(sum).collect();
        assert_eq!(combine(&pieces), whole);
        assert_eq!(combine(&[]), 0);
        assert_eq!(combine(&[0xffff, 0xffff]), 0xffff);
        assert_eq!(combine(&[0x8000, 0x8000]), 0x0001);
    }

    #[test]
    fn pseudo_header_v4() {
        // 10.0.0.1 -> 10.0.0.2, UDP, length 12, summed by hand:
        // 0a00 + 0001 + 0a00 + 0002 + 0011 + 000c = 1420.
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(pseudo_header(src, dst, IpProtocol::Udp, 12), 0x1420);
        // Matches the explicit 12-byte pseudo-header.
        let explicit = [10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 12];
        assert_eq!(pseudo_header(src, dst, IpProtocol::Udp, 12), sum(&explicit));
    }

    #[test]
    fn pseudo_header_v6() {
        let src = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let dst = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
        let len = 0x0001_0010; // a jumbogram-sized length exercises both halves
        let mut explicit = Vec::new();
        explicit.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        explicit.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        explicit.extend_from_slice(&[0x00, 0x01, 0x00, 0x10, 0, 0, 0, 6]);
        assert_eq!(pseudo_header(src, dst, IpProtocol::Tcp, len), sum(&explicit));
        // By hand: 2*(2001 + 0db8) + 0001 + 0002 + 0001 + 0010 + 0006 = 5b8c.
        assert_eq!(pseudo_header(src, dst, IpProtocol::Tcp, len), 0x5b8c);
    }

    #[test]
    fn caps_directions() {
        assert!(Checksum::Both.rx() && Checksum::Both.tx());
        assert!(Checksum::Rx.rx() && !Checksum::Rx.tx());
        assert!(!Checksum::Tx.rx() && Checksum::Tx.tx());
        assert!(!Checksum::None.rx() && !Checksum::None.tx());
        let caps = ChecksumCaps::default();
        for c in [caps.ipv4, caps.tcp, caps.udp, caps.icmpv4] {
            assert_eq!(c, Checksum::Both);
        }
        let caps = ChecksumCaps::ignored();
        for c in [caps.ipv4, caps.tcp, caps.udp, caps.icmpv4] {
            assert_eq!(c, Checksum::None);
        }
    }
}
