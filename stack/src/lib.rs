//! accel-stack: a sans-IO userspace TCP/IP stack.
//!
//! Every entry point takes `now`; protocol code reads no clock, starts no
//! thread and calls no libc. It knows nothing of `accel-coro` or the shim.
//! The wire formats live in [`wire`]; the interface, TCP and UDP arrive with
//! the stack issue.
#![deny(unsafe_code)]

pub mod wire;
