//! Keyed hashing: the demultiplexing tables' hasher (so a remote host
//! cannot choose 4-tuples that collide: hash flooding) and RFC 6528 initial
//! sequence numbers. The key is the interface's secret, supplied by whoever
//! creates the interface (the stack itself has no source of randomness).

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
