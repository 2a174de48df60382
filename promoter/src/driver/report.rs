//! Building the report from the run's history.

use super::*;

impl Promoter {
    pub(super) fn build_report(&self, mode: &Mode, end: End) -> Report {
        let decided_at = self.clock.now();
        let h = &self.state.history;
        let phases = self
            .state
            .phases_in_report
            .iter()
            .map(|phase| {
                let checks: Vec<CheckReport> = self
                    .config
                    .phase_checks(*phase)
                    .map(
                        |spec| match h.check(spec.id).and_then(|c| c.last().map(|l| (c, l))) {
                            Some((c, last)) => CheckReport::from_sample(
                                spec.id.as_str(),
                                spec.title,
                                last,
                                c.count,
                                c.first_at,
                            ),
                            None if !spec.enabled => {
                                let mut r = CheckReport::pending(spec.id.as_str(), spec.title);
                                r.status = Status::Skipped;
                                r.evidence.push("disabled in configuration".into());
                                r
                            }
                            None => CheckReport::pending(spec.id.as_str(), spec.title),
                        },
                    )
                    .collect();
                let times = self.state.phase_times.get(phase);
                let status = phase_status(&checks, times.is_some_and(|t| t.1.is_some()));
                PhaseReport {
                    phase: *phase,
                    title: phase.title().into(),
                    status,
                    started_at: times.map(|t| t.0),
                    finished_at: times.and_then(|t| t.1),
                    checks,
                }
            })
            .collect();
        let triggers = self
            .state
            .promotion_triggers
            .clone()
            .unwrap_or_else(|| self.trigger_reports());
        Report {
            schema: 1,
            mode: mode.name().into(),
            outcome: end.outcome,
            verdict: end.verdict,
            reason: end.reason,
            dry_run: self.dry_run,
            from_version: self.state.ctx.from_version.clone(),
            to_version: self.state.ctx.to_version.clone(),
            platform: self.platform.name().into(),
            signals: self.signals.name().into(),
            started_at: self.state.started_at,
            decided_at,
            baseline: self.state.ctx.baseline.clone(),
            phases,
            triggers,
            rollback: self.state.rollback.clone(),
            first_hour: self.state.first_hour.clone(),
            actions: self.state.actions.clone(),
            signal_gaps: self.state.signal_gaps.clone(),
            sign_off: SignOff {
                by: self.operator.clone(),
                host: self.host.clone(),
                platform: self.platform.location(),
                at: decided_at,
            },
        }
    }

    pub(super) fn trigger_reports(&self) -> Vec<TriggerReport> {
        let h = &self.state.history;
        self.config
            .triggers
            .iter()
            .map(|spec| {
                let st = h.triggers.get(&spec.id);
                let last = st.and_then(|s| s.last.as_ref());
                let status = if !spec.enabled {
                    TriggerStatus::Disabled
                } else if st.is_some_and(|s| s.fired_at.is_some()) {
                    TriggerStatus::Fired
                } else if st.is_some_and(|s| s.held_since.is_some()) {
                    TriggerStatus::Holding
                } else if last.is_some() {
                    TriggerStatus::Clear
                } else {
                    TriggerStatus::NotEvaluated
                };
                TriggerReport {
                    id: spec.id.to_string(),
                    title: spec.title.into(),
                    status,
                    threshold: last.map(|l| l.threshold.clone()).unwrap_or_default(),
                    hold_for: spec.hold_for,
                    window: spec.window,
                    first_seen: st.and_then(|s| s.first_seen),
                    fired_at: st.and_then(|s| s.fired_at),
                    held_samples: st.map(|s| s.held_samples).unwrap_or(0),
                    observed: last.map(|l| l.observed.clone()).unwrap_or_default(),
                    query: last.map(|l| l.source.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }
}

fn phase_status(checks: &[CheckReport], finished: bool) -> Status {
    let has = |s: Status| checks.iter().any(|c| c.status == s);
    if has(Status::Fail) {
        Status::Fail
    } else if has(Status::Error) {
        Status::Error
    } else if has(Status::NoData) {
        Status::NoData
    } else if checks.iter().all(|c| c.status == Status::Pending) && !finished {
        Status::Pending
    } else if checks.iter().all(|c| c.status == Status::Skipped) {
        Status::Skipped
    } else if finished {
        Status::Pass
    } else {
        Status::Pending
    }
}
