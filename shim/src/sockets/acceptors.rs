//! Threads blocked in `accept` on one listener take the connections in the
//! order they blocked, as the kernel's exclusive waits give them (the
//! oldest waiter is woken for each new connection; thread-per-connection
//! and pre-threaded servers see it).
//!
//! A thread that finds nothing to accept takes a ticket at the back of the
//! listener's line ([`Place::attempt`]); woken, it accepts only from the
//! front of the line; it leaves the line when it accepts, times out, is
//! interrupted or fails ([`Place::leave`]), and then wakes the threads
//! behind it if a connection may be waiting for the new front. Every
//! waiter of the socket is woken for each event (the wake-up lists are
//! not exclusive), so the others look and sleep again: a cost per
//! blocked thread and connection, paid only by programs that block several
//! threads in `accept` on one socket. A non-blocking `accept` takes no
//! ticket and takes what is there, as on Linux.

use crate::sockets::sock::Kind;
use crate::sockets::table::Core;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Tickets, process-wide (unique, increasing).
static NEXT: AtomicU64 = AtomicU64::new(1);

/// One blocked `accept`'s place in its listener's line.
#[derive(Debug, Default)]
pub struct Place {
    ticket: Option<u64>,
}

/// The line of listener `h`, if it is one.
fn line(core: &mut Core, h: u32) -> Option<&mut std::collections::VecDeque<u64>> {
    match core.socks.get_mut(h).map(|s| &mut s.kind) {
        Some(Kind::Listener { blocked, .. }) => Some(blocked),
        _ => None,
    }
}

impl Place {
    /// Runs `try_accept` (under the worker's lock) if this thread's turn
    /// has come: it holds no ticket yet and nobody is in line, or it is
    /// first. Takes a ticket when there is nothing to accept.
    pub fn attempt<R>(
        &mut self,
        core: &mut Core,
        h: u32,
        try_accept: &impl Fn(&mut Core) -> Option<R>,
    ) -> Option<R> {
        let front = line(core, h).and_then(|l| l.front().copied());
        let my_turn = match (self.ticket, front) {
            (Some(t), Some(f)) => t == f,
            (None, Some(_)) => false,
            (_, None) => true,
        };
        if my_turn {
            if let Some(r) = try_accept(core) {
                self.leave(core, h);
                return Some(r);
            }
        }
        if self.ticket.is_none() {
            let t = NEXT.fetch_add(1, Relaxed);
            if let Some(l) = line(core, h) {
                l.push_back(t);
                self.ticket = Some(t);
            }
        }
        None
    }

    /// Leaves the line (accepted, or gave up); wakes the threads behind, in
    /// case a connection is waiting for the new front.
    pub fn leave(&mut self, core: &mut Core, h: u32) {
        let Some(t) = self.ticket.take() else { return };
        let Some(l) = line(core, h) else { return };
        l.retain(|&x| x != t);
        if !l.is_empty() {
            let Core { watch, to_wake, .. } = core;
            watch.wake_sock(h, to_wake);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_increase() {
        let a = NEXT.fetch_add(1, Relaxed);
        let b = NEXT.fetch_add(1, Relaxed);
        assert!(b > a);
    }
}
