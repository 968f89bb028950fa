//! One IPv4 interface: frames in, frames out, sockets in between.
//!
//! [`Stack::poll`] does a bounded amount of work: it receives up to
//! `rx_budget` frames and handles each (ARP, ICMP echo, TCP, UDP; a RST for
//! a closed TCP port, a port unreachable for a closed UDP port, a counted
//! drop for anything malformed or unsupported, fragments included), runs
//! the timers that are due, lets sockets send, and hands the frames to the
//! device in batches. It returns when the next timer is due, so the caller
//! knows how long it may sleep. [`Stack::output`] is the same round
//! without receiving: what the sockets have to send (data just written, a
//! window update after a read) leaves without asking the device for frames,
//! which on some devices costs a system call even when none came.
//!
//! The interface never reads a clock and never blocks; the socket
//! operations ([`Interface::tcp`], [`Interface::udp_send_to`], ...) are
//! non-blocking and report kernel errnos.

pub mod arp;
pub mod hash;
pub mod net;
pub mod rss;
pub mod tcp_table;

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::HashMap;

pub use net::{IfaceConfig, IfaceStats, Io, Net};
pub use tcp_table::{TcpHandle, TcpTable, ADRIFT_MAX};

use tcp_table::{CookieAck, SynOutcome};

use crate::error::{Errno, Result};
use crate::phy::Device;
use crate::tcp::flight::{FlightSlot, Kind as FlightKind};
use crate::tcp::{Event, Input, TcpConfig};
use crate::time::Instant;
use crate::udp::UdpSocket;
use crate::wire::{
    EtherType, EthernetAddress, EthernetFrame, Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};

/// A UDP socket's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpHandle(u32, u32);

/// Addresses, ARP, sockets, counters: everything but the device.
pub struct Interface {
    /// Addresses, ARP cache, counters.
    pub net: Net,
    /// TCP sockets.
    pub tcp: TcpTable,
    udp: Vec<(u32, Option<UdpSocket>)>,
    udp_free: Vec<u32>,
    udp_ports: HashMap<u16, UdpHandle, hash::DemuxHash>,
    udp_tx: Vec<UdpHandle>,
    /// TCP segments for no socket of ours, kept for the caller instead of
    /// answered with a reset (`None`: handover off; see
    /// [`Interface::set_handover`]).
    handover: Option<Vec<Vec<u8>>>,
}

/// Most segments kept for handover between two takes (beyond, they are
/// answered with a reset, as with handover off).
const HANDOVER_MAX: usize = 256;

/// An interface bound to its device, with the batches a poll fills.
pub struct Stack<D: Device> {
    /// The interface.
    pub iface: Interface,
    /// The device.
    pub device: D,
    rx: Vec<D::RxBuf>,
    tx: Vec<D::TxBuf>,
}

/// What a poll did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollResult {
    /// Frames received and handled.
    pub rx: usize,
    /// Whether anything happened (frames in or out, timers, socket changes).
    pub progress: bool,
    /// When the next timer is due.
    pub next: Option<Instant>,
}

impl<D: Device> Stack<D> {
    /// An interface on `device`, with the TCP defaults given.
    pub fn new(cfg: IfaceConfig, tcp: TcpConfig, device: D) -> Stack<D> {
        let caps = device.capabilities();
        let mut tcp = tcp;
        tcp.mss = tcp.mss.min(caps.mtu.saturating_sub(40).max(64) as u16);
        let burst = caps.max_burst.max(1);
        Stack {
            iface: Interface::new(cfg, tcp, caps),
            device,
            rx: Vec::with_capacity(burst),
            tx: Vec::with_capacity(burst),
        }
    }

    /// Teaches the interface neighbour `ip` at `mac`, learned by another
    /// stack on the same link (an ARP reply comes in on whichever queue the
    /// device picks); sends the packets that waited for it.
    pub fn learn_neighbour(&mut self, ip: Ipv4Addr, mac: EthernetAddress, now: Instant) {
        let parked = self.iface.net.arp.learn(ip, mac, now);
        if parked.is_empty() {
            return;
        }
        let mut io = Io {
            dev: &mut self.device,
            batch: &mut self.tx,
            now,
        };
        self.iface.net.send_parked(&mut io, mac, parked);
        io.flush(&mut self.iface.net.stats);
    }

    /// Handles IPv4 packet `packet` as if it had been received now (a
    /// segment another stack handed over: see
    /// [`Interface::set_handover`]); never hands it over again (a segment
    /// for no socket here is answered with a reset).
    pub fn ingest(&mut self, packet: &[u8], now: Instant) {
        let kept = self.iface.handover.take();
        let mut io = Io {
            dev: &mut self.device,
            batch: &mut self.tx,
            now,
        };
        self.iface.ipv4_input(&mut io, packet);
        io.flush(&mut self.iface.net.stats);
        self.iface.handover = kept;
    }

    /// One round of work at time `now` (see the module docs).
    pub fn poll(&mut self, now: Instant) -> PollResult {
        let mut io = Io {
            dev: &mut self.device,
            batch: &mut self.tx,
            now,
        };
        self.iface.poll(&mut io, &mut self.rx)
    }

    /// [`Stack::poll`] with the frames `next` yields instead of the
    /// device's (whole Ethernet frames, each in the buffer `next` fills,
    /// its length returned; `None` ends them, at most `max`): for frames
    /// that came past the device, such as the shim's own net_tap queues.
    /// Each is received as if from the device (counted, checked, handed
    /// over if another stack's); then the timers and the sockets' output
    /// run, as in a poll.
    pub fn receive_frames(
        &mut self,
        now: Instant,
        max: usize,
        buf: &mut [u8],
        mut next: impl FnMut(&mut [u8]) -> Option<usize>,
    ) -> PollResult {
        let mut io = Io {
            dev: &mut self.device,
            batch: &mut self.tx,
            now,
        };
        let mut res = PollResult::default();
        while res.rx < max {
            let Some(n) = next(buf) else { break };
            res.rx += 1;
            self.iface.ingress(&mut io, buf.get(..n).unwrap_or(buf));
        }
        res.progress = res.rx > 0;
        self.iface.send_due(&mut io, &mut res);
        res
    }

    /// [`Stack::poll`] without receiving: runs the due timers, lets the
    /// sockets send and hands the frames to the device. `progress` says
    /// whether anything was sent or a timer ran; `rx` is 0.
    pub fn output(&mut self, now: Instant) -> PollResult {
        let mut io = Io {
            dev: &mut self.device,
            batch: &mut self.tx,
            now,
        };
        let mut res = PollResult::default();
        self.iface.send_due(&mut io, &mut res);
        res
    }
}

impl Interface {
    fn new(cfg: IfaceConfig, tcp: TcpConfig, caps: crate::phy::Capabilities) -> Interface {
        let tw_max = cfg.time_wait_max;
        let net = Net::new(cfg, caps);
        let mut table = TcpTable::new(net.key, tcp);
        table.set_tw_max(tw_max);
        table.syn_cookies = net.cfg.syn_cookies;
        Interface {
            udp_ports: HashMap::with_hasher(hash::DemuxHash::from_key(&net.key)),
            net,
            tcp: table,
            udp: Vec::new(),
            udp_free: Vec::new(),
            udp_tx: Vec::new(),
            handover: None,
        }
    }

    /// Counters.
    pub fn stats(&self) -> IfaceStats {
        let mut s = self.net.stats;
        s.time_wait_evicted = self.tcp.tw_evicted;
        s.time_wait_entered = self.tcp.tw_entered;
        s.drop_accept_queue = self.tcp.accept_dropped;
        s.syn_recv_dropped = self.tcp.syn_recv_dropped;
        let t = self.tcp.tcp_stats();
        s.tcp_out_of_window = t.out_of_window;
        s.tcp_rst_challenged = t.rst_challenged;
        s.tcp_syn_challenged = t.syn_challenged;
        s.tcp_ack_invalid = t.ack_invalid;
        s.tcp_challenge_acks = t.challenge_acks;
        s.tcp_challenge_acks_limited = t.challenge_acks_limited;
        s.tcp_ooo_refused = t.ooo_refused;
        s.tcp_zero_window_dropped = t.zero_window_dropped;
        s.tcp_window_probes = t.window_probes;
        s
    }

    /// Our address.
    pub fn ip(&self) -> Ipv4Addr {
        self.net.ip()
    }

    /// With handover on, a TCP segment for which this interface has no
    /// connection, TIME-WAIT entry or listener is not answered with a
    /// reset but kept ([`Interface::take_handover`]): when several stacks
    /// share one address (one per queue pair of a port), the device may
    /// deliver a segment to another stack than the connection's (net_tap
    /// picks the queue of a connection's first answer before it has learned
    /// which queue the connection is on). The caller hands it to the stack
    /// that has the connection ([`Interface::has_tcp_flow`],
    /// [`Stack::ingest`]), or back to this one, which then resets it.
    pub fn set_handover(&mut self, on: bool) {
        self.handover = on.then(Vec::new);
    }

    /// The segments kept for handover since the last call (whole IPv4
    /// packets, oldest first).
    pub fn take_handover(&mut self) -> Vec<Vec<u8>> {
        match self.handover.as_mut() {
            Some(k) if !k.is_empty() => std::mem::take(k),
            _ => Vec::new(),
        }
    }

    /// Whether this interface has the connection (or the TIME-WAIT entry)
    /// of the TCP segment in IPv4 packet `packet`, or would make it at
    /// `now` from the SYN cookie the segment carries back.
    pub fn has_tcp_flow(&self, packet: &[u8], now: Instant) -> bool {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return false;
        };
        let payload = ip.payload();
        if ip.protocol() != IpProtocol::Tcp || payload.len() < 4 {
            return false;
        }
        let (Some(sp), Some(dp)) = (payload.get(0..2), payload.get(2..4)) else {
            return false;
        };
        let src_port = u16::from_be_bytes([sp[0], sp[1]]);
        let dst_port = u16::from_be_bytes([dp[0], dp[1]]);
        let key = (
            SocketAddrV4::new(ip.dst_addr(), dst_port),
            SocketAddrV4::new(ip.src_addr(), src_port),
        );
        if self.tcp.conns.contains_key(&key) || self.tcp.time_wait.contains_key(&key) {
            return true;
        }
        let caps = self.net.checksum();
        let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
        TcpPacket::new_checked(payload)
            .and_then(|p| TcpRepr::parse(&p, src, dst, &caps))
            .is_ok_and(|seg| self.tcp.takes_cookie(key.0, key.1, &seg, now))
    }

    /// Whether this interface would take the TCP segment in IPv4 packet
    /// `packet` rather than reset it: it has the connection (see
    /// [`Interface::has_tcp_flow`]), or the segment is a SYN for a port
    /// it listens on. Several processes sharing one address ask this of
    /// a segment another process had no socket for.
    pub fn would_take(&self, packet: &[u8], now: Instant) -> bool {
        if self.has_tcp_flow(packet, now) {
            return true;
        }
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return false;
        };
        let payload = ip.payload();
        if ip.protocol() != IpProtocol::Tcp || payload.len() < 14 {
            return false;
        }
        let (Some(sp), Some(dp), Some(&flags)) = (payload.get(0..2), payload.get(2..4), payload.get(13))
        else {
            return false;
        };
        // SYN without ACK.
        if flags & 0x12 != 0x02 {
            return false;
        }
        let local = SocketAddrV4::new(ip.dst_addr(), u16::from_be_bytes([dp[0], dp[1]]));
        let remote = SocketAddrV4::new(ip.src_addr(), u16::from_be_bytes([sp[0], sp[1]]));
        self.tcp.listener_for(local, remote).is_some()
    }

    /// Turns the flight recorder on over `slots` (see
    /// [`crate::tcp::flight`]): from now on each connection records its
    /// last events there, one slot each while slots last.
    pub fn set_flight_recorder(&mut self, slots: &'static mut [FlightSlot]) {
        self.tcp.flight = crate::tcp::flight::Flight::new(slots);
    }

    /// The flight recorder's slots (empty when it is off).
    pub fn flight_records(&self) -> &[FlightSlot] {
        self.tcp.flight.slots()
    }

    /// Connections the flight recorder had no slot for.
    pub fn flight_unrecorded(&self) -> u64 {
        self.tcp.flight.unrecorded
    }

    /// Several stacks share one address (one per queue pair of a port):
    /// this one picks its ephemeral ports (TCP and UDP) among those `p`
    /// with `p % of == index`, so that no two of them pick the same and
    /// make the same 4-tuple. `EINVAL` unless `index < of`.
    pub fn set_port_share(&mut self, index: u16, of: u16) -> Result<()> {
        if of == 0 || index >= of {
            return Err(Errno::EINVAL);
        }
        self.tcp.share = (index, of);
        Ok(())
    }

    /// How the port steers received flows to its queues, and this
    /// stack's queue there (an RSS NIC; see [`rss`]): `connect` then picks
    /// source ports whose replies arrive on this stack's queue. `None`
    /// (the default): ports are picked by [`Self::set_port_share`] alone.
    pub fn set_rss_steering(&mut self, steering: Option<rss::Steering>) {
        self.tcp.steering = steering;
    }

    /// Neighbour `ip`'s MAC address, if ARP knows it now.
    pub fn neighbour(&self, ip: Ipv4Addr, now: Instant) -> Option<EthernetAddress> {
        self.net.arp.lookup(ip, now)
    }

    /// The neighbours ARP taught this interface (or changed) since the last
    /// call, oldest first, for other stacks on the same link
    /// ([`Stack::learn_neighbour`]).
    pub fn take_learned_neighbours(&mut self) -> Vec<(Ipv4Addr, EthernetAddress)> {
        std::mem::take(&mut self.net.learned)
    }

    /// Starts a TCP connection from our address to `remote`.
    pub fn tcp_connect(&mut self, h: TcpHandle, remote: SocketAddrV4, now: Instant) -> Result<()> {
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(Errno::EINVAL);
        }
        self.tcp.connect(h, self.net.ip(), remote, now)
    }

    /// Makes the connection that another stack's image `bytes` describes
    /// (see [`TcpTable::export_adrift`]), if it is a connection to us: its local
    /// address must be ours and its peer a unicast address elsewhere
    /// (`EINVAL` otherwise).
    pub fn tcp_import(&mut self, bytes: &[u8], now: Instant) -> Result<TcpHandle> {
        let image = crate::tcp::image::ConnImage::decode(bytes).map_err(|_| Errno::EINVAL)?;
        let (local, remote) = (image.local, image.remote);
        let peer = *remote.ip();
        let peer_ok = !(peer.is_unspecified()
            || peer.is_broadcast()
            || peer.is_multicast()
            || peer.is_loopback()
            || peer == self.net.ip());
        if *local.ip() != self.net.ip() || local.port() == 0 || remote.port() == 0 || !peer_ok {
            return Err(Errno::EINVAL);
        }
        self.tcp.import(bytes, now)
    }

    /// Binds a TCP socket: the address must be ours or the wildcard.
    pub fn tcp_bind(&mut self, h: TcpHandle, addr: SocketAddrV4) -> Result<SocketAddrV4> {
        if !addr.ip().is_unspecified() && *addr.ip() != self.net.ip() {
            return Err(Errno::EADDRNOTAVAIL);
        }
        self.tcp.bind(h, addr)
    }

    fn poll<D: Device>(&mut self, io: &mut Io<'_, D>, rx: &mut Vec<D::RxBuf>) -> PollResult {
        let now = io.now;
        let mut res = PollResult::default();
        let budget = self.net.cfg.rx_budget;
        while res.rx < budget {
            rx.clear();
            let want = (budget - res.rx).min(self.net.caps.max_burst.max(1));
            let n = io.dev.receive(now, rx, want);
            if n == 0 {
                break;
            }
            res.rx += n;
            for frame in rx.drain(..) {
                self.ingress(io, frame.as_ref());
                io.dev.recycle(frame);
            }
        }
        res.progress = res.rx > 0;
        self.send_due(io, &mut res);
        res
    }

    /// The second half of a poll: ARP's and TCP's timers, the sockets'
    /// output, packets to ourselves; then the batch goes to the device.
    fn send_due<D: Device>(&mut self, io: &mut Io<'_, D>, res: &mut PollResult) {
        let now = io.now;
        for packet in self.net.arp_poll(io) {
            self.host_unreachable(&packet, now, false);
        }
        self.tcp.expire_time_wait(now);
        self.tcp.expire_adrift(now);
        res.progress |= self.run_timers(now);
        res.progress |= self.tcp_output(io);
        res.progress |= self.udp_output(io);
        res.progress |= self.loop_back(io);
        for packet in std::mem::take(&mut self.net.unqueued) {
            self.host_unreachable(&packet, now, true);
        }
        io.flush(&mut self.net.stats);
        res.next = self.poll_at();
    }

    /// Takes in the packets the interface sent to its own address, and
    /// sends what they make it send (to itself again, or out): a bounded
    /// number of rounds per poll (a handshake and a reply take a few); what
    /// is left waits for the next poll, which [`Interface::poll_at`] asks
    /// for at once.
    fn loop_back<D: Device>(&mut self, io: &mut Io<'_, D>) -> bool {
        const ROUNDS: usize = 8;
        let mut progress = false;
        for _ in 0..ROUNDS {
            if self.net.loopback.is_empty() {
                break;
            }
            for packet in std::mem::take(&mut self.net.loopback) {
                self.ipv4_input(io, &packet);
            }
            self.tcp_output(io);
            self.udp_output(io);
            progress = true;
        }
        progress
    }

    /// The next time a poll has timer work.
    pub fn poll_at(&self) -> Option<Instant> {
        // Straight-line: this runs at the end of every poll.
        let min = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        if !self.net.loopback.is_empty() {
            // Packets to ourselves wait: the next poll is due now.
            return Some(Instant::ZERO);
        }
        let tcp = self.tcp.timers.peek().map(|r| r.0 .0);
        let tw = min(self.tcp.time_wait_next(), self.tcp.adrift_next());
        min(min(tcp, tw), self.net.arp.poll_at())
    }

    /// Runs the TCP timers that are due. Each socket's timers run at most
    /// once per poll: one whose deadline is still due after its timers ran
    /// (a timer that failed to advance: a bug) would otherwise spin this
    /// loop forever; it is counted in `timer_overruns` and waits for the
    /// next poll, so the other sockets and the program go on.
    fn run_timers(&mut self, now: Instant) -> bool {
        let mut progress = false;
        let mut budget = self.tcp.len() + 1;
        while let Some(core::cmp::Reverse((t, idx, gen))) = self.tcp.timers.peek().copied() {
            if t > now {
                break;
            }
            if budget == 0 {
                self.net.stats.timer_overruns += 1;
                break;
            }
            self.tcp.timers.pop();
            let Some(h) = self.tcp.take_timer(t, idx, gen) else {
                continue; // a stale entry
            };
            let Some(sock) = self.tcp.sock_mut(h) else {
                continue;
            };
            if sock.poll_at().is_none_or(|due| due > now) {
                // The deadline moved later (or went away): re-arm.
                self.tcp.push_timer(h);
                continue;
            }
            budget -= 1;
            let embryonic = sock.state() == crate::tcp::State::SynReceived && !sock.active_open;
            let ev = sock.on_timers(now);
            let retries = sock.retries;
            if embryonic && ev == Event::Closed {
                self.tcp.syn_recv_dropped += 1;
            }
            self.tcp.record_mark(h, now, FlightKind::Timer, retries);
            progress = true;
            self.tcp.schedule(h);
            if let Some(p) = self.tcp.on_event(h, ev, now) {
                self.tcp.schedule(p);
            }
        }
        progress
    }

    fn tcp_output<D: Device>(&mut self, io: &mut Io<'_, D>) -> bool {
        let now = io.now;
        let mut progress = false;
        let mut rest = Vec::new();
        // Only the sockets queued now: one re-queued meanwhile waits a poll.
        for _ in 0..self.tcp.ready_len() {
            let Some(h) = self.tcp.pop_ready() else { break };
            let net = &mut self.net;
            let Some((sock, mut flight)) = self.tcp.sock_and_flight(h) else {
                continue;
            };
            if !sock.wants_to_send() {
                continue;
            }
            let (src, dst, tos) = (sock.local, sock.remote, sock.config().tos);
            let state = sock.state();
            let d = sock.dispatch(now, &mut |repr, a, b| {
                if let Some((f, i)) = flight.as_mut() {
                    f.segment(*i, now, FlightKind::Out, repr, a.len() + b.len(), state);
                }
                send_tcp(net, io, (src, dst, tos), repr, a, b)
            });
            progress |= d.sent > 0 || d.event != Event::None;
            if d.more {
                // The device was full, or the socket used its per-poll
                // budget: it goes again next poll.
                rest.push(h);
            }
            self.tcp.push_timer(h);
            if let Some(p) = self.tcp.on_event(h, d.event, now) {
                self.tcp.schedule(p);
            }
            self.tcp.finish_if_done(h, now);
        }
        self.tcp.requeue(rest);
        progress
    }

    fn udp_output<D: Device>(&mut self, io: &mut Io<'_, D>) -> bool {
        let mut progress = false;
        let pending = std::mem::take(&mut self.udp_tx);
        for h in pending {
            let src = self.udp_local(h);
            let slot = self.udp.get_mut(h.0 as usize).filter(|s| s.0 == h.1);
            let Some(sock) = slot.and_then(|s| s.1.as_mut()) else {
                continue;
            };
            let Some(src) = src else { continue };
            let tos = sock.tos();
            let mut put_back = None;
            let mut budget = 64;
            while let Some((dst, data)) = sock.next_tx() {
                let repr = UdpRepr {
                    src_port: src.port(),
                    dst_port: dst.port(),
                    payload_len: data.len(),
                };
                let net = &mut self.net;
                let (sip, dip) = (net.ip().into(), (*dst.ip()).into());
                let ok = net.send_ip_tos(
                    io,
                    *dst.ip(),
                    IpProtocol::Udp,
                    tos,
                    repr.buffer_len(),
                    |buf, caps| {
                        buf[8..8 + data.len()].copy_from_slice(&data);
                        repr.emit(&mut UdpPacket::new_unchecked(buf), sip, dip, caps);
                    },
                );
                progress = true;
                if !ok {
                    put_back = Some((dst, data));
                    break;
                }
                budget -= 1;
                if budget == 0 {
                    break;
                }
            }
            let Some(sock) = self.udp_mut(h) else { continue };
            if let Some(d) = put_back {
                sock.unsend(d);
            }
            if sock.has_tx() {
                self.udp_tx.push(h);
            }
        }
        progress
    }

    /// An IP packet of ours that ARP gave up delivering (its next hop never
    /// answered). Linux answers such a loss with an ICMP host unreachable
    /// to the sender; as there, a connection still in SYN-SENT fails with
    /// `EHOSTUNREACH`, an embryonic one (SYN-RECEIVED, passive) whose
    /// SYN-ACK it was is dropped (Linux's `tcp_req_err`: a spoofed SYN's
    /// slot in the backlog is freed after the ARP retries, not after the
    /// SYN-ACK's), and a UDP socket connected to the destination gets the
    /// error, while a synchronized connection only lost a segment (TCP
    /// retransmits, and ARP is asked again).
    ///
    /// `unqueued`: the packet could not even wait for ARP (too many
    /// addresses being resolved: a flood from spoofed addresses). Only an
    /// embryonic connection whose SYN-ACK it was is given up (its backlog
    /// slot is worth more to the next SYN); anyone else just lost a packet.
    fn host_unreachable(&mut self, packet: &[u8], now: Instant, unqueued: bool) {
        let Ok(p) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let (src, dst, protocol) = (p.src_addr(), p.dst_addr(), p.protocol());
        let Some(ports) = p.payload().get(..4) else {
            return;
        };
        let sport = u16::from_be_bytes([ports[0], ports[1]]);
        let remote = SocketAddrV4::new(dst, u16::from_be_bytes([ports[2], ports[3]]));
        match protocol {
            IpProtocol::Tcp => {
                let Some(&h) = self.tcp.conns.get(&(SocketAddrV4::new(src, sport), remote)) else {
                    return;
                };
                let Some(sock) = self.tcp.sock_mut(h) else {
                    return;
                };
                let seq = p
                    .payload()
                    .get(4..8)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                match sock.state() {
                    crate::tcp::State::SynSent if !unqueued => sock.fail(Errno::EHOSTUNREACH),
                    crate::tcp::State::SynReceived if !sock.active_open && seq == Some(sock.iss.0) => {
                        sock.drop_embryonic();
                        self.tcp.syn_recv_dropped += 1;
                    }
                    _ => return,
                }
                self.tcp.schedule(h);
                if let Some(p) = self.tcp.on_event(h, Event::Closed, now) {
                    self.tcp.schedule(p);
                }
            }
            IpProtocol::Udp if !unqueued => {
                if let Some(s) = self.udp_ports.get(&sport).copied().and_then(|h| self.udp_mut(h)) {
                    s.icmp_error(remote, Errno::EHOSTUNREACH);
                }
            }
            _ => {}
        }
    }

    fn ingress<D: Device>(&mut self, io: &mut Io<'_, D>, frame: &[u8]) {
        let stats = &mut self.net.stats;
        stats.rx_frames += 1;
        stats.rx_bytes += frame.len() as u64;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            stats.drop_eth_malformed += 1;
            return;
        };
        let dst = eth.dst_addr();
        if dst != self.net.cfg.mac && !dst.is_broadcast() {
            stats.drop_eth_not_ours += 1;
            return;
        }
        match eth.ethertype() {
            EtherType::Arp => self.net.arp_input(io, eth.payload()),
            EtherType::Ipv4 => self.ipv4_input(io, eth.payload()),
            _ => stats.drop_eth_unsupported += 1,
        }
    }

    fn ipv4_input<D: Device>(&mut self, io: &mut Io<'_, D>, packet: &[u8]) {
        let caps = self.net.checksum();
        let pkt = match Ipv4Packet::new_checked(packet) {
            Ok(p) => p,
            Err(_) => {
                self.net.stats.drop_ip_malformed += 1;
                return;
            }
        };
        let ip = match Ipv4Repr::parse(&pkt, &caps) {
            Ok(r) => r,
            Err(crate::wire::Error::Checksum) => {
                self.net.stats.drop_ip_checksum += 1;
                return;
            }
            Err(_) => {
                self.net.stats.drop_ip_malformed += 1;
                return;
            }
        };
        if ip.dst_addr != self.net.ip()
            && !ip.dst_addr.is_broadcast()
            && ip.dst_addr != self.net.cfg.broadcast()
        {
            self.net.stats.drop_ip_not_ours += 1;
            return;
        }
        if ip.is_fragment() {
            self.net.stats.drop_ip_fragment += 1;
            return;
        }
        if !options_acceptable(pkt.options()) {
            self.net.stats.drop_ip_options += 1;
            return;
        }
        let payload = &pkt.payload()[..ip.payload_len];
        match ip.protocol {
            IpProtocol::Tcp => self.tcp_input(io, &ip, payload, packet),
            IpProtocol::Udp => self.udp_input(io, &ip, packet, payload),
            IpProtocol::Icmp => self.icmp_input(io, &ip, payload),
            _ => self.net.stats.drop_ip_unsupported += 1,
        }
    }

    fn icmp_input<D: Device>(&mut self, io: &mut Io<'_, D>, ip: &Ipv4Repr, payload: &[u8]) {
        let caps = self.net.checksum();
        let repr = match Icmpv4Packet::new_checked(payload).and_then(|p| Icmpv4Repr::parse(&p, &caps)) {
            Ok(r) => r,
            Err(_) => {
                self.net.stats.drop_icmp += 1;
                return;
            }
        };
        match repr {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } => {
                if ip.dst_addr != self.net.ip() {
                    return; // no answers to broadcast pings
                }
                let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
                self.net.stats.icmp_echo_replies += 1;
                self.net.send_icmp(io, ip.src_addr, &reply);
            }
            // Port unreachable for one of our UDP sockets.
            Icmpv4Repr::DstUnreachable { reason, header, data }
                if reason == Icmpv4DstUnreachable::PortUnreachable
                    && header.protocol == IpProtocol::Udp
                    && data.len() >= 4 =>
            {
                let sport = u16::from_be_bytes([data[0], data[1]]);
                let dport = u16::from_be_bytes([data[2], data[3]]);
                let peer = SocketAddrV4::new(header.dst_addr, dport);
                if let Some(&h) = self.udp_ports.get(&sport) {
                    if let Some(s) = self.udp_mut(h) {
                        s.icmp_error(peer, Errno::ECONNREFUSED);
                    }
                }
            }
            _ => {}
        }
    }

    fn tcp_input<D: Device>(&mut self, io: &mut Io<'_, D>, ip: &Ipv4Repr, payload: &[u8], packet: &[u8]) {
        let now = io.now;
        let caps = self.net.checksum();
        let (src, dst) = (ip.src_addr.into(), ip.dst_addr.into());
        let seg = match TcpPacket::new_checked(payload).and_then(|p| TcpRepr::parse(&p, src, dst, &caps)) {
            Ok(r) => r,
            Err(crate::wire::Error::Checksum) => {
                self.net.stats.drop_tcp_checksum += 1;
                return;
            }
            Err(_) => {
                self.net.stats.drop_tcp_malformed += 1;
                return;
            }
        };
        if ip.dst_addr != self.net.ip() {
            return; // TCP is never broadcast
        }
        let data = &payload[payload.len() - seg.payload_len..];
        let local = SocketAddrV4::new(ip.dst_addr, seg.dst_port);
        let remote = SocketAddrV4::new(ip.src_addr, seg.src_port);
        if let Some(&h) = self.tcp.conns.get(&(local, remote)) {
            if self.conn_input(io, h, local, remote, &seg, data) {
                return;
            }
        }
        if let Some(tw) = self.tcp.time_wait.get(&(local, remote)).copied() {
            match seg.control {
                TcpControl::Rst => {
                    self.tcp.time_wait.remove(&(local, remote));
                    return;
                }
                // A new connection may reuse the pair: its SYN is beyond the
                // old sequence space (RFC 9293 §3.6.1) or carries a newer
                // timestamp (RFC 6191).
                TcpControl::Syn
                    if seg.ack_number.is_none()
                        && (seg.seq_number.distance(tw.rcv_nxt) > 0
                            || matches!((tw.ts_recent, seg.timestamp),
                                (Some(r), Some(ts)) if (ts.tsval.wrapping_sub(r) as i32) > 0)) =>
                {
                    self.tcp.time_wait.remove(&(local, remote));
                }
                _ => {
                    // Re-acknowledge (a retransmitted FIN, say).
                    let ack = TcpRepr {
                        src_port: local.port(),
                        dst_port: remote.port(),
                        seq_number: tw.snd_nxt,
                        ack_number: Some(tw.rcv_nxt),
                        window_len: 0,
                        ..TcpRepr::default()
                    };
                    send_tcp(&mut self.net, io, (local, remote, 0), &ack, &[], &[]);
                    return;
                }
            }
        }
        let mut bad_cookie = false;
        if seg.control == TcpControl::Syn && seg.max_seg_size.is_some_and(|m| m < crate::tcp::MIN_MSS) {
            self.net.stats.tcp_mss_clamped += 1;
        }
        if seg.control == TcpControl::Syn && seg.ack_number.is_none() {
            match self.tcp.on_syn(local, remote, &seg, now) {
                SynOutcome::Queued(h) => {
                    self.tcp.record_segment(h, now, FlightKind::In, &seg, 0);
                    return;
                }
                SynOutcome::Cookie(syn_ack, tos) => {
                    self.net.stats.syn_cookies_sent += 1;
                    send_tcp(&mut self.net, io, (local, remote, tos), &syn_ack, &[], &[]);
                    return;
                }
                SynOutcome::Dropped => {
                    self.net.stats.drop_syn_backlog += 1;
                    return;
                }
                SynOutcome::NoListener => {}
            }
        } else if seg.ack_number.is_some() {
            // The ACK of a SYN cookie? Checked before any handover: every
            // stack of a port shares the secret, so the one it came to can
            // make the connection.
            match self.tcp.cookie_ack(local, remote, &seg, now) {
                CookieAck::Made(h) => {
                    self.net.stats.syn_cookies_ok += 1;
                    self.conn_input(io, h, local, remote, &seg, data);
                    return;
                }
                CookieAck::Full => {
                    self.tcp.accept_dropped += 1;
                    return;
                }
                CookieAck::Bad => bad_cookie = true,
                CookieAck::NotACookie => {}
            }
        }
        if let Some(kept) = self.handover.as_mut().filter(|k| k.len() < HANDOVER_MAX) {
            // Maybe another stack's (see `set_handover`): an embryonic
            // connection's ACK may look like a bad cookie here.
            kept.push(packet.to_vec());
            self.net.stats.tcp_handed_over += 1;
            return;
        }
        if bad_cookie {
            self.net.stats.syn_cookies_failed += 1;
        }
        self.net.stats.drop_tcp_no_socket += 1;
        self.send_rst(io, local, remote, &seg);
    }

    /// Hands segment `seg` (payload `data`) to connection `h`; false if
    /// there is no such connection.
    fn conn_input<D: Device>(
        &mut self,
        io: &mut Io<'_, D>,
        h: TcpHandle,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: &TcpRepr,
        data: &[u8],
    ) -> bool {
        let now = io.now;
        let Some(sock) = self.tcp.sock_mut(h) else {
            return false;
        };
        let r = sock.input(now, seg, data);
        self.tcp.record_segment(h, now, FlightKind::In, seg, data.len());
        match r {
            Input::Reset => {
                self.send_rst(io, local, remote, seg);
            }
            Input::Done(ev) => {
                if let Some(p) = self.tcp.on_event(h, ev, now) {
                    self.tcp.schedule(p);
                }
            }
        }
        self.tcp.schedule(h);
        true
    }

    /// RFC 9293 §3.10.7.1: a reset for a segment nobody wants.
    fn send_rst<D: Device>(
        &mut self,
        io: &mut Io<'_, D>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: &TcpRepr,
    ) {
        if seg.control == TcpControl::Rst {
            return;
        }
        let rst = match seg.ack_number {
            Some(ack) => TcpRepr {
                src_port: local.port(),
                dst_port: remote.port(),
                control: TcpControl::Rst,
                seq_number: ack,
                ..TcpRepr::default()
            },
            None => TcpRepr {
                src_port: local.port(),
                dst_port: remote.port(),
                control: TcpControl::Rst,
                seq_number: crate::wire::SeqNumber(0),
                ack_number: Some(seg.seq_number + seg.segment_len()),
                ..TcpRepr::default()
            },
        };
        send_tcp(&mut self.net, io, (local, remote, 0), &rst, &[], &[]);
    }

    fn udp_input<D: Device>(&mut self, io: &mut Io<'_, D>, ip: &Ipv4Repr, packet: &[u8], payload: &[u8]) {
        let caps = self.net.checksum();
        let (src, dst) = (ip.src_addr.into(), ip.dst_addr.into());
        let repr = match UdpPacket::new_checked(payload).and_then(|p| UdpRepr::parse(&p, src, dst, &caps)) {
            Ok(r) => r,
            Err(crate::wire::Error::Checksum) => {
                self.net.stats.drop_udp_checksum += 1;
                return;
            }
            Err(_) => {
                self.net.stats.drop_udp_malformed += 1;
                return;
            }
        };
        let data = &payload[8..8 + repr.payload_len];
        let from = SocketAddrV4::new(ip.src_addr, repr.src_port);
        if let Some(&h) = self.udp_ports.get(&repr.dst_port) {
            let bound_ip = self.udp_local(h).map(|a| *a.ip());
            let matches = bound_ip.is_some_and(|b| b.is_unspecified() || b == ip.dst_addr);
            if let (true, Some(s)) = (matches, self.udp_mut(h)) {
                if !s.deliver_at(from, data, io.now) {
                    self.net.stats.drop_udp_queue_full += 1;
                }
                return;
            }
        }
        self.net.stats.drop_udp_no_socket += 1;
        if ip.dst_addr == self.net.ip() && self.net.icmp_allowed(io.now) {
            // Port unreachable, quoting the IP header and 8 bytes.
            let header_len = Ipv4Packet::new_unchecked(packet).header_len() as usize;
            let quoted = &packet[header_len..(header_len + 8).min(packet.len())];
            let reply = Icmpv4Repr::DstUnreachable {
                reason: Icmpv4DstUnreachable::PortUnreachable,
                header: *ip,
                data: quoted,
            };
            self.net.send_icmp(io, ip.src_addr, &reply);
        }
    }

    // ----- UDP sockets ---------------------------------------------------

    /// A new UDP socket with 212,992-byte queues (Linux's default).
    pub fn udp_socket(&mut self) -> UdpHandle {
        let sock = UdpSocket::new(212_992, 212_992);
        if let Some(i) = self.udp_free.pop() {
            let slot = &mut self.udp[i as usize];
            slot.1 = Some(sock);
            return UdpHandle(i, slot.0);
        }
        self.udp.push((0, Some(sock)));
        UdpHandle(self.udp.len() as u32 - 1, 0)
    }

    /// The UDP socket behind `h`.
    pub fn udp(&self, h: UdpHandle) -> Option<&UdpSocket> {
        self.udp.get(h.0 as usize).filter(|s| s.0 == h.1)?.1.as_ref()
    }

    /// The UDP socket behind `h`, mutably.
    pub fn udp_mut(&mut self, h: UdpHandle) -> Option<&mut UdpSocket> {
        self.udp.get_mut(h.0 as usize).filter(|s| s.0 == h.1)?.1.as_mut()
    }

    fn udp_local(&self, h: UdpHandle) -> Option<SocketAddrV4> {
        self.udp(h)?.local
    }

    /// Binds a UDP socket (port 0: an ephemeral port).
    pub fn udp_bind(&mut self, h: UdpHandle, addr: SocketAddrV4) -> Result<SocketAddrV4> {
        if !addr.ip().is_unspecified() && *addr.ip() != self.net.ip() {
            return Err(Errno::EADDRNOTAVAIL);
        }
        if self.udp(h).ok_or(Errno::EBADF)?.local.is_some() {
            return Err(Errno::EINVAL);
        }
        let port = if addr.port() == 0 {
            let start = 32768 + (self.net.key.hash_one_keyed((h.0, h.1)) % 28000) as u16;
            let (index, of) = self.tcp.share;
            (0..28232u16)
                .map(|i| 32768 + (start - 32768 + i) % 28232)
                .find(|p| p % of == index && !self.udp_ports.contains_key(p))
                .ok_or(Errno::EADDRNOTAVAIL)?
        } else if self.udp_ports.contains_key(&addr.port()) {
            return Err(Errno::EADDRINUSE);
        } else {
            addr.port()
        };
        let bound = SocketAddrV4::new(*addr.ip(), port);
        self.udp_mut(h).ok_or(Errno::EBADF)?.local = Some(bound);
        self.udp_ports.insert(port, h);
        Ok(bound)
    }

    /// Connects a UDP socket (binding it first if needed).
    pub fn udp_connect(&mut self, h: UdpHandle, remote: SocketAddrV4) -> Result<()> {
        if self.udp(h).ok_or(Errno::EBADF)?.local.is_none() {
            self.udp_bind(h, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        }
        self.udp_mut(h).ok_or(Errno::EBADF)?.remote = Some(remote);
        Ok(())
    }

    /// Dissolves a UDP socket's association (`connect(AF_UNSPEC)`); it
    /// stays bound.
    pub fn udp_disconnect(&mut self, h: UdpHandle) -> Result<()> {
        self.udp_mut(h).ok_or(Errno::EBADF)?.remote = None;
        Ok(())
    }

    /// Queues a datagram (binding an ephemeral port first if needed).
    pub fn udp_send_to(&mut self, h: UdpHandle, data: &[u8], dst: Option<SocketAddrV4>) -> Result<usize> {
        if self.udp(h).ok_or(Errno::EBADF)?.local.is_none() {
            self.udp_bind(h, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        }
        let mtu = self.net.caps.mtu;
        if data.len() + 28 > mtu {
            return Err(Errno::EMSGSIZE);
        }
        let n = self.udp_mut(h).ok_or(Errno::EBADF)?.send_to(data, dst)?;
        if !self.udp_tx.contains(&h) {
            self.udp_tx.push(h);
        }
        Ok(n)
    }

    /// Checks the invariants of the TCP tables and sockets
    /// ([`TcpTable::check_invariants`]) and of the UDP port table (each
    /// port names a live socket bound to it, and each bound socket is in
    /// it), for tests and fuzzing; describes the first one broken.
    pub fn check_invariants(&self) -> core::result::Result<(), String> {
        self.tcp.check_invariants()?;
        for (port, h) in &self.udp_ports {
            if self.udp_local(*h).map(|a| a.port()) != Some(*port) {
                return Err(format!("UDP port {port} names {h:?}, not a socket bound to it"));
            }
        }
        for (i, (gen, sock)) in self.udp.iter().enumerate() {
            let Some(port) = sock.as_ref().and_then(|s| s.local).map(|a| a.port()) else {
                continue;
            };
            if self.udp_ports.get(&port) != Some(&UdpHandle(i as u32, *gen)) {
                return Err(format!(
                    "UDP socket {i} is bound to {port} but the port table does not say so"
                ));
            }
        }
        Ok(())
    }

    /// Closes a UDP socket.
    pub fn udp_close(&mut self, h: UdpHandle) -> Result<()> {
        let local = self.udp(h).ok_or(Errno::EBADF)?.local;
        if let Some(l) = local {
            if self.udp_ports.get(&l.port()) == Some(&h) {
                self.udp_ports.remove(&l.port());
            }
        }
        let slot = &mut self.udp[h.0 as usize];
        slot.1 = None;
        slot.0 = slot.0.wrapping_add(1);
        self.udp_free.push(h.0);
        self.udp_tx.retain(|x| *x != h);
        Ok(())
    }
}

/// Whether IPv4 options `opts` may be accepted, as Linux's
/// `ip_options_compile` and `ip_options_rcv_srr` decide with
/// `accept_source_route = 0`: each option but End of List and No
/// Operation carries a length of at least 2 that stays inside the header,
/// and none asks for source routing (loose, strict, or the obsolete
/// stream identifier's neighbour, kind 0x88, is fine). Options are not
/// acted upon otherwise (a timestamp or record-route is not filled in).
fn options_acceptable(mut opts: &[u8]) -> bool {
    const EOL: u8 = 0;
    const NOP: u8 = 1;
    const LSRR: u8 = 0x83;
    const SSRR: u8 = 0x89;
    while let Some(&kind) = opts.first() {
        match kind {
            EOL => return true,
            NOP => opts = &opts[1..],
            _ => {
                let Some(&len) = opts.get(1) else { return false };
                let len = usize::from(len);
                if len < 2 || len > opts.len() || kind == LSRR || kind == SSRR {
                    return false;
                }
                opts = &opts[len..];
            }
        }
    }
    true
}

/// Writes one TCP segment from `src` to `dst` with the TOS byte `tos`
/// (header from `repr`, payload from `a` then `b`).
fn send_tcp<D: Device>(
    net: &mut Net,
    io: &mut Io<'_, D>,
    (src, dst, tos): (SocketAddrV4, SocketAddrV4, u8),
    repr: &TcpRepr,
    a: &[u8],
    b: &[u8],
) -> bool {
    let (sip, dip) = ((*src.ip()).into(), (*dst.ip()).into());
    net.send_ip_tos(
        io,
        *dst.ip(),
        IpProtocol::Tcp,
        tos,
        repr.buffer_len(),
        |buf, caps| {
            let h = repr.header_len();
            buf[h..h + a.len()].copy_from_slice(a);
            if !b.is_empty() {
                // Only when the send ring wrapped.
                buf[h + a.len()..h + a.len() + b.len()].copy_from_slice(b);
            }
            repr.emit(&mut TcpPacket::new_unchecked(buf), sip, dip, caps);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EthernetAddress;

    #[test]
    fn ip_options_are_accepted_only_when_well_formed_and_not_source_routes() {
        // Router alert (RFC 2113), NOPs, EOL then padding: fine.
        assert!(options_acceptable(&[]));
        assert!(options_acceptable(&[0x94, 0x04, 0x00, 0x00]));
        assert!(options_acceptable(&[1, 1, 1, 0]));
        assert!(options_acceptable(&[0, 0xff, 0xff, 0xff]), "after EOL: padding");
        // An unknown kind with a sane length is skipped, as Linux does.
        assert!(options_acceptable(&[0x99, 0x03, 0xaa, 0x00]));
        // Lengths below 2, past the header, or missing.
        assert!(!options_acceptable(&[0x99, 0x00, 0x00, 0x00]));
        assert!(!options_acceptable(&[0x99, 0x01, 0x00, 0x00]));
        assert!(!options_acceptable(&[0x99, 0x09, 0x00, 0x00]));
        assert!(!options_acceptable(&[1, 1, 1, 0x99]));
        // Source routes, loose and strict.
        assert!(!options_acceptable(&[0x83, 0x07, 0x04, 198, 18, 0, 1, 0]));
        assert!(!options_acceptable(&[0x89, 0x07, 0x04, 198, 18, 0, 1, 0]));
    }

    #[test]
    fn under_rss_steering_each_stack_connects_from_ports_answered_on_its_queue() {
        // Four stacks on the queues of one port, as the shim makes them.
        let reta: Vec<u16> = (0..128).map(|i| i % 4).collect();
        let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 6379);
        let stack = |q: u16| {
            let cfg = IfaceConfig::new(
                EthernetAddress([2, 0, 0, 0, 0, 1]),
                Ipv4Addr::new(198, 18, 0, 2),
                24,
            );
            let mut i = Interface::new(cfg, TcpConfig::default(), crate::phy::Capabilities::default());
            i.set_port_share(q, 4).unwrap();
            i
        };
        let mut seen = std::collections::HashSet::new();
        for q in 0..4u16 {
            let mut i = stack(q);
            let steering = rss::Steering {
                key: rss::SYMMETRIC_KEY.to_vec(),
                reta: reta.clone(),
                queue: q,
            };
            i.set_rss_steering(Some(steering.clone()));
            for _ in 0..50 {
                let h = i.tcp.socket_new();
                i.tcp_connect(h, remote, Instant::ZERO).unwrap();
                let local = i.tcp.local_addr(h).unwrap().unwrap();
                // The SYN-ACK comes back on this stack's queue...
                assert_eq!(steering.queue_of(local, remote), q, "{local} on stack {q}");
                // ... and no two stacks make the same 4-tuple.
                assert!(seen.insert(local.port()), "port {} twice", local.port());
            }
        }
        // Without steering, the ports are the stack's share.
        let mut i = stack(3);
        let h = i.tcp.socket_new();
        i.tcp_connect(h, remote, Instant::ZERO).unwrap();
        assert_eq!(i.tcp.local_addr(h).unwrap().unwrap().port() % 4, 3);
    }

    #[test]
    fn a_udp_association_is_made_and_dissolved() {
        let cfg = IfaceConfig::new(
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(198, 18, 0, 2),
            24,
        );
        let mut i = Interface::new(cfg, TcpConfig::default(), crate::phy::Capabilities::default());
        let h = i.udp_socket();
        let peer = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 7);
        i.udp_connect(h, peer).unwrap();
        assert_eq!(i.udp(h).unwrap().remote(), Some(peer));
        assert!(i.udp(h).unwrap().local().is_some(), "connect binds");
        i.udp_disconnect(h).unwrap();
        assert_eq!(i.udp(h).unwrap().remote(), None);
        assert!(i.udp(h).unwrap().local().is_some(), "still bound");
        i.udp_close(h).unwrap();
        assert_eq!(i.udp_disconnect(h), Err(Errno::EBADF));
    }
}
