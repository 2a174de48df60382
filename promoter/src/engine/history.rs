//! What the engine remembers between ticks.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sample::{Sample, Status};
use crate::catalog::{CheckId, TriggerId};
use crate::platform::{PodInfo, Variant};
use crate::workers::WorkerStats;

/// Samples kept per check (the report shows the last; older ones only feed counters).
const KEEP_SAMPLES: usize = 32;
/// Worker-counter snapshots kept (enough for the longest window at the shortest interval).
const KEEP_WORKER_POINTS: usize = 4096;

/// History of one check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckHistory {
    /// Recent samples, oldest first.
    pub samples: VecDeque<Sample>,
    /// Provider errors in a row.
    pub consecutive_errors: u32,
    /// Start of the current run of `no_data` samples.
    pub no_data_since: Option<DateTime<Utc>>,
    /// First sample.
    pub first_at: Option<DateTime<Utc>>,
    /// Samples taken in total.
    pub count: u32,
}

impl CheckHistory {
    /// The latest sample.
    pub fn last(&self) -> Option<&Sample> {
        self.samples.back()
    }

    fn push(&mut self, sample: Sample) {
        self.first_at.get_or_insert(sample.at);
        self.count += 1;
        match sample.status {
            Status::Error => self.consecutive_errors += 1,
            _ => self.consecutive_errors = 0,
        }
        match sample.status {
            Status::NoData => {
                self.no_data_since.get_or_insert(sample.at);
            }
            // An error neither starts nor ends a no-data run: errors are counted separately.
            Status::Error => {}
            _ => self.no_data_since = None,
        }
        if self.samples.len() == KEEP_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }
}

/// State of one rollback trigger ("for" semantics).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TriggerState {
    /// Time of the first sample of the current unbroken run of samples where the condition held.
    pub held_since: Option<DateTime<Utc>>,
    /// When it fired (the run then rolls back).
    pub fired_at: Option<DateTime<Utc>>,
    /// The sample that started the run that fired (first seen).
    pub first_seen: Option<DateTime<Utc>>,
    /// Latest condition sample.
    pub last: Option<Sample>,
    /// Samples in which the condition held, in total (for the report).
    pub held_samples: u32,
}

impl TriggerState {
    /// Records a condition sample; returns `true` when the trigger fires on this sample:
    /// the condition held in every sample from `held_since` to now and now − held_since ≥
    /// `hold_for`. Any sample where it did not hold (pass, no data, error) resets the run.
    pub fn observe(&mut self, sample: Sample, hold_for: Duration) -> bool {
        let at = sample.at;
        let held = sample.status == Status::Fail;
        self.last = Some(sample);
        if !held {
            self.held_since = None;
            return false;
        }
        self.held_samples += 1;
        let since = *self.held_since.get_or_insert(at);
        let held_for = (at - since).to_std().unwrap_or(Duration::ZERO);
        if held_for >= hold_for && self.fired_at.is_none() {
            self.fired_at = Some(at);
            self.first_seen = Some(since);
            return true;
        }
        false
    }
}

/// Everything remembered across ticks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    /// Per check id.
    pub checks: BTreeMap<CheckId, CheckHistory>,
    /// Per trigger id.
    pub triggers: BTreeMap<TriggerId, TriggerState>,
    /// Restart count of each production pod when first seen (crash-loop deltas).
    pub first_restarts: BTreeMap<String, u32>,
    /// The latency boundary of `pre.canary_latency` (seconds), fixed at the first tick where
    /// production had `min_requests` in the judge's window: a sequential test needs one fixed
    /// question across its looks.
    pub latency_boundary: Option<f64>,
    /// Worker counters over time.
    #[serde(skip)]
    pub workers: VecDeque<(DateTime<Utc>, BTreeMap<Variant, WorkerStats>)>,
}

impl History {
    /// Records a check sample.
    pub fn record_check(&mut self, id: impl Into<CheckId>, sample: Sample) {
        let id = id.into();
        self.checks.entry(id).or_default().push(sample);
    }

    /// The history of a check.
    pub fn check(&self, id: impl Into<CheckId>) -> Option<&CheckHistory> {
        self.checks.get(&id.into())
    }

    /// Remembers restart counts of pods seen for the first time. Pods that appear after the
    /// rollout began count from 0, so a new pod that crashed before it was first seen is caught.
    pub fn note_pods(&mut self, pods: &[PodInfo], rollout_started: Option<DateTime<Utc>>) {
        for p in pods {
            let new_pod = match (rollout_started, p.started_at) {
                (Some(r), Some(s)) => s >= r,
                _ => false,
            };
            self.first_restarts
                .entry(p.name.clone())
                .or_insert(if new_pod { 0 } else { p.restarts });
        }
    }

    /// Restarts of a pod since it was first seen.
    pub fn restart_delta(&self, pod: &PodInfo) -> u32 {
        let base = self.first_restarts.get(&pod.name).copied().unwrap_or(0);
        pod.restarts.saturating_sub(base)
    }

    /// Records worker counters.
    pub fn note_workers(&mut self, at: DateTime<Utc>, stats: &BTreeMap<Variant, WorkerStats>) {
        if self.workers.len() == KEEP_WORKER_POINTS {
            self.workers.pop_front();
        }
        self.workers.push_back((at, stats.clone()));
    }

    /// Worker counter differences over `window` ending now (the oldest point at or before
    /// now − window, else the oldest point). `None` without two points.
    pub fn worker_delta(
        &self,
        variant: Variant,
        now: DateTime<Utc>,
        window: Duration,
        current: WorkerStats,
    ) -> Option<WorkerStats> {
        let start = crate::duration_serde::minus(now, window);
        let base = self
            .workers
            .iter()
            .rev()
            .find(|(t, _)| *t <= start)
            .or_else(|| self.workers.iter().find(|(t, _)| *t < now))?;
        let earlier = base.1.get(&variant).copied().unwrap_or_default();
        Some(current.since(earlier))
    }
}
