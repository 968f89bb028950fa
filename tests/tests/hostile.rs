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
//! Port 18083. Traffic only on the test's own link, 198.18.0.0/16.

use accel_tests::net::{measured, repo, root_or_skip, wait_for_port, wait_until, Leg, Place, Proc, TapNet};
use accel_tests::Scratch;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PORT: u16 = 18083;
const LIMIT: Duration = Duration::from_secs(300);
/// Debian's interpreter, which has python3-scapy (not a pyenv one).
const PYTHON: &str = "/usr/bin/python3";
const PAGE: &[u8] = b"hostile peers test page\n";

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
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log notice;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
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
    let mut p = Proc::spawn(
        dir,
        &format!("scapy-{what}-{}", leg.name()),
        &Place::kernel(&net.clients),
        Duration::from_secs(120),
        &full,
    );
    p.finish(Duration::from_secs(130));
    p.stdout()
        .trim()
        .strip_prefix("sent ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count from {what}: {}", p.report()))
}

#[test]
fn a_syn_flood_from_spoofed_addresses_leaves_nginx_serving() {
    if !root_or_skip("a_syn_flood_from_spoofed_addresses_leaves_nginx_serving") {
        return;
    }
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
