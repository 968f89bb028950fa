//! TCP input from an arbitrary starting state.
//!
//! The input first picks the stack's TCP settings and a starting state,
//! which a scripted, well-behaved peer drives a connection into (LISTEN,
//! SYN-SENT, SYN-RECEIVED, ESTABLISHED from either side, FIN-WAIT-1 and 2,
//! CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT). Then it is a list of
//! operations: segments from the peer (up to three peers, every flag
//! combination, sequence and acknowledgement numbers around the ones that
//! matter or anywhere, any window, well-formed or raw options, payloads),
//! the program's calls (send, recv, shutdown, close, abort, accept,
//! connect, options) and the passing of time.
//!
//! Checked all along (a panic is the fuzz target's crash):
//! - after every poll, the stack's invariants (tables, timers, buffers,
//!   scoreboard: `Interface::check_invariants`) and the well-formedness of
//!   every frame it sent ([`crate::net`]);
//! - the data: every payload byte the peer sends at sequence number `s` is
//!   `s as u8`, so what the program reads must count up by one; every byte
//!   the program sends is its stream offset mod 251, so every payload
//!   byte the stack sends must be that of its sequence number;
//! - at the end, every handle closed and the peer silent: once the timers
//!   have run, every table must be empty (nothing hangs, nothing leaks).

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use accel_stack::iface::TcpHandle;
use accel_stack::tcp::{Algorithm, Keepalive, State, TcpConfig};
use accel_stack::wire::{IpProtocol, SeqNumber, TcpControl, TcpPacket};

use crate::bytes::Bytes;
use crate::net::{ip_frame, Out, Rig, P_IP, S_IP};

/// The port the stack listens on.
const LISTEN_PORT: u16 = 80;
/// The peers' ports: 40000, 40001, 40002 (the first one's is also the
/// port the prelude's active open connects to).
const PEER_PORT: u16 = 40000;
/// The ports of peers the stack connects to after the prelude.
const ACTIVE_PORT: u16 = 41000;
/// Most flows one input uses.
const MAX_FLOWS: usize = 6;
/// Most operations one input runs (bounded work per execution).
const MAX_OPS: usize = 512;

/// The flag bits of the TCP header's 14th byte.
mod flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// What the peer knows of one connection: its own sequence space, what it
/// saw of the stack's, and what the program did with its handle.
#[derive(Debug)]
struct Flow {
    peer_port: u16,
    /// The stack's port (the listener's, or its ephemeral port).
    s_port: u16,
    /// The program's handle of the connection, once it has one.
    handle: Option<TcpHandle>,
    p_iss: SeqNumber,
    /// The peer's next new sequence number.
    p_nxt: SeqNumber,
    /// The stack's ISS, from its SYN or SYN-ACK.
    s_iss: Option<SeqNumber>,
    /// The stack's initial receive sequence number, from the first ACK it
    /// sent.
    s_irs: Option<SeqNumber>,
    /// One past the highest sequence number the stack sent.
    s_max: SeqNumber,
    /// The stack's latest acknowledgement (its rcv_nxt).
    s_ack: Option<SeqNumber>,
    /// The stack's latest timestamp value, to echo.
    s_tsval: u32,
    /// Bytes the program queued on the current handle.
    sent: usize,
    /// The last byte the program read on the current handle.
    last_read: Option<u8>,
}

impl Flow {
    fn new(i: usize, p_iss: u32) -> Flow {
        Flow {
            peer_port: PEER_PORT + i as u16,
            s_port: LISTEN_PORT,
            handle: None,
            p_iss: SeqNumber(p_iss),
            p_nxt: SeqNumber(p_iss),
            s_iss: None,
            s_irs: None,
            s_max: SeqNumber(0),
            s_ack: None,
            s_tsval: 0,
            sent: 0,
            last_read: None,
        }
    }

    /// A new handle for this flow (accept or connect): the program's
    /// streams start over.
    fn adopt(&mut self, h: TcpHandle, spare: &mut Vec<TcpHandle>) {
        if let Some(old) = self.handle.replace(h) {
            spare.push(old);
        }
        self.sent = 0;
        self.last_read = None;
    }
}

/// A segment from the peer, before it is written.
#[derive(Clone, Debug, Default)]
struct Seg {
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    urgent: u16,
    options: Vec<u8>,
    payload_len: usize,
    bad_checksum: bool,
}

/// The byte every peer payload carries at sequence number `seq`.
fn peer_byte(seq: u32) -> u8 {
    seq as u8
}

/// The byte the program writes at offset `k` of its stream.
fn app_byte(k: usize) -> u8 {
    (k % 251) as u8
}

/// The harness: the rig, the listener, the flows.
struct Tcp {
    rig: Rig,
    listener: TcpHandle,
    flows: Vec<Flow>,
    /// Handles the program still holds but no flow names (closed at the end).
    spare: Vec<TcpHandle>,
    /// The peer's timestamp clock offset.
    ts_base: u32,
    /// Options the scripted peer puts in its SYN.
    syn_options: Vec<u8>,
    /// Whether the scripted peer offered timestamps (and so sends them).
    peer_ts: bool,
}

/// TCP options as bytes, padded with NOPs to a multiple of 4.
fn options(mss: Option<u16>, ws: Option<u8>, sack_perm: bool, ts: Option<(u32, u32)>) -> Vec<u8> {
    let mut o = Vec::new();
    if let Some(m) = mss {
        o.extend_from_slice(&[2, 4]);
        o.extend_from_slice(&m.to_be_bytes());
    }
    if let Some(w) = ws {
        o.extend_from_slice(&[1, 3, 3, w]);
    }
    if sack_perm {
        o.extend_from_slice(&[1, 1, 4, 2]);
    }
    if let Some((v, e)) = ts {
        o.extend_from_slice(&[1, 1, 8, 10]);
        o.extend_from_slice(&v.to_be_bytes());
        o.extend_from_slice(&e.to_be_bytes());
    }
    o
}

/// The settings the input picks.
fn config(b: &mut Bytes) -> TcpConfig {
    let bits = b.u16();
    let mut c = TcpConfig {
        send_buffer: b.pick(&[1, 100, 2048, 8192, 65536, 1 << 20]),
        recv_buffer: b.pick(&[1, 100, 2048, 8192, 65536, 1 << 20]),
        mss: b.pick(&[64, 536, 1460, 9000]),
        congestion: if bits & 1 == 0 {
            Algorithm::Cubic
        } else {
            Algorithm::NewReno
        },
        initial_window: 1 + b.below(10),
        nodelay: bits & 2 != 0,
        timestamps: bits & 4 == 0,
        sack: bits & 8 == 0,
        window_scaling: bits & 16 == 0,
        linger_zero: bits & 32 != 0,
        syn_retries: b.below(7) as u32,
        max_retries: b.below(16) as u32,
        rto_min: Duration::from_millis(b.pick(&[1, 10, 200])),
        rto_max: Duration::from_secs(b.pick(&[1, 10, 120])),
        rto_initial: Duration::from_millis(b.pick(&[1, 200, 1000, 3000])),
        delayed_ack: Duration::from_millis(b.pick(&[0, 40, 200])),
        time_wait: Duration::from_secs(b.pick(&[1, 60])),
        fin_wait2: Duration::from_secs(b.pick(&[1, 60])),
        ..TcpConfig::default()
    };
    if bits & 64 != 0 {
        c.keepalive = Some(Keepalive {
            idle: Duration::from_secs(b.pick(&[1, 7200])),
            interval: Duration::from_secs(b.pick(&[1, 75])),
            count: b.below(10) as u32,
        });
    }
    if bits & 128 != 0 {
        c.user_timeout = Some(Duration::from_millis(b.pick(&[1, 500, 30_000])));
    }
    c
}

/// The starting states the input may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

const STARTS: [Start; 10] = [
    Start::Listen,
    Start::SynSent,
    Start::SynReceived,
    Start::Established,
    Start::FinWait1,
    Start::FinWait2,
    Start::CloseWait,
    Start::Closing,
    Start::LastAck,
    Start::TimeWait,
];

impl Tcp {
    fn new(b: &mut Bytes) -> Tcp {
        let cfg = config(b);
        let tw_max = b.pick(&[1, 2, 16384]);
        let mut rig = Rig::new(cfg, |c| c.time_wait_max = tw_max);
        let listener = rig.stack.iface.tcp.socket_new();
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, LISTEN_PORT);
        rig.stack.iface.tcp_bind(listener, any).expect("bind");
        rig.stack
            .iface
            .tcp
            .listen(listener, b.pick(&[1, 2, 128]))
            .expect("listen");
        let n = 1 + b.below(3);
        let flows = (0..n).map(|i| Flow::new(i, b.u32())).collect();
        let opt = b.u8();
        let ts_base = b.u32();
        let syn_options = options(
            (opt & 1 != 0).then(|| b.pick(&[1, 64, 536, 1460, 65535])),
            (opt & 2 != 0).then(|| b.pick(&[0, 7, 14, 15, 255])),
            opt & 4 != 0,
            (opt & 8 != 0).then_some((ts_base, 0)),
        );
        Tcp {
            rig,
            listener,
            flows,
            spare: Vec::new(),
            ts_base,
            syn_options,
            peer_ts: opt & 8 != 0,
        }
    }

    /// The peer's timestamp clock.
    fn ts_now(&self) -> u32 {
        self.ts_base
            .wrapping_add((self.rig.now.nanos() / 1_000_000) as u32)
    }

    /// Writes `seg` from flow `k` and hands it to the stack; polls and
    /// takes in what the stack sent back.
    fn send(&mut self, k: usize, seg: &Seg) {
        let f = &mut self.flows[k];
        let opt_len = seg.options.len().min(40);
        let header = 20 + opt_len.div_ceil(4) * 4;
        let mut buf = vec![0u8; header + seg.payload_len];
        {
            let mut t = TcpPacket::new_unchecked(&mut buf[..]);
            t.set_src_port(f.peer_port);
            t.set_dst_port(f.s_port);
            t.set_seq_number(SeqNumber(seg.seq));
            t.set_ack_number(SeqNumber(seg.ack));
            t.set_header_len(header as u8);
            t.set_window_len(seg.window);
            t.set_urgent_at(seg.urgent);
        }
        buf[13] = seg.flags;
        buf[20..20 + opt_len].copy_from_slice(&seg.options[..opt_len]);
        for (i, byte) in buf[header..].iter_mut().enumerate() {
            *byte = peer_byte(seg.seq.wrapping_add(i as u32));
        }
        let mut t = TcpPacket::new_unchecked(&mut buf[..]);
        t.fill_checksum(P_IP.into(), S_IP.into());
        if seg.bad_checksum {
            let c = t.checksum();
            t.set_checksum(c ^ 0x0100);
        }
        // What the peer has now sent of its own sequence space.
        let end = SeqNumber(seg.seq)
            + seg.payload_len
            + usize::from(seg.flags & flag::SYN != 0)
            + usize::from(seg.flags & flag::FIN != 0);
        if !seg.bad_checksum && end.distance(f.p_nxt) > 0 && end.distance(f.p_nxt) < 1 << 30 {
            f.p_nxt = end;
        }
        let frame = ip_frame(P_IP, S_IP, IpProtocol::Tcp, &buf);
        self.rig.inject(&frame);
        self.poll();
    }

    /// Polls the stack and learns from what it sent.
    fn poll(&mut self) {
        for out in self.rig.poll() {
            let Out::Tcp(repr, payload) = out else { continue };
            let Some(f) = self.flows.iter_mut().find(|f| f.peer_port == repr.dst_port) else {
                panic!("a segment to port {} nobody uses", repr.dst_port);
            };
            f.s_port = repr.src_port;
            let rst = repr.control == TcpControl::Rst;
            if repr.control == TcpControl::Syn {
                f.s_iss = Some(repr.seq_number);
                f.s_max = repr.seq_number + 1;
                match repr.ack_number {
                    Some(a) => f.s_irs = Some(a - 1),
                    None => f.s_irs = None, // a new active open
                }
            }
            if let (Some(a), false) = (repr.ack_number, rst) {
                f.s_ack = Some(a);
                if f.s_irs.is_none() && f.s_iss.is_some() {
                    f.s_irs = Some(a - 1);
                }
            }
            if let Some(ts) = repr.timestamp {
                f.s_tsval = ts.tsval;
            }
            if !rst {
                let end = repr.seq_number + repr.segment_len();
                if end.distance(f.s_max) > 0 {
                    f.s_max = end;
                }
            }
            // The stack's payload is the program's stream at its place.
            if let (Some(iss), false) = (f.s_iss, payload.is_empty()) {
                let first = repr.seq_number.distance(iss + 1);
                assert!(first >= 0, "payload before the stack's first data byte: {repr:?}");
                for (i, &byte) in payload.iter().enumerate() {
                    let k = first as usize + i;
                    assert_eq!(
                        byte,
                        app_byte(k),
                        "the stack sent a wrong byte at stream offset {k}"
                    );
                    assert!(
                        k < f.sent,
                        "the stack sent stream offset {k}; the program queued {}",
                        f.sent
                    );
                }
            }
        }
    }

    /// A segment the scripted peer sends: in order, acknowledging
    /// everything the stack sent.
    fn valid(&self, k: usize, flags: u8, len: usize) -> Seg {
        let f = &self.flows[k];
        let seq = if flags & flag::SYN != 0 { f.p_iss } else { f.p_nxt };
        let options = if flags & flag::SYN != 0 {
            self.syn_options.clone()
        } else if self.peer_ts {
            options(None, None, false, Some((self.ts_now(), f.s_tsval)))
        } else {
            Vec::new()
        };
        Seg {
            flags,
            seq: seq.0,
            ack: f.s_max.0,
            window: 65535,
            options,
            payload_len: len,
            ..Seg::default()
        }
    }

    /// A poll at the same time: the prelude runs with the clock stopped, so
    /// no timer (however short the settings make it) interferes with it.
    fn step(&mut self) {
        self.poll();
    }

    /// Drives flow 0 into `start` as a well-behaved peer would.
    fn prelude(&mut self, start: Start, active: bool, data: usize) {
        let want = match start {
            Start::Listen => return,
            Start::SynSent => State::SynSent,
            Start::SynReceived => State::SynReceived,
            Start::Established => State::Established,
            Start::FinWait1 => State::FinWait1,
            Start::FinWait2 => State::FinWait2,
            Start::CloseWait => State::CloseWait,
            Start::Closing => State::Closing,
            Start::LastAck => State::LastAck,
            Start::TimeWait => State::TimeWait,
        };
        let active = start == Start::SynSent || active && start != Start::SynReceived;
        // Data only where the peer's ACKs need not wait for all of it.
        let data = if matches!(start, Start::Established | Start::CloseWait) {
            data
        } else {
            0
        };
        if active {
            let h = self.rig.stack.iface.tcp.socket_new();
            let now = self.rig.now;
            let peer = SocketAddrV4::new(P_IP, self.flows[0].peer_port);
            self.rig.stack.iface.tcp_connect(h, peer, now).expect("connect");
            self.flows[0].adopt(h, &mut self.spare);
            self.step();
            if start == Start::SynSent {
                return self.expect_state(want);
            }
            let syn_ack = self.valid(0, flag::SYN | flag::ACK, 0);
            self.send(0, &syn_ack);
        } else {
            let syn = self.valid(0, flag::SYN, 0);
            self.send(0, &syn);
            if start == Start::SynReceived {
                return self.expect_state(want);
            }
            let ack = self.valid(0, flag::ACK, 0);
            self.send(0, &ack);
            let (h, _) = self.rig.stack.iface.tcp.accept(self.listener).expect("accept");
            self.flows[0].adopt(h, &mut self.spare);
        }
        self.step();
        if data > 0 {
            self.app_send(0, data);
            self.step();
        }
        let h = self.flows[0].handle.expect("a handle");
        match start {
            Start::FinWait1 | Start::FinWait2 | Start::Closing | Start::TimeWait => {
                self.rig
                    .stack
                    .iface
                    .tcp
                    .shutdown(h, false, true)
                    .expect("shutdown");
                self.step();
                // The peer acknowledges all the data (not the FIN).
                let mut ack = self.valid(0, flag::ACK, 0);
                ack.ack = (self.flows[0].s_max - 1).0;
                self.send(0, &ack);
                match start {
                    Start::FinWait2 | Start::TimeWait => {
                        let ack = self.valid(0, flag::ACK, 0);
                        self.send(0, &ack);
                    }
                    Start::Closing => {
                        let mut fin = self.valid(0, flag::FIN | flag::ACK, 0);
                        fin.ack = (self.flows[0].s_max - 1).0;
                        self.send(0, &fin);
                    }
                    _ => {}
                }
                if start == Start::TimeWait {
                    let fin = self.valid(0, flag::FIN | flag::ACK, 0);
                    self.send(0, &fin);
                }
            }
            Start::CloseWait | Start::LastAck => {
                let fin = self.valid(0, flag::FIN | flag::ACK, 0);
                self.send(0, &fin);
                if start == Start::LastAck {
                    self.rig
                        .stack
                        .iface
                        .tcp
                        .shutdown(h, false, true)
                        .expect("shutdown");
                }
            }
            _ => {}
        }
        self.step();
        self.expect_state(want);
    }

    fn expect_state(&self, want: State) {
        let tcp = &self.rig.stack.iface.tcp;
        match self.flows[0].handle {
            Some(h) => {
                let got = tcp.socket(h).map(|s| s.state());
                assert_eq!(got, Some(want), "the prelude did not reach {want}");
            }
            // The embryonic connection has no handle yet.
            None => assert_eq!(tcp.len(), 2, "the prelude did not reach {want}"),
        }
    }

    /// The program queues up to `n` bytes of its stream on flow `k`.
    fn app_send(&mut self, k: usize, n: usize) {
        let f = &mut self.flows[k];
        let Some(h) = f.handle else { return };
        let data: Vec<u8> = (f.sent..f.sent + n).map(app_byte).collect();
        if let Ok(m) = self.rig.stack.iface.tcp.send(h, &data) {
            assert!(m <= n);
            f.sent += m;
        }
    }

    /// The program reads up to `n` bytes on flow `k`.
    fn app_recv(&mut self, k: usize, n: usize) {
        let f = &mut self.flows[k];
        let Some(h) = f.handle else { return };
        let mut buf = vec![0u8; n];
        let Ok(m) = self.rig.stack.iface.tcp.recv(h, &mut buf) else {
            return;
        };
        for &byte in &buf[..m] {
            let want = match (f.last_read, f.s_irs) {
                (Some(prev), _) => Some(prev.wrapping_add(1)),
                (None, Some(irs)) => Some(peer_byte((irs + 1).0)),
                (None, None) => None,
            };
            if let Some(w) = want {
                assert_eq!(byte, w, "the program read a wrong byte");
            }
            f.last_read = Some(byte);
        }
    }

    /// A segment from the peer, as the input describes it.
    fn arbitrary_segment(&mut self, b: &mut Bytes) {
        let k = b.below(self.flows.len());
        let flags = b.u8();
        let mode = b.u8();
        let f = &self.flows[k];
        let seq = match mode & 3 {
            0 => f.s_ack.unwrap_or(f.p_nxt),
            1 => f.p_nxt,
            2 => f.p_iss,
            _ => SeqNumber(b.u32()),
        };
        let seq = if mode & 4 != 0 {
            SeqNumber(seq.0.wrapping_add(i32::from(b.u8() as i8) as u32))
        } else {
            seq
        };
        let ack = match (mode >> 3) & 3 {
            0 => f.s_max,
            1 => SeqNumber(f.s_max.0.wrapping_sub(u32::from(b.u16()))),
            2 => SeqNumber(f.s_max.0.wrapping_add(i32::from(b.u8() as i8) as u32)),
            _ => SeqNumber(b.u32()),
        };
        let window = match (mode >> 5) & 3 {
            0 => 65535,
            1 => 0,
            2 => b.u16(),
            _ => u16::from(b.u8()),
        };
        let sel = b.u8();
        let mut opts = Vec::new();
        if sel & 1 != 0 {
            opts.extend(options(Some(b.u16()), None, false, None));
        }
        if sel & 2 != 0 {
            opts.extend(options(None, Some(b.u8()), false, None));
        }
        if sel & 4 != 0 {
            opts.extend(options(None, None, true, None));
        }
        if sel & 8 != 0 {
            let tsval = if b.bool() { self.ts_now() } else { b.u32() };
            let tsecr = if b.bool() { f.s_tsval } else { b.u32() };
            opts.extend(options(None, None, false, Some((tsval, tsecr))));
        }
        if sel & 16 != 0 {
            // SACK blocks, mostly within what the stack sent.
            let n = 1 + b.below(4);
            opts.extend_from_slice(&[1, 1, 5, 2 + 8 * n as u8]);
            let span = f.s_max.distance(f.s_iss.unwrap_or(f.s_max)).max(1) as u32;
            for _ in 0..n {
                let (l, r) = if b.bool() {
                    let l = ack.0.wrapping_add(u32::from(b.u16()) % span);
                    (l, l.wrapping_add(u32::from(b.u16()) % span))
                } else {
                    (b.u32(), b.u32())
                };
                opts.extend_from_slice(&l.to_be_bytes());
                opts.extend_from_slice(&r.to_be_bytes());
            }
        }
        if sel & 32 != 0 {
            opts.extend_from_slice(b.slice(1));
        }
        let payload_len = match b.below(4) {
            0 => 0,
            1 => 1 + b.below(64),
            2 => usize::from(b.u16()) % 3000,
            _ => 1,
        };
        let seg = Seg {
            flags,
            seq: seq.0,
            ack: ack.0,
            window,
            urgent: if flags & 0x20 != 0 { b.u16() } else { 0 },
            options: opts,
            payload_len,
            bad_checksum: sel & 64 != 0,
        };
        self.send(k, &seg);
    }

    fn op(&mut self, b: &mut Bytes) {
        let now = self.rig.now;
        match b.below(14) {
            0..=4 => self.arbitrary_segment(b),
            5 => {
                let k = b.below(self.flows.len());
                let flags = b.pick(&[
                    flag::ACK,
                    flag::SYN,
                    flag::FIN | flag::ACK,
                    flag::RST,
                    flag::PSH | flag::ACK,
                ]);
                let len = b.pick(&[0, 1, 100, 1460]);
                let seg = self.valid(k, flags, len);
                self.send(k, &seg);
            }
            6 => {
                let k = b.below(self.flows.len());
                let n = b.pick(&[1, 10, 1000, 5000, 70000]);
                self.app_send(k, n);
                self.poll();
            }
            7 => {
                let k = b.below(self.flows.len());
                let n = b.pick(&[0, 1, 100, 70000]);
                self.app_recv(k, n);
                self.poll();
            }
            8 => {
                let k = b.below(self.flows.len());
                let (rd, wr) = (b.bool(), b.bool());
                if let Some(h) = self.flows[k].handle {
                    let _ = self.rig.stack.iface.tcp.shutdown(h, rd, wr);
                }
                self.poll();
            }
            9 => {
                let k = b.below(self.flows.len());
                if let Some(h) = self.flows[k].handle.take() {
                    if b.bool() {
                        if let Ok(c) = self.rig.stack.iface.tcp.config_mut(h) {
                            c.linger_zero = true;
                        }
                    }
                    self.rig
                        .stack
                        .iface
                        .tcp
                        .close(h, now)
                        .expect("close a live handle");
                }
                self.poll();
            }
            10 => {
                if let Ok((h, remote)) = self.rig.stack.iface.tcp.accept(self.listener) {
                    let seqs = self.rig.stack.iface.tcp.socket(h).map(|s| s.initial_seqs());
                    let f = self.flows.iter_mut().find(|f| f.peer_port == remote.port());
                    let f = f.expect("a known peer");
                    f.adopt(h, &mut self.spare);
                    // The connection's own sequence spaces: one a SYN
                    // cookie made never sent the SYN-ACK the oracle saw.
                    if let Some((iss, irs)) = seqs {
                        if f.s_iss != Some(iss) {
                            f.s_max = iss + 1;
                        }
                        f.s_iss = Some(iss);
                        f.s_irs = Some(irs);
                    }
                }
            }
            11 => {
                // A new connection, to a peer port of its own (the flows
                // tell connections apart by the peer's port).
                if self.flows.len() < MAX_FLOWS {
                    let mut f = Flow::new(self.flows.len(), b.u32());
                    f.peer_port = ACTIVE_PORT + self.flows.len() as u16;
                    let h = self.rig.stack.iface.tcp.socket_new();
                    let peer = SocketAddrV4::new(P_IP, f.peer_port);
                    match self.rig.stack.iface.tcp_connect(h, peer, now) {
                        Ok(()) => f.adopt(h, &mut self.spare),
                        Err(_) => self.spare.push(h),
                    }
                    self.flows.push(f);
                }
                self.poll();
            }
            12 => {
                let k = b.below(self.flows.len());
                let what = b.u8();
                if let Some(h) = self.flows[k].handle {
                    if let Ok(c) = self.rig.stack.iface.tcp.config_mut(h) {
                        match what % 3 {
                            0 => c.nodelay = !c.nodelay,
                            1 => c.keepalive = None,
                            _ => c.user_timeout = Some(Duration::from_millis(100)),
                        }
                    }
                    // Settings change readiness nowhere: a later call picks them up.
                    let _ = self.rig.stack.iface.tcp.send(h, &[]);
                }
                self.poll();
            }
            _ => {
                let d = b.pick(&[0, 1, 5, 40, 200, 1000, 3000, 10_000, 61_000, 200_000]);
                if d == 0 {
                    // To the next deadline.
                    if let Some(t) = self.rig.stack.iface.poll_at() {
                        if t > self.rig.now {
                            self.rig.now = t;
                        }
                    }
                } else {
                    self.rig.advance(Duration::from_millis(d));
                }
                self.poll();
            }
        }
    }

    /// Closes every handle and lets the timers run with the peer silent:
    /// everything must end and every table empty.
    fn finish(&mut self) {
        let now = self.rig.now;
        let tcp = &mut self.rig.stack.iface.tcp;
        loop {
            match tcp.accept(self.listener) {
                Ok((h, _)) => self.spare.push(h),
                Err(accel_stack::Errno::EAGAIN) => break,
                Err(_) => {} // a child that died in the queue
            }
        }
        let handles = self.flows.iter_mut().filter_map(|f| f.handle.take());
        for h in handles.chain(self.spare.drain(..)).chain([self.listener]) {
            tcp.close(h, now).expect("close a live handle");
        }
        self.poll();
        let start = self.rig.now;
        for _ in 0..100_000 {
            let tcp = &self.rig.stack.iface.tcp;
            if tcp.is_empty() && tcp.time_wait_len() == 0 {
                break;
            }
            let Some(t) = self.rig.stack.iface.poll_at() else {
                break;
            };
            self.rig.now = t.max(self.rig.now + Duration::from_micros(1));
            self.poll();
        }
        let tcp = &self.rig.stack.iface.tcp;
        assert!(
            tcp.is_empty() && tcp.conns_len() == 0 && tcp.ports_len() == 0 && tcp.time_wait_len() == 0,
            "{:?} after every handle closed and the peer silent: {} sockets, {} 4-tuples, {} ports, {} in TIME-WAIT; {:?}",
            self.rig.now.saturating_since(start),
            tcp.len(),
            tcp.conns_len(),
            tcp.ports_len(),
            tcp.time_wait_len(),
            self.flows
        );
    }
}

/// The fuzz target's body (see the module docs).
pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mut t = Tcp::new(&mut b);
    let start = b.pick(&STARTS);
    let active = b.bool();
    let data = b.pick(&[0, 0, 1, 3000]);
    t.prelude(start, active, data);
    for _ in 0..MAX_OPS {
        if b.is_empty() {
            break;
        }
        t.op(&mut b);
    }
    t.finish();
}
