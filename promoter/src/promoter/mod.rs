//! The driver: runs the phases against a platform and a signal source, doing the IO the engine
//! does not, and builds the report.
//!
//! ```no_run
//! # async fn demo(platform: std::sync::Arc<dyn zai_promoter::Platform>,
//! #               signals: Box<dyn zai_promoter::SignalSource>) {
//! use std::sync::Arc;
//! use zai_promoter::{Config, Mode, Promoter, SystemClock};
//! let mut promoter = Promoter::new(Config::default(), platform, signals, Arc::new(SystemClock))
//!     .on_event(|e| println!("{e:?}"));
//! let report = promoter.run(Mode::Promote).await;
//! std::process::exit(report.exit_code());
//! # }
//! ```

mod interrupt;
mod record;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::catalog::Phase;
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::{
    self, Decision, History, RunContext, Sample, Snapshot, Status, baseline_queries,
    queries_for_phase,
};
use crate::finalise::{self, Finalise};
use crate::platform::{Platform, Variant, image_tag, stable_version, with_tag};
use crate::report::{
    ActionRecord, CheckReport, Outcome, PhaseReport, Report, RollbackReport, SignOff, TriggerReport,
};
use crate::runstate::{ResumeAt, Stage};
use crate::signals::{SignalQuery, SignalSource};
use crate::workers::WorkerSignals;

pub use self::interrupt::{Interrupt, OnInterrupt};
use self::record::{Claimed, Held, Stop};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Phase 1 only, read-only.
    Check,
    /// All phases.
    Promote,
    /// Carry on a run recorded in the cluster (an error if there is none to carry on).
    Resume,
    /// Roll production back now.
    Rollback {
        /// Recorded in the report.
        reason: String,
    },
    /// Watch production for a while with the rollback triggers armed.
    Watch {
        /// How long.
        duration: Duration,
    },
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Check => "check",
            Mode::Promote => "promote",
            Mode::Resume => "resume",
            Mode::Rollback { .. } => "rollback",
            Mode::Watch { .. } => "watch",
        }
    }
}

/// Progress, for live displays and logs.
#[derive(Debug, Clone)]
pub enum Event {
    /// A phase began.
    Phase {
        /// Which.
        phase: Phase,
        /// When.
        at: DateTime<Utc>,
    },
    /// A tick was evaluated.
    Tick {
        /// Phase (None in `watch`).
        phase: Option<Phase>,
        /// When.
        at: DateTime<Utc>,
        /// Since the run started.
        elapsed: Duration,
        /// The phase's check samples.
        checks: Vec<(&'static str, Sample)>,
        /// Trigger condition samples (phases 3–4, watch).
        triggers: Vec<(&'static str, Sample)>,
        /// What the phase waits for.
        waiting: Vec<String>,
        /// Time left before the phase's deadline or the end of a wait.
        time_left: Option<Duration>,
    },
    /// Something was changed (or would be, in a dry run).
    Action {
        /// When.
        at: DateTime<Utc>,
        /// What.
        message: String,
    },
    /// The run was claimed in the cluster: a new run, or one taken over.
    Run {
        /// The run's id (kept across resumes).
        run_id: String,
        /// When.
        at: DateTime<Utc>,
        /// `run started`, or whose run was taken over at which stage.
        note: String,
    },
    /// The run ended.
    Finished {
        /// Outcome.
        outcome: Outcome,
        /// Verdict sentence.
        verdict: String,
    },
}

/// Receives progress events.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Runs a promotion (or check, rollback, watch).
pub struct Promoter {
    config: Config,
    platform: Arc<dyn Platform>,
    signals: Box<dyn SignalSource>,
    clock: Arc<dyn Clock>,
    workers: Option<Arc<dyn WorkerSignals>>,
    events: Option<EventSink>,
    dry_run: bool,
    push: bool,
    operator: String,
    host: String,
    state: RunState,
    interrupt: Interrupt,
    on_interrupt: OnInterrupt,
    gate: Option<Gate>,
    first_hour: Option<Duration>,
    run_id: String,
    holder: String,
    held: Option<Held>,
    lost: Option<String>,
    from_image: Option<String>,
}

/// The manual gate after phase 1 (`--gate before-promotion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// Approval must come within this, else the run is aborted (production untouched).
    pub timeout: Duration,
    /// A URL that approves by answering 2xx to a GET (polled every tick), besides
    /// `zai-promoter approve`.
    pub url: Option<String>,
}

#[derive(Default)]
struct RunState {
    history: History,
    ctx: RunContext,
    actions: Vec<ActionRecord>,
    phase_times: BTreeMap<Phase, (DateTime<Utc>, Option<DateTime<Utc>>)>,
    rollback: Option<RollbackReport>,
    started_at: DateTime<Utc>,
    phases_in_report: Vec<Phase>,
    first_hour: Option<crate::report::FirstHourReport>,
    promotion_triggers: Option<Vec<TriggerReport>>,
}

/// How a run ended, before the report is built.
struct End {
    outcome: Outcome,
    verdict: String,
    reason: Option<String>,
}

impl End {
    fn new(outcome: Outcome, verdict: impl Into<String>, reason: Option<String>) -> Self {
        End {
            outcome,
            verdict: verdict.into(),
            reason,
        }
    }
}

impl Promoter {
    /// A promoter over a platform and a signal source, with an injectable clock.
    pub fn new(
        config: Config,
        platform: Arc<dyn Platform>,
        signals: Box<dyn SignalSource>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Promoter {
            config,
            platform,
            signals,
            clock,
            workers: None,
            events: None,
            dry_run: false,
            push: false,
            operator: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            host: hostname(),
            state: RunState::default(),
            interrupt: Interrupt::new(),
            on_interrupt: OnInterrupt::default(),
            gate: None,
            first_hour: None,
            run_id: String::new(),
            holder: String::new(),
            held: None,
            lost: None,
            from_image: None,
        }
    }

    /// Stops at the next safe point once `interrupt` is triggered (see [`OnInterrupt`]).
    pub fn interrupt(mut self, interrupt: Interrupt, policy: OnInterrupt) -> Self {
        self.interrupt = interrupt;
        self.on_interrupt = policy;
        self
    }

    /// After a promotion, watches production this long with the first-hour thresholds
    /// (`[first_hour]`) against the pre-rollout baseline; a breach rolls back.
    pub fn first_hour(mut self, duration: Option<Duration>) -> Self {
        self.first_hour = duration.filter(|d| !d.is_zero());
        self
    }

    /// Pauses after phase 1 until approved (`zai-promoter approve`, or the gate URL).
    pub fn gate(mut self, gate: Option<Gate>) -> Self {
        self.gate = gate;
        self
    }

    /// Attaches a worker-statistics feed (rehearsals); without it, worker checks use the
    /// proxy's request metrics.
    pub fn with_workers(mut self, workers: Arc<dyn WorkerSignals>) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Receives progress events.
    pub fn on_event(mut self, sink: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }

    /// Evaluates everything and changes nothing.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// Pushes the release tag in phase 5.
    pub fn push(mut self, yes: bool) -> Self {
        self.push = yes;
        self
    }

    /// Who signs off (defaults to `$USER`).
    pub fn operator(mut self, who: impl Into<String>) -> Self {
        self.operator = who.into();
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn emit(&self, e: Event) {
        if let Some(sink) = &self.events {
            sink(&e);
        }
    }

    fn action(&mut self, message: String) {
        let at = self.clock.now();
        tracing::info!(%message, "action");
        self.state.actions.push(ActionRecord {
            at,
            message: message.clone(),
        });
        self.emit(Event::Action { at, message });
    }

    fn elapsed(&self) -> Duration {
        (self.clock.now() - self.state.started_at)
            .to_std()
            .unwrap_or(Duration::ZERO)
    }

    /// Runs `mode` to the end and returns the report (also on failure: outcome `error`).
    pub async fn run(&mut self, mode: Mode) -> Report {
        self.state = RunState {
            started_at: self.clock.now(),
            ..RunState::default()
        };
        self.state.ctx.dry_run = self.dry_run;
        self.held = None;
        self.lost = None;
        self.from_image = None;
        self.run_id = new_run_id(self.clock.now());
        self.holder = format!("{}/{}/{}", self.host, std::process::id(), self.run_id);
        let end = match &mode {
            Mode::Check => {
                self.state.phases_in_report = vec![Phase::Pre];
                self.run_check().await
            }
            Mode::Promote | Mode::Resume => {
                self.state.phases_in_report = Phase::ALL.to_vec();
                self.run_promote(mode == Mode::Resume).await
            }
            Mode::Rollback { reason } => self.run_rollback(reason.clone()).await,
            Mode::Watch { duration } => {
                self.adopt_recorded_baseline().await;
                self.run_watch(*duration).await
            }
        };
        self.release(&end).await;
        let report = self.build_report(&mode, end);
        self.emit(Event::Finished {
            outcome: report.outcome,
            verdict: report.verdict.clone(),
        });
        report
    }

    // === versions ===

    async fn resolve_versions(&mut self) -> Result<(), String> {
        let prod = self
            .platform
            .image(Variant::Production)
            .await
            .map_err(|e| e.to_string())?;
        let canary = self
            .platform
            .image(Variant::Test)
            .await
            .map_err(|e| e.to_string())?;
        self.from_image = Some(prod.clone());
        let ctx = &mut self.state.ctx;
        ctx.from_version = image_tag(&prod).map(str::to_owned);
        if let Some(tag) = image_tag(&canary) {
            let stable = stable_version(tag).to_owned();
            ctx.target_image = Some(with_tag(&canary, &stable));
            ctx.to_version = Some(stable);
        }
        Ok(())
    }

    fn finalise_plan(&self) -> Option<Finalise> {
        let repo = self.config.finalise.repo.clone()?;
        Some(Finalise {
            repo,
            version_file: self.config.finalise.version_file.clone(),
            version: self.state.ctx.to_version.clone()?,
            remote: self.config.finalise.remote.clone(),
            push: self.push,
            bump_canary: self.config.finalise.bump_canary.clone(),
        })
    }

    // === modes ===

    async fn run_check(&mut self) -> End {
        if let Err(e) = self.resolve_versions().await {
            return End::new(Outcome::Error, "could not read the deployments", Some(e));
        }
        match self.run_phase(Phase::Pre).await {
            Decision::Passed => End::new(Outcome::Passed, "canary passed phase 1", None),
            Decision::Abort { reason } | Decision::Rollback { reason, .. } => End::new(
                Outcome::Aborted,
                "canary did not pass phase 1",
                Some(reason),
            ),
            Decision::Hold { .. } => End::new(Outcome::Error, "phase 1 did not finish", None),
        }
    }

    async fn run_promote(&mut self, must_resume: bool) -> End {
        if let Err(e) = self.resolve_versions().await {
            return End::new(Outcome::Error, "could not read the deployments", Some(e));
        }
        let resumed = if self.dry_run {
            None
        } else {
            match self.claim_run(must_resume).await {
                Err(end) => return end,
                Ok(Claimed::Fresh) => None,
                Ok(Claimed::Resumed(record)) => Some(record),
            }
        };
        let from = match &resumed {
            None => None,
            Some(record) => Some(self.restore(record).await),
        };
        if from.is_none()
            && let Some(plan) = self.finalise_plan()
            && let Err(e) = finalise::preflight(&plan).await
        {
            return End::new(
                Outcome::Error,
                "finalisation preconditions not met",
                Some(e.to_string()),
            );
        }
        if let Some(ResumeAt::RollBack { undo }) = from {
            return self
                .roll_back_with("resuming an interrupted rollback".into(), undo)
                .await;
        }
        let from = from.unwrap_or(ResumeAt::Exec);
        let fresh = resumed.is_none();
        if fresh {
            // Phase 1.
            match self.run_phase(Phase::Pre).await {
                Decision::Passed => {}
                Decision::Abort { reason } | Decision::Rollback { reason, .. } => {
                    return self.aborted_before(reason);
                }
                Decision::Hold { .. } => return self.stopped_end(Phase::Pre).await,
            }
            if let Err(end) = self.wait_gate().await {
                return end;
            }
            // The last safe point before production changes.
            if self.stopped().is_err() {
                return self.stopped_end(Phase::Pre).await;
            }
        }
        // Phase 2.
        if from == ResumeAt::Exec {
            self.set_stage(Stage::Exec, "phase 1 passed: setting the production image")
                .await;
            if let Err(end) = self.execute().await {
                return end;
            }
        }
        // Phases 3 and 4.
        for (phase, stage, at) in [
            (Phase::Rollout, Stage::Rollout, ResumeAt::Rollout),
            (Phase::Post, Stage::Post, ResumeAt::Post),
        ] {
            if rank(from) > rank(at) {
                continue;
            }
            self.set_stage(stage, format!("{} started", phase.title()))
                .await;
            if self.stopped().is_err() {
                return self.stopped_end(phase).await;
            }
            match self.run_phase(phase).await {
                Decision::Passed => {}
                Decision::Rollback { reason, .. } => return self.roll_back(reason).await,
                Decision::Abort { reason } => {
                    if self.dry_run {
                        let v = format!(
                            "would abort at T+{} because {reason}",
                            human(self.elapsed())
                        );
                        return End::new(Outcome::DryRun, v, Some(reason));
                    }
                    return End::new(
                        Outcome::Aborted,
                        "aborted after the rollout began; production left on the new version (no_data_after_rollout = keep)",
                        Some(reason),
                    );
                }
                Decision::Hold { .. } => return self.stopped_end(phase).await,
            }
        }
        let resumed_at = from;
        // Phase 5 and cleanup.
        if rank(from) <= rank(ResumeAt::Final) {
            self.set_stage(Stage::Final, "verification passed: finalising")
                .await;
            self.finalise().await;
            self.cleanup().await;
        }
        let (from, to) = (
            self.state
                .ctx
                .from_version
                .clone()
                .unwrap_or_else(|| "?".into()),
            self.state
                .ctx
                .to_version
                .clone()
                .unwrap_or_else(|| "?".into()),
        );
        if self.dry_run {
            return End::new(
                Outcome::DryRun,
                format!(
                    "would promote {from} → {to} (evaluated for {})",
                    human(self.elapsed())
                ),
                None,
            );
        }
        let problems: Vec<String> = [
            "final.version_file",
            "final.commit",
            "final.tag",
            "final.push",
            "cleanup.canary_scaled_down",
        ]
        .iter()
        .filter_map(|id| {
            let last = self.state.history.check(id)?.last()?;
            matches!(last.status, Status::Fail | Status::Error)
                .then(|| format!("{id}: {}", last.summary()))
        })
        .collect();
        let reason = (!problems.is_empty()).then(|| problems.join("; "));
        let promoted = End::new(Outcome::Promoted, format!("promoted {from} → {to}"), reason);
        // A run taken over during its first hour carries the watch on until the recorded end.
        let watch = match resumed_at {
            ResumeAt::Watch => Some(self.first_hour.unwrap_or(Duration::from_secs(3600))),
            _ => self.first_hour,
        };
        match watch {
            Some(duration) if !self.dry_run => self.watch_first_hour(duration, promoted).await,
            _ => promoted,
        }
    }

    /// The checklist's first-hour monitoring: production watched with the `[first_hour]`
    /// thresholds (the other triggers armed as configured) against the pre-rollout baseline.
    async fn watch_first_hour(&mut self, duration: Duration, promoted: End) -> End {
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
            Outcome::Passed => "healthy",
            Outcome::RolledBack => "breached",
            _ => "interrupted",
        };
        self.state.first_hour = Some(crate::report::FirstHourReport {
            duration,
            watched,
            status: status.into(),
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

    /// Takes a recorded run's facts over and says where it carries on.
    async fn restore(&mut self, record: &crate::runstate::RunRecord) -> ResumeAt {
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

    /// `watch` after a recorded promotion: its pre-rollout baseline, not one sampled now.
    async fn adopt_recorded_baseline(&mut self) {
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

    /// The end of a run whose phase stopped without a decision: interrupted, or taken over.
    async fn stopped_end(&mut self, phase: Phase) -> End {
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
    async fn wait_gate(&mut self) -> Result<(), End> {
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

    fn aborted_before(&self, reason: String) -> End {
        if self.dry_run {
            let v = format!(
                "would abort at T+{} because {reason}",
                human(self.elapsed())
            );
            return End::new(Outcome::DryRun, v, Some(reason));
        }
        End::new(
            Outcome::Aborted,
            "aborted before promotion; production untouched",
            Some(reason),
        )
    }

    async fn run_rollback(&mut self, reason: String) -> End {
        if let Err(e) = self.resolve_versions().await {
            return End::new(Outcome::Error, "could not read the deployments", Some(e));
        }
        self.roll_back(reason).await
    }

    async fn run_watch(&mut self, duration: Duration) -> End {
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

    // === phases ===

    async fn run_phase(&mut self, phase: Phase) -> Decision {
        let started = self.clock.now();
        self.state.phase_times.insert(phase, (started, None));
        self.emit(Event::Phase { phase, at: started });
        let queries = queries_for_phase(&self.config, phase, self.workers.is_some());
        let judged = phase == Phase::Pre && self.config.judged_checks().next().is_some();
        loop {
            let judge_window = judged.then(|| engine::judge_window(&self.config, self.elapsed()));
            let mut tick_queries = queries.clone();
            if let Some(w) = judge_window {
                tick_queries.extend(engine::judge_queries(&self.config, w));
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

    fn trigger_reports(&self) -> Vec<TriggerReport> {
        let h = &self.state.history;
        self.config
            .triggers
            .iter()
            .map(|spec| {
                let st = h.triggers.get(spec.id);
                let last = st.and_then(|s| s.last.as_ref());
                let status = if !spec.enabled {
                    "disabled"
                } else if st.is_some_and(|s| s.fired_at.is_some()) {
                    "fired"
                } else if st.is_some_and(|s| s.held_since.is_some()) {
                    "holding"
                } else if last.is_some() {
                    "clear"
                } else {
                    "not_evaluated"
                };
                TriggerReport {
                    id: spec.id.into(),
                    title: spec.title.into(),
                    status: status.into(),
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

    fn trigger_samples(&self) -> Vec<(&'static str, Sample)> {
        self.config
            .triggers
            .iter()
            .filter_map(|t| Some((t.id, self.state.history.triggers.get(t.id)?.last.clone()?)))
            .collect()
    }

    fn capture_baseline(&mut self, snap: &Snapshot) {
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

    async fn execute(&mut self) -> Result<(), End> {
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
            self.state.history.record_check("exec.image_updated", s);
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
                self.state.history.record_check("exec.image_updated", s);
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
                    .check("exec.image_updated")
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

    async fn finalise(&mut self) {
        let at = self.clock.now();
        self.state.phase_times.insert(Phase::Final, (at, None));
        self.emit(Event::Phase {
            phase: Phase::Final,
            at,
        });
        let plan = self.finalise_plan();
        let samples: Vec<(&'static str, Sample)> = match (&plan, self.dry_run) {
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
                    "final.version_file",
                    "final.commit",
                    "final.tag",
                    "final.push",
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
                "final.version_file",
                "final.commit",
                "final.tag",
                "final.push",
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

    async fn cleanup(&mut self) {
        let at = self.clock.now();
        self.state.phase_times.insert(Phase::Cleanup, (at, None));
        let id = "cleanup.canary_scaled_down";
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

    // === rollback ===

    async fn roll_back(&mut self, reason: String) -> End {
        self.roll_back_with(reason, true).await
    }

    /// Rolls back; `undo` false when production already runs its previous image (a resumed
    /// rollback whose undo had been applied) and only readiness is awaited.
    async fn roll_back_with(&mut self, reason: String, undo: bool) -> End {
        let started = self.clock.now();
        if self.dry_run {
            let verdict = format!(
                "would roll back at T+{} because {reason}",
                human(self.elapsed())
            );
            self.action(format!("dry run: {verdict}"));
            return End::new(Outcome::DryRun, verdict, Some(reason));
        }
        let mut steps = Vec::new();
        self.set_stage(Stage::RollingBack, format!("rolling back: {reason}"))
            .await;
        self.action(format!("roll back production: {reason}"));
        let mut ready = false;
        let undone = if undo {
            self.platform.undo(Variant::Production).await
        } else {
            steps.push("production already runs its previous image (undo applied earlier)".into());
            Ok(())
        };
        match undone {
            Err(e) => steps.push(format!("undo failed: {e}")),
            Ok(()) => {
                if undo {
                    steps.push("undo production to the previous revision".into());
                }
                ready = self.wait_production_ready(&mut steps).await;
            }
        }
        if !ready {
            // The seed's fallback: scale to 0 and back up.
            let replicas = self
                .platform
                .replicas(Variant::Production)
                .await
                .unwrap_or(1)
                .max(1);
            self.action(format!(
                "rollback fallback: scale production to 0 and back to {replicas}"
            ));
            let r = async {
                self.platform.scale(Variant::Production, 0).await?;
                self.platform.scale(Variant::Production, replicas).await
            }
            .await;
            match r {
                Ok(()) => {
                    steps.push(format!("scaled production to 0 and back to {replicas}"));
                    ready = self.wait_production_ready(&mut steps).await;
                }
                Err(e) => steps.push(format!("scale fallback failed: {e}")),
            }
        }
        let mut canary_down = false;
        if self.config.scale_down_canary_on_rollback {
            self.action("scale the canary to 0".into());
            match self.platform.scale(Variant::Test, 0).await {
                Ok(()) => {
                    canary_down = true;
                    steps.push("scaled the canary to 0".into());
                }
                Err(e) => steps.push(format!("scaling the canary down failed: {e}")),
            }
        }
        let production_image = self.platform.image(Variant::Production).await.ok();
        self.state.rollback = Some(RollbackReport {
            reason: reason.clone(),
            started_at: started,
            finished_at: self.clock.now(),
            production_ready: ready,
            production_image,
            canary_scaled_down: canary_down,
            steps,
        });
        let verdict = if ready {
            "rolled back; production ready and healthy on the previous version".to_owned()
        } else {
            "rollback attempted but production is NOT ready — intervene by hand".to_owned()
        };
        End::new(Outcome::RolledBack, verdict, Some(reason))
    }

    /// Waits until the production rollout is complete, every pod Ready, and every reachable
    /// pod answers /health; false after `rollback_timeout`.
    async fn wait_production_ready(&mut self, steps: &mut Vec<String>) -> bool {
        let start = self.clock.now();
        loop {
            let status = self.platform.rollout_status(Variant::Production).await;
            let pods = self.platform.list_pods(Variant::Production).await;
            let mut why = String::new();
            let mut ok = false;
            match (&status, &pods) {
                (Ok(s), Ok(pods))
                    if s.complete && !pods.is_empty() && pods.iter().all(|p| p.ready) =>
                {
                    ok = true;
                    for p in pods.iter().filter(|p| p.base_url.is_some()) {
                        match self
                            .platform
                            .pod_get(p, "/health", self.config.http_timeout)
                            .await
                        {
                            Ok(r) if r.status == 200 => {}
                            Ok(r) => {
                                ok = false;
                                why = format!("{} /health answered {}", p.name, r.status);
                            }
                            Err(e) => {
                                ok = false;
                                why = e.to_string();
                            }
                        }
                    }
                }
                (Ok(s), Ok(pods)) => {
                    why = format!(
                        "{}; {}/{} pods Ready",
                        s.message,
                        pods.iter().filter(|p| p.ready).count(),
                        pods.len()
                    )
                }
                (Err(e), _) | (_, Err(e)) => why = e.to_string(),
            }
            let waited = (self.clock.now() - start)
                .to_std()
                .unwrap_or(Duration::ZERO);
            self.emit(Event::Tick {
                phase: None,
                at: self.clock.now(),
                elapsed: self.elapsed(),
                checks: Vec::new(),
                triggers: Vec::new(),
                waiting: if ok {
                    Vec::new()
                } else {
                    vec![format!("rollback: {why}")]
                },
                time_left: Some(self.config.rollback_timeout.saturating_sub(waited)),
            });
            if ok {
                steps.push(format!(
                    "production ready and healthy after {}",
                    human(waited)
                ));
                return true;
            }
            if waited >= self.config.rollback_timeout {
                steps.push(format!(
                    "production not ready after {}: {why}",
                    human(self.config.rollback_timeout)
                ));
                return false;
            }
            // A rollback is not interrupted; the lease is still renewed.
            self.save().await;
            self.clock.sleep(self.config.interval).await;
        }
    }

    // === IO: snapshots ===

    async fn collect(&mut self, phase: Option<Phase>, queries: &[SignalQuery]) -> Snapshot {
        let now = self.clock.now();
        let mut snap = Snapshot {
            at: now,
            ..Snapshot::default()
        };
        let mut all_pods = Vec::new();
        for v in Variant::ALL {
            let pods = self.platform.list_pods(v).await.map_err(|e| e.to_string());
            if let Ok(p) = &pods {
                all_pods.extend(p.iter().cloned());
            }
            snap.pods.insert(v, pods);
            snap.images
                .insert(v, self.platform.image(v).await.map_err(|e| e.to_string()));
        }
        if matches!(phase, None | Some(Phase::Rollout) | Some(Phase::Post)) {
            snap.rollout = Some(
                self.platform
                    .rollout_status(Variant::Production)
                    .await
                    .map_err(|e| e.to_string()),
            );
        }
        if let Err(e) = self.signals.refresh(&all_pods, now).await {
            tracing::warn!(error = %e, "signal source refresh failed");
        }
        for q in queries {
            let m = self.signals.measure(q, now).await;
            snap.measurements.insert(*q, m);
        }
        if phase == Some(Phase::Pre) {
            if self
                .config
                .check("pre.no_canary_alerts")
                .is_some_and(|c| c.enabled)
            {
                snap.alerts = Some(self.signals.alerts(now).await.map_err(|e| e.to_string()));
            }
            let window = self
                .config
                .check("pre.token_usage_logged")
                .map(|c| c.window)
                .unwrap_or(Duration::from_secs(600));
            let since = crate::duration_serde::minus(now, window);
            snap.logs.insert(
                Variant::Test,
                self.platform
                    .logs_since(Variant::Test, since)
                    .await
                    .map_err(|e| e.to_string()),
            );
            if let Some(Ok(pods)) = snap.pods.get(&Variant::Test) {
                for p in pods.clone() {
                    let r = match self
                        .platform
                        .pod_get(&p, "/health", self.config.http_timeout)
                        .await
                    {
                        Err(e @ crate::Error::PodUnreachable { .. }) => {
                            snap.health_unreachable = Some(e.to_string());
                            break;
                        }
                        r => r.map_err(|e| e.to_string()),
                    };
                    snap.health.insert(p.name.clone(), r);
                }
            }
        }
        if phase == Some(Phase::Post) {
            let since = self
                .state
                .ctx
                .rollout_started
                .unwrap_or(self.state.started_at);
            snap.logs.insert(
                Variant::Production,
                self.platform
                    .logs_since(Variant::Production, since)
                    .await
                    .map_err(|e| e.to_string()),
            );
        }
        if let Some(w) = &self.workers {
            snap.workers = Some(Variant::ALL.iter().map(|v| (*v, w.stats(*v))).collect());
        }
        snap
    }

    // === report ===

    fn build_report(&self, mode: &Mode, end: End) -> Report {
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
                                spec.id, spec.title, last, c.count, c.first_at,
                            ),
                            None if !spec.enabled => {
                                let mut r = CheckReport::pending(spec.id, spec.title);
                                r.status = Status::Skipped;
                                r.evidence.push("disabled in configuration".into());
                                r
                            }
                            None => CheckReport::pending(spec.id, spec.title),
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
            sign_off: SignOff {
                by: self.operator.clone(),
                host: self.host.clone(),
                platform: self.platform.location(),
                at: decided_at,
            },
        }
    }
}

fn engine_observe(
    config: &Config,
    ctx: &RunContext,
    history: &mut History,
    snap: &Snapshot,
) -> Vec<&'static str> {
    crate::engine::observe_triggers(config, ctx, history, snap)
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

/// Order of resume points (phases run from the resume point on).
fn rank(at: ResumeAt) -> u8 {
    match at {
        ResumeAt::Exec => 0,
        ResumeAt::Rollout => 1,
        ResumeAt::Post => 2,
        ResumeAt::Final => 3,
        ResumeAt::Watch => 4,
        ResumeAt::RollBack { .. } => 5,
    }
}

/// A run id: start time and a per-process counter (two promoters in one process differ).
fn new_run_id(now: DateTime<Utc>) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn human(d: Duration) -> String {
    crate::duration_serde::human(d)
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}
