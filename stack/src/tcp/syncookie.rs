//! SYN cookies (RFC 4987 §3.6), made and checked as Linux does: when a
//! listener's SYN backlog is full, the SYN is answered with a SYN-ACK whose
//! initial sequence number encodes what the connection needs, and no state
//! is kept; the peer's ACK of it brings the cookie back (`ack - 1`), and a
//! valid one makes the connection then.
//!
//! The cookie (Linux's `secure_tcp_syn_cookie`):
//!
//! ```text
//! cookie = H1(tuple) + peer ISN + (counter << 24) + ((H2(tuple, counter) + mss index) mod 2^24)
//! ```
//!
//! H1 and H2 are SipHash under the interface's secret ([`KeyedHash`]), so a
//! host that does not know the secret cannot make a cookie for a 4-tuple it
//! never received the SYN-ACK of; `counter` ticks every [`PERIOD`] (64 s),
//! and a cookie is accepted while the counter has moved at most once since
//! (so for 64 to 128 s: "about two minutes", Linux's `MAX_SYNCOOKIE_AGE`);
//! the two bits of MSS index name one of [`MSS_TABLE`]. A forged ACK
//! passes with a chance of about 2^-22 (two counters, four indexes, 24 bits).
//!
//! What the cookie cannot carry, the timestamps option does, when the peer
//! sent one: the low 6 bits of our TSval in the SYN-ACK hold the peer's
//! window scale (4 bits, 15 meaning none) and SACK-permitted (1 bit), and
//! come back as TSecr in the ACK (Linux's `cookie_init_timestamp`). Without
//! timestamps the SYN-ACK offers neither window scaling nor SACK (the
//! connection would not know it had agreed to them).

use core::net::SocketAddrV4;
use core::time::Duration;

use super::config::TcpConfig;
use super::socket::{State, TcpSocket};
use crate::iface::hash::KeyedHash;
use crate::time::Instant;
use crate::wire::{SeqNumber, TcpControl, TcpRepr, TcpTimestamp};

/// The MSS values a cookie can name (Linux's `msstab`): the peer gets the
/// largest one not above what it offered (536 if it offered less).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// How often the cookie counter ticks.
pub const PERIOD: Duration = Duration::from_secs(64);

/// Counter values a cookie is good for: the one it was made in and the next.
const MAX_AGE: u32 = 2;

/// How long after the last cookie a listener still checks ACKs for one
/// (as long as a cookie lives).
pub const LIFETIME: Duration = Duration::from_secs(64 * MAX_AGE as u64);

/// Bits of TSval that carry options.
const TS_BITS: u32 = 6;
const TS_MASK: u32 = (1 << TS_BITS) - 1;
const TS_NO_WSCALE: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;

fn counter(now: Instant) -> u32 {
    (now.nanos() / PERIOD.as_nanos() as u64) as u32
}

fn h1(key: &KeyedHash, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
    key.hash_one_keyed((0x636f_6f6b_6965_3031_u64, local, remote)) as u32 // "cookie01"
}

fn h2(key: &KeyedHash, local: SocketAddrV4, remote: SocketAddrV4, count: u32) -> u32 {
    key.hash_one_keyed((0x636f_6f6b_6965_3032_u64, local, remote, count)) as u32
    // "cookie02"
}

/// The index in [`MSS_TABLE`] for a peer that offered `peer_mss`.
pub fn mss_index(peer_mss: u16) -> usize {
    MSS_TABLE.iter().rposition(|&m| m <= peer_mss).unwrap_or(0)
}

/// The cookie: our initial sequence number for the SYN-ACK answering the
/// SYN (initial sequence number `peer_isn`) that `remote` sent to `local`,
/// naming MSS `MSS_TABLE[mss_idx]`.
pub fn make(
    key: &KeyedHash,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    peer_isn: SeqNumber,
    mss_idx: usize,
    now: Instant,
) -> SeqNumber {
    let count = counter(now);
    let low = h2(key, local, remote, count).wrapping_add(mss_idx as u32 & 3) & 0x00ff_ffff;
    SeqNumber(
        h1(key, local, remote)
            .wrapping_add(peer_isn.0)
            .wrapping_add(count << 24)
            .wrapping_add(low),
    )
}

/// Checks `cookie` (the peer's ACK number less one) for the connection
/// from `remote` (whose initial sequence number was `peer_isn`: its ACK's
/// sequence number less one) to `local`; the MSS it names if valid.
pub fn check(
    key: &KeyedHash,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    peer_isn: SeqNumber,
    cookie: SeqNumber,
    now: Instant,
) -> Option<u16> {
    let count = counter(now);
    let rest = cookie
        .0
        .wrapping_sub(h1(key, local, remote))
        .wrapping_sub(peer_isn.0);
    let age = count.wrapping_sub(rest >> 24) & 0xff;
    if age >= MAX_AGE {
        return None;
    }
    let made = count.wrapping_sub(age);
    let idx = rest.wrapping_sub(h2(key, local, remote, made)) & 0x00ff_ffff;
    MSS_TABLE.get(idx as usize).copied()
}

/// Our TSval for a cookie SYN-ACK: the clock's value `ts_now` with its low
/// bits replaced by the options (moved back a step if that put it ahead,
/// so our timestamps never go backwards).
pub fn ts_encode(ts_now: u32, wscale: Option<u8>, sack: bool) -> u32 {
    let mut options = wscale.map_or(TS_NO_WSCALE, |w| u32::from(w.min(14)));
    if sack {
        options |= TS_SACK;
    }
    let ts = (ts_now & !TS_MASK) | options;
    if (ts.wrapping_sub(ts_now) as i32) > 0 {
        ts.wrapping_sub(1 << TS_BITS)
    } else {
        ts
    }
}

/// The options our TSval carried, read back from the peer's TSecr: (the
/// peer's window scale, SACK permitted). Every value means something:
/// a forged TSecr can only ask for what any SYN could.
pub fn ts_decode(tsecr: u32) -> (Option<u8>, bool) {
    let sack = tsecr & TS_SACK != 0;
    match tsecr & 0xf {
        TS_NO_WSCALE => (None, sack),
        w => (Some(w as u8), sack),
    }
}

/// The SYN-ACK answering `syn` from a listener with settings `cfg` when
/// its backlog is full: its sequence number is the cookie, and it offers
/// window scaling and SACK only when the timestamps option can carry them
/// back (Linux's `tcp_conn_request` with `want_cookie`).
pub fn syn_ack(
    key: &KeyedHash,
    cfg: &TcpConfig,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    syn: &TcpRepr,
    now: Instant,
) -> TcpRepr {
    let idx = mss_index(syn.max_seg_size.unwrap_or(536));
    let cookie = make(key, local, remote, syn.seq_number, idx, now);
    let ts = syn.timestamp.filter(|_| cfg.timestamps);
    let ws = syn.window_scale.filter(|_| cfg.window_scaling && ts.is_some());
    let sack = cfg.sack && syn.sack_permitted && ts.is_some();
    TcpRepr {
        src_port: local.port(),
        dst_port: remote.port(),
        control: TcpControl::Syn,
        seq_number: cookie,
        ack_number: Some(syn.seq_number + 1),
        window_len: syn_window(cfg),
        max_seg_size: Some(cfg.mss),
        window_scale: ws.map(|_| cfg.rcv_scale()),
        sack_permitted: sack,
        timestamp: ts.map(|peer| TcpTimestamp {
            tsval: ts_encode(TcpSocket::ts_clock(cookie, now), ws, sack),
            tsecr: peer.tsval,
        }),
        ..TcpRepr::default()
    }
}

/// The window a SYN or SYN-ACK advertises (never scaled): the receive
/// buffer, up to 65,535 bytes.
fn syn_window(cfg: &TcpConfig) -> u16 {
    cfg.recv_buffer.min(u16::MAX as usize) as u16
}

impl TcpSocket {
    /// The connection a valid cookie ACK makes: in SYN-RECEIVED with its
    /// SYN-ACK sent (sequence number `ack - 1`), the options the cookie
    /// and the echoed timestamp carried restored, ready for `ack` itself to
    /// complete the handshake through the usual input path. `mss` is the
    /// one [`check`] returned.
    pub(crate) fn from_cookie(
        cfg: TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        ack: &TcpRepr,
        mss: u16,
        now: Instant,
    ) -> TcpSocket {
        let iss = ack.ack_number.unwrap_or_default() - 1;
        let (ws, sack) = match ack.timestamp {
            Some(ts) if cfg.timestamps => ts_decode(ts.tsecr),
            _ => (None, false),
        };
        // The SYN as the cookie remembers it.
        let syn = TcpRepr {
            src_port: remote.port(),
            dst_port: local.port(),
            control: TcpControl::Syn,
            seq_number: ack.seq_number - 1,
            window_len: ack.window_len,
            max_seg_size: Some(mss),
            window_scale: ws,
            sack_permitted: sack,
            timestamp: ack.timestamp.map(|ts| TcpTimestamp {
                tsval: ts.tsval,
                tsecr: 0,
            }),
            ..TcpRepr::default()
        };
        let mut s = TcpSocket::accept_syn(cfg, local, remote, &syn, iss, now);
        debug_assert_eq!(s.state, State::SynReceived);
        // The SYN-ACK went out (statelessly) with this window.
        s.snd_nxt = iss + 1;
        s.snd_max = iss + 1;
        s.rcv_adv = s.rcv_nxt + usize::from(syn_window(&cfg));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyedHash {
        KeyedHash::new([3; 16])
    }

    fn ends() -> (SocketAddrV4, SocketAddrV4) {
        (
            "198.18.0.2:80".parse().unwrap(),
            "198.18.1.7:40000".parse().unwrap(),
        )
    }

    #[test]
    fn a_cookie_checks_out_with_its_mss_until_it_expires() {
        let (l, r) = ends();
        let isn = SeqNumber(0xfff0_0000);
        let t = Instant::from_millis(1_000_000);
        for (idx, &mss) in MSS_TABLE.iter().enumerate() {
            let c = make(&key(), l, r, isn, idx, t);
            assert_eq!(check(&key(), l, r, isn, c, t), Some(mss));
            // Still good in the next period, not in the one after.
            assert_eq!(check(&key(), l, r, isn, c, t + PERIOD), Some(mss));
            assert_eq!(check(&key(), l, r, isn, c, t + PERIOD * 2), None);
            // Nor before it was made (a counter from the future).
            assert_eq!(check(&key(), l, r, isn, c, t - PERIOD), None);
        }
    }

    #[test]
    fn a_cookie_is_bound_to_the_key_the_tuple_and_the_peer_isn() {
        let (l, r) = ends();
        let isn = SeqNumber(12345);
        let t = Instant::from_millis(5_000);
        let c = make(&key(), l, r, isn, 3, t);
        assert_eq!(check(&KeyedHash::new([4; 16]), l, r, isn, c, t), None);
        let other: SocketAddrV4 = "198.18.1.7:40001".parse().unwrap();
        assert_eq!(check(&key(), l, other, isn, c, t), None);
        // As in Linux the ISN and the index add up, so a step of one in
        // either moves the index (a guess within the 4 values is the
        // 2^-22 chance): index 3 plus one, or index 0 minus one, is none.
        assert_eq!(check(&key(), l, r, isn, c + 1, t), None);
        let c0 = make(&key(), l, r, isn, 0, t);
        assert_eq!(check(&key(), l, r, isn + 1, c0, t), None);
    }

    #[test]
    fn guessed_cookies_rarely_pass() {
        // An attacker who knows the counter (the top 8 bits) still has to
        // hit 4 of 2^24 values: none of 100,000 guesses of the low 24 bits
        // passes (each would with a chance of 2^-22).
        let (l, r) = ends();
        let isn = SeqNumber(777);
        let t = Instant::from_millis(70_000);
        let good = make(&key(), l, r, isn, 2, t);
        let mut x = 0x9e37_79b9_u32;
        let passed = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                SeqNumber((good.0 & 0xff00_0000) | (x & 0x00ff_ffff))
            })
            .filter(|&c| c != good && check(&key(), l, r, isn, c, t).is_some())
            .count();
        assert!(passed <= 1, "{passed} of 100,000 guesses passed");
    }

    #[test]
    fn the_mss_index_rounds_down() {
        assert_eq!(mss_index(1460), 3);
        assert_eq!(mss_index(9000), 3);
        assert_eq!(mss_index(1459), 2);
        assert_eq!(mss_index(1300), 1);
        assert_eq!(mss_index(600), 0);
        assert_eq!(mss_index(48), 0, "less than 536: 536");
    }

    #[test]
    fn the_timestamp_carries_window_scale_and_sack_and_never_runs_ahead() {
        for now in [0u32, 63, 64, 1_000_000, u32::MAX] {
            for ws in [None, Some(0), Some(7), Some(14)] {
                for sack in [false, true] {
                    let ts = ts_encode(now, ws, sack);
                    assert!((ts.wrapping_sub(now) as i32) <= 0, "{ts} ahead of {now}");
                    assert!(now.wrapping_sub(ts) < 64);
                    assert_eq!(ts_decode(ts), (ws, sack));
                }
            }
        }
        assert_eq!(ts_decode(0x0e), (Some(14), false));
        assert_eq!(ts_decode(0x1f), (None, true));
        // Bit 5 (Linux's ECN bit) and the clock bits above are ignored.
        assert_eq!(ts_decode(0x7700_002d), (Some(13), false));
    }

    /// The peer's SYN, with `ws`, SACK and timestamps as asked.
    fn peer_syn(mss: u16, ws: Option<u8>, sack: bool, ts: bool) -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            control: TcpControl::Syn,
            seq_number: SeqNumber(0x8000_0000),
            window_len: 64240,
            max_seg_size: Some(mss),
            window_scale: ws,
            sack_permitted: sack,
            timestamp: ts.then_some(TcpTimestamp {
                tsval: 4242,
                tsecr: 0,
            }),
            ..TcpRepr::default()
        }
    }

    /// The peer's ACK of `syn_ack`, echoing its timestamp.
    fn peer_ack(syn: &TcpRepr, syn_ack: &TcpRepr) -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            control: TcpControl::None,
            seq_number: syn.seq_number + 1,
            ack_number: Some(syn_ack.seq_number + 1),
            window_len: 502,
            timestamp: syn_ack.timestamp.map(|t| TcpTimestamp {
                tsval: 4243,
                tsecr: t.tsval,
            }),
            ..TcpRepr::default()
        }
    }

    fn make_connection(syn: &TcpRepr, now: Instant) -> (TcpRepr, TcpSocket) {
        let (l, r) = ends();
        let cfg = TcpConfig::default();
        let syn_ack = syn_ack(&key(), &cfg, l, r, syn, now);
        let ack = peer_ack(syn, &syn_ack);
        let later = now + Duration::from_millis(30);
        let mss = check(
            &key(),
            l,
            r,
            ack.seq_number - 1,
            ack.ack_number.unwrap() - 1,
            later,
        )
        .unwrap();
        let mut s = TcpSocket::from_cookie(cfg, l, r, &ack, mss, later);
        let got = s.input(later, &ack, &[]);
        assert_eq!(got, super::super::Input::Done(super::super::Event::Established));
        assert_eq!(s.state, State::Established);
        (syn_ack, s)
    }

    #[test]
    fn a_cookie_connection_gets_back_mss_window_scale_sack_and_timestamps() {
        let now = Instant::from_millis(123_456);
        let syn = peer_syn(1400, Some(7), true, true);
        let (syn_ack, s) = make_connection(&syn, now);
        assert_eq!(syn_ack.window_scale, Some(TcpConfig::default().rcv_scale()));
        assert!(syn_ack.sack_permitted);
        assert_eq!(syn_ack.timestamp.unwrap().tsecr, 4242);
        assert_eq!(s.mss(), 1300, "the table's value below 1400");
        assert_eq!(s.snd_scale, 7);
        assert!(s.ws_ok && s.sack_ok);
        assert_eq!(s.ts_recent, Some(4243));
        assert_eq!(s.snd_wnd, 502 << 7, "the ACK's window, scaled");
        assert_eq!(s.snd_una, syn_ack.seq_number + 1);
        assert_eq!(s.rcv_nxt, syn.seq_number + 1);
        // Our clock never goes back behind the SYN-ACK's TSval.
        let tsval = syn_ack.timestamp.unwrap().tsval;
        assert!((s.ts_now(now).wrapping_sub(tsval) as i32) >= 0);
        // The window the SYN-ACK offered is still ours to honour.
        assert_eq!(
            s.rcv_adv.distance(s.rcv_nxt),
            i32::from(syn_ack.window_len),
            "the right edge the SYN-ACK advertised"
        );
    }

    #[test]
    fn without_timestamps_a_cookie_offers_no_window_scale_nor_sack() {
        let now = Instant::from_millis(9_000);
        let syn = peer_syn(1460, Some(7), true, false);
        let (syn_ack, s) = make_connection(&syn, now);
        assert_eq!(syn_ack.window_scale, None);
        assert!(!syn_ack.sack_permitted);
        assert_eq!(syn_ack.timestamp, None);
        assert_eq!(s.mss(), 1460);
        assert!(!s.ws_ok && !s.sack_ok);
        assert_eq!(s.snd_scale, 0);
        assert_eq!(s.ts_recent, None);
    }

    #[test]
    fn a_tiny_mss_is_rounded_up_to_the_smallest_cookie_mss() {
        let now = Instant::from_millis(9_000);
        let (_, s) = make_connection(&peer_syn(48, None, false, true), now);
        assert_eq!(s.mss(), 536);
    }
}
