//! Receive-side scaling, as a NIC computes it: which receive queue a TCP
//! flow's frames arrive on, so that `connect` can pick a source port whose
//! replies land on the caller's own queue (libtpa's trick), and a
//! connection lives where its thread polls.
//!
//! The hash is Microsoft's Toeplitz hash over the IPv4 addresses and ports
//! (the input of DPDK's `RTE_ETH_RSS_NONFRAG_IPV4_TCP`, and of
//! `rte_softrss`, which `stack/tests/dpdk.rs` checks this against); the
//! queue is the redirection table's entry for the hash's low bits. With
//! [`SYMMETRIC_KEY`] (0x6d5a repeated) a flow hashes alike both ways, so
//! either end's view of the 4-tuple gives the same queue.
//!
//! Guarantees: [`Steering::queue_of`] is what the port computes for a
//! frame of that flow, given the key and table the port was programmed
//! with; it is a pure function of them.

use core::net::SocketAddrV4;

/// A Toeplitz key under which every flow hashes alike in both directions
/// (each 16-bit half of the key is the same, so swapping the addresses and
/// the ports swaps equal halves).
pub const SYMMETRIC_KEY: [u8; 40] = {
    let mut k = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// The Toeplitz hash of `input` under `key` (the key must be at least 4
/// bytes longer than the input: 40 bytes covers IPv6 with ports).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // The key's 32 bits that start at the current input bit, and the
    // key's bits that slide in after them.
    let mut window = key.iter().take(4).fold(0u32, |w, &b| (w << 8) | u32::from(b));
    for (i, &byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    hash
}

/// The RSS hash of a TCP (or UDP) frame over IPv4 from `src` to `dst`, as
/// the NIC computes it on receipt.
pub fn hash_v4(key: &[u8], src: SocketAddrV4, dst: SocketAddrV4) -> u32 {
    let mut input = [0u8; 12];
    input[..4].copy_from_slice(&src.ip().octets());
    input[4..8].copy_from_slice(&dst.ip().octets());
    input[8..10].copy_from_slice(&src.port().to_be_bytes());
    input[10..12].copy_from_slice(&dst.port().to_be_bytes());
    toeplitz(key, &input)
}

/// How a port spreads received flows over its queues: the key it hashes
/// with and its redirection table (entry `hash % len` names the queue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Steering {
    /// The Toeplitz key (40 bytes on most NICs).
    pub key: Vec<u8>,
    /// The redirection table: queue numbers on the port.
    pub reta: Vec<u16>,
    /// The queue (on the port) of the stack that steers by this.
    pub queue: u16,
}

impl Steering {
    /// The queue that frames from `remote` to `local` arrive on.
    pub fn queue_of(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u16 {
        let h = hash_v4(&self.key, remote, local);
        let n = self.reta.len().max(1);
        self.reta.get(h as usize % n).copied().unwrap_or(0)
    }

    /// Whether a connection from `local` to `remote` would be answered on
    /// this stack's own queue.
    pub fn lands_here(&self, local: SocketAddrV4, remote: SocketAddrV4) -> bool {
        self.queue_of(local, remote) == self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn v4(ip: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(ip), port)
    }

    /// The key of Microsoft's RSS verification suite.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0,
        0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42,
        0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    #[test]
    fn the_hash_matches_microsofts_verification_suite() {
        // (source, destination, IPv4-only hash, IPv4 with TCP ports hash)
        let cases = [
            (
                v4([66, 9, 149, 187], 2794),
                v4([161, 142, 100, 80], 1766),
                0x323e_8fc2,
                0x51cc_c178,
            ),
            (
                v4([199, 92, 111, 2], 14230),
                v4([65, 69, 140, 83], 4739),
                0xd718_262a,
                0xc626_b0ea,
            ),
            (
                v4([24, 19, 198, 95], 12898),
                v4([12, 22, 207, 184], 38024),
                0xd2d0_a5de,
                0x5c2b_394a,
            ),
            (
                v4([38, 27, 205, 30], 48228),
                v4([209, 142, 163, 6], 2217),
                0x8298_9176,
                0xafc7_327f,
            ),
            (
                v4([153, 39, 163, 191], 44251),
                v4([202, 188, 127, 2], 1303),
                0x5d18_09c5,
                0x10e8_28a2,
            ),
        ];
        for (src, dst, ip_only, with_ports) in cases {
            let mut ips = [0u8; 8];
            ips[..4].copy_from_slice(&src.ip().octets());
            ips[4..].copy_from_slice(&dst.ip().octets());
            assert_eq!(toeplitz(&MS_KEY, &ips), ip_only, "{src} -> {dst}");
            assert_eq!(hash_v4(&MS_KEY, src, dst), with_ports, "{src} -> {dst}");
        }
    }

    #[test]
    fn the_symmetric_key_hashes_both_directions_alike() {
        let a = v4([198, 18, 0, 2], 40000);
        for (i, port) in [80u16, 443, 6379, 17300, 65535].into_iter().enumerate() {
            let b = v4([198, 18, 0, 1 + i as u8], port);
            assert_eq!(hash_v4(&SYMMETRIC_KEY, a, b), hash_v4(&SYMMETRIC_KEY, b, a));
        }
        // And the Microsoft key does not (so the test above can fail).
        let b = v4([198, 18, 0, 1], 80);
        assert_ne!(hash_v4(&MS_KEY, a, b), hash_v4(&MS_KEY, b, a));
    }

    #[test]
    fn a_flow_lands_on_the_queue_its_table_entry_names() {
        let reta: Vec<u16> = (0..128).map(|i| i % 4).collect();
        let s = Steering {
            key: SYMMETRIC_KEY.to_vec(),
            reta: reta.clone(),
            queue: 2,
        };
        let local = v4([198, 18, 0, 2], 0);
        let remote = v4([198, 18, 0, 1], 6379);
        let mut here = 0;
        for port in 32768..33768u16 {
            let l = SocketAddrV4::new(*local.ip(), port);
            let h = hash_v4(&SYMMETRIC_KEY, remote, l);
            let q = reta[h as usize % 128];
            assert_eq!(s.queue_of(l, remote), q);
            assert_eq!(s.lands_here(l, remote), q == 2);
            here += usize::from(q == 2);
        }
        // About a quarter of the ports land on each queue.
        assert!((150..350).contains(&here), "{here} of 1000 on queue 2");
    }
}
