//! The rig the stack-level harnesses share: one stack on one end of the
//! in-memory pair, the harness playing the peer on the other end with a
//! simulated clock. The rig builds the peer's frames, polls the stack, and
//! checks everything the stack sends: each frame must parse with the
//! stack's own parsers, checksums included, and be addressed to the peer
//! (or broadcast). After every poll it runs the stack's invariant checks
//! and panics, naming the broken invariant, if one fails: a fuzz target's
//! crash.

use core::net::Ipv4Addr;
use core::time::Duration;

use accel_stack::iface::{IfaceConfig, Stack};
use accel_stack::phy::pair::{pair, PairDevice};
use accel_stack::phy::{tracer, Capabilities, Device};
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumCaps, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use accel_stack::Instant;

/// The stack's hardware address.
pub const S_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
/// The peer's hardware address.
pub const P_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
/// The stack's address.
pub const S_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The peer's address.
pub const P_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// A frame the stack sent, parsed.
#[derive(Debug)]
pub enum Out {
    /// An ARP packet.
    Arp(ArpRepr),
    /// A TCP segment and its payload.
    Tcp(TcpRepr, Vec<u8>),
    /// A UDP datagram, its destination and its payload.
    Udp(UdpRepr, Ipv4Addr, Vec<u8>),
    /// An ICMP message (its IP header and its bytes).
    Icmp(Ipv4Repr, Vec<u8>),
}

/// One stack and the peer's end of the link.
pub struct Rig {
    /// The stack under test.
    pub stack: Stack<PairDevice>,
    /// The peer's end.
    peer: PairDevice,
    /// The simulated clock.
    pub now: Instant,
    /// Whether the peer answers the stack's ARP requests.
    pub answer_arp: bool,
    /// Whether every unicast frame must be for the peer (false when the
    /// input may teach the stack other addresses, spoofed ARP included).
    pub only_to_peer: bool,
}

impl Rig {
    /// A stack with `tcp` defaults and `cfg` tweaks, whose ARP cache
    /// already knows the peer.
    pub fn new(tcp: TcpConfig, tweak: impl FnOnce(&mut IfaceConfig)) -> Rig {
        let caps = Capabilities::default();
        let (ds, dp) = pair(caps, 4096);
        let mut cfg = IfaceConfig::new(S_MAC, S_IP, 24);
        tweak(&mut cfg);
        let mut rig = Rig {
            stack: Stack::new(cfg, tcp, ds),
            peer: dp,
            now: Instant::from_millis(1000),
            answer_arp: true,
            only_to_peer: true,
        };
        // The peer asks for the stack's address: the stack learns the peer's.
        rig.inject(&arp_frame(
            ArpOperation::Request,
            EthernetAddress::BROADCAST,
            S_IP,
        ));
        let out = rig.poll();
        assert!(
            matches!(&out[..], [Out::Arp(r)] if r.operation == ArpOperation::Reply),
            "the stack answers an ARP request for its address: {out:?}"
        );
        rig
    }

    /// Queues `frame` for the stack to receive.
    pub fn inject(&mut self, frame: &[u8]) {
        if trace() {
            eprintln!("{} in : {}", self.now, tracer::summarize(frame));
        }
        assert!(self.stack.device.inject(frame), "the rig never fills the link");
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Polls the stack until it has received everything queued and sent
    /// everything it had; returns what it sent (ARP requests for the peer
    /// are answered meanwhile if `answer_arp`). Panics if a frame it sent
    /// does not parse, or if an invariant is broken.
    pub fn poll(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        let mut frames = Vec::new();
        for _ in 0..64 {
            self.stack.poll(self.now);
            frames.clear();
            self.peer.receive(self.now, &mut frames, usize::MAX);
            let mut answered = false;
            for f in frames.drain(..) {
                if trace() {
                    eprintln!("{} out: {}", self.now, tracer::summarize(f.as_ref()));
                }
                let o = parse_output(f.as_ref(), self.only_to_peer);
                if let Out::Arp(r) = &o {
                    if self.answer_arp
                        && r.operation == ArpOperation::Request
                        && r.target_protocol_addr == P_IP
                    {
                        self.stack
                            .device
                            .inject(&arp_frame(ArpOperation::Reply, S_MAC, S_IP));
                        answered = true;
                    }
                }
                out.push(o);
            }
            if let Err(e) = self.stack.iface.check_invariants() {
                panic!("invariant broken at {}: {e}", self.now);
            }
            assert_eq!(
                self.stack.iface.stats().timer_overruns,
                0,
                "a socket's timers did not advance"
            );
            if self.stack.device.pending() == 0 && !answered {
                break;
            }
        }
        out
    }
}

/// Whether to describe every frame on stderr (`ACCEL_FUZZ_TRACE=1`, for
/// reading what a crashing input does).
pub fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("ACCEL_FUZZ_TRACE").is_some())
}

/// An ARP packet from the peer, to `dst` (broadcast for a request).
pub fn arp_frame(operation: ArpOperation, dst: EthernetAddress, target: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr {
        operation,
        source_hardware_addr: P_MAC,
        source_protocol_addr: P_IP,
        target_hardware_addr: if operation == ArpOperation::Reply {
            S_MAC
        } else {
            EthernetAddress([0; 6])
        },
        target_protocol_addr: target,
    };
    let mut frame = eth_header(dst, EtherType::Arp);
    let at = frame.len();
    frame.resize(at + repr.buffer_len(), 0);
    repr.emit(&mut ArpPacket::new_unchecked(&mut frame[at..]));
    frame
}

/// An Ethernet header from the peer.
pub fn eth_header(dst: EthernetAddress, ethertype: EtherType) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: P_MAC,
        dst_addr: dst,
        ethertype,
    };
    let mut frame = vec![0; repr.header_len()];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    frame
}

/// An IPv4 packet from `src` to `dst` carrying `payload`, in a frame for
/// the stack, with a correct header checksum.
pub fn ip_frame(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: payload.len(),
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 7,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let mut frame = eth_header(S_MAC, EtherType::Ipv4);
    let at = frame.len();
    frame.resize(at + repr.buffer_len(), 0);
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[at..]);
    repr.emit(&mut ip, &ChecksumCaps::default());
    ip.payload_mut().copy_from_slice(payload);
    frame
}

/// Parses a frame the stack sent; panics if it is not well formed (its
/// checksums included) or, if `only_to_peer`, neither for the peer nor
/// broadcast.
pub fn parse_output(frame: &[u8], only_to_peer: bool) -> Out {
    let caps = ChecksumCaps::default();
    let eth = EthernetFrame::new_checked(frame).expect("the stack's frame parses");
    let dst = eth.dst_addr();
    assert!(
        dst == P_MAC || dst.is_broadcast() || !only_to_peer && !dst.is_multicast(),
        "a frame for {dst:?}"
    );
    assert_eq!(eth.src_addr(), S_MAC);
    match eth.ethertype() {
        EtherType::Arp => {
            let p = ArpPacket::new_checked(eth.payload()).expect("the stack's ARP packet");
            Out::Arp(ArpRepr::parse(&p).expect("the stack's ARP packet parses"))
        }
        EtherType::Ipv4 => {
            let p = Ipv4Packet::new_checked(eth.payload()).expect("the stack's IPv4 packet");
            let ip = Ipv4Repr::parse(&p, &caps).expect("the stack's IPv4 header parses");
            assert_eq!(ip.src_addr, S_IP);
            assert!(!ip.is_fragment());
            assert_eq!(
                p.total_len() as usize,
                eth.payload().len(),
                "no padding from the stack"
            );
            let (src, dst) = (ip.src_addr.into(), ip.dst_addr.into());
            match ip.protocol {
                IpProtocol::Tcp => {
                    let t = TcpPacket::new_checked(p.payload()).expect("the stack's TCP segment");
                    let repr = TcpRepr::parse(&t, src, dst, &caps).expect("the stack's TCP segment parses");
                    Out::Tcp(repr, t.payload().to_vec())
                }
                IpProtocol::Udp => {
                    let u = UdpPacket::new_checked(p.payload()).expect("the stack's UDP datagram");
                    assert!(u.verify_checksum(src, dst), "the stack's UDP checksum");
                    // Port 0 is only for a socket connected to it (as
                    // Linux allows); the parser rejects it, so read it here.
                    let repr = UdpRepr {
                        src_port: u.src_port(),
                        dst_port: u.dst_port(),
                        payload_len: u.payload().len(),
                    };
                    if repr.dst_port != 0 {
                        assert_eq!(
                            UdpRepr::parse(&u, src, dst, &caps),
                            Ok(repr),
                            "the stack's UDP datagram"
                        );
                    }
                    Out::Udp(repr, ip.dst_addr, u.payload().to_vec())
                }
                IpProtocol::Icmp => {
                    let i = Icmpv4Packet::new_checked(p.payload()).expect("the stack's ICMP message");
                    Icmpv4Repr::parse(&i, &caps).expect("the stack's ICMP message parses");
                    Out::Icmp(ip, p.payload().to_vec())
                }
                other => panic!("the stack sent IP protocol {other:?}"),
            }
        }
        other => panic!("the stack sent ethertype {other:?}"),
    }
}
