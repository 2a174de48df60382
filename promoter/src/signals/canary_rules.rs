//! The canary alerts' conditions, from the one definition Prometheus evaluates.
//!
//! `deploy/prometheus/zai-proxy-rules.yml` is the source: its `zai-proxy-canary` group is
//! what Prometheus evaluates in `--signals prometheus`. The scrape source evaluates the same
//! four alerts itself; it takes their numbers (rate window, `for`, thresholds, quantile) from
//! `deploy/prometheus/canary-alerts.json`, which is generated from the rules file
//! (`deploy/prometheus/generate.sh`; e2e's `deploy_manifests` test fails while the two differ)
//! and embedded here at build time. Changing a threshold in the rules file and regenerating
//! changes both sides; nothing here repeats a number.
//!
//! The expressions are read by shape, not by a PromQL parser: the four alerts have fixed
//! forms (`ratio > X`, `ratio > F * (production ratio + P)`, `histogram_quantile(Q, …) > F *
//! histogram_quantile(Q, …)`), and an expression of another shape is an error naming the
//! alert, not a silently different condition.

use std::sync::LazyLock;
use std::time::Duration;

use serde::Deserialize;

/// The generated file, as built into this binary.
pub const EMBEDDED: &str = include_str!("../../../deploy/prometheus/canary-alerts.json");

/// The alert names, in the rules file's order.
pub const DEPLOYMENT_DOWN: &str = "ZaiProxyCanaryDeploymentDown";
/// 5xx share above an absolute line.
pub const HIGH_ERROR_RATE: &str = "ZaiProxyCanaryHighErrorRate";
/// 5xx share above a multiple of production's.
pub const ERROR_RATE_HIGHER_THAN_PRODUCTION: &str = "ZaiProxyCanaryErrorRateHigherThanProduction";
/// A latency quantile above a multiple of production's.
pub const LATENCY_DEGRADED: &str = "ZaiProxyCanaryLatencyDegraded";

/// The numbers of the four canary alerts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryRules {
    /// Rate window of the error/latency alerts (`[5m]`).
    pub window: Duration,
    /// `for` of the deployment-down alert.
    pub down_for: Duration,
    /// `for` of the error/latency alerts (they must agree).
    pub degraded_for: Duration,
    /// High error rate: canary 5xx share `>` this.
    pub high_error_ratio: f64,
    /// Higher than production: canary share `>` `relative_factor` × (production share +
    /// `relative_points`).
    pub relative_factor: f64,
    /// See [`relative_factor`](Self::relative_factor).
    pub relative_points: f64,
    /// Latency degraded: the quantile compared (0.95).
    pub latency_quantile: f64,
    /// Latency degraded: canary quantile `>` this × production's.
    pub latency_factor: f64,
}

#[derive(Deserialize)]
struct File {
    alerts: Vec<AlertDef>,
}

#[derive(Deserialize)]
struct AlertDef {
    alert: String,
    expr: String,
    for_seconds: u64,
}

static RULES: LazyLock<CanaryRules> = LazyLock::new(|| match CanaryRules::from_json(EMBEDDED) {
    Ok(rules) => rules,
    // Built in, not input: the unit test below reads the same text.
    Err(e) => unreachable!("the embedded canary-alerts.json is checked by a unit test: {e}"),
});

impl CanaryRules {
    /// The rules built into this binary.
    pub fn embedded() -> &'static CanaryRules {
        &RULES
    }

    /// Reads the generated file; every problem is reported, joined.
    pub fn from_json(text: &str) -> Result<CanaryRules, String> {
        let file: File =
            serde_json::from_str(text).map_err(|e| format!("canary-alerts.json: {e}"))?;
        let mut problems = Vec::new();
        let find = |name: &str| file.alerts.iter().find(|a| a.alert == name);
        let mut get = |name: &str| {
            let found = find(name);
            if found.is_none() {
                problems.push(format!("{name}: missing"));
            }
            found
        };
        let (Some(down), Some(high), Some(relative), Some(latency)) = (
            get(DEPLOYMENT_DOWN),
            get(HIGH_ERROR_RATE),
            get(ERROR_RATE_HIGHER_THAN_PRODUCTION),
            get(LATENCY_DEGRADED),
        ) else {
            return Err(problems.join("; "));
        };
        let mut note = |r: Result<f64, String>| {
            r.unwrap_or_else(|e| {
                problems.push(e);
                f64::NAN
            })
        };
        let high_error_ratio = note(number(HIGH_ERROR_RATE, rhs(high)));
        let (factor, points) = split_relative(&relative.expr);
        let relative_factor = note(number(ERROR_RATE_HIGHER_THAN_PRODUCTION, factor));
        let relative_points = note(number(ERROR_RATE_HIGHER_THAN_PRODUCTION, points));
        let (quantile, latency_factor, rhs_quantile) = split_latency(&latency.expr);
        let latency_quantile = note(number(LATENCY_DEGRADED, quantile));
        let latency_factor = note(number(LATENCY_DEGRADED, latency_factor));
        let rhs_quantile = note(number(LATENCY_DEGRADED, rhs_quantile));
        if rhs_quantile != latency_quantile && !rhs_quantile.is_nan() {
            problems.push(format!(
                "{LATENCY_DEGRADED}: compares quantile {latency_quantile} with production's {rhs_quantile}"
            ));
        }
        let mut windows = Vec::new();
        for a in [high, relative, latency] {
            match windows_of(&a.expr) {
                Ok(w) if !w.is_empty() => windows.extend(w),
                Ok(_) => problems.push(format!("{}: no rate window", a.alert)),
                Err(e) => problems.push(format!("{}: {e}", a.alert)),
            }
        }
        windows.dedup();
        if windows.len() > 1 {
            problems.push(format!(
                "the error/latency alerts use different rate windows: {windows:?}"
            ));
        }
        let fors = [high.for_seconds, relative.for_seconds, latency.for_seconds];
        if fors.iter().any(|f| *f != fors[0]) {
            problems.push(format!(
                "the error/latency alerts have different `for`: {fors:?} s"
            ));
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(CanaryRules {
            window: windows[0],
            down_for: Duration::from_secs(down.for_seconds),
            degraded_for: Duration::from_secs(fors[0]),
            high_error_ratio,
            relative_factor,
            relative_points,
            latency_quantile,
            latency_factor,
        })
    }

    /// The compared quantile in thousandths (950 for p95).
    pub fn latency_permille(&self) -> u16 {
        (self.latency_quantile * 1000.0).round().clamp(1.0, 999.0) as u16
    }

    /// Whether a canary 5xx share fires the high-error-rate alert.
    pub fn high_error(&self, canary: f64) -> bool {
        canary > self.high_error_ratio
    }

    /// Whether the canary's 5xx share fires the higher-than-production alert.
    pub fn higher_than_production(&self, canary: f64, production: f64) -> bool {
        canary > self.relative_factor * (production + self.relative_points)
    }

    /// Whether the canary's quantile fires the latency-degraded alert.
    pub fn latency_degraded(&self, canary: f64, production: f64) -> bool {
        canary > self.latency_factor * production
    }
}

/// The text after the comparison `>`.
fn rhs(a: &AlertDef) -> Option<&str> {
    a.expr.rsplit_once('>').map(|(_, r)| r)
}

/// `… > F * ( … + P )` → (F, P).
fn split_relative(expr: &str) -> (Option<&str>, Option<&str>) {
    let Some((_, r)) = expr.rsplit_once('>') else {
        return (None, None);
    };
    let factor = r.split_once('*').map(|(f, _)| f);
    let points = r
        .trim_end()
        .strip_suffix(')')
        .and_then(|body| body.rsplit_once('+'))
        .map(|(_, p)| p);
    (factor, points)
}

/// `histogram_quantile(Q, …) > F * histogram_quantile(Q2, …)` → (Q, F, Q2).
fn split_latency(expr: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    fn quantile(s: &str) -> Option<&str> {
        s.split_once("histogram_quantile(")
            .and_then(|(_, rest)| rest.split_once(','))
            .map(|(q, _)| q)
    }
    let Some((l, r)) = expr.rsplit_once('>') else {
        return (None, None, None);
    };
    let factor = r.split_once('*').map(|(f, _)| f);
    (quantile(l), factor, quantile(r))
}

fn number(alert: &str, text: Option<&str>) -> Result<f64, String> {
    let text = text.ok_or_else(|| format!("{alert}: the expression has an unexpected shape"))?;
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "{alert}: expected a number, found {:?}",
            text.trim()
        )),
    }
}

/// Every `[d]` range in an expression (no offsets are used in these four).
fn windows_of(expr: &str) -> Result<Vec<Duration>, String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some((_, after)) = rest.split_once('[') {
        let (inside, tail) = after
            .split_once(']')
            .ok_or_else(|| "unclosed range".to_owned())?;
        out.push(
            humantime::parse_duration(inside.trim())
                .map_err(|e| format!("range [{inside}]: {e}"))?,
        );
        rest = tail;
    }
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_rules_read() {
        let r = CanaryRules::from_json(EMBEDDED).unwrap();
        assert_eq!(r.window, Duration::from_secs(300));
        assert_eq!(r.down_for, Duration::from_secs(120));
        assert_eq!(r.degraded_for, Duration::from_secs(300));
        assert_eq!(r.high_error_ratio, 0.05);
        assert_eq!((r.relative_factor, r.relative_points), (2.0, 0.01));
        assert_eq!((r.latency_quantile, r.latency_factor), (0.95, 1.5));
        assert_eq!(r.latency_permille(), 950);
        assert!(r.high_error(0.051) && !r.high_error(0.05));
        assert!(r.higher_than_production(0.05, 0.01) && !r.higher_than_production(0.04, 0.01));
        assert!(r.latency_degraded(1.6, 1.0) && !r.latency_degraded(1.5, 1.0));
    }

    #[test]
    fn a_changed_threshold_is_read_and_a_changed_shape_is_an_error() {
        let changed = EMBEDDED.replace("> 0.05", "> 0.07");
        assert_eq!(
            CanaryRules::from_json(&changed).unwrap().high_error_ratio,
            0.07
        );
        let reshaped = EMBEDDED.replace("1.5 * histogram_quantile", "histogram_quantile");
        let err = CanaryRules::from_json(&reshaped).unwrap_err();
        assert!(err.contains(LATENCY_DEGRADED), "{err}");
        let windows = EMBEDDED.replacen("[5m]", "[2m]", 1);
        let err = CanaryRules::from_json(&windows).unwrap_err();
        assert!(err.contains("different rate windows"), "{err}");
        let missing = EMBEDDED.replace(HIGH_ERROR_RATE, "Renamed");
        assert!(
            CanaryRules::from_json(&missing)
                .unwrap_err()
                .contains("missing")
        );
    }
}
