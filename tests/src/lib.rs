//! accel-tests: end-to-end tests that run real programs (redis, nginx,
//! memcached, wrk) under `LD_PRELOAD=libaccel.so` against real clients.
//!
//! The tests arrive with the shim issue; this crate holds the place.
