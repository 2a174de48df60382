//! The quota poll: one authenticated GET of `{ZAI_QUOTA_BASE_URL}/api/monitor/usage/quota/limit`.
//!
//! Sends the raw key as `Authorization` (no `Bearer`, as the monitor API expects), follows no
//! redirects, reads at most `QUOTA_MAX_RESPONSE_BYTES`, and gives the whole exchange
//! `QUOTA_POLL_TIMEOUT`. Never logs the key or the body.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};

use super::normalize::{self, QuotaSample, Rejected};
use crate::client::UpstreamClient;
use crate::config::{ApiKey, QuotaSettings};

/// The quota path under the base URL.
pub const QUOTA_PATH: &str = "/api/monitor/usage/quota/limit";

/// Why a poll failed (the text is safe to log: no key, no body).
#[derive(Debug, Clone, PartialEq)]
pub enum PollFailure {
    /// Transport failure or timeout.
    Transport(String),
    /// Any status but 200.
    Status(u16),
    /// Body larger than the budget.
    Oversize(usize),
    /// The provider rejected the call.
    Provider(Option<i64>),
    /// Not the expected JSON.
    Malformed(String),
}

impl fmt::Display for PollFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollFailure::Transport(e) => f.write_str(e),
            PollFailure::Status(s) => write!(f, "unexpected status {s}"),
            PollFailure::Oversize(limit) => write!(f, "response larger than {limit} bytes"),
            PollFailure::Provider(Some(code)) => write!(f, "provider code {code}"),
            PollFailure::Provider(None) => f.write_str("provider rejected the request"),
            PollFailure::Malformed(e) => write!(f, "malformed response: {e}"),
        }
    }
}

/// Polls once.
pub async fn poll_once(
    client: &UpstreamClient,
    settings: &QuotaSettings,
    key: &ApiKey,
) -> Result<QuotaSample, PollFailure> {
    match tokio::time::timeout(settings.timeout, fetch(client, settings, key)).await {
        Ok(result) => result,
        Err(_) => Err(PollFailure::Transport(format!(
            "timed out after {}",
            humantime::format_duration(settings.timeout)
        ))),
    }
}

async fn fetch(
    client: &UpstreamClient,
    settings: &QuotaSettings,
    key: &ApiKey,
) -> Result<QuotaSample, PollFailure> {
    let url = format!("{}{QUOTA_PATH}", settings.base_url.trim_end_matches('/'));
    let mut auth = HeaderValue::from_str(key.expose())
        .map_err(|_| PollFailure::Transport("API key is not a valid header value".into()))?;
    auth.set_sensitive(true);
    let request = Request::builder()
        .method(Method::GET)
        .uri(&url)
        .header(header::AUTHORIZATION, auth)
        .header(header::ACCEPT, "application/json")
        .header(header::ACCEPT_LANGUAGE, "en-US,en;q=0.9")
        .body(Full::new(Bytes::new()))
        .map_err(|e| PollFailure::Transport(format!("bad quota URL: {e}")))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| PollFailure::Transport(describe(&e)))?;
    if response.status() != StatusCode::OK {
        return Err(PollFailure::Status(response.status().as_u16()));
    }
    let limit = settings.max_response_bytes;
    let body = Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                PollFailure::Oversize(limit)
            } else {
                PollFailure::Transport(format!("reading the body: {e}"))
            }
        })?
        .to_bytes();
    normalize::normalize(&body).map_err(|rejected| match rejected {
        Rejected::Malformed(e) => PollFailure::Malformed(e),
        Rejected::Provider { code } => PollFailure::Provider(code),
    })
}

fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Poll cadence helper: the first poll is immediate, then every `interval`.
pub fn ticker(interval: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}
