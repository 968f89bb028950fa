//! redis-server accelerated, against kernel clients and against an
//! accelerated redis-benchmark.
//!
//! `--tap`: redis-server runs under `scripts/accel --tap NS`; from inside
//! NS a RESP client (ours, in Rust) SETs 10,000 random keys with values of
//! 0 bytes to 1 MiB and GETs each back, checking every byte; redis-cli
//! checks DBSIZE and a SET/GET of its own; `redis-benchmark -t get,set -n
//! 100000` must finish with no error. The same runs first against a plain
//! redis-server in a namespace joined to NS by a veth (the kernel
//! baseline), and both legs print their figures.
//!
//! `--memif`: redis-server and redis-benchmark each under `scripts/accel
//! --memif`, after the same benchmark over kernel loopback as baseline.
//!
//! Ports: 16401 and 16402 (never 6379, where Debian's own redis listens).

use accel_tests::clients::{dataset, redis_set_get};
use accel_tests::net::{
    measured, root_or_skip, wait_for_port, wait_until, Leg, MemifNet, Netns, Place, Proc, TapNet,
};
use accel_tests::Scratch;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const TAP_PORT: u16 = 16401;
const MEMIF_PORT: u16 = 16402;
const LIMIT: Duration = Duration::from_secs(300);

/// Writes a configuration for a throwaway redis on `port` (all
/// interfaces, no persistence, files in `dir`) and returns its path.
fn config(dir: &Path, port: u16) -> String {
    let path = dir.join("redis.conf");
    std::fs::write(
        &path,
        format!(
            "port {port}\nbind 0.0.0.0\nprotected-mode no\ndaemonize no\nsave \"\"\nappendonly no\n\
             dir {}\nlogfile \"\"\ndatabases 1\n",
            dir.display()
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// The requests per second of each test in redis-benchmark's `--csv`
/// output, checking that it reported `tests` and no error.
fn benchmark_rps(bench: &Proc, tests: &[&str]) -> Vec<f64> {
    let out = bench.stdout();
    let err = bench.stderr();
    assert!(
        !out.contains("rror") && !err.contains("rror"),
        "redis-benchmark reported errors: {}",
        bench.report()
    );
    tests
        .iter()
        .map(|t| {
            let row = out
                .lines()
                .find(|l| l.starts_with(&format!("\"{t}\",")))
                .unwrap_or_else(|| panic!("no {t} row: {}", bench.report()));
            let rps: f64 = row.split(',').nth(1).unwrap().trim_matches('"').parse().unwrap();
            assert!(rps > 0.0, "{row}");
            rps
        })
        .collect()
}

fn redis_cli(ns: &Netns, args: &[&str]) -> String {
    let mut full = vec!["timeout", "30", "redis-cli", "-h", "198.18.0.2", "-p", "16401"];
    full.extend_from_slice(args);
    String::from_utf8(ns.run(&full).stdout).unwrap()
}

#[test]
fn redis_over_tap_serves_kernel_clients() {
    if !root_or_skip("redis_over_tap_serves_kernel_clients") {
        return;
    }
    let test = "redis_tap";
    let scratch = Scratch::new("redis-tap");
    let mut net = TapNet::new("rt");
    let addr: SocketAddr = format!("{}:{TAP_PORT}", net.server_ip()).parse().unwrap();
    let items = dataset(10_000, 1 << 20, 42);
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let conf = config(&dir, TAP_PORT);
        let place = net.place(leg);
        let mut server = Proc::spawn(&dir, "redis-server", &place, LIMIT, &["redis-server", &conf]);
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));

        let t = net.clients.enter(|| redis_set_get(addr, &items));
        println!(
            "{test} {}: SET+GET of {} keys ({} MB of values) verified in {:.2?}",
            leg.name(),
            items.len(),
            t.bytes / 1_000_000,
            t.elapsed
        );
        measured(test, &format!("{}_setget_rps", leg.name()), t.rps(), "req/s");
        measured(
            test,
            &format!("{}_setget_mb_per_s", leg.name()),
            t.mb_per_s(),
            "MB/s",
        );

        assert_eq!(redis_cli(&net.clients, &["DBSIZE"]).trim(), "10000");
        assert_eq!(
            redis_cli(&net.clients, &["SET", "cli-key", "from redis-cli"]).trim(),
            "OK"
        );
        assert_eq!(
            redis_cli(&net.clients, &["GET", "cli-key"]).trim(),
            "from redis-cli"
        );

        let client = Place::kernel(&net.clients);
        let mut bench = Proc::spawn(
            &dir,
            "redis-benchmark",
            &client,
            Duration::from_secs(120),
            &[
                "redis-benchmark",
                "-h",
                "198.18.0.2",
                "-p",
                "16401",
                "-t",
                "get,set",
                "-n",
                "100000",
                "--csv",
            ],
        );
        bench.finish_against(Duration::from_secs(130), &mut server);
        let rps = benchmark_rps(&bench, &["SET", "GET"]);
        measured(
            test,
            &format!("{}_benchmark_set_rps", leg.name()),
            rps[0],
            "req/s",
        );
        measured(
            test,
            &format!("{}_benchmark_get_rps", leg.name()),
            rps[1],
            "req/s",
        );
        assert!(!server.exited(), "redis-server died: {}", server.report());
        if place.accelerated() {
            println!("{test} {}: shim log:\n{}", leg.name(), server.accel_log());
        }
        drop(server);
        net.clear();
    }
}

#[test]
fn redis_and_redis_benchmark_both_over_memif() {
    if !root_or_skip("redis_and_redis_benchmark_both_over_memif") {
        return;
    }
    let test = "redis_memif";
    let scratch = Scratch::new("redis-memif");
    let port = MEMIF_PORT.to_string();

    // Baseline: the same two programs over kernel loopback, in a namespace
    // of their own.
    {
        let ns = Netns::new(&accel_tests::net::unique("rl"));
        let dir = scratch.join("kernel");
        std::fs::create_dir_all(&dir).unwrap();
        let conf = config(&dir, MEMIF_PORT);
        let place = Place::kernel(&ns);
        let mut server = Proc::spawn(&dir, "redis-server", &place, LIMIT, &["redis-server", &conf]);
        wait_for_port(
            &ns,
            format!("127.0.0.1:{port}").parse().unwrap(),
            &mut server,
            Duration::from_secs(30),
        );
        let mut bench = Proc::spawn(
            &dir,
            "redis-benchmark",
            &place,
            Duration::from_secs(120),
            &[
                "redis-benchmark",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "get,set",
                "-n",
                "100000",
                "--csv",
            ],
        );
        bench.finish_against(Duration::from_secs(130), &mut server);
        let rps = benchmark_rps(&bench, &["SET", "GET"]);
        measured(test, "kernel_loopback_benchmark_set_rps", rps[0], "req/s");
        measured(test, "kernel_loopback_benchmark_get_rps", rps[1], "req/s");
    }

    let dir = scratch.join("memif");
    std::fs::create_dir_all(&dir).unwrap();
    let net = MemifNet::new("rm", &dir);
    let conf = config(&dir, MEMIF_PORT);
    let mut server = Proc::spawn(
        &dir,
        "redis-server",
        &net.server(),
        LIMIT,
        &["redis-server", &conf],
    );
    // Only an accelerated client can reach the server: ask with redis-cli
    // (each try a new process on the memif) until it answers.
    let ip = net.server_ip();
    let mut tries = 0;
    let up = wait_until(Duration::from_secs(90), || {
        tries += 1;
        assert!(!server.exited(), "redis-server exited: {}", server.report());
        let mut ping = Proc::spawn(
            &dir,
            &format!("ping{tries}"),
            &net.client(),
            Duration::from_secs(15),
            &["redis-cli", "-h", ip, "-p", &port, "PING"],
        );
        ping.wait(Duration::from_secs(20)).is_some_and(|s| s.success()) && ping.stdout().trim() == "PONG"
    });
    assert!(
        up,
        "no PONG over memif within 90 s ({tries} tries): {}",
        server.report()
    );
    let mut bench = Proc::spawn(
        &dir,
        "redis-benchmark",
        &net.client(),
        Duration::from_secs(120),
        &[
            "redis-benchmark",
            "-h",
            ip,
            "-p",
            &port,
            "-t",
            "get,set",
            "-n",
            "100000",
            "--csv",
        ],
    );
    bench.finish_against(Duration::from_secs(130), &mut server);
    let rps = benchmark_rps(&bench, &["SET", "GET"]);
    measured(test, "accel_memif_benchmark_set_rps", rps[0], "req/s");
    measured(test, "accel_memif_benchmark_get_rps", rps[1], "req/s");
    assert!(!server.exited(), "redis-server died: {}", server.report());
}

/// Sends one RESP command on `s`.
fn resp(s: &mut std::net::TcpStream, args: &[&str]) {
    use std::io::Write;
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd += &format!("${}\r\n{a}\r\n", a.len());
    }
    s.write_all(cmd.as_bytes()).unwrap();
}

/// The reply line waiting on `s` (up to `limit`), or `None`.
fn reply(s: &mut std::net::TcpStream, limit: Duration) -> Option<String> {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    // A bulk string reply is two lines ("$3\r\nfoo\r\n").
    while got.iter().filter(|&&b| b == b'\n').count() < 2 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.first() != Some(&b'$') && got.contains(&b'\n') {
            break;
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Redis serves clients blocked on one list in the order they blocked
/// (issue 10): A sends `BRPOPLPUSH`, then B does, then C pushes one
/// element: A gets it. A and B are sent while redis is busy (`DEBUG
/// SLEEP`), so that one `epoll_wait` reports both, and in every other
/// round B's connection is made first (its socket is the older one), so
/// an order by socket rather than by arrival shows.
/// Each round uses new connections, each first answered a `PING`.
#[test]
fn redis_serves_blocked_clients_in_arrival_order() {
    if !root_or_skip("redis_serves_blocked_clients_in_arrival_order") {
        return;
    }
    let test = "redis_order";
    const ROUNDS: usize = 30;
    let scratch = Scratch::new("redis-order");
    let mut net = TapNet::new("ro");
    let addr: SocketAddr = format!("{}:{TAP_PORT}", net.server_ip()).parse().unwrap();
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let conf = config(&dir, TAP_PORT);
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text += "enable-debug-command yes\n";
        std::fs::write(&conf, text).unwrap();
        let place = net.place(leg);
        let mut server = Proc::spawn(&dir, "redis-server", &place, LIMIT, &["redis-server", &conf]);
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        let wrong = net.clients.enter(|| {
            let connect = || {
                let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
                s.set_nodelay(true).unwrap();
                s
            };
            let mut wrong = Vec::new();
            for round in 0..ROUNDS {
                let (src, a_dst, b_dst) = (format!("bl{round}"), format!("a{round}"), format!("b{round}"));
                // A's connection is made first in odd rounds, B's in even
                // ones: whatever order the server's sockets get, half the
                // rounds have the later sender on the older socket.
                let (mut a, mut b) = if round % 2 == 1 {
                    let a = connect();
                    (a, connect())
                } else {
                    let b = connect();
                    (connect(), b)
                };
                let mut c = connect();
                // Accepted and watched by redis before the test begins (a
                // command that is already there when redis accepts is
                // ready in the order of the accepts).
                for s in [&mut b, &mut a, &mut c] {
                    resp(s, &["PING"]);
                    assert_eq!(reply(s, Duration::from_secs(10)).as_deref(), Some("+PONG\r\n"));
                }
                // Redis is busy for 50 ms while A's command, then B's,
                // arrive: its next wait finds both ready.
                resp(&mut c, &["DEBUG", "SLEEP", "0.05"]);
                std::thread::sleep(Duration::from_millis(10));
                resp(&mut a, &["BRPOPLPUSH", &src, &a_dst, "0"]);
                resp(&mut b, &["BRPOPLPUSH", &src, &b_dst, "0"]);
                assert_eq!(reply(&mut c, Duration::from_secs(10)).as_deref(), Some("+OK\r\n"));
                // Both blocked before the push (redis answers C in turn).
                std::thread::sleep(Duration::from_millis(20));
                resp(&mut c, &["LPUSH", &src, "first"]);
                assert_eq!(reply(&mut c, Duration::from_secs(10)).as_deref(), Some(":1\r\n"));
                let to_a = reply(&mut a, Duration::from_secs(2));
                if to_a.as_deref() != Some("$5\r\nfirst\r\n") {
                    wrong.push(round);
                }
                // Release the other one (B, or A if B took the first).
                resp(&mut c, &["LPUSH", &src, "second"]);
                let _ = reply(&mut c, Duration::from_secs(10));
                let other = if to_a.is_some() { &mut b } else { &mut a };
                assert_eq!(
                    reply(other, Duration::from_secs(10)).as_deref(),
                    Some("$6\r\nsecond\r\n"),
                    "round {round}: the second client was not released"
                );
            }
            wrong
        });
        measured(
            test,
            &format!("{}_out_of_order_rounds", leg.name()),
            wrong.len() as f64,
            "rounds",
        );
        assert!(
            wrong.is_empty(),
            "{}: B was served before A in rounds {wrong:?} of {ROUNDS}: {}",
            leg.name(),
            server.report()
        );
        assert!(!server.exited(), "redis-server died: {}", server.report());
        drop(server);
        net.clear();
    }
}
