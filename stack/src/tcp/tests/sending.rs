//! ESTABLISHED, sending: segmentation, Nagle and SWS avoidance, zero-window probes, retransmission timeouts, fast retransmit and recovery, keepalive.

use super::*;
use crate::tcp::output::ORPHAN_PROBES;

// ---- ESTABLISHED: sending ----

#[test]
fn established_nagle_holds_a_small_segment_while_data_is_in_flight() {
    // RFC 896 / RFC 1122 §4.2.3.4: with unacknowledged data outstanding, a
    // small segment waits until it is acknowledged.
    let mut s = socket_established();
    s.send(b"a").unwrap();
    let first = TcpRepr {
        control: TcpControl::Psh,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(first, b"a")]);
    s.send(b"b").unwrap();
    recv_nothing(&mut s, at(101));
    s.send(b"c").unwrap();
    recv_nothing(&mut s, at(102));
    send(&mut s, at(150), from_peer(0, 1), b"");
    let second = TcpRepr {
        control: TcpControl::Psh,
        ..to_peer(1, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(150)), [seg(second, b"bc")]);
}

#[test]
fn established_nodelay_sends_a_small_segment_at_once() {
    // TCP_NODELAY disables Nagle.
    let mut s = socket_established_with(
        TcpConfig {
            nodelay: true,
            ..cfg()
        },
        &peer_syn(),
    );
    s.send(b"a").unwrap();
    assert_eq!(shape(&recv(&mut s, at(100))), [(lseq(0), 1, TcpControl::Psh)]);
    s.send(b"b").unwrap();
    assert_eq!(shape(&recv(&mut s, at(101))), [(lseq(1), 1, TcpControl::Psh)]);
}

#[test]
fn established_large_write_is_cut_into_mss_segments_with_psh_on_the_last() {
    // RFC 9293 §3.7.1: segments no larger than the MSS; §3.9.1.2: PSH on
    // the segment that empties the send buffer.
    let mut s = socket_established_with(
        TcpConfig {
            nodelay: true,
            ..cfg()
        },
        &peer_syn(),
    );
    let payload = data(4000);
    assert_eq!(s.send(&payload), Ok(4000));
    let out = recv(&mut s, at(100));
    assert_eq!(
        shape(&out),
        [
            (lseq(0), MSS, TcpControl::None),
            (lseq(MSS), MSS, TcpControl::None),
            (lseq(2 * MSS), 4000 - 2 * MSS, TcpControl::Psh),
        ]
    );
    assert_eq!(
        out.iter().flat_map(|(_, p)| p.clone()).collect::<Vec<_>>(),
        payload
    );
    assert_eq!((s.snd_nxt, s.snd_max), (lseq(4000), lseq(4000)));
    assert_eq!(s.rto_at, Some(at(300)));
}

#[test]
fn established_nagle_holds_the_tail_of_a_large_write() {
    // RFC 896: the sub-MSS tail of a write waits for the ACK of the full
    // segments before it.
    let mut s = socket_established();
    s.send(&data(4000)).unwrap();
    assert_eq!(
        shape(&recv(&mut s, at(100))),
        [
            (lseq(0), MSS, TcpControl::None),
            (lseq(MSS), MSS, TcpControl::None)
        ]
    );
    send(&mut s, at(150), from_peer(0, 2 * MSS), b"");
    assert_eq!(
        shape(&recv(&mut s, at(150))),
        [(lseq(2 * MSS), 1080, TcpControl::Psh)]
    );
}

#[test]
fn established_send_is_limited_by_the_peer_window() {
    // RFC 9293 §3.8.6: never send beyond SND.UNA + SND.WND.
    let mut s = socket_established_with(cfg_reno(), &peer_syn());
    let update = TcpRepr {
        window_len: (2 * MSS) as u16,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), update, b"");
    assert_eq!(s.snd_wnd, 2 * MSS);
    s.send(&data(10_000)).unwrap();
    assert_eq!(
        shape(&recv(&mut s, at(100))),
        [
            (lseq(0), MSS, TcpControl::None),
            (lseq(MSS), MSS, TcpControl::None)
        ]
    );
    recv_nothing(&mut s, at(101));
    // The window slides with the ACK.
    let ack = TcpRepr {
        window_len: (2 * MSS) as u16,
        ..from_peer(0, MSS)
    };
    send(&mut s, at(150), ack, b"");
    assert_eq!(
        shape(&recv(&mut s, at(150))),
        [(lseq(2 * MSS), MSS, TcpControl::None)]
    );
    assert_eq!(s.snd_nxt, lseq(3 * MSS), "SND.UNA + SND.WND");
    recv_nothing(&mut s, at(151));
}

#[test]
fn established_send_is_limited_by_cwnd() {
    // RFC 5681 §3.1: at most cwnd in flight; RFC 6928: IW = 10 segments;
    // slow start grows cwnd by the bytes acknowledged (at most 2 MSS per
    // ACK, RFC 3465).
    let mut s = socket_established();
    assert_eq!(s.cwnd(), 10 * MSS);
    s.send(&data(30_000)).unwrap();
    let out = recv(&mut s, at(100));
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|(_, p)| p.len() == MSS));
    assert_eq!(s.snd_nxt, lseq(10 * MSS));
    send(&mut s, at(150), from_peer(0, 2 * MSS), b"");
    assert_eq!(s.cwnd(), 12 * MSS);
    let out = recv(&mut s, at(150));
    assert_eq!(out.len(), 4, "12 MSS of window, 8 in flight");
    assert_eq!(out[0].0.seq_number, lseq(10 * MSS));
    assert_eq!(s.snd_nxt, lseq(14 * MSS));
}

#[test]
fn established_zero_window_arms_persist_and_probes() {
    // RFC 9293 §3.8.6.1 / RFC 1122 §4.2.2.17: with a zero window and data
    // to send, probe periodically with exponential back-off; the probe is
    // Linux's <SEQ=SND.UNA-1> with no data.
    let mut s = socket_established();
    let closed = TcpRepr {
        window_len: 0,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), closed, b"");
    assert_eq!(s.snd_wnd, 0);
    s.send(b"hello").unwrap();
    recv_nothing(&mut s, at(100));
    assert_eq!(s.persist_at, Some(at(300)));
    assert_eq!(s.rto_at, None);
    s.on_timers(at(299));
    recv_nothing(&mut s, at(299));
    s.on_timers(at(300));
    let probe = TcpRepr {
        seq_number: lseq(0) - 1,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(300)), [seg(probe, b"")]);
    assert_eq!(s.stats.window_probes, 1);
    assert_eq!(s.persist_at, Some(at(700)), "backed off");
    // The peer answers: still closed.
    send(&mut s, at(310), closed, b"");
    recv_nothing(&mut s, at(310));
    s.on_timers(at(700));
    assert_eq!(recv(&mut s, at(700)), [seg(probe, b"")]);
    assert_eq!(s.persist_at, Some(at(1500)));
    assert_eq!(s.stats.window_probes, 2);
}

#[test]
fn established_zero_window_probes_unanswered_time_out() {
    // Found by the tcp_input fuzz target: a peer that closed its window and
    // vanished was probed for ever, so the connection (an orphan's too)
    // never ended. As Linux's tcp_probe_timer: after `max_retries` probes
    // the peer did not acknowledge, the connection fails with ETIMEDOUT;
    // probes it answers (its window still closed) go on without limit.
    let mut s = socket_established_with(
        TcpConfig {
            max_retries: 2,
            ..cfg()
        },
        &peer_syn(),
    );
    let closed = TcpRepr {
        window_len: 0,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), closed, b"");
    s.send(b"hello").unwrap();
    recv_nothing(&mut s, at(100));
    // Answered probes: any number.
    for _ in 0..5 {
        let t = s.persist_at.expect("persist");
        assert_eq!(s.on_timers(t), Event::None);
        assert_eq!(recv(&mut s, t).len(), 1, "a probe");
        send(&mut s, t, closed, b"");
        assert_eq!(s.probes_out, 0);
    }
    // Unanswered: two probes, then the end.
    for n in 1..=2 {
        let t = s.persist_at.expect("persist");
        assert_eq!(s.on_timers(t), Event::None);
        assert_eq!(recv(&mut s, t).len(), 1, "a probe");
        assert_eq!(s.probes_out, n);
    }
    let t = s.persist_at.expect("persist");
    assert_eq!(s.on_timers(t), Event::Closed);
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.poll_at(), None);
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::ETIMEDOUT));
}

#[test]
fn an_orphan_behind_a_window_closed_for_ever_is_given_up() {
    // A peer that never reads: it answers every probe, its window still
    // closed. While the program holds the socket, probing goes on (the
    // program decides; nginx's send_timeout closes it); once the program
    // closed it, ORPHAN_PROBES probes later its queued data is freed.
    let mut s = socket_established();
    let closed = TcpRepr {
        window_len: 0,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), closed, b"");
    s.send(&[7; 4000]).unwrap();
    recv_nothing(&mut s, at(100));
    let probe = |s: &mut TcpSocket| {
        let t = s.persist_at.expect("persist");
        let ev = s.on_timers(t);
        if ev == Event::None {
            assert_eq!(recv(s, t).len(), 1, "a probe");
            send(s, t, closed, b"");
        }
        ev
    };
    for _ in 0..20 {
        assert_eq!(probe(&mut s), Event::None);
    }
    assert_eq!(s.state, State::Established, "a program's socket probes on");
    // The back-off restarts when the window opens and closes again.
    let open = from_peer(0, 0);
    send(&mut s, at(9_000_000), open, b"");
    assert_eq!(s.persist_backoff, 0);
    let t = at(9_000_001);
    while !recv(&mut s, t).is_empty() {}
    let all_acked = TcpRepr {
        window_len: 0,
        ..from_peer(0, s.snd_max.distance(lseq(0)) as usize)
    };
    send(&mut s, t, all_acked, b"");
    s.send(&[7; 4000]).unwrap();
    recv_nothing(&mut s, t);
    assert!(!s.close(t), "queued data: the stack finishes it");
    let closed_now = TcpRepr {
        window_len: 0,
        ..from_peer(0, s.snd_una.distance(lseq(0)) as usize)
    };
    let mut probes = 0;
    loop {
        let t = s.persist_at.expect("persist");
        let ev = s.on_timers(t);
        if ev == Event::Closed {
            break;
        }
        assert_eq!(recv(&mut s, t).len(), 1, "a probe");
        send(&mut s, t, closed_now, b"");
        probes += 1;
        assert!(probes <= ORPHAN_PROBES, "still probing after {probes}");
    }
    assert_eq!(probes, ORPHAN_PROBES);
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.stats.window_probes, 20 + u64::from(ORPHAN_PROBES));
}

#[test]
fn established_data_queued_behind_a_closed_window_wants_the_persist_timer() {
    // Everything acknowledged, the window closed, then the program sends:
    // nothing can go out, but the socket must still be dispatched once so
    // the persist timer starts (the interface dispatches only sockets that
    // want to send); else the data waits for a window update that, if
    // lost, never comes.
    let mut s = socket_established();
    let closed = TcpRepr {
        window_len: 0,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), closed, b"");
    assert!(!s.wants_to_send());
    s.send(b"hello").unwrap();
    assert!(s.wants_to_send(), "dispatch it, to start the persist timer");
    assert_eq!(
        s.check_invariants().map_err(|_| ()),
        Err(()),
        "stuck, no persist timer yet"
    );
    recv_nothing(&mut s, at(100));
    assert_eq!(s.persist_at, Some(at(300)));
    assert!(!s.wants_to_send());
    assert_eq!(s.check_invariants(), Ok(()));
}

#[test]
fn established_window_reopening_cancels_persist_and_sends() {
    let mut s = socket_established();
    let closed = TcpRepr {
        window_len: 0,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), closed, b"");
    s.send(b"hello").unwrap();
    recv_nothing(&mut s, at(100));
    assert_eq!(s.persist_at, Some(at(300)));
    let open = TcpRepr {
        window_len: 1000,
        ..from_peer(0, 0)
    };
    send(&mut s, at(150), open, b"");
    assert_eq!(s.persist_at, None);
    let data_seg = TcpRepr {
        control: TcpControl::Psh,
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(150)), [seg(data_seg, b"hello")]);
    assert_eq!(s.persist_at, None);
    assert_eq!(s.rto_at, Some(at(350)));
}

#[test]
fn established_sws_override_timer_sends_held_data() {
    // RFC 9293 §3.8.6.2.1: a sender holding back a small segment (SWS
    // avoidance) must send it when the override timeout (0.1-1 s, "may be
    // combined with the timer used to probe zero windows") expires.
    // Linux arms its probe timer whenever data waits with nothing in
    // flight. Here the peer's window shrinks to 1000 bytes with 5000
    // queued: without a timer, nothing would ever be sent.
    let mut s = socket_established();
    let small = TcpRepr {
        window_len: 1000,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), small, b"");
    s.send(&data(5000)).unwrap();
    recv_nothing(&mut s, at(100));
    let due = s.poll_at().expect("a timer must be armed");
    assert!(due <= at(100) + Duration::from_secs(1), "due {due}");
    s.on_timers(due);
    assert_eq!(shape(&recv(&mut s, due)), [(lseq(0), 1000, TcpControl::None)]);
}

// ---- ESTABLISHED: retransmission (RFC 6298) ----

#[test]
fn established_rto_retransmits_from_snd_una_and_backs_off() {
    // RFC 6298 §5.4-5.6: on expiry retransmit the earliest unacknowledged
    // segment, double the RTO, restart the timer.
    let mut s = socket_established();
    assert_eq!(s.rto(), ms(200));
    s.send(&data(1000)).unwrap();
    let out = recv(&mut s, at(100));
    assert_eq!(out.len(), 1);
    assert_eq!(s.rto_at, Some(at(300)));
    assert_eq!(s.on_timers(at(299)), Event::None);
    recv_nothing(&mut s, at(299));
    assert_eq!(s.on_timers(at(300)), Event::None);
    assert_eq!(recv(&mut s, at(300)), out);
    assert_eq!(s.rto(), ms(400));
    assert_eq!(s.rto_at, Some(at(700)));
    assert_eq!((s.stats.timeouts, s.stats.retransmits), (1, 1));
    // RFC 5681 §3.1: after a timeout cwnd is the loss window, 1 MSS.
    assert_eq!(s.cwnd(), MSS);
    assert_eq!(s.on_timers(at(700)), Event::None);
    assert_eq!(recv(&mut s, at(700)), out);
    assert_eq!(s.rto(), ms(800));
    assert_eq!(s.rto_at, Some(at(1500)));
    assert_eq!((s.stats.timeouts, s.stats.retransmits), (2, 2));
    // The ACK stops the timer.
    send(&mut s, at(750), from_peer(0, 1000), b"");
    assert_eq!(s.rto_at, None);
    assert_eq!(s.retries, 0);
}

#[test]
fn established_rto_goes_back_n_from_snd_una() {
    // RFC 5681 §3.1 / RFC 6298 §5.4: after a timeout, resend from SND.UNA,
    // one segment at a time (cwnd = 1 MSS).
    let mut s = socket_established();
    s.send(&data(3 * MSS)).unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 3);
    send(&mut s, at(150), from_peer(0, MSS), b"");
    assert_eq!(s.rto_at, Some(at(350)));
    s.on_timers(at(350));
    assert_eq!(
        shape(&recv(&mut s, at(350))),
        [(lseq(MSS), MSS, TcpControl::None)]
    );
    assert_eq!(s.snd_max, lseq(3 * MSS));
}

#[test]
fn established_max_retries_times_out() {
    // RFC 9293 §3.8.3 (R2) / Linux tcp_retries2: after `max_retries`
    // retransmissions the connection fails with ETIMEDOUT.
    let mut s = socket_established_with(
        TcpConfig {
            max_retries: 2,
            ..cfg()
        },
        &peer_syn(),
    );
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    assert_eq!(s.on_timers(at(300)), Event::None);
    assert_eq!(recv(&mut s, at(300)).len(), 1);
    assert_eq!(s.on_timers(at(700)), Event::None);
    assert_eq!(recv(&mut s, at(700)).len(), 1);
    assert_eq!(s.rto_at, Some(at(1500)));
    assert_eq!(s.on_timers(at(1500)), Event::Closed);
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(1500));
    assert_eq!(s.poll_at(), None);
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::ETIMEDOUT));
    assert_eq!(s.send(b"x"), Err(Errno::EPIPE));
}

#[test]
fn established_user_timeout_times_out() {
    // RFC 5482 / TCP_USER_TIMEOUT: data unacknowledged for longer than
    // the user timeout fails the connection at the next expiry.
    let mut s = socket_established_with(
        TcpConfig {
            user_timeout: Some(ms(500)),
            ..cfg()
        },
        &peer_syn(),
    );
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    assert_eq!(s.on_timers(at(300)), Event::None);
    assert_eq!(recv(&mut s, at(300)).len(), 1);
    assert_eq!(s.on_timers(at(700)), Event::Closed);
    assert_eq!(s.take_error(), Some(Errno::ETIMEDOUT));
}

#[test]
fn established_karn_no_rtt_sample_from_a_retransmitted_segment() {
    // RFC 6298 §3 (Karn): no sample from a retransmitted segment; the
    // backed-off RTO is kept until a valid sample (§5.7).
    let mut s = socket_established();
    assert_eq!((s.srtt(), s.rtt.rttvar()), (Some(ms(10)), ms(5)));
    s.send(&data(1000)).unwrap();
    recv(&mut s, at(100));
    s.on_timers(at(300));
    assert_eq!(recv(&mut s, at(300)).len(), 1);
    send(&mut s, at(350), from_peer(0, 1000), b"");
    assert_eq!(s.snd_una, lseq(1000));
    assert_eq!((s.srtt(), s.rtt.rttvar()), (Some(ms(10)), ms(5)), "no sample");
    assert_eq!(s.rto(), ms(400), "still backed off");
    // New data, not retransmitted: sampled (R = 50 ms).
    s.send(&data(100)).unwrap();
    assert_eq!(recv(&mut s, at(400)).len(), 1);
    send(&mut s, at(450), from_peer(0, 1100), b"");
    assert_eq!(s.srtt(), Some(ms(15)));
    assert_eq!(s.rtt.rttvar(), Duration::from_micros(13_750));
    assert_eq!(s.rto(), ms(200));
}

// ---- ESTABLISHED: fast retransmit and recovery (RFC 5681, 6582, 6675) ----

#[test]
fn established_three_dup_acks_trigger_fast_retransmit() {
    // RFC 5681 §3.2: on the third duplicate ACK retransmit the segment at
    // SND.UNA, ssthresh = max(FlightSize / 2, 2 MSS), cwnd = ssthresh +
    // 3 MSS; RFC 6582: recover = highest sequence sent.
    let (mut s, payload) = socket_in_newreno_recovery();
    assert_eq!(s.stats.dup_acks, 3);
    assert_eq!(s.recovery, Some(lseq(5 * MSS)));
    assert_eq!(s.cc.ssthresh(), 5 * MSS / 2);
    assert_eq!(s.cwnd(), 5 * MSS / 2 + 3 * MSS);
    assert_eq!(recv(&mut s, at(112)), [seg(to_peer(0, 0, WIN), &payload[..MSS])]);
    assert_eq!((s.stats.fast_retransmits, s.stats.retransmits), (1, 1));
    assert_eq!(s.snd_nxt, lseq(5 * MSS), "SND.NXT is not rewound");
    // RFC 5681 §3.2 step 4: each further duplicate inflates cwnd by 1 MSS.
    send(&mut s, at(113), from_peer(0, 0), b"");
    assert_eq!(s.cwnd(), 5 * MSS / 2 + 4 * MSS);
    recv_nothing(&mut s, at(113));
}

#[test]
fn established_newreno_partial_ack_retransmits_the_next_segment() {
    // RFC 6582 §3.2 step 5: a partial ACK retransmits the first
    // unacknowledged segment, deflates cwnd by the amount acknowledged and
    // adds back 1 MSS; recovery goes on.
    let (mut s, payload) = socket_in_newreno_recovery();
    assert_eq!(recv(&mut s, at(112)).len(), 1);
    let cwnd = s.cwnd();
    send(&mut s, at(120), from_peer(0, MSS), b"");
    assert_eq!(s.recovery, Some(lseq(5 * MSS)));
    assert_eq!(s.cwnd(), cwnd);
    assert_eq!(
        recv(&mut s, at(120)),
        [seg(to_peer(MSS, 0, WIN), &payload[MSS..2 * MSS])]
    );
    assert_eq!(s.stats.fast_retransmits, 2);
}

#[test]
fn established_full_ack_ends_recovery() {
    // RFC 6582 §3.2 step 6: an ACK covering `recover` ends fast recovery;
    // cwnd = ssthresh.
    let (mut s, _) = socket_in_newreno_recovery();
    assert_eq!(recv(&mut s, at(112)).len(), 1);
    send(&mut s, at(130), from_peer(0, 5 * MSS), b"");
    assert_eq!(s.recovery, None);
    assert_eq!(s.cwnd(), 5 * MSS / 2);
    assert_eq!(s.rto_at, None);
    recv_nothing(&mut s, at(130));
}

#[test]
fn established_sack_ranges_below_a_cumulative_ack_without_blocks_go() {
    // Found by the property test (through the scoreboard invariant): an
    // ACK past a SACKed range that carries no SACK blocks of its own left
    // the range in the scoreboard, below snd_una. Sequence comparisons are
    // only meaningful within half the number space, so 2 GiB later such a
    // range would have looked SACKed again.
    let mut s = socket_established_sack_with(cfg_reno());
    s.send(&data(4 * MSS)).unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 4);
    let seg_at = |i: usize| lseq(i * MSS);
    let dup = TcpRepr {
        sack_ranges: [sack(seg_at(1), seg_at(2)), None, None],
        ..from_peer(0, 0)
    };
    send(&mut s, at(110), dup, b"");
    assert!(!s.scoreboard.is_empty());
    send(&mut s, at(120), from_peer(0, 3 * MSS), b"");
    assert!(s.scoreboard.is_empty(), "{:?}", s.scoreboard);
    assert_eq!(s.check_invariants(), Ok(()));
}

#[test]
fn established_sack_recovery_retransmits_the_holes() {
    // RFC 6675: segments 0 and 2 of 6 are lost. The third duplicate ACK
    // starts recovery (cwnd = ssthresh = FlightSize / 2, no inflation) and
    // retransmits segment 0; once SACKed data above segment 2 exceeds
    // (DupThresh - 1) * MSS, IsLost(2) holds and NextSeg sends it, within
    // cwnd - pipe. SACKed segments are never resent.
    let mut s = socket_established_sack_with(cfg_reno());
    let payload = data(6 * MSS);
    s.send(&payload).unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 6);
    let seg_at = |i: usize| lseq(i * MSS);
    let dup = |blocks: [Option<(u32, u32)>; 3]| TcpRepr {
        sack_ranges: blocks,
        ..from_peer(0, 0)
    };
    send(
        &mut s,
        at(110),
        dup([sack(seg_at(1), seg_at(2)), None, None]),
        b"",
    );
    send(
        &mut s,
        at(111),
        dup([sack(seg_at(3), seg_at(4)), sack(seg_at(1), seg_at(2)), None]),
        b"",
    );
    recv_nothing(&mut s, at(111));
    send(
        &mut s,
        at(112),
        dup([sack(seg_at(3), seg_at(5)), sack(seg_at(1), seg_at(2)), None]),
        b"",
    );
    assert_eq!(s.recovery, Some(seg_at(6)));
    assert_eq!(s.cwnd(), 3 * MSS);
    assert_eq!(recv(&mut s, at(112)), [seg(to_peer(0, 0, WIN), &payload[..MSS])]);
    send(
        &mut s,
        at(113),
        dup([sack(seg_at(3), seg_at(6)), sack(seg_at(1), seg_at(2)), None]),
        b"",
    );
    assert_eq!(
        recv(&mut s, at(113)),
        [seg(to_peer(2 * MSS, 0, WIN), &payload[2 * MSS..3 * MSS])]
    );
    assert_eq!((s.stats.fast_retransmits, s.stats.retransmits), (1, 2));
    // The ACK of everything ends recovery.
    send(&mut s, at(120), from_peer(0, 6 * MSS), b"");
    assert_eq!(s.recovery, None);
    assert_eq!(s.send_queue(), 0);
    recv_nothing(&mut s, at(120));
}

// ---- ESTABLISHED: keepalive (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6) ----

#[test]
fn established_keepalive_probes_after_idle() {
    let mut s = socket_established_with(cfg_keepalive(), &peer_syn());
    assert_eq!(s.keepalive_at, Some(at(10_010)));
    assert_eq!(s.on_timers(at(10_009)), Event::None);
    recv_nothing(&mut s, at(10_009));
    assert_eq!(s.on_timers(at(10_010)), Event::None);
    assert_eq!(recv(&mut s, at(10_010)), [keepalive_probe()]);
    assert_eq!(s.keepalive_at, Some(at(11_010)));
}

#[test]
fn established_keepalive_answer_rearms_the_idle_timer() {
    let mut s = socket_established_with(cfg_keepalive(), &peer_syn());
    s.on_timers(at(10_010));
    assert_eq!(recv(&mut s, at(10_010)), [keepalive_probe()]);
    send(&mut s, at(10_020), from_peer(0, 0), b"");
    assert_eq!(s.keepalive_at, Some(at(20_020)));
    assert_eq!(s.keepalive_sent, 0);
    assert_eq!(s.state, State::Established);
}

#[test]
fn established_keepalive_unanswered_times_out() {
    // Linux (tcp_keepalive_timer): after `count` unanswered probes the
    // connection is reset and fails with ETIMEDOUT.
    let mut s = socket_established_with(cfg_keepalive(), &peer_syn());
    for t in [10_010, 11_010, 12_010] {
        assert_eq!(s.on_timers(at(t)), Event::None);
        assert_eq!(recv(&mut s, at(t)), [keepalive_probe()]);
    }
    assert_eq!(s.on_timers(at(13_010)), Event::None, "the RST goes first");
    assert!(s.readiness().error);
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..to_peer(0, 0, 0)
    };
    assert_eq!(dispatch(&mut s, at(13_010)), (Event::Closed, vec![seg(rst, b"")]));
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(13_010));
    assert_eq!(s.recv(&mut [0; 8]), Err(Errno::ETIMEDOUT));
}

#[test]
fn established_no_keepalive_unless_configured() {
    let s = socket_established();
    assert_eq!(s.keepalive_at, None);
    assert_eq!(s.poll_at(), None);
}

#[test]
fn established_cwnd_grows_only_when_it_limits_the_flight() {
    // Linux's tcp_is_cwnd_limited, after RFC 7661: an application that
    // sends two segments per round trip never tests a ten-segment window,
    // so the window must not grow on its ACKs (else it could later burst).
    let mut s = socket_established_with(
        TcpConfig {
            nodelay: true,
            ..cfg()
        },
        &peer_syn(),
    );
    let cwnd0 = s.cwnd();
    let mut acked = 0;
    for round in 0..50u64 {
        assert_eq!(s.send(&data(2 * MSS)), Ok(2 * MSS));
        let out = recv(&mut s, at(100 + 2 * round));
        acked += out.iter().map(|(_, p)| p.len()).sum::<usize>();
        send(&mut s, at(101 + 2 * round), from_peer(0, acked), b"");
    }
    assert_eq!(acked, 50 * 2 * MSS, "every round's data went out");
    assert_eq!(s.cwnd(), cwnd0, "an application-limited flow must not grow cwnd");

    // A flow that fills the window does grow it (slow start).
    let mut s = socket_established();
    let cwnd0 = s.cwnd();
    assert_eq!(s.send(&data(cwnd0)), Ok(cwnd0));
    let out = recv(&mut s, at(100));
    let sent: usize = out.iter().map(|(_, p)| p.len()).sum();
    assert_eq!(sent, cwnd0);
    send(&mut s, at(110), from_peer(0, sent), b"");
    assert!(s.cwnd() > cwnd0, "a cwnd-limited flight grows the window");
}

#[test]
fn info_reports_the_connection_as_it_stands() {
    // TCP_INFO's numbers (Linux's tcp_get_info), from the socket itself.
    let mut s = socket_established();
    let i = s.info();
    assert_eq!(
        (i.state, i.unacked, i.notsent, i.retries),
        (State::Established, 0, 0, 0)
    );
    assert_eq!(
        (i.snd_mss, i.snd_wnd, i.rcv_wnd, i.rcv_space),
        (MSS, usize::from(PEER_WIN), WIN, WIN)
    );
    assert_eq!(i.srtt, Some(Duration::from_millis(10)), "the handshake's sample");
    assert!(!i.timestamps && !i.sack && i.window_scale.is_none());
    // Three segments' worth queued; Nagle holds the small tail while the
    // first two are in flight.
    s.send(&data(2 * MSS + 100)).unwrap();
    let out = recv(&mut s, at(100));
    assert_eq!(out.len(), 2);
    let i = s.info();
    assert_eq!((i.unacked, i.notsent, i.bytes_sent), (2, 100, 2 * MSS as u64));
    assert_eq!((i.total_retrans, i.cwnd), (0, s.cwnd()));
    // A timeout: one retry, the timer backed off, one retransmission.
    let rto = i.rto;
    s.on_timers(at(100) + rto);
    assert!(!recv(&mut s, at(100) + rto).is_empty());
    let i = s.info();
    assert_eq!((i.retries, i.backoff, i.total_retrans), (1, 1, 1));
    assert_eq!(i.rto, rto * 2);
    // Everything acknowledged.
    send(&mut s, at(400), from_peer(0, 2 * MSS), b"");
    let i = s.info();
    assert_eq!((i.retries, i.bytes_acked), (0, 2 * MSS as u64));
}

#[test]
fn rtt_below_a_millisecond_is_measured_with_timestamps_on() {
    // RFC 7323 timestamps tick in milliseconds: a 300 us round trip echoes
    // the same tick and reads 0 ms. The timed segment's own send time
    // measures it (as Linux's tcp_ack_update_rtt prefers), so SRTT moves
    // by an eighth of 300 us (RFC 6298), not towards zero.
    let mut s = socket_established_ts();
    assert_eq!(s.srtt(), Some(Duration::from_millis(10)));
    s.send(b"ping").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    let t = at(100) + Duration::from_micros(300);
    let ack = TcpRepr {
        timestamp: peer_ts(PEER_TS + 100, s.ts_now(at(100))),
        ..from_peer(0, 4)
    };
    send(&mut s, t, ack, b"");
    let want = Duration::from_millis(10) * 7 / 8 + Duration::from_micros(300) / 8;
    assert_eq!(s.srtt(), Some(want));
}
