//! The run record's IO: claiming the run (or refusing, or taking it over), renewing the lease
//! at every pause, recording stage changes, and the end. The decisions are
//! [`crate::runstate`]'s pure functions; this module only reads and writes the slot.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{End, Promoter};
use crate::platform::RecordWrite;
use crate::report::Outcome;
use crate::runstate::{self, Claim, Lease, RunRecord, Stage};

/// The record this run holds, with the slot version of its last write.
pub(super) struct Held {
    pub record: RunRecord,
    pub version: String,
}

/// Why a run must stop acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    /// A signal (or the caller) asked it to stop.
    Interrupted(String),
    /// Another promoter holds the run now.
    Lost(String),
}

/// What claiming found.
pub(super) enum Claimed {
    /// A new run.
    Fresh,
    /// A taken-over run.
    Resumed(Box<RunRecord>),
}

/// Writes in a row that may conflict with other writers (the controller's status updates on
/// Kubernetes) before a save gives up until the next pause.
const CONFLICT_RETRIES: usize = 5;

impl Promoter {
    /// Claims the run: a new record, a taken-over one, or `Err` with the end (busy, or the
    /// record cannot be read or written).
    pub(super) async fn claim_run(&mut self, must_resume: bool) -> Result<Claimed, End> {
        let started = self.clock.now();
        loop {
            let slot = self.platform.read_record().await.map_err(|e| {
                End::new(
                    Outcome::Error,
                    "could not read the run record",
                    Some(e.to_string()),
                )
            })?;
            let stored = match slot.text.as_deref().map(RunRecord::parse).transpose() {
                Ok(r) => r,
                Err(e) => {
                    return Err(End::new(
                        Outcome::Error,
                        "the run record is unreadable",
                        Some(format!(
                            "{e}; inspect the annotation {} on the production deployment and remove it to start over",
                            runstate::ANNOTATION
                        )),
                    ));
                }
            };
            let now = self.clock.now();
            let (record, claimed) = match runstate::claim(stored.as_ref(), now) {
                Claim::Busy {
                    holder,
                    stage,
                    expires_at,
                } => {
                    let waited = (now - started).to_std().unwrap_or(Duration::ZERO);
                    if waited < self.config.run.lease_wait {
                        tracing::info!(%holder, stage = stage.as_str(), "run held by another promoter; waiting for its lease");
                        let left = (expires_at - now).to_std().unwrap_or(Duration::ZERO);
                        let step = left.clamp(Duration::from_millis(200), self.config.interval);
                        let interrupt = self.interrupt.clone();
                        tokio::select! {
                            () = self.clock.sleep(step) => {}
                            () = interrupt.triggered() => {}
                        }
                        if let Err(Stop::Interrupted(why)) = self.stopped() {
                            return Err(End::new(
                                Outcome::Aborted,
                                "interrupted while waiting for another promoter's lease; nothing done",
                                Some(why),
                            ));
                        }
                        continue;
                    }
                    return Err(End::new(
                        Outcome::Busy,
                        "another promoter is running this promotion; nothing done",
                        Some(format!(
                            "held by {holder} at stage {}, lease expires {} unless renewed (wait for it, or pass --lease-wait)",
                            stage.as_str(),
                            expires_at.to_rfc3339()
                        )),
                    ));
                }
                Claim::Fresh { note } if must_resume => {
                    return Err(End::new(
                        Outcome::Error,
                        "nothing to resume",
                        Some(note.unwrap_or_else(|| "no run is recorded in the cluster".into())),
                    ));
                }
                Claim::Fresh { note } => {
                    if let Some(note) = note {
                        tracing::info!("{note}");
                    }
                    let mut r = RunRecord::new(self.run_id.clone(), self.lease(now), now);
                    r.note(now, "run started");
                    (r, Claimed::Fresh)
                }
                Claim::Resume { record, note } => {
                    tracing::warn!("{note}");
                    let mut r = (*record).clone();
                    r.lease = Some(self.lease(now));
                    r.resumes += 1;
                    r.note(now, note);
                    (r, Claimed::Resumed(record))
                }
            };
            match self
                .platform
                .write_record(Some(&record.to_text()), &slot.version)
                .await
            {
                Ok(RecordWrite::Written(version)) => {
                    let note = record
                        .decisions
                        .last()
                        .map(|d| d.message.clone())
                        .unwrap_or_default();
                    self.run_id = record.run_id.clone();
                    self.emit(super::Event::Run {
                        run_id: record.run_id.clone(),
                        at: now,
                        note,
                    });
                    self.held = Some(Held { record, version });
                    return Ok(claimed);
                }
                // Somebody wrote in between: read again (it may be another promoter).
                Ok(RecordWrite::Conflict) => continue,
                Err(e) => {
                    return Err(End::new(
                        Outcome::Error,
                        "could not write the run record",
                        Some(e.to_string()),
                    ));
                }
            }
        }
    }

    fn lease(&self, now: DateTime<Utc>) -> Lease {
        Lease {
            holder: self.holder.clone(),
            renewed_at: now,
            duration: self.config.run.lease,
        }
    }

    /// Records a stage change (and renews the lease).
    pub(super) async fn set_stage(&mut self, stage: Stage, note: impl Into<String>) {
        let now = self.clock.now();
        let note = note.into();
        if let Some(h) = self.held.as_mut() {
            h.record.stage = stage;
            h.record.note(now, note);
        }
        self.save().await;
    }

    /// Copies the run's facts (versions, images, baseline, rollout start) into the record.
    pub(super) fn sync_record(&mut self) {
        let ctx = &self.state.ctx;
        if let Some(h) = self.held.as_mut() {
            h.record.from_version = ctx.from_version.clone();
            h.record.to_version = ctx.to_version.clone();
            h.record.target_image = ctx.target_image.clone();
            h.record.baseline = ctx.baseline.clone();
            h.record.rollout_started = ctx.rollout_started;
            if h.record.from_image.is_none() {
                h.record.from_image = self.from_image.clone();
            }
        }
    }

    /// Writes the record with a renewed lease. A conflict with a write that kept this run's
    /// lease (a status update, an approval) is merged and written again; a record now held by
    /// someone else marks the run lost. Unreachable API: logged, tried again at the next pause.
    pub(super) async fn save(&mut self) {
        if self.lost.is_some() {
            return;
        }
        self.sync_record();
        let now = self.clock.now();
        let Some(h) = self.held.as_mut() else { return };
        if let Some(l) = h.record.lease.as_mut() {
            l.renewed_at = now;
        }
        for _ in 0..CONFLICT_RETRIES {
            let text = h.record.to_text();
            match self.platform.write_record(Some(&text), &h.version).await {
                Ok(RecordWrite::Written(v)) => {
                    h.version = v;
                    return;
                }
                Ok(RecordWrite::Conflict) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not write the run record; trying again at the next tick");
                    return;
                }
            }
            let slot = match self.platform.read_record().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the run record");
                    return;
                }
            };
            let stored = slot.text.as_deref().and_then(|t| RunRecord::parse(t).ok());
            let ours = stored.as_ref().is_some_and(|s| {
                s.run_id == h.record.run_id
                    && s.lease.as_ref().map(|l| &l.holder) == Some(&self.holder)
            });
            if !ours {
                let who = stored
                    .and_then(|s| s.lease.map(|l| l.holder))
                    .unwrap_or_else(|| "nobody (the record was removed)".into());
                tracing::error!(holder = %who, "the run was taken over; stopping without acting");
                self.lost = Some(who);
                return;
            }
            if let Some(s) = stored
                && h.record.approval.is_none()
            {
                h.record.approval = s.approval;
            }
            h.version = slot.version;
        }
        tracing::warn!(
            "the run record kept changing under this run; trying again at the next tick"
        );
    }

    /// The end of the run: recorded as done (or, interrupted with `leave`, as left for a
    /// resume) and the lease released. A lost run writes nothing.
    pub(super) async fn release(&mut self, end: &End) {
        if self.lost.is_some() || self.held.is_none() {
            return;
        }
        let now = self.clock.now();
        if let Some(h) = self.held.as_mut() {
            if end.outcome == Outcome::Interrupted {
                h.record
                    .note(now, format!("left for a resume: {}", end.verdict));
            } else {
                h.record.stage = Stage::Done;
                h.record.outcome = Some(end.outcome.as_str().to_owned());
                h.record
                    .note(now, format!("{}: {}", end.outcome.as_str(), end.verdict));
            }
        }
        // Renew once more (merging a concurrent write), then drop the lease.
        self.save().await;
        if self.lost.is_some() {
            return;
        }
        let Some(h) = self.held.as_mut() else { return };
        h.record.lease = None;
        let text = h.record.to_text();
        match self.platform.write_record(Some(&text), &h.version).await {
            Ok(RecordWrite::Written(v)) => h.version = v,
            // Somebody wrote in between: one more try through `save`, which only writes
            // while the record is still this run's; failing that, the lease expires.
            Ok(RecordWrite::Conflict) => self.save().await,
            Err(e) => {
                tracing::warn!(error = %e, "could not release the run; its lease will expire")
            }
        }
    }

    /// Renews the lease once a third of it has passed since the last write (stage changes
    /// write at once): the Deployment is not patched every tick.
    pub(super) async fn renew_if_due(&mut self) {
        let now = self.clock.now();
        let due = self.held.as_ref().is_some_and(|h| {
            h.record.lease.as_ref().is_none_or(|l| {
                let age = (now - l.renewed_at).to_std().unwrap_or(Duration::ZERO);
                age >= l.duration / 3
            })
        });
        if due {
            self.save().await;
        }
    }

    /// Reads the record's approval (written by `zai-promoter approve`) without writing.
    pub(super) async fn refresh_approval(&mut self) {
        let Ok(slot) = self.platform.read_record().await else {
            return;
        };
        let stored = slot.text.as_deref().and_then(|t| RunRecord::parse(t).ok());
        if let (Some(stored), Some(h)) = (stored, self.held.as_mut())
            && stored.run_id == h.record.run_id
            && h.record.approval.is_none()
        {
            h.record.approval = stored.approval;
        }
    }

    /// Waits `d`, renewing the lease when due; `Err` if the run must stop (interrupted or lost).
    pub(super) async fn pause(&mut self, d: Duration) -> Result<(), Stop> {
        self.renew_if_due().await;
        self.stopped()?;
        let interrupt = self.interrupt.clone();
        tokio::select! {
            () = self.clock.sleep(d) => {}
            () = interrupt.triggered() => {}
        }
        self.stopped()
    }

    /// Whether the run must stop now.
    pub(super) fn stopped(&self) -> Result<(), Stop> {
        if let Some(who) = &self.lost {
            return Err(Stop::Lost(who.clone()));
        }
        match self.interrupt.reason() {
            Some(why) => Err(Stop::Interrupted(why.to_owned())),
            None if self.interrupt.is_triggered() => Err(Stop::Interrupted("interrupted".into())),
            None => Ok(()),
        }
    }
}
