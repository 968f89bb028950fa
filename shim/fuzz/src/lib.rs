//! The shim's fuzz targets' bodies, kept out of the `fuzz_targets/`
//! wrappers so `shim/tests/fuzz_regressions.rs` replays saved inputs
//! through the same code under `cargo test`.
//!
//! | target | body |
//! | --- | --- |
//! | `shim_sockaddr` | [`args::sockaddr`]: `struct sockaddr` in and out |
//! | `shim_sockopt` | [`args::sockopt`]: socket option values in and out |
//! | `shim_iovec` | [`args::iovec`]: iovec arrays and message headers |
//! | `shim_epoll` | [`args::epoll`]: `epoll_ctl` events, `epoll_wait` arrays and timeouts |

pub mod args;
#[path = "../../../stack/fuzz/src/bytes.rs"]
pub mod bytes;
