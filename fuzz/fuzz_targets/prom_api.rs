//! `cargo +nightly fuzz run prom_api`: see [`zai_fuzz::prom_api`] for what is fed and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zai_fuzz::prom_api(data));
