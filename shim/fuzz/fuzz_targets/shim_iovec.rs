#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| accel_shim_fuzz::args::iovec(data));
