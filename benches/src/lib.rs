//! zai-benches: shared helpers for the benches (criterion) and the decision-quality Monte Carlo.

pub mod corpus;
pub mod decision;
pub mod overhead;
