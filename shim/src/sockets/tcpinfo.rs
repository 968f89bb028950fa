//! `getsockopt(TCP_INFO)` for a connection or listener on the stack: the
//! stack's [`TcpInfo`] in the layout of Linux's `struct tcp_info`, the
//! kernel's units (microseconds, segments) and state numbers.
//!
//! A listener reports, as Linux's does, `TCP_LISTEN` with its accept queue
//! in `tcpi_unacked` and its backlog in `tcpi_sacked`. Fields the stack
//! has no counterpart for (pacing, delivery rate, busy time) are zero.

use accel_stack::tcp::{State, TcpInfo};
use core::time::Duration;

/// Linux's `TCP_*` state numbers (`include/net/tcp_states.h`).
pub fn linux_state(s: State) -> u8 {
    match s {
        State::Established => 1,
        State::SynSent => 2,
        State::SynReceived => 3,
        State::FinWait1 => 4,
        State::FinWait2 => 5,
        State::TimeWait => 6,
        State::Closed => 7,
        State::CloseWait => 8,
        State::LastAck => 9,
        State::Listen => 10,
        State::Closing => 11,
    }
}

const TCP_CA_OPEN: u8 = 0;
const TCP_CA_RECOVERY: u8 = 3;
const TCP_CA_LOSS: u8 = 4;
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;
/// Linux's default `tcp_reordering`.
const REORDERING: u32 = 3;

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn zeroed() -> libc::tcp_info {
    // SAFETY: tcp_info is integers only: all zeros is a valid value.
    unsafe { core::mem::zeroed() }
}

/// A connection's `tcp_info`.
pub fn connection(i: &TcpInfo) -> libc::tcp_info {
    let mss = i.snd_mss.max(1);
    let mut t = zeroed();
    t.tcpi_state = linux_state(i.state);
    t.tcpi_ca_state = if i.retries > 0 {
        TCP_CA_LOSS
    } else if i.in_recovery {
        TCP_CA_RECOVERY
    } else {
        TCP_CA_OPEN
    };
    t.tcpi_retransmits = u8::try_from(i.retries).unwrap_or(u8::MAX);
    t.tcpi_backoff = u8::try_from(i.backoff).unwrap_or(u8::MAX);
    t.tcpi_options = if i.timestamps { TCPI_OPT_TIMESTAMPS } else { 0 }
        | if i.sack { TCPI_OPT_SACK } else { 0 }
        | if i.window_scale.is_some() {
            TCPI_OPT_WSCALE
        } else {
            0
        };
    if let Some((snd, rcv)) = i.window_scale {
        // The bit-fields tcpi_snd_wscale:4, tcpi_rcv_wscale:4 (x86-64:
        // the first in the low nibble).
        t.tcpi_snd_rcv_wscale = (snd & 0xf) | (rcv & 0xf) << 4;
    }
    t.tcpi_rto = us(i.rto);
    t.tcpi_ato = us(i.ato);
    t.tcpi_snd_mss = u32_of(i.snd_mss);
    t.tcpi_rcv_mss = u32_of(i.snd_mss.min(i.adv_mss));
    t.tcpi_unacked = u32_of(i.unacked);
    t.tcpi_pmtu = u32_of(i.adv_mss + 40);
    t.tcpi_rcv_ssthresh = u32_of(i.rcv_wnd);
    t.tcpi_rtt = i.srtt.map_or(0, us);
    t.tcpi_rttvar = us(i.rttvar);
    t.tcpi_snd_ssthresh = u32_of(i.ssthresh / mss);
    t.tcpi_snd_cwnd = u32_of(i.cwnd.div_ceil(mss));
    t.tcpi_advmss = u32_of(i.adv_mss);
    t.tcpi_reordering = REORDERING;
    t.tcpi_rcv_space = u32_of(i.rcv_space);
    t.tcpi_total_retrans = u32::try_from(i.total_retrans).unwrap_or(u32::MAX);
    t.tcpi_bytes_acked = i.bytes_acked;
    t.tcpi_bytes_received = i.bytes_received;
    t.tcpi_segs_out = u32::try_from(i.segs_out).unwrap_or(u32::MAX);
    t.tcpi_segs_in = u32::try_from(i.segs_in).unwrap_or(u32::MAX);
    t.tcpi_notsent_bytes = u32_of(i.notsent);
    t.tcpi_min_rtt = t.tcpi_rtt;
    t.tcpi_bytes_sent = i.bytes_sent;
    t.tcpi_snd_wnd = u32_of(i.snd_wnd);
    t.tcpi_rcv_wnd = u32_of(i.rcv_wnd);
    t
}

/// A listener's `tcp_info`: `queued` connections wait to be accepted, of
/// at most `backlog`.
pub fn listener(queued: usize, backlog: usize) -> libc::tcp_info {
    let mut t = zeroed();
    t.tcpi_state = linux_state(State::Listen);
    t.tcpi_unacked = u32_of(queued);
    t.tcpi_sacked = u32_of(backlog);
    t
}

/// The bytes of `t`, for `getsockopt` to copy out (as much of them as the
/// caller has room for).
pub fn bytes(t: &libc::tcp_info) -> &[u8] {
    // SAFETY: `t` is a plain-data struct, borrowed for the slice's
    // lifetime; every byte of it is initialised (zeroed first, padding
    // included, then fields written).
    unsafe {
        core::slice::from_raw_parts(
            (t as *const libc::tcp_info).cast::<u8>(),
            core::mem::size_of::<libc::tcp_info>(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TcpInfo {
        TcpInfo {
            state: State::Established,
            in_recovery: false,
            retries: 0,
            backoff: 0,
            timestamps: true,
            sack: true,
            window_scale: Some((7, 9)),
            rto: Duration::from_millis(204),
            ato: Duration::from_millis(40),
            snd_mss: 1448,
            adv_mss: 1460,
            unacked: 3,
            srtt: Some(Duration::from_micros(1234)),
            rttvar: Duration::from_micros(500),
            cwnd: 10 * 1448,
            ssthresh: 20 * 1448,
            snd_wnd: 65535,
            rcv_wnd: 131072,
            rcv_space: 262144,
            notsent: 17,
            total_retrans: 2,
            bytes_sent: 5000,
            bytes_acked: 4000,
            bytes_received: 3000,
            segs_out: 11,
            segs_in: 12,
        }
    }

    #[test]
    fn a_connection_in_linux_units() {
        let t = connection(&sample());
        assert_eq!(
            (t.tcpi_state, t.tcpi_ca_state, t.tcpi_options),
            (1, TCP_CA_OPEN, 7)
        );
        assert_eq!(t.tcpi_snd_rcv_wscale, 0x97);
        assert_eq!(
            (t.tcpi_rto, t.tcpi_ato, t.tcpi_rtt, t.tcpi_rttvar),
            (204_000, 40_000, 1234, 500)
        );
        assert_eq!((t.tcpi_snd_mss, t.tcpi_advmss, t.tcpi_unacked), (1448, 1460, 3));
        assert_eq!((t.tcpi_snd_cwnd, t.tcpi_snd_ssthresh), (10, 20));
        assert_eq!((t.tcpi_total_retrans, t.tcpi_notsent_bytes), (2, 17));
        assert_eq!(
            (t.tcpi_bytes_acked, t.tcpi_bytes_received, t.tcpi_bytes_sent),
            (4000, 3000, 5000)
        );
        assert_eq!((t.tcpi_segs_out, t.tcpi_segs_in), (11, 12));
        assert_eq!((t.tcpi_snd_wnd, t.tcpi_rcv_wnd), (65535, 131072));
        let lost = connection(&TcpInfo {
            retries: 2,
            backoff: 2,
            in_recovery: true,
            window_scale: None,
            timestamps: false,
            ..sample()
        });
        assert_eq!(
            (lost.tcpi_ca_state, lost.tcpi_retransmits, lost.tcpi_backoff),
            (TCP_CA_LOSS, 2, 2)
        );
        assert_eq!((lost.tcpi_options, lost.tcpi_snd_rcv_wscale), (TCPI_OPT_SACK, 0));
    }

    #[test]
    fn states_are_linuxs_numbers() {
        let all = [
            (State::Established, 1),
            (State::SynSent, 2),
            (State::SynReceived, 3),
            (State::FinWait1, 4),
            (State::FinWait2, 5),
            (State::TimeWait, 6),
            (State::Closed, 7),
            (State::CloseWait, 8),
            (State::LastAck, 9),
            (State::Listen, 10),
            (State::Closing, 11),
        ];
        for (s, n) in all {
            assert_eq!(linux_state(s), n, "{s:?}");
        }
    }

    #[test]
    fn a_listener_and_its_bytes() {
        let t = listener(3, 128);
        assert_eq!((t.tcpi_state, t.tcpi_unacked, t.tcpi_sacked), (10, 3, 128));
        let full = core::mem::size_of::<libc::tcp_info>();
        assert_eq!(bytes(&t).len(), full);
        assert_eq!(bytes(&t)[0], 10, "tcpi_state comes first");
    }
}
