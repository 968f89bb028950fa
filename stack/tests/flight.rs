//! The flight recorder between two stacks over the in-memory pair, with a
//! simulated clock: a connection's record holds its handshake, data and
//! close in order, with the retransmission a lost segment caused; it
//! survives the connection's end; a full arena counts what it could not
//! record.

mod common;

use std::time::Duration;

use accel_stack::phy::fault::FaultConfig;
use accel_stack::tcp::flight::FlightSlot;
use accel_stack::tcp::TcpConfig;
use common::{net, net_with};

fn arena(n: usize) -> &'static mut [FlightSlot] {
    Box::leak(vec![FlightSlot::default(); n].into_boxed_slice())
}

fn text(slots: &[FlightSlot]) -> String {
    let mut s = String::new();
    for slot in slots {
        slot.write_text(&mut |b| s.push_str(std::str::from_utf8(b).unwrap()));
    }
    s
}

#[test]
fn a_connections_record_holds_its_handshake_data_and_close_in_order() {
    let mut n = net();
    n.b.iface.set_flight_recorder(arena(4));
    let (ca, cb) = n.connect(8080);
    n.a.iface.tcp.send(ca, b"hello").unwrap();
    let mut buf = [0u8; 16];
    n.run_until(Duration::from_secs(1), |n| {
        n.b.iface.tcp.recv(cb, &mut buf).is_ok_and(|k| k == 5)
    });
    n.b.iface.tcp.close(cb, n.now).unwrap();
    n.a.iface.tcp.close(ca, n.now).unwrap();
    n.run_until(Duration::from_secs(300), |n| {
        n.b.iface.tcp.is_empty() && n.a.iface.tcp.is_empty()
    });
    let t = text(n.b.iface.flight_records());
    println!("{t}");
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].starts_with("connection 198.18.0.2:8080 - 198.18.0.1:"),
        "{t}"
    );
    assert!(
        lines[0].contains("(freed)"),
        "the record outlives the connection: {t}"
    );
    let order = [
        "in  [S....]",
        "out [S...A]",
        "in  [....A]",
        "len=5",
        "state -> ",
        "[.F..A]",
    ];
    let mut at = 1;
    for want in &order {
        let found = lines[at..].iter().position(|l| l.contains(want));
        let Some(k) = found else {
            panic!("no {want:?} after line {at}:\n{t}");
        };
        at += k + 1;
    }
    assert!(t.contains("-> TIME-WAIT") || t.contains("-> CLOSED"), "{t}");
}

#[test]
fn a_lost_segment_shows_as_a_timer_and_a_retransmission() {
    let faults = FaultConfig {
        seed: 3,
        ..FaultConfig::default()
    };
    let mut n = net_with(faults, TcpConfig::default());
    n.a.iface.set_flight_recorder(arena(2));
    let (ca, cb) = n.connect(8081);
    // B stops receiving for a while: A's data is lost and retransmitted.
    let drop_all = FaultConfig { loss: 1.0, ..faults };
    n.b.device.set_config(drop_all);
    n.a.iface.tcp.send(ca, b"lost once").unwrap();
    n.run_until(Duration::from_millis(100), |_| false);
    n.b.device.set_config(faults);
    let mut buf = [0u8; 16];
    assert!(n.run_until(Duration::from_secs(10), |n| n
        .b
        .iface
        .tcp
        .recv(cb, &mut buf)
        .is_ok_and(|k| k == 9)));
    let t = text(n.a.iface.flight_records());
    println!("{t}");
    let sends = t
        .lines()
        .filter(|l| l.contains("out") && l.contains("len=9"))
        .count();
    assert!(sends >= 2, "sent and retransmitted: {t}");
    assert!(t.contains("timer (retransmissions 1)"), "{t}");
}

#[test]
fn a_full_recorder_counts_the_connections_it_could_not_record() {
    let mut n = net();
    n.b.iface.set_flight_recorder(arena(1));
    n.connect(8082);
    n.connect(8083);
    assert_eq!(n.b.iface.flight_unrecorded(), 1);
}
