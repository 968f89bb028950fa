//! [`Mbuf`]: one owned, single-segment DPDK packet buffer, the receive and
//! transmit buffer of a DPDK device.
//!
//! `as_ref`/`as_mut` are the packet bytes in the mbuf's own memory (from
//! `rte_pktmbuf_mtod`, `data_len` long), so the stack parses and builds
//! frames in place; dropping an `Mbuf` returns it to its pool
//! (`rte_pktmbuf_free`). The device hands out only mbufs it owns alone
//! (reference count 1, one segment), which is what makes `as_mut` sound.
#![allow(unsafe_code)]

use std::fmt;
use std::ptr::NonNull;

use accel_dpdk_sys as sys;

/// An owned DPDK packet buffer; see the module documentation.
pub struct Mbuf {
    m: NonNull<sys::rte_mbuf>,
    /// First byte of packet data (`rte_pktmbuf_mtod`).
    data: NonNull<u8>,
    /// Bytes of packet data in the (only) segment.
    len: usize,
}

// SAFETY: an Mbuf is the only handle on its mbuf, and the mbuf lives in
// DPDK's shared memory, which any thread may touch; rte_pktmbuf_free from
// any thread is safe with the ring mempool handler (multi-producer), so the
// buffer may move to, and be dropped on, another thread.
unsafe impl Send for Mbuf {}

// SAFETY: `&Mbuf` only reads the packet bytes.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    /// Takes ownership of `m`.
    ///
    /// # Safety
    ///
    /// `m` is a valid mbuf that nothing else will use or free: a fresh one
    /// from `rte_pktmbuf_alloc` or `rte_eth_rx_burst`. Its first segment's
    /// data (`data_off`, `data_len`) must not change while the `Mbuf`
    /// exists, except through it.
    pub(crate) unsafe fn from_raw(m: NonNull<sys::rte_mbuf>) -> Mbuf {
        // SAFETY: the caller guarantees `m` is valid and ours; buf_addr +
        // data_off is rte_pktmbuf_mtod(m), inside the mbuf's buffer.
        let (data, len) = unsafe {
            let raw = m.as_ptr();
            let data = (*raw).buf_addr.cast::<u8>().add(usize::from((*raw).data_off));
            (data, usize::from((*raw).data_len))
        };
        Mbuf {
            m,
            data: NonNull::new(data).unwrap_or(NonNull::dangling()),
            len,
        }
    }

    /// Gives up ownership: the caller now frees (or transmits) the mbuf.
    pub(crate) fn into_raw(self) -> *mut sys::rte_mbuf {
        let m = self.m.as_ptr();
        std::mem::forget(self);
        m
    }

    /// The mbuf, for DPDK calls that do not take ownership.
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.m.as_ptr()
    }

    /// Segments in the packet (`nb_segs`).
    pub fn segments(&self) -> u16 {
        // SAFETY: the mbuf is valid while we own it.
        unsafe { (*self.m.as_ptr()).nb_segs }
    }

    /// The mbuf's offload flags (`ol_flags`: `RTE_MBUF_F_*`).
    pub fn ol_flags(&self) -> u64 {
        // SAFETY: the mbuf is valid while we own it.
        unsafe { (*self.m.as_ptr()).ol_flags }
    }

    /// The packet's length over all segments (`pkt_len`).
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: the mbuf is valid while we own it.
        unsafe { (*self.m.as_ptr()).pkt_len }
    }

    /// Whether this handle is the mbuf's only reference (`refcnt == 1`).
    pub(crate) fn is_exclusive(&self) -> bool {
        // SAFETY: the mbuf is valid while we own it.
        unsafe { (*self.m.as_ptr()).refcnt == 1 }
    }

    /// Whether the mbuf is a plain one of `pool`: one segment, this
    /// handle its only reference, its data in its own buffer (neither an
    /// external buffer nor attached to another mbuf).
    pub(crate) fn is_plain_of(&self, pool: *mut sys::rte_mempool) -> bool {
        let foreign = sys::RTE_MBUF_F_EXTERNAL | sys::RTE_MBUF_F_INDIRECT;
        // SAFETY: the mbuf is valid while we own it.
        let same_pool = unsafe { (*self.m.as_ptr()).pool == pool };
        same_pool && self.segments() == 1 && self.is_exclusive() && self.ol_flags() & foreign == 0
    }
}

impl AsRef<[u8]> for Mbuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `data` points at `len` bytes of the mbuf's first segment,
        // valid while we own the mbuf; `&self` excludes writers.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
    }
}

impl AsMut<[u8]> for Mbuf {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_ref`; `&mut self` on the only reference to an
        // unshared (refcnt 1) mbuf makes the bytes ours to write.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len) }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nothing uses it after this.
        unsafe { sys::rte_pktmbuf_free(self.m.as_ptr()) };
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len)
            .field("segments", &self.segments())
            .field("ol_flags", &format_args!("{:#x}", self.ol_flags()))
            .finish()
    }
}
