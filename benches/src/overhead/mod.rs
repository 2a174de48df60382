//! Proxy overhead bench (issue 9): a mock upstream on loopback, the proxy as a child
//! process, an open-loop load generator, and the report (table + JSON).
//!
//! Entry points for `benches/proxy_overhead.rs`: [`proxy_process::is_proxy_role`] /
//! [`proxy_process::run_proxy_role`] for the child, [`run::Options`], [`run::Rig`] and
//! [`run::run_all`] for the harness, [`report::render`] and [`report::write_json`] for the
//! output.

pub mod canned;
pub mod loadgen;
pub mod machine;
pub mod proxy_process;
pub mod report;
pub mod run;
pub mod stats;
pub mod upstream;
