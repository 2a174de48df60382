//! zai-promoter: the canary promotion checklist as an engine.
//!
//! IO lives at the edges: a [`platform::Platform`] (Kubernetes here; local processes and Docker
//! in the e2e crate) and a [`signals::SignalSource`] (Prometheus or embedded scraping). The
//! engine decides with pure functions of (config, history, snapshot) and takes its time from an
//! injectable [`clock::Clock`].

pub mod catalog;
pub mod ci;
pub mod clock;
pub mod config;
pub mod driver;
pub mod duration_serde;
pub mod engine;
pub mod error;
pub mod finalise;
pub mod ids;
pub mod notify;
pub mod platform;
pub mod progress;
pub mod report;
pub mod runstate;
pub mod signals;
pub mod workers;

pub use catalog::Phase;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use driver::{Event, EventSink, Gate, Interrupt, Mode, OnInterrupt, Promoter};
pub use error::{Error, Result};
pub use platform::{HttpReply, LogLine, Platform, PodInfo, RolloutStatus, Variant};
pub use report::{Outcome, Report};
pub use signals::{Alert, AlertState, Measurement, Reading, Signal, SignalQuery, SignalSource};
pub use workers::{SharedWorkerStats, WorkerSignals, WorkerStats};
