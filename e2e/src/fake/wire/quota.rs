//! The quota monitor document (`GET /api/monitor/usage/quota/limit`, reference §6) in both
//! limit shapes: current `CREDIT_LIMIT` (allowance `usage`, used `currentValue`, `remaining`)
//! and legacy `TOKENS_LIMIT` (percentage only, five-hour window only). Both carry a monthly
//! `TIME_LIMIT` (unit 5) entry that consumers must ignore. "Used" is the tokens the fake has
//! billed since it started.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which limit shape the quota document uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum QuotaShape {
    /// `CREDIT_LIMIT` entries for the five-hour (unit 3) and weekly (unit 6) windows.
    #[default]
    Credit,
    /// A `TOKENS_LIMIT` five-hour entry with `percentage` only.
    Legacy,
}

/// Allowances of the fake account, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaAllowance {
    /// Five-hour window allowance.
    pub five_hour: u64,
    /// Weekly window allowance.
    pub weekly: u64,
}

impl Default for QuotaAllowance {
    fn default() -> Self {
        QuotaAllowance {
            five_hour: 10_000_000,
            weekly: 100_000_000,
        }
    }
}

const FIVE_HOURS_MS: i64 = 5 * 3600 * 1000;
const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
const MONTH_MS: i64 = 30 * 24 * 3600 * 1000;

fn percentage(used: u64, allowance: u64) -> u64 {
    if allowance == 0 {
        return 100;
    }
    (used.saturating_mul(100) / allowance).min(100)
}

fn credit(unit: u32, number: u32, allowance: u64, used: u64, reset_ms: i64) -> Value {
    let used = used.min(allowance);
    json!({
        "type": "CREDIT_LIMIT",
        "unit": unit,
        "number": number,
        "usage": allowance,
        "currentValue": used,
        "remaining": allowance - used,
        "percentage": percentage(used, allowance),
        "nextResetTime": reset_ms,
    })
}

/// The quota document; `started_ms` is when the fake started (epoch ms), `used` the tokens
/// billed so far.
pub fn quota_body(
    shape: QuotaShape,
    allowance: QuotaAllowance,
    used: u64,
    started_ms: i64,
) -> Value {
    let time_limit = json!({
        "type": "TIME_LIMIT",
        "unit": 5,
        "number": 1,
        "usage": 1000,
        "currentValue": 0,
        "remaining": 1000,
        "percentage": 0,
        "nextResetTime": started_ms + MONTH_MS,
    });
    let limits = match shape {
        QuotaShape::Credit => vec![
            credit(3, 5, allowance.five_hour, used, started_ms + FIVE_HOURS_MS),
            credit(6, 1, allowance.weekly, used, started_ms + WEEK_MS),
            time_limit,
        ],
        QuotaShape::Legacy => vec![
            json!({
                "type": "TOKENS_LIMIT",
                "unit": 3,
                "number": 5,
                "percentage": percentage(used, allowance.five_hour),
                "nextResetTime": started_ms + FIVE_HOURS_MS,
            }),
            time_limit,
        ],
    };
    let level = match shape {
        QuotaShape::Credit => "lite",
        QuotaShape::Legacy => "max",
    };
    json!({
        "code": 200,
        "msg": "Operation successful",
        "success": true,
        "data": {"level": level, "limits": limits},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_shape_reports_used_and_remaining() {
        let allowance = QuotaAllowance {
            five_hour: 1000,
            weekly: 10_000,
        };
        let body = quota_body(QuotaShape::Credit, allowance, 370, 1_000);
        let limits = body["data"]["limits"].as_array().unwrap();
        assert_eq!(limits[0]["unit"], 3);
        assert_eq!(limits[0]["currentValue"], 370);
        assert_eq!(limits[0]["remaining"], 630);
        assert_eq!(limits[0]["percentage"], 37);
        assert_eq!(limits[0]["nextResetTime"], 1_000 + FIVE_HOURS_MS);
        assert_eq!(limits[1]["unit"], 6);
        assert_eq!(limits[1]["percentage"], 3);
        let legacy = quota_body(QuotaShape::Legacy, allowance, 370, 1_000);
        let limits = legacy["data"]["limits"].as_array().unwrap();
        assert_eq!(limits[0]["type"], "TOKENS_LIMIT");
        assert_eq!(limits[0]["percentage"], 37);
        assert!(limits[0].get("currentValue").is_none());
    }
}
