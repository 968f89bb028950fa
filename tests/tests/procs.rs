//! Many accelerated processes on one port (`ACCEL_PROCS=multi`, issue 12):
//! a port owner process holds the port, each process takes queue pairs of
//! its own.
//!
//! `--tap`, each test with its own namespaces:
//! - nginx with `worker_processes 2`, then `auto`: 1,000 requests over 100
//!   keep-alive connections from kernel clients, every byte checked; every
//!   worker serves some (each answer names its worker: `X-Pid`), and the
//!   count per worker is printed.
//! - a worker killed with `SIGKILL` under load: the master's replacement
//!   attaches and serves, and no connection of the other worker fails.
//! - `nginx -s reload` under load (50 looping keep-alive connections,
//!   beside the same on the kernel): the old workers leave, the new ones
//!   attach and serve, no answer is wrong and no connection that was
//!   answered fails (a request on an idle keep-alive connection that an
//!   old worker closes is retried, as HTTP clients do; counted), and no
//!   request fails at all: a connection an old worker's stack took in the
//!   moment before nginx closed that worker's listeners (queued for
//!   `accept`, or in its handshake) moves to a new worker, as the kernel's
//!   one listening socket shared by all workers keeps it (our listeners
//!   are one per process: `engine::migrate`); how many moved is printed.
//!   A SYN that comes while no process listens (the old workers closed,
//!   the new ones not up yet) is dropped, not reset: the client's
//!   retransmission finds them.
//! - redis-server and nginx accelerated at once, one address (198.18.0.2),
//!   ports 16403 and 18093: both serve (a SYN the device gives the other
//!   program's queue is forwarded to a process that listens).
//! - an idle 2-worker nginx, the owner included, costs at most 1 % of a
//!   core over 10 s.
//!
//! Ports: 18093 (nginx), 16403 (redis).

use accel_tests::clients::{dataset, redis_set_get};
use accel_tests::net::{measured, root_or_skip, wait_for_port, wait_until, Leg, Place, Proc, TapNet};
use accel_tests::shared_port::{
    attached_workers, body, cpu_ticks, nginx, pids_named, redis_conf, Outcome, NGINX_PORT, REDIS_PORT,
};
use accel_tests::Scratch;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);

/// One HTTP/1.1 GET of `/1k` on `s`; the pid of the worker that answered.
/// Any error, a status but 200 or a byte out of place is an `Err`.
fn get(s: &mut TcpStream, body: &[u8]) -> Result<u32, String> {
    s.write_all(b"GET /1k HTTP/1.1\r\nHost: t\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err(format!("closed after {} bytes of the head", head.len())),
            Err(e) => return Err(format!("read: {e}")),
        }
        if head.len() > 4096 {
            return Err("a head over 4 KiB".into());
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("not 200: {head:?}"));
    }
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim().to_owned())
    };
    let len: usize = field("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or(format!("no length: {head:?}"))?;
    let pid: u32 = field("x-pid")
        .and_then(|v| v.parse().ok())
        .ok_or(format!("no X-Pid: {head:?}"))?;
    let mut got = vec![0u8; len];
    s.read_exact(&mut got).map_err(|e| format!("body: {e}"))?;
    if got != body {
        return Err(format!("{len} bytes, not the file's {}", body.len()));
    }
    Ok(pid)
}

/// `conns` keep-alive connections to `addr`, `per_conn` requests each, all
/// at once; requests answered per worker pid. Panics on any failure.
fn load(addr: SocketAddr, conns: usize, per_conn: usize) -> BTreeMap<u32, usize> {
    let body = body();
    let results: Vec<Result<Vec<u32>, String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                let body = &body;
                sc.spawn(move || {
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                        .map_err(|e| format!("connect: {e}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    (0..per_conn).map(|_| get(&mut s, body)).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut per_pid = BTreeMap::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(pids) => {
                for p in pids {
                    *per_pid.entry(p).or_insert(0) += 1;
                }
            }
            Err(e) => panic!("connection {i} of {conns}: {e}"),
        }
    }
    per_pid
}

/// A tap network and an nginx accelerated on it with `ACCEL_PROCS=multi`,
/// served once reachable.
fn start_nginx(net: &mut TapNet, dir: &Path, workers: &str) -> Proc {
    let args = nginx(dir, workers);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let place = net.place(Leg::Accel).with_env("ACCEL_PROCS", "multi");
    let mut server = Proc::spawn(dir, "nginx", &place, LIMIT, &args);
    let addr = format!("{}:{NGINX_PORT}", net.server_ip()).parse().unwrap();
    wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
    server
}

#[test]
fn nginx_workers_each_serve_on_queues_of_their_own() {
    if !root_or_skip("nginx_workers_each_serve_on_queues_of_their_own") {
        return;
    }
    let scratch = Scratch::new("procs-nginx");
    let mut net = TapNet::new("pn");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for workers in ["2", "auto"] {
        let dir = scratch.join(&format!("w{workers}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = start_nginx(&mut net, &dir, workers);
        let addr = format!("{}:{NGINX_PORT}", net.server_ip()).parse().unwrap();
        let expect = if workers == "auto" { cpus.min(4) } else { 2 };
        // The port answers once one worker listens; until the others do,
        // the SYNs on their queues go to it (and all 100 connections did,
        // once, under parallel tests). Every worker listens first.
        wait_until(Duration::from_secs(30), || {
            listening_workers(&server).len() >= expect
        });
        let t = Instant::now();
        let per_pid = net.clients.enter(|| load(addr, 100, 10));
        let secs = t.elapsed().as_secs_f64();
        let total: usize = per_pid.values().sum();
        assert_eq!(total, 1000, "{per_pid:?}");
        let attached = attached_workers(&server);
        println!(
            "procs_tap: nginx worker_processes {workers}: 1000 requests over 100 connections in {secs:.2} s; \
             per worker {per_pid:?}; attached {attached:?}"
        );
        for (i, (pid, n)) in per_pid.iter().enumerate() {
            measured(
                "procs_tap",
                &format!("w{workers}_worker{i}_pid{pid}_requests"),
                *n as f64,
                "req",
            );
        }
        assert_eq!(
            per_pid.len(),
            expect,
            "every one of {expect} workers should serve: {per_pid:?}: {}",
            server.report()
        );
        assert_eq!(attached.len(), expect, "{}", server.report());
        assert!(
            per_pid.keys().all(|p| attached.contains(p)),
            "answers from a worker that did not attach: {per_pid:?} {attached:?}"
        );
        assert!(!server.exited(), "nginx died: {}", server.report());
        drop(server);
        net.clear();
    }
}

/// The attached workers of `server` whose listener on the port is live.
fn listening_workers(server: &Proc) -> Vec<u32> {
    let log = server.accel_log();
    attached_workers(server)
        .into_iter()
        .filter(|p| {
            log.lines().any(|l| {
                l.starts_with(&format!("accel[{p}]"))
                    && l.contains(&format!("listening on 0.0.0.0:{NGINX_PORT}"))
            })
        })
        .collect()
}

/// `conns` connections to `addr` loop over GETs (reconnecting after a
/// failure) while `act` runs on the calling thread, and for 60 s at most.
fn looping(addr: SocketAddr, conns: usize, act: impl FnOnce()) -> Outcome {
    let stop = AtomicBool::new(false);
    let body = body();
    let outs: Vec<Outcome> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                let (stop, body) = (&stop, &body);
                sc.spawn(move || {
                    let mut out = Outcome::default();
                    let end = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                            Ok(s) => s,
                            Err(e) => {
                                out.failed.push((None, format!("connect: {e}")));
                                continue;
                            }
                        };
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let mut pid = None;
                        while !stop.load(Ordering::Relaxed) {
                            match get(&mut s, body) {
                                Ok(p) => {
                                    pid = Some(p);
                                    *out.served.entry(p).or_insert(0) += 1;
                                }
                                Err(e) => {
                                    let idle_close = e.starts_with("closed after 0 bytes")
                                        || e.starts_with("write:")
                                        || e == "read: Connection reset by peer (os error 104)";
                                    if pid.is_some() && idle_close {
                                        out.retried += 1;
                                    } else {
                                        out.failed.push((pid, e));
                                    }
                                    break;
                                }
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        act();
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = Outcome::default();
    for o in outs {
        for (p, n) in o.served {
            *all.served.entry(p).or_insert(0) += n;
        }
        all.failed.extend(o.failed);
        all.retried += o.retried;
    }
    all
}

#[test]
fn a_killed_worker_is_replaced_and_the_other_loses_nothing() {
    if !root_or_skip("a_killed_worker_is_replaced_and_the_other_loses_nothing") {
        return;
    }
    let scratch = Scratch::new("procs-kill");
    let mut net = TapNet::new("pk");
    let dir = scratch.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let server = start_nginx(&mut net, &dir, "2");
    let addr: SocketAddr = format!("{}:{NGINX_PORT}", net.server_ip()).parse().unwrap();
    wait_until(Duration::from_secs(10), || attached_workers(&server).len() == 2);
    let before = attached_workers(&server);
    assert_eq!(before.len(), 2, "{}", server.report());
    let victim = before[0];
    let survivor = before[1];
    let mut replaced = false;
    let mut fresh = BTreeMap::new();
    let out = net.clients.enter(|| {
        looping(addr, 50, || {
            std::thread::sleep(Duration::from_secs(2));
            // SAFETY: kill(2) with plain integers; the victim is a worker
            // of our own nginx.
            assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
            // The replacement attached and its inherited listener is live
            // (until then, a SYN on its queue goes to the survivor, which
            // listens: under load, all 40 did once).
            replaced = wait_until(Duration::from_secs(15), || {
                listening_workers(&server).iter().any(|p| !before.contains(p))
            });
            // New connections, spread over the survivor's and the
            // replacement's queues (the looping ones reconnected at once).
            fresh = load(addr, 40, 5);
            std::thread::sleep(Duration::from_secs(1));
        })
    });
    assert!(replaced, "no replacement attached: {}", server.report());
    let after = attached_workers(&server);
    let replacement = *after.iter().find(|p| !before.contains(p)).unwrap();
    let failures = out.failures_by_worker(victim, survivor);
    let served = &out.served;
    println!(
        "procs_tap kill: victim {victim}, survivor {survivor}, replacement {replacement}; served {served:?}; \
         failed connections {failures:?}; retried {}",
        out.retried
    );
    for (who, pid) in [
        ("victim", victim),
        ("survivor", survivor),
        ("replacement", replacement),
    ] {
        measured(
            "procs_tap_kill",
            &format!("{who}_requests"),
            *served.get(&pid).unwrap_or(&0) as f64,
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
    println!("procs_tap kill: 40 new connections after the replacement attached: {fresh:?}");
    assert!(
        fresh.get(&replacement).is_some_and(|&n| n > 0),
        "the replacement served none of 40 new connections: {fresh:?}"
    );
    assert!(served.get(&survivor).is_some_and(|&n| n > 0), "{served:?}");
    let mut server = server;
    assert!(!server.exited(), "nginx died: {}", server.report());
    // The owner leaves (and cleans up) once the workers are gone.
    drop(server);
    net.clear();
}

#[test]
fn a_reload_under_load_fails_no_request() {
    if !root_or_skip("a_reload_under_load_fails_no_request") {
        return;
    }
    let scratch = Scratch::new("procs-reload");
    let mut net = TapNet::new("pr");
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let args = nginx(&dir, "2");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let place = net.place(leg).with_env("ACCEL_PROCS", "multi");
        let mut server = Proc::spawn(&dir, "nginx", &place, LIMIT, &args);
        let addr: SocketAddr = format!("{}:{NGINX_PORT}", net.server_ip()).parse().unwrap();
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        let conf = dir.join("nginx.conf");
        let conf = conf.to_str().unwrap();
        let prefix = dir.display().to_string();
        if leg == Leg::Accel {
            wait_until(Duration::from_secs(10), || attached_workers(&server).len() == 2);
        }
        let before = attached_workers(&server);
        let mut settled = true;
        let out = net.clients.enter(|| {
            looping(addr, 50, || {
                std::thread::sleep(Duration::from_secs(2));
                accel_tests::net::run("nginx", &["-p", &prefix, "-c", conf, "-s", "reload"]);
                if leg == Leg::Accel {
                    // New workers attach, the old ones leave.
                    settled = wait_until(Duration::from_secs(30), || {
                        let log = server.accel_log();
                        attached_workers(&server).len() == 4
                            && before.iter().all(|p| log.contains(&format!("process {p} left")))
                    });
                } else {
                    std::thread::sleep(Duration::from_secs(3));
                }
                std::thread::sleep(Duration::from_secs(2));
            })
        });
        let new: Vec<u32> = out
            .served
            .keys()
            .copied()
            .filter(|p| !before.contains(p))
            .collect();
        println!(
            "procs_tap reload ({}): served {:?}; failed {:?}; retried {} (idle keep-alive connections closed by old workers)",
            leg.name(),
            out.served,
            out.failed,
            out.retried
        );
        measured(
            "procs_tap_reload",
            &format!("{}_failed", leg.name()),
            out.failed.len() as f64,
            "req",
        );
        measured(
            "procs_tap_reload",
            &format!("{}_retried", leg.name()),
            out.retried as f64,
            "req",
        );
        if leg == Leg::Accel {
            // Connections an old worker's stack took that nginx never
            // accepted there, handed to a new worker (`engine::migrate`).
            let moved: usize = server
                .accel_log()
                .lines()
                .filter_map(|l| {
                    l.split(" connections nobody accepted on port")
                        .next()?
                        .rsplit(' ')
                        .next()?
                        .parse::<usize>()
                        .ok()
                })
                .sum();
            println!("procs_tap reload (accel): {moved} connections nobody accepted moved to a new worker");
            measured("procs_tap_reload", "accel_moved", moved as f64, "conn");
            assert!(
                settled,
                "old workers did not leave or new ones did not attach: {}",
                server.report()
            );
            // No request fails: what an old worker's stack took and nginx
            // never accepted there moves to a new worker (the kernel's one
            // listening socket, shared by all workers, keeps it likewise).
            assert!(
                out.failed.is_empty(),
                "requests failed: {:?}: {}",
                out.failed,
                server.report()
            );
            assert!(
                !new.is_empty(),
                "the new workers served nothing: {:?}",
                out.served
            );
        }
        assert!(!server.exited(), "nginx died: {}", server.report());
        drop(server);
        net.clear();
    }
}

#[test]
fn redis_and_nginx_share_one_address() {
    if !root_or_skip("redis_and_nginx_share_one_address") {
        return;
    }
    let scratch = Scratch::new("procs-two");
    let mut net = TapNet::new("p2");
    let host = net.server_ip();
    let rdir = scratch.join("redis");
    std::fs::create_dir_all(&rdir).unwrap();
    let place = net.place(Leg::Accel).with_env("ACCEL_PROCS", "multi");
    let conf = redis_conf(&rdir);
    let mut redis = Proc::spawn(
        &rdir,
        "redis",
        &place,
        LIMIT,
        &["redis-server", conf.to_str().unwrap()],
    );
    let raddr: SocketAddr = format!("{host}:{REDIS_PORT}").parse().unwrap();
    wait_for_port(&net.clients, raddr, &mut redis, Duration::from_secs(60));
    let ndir = scratch.join("nginx");
    std::fs::create_dir_all(&ndir).unwrap();
    let args = nginx(&ndir, "2");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let place: Place = net.place(Leg::Accel).with_env("ACCEL_PROCS", "multi");
    let mut nginx = Proc::spawn(&ndir, "nginx", &place, LIMIT, &args);
    let naddr: SocketAddr = format!("{host}:{NGINX_PORT}").parse().unwrap();
    wait_for_port(&net.clients, naddr, &mut nginx, Duration::from_secs(60));
    let items = dataset(2000, 4096, 12);
    let (per_pid, redis_t) = net.clients.enter(|| {
        std::thread::scope(|sc| {
            let h = sc.spawn(|| load(naddr, 100, 10));
            let r = redis_set_get(raddr, &items);
            (h.join().unwrap(), r)
        })
    });
    println!(
        "procs_tap two programs: redis {} SET+GET pairs at {:.0}/s; nginx per worker {per_pid:?}",
        items.len(),
        redis_t.rps()
    );
    measured("procs_tap_two", "redis_rps", redis_t.rps(), "req/s");
    assert_eq!(per_pid.values().sum::<usize>(), 1000);
    assert_eq!(per_pid.len(), 2, "both nginx workers serve: {per_pid:?}");
    assert!(
        redis.accel_log().contains("port shared (ACCEL_PROCS)"),
        "{}",
        redis.report()
    );
    assert!(!redis.exited() && !nginx.exited());
    drop((redis, nginx));
    net.clear();
}

#[test]
fn an_idle_two_worker_nginx_and_its_owner_cost_under_one_percent_of_a_core() {
    if !root_or_skip("an_idle_two_worker_nginx_and_its_owner_cost_under_one_percent_of_a_core") {
        return;
    }
    let scratch = Scratch::new("procs-idle");
    let mut net = TapNet::new("pi");
    let dir = scratch.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let server = start_nginx(&mut net, &dir, "2");
    let addr: SocketAddr = format!("{}:{NGINX_PORT}", net.server_ip()).parse().unwrap();
    // Both workers attach (the first requests start their stacks).
    net.clients.enter(|| load(addr, 20, 2));
    wait_until(Duration::from_secs(10), || attached_workers(&server).len() == 2);
    let ws = attached_workers(&server);
    assert_eq!(ws.len(), 2, "{}", server.report());
    let conf = dir.join("nginx.conf");
    let mut pids: Vec<u32> = pids_named(&format!("nginx: master process nginx -p {}", dir.display()));
    pids.extend(&ws);
    // Our owner: the one that moved the tap into our clients' namespace.
    let ours = format!("ACCEL_TAP_NETNS={}\0", net.clients.name);
    let owners: Vec<u32> = pids_named("accel-owner")
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|e| e.windows(ours.len()).any(|w| w == ours.as_bytes()))
        })
        .collect();
    pids.extend(&owners);
    assert_eq!(owners.len(), 1, "not one accel-owner for this port: {owners:?}");
    std::thread::sleep(Duration::from_secs(1));
    let t0: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let t1: u64 = pids
        .iter()
        .zip(&t0)
        .map(|(&p, &before)| cpu_ticks(p).saturating_sub(before))
        .sum();
    let secs = start.elapsed().as_secs_f64();
    // SAFETY: sysconf takes a plain integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let pct = t1 as f64 / hz / secs * 100.0;
    println!(
        "procs_tap idle: nginx master + 2 workers + owner ({pids:?}, {}): {pct:.2} % of a core over {secs:.1} s",
        conf.display()
    );
    measured("procs_tap_idle", "nginx2_and_owner_cpu", pct, "% of a core");
    assert!(pct <= 1.0, "idle cost {pct:.2} % > 1 %: {}", server.report());
    drop(server);
    net.clear();
}
