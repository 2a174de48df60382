//! The Prometheus signal source: the seed checklist's PromQL (label `status_code`, variant and
//! window substituted) over the HTTP API, and `/api/v1/alerts` for the canary alerts.
//!
//! Every non-answer is explicit: an empty vector, `NaN` or `±Inf` is `no_data` with the
//! reason; HTTP errors, Prometheus `error` answers, timeouts and malformed JSON are `error`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::cohort::{Cohort, Cohorts};
use super::{Alert, AlertState, Measurement, Reading, Signal, SignalQuery, SignalSource};
use crate::error::{Error, Result};
use crate::platform::PodInfo;

/// Renders the PromQL for a query. `selector` is extra label matchers (e.g. `namespace="mcp"`).
pub fn promql(q: &SignalQuery, selector: &str) -> String {
    let w = format!("{}s", q.window.as_secs().max(1));
    let extra = if selector.trim().is_empty() {
        String::new()
    } else {
        format!(",{}", selector.trim().trim_matches(','))
    };
    let v = format!("variant=\"{}\"{extra}", q.variant.label());
    let all = format!("sum(rate(zai_proxy_requests_total{{{v}}}[{w}]))");
    let class = |c: &str| {
        format!(
            "(sum(rate(zai_proxy_requests_total{{{v},status_code=~\"{c}..\"}}[{w}])) or 0 * {all}) / {all}"
        )
    };
    let quantile = |metric: &str, permille: u16| {
        format!(
            "histogram_quantile({}, sum(rate({metric}_bucket{{{v}}}[{w}])) by (le))",
            f64::from(permille) / 1000.0
        )
    };
    match q.signal {
        Signal::RequestRate => all,
        Signal::RequestCount => format!("sum(increase(zai_proxy_requests_total{{{v}}}[{w}]))"),
        Signal::ErrorRatio => class("5"),
        Signal::SuccessRatio => class("2"),
        Signal::LatencyQuantile { permille } => {
            quantile("zai_proxy_request_duration_seconds", permille)
        }
        Signal::TokenCountQuantile { permille } => {
            quantile("zai_proxy_token_count_duration_seconds", permille)
        }
        Signal::TokensIncrease => {
            format!("sum(increase(zai_proxy_tokens_total{{{v}}}[{w}])) or vector(0)")
        }
        Signal::TokenSeries => format!("count(zai_proxy_tokens_total{{{v}}}) or vector(0)"),
        Signal::ErrorCount => format!(
            "sum(increase(zai_proxy_requests_total{{{v},status_code=~\"5..\"}}[{w}])) or 0 * sum(increase(zai_proxy_requests_total{{{v}}}[{w}]))"
        ),
        Signal::LatencyBuckets => {
            format!("sum by (le) (increase(zai_proxy_request_duration_seconds_bucket{{{v}}}[{w}]))")
        }
        // The proxy pre-creates the `auth` series at zero: no series means no proxy scraped.
        Signal::UpstreamAuthFailures => format!(
            "sum(increase(zai_proxy_upstream_errors_total{{{v},error_type=\"auth\"}}[{w}]))"
        ),
        // The proxy pre-creates every outcome's series at zero, as for auth failures.
        Signal::StreamCutCount => {
            format!("sum(increase(zai_proxy_streams_total{{{v},outcome=\"upstream_cut\"}}[{w}]))")
        }
    }
}

/// The label matchers of a query over `cohort`: `selector` plus a `pod` matcher listing the
/// cohort's pods seen so far (Prometheus's `pod` target label, as deploy/kind/prometheus and
/// the rehearsal's Prometheus set it). No pod seen yet is an error with the reason (the
/// reading is then `no_data`).
pub fn cohort_selector(
    selector: &str,
    cohorts: &Cohorts,
    cohort: Cohort,
) -> std::result::Result<String, String> {
    if cohort.is_all() {
        return Ok(selector.to_owned());
    }
    let pods = cohorts.members(cohort);
    if pods.is_empty() {
        return Err(format!("no {} seen yet", cohort.label()));
    }
    let alternatives: Vec<String> = pods.iter().map(|p| regex_escape(p)).collect();
    let pod = format!("pod=~\"{}\"", alternatives.join("|"));
    let selector = selector.trim().trim_matches(',');
    Ok(if selector.is_empty() {
        pod
    } else {
        format!("{selector},{pod}")
    })
}

/// Escapes a pod name for a PromQL regex inside a double-quoted string (Kubernetes names
/// are `[a-z0-9.-]`, so in practice only `.` needs it).
fn regex_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            out.push(c);
        } else if c == '"' {
            out.push_str("\\\"");
        } else {
            out.push_str("\\\\");
            out.push(c);
        }
    }
    out
}

/// Interprets the `data` of a `sum by (le)` bucket query (pure, for tests): cumulative
/// counts by upper bound, sorted, `+Inf` last.
pub fn buckets_from_data(result_type: &str, result: &serde_json::Value) -> Reading {
    if result_type != "vector" {
        return Reading::Error(format!("unexpected result type {result_type}"));
    }
    let Some(items) = result.as_array() else {
        return Reading::Error("malformed vector".into());
    };
    if items.is_empty() {
        return Reading::NoData("empty vector (no histogram series)".into());
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let le = item
            .get("metric")
            .and_then(|m| m.get("le"))
            .and_then(|l| l.as_str());
        let value = item
            .get("value")
            .and_then(|v| v.as_array())
            .and_then(|v| v.get(1))
            .and_then(|v| v.as_str());
        let (Some(le), Some(value)) = (le, value) else {
            return Reading::Error("bucket series without le or value".into());
        };
        let bound = match le {
            "+Inf" | "Inf" => f64::INFINITY,
            t => match t.parse::<f64>() {
                // A NaN bound has no place in the order (it would sort after +Inf).
                Ok(b) if !b.is_nan() => b,
                _ => return Reading::Error(format!("bad le {t}")),
            },
        };
        let count = match value.parse::<f64>() {
            Ok(c) if c.is_finite() => c.max(0.0),
            Ok(_) => 0.0,
            Err(_) => return Reading::Error(format!("not a number: {value}")),
        };
        out.push((bound, count));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Reading::Buckets(out)
}

#[derive(Deserialize)]
struct ApiResponse<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct AlertsData {
    alerts: Vec<ApiAlert>,
}

#[derive(Deserialize)]
struct ApiAlert {
    labels: std::collections::BTreeMap<String, String>,
    state: String,
    #[serde(default)]
    value: Option<String>,
}

/// Interprets the `data` of an instant query (pure, for tests).
pub fn reading_from_data(result_type: &str, result: &serde_json::Value) -> Reading {
    let parse_pair = |pair: &serde_json::Value| -> Option<String> {
        pair.as_array()?.get(1)?.as_str().map(str::to_owned)
    };
    let text = match result_type {
        "scalar" => parse_pair(result),
        "vector" => {
            let Some(items) = result.as_array() else {
                return Reading::Error("malformed vector".into());
            };
            match items.len() {
                0 => return Reading::NoData("empty vector (no matching series)".into()),
                1 => items[0].get("value").and_then(parse_pair),
                n => return Reading::Error(format!("expected one series, got {n}")),
            }
        }
        other => return Reading::Error(format!("unexpected result type {other}")),
    };
    let Some(text) = text else {
        return Reading::Error("malformed sample".into());
    };
    match text.as_str() {
        "NaN" => Reading::NoData("NaN (0/0: no requests or observations in the window)".into()),
        "+Inf" | "Inf" => Reading::NoData("+Inf (no finite histogram bucket)".into()),
        "-Inf" => Reading::NoData("-Inf".into()),
        t => match t.parse::<f64>() {
            Ok(v) if v.is_finite() => Reading::Value(v),
            Ok(v) => Reading::NoData(format!("{v}")),
            Err(_) => Reading::Error(format!("not a number: {t}")),
        },
    }
}

/// The Prometheus source.
pub struct PrometheusSource {
    base: String,
    selector: String,
    client: reqwest::Client,
    timeout: Duration,
    cohorts: Cohorts,
}

impl PrometheusSource {
    /// A source querying `base_url` (e.g. `http://127.0.0.1:9090`) with a per-request timeout.
    pub fn new(base_url: &str, selector: &str, timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| Error::signals(format!("cannot build HTTP client: {e}")))?;
        Ok(PrometheusSource {
            base: base_url.trim_end_matches('/').to_owned(),
            selector: selector.to_owned(),
            client,
            timeout,
            cohorts: Cohorts::default(),
        })
    }

    /// The body of `GET path?query` and its HTTP status.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> std::result::Result<(u16, String), String> {
        let url = format!("{}{path}", self.base);
        let full = reqwest::Url::parse_with_params(&url, query)
            .map_err(|e| format!("bad Prometheus URL {url}: {e}"))?;
        let resp = self.client.get(full).send().await.map_err(|e| {
            if e.is_timeout() {
                format!(
                    "timeout after {} ({url})",
                    crate::duration_serde::human(self.timeout)
                )
            } else {
                format!("request to {url} failed: {e}")
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("reading the answer of {url} failed: {e}"))?;
        Ok((status, body))
    }
}

/// The `data` of a Prometheus HTTP API answer (pure, the parser the fuzz target `prom_api`
/// drives): a `success` answer with a 2xx `status` gives its `data`; anything else is an
/// error naming the HTTP status and Prometheus's `errorType`/`error`, or the first 200
/// characters of a body that is not the API's JSON.
pub fn api_data<T: DeserializeOwned>(status: u16, body: &str) -> std::result::Result<T, String> {
    let success = (200..300).contains(&status);
    let parsed: std::result::Result<ApiResponse<T>, _> = serde_json::from_str(body);
    match parsed {
        Ok(r) if r.status == "success" && success => {
            r.data.ok_or_else(|| "success without data".to_owned())
        }
        Ok(r) => Err(format!(
            "HTTP {status}: {} {}",
            r.error_type.unwrap_or_default(),
            r.error.unwrap_or_default()
        )),
        Err(_) if !success => Err(format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        )),
        Err(e) => Err(format!("malformed answer: {e}")),
    }
}

/// The reading of an instant-query answer for `signal` (pure): what
/// [`PrometheusSource::measure`] makes of the HTTP status and body of `/api/v1/query`.
pub fn query_reading(signal: Signal, status: u16, body: &str) -> Reading {
    match api_data::<QueryData>(status, body) {
        Ok(d) if signal == Signal::LatencyBuckets => buckets_from_data(&d.result_type, &d.result),
        Ok(d) => reading_from_data(&d.result_type, &d.result),
        Err(e) => Reading::Error(e),
    }
}

/// The pending and firing alerts of an `/api/v1/alerts` answer (pure): what
/// [`PrometheusSource::alerts`] makes of its HTTP status and body. Alerts without an
/// `alertname` label, or in another state (`inactive`), are left out.
pub fn alerts_from_answer(status: u16, body: &str) -> std::result::Result<Vec<Alert>, String> {
    let data: AlertsData = api_data(status, body)?;
    Ok(data
        .alerts
        .into_iter()
        .filter_map(|a| {
            let name = a.labels.get("alertname")?.clone();
            let state = match a.state.as_str() {
                "firing" => AlertState::Firing,
                "pending" => AlertState::Pending,
                _ => return None,
            };
            Some(Alert {
                name,
                state,
                evaluated_locally: false,
                detail: a.value.unwrap_or_default(),
            })
        })
        .collect())
}

#[async_trait]
impl SignalSource for PrometheusSource {
    fn name(&self) -> &str {
        "prometheus"
    }

    async fn refresh(&mut self, pods: &[PodInfo], _now: DateTime<Utc>) -> Result<()> {
        self.cohorts.note(pods);
        Ok(())
    }

    fn set_new_version(&mut self, version: &str) {
        self.cohorts.set_new_version(version);
    }

    async fn measure(&mut self, query: &SignalQuery, _now: DateTime<Utc>) -> Measurement {
        let selector = match cohort_selector(&self.selector, &self.cohorts, query.cohort) {
            Ok(selector) => selector,
            Err(why) => {
                return Measurement {
                    reading: Reading::NoData(why),
                    source: promql(query, &self.selector),
                };
            }
        };
        let text = promql(query, &selector);
        let reading = match self.get("/api/v1/query", &[("query", &text)]).await {
            Ok((status, body)) => query_reading(query.signal, status, &body),
            Err(e) => Reading::Error(e),
        };
        Measurement {
            reading,
            source: text,
        }
    }

    async fn alerts(&mut self, _now: DateTime<Utc>) -> Result<Vec<Alert>> {
        let (status, body) = self
            .get("/api/v1/alerts", &[])
            .await
            .map_err(Error::signals)?;
        alerts_from_answer(status, &body).map_err(Error::signals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Variant;
    use serde_json::json;

    #[test]
    fn cohort_queries_list_the_versions_pods() {
        let pod = |name: &str, version: &str| super::super::cohort::tests::pod(name, Some(version));
        let mut cohorts = Cohorts::default();
        cohorts.note(&[pod("zai-proxy-a.1", "1.2.0"), pod("zai-proxy-b", "1.2.1")]);
        assert_eq!(
            cohort_selector("namespace=\"mcp\"", &cohorts, Cohort::All).unwrap(),
            "namespace=\"mcp\""
        );
        assert!(cohort_selector("", &cohorts, Cohort::NewVersion).is_err());
        cohorts.set_new_version("1.2.1");
        assert_eq!(
            cohort_selector("namespace=\"mcp\",", &cohorts, Cohort::NewVersion).unwrap(),
            "namespace=\"mcp\",pod=~\"zai-proxy-b\""
        );
        let old = cohort_selector("", &cohorts, Cohort::OldVersion).unwrap();
        assert_eq!(old, "pod=~\"zai-proxy-a\\\\.1\"");
        let q = SignalQuery::new(
            Signal::ErrorCount,
            Variant::Production,
            Duration::from_secs(60),
        );
        assert!(promql(&q, &old).contains("variant=\"production\",pod=~\"zai-proxy-a\\\\.1\""));
    }

    #[test]
    fn queries_use_status_code_and_substitute_variant_and_window() {
        let q = SignalQuery::new(
            Signal::ErrorRatio,
            Variant::Production,
            Duration::from_secs(300),
        );
        let text = promql(&q, "");
        assert!(text.contains("status_code=~\"5..\""), "{text}");
        assert!(text.contains("variant=\"production\""));
        assert!(text.contains("[300s]"));
        assert!(!text.contains("status=~"));
        let text = promql(&q, "namespace=\"mcp\"");
        assert!(
            text.contains("variant=\"production\",namespace=\"mcp\""),
            "{text}"
        );
    }

    /// Found by review while writing prom_api's bucket property (the 10-minute run did not
    /// reach it): `le="NaN"` parsed as a NaN bound, sorted after `+Inf`.
    #[test]
    fn a_nan_bucket_bound_is_an_error() {
        let r = buckets_from_data(
            "vector",
            &json!([
                {"metric": {"le": "0.1"}, "value": [1.0, "5"]},
                {"metric": {"le": "NaN"}, "value": [1.0, "6"]},
                {"metric": {"le": "+Inf"}, "value": [1.0, "10"]}
            ]),
        );
        assert_eq!(r, Reading::Error("bad le NaN".into()));
    }

    #[test]
    fn bucket_vectors_become_sorted_cumulative_counts() {
        let r = buckets_from_data(
            "vector",
            &json!([
                {"metric": {"le": "+Inf"}, "value": [1.0, "10"]},
                {"metric": {"le": "0.1"}, "value": [1.0, "4"]},
                {"metric": {"le": "0.05"}, "value": [1.0, "NaN"]}
            ]),
        );
        assert_eq!(
            r,
            Reading::Buckets(vec![(0.05, 0.0), (0.1, 4.0), (f64::INFINITY, 10.0)])
        );
        assert!(matches!(
            buckets_from_data("vector", &json!([])),
            Reading::NoData(_)
        ));
        assert!(matches!(
            buckets_from_data("vector", &json!([{"metric": {}, "value": [1.0, "3"]}])),
            Reading::Error(_)
        ));
    }

    #[test]
    fn empty_nan_inf_and_garbage_are_explicit() {
        assert_eq!(
            reading_from_data("vector", &json!([{"metric": {}, "value": [1.0, "0.25"]}])),
            Reading::Value(0.25)
        );
        assert!(matches!(
            reading_from_data("vector", &json!([])),
            Reading::NoData(_)
        ));
        assert!(matches!(
            reading_from_data("vector", &json!([{"metric": {}, "value": [1.0, "NaN"]}])),
            Reading::NoData(_)
        ));
        assert!(matches!(
            reading_from_data("vector", &json!([{"metric": {}, "value": [1.0, "+Inf"]}])),
            Reading::NoData(_)
        ));
        assert!(matches!(
            reading_from_data("vector", &json!([{"value": [1, "1"]}, {"value": [1, "2"]}])),
            Reading::Error(_)
        ));
        assert!(matches!(
            reading_from_data("matrix", &json!([])),
            Reading::Error(_)
        ));
        assert_eq!(
            reading_from_data("scalar", &json!([1.0, "3"])),
            Reading::Value(3.0)
        );
        assert!(matches!(
            reading_from_data("vector", &json!([{"metric": {}, "value": [1.0, "x"]}])),
            Reading::Error(_)
        ));
    }
}
