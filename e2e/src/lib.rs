//! zai-e2e: the test harness.
pub mod binaries;
pub mod ci_image;
pub mod error;
pub mod fake;
pub mod platform;
pub mod redis;
pub mod rehearsal;
pub mod seed;
pub mod service;
pub mod workers;
pub use binaries::proxy_bin;
pub use error::Error;
