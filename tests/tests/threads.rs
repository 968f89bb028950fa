//! Programs with several threads, accelerated over `--tap` (issue 11),
//! each against the kernel baseline (the same server in a namespace on a
//! veth), with kernel clients in the clients' namespace:
//!
//! - a thread-per-connection echo server (Python's
//!   `socketserver.ThreadingTCPServer`, `tests/programs/threaded_echo.py`):
//!   10 connections × 400 round trips and 200 connections × 20 round trips
//!   of 64 bytes, every byte checked; req/s and p99 printed for both;
//! - memcached with `-t 1`, `-t 2` and `-t 4` worker threads: 10,000 keys
//!   stored and read back over 4 connections at once, every value checked;
//! - redis with `io-threads 2` and `io-threads-do-reads yes`: 10,000 keys
//!   stored and read back, and `redis-benchmark -c 50`.
//!
//! Ports: 17101 (echo), 17102 (memcached), 17103 (redis).

use accel_tests::clients::{dataset, echo_rr, memcached_set_get, redis_set_get, Item};
use accel_tests::net::{measured, repo, root_or_skip, wait_for_port, wait_until, Leg, Netns, Proc, TapNet};
use accel_tests::{python, Scratch};
use std::net::SocketAddr;
use std::time::Duration;

const ECHO_PORT: u16 = 17101;
const MEMCACHED_PORT: u16 = 17102;
const REDIS_PORT: u16 = 17103;
const LIMIT: Duration = Duration::from_secs(300);

/// Stores and fetches `items` over `conns` connections at once (each its
/// share of the keys); the requests per second of the whole.
fn memcached_parallel(ns: &Netns, addr: SocketAddr, items: &[Item], conns: usize) -> f64 {
    ns.enter(|| {
        let start = std::time::Instant::now();
        let requests: u64 = std::thread::scope(|s| {
            let share = items.len().div_ceil(conns);
            let runs: Vec<_> = items
                .chunks(share)
                .map(|part| s.spawn(move || memcached_set_get(addr, part).requests))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).sum()
        });
        requests as f64 / start.elapsed().as_secs_f64()
    })
}

#[test]
fn a_thread_per_connection_server_serves_10_and_200_connections() {
    if !root_or_skip("a_thread_per_connection_server_serves_10_and_200_connections") {
        return;
    }
    let test = "threaded_echo";
    let scratch = Scratch::new("threaded-echo");
    let mut net = TapNet::new("te");
    let addr: SocketAddr = format!("{}:{ECHO_PORT}", net.server_ip()).parse().unwrap();
    let script = repo("tests/programs/threaded_echo.py");
    let python = python().to_str().unwrap().to_owned();
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let place = net.place(leg);
        let mut server = Proc::spawn(
            &dir,
            "echo",
            &place,
            LIMIT,
            &[
                &python,
                "-u",
                script.to_str().unwrap(),
                "0.0.0.0",
                &ECHO_PORT.to_string(),
            ],
        );
        assert!(
            wait_until(Duration::from_secs(30), || server.stdout().contains("echo ready")),
            "the echo server did not start: {}",
            server.report()
        );
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        for (conns, rounds) in [(10, 400), (200, 20)] {
            let rt = net.clients.enter(|| echo_rr(addr, conns, rounds, 64));
            assert_eq!(rt.count, (conns * rounds) as u64);
            let what = format!("{}_{conns}c", leg.name());
            println!(
                "{test} {what}: {} round trips in {:.2?}, p50 {:?}, p99 {:?}",
                rt.count,
                rt.elapsed,
                rt.quantile(0.5),
                rt.quantile(0.99)
            );
            measured(test, &format!("{what}_rps"), rt.rps(), "req/s");
            measured(
                test,
                &format!("{what}_p99_us"),
                rt.quantile(0.99).as_secs_f64() * 1e6,
                "us",
            );
        }
        assert!(!server.exited(), "the echo server died: {}", server.report());
        drop(server);
        net.clear();
    }
}

#[test]
fn memcached_with_1_2_and_4_threads_stores_and_returns_every_key() {
    if !root_or_skip("memcached_with_1_2_and_4_threads_stores_and_returns_every_key") {
        return;
    }
    let test = "memcached_threads";
    let scratch = Scratch::new("memcached-threads");
    let mut net = TapNet::new("mt");
    let addr: SocketAddr = format!("{}:{MEMCACHED_PORT}", net.server_ip()).parse().unwrap();
    let port = MEMCACHED_PORT.to_string();
    for threads in ["1", "2", "4"] {
        let items = dataset(10_000, 64 << 10, 11 + threads.len() as u64);
        for leg in [Leg::Kernel, Leg::Accel] {
            let dir = scratch.join(&format!("{}-{threads}", leg.name()));
            std::fs::create_dir_all(&dir).unwrap();
            let place = net.place(leg);
            let mut server = Proc::spawn(
                &dir,
                "memcached",
                &place,
                LIMIT,
                &[
                    "memcached",
                    "-t",
                    threads,
                    "-p",
                    &port,
                    "-U",
                    "0",
                    "-l",
                    "198.18.0.2",
                    "-m",
                    "1024",
                    "-u",
                    "root",
                ],
            );
            wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
            let rps = memcached_parallel(&net.clients, addr, &items, 4);
            measured(test, &format!("{}_t{threads}_rps", leg.name()), rps, "req/s");
            assert!(!server.exited(), "memcached died: {}", server.report());
            drop(server);
            net.clear();
        }
    }
}

#[test]
fn redis_with_io_threads_stores_and_returns_every_key() {
    if !root_or_skip("redis_with_io_threads_stores_and_returns_every_key") {
        return;
    }
    let test = "redis_io_threads";
    let scratch = Scratch::new("redis-io-threads");
    let mut net = TapNet::new("ri");
    let addr: SocketAddr = format!("{}:{REDIS_PORT}", net.server_ip()).parse().unwrap();
    let items = dataset(10_000, 256 << 10, 23);
    let port = REDIS_PORT.to_string();
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let place = net.place(leg);
        let mut server = Proc::spawn(
            &dir,
            "redis-server",
            &place,
            LIMIT,
            &[
                "redis-server",
                "--port",
                &port,
                "--bind",
                "0.0.0.0",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--io-threads",
                "2",
                "--io-threads-do-reads",
                "yes",
                "--dir",
                dir.to_str().unwrap(),
            ],
        );
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        let t = net.clients.enter(|| redis_set_get(addr, &items));
        measured(test, &format!("{}_setget_rps", leg.name()), t.rps(), "req/s");
        let mut bench = Proc::spawn(
            &dir,
            "redis-benchmark",
            &accel_tests::net::Place::kernel(&net.clients),
            Duration::from_secs(120),
            &[
                "redis-benchmark",
                "-h",
                "198.18.0.2",
                "-p",
                &port,
                "-c",
                "50",
                "-t",
                "get,set",
                "-n",
                "100000",
                "--csv",
            ],
        );
        bench.finish_against(Duration::from_secs(130), &mut server);
        let out = bench.stdout();
        assert!(
            !out.contains("rror") && out.contains("\"GET\""),
            "redis-benchmark: {}",
            bench.report()
        );
        for row in out
            .lines()
            .filter(|l| l.starts_with("\"SET\"") || l.starts_with("\"GET\""))
        {
            let mut f = row.split(',');
            let name = f.next().unwrap_or_default().trim_matches('"').to_lowercase();
            let rps: f64 = f
                .next()
                .unwrap_or_default()
                .trim_matches('"')
                .parse()
                .unwrap_or(0.0);
            assert!(rps > 0.0, "{row}");
            measured(
                test,
                &format!("{}_benchmark_{name}_rps", leg.name()),
                rps,
                "req/s",
            );
        }
        assert!(!server.exited(), "redis-server died: {}", server.report());
        drop(server);
        net.clear();
    }
}
