//! Two stacks over the in-memory pair, driven by a simulated clock; and
//! ([`raw`]) a raw peer that builds frames by hand.

#![allow(dead_code)]

pub mod raw;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use accel_stack::iface::{IfaceConfig, Stack, TcpHandle};
use accel_stack::phy::fault::{FaultConfig, FaultInjector};
use accel_stack::phy::pair::{pair, PairDevice};
use accel_stack::phy::Capabilities;
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::EthernetAddress;
use accel_stack::Instant;

pub type Dev = FaultInjector<PairDevice>;

pub const A_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const A_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
pub const B_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

/// Two stacks joined by a pair, each receiving through a fault injector.
pub struct Net {
    pub a: Stack<Dev>,
    pub b: Stack<Dev>,
    pub now: Instant,
}

pub fn net_with(faults: FaultConfig, tcp: TcpConfig) -> Net {
    net_with_iface(faults, tcp, |_| {})
}

/// As [`net_with`], with both interfaces' configurations adjusted by
/// `tweak` (a wider prefix, smaller bounds).
pub fn net_with_iface(faults: FaultConfig, tcp: TcpConfig, tweak: impl Fn(&mut IfaceConfig)) -> Net {
    let caps = Capabilities::default();
    let (da, db) = pair(caps, 4096);
    let mut fa = faults;
    let mut fb = faults;
    fa.seed = faults.seed.wrapping_mul(3).wrapping_add(1);
    fb.seed = faults.seed.wrapping_mul(5).wrapping_add(2);
    let mk = |ip: Ipv4Addr, last: u8, dev: PairDevice, f: FaultConfig| {
        let mut cfg = IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, last]), ip, 24);
        cfg.secret = [last; 16];
        cfg.rx_budget = 4096;
        tweak(&mut cfg);
        Stack::new(cfg, tcp, FaultInjector::new(dev, f))
    };
    Net {
        a: mk(A_IP, 1, da, fa),
        b: mk(B_IP, 2, db, fb),
        now: Instant::from_millis(1000),
    }
}

pub fn net() -> Net {
    net_with(FaultConfig::default(), TcpConfig::default())
}

impl Net {
    /// Queues `frame` for B to receive, as if from the link.
    pub fn inject_b(&self, frame: &[u8]) {
        assert!(self.b.device.inner().inject(frame), "B's receive queue is full");
    }

    /// Takes the frames B sent that A has not received (A stands aside
    /// while a raw peer plays the other end).
    pub fn sent_by_b(&mut self) -> Vec<Vec<u8>> {
        use accel_stack::phy::Device;
        let mut got = Vec::new();
        let mut out = Vec::new();
        while self.a.device.receive(self.now, &mut out, 256) > 0 {
            for f in out.drain(..) {
                got.push(f.as_ref().to_vec());
                self.a.device.recycle(f);
            }
        }
        got
    }

    /// Polls B alone until it has no immediate work.
    pub fn poll_b(&mut self) {
        for _ in 0..10_000 {
            if !self.b.poll(self.now).progress {
                break;
            }
        }
    }

    /// Polls both stacks until neither has immediate work; then, if
    /// `advance`, jumps the clock to the next timer. Returns false when
    /// nothing at all is scheduled.
    pub fn step(&mut self, advance: bool) -> bool {
        for _ in 0..10_000 {
            let ra = self.a.poll(self.now);
            let rb = self.b.poll(self.now);
            if !ra.progress && !rb.progress {
                break;
            }
        }
        if !advance {
            return true;
        }
        let next = [
            self.a.iface.poll_at(),
            self.b.iface.poll_at(),
            self.a.device.next_release(),
            self.b.device.next_release(),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(t) => {
                self.now = if t > self.now {
                    t
                } else {
                    self.now + Duration::from_micros(10)
                };
                true
            }
            None => false,
        }
    }

    /// Runs until `done` or `limit` of simulated time passes.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.step(false);
            if done(self) {
                return true;
            }
            if !self.step(true) {
                return done(self);
            }
        }
        done(self)
    }

    /// A listener on B at `port` and a connected pair of handles (a, b).
    pub fn connect(&mut self, port: u16) -> (TcpHandle, TcpHandle) {
        let l = self.b.iface.tcp.socket_new();
        self.b
            .iface
            .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
            .unwrap();
        self.b.iface.tcp.listen(l, 128).unwrap();
        let c = self.a.iface.tcp.socket_new();
        let now = self.now;
        self.a
            .iface
            .tcp_connect(c, SocketAddrV4::new(B_IP, port), now)
            .unwrap();
        let mut accepted = None;
        assert!(
            self.run_until(Duration::from_secs(30), |n| {
                if accepted.is_none() {
                    accepted = n.b.iface.tcp.accept(l).ok().map(|(h, _)| h);
                }
                accepted.is_some() && n.a.iface.tcp.readiness(c).unwrap().writable
            }),
            "handshake did not complete"
        );
        self.b.iface.tcp.close(l, self.now).unwrap();
        (c, accepted.unwrap())
    }
}
