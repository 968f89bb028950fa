//! Devices: where frames come from and go to.
//!
//! A [`Device`] is shaped like a DPDK port queue: receive a batch of frames,
//! transmit a batch of frames. Buffers belong to the device: a received
//! frame is the device's own buffer (an mbuf, for DPDK) lent to the stack
//! until it is dropped, and the stack writes outgoing frames straight into
//! buffers the device allocates, so frames pass through without copies.
//!
//! Implementations: [`pair`] (two stacks in one process, for tests and
//! benchmarks), [`tap`] (a Linux TAP interface, the kernel as peer) and,
//! with the `dpdk` feature, `dpdk` (DPDK ports, over the bindings in
//! `stack/dpdk-sys`). Wrappers compose over any device:
//! [`fault::FaultInjector`] (loss, duplication, reordering, delay,
//! corruption, seeded), [`tracer::Tracer`] (a line per frame to a sink) and
//! [`pcap::PcapWriter`] (a capture Wireshark and tshark read).

use crate::time::Instant;
use crate::wire::ChecksumCaps;

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod fault;
pub mod pair;
pub mod pcap;
pub mod tap;
pub mod tracer;

/// What a device can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Largest IP packet (excluding the Ethernet header) the link carries.
    pub mtu: usize,
    /// Which checksums the software must compute or verify.
    pub checksum: ChecksumCaps,
    /// Largest TCP segment the device can split itself (TSO); 0 = none.
    pub tso_max: usize,
    /// Most frames a receive or transmit batch should hold.
    pub max_burst: usize,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            mtu: 1500,
            checksum: ChecksumCaps::default(),
            tso_max: 0,
            max_burst: 32,
        }
    }
}

/// Frame counters every device keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames received and handed to the stack.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames accepted for transmission.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames the device could not transmit (ring full) and freed.
    pub tx_dropped: u64,
    /// Transmit buffers that could not be allocated.
    pub tx_alloc_failed: u64,
}

/// A network device queue pair.
pub trait Device {
    /// A received frame, lent to the stack until dropped.
    type RxBuf: AsRef<[u8]> + AsMut<[u8]>;
    /// A frame being built for transmission.
    type TxBuf: AsRef<[u8]> + AsMut<[u8]>;

    /// What the device can do.
    fn capabilities(&self) -> Capabilities;

    /// Appends up to `max` received frames to `out`; returns how many.
    fn receive(&mut self, now: Instant, out: &mut Vec<Self::RxBuf>, max: usize) -> usize;

    /// A buffer of exactly `len` bytes to build a frame in, or `None` when the
    /// device is out of buffers (the stack retries on a later poll).
    fn alloc_tx(&mut self, len: usize) -> Option<Self::TxBuf>;

    /// Takes back a received frame the stack is done with. A device may
    /// keep the buffer to build a later frame in ([`Device::alloc_tx`]):
    /// DPDK's does, which spares a pool round trip per frame; the default
    /// frees it.
    fn recycle(&mut self, buf: Self::RxBuf) {
        drop(buf);
    }

    /// Transmits the frames in `batch` (draining it); returns how many the
    /// device accepted. Frames it could not take are freed and counted in
    /// [`DeviceStats::tx_dropped`]: to the stack they are lost packets, which
    /// TCP recovers.
    fn transmit(&mut self, now: Instant, batch: &mut Vec<Self::TxBuf>) -> usize;

    /// The device's counters.
    fn stats(&self) -> DeviceStats;
}
