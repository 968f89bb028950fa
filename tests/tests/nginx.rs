//! nginx accelerated, with sendfile on, serving files of 0 B, 1 KiB,
//! 1 MiB and 100 MiB.
//!
//! `--tap`: nginx (master + 1 worker, then `master_process off`) under
//! `scripts/accel --tap NS`; from NS, curl fetches each file and its
//! sha256 must match, then `wrk -c 100 -d 5` must see no socket error and
//! no non-2xx answer. The kernel baseline (plain nginx in a namespace on a
//! veth) runs the same way first; both print curl's and wrk's figures.
//!
//! `--memif`: nginx and wrk (and curl, for the checksum) each under
//! `scripts/accel --memif`, after the same wrk run over kernel loopback.
//!
//! Ports: 18081 and 18082 (never 80, where Debian's own nginx listens).

use accel_tests::net::{
    measured, root_or_skip, unique, wait_for_port, wait_until, Leg, MemifNet, Netns, Place, Proc, TapNet,
};
use accel_tests::{bytes, Scratch};
use std::path::Path;
use std::time::Duration;

const TAP_PORT: u16 = 18081;
const MEMIF_PORT: u16 = 18082;
const LIMIT: Duration = Duration::from_secs(300);
const FILES: [(&str, usize); 4] = [("empty", 0), ("1k", 1024), ("1m", 1 << 20), ("100m", 100 << 20)];

/// The site: the four files, and their sha256 sums.
fn site(dir: &Path) -> Vec<(&'static str, String)> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    FILES
        .iter()
        .map(|&(name, len)| {
            let path = www.join(name);
            std::fs::write(&path, bytes(len, len as u64 + 3)).unwrap();
            let out = accel_tests::net::run("sha256sum", &[path.to_str().unwrap()]);
            let sum = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
            (name, sum)
        })
        .collect()
}

/// Writes nginx.conf for `port` with the site in `site` and returns the
/// command line that runs it in the foreground.
fn nginx(dir: &Path, site: &Path, port: u16, master: bool) -> Vec<String> {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process {};\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  sendfile on;\n  access_log off;\n  default_type application/octet-stream;\n\
         keepalive_requests 1000000;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{ listen {port}; root {}/www; }}\n}}\n",
        if master { "on" } else { "off" },
        site.display()
    );
    accel_tests::nginx_command(dir, &conf)
}

/// Fetches each file with curl at `place` and checks its sha256.
fn fetch_all(
    dir: &Path,
    place: &Place,
    host: &str,
    port: u16,
    sums: &[(&str, String)],
    test: &str,
    leg: &str,
) {
    for (name, sum) in sums {
        let script = format!(
            "set -o pipefail; curl -sS --fail --noproxy '*' --max-time 120 -w '%{{stderr}}%{{size_download}} \
             %{{speed_download}}\\n' http://{host}:{port}/{name} | sha256sum"
        );
        let mut curl = Proc::spawn(
            dir,
            &format!("curl-{leg}-{name}"),
            place,
            Duration::from_secs(150),
            &["bash", "-c", &script],
        );
        curl.finish(Duration::from_secs(160));
        let got = curl.stdout();
        assert_eq!(
            got.split_whitespace().next(),
            Some(sum.as_str()),
            "{name}: sha256 differs: {}",
            curl.report()
        );
        let figures = curl.stderr();
        let speed: f64 = figures
            .lines()
            .last()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no curl figures: {}", curl.report()));
        if *name == "100m" {
            measured(test, &format!("{leg}_curl_100m_mb_per_s"), speed / 1e6, "MB/s");
        }
    }
}

/// Runs wrk at `place` against `url` and checks it saw no error; returns
/// requests/s and the transfer rate line.
fn wrk(dir: &Path, place: &Place, url: &str, name: &str) -> (f64, String) {
    let mut w = Proc::spawn(
        dir,
        name,
        place,
        Duration::from_secs(60),
        &["wrk", "-t", "1", "-c", "100", "-d", "5s", "--timeout", "5s", url],
    );
    w.finish(Duration::from_secs(70));
    let out = w.stdout();
    assert!(
        !out.contains("Socket errors"),
        "wrk saw socket errors: {}",
        w.report()
    );
    assert!(
        !out.contains("Non-2xx"),
        "wrk saw non-2xx answers: {}",
        w.report()
    );
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {key} in: {}", w.report()))
    };
    let rps: f64 = field("Requests/sec:").parse().unwrap();
    assert!(rps > 0.0, "{}", w.report());
    (rps, field("Transfer/sec:"))
}

#[test]
fn nginx_over_tap_serves_kernel_clients() {
    if !root_or_skip("nginx_over_tap_serves_kernel_clients") {
        return;
    }
    let test = "nginx_tap";
    let scratch = Scratch::new("nginx-tap");
    let sums = site(scratch.path());
    let mut net = TapNet::new("nt");
    let host = net.server_ip();
    for master in [true, false] {
        for leg in [Leg::Kernel, Leg::Accel] {
            let label = format!("{}_{}", leg.name(), if master { "master" } else { "single" });
            let dir = scratch.join(&label);
            std::fs::create_dir_all(&dir).unwrap();
            let args = nginx(&dir, scratch.path(), TAP_PORT, master);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let place = net.place(leg);
            let mut server = Proc::spawn(&dir, "nginx", &place, LIMIT, &args);
            let addr = format!("{host}:{TAP_PORT}").parse().unwrap();
            wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
            let clients = Place::kernel(&net.clients);
            fetch_all(&dir, &clients, host, TAP_PORT, &sums, test, &label);
            let (rps, rate) = wrk(&dir, &clients, &format!("http://{host}:{TAP_PORT}/1k"), "wrk");
            println!("{test} {label}: wrk -c 100 -d 5 on 1 KiB: {rps:.0} requests/s, {rate}/s");
            measured(test, &format!("{label}_wrk_rps"), rps, "req/s");
            assert!(!server.exited(), "nginx died: {}", server.report());
            drop(server);
            net.clear();
        }
    }
}

#[test]
fn nginx_and_wrk_both_over_memif() {
    if !root_or_skip("nginx_and_wrk_both_over_memif") {
        return;
    }
    let test = "nginx_memif";
    let scratch = Scratch::new("nginx-memif");
    let sums = site(scratch.path());

    {
        let ns = Netns::new(&unique("nl"));
        let dir = scratch.join("kernel");
        std::fs::create_dir_all(&dir).unwrap();
        let args = nginx(&dir, scratch.path(), MEMIF_PORT, true);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let place = Place::kernel(&ns);
        let mut server = Proc::spawn(&dir, "nginx", &place, LIMIT, &args);
        wait_for_port(
            &ns,
            format!("127.0.0.1:{MEMIF_PORT}").parse().unwrap(),
            &mut server,
            Duration::from_secs(30),
        );
        let (rps, rate) = wrk(&dir, &place, &format!("http://127.0.0.1:{MEMIF_PORT}/1k"), "wrk");
        println!("{test} kernel loopback: wrk -c 100 -d 5 on 1 KiB: {rps:.0} requests/s, {rate}/s");
        measured(test, "kernel_loopback_wrk_rps", rps, "req/s");
    }

    let dir = scratch.join("memif");
    std::fs::create_dir_all(&dir).unwrap();
    let net = MemifNet::new("nm", &dir);
    let args = nginx(&dir, scratch.path(), MEMIF_PORT, true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Proc::spawn(&dir, "nginx", &net.server(), LIMIT, &args);
    let ip = net.server_ip();
    let url = format!("http://{ip}:{MEMIF_PORT}/1k");
    let mut tries = 0;
    let up = wait_until(Duration::from_secs(90), || {
        tries += 1;
        assert!(!server.exited(), "nginx exited: {}", server.report());
        let mut probe = Proc::spawn(
            &dir,
            &format!("probe{tries}"),
            &net.client(),
            Duration::from_secs(15),
            &[
                "curl",
                "-sS",
                "--fail",
                "--noproxy",
                "*",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                &url,
            ],
        );
        probe.wait(Duration::from_secs(20)).is_some_and(|s| s.success())
    });
    assert!(
        up,
        "nginx not reachable over memif within 90 s ({tries} tries): {}",
        server.report()
    );
    fetch_all(&dir, &net.client(), ip, MEMIF_PORT, &sums, test, "accel_memif");
    let (rps, rate) = wrk(&dir, &net.client(), &url, "wrk");
    println!("{test} accel memif: wrk -c 100 -d 5 on 1 KiB: {rps:.0} requests/s, {rate}/s");
    measured(test, "accel_memif_wrk_rps", rps, "req/s");
    assert!(!server.exited(), "nginx died: {}", server.report());
}
