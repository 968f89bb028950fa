//! ESTABLISHED, receiving: data and delayed ACKs, sequence acceptability, RFC 5961's defences, timestamps and PAWS, window scaling and the advertised window.

use super::*;

// ---- ESTABLISHED: receiving data ----

#[test]
fn established_in_order_data_is_readable() {
    // RFC 9293 §3.10.7.4 (seventh): in-order text goes to the user.
    let mut s = socket_established();
    assert_eq!(
        send(&mut s, at(100), from_peer(0, 0), b"abcdef"),
        Input::Done(Event::None)
    );
    assert_eq!(s.rcv_nxt, rseq(6));
    assert_eq!(s.recv_queue(), 6);
    assert!(s.readiness().readable);
    let mut buf = [0; 64];
    assert_eq!(s.recv(&mut buf), Ok(6));
    assert_eq!(&buf[..6], b"abcdef");
    assert_eq!(s.recv(&mut buf), Err(Errno::EAGAIN));
    assert_eq!(s.stats.bytes_received, 6);
}

#[test]
fn established_one_segment_is_acked_after_the_delay() {
    // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: the ACK may be delayed (here the
    // Linux minimum, 40 ms) but not longer.
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), &data(MSS));
    recv_nothing(&mut s, at(100));
    assert_eq!(s.ack_due, Some(at(140)));
    assert_eq!(s.poll_at(), Some(at(140)));
    s.on_timers(at(139));
    recv_nothing(&mut s, at(139));
    s.on_timers(at(140));
    assert_eq!(recv(&mut s, at(140)), [seg(to_peer(0, MSS, WIN - MSS), b"")]);
    assert_eq!(s.ack_due, None);
    recv_nothing(&mut s, at(140));
}

#[test]
fn established_every_second_full_segment_is_acked_at_once() {
    // RFC 5681 §4.2: "an ACK SHOULD be generated for at least every second
    // full-sized segment".
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), &data(MSS));
    recv_nothing(&mut s, at(100));
    send(&mut s, at(101), from_peer(MSS, 0), &data(MSS));
    assert_eq!(
        recv(&mut s, at(101)),
        [seg(to_peer(0, 2 * MSS, WIN - 2 * MSS), b"")]
    );
    assert_eq!(s.ack_due, None);
    // The count starts again: the third segment waits.
    send(&mut s, at(102), from_peer(2 * MSS, 0), &data(MSS));
    recv_nothing(&mut s, at(102));
    assert_eq!(s.ack_due, Some(at(142)));
}

#[test]
fn established_out_of_order_data_gets_dup_ack_with_sack_most_recent_first() {
    // RFC 5681 §4.2: an out-of-order segment is ACKed at once (a duplicate
    // ACK). RFC 2018 §4: the first SACK block holds the segment that
    // triggered the ACK; the others repeat earlier blocks.
    let mut s = socket_established_sack_with(cfg());
    send(&mut s, at(100), from_peer(6, 0), b"ghijkl");
    assert_eq!(s.rcv_nxt, rseq(0));
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::EAGAIN));
    let ack = TcpRepr {
        sack_ranges: [sack(rseq(6), rseq(12)), None, None],
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(ack, b"")]);
    send(&mut s, at(101), from_peer(18, 0), b"stuvwx");
    let ack = TcpRepr {
        sack_ranges: [sack(rseq(18), rseq(24)), sack(rseq(6), rseq(12)), None],
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(101)), [seg(ack, b"")]);
    // Data extending the older block makes it the most recent again.
    send(&mut s, at(102), from_peer(12, 0), b"mno");
    let ack = TcpRepr {
        sack_ranges: [sack(rseq(6), rseq(15)), sack(rseq(18), rseq(24)), None],
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(102)), [seg(ack, b"")]);
}

#[test]
fn established_out_of_order_data_without_sack_gets_plain_dup_ack() {
    // RFC 5681 §4.2; no SACK blocks unless SACK was negotiated (RFC 2018).
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(6, 0), b"ghijkl");
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
}

#[test]
fn established_filling_the_hole_acks_everything() {
    // RFC 5681 §4.2: a segment that fills a gap is ACKed at once; the ACK
    // covers all contiguous data, and SACK reports what is still missing.
    let mut s = socket_established_sack_with(cfg());
    send(&mut s, at(100), from_peer(6, 0), b"ghijkl");
    send(&mut s, at(100), from_peer(18, 0), b"stuvwx");
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    send(&mut s, at(101), from_peer(0, 0), b"abcdef");
    assert_eq!(s.rcv_nxt, rseq(12));
    let ack = TcpRepr {
        sack_ranges: [sack(rseq(18), rseq(24)), None, None],
        ..to_peer(0, 12, WIN - 12)
    };
    assert_eq!(recv(&mut s, at(101)), [seg(ack, b"")]);
    send(&mut s, at(102), from_peer(12, 0), b"mnopqr");
    assert_eq!(s.rcv_nxt, rseq(24));
    assert_eq!(recv(&mut s, at(102)), [seg(to_peer(0, 24, WIN - 24), b"")]);
    assert_eq!(read_all(&mut s), b"abcdefghijklmnopqrstuvwx");
}

#[test]
fn established_duplicate_data_is_acked_and_not_delivered_twice() {
    // RFC 9293 §3.10.7.4 (first): an old duplicate is not acceptable; send
    // an ACK (so a sender whose ACK was lost learns rcv_nxt).
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(0, 0), b"abcdef");
    recv_nothing(&mut s, at(100));
    send(&mut s, at(110), from_peer(0, 0), b"abcdef");
    assert_eq!(recv(&mut s, at(110)), [seg(to_peer(0, 6, WIN - 6), b"")]);
    assert_eq!(s.recv_queue(), 6);
    assert_eq!(s.stats.out_of_window, 1);
    // Overlapping the edge: only the new part is taken.
    send(&mut s, at(120), from_peer(3, 0), b"DEFghi");
    assert_eq!(s.rcv_nxt, rseq(9));
    assert_eq!(read_all(&mut s), b"abcdefghi");
}

#[test]
fn established_data_beyond_the_window_is_trimmed() {
    // RFC 9293 §3.10.7.4: a segment is trimmed to the window; what lies
    // beyond it is not acknowledged.
    let mut s = socket_established();
    let payload = data(WIN + 100);
    send(&mut s, at(100), from_peer(0, 0), &payload);
    assert_eq!(s.rcv_nxt, rseq(WIN));
    assert_eq!(s.recv_queue(), WIN);
    s.on_timers(at(140));
    assert_eq!(recv(&mut s, at(140)), [seg(to_peer(0, WIN, 0), b"")]);
    assert_eq!(read_all(&mut s), &payload[..WIN]);
}

#[test]
fn established_data_with_fin_is_delivered_then_eof() {
    // RFC 9293 §3.10.7.4 (eighth): FIN -> CLOSE-WAIT, ACK at once; the
    // program reads the data, then end of stream.
    let mut s = socket_established();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(100), fin, b"bye"), Input::Done(Event::None));
    assert_eq!(s.state, State::CloseWait);
    assert_eq!(s.rcv_nxt, rseq(4));
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 4, WIN - 3), b"")]);
    let mut buf = [0; 16];
    assert_eq!(s.recv(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"bye");
    assert_eq!(s.recv(&mut buf), Ok(0));
}

#[test]
fn established_out_of_order_fin_is_taken_when_the_hole_fills() {
    // RFC 9293 §3.10.7.4 (eighth): a FIN is processed only once everything
    // before it arrived.
    let mut s = socket_established();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(6, 0)
    };
    send(&mut s, at(100), fin, b"ghijkl");
    assert_eq!(s.state, State::Established);
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
    send(&mut s, at(101), from_peer(0, 0), b"abcdef");
    assert_eq!(s.state, State::CloseWait);
    assert_eq!(s.rcv_nxt, rseq(13));
    assert_eq!(recv(&mut s, at(101)), [seg(to_peer(0, 13, WIN - 12), b"")]);
    assert_eq!(read_all(&mut s), b"abcdefghijkl");
    assert_eq!(s.recv(&mut [0; 4]), Ok(0));
}

#[test]
fn established_data_beyond_an_out_of_order_fin_is_not_data() {
    // Found by the tcp_input fuzz target (FIN invariant): with the peer's
    // FIN held out of order, data reaching past it moved rcv_nxt beyond the
    // FIN, which then could never be taken: the stream never ended.
    let mut s = socket_established();
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(6, 0)
    };
    send(&mut s, at(100), fin, b"ghij"); // FIN at offset 10
                                         // The hole, then bytes past the FIN, in one segment.
    send(&mut s, at(101), from_peer(0, 0), b"abcdefghijXYZ");
    assert_eq!(s.state, State::CloseWait, "the FIN is taken at offset 10");
    assert_eq!(s.rcv_nxt, rseq(11));
    assert_eq!(read_all(&mut s), b"abcdefghij");
    assert_eq!(s.recv(&mut [0; 4]), Ok(0));
    assert_eq!(s.check_invariants(), Ok(()));

    // Data held out of order before the FIN came, past it: the data
    // stands and the FIN is forgotten (a later FIN ends the stream).
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(8, 0), b"ijkl");
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(4, 0)
    };
    send(&mut s, at(101), fin, b"efgh"); // FIN at offset 8, below "ijkl"
    send(&mut s, at(102), from_peer(0, 0), b"abcd");
    assert_eq!(s.rcv_nxt, rseq(12));
    assert_eq!(s.state, State::Established);
    assert_eq!(s.remote_fin, None);
    assert_eq!(s.check_invariants(), Ok(()));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(12, 0)
    };
    send(&mut s, at(103), fin, b"");
    assert_eq!(s.state, State::CloseWait);
    assert_eq!(read_all(&mut s), b"abcdefghijkl");
}

// ---- ESTABLISHED: sequence acceptability (RFC 9293 §3.10.7.4) ----

#[test]
fn established_segment_beyond_the_window_is_acked_and_dropped() {
    // RFC 9293 §3.10.7.4 (first): not acceptable -> send <SEQ=SND.NXT>
    // <ACK=RCV.NXT><CTL=ACK> and drop it (its ACK field included).
    let mut s = socket_established();
    s.send(b"hi").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    send(&mut s, at(110), from_peer(WIN, 2), b"x");
    assert_eq!(recv(&mut s, at(110)), [seg(to_peer(2, 0, WIN), b"")]);
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(
        s.snd_una,
        lseq(0),
        "the ACK field of a dropped segment is ignored"
    );
    assert_eq!(s.stats.out_of_window, 1);
    // The last byte of the window is still acceptable.
    send(&mut s, at(120), from_peer(WIN - 1, 0), b"y");
    assert_eq!(s.rx.ooo_ranges().collect::<Vec<_>>(), [(WIN - 1, WIN)]);
}

#[test]
fn established_empty_segment_outside_the_window_is_acked() {
    // RFC 9293 §3.10.7.4: SEG.LEN = 0, RCV.WND > 0 is acceptable only if
    // RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND.
    let mut s = socket_established();
    send(&mut s, at(100), from_peer(WIN, 0), b"");
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
    // A probe below the window (SEG.SEQ = RCV.NXT - 1) is answered too.
    let probe = TcpRepr {
        seq_number: rseq(0) - 1,
        ..from_peer(0, 0)
    };
    send(&mut s, at(600), probe, b"");
    assert_eq!(recv(&mut s, at(600)), [seg(to_peer(0, 0, WIN), b"")]);
    assert_eq!(s.stats.out_of_window, 2);
    // Another empty segment outside the window sooner than 500 ms after
    // the last such ACK gets none (RFC 5961 §7: forged empty segments
    // must not make us flood the peer).
    send(&mut s, at(650), from_peer(WIN, 0), b"");
    assert_eq!(recv(&mut s, at(650)), [seg(to_peer(0, 0, WIN), b"")]);
    send(&mut s, at(700), from_peer(WIN + 5, 0), b"");
    recv_nothing(&mut s, at(700));
    assert_eq!((s.stats.out_of_window, s.stats.challenge_acks_limited), (4, 1));
    // The probe, <SEQ=RCV.NXT-1>, is answered every time: a sender
    // learns of our window opening from it, and it takes the exact
    // sequence number.
    send(&mut s, at(710), probe, b"");
    assert_eq!(recv(&mut s, at(710)), [seg(to_peer(0, 0, WIN), b"")]);
}

#[test]
fn established_challenge_acks_are_rate_limited_and_the_connection_survives() {
    // A blind attacker who knows the 4-tuple floods forged RSTs in the
    // window, SYNs, and data with ACKs outside the acceptable range: each
    // is dropped and counted; one challenge ACK per 500 ms goes out; the
    // connection goes on, and data at RCV.NXT is still taken (and ACKed:
    // in-window data is never rate-limited).
    let mut s = socket_established();
    let mut sent = 0;
    for i in 0..300u64 {
        let t = at(100 + i); // 300 forgeries in 300 ms
        let forged = match i % 3 {
            0 => TcpRepr {
                control: TcpControl::Rst,
                ..from_peer(1 + i as usize, 0)
            },
            1 => TcpRepr {
                control: TcpControl::Syn,
                ack_number: None,
                ..from_peer(7 * i as usize, 0)
            },
            _ => TcpRepr {
                ack_number: Some(lseq(0) + 1_000_000),
                ..from_peer(0, 0)
            },
        };
        let payload: &[u8] = if i % 3 == 2 { b"evil" } else { b"" };
        assert_eq!(send(&mut s, t, forged, payload), Input::Done(Event::None));
        sent += recv(&mut s, t).len();
    }
    assert_eq!(s.state, State::Established);
    assert_eq!(s.error, None);
    assert_eq!(s.recv_queue(), 0, "no forged data taken");
    assert_eq!(sent, 1, "one challenge ACK in 300 ms");
    let st = s.stats;
    assert_eq!(
        (st.rst_challenged, st.syn_challenged, st.ack_invalid),
        (100, 100, 100)
    );
    assert_eq!((st.challenge_acks, st.challenge_acks_limited), (1, 299));
    // 500 ms on, the next forgery is challenged again.
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..from_peer(5, 0)
    };
    send(&mut s, at(600), rst, b"");
    assert_eq!(recv(&mut s, at(600)), [seg(to_peer(0, 0, WIN), b"")]);
    // The real peer's data is taken and acknowledged.
    send(&mut s, at(601), from_peer(0, 0), b"real");
    send(&mut s, at(602), from_peer(4, 0), b"data");
    assert_eq!(s.recv_queue(), 8);
    assert_eq!(recv(&mut s, at(602)), [seg(to_peer(0, 8, WIN - 8), b"")]);
}

#[test]
fn established_zero_window_accepts_a_pure_ack_at_rcv_nxt() {
    // RFC 9293 §3.10.7.4: with RCV.WND = 0 a zero-length segment at
    // RCV.NXT is acceptable ("special allowance ... to accept valid ACKs").
    let mut s = socket_established();
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    fill_receive_window(&mut s, at(110));
    assert_eq!(
        send(&mut s, at(160), from_peer(WIN, 5), b""),
        Input::Done(Event::None)
    );
    assert_eq!(s.snd_una, lseq(5));
    assert_eq!(s.send_queue(), 0);
    recv_nothing(&mut s, at(160));
}

#[test]
fn established_zero_window_drops_data_and_acks() {
    // RFC 9293 §3.10.7.4: with RCV.WND = 0 no data is acceptable; ACK it.
    let mut s = socket_established();
    fill_receive_window(&mut s, at(100));
    send(&mut s, at(160), from_peer(WIN, 0), b"more");
    assert_eq!(s.recv_queue(), WIN);
    assert_eq!(s.rcv_nxt, rseq(WIN));
    assert_eq!(recv(&mut s, at(160)), [seg(to_peer(0, WIN, 0), b"")]);
}

#[test]
fn established_zero_window_still_processes_the_ack_of_a_data_segment() {
    // RFC 9293 §3.10.7.4: "If the RCV.WND is zero, no segments will be
    // acceptable, but special allowance should be made to accept valid
    // ACKs" — Linux (tcp_sequence accepts SEG.SEQ = RCV.NXT, tcp_ack runs,
    // tcp_data_queue drops the data) processes the ACK field.
    let mut s = socket_established();
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    fill_receive_window(&mut s, at(110));
    send(&mut s, at(160), from_peer(WIN, 5), b"more");
    assert_eq!(s.recv_queue(), WIN, "the data is dropped");
    assert_eq!(recv(&mut s, at(160)), [seg(to_peer(5, WIN, 0), b"")]);
    assert_eq!(s.snd_una, lseq(5), "the ACK field is processed");
    assert_eq!(s.rto_at, None);
}

#[test]
fn established_zero_window_accepts_a_bare_fin_at_rcv_nxt() {
    // Linux tcp_data_queue: a FIN without data at RCV.NXT is queued even
    // with a zero window (the FIN needs no buffer space).
    let mut s = socket_established();
    fill_receive_window(&mut s, at(100));
    let fin = TcpRepr {
        control: TcpControl::Fin,
        ..from_peer(WIN, 0)
    };
    send(&mut s, at(160), fin, b"");
    assert_eq!(s.state, State::CloseWait);
    assert_eq!(recv(&mut s, at(160)), [seg(to_peer(0, WIN + 1, 0), b"")]);
}

#[test]
fn established_zero_window_drops_empty_segment_elsewhere() {
    // RFC 9293 §3.10.7.4: SEG.LEN = 0, RCV.WND = 0: acceptable only if
    // SEG.SEQ = RCV.NXT.
    let mut s = socket_established();
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    fill_receive_window(&mut s, at(110));
    send(&mut s, at(160), from_peer(WIN + 1, 5), b"");
    assert_eq!(s.snd_una, lseq(0));
    assert_eq!(recv(&mut s, at(160)), [seg(to_peer(5, WIN, 0), b"")]);
}

// ---- ESTABLISHED: RFC 5961 (blind in-window attacks) ----

#[test]
fn established_rst_at_rcv_nxt_resets() {
    // RFC 5961 §3.2: a RST whose SEG.SEQ = RCV.NXT resets the connection;
    // the program sees ECONNRESET.
    let mut s = socket_established();
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(100), rst, b""), Input::Done(Event::Closed));
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(100));
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::ECONNRESET));
}

#[test]
fn established_rst_in_window_gets_challenge_ack() {
    // RFC 5961 §3.2: a RST in the window but not at RCV.NXT draws a
    // challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT> and is dropped.
    let mut s = socket_established();
    for (i, off) in [1, 1000, WIN - 1].into_iter().enumerate() {
        let rst = TcpRepr {
            control: TcpControl::Rst,
            ..from_peer(off, 0)
        };
        let t = at(100 + 500 * i as u64); // one per 500 ms at most
        assert_eq!(send(&mut s, t, rst, b""), Input::Done(Event::None));
        assert_eq!(s.state, State::Established);
        assert_eq!(recv(&mut s, t), [seg(to_peer(0, 0, WIN), b"")]);
    }
    assert_eq!(s.stats.challenge_acks, 3);
    assert_eq!(s.error, None);
}

#[test]
fn established_rst_outside_the_window_is_ignored() {
    // RFC 5961 §3.2 (1): a RST outside the window is silently dropped.
    let mut s = socket_established();
    for seq in [rseq(WIN), rseq(0) - 1] {
        let rst = TcpRepr {
            control: TcpControl::Rst,
            seq_number: seq,
            ..from_peer(0, 0)
        };
        assert_eq!(send(&mut s, at(100), rst, b""), Input::Done(Event::None));
    }
    assert_eq!(s.state, State::Established);
    recv_nothing(&mut s, at(100));
    assert_eq!(s.stats.out_of_window, 2);
}

#[test]
fn established_syn_gets_challenge_ack() {
    // RFC 5961 §4.2: a SYN in a synchronized state, whatever its sequence
    // number, draws a challenge ACK; the connection is not reset.
    let mut s = socket_established();
    let syn = TcpRepr {
        control: TcpControl::Syn,
        ack_number: None,
        ..from_peer(100, 0)
    };
    assert_eq!(send(&mut s, at(100), syn, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::Established);
    assert_eq!(s.rcv_nxt, rseq(0));
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
    assert_eq!(s.stats.challenge_acks, 1);
    // One outside the window gets an ACK too.
    let syn = TcpRepr {
        seq_number: REMOTE_SEQ - 1_000_000,
        ..syn
    };
    assert_eq!(send(&mut s, at(610), syn, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::Established);
    assert_eq!(recv(&mut s, at(610)), [seg(to_peer(0, 0, WIN), b"")]);
    assert_eq!(s.stats.syn_challenged, 2);
}

#[test]
fn established_ack_of_unsent_data_is_acked_and_dropped() {
    // RFC 5961 §5.2 / RFC 9293 §3.10.7.4 (fifth): SEG.ACK > SND.NXT ->
    // send an ACK, drop the segment (its data included).
    let mut s = socket_established();
    s.send(b"hello").unwrap();
    assert_eq!(recv(&mut s, at(100)).len(), 1);
    send(&mut s, at(110), from_peer(0, 100), b"data");
    assert_eq!(recv(&mut s, at(110)), [seg(to_peer(5, 0, WIN), b"")]);
    assert_eq!(s.snd_una, lseq(0));
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(s.rcv_nxt, rseq(0));
}

#[test]
fn established_ack_too_old_is_challenged_and_dropped() {
    // RFC 5961 §5.2: SEG.ACK must be >= SND.UNA - MAX.SND.WND; otherwise
    // the segment is discarded and an ACK sent.
    let mut s = socket_established();
    let old = TcpRepr {
        ack_number: Some(lseq(0) - 70_000),
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), old, b"data");
    assert_eq!(recv(&mut s, at(100)), [seg(to_peer(0, 0, WIN), b"")]);
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(s.stats.challenge_acks, 1);
}

// ---- ESTABLISHED: timestamps and PAWS (RFC 7323) ----

#[test]
fn established_paws_drops_an_old_timestamp() {
    // RFC 7323 §5.3: SEG.TSval < TS.Recent (and no RST) -> not acceptable:
    // send an ACK, drop the segment.
    let mut s = socket_established_ts();
    let old = TcpRepr {
        timestamp: peer_ts(PEER_TS + 5, s.ts_now(at(0))),
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), old, b"stale");
    assert_eq!(s.recv_queue(), 0);
    assert_eq!(s.rcv_nxt, rseq(0));
    assert_eq!(s.ts_recent, Some(PEER_TS + 10));
    assert_eq!(s.stats.out_of_window, 1);
    let ack = TcpRepr {
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(100)),
            tsecr: PEER_TS + 10,
        }),
        ..to_peer(0, 0, WIN)
    };
    assert_eq!(recv(&mut s, at(100)), [seg(ack, b"")]);
}

#[test]
fn established_ts_recent_is_taken_from_segments_at_last_ack_sent() {
    // RFC 7323 §4.3: TS.Recent <- SEG.TSval only if SEG.SEQ =<
    // Last.ACK.sent, so a delayed ACK of two segments echoes the first
    // one's TSval; our TSecr is TS.Recent and our TSval is our clock.
    let mut s = socket_established_ts();
    let ours = s.ts_now(at(0));
    let first = TcpRepr {
        timestamp: peer_ts(PEER_TS + 100, ours),
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), first, &data(MSS));
    assert_eq!(s.ts_recent, Some(PEER_TS + 100));
    let second = TcpRepr {
        timestamp: peer_ts(PEER_TS + 101, ours),
        ..from_peer(MSS, 0)
    };
    send(&mut s, at(101), second, &data(MSS));
    assert_eq!(s.ts_recent, Some(PEER_TS + 100), "beyond Last.ACK.sent");
    let ack = TcpRepr {
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(101)),
            tsecr: PEER_TS + 100,
        }),
        ..to_peer(0, 2 * MSS, WIN - 2 * MSS)
    };
    assert_eq!(recv(&mut s, at(101)), [seg(ack, b"")]);
    // The next segment starts at Last.ACK.sent: its TSval is taken.
    let third = TcpRepr {
        timestamp: peer_ts(PEER_TS + 150, ours),
        ..from_peer(2 * MSS, 0)
    };
    send(&mut s, at(150), third, b"x");
    assert_eq!(s.ts_recent, Some(PEER_TS + 150));
    s.on_timers(at(190));
    let out = recv(&mut s, at(190));
    assert_eq!(out.len(), 1);
    let ts = out[0].0.timestamp.expect("timestamps in every segment");
    assert_eq!(ts.tsecr, PEER_TS + 150);
    assert_eq!(
        ts.tsval.wrapping_sub(ack.timestamp.unwrap().tsval),
        89,
        "TSval counts milliseconds"
    );
}

#[test]
fn established_timestamps_give_an_rtt_sample() {
    // RFC 7323 §4.1 / RFC 6298 §2: an ACK of new data echoing our TSval
    // yields RTT = now - TSecr; SRTT and RTTVAR follow RFC 6298 §2.3.
    let mut s = socket_established_ts();
    assert_eq!((s.srtt(), s.rtt.rttvar()), (Some(ms(10)), ms(5)));
    s.send(&data(1000)).unwrap();
    let out = recv(&mut s, at(100));
    let ts = out[0].0.timestamp.expect("TS in data");
    assert_eq!(
        ts,
        TcpTimestamp {
            tsval: s.ts_now(at(100)),
            tsecr: PEER_TS + 10
        }
    );
    let ack = TcpRepr {
        timestamp: peer_ts(PEER_TS + 20, ts.tsval),
        ..from_peer(0, 1000)
    };
    send(&mut s, at(180), ack, b"");
    // R = 80 ms: RTTVAR = 3/4 * 5 + 1/4 * |10 - 80|, SRTT = 7/8 * 10 + 1/8 * 80.
    assert_eq!(s.rtt.rttvar(), Duration::from_micros(21_250));
    assert_eq!(s.srtt(), Some(Duration::from_micros(18_750)));
}

// ---- ESTABLISHED: windows (RFC 7323 scaling, RFC 9293 §3.8.6) ----

#[test]
fn established_peer_window_is_shifted_by_snd_scale() {
    // RFC 7323 §2.3: SND.WND = SEG.WND << Snd.Wind.Shift on non-SYN
    // segments.
    let syn = TcpRepr {
        window_scale: Some(7),
        ..peer_syn()
    };
    let mut s = socket_established_with(cfg(), &syn);
    assert_eq!(s.snd_wnd, (PEER_WIN as usize) << 7);
    let update = TcpRepr {
        window_len: 100,
        ..from_peer(0, 0)
    };
    send(&mut s, at(100), update, b"");
    assert_eq!(s.snd_wnd, 12_800);
}

#[test]
fn established_our_window_is_shifted_by_rcv_scale() {
    // RFC 7323 §2.3: the window field we send is RCV.WND >> Rcv.Wind.Shift.
    let syn = TcpRepr {
        window_scale: Some(7),
        ..peer_syn()
    };
    let mut s = socket_established_with(cfg_big_rx(), &syn);
    assert_eq!(s.rcv_scale, BIG_SCALE);
    send(&mut s, at(100), from_peer(0, 0), &data(1000));
    s.on_timers(at(140));
    assert_eq!(
        recv(&mut s, at(140)),
        [seg(to_peer(0, 1000, (BIG_RX - 1000) >> BIG_SCALE), b"")]
    );
}

#[test]
fn established_right_edge_does_not_move_left_unscaled() {
    // RFC 9293 §3.8.6.2.2 (SHLD-14): the right window edge does not move
    // left. Unread data shrinks the window by exactly its length.
    let mut s = socket_established();
    let mut edges = Vec::new();
    for (i, len) in [700usize, 1460, 3].into_iter().enumerate() {
        let t = 100 + 100 * i as u64;
        let seq = s.rcv_nxt.distance(rseq(0)) as usize;
        send(&mut s, at(t), from_peer(seq, 0), &data(len));
        s.on_timers(at(t + 40));
        let out = recv(&mut s, at(t + 40));
        assert_eq!(out.len(), 1);
        let r = out[0].0;
        edges.push(r.ack_number.unwrap() + r.window_len as usize);
    }
    assert_eq!(edges, [rseq(WIN); 3]);
}

#[test]
fn established_right_edge_does_not_move_left_scaled() {
    // RFC 9293 §3.8.6.2.2 (SHLD-14) and this module's invariant: the right
    // edge we advertise (SEG.ACK + (SEG.WND << Rcv.Wind.Shift)) never
    // moves left. Linux rounds the scaled window up (ALIGN) to ensure it.
    let syn = TcpRepr {
        window_scale: Some(7),
        ..peer_syn()
    };
    let mut s = socket_established_with(cfg_big_rx(), &syn);
    let mut last_edge = rseq(0);
    for (i, len) in [7usize, 30, 1, 100, 31].into_iter().enumerate() {
        let t = 100 + 100 * i as u64;
        let seq = s.rcv_nxt.distance(rseq(0)) as usize;
        send(&mut s, at(t), from_peer(seq, 0), &data(len));
        s.on_timers(at(t + 40));
        let out = recv(&mut s, at(t + 40));
        assert_eq!(out.len(), 1);
        let r = out[0].0;
        let edge = r.ack_number.unwrap() + ((r.window_len as usize) << BIG_SCALE);
        assert!(
            edge.distance(last_edge) >= 0,
            "after {len} more bytes the edge moved left by {}",
            last_edge.distance(edge)
        );
        last_edge = edge;
    }
}

#[test]
fn established_window_update_after_the_program_reads() {
    // RFC 9293 §3.8.6.2.2 / RFC 1122 §4.2.3.3: once the window opens by
    // enough (here 2 MSS), announce it without waiting for data.
    let mut s = socket_established();
    fill_receive_window(&mut s, at(100));
    let mut buf = vec![0; 2 * MSS];
    assert_eq!(s.recv(&mut buf[..1000]), Ok(1000));
    recv_nothing(&mut s, at(200));
    assert_eq!(s.recv(&mut buf), Ok(2 * MSS));
    assert_eq!(recv(&mut s, at(201)), [seg(to_peer(0, WIN, 1000 + 2 * MSS), b"")]);
}

#[test]
fn established_receiver_sws_avoidance_keeps_the_edge_for_tiny_openings() {
    // RFC 9293 §3.8.6.2.2 (MUST-39): the receiver keeps RCV.NXT + RCV.WND
    // fixed until the window can grow by min(RCV.BUFF / 2, Eff.snd.MSS).
    // After a 1-byte read, the answer to the peer's zero-window probe
    // must still offer a zero window.
    let mut s = socket_established();
    fill_receive_window(&mut s, at(100));
    assert_eq!(s.recv(&mut [0; 1]), Ok(1));
    let probe = TcpRepr {
        seq_number: rseq(WIN) - 1,
        ..from_peer(0, 0)
    };
    send(&mut s, at(300), probe, b"");
    assert_eq!(recv(&mut s, at(300)), [seg(to_peer(0, WIN, 0), b"")]);
}

#[test]
fn established_a_flood_of_tiny_out_of_order_segments_stays_bounded() {
    // 2,000 one-byte segments, each its own hole: the reassembly queue
    // keeps at most MAX_OOO_RANGES ranges (and never more bytes than the
    // window); the rest is refused and counted; in-order data still flows.
    use crate::tcp::buffer::MAX_OOO_RANGES;
    let mut s = socket_established();
    for i in 0..2000usize {
        let off = 100 + 2 * (i % (WIN / 2 - 100));
        send(&mut s, at(100), from_peer(off, 0), b"x");
    }
    assert_eq!(s.rx.ooo_ranges().count(), MAX_OOO_RANGES);
    assert_eq!(s.stats.ooo_refused, 2000 - MAX_OOO_RANGES as u64);
    assert!(s.rx.allocated() <= s.rx.capacity());
    assert_eq!(s.recv_queue(), 0);
    send(&mut s, at(200), from_peer(0, 0), &[b'a'; 100]);
    assert_eq!(s.recv_queue(), 101, "in order, joined to the first held byte");
    assert_eq!(s.check_invariants(), Ok(()));
}
