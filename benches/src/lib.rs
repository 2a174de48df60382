//! zai-benches: shared helpers for the criterion benches.
