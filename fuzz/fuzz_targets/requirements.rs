//! `cargo fuzz run requirements`: see [`stepbox_fuzz::requirements`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stepbox_fuzz::requirements(data));
