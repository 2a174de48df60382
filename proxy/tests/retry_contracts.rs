//! Retry contracts against a real loopback upstream (reference §1.6, §1.6.1, §8.3): each Z.AI
//! 429 class, network errors, empty and malformed bodies, empty streams, no retry once a
//! byte reached the client, cancellation mid-wait, and pass-through of other statuses.
//! Waits use a short RETRY_BASE_DELAY; only lower bounds of elapsed time are asserted.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use support::{
    BinaryProxy, FAKE_KEY, client, metrics_text, start_proxy, start_upstream, test_config,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use zai_proxy::ProxyHandle;

const BASE: Duration = Duration::from_millis(40);
const OK_JSON: &str =
    r#"{"id":"msg_1","type":"message","content":[],"usage":{"input_tokens":1,"output_tokens":1}}"#;

/// Attempt times as the upstream saw them.
#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<Instant>>>);

impl Attempts {
    fn record(&self) -> usize {
        let mut v = self.0.lock().expect("attempts");
        v.push(Instant::now());
        v.len() - 1
    }
    fn count(&self) -> usize {
        self.0.lock().expect("attempts").len()
    }
    fn gaps(&self) -> Vec<Duration> {
        let v = self.0.lock().expect("attempts");
        v.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

fn with_status(status: u16, body: impl Into<Body>, headers: &[(&'static str, &str)]) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in headers {
        r.headers_mut()
            .insert(*k, HeaderValue::from_str(v).expect("header"));
    }
    r
}

/// An upstream at `/v1/messages` answering attempt n with `reply(n)`.
async fn scripted(
    reply: impl Fn(usize) -> Response + Clone + Send + Sync + 'static,
) -> (support::Upstream, Attempts) {
    let attempts = Attempts::default();
    let seen = attempts.clone();
    let upstream = start_upstream(Router::new().route(
        "/v1/messages",
        post(move || {
            let n = seen.record();
            let reply = reply.clone();
            async move { reply(n) }
        }),
    ))
    .await;
    (upstream, attempts)
}

async fn proxy_for(url: &str, max_retries: u32) -> ProxyHandle {
    let mut config = test_config(url);
    config.retry.max_retries = max_retries;
    config.retry.base_delay = BASE;
    start_proxy(config).await
}

async fn post_messages(proxy: &ProxyHandle, body: &'static str) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", proxy.url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send")
}

/// Sum of every sample of `family` whose labels contain all of `labels`.
fn total(metrics: &str, family: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            (name == family && labels.iter().all(|want| series.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

fn zai_429(code: &str) -> String {
    format!(r#"{{"error":{{"code":"{code}","message":"rate limited"}}}}"#)
}

/// Runs a 429 class through MAX_RETRIES=2 and returns (final response, attempts, metrics).
async fn class_run(code: &'static str) -> (StatusCode, http::HeaderMap, String, Attempts, String) {
    let (upstream, attempts) = scripted(move |_| with_status(429, zai_429(code), &[])).await;
    let proxy = proxy_for(&upstream.url(), 2).await;
    let response = post_messages(&proxy, "{}").await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    let metrics = metrics_text(&proxy.url()).await;
    (status, headers, body, attempts, metrics)
}

#[tokio::test]
async fn frequency_429_is_retried_with_jittered_backoff_then_passed_through() {
    for code in ["1303", "1305"] {
        let (status, headers, body, attempts, metrics) = class_run(code).await;
        assert_eq!(status, 429);
        assert_eq!(attempts.count(), 3, "{code}: 1 + MAX_RETRIES attempts");
        assert_eq!(body, zai_429(code), "upstream body passed through");
        assert_eq!(headers["x-zai-error-class"], "frequency");
        assert_eq!(headers["x-zai-error-code"], code);
        let gaps = attempts.gaps();
        // Jittered base in [base/2, base), then [base, 2·base).
        assert!(gaps[0] >= BASE / 2 && gaps[1] >= BASE, "{gaps:?}");
        assert_eq!(
            total(
                &metrics,
                "zai_proxy_zai_errors_total",
                &["class=\"frequency\"", &format!("code=\"{code}\"")]
            ),
            3.0
        );
        assert_eq!(
            total(
                &metrics,
                "zai_proxy_retry_attempts_total",
                &["reason=\"429\""]
            ),
            2.0
        );
        assert_eq!(
            total(
                &metrics,
                "zai_proxy_retry_attempts_total",
                &["reason=\"retry\""]
            ),
            2.0
        );
        assert_eq!(
            total(
                &metrics,
                "zai_proxy_upstream_errors_total",
                &["error_type=\"429\""]
            ),
            3.0
        );
        // Every attempt, retries included, went through admission.
        assert_eq!(
            total(&metrics, "zai_proxy_rate_limit_wait_seconds_count", &[]),
            3.0
        );
    }
}

#[tokio::test]
async fn concurrency_429_waits_the_plain_base() {
    let (status, headers, _, attempts, metrics) = class_run("1302").await;
    assert_eq!(status, 429);
    assert_eq!(attempts.count(), 3);
    assert_eq!(headers["x-zai-error-class"], "concurrency");
    let gaps = attempts.gaps();
    assert!(gaps[0] >= BASE && gaps[1] >= BASE * 2, "{gaps:?}");
    assert_eq!(
        total(
            &metrics,
            "zai_proxy_zai_errors_total",
            &["class=\"concurrency\"", "code=\"1302\""]
        ),
        3.0
    );
}

#[tokio::test]
async fn model_congestion_429_is_retried() {
    let (status, headers, _, attempts, _) = class_run("1312").await;
    assert_eq!(status, 429);
    assert_eq!(attempts.count(), 3);
    assert_eq!(headers["x-zai-error-class"], "model_congestion");
    let gaps = attempts.gaps();
    assert!(gaps[0] >= BASE / 2 && gaps[1] >= BASE, "{gaps:?}");
}

#[tokio::test]
async fn unknown_429_is_retried_and_reports_its_code() {
    let (status, headers, _, attempts, metrics) = class_run("9999").await;
    assert_eq!(status, 429);
    assert_eq!(attempts.count(), 3);
    assert_eq!(headers["x-zai-error-class"], "unknown");
    assert_eq!(headers["x-zai-error-code"], "9999");
    assert_eq!(
        total(
            &metrics,
            "zai_proxy_zai_errors_total",
            &["class=\"unknown\"", "code=\"other\""]
        ),
        3.0
    );
}

#[tokio::test]
async fn quota_429_answers_at_once_with_reset_metadata() {
    let reset = chrono::Utc::now() + chrono::Duration::hours(1);
    let body = format!(
        r#"{{"error":{{"code":"1308","message":"Usage limit reached","reset_at":"{}"}}}}"#,
        reset.to_rfc3339()
    );
    let sent = body.clone();
    let (upstream, attempts) = scripted(move |_| with_status(429, sent.clone(), &[])).await;
    let proxy = proxy_for(&upstream.url(), 2).await;
    let response = post_messages(&proxy, "{}").await;
    assert_eq!(response.status(), 429);
    assert_eq!(attempts.count(), 1, "quota is never retried");
    let h = response.headers().clone();
    assert_eq!(h["x-zai-error-class"], "quota");
    assert_eq!(h["x-zai-error-code"], "1308");
    let reset_header = h["x-zai-rate-limit-reset"].to_str().expect("ascii");
    let parsed = chrono::DateTime::parse_from_rfc3339(reset_header).expect("RFC3339");
    assert!((parsed.timestamp() - reset.timestamp()).abs() <= 1);
    let retry_after: u64 = h["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("int");
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(response.text().await.expect("body"), body);
}

#[tokio::test]
async fn balance_plan_and_model_errors_are_never_retried() {
    for code in ["1113", "1311", "1214"] {
        let (status, headers, _, attempts, metrics) = class_run(code).await;
        assert_eq!(status, 429);
        assert_eq!(attempts.count(), 1, "{code}");
        assert_eq!(headers["x-zai-error-code"], code);
        assert_eq!(total(&metrics, "zai_proxy_retry_attempts_total", &[]), 0.0);
        assert_eq!(
            total(
                &metrics,
                "zai_proxy_zai_errors_total",
                &[&format!("code=\"{code}\"")]
            ),
            1.0
        );
    }
}

#[tokio::test]
async fn body_retry_after_sets_the_wait_and_the_derived_header() {
    let (upstream, attempts) = scripted(|_| {
        with_status(
            429,
            r#"{"code":1303,"msg":"slow down","retry_after":0.3}"#,
            &[],
        )
    })
    .await;
    let proxy = proxy_for(&upstream.url(), 1).await;
    let response = post_messages(&proxy, "{}").await;
    assert_eq!(response.status(), 429);
    assert_eq!(attempts.count(), 2);
    assert!(attempts.gaps()[0] >= Duration::from_millis(300));
    assert_eq!(response.headers()["retry-after"], "1", "ceil(0.3 s)");
}

#[tokio::test]
async fn upstream_retry_after_header_is_kept_on_the_final_429() {
    let (upstream, attempts) = scripted(|_| {
        with_status(
            429,
            r#"{"code":1303,"retry_after":9}"#,
            &[("retry-after", "7")],
        )
    })
    .await;
    let proxy = proxy_for(&upstream.url(), 0).await;
    let response = post_messages(&proxy, "{}").await;
    assert_eq!(response.status(), 429);
    assert_eq!(attempts.count(), 1);
    assert_eq!(response.headers()["retry-after"], "7");
}

#[tokio::test]
async fn oversize_429_body_is_unknown_and_replayed_truncated() {
    let big = format!(r#"{{"code":1308,"pad":"{}"}}"#, "x".repeat(40_000));
    let (upstream, attempts) = scripted(move |_| with_status(429, big.clone(), &[])).await;
    let proxy = proxy_for(&upstream.url(), 0).await;
    let response = post_messages(&proxy, "{}").await;
    assert_eq!(response.status(), 429);
    assert_eq!(attempts.count(), 1);
    assert_eq!(response.headers()["x-zai-error-class"], "unknown");
    assert!(
        response
            .headers()
            .get("content-length")
            .is_none_or(|v| v == "32768")
    );
    assert_eq!(response.bytes().await.expect("body").len(), 32_768);
}

#[tokio::test]
async fn empty_and_malformed_2xx_bodies_are_retried_until_valid() {
    let (upstream, attempts) = scripted(|n| match n {
        0 => with_status(200, "", &[]),
        1 => with_status(200, r#"{"id":"trunc"#, &[]),
        _ => with_status(200, OK_JSON, &[]),
    })
    .await;
    let proxy = proxy_for(&upstream.url(), 3).await;
    let response = post_messages(&proxy, "{}").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), OK_JSON);
    assert_eq!(attempts.count(), 3);
    let gaps = attempts.gaps();
    assert!(gaps[0] >= BASE && gaps[1] >= BASE * 2, "{gaps:?}");
    let metrics = metrics_text(&proxy.url()).await;
    assert_eq!(
        total(
            &metrics,
            "zai_proxy_retry_attempts_total",
            &["reason=\"truncated_response\""]
        ),
        2.0
    );
    assert_eq!(
        total(
            &metrics,
            "zai_proxy_upstream_errors_total",
            &["error_type=\"truncated_response\""]
        ),
        2.0
    );
}

#[tokio::test]
async fn malformed_after_the_last_attempt_is_502_in_the_client_format() {
    let (upstream, attempts) = scripted(|_| with_status(200, "not json", &[])).await;
    let proxy = proxy_for(&upstream.url(), 2).await;
    let response = post_messages(&proxy, "{}").await;
    assert_eq!(response.status(), 502);
    assert_eq!(attempts.count(), 3);
    let body: serde_json::Value = response.json().await.expect("anthropic error json");
    assert_eq!(body["type"], "error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("empty or malformed"))
    );
}

fn sse(chunks: Vec<&'static str>) -> Response {
    let stream = futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c.as_bytes()))),
    );
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

#[tokio::test]
async fn empty_stream_is_retried() {
    let (upstream, attempts) = scripted(|n| match n {
        0 => sse(vec![]),
        _ => sse(vec!["event: message_stop\ndata: {}\n\n"]),
    })
    .await;
    let proxy = proxy_for(&upstream.url(), 2).await;
    let response = post_messages(&proxy, r#"{"stream":true}"#).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.expect("body"),
        "event: message_stop\ndata: {}\n\n"
    );
    assert_eq!(attempts.count(), 2);
    let metrics = metrics_text(&proxy.url()).await;
    assert_eq!(
        total(
            &metrics,
            "zai_proxy_retry_attempts_total",
            &["reason=\"empty_streaming\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn empty_stream_after_the_last_attempt_is_502() {
    let (upstream, attempts) = scripted(|_| sse(vec![])).await;
    let proxy = proxy_for(&upstream.url(), 1).await;
    let response = post_messages(&proxy, r#"{"stream":true}"#).await;
    assert_eq!(response.status(), 502);
    assert_eq!(attempts.count(), 2);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("empty streaming")
    );
}

#[tokio::test]
async fn no_retry_once_a_byte_reached_the_client() {
    let (upstream, attempts) = scripted(|_| {
        // The first chunk goes out, then the upstream breaks off a little later.
        let stream = futures::stream::unfold(0u8, |step| async move {
            match step {
                0 => Some((
                    Ok(Bytes::from_static(b"event: message_start\ndata: {}\n\n")),
                    1,
                )),
                1 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Err(std::io::Error::other("upstream broke mid-stream")), 2))
                }
                _ => None,
            }
        });
        let mut r = Response::new(Body::from_stream(stream));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r
    })
    .await;
    let proxy = proxy_for(&upstream.url(), 3).await;
    let response = post_messages(&proxy, r#"{"stream":true}"#).await;
    assert_eq!(response.status(), 200, "committed on the first chunk");
    let _ = response.bytes().await; // the body breaks off
    tokio::time::sleep(BASE * 4).await;
    assert_eq!(attempts.count(), 1, "a started response is never retried");
}

/// A TCP upstream that reads a request and closes without answering; counts connections.
async fn closing_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test]
async fn network_errors_are_retried_then_502() {
    let (url, accepted) = closing_upstream().await;
    let proxy = proxy_for(&url, 3).await;
    let started = Instant::now();
    let response = client()
        .post(format!("{}/v1/chat/completions", proxy.url()))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
    // 1 + 2 + 4 bases of backoff.
    assert!(started.elapsed() >= BASE * 7);
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    let text = response.text().await.expect("body");
    assert!(!text.contains(FAKE_KEY));
    let body: serde_json::Value = serde_json::from_str(&text).expect("openai error json");
    assert!(body["error"]["message"].is_string());
    let metrics = metrics_text(&proxy.url()).await;
    assert_eq!(
        total(
            &metrics,
            "zai_proxy_retry_attempts_total",
            &["reason=\"network_error\""]
        ),
        3.0
    );
    assert_eq!(
        total(
            &metrics,
            "zai_proxy_upstream_errors_total",
            &["error_type=\"upstream_connection\""]
        ),
        4.0
    );
}

#[tokio::test]
async fn client_going_away_cancels_the_retry_wait() {
    // 1302 waits the plain base before retrying; the client gives up well before that.
    let (upstream, attempts) = scripted(|_| with_status(429, zai_429("1302"), &[])).await;
    let mut config = test_config(&upstream.url());
    config.retry.max_retries = 3;
    config.retry.base_delay = Duration::from_millis(400);
    let proxy = start_proxy(config).await;
    let gone = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .body("{}")
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(gone.is_err(), "the client timed out");
    // Had the wait not been cancelled, attempt 2 would arrive at ~400 ms.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        attempts.count(),
        1,
        "no further attempt after the client left"
    );
    let metrics = metrics_text(&proxy.url()).await;
    assert_eq!(
        total(&metrics, "zai_proxy_rate_limit_wait_seconds_count", &[]),
        1.0
    );
    assert_eq!(total(&metrics, "zai_proxy_retry_attempts_total", &[]), 0.0);
    assert_eq!(
        total(
            &metrics,
            "zai_proxy_requests_total",
            &["status_code=\"429\""]
        ),
        0.0,
        "nothing was answered"
    );
}

#[tokio::test]
async fn other_statuses_pass_through_unretried() {
    for status in [400u16, 401, 404, 422, 500, 503] {
        let (upstream, attempts) =
            scripted(move |_| with_status(status, r#"{"error":"as upstream said"}"#, &[])).await;
        let proxy = proxy_for(&upstream.url(), 3).await;
        let response = post_messages(&proxy, "{}").await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.text().await.expect("body"),
            r#"{"error":"as upstream said"}"#
        );
        assert_eq!(attempts.count(), 1, "{status} must not be retried");
    }
}

#[tokio::test]
async fn binary_retries_a_frequency_429_with_env_settings() {
    let (upstream, attempts) = scripted(|n| {
        if n < 2 {
            with_status(429, zai_429("1303"), &[])
        } else {
            with_status(200, OK_JSON, &[])
        }
    })
    .await;
    let target = upstream.url();
    let mut proxy = BinaryProxy::spawn(&[
        ("ZAI_API_KEY", FAKE_KEY),
        ("ZAI_TARGET_URL", &target),
        ("MAX_RETRIES", "2"),
        ("RETRY_BASE_DELAY", "50ms"),
        ("TOKEN_COUNTING_ENABLED", "false"),
        ("SHUTDOWN_READINESS_DELAY", "0s"),
    ]);
    let addr = proxy.wait_listening(Duration::from_secs(30)).await;
    let response = client()
        .post(format!("http://{addr}/v1/messages"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), OK_JSON);
    assert_eq!(attempts.count(), 3);
    let gaps = attempts.gaps();
    assert!(gaps[0] >= Duration::from_millis(25) && gaps[1] >= Duration::from_millis(50));
    proxy.sigterm();
    let _ = proxy.wait_exit(Duration::from_secs(10)).await;
    let logs = proxy.output().join("\n");
    assert!(
        logs.contains("429 frequency (code 1303), retrying (attempt 2/3)"),
        "{logs}"
    );
    assert!(logs.contains("Retry attempt 3/3"), "{logs}");
    assert!(!logs.contains(FAKE_KEY));
    assert!(
        !logs.contains("rate limited"),
        "provider message text is never logged"
    );
}
