//! A connection's image: what another stack needs to go on with a
//! connection that a listener took but the program never accepted, as
//! Linux's `tcp_migrate_req` moves such requests to another listener of a
//! `SO_REUSEPORT` group when theirs closes.
//!
//! Only such connections have an image: in SYN-RECEIVED, ESTABLISHED or
//! CLOSE-WAIT, having sent nothing but their SYN-ACK, with what they
//! received in order (at most [`MAX_DATA`] bytes) and the peer's FIN if it
//! came. Their state is then small and exact: the sequence numbers, the
//! options negotiated, the peer's window, and the bytes. Data held out of
//! order is left out (the peer sends it again: nothing acknowledged it
//! cumulatively), as are the RTT estimate and congestion state (a new
//! connection's are used).
//!
//! The encoding is a version byte, a fixed header (little-endian) and the
//! data; [`ConnImage::decode`] checks every field, so a damaged image is an
//! error, never a wrong connection.

use core::net::{Ipv4Addr, SocketAddrV4};

use super::{State, TcpConfig, TcpSocket};
use crate::time::Instant;
use crate::wire::{SeqNumber, TcpControl, TcpRepr, TcpTimestamp};

/// Most received bytes an image carries (a request waiting to be accepted
/// is usually far smaller; a connection holding more is not moved).
pub const MAX_DATA: usize = 32 * 1024;

/// The encoding's version.
const VERSION: u8 = 1;
/// The fixed header's length.
const HEADER: usize = 56;

/// What another stack needs to go on with a connection (see the module
/// docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnImage {
    /// Our end.
    pub local: SocketAddrV4,
    /// The peer's end.
    pub remote: SocketAddrV4,
    /// The handshake completed (else the connection is in SYN-RECEIVED).
    pub established: bool,
    /// Our initial sequence number.
    pub iss: u32,
    /// The peer's.
    pub irs: u32,
    /// The MSS we send with.
    pub mss: u16,
    /// The peer's window scale, if both sides scale.
    pub snd_scale: Option<u8>,
    /// Ours.
    pub rcv_scale: u8,
    /// SACK permitted both ways.
    pub sack_ok: bool,
    /// The peer's last timestamp, if timestamps are on.
    pub ts_recent: Option<u32>,
    /// What our timestamp clock read when the image was made.
    pub ts_val: u32,
    /// The peer's window (bytes, scaled).
    pub snd_wnd: u32,
    /// The segment that last updated it (sequence and acknowledgement).
    pub snd_wl1: u32,
    /// See `snd_wl1`.
    pub snd_wl2: u32,
    /// The right edge of the window we advertised.
    pub rcv_adv: u32,
    /// The peer's FIN came (after `data`).
    pub fin: bool,
    /// What the peer sent, in order, not yet read.
    pub data: Vec<u8>,
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Too short, a wrong version, or a field out of its range.
    Malformed,
    /// The data does not fit the receive buffer here.
    TooLarge,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl ConnImage {
    /// The encoded image.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER + self.data.len());
        let flags = u8::from(self.established)
            | u8::from(self.snd_scale.is_some()) << 1
            | u8::from(self.sack_ok) << 2
            | u8::from(self.ts_recent.is_some()) << 3
            | u8::from(self.fin) << 4;
        b.push(VERSION);
        b.push(flags);
        b.push(self.snd_scale.unwrap_or(0));
        b.push(self.rcv_scale);
        b.extend_from_slice(&self.local.ip().octets());
        b.extend_from_slice(&self.local.port().to_le_bytes());
        b.extend_from_slice(&self.remote.ip().octets());
        b.extend_from_slice(&self.remote.port().to_le_bytes());
        b.extend_from_slice(&self.mss.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        for v in [
            self.iss,
            self.irs,
            self.ts_recent.unwrap_or(0),
            self.ts_val,
            self.snd_wnd,
            self.snd_wl1,
            self.snd_wl2,
            self.rcv_adv,
            self.data.len() as u32,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(b.len(), HEADER);
        b.extend_from_slice(&self.data);
        b
    }

    /// The image `b` encodes.
    pub fn decode(b: &[u8]) -> Result<ConnImage, ImageError> {
        Self::decode_opt(b).ok_or(ImageError::Malformed)
    }

    fn decode_opt(b: &[u8]) -> Option<ConnImage> {
        if *b.first()? != VERSION || b.len() < HEADER {
            return None;
        }
        let (flags, ws, rs) = (*b.get(1)?, *b.get(2)?, *b.get(3)?);
        if flags & !0x1f != 0 || ws > 14 || rs > 14 {
            return None;
        }
        let addr = |at: usize| -> Option<SocketAddrV4> {
            let ip: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
            Some(SocketAddrV4::new(Ipv4Addr::from(ip), u16_at(b, at + 4)?))
        };
        let word = |i: usize| u32_at(b, 20 + 4 * i);
        let len = word(8)? as usize;
        if len > MAX_DATA || b.len() != HEADER + len {
            return None;
        }
        let mss = u16_at(b, 16)?;
        if mss < super::MIN_MSS {
            return None;
        }
        // One encoding per image: what a flag leaves unused is zero.
        if u16_at(b, 18)? != 0 || (flags & 2 == 0 && ws != 0) || (flags & 8 == 0 && word(2)? != 0) {
            return None;
        }
        let established = flags & 1 != 0;
        let fin = flags & 0x10 != 0;
        if !established && (fin || len > 0) {
            return None;
        }
        Some(ConnImage {
            local: addr(4)?,
            remote: addr(10)?,
            established,
            iss: word(0)?,
            irs: word(1)?,
            mss,
            snd_scale: (flags & 2 != 0).then_some(ws),
            rcv_scale: rs,
            sack_ok: flags & 4 != 0,
            ts_recent: (flags & 8 != 0).then_some(word(2)?),
            ts_val: word(3)?,
            snd_wnd: word(4)?,
            snd_wl1: word(5)?,
            snd_wl2: word(6)?,
            rcv_adv: word(7)?,
            fin,
            data: b.get(HEADER..)?.to_vec(),
        })
    }
}

impl TcpSocket {
    /// This connection's image at `now`, if it has one (see the module
    /// docs): a connection the program never saw, in SYN-RECEIVED,
    /// ESTABLISHED or CLOSE-WAIT, that sent nothing but its SYN-ACK.
    pub fn image(&self, now: Instant) -> Option<ConnImage> {
        let established = match self.state {
            State::SynReceived => false,
            State::Established | State::CloseWait => true,
            _ => return None,
        };
        let sent_nothing = self.snd_max.distance(self.iss) <= 1
            && self.tx.is_empty()
            && !self.fin_queued
            && self.fin_sent.is_none();
        if !sent_nothing || self.error.is_some() || self.reset || self.rd_shut {
            return None;
        }
        let (a, b) = self.rx.peek(MAX_DATA + 1);
        if a.len() + b.len() > MAX_DATA {
            return None;
        }
        let data = [a, b].concat();
        Some(ConnImage {
            local: self.local,
            remote: self.remote,
            established,
            iss: self.iss.0,
            irs: self.irs.0,
            mss: self.mss as u16,
            snd_scale: self.ws_ok.then_some(self.snd_scale),
            rcv_scale: if self.ws_ok { self.rcv_scale } else { 0 },
            sack_ok: self.sack_ok,
            ts_recent: self.ts_recent,
            ts_val: self.ts_now(now),
            snd_wnd: self.snd_wnd.min(u32::MAX as usize) as u32,
            snd_wl1: self.snd_wl1.0,
            snd_wl2: self.snd_wl2.0,
            rcv_adv: self.rcv_adv.0,
            fin: established && self.fin_received,
            data,
        })
    }

    /// The connection `image` describes, with `cfg` (its listener's) for
    /// everything the image does not carry. In SYN-RECEIVED its SYN-ACK
    /// counts as sent (the retransmission timer runs); established, an ACK
    /// is due (a duplicate, harmless: it teaches the device the flow's new
    /// queue).
    pub fn from_image(cfg: TcpConfig, image: &ConnImage, now: Instant) -> Result<TcpSocket, ImageError> {
        let ws_wanted = image.snd_scale.is_some();
        // The SYN as it came, for the options to be taken as they were.
        let syn = TcpRepr {
            src_port: image.remote.port(),
            dst_port: image.local.port(),
            control: TcpControl::Syn,
            seq_number: SeqNumber(image.irs),
            // The SYN's window, before the handshake ended (never scaled).
            window_len: if image.established {
                0
            } else {
                image.snd_wnd.min(u32::from(u16::MAX)) as u16
            },
            max_seg_size: Some(image.mss),
            window_scale: image.snd_scale,
            sack_permitted: image.sack_ok,
            timestamp: image.ts_recent.map(|tsval| TcpTimestamp { tsval, tsecr: 0 }),
            ..TcpRepr::default()
        };
        let iss = SeqNumber(image.iss);
        let mut s = TcpSocket::accept_syn(cfg, image.local, image.remote, &syn, iss, now);
        if s.ws_ok != ws_wanted
            || s.sack_ok != image.sack_ok
            || s.ts_recent.is_some() != image.ts_recent.is_some()
            || s.mss != usize::from(image.mss)
        {
            // This listener would not have negotiated the same: its
            // segments would not mean what the peer thinks.
            return Err(ImageError::Malformed);
        }
        if s.ws_ok {
            s.rcv_scale = image.rcv_scale;
        }
        // Our timestamp clock goes on from where it was.
        s.ts_offset = image.ts_val.wrapping_sub((now.nanos() / 1_000_000) as u32);
        if !image.established {
            // The SYN-ACK went out from the other stack: the peer's ACK
            // of it completes the handshake here; a retransmission is
            // due if it does not come.
            s.snd_nxt = iss + 1;
            s.snd_max = iss + 1;
            s.rcv_adv = Self::advertised(image, s.rcv_nxt);
            return Ok(s);
        }
        if image.data.len() > s.rx.window() {
            return Err(ImageError::TooLarge);
        }
        s.state = State::Established;
        s.snd_una = iss + 1;
        s.snd_nxt = iss + 1;
        s.snd_max = iss + 1;
        s.high_rxt = iss + 1;
        s.rto_at = None;
        s.snd_wnd = image.snd_wnd as usize;
        s.max_snd_wnd = s.snd_wnd;
        s.snd_wl1 = SeqNumber(image.snd_wl1);
        s.snd_wl2 = SeqNumber(image.snd_wl2);
        let took = s.rx.write_at(0, &image.data);
        s.rcv_nxt = s.irs + 1 + took;
        if image.fin {
            s.fin_received = true;
            s.rcv_nxt += 1;
            s.state = State::CloseWait;
        }
        s.rcv_adv = Self::advertised(image, s.rcv_nxt);
        s.last_ack_sent = s.rcv_nxt;
        s.ack_now = true;
        s.defer_deadline = None;
        Ok(s)
    }

    /// The right edge of the window advertised: the image's (a window
    /// once advertised never shrinks), at least `rcv_nxt`.
    fn advertised(image: &ConnImage, rcv_nxt: SeqNumber) -> SeqNumber {
        let adv = SeqNumber(image.rcv_adv);
        if adv.distance(rcv_nxt) > 0 {
            adv
        } else {
            rcv_nxt
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ConnImage {
        ConnImage {
            local: "198.18.0.2:80".parse().unwrap(),
            remote: "198.18.0.1:40000".parse().unwrap(),
            established: true,
            iss: 0xffff_fff0,
            irs: 7,
            mss: 1460,
            snd_scale: Some(7),
            rcv_scale: 9,
            sack_ok: true,
            ts_recent: Some(12345),
            ts_val: 999,
            snd_wnd: 64240 << 7,
            snd_wl1: 8,
            snd_wl2: 0xffff_fff1,
            rcv_adv: 70000,
            fin: true,
            data: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        }
    }

    #[test]
    fn an_image_goes_there_and_back() {
        let i = sample();
        assert_eq!(ConnImage::decode(&i.encode()), Ok(i.clone()));
        let j = ConnImage {
            established: false,
            snd_scale: None,
            ts_recent: None,
            fin: false,
            data: Vec::new(),
            ..i
        };
        assert_eq!(ConnImage::decode(&j.encode()), Ok(j));
    }

    #[test]
    fn a_damaged_image_is_refused() {
        let b = sample().encode();
        for cut in 0..b.len() {
            assert_eq!(
                ConnImage::decode(&b[..cut]),
                Err(ImageError::Malformed),
                "cut at {cut}"
            );
        }
        let mut v = b.clone();
        v[0] = 2;
        assert!(ConnImage::decode(&v).is_err(), "version");
        let mut v = b.clone();
        v[2] = 15;
        assert!(ConnImage::decode(&v).is_err(), "window scale past 14");
        let mut v = b.clone();
        v[1] &= !1;
        assert!(
            ConnImage::decode(&v).is_err(),
            "data or FIN before the handshake ended"
        );
        let mut v = b.clone();
        v[18] = 1;
        assert!(ConnImage::decode(&v).is_err(), "padding not zero");
        let mut v = b.clone();
        v.push(0);
        assert!(ConnImage::decode(&v).is_err(), "a byte past the data");
    }

    #[test]
    fn an_image_makes_the_connection_it_describes() {
        let i = ConnImage {
            rcv_scale: TcpConfig::default().rcv_scale(),
            ..sample()
        };
        let now = Instant::from_millis(50_000);
        let mut s = TcpSocket::from_image(TcpConfig::default(), &i, now).unwrap();
        assert_eq!(s.state, State::CloseWait, "the peer's FIN came");
        assert_eq!(s.snd_nxt, SeqNumber(i.iss) + 1);
        assert_eq!(s.snd_wnd, i.snd_wnd as usize);
        assert_eq!(s.rcv_nxt, SeqNumber(i.irs) + 1 + i.data.len() + 1);
        assert_eq!(s.ts_now(now), i.ts_val, "our timestamp clock goes on");
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &i.data[..]);
        assert_eq!(s.recv(&mut buf), Ok(0), "then the end of the stream");
        // And its own image says the same, less what was read.
        let again = TcpSocket::from_image(TcpConfig::default(), &i, now).unwrap();
        assert_eq!(again.image(now), Some(i.clone()));
        // A listener with a smaller receive buffer cannot hold the data.
        let small = TcpConfig {
            recv_buffer: 8,
            ..TcpConfig::default()
        };
        assert!(TcpSocket::from_image(small, &i, now).is_err());
    }
}
