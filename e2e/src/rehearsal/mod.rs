//! Promotion rehearsals: the real promoter engine, through its own Kubernetes platform, drives
//! a canary → production promotion of the real proxy binary on a simulated cluster (pods are
//! local processes or Docker containers) served by a Kubernetes API server on loopback, with
//! simulated workers and fake Z.AI upstreams, for built-in scenarios (one defect each, or
//! none) and custom ones from a TOML file. Every random choice comes from one base seed
//! ([`seeds`]), and `--repeat N` turns flakiness into a pass rate per scenario ([`repeat`]).
//! `zai-rehearse` is the command; docs/REHEARSALS.md the guide.

pub mod driver;
pub mod interrupt;
pub mod junit;
pub mod kind;
pub mod manifests;
pub mod prometheus;
pub mod repeat;
pub mod rig;
pub mod scenario;
pub mod seeds;
pub mod stack;
pub mod step_summary;
pub mod suite;
pub mod summary;
pub mod timing;

pub use driver::{
    RunOptions, ScenarioResult, SignalsChoice, WorkerTotals, run_scenario, run_scenario_then,
};
pub use scenario::{
    QUICK, Scenario, builtin, interruptions, inversion_disables, parse_scenario_file, quick,
};
pub use seeds::{DEFAULT_SEED, ScenarioSeeds};
pub use stack::RuntimeChoice;
pub use timing::{DEFAULT_TIME_SCALE, TimeScale};
