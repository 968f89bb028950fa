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
//!
//! But a program thread's stint as the holder is bounded: after
//! `ACCEL_TX_STINT_US` (200 µs), if frames are still coming, it lets go
//! and hands them to the relay thread ([`crate::engine::relay`]), which
//! holds on for as long as they come. Without the bound, one thread of such a server wrote
//! everyone's replies, a `writev` each in which the kernel runs the peer's
//! receive and often hands the core to it: it could not keep up with the
//! others' staging, never got out, and its own connection waited. Python's
//! thread-per-connection echo over 10 connections had round trips of
//! 20-70 ms, one connection at a time.
//!
//! Routes: on net_tap, a connection routed to a lane
//! ([`crate::engine::lanes`]) has its frames written on the lane instead
//! of the queue pair's transmit queue, so that the kernel sends the flow's
//! frames to the lane. They are staged and flushed the same way, in order.

use crate::engine::worker::now;
use accel_stack::iface::hash::{DemuxHash, KeyedHash};
use accel_stack::phy::dpdk::{DpdkDevice, DpdkTx, Mbuf};
use accel_stack::phy::{Capabilities, Device, DeviceStats};
use accel_stack::Instant;
use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::HashMap;
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
    /// Connections (local, remote) whose frames go out on a lane (keyed
    /// hashing: the remote's ports are the peer's to choose).
    routes: HashMap<(SocketAddrV4, SocketAddrV4), u16, DemuxHash>,
    /// How many routes there were after the last pruning.
    routes_kept: usize,
    /// Frames for lanes built since the last [`ShimDevice::stage`].
    staged_lanes: Vec<(Mbuf, u16)>,
    /// Frames written on lanes, taken back from the transmit queue (an
    /// empty buffer, swapped with the queue's).
    spent: Vec<Mbuf>,
}

/// A queue pair's transmit queue: the frames staged, and the transmit side.
pub struct TxQueue {
    /// Frames staged, oldest first.
    pending: Mutex<Vec<Mbuf>>,
    /// Frames staged for lanes, oldest first.
    lane_pending: Mutex<Vec<(Mbuf, u16)>>,
    /// `lane_pending` may hold frames (without lanes, a flush takes no
    /// lock of theirs).
    any_lanes: AtomicBool,
    /// Frames written on lanes, for the stack to build its next frames in
    /// (a fresh mbuf from the pool costs more: its ring is shared by every
    /// thread, without a per-thread cache).
    spent: Mutex<Vec<Mbuf>>,
    /// `spent` holds some.
    any_spent: AtomicBool,
    /// `pending` may hold frames.
    any: AtomicBool,
    /// The queue pair's transmit side; held while sending.
    side: Mutex<Option<DpdkTx>>,
}

/// How long a program thread holds the transmit side while frames keep
/// coming before it hands them to the relay, ns (`ACCEL_TX_STINT_US`; see
/// the module docs).
fn stint_ns() -> u64 {
    u64::from(crate::startup::config().tx_stint_us) * 1000
}

impl ShimDevice {
    /// `dpdk`, its transmit side split off to a transmit queue of its own
    /// (returned too, for [`install`]).
    pub fn new(mut dpdk: DpdkDevice) -> Result<(ShimDevice, Arc<TxQueue>), String> {
        let side = dpdk.split_tx().map_err(|e| e.to_string())?;
        let tx = Arc::new(TxQueue {
            pending: Mutex::new(Vec::new()),
            lane_pending: Mutex::new(Vec::new()),
            any_lanes: AtomicBool::new(false),
            spent: Mutex::new(Vec::new()),
            any_spent: AtomicBool::new(false),
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
            routes: HashMap::with_hasher(DemuxHash::from_key(&KeyedHash::new(crate::sys::random16()))),
            routes_kept: 0,
            staged_lanes: Vec::new(),
            spent: Vec::new(),
        };
        Ok((dev, tx))
    }

    /// Sends the frames of connection `local`-`remote` on lane `lane` from
    /// now on; whether that is new.
    pub fn route(&mut self, local: SocketAddrV4, remote: SocketAddrV4, lane: u16) -> bool {
        if self.routes.get(&(local, remote)) == Some(&lane) {
            return false;
        }
        self.routes.insert((local, remote), lane);
        true
    }

    /// Whether the routes have doubled since they were last pruned (and
    /// are more than a few).
    pub fn routes_need_pruning(&self) -> bool {
        self.routes.len() > 64 && self.routes.len() >= 2 * self.routes_kept
    }

    /// Keeps the routes of connections that `live` says still exist;
    /// tells `gone` the others.
    pub fn prune_routes(
        &mut self,
        live: impl Fn(SocketAddrV4, SocketAddrV4) -> bool,
        mut gone: impl FnMut(SocketAddrV4, SocketAddrV4),
    ) {
        self.routes.retain(|&(l, r), _| {
            let keep = live(l, r);
            if !keep {
                gone(l, r);
            }
            keep
        });
        self.routes_kept = self.routes.len();
    }

    /// Forgets the routes to lane `lane` (given back), telling `gone`.
    pub fn unroute_lane(&mut self, lane: u16, mut gone: impl FnMut(SocketAddrV4, SocketAddrV4)) {
        self.routes.retain(|&(l, r), &mut to| {
            if to == lane {
                gone(l, r);
            }
            to != lane
        });
    }

    /// The connections routed to lane `lane`.
    pub fn routes_to(&self, lane: u16) -> Vec<(SocketAddrV4, SocketAddrV4)> {
        self.routes
            .iter()
            .filter(|&(_, &to)| to == lane)
            .map(|(&flow, _)| flow)
            .collect()
    }

    /// The lane outgoing frame `frame` goes out on, if its connection is
    /// routed to one.
    fn lane_of(&self, frame: &[u8]) -> Option<u16> {
        if self.routes.is_empty() {
            return None;
        }
        let (local, remote) = tcp_tuple(frame)?;
        self.routes.get(&(local, remote)).copied()
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
        if self.staged.is_empty() && self.staged_lanes.is_empty() {
            return;
        }
        if !self.staged.is_empty() {
            self.tx
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut self.staged);
        }
        if !self.staged_lanes.is_empty() {
            self.tx
                .lane_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut self.staged_lanes);
            self.tx.any_lanes.store(true, SeqCst);
        }
        self.tx.any.store(true, SeqCst);
    }

    /// Stages `frame` for the transmit queue, or for its connection's lane.
    fn stage_one(&mut self, frame: Mbuf) {
        match self.lane_of(frame.as_ref()) {
            Some(lane) if frame.segments() == 1 => self.staged_lanes.push((frame, lane)),
            _ => self.staged.push(frame),
        }
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
        if self.tx.any_spent.load(Relaxed) {
            // Frames a flush wrote on lanes: the device's spares again.
            std::mem::swap(
                &mut self.spent,
                &mut *self.tx.spent.lock().unwrap_or_else(|e| e.into_inner()),
            );
            self.tx.any_spent.store(false, Relaxed);
            for m in self.spent.drain(..) {
                self.dpdk.recycle(m);
            }
        }
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
                    self.stage_one(frame);
                }
            }
        } else if self.routes.is_empty() {
            self.staged.append(batch);
        } else {
            for frame in batch.drain(..) {
                self.stage_one(frame);
            }
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
        // The stint is bounded only where a relay can take over (net_tap),
        // and not for the relay.
        let mut bounded = !wait && crate::engine::relay::can_take_over();
        // When this thread first held the side (read only once it does:
        // most flushes find nothing staged).
        let mut since = None;
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
            let since = *since.get_or_insert_with(|| if bounded { now().nanos() } else { 0 });
            let mut batch = Vec::new();
            let mut lanes = Vec::new();
            // The stint ended with frames still coming (see the module
            // docs).
            let mut ended = false;
            loop {
                if bounded && self.any.load(SeqCst) && now().nanos().saturating_sub(since) >= stint_ns() {
                    ended = true;
                    break;
                }
                self.any.store(false, SeqCst);
                std::mem::swap(
                    &mut batch,
                    &mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()),
                );
                if self.any_lanes.swap(false, SeqCst) {
                    std::mem::swap(
                        &mut lanes,
                        &mut *self.lane_pending.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                }
                if !lanes.is_empty() {
                    for (frame, lane) in lanes.iter_mut() {
                        crate::engine::lanes::send(*lane, frame.as_mut());
                    }
                    // Kept for the stack's next frames, as many as the
                    // device keeps spare; the rest go back to the pool.
                    let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
                    let room = 64usize.saturating_sub(spent.len());
                    spent.extend(lanes.drain(..).map(|(f, _)| f).take(room));
                    self.any_spent.store(true, Relaxed);
                    drop(spent);
                    lanes.clear();
                }
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
            // Hand the (empty, grown) buffers back for the next frames.
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.is_empty() && pending.capacity() < batch.capacity() {
                std::mem::swap(&mut batch, &mut *pending);
            }
            drop(pending);
            if lanes.capacity() > 0 {
                let mut pending = self.lane_pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending.is_empty() && pending.capacity() < lanes.capacity() {
                    std::mem::swap(&mut lanes, &mut *pending);
                }
            }
            drop(side);
            // Handed over once the side is free, so the relay finds it
            // so (or a thread that took it meanwhile, which sends them).
            // If the relay is gone, the holder goes on, unbounded.
            if ended {
                if crate::engine::relay::hand_over() {
                    return;
                }
                bounded = false;
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
        if let Ok(mut pending) = t.lane_pending.try_lock() {
            std::mem::forget(std::mem::take(&mut *pending));
        }
        if let Ok(mut spent) = t.spent.try_lock() {
            std::mem::forget(std::mem::take(&mut *spent));
        }
        if let Ok(mut side) = t.side.try_lock() {
            if let Some(side) = side.take() {
                std::mem::forget(side);
            }
        }
    }
}

/// The (local, remote) addresses of outgoing Ethernet frame `frame`, if
/// it carries a TCP segment over IPv4 (not a fragment past the first).
fn tcp_tuple(frame: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4)> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let frag = u16::from_be_bytes(ip.get(6..8)?.try_into().ok()?) & 0x1fff;
    if ip.get(9) != Some(&6) || ihl < 20 || frag != 0 {
        return None;
    }
    let addr = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    let port = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(
            ip.get(ihl + at..ihl + at + 2)?.try_into().ok()?,
        ))
    };
    Some((
        SocketAddrV4::new(addr(12)?, port(0)?),
        SocketAddrV4::new(addr(16)?, port(2)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::tcp_tuple;
    use core::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn a_frames_connection_is_read_from_its_headers() {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[14 + 12..14 + 16].copy_from_slice(&[198, 18, 0, 2]);
        f[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 1]);
        f[34..36].copy_from_slice(&17300u16.to_be_bytes());
        f[36..38].copy_from_slice(&40000u16.to_be_bytes());
        let local = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 17300);
        let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000);
        assert_eq!(tcp_tuple(&f), Some((local, remote)));
        // UDP, ARP, a later fragment, a truncated frame: none.
        let mut udp = f.clone();
        udp[14 + 9] = 17;
        assert_eq!(tcp_tuple(&udp), None);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(tcp_tuple(&arp), None);
        let mut frag = f.clone();
        frag[14 + 7] = 8;
        assert_eq!(tcp_tuple(&frag), None);
        assert_eq!(tcp_tuple(&f[..36]), None);
        assert_eq!(tcp_tuple(&[]), None);
    }
}
