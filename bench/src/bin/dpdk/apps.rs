//! The two ends of the memif benchmark, as state machines the driver steps
//! between polls: the peer (echo, sink and control listeners, then raw
//! frame echo) and the client's measurements (round trips, a bulk stream,
//! many echoes in flight, raw frames).
//!
//! Sockets with something to do are found through the stack's wakers
//! (each connection's waker sets its bit in an
//! [`accel_bench::woken::Woken`]), not by asking every socket on every
//! turn, so the cost measured for 256 connections is the stack's, not a
//! scan's. Wakers fire once: a connection registers again after it has
//! read everything there was.

use std::ops::ControlFlow;
use std::task::Waker;
use std::time::{Duration, Instant as Clock};

use accel_bench::message;
use accel_bench::woken::Woken;
use accel_stack::iface::{Interface, TcpHandle};
use accel_stack::phy::Device;
use accel_stack::wire::EthernetAddress;
use accel_stack::{Errno, Instant};

use super::driver::{Driver, LoopStats};
use super::{Checker, CTL_PORT, ECHO_PORT, MSG, PEER_IP, SINK_PORT};

/// Longest any wait may go without progress before it counts as a stall.
pub const STALL: Duration = Duration::from_secs(2);
/// Measurement windows of the rate measurements; the best one counts.
pub const WINDOWS: u32 = 5;
/// The EtherType of raw benchmark frames (IEEE local experimental).
pub const RAW_TYPE: [u8; 2] = [0x88, 0xb5];
/// Raw frame length: that of a TCP segment carrying 64 bytes with
/// timestamps (14 + 20 + 32 + 64).
pub const RAW_LEN: usize = 130;
/// The sequence number that ends the raw phase.
const RAW_STOP: u64 = u64::MAX;
/// The sequence number of the frames that find out when the peer echoes
/// raw frames (until it has left its stack phase, they are lost).
const RAW_SYNC: u64 = u64::MAX - 1;

/// A listening socket on `port`.
fn listen(iface: &mut Interface, port: u16) -> TcpHandle {
    let l = iface.tcp.socket_new();
    iface
        .tcp_bind(
            l,
            std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port),
        )
        .expect("bind");
    iface.tcp.listen(l, 1024).expect("listen");
    l
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Echo,
    Sink,
    Ctl,
}

struct PeerConn {
    h: TcpHandle,
    kind: Kind,
    waker: Waker,
    pending: Vec<u8>,
    check: Checker,
    open: bool,
}

/// The peer's stack phase: echoes on [`ECHO_PORT`], verifies and counts on
/// [`SINK_PORT`], and returns when the client asks for the raw phase on
/// [`CTL_PORT`] (after 20 ms more polling, so the answer goes out).
pub fn peer_stack(drv: &mut Driver) {
    let listeners = [
        (listen(&mut drv.stack.iface, ECHO_PORT), Kind::Echo),
        (listen(&mut drv.stack.iface, SINK_PORT), Kind::Sink),
        (listen(&mut drv.stack.iface, CTL_PORT), Kind::Ctl),
    ];
    // Room for every connection of a run (a few hundred) with margin.
    let woken = Woken::new(4096);
    let mut conns: Vec<PeerConn> = Vec::new();
    let (mut ids, mut buf) = (Vec::new(), vec![0u8; 256 * 1024]);
    let mut raw_at: Option<Clock> = None;
    let result = drv.run("peer", Duration::from_secs(600), |iface, now| {
        let mut worked = false;
        for &(l, kind) in &listeners {
            while let Ok((h, _)) = iface.tcp.accept(l) {
                let id = conns.len();
                assert!(
                    id < woken.len(),
                    "the peer has room for {} connections",
                    woken.len()
                );
                let (waker, pending, check) = (woken.waker(id), Vec::new(), Checker::new());
                conns.push(PeerConn {
                    h,
                    kind,
                    waker,
                    pending,
                    check,
                    open: true,
                });
                ids.push(id);
            }
        }
        woken.drain(&mut ids);
        for id in ids.drain(..) {
            worked = true;
            let c = &mut conns[id];
            while c.open {
                if !c.pending.is_empty() {
                    match iface.tcp.send(c.h, &c.pending) {
                        Ok(n) => drop(c.pending.drain(..n)),
                        Err(Errno::EAGAIN) => {}
                        Err(e) => panic!("peer send: {e}"),
                    }
                    if !c.pending.is_empty() {
                        iface.tcp.register_send_waker(c.h, &c.waker).unwrap();
                        break;
                    }
                }
                match iface.tcp.recv(c.h, &mut buf) {
                    Ok(0) => {
                        if c.kind == Kind::Sink {
                            let answer = c.check.result().to_le_bytes();
                            assert_eq!(iface.tcp.send(c.h, &answer), Ok(8), "the sink's answer");
                        }
                        iface.tcp.close(c.h, now).expect("close");
                        c.open = false;
                    }
                    Ok(n) => match c.kind {
                        // Straight back from `buf`; what the send buffer
                        // does not take waits in `pending`.
                        Kind::Echo if c.pending.is_empty() => match iface.tcp.send(c.h, &buf[..n]) {
                            Ok(k) => c.pending.extend_from_slice(&buf[k..n]),
                            Err(Errno::EAGAIN) => c.pending.extend_from_slice(&buf[..n]),
                            Err(e) => panic!("peer send: {e}"),
                        },
                        Kind::Echo => c.pending.extend_from_slice(&buf[..n]),
                        Kind::Sink => c.check.feed(&buf[..n]),
                        Kind::Ctl => {
                            assert_eq!(&buf[..n], b"RAW\n", "the control request");
                            assert_eq!(iface.tcp.send(c.h, b"OK\n"), Ok(3));
                            raw_at = Some(Clock::now());
                        }
                    },
                    Err(Errno::EAGAIN) => {
                        iface.tcp.register_recv_waker(c.h, &c.waker).unwrap();
                        break;
                    }
                    Err(e) => panic!("peer recv: {e}"),
                }
            }
        }
        if raw_at.is_some_and(|t| t.elapsed() > Duration::from_millis(20)) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(worked)
    });
    result.unwrap_or_else(|e| panic!("the peer's stack phase: {e}"));
    if loop_stats() {
        let s1 = drv.stats;
        eprintln!("stack phase loop, peer: {}", describe(&s1, &Default::default()));
    }
}

/// Whether `ACCEL_BENCH_LOOP_STATS` asks for the drivers' loop figures
/// (on stderr: how busy each side was and how many frames a poll took).
fn loop_stats() -> bool {
    std::env::var_os("ACCEL_BENCH_LOOP_STATS").is_some()
}

/// The loop figures from `s0` to `s1`.
fn describe(s1: &LoopStats, s0: &LoopStats) -> String {
    let (rx_polls, frames) = (s1.rx_polls - s0.rx_polls, s1.rx_frames - s0.rx_frames);
    format!(
        "busy {:?} in {} of {} turns; {rx_polls} polls received {frames} frames ({:.1} a poll)",
        s1.busy - s0.busy,
        s1.busy_turns - s0.busy_turns,
        s1.polls - s0.polls,
        frames as f64 / rx_polls.max(1) as f64
    )
}

/// The peer's raw phase: every raw frame goes straight back (addresses
/// swapped, same mbuf), until the stop frame; anything else is dropped.
/// Returns the frames echoed.
pub fn peer_raw(drv: &mut Driver) -> u64 {
    let t = drv.now();
    let dev = &mut drv.stack.device;
    let mac = dev.mac().0;
    let (mut rx, mut tx) = (Vec::with_capacity(256), Vec::with_capacity(256));
    let (mut echoed, mut stop) = (0u64, false);
    let mut last = Clock::now();
    while !stop {
        assert!(
            last.elapsed() < Duration::from_secs(20),
            "raw phase: no frame for 20 s; {:?}; {:?}; {:?}",
            dev.stats(),
            dev.port_stats(),
            dev.link()
        );
        if dev.receive(t, &mut rx, 256) == 0 {
            continue;
        }
        last = Clock::now();
        for mut frame in rx.drain(..) {
            let f = frame.as_mut();
            if f.len() != RAW_LEN || f[12..14] != RAW_TYPE {
                continue;
            }
            stop |= f[14..22] == RAW_STOP.to_le_bytes();
            f.copy_within(6..12, 0);
            f[6..12].copy_from_slice(&mac);
            tx.push(frame);
        }
        let n = tx.len();
        let sent = dev.transmit(t, &mut tx);
        assert_eq!(sent, n, "raw phase: the port refused {} echoes", n - sent);
        echoed += n as u64;
    }
    echoed
}

/// Connects to the peer's `port`, retrying (bounded) until it answers.
pub fn connect(drv: &mut Driver, port: u16) -> TcpHandle {
    let remote = std::net::SocketAddrV4::new(PEER_IP, port);
    for _attempt in 0..10 {
        let h = drv.stack.iface.tcp.socket_new();
        let now = drv.now();
        drv.stack.iface.tcp_connect(h, remote, now).expect("connect");
        let ready = drv.run("connect", Duration::from_secs(5), |i, _| {
            match i.tcp.readiness(h) {
                Ok(r) if r.error || r.hangup => ControlFlow::Break(false),
                Ok(r) if r.writable => ControlFlow::Break(true),
                _ => ControlFlow::Continue(false),
            }
        });
        if ready == Ok(true) {
            return h;
        }
        let _ = drv.stack.iface.tcp.close(h, drv.now());
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no connection to {remote} after 10 attempts");
}

/// Round trips of 64 bytes on one connection: every RTT of the measured
/// rounds, after `warm` rounds of warm-up.
pub fn rr(drv: &mut Driver, warm: usize, rounds: usize) -> Vec<Duration> {
    let h = connect(drv, ECHO_PORT);
    let (mut msg, mut got) = ([0u8; MSG], [0u8; MSG]);
    let mut rtts = Vec::with_capacity(rounds);
    for round in 0..warm + rounds {
        message(&mut msg, 0, round as u64);
        let t0 = Clock::now();
        assert_eq!(drv.stack.iface.tcp.send(h, &msg), Ok(MSG), "send the request");
        let mut have = 0;
        let res = drv.run("rr round", STALL, |i, _| match i.tcp.recv(h, &mut got[have..]) {
            Ok(0) => ControlFlow::Break(Err(Errno::ECONNRESET)),
            Ok(n) => {
                have += n;
                if have == MSG {
                    ControlFlow::Break(Ok(()))
                } else {
                    ControlFlow::Continue(true)
                }
            }
            Err(Errno::EAGAIN) => ControlFlow::Continue(false),
            Err(e) => ControlFlow::Break(Err(e)),
        });
        let rtt = t0.elapsed();
        res.unwrap_or_else(|e| panic!("rr round {round} stalled: {e}"))
            .unwrap_or_else(|e| panic!("rr round {round}: {e}"));
        assert_eq!(got, msg, "rr: wrong bytes in round {round}");
        if round >= warm {
            rtts.push(rtt);
        }
    }
    drv.stack.iface.tcp.close(h, drv.now()).unwrap();
    rtts
}

/// One stream of `total` bytes to the sink, which verifies every byte and
/// answers the count: Gbit/s of payload, from the established connection
/// to the answer.
pub fn bulk(drv: &mut Driver, total: u64) -> f64 {
    let h = connect(drv, SINK_PORT);
    let pattern = super::pattern();
    let (mut sent, mut shut) = (0u64, false);
    let (mut answer, mut have) = ([0u8; 8], 0);
    let mut last = Clock::now();
    let t0 = Clock::now();
    let res = drv.run("bulk", Duration::from_secs(300), |i, _| {
        let mut worked = false;
        while sent < total {
            let off = (sent % 251) as usize;
            let n = (total - sent).min(256 * 1024) as usize;
            match i.tcp.send(h, &pattern[off..off + n]) {
                Ok(k) => (sent, worked) = (sent + k as u64, true),
                Err(Errno::EAGAIN) => break,
                Err(e) => return ControlFlow::Break(Err(format!("send: {e}"))),
            }
        }
        if sent == total && !shut {
            i.tcp.shutdown(h, false, true).unwrap();
            (shut, worked) = (true, true);
        }
        match i.tcp.recv(h, &mut answer[have..]) {
            Ok(0) => {
                return ControlFlow::Break(Err(format!("end of stream after {have} bytes of the answer")))
            }
            Ok(n) => (have, worked) = (have + n, true),
            Err(Errno::EAGAIN) => {}
            Err(e) => return ControlFlow::Break(Err(format!("recv: {e}"))),
        }
        if have == 8 {
            return ControlFlow::Break(Ok(()));
        }
        if worked {
            last = Clock::now();
        } else if last.elapsed() > STALL {
            let sock = i.tcp.socket(h).map(|s| (s.state(), s.stats()));
            return ControlFlow::Break(Err(format!("stalled after {sent} bytes: {sock:?}")));
        }
        ControlFlow::Continue(worked)
    });
    let elapsed = t0.elapsed();
    res.unwrap().unwrap_or_else(|e| panic!("bulk: {e}"));
    let verified = u64::from_le_bytes(answer);
    assert_eq!(
        verified, total,
        "bulk: the peer verified {verified} of {total} bytes"
    );
    drv.stack.iface.tcp.close(h, drv.now()).unwrap();
    total as f64 * 8.0 / elapsed.as_secs_f64() / 1e9
}

/// `flows` connections each keep one 64-byte message in flight to the
/// echo server: echoes per second, the best of [`WINDOWS`] windows of
/// `measure` after `warm`, and frames the client sent per echo (over all
/// windows).
pub fn echo(drv: &mut Driver, flows: usize, warm: Duration, measure: Duration) -> (f64, f64) {
    let hs: Vec<TcpHandle> = (0..flows).map(|_| connect(drv, ECHO_PORT)).collect();
    let woken = Woken::new(flows);
    let wakers: Vec<Waker> = (0..flows).map(|id| woken.waker(id)).collect();
    let mut rounds = vec![0u64; flows];
    let mut have = vec![0usize; flows];
    let mut bufs = vec![[0u8; MSG]; flows];
    let (mut msg, mut ids) = ([0u8; MSG], Vec::new());
    for (id, &h) in hs.iter().enumerate() {
        message(&mut msg, id as u32, 0);
        assert_eq!(drv.stack.iface.tcp.send(h, &msg), Ok(MSG));
        drv.stack.iface.tcp.register_recv_waker(h, &wakers[id]).unwrap();
    }
    let mut count = 0u64;
    // Times come from the driver's `now` (the monotonic clock, read once
    // per turn for the poll), as an application on the stack would use
    // them: no clock read of the loop's own.
    let mut mark: Option<(Instant, u64, u64)> = None;
    let (mut best, mut windows, mut total, mut total_frames) = (0f64, 0, 0u64, 0u64);
    let start = drv.now();
    let mut last = start;
    let s0 = drv.stats;
    let res = drv.run(
        "echo",
        warm + measure * WINDOWS + Duration::from_secs(30),
        |i, now| {
            woken.drain(&mut ids);
            let worked = !ids.is_empty();
            for id in ids.drain(..) {
                let h = hs[id];
                loop {
                    match i.tcp.recv(h, &mut bufs[id][have[id]..]) {
                        Ok(0) => panic!("echo: connection {id} closed"),
                        Ok(n) => have[id] += n,
                        Err(Errno::EAGAIN) => {
                            i.tcp.register_recv_waker(h, &wakers[id]).unwrap();
                            break;
                        }
                        Err(e) => panic!("echo: connection {id}: {e}"),
                    }
                    if have[id] == MSG {
                        message(&mut msg, id as u32, rounds[id]);
                        assert_eq!(bufs[id], msg, "echo: wrong bytes on connection {id}");
                        (have[id], rounds[id], count) = (0, rounds[id] + 1, count + 1);
                        message(&mut msg, id as u32, rounds[id]);
                        assert_eq!(i.tcp.send(h, &msg), Ok(MSG), "echo: send");
                    }
                }
            }
            if worked {
                last = now;
            } else if now.saturating_since(last) > STALL {
                panic!("echo stalled: {count} echoes");
            }
            match mark {
                None if now.saturating_since(start) >= warm => mark = Some((now, count, i.stats().tx_frames)),
                Some((t, c0, f0)) if now.saturating_since(t) >= measure => {
                    best = best.max((count - c0) as f64 / now.saturating_since(t).as_secs_f64());
                    (total, total_frames) = (total + count - c0, total_frames + i.stats().tx_frames - f0);
                    windows += 1;
                    if windows == WINDOWS {
                        return ControlFlow::Break(());
                    }
                    mark = Some((now, count, i.stats().tx_frames));
                }
                _ => {}
            }
            ControlFlow::Continue(worked)
        },
    );
    res.unwrap_or_else(|e| panic!("echo: {e}"));
    if loop_stats() {
        let s1 = drv.stats;
        eprintln!(
            "echo loop, client: {count} echoes in {:?}; {}",
            drv.now().saturating_since(start),
            describe(&s1, &s0)
        );
    }
    (best, total_frames as f64 / total.max(1) as f64)
}

/// Asks the peer for the raw phase and waits for its answer.
pub fn request_raw(drv: &mut Driver) {
    let h = connect(drv, CTL_PORT);
    assert_eq!(drv.stack.iface.tcp.send(h, b"RAW\n"), Ok(4));
    let mut buf = [0u8; 3];
    let mut have = 0;
    drv.run("the raw phase's answer", STALL, |i, _| {
        match i.tcp.recv(h, &mut buf[have..]) {
            Ok(n) if n > 0 => {
                have += n;
                if have == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(true)
                }
            }
            _ => ControlFlow::Continue(false),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&buf, b"OK\n");
}

/// Writes raw frame `seq` from `mac` into `f`.
fn raw_frame(f: &mut [u8], mac: EthernetAddress, seq: u64) {
    f[..6].fill(0xff);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&RAW_TYPE);
    f[14..22].copy_from_slice(&seq.to_le_bytes());
    // As the echo messages' bodies: a slice, no byte loop, so that the
    // two measurements' applications cost alike.
    let n = f.len() - 22;
    f[22..].copy_from_slice(accel_bench::ramp(seq as u8, n));
}

/// Raw frames with no stack: `window` in flight, each echoed by the peer
/// and checked (order, length, contents); echoes per second, the best of
/// [`WINDOWS`] windows of `measure` after `warm`. Ends the peer's raw
/// phase.
pub fn raw(drv: &mut Driver, window: usize, warm: Duration, measure: Duration) -> f64 {
    raw_sync(drv);
    let t = drv.now();
    let dev = &mut drv.stack.device;
    let mac = dev.mac();
    let (mut tx, mut rx) = (Vec::with_capacity(window), Vec::with_capacity(256));
    let (mut next_tx, mut next_rx) = (0u64, 0u64);
    let mut want = [0u8; RAW_LEN];
    let start = Clock::now();
    let mut last = Clock::now();
    let mut mark: Option<(Clock, u64)> = None;
    let (mut best, mut windows) = (0f64, 0);
    let result = loop {
        while ((next_tx - next_rx) as usize) < window {
            let Some(mut buf) = dev.alloc_tx(RAW_LEN) else {
                break;
            };
            raw_frame(buf.as_mut(), mac, next_tx);
            tx.push(buf);
            next_tx += 1;
        }
        let n = tx.len();
        assert_eq!(dev.transmit(t, &mut tx), n, "raw: the port refused frames");
        if dev.receive(t, &mut rx, 256) > 0 {
            last = Clock::now();
        } else {
            assert!(
                last.elapsed() < STALL,
                "raw: stalled at frame {next_rx} of {next_tx}; {:?}; {:?}; {:?}",
                dev.stats(),
                dev.port_stats(),
                dev.link()
            );
        }
        for frame in rx.drain(..) {
            let f = frame.as_ref();
            if !is_raw(f) || is_sync(f) {
                continue; // a late sync frame, or TCP of the stack phase
            }
            raw_frame(&mut want, mac, next_rx);
            want[..6].copy_from_slice(&mac.0);
            assert_eq!(&f[..6], &mac.0[..], "raw: frame {next_rx} not addressed to us");
            assert_eq!(f[12..], want[12..], "raw: frame {next_rx} differs");
            next_rx += 1;
        }
        match mark {
            None if start.elapsed() >= warm => mark = Some((Clock::now(), next_rx)),
            Some((m, r0)) if m.elapsed() >= measure => {
                best = best.max((next_rx - r0) as f64 / m.elapsed().as_secs_f64());
                windows += 1;
                if windows == WINDOWS {
                    break best;
                }
                mark = Some((Clock::now(), next_rx));
            }
            _ => {}
        }
    };
    // Drain what is in flight, then stop the peer.
    let end = Clock::now() + STALL;
    while next_rx < next_tx && Clock::now() < end {
        dev.receive(t, &mut rx, 256);
        next_rx += rx
            .drain(..)
            .filter(|f| is_raw(f.as_ref()) && !is_sync(f.as_ref()))
            .count() as u64;
    }
    assert_eq!(next_rx, next_tx, "raw: frames lost at the end");
    raw_stop(drv);
    result
}

/// Whether `f` is a raw benchmark frame.
fn is_raw(f: &[u8]) -> bool {
    f.len() == RAW_LEN && f[12..14] == RAW_TYPE
}

/// Whether `f` is a raw frame of the sync sequence.
fn is_sync(f: &[u8]) -> bool {
    is_raw(f) && f[14..22] == RAW_SYNC.to_le_bytes()
}

/// Waits until the peer echoes raw frames: until it has left its stack
/// phase they are lost, so one goes out every 10 ms until one comes back.
fn raw_sync(drv: &mut Driver) {
    let t = drv.now();
    let dev = &mut drv.stack.device;
    let mac = dev.mac();
    let mut rx = Vec::with_capacity(256);
    for _ in 0..200 {
        let mut buf = dev.alloc_tx(RAW_LEN).expect("an mbuf");
        raw_frame(buf.as_mut(), mac, RAW_SYNC);
        assert_eq!(dev.transmit(t, &mut vec![buf]), 1);
        std::thread::sleep(Duration::from_millis(10));
        dev.receive(t, &mut rx, 256);
        if rx.drain(..).any(|f| is_sync(f.as_ref())) {
            return;
        }
    }
    panic!("raw: the peer echoed nothing within 2 s");
}

/// Ends the peer's raw phase.
fn raw_stop(drv: &mut Driver) {
    let t = drv.now();
    let dev = &mut drv.stack.device;
    let mut stop = dev.alloc_tx(RAW_LEN).expect("an mbuf");
    raw_frame(stop.as_mut(), dev.mac(), RAW_STOP);
    assert_eq!(dev.transmit(t, &mut vec![stop]), 1);
}

/// Raw frame ping-pong, the limit of the memif path for round trips: one
/// frame in flight, sent and received by busy polling (no stack), each
/// echo checked; every round trip's time after `warm` rounds, from the
/// transmit call to the echo's receipt. Ends the peer's raw phase.
pub fn raw_rr(drv: &mut Driver, warm: usize, rounds: usize) -> Vec<Duration> {
    raw_sync(drv);
    let t = drv.now();
    let dev = &mut drv.stack.device;
    let mac = dev.mac();
    let mut rx = Vec::with_capacity(256);
    let mut want = [0u8; RAW_LEN];
    let mut rtts = Vec::with_capacity(rounds);
    for round in 0..(warm + rounds) as u64 {
        let mut buf = dev.alloc_tx(RAW_LEN).expect("an mbuf");
        raw_frame(buf.as_mut(), mac, round);
        raw_frame(&mut want, mac, round);
        want[..6].copy_from_slice(&mac.0);
        let t0 = Clock::now();
        assert_eq!(
            dev.transmit(t, &mut vec![buf]),
            1,
            "raw rr: the port refused a frame"
        );
        let back = 'wait: loop {
            dev.receive(t, &mut rx, 256);
            for frame in rx.drain(..) {
                let f = frame.as_ref();
                if is_raw(f) && !is_sync(f) {
                    // Addressed to us, from the peer, contents as sent.
                    assert_eq!(f[..6], want[..6], "raw rr: round {round} not addressed to us");
                    assert_eq!(f[12..], want[12..], "raw rr: round {round} differs");
                    break 'wait t0.elapsed();
                }
            }
            assert!(
                t0.elapsed() < STALL,
                "raw rr: round {round} not echoed within {STALL:?}"
            );
        };
        if round >= warm as u64 {
            rtts.push(back);
        }
    }
    raw_stop(drv);
    rtts
}
