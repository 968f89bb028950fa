//! Many accelerated processes on one net_memif port (`ACCEL_PROCS=multi`,
//! issue 12): the port owner is the memif server, each process takes queue
//! pairs of it as a DPDK secondary (watching the link, so that it follows
//! a reconnecting peer: `LinkWatch` in the stack). The peer, a client
//! process accelerated over the same memif socket with as many queue pairs
//! (memif's queue pair i talks to the peer's i), spreads its connections
//! over them by thread. Each client run is a new peer process: a reconnect.
//!
//! - nginx with `worker_processes 2`, then `auto` (as many queue pairs as
//!   workers, 4 at most): 1,000 requests over 100 keep-alive connections, every byte
//!   checked (`tests/programs/http_load.py`); every worker serves some, and
//!   the count per worker is printed.
//! - a worker killed with `SIGKILL` under load (50 looping connections):
//!   the master's replacement takes the freed queue pair and serves, and no
//!   connection of the other worker fails.
//! - `nginx -s reload` under load (50 looping keep-alive connections): the
//!   new workers wait for the old ones' queue pairs (the port has as many
//!   as workers: on memif a queue pair nobody holds loses the peer's flows
//!   on it), take them as the old workers leave, and serve; no request
//!   fails (a request on an idle keep-alive connection that an old worker
//!   closes is retried, as HTTP clients do; counted). What an old worker's
//!   stack took and nginx never accepted is left with the port owner as
//!   the worker exits, and handed to a new worker (`engine::parked`).
//! - a process that exits with connections its stack took and it never
//!   accepted, on a port of one queue pair: the next process waits for
//!   the queue pair, gets them from the port owner and serves them
//!   (`tests/programs/adrift.py`).
//! - redis-server and nginx accelerated at once, one address, redis on one
//!   queue pair and nginx's two workers on the others: both serve (a SYN
//!   that comes to the other program's queue is forwarded to the process
//!   that listens), every value checked (`tests/programs/redis_check.py`).
//! - an idle 2-worker nginx, the owner included, costs at most 1 % of a
//!   core over 10 s, with no peer connected (DPDK 22.11's memif has no Rx
//!   interrupt: an idle process sleeps on its bell, which the peer rings,
//!   see the stack's `phy::dpdk::bell`; a peer that comes rings as it
//!   starts, and is served).
//!
//! Ports: 18093 (nginx), 16403 (redis).

use accel_tests::net::{kernel_form, measured, repo, root_or_skip, skip, wait_until, MemifNet, Place, Proc};
use accel_tests::shared_port::{
    attached_workers, cpu_ticks, nginx, pids_named, redis_conf, Outcome, NGINX_PORT, REDIS_PORT,
};
use accel_tests::{python, Scratch};
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

/// Whether the test runs: as root, and accelerated (the kernel form has no
/// shared port to test).
fn runs(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    if kernel_form() {
        skip(test, "ACCEL_E2E=kernel: no accelerated port to share");
        return false;
    }
    true
}

/// The servers' placement: sharing the port, whose owner opens `queues`
/// queue pairs.
fn server_place(net: &MemifNet, queues: usize) -> Place {
    net.server()
        .with_env("ACCEL_PROCS", "multi")
        .with_env("ACCEL_PORT_QUEUES", &queues.to_string())
}

/// The client's placement: one process with `queues` queue pairs.
fn client_place(net: &MemifNet, queues: usize) -> Place {
    net.client().with_env("ACCEL_QUEUES", &queues.to_string())
}

/// Runs a client program (`args` after the interpreter) over memif to its
/// end (60 s at most); its standard output, or why it failed.
fn client(dir: &Path, net: &MemifNet, queues: usize, name: &str, args: &[&str]) -> Result<String, String> {
    let py = python().to_str().unwrap();
    let mut all = vec![py];
    all.extend_from_slice(args);
    let mut c = Proc::spawn(
        dir,
        name,
        &client_place(net, queues),
        Duration::from_secs(60),
        &all,
    );
    match c.wait(Duration::from_secs(70)) {
        Some(s) if s.success() => Ok(c.stdout()),
        _ => Err(c.report()),
    }
}

/// `conns` connections with `per_conn` GETs each to nginx, from a client
/// with `queues` queue pairs.
fn fetch(
    dir: &Path,
    net: &MemifNet,
    queues: usize,
    name: &str,
    conns: usize,
    per_conn: usize,
) -> Result<Outcome, String> {
    let script = repo("tests/programs/http_load.py");
    let expect = dir.join("www/1k");
    let (conns, per) = (conns.to_string(), per_conn.to_string());
    let args = [
        script.to_str().unwrap(),
        net.server_ip(),
        &NGINX_PORT.to_string(),
        "/1k",
        expect.to_str().unwrap(),
        &conns,
        &per,
    ];
    client(dir, net, queues, name, &args).map(|out| Outcome::parse(&out))
}

/// nginx (`workers`) sharing the port of `queues` queue pairs, once it
/// serves over memif (90 s at most).
fn start_nginx(dir: &Path, net: &MemifNet, workers: &str, queues: usize) -> Proc {
    let args = nginx(dir, workers);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Proc::spawn(dir, "nginx", &server_place(net, queues), LIMIT, &args);
    let mut tries = 0;
    let mut last = String::new();
    let up = wait_until(Duration::from_secs(90), || {
        tries += 1;
        assert!(!server.exited(), "nginx exited: {}", server.report());
        match fetch(dir, net, queues, &format!("probe{tries}"), 1, 1) {
            Ok(_) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(
        up,
        "nginx not served over memif within 90 s ({tries} tries): {}\n--- last probe\n{last}",
        server.report()
    );
    server
}

/// 50 connections looping over GETs to nginx (`http_load.py --loop`),
/// from a client with `queues` queue pairs, until `stop` exists.
fn start_looping(dir: &Path, net: &MemifNet, queues: usize, stop: &Path) -> Proc {
    let script = repo("tests/programs/http_load.py");
    let expect = dir.join("www/1k");
    let py = python().to_str().unwrap();
    let port = NGINX_PORT.to_string();
    let args = [
        py,
        script.to_str().unwrap(),
        "--loop",
        stop.to_str().unwrap(),
        "60",
        net.server_ip(),
        &port,
        "/1k",
        expect.to_str().unwrap(),
        "50",
    ];
    let looping = Proc::spawn(
        dir,
        "looping",
        &client_place(net, queues),
        Duration::from_secs(90),
        &args,
    );
    // It is under way once its stack is up and it connected.
    std::thread::sleep(Duration::from_secs(3));
    looping
}

/// Stops the looping client and says what it saw.
fn stop_looping(looping: &mut Proc, stop: &Path) -> Outcome {
    std::fs::write(stop, b"").unwrap();
    let status = looping.wait(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", looping.report());
    Outcome::parse(&looping.stdout())
}

#[test]
fn nginx_workers_each_serve_on_memif_queues_of_their_own() {
    let test = "nginx_workers_each_serve_on_memif_queues_of_their_own";
    if !runs(test) {
        return;
    }
    let scratch = Scratch::new("procs-memif-nginx");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for workers in ["2", "auto"] {
        let dir = scratch.join(&format!("w{workers}"));
        std::fs::create_dir_all(&dir).unwrap();
        let net = MemifNet::new("pm", &dir);
        // As on the tap, at most 4 queue pairs (the owner's huge pages hold
        // the mbufs of so many); with more CPUs, the workers beyond wait
        // for a queue pair and serve nothing.
        let expect = if workers == "auto" { cpus.min(4) } else { 2 };
        let mut server = start_nginx(&dir, &net, workers, expect);
        let seen =
            fetch(&dir, &net, expect, "load", 100, 10).unwrap_or_else(|e| panic!("{e}\n{}", server.report()));
        let attached = attached_workers(&server);
        println!(
            "procs_memif: nginx worker_processes {workers}: 1000 requests over 100 connections; per worker {:?}; attached {attached:?}",
            seen.served
        );
        for (i, (pid, n)) in seen.served.iter().enumerate() {
            measured(
                "procs_memif",
                &format!("w{workers}_worker{i}_pid{pid}_requests"),
                *n as f64,
                "req",
            );
        }
        assert_eq!(seen.total(), 1000, "{seen:?}");
        assert_eq!(
            seen.served.len(),
            expect,
            "every one of {expect} workers should serve: {seen:?}: {}",
            server.report()
        );
        assert_eq!(attached.len(), expect, "{}", server.report());
        assert!(
            seen.served.keys().all(|p| attached.contains(p)),
            "answers from a worker that did not attach: {seen:?} {attached:?}"
        );
        assert!(!server.exited(), "nginx died: {}", server.report());
    }
}

#[test]
fn a_killed_worker_is_replaced_and_the_other_loses_nothing_on_memif() {
    let test = "a_killed_worker_is_replaced_and_the_other_loses_nothing_on_memif";
    if !runs(test) {
        return;
    }
    let scratch = Scratch::new("procs-memif-kill");
    let dir = scratch.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let net = MemifNet::new("pk", &dir);
    let server = start_nginx(&dir, &net, "2", 2);
    let mut server = server;
    wait_until(Duration::from_secs(10), || attached_workers(&server).len() == 2);
    let before = attached_workers(&server);
    assert_eq!(before.len(), 2, "{}", server.report());
    let (victim, survivor) = (before[0], before[1]);
    let stop = dir.join("stop");
    let mut looping = start_looping(&dir, &net, 2, &stop);
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) with plain integers; the victim is a worker of our
    // own nginx.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let replaced = wait_until(Duration::from_secs(15), || attached_workers(&server).len() == 3);
    // The victim's connections reconnect to the replacement's queue pair.
    std::thread::sleep(Duration::from_secs(3));
    let seen = stop_looping(&mut looping, &stop);
    assert!(replaced, "no replacement attached: {}", server.report());
    let after = attached_workers(&server);
    let replacement = *after.iter().find(|p| !before.contains(p)).unwrap();
    let failures = seen.failures_by_worker(victim, survivor);
    println!(
        "procs_memif kill: victim {victim}, survivor {survivor}, replacement {replacement}; served {:?}; \
         failed connections {failures:?}; retried {}",
        seen.served, seen.retried
    );
    for (who, pid) in [
        ("victim", victim),
        ("survivor", survivor),
        ("replacement", replacement),
    ] {
        measured(
            "procs_memif_kill",
            &format!("{who}_requests"),
            *seen.served.get(&pid).unwrap_or(&0) as f64,
            "req",
        );
    }
    assert!(
        !failures
            .keys()
            .any(|k| k.starts_with("SURVIVOR") || k.starts_with("pid")),
        "connections of workers that were not killed failed: {failures:?}: {}",
        server.report()
    );
    assert!(seen.served.get(&survivor).is_some_and(|&n| n > 0), "{seen:?}");
    assert!(
        seen.served.get(&replacement).is_some_and(|&n| n > 0),
        "the replacement served nothing: {seen:?}: {}",
        server.report()
    );
    assert!(!server.exited(), "nginx died: {}", server.report());
}

#[test]
fn redis_and_nginx_share_one_address_on_memif() {
    let test = "redis_and_nginx_share_one_address_on_memif";
    if !runs(test) {
        return;
    }
    let scratch = Scratch::new("procs-memif-two");
    let dir = scratch.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let net = MemifNet::new("p2", &dir);
    // Three queue pairs: redis takes one, nginx's workers one each.
    let queues = 3;
    let conf = redis_conf(&dir);
    let mut redis = Proc::spawn(
        &dir,
        "redis",
        &server_place(&net, queues),
        LIMIT,
        &["redis-server", conf.to_str().unwrap()],
    );
    wait_until(Duration::from_secs(30), || {
        redis.accel_log().contains("port shared (ACCEL_PROCS)")
    });
    assert!(!redis.exited(), "{}", redis.report());
    let mut nginx = start_nginx(&dir, &net, "2", queues);
    let per =
        fetch(&dir, &net, queues, "load", 100, 10).unwrap_or_else(|e| panic!("{e}\n{}", nginx.report()));
    let check = repo("tests/programs/redis_check.py");
    let port = REDIS_PORT.to_string();
    // One connection per queue pair (the client's threads take its queue
    // pairs in turn): two of them come to nginx's queue pairs first, and
    // are forwarded to redis.
    let conns = queues.to_string();
    let args = [
        check.to_str().unwrap(),
        net.server_ip(),
        &port,
        &conns,
        "700",
        "4096",
    ];
    let out = client(&dir, &net, queues, "redis_check", &args)
        .unwrap_or_else(|e| panic!("{e}\n{}", redis.report()));
    let checked = 700 * queues;
    assert!(out.contains(&format!("ok {checked}")), "{out}");

    println!(
        "procs_memif two programs: redis {checked} SET+GET pairs checked over {queues} connections; nginx per worker {:?}",
        per.served
    );
    assert_eq!(per.total(), 1000, "{per:?}");
    assert_eq!(per.served.len(), 2, "both nginx workers serve: {per:?}");
    assert!(
        redis.accel_log().contains("port shared (ACCEL_PROCS)"),
        "{}",
        redis.report()
    );
    assert!(!redis.exited() && !nginx.exited());
}

#[test]
fn a_reload_under_load_fails_no_request_on_memif() {
    let test = "a_reload_under_load_fails_no_request_on_memif";
    if !runs(test) {
        return;
    }
    let scratch = Scratch::new("procs-memif-reload");
    let dir = scratch.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let net = MemifNet::new("pr", &dir);
    let server = start_nginx(&dir, &net, "2", 2);
    wait_until(Duration::from_secs(10), || attached_workers(&server).len() == 2);
    let before = attached_workers(&server);
    assert_eq!(before.len(), 2, "{}", server.report());
    let stop = dir.join("stop");
    let mut looping = start_looping(&dir, &net, 2, &stop);
    let conf = dir.join("nginx.conf");
    let prefix = dir.display().to_string();
    accel_tests::net::run(
        "nginx",
        &["-p", &prefix, "-c", conf.to_str().unwrap(), "-s", "reload"],
    );
    // The new workers attach as the old ones leave.
    let settled = wait_until(Duration::from_secs(30), || {
        let log = server.accel_log();
        attached_workers(&server).len() == 4
            && before.iter().all(|p| log.contains(&format!("process {p} left")))
    });
    std::thread::sleep(Duration::from_secs(3));
    let seen = stop_looping(&mut looping, &stop);
    let new: Vec<u32> = seen
        .served
        .keys()
        .copied()
        .filter(|p| !before.contains(p))
        .collect();
    let log = server.accel_log();
    let waited: Vec<&str> = log.lines().filter(|l| l.contains("waited")).collect();
    // Connections nobody accepted, left with the owner by exiting workers
    // and handed on by it.
    let count = |what: &str, before: &str| -> usize {
        log.lines()
            .filter(|l| l.contains(what))
            .filter_map(|l| l.split(before).next()?.rsplit(' ').next()?.parse::<usize>().ok())
            .sum()
    };
    let parked = count("left with the port owner", " connections nobody accepted");
    let handed = count(
        "left by a process that exited, handed",
        " connections nobody accepted",
    );
    println!("procs_memif reload: {parked} connections nobody accepted left with the owner, {handed} handed on by it");
    measured("procs_memif_reload", "accel_parked", parked as f64, "conn");
    println!(
        "procs_memif reload: served {:?}; failed {:?}; retried {} (idle keep-alive connections closed by old workers); {waited:?}",
        seen.served, seen.failed, seen.retried
    );
    measured(
        "procs_memif_reload",
        "accel_failed",
        seen.failed.len() as f64,
        "req",
    );
    measured("procs_memif_reload", "accel_retried", seen.retried as f64, "req");
    assert!(
        settled,
        "old workers did not leave or new ones did not attach: {}",
        server.report()
    );
    assert!(
        seen.failed.is_empty(),
        "requests failed: {:?}: {}",
        seen.failed,
        server.report()
    );
    // The looping connections come back once each, right after the old
    // workers close them: to whichever new worker is up by then.
    assert!(
        !new.is_empty(),
        "the new workers served nothing: {:?}",
        seen.served
    );
    let mut server = server;
    assert!(!server.exited(), "nginx died: {}", server.report());
}

/// Waits until `p` printed `line` (30 s at most).
fn printed(p: &mut Proc, line: &str) -> bool {
    wait_until(Duration::from_secs(30), || {
        p.stdout().lines().any(|l| l.starts_with(line)) || p.exited()
    }) && p.stdout().lines().any(|l| l.starts_with(line))
}

#[test]
fn connections_a_process_left_unaccepted_go_to_the_next_one() {
    let test = "connections_a_process_left_unaccepted_go_to_the_next_one";
    if !runs(test) {
        return;
    }
    let scratch = Scratch::new("procs-memif-adrift");
    let dir = scratch.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let net = MemifNet::new("pa", &dir);
    let script = repo("tests/programs/adrift.py");
    let (script, py) = (script.to_str().unwrap(), python().to_str().unwrap());
    let go = dir.join("go");
    let port = "18094";
    let n = "5";
    let mut first = Proc::spawn(
        &dir,
        "first",
        &server_place(&net, 1),
        LIMIT,
        &[py, script, "first", port, go.to_str().unwrap()],
    );
    assert!(printed(&mut first, "listening"), "{}", first.report());
    // Its stack starts with its first accelerated socket, the owner too.
    wait_until(Duration::from_secs(30), || {
        first.accel_log().contains("port shared (ACCEL_PROCS)")
    });
    let mut client = Proc::spawn(
        &dir,
        "client",
        &client_place(&net, 1),
        Duration::from_secs(90),
        &[py, script, "client", net.server_ip(), port, n],
    );
    assert!(
        printed(&mut client, "sent"),
        "{}\n{}",
        client.report(),
        first.report()
    );
    // The next process waits for the one queue pair, which the first holds.
    let mut second = Proc::spawn(
        &dir,
        "second",
        &server_place(&net, 1),
        LIMIT,
        &["timeout", "60", py, script, "second", port, n],
    );
    wait_until(Duration::from_secs(30), || {
        first.accel_log().contains("waits for 1 queue pairs")
            || second.accel_log().contains("waits for 1 queue pairs")
    });
    std::fs::write(&go, b"").unwrap();
    let status = first.wait(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", first.report());
    let served = second.wait(Duration::from_secs(60));
    let answered = client.wait(Duration::from_secs(60));
    let log = format!("{}{}", first.accel_log(), second.accel_log());
    println!(
        "procs_memif adrift: {}; {}; owner: {:?}",
        first
            .accel_log()
            .lines()
            .find(|l| l.contains("left with the port owner"))
            .unwrap_or("nothing left with the owner"),
        second.stdout().trim(),
        log.lines()
            .filter(|l| l.contains("handed to the process"))
            .collect::<Vec<_>>()
    );
    assert!(
        first.accel_log().contains(&format!(
            "exit: {n} connections nobody accepted left with the port owner"
        )),
        "{}",
        first.report()
    );
    assert!(
        served.is_some_and(|s| s.success()),
        "{}\n{}",
        second.report(),
        first.report()
    );
    assert!(
        second.stdout().contains(&format!("served {n}")),
        "{}",
        second.report()
    );
    assert!(answered.is_some_and(|s| s.success()), "{}", client.report());
    assert!(
        client.stdout().contains(&format!("answered {n}")),
        "{}",
        client.report()
    );
}

#[test]
fn an_idle_two_worker_nginx_and_its_owner_cost_under_one_percent_of_a_core_on_memif() {
    let test = "an_idle_two_worker_nginx_and_its_owner_cost_under_one_percent_of_a_core_on_memif";
    if !runs(test) {
        return;
    }
    let scratch = Scratch::new("procs-memif-idle");
    let dir = scratch.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let net = MemifNet::new("pi", &dir);
    let mut server = start_nginx(&dir, &net, "2", 2);
    // Both workers attach (the first requests start their stacks).
    fetch(&dir, &net, 2, "load", 20, 2).unwrap_or_else(|e| panic!("{e}\n{}", server.report()));
    wait_until(Duration::from_secs(10), || attached_workers(&server).len() == 2);
    let ws = attached_workers(&server);
    assert_eq!(ws.len(), 2, "{}", server.report());
    let mut pids: Vec<u32> = pids_named(&format!("nginx: master process nginx -p {}", dir.display()));
    pids.extend(&ws);
    // Our owner: the one whose port is this test's memif socket.
    let ours = format!("socket={}", net.sock.display());
    let owners: Vec<u32> = pids_named("accel-owner")
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|e| e.windows(ours.len()).any(|w| w == ours.as_bytes()))
        })
        .collect();
    assert_eq!(owners.len(), 1, "not one accel-owner for this port: {owners:?}");
    pids.extend(&owners);
    std::thread::sleep(Duration::from_secs(1));
    let t0: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let start = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let used: u64 = pids
        .iter()
        .zip(&t0)
        .map(|(&p, &before)| cpu_ticks(p).saturating_sub(before))
        .sum();
    let secs = start.elapsed().as_secs_f64();
    // SAFETY: sysconf takes a plain integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let pct = used as f64 / hz / secs * 100.0;
    println!("procs_memif idle: nginx master + 2 workers + owner ({pids:?}): {pct:.2} % of a core over {secs:.1} s");
    measured("procs_memif_idle", "nginx2_and_owner_cpu", pct, "% of a core");
    // And a peer that comes after the quiet is served at once.
    let t = std::time::Instant::now();
    let seen = fetch(&dir, &net, 2, "after", 20, 2).unwrap_or_else(|e| panic!("{e}\n{}", server.report()));
    println!(
        "procs_memif idle: then 40 requests from a new peer in {:.2} s: {:?}",
        t.elapsed().as_secs_f64(),
        seen.served
    );
    assert_eq!(seen.total(), 40, "{seen:?}");
    assert!(pct <= 1.0, "idle cost {pct:.2} % > 1 %: {}", server.report());
    assert!(!server.exited(), "nginx died: {}", server.report());
}
