//! Counts per route and outcome, and the tokens the fake has billed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::limits::LimitStats;

/// What `GET /__fake/stats` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeStats {
    /// The fake's seed (`--seed`): replaying it with the same requests replays the faults.
    #[serde(default)]
    pub seed: u64,
    /// Requests seen on the served surfaces (control routes excluded).
    pub total: u64,
    /// Streaming requests among them.
    pub streams: u64,
    /// Route label → outcome label → count (labels of `Route::label` / `Outcome::label`).
    pub routes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Input tokens of the answers delivered complete (with or without a usage block).
    pub billed_input_tokens: u64,
    /// Output tokens of the answers delivered complete.
    pub billed_output_tokens: u64,
    /// The per-key limits: in flight, peak concurrency, rejections.
    #[serde(default)]
    pub limits: LimitStats,
}

impl FakeStats {
    /// Zero counts for a fake seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        FakeStats {
            seed,
            ..FakeStats::default()
        }
    }

    /// Count for a route and outcome (0 when never seen).
    pub fn count(&self, route: &str, outcome: &str) -> u64 {
        self.routes
            .get(route)
            .and_then(|outcomes| outcomes.get(outcome))
            .copied()
            .unwrap_or(0)
    }

    /// Total of one outcome over every route.
    pub fn outcome_total(&self, outcome: &str) -> u64 {
        self.routes
            .values()
            .filter_map(|outcomes| outcomes.get(outcome))
            .sum()
    }

    /// Adds one request.
    pub fn record(&mut self, route: &str, outcome: &str, stream: bool) {
        self.total += 1;
        if stream {
            self.streams += 1;
        }
        *self
            .routes
            .entry(route.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }
}
