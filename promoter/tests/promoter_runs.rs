//! Whole runs of the driver against the in-memory platform, a scripted signal source and a
//! manual clock: promotion (with finalisation in a temporary git repo), rollback on a crash
//! loop, dry run, check, rollback and watch modes.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use zai_promoter::engine::Status;
use zai_promoter::platform::Variant::{Production as P, Test as T};
use zai_promoter::signals::{Reading, Signal};
use zai_promoter::{Config, ManualClock, Mode, Outcome, Promoter, Report};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["config", "user.name", "Test"]);
    git(
        dir.path(),
        &["config", "user.email", "test@example.invalid"],
    );
    std::fs::write(dir.path().join("VERSION"), "1.2.1-canary\n").unwrap();
    git(dir.path(), &["add", "VERSION"]);
    git(dir.path(), &["commit", "-q", "-m", "canary"]);
    dir
}

fn config(repo: Option<&Path>) -> Config {
    let mut text = String::from("interval = \"10s\"\npost_min_duration = \"30s\"\n");
    if let Some(r) = repo {
        text.push_str(&format!(
            "[finalise]\nrepo = {:?}\n",
            r.display().to_string()
        ));
    }
    Config::from_toml(&text).unwrap()
}

struct Run {
    platform: FakePlatform,
    script: Script,
    events: Arc<Mutex<Vec<String>>>,
}

impl Run {
    fn new() -> Self {
        let script = Script::default();
        script.healthy(P, 0.2);
        script.healthy(T, 0.2);
        Run {
            platform: FakePlatform::new("1.2.0", "1.2.1-canary"),
            script,
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn promoter(&self, config: Config) -> Promoter {
        let events = self.events.clone();
        Promoter::new(
            config,
            Arc::new(self.platform.clone()),
            Box::new(ScriptedSignals(self.script.clone())),
            Arc::new(ManualClock::new(t0())),
        )
        .operator("tester")
        .on_event(move |e| events.lock().unwrap().push(format!("{e:?}")))
    }
}

fn check<'a>(r: &'a Report, id: &str) -> &'a zai_promoter::report::CheckReport {
    r.all_checks().map(|(_, c)| c).find(|c| c.id == id).unwrap()
}

#[tokio::test]
async fn promotes_finalises_and_scales_the_canary_down() {
    let repo = repo();
    let run = Run::new();
    let report = run
        .promoter(config(Some(repo.path())))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Promoted, "{report:#?}");
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.from_version.as_deref(), Some("1.2.0"));
    assert_eq!(report.to_version.as_deref(), Some("1.2.1"));
    assert_eq!(run.platform.get(P).image, "ronaldraygun/zai-proxy:1.2.1");
    assert_eq!(run.platform.get(T).replicas, 0);
    assert_eq!(
        report.baseline.p95(std::time::Duration::from_secs(300)),
        Some(0.2)
    );
    for (_, c) in report.all_checks() {
        // The in-memory platform replaces every pod at once: no old-version request to
        // compare the new version's with.
        let not_evaluated = c.id == "rollout.new_version_errors"
            && c.status == Status::Skipped
            && c.evidence.iter().any(|e| e.starts_with("not evaluated"));
        assert!(
            matches!(c.status, Status::Pass) || c.id == "final.push" || not_evaluated,
            "{} is {:?}: {:?}",
            c.id,
            c.status,
            c.evidence
        );
    }
    assert_eq!(check(&report, "final.push").status, Status::Skipped);
    assert_eq!(
        std::fs::read_to_string(repo.path().join("VERSION")).unwrap(),
        "1.2.1\n"
    );
    assert!(
        git(repo.path(), &["log", "-1", "--format=%s"]).contains("chore: release zai-proxy v1.2.1")
    );
    assert_eq!(
        git(repo.path(), &["cat-file", "-t", "v1.2.1"]).trim(),
        "tag"
    );
    assert!(
        report
            .triggers
            .iter()
            .all(|t| t.status == zai_promoter::report::TriggerStatus::Clear),
        "{:?}",
        report.triggers
    );
    assert!(!run.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_crash_looping_version_is_rolled_back_and_production_restored() {
    let run = Run::new();
    run.platform
        .behaviour
        .lock()
        .unwrap()
        .insert("1.2.1".into(), (false, true));
    let report = run.promoter(config(None)).run(Mode::Promote).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert_eq!(report.exit_code(), 3);
    let calls = run.platform.calls();
    assert_eq!(
        calls[0],
        "set_image production ronaldraygun/zai-proxy:1.2.1"
    );
    assert!(calls.contains(&"undo production".to_owned()), "{calls:?}");
    assert_eq!(run.platform.get(P).image, "ronaldraygun/zai-proxy:1.2.0");
    assert_eq!(run.platform.get(T).replicas, 0);
    let rb = report.rollback.as_ref().unwrap();
    assert!(rb.production_ready);
    assert!(rb.reason.contains("trigger.crash_loop"), "{}", rb.reason);
    let t = report
        .triggers
        .iter()
        .find(|t| t.id == "trigger.crash_loop")
        .unwrap();
    assert_eq!(t.status, zai_promoter::report::TriggerStatus::Fired);
    assert!(t.fired_at.is_some() && t.first_seen.is_some());
    // Phase 5 never ran.
    assert_eq!(check(&report, "final.version_file").status, Status::Pending);
}

#[tokio::test]
async fn dry_run_changes_nothing_and_says_when_it_would_roll_back() {
    let run = Run::new();
    let report = run
        .promoter(config(None))
        .dry_run(true)
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::DryRun);
    assert!(
        report.verdict.starts_with("would promote 1.2.0 → 1.2.1"),
        "{}",
        report.verdict
    );
    assert_eq!(report.exit_code(), 0);
    assert!(
        run.platform.calls().is_empty(),
        "{:?}",
        run.platform.calls()
    );

    // Errors at 30 % in production: would roll back after 2 minutes of it.
    let run = Run::new();
    run.script.set(Signal::ErrorRatio, P, Reading::Value(0.3));
    run.script.set(Signal::SuccessRatio, P, Reading::Value(0.7));
    let report = run
        .promoter(config(None))
        .dry_run(true)
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::DryRun);
    assert!(
        report.verdict.starts_with("would roll back at T+"),
        "{}",
        report.verdict
    );
    assert!(
        report.verdict.contains("trigger.error_rate"),
        "{}",
        report.verdict
    );
    assert_eq!(report.exit_code(), 3);
    assert!(run.platform.calls().is_empty());

    // A canary without token metrics: would abort in phase 1.
    let run = Run::new();
    run.script.set(Signal::TokenSeries, T, Reading::Value(0.0));
    let report = run
        .promoter(config(None))
        .dry_run(true)
        .run(Mode::Promote)
        .await;
    assert!(
        report
            .verdict
            .starts_with("would abort at T+0s because pre.token_metrics_exported"),
        "{}",
        report.verdict
    );
    assert_eq!(report.exit_code(), 2);
    assert!(run.platform.calls().is_empty());
}

#[tokio::test]
async fn check_mode_aborts_on_an_unready_canary_without_touching_anything() {
    let run = Run::new();
    run.platform
        .state
        .lock()
        .unwrap()
        .get_mut(&T)
        .unwrap()
        .healthy = false;
    let report = run.promoter(config(None)).run(Mode::Check).await;
    assert_eq!(report.outcome, Outcome::Aborted);
    assert_eq!(report.exit_code(), 2);
    assert_eq!(report.phases.len(), 1);
    assert_eq!(check(&report, "pre.canary_pods_ready").status, Status::Fail);
    assert!(run.platform.calls().is_empty());

    let run = Run::new();
    let report = run.promoter(config(None)).run(Mode::Check).await;
    assert_eq!(report.outcome, Outcome::Passed, "{:?}", report.reason);
}

#[tokio::test]
async fn a_dirty_work_tree_or_existing_tag_is_refused_before_any_change() {
    let repo = repo();
    std::fs::write(repo.path().join("stray.txt"), "x").unwrap();
    let run = Run::new();
    let report = run
        .promoter(config(Some(repo.path())))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Error);
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.reason.as_deref().unwrap().contains("dirty"),
        "{:?}",
        report.reason
    );
    assert!(run.platform.calls().is_empty());

    let repo = self::repo();
    git(repo.path(), &["tag", "-a", "v1.2.1", "-m", "old"]);
    let run = Run::new();
    let report = run
        .promoter(config(Some(repo.path())))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Error);
    assert!(
        report.reason.as_deref().unwrap().contains("already exists"),
        "{:?}",
        report.reason
    );
    assert!(run.platform.calls().is_empty());
}

#[tokio::test]
async fn no_traffic_on_the_canary_aborts_at_the_no_data_deadline() {
    let run = Run::new();
    run.script
        .set(Signal::RequestCount, T, Reading::Value(10.0));
    let report = run.promoter(config(None)).run(Mode::Promote).await;
    assert_eq!(report.outcome, Outcome::Aborted);
    let reason = report.reason.unwrap();
    assert!(reason.contains("no_data_deadline"), "{reason}");
    assert_eq!((report.decided_at - report.started_at).num_seconds(), 600);
    assert!(run.platform.calls().is_empty());
}

#[tokio::test]
async fn rollback_and_watch_modes() {
    let run = Run::new();
    run.platform
        .state
        .lock()
        .unwrap()
        .get_mut(&P)
        .unwrap()
        .history = vec![("ronaldraygun/zai-proxy:1.1.0".into(), "1.1.0".into())];
    let report = run
        .promoter(config(None))
        .run(Mode::Rollback {
            reason: "manual".into(),
        })
        .await;
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(run.platform.get(P).version, "1.1.0");
    assert_eq!(report.rollback.unwrap().reason, "manual");

    let run = Run::new();
    let report = run
        .promoter(config(None))
        .run(Mode::Watch {
            duration: std::time::Duration::from_secs(120),
        })
        .await;
    assert_eq!(report.outcome, Outcome::Passed, "{:?}", report.reason);
    assert!(run.platform.calls().is_empty());

    // Watch with production failing: rolls back.
    let run = Run::new();
    run.platform
        .state
        .lock()
        .unwrap()
        .get_mut(&P)
        .unwrap()
        .history = vec![("ronaldraygun/zai-proxy:1.1.0".into(), "1.1.0".into())];
    run.script.set(Signal::ErrorRatio, P, Reading::Value(0.5));
    let report = run
        .promoter(config(None))
        .run(Mode::Watch {
            duration: std::time::Duration::from_secs(3600),
        })
        .await;
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert!(report.reason.unwrap().contains("trigger.error_rate"));
}

#[tokio::test]
async fn the_p95_baseline_is_captured_before_the_image_changes() {
    let run = Run::new();
    let script = run.script.clone();
    *run.platform.on_set_image.lock().unwrap() = Some(Box::new(move || {
        script.set(
            Signal::LatencyQuantile { permille: 950 },
            P,
            Reading::Value(0.5),
        );
    }));
    let report = run.promoter(config(None)).run(Mode::Promote).await;
    assert_eq!(
        report.baseline.p95(std::time::Duration::from_secs(60)),
        Some(0.2)
    );
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    let t = report
        .triggers
        .iter()
        .find(|t| t.id == "trigger.p95_latency")
        .unwrap();
    assert_eq!(t.status, zai_promoter::report::TriggerStatus::Fired);
    // Held for the full 2 minutes from the first bad sample.
    assert_eq!(
        (t.fired_at.unwrap() - t.first_seen.unwrap()).num_seconds(),
        120
    );
    assert!(t.observed.contains("+150%"), "{}", t.observed);
    assert_eq!(check(&report, "rollout.p95_latency").status, Status::Fail);
}

#[tokio::test]
async fn a_canary_that_does_not_scale_down_fails_cleanup_but_stays_promoted() {
    let run = Run::new();
    *run.platform.scale_ignored.lock().unwrap() = true;
    let report = run.promoter(config(None)).run(Mode::Promote).await;
    assert_eq!(report.outcome, Outcome::Promoted);
    let c = check(&report, "cleanup.canary_scaled_down");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(c.observed, "1 replicas");
    assert!(
        report
            .reason
            .unwrap()
            .contains("cleanup.canary_scaled_down")
    );
}
