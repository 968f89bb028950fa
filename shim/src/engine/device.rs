//! The shim's device: a DPDK queue pair whose frames are built under the
//! stack's lock and transmitted after it is released.
//!
//! A transmit can be slow (net_tap's is a `writev` per frame, in which the
//! kernel runs the peer's whole receive path), and while it runs under the
//! lock every other thread of the program waits for it. So the stack's
//! transmits only stage the frames ([`ShimDevice`]); dropping the stack's
//! guard passes them to the queue pair's transmit queue
//! ([`ShimDevice::stage`]), and whoever drops the lock (or closes the
//! batch it holds, [`hold_flushes`]) sends them ([`flush`]) on the queue
//! pair's split-off transmit side ([`DpdkTx`]).
//!
//! Order is kept: frames are staged under the stack's lock, so in the
//! order they were built, and a flush sends every staged frame, oldest
//! first, under the transmit side's own lock; a thread that flushes after
//! another finds its frames gone already, never ahead of older ones.
//!
//! Nobody waits for the transmit side: a thread that finds it busy leaves
//! its frames to the holder, which looks for staged frames again after it
//! lets go and sends them too. (Ten threads of a thread-per-connection
//! server each sending a reply spent 15 % of their futex calls queueing
//! on this lock, a sleep and a wake-up each, behind a `writev`.)

use accel_stack::phy::dpdk::{DpdkDevice, DpdkTx, Mbuf};
use accel_stack::phy::{Capabilities, Device, DeviceStats};
use accel_stack::Instant;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};

/// A DPDK queue pair that receives at once and stages what it transmits;
/// with `ACCEL_LOSS`, a lossy link: that share of the frames each way is
/// dropped (counted).
pub struct ShimDevice {
    /// The queue pair (its transmit side split off to its transmit queue).
    pub dpdk: DpdkDevice,
    staged: Vec<Mbuf>,
    tx: Arc<TxQueue>,
    /// Frames dropped per million, each way.
    loss_ppm: u32,
    rng: u64,
    /// Frames dropped on purpose: received, sent.
    pub lost: (u64, u64),
}

/// A queue pair's transmit queue: the frames staged, and the transmit side.
pub struct TxQueue {
    /// Frames staged, oldest first.
    pending: Mutex<Vec<Mbuf>>,
    /// `pending` may hold frames.
    any: AtomicBool,
    /// The queue pair's transmit side; held while sending.
    side: Mutex<Option<DpdkTx>>,
}

impl ShimDevice {
    /// `dpdk`, its transmit side split off to a transmit queue of its own
    /// (returned too, for [`install`]).
    pub fn new(mut dpdk: DpdkDevice) -> Result<(ShimDevice, Arc<TxQueue>), String> {
        let side = dpdk.split_tx().map_err(|e| e.to_string())?;
        let tx = Arc::new(TxQueue {
            pending: Mutex::new(Vec::new()),
            any: AtomicBool::new(false),
            side: Mutex::new(Some(side)),
        });
        let seed = crate::sys::random16();
        let dev = ShimDevice {
            dpdk,
            staged: Vec::with_capacity(64),
            tx: Arc::clone(&tx),
            loss_ppm: crate::startup::config().loss_ppm,
            rng: u64::from_le_bytes([
                seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
            ]) | 1,
            lost: (0, 0),
        };
        Ok((dev, tx))
    }

    /// Whether to drop the next frame (`ACCEL_LOSS`).
    fn lose(&mut self) -> bool {
        if self.loss_ppm == 0 {
            return false;
        }
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 1_000_000) < u64::from(self.loss_ppm)
    }

    /// Moves the frames built since the last call to the transmit queue
    /// (with the stack's lock held: see the module docs on order).
    pub fn stage(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        self.tx
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut self.staged);
        self.tx.any.store(true, SeqCst);
    }
}

impl Device for ShimDevice {
    type RxBuf = Mbuf;
    type TxBuf = Mbuf;

    fn capabilities(&self) -> Capabilities {
        self.dpdk.capabilities()
    }

    fn receive(&mut self, now: Instant, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let start = out.len();
        let n = self.dpdk.receive(now, out, max);
        if self.loss_ppm == 0 || n == 0 {
            return n;
        }
        // Stable: the frames kept stay in order; the lost ones end at the
        // tail and are freed by the truncate.
        let mut keep = start;
        for i in start..out.len() {
            if self.lose() {
                self.lost.0 += 1;
            } else {
                out.swap(keep, i);
                keep += 1;
            }
        }
        out.truncate(keep);
        keep - start
    }

    fn alloc_tx(&mut self, len: usize) -> Option<Mbuf> {
        self.dpdk.alloc_tx(len)
    }

    fn recycle(&mut self, buf: Mbuf) {
        self.dpdk.recycle(buf);
    }

    fn transmit(&mut self, _now: Instant, batch: &mut Vec<Mbuf>) -> usize {
        let n = batch.len();
        if self.loss_ppm > 0 {
            for frame in batch.drain(..) {
                if self.lose() {
                    self.lost.1 += 1;
                } else {
                    self.staged.push(frame);
                }
            }
        } else {
            self.staged.append(batch);
        }
        n
    }

    fn stats(&self) -> DeviceStats {
        let mut s = self.dpdk.stats();
        if let Some(tx) = self.tx.side.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let t = tx.stats();
            s.tx_frames += t.tx_frames;
            s.tx_bytes += t.tx_bytes;
            s.tx_dropped += t.tx_dropped;
        }
        s
    }
}

static QUEUES: OnceLock<Box<[Arc<TxQueue>]>> = OnceLock::new();

/// Installs the transmit queues, by queue pair (once, at start).
pub fn install(queues: Vec<Arc<TxQueue>>) {
    let _ = QUEUES.set(queues.into_boxed_slice());
}

fn queues() -> &'static [Arc<TxQueue>] {
    QUEUES.get().map_or(&[], |q| q)
}

impl TxQueue {
    /// Sends every staged frame (see the module docs); cheap when none is.
    /// `wait`: for the holder of the transmit side, rather than leave the
    /// frames to it (the process is about to end).
    fn flush(&self, wait: bool) {
        // Frames staged after the holder's last look set `any` before their
        // stager tried the lock, so before the holder lets go: the holder
        // sees them when it looks again, after it let go.
        while self.any.load(SeqCst) {
            let mut side = match self.side.try_lock() {
                Ok(side) => side,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if wait => {
                    self.side.lock().unwrap_or_else(|e| e.into_inner())
                }
                // The holder sends ours too (see the module docs).
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            let mut batch = Vec::new();
            loop {
                self.any.store(false, SeqCst);
                std::mem::swap(
                    &mut batch,
                    &mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()),
                );
                if batch.is_empty() {
                    break;
                }
                match side.as_mut() {
                    Some(tx) => {
                        tx.transmit(&mut batch);
                    }
                    None => batch.clear(),
                }
            }
            // Hand the (empty, grown) buffer back for the next frames.
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.is_empty() && pending.capacity() < batch.capacity() {
                std::mem::swap(&mut batch, &mut *pending);
            }
        }
    }
}

thread_local! {
    /// How many batches this thread has open ([`hold_flushes`]).
    static HOLDS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Opens a batch on this thread: a stack's guard dropped meanwhile leaves
/// its frames staged, and [`release_flushes`] sends every queue's at once
/// (the sockets layer holds one for as long as it holds its lock).
pub fn hold_flushes() {
    let _ = HOLDS.try_with(|h| h.set(h.get() + 1));
}

/// Closes a batch that [`hold_flushes`] opened; the last one sends what
/// every queue pair staged.
pub fn release_flushes() {
    let open = HOLDS
        .try_with(|h| {
            let n = h.get().saturating_sub(1);
            h.set(n);
            n
        })
        .unwrap_or(0);
    if open == 0 {
        flush_all();
    }
}

/// Whether this thread has a batch open.
pub fn flushes_held() -> bool {
    HOLDS.try_with(|h| h.get() > 0).unwrap_or(false)
}

/// Sends the frames staged on queue pair `q`.
pub fn flush(q: u16) {
    if let Some(t) = queues().get(usize::from(q)) {
        t.flush(false);
    }
}

/// Sends the frames staged on every queue pair.
pub fn flush_all() {
    for t in queues() {
        t.flush(false);
    }
}

/// Sends the frames staged on every queue pair, and waits for a thread
/// that is sending some (at exit: a thread left to send them may not get
/// to it).
pub fn flush_all_now() {
    for t in queues() {
        t.flush(true);
    }
}

/// In the child of `fork`: the parent's frames and transmit sides are the
/// parent's (forgotten, never sent or freed here). A lock another thread
/// of the parent held at the fork stays held in the child, where nothing
/// takes it again: the child's stacks are gone, so nothing stages or
/// flushes.
pub fn after_fork() {
    for t in queues() {
        t.any.store(false, Release);
        if let Ok(mut pending) = t.pending.try_lock() {
            std::mem::forget(std::mem::take(&mut *pending));
        }
        if let Ok(mut side) = t.side.try_lock() {
            if let Some(side) = side.take() {
                std::mem::forget(side);
            }
        }
    }
}
