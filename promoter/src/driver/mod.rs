//! The driver: runs the phases against a platform and a signal source, doing the IO the engine
//! does not, and builds the report.
//!
//! Here: the [`Promoter`] and its modes (`check`, `promote`/`resume`, `rollback`, `watch`). By
//! responsibility: `phases` (the tick loop, the image change, finalisation, clean-up),
//! `rollback`, `watch` (and the first hour), `resume` (taking a recorded run over, the gate,
//! how a stopped run ends), `record` (the run record's IO and the lease), `interrupt`,
//! `collect` (one snapshot per tick) and `report`.
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

mod collect;
mod interrupt;
mod phases;
mod record;
mod report;
mod resume;
mod rollback;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::catalog::{CheckId, CleanupCheck, FinalCheck, Phase, TriggerId};
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::{
    self, Decision, History, RunContext, Sample, Snapshot, Status, baseline_queries,
    queries_for_phase,
};
use crate::finalise::{self, Finalise};
use crate::platform::{Platform, Variant, image_tag, stable_version, with_tag};
use crate::report::{
    ActionRecord, CheckReport, FirstHourStatus, Outcome, PhaseReport, Report, RollbackReport,
    SignOff, TriggerReport, TriggerStatus,
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
        checks: Vec<(CheckId, Sample)>,
        /// Trigger condition samples (phases 3–4, watch).
        triggers: Vec<(TriggerId, Sample)>,
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
    signal_gaps: Vec<crate::report::SignalGap>,
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
            CheckId::Final(FinalCheck::VersionFile),
            CheckId::Final(FinalCheck::Commit),
            CheckId::Final(FinalCheck::Tag),
            CheckId::Final(FinalCheck::Push),
            CheckId::Cleanup(CleanupCheck::CanaryScaledDown),
        ]
        .iter()
        .filter_map(|id| {
            let last = self.state.history.check(*id)?.last()?;
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
}

fn engine_observe(
    config: &Config,
    ctx: &RunContext,
    history: &mut History,
    snap: &Snapshot,
) -> Vec<TriggerId> {
    crate::engine::observe_triggers(config, ctx, history, snap)
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
