//! Programs that fork with accelerated connections (issue 10, item 3),
//! accelerated over `--tap`, each beside the kernel baseline (the same
//! server in a namespace on a veth), with kernel clients in the clients'
//! namespace:
//!
//! - `tests/programs/fork_echo.c`, a server that forks a child per
//!   accepted connection and closes its own copy (PostgreSQL's postmaster,
//!   inetd), and the same server serving every connection itself: 64-byte
//!   round trips over one connection (the cost per call of a connection
//!   served from a child through the parent's proxy), and over 8 at once,
//!   every byte checked; 3 rounds that alternate the servers, medians
//!   reported. Accelerated, the parent serving is measured also with
//!   `ACCEL_SPIN_US=0` (its waits sleep at once, as the proxy thread's
//!   do), which leaves the proxy's two socketpair hops as the difference;
//! - PostgreSQL 15 (Debian's), run as user `postgres` with the
//!   capabilities the tap needs: `pgbench -c 8 -T $ACCEL_PGBENCH_SECS`
//!   (default 5) from the clients' namespace, with no failed transaction,
//!   and the balances consistent afterwards (accounts, tellers, branches
//!   and the history's deltas sum alike, one history row per
//!   transaction);
//! - redis with 4 clients connected that keep working while it forks for
//!   `BGSAVE` and for `BGREWRITEAOF` (its children never touch the
//!   connections; 200 us per key keeps them busy for a while): every
//!   reply checked, the data read back afterwards, the
//!   dump and the append-only file checked by `redis-check-rdb` and
//!   `redis-check-aof`.
//!
//! Ports: 17301 (echo), 17302 (redis), 17303 (PostgreSQL).

use accel_tests::clients::echo_rr;
use accel_tests::net::{
    measured, repo, root_or_skip, skip, wait_for_port, wait_until, Leg, Netns, Place, Proc, TapNet,
};
use accel_tests::{command, output, Scratch};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const ECHO_PORT: u16 = 17301;
const REDIS_PORT: u16 = 17302;
const PG_PORT: u16 = 17303;
const LIMIT: Duration = Duration::from_secs(300);
/// Rounds of the echo figures (each server started once per round).
const ECHO_ROUNDS: usize = 3;
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Builds `tests/programs/fork_echo.c` into `dir`.
fn build_echo(dir: &Path) -> String {
    let exe = dir.join("fork_echo");
    let built = output(
        command("cc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(repo("tests/programs/fork_echo.c")),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    exe.to_str().unwrap().to_owned()
}

#[test]
fn a_forked_child_serves_its_connection_and_what_it_costs() {
    if !root_or_skip("a_forked_child_serves_its_connection_and_what_it_costs") {
        return;
    }
    let test = "fork_echo";
    let scratch = Scratch::new("fork-echo");
    let exe = build_echo(scratch.path());
    let mut net = TapNet::new("fe");
    let addr: SocketAddr = format!("{}:{ECHO_PORT}", net.server_ip()).parse().unwrap();
    // Figures by name, one per round: the rounds alternate the servers,
    // so that the load of this shared machine, which drifts, weighs on
    // each alike; the medians are the figures.
    let mut figures: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in 0..ECHO_ROUNDS {
        for leg in [Leg::Kernel, Leg::Accel] {
            // (figure name, the server's mode, whether its waits spin
            // first): accelerated, the parent serving also without
            // spinning, as the proxy thread serves (it never spins).
            let runs: &[(&str, &str, bool)] = match leg {
                Leg::Kernel => &[("inline", "inline", true), ("fork", "fork", true)],
                Leg::Accel => &[
                    ("inline", "inline", true),
                    ("inline_nospin", "inline", false),
                    ("fork", "fork", true),
                ],
            };
            for &(what, mode, spin) in runs {
                let name = format!("{}_{what}", leg.name());
                let dir = scratch.join(&format!("{name}-{round}"));
                std::fs::create_dir_all(&dir).unwrap();
                let mut place = net.place(leg);
                if !spin {
                    place = place.with_env("ACCEL_SPIN_US", "0");
                }
                let mut server =
                    Proc::spawn(&dir, "echo", &place, LIMIT, &[&exe, &ECHO_PORT.to_string(), mode]);
                assert!(
                    wait_until(Duration::from_secs(30), || server.stdout().contains("echo ready")),
                    "the echo server did not start: {}",
                    server.report()
                );
                wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
                for (conns, rounds) in [(1, 3000), (8, 500)] {
                    let rt = net.clients.enter(|| echo_rr(addr, conns, rounds, 64));
                    assert_eq!(rt.count, (conns * rounds) as u64);
                    println!(
                        "{test} round {round} {name} {conns}c: {} round trips in {:.2?}, p50 {:?}, p99 {:?}",
                        rt.count,
                        rt.elapsed,
                        rt.quantile(0.5),
                        rt.quantile(0.99)
                    );
                    let mut add = |k: String, v: f64| figures.entry(k).or_default().push(v);
                    add(format!("{name}_{conns}c_rps"), rt.rps());
                    add(
                        format!("{name}_{conns}c_p50"),
                        rt.quantile(0.5).as_secs_f64() * 1e6,
                    );
                }
                if leg == Leg::Accel && mode == "fork" {
                    let log = server.accel_log();
                    assert!(log.contains("reachable through its proxy"), "{}", server.report());
                }
                assert!(!server.exited(), "the server died: {}", server.report());
                drop(server);
                if leg == Leg::Accel {
                    net.clear();
                }
            }
        }
    }
    let median = |k: &str| {
        let mut v = figures.get(k).cloned().unwrap_or_default();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    for k in figures.keys() {
        let unit = if k.ends_with("_rps") { "req/s" } else { "us" };
        measured(test, k, median(k), unit);
    }
    // What a round trip through the proxy costs over one the parent serves
    // (as configured: its waits spin 50 us first), and over one it serves
    // sleeping at once as the proxy does (the socketpair hops alone).
    let fork = median("accel_fork_1c_p50");
    measured(test, "proxy_cost_p50", fork - median("accel_inline_1c_p50"), "us");
    measured(
        test,
        "proxy_cost_nospin_p50",
        fork - median("accel_inline_nospin_1c_p50"),
        "us",
    );
}

/// A RESP reply.
#[derive(Debug, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

/// A RESP client on one connection.
struct Redis {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Redis {
    fn connect(addr: SocketAddr) -> Redis {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Redis {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    fn cmd(&mut self, args: &[&[u8]]) -> Resp {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&req).expect("redis: send");
        self.reply()
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("redis: read");
        assert!(l.ends_with("\r\n"), "redis: a cut reply: {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    fn reply(&mut self) -> Resp {
        let l = self.line();
        let (kind, rest) = l.split_at(1);
        match kind {
            "+" => Resp::Simple(rest.to_owned()),
            "-" => Resp::Error(rest.to_owned()),
            ":" => Resp::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Resp::Bulk(None);
                }
                let mut b = vec![0u8; n as usize + 2];
                self.r.read_exact(&mut b).expect("redis: read bulk");
                b.truncate(n as usize);
                Resp::Bulk(Some(b))
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                Resp::Array((0..n.max(0)).map(|_| self.reply()).collect())
            }
            _ => panic!("redis: not RESP: {l:?}"),
        }
    }

    /// `INFO persistence`'s field `name`.
    fn persistence(&mut self, name: &str) -> String {
        let Resp::Bulk(Some(info)) = self.cmd(&[b"INFO", b"persistence"]) else {
            panic!("INFO did not answer");
        };
        let info = String::from_utf8(info).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {info}"))
            .to_owned()
    }
}

/// The value of key `i` of client `c`.
fn value(c: usize, i: usize, round: usize) -> Vec<u8> {
    accel_tests::bytes(64 + (i * 37) % 2000, (c * 1_000_003 + i * 7 + round) as u64)
}

/// Stores `keys` keys per client (round `round`'s values) and reads each
/// back, on every client.
fn set_get_all(clients: &mut [Redis], keys: usize, round: usize) {
    for (c, r) in clients.iter_mut().enumerate() {
        for i in 0..keys {
            let k = format!("c{c}-k{i}");
            assert_eq!(
                r.cmd(&[b"SET", k.as_bytes(), &value(c, i, round)]),
                Resp::Simple("OK".into())
            );
        }
        for i in 0..keys {
            let k = format!("c{c}-k{i}");
            assert_eq!(
                r.cmd(&[b"GET", k.as_bytes()]),
                Resp::Bulk(Some(value(c, i, round))),
                "{k}"
            );
        }
    }
}

/// Starts `what` (`BGSAVE`, `BGREWRITEAOF`) on the first client and keeps
/// every client working (writes and reads, checked) until redis reports
/// it done (`flag` back to 0) with status ok (`status`); the rounds of
/// work done meanwhile.
fn while_forked(clients: &mut [Redis], what: &str, flag: &str, status: &str, keys: usize) -> usize {
    let started = clients[0].cmd(&[what.as_bytes()]);
    assert!(matches!(started, Resp::Simple(_)), "{what}: {started:?}");
    let t0 = Instant::now();
    let mut rounds = 0;
    // The child is there (200 us per key keeps it a while): every client
    // works until it is gone.
    while clients[0].persistence(flag) != "0" {
        rounds += 1;
        // Values that change while the child writes the parent's memory.
        set_get_all(clients, keys / 10, 1000 + rounds);
        assert!(t0.elapsed() < Duration::from_secs(120), "{what} did not end");
    }
    assert_eq!(clients[0].persistence(status), "ok", "{what}");
    rounds
}

#[test]
fn redis_forks_for_bgsave_and_bgrewriteaof_while_clients_work() {
    if !root_or_skip("redis_forks_for_bgsave_and_bgrewriteaof_while_clients_work") {
        return;
    }
    let test = "fork_redis";
    let scratch = Scratch::new("fork-redis");
    let mut net = TapNet::new("fr");
    let addr: SocketAddr = format!("{}:{REDIS_PORT}", net.server_ip()).parse().unwrap();
    let keys = 2000;
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port {REDIS_PORT}\nbind 0.0.0.0\nprotected-mode no\ndaemonize no\nsave \"\"\n\
                 appendonly no\ndir {}\nlogfile \"\"\ndatabases 1\nrdb-key-save-delay 200\n",
                dir.display()
            ),
        )
        .unwrap();
        let place = net.place(leg);
        let mut server = Proc::spawn(
            &dir,
            "redis-server",
            &place,
            LIMIT,
            &["redis-server", conf.to_str().unwrap()],
        );
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        let t0 = Instant::now();
        let (save_rounds, aof_rounds) = net.clients.enter(|| {
            let mut clients: Vec<Redis> = (0..4).map(|_| Redis::connect(addr)).collect();
            set_get_all(&mut clients, keys, 0);
            let save = while_forked(
                &mut clients,
                "BGSAVE",
                "rdb_bgsave_in_progress",
                "rdb_last_bgsave_status",
                keys,
            );
            let aof = while_forked(
                &mut clients,
                "BGREWRITEAOF",
                "aof_rewrite_in_progress",
                "aof_last_bgrewrite_status",
                keys,
            );
            // Everything as last written, on every connection; they all
            // still work.
            set_get_all(&mut clients, keys, 7);
            assert_eq!(clients[3].cmd(&[b"DBSIZE"]), Resp::Int(4 * keys as i64));
            (save, aof)
        });
        println!(
            "{test} {}: BGSAVE with {save_rounds} rounds of work meanwhile, BGREWRITEAOF with {aof_rounds}, {:.2?} in all",
            leg.name(),
            t0.elapsed()
        );
        measured(
            test,
            &format!("{}_seconds", leg.name()),
            t0.elapsed().as_secs_f64(),
            "s",
        );
        // The clients worked while the children ran.
        assert!(save_rounds >= 1 && aof_rounds >= 1, "{save_rounds} {aof_rounds}");
        assert!(!server.exited(), "redis died: {}", server.report());
        let log = server.stdout() + &server.stderr();
        assert!(
            log.contains("Background saving terminated with success"),
            "{}",
            server.report()
        );
        assert!(log.contains("Background AOF rewrite"), "{}", server.report());
        // The files the children wrote hold the data.
        let rdb = output(command("redis-check-rdb").arg(dir.join("dump.rdb")));
        let rdb_out = String::from_utf8_lossy(&rdb.stdout).into_owned();
        assert!(
            rdb.status.success() && rdb_out.contains("RDB looks OK"),
            "{rdb_out}"
        );
        assert!(rdb_out.contains(&format!("{} keys read", 4 * keys)), "{rdb_out}");
        let aof_dir = dir.join("appendonlydir");
        let base = std::fs::read_dir(&aof_dir)
            .unwrap_or_else(|e| panic!("{}: {e}", aof_dir.display()))
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().contains(".base."))
            .unwrap_or_else(|| panic!("no base file in {}", aof_dir.display()));
        let aof = output(command("redis-check-aof").arg(base.path()));
        let aof_out = String::from_utf8_lossy(&aof.stdout).into_owned();
        assert!(aof.status.success(), "{aof_out}");
        if leg == Leg::Accel {
            let log = server.accel_log();
            assert!(log.contains("reachable through its proxy"), "{}", server.report());
        }
        drop(server);
        if leg == Leg::Accel {
            net.clear();
        }
    }
}

/// Runs `args` as user `postgres` (PostgreSQL refuses root), keeping the
/// capabilities DPDK's tap needs (making the tap, moving it into the
/// clients' namespace).
fn as_postgres(args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "setpriv",
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--inh-caps=+net_admin,+sys_admin",
        "--ambient-caps=+net_admin,+sys_admin",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// Gives `path` (recursively) to user `postgres`.
fn chown_postgres(path: &Path) {
    let r = output(command("chown").args(["-R", "postgres:postgres"]).arg(path));
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

/// A query's one row, `|`-separated, run from `ns`.
fn psql(ns: &Netns, sql: &str) -> String {
    let psql = format!("{PG_BIN}/psql");
    let port = PG_PORT.to_string();
    let out = ns.run(&[
        "timeout",
        "60",
        &psql,
        "-h",
        "198.18.0.2",
        "-p",
        &port,
        "-U",
        "postgres",
        "-Atc",
        sql,
        "postgres",
    ]);
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A pgbench figure from its output (`tps = N`, `...processed: N`).
fn pgbench_figure(out: &str, prefix: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in pgbench's output:\n{out}"))
}

#[test]
fn postgresql_serves_pgbench_from_forked_backends() {
    if !root_or_skip("postgresql_serves_pgbench_from_forked_backends") {
        return;
    }
    let postgres = format!("{PG_BIN}/postgres");
    if !Path::new(&postgres).exists() {
        skip(
            "postgresql_serves_pgbench_from_forked_backends",
            "PostgreSQL 15 is not installed (scripts/install-deps installs it)",
        );
        return;
    }
    let test = "fork_postgresql";
    let secs: u64 = std::env::var("ACCEL_PGBENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let scratch = Scratch::new("fork-pg");
    let mut net = TapNet::new("fp");
    let addr: SocketAddr = format!("{}:{PG_PORT}", net.server_ip()).parse().unwrap();
    let port = PG_PORT.to_string();
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        // The shim's log, which setpriv (still root, and preloaded too)
        // would otherwise create as root's.
        std::fs::write(dir.join("postgres.accel.log"), "").unwrap();
        chown_postgres(&dir);
        let initdb = output(
            command("runuser")
                .args([
                    "-u",
                    "postgres",
                    "--",
                    &format!("{PG_BIN}/initdb"),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-D",
                ])
                .arg(&data),
        );
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(
            conf,
            "listen_addresses = '198.18.0.2'\nport = {PG_PORT}\nunix_socket_directories = '{}'\n\
             fsync = off\nfull_page_writes = off\nmax_connections = 30\nshared_buffers = 32MB",
            dir.display()
        )
        .unwrap();
        let mut hba = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("pg_hba.conf"))
            .unwrap();
        writeln!(hba, "host all all 198.18.0.0/24 trust").unwrap();
        let place = net.place(leg);
        let args = as_postgres(&[&postgres, "-D", data.to_str().unwrap()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Proc::spawn(&dir, "postgres", &place, LIMIT, &args);
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        let pgbench = format!("{PG_BIN}/pgbench");
        let init = net.clients.run(&[
            "timeout",
            "120",
            &pgbench,
            "-h",
            "198.18.0.2",
            "-p",
            &port,
            "-U",
            "postgres",
            "-i",
            "-s",
            "2",
            "postgres",
        ]);
        assert!(
            init.status.success(),
            "pgbench -i: {}\n{}",
            String::from_utf8_lossy(&init.stderr),
            server.report()
        );
        let before = psql(&net.clients, "select sum(abalance) from pgbench_accounts");
        assert_eq!(before, "0");
        let client = Place::kernel(&net.clients);
        let t = secs.to_string();
        let mut bench = Proc::spawn(
            &dir,
            "pgbench",
            &client,
            Duration::from_secs(secs + 120),
            &[
                &pgbench,
                "-h",
                "198.18.0.2",
                "-p",
                &port,
                "-U",
                "postgres",
                "-c",
                "8",
                "-T",
                &t,
                "postgres",
            ],
        );
        bench.finish_against(Duration::from_secs(secs + 130), &mut server);
        let out = bench.stdout();
        println!("{test} {}:\n{out}", leg.name());
        let processed = pgbench_figure(&out, "number of transactions actually processed:");
        let failed = pgbench_figure(&out, "number of failed transactions:");
        let tps = pgbench_figure(&out, "tps =");
        assert_eq!(failed, 0.0, "{out}");
        assert!(processed > 0.0, "{out}");
        measured(test, &format!("{}_tps", leg.name()), tps, "tps");
        measured(
            test,
            &format!("{}_latency_ms", leg.name()),
            pgbench_figure(&out, "latency average ="),
            "ms",
        );
        // Every transaction right: each moved the same delta in an
        // account, a teller and a branch, and wrote one history row.
        let sums = psql(
            &net.clients,
            "select (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from pgbench_tellers), \
             (select sum(bbalance) from pgbench_branches), (select coalesce(sum(delta), 0) from pgbench_history), \
             (select count(*) from pgbench_history)",
        );
        let v: Vec<&str> = sums.split('|').collect();
        assert_eq!(v.len(), 5, "{sums}");
        assert!(
            v[0] == v[1] && v[1] == v[2] && v[2] == v[3],
            "balances disagree: {sums}"
        );
        assert_eq!(
            v[4].parse::<f64>().unwrap(),
            processed,
            "history rows vs transactions: {sums}"
        );
        if leg == Leg::Accel {
            let log = server.accel_log();
            assert!(log.contains("reachable through its proxy"), "{}", server.report());
        }
        assert!(
            server.stop(libc::SIGINT, Duration::from_secs(30)).is_some(),
            "postgres did not stop: {}",
            server.report()
        );
        drop(server);
        if leg == Leg::Accel {
            net.clear();
        }
    }
}
