//! The ARP cache (RFC 826) with a queue of packets waiting for resolution.
//!
//! Entries expire after `ttl`; an unresolved address gets a request every
//! `retry` up to `retries` times, after which its waiting packets are
//! handed back to the caller ([`ArpAction::GiveUp`]), which counts them
//! and tells their senders (as Linux answers such a loss with an ICMP host
//! unreachable). At most `pending_max` packets of at most
//! `pending_max_bytes` in all wait per address (Linux's `unres_qlen_bytes`;
//! a burst of connects to one new neighbour must not lose its SYNs), at
//! most `pending_addrs_max` addresses are resolved at once and their
//! packets hold at most `pending_total_bytes` (a flood of SYNs from
//! spoofed on-link addresses makes one SYN-ACK per address, none of which
//! will ever resolve: it must not take memory or requests without bound);
//! the table holds at most `max_entries` addresses (the oldest goes
//! first). All time comes from the caller.
//!
//! A *claim* that a fresh entry's address now belongs to another hardware
//! address (a reply, a request or a gratuitous ARP from it) is not
//! believed at once: the old address is asked, by a request sent to it
//! alone ([`ArpCache::claim`]), and has `verify` to answer. If it does,
//! the entry stays (a spoofed reply cannot take a live host's traffic);
//! if not, the claim wins (a host that was replaced: a new process on a
//! memif, a new card). Meanwhile packets for the address wait, as for an
//! unresolved one, and go to whichever address won. Linux instead
//! believes a claim once its entry is older than `locktime` (1 s), so
//! repeated spoofed replies hijack a live host there.

use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use super::hash::{DemuxHash, KeyedHash};
use crate::time::Instant;
use crate::wire::EthernetAddress;

/// ARP settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpConfig {
    /// How long a learned address stays valid.
    pub ttl: Duration,
    /// Time between requests for an unresolved address.
    pub retry: Duration,
    /// Requests before giving up on an address.
    pub retries: u32,
    /// Packets that may wait for one address.
    pub pending_max: usize,
    /// Bytes those packets may hold in all.
    pub pending_max_bytes: usize,
    /// Addresses that may be being resolved at once.
    pub pending_addrs_max: usize,
    /// Bytes the packets waiting for all of them may hold.
    pub pending_total_bytes: usize,
    /// Addresses the cache holds.
    pub max_entries: usize,
    /// How long the old address of a claimed entry has to answer.
    pub verify: Duration,
    /// Claims being verified at once (more are ignored meanwhile).
    pub verify_max: usize,
}

impl Default for ArpConfig {
    fn default() -> Self {
        ArpConfig {
            ttl: Duration::from_secs(60),
            retry: Duration::from_secs(1),
            retries: 3,
            pending_max: 1024,
            pending_max_bytes: 212_992,
            pending_addrs_max: 512,
            pending_total_bytes: 1 << 20,
            max_entries: 1024,
            verify: Duration::from_millis(100),
            verify_max: 64,
        }
    }
}

#[derive(Debug)]
struct Pending {
    packets: VecDeque<Vec<u8>>,
    bytes: usize,
    requests: u32,
    next_request: Instant,
}

/// Learned addresses and packets waiting for an address.
#[derive(Debug)]
pub struct ArpCache {
    cfg: ArpConfig,
    entries: HashMap<Ipv4Addr, (EthernetAddress, Instant), DemuxHash>,
    pending: HashMap<Ipv4Addr, Pending, DemuxHash>,
    /// Bytes of all pending packets.
    pending_bytes: usize,
    /// Claims being verified: the claimed hardware address, and when it
    /// wins unless the old one answered.
    verifying: HashMap<Ipv4Addr, (EthernetAddress, Instant), DemuxHash>,
    /// No pending request is due before this (a lower bound, made exact by
    /// each [`ArpCache::poll`]), so that asking costs no walk of the table.
    next_at: Option<Instant>,
}

/// Why a packet could not wait for its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue of that address is full.
    AddressFull,
    /// Too many addresses are being resolved, or their packets hold too
    /// many bytes in all.
    TableFull,
}

/// Something the cache wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum ArpAction {
    /// Send a request for this address.
    Request(Ipv4Addr),
    /// Give up on this address: the IP packets that waited for it.
    GiveUp(Ipv4Addr, Vec<Vec<u8>>),
    /// A claim won (the old address did not answer): the address now
    /// resolves to this one; the IP packets that waited for it.
    Changed(Ipv4Addr, EthernetAddress, Vec<Vec<u8>>),
}

impl ArpCache {
    /// An empty cache.
    pub fn new(cfg: ArpConfig, key: KeyedHash) -> ArpCache {
        let demux = DemuxHash::from_key(&key);
        ArpCache {
            cfg,
            entries: HashMap::with_hasher(demux),
            pending: HashMap::with_hasher(demux),
            pending_bytes: 0,
            verifying: HashMap::with_hasher(demux),
            next_at: None,
        }
    }

    /// The hardware address to send to for `ip`, if known and fresh (and
    /// not being verified: see the module).
    pub fn lookup(&self, ip: Ipv4Addr, now: Instant) -> Option<EthernetAddress> {
        if self.verifying.contains_key(&ip) {
            return None;
        }
        self.known(ip, now)
    }

    /// The hardware address the entry of `ip` holds, if fresh, even while
    /// a claim on it is being verified.
    pub fn known(&self, ip: Ipv4Addr, now: Instant) -> Option<EthernetAddress> {
        match self.entries.get(&ip) {
            Some(&(mac, expires)) if expires > now => Some(mac),
            _ => None,
        }
    }

    /// Learns (or refreshes) `ip`'s address; returns the packets that were
    /// waiting for it.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: EthernetAddress, now: Instant) -> Vec<Vec<u8>> {
        if !mac.is_unicast() {
            return Vec::new();
        }
        if self.entries.len() >= self.cfg.max_entries && !self.entries.contains_key(&ip) {
            let oldest = self.entries.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(ip, (mac, now + self.cfg.ttl));
        self.verifying.remove(&ip);
        self.take_pending(ip)
    }

    /// `mac` claims `ip`, whose fresh entry holds another address: starts
    /// verifying the claim (see the module). True if the old address is
    /// to be asked now; false if a claim on `ip` is already being
    /// verified, or too many are.
    pub fn claim(&mut self, ip: Ipv4Addr, mac: EthernetAddress, now: Instant) -> bool {
        if !mac.is_unicast()
            || self.verifying.contains_key(&ip)
            || self.verifying.len() >= self.cfg.verify_max
        {
            return false;
        }
        let at = now + self.cfg.verify;
        self.verifying.insert(ip, (mac, at));
        self.next_at = Some(self.next_at.map_or(at, |t| t.min(at)));
        true
    }

    /// Claims being verified.
    pub fn verifying(&self) -> usize {
        self.verifying.len()
    }

    fn take_pending(&mut self, ip: Ipv4Addr) -> Vec<Vec<u8>> {
        match self.pending.remove(&ip) {
            Some(p) => {
                self.pending_bytes -= p.bytes;
                p.packets.into()
            }
            None => Vec::new(),
        }
    }

    /// Whether `ip` is in the cache (fresh or not): a reply from it is
    /// worth learning even if we did not ask.
    pub fn knows(&self, ip: Ipv4Addr) -> bool {
        self.entries.contains_key(&ip) || self.pending.contains_key(&ip)
    }

    /// Queues an IP packet until `ip` is resolved. Returns whether a request
    /// should go out now (the first packet for this address), or why the
    /// packet was dropped: the queue of the address is full (in packets or
    /// in bytes), or the table is (in addresses or in bytes).
    pub fn queue(&mut self, ip: Ipv4Addr, packet: Vec<u8>, now: Instant) -> Result<bool, (Refused, Vec<u8>)> {
        let cfg = self.cfg;
        // While a claim is verified, packets wait without a request: the
        // old address was asked already.
        let fresh = !self.pending.contains_key(&ip);
        let ask = fresh && !self.verifying.contains_key(&ip);
        if self.pending_bytes + packet.len() > cfg.pending_total_bytes
            || fresh && self.pending.len() >= cfg.pending_addrs_max
        {
            return Err((Refused::TableFull, packet));
        }
        let p = self.pending.entry(ip).or_insert_with(|| Pending {
            packets: VecDeque::new(),
            bytes: 0,
            requests: 1,
            next_request: now + cfg.retry,
        });
        if p.packets.len() >= cfg.pending_max || p.bytes + packet.len() > cfg.pending_max_bytes {
            if p.packets.is_empty() {
                self.pending.remove(&ip); // nothing waits: no request either
            }
            return Err((Refused::AddressFull, packet));
        }
        p.bytes += packet.len();
        self.pending_bytes += packet.len();
        p.packets.push_back(packet);
        if fresh {
            let at = now + cfg.retry;
            self.next_at = Some(self.next_at.map_or(at, |t| t.min(at)));
        }
        Ok(ask)
    }

    /// Requests to repeat and addresses to give up on, as of `now`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<ArpAction>) {
        let cfg = self.cfg;
        let won: Vec<_> = self
            .verifying
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(ip, (mac, _))| (*ip, *mac))
            .collect();
        for (ip, mac) in won {
            let packets = self.learn(ip, mac, now);
            out.push(ArpAction::Changed(ip, mac, packets));
        }
        let mut give_up = Vec::new();
        for (ip, p) in self.pending.iter_mut() {
            if p.next_request > now {
                continue;
            }
            if p.requests >= cfg.retries {
                give_up.push(*ip);
            } else {
                p.requests += 1;
                p.next_request = now + cfg.retry;
                out.push(ArpAction::Request(*ip));
            }
        }
        for ip in give_up {
            let packets = self.take_pending(ip);
            out.push(ArpAction::GiveUp(ip, packets));
        }
        let verify = self.verifying.values().map(|v| v.1);
        self.next_at = self.pending.values().map(|p| p.next_request).chain(verify).min();
        self.entries.retain(|_, (_, expires)| *expires > now);
    }

    /// The next time [`Self::poll`] may have work (never later than it
    /// has; perhaps earlier, if an address resolved meanwhile).
    pub fn poll_at(&self) -> Option<Instant> {
        if self.pending.is_empty() && self.verifying.is_empty() {
            return None;
        }
        self.next_at
    }

    /// Learned addresses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is learned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Addresses being resolved.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of the packets waiting for them.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> ArpCache {
        ArpCache::new(ArpConfig::default(), KeyedHash::new([7; 16]))
    }

    const IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

    #[test]
    fn learn_lookup_expire() {
        let mut c = cache();
        let t = Instant::from_millis(1);
        assert_eq!(c.lookup(IP, t), None);
        c.learn(IP, MAC, t);
        assert_eq!(c.lookup(IP, t), Some(MAC));
        assert_eq!(c.lookup(IP, t + Duration::from_secs(61)), None);
        let mut out = Vec::new();
        c.poll(t + Duration::from_secs(61), &mut out);
        assert!(c.is_empty());
        assert!(c.learn(IP, EthernetAddress::BROADCAST, t).is_empty());
        assert!(c.lookup(IP, t).is_none(), "broadcast is never learned");
    }

    #[test]
    fn pending_packets_flush_on_learn_and_are_bounded() {
        let mut c = cache();
        let t = Instant::ZERO;
        assert_eq!(c.queue(IP, vec![1], t), Ok(true));
        assert_eq!(c.queue(IP, vec![2], t), Ok(false));
        for i in 2..1024 {
            c.queue(IP, vec![i as u8], t).unwrap();
        }
        assert_eq!(
            c.queue(IP, vec![99], t),
            Err((Refused::AddressFull, vec![99])),
            "1024 packets at most"
        );
        let flushed = c.learn(IP, MAC, t);
        assert_eq!(flushed.len(), 1024);
        assert_eq!(flushed[0], vec![1]);
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn pending_bytes_are_bounded() {
        let mut c = cache();
        let t = Instant::ZERO;
        let big = vec![7u8; 1500];
        let fit = 212_992 / 1500;
        for i in 0..fit {
            assert_eq!(c.queue(IP, big.clone(), t), Ok(i == 0));
        }
        assert_eq!(
            c.queue(IP, big.clone(), t),
            Err((Refused::AddressFull, big.clone())),
            "212,992 bytes at most"
        );
        assert_eq!(c.queue(IP, vec![1; 60], t), Ok(false), "a small one still fits");
        assert_eq!(c.learn(IP, MAC, t).len(), fit + 1);
        assert_eq!(c.pending_bytes(), 0);
        // A packet larger than the whole bound is refused and leaves no
        // pending entry behind.
        let other = Ipv4Addr::new(198, 18, 0, 9);
        assert!(c.queue(other, vec![0; 300_000], t).is_err());
        assert_eq!((c.pending(), c.poll_at()), (0, None));
    }

    #[test]
    fn retries_then_gives_up() {
        let mut c = cache();
        let t = Instant::ZERO;
        c.queue(IP, vec![1, 2], t).unwrap();
        let mut out = Vec::new();
        c.poll(t, &mut out);
        assert!(out.is_empty(), "the first request went out with the packet");
        c.poll(t + Duration::from_secs(1), &mut out);
        assert_eq!(out, vec![ArpAction::Request(IP)]);
        out.clear();
        c.poll(t + Duration::from_secs(2), &mut out);
        assert_eq!(out, vec![ArpAction::Request(IP)]);
        out.clear();
        c.poll(t + Duration::from_secs(3), &mut out);
        assert_eq!(out, vec![ArpAction::GiveUp(IP, vec![vec![1, 2]])]);
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn addresses_being_resolved_and_their_bytes_are_bounded() {
        // A SYN flood from spoofed on-link addresses: one SYN-ACK each,
        // none of which resolves.
        let mut c = cache();
        let t = Instant::ZERO;
        let max = ArpConfig::default().pending_addrs_max;
        let addr = |i: usize| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 1, 0)) + i as u32);
        for i in 0..max {
            assert_eq!(c.queue(addr(i), vec![0; 60], t), Ok(true));
        }
        assert_eq!(
            c.queue(addr(max), vec![0; 60], t),
            Err((Refused::TableFull, vec![0; 60]))
        );
        assert_eq!(c.pending(), max);
        // An address already waiting still takes packets.
        assert_eq!(c.queue(addr(0), vec![0; 60], t), Ok(false));
        // Given up after the retries, they make room again.
        let mut out = Vec::new();
        for s in 1..=3 {
            c.poll(t + Duration::from_secs(s), &mut out);
        }
        let gave_up = out.iter().filter(|a| matches!(a, ArpAction::GiveUp(..))).count();
        assert_eq!((gave_up, c.pending(), c.pending_bytes()), (max, 0, 0));
        assert_eq!(c.queue(addr(max), vec![0; 60], t), Ok(true));

        // The bytes of all of them, too.
        let mut c = cache();
        let total = ArpConfig::default().pending_total_bytes;
        let big = 200_000;
        let fit = total / big;
        for i in 0..fit {
            assert_eq!(c.queue(addr(i), vec![0; big], t), Ok(true));
        }
        assert_eq!(
            c.queue(addr(fit), vec![0; big], t),
            Err((Refused::TableFull, vec![0; big]))
        );
        assert_eq!(c.pending_bytes(), fit * big);
    }

    #[test]
    fn poll_at_is_the_earliest_request_without_a_walk() {
        let mut c = cache();
        let ip2 = Ipv4Addr::new(198, 18, 0, 9);
        c.queue(IP, vec![1], Instant::from_millis(500)).unwrap();
        c.queue(ip2, vec![1], Instant::from_millis(200)).unwrap();
        assert_eq!(c.poll_at(), Some(Instant::from_millis(1200)));
        c.learn(ip2, MAC, Instant::from_millis(300));
        // A lower bound until the next poll makes it exact.
        let mut out = Vec::new();
        c.poll(Instant::from_millis(1200), &mut out);
        assert!(out.is_empty());
        assert_eq!(c.poll_at(), Some(Instant::from_millis(1500)));
        c.learn(IP, MAC, Instant::from_millis(1300));
        assert_eq!(c.poll_at(), None);
    }
}
