//! How a secondary process keeps its view of a shared `net_memif` port's
//! memory right across the peer's reconnects.
//!
//! DPDK 22.11's memif driver maps the memory regions in a secondary process
//! only from `link_update` (`rte_eth_link_get*`): when it finds the link up
//! and nothing mapped, it asks the primary for the regions and maps them;
//! when it finds the link down with regions mapped, it unmaps them. A
//! secondary that never asks about the link keeps the first peer's regions
//! for ever: after the peer reconnects (new regions), it reads and writes
//! memory nobody else looks at, and the queue goes silent (the test
//! `a_secondary_process_takes_a_memif_queue_pair...` in `tests/dpdk.rs`
//! shows it: 0 of 200 frames echoed after a peer restart without the
//! watch, 200 of 200 with it).
//!
//! So a secondary's memif port asks about the link at least every
//! [`WATCH_NS`] when a receive finds nothing (a peer's restart takes far
//! longer: its own DPDK start alone is over 100 ms). The mapping and
//! unmapping must not race with the process's own bursts on the port's
//! other queue pairs (the driver's regions are per process, shared by its
//! queues): bursts hold the watch's read lock, the link check its write
//! lock, and no burst runs while the regions are not known to be mapped
//! (else the driver would map them from inside a burst, unlocked).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use accel_dpdk_sys as sys;

/// How often, at most, a secondary asks about the link, ns.
pub const WATCH_NS: u64 = 1_000_000;

/// The watch of one port in a secondary process; see the module docs.
pub(crate) struct LinkWatch {
    /// Bursts share it; a link check (which may map or unmap the
    /// regions) takes it alone.
    regions: RwLock<()>,
    /// The last check found the link up (so the regions are mapped).
    mapped: AtomicBool,
    /// When the link was last checked (ns of the caller's clock), and
    /// whether ever.
    last_ns: AtomicU64,
    checked: AtomicBool,
}

impl LinkWatch {
    pub fn new() -> LinkWatch {
        LinkWatch {
            regions: RwLock::new(()),
            mapped: AtomicBool::new(false),
            last_ns: AtomicU64::new(0),
            checked: AtomicBool::new(false),
        }
    }

    /// Leave to run a burst on the port: `None` while the regions are not
    /// mapped (the burst must not run), else a guard to hold across it.
    pub fn burst(&self) -> Option<RwLockReadGuard<'_, ()>> {
        if !self.mapped.load(Ordering::Acquire) {
            return None;
        }
        let guard = self.regions.read().unwrap_or_else(PoisonError::into_inner);
        // A check may have unmapped them while this thread waited.
        self.mapped.load(Ordering::Acquire).then_some(guard)
    }

    /// Whether the last check found the link up.
    pub fn mapped(&self) -> bool {
        self.mapped.load(Ordering::Acquire)
    }

    /// Asks the driver about the link of port `id` if the last check was
    /// [`WATCH_NS`] or more before `now_ns` (or never): the driver maps or
    /// unmaps the regions as the link is up or down. Returns whether a
    /// check ran.
    pub fn check(&self, id: u16, now_ns: u64) -> bool {
        let last = self.last_ns.load(Ordering::Relaxed);
        if self.checked.load(Ordering::Relaxed) && now_ns.saturating_sub(last) < WATCH_NS {
            return false;
        }
        let _alone = self.regions.write().unwrap_or_else(PoisonError::into_inner);
        self.last_ns.store(now_ns, Ordering::Relaxed);
        self.checked.store(true, Ordering::Relaxed);
        let mut link = sys::rte_eth_link::default();
        // SAFETY: the port is valid while its `Port` is; `link` is
        // writable; no burst on the port runs while `_alone` is held.
        let rc = unsafe { sys::rte_eth_link_get_nowait(id, &mut link) };
        let up = rc == 0 && link.link_status() != 0;
        self.mapped.store(up, Ordering::Release);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_burst_runs_before_a_check_found_the_link_up() {
        let w = LinkWatch::new();
        assert!(w.burst().is_none());
        w.mapped.store(true, Ordering::Release);
        assert!(w.burst().is_some());
    }

    #[test]
    fn checks_are_spaced_by_the_watch_period() {
        let w = LinkWatch::new();
        // Port 65535 does not exist: the check runs and finds no link up.
        assert!(w.check(u16::MAX, 5));
        assert!(!w.mapped.load(Ordering::Acquire));
        assert!(!w.check(u16::MAX, 5 + WATCH_NS - 1));
        assert!(w.check(u16::MAX, 5 + WATCH_NS));
    }
}
