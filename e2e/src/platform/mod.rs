//! The simulated Kubernetes cluster the rehearsals run on, served by a Kubernetes API server
//! on loopback ([`apiserver`]) so the promoter's own `KubePlatform` and kubectl drive it.
//!
//! Both runtimes have Kubernetes semantics — Deployments with rolling updates (max surge 1, max
//! unavailable 0) gated on `/readyz`, restarts with back-off, revisions for `rollout undo`,
//! endpoint removal before SIGTERM — built from one controller ([`controller`]) over a
//! container [`runtime::Runtime`]:
//! - [`local`]: child processes of the real `zai-proxy` binary (the default, no Docker);
//! - [`docker`]: containers of a locally built image, started through testcontainers.

pub mod apiserver;
pub mod cluster;
pub mod controller;
pub mod docker;
pub mod local;
pub mod ports;
pub mod probe;
pub mod rollout;
pub mod runtime;
pub mod spec;

pub use apiserver::ApiServer;
pub use cluster::{Cluster, PlatformEvent};
pub use spec::{Artifact, Backoff, ProbePort, ReadinessProbe, Timing, VersionSpec};
