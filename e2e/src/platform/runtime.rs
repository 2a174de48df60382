//! The container runtime seam: how one pod's container is started, observed and stopped.
//!
//! The controller ([`super::controller`]) is the same for every platform; a runtime only
//! knows how to run one container — a child process ([`super::local`]) or a Docker container
//! ([`super::docker`]). Restarts belong to the runtime, like the kubelet's or Docker's restart
//! policy.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use zai_promoter::{LogLine, Variant};

use super::spec::Artifact;
use crate::Error;

/// Everything needed to start one container.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Pod name, unique in the platform.
    pub pod: String,
    /// Deployment it belongs to.
    pub variant: Variant,
    /// Binary or image.
    pub artifact: Artifact,
    /// Full environment.
    pub env: BTreeMap<String, String>,
    /// The container port (on 127.0.0.1).
    pub port: u16,
}

/// What a container is doing right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The process is running.
    pub running: bool,
    /// Restarts so far.
    pub restarts: u32,
    /// Why it is not running (`CrashLoopBackOff`, `ContainerCreating`, …).
    pub waiting_reason: Option<String>,
    /// Exit code of the last run, if it exited.
    pub last_exit_code: Option<i64>,
    /// When the current (or last) run started.
    pub started_at: Option<DateTime<Utc>>,
}

/// A container image/process runner.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `local` or `docker`.
    fn name(&self) -> &'static str;

    /// Starts a container; it keeps restarting on exit until terminated.
    async fn start(&self, launch: Launch) -> Result<Arc<dyn Container>, Error>;
}

/// One running (or restarting) container.
#[async_trait]
pub trait Container: Send + Sync {
    /// Current state.
    async fn status(&self) -> ContainerStatus;

    /// SIGTERM, wait up to `grace`, then SIGKILL; no restart afterwards. Returns when the
    /// container is gone.
    async fn terminate(&self, grace: Duration);

    /// Log lines written at or after `since` (bounded buffer).
    async fn logs_since(&self, since: DateTime<Utc>) -> Vec<LogLine>;
}

/// A bounded buffer of timestamped log lines, shared by the runtimes.
#[derive(Debug)]
pub struct LogBuffer {
    pod: String,
    capacity: usize,
    lines: Mutex<VecDeque<LogLine>>,
}

impl LogBuffer {
    /// An empty buffer keeping at most `capacity` lines.
    pub fn new(pod: &str, capacity: usize) -> Self {
        LogBuffer {
            pod: pod.to_owned(),
            capacity,
            lines: Mutex::new(VecDeque::new()),
        }
    }

    /// Appends a line, dropping the oldest when full.
    pub fn push(&self, line: String, timestamp: DateTime<Utc>) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(LogLine {
            pod: self.pod.clone(),
            timestamp: Some(timestamp),
            line,
        });
    }

    /// Lines at or after `since`.
    pub fn since(&self, since: DateTime<Utc>) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines
            .iter()
            .filter(|l| l.timestamp.is_none_or(|t| t >= since))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_buffer_is_bounded_and_filters_by_time() {
        let buf = LogBuffer::new("p", 2);
        let t0 = Utc::now();
        buf.push("a".into(), t0);
        buf.push("b".into(), t0 + chrono::Duration::seconds(1));
        buf.push("c".into(), t0 + chrono::Duration::seconds(2));
        let all: Vec<_> = buf.since(t0).into_iter().map(|l| l.line).collect();
        assert_eq!(all, vec!["b", "c"]);
        let late: Vec<_> = buf
            .since(t0 + chrono::Duration::seconds(2))
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(late, vec!["c"]);
    }
}
