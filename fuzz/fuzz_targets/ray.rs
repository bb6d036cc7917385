//! `cargo fuzz run ray`: see [`stepbox_fuzz::ray`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stepbox_fuzz::ray(data));
