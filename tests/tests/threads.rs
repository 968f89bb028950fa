//! Programs with several threads, accelerated over `--tap` (issue 11),
//! each against the kernel baseline (the same server in a namespace on a
//! veth), with kernel clients in the clients' namespace:
//!
//! - a thread-per-connection echo server (Python's
//!   `socketserver.ThreadingTCPServer`, `tests/programs/threaded_echo.py`):
//!   10 connections × 400 round trips and 200 connections × 20 round trips
//!   of 64 bytes, every byte checked; req/s and p99 printed for both;
//! - the same server in C (`tests/programs/threaded_echo.c`: a detached
//!   pthread per connection, blocking `recv`/`send`), which has no
//!   interpreter lock to serialise its threads: the same round trips, and
//!   the server's own count of the connections and bytes it echoed must
//!   match the clients' exactly; once more with `ACCEL_LANES=200`, which
//!   the port's owner must open and hand over whole (one message carries
//!   up to 253 descriptors: it was 64, and the lanes beyond 60 were
//!   dropped without a word);
//! - memcached with `-t 1`, `-t 2` and `-t 4` worker threads: 10,000 keys
//!   stored and read back over 4 connections at once, every value checked
//!   (and 32 more connections each asking `version`, to spread the flows);
//! - redis with `io-threads 2` and `io-threads-do-reads yes`: 10,000 keys
//!   stored and read back, and `redis-benchmark -c 50`;
//! - a server whose 4 threads each run an epoll loop over their own
//!   listener on one `SO_REUSEPORT` port (`tests/programs/reuseport_echo.c`):
//!   200 connections × 20 round trips checked, every thread accepting
//!   some of them.
//!
//! The accelerated server runs twice: with one queue pair (the default)
//! and with `ACCEL_QUEUES=2`, two stacks, each with its own lock, whose
//! connections the tap's flow steering spreads; there both stacks must
//! have carried frames (the shim's exit line says how many each). The
//! echo server also runs with `ACCEL_QUEUES=8`: net_tap takes 4 at most,
//! so it gets 4 with a warning (DPDK 22.11 aborted with more), and all 4
//! must carry frames. Each waiting thread of the echo server gets a lane,
//! a queue of the tap of its own (the shim's `engine::lanes`, 64 by
//! default, from the port's owner under `scripts/accel`'s
//! `ACCEL_PROCS=auto`), with any number of queue pairs, and the lanes
//! must have carried the frames, both ways, each to its flow's stack (few
//! handed over between stacks); the echo server runs once more as one
//! process alone on its tap (`ACCEL_PROCS=single`: it opens its lanes
//! itself), with one queue pair and with two, once without lanes
//! (`ACCEL_LANES=0`: the port's queue and its sleeper for every thread),
//! and once with `ACCEL_TX_STINT_US=0`, where the relay thread
//! (`engine::relay`) sends every frame the threads stage.
//!
//! Ports: 17101 (echo), 17102 (memcached), 17103 (redis), 17104
//! (reuseport echo), 17105 (the echo in C).

use accel_tests::clients::{dataset, echo_rr, memcached_set_get, memcached_versions, redis_set_get, Item};
use accel_tests::net::{
    measured, repo, root_or_skip, wait_for_port, wait_until, Leg, Netns, Place, Proc, TapNet,
};
use accel_tests::{command, output, python, Scratch};
use std::net::SocketAddr;
use std::time::Duration;

const ECHO_PORT: u16 = 17101;
const MEMCACHED_PORT: u16 = 17102;
const REDIS_PORT: u16 = 17103;
const REUSEPORT_PORT: u16 = 17104;
const C_ECHO_PORT: u16 = 17105;
const LIMIT: Duration = Duration::from_secs(300);

/// The legs of each test: the kernel, then the shim with one queue pair
/// and with two.
const LEGS: [(Leg, u8); 3] = [(Leg::Kernel, 0), (Leg::Accel, 1), (Leg::Accel, 2)];

/// The most queue pairs a net_tap port is opened with.
const TAP_MAX_QUEUES: u8 = 4;

/// A leg's name in figures.
fn leg_name(leg: Leg, queues: u8) -> String {
    match (leg, queues) {
        (Leg::Kernel, _) => "kernel".into(),
        (_, 0) => "accel_auto".into(),
        (_, 1) => "accel".into(),
        (_, q) => format!("accel_{q}q"),
    }
}

/// The placement of a leg: `queues` queue pairs, 0 for the default
/// (`ACCEL_QUEUES` unset: one per CPU for a program with threads).
fn place(net: &mut TapNet, leg: Leg, queues: u8) -> Place {
    let p = net.place(leg);
    if leg == Leg::Accel && queues > 0 {
        p.with_env("ACCEL_QUEUES", &queues.to_string())
    } else {
        p
    }
}

/// The queue pairs the shim opens a tap with, unset, for a program that
/// has threads when its stack starts: one per CPU, at most 4.
fn auto_queues() -> u8 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus.min(usize::from(TAP_MAX_QUEUES)) as u8
}

/// Stops `server` with `sig` (so that the shim writes its exit line); its
/// shim's log, and the exit line of its stacks.
fn stopped_exit_line(server: &mut Proc, sig: libc::c_int) -> (String, String) {
    assert!(
        server.stop(sig, Duration::from_secs(20)).is_some(),
        "{} did not stop: {}",
        server.name,
        server.report()
    );
    let log = server.accel_log();
    let line = log
        .lines()
        .find(|l| l.contains("exit: stacks:"))
        .unwrap_or_else(|| panic!("no exit line of the stacks: {}", server.report()))
        .to_owned();
    (log, line)
}

/// After a run with several queue pairs: stops `server` with `sig` (so
/// that the shim writes its exit line) and checks that every stack
/// carried frames: the steering spread the connections.
fn every_queue_served(server: &mut Proc, sig: libc::c_int, queues: u8) {
    let (_, line) = stopped_exit_line(server, sig);
    println!("{}: {line}", server.name);
    stacks_served(&line, queues);
}

/// The numbers after `key` in exit line `line`, one per stack.
fn counts(line: &str, key: &str) -> Vec<u64> {
    line.split(key)
        .skip(1)
        .filter_map(|t| t.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect()
}

/// Every one of `queues` stacks carried frames (exit line `line`).
fn stacks_served(line: &str, queues: u8) {
    let rx = counts(line, " rx=");
    assert_eq!(rx.len(), usize::from(queues), "{line}");
    assert!(rx.iter().all(|&n| n > 0), "a stack carried nothing: {line}");
}

/// Stops `server`, an echo server that ran 10 × 400 and 200 × 20 round
/// trips on `queues` queue pairs, and checks that every stack carried
/// frames and that its threads' lanes carried frames both ways (most of
/// them: every connection's after its first reply), or, without `lanes`,
/// that it had none. With several stacks, a lane's frames go each to its
/// flow's stack, as the steering program spreads the flows of no lane:
/// a frame taken in by the wrong stack is handed over to the right one,
/// so the handovers must be few. (When a lane is given back, the last
/// lane takes its queue index; until the program's map said so, that
/// lane's frames went to an index the kernel then had one queue too few
/// for, which it took modulo their number: queue 0, a port's queue, and
/// 38-108 segments a run were handed over. Its connections are now
/// unrouted around the detach: 0-1.)
fn lanes_carried(server: &mut Proc, lanes: bool, queues: u8) -> String {
    let (log, line) = stopped_exit_line(server, libc::SIGTERM);
    println!("{}: {line}", server.name);
    stacks_served(&line, queues);
    if !lanes {
        assert!(!line.contains("lane_rx="), "lanes, though ACCEL_LANES=0: {line}");
        return line;
    }
    let one = |key: &str| -> u64 {
        *counts(&line, key)
            .first()
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    let rx: u64 = counts(&line, " rx=").iter().sum();
    let handed: u64 = counts(&line, "handed_over=").iter().sum();
    let (lane_rx, lane_tx) = (one("lane_rx="), one("lane_tx="));
    // 10 × 400 and 200 × 20 requests, each a frame at least.
    assert!(
        lane_rx > 4_000 && lane_tx > 4_000,
        "the lanes carried too little: {line}"
    );
    assert!(lane_rx <= rx, "{line}");
    // A lane's frames sent to the wrong stack would be about half of them
    // with two stacks.
    assert!(handed <= 20, "frames went to the wrong stack: {line}");
    // The kernel took the steering program (SYNs to the port's queues).
    assert!(
        !log.contains("without a steering program") && !log.contains("no lanes"),
        "no steering: {}",
        server.report()
    );
    line
}

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
    // And with more queue pairs than net_tap takes: 4, with a warning
    // (DPDK 22.11 aborts a tap started with more); alone on its tap; and
    // without lanes.
    let legs = LEGS.into_iter().map(|(l, q)| (l, q, ""));
    let more = [
        (Leg::Accel, 8, ""),
        (Leg::Accel, 1, "single"),
        (Leg::Accel, 2, "single"),
        (Leg::Accel, 1, "nolanes"),
        (Leg::Accel, 1, "relay"),
    ];
    for (leg, queues, variant) in legs.chain(more) {
        let name = match variant {
            "" => leg_name(leg, queues),
            "single" if queues > 1 => format!("accel_{variant}_{queues}q"),
            _ => format!("accel_{variant}"),
        };
        let dir = scratch.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut place = place(&mut net, leg, queues);
        match variant {
            // A process alone on its tap that first closes every fd it
            // did not open, as a daemon does: the shim's own (its log
            // file) must stay open, and the rest work as ever.
            "single" => {
                place = place
                    .with_env("ACCEL_PROCS", "single")
                    .with_env("ECHO_CLOSE_OTHER_FDS", "1")
            }
            "nolanes" => place = place.with_env("ACCEL_LANES", "0"),
            "relay" => place = place.with_env("ACCEL_TX_STINT_US", "0"),
            _ => {}
        }
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
        if variant == "single" {
            // The program's closes of the shim's own fds (its log file:
            // the stack starts later) were refused with EBADF (as was the
            // close of the directory fd that listed them, closed
            // already); the log still goes to its file (below, and the
            // exit line that `lanes_carried` reads).
            let out = server.stdout();
            let refused: u32 = out
                .split("closed other fds; ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no count of refused closes: {}", server.report()));
            assert!(refused >= 2, "{}", server.report());
        }
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        if leg == Leg::Accel {
            assert!(server.accel_log().contains("stack up"), "{}", server.report());
        }
        echo_rounds(&net, addr, test, &name, &[(10, 400), (200, 20)], 64);
        assert!(!server.exited(), "the echo server died: {}", server.report());
        if queues > TAP_MAX_QUEUES {
            let log = server.accel_log();
            // From the process (a port of its own) or from the port owner
            // (a shared port, which has ACCEL_PORT_QUEUES = 4).
            assert!(
                log.contains("ACCEL_QUEUES=8, but a net_tap port has at most 4 queue pairs")
                    || log.contains("asked for 8 queue pairs of 4; it gets 4"),
                "no warning: {}",
                server.report()
            );
        }
        if leg == Leg::Accel {
            let line = lanes_carried(&mut server, variant != "nolanes", queues.min(TAP_MAX_QUEUES));
            if variant == "relay" {
                // With a stint of 0, every flush hands its frames over.
                let relayed: u64 = counts(&line, "hand_overs=").iter().sum();
                assert!(relayed > 0, "nothing was handed to the relay: {line}");
            }
        }
        drop(server);
        net.clear();
    }
}

/// Builds `tests/programs/NAME.c` (with threads, warnings as errors) into
/// `scratch`; the program's path.
fn build_c(scratch: &Scratch, name: &str) -> std::path::PathBuf {
    let exe = scratch.join(name);
    let built = output(
        command("cc")
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
            .arg(&exe)
            .arg(repo(&format!("tests/programs/{name}.c"))),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    exe
}

/// Each of `runs` (connections, round trips each) of `size` bytes against
/// the echo server at `addr`, from the clients' namespace: every byte
/// checked, every round trip counted; req/s and p99 printed as leg
/// `name`'s figures of `test`.
fn echo_rounds(net: &TapNet, addr: SocketAddr, test: &str, name: &str, runs: &[(usize, usize)], size: usize) {
    for &(conns, rounds) in runs {
        let rt = net.clients.enter(|| echo_rr(addr, conns, rounds, size));
        assert_eq!(rt.count, (conns * rounds) as u64);
        let what = format!("{name}_{conns}c");
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
}

/// The numbers of a `served: connections=N bytes=B open=K` line.
fn served_line(out: &str) -> (u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("served:"))
        .unwrap_or_else(|| panic!("no served line in: {out}"));
    let field = |key: &str| -> u64 {
        line.split(key)
            .nth(1)
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    (field("connections="), field("bytes="), field("open="))
}

#[test]
fn a_thread_per_connection_server_in_c_echoes_every_byte() {
    if !root_or_skip("a_thread_per_connection_server_in_c_echoes_every_byte") {
        return;
    }
    let test = "threaded_echo_c";
    let scratch = Scratch::new("threaded-echo-c");
    let exe = build_c(&scratch, "threaded_echo");
    let mut net = TapNet::new("tc");
    let addr: SocketAddr = format!("{}:{C_ECHO_PORT}", net.server_ip()).parse().unwrap();
    const SIZE: usize = 64;
    let runs = [(10, 400), (200, 20)];
    let legs = LEGS.into_iter().map(|(l, q)| (l, q, 0));
    for (leg, queues, lanes) in legs.chain([(Leg::Accel, 1, 200)]) {
        let name = match lanes {
            0 => leg_name(leg, queues),
            n => format!("accel_lanes{n}"),
        };
        let dir = scratch.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut place = place(&mut net, leg, queues);
        if lanes > 0 {
            place = place.with_env("ACCEL_LANES", &lanes.to_string());
        }
        let mut server = Proc::spawn(
            &dir,
            "threaded_echo",
            &place,
            LIMIT,
            &[exe.to_str().unwrap(), "0.0.0.0", &C_ECHO_PORT.to_string()],
        );
        assert!(
            wait_until(Duration::from_secs(30), || server.stdout().contains("echo ready")),
            "the echo server did not start: {}",
            server.report()
        );
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        echo_rounds(&net, addr, test, &name, &runs, SIZE);
        assert!(!server.exited(), "the echo server died: {}", server.report());
        if lanes > 0 {
            // The owner opened them all, and this process got them all.
            let log = server.accel_log();
            assert!(
                log.contains(&format!("port owner: {lanes} lanes of"))
                    && log.contains(&format!("{lanes} lanes from the port's owner")),
                "not {lanes} lanes: {}",
                server.report()
            );
        }
        if leg == Leg::Accel {
            // Stops it (SIGTERM); the lanes carried the frames.
            lanes_carried(&mut server, true, queues);
        } else {
            assert!(
                server.stop(libc::SIGTERM, Duration::from_secs(20)).is_some(),
                "the echo server did not stop: {}",
                server.report()
            );
        }
        // What the server says it echoed is what the clients got back:
        // every connection ended (the port probes' too), every byte once.
        let (served, bytes, open) = served_line(&server.stdout());
        let want: usize = runs.iter().map(|(c, r)| c * r * SIZE).sum();
        let conns: usize = runs.iter().map(|(c, _)| c).sum();
        println!("{test} {name}: served {served} connections, {bytes} bytes, {open} open");
        assert_eq!(open, 0, "connections never ended: {}", server.report());
        assert_eq!(bytes, want as u64, "{}", server.report());
        assert!(served >= conns as u64, "{}", server.report());
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
        // With 4 threads, also the default: memcached starts its threads
        // before it listens, and gets a queue pair per CPU.
        let auto = (threads == "4").then_some((Leg::Accel, 0));
        for (leg, queues) in LEGS.into_iter().chain(auto) {
            let name = leg_name(leg, queues);
            let dir = scratch.join(&format!("{name}-{threads}"));
            std::fs::create_dir_all(&dir).unwrap();
            let place = place(&mut net, leg, queues);
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
            measured(test, &format!("{name}_t{threads}_rps"), rps, "req/s");
            assert!(!server.exited(), "memcached died: {}", server.report());
            let queues = if leg == Leg::Accel && queues == 0 {
                let n = auto_queues();
                let log = server.accel_log();
                assert!(
                    n < 2 || log.contains(&format!("ACCEL_QUEUES=auto: {n} queue pairs, one per CPU")),
                    "{}",
                    server.report()
                );
                n
            } else {
                queues
            };
            if queues > 1 {
                // 4 flows all land on one of 2 queues one time in 8: 32
                // more make that one in 2^31.
                net.clients.enter(|| memcached_versions(addr, 32));
                every_queue_served(&mut server, libc::SIGTERM, queues);
            }
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

#[test]
fn threads_each_with_an_epoll_loop_share_a_reuseport_port() {
    if !root_or_skip("threads_each_with_an_epoll_loop_share_a_reuseport_port") {
        return;
    }
    let test = "reuseport_threads";
    let scratch = Scratch::new("reuseport-threads");
    let exe = build_c(&scratch, "reuseport_echo");
    let mut net = TapNet::new("rp");
    let addr: SocketAddr = format!("{}:{REUSEPORT_PORT}", net.server_ip()).parse().unwrap();
    const THREADS: usize = 4;
    for (leg, queues) in LEGS {
        let name = leg_name(leg, queues);
        let dir = scratch.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let place = place(&mut net, leg, queues);
        let mut server = Proc::spawn(
            &dir,
            "reuseport_echo",
            &place,
            LIMIT,
            &[
                exe.to_str().unwrap(),
                &REUSEPORT_PORT.to_string(),
                &THREADS.to_string(),
            ],
        );
        assert!(
            wait_until(Duration::from_secs(30), || server
                .stdout()
                .contains("reuseport ready")),
            "the server did not start: {}",
            server.report()
        );
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        let rt = net.clients.enter(|| echo_rr(addr, 200, 20, 64));
        assert_eq!(rt.count, 200 * 20);
        measured(test, &format!("{name}_200c_rps"), rt.rps(), "req/s");
        assert!(!server.exited(), "the server died: {}", server.report());
        if queues > 1 {
            every_queue_served(&mut server, libc::SIGTERM, queues);
        } else {
            assert!(
                server.stop(libc::SIGTERM, Duration::from_secs(20)).is_some(),
                "the server did not stop: {}",
                server.report()
            );
        }
        let out = server.stdout();
        let counts: Vec<u64> = out
            .lines()
            .find_map(|l| l.strip_prefix("accepted:"))
            .unwrap_or_else(|| panic!("no counts: {}", server.report()))
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        println!("{test} {name}: connections accepted per thread {counts:?}");
        assert_eq!(counts.len(), THREADS);
        assert!(counts.iter().sum::<u64>() >= 200, "{counts:?}");
        assert!(
            counts.iter().all(|&n| n > 0),
            "a thread accepted nothing: {counts:?}"
        );
        drop(server);
        net.clear();
    }
}
