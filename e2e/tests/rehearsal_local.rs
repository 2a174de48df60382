//! Every built-in scenario on the local platform (child processes of the real zai-proxy
//! binary, embedded scrape signals), each checked against its expectation: healthy promotes
//! with zero lost worker requests, every defect is caught by the gate that measures it.

use zai_e2e::rehearsal::driver::SignalsChoice;
use zai_e2e::rehearsal::suite::{PlatformKind, run_for_test};
use zai_e2e::rehearsal::{ScenarioResult, builtin};

async fn rehearse(name: &str) -> ScenarioResult {
    let scenario = builtin()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no built-in scenario {name}"));
    let result = run_for_test(
        &scenario,
        PlatformKind::Local,
        SignalsChoice::Scrape,
        &format!("local/{name}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: {} in {:.1}s, workers ok {} failed {} lost {}, decided by {:?}",
        result.outcome,
        result.decision_seconds,
        result.workers.ok,
        result.workers.failed,
        result.workers.lost,
        result.decided_by
    );
    assert!(
        result.passed,
        "{name} missed its expectation: {:?}\n{:#?}",
        result.problems, result
    );
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_promotes_without_losing_a_request() {
    let r = rehearse("healthy").await;
    assert_eq!(r.outcome, "promoted");
    assert_eq!(r.workers.lost, 0);
    assert!(r.workers.ok > 100, "the workers were busy: {:?}", r.workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_errors_abort_in_phase_one() {
    let r = rehearse("canary-errors").await;
    assert_eq!(r.outcome, "aborted");
    assert!(r.workers.failed > 0, "the 5xx were seen by the workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_regression_rolls_back_by_p95() {
    let r = rehearse("latency-regression").await;
    assert!(r.decided_by.iter().any(|id| id == "trigger.p95_latency"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_aborts_on_canary_readiness_or_the_down_alert() {
    // Phase 1 has no restart check: a canary that never starts is caught by its readiness
    // (pre.canary_pods_ready) or the firing ZaiProxyCanaryDeploymentDown; the restart counts
    // are phase 3's rollout.no_crash_loops and trigger.crash_loop.
    let r = rehearse("crash-loop").await;
    assert_eq!(r.outcome, "aborted");
    assert!(
        r.decided_by_any(&["pre.canary_pods_ready", "pre.no_canary_alerts"]),
        "decided by {:?}",
        r.decided_by
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_rolls_back_by_pods_not_ready() {
    let r = rehearse("not-ready").await;
    assert!(r.decided_by.iter().any(|id| id == "trigger.pods_not_ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_counting_off_is_caught() {
    let r = rehearse("token-counting-off").await;
    assert_ne!(r.outcome, "promoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_aborts_by_the_auth_check() {
    let r = rehearse("wrong-key").await;
    assert_eq!(r.outcome, "aborted");
    assert!(
        r.decided_by
            .iter()
            .any(|id| id == "pre.no_upstream_auth_failures"),
        "{:?}",
        r.decided_by
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_only_defect_rolls_back_on_the_new_versions_errors() {
    let r = rehearse("load-only-defect").await;
    // The error trigger once the new version takes all the traffic, or the rollout's
    // comparison of its pod with the old one when both serve long enough for a verdict (run
    // seed 1 of a `--repeat 3` on 2026-12-07: the comparison alone).
    assert!(
        r.decided_by_any(&[
            "trigger.error_rate",
            "trigger.worker_failures",
            "rollout.new_version_errors"
        ]),
        "{:?}",
        r.decided_by
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtle_regression_is_caught_in_phase_one() {
    let r = rehearse("subtle-regression").await;
    assert_eq!(r.outcome, "aborted");
    // The judge, or the absolute 5 % alert when a compressed window's noise crosses it (see
    // the scenario); never a deadline, never another gate.
    assert!(
        r.decided_by_any(&["pre.canary_error_rate", "pre.no_canary_alerts"]),
        "decided by {:?}",
        r.decided_by
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_traffic_does_not_promote_blind() {
    let r = rehearse("low-traffic").await;
    assert_eq!(r.outcome, "aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_cuts_are_caught_by_the_stream_comparison() {
    // Cut answers that are neither 5xx nor slow: only pre.canary_stream_cuts sees them.
    let r = rehearse("fast-cut").await;
    assert_eq!(r.outcome, "aborted", "{r:#?}");
    assert!(
        r.decided_by.iter().any(|id| id == "pre.canary_stream_cuts"),
        "{r:#?}"
    );
}

/// `zai-rehearse --jobs 3` (the README's main job) runs scenarios at once and reports them in
/// the order asked: all three start before the first verdict is printed (stderr's order, not
/// timings), every one passes, and rehearsal.json lists them in the selection's order. With
/// one job at a time the second scenario would start only after the first verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_scenarios_at_once_and_report_them_in_order() {
    let _slot = zai_e2e::rehearsal::suite::slot().await;
    let dir = zai_e2e::rehearsal::suite::test_report_dir("local/jobs");
    let names = ["wrong-key", "canary-errors", "token-counting-off"];
    let mut args = vec!["--jobs".to_owned(), "3".to_owned()];
    for name in names {
        args.extend(["--scenario".to_owned(), name.to_owned()]);
    }
    args.extend(["--report-dir".to_owned(), dir.display().to_string()]);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .args(&args)
        .env_remove("ZAI_REHEARSE_SEED")
        .output()
        .await
        .expect("zai-rehearse runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let first_verdict = stderr
        .find(": PASS (")
        .or_else(|| stderr.find(": FAIL ("))
        .expect("a verdict line");
    for name in names {
        let started = stderr
            .find(&format!("== {name}:"))
            .unwrap_or_else(|| panic!("{name} never started: {stderr}"));
        assert!(
            started < first_verdict,
            "{name} started after the first verdict: not at once\n{stderr}"
        );
    }
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("rehearsal.json")).expect("rehearsal.json"),
    )
    .expect("JSON");
    let reported: Vec<&str> = summary["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(reported, names, "reported in the order asked");
}
