//! Many connections at once, and a peer that vanishes, over the in-memory
//! pair with a simulated clock.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use accel_stack::iface::TcpHandle;
use accel_stack::phy::fault::FaultConfig;
use accel_stack::tcp::{State, TcpConfig};
use accel_stack::Errno;
use common::{net, B_IP};

#[test]
fn thousand_concurrent_connections_open_transfer_close_and_leave_nothing() {
    const N: usize = 1000;
    const LEN: usize = 4096;
    let mut n = net();
    let l = n.b.iface.tcp.socket_new();
    n.b.iface
        .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7))
        .unwrap();
    n.b.iface.tcp.listen(l, N).unwrap();
    let now = n.now;
    let clients: Vec<TcpHandle> = (0..N)
        .map(|_| {
            let c = n.a.iface.tcp.socket_new();
            n.a.iface.tcp_connect(c, SocketAddrV4::new(B_IP, 7), now).unwrap();
            c
        })
        .collect();
    let payload = |i: usize| -> Vec<u8> { (0..LEN).map(|k| (i * 31 + k) as u8).collect() };
    // Per client: bytes sent, bytes echoed back; per server conn: echo backlog.
    let mut sent = vec![0usize; N];
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); N];
    let mut servers: Vec<(TcpHandle, Vec<u8>)> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let ok = n.run_until(Duration::from_secs(120), |n| {
        while let Ok((h, _)) = n.b.iface.tcp.accept(l) {
            servers.push((h, Vec::new()));
        }
        for (i, &c) in clients.iter().enumerate() {
            if sent[i] < LEN {
                if let Ok(k) = n.a.iface.tcp.send(c, &payload(i)[sent[i]..]) {
                    sent[i] += k;
                }
            }
            while let Ok(k) = n.a.iface.tcp.recv(c, &mut buf) {
                if k == 0 {
                    break;
                }
                got[i].extend_from_slice(&buf[..k]);
            }
        }
        for (h, pending) in servers.iter_mut() {
            while let Ok(k) = n.b.iface.tcp.recv(*h, &mut buf) {
                if k == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..k]);
            }
            if !pending.is_empty() {
                if let Ok(k) = n.b.iface.tcp.send(*h, pending) {
                    pending.drain(..k);
                }
            }
        }
        got.iter().all(|g| g.len() == LEN)
    });
    assert!(
        ok,
        "echo incomplete: {} of {N} clients done",
        got.iter().filter(|g| g.len() == LEN).count()
    );
    for (i, g) in got.iter().enumerate() {
        assert!(*g == payload(i), "client {i} got different bytes");
    }
    assert_eq!(servers.len(), N);
    // Clients close first (they hold TIME-WAIT), then the servers.
    for &c in &clients {
        n.a.iface.tcp.close(c, n.now).unwrap();
    }
    assert!(n.run_until(Duration::from_secs(10), |n| {
        servers.iter().all(|(h, _)| {
            n.b.iface
                .tcp
                .socket(*h)
                .is_some_and(|s| s.state() == State::CloseWait)
        })
    }));
    for (h, _) in &servers {
        n.b.iface.tcp.close(*h, n.now).unwrap();
    }
    n.b.iface.tcp.close(l, n.now).unwrap();
    assert!(n.run_until(Duration::from_secs(10), |n| n.b.iface.tcp.is_empty()
        && n.a.iface.tcp.is_empty()));
    assert_eq!(n.a.iface.tcp.time_wait_len(), N);
    assert_eq!(n.a.iface.stats().time_wait_entered, N as u64);
    assert_eq!(
        n.b.iface.stats().time_wait_entered,
        0,
        "the side that closed last holds none"
    );
    assert!(n.run_until(Duration::from_secs(120), |n| n.a.iface.tcp.time_wait_len() == 0));
    assert_eq!(
        n.a.iface.stats().time_wait_entered,
        N as u64,
        "expiry does not unmake"
    );
    for s in [&n.a, &n.b] {
        assert!(s.iface.tcp.is_empty() && s.iface.tcp.conns_len() == 0 && s.iface.tcp.ports_len() == 0);
        assert_eq!(
            s.iface.poll_at(),
            None,
            "no timer may be left once everything is closed"
        );
    }
}

#[test]
fn rto_backs_off_and_a_vanished_peer_times_out() {
    let tcp = TcpConfig {
        max_retries: 8,
        ..TcpConfig::default()
    };
    let mut n = common::net_with(FaultConfig::default(), tcp);
    let (ca, _cb) = n.connect(5000);
    // B vanishes: nothing reaches it any more.
    let cut = FaultConfig {
        loss: 1.0,
        ..FaultConfig::default()
    };
    n.b.device.set_config(cut);
    n.a.iface.tcp.send(ca, b"are you there?").unwrap();
    let start = n.now;
    let mut timeouts_at = Vec::new();
    let mut last = 0;
    let done = n.run_until(Duration::from_secs(3600), |n| {
        if let Some(s) = n.a.iface.tcp.socket(ca) {
            let t = s.stats().timeouts;
            if t > last {
                last = t;
                timeouts_at.push(n.now);
            }
        }
        n.a.iface.tcp.readiness(ca).unwrap().error
    });
    assert!(done, "the connection never timed out");
    assert_eq!(timeouts_at.len(), 8, "one timeout per retry");
    let gaps: Vec<Duration> = std::iter::once(start)
        .chain(timeouts_at.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    for w in gaps.windows(2) {
        let ratio = w[1].as_secs_f64() / w[0].as_secs_f64();
        assert!((1.9..=2.1).contains(&ratio), "RTO must double: gaps {gaps:?}");
    }
    let mut b = [0u8; 1];
    assert_eq!(n.a.iface.tcp.recv(ca, &mut b), Err(Errno::ETIMEDOUT));
    assert_eq!(n.a.iface.tcp.socket(ca).unwrap().state(), State::Closed);
}

#[test]
fn connect_to_a_silent_host_times_out_after_syn_retries() {
    let tcp = TcpConfig {
        syn_retries: 3,
        ..TcpConfig::default()
    };
    let mut n = common::net_with(FaultConfig::default(), tcp);
    // A knows B's address first (a host that never answers ARP fails
    // sooner, with EHOSTUNREACH: tests/pair.rs); then B hears nothing.
    n.connect(7);
    let cut = FaultConfig {
        loss: 1.0,
        ..FaultConfig::default()
    };
    n.b.device.set_config(cut);
    let c = n.a.iface.tcp.socket_new();
    let now = n.now;
    n.a.iface
        .tcp_connect(c, SocketAddrV4::new(B_IP, 80), now)
        .unwrap();
    assert!(n.run_until(Duration::from_secs(600), |n| n
        .a
        .iface
        .tcp
        .readiness(c)
        .unwrap()
        .error));
    // 1 + 2 + 4 + 8 s: the initial RTO doubled three times.
    let elapsed = n.now - now;
    assert!(
        elapsed >= Duration::from_secs(15) && elapsed < Duration::from_secs(16),
        "{elapsed:?}"
    );
    assert_eq!(n.a.iface.tcp.send(c, b"x"), Err(Errno::ETIMEDOUT));
}
