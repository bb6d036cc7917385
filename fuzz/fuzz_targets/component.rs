//! `cargo fuzz run component`: see [`stepbox_fuzz::component`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stepbox_fuzz::component(data));
