//! The fuzz targets' bodies, kept out of the `fuzz_targets/` wrappers so
//! the workspace's regression tests (`stack/tests/fuzz_regressions.rs`)
//! can replay saved inputs through the very same code with `cargo test`.
//!
//! | target | body |
//! | --- | --- |
//! | `wire_ethernet`, `wire_arp`, `wire_ipv4`, `wire_icmpv4`, `wire_tcp`, `wire_udp` | [`wire`]: every parser, and emit/parse round trips |
//! | `tcp_input` | [`tcp`]: a connection driven from an arbitrary starting state, invariants on |
//! | `iface_input` | [`iface`]: ARP, ICMP, UDP and raw frames into a stack with sockets in use |
//! | `conn_image` | [`image`]: a connection's image from another process, decoded and made a connection |

pub mod bytes;
pub mod iface;
pub mod image;
pub mod net;
pub mod tcp;
pub mod wire;
