//! CLOSED, SYN-SENT and SYN-RECEIVED: a fresh socket, the active and the passive open, options negotiation, simultaneous open.

use super::*;

// ---- CLOSED: a fresh socket ----

#[test]
fn closed_fresh_socket_is_writable_and_hung_up() {
    // Linux tcp_poll: TCP_CLOSE reports EPOLLHUP, and EPOLLOUT since the
    // send side is not shut and there is room.
    let s = TcpSocket::new(cfg());
    let r = s.readiness();
    assert!(r.writable);
    assert!(r.hangup);
    assert!(!r.readable);
    assert!(!r.read_closed);
    assert!(!r.error);
}

#[test]
fn closed_send_before_connect_is_epipe() {
    // Linux tcp_sendmsg -> sk_stream_wait_connect: EPIPE outside the
    // opening and open states.
    let mut s = TcpSocket::new(cfg());
    assert_eq!(s.send(b"hello"), Err(Errno::EPIPE));
}

#[test]
fn closed_recv_before_connect_is_enotconn() {
    // Linux tcp_recvmsg: ENOTCONN "when user tries to read from never
    // connected socket".
    let mut s = TcpSocket::new(cfg());
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::ENOTCONN));
}

#[test]
fn closed_segment_is_answered_with_rst_except_rst() {
    // RFC 9293 §3.10.7.1: in CLOSED every segment but a RST draws a RST.
    let mut s = TcpSocket::new(cfg());
    assert_eq!(send(&mut s, at(100), from_peer(0, 0), b"x"), Input::Reset);
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(100), rst, b""), Input::Done(Event::None));
    recv_nothing(&mut s, at(100));
}

// ---- SYN-SENT: active open ----

#[test]
fn syn_sent_syn_carries_mss_window_scale_sack_and_timestamps() {
    // RFC 9293 §3.7.1 (MSS), RFC 7323 §2.2 (WS in the SYN, window field
    // unscaled) and §3.2 (TSecr 0 in the SYN), RFC 2018 §2 (SACK-permitted).
    let mut s = TcpSocket::new(cfg_big_rx());
    s.connect(local(), remote(), LOCAL_SEQ, at(0));
    assert_eq!(s.state, State::SynSent);
    let syn = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: None,
        window_len: 65_535,
        max_seg_size: Some(1460),
        window_scale: Some(BIG_SCALE),
        sack_permitted: true,
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(0)),
            tsecr: 0,
        }),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(0)), [seg(syn, b"")]);
    assert_eq!((s.snd_una, s.snd_nxt, s.snd_max), (LOCAL_SEQ, lseq(0), lseq(0)));
    // RFC 6298 §2.1: the initial RTO is 1 s.
    assert_eq!(s.rto_at, Some(at(1000)));
    recv_nothing(&mut s, at(0));
}

#[test]
fn syn_sent_syn_ack_with_acceptable_ack_establishes_and_is_acked() {
    // RFC 9293 §3.10.7.3: SYN with an acceptable ACK -> ESTABLISHED, send
    // <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>. RFC 7323 §2.2: the SYN-ACK's
    // window is not scaled; §3.2: TSecr echoes its TSval.
    let mut s = socket_syn_sent_with(cfg_big_rx());
    let syn_ack = TcpRepr {
        max_seg_size: Some(1400),
        window_scale: Some(2),
        sack_permitted: true,
        window_len: 40_000,
        timestamp: peer_ts(PEER_TS, s.ts_now(at(0))),
        ..peer_syn_ack()
    };
    assert_eq!(
        send(&mut s, at(30), syn_ack, b""),
        Input::Done(Event::Established)
    );
    assert_eq!(s.state, State::Established);
    assert_eq!((s.snd_una, s.snd_nxt, s.rcv_nxt), (lseq(0), lseq(0), rseq(0)));
    assert_eq!(s.snd_wnd, 40_000);
    assert_eq!((s.snd_scale, s.rcv_scale), (2, BIG_SCALE));
    assert_eq!(s.mss(), 1400);
    assert!(s.sack_ok);
    assert_eq!(s.ts_recent, Some(PEER_TS));
    assert_eq!(s.rto_at, None);
    // The RTT of the handshake, measured by the echoed timestamp.
    assert_eq!(s.srtt(), Some(ms(30)));
    let ack = TcpRepr {
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(30)),
            tsecr: PEER_TS,
        }),
        ..to_peer(0, 0, BIG_RX >> BIG_SCALE)
    };
    assert_eq!(recv(&mut s, at(30)), [seg(ack, b"")]);
    recv_nothing(&mut s, at(30));
}

#[test]
fn syn_sent_unacceptable_ack_is_answered_with_reset() {
    // RFC 9293 §3.10.7.3: SEG.ACK =< ISS or SEG.ACK > SND.NXT -> send a
    // RST (unless the segment is a RST) and discard it.
    let mut s = socket_syn_sent();
    for ack in [LOCAL_SEQ, LOCAL_SEQ + 2, LOCAL_SEQ - 1000] {
        let syn_ack = TcpRepr {
            ack_number: Some(ack),
            ..peer_syn_ack()
        };
        assert_eq!(send(&mut s, at(30), syn_ack, b""), Input::Reset, "ack {ack}");
        let ack_only = TcpRepr {
            control: TcpControl::None,
            ..syn_ack
        };
        assert_eq!(send(&mut s, at(30), ack_only, b""), Input::Reset, "ack {ack}");
        assert_eq!(s.state, State::SynSent);
    }
    recv_nothing(&mut s, at(30));
}

#[test]
fn syn_sent_rst_without_acceptable_ack_is_ignored() {
    // RFC 9293 §3.10.7.3: a RST with an unacceptable ACK is dropped; a RST
    // without an ACK is dropped.
    let mut s = socket_syn_sent();
    for ack in [None, Some(LOCAL_SEQ + 5)] {
        let rst = TcpRepr {
            control: TcpControl::Rst,
            seq_number: SeqNumber(0),
            ack_number: ack,
            window_len: 0,
            ..SEND_TEMPL
        };
        assert_eq!(send(&mut s, at(30), rst, b""), Input::Done(Event::None));
        assert_eq!(s.state, State::SynSent);
    }
    assert_eq!(s.error, None);
    recv_nothing(&mut s, at(30));
}

#[test]
fn syn_sent_rst_with_acceptable_ack_is_connection_refused() {
    // RFC 9293 §3.10.7.3: RST with an acceptable ACK -> "connection
    // reset", CLOSED; the program sees ECONNREFUSED.
    let mut s = socket_syn_sent();
    let rst = TcpRepr {
        control: TcpControl::Rst,
        seq_number: SeqNumber(0),
        ack_number: Some(lseq(0)),
        window_len: 0,
        ..SEND_TEMPL
    };
    assert_eq!(send(&mut s, at(30), rst, b""), Input::Done(Event::Closed));
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.rto_at, None);
    assert!(s.readiness().error);
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::ECONNREFUSED));
    assert!(!s.readiness().error, "the error is reported once");
    recv_nothing(&mut s, at(30));
}

#[test]
fn syn_sent_syn_ack_without_options_negotiates_them_off() {
    // RFC 7323 §2.2: no WS in the SYN-ACK -> both shifts 0; §3.2: no TS in
    // the SYN-ACK -> no timestamps sent; RFC 2018: no SACK;
    // RFC 9293 §3.7.1: no MSS option -> 536.
    let mut s = socket_syn_sent_with(cfg_big_rx());
    let syn_ack = TcpRepr {
        max_seg_size: None,
        ..peer_syn_ack()
    };
    assert_eq!(
        send(&mut s, at(30), syn_ack, b""),
        Input::Done(Event::Established)
    );
    assert_eq!((s.snd_scale, s.rcv_scale), (0, 0));
    assert!(!s.ws_ok);
    assert!(!s.sack_ok);
    assert_eq!(s.ts_recent, None);
    assert_eq!(s.mss(), 536);
    // RFC 6928: the initial window counts segments of the MSS in use.
    assert_eq!(s.cwnd(), 10 * 536);
    // The window field is unscaled: the 1 MiB buffer shows as 65535.
    assert_eq!(recv(&mut s, at(30)), [seg(to_peer(0, 0, 65_535), b"")]);
    // Data goes out in 536-byte segments, without timestamps.
    s.cfg.nodelay = true;
    s.send(&data(1000)).unwrap();
    let out = recv(&mut s, at(40));
    assert_eq!(
        shape(&out),
        [
            (lseq(0), 536, TcpControl::None),
            (lseq(536), 464, TcpControl::Psh)
        ]
    );
    assert!(out.iter().all(|(r, _)| r.timestamp.is_none()));
}

#[test]
fn syn_sent_mss_is_the_smaller_of_both() {
    // RFC 9293 §3.7.1: send segments no larger than the peer's MSS (and
    // our own).
    for (peer, expected) in [(1000u16, 1000usize), (9000, 1460)] {
        let mut s = socket_syn_sent();
        let syn_ack = TcpRepr {
            max_seg_size: Some(peer),
            ..peer_syn_ack()
        };
        assert_eq!(
            send(&mut s, at(30), syn_ack, b""),
            Input::Done(Event::Established)
        );
        assert_eq!(s.mss(), expected, "peer MSS {peer}");
    }
}

#[test]
fn syn_sent_syn_is_simultaneous_open() {
    // RFC 9293 §3.10.7.3 (fourth, SYN without ACK): -> SYN-RECEIVED, send
    // <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>; the options answer the peer's.
    let mut s = socket_syn_sent();
    assert_eq!(send(&mut s, at(30), peer_syn(), b""), Input::Done(Event::None));
    assert_eq!(s.state, State::SynReceived);
    assert_eq!(s.rcv_nxt, rseq(0));
    let syn_ack = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: Some(rseq(0)),
        window_len: WIN as u16,
        max_seg_size: Some(1460),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(30)), [seg(syn_ack, b"")]);
    // The ACK of our SYN completes it.
    assert_eq!(
        send(&mut s, at(40), from_peer(0, 0), b""),
        Input::Done(Event::Established)
    );
    assert_eq!(s.state, State::Established);
    assert_eq!(s.snd_una, lseq(0));
    recv_nothing(&mut s, at(40));
}

#[test]
fn syn_sent_simultaneous_open_rst_is_connection_refused() {
    // RFC 9293 §3.10.7.4 (second, SYN-RECEIVED): "If this connection was
    // initiated with an active OPEN (i.e., came from SYN-SENT state), then
    // the connection was refused; signal the user 'connection refused'."
    // Without the error, a program waiting for connect() to complete
    // reads SO_ERROR = 0 on a closed socket.
    let mut s = socket_syn_sent();
    send(&mut s, at(30), peer_syn(), b"");
    assert_eq!(recv(&mut s, at(30)).len(), 1);
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ack_number: None,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(40), rst, b""), Input::Done(Event::Closed));
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.take_error(), Some(Errno::ECONNREFUSED));
}

#[test]
fn syn_sent_send_is_eagain() {
    // Linux: send on a connecting non-blocking socket -> EAGAIN.
    let mut s = socket_syn_sent();
    assert_eq!(s.send(b"early"), Err(Errno::EAGAIN));
    assert_eq!(s.send_queue(), 0);
}

#[test]
fn syn_sent_is_neither_readable_nor_writable() {
    // Linux tcp_poll: nothing but HUP/ERR is reported in SYN-SENT.
    let s = socket_syn_sent();
    let r = s.readiness();
    assert!(!r.readable);
    assert!(!r.writable);
    assert!(!r.hangup);
    assert!(!r.error);
}

#[test]
fn syn_sent_syn_is_retransmitted_then_times_out() {
    // RFC 6298 §5.5: back off on every expiry; `syn_retries`
    // retransmissions, then ETIMEDOUT (Linux tcp_syn_retries).
    let mut s = socket_syn_sent_with(TcpConfig {
        syn_retries: 2,
        ..cfg()
    });
    assert_eq!(s.rto_at, Some(at(1000)));
    assert_eq!(s.on_timers(at(999)), Event::None);
    recv_nothing(&mut s, at(999));
    assert_eq!(s.on_timers(at(1000)), Event::None);
    let out = recv(&mut s, at(1000));
    assert_eq!(shape(&out), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(out[0].0.max_seg_size, Some(1460), "the options are sent again");
    assert_eq!(s.rto_at, Some(at(3000)));
    assert_eq!(s.on_timers(at(3000)), Event::None);
    assert_eq!(shape(&recv(&mut s, at(3000))), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(s.rto_at, Some(at(7000)));
    assert_eq!(s.stats.timeouts, 2);
    assert_eq!(s.on_timers(at(7000)), Event::Closed);
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(7000));
    assert_eq!(s.recv(&mut [0; 16]), Err(Errno::ETIMEDOUT));
}

#[test]
fn syn_sent_rto_is_three_seconds_after_a_syn_timeout() {
    // RFC 6298 §5.7: "If the timer expires awaiting the ACK of a SYN
    // segment and the TCP implementation is using an RTO less than 3
    // seconds, the RTO MUST be re-initialized to 3 seconds when data
    // transmission begins" (Linux: TCP_TIMEOUT_FALLBACK). Without
    // timestamps Karn's rule leaves no RTT sample from the handshake.
    let mut s = socket_syn_sent();
    s.on_timers(at(1000));
    assert_eq!(shape(&recv(&mut s, at(1000))), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(
        send(&mut s, at(1050), peer_syn_ack(), b""),
        Input::Done(Event::Established)
    );
    assert_eq!(s.srtt(), None, "Karn: no sample from a retransmitted SYN");
    assert!(s.rto() >= Duration::from_secs(3), "RTO {:?}", s.rto());
}

// ---- SYN-RECEIVED: passive open ----

#[test]
fn syn_received_syn_ack_carries_only_options_the_peer_offered() {
    // RFC 7323 §2.2 / §3.2 and RFC 2018 §2: WS, TS and SACK-permitted go
    // in the SYN-ACK only if the SYN had them. The SYN-ACK's window is
    // unscaled (RFC 7323 §2.2).
    let mut s = TcpSocket::accept_syn(cfg_big_rx(), local(), remote(), &peer_syn(), LOCAL_SEQ, at(0));
    assert_eq!(s.state, State::SynReceived);
    let syn_ack = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: Some(rseq(0)),
        window_len: 65_535,
        max_seg_size: Some(1460),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(0)), [seg(syn_ack, b"")]);
    assert_eq!((s.snd_scale, s.rcv_scale), (0, 0));
}

#[test]
fn syn_received_syn_ack_answers_every_offered_option() {
    let syn = TcpRepr {
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: peer_ts(PEER_TS, 0),
        max_seg_size: Some(1200),
        ..peer_syn()
    };
    let mut s = TcpSocket::accept_syn(cfg_big_rx(), local(), remote(), &syn, LOCAL_SEQ, at(0));
    let syn_ack = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: Some(rseq(0)),
        window_len: 65_535,
        max_seg_size: Some(1460),
        window_scale: Some(BIG_SCALE),
        sack_permitted: true,
        timestamp: Some(TcpTimestamp {
            tsval: s.ts_now(at(0)),
            tsecr: PEER_TS,
        }),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(0)), [seg(syn_ack, b"")]);
    assert_eq!((s.snd_scale, s.rcv_scale, s.mss()), (7, BIG_SCALE, 1200));
}

#[test]
fn syn_received_syn_ack_omits_options_our_config_disables() {
    let syn = TcpRepr {
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: peer_ts(PEER_TS, 0),
        ..peer_syn()
    };
    let cfg = TcpConfig {
        window_scaling: false,
        sack: false,
        timestamps: false,
        ..cfg_big_rx()
    };
    let mut s = TcpSocket::accept_syn(cfg, local(), remote(), &syn, LOCAL_SEQ, at(0));
    let out = recv(&mut s, at(0));
    assert_eq!(out.len(), 1);
    let r = out[0].0;
    assert_eq!(
        (r.window_scale, r.sack_permitted, r.timestamp),
        (None, false, None)
    );
    assert_eq!(
        (s.snd_scale, s.rcv_scale, s.sack_ok, s.ts_recent),
        (0, 0, false, None)
    );
}

#[test]
fn syn_received_window_scale_above_14_is_capped() {
    // RFC 7323 §2.3: a shift above 14 is used as 14.
    let syn = TcpRepr {
        window_scale: Some(15),
        ..peer_syn()
    };
    let s = socket_syn_received_with(cfg(), &syn);
    assert_eq!(s.snd_scale, 14);
}

#[test]
fn syn_received_retransmitted_syn_gets_the_syn_ack_again() {
    // RFC 9293 §3.10.7.4 / Linux: a retransmitted SYN in SYN-RECEIVED
    // means the SYN-ACK was lost: send it again.
    let mut s = socket_syn_received();
    assert_eq!(send(&mut s, at(5), peer_syn(), b""), Input::Done(Event::None));
    assert_eq!(s.state, State::SynReceived);
    let syn_ack = TcpRepr {
        control: TcpControl::Syn,
        seq_number: LOCAL_SEQ,
        ack_number: Some(rseq(0)),
        window_len: WIN as u16,
        max_seg_size: Some(1460),
        ..RECV_TEMPL
    };
    assert_eq!(recv(&mut s, at(5)), [seg(syn_ack, b"")]);
    recv_nothing(&mut s, at(5));
}

#[test]
fn syn_received_ack_establishes() {
    // RFC 9293 §3.10.7.4 (fifth, SYN-RECEIVED): SND.UNA < SEG.ACK =<
    // SND.NXT -> ESTABLISHED; from now on the window field is scaled
    // (RFC 7323 §2.2).
    let syn = TcpRepr {
        window_scale: Some(7),
        ..peer_syn()
    };
    let mut s = socket_syn_received_with(cfg(), &syn);
    let ack = TcpRepr {
        window_len: 100,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(10), ack, b""), Input::Done(Event::Established));
    assert_eq!(s.state, State::Established);
    assert_eq!((s.snd_una, s.snd_nxt), (lseq(0), lseq(0)));
    assert_eq!(s.snd_wnd, 100 << 7);
    assert_eq!(s.rto_at, None);
    assert_eq!(s.srtt(), Some(ms(10)));
    recv_nothing(&mut s, at(10));
}

#[test]
fn syn_received_ack_with_data_establishes_and_delivers_it() {
    let mut s = socket_syn_received();
    assert_eq!(
        send(&mut s, at(10), from_peer(0, 0), b"hello"),
        Input::Done(Event::Established)
    );
    assert_eq!(s.state, State::Established);
    assert_eq!(s.rcv_nxt, rseq(5));
    assert_eq!(read_all(&mut s), b"hello");
}

#[test]
fn syn_received_unacceptable_ack_is_answered_with_reset() {
    // RFC 9293 §3.10.7.4 (fifth, SYN-RECEIVED): an unacceptable ACK ->
    // <SEQ=SEG.ACK><CTL=RST>; the state does not change.
    let mut s = socket_syn_received();
    for ack in [LOCAL_SEQ, LOCAL_SEQ + 2, LOCAL_SEQ + 100_000] {
        let bad = TcpRepr {
            ack_number: Some(ack),
            ..from_peer(0, 0)
        };
        assert_eq!(send(&mut s, at(10), bad, b""), Input::Reset, "ack {ack}");
        assert_eq!(s.state, State::SynReceived);
    }
    recv_nothing(&mut s, at(10));
}

#[test]
fn syn_received_rst_closes() {
    // RFC 9293 §3.10.7.4 (second, SYN-RECEIVED, passive open): a RST
    // ends the embryonic connection.
    let mut s = socket_syn_received();
    let rst = TcpRepr {
        control: TcpControl::Rst,
        ack_number: None,
        ..from_peer(0, 0)
    };
    assert_eq!(send(&mut s, at(10), rst, b""), Input::Done(Event::Closed));
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(10));
}

#[test]
fn syn_received_syn_ack_is_retransmitted_then_given_up() {
    // RFC 6298 §5.4/5.5 for the SYN-ACK; Linux tcp_synack_retries: the
    // embryonic connection is dropped silently after the retries.
    let mut s = socket_syn_received_with(
        TcpConfig {
            synack_retries: 1,
            ..cfg()
        },
        &peer_syn(),
    );
    assert_eq!(s.rto_at, Some(at(1000)));
    assert_eq!(s.on_timers(at(1000)), Event::None);
    let out = recv(&mut s, at(1000));
    assert_eq!(shape(&out), [(LOCAL_SEQ, 0, TcpControl::Syn)]);
    assert_eq!(out[0].0.ack_number, Some(rseq(0)));
    assert_eq!(s.rto_at, Some(at(3000)));
    assert_eq!(s.on_timers(at(3000)), Event::Closed);
    assert_eq!(s.state, State::Closed);
    recv_nothing(&mut s, at(3000));
}

#[test]
fn syn_received_gives_up_after_five_syn_ack_retransmissions_by_default() {
    // Linux tcp_synack_retries = 5: an unanswered SYN-ACK (a spoofed SYN's)
    // holds its backlog slot 1 + 2 + 4 + 8 + 16 + 32 = 63 s, not the
    // 127 s of the SYN's six retries.
    let mut s = socket_syn_received_with(TcpConfig::default(), &peer_syn());
    let mut sent = 0;
    let mut closed_at = None;
    for _ in 0..10 {
        let Some(t) = s.rto_at else { break };
        if s.on_timers(t) == Event::Closed {
            closed_at = Some(t);
            break;
        }
        sent += recv(&mut s, t).len();
    }
    assert_eq!(sent, 5);
    assert_eq!(closed_at, Some(at(63_000)));
    assert_eq!(s.state, State::Closed);
}

#[test]
fn syn_received_keepalive_due_before_the_handshake_ends_moves_on() {
    // Found by the tcp_input fuzz target: keepalive idle (1 s) shorter than
    // the SYN-ACK's RTO. The keepalive deadline came due in SYN-RECEIVED,
    // where keepalive does not probe, and stayed due: the interface's timer
    // loop ran the socket's timers again and again within one poll, for
    // ever. A deadline that comes due must always move.
    let cfg = TcpConfig {
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            count: 3,
        }),
        rto_initial: Duration::from_secs(3),
        ..cfg()
    };
    let mut s = socket_syn_received_with(cfg, &peer_syn());
    assert_eq!(s.poll_at(), Some(at(1000)), "the keepalive deadline comes first");
    assert_eq!(s.on_timers(at(1000)), Event::None);
    assert!(s.poll_at().is_some_and(|t| t > at(1000)), "{:?}", s.poll_at());
    // Keepalive does not run before the handshake ends (Linux arms it on
    // the child socket): the segment that completes it arms it again.
    assert_eq!(s.keepalive_at, None);
    recv_nothing(&mut s, at(1000));

    // Keepalive switched off after it was armed: its deadline goes away.
    let mut s = socket_established_with(cfg_keepalive(), &peer_syn());
    s.cfg.keepalive = None;
    assert_eq!(s.on_timers(at(10_010)), Event::None);
    assert_eq!(s.poll_at(), None);
    recv_nothing(&mut s, at(10_010));
}

#[test]
fn syn_received_of_a_simultaneous_open_times_out_with_etimedout_and_no_timer_left() {
    // Found by the tcp_input fuzz target: after a simultaneous open
    // (SYN-SENT, the peer's bare SYN: SYN-RECEIVED) whose SYN-ACK went
    // unanswered, the give-up closed the socket but left its RTO deadline
    // in the past. The program still held the socket, so it was not freed,
    // and the interface's timer loop ran it again and again in one poll.
    // Now connect() fails with ETIMEDOUT, as on Linux, and no deadline
    // is left.
    let mut s = socket_syn_sent_with(TcpConfig {
        syn_retries: 0,
        ..cfg()
    });
    let syn = TcpRepr {
        control: TcpControl::Syn,
        seq_number: REMOTE_SEQ,
        ..SEND_TEMPL
    };
    assert_eq!(send(&mut s, at(10), syn, b""), Input::Done(Event::None));
    assert_eq!(s.state, State::SynReceived);
    let due = s.poll_at().expect("the RTO");
    assert_eq!(s.on_timers(due), Event::Closed);
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.poll_at(), None);
    assert_eq!(s.take_error(), Some(Errno::ETIMEDOUT));
    // A deadline left on a closed socket is cleared, not run again.
    s.rto_at = Some(due);
    assert_eq!(s.on_timers(due), Event::None);
    assert_eq!(s.poll_at(), None);
}

#[test]
fn syn_received_give_up_leaves_no_timer() {
    let mut s = socket_syn_received_with(
        TcpConfig {
            synack_retries: 0,
            keepalive: Some(Keepalive {
                idle: Duration::from_secs(10),
                interval: Duration::from_secs(1),
                count: 3,
            }),
            ..cfg()
        },
        &peer_syn(),
    );
    assert_eq!(s.on_timers(at(1000)), Event::Closed);
    assert_eq!((s.state, s.poll_at(), s.error), (State::Closed, None, None));
}
