//! The scrape source on static exposition fixtures (counter resets included), the same
//! fixtures served over loopback HTTP, and the locally evaluated canary alerts.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{at, http, pod};
use zai_promoter::platform::{LogLine, PodInfo, RecordSlot, RecordWrite, RolloutStatus};
use zai_promoter::signals::canary_rules::CanaryRules;
use zai_promoter::signals::scrape::{
    AlertTiming, ScrapeSource, ScrapeStore, canary_alert_conditions, parse_exposition,
};
use zai_promoter::signals::{AlertState, Cohort, Reading, Signal, SignalQuery, SignalSource};
use zai_promoter::{Error, Platform, Result, Variant};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scrape/");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIX}{name}")).unwrap()
}

fn q(signal: Signal, variant: Variant, secs: u64) -> SignalQuery {
    SignalQuery::new(signal, variant, Duration::from_secs(secs))
}

fn value(r: Reading) -> f64 {
    match r {
        Reading::Value(v) => v,
        other => panic!("expected a value, got {other:?}"),
    }
}

fn store() -> ScrapeStore {
    let mut s = ScrapeStore::new(Duration::from_secs(600));
    let p = Variant::Production;
    s.add(
        "a",
        p,
        at(0),
        parse_exposition(&fixture("prod_t0.prom"), p).unwrap(),
    );
    s.add(
        "a",
        p,
        at(30),
        parse_exposition(&fixture("prod_t1.prom"), p).unwrap(),
    );
    s.add(
        "a",
        p,
        at(60),
        parse_exposition(&fixture("prod_t2_restarted.prom"), p).unwrap(),
    );
    s
}

#[test]
fn parses_only_the_pods_own_variant() {
    let d = parse_exposition(&fixture("prod_t0.prom"), Variant::Production).unwrap();
    assert_eq!(d.requests.values().sum::<f64>(), 100.0);
    assert_eq!(d.token_series, 2);
    assert_eq!(d.latency.last().unwrap(), &(f64::INFINITY, 100.0));
}

#[test]
fn upstream_auth_failures_are_the_auth_series_increase() {
    let text = |auth: f64, status: f64| {
        format!(
            "# TYPE zai_proxy_upstream_errors_total counter\n\
             zai_proxy_upstream_errors_total{{error_type=\"auth\",variant=\"test\"}} {auth}\n\
             zai_proxy_upstream_errors_total{{error_type=\"401\",variant=\"test\"}} {status}\n\
             zai_proxy_upstream_errors_total{{error_type=\"auth\",variant=\"production\"}} 99\n\
             # TYPE zai_proxy_requests_total counter\n\
             zai_proxy_requests_total{{status_code=\"401\",variant=\"test\"}} {status}\n"
        )
    };
    let t = Variant::Test;
    let mut s = ScrapeStore::new(Duration::from_secs(600));
    s.add("c", t, at(0), parse_exposition(&text(0.0, 0.0), t).unwrap());
    s.add(
        "c",
        t,
        at(30),
        parse_exposition(&text(0.0, 0.0), t).unwrap(),
    );
    assert_eq!(
        value(s.measure(&q(Signal::UpstreamAuthFailures, t, 60), at(30))),
        0.0
    );
    s.add(
        "c",
        t,
        at(60),
        parse_exposition(&text(3.0, 3.0), t).unwrap(),
    );
    assert_eq!(
        value(s.measure(&q(Signal::UpstreamAuthFailures, t, 90), at(60))),
        3.0,
        "only the canary's own auth series"
    );
    // A restart resets the counter: 2 more after it.
    s.add(
        "c",
        t,
        at(90),
        parse_exposition(&text(2.0, 2.0), t).unwrap(),
    );
    assert_eq!(
        value(s.measure(&q(Signal::UpstreamAuthFailures, t, 120), at(90))),
        5.0
    );
}

#[test]
fn quantities_over_a_window_with_a_counter_reset() {
    let s = store();
    let p = Variant::Production;
    let now = at(60);
    // t0→t1: +100 (10 × 5xx); t1→t2 restart: counters start again at 50 (5 × 5xx).
    assert_eq!(
        value(s.measure(&q(Signal::RequestCount, p, 60), now)),
        150.0
    );
    assert!((value(s.measure(&q(Signal::ErrorRatio, p, 60), now)) - 0.1).abs() < 1e-12);
    assert!((value(s.measure(&q(Signal::SuccessRatio, p, 60), now)) - 0.9).abs() < 1e-12);
    assert!((value(s.measure(&q(Signal::RequestRate, p, 60), now)) - 2.5).abs() < 1e-12);
    assert_eq!(
        value(s.measure(&q(Signal::TokensIncrease, p, 60), now)),
        4500.0
    );
    // Buckets summed: …(0.25: 120)(0.5: 143)…(+Inf: 150): p95 rank 142.5 → 0.25 + 0.25 × 22.5/23.
    let p95 = value(s.measure(&q(Signal::LatencyQuantile { permille: 950 }, p, 60), now));
    assert!((p95 - (0.25 + 0.25 * 22.5 / 23.0)).abs() < 1e-9, "{p95}");
    let p99 = value(s.measure(&q(Signal::TokenCountQuantile { permille: 990 }, p, 60), now));
    assert!((p99 - (0.001 + 0.004 * 13.5 / 15.0)).abs() < 1e-9, "{p99}");
    // The last 30 s hold only the restart: 50 requests, 5 errors.
    assert_eq!(value(s.measure(&q(Signal::RequestCount, p, 30), now)), 50.0);
    assert!((value(s.measure(&q(Signal::ErrorRatio, p, 30), now)) - 0.1).abs() < 1e-12);
    assert_eq!(value(s.measure(&q(Signal::TokenSeries, p, 30), now)), 2.0);
}

#[test]
fn one_scrape_or_no_traffic_is_no_data() {
    let mut s = ScrapeStore::new(Duration::from_secs(600));
    let t = Variant::Test;
    s.add(
        "c",
        t,
        at(0),
        parse_exposition(&fixture("canary_t0.prom"), t).unwrap(),
    );
    assert!(matches!(
        s.measure(&q(Signal::RequestCount, t, 60), at(0)),
        Reading::NoData(_)
    ));
    // The canary exports no token series at all: 0, not no data.
    assert_eq!(value(s.measure(&q(Signal::TokenSeries, t, 60), at(0))), 0.0);
    // Same scrape twice: a window with zero requests has no ratio.
    s.add(
        "c",
        t,
        at(30),
        parse_exposition(&fixture("canary_t0.prom"), t).unwrap(),
    );
    // Only 30 s of a 60 s window scraped: zero requests is not yet evidence of no traffic…
    assert!(matches!(
        s.measure(&q(Signal::RequestCount, t, 60), at(30)),
        Reading::NoData(_)
    ));
    // …but it is for a 30 s window.
    assert_eq!(
        value(s.measure(&q(Signal::RequestCount, t, 30), at(30))),
        0.0
    );
    assert!(matches!(
        s.measure(&q(Signal::ErrorRatio, t, 60), at(30)),
        Reading::NoData(_)
    ));
    assert!(matches!(
        s.measure(&q(Signal::LatencyQuantile { permille: 950 }, t, 60), at(30)),
        Reading::NoData(_)
    ));
    // Production never scraped.
    assert!(matches!(
        s.measure(&q(Signal::TokenSeries, Variant::Production, 60), at(30)),
        Reading::NoData(_)
    ));
}

#[test]
fn old_scrapes_leave_the_window_and_the_retention() {
    let mut s = store();
    let p = Variant::Production;
    // Two minutes later without new scrapes: nothing in a 60 s window.
    assert!(matches!(
        s.measure(&q(Signal::RequestCount, p, 60), at(180)),
        Reading::NoData(_)
    ));
    let mut short = ScrapeStore::new(Duration::from_secs(45));
    for (t, f) in [
        (0, "prod_t0.prom"),
        (30, "prod_t1.prom"),
        (60, "prod_t2_restarted.prom"),
    ] {
        short.add("a", p, at(t), parse_exposition(&fixture(f), p).unwrap());
    }
    // t0 fell out of the retention: only the reset pair remains even for a long window.
    assert_eq!(
        value(short.measure(&q(Signal::RequestCount, p, 600), at(60))),
        50.0
    );
    s.add(
        "b",
        p,
        at(60),
        parse_exposition(&fixture("prod_t0.prom"), p).unwrap(),
    );
    assert_eq!(
        value(s.measure(&q(Signal::RequestCount, p, 60), at(60))),
        150.0
    );
}

/// A platform whose pods are reached by URL (the trait's default `pod_get`).
struct UrlPlatform {
    pods: Vec<PodInfo>,
}

#[async_trait]
impl Platform for UrlPlatform {
    fn name(&self) -> &str {
        "url"
    }
    async fn list_pods(&self, v: Variant) -> Result<Vec<PodInfo>> {
        Ok(self
            .pods
            .iter()
            .filter(|p| p.variant == v)
            .cloned()
            .collect())
    }
    async fn image(&self, _: Variant) -> Result<String> {
        Err(Error::platform("url", "image", "n/a"))
    }
    async fn set_image(&self, _: Variant, _: &str, _: &str) -> Result<()> {
        Err(Error::platform("url", "set image", "n/a"))
    }
    async fn rollout_status(&self, _: Variant) -> Result<RolloutStatus> {
        Err(Error::platform("url", "rollout status", "n/a"))
    }
    async fn undo(&self, _: Variant) -> Result<()> {
        Err(Error::platform("url", "undo", "n/a"))
    }
    async fn scale(&self, _: Variant, _: u32) -> Result<()> {
        Err(Error::platform("url", "scale", "n/a"))
    }
    async fn replicas(&self, _: Variant) -> Result<u32> {
        Ok(1)
    }
    async fn logs_since(&self, _: Variant, _: DateTime<Utc>) -> Result<Vec<LogLine>> {
        Ok(Vec::new())
    }
    async fn read_record(&self) -> Result<RecordSlot> {
        Err(Error::platform("url", "read record", "n/a"))
    }
    async fn write_record(&self, _: Option<&str>, _: &str) -> Result<RecordWrite> {
        Err(Error::platform("url", "write record", "n/a"))
    }
}

#[tokio::test]
async fn scrapes_real_http_on_loopback_and_evaluates_canary_alerts_locally() {
    let prod_body = Arc::new(Mutex::new(fixture("prod_t0.prom")));
    let canary_body = Arc::new(Mutex::new(String::new()));
    let mut prod = pod("prod-0", Variant::Production, true, 0, "1.2.0");
    prod.base_url = Some(http::serve(prod_body.clone()).await);
    let mut canary = pod("canary-0", Variant::Test, true, 0, "1.2.1-canary");
    canary.base_url = Some(http::serve(canary_body.clone()).await);
    let pods = vec![prod.clone(), canary.clone()];
    let platform = Arc::new(UrlPlatform { pods: pods.clone() });
    let mut src = ScrapeSource::new(platform, Duration::from_secs(600), Duration::from_secs(2))
        .with_alert_timing(AlertTiming {
            window: Duration::from_secs(60),
            down_for: Duration::from_secs(60),
            degraded_for: Duration::from_secs(60),
            min_requests: 50,
        });
    // The canary serves production-format text relabelled as test, with 20 % errors.
    let canary_at = |r200: u32, r500: u32| {
        fixture("prod_t0.prom")
            .replace("variant=\"production\"", "variant=\"test\"")
            .replace(
                "status_code=\"200\",variant=\"test\"} 90",
                &format!("status_code=\"200\",variant=\"test\"}} {r200}"),
            )
            .replace(
                "status_code=\"500\",variant=\"test\"} 10",
                &format!("status_code=\"500\",variant=\"test\"}} {r500}"),
            )
    };
    *canary_body.lock().unwrap() = canary_at(0, 0);
    src.refresh(&pods, at(0)).await.unwrap();
    // No canary request yet: the error alerts are reported as not evaluated (never as clear).
    let alerts = src.alerts(at(0)).await.unwrap();
    let high = alerts
        .iter()
        .find(|a| a.name == "ZaiProxyCanaryHighErrorRate")
        .unwrap();
    assert_eq!(high.state, AlertState::NotEvaluated, "{alerts:?}");
    assert!(high.detail.contains("min_requests 50"), "{}", high.detail);
    *prod_body.lock().unwrap() = fixture("prod_t1.prom");
    *canary_body.lock().unwrap() = canary_at(80, 20);
    src.refresh(&pods, at(30)).await.unwrap();

    let m = src
        .measure(&q(Signal::RequestCount, Variant::Production, 60), at(30))
        .await;
    assert_eq!(m.reading, Reading::Value(100.0));
    assert!(m.source.starts_with("scrape:"));
    let m = src
        .measure(&q(Signal::ErrorRatio, Variant::Test, 60), at(30))
        .await;
    assert_eq!(m.reading, Reading::Value(0.2));
    // 20 % > 5 % and > 2 × (10 % + 1 %) → pending now, firing after 60 s held.
    let alerts = src.alerts(at(30)).await.unwrap();
    let high = alerts
        .iter()
        .find(|a| a.name == "ZaiProxyCanaryHighErrorRate")
        .unwrap();
    assert_eq!(high.state, AlertState::Pending);
    assert!(high.evaluated_locally);
    assert!(
        !alerts
            .iter()
            .any(|a| a.name == "ZaiProxyCanaryErrorRateHigherThanProduction")
    );
    *prod_body.lock().unwrap() = fixture("prod_t1.prom").replace("} 180\n", "} 270\n");
    *canary_body.lock().unwrap() = canary_at(160, 40);
    src.refresh(&pods, at(60)).await.unwrap();
    *canary_body.lock().unwrap() = canary_at(240, 60);
    src.refresh(&pods, at(90)).await.unwrap();
    let alerts = src.alerts(at(90)).await.unwrap();
    let high = alerts
        .iter()
        .find(|a| a.name == "ZaiProxyCanaryHighErrorRate")
        .unwrap();
    assert_eq!(high.state, AlertState::Firing, "{alerts:?}");
    assert!(
        alerts
            .iter()
            .any(|a| a.name == "ZaiProxyCanaryErrorRateHigherThanProduction"),
        "{alerts:?}"
    );
}

/// Production-format text relabelled as the canary's, with `ok` 2xx and `errors` 5xx.
fn canary_text(ok: u32, errors: u32) -> String {
    fixture("prod_t0.prom")
        .replace("variant=\"production\"", "variant=\"test\"")
        .replace(
            "status_code=\"200\",variant=\"test\"} 90",
            &format!("status_code=\"200\",variant=\"test\"}} {ok}"),
        )
        .replace(
            "status_code=\"500\",variant=\"test\"} 10",
            &format!("status_code=\"500\",variant=\"test\"}} {errors}"),
        )
}

#[test]
fn error_alerts_need_min_requests_in_the_window() {
    let t = Variant::Test;
    let mut s = ScrapeStore::new(Duration::from_secs(600));
    s.add(
        "c",
        t,
        at(0),
        parse_exposition(&canary_text(0, 0), t).unwrap(),
    );
    // 10 requests, 2 of them 5xx: 20 % > 5 %, but only 10 requests.
    s.add(
        "c",
        t,
        at(30),
        parse_exposition(&canary_text(8, 2), t).unwrap(),
    );
    let high = |min| {
        canary_alert_conditions(
            &s,
            1,
            &[],
            at(30),
            Duration::from_secs(60),
            min,
            CanaryRules::embedded(),
        )
        .into_iter()
        .find(|(name, ..)| *name == "ZaiProxyCanaryHighErrorRate")
        .unwrap()
    };
    let (_, holds, detail) = high(50);
    assert_eq!(holds, None, "10 requests < 50: {detail}");
    assert!(
        detail.contains("not evaluated") && detail.contains("10 canary requests"),
        "{detail}"
    );
    let (_, holds, detail) = high(10);
    assert_eq!(holds, Some(true), "10 requests >= 10: {detail}");
}

#[test]
fn garbage_exposition_never_panics() {
    for text in [
        "",
        "{}",
        "zai_proxy_requests_total{",
        "zai_proxy_requests_total{variant=\"production\" 12",
        "# TYPE zai_proxy_request_duration_seconds histogram\nzai_proxy_request_duration_seconds_bucket{le=\"abc\",variant=\"production\"} 1",
        "# TYPE zai_proxy_request_duration_seconds histogram\nzai_proxy_request_duration_seconds_bucket{variant=\"production\"} 1",
        "zai_proxy_requests_total{status_code=\"200\",variant=\"production\"} NaN",
        "zai_proxy_requests_total{status_code=\"200\",variant=\"production\"} +Inf",
        "zai_proxy_tokens_total{variant=\"production\"} -1e400",
        "\u{0}\u{ffff}\n# HELP\n# TYPE\n#",
        "zai_proxy_requests_total{status_code=\"2\\\"00\",variant=\"production\"} 1",
    ] {
        let _ = parse_exposition(text, Variant::Production);
    }
    // Non-finite counter values are ignored, not summed.
    let d = parse_exposition(
        "zai_proxy_requests_total{status_code=\"200\",variant=\"production\"} NaN\n",
        Variant::Production,
    )
    .unwrap();
    assert!(d.requests.is_empty());
}

#[test]
fn cut_streams_are_the_upstream_cut_series_increase() {
    let text = |cut: f64, complete: f64| {
        format!(
            "# TYPE zai_proxy_streams_total counter\n\
             zai_proxy_streams_total{{outcome=\"complete\",variant=\"test\"}} {complete}\n\
             zai_proxy_streams_total{{outcome=\"upstream_cut\",variant=\"test\"}} {cut}\n\
             zai_proxy_streams_total{{outcome=\"client_gone\",variant=\"test\"}} 7\n\
             zai_proxy_streams_total{{outcome=\"upstream_cut\",variant=\"production\"}} 99\n"
        )
    };
    let t = Variant::Test;
    let mut s = ScrapeStore::new(Duration::from_secs(600));
    s.add(
        "c",
        t,
        at(0),
        parse_exposition(&text(1.0, 10.0), t).unwrap(),
    );
    s.add(
        "c",
        t,
        at(30),
        parse_exposition(&text(5.0, 50.0), t).unwrap(),
    );
    assert_eq!(
        value(s.measure(&q(Signal::StreamCutCount, t, 60), at(30))),
        4.0,
        "the canary's own upstream_cut increase, not complete or client_gone"
    );
    // A restart resets the counter: 2 cut since it.
    s.add(
        "c",
        t,
        at(60),
        parse_exposition(&text(2.0, 3.0), t).unwrap(),
    );
    assert_eq!(
        value(s.measure(&q(Signal::StreamCutCount, t, 90), at(60))),
        6.0
    );
}

/// A Ready pod whose `/metrics` cannot be reached is reported (its requests are missing from
/// the ratios); a pod that is not Ready (starting, crashing) serves nothing and is not.
#[tokio::test]
async fn an_unreachable_ready_pod_is_a_reported_gap() {
    let body = Arc::new(Mutex::new(fixture("prod_t0.prom")));
    let mut reachable = pod("prod-0", Variant::Production, true, 0, "1.2.0");
    reachable.base_url = Some(http::serve(body).await);
    // A closed port: nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut gone = pod("prod-1", Variant::Production, true, 0, "1.2.0");
    gone.base_url = Some(format!("http://127.0.0.1:{closed}"));
    let pods = vec![reachable.clone(), gone.clone()];
    let platform = Arc::new(UrlPlatform { pods: pods.clone() });
    let mut src = ScrapeSource::new(platform, Duration::from_secs(600), Duration::from_secs(2));
    let err = src.refresh(&pods, at(0)).await.unwrap_err().to_string();
    assert!(
        err.contains("prod-1: /metrics unreachable") && !err.contains("prod-0"),
        "{err}"
    );
    gone.ready = false;
    let pods = vec![reachable, gone];
    src.refresh(&pods, at(30)).await.unwrap();
}

/// "Deployment down" as the rule says it: replicas wanted and none available — also when
/// no pod exists at all; nothing wanted is not down.
#[test]
fn deployment_down_is_wanted_replicas_without_a_ready_pod() {
    let s = ScrapeStore::new(Duration::from_secs(600));
    let down = |replicas, pods: &[PodInfo]| {
        canary_alert_conditions(
            &s,
            replicas,
            pods,
            at(0),
            Duration::from_secs(60),
            50,
            CanaryRules::embedded(),
        )[0]
        .1
    };
    let not_ready = pod("c-0", Variant::Test, false, 0, "1.2.1-canary");
    let ready = pod("c-1", Variant::Test, true, 0, "1.2.1-canary");
    assert_eq!(down(1, &[]), Some(true));
    assert_eq!(down(1, std::slice::from_ref(&not_ready)), Some(true));
    assert_eq!(down(2, &[not_ready.clone(), ready]), Some(false));
    assert_eq!(down(0, &[]), Some(false));
}

/// Phase 3's cohorts: a query over one version's pods sums only those pods, by their
/// `version` label; nothing counts as either version before the driver names the new one.
#[test]
fn cohort_queries_sum_one_versions_pods() {
    let p = Variant::Production;
    let text = |ok: f64, err: f64| {
        format!(
            "# TYPE zai_proxy_requests_total counter\n\
             zai_proxy_requests_total{{status_code=\"200\",variant=\"production\"}} {ok}\n\
             zai_proxy_requests_total{{status_code=\"500\",variant=\"production\"}} {err}\n"
        )
    };
    let mut s = ScrapeStore::new(Duration::from_secs(600));
    s.note_pods(&[
        pod("old", p, true, 0, "1.2.0"),
        pod("new", p, true, 0, "1.2.1"),
    ]);
    for (t, old, new) in [
        (0, (100.0, 1.0), (0.0, 0.0)),
        (30, (190.0, 2.0), (80.0, 8.0)),
    ] {
        s.add(
            "old",
            p,
            at(t),
            parse_exposition(&text(old.0, old.1), p).unwrap(),
        );
        s.add(
            "new",
            p,
            at(t),
            parse_exposition(&text(new.0, new.1), p).unwrap(),
        );
    }
    let now = at(30);
    let count = |signal, cohort| s.measure(&q(signal, p, 60).of(cohort), now);
    assert_eq!(value(count(Signal::RequestCount, Cohort::All)), 179.0);
    assert!(
        matches!(
            count(Signal::RequestCount, Cohort::NewVersion),
            Reading::NoData(_)
        ),
        "no new version named yet"
    );
    s.set_new_version("1.2.1");
    let count = |signal, cohort| s.measure(&q(signal, p, 60).of(cohort), now);
    assert_eq!(value(count(Signal::RequestCount, Cohort::NewVersion)), 88.0);
    assert_eq!(value(count(Signal::ErrorCount, Cohort::NewVersion)), 8.0);
    assert_eq!(value(count(Signal::RequestCount, Cohort::OldVersion)), 91.0);
    assert_eq!(value(count(Signal::ErrorCount, Cohort::OldVersion)), 1.0);
    assert!(
        ScrapeStore::describe(&q(Signal::ErrorCount, p, 60).of(Cohort::OldVersion))
            .ends_with("old-version pods only")
    );
}
