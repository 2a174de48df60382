//! `cargo +nightly fuzz run request_peek`: see [`zai_fuzz::request_peek`] for what is fed and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zai_fuzz::request_peek(data));
