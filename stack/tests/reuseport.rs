//! `SO_REUSEPORT` listener groups, between two stacks over the in-memory
//! pair with a simulated clock: several listeners on one port, each set
//! with `SO_REUSEPORT`, share its connection requests by a hash of the
//! 4-tuple, each with its own accept queue, as on Linux (threads that each
//! run an event loop over their own listener depend on it); without the
//! option on every member a second listener is refused; a member that
//! closes resets only the connections queued to it.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use accel_stack::iface::TcpHandle;
use accel_stack::Errno;
use common::{net, Net, B_IP};

const PORT: u16 = 8080;

/// A listener on B at the wildcard `PORT`, with `SO_REUSEPORT` as given.
fn listener(n: &mut Net, reuse_port: bool) -> Result<TcpHandle, Errno> {
    let tcp = &mut n.b.iface.tcp;
    let l = tcp.socket_new();
    tcp.set_reuse_port(l, reuse_port).unwrap();
    let r =
        n.b.iface
            .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT))
            .and_then(|_| n.b.iface.tcp.listen(l, 128));
    match r {
        Ok(()) => Ok(l),
        Err(e) => {
            n.b.iface.tcp.close(l, n.now).unwrap();
            Err(e)
        }
    }
}

/// Opens `count` connections from A to B's `PORT` and runs until each is
/// established on A's side or has failed.
fn connect_many(n: &mut Net, count: usize) -> Vec<TcpHandle> {
    let now = n.now;
    let cs: Vec<TcpHandle> = (0..count)
        .map(|_| {
            let c = n.a.iface.tcp.socket_new();
            n.a.iface
                .tcp_connect(c, SocketAddrV4::new(B_IP, PORT), now)
                .unwrap();
            c
        })
        .collect();
    let settled = n.run_until(Duration::from_secs(10), |n| {
        cs.iter().all(|&c| {
            let r = n.a.iface.tcp.readiness(c).unwrap();
            r.writable || r.error
        })
    });
    assert!(settled, "the handshakes did not settle");
    cs
}

/// Everything in `l`'s accept queue.
fn accept_all(n: &mut Net, l: TcpHandle) -> Vec<TcpHandle> {
    std::iter::from_fn(|| n.b.iface.tcp.accept(l).ok().map(|(h, _)| h)).collect()
}

#[test]
fn a_group_shares_the_connections_each_member_its_own_queue() {
    let mut n = net();
    let members: Vec<TcpHandle> = (0..4).map(|_| listener(&mut n, true).unwrap()).collect();
    let cs = connect_many(&mut n, 64);
    let per: Vec<Vec<TcpHandle>> = members.iter().map(|&l| accept_all(&mut n, l)).collect();
    let counts: Vec<usize> = per.iter().map(Vec::len).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        64,
        "every connection accepted once: {counts:?}"
    );
    assert!(counts.iter().all(|&k| k > 0), "a member got nothing: {counts:?}");
    assert_eq!(n.b.iface.tcp.counts().1, 4);

    // Each accepted connection carries its own client's bytes.
    for (i, &c) in cs.iter().enumerate() {
        n.a.iface
            .tcp
            .send(c, format!("client {i:02}").as_bytes())
            .unwrap();
    }
    let accepted: Vec<TcpHandle> = per.into_iter().flatten().collect();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    n.run_until(Duration::from_secs(5), |n| {
        got.clear();
        for &h in &accepted {
            if let Ok(k) = n.b.iface.tcp.recv(h, &mut buf) {
                if k > 0 {
                    got.push(String::from_utf8_lossy(&buf[..k]).into_owned());
                }
            }
        }
        got.len() == 64
    });
    got.sort();
    let want: Vec<String> = (0..64).map(|i| format!("client {i:02}")).collect();
    assert_eq!(got, want);
}

#[test]
fn a_listener_without_reuseport_is_alone_on_its_port() {
    let mut n = net();
    listener(&mut n, false).unwrap();
    assert_eq!(listener(&mut n, true), Err(Errno::EADDRINUSE));
    assert_eq!(listener(&mut n, false), Err(Errno::EADDRINUSE));

    let mut n = net();
    listener(&mut n, true).unwrap();
    assert_eq!(
        listener(&mut n, false),
        Err(Errno::EADDRINUSE),
        "every member must set it"
    );
    assert!(listener(&mut n, true).is_ok());
}

#[test]
fn a_member_that_closes_resets_its_own_queue_only() {
    let mut n = net();
    let members: Vec<TcpHandle> = (0..2).map(|_| listener(&mut n, true).unwrap()).collect();
    let cs = connect_many(&mut n, 32);
    let queued = n.b.iface.tcp.listen_queue(members[0]).unwrap().0;
    assert!(
        queued > 0 && queued < 32,
        "both members have connections: {queued}"
    );
    n.b.iface.tcp.close(members[0], n.now).unwrap();
    n.run_until(Duration::from_secs(2), |_| false);
    let kept = accept_all(&mut n, members[1]);
    assert_eq!(kept.len(), 32 - queued);
    let reset = cs
        .iter()
        .filter(|&&c| n.a.iface.tcp.readiness(c).unwrap().error)
        .count();
    assert_eq!(
        reset, queued,
        "the closed member's connections are reset, the others kept"
    );

    // The group goes on with one member: every new connection reaches it.
    connect_many(&mut n, 8);
    assert_eq!(accept_all(&mut n, members[1]).len(), 8);
    n.b.iface.check_invariants().unwrap();
}
