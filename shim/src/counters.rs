//! Counters of what the interposer did: how many calls of each intercepted
//! function it saw, and how many went to the shim's own operations, to libc
//! because they were re-entered, or to libc before start-up finished.
//!
//! The counters are striped: each thread counts into one of [`STRIPES`]
//! cache-line-aligned stripes (its own as long as there are fewer threads
//! than stripes), so counting never bounces a cache line between threads
//! that do not share a stripe. A [`Snapshot`] adds the stripes up; it is
//! exact once the counted threads are quiet, and otherwise a moment's view.
//!
//! Guarantees: counting is one relaxed `fetch_add` on the thread's stripe;
//! nothing here allocates, locks or panics.

use crate::interpose::{Call, NAMES, N_CALLS};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How many stripes the counters are spread over.
pub const STRIPES: usize = 16;

/// What happened to an intercepted call, beyond being seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handled by the shim's own operations (the fd is ours).
    Ours,
    /// Sent to libc because the shim itself made the call (re-entry).
    Reentrant,
    /// Sent to libc because start-up had not finished.
    Early,
    /// The real function is missing from libc: failed with `ENOSYS`.
    Missing,
}

const OUTCOMES: usize = 4;

/// One thread's (or a few threads') counts.
#[repr(align(64))]
struct Stripe {
    calls: [AtomicU64; N_CALLS],
    outcomes: [AtomicU64; OUTCOMES],
}

/// The process's counters.
pub struct Counters {
    stripes: [Stripe; STRIPES],
}

/// The counters of the process.
pub static COUNTERS: Counters = Counters::new();

impl Counters {
    const fn new() -> Self {
        Counters {
            stripes: [const {
                Stripe {
                    calls: [const { AtomicU64::new(0) }; N_CALLS],
                    outcomes: [const { AtomicU64::new(0) }; OUTCOMES],
                }
            }; STRIPES],
        }
    }

    fn stripe(&self, stripe: usize) -> Option<&Stripe> {
        // `STRIPES` is a power of two: the mask keeps the index in range.
        self.stripes.get(stripe & (STRIPES - 1))
    }

    /// Counts one intercepted call of `call` on `stripe`.
    #[inline]
    pub fn call(&self, stripe: usize, call: Call) {
        if let Some(c) = self.stripe(stripe).and_then(|s| s.calls.get(call as usize)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts one `outcome` on `stripe`.
    #[inline]
    pub fn outcome(&self, stripe: usize, outcome: Outcome) {
        if let Some(c) = self.stripe(stripe).and_then(|s| s.outcomes.get(outcome as usize)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The counts so far, added over the stripes.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            by_call: [0; N_CALLS],
            outcomes: [0; OUTCOMES],
        };
        for stripe in &self.stripes {
            for (sum, c) in snap.by_call.iter_mut().zip(&stripe.calls) {
                *sum += c.load(Relaxed);
            }
            for (sum, c) in snap.outcomes.iter_mut().zip(&stripe.outcomes) {
                *sum += c.load(Relaxed);
            }
        }
        snap
    }
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    by_call: [u64; N_CALLS],
    outcomes: [u64; OUTCOMES],
}

impl Snapshot {
    /// Calls of `call` seen.
    pub fn calls(&self, call: Call) -> u64 {
        self.by_call.get(call as usize).copied().unwrap_or(0)
    }

    /// Calls seen, all functions together.
    pub fn intercepted(&self) -> u64 {
        self.by_call.iter().sum()
    }

    /// Calls that ended with `outcome`.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(outcome as usize).copied().unwrap_or(0)
    }

    /// Calls passed to libc because the fd was not ours (or because
    /// nothing was): all calls but those handled, re-entered, early or
    /// missing.
    pub fn passed(&self) -> u64 {
        let other: u64 = self.outcomes.iter().sum();
        self.intercepted().saturating_sub(other)
    }

    /// The per-function counts that are not zero, in table order.
    pub fn by_call(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        NAMES
            .iter()
            .zip(self.by_call)
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (*name, n))
    }
}

impl fmt::Display for Snapshot {
    /// `intercepted=N passed=N ours=N reentrant=N early=N missing=N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "intercepted={} passed={} ours={} reentrant={} early={} missing={}",
            self.intercepted(),
            self.passed(),
            self.outcome(Outcome::Ours),
            self.outcome(Outcome::Reentrant),
            self.outcome(Outcome::Early),
            self.outcome(Outcome::Missing),
        )
    }
}

/// Why a socket stayed in the kernel (the acceleration counts each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stay {
    /// Bound to an address that is not the accelerated interface's.
    OtherAddress = 0,
    /// Connected (or sent) to an address the stack does not route.
    NotRouted = 1,
    /// The stack is not running (it could not start, or this is a forked
    /// child of a process whose stack ran).
    StackDown = 2,
    /// The stack refused the address (a listener's port was taken there).
    Refused = 3,
}

impl Stay {
    /// Every reason, in counter order.
    pub const ALL: [Stay; 4] = [
        Stay::OtherAddress,
        Stay::NotRouted,
        Stay::StackDown,
        Stay::Refused,
    ];

    /// The reason in words, as the log says it.
    pub fn text(self) -> &'static str {
        match self {
            Stay::OtherAddress => "bound to an address that is not accelerated",
            Stay::NotRouted => "its peer is not on a network the stack routes",
            Stay::StackDown => "the stack is not running",
            Stay::Refused => "the stack refused its address",
        }
    }

    /// A short key for the counter line.
    pub fn key(self) -> &'static str {
        match self {
            Stay::OtherAddress => "other_address",
            Stay::NotRouted => "not_routed",
            Stay::StackDown => "stack_down",
            Stay::Refused => "refused",
        }
    }
}

static STAYED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static ACCELERATED: AtomicU64 = AtomicU64::new(0);

/// Counts a socket that stayed in the kernel.
pub fn stayed(why: Stay) {
    if let Some(c) = STAYED.get(why as usize) {
        c.fetch_add(1, Relaxed);
    }
}

/// Counts a socket that moved to the stack.
pub fn accelerated() {
    ACCELERATED.fetch_add(1, Relaxed);
}

/// How many sockets stayed in the kernel for `why`.
pub fn stayed_count(why: Stay) -> u64 {
    STAYED.get(why as usize).map_or(0, |c| c.load(Relaxed))
}

/// `sockets: accelerated=N kernel: other_address=N ...`, for the exit line.
pub struct Sockets;

impl fmt::Display for Sockets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sockets: accelerated={} kernel:", ACCELERATED.load(Relaxed))?;
        for why in Stay::ALL {
            write!(f, " {}={}", why.key(), stayed_count(why))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_adds_the_stripes_up() {
        let c = Counters::new();
        c.call(0, Call::read);
        c.call(5, Call::read);
        c.call(STRIPES + 5, Call::write);
        c.outcome(3, Outcome::Reentrant);
        let s = c.snapshot();
        assert_eq!(
            (s.calls(Call::read), s.calls(Call::write), s.intercepted()),
            (2, 1, 3)
        );
        assert_eq!((s.outcome(Outcome::Reentrant), s.passed()), (1, 2));
        assert_eq!(s.by_call().collect::<Vec<_>>(), [("read", 2), ("write", 1)]);
        assert_eq!(
            s.to_string(),
            "intercepted=3 passed=2 ours=0 reentrant=1 early=0 missing=0"
        );
    }

    #[test]
    fn stripes_sit_on_their_own_cache_lines() {
        assert_eq!(std::mem::align_of::<Stripe>(), 64);
        assert_eq!(std::mem::size_of::<Stripe>() % 64, 0);
    }
}
