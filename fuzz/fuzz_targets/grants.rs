//! `cargo fuzz run grants`: see [`stepbox_fuzz::grants`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stepbox_fuzz::grants(data));
