//! accel-shim, built as `libaccel.so`: the `LD_PRELOAD` interposer that
//! runs unmodified Linux network programs on accel's stack.
//!
//! Read top-down, in three layers, each using only those below it (the
//! engine calls up through one trait, [`engine::Above`], that the sockets
//! layer implements):
//!
//! | layer | holds |
//! | --- | --- |
//! | [`interpose`] | the C edge: the table of intercepted calls and the macro that makes the exports and real-function pointers, the one skeleton every intercept shares (fd lookup, re-entry guard, errno at the boundary), the intercepts that move fd numbers or start programs, and [`interpose::ops`], each C call mapped onto the sockets layer |
//! | [`sockets`] | what a socket call means: sockets' life and the stack-or-kernel decisions, data, options, UDP, readiness over mixed fds (epoll, poll, select), `splice`, io_uring refused, `fork`'s proxy, and the tables of sockets and sets behind their lock |
//! | [`engine`] | what moves the stacks: one stack per queue pair, the device, lazy start, how threads wait and who drives the device meanwhile (the keeper), many processes on one port, the reaper and the flight recorder |
//!
//! Beside them, leaves everyone may use: [`startup`] (staged,
//! recursion-safe start-up, `fork` and exit: the glue that wires the
//! layers), [`fdtable`] (what the shim knows about each fd number),
//! [`signals`] (the program's handlers, and the epoch a wait checks),
//! [`config`] (`ACCEL_*`), [`logging`], [`counters`], [`sys`] (raw system
//! calls).
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
pub mod engine;
pub mod fdtable;
pub mod interpose;
pub mod logging;
pub mod signals;
pub mod sockets;
pub mod startup;
pub mod sys;
