//! A hierarchical timer wheel: the per-worker store of sleeps, wait timeouts
//! and (later) TCP retransmission timers.
//!
//! Time is a caller-chosen monotonic `u64` nanosecond clock, quantised into
//! ticks of [`TICK_NS`] (65.536 µs). A deadline `d` belongs to tick
//! `ceil(d / TICK_NS)`, the first tick boundary at or after it. The wheel has
//! `LEVELS` levels of 64 slots (6 bits of the tick per level), which cover
//! every tick a `u64` deadline can map to, so no overflow list is needed.
//! Timers live in a slab (a `Vec` plus a LIFO free list) and every slot is an
//! intrusive doubly linked list of slab indices, with one `u64` occupancy
//! bitmap per level.
//!
//! Guarantees:
//! - [`TimerWheel::insert`], [`TimerWheel::cancel`] and [`TimerWheel::reset`]
//!   are O(1) and allocate nothing once the slab has grown; a cancelled timer
//!   is unlinked at once and leaves nothing behind.
//! - A timer never fires early: `poll(now)` fires exactly the armed timers
//!   whose deadline is `<= now`, each in the first poll that reaches it, so
//!   the only lateness is that of the caller's clock (ticks bound the work,
//!   not the precision).
//! - Timers fire in `(deadline, insertion order)` order: slots are visited in
//!   tick order and the due entries of a slot are sorted before they fire.
//! - `poll` jumps between occupied slots with `trailing_zeros` on the
//!   bitmaps, cascading higher-level slots into lower levels as it passes
//!   them, so an hour of idleness costs a handful of slot visits.

use std::fmt;

/// Nanoseconds of one wheel tick (2^16 ns = 65.536 µs).
pub const TICK_NS: u64 = 1 << TICK_SHIFT;

/// log2 of [`TICK_NS`].
const TICK_SHIFT: u32 = 16;
/// Bits of the tick resolved by one level.
const LEVEL_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Number of levels: the largest tick is `ceil(u64::MAX / TICK_NS) = 2^48`,
/// which needs 49 bits; nine levels of six bits cover 54.
const LEVELS: usize = 9;
/// The list holding timers that were armed with a deadline already reached.
const EXPIRED: usize = LEVELS * SLOTS;
/// Null link in the intrusive lists and the free list.
const NIL: u32 = u32::MAX;

const _: () = assert!(LEVEL_BITS * LEVELS as u32 > u64::BITS - TICK_SHIFT);

/// Identifies an armed timer. Once the timer fires or is cancelled the key
/// goes stale: its slab slot gets a new generation when it is freed, so a
/// stale key is rejected even after the slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

/// One slab slot: an armed timer (`value` is `Some`) linked into one list,
/// or a free slot whose `next` chains the free list.
struct Entry<T> {
    deadline: u64,
    seq: u64,
    value: Option<T>,
    generation: u32,
    prev: u32,
    next: u32,
    list: u32,
}

/// The next occupied slot: its level, slot number and first tick.
#[derive(Clone, Copy, Debug)]
struct Expiration {
    level: usize,
    slot: usize,
    tick: u64,
}

/// A hierarchical timer wheel holding values of type `T`.
///
/// Invariants between calls: `tick == ceil(now_ns / TICK_NS)`; every timer
/// with a deadline `<= now_ns` is on the expired list (armed after the last
/// poll had passed it); every other timer sits in the level given by the
/// highest 6-bit digit in which its tick differs from `tick`, so lower
/// levels always hold earlier timers than higher ones.
pub struct TimerWheel<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    /// List heads: `level * SLOTS + slot`, then [`EXPIRED`].
    heads: Vec<u32>,
    occupied: [u64; LEVELS],
    now_ns: u64,
    tick: u64,
    len: usize,
    next_seq: u64,
    /// Reused buffer of `(deadline, seq, index)` for sorting a slot.
    scratch: Vec<(u64, u64, u32)>,
    /// Slots visited by `poll` (fired or cascaded), for cost accounting.
    slots_visited: u64,
}

impl<T> TimerWheel<T> {
    /// A wheel whose clock starts at `now_ns` (any `u64` monotonic
    /// nanosecond clock chosen by the caller).
    pub fn new(now_ns: u64) -> Self {
        TimerWheel {
            entries: Vec::new(),
            free_head: NIL,
            heads: vec![NIL; EXPIRED + 1],
            occupied: [0; LEVELS],
            now_ns,
            tick: tick_of(now_ns),
            len: 0,
            next_seq: 0,
            scratch: Vec::new(),
            slots_visited: 0,
        }
    }

    /// Arms a timer. A deadline at or before the wheel's current time fires
    /// on the next `poll`.
    ///
    /// # Panics
    ///
    /// If `u32::MAX - 1` timers are already armed.
    pub fn insert(&mut self, deadline_ns: u64, value: T) -> TimerKey {
        let seq = self.take_seq();
        let index = self.alloc(deadline_ns, seq, value);
        self.arm(index);
        self.len += 1;
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Disarms; returns the value if the timer was still armed, `None` for a
    /// stale key.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.armed(key)?;
        self.unlink(key.index);
        Some(self.release(key.index).1)
    }

    /// Moves an armed timer to a new deadline (O(1)); `false` for a stale
    /// key. The key stays valid, and for ordering among equal deadlines the
    /// timer counts as inserted now.
    pub fn reset(&mut self, key: TimerKey, deadline_ns: u64) -> bool {
        if self.armed(key).is_none() {
            return false;
        }
        self.unlink(key.index);
        let seq = self.take_seq();
        let entry = &mut self.entries[key.index as usize];
        entry.deadline = deadline_ns;
        entry.seq = seq;
        self.arm(key.index);
        true
    }

    /// The deadline of an armed timer; `None` for a stale key.
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        self.armed(key).map(|entry| entry.deadline)
    }

    /// Advances the wheel to `now_ns` and calls `fire(key, value)` for every
    /// timer whose deadline is `<= now_ns`, in `(deadline, insertion order)`
    /// order. Never fires a timer whose deadline is `> now_ns`. A `now_ns`
    /// earlier than the wheel's time is treated as the wheel's time (the
    /// clock never goes back). Returns how many fired.
    ///
    /// `fire` cannot touch the wheel; callers collect what fired and act on
    /// it afterwards.
    pub fn poll(&mut self, now_ns: u64, mut fire: impl FnMut(TimerKey, T)) -> usize {
        let now = now_ns.max(self.now_ns);
        let target = tick_of(now);
        self.now_ns = now;
        // Expired timers were due before anything still in the levels.
        let mut fired = self.fire_list(EXPIRED, now, &mut fire);
        while let Some(exp) = self.next_expiration() {
            if exp.tick > target {
                break;
            }
            self.tick = exp.tick;
            self.slots_visited += 1;
            if exp.level > 0 {
                self.cascade(exp.level, exp.slot);
                continue;
            }
            fired += self.fire_list(exp.slot, now, &mut fire);
            if exp.tick == target {
                // What is left here is due later within this tick.
                break;
            }
        }
        self.tick = target;
        fired
    }

    /// A time at or before the earliest armed deadline, and after the
    /// wheel's current time unless a timer is already due; `None` when
    /// empty. The caller sleeps until then and polls.
    ///
    /// The bitmaps locate the earliest occupied slot. In level 0 the slot's
    /// entries (all within one tick) are scanned for the exact deadline; in
    /// a higher level the answer is the first nanosecond the slot can hold,
    /// and polling there cascades it a level down, so a `next_deadline` /
    /// `poll` loop reaches any timer within `LEVELS + 1` rounds.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.heads[EXPIRED] != NIL {
            return Some(self.now_ns);
        }
        let exp = self.next_expiration()?;
        if exp.level == 0 {
            Some(self.min_deadline(exp.slot))
        } else {
            // The slot starts after the current tick, so `exp.tick >= 1`.
            Some((exp.tick - 1) * TICK_NS + 1)
        }
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The entry of `key` if it is still armed.
    fn armed(&self, key: TimerKey) -> Option<&Entry<T>> {
        self.entries
            .get(key.index as usize)
            .filter(|e| e.generation == key.generation && e.value.is_some())
    }

    /// Takes a slab slot (most recently freed first) for a new timer.
    fn alloc(&mut self, deadline: u64, seq: u64, value: T) -> u32 {
        if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.next;
            entry.deadline = deadline;
            entry.seq = seq;
            entry.value = Some(value);
            return index;
        }
        let index = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i != NIL)
            .expect("TimerWheel: too many armed timers");
        self.entries.push(Entry {
            deadline,
            seq,
            value: Some(value),
            generation: 0,
            prev: NIL,
            next: NIL,
            list: 0,
        });
        index
    }

    /// Frees an unlinked armed entry, bumping its generation; returns the
    /// key it had and its value.
    fn release(&mut self, index: u32) -> (TimerKey, T) {
        let entry = &mut self.entries[index as usize];
        let Some(value) = entry.value.take() else {
            unreachable!("TimerWheel: released a free slot");
        };
        let key = TimerKey {
            index,
            generation: entry.generation,
        };
        entry.generation = entry.generation.wrapping_add(1);
        entry.next = self.free_head;
        self.free_head = index;
        self.len -= 1;
        (key, value)
    }

    /// Links an unlinked entry: on the expired list if its deadline has
    /// passed, else in the wheel.
    fn arm(&mut self, index: u32) {
        if self.entries[index as usize].deadline <= self.now_ns {
            self.push(EXPIRED, index);
        } else {
            self.place(index);
        }
    }

    /// Links an unlinked entry whose tick is `>= self.tick` into its slot.
    fn place(&mut self, index: u32) {
        let tick = tick_of(self.entries[index as usize].deadline);
        debug_assert!(tick >= self.tick);
        let level = level_for(self.tick, tick);
        self.push(level * SLOTS + slot_for(tick, level), index);
    }

    fn push(&mut self, list: usize, index: u32) {
        let head = self.heads[list];
        let entry = &mut self.entries[index as usize];
        entry.prev = NIL;
        entry.next = head;
        entry.list = list as u32;
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.heads[list] = index;
        if list < EXPIRED {
            self.occupied[list / SLOTS] |= 1 << (list % SLOTS);
        }
    }

    fn unlink(&mut self, index: u32) {
        let entry = &self.entries[index as usize];
        let (prev, next, list) = (entry.prev, entry.next, entry.list as usize);
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if prev != NIL {
            self.entries[prev as usize].next = next;
            return;
        }
        self.heads[list] = next;
        if next == NIL && list < EXPIRED {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        }
    }

    /// The earliest occupied slot. Lower levels hold earlier ticks, so the
    /// first level with an occupied slot at or after the current position
    /// has it.
    fn next_expiration(&self) -> Option<Expiration> {
        (0..LEVELS).find_map(|level| self.level_expiration(level))
    }

    fn level_expiration(&self, level: usize) -> Option<Expiration> {
        let shift = level as u32 * LEVEL_BITS;
        let current = slot_for(self.tick, level);
        debug_assert_eq!(self.occupied[level] & !(u64::MAX << current), 0);
        let pending = self.occupied[level] & (u64::MAX << current);
        if pending == 0 {
            return None;
        }
        let slot = pending.trailing_zeros() as usize;
        let span_mask = (1u64 << (shift + LEVEL_BITS)) - 1;
        let tick = (self.tick & !span_mask) | ((slot as u64) << shift);
        Some(Expiration { level, slot, tick })
    }

    /// Re-inserts every entry of a higher-level slot relative to the current
    /// tick (which is the slot's first tick), moving them to lower levels.
    fn cascade(&mut self, level: usize, slot: usize) {
        let list = level * SLOTS + slot;
        let mut cursor = self.heads[list];
        self.heads[list] = NIL;
        self.occupied[level] &= !(1 << slot);
        while cursor != NIL {
            let next = self.entries[cursor as usize].next;
            self.place(cursor);
            cursor = next;
        }
    }

    /// Fires the entries of `list` whose deadline is `<= now`, sorted by
    /// `(deadline, seq)`. Each is unlinked and freed just before its `fire`
    /// call, so a panicking `fire` leaves the rest armed and consistent.
    fn fire_list<F: FnMut(TimerKey, T)>(&mut self, list: usize, now: u64, fire: &mut F) -> usize {
        if self.heads[list] == NIL {
            return 0;
        }
        let mut due = std::mem::take(&mut self.scratch);
        due.clear();
        let mut cursor = self.heads[list];
        while cursor != NIL {
            let entry = &self.entries[cursor as usize];
            if entry.deadline <= now {
                due.push((entry.deadline, entry.seq, cursor));
            }
            cursor = entry.next;
        }
        due.sort_unstable();
        for &(_, _, index) in &due {
            self.unlink(index);
            let (key, value) = self.release(index);
            fire(key, value);
        }
        let fired = due.len();
        self.scratch = due;
        fired
    }

    /// The exact earliest deadline in a non-empty level-0 slot.
    fn min_deadline(&self, slot: usize) -> u64 {
        let mut min = u64::MAX;
        let mut cursor = self.heads[slot];
        while cursor != NIL {
            let entry = &self.entries[cursor as usize];
            min = min.min(entry.deadline);
            cursor = entry.next;
        }
        min
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.len)
            .field("now_ns", &self.now_ns)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

/// The tick at which a deadline is due: the first tick boundary at or after
/// it, so that reaching the tick means the deadline has passed.
fn tick_of(deadline_ns: u64) -> u64 {
    deadline_ns.div_ceil(TICK_NS)
}

/// The level for `tick` seen from `current`: the highest 6-bit digit in
/// which they differ (0 if they are in the same 64-tick block).
fn level_for(current: u64, tick: u64) -> usize {
    let differing = (current ^ tick) | (SLOTS as u64 - 1);
    let top_bit = u64::BITS - 1 - differing.leading_zeros();
    (top_bit / LEVEL_BITS) as usize
}

/// The slot of `tick` within `level`.
fn slot_for(tick: u64, level: usize) -> usize {
    ((tick >> (level as u32 * LEVEL_BITS)) & (SLOTS as u64 - 1)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// xorshift64*: small, seeded, good enough for test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn drain<T>(wheel: &mut TimerWheel<T>, now: u64) -> Vec<T> {
        let mut out = Vec::new();
        wheel.poll(now, |_, v| out.push(v));
        out
    }

    #[test]
    fn fires_at_deadline_never_before() {
        let mut wheel = TimerWheel::new(0);
        let mid_tick = 5 * TICK_NS + 1234;
        let aligned = 10 * TICK_NS;
        wheel.insert(mid_tick, "mid");
        wheel.insert(aligned, "aligned");
        assert!(drain(&mut wheel, mid_tick - 1).is_empty());
        assert_eq!(drain(&mut wheel, mid_tick), ["mid"]);
        assert!(drain(&mut wheel, aligned - 1).is_empty());
        assert_eq!(drain(&mut wheel, aligned), ["aligned"]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn same_tick_later_deadline_stays_armed() {
        let mut wheel = TimerWheel::new(0);
        let base = 7 * TICK_NS + 100;
        wheel.insert(base + 500, "late");
        let early = wheel.insert(base, "early");
        assert_eq!(drain(&mut wheel, base), ["early"]);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.cancel(early), None);
        // Same tick, still not due; a clock going back changes nothing.
        assert!(drain(&mut wheel, base + 499).is_empty());
        assert!(drain(&mut wheel, 0).is_empty());
        assert_eq!(wheel.next_deadline(), Some(base + 500));
        assert_eq!(drain(&mut wheel, base + 500), ["late"]);
    }

    #[test]
    fn equal_deadlines_fire_in_insertion_order() {
        let mut wheel = TimerWheel::new(0);
        let d = 3 * TICK_NS + 7;
        let keys: Vec<_> = (0..50).map(|i| wheel.insert(d, i)).collect();
        wheel.insert(d - 1, -1);
        // A reset counts as a fresh insertion.
        assert!(wheel.reset(keys[0], d));
        let mut expected: Vec<i32> = (-1..50).filter(|&i| i != 0).collect();
        expected.push(0);
        assert_eq!(drain(&mut wheel, d), expected);
    }

    #[test]
    fn cancel_before_and_after_firing() {
        let mut wheel = TimerWheel::new(0);
        let a = wheel.insert(1_000_000, 'a');
        let b = wheel.insert(2_000_000, 'b');
        assert_eq!(wheel.cancel(a), Some('a'));
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(drain(&mut wheel, 10_000_000), ['b']);
        assert_eq!(wheel.cancel(b), None);
        assert_eq!(wheel.deadline(b), None);
        assert!(!wheel.reset(b, 20_000_000));
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn stale_key_after_slot_reuse() {
        let mut wheel = TimerWheel::new(0);
        let old = wheel.insert(5_000_000, 1);
        assert_eq!(wheel.cancel(old), Some(1));
        let new = wheel.insert(6_000_000, 2);
        assert_eq!(new.index, old.index, "LIFO reuse of the freed slot");
        assert_ne!(new, old);
        assert_eq!(wheel.cancel(old), None);
        assert_eq!(wheel.deadline(old), None);
        assert!(!wheel.reset(old, 1));
        assert_eq!(wheel.deadline(new), Some(6_000_000));
        let mut fired = Vec::new();
        wheel.poll(6_000_000, |k, v| fired.push((k, v)));
        assert_eq!(fired, [(new, 2)]);
        // Reused again after firing: the fired key is stale too.
        let newer = wheel.insert(7_000_000, 3);
        assert_eq!(newer.index, old.index);
        assert_eq!(wheel.cancel(new), None);
        assert_eq!(wheel.cancel(newer), Some(3));
    }

    #[test]
    fn reset_earlier_and_later() {
        let mut wheel = TimerWheel::new(0);
        let far = 3_600_000_000_000; // an hour: a high level
        let near = 2_000_000;
        let k1 = wheel.insert(far, "to-earlier");
        let k2 = wheel.insert(near, "to-later");
        assert!(wheel.reset(k1, 1_000_000));
        assert!(wheel.reset(k2, far));
        assert_eq!(wheel.deadline(k1), Some(1_000_000));
        assert_eq!(wheel.deadline(k2), Some(far));
        assert_eq!(wheel.next_deadline(), Some(1_000_000));
        assert!(drain(&mut wheel, 999_999).is_empty());
        assert_eq!(drain(&mut wheel, near), ["to-earlier"]);
        assert!(drain(&mut wheel, far - 1).is_empty());
        // Reset into the past: fires on the next poll, at the same time.
        assert!(wheel.reset(k2, 5));
        assert_eq!(wheel.next_deadline(), Some(far - 1));
        assert_eq!(drain(&mut wheel, far - 1), ["to-later"]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn past_deadline_fires_on_next_poll() {
        let mut wheel = TimerWheel::new(1_000_000);
        wheel.insert(10, "before-start");
        wheel.insert(1_000_000, "at-start");
        assert_eq!(wheel.next_deadline(), Some(1_000_000));
        assert_eq!(drain(&mut wheel, 0), ["before-start", "at-start"]);
        wheel.poll(5_000_000, |_, _: &str| {});
        // Mid-tick: same tick as now, but already reached.
        wheel.insert(4_999_999, "b");
        wheel.insert(4_000_000, "a");
        wheel.insert(5_000_001, "not-yet");
        assert_eq!(drain(&mut wheel, 5_000_000), ["a", "b"]);
        assert_eq!(drain(&mut wheel, 5_000_001), ["not-yet"]);
    }

    #[test]
    fn cascades_across_every_level() {
        const DAY: u64 = 86_400 * 1_000_000_000;
        for start in [0, 123_456_789, u64::MAX / 3, u64::MAX - 40 * TICK_NS] {
            let mut wheel = TimerWheel::new(start);
            let mut deadlines = Vec::new();
            for level in 0..LEVELS as u32 {
                let span = 1u64 << (LEVEL_BITS * level).min(48);
                for offset in [0, 1, span - 1, span, span + 1, 63 * span] {
                    let at = start.saturating_add(offset.saturating_mul(TICK_NS));
                    deadlines.extend([at, at.saturating_add(1)]);
                }
            }
            for d in [DAY, 3 * DAY, 365 * DAY, 100 * 365 * DAY, 1 << 63] {
                deadlines.push(start.saturating_add(d));
            }
            deadlines.extend([u64::MAX, u64::MAX - 1, u64::MAX - TICK_NS]);
            for (i, &d) in deadlines.iter().enumerate() {
                wheel.insert(d, i);
            }
            let mut fired = Vec::new();
            let mut done = vec![false; deadlines.len()];
            let mut rounds = 0;
            while let Some(next) = wheel.next_deadline() {
                rounds += 1;
                assert!(rounds <= deadlines.len() * (LEVELS + 1), "spinning");
                let earliest = (0..deadlines.len())
                    .filter(|&i| !done[i])
                    .map(|i| deadlines[i])
                    .min();
                assert!(Some(next) <= earliest);
                if next > wheel.now_ns {
                    assert_eq!(wheel.poll(next - 1, |_, _| {}), 0);
                }
                wheel.poll(next, |_, i| {
                    assert!(deadlines[i] <= next);
                    done[i] = true;
                    fired.push(i);
                });
            }
            let mut sorted: Vec<usize> = (0..deadlines.len()).collect();
            sorted.sort_by_key(|&i| (deadlines[i], i));
            assert_eq!(fired, sorted, "start {start}");
        }
    }

    #[test]
    fn far_deadlines_do_not_overflow() {
        let mut wheel = TimerWheel::new(0);
        let k = wheel.insert(u64::MAX, ());
        wheel.insert(u64::MAX - 1, ());
        assert!(wheel.reset(k, u64::MAX));
        let mut rounds = 0;
        while wheel.next_deadline() != Some(u64::MAX - 1) {
            let next = wheel.next_deadline().unwrap();
            assert_eq!(wheel.poll(next, |_, _| {}), 0);
            rounds += 1;
            assert!(rounds <= LEVELS);
        }
        assert_eq!(wheel.poll(u64::MAX - 2, |_, _| {}), 0);
        assert_eq!(wheel.poll(u64::MAX - 1, |_, _| {}), 1);
        assert_eq!(wheel.next_deadline(), Some(u64::MAX));
        assert_eq!(wheel.poll(u64::MAX, |_, _| {}), 1);
        wheel.insert(u64::MAX, ());
        assert_eq!(wheel.next_deadline(), Some(u64::MAX));
        assert_eq!(wheel.poll(u64::MAX, |_, _| {}), 1);
    }

    #[test]
    fn random_100k_with_cancellations() {
        const N: usize = 100_000;
        const HORIZON: u64 = 10_000_000_000;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let start = 1_000_000;
        let mut wheel = TimerWheel::new(start);
        let deadlines: Vec<u64> = (0..N).map(|_| start + 1 + rng.below(HORIZON)).collect();
        let keys: Vec<TimerKey> = (0..N).map(|i| wheel.insert(deadlines[i], i)).collect();
        // 10% are cancelled, spread over the run.
        let mut to_cancel: Vec<usize> = (0..N).filter(|_| rng.below(10) == 0).collect();
        let mut cancelled = vec![false; N];
        let mut fired = vec![false; N];
        let mut last: Option<(u64, usize)> = None;
        let mut now = start;
        let mut prev_now = start;
        let mut fired_total = 0;
        while now < start + HORIZON + TICK_NS {
            now += match rng.below(100) {
                0 => rng.below(100_000_000),
                1..=9 => 0,
                _ => rng.below(3 * TICK_NS),
            };
            for _ in 0..rng.below(4) {
                let Some(i) = to_cancel.pop() else { break };
                assert_eq!(wheel.cancel(keys[i]).is_some(), !fired[i]);
                cancelled[i] = !fired[i];
            }
            fired_total += wheel.poll(now, |key, i| {
                assert_eq!(key, keys[i]);
                assert!(
                    !fired[i] && !cancelled[i],
                    "timer {i} fired twice or after cancel"
                );
                fired[i] = true;
                let d = deadlines[i];
                assert!(d <= now, "timer {i} fired early");
                assert!(d > prev_now, "timer {i} fired late");
                assert!(last <= Some((d, i)), "out of order");
                last = Some((d, i));
            });
            prev_now = now;
        }
        for &i in &to_cancel {
            assert_eq!(wheel.cancel(keys[i]), None);
        }
        let never = cancelled.iter().filter(|&&c| c).count();
        assert!(never > N / 20, "only {never} cancelled before firing");
        assert_eq!(fired_total, N - never);
        assert!((0..N).all(|i| fired[i] != cancelled[i]));
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn next_deadline_converges_without_spinning() {
        let mut wheel = TimerWheel::new(0);
        assert_eq!(wheel.next_deadline(), None);
        let mut rng = Rng(42);
        let mut armed: Vec<u64> = Vec::new();
        for _ in 0..2_000 {
            let d = match rng.below(3) {
                0 => rng.below(1_000_000),
                1 => rng.below(10_000_000_000),
                _ => rng.below(1 << 50),
            };
            wheel.insert(d, d);
            armed.push(d);
        }
        armed.sort_unstable();
        armed.reverse();
        let mut rounds = 0;
        while let Some(next) = wheel.next_deadline() {
            let earliest = *armed.last().unwrap();
            assert!(next <= earliest);
            assert!(next > wheel.now_ns || earliest <= wheel.now_ns);
            let fired = wheel.poll(next, |_, d| {
                assert_eq!(armed.pop(), Some(d));
                assert!(d <= next);
            });
            if fired > 0 {
                assert_eq!(next, earliest, "level 0 bound is exact");
            }
            rounds += 1;
            assert!(rounds <= 2_000 * (LEVELS + 1), "spinning");
        }
        assert!(armed.is_empty());
    }

    #[test]
    fn long_idle_jump_is_cheap() {
        const HOUR: u64 = 3_600_000_000_000;
        let mut wheel = TimerWheel::new(0);
        wheel.insert(9 * HOUR, "wake");
        assert_eq!(drain(&mut wheel, 9 * HOUR - 1), Vec::<&str>::new());
        assert_eq!(drain(&mut wheel, 10 * HOUR), ["wake"]);
        assert!(
            wheel.slots_visited <= LEVELS as u64 + 1,
            "{}",
            wheel.slots_visited
        );
        let visited = wheel.slots_visited;
        assert_eq!(wheel.poll(1000 * HOUR, |_, _| {}), 0);
        assert_eq!(wheel.slots_visited, visited, "an empty wheel visits no slot");
    }

    #[test]
    fn slab_is_reused_without_growth() {
        let mut wheel = TimerWheel::new(0);
        let keys: Vec<_> = (0..64).map(|i| wheel.insert(i * 1_000_000, i)).collect();
        for k in keys {
            wheel.cancel(k);
        }
        let capacity = wheel.entries.capacity();
        for round in 0..10_000u64 {
            let k = wheel.insert(round * 7_919, round);
            assert_eq!(wheel.cancel(k), Some(round));
        }
        assert_eq!(wheel.entries.len(), 64);
        assert_eq!(wheel.entries.capacity(), capacity);
        assert!(wheel.occupied.iter().all(|&b| b == 0));
        assert!(wheel.heads.iter().all(|&h| h == NIL));
    }

    #[test]
    fn timing_100k() {
        const N: u64 = 100_000;
        let mut rng = Rng(7);
        let deadlines: Vec<u64> = (0..N).map(|_| rng.below(10_000_000_000)).collect();
        let mut wheel = TimerWheel::new(0);
        let t = Instant::now();
        let keys: Vec<_> = deadlines.iter().map(|&d| wheel.insert(d, ())).collect();
        let insert = t.elapsed();
        let t = Instant::now();
        let mut now = 0;
        let mut fired = 0;
        while now < 10_000_000_000 {
            now += 1_000_000;
            fired += wheel.poll(now, |_, _| {});
        }
        let poll = t.elapsed();
        assert_eq!(fired, N as usize);
        assert!(keys.iter().all(|&k| wheel.deadline(k).is_none()));
        let t = Instant::now();
        for i in 0..N {
            let k = wheel.insert(now + deadlines[i as usize], ());
            wheel.cancel(k);
        }
        let churn = t.elapsed();
        println!(
            "100k: insert {insert:?} ({:.1} ns each), poll to empty {poll:?} ({:.1} ns each), \
             insert+cancel {:.1} ns each",
            insert.as_nanos() as f64 / N as f64,
            poll.as_nanos() as f64 / N as f64,
            churn.as_nanos() as f64 / N as f64,
        );
        assert!(wheel.is_empty());
    }
}
