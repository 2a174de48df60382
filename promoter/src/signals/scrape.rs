//! The embedded signal source: scrapes each pod's `/metrics` every tick, keeps a bounded
//! window of samples per pod, and computes the same quantities as the Prometheus queries —
//! increases with counter resets handled, ratios, histogram quantiles with Prometheus's
//! interpolation. The four canary alerts are evaluated locally from the same conditions as
//! deploy/prometheus/zai-proxy-rules.yml and marked `evaluated_locally`.
//!
//! Differences from PromQL: `increase` is the sum of reset-adjusted deltas between scrapes
//! inside the window (no extrapolation to the window edges); `rate` divides it by the time
//! those scrapes span. A quantity needs two scrapes of at least one pod inside the window.
//! A [`Cohort`] query sums only the pods of that version (pods are remembered with their
//! `version` label at every refresh).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::canary_rules::{self, CanaryRules};
use super::cohort::{Cohort, Cohorts};
use super::histogram::histogram_quantile;
use super::{Alert, AlertState, Measurement, Reading, Signal, SignalQuery, SignalSource};
use crate::error::{Error, Result};
use crate::platform::{Platform, PodInfo, Variant};

/// How a reading names the pods it looked at: `production`, or `production new-version`.
fn pods_of(q: &SignalQuery) -> String {
    match q.cohort {
        Cohort::All => q.variant.to_string(),
        Cohort::NewVersion => format!("{} new-version", q.variant),
        Cohort::OldVersion => format!("{} old-version", q.variant),
    }
}

/// Cumulative histogram buckets: (upper bound, cumulative count), sorted by bound.
pub type Buckets = Vec<(f64, f64)>;

/// What one scrape of one pod contributes (its own variant's series only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScrapeData {
    /// `zai_proxy_requests_total` summed by `status_code`.
    pub requests: BTreeMap<String, f64>,
    /// `zai_proxy_request_duration_seconds` buckets summed over labels.
    pub latency: Buckets,
    /// `zai_proxy_token_count_duration_seconds` buckets.
    pub token_count: Buckets,
    /// `zai_proxy_tokens_total` summed.
    pub tokens: f64,
    /// Number of `zai_proxy_tokens_total` series.
    pub token_series: usize,
    /// `zai_proxy_upstream_errors_total{error_type="auth"}`.
    pub auth_failures: f64,
    /// `zai_proxy_streams_total{outcome="upstream_cut"}`.
    pub streams_cut: f64,
}

fn add_bucket(b: &mut Buckets, le: f64, count: f64) {
    match b.iter_mut().find(|(l, _)| *l == le) {
        Some(x) => x.1 += count,
        None => {
            b.push((le, count));
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
        }
    }
}

/// A counter or cumulative bucket sample the promoter can use: finite and not negative
/// (`NaN`, `±Inf` and negative samples come from a broken exporter and are left out, as
/// are buckets whose `le` is `NaN`).
fn usable(count: f64) -> bool {
    count.is_finite() && count >= 0.0
}

/// Parses exposition text, keeping the series whose `variant` label is `variant` (series
/// without a variant label are kept too). Samples that are not finite or are negative, and
/// buckets with a `NaN` bound, are skipped.
pub fn parse_exposition(text: &str, variant: Variant) -> std::result::Result<ScrapeData, String> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    let mut d = ScrapeData::default();
    for s in &scrape.samples {
        if s.labels
            .get("variant")
            .is_some_and(|v| v != variant.label())
        {
            continue;
        }
        let name = s.metric.trim_end_matches("_bucket");
        match (&s.value, name) {
            (
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v),
                "zai_proxy_requests_total",
            ) if usable(*v) => {
                let code = s.labels.get("status_code").unwrap_or("unknown").to_owned();
                *d.requests.entry(code).or_default() += v;
            }
            (
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v),
                "zai_proxy_tokens_total",
            ) if usable(*v) => {
                d.tokens += v;
                d.token_series += 1;
            }
            (
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v),
                "zai_proxy_upstream_errors_total",
            ) if usable(*v) && s.labels.get("error_type") == Some("auth") => {
                d.auth_failures += v;
            }
            (
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v),
                "zai_proxy_streams_total",
            ) if usable(*v) && s.labels.get("outcome") == Some("upstream_cut") => {
                d.streams_cut += v;
            }
            (prometheus_parse::Value::Histogram(hs), "zai_proxy_request_duration_seconds") => {
                for h in hs
                    .iter()
                    .filter(|h| !h.less_than.is_nan() && usable(h.count))
                {
                    add_bucket(&mut d.latency, h.less_than, h.count);
                }
            }
            (prometheus_parse::Value::Histogram(hs), "zai_proxy_token_count_duration_seconds") => {
                for h in hs
                    .iter()
                    .filter(|h| !h.less_than.is_nan() && usable(h.count))
                {
                    add_bucket(&mut d.token_count, h.less_than, h.count);
                }
            }
            _ => {}
        }
    }
    Ok(d)
}

/// Reset-adjusted increase of one counter between two scrapes (Prometheus: a drop is a reset
/// and the new value is the increase since it).
fn counter_delta(prev: f64, cur: f64) -> f64 {
    if cur < prev { cur } else { cur - prev }
}

/// The increase of every quantity between two consecutive scrapes of one pod.
fn delta(prev: &ScrapeData, cur: &ScrapeData) -> ScrapeData {
    let mut d = ScrapeData::default();
    for (code, v) in &cur.requests {
        let p = prev.requests.get(code).copied().unwrap_or(0.0);
        d.requests.insert(code.clone(), counter_delta(p, *v));
    }
    let buckets = |p: &Buckets, c: &Buckets| -> Buckets {
        // A reset of the histogram shows as a drop of its +Inf (total) bucket.
        let reset = p.last().map(|x| x.1).unwrap_or(0.0) > c.last().map(|x| x.1).unwrap_or(0.0);
        c.iter()
            .map(|(le, v)| {
                let pv = p.iter().find(|(l, _)| l == le).map(|x| x.1).unwrap_or(0.0);
                (*le, if reset { *v } else { counter_delta(pv, *v) })
            })
            .collect()
    };
    d.latency = buckets(&prev.latency, &cur.latency);
    d.token_count = buckets(&prev.token_count, &cur.token_count);
    d.tokens = counter_delta(prev.tokens, cur.tokens);
    d.token_series = cur.token_series;
    d.auth_failures = counter_delta(prev.auth_failures, cur.auth_failures);
    d.streams_cut = counter_delta(prev.streams_cut, cur.streams_cut);
    d
}

/// Scrapes of one pod over time.
#[derive(Debug, Clone)]
struct PodSeries {
    variant: Variant,
    points: VecDeque<(DateTime<Utc>, ScrapeData)>,
}

/// Sums over a window, across pods.
#[derive(Debug, Clone, Default)]
struct WindowSums {
    data: ScrapeData,
    pairs: usize,
    span_secs: f64,
}

/// Quantities computed from a set of pod series (pure; the unit under test).
#[derive(Debug, Clone, Default)]
pub struct ScrapeStore {
    pods: BTreeMap<String, PodSeries>,
    retention: Duration,
    cohorts: Cohorts,
}

impl ScrapeStore {
    /// A store keeping `retention` of scrapes per pod.
    pub fn new(retention: Duration) -> Self {
        ScrapeStore {
            pods: BTreeMap::new(),
            retention,
            cohorts: Cohorts::default(),
        }
    }

    /// Remembers the pods' versions (for [`Cohort`] queries).
    pub fn note_pods(&mut self, pods: &[PodInfo]) {
        self.cohorts.note(pods);
    }

    /// The version being rolled out (for [`Cohort`] queries).
    pub fn set_new_version(&mut self, version: &str) {
        self.cohorts.set_new_version(version);
    }

    /// The series of `variant`'s pods in `cohort`.
    fn series(&self, variant: Variant, cohort: Cohort) -> impl Iterator<Item = &PodSeries> {
        self.pods
            .iter()
            .filter(move |(name, s)| s.variant == variant && self.cohorts.contains(cohort, name))
            .map(|(_, s)| s)
    }

    /// Adds one scrape of one pod and forgets what is older than the retention.
    pub fn add(&mut self, pod: &str, variant: Variant, at: DateTime<Utc>, data: ScrapeData) {
        let series = self
            .pods
            .entry(pod.to_owned())
            .or_insert_with(|| PodSeries {
                variant,
                points: VecDeque::new(),
            });
        series.variant = variant;
        series.points.push_back((at, data));
        let horizon = crate::duration_serde::minus(at, self.retention);
        for s in self.pods.values_mut() {
            while s.points.front().is_some_and(|(t, _)| *t < horizon) {
                s.points.pop_front();
            }
        }
        self.pods.retain(|_, s| !s.points.is_empty());
    }

    fn sums(&self, q: &SignalQuery, now: DateTime<Utc>) -> WindowSums {
        let start = crate::duration_serde::minus(now, q.window);
        let mut w = WindowSums::default();
        let (mut first, mut last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
        for s in self.series(q.variant, q.cohort) {
            let pts: Vec<_> = s
                .points
                .iter()
                .filter(|(t, _)| *t >= start && *t <= now)
                .collect();
            for pair in pts.windows(2) {
                let d = delta(&pair[0].1, &pair[1].1);
                for (code, v) in d.requests {
                    *w.data.requests.entry(code).or_default() += v;
                }
                for (le, v) in d.latency {
                    add_bucket(&mut w.data.latency, le, v);
                }
                for (le, v) in d.token_count {
                    add_bucket(&mut w.data.token_count, le, v);
                }
                w.data.tokens += d.tokens;
                w.data.auth_failures += d.auth_failures;
                w.data.streams_cut += d.streams_cut;
                w.pairs += 1;
                first = Some(first.map_or(pair[0].0, |f| f.min(pair[0].0)));
                last = Some(last.map_or(pair[1].0, |l| l.max(pair[1].0)));
            }
        }
        if let (Some(f), Some(l)) = (first, last) {
            w.span_secs = (l - f).num_milliseconds() as f64 / 1000.0;
        }
        w
    }

    /// How far back the scrapes of a variant's cohort reach from `now`.
    fn covered(&self, variant: Variant, cohort: Cohort, now: DateTime<Utc>) -> Duration {
        self.series(variant, cohort)
            .filter_map(|s| s.points.front().map(|(t, _)| *t))
            .min()
            .and_then(|t| (now - t).to_std().ok())
            .unwrap_or(Duration::ZERO)
    }

    fn latest_token_series(&self, variant: Variant, cohort: Cohort) -> Option<usize> {
        let mut any = false;
        let mut n = 0;
        for s in self.series(variant, cohort) {
            if let Some((_, d)) = s.points.back() {
                any = true;
                n += d.token_series;
            }
        }
        any.then_some(n)
    }

    /// Answers one query as of `now`: a finite value or finite bucket counts (sums of
    /// counters so large that they overflow `f64` are an error, never `inf` or `NaN`).
    pub fn measure(&self, q: &SignalQuery, now: DateTime<Utc>) -> Reading {
        match self.measure_raw(q, now) {
            Reading::Value(v) if !v.is_finite() => {
                Reading::Error(format!("{} is not a finite number ({v})", q.signal))
            }
            Reading::Buckets(b) if b.iter().any(|(_, c)| !c.is_finite()) => Reading::Error(
                format!("{}: bucket counts are not finite numbers", q.signal),
            ),
            reading => reading,
        }
    }

    fn measure_raw(&self, q: &SignalQuery, now: DateTime<Utc>) -> Reading {
        if q.signal == Signal::TokenSeries {
            return match self.latest_token_series(q.variant, q.cohort) {
                Some(n) => Reading::Value(n as f64),
                None => Reading::NoData(format!("no {} pod scraped", pods_of(q))),
            };
        }
        let w = self.sums(q, now);
        if w.pairs == 0 {
            return Reading::NoData(format!(
                "fewer than two scrapes of any {} pod in the last {}",
                pods_of(q),
                crate::duration_serde::human(q.window)
            ));
        }
        let total: f64 = w.data.requests.values().sum();
        // Zero requests in a window the scrapes do not cover yet is not evidence of no traffic
        // (the promoter just started): wait until 90 % of the window has been scraped.
        if total == 0.0 && matches!(q.signal, Signal::RequestCount | Signal::RequestRate) {
            let covered = self.covered(q.variant, q.cohort, now);
            if covered.as_secs_f64() < q.window.as_secs_f64() * 0.9 {
                return Reading::NoData(format!(
                    "no requests in the {} scraped so far of the {} window",
                    crate::duration_serde::human(covered),
                    crate::duration_serde::human(q.window)
                ));
            }
        }
        let by_class = |c: char| -> f64 {
            w.data
                .requests
                .iter()
                .filter(|(code, _)| code.len() == 3 && code.starts_with(c))
                .map(|(_, v)| v)
                .sum()
        };
        let ratio = |part: f64| {
            if total > 0.0 {
                Reading::Value(part / total)
            } else {
                Reading::NoData("no requests in the window".into())
            }
        };
        let quantile = |b: &Buckets, permille: u16| {
            let v = histogram_quantile(f64::from(permille) / 1000.0, b);
            if v.is_finite() {
                Reading::Value(v)
            } else {
                Reading::NoData("no observations in the window".into())
            }
        };
        match q.signal {
            Signal::RequestCount => Reading::Value(total),
            Signal::RequestRate if w.span_secs > 0.0 => Reading::Value(total / w.span_secs),
            Signal::RequestRate => Reading::NoData("scrapes span no time".into()),
            Signal::ErrorRatio => ratio(by_class('5')),
            Signal::SuccessRatio => ratio(by_class('2')),
            Signal::LatencyQuantile { permille } => quantile(&w.data.latency, permille),
            Signal::TokenCountQuantile { permille } => quantile(&w.data.token_count, permille),
            Signal::TokensIncrease => Reading::Value(w.data.tokens),
            Signal::UpstreamAuthFailures => Reading::Value(w.data.auth_failures),
            Signal::TokenSeries => Reading::NoData("unreachable".into()),
            Signal::ErrorCount => Reading::Value(by_class('5')),
            Signal::StreamCutCount => Reading::Value(w.data.streams_cut),
            Signal::LatencyBuckets if w.data.latency.is_empty() => {
                Reading::NoData("no request-duration histogram in the window".into())
            }
            Signal::LatencyBuckets => Reading::Buckets(w.data.latency.clone()),
        }
    }

    /// Describes how a query is computed, for reports.
    pub fn describe(q: &SignalQuery) -> String {
        let all = Self::describe_all(q);
        if q.cohort.is_all() {
            all
        } else {
            format!("{all}, {} only", q.cohort.label())
        }
    }

    fn describe_all(q: &SignalQuery) -> String {
        let w = crate::duration_serde::human(q.window);
        let v = q.variant.label();
        match q.signal {
            Signal::RequestCount => {
                format!("scrape: Σ increase zai_proxy_requests_total{{variant=\"{v}\"}} over {w}")
            }
            Signal::RequestRate => format!(
                "scrape: Σ increase zai_proxy_requests_total{{variant=\"{v}\"}} / scrape span, {w}"
            ),
            Signal::ErrorRatio => {
                format!("scrape: 5xx / all zai_proxy_requests_total{{variant=\"{v}\"}} over {w}")
            }
            Signal::SuccessRatio => {
                format!("scrape: 2xx / all zai_proxy_requests_total{{variant=\"{v}\"}} over {w}")
            }
            Signal::LatencyQuantile { permille } => format!(
                "scrape: histogram_quantile({}, zai_proxy_request_duration_seconds{{variant=\"{v}\"}} increases over {w})",
                f64::from(permille) / 1000.0
            ),
            Signal::TokenCountQuantile { permille } => format!(
                "scrape: histogram_quantile({}, zai_proxy_token_count_duration_seconds{{variant=\"{v}\"}} increases over {w})",
                f64::from(permille) / 1000.0
            ),
            Signal::TokensIncrease => {
                format!("scrape: Σ increase zai_proxy_tokens_total{{variant=\"{v}\"}} over {w}")
            }
            Signal::TokenSeries => {
                format!("scrape: count zai_proxy_tokens_total{{variant=\"{v}\"}} series")
            }
            Signal::ErrorCount => format!(
                "scrape: Σ increase zai_proxy_requests_total{{variant=\"{v}\",status_code=~\"5..\"}} over {w}"
            ),
            Signal::LatencyBuckets => format!(
                "scrape: Σ increase zai_proxy_request_duration_seconds_bucket{{variant=\"{v}\"}} by le over {w}"
            ),
            Signal::UpstreamAuthFailures => format!(
                "scrape: Σ increase zai_proxy_upstream_errors_total{{variant=\"{v}\",error_type=\"auth\"}} over {w}"
            ),
            Signal::StreamCutCount => format!(
                "scrape: Σ increase zai_proxy_streams_total{{variant=\"{v}\",outcome=\"upstream_cut\"}} over {w}"
            ),
        }
    }
}

/// Timing and sample guard of the locally evaluated canary alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertTiming {
    /// Rate window of the error/latency alerts (the rules file's, by default).
    pub window: Duration,
    /// `for` of ZaiProxyCanaryDeploymentDown.
    pub down_for: Duration,
    /// `for` of the three error/latency alerts.
    pub degraded_for: Duration,
    /// Canary requests the window must hold before the three error/latency alerts are
    /// evaluated (the configuration's `min_requests`). Fewer, and the alert is reported as
    /// not evaluated: two 5xx out of three requests is not a 66 % error rate worth aborting
    /// for. Prometheus's own rules filter such blips with their `for`; the promoter, which
    /// counts a locally evaluated alert as soon as its condition holds, uses this instead.
    pub min_requests: u64,
}

impl Default for AlertTiming {
    /// The rules file's window and `for`s ([`CanaryRules::embedded`]).
    fn default() -> Self {
        let rules = CanaryRules::embedded();
        AlertTiming {
            window: rules.window,
            down_for: rules.down_for,
            degraded_for: rules.degraded_for,
            min_requests: 50,
        }
    }
}

/// Conditions of the four canary alerts at one instant (pure), with the thresholds of
/// `rules`: `Some(holds)`, or `None` when it cannot be evaluated — the three error/latency
/// conditions need the canary to have served at least `min_requests` in the window.
///
/// "Deployment down" is the rule's `spec.replicas > 0 and available == 0`: the canary
/// Deployment wants `canary_replicas` and none of `canary_pods` is ready (no pod at all
/// counts as down).
pub fn canary_alert_conditions(
    store: &ScrapeStore,
    canary_replicas: u32,
    canary_pods: &[PodInfo],
    now: DateTime<Utc>,
    window: Duration,
    min_requests: u64,
    rules: &CanaryRules,
) -> Vec<(&'static str, Option<bool>, String)> {
    let ready = canary_pods.iter().filter(|p| p.ready).count();
    let down = canary_replicas > 0 && ready == 0;
    let mut out = vec![(
        canary_rules::DEPLOYMENT_DOWN,
        Some(down),
        format!(
            "{ready}/{} canary pods ready, {canary_replicas} wanted",
            canary_pods.len()
        ),
    )];
    let q = |signal, variant| SignalQuery::new(signal, variant, window);
    let canary_requests = store
        .measure(&q(Signal::RequestCount, Variant::Test), now)
        .value()
        .unwrap_or(0.0);
    if canary_requests < min_requests as f64 {
        let detail = format!(
            "not evaluated: {canary_requests:.0} canary requests in the window < min_requests {min_requests}"
        );
        for name in [
            canary_rules::HIGH_ERROR_RATE,
            canary_rules::ERROR_RATE_HIGHER_THAN_PRODUCTION,
            canary_rules::LATENCY_DEGRADED,
        ] {
            out.push((name, None, detail.clone()));
        }
        return out;
    }
    let canary_err = store
        .measure(&q(Signal::ErrorRatio, Variant::Test), now)
        .value();
    let prod_err = store
        .measure(&q(Signal::ErrorRatio, Variant::Production), now)
        .value();
    out.push((
        canary_rules::HIGH_ERROR_RATE,
        Some(canary_err.is_some_and(|e| rules.high_error(e))),
        format!(
            "canary 5xx ratio {canary_err:?} > {}",
            rules.high_error_ratio
        ),
    ));
    out.push((
        canary_rules::ERROR_RATE_HIGHER_THAN_PRODUCTION,
        Some(matches!((canary_err, prod_err), (Some(c), Some(p)) if rules.higher_than_production(c, p))),
        format!(
            "canary 5xx ratio {canary_err:?} > {} × (production {prod_err:?} + {})",
            rules.relative_factor, rules.relative_points
        ),
    ));
    let quantile = SignalQuery::new(
        Signal::LatencyQuantile {
            permille: rules.latency_permille(),
        },
        Variant::Test,
        window,
    );
    let canary_q = store.measure(&quantile, now).value();
    let prod_q = store
        .measure(
            &SignalQuery {
                variant: Variant::Production,
                ..quantile
            },
            now,
        )
        .value();
    out.push((
        canary_rules::LATENCY_DEGRADED,
        Some(matches!((canary_q, prod_q), (Some(c), Some(p)) if rules.latency_degraded(c, p))),
        format!(
            "canary p{} {canary_q:?} > {} × production {prod_q:?}",
            rules.latency_permille() / 10,
            rules.latency_factor
        ),
    ));
    out
}

/// The scrape signal source.
pub struct ScrapeSource {
    platform: Arc<dyn Platform>,
    store: ScrapeStore,
    timeout: Duration,
    timing: AlertTiming,
    alert_since: BTreeMap<&'static str, DateTime<Utc>>,
    alerts: Vec<Alert>,
    last_errors: Vec<String>,
}

impl ScrapeSource {
    /// Scrapes through `platform.pod_get(pod, "/metrics")`, keeping `retention` of samples
    /// (at least the longest window in use).
    pub fn new(platform: Arc<dyn Platform>, retention: Duration, timeout: Duration) -> Self {
        ScrapeSource {
            platform,
            store: ScrapeStore::new(retention),
            timeout,
            timing: AlertTiming::default(),
            alert_since: BTreeMap::new(),
            alerts: Vec::new(),
            last_errors: Vec::new(),
        }
    }

    /// Overrides the alert timing (compressed rehearsals).
    pub fn with_alert_timing(mut self, timing: AlertTiming) -> Self {
        self.timing = timing;
        self
    }

    /// The store (for inspection in tests).
    pub fn store(&self) -> &ScrapeStore {
        &self.store
    }
}

#[async_trait]
impl SignalSource for ScrapeSource {
    fn name(&self) -> &str {
        "scrape"
    }

    async fn refresh(&mut self, pods: &[PodInfo], now: DateTime<Utc>) -> Result<()> {
        self.last_errors.clear();
        self.store.note_pods(pods);
        for pod in pods {
            match self.platform.pod_get(pod, "/metrics", self.timeout).await {
                Ok(r) if r.status == 200 => match parse_exposition(&r.body, pod.variant) {
                    Ok(d) => self.store.add(&pod.name, pod.variant, now, d),
                    Err(e) => self
                        .last_errors
                        .push(format!("{}: bad exposition: {e}", pod.name)),
                },
                Ok(r) => self
                    .last_errors
                    .push(format!("{}: /metrics answered {}", pod.name, r.status)),
                // A Ready pod serves traffic: without its counters the ratios of this tick
                // miss its requests, which the report must show. A pod that is starting or
                // crashing serves none and is not an error of the source.
                Err(e) if pod.ready => self
                    .last_errors
                    .push(format!("{}: /metrics unreachable: {e}", pod.name)),
                Err(e) => tracing::debug!(pod = %pod.name, error = %e, "scrape failed"),
            }
        }
        let canary: Vec<PodInfo> = pods
            .iter()
            .filter(|p| p.variant == Variant::Test)
            .cloned()
            .collect();
        let canary_replicas = match self.platform.replicas(Variant::Test).await {
            Ok(n) => n,
            Err(e) => {
                self.last_errors
                    .push(format!("canary replicas (for the down alert): {e}"));
                u32::try_from(canary.len()).unwrap_or(u32::MAX)
            }
        };
        let conditions = canary_alert_conditions(
            &self.store,
            canary_replicas,
            &canary,
            now,
            self.timing.window,
            self.timing.min_requests,
            CanaryRules::embedded(),
        );
        self.alerts.clear();
        for (name, holds, detail) in conditions {
            match holds {
                Some(true) => {}
                Some(false) => {
                    self.alert_since.remove(name);
                    continue;
                }
                None => {
                    self.alert_since.remove(name);
                    self.alerts.push(Alert {
                        name: name.into(),
                        state: AlertState::NotEvaluated,
                        evaluated_locally: true,
                        detail,
                    });
                    continue;
                }
            }
            let since = *self.alert_since.entry(name).or_insert(now);
            let hold = if name == canary_rules::DEPLOYMENT_DOWN {
                self.timing.down_for
            } else {
                self.timing.degraded_for
            };
            let held = (now - since).to_std().unwrap_or(Duration::ZERO);
            self.alerts.push(Alert {
                name: name.into(),
                state: if held >= hold {
                    AlertState::Firing
                } else {
                    AlertState::Pending
                },
                evaluated_locally: true,
                detail,
            });
        }
        if self.last_errors.is_empty() {
            Ok(())
        } else {
            Err(Error::signals(self.last_errors.join("; ")))
        }
    }

    fn set_new_version(&mut self, version: &str) {
        self.store.set_new_version(version);
    }

    async fn measure(&mut self, query: &SignalQuery, now: DateTime<Utc>) -> Measurement {
        Measurement {
            reading: self.store.measure(query, now),
            source: ScrapeStore::describe(query),
        }
    }

    async fn alerts(&mut self, _now: DateTime<Utc>) -> Result<Vec<Alert>> {
        Ok(self.alerts.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(signal: Signal) -> SignalQuery {
        SignalQuery::new(signal, Variant::Test, Duration::from_secs(300))
    }

    /// Fuzz finding (prom_text, on its special-values seed): `NaN`, `±Inf` and negative
    /// samples, and a bucket with `le="NaN"`, reached the readings — bucket counts of `NaN`,
    /// a `NaN` bound sorted after `+Inf` (the contract is "sorted by bound, `+Inf` last").
    #[test]
    fn broken_samples_are_skipped() {
        let text = r#"# TYPE zai_proxy_requests_total counter
zai_proxy_requests_total{status_code="200"} 12
zai_proxy_requests_total{status_code="500"} NaN
zai_proxy_requests_total{status_code="502"} -4
zai_proxy_requests_total{status_code="503"} +Inf
# TYPE zai_proxy_request_duration_seconds histogram
zai_proxy_request_duration_seconds_bucket{le="0.1"} 3
zai_proxy_request_duration_seconds_bucket{le="0.5"} -1
zai_proxy_request_duration_seconds_bucket{le="NaN"} 2
zai_proxy_request_duration_seconds_bucket{le="1"} inf
zai_proxy_request_duration_seconds_bucket{le="+Inf"} 5
zai_proxy_upstream_errors_total{error_type="auth"} -2
"#;
        let d = parse_exposition(text, Variant::Test).expect("parses");
        assert_eq!(d.requests, BTreeMap::from([("200".to_owned(), 12.0)]));
        assert_eq!(d.latency, vec![(0.1, 3.0), (f64::INFINITY, 5.0)]);
        assert_eq!(d.auth_failures, 0.0);
    }

    /// Found by review while writing prom_text's "every value is finite" property: counters
    /// whose sum overflows `f64` gave `Value(inf)` and a `NaN` ratio (`inf / inf`), which
    /// compares false against every threshold.
    #[test]
    fn overflowing_sums_are_an_error_not_a_value() {
        let t0 = DateTime::from_timestamp(1_790_000_000, 0).expect("t0");
        let mut store = ScrapeStore::new(Duration::from_secs(3600));
        let big = "zai_proxy_requests_total{status_code=\"500\"} 1e308\n\
                   zai_proxy_requests_total{status_code=\"503\"} 1e308\n";
        for (i, text) in ["", big].into_iter().enumerate() {
            let d = parse_exposition(text, Variant::Test).expect("parses");
            store.add(
                "p",
                Variant::Test,
                t0 + chrono::TimeDelta::seconds(60 * i as i64),
                d,
            );
        }
        let now = t0 + chrono::TimeDelta::seconds(60);
        for signal in [Signal::RequestCount, Signal::ErrorRatio, Signal::ErrorCount] {
            let r = store.measure(&query(signal), now);
            assert!(matches!(r, Reading::Error(_)), "{signal}: {r:?}");
        }
        assert_eq!(
            store.measure(&query(Signal::ErrorRatio), now),
            Reading::Error("5xx ratio is not a finite number (NaN)".into())
        );
    }
}
