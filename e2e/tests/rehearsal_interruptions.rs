//! The interruption rehearsals on the local platform: the `zai-promoter` binary against the
//! simulated cluster, stopped (SIGTERM) or killed (SIGKILL) at a seeded point of the rollout,
//! then run again as a retried CI job would. Every run must end promoted or rolled back with
//! production on one version and every pod Ready, a report written, and no worker request
//! lost; two promoters started together must leave exactly one acting.

use zai_e2e::rehearsal::driver::SignalsChoice;
use zai_e2e::rehearsal::suite::{PlatformKind, run_for_test};
use zai_e2e::rehearsal::{ScenarioResult, interruptions};

async fn rehearse(name: &str) -> ScenarioResult {
    let scenario = interruptions()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no interruption scenario {name}"));
    let result = run_for_test(
        &scenario,
        PlatformKind::Local,
        SignalsChoice::Scrape,
        &format!("interruptions/{name}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name} (seed {}): {} in {:.1}s, workers ok {} failed {} lost {}",
        result.seeds.run,
        result.outcome,
        result.decision_seconds,
        result.workers.ok,
        result.workers.failed,
        result.workers.lost,
    );
    assert!(
        result.passed,
        "{name} missed its expectation: {:?}\n{:#?}",
        result.problems, result
    );
    assert_eq!(result.workers.lost, 0);
    assert!(result.report.is_file(), "a report exists");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_the_rollout_is_taken_over_and_promoted_while_a_second_promoter_refuses() {
    let r = rehearse("interrupted-kill").await;
    assert_eq!(r.outcome, "promoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_leave_is_resumed_and_promoted() {
    let r = rehearse("interrupted-leave").await;
    assert_eq!(r.outcome, "promoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_by_default_rolls_back() {
    let r = rehearse("interrupted-term").await;
    assert_eq!(r.outcome, "rolled_back");
}
