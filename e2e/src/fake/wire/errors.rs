//! Z.AI-shaped error bodies: 401 (codes 1000/1001), 400 (1214), 429 with a business code
//! (reference §1.6.1 envelopes: `{"error":{"code","message"}}` on the OpenAI paths,
//! `{"type":"error","error":{"type":"rate_limit_error","code",…}}` on the Anthropic path),
//! 500 (JSON), 502/503 (a gateway's HTML page, as a load balancer in front would send).

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde_json::{Value, json};

use crate::fake::tokens::Api;

/// A rendered error: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

const JSON: &str = "application/json";

fn envelope(api: Option<Api>, error_type: &str, code: &str, message: &str, extra: Value) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let (Value::Object(error), Value::Object(extra)) = (&mut error, extra) {
        error.extend(extra);
    }
    match api {
        Some(Api::Anthropic) => {
            error["type"] = json!(error_type);
            json!({"type": "error", "error": error})
        }
        _ => json!({"error": error}),
    }
}

fn json_response(status: u16, body: Value) -> ErrorResponse {
    ErrorResponse {
        status,
        content_type: JSON,
        body: body.to_string(),
        headers: Vec::new(),
    }
}

/// 401: code 1001 when the credential is missing, 1000 when it is wrong.
pub fn unauthorized(api: Option<Api>, missing: bool) -> ErrorResponse {
    let (code, message) = if missing {
        (
            "1001",
            "Authentication parameter not received in Header, unable to authenticate",
        )
    } else {
        ("1000", "Authentication Failed")
    };
    json_response(
        401,
        envelope(api, "authentication_error", code, message, json!({})),
    )
}

/// 400 code 1214 for a body that is not a usable request.
pub fn bad_request(api: Option<Api>) -> ErrorResponse {
    json_response(
        400,
        envelope(
            api,
            "invalid_request_error",
            "1214",
            "Invalid request: messages is required",
            json!({}),
        ),
    )
}

/// The message Z.AI sends with a 429 business code.
pub fn message_429(code: u32) -> &'static str {
    match code {
        1302 => {
            "High concurrency usage of this API, please reduce concurrency or contact customer service to increase limits"
        }
        1303 => {
            "High frequency usage of this API, please reduce frequency or contact customer service to increase limits"
        }
        1305 => "The service may be temporarily overloaded, please try again later",
        1308 => "Usage limit reached for 5 hour.",
        1310 => "Weekly/Monthly Limit Exhausted.",
        1312 => {
            "The model is currently experiencing high traffic, please try again later or switch to another model"
        }
        1113 => "Insufficient balance or no resource package. Please recharge.",
        _ => "Rate limit reached for requests",
    }
}

/// Formats a reset instant as Z.AI does: Beijing time (UTC+8), `YYYY-MM-DD HH:MM:SS`.
pub fn beijing_time(at: DateTime<Utc>) -> String {
    let beijing = FixedOffset::east_opt(8 * 3600)
        .map_or_else(|| at.fixed_offset(), |tz| at.with_timezone(&tz));
    beijing.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// 429 with `code`; optional `retry_after` and `reset_time` fields (in the error object),
/// the reset also in the message text, and an optional `Retry-After` header.
pub fn rate_limited(
    api: Option<Api>,
    code: u32,
    retry_after_s: Option<u64>,
    reset_in_s: Option<u64>,
    retry_after_header_s: Option<u64>,
    now: DateTime<Utc>,
) -> ErrorResponse {
    let mut message = message_429(code).to_string();
    let mut extra = json!({});
    if let Some(seconds) = reset_in_s {
        let reset = beijing_time(
            now + Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 2_000)),
        );
        message.push_str(&format!(" Your limit will reset at {reset}"));
        extra["reset_time"] = json!(reset);
    }
    if let Some(seconds) = retry_after_s {
        extra["retry_after"] = json!(seconds);
    }
    let mut response = json_response(
        429,
        envelope(api, "rate_limit_error", &code.to_string(), &message, extra),
    );
    if let Some(seconds) = retry_after_header_s {
        response.headers.push(("retry-after", seconds.to_string()));
    }
    response
}

/// A server error: 500 as Z.AI JSON; other statuses as a gateway's HTML page.
pub fn server_error(api: Option<Api>, status: u16) -> ErrorResponse {
    if status == 500 || !(500..=599).contains(&status) {
        let error_type = if status >= 500 {
            "api_error"
        } else {
            "invalid_request_error"
        };
        return json_response(
            status,
            envelope(
                api,
                error_type,
                &status.to_string(),
                "Internal Error",
                json!({}),
            ),
        );
    }
    let reason = match status {
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => "Server Error",
    };
    ErrorResponse {
        status,
        content_type: "text/html",
        body: format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
        ),
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rate_limited_carries_code_and_reset() {
        let now = Utc.with_ymd_and_hms(2026, 9, 5, 16, 0, 0).unwrap();
        let response = rate_limited(Some(Api::OpenAi), 1308, Some(30), Some(3600), Some(7), now);
        let body: Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(body["error"]["code"], "1308");
        assert_eq!(body["error"]["retry_after"], 30);
        assert_eq!(body["error"]["reset_time"], "2026-09-06 01:00:00");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with("reset at 2026-09-06 01:00:00")
        );
        assert_eq!(response.headers, vec![("retry-after", "7".to_string())]);
        let anthropic = rate_limited(Some(Api::Anthropic), 1302, None, None, None, now);
        let body: Value = serde_json::from_str(&anthropic.body).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "1302");
    }
}
