//! A device wrapper that loses, duplicates, reorders, delays and corrupts
//! received frames, reproducibly from a seed.
//!
//! [`FaultInjector`] applies [`FaultConfig`] to every frame its inner device
//! receives; transmission and buffer allocation pass straight through (wrap
//! the other end of a [`pair`](super::pair) to fault the other direction).
//! For each frame, in this order:
//!
//! 1. **loss**: with probability `loss` the frame is dropped;
//! 2. **corrupt**: with probability `corrupt` one bit of one byte after the
//!    Ethernet header is flipped (so an IP, TCP, UDP or ICMP checksum, not
//!    the link layer, has to catch it); frames with no byte after the
//!    header are left alone;
//! 3. **duplicate**: with probability `duplicate` a copy is made (into an
//!    owned `Vec`), and both copies go through the next steps separately;
//! 4. **reorder**: with probability `reorder` a copy is held back by
//!    `reorder_delay`, so frames behind it overtake it;
//! 5. **delay**: every copy is held by `delay` plus a uniform draw from
//!    `0..jitter`.
//!
//! A held frame is released by a later [`Device::receive`] whose `now` has
//! reached its release time, in release-time order, frames due at the same
//! time in arrival order. [`FaultInjector::next_release`] tells the caller
//! when to poll again. A frame is never released early.
//!
//! Determinism: the same seed, configuration and sequence of calls (frames
//! and `now`s) give the same faults. Each fault draws from its own
//! generator, seeded from `seed`, and draws the same number of values for
//! every frame (per copy for reorder and jitter) whatever the rates, so
//! changing one rate leaves the other faults' decisions unchanged. Rates are probabilities: a draw `r`
//! in `[0, 1)` triggers a fault when `r < rate`, so 0 (or NaN) never
//! triggers, 1 always does, and values outside `0..=1` act as clamped.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::{Capabilities, Device, DeviceStats};
use crate::time::Instant;
use crate::wire::EthernetFrame;

/// What to do to received frames. The default does nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Probability that a frame is dropped.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by `reorder_delay`.
    pub reorder: f64,
    /// How long a reordered frame is held, on top of `delay` and jitter.
    pub reorder_delay: Duration,
    /// How long every frame is held.
    pub delay: Duration,
    /// Every frame is held a further uniform `0..jitter`.
    pub jitter: Duration,
    /// Probability that one bit of a frame is flipped.
    pub corrupt: f64,
    /// Seed of the generators.
    pub seed: u64,
}

/// What the injector has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames received from the inner device and not dropped (a duplicated
    /// frame counts once).
    pub passed: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Copies held back by `reorder_delay`.
    pub reordered: u64,
    /// Copies held by a non-zero `delay` plus jitter.
    pub delayed: u64,
    /// Frames with a bit flipped.
    pub corrupted: u64,
}

/// A received frame: the inner device's buffer, or a copy made for a
/// duplicate.
#[derive(Debug)]
pub enum FaultBuf<B> {
    /// The inner device's own buffer.
    Inner(B),
    /// A duplicate's copy.
    Owned(Vec<u8>),
}

impl<B: AsRef<[u8]>> AsRef<[u8]> for FaultBuf<B> {
    fn as_ref(&self) -> &[u8] {
        match self {
            FaultBuf::Inner(buf) => buf.as_ref(),
            FaultBuf::Owned(vec) => vec,
        }
    }
}

impl<B: AsMut<[u8]>> AsMut<[u8]> for FaultBuf<B> {
    fn as_mut(&mut self) -> &mut [u8] {
        match self {
            FaultBuf::Inner(buf) => buf.as_mut(),
            FaultBuf::Owned(vec) => vec,
        }
    }
}

/// splitmix64: a tiny, well-mixed generator; any seed (zero included) is
/// fine.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Whether an event of probability `rate` happens.
    fn chance(&mut self, rate: f64) -> bool {
        self.next_f64() < rate
    }

    /// Uniform in `0..bound` (0 if `bound` is 0), by multiply-high.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// One generator per fault, so that rates do not influence each other.
#[derive(Clone, Debug)]
struct Rngs {
    loss: Rng,
    corrupt: Rng,
    duplicate: Rng,
    reorder: Rng,
    jitter: Rng,
}

impl Rngs {
    fn new(seed: u64) -> Rngs {
        let mut master = Rng(seed);
        Rngs {
            loss: Rng(master.next_u64()),
            corrupt: Rng(master.next_u64()),
            duplicate: Rng(master.next_u64()),
            reorder: Rng(master.next_u64()),
            jitter: Rng(master.next_u64()),
        }
    }
}

/// A frame waiting for its release time. Ordered so that the heap's
/// maximum is the earliest release, then the earliest arrival.
struct Held<B> {
    release: Instant,
    seq: u64,
    buf: FaultBuf<B>,
}

impl<B> PartialEq for Held<B> {
    fn eq(&self, other: &Self) -> bool {
        (self.release, self.seq) == (other.release, other.seq)
    }
}

impl<B> Eq for Held<B> {}

impl<B> PartialOrd for Held<B> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<B> Ord for Held<B> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.release, other.seq).cmp(&(self.release, self.seq))
    }
}

/// Wraps a device and applies [`FaultConfig`] to the frames it receives.
pub struct FaultInjector<D: Device> {
    inner: D,
    config: FaultConfig,
    rngs: Rngs,
    held: BinaryHeap<Held<D::RxBuf>>,
    /// Arrival counter, to release frames due at the same time in order.
    seq: u64,
    /// Frames just received from the inner device.
    scratch: Vec<D::RxBuf>,
    stats: FaultStats,
    rx_frames: u64,
    rx_bytes: u64,
}

impl<D: Device> FaultInjector<D> {
    /// Wraps `inner`, applying `config`.
    pub fn new(inner: D, config: FaultConfig) -> Self {
        FaultInjector {
            inner,
            config,
            rngs: Rngs::new(config.seed),
            held: BinaryHeap::new(),
            seq: 0,
            scratch: Vec::new(),
            stats: FaultStats::default(),
            rx_frames: 0,
            rx_bytes: 0,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Changes the rates and delays from now on; frames already held keep
    /// their release times. The generators are reseeded only if the seed
    /// changes.
    pub fn set_config(&mut self, config: FaultConfig) {
        if config.seed != self.config.seed {
            self.rngs = Rngs::new(config.seed);
        }
        self.config = config;
    }

    /// What the injector has done so far.
    pub fn fault_stats(&self) -> FaultStats {
        self.stats
    }

    /// Frames held back, waiting for their release time.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// When the earliest held frame is due, if any: the caller should poll
    /// again by then even if the inner device stays quiet.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.peek().map(|h| h.release)
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwraps the device; held frames are dropped.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Moves due frames to `out` until it has `limit` frames.
    fn release_due(&mut self, now: Instant, out: &mut Vec<FaultBuf<D::RxBuf>>, limit: usize) {
        while out.len() < limit && self.held.peek().is_some_and(|h| h.release <= now) {
            let held = self.held.pop().expect("peeked");
            self.deliver(out, held.buf);
        }
    }

    fn deliver(&mut self, out: &mut Vec<FaultBuf<D::RxBuf>>, buf: FaultBuf<D::RxBuf>) {
        self.rx_frames += 1;
        self.rx_bytes += buf.as_ref().len() as u64;
        out.push(buf);
    }

    /// Flips the bit `draw` picks after the Ethernet header; whether it
    /// could.
    fn corrupt(frame: &mut [u8], draw: u64) -> bool {
        let header = EthernetFrame::<&[u8]>::HEADER_LEN;
        let Some(span) = frame.len().checked_sub(header).filter(|&n| n > 0) else {
            return false;
        };
        let byte = header + (draw >> 3) as usize % span;
        frame[byte] ^= 1 << (draw & 7);
        true
    }

    /// Decides the release time of one copy arriving at `now`.
    fn release_time(&mut self, now: Instant) -> Instant {
        let reorder = self.rngs.reorder.chance(self.config.reorder);
        let jitter_ns = u64::try_from(self.config.jitter.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(self.rngs.jitter.below(jitter_ns));
        let mut hold = self.config.delay + jitter;
        if !hold.is_zero() {
            self.stats.delayed += 1;
        }
        if reorder {
            self.stats.reordered += 1;
            hold += self.config.reorder_delay;
        }
        now + hold
    }

    /// Delivers `buf` at once if it is due and nothing is held (so it
    /// cannot overtake anything), else holds it.
    fn schedule(
        &mut self,
        now: Instant,
        buf: FaultBuf<D::RxBuf>,
        out: &mut Vec<FaultBuf<D::RxBuf>>,
        limit: usize,
    ) {
        let release = self.release_time(now);
        if release <= now && self.held.is_empty() && out.len() < limit {
            self.deliver(out, buf);
        } else {
            self.seq += 1;
            self.held.push(Held {
                release,
                seq: self.seq,
                buf,
            });
        }
    }
}

impl<D: Device> Device for FaultInjector<D> {
    type RxBuf = FaultBuf<D::RxBuf>;
    type TxBuf = D::TxBuf;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// Delivers due held frames first, then pulls at most the remaining
    /// room from the inner device. Duplicates beyond `max` wait for the
    /// next call.
    fn receive(&mut self, now: Instant, out: &mut Vec<Self::RxBuf>, max: usize) -> usize {
        let start = out.len();
        let limit = start.saturating_add(max);
        self.release_due(now, out, limit);
        let room = limit - out.len();
        if room > 0 {
            let mut scratch = std::mem::take(&mut self.scratch);
            self.inner.receive(now, &mut scratch, room);
            for mut buf in scratch.drain(..) {
                let lost = self.rngs.loss.chance(self.config.loss);
                let corrupt = self.rngs.corrupt.chance(self.config.corrupt);
                let corrupt_at = self.rngs.corrupt.next_u64();
                let duplicate = self.rngs.duplicate.chance(self.config.duplicate);
                if lost {
                    self.stats.dropped += 1;
                    continue;
                }
                self.stats.passed += 1;
                if corrupt && Self::corrupt(buf.as_mut(), corrupt_at) {
                    self.stats.corrupted += 1;
                }
                let copy = duplicate.then(|| FaultBuf::Owned(buf.as_ref().to_vec()));
                self.schedule(now, FaultBuf::Inner(buf), out, limit);
                if let Some(copy) = copy {
                    self.stats.duplicated += 1;
                    self.schedule(now, copy, out, limit);
                }
            }
            self.scratch = scratch;
            self.release_due(now, out, limit);
        }
        out.len() - start
    }

    fn alloc_tx(&mut self, len: usize) -> Option<Self::TxBuf> {
        self.inner.alloc_tx(len)
    }

    fn transmit(&mut self, now: Instant, batch: &mut Vec<Self::TxBuf>) -> usize {
        self.inner.transmit(now, batch)
    }

    /// The inner device's counters, except that `rx_frames` and `rx_bytes`
    /// count what this wrapper handed to the stack (after loss, duplication
    /// and holding).
    fn stats(&self) -> DeviceStats {
        DeviceStats {
            rx_frames: self.rx_frames,
            rx_bytes: self.rx_bytes,
            ..self.inner.stats()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phy::pair::{pair, PairDevice};

    type Faulty = FaultInjector<PairDevice>;

    /// A pair whose `b` end receives through an injector with `config`.
    fn setup(config: FaultConfig, depth: usize) -> (PairDevice, Faulty) {
        let (a, b) = pair(Capabilities::default(), depth);
        (a, FaultInjector::new(b, config))
    }

    /// A 64-byte frame tagged with `n` in bytes 14..18.
    fn frame(n: u32) -> [u8; 64] {
        let mut f = [0u8; 64];
        f[14..18].copy_from_slice(&n.to_be_bytes());
        f
    }

    fn tag(f: &[u8]) -> u32 {
        u32::from_be_bytes(f[14..18].try_into().unwrap())
    }

    /// Receives everything due at `now`, as tags.
    fn drain(dev: &mut Faulty, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        while dev.receive(now, &mut out, 32) > 0 {}
        out.iter().map(|b| tag(b.as_ref())).collect()
    }

    /// Injects `count` frames one at a time, receiving after each at
    /// `i` ms, then drains at `end`; returns what arrived.
    fn run(config: FaultConfig, count: u32, end: Instant) -> (Vec<u32>, FaultStats) {
        let (_a, mut b) = setup(config, 64);
        let mut got = Vec::new();
        for i in 0..count {
            assert!(b.inner().inject(&frame(i)));
            got.extend(drain(&mut b, Instant::from_millis(u64::from(i))));
        }
        got.extend(drain(&mut b, end));
        assert_eq!(b.held(), 0);
        (got, b.fault_stats())
    }

    #[test]
    fn default_config_passes_everything_in_order() {
        let (got, stats) = run(FaultConfig::default(), 100, Instant::from_millis(100));
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(
            stats,
            FaultStats {
                passed: 100,
                ..FaultStats::default()
            }
        );
    }

    #[test]
    fn loss_is_near_its_rate_and_deterministic() {
        let config = FaultConfig {
            loss: 0.1,
            seed: 42,
            ..FaultConfig::default()
        };
        let end = Instant::from_millis(20_000);
        let (got, stats) = run(config, 10_000, end);
        assert!((850..=1150).contains(&stats.dropped), "dropped {}", stats.dropped);
        assert_eq!(stats.passed + stats.dropped, 10_000);
        assert_eq!(got.len() as u64, stats.passed);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "loss alone keeps order");
        // Same seed, same result; another seed, another result.
        let (again, stats_again) = run(config, 10_000, end);
        assert_eq!((&got, stats), (&again, stats_again));
        let (other, _) = run(FaultConfig { seed: 43, ..config }, 10_000, end);
        assert_ne!(got, other);
    }

    #[test]
    fn duplicates_arrive_twice() {
        let config = FaultConfig {
            duplicate: 1.0,
            ..FaultConfig::default()
        };
        let (got, stats) = run(config, 3, Instant::from_millis(10));
        assert_eq!(got, vec![0, 0, 1, 1, 2, 2]);
        assert_eq!((stats.passed, stats.duplicated), (3, 3));
    }

    #[test]
    fn reordered_frames_are_overtaken() {
        let (_a, mut b) = setup(
            FaultConfig {
                reorder: 1.0,
                reorder_delay: Duration::from_millis(5),
                ..FaultConfig::default()
            },
            64,
        );
        b.inner().inject(&frame(0));
        assert!(drain(&mut b, Instant::from_millis(0)).is_empty());
        assert_eq!(b.next_release(), Some(Instant::from_millis(5)));
        b.set_config(FaultConfig::default());
        b.inner().inject(&frame(1));
        assert_eq!(drain(&mut b, Instant::from_millis(1)), vec![1]);
        assert_eq!(drain(&mut b, Instant::from_millis(5)), vec![0]);
        assert_eq!(b.fault_stats().reordered, 1);
    }

    #[test]
    fn some_frames_reordered_at_half_rate() {
        let config = FaultConfig {
            reorder: 0.5,
            reorder_delay: Duration::from_millis(3),
            seed: 7,
            ..FaultConfig::default()
        };
        let (got, stats) = run(config, 200, Instant::from_millis(1000));
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>(), "nothing lost");
        assert_ne!(got, sorted, "some order changed");
        assert!((60..=140).contains(&stats.reordered), "{}", stats.reordered);
    }

    #[test]
    fn corruption_flips_one_bit_after_the_ethernet_header() {
        let (_a, mut b) = setup(
            FaultConfig {
                corrupt: 1.0,
                seed: 3,
                ..FaultConfig::default()
            },
            64,
        );
        for _ in 0..50 {
            b.inner().inject(&[0u8; 64]);
        }
        b.inner().inject(&[0u8; 14]); // nothing after the header to flip
        let mut out = Vec::new();
        assert_eq!(b.receive(Instant::ZERO, &mut out, 64), 51);
        let mut positions = std::collections::HashSet::new();
        for buf in &out[..50] {
            let bytes = buf.as_ref();
            assert!(bytes[..14].iter().all(|&x| x == 0));
            let flipped: u32 = bytes.iter().map(|x| x.count_ones()).sum();
            assert_eq!(flipped, 1);
            positions.insert(bytes.iter().position(|&x| x != 0));
        }
        assert!(positions.len() > 10, "positions vary: {positions:?}");
        assert_eq!(out[50].as_ref(), &[0u8; 14]);
        assert_eq!(b.fault_stats().corrupted, 50);
    }

    #[test]
    fn delay_never_releases_early() {
        let delay = Duration::from_millis(10);
        let jitter = Duration::from_millis(4);
        let (_a, mut b) = setup(
            FaultConfig {
                delay,
                jitter,
                seed: 9,
                ..FaultConfig::default()
            },
            256,
        );
        let mut sent_at = Vec::new();
        let mut released = Vec::new();
        let mut t = Instant::ZERO;
        for i in 0..200u32 {
            b.inner().inject(&frame(i));
            sent_at.push(t);
            for tag in drain(&mut b, t) {
                released.push((tag, t));
            }
            t += Duration::from_micros(250);
        }
        while let Some(next) = b.next_release() {
            for tag in drain(&mut b, next) {
                released.push((tag, next));
            }
        }
        assert_eq!(released.len(), 200);
        let mut late = Duration::ZERO;
        for &(tag, at) in &released {
            let held = at - sent_at[tag as usize];
            assert!(held >= delay, "frame {tag} held {held:?}");
            late = late.max(held);
        }
        assert!(late <= delay + jitter + Duration::from_micros(250));
        assert!(late > delay, "jitter had an effect");
        assert_eq!(b.fault_stats().delayed, 200);
        assert_eq!(b.stats().rx_frames, 200);
    }

    #[test]
    fn rates_do_not_influence_each_other() {
        let base = FaultConfig {
            loss: 0.3,
            seed: 11,
            ..FaultConfig::default()
        };
        let (plain, _) = run(base, 500, Instant::from_millis(1000));
        let with_dup = FaultConfig {
            duplicate: 0.5,
            ..base
        };
        let (mut dup, _) = run(with_dup, 500, Instant::from_millis(1000));
        dup.dedup();
        assert_eq!(plain, dup, "the same frames are lost");
    }

    #[test]
    fn receive_respects_max_and_transmit_passes_through() {
        let (mut a, mut b) = setup(
            FaultConfig {
                duplicate: 1.0,
                ..FaultConfig::default()
            },
            64,
        );
        for i in 0..3 {
            b.inner().inject(&frame(i));
        }
        let mut out = Vec::new();
        assert_eq!(b.receive(Instant::ZERO, &mut out, 4), 4);
        assert_eq!(b.receive(Instant::ZERO, &mut out, 4), 2);
        let tags: Vec<u32> = out.iter().map(|f| tag(f.as_ref())).collect();
        assert_eq!(tags, vec![0, 0, 1, 1, 2, 2]);
        let mut batch = vec![b.alloc_tx(64).unwrap()];
        batch[0].as_mut().copy_from_slice(&frame(9));
        assert_eq!(b.transmit(Instant::ZERO, &mut batch), 1);
        assert_eq!(b.stats().tx_frames, 1);
        let mut back = Vec::new();
        a.receive(Instant::ZERO, &mut back, 4);
        assert_eq!(tag(back[0].as_ref()), 9);
    }
}
