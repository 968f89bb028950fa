//! `cargo run --release -p accel-bench --bin echo`: the per-packet cost of
//! the DPDK benchmark's `echo_mpps` test without DPDK, so that it can be
//! measured repeatably (`valgrind --tool=callgrind`, instructions per echo).
//!
//! Two stacks (A at 198.18.0.1, the client; B at 198.18.0.2, the echo
//! server) over the in-memory pair device, driven from one thread: each
//! turn reads the clock once, polls A, runs A's application, polls B and
//! runs B's. Both applications are those of `bench/src/bin/dpdk/apps.rs`:
//! `FLOWS` (256, or `ACCEL_BENCH_FLOWS`) connections each keep one 64-byte
//! message in flight; a connection is found through its waker when it has
//! something to read; A checks each echo and sends the next message; B
//! sends back what it read. `TCP_NODELAY`, 1 MiB buffers, software
//! checksums (the pair's default capabilities: no offload), as over memif.
//!
//! - `echo_ns`: nanoseconds per echo (both stacks' work for one message
//!   each way: two segments built, two parsed), over `ACCEL_BENCH_ECHOES`
//!   echoes (default 2,000,000) after 100,000 of warm-up; best of 3.
//! - `echo_frames_per_msg`: frames both ends sent per echo (2.00 when every
//!   ACK rides on data).
//!
//! Under callgrind, `--toggle-collect=*measure*` counts only the measured
//! echoes (`ACCEL_BENCH_REPS=1` for a single run).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::task::Waker;
use std::time::Instant as Clock;

use accel_bench::woken::Woken;
use accel_bench::{message, report};
use accel_stack::iface::{IfaceConfig, Interface, Stack, TcpHandle};
use accel_stack::phy::pair::{pair, PairDevice};
use accel_stack::phy::{Capabilities, Device};
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::EthernetAddress;
use accel_stack::{Errno, Instant};

const B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 7001;
const MSG: usize = 64;

struct Client {
    hs: Vec<TcpHandle>,
    woken: Woken,
    wakers: Vec<Waker>,
    rounds: Vec<u64>,
    have: Vec<usize>,
    bufs: Vec<[u8; MSG]>,
    ids: Vec<usize>,
    count: u64,
}

impl Client {
    fn turn(&mut self, i: &mut Interface) {
        let mut msg = [0u8; MSG];
        self.woken.drain(&mut self.ids);
        for id in self.ids.drain(..) {
            let h = self.hs[id];
            loop {
                match i.tcp.recv(h, &mut self.bufs[id][self.have[id]..]) {
                    Ok(0) => panic!("echo: connection {id} closed"),
                    Ok(n) => self.have[id] += n,
                    Err(Errno::EAGAIN) => {
                        i.tcp.register_recv_waker(h, &self.wakers[id]).unwrap();
                        break;
                    }
                    Err(e) => panic!("echo: connection {id}: {e}"),
                }
                if self.have[id] == MSG {
                    message(&mut msg, id as u32, self.rounds[id]);
                    assert_eq!(self.bufs[id], msg, "echo: wrong bytes on connection {id}");
                    self.have[id] = 0;
                    self.rounds[id] += 1;
                    self.count += 1;
                    message(&mut msg, id as u32, self.rounds[id]);
                    assert_eq!(i.tcp.send(h, &msg), Ok(MSG), "echo: send");
                }
            }
        }
    }
}

struct Server {
    hs: Vec<TcpHandle>,
    woken: Woken,
    wakers: Vec<Waker>,
    pending: Vec<Vec<u8>>,
    ids: Vec<usize>,
    buf: Vec<u8>,
}

impl Server {
    fn turn(&mut self, i: &mut Interface) {
        self.woken.drain(&mut self.ids);
        for id in self.ids.drain(..) {
            let h = self.hs[id];
            loop {
                let pending = &mut self.pending[id];
                if !pending.is_empty() {
                    match i.tcp.send(h, pending) {
                        Ok(n) => drop(pending.drain(..n)),
                        Err(Errno::EAGAIN) => {}
                        Err(e) => panic!("peer send: {e}"),
                    }
                    if !pending.is_empty() {
                        i.tcp.register_send_waker(h, &self.wakers[id]).unwrap();
                        break;
                    }
                }
                match i.tcp.recv(h, &mut self.buf) {
                    Ok(0) => panic!("peer: connection {id} closed"),
                    Ok(n) => pending.extend_from_slice(&self.buf[..n]),
                    Err(Errno::EAGAIN) => {
                        i.tcp.register_recv_waker(h, &self.wakers[id]).unwrap();
                        break;
                    }
                    Err(e) => panic!("peer recv: {e}"),
                }
            }
        }
    }
}

struct Bench {
    a: Stack<PairDevice>,
    b: Stack<PairDevice>,
    origin: Clock,
    /// A simulated clock's step per turn (`ACCEL_BENCH_TURN_NS`), or the
    /// real clock (`None`).
    step: Option<u64>,
    turns: u64,
    /// The simulated clock's start: the real clock when set up.
    base: u64,
    client: Client,
    server: Server,
}

impl Bench {
    fn now(&self) -> Instant {
        let ns = match self.step {
            Some(step) => self.base + self.turns * step,
            None => self.origin.elapsed().as_nanos() as u64,
        };
        Instant::from_nanos(1_000_000_000 + ns)
    }

    fn turn(&mut self) {
        self.turns += 1;
        let now = self.now();
        self.a.poll(now);
        self.client.turn(&mut self.a.iface);
        self.b.poll(now);
        self.server.turn(&mut self.b.iface);
    }

    /// Panics if the pair dropped a frame or a socket retransmitted.
    fn check(&self, what: &str) {
        for s in [&self.a, &self.b] {
            assert_eq!(s.device.stats().tx_dropped, 0, "{what}: the pair dropped frames");
        }
        for (s, hs) in [(&self.a, &self.client.hs), (&self.b, &self.server.hs)] {
            for &h in hs.iter() {
                let sock = s.iface.tcp.socket(h).unwrap();
                let st = sock.stats();
                assert!(
                    st.retransmits == 0 && st.timeouts == 0,
                    "{what}: a retransmission on a lossless pair: {sock:?} {st:?}"
                );
            }
        }
    }

    /// Runs until `n` more echoes completed.
    fn run(&mut self, n: u64) {
        let end = self.client.count + n;
        let t0 = Clock::now();
        while self.client.count < end {
            self.turn();
            assert!(
                t0.elapsed().as_secs() < 60,
                "echo stalled at {} echoes",
                self.client.count
            );
        }
    }
}

/// The measured echoes, a function of its own for `--toggle-collect`.
#[inline(never)]
fn measure(bench: &mut Bench, n: u64) -> f64 {
    let t = Clock::now();
    bench.run(n);
    t.elapsed().as_nanos() as f64 / n as f64
}

fn setup(flows: usize) -> Bench {
    let tcp = TcpConfig {
        nodelay: true,
        send_buffer: 1 << 20,
        recv_buffer: 1 << 20,
        ..TcpConfig::default()
    };
    let (da, db) = pair(Capabilities::default(), 4096);
    let mk = |ip: Ipv4Addr, last: u8, dev: PairDevice| {
        let mut cfg = IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, last]), ip, 24);
        cfg.secret = [last.wrapping_mul(0x3b); 16];
        Stack::new(cfg, tcp, dev)
    };
    let mut a = mk(Ipv4Addr::new(198, 18, 0, 1), 1, da);
    let mut b = mk(B_IP, 2, db);
    let origin = Clock::now();
    let now = || Instant::from_nanos(1_000_000_000 + origin.elapsed().as_nanos() as u64);
    let l = b.iface.tcp.socket_new();
    b.iface
        .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT))
        .unwrap();
    b.iface.tcp.listen(l, 1024).unwrap();
    let mut ca = Vec::new();
    let mut cb = Vec::new(); // B's connections, in no particular order
                             // One connection first, so that the others do not wait for ARP (it
                             // parks a bounded number of packets).
    for batch in [1, flows - 1] {
        for _ in 0..batch {
            let h = a.iface.tcp.socket_new();
            a.iface
                .tcp_connect(h, SocketAddrV4::new(B_IP, PORT), now())
                .unwrap();
            ca.push(h);
        }
        let t0 = Clock::now();
        while cb.len() < ca.len()
            || !ca
                .iter()
                .all(|&h| a.iface.tcp.readiness(h).is_ok_and(|r| r.writable))
        {
            a.poll(now());
            b.poll(now());
            while let Ok((h, _)) = b.iface.tcp.accept(l) {
                cb.push(h);
            }
            assert!(t0.elapsed().as_secs() < 10, "connections did not open");
        }
    }
    let woken = Woken::new(flows);
    let wakers: Vec<Waker> = (0..flows).map(|id| woken.waker(id)).collect();
    let mut msg = [0u8; MSG];
    for (id, &h) in ca.iter().enumerate() {
        message(&mut msg, id as u32, 0);
        assert_eq!(a.iface.tcp.send(h, &msg), Ok(MSG));
        a.iface.tcp.register_recv_waker(h, &wakers[id]).unwrap();
    }
    let swoken = Woken::new(flows);
    let swakers: Vec<Waker> = (0..flows).map(|id| swoken.waker(id)).collect();
    for (id, &h) in cb.iter().enumerate() {
        b.iface.tcp.register_recv_waker(h, &swakers[id]).unwrap();
    }
    Bench {
        a,
        b,
        origin,
        step: std::env::var("ACCEL_BENCH_TURN_NS")
            .ok()
            .map(|v| v.parse().expect("ACCEL_BENCH_TURN_NS")),
        turns: 0,
        base: origin.elapsed().as_nanos() as u64,
        client: Client {
            hs: ca,
            woken,
            wakers,
            rounds: vec![0; flows],
            have: vec![0; flows],
            bufs: vec![[0; MSG]; flows],
            ids: Vec::new(),
            count: 0,
        },
        server: Server {
            hs: cb,
            woken: swoken,
            wakers: swakers,
            pending: vec![Vec::new(); flows],
            ids: Vec::new(),
            buf: vec![0; 256 * 1024],
        },
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| v.parse().expect(name))
}

fn main() {
    let flows = env("ACCEL_BENCH_FLOWS", 256) as usize;
    let echoes = env("ACCEL_BENCH_ECHOES", 2_000_000);
    let reps = env("ACCEL_BENCH_REPS", 3);
    let mut bench = setup(flows);
    bench.check("the handshakes");
    bench.run(100_000);
    bench.check("the warm-up");
    let frames0 = bench.a.device.stats().tx_frames + bench.b.device.stats().tx_frames;
    let (count0, turns0) = (bench.client.count, bench.turns);
    let best = (0..reps)
        .map(|_| measure(&mut bench, echoes))
        .fold(f64::INFINITY, f64::min);
    let frames = bench.a.device.stats().tx_frames + bench.b.device.stats().tx_frames - frames0;
    bench.check("the measurement");
    report("echo_ns", best, "ns");
    let echoes = (bench.client.count - count0) as f64;
    report(
        "echo_turn_ns",
        best * echoes / (bench.turns - turns0) as f64,
        "ns",
    );
    report("echo_frames_per_msg", frames as f64 / echoes, "frames");
}
