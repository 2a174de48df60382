//! Carrying a recorded run on, the gate, and how a run that was stopped ends.

use super::*;

impl Promoter {
    /// Takes a recorded run's facts over and says where it carries on.
    pub(super) async fn restore(&mut self, record: &crate::runstate::RunRecord) -> ResumeAt {
        let ctx = &mut self.state.ctx;
        ctx.from_version = record.from_version.clone();
        ctx.to_version = record.to_version.clone().or(ctx.to_version.take());
        ctx.target_image = record.target_image.clone().or(ctx.target_image.take());
        ctx.baseline = record.baseline.clone();
        ctx.rollout_started = record.rollout_started;
        self.from_image = record.from_image.clone();
        self.state.started_at = record.started_at;
        for d in &record.decisions {
            self.state.actions.push(ActionRecord {
                at: d.at,
                message: format!("(recorded) {}", d.message),
            });
        }
        let production = self
            .platform
            .image(Variant::Production)
            .await
            .unwrap_or_default();
        let at = crate::runstate::resume_point(record, &production);
        let phases: &[Phase] = match at {
            ResumeAt::Exec => &[
                Phase::Exec,
                Phase::Rollout,
                Phase::Post,
                Phase::Final,
                Phase::Cleanup,
            ],
            ResumeAt::Rollout => &[Phase::Rollout, Phase::Post, Phase::Final, Phase::Cleanup],
            ResumeAt::Post => &[Phase::Post, Phase::Final, Phase::Cleanup],
            ResumeAt::Final => &[Phase::Final, Phase::Cleanup],
            ResumeAt::Watch => &[],
            ResumeAt::RollBack { .. } => &[],
        };
        self.state.phases_in_report = phases.to_vec();
        self.action(format!(
            "resumed run {} (taken over {} time(s)) at stage {}; production runs {production}",
            record.run_id,
            record.resumes + 1,
            record.stage.as_str()
        ));
        at
    }

    /// The end of a run whose phase stopped without a decision: interrupted, or taken over.
    pub(super) async fn stopped_end(&mut self, phase: Phase) -> End {
        match self.stopped() {
            Ok(()) => End::new(Outcome::Error, "phase did not finish", None),
            Err(Stop::Lost(holder)) => End::new(
                Outcome::Busy,
                "another promoter took this run over; stopped without acting",
                Some(format!("the run is now held by {holder}")),
            ),
            Err(Stop::Interrupted(why)) if phase == Phase::Pre || self.dry_run => End::new(
                Outcome::Aborted,
                "interrupted before the image changed; production untouched",
                Some(why),
            ),
            Err(Stop::Interrupted(why)) => match self.on_interrupt {
                OnInterrupt::Rollback => {
                    self.roll_back(format!(
                        "{why} during {} (--on-interrupt rollback)",
                        phase.title()
                    ))
                    .await
                }
                OnInterrupt::Leave => End::new(
                    Outcome::Interrupted,
                    format!(
                        "interrupted during {}; production left as it is and the run recorded: `zai-promoter resume` carries it on",
                        phase.title()
                    ),
                    Some(why),
                ),
            },
        }
    }

    /// The `before-promotion` gate: waits for an approval (recorded by `zai-promoter
    /// approve`, or the gate URL answering 2xx) until its timeout.
    pub(super) async fn wait_gate(&mut self) -> Result<(), End> {
        let Some(gate) = self.gate.clone() else {
            return Ok(());
        };
        if self.dry_run {
            self.action("dry run: would wait at the before-promotion gate".into());
            return Ok(());
        }
        let started = self.clock.now();
        self.set_stage(Stage::Gate, "phase 1 passed: waiting for approval")
            .await;
        self.action(format!(
            "waiting at the before-promotion gate for up to {} (zai-promoter approve{})",
            human(gate.timeout),
            if gate.url.is_some() {
                ", or the gate URL"
            } else {
                ""
            }
        ));
        loop {
            self.refresh_approval().await;
            if let Some(a) = self.held.as_ref().and_then(|h| h.record.approval.clone()) {
                self.action(format!(
                    "gate approved by {} at {}",
                    a.by,
                    a.at.to_rfc3339()
                ));
                return Ok(());
            }
            if let Some(url) = &gate.url {
                match crate::platform::http_get(url, self.config.http_timeout).await {
                    Ok(r) if (200..300).contains(&r.status) => {
                        self.action(format!("gate approved: {url} answered {}", r.status));
                        return Ok(());
                    }
                    Ok(r) => tracing::info!(status = r.status, "gate URL: not approved yet"),
                    Err(e) => tracing::info!(error = %e, "gate URL: no answer"),
                }
            }
            let waited = (self.clock.now() - started)
                .to_std()
                .unwrap_or(Duration::ZERO);
            if waited >= gate.timeout {
                return Err(End::new(
                    Outcome::Aborted,
                    "aborted at the before-promotion gate: not approved in time; production untouched",
                    Some(format!("no approval within {}", human(gate.timeout))),
                ));
            }
            let step = self.config.interval.min(gate.timeout - waited);
            if let Err(stop) = self.pause(step).await {
                let why = match stop {
                    Stop::Interrupted(w) | Stop::Lost(w) => w,
                };
                return Err(End::new(
                    Outcome::Aborted,
                    "interrupted at the before-promotion gate; production untouched",
                    Some(why),
                ));
            }
        }
    }
}
