//! The fuzz targets' bodies as a library, so `fuzz_targets/*.rs` stay one line each and
//! `e2e/tests/fuzz_corpus.rs` replays the committed seeds through exactly the same code.

mod targets;

pub use targets::*;
