#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| accel_stack_fuzz::image::conn_image(data));
