//! `cargo fuzz run egress`: see [`stepbox_fuzz::egress`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stepbox_fuzz::egress(data));
