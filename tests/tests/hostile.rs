//! Hostile and broken peers against nginx (issue 13, part 3): scapy
//! (`tests/programs/hostile.py`, Debian's python3-scapy) in the clients'
//! namespace attacks the server while a legitimate kernel client (curl)
//! is served; each attack's counters, the client's outcome and the
//! server's memory (nginx's RSS; under the shim, the mbufs in use) before
//! and after are printed as `measured:` lines.
//!
//! SYN flood: 2,000 SYNs from 2,000 spoofed on-link addresses (the link
//! is a /16 here, so they all are; none answers ARP), then one request
//! that must be served within a second. The kernel's nginx on a veth
//! (SYN cookies) is the baseline; the accelerated one used to be
//! unreachable for over two minutes (its SYN backlog held by the flood's
//! embryonic connections).
//!
//! The rest, against one accelerated nginx while a legitimate client (a
//! kernel socket in the namespace, one keep-alive connection fetching a
//! 64 KiB file again and again and checking every byte) is served
//! throughout: blind injection into that client's connection (RFC 5961),
//! bad checksums and lengths with garbage TCP and IP options, a raw
//! connection's overlapping and out-of-window segments, one announcing
//! MSS 1, one holding its window closed, one flooding tiny out-of-order
//! segments, eight kernel connections that never read a 16 MiB answer,
//! and ARP frames claiming the client's address. Each scenario prints a
//! row of a table: the input, what the attacker sent, the counters that
//! rose (the shim's stats file, `ACCEL_STATS_FILE`), what the client
//! saw, nginx's RSS and the mbufs in use before and after.
//!
//! Port 18083. Traffic only on the test's own link, 198.18.0.0/16.

use accel_tests::net::{measured, repo, root_or_skip, wait_for_port, wait_until, Leg, Place, Proc, TapNet};
use accel_tests::Scratch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PORT: u16 = 18083;
const LIMIT: Duration = Duration::from_secs(300);
/// Debian's interpreter, which has python3-scapy (not a pyenv one).
const PYTHON: &str = "/usr/bin/python3";
const PAGE: &[u8] = b"hostile peers test page\n";
/// What the legitimate client fetches, and its size.
const LEGIT: &str = "/legit.bin";
const LEGIT_LEN: usize = 64 * 1024;
/// What the slow and broken peers ask for: more than a kernel client's
/// receive buffer holds (6 MiB at most by default).
const BIG: &str = "/big.bin";
const BIG_LEN: usize = 16 << 20;

/// The tests take turns: each times its clients, and two CPUs are few.
static TURN: Mutex<()> = Mutex::new(());

/// `len` bytes that no shift of themselves resembles.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A server under test: nginx (one process) and where it reports.
struct Server {
    proc: Proc,
    dir: PathBuf,
    stats: PathBuf,
}

impl Server {
    /// nginx at `place`, serving `PAGE` on `PORT`, running when this returns.
    fn start(net: &TapNet, leg: Leg, place: Place, dir: &Path) -> Server {
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/index.html"), PAGE).unwrap();
        std::fs::write(dir.join(format!("www{LEGIT}")), pattern(LEGIT_LEN, 7)).unwrap();
        std::fs::write(dir.join(format!("www{BIG}")), pattern(BIG_LEN, 11)).unwrap();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log notice;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             keepalive_requests 1000000;\n  keepalive_timeout 300s;\n  send_timeout 10s;\n\
             server {{ listen {PORT}; root {d}/www; }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let stats = dir.join("accel.stats");
        let place = place.with_env("ACCEL_STATS_FILE", stats.to_str().unwrap());
        let conf = dir.join("nginx.conf");
        let args = ["nginx", "-p", dir.to_str().unwrap(), "-c", conf.to_str().unwrap()];
        let mut proc = Proc::spawn(dir, &format!("nginx-{}", leg.name()), &place, LIMIT, &args);
        let addr = format!("{}:{PORT}", net.server_ip()).parse().unwrap();
        wait_for_port(&net.clients, addr, &mut proc, Duration::from_secs(60));
        Server {
            proc,
            dir: dir.to_owned(),
            stats,
        }
    }

    /// nginx's resident set in KiB.
    fn rss_kb(&self) -> u64 {
        let pid = std::fs::read_to_string(self.dir.join("nginx.pid")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS for nginx (pid {pid:?}): {}", self.proc.report()))
    }

    /// Counter `key` of the shim's last stats line (`None` when it runs
    /// plain, or before the first line). Waits for a line written after
    /// this call, so it counts everything done before.
    fn stat(&self, key: &str) -> Option<u64> {
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
        let before = lines(&self.stats);
        if before == 0 && !wait_until(Duration::from_secs(3), || lines(&self.stats) > 0) {
            return None;
        }
        wait_until(Duration::from_secs(3), || lines(&self.stats) > before);
        let text = std::fs::read_to_string(&self.stats).ok()?;
        let last = text.lines().last()?;
        let at = last.find(&format!("\"{key}\":"))? + key.len() + 3;
        last[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    /// Every counter of a stats line written after this call (waiting up
    /// to 3 s for it): the top-level ones and the interface's (`iface`),
    /// by name. Empty when it runs plain.
    fn stats(&self) -> BTreeMap<String, u64> {
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
        let before = lines(&self.stats);
        wait_until(Duration::from_secs(3), || lines(&self.stats) > before);
        let text = std::fs::read_to_string(&self.stats).unwrap_or_default();
        let mut all = BTreeMap::new();
        let Some(last) = text.lines().last() else {
            return all;
        };
        for part in last.split(['{', ',']) {
            let Some((k, v)) = part.split_once(':') else {
                continue;
            };
            let v = v.trim_end_matches('}');
            if let Ok(v) = v.parse() {
                all.entry(k.trim_matches('"').to_owned()).or_insert(v);
            }
        }
        all
    }

    /// The memory figures: nginx's RSS (KiB) and the mbufs in use.
    fn memory(&self) -> (u64, Option<u64>) {
        (self.rss_kb(), self.stat("mbufs_in_use"))
    }
}

/// One request from the clients' namespace: whether it got the page,
/// and how long it took.
fn fetch(net: &TapNet, dir: &Path, name: &str, max: Duration) -> (bool, Duration) {
    let url = format!("http://{}:{PORT}/", net.server_ip());
    let secs = format!("{:.1}", max.as_secs_f64());
    let args = ["curl", "-sS", "--noproxy", "*", "--max-time", &secs, &url];
    let started = Instant::now();
    let mut c = Proc::spawn(dir, name, &Place::kernel(&net.clients), max * 3, &args);
    let ok = c
        .wait(max * 3 + Duration::from_secs(5))
        .is_some_and(|s| s.success());
    let took = started.elapsed();
    (ok && c.stdout().as_bytes() == PAGE, took)
}

/// Runs attack `what` of hostile.py against the server from the clients'
/// namespace; the frames it sent.
fn attack(net: &TapNet, leg: Leg, dir: &Path, what: &str, args: &[&str]) -> u64 {
    run_py(net, leg, dir, what, args).0
}

/// Runs `what` of hostile.py in the clients' namespace to its end: the
/// count it printed (`sent N`) and its other `NAME VALUE` lines.
fn run_py(net: &TapNet, leg: Leg, dir: &Path, what: &str, args: &[&str]) -> (u64, BTreeMap<String, String>) {
    let mut p = start_py(net, leg, dir, what, args);
    p.finish(Duration::from_secs(130));
    py_result(&p)
}

/// hostile.py's output: `sent N`, then `NAME VALUE` lines.
fn py_result(p: &Proc) -> (u64, BTreeMap<String, String>) {
    let out = p.stdout();
    let mut lines = out.lines();
    let sent = lines
        .next()
        .and_then(|l| l.strip_prefix("sent "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count from {}: {}", p.name, p.report()));
    let rest = lines
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (sent, rest)
}

/// Starts `what` of hostile.py in the clients' namespace.
fn start_py(net: &TapNet, leg: Leg, dir: &Path, what: &str, args: &[&str]) -> Proc {
    let script = repo("tests/programs/hostile.py");
    let iface = net.client_iface(leg);
    let port = PORT.to_string();
    let mut full = vec![
        PYTHON,
        script.to_str().unwrap(),
        what,
        &iface,
        net.server_ip(),
        &port,
    ];
    full.extend_from_slice(args);
    Proc::spawn(
        dir,
        &format!("py-{what}-{}", leg.name()),
        &Place::kernel(&net.clients),
        Duration::from_secs(120),
        &full,
    )
}

#[test]
fn a_syn_flood_from_spoofed_addresses_leaves_nginx_serving() {
    if !root_or_skip("a_syn_flood_from_spoofed_addresses_leaves_nginx_serving") {
        return;
    }
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let test = "hostile_syn_flood";
    let scratch = Scratch::new("hostile-syn");
    let mut net = TapNet::with_prefix("hs", 16);
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        let place = net.place(leg);
        let server = Server::start(&net, leg, place, &dir);
        let (ok, _) = fetch(&net, &dir, "curl-before", Duration::from_secs(5));
        assert!(ok, "not served before the flood");
        let (rss0, mbufs0) = server.memory();

        let sent = attack(&net, leg, &dir, "synflood", &["2000"]);
        let (ok, took) = fetch(&net, &dir, "curl-after", Duration::from_secs(2));
        let name = leg.name();
        measured(test, &format!("{name}_syns_sent"), sent as f64, "SYNs");
        measured(
            test,
            &format!("{name}_first_request_after_ms"),
            took.as_secs_f64() * 1e3,
            "ms",
        );
        assert!(
            ok && took < Duration::from_millis(1500),
            "{name}: the request after {sent} spoofed SYNs {} in {took:?}: {}",
            if ok { "took" } else { "failed" },
            server.proc.report()
        );
        // Once ARP has given up on the spoofed addresses (3 s), the
        // embryonic connections are gone.
        std::thread::sleep(Duration::from_secs(4));
        let (rss1, mbufs1) = server.memory();
        measured(test, &format!("{name}_rss_before_kb"), rss0 as f64, "KiB");
        measured(test, &format!("{name}_rss_after_kb"), rss1 as f64, "KiB");
        if leg == Leg::Accel {
            let cookies = server.stat("syn_cookies_sent").unwrap_or(0);
            let conns = server.stat("tcp_conns").unwrap_or(u64::MAX);
            let (m0, m1) = (mbufs0.unwrap_or(0), mbufs1.unwrap_or(0));
            measured(test, "accel_syn_cookies_sent", cookies as f64, "SYN-ACKs");
            measured(test, "accel_mbufs_before", m0 as f64, "mbufs");
            measured(test, "accel_mbufs_after", m1 as f64, "mbufs");
            assert!(cookies > 0, "no SYN cookie sent: {}", server.proc.report());
            assert!(conns <= 2, "{conns} connections left 4 s after the flood");
            assert!(m1 <= m0 + 512, "mbufs in use grew from {m0} to {m1}");
        }
        assert!(
            rss1 <= rss0 + 16 * 1024,
            "{name}: nginx's RSS grew from {rss0} to {rss1} KiB"
        );
        let (ok, _) = fetch(&net, &dir, "curl-end", Duration::from_secs(2));
        assert!(ok, "{name}: not served at the end");
        drop(server);
        net.clear();
    }
}

/// One row of the closing table.
struct Row {
    input: &'static str,
    sent: u64,
    rose: Vec<(String, u64)>,
    client: String,
    rss: (u64, u64),
    mbufs: (u64, u64),
}

/// The accelerated nginx under attack, with what a scenario needs.
struct Range<'a> {
    net: &'a TapNet,
    server: &'a Server,
    dir: PathBuf,
    legit_file: PathBuf,
}

/// What the legitimate client saw during one scenario.
struct Outcome {
    fetches: u64,
    failures: u64,
    reconnects: u64,
}

impl Range<'_> {
    /// Runs scenario `input`: the legitimate client fetching throughout,
    /// `attack` given the client's local port file; the counters that
    /// rose, the client's outcome, the memory before and after. `extra`
    /// is what the attack reported.
    fn scenario(
        &self,
        input: &'static str,
        attack: impl FnOnce(&Path) -> (u64, BTreeMap<String, String>),
    ) -> (Row, BTreeMap<String, u64>, BTreeMap<String, String>, Outcome) {
        let tag = input
            .split_whitespace()
            .next()
            .unwrap_or("x")
            .replace(['/', ','], "");
        let portfile = self.dir.join(format!("{tag}.port"));
        let stopfile = self.dir.join(format!("{tag}.stop"));
        let args = [
            portfile.to_str().unwrap(),
            stopfile.to_str().unwrap(),
            LEGIT,
            self.legit_file.to_str().unwrap(),
        ];
        let mut legit = start_py(self.net, Leg::Accel, &self.dir, "legit", &args);
        assert!(
            wait_until(Duration::from_secs(10), || portfile.exists()),
            "the legitimate client did not connect: {}",
            legit.report()
        );
        let (rss0, mbufs0) = self.server.memory();
        let before = self.server.stats();
        let (sent, extra) = attack(&portfile);
        // Whatever the attack left settles (resets, ACKs, probes).
        std::thread::sleep(Duration::from_millis(300));
        let after = self.server.stats();
        let (rss1, mbufs1) = self.server.memory();
        std::fs::write(&stopfile, b"").unwrap();
        legit.finish(Duration::from_secs(20));
        let (fetches, seen) = py_result(&legit);
        let num = |k: &str| seen.get(k).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
        let out = Outcome {
            fetches,
            failures: num("failures"),
            reconnects: num("reconnects"),
        };
        let mut delta = BTreeMap::new();
        for (k, v) in &after {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            delta.insert(k.clone(), d);
        }
        let row = Row {
            input,
            sent,
            rose: Vec::new(),
            client: format!(
                "{} fetches ({} MiB) checked, {} failed, {} reconnects",
                out.fetches,
                (out.fetches * LEGIT_LEN as u64) >> 20,
                out.failures,
                out.reconnects
            ),
            rss: (rss0, rss1),
            mbufs: (mbufs0.unwrap_or(0), mbufs1.unwrap_or(0)),
        };
        assert!(
            out.fetches > 0 && out.failures == 0 && out.reconnects == 0,
            "{input}: the legitimate client lost something ({}): {}\n=== nginx: {}",
            row.client,
            legit.report(),
            self.server.proc.report()
        );
        assert!(
            row.mbufs.1 <= row.mbufs.0 + 1024,
            "{input}: mbufs in use grew from {} to {}",
            row.mbufs.0,
            row.mbufs.1
        );
        (row, delta, extra, out)
    }
}

/// The counters of `delta` among `keys` that rose, for the table.
fn rose(delta: &BTreeMap<String, u64>, keys: &[&str]) -> Vec<(String, u64)> {
    keys.iter()
        .filter_map(|k| delta.get(*k).filter(|v| **v > 0).map(|v| (k.to_string(), *v)))
        .collect()
}

fn get(delta: &BTreeMap<String, u64>, key: &str) -> u64 {
    delta.get(key).copied().unwrap_or(0)
}

#[test]
fn hostile_peers_are_counted_and_dropped_while_a_client_is_served() {
    if !root_or_skip("hostile_peers_are_counted_and_dropped_while_a_client_is_served") {
        return;
    }
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let test = "hostile_peers";
    let scratch = Scratch::new("hostile-peers");
    let mut net = TapNet::new("hp");
    let leg = Leg::Accel;
    let dir = scratch.join("accel");
    let place = net.place(leg);
    let server = Server::start(&net, leg, place, &dir);
    let started = Instant::now();
    let range = Range {
        net: &net,
        server: &server,
        dir: dir.clone(),
        legit_file: dir.join(format!("www{LEGIT}")),
    };
    let (rss_start, _) = server.memory();
    let py = |what: &str, args: &[&str]| run_py(&net, leg, &dir, what, args);
    let mut rows = Vec::new();

    // Blind injection into the client's own connection (RFC 5961).
    let rounds = 200;
    let (mut row, d, _, _) = range.scenario("blind RST/SYN/data injection (RFC 5961)", |portfile| {
        py("inject", &[portfile.to_str().unwrap(), &rounds.to_string()])
    });
    row.rose = rose(
        &d,
        &[
            "tcp_rst_challenged",
            "tcp_syn_challenged",
            "tcp_ack_invalid",
            "tcp_out_of_window",
            "tcp_challenge_acks",
            "tcp_challenge_acks_limited",
        ],
    );
    let r = rounds as u64;
    assert!(get(&d, "tcp_syn_challenged") >= r * 9 / 10, "{:?}", row.rose);
    assert!(get(&d, "tcp_rst_challenged") >= r / 2, "{:?}", row.rose);
    assert!(get(&d, "tcp_ack_invalid") >= r * 9 / 10, "{:?}", row.rose);
    assert!(get(&d, "tcp_out_of_window") >= r * 9 / 10, "{:?}", row.rose);
    assert!(get(&d, "tcp_challenge_acks_limited") >= r, "{:?}", row.rose);
    assert!(
        get(&d, "tcp_challenge_acks") <= 10,
        "challenge ACKs not rate-limited: {:?}",
        row.rose
    );
    rows.push(row);

    // Bad checksums and lengths, garbage TCP and IP options.
    let count = 100;
    let (mut row, d, _, _) = range.scenario("bad checksums/lengths, garbage TCP and IP options", |_| {
        py("garbage", &[&count.to_string()])
    });
    let keys = [
        "rx_checksum_dropped",
        "drop_tcp_checksum",
        "drop_ip_checksum",
        "drop_ip_malformed",
        "drop_tcp_malformed",
        "drop_ip_options",
    ];
    row.rose = rose(&d, &keys);
    let c = count as u64;
    let sums = get(&d, "rx_checksum_dropped") + get(&d, "drop_tcp_checksum") + get(&d, "drop_ip_checksum");
    assert_eq!(sums, 2 * c, "{:?}", row.rose);
    assert_eq!(get(&d, "drop_ip_malformed"), 2 * c, "{:?}", row.rose);
    assert_eq!(get(&d, "drop_tcp_malformed"), 4 * c, "{:?}", row.rose);
    assert_eq!(get(&d, "drop_ip_options"), 2 * c, "{:?}", row.rose);
    assert_eq!(
        get(&d, "syn_cookies_sent") + get(&d, "tcp_conns"),
        0,
        "a bad SYN was answered"
    );
    rows.push(row);

    // Overlapping segments that disagree, and segments outside the window.
    let (mut row, d, extra, _) = range
        .scenario("overlapping (disagreeing) and out-of-window segments", |_| {
            py("overlap", &[])
        });
    row.rose = rose(&d, &["tcp_out_of_window", "tcp_challenge_acks"]);
    assert_eq!(
        extra.get("ok").map(String::as_str),
        Some("1"),
        "the overlapped request was not served right"
    );
    assert!(get(&d, "tcp_out_of_window") >= 2, "{:?}", row.rose);
    rows.push(row);

    // A tiny MSS.
    let (mut row, d, extra, _) =
        range.scenario("SYN with MSS 1, then a 16 MiB fetch", |_| py("tinymss", &[]));
    row.rose = rose(&d, &["tcp_mss_clamped"]);
    let largest: u64 = extra["largest_segment"].parse().unwrap();
    row.rose.push(("(largest segment sent)".into(), largest));
    assert_eq!(get(&d, "tcp_mss_clamped"), 1, "{:?}", row.rose);
    assert_eq!(
        largest,
        u64::from(accel_stack::tcp::MIN_MSS),
        "segments not clamped to 64 bytes"
    );
    rows.push(row);

    // A zero window held for ever (answered probes).
    // The probes back off from the connection's RTO, which the raw peer
    // stretches (see hostile.py); the stack's count says how many went out,
    // the peer's that they reached it and were answered with the window
    // still closed.
    let (mut row, d, extra, _) = range.scenario(
        "zero window held for 2 probes (at most 30 s), every probe answered",
        |_| py("zerowindow", &["2", "30"]),
    );
    row.rose = rose(&d, &["tcp_window_probes", "tcp_zero_window_dropped"]);
    let probes: u64 = extra["probes"].parse().unwrap();
    assert!(
        probes >= 1 && get(&d, "tcp_window_probes") >= 2,
        "{:?} {extra:?}",
        row.rose
    );
    assert_eq!(extra["bytes_past_window"], "0", "data sent into a closed window");
    rows.push(row);

    // Tiny out-of-order segments, each its own hole.
    let count = 3000;
    let (mut row, d, _, _) = range.scenario("3,000 one-byte out-of-order segments", |_| {
        py("oooflood", &[&count.to_string()])
    });
    row.rose = rose(&d, &["tcp_ooo_refused"]);
    assert!(get(&d, "tcp_ooo_refused") >= count * 9 / 10, "{:?}", row.rose);
    rows.push(row);

    // Kernel clients that never read a 16 MiB answer; memory mid-way.
    let conns = 8;
    let mut mid = (0, None);
    let (mut row, d, extra, _) = range.scenario("8 connections never reading a 16 MiB answer (4 s)", |_| {
        let args = [conns.to_string(), "4".to_owned(), BIG.to_owned()];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = start_py(&net, leg, &dir, "neverread", &args);
        std::thread::sleep(Duration::from_secs(3));
        mid = server.memory();
        p.finish(Duration::from_secs(30));
        py_result(&p)
    });
    row.rose = rose(&d, &["tcp_window_probes", "tcp_zero_window_dropped"]);
    row.rose.push(("(nginx RSS mid-way, KiB)".into(), mid.0));
    row.rose.push(("(mbufs mid-way)".into(), mid.1.unwrap_or(0)));
    let unread: u64 = extra["unread_bytes"].parse().unwrap();
    row.rose.push(("(bytes the clients held unread)".into(), unread));
    assert!(
        mid.0 <= rss_start + 128 * 1024,
        "nginx's RSS reached {} KiB from {rss_start} with {conns} readers stalled",
        mid.0
    );
    assert!(
        unread < (conns as u64) * BIG_LEN as u64,
        "the answers went through: nothing stalled"
    );
    rows.push(row);

    // ARP frames claiming the client's address.
    let count = 200;
    let (mut row, d, _, _) = range
        .scenario("ARP replies/gratuitous ARP claiming the client's address", |_| {
            py("arpspoof", &[&count.to_string()])
        });
    row.rose = rose(&d, &["drop_arp_conflict", "arp_claims_won"]);
    row.rose.push(("(claims won)".into(), get(&d, "arp_claims_won")));
    assert!(get(&d, "drop_arp_conflict") >= count * 9 / 10, "{:?}", row.rose);
    assert_eq!(
        get(&d, "arp_claims_won"),
        0,
        "a spoofed claim won over the live client"
    );
    rows.push(row);

    // Whatever the scenarios left is gone: the connections, the memory.
    let conns_left = wait_until(Duration::from_secs(5), || {
        server.stats().get("tcp_conns").copied().unwrap_or(u64::MAX) == 0
    });
    let (rss_end, _) = server.memory();
    println!("\n| input | sent | counters that rose (by) | legitimate client | nginx RSS KiB before → after | mbufs before → after |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        // A counter rose by so much; a figure in parentheses just is.
        let rose: Vec<String> = r
            .rose
            .iter()
            .map(|(k, v)| {
                if k.starts_with('(') {
                    format!("{k} {v}")
                } else {
                    format!("{k} +{v}")
                }
            })
            .collect();
        println!(
            "| {} | {} | {} | {} | {} → {} | {} → {} |",
            r.input,
            r.sent,
            rose.join(", "),
            r.client,
            r.rss.0,
            r.rss.1,
            r.mbufs.0,
            r.mbufs.1
        );
    }
    println!();
    measured(test, "rss_start_kb", rss_start as f64, "KiB");
    measured(test, "rss_end_kb", rss_end as f64, "KiB");
    measured(test, "seconds", started.elapsed().as_secs_f64(), "s");
    assert!(
        conns_left,
        "connections left after the scenarios: {:?}",
        server.stats()
    );
    assert!(
        rss_end <= rss_start + 64 * 1024,
        "nginx's RSS grew from {rss_start} to {rss_end} KiB"
    );
    let (ok, _) = fetch(&net, &dir, "curl-end", Duration::from_secs(2));
    assert!(ok, "not served at the end");
    drop(server);
    net.clear();
}
