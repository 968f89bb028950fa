//! nginx serving HTTPS, accelerated on a tap: OpenSSL's reads and writes
//! on the stack's sockets (issue 10, item 4).
//!
//! The test makes a self-signed certificate for 198.18.0.2 with
//! `openssl req -x509`; nginx (one worker, `ssl` on its listener) serves
//! files of 0 B, 1 KiB, 100,003 B, 1 MiB and 8 MiB. From the clients'
//! namespace, `curl --cacert` fetches each and the body must equal the
//! file byte for byte, and `openssl s_client -CAfile` must complete the
//! handshake with "Verify return code: 0 (ok)" and get an answer to a
//! request sent through it. The kernel baseline (plain nginx on a veth)
//! runs first, the same way.
//!
//! Port 18443.

use accel_tests::net::{root_or_skip, run, wait_for_port, Leg, Place, Proc, TapNet};
use accel_tests::{bytes, Scratch};
use std::path::Path;
use std::time::Duration;

const PORT: u16 = 18443;
const LIMIT: Duration = Duration::from_secs(300);
const FILES: [(&str, usize); 5] = [
    ("empty", 0),
    ("1k", 1024),
    ("odd", 100_003),
    ("1m", 1 << 20),
    ("8m", 8 << 20),
];

/// A self-signed certificate and key for the stack's address, in `dir`.
fn certificate(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem").to_str().unwrap().to_owned();
    let key = dir.join("key.pem").to_str().unwrap().to_owned();
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=198.18.0.2",
            "-addext",
            "subjectAltName=IP:198.18.0.2",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    );
    (cert, key)
}

/// Writes nginx.conf (HTTPS on `PORT`, the site in `site/www`) and
/// returns the command line that runs it in the foreground.
fn nginx(dir: &Path, site: &Path, cert: &str, key: &str) -> Vec<String> {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\nevents {{ worker_connections 256; }}\n\
         http {{\n  sendfile on;\n  access_log off;\n  default_type application/octet-stream;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen {PORT} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
         root {}/www;\n  }}\n}}\n",
        site.display()
    );
    accel_tests::nginx_command(dir, &conf)
}

#[test]
fn nginx_https_over_tap_serves_kernel_clients() {
    if !root_or_skip("nginx_https_over_tap_serves_kernel_clients") {
        return;
    }
    let scratch = Scratch::new("https");
    let www = scratch.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let files: Vec<(&str, Vec<u8>)> = FILES
        .iter()
        .map(|&(name, len)| {
            let body = bytes(len, len as u64 + 11);
            std::fs::write(www.join(name), &body).unwrap();
            (name, body)
        })
        .collect();
    let (cert, key) = certificate(scratch.path());
    let mut net = TapNet::new("pahs");
    let host = net.server_ip();
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let args = nginx(&dir, scratch.path(), &cert, &key);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Proc::spawn(&dir, "nginx", &net.place(leg), LIMIT, &args);
        let addr = format!("{host}:{PORT}").parse().unwrap();
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        let clients = Place::kernel(&net.clients);

        for (name, body) in &files {
            let out = dir.join(format!("{name}.got"));
            let url = format!("https://{host}:{PORT}/{name}");
            let mut curl = Proc::spawn(
                &dir,
                &format!("curl-{name}"),
                &clients,
                Duration::from_secs(120),
                &[
                    "curl",
                    "-sS",
                    "--fail",
                    "--noproxy",
                    "*",
                    "--max-time",
                    "100",
                    "--cacert",
                    &cert,
                    "-o",
                    out.to_str().unwrap(),
                    &url,
                ],
            );
            curl.finish_against(Duration::from_secs(130), &mut server);
            let got = std::fs::read(&out).unwrap_or_else(|e| panic!("{name}: {e}: {}", curl.report()));
            assert_eq!(got.len(), body.len(), "{} {name}: length", leg.name());
            let first = got.iter().zip(body).position(|(a, b)| a != b);
            assert!(
                first.is_none(),
                "{} {name}: bodies differ from byte {first:?}",
                leg.name()
            );
            println!("https {}: {name} ({} B) identical", leg.name(), body.len());
        }

        // openssl s_client: the handshake, the verification against the
        // certificate as CA, and a request through the session.
        let script = format!(
            "printf 'GET /1k HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n' | \
             openssl s_client -connect {host}:{PORT} -CAfile {cert} -verify_return_error -ign_eof"
        );
        let mut s_client = Proc::spawn(
            &dir,
            "s_client",
            &clients,
            Duration::from_secs(60),
            &["bash", "-c", &script],
        );
        s_client.finish_against(Duration::from_secs(70), &mut server);
        // The body is binary: the output is read as bytes.
        let out = std::fs::read(dir.join("s_client.out")).unwrap();
        let out = String::from_utf8_lossy(&out);
        for want in [
            "Verify return code: 0 (ok)",
            "HTTP/1.1 200 OK",
            "Content-Length: 1024",
        ] {
            assert!(
                out.contains(want),
                "{}: s_client: no {want:?}: {}",
                leg.name(),
                s_client.report()
            );
        }
        assert!(!server.exited(), "nginx died: {}", server.report());
        drop(server);
        net.clear();
    }
}
