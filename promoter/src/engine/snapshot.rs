//! What one tick sees, and what the run knows beyond one tick.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::platform::{HttpReply, LogLine, PodInfo, RolloutStatus, Variant};
use crate::signals::{Alert, Measurement, SignalQuery};
use crate::workers::WorkerStats;

/// Everything collected in one tick. Missing pieces (not needed in this phase) are `None` or
/// absent; failed collections carry the error text.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was collected.
    pub at: DateTime<Utc>,
    /// Pods per deployment.
    pub pods: BTreeMap<Variant, Result<Vec<PodInfo>, String>>,
    /// Production rollout status.
    pub rollout: Option<Result<RolloutStatus, String>>,
    /// Deployment images.
    pub images: BTreeMap<Variant, Result<String, String>>,
    /// Deployment replica counts.
    pub replicas: BTreeMap<Variant, Result<u32, String>>,
    /// Answers to the phase's signal queries.
    pub measurements: HashMap<SignalQuery, Measurement>,
    /// Alerts (phase 1).
    pub alerts: Option<Result<Vec<Alert>, String>>,
    /// Log lines per deployment (canary: the check window; production: since the rollout began).
    pub logs: BTreeMap<Variant, Result<Vec<LogLine>, String>>,
    /// `/health` answers by pod name.
    pub health: BTreeMap<String, Result<HttpReply, String>>,
    /// Why `/health` could not be asked at all (pods unreachable), if so.
    pub health_unreachable: Option<String>,
    /// Worker counters, when a feed is attached.
    pub workers: Option<BTreeMap<Variant, WorkerStats>>,
    /// The judge's window: phase 1 from `[judge] lookback` before the run started to now,
    /// phase 3 from one interval before the image change to now.
    pub judge_window: Option<std::time::Duration>,
}

/// Production quantities captured before the image changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// p95 request latency by window (seconds); `None` = no data.
    pub p95_by_window_secs: BTreeMap<u64, Option<f64>>,
    /// Request rate (req/s) over the post.request_rate_healthy window.
    pub request_rate: Option<f64>,
    /// When captured.
    pub captured_at: Option<DateTime<Utc>>,
}

impl Baseline {
    /// The p95 baseline for a window.
    pub fn p95(&self, window: std::time::Duration) -> Option<f64> {
        self.p95_by_window_secs
            .get(&window.as_secs())
            .copied()
            .flatten()
    }
}

/// Facts of the run that checks need beyond one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunContext {
    /// Production version before the promotion.
    pub from_version: Option<String>,
    /// Stable version being promoted.
    pub to_version: Option<String>,
    /// Production image being rolled out.
    pub target_image: Option<String>,
    /// Pre-rollout baseline.
    pub baseline: Baseline,
    /// When the image was changed.
    pub rollout_started: Option<DateTime<Utc>>,
    /// Nothing is changed.
    pub dry_run: bool,
}
