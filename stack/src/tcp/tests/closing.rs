//! Closing: FIN after data, every closing state through TIME-WAIT, half-close and aborts, and readiness and wakers.

use super::*;

// ---- ESTABLISHED: closing ----

#[test]
fn established_shutdown_sends_fin_after_the_queued_data() {
    // RFC 9293 §3.10.4: CLOSE queues a FIN after the data; -> FIN-WAIT-1.
    let mut s = socket_established();
    s.send(&data(3000)).unwrap();
    s.shutdown_write().unwrap();
    assert_eq!(s.state, State::Established, "until the FIN is sent");
    assert_eq!(
        shape(&recv(&mut s, at(100))),
        [
            (lseq(0), MSS, TcpControl::None),
            (lseq(MSS), MSS, TcpControl::None),
            (lseq(2 * MSS), 3000 - 2 * MSS, TcpControl::Fin),
        ]
    );
    assert_eq!(s.state, State::FinWait1);
    assert_eq!(s.fin_sent, Some(lseq(3000)));
    assert_eq!(s.snd_nxt, lseq(3001));
    // Data and FIN acknowledged.
    send(&mut s, at(150), from_peer(0, 3001), b"");
    assert_eq!(s.state, State::FinWait2);
    assert_eq!(s.send_queue(), 0);
}

#[test]
fn established_close_sends_fin() {
    // close() with nothing unread is a graceful close.
    let mut s = socket_established();
    assert!(!s.close(at(100)), "the stack finishes the connection");
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(fin, b"")]);
    assert_eq!(s.state, State::FinWait1);
}

#[test]
fn established_close_with_unread_data_resets() {
    // RFC 2525 §2.17 / Linux tcp_close: closing with unread data sends a
    // RST instead of a FIN.
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), b"abc");
    assert!(!s.close(at(100)));
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..to_peer(0, 3, 0)
    };
    assert_eq!(dispatch(&mut s, at(101)), (Event::Closed, vec![seg(rst, b"")]));
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(102));
}

#[test]
fn established_close_with_linger_zero_resets() {
    // SO_LINGER {on, 0}: close() aborts with a RST.
    let mut s = socket_established_with(
        TcpConfig {
            linger_zero: true,
            ..cfg()
        },
        &peer_syn(),
    );
    assert!(!s.close(at(100)));
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..to_peer(0, 0, 0)
    };
    assert_eq!(dispatch(&mut s, at(100)), (Event::Closed, vec![seg(rst, b"")]));
    assert_eq!(s.state, State::Closed);
}

#[test]
fn established_send_after_shutdown_is_epipe() {
    let mut s = socket_established();
    s.shutdown_write().unwrap();
    assert_eq!(s.send(b"late"), Err(Errno::EPIPE));
}

#[test]
fn established_recv_without_data_is_eagain() {
    let mut s = socket_established();
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::EAGAIN));
}

#[test]
fn established_recv_after_reset_error_is_end_of_stream() {
    // Linux tcp_reset -> tcp_done sets sk_shutdown = SHUTDOWN_MASK: the
    // first recv reports ECONNRESET (sk_err), later ones return 0
    // (RCV_SHUTDOWN), not ENOTCONN (which is for never-connected sockets).
    // readiness() agrees: it reports the socket readable and read-closed.
    let mut s = socket_established();
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), rst, b"");
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::ECONNRESET));
    let r = s.readiness();
    assert!(r.readable && r.read_closed);
    assert_eq!(s.recv(&mut [0; 8]), Ok(0));
}

// ---- FIN-WAIT-1 ----

#[test]
fn fin_wait_1_ack_of_fin_enters_fin_wait_2() {
    // RFC 9293 §3.10.7.4 (fifth, FIN-WAIT-1): our FIN acknowledged ->
    // FIN-WAIT-2.
    let mut s = socket_fin_wait_1();
    assert_eq!(
        send(&mut s, at(100), from_peer(0, 1), b""),
        Input::Done(Event::None)
    );
    assert_eq!(s.state, State::FinWait2);
    assert_eq!(s.rto_at, None);
    assert_eq!(s.finwait2_at, None, "the program still owns the socket");
    recv_nothing(&mut s, at(100));
}

#[test]
fn fin_wait_1_fin_is_retransmitted() {
    // RFC 9293 §3.8.1: the FIN is retransmitted like data.
    let mut s = socket_fin_wait_1();
    assert_eq!(s.rto_at, Some(at(220)));
    s.on_timers(at(220));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(220)), [seg(fin, b"")]);
    assert_eq!(s.state, State::FinWait1);
}

#[test]
fn fin_wait_1_peer_fin_enters_closing() {
    // RFC 9293 §3.10.7.4 (eighth, FIN-WAIT-1): FIN without the ACK of
    // ours -> CLOSING (simultaneous close).
    let mut s = socket_fin_wait_1();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(100), fin, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::Closing);
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(1, 1, WIN), b"")]);
}

#[test]
fn fin_wait_1_fin_acking_ours_enters_time_wait() {
    // RFC 9293 §3.10.7.4 (eighth, FIN-WAIT-1): "If our FIN has been ACKed
    // ... enter the TIME-WAIT state, start the time-wait timer".
    let mut s = socket_fin_wait_1();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 1)
    };
    assert_eq!(send(&mut s, at(100), fin, b""), Input::Done(Event::TimeWait));
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(s.timewait_at, Some(at(60_100)));
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(1, 1, WIN), b"")]);
}

#[test]
fn fin_wait_1_still_receives_data() {
    // RFC 9293 §3.10.7.4 (seventh): text is processed in FIN-WAIT-1.
    let mut s = socket_fin_wait_1();
    send(&mut s, at(100), from_peer(0, 0), b"late");
    assert_eq!(read_all(&mut s), b"late");
}

// ---- FIN-WAIT-2 ----

#[test]
fn fin_wait_2_peer_fin_enters_time_wait() {
    // RFC 9293 §3.10.7.4 (eighth, FIN-WAIT-2): FIN -> TIME-WAIT, ACK it,
    // start the 2 MSL timer.
    let mut s = socket_fin_wait_2();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 1)
    };
    assert_eq!(send(&mut s, at(100), fin, b""), Input::Done(Event::TimeWait));
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(s.timewait_at, Some(at(60_100)));
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(1, 1, WIN), b"")]);
    assert_eq!(s.recv(&mut [0; 8]), Ok(0));
}

#[test]
fn fin_wait_2_half_close_still_receives_data() {
    // RFC 9293 §3.6: after our FIN the peer may keep sending (half-close).
    let mut s = socket_fin_wait_2();
    send(&mut s, at(100), from_peer(0, 1), b"more data");
    assert!(s.readiness().readable);
    assert_eq!(read_all(&mut s), b"more data");
    s.on_timers(at(140));
    assert_eq!(recv(&mut s, at(140)), [seg(to_peer(1, 9, WIN), b"")]);
}

#[test]
fn fin_wait_2_orphan_times_out() {
    // Linux tcp_fin_timeout: an orphaned connection leaves FIN-WAIT-2
    // after `fin_wait2`.
    let mut s = socket_established();
    assert!(!s.close(at(100)));
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    send(&mut s, at(150), from_peer(0, 1), b"");
    assert_eq!(s.state, State::FinWait2);
    assert_eq!(s.finwait2_at, Some(at(60_150)));
    assert_eq!(s.on_timers(at(60_149)), Event::None);
    assert_eq!(s.on_timers(at(60_150)), Event::Closed);
    assert_eq!(s.state, State::Closed);
}

#[test]
fn fin_wait_2_close_after_shutdown_times_out() {
    // Found by the tcp_input fuzz target: shutdown(SHUT_WR), the FIN
    // acknowledged (FIN-WAIT-2), then close(): the orphan had no timer at
    // all and waited for the peer's FIN forever. Linux's tcp_close starts
    // the FIN-WAIT-2 timer (tcp_fin_timeout) right there.
    let mut s = socket_fin_wait_2();
    assert_eq!(s.finwait2_at, None, "not an orphan yet: the program may wait");
    assert!(!s.close(at(100)));
    assert_eq!(s.finwait2_at, Some(at(60_100)));
    assert_eq!(s.check_invariants(), Ok(()));
    assert_eq!(s.on_timers(at(60_100)), Event::Closed);
    assert_eq!(s.state, State::Closed);
}

// ---- CLOSING ----

#[test]
fn closing_ack_of_fin_enters_time_wait() {
    // RFC 9293 §3.10.7.4 (fifth, CLOSING): our FIN acknowledged ->
    // TIME-WAIT.
    let mut s = socket_closing();
    assert_eq!(
        send(&mut s, at(100), from_peer(1, 1), b""),
        Input::Done(Event::TimeWait)
    );
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(s.timewait_at, Some(at(60_100)));
    recv_nothing(&mut s, at(100));
}

// ---- TIME-WAIT ----

#[test]
fn time_wait_retransmitted_fin_is_acked_and_restarts_the_timer() {
    // RFC 9293 §3.10.7.4 (eighth, TIME-WAIT): a retransmitted FIN is
    // acknowledged and the 2 MSL timeout restarted.
    let mut s = socket_time_wait();
    assert_eq!(s.timewait_at, Some(at(60_040)));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 1)
    };
    assert_eq!(send(&mut s, at(5_000), fin, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(recv(&mut s, at(5_000)), [seg(to_peer(1, 1, WIN), b"")]);
    assert_eq!(s.timewait_at, Some(at(65_000)));
}

#[test]
fn time_wait_expires_after_time_wait() {
    let mut s = socket_time_wait();
    assert_eq!(s.poll_at(), Some(at(60_040)));
    assert_eq!(s.on_timers(at(60_039)), Event::None);
    assert_eq!(s.state, State::TimeWait);
    assert_eq!(s.on_timers(at(60_040)), Event::Closed);
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(60_040));
}

// ---- CLOSE-WAIT ----

#[test]
fn close_wait_recv_at_eof_is_zero() {
    let mut s = socket_close_wait();
    assert_eq!(s.recv(&mut [0; 8]), Ok(0));
    assert_eq!(s.recv(&mut [0; 8]), Ok(0));
}

#[test]
fn close_wait_is_readable_and_read_closed() {
    // Linux tcp_poll: RCV_SHUTDOWN -> EPOLLIN | EPOLLRDHUP.
    let s = socket_close_wait();
    let r = s.readiness();
    assert!(r.readable && r.read_closed && r.writable);
    assert!(!r.hangup);
}

#[test]
fn close_wait_both_sides_shut_is_hangup() {
    // Linux tcp_poll: sk_shutdown == SHUTDOWN_MASK -> EPOLLHUP.
    let mut s = socket_close_wait();
    s.shutdown_write().unwrap();
    assert!(s.readiness().hangup);
}

#[test]
fn close_wait_can_still_send() {
    // RFC 9293 §3.10.2: SEND in CLOSE-WAIT is allowed.
    let mut s = socket_close_wait();
    assert_eq!(s.send(b"reply"), Ok(5));
    let reply = TcpRepr {
        control: TcpControl::Psh,
        ..to_peer(0, 1, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(reply, b"reply")]);
}

#[test]
fn close_wait_close_sends_fin_and_enters_last_ack() {
    // RFC 9293 §3.10.4 (CLOSE-WAIT): send FIN, -> LAST-ACK.
    let mut s = socket_close_wait();
    assert!(!s.close(at(100)));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 1, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(fin, b"")]);
    assert_eq!(s.state, State::LastAck);
}

// ---- LAST-ACK ----

#[test]
fn last_ack_ack_of_fin_closes() {
    // RFC 9293 §3.10.7.4 (fifth, LAST-ACK): our FIN acknowledged -> CLOSED.
    let mut s = socket_last_ack();
    assert_eq!(
        send(&mut s, at(100), from_peer(1, 1), b""),
        Input::Done(Event::Closed)
    );
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(100));
}

#[test]
fn last_ack_fin_is_retransmitted() {
    let mut s = socket_last_ack();
    assert_eq!(s.rto_at, Some(at(230)));
    s.on_timers(at(230));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..to_peer(0, 1, WIN)
    };
    assert_eq!(recv(&mut s, at(230)), [seg(fin, b"")]);
}

// ---- ESTABLISHED: readiness and wakers ----

#[test]
fn established_is_writable_not_readable() {
    let s = socket_established();
    let r = s.readiness();
    assert!(r.writable);
    assert!(!r.readable && !r.read_closed && !r.hangup && !r.error);
}

#[test]
fn established_not_writable_when_the_send_buffer_is_full() {
    // Linux sk_stream_is_writeable: free space >= half the queued bytes.
    let mut s = socket_established();
    assert_eq!(s.send(&data(SND_BUF + 10)), Ok(SND_BUF));
    assert!(!s.readiness().writable);
    assert_eq!(s.send(b"x"), Err(Errno::EAGAIN));
}

#[test]
fn established_tick_increments_on_every_arrival() {
    // Edge-triggered waiters must hear of every arrival, even when the
    // socket was readable already (Linux wakes on each skb).
    let mut s = socket_established();
    let t0 = s.tick();
    send(&mut s, at(100), from_peer(0, 0), b"one");
    let t1 = s.tick();
    assert!(s.readiness().readable);
    assert!(t1 > t0);
    send(&mut s, at(101), from_peer(3, 0), b"two");
    let t2 = s.tick();
    assert!(t2 > t1, "already readable, still a new tick");
    assert_eq!(s.readiness().tick, t2);
}

#[test]
fn established_recv_waker_is_woken_on_data() {
    let mut s = socket_established();
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    s.register_recv_waker(&waker);
    send(&mut s, at(100), from_peer(0, 0), b"x");
    assert_eq!(counter.count(), 1);
    // Woken once per registration.
    send(&mut s, at(101), from_peer(1, 0), b"y");
    assert_eq!(counter.count(), 1);
    s.register_recv_waker(&waker);
    send(&mut s, at(102), from_peer(2, 0), b"z");
    assert_eq!(counter.count(), 2);
}

#[test]
fn established_send_waker_is_woken_when_space_is_freed() {
    let mut s = socket_established();
    s.send(&data(1000)).unwrap();
    recv(&mut s, at(100));
    let counter = Arc::new(CountingWaker::default());
    s.register_send_waker(&Waker::from(counter.clone()));
    send(&mut s, at(150), from_peer(0, 1000), b"");
    assert_eq!(counter.count(), 1);
}

#[test]
fn established_reset_sets_the_error_flag() {
    // Linux tcp_poll: sk_err -> EPOLLERR; a reset connection is also
    // readable, read-closed and hung up.
    let mut s = socket_established();
    let counter = Arc::new(CountingWaker::default());
    s.register_recv_waker(&Waker::from(counter.clone()));
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), rst, b"");
    let r = s.readiness();
    assert!(r.error && r.hangup && r.readable && r.read_closed);
    assert_eq!(counter.count(), 1);
    assert_eq!(s.take_error(), Some(Errno::ECONNRESET));
    assert!(!s.readiness().error);
}

#[test]
fn fin_acknowledged_wakes_a_lingering_closer() {
    // SO_LINGER: a thread in close() waits for the FIN to be acknowledged;
    // the ACK that takes FIN-WAIT-1 to FIN-WAIT-2 must wake it even though
    // the readiness bits do not change.
    let mut s = socket_established();
    assert!(!s.close(at(50)));
    assert_eq!(one_shape(&mut s, at(100)), (lseq(0), 0, TcpControl::Fin));
    let w = Arc::new(CountingWaker::default());
    s.register_send_waker(&Waker::from(w.clone()));
    send(&mut s, at(150), from_peer(0, 1), b"");
    assert_eq!(s.state, State::FinWait2);
    assert_eq!(w.count(), 1);
}

fn one_shape(s: &mut TcpSocket, now: Instant) -> (SeqNumber, usize, TcpControl) {
    let out = shape(&recv(s, now));
    assert_eq!(out.len(), 1, "{out:?}");
    out[0]
}
