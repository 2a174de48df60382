//! Runs one scenario end to end: environment up, workers on, the real promoter engine run
//! through its `KubePlatform` against the cluster's API server (the simulated one, or a real
//! cluster on kind — the driver sees both through [`Rig`]), fake-upstream faults switched when
//! production's image changes, then the verdict checked against the scenario's expectation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zai_promoter::engine::Status;
use zai_promoter::signals::prometheus::PrometheusSource;
use zai_promoter::signals::scrape::ScrapeSource;
use zai_promoter::{
    Mode, Platform, Promoter, Report, SignalSource, SystemClock, Variant, WorkerSignals,
    WorkerStats,
};

use super::interrupt;
use super::prometheus::{NAMESPACE, PrometheusServer};
use super::rig::{LiveTargets, Rig};
use super::scenario::{ExpectedOutcome, NEW_VERSION, OLD_VERSION, Scenario};
use super::seeds::ScenarioSeeds;
use super::stack::{RuntimeChoice, Stack, git, image, kube_settings_in};
use super::timing::TimeScale;
use crate::Error;
use crate::platform::PlatformEvent;
use crate::service::Route;
use crate::workers::{self, LoadMode, Target, WorkersConfig};

/// Where the metric signals come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalsChoice {
    /// The promoter scrapes each pod's `/metrics` itself.
    Scrape,
    /// A real Prometheus binary on loopback (started per scenario).
    Prometheus,
}

/// Settings shared by every scenario of a run.
pub struct RunOptions {
    /// Time compression.
    pub time: TimeScale,
    /// Signal source.
    pub signals: SignalsChoice,
    /// Where each scenario's promoter report goes (`<dir>/<scenario>/report.json`).
    pub report_dir: PathBuf,
    /// The run's seed; each scenario's process seeds derive from it and the scenario's name.
    pub seed: u64,
}

/// Worker counts of one scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerTotals {
    /// Requests sent.
    pub sent: u64,
    /// Answered 2xx with a complete body.
    pub ok: u64,
    /// Anything else (HTTP errors, lost, timeouts).
    pub failed: u64,
    /// Transport errors + truncated answers.
    pub lost: u64,
}

/// The result of one scenario (one entry of `rehearsal.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// Expected outcome.
    pub expected: String,
    /// The promoter's outcome (`promoted`, `aborted`, `rolled_back`, `error`).
    pub outcome: String,
    /// Expectation met.
    pub passed: bool,
    /// From the promoter's start to its decision.
    pub decision_seconds: f64,
    /// Worker counts over the whole run.
    pub workers: WorkerTotals,
    /// Worker outcomes by label (`ok`, `http_503`, `transport_error`, …).
    pub outcomes: std::collections::BTreeMap<String, u64>,
    /// The promoter's report.json (report.md and junit.xml beside it).
    pub report: PathBuf,
    /// The kubeconfig the promoter used: the scenario's simulated cluster (its API server is
    /// gone after the run unless `zai-rehearse --hold` kept it), or on kind one with the
    /// token of the scenario namespace's `zai-promoter` ServiceAccount (valid while the
    /// namespace exists).
    #[serde(default)]
    pub kubeconfig: PathBuf,
    /// Checks that failed and triggers that fired.
    pub decided_by: Vec<String>,
    /// The promoter's verdict sentence.
    pub verdict: String,
    /// Why it ended that way (failed check, fired trigger, deadline), if not a success.
    pub reason: Option<String>,
    /// Why the expectation was not met (empty when passed).
    pub problems: Vec<String>,
    /// Wall time of the whole scenario, set-up and tear-down included.
    pub wall_seconds: f64,
    /// The seeds of this run (`--seed {seeds.run}` replays it).
    #[serde(default)]
    pub seeds: ScenarioSeeds,
}

impl ScenarioResult {
    /// Whether one of `ids` decided the run.
    pub fn decided_by_any(&self, ids: &[&str]) -> bool {
        self.decided_by.iter().any(|d| ids.contains(&d.as_str()))
    }

    /// A run that could not be carried out (set-up failed): a failed run with the error as
    /// its problem, so `--repeat` counts it instead of stopping.
    pub fn not_run(scenario: &Scenario, seeds: ScenarioSeeds, error: &str) -> ScenarioResult {
        ScenarioResult {
            name: scenario.name.clone(),
            expected: scenario.expect.outcome.label().to_owned(),
            outcome: "not_run".to_owned(),
            passed: false,
            decision_seconds: 0.0,
            workers: WorkerTotals::default(),
            outcomes: std::collections::BTreeMap::new(),
            report: PathBuf::new(),
            kubeconfig: PathBuf::new(),
            decided_by: Vec::new(),
            verdict: format!("could not run: {error}"),
            reason: Some(error.to_owned()),
            problems: vec![format!("could not run: {error}")],
            wall_seconds: 0.0,
            seeds,
        }
    }
}

/// Worker outcomes per variant for the promoter (`production`/`test` targets).
struct WorkerFeed {
    live: Arc<dyn LiveTargets>,
}

impl WorkerSignals for WorkerFeed {
    fn stats(&self, variant: Variant) -> WorkerStats {
        let snapshot = self.live.target(variant.label()).unwrap_or_default();
        WorkerStats {
            sent: snapshot.completed(),
            ok: snapshot.ok,
            failed: snapshot.failed(),
        }
    }
}

/// Runs one scenario on the given runtime.
pub async fn run_scenario(
    scenario: &Scenario,
    choice: RuntimeChoice,
    options: &RunOptions,
) -> Result<ScenarioResult, Error> {
    run_scenario_then(scenario, choice, options, |_| std::future::ready(())).await
}

/// How to look at a scenario's cluster while `--hold` keeps it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldView {
    /// The kubeconfig the promoter used.
    pub kubeconfig: PathBuf,
    /// A kubectl command line (without a verb) that sees the scenario's namespace with
    /// enough rights to list everything.
    pub kubectl: String,
}

/// Runs one scenario and awaits `before_shutdown` (told how to look at the cluster) before
/// its cluster is torn down: `zai-rehearse --hold` waits for Ctrl-C there.
pub async fn run_scenario_then<F, Fut>(
    scenario: &Scenario,
    choice: RuntimeChoice,
    options: &RunOptions,
    before_shutdown: F,
) -> Result<ScenarioResult, Error>
where
    F: FnOnce(HoldView) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let wall = Instant::now();
    let seeds = ScenarioSeeds::derive(options.seed, &scenario.name);
    let kubeconfig = options.report_dir.join(&scenario.name).join("kubeconfig");
    let stack = Stack::start(scenario, choice, options.time, &kubeconfig, &seeds).await?;
    let result = drive(scenario, &stack, options, &seeds).await;
    before_shutdown(HoldView {
        kubectl: format!("kubectl --kubeconfig {}", kubeconfig.display()),
        kubeconfig,
    })
    .await;
    stack.shutdown().await;
    let mut result = result?;
    result.wall_seconds = wall.elapsed().as_secs_f64();
    Ok(result)
}

/// Runs `scenario` on a started environment: workers, promoter, phase switch, verdict.
pub(crate) async fn drive(
    scenario: &Scenario,
    stack: &dyn Rig,
    options: &RunOptions,
    seeds: &ScenarioSeeds,
) -> Result<ScenarioResult, Error> {
    let time = options.time;
    let mut config = time
        .promoter_config(&stack.repo_path(), &scenario.disable)
        .map_err(Error::Setup)?;
    config.kube = kube_settings_in(stack.namespace());
    if let Some(secs) = scenario.judge_deadline_secs {
        config.judge.deadline = Duration::from_secs(secs);
    }
    stack.adjust(&mut config);
    let platform = stack.platform();

    // Workers: open loop over the three services.
    let load = &scenario.load;
    let mut targets = Vec::new();
    for (label, route, weight) in [
        ("split", Route::Split, load.split),
        (
            "production",
            Route::Variant(Variant::Production),
            load.production,
        ),
        ("test", Route::Variant(Variant::Test), load.test),
    ] {
        if weight > 0.0 {
            let base = format!("{}/api/anthropic", stack.service_url(route));
            let mut target = Target::from_base(label, &base, workers::DEFAULT_OPENAI_PATH)
                .map_err(|e| Error::Setup(e.to_string()))?;
            target.weight = weight;
            targets.push(target);
        }
    }
    let workers_config = WorkersConfig {
        targets,
        api_key: "proxy-handles-auth".to_owned(),
        mode: LoadMode::Open {
            rate: load.rate,
            max_in_flight: load.max_in_flight,
        },
        duration: None,
        requests: None,
        stream_fraction: load.stream_fraction,
        openai_fraction: 0.3,
        request_timeout: Duration::from_secs(30),
        seed: seeds.workers,
    };
    let handle = stack.spawn_workers(workers_config).await?;
    let feed = Arc::new(WorkerFeed {
        live: handle.live(),
    });

    // Phase switch: the rollout faults apply from production's image change on.
    let mut events = stack.events();
    let rollout_faults = (
        scenario.faults.old.rollout.clone(),
        scenario.faults.new.rollout.clone(),
    );

    // The canary has been serving, and its metrics collected, before anyone runs the
    // promoter: warm up with traffic while the embedded scraper already samples every pod,
    // so the first windows are not judged on a handful of requests.
    let warm_up = time
        .scale(Duration::from_secs(150))
        .max(Duration::from_secs(2));
    let mut prometheus: Option<PrometheusServer> = None;
    let signals: Box<dyn SignalSource> = match options.signals {
        SignalsChoice::Scrape => {
            let mut source = ScrapeSource::new(
                Arc::clone(&platform) as Arc<dyn Platform>,
                config.scrape_retention(),
                Duration::from_secs(2),
            )
            .with_alert_timing(time.alert_timing());
            let until = Instant::now() + warm_up;
            while Instant::now() < until {
                let mut pods = Vec::new();
                for variant in Variant::ALL {
                    pods.extend(platform.list_pods(variant).await.unwrap_or_default());
                }
                if let Err(e) = source.refresh(&pods, chrono::Utc::now()).await {
                    tracing::debug!(error = %e, "warm-up scrape failed");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Box::new(source)
        }
        SignalsChoice::Prometheus => {
            let Some(cluster) = stack.simulated() else {
                let _ = handle.finish().await;
                return Err(Error::Setup(
                    "--signals prometheus needs the simulated cluster (its Prometheus scrapes the simulated pods on loopback)".to_owned(),
                ));
            };
            let server = PrometheusServer::start(cluster, time).await?;
            tokio::time::sleep(warm_up).await;
            let source = PrometheusSource::new(
                server.url(),
                &format!("namespace=\"{NAMESPACE}\""),
                Duration::from_secs(2),
            )
            .map_err(|e| Error::Setup(e.to_string()))?;
            prometheus = Some(server);
            Box::new(source)
        }
    };
    let name = scenario.name.clone();
    // An interruption scenario runs the promoter binary with the same configuration.
    let mut binary_config = config.clone();
    binary_config.prometheus.selector = format!("namespace=\"{NAMESPACE}\"");
    let binary_signals = match &prometheus {
        Some(p) => vec!["--prometheus-url".to_owned(), p.url().to_owned()],
        None => vec!["--signals".to_owned(), "scrape".to_owned()],
    };
    let mut promoter = Promoter::new(
        config,
        Arc::clone(&platform) as Arc<dyn Platform>,
        signals,
        Arc::new(SystemClock),
    )
    .with_workers(feed)
    .operator("zai-rehearse")
    .on_event(move |event| {
        if let zai_promoter::Event::Action { message, .. } = event {
            tracing::info!(scenario = %name, "{message}");
        }
    });

    let live = handle.live();
    let runs_dir = options
        .report_dir
        .join(&scenario.name)
        .join("promoter-runs");
    let repo = stack.repo_path();
    let run = async {
        match &scenario.interrupt {
            None => Ok((promoter.run(Mode::Promote).await, Vec::new(), Vec::new())),
            Some(plan) => interrupt::run(
                plan,
                &binary_config,
                stack.events(),
                stack.kubeconfig(),
                &repo,
                &runs_dir,
                binary_signals,
                seeds.scenario,
            )
            .await
            .map(|i| (i.report, i.problems, i.runs)),
        }
    };
    tokio::pin!(run);
    // Requests to the canary service after the canary was deliberately scaled to 0 (cleanup)
    // find no endpoint; they are the workers' stale configuration, not a loss of the
    // promotion, and are excluded from the totals.
    let mut canary_gone_at: Option<crate::workers::Snapshot> = None;
    let outcome: Result<(Report, Vec<String>, Vec<String>), Error> = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            event = events.recv() => match event {
                Ok(PlatformEvent::SetImage { variant: Variant::Production, image }) if image.ends_with(NEW_VERSION) => {
                    match stack.set_faults(rollout_faults.0.clone(), rollout_faults.1.clone()).await {
                        Ok(()) => tracing::info!(scenario = %scenario.name, "rollout phase: fake-upstream faults switched"),
                        Err(e) => tracing::warn!(scenario = %scenario.name, error = %e, "rollout phase: switching the fake-upstream faults failed"),
                    }
                }
                Ok(PlatformEvent::Scale { variant: Variant::Test, replicas: 0 }) if canary_gone_at.is_none() => {
                    canary_gone_at = live.target(Variant::Test.label());
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    break (&mut run).await;
                }
            }
        }
    };

    let (report, interrupt_problems, promoter_runs) = match outcome {
        Ok(r) => r,
        Err(e) => {
            let _ = handle.finish().await;
            return Err(e);
        }
    };
    for line in &promoter_runs {
        tracing::info!(scenario = %scenario.name, "{line}");
    }

    // Events sent in the promoter's last poll (e.g. the cleanup's scale-down).
    while let Ok(event) = events.try_recv() {
        if let PlatformEvent::Scale {
            variant: Variant::Test,
            replicas: 0,
        } = event
            && canary_gone_at.is_none()
        {
            canary_gone_at = live.target(Variant::Test.label());
        }
    }

    // Let production settle after the decision (rollback finishing), then stop the workers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let workers_report = handle.finish().await;
    let mut totals = WorkerTotals {
        sent: workers_report.sent,
        ok: workers_report.ok,
        failed: workers_report.failed,
        lost: workers_report.lost,
    };
    if let (Some(at), Some(end)) = (
        canary_gone_at,
        workers_report.targets.get(Variant::Test.label()),
    ) {
        let after = end.since(&at);
        totals.sent = totals.sent.saturating_sub(after.sent);
        totals.ok = totals.ok.saturating_sub(after.ok);
        totals.failed = totals.failed.saturating_sub(after.failed());
        totals.lost = totals.lost.saturating_sub(after.lost());
    }

    drop(prometheus);
    let dir = options.report_dir.join(&scenario.name);
    report
        .write_to(&dir)
        .map_err(|e| Error::Setup(format!("writing the promoter report: {e}")))?;

    let decided_by = decided_by(&report);
    let production_image = platform.image(Variant::Production).await.ok();
    let mut problems = judge(
        scenario,
        &report,
        &decided_by,
        production_image.as_deref(),
        totals,
    );
    if scenario.expect.outcome == ExpectedOutcome::Promoted {
        problems.extend(check_release_repo(&stack.repo_path()));
    }
    if scenario.interrupt.is_some() {
        problems.extend(interrupt_problems);
        // A healthy canary: nothing is lost whatever happens to the promoter.
        if totals.lost > 0 {
            problems.push(format!(
                "{} worker requests lost around an interrupted promoter",
                totals.lost
            ));
        }
        problems.extend(production_settled(&platform).await);
    }
    let decision_seconds = (report.decided_at - report.started_at)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    Ok(ScenarioResult {
        name: scenario.name.clone(),
        expected: scenario.expect.outcome.label().to_owned(),
        outcome: report.outcome.as_str().to_owned(),
        passed: problems.is_empty(),
        decision_seconds,
        workers: totals,
        outcomes: workers_report.outcomes.clone(),
        report: dir.join("report.json"),
        kubeconfig: stack.kubeconfig().to_path_buf(),
        decided_by,
        verdict: report.verdict.clone(),
        reason: report.reason.clone(),
        problems,
        wall_seconds: 0.0,
        seeds: *seeds,
    })
}

/// Production on one version, every pod Ready, the rollout complete.
async fn production_settled(platform: &zai_promoter::platform::kube::KubePlatform) -> Vec<String> {
    let mut problems = Vec::new();
    let pods = platform
        .list_pods(Variant::Production)
        .await
        .unwrap_or_default();
    let images: std::collections::BTreeSet<&str> = pods.iter().map(|p| p.image.as_str()).collect();
    if images.len() != 1 {
        problems.push(format!(
            "production pods run {images:?}, expected one version"
        ));
    }
    if pods.is_empty() || pods.iter().any(|p| !p.ready) {
        let ready = pods.iter().filter(|p| p.ready).count();
        problems.push(format!("{ready} of {} production pods Ready", pods.len()));
    }
    match platform.rollout_status(Variant::Production).await {
        Ok(s) if s.complete => {}
        Ok(s) => problems.push(format!("production rollout not complete: {}", s.message)),
        Err(e) => problems.push(format!("production rollout status: {e}")),
    }
    problems
}

/// Failed checks and fired triggers, in report order.
pub fn decided_by(report: &Report) -> Vec<String> {
    // A run that ended for insufficient evidence was decided by the judged checks that stayed
    // inconclusive.
    let insufficient = report
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("insufficient evidence"));
    let mut ids: Vec<String> = report
        .all_checks()
        .filter(|(_, c)| {
            c.status == Status::Fail || (insufficient && c.status == Status::Inconclusive)
        })
        .map(|(_, c)| c.id.clone())
        .collect();
    ids.extend(
        report
            .triggers
            .iter()
            .filter(|t| t.status == zai_promoter::report::TriggerStatus::Fired)
            .map(|t| t.id.clone()),
    );
    ids
}

fn id_matches(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => id == pattern,
    }
}

/// Compares a run with its expectation; the list of problems is empty when it was met.
pub fn judge(
    scenario: &Scenario,
    report: &Report,
    decided_by: &[String],
    production_image: Option<&str>,
    workers: WorkerTotals,
) -> Vec<String> {
    let mut problems = Vec::new();
    let outcome = report.outcome.as_str();
    let expect = &scenario.expect;
    if !expect.outcome.matches(report.outcome) {
        problems.push(format!(
            "expected {}, got {outcome}: {}",
            expect.outcome.label(),
            report
                .reason
                .clone()
                .unwrap_or_else(|| report.verdict.clone())
        ));
        return problems;
    }
    if !expect.by.is_empty()
        && !decided_by
            .iter()
            .any(|id| expect.by.iter().any(|p| id_matches(p, id)))
    {
        problems.push(format!(
            "decided by [{}], expected one of [{}]",
            decided_by.join(", "),
            expect.by.join(", ")
        ));
    }
    if expect.not_by_deadline {
        let reason = report.reason.clone().unwrap_or_default().to_lowercase();
        if reason.contains("deadline") {
            problems.push(format!("decided by a deadline: {reason}"));
        }
    }
    match outcome {
        "promoted" => {
            if production_image != Some(image(NEW_VERSION).as_str()) {
                problems.push(format!(
                    "production runs {production_image:?} after the promotion"
                ));
            }
            if workers.lost > 0 {
                problems.push(format!(
                    "{} worker requests lost during a healthy promotion",
                    workers.lost
                ));
            }
        }
        "aborted" | "rolled_back" => {
            if production_image != Some(image(OLD_VERSION).as_str()) {
                problems.push(format!(
                    "production runs {production_image:?}, expected {} (untouched or restored)",
                    image(OLD_VERSION)
                ));
            }
            if outcome == "rolled_back"
                && report
                    .rollback
                    .as_ref()
                    .is_some_and(|r| !r.production_ready)
            {
                problems.push("the rollback did not make production ready again".to_owned());
            }
            if outcome == "aborted"
                && report
                    .actions
                    .iter()
                    .any(|a| a.message.contains("set image"))
            {
                problems.push("aborted, yet production's image was changed".to_owned());
            }
        }
        _ => {}
    }
    problems
}

/// VERSION says 1.2.1, the last commit is the release commit, tag v1.2.1 exists.
fn check_release_repo(repo: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match std::fs::read_to_string(repo.join("VERSION")) {
        Ok(text) if text.trim() == NEW_VERSION => {}
        Ok(text) => problems.push(format!(
            "VERSION is {:?}, expected {NEW_VERSION}",
            text.trim()
        )),
        Err(e) => problems.push(format!("VERSION unreadable: {e}")),
    }
    match git(repo, &["log", "-1", "--format=%s"]) {
        Ok(subject) if subject.contains(NEW_VERSION) => {}
        Ok(subject) => problems.push(format!("last commit is {:?}", subject.trim())),
        Err(e) => problems.push(e.to_string()),
    }
    match git(repo, &["tag", "--list", &format!("v{NEW_VERSION}")]) {
        Ok(tags) if tags.trim() == format!("v{NEW_VERSION}") => {}
        Ok(_) => problems.push(format!("tag v{NEW_VERSION} missing")),
        Err(e) => problems.push(e.to_string()),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rehearsal::scenario::builtin;

    fn report(name: &str) -> Report {
        let path = format!(
            "{}/../promoter/tests/golden/{name}.report.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn scenario(name: &str) -> Scenario {
        builtin().into_iter().find(|s| s.name == name).unwrap()
    }

    const CLEAN: WorkerTotals = WorkerTotals {
        sent: 100,
        ok: 100,
        failed: 0,
        lost: 0,
    };

    #[test]
    fn a_met_expectation_has_no_problems() {
        let r = report("promoted");
        let problems = judge(
            &scenario("healthy"),
            &r,
            &decided_by(&r),
            Some(&image(NEW_VERSION)),
            CLEAN,
        );
        assert_eq!(problems, Vec::<String>::new());
    }

    #[test]
    fn mismatches_are_named() {
        // Wrong outcome.
        let r = report("rolled_back");
        let problems = judge(
            &scenario("healthy"),
            &r,
            &decided_by(&r),
            Some(&image(OLD_VERSION)),
            CLEAN,
        );
        assert!(
            problems[0].starts_with("expected promoted, got rolled_back"),
            "{problems:?}"
        );
        // Promoted, but production still on the old image and requests lost.
        let r = report("promoted");
        let lost = WorkerTotals { lost: 3, ..CLEAN };
        let problems = judge(
            &scenario("healthy"),
            &r,
            &decided_by(&r),
            Some(&image(OLD_VERSION)),
            lost,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[1].contains("3 worker requests lost"),
            "{problems:?}"
        );
        // Rolled back, but by another gate than the one that measures the defect.
        let r = report("rolled_back");
        let mut s = scenario("latency-regression");
        s.expect.by = vec!["trigger.no_such_trigger".into()];
        let problems = judge(&s, &r, &decided_by(&r), Some(&image(OLD_VERSION)), CLEAN);
        assert!(
            problems.iter().any(|p| p.starts_with("decided by")),
            "{problems:?}"
        );
    }
}
