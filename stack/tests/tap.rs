//! `TapDevice` against the real Linux kernel, inside a private network
//! namespace that the test creates and always deletes.
//!
//! The kernel side of the TAP gets 198.18.99.1/24 (benchmarking space,
//! RFC 2544) in namespace `accel-tap-test-<pid>`; the test provokes an ARP
//! request for 198.18.99.2, reads it through the device, answers it, and
//! checks that the kernel learned the answer. No traffic leaves the
//! namespace. Needs root (`CAP_NET_ADMIN`) and `ip` (iproute2); without
//! root it fails and says so.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant as Clock};

use accel_stack::phy::tap::TapDevice;
use accel_stack::phy::Device;
use accel_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
};
use accel_stack::Instant;

const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 99, 1);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 99, 2);
const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);

/// The effective user id, from `/proc/self/status`.
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
    line.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .expect("effective uid")
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
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// Runs `args` inside the namespace, panicking if it fails.
    fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Starts `args` inside the namespace, discarding its output.
    fn spawn(&self, args: &[&str]) -> std::io::Result<Child> {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Kills and reaps a helper process when dropped.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The ARP request in `frame` asking for `OUR_IP` on behalf of `KERNEL_IP`,
/// if that is what it is.
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

#[test]
fn kernel_arps_through_the_tap_and_learns_our_reply() {
    assert_eq!(
        effective_uid(),
        0,
        "this test must run as root: it creates a TAP interface and a network namespace \
         (e.g. `sudo -E cargo test -p accel-stack --test tap`)"
    );
    let pid = std::process::id();
    let ns = Netns::create(format!("accel-tap-test-{pid}"));
    let ifname = format!("acceltap{}", pid % 10000);
    // Declared after `ns`, so it is closed (removing the interface) first.
    let mut tap = TapDevice::open(&ifname).expect("open the TAP device");
    assert_eq!(tap.name(), ifname);

    ip(&["link", "set", "dev", &ifname, "netns", &ns.name]);
    ns.run(&["ip", "addr", "add", "198.18.99.1/24", "dev", &ifname]);
    ns.run(&["ip", "link", "set", &ifname, "up"]);

    // Anything addressed to 198.18.99.2 makes the kernel ask for its MAC.
    // Nobody answers the ping; if ping is missing, the UDP datagram that
    // bash sends does the same job.
    let _ping = Reap(ns.spawn(&["ping", "-c", "1", "-W", "1", "198.18.99.2"]).ok());
    let _udp = Reap(
        ns.spawn(&["bash", "-c", "echo probe > /dev/udp/198.18.99.2/9"])
            .ok(),
    );

    let clock = Clock::now();
    let now = || Instant::from_nanos(clock.elapsed().as_nanos() as u64);
    let mut frames = Vec::new();
    let mut seen = 0;
    let request = loop {
        frames.clear();
        tap.receive(now(), &mut frames, 32);
        seen += frames.len();
        if let Some(request) = frames.iter().find_map(|f| arp_request_for_us(f.as_ref())) {
            break request;
        }
        assert!(
            clock.elapsed() < Duration::from_secs(2),
            "no ARP request for 198.18.99.2 within 2 s ({seen} other frames; error {:?})",
            tap.take_error()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let kernel_mac = request.source_hardware_addr;
    assert!(kernel_mac.is_unicast());

    // 198.18.99.2 is at 02:00:00:00:00:02.
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: OUR_MAC,
        source_protocol_addr: OUR_IP,
        target_hardware_addr: kernel_mac,
        target_protocol_addr: KERNEL_IP,
    };
    let eth = EthernetRepr {
        src_addr: OUR_MAC,
        dst_addr: kernel_mac,
        ethertype: EtherType::Arp,
    };
    let mut buf = tap
        .alloc_tx(eth.buffer_len(reply.buffer_len()))
        .expect("a transmit buffer");
    let mut frame = EthernetFrame::new_unchecked(buf.as_mut());
    eth.emit(&mut frame);
    reply.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    assert_eq!(
        tap.transmit(now(), &mut vec![buf]),
        1,
        "error {:?}",
        tap.take_error()
    );
    let stats = tap.stats();
    assert_eq!((stats.tx_frames, stats.tx_bytes, stats.tx_dropped), (1, 42, 0));
    assert!(stats.rx_frames >= 1);

    let deadline = Clock::now() + Duration::from_secs(2);
    loop {
        let neigh = ns.run(&["ip", "neigh", "show", "198.18.99.2", "dev", &ifname]);
        let text = String::from_utf8_lossy(&neigh.stdout).into_owned();
        if text.contains("lladdr 02:00:00:00:00:02") {
            break;
        }
        assert!(Clock::now() < deadline, "kernel did not learn our MAC: {text:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
