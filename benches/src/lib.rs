//! zai-benches: shared helpers for the criterion benches.

pub mod overhead;
