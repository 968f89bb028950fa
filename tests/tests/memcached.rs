//! memcached -t 1 (libevent) accelerated over `--tap`, listening on the
//! stack's own address 198.18.0.2 (not the wildcard): from the clients'
//! namespace our text-protocol client sets 10,000 keys (values of 0 B to
//! 512 KiB) and gets each back, checking value and flags. The kernel
//! baseline (plain memcached in a namespace on a veth) runs first; both
//! print their figures.
//!
//! Port 11311 (never 11211, where Debian's own memcached listens).

use accel_tests::clients::{dataset, memcached_set_get};
use accel_tests::net::{measured, root_or_skip, wait_for_port, Leg, Proc, TapNet};
use accel_tests::Scratch;
use std::net::SocketAddr;
use std::time::Duration;

const PORT: u16 = 11311;

#[test]
fn memcached_over_tap_serves_kernel_clients() {
    if !root_or_skip("memcached_over_tap_serves_kernel_clients") {
        return;
    }
    let test = "memcached_tap";
    let scratch = Scratch::new("memcached");
    let mut net = TapNet::new("mc");
    let addr: SocketAddr = format!("{}:{PORT}", net.server_ip()).parse().unwrap();
    let items = dataset(10_000, 512 << 10, 7);
    let port = PORT.to_string();
    for leg in [Leg::Kernel, Leg::Accel] {
        let dir = scratch.join(leg.name());
        std::fs::create_dir_all(&dir).unwrap();
        let place = net.place(leg);
        let mut server = Proc::spawn(
            &dir,
            "memcached",
            &place,
            Duration::from_secs(300),
            &[
                "memcached",
                "-t",
                "1",
                "-p",
                &port,
                "-U",
                "0",
                "-l",
                "198.18.0.2",
                "-m",
                "1024",
                "-I",
                "1m",
                "-u",
                "root",
            ],
        );
        wait_for_port(&net.clients, addr, &mut server, Duration::from_secs(60));
        let t = net.clients.enter(|| memcached_set_get(addr, &items));
        println!(
            "{test} {}: set+get of {} keys ({} MB of values) verified in {:.2?}",
            leg.name(),
            items.len(),
            t.bytes / 1_000_000,
            t.elapsed
        );
        measured(test, &format!("{}_setget_rps", leg.name()), t.rps(), "req/s");
        measured(
            test,
            &format!("{}_setget_mb_per_s", leg.name()),
            t.mb_per_s(),
            "MB/s",
        );
        assert!(!server.exited(), "memcached died: {}", server.report());
        drop(server);
        net.clear();
    }
}
