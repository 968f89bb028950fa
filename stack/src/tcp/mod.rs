//! TCP (RFC 9293), split by phase: sequence-space buffers ([`buffer`]),
//! round-trip estimation ([`rtt`]), congestion control ([`congestion`]:
//! NewReno and CUBIC), the SACK scoreboard ([`scoreboard`]), SYN cookies
//! for a listener whose backlog is full ([`syncookie`]), a connection's image for another stack to go on
//! with ([`image`]), and the socket
//! ([`socket`]: state and the program's operations; [`input`]: segment
//! arrival; [`output`]: segment generation and timers; [`options`]: what
//! a socket option does to an open connection; [`info`]: a snapshot of
//! all that for `TCP_INFO`), and the invariants that tie them together,
//! checked on demand by tests and fuzz targets (`check`).

pub mod buffer;
mod check;
pub mod config;
pub mod congestion;
pub mod flight;
pub mod image;
pub mod info;
pub mod input;
pub mod options;
pub mod output;
pub mod rtt;
pub mod scoreboard;
pub mod socket;
pub mod syncookie;

pub use config::{Keepalive, TcpConfig};
pub use congestion::Algorithm;
pub use info::TcpInfo;
pub use input::Input;
pub use options::SockOpt;
pub use socket::{Event, Readiness, State, TcpSocket, TcpStats};

#[cfg(test)]
mod tests;

/// The least MSS a connection sends with, whatever the peer announces
/// (Linux's `tcp_min_snd_mss` is 48): a peer asking for 1-byte segments
/// would otherwise make the stack spend a segment's cost on every byte.
pub const MIN_MSS: u16 = 64;
