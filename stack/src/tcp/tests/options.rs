//! Socket options on a connection, as Linux implements tcp(7), socket(7)
//! and ip(7): keepalive switched on and retimed, `TCP_USER_TIMEOUT`,
//! `TCP_CORK` and `TCP_NODELAY`'s push, `TCP_MAXSEG`, `TCP_DEFER_ACCEPT`,
//! `TCP_QUICKACK` and pingpong mode.

use super::*;
use crate::tcp::SockOpt;

fn ka(idle_s: u64, interval_s: u64, count: u32) -> Keepalive {
    Keepalive {
        idle: Duration::from_secs(idle_s),
        interval: Duration::from_secs(interval_s),
        count,
    }
}

/// The only segment out at `now`: its (seq, payload length, control, ack).
fn one(s: &mut TcpSocket, now: Instant) -> (SeqNumber, usize, TcpControl, Option<SeqNumber>) {
    let out = recv(s, now);
    assert_eq!(out.len(), 1, "one segment expected: {out:?}");
    let (r, p) = &out[0];
    (r.seq_number, p.len(), r.control, r.ack_number)
}

// ---- SO_KEEPALIVE, TCP_KEEPIDLE ----

#[test]
fn keepalive_switched_on_probes_a_full_idle_time_later() {
    // Linux's tcp_set_keepalive: the timer starts at the setsockopt.
    let mut s = socket_established();
    assert_eq!(s.keepalive_at, None);
    s.set_option(SockOpt::Keepalive(Some(ka(10, 1, 3))), at(5_000));
    assert_eq!(s.keepalive_at, Some(at(15_000)));
    s.on_timers(at(14_999));
    recv_nothing(&mut s, at(14_999));
    s.on_timers(at(15_000));
    assert_eq!(recv(&mut s, at(15_000)), [keepalive_probe()]);
    assert_eq!(s.keepalive_at, Some(at(16_000)));
    s.set_option(SockOpt::Keepalive(None), at(15_500));
    assert_eq!(s.keepalive_at, None);
    assert_eq!(s.poll_at(), None);
}

#[test]
fn keepidle_retimes_from_the_last_segment_received() {
    // Linux's TCP_KEEPIDLE with keepalive on: the next probe is the new
    // idle time after the last segment (at once if that has passed).
    let mut s = socket_established_with(cfg_keepalive(), &peer_syn());
    assert_eq!(s.keepalive_at, Some(at(10_010)));
    s.set_option(SockOpt::Keepalive(Some(ka(5, 1, 3))), at(2_000));
    assert_eq!(s.keepalive_at, Some(at(5_010)));
    s.set_option(SockOpt::Keepalive(Some(ka(1, 1, 3))), at(3_000));
    assert_eq!(s.keepalive_at, Some(at(3_000)));
    s.on_timers(at(3_000));
    assert_eq!(recv(&mut s, at(3_000)), [keepalive_probe()]);
    assert_eq!(s.keepalive_at, Some(at(4_000)));
    // A new interval or count leaves the timer where it is.
    s.set_option(SockOpt::Keepalive(Some(ka(1, 7, 5))), at(3_500));
    assert_eq!(s.keepalive_at, Some(at(4_000)));
    s.on_timers(at(4_000));
    assert_eq!(recv(&mut s, at(4_000)), [keepalive_probe()]);
    assert_eq!(s.keepalive_at, Some(at(11_000)));
}

#[test]
fn keepalive_stays_quiet_while_data_is_in_flight() {
    // Linux: with data outstanding, retransmission watches the peer, not
    // keepalive (tcp_keepalive_timer reschedules a full idle time).
    let mut s = socket_established_with(cfg_keepalive(), &peer_syn());
    s.send(b"x").unwrap();
    assert_eq!(one(&mut s, at(10_000)).1, 1);
    assert_eq!(s.on_timers(at(10_010)), Event::None);
    recv_nothing(&mut s, at(10_010));
    assert_eq!(s.keepalive_at, Some(at(20_010)));
    // The ACK restarts the idle time from itself.
    send(&mut s, at(10_020), from_peer(0, 1), b"");
    assert_eq!(s.keepalive_at, Some(at(20_020)));
}

#[test]
fn keepalive_with_user_timeout_probes_past_the_count() {
    // Linux: with TCP_USER_TIMEOUT, TCP_KEEPCNT is ignored; the
    // connection fails once the peer has been silent that long and a
    // probe went unanswered. A count of 1 alone would end it at 11 s.
    let cfg = TcpConfig {
        keepalive: Some(ka(10, 1, 1)),
        user_timeout: Some(ms(12_500)),
        ..cfg()
    };
    let mut s = socket_established_with(cfg, &peer_syn());
    for t in [10_010, 11_010, 12_010] {
        assert_eq!(s.on_timers(at(t)), Event::None);
        assert_eq!(recv(&mut s, at(t)), [keepalive_probe()], "at {t} ms");
    }
    assert_eq!(s.on_timers(at(13_010)), Event::None);
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..to_peer(0, 0, 0)
    };
    assert_eq!(dispatch(&mut s, at(13_010)), (Event::Closed, vec![seg(rst, b"")]));
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::ETIMEDOUT));
}

#[test]
fn keepalive_count_alone_ends_at_the_count() {
    // The same without a user timeout: after one unanswered probe.
    let cfg = TcpConfig {
        keepalive: Some(ka(10, 1, 1)),
        ..cfg()
    };
    let mut s = socket_established_with(cfg, &peer_syn());
    s.on_timers(at(10_010));
    assert_eq!(recv(&mut s, at(10_010)), [keepalive_probe()]);
    s.on_timers(at(11_010));
    assert_eq!(one(&mut s, at(11_010)).2, TcpControl::Rst);
    assert_eq!(s.take_error(), Some(Errno::ETIMEDOUT));
}

// ---- TCP_USER_TIMEOUT ----

#[test]
fn user_timeout_clamps_the_retransmission_timer() {
    // Linux's tcp_clamp_rto_to_user_timeout: after a retransmission the
    // next expiry comes no later than the user timeout after the first
    // transmission, and the connection fails there (no RST: tcp_write_err).
    let cfg = TcpConfig {
        user_timeout: Some(ms(1_000)),
        ..cfg()
    };
    let mut s = socket_established_with(cfg, &peer_syn());
    s.send(b"hello").unwrap();
    assert_eq!(one(&mut s, at(100)).1, 5);
    assert_eq!(s.rto_at, Some(at(300)));
    assert_eq!(s.on_timers(at(300)), Event::None);
    assert_eq!(one(&mut s, at(300)).1, 5);
    assert_eq!(s.rto_at, Some(at(700)), "backed off, within the user timeout");
    assert_eq!(s.on_timers(at(700)), Event::None);
    assert_eq!(one(&mut s, at(700)).1, 5);
    assert_eq!(s.rto_at, Some(at(1_100)), "clamped: 100 ms + 1 s");
    assert_eq!(s.on_timers(at(1_100)), Event::Closed);
    recv_nothing(&mut s, at(1_100));
    assert_eq!(s.take_error(), Some(Errno::ETIMEDOUT));
}

#[test]
fn user_timeout_waits_for_a_first_retransmission() {
    // Linux's retransmits_timed_out: nothing has timed out before a
    // retransmission went out; then the clamped timer fires a tick later
    // (Linux: one jiffy), never at the same instant (a deadline still due
    // after the timers ran would spin them).
    let cfg = TcpConfig {
        user_timeout: Some(ms(50)),
        ..cfg()
    };
    let mut s = socket_established_with(cfg, &peer_syn());
    s.send(b"hello").unwrap();
    recv(&mut s, at(100));
    assert_eq!(s.on_timers(at(300)), Event::None);
    assert_eq!(one(&mut s, at(300)).1, 5, "retransmitted");
    assert_eq!(s.rto_at, Some(at(301)));
    assert_eq!(s.on_timers(at(301)), Event::Closed);
    assert_eq!(s.take_error(), Some(Errno::ETIMEDOUT));
}

#[test]
fn user_timeout_bounds_zero_window_probing() {
    // Linux's tcp_probe_timer: probing a closed window fails once the user
    // timeout has passed since the first probe (answers that keep the
    // window closed do not restart it), and the probe timer is clamped.
    let cfg = TcpConfig {
        user_timeout: Some(ms(1_000)),
        ..cfg()
    };
    let mut s = socket_established_with(cfg, &peer_syn());
    let closed = TcpRepr {
        window_len: 0,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), closed, b"");
    s.send(b"hello").unwrap();
    recv_nothing(&mut s, at(100));
    assert_eq!(s.persist_at, Some(at(300)));
    s.on_timers(at(300));
    assert_eq!(one(&mut s, at(300)).0, lseq(0) - 1, "a probe");
    assert_eq!(s.persist_at, Some(at(700)));
    send(&mut s, at(310), closed, b"");
    s.on_timers(at(700));
    assert_eq!(one(&mut s, at(700)).0, lseq(0) - 1);
    assert_eq!(s.persist_at, Some(at(1_300)), "clamped: 300 ms + 1 s");
    assert_eq!(s.on_timers(at(1_300)), Event::Closed);
    assert_eq!(s.take_error(), Some(Errno::ETIMEDOUT));
}

// ---- TCP_CORK, TCP_NODELAY ----

#[test]
fn cork_holds_partial_segments_until_uncorked() {
    // tcp(7): "If set, don't send out partial frames. All queued partial
    // frames are sent when the option is cleared again."
    let mut s = socket_established();
    s.set_option(SockOpt::Cork(true), at(100));
    s.send(&data(100)).unwrap();
    recv_nothing(&mut s, at(100));
    s.send(&data(150)).unwrap();
    recv_nothing(&mut s, at(110));
    s.set_option(SockOpt::Cork(false), at(120));
    assert_eq!(shape(&recv(&mut s, at(120))), [(lseq(0), 250, TcpControl::Psh)]);
}

#[test]
fn cork_lets_full_segments_go() {
    let mut s = socket_established();
    s.set_option(SockOpt::Cork(true), at(100));
    s.send(&data(MSS + 100)).unwrap();
    assert_eq!(shape(&recv(&mut s, at(100))), [(lseq(0), MSS, TcpControl::None)]);
    // Acknowledged, the partial tail still waits.
    send(&mut s, at(150), from_peer(0, MSS), b"");
    recv_nothing(&mut s, at(150));
}

#[test]
fn cork_releases_held_data_an_rto_after_the_flight_empties() {
    // tcp(7)'s "200 millisecond ceiling": Linux's probe timer sends corked
    // data an RTO (200 ms at least) after nothing is in flight.
    let mut s = socket_established();
    s.set_option(SockOpt::Cork(true), at(100));
    s.send(&data(100)).unwrap();
    recv_nothing(&mut s, at(100));
    assert_eq!(s.persist_at, Some(at(300)));
    s.on_timers(at(299));
    recv_nothing(&mut s, at(299));
    s.on_timers(at(300));
    assert_eq!(shape(&recv(&mut s, at(300))), [(lseq(0), 100, TcpControl::Psh)]);
    assert_eq!(s.persist_at, None);
    // More, still corked: nothing while data is in flight, then a fresh
    // ceiling from the ACK.
    s.send(&data(50)).unwrap();
    recv_nothing(&mut s, at(310));
    assert_eq!(s.persist_at, None);
    send(&mut s, at(320), from_peer(0, 100), b"");
    let t = s.persist_at.expect("the ceiling is armed");
    assert!(t >= at(520), "{t}");
    recv_nothing(&mut s, at(320));
    s.on_timers(t);
    assert_eq!(shape(&recv(&mut s, t)), [(lseq(100), 50, TcpControl::Psh)]);
}

#[test]
fn nodelay_pushes_what_is_corked_once() {
    // tcp(7): setting TCP_NODELAY "forces an explicit flush of pending
    // output, even if TCP_CORK is currently set"; later data is corked.
    let mut s = socket_established();
    s.set_option(SockOpt::Cork(true), at(100));
    s.send(&data(100)).unwrap();
    recv_nothing(&mut s, at(100));
    s.set_option(SockOpt::NoDelay(true), at(110));
    assert_eq!(shape(&recv(&mut s, at(110))), [(lseq(0), 100, TcpControl::Psh)]);
    s.send(&data(50)).unwrap();
    recv_nothing(&mut s, at(120));
    // Uncorked with TCP_NODELAY on, it goes at once (no Nagle wait).
    s.set_option(SockOpt::Cork(false), at(130));
    assert_eq!(shape(&recv(&mut s, at(130))), [(lseq(100), 50, TcpControl::Psh)]);
}

#[test]
fn cork_never_holds_a_fin() {
    let mut s = socket_established();
    s.set_option(SockOpt::Cork(true), at(100));
    s.send(&data(100)).unwrap();
    recv_nothing(&mut s, at(100));
    s.shutdown_write().unwrap();
    assert_eq!(shape(&recv(&mut s, at(110))), [(lseq(0), 100, TcpControl::Fin)]);
}

// ---- TCP_MAXSEG ----

#[test]
fn maxseg_lowers_the_mss_advertised_and_used() {
    let cfg = TcpConfig {
        user_mss: Some(500),
        nodelay: true,
        ..cfg()
    };
    let mut s = TcpSocket::new(cfg);
    s.connect(local(), remote(), LOCAL_SEQ, at(0));
    let out = recv(&mut s, at(0));
    assert_eq!(out[0].0.max_seg_size, Some(500));
    send(&mut s, at(10), peer_syn_ack(), b"");
    assert_eq!((s.mss(), s.maxseg()), (500, 500));
    s.send(&data(1200)).unwrap();
    let sizes: Vec<usize> = recv(&mut s, at(20)).iter().map(|(_, p)| p.len()).collect();
    assert_eq!(sizes, [500, 500, 200]);
}

#[test]
fn maxseg_on_a_listener_lowers_the_syn_ack_mss() {
    let cfg = TcpConfig {
        user_mss: Some(700),
        ..cfg()
    };
    let mut s = TcpSocket::accept_syn(cfg, local(), remote(), &peer_syn(), LOCAL_SEQ, at(0));
    let out = recv(&mut s, at(0));
    assert_eq!(out[0].0.max_seg_size, Some(700));
    assert_eq!(s.mss(), 700);
}

#[test]
fn maxseg_reads_back_as_linux_mss_cache() {
    // TCP_MAXSEG on a connection reads the payload of a full segment
    // less the timestamps option; set after the handshake it changes
    // nothing (Linux clamps only at the handshake).
    assert_eq!(socket_established().maxseg(), MSS);
    let mut s = socket_established_ts();
    assert_eq!(s.maxseg(), MSS - 12);
    s.set_option(SockOpt::MaxSeg(Some(500)), at(100));
    assert_eq!((s.mss(), s.maxseg()), (MSS, MSS - 12));
}

// ---- TCP_DEFER_ACCEPT ----

fn cfg_defer(secs: u64) -> TcpConfig {
    TcpConfig {
        defer_accept: Some(Duration::from_secs(secs)),
        ..cfg()
    }
}

#[test]
fn defer_accept_holds_a_bare_ack_until_the_deadline() {
    // Linux keeps the connection from the accept queue until data comes
    // or the deferral (counted from the SYN) runs out.
    let mut s = socket_syn_received_with(cfg_defer(3), &peer_syn());
    assert_eq!(
        send(&mut s, at(10), from_peer(0, 0), b""),
        Input::Done(Event::None)
    );
    assert_eq!(s.state, State::Established);
    assert_eq!(s.poll_at(), Some(at(3_000)));
    assert_eq!(s.on_timers(at(2_999)), Event::None);
    assert_eq!(s.on_timers(at(3_000)), Event::Established);
    assert_eq!(s.poll_at(), None);
}

#[test]
fn defer_accept_lets_data_through_at_once() {
    let mut s = socket_syn_received_with(cfg_defer(3), &peer_syn());
    assert_eq!(
        send(&mut s, at(10), from_peer(0, 0), b""),
        Input::Done(Event::None)
    );
    assert_eq!(
        send(&mut s, at(500), from_peer(0, 0), b"GET"),
        Input::Done(Event::Established)
    );
    assert_eq!(read_all(&mut s), b"GET");
    // The handshake's ACK may carry data too.
    let mut s = socket_syn_received_with(cfg_defer(3), &peer_syn());
    assert_eq!(
        send(&mut s, at(10), from_peer(0, 0), b"GET"),
        Input::Done(Event::Established)
    );
    // And a FIN ends the wait as well.
    let mut s = socket_syn_received_with(cfg_defer(3), &peer_syn());
    send(&mut s, at(10), from_peer(0, 0), b"");
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(20), fin, b""), Input::Done(Event::Established));
}

#[test]
fn defer_accept_on_a_connecting_socket_delays_the_last_ack() {
    // Linux's tcp_rcv_synsent_state_process: the handshake's last ACK
    // waits up to 200 ms for the first data to carry it.
    let mut s = socket_syn_sent_with(cfg_defer(1));
    assert_eq!(
        send(&mut s, at(10), peer_syn_ack(), b""),
        Input::Done(Event::Established)
    );
    recv_nothing(&mut s, at(10));
    assert_eq!(s.ack_due, Some(at(210)));
    s.send(b"GET").unwrap();
    assert_eq!(one(&mut s, at(20)), (lseq(0), 3, TcpControl::Psh, Some(rseq(0))));
    // Without data, the ACK goes alone at 200 ms.
    let mut s = socket_syn_sent_with(cfg_defer(1));
    send(&mut s, at(10), peer_syn_ack(), b"");
    s.on_timers(at(210));
    assert_eq!(
        one(&mut s, at(210)),
        (lseq(0), 0, TcpControl::None, Some(rseq(0)))
    );
}

// ---- TCP_QUICKACK, pingpong mode ----

#[test]
fn quickack_sends_a_delayed_ack_now_and_the_next_ones_at_once() {
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), b"a");
    recv_nothing(&mut s, at(100));
    assert_eq!(s.ack_due, Some(at(140)));
    s.set_option(SockOpt::QuickAck(true), at(110));
    assert_eq!(
        one(&mut s, at(110)),
        (lseq(0), 0, TcpControl::None, Some(rseq(1)))
    );
    send(&mut s, at(200), from_peer(1, 0), b"b");
    assert_eq!(
        one(&mut s, at(200)),
        (lseq(0), 0, TcpControl::None, Some(rseq(2)))
    );
    assert!(s.quickack());
}

#[test]
fn quickack_off_delays_acks_until_a_delayed_ack_times_out() {
    // Linux: TCP_QUICKACK 0 enters pingpong mode; a delayed ACK that has
    // to wait its full time leaves it (tcp_delack_timer_handler).
    let mut s = socket_established();
    s.set_option(SockOpt::QuickAck(true), at(50));
    s.set_option(SockOpt::QuickAck(false), at(60));
    assert!(!s.quickack());
    send(&mut s, at(100), from_peer(0, 0), b"a");
    recv_nothing(&mut s, at(100));
    s.on_timers(at(140));
    assert_eq!(one(&mut s, at(140)).3, Some(rseq(1)));
    assert!(s.quickack());
}

#[test]
fn a_prompt_reply_enters_pingpong_mode() {
    // Linux's tcp_event_data_sent: data sent within 40 ms of data received
    // makes the connection interactive; TCP_QUICKACK then reads 0.
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), b"ping");
    assert_eq!(read_all(&mut s), b"ping");
    assert!(s.quickack());
    s.send(b"pong").unwrap();
    assert_eq!(one(&mut s, at(110)), (lseq(0), 4, TcpControl::Psh, Some(rseq(4))));
    assert!(!s.quickack());
    // A reply that took longer than that does not.
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), b"ping");
    s.send(b"pong").unwrap();
    recv(&mut s, at(139));
    assert!(!s.quickack());
    let mut s = socket_established();
    s.set_option(SockOpt::NoDelay(true), at(0));
    send(&mut s, at(100), from_peer(0, 0), b"ping");
    s.on_timers(at(140));
    recv(&mut s, at(140));
    s.send(b"pong").unwrap();
    recv(&mut s, at(150));
    assert!(s.quickack());
}

#[test]
fn quickack_off_before_connecting_delays_the_handshake_ack() {
    let mut cfg = cfg();
    cfg.apply(SockOpt::QuickAck(false));
    let mut s = socket_syn_sent_with(cfg);
    assert!(!s.quickack());
    send(&mut s, at(10), peer_syn_ack(), b"");
    recv_nothing(&mut s, at(10));
    assert_eq!(s.ack_due, Some(at(210)));
}

#[test]
fn an_accepted_connection_starts_out_of_pingpong_mode() {
    // Linux clears an accepted socket's ACK state: its listener's
    // TCP_QUICKACK 0 does not carry over.
    let mut cfg = cfg();
    cfg.apply(SockOpt::QuickAck(false));
    let s = socket_syn_received_with(cfg, &peer_syn());
    assert!(s.quickack());
}
