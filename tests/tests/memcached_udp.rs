//! memcached's UDP server (`-U PORT`, TCP off) accelerated over `--tap`,
//! on the stack's address 198.18.0.2: a UDP server on the stack
//! (issue 10, item 4.3).
//!
//! From the clients' namespace, `tests/programs/memcached_udp.py` speaks
//! memcached's UDP framing (the 8-byte header: request id, sequence,
//! total, reserved): 1,500 keys set and got back one by one (values of 0
//! to 1,300 B), multi-key gets (one message per key),
//! and values up to 60 KB built with `append`, whose replies take up to
//! 44; every reply byte for byte. The kernel baseline (plain memcached on
//! a veth) runs first.
//!
//! Port 11312 (never 11211, where Debian's own memcached listens).

use accel_tests::net::{repo, root_or_skip, Leg, Place, Proc, TapNet};
use accel_tests::{python, Scratch};
use std::time::Duration;

const PORT: u16 = 11312;

#[test]
fn memcached_udp_over_tap_serves_kernel_clients() {
    if !root_or_skip("memcached_udp_over_tap_serves_kernel_clients") {
        return;
    }
    let scratch = Scratch::new("memcached-udp");
    let mut net = TapNet::new("paud");
    let port = PORT.to_string();
    let python = python().to_str().unwrap().to_owned();
    let client = repo("tests/programs/memcached_udp.py");
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Proc::spawn(
            &dir,
            "memcached",
            &net.place(leg),
            Duration::from_secs(300),
            &[
                "memcached",
                "-t",
                "1",
                "-p",
                "0",
                "-U",
                &port,
                "-l",
                net.server_ip(),
                "-m",
                "64",
                "-u",
                "root",
            ],
        );
        let mut c = Proc::spawn(
            &dir,
            "client",
            &Place::kernel(&net.clients),
            Duration::from_secs(200),
            &[&python, "-u", client.to_str().unwrap(), net.server_ip(), &port],
        );
        c.finish_against(Duration::from_secs(210), &mut server);
        let out = c.stdout();
        assert!(out.starts_with("ok: "), "{}", c.report());
        println!("memcached_udp {}: {}", leg.name(), out.trim());
        assert!(!server.exited(), "memcached died: {}", server.report());
        drop(server);
        net.clear();
    }
}
