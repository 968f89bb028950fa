//! DPDK ports as devices (cargo feature `dpdk`): the stack reads and
//! writes mbuf memory directly, with no copy on either path.
//!
//! [`Eal::init`] starts DPDK once per process; [`DpdkDevice::open`]
//! configures a port (by name, `"net_tap0"`, or id, `"0"`) and returns its
//! queue pair 0; [`DpdkDevice::queue_pair`] claims the others, one handle
//! per queue pair, each for one thread at a time. On open the port gets a
//! mempool sized from its queues' depths, the MTU asked for (checked
//! against the port's range), the IPv4, TCP and UDP checksum offloads it
//! has (reported in [`Capabilities::checksum`] and [`Offloads`]), RSS over
//! its receive queues when there are several and it hashes, Rx interrupts
//! when the driver takes them, and is started. Any failure is a
//! [`DpdkError`] carrying DPDK's reason, never a crash, and leaves the port
//! closed or untouched.
//!
//! Offloaded checksums are never skipped: a received frame the port marks
//! bad is dropped, one it did not check is verified in software, and each
//! outgoing IPv4 frame gets its offload request and pseudo-header sum.
//!
//! Buffers are [`Mbuf`]s (`RxBuf = TxBuf`): `alloc_tx` takes an mbuf from
//! the pool and appends exactly the frame's length; `transmit` hands whole
//! batches to `rte_eth_tx_burst`, retrying while the port takes more, and
//! frees and counts (in [`DeviceStats::tx_dropped`]) whatever it refuses;
//! `receive` drops and counts (in [`DpdkCounters`]) frames that are
//! multi-segment, shared, or that failed an offloaded checksum.
//!
//! The port is stopped and closed when its last handle is dropped; DPDK
//! then releases it, so a port is opened once per process. Its
//! mempool is freed then if every mbuf came back; if the user still holds
//! some, the pool and DPDK's memory are kept until the process exits
//! ([`Eal`] skips `rte_eal_cleanup`), so a late-dropped mbuf is never freed
//! into unmapped memory.
#![allow(unsafe_code)]

use std::ffi::{c_char, CString};
use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use accel_dpdk_sys as sys;

use super::{Capabilities, Device, DeviceStats};
use crate::time::Instant;
use crate::wire::EthernetAddress;

mod bell;
mod bell_page;
mod eal;
mod link_watch;
mod mbuf;
mod offload;
mod port;
mod steering;
pub mod tap_queues;

pub use eal::{hugepages_ready, set_log_echo, DpdkError, Eal};
pub use mbuf::Mbuf;
pub use port::{LinkStatus, PortStats};
pub use tap_queues::TapQueues;

use link_watch::LinkWatch;
pub use offload::{fill_tx_in_software, rx_ok_in_software, Offloads};
use port::Port;

/// Empties a bell ([`DpdkDevice::rx_interrupt_fd`] of a queue pair that
/// has one) after a sleep it woke, so that the next sleep waits.
pub fn drain_bell(fd: RawFd) {
    bell::Bell::drain(fd);
}

/// Received mbufs a queue keeps to build frames in (see
/// [`DpdkDevice::recycle`]). Covered by the pool's margin of a burst in
/// flight per queue ([`MAX_BURST`] mbufs), which they never exceed.
pub const SPARE_MAX: usize = 64;

/// Most frames one `rte_eth_rx_burst`/`rte_eth_tx_burst` call handles.
pub const MAX_BURST: usize = 256;

/// How to set a port up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpdkConfig {
    /// Receive queues (RSS spreads flows over them when there are several).
    pub rx_queues: u16,
    /// Transmit queues.
    pub tx_queues: u16,
    /// Descriptors per receive queue (the driver may round it).
    pub rx_desc: u16,
    /// Descriptors per transmit queue (the driver may round it).
    pub tx_desc: u16,
    /// Largest IP packet, without the Ethernet header.
    pub mtu: u16,
    /// Frames per burst, at most [`MAX_BURST`]; also
    /// [`Capabilities::max_burst`].
    pub burst: u16,
    /// Mbufs for the stack to hold beyond what the rings need (frames being
    /// processed or built, received data not yet read).
    pub extra_mbufs: u32,
    /// Use the port's checksum offloads where it has them.
    pub checksum_offload: bool,
    /// Ask for Rx interrupts (for [`DpdkDevice::rx_interrupt_fd`]); a port
    /// that cannot have them is started without.
    pub rx_interrupts: bool,
    /// Receive frames for every destination address.
    pub promiscuous: bool,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: 1500,
            burst: 32,
            extra_mbufs: 4096,
            checksum_offload: true,
            rx_interrupts: true,
            promiscuous: false,
        }
    }
}

/// Frames a [`DpdkDevice`] dropped that [`DeviceStats`] has no field for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpdkCounters {
    /// Received frames whose offloaded checksum was wrong.
    pub rx_checksum_dropped: u64,
    /// Received frames in several segments or shared mbufs (the port is
    /// set up so that neither should happen).
    pub rx_unusable_dropped: u64,
    /// Frames `rte_eth_tx_prepare` refused (also in `tx_dropped`).
    pub tx_prepare_dropped: u64,
}

/// One queue pair of a DPDK port; see the module documentation.
///
/// `Send`, so a worker thread may own it. Receiving and transmitting take
/// `&mut self`, so one thread drives a queue pair at a time, as DPDK
/// requires; the `&self` methods (link, counters) are serialised per port.
pub struct DpdkDevice {
    /// Received mbufs kept, reset, to build frames in (see `recycle`).
    /// Declared before `port`: they go back to the pool before the last
    /// handle on the port (and so the pool) can go.
    spare: Vec<Mbuf>,
    port: Arc<Port>,
    queue: u16,
    burst: usize,
    stats: DeviceStats,
    counters: DpdkCounters,
    /// The transmit side was split off ([`DpdkDevice::split_tx`]).
    tx_split: bool,
    /// This queue pair's bell ([`DpdkDevice::ring_bells`]), -1 if none.
    bell_fd: RawFd,
    /// Frames received while arming the bell, for the next receive.
    stash: Vec<Mbuf>,
}

/// The transmit side of one queue pair, split off a [`DpdkDevice`] by
/// [`DpdkDevice::split_tx`], so that frames built under one lock can go out
/// after it is released (the shim builds frames under the stack's lock and
/// transmits after, so a slow transmit, such as net_tap's `writev`, holds
/// nobody up). `Send`; transmitting takes `&mut self`, so one thread
/// drives the queue at a time, as DPDK requires.
pub struct DpdkTx {
    port: Arc<Port>,
    queue: u16,
    stats: DeviceStats,
    counters: DpdkCounters,
}

impl DpdkTx {
    /// Transmits `batch` (draining it) as [`Device::transmit`] does; returns
    /// how many frames the port took.
    pub fn transmit(&mut self, batch: &mut Vec<Mbuf>) -> usize {
        transmit_on(&self.port, self.queue, batch, &mut self.stats, &mut self.counters)
    }

    /// What this side sent and dropped (the `tx_` fields).
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// Its drop counters (`tx_prepare_dropped`).
    pub fn counters(&self) -> DpdkCounters {
        self.counters
    }
}

impl fmt::Debug for DpdkTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpdkTx")
            .field("port", &self.port.name)
            .field("queue", &self.queue)
            .finish()
    }
}

impl DpdkDevice {
    /// Configures and starts the port `port` (a name such as `"net_tap0"`,
    /// or a port id such as `"0"`) and returns its queue pair 0.
    ///
    /// Fails, with DPDK's reason, when there is no such port, the port is
    /// already open, the configuration is outside what the port supports
    /// (queues, MTU), memory for the mempool is short, or the driver
    /// refuses to configure or start.
    pub fn open(eal: &Eal, port: &str, config: DpdkConfig) -> Result<DpdkDevice, DpdkError> {
        if config.burst == 0 || usize::from(config.burst) > MAX_BURST {
            return Err(DpdkError::new("DpdkDevice::open", libc::EINVAL)
                .with(format_args!("burst {} is outside 1..={MAX_BURST}", config.burst)));
        }
        let port = Arc::new(Port::open(eal, port, &config)?);
        port.claim(0)?;
        Ok(DpdkDevice::new(port, 0, usize::from(config.burst)))
    }

    /// In a secondary process: queue pair `queue` of the port `port` that
    /// the primary process configured and started, its mbufs from the
    /// primary's mempool `pool` (see [`mempool_name`](Self::mempool_name)).
    /// Other pairs of the port are had with [`queue_pair`](Self::queue_pair).
    /// The port stays the primary's: dropping the last handle leaves it
    /// running.
    pub fn attach(
        eal: &Eal,
        port: &str,
        pool: &str,
        queue: u16,
        burst: u16,
    ) -> Result<DpdkDevice, DpdkError> {
        if burst == 0 || usize::from(burst) > MAX_BURST {
            return Err(DpdkError::new("DpdkDevice::attach", libc::EINVAL)
                .with(format_args!("burst {burst} is outside 1..={MAX_BURST}")));
        }
        let port = Arc::new(Port::attach(eal, port, pool)?);
        port.claim(queue)?;
        Ok(DpdkDevice::new(port, queue, usize::from(burst)))
    }

    /// The name of the port's mempool, by which a secondary process attaches
    /// ([`attach`](Self::attach)).
    pub fn mempool_name(&self) -> &str {
        &self.port.pool_name
    }

    fn new(port: Arc<Port>, queue: u16, burst: usize) -> DpdkDevice {
        DpdkDevice {
            spare: Vec::with_capacity(SPARE_MAX),
            port,
            queue,
            burst,
            stats: DeviceStats::default(),
            counters: DpdkCounters::default(),
            tx_split: false,
            bell_fd: -1,
            stash: Vec::new(),
        }
    }

    /// Splits the transmit side of this queue pair off as a [`DpdkTx`];
    /// from then on this handle only receives ([`Device::transmit`] on it
    /// frees the frames and counts them dropped, as a misuse). Fails with
    /// `EBUSY` the second time.
    pub fn split_tx(&mut self) -> Result<DpdkTx, DpdkError> {
        if self.tx_split {
            return Err(DpdkError::new("DpdkDevice::split_tx", libc::EBUSY)
                .with("the transmit side was split off already"));
        }
        self.tx_split = true;
        Ok(DpdkTx {
            port: Arc::clone(&self.port),
            queue: self.queue,
            stats: DeviceStats::default(),
            counters: DpdkCounters::default(),
        })
    }

    /// A handle on queue pair `queue` of the same port, for another thread.
    /// Fails with `EINVAL` past the last pair (there are as many pairs as
    /// the smaller of the receive and transmit queue counts) and `EBUSY`
    /// for a pair that already has a handle.
    pub fn queue_pair(&self, queue: u16) -> Result<DpdkDevice, DpdkError> {
        self.port.claim(queue)?;
        Ok(DpdkDevice::new(Arc::clone(&self.port), queue, self.burst))
    }

    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port.id
    }

    /// The port's name (`"net_tap0"`).
    pub fn name(&self) -> &str {
        &self.port.name
    }

    /// This handle's queue pair.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// The port's MAC address.
    pub fn mac(&self) -> EthernetAddress {
        self.port.mac
    }

    /// The port's checksum offloads.
    pub fn offloads(&self) -> Offloads {
        self.port.offloads
    }

    /// Receive and transmit queues the port was configured with.
    pub fn queue_counts(&self) -> (u16, u16) {
        (self.port.rx_queues, self.port.tx_queues)
    }

    /// Whether RSS spreads received flows over the receive queues.
    pub fn rss(&self) -> bool {
        self.port.rss
    }

    /// How the port steers received flows to its queues, with this
    /// handle's queue: where it is a NIC that hashes them by RSS and tells
    /// its key and redirection table (see [`crate::iface::rss`]); `None`
    /// for virtual devices (net_tap, net_memif, ...) and ports with one
    /// receive queue. A stack on this queue can then `connect` from ports
    /// whose replies come back to it ([`crate::iface::Interface::set_rss_steering`]).
    pub fn rss_steering(&self) -> Option<crate::iface::rss::Steering> {
        let (key, reta) = self.port.steering.clone()?;
        Some(crate::iface::rss::Steering {
            key,
            reta,
            queue: self.queue,
        })
    }

    /// Drops this device has counted beyond [`DeviceStats`].
    pub fn counters(&self) -> DpdkCounters {
        self.counters
    }

    /// Mbufs in the port's pool, and how many are free now (in the pool,
    /// not in rings or in the hands of the stack).
    pub fn mempool_free(&self) -> (u32, u32) {
        (self.port.pool_size, self.port.pool_available())
    }

    /// The handler of the port's mbuf pool: `ring_mt_rts` for a port of
    /// several queue pairs (whose threads may be preempted mid-put
    /// without stalling the others), DPDK's default `ring_mp_mc` for one.
    pub fn mempool_ops(&self) -> String {
        self.port.pool_ops()
    }

    /// The link's state, without waiting.
    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        self.port.link()
    }

    /// The port's hardware counters (all queues).
    pub fn port_stats(&self) -> Result<PortStats, DpdkError> {
        self.port.stats()
    }

    /// Every extended statistic of the port, by name.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>, DpdkError> {
        self.port.xstats()
    }

    /// One extended statistic by name (`"rx_good_packets"`); `None` if the
    /// port has none of that name.
    pub fn xstat(&self, name: &str) -> Result<Option<u64>, DpdkError> {
        self.port.xstat(name)
    }

    /// The descriptor that becomes readable when this queue has received
    /// frames, for an event loop to sleep on; `None` when the driver has no
    /// Rx interrupts (memif, af_packet and af_xdp in DPDK 22.11) or the
    /// port was started without them.
    ///
    /// Never read from it: for net_tap it is the TAP descriptor itself,
    /// and reading would consume frames. Poll it, then call
    /// [`receive`](Device::receive). Arm it with
    /// [`arm_rx_interrupt`](Self::arm_rx_interrupt) before sleeping.
    pub fn rx_interrupt_fd(&self) -> Option<RawFd> {
        if !self.port.rx_interrupts {
            return (self.bell_fd >= 0).then_some(self.bell_fd);
        }
        // SAFETY: the port is started and `queue` is one of its queues.
        let fd = unsafe { sys::rte_eth_dev_rx_intr_ctl_q_get_fd(self.port.id, self.queue) };
        (fd >= 0).then_some(fd)
    }

    /// Asks the driver to signal [`rx_interrupt_fd`](Self::rx_interrupt_fd)
    /// on the next frame. Drivers that always signal (net_tap) accept this
    /// as a no-op; fails with `ENOTSUP` when the port has no Rx interrupts
    /// (nor a bell whose peer rings). With a bell, frames that came before
    /// it was armed are kept for the next receive and the bell rings at
    /// once: call it just before sleeping, and receive after. A bell that
    /// woke a sleep is emptied by the sleeper ([`drain_bell`]), without the
    /// device: arming makes no system call while frames do not wait (the
    /// shim arms under the stack's lock before every sleep).
    pub fn arm_rx_interrupt(&mut self) -> Result<(), DpdkError> {
        if !self.port.rx_interrupts {
            return self.arm_bell();
        }
        // SAFETY: the port is started and `queue` is one of its queues,
        // driven by this handle alone.
        let rc = unsafe { sys::rte_eth_dev_rx_intr_enable(self.port.id, self.queue) };
        match rc {
            0 => Ok(()),
            rc if rc == -libc::ENOTSUP => Ok(()),
            rc => Err(DpdkError::new("rte_eth_dev_rx_intr_enable", rc)),
        }
    }
}

impl fmt::Debug for DpdkDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpdkDevice")
            .field("port", &self.port.id)
            .field("name", &self.port.name)
            .field("queue", &self.queue)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Drop for DpdkDevice {
    fn drop(&mut self) {
        // Before the port (and maybe its pool) goes with the last handle.
        self.stash.clear();
        if self.bell_fd >= 0 {
            // SAFETY: the bell's socket is this handle's own.
            unsafe { libc::syscall(libc::SYS_close, self.bell_fd) };
        }
        self.port.release(self.queue);
    }
}

impl DpdkDevice {
    /// Gives this queue pair a bell on a `net_memif` link named `id` whose
    /// `server` (or client) end this is: [`rx_interrupt_fd`] is then its
    /// socket, and an idle end sleeps on it while the peer's end rings
    /// (see the bell module's documentation: both ends must be accel
    /// stacks). Returns the bell's descriptor. Fails with the errno of the
    /// set-up (`EADDRINUSE`: another process has this queue pair's bell).
    ///
    /// [`rx_interrupt_fd`]: Self::rx_interrupt_fd
    pub fn ring_bells(&mut self, id: &str, server: bool) -> Result<RawFd, DpdkError> {
        if self.bell_fd >= 0 {
            return Ok(self.bell_fd);
        }
        let at = |e: i32| DpdkError::new("DpdkDevice::ring_bells", e).with(format_args!("bell {id}"));
        if self.port.bell.get().is_none() {
            let bell = bell::Bell::open(id, server).map_err(at)?;
            let _ = self.port.bell.set(bell);
        }
        let Some(bell) = self.port.bell.get() else {
            return Err(at(libc::EINVAL));
        };
        self.bell_fd = bell.listen(self.queue).map_err(at)?;
        Ok(self.bell_fd)
    }

    /// Whether this queue pair has a bell ([`ring_bells`](Self::ring_bells)).
    pub fn has_bell(&self) -> bool {
        self.bell_fd >= 0
    }

    /// [`arm_rx_interrupt`](Self::arm_rx_interrupt) with a bell.
    fn arm_bell(&mut self) -> Result<(), DpdkError> {
        let not = |why: &str| Err(DpdkError::new("rte_eth_dev_rx_intr_enable", libc::ENOTSUP).with(why));
        let port = Arc::clone(&self.port);
        let (Some(bell), true) = (port.bell.get(), self.bell_fd >= 0) else {
            return not("the port was started without Rx interrupts");
        };
        // No peer that rings, on a link that is up: a peer that is not
        // accel, which must be polled. (On a link that is down, the next
        // peer rings as it comes.)
        let link_up = match &port.watch {
            Some(watch) => watch.mapped(),
            None => port.link().is_ok_and(|l| l.up),
        };
        if !bell.peer_rings(self.queue) && link_up {
            return not("the peer rings no bell");
        }
        bell.arm(self.queue);
        // Frames may have come before the mark: take them now (none can
        // while a secondary's view of the link is down: the peer that
        // comes rings as it starts).
        let guard = port.watch.as_ref().map(LinkWatch::burst);
        let n = match guard {
            Some(None) => 0,
            _ => {
                let mut stash = std::mem::take(&mut self.stash);
                let n = self.receive_bursts(&mut stash, self.burst);
                self.stash = stash;
                n
            }
        };
        if n > 0 {
            bell.disarm(self.queue);
            bell.ring_self(self.queue);
        }
        Ok(())
    }

    /// Receives up to `max` frames in bursts (see [`Device::receive`]).
    fn receive_bursts(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let check = self.port.offloads.any_rx();
        let mut taken = 0;
        let mut received = 0;
        // Uninitialised: zeroing 2 KiB on every poll showed in profiles.
        let mut pkts = [const { MaybeUninit::<*mut sys::rte_mbuf>::uninit() }; MAX_BURST];
        while taken < max {
            let want = (max - taken).min(self.burst);
            // SAFETY: `pkts` has room for `want` (≤ MAX_BURST) pointers; the
            // queue is driven by this handle alone.
            let n = unsafe {
                sys::rte_eth_rx_burst(self.port.id, self.queue, pkts.as_mut_ptr().cast(), want as u16)
            };
            let n = usize::from(n);
            taken += n;
            // SAFETY: rx_burst wrote the first `n` pointers.
            for &m in unsafe { init_prefix(&mut pkts, n) }.iter() {
                let Some(m) = NonNull::new(m) else { continue };
                // SAFETY: rx_burst handed us `m`: a fresh mbuf we now own.
                let buf = unsafe { Mbuf::from_raw(m) };
                if buf.segments() != 1 || !buf.is_exclusive() {
                    self.counters.rx_unusable_dropped += 1;
                    continue;
                }
                if check && !offload::rx_ok(&self.port.offloads, buf.ol_flags(), buf.as_ref()) {
                    self.counters.rx_checksum_dropped += 1;
                    continue;
                }
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += buf.as_ref().len() as u64;
                out.push(buf);
                received += 1;
            }
            if n < want {
                break;
            }
        }
        received
    }
}

impl Device for DpdkDevice {
    type RxBuf = Mbuf;
    type TxBuf = Mbuf;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            mtu: usize::from(self.port.mtu),
            checksum: self.port.offloads.caps(),
            tso_max: 0,
            max_burst: self.burst,
        }
    }

    fn receive(&mut self, now: Instant, out: &mut Vec<Mbuf>, max: usize) -> usize {
        // The bell's mark stays: another thread than the sleeper may poll
        // here while it sleeps, and clearing the mark would leave it asleep
        // with frames waiting. The peer clears it as it rings.
        if !self.stash.is_empty() {
            let n = self.stash.len().min(max);
            out.extend(self.stash.drain(..n));
            return n;
        }
        if self.port.watch.is_some() {
            let port = self.port.clone();
            let Some(watch) = &port.watch else { return 0 };
            let Some(regions) = watch.burst() else {
                watch.check(port.id, now.nanos());
                return 0;
            };
            let n = self.receive_bursts(out, max);
            drop(regions);
            if n == 0 {
                watch.check(self.port.id, now.nanos());
            }
            return n;
        }
        self.receive_bursts(out, max)
    }

    /// `None` (counted in `tx_alloc_failed`) when the pool is empty or
    /// `len` does not fit one mbuf.
    fn alloc_tx(&mut self, len: usize) -> Option<Mbuf> {
        let Ok(len) = u16::try_from(len) else {
            self.stats.tx_alloc_failed += 1;
            return None;
        };
        let m = match self.spare.pop() {
            // Reset when it was recycled: as empty as a fresh one.
            Some(buf) => NonNull::new(buf.into_raw()),
            // SAFETY: the pool is alive while the port is.
            None => NonNull::new(unsafe { sys::rte_pktmbuf_alloc(self.port.pool.as_ptr()) }),
        };
        let Some(m) = m else {
            self.stats.tx_alloc_failed += 1;
            return None;
        };
        // SAFETY: `m` is a fresh mbuf we own, empty; append grows its data
        // by `len` bytes or returns NULL if they do not fit.
        if unsafe { sys::rte_pktmbuf_append(m.as_ptr(), len) }.is_null() {
            // SAFETY: ours, unused.
            unsafe { sys::rte_pktmbuf_free(m.as_ptr()) };
            self.stats.tx_alloc_failed += 1;
            return None;
        }
        // SAFETY: fresh from the pool, ours alone, `len` bytes of data.
        Some(unsafe { Mbuf::from_raw(m) })
    }

    /// Keeps `buf` for [`DpdkDevice::alloc_tx`] (up to [`SPARE_MAX`]) when
    /// it is a plain mbuf of this port's pool: one segment, one reference,
    /// its own buffer (no external or indirect data). Reset
    /// (`rte_pktmbuf_reset`), it is then as a fresh one from the pool; the
    /// free and the allocation it spares are a pool round trip each.
    fn recycle(&mut self, buf: Mbuf) {
        if self.spare.len() >= SPARE_MAX || !buf.is_plain_of(self.port.pool.as_ptr()) {
            return; // dropped: back to its pool
        }
        // SAFETY: ours alone (checked), and nothing reads the old frame.
        unsafe { sys::rte_pktmbuf_reset(buf.as_ptr()) };
        self.spare.push(buf);
    }

    fn transmit(&mut self, _now: Instant, batch: &mut Vec<Mbuf>) -> usize {
        if self.tx_split {
            // The queue's transmit side belongs to a DpdkTx now: using it
            // from here too would race in the driver.
            self.stats.tx_dropped += batch.len() as u64;
            batch.clear();
            return 0;
        }
        transmit_on(&self.port, self.queue, batch, &mut self.stats, &mut self.counters)
    }

    fn stats(&self) -> DeviceStats {
        self.stats
    }
}

/// Hands `batch` to `queue` of `port` in bursts, retrying while the port
/// takes more; frees and counts what it refuses (see the module docs).
fn transmit_on(
    port: &Port,
    queue: u16,
    batch: &mut Vec<Mbuf>,
    stats: &mut DeviceStats,
    counters: &mut DpdkCounters,
) -> usize {
    // A shared memif port whose regions are not mapped here (the link is
    // down): nothing can be sent (see `LinkWatch`).
    let _regions = match &port.watch {
        None => None,
        Some(watch) => match watch.burst() {
            Some(guard) => Some(guard),
            None => {
                stats.tx_dropped += batch.len() as u64;
                batch.clear();
                return 0;
            }
        },
    };
    let offload = port.offloads.any_tx();
    let mut accepted = 0;
    let mut frames = batch.drain(..);
    // Uninitialised, as in `receive`; only the first `n` are ever read.
    let mut pkts_buf = [const { MaybeUninit::<*mut sys::rte_mbuf>::uninit() }; MAX_BURST];
    let mut lens_buf = [const { MaybeUninit::<u32>::uninit() }; MAX_BURST];
    loop {
        let mut n = 0;
        for mut buf in frames.by_ref().take(MAX_BURST) {
            if offload {
                prepare_offload(port, &mut buf);
            }
            lens_buf[n].write(buf.pkt_len());
            pkts_buf[n].write(buf.into_raw());
            n += 1;
        }
        if n == 0 {
            break;
        }
        // SAFETY: the loop above wrote the first `n` of both.
        let (pkts, lens) = unsafe { (init_prefix(&mut pkts_buf, n), init_prefix(&mut lens_buf, n)) };
        if offload {
            n = tx_prepare(port, queue, pkts, lens, stats, counters);
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: pkts[sent..n] are valid mbufs we own; the queue is
            // driven by the caller's handle alone (a `&mut` of the device
            // or of its split-off transmit side). The port takes ownership
            // of the first `k`.
            let k = unsafe {
                sys::rte_eth_tx_burst(port.id, queue, pkts[sent..].as_mut_ptr(), (n - sent) as u16)
            };
            if k == 0 {
                break;
            }
            sent += usize::from(k);
        }
        stats.tx_frames += sent as u64;
        stats.tx_bytes += lens[..sent].iter().map(|&l| u64::from(l)).sum::<u64>();
        if sent < n {
            // SAFETY: the port refused pkts[sent..n]: still ours, unused.
            unsafe { sys::rte_pktmbuf_free_bulk(pkts[sent..].as_mut_ptr(), (n - sent) as u32) };
            stats.tx_dropped += (n - sent) as u64;
        }
        accepted += sent;
    }
    if accepted > 0 {
        if let Some(bell) = port.bell.get() {
            bell.ring(queue);
        }
    }
    accepted
}

/// Requests the transmit offloads `buf` needs (per the port's offloads),
/// seeding the pseudo-header checksum.
fn prepare_offload(port: &Port, buf: &mut Mbuf) {
    if let Some((flags, l2, l3)) = offload::prepare_tx(&port.offloads, buf.as_mut()) {
        // SAFETY: we own the mbuf; the call only sets its offload fields.
        unsafe { sys::accel_mbuf_set_tx_offload(buf.as_ptr(), flags, l2, l3) };
    }
}

/// Runs `rte_eth_tx_prepare` over `pkts`, freeing the frames it refuses
/// and closing the gaps; returns how many remain.
fn tx_prepare(
    port: &Port,
    queue: u16,
    pkts: &mut [*mut sys::rte_mbuf],
    lens: &mut [u32],
    stats: &mut DeviceStats,
    counters: &mut DpdkCounters,
) -> usize {
    let mut n = pkts.len();
    let mut done = 0;
    while done < n {
        let count = (n - done) as u16;
        // SAFETY: pkts[done..n] are valid mbufs we own, bound for `queue`,
        // which the caller's handle alone drives.
        let ok = unsafe { sys::rte_eth_tx_prepare(port.id, queue, pkts[done..].as_mut_ptr(), count) };
        done += usize::from(ok);
        if done < n {
            // SAFETY: pkts[done] is ours and is not used again.
            unsafe { sys::rte_pktmbuf_free(pkts[done]) };
            pkts.copy_within(done + 1..n, done);
            lens.copy_within(done + 1..n, done);
            n -= 1;
            counters.tx_prepare_dropped += 1;
            stats.tx_dropped += 1;
        }
    }
    n
}

/// The first `n` entries of `a`, as initialised values.
///
/// # Safety
/// The caller has written `a[..n]`.
unsafe fn init_prefix<T: Copy>(a: &mut [MaybeUninit<T>], n: usize) -> &mut [T] {
    let head = &mut a[..n];
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the caller wrote
    // these `n` entries.
    unsafe { &mut *(ptr::from_mut(head) as *mut [T]) }
}

/// A C string from `buf` (NUL-terminated within it), lossily decoded.
fn c_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A name for a new mempool, unique in this process.
fn pool_name() -> CString {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    CString::new(format!("accel_mp_{n}")).unwrap_or_default()
}

/// Claim flags for `n` queue pairs.
fn claims(n: u16) -> Vec<AtomicBool> {
    (0..n).map(|_| AtomicBool::new(false)).collect()
}

/// Ports open in this process (a port may be open once).
static OPEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Marks port `id` open; false if it already was.
fn mark_open(id: u16) -> bool {
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    if open.contains(&id) {
        return false;
    }
    open.push(id);
    true
}

/// Marks port `id` closed.
fn mark_closed(id: u16) {
    OPEN.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|&p| p != id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_text_stops_at_the_nul() {
        let raw: Vec<c_char> = b"rx_good_packets\0junk".iter().map(|&b| b as c_char).collect();
        assert_eq!(c_text(&raw), "rx_good_packets");
        let full: Vec<c_char> = b"abc".iter().map(|&b| b as c_char).collect();
        assert_eq!(c_text(&full), "abc");
    }

    #[test]
    fn pool_names_are_unique_and_fit_dpdk() {
        let a = pool_name();
        let b = pool_name();
        assert_ne!(a, b);
        assert!(a.as_bytes().len() < sys::RTE_MEMPOOL_NAMESIZE as usize);
    }

    #[test]
    fn a_port_opens_once() {
        assert!(mark_open(31));
        assert!(!mark_open(31));
        mark_closed(31);
        assert!(mark_open(31));
        mark_closed(31);
        assert_eq!(claims(3).len(), 3);
    }

    #[test]
    fn devices_and_buffers_may_move_between_threads() {
        fn send<T: Send>() {}
        send::<DpdkDevice>();
        send::<Mbuf>();
        send::<Eal>();
    }

    #[test]
    fn defaults_are_sane() {
        let c = DpdkConfig::default();
        assert!(c.burst as usize <= MAX_BURST && c.rx_queues == 1 && c.mtu == 1500);
    }
}
