//! The stack against the Linux kernel's own TCP/IP, in real time, over a
//! TAP interface whose kernel end lives in a network namespace that each
//! test creates and deletes (198.18.X.1 the kernel, 198.18.X.2 the stack,
//! a different X per test so the tests can run in parallel). The kernel's
//! side runs real programs (curl, ping, Python sockets) under `timeout`;
//! the stack's side runs state machines stepped by a real-time driver.
//!
//! - curl fetches from the stack's HTTP server: 1 MiB checked by SHA-256,
//!   several fetches at once on separate connections, keep-alive, HTTP/1.0
//!   and a 404;
//! - a Python client streams 1 GiB (`ACCEL_INTEROP_MB`, in MiB) through the
//!   stack's echo server and checks every byte; then a lossy run, through
//!   netem when the kernel has it, else (saying so) through the stack's own
//!   fault injector;
//! - the stack streams 1 GiB to a Python echo server and checks the echo;
//! - ping, ICMP port unreachable, RST for a closed port, UDP echo, resets
//!   both ways;
//! - the stack's receiver stalls (its window closes) and catches up;
//! - a capture through `PcapWriter` that tshark must read cleanly.
//!
//! Needs root and `ip`, `timeout`, `taskset`, `curl`, `python3`, `ping`,
//! `tshark`, `sha256sum` (scripts/install-deps installs them); without them
//! the tests fail and say what is missing. The bulk tests take a lock so
//! that their throughput is measured alone, and pin the stack's thread and
//! the kernel-side program to different CPUs. `ACCEL_INTEROP_KEEP=1` keeps
//! each test's scratch directory (program output, captures).
//!
//! The last three tests each caught a bug of the stack (since fixed): full
//! segments overflowing the MTU once timestamps took option space, a zero
//! window never probed, and a window below one MSS never used.

#[path = "interop/apps.rs"]
mod apps;
#[path = "interop/driver.rs"]
mod driver;
#[path = "interop/harness.rs"]
mod harness;
#[path = "interop/netns.rs"]
mod netns;
#[path = "interop/scripts.rs"]
mod scripts;

use std::cell::Cell;
use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddrV4;
use std::ops::ControlFlow;
use std::time::{Duration, Instant as Clock};

use accel_stack::phy::fault::{FaultConfig, FaultInjector};
use accel_stack::phy::pcap::PcapWriter;
use accel_stack::phy::Device;
use accel_stack::tcp::TcpConfig;
use accel_stack::Instant;

use apps::{Aborter, EchoServer, HttpServer, Pattern, StreamClient, SEED};
use driver::{iface_config, Driver};
use harness::{
    bulk_bytes, bulk_lock, check_body, check_stalled_reader, curl, mib_per_s, pin_for_bulk, run_until_exit,
    stalled_reader, start_echo_server, try_run_until_exit, tshark_count,
};
use netns::{find_in_path, preflight, sha256_of_bytes, sha256_of_file, Proc, Topo};

#[test]
fn curl_fetches_from_the_stacks_http_server() {
    preflight(&["ip", "timeout", "curl", "sha256sum", "python3"]);
    let (topo, tap) = Topo::new(101, "http");
    let mut drv = Driver::new(iface_config(topo.stack_ip), TcpConfig::default(), tap);
    let mut server = HttpServer::new(&mut drv.stack.iface, 8080);
    let pattern = Pattern::new();
    let url = |n: &str| format!("http://{}:8080/{n}", topo.stack_ip);
    let out = |name: &str| topo.file(name).to_string_lossy().into_owned();
    let limit = Duration::from_secs(60);

    // One megabyte, checked by SHA-256.
    let mut big = curl(&topo, "curl-1m", &["--fail"], &[(url("1048576"), out("1m"))]);
    run_until_exit(
        &mut drv,
        "1 MiB fetch",
        limit,
        &mut [&mut big],
        |i, n| server.step(i, n),
        || true,
    );
    big.expect_success();
    check_body(&pattern, &topo.file("1m"), 1 << 20);
    println!("curl GET /1048576: {}", big.stdout().trim());

    // Several at once, each on its own connection.
    let sizes = [0usize, 1, 1460, 1461, 65536, 100_000, 777_777];
    let mut many: Vec<Proc> = sizes
        .iter()
        .map(|n| {
            curl(
                &topo,
                &format!("curl-{n}"),
                &["--fail"],
                &[(url(&n.to_string()), out(&format!("b{n}")))],
            )
        })
        .collect();
    let mut refs: Vec<&mut Proc> = many.iter_mut().collect();
    run_until_exit(
        &mut drv,
        "parallel fetches",
        limit,
        &mut refs,
        |i, n| server.step(i, n),
        || true,
    );
    for (p, n) in many.iter().zip(sizes) {
        p.expect_success();
        check_body(&pattern, &topo.file(&format!("b{n}")), n);
    }
    assert_eq!(server.accepted, 1 + sizes.len(), "one connection per curl");

    // Keep-alive: three transfers, one connection.
    let before = server.accepted;
    let urls: Vec<(String, String)> = [5000usize, 300_000, 17]
        .iter()
        .map(|n| (url(&n.to_string()), out(&format!("k{n}"))))
        .collect();
    let mut ka = curl(&topo, "curl-keepalive", &["--fail"], &urls);
    run_until_exit(
        &mut drv,
        "keep-alive fetches",
        limit,
        &mut [&mut ka],
        |i, n| server.step(i, n),
        || true,
    );
    ka.expect_success();
    for n in [5000usize, 300_000, 17] {
        check_body(&pattern, &topo.file(&format!("k{n}")), n);
    }
    let connects: Vec<String> = ka
        .stdout()
        .lines()
        .map(|l| l.split_whitespace().last().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        connects,
        ["1", "0", "0"],
        "curl reused its connection: {}",
        ka.report()
    );
    assert_eq!(server.accepted, before + 1);

    // HTTP/1.0 (the server closes after the body) and a 404.
    let mut old = curl(
        &topo,
        "curl-http10",
        &["--fail", "-0"],
        &[(url("123456"), out("h10"))],
    );
    let mut missing = curl(&topo, "curl-404", &[], &[(url("nothing-here"), out("404"))]);
    run_until_exit(
        &mut drv,
        "HTTP/1.0 and 404",
        limit,
        &mut [&mut old, &mut missing],
        |i, n| server.step(i, n),
        || true,
    );
    old.expect_success();
    check_body(&pattern, &topo.file("h10"), 123_456);
    missing.expect_success();
    assert!(missing.stdout().starts_with("404 0 "), "{}", missing.report());

    // 64 transfers at once (one connection each), and beside them a reader
    // that stalls with a small receive buffer: the stack must probe the
    // zero window and go on when it opens.
    const WIDE: usize = 64;
    const EACH: usize = 100_000;
    let urls: Vec<(String, String)> = (0..WIDE)
        .map(|i| (url(&EACH.to_string()), out(&format!("p{i}"))))
        .collect();
    let mut wide = curl(
        &topo,
        "curl-parallel",
        &["--fail", "--parallel", "--parallel-max", "64", "--no-keepalive"],
        &urls,
    );
    let mut slow = stalled_reader(&topo, 8080, 1 << 20, "1.5");
    run_until_exit(
        &mut drv,
        "64 parallel fetches and a slow reader",
        limit,
        &mut [&mut wide, &mut slow],
        |i, n| server.step(i, n),
        || true,
    );
    wide.expect_success();
    slow.expect_success();
    let want = sha256_of_bytes(&pattern.bytes(EACH));
    for i in 0..WIDE {
        let path = topo.file(&format!("p{i}"));
        assert_eq!(sha256_of_file(&path), want, "parallel fetch {i}");
    }
    check_stalled_reader(&slow, &pattern, 1 << 20);

    // Every connection finishes: only the listener is left (TIME-WAIT
    // entries aside, which hold no socket).
    let drained = drv.run("draining", Duration::from_secs(10), |i, n| {
        let worked = server.step(i, n);
        if i.tcp.conns_len() == 0 && i.tcp.len() == 1 {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(worked)
    });
    let tcp = &drv.stack.iface.tcp;
    assert!(
        drained.is_ok(),
        "connections left: {} in the table, {} sockets, {} in TIME-WAIT",
        tcp.conns_len(),
        tcp.len(),
        tcp.time_wait_len()
    );
    assert!(server.errors.is_empty(), "server errors: {:?}", server.errors);
    let stats = drv.stack.iface.stats();
    assert_eq!(
        (stats.drop_tcp_checksum, stats.drop_ip_checksum),
        (0, 0),
        "{stats:?}"
    );
    println!(
        "http: {} connections, {} requests, {} in TIME-WAIT; closed connections' counters {:?}; loop {:?}",
        server.accepted,
        server.requests,
        drv.stack.iface.tcp.time_wait_len(),
        server.totals,
        drv.stats
    );
}

#[test]
fn python_client_streams_through_the_stacks_echo_server() {
    preflight(&["ip", "timeout", "python3", "taskset"]);
    let _bulk = bulk_lock();
    let total = bulk_bytes();
    let (topo, tap) = Topo::new(102, "echo");
    let mut drv = Driver::new(iface_config(topo.stack_ip), TcpConfig::default(), tap);
    let mut echo = EchoServer::new(&mut drv.stack.iface, 7777);
    let (_pinned, cpu) = pin_for_bulk();
    let t0 = Clock::now();
    let mut client = topo.spawn_on(
        cpu,
        "echo-client",
        Duration::from_secs(170),
        &[
            "python3",
            "-c",
            scripts::ECHO_CLIENT,
            &topo.stack_ip.to_string(),
            "7777",
            &total.to_string(),
            &SEED.to_string(),
        ],
    );
    run_until_exit(
        &mut drv,
        "echo of the Python client's stream",
        Duration::from_secs(180),
        &mut [&mut client],
        |i, n| echo.step(i, n),
        || true,
    );
    let elapsed = t0.elapsed();
    client.expect_success();
    assert!(
        client.stdout().starts_with(&format!("OK bytes={total} ")),
        "{}",
        client.report()
    );
    assert_eq!((echo.accepted, echo.finished, echo.bytes), (1, 1, total));
    assert!(echo.errors.is_empty(), "{:?}", echo.errors);
    println!(
        "kernel client -> stack echo -> kernel client: {} MiB each way in {elapsed:.2?} \
         ({:.1} MiB/s each way, as seen by the test); client says: {}",
        total >> 20,
        mib_per_s(total, elapsed),
        client.stdout().trim()
    );
    println!("loop {:?}\ninterface {:?}", drv.stats, drv.stack.iface.stats());
}

#[test]
fn stack_client_streams_to_a_python_echo_server() {
    preflight(&["ip", "timeout", "python3", "taskset"]);
    let _bulk = bulk_lock();
    let total = bulk_bytes();
    let (topo, tap) = Topo::new(103, "client");
    let (_pinned, cpu) = pin_for_bulk();
    let mut server = start_echo_server(&topo, 7000, cpu);
    let mut drv = Driver::new(iface_config(topo.stack_ip), TcpConfig::default(), tap);
    let remote = SocketAddrV4::new(topo.kernel_ip, 7000);
    let t0 = Clock::now();
    let now = drv.now();
    let mut client = StreamClient::connect(&mut drv.stack.iface, remote, total, now);
    let h = client.handle();
    let finished: Cell<Option<Clock>> = Cell::new(None);
    try_run_until_exit(
        &mut drv,
        "the stack's stream through the Python echo server",
        Duration::from_secs(180),
        &mut [&mut server],
        |i, n| {
            let worked = client.step(i, n);
            if finished.get().is_none() && client.done() {
                finished.set(Some(Clock::now()));
            }
            worked
        },
        || finished.get().is_some(),
    )
    .unwrap_or_else(|e| panic!("{e}\nconnection: {:?}", drv.stack.iface.tcp.socket(h)));
    let elapsed = finished.get().map_or(t0.elapsed(), |t| t - t0);
    server.expect_success();
    assert_eq!(client.error, None, "socket error");
    assert_eq!(client.mismatch, None, "the echo differs from what was sent");
    assert_eq!((client.sent, client.received), (total, total));
    assert!(
        server
            .stdout()
            .lines()
            .any(|l| l.starts_with(&format!("OK bytes={total} "))),
        "{}",
        server.report()
    );
    println!(
        "stack client -> kernel echo -> stack client: {} MiB each way in {elapsed:.2?} \
         ({:.1} MiB/s each way); server says: {}",
        total >> 20,
        mib_per_s(total, elapsed),
        server.stdout().lines().last().unwrap_or_default()
    );
    println!("loop {:?}\ninterface {:?}", drv.stats, drv.stack.iface.stats());
}

#[test]
fn python_client_streams_through_loss() {
    preflight(&["ip", "timeout", "python3", "taskset", "tc"]);
    let _bulk = bulk_lock();
    let total: u64 = std::env::var("ACCEL_INTEROP_LOSSY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64u64)
        << 20;
    let (topo, tap) = Topo::new(106, "lossy");
    let tc = topo.ns.try_run(&[
        "tc", "qdisc", "add", "dev", &topo.tap, "root", "netem", "loss", "1%",
    ]);
    let netem = tc.status.success();
    let loss = if netem {
        println!("netem: available; the kernel drops 1% of the frames it sends to the stack");
        0.0
    } else {
        println!(
            "netem: NOT AVAILABLE on this kernel (`tc qdisc add ... netem` said: {}); \
             instead the stack's FaultInjector drops 1% of the frames the stack receives \
             (the same direction)",
            String::from_utf8_lossy(&tc.stderr).trim()
        );
        0.01
    };
    let faults = FaultConfig {
        loss,
        seed: 0x10557,
        ..FaultConfig::default()
    };
    let dev = FaultInjector::new(tap, faults);
    let mut drv = Driver::new(iface_config(topo.stack_ip), TcpConfig::default(), dev);
    let mut echo = EchoServer::new(&mut drv.stack.iface, 7777);
    let (_pinned, cpu) = pin_for_bulk();
    let t0 = Clock::now();
    let mut client = topo.spawn_on(
        cpu,
        "lossy-echo-client",
        Duration::from_secs(110),
        &[
            "python3",
            "-c",
            scripts::ECHO_CLIENT,
            &topo.stack_ip.to_string(),
            "7777",
            &total.to_string(),
            &SEED.to_string(),
        ],
    );
    run_until_exit(
        &mut drv,
        "echo through loss",
        Duration::from_secs(120),
        &mut [&mut client],
        |i, n| echo.step(i, n),
        || true,
    );
    let elapsed = t0.elapsed();
    client.expect_success();
    assert!(
        client.stdout().starts_with(&format!("OK bytes={total} ")),
        "{}",
        client.report()
    );
    assert_eq!((echo.finished, echo.bytes), (1, total));
    let fs = drv.stack.device.fault_stats();
    if !netem {
        assert!(fs.dropped > 0, "1% loss dropped nothing: {fs:?}");
    }
    println!(
        "lossy echo ({}): {} MiB each way in {elapsed:.2?} ({:.1} MiB/s); faults {fs:?}",
        if netem { "netem 1%" } else { "FaultInjector 1%" },
        total >> 20,
        mib_per_s(total, elapsed)
    );
}

#[test]
fn stack_receiver_stalls_then_catches_up() {
    preflight(&["ip", "timeout", "python3"]);
    let total: u64 = 16 << 20;
    let stall = Duration::from_millis(1500);
    let (topo, tap) = Topo::new(107, "stall");
    let mut drv = Driver::new(iface_config(topo.stack_ip), TcpConfig::default(), tap);
    let mut echo = EchoServer::new(&mut drv.stack.iface, 7777);
    // Not a byte is read until `stall` after the connection arrives: the
    // stack's window closes, the kernel probes it, and the stack must
    // announce the window again when it reads.
    echo.stall_until = Some(Instant::from_nanos(u64::MAX));
    let t0 = Clock::now();
    let mut client = topo.spawn(
        "stalled-echo-client",
        Duration::from_secs(60),
        &[
            "python3",
            "-c",
            scripts::ECHO_CLIENT,
            &topo.stack_ip.to_string(),
            "7777",
            &total.to_string(),
            &SEED.to_string(),
        ],
    );
    let mut stalled_at = None;
    run_until_exit(
        &mut drv,
        "echo after a stall",
        Duration::from_secs(60),
        &mut [&mut client],
        |i, n| {
            let worked = echo.step(i, n);
            if echo.accepted == 1 && stalled_at.is_none() {
                stalled_at = Some(n);
                echo.stall_until = Some(n + stall);
            }
            worked
        },
        || true,
    );
    client.expect_success();
    assert_eq!((echo.finished, echo.bytes), (1, total));
    let elapsed = t0.elapsed();
    assert!(elapsed < stall + Duration::from_secs(20), "took {elapsed:?}");
    println!(
        "stalled echo: {} MiB each way in {elapsed:.2?}, {stall:?} of it stalled; client says: {}",
        total >> 20,
        client.stdout().trim()
    );
}

#[test]
fn stack_answers_ping_udp_closed_ports_and_resets() {
    preflight(&["ip", "timeout", "python3", "curl"]);
    let (topo, tap) = Topo::new(104, "probe");
    let mut drv = Driver::new(iface_config(topo.stack_ip), TcpConfig::default(), tap);
    let iface = &mut drv.stack.iface;
    let udp = iface.udp_socket();
    iface
        .udp_bind(udp, SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 7))
        .expect("bind UDP 7");
    let mut echo = EchoServer::new(iface, 7777);
    let mut aborter = Aborter::new(iface, 5555);
    let ip = topo.stack_ip.to_string();
    let has_ping = find_in_path("ping").is_some();
    let mut procs = Vec::new();
    if has_ping {
        procs.push(topo.spawn(
            "ping",
            Duration::from_secs(20),
            &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", &ip],
        ));
    } else {
        println!("ping: NOT INSTALLED; only the UDP and TCP probes run (run scripts/install-deps)");
    }
    procs.push(topo.spawn(
        "probes",
        Duration::from_secs(30),
        &["python3", "-c", scripts::PROBES, &ip],
    ));
    procs.push(topo.spawn(
        "curl-refused",
        Duration::from_secs(20),
        &["curl", "-sS", "--max-time", "5", &format!("http://{ip}:9/")],
    ));
    let mut echoed = 0;
    let mut buf = [0u8; 2048];
    let mut refs: Vec<&mut Proc> = procs.iter_mut().collect();
    run_until_exit(
        &mut drv,
        "probes",
        Duration::from_secs(40),
        &mut refs,
        |iface, now| {
            let mut worked = echo.step(iface, now) | aborter.step(iface, now);
            while let Some(Ok((n, from, _))) = iface.udp_mut(udp).map(|s| s.recv_from(&mut buf)) {
                iface.udp_send_to(udp, &buf[..n], Some(from)).expect("UDP echo");
                echoed += 1;
                worked = true;
            }
            worked
        },
        || true,
    );
    let curl = procs.pop().expect("curl");
    let probes = procs.pop().expect("probes");
    probes.expect_success();
    println!("{}", probes.stdout().trim());
    assert!(echoed >= 1, "no UDP datagram reached port 7");
    assert_eq!(
        curl.status().code(),
        Some(7),
        "curl to a closed port: {}",
        curl.report()
    );
    let why = curl.stderr();
    assert!(
        why.contains("Connection refused") || why.contains("Couldn't connect"),
        "curl to a closed port: {}",
        curl.report()
    );
    assert!(
        curl.elapsed < Duration::from_secs(3),
        "refusal took {:?}: {}",
        curl.elapsed,
        curl.report()
    );
    println!("curl to port 9: {} ({:?})", curl.stderr().trim(), curl.elapsed);
    let stats = drv.stack.iface.stats();
    if let Some(ping) = procs.pop() {
        ping.expect_success();
        assert!(ping.stdout().contains("3 received"), "{}", ping.report());
        assert!(stats.icmp_echo_replies >= 3, "{stats:?}");
        let summary = ping.stdout();
        println!("{}", summary.lines().last().unwrap_or_default());
    }
    assert!(stats.drop_tcp_no_socket >= 2, "RSTs for closed ports: {stats:?}");
    assert!(stats.drop_udp_no_socket >= 1, "port unreachable: {stats:?}");
    // The kernel's reset ended the echo connection; the stack's ended the
    // other: no connection is left.
    assert_eq!((echo.accepted, aborter.aborted), (1, 1));
    assert!(
        echo.errors.iter().any(|e| e.contains("ECONNRESET")),
        "the echo server did not see the reset: {:?}",
        echo.errors
    );
    let tcp = &drv.stack.iface.tcp;
    assert_eq!(
        (tcp.conns_len(), tcp.len(), tcp.time_wait_len()),
        (0, 2, 0),
        "connections, sockets (the two listeners) and TIME-WAIT entries left"
    );
}

/// Fetches `GET /<size>` with curl from the stack's HTTP server, capturing
/// every frame through `PcapWriter`; returns the capture and how many
/// frames went into it.
fn captured_fetch(x: u8, label: &str, size: usize) -> (Topo, std::path::PathBuf, u64) {
    let (topo, tap) = Topo::new(x, label);
    let path = topo.file("capture.pcap");
    let file = File::create(&path).expect("create the capture");
    let dev = PcapWriter::new(tap, BufWriter::new(file));
    let mut drv = Driver::new(iface_config(topo.stack_ip), TcpConfig::default(), dev);
    let mut server = HttpServer::new(&mut drv.stack.iface, 8080);
    let body = topo.file("body").to_string_lossy().into_owned();
    let url = format!("http://{}:8080/{size}", topo.stack_ip);
    let mut fetch = curl(&topo, "curl-pcap", &["--fail"], &[(url, body)]);
    run_until_exit(
        &mut drv,
        "captured fetch",
        Duration::from_secs(60),
        &mut [&mut fetch],
        |i, n| server.step(i, n),
        || true,
    );
    fetch.expect_success();
    check_body(&Pattern::new(), &topo.file("body"), size);
    // Let the closing handshake finish so it is in the capture too.
    let end = drv.now() + Duration::from_millis(200);
    let _ = drv.run("close", Duration::from_secs(1), |i, n| {
        let worked = server.step(i, n);
        if n >= end {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(worked)
    });
    drv.stack.device.flush().expect("flush the capture");
    let stats = drv.stack.device.stats();
    (topo, path, stats.rx_frames + stats.tx_frames)
}

#[test]
fn pcap_capture_reads_back_in_tshark() {
    preflight(&["ip", "timeout", "curl", "tshark"]);
    let (_topo, path, frames) = captured_fetch(105, "pcap", 1 << 20);
    let path_s = path.to_string_lossy().into_owned();
    let out = std::process::Command::new("tshark")
        .args(["-r", &path_s, "-q", "-z", "io,stat,0", "-z", "io,stat,0,tcp"])
        .output()
        .expect("run tshark");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("tshark on {frames} captured frames:\n{text}");
    assert!(out.status.success(), "tshark failed: {text}");
    let lower = text.to_lowercase();
    assert!(!lower.contains("error") && !lower.contains("malformed"), "{text}");
    let tcp_frames = tshark_count(&path_s, "tcp");
    assert!(tcp_frames > 700, "only {tcp_frames} TCP frames for a 1 MiB fetch");
    let malformed = tshark_count(&path_s, "_ws.malformed || _ws.expert.severity == error");
    assert_eq!(malformed, 0, "malformed or erroneous frames in the capture");
    println!("tshark counts {tcp_frames} TCP frames of {frames}");
}

// ----- regressions: each of these found a stack bug -----------------------

#[test]
fn full_segments_fit_the_mtu_with_timestamps() {
    preflight(&["ip", "timeout", "curl", "tshark"]);
    let (topo, path, _) = captured_fetch(108, "mtu", 256 * 1024);
    let path = path.to_string_lossy().into_owned();
    let stack = topo.stack_ip;
    let data = tshark_count(&path, &format!("ip.src == {stack} && tcp.len > 0"));
    let over = tshark_count(&path, &format!("ip.src == {stack} && ip.len > 1500"));
    let kernel_over = tshark_count(&path, &format!("ip.dst == {stack} && ip.len > 1500"));
    assert_eq!(kernel_over, 0, "the kernel keeps to the MTU");
    assert_eq!(
        over, 0,
        "{over} of the stack's {data} data segments are IP packets longer than the 1500-byte MTU \
         (1460 bytes of payload + 32 bytes of TCP header with timestamps + 20 of IP)"
    );
}

/// A stalled reader fetching 1 MiB from a stack with `tcp`; returns the
/// HTTP server's counters of the (closed) connection.
fn stalled_fetch(x: u8, label: &str, tcp: TcpConfig) -> accel_stack::tcp::TcpStats {
    preflight(&["ip", "timeout", "python3"]);
    let (topo, tap) = Topo::new(x, label);
    let mut drv = Driver::new(iface_config(topo.stack_ip), tcp, tap);
    let mut server = HttpServer::new(&mut drv.stack.iface, 8080);
    let mut reader = stalled_reader(&topo, 8080, 1 << 20, "2");
    run_until_exit(
        &mut drv,
        "stalled reader",
        Duration::from_secs(30),
        &mut [&mut reader],
        |i, n| server.step(i, n),
        || true,
    );
    // It completes, but only because Linux announces its window when the
    // reader wakes up; were that one segment lost, the connection would
    // hang (RFC 9293 §3.8.6.1: the sender MUST probe a closed window).
    check_stalled_reader(&reader, &Pattern::new(), 1 << 20);
    assert_eq!(server.closed, 1);
    server.totals
}

#[test]
fn a_zero_window_is_probed() {
    // An MSS of 1448, Linux's own with timestamps, so that the stack fills
    // the stalled reader's window to zero (see the next test for 1460).
    let tcp = TcpConfig {
        mss: 1448,
        ..TcpConfig::default()
    };
    let totals = stalled_fetch(110, "zerownd", tcp);
    assert!(
        totals.window_probes >= 1,
        "during the reader's 2 s stall, with data queued and the window closed, the stack sent no \
         zero-window probe: {totals:?}"
    );
}

#[test]
fn a_window_below_the_mss_is_filled_then_probed() {
    let totals = stalled_fetch(109, "subwnd", TcpConfig::default());
    assert!(
        totals.window_probes >= 1,
        "during the reader's 2 s stall the stack neither sent the last bytes its window allowed nor \
         probed: {totals:?}"
    );
}
