//! Z.AI's business error codes: what a 429 body says (class, code, reset, `retry_after`;
//! reference §1.6.1) and the per-class retry/feedback table.
//!
//! These describe the upstream's answers; they are not Rust errors of the proxy (that is
//! [`crate::error::ProxyError`]) nor the proxy's own error answers ([`crate::wire`]).
//! [`ZaiError`] and [`ZaiErrorClass`] keep Z.AI's word ("error code"), as the metric
//! `zai_proxy_zai_errors_total` does.
//!
//! Everything here is a pure function of the (at most 32 KiB) 429 body, the upstream
//! `Retry-After` header and the current time. The provider's message text is read for a code
//! or reset stamp only; it is never logged or kept.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};

/// How much of a 429 body is read and replayed.
pub const BODY_LIMIT: usize = 32 * 1024;

/// Business codes this proxy knows by name; anything else is `other` in metric labels.
pub const KNOWN_CODES: [&str; 12] = [
    "1302", "1303", "1304", "1305", "1308", "1309", "1310", "1312", "1313", "1113", "1311", "1214",
];

/// Codes that are never retried and never fed to the limiter: 1113 (account in arrears /
/// insufficient balance), 1311 (plan lacks the model), 1214 (bad model). Retrying cannot
/// change their answer.
const NEVER_RETRY_CODES: [&str; 3] = ["1113", "1311", "1214"];

/// Reset metadata keys, in lookup order.
const RESET_KEYS: [&str; 6] = [
    "reset_time",
    "resetTime",
    "reset_at",
    "resetAt",
    "next_reset_time",
    "nextResetTime",
];

/// Largest honoured body `retry_after`.
const MAX_BODY_RETRY_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Accepted reset instants, in Unix seconds (2001-09-09 … ~2603).
const RESET_MIN_SECS: f64 = 1e9;
const RESET_MAX_SECS: f64 = 2e10;

/// The class of a Z.AI 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZaiErrorClass {
    /// 1302: too many concurrent requests.
    Concurrency,
    /// 1303, 1305: request frequency.
    Frequency,
    /// 1308, 1310: plan quota exhausted until a reset.
    Quota,
    /// 1312: the model is congested.
    ModelCongestion,
    /// 1304: the daily call limit is reached (until the day's reset).
    DailyLimit,
    /// 1309: the (coding) plan has expired (until it is renewed).
    PlanExpired,
    /// 1313: the fair-use throttle (sustained heavy use; backs off for minutes or more).
    FairUse,
    /// Anything else, including unparseable, empty and oversize bodies.
    Unknown,
}

impl ZaiErrorClass {
    /// Label / header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ZaiErrorClass::Concurrency => "concurrency",
            ZaiErrorClass::Frequency => "frequency",
            ZaiErrorClass::Quota => "quota",
            ZaiErrorClass::ModelCongestion => "model_congestion",
            ZaiErrorClass::DailyLimit => "daily_limit",
            ZaiErrorClass::PlanExpired => "plan_expired",
            ZaiErrorClass::FairUse => "fair_use",
            ZaiErrorClass::Unknown => "unknown",
        }
    }

    fn from_code(code: Option<&str>) -> Self {
        match code {
            Some("1302") => ZaiErrorClass::Concurrency,
            Some("1303" | "1305") => ZaiErrorClass::Frequency,
            Some("1308" | "1310") => ZaiErrorClass::Quota,
            Some("1312") => ZaiErrorClass::ModelCongestion,
            Some("1304") => ZaiErrorClass::DailyLimit,
            Some("1309") => ZaiErrorClass::PlanExpired,
            Some("1313") => ZaiErrorClass::FairUse,
            _ => ZaiErrorClass::Unknown,
        }
    }
}

/// What a 429 body says.
#[derive(Debug, Clone, PartialEq)]
pub struct ZaiError {
    /// The class.
    pub class: ZaiErrorClass,
    /// The business code (1–8 ASCII digits), if one was found.
    pub code: Option<String>,
    /// When the limit resets, if advertised.
    pub reset_at: Option<DateTime<Utc>>,
    /// The body's `retry_after`, if valid.
    pub retry_after: Option<Duration>,
}

impl ZaiError {
    /// Bounded `code` label for `zai_proxy_zai_errors_total`: a known code or `other`.
    pub fn code_label(&self) -> &'static str {
        self.code
            .as_deref()
            .and_then(|c| KNOWN_CODES.iter().find(|k| **k == c).copied())
            .unwrap_or("other")
    }

    /// What to do about this 429.
    pub fn policy(&self) -> ClassPolicy {
        let never = self
            .code
            .as_deref()
            .is_some_and(|c| NEVER_RETRY_CODES.contains(&c));
        if never {
            return ClassPolicy {
                feeds_limiter: false,
                retries: false,
            };
        }
        match self.class {
            ZaiErrorClass::Frequency | ZaiErrorClass::Unknown => ClassPolicy {
                feeds_limiter: true,
                retries: true,
            },
            // Concurrency and congestion say nothing about the request rate: feeding them
            // to the limiter would poison the learned ceiling.
            ZaiErrorClass::Concurrency | ZaiErrorClass::ModelCongestion => ClassPolicy {
                feeds_limiter: false,
                retries: true,
            },
            // Exhausted until a reset or a renewal: another attempt seconds later gets the
            // same answer, and the request rate is not what is wrong.
            ZaiErrorClass::Quota | ZaiErrorClass::DailyLimit | ZaiErrorClass::PlanExpired => {
                ClassPolicy {
                    feeds_limiter: false,
                    retries: false,
                }
            }
            // Fair use: upstream wants less traffic for a while. A retry within the request's
            // backoff (seconds) meets the same throttle, so none; the limiter slows down.
            ZaiErrorClass::FairUse => ClassPolicy {
                feeds_limiter: true,
                retries: false,
            },
        }
    }

    /// The `Retry-After` to add to the final 429 when upstream sent none: whole seconds of
    /// the body's `retry_after`, else of the time left until the reset (only if positive).
    pub fn derived_retry_after(&self, now: DateTime<Utc>) -> Option<u64> {
        if let Some(d) = self.retry_after {
            return Some(d.as_secs_f64().ceil() as u64);
        }
        let left = (self.reset_at? - now).num_milliseconds();
        (left > 0).then(|| (left as u64).div_ceil(1000))
    }
}

/// Per-class handling (reference §1.6.1 table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassPolicy {
    /// Whether the 429 is fed to the adaptive controller.
    pub feeds_limiter: bool,
    /// Whether another attempt may follow.
    pub retries: bool,
}

/// The wait before retry number `retry` (1-based) after a 429 of `class`.
///
/// `base` is the plain exponential delay (base delay × 2^(retry−1)); `u` is a uniform sample
/// in [0, 1) for the jitter (out of range or NaN → the lower bound).
pub fn wait_before_retry(
    class: ZaiErrorClass,
    base: Duration,
    header: Option<Duration>,
    body: Option<Duration>,
    u: f64,
) -> Duration {
    let hinted = header.max(body).unwrap_or(Duration::ZERO);
    match class {
        ZaiErrorClass::Frequency | ZaiErrorClass::ModelCongestion => jittered(base, u).max(hinted),
        ZaiErrorClass::Concurrency => base.max(hinted),
        // Unknown: honour the header first, then wait the plain base.
        ZaiErrorClass::Unknown
        | ZaiErrorClass::Quota
        | ZaiErrorClass::DailyLimit
        | ZaiErrorClass::PlanExpired
        | ZaiErrorClass::FairUse => header.unwrap_or(Duration::ZERO).saturating_add(base),
    }
}

/// base/2 + base/2 · u, in [base/2, base).
pub fn jittered(base: Duration, u: f64) -> Duration {
    let half = base / 2;
    if !(0.0..1.0).contains(&u) {
        return half;
    }
    half + half.mul_f64(u)
}

/// Exponential backoff: `base_delay` × 2^(retry−1) for retry ≥ 1 (saturating).
pub fn backoff(base_delay: Duration, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base_delay.saturating_mul(factor)
}

/// Parses a `Retry-After` header in its integer-seconds form only (HTTP dates are ignored).
pub fn parse_retry_after_header(value: &str) -> Option<Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Classifies a 429 body. `oversize` says the body was longer than [`BODY_LIMIT`]; such a
/// body is `unknown` without parsing.
pub fn classify(body: &[u8], oversize: bool) -> ZaiError {
    let unknown = ZaiError {
        class: ZaiErrorClass::Unknown,
        code: None,
        reset_at: None,
        retry_after: None,
    };
    if oversize {
        return unknown;
    }
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
        return unknown;
    };
    let nested = match top.get("error") {
        Some(Value::Object(inner)) => Some(inner),
        _ => None,
    };
    let scopes: Vec<&Map<String, Value>> = nested.into_iter().chain(Some(&top)).collect();
    let message = scopes
        .iter()
        .find_map(|m| ["msg", "message"].iter().find_map(|k| m.get(*k)?.as_str()));
    let code = scopes
        .iter()
        .find_map(|m| m.get("code").and_then(code_value))
        .or_else(|| message.and_then(code_in_message));
    let reset_at = scopes
        .iter()
        .find_map(|m| RESET_KEYS.iter().find_map(|k| m.get(*k)))
        .and_then(reset_value)
        .or_else(|| message.and_then(stamp_in_text));
    let retry_after = scopes
        .iter()
        .find_map(|m| ["retry_after", "retryAfter"].iter().find_map(|k| m.get(*k)))
        .and_then(retry_after_value);
    ZaiError {
        class: ZaiErrorClass::from_code(code.as_deref()),
        code,
        reset_at,
        retry_after,
    }
}

fn is_code(s: &str) -> bool {
    (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn code_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_u64()?.to_string(),
        _ => return None,
    };
    is_code(&text).then_some(text)
}

/// A leading digit run of the message, only if it is a known code.
fn code_in_message(msg: &str) -> Option<String> {
    let digits: String = msg
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    KNOWN_CODES.contains(&digits.as_str()).then_some(digits)
}

fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

fn from_unix_secs(secs: f64) -> Option<DateTime<Utc>> {
    if !(RESET_MIN_SECS..=RESET_MAX_SECS).contains(&secs) {
        return None;
    }
    DateTime::from_timestamp_millis((secs * 1000.0) as i64)
}

fn reset_value(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => {
            let x = n.as_f64()?;
            if x >= 1e12 {
                from_unix_secs(x / 1000.0)
            } else if x >= 1e9 {
                from_unix_secs(x)
            } else {
                None
            }
        }
        Value::String(s) => parse_stamp(s.trim()),
        _ => None,
    }
}

/// RFC3339, or a naive `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DDTHH:MM:SS` in fixed UTC+8.
fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    let ts = match DateTime::parse_from_rfc3339(s) {
        Ok(ts) => ts.with_timezone(&Utc),
        Err(_) => {
            let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
                .ok()?;
            beijing()
                .from_local_datetime(&naive)
                .single()?
                .with_timezone(&Utc)
        }
    };
    from_unix_secs(ts.timestamp() as f64)
}

/// The first `YYYY-MM-DD HH:MM:SS` (or `T`-separated) stamp inside free text, in UTC+8.
fn stamp_in_text(text: &str) -> Option<DateTime<Utc>> {
    const SHAPE: &[u8; 19] = b"dddd-dd-dd?dd:dd:dd";
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(SHAPE.len() - 1)).find_map(|start| {
        let window = &bytes[start..start + SHAPE.len()];
        let fits = window.iter().zip(SHAPE).all(|(b, s)| match s {
            b'd' => b.is_ascii_digit(),
            b'?' => *b == b' ' || *b == b'T',
            other => b == other,
        });
        if !fits {
            return None;
        }
        // The window is ASCII, so this slice is on character boundaries.
        parse_stamp(std::str::from_utf8(window).ok()?)
    })
}

fn retry_after_value(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_BODY_RETRY_AFTER.as_secs_f64() {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

/// The `X-Zai-Rate-Limit-Reset` header value (RFC3339 UTC, whole seconds).
pub fn reset_header_value(reset_at: DateTime<Utc>) -> String {
    reset_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(body: &str) -> ZaiErrorClass {
        classify(body.as_bytes(), false).class
    }

    #[test]
    fn classes_by_code_in_every_envelope() {
        let cases = [
            ("1302", ZaiErrorClass::Concurrency),
            ("1303", ZaiErrorClass::Frequency),
            ("1305", ZaiErrorClass::Frequency),
            ("1308", ZaiErrorClass::Quota),
            ("1310", ZaiErrorClass::Quota),
            ("1312", ZaiErrorClass::ModelCongestion),
            ("1304", ZaiErrorClass::DailyLimit),
            ("1309", ZaiErrorClass::PlanExpired),
            ("1313", ZaiErrorClass::FairUse),
            ("9999", ZaiErrorClass::Unknown),
        ];
        for (code, class) in cases {
            let envelopes = [
                format!(r#"{{"error":{{"code":"{code}","message":"x"}}}}"#),
                format!(r#"{{"code":{code},"msg":"x"}}"#),
                format!(
                    r#"{{"type":"error","error":{{"type":"rate_limit_error","code":"{code}","message":"x"}}}}"#
                ),
            ];
            for body in envelopes {
                let e = classify(body.as_bytes(), false);
                assert_eq!(e.class, class, "{body}");
                assert_eq!(e.code.as_deref(), Some(code), "{body}");
            }
        }
    }

    #[test]
    fn new_codes_are_never_retried_and_their_reset_is_derived() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .expect("stamp")
            .with_timezone(&Utc);
        for (code, feeds) in [("1304", false), ("1309", false), ("1313", true)] {
            let e = classify(
                format!(r#"{{"error":{{"code":"{code}","message":"limit reached, resets at 2026-12-07 00:00:00"}}}}"#)
                    .as_bytes(),
                false,
            );
            assert_eq!(e.code_label(), code);
            assert_eq!(
                e.policy(),
                ClassPolicy {
                    feeds_limiter: feeds,
                    retries: false
                },
                "{code}"
            );
            // 2026-12-07 00:00 in UTC+8 is 2026-12-06 16:00 UTC: four hours from `now`.
            assert_eq!(e.derived_retry_after(now), Some(4 * 3600), "{code}");
            // Without a time in the body nothing is made up.
            let bare = classify(
                format!(r#"{{"error":{{"code":"{code}"}}}}"#).as_bytes(),
                false,
            );
            assert_eq!(bare.derived_retry_after(now), None, "{code}");
        }
        let e = classify(br#"{"error":{"code":"1304","retry_after":90}}"#, false);
        assert_eq!(e.derived_retry_after(now), Some(90));
    }

    #[test]
    fn metric_pairs_match_the_classifier() {
        for (class, code) in crate::metrics::ZAI_ERROR_CLASSES {
            let e = classify(format!(r#"{{"code":"{code}"}}"#).as_bytes(), false);
            assert_eq!((e.class.as_str(), e.code_label()), (*class, *code));
        }
    }

    #[test]
    fn nested_error_wins_over_top_level() {
        let e = classify(br#"{"code":1302,"error":{"code":"1308"}}"#, false);
        assert_eq!(e.class, ZaiErrorClass::Quota);
    }

    #[test]
    fn invalid_codes_are_ignored() {
        for body in [
            r#"{"code":"13a2"}"#,
            r#"{"code":"123456789"}"#,
            r#"{"code":""}"#,
            r#"{"code":-1302}"#,
            r#"{"code":1302.5}"#,
            r#"{"code":true}"#,
        ] {
            let e = classify(body.as_bytes(), false);
            assert_eq!(e.class, ZaiErrorClass::Unknown, "{body}");
            assert_eq!(e.code, None, "{body}");
        }
    }

    #[test]
    fn code_from_message_only_when_known() {
        assert_eq!(
            class_of(r#"{"msg":"1303 Too many requests, slow down"}"#),
            ZaiErrorClass::Frequency
        );
        let e = classify(br#"{"error":{"message":"4242 nope"}}"#, false);
        assert_eq!((e.class, e.code), (ZaiErrorClass::Unknown, None));
    }

    #[test]
    fn anything_unparseable_is_unknown() {
        for body in ["", "not json", "[1,2]", "\"1302\"", "{}", "null"] {
            assert_eq!(class_of(body), ZaiErrorClass::Unknown, "{body:?}");
        }
        let oversize = classify(br#"{"code":1308}"#, true);
        assert_eq!(oversize.class, ZaiErrorClass::Unknown);
    }

    #[test]
    fn reset_from_numbers_strings_and_text() {
        let want = DateTime::parse_from_rfc3339("2026-09-06T00:00:00+08:00")
            .expect("ts")
            .with_timezone(&Utc);
        let ms = want.timestamp_millis();
        let s = want.timestamp();
        let bodies = [
            format!(r#"{{"code":1308,"reset_time":{ms}}}"#),
            format!(r#"{{"code":1308,"resetAt":{s}}}"#),
            r#"{"code":1308,"nextResetTime":"2026-09-05T16:00:00Z"}"#.to_owned(),
            r#"{"code":1308,"reset_at":"2026-09-06 00:00:00"}"#.to_owned(),
            r#"{"code":1308,"reset_at":"2026-09-06T00:00:00"}"#.to_owned(),
            r#"{"error":{"code":"1308","message":"Usage limit reached. Your limit will reset at 2026-09-06 00:00:00"}}"#.to_owned(),
        ];
        for body in bodies {
            assert_eq!(
                classify(body.as_bytes(), false).reset_at,
                Some(want),
                "{body}"
            );
        }
    }

    #[test]
    fn out_of_range_resets_are_ignored() {
        for body in [
            r#"{"code":1308,"reset_time":12345}"#,
            r#"{"code":1308,"reset_time":999999999}"#,
            r#"{"code":1308,"reset_time":30000000000}"#,
            r#"{"code":1308,"reset_time":"1999-01-01 00:00:00"}"#,
            r#"{"code":1308,"reset_time":"soon"}"#,
        ] {
            assert_eq!(classify(body.as_bytes(), false).reset_at, None, "{body}");
        }
    }

    #[test]
    fn first_present_reset_key_wins() {
        let e = classify(
            br#"{"code":1308,"nextResetTime":2000000000,"reset_time":1900000000}"#,
            false,
        );
        assert_eq!(e.reset_at.map(|t| t.timestamp()), Some(1_900_000_000));
    }

    #[test]
    fn body_retry_after_bounds() {
        let ra = |b: &str| classify(b.as_bytes(), false).retry_after;
        assert_eq!(
            ra(r#"{"code":1303,"retry_after":9}"#),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            ra(r#"{"error":{"code":"1303","retryAfter":0.25}}"#),
            Some(Duration::from_millis(250))
        );
        assert_eq!(ra(r#"{"code":1303,"retry_after":0}"#), None);
        assert_eq!(ra(r#"{"code":1303,"retry_after":-2}"#), None);
        assert_eq!(ra(r#"{"code":1303,"retry_after":604801}"#), None);
        assert_eq!(
            ra(r#"{"code":1303,"retry_after":604800}"#),
            Some(MAX_BODY_RETRY_AFTER)
        );
    }

    #[test]
    fn policy_table() {
        let p = |b: &str| classify(b.as_bytes(), false).policy();
        let yes_yes = ClassPolicy {
            feeds_limiter: true,
            retries: true,
        };
        let no_yes = ClassPolicy {
            feeds_limiter: false,
            retries: true,
        };
        let no_no = ClassPolicy {
            feeds_limiter: false,
            retries: false,
        };
        assert_eq!(p(r#"{"code":1303}"#), yes_yes);
        assert_eq!(p(r#"{"code":1305}"#), yes_yes);
        assert_eq!(p(r#"{"code":9999}"#), yes_yes);
        assert_eq!(p("garbage"), yes_yes);
        assert_eq!(p(r#"{"code":1302}"#), no_yes);
        assert_eq!(p(r#"{"code":1312}"#), no_yes);
        assert_eq!(p(r#"{"code":1308}"#), no_no);
        assert_eq!(p(r#"{"code":1310}"#), no_no);
        for code in ["1113", "1311", "1214"] {
            let e = classify(format!(r#"{{"code":{code}}}"#).as_bytes(), false);
            assert_eq!(e.class, ZaiErrorClass::Unknown);
            assert_eq!(e.policy(), no_no, "{code}");
            assert_eq!(e.code_label(), code);
        }
    }

    #[test]
    fn code_label_is_bounded() {
        assert_eq!(classify(br#"{"code":1302}"#, false).code_label(), "1302");
        assert_eq!(classify(br#"{"code":4711}"#, false).code_label(), "other");
        assert_eq!(classify(b"", false).code_label(), "other");
    }

    #[test]
    fn waits_per_class() {
        let s = Duration::from_secs;
        let base = s(2);
        // Zero jitter sample → base/2.
        assert_eq!(
            wait_before_retry(ZaiErrorClass::Frequency, base, None, None, 0.0),
            s(1)
        );
        assert_eq!(
            wait_before_retry(ZaiErrorClass::ModelCongestion, base, None, None, 0.0),
            s(1)
        );
        assert_eq!(
            wait_before_retry(ZaiErrorClass::Concurrency, base, None, None, 0.0),
            s(2)
        );
        // Hints win when larger: body 9 + header 7 → one 9 s wait.
        assert_eq!(
            wait_before_retry(ZaiErrorClass::Frequency, s(1), Some(s(7)), Some(s(9)), 0.3),
            s(9)
        );
        assert_eq!(
            wait_before_retry(ZaiErrorClass::Concurrency, s(1), Some(s(3)), None, 0.0),
            s(3)
        );
        // Unknown: header first, then the plain base.
        assert_eq!(
            wait_before_retry(ZaiErrorClass::Unknown, s(1), Some(s(3)), Some(s(9)), 0.9),
            s(4)
        );
        assert_eq!(
            wait_before_retry(ZaiErrorClass::Unknown, s(2), None, None, 0.9),
            s(2)
        );
    }

    /// Fuzz finding (zai_error_classify): `Retry-After: 18446744073709551615` on a 429 of
    /// a retried class panicked adding the backoff ("overflow when adding durations").
    #[test]
    fn a_huge_retry_after_header_saturates_instead_of_panicking() {
        let header = parse_retry_after_header("18446744073709551615");
        assert_eq!(header, Some(Duration::from_secs(u64::MAX)));
        let err = classify(b"", false);
        assert!(err.policy().retries);
        let wait = wait_before_retry(err.class, Duration::from_secs(1), header, None, 0.5);
        assert_eq!(wait, Duration::MAX);
        for class in [ZaiErrorClass::Frequency, ZaiErrorClass::Concurrency] {
            let wait = wait_before_retry(class, Duration::from_secs(1), header, None, 0.5);
            assert_eq!(wait, Duration::from_secs(u64::MAX));
        }
    }

    #[test]
    fn jitter_range_and_fallback() {
        let base = Duration::from_secs(4);
        assert_eq!(jittered(base, 0.0), Duration::from_secs(2));
        assert_eq!(jittered(base, 0.5), Duration::from_secs(3));
        assert!(jittered(base, 0.999_999) < base);
        for bad in [f64::NAN, -0.1, 1.0, 7.0] {
            assert_eq!(jittered(base, bad), Duration::from_secs(2));
        }
    }

    #[test]
    fn backoff_doubles() {
        let b = Duration::from_secs(1);
        assert_eq!(backoff(b, 1), Duration::from_secs(1));
        assert_eq!(backoff(b, 2), Duration::from_secs(2));
        assert_eq!(backoff(b, 3), Duration::from_secs(4));
        assert_eq!(
            backoff(Duration::from_millis(10), 4),
            Duration::from_millis(80)
        );
        assert!(backoff(b, 200) >= Duration::from_secs(u64::from(u32::MAX)));
    }

    #[test]
    fn retry_after_header_integer_only() {
        assert_eq!(parse_retry_after_header("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after_header(" 7 "),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after_header("0"), None);
        assert_eq!(parse_retry_after_header("1.5"), None);
        assert_eq!(
            parse_retry_after_header("Wed, 21 Oct 2015 07:28:00 GMT"),
            None
        );
    }

    #[test]
    fn derived_retry_after() {
        let now = DateTime::parse_from_rfc3339("2026-09-05T12:00:00Z")
            .expect("ts")
            .with_timezone(&Utc);
        let reset = now + chrono::Duration::milliseconds(3_599_500);
        let e = ZaiError {
            class: ZaiErrorClass::Quota,
            code: Some("1308".into()),
            reset_at: Some(reset),
            retry_after: None,
        };
        assert_eq!(e.derived_retry_after(now), Some(3600));
        assert_eq!(e.derived_retry_after(reset), None, "reset reached");
        let e = ZaiError {
            retry_after: Some(Duration::from_millis(2500)),
            ..e
        };
        assert_eq!(e.derived_retry_after(now), Some(3));
        assert_eq!(reset_header_value(now), "2026-09-05T12:00:00Z");
    }
}
