//! UDP sockets: bind, connect, send to, receive from, with bounded queues.
//!
//! Received datagrams wait in a queue bounded in bytes (`SO_RCVBUF`); a
//! datagram that does not fit is dropped and counted, as on Linux. Datagrams
//! to send wait in a queue bounded the same way (`SO_SNDBUF`) until the
//! interface's next poll; a full queue makes `send_to` return `EAGAIN`. A
//! connected socket only receives from its peer, and an ICMP port
//! unreachable from that peer makes the next call fail with `ECONNREFUSED`.

use core::net::SocketAddrV4;
use core::task::Waker;
use std::collections::VecDeque;

use crate::error::{Errno, Result};
use crate::tcp::Readiness;
use crate::time::Instant;

/// Largest UDP payload over IPv4 without fragmentation support: we do not
/// fragment, so the MTU bounds it (checked by the interface).
pub const MAX_PAYLOAD: usize = 65507;

/// Counters of one UDP socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams received and queued.
    pub rx_datagrams: u64,
    /// Datagrams dropped because the receive queue was full.
    pub rx_dropped: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
}

/// A UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    pub(crate) local: Option<SocketAddrV4>,
    pub(crate) remote: Option<SocketAddrV4>,
    rx: VecDeque<(SocketAddrV4, Vec<u8>)>,
    /// When each datagram of `rx` arrived (same order).
    rx_at: VecDeque<Instant>,
    rx_bytes: usize,
    rx_cap: usize,
    pub(crate) tx: VecDeque<(SocketAddrV4, Vec<u8>)>,
    tx_bytes: usize,
    tx_cap: usize,
    pub(crate) error: Option<Errno>,
    tick: u64,
    rx_waker: Option<Waker>,
    tx_waker: Option<Waker>,
    pub(crate) stats: UdpStats,
    tos: u8,
}

impl UdpSocket {
    /// A socket with the given queue sizes in bytes.
    pub fn new(rx_cap: usize, tx_cap: usize) -> UdpSocket {
        UdpSocket {
            local: None,
            remote: None,
            rx: VecDeque::new(),
            rx_at: VecDeque::new(),
            rx_bytes: 0,
            rx_cap,
            tx: VecDeque::new(),
            tx_bytes: 0,
            tx_cap,
            error: None,
            tick: 0,
            rx_waker: None,
            tx_waker: None,
            stats: UdpStats::default(),
            tos: 0,
        }
    }

    /// `IP_TOS`: the TOS byte of every datagram sent from now on.
    pub fn set_tos(&mut self, tos: u8) {
        self.tos = tos;
    }

    /// The TOS byte datagrams carry.
    pub fn tos(&self) -> u8 {
        self.tos
    }

    /// The bound address.
    pub fn local(&self) -> Option<SocketAddrV4> {
        self.local
    }

    /// The connected peer.
    pub fn remote(&self) -> Option<SocketAddrV4> {
        self.remote
    }

    /// Counters.
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Queues a datagram for `dst` (or the connected peer). `EDESTADDRREQ`
    /// without either, `EINVAL` for port 0, `EMSGSIZE` if it is too large, `EAGAIN` when the
    /// send queue is full, a pending `ECONNREFUSED` once.
    pub fn send_to(&mut self, data: &[u8], dst: Option<SocketAddrV4>) -> Result<usize> {
        if dst.is_some_and(|d| d.port() == 0) {
            // As Linux's udp_sendmsg: no datagram to port 0.
            return Err(Errno::EINVAL);
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let dst = dst.or(self.remote).ok_or(Errno::EDESTADDRREQ)?;
        if data.len() > MAX_PAYLOAD {
            return Err(Errno::EMSGSIZE);
        }
        if self.tx_bytes + data.len() > self.tx_cap && !self.tx.is_empty() {
            return Err(Errno::EAGAIN);
        }
        self.tx_bytes += data.len();
        self.tx.push_back((dst, data.to_vec()));
        Ok(data.len())
    }

    /// Takes the next datagram: `(bytes copied, sender, full length)`; the
    /// rest of a datagram longer than `buf` is discarded (as `recvfrom`
    /// does; the full length lets the caller report `MSG_TRUNC`).
    pub fn recv_from(&mut self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4, usize)> {
        self.recv_with(buf, false)
    }

    /// Like [`Self::recv_from`] but leaves the datagram queued (`MSG_PEEK`).
    pub fn peek_from(&mut self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4, usize)> {
        self.recv_with(buf, true)
    }

    fn recv_with(&mut self, buf: &mut [u8], peek: bool) -> Result<(usize, SocketAddrV4, usize)> {
        let Some((src, data)) = self.rx.front() else {
            return Err(self.error.take().unwrap_or(Errno::EAGAIN));
        };
        let (src, full) = (*src, data.len());
        let n = full.min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        if !peek {
            self.rx.pop_front();
            self.rx_at.pop_front();
            self.rx_bytes -= full;
            self.tick += 1;
        }
        Ok((n, src, full))
    }

    /// Length of the next datagram (`FIONREAD`), 0 if none.
    pub fn next_len(&self) -> usize {
        self.rx.front().map_or(0, |(_, d)| d.len())
    }

    /// When the next datagram arrived (`None`: none is queued), so that a
    /// program reading a socket present in several stacks (one per queue
    /// pair) takes the datagrams in the order they came.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.rx_at.front().copied()
    }

    /// Accepts a datagram from the network; false if the queue is full.
    #[cfg(test)]
    pub(crate) fn deliver(&mut self, src: SocketAddrV4, data: &[u8]) -> bool {
        self.deliver_at(src, data, Instant::from_nanos(0))
    }

    /// Accepts a datagram from the network that arrived at `now`; false if
    /// the queue is full.
    pub(crate) fn deliver_at(&mut self, src: SocketAddrV4, data: &[u8], now: Instant) -> bool {
        if let Some(r) = self.remote {
            if r != src {
                return true; // not for a connected socket: silently ignored
            }
        }
        if self.rx_bytes + data.len() > self.rx_cap && !self.rx.is_empty() {
            self.stats.rx_dropped += 1;
            return false;
        }
        self.rx_bytes += data.len();
        self.rx.push_back((src, data.to_vec()));
        self.rx_at.push_back(now);
        self.stats.rx_datagrams += 1;
        self.tick += 1;
        if let Some(w) = self.rx_waker.take() {
            w.wake();
        }
        true
    }

    /// Takes the next datagram to transmit.
    pub(crate) fn next_tx(&mut self) -> Option<(SocketAddrV4, Vec<u8>)> {
        let d = self.tx.pop_front()?;
        self.tx_bytes -= d.1.len();
        self.stats.tx_datagrams += 1;
        self.tick += 1;
        if let Some(w) = self.tx_waker.take() {
            w.wake();
        }
        Some(d)
    }

    /// Puts back a datagram the device had no room for.
    pub(crate) fn unsend(&mut self, d: (SocketAddrV4, Vec<u8>)) {
        self.tx_bytes += d.1.len();
        self.stats.tx_datagrams -= 1;
        self.tx.push_front(d);
    }

    /// An ICMP error about traffic to `peer` (connected sockets report it).
    pub(crate) fn icmp_error(&mut self, peer: SocketAddrV4, e: Errno) {
        if self.remote == Some(peer) {
            self.error = Some(e);
            self.tick += 1;
            if let Some(w) = self.rx_waker.take() {
                w.wake();
            }
        }
    }

    /// What the socket is ready for.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            readable: !self.rx.is_empty() || self.error.is_some(),
            writable: self.tx_bytes < self.tx_cap,
            read_closed: false,
            hangup: false,
            error: self.error.is_some(),
            tick: self.tick,
        }
    }

    /// Wakes `w` when a datagram arrives.
    pub fn register_recv_waker(&mut self, w: &Waker) {
        self.rx_waker = Some(w.clone());
    }

    /// Wakes `w` when send space frees up.
    pub fn register_send_waker(&mut self, w: &Waker) {
        self.tx_waker = Some(w.clone());
    }

    /// Whether datagrams wait to be transmitted.
    pub(crate) fn has_tx(&self) -> bool {
        !self.tx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddrV4 {
        SocketAddrV4::new([198, 18, 0, 1].into(), p)
    }

    #[test]
    fn each_datagram_keeps_its_arrival_time_until_read() {
        let mut s = UdpSocket::new(100, 100);
        assert_eq!(s.next_arrival(), None);
        assert!(s.deliver_at(addr(1), b"a", Instant::from_millis(5)));
        assert!(s.deliver_at(addr(1), b"b", Instant::from_millis(7)));
        assert_eq!(s.next_arrival(), Some(Instant::from_millis(5)));
        let mut b = [0u8; 4];
        s.peek_from(&mut b).unwrap();
        assert_eq!(
            s.next_arrival(),
            Some(Instant::from_millis(5)),
            "a peek takes nothing"
        );
        s.recv_from(&mut b).unwrap();
        assert_eq!(s.next_arrival(), Some(Instant::from_millis(7)));
        s.recv_from(&mut b).unwrap();
        assert_eq!(s.next_arrival(), None);
    }

    #[test]
    fn queues_are_bounded_and_fifo() {
        let mut s = UdpSocket::new(10, 10);
        assert!(s.deliver(addr(1), b"hello"));
        assert!(s.deliver(addr(2), b"world"));
        assert!(!s.deliver(addr(3), b"!"), "over the receive bound");
        assert_eq!(s.stats().rx_dropped, 1);
        let mut b = [0u8; 3];
        assert_eq!(
            s.recv_from(&mut b),
            Ok((3, addr(1), 5)),
            "truncated, full length reported"
        );
        let mut b = [0u8; 16];
        assert_eq!(s.peek_from(&mut b), Ok((5, addr(2), 5)));
        assert_eq!(s.recv_from(&mut b), Ok((5, addr(2), 5)));
        assert_eq!(s.recv_from(&mut b), Err(Errno::EAGAIN));
        assert_eq!(s.send_to(b"x", None), Err(Errno::EDESTADDRREQ));
        assert_eq!(s.send_to(b"0123456789", Some(addr(9))), Ok(10));
        assert_eq!(s.send_to(b"x", Some(addr(9))), Err(Errno::EAGAIN));
        assert!(!s.readiness().writable);
        assert_eq!(s.next_tx().map(|d| d.1.len()), Some(10));
        assert!(s.readiness().writable);
    }

    #[test]
    fn connected_sockets_filter_and_report_refusal() {
        let mut s = UdpSocket::new(100, 100);
        s.remote = Some(addr(53));
        s.deliver(addr(54), b"stranger");
        assert!(!s.readiness().readable);
        s.icmp_error(addr(53), Errno::ECONNREFUSED);
        assert!(s.readiness().error);
        assert_eq!(s.send_to(b"q", None), Err(Errno::ECONNREFUSED));
        assert_eq!(s.send_to(b"q", None), Ok(1));
        assert_eq!(s.send_to(&vec![0; MAX_PAYLOAD + 1], None), Err(Errno::EMSGSIZE));
    }

    #[test]
    fn no_datagram_to_port_0() {
        // Found by the iface_input fuzz target: a datagram to port 0 went
        // out, one no receiver (our own parser included) accepts. Linux's
        // udp_sendmsg refuses it with EINVAL.
        let mut s = UdpSocket::new(100, 100);
        assert_eq!(s.send_to(b"x", Some(addr(0))), Err(Errno::EINVAL));
        assert!(!s.has_tx());
    }
}
