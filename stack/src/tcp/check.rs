//! The socket's invariants, checked on demand: [`TcpSocket::check_invariants`]
//! runs the checks of its buffers and its SACK scoreboard, then those that
//! tie the sequence variables, the buffers and the timers together.
//!
//! Nothing on the data path calls it: it is for tests, property tests and
//! fuzz targets, which call it after every step and fail on the first
//! violation. It never panics; it describes the first invariant broken.
//! What it checks is what the rest of the module relies on, and what keeps
//! a connection from hanging:
//! - sequence space: `snd_una <= snd_nxt <= snd_max`; what is in flight is
//!   in the send buffer (plus the SYN and the FIN); our FIN sits right after
//!   the last queued byte; a FIN received out of order lies ahead of
//!   `rcv_nxt`;
//! - timers: a connection with anything unacknowledged has its
//!   retransmission timer running; one stuck behind a closed window with
//!   nothing in flight has its persist timer running; one in TIME-WAIT has
//!   its TIME-WAIT timer; an orphan in FIN-WAIT-2 has its FIN-WAIT-2 timer
//!   (else nothing would ever free it).

use super::socket::{State, TcpSocket};

impl TcpSocket {
    /// Checks the socket's invariants (see the module docs); describes
    /// the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |what: &str| Err(format!("{} {}: {what}; {self:?}", self.state, self.local));
        self.tx.check_invariants()?;
        self.rx.check_invariants()?;
        if matches!(self.state, State::Closed | State::Listen) {
            // A closed socket keeps whatever it had; nothing runs on it.
            return Ok(());
        }
        self.scoreboard.check_invariants(self.snd_una, self.snd_max)?;
        if self.snd_nxt.distance(self.snd_una) < 0 || self.snd_max.distance(self.snd_nxt) < 0 {
            return fail("not snd_una <= snd_nxt <= snd_max");
        }
        let flight = self.snd_max.distance(self.snd_una) as usize;
        let syn = usize::from(self.snd_una == self.iss && self.snd_max != self.iss);
        let fin = usize::from(self.fin_sent.is_some_and(|f| self.snd_max.distance(f) > 0));
        if flight > syn + self.tx.len() + fin {
            return fail("more in flight than the send buffer holds");
        }
        if let Some(f) = self.fin_sent {
            if !self.fin_acked() && f != self.fin_seq() {
                return fail("our FIN is not right after the last queued byte");
            }
            if self.snd_max.distance(f) > 1 {
                return fail("sent beyond our FIN");
            }
        }
        if let Some(f) = self.remote_fin {
            if f.distance(self.rcv_nxt) <= 0 {
                return fail("the peer's FIN is at or behind rcv_nxt but was not taken");
            }
        }
        // Timers.
        let live = !self.rst_pending && self.state != State::TimeWait;
        if live && flight > 0 && self.rto_at.is_none() {
            return fail("something is unacknowledged and no retransmission timer runs");
        }
        if live && self.stuck() && self.persist_at.is_none() {
            return fail("data waits behind a closed window and no persist timer runs");
        }
        if self.state == State::TimeWait && self.timewait_at.is_none() {
            return fail("in TIME-WAIT without its timer");
        }
        if self.orphan
            && self.state == State::FinWait2
            && self.finwait2_at.is_none()
            && self.keepalive_at.is_none()
        {
            return fail("an orphan in FIN-WAIT-2 with no timer to end it");
        }
        Ok(())
    }
}
