//! Which of a benchmark application's connections have something to do: a
//! waker per connection that sets the connection's bit in a shared bitmap,
//! and [`Woken::drain`], which takes the set bits.
//!
//! The stack is single-threaded and the benchmarks count its cost, so the
//! application's part is kept to one atomic `fetch_or` per wake: no lock,
//! no allocation, and no reference count (the wakers' data is `'static`,
//! so cloning or dropping one touches nothing). The bitmap and the wakers'
//! data are leaked for the life of the process: a benchmark makes a few,
//! of a few KiB each. Guarantees: every wake between two drains reports
//! its connection once in the second (several wakes of one connection
//! report it once), from any thread; indices come out in ascending order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{RawWaker, RawWakerVTable, Waker};

/// One connection's bit.
struct Slot {
    word: &'static AtomicU64,
    mask: u64,
}

/// A wake list for connections `0..n` (see the module docs).
#[derive(Clone, Copy)]
pub struct Woken {
    words: &'static [AtomicU64],
    slots: &'static [Slot],
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, release);

fn clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn wake(data: *const ()) {
    // SAFETY: every waker of this vtable was made by `Woken::waker` from a
    // pointer to a leaked (`'static`), immutable `Slot`.
    let slot = unsafe { &*data.cast::<Slot>() };
    slot.word.fetch_or(slot.mask, Ordering::Release);
}

fn release(_: *const ()) {}

impl Woken {
    /// A list for `n` connections.
    pub fn new(n: usize) -> Woken {
        let words: &'static [AtomicU64] = Box::leak((0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect());
        let slots = (0..n).map(|id| Slot {
            word: &words[id / 64],
            mask: 1 << (id % 64),
        });
        Woken {
            words,
            slots: Box::leak(slots.collect()),
        }
    }

    /// Connections it has room for.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it has room for none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The waker of connection `id`.
    ///
    /// # Panics
    /// If `id` is not below [`Woken::len`].
    pub fn waker(&self, id: usize) -> Waker {
        let slot: *const Slot = &self.slots[id];
        // SAFETY: the vtable's functions are thread-safe (an atomic on
        // `'static` data, or nothing) and meet RawWaker's contract: clone
        // returns a waker with the same data, wake and wake_by_ref only
        // read the slot, drop has nothing to release.
        unsafe { Waker::from_raw(RawWaker::new(slot.cast(), &VTABLE)) }
    }

    /// Appends the connections woken since the last drain to `out`.
    pub fn drain(&self, out: &mut Vec<usize>) {
        for (w, word) in self.words.iter().enumerate() {
            // A plain load first: most words are clear, and a swap is a
            // locked instruction.
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut bits = word.swap(0, Ordering::Acquire);
            while bits != 0 {
                out.push(w * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_are_reported_once_in_order() {
        let woken = Woken::new(130);
        let wakers: Vec<Waker> = (0..130).map(|id| woken.waker(id)).collect();
        let mut out = Vec::new();
        woken.drain(&mut out);
        assert!(out.is_empty());
        wakers[129].wake_by_ref();
        let copy = wakers[3].clone();
        drop(wakers[3].clone()); // a dropped clone releases nothing
        copy.wake();
        wakers[64].wake_by_ref();
        wakers[3].wake_by_ref();
        woken.drain(&mut out);
        assert_eq!(out, [3, 64, 129]);
        out.clear();
        woken.drain(&mut out);
        assert!(out.is_empty(), "a drain takes the bits");
        assert!(wakers[5].will_wake(&woken.waker(5)));
        assert!(!wakers[5].will_wake(&wakers[6]));
    }

    #[test]
    fn wakes_from_other_threads_arrive() {
        let woken = Woken::new(200);
        std::thread::scope(|s| {
            for t in 0..4 {
                let w = woken;
                s.spawn(move || (t * 50..t * 50 + 50).for_each(|id| w.waker(id).wake()));
            }
        });
        let mut out = Vec::new();
        woken.drain(&mut out);
        assert_eq!(out, (0..200).collect::<Vec<_>>());
    }
}
