//! Keyed hashing: the demultiplexing tables' hasher (so a remote host
//! cannot choose 4-tuples that collide: hash flooding) and RFC 6528 initial
//! sequence numbers. The key is the interface's secret, supplied by whoever
//! creates the interface (the stack itself has no source of randomness).
//!
//! Two hashers, for two jobs:
//! - [`KeyedHash`], SipHash-1-3 under the secret: initial sequence numbers
//!   (RFC 6528 asks for a cryptographic function there: an attacker who
//!   could predict ISNs could inject into connections) and ephemeral port
//!   starts.
//! - [`DemuxHash`], used by every lookup table (4-tuples, listeners, ports,
//!   ARP): a folded multiply (as in foldhash and wyhash) under a 128-bit
//!   key derived from the secret with SipHash. It is looked up for every
//!   frame in and out, where SipHash's cost showed; its keyed
//!   multiply-and-fold keeps the bucket a tuple lands in unpredictable to a
//!   remote host that does not know the key (the level of flooding
//!   resistance foldhash and ahash offer), while costing a few instructions
//!   per field.

use core::hash::{BuildHasher, Hash, Hasher};
use core::net::SocketAddrV4;
use std::hash::DefaultHasher;

use crate::time::Instant;
use crate::wire::SeqNumber;

/// A `BuildHasher` for SipHash-1-3 keyed by a 128-bit secret.
#[derive(Clone, Copy, Debug)]
pub struct KeyedHash {
    k0: u64,
    k1: u64,
}

impl KeyedHash {
    /// A hasher keyed with `secret`.
    pub fn new(secret: [u8; 16]) -> KeyedHash {
        let (a, b) = secret.split_at(8);
        KeyedHash {
            k0: u64::from_le_bytes(a.try_into().expect("8 bytes")),
            k1: u64::from_le_bytes(b.try_into().expect("8 bytes")),
        }
    }

    /// Hashes `v` under the key.
    pub fn hash_one_keyed<T: Hash>(&self, v: T) -> u64 {
        self.hash_one(v)
    }
}

impl BuildHasher for KeyedHash {
    type Hasher = DefaultHasher;
    fn build_hasher(&self) -> DefaultHasher {
        let mut h = DefaultHasher::new();
        h.write_u64(self.k0);
        h.write_u64(self.k1);
        h
    }
}

/// A `BuildHasher` for the lookup tables: a keyed folded multiply (see
/// the module docs). `Copy`: each table holds its own.
#[derive(Clone, Copy, Debug)]
pub struct DemuxHash {
    seed: u64,
    mul: u64,
    fin: u64,
}

/// The 64×64→128-bit product folded to 64 bits (high half xor low half).
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl DemuxHash {
    /// The demultiplexing hasher of the interface keyed by `key`.
    pub fn from_key(key: &KeyedHash) -> DemuxHash {
        let seed = key.hash_one(0x6465_6d75_785f_7365_u64); // "demux_se"
        let mul = key.hash_one(0x6465_6d75_785f_6d75_u64) | 1; // odd: never zero
        let fin = key.hash_one(0x6465_6d75_785f_6669_u64) | 1;
        DemuxHash { seed, mul, fin }
    }
}

impl BuildHasher for DemuxHash {
    type Hasher = DemuxHasher;
    #[inline]
    fn build_hasher(&self) -> DemuxHasher {
        DemuxHasher {
            acc: self.seed,
            mul: self.mul,
            fin: self.fin,
        }
    }
}

/// The hasher [`DemuxHash`] builds.
#[derive(Clone, Debug)]
pub struct DemuxHasher {
    acc: u64,
    mul: u64,
    fin: u64,
}

impl DemuxHasher {
    #[inline(always)]
    fn mix(&mut self, x: u64) {
        // The rotation keeps the previous state's high bits in play when
        // `x` cancels its low ones.
        self.acc = fold_mul(self.acc ^ x, self.mul).rotate_left(23);
    }
}

impl Hasher for DemuxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            // The length in the top byte: "ab" and "ab\0" differ.
            self.mix(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.mix(u64::from(i as u32));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.acc, self.fin)
    }
}

/// RFC 6528 §3: ISN = M + F(localip, localport, remoteip, remoteport,
/// secretkey), with M a timer ticking every 4 µs.
pub fn initial_seq(key: &KeyedHash, local: SocketAddrV4, remote: SocketAddrV4, now: Instant) -> SeqNumber {
    let f = key.hash_one((local, remote)) as u32;
    let m = (now.nanos() / 4000) as u32;
    SeqNumber(m.wrapping_add(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_hash_depends_on_the_key_and_every_field() {
        let a = DemuxHash::from_key(&KeyedHash::new([1; 16]));
        let b = DemuxHash::from_key(&KeyedHash::new([2; 16]));
        let l: SocketAddrV4 = "198.18.0.2:80".parse().unwrap();
        let r: SocketAddrV4 = "198.18.0.1:4000".parse().unwrap();
        let h = |k: &DemuxHash, l: SocketAddrV4, r: SocketAddrV4| k.hash_one((l, r));
        assert_ne!(h(&a, l, r), h(&b, l, r));
        assert_eq!(h(&a, l, r), h(&a, l, r));
        let mut seen = std::collections::HashSet::new();
        for port in 5000..9096u16 {
            assert!(seen.insert(h(&a, l, SocketAddrV4::new(*r.ip(), port))));
            assert!(seen.insert(h(&a, SocketAddrV4::new(*l.ip(), port), r)));
        }
        assert_ne!(h(&a, l, r), h(&a, r, l), "the order of the pair counts");
        assert_ne!(a.hash_one(&b"ab"[..]), a.hash_one(&b"ab\0"[..]));
    }

    #[test]
    fn demux_hash_spreads_sequential_ports_over_buckets() {
        // hashbrown takes the bucket from the low bits and a tag from the
        // top 7: both must vary with the port.
        let k = DemuxHash::from_key(&KeyedHash::new([9; 16]));
        let l: SocketAddrV4 = "198.18.0.2:80".parse().unwrap();
        let (mut low, mut top) = ([0u32; 256], [0u32; 128]);
        for port in 32768..32768 + 25600u16 {
            let v = k.hash_one((l, SocketAddrV4::new([198, 18, 0, 1].into(), port)));
            low[(v & 255) as usize] += 1;
            top[(v >> 57) as usize] += 1;
        }
        // 100 per low bucket and 200 per tag on average.
        assert!(low.iter().all(|&n| (40..200).contains(&n)), "{low:?}");
        assert!(top.iter().all(|&n| (100..320).contains(&n)), "{top:?}");
    }

    #[test]
    fn isn_depends_on_the_key_the_tuple_and_time() {
        let a = KeyedHash::new([1; 16]);
        let b = KeyedHash::new([2; 16]);
        let l: SocketAddrV4 = "198.18.0.2:80".parse().unwrap();
        let r: SocketAddrV4 = "198.18.0.1:4000".parse().unwrap();
        let r2: SocketAddrV4 = "198.18.0.1:4001".parse().unwrap();
        let t = Instant::from_millis(1);
        assert_ne!(initial_seq(&a, l, r, t), initial_seq(&b, l, r, t));
        assert_ne!(initial_seq(&a, l, r, t), initial_seq(&a, l, r2, t));
        let later = initial_seq(&a, l, r, t + core::time::Duration::from_micros(400));
        assert_eq!(
            later.distance(initial_seq(&a, l, r, t)),
            100,
            "M ticks every 4 µs"
        );
    }
}
