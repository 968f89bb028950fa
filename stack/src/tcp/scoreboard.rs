//! The sender's SACK scoreboard (RFC 6675 §3–4, fed by RFC 2018 blocks).
//!
//! [`Scoreboard`] keeps the ranges of sequence space above `snd_una` that
//! the peer has selectively acknowledged, as `[start, end)` pairs: sorted,
//! disjoint, not adjacent (touching blocks are merged), within
//! `(snd_una, snd_max]` as of the last [`update`](Scoreboard::update), and
//! at most [`MAX_SACK_RANGES`] of them. All comparisons are in sequence
//! space ([`SeqNumber`]'s order), so everything works across the 2^32 wrap
//! as long as the window is below 2^31.
//!
//! On top of it are RFC 6675's routines: `IsLost` ([`Scoreboard::is_lost`]),
//! the candidates of `NextSeg` rule 1 ([`Scoreboard::next_hole`]) and
//! `SetPipe` ([`Scoreboard::pipe`]). Everything is O(number of ranges);
//! nothing allocates.
//!
//! The receiver may renege on SACKed data (RFC 2018 §8), so SACKed bytes
//! stay in the send buffer until cumulatively acknowledged, and the socket
//! should [`clear`](Scoreboard::clear) the scoreboard on an RTO (RFC 6675
//! §5.1).

use crate::wire::SeqNumber;

/// Most SACKed ranges kept. A block that would need one more range is
/// ignored: its data is then treated as not SACKed, which at worst costs
/// a needless retransmission.
pub const MAX_SACK_RANGES: usize = 64;

/// RFC 6675's DupThresh.
pub const DUP_THRESH: usize = 3;

/// Bytes from `from` to `to`; needs `from <= to`.
#[inline]
fn span(from: SeqNumber, to: SeqNumber) -> usize {
    to.0.wrapping_sub(from.0) as usize
}

/// The SACKed ranges above `snd_una`.
#[derive(Debug, Clone)]
pub struct Scoreboard {
    ranges: [(SeqNumber, SeqNumber); MAX_SACK_RANGES],
    count: usize,
    /// Sum of the ranges' lengths.
    sacked: usize,
}

impl Default for Scoreboard {
    fn default() -> Self {
        Scoreboard::new()
    }
}

impl Scoreboard {
    /// An empty scoreboard.
    pub const fn new() -> Scoreboard {
        Scoreboard {
            ranges: [(SeqNumber(0), SeqNumber(0)); MAX_SACK_RANGES],
            count: 0,
            sacked: 0,
        }
    }

    /// Forgets every SACKed range (after an RTO, or when SACK is off).
    pub fn clear(&mut self) {
        self.count = 0;
        self.sacked = 0;
    }

    /// Whether nothing is SACKed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The SACKed ranges, `[start, end)`, lowest first.
    pub fn ranges(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.ranges[..self.count].iter().copied()
    }

    /// Processes an ACK: drops what `snd_una` now covers, then merges the
    /// SACK `blocks` (`[left, right)` edges as received). Returns how many
    /// bytes became SACKed for the first time.
    ///
    /// Ignored: empty or inverted blocks; blocks ending at or below
    /// `snd_una` (D-SACKs of acknowledged data, RFC 2883 §4); a first block
    /// inside the second (a D-SACK of data already SACKed); blocks ending
    /// beyond `snd_max` (the peer acknowledges data never sent). A block
    /// starting below `snd_una` is trimmed to it.
    pub fn update(
        &mut self,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
        blocks: &[(SeqNumber, SeqNumber)],
    ) -> usize {
        self.advance(snd_una);
        let mut newly = 0;
        for (i, &(left, right)) in blocks.iter().enumerate() {
            if right <= left || right <= snd_una || right > snd_max {
                continue;
            }
            if i == 0 {
                if let Some(&(l2, r2)) = blocks.get(1) {
                    if left >= l2 && right <= r2 {
                        continue;
                    }
                }
            }
            newly += self.insert(left.max(snd_una), right);
        }
        newly
    }

    /// Drops the ranges, or parts, below `snd_una`.
    fn advance(&mut self, snd_una: SeqNumber) {
        let n = self.count;
        let gone = self.ranges[..n].partition_point(|&(_, e)| e <= snd_una);
        for &(s, e) in &self.ranges[..gone] {
            self.sacked -= span(s, e);
        }
        self.ranges.copy_within(gone..n, 0);
        self.count -= gone;
        if let Some(first) = self.ranges[..self.count].first_mut() {
            if first.0 < snd_una {
                self.sacked -= span(first.0, snd_una);
                first.0 = snd_una;
            }
        }
    }

    /// Merges `[left, right)` (non-empty) in; returns the bytes it added.
    fn insert(&mut self, left: SeqNumber, right: SeqNumber) -> usize {
        let n = self.count;
        let r = &self.ranges[..n];
        // Ranges i..j overlap or touch [left, right].
        let i = r.partition_point(|&(_, e)| e < left);
        let j = r.partition_point(|&(s, _)| s <= right);
        if i == j {
            if n == MAX_SACK_RANGES {
                return 0;
            }
            self.ranges.copy_within(i..n, i + 1);
            self.ranges[i] = (left, right);
            self.count += 1;
            let added = span(left, right);
            self.sacked += added;
            return added;
        }
        let merged = (left.min(r[i].0), right.max(r[j - 1].1));
        let before: usize = r[i..j].iter().map(|&(s, e)| span(s, e)).sum();
        let added = span(merged.0, merged.1) - before;
        self.ranges[i] = merged;
        self.ranges.copy_within(j..n, i + 1);
        self.count -= j - i - 1;
        self.sacked += added;
        added
    }

    /// Checks the invariants (for tests and fuzzing: this is not on the
    /// data path): at most [`MAX_SACK_RANGES`] ranges, each non-empty,
    /// sorted, disjoint and not adjacent, all within `[snd_una, snd_max]`
    /// (so every comparison is within one half of sequence space), and
    /// the byte count their sum. Describes the first one broken.
    pub fn check_invariants(&self, snd_una: SeqNumber, snd_max: SeqNumber) -> Result<(), String> {
        if self.count > MAX_SACK_RANGES {
            return Err(format!("scoreboard: {} ranges", self.count));
        }
        let mut sum = 0usize;
        let mut prev: Option<SeqNumber> = None;
        for (i, &(s, e)) in self.ranges[..self.count].iter().enumerate() {
            if s.distance(snd_una) < 0 || snd_max.distance(e) < 0 || e.distance(s) <= 0 {
                return Err(format!(
                    "scoreboard: range {i} [{}, {}) is empty or outside [snd_una {}, snd_max {}]",
                    s.0, e.0, snd_una.0, snd_max.0
                ));
            }
            if prev.is_some_and(|p| s.distance(p) <= 0) {
                return Err(format!(
                    "scoreboard: range {i} [{}, {}) overlaps or touches the one before",
                    s.0, e.0
                ));
            }
            sum += span(s, e);
            prev = Some(e);
        }
        if sum != self.sacked {
            return Err(format!(
                "scoreboard: counts {} SACKed bytes, its ranges hold {sum}",
                self.sacked
            ));
        }
        Ok(())
    }

    /// Whether the byte `seq` has been SACKed.
    pub fn is_sacked(&self, seq: SeqNumber) -> bool {
        let r = &self.ranges[..self.count];
        let i = r.partition_point(|&(s, _)| s <= seq);
        i > 0 && seq < r[i - 1].1
    }

    /// Total SACKed bytes.
    pub fn sacked_bytes(&self) -> usize {
        self.sacked
    }

    /// The right edge (exclusive) of the highest SACKed range: one past the
    /// highest SACKed byte.
    pub fn highest_sacked(&self) -> Option<SeqNumber> {
        self.ranges[..self.count].last().map(|&(_, e)| e)
    }

    /// RFC 6675 `IsLost(seq)` with DupThresh = 3: whether at least
    /// DupThresh discontiguous SACKed ranges lie above `seq`, or more than
    /// (DupThresh − 1)·`mss` SACKed bytes do.
    pub fn is_lost(&self, seq: SeqNumber, mss: usize) -> bool {
        let mut ranges = 0;
        let mut bytes = 0;
        for &(s, e) in self.ranges[..self.count].iter().rev() {
            if e <= seq + 1 {
                break;
            }
            ranges += 1;
            bytes += span(s.max(seq + 1), e);
            if lost(ranges, bytes, mss) {
                return true;
            }
        }
        false
    }

    /// The next un-SACKed range `[start, end)` at or after `from` (and
    /// `snd_una`) that lies below a SACKed range, so below
    /// [`highest_sacked`](Self::highest_sacked): the candidates of RFC 6675
    /// `NextSeg` rule 1, which the caller checks with
    /// [`is_lost`](Self::is_lost) and bounds by `high_rxt`. `None` if there
    /// is no such hole below `snd_max`.
    pub fn next_hole(
        &self,
        from: SeqNumber,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
    ) -> Option<(SeqNumber, SeqNumber)> {
        let r = &self.ranges[..self.count];
        let mut start = from.max(snd_una);
        let mut i = r.partition_point(|&(_, e)| e <= start);
        if i < r.len() && r[i].0 <= start {
            start = r[i].1;
            i += 1;
        }
        let end = r.get(i)?.0.min(snd_max);
        (start < end).then_some((start, end))
    }

    /// RFC 6675 `SetPipe`: the bytes in `[snd_una, snd_max)` estimated to
    /// be in the network. Each un-SACKed byte counts once if not lost (its
    /// original transmission may be in flight) and once more if it was
    /// retransmitted in this recovery, i.e. lies below `high_rxt` (here the
    /// *end* of the retransmitted data: pass `snd_una` when nothing was
    /// retransmitted).
    ///
    /// Whether a byte is lost depends only on the SACKed ranges above it,
    /// so it is the same for every byte of one hole, and this takes one
    /// pass over the ranges, from the top.
    pub fn pipe(&self, snd_una: SeqNumber, snd_max: SeqNumber, high_rxt: SeqNumber, mss: usize) -> usize {
        if snd_max <= snd_una {
            return 0;
        }
        let hole = |from: SeqNumber, to: SeqNumber, lost: bool| -> usize {
            if to <= from {
                return 0;
            }
            let retransmitted = if high_rxt > from {
                span(from, high_rxt.min(to))
            } else {
                0
            };
            retransmitted + if lost { 0 } else { span(from, to) }
        };
        let mut pipe = 0;
        let mut top = snd_max;
        let (mut ranges, mut bytes) = (0, 0);
        for &(s, e) in self.ranges[..self.count].iter().rev() {
            if e <= snd_una {
                break;
            }
            let (s, e) = (s.max(snd_una), e.min(snd_max));
            pipe += hole(e, top, lost(ranges, bytes, mss));
            if e > s {
                ranges += 1;
                bytes += span(s, e);
            }
            top = top.min(s);
        }
        pipe + hole(snd_una, top, lost(ranges, bytes, mss))
    }
}

/// The `IsLost` condition for `ranges` SACKed ranges holding `bytes`
/// above a byte.
#[inline]
fn lost(ranges: usize, bytes: usize, mss: usize) -> bool {
    ranges >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    fn ranges(sb: &Scoreboard) -> Vec<(u32, u32)> {
        sb.ranges().map(|(s, e)| (s.0, e.0)).collect()
    }

    #[test]
    fn merges_and_counts_new_bytes_once() {
        let mut sb = Scoreboard::new();
        let (una, max) = (seq(1000), seq(10_000));
        assert_eq!(sb.update(una, max, &[(seq(3000), seq(4000))]), 1000);
        assert_eq!(
            sb.update(una, max, &[(seq(3000), seq(4000))]),
            0,
            "duplicate block"
        );
        assert_eq!(
            sb.update(una, max, &[(seq(5000), seq(6000)), (seq(3500), seq(4500))]),
            1500
        );
        assert_eq!(ranges(&sb), [(3000, 4500), (5000, 6000)]);
        // One block bridging both ranges adds only the gap.
        assert_eq!(sb.update(una, max, &[(seq(2000), seq(7000))]), 1000 + 500 + 1000);
        assert_eq!(ranges(&sb), [(2000, 7000)]);
        assert_eq!(sb.sacked_bytes(), 5000);
        // Adjacent blocks merge.
        assert_eq!(sb.update(una, max, &[(seq(7000), seq(8000))]), 1000);
        assert_eq!(ranges(&sb), [(2000, 8000)]);
        assert!(sb.is_sacked(seq(2000)) && sb.is_sacked(seq(7999)));
        assert!(!sb.is_sacked(seq(1999)) && !sb.is_sacked(seq(8000)));
        assert_eq!(sb.highest_sacked(), Some(seq(8000)));
        sb.clear();
        assert!(sb.is_empty());
        assert_eq!((sb.sacked_bytes(), sb.highest_sacked()), (0, None));
    }

    #[test]
    fn ignores_dsack_bogus_and_empty_blocks() {
        let mut sb = Scoreboard::default();
        let (una, max) = (seq(1000), seq(5000));
        // Below snd_una (a D-SACK), beyond snd_max, empty, inverted.
        let bad = [
            (seq(500), seq(1000)),
            (seq(4000), seq(5001)),
            (seq(2000), seq(2000)),
            (seq(3000), seq(2500)),
        ];
        assert_eq!(sb.update(una, max, &bad), 0);
        assert!(sb.is_empty());
        // A first block inside the second is a D-SACK; the second counts.
        let dsack = [(seq(2000), seq(2100)), (seq(2000), seq(3000))];
        assert_eq!(sb.update(una, max, &dsack), 1000);
        // A block straddling snd_una is trimmed.
        assert_eq!(sb.update(una, max, &[(seq(900), seq(1500))]), 500);
        assert_eq!(ranges(&sb), [(1000, 1500), (2000, 3000)]);
        assert_eq!(
            sb.update(una, max, &[(seq(4000), seq(5000))]),
            1000,
            "up to snd_max"
        );
    }

    #[test]
    fn cumulative_ack_prunes() {
        let mut sb = Scoreboard::new();
        let max = seq(10_000);
        sb.update(
            seq(0),
            max,
            &[
                (seq(1000), seq(2000)),
                (seq(3000), seq(4000)),
                (seq(5000), seq(6000)),
            ],
        );
        assert_eq!(sb.update(seq(3500), max, &[]), 0);
        assert_eq!(ranges(&sb), [(3500, 4000), (5000, 6000)]);
        assert_eq!(sb.sacked_bytes(), 1500);
        sb.update(seq(6000), max, &[]);
        assert!(sb.is_empty());
        assert_eq!(sb.sacked_bytes(), 0);
    }

    #[test]
    fn bounded_number_of_ranges() {
        let mut sb = Scoreboard::new();
        let max = seq(1_000_000);
        for i in 0..MAX_SACK_RANGES as u32 {
            assert_eq!(
                sb.update(seq(0), max, &[(seq(100 + 20 * i), seq(110 + 20 * i))]),
                10
            );
        }
        assert_eq!(
            sb.update(seq(0), max, &[(seq(50_000), seq(50_010))]),
            0,
            "full: ignored"
        );
        assert_eq!(sb.highest_sacked(), Some(seq(100 + 20 * 63 + 10)));
        // Extending an existing range still works.
        assert_eq!(sb.update(seq(0), max, &[(seq(110), seq(115))]), 5);
        assert_eq!(sb.sacked_bytes(), 64 * 10 + 5);
    }

    #[test]
    fn is_lost_rules() {
        let mut sb = Scoreboard::new();
        let mss = 100;
        let max = seq(10_000);
        // One range of 2 MSS above: neither rule.
        sb.update(seq(0), max, &[(seq(1000), seq(1200))]);
        assert!(!sb.is_lost(seq(0), mss));
        // 2 MSS + 1 bytes: lost by the byte rule.
        sb.update(seq(0), max, &[(seq(1200), seq(1201))]);
        assert!(sb.is_lost(seq(0), mss));
        // Only the bytes above seq count.
        assert!(!sb.is_lost(seq(1000), mss));
        assert!(!sb.is_lost(seq(2000), mss));
        // Three small discontiguous ranges: lost by the count rule.
        let mut sb = Scoreboard::new();
        sb.update(
            seq(0),
            max,
            &[(seq(100), seq(101)), (seq(200), seq(201)), (seq(300), seq(301))],
        );
        assert!(sb.is_lost(seq(50), mss));
        assert!(!sb.is_lost(seq(150), mss));
        assert!(
            !sb.is_lost(seq(100), mss),
            "the range holding seq is not above it"
        );
    }

    #[test]
    fn next_hole_walks_the_gaps() {
        let mut sb = Scoreboard::new();
        let (una, max) = (seq(1000), seq(9000));
        assert_eq!(sb.next_hole(una, una, max), None);
        sb.update(una, max, &[(seq(2000), seq(3000)), (seq(4000), seq(5000))]);
        assert_eq!(sb.next_hole(una, una, max), Some((seq(1000), seq(2000))));
        assert_eq!(sb.next_hole(seq(1500), una, max), Some((seq(1500), seq(2000))));
        assert_eq!(sb.next_hole(seq(2000), una, max), Some((seq(3000), seq(4000))));
        assert_eq!(sb.next_hole(seq(2500), una, max), Some((seq(3000), seq(4000))));
        assert_eq!(sb.next_hole(seq(4000), una, max), None, "nothing SACKed above");
        assert_eq!(sb.next_hole(seq(6000), una, max), None);
        assert_eq!(
            sb.next_hole(seq(0), una, max),
            Some((seq(1000), seq(2000))),
            "from below snd_una"
        );
    }

    /// SetPipe byte by byte, straight from RFC 6675 §4.
    fn pipe_by_octet(
        sb: &Scoreboard,
        una: SeqNumber,
        max: SeqNumber,
        high_rxt: SeqNumber,
        mss: usize,
    ) -> usize {
        let mut pipe = 0;
        let mut s = una;
        while s < max {
            if !sb.is_sacked(s) {
                if !sb.is_lost(s, mss) {
                    pipe += 1;
                }
                if s < high_rxt {
                    pipe += 1;
                }
            }
            s += 1;
        }
        pipe
    }

    #[test]
    fn pipe_matches_rfc6675_definition() {
        let mss = 10;
        let una = seq(1000);
        let max = una + 200;
        let mut sb = Scoreboard::new();
        let cases: [&[(u32, u32)]; 4] = [
            &[],
            &[(1010, 1020)],
            &[(1010, 1020), (1030, 1035), (1050, 1080), (1100, 1101)],
            &[(1005, 1006), (1007, 1008), (1009, 1010), (1150, 1200)],
        ];
        for blocks in cases {
            sb.clear();
            let blocks: Vec<_> = blocks.iter().map(|&(l, r)| (seq(l), seq(r))).collect();
            sb.update(una, max, &blocks);
            for high_rxt in [una, una + 5, una + 40, una + 120, max] {
                let expected = pipe_by_octet(&sb, una, max, high_rxt, mss);
                assert_eq!(
                    sb.pipe(una, max, high_rxt, mss),
                    expected,
                    "{blocks:?} high_rxt {high_rxt}"
                );
            }
        }
        assert_eq!(sb.pipe(max, max, max, mss), 0);
        // Nothing SACKed and nothing retransmitted: everything in flight.
        sb.clear();
        assert_eq!(sb.pipe(una, max, una, mss), 200);
    }

    #[test]
    fn random_blocks_match_a_byte_map() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u32| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % u64::from(n)) as u32
        };
        // Sequence space around the wrap; blocks on 100-byte slots keep the
        // number of ranges below the limit.
        let base = SeqNumber(u32::MAX - 3000);
        let max = base + 8000;
        let (mut sb, mut map, mut una) = (Scoreboard::new(), vec![false; 8000], 0);
        for round in 0..2000 {
            if next(20) == 0 {
                una = (una + next(600) as usize).min(8000);
            }
            let left = next(82) as usize * 100;
            let right = left + (1 + next(5) as usize) * 100;
            let block = (base + left, base + right);
            let newly = sb.update(base + una, max, &[block]);
            let mut expected = 0;
            if right > una && right <= 8000 {
                for byte in &mut map[left.max(una)..right] {
                    expected += usize::from(!*byte);
                    *byte = true;
                }
            }
            assert_eq!(newly, expected, "round {round}");
            assert_eq!(sb.sacked_bytes(), map[una..].iter().filter(|&&b| b).count());
            let probe = una + next(8000 - una as u32 + 1) as usize;
            if probe < 8000 {
                assert_eq!(sb.is_sacked(base + probe), map[probe]);
            }
            if round % 200 == 0 {
                let (una, high_rxt) = (base + una, base + next(8000) as usize);
                assert_eq!(
                    sb.pipe(una, max, high_rxt, 100),
                    pipe_by_octet(&sb, una, max, high_rxt, 100)
                );
            }
        }
    }

    #[test]
    fn wraparound_at_2_pow_32() {
        let una = SeqNumber(u32::MAX - 999);
        let max = una + 5000;
        let mss = 100;
        let mut sb = Scoreboard::new();
        // A block straddling the wrap, and one after it.
        let blocks = [(una + 500, una + 1500), (una + 2000, una + 2100)];
        assert_eq!(sb.update(una, max, &blocks), 1100);
        assert_eq!(ranges(&sb), [(u32::MAX - 499, 500), (1000, 1100)]);
        assert!(sb.is_sacked(SeqNumber(u32::MAX)) && sb.is_sacked(SeqNumber(0)));
        assert!(!sb.is_sacked(una) && !sb.is_sacked(SeqNumber(500)));
        assert_eq!(sb.highest_sacked(), Some(SeqNumber(1100)));
        assert_eq!(sb.next_hole(una, una, max), Some((una, una + 500)));
        assert_eq!(
            sb.next_hole(SeqNumber(0), una, max),
            Some((SeqNumber(500), SeqNumber(1000)))
        );
        assert!(sb.is_lost(una, mss));
        assert!(!sb.is_lost(SeqNumber(600), mss));
        for high_rxt in [una, una + 300, una + 1800, max] {
            assert_eq!(
                sb.pipe(una, max, high_rxt, mss),
                pipe_by_octet(&sb, una, max, high_rxt, mss)
            );
        }
        // The cumulative ACK crosses the wrap.
        assert_eq!(sb.update(SeqNumber(200), max, &[]), 0);
        assert_eq!(ranges(&sb), [(200, 500), (1000, 1100)]);
        assert_eq!(sb.sacked_bytes(), 400);
    }
}
