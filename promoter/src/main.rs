//! The `zai-promoter` binary.
fn main() {}
