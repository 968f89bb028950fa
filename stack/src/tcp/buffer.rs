//! The socket's byte rings: [`SendBuffer`] holds the bytes from `snd_una`
//! onward (sent-but-unacknowledged, then unsent), and [`RecvBuffer`] holds
//! the in-order bytes not yet read followed by out-of-order data kept at
//! its place in sequence space (RFC 9293 §3.10.7.4, with the receiver side
//! of RFC 2018 SACK).
//!
//! Both are rings of a fixed *capacity* (`SO_SNDBUF`/`SO_RCVBUF`: what the
//! windows and back-pressure are computed from) whose *storage* grows on
//! demand, doubling from 4 KiB up to the capacity and never beyond: an idle
//! connection costs no buffer memory, one that moved a little data a
//! little, and only a busy one its full size. Growing copies the bytes
//! held once; otherwise every operation is O(1) plus the bytes copied,
//! except that placing out-of-order data is O(number of holes), bounded by
//! [`MAX_OOO_RANGES`]. Data is handed out as at most two slices, since a
//! ring may wrap.
//!
//! Invariants of [`RecvBuffer`]: the readable bytes are the `len()` bytes at
//! the front; offsets given to [`RecvBuffer::write_at`] and reported by
//! [`RecvBuffer::ooo_ranges`] count from the end of them (from `rcv_nxt`);
//! the out-of-order ranges (kept by an [`Assembler`]) are sorted, disjoint,
//! not adjacent, never start at offset 0 (that data would be in order) and
//! never end beyond [`RecvBuffer::window`]. Bytes already stored are never
//! overwritten by a later duplicate, and never counted twice.

use core::fmt;

/// Most out-of-order ranges a [`RecvBuffer`] keeps track of. Data that
/// would need one more range is refused (the peer retransmits it).
pub const MAX_OOO_RANGES: usize = 32;

/// Ring index `n` bytes after `index`. Needs `index < cap` (or `cap == 0`)
/// and `n <= cap`.
#[inline]
fn wrap_add(index: usize, n: usize, cap: usize) -> usize {
    let x = index + n;
    if x >= cap {
        x - cap
    } else {
        x
    }
}

/// Copies `src` into the ring at index `at`, wrapping at the end.
/// Needs `src.len() <= ring.len()` and `at < ring.len()` (or both zero).
#[inline]
fn ring_write(ring: &mut [u8], at: usize, src: &[u8]) {
    let first = src.len().min(ring.len() - at);
    ring[at..at + first].copy_from_slice(&src[..first]);
    // The wrapped part is nearly always empty: skip the (memcpy) call.
    if first < src.len() {
        ring[..src.len() - first].copy_from_slice(&src[first..]);
    }
}

/// The `len` bytes of the ring from index `at`, as at most two slices.
#[inline]
fn ring_slices(ring: &[u8], at: usize, len: usize) -> (&[u8], &[u8]) {
    let first = len.min(ring.len() - at);
    (&ring[at..at + first], &ring[..len - first])
}

/// Smallest storage a ring grows to.
const MIN_STORAGE: usize = 4096;

/// Makes `storage` (a ring whose first byte is at `*head`) at least `need`
/// bytes long, at most `capacity`: the next power of two, re-laid from
/// index 0 so every byte keeps its offset from the head.
fn grow(storage: &mut Box<[u8]>, head: &mut usize, need: usize, capacity: usize) {
    if need <= storage.len() {
        return;
    }
    let size = need.max(MIN_STORAGE).next_power_of_two().min(capacity).max(need);
    let mut bigger = vec![0u8; size].into_boxed_slice();
    let old = storage.len();
    bigger[..old - *head].copy_from_slice(&storage[*head..]);
    bigger[old - *head..old].copy_from_slice(&storage[..*head]);
    *storage = bigger;
    *head = 0;
}

/// Send buffer: a byte ring of fixed capacity holding the bytes from
/// `snd_una` onward. Bytes are appended by [`write`](Self::write), read at
/// any offset for (re)transmission by [`peek`](Self::peek), and dropped
/// from the front by [`consume`](Self::consume) when acknowledged.
pub struct SendBuffer {
    /// The ring; grows on demand up to `capacity`.
    storage: Box<[u8]>,
    capacity: usize,
    /// Ring index of the first byte (`snd_una`).
    head: usize,
    /// Bytes held.
    len: usize,
}

impl SendBuffer {
    /// An empty buffer of `capacity` bytes (no memory until data comes).
    pub fn new(capacity: usize) -> SendBuffer {
        SendBuffer {
            storage: Box::default(),
            capacity,
            head: 0,
            len: 0,
        }
    }

    /// Bytes of memory the ring holds now (at most the capacity).
    pub fn allocated(&self) -> usize {
        self.storage.len()
    }

    /// Bytes held (unacknowledged plus unsent).
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total size in bytes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Room left for [`write`](Self::write).
    #[inline]
    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Changes the capacity (`SO_SNDBUF`). Succeeds whenever the bytes held
    /// still fit: always when the buffer is empty or the buffer grows.
    /// Returns `false`, changing nothing, if `capacity` is below
    /// [`len`](Self::len). The bytes held are kept, in order.
    pub fn set_capacity(&mut self, capacity: usize) -> bool {
        if capacity < self.len {
            return false;
        }
        if capacity < self.storage.len() {
            let mut storage = vec![0; capacity.max(self.len)].into_boxed_slice();
            self.copy_out(0, &mut storage[..self.len]);
            self.storage = storage;
            self.head = 0;
        }
        self.capacity = capacity;
        true
    }

    /// Appends as much of `data` as fits; returns how many bytes were taken.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n > 0 {
            grow(&mut self.storage, &mut self.head, self.len + n, self.capacity);
            let cap = self.storage.len();
            let tail = wrap_add(self.head, self.len, cap);
            ring_write(&mut self.storage, tail, &data[..n]);
            self.len += n;
        }
        n
    }

    /// Up to `max` bytes starting `offset` bytes after the front (the byte
    /// at `snd_una + offset`), as at most two slices (the second non-empty
    /// only if the ring wraps). Empty if `offset >= len()`.
    pub fn peek(&self, offset: usize, max: usize) -> (&[u8], &[u8]) {
        if offset >= self.len {
            return (&[], &[]);
        }
        let n = max.min(self.len - offset);
        let at = wrap_add(self.head, offset, self.storage.len());
        ring_slices(&self.storage, at, n)
    }

    /// Copies the bytes from `offset` into `dst` (as many as fit and are
    /// held); returns how many were copied.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> usize {
        let (a, b) = self.peek(offset, dst.len());
        dst[..a.len()].copy_from_slice(a);
        dst[a.len()..a.len() + b.len()].copy_from_slice(b);
        a.len() + b.len()
    }

    /// Drops `n` acknowledged bytes from the front (at most `len()`).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = wrap_add(self.head, n, self.storage.len());
        self.len -= n;
        if self.len == 0 {
            // Restart at the beginning so the next writes are contiguous.
            self.head = 0;
        }
    }

    /// Checks the ring's invariants (for tests and fuzzing: this is not on
    /// the data path): the bytes held fit the capacity and the storage,
    /// and the head lies inside the storage. Describes the first one
    /// broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        check_ring(
            "send buffer",
            self.storage.len(),
            self.capacity,
            self.head,
            self.len,
        )
    }
}

/// The invariants both rings share: `len <= capacity`, `len <= storage`,
/// `head < storage` (or both zero).
fn check_ring(what: &str, storage: usize, capacity: usize, head: usize, len: usize) -> Result<(), String> {
    if len > capacity {
        return Err(format!("{what}: holds {len} bytes, capacity {capacity}"));
    }
    if len > storage {
        return Err(format!("{what}: holds {len} bytes in {storage} bytes of storage"));
    }
    if head >= storage && !(head == 0 && storage == 0) {
        return Err(format!("{what}: head {head} outside {storage} bytes of storage"));
    }
    Ok(())
}

impl fmt::Debug for SendBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBuffer")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Returned by [`Assembler::add`] when a range would need a new entry and
/// all [`MAX_OOO_RANGES`] are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRanges;

/// Tracks which byte ranges beyond the contiguous data have been received:
/// a sorted list of at most [`MAX_OOO_RANGES`] disjoint, non-adjacent
/// `[start, end)` ranges, as offsets from the end of the contiguous data.
/// When a range reaches offset 0 it becomes contiguous: it is removed and
/// the others shift down by its length.
///
/// It also remembers the range most recently added to (for the first SACK
/// block, RFC 2018 §4).
#[derive(Debug, Clone)]
pub struct Assembler {
    ranges: [(usize, usize); MAX_OOO_RANGES],
    count: usize,
    /// Index of the range most recently added to, if it is still out of
    /// order.
    last: Option<usize>,
}

impl Default for Assembler {
    fn default() -> Self {
        Assembler::new()
    }
}

impl Assembler {
    /// An assembler with nothing out of order.
    pub const fn new() -> Assembler {
        Assembler {
            ranges: [(0, 0); MAX_OOO_RANGES],
            count: 0,
            last: None,
        }
    }

    /// Whether nothing is held out of order.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The out-of-order ranges, `[start, end)`, lowest first.
    #[inline]
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges[..self.count]
    }

    /// The range that most recently received data, if that data is still
    /// out of order.
    pub fn last_updated(&self) -> Option<(usize, usize)> {
        self.last.map(|i| self.ranges[i])
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.count = 0;
        self.last = None;
    }

    /// Records that `[start, end)` was received. Returns how many bytes
    /// became contiguous (the offsets of the remaining ranges then count
    /// from the new end of the contiguous data), or [`TooManyRanges`] if
    /// the range touches no existing one, does not start at 0, and the list
    /// is full; then nothing changes. An empty range is a no-op.
    pub fn add(&mut self, start: usize, end: usize) -> Result<usize, TooManyRanges> {
        if start >= end {
            return Ok(0);
        }
        let n = self.count;
        let r = &self.ranges[..n];
        // Ranges i..j overlap or touch [start, end].
        let i = r.partition_point(|&(_, e)| e < start);
        let j = r.partition_point(|&(s, _)| s <= end);
        if i == j {
            if start == 0 {
                // In order and touching nothing: all of it is contiguous at
                // once. (Every range starts above 0, so i == 0.)
                self.shift_down(end);
                return Ok(end);
            }
            if n == MAX_OOO_RANGES {
                return Err(TooManyRanges);
            }
            self.ranges.copy_within(i..n, i + 1);
            self.ranges[i] = (start, end);
            self.count += 1;
            self.last = Some(i);
            return Ok(0);
        }
        let merged = (start.min(r[i].0), end.max(r[j - 1].1));
        if merged.0 > 0 {
            self.ranges[i] = merged;
            self.ranges.copy_within(j..n, i + 1);
            self.count -= j - i - 1;
            self.last = Some(i);
            return Ok(0);
        }
        // The merged range starts at 0 (so i == 0): it becomes contiguous.
        // The previous "last" range survives unless it was merged in.
        self.last = match self.last {
            Some(l) if l >= j => Some(l - j),
            _ => None,
        };
        self.ranges.copy_within(j..n, 0);
        self.count -= j;
        self.shift_down(merged.1);
        Ok(merged.1)
    }

    /// The contiguous data grew by `k` bytes (all ranges start above `k`).
    fn shift_down(&mut self, k: usize) {
        for r in &mut self.ranges[..self.count] {
            r.0 -= k;
            r.1 -= k;
        }
    }

    /// Checks the invariants (for tests and fuzzing): at most
    /// [`MAX_OOO_RANGES`] ranges, each non-empty and starting above 0,
    /// sorted, disjoint and not adjacent, none ending beyond `limit`; the
    /// last-updated index names a range. Describes the first one broken.
    pub fn check_invariants(&self, limit: usize) -> Result<(), String> {
        if self.count > MAX_OOO_RANGES {
            return Err(format!("assembler: {} ranges", self.count));
        }
        let mut prev_end = 0;
        for (i, &(s, e)) in self.ranges().iter().enumerate() {
            if s >= e {
                return Err(format!("assembler: range {i} [{s}, {e}) is empty"));
            }
            if s == 0 {
                return Err(format!(
                    "assembler: range {i} [{s}, {e}) starts at 0 (it is in order)"
                ));
            }
            if i > 0 && s <= prev_end {
                return Err(format!(
                    "assembler: range {i} [{s}, {e}) overlaps or touches the one ending at {prev_end}"
                ));
            }
            if e > limit {
                return Err(format!("assembler: range {i} [{s}, {e}) ends beyond {limit}"));
            }
            prev_end = e;
        }
        if let Some(l) = self.last {
            if l >= self.count {
                return Err(format!("assembler: last-updated index {l} of {}", self.count));
            }
        }
        Ok(())
    }
}

/// Receive buffer: in-order readable bytes at the front, followed by room
/// for out-of-order data, which is written at its offset and tracked by an
/// [`Assembler`]. What may be advertised is [`window`](Self::window).
pub struct RecvBuffer {
    /// The ring; grows on demand up to `capacity`.
    storage: Box<[u8]>,
    capacity: usize,
    /// Ring index of the first readable byte.
    head: usize,
    /// Readable contiguous bytes.
    len: usize,
    assembler: Assembler,
    /// Out-of-order writes refused because every range was in use.
    refused: u64,
}

impl RecvBuffer {
    /// An empty buffer of `capacity` bytes (no memory until data comes).
    pub fn new(capacity: usize) -> RecvBuffer {
        RecvBuffer {
            storage: Box::default(),
            capacity,
            head: 0,
            len: 0,
            assembler: Assembler::new(),
            refused: 0,
        }
    }

    /// Total size in bytes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of memory the ring holds now (at most the capacity).
    pub fn allocated(&self) -> usize {
        self.storage.len()
    }

    /// Readable contiguous bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is nothing to read (out-of-order data may be held).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free space from the end of the contiguous data (`rcv_nxt`): the
    /// window we may advertise. Out-of-order data held lies inside it.
    #[inline]
    pub fn window(&self) -> usize {
        self.capacity() - self.len
    }

    /// Stores `data`, which starts `offset` bytes after `rcv_nxt`. Bytes
    /// beyond the window are dropped; bytes already held are left as they
    /// are (a duplicate never overwrites them). Returns how many bytes
    /// became newly contiguous, by which the caller advances `rcv_nxt`.
    ///
    /// Out-of-order data that would need a range beyond [`MAX_OOO_RANGES`]
    /// is refused: nothing is recorded, so it is neither readable nor
    /// reported by [`ooo_ranges`](Self::ooo_ranges) (it returns 0, as does
    /// any out-of-order write; the peer will retransmit). Data at offset 0
    /// is never refused.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        let window = self.window();
        if offset >= window || data.is_empty() {
            return 0;
        }
        let end = offset + data.len().min(window - offset);
        grow(&mut self.storage, &mut self.head, self.len + end, self.capacity);
        let cap = self.storage.len();
        let base = wrap_add(self.head, self.len, cap);
        if offset == 0 && self.assembler.is_empty() {
            // In order with nothing held beyond: what the general path
            // below does (one copy; the assembler takes [0, end) whole and
            // stays empty), without its walk.
            ring_write(&mut self.storage, base, &data[..end]);
            self.len += end;
            return end;
        }
        // Copy only into the gaps between ranges already held. (If the
        // assembler then refuses the range, those bytes lie in free space
        // that nothing reports as held, so the copy is harmless.)
        let mut pos = offset;
        for &(s, e) in self.assembler.ranges() {
            if e <= pos {
                continue;
            }
            if s >= end {
                break;
            }
            if s > pos {
                let at = wrap_add(base, pos, cap);
                ring_write(&mut self.storage, at, &data[pos - offset..s - offset]);
            }
            pos = e;
            if pos >= end {
                break;
            }
        }
        if pos < end {
            let at = wrap_add(base, pos, cap);
            ring_write(&mut self.storage, at, &data[pos - offset..end - offset]);
        }
        match self.assembler.add(offset, end) {
            Ok(k) => {
                self.len += k;
                k
            }
            Err(TooManyRanges) => {
                self.refused += 1;
                0
            }
        }
    }

    /// Out-of-order writes refused so far because they would have needed a
    /// range beyond [`MAX_OOO_RANGES`] (a flood of tiny out-of-order
    /// segments, each its own hole, stops there).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Copies readable bytes into `dst` and consumes them; returns how many.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let (a, b) = self.peek(dst.len());
        let n = a.len() + b.len();
        dst[..a.len()].copy_from_slice(a);
        if !b.is_empty() {
            dst[a.len()..n].copy_from_slice(b);
        }
        self.consume(n);
        n
    }

    /// Up to `max` readable bytes, as at most two slices.
    pub fn peek(&self, max: usize) -> (&[u8], &[u8]) {
        ring_slices(&self.storage, self.head, max.min(self.len))
    }

    /// Drops `n` readable bytes (at most `len()`) from the front.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = wrap_add(self.head, n, self.storage.len());
        self.len -= n;
        if self.len == 0 && self.assembler.is_empty() {
            self.head = 0;
        }
    }

    /// The out-of-order ranges held, `[start, end)` as offsets from
    /// `rcv_nxt`, lowest first (to be turned into SACK blocks).
    pub fn ooo_ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.assembler.ranges().iter().copied()
    }

    /// The out-of-order range that most recently received data (the first
    /// SACK block, RFC 2018 §4), as offsets from `rcv_nxt`. `None` if
    /// nothing is out of order, or if the range last written to has since
    /// become contiguous.
    pub fn last_ooo_range(&self) -> Option<(usize, usize)> {
        self.assembler.last_updated()
    }

    /// Whether out-of-order data is held.
    #[inline]
    pub fn has_ooo(&self) -> bool {
        !self.assembler.is_empty()
    }

    /// Checks the invariants (for tests and fuzzing: this is not on the
    /// data path): those of the ring, and the out-of-order ranges lie
    /// within the window and the storage (see the module docs). Describes
    /// the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        check_ring(
            "receive buffer",
            self.storage.len(),
            self.capacity,
            self.head,
            self.len,
        )?;
        self.assembler.check_invariants(self.window())?;
        if let Some(&(_, end)) = self.assembler.ranges().last() {
            if self.len + end > self.storage.len() {
                return Err(format!(
                    "receive buffer: out-of-order data up to {} beyond {} bytes of storage",
                    self.len + end,
                    self.storage.len()
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RecvBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuffer")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("ooo", &self.assembler.ranges())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(parts: (&[u8], &[u8])) -> Vec<u8> {
        [parts.0, parts.1].concat()
    }

    #[test]
    fn send_write_peek_consume() {
        let mut b = SendBuffer::new(8);
        assert!(b.is_empty());
        assert_eq!(b.write(b"abcdef"), 6);
        assert_eq!((b.len(), b.free(), b.capacity()), (6, 2, 8));
        assert_eq!(collect(b.peek(2, 3)), b"cde");
        assert_eq!(collect(b.peek(4, 100)), b"ef");
        assert_eq!(collect(b.peek(6, 1)), b"");
        b.consume(4);
        assert_eq!(b.len(), 2);
        // Fills to capacity, wrapping round the end of the ring.
        assert_eq!(b.write(b"ghijklmn"), 6);
        assert_eq!(b.free(), 0);
        assert_eq!(b.write(b"z"), 0);
        let (first, second) = b.peek(0, 8);
        assert_eq!((first, second), (&b"efgh"[..], &b"ijkl"[..]));
        let mut dst = [0u8; 5];
        assert_eq!(b.copy_out(3, &mut dst), 5);
        assert_eq!(&dst, b"hijkl");
        b.consume(100);
        assert!(b.is_empty());
        assert_eq!(b.write(b""), 0);
    }

    #[test]
    fn send_zero_capacity_and_resize() {
        let mut b = SendBuffer::new(0);
        assert_eq!(b.write(b"x"), 0);
        assert_eq!(collect(b.peek(0, 4)), b"");
        b.consume(1);
        assert!(b.set_capacity(4));
        assert_eq!(b.write(b"abcd"), 4);
        b.consume(3);
        assert_eq!(b.write(b"efg"), 3); // wraps
        assert!(!b.set_capacity(3), "cannot shrink below the bytes held");
        assert!(b.set_capacity(10));
        assert_eq!(collect(b.peek(0, 10)), b"defg");
        assert_eq!(b.free(), 6);
        assert!(b.set_capacity(4), "shrinking to what is held is allowed");
        assert_eq!(collect(b.peek(0, 10)), b"defg");
    }

    #[test]
    fn storage_grows_on_demand_and_keeps_bytes_across_the_wrap() {
        let mut b = SendBuffer::new(1 << 20);
        assert_eq!(b.allocated(), 0, "no memory before data");
        assert_eq!(b.write(&[1; 3000]), 3000);
        assert_eq!(b.allocated(), MIN_STORAGE);
        b.consume(2500); // the head moves near the end of the 4 KiB ring
        let tail: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        assert_eq!(b.write(&tail), 3000); // wraps, then needs more room
        assert_eq!(b.allocated(), 4096);
        assert_eq!(b.write(&tail), 3000); // 6500 held: grows to 8 KiB
        assert_eq!(b.allocated(), 8192);
        let mut all = vec![0u8; b.len()];
        assert_eq!(b.copy_out(0, &mut all), 6500);
        assert_eq!(&all[..500], &[1; 500][..]);
        assert_eq!(&all[500..3500], &tail[..]);
        assert_eq!(&all[3500..], &tail[..]);
        let mut small = SendBuffer::new(5000);
        small.write(&[7; 5000]);
        assert_eq!(small.allocated(), 5000, "never beyond the capacity");
        assert_eq!(small.write(&[7]), 0);

        let mut r = RecvBuffer::new(1 << 20);
        assert_eq!(r.allocated(), 0);
        assert_eq!(r.write_at(10_000, &[9; 100]), 0, "out of order, held");
        assert_eq!(r.allocated(), 16384);
        assert_eq!(r.write_at(0, &[8; 10_000]), 10_100);
        let mut got = vec![0u8; 10_100];
        assert_eq!(r.read(&mut got), 10_100);
        assert!(got[..10_000].iter().all(|&x| x == 8) && got[10_000..].iter().all(|&x| x == 9));
    }

    #[test]
    fn recv_in_order() {
        let mut b = RecvBuffer::new(8);
        assert_eq!(b.window(), 8);
        assert_eq!(b.write_at(0, b"hello"), 5);
        assert_eq!((b.len(), b.window()), (5, 3));
        assert!(!b.has_ooo());
        let mut dst = [0u8; 3];
        assert_eq!(b.read(&mut dst), 3);
        assert_eq!(&dst, b"hel");
        // Wraps round the ring; data beyond the window is trimmed.
        assert_eq!(b.write_at(0, b"0123456789"), 6);
        assert_eq!(b.window(), 0);
        assert_eq!(b.write_at(0, b"x"), 0, "full buffer takes nothing");
        let (a, c) = b.peek(100);
        assert_eq!(a.len() + c.len(), 8);
        assert_eq!(collect((a, c)), b"lo012345");
        b.consume(8);
        assert!(b.is_empty());
        assert_eq!(b.write_at(0, b""), 0);
    }

    #[test]
    fn recv_out_of_order_reassembly() {
        let mut b = RecvBuffer::new(16);
        assert_eq!(b.write_at(4, b"efgh"), 0);
        assert_eq!(b.write_at(10, b"kl"), 0);
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), [(4, 8), (10, 12)]);
        assert_eq!(b.last_ooo_range(), Some((10, 12)));
        assert_eq!(b.len(), 0);
        // Filling the first hole joins the first range.
        assert_eq!(b.write_at(0, b"abcd"), 8);
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), [(2, 4)]);
        assert_eq!(b.last_ooo_range(), Some((2, 4)), "last range survives, shifted");
        assert_eq!(b.write_at(0, b"ij"), 4);
        assert!(!b.has_ooo());
        assert_eq!(b.last_ooo_range(), None);
        assert_eq!(collect(b.peek(16)), b"abcdefghijkl");
    }

    #[test]
    fn recv_duplicates_never_overwrite_or_double_count() {
        let mut b = RecvBuffer::new(16);
        assert_eq!(b.write_at(2, b"CD"), 0);
        // A bogus overlapping copy must not replace what is held.
        assert_eq!(b.write_at(1, b"xyzw"), 0);
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), [(1, 5)]);
        assert_eq!(b.write_at(2, b"CD"), 0);
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), [(1, 5)]);
        assert_eq!(b.write_at(0, b"AB"), 5);
        assert_eq!(collect(b.peek(16)), b"AxCDw");
        // Data entirely inside what is held counts nothing.
        assert_eq!(b.write_at(0, b""), 0);
        assert_eq!(b.len(), 5);
    }

    #[test]
    fn recv_merges_spanning_ranges() {
        let mut b = RecvBuffer::new(32);
        b.write_at(2, b"c");
        b.write_at(4, b"e");
        b.write_at(6, b"g");
        assert_eq!(b.ooo_ranges().count(), 3);
        assert_eq!(b.write_at(3, b"DEF"), 0);
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), [(2, 7)]);
        assert_eq!(b.last_ooo_range(), Some((2, 7)));
        assert_eq!(b.write_at(7, b"h"), 0, "adjacent ranges merge");
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), [(2, 8)]);
        assert_eq!(b.write_at(0, b"ab"), 8);
        assert_eq!(collect(b.peek(32)), b"abcDeFgh");
    }

    #[test]
    fn recv_window_trims_out_of_order_data() {
        let mut b = RecvBuffer::new(8);
        assert_eq!(b.write_at(6, b"ghij"), 0);
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), [(6, 8)]);
        assert_eq!(b.write_at(8, b"x"), 0);
        assert_eq!(b.write_at(usize::MAX, b"x"), 0);
        assert_eq!(b.ooo_ranges().count(), 1);
        assert_eq!(b.write_at(0, b"abcdef"), 8);
        assert_eq!(b.window(), 0);
        assert_eq!(collect(b.peek(8)), b"abcdefgh");
    }

    #[test]
    fn recv_out_of_order_across_the_ring_wrap() {
        let mut b = RecvBuffer::new(8);
        assert_eq!(b.write_at(0, b"123456"), 6);
        b.consume(5);
        // The front is at ring index 5 and rcv_nxt at 6; this out-of-order
        // piece lands at indices 7, 0 and 1.
        assert_eq!(b.write_at(1, b"bcd"), 0);
        assert_eq!(b.write_at(0, b"a"), 4);
        let (x, y) = b.peek(8);
        assert_eq!((x, y), (&b"6ab"[..], &b"cd"[..]));
        // When everything is read the ring restarts at index 0.
        b.consume(5);
        assert_eq!(b.write_at(0, b"xyz"), 3);
        assert_eq!(b.peek(8), (&b"xyz"[..], &b""[..]));
    }

    #[test]
    fn recv_refuses_a_range_beyond_the_limit() {
        let mut b = RecvBuffer::new(1024);
        for i in 0..MAX_OOO_RANGES {
            assert_eq!(b.write_at(2 + 2 * i, b"x"), 0);
        }
        assert_eq!(b.ooo_ranges().count(), MAX_OOO_RANGES);
        let last = b.last_ooo_range();
        // A new isolated range is refused...
        assert_eq!(b.write_at(200, b"y"), 0);
        assert_eq!(b.ooo_ranges().count(), MAX_OOO_RANGES);
        assert!(b.ooo_ranges().all(|(s, _)| s < 200));
        assert_eq!(b.last_ooo_range(), last);
        // ...but extending or joining ranges is not, nor in-order data.
        assert_eq!(b.write_at(3, b"z"), 0);
        assert_eq!(b.ooo_ranges().count(), MAX_OOO_RANGES - 1);
        assert_eq!(b.write_at(0, b"a"), 1);
        assert_eq!(b.len(), 1);
        assert_eq!(b.ooo_ranges().next(), Some((1, 4)));
        let mut asm = Assembler::new();
        for i in 0..MAX_OOO_RANGES {
            asm.add(10 + 2 * i, 11 + 2 * i).unwrap();
        }
        assert_eq!(asm.add(1000, 1001), Err(TooManyRanges));
        assert_eq!(asm.add(0, 5), Ok(5), "in-order data needs no range");
        assert_eq!(asm.ranges()[0], (5, 6));
        assert_eq!(asm.add(3, 3), Ok(0));
    }

    #[test]
    fn recv_random_segments_reassemble_the_stream() {
        let stream: Vec<u8> = (0..50_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let mut b = RecvBuffer::new(1500);
        let (mut rcv_nxt, mut out, mut buf) = (0, Vec::new(), [0u8; 700]);
        while out.len() < stream.len() {
            // Segments from a little before rcv_nxt to beyond the window.
            let start = (rcv_nxt + next(2000)).saturating_sub(200).min(stream.len() - 1);
            let end = (start + 1 + next(300)).min(stream.len());
            if end > rcv_nxt {
                let from = start.max(rcv_nxt);
                rcv_nxt += b.write_at(from - rcv_nxt, &stream[from..end]);
            }
            assert!(b.ooo_ranges().all(|(s, e)| 0 < s && s < e && e <= b.window()));
            if next(3) == 0 {
                let n = b.read(&mut buf[..next(700)]);
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out.len() + b.len(), rcv_nxt);
        }
        assert_eq!(out, stream);
    }

    #[test]
    fn assembler_last_range_tracking() {
        let mut asm = Assembler::default();
        asm.add(10, 20).unwrap();
        asm.add(30, 40).unwrap();
        asm.add(5, 8).unwrap();
        assert_eq!(asm.last_updated(), Some((5, 8)));
        assert_eq!(asm.add(0, 5), Ok(8));
        assert_eq!(asm.last_updated(), None, "the last range became contiguous");
        assert_eq!(asm.ranges(), [(2, 12), (22, 32)]);
        asm.add(25, 26).unwrap();
        assert_eq!(asm.last_updated(), Some((22, 32)));
        assert_eq!(asm.add(0, 2), Ok(12));
        assert_eq!(asm.last_updated(), Some((10, 20)));
        asm.clear();
        assert!(asm.is_empty());
        assert_eq!(asm.last_updated(), None);
    }
}
