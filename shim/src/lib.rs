//! accel-shim, built as `libaccel.so`: the `LD_PRELOAD` interposer that
//! runs unmodified Linux network programs on accel's stack.
//!
//! Today it is the foundation: every intercepted call goes through the one
//! skeleton and on to libc, so a program behaves exactly as without the
//! library; the acceleration plugs into [`ops`].
//!
//! | module | holds |
//! | --- | --- |
//! | [`interpose`] | the table of intercepted calls and the macro that makes the exports, the real-function pointers, the [`Ops`](interpose::Ops) trait and (with `build.rs`) the version script |
//! | [`skeleton`] | the body every intercept shares: fd lookup, re-entry guard, errno at the boundary |
//! | `hooks`, `exec` | the intercepts that move fd numbers (`close`, `dup2`, ...) or start programs (`execve`, ...) |
//! | [`fdtable`] | what the shim knows about each fd number, with generations |
//! | [`ops`] | the shim's own operations (none yet) |
//! | [`startup`] | staged, recursion-safe start-up and the exit summary |
//! | [`config`] | `ACCEL_*` environment variables |
//! | [`logging`] | the allocation-free log |
//! | [`counters`] | what the interposer did, per function |
//! | [`sys`] | the shim's own I/O, as raw system calls |
//!
//! Rules every module keeps: nothing unwinds across `extern "C"` (the
//! library is built with `panic = "abort"`, and the code on the call path
//! has no panicking operation: the lints below hold it to that); nothing on
//! the call path allocates or takes a lock; the shim never calls a function
//! it intercepts on its own behalf.
//!
//! In this crate's own unit tests the exports are ordinary Rust functions
//! (not `#[no_mangle]`), so the test binary's libc calls are its own; the
//! tests call the exports directly, and the end-to-end tests (crate
//! `accel-tests`) run real programs under `LD_PRELOAD`.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod config;
pub mod counters;
mod exec;
pub mod fdtable;
mod hooks;
pub mod interpose;
pub mod logging;
pub mod ops;
pub mod skeleton;
pub mod startup;
pub mod sys;
