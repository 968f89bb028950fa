//! A device wrapper that records every frame in a pcap capture, for
//! Wireshark and tshark.
//!
//! [`PcapWriter`] passes every call through to its inner device and writes
//! each received frame (after the inner `receive`) and each transmitted
//! frame (at `transmit`, before the inner device takes it) to a
//! [`std::io::Write`] in the classic pcap format: a global header (magic
//! `0xa1b23c4d`, i.e. nanosecond timestamps; version 2.4; snaplen 65535;
//! link type Ethernet) then one record per frame, stamped with the `now`
//! given to `receive`/`transmit`. Everything is written little-endian;
//! readers detect the byte order from the magic. Frames longer than the
//! snaplen are cut to it, with their original length kept in the record.
//!
//! Capture never gets in the device's way: the first write error stops
//! capturing, is kept for [`PcapWriter::error`], and the device goes on
//! working. Records are written with `write_all`, one call for the record
//! header and one for the frame, so give it a `BufWriter` around a file.

use std::io::{self, Write};

use super::{Capabilities, Device, DeviceStats};
use crate::time::Instant;

/// The magic number of a pcap file with nanosecond timestamps.
pub const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// Longest frame prefix a record holds.
pub const PCAP_SNAPLEN: u32 = 65535;
/// The link type of Ethernet II frames.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Length of the global header.
pub const PCAP_HEADER_LEN: usize = 24;
/// Length of a record header.
pub const PCAP_RECORD_HEADER_LEN: usize = 16;

/// Writes the pcap global header (nanosecond timestamps, Ethernet).
pub fn write_pcap_header<W: Write + ?Sized>(w: &mut W) -> io::Result<()> {
    let mut header = [0u8; PCAP_HEADER_LEN];
    header[0..4].copy_from_slice(&PCAP_MAGIC_NANOS.to_le_bytes());
    // Version 2.4; then (8..16) time zone offset and accuracy, always zero.
    header[4..6].copy_from_slice(&2u16.to_le_bytes());
    header[6..8].copy_from_slice(&4u16.to_le_bytes());
    header[16..20].copy_from_slice(&PCAP_SNAPLEN.to_le_bytes());
    header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    w.write_all(&header)
}

/// Writes one record: `frame` (cut to the snaplen) captured at `at`
/// nanoseconds since the epoch of the capture's clock. Seconds wrap after
/// 2^32 (year 2106 for a wall clock).
pub fn write_pcap_record<W: Write + ?Sized>(w: &mut W, at: Instant, frame: &[u8]) -> io::Result<()> {
    let captured = frame.len().min(PCAP_SNAPLEN as usize);
    let mut header = [0u8; PCAP_RECORD_HEADER_LEN];
    let nanos = at.nanos();
    header[0..4].copy_from_slice(&((nanos / 1_000_000_000) as u32).to_le_bytes());
    header[4..8].copy_from_slice(&((nanos % 1_000_000_000) as u32).to_le_bytes());
    header[8..12].copy_from_slice(&(captured as u32).to_le_bytes());
    header[12..16].copy_from_slice(&u32::try_from(frame.len()).unwrap_or(u32::MAX).to_le_bytes());
    w.write_all(&header)?;
    w.write_all(&frame[..captured])
}

/// Wraps a device and writes every frame through it to a pcap capture.
pub struct PcapWriter<D: Device, W: Write> {
    inner: D,
    writer: W,
    /// The write error that stopped capture, if any.
    error: Option<io::Error>,
}

impl<D: Device, W: Write> PcapWriter<D, W> {
    /// Wraps `inner` and writes the global header to `writer`. A failure is
    /// kept in [`error`](Self::error) and nothing more is written.
    pub fn new(inner: D, mut writer: W) -> Self {
        let error = write_pcap_header(&mut writer).err();
        PcapWriter { inner, writer, error }
    }

    /// The error that stopped capture, if any.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// Whether frames are still being written.
    pub fn is_capturing(&self) -> bool {
        self.error.is_none()
    }

    /// Flushes the writer. A failure stops capture, like a failed write,
    /// and is returned as well as kept (as an error of the same kind).
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(error) = &self.error {
            return Err(io::Error::new(error.kind(), error.to_string()));
        }
        self.writer.flush().inspect_err(|error| {
            self.error = Some(io::Error::new(error.kind(), error.to_string()));
        })
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// The device and the writer (not flushed).
    pub fn into_parts(self) -> (D, W) {
        (self.inner, self.writer)
    }

    fn record(&mut self, now: Instant, frame: &[u8]) {
        if self.error.is_none() {
            self.error = write_pcap_record(&mut self.writer, now, frame).err();
        }
    }
}

impl<D: Device, W: Write> Device for PcapWriter<D, W> {
    type RxBuf = D::RxBuf;
    type TxBuf = D::TxBuf;

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn receive(&mut self, now: Instant, out: &mut Vec<D::RxBuf>, max: usize) -> usize {
        let start = out.len();
        let n = self.inner.receive(now, out, max);
        for buf in &out[start..] {
            self.record(now, buf.as_ref());
        }
        n
    }

    fn alloc_tx(&mut self, len: usize) -> Option<D::TxBuf> {
        self.inner.alloc_tx(len)
    }

    fn recycle(&mut self, buf: D::RxBuf) {
        self.inner.recycle(buf);
    }

    fn transmit(&mut self, now: Instant, batch: &mut Vec<D::TxBuf>) -> usize {
        for buf in batch.iter() {
            self.record(now, buf.as_ref());
        }
        self.inner.transmit(now, batch)
    }

    fn stats(&self) -> DeviceStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phy::pair::{pair, PairDevice};

    /// A pcap reader written from the format description, independent of
    /// the writer above: it reads the magic to learn the byte order.
    struct Capture {
        nanos: bool,
        version: (u16, u16),
        snaplen: u32,
        linktype: u32,
        /// (seconds, fraction, original length, bytes)
        records: Vec<(u32, u32, u32, Vec<u8>)>,
    }

    fn parse(bytes: &[u8]) -> Capture {
        let magic_le = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let (big, nanos) = match magic_le {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            other => panic!("bad magic {other:#x}"),
        };
        let u32_at = |at: usize| {
            let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let u16_at = |at: usize| {
            let b: [u8; 2] = bytes[at..at + 2].try_into().unwrap();
            if big {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let mut capture = Capture {
            nanos,
            version: (u16_at(4), u16_at(6)),
            snaplen: u32_at(16),
            linktype: u32_at(20),
            records: Vec::new(),
        };
        let mut at = 24;
        while at < bytes.len() {
            let (sec, frac, incl, orig) = (u32_at(at), u32_at(at + 4), u32_at(at + 8), u32_at(at + 12));
            let data = bytes[at + 16..at + 16 + incl as usize].to_vec();
            capture.records.push((sec, frac, orig, data));
            at += 16 + incl as usize;
        }
        assert_eq!(at, bytes.len(), "no trailing bytes");
        capture
    }

    fn send(dev: &mut impl Device, now: Instant, frames: &[&[u8]]) {
        let mut batch = Vec::new();
        for frame in frames {
            let mut buf = dev.alloc_tx(frame.len()).unwrap();
            buf.as_mut().copy_from_slice(frame);
            batch.push(buf);
        }
        dev.transmit(now, &mut batch);
    }

    #[test]
    fn header_records_and_timestamps_read_back() {
        let (a, mut b) = pair(Capabilities::default(), 8);
        let mut dev = PcapWriter::new(a, Vec::new());
        send(
            &mut dev,
            Instant::from_nanos(1_500_000_123),
            &[b"first frame", b"second"],
        );
        send(&mut b, Instant::ZERO, &[&[0xee; 60]]);
        let mut out = Vec::new();
        assert_eq!(dev.receive(Instant::from_nanos(2_000_000_007), &mut out, 8), 1);
        assert!(dev.is_capturing());
        dev.flush().unwrap();
        let (_a, bytes) = dev.into_parts();
        let capture = parse(&bytes);
        assert!(capture.nanos);
        assert_eq!(capture.version, (2, 4));
        assert_eq!((capture.snaplen, capture.linktype), (65535, 1));
        assert_eq!(
            capture.records,
            vec![
                (1, 500_000_123, 11, b"first frame".to_vec()),
                (1, 500_000_123, 6, b"second".to_vec()),
                (2, 7, 60, vec![0xee; 60]),
            ]
        );
    }

    #[test]
    fn long_frames_are_cut_to_the_snaplen() {
        let mut bytes = Vec::new();
        write_pcap_header(&mut bytes).unwrap();
        let frame: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        write_pcap_record(&mut bytes, Instant::from_millis(3), &frame).unwrap();
        let capture = parse(&bytes);
        let (sec, frac, orig, data) = &capture.records[0];
        assert_eq!((*sec, *frac, *orig), (0, 3_000_000, 70_000));
        assert_eq!(data[..], frame[..65535]);
    }

    /// Accepts `budget` bytes, then fails every write.
    struct Failing {
        written: Vec<u8>,
        budget: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = buf.len().min(self.budget);
            self.budget -= n;
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_stops_capture_but_not_the_device() {
        let (a, mut b): (PairDevice, PairDevice) = pair(Capabilities::default(), 8);
        let writer = Failing {
            written: Vec::new(),
            budget: PCAP_HEADER_LEN + PCAP_RECORD_HEADER_LEN + 4,
        };
        let mut dev = PcapWriter::new(a, writer);
        assert!(dev.error().is_none());
        send(&mut dev, Instant::ZERO, &[b"fits", b"does not fit", b"after"]);
        assert_eq!(dev.error().map(io::Error::kind), Some(io::ErrorKind::StorageFull));
        assert!(dev.flush().is_err());
        // Every frame still went through.
        assert_eq!(dev.stats().tx_frames, 3);
        let mut out = Vec::new();
        assert_eq!(b.receive(Instant::ZERO, &mut out, 8), 3);
        let (_a, writer) = dev.into_parts();
        assert_eq!(parse(&writer.written).records, vec![(0, 0, 4, b"fits".to_vec())]);

        let (c, _d) = pair(Capabilities::default(), 8);
        let broken = Failing {
            written: Vec::new(),
            budget: 0,
        };
        let dev = PcapWriter::new(c, broken);
        assert!(!dev.is_capturing(), "a failed header stops capture at once");
    }
}
