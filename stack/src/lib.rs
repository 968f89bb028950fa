//! accel-stack: a sans-IO userspace TCP/IP stack.
//!
//! Layers, bottom up, each with its own contract:
//! - [`wire`]: zero-copy packet views and `Repr`s; nothing panics on input.
//! - [`phy`]: devices (receive a batch, transmit a batch, device-owned
//!   buffers) and wrappers that inject faults, trace and capture.
//! - [`iface`]: one IPv4 interface: ARP, routing to the gateway, ICMP,
//!   demultiplexing to sockets, counters of every drop by reason.
//! - [`tcp`] and [`udp`]: the sockets, driven by the interface.
//!
//! Every entry point takes `now` ([`time::Instant`]); protocol code reads no
//! clock, starts no thread and calls no libc, and the work of one poll is
//! bounded by a budget. The crate knows nothing of `accel-coro` or the shim;
//! readiness is reported through `core::task::Waker`s. `unsafe` appears
//! only in [`phy::tap`], at the system-call edge, and in `phy::dpdk` (cargo
//! feature `dpdk`), at the DPDK edge.
#![deny(unsafe_code)]

pub mod error;
pub mod iface;
pub mod phy;
pub mod tcp;
pub mod time;
pub mod udp;
pub mod wire;

pub use error::{Errno, Result};
pub use time::Instant;
