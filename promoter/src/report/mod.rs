//! The run's report: data ([`Report`]) and its three renderings — `report.json`, `report.md`
//! (the seed checklist with marks and values, sign-off filled) and `junit.xml`.

mod junit;
mod markdown;
pub mod step_summary;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Phase;
use crate::engine::{Baseline, Sample, Status};
use crate::error::{Error, Result};

/// XML escaping as junit.xml uses it (for other JUnit writers, e.g. the rehearsal's).
pub use junit::esc as xml_escape;
pub use junit::render_junit;
pub use markdown::render_markdown;
pub use step_summary::render_step_summary;

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Production runs the new version; every phase passed.
    Promoted,
    /// `check` / `watch` found nothing wrong.
    Passed,
    /// Ended before promotion; production untouched (or, with `no_data_after_rollout = "keep"`,
    /// left on the new version).
    Aborted,
    /// Production was rolled back.
    RolledBack,
    /// Could not run (configuration, platform).
    Error,
    /// `--dry-run`: nothing changed; see `verdict`.
    DryRun,
    /// Stopped by a signal with `--on-interrupt leave`: the run is recorded in the cluster
    /// and production left as it was; `promote` or `resume` carries it on.
    Interrupted,
    /// Another promoter holds the run (its lease is live), or took it over: nothing done.
    Busy,
}

impl Outcome {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Promoted => "promoted",
            Outcome::Passed => "passed",
            Outcome::Aborted => "aborted",
            Outcome::RolledBack => "rolled_back",
            Outcome::Error => "error",
            Outcome::DryRun => "dry_run",
            Outcome::Interrupted => "interrupted",
            Outcome::Busy => "busy",
        }
    }
}

/// One check in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Stable id.
    pub id: String,
    /// Checklist wording.
    pub title: String,
    /// Final status (the last sample's).
    pub status: Status,
    /// Observed value, as text.
    pub observed: String,
    /// Observed value, as a number.
    pub value: Option<f64>,
    /// Threshold, as text.
    pub threshold: String,
    /// Window.
    #[serde(with = "crate::duration_serde::option")]
    pub window: Option<Duration>,
    /// Query or source.
    pub query: String,
    /// Evidence lines.
    pub evidence: Vec<String>,
    /// Samples taken.
    pub samples: u32,
    /// First sample.
    pub first_at: Option<DateTime<Utc>>,
    /// Last sample.
    pub last_at: Option<DateTime<Utc>>,
    /// The judge's evidence (judged checks only): counts per side, estimates with their
    /// anytime-valid intervals, tolerance, confidence reached, requests still needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<crate::engine::judge::Comparison>,
}

impl CheckReport {
    /// A check that was never evaluated.
    pub fn pending(id: &str, title: &str) -> Self {
        CheckReport {
            id: id.into(),
            title: title.into(),
            status: Status::Pending,
            observed: String::new(),
            value: None,
            threshold: String::new(),
            window: None,
            query: String::new(),
            evidence: Vec::new(),
            samples: 0,
            first_at: None,
            last_at: None,
            comparison: None,
        }
    }

    /// From the last sample.
    pub fn from_sample(
        id: &str,
        title: &str,
        last: &Sample,
        samples: u32,
        first_at: Option<DateTime<Utc>>,
    ) -> Self {
        CheckReport {
            id: id.into(),
            title: title.into(),
            status: last.status,
            observed: last.observed.clone(),
            value: last.value,
            threshold: last.threshold.clone(),
            window: last.window,
            query: last.source.clone(),
            evidence: last.evidence.clone(),
            samples,
            first_at: first_at.or(Some(last.at)),
            last_at: Some(last.at),
            comparison: last.comparison.as_deref().cloned(),
        }
    }
}

/// One phase in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Which.
    pub phase: Phase,
    /// The checklist heading.
    pub title: String,
    /// pass / fail / pending / skipped …
    pub status: Status,
    /// When it began.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its checks, in checklist order.
    pub checks: Vec<CheckReport>,
}

/// Where a rollback trigger stands at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerStatus {
    /// It fired (held for its duration): the run rolled back on it.
    Fired,
    /// The condition was true at the last sample, not yet for long enough.
    Holding,
    /// Evaluated, not holding, never fired.
    Clear,
    /// Never evaluated (the run ended before phases 3–4, or no sample could be read).
    NotEvaluated,
    /// Disabled in the configuration.
    Disabled,
}

impl TriggerStatus {
    /// The name used in report.json.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerStatus::Fired => "fired",
            TriggerStatus::Holding => "holding",
            TriggerStatus::Clear => "clear",
            TriggerStatus::NotEvaluated => "not_evaluated",
            TriggerStatus::Disabled => "disabled",
        }
    }

    /// The checkbox mark in report.md and the step summary.
    pub fn mark(self) -> &'static str {
        match self {
            TriggerStatus::Fired => "✗",
            TriggerStatus::Holding => "…",
            TriggerStatus::Clear => "✓",
            TriggerStatus::NotEvaluated | TriggerStatus::Disabled => " ",
        }
    }
}

impl std::fmt::Display for TriggerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the first-hour watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstHourStatus {
    /// Watched to the end without a breach.
    Healthy,
    /// A first-hour condition held: rolled back.
    Breached,
    /// Stopped before the end (signal, error).
    Interrupted,
}

impl std::fmt::Display for FirstHourStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FirstHourStatus::Healthy => "healthy",
            FirstHourStatus::Breached => "breached",
            FirstHourStatus::Interrupted => "interrupted",
        })
    }
}

/// One trigger in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerReport {
    /// Stable id.
    pub id: String,
    /// Checklist wording.
    pub title: String,
    /// Where the trigger stands.
    pub status: TriggerStatus,
    /// Threshold, as text.
    pub threshold: String,
    /// Required duration.
    #[serde(rename = "for", with = "crate::duration_serde")]
    pub hold_for: Duration,
    /// Window.
    #[serde(with = "crate::duration_serde")]
    pub window: Duration,
    /// First sample of the run of samples that fired it.
    pub first_seen: Option<DateTime<Utc>>,
    /// When it fired.
    pub fired_at: Option<DateTime<Utc>>,
    /// Samples in which the condition held.
    pub held_samples: u32,
    /// Last observed value.
    pub observed: String,
    /// Query or source.
    pub query: String,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackReport {
    /// Why.
    pub reason: String,
    /// Began.
    pub started_at: DateTime<Utc>,
    /// Ended.
    pub finished_at: DateTime<Utc>,
    /// Production ready and healthy again.
    pub production_ready: bool,
    /// Image production runs after the rollback.
    pub production_image: Option<String>,
    /// Canary scaled to 0.
    pub canary_scaled_down: bool,
    /// Steps taken.
    pub steps: Vec<String>,
}

/// Who/where/when for the sign-off block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignOff {
    /// User that ran the promoter.
    pub by: String,
    /// Host it ran on.
    pub host: String,
    /// Platform location (cluster/namespace, …).
    pub platform: String,
    /// When the decision was taken.
    pub at: DateTime<Utc>,
}

/// One action taken on the platform or in git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub message: String,
}

/// The whole report (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Report schema version.
    pub schema: u32,
    /// `check`, `promote`, `rollback`, `watch`.
    pub mode: String,
    /// How it ended.
    pub outcome: Outcome,
    /// One sentence: "promoted 1.2.0 → 1.2.1", "would roll back at T+2m30s because …".
    pub verdict: String,
    /// Why it ended that way (failed check, fired trigger, deadline), if not a success.
    pub reason: Option<String>,
    /// Dry run.
    pub dry_run: bool,
    /// Production version before.
    pub from_version: Option<String>,
    /// Stable version promoted.
    pub to_version: Option<String>,
    /// Platform name.
    pub platform: String,
    /// Signal source name.
    pub signals: String,
    /// Run start.
    pub started_at: DateTime<Utc>,
    /// When the outcome was decided.
    pub decided_at: DateTime<Utc>,
    /// Pre-rollout production baseline.
    pub baseline: Baseline,
    /// Phases in order.
    pub phases: Vec<PhaseReport>,
    /// Rollback triggers.
    pub triggers: Vec<TriggerReport>,
    /// Rollback details, if one happened.
    pub rollback: Option<RollbackReport>,
    /// The first hour after the promotion (`promote --watch`), if watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_hour: Option<FirstHourReport>,
    /// Actions in order.
    pub actions: Vec<ActionRecord>,
    /// What the signal source could not collect (e.g. a Ready pod whose `/metrics` failed,
    /// so its requests were missing from the ratios of those ticks), by message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signal_gaps: Vec<SignalGap>,
    /// Sign-off.
    pub sign_off: SignOff,
}

/// One kind of signal collection failure, over the ticks it was seen in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalGap {
    /// What failed (the source's message).
    pub message: String,
    /// Ticks it was seen in (the overflow entry: messages it counts).
    pub ticks: u32,
    /// First seen.
    pub first_at: DateTime<Utc>,
    /// Last seen.
    pub last_at: DateTime<Utc>,
}

/// Entries kept in a report: the first `MAX_SIGNAL_GAPS - 1` distinct messages, then one
/// entry counting every message not listed.
pub const MAX_SIGNAL_GAPS: usize = 20;

/// The entry that counts messages beyond the listed ones.
pub const OTHER_SIGNAL_GAPS: &str = "(other signal gaps, not listed)";

/// Adds one tick's collection failures (`; `-separated messages) to `gaps` (pure).
pub fn note_signal_gaps(gaps: &mut Vec<SignalGap>, at: DateTime<Utc>, messages: &str) {
    for message in messages.split("; ").filter(|m| !m.is_empty()) {
        let listed = gaps.iter().any(|g| g.message == message);
        let key = if listed || gaps.len() < MAX_SIGNAL_GAPS - 1 {
            message
        } else {
            OTHER_SIGNAL_GAPS
        };
        match gaps.iter_mut().find(|g| g.message == key) {
            Some(g) => {
                g.ticks += 1;
                g.last_at = at;
            }
            None => gaps.push(SignalGap {
                message: key.to_owned(),
                ticks: 1,
                first_at: at,
                last_at: at,
            }),
        }
    }
}

/// The checklist's first-hour monitoring after a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstHourReport {
    /// How long it was to watch.
    #[serde(with = "crate::duration_serde")]
    pub duration: Duration,
    /// How long it watched.
    #[serde(with = "crate::duration_serde")]
    pub watched: Duration,
    /// How the watch ended.
    pub status: FirstHourStatus,
    /// The first-hour conditions, against the pre-rollout baseline.
    pub triggers: Vec<TriggerReport>,
}

impl Report {
    /// The process exit code: 0 promoted/passed, 2 aborted before promotion, 3 rolled back,
    /// 1 could not run. A dry run exits as the real run would have.
    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            Outcome::Promoted | Outcome::Passed => 0,
            Outcome::Aborted => 2,
            Outcome::RolledBack => 3,
            Outcome::Error => 1,
            Outcome::Interrupted => 4,
            Outcome::Busy => 5,
            Outcome::DryRun => {
                if self.verdict.starts_with("would roll back") {
                    3
                } else if self.verdict.starts_with("would abort") {
                    2
                } else {
                    0
                }
            }
        }
    }

    /// Every check of every phase.
    pub fn all_checks(&self) -> impl Iterator<Item = (&PhaseReport, &CheckReport)> {
        self.phases
            .iter()
            .flat_map(|p| p.checks.iter().map(move |c| (p, c)))
    }

    /// Writes report.json, report.md and junit.xml into `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Report { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Report {
            path: dir.join("report.json"),
            source: std::io::Error::other(e),
        })?;
        let p = dir.join("report.json");
        std::fs::write(&p, json + "\n").map_err(io(&p))?;
        let p = dir.join("report.md");
        std::fs::write(&p, render_markdown(self)).map_err(io(&p))?;
        let p = dir.join("junit.xml");
        std::fs::write(&p, render_junit(self)).map_err(io(&p))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_gaps_are_counted_by_message_and_bounded() {
        let t = |s| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
        let mut gaps = Vec::new();
        note_signal_gaps(
            &mut gaps,
            t(0),
            "p-0: /metrics unreachable: refused; p-1: x",
        );
        note_signal_gaps(&mut gaps, t(30), "p-0: /metrics unreachable: refused");
        assert_eq!(gaps.len(), 2);
        assert_eq!(
            (gaps[0].ticks, gaps[0].first_at, gaps[0].last_at),
            (2, t(0), t(30))
        );
        for i in 0..50 {
            note_signal_gaps(&mut gaps, t(60), &format!("pod-{i}: gone"));
        }
        assert_eq!(gaps.len(), MAX_SIGNAL_GAPS);
        let last = gaps.last().unwrap();
        assert_eq!(last.message, OTHER_SIGNAL_GAPS, "{last:?}");
        // 2 listed before, 17 more listed, the other 33 counted together.
        let listed_new = MAX_SIGNAL_GAPS as u32 - 1 - 2;
        assert_eq!(last.ticks, 50 - listed_new);
        // A listed message is still counted in its own entry.
        note_signal_gaps(&mut gaps, t(90), "p-1: x");
        assert_eq!((gaps[1].ticks, gaps[1].last_at), (2, t(90)));
    }
}
