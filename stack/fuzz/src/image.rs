//! A connection's image from another process (`accel_stack::tcp::image`,
//! what a listener closing on a shared port hands over): any bytes are
//! decoded; a good image encodes back to the same bytes and, made into a
//! connection under a listener on its port, keeps the stack's invariants
//! ([`crate::net::Rig::poll`] checks them) while the connection lives on:
//! its timers run over 30 s of simulated time, and the program accepts,
//! reads and closes it.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use accel_stack::tcp::image::ConnImage;
use accel_stack::tcp::TcpConfig;

use crate::net::Rig;

/// The target's body.
pub fn conn_image(data: &[u8]) {
    let Ok(image) = ConnImage::decode(data) else {
        return;
    };
    assert_eq!(image.encode(), data, "an image encodes back to its bytes");
    let mut rig = Rig::new(TcpConfig::default(), |_| {});
    // The image may name any peer: the stack asks ARP for it.
    rig.only_to_peer = false;
    let iface = &mut rig.stack.iface;
    let l = iface.tcp.socket_new();
    iface
        .tcp_bind(l, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, image.local.port()))
        .expect("bind");
    iface.tcp.listen(l, 8).expect("listen");
    let made = iface.tcp_import(data, rig.now);
    let mut buf = [0u8; 4096];
    let mut accepted = None;
    for _ in 0..60 {
        rig.poll();
        let tcp = &mut rig.stack.iface.tcp;
        if accepted.is_none() {
            accepted = tcp.accept(l).ok().map(|(h, _)| h);
            if let Some(h) = accepted {
                assert!(made.is_ok(), "accepted a connection that was refused");
                while tcp.recv(h, &mut buf).is_ok_and(|k| k > 0) {}
                let _ = tcp.close(h, rig.now);
            }
        }
        rig.advance(Duration::from_millis(500));
    }
    rig.poll();
}
