//! accel-shim, built as `libaccel.so`: the `LD_PRELOAD` interposer that
//! runs unmodified Linux network programs on accel's stack.
//!
//! Every intercepted call goes through the one skeleton; calls on plain
//! kernel fds go on to libc after one table load, and calls on the
//! shim's sockets go to [`ops`], which runs them on the stack.
//!
//! | module | holds |
//! | --- | --- |
//! | [`interpose`] | the table of intercepted calls and the macro that makes the exports, the real-function pointers, the [`Ops`](interpose::Ops) trait and (with `build.rs`) the version script |
//! | [`skeleton`] | the body every intercept shares: fd lookup, re-entry guard, errno at the boundary |
//! | `hooks`, `exec` | the intercepts that move fd numbers (`close`, `dup2`, ...) or start programs (`execve`, ...) |
//! | [`fdtable`] | what the shim knows about each fd number, with generations |
//! | [`ops`] | the shim's own operations: each C call mapped onto the modules below |
//! | [`socket`] | a socket's life and the stack-or-kernel decisions |
//! | [`io`] | data and control on accelerated sockets |
//! | [`sockopt`] | socket options: the kernel checks, the stack acts |
//! | [`splice`] | `splice` between an accelerated socket and a pipe |
//! | [`udp`] | UDP on the stack |
//! | [`uring`] | io_uring (through liburing) refused on accelerated sockets |
//! | [`epoll`], [`pollsel`] | readiness over mixed fds |
//! | [`worker`] | the stack, the lock, lazy start, waiting, the keeper |
//! | [`proxy`], [`forked`], [`forkwire`] | `fork`: a child's inherited connections, served through the parent's proxy |
//! | [`sock`], [`sockaddr`], [`netns`] | socket objects, C addresses, moving a tap into a namespace |
//! | [`procs`], [`owner`] | many processes on one port: a process's attachment, and the port owner |
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

pub mod acceptors;
pub mod config;
pub mod counters;
pub mod device;
pub mod epoll;
mod exec;
pub mod fdtable;
pub mod flight;
pub mod forked;
pub mod forkwire;
mod hooks;
pub mod interpose;
pub mod io;
pub mod keeper;
pub mod logging;
pub mod netns;
pub mod ops;
pub mod owner;
pub mod pollsel;
pub mod procs;
pub mod proxy;
pub mod ready;
pub mod reaper;
pub mod signals;
pub mod skeleton;
pub mod sock;
pub mod sockaddr;
pub mod socket;
pub mod sockopt;
pub mod splice;
pub mod stacks;
pub mod startup;
pub mod stats;
pub mod sys;
pub mod tcpinfo;
pub mod udp;
pub mod uring;
pub mod wait;
pub mod worker;
