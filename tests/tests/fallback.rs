//! When DPDK cannot start (here: a vdev no driver knows), a server under
//! the shim still serves, on kernel sockets, after one line on stderr
//! saying why; with `ACCEL_FALLBACK=fail` it exits with status 1 after that
//! line instead. redis-server listens on the wildcard (so the shim tries to
//! accelerate it) inside a namespace of its own, and redis-cli asks it over
//! that namespace's loopback.
//!
//! Ports: 16411 and 16412.

use accel_tests::net::{root_or_skip, unique, wait_for_port, Netns, Place, Proc};
use accel_tests::Scratch;
use std::path::Path;
use std::time::Duration;

const BAD_ARGS: &str = "--no-huge -m 256 --no-shconf --no-pci --vdev=net_nosuchdriver0";

/// The placement: under `scripts/accel` with the bad device, the shim's
/// log on stderr at its default level.
fn place(ns: &Netns, fallback: &str) -> Place {
    Place::accel(Some(ns), &[])
        .with_env("ACCEL_DPDK_ARGS", BAD_ARGS)
        .with_env("ACCEL_IP", "198.18.0.2/24")
        .with_env("ACCEL_LOG", "warn")
        .with_env("ACCEL_LOG_FILE", "")
        .with_env("ACCEL_FALLBACK", fallback)
}

fn redis(dir: &Path, port: u16) -> Vec<String> {
    let conf = dir.join("redis.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 0.0.0.0\nprotected-mode no\ndaemonize no\nsave \"\"\ndir {}\nlogfile \"\"\n",
            dir.display()
        ),
    )
    .unwrap();
    vec!["redis-server".into(), conf.to_str().unwrap().into()]
}

/// The shim's lines in `stderr` (DPDK's own `EAL:` lines aside).
fn shim_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("accel: ") || l.starts_with("accel["))
        .collect()
}

#[test]
fn a_bad_vdev_falls_back_to_kernel_sockets_with_one_line() {
    if !root_or_skip("a_bad_vdev_falls_back_to_kernel_sockets_with_one_line") {
        return;
    }
    let scratch = Scratch::new("fallback-kernel");
    let ns = Netns::new(&unique("fk"));
    let args = redis(scratch.path(), 16411);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Proc::spawn(
        scratch.path(),
        "redis-server",
        &place(&ns, "kernel"),
        Duration::from_secs(120),
        &args,
    );
    wait_for_port(
        &ns,
        "127.0.0.1:16411".parse().unwrap(),
        &mut server,
        Duration::from_secs(30),
    );
    let pong = ns.run(&["timeout", "10", "redis-cli", "-p", "16411", "PING"]);
    assert_eq!(String::from_utf8_lossy(&pong.stdout).trim(), "PONG");
    // The line comes when the shim first tries to start the stack; by the
    // time the server answers, it has.
    let stderr = server.stderr();
    let lines = shim_lines(&stderr);
    assert_eq!(
        lines.len(),
        1,
        "want one line saying why, got: {}",
        server.report()
    );
    assert!(
        lines[0].contains("net_nosuchdriver0") || lines[0].to_lowercase().contains("dpdk"),
        "the line should say why: {:?}",
        lines[0]
    );
    println!("fallback kernel: the line: {}", lines[0]);
    assert!(!server.exited(), "{}", server.report());
}

#[test]
fn a_bad_vdev_with_fallback_fail_exits_with_that_line() {
    if !root_or_skip("a_bad_vdev_with_fallback_fail_exits_with_that_line") {
        return;
    }
    let scratch = Scratch::new("fallback-fail");
    let ns = Netns::new(&unique("ff"));
    let args = redis(scratch.path(), 16412);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Proc::spawn(
        scratch.path(),
        "redis-server",
        &place(&ns, "fail"),
        Duration::from_secs(120),
        &args,
    );
    let status = server.wait(Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "want exit status 1: {}",
        server.report()
    );
    let stderr = server.stderr();
    let lines = shim_lines(&stderr);
    assert_eq!(
        lines.len(),
        1,
        "want one line saying why, got: {}",
        server.report()
    );
    println!("fallback fail: the line: {}", lines[0]);
    let probe = ns.enter(|| {
        std::net::TcpStream::connect_timeout(&"127.0.0.1:16412".parse().unwrap(), Duration::from_secs(1))
    });
    assert!(probe.is_err(), "nothing serves after the exit");
}
