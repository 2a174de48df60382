//! Healthy and two bad scenarios on the Docker platform: containers of a locally built
//! `FROM scratch` image started through testcontainers with host networking, Docker's own
//! restart policy and restart counts. Skipped with a one-line reason without a Docker daemon;
//! with `CI` set a missing daemon fails the suite.

use zai_e2e::platform::docker::docker_available;
use zai_e2e::rehearsal::driver::SignalsChoice;
use zai_e2e::rehearsal::suite::{PlatformKind, dependency_gate, run_for_test};
use zai_e2e::rehearsal::{ScenarioResult, builtin};

async fn rehearse(name: &str) -> Option<ScenarioResult> {
    if !dependency_gate("rehearsal_docker", docker_available().await) {
        return None;
    }
    let scenario = builtin()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no built-in scenario {name}"));
    let result = run_for_test(
        &scenario,
        PlatformKind::Docker,
        SignalsChoice::Scrape,
        &format!("docker/{name}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{name} on docker: {e}"));
    eprintln!(
        "docker {name}: {} in {:.1}s, workers ok {} failed {} lost {}, decided by {:?}",
        result.outcome,
        result.decision_seconds,
        result.workers.ok,
        result.workers.failed,
        result.workers.lost,
        result.decided_by
    );
    assert!(
        result.passed,
        "{name} on docker missed its expectation: {:?}\n{:#?}",
        result.problems, result
    );
    Some(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_healthy_promotes_without_losing_a_request() {
    if let Some(r) = rehearse("healthy").await {
        assert_eq!(r.outcome, "promoted");
        assert_eq!(r.workers.lost, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_canary_errors_abort() {
    if let Some(r) = rehearse("canary-errors").await {
        assert_eq!(r.outcome, "aborted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_crash_loop_aborts_on_canary_readiness_or_the_down_alert() {
    if let Some(r) = rehearse("crash-loop").await {
        assert_eq!(r.outcome, "aborted");
        assert!(
            r.decided_by_any(&["pre.canary_pods_ready", "pre.no_canary_alerts"]),
            "decided by {:?}",
            r.decided_by
        );
    }
}
