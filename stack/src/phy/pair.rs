//! Two devices joined back to back in one process: what one transmits, the
//! other receives, in order.
//!
//! [`pair`] returns the two ends. Each direction is a FIFO queue bounded by
//! `queue_depth` frames; a transmit into a full queue frees the frame and
//! counts it in [`DeviceStats::tx_dropped`], like a full NIC ring. Frames
//! are never copied between the ends: the transmitting end's buffer is
//! moved into the queue and handed to the receiving end as is.
//!
//! Buffers ([`PairBuf`]) come from a free list shared by both ends and go
//! back to it when dropped, wherever they are dropped (by the stack, in a
//! queue, with a device), so once traffic reaches a steady state no frame
//! allocates. A recycled buffer is not cleared: [`Device::alloc_tx`] gives
//! `len` bytes that may still hold an earlier frame's bytes (the stack
//! writes every byte of a frame it builds). Only a buffer too small for a
//! request is ever reallocated.
//!
//! Everything is single-threaded (`Rc`/`RefCell`): both ends and all their
//! buffers must stay on one thread, which the compiler enforces (`!Send`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use super::{Capabilities, Device, DeviceStats};
use crate::time::Instant;

/// Room for an Ethernet header plus a VLAN tag, beyond the MTU.
const FRAME_OVERHEAD: usize = 18;

/// The free list both ends share.
#[derive(Default)]
struct Pool {
    /// Buffers ready for reuse, each at its full (initialised) length.
    free: Vec<Vec<u8>>,
    /// Buffers ever allocated from the heap.
    created: usize,
    /// Smallest length a new buffer gets: a full-sized frame.
    buf_len: usize,
}

type SharedPool = Rc<RefCell<Pool>>;

/// Takes a buffer of at least `len` bytes from `pool`, allocating one only
/// when the free list is empty or its top buffer is too small.
fn take(pool: &SharedPool, len: usize) -> PairBuf {
    let mut p = pool.borrow_mut();
    let data = match p.free.pop() {
        Some(mut data) => {
            if data.len() < len {
                // Grows in place or reallocates; zero-fills only the new part.
                data.resize(len, 0);
            }
            data
        }
        None => {
            p.created += 1;
            vec![0; len.max(p.buf_len)]
        }
    };
    drop(p);
    PairBuf {
        data,
        len,
        pool: Rc::clone(pool),
    }
}

/// A frame buffer of a [`PairDevice`], received or being built.
///
/// `as_ref`/`as_mut` give exactly the frame's bytes. Dropping it returns
/// its memory to the pair's free list.
pub struct PairBuf {
    /// Backing store, at least `len` bytes, all initialised.
    data: Vec<u8>,
    /// Length of the frame.
    len: usize,
    pool: SharedPool,
}

impl fmt::Debug for PairBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairBuf")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl AsRef<[u8]> for PairBuf {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl AsMut<[u8]> for PairBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
}

impl Drop for PairBuf {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        // A `try_borrow_mut` failure would mean a buffer is dropped while
        // the pool is borrowed, which this module never does; the memory is
        // then simply freed.
        if let Ok(mut pool) = self.pool.try_borrow_mut() {
            pool.free.push(data);
        }
    }
}

/// State shared by the two ends.
struct Link {
    /// `queues[i]`: frames waiting for end `i` to receive them.
    queues: [VecDeque<PairBuf>; 2],
    depth: usize,
}

/// One end of a [`pair`].
pub struct PairDevice {
    caps: Capabilities,
    link: Rc<RefCell<Link>>,
    pool: SharedPool,
    /// Which end this is: receives from `queues[side]`, sends to the other.
    side: usize,
    stats: DeviceStats,
}

/// Two devices joined back to back, both with capabilities `caps`; each
/// direction queues at most `queue_depth` frames (0 drops everything).
pub fn pair(caps: Capabilities, queue_depth: usize) -> (PairDevice, PairDevice) {
    let link = Rc::new(RefCell::new(Link {
        queues: [
            VecDeque::with_capacity(queue_depth),
            VecDeque::with_capacity(queue_depth),
        ],
        depth: queue_depth,
    }));
    let pool = Rc::new(RefCell::new(Pool {
        buf_len: caps.mtu.max(caps.tso_max) + FRAME_OVERHEAD,
        ..Pool::default()
    }));
    let end = |side| PairDevice {
        caps,
        link: Rc::clone(&link),
        pool: Rc::clone(&pool),
        side,
        stats: DeviceStats::default(),
    };
    (end(0), end(1))
}

impl PairDevice {
    /// Queues a copy of `frame` for this end to receive, as if the peer had
    /// sent it (counted in neither end's transmit counters). Returns
    /// `false`, dropping the frame, if this end's queue is full.
    pub fn inject(&self, frame: &[u8]) -> bool {
        let mut link = self.link.borrow_mut();
        if link.queues[self.side].len() >= link.depth {
            return false;
        }
        let mut buf = take(&self.pool, frame.len());
        buf.as_mut().copy_from_slice(frame);
        link.queues[self.side].push_back(buf);
        true
    }

    /// Frames waiting for this end to receive them.
    pub fn pending(&self) -> usize {
        self.link.borrow().queues[self.side].len()
    }

    /// Buffers the pair has allocated from the heap so far (both ends
    /// together). Constant once traffic is in a steady state.
    pub fn buffers_created(&self) -> usize {
        self.pool.borrow().created
    }

    /// Buffers currently in the shared free list.
    pub fn buffers_free(&self) -> usize {
        self.pool.borrow().free.len()
    }
}

impl fmt::Debug for PairDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairDevice")
            .field("side", &self.side)
            .field("pending", &self.pending())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Device for PairDevice {
    type RxBuf = PairBuf;
    type TxBuf = PairBuf;

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn receive(&mut self, _now: Instant, out: &mut Vec<PairBuf>, max: usize) -> usize {
        let mut link = self.link.borrow_mut();
        let queue = &mut link.queues[self.side];
        let n = max.min(queue.len());
        for buf in queue.drain(..n) {
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += buf.len as u64;
            out.push(buf);
        }
        n
    }

    /// Never fails: the free list grows as needed. The buffer is not
    /// zeroed.
    fn alloc_tx(&mut self, len: usize) -> Option<PairBuf> {
        Some(take(&self.pool, len))
    }

    fn transmit(&mut self, _now: Instant, batch: &mut Vec<PairBuf>) -> usize {
        let mut accepted = 0;
        let mut link = self.link.borrow_mut();
        let depth = link.depth;
        let queue = &mut link.queues[1 - self.side];
        for buf in batch.drain(..) {
            if queue.len() >= depth {
                self.stats.tx_dropped += 1;
                // Dropping `buf` borrows the pool, never the link.
                drop(buf);
                continue;
            }
            self.stats.tx_frames += 1;
            self.stats.tx_bytes += buf.len as u64;
            queue.push_back(buf);
            accepted += 1;
        }
        accepted
    }

    fn stats(&self) -> DeviceStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Instant = Instant::ZERO;

    fn send(dev: &mut PairDevice, frames: &[&[u8]]) -> usize {
        let mut batch = Vec::new();
        for frame in frames {
            let mut buf = dev.alloc_tx(frame.len()).unwrap();
            assert_eq!(buf.as_ref().len(), frame.len());
            buf.as_mut().copy_from_slice(frame);
            batch.push(buf);
        }
        let n = dev.transmit(NOW, &mut batch);
        assert!(batch.is_empty(), "transmit drains the batch");
        n
    }

    fn recv(dev: &mut PairDevice, max: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = dev.receive(NOW, &mut out, max);
        assert_eq!(n, out.len());
        out.iter().map(|b| b.as_ref().to_vec()).collect()
    }

    #[test]
    fn fifo_in_both_directions() {
        let (mut a, mut b) = pair(Capabilities::default(), 16);
        assert_eq!(send(&mut a, &[b"one", b"two", b"three"]), 3);
        assert_eq!(send(&mut b, &[b"back"]), 1);
        assert_eq!((a.pending(), b.pending()), (1, 3));
        assert_eq!(recv(&mut b, 2), vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(send(&mut a, &[b"four"]), 1);
        assert_eq!(recv(&mut b, 10), vec![b"three".to_vec(), b"four".to_vec()]);
        assert_eq!(recv(&mut a, 10), vec![b"back".to_vec()]);
        assert!(recv(&mut a, 10).is_empty());
        assert_eq!((a.pending(), b.pending()), (0, 0));
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let (mut a, mut b) = pair(Capabilities::default(), 2);
        assert_eq!(send(&mut a, &[b"1", b"2", b"3", b"4"]), 2);
        assert_eq!(a.stats().tx_dropped, 2);
        assert_eq!(a.stats().tx_frames, 2);
        // The dropped frames went back to the free list.
        assert_eq!(a.buffers_free(), 2);
        assert_eq!(recv(&mut b, 10), vec![b"1".to_vec(), b"2".to_vec()]);
        // Room again; injection respects the same bound.
        assert!(b.inject(b"x"));
        assert!(b.inject(b"y"));
        assert!(!b.inject(b"z"));
        assert_eq!(recv(&mut b, 10), vec![b"x".to_vec(), b"y".to_vec()]);
        let (mut c, _d) = pair(Capabilities::default(), 0);
        assert_eq!(send(&mut c, &[b"lost"]), 0);
        assert_eq!(c.stats().tx_dropped, 1);
    }

    #[test]
    fn stats_count_frames_and_bytes() {
        let (mut a, mut b) = pair(Capabilities::default(), 8);
        send(&mut a, &[&[0; 60], &[0; 100]]);
        recv(&mut b, 1);
        b.inject(&[0; 7]);
        let sa = a.stats();
        assert_eq!((sa.tx_frames, sa.tx_bytes, sa.rx_frames), (2, 160, 0));
        assert_eq!(b.stats().rx_frames, 1);
        assert_eq!(b.stats().rx_bytes, 60);
        recv(&mut b, 8);
        let sb = b.stats();
        assert_eq!((sb.rx_frames, sb.rx_bytes, sb.tx_frames), (3, 167, 0));
        assert_eq!(sb.tx_dropped + sa.tx_dropped, 0);
    }

    #[test]
    fn injected_frames_are_received_in_order() {
        let (a, mut b) = pair(Capabilities::default(), 8);
        assert!(b.inject(&[1, 2, 3]));
        assert!(b.inject(&[4]));
        assert_eq!((a.pending(), b.pending()), (0, 2));
        assert_eq!(recv(&mut b, 8), vec![vec![1, 2, 3], vec![4]]);
    }

    #[test]
    fn steady_state_allocates_nothing() {
        let (mut a, mut b) = pair(Capabilities::default(), 64);
        let frame = [0xab; 1514];
        let small = [0xcd; 60];
        let round = |a: &mut PairDevice, b: &mut PairDevice| {
            send(a, &[&frame, &small, &frame, &small]);
            send(b, &[&small]);
            let got = recv(b, 64);
            assert_eq!(got.len(), 4);
            assert_eq!(got[0], frame);
            assert_eq!(got[1], small);
            assert_eq!(recv(a, 64).len(), 1);
        };
        round(&mut a, &mut b);
        let created = a.buffers_created();
        assert!(created <= 5, "{created} buffers for 5 frames in flight");
        for _ in 0..1000 {
            round(&mut a, &mut b);
        }
        assert_eq!(a.buffers_created(), created);
        assert_eq!(b.buffers_created(), created);
        assert_eq!(a.buffers_free(), created, "every buffer came back");
    }

    #[test]
    fn recycled_buffer_has_exact_length() {
        let (mut a, _b) = pair(Capabilities::default(), 4);
        let big = a.alloc_tx(1514).unwrap();
        drop(big);
        let small = a.alloc_tx(42).unwrap();
        assert_eq!(small.as_ref().len(), 42);
        drop(small);
        // Larger than a full-sized frame: grows the recycled buffer.
        let jumbo = a.alloc_tx(9000).unwrap();
        assert_eq!(jumbo.as_ref().len(), 9000);
        assert_eq!(a.buffers_created(), 1);
    }

    #[test]
    fn queued_frames_return_to_the_pool_when_an_end_is_dropped() {
        let (mut a, b) = pair(Capabilities::default(), 4);
        send(&mut a, &[b"x", b"y"]);
        assert_eq!(a.buffers_free(), 0);
        drop(b);
        // The link lives on in `a`; its queued frames are still there.
        assert_eq!(a.buffers_free(), 0);
        let pool = Rc::clone(&a.pool);
        drop(a);
        assert_eq!(pool.borrow().free.len(), 2);
    }
}
