//! Empty build script: cargo considers a package's build-dependencies only when it has one,
//! and the hack's build-dependencies unify the features of host (build-script, proc-macro) crates.
fn main() {}
