//! `cargo +nightly fuzz run zai_error_classify`: see [`zai_fuzz::zai_error_classify`] for what is fed and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zai_fuzz::zai_error_classify(data));
