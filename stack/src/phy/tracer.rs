//! A device wrapper that describes every frame in one line, tcpdump-style,
//! to a sink.
//!
//! [`Tracer`] passes every call through to its inner device and, for each
//! frame received (after the inner `receive`) or transmitted (at `transmit`
//! time, when the frame is complete, before the inner device takes it),
//! calls the sink once with a line such as
//!
//! ```text
//! rx 1.000200000s 198.18.0.1:40000 > 198.18.0.2:80 tcp [S.] seq=100 ack=5 win=65535 len=0
//! tx 1.000300000s arp who-has 198.18.0.2 tell 198.18.0.1
//! ```
//!
//! The summary after the time comes from [`FrameSummary`] (or
//! [`summarize`]), which parses with the [`wire`](crate::wire) views and
//! never panics: a frame a layer rejects becomes
//! `malformed (<error>) len=<frame length>`. A checksum that should be
//! right but is not is flagged at the end of the line (`[bad tcp cksum]`);
//! the tracer checks only the checksums software handles in that direction
//! according to the device's [`ChecksumCaps`], so offloaded (still empty)
//! transmit checksums are not flagged. One `String` is reused for every
//! line; the sink borrows it.

use core::fmt;
use core::net::IpAddr;

use super::{Capabilities, Device, DeviceStats};
use crate::time::Instant;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, Checksum, ChecksumCaps, Error, EtherType, EthernetFrame, Icmpv4Message,
    Icmpv4Packet, IpProtocol, Ipv4Packet, TcpOption, TcpPacket, UdpPacket,
};

/// A one-line description of `frame`; checks every checksum.
pub fn summarize(frame: &[u8]) -> String {
    FrameSummary::new(frame).to_string()
}

/// Displays a one-line description of an Ethernet frame (see the module
/// documentation), without allocating.
#[derive(Clone, Copy, Debug)]
pub struct FrameSummary<'a> {
    frame: &'a [u8],
    verify: ChecksumCaps,
}

impl<'a> FrameSummary<'a> {
    /// A summary that checks every checksum.
    pub fn new(frame: &'a [u8]) -> Self {
        FrameSummary {
            frame,
            verify: ChecksumCaps::default(),
        }
    }

    /// A summary that checks the checksums for which `verify.<proto>.rx()`
    /// holds.
    pub fn with_checksums(frame: &'a [u8], verify: ChecksumCaps) -> Self {
        FrameSummary { frame, verify }
    }

    /// Writes the line, or returns the first parse error before writing
    /// anything (every view is checked before output begins).
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> Result<fmt::Result, Error> {
        let eth = EthernetFrame::new_checked(self.frame)?;
        match eth.ethertype() {
            EtherType::Arp => describe_arp(f, eth.payload()),
            EtherType::Ipv4 => self.describe_ipv4(f, eth.payload()),
            EtherType::Ipv6 => Ok(write!(f, "ipv6 len={}", self.frame.len())),
            EtherType::Unknown(value) => Ok(write!(f, "ethertype {value:#06x} len={}", self.frame.len())),
        }
    }

    fn describe_ipv4(&self, f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> Result<fmt::Result, Error> {
        let ip = Ipv4Packet::new_checked(bytes)?;
        if ip.version() != 4 {
            return Err(Error::Malformed);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let payload = ip.payload();
        let bad_ip = self.verify.ipv4.rx() && !ip.verify_checksum();
        if ip.frag_offset() != 0 {
            // A later fragment: no transport header to show.
            let id = ip.ident();
            let off = ip.frag_offset();
            return Ok(
                write!(f, "{src} > {dst} ip frag id={id} off={off} len={}", payload.len())
                    .and_then(|()| flag(f, bad_ip, "ip")),
            );
        }
        // The transport checksum covers the whole datagram: skip it for a
        // first fragment.
        let whole = !ip.more_frags();
        let (a, b) = (IpAddr::V4(src), IpAddr::V4(dst));
        let result = match ip.protocol() {
            IpProtocol::Tcp => {
                let tcp = TcpPacket::new_checked(payload)?;
                let bad = whole && self.verify.tcp.rx() && !tcp.verify_checksum(a, b);
                write_tcp(f, &tcp, a, b).and_then(|()| flag(f, bad, "tcp"))
            }
            IpProtocol::Udp => {
                let udp = UdpPacket::new_checked(payload)?;
                let bad = whole && self.verify.udp.rx() && !udp.verify_checksum(a, b);
                let (sp, dp) = (udp.src_port(), udp.dst_port());
                write!(f, "{src}:{sp} > {dst}:{dp} udp len={}", udp.payload().len())
                    .and_then(|()| flag(f, bad, "udp"))
            }
            IpProtocol::Icmp => {
                let icmp = Icmpv4Packet::new_checked(payload)?;
                let bad = whole && self.verify.icmpv4.rx() && !icmp.verify_checksum();
                write!(f, "{src} > {dst} icmp ")
                    .and_then(|()| write_icmp(f, &icmp))
                    .and_then(|()| flag(f, bad, "icmp"))
            }
            IpProtocol::Unknown(proto) => {
                write!(f, "{src} > {dst} ip proto {proto} len={}", payload.len())
            }
        };
        Ok(result
            .and_then(|()| match whole {
                true => Ok(()),
                false => write!(f, " [frag id={} off=0+]", ip.ident()),
            })
            .and_then(|()| flag(f, bad_ip, "ip")))
    }
}

impl fmt::Display for FrameSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.describe(f) {
            Ok(result) => result,
            Err(error) => write!(f, "malformed ({error}) len={}", self.frame.len()),
        }
    }
}

fn flag(f: &mut fmt::Formatter<'_>, bad: bool, proto: &str) -> fmt::Result {
    match bad {
        true => write!(f, " [bad {proto} cksum]"),
        false => Ok(()),
    }
}

fn describe_arp(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> Result<fmt::Result, Error> {
    let repr = ArpRepr::parse(&ArpPacket::new_unchecked(bytes))?;
    Ok(match repr.operation {
        ArpOperation::Request => write!(
            f,
            "arp who-has {} tell {}",
            repr.target_protocol_addr, repr.source_protocol_addr
        ),
        ArpOperation::Reply => write!(
            f,
            "arp reply {} is-at {}",
            repr.source_protocol_addr, repr.source_hardware_addr
        ),
        // `ArpRepr::parse` rejects other operations.
        ArpOperation::Unknown(op) => write!(f, "arp op {op}"),
    })
}

/// Writes `src:port > dst:port tcp [flags] seq= ack= win= len=` and the
/// options, tcpdump-style.
fn write_tcp(f: &mut fmt::Formatter<'_>, tcp: &TcpPacket<&[u8]>, src: IpAddr, dst: IpAddr) -> fmt::Result {
    // tcpdump's letters and order; `.` is ACK.
    let flags = [
        (tcp.fin(), 'F'),
        (tcp.syn(), 'S'),
        (tcp.rst(), 'R'),
        (tcp.psh(), 'P'),
        (tcp.ack(), '.'),
        (tcp.urg(), 'U'),
        (tcp.ece(), 'E'),
        (tcp.cwr(), 'W'),
    ];
    write!(f, "{src}:{} > {dst}:{} tcp [", tcp.src_port(), tcp.dst_port())?;
    if flags.iter().all(|&(set, _)| !set) {
        f.write_str("none")?;
    }
    for (_, letter) in flags.iter().filter(|&&(set, _)| set) {
        write!(f, "{letter}")?;
    }
    write!(f, "] seq={}", tcp.seq_number().0)?;
    if tcp.ack() {
        write!(f, " ack={}", tcp.ack_number().0)?;
    }
    write!(f, " win={} len={}", tcp.window_len(), tcp.payload().len())?;
    if tcp.options_iter().any(|option| option.is_err()) {
        return f.write_str(" options [malformed]");
    }
    let mut first = true;
    for option in tcp.options_iter().flatten() {
        f.write_str(if first { " options [" } else { "," })?;
        first = false;
        match option {
            TcpOption::EndOfList => f.write_str("eol")?,
            TcpOption::NoOperation => f.write_str("nop")?,
            TcpOption::MaxSegmentSize(mss) => write!(f, "mss {mss}")?,
            TcpOption::WindowScale(shift) => write!(f, "wscale {shift}")?,
            TcpOption::SackPermitted => f.write_str("sackOK")?,
            TcpOption::SackRange(ranges) => {
                f.write_str("sack")?;
                for (left, right) in ranges.iter().flatten() {
                    write!(f, " {left}:{right}")?;
                }
            }
            TcpOption::Timestamps { tsval, tsecr } => write!(f, "TS val {tsval} ecr {tsecr}")?,
            TcpOption::Unknown { kind, length } => write!(f, "opt-{kind}:{length}")?,
        }
    }
    if !first {
        f.write_str("]")?;
    }
    Ok(())
}

fn write_icmp(f: &mut fmt::Formatter<'_>, icmp: &Icmpv4Packet<&[u8]>) -> fmt::Result {
    let code = icmp.msg_code();
    let (id, seq) = (icmp.echo_ident(), icmp.echo_seq_no());
    match icmp.msg_type() {
        Icmpv4Message::EchoRequest => write!(f, "echo request id={id} seq={seq}"),
        Icmpv4Message::EchoReply => write!(f, "echo reply id={id} seq={seq}"),
        Icmpv4Message::DstUnreachable => write!(f, "unreachable code={code}"),
        Icmpv4Message::TimeExceeded => write!(f, "time exceeded code={code}"),
        Icmpv4Message::Redirect => write!(f, "redirect code={code}"),
        Icmpv4Message::ParamProblem => write!(f, "parameter problem code={code}"),
        Icmpv4Message::Unknown(kind) => write!(f, "type={kind} code={code}"),
    }
}

/// Which checksums software has filled in transmitted frames, expressed
/// as "verify on receive" for [`FrameSummary::with_checksums`].
fn transmit_checks(caps: ChecksumCaps) -> ChecksumCaps {
    let view = |c: Checksum| if c.tx() { Checksum::Both } else { Checksum::None };
    ChecksumCaps {
        ipv4: view(caps.ipv4),
        tcp: view(caps.tcp),
        udp: view(caps.udp),
        icmpv4: view(caps.icmpv4),
    }
}

/// Wraps a device and reports every frame through it to a sink, one line
/// per frame.
pub struct Tracer<D: Device> {
    inner: D,
    sink: Box<dyn FnMut(&str)>,
    line: String,
}

impl<D: Device> Tracer<D> {
    /// Wraps `inner`, sending each line to `sink`.
    pub fn new(inner: D, sink: impl FnMut(&str) + 'static) -> Self {
        Tracer {
            inner,
            sink: Box::new(sink),
            line: String::new(),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwraps the device.
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn trace(&mut self, direction: &str, now: Instant, frame: &[u8], verify: ChecksumCaps) {
        use fmt::Write;
        self.line.clear();
        let summary = FrameSummary::with_checksums(frame, verify);
        // Writing to a `String` cannot fail.
        let _ = write!(self.line, "{direction} {now} {summary}");
        (self.sink)(&self.line);
    }
}

impl<D: Device> Device for Tracer<D> {
    type RxBuf = D::RxBuf;
    type TxBuf = D::TxBuf;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn receive(&mut self, now: Instant, out: &mut Vec<D::RxBuf>, max: usize) -> usize {
        let start = out.len();
        let n = self.inner.receive(now, out, max);
        let verify = self.inner.capabilities().checksum;
        for buf in &out[start..] {
            self.trace("rx", now, buf.as_ref(), verify);
        }
        n
    }

    fn alloc_tx(&mut self, len: usize) -> Option<D::TxBuf> {
        self.inner.alloc_tx(len)
    }

    fn recycle(&mut self, buf: D::RxBuf) {
        self.inner.recycle(buf);
    }

    fn transmit(&mut self, now: Instant, batch: &mut Vec<D::TxBuf>) -> usize {
        let verify = transmit_checks(self.inner.capabilities().checksum);
        for buf in batch.iter() {
            self.trace("tx", now, buf.as_ref(), verify);
        }
        self.inner.transmit(now, batch)
    }

    fn stats(&self) -> DeviceStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phy::pair::pair;
    use crate::wire::{
        EthernetAddress, EthernetRepr, Icmpv4Repr, Ipv4Repr, SeqNumber, TcpControl, TcpRepr, UdpRepr,
    };
    use core::net::Ipv4Addr;
    use std::cell::RefCell;
    use std::rc::Rc;

    const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
    const IP_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const IP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn caps() -> ChecksumCaps {
        ChecksumCaps::default()
    }

    /// An Ethernet frame of `ethertype` around `payload_len` bytes that
    /// `fill` writes.
    fn frame(ethertype: EtherType, payload_len: usize, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let eth = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: MAC_B,
            ethertype,
        };
        let mut bytes = vec![0; eth.buffer_len(payload_len)];
        let mut view = EthernetFrame::new_unchecked(&mut bytes[..]);
        eth.emit(&mut view);
        fill(view.payload_mut());
        bytes
    }

    /// An IPv4 frame from A to B carrying `len` bytes that `fill` writes.
    fn ipv4(protocol: IpProtocol, len: usize, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let ip = Ipv4Repr {
            src_addr: IP_A,
            dst_addr: IP_B,
            protocol,
            payload_len: len,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 7,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        };
        frame(EtherType::Ipv4, ip.buffer_len(), |bytes| {
            let mut view = Ipv4Packet::new_unchecked(bytes);
            ip.emit(&mut view, &caps());
            fill(view.payload_mut());
        })
    }

    fn tcp(repr: TcpRepr) -> Vec<u8> {
        ipv4(IpProtocol::Tcp, repr.buffer_len(), |bytes| {
            let (a, b) = (IpAddr::V4(IP_A), IpAddr::V4(IP_B));
            repr.emit(&mut TcpPacket::new_unchecked(bytes), a, b, &caps());
        })
    }

    fn syn_ack() -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            control: TcpControl::Syn,
            seq_number: SeqNumber(100),
            ack_number: Some(SeqNumber(5)),
            window_len: 65535,
            ..TcpRepr::default()
        }
    }

    fn arp(operation: ArpOperation) -> Vec<u8> {
        let repr = ArpRepr {
            operation,
            source_hardware_addr: MAC_A,
            source_protocol_addr: IP_A,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: IP_B,
        };
        frame(EtherType::Arp, repr.buffer_len(), |bytes| {
            repr.emit(&mut ArpPacket::new_unchecked(bytes))
        })
    }

    #[test]
    fn tcp_lines() {
        assert_eq!(
            summarize(&tcp(syn_ack())),
            "198.18.0.1:40000 > 198.18.0.2:80 tcp [S.] seq=100 ack=5 win=65535 len=0"
        );
        let data = TcpRepr {
            control: TcpControl::Psh,
            ack_number: None,
            payload_len: 10,
            ..syn_ack()
        };
        assert_eq!(
            summarize(&tcp(data)),
            "198.18.0.1:40000 > 198.18.0.2:80 tcp [P] seq=100 win=65535 len=10"
        );
        let with_options = TcpRepr {
            max_seg_size: Some(1460),
            sack_permitted: true,
            window_scale: Some(7),
            ..syn_ack()
        };
        assert_eq!(
            summarize(&tcp(with_options)),
            "198.18.0.1:40000 > 198.18.0.2:80 tcp [S.] seq=100 ack=5 win=65535 len=0 \
             options [mss 1460,nop,nop,sackOK,nop,wscale 7]"
        );
    }

    #[test]
    fn arp_lines() {
        assert_eq!(
            summarize(&arp(ArpOperation::Request)),
            "arp who-has 198.18.0.2 tell 198.18.0.1"
        );
        assert_eq!(
            summarize(&arp(ArpOperation::Reply)),
            "arp reply 198.18.0.1 is-at 02:00:00:00:00:01"
        );
    }

    #[test]
    fn icmp_and_udp_lines() {
        let echo = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 2,
            data: b"abcd",
        };
        let bytes = ipv4(IpProtocol::Icmp, echo.buffer_len(), |b| {
            echo.emit(&mut Icmpv4Packet::new_unchecked(b), &caps())
        });
        assert_eq!(
            summarize(&bytes),
            "198.18.0.1 > 198.18.0.2 icmp echo request id=1 seq=2"
        );
        let udp = UdpRepr {
            src_port: 5353,
            dst_port: 53,
            payload_len: 12,
        };
        let bytes = ipv4(IpProtocol::Udp, udp.buffer_len(), |b| {
            let (a, c) = (IpAddr::V4(IP_A), IpAddr::V4(IP_B));
            udp.emit(&mut UdpPacket::new_unchecked(b), a, c, &caps())
        });
        assert_eq!(summarize(&bytes), "198.18.0.1:5353 > 198.18.0.2:53 udp len=12");
        let other = ipv4(IpProtocol::Unknown(47), 4, |_| {});
        assert_eq!(summarize(&other), "198.18.0.1 > 198.18.0.2 ip proto 47 len=4");
    }

    #[test]
    fn malformed_and_unknown_frames() {
        assert_eq!(summarize(&[0; 10]), "malformed (truncated packet) len=10");
        let mut short = tcp(syn_ack());
        short.truncate(14 + 20 + 10); // IPv4 total length now points past the end
        assert_eq!(summarize(&short), "malformed (truncated packet) len=44");
        let mut bad_arp = arp(ArpOperation::Request);
        bad_arp[14] = 0x01; // hardware type 0x0101
        assert_eq!(summarize(&bad_arp), "malformed (unsupported packet) len=42");
        assert_eq!(summarize(&frame(EtherType::Ipv6, 40, |_| {})), "ipv6 len=54");
        assert_eq!(
            summarize(&frame(EtherType::Unknown(0x88cc), 6, |_| {})),
            "ethertype 0x88cc len=20"
        );
    }

    #[test]
    fn bad_checksums_are_flagged_only_when_software_fills_them() {
        let mut bytes = tcp(syn_ack());
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40; // the urgent pointer: only the checksum notices
        assert_eq!(
            summarize(&bytes),
            "198.18.0.1:40000 > 198.18.0.2:80 tcp [S.] seq=100 ack=5 win=65535 len=0 [bad tcp cksum]"
        );
        let offloaded = transmit_checks(ChecksumCaps {
            tcp: Checksum::Rx,
            ..ChecksumCaps::default()
        });
        let line = FrameSummary::with_checksums(&bytes, offloaded).to_string();
        assert!(!line.contains("bad"), "{line}");
        bytes[14 + 8] ^= 1; // TTL: the IPv4 header checksum notices
        assert!(summarize(&bytes).ends_with("[bad tcp cksum] [bad ip cksum]"));
    }

    #[test]
    fn tracer_reports_both_directions() {
        let lines = Rc::new(RefCell::new(Vec::<String>::new()));
        let sink = Rc::clone(&lines);
        let (a, mut b) = pair(crate::phy::Capabilities::default(), 8);
        let mut traced = Tracer::new(a, move |line: &str| sink.borrow_mut().push(line.to_owned()));
        let request = arp(ArpOperation::Request);
        let mut buf = traced.alloc_tx(request.len()).unwrap();
        buf.as_mut().copy_from_slice(&request);
        assert_eq!(
            traced.transmit(Instant::from_nanos(1_000_300_000), &mut vec![buf]),
            1
        );
        let mut got = Vec::new();
        assert_eq!(b.receive(Instant::ZERO, &mut got, 8), 1);
        b.transmit(Instant::ZERO, &mut vec![got.pop().unwrap()]);
        let mut out = Vec::new();
        assert_eq!(traced.receive(Instant::from_nanos(1_000_200_000), &mut out, 8), 1);
        assert_eq!(
            *lines.borrow(),
            vec![
                "tx 1.000300000s arp who-has 198.18.0.2 tell 198.18.0.1".to_owned(),
                "rx 1.000200000s arp who-has 198.18.0.2 tell 198.18.0.1".to_owned(),
            ]
        );
        assert_eq!(traced.stats().rx_frames, 1);
    }
}
