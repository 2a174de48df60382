//! `--signals prometheus`: a real Prometheus binary on loopback scrapes every pod and evaluates
//! deploy/prometheus's rules (durations compressed); the promoter reads it over the HTTP API.
//! Healthy and latency-regression must reach their expected verdicts, and the scrape and
//! Prometheus sources must agree on latency-regression. Skipped with a one-line reason
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
async fn scrape_and_prometheus_reach_the_same_verdict() {
    if !gate() {
        return;
    }
    let scrape = rehearse("latency-regression", SignalsChoice::Scrape, "parity-scrape").await;
    let prom = rehearse(
        "latency-regression",
        SignalsChoice::Prometheus,
        "parity-prometheus",
    )
    .await;
    assert_eq!(
        scrape.outcome, prom.outcome,
        "scrape {scrape:#?}\nprometheus {prom:#?}"
    );
    let fired = |r: &ScenarioResult| {
        r.decided_by
            .iter()
            .filter(|id| id.starts_with("trigger."))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(fired(&scrape), fired(&prom), "the same trigger decided");
}
