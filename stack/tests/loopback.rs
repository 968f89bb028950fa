//! A stack talking to its own address: the packets are looped back inside
//! the interface (the kernel's `lo` for an interface's own address) and
//! never reach the wire. A TCP connection from B to B's own address is
//! made, carries data both ways (more than a window) and closes; a UDP
//! datagram to our own port arrives. The peer stack A sees nothing.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use common::{net, B_IP};

#[test]
fn a_connection_to_our_own_address_is_looped_back() {
    let mut n = net();
    let tcp = &mut n.b.iface.tcp;
    let l = tcp.socket_new();
    n.b.iface
        .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080))
        .unwrap();
    n.b.iface.tcp.listen(l, 16).unwrap();
    let c = n.b.iface.tcp.socket_new();
    let now = n.now;
    n.b.iface
        .tcp_connect(c, SocketAddrV4::new(B_IP, 8080), now)
        .unwrap();
    let mut server = None;
    assert!(n.run_until(Duration::from_secs(5), |n| {
        if server.is_none() {
            server = n.b.iface.tcp.accept(l).ok().map(|(h, _)| h);
        }
        server.is_some() && n.b.iface.tcp.readiness(c).unwrap().writable
    }));
    let s = server.unwrap();
    // 1 MB from the client to the server, and back.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 + i / 253) as u8).collect();
    for (from, to) in [(c, s), (s, c)] {
        let (mut sent, mut got) = (0, Vec::new());
        let mut buf = vec![0u8; 65536];
        assert!(n.run_until(Duration::from_secs(30), |n| {
            if sent < data.len() {
                sent += n.b.iface.tcp.send(from, &data[sent..]).unwrap_or(0);
            }
            while let Ok(k) = n.b.iface.tcp.recv(to, &mut buf) {
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
            got.len() == data.len()
        }));
        assert!(got == data, "the bytes differ");
    }
    n.b.iface.tcp.close(c, n.now).unwrap();
    n.b.iface.tcp.close(s, n.now).unwrap();
    n.step(true);
    let stats = n.a.iface.stats();
    assert_eq!(stats.rx_frames, 0, "nothing reached the wire: {stats:?}");

    // UDP to our own port.
    let u = n.b.iface.udp_socket();
    n.b.iface.udp_bind(u, SocketAddrV4::new(B_IP, 5353)).unwrap();
    let v = n.b.iface.udp_socket();
    n.b.iface
        .udp_send_to(v, b"self", Some(SocketAddrV4::new(B_IP, 5353)))
        .unwrap();
    n.step(false);
    let mut buf = [0u8; 16];
    let got =
        n.b.iface
            .udp_mut(u)
            .unwrap()
            .recv_from(&mut buf)
            .map(|(k, from, _)| (k, from));
    assert_eq!(got.ok().map(|(k, from)| (k, *from.ip())), Some((4, B_IP)));
    assert_eq!(&buf[..4], b"self");
    assert_eq!(n.a.iface.stats().rx_frames, 0);
}
