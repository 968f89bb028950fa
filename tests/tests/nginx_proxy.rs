//! nginx as a reverse proxy whose upstream is on the stack too (issue 10,
//! item 4.2): one accelerated nginx (master and one worker) accepts
//! clients on port 18090 and `proxy_pass`es to a second `server` of the
//! same nginx at 198.18.0.2:18091. Both hops are on the stack: the
//! worker's connect to the upstream is an accelerated outgoing connection
//! to the stack's own address, which the stack loops back.
//!
//! From the clients' namespace, curl fetches files of 0 B to 8 MiB through
//! `/ka/` (an `upstream` with `keepalive`, `proxy_http_version 1.1` and
//! `proxy_set_header Connection ""`) and through `/close/` (a connection
//! per request); each body must equal the file byte for byte. The
//! upstream server's access log (`$connection $connection_requests`) must
//! show connections reused through `/ka/` and never through `/close/`.
//! Then `wrk` for 3 s through each must see no error. The kernel baseline
//! (plain nginx on a veth) runs first, the same way.

use accel_tests::net::{measured, root_or_skip, wait_for_port, Leg, Place, Proc, TapNet};
use accel_tests::{bytes, Scratch};
use std::path::Path;
use std::time::Duration;

const PORT: u16 = 18090;
const UPSTREAM: u16 = 18091;
const LIMIT: Duration = Duration::from_secs(300);
const FILES: [(&str, usize); 5] = [
    ("empty", 0),
    ("1k", 1024),
    ("odd", 100_003),
    ("1m", 1 << 20),
    ("8m", 8 << 20),
];

/// Writes nginx.conf and returns the command line that runs it.
fn nginx(dir: &Path, site: &Path) -> Vec<String> {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  sendfile on;\n  access_log off;\n  default_type application/octet-stream;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         log_format conn '$connection $connection_requests $request_uri';\n\
         upstream ka {{ server 198.18.0.2:{UPSTREAM}; keepalive 8; }}\n\
         server {{\n    listen {PORT};\n\
             location /ka/ {{ proxy_pass http://ka/; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
             location /close/ {{ proxy_pass http://198.18.0.2:{UPSTREAM}/; }}\n  }}\n\
         server {{\n    listen 198.18.0.2:{UPSTREAM};\n    access_log {d}/upstream.log conn;\n\
             keepalive_requests 1000000;\n    root {}/www;\n  }}\n}}\n",
        site.display()
    );
    accel_tests::nginx_command(dir, &conf)
}

/// The requests of the upstream's access log whose URI ends with `tag`
/// (the query string each request carries), as (connection number,
/// requests made on that connection so far) pairs.
fn upstream_requests(dir: &Path, tag: &str) -> Vec<(u64, u64)> {
    let log = std::fs::read_to_string(dir.join("upstream.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.ends_with(tag))
        .map(|l| {
            let mut f = l.split_whitespace();
            let c = f.next().and_then(|v| v.parse().ok()).unwrap();
            let r = f.next().and_then(|v| v.parse().ok()).unwrap();
            (c, r)
        })
        .collect()
}

/// wrk for 3 s against `url`: requests/s; panics on a socket error or a
/// non-2xx answer.
fn wrk(dir: &Path, place: &Place, url: &str, name: &str) -> f64 {
    let mut w = Proc::spawn(
        dir,
        name,
        place,
        Duration::from_secs(60),
        &["wrk", "-t", "1", "-c", "8", "-d", "3s", "--timeout", "5s", url],
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
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec: {}", w.report()))
}

#[test]
fn nginx_proxies_to_an_upstream_on_the_stack() {
    if !root_or_skip("nginx_proxies_to_an_upstream_on_the_stack") {
        return;
    }
    let test = "nginx_proxy";
    let scratch = Scratch::new("nginx-proxy");
    let www = scratch.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let files: Vec<(&str, Vec<u8>)> = FILES
        .iter()
        .map(|&(name, len)| {
            let body = bytes(len, len as u64 + 17);
            std::fs::write(www.join(name), &body).unwrap();
            (name, body)
        })
        .collect();
    let mut net = TapNet::new("papx");
    let host = net.server_ip();
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let args = nginx(&dir, scratch.path());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Proc::spawn(&dir, "nginx", &net.place(leg), LIMIT, &args);
        let addr = format!("{host}:{PORT}").parse().unwrap();
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        let clients = Place::kernel(&net.clients);

        for path in ["ka", "close"] {
            for (name, body) in &files {
                // Three fetches on one client connection: with /ka/ the
                // proxy keeps its upstream connection between them.
                let outs: Vec<_> = (0..3).map(|i| dir.join(format!("{path}-{name}-{i}"))).collect();
                let mut args = vec!["curl", "-sS", "--fail", "--noproxy", "*", "--max-time", "100"];
                let urls: Vec<String> = (0..3)
                    .map(|i| format!("http://{host}:{PORT}/{path}/{name}?{path}{i}"))
                    .collect();
                for (o, u) in outs.iter().zip(&urls) {
                    args.extend(["-o", o.to_str().unwrap(), u.as_str()]);
                }
                let mut curl = Proc::spawn(
                    &dir,
                    &format!("curl-{path}-{name}"),
                    &clients,
                    Duration::from_secs(120),
                    &args,
                );
                curl.finish_against(Duration::from_secs(130), &mut server);
                for o in &outs {
                    let got = std::fs::read(o)
                        .unwrap_or_else(|e| panic!("{}: {e}: {}", o.display(), curl.report()));
                    assert_eq!(got.len(), body.len(), "{} /{path}/{name}: length", leg.name());
                    let first = got.iter().zip(body).position(|(a, b)| a != b);
                    assert!(
                        first.is_none(),
                        "{} /{path}/{name}: bodies differ from byte {first:?}",
                        leg.name()
                    );
                }
            }
            println!(
                "nginx_proxy {}: /{path}/: every file identical, 3 times each",
                leg.name()
            );
        }
        // The upstream's view: connections reused through /ka/ only.
        let ka: Vec<(u64, u64)> = (0..3)
            .flat_map(|i| upstream_requests(&dir, &format!("?ka{i}")))
            .collect();
        let close: Vec<(u64, u64)> = (0..3)
            .flat_map(|i| upstream_requests(&dir, &format!("?close{i}")))
            .collect();
        assert_eq!(
            (ka.len(), close.len()),
            (15, 15),
            "upstream log: {ka:?} {close:?}"
        );
        assert!(
            ka.iter().any(|&(_, r)| r > 1),
            "/ka/ never reused an upstream connection: {ka:?}"
        );
        assert!(
            close.iter().all(|&(_, r)| r == 1),
            "/close/ reused a connection: {close:?}"
        );
        let reused = ka.iter().filter(|&&(_, r)| r > 1).count();
        println!(
            "nginx_proxy {}: {reused} of 15 /ka/ requests on a reused upstream connection",
            leg.name()
        );

        for path in ["ka", "close"] {
            let rps = wrk(
                &dir,
                &clients,
                &format!("http://{host}:{PORT}/{path}/1k"),
                &format!("wrk-{path}"),
            );
            println!(
                "nginx_proxy {}: wrk -c 8 -d 3 through /{path}/: {rps:.0} requests/s",
                leg.name()
            );
            measured(test, &format!("{}_{path}_wrk_rps", leg.name()), rps, "req/s");
        }
        assert!(!server.exited(), "nginx died: {}", server.report());
        drop(server);
        net.clear();
    }
}
