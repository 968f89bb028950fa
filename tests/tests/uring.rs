//! io_uring on accelerated sockets is refused, clearly (issue 10, item
//! 4.6): `tests/programs/uring.c` (liburing) sends, receives, writes and
//! reads on a connection, accepts on a listener and connects a socket,
//! all through io_uring.
//!
//! - kernel leg (the control): every request works: the echo comes back,
//!   a client from the namespace is accepted, the connect succeeds;
//! - accelerated, linked against liburing.so: every request completes
//!   with EBADF (the shim gives the entries on accelerated sockets fd -1
//!   before liburing publishes them) and the shim's log says
//!   "io_uring is not accelerated";
//! - accelerated, liburing linked statically (raw system calls the shim
//!   cannot see): the requests on the connection reach its kernel
//!   placeholder: each must fail (no data from or to anywhere else) and
//!   none may hang.
//!
//! Ports: the echo server 18600 (in the clients' namespace), the
//! program's listener 18601.

use accel_tests::net::{repo, root_or_skip, Leg, Place, Proc, TapNet};
use accel_tests::{command, output, python, Scratch};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const ECHO: u16 = 18600;
const LISTEN: u16 = 18601;

fn build(dir: &Path, name: &str, link: &str) -> String {
    let exe = dir.join(name);
    let built = output(
        command("cc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(repo("tests/programs/uring.c"))
            .arg(link),
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    exe.to_str().unwrap().to_owned()
}

/// Runs the program at `place` to its end, connecting a client from the
/// namespace to its listener once it listens; its standard output.
fn run(dir: &Path, net: &TapNet, place: &Place, name: &str, args: &[&str]) -> (String, Proc) {
    let mut p = Proc::spawn(dir, name, place, Duration::from_secs(60), args);
    let listening = accel_tests::net::wait_until(Duration::from_secs(30), || {
        p.stdout().contains("listening") || p.exited()
    });
    assert!(listening, "{name} never listened: {}", p.report());
    let addr = format!("{}:{LISTEN}", net.server_ip()).parse().unwrap();
    let client = net
        .clients
        .enter(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok());
    p.finish(Duration::from_secs(70));
    drop(client);
    (p.stdout(), p)
}

#[test]
fn io_uring_on_accelerated_sockets_is_refused_clearly() {
    if !root_or_skip("io_uring_on_accelerated_sockets_is_refused_clearly") {
        return;
    }
    let scratch = Scratch::new("uring");
    let dir = scratch.path();
    let dynamic = build(dir, "uring", "-luring");
    let fixed = build(dir, "uring-static", "-l:liburing.a");
    let mut net = TapNet::new("paur");
    let python = python().to_str().unwrap().to_owned();
    let echo = format!(
        "import socket, threading\n\
         l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         l.bind(('0.0.0.0', {ECHO})); l.listen(16); print('ready', flush=True)\n\
         def h(c):\n    with c:\n        while (d := c.recv(65536)): c.sendall(d)\n\
         while True:\n    c, _ = l.accept(); threading.Thread(target=h, args=(c,), daemon=True).start()\n"
    );
    let mut server = Proc::spawn(
        dir,
        "echo",
        &Place::kernel(&net.clients),
        Duration::from_secs(300),
        &[&python, "-c", &echo],
    );
    assert!(
        accel_tests::net::wait_until(Duration::from_secs(20), || server.stdout().contains("ready")),
        "{}",
        server.report()
    );
    let host = "198.18.0.1";
    let (ep, lp) = (ECHO.to_string(), LISTEN.to_string());

    // The control: the kernel's sockets, io_uring works.
    let place = net.place(Leg::Kernel);
    let (out, _) = run(dir, &net, &place, "kernel", &[&dynamic, host, &ep, &lp]);
    let want = "listening\nsend 4\nrecv 4 ping\nwrite 4\nread 4 pong\naccept fd\nconnect 0\ndone\n";
    assert_eq!(out, want, "the kernel leg");
    net.clear();

    // Accelerated, through liburing.so: refused with EBADF, and said so.
    let place = net.place(Leg::Accel);
    let (out, p) = run(dir, &net, &place, "accel", &[&dynamic, host, &ep, &lp]);
    let want =
        "listening\nsend EBADF\nrecv EBADF\nwrite EBADF\nread EBADF\naccept EBADF\nconnect EBADF\ndone\n";
    assert_eq!(out, want, "accelerated, liburing.so: {}", p.report());
    let log = p.accel_log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("io_uring is not accelerated"))
        .collect();
    assert_eq!(said.len(), 1, "one log line: {log}");
    println!("uring accel: {}", said[0]);
    drop(p);
    net.clear();

    // Accelerated, liburing linked in: the shim cannot see the requests;
    // on the placeholder each fails, and none hangs.
    let place = net.place(Leg::Accel);
    let (out, p) = run(
        dir,
        &net,
        &place,
        "accel-static",
        &[&fixed, host, &ep, &lp, "conn"],
    );
    println!("uring accel, liburing.a:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"listening"), "{}", p.report());
    assert_eq!(lines.last(), Some(&"done"), "{}", p.report());
    assert_eq!(lines.len(), 6, "{}", p.report());
    for l in &lines[1..5] {
        let result = l.split_whitespace().nth(1).unwrap_or("");
        assert!(
            result.starts_with('E'),
            "{l}: a request on an accelerated socket's placeholder did not fail: {}",
            p.report()
        );
    }
    drop(p);
    net.clear();
    assert!(!server.exited(), "the echo server died: {}", server.report());
}
