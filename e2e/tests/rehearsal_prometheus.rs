//! `--signals prometheus`: a real Prometheus binary on loopback scrapes every pod and evaluates
//! deploy/prometheus's rules (durations compressed); the promoter reads it over the HTTP API.
//! Healthy and latency-regression must reach their expected verdicts, and the scrape and
//! Prometheus sources must both promote a healthy canary in shared 1 % noise. Skipped with a one-line reason
//! without a `prometheus` binary; with `CI` set that fails the suite.

use zai_e2e::rehearsal::driver::SignalsChoice;
use zai_e2e::rehearsal::prometheus::prometheus_available;
use zai_e2e::rehearsal::suite::{PlatformKind, dependency_gate, run_for_test};
use zai_e2e::rehearsal::{ScenarioResult, builtin};

async fn rehearse(name: &str, signals: SignalsChoice, label: &str) -> ScenarioResult {
    let scenario = builtin()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no built-in scenario {name}"));
    let result = run_for_test(
        &scenario,
        PlatformKind::Local,
        signals,
        &format!("{label}/{name}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{name} ({label}): {e}"));
    eprintln!(
        "{label} {name}: {} in {:.1}s, workers ok {} failed {} lost {}, decided by {:?}",
        result.outcome,
        result.decision_seconds,
        result.workers.ok,
        result.workers.failed,
        result.workers.lost,
        result.decided_by
    );
    result
}

fn gate() -> bool {
    dependency_gate("rehearsal_prometheus", prometheus_available())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_healthy_promotes_without_losing_a_request() {
    if !gate() {
        return;
    }
    let r = rehearse("healthy", SignalsChoice::Prometheus, "prometheus").await;
    assert!(r.passed, "{:?}\n{r:#?}", r.problems);
    assert_eq!(r.workers.lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_latency_regression_rolls_back_by_p95() {
    if !gate() {
        return;
    }
    let r = rehearse(
        "latency-regression",
        SignalsChoice::Prometheus,
        "prometheus",
    )
    .await;
    assert!(r.passed, "{:?}\n{r:#?}", r.problems);
    assert!(r.decided_by.iter().any(|id| id == "trigger.p95_latency"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_and_prometheus_both_promote_a_healthy_canary_in_shared_noise() {
    if !gate() {
        return;
    }
    // The measured case: both versions' upstreams fail the same 1 %. Before the judge,
    // scrape aborted it in phase 1 and Prometheus promoted it. Each run must reach the
    // scenario's expectation on its own — two runs that fail alike are not parity.
    let scrape = rehearse("healthy-noisy", SignalsChoice::Scrape, "parity-scrape").await;
    let prom = rehearse(
        "healthy-noisy",
        SignalsChoice::Prometheus,
        "parity-prometheus",
    )
    .await;
    assert!(scrape.passed, "scrape: {:?}\n{scrape:#?}", scrape.problems);
    assert!(prom.passed, "prometheus: {:?}\n{prom:#?}", prom.problems);
    assert_eq!(scrape.outcome, "promoted");
    assert_eq!(prom.outcome, "promoted");
}
