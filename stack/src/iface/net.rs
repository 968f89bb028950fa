//! The interface's own state — addresses, ARP cache, counters — and the
//! building of outgoing frames: Ethernet and IPv4 headers written straight
//! into device buffers, ARP requests and replies, ICMP replies and errors.
//!
//! A packet for an address not yet resolved is built into an owned buffer
//! and parked in the ARP cache (bounded), and a request goes out; when the
//! reply arrives the parked packets are sent in order.

use core::net::Ipv4Addr;
use core::time::Duration;

use super::arp::{ArpCache, ArpConfig, Refused};
use super::hash::KeyedHash;
use crate::phy::{Capabilities, Device};
use crate::time::Instant;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumCaps, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};

/// How the interface is addressed and tuned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceConfig {
    /// Our hardware address.
    pub mac: EthernetAddress,
    /// Our IPv4 address.
    pub ip: Ipv4Addr,
    /// Prefix length of the on-link subnet.
    pub prefix_len: u8,
    /// Router for everything off-link.
    pub gateway: Option<Ipv4Addr>,
    /// Key for hashing and initial sequence numbers: give it 16 random bytes.
    pub secret: [u8; 16],
    /// ARP timing and bounds.
    pub arp: ArpConfig,
    /// Frames handled per poll (bounded work: a flood cannot starve the
    /// caller). Small by default (64, NAPI's weight): what the program
    /// queued after a poll goes out at the start of the next one's output,
    /// so a poll that first drained hundreds of frames would hold the
    /// replies back and leave the peer idle meanwhile (over memif a budget
    /// of 256 echoed 64-byte messages at 1.9 Mpps, 64 at 2.4).
    pub rx_budget: usize,
    /// TIME-WAIT entries kept at most (Linux's `tcp_max_tw_buckets`).
    pub time_wait_max: usize,
    /// ICMP errors sent per second at most (Linux's `icmp_ratelimit`).
    pub icmp_rate: u32,
    /// Answer SYNs with SYN cookies once a listener's SYN backlog is full
    /// (Linux's `tcp_syncookies = 1`, the default); off, they are dropped.
    pub syn_cookies: bool,
}

impl IfaceConfig {
    /// A configuration with defaults for everything but the addresses.
    pub fn new(mac: EthernetAddress, ip: Ipv4Addr, prefix_len: u8) -> IfaceConfig {
        IfaceConfig {
            mac,
            ip,
            prefix_len,
            gateway: None,
            secret: [0x5a; 16],
            arp: ArpConfig::default(),
            rx_budget: 64,
            time_wait_max: 16384,
            icmp_rate: 1000,
            syn_cookies: true,
        }
    }

    /// Whether `ip` is on our link.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len.min(32))
        };
        u32::from(ip) & mask == u32::from(self.ip) & mask
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        let host = if self.prefix_len >= 32 {
            0
        } else {
            u32::MAX >> self.prefix_len
        };
        Ipv4Addr::from(u32::from(self.ip) | host)
    }
}

/// Declares [`IfaceStats`] from its list of counters, with
/// [`IfaceStats::fields`] naming each (so a new counter is listed wherever
/// the counters are shown, the shim's stats file included).
macro_rules! iface_stats {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// Interface counters: traffic, and every drop by its reason.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct IfaceStats {
            $($(#[doc = $doc])+ pub $name: u64,)+
        }

        impl IfaceStats {
            /// Every counter with its name, in declaration order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name)),+].into_iter()
            }

            /// Adds `other`'s counters to these (the stacks of one port).
            pub fn add(&mut self, other: &IfaceStats) {
                $(self.$name += other.$name;)+
            }
        }
    };
}

iface_stats! {
    /// Frames received.
    rx_frames,
    /// Bytes received.
    rx_bytes,
    /// Frames transmitted (accepted by the device).
    tx_frames,
    /// Bytes transmitted.
    tx_bytes,
    /// Ethernet frames too short or malformed.
    drop_eth_malformed,
    /// Frames for another hardware address.
    drop_eth_not_ours,
    /// Frames of an EtherType we do not handle (IPv6 included, for now).
    drop_eth_unsupported,
    /// ARP packets malformed, not Ethernet/IPv4, or from a sender
    /// claiming a multicast hardware address.
    drop_arp_malformed,
    /// ARP packets claiming a neighbour's address for another hardware
    /// address while the entry we have is fresh, or claiming our own:
    /// not learned (see [`super::arp`]: the old address is asked, and a
    /// live host keeps its traffic).
    drop_arp_conflict,
    /// Claims that won: the old address did not answer in time, so the
    /// neighbour's entry moved to the claimed one (a replaced host).
    arp_claims_won,
    /// IPv4 packets malformed.
    drop_ip_malformed,
    /// IPv4 header checksum errors.
    drop_ip_checksum,
    /// IPv4 packets whose options are malformed (a length below 2 or
    /// past the header) or ask for source routing (as Linux with
    /// `accept_source_route = 0`).
    drop_ip_options,
    /// IPv4 packets for another address.
    drop_ip_not_ours,
    /// IPv4 fragments (not reassembled).
    drop_ip_fragment,
    /// IPv4 packets of a protocol we do not handle.
    drop_ip_unsupported,
    /// ICMP messages malformed or of an unsupported type.
    drop_icmp,
    /// TCP segments malformed.
    drop_tcp_malformed,
    /// TCP checksum errors.
    drop_tcp_checksum,
    /// SYNs announcing an MSS below the least we send (64 bytes; Linux's
    /// `tcp_min_snd_mss` is 48): the connection uses 64.
    tcp_mss_clamped,
    /// Segments outside a connection's receive window, or failing PAWS
    /// (dropped; answered with an ACK, rate-limited when they carry no
    /// data). Summed over the connections, as the rest of the `tcp_`
    /// counters below.
    tcp_out_of_window,
    /// RSTs in the window but not at RCV.NXT: challenged, not obeyed
    /// (RFC 5961 §3.2).
    tcp_rst_challenged,
    /// SYNs on synchronized connections: challenged (RFC 5961 §4).
    tcp_syn_challenged,
    /// Segments dropped for an unacceptable ACK (RFC 5961 §5.2).
    tcp_ack_invalid,
    /// Challenge ACKs sent.
    tcp_challenge_acks,
    /// Challenge ACKs (and ACKs to out-of-window segments) not sent: one
    /// per connection per 500 ms at most.
    tcp_challenge_acks_limited,
    /// Out-of-order segments the reassembly queue refused (all its
    /// ranges in use).
    tcp_ooo_refused,
    /// Segments whose payload met a closed receive window.
    tcp_zero_window_dropped,
    /// Zero-window probes sent.
    tcp_window_probes,
    /// TCP segments for no socket (answered with RST).
    drop_tcp_no_socket,
    /// TCP segments for no socket of this interface kept for the caller
    /// ([`super::Interface::set_handover`]): another stack on the same
    /// address may have the connection.
    tcp_handed_over,
    /// SYNs dropped: the listener's accept queue was full (or its SYN
    /// backlog, with SYN cookies off).
    drop_syn_backlog,
    /// Connections dropped because the listener's accept queue was full
    /// when their handshake completed.
    drop_accept_queue,
    /// SYNs answered with a SYN cookie (the SYN backlog was full).
    syn_cookies_sent,
    /// Connections made from a valid SYN cookie.
    syn_cookies_ok,
    /// ACKs that reached a listener using SYN cookies with no valid
    /// cookie (expired or forged): answered with RST, nothing made.
    syn_cookies_failed,
    /// Embryonic connections given up: no ACK of the SYN-ACK after its
    /// retransmissions, or its peer's address never resolved.
    syn_recv_dropped,
    /// UDP datagrams malformed.
    drop_udp_malformed,
    /// UDP checksum errors.
    drop_udp_checksum,
    /// UDP datagrams for no socket (answered with port unreachable).
    drop_udp_no_socket,
    /// UDP datagrams dropped because the socket's queue was full.
    drop_udp_queue_full,
    /// Packets dropped waiting for ARP (queue full or no answer).
    drop_arp_unresolved,
    /// Packets dropped because too many addresses were being resolved at
    /// once, or their packets held too many bytes in all.
    drop_arp_pending_full,
    /// Frames not sent because the device had no buffer.
    drop_tx_no_buffer,
    /// Packets for which we have no route.
    drop_no_route,
    /// TIME-WAIT entries made (connections that ended in TIME-WAIT on
    /// our side), ever: with the entries' lifetime, the bound on how many
    /// can be in the table at once.
    time_wait_entered,
    /// TIME-WAIT entries evicted because the table was full.
    time_wait_evicted,
    /// ICMP errors not sent because of the rate limit.
    icmp_rate_limited,
    /// ICMP echo requests answered.
    icmp_echo_replies,
    /// Polls whose timer round was cut short because a socket's timers
    /// came due again in the same poll (they failed to advance: a bug,
    /// contained so the poll still ends).
    timer_overruns,
}

/// The transmit side of one poll: the device and its pending batch.
pub struct Io<'a, D: Device> {
    /// The device.
    pub dev: &'a mut D,
    /// Frames built and not yet handed to the device.
    pub batch: &'a mut Vec<D::TxBuf>,
    /// The poll's time.
    pub now: Instant,
}

impl<D: Device> Io<'_, D> {
    /// Hands the batch to the device.
    pub fn flush(&mut self, stats: &mut IfaceStats) {
        if self.batch.is_empty() {
            return;
        }
        let bytes: usize = self.batch.iter().map(|b| b.as_ref().len()).sum();
        let n = self.batch.len();
        let sent = self.dev.transmit(self.now, self.batch);
        stats.tx_frames += sent as u64;
        if sent == n {
            stats.tx_bytes += bytes as u64;
        }
        self.batch.clear();
    }

    fn push(&mut self, frame: D::TxBuf, stats: &mut IfaceStats, burst: usize) {
        self.batch.push(frame);
        if self.batch.len() >= burst {
            self.flush(stats);
        }
    }
}

/// Addresses, ARP, counters.
pub struct Net {
    pub(crate) cfg: IfaceConfig,
    pub(crate) caps: Capabilities,
    pub(crate) key: KeyedHash,
    pub(crate) arp: ArpCache,
    pub(crate) stats: IfaceStats,
    ident: u16,
    icmp_tokens: u32,
    icmp_refill: Instant,
    /// IPv4 packets the interface sent to its own address, for the
    /// interface to take in as received ([`Interface::poll`](super::Interface::poll)),
    /// at most [`LOOPBACK_MAX`].
    pub(crate) loopback: Vec<Vec<u8>>,
    /// Neighbours learned or changed, and every ARP reply to us, since the last
    /// [`Interface::take_learned_neighbours`](super::Interface::take_learned_neighbours)
    /// (at most [`LEARNED_MAX`], the oldest dropped).
    pub(crate) learned: Vec<(Ipv4Addr, EthernetAddress)>,
    /// TCP packets that could not even wait for ARP (too many addresses
    /// being resolved), for the interface to tell their connections (at
    /// most [`UNQUEUED_MAX`] between two polls).
    pub(crate) unqueued: Vec<Vec<u8>>,
}

/// Most packets to our own address waiting to be taken in: beyond, a
/// send reports "no buffer" and TCP retries later.
pub(crate) const LOOPBACK_MAX: usize = 1024;

/// Most packets kept in [`Net::unqueued`].
const UNQUEUED_MAX: usize = 256;

/// Most neighbours kept for [`Net::learned`] between two takes.
pub(crate) const LEARNED_MAX: usize = 256;

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
const IP: usize = 20;

impl Net {
    pub(crate) fn new(cfg: IfaceConfig, caps: Capabilities) -> Net {
        let key = KeyedHash::new(cfg.secret);
        Net {
            arp: ArpCache::new(cfg.arp, key),
            key,
            caps,
            stats: IfaceStats::default(),
            ident: 1,
            icmp_tokens: cfg.icmp_rate,
            icmp_refill: Instant::ZERO,
            learned: Vec::new(),
            loopback: Vec::new(),
            unqueued: Vec::new(),
            cfg,
        }
    }

    /// Our address.
    pub fn ip(&self) -> Ipv4Addr {
        self.cfg.ip
    }

    /// Checksum duties of the software.
    pub fn checksum(&self) -> ChecksumCaps {
        self.caps.checksum
    }

    fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if dst.is_broadcast() || dst == self.cfg.broadcast() || self.cfg.on_link(dst) {
            Some(dst)
        } else {
            self.cfg.gateway
        }
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// Sends an IPv4 packet to `dst` whose `payload_len`-byte payload
    /// `fill` writes (given the payload area and the checksum duties).
    /// Returns false only when the device had no buffer (the caller may
    /// retry later); an unresolved address parks the packet.
    pub(crate) fn send_ip<D: Device>(
        &mut self,
        io: &mut Io<'_, D>,
        dst: Ipv4Addr,
        protocol: IpProtocol,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8], &ChecksumCaps),
    ) -> bool {
        self.send_ip_tos(io, dst, protocol, 0, payload_len, fill)
    }

    /// [`Net::send_ip`] with the TOS byte `tos` (a socket's `IP_TOS`:
    /// DSCP in the upper six bits, ECN in the lower two).
    pub(crate) fn send_ip_tos<D: Device>(
        &mut self,
        io: &mut Io<'_, D>,
        dst: Ipv4Addr,
        protocol: IpProtocol,
        tos: u8,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8], &ChecksumCaps),
    ) -> bool {
        let Some(hop) = self.next_hop(dst) else {
            self.stats.drop_no_route += 1;
            return true;
        };
        let ip = Ipv4Repr {
            src_addr: self.cfg.ip,
            dst_addr: dst,
            protocol,
            payload_len,
            ttl: 64,
            dscp: tos >> 2,
            ecn: tos & 0x03,
            ident: self.next_ident(),
            dont_frag: protocol == IpProtocol::Tcp,
            more_frags: false,
            frag_offset: 0,
        };
        if dst == self.cfg.ip {
            // To ourselves: looped back, never on the wire (the kernel's
            // `lo` for an interface's own address). Checksums in software,
            // since the receiving side may verify them.
            if self.loopback.len() >= LOOPBACK_MAX {
                self.stats.drop_tx_no_buffer += 1;
                return false;
            }
            let caps = ChecksumCaps::default();
            let mut pkt = vec![0u8; IP + payload_len];
            let mut p = Ipv4Packet::new_unchecked(&mut pkt[..]);
            ip.emit(&mut p, &caps);
            fill(&mut p.payload_mut()[..payload_len], &caps);
            self.loopback.push(pkt);
            return true;
        }
        let caps = self.caps.checksum;
        let mac = if dst.is_broadcast() || dst == self.cfg.broadcast() {
            Some(EthernetAddress::BROADCAST)
        } else {
            self.arp.lookup(hop, io.now)
        };
        let Some(mac) = mac else {
            let mut pkt = vec![0u8; IP + payload_len];
            let mut p = Ipv4Packet::new_unchecked(&mut pkt[..]);
            // The header first: payload_mut() reads its length fields.
            ip.emit(&mut p, &caps);
            fill(&mut p.payload_mut()[..payload_len], &caps);
            match self.arp.queue(hop, pkt, io.now) {
                Ok(true) => {
                    self.send_arp_request(io, hop);
                }
                Ok(false) => {}
                Err((Refused::AddressFull, _)) => self.stats.drop_arp_unresolved += 1,
                Err((Refused::TableFull, pkt)) => {
                    self.stats.drop_arp_pending_full += 1;
                    if protocol == IpProtocol::Tcp && self.unqueued.len() < UNQUEUED_MAX {
                        self.unqueued.push(pkt);
                    }
                }
            }
            return true;
        };
        let Some(mut buf) = io.dev.alloc_tx(ETH + IP + payload_len) else {
            self.stats.drop_tx_no_buffer += 1;
            return false;
        };
        {
            let frame = buf.as_mut();
            self.write_eth(frame, mac, EtherType::Ipv4);
            let mut p = Ipv4Packet::new_unchecked(&mut frame[ETH..]);
            ip.emit(&mut p, &caps);
            fill(&mut p.payload_mut()[..payload_len], &caps);
        }
        io.push(buf, &mut self.stats, self.caps.max_burst);
        true
    }

    fn write_eth(&self, frame: &mut [u8], dst: EthernetAddress, ethertype: EtherType) {
        let eth = EthernetRepr {
            src_addr: self.cfg.mac,
            dst_addr: dst,
            ethertype,
        };
        eth.emit(&mut EthernetFrame::new_unchecked(frame));
    }

    /// Sends IP packets that were waiting for `mac`.
    pub(crate) fn send_parked<D: Device>(
        &mut self,
        io: &mut Io<'_, D>,
        mac: EthernetAddress,
        packets: Vec<Vec<u8>>,
    ) {
        for pkt in packets {
            let Some(mut buf) = io.dev.alloc_tx(ETH + pkt.len()) else {
                self.stats.drop_tx_no_buffer += 1;
                continue;
            };
            self.write_eth(buf.as_mut(), mac, EtherType::Ipv4);
            buf.as_mut()[ETH..].copy_from_slice(&pkt);
            io.push(buf, &mut self.stats, self.caps.max_burst);
        }
    }

    fn send_arp<D: Device>(&mut self, io: &mut Io<'_, D>, repr: ArpRepr, dst: EthernetAddress) {
        let Some(mut buf) = io.dev.alloc_tx(ETH + repr.buffer_len()) else {
            self.stats.drop_tx_no_buffer += 1;
            return;
        };
        self.write_eth(buf.as_mut(), dst, EtherType::Arp);
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf.as_mut()[ETH..]));
        io.push(buf, &mut self.stats, self.caps.max_burst);
    }

    /// Broadcasts "who has `ip`?".
    pub(crate) fn send_arp_request<D: Device>(&mut self, io: &mut Io<'_, D>, ip: Ipv4Addr) {
        let repr = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: self.cfg.mac,
            source_protocol_addr: self.cfg.ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        };
        self.send_arp(io, repr, EthernetAddress::BROADCAST);
    }

    /// Handles an ARP packet: learns the sender when it concerns us,
    /// answers requests for our address, flushes parked packets.
    pub(crate) fn arp_input<D: Device>(&mut self, io: &mut Io<'_, D>, payload: &[u8]) {
        let repr = match ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p)) {
            Ok(r) => r,
            Err(_) => {
                self.stats.drop_arp_malformed += 1;
                return;
            }
        };
        if !repr.source_hardware_addr.is_unicast() {
            // No host has a multicast or broadcast address: answering it
            // would send the reply to every host of the group (a reflector).
            self.stats.drop_arp_malformed += 1;
            return;
        }
        let for_us = repr.target_protocol_addr == self.cfg.ip;
        let (ip, mac) = (repr.source_protocol_addr, repr.source_hardware_addr);
        let fresh = self.arp.known(ip, io.now);
        if let Some(old) = fresh.filter(|known| *known != mac) {
            // Another hardware address for a neighbour whose entry is
            // fresh: a spoofed reply (or request, or gratuitous ARP)
            // trying to take its traffic, or a host that was replaced.
            // Not believed until the old address, asked alone, fails to
            // answer in time (see `arp`).
            if self.arp.claim(ip, mac, io.now) {
                let ask = ArpRepr {
                    operation: ArpOperation::Request,
                    source_hardware_addr: self.cfg.mac,
                    source_protocol_addr: self.cfg.ip,
                    target_hardware_addr: old,
                    target_protocol_addr: ip,
                };
                self.send_arp(io, ask, old);
            }
            self.stats.drop_arp_conflict += 1;
        } else if ip == self.cfg.ip {
            // Someone else claims our own address (or gratuitous ARP
            // of a duplicate): nothing to learn.
            self.stats.drop_arp_conflict += 1;
        } else if (for_us || self.arp.knows(ip)) && !ip.is_unspecified() {
            // (An RFC 5227 probe's sender is 0.0.0.0: answered, not learned.)
            // A reply is passed on even when it changes nothing here: the
            // stack that asked may be another one (the device gave the
            // reply to this one's queue).
            let reply = for_us && repr.operation == ArpOperation::Reply;
            if reply || fresh != Some(mac) {
                if self.learned.len() >= LEARNED_MAX {
                    self.learned.remove(0);
                }
                self.learned.push((ip, mac));
            }
            let parked = self
                .arp
                .learn(repr.source_protocol_addr, repr.source_hardware_addr, io.now);
            if !parked.is_empty() {
                self.send_parked(io, repr.source_hardware_addr, parked);
            }
        }
        if for_us && repr.operation == ArpOperation::Request {
            let reply = ArpRepr {
                operation: ArpOperation::Reply,
                source_hardware_addr: self.cfg.mac,
                source_protocol_addr: self.cfg.ip,
                target_hardware_addr: repr.source_hardware_addr,
                target_protocol_addr: repr.source_protocol_addr,
            };
            self.send_arp(io, reply, repr.source_hardware_addr);
        }
    }

    /// Runs ARP retries and give-ups.
    /// Repeats ARP requests that are due; returns the packets of addresses
    /// given up on (counted in `drop_arp_unresolved`), for the interface to
    /// tell their senders.
    pub(crate) fn arp_poll<D: Device>(&mut self, io: &mut Io<'_, D>) -> Vec<Vec<u8>> {
        let mut lost = Vec::new();
        if self.arp.poll_at().is_none_or(|t| t > io.now) {
            return lost;
        }
        let mut actions = Vec::new();
        self.arp.poll(io.now, &mut actions);
        for a in actions {
            match a {
                super::arp::ArpAction::Request(ip) => self.send_arp_request(io, ip),
                super::arp::ArpAction::Changed(ip, mac, packets) => {
                    self.stats.arp_claims_won += 1;
                    if self.learned.len() >= LEARNED_MAX {
                        self.learned.remove(0);
                    }
                    self.learned.push((ip, mac));
                    self.send_parked(io, mac, packets);
                }
                super::arp::ArpAction::GiveUp(_, packets) => {
                    self.stats.drop_arp_unresolved += packets.len() as u64;
                    lost.extend(packets);
                }
            }
        }
        lost
    }

    /// Whether an ICMP error may go out now (token bucket, `icmp_rate`/s).
    pub(crate) fn icmp_allowed(&mut self, now: Instant) -> bool {
        if now.saturating_since(self.icmp_refill) >= Duration::from_secs(1) {
            self.icmp_tokens = self.cfg.icmp_rate;
            self.icmp_refill = now;
        }
        if self.icmp_tokens == 0 {
            self.stats.icmp_rate_limited += 1;
            return false;
        }
        self.icmp_tokens -= 1;
        true
    }

    /// Sends an ICMP message to `dst`.
    pub(crate) fn send_icmp<D: Device>(&mut self, io: &mut Io<'_, D>, dst: Ipv4Addr, repr: &Icmpv4Repr<'_>) {
        let len = repr.buffer_len();
        self.send_ip(io, dst, IpProtocol::Icmp, len, |buf, caps| {
            repr.emit(&mut Icmpv4Packet::new_unchecked(buf), caps)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arp_request_from_a_multicast_address_is_dropped_unanswered() {
        // Found by the iface_input fuzz target: the reply went to the
        // request's sender hardware address, a multicast one, i.e. to a
        // whole group of hosts (and the fuzz rig's check that every frame
        // is for one host caught it).
        use crate::phy::pair::pair;
        let caps = Capabilities::default();
        let (mut dev, mut peer) = pair(caps, 16);
        let ip = Ipv4Addr::new(198, 18, 0, 2);
        let mut net = Net::new(
            IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, 2]), ip, 24),
            caps,
        );
        let mut batch = Vec::new();
        let mut io = Io {
            dev: &mut dev,
            batch: &mut batch,
            now: Instant::ZERO,
        };
        let sender = Ipv4Addr::new(198, 18, 0, 1);
        let request = |sha| {
            let repr = ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: sha,
                source_protocol_addr: sender,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: ip,
            };
            let mut buf = vec![0; repr.buffer_len()];
            repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            buf
        };
        net.arp_input(&mut io, &request(EthernetAddress([0xfd, 0x1a, 0, 0, 0, 0])));
        io.flush(&mut net.stats);
        let mut got = Vec::new();
        assert_eq!(peer.receive(Instant::ZERO, &mut got, 8), 0, "no reply");
        assert_eq!(net.stats.drop_arp_malformed, 1);
        assert!(!net.arp.knows(sender));
        // From a host's address, it is answered (and the sender learned).
        net.arp_input(&mut io, &request(EthernetAddress([2, 0, 0, 0, 0, 1])));
        io.flush(&mut net.stats);
        assert_eq!(peer.receive(Instant::ZERO, &mut got, 8), 1);
        assert!(net.arp.knows(sender));
    }

    #[test]
    fn an_arp_claim_on_a_fresh_neighbour_is_verified_with_the_old_address() {
        use crate::phy::pair::pair;
        let caps = Capabilities::default();
        let (mut dev, mut peer) = pair(caps, 256);
        let ip = Ipv4Addr::new(198, 18, 0, 2);
        let mut net = Net::new(
            IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, 2]), ip, 24),
            caps,
        );
        let mut batch = Vec::new();
        let host = Ipv4Addr::new(198, 18, 0, 1);
        let (real, fake) = (
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            EthernetAddress([2, 0, 0, 0, 0, 0x66]),
        );
        let arp = |op, sha, spa: Ipv4Addr, tpa| {
            let repr = ArpRepr {
                operation: op,
                source_hardware_addr: sha,
                source_protocol_addr: spa,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: tpa,
            };
            let mut buf = vec![0; repr.buffer_len()];
            repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            buf
        };
        // Feeds `frame` (if any) at `ms`, runs ARP's timers; the frames
        // sent, as (Ethernet destination, ARP operation or None for IP).
        let mut at = |net: &mut Net, ms, frame: Option<&[u8]>, send: bool| {
            let mut io = Io {
                dev: &mut dev,
                batch: &mut batch,
                now: Instant::from_millis(ms),
            };
            if let Some(f) = frame {
                net.arp_input(&mut io, f);
            }
            if send {
                net.send_ip(&mut io, host, IpProtocol::Udp, 8, |b, _| b.fill(0));
            }
            net.arp_poll(&mut io);
            io.flush(&mut net.stats);
            let mut got = Vec::new();
            peer.receive(Instant::from_millis(ms), &mut got, 256);
            got.iter()
                .map(|f| {
                    let eth = EthernetFrame::new_checked(f.as_ref()).unwrap();
                    let op = ArpPacket::new_checked(eth.payload())
                        .and_then(|p| ArpRepr::parse(&p))
                        .ok()
                        .filter(|_| eth.ethertype() == EtherType::Arp)
                        .map(|r| r.operation);
                    (eth.dst_addr(), op)
                })
                .collect::<Vec<_>>()
        };
        // The real host asks for us: learned (and answered).
        at(
            &mut net,
            0,
            Some(&arp(ArpOperation::Request, real, host, ip)),
            false,
        );
        assert_eq!(net.arp.lookup(host, Instant::from_millis(0)), Some(real));
        // A spoofed reply: not believed; the real host is asked, alone.
        let sent = at(
            &mut net,
            10,
            Some(&arp(ArpOperation::Reply, fake, host, ip)),
            false,
        );
        assert_eq!(sent, [(real, Some(ArpOperation::Request))]);
        assert_eq!(net.arp.known(host, Instant::from_millis(10)), Some(real));
        // Packets meanwhile wait (no broadcast request).
        assert!(at(&mut net, 20, None, true).is_empty());
        // More claims meanwhile: counted, nothing sent.
        for ms in 30..40 {
            assert!(at(
                &mut net,
                ms,
                Some(&arp(ArpOperation::Request, fake, host, host)),
                false
            )
            .is_empty());
        }
        // The real host answers: it keeps its entry; the packet goes to it.
        let sent = at(
            &mut net,
            50,
            Some(&arp(ArpOperation::Reply, real, host, ip)),
            false,
        );
        assert_eq!(sent, [(real, None)]);
        assert_eq!(net.arp.lookup(host, Instant::from_millis(500)), Some(real));
        assert_eq!((net.stats.drop_arp_conflict, net.stats.arp_claims_won), (11, 0));
        // Repeated spoofing for seconds changes nothing while it answers
        // (Linux would believe one after its 1 s locktime).
        for ms in (1000..5000).step_by(250) {
            let sent = at(
                &mut net,
                ms,
                Some(&arp(ArpOperation::Reply, fake, host, ip)),
                false,
            );
            assert_eq!(sent, [(real, Some(ArpOperation::Request))]);
            at(
                &mut net,
                ms + 1,
                Some(&arp(ArpOperation::Reply, real, host, ip)),
                false,
            );
        }
        assert_eq!(net.arp.lookup(host, Instant::from_millis(5000)), Some(real));
        assert_eq!((net.stats.drop_arp_conflict, net.stats.arp_claims_won), (27, 0));
        // A claim on our own address is ignored.
        at(
            &mut net,
            6000,
            Some(&arp(ArpOperation::Reply, fake, ip, ip)),
            false,
        );
        assert!(!net.arp.knows(ip));
        assert_eq!(net.stats.drop_arp_conflict, 28);
        // The host was replaced (a new card, a new process on a memif): the
        // old address does not answer, and 100 ms later the claim wins.
        at(
            &mut net,
            7000,
            Some(&arp(ArpOperation::Request, fake, host, ip)),
            false,
        );
        assert_eq!(
            net.arp.lookup(host, Instant::from_millis(7050)),
            None,
            "being verified"
        );
        at(&mut net, 7099, None, false);
        assert_eq!(net.stats.arp_claims_won, 0);
        at(&mut net, 7100, None, false);
        assert_eq!(net.arp.lookup(host, Instant::from_millis(7100)), Some(fake));
        assert_eq!(net.stats.arp_claims_won, 1);
        assert_eq!(
            net.learned.last(),
            Some(&(host, fake)),
            "told to the other stacks"
        );
    }

    #[test]
    fn on_link_and_broadcast() {
        let c = IfaceConfig::new(
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(198, 18, 0, 2),
            24,
        );
        assert!(c.on_link(Ipv4Addr::new(198, 18, 0, 200)));
        assert!(!c.on_link(Ipv4Addr::new(198, 18, 1, 1)));
        assert_eq!(c.broadcast(), Ipv4Addr::new(198, 18, 0, 255));
        let all = IfaceConfig::new(c.mac, c.ip, 0);
        assert!(all.on_link(Ipv4Addr::new(8, 8, 8, 8)));
        let host = IfaceConfig::new(c.mac, c.ip, 32);
        assert_eq!(host.broadcast(), c.ip);
    }
}
