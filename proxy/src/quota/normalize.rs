//! Normalisation of the Z.AI quota endpoint's answer (reference §6) into quota windows.
//!
//! Two limit shapes exist: the legacy `TOKENS_LIMIT` (percentage only) and the current
//! `CREDIT_LIMIT` (`usage` = allowance, `currentValue` = used, `remaining`). Windows are
//! identified by `unit` only: 3 → five_hour, 6 → weekly; everything else is ignored.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A quota window as published on /health and /metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaWindow {
    /// `five_hour` or `weekly`.
    pub window: &'static str,
    /// `TOKENS_LIMIT` or `CREDIT_LIMIT` (canonical upper case).
    pub limit_type: &'static str,
    /// Used share of the allowance, clamped to [0, 1].
    pub used_fraction: f64,
    /// Remaining allowance in provider units (credit shape only).
    pub remaining: Option<f64>,
    /// When the window resets, if advertised.
    pub reset_at: Option<DateTime<Utc>>,
}

/// One successful poll.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuotaSample {
    /// The provider's `data.level` (`lite`, `pro`, `max`), if any.
    pub plan_tier: Option<String>,
    /// The windows, five_hour first.
    pub windows: Vec<QuotaWindow>,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejected {
    /// Not the expected JSON (syntax or type error, or no `data.limits`).
    Malformed(String),
    /// The provider said no (`success: false`, or no `success` and a code other than 0/200).
    Provider {
        /// The provider's numeric code, if any.
        code: Option<i64>,
    },
}

#[derive(Deserialize)]
struct Envelope {
    code: Option<i64>,
    success: Option<bool>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    level: Option<String>,
    limits: Option<Vec<Limit>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Limit {
    #[serde(rename = "type")]
    kind: Option<String>,
    unit: Option<i64>,
    usage: Option<f64>,
    current_value: Option<f64>,
    remaining: Option<f64>,
    percentage: Option<f64>,
    next_reset_time: Option<f64>,
}

/// Normalises a response body.
pub fn normalize(body: &[u8]) -> Result<QuotaSample, Rejected> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| Rejected::Malformed(e.to_string()))?;
    let rejected = match envelope.success {
        Some(success) => !success,
        None => envelope.code.is_some_and(|c| c != 0 && c != 200),
    };
    if rejected {
        return Err(Rejected::Provider {
            code: envelope.code,
        });
    }
    let data = envelope
        .data
        .ok_or_else(|| Rejected::Malformed("missing data".into()))?;
    let limits = data
        .limits
        .ok_or_else(|| Rejected::Malformed("missing data.limits".into()))?;
    let mut five_hour = None;
    let mut weekly = None;
    for limit in &limits {
        let slot = match limit.unit {
            Some(3) => &mut five_hour,
            Some(6) => &mut weekly,
            _ => continue,
        };
        if slot.is_some() {
            continue;
        }
        *slot = window_of(limit);
    }
    let plan_tier = data.level.filter(|l| !l.trim().is_empty());
    Ok(QuotaSample {
        plan_tier,
        windows: five_hour.into_iter().chain(weekly).collect(),
    })
}

fn window_of(limit: &Limit) -> Option<QuotaWindow> {
    let window = match limit.unit? {
        3 => "five_hour",
        6 => "weekly",
        _ => return None,
    };
    let kind = limit.kind.as_deref()?.trim();
    let percentage = limit
        .percentage
        .filter(|p| p.is_finite())
        .map(|p| p / 100.0);
    let (limit_type, used, remaining) = if kind.eq_ignore_ascii_case("CREDIT_LIMIT") {
        let allowance = limit.usage.filter(|u| u.is_finite() && *u > 0.0);
        let used = match (allowance, limit.current_value.filter(|v| v.is_finite())) {
            (Some(allowance), Some(current)) => Some(current / allowance),
            _ => percentage,
        };
        let remaining = limit
            .remaining
            .filter(|r| r.is_finite())
            .or_else(|| Some(limit.usage.filter(|u| u.is_finite())? - limit.current_value?));
        ("CREDIT_LIMIT", used?, remaining)
    } else if kind.eq_ignore_ascii_case("TOKENS_LIMIT") {
        ("TOKENS_LIMIT", percentage?, None)
    } else {
        return None;
    };
    let reset_at = limit
        .next_reset_time
        .filter(|ms| ms.is_finite() && *ms > 0.0)
        .and_then(|ms| DateTime::from_timestamp_millis(ms as i64));
    Some(QuotaWindow {
        window,
        limit_type,
        used_fraction: used.clamp(0.0, 1.0),
        remaining,
        reset_at,
    })
}

/// Label hygiene for quota metrics: lower-cased and trimmed, anything outside
/// `[a-z0-9_-]` becomes `_`, at most 32 bytes, empty → `unknown`.
pub fn label_value(raw: &str) -> String {
    let mut out: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(32);
    if out.is_empty() {
        "unknown".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_hygiene() {
        assert_eq!(label_value(" TOKENS_LIMIT "), "tokens_limit");
        assert_eq!(label_value("five hour/ä"), "five_hour__");
        assert_eq!(label_value(""), "unknown");
        assert_eq!(label_value(&"x".repeat(40)).len(), 32);
    }

    #[test]
    fn percentage_fallback_when_allowance_is_zero() {
        let body = br#"{"success":true,"data":{"limits":[
            {"type":"credit_limit","unit":3,"usage":0,"currentValue":5,"percentage":42}]}}"#;
        let sample = normalize(body).expect("ok");
        assert_eq!(sample.windows[0].used_fraction, 0.42);
        assert_eq!(sample.windows[0].limit_type, "CREDIT_LIMIT");
    }

    #[test]
    fn legacy_without_percentage_is_dropped() {
        let body = br#"{"code":200,"data":{"limits":[{"type":"TOKENS_LIMIT","unit":3}]}}"#;
        assert_eq!(normalize(body).expect("ok").windows, vec![]);
    }

    #[test]
    fn remaining_is_derived_when_absent() {
        let body = br#"{"data":{"limits":[
            {"type":"CREDIT_LIMIT","unit":6,"usage":2000,"currentValue":740}]}}"#;
        let w = &normalize(body).expect("ok").windows[0];
        assert_eq!(w.remaining, Some(1260.0));
        assert_eq!(w.used_fraction, 0.37);
        assert_eq!(w.reset_at, None);
    }
}
