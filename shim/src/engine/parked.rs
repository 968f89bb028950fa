//! The port owner's keeping of connections adrift that a process left as
//! it exited (see [`crate::engine::migrate`] for connections adrift).
//!
//! An exiting process hands the connections adrift that no other process
//! took to another one that listens on their port. When there is none yet
//! (an nginx reload on a port with as many queue pairs as workers: the new
//! workers wait for the old ones' queue pairs to attach at all), the
//! exiting process leaves them with the owner instead ([`procs::park`]),
//! which outlives it. The owner keeps their images and offers them, every
//! [`migrate::OFFER_EVERY`], to the processes of the port, from a
//! forwarding socket of its own ([`procs::OWNER_Q`]), as a process offers
//! its own; the first process that listens on the port gets them, and
//! makes them again under its listener. Those nobody takes within
//! `accel_stack::iface::ADRIFT_MAX` are dropped (their peers time out:
//! the owner has no stack to reset them with). Meanwhile a process that
//! gets a segment for a port offered lately and nobody takes it drops it
//! rather than resets it ([`procs::drop_unclaimed`]): the connection may
//! be on its way.

use crate::engine::{migrate, procs};
use crate::logging::log;
use crate::sys;
use std::time::{Duration, Instant};

/// Connections kept for the port's processes.
pub struct Parked {
    fd: i32,
    key: u64,
    /// (local port, image, when it came).
    conns: Vec<(u16, Vec<u8>, Instant)>,
    offered: Option<Instant>,
}

/// The longest image message (an image carries up to 32 KiB of data).
const MSG_MAX: usize = 64 * 1024;

impl Parked {
    /// Binds the owner's forwarding socket for port `key`.
    pub fn open(key: u64) -> Result<Parked, String> {
        let fd = procs::bind_forwarding(key, procs::OWNER_Q)?;
        // Room for a burst of images (the default is about 200 KiB).
        let room: libc::c_int = 4 << 20;
        // SAFETY: `room` is a live c_int of the size given.
        unsafe {
            libc::syscall(
                libc::SYS_setsockopt,
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &room as *const libc::c_int,
                std::mem::size_of::<libc::c_int>(),
            )
        };
        Ok(Parked {
            fd,
            key,
            conns: Vec::new(),
            offered: None,
        })
    }

    /// The socket to wait on.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// Reads what came: connections to keep, and processes that want those
    /// of a port (sent to them at once).
    pub fn on_readable(&mut self) {
        let mut buf = vec![0u8; MSG_MAX];
        for _ in 0..256 {
            // SAFETY: `buf` is writable for its length; no address asked.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_recvfrom,
                    self.fd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut::<libc::sockaddr>(),
                    std::ptr::null_mut::<libc::socklen_t>(),
                )
            };
            let Some(msg) = usize::try_from(n).ok().and_then(|n| buf.get(..n)) else {
                return;
            };
            match procs::parse(msg) {
                Some(procs::Message::Park { port, len }) => {
                    if let Some(image) = msg.get(6..len) {
                        self.conns.push((port, image.to_vec(), Instant::now()));
                        // Offer at once.
                        self.offered = None;
                    }
                }
                Some(procs::Message::Want { from, port }) => self.hand(from, port),
                _ => {}
            }
        }
    }

    /// Sends the connections kept on `port` to the process of queue `to`.
    fn hand(&mut self, to: u16, port: u16) {
        let before = self.conns.len();
        let (fd, key) = (self.fd, self.key);
        self.conns.retain(|(p, image, _)| {
            *p != port || !procs::send_from(fd, procs::OWNER_Q, key, to, procs::KIND_CONN, image)
        });
        let moved = before - self.conns.len();
        if moved > 0 {
            log!(
                info,
                "port owner: {moved} connections nobody accepted on port {port}, left by a process that exited, handed to the process of queue {to}"
            );
        }
    }

    /// Drops what waited too long and offers the rest to the processes
    /// holding `held` queues, if an offer is due. Returns when to come back.
    pub fn tick(&mut self, held: &[u16]) -> Option<Duration> {
        let limit = Duration::from_nanos(accel_stack::iface::ADRIFT_MAX.as_nanos() as u64);
        let before = self.conns.len();
        self.conns.retain(|(_, _, at)| at.elapsed() < limit);
        if self.conns.len() < before {
            log!(
                warn,
                "port owner: {} connections left by a process that exited were taken by nobody within {} s; dropped",
                before - self.conns.len(),
                limit.as_secs()
            );
        }
        if self.conns.is_empty() {
            self.offered = None;
            return None;
        }
        if self.offered.is_none_or(|t| t.elapsed() >= migrate::OFFER_EVERY) {
            let mut ports: Vec<u16> = self.conns.iter().map(|c| c.0).collect();
            ports.sort_unstable();
            ports.dedup();
            for port in ports {
                for &q in held {
                    procs::send_from(
                        self.fd,
                        procs::OWNER_Q,
                        self.key,
                        q,
                        procs::KIND_OFFER,
                        &port.to_le_bytes(),
                    );
                }
            }
            self.offered = Some(Instant::now());
        }
        Some(migrate::OFFER_EVERY)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}
