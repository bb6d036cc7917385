//! `cargo fuzz run config`: see [`stepbox_fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stepbox_fuzz::config(data));
