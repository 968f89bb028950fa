//! A Linux TAP interface as a device: the kernel's network stack is the
//! peer, so the stack can talk to ordinary programs and tools.
//!
//! [`TapDevice::open`] opens `/dev/net/tun` non-blocking and close-on-exec
//! and attaches it to a TAP interface (`IFF_TAP | IFF_NO_PI`: whole
//! Ethernet frames, no packet-information prefix), creating the interface
//! if it does not exist. Each `read(2)` gives one frame and each `write(2)`
//! sends one; `receive` reads until the kernel has no more (`EAGAIN`) or
//! `max` frames, and `transmit` counts a frame the kernel refuses (`EAGAIN`,
//! `ENOBUFS`, or any other error) in [`DeviceStats::tx_dropped`] and moves
//! on. The descriptor ([`TapDevice::fd`]) is what an event loop waits on; it
//! is closed when the device is dropped, which also removes a
//! non-persistent interface.
//!
//! Buffers ([`TapBuf`]) are 64 KiB so no frame is ever cut short, whatever
//! the interface's MTU, and are recycled through a small free list (at most
//! [`POOL_MAX`] spare buffers), so steady traffic does not allocate. A
//! transmit buffer is not zeroed. The device and its buffers are `Send`.
//!
//! The interface itself (addresses, MTU, up/down, namespace) is configured
//! from outside, for example with `ip`; the MTU given here only sets
//! [`Capabilities::mtu`] and must match. Checksums are all computed in
//! software. The only `unsafe` code is the `TUNSETIFF` ioctl.
#![allow(unsafe_code)]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Capabilities, Device, DeviceStats};
use crate::time::Instant;
use crate::wire::ChecksumCaps;

/// `_IOW('T', 202, int)`: attach the file to a TUN/TAP interface.
const TUNSETIFF: libc::Ioctl = 0x4004_54ca;
/// A TAP (Ethernet) interface rather than TUN (IP).
const IFF_TAP: libc::c_short = 0x0002;
/// No 4-byte packet-information prefix on each frame.
const IFF_NO_PI: libc::c_short = 0x1000;
/// Size of an interface name, NUL included.
const IFNAMSIZ: usize = 16;

/// Length of every buffer: the largest frame a read can return.
pub const BUF_LEN: usize = 65536;
/// Most spare buffers kept for reuse (4 MiB).
pub const POOL_MAX: usize = 64;

/// The part of `struct ifreq` that `TUNSETIFF` uses: the name, then a
/// 24-byte union whose first member here is `ifr_flags`.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _union_rest: [u8; 22],
}

const _: () = assert!(size_of::<IfReq>() == 40);

impl IfReq {
    /// A request for interface `name`: shorter than [`IFNAMSIZ`], no NUL
    /// (empty lets the kernel choose `tapN`).
    fn new(name: &str, flags: libc::c_short) -> io::Result<IfReq> {
        if name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}: at most 15 bytes, no NUL"),
            ));
        }
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags,
            _union_rest: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(req)
    }

    /// The name the kernel wrote back.
    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// A frame buffer of a [`TapDevice`]; `as_ref`/`as_mut` give exactly the
/// frame's bytes. Dropping it returns its memory to the device's free list.
pub struct TapBuf {
    /// Always [`BUF_LEN`] bytes.
    data: Vec<u8>,
    len: usize,
    pool: Pool,
}

impl TapBuf {
    /// A buffer from `pool` (or a new one) holding a `len`-byte frame.
    fn take(pool: &Pool, len: usize) -> TapBuf {
        let spare = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        TapBuf {
            data: spare.unwrap_or_else(|| vec![0; BUF_LEN]),
            len,
            pool: Arc::clone(pool),
        }
    }
}

impl fmt::Debug for TapBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapBuf")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl AsRef<[u8]> for TapBuf {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl AsMut<[u8]> for TapBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
}

impl Drop for TapBuf {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_MAX {
            pool.push(std::mem::take(&mut self.data));
        }
    }
}

/// A TAP interface, opened by [`TapDevice::open`].
pub struct TapDevice {
    file: File,
    name: String,
    mtu: usize,
    pool: Pool,
    stats: DeviceStats,
    /// The last unexpected error from a read or write.
    error: Option<io::Error>,
}

impl TapDevice {
    /// Attaches to TAP interface `name` (created if missing; empty lets the
    /// kernel pick one), with an MTU of 1500.
    ///
    /// Needs `CAP_NET_ADMIN`, unless the interface exists and belongs to
    /// the caller.
    pub fn open(name: &str) -> io::Result<TapDevice> {
        TapDevice::open_with_mtu(name, 1500)
    }

    /// Like [`open`](Self::open), reporting `mtu` in the capabilities (it
    /// must match the interface's MTU, which this does not change).
    pub fn open_with_mtu(name: &str, mtu: usize) -> io::Result<TapDevice> {
        let mut req = IfReq::new(name, IFF_TAP | IFF_NO_PI)?;
        // std opens with O_CLOEXEC.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")?;
        // SAFETY: `file` is an open descriptor of /dev/net/tun, and `req` is
        // a live, writable struct laid out as `struct ifreq` (40 bytes, name
        // then flags), which is all TUNSETIFF reads and writes back.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TapDevice {
            file,
            name: req.name(),
            mtu,
            pool: Arc::new(Mutex::new(Vec::new())),
            stats: DeviceStats::default(),
            error: None,
        })
    }

    /// The interface's name, as the kernel reported it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor to wait on for readability (and writability after a
    /// transmit dropped frames for lack of room).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Takes the last unexpected read or write error (other than "try
    /// again" and `ENOBUFS`); such a read ended a `receive` early, such a
    /// write dropped its frame.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Spare buffers in the free list.
    pub fn spare_buffers(&self) -> usize {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl fmt::Debug for TapDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapDevice")
            .field("name", &self.name)
            .field("fd", &self.fd())
            .field("mtu", &self.mtu)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AsFd for TapDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

/// Whether a write failed only for lack of room, right now.
fn is_full(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock || error.raw_os_error() == Some(libc::ENOBUFS)
}

impl Device for TapDevice {
    type RxBuf = TapBuf;
    type TxBuf = TapBuf;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            mtu: self.mtu,
            checksum: ChecksumCaps::default(),
            tso_max: 0,
            max_burst: 32,
        }
    }

    fn receive(&mut self, _now: Instant, out: &mut Vec<TapBuf>, max: usize) -> usize {
        let mut received = 0;
        while received < max {
            let mut buf = TapBuf::take(&self.pool, BUF_LEN);
            match (&self.file).read(&mut buf.data) {
                Ok(0) => break,
                Ok(len) => {
                    buf.len = len;
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += len as u64;
                    out.push(buf);
                    received += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        received
    }

    /// `None` (counted in `tx_alloc_failed`) for `len` above [`BUF_LEN`].
    fn alloc_tx(&mut self, len: usize) -> Option<TapBuf> {
        if len > BUF_LEN {
            self.stats.tx_alloc_failed += 1;
            return None;
        }
        Some(TapBuf::take(&self.pool, len))
    }

    fn transmit(&mut self, _now: Instant, batch: &mut Vec<TapBuf>) -> usize {
        let mut accepted = 0;
        for buf in batch.drain(..) {
            let frame = buf.as_ref();
            let result = loop {
                match (&self.file).write(frame) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match result {
                Ok(n) if n == frame.len() => {
                    self.stats.tx_frames += 1;
                    self.stats.tx_bytes += n as u64;
                    accepted += 1;
                }
                // The kernel takes a frame whole or not at all.
                Ok(_) => self.stats.tx_dropped += 1,
                Err(e) => {
                    self.stats.tx_dropped += 1;
                    if !is_full(&e) {
                        self.error = Some(e);
                    }
                }
            }
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

    #[test]
    fn ifreq_layout_matches_the_kernel() {
        assert_eq!(core::mem::offset_of!(IfReq, flags), 16);
        assert_eq!(size_of::<IfReq>(), size_of::<libc::ifreq>());
        // _IOW('T', 202, int): write direction, 4-byte argument.
        let iow = (1 << 30) | (4 << 16) | ((b'T' as u32) << 8) | 202;
        assert_eq!(TUNSETIFF, iow as libc::Ioctl);
        assert_eq!(TUNSETIFF, libc::TUNSETIFF);
        assert_eq!(i32::from(IFF_TAP | IFF_NO_PI), libc::IFF_TAP | libc::IFF_NO_PI);
    }

    #[test]
    fn ifreq_name_round_trips_and_is_validated() {
        let req = IfReq::new("acceltap1", IFF_TAP).unwrap();
        assert_eq!(&req.name[..10], b"acceltap1\0");
        assert_eq!(req.name(), "acceltap1");
        assert_eq!(req.flags, IFF_TAP);
        let longest = "a".repeat(15);
        assert_eq!(IfReq::new(&longest, 0).unwrap().name(), longest);
        for bad in ["a".repeat(16), "tap\0x".to_owned()] {
            let error = TapDevice::open(&bad).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn buffers_are_recycled_and_the_pool_is_bounded() {
        let pool: Pool = Arc::new(Mutex::new(Vec::new()));
        let mut buf = TapBuf::take(&pool, 42);
        assert_eq!(buf.as_mut().len(), 42);
        buf.as_mut()[41] = 7;
        let addr = buf.data.as_ptr();
        drop(buf);
        let again = TapBuf::take(&pool, 1514);
        assert_eq!(again.data.as_ptr(), addr, "the same memory came back");
        assert_eq!(again.as_ref().len(), 1514);
        assert_eq!(again.as_ref()[41], 7, "not zeroed");
        let many: Vec<TapBuf> = (0..POOL_MAX + 10).map(|_| TapBuf::take(&pool, 60)).collect();
        drop(again);
        drop(many);
        assert_eq!(pool.lock().unwrap().len(), POOL_MAX);
    }
}
