//! accel-shim, built as `libaccel.so`: the interposed libc calls, the fd
//! table, epoll/poll/select over mixed fds, and configuration.
//!
//! Nothing is interposed yet: this crate holds its place in the workspace
//! until the shim issue. Loading it with `LD_PRELOAD` changes nothing.
