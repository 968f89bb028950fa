//! Two stacks over the in-memory pair with a simulated clock: handshake,
//! byte-exact transfer both ways, orderly close, and every table empty
//! once TIME-WAIT expires.

mod common;

use std::time::Duration;

use accel_stack::iface::TcpHandle;
use accel_stack::tcp::State;
use accel_stack::{Errno, Instant};
use common::{net, Net};

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Moves `a_data` from A to B and `b_data` from B to A, both at once,
/// through send/recv with the socket buffers in between.
fn exchange(n: &mut Net, ca: TcpHandle, cb: TcpHandle, a_data: &[u8], b_data: &[u8], limit: Duration) {
    let (mut a_sent, mut b_sent) = (0, 0);
    let (mut a_got, mut b_got) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 65536];
    let done = n.run_until(limit, |n| {
        let now = n.now;
        let _ = now;
        if a_sent < a_data.len() {
            if let Ok(k) = n.a.iface.tcp.send(ca, &a_data[a_sent..]) {
                a_sent += k;
            }
        }
        if b_sent < b_data.len() {
            if let Ok(k) = n.b.iface.tcp.send(cb, &b_data[b_sent..]) {
                b_sent += k;
            }
        }
        while let Ok(k) = n.b.iface.tcp.recv(cb, &mut buf) {
            if k == 0 {
                break;
            }
            b_got.extend_from_slice(&buf[..k]);
        }
        while let Ok(k) = n.a.iface.tcp.recv(ca, &mut buf) {
            if k == 0 {
                break;
            }
            a_got.extend_from_slice(&buf[..k]);
        }
        b_got.len() == a_data.len() && a_got.len() == b_data.len()
    });
    assert!(
        done,
        "transfer stalled at {}: A->B {}/{}, B->A {}/{}\nA: {:?}\nB: {:?}",
        n.now,
        b_got.len(),
        a_data.len(),
        a_got.len(),
        b_data.len(),
        n.a.iface.tcp.socket(ca),
        n.b.iface.tcp.socket(cb)
    );
    assert!(b_got == a_data, "A->B bytes differ");
    assert!(a_got == b_data, "B->A bytes differ");
}

#[test]
fn handshake_transfer_close_and_time_wait() {
    let mut n = net();
    let (ca, cb) = n.connect(8080);
    assert_eq!(n.a.iface.tcp.socket(ca).unwrap().state(), State::Established);
    assert_eq!(n.b.iface.tcp.socket(cb).unwrap().state(), State::Established);
    let a_data = pattern(1, 1 << 20);
    let b_data = pattern(2, 1 << 20);
    exchange(&mut n, ca, cb, &a_data, &b_data, Duration::from_secs(60));

    // A closes first (active close: A ends in TIME-WAIT), then B.
    n.a.iface.tcp.close(ca, n.now).unwrap();
    assert!(n.run_until(Duration::from_secs(5), |n| {
        let mut b = [0u8; 1];
        n.b.iface.tcp.recv(cb, &mut b) == Ok(0)
    }));
    assert_eq!(n.b.iface.tcp.socket(cb).unwrap().state(), State::CloseWait);
    n.b.iface.tcp.close(cb, n.now).unwrap();
    let ok = n.run_until(Duration::from_secs(5), |n| {
        n.a.iface.tcp.time_wait_len() == 1 && n.b.iface.tcp.is_empty()
    });
    assert!(
        ok,
        "A: tw={} socks={} state={:?}; B: socks={} state={:?}",
        n.a.iface.tcp.time_wait_len(),
        n.a.iface.tcp.len(),
        n.a.iface.tcp.socket(ca).map(|s| s.state()),
        n.b.iface.tcp.len(),
        n.b.iface.tcp.socket(cb).map(|s| s.state())
    );
    assert_eq!(n.a.iface.tcp.conns_len(), 0);
    // TIME-WAIT lasts 60 s, then every table is empty.
    let before = n.now;
    assert!(n.run_until(Duration::from_secs(120), |n| n.a.iface.tcp.time_wait_len() == 0));
    assert!(n.now - before >= Duration::from_secs(59));
    for s in [&n.a, &n.b] {
        assert!(s.iface.tcp.is_empty());
        assert_eq!(s.iface.tcp.conns_len(), 0);
        assert_eq!(s.iface.tcp.ports_len(), 0);
    }
}

#[test]
fn connection_refused_and_errors() {
    let mut n = net();
    let c = n.a.iface.tcp.socket_new();
    let now = n.now;
    n.a.iface
        .tcp_connect(c, std::net::SocketAddrV4::new(common::B_IP, 9), now)
        .unwrap();
    assert!(n.run_until(Duration::from_secs(5), |n| n
        .a
        .iface
        .tcp
        .readiness(c)
        .unwrap()
        .error));
    let mut b = [0u8; 4];
    assert_eq!(n.a.iface.tcp.recv(c, &mut b), Err(Errno::ECONNREFUSED));
    assert_eq!(n.a.iface.tcp.send(c, b"x"), Err(Errno::EPIPE));
    assert!(n.b.iface.stats().drop_tcp_no_socket >= 1);
    let _ = Instant::ZERO;
}

fn lossy(seed: u64) -> accel_stack::phy::fault::FaultConfig {
    accel_stack::phy::fault::FaultConfig {
        loss: 0.10,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(3),
        duplicate: 0.01,
        delay: Duration::from_micros(500),
        seed,
        ..Default::default()
    }
}

#[test]
fn byte_exact_through_loss_reordering_and_duplication() {
    let mb: usize = std::env::var("ACCEL_LOSSY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut n = common::net_with(lossy(42), accel_stack::tcp::TcpConfig::default());
    let (ca, cb) = n.connect(9000);
    let a_data = pattern(3, mb << 20);
    let b_data = pattern(4, mb << 20);
    exchange(&mut n, ca, cb, &a_data, &b_data, Duration::from_secs(3600));
    let sa = n.a.iface.tcp.socket(ca).unwrap().stats();
    let sb = n.b.iface.tcp.socket(cb).unwrap().stats();
    assert!(
        sa.retransmits > 0 && sb.retransmits > 0,
        "10% loss must cause retransmissions"
    );
    let fa = n.a.device.fault_stats();
    assert!(fa.dropped > 0 && fa.reordered > 0 && fa.duplicated > 0);
    eprintln!(
        "A: {sa:?}\nB: {sb:?}\nfaults at A: {fa:?}\nsimulated time {:?}",
        n.now
    );
}

#[test]
fn the_last_ack_goes_out_at_once_when_both_sides_closed() {
    // With the clock frozen, the whole close must complete: the side that
    // closed first must ACK the peer's FIN as it enters TIME-WAIT, not leave
    // the peer in LAST-ACK until a retransmission timer fires.
    let mut n = net();
    let (ca, cb) = n.connect(8081);
    n.a.iface.tcp.close(ca, n.now).unwrap();
    n.step(false);
    n.b.iface.tcp.close(cb, n.now).unwrap();
    n.step(false);
    assert!(
        n.b.iface.tcp.is_empty(),
        "B is still waiting for its FIN to be acknowledged"
    );
    assert!(n.a.iface.tcp.is_empty());
    assert_eq!(n.a.iface.tcp.time_wait_len(), 1);
}

/// An on-link address nobody has: its ARP requests go unanswered.
const SILENT: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 77);

#[test]
fn a_connect_to_a_silent_neighbour_fails_with_ehostunreach() {
    let mut n = net();
    let start = n.now;
    let c = n.a.iface.tcp.socket_new();
    n.a.iface
        .tcp_connect(c, std::net::SocketAddrV4::new(SILENT, 80), start)
        .unwrap();
    let u = n.a.iface.udp_socket();
    n.a.iface
        .udp_connect(u, std::net::SocketAddrV4::new(SILENT, 53))
        .unwrap();
    assert_eq!(n.a.iface.udp_send_to(u, b"query", None), Ok(5));
    assert!(n.run_until(Duration::from_secs(10), |n| n
        .a
        .iface
        .tcp
        .readiness(c)
        .unwrap()
        .error));
    let took = n.now.saturating_since(start);
    // Three requests a second apart, then the give-up (as Linux's 3 s).
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let mut b = [0u8; 8];
    assert_eq!(n.a.iface.tcp.recv(c, &mut b), Err(Errno::EHOSTUNREACH));
    assert_eq!(n.a.iface.tcp.socket(c).unwrap().state(), State::Closed);
    let udp = n.a.iface.udp_mut(u).unwrap();
    assert_eq!(udp.recv_from(&mut b), Err(Errno::EHOSTUNREACH));
    assert_eq!(udp.recv_from(&mut b), Err(Errno::EAGAIN), "reported once");
    // The SYN, its retransmission within the 3 s, and the datagram.
    assert_eq!(n.a.iface.stats().drop_arp_unresolved, 3);
    n.a.iface.tcp.close(c, n.now).unwrap();
    n.a.iface.udp_close(u).unwrap();
}

#[test]
fn many_connects_to_a_new_neighbour_wait_for_one_arp_reply() {
    // 300 SYNs queue behind one ARP resolution; none is dropped, so every
    // handshake completes without a SYN retransmission (1 s).
    let mut n = net();
    let l = n.b.iface.tcp.socket_new();
    n.b.iface
        .tcp_bind(
            l,
            std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 8080),
        )
        .unwrap();
    n.b.iface.tcp.listen(l, 1024).unwrap();
    let start = n.now;
    let cs: Vec<TcpHandle> = (0..300)
        .map(|_| {
            let c = n.a.iface.tcp.socket_new();
            n.a.iface
                .tcp_connect(c, std::net::SocketAddrV4::new(common::B_IP, 8080), start)
                .unwrap();
            c
        })
        .collect();
    assert!(n.run_until(Duration::from_secs(5), |n| cs.iter().all(|&c| n
        .a
        .iface
        .tcp
        .readiness(c)
        .unwrap()
        .writable)));
    let took = n.now.saturating_since(start);
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(n.a.iface.stats().drop_arp_unresolved, 0);
    let retransmits: u64 = cs
        .iter()
        .map(|&c| n.a.iface.tcp.socket(c).unwrap().stats().timeouts)
        .sum();
    assert_eq!(retransmits, 0);
}

#[test]
fn output_sends_what_was_written_and_leaves_received_frames_queued() {
    let mut n = net();
    let (ca, cb) = n.connect(8080);
    n.step(false);
    // B writes and polls: its segment waits in A's receive queue.
    assert_eq!(n.b.iface.tcp.send(cb, b"from b"), Ok(6));
    n.b.poll(n.now);
    // A writes and only outputs: its segment goes out, B's stays queued.
    assert_eq!(n.a.iface.tcp.send(ca, b"from a"), Ok(6));
    let r = n.a.output(n.now);
    assert!(r.progress, "the write left");
    assert_eq!(r.rx, 0);
    let mut buf = [0u8; 16];
    assert_eq!(
        n.a.iface.tcp.recv(ca, &mut buf),
        Err(Errno::EAGAIN),
        "nothing was received"
    );
    n.b.poll(n.now);
    assert_eq!(n.b.iface.tcp.recv(cb, &mut buf), Ok(6));
    assert_eq!(&buf[..6], b"from a");
    // A full poll takes B's segment in.
    assert!(n.a.poll(n.now).rx > 0);
    assert_eq!(n.a.iface.tcp.recv(ca, &mut buf), Ok(6));
    assert_eq!(&buf[..6], b"from b");
    // With nothing to send and no timer due, output does nothing.
    n.step(false);
    assert!(!n.a.output(n.now).progress);
}
