//! `cargo fuzz run oci`: see [`stepbox_fuzz::oci`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stepbox_fuzz::oci(data));
