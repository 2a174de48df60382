//! zai-e2e: the test harness.
pub mod ci_image;
pub mod error;
pub mod fake;
pub mod platform;
pub mod redis;
pub mod rehearsal;
pub mod seed;
pub mod service;
pub mod workers;
pub use error::Error;
pub use platform::local::binary::proxy_binary;
