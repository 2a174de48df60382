//! Watching production: `watch`, and the first hour after a promotion (`promote --watch`) with its own thresholds against the recorded baseline.

use super::*;

impl Promoter {
    pub(super) async fn run_watch(&mut self, duration: Duration) -> End {
        let started = self.clock.now();
        let queries: Vec<SignalQuery> = {
            let mut q = queries_for_phase(&self.config, Phase::Post, self.workers.is_some());
            q.extend(baseline_queries(&self.config));
            let mut seen = std::collections::HashSet::new();
            q.retain(|x| seen.insert(*x));
            q
        };
        loop {
            let snap = self.collect(None, &queries).await;
            if let Some(Ok(pods)) = snap.pods.get(&Variant::Production) {
                self.state.history.note_pods(pods, None);
            }
            if self.state.ctx.baseline.captured_at.is_none() {
                self.capture_baseline(&snap);
                if self
                    .state
                    .ctx
                    .baseline
                    .p95_by_window_secs
                    .values()
                    .all(Option::is_none)
                {
                    self.state.ctx.baseline.captured_at = None;
                }
            }
            let fired = engine_observe(
                &self.config,
                &self.state.ctx,
                &mut self.state.history,
                &snap,
            );
            if let Some(w) = &snap.workers {
                self.state.history.note_workers(snap.at, w);
            }
            let watched = (snap.at - started).to_std().unwrap_or(Duration::ZERO);
            self.emit(Event::Tick {
                phase: None,
                at: snap.at,
                elapsed: self.elapsed(),
                checks: Vec::new(),
                triggers: self.trigger_samples(),
                waiting: Vec::new(),
                time_left: Some(duration.saturating_sub(watched)),
            });
            if let Some(id) = fired.first() {
                let decision = engine::decide(
                    &self.config,
                    &self.state.history,
                    Phase::Post,
                    started,
                    snap.at,
                    &fired,
                );
                let reason = match decision {
                    Decision::Rollback { reason, .. } => reason,
                    _ => format!("{id} fired"),
                };
                return self.roll_back(reason).await;
            }
            if watched >= duration {
                return End::new(
                    Outcome::Passed,
                    format!("production stayed healthy for {}", human(duration)),
                    None,
                );
            }
            if let Err(stop) = self.pause(self.config.interval).await {
                let why = match stop {
                    Stop::Interrupted(w) | Stop::Lost(w) => w,
                };
                return End::new(
                    Outcome::Interrupted,
                    format!(
                        "watch interrupted after {}; nothing had fired",
                        human(watched)
                    ),
                    Some(why),
                );
            }
        }
    }

    /// The checklist's first-hour monitoring: production watched with the `[first_hour]`
    /// thresholds (the other triggers armed as configured) against the pre-rollout baseline.
    pub(super) async fn watch_first_hour(&mut self, duration: Duration, promoted: End) -> End {
        let now = self.clock.now();
        let until = match self.held.as_ref().and_then(|h| h.record.watch_until) {
            Some(until) => until,
            None => crate::duration_serde::plus(now, duration),
        };
        if let Some(h) = self.held.as_mut() {
            h.record.watch_until = Some(until);
        }
        self.set_stage(Stage::Watch, "promoted: first-hour monitoring")
            .await;
        let left = (until - now).to_std().unwrap_or(Duration::ZERO);
        self.action(format!(
            "first-hour monitoring for {} against the pre-rollout baseline",
            human(left)
        ));
        self.state.promotion_triggers = Some(self.trigger_reports());
        let first_hour_triggers = self.config.first_hour_triggers();
        let promotion_triggers = std::mem::replace(&mut self.config.triggers, first_hour_triggers);
        self.state.history.triggers.clear();
        let started = self.clock.now();
        let end = self.run_watch(left).await;
        let watched = (self.clock.now() - started)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let status = match end.outcome {
            Outcome::Passed => FirstHourStatus::Healthy,
            Outcome::RolledBack => FirstHourStatus::Breached,
            _ => FirstHourStatus::Interrupted,
        };
        self.state.first_hour = Some(crate::report::FirstHourReport {
            duration,
            watched,
            status,
            triggers: self.trigger_reports(),
        });
        self.config.triggers = promotion_triggers;
        match end.outcome {
            Outcome::Passed => End::new(
                Outcome::Promoted,
                format!(
                    "{}; first hour healthy ({})",
                    promoted.verdict,
                    human(watched)
                ),
                promoted.reason,
            ),
            Outcome::RolledBack => End::new(
                Outcome::RolledBack,
                format!(
                    "rolled back in the first hour after the promotion: {}",
                    end.verdict
                ),
                end.reason,
            ),
            Outcome::Interrupted if self.on_interrupt == OnInterrupt::Leave => End::new(
                Outcome::Interrupted,
                format!(
                    "{}; first-hour monitoring interrupted after {} (`zai-promoter resume` carries it on)",
                    promoted.verdict,
                    human(watched)
                ),
                end.reason,
            ),
            _ => End::new(
                Outcome::Promoted,
                format!(
                    "{}; first-hour monitoring stopped after {}",
                    promoted.verdict,
                    human(watched)
                ),
                end.reason.or(promoted.reason),
            ),
        }
    }

    /// `watch` after a recorded promotion: its pre-rollout baseline, not one sampled now.
    pub(super) async fn adopt_recorded_baseline(&mut self) {
        let Ok(slot) = self.platform.read_record().await else {
            return;
        };
        let Some(record) = slot
            .text
            .as_deref()
            .and_then(|t| crate::runstate::RunRecord::parse(t).ok())
        else {
            return;
        };
        if record.baseline.captured_at.is_some() {
            self.state.ctx.baseline = record.baseline.clone();
            self.state.ctx.from_version = record.from_version.clone();
            self.state.ctx.to_version = record.to_version.clone();
            self.action(format!(
                "baseline from the recorded run {} ({} → {}, captured {})",
                record.run_id,
                record.from_version.as_deref().unwrap_or("?"),
                record.to_version.as_deref().unwrap_or("?"),
                record
                    .baseline
                    .captured_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ));
        }
    }
}
