//! `/metrics`: every `zai_proxy_*` family of the reference (§4.1–4.4, plus the two new ones)
//! with its exact name, type, label names and buckets, labelled with the variant.

mod support;

use axum::Router;
use axum::routing::post;
use support::{client, metrics_text, sample, start_proxy, start_upstream, test_config};

/// (name, type, label names) as in the reference, label names sorted as the text format
/// prints them.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "zai_proxy_requests_total",
        "counter",
        &["method", "path", "status_code", "variant"],
    ),
    (
        "zai_proxy_request_duration_seconds",
        "histogram",
        &["method", "path", "status_code", "variant"],
    ),
    (
        "zai_proxy_request_size_bytes",
        "histogram",
        &["method", "path", "variant"],
    ),
    (
        "zai_proxy_response_size_bytes",
        "histogram",
        &["method", "path", "status_code", "variant"],
    ),
    ("zai_proxy_concurrent_requests", "gauge", &["variant"]),
    ("zai_proxy_max_workers", "gauge", &["variant"]),
    ("zai_proxy_worker_utilization_ratio", "gauge", &["variant"]),
    (
        "zai_proxy_upstream_errors_total",
        "counter",
        &["error_type", "variant"],
    ),
    (
        "zai_proxy_retry_attempts_total",
        "counter",
        &["reason", "variant"],
    ),
    (
        "zai_proxy_build_info",
        "gauge",
        &["build_time", "commit", "variant", "version"],
    ),
    (
        "zai_proxy_rate_limit_requests_per_second",
        "gauge",
        &["variant"],
    ),
    (
        "zai_proxy_rate_limit_wait_seconds",
        "histogram",
        &["client", "variant"],
    ),
    (
        "zai_proxy_rate_limit_adjustments_total",
        "counter",
        &["direction", "variant"],
    ),
    (
        "zai_proxy_rate_limit_rejections_total",
        "counter",
        &["client", "variant"],
    ),
    (
        "zai_proxy_tokens_total",
        "counter",
        &["direction", "model", "pricing_tier", "variant"],
    ),
    (
        "zai_proxy_estimated_cost_usd_total",
        "counter",
        &["direction", "model", "pricing_tier", "variant"],
    ),
    (
        "zai_proxy_token_count_duration_seconds",
        "histogram",
        &["variant"],
    ),
    (
        "zai_proxy_token_rate_seconds",
        "histogram",
        &["direction", "model", "variant"],
    ),
    (
        "zai_proxy_token_rate",
        "histogram",
        &["direction", "model", "variant"],
    ),
    (
        "zai_proxy_token_estimate_ratio",
        "histogram",
        &["direction", "variant"],
    ),
    (
        "zai_proxy_quota_usage_ratio",
        "gauge",
        &["limit_type", "variant", "window"],
    ),
    (
        "zai_proxy_quota_remaining_ratio",
        "gauge",
        &["limit_type", "variant", "window"],
    ),
    (
        "zai_proxy_quota_reset_time_seconds",
        "gauge",
        &["limit_type", "variant", "window"],
    ),
    ("zai_proxy_quota_sample_age_seconds", "gauge", &["variant"]),
    (
        "zai_proxy_quota_poll_total",
        "counter",
        &["result", "variant"],
    ),
    ("zai_proxy_quota_rate_cap", "gauge", &["variant"]),
    ("zai_proxy_quota_gate_open", "gauge", &["variant", "window"]),
    (
        "zai_proxy_zai_errors_total",
        "counter",
        &["class", "code", "variant"],
    ),
    (
        "zai_proxy_time_to_first_token_seconds",
        "histogram",
        &["api", "model", "variant"],
    ),
    (
        "zai_proxy_output_tokens_per_second",
        "histogram",
        &["api", "model", "variant"],
    ),
    (
        "zai_proxy_streams_total",
        "counter",
        &["outcome", "variant"],
    ),
];

/// Families that stay without series until written (a zero would be a false reading).
const EMPTY_UNTIL_WRITTEN: &[&str] = &[
    "zai_proxy_quota_usage_ratio",
    "zai_proxy_quota_remaining_ratio",
    "zai_proxy_quota_reset_time_seconds",
    "zai_proxy_quota_sample_age_seconds",
    "zai_proxy_quota_rate_cap",
    "zai_proxy_quota_gate_open",
    // Per model: a series appears with the first stream of that model.
    "zai_proxy_time_to_first_token_seconds",
    "zai_proxy_output_tokens_per_second",
];

fn label_names(line: &str) -> Vec<String> {
    let Some(open) = line.find('{') else {
        return Vec::new();
    };
    let close = line.rfind('}').expect("closing brace");
    let mut names: Vec<String> = line[open + 1..close]
        .split("\",")
        .filter_map(|pair| pair.split('=').next())
        .map(|n| n.trim().to_owned())
        .filter(|n| n != "le")
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn every_family_is_present_with_type_labels_and_variant() {
    let mut config = test_config("http://127.0.0.1:9");
    config.variant = "canary".to_owned();
    config.max_workers = 7;
    config.build.version = "9.9.9-test".to_owned();
    let proxy = start_proxy(config).await;
    let text = metrics_text(&proxy.url()).await;

    for (name, kind, labels) in FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind} missing:\n{text}"
        );
        if EMPTY_UNTIL_WRITTEN.contains(name) {
            continue;
        }
        let series: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name}_bucket{{"))
            })
            .collect();
        assert!(!series.is_empty(), "{name} has no series");
        for line in series {
            assert!(line.contains("variant=\"canary\""), "{line}");
            assert_eq!(label_names(line), *labels, "{line}");
        }
    }
    assert_eq!(
        sample(&text, "zai_proxy_max_workers{variant=\"canary\"}"),
        Some(7.0)
    );
    assert!(text.contains("zai_proxy_build_info{build_time=\"unknown\",commit=\"unknown\",variant=\"canary\",version=\"9.9.9-test\"} 1"), "{text}");
    assert_eq!(proxy.state.metrics.family_names().count(), FAMILIES.len());
}

#[tokio::test]
async fn histogram_buckets_are_the_originals() {
    let proxy = start_proxy(test_config("http://127.0.0.1:9")).await;
    let text = metrics_text(&proxy.url()).await;
    let buckets = |prefix: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| {
                let at = l.find("le=\"")? + 4;
                Some(l[at..at + l[at..].find('"')?].to_owned())
            })
            .collect()
    };
    assert_eq!(
        buckets("zai_proxy_request_duration_seconds_bucket{method=\"POST\",path=\"/v1/messages\","),
        [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",
            "60", "120", "300", "+Inf"
        ]
    );
    assert_eq!(
        buckets("zai_proxy_request_size_bytes_bucket{method=\"POST\",path=\"/v1/messages\","),
        [
            "100",
            "1000",
            "10000",
            "100000",
            "1000000",
            "10000000",
            "100000000",
            "1000000000",
            "+Inf"
        ]
    );
    assert_eq!(
        buckets("zai_proxy_rate_limit_wait_seconds_bucket{client=\"source-00\","),
        [
            "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2", "5", "10",
            "+Inf"
        ]
    );
    assert_eq!(
        buckets("zai_proxy_token_count_duration_seconds_bucket{"),
        [
            "0.0001", "0.0005", "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "+Inf"
        ]
    );
}

#[tokio::test]
async fn a_request_is_counted_with_bounded_labels() {
    let upstream = start_upstream(
        Router::new()
            .route("/v1/messages", post(|| async { "{}" }))
            .route("/some/unknown/path", post(|| async { "{}" })),
    )
    .await;
    let proxy = start_proxy(test_config(&upstream.url())).await;
    for path in ["/v1/messages", "/some/unknown/path"] {
        let response = client()
            .post(format!("{}{path}", proxy.url()))
            .body(r#"{"model":"glm-4.6"}"#)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        let _ = response.bytes().await;
    }
    // The relay records when the body ends, just after the client got it.
    let ok = support::eventually(std::time::Duration::from_secs(5), || {
        proxy
            .state
            .metrics
            .requests_total
            .with_label_values(&["POST", "other", "200", "production"])
            .get()
            == 1.0
    })
    .await;
    assert!(ok);
    let text = metrics_text(&proxy.url()).await;
    assert_eq!(
        sample(
            &text,
            "zai_proxy_requests_total{method=\"POST\",path=\"/v1/messages\",status_code=\"200\",variant=\"production\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "zai_proxy_response_size_bytes_count{method=\"POST\",path=\"/v1/messages\",status_code=\"200\",variant=\"production\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "zai_proxy_request_size_bytes_sum{method=\"POST\",path=\"/v1/messages\",variant=\"production\"}"
        ),
        Some(19.0)
    );
    assert!(
        !text.contains("/some/unknown/path"),
        "raw paths must not become labels"
    );
    assert!(!text.contains(support::FAKE_KEY));
    assert_eq!(
        sample(
            &text,
            "zai_proxy_concurrent_requests{variant=\"production\"}"
        ),
        Some(0.0)
    );
}
