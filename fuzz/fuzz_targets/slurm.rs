//! `cargo fuzz run slurm`: see [`stepbox_fuzz::slurm`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stepbox_fuzz::slurm(data));
