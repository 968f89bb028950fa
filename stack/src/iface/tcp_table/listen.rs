//! How a listener takes a connection request, as Linux does with
//! `tcp_syncookies = 1`: a SYN makes an embryonic connection (SYN-RECEIVED)
//! while the SYN backlog has room; once it is full, the SYN is answered
//! with a SYN cookie ([`crate::tcp::syncookie`]) and nothing is kept, so
//! a flood of SYNs from spoofed addresses that will never answer cannot
//! lock legitimate clients out. A SYN is dropped only when the accept
//! queue itself is full (the program is not accepting).
//!
//! For [`LIFETIME`] after the last cookie, an ACK for no connection that
//! reaches the listener is checked for a cookie: a valid one makes the
//! connection there and then (the ACK then completes the handshake through
//! the usual input path); an invalid one is the caller's to count and
//! reset. Outside that time no ACK is taken for a cookie, so a blind
//! attacker gets no guesses while cookies are not in use.

use core::net::SocketAddrV4;

use super::{Entry, TcpHandle, TcpTable};
use crate::iface::hash::initial_seq;
use crate::tcp::syncookie::{self, LIFETIME};
use crate::tcp::TcpSocket;
use crate::time::Instant;
use crate::wire::{TcpControl, TcpRepr};

/// What became of a SYN.
#[derive(Debug)]
pub(crate) enum SynOutcome {
    /// An embryonic connection answers it.
    Queued(TcpHandle),
    /// The SYN backlog is full: send this SYN-ACK, which carries a cookie,
    /// with this TOS byte (the listener's).
    Cookie(TcpRepr, u8),
    /// Dropped: the accept queue is full (or the SYN backlog, with cookies
    /// off).
    Dropped,
    /// No listener for it.
    NoListener,
}

/// What an ACK for no connection was to the listener.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CookieAck {
    /// Not a cookie's ACK: no listener, or none that sent cookies lately,
    /// or not a bare ACK.
    NotACookie,
    /// A listener sent cookies lately and this ACK carries none of them.
    Bad,
    /// A valid cookie, but the accept queue is full: dropped (the peer
    /// retransmits, as after Linux's listen overflow).
    Full,
    /// A valid cookie: the connection, in SYN-RECEIVED, for the ACK to
    /// complete.
    Made(TcpHandle),
}

impl TcpTable {
    /// A SYN for a listener: an embryonic connection if the backlogs allow,
    /// else a cookie SYN-ACK, else a drop (see the module docs).
    pub(crate) fn on_syn(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        syn: &TcpRepr,
        now: Instant,
    ) -> SynOutcome {
        let Some(lh) = self.listener_for(local, remote) else {
            return SynOutcome::NoListener;
        };
        let cookies = self.syn_cookies;
        let key = self.key;
        let Some(Entry::Listener(l)) = self.get_mut(lh) else {
            return SynOutcome::NoListener;
        };
        if l.accept_queue.len() >= l.backlog {
            return SynOutcome::Dropped;
        }
        if l.embryonic >= l.backlog {
            if !cookies {
                return SynOutcome::Dropped;
            }
            l.cookies_at = Some(now);
            let syn_ack = syncookie::syn_ack(&key, &l.template, local, remote, syn, now);
            return SynOutcome::Cookie(syn_ack, l.template.tos);
        }
        l.embryonic += 1;
        let cfg = l.template;
        let iss = initial_seq(&self.key, local, remote, now);
        let sock = Box::new(TcpSocket::accept_syn(cfg, local, remote, syn, iss, now));
        let h = self.alloc(Entry::Conn {
            sock,
            parent: Some(lh),
        });
        *self.ports.entry(local.port()).or_insert(0) += 1;
        self.conns.insert((local, remote), h);
        self.schedule(h);
        SynOutcome::Queued(h)
    }

    /// The listener and the MSS of the cookie `seg` carries, if `seg` is
    /// a bare ACK for a listener that sent cookies lately; the MSS is
    /// `None` when the cookie is not valid.
    fn cookie_of(
        &self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: &TcpRepr,
        now: Instant,
    ) -> Option<(TcpHandle, Option<u16>)> {
        let ack = seg.ack_number?;
        if !matches!(seg.control, TcpControl::None | TcpControl::Psh | TcpControl::Fin) {
            return None;
        }
        let lh = self.listener_for(local, remote)?;
        let Some(Entry::Listener(l)) = self.get(lh) else {
            return None;
        };
        let recent = l.cookies_at.is_some_and(|t| now.saturating_since(t) < LIFETIME);
        if !recent {
            return None;
        }
        let mss = syncookie::check(&self.key, local, remote, seg.seq_number - 1, ack - 1, now);
        Some((lh, mss))
    }

    /// Whether `seg`, for no connection here, is the ACK of a valid cookie
    /// of one of our listeners (so this table would make its connection).
    pub(crate) fn takes_cookie(
        &self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: &TcpRepr,
        now: Instant,
    ) -> bool {
        matches!(self.cookie_of(local, remote, seg, now), Some((_, Some(_))))
    }

    /// An ACK for no connection: makes the connection if it carries a
    /// valid cookie (see [`CookieAck`]).
    pub(crate) fn cookie_ack(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        seg: &TcpRepr,
        now: Instant,
    ) -> CookieAck {
        let (lh, mss) = match self.cookie_of(local, remote, seg, now) {
            None => return CookieAck::NotACookie,
            Some((_, None)) => return CookieAck::Bad,
            Some((lh, Some(mss))) => (lh, mss),
        };
        let Some(Entry::Listener(l)) = self.get_mut(lh) else {
            return CookieAck::NotACookie;
        };
        if l.accept_queue.len() >= l.backlog {
            return CookieAck::Full;
        }
        // Counted as embryonic until the ACK establishes it, as any other.
        l.embryonic += 1;
        let sock = Box::new(TcpSocket::from_cookie(l.template, local, remote, seg, mss, now));
        let h = self.alloc(Entry::Conn {
            sock,
            parent: Some(lh),
        });
        *self.ports.entry(local.port()).or_insert(0) += 1;
        self.conns.insert((local, remote), h);
        CookieAck::Made(h)
    }
}
