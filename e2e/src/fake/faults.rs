//! Fault settings and the per-request decision (a pure function of the settings, the route,
//! the credential check and three uniform draws).
//!
//! The draws of the `n`-th request a fake serves are a pure function of the fake's seed and
//! `n` ([`Draws::for_request`]): the same seed and the same sequence of requests give the
//! same faults and latencies. Under concurrency the *order* in which requests arrive is not
//! deterministic, so which request gets the `n`-th draws can change from run to run; the
//! draws themselves, and therefore how many of the first `n` requests get each fault, do not.
//!
//! The exclusive faults (reset, error status, 429, empty body, truncation) share one draw:
//! they are stacked as intervals of `[0, 1)` in that order, so each rate is exactly the
//! fraction of matching requests that get that fault (their sum must be ≤ 1). `omit_usage`
//! and the latency jitter use their own draws.

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize};

use super::limits::{DEFAULT_RPS_CODE, LimitSettings};
use crate::Error;

/// Business codes the fake's 429 bodies know a message for (any 1–8 digit code is allowed).
pub const KNOWN_429_CODES: &[u32] = &[1302, 1303, 1305, 1308, 1310, 1312, 1113];

/// Faults injected by the fake, as fractions of the requests whose path matches `routes`.
/// `{}` (all defaults) means no fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction answered with `error_status`.
    pub error_rate: f64,
    /// Status for `error_rate` (default 500; 500 has a Z.AI JSON body, 502/503 a gateway page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// Fraction answered with 429 and business code `code_429`.
    pub rate_429: f64,
    /// Business code of the 429 body (default 1302).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_429: Option<u32>,
    /// `retry_after` (seconds) inside the 429 body's error object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// `reset_time` (Beijing time, `YYYY-MM-DD HH:MM:SS`) this many seconds ahead, in the 429
    /// body and its message text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_in_s: Option<u64>,
    /// A `Retry-After` header (seconds) on 429s (real Z.AI sends none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_header_s: Option<u64>,
    /// Fixed latency before the response headers, in milliseconds.
    pub latency_ms: u64,
    /// Uniform jitter added to `latency_ms`: `[0, latency_jitter_ms]`.
    pub latency_jitter_ms: u64,
    /// Delay between stream chunks (slow drip), in milliseconds.
    pub chunk_delay_ms: u64,
    /// Fraction of 200 responses cut short: a stream stops in the middle of an event (no
    /// terminal event, clean end of the HTTP body); a JSON body stops half-way.
    pub truncate_rate: f64,
    /// Cut streams only: a non-streaming answer whose draw falls in `truncate_rate` is
    /// answered whole. An upstream (or a load balancer in front of it) that drops long-lived
    /// SSE connections cuts streams and leaves short JSON answers alone; a half JSON body is
    /// another defect, which the proxy retries (a 2xx that does not parse is retried with
    /// backoff, as in the original), so it shows as latency and, when every attempt is cut,
    /// a 502.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncate_streams_only: bool,
    /// Fraction of connections reset (TCP RST) before any response byte.
    pub reset_rate: f64,
    /// Fraction answered with an empty 200 body.
    pub empty_rate: f64,
    /// Fraction of responses without usage (a boolean is accepted: true = 1.0).
    #[serde(deserialize_with = "fraction_or_bool")]
    pub omit_usage: f64,
    /// Path prefixes the faults apply to; absent = every route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<String>>,
    /// Per-key limit: concurrent model requests (beyond it: 429 code 1302). Applies to
    /// every model request of the key, whatever `routes` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Per-key limit: model requests per second, a token bucket (beyond it: 429 with
    /// `rps_code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rps: Option<f64>,
    /// Token bucket size for `max_rps`, in requests (default: `max_rps`, i.e. one second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps_burst: Option<f64>,
    /// Business code of a frequency rejection: 1303 (default) or 1305.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps_code: Option<u32>,
}

fn fraction_or_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FractionOrBool {
        Fraction(f64),
        Bool(bool),
    }
    Ok(match FractionOrBool::deserialize(deserializer)? {
        FractionOrBool::Fraction(value) => value,
        FractionOrBool::Bool(true) => 1.0,
        FractionOrBool::Bool(false) => 0.0,
    })
}

impl Faults {
    /// Checks ranges: rates in [0, 1], exclusive rates summing to ≤ 1, statuses 400–599
    /// (not 429: use `rate_429`), 429 codes of 1–8 digits.
    pub fn validate(&self) -> Result<(), Error> {
        let rates = [
            ("error_rate", self.error_rate),
            ("rate_429", self.rate_429),
            ("truncate_rate", self.truncate_rate),
            ("reset_rate", self.reset_rate),
            ("empty_rate", self.empty_rate),
            ("omit_usage", self.omit_usage),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Error::InvalidFaults(format!(
                    "{name} must be a fraction in [0, 1], got {rate}"
                )));
            }
        }
        let exclusive = self.error_rate
            + self.rate_429
            + self.truncate_rate
            + self.reset_rate
            + self.empty_rate;
        if exclusive > 1.0 + 1e-9 {
            return Err(Error::InvalidFaults(format!(
                "error_rate + rate_429 + truncate_rate + reset_rate + empty_rate must be <= 1, got {exclusive}"
            )));
        }
        if let Some(status) = self.error_status
            && (!(400..=599).contains(&status) || status == 429)
        {
            return Err(Error::InvalidFaults(format!(
                "error_status must be 400-599 and not 429 (use rate_429), got {status}"
            )));
        }
        if let Some(code) = self.code_429
            && !(1..=99_999_999).contains(&code)
        {
            return Err(Error::InvalidFaults(format!(
                "code_429 must have 1-8 digits, got {code}"
            )));
        }
        if self.max_concurrency == Some(0) {
            return Err(Error::InvalidFaults(
                "max_concurrency must be at least 1 (leave it out for no limit)".into(),
            ));
        }
        for (name, value) in [("max_rps", self.max_rps), ("rps_burst", self.rps_burst)] {
            if let Some(value) = value
                && !(value.is_finite() && value > 0.0)
            {
                return Err(Error::InvalidFaults(format!(
                    "{name} must be a number > 0, got {value}"
                )));
            }
        }
        if let Some(code) = self.rps_code
            && code != 1303
            && code != 1305
        {
            return Err(Error::InvalidFaults(format!(
                "rps_code must be 1303 or 1305, got {code}"
            )));
        }
        Ok(())
    }

    /// The per-key limits these settings ask for.
    pub fn limits(&self) -> LimitSettings {
        LimitSettings {
            max_concurrency: self.max_concurrency,
            max_rps: self.max_rps,
            rps_burst: self.rps_burst,
            rps_code: self.rps_code.unwrap_or(DEFAULT_RPS_CODE),
        }
    }

    /// Whether the faults apply to `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        match &self.routes {
            None => true,
            Some(prefixes) => prefixes
                .iter()
                .any(|prefix| path.starts_with(prefix.as_str())),
        }
    }
}

/// Result of checking the request's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The credential matches the fake's key.
    Valid,
    /// No `x-api-key` and no `Authorization`.
    Missing,
    /// A credential that does not match.
    Invalid,
}

/// What the fake does with one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// A normal answer.
    Ok,
    /// 401 (Z.AI code 1001 when missing, 1000 when wrong).
    Unauthorized {
        /// No credential at all.
        missing: bool,
    },
    /// 400 with Z.AI code 1214 (the body is not a valid request).
    BadRequest,
    /// A server error status.
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// 429 with a business code.
    RateLimited {
        /// Z.AI business code.
        code: u32,
        /// `retry_after` seconds in the body.
        retry_after_s: Option<u64>,
        /// Reset this many seconds from now.
        reset_in_s: Option<u64>,
        /// `Retry-After` header seconds.
        retry_after_header_s: Option<u64>,
    },
    /// An empty 200 body.
    Empty,
    /// A 200 cut short.
    Truncate,
    /// A TCP reset before any response byte.
    Reset,
}

impl Outcome {
    /// Bounded label for stats.
    pub fn label(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Unauthorized { .. } => "unauthorized".into(),
            Outcome::BadRequest => "bad_request".into(),
            Outcome::Status { status } => format!("status_{status}"),
            Outcome::RateLimited { code, .. } => format!("rate_429_{code}"),
            Outcome::Empty => "empty".into(),
            Outcome::Truncate => "truncated".into(),
            Outcome::Reset => "reset".into(),
        }
    }
}

/// The decision for one request: what to answer, after how long, with or without usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// What to answer.
    pub outcome: Outcome,
    /// Delay before the response headers, in milliseconds.
    pub delay_ms: u64,
    /// Delay between stream chunks, in milliseconds.
    pub chunk_delay_ms: u64,
    /// Leave usage out of the response.
    pub omit_usage: bool,
}

/// Uniform draws in `[0, 1)` for one request.
#[derive(Debug, Clone, Copy)]
pub struct Draws {
    /// Picks the exclusive fault.
    pub fault: f64,
    /// Picks `omit_usage`.
    pub omit: f64,
    /// Scales the latency jitter.
    pub jitter: f64,
}

impl Draws {
    /// The draws of request number `n` (from 0, in arrival order) of a fake seeded with `seed`.
    pub fn for_request(seed: u64, n: u64) -> Draws {
        let mut rng = crate::seed::rng(seed, "fake/draws", n);
        Draws {
            fault: rng.random(),
            omit: rng.random(),
            jitter: rng.random(),
        }
    }
}

/// What [`decide`] knows about a request besides the draws.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The request path.
    pub path: &'a str,
    /// The credential check.
    pub auth: Auth,
    /// False when a model request's body is not a usable request.
    pub valid_body: bool,
    /// Whether the request asks for a stream.
    pub streaming: bool,
}

/// Decides what to do with a request.
pub fn decide(faults: &Faults, request: RequestFacts<'_>, draws: Draws) -> Decision {
    let RequestFacts {
        path,
        auth,
        valid_body,
        streaming,
    } = request;
    let applies = faults.applies_to(path);
    let (delay_ms, chunk_delay_ms) = if applies {
        let jitter =
            (faults.latency_jitter_ms as f64 * draws.jitter.clamp(0.0, 1.0)).round() as u64;
        (faults.latency_ms + jitter, faults.chunk_delay_ms)
    } else {
        (0, 0)
    };
    let outcome = match auth {
        Auth::Missing => Outcome::Unauthorized { missing: true },
        Auth::Invalid => Outcome::Unauthorized { missing: false },
        Auth::Valid if !applies => Outcome::Ok,
        Auth::Valid => pick_fault(faults, draws.fault),
    };
    let outcome = match outcome {
        Outcome::Truncate if faults.truncate_streams_only && !streaming => Outcome::Ok,
        outcome => outcome,
    };
    let outcome = match outcome {
        Outcome::Ok if !valid_body => Outcome::BadRequest,
        outcome => outcome,
    };
    Decision {
        outcome,
        delay_ms,
        chunk_delay_ms,
        omit_usage: applies && draws.omit < faults.omit_usage,
    }
}

fn pick_fault(faults: &Faults, draw: f64) -> Outcome {
    let mut edge = faults.reset_rate;
    if draw < edge {
        return Outcome::Reset;
    }
    edge += faults.error_rate;
    if draw < edge {
        return Outcome::Status {
            status: faults.error_status.unwrap_or(500),
        };
    }
    edge += faults.rate_429;
    if draw < edge {
        return Outcome::RateLimited {
            code: faults.code_429.unwrap_or(1302),
            retry_after_s: faults.retry_after_s,
            reset_in_s: faults.reset_in_s,
            retry_after_header_s: faults.retry_after_header_s,
        };
    }
    edge += faults.empty_rate;
    if draw < edge {
        return Outcome::Empty;
    }
    edge += faults.truncate_rate;
    if draw < edge {
        return Outcome::Truncate;
    }
    Outcome::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A streaming request's facts.
    fn facts(path: &str, auth: Auth, valid_body: bool) -> RequestFacts<'_> {
        RequestFacts {
            path,
            auth,
            valid_body,
            streaming: true,
        }
    }

    fn draws(fault: f64) -> Draws {
        Draws {
            fault,
            omit: 0.5,
            jitter: 0.5,
        }
    }

    #[test]
    fn limits_parse_and_validate() {
        let faults: Faults =
            serde_json::from_str(r#"{"max_concurrency":20,"max_rps":5.5,"rps_code":1305}"#)
                .unwrap();
        faults.validate().unwrap();
        let limits = faults.limits();
        assert_eq!(limits.max_concurrency, Some(20));
        assert_eq!(limits.max_rps, Some(5.5));
        assert_eq!(limits.rps_code, 1305);
        assert_eq!(Faults::default().limits().rps_code, 1303);
        for bad in [
            r#"{"max_concurrency":0}"#,
            r#"{"max_rps":0}"#,
            r#"{"max_rps":-1}"#,
            r#"{"rps_burst":0}"#,
            r#"{"rps_code":1302}"#,
        ] {
            let faults: Faults = serde_json::from_str(bad).unwrap();
            assert!(faults.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_same_seed_and_request_sequence_give_the_same_decisions() {
        let faults = Faults {
            error_rate: 0.2,
            rate_429: 0.1,
            truncate_rate: 0.1,
            reset_rate: 0.05,
            omit_usage: 0.2,
            latency_ms: 80,
            latency_jitter_ms: 60,
            ..Faults::default()
        };
        let run = |seed: u64| -> Vec<Decision> {
            (0..300)
                .map(|n| {
                    decide(
                        &faults,
                        facts("/api/anthropic/v1/messages", Auth::Valid, true),
                        Draws::for_request(seed, n),
                    )
                })
                .collect()
        };
        let first = run(7);
        assert_eq!(first, run(7));
        let other = run(8);
        let pairs = || first.iter().zip(&other);
        assert!(
            pairs().any(|(a, b)| a.outcome != b.outcome),
            "fault picks differ"
        );
        assert!(
            pairs().any(|(a, b)| a.delay_ms != b.delay_ms),
            "latencies differ"
        );
        assert!(
            pairs().any(|(a, b)| a.omit_usage != b.omit_usage),
            "omit_usage differs"
        );
        // The draws are spread: latencies cover the jitter range, every fault occurs.
        let delays: Vec<u64> = first.iter().map(|d| d.delay_ms).collect();
        assert!(delays.iter().all(|d| (80..=140).contains(d)));
        assert!(delays.iter().any(|d| *d < 90) && delays.iter().any(|d| *d > 130));
        for label in ["ok", "status_500", "rate_429_1302", "truncated", "reset"] {
            assert!(first.iter().any(|d| d.outcome.label() == label), "{label}");
        }
    }

    #[test]
    fn empty_json_clears_everything() {
        let faults: Faults = serde_json::from_str("{}").unwrap();
        assert_eq!(faults, Faults::default());
        let decision = decide(&faults, facts("/x", Auth::Valid, true), draws(0.0));
        assert_eq!(decision.outcome, Outcome::Ok);
        assert_eq!(decision.delay_ms, 0);
        assert!(!decision.omit_usage);
    }

    #[test]
    fn unknown_keys_and_bad_ranges_are_rejected() {
        assert!(serde_json::from_str::<Faults>(r#"{"eror_rate":1}"#).is_err());
        let faults = Faults {
            error_rate: 0.7,
            rate_429: 0.7,
            ..Faults::default()
        };
        assert!(faults.validate().is_err());
        let faults = Faults {
            error_status: Some(429),
            ..Faults::default()
        };
        assert!(faults.validate().is_err());
        let faults = Faults {
            reset_rate: -0.1,
            ..Faults::default()
        };
        assert!(faults.validate().is_err());
    }

    #[test]
    fn stacked_intervals_pick_each_fault() {
        let faults = Faults {
            reset_rate: 0.1,
            error_rate: 0.1,
            error_status: Some(503),
            rate_429: 0.1,
            code_429: Some(1308),
            empty_rate: 0.1,
            truncate_rate: 0.1,
            ..Faults::default()
        };
        faults.validate().unwrap();
        let pick = |u| decide(&faults, facts("/p", Auth::Valid, true), draws(u)).outcome;
        assert_eq!(pick(0.05), Outcome::Reset);
        assert_eq!(pick(0.15), Outcome::Status { status: 503 });
        assert!(matches!(
            pick(0.25),
            Outcome::RateLimited { code: 1308, .. }
        ));
        assert_eq!(pick(0.35), Outcome::Empty);
        assert_eq!(pick(0.45), Outcome::Truncate);
        assert_eq!(pick(0.55), Outcome::Ok);
    }

    #[test]
    fn routes_limit_faults_and_auth_comes_first() {
        let faults = Faults {
            error_rate: 1.0,
            latency_ms: 100,
            routes: Some(vec!["/api/anthropic".into()]),
            ..Faults::default()
        };
        let other = decide(&faults, facts("/v1/models", Auth::Valid, true), draws(0.0));
        assert_eq!(other.outcome, Outcome::Ok);
        assert_eq!(other.delay_ms, 0);
        let hit = decide(
            &faults,
            facts("/api/anthropic/v1/messages", Auth::Valid, true),
            draws(0.0),
        );
        assert_eq!(hit.outcome, Outcome::Status { status: 500 });
        assert_eq!(hit.delay_ms, 100);
        let denied = decide(
            &faults,
            facts("/api/anthropic/v1/messages", Auth::Missing, true),
            draws(0.0),
        );
        assert_eq!(denied.outcome, Outcome::Unauthorized { missing: true });
    }

    #[test]
    fn omit_usage_accepts_bool_and_jitter_scales() {
        let faults: Faults =
            serde_json::from_str(r#"{"omit_usage":true,"latency_ms":10,"latency_jitter_ms":20}"#)
                .unwrap();
        let decision = decide(
            &faults,
            facts("/p", Auth::Valid, true),
            Draws {
                fault: 0.9,
                omit: 0.99,
                jitter: 1.0,
            },
        );
        assert!(decision.omit_usage);
        assert_eq!(decision.delay_ms, 30);
        let decision = decide(
            &faults,
            facts("/p", Auth::Valid, false),
            Draws {
                fault: 0.9,
                omit: 0.99,
                jitter: 0.0,
            },
        );
        assert_eq!(decision.delay_ms, 10);
        assert_eq!(decision.outcome, Outcome::BadRequest);
    }

    #[test]
    fn streams_only_truncation_answers_json_whole() {
        let faults = Faults {
            truncate_rate: 1.0,
            truncate_streams_only: true,
            ..Faults::default()
        };
        let stream = decide(&faults, facts("/p", Auth::Valid, true), draws(0.5));
        assert_eq!(stream.outcome, Outcome::Truncate);
        let json = RequestFacts {
            streaming: false,
            ..facts("/p", Auth::Valid, true)
        };
        assert_eq!(decide(&faults, json, draws(0.5)).outcome, Outcome::Ok);
        let broken = RequestFacts {
            valid_body: false,
            ..json
        };
        assert_eq!(
            decide(&faults, broken, draws(0.5)).outcome,
            Outcome::BadRequest
        );
        let everywhere = Faults {
            truncate_streams_only: false,
            ..faults
        };
        assert_eq!(
            decide(&everywhere, json, draws(0.5)).outcome,
            Outcome::Truncate
        );
        let parsed: Faults =
            serde_json::from_str(r#"{"truncate_rate":0.1,"truncate_streams_only":true}"#).unwrap();
        assert!(parsed.truncate_streams_only);
        assert!(
            !serde_json::to_string(&Faults::default())
                .unwrap()
                .contains("streams_only")
        );
    }
}
