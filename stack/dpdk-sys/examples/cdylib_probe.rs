//! A cdylib that links DPDK through accel-dpdk-sys, as `libaccel.so` will:
//! proof that the static, whole-archive link works for a shared object.
//! `tests/cdylib.rs` loads it with `dlopen` and starts its EAL.
//!
//! Built by `cargo test` (which builds the examples) as
//! `target/<profile>/examples/libcdylib_probe.so`.

use core::ffi::{c_char, c_int};

use accel_dpdk_sys as dpdk;

/// Starts the EAL with `argv[..argc]`, returns how many Ethernet ports it
/// found (or `-rte_errno` if it did not start), and cleans the EAL up
/// again.
///
/// # Safety
///
/// `argv` points to `argc` valid NUL-terminated strings; the EAL of this
/// library must not have been started before.
#[no_mangle]
pub unsafe extern "C" fn accel_dpdk_probe(argc: c_int, argv: *mut *mut c_char) -> c_int {
    // SAFETY: the caller passes a valid argv and calls us once.
    let rc = unsafe { dpdk::rte_eal_init(argc, argv) };
    if rc < 0 {
        // SAFETY: reads this thread's rte_errno.
        return -unsafe { dpdk::rte_errno() };
    }
    // SAFETY: the EAL is up.
    let ports = unsafe { dpdk::rte_eth_dev_count_avail() };
    // SAFETY: the EAL is up and nothing of it is in use any more.
    unsafe { dpdk::rte_eal_cleanup() };
    c_int::from(ports)
}
