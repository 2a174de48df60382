//! The run record: what a promotion has done so far, kept where the cluster is so that an
//! interrupted run can be resumed and two promoters never act at once.
//!
//! The record is JSON in the production Deployment's annotation [`ANNOTATION`], written
//! through the [`Platform`](crate::Platform) with the object's `resourceVersion` as a
//! precondition (a second writer gets 409 Conflict and reads again). It holds the lease (who
//! runs, when they last renewed, for how long), the stage, the versions and images, the
//! baseline captured before the image changed and the decisions so far.
//!
//! Everything here is pure: [`claim`] decides whether a starting run may act, and
//! [`resume_point`] where a taken-over run carries on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::Baseline;

/// The production Deployment's annotation that holds the record.
pub const ANNOTATION: &str = "zai-promoter.io/run";

/// At most this many decisions are kept in the record (the report has them all).
pub const MAX_DECISIONS: usize = 30;

/// Where a run stands. Ordered: a later stage never comes before an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Phase 1: nothing changed yet.
    Pre,
    /// Waiting at the `before-promotion` gate: phase 1 passed, nothing changed yet.
    Gate,
    /// Phase 1 passed; the production image is being set.
    Exec,
    /// Phase 3: the rollout is being watched.
    Rollout,
    /// Phase 4: verification.
    Post,
    /// Phase 5 and clean-up.
    Final,
    /// The first hour after the promotion (`promote --watch`).
    Watch,
    /// Production is being rolled back.
    RollingBack,
    /// The run ended (see `outcome`); the record stays for the next run to read.
    Done,
}

impl Stage {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pre => "pre",
            Stage::Gate => "gate",
            Stage::Exec => "exec",
            Stage::Rollout => "rollout",
            Stage::Post => "post",
            Stage::Final => "final",
            Stage::Watch => "watch",
            Stage::RollingBack => "rolling_back",
            Stage::Done => "done",
        }
    }
}

/// Who holds the run, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// `host/pid/run-id` of the holder.
    pub holder: String,
    /// Last renewal.
    pub renewed_at: DateTime<Utc>,
    /// The holder is considered gone this long after its last renewal.
    #[serde(with = "crate::duration_serde")]
    pub duration: Duration,
}

impl Lease {
    /// When the lease ends unless renewed.
    pub fn expires_at(&self) -> DateTime<Utc> {
        crate::duration_serde::plus(self.renewed_at, self.duration)
    }

    /// Whether the holder still counts as running at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at()
    }
}

/// A manual approval of a gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One decision or stage change, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedDecision {
    /// When.
    pub at: DateTime<Utc>,
    /// What, in one sentence.
    pub message: String,
}

/// The run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Record format.
    pub schema: u32,
    /// This run's id (kept across resumes).
    pub run_id: String,
    /// Who runs it; `None` once the run ended or was left for a resume.
    pub lease: Option<Lease>,
    /// Where it stands.
    pub stage: Stage,
    /// Production's version and image before the run.
    pub from_version: Option<String>,
    /// Production's image before the run.
    pub from_image: Option<String>,
    /// The version being promoted.
    pub to_version: Option<String>,
    /// The image production is set to.
    pub target_image: Option<String>,
    /// The baseline captured at the end of phase 1.
    pub baseline: Baseline,
    /// When the run began.
    pub started_at: DateTime<Utc>,
    /// When production's image was changed.
    pub rollout_started: Option<DateTime<Utc>>,
    /// How many times it was taken over after its holder stopped.
    #[serde(default)]
    pub resumes: u32,
    /// The outcome once `stage` is `done` (`promoted`, `rolled_back`, …).
    pub outcome: Option<String>,
    /// Approval of the `before-promotion` gate.
    #[serde(default)]
    pub approval: Option<Approval>,
    /// End of the first-hour watch (stage `watch`).
    #[serde(default)]
    pub watch_until: Option<DateTime<Utc>>,
    /// The last decisions and stage changes, oldest first.
    #[serde(default)]
    pub decisions: Vec<RecordedDecision>,
}

impl RunRecord {
    /// A new record for a run starting now.
    pub fn new(run_id: String, lease: Lease, started_at: DateTime<Utc>) -> Self {
        RunRecord {
            schema: 1,
            run_id,
            lease: Some(lease),
            stage: Stage::Pre,
            from_version: None,
            from_image: None,
            to_version: None,
            target_image: None,
            baseline: Baseline::default(),
            started_at,
            rollout_started: None,
            resumes: 0,
            outcome: None,
            approval: None,
            watch_until: None,
            decisions: Vec::new(),
        }
    }

    /// Parses a stored record; the error names what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("unreadable run record ({e})"))
    }

    /// The record as stored (compact JSON).
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Appends a decision, keeping the last [`MAX_DECISIONS`].
    pub fn note(&mut self, at: DateTime<Utc>, message: impl Into<String>) {
        self.decisions.push(RecordedDecision {
            at,
            message: message.into(),
        });
        let over = self.decisions.len().saturating_sub(MAX_DECISIONS);
        self.decisions.drain(..over);
    }
}

/// What a starting run may do, given the stored record.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// No run in progress: start a new one.
    Fresh {
        /// Why an existing record does not matter (a finished run, phase 1 only, …).
        note: Option<String>,
    },
    /// A run was left in progress and nobody holds it: carry it on.
    Resume {
        /// The record to carry on.
        record: Box<RunRecord>,
        /// The log line: whose run, since when.
        note: String,
    },
    /// Somebody else holds the run.
    Busy {
        /// The holder.
        holder: String,
        /// The stage it is at.
        stage: Stage,
        /// When its lease ends unless renewed.
        expires_at: DateTime<Utc>,
    },
}

/// Decides what a run starting at `now` may do with the stored record (`None`: no record).
pub fn claim(stored: Option<&RunRecord>, now: DateTime<Utc>) -> Claim {
    let Some(record) = stored else {
        return Claim::Fresh { note: None };
    };
    if let Some(lease) = &record.lease
        && lease.live(now)
    {
        return Claim::Busy {
            holder: lease.holder.clone(),
            stage: record.stage,
            expires_at: lease.expires_at(),
        };
    }
    let by = match &record.lease {
        Some(lease) => format!(
            "its holder {} stopped renewing at {}",
            lease.holder,
            lease.renewed_at.to_rfc3339()
        ),
        None => "it was left for a resume".to_owned(),
    };
    match record.stage {
        Stage::Done => Claim::Fresh {
            note: Some(format!(
                "the last run {} ended {}",
                record.run_id,
                record.outcome.as_deref().unwrap_or("without an outcome")
            )),
        },
        Stage::Pre | Stage::Gate => Claim::Fresh {
            note: Some(format!(
                "run {} stopped at {} before changing anything ({by}); starting again",
                record.run_id,
                record.stage.as_str()
            )),
        },
        stage => Claim::Resume {
            note: format!(
                "taking over run {} at stage {} ({by})",
                record.run_id,
                stage.as_str()
            ),
            record: Box::new(record.clone()),
        },
    }
}

/// Where a resumed run carries on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeAt {
    /// Set the image (phase 1 passed, the image was not changed yet).
    Exec,
    /// Watch the rollout.
    Rollout,
    /// Verify.
    Post,
    /// Finalise.
    Final,
    /// The first-hour watch.
    Watch,
    /// Finish the rollback; `undo` is whether production still runs the target image.
    RollBack {
        /// Undo is still needed.
        undo: bool,
    },
}

/// Where a taken-over run at `record.stage` carries on, given production's current image.
pub fn resume_point(record: &RunRecord, production_image: &str) -> ResumeAt {
    let on_target = record.target_image.as_deref() == Some(production_image);
    match record.stage {
        Stage::Pre | Stage::Gate | Stage::Exec if !on_target => ResumeAt::Exec,
        Stage::Pre | Stage::Gate | Stage::Exec | Stage::Rollout => ResumeAt::Rollout,
        Stage::Post => ResumeAt::Post,
        Stage::Final | Stage::Done => ResumeAt::Final,
        Stage::Watch => ResumeAt::Watch,
        Stage::RollingBack => ResumeAt::RollBack {
            undo: record.from_image.as_deref() != Some(production_image),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn record(stage: Stage, renewed: Option<i64>) -> RunRecord {
        let mut r = RunRecord::new(
            "run-1".into(),
            Lease {
                holder: "ci/1/run-1".into(),
                renewed_at: t(renewed.unwrap_or(0)),
                duration: Duration::from_secs(30),
            },
            t(0),
        );
        if renewed.is_none() {
            r.lease = None;
        }
        r.stage = stage;
        r.from_image = Some("zai-proxy:1.2.0".into());
        r.target_image = Some("zai-proxy:1.2.1".into());
        r
    }

    #[test]
    fn a_live_holder_keeps_the_run() {
        let r = record(Stage::Rollout, Some(100));
        assert!(matches!(
            claim(Some(&r), t(129)),
            Claim::Busy {
                stage: Stage::Rollout,
                ..
            }
        ));
        // Expired: taken over.
        assert!(matches!(claim(Some(&r), t(130)), Claim::Resume { .. }));
    }

    #[test]
    fn nothing_to_resume_before_the_image_changed_or_after_the_end() {
        for stage in [Stage::Pre, Stage::Gate, Stage::Done] {
            let r = record(stage, None);
            assert!(
                matches!(claim(Some(&r), t(0)), Claim::Fresh { note: Some(_) }),
                "{stage:?}"
            );
        }
        assert_eq!(claim(None, t(0)), Claim::Fresh { note: None });
    }

    #[test]
    fn a_run_left_for_resume_is_taken_over_at_once() {
        let r = record(Stage::Post, None);
        match claim(Some(&r), t(1)) {
            Claim::Resume { note, record } => {
                assert!(note.contains("left for a resume"), "{note}");
                assert_eq!(record.stage, Stage::Post);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resume_follows_what_production_runs() {
        let r = record(Stage::Exec, None);
        assert_eq!(resume_point(&r, "zai-proxy:1.2.0"), ResumeAt::Exec);
        assert_eq!(resume_point(&r, "zai-proxy:1.2.1"), ResumeAt::Rollout);
        let r = record(Stage::RollingBack, None);
        assert_eq!(
            resume_point(&r, "zai-proxy:1.2.1"),
            ResumeAt::RollBack { undo: true }
        );
        assert_eq!(
            resume_point(&r, "zai-proxy:1.2.0"),
            ResumeAt::RollBack { undo: false }
        );
        assert_eq!(
            resume_point(&record(Stage::Post, None), "x"),
            ResumeAt::Post
        );
    }

    #[test]
    fn records_round_trip_and_bad_text_is_an_error() {
        let mut r = record(Stage::Rollout, Some(5));
        for i in 0..(MAX_DECISIONS + 5) {
            r.note(t(i as i64), format!("d{i}"));
        }
        assert_eq!(r.decisions.len(), MAX_DECISIONS);
        assert_eq!(r.decisions[0].message, "d5");
        assert_eq!(RunRecord::parse(&r.to_text()).unwrap(), r);
        assert!(RunRecord::parse("{not json").is_err());
    }
}
