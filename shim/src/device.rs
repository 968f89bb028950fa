//! The shim's device: a DPDK queue pair whose frames are built under the
//! worker's lock and transmitted after it is released.
//!
//! A transmit can be slow (net_tap's is a `writev` per frame, in which the
//! kernel runs the peer's whole receive path), and while it runs under the
//! lock every other thread of the program waits for it. So the stack's
//! transmits only stage the frames ([`ShimDevice`]); [`Core::drive`]
//! passes them to the process's transmit queue ([`ShimDevice::stage`]), and whoever
//! drops the lock sends them ([`flush`]) on the queue pair's split-off
//! transmit side ([`DpdkTx`]).
//!
//! Order is kept: frames are staged under the worker's lock, so in the
//! order they were built, and a flush sends every staged frame, oldest
//! first, under the transmit side's own lock; a thread that flushes after
//! another finds its frames gone already, never ahead of older ones.
//!
//! [`Core::drive`]: crate::worker::Core::drive

use accel_stack::phy::dpdk::{DpdkDevice, DpdkTx, Mbuf};
use accel_stack::phy::{Capabilities, Device, DeviceStats};
use accel_stack::Instant;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Mutex;

/// A DPDK queue pair that receives at once and stages what it transmits.
pub struct ShimDevice {
    /// The queue pair (its transmit side split off to the transmit queue).
    pub dpdk: DpdkDevice,
    staged: Vec<Mbuf>,
}

impl ShimDevice {
    /// `dpdk`, its transmit side handed to the process's transmit queue.
    pub fn new(mut dpdk: DpdkDevice) -> Result<ShimDevice, String> {
        let tx = dpdk.split_tx().map_err(|e| e.to_string())?;
        *TX.side.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        Ok(ShimDevice {
            dpdk,
            staged: Vec::with_capacity(64),
        })
    }

    /// Moves the frames built since the last call to the transmit queue
    /// (with the worker's lock held: see the module docs on order).
    pub fn stage(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        TX.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut self.staged);
        TX.any.store(true, Release);
    }
}

impl Device for ShimDevice {
    type RxBuf = Mbuf;
    type TxBuf = Mbuf;

    fn capabilities(&self) -> Capabilities {
        self.dpdk.capabilities()
    }

    fn receive(&mut self, now: Instant, out: &mut Vec<Mbuf>, max: usize) -> usize {
        self.dpdk.receive(now, out, max)
    }

    fn alloc_tx(&mut self, len: usize) -> Option<Mbuf> {
        self.dpdk.alloc_tx(len)
    }

    fn recycle(&mut self, buf: Mbuf) {
        self.dpdk.recycle(buf);
    }

    fn transmit(&mut self, _now: Instant, batch: &mut Vec<Mbuf>) -> usize {
        let n = batch.len();
        self.staged.append(batch);
        n
    }

    fn stats(&self) -> DeviceStats {
        let mut s = self.dpdk.stats();
        if let Some(tx) = TX.side.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let t = tx.stats();
            s.tx_frames += t.tx_frames;
            s.tx_bytes += t.tx_bytes;
            s.tx_dropped += t.tx_dropped;
        }
        s
    }
}

/// The process's transmit queue.
struct Tx {
    /// Frames staged, oldest first.
    pending: Mutex<Vec<Mbuf>>,
    /// `pending` may hold frames.
    any: AtomicBool,
    /// The queue pair's transmit side; held while sending.
    side: Mutex<Option<DpdkTx>>,
}

static TX: Tx = Tx {
    pending: Mutex::new(Vec::new()),
    any: AtomicBool::new(false),
    side: Mutex::new(None),
};

/// Sends every staged frame (see the module docs); cheap when none is.
pub fn flush() {
    if !TX.any.load(Acquire) {
        return;
    }
    let mut side = TX.side.lock().unwrap_or_else(|e| e.into_inner());
    let mut batch = Vec::new();
    loop {
        TX.any.store(false, Release);
        std::mem::swap(
            &mut batch,
            &mut *TX.pending.lock().unwrap_or_else(|e| e.into_inner()),
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
    let mut pending = TX.pending.lock().unwrap_or_else(|e| e.into_inner());
    if pending.is_empty() && pending.capacity() < batch.capacity() {
        std::mem::swap(&mut batch, &mut *pending);
    }
}

/// In the child of `fork`: the parent's frames and transmit side are the
/// parent's (forgotten, never sent or freed here). A lock another thread
/// of the parent held at the fork stays held in the child, where nothing
/// takes it again: the child's stack is gone, so nothing stages or flushes.
pub fn after_fork() {
    TX.any.store(false, Release);
    if let Ok(mut pending) = TX.pending.try_lock() {
        std::mem::forget(std::mem::take(&mut *pending));
    }
    if let Ok(mut side) = TX.side.try_lock() {
        if let Some(side) = side.take() {
            std::mem::forget(side);
        }
    }
}
