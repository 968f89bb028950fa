//! `DpdkDevice` against the system's DPDK (feature `dpdk`; run as root).
//!
//! DPDK's EAL can be started once per process, so every scenario runs in a
//! child process: this test binary re-executed with `ACCEL_DPDK_CHILD` set
//! to the scenario's name, running only the `child` test. One binary keeps
//! the build to one static DPDK link (about 10 MB) instead of one per
//! scenario; each child still gets a fresh EAL, the scenarios run in
//! parallel, and a crash inside DPDK fails that scenario with its output
//! instead of killing the harness. Children use their own `--file-prefix`
//! (removed afterwards) so parallel EALs never share runtime files.
//!
//! Our Toeplitz hash (`iface::rss`) gives what DPDK's `rte_softrss` gives.
//! Scenarios: a bad `--vdev` (and a driver rejecting its arguments) is a
//! clear error carrying DPDK's reason; `net_ring` loops transmitted frames
//! back, full rings drop and count, and every mbuf returns to the pool;
//! `net_tap` delivers the kernel's ARP request (kernel side in a network
//! namespace the test creates and removes, 198.18.97.0/24), wakes its Rx
//! interrupt descriptor, and carries our ARP reply and an offloaded-checksum
//! UDP datagram back to the kernel; and DPDK's multi-process model on
//! `net_tap` (huge pages, set up by the test if the machine has none
//! reserved): a primary opens a 4-queue port and detaches the queues no
//! process polls ([`TapQueues`]), a secondary attaches to queue pair 2
//! with the primary's mempool, receives every one of 32 flows the kernel
//! sends (none strays to a detached queue) and transmits from the shared
//! pool; and the same model on `net_memif`: a secondary takes queue pair
//! 1 of the primary's memif server port and carries a peer's frames both
//! ways, across the peer's restart (a new peer process brings new memory
//! regions, which a secondary maps only when it has seen the link go down:
//! the device watches the link as it polls, see `LinkWatch`).
#![cfg(feature = "dpdk")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant as Clock};

use accel_stack::phy::dpdk::{hugepages_ready, DpdkConfig, DpdkDevice, Eal, Mbuf, TapQueues, SPARE_MAX};
use accel_stack::phy::Device;
use accel_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, Checksum, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
use accel_stack::Instant;

/// Set in a child to the scenario it runs.
const CHILD: &str = "ACCEL_DPDK_CHILD";

/// The kernel's address on the TAP, and ours.
const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 97, 1);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 97, 2);

/// The EAL arguments of a child: accel's defaults, quieter, with the
/// child's own file prefix.
fn eal_args(vdevs: &[&str]) -> Vec<String> {
    let mut args = Eal::default_args(vdevs);
    args.extend(["--log-level=*:warning".into(), "--file-prefix".into(), prefix()]);
    args
}

/// This process's DPDK file prefix (the parent's pid: unique per scenario
/// run, and known to the parent for clean-up).
fn prefix() -> String {
    std::env::var("ACCEL_DPDK_PREFIX").unwrap_or_else(|_| format!("accel-test-{}", std::process::id()))
}

/// The monotonic clock as an `Instant`.
fn now() -> Instant {
    static START: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();
    Instant::from_nanos(START.get_or_init(Clock::now).elapsed().as_nanos() as u64)
}

/// Runs `scenario` in a child process with `env`, panicking with its output
/// unless it succeeds; returns its standard output.
fn run_child(scenario: &str, env: &[(&str, &str)]) -> String {
    let prefix = format!("accel-test-{}-{scenario}", std::process::id());
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, scenario)
        .env("ACCEL_DPDK_PREFIX", &prefix)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    for dir in ["/var/run/dpdk", "/run/dpdk"] {
        let _ = std::fs::remove_dir_all(format!("{dir}/{prefix}"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "scenario {scenario} failed ({:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    print!("{stdout}");
    stdout
}

#[test]
fn child() {
    let Ok(scenario) = std::env::var(CHILD) else {
        return; // only meaningful inside a child started by run_child
    };
    match scenario.as_str() {
        "bad_vdev" => bad_vdev(),
        "ring" => ring_loopback(),
        "tap" => tap_kernel(),
        "tap_owner" => tap_owner(),
        "tap_member" => tap_member(),
        "memif_owner" => memif_owner(),
        "memif_member" => memif_member(),
        "memif_peer" => memif_peer(),
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn our_toeplitz_hash_is_dpdks_rte_softrss() {
    use accel_stack::iface::rss::{hash_v4, SYMMETRIC_KEY};
    use std::net::SocketAddrV4;
    // Another key than the symmetric one: Microsoft's, bytes rotated.
    let mut other = SYMMETRIC_KEY;
    for (i, b) in other.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(0x5b);
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for key in [SYMMETRIC_KEY, other] {
        for _ in 0..2000 {
            let r = next();
            let src = SocketAddrV4::new(Ipv4Addr::from((r >> 32) as u32), r as u16);
            let r = next();
            let dst = SocketAddrV4::new(Ipv4Addr::from((r >> 32) as u32), r as u16);
            // rte_ipv4_tuple in host order: src, dst, then sport:dport.
            let mut tuple = [
                u32::from(*src.ip()),
                u32::from(*dst.ip()),
                (u32::from(src.port()) << 16) | u32::from(dst.port()),
            ];
            // SAFETY: three words of input, a 40-byte key.
            let dpdk = unsafe { accel_dpdk_sys::rte_softrss(tuple.as_mut_ptr(), 3, key.as_ptr()) };
            assert_eq!(hash_v4(&key, src, dst), dpdk, "{src} -> {dst}");
        }
    }
}

#[test]
fn a_bad_vdev_is_a_clear_error() {
    run_child("bad_vdev", &[]);
}

#[test]
fn net_ring_loops_frames_back_and_returns_every_mbuf() {
    let out = run_child("ring", &[]);
    assert!(out.contains("EAL started in"), "{out}");
}

fn bad_vdev() {
    // An unknown driver: DPDK refuses the arguments (and lets us retry).
    let error = Eal::init(&eal_args(&["net_bogus0"])).unwrap_err();
    println!("unknown driver: {error}");
    assert_eq!(error.errno(), libc::ENODEV, "{error}");
    let text = error.to_string();
    assert!(text.contains("rte_eal_init failed: No such device"), "{text}");
    assert!(
        text.contains(r#"DPDK said: EAL: failed to parse device "net_bogus0""#),
        "DPDK's own reason names the device: {text}"
    );

    // A known driver rejecting its arguments: the EAL starts, the port is
    // missing, and that is an error too (the EAL is cleaned up again).
    let error = Eal::init(&eal_args(&["net_ring0,nodeaction=r0:0:BOGUS"])).unwrap_err();
    println!("rejected arguments: {error}");
    assert_eq!(error.errno(), libc::ENODEV, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("--vdev net_ring0 created no Ethernet port"),
        "{text}"
    );
    assert!(text.contains("DPDK said:"), "{text}");

    // DPDK cannot start again after a clean-up: a clear error, no crash.
    let error = Eal::init(&eal_args(&["net_null0"])).unwrap_err();
    assert_eq!(error.errno(), libc::EALREADY, "{error}");
    assert!(error.to_string().contains("once per process"), "{error}");
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// A frame of `len` bytes whose bytes encode `seq`.
fn fill(buf: &mut Mbuf, seq: usize) {
    for (i, b) in buf.as_mut().iter_mut().enumerate() {
        *b = (seq * 7 + i) as u8;
    }
}

/// Receives until `want` frames arrived or a second passed.
fn receive_n(dev: &mut DpdkDevice, want: usize) -> Vec<Mbuf> {
    let deadline = Clock::now() + Duration::from_secs(1);
    let mut got = Vec::new();
    while got.len() < want && Clock::now() < deadline {
        let room = want - got.len();
        if dev.receive(now(), &mut got, room) == 0 {
            std::thread::yield_now();
        }
    }
    got
}

fn ring_loopback() {
    let rss_before = rss_bytes();
    let eal = Eal::init(&eal_args(&["net_ring0", "net_ring1"])).expect("EAL with net_ring0, net_ring1");
    println!(
        "EAL started in {:.1} ms; RSS {:.1} MB (+{:.1} MB for the EAL)",
        eal.startup_time().as_secs_f64() * 1e3,
        rss_bytes() as f64 / 1e6,
        (rss_bytes() - rss_before) as f64 / 1e6
    );
    let again = Eal::init(&eal_args(&["net_ring1"])).unwrap_err();
    assert_eq!(again.errno(), libc::EALREADY, "{again}");
    assert_eq!(eal.port_count(), 2);

    // Opening fails cleanly, and leaves the port usable.
    let error = DpdkDevice::open(&eal, "net_nope0", DpdkConfig::default()).unwrap_err();
    assert_eq!(error.errno(), libc::ENODEV, "{error}");
    let many = DpdkConfig {
        rx_queues: 1000,
        tx_queues: 1000,
        ..DpdkConfig::default()
    };
    let error = DpdkDevice::open(&eal, "net_ring0", many).unwrap_err();
    assert_eq!(error.errno(), libc::EINVAL, "{error}");
    let tiny = DpdkConfig {
        mtu: 10,
        ..DpdkConfig::default()
    };
    let error = DpdkDevice::open(&eal, "net_ring0", tiny).unwrap_err();
    assert!(error.to_string().contains("MTU 10 is outside"), "{error}");
    let huge = DpdkConfig {
        extra_mbufs: 1 << 24,
        ..DpdkConfig::default()
    };
    let error = DpdkDevice::open(&eal, "0", huge).unwrap_err();
    println!("no memory: {error}");
    assert_eq!(error.op(), "rte_pktmbuf_pool_create", "{error}");
    assert_eq!(error.errno(), libc::ENOMEM, "{error}");

    let mut dev = DpdkDevice::open(&eal, "net_ring0", DpdkConfig::default()).expect("open net_ring0");
    assert_eq!((dev.name(), dev.port_id(), dev.queue()), ("net_ring0", 0, 0));
    let caps = dev.capabilities();
    assert_eq!((caps.mtu, caps.max_burst), (1500, 32));
    assert_eq!(caps.checksum.tcp, Checksum::Both, "net_ring offloads nothing");
    assert!(dev.link().unwrap().up);
    assert_eq!(dev.rx_interrupt_fd(), None, "net_ring has no Rx interrupts");
    let busy = DpdkDevice::open(&eal, "net_ring0", DpdkConfig::default()).unwrap_err();
    assert_eq!(busy.errno(), libc::EBUSY, "{busy}");
    assert_eq!(dev.queue_pair(0).unwrap_err().errno(), libc::EBUSY);
    assert_eq!(dev.queue_pair(1).unwrap_err().errno(), libc::EINVAL);

    let (size, free0) = dev.mempool_free();
    assert!(free0 > 4096 && free0 <= size, "{free0} of {size}");
    assert_eq!(
        dev.mempool_ops(),
        "ring_mp_mc",
        "one queue pair: DPDK's default pool"
    );
    println!(
        "port open with {size} mbufs: RSS {:.1} MB",
        rss_bytes() as f64 / 1e6
    );

    // 100 frames out, the same 100 back, in order, byte for byte.
    let lens: Vec<usize> = (0..100).map(|i| 60 + (i * 97) % 1455).collect();
    let mut batch = Vec::new();
    let mut accepted = 0;
    for (seq, &len) in lens.iter().enumerate() {
        let mut buf = dev.alloc_tx(len).expect("an mbuf");
        assert_eq!(buf.as_ref().len(), len);
        fill(&mut buf, seq);
        batch.push(buf);
        if batch.len() == 32 {
            accepted += dev.transmit(now(), &mut batch);
        }
    }
    accepted += dev.transmit(now(), &mut batch);
    assert!(batch.is_empty());
    assert_eq!(accepted, 100);
    let back = receive_n(&mut dev, 100);
    assert_eq!(back.len(), 100);
    for (seq, buf) in back.iter().enumerate() {
        let mut want = dev.alloc_tx(lens[seq]).unwrap();
        fill(&mut want, seq);
        assert_eq!(buf.as_ref(), want.as_ref(), "frame {seq}");
    }
    let bytes: u64 = lens.iter().map(|&l| l as u64).sum();
    let stats = dev.stats();
    assert_eq!(
        (stats.tx_frames, stats.tx_bytes, stats.tx_dropped),
        (100, bytes, 0)
    );
    assert_eq!((stats.rx_frames, stats.rx_bytes), (100, bytes));
    assert_eq!(dev.port_stats().unwrap().opackets, 100);
    assert_eq!(dev.xstat("tx_good_packets").unwrap(), Some(100));
    assert_eq!(dev.xstat("no_such_counter").unwrap(), None);
    assert!(dev
        .xstats()
        .unwrap()
        .iter()
        .any(|(name, v)| name == "rx_good_packets" && *v == 100));
    drop(back);
    assert_eq!(dev.mempool_free().1, free0, "every mbuf back in the pool");

    // Buffers that do not fit are refused and counted.
    assert!(dev.alloc_tx(70_000).is_none());
    assert!(dev.alloc_tx(4000).is_none());
    assert_eq!(dev.stats().tx_alloc_failed, 2);
    assert_eq!(dev.mempool_free().1, free0);

    // More than the ring holds: the rest is freed and counted.
    let mut batch: Vec<Mbuf> = (0..1500).map(|_| dev.alloc_tx(64).unwrap()).collect();
    let accepted = dev.transmit(now(), &mut batch);
    let dropped = dev.stats().tx_dropped;
    println!("a full ring took {accepted} of 1500 frames");
    assert!(accepted < 1500 && accepted > 0);
    assert_eq!(accepted as u64 + dropped, 1500);
    let back = receive_n(&mut dev, accepted);
    assert_eq!(back.len(), accepted);
    drop(back);
    assert_eq!(dev.mempool_free().1, free0, "refused frames were freed");

    // Received mbufs handed back are kept to build frames in, up to
    // SPARE_MAX (the rest go back to the pool), and come out as fresh.
    let n = SPARE_MAX + 10;
    let mut batch: Vec<Mbuf> = (0..n).map(|_| dev.alloc_tx(300).unwrap()).collect();
    batch.iter_mut().enumerate().for_each(|(seq, b)| fill(b, seq));
    assert_eq!(dev.transmit(now(), &mut batch), n);
    let back = receive_n(&mut dev, n);
    assert_eq!(back.len(), n);
    let received: Vec<_> = back.iter().map(|b| b.as_ptr()).collect();
    back.into_iter().for_each(|b| dev.recycle(b));
    assert_eq!(dev.mempool_free().1, free0 - SPARE_MAX as u32, "{SPARE_MAX} kept");
    let mut again: Vec<Mbuf> = (0..SPARE_MAX + 1).map(|_| dev.alloc_tx(64).unwrap()).collect();
    assert!(
        again[..SPARE_MAX].iter().all(|b| received.contains(&b.as_ptr())),
        "the kept mbufs are used first"
    );
    for b in &again {
        assert_eq!(
            (b.as_ref().len(), b.pkt_len(), b.segments(), b.ol_flags()),
            (64, 64, 1, 0)
        );
    }
    assert_eq!(dev.mempool_free().1, free0 - SPARE_MAX as u32 - 1);
    again.iter_mut().enumerate().for_each(|(seq, b)| fill(b, seq));
    let sent: Vec<Vec<u8>> = again.iter().map(|b| b.as_ref().to_vec()).collect();
    assert_eq!(dev.transmit(now(), &mut again), SPARE_MAX + 1);
    let back = receive_n(&mut dev, SPARE_MAX + 1);
    let got: Vec<Vec<u8>> = back.iter().map(|b| b.as_ref().to_vec()).collect();
    assert_eq!(got, sent, "recycled mbufs carry frames as fresh ones do");
    drop(back);
    assert_eq!(dev.mempool_free().1, free0);

    // Two queue pairs, one handle each; net_ring loops each queue to itself.
    let two = DpdkConfig {
        rx_queues: 2,
        tx_queues: 2,
        ..DpdkConfig::default()
    };
    let mut q0 = DpdkDevice::open(&eal, "net_ring1", two).expect("open net_ring1");
    let mut q1 = q0.queue_pair(1).expect("queue pair 1");
    assert_eq!((q1.queue(), q1.queue_counts(), q1.rss()), (1, (2, 2), false));
    // net_ring does not hash flows: its stacks do not steer `connect`.
    assert_eq!((q0.rss_steering(), q1.rss_steering()), (None, None));
    // Threads of two queue pairs share the pool: a put that one of them
    // cannot finish (preempted) must not hold the others.
    assert_eq!(q1.mempool_ops(), "ring_mt_rts");
    assert_eq!(q0.queue_pair(1).unwrap_err().errno(), libc::EBUSY);
    assert_eq!(q0.queue_pair(2).unwrap_err().errno(), libc::EINVAL);
    let mut batch = vec![q1.alloc_tx(100).unwrap()];
    assert_eq!(q1.transmit(now(), &mut batch), 1);
    let other = receive_n(&mut q1, 1);
    assert_eq!(other.len(), 1);
    // An mbuf of another port's pool is not kept: it goes home.
    let (free_dev, free_q) = (dev.mempool_free().1, q1.mempool_free().1);
    other.into_iter().for_each(|b| dev.recycle(b));
    assert_eq!(
        (dev.mempool_free().1, q1.mempool_free().1),
        (free_dev, free_q + 1)
    );
    assert_eq!(q0.receive(now(), &mut Vec::new(), 32), 0);
    std::thread::spawn(move || drop(q1)).join().unwrap();
    let mut again = q0.queue_pair(1).expect("a released pair can be claimed again");

    // The transmit side split off to another thread: frames built on this
    // handle go out from there, in order; the handle itself then refuses
    // to transmit (counted, freed), and a second split is refused.
    let pool_before = again.mempool_free().1;
    let mut tx = again.split_tx().expect("split_tx");
    assert_eq!(again.split_tx().unwrap_err().errno(), libc::EBUSY);
    let mut batch: Vec<Mbuf> = (0..50).map(|_| again.alloc_tx(200).unwrap()).collect();
    batch
        .iter_mut()
        .enumerate()
        .for_each(|(seq, b)| fill(b, seq + 1000));
    let sent: Vec<Vec<u8>> = batch.iter().map(|b| b.as_ref().to_vec()).collect();
    let tx = std::thread::spawn(move || {
        assert_eq!(tx.transmit(&mut batch), 50);
        assert!(batch.is_empty());
        tx
    })
    .join()
    .unwrap();
    assert_eq!((tx.stats().tx_frames, tx.stats().tx_bytes), (50, 50 * 200));
    let back = receive_n(&mut again, 50);
    let got: Vec<Vec<u8>> = back.iter().map(|b| b.as_ref().to_vec()).collect();
    assert_eq!(got, sent, "the split-off side sends what the handle built");
    drop(back);
    let dropped = again.stats().tx_dropped;
    let mut batch = vec![again.alloc_tx(64).unwrap()];
    assert_eq!(again.transmit(now(), &mut batch), 0);
    assert_eq!(again.stats().tx_dropped, dropped + 1);
    drop(tx);
    assert_eq!(again.mempool_free().1, pool_before);

    drop((again, q0));

    // An mbuf outliving its port stays valid: the pool is kept.
    let mut batch = vec![dev.alloc_tx(64).unwrap()];
    dev.transmit(now(), &mut batch);
    let mut kept = receive_n(&mut dev, 1);
    drop(dev);
    kept[0].as_mut()[0] = 1;
    drop(kept);
    drop(eal);
}

/// Runs `ip args...`, panicking with its output if it fails.
fn ip(args: &[&str]) -> Output {
    let output = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A network namespace, deleted when dropped (also when the test panics).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills and reaps a helper process when dropped.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The effective user id, from `/proc/self/status`.
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap()
}

#[test]
fn net_tap_carries_arp_and_udp_to_and_from_the_kernel() {
    assert_eq!(
        effective_uid(),
        0,
        "this test must run as root: DPDK's net_tap creates a TAP interface, and the test a namespace"
    );
    let pid = std::process::id();
    let ns = Netns(format!("accel-dpdk-{pid}"));
    ip(&["netns", "add", &ns.0]);
    let iface = format!("dpdktap{}", pid % 100_000);
    run_child(
        "tap",
        &[("ACCEL_TEST_NETNS", &ns.0), ("ACCEL_TEST_IFACE", &iface)],
    );
}

/// The ARP request in `frame` from the kernel asking for us.
fn arp_request_for_us(frame: &[u8]) -> Option<ArpRepr> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Arp {
        return None;
    }
    let arp = ArpRepr::parse(&ArpPacket::new_unchecked(eth.payload())).ok()?;
    let wanted = arp.operation == ArpOperation::Request
        && arp.target_protocol_addr == OUR_IP
        && arp.source_protocol_addr == KERNEL_IP;
    wanted.then_some(arp)
}

/// The payload of a UDP datagram from the kernel to us on port 9.
fn udp_to_us(frame: &[u8]) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if eth.ethertype() != EtherType::Ipv4 || ip.protocol() != IpProtocol::Udp || ip.dst_addr() != OUR_IP {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    (udp.dst_port() == 9).then(|| udp.payload().to_vec())
}

/// Receives until `pick` accepts a frame, for up to 3 seconds.
fn receive_until<T>(dev: &mut DpdkDevice, what: &str, pick: impl Fn(&[u8]) -> Option<T>) -> T {
    let deadline = Clock::now() + Duration::from_secs(3);
    let mut frames = Vec::new();
    loop {
        frames.clear();
        dev.receive(now(), &mut frames, 32);
        if let Some(found) = frames.iter().find_map(|f| pick(f.as_ref())) {
            return found;
        }
        assert!(
            Clock::now() < deadline,
            "no {what} within 3 s; {:?}",
            dev.counters()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn tap_kernel() {
    let ns = std::env::var("ACCEL_TEST_NETNS").unwrap();
    let iface = std::env::var("ACCEL_TEST_IFACE").unwrap();
    let eal = Eal::init(&eal_args(&[&format!("net_tap0,iface={iface}")])).expect("EAL with net_tap0");
    let mut dev = DpdkDevice::open(&eal, "net_tap0", DpdkConfig::default()).expect("open net_tap0");
    let caps = dev.capabilities();
    println!(
        "net_tap: offloads {:?}, checksum caps {:?}",
        dev.offloads(),
        caps.checksum
    );
    assert_eq!(
        caps.checksum.udp,
        Checksum::None,
        "net_tap offloads UDP checksums both ways"
    );
    let fd = dev
        .rx_interrupt_fd()
        .expect("net_tap has an Rx interrupt descriptor");
    dev.arm_rx_interrupt().unwrap();
    let our_mac = dev.mac();

    // The kernel side moves into the test's namespace, DPDK still holding it.
    ip(&["link", "set", "dev", &iface, "netns", &ns]);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{KERNEL_IP}/24"),
        "dev",
        &iface,
    ]);
    ip(&["-n", &ns, "link", "set", &iface, "up"]);
    let listener = Command::new("ip")
        .args(["netns", "exec", &ns, "python3", "-c"])
        .arg(format!(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('{KERNEL_IP}', 7777)); print('ready', flush=True); s.settimeout(5); \
             print(s.recvfrom(100)[0].decode(), flush=True)"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in the namespace");
    let mut listener = Reap(listener);
    let mut heard = BufReader::new(listener.0.stdout.take().unwrap());
    let mut line = String::new();
    heard.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "the UDP listener did not start");
    // Anything for 198.18.97.2 makes the kernel ask for its MAC; the
    // datagram itself follows once we answer.
    let _probe = Reap(
        Command::new("ip")
            .args(["netns", "exec", &ns, "bash", "-c"])
            .arg(format!("echo probe > /dev/udp/{OUR_IP}/9"))
            .spawn()
            .unwrap(),
    );

    // The interrupt descriptor turns readable (it is never read).
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, 3000) };
    assert_eq!(ready, 1, "the Rx interrupt descriptor did not become readable");

    let request = receive_until(&mut dev, "ARP request", arp_request_for_us);
    let kernel_mac = request.source_hardware_addr;
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: our_mac,
        source_protocol_addr: OUR_IP,
        target_hardware_addr: kernel_mac,
        target_protocol_addr: KERNEL_IP,
    };
    let eth = EthernetRepr {
        src_addr: our_mac,
        dst_addr: kernel_mac,
        ethertype: EtherType::Arp,
    };
    let mut buf = dev.alloc_tx(eth.buffer_len(reply.buffer_len())).unwrap();
    let mut frame = EthernetFrame::new_unchecked(buf.as_mut());
    eth.emit(&mut frame);
    reply.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    assert_eq!(dev.transmit(now(), &mut vec![buf]), 1);

    // Resolved: the kernel's datagram arrives, its checksum checked by the
    // port (offloaded), and it is intact.
    let payload = receive_until(&mut dev, "UDP datagram", udp_to_us);
    assert_eq!(payload, b"probe\n");

    // Our datagram goes out with its checksums left to the port; the
    // kernel drops a datagram with a wrong checksum, so its arrival proves
    // the offload.
    send_udp(&mut dev, &caps.checksum, our_mac, kernel_mac, b"hello kernel");
    let mut out = String::new();
    let _ = heard.read_to_string(&mut out);
    assert_eq!(
        out, "hello kernel\n",
        "the kernel did not receive our UDP datagram"
    );
    let stats = dev.stats();
    assert_eq!(stats.tx_dropped, 0);
    assert_eq!(dev.counters().rx_checksum_dropped, 0);
    println!("net_tap: {stats:?}, link {:?}", dev.link());
}

/// Sends `payload` from 198.18.97.2:5555 to the kernel's port 7777,
/// leaving to the port the checksums `caps` offloads.
fn send_udp(
    dev: &mut DpdkDevice,
    caps: &accel_stack::wire::ChecksumCaps,
    src: EthernetAddress,
    dst: EthernetAddress,
    payload: &[u8],
) {
    let udp = UdpRepr {
        src_port: 5555,
        dst_port: 7777,
        payload_len: payload.len(),
    };
    let ip = Ipv4Repr {
        src_addr: OUR_IP,
        dst_addr: KERNEL_IP,
        protocol: IpProtocol::Udp,
        payload_len: udp.buffer_len(),
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let eth = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: EtherType::Ipv4,
    };
    let mut buf = dev.alloc_tx(eth.buffer_len(ip.buffer_len())).unwrap();
    let mut frame = EthernetFrame::new_unchecked(buf.as_mut());
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, caps);
    let at = udp.header_len();
    packet.payload_mut()[at..at + payload.len()].copy_from_slice(payload);
    let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
    udp.emit(&mut datagram, IpAddr::V4(OUR_IP), IpAddr::V4(KERNEL_IP), caps);
    assert_eq!(dev.transmit(now(), &mut vec![buf]), 1);
}

/// Huge pages for a multi-process EAL of `mb` MB: reserves more if too few
/// are free (as `scripts/install-deps` does), and mounts hugetlbfs if none
/// is mounted.
fn ensure_hugepages(mb: u32) {
    if hugepages_ready(mb).is_ok() {
        return;
    }
    let total: u64 = std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::write(
        "/proc/sys/vm/nr_hugepages",
        format!("{}", total + u64::from(mb) / 2 + 8),
    );
    let mounted = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"));
    if !mounted {
        let _ = std::fs::create_dir_all("/dev/hugepages");
        let _ = Command::new("mount")
            .args(["-t", "hugetlbfs", "nodev", "/dev/hugepages"])
            .status();
    }
    if let Err(e) = hugepages_ready(mb) {
        panic!("{e}");
    }
}

/// Megabytes of huge pages the multi-process primary takes.
const MP_MEM_MB: u32 = 128;

/// The EAL arguments of the multi-process scenarios.
fn mp_args(secondary: bool, vdevs: &[&str]) -> Vec<String> {
    let mut args = Eal::multi_process_args(&prefix(), secondary, MP_MEM_MB, vdevs);
    args.push("--log-level=*:warning".into());
    args
}

#[test]
fn a_secondary_process_takes_a_queue_of_the_primarys_tap_and_the_kernel_steers_to_it() {
    assert_eq!(
        effective_uid(),
        0,
        "this test must run as root (net_tap, namespaces, huge pages)"
    );
    ensure_hugepages(MP_MEM_MB);
    let pid = std::process::id();
    let ns = Netns(format!("accel-dpdkmp-{pid}"));
    ip(&["netns", "add", &ns.0]);
    let iface = format!("dpdkmp{}", pid % 100_000);
    let prefix = format!("accel-test-{pid}-mp");
    let owner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, "tap_owner")
        .env("ACCEL_DPDK_PREFIX", &prefix)
        .env("ACCEL_TEST_NETNS", &ns.0)
        .env("ACCEL_TEST_IFACE", &iface)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut owner = Reap(owner);
    let mut said = BufReader::new(owner.0.stdout.take().unwrap());
    let mut pool = None;
    let mut transcript = String::new();
    let mut line = String::new();
    while pool.is_none() && said.read_line(&mut line).unwrap_or(0) > 0 {
        transcript.push_str(&line);
        // The harness's "test child ... " may precede it on the line.
        pool = line
            .split_once("owner ready pool=")
            .map(|(_, p)| p.trim().to_owned());
        line.clear();
    }
    let pool = pool.unwrap_or_else(|| panic!("the primary did not start:\n{transcript}"));
    run_child(
        "tap_member",
        &[
            ("ACCEL_DPDK_PREFIX", &prefix),
            ("ACCEL_TEST_NETNS", &ns.0),
            ("ACCEL_TEST_POOL", &pool),
        ],
    );
    drop(owner.0.stdin.take()); // the primary's cue to finish
    let status = owner.0.wait().unwrap();
    let _ = said.read_to_string(&mut transcript);
    for dir in ["/var/run/dpdk", "/run/dpdk"] {
        let _ = std::fs::remove_dir_all(format!("{dir}/{prefix}"));
    }
    assert!(status.success(), "the primary failed:\n{transcript}");
}

/// The primary: a 4-queue `net_tap` port whose queues 0, 1 and 3 are
/// detached (nobody polls them), the kernel side in the test's namespace
/// with a static neighbour entry for us; then waits for its standard
/// input to close.
fn tap_owner() {
    let ns = std::env::var("ACCEL_TEST_NETNS").unwrap();
    let iface = std::env::var("ACCEL_TEST_IFACE").unwrap();
    let eal = Eal::init(&mp_args(false, &[&format!("net_tap_mp0,iface={iface}")])).expect("primary EAL");
    let config = DpdkConfig {
        rx_queues: 4,
        tx_queues: 4,
        rx_desc: 256,
        tx_desc: 256,
        extra_mbufs: 1024,
        rx_interrupts: false,
        ..DpdkConfig::default()
    };
    let dev = DpdkDevice::open(&eal, "net_tap_mp0", config).expect("open net_tap_mp0 with 4 queues");
    // Whatever RSS net_tap reports, the kernel picks its queues: no steering.
    assert_eq!(dev.rss_steering(), None);
    let mut queues = TapQueues::find(&iface, 4).expect("the port's queue descriptors");
    for q in [0, 1, 3] {
        queues.set_attached(q, false).unwrap();
    }
    let last = queues.set_attached(2, false).unwrap_err();
    assert_eq!(last.errno(), libc::EBUSY, "the last attached queue stays: {last}");
    assert!(queues.is_attached(2) && !queues.is_attached(0));
    let mac = dev.mac().to_string();
    ip(&["link", "set", "dev", &iface, "netns", &ns]);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{KERNEL_IP}/24"),
        "dev",
        &iface,
    ]);
    ip(&["-n", &ns, "link", "set", &iface, "up"]);
    ip(&[
        "-n",
        &ns,
        "neigh",
        "add",
        &OUR_IP.to_string(),
        "lladdr",
        &mac,
        "dev",
        &iface,
        "nud",
        "permanent",
    ]);
    // Straight to the descriptor: the test harness may hold `println!`
    // output until the test ends, and the parent waits for this line.
    let mut out = std::io::stdout();
    writeln!(out, "owner ready pool={}", dev.mempool_name()).unwrap();
    out.flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    println!("owner: {:?}", dev.port_stats());
    drop(dev);
}

/// The secondary: queue pair 2 of the primary's port; every one of 32
/// flows from the kernel arrives on it, and a datagram it sends from the
/// primary's mempool reaches the kernel.
fn tap_member() {
    let ns = std::env::var("ACCEL_TEST_NETNS").unwrap();
    let pool = std::env::var("ACCEL_TEST_POOL").unwrap();
    let eal = Eal::init(&mp_args(true, &[])).expect("secondary EAL");
    let error = DpdkDevice::attach(&eal, "net_tap_mp0", "no_such_pool", 2, 32).unwrap_err();
    assert_eq!(error.errno(), libc::ENOENT, "{error}");
    let mut dev = DpdkDevice::attach(&eal, "net_tap_mp0", &pool, 2, 32).expect("attach to queue pair 2");
    assert_eq!((dev.queue(), dev.queue_counts()), (2, (4, 4)));
    assert_eq!(dev.queue_pair(2).unwrap_err().errno(), libc::EBUSY);
    let flows = Command::new("ip")
        .args(["netns", "exec", &ns, "python3", "-c"])
        .arg(format!(
            "import socket\n\
             r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('{KERNEL_IP}', 7777))\n\
             r.settimeout(5); print('ready', flush=True)\n\
             for i in range(32):\n\
             \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{KERNEL_IP}', 20000 + i))\n\
             \x20   s.sendto(b'flow %d' % i, ('{OUR_IP}', 9)); s.close()\n\
             print(r.recvfrom(100)[0].decode(), flush=True)\n"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in the namespace");
    let mut flows = Reap(flows);
    let mut heard = BufReader::new(flows.0.stdout.take().unwrap());
    let mut line = String::new();
    heard.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "the kernel side did not start");

    let deadline = Clock::now() + Duration::from_secs(5);
    let mut seen = std::collections::BTreeSet::new();
    let mut kernel_mac = None;
    let mut frames = Vec::new();
    while seen.len() < 32 && Clock::now() < deadline {
        frames.clear();
        if dev.receive(now(), &mut frames, 32) == 0 {
            std::thread::yield_now();
        }
        for f in &frames {
            if let Some(p) = udp_to_us(f.as_ref()) {
                seen.insert(String::from_utf8_lossy(&p).into_owned());
                kernel_mac = EthernetFrame::new_checked(f.as_ref()).ok().map(|e| e.src_addr());
            }
        }
    }
    println!("queue pair 2 received {} of 32 flows", seen.len());
    assert_eq!(seen.len(), 32, "flows strayed to detached queues: {seen:?}");
    let caps = dev.capabilities();
    let our_mac = dev.mac();
    send_udp(
        &mut dev,
        &caps.checksum,
        our_mac,
        kernel_mac.unwrap(),
        b"hello from a secondary",
    );
    let mut out = String::new();
    let _ = heard.read_to_string(&mut out);
    assert_eq!(
        out, "hello from a secondary\n",
        "the kernel did not receive our datagram"
    );
}

/// The memif port's name in the multi-process memif scenario.
const MEMIF_PORT: &str = "net_memif_mp0";
/// Queue pairs of that port (and of its peer).
const MEMIF_QUEUES: u16 = 2;
/// The queue pair the secondary takes.
const MEMIF_MEMBER_Q: u16 = 1;
/// Frames the peer sends per run.
const MEMIF_FRAMES: usize = 200;

#[test]
fn a_secondary_process_takes_a_memif_queue_pair_and_follows_the_peers_restart() {
    assert_eq!(effective_uid(), 0, "this test must run as root (huge pages)");
    ensure_hugepages(MP_MEM_MB);
    let pid = std::process::id();
    let prefix = format!("accel-test-{pid}-mpm");
    let sock = std::env::temp_dir().join(format!("accel-memif-mp-{pid}.sock"));
    let sock = sock.to_string_lossy().into_owned();
    let _ = std::fs::remove_file(&sock);
    let spawn = |scenario: &str, env: &[(&str, &str)]| {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(CHILD, scenario)
            .env("ACCEL_DPDK_PREFIX", &prefix)
            .env("ACCEL_TEST_MEMIF_SOCK", &sock)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Reap(child)
    };
    let mut owner = spawn("memif_owner", &[]);
    let mut owner_said = BufReader::new(owner.0.stdout.take().unwrap());
    let (pool, mut transcript) = wait_for_line(&mut owner_said, "owner ready pool=");
    let pool = pool.unwrap_or_else(|| panic!("the primary did not start:\n{transcript}"));
    let mut member = spawn("memif_member", &[("ACCEL_TEST_POOL", &pool)]);
    let mut member_said = BufReader::new(member.0.stdout.take().unwrap());
    let (ready, member_transcript) = wait_for_line(&mut member_said, "member ready");
    assert!(
        ready.is_some(),
        "the secondary did not start:\n{member_transcript}"
    );
    // The peer connects, exchanges frames through the secondary, and
    // leaves; a new peer process connects again (new memory regions).
    for run in 0..2 {
        let out = run_child("memif_peer", &[("ACCEL_TEST_MEMIF_SOCK", &sock)]);
        assert!(
            out.contains(&format!("peer: {MEMIF_FRAMES} of {MEMIF_FRAMES} echoed")),
            "run {run}: {out}"
        );
    }
    drop(member.0.stdin.take());
    let member_status = member.0.wait().unwrap();
    let mut member_out = String::new();
    let _ = member_said.read_to_string(&mut member_out);
    drop(owner.0.stdin.take());
    let status = owner.0.wait().unwrap();
    let _ = owner_said.read_to_string(&mut transcript);
    for dir in ["/var/run/dpdk", "/run/dpdk"] {
        let _ = std::fs::remove_dir_all(format!("{dir}/{prefix}"));
    }
    let _ = std::fs::remove_file(&sock);
    println!("{member_out}");
    assert!(member_status.success(), "the secondary failed:\n{member_out}");
    assert!(status.success(), "the primary failed:\n{transcript}");
}

/// Reads `r` until a line holding `marker`; returns what follows the marker
/// on that line (if one came) and everything read.
fn wait_for_line(r: &mut impl BufRead, marker: &str) -> (Option<String>, String) {
    let mut transcript = String::new();
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        transcript.push_str(&line);
        // The harness's "test child ... " may precede it on the line.
        if let Some((_, rest)) = line.split_once(marker) {
            return (Some(rest.trim().to_owned()), transcript);
        }
        line.clear();
    }
    (None, transcript)
}

/// Tells the parent a line at once (the harness may hold `println!`).
fn say(text: &str) {
    let mut out = std::io::stdout();
    writeln!(out, "{text}").unwrap();
    out.flush().unwrap();
}

/// The primary: a memif server port with two queue pairs, never polled;
/// then waits for its standard input to close.
fn memif_owner() {
    let sock = std::env::var("ACCEL_TEST_MEMIF_SOCK").unwrap();
    let vdev = format!("{MEMIF_PORT},role=server,socket={sock}");
    let eal = Eal::init(&mp_args(false, &[&vdev])).expect("primary EAL");
    let config = DpdkConfig {
        rx_queues: MEMIF_QUEUES,
        tx_queues: MEMIF_QUEUES,
        rx_desc: 256,
        tx_desc: 256,
        extra_mbufs: 1024,
        rx_interrupts: false,
        ..DpdkConfig::default()
    };
    let dev = DpdkDevice::open(&eal, MEMIF_PORT, config).expect("open the memif port");
    say(&format!("owner ready pool={}", dev.mempool_name()));
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    println!("owner: {:?}", dev.port_stats());
    drop(dev);
}

/// The secondary: queue pair 1 of the primary's memif port; sends back
/// every frame it receives until its standard input closes.
fn memif_member() {
    let pool = std::env::var("ACCEL_TEST_POOL").unwrap();
    let eal = Eal::init(&mp_args(true, &[])).expect("secondary EAL");
    let mut dev =
        DpdkDevice::attach(&eal, MEMIF_PORT, &pool, MEMIF_MEMBER_Q, 32).expect("attach to queue pair 1");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    say("member ready");
    // No link calls here: the device watches the link itself as it polls
    // (without that, the second peer's frames are never seen).
    let mut echoed = 0usize;
    let mut frames = Vec::new();
    let deadline = Clock::now() + Duration::from_secs(60);
    while !done.load(std::sync::atomic::Ordering::Relaxed) && Clock::now() < deadline {
        frames.clear();
        if dev.receive(now(), &mut frames, 32) == 0 {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let mut out = Vec::new();
        for f in &frames {
            let mut b = dev.alloc_tx(f.as_ref().len()).expect("an mbuf");
            b.as_mut().copy_from_slice(f.as_ref());
            out.push(b);
        }
        echoed += dev.transmit(now(), &mut out);
    }
    say(&format!("member: echoed {echoed} frames"));
    assert_eq!(echoed, 2 * MEMIF_FRAMES, "each peer's frames echoed once");
}

/// The peer: its own primary (no huge pages), the memif client with two
/// queue pairs; sends numbered frames on queue pair 1 and expects each
/// back, and nothing on queue pair 0.
fn memif_peer() {
    let sock = std::env::var("ACCEL_TEST_MEMIF_SOCK").unwrap();
    let vdev = format!("net_memif_peer0,role=client,socket={sock}");
    let eal = Eal::init(&eal_args(&[&vdev])).expect("peer EAL");
    let config = DpdkConfig {
        rx_queues: MEMIF_QUEUES,
        tx_queues: MEMIF_QUEUES,
        rx_interrupts: false,
        ..DpdkConfig::default()
    };
    let dev = DpdkDevice::open(&eal, "net_memif_peer0", config).expect("open the peer's memif port");
    let deadline = Clock::now() + Duration::from_secs(10);
    while !dev.link().map(|l| l.up).unwrap_or(false) {
        assert!(Clock::now() < deadline, "the memif link did not come up");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut q1 = dev.queue_pair(MEMIF_MEMBER_Q).expect("queue pair 1");
    let mut q0 = dev;
    let mut back = std::collections::BTreeSet::new();
    let mut stray = 0;
    let deadline = Clock::now() + Duration::from_secs(10);
    let mut next = 0;
    let mut got = Vec::new();
    while back.len() < MEMIF_FRAMES && Clock::now() < deadline {
        if next < MEMIF_FRAMES && next < back.len() + 16 {
            let mut b = q1.alloc_tx(64).expect("an mbuf");
            fill(&mut b, next);
            b.as_mut()[..8].copy_from_slice(&(next as u64).to_le_bytes());
            if q1.transmit(now(), &mut vec![b]) == 1 {
                next += 1;
            }
        }
        got.clear();
        q1.receive(now(), &mut got, 32);
        for f in &got {
            let seq = u64::from_le_bytes(f.as_ref()[..8].try_into().unwrap()) as usize;
            let mut want = q1.alloc_tx(64).unwrap();
            fill(&mut want, seq);
            want.as_mut()[..8].copy_from_slice(&(seq as u64).to_le_bytes());
            assert_eq!(f.as_ref(), want.as_ref(), "frame {seq} came back changed");
            back.insert(seq);
        }
        got.clear();
        stray += q0.receive(now(), &mut got, 32);
    }
    println!(
        "peer: {} of {MEMIF_FRAMES} echoed; {stray} on queue pair 0",
        back.len()
    );
    assert_eq!(stray, 0, "frames came back on the other queue pair");
}
