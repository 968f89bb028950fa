//! The whole stack over DPDK's virtual ports (feature `dpdk`; run as root):
//! TCP through net_memif between two processes, through net_af_packet on a
//! veth pair, and through net_tap against the kernel, plus the CPU an idle
//! stack costs.
//!
//! As in `tests/dpdk.rs`, each scenario runs in child processes (this test
//! binary re-executed with `ACCEL_DPDK_NET_CHILD` naming the role, running
//! only the `child` test), each with its own EAL and `--file-prefix`. The
//! stack is driven by [`driver::Driver`]: it sleeps on net_tap's Rx
//! interrupt descriptor, and backs off (spin, then 50 µs sleeps growing to
//! 1 ms) on memif and af_packet, which have no Rx interrupt in DPDK 22.11.
//! The applications and the kernel-side programs are those of the TAP
//! interop suite (`interop/apps.rs`, `interop/netns.rs`,
//! `interop/scripts.rs`). Only 198.18.0.0/15 is used, and only inside
//! namespaces the tests create and remove (or between the two memif
//! processes, through shared memory).
//!
//! - memif: a server process (198.18.1.1, the echo server) and a client
//!   process (198.18.1.2) pinned to different CPUs; the server says
//!   `READY` once it listens, the client waits for the link and retries its
//!   connect (bounded). The client streams `ACCEL_DPDK_NET_MB` MiB (1024 by
//!   default) and checks the echo byte for byte, then makes
//!   `ACCEL_DPDK_NET_SHORT` (1,000) short connections in a row, 64 B each
//!   way, every one checked.
//! - af_packet: a veth pair, one end in a namespace at 198.18.2.1, the other
//!   in the root namespace without an address, opened by
//!   `net_af_packet0`; the stack (198.18.2.2, its own MAC, the port
//!   promiscuous) echoes 64 MiB of a Python client and serves curl 1 MiB.
//!   The namespace's end has its transmit checksum, TSO and GSO offloads
//!   turned off: DPDK 22.11's af_packet port passes the kernel's partial
//!   checksums (`TP_STATUS_CSUMNOTREADY`) on as they are, and the stack
//!   rightly drops those segments as corrupt.
//! - net_tap: the kernel end moved into a namespace (198.18.3.1); curl
//!   fetches 1 MiB from the stack's HTTP server (SHA-256 checked) and a
//!   Python client echoes `ACCEL_DPDK_NET_TAP_MB` MiB (256) byte-exact,
//!   the driver sleeping on the Rx interrupt descriptor.
//! - idle: a stack on net_tap sleeping on its interrupt and one on memif
//!   backing off, each idle for `ACCEL_DPDK_NET_IDLE_S` seconds (3): the
//!   process's CPU time (getrusage, all threads) over that time is
//!   reported; the net_tap one must stay below 2 %.
#![cfg(feature = "dpdk")]

#[allow(dead_code)]
#[path = "interop/apps.rs"]
mod apps;
#[allow(dead_code)]
#[path = "dpdk_net/driver.rs"]
mod driver;
#[path = "dpdk_net/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "interop/netns.rs"]
mod netns;
#[allow(dead_code)]
#[path = "interop/scripts.rs"]
mod scripts;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::ControlFlow;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant as Clock};

use accel_stack::phy::dpdk::{DpdkConfig, DpdkDevice, Eal};
use accel_stack::phy::Device;
use accel_stack::tcp::TcpConfig;
use accel_stack::wire::EthernetAddress;

use apps::{EchoServer, HttpServer, StreamClient, SEED};
use driver::{process_cpu, Driver, Wait};
use harness::{
    check_body, eal_args, env, env_num, iface_config, namespace, pin_from_env, run_until_exit, two_cpus,
    ChildTopo, Kid, Link, CHILD, OFFLOADS_OFF,
};
use netns::{preflight, run, Topo};

/// The echo server's port, and the HTTP server's.
const ECHO_PORT: u16 = 7777;
const HTTP_PORT: u16 = 8080;

/// Serialises the scenarios: on two cores, two at once would starve each
/// other's busy-polling loops.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The kernel side's Python echo client streaming `total` bytes through
/// the stack's echo server, and curl fetching 1 MiB from its HTTP server,
/// both checked; returns the echo client's report line.
fn echo_and_curl(drv: &mut Driver, topo: &Topo, total: u64, cpu: Option<usize>) -> String {
    let mut echo = EchoServer::new(&mut drv.stack.iface, ECHO_PORT);
    let mut http = HttpServer::new(&mut drv.stack.iface, HTTP_PORT);
    let out = topo.file("1m").to_string_lossy().into_owned();
    let url = format!("http://{}:{HTTP_PORT}/1048576", topo.stack_ip);
    let args = [
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "50",
        "-w",
        "%{http_code} %{speed_download}\\n",
    ];
    let mut curl = topo.spawn(
        "curl-1m",
        Duration::from_secs(60),
        &[&args[..], &[&url, "-o", &out]].concat(),
    );
    run_until_exit(
        drv,
        "curl 1 MiB",
        Duration::from_secs(60),
        &mut [&mut curl],
        |i, n| http.step(i, n),
    );
    if !curl.status().success() {
        let dev = &drv.stack.device;
        let (stats, counters) = (
            drv.stack.iface.stats(),
            (dev.stats(), dev.counters(), dev.port_stats()),
        );
        panic!(
            "curl failed: {}\ninterface {stats:?}\ndevice {counters:?}",
            curl.report()
        );
    }
    check_body(&topo.file("1m"), 1 << 20);
    println!("curl GET /1048576: {}", curl.stdout().trim());

    let (host, port, bytes) = (
        topo.stack_ip.to_string(),
        ECHO_PORT.to_string(),
        total.to_string(),
    );
    let seed = SEED.to_string();
    let script = ["python3", "-c", scripts::ECHO_CLIENT, &host, &port, &bytes, &seed];
    let mut client = topo.spawn_on(cpu, "echo-client", Duration::from_secs(170), &script);
    run_until_exit(
        drv,
        "Python echo",
        Duration::from_secs(180),
        &mut [&mut client],
        |i, n| echo.step(i, n),
    );
    client.expect_success();
    assert!(client.stdout().starts_with("OK bytes="), "{}", client.report());
    assert_eq!((echo.accepted, echo.finished, echo.bytes), (1, 1, total));
    assert!(
        echo.errors.is_empty() && http.errors.is_empty(),
        "{:?} {:?}",
        echo.errors,
        http.errors
    );
    client.stdout().trim().to_owned()
}

#[test]
fn child() {
    let Ok(role) = std::env::var(CHILD) else {
        return; // only meaningful inside a child started by Kid::spawn
    };
    match role.as_str() {
        "memif_server" => memif_server(),
        "memif_client" => memif_client(),
        "afpacket" => afpacket(),
        "tap" => tap(),
        "idle_tap" => idle("tap"),
        "idle_memif" => idle("memif"),
        other => panic!("unknown role {other}"),
    }
}

// ----- memif: two processes ----------------------------------------------

const MEMIF_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const MEMIF_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);

#[test]
fn memif_two_processes_echo_a_stream_and_many_short_connections() {
    let _guard = lock();
    let sock = format!("/tmp/accel-dn-{}.sock", std::process::id());
    let _ = std::fs::remove_file(&sock);
    let (a, b) = two_cpus();
    let short = env_num("ACCEL_DPDK_NET_SHORT", 1000).to_string();
    let (a, b) = (a.to_string(), b.to_string());
    let mut server = Kid::spawn(
        "memif_server",
        &[
            ("ACCEL_MEMIF_SOCK", &sock),
            ("ACCEL_PIN", &a),
            ("ACCEL_DPDK_NET_SHORT", &short),
        ],
    );
    server.wait_for("READY", Duration::from_secs(30));
    let mut client = Kid::spawn(
        "memif_client",
        &[
            ("ACCEL_MEMIF_SOCK", &sock),
            ("ACCEL_PIN", &b),
            ("ACCEL_DPDK_NET_SHORT", &short),
        ],
    );
    client.finish(Duration::from_secs(200));
    server.finish(Duration::from_secs(30));
    let _ = std::fs::remove_file(&sock);
}

/// Opens `net_memif0` as `role` on the socket the parent named.
fn memif_device(role: &str) -> (Eal, DpdkDevice) {
    pin_from_env();
    let vdev = format!("net_memif0,role={role},socket={}", env("ACCEL_MEMIF_SOCK"));
    let eal = Eal::init(&eal_args(&vdev)).expect("EAL with net_memif0");
    let dev = DpdkDevice::open(&eal, "net_memif0", DpdkConfig::default()).expect("open net_memif0");
    assert_eq!(
        dev.rx_interrupt_fd(),
        None,
        "memif has no Rx interrupt in DPDK 22.11"
    );
    (eal, dev)
}

fn memif_server() {
    let (_eal, dev) = memif_device("server");
    let mut drv = Driver::new(iface_config(MEMIF_SERVER, dev.mac()), TcpConfig::default(), dev);
    assert_eq!(drv.wait, Wait::Backoff);
    let mut echo = EchoServer::new(&mut drv.stack.iface, ECHO_PORT);
    println!("READY");
    let expect = 1 + env_num("ACCEL_DPDK_NET_SHORT", 1000) as usize;
    let mut done: Option<Clock> = None;
    let result = drv.run("memif echo server", Duration::from_secs(180), |i, n| {
        let worked = echo.step(i, n);
        if !echo.errors.is_empty() {
            return ControlFlow::Break(());
        }
        // Once all is echoed, stay a while for the last FINs' ACKs.
        if echo.finished >= expect
            && done.get_or_insert_with(Clock::now).elapsed() > Duration::from_millis(500)
        {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(worked)
    });
    println!(
        "server: accepted {}, finished {}, echoed {} B; loop {:?}; {:?}; {:?}",
        echo.accepted,
        echo.finished,
        echo.bytes,
        drv.stats,
        drv.stack.device.stats(),
        drv.stack.iface.stats()
    );
    result.unwrap();
    assert!(echo.errors.is_empty(), "{:?}", echo.errors);
    assert_eq!((echo.accepted, echo.finished), (expect, expect));
}

fn memif_client() {
    let (_eal, dev) = memif_device("client");
    let end = Clock::now() + Duration::from_secs(10);
    while !dev.link().is_ok_and(|l| l.up) {
        assert!(Clock::now() < end, "the memif link did not come up within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut drv = Driver::new(iface_config(MEMIF_CLIENT, dev.mac()), TcpConfig::default(), dev);
    let server = SocketAddrV4::new(MEMIF_SERVER, ECHO_PORT);

    // The stream, its connect retried until the server answers.
    let total = env_num("ACCEL_DPDK_NET_MB", 1024) << 20;
    let mut attempt = 0;
    let mut client = loop {
        attempt += 1;
        let now = drv.now();
        let mut c = StreamClient::connect(&mut drv.stack.iface, server, total, now);
        let _ = drv.run("connect", Duration::from_secs(5), |i, n| {
            let worked = c.step(i, n);
            if c.connected.is_some() || c.done() {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(worked)
        });
        if c.connected.is_some() && c.error.is_none() {
            break c;
        }
        assert!(
            attempt < 10,
            "no connection to {server} after {attempt} attempts: {:?}",
            c.error
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let t0 = Clock::now();
    drv.run("memif stream", Duration::from_secs(150), |i, n| {
        let worked = client.step(i, n);
        if client.done() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(worked)
    })
    .unwrap();
    let elapsed = t0.elapsed();
    assert_eq!((client.error, client.mismatch), (None, None), "the echo failed");
    assert_eq!((client.sent, client.received), (total, total));
    println!(
        "memif stream: {} MiB each way echoed byte-exact in {elapsed:.2?} ({:.0} MiB/s each way), \
         connected at attempt {attempt}",
        total >> 20,
        (total >> 20) as f64 / elapsed.as_secs_f64()
    );

    // Short connections, one after the other.
    let n = env_num("ACCEL_DPDK_NET_SHORT", 1000) as usize;
    let mut ok = 0;
    let now = drv.now();
    let mut cur = StreamClient::connect(&mut drv.stack.iface, server, 64, now);
    let t0 = Clock::now();
    let result = drv.run("short connections", Duration::from_secs(60), |i, now| {
        let worked = cur.step(i, now);
        if !cur.done() {
            return ControlFlow::Continue(worked);
        }
        if cur.error.is_some() || cur.mismatch.is_some() || cur.received != 64 {
            return ControlFlow::Break(Err(format!(
                "connection {ok}: error {:?}, mismatch {:?}, received {}",
                cur.error, cur.mismatch, cur.received
            )));
        }
        ok += 1;
        if ok == n {
            return ControlFlow::Break(Ok(()));
        }
        cur = StreamClient::connect(i, server, 64, now);
        ControlFlow::Continue(true)
    });
    result.unwrap().unwrap();
    let elapsed = t0.elapsed();
    println!(
        "memif: {n} short connections (64 B each way) in {elapsed:.2?} ({:.0}/s); loop {:?}; {:?}",
        n as f64 / elapsed.as_secs_f64(),
        drv.stats,
        drv.stack.device.stats()
    );
    // Let the last ACK of the last FIN go out before the port closes.
    let _ = drv.run("linger", Duration::from_millis(200), |_, _| {
        ControlFlow::<(), bool>::Continue(false)
    });
}

// ----- af_packet on a veth pair --------------------------------------------

#[test]
fn af_packet_on_a_veth_pair_echoes_and_serves_http() {
    preflight(&["ip", "timeout", "python3", "curl", "sha256sum"]);
    let _guard = lock();
    let ns = namespace("afp");
    let root = format!("dnafp{}", std::process::id() % 100_000);
    let peer = format!("{root}p");
    run(
        "ip",
        &["link", "add", &root, "type", "veth", "peer", "name", &peer],
    );
    let _link = Link(root.clone());
    run("ip", &["link", "set", &peer, "netns", &ns.name]);
    ns.run(&["ip", "link", "set", "lo", "up"]);
    ns.run(&["ip", "addr", "add", "198.18.2.1/24", "dev", &peer]);
    ns.run(&["ip", "link", "set", &peer, "up"]);
    ns.run(&["python3", "-c", OFFLOADS_OFF, &peer]);
    // The root end has no address and forwards nothing; quiet its IPv6.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{root}/disable_ipv6"), "1");
    let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{root}/forwarding"), "0");
    run("ip", &["link", "set", &root, "up"]);
    let (a, b) = two_cpus();
    let (a, b) = (a.to_string(), b.to_string());
    let mut kid = Kid::spawn(
        "afpacket",
        &[
            ("ACCEL_TEST_NETNS", &ns.name),
            ("ACCEL_TEST_IFACE", &root),
            ("ACCEL_PIN", &a),
            ("ACCEL_OTHER_CPU", &b),
        ],
    );
    kid.finish(Duration::from_secs(200));
}

fn afpacket() {
    pin_from_env();
    let iface = env("ACCEL_TEST_IFACE");
    let eal =
        Eal::init(&eal_args(&format!("net_af_packet0,iface={iface}"))).expect("EAL with net_af_packet0");
    let config = DpdkConfig {
        promiscuous: true,
        ..DpdkConfig::default()
    };
    let dev = DpdkDevice::open(&eal, "net_af_packet0", config).expect("open net_af_packet0");
    let topo = ChildTopo::new(2, &iface);
    // Our own address, not the root end's: the root kernel sees our frames
    // as another host's and leaves them alone.
    let mac = EthernetAddress([0x02, 0xac, 0, 0, 2, 2]);
    let mut drv = Driver::new(iface_config(topo.stack_ip, mac), TcpConfig::default(), dev);
    assert_eq!(
        drv.wait,
        Wait::Backoff,
        "af_packet has no Rx interrupt in DPDK 22.11"
    );
    let total = env_num("ACCEL_DPDK_NET_AFP_MB", 64) << 20;
    let cpu = std::env::var("ACCEL_OTHER_CPU").ok().and_then(|c| c.parse().ok());
    let line = echo_and_curl(&mut drv, &topo, total, cpu);
    println!(
        "af_packet: Python echo through the stack: {line}; loop {:?}; {:?}; {:?}",
        drv.stats,
        drv.stack.device.stats(),
        drv.stack.device.counters()
    );
}

// ----- net_tap against the kernel ------------------------------------------

#[test]
fn net_tap_serves_curl_and_echoes_sleeping_on_the_rx_interrupt() {
    preflight(&["ip", "timeout", "python3", "curl", "sha256sum"]);
    let _guard = lock();
    let ns = namespace("tap");
    let iface = format!("dntap{}", std::process::id() % 100_000);
    let (a, b) = two_cpus();
    let (a, b) = (a.to_string(), b.to_string());
    let mut kid = Kid::spawn(
        "tap",
        &[
            ("ACCEL_TEST_NETNS", &ns.name),
            ("ACCEL_TEST_IFACE", &iface),
            ("ACCEL_PIN", &a),
            ("ACCEL_OTHER_CPU", &b),
        ],
    );
    kid.finish(Duration::from_secs(200));
}

/// Opens `net_tap0` on interface `iface` and moves the kernel end into the
/// parent's namespace at 198.18.`x`.1/24.
fn tap_device(x: u8, iface: &str) -> (Eal, DpdkDevice, ChildTopo) {
    let eal = Eal::init(&eal_args(&format!("net_tap0,iface={iface}"))).expect("EAL with net_tap0");
    let dev = DpdkDevice::open(&eal, "net_tap0", DpdkConfig::default()).expect("open net_tap0");
    let topo = ChildTopo::new(x, iface);
    run("ip", &["link", "set", "dev", iface, "netns", &topo.ns.name]);
    topo.ns.run(&["ip", "link", "set", "lo", "up"]);
    topo.ns.run(&[
        "ip",
        "addr",
        "add",
        &format!("{}/24", topo.kernel_ip),
        "dev",
        iface,
    ]);
    topo.ns.run(&["ip", "link", "set", iface, "up"]);
    (eal, dev, topo)
}

fn tap() {
    pin_from_env();
    let iface = env("ACCEL_TEST_IFACE");
    let (_eal, dev, topo) = tap_device(3, &iface);
    let mut drv = Driver::new(iface_config(topo.stack_ip, dev.mac()), TcpConfig::default(), dev);
    assert!(
        matches!(drv.wait, Wait::Interrupt(_)),
        "net_tap has an Rx interrupt descriptor"
    );
    let total = env_num("ACCEL_DPDK_NET_TAP_MB", 256) << 20;
    let cpu = std::env::var("ACCEL_OTHER_CPU").ok().and_then(|c| c.parse().ok());
    let line = echo_and_curl(&mut drv, &topo, total, cpu);
    println!(
        "net_tap: Python echo through the stack: {line}; loop {:?}; {:?}; {:?}",
        drv.stats,
        drv.stack.device.stats(),
        drv.stack.device.counters()
    );
    assert!(
        drv.stats.woken > 0,
        "the Rx interrupt never woke the loop: {:?}",
        drv.stats
    );
}

// ----- idle CPU --------------------------------------------------------------

#[test]
fn an_idle_stack_sleeps_on_net_tap_and_backs_off_on_memif() {
    preflight(&["ip"]);
    let _guard = lock();
    let ns = namespace("idle");
    let iface = format!("dnidl{}", std::process::id() % 100_000);
    let sock = format!("/tmp/accel-dn-idle-{}.sock", std::process::id());
    let _ = std::fs::remove_file(&sock);
    let mut tap = Kid::spawn(
        "idle_tap",
        &[("ACCEL_TEST_NETNS", &ns.name), ("ACCEL_TEST_IFACE", &iface)],
    );
    let mut memif = Kid::spawn("idle_memif", &[("ACCEL_MEMIF_SOCK", &sock)]);
    let tap_out = tap.finish(Duration::from_secs(60));
    let memif_out = memif.finish(Duration::from_secs(60));
    let _ = std::fs::remove_file(&sock);
    let pct = |out: &str| -> f64 {
        let value = out.lines().find_map(|l| l.split("idle_cpu_pct ").nth(1));
        let value = value
            .expect("an idle_cpu_pct line")
            .split_whitespace()
            .nth(1)
            .unwrap();
        value.parse().unwrap()
    };
    let (tap_pct, memif_pct) = (pct(&tap_out), pct(&memif_out));
    println!("idle CPU: net_tap {tap_pct:.3} %, net_memif {memif_pct:.3} %");
    assert!(
        tap_pct < 2.0,
        "an idle stack on net_tap used {tap_pct:.2} % of a CPU"
    );
    assert!(
        memif_pct < 25.0,
        "an idle stack on memif used {memif_pct:.2} % of a CPU"
    );
}

/// A stack with a listening echo server, idle for `ACCEL_DPDK_NET_IDLE_S`
/// seconds; prints `idle_cpu_pct <kind> <percent of one CPU>`.
fn idle(kind: &str) {
    let (_eal, dev, topo) = match kind {
        "tap" => {
            let (eal, dev, topo) = tap_device(4, &env("ACCEL_TEST_IFACE"));
            (eal, dev, Some(topo))
        }
        _ => {
            let (eal, dev) = memif_device("server");
            (eal, dev, None)
        }
    };
    let mut drv = Driver::new(
        iface_config(Ipv4Addr::new(198, 18, 4, 2), dev.mac()),
        TcpConfig::default(),
        dev,
    );
    let mut echo = EchoServer::new(&mut drv.stack.iface, ECHO_PORT);
    let secs = Duration::from_secs(env_num("ACCEL_DPDK_NET_IDLE_S", 3));
    let settle = Clock::now();
    let _ = drv.run("settle", Duration::from_millis(300), |i, n| {
        if settle.elapsed() >= Duration::from_millis(200) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(echo.step(i, n))
    });
    let (cpu0, t0, polls0) = (process_cpu(), Clock::now(), drv.stats.polls);
    drv.run("idle", secs + Duration::from_secs(5), |i, n| {
        if t0.elapsed() >= secs {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(echo.step(i, n))
    })
    .unwrap();
    let (cpu, wall) = (process_cpu() - cpu0, t0.elapsed());
    let pct = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
    println!(
        "idle_cpu_pct {kind} {pct:.3} ({cpu:?} CPU in {wall:.2?}; {} polls; {:?}; wait {:?})",
        drv.stats.polls - polls0,
        drv.stats,
        drv.wait
    );
    drop((drv, topo));
}
