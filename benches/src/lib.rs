//! zai-benches: shared helpers for the criterion benches.

pub mod corpus;
pub mod overhead;
