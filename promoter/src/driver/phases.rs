//! The checklist phases: the tick loop of phases 1, 3 and 4, the image change of phase 2, finalisation and clean-up.

use super::*;
use crate::catalog::{CheckId, CleanupCheck, ExecCheck, FinalCheck, TriggerId};

impl Promoter {
    pub(super) async fn run_phase(&mut self, phase: Phase) -> Decision {
        let started = self.clock.now();
        self.state.phase_times.insert(phase, (started, None));
        self.emit(Event::Phase { phase, at: started });
        let queries = queries_for_phase(&self.config, phase, self.workers.is_some());
        let judged = self.config.judged_checks().any(|c| c.phase == phase);
        if phase == Phase::Rollout
            && let Some(version) = &self.state.ctx.to_version
        {
            self.signals.set_new_version(version);
        }
        loop {
            let judge_window = judged.then(|| {
                // Phase 1 judges since the run began, phase 3 since the image changed.
                let since = match (phase, self.state.ctx.rollout_started) {
                    (Phase::Rollout, Some(at)) => at,
                    (Phase::Rollout, None) => started,
                    _ => self.state.started_at,
                };
                let elapsed = (self.clock.now() - since)
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                engine::judge_window(&self.config, phase, elapsed)
            });
            let mut tick_queries = queries.clone();
            if let Some(w) = judge_window {
                tick_queries.extend(engine::judge_queries(&self.config, phase, w));
            }
            let mut snap = self.collect(Some(phase), &tick_queries).await;
            snap.judge_window = judge_window;
            let decision = engine::tick(
                &self.config,
                &self.state.ctx,
                &mut self.state.history,
                phase,
                started,
                &snap,
            );
            let waiting = match &decision {
                Decision::Hold { waiting } => waiting.clone(),
                _ => Vec::new(),
            };
            let checks = self
                .config
                .phase_checks(phase)
                .filter_map(|c| {
                    let s = self.state.history.check(c.id)?.last()?.clone();
                    Some((c.id, s))
                })
                .collect();
            let phase_elapsed = (snap.at - started).to_std().unwrap_or(Duration::ZERO);
            let time_left = match phase {
                Phase::Rollout => Some(self.config.rollout_deadline.saturating_sub(phase_elapsed)),
                Phase::Post => Some(self.config.post_deadline.saturating_sub(phase_elapsed)),
                _ => None,
            };
            let triggers = if matches!(phase, Phase::Rollout | Phase::Post) {
                self.trigger_samples()
            } else {
                Vec::new()
            };
            self.emit(Event::Tick {
                phase: Some(phase),
                at: snap.at,
                elapsed: self.elapsed(),
                checks,
                triggers,
                waiting,
                time_left,
            });
            match decision {
                Decision::Hold { waiting } => {
                    if self.pause(self.config.interval).await.is_err() {
                        return Decision::Hold { waiting };
                    }
                }
                other => {
                    if other == Decision::Passed && phase == Phase::Pre {
                        self.capture_baseline(&snap);
                    }
                    if let Some(t) = self.state.phase_times.get_mut(&phase) {
                        t.1 = Some(snap.at);
                    }
                    return other;
                }
            }
        }
    }

    pub(super) fn trigger_samples(&self) -> Vec<(TriggerId, Sample)> {
        self.config
            .triggers
            .iter()
            .filter_map(|t| Some((t.id, self.state.history.triggers.get(&t.id)?.last.clone()?)))
            .collect()
    }

    pub(super) fn capture_baseline(&mut self, snap: &Snapshot) {
        let b = &mut self.state.ctx.baseline;
        b.captured_at = Some(snap.at);
        for q in baseline_queries(&self.config) {
            let v = snap.measurements.get(&q).and_then(|m| m.reading.value());
            match q.signal {
                crate::signals::Signal::LatencyQuantile { .. } => {
                    b.p95_by_window_secs.insert(q.window.as_secs(), v);
                }
                crate::signals::Signal::RequestRate => b.request_rate = v,
                _ => {}
            }
        }
    }

    pub(super) async fn execute(&mut self) -> Result<(), End> {
        let started = self.clock.now();
        self.state.phase_times.insert(Phase::Exec, (started, None));
        self.emit(Event::Phase {
            phase: Phase::Exec,
            at: started,
        });
        let Some(target) = self.state.ctx.target_image.clone() else {
            return Err(End::new(Outcome::Error, "no target image", None));
        };
        let version = self.state.ctx.to_version.clone().unwrap_or_default();
        if self.dry_run {
            self.action(format!(
                "dry run: would set production image to {target} (version {version})"
            ));
            let s = Sample::skipped(started, format!("dry run: would set image {target}"));
            self.state
                .history
                .record_check(CheckId::Exec(ExecCheck::ImageUpdated), s);
        } else {
            let before = self.platform.image(Variant::Production).await.ok();
            self.action(format!(
                "set production image to {target} (version label {version})"
            ));
            if let Err(e) = self
                .platform
                .set_image(Variant::Production, &target, &version)
                .await
            {
                let after = self.platform.image(Variant::Production).await.ok();
                let mut s = Sample::new(Status::Fail, self.clock.now());
                s.evidence.push(e.to_string());
                self.state
                    .history
                    .record_check(CheckId::Exec(ExecCheck::ImageUpdated), s);
                if after.is_some() && after == before {
                    return Err(End::new(
                        Outcome::Aborted,
                        "aborted: the production image could not be set; production untouched",
                        Some(e.to_string()),
                    ));
                }
                self.state.ctx.rollout_started = Some(started);
                return Err(self
                    .roll_back(format!("setting the image failed: {e}"))
                    .await);
            }
            self.state.ctx.rollout_started = Some(started);
            let snap = self.collect(Some(Phase::Exec), &[]).await;
            let decision = engine::tick(
                &self.config,
                &self.state.ctx,
                &mut self.state.history,
                Phase::Exec,
                started,
                &snap,
            );
            if decision != Decision::Passed {
                let why = self
                    .state
                    .history
                    .check(CheckId::Exec(ExecCheck::ImageUpdated))
                    .and_then(|h| h.last())
                    .map(Sample::summary)
                    .unwrap_or_default();
                return Err(self.roll_back(format!("exec.image_updated: {why}")).await);
            }
        }
        if let Some(t) = self.state.phase_times.get_mut(&Phase::Exec) {
            t.1 = Some(self.clock.now());
        }
        Ok(())
    }

    pub(super) async fn finalise(&mut self) {
        let at = self.clock.now();
        self.state.phase_times.insert(Phase::Final, (at, None));
        self.emit(Event::Phase {
            phase: Phase::Final,
            at,
        });
        let plan = self.finalise_plan();
        let samples: Vec<(CheckId, Sample)> = match (&plan, self.dry_run) {
            (Some(p), true) => {
                let msg = format!(
                    "dry run: would write {} = {}, commit, tag {}{}",
                    p.version_file.display(),
                    p.version,
                    p.tag(),
                    if p.push { ", push" } else { "" }
                );
                self.action(msg.clone());
                [
                    CheckId::Final(FinalCheck::VersionFile),
                    CheckId::Final(FinalCheck::Commit),
                    CheckId::Final(FinalCheck::Tag),
                    CheckId::Final(FinalCheck::Push),
                ]
                .into_iter()
                .map(|id| (id, Sample::skipped(at, msg.clone())))
                .collect()
            }
            (Some(p), false) => {
                self.action(format!("finalise {} in {}", p.tag(), p.repo.display()));
                finalise::run(p, at).await
            }
            (None, _) => [
                CheckId::Final(FinalCheck::VersionFile),
                CheckId::Final(FinalCheck::Commit),
                CheckId::Final(FinalCheck::Tag),
                CheckId::Final(FinalCheck::Push),
            ]
            .into_iter()
            .map(|id| (id, Sample::skipped(at, "no [finalise] repo configured")))
            .collect(),
        };
        for (id, s) in samples {
            let enabled = self.config.check(id).is_none_or(|c| c.enabled);
            let s = if enabled {
                s
            } else {
                Sample::skipped(at, "disabled in configuration")
            };
            self.state.history.record_check(id, s);
        }
        if let Some(t) = self.state.phase_times.get_mut(&Phase::Final) {
            t.1 = Some(self.clock.now());
        }
    }

    pub(super) async fn cleanup(&mut self) {
        let at = self.clock.now();
        self.state.phase_times.insert(Phase::Cleanup, (at, None));
        let id = CheckId::Cleanup(CleanupCheck::CanaryScaledDown);
        let enabled = self.config.check(id).is_none_or(|c| c.enabled);
        let s = if !enabled || !self.config.scale_down_canary {
            Sample::skipped(at, "scale_down_canary = false")
        } else if self.dry_run {
            self.action("dry run: would scale the canary to 0".into());
            Sample::skipped(at, "dry run: would scale the canary to 0")
        } else {
            self.action("scale the canary to 0".into());
            let mut s = Sample::new(Status::Fail, at);
            s.threshold = format!(
                "<= {} replicas",
                self.config.check(id).map(|c| c.threshold).unwrap_or(0.0)
            );
            s.source = "platform: scale canary".into();
            match self.platform.scale(Variant::Test, 0).await {
                Err(e) => s.evidence.push(e.to_string()),
                Ok(()) => match self.platform.replicas(Variant::Test).await {
                    Ok(n) => {
                        s.value = Some(f64::from(n));
                        s.observed = format!("{n} replicas");
                        let max = self.config.check(id).map(|c| c.threshold).unwrap_or(0.0);
                        if f64::from(n) <= max {
                            s.status = Status::Pass;
                        }
                    }
                    Err(e) => {
                        s.status = Status::Error;
                        s.evidence.push(e.to_string());
                    }
                },
            }
            s
        };
        self.state.history.record_check(id, s);
        if let Some(t) = self.state.phase_times.get_mut(&Phase::Cleanup) {
            t.1 = Some(self.clock.now());
        }
    }
}
