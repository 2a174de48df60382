//! The `zai-proxy` binary.
fn main() {}
