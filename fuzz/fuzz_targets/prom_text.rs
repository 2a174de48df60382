//! `cargo +nightly fuzz run prom_text`: see [`zai_fuzz::prom_text`] for what is fed and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zai_fuzz::prom_text(data));
