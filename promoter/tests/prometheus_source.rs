//! The Prometheus source against a real Prometheus binary scraping a loopback server whose
//! exposition text the test controls. Required when `CI` is set; skipped with a one-line
//! reason otherwise when `prometheus` is not installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::http;
use zai_promoter::Variant;
use zai_promoter::signals::prometheus::PrometheusSource;
use zai_promoter::signals::{AlertState, Cohort, Reading, Signal, SignalQuery, SignalSource};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_available() -> bool {
    Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Exposition after `t` seconds: 100 2xx and 10 5xx per second; latency 50 % ≤ 0.1 s,
/// 40 % in (0.1, 0.5], 10 % in (0.5, 1] → p95 = 0.75 s; two token series.
fn exposition(t: f64) -> String {
    let mut s = String::new();
    s.push_str("# TYPE zai_proxy_requests_total counter\n");
    s.push_str(&format!(
        "zai_proxy_requests_total{{method=\"POST\",path=\"/v1/messages\",status_code=\"200\",variant=\"production\"}} {}\n",
        100.0 * t
    ));
    s.push_str(&format!(
        "zai_proxy_requests_total{{method=\"POST\",path=\"/v1/messages\",status_code=\"500\",variant=\"production\"}} {}\n",
        10.0 * t
    ));
    s.push_str("# TYPE zai_proxy_request_duration_seconds histogram\n");
    for (le, per_s) in [("0.1", 55.0), ("0.5", 99.0), ("1", 110.0), ("+Inf", 110.0)] {
        s.push_str(&format!(
            "zai_proxy_request_duration_seconds_bucket{{variant=\"production\",le=\"{le}\"}} {}\n",
            per_s * t
        ));
    }
    s.push_str(&format!(
        "zai_proxy_request_duration_seconds_sum{{variant=\"production\"}} {}\n",
        30.0 * t
    ));
    s.push_str(&format!(
        "zai_proxy_request_duration_seconds_count{{variant=\"production\"}} {}\n",
        110.0 * t
    ));
    s.push_str("# TYPE zai_proxy_tokens_total counter\n");
    for (d, n) in [("input", 1000.0), ("output", 2000.0)] {
        s.push_str(&format!(
            "zai_proxy_tokens_total{{direction=\"{d}\",model=\"glm-4.7\",pricing_tier=\"off_peak\",variant=\"production\"}} {}\n",
            n * t
        ));
    }
    s.push_str("# TYPE zai_proxy_upstream_errors_total counter\n");
    for (kind, per_s) in [("auth", 2.0), ("401", 2.0), ("read_error", 7.0)] {
        s.push_str(&format!(
            "zai_proxy_upstream_errors_total{{error_type=\"{kind}\",variant=\"production\"}} {}\n",
            per_s * t
        ));
    }
    s.push_str("# TYPE zai_proxy_streams_total counter\n");
    for (outcome, per_s) in [
        ("complete", 20.0),
        ("upstream_cut", 2.0),
        ("client_gone", 9.0),
    ] {
        s.push_str(&format!(
            "zai_proxy_streams_total{{outcome=\"{outcome}\",variant=\"production\"}} {}\n",
            per_s * t
        ));
    }
    s
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn q(signal: Signal, variant: Variant) -> SignalQuery {
    SignalQuery::new(signal, variant, Duration::from_secs(10))
}

#[tokio::test]
async fn prometheus_source_reads_a_real_prometheus() {
    if !prometheus_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the `prometheus` binary is missing (apt-get install -y prometheus)"
        );
        eprintln!("skipped: `prometheus` not installed (apt-get install -y prometheus)");
        return;
    }
    // The target: exposition text growing with time.
    let body = Arc::new(Mutex::new(exposition(0.0)));
    let target = http::serve(body.clone()).await;
    let start = Instant::now();
    let updater = {
        let body = body.clone();
        tokio::spawn(async move {
            loop {
                *body.lock().unwrap() = exposition(start.elapsed().as_secs_f64());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: t\n  rules:\n  - alert: ZaiProxyCanaryHighErrorRate\n    expr: sum(rate(zai_proxy_requests_total{status_code=~\"5..\"}[5s])) > 0\n    for: 0s\n",
    )
    .unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: zai\n    static_configs:\n      - targets: ['{}']\n        labels:\n          pod: zai-proxy-7d.new\n",
            rules.display(),
            target.trim_start_matches("http://")
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Kill(child);
    let base = format!("http://127.0.0.1:{port}");
    let mut src = PrometheusSource::new(&base, "", Duration::from_secs(5)).unwrap();

    // Wait until a 10 s window holds enough samples (and the alert fired).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let count = src
            .measure(&q(Signal::RequestCount, Variant::Production), Utc::now())
            .await;
        let alerts = src.alerts(Utc::now()).await.unwrap_or_default();
        let firing = alerts
            .iter()
            .any(|a| a.name == "ZaiProxyCanaryHighErrorRate" && a.state == AlertState::Firing);
        if matches!(count.reading, Reading::Value(v) if v > 500.0)
            && firing
            && start.elapsed() > Duration::from_secs(12)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned data: {count:?} {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let get = |r: Reading| match r {
        Reading::Value(v) => v,
        other => panic!("{other:?}"),
    };
    let ratio = get(src
        .measure(&q(Signal::ErrorRatio, Variant::Production), Utc::now())
        .await
        .reading);
    assert!((ratio - 10.0 / 110.0).abs() < 0.005, "error ratio {ratio}");
    let ok = get(src
        .measure(&q(Signal::SuccessRatio, Variant::Production), Utc::now())
        .await
        .reading);
    assert!((ok - 100.0 / 110.0).abs() < 0.005, "success ratio {ok}");
    let rate = get(src
        .measure(&q(Signal::RequestRate, Variant::Production), Utc::now())
        .await
        .reading);
    // rate() extrapolates over missed scrapes on a busy machine: only its order is checked.
    assert!((50.0..=130.0).contains(&rate), "rate {rate}");
    let p95 = get(src
        .measure(
            &q(
                Signal::LatencyQuantile { permille: 950 },
                Variant::Production,
            ),
            Utc::now(),
        )
        .await
        .reading);
    assert!((p95 - 0.75).abs() < 0.02, "p95 {p95}");
    let series = get(src
        .measure(&q(Signal::TokenSeries, Variant::Production), Utc::now())
        .await
        .reading);
    assert_eq!(series, 2.0);
    let tokens = get(src
        .measure(&q(Signal::TokensIncrease, Variant::Production), Utc::now())
        .await
        .reading);
    assert!(tokens > 10_000.0, "tokens {tokens}");
    // Only error_type="auth" is an auth failure (2/s; the 401 and read_error series are not).
    let auth = src
        .measure(
            &q(Signal::UpstreamAuthFailures, Variant::Production),
            Utc::now(),
        )
        .await;
    let per_window = get(auth.reading);
    assert!(per_window > 0.0 && per_window < tokens, "auth {per_window}");
    assert!(
        auth.source.contains("error_type=\"auth\""),
        "{}",
        auth.source
    );
    // Only outcome="upstream_cut" is a cut (2/s, as auth; client_gone 9/s is not).
    let cut = src
        .measure(&q(Signal::StreamCutCount, Variant::Production), Utc::now())
        .await;
    let cut_count = get(cut.reading);
    assert!(
        cut_count > 0.0 && (cut_count - per_window).abs() <= 0.25 * per_window,
        "cut {cut_count} vs auth {per_window} (same rate)"
    );
    assert!(
        cut.source.contains("outcome=\"upstream_cut\""),
        "{}",
        cut.source
    );
    let m = src
        .measure(&q(Signal::UpstreamAuthFailures, Variant::Test), Utc::now())
        .await;
    assert!(
        matches!(m.reading, Reading::NoData(_)),
        "no canary series: {m:?}"
    );
    // The canary variant has no series: the ratio is an empty vector → no data, never 0.
    let m = src
        .measure(&q(Signal::ErrorRatio, Variant::Test), Utc::now())
        .await;
    assert!(matches!(m.reading, Reading::NoData(_)), "{m:?}");
    assert!(m.source.contains("status_code=~\"5..\""));
    // No histogram for the canary: NaN/empty → no data.
    let m = src
        .measure(
            &q(Signal::LatencyQuantile { permille: 950 }, Variant::Test),
            Utc::now(),
        )
        .await;
    assert!(matches!(m.reading, Reading::NoData(_)), "{m:?}");
    // Phase 3's cohorts: the target is pod `zai-proxy-7d.new` (a dot, escaped in the regex)
    // of version 1.2.1; the old version's only pod has no series.
    let mut new_pod = common::pod("zai-proxy-7d.new", Variant::Production, true, 0, "1.2.1");
    new_pod.base_url = Some(target.clone());
    let old_pod = common::pod("zai-proxy-7c-old", Variant::Production, true, 0, "1.2.0");
    src.refresh(&[new_pod, old_pod], Utc::now()).await.unwrap();
    let new_count = q(Signal::RequestCount, Variant::Production).of(Cohort::NewVersion);
    let m = src.measure(&new_count, Utc::now()).await;
    assert!(
        matches!(m.reading, Reading::NoData(_)),
        "no version named yet: {m:?}"
    );
    src.set_new_version("1.2.1");
    let m = src.measure(&new_count, Utc::now()).await;
    assert!(
        m.source.contains("pod=~\"zai-proxy-7d\\\\.new\""),
        "{}",
        m.source
    );
    let all = get(src
        .measure(&q(Signal::RequestCount, Variant::Production), Utc::now())
        .await
        .reading);
    let new = get(m.reading);
    assert!(new > 0.5 * all, "new-version pods {new} of {all}");
    let errors = src
        .measure(
            &q(Signal::ErrorCount, Variant::Production).of(Cohort::NewVersion),
            Utc::now(),
        )
        .await;
    let errors = get(errors.reading);
    assert!(
        (errors / new - 10.0 / 110.0).abs() < 0.01,
        "{errors} of {new}"
    );
    let m = src
        .measure(&new_count.of(Cohort::OldVersion), Utc::now())
        .await;
    assert!(
        matches!(m.reading, Reading::NoData(_)) && m.source.contains("zai-proxy-7c-old"),
        "the old pod has no series: {m:?}"
    );
    // A bad query is an error from Prometheus, not no data.
    let mut bad = PrometheusSource::new(&base, "namespace=", Duration::from_secs(5)).unwrap();
    let m = bad
        .measure(&q(Signal::RequestRate, Variant::Production), Utc::now())
        .await;
    assert!(
        matches!(m.reading, Reading::Error(ref e) if e.contains("HTTP 400")),
        "{m:?}"
    );
    updater.abort();

    // Nobody listening: an error, not no data.
    let mut gone = PrometheusSource::new(
        &format!("http://127.0.0.1:{}", free_port()),
        "",
        Duration::from_secs(2),
    )
    .unwrap();
    let m = gone
        .measure(&q(Signal::RequestRate, Variant::Production), Utc::now())
        .await;
    assert!(matches!(m.reading, Reading::Error(_)), "{m:?}");
    assert!(gone.alerts(Utc::now()).await.is_err());
}

#[tokio::test]
async fn timeouts_http_errors_and_garbage_are_errors() {
    let q = q(Signal::RequestRate, Variant::Production);
    let silent = http::serve_silent().await;
    let mut src = PrometheusSource::new(&silent, "", Duration::from_millis(300)).unwrap();
    let m = src.measure(&q, Utc::now()).await;
    assert!(
        matches!(m.reading, Reading::Error(ref e) if e.contains("timeout")),
        "{m:?}"
    );

    let down = http::serve_status(503, "upstream connect error").await;
    let mut src = PrometheusSource::new(&down, "", Duration::from_secs(2)).unwrap();
    let m = src.measure(&q, Utc::now()).await;
    assert!(
        matches!(m.reading, Reading::Error(ref e) if e.contains("HTTP 503")),
        "{m:?}"
    );
    assert!(
        src.alerts(Utc::now())
            .await
            .unwrap_err()
            .to_string()
            .contains("HTTP 503")
    );

    let bad = http::serve_status(
        422,
        r#"{"status":"error","errorType":"execution","error":"query timed out"}"#,
    )
    .await;
    let mut src = PrometheusSource::new(&bad, "", Duration::from_secs(2)).unwrap();
    let m = src.measure(&q, Utc::now()).await;
    assert!(
        matches!(m.reading, Reading::Error(ref e) if e.contains("execution") && e.contains("query timed out")),
        "{m:?}"
    );

    let garbage = http::serve_status(200, "<html>not prometheus</html>").await;
    let mut src = PrometheusSource::new(&garbage, "", Duration::from_secs(2)).unwrap();
    let m = src.measure(&q, Utc::now()).await;
    assert!(
        matches!(m.reading, Reading::Error(ref e) if e.contains("malformed")),
        "{m:?}"
    );

    let empty = http::serve_status(
        200,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    )
    .await;
    let mut src = PrometheusSource::new(&empty, "", Duration::from_secs(2)).unwrap();
    let m = src.measure(&q, Utc::now()).await;
    assert!(matches!(m.reading, Reading::NoData(_)), "{m:?}");
}
