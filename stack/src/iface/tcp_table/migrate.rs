//! Connections a closing listener leaves to another stack, as Linux's
//! `tcp_migrate_req` hands the requests of a closing `SO_REUSEPORT`
//! listener to the rest of its group.
//!
//! When several processes share a port (one stack each, each with a
//! listener of its own on the same address), a process whose program
//! closes its listener while the others go on (an nginx reload: the old
//! workers close theirs as the new ones start) must not reset what its
//! listener took and the program never accepted: on the kernel those
//! connections sit in the one listening socket all the workers share, and
//! a new worker accepts them. [`TcpTable::close_keeping`] closes the
//! listener but keeps its connections *adrift*: alive (they acknowledge,
//! receive and complete their handshakes) with nobody to accept them.
//! [`TcpTable::export_adrift`] hands each one's image
//! ([`crate::tcp::image`]) to a caller that sends it to a stack with a
//! listener on the port, and forgets it silently once it is sent;
//! `Interface::tcp_import` there (which checks the addresses are its
//! own) makes the connection again and queues it
//! for `accept` (or back in SYN-RECEIVED). A connection adrift longer than
//! [`ADRIFT_MAX`] is reset, as the listener's close would have.

use core::time::Duration;

use super::{Entry, TcpHandle, TcpTable};
use crate::error::{Errno, Result};
use crate::tcp::flight::Kind as FlightKind;
use crate::tcp::image::{ConnImage, ImageError};
use crate::tcp::TcpSocket;
use crate::time::Instant;

/// How long a connection may stay adrift before it is reset.
pub const ADRIFT_MAX: Duration = Duration::from_secs(10);

impl TcpTable {
    /// Closes listener `h`, keeping the connections it took and nobody
    /// accepted (those in its accept queue and those still in the
    /// handshake) adrift (see the module docs); how many. Any other
    /// socket closes as with [`TcpTable::close`].
    pub fn close_keeping(&mut self, h: TcpHandle, now: Instant) -> Result<usize> {
        let Some(Entry::Listener(l)) = self.get_mut(h) else {
            return self.close(h, now).map(|()| 0);
        };
        l.accept_times.clear();
        l.embryonic = 0;
        // The accept queue's first, in its order; then those still in the
        // handshake.
        let mut children: Vec<TcpHandle> = l.accept_queue.drain(..).collect();
        let embryonic: Vec<TcpHandle> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.entry {
                Some(Entry::Conn { parent: Some(p), .. }) if *p == h => Some(TcpHandle {
                    idx: i as u32,
                    gen: s.gen,
                }),
                _ => None,
            })
            .filter(|c| !children.contains(c))
            .collect();
        children.extend(embryonic);
        for &c in &children {
            if let Some(Entry::Conn { sock, parent }) = self.get_mut(c) {
                // Nobody's: freed by the machinery once it ends.
                *parent = None;
                sock.orphan = true;
            }
            self.adrift.push((c, now));
        }
        self.close(h, now)?;
        Ok(children.len())
    }

    /// Drops the adrift entries whose connection has ended.
    fn prune_adrift(&mut self) {
        let mut adrift = std::mem::take(&mut self.adrift);
        adrift.retain(|&(c, _)| matches!(self.get(c), Some(Entry::Conn { parent: None, .. })));
        self.adrift = adrift;
    }

    /// How many connections are adrift.
    pub fn adrift_len(&mut self) -> usize {
        self.prune_adrift();
        self.adrift.len()
    }

    /// The local ports of the connections adrift, each once.
    pub fn adrift_ports(&mut self) -> Vec<u16> {
        self.prune_adrift();
        let mut ports: Vec<u16> = self
            .adrift
            .iter()
            .filter_map(|&(c, _)| Some(self.socket(c)?.local().port()))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Offers the image of each connection adrift on local port `port` to
    /// `send`, oldest first; one that `send` takes (true) is forgotten here
    /// without a word to the peer: its next segments are for the stack that
    /// has it now. Stops at the first refusal (the rest wait for the next
    /// call); how many were sent. A connection with no image (it sent
    /// data, or holds more than an image carries) stays to be reset when
    /// its time is up.
    pub fn export_adrift(&mut self, port: u16, now: Instant, mut send: impl FnMut(&[u8]) -> bool) -> usize {
        self.prune_adrift();
        let mut sent = 0;
        let mut i = 0;
        while let Some(&(c, _)) = self.adrift.get(i) {
            let image = self
                .socket(c)
                .filter(|s| s.local().port() == port)
                .and_then(|s| s.image(now));
            let Some(image) = image else {
                i += 1;
                continue;
            };
            if !send(&image.encode()) {
                break;
            }
            self.adrift.remove(i);
            self.record_mark(c, now, FlightKind::State, 0);
            self.forget(c);
            sent += 1;
        }
        sent
    }

    /// Frees connection `c` without sending anything.
    fn forget(&mut self, c: TcpHandle) {
        let Some(Entry::Conn { sock, .. }) = self.get(c) else {
            return;
        };
        let key = (sock.local, sock.remote);
        if self.conns.get(&key) == Some(&c) {
            self.conns.remove(&key);
        }
        self.release(c);
        self.unbind_port(key.0.port());
    }

    /// When the oldest connection adrift is due to be reset.
    pub(crate) fn adrift_next(&self) -> Option<Instant> {
        self.adrift.first().map(|&(_, since)| since + ADRIFT_MAX)
    }

    /// Resets the connections adrift for [`ADRIFT_MAX`] or more.
    pub(crate) fn expire_adrift(&mut self, now: Instant) {
        if self
            .adrift
            .first()
            .is_none_or(|&(_, since)| now.saturating_since(since) < ADRIFT_MAX)
        {
            return;
        }
        let (old, young): (Vec<_>, Vec<_>) = std::mem::take(&mut self.adrift)
            .into_iter()
            .partition(|&(_, since)| now.saturating_since(since) >= ADRIFT_MAX);
        self.adrift = young;
        for (c, _) in old {
            if let Some(Entry::Conn { sock, parent: None }) = self.get_mut(c) {
                sock.abort();
                self.schedule(c);
            }
        }
    }

    /// Makes the connection image `bytes` describes (see
    /// [`TcpTable::export_adrift`]) under the listener here that would
    /// have taken it: queued for `accept` if established, else in
    /// SYN-RECEIVED. `EINVAL` for a damaged image or one this listener
    /// would have negotiated otherwise, `ECONNREFUSED` if nothing here
    /// listens, `EADDRINUSE` if the connection is here already, `ENOBUFS` if
    /// the listener's backlog is full or the data does not fit.
    pub(crate) fn import(&mut self, bytes: &[u8], now: Instant) -> Result<TcpHandle> {
        let image = ConnImage::decode(bytes).map_err(|_| Errno::EINVAL)?;
        let key = (image.local, image.remote);
        if self.conns.contains_key(&key) {
            return Err(Errno::EADDRINUSE);
        }
        let lh = self
            .listener_for(image.local, image.remote)
            .ok_or(Errno::ECONNREFUSED)?;
        let Some(Entry::Listener(l)) = self.get(lh) else {
            return Err(Errno::ECONNREFUSED);
        };
        let full = if image.established {
            l.accept_queue.len() >= l.backlog
        } else {
            l.embryonic >= l.backlog
        };
        if full {
            return Err(Errno::ENOBUFS);
        }
        let sock = TcpSocket::from_image(l.template, &image, now).map_err(|e| match e {
            ImageError::Malformed => Errno::EINVAL,
            ImageError::TooLarge => Errno::ENOBUFS,
        })?;
        self.time_wait.remove(&key);
        let h = self.alloc(Entry::Conn {
            sock: Box::new(sock),
            parent: Some(lh),
        });
        *self.ports.entry(image.local.port()).or_insert(0) += 1;
        self.conns.insert(key, h);
        if let Some(Entry::Listener(l)) = self.get_mut(lh) {
            if image.established {
                l.accept_queue.push_back(h);
                l.accept_times.push_back(now);
                l.tick += 1;
                if let Some(w) = l.waker.take() {
                    w.wake();
                }
            } else {
                l.embryonic += 1;
            }
        }
        self.record_mark(h, now, FlightKind::State, 0);
        self.schedule(h);
        Ok(h)
    }

    /// Whether a listener here would take a connection to local port
    /// `port` (on any address).
    pub fn listens_on(&self, port: u16) -> bool {
        self.listeners.keys().any(|a| a.port() == port)
    }
}
