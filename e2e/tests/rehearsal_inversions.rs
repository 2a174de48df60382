//! Inversions: each bad scenario again, with the gates that measure its defect disabled. The
//! promoter must then promote (or, for a rollout that can never finish, be stopped only by
//! the rollout deadline) — so it was those gates, not luck or timing, that caught the defect.
//!
//! crash-loop has no inversion: a canary that never starts leaves every phase-1 check without
//! data, so no subset of gates can be "the" one that caught it.

use zai_e2e::rehearsal::driver::SignalsChoice;
use zai_e2e::rehearsal::scenario::{Expectation, ExpectedOutcome};
use zai_e2e::rehearsal::suite::{PlatformKind, run_for_test};
use zai_e2e::rehearsal::{ScenarioResult, builtin, inversion_disables};

async fn inverted(name: &str) -> ScenarioResult {
    let mut scenario = builtin()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no built-in scenario {name}"));
    let disabled = inversion_disables(name).unwrap_or_else(|| panic!("{name} has no inversion"));
    scenario.disable = disabled.iter().map(|s| (*s).to_owned()).collect();
    scenario.expect = Expectation {
        outcome: ExpectedOutcome::Promoted,
        by: Vec::new(),
        not_by_deadline: false,
    };
    let result = run_for_test(
        &scenario,
        PlatformKind::Local,
        SignalsChoice::Scrape,
        &format!("inversion/{name}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name} inverted (disabled {disabled:?}): {} in {:.1}s, decided by {:?}: {}",
        result.outcome, result.decision_seconds, result.decided_by, result.verdict
    );
    for id in &disabled {
        assert!(
            !result.decided_by.iter().any(|d| d == id),
            "{id} was disabled yet decided"
        );
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_errors_promote_without_error_gates() {
    let r = inverted("canary-errors").await;
    assert_eq!(r.outcome, "promoted", "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_regression_promotes_without_p95_gates() {
    let r = inverted("latency-regression").await;
    assert_eq!(r.outcome, "promoted", "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_cut_promotes_without_the_stream_comparison() {
    let r = inverted("fast-cut").await;
    assert_eq!(r.outcome, "promoted", "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_counting_off_promotes_without_token_gates() {
    let r = inverted("token-counting-off").await;
    assert_eq!(r.outcome, "promoted", "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_only_defect_promotes_without_error_gates() {
    let r = inverted("load-only-defect").await;
    assert_eq!(r.outcome, "promoted", "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_is_left_to_a_deadline_without_its_trigger() {
    // New pods that never get ready cannot be promoted; without the trigger (and the rollout
    // check) only a phase deadline stops the run, after the rollout was left hanging.
    let r = inverted("not-ready").await;
    assert_eq!(r.outcome, "rolled_back", "{r:#?}");
    let reason = r.reason.clone().unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("deadline") || reason.contains("did not pass within"),
        "expected a phase deadline to decide: {reason}"
    );
}
