//! One evaluation of one check or trigger condition.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Outcome of one sample.
///
/// For triggers, `Fail` means "the rollback condition holds in this sample".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within the threshold.
    Pass,
    /// Outside the threshold.
    Fail,
    /// Not enough data to judge (never promotes, never rolls back by itself).
    NoData,
    /// A judged comparison without enough evidence either way yet: keep sampling; at the
    /// judge's deadline the run ends "aborted: insufficient evidence".
    Inconclusive,
    /// The source failed (counted separately from no data).
    Error,
    /// Not evaluated (disabled, dry run, not applicable).
    Skipped,
    /// Not reached (the run ended before this check's phase).
    Pending,
}

impl Status {
    /// The mark used in report.md and progress lines.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::NoData => "…",
            Status::Inconclusive => "?",
            Status::Error => "!",
            Status::Skipped => "–",
            Status::Pending => " ",
        }
    }

    /// Lower-case name as in report.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NoData => "no_data",
            Status::Inconclusive => "inconclusive",
            Status::Error => "error",
            Status::Skipped => "skipped",
            Status::Pending => "pending",
        }
    }
}

/// One sample with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Outcome.
    pub status: Status,
    /// The observed value as a number, when there is one.
    pub value: Option<f64>,
    /// The observed value as text ("2/2 ready", "0.031").
    pub observed: String,
    /// The threshold as text ("< 0.05").
    pub threshold: String,
    /// Window the value was computed over, if any.
    #[serde(with = "crate::duration_serde::option")]
    pub window: Option<Duration>,
    /// Query or source (rendered PromQL, "platform: list pods", …).
    pub source: String,
    /// Supporting details (offending pods, log lines, no-data reason).
    pub evidence: Vec<String>,
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The judge's evidence, for judged checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Box<super::judge::Comparison>>,
}

impl Sample {
    /// A sample with the given status and no value yet.
    pub fn new(status: Status, at: DateTime<Utc>) -> Self {
        Sample {
            status,
            value: None,
            observed: String::new(),
            threshold: String::new(),
            window: None,
            source: String::new(),
            evidence: Vec::new(),
            at,
            comparison: None,
        }
    }

    /// A skipped sample with a reason.
    pub fn skipped(at: DateTime<Utc>, why: impl Into<String>) -> Self {
        let mut s = Sample::new(Status::Skipped, at);
        s.evidence.push(why.into());
        s
    }

    /// One line for humans: "✓ 0.012 (< 0.05)".
    pub fn summary(&self) -> String {
        let mut out = format!("{} {}", self.status.mark(), self.status.as_str());
        if !self.observed.is_empty() {
            out.push_str(&format!(" {}", self.observed));
        }
        if !self.threshold.is_empty() {
            out.push_str(&format!(" ({})", self.threshold));
        }
        if self.status != Status::Pass
            && let Some(e) = self.evidence.first()
        {
            out.push_str(&format!(" — {e}"));
        }
        out
    }
}
