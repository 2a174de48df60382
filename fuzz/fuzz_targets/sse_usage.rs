//! `cargo +nightly fuzz run sse_usage`: see [`zai_fuzz::sse_usage`] for what is fed and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zai_fuzz::sse_usage(data));
