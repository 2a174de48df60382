//! Retries around the one upstream call (reference §1.6, §1.6.1).
//!
//! [`send_with_retries`] wraps [`upstream::send`]. It retries, with exponential backoff
//! (`RETRY_BASE_DELAY` × 2^(n−1)) up to `MAX_RETRIES` times:
//! * network errors and timeouts;
//! * 2xx non-streaming answers whose body is empty or not valid JSON (the body is buffered
//!   and validated before anything is sent to the client);
//! * 2xx streams that end before their first non-empty chunk (the stream is peeked until
//!   that chunk before the response is committed);
//! * 429s as their Z.AI class says ([`crate::zai_codes`]).
//!
//! Every retry waits (cancelled with the request when the client goes away: the handler
//! future is dropped), then re-acquires rate-limit admission. Nothing reaches the client
//! before the answer is final, so a retry never follows a byte already sent. 422 and every
//! other status pass through unretried.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::RequestParts;
use super::upstream;
use crate::error::ProxyError;
use crate::ratelimit::leases::Lease;
use crate::routes::WireFormat;
use crate::state::AppState;
use crate::zai_codes::{self, ZaiError};

/// Non-streaming 2xx bodies up to this size are buffered and validated; larger ones are
/// relayed unvalidated (they are evidently not empty).
pub const VALIDATE_LIMIT: usize = 16 * 1024 * 1024;

/// The response body handed to the relay: bytes already read while validating (if any),
/// then the rest of the upstream body.
#[derive(Debug)]
pub struct RetriedBody {
    prefix: Option<Bytes>,
    rest: Option<Incoming>,
}

impl RetriedBody {
    fn new(prefix: Bytes, rest: Option<Incoming>) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
        }
    }

    fn passthrough(body: Incoming) -> Self {
        Self {
            prefix: None,
            rest: Some(body),
        }
    }
}

impl Body for RetriedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(prefix),
            Some(rest) => {
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + prefix);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + prefix);
                }
                hint
            }
        }
    }
}

/// What one attempt decided.
enum Verdict {
    /// Final: relay this.
    Done(Response<RetriedBody>),
    /// Retry (if attempts remain) after `wait`; otherwise fail with `failure`, or answer
    /// with `last` when there is a response to give (429).
    Retry {
        reason: &'static str,
        wait: Duration,
        failure: Option<ProxyError>,
        last: Option<Box<Response<RetriedBody>>>,
    },
}

/// Sends the request upstream with retries; see the module docs. `lease` is the first
/// attempt's concurrency lease (from the admission before the call); every retry is
/// admitted again and takes its own. Returns the final response with the lease of the
/// attempt that produced it, to be held until its body is done.
pub async fn send_with_retries(
    state: &AppState,
    parts: &RequestParts,
    body: Bytes,
    lease: Option<Lease>,
) -> Result<(Response<RetriedBody>, Option<Lease>), ProxyError> {
    let settings = &state.config.retry;
    let attempts = settings.max_retries.saturating_add(1);
    let mut retry: u32 = 0;
    let mut lease = lease;
    loop {
        let base = zai_codes::backoff(settings.base_delay, retry + 1);
        let verdict = attempt(state, parts, body.clone(), base, retry, attempts).await;
        let (reason, wait, failure, last) = match verdict {
            Verdict::Done(response) => return Ok((response, lease)),
            Verdict::Retry {
                reason,
                wait,
                failure,
                last,
            } => (reason, wait, failure, last),
        };
        if reason != "429"
            && let Some(failure) = &failure
        {
            tracing::warn!(
                "Upstream attempt {}/{attempts} failed: {failure}",
                retry + 1
            );
        }
        // This attempt is over (its body was read or dropped): its lease goes back now,
        // not after the backoff.
        drop(lease.take());
        if retry >= settings.max_retries {
            if let Some(last) = last {
                return Ok((*last, None));
            }
            let failure = failure.unwrap_or(ProxyError::UpstreamMalformed);
            tracing::warn!("All retry attempts failed: {failure}");
            return Err(failure);
        }
        retry += 1;
        tracing::info!(
            "Retry attempt {}/{attempts} after {}",
            retry + 1,
            humantime::format_duration(round_ms(wait))
        );
        // Both awaits are cancelled with the handler when the client goes away.
        tokio::time::sleep(wait).await;
        lease = state.limiter.admit(parts.source).await.lease;
        let counter = &state.metrics.retry_attempts_total;
        counter.with_label_values(&["retry", state.variant()]).inc();
        counter.with_label_values(&[reason, state.variant()]).inc();
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

async fn attempt(
    state: &AppState,
    parts: &RequestParts,
    body: Bytes,
    base: Duration,
    retry: u32,
    attempts: u32,
) -> Verdict {
    let response = match upstream::send(state, parts, body).await {
        Ok(response) => response,
        Err(e) => {
            return Verdict::Retry {
                reason: "network_error",
                wait: base,
                failure: Some(e),
                last: None,
            };
        }
    };
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return on_429(state, response, base, retry, attempts).await;
    }
    if !status.is_success() || skips_validation(parts, status) {
        return Verdict::Done(response.map(RetriedBody::passthrough));
    }
    let timeout = state.config.upstream_timeout;
    if is_stream(parts, &response) {
        let (head, mut incoming) = response.into_parts();
        return match tokio::time::timeout(timeout, first_chunk(&mut incoming)).await {
            Ok(Ok(Some(chunk))) => Verdict::Done(Response::from_parts(
                head,
                RetriedBody::new(chunk, Some(incoming)),
            )),
            Ok(Ok(None) | Err(_)) | Err(_) => {
                state.count_upstream_error("empty_streaming");
                Verdict::Retry {
                    reason: "empty_streaming",
                    wait: base,
                    failure: Some(ProxyError::UpstreamEmptyStream),
                    last: None,
                }
            }
        };
    }
    let (head, mut incoming) = response.into_parts();
    let read = tokio::time::timeout(timeout, read_prefix(&mut incoming, VALIDATE_LIMIT)).await;
    match read {
        Ok(Ok((bytes, false))) => {
            // More than VALIDATE_LIMIT bytes: evidently not empty; relay without validating.
            Verdict::Done(Response::from_parts(
                head,
                RetriedBody::new(bytes, Some(incoming)),
            ))
        }
        Ok(Ok((bytes, true))) if valid_body(&head.headers, &bytes) => {
            Verdict::Done(Response::from_parts(head, RetriedBody::new(bytes, None)))
        }
        Ok(Ok(_) | Err(_)) | Err(_) => {
            state.count_upstream_error("truncated_response");
            Verdict::Retry {
                reason: "truncated_response",
                wait: base,
                failure: Some(ProxyError::UpstreamMalformed),
                last: None,
            }
        }
    }
}

/// HEAD, 204 and 205 have no body to validate; non-API paths are relayed as they come.
fn skips_validation(parts: &RequestParts, status: StatusCode) -> bool {
    parts.method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::RESET_CONTENT
        || parts.route.format == WireFormat::Other
}

/// The request asked for a stream, or the upstream answers with server-sent events.
fn is_stream(parts: &RequestParts, response: &Response<Incoming>) -> bool {
    parts.stream
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"))
}

/// Non-empty, and valid JSON unless the upstream labels it as something else.
fn valid_body(headers: &http::HeaderMap, bytes: &[u8]) -> bool {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return false;
    }
    let json_expected = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.to_ascii_lowercase().contains("json"));
    !json_expected || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Reads data frames until more than `limit` bytes are held or the body ends. Returns the
/// bytes and whether the body ended. A body that arrives as one data chunk (the usual
/// case for small answers) is returned as that chunk, without a copy.
async fn read_prefix(body: &mut Incoming, limit: usize) -> Result<(Bytes, bool), hyper::Error> {
    let mut prefix = Prefix::default();
    while prefix.len() <= limit {
        match body.frame().await {
            None => return Ok((prefix.into_bytes(), true)),
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    prefix.push(data);
                }
            }
        }
    }
    Ok((prefix.into_bytes(), false))
}

/// Data chunks read so far: the first one kept as it came, copied only when a second one
/// arrives.
#[derive(Default)]
struct Prefix {
    first: Option<Bytes>,
    joined: BytesMut,
}

impl Prefix {
    fn len(&self) -> usize {
        self.first.as_ref().map_or(self.joined.len(), Bytes::len)
    }

    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if self.first.is_none() && self.joined.is_empty() {
            self.first = Some(data);
            return;
        }
        if let Some(first) = self.first.take() {
            self.joined.extend_from_slice(&first);
        }
        self.joined.extend_from_slice(&data);
    }

    fn into_bytes(self) -> Bytes {
        self.first.unwrap_or_else(|| self.joined.freeze())
    }
}

/// The first non-empty data chunk, or `None` when the stream ends without one.
async fn first_chunk(body: &mut Incoming) -> Result<Option<Bytes>, hyper::Error> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(frame) => {
                if let Ok(data) = frame?.into_data()
                    && !data.is_empty()
                {
                    return Ok(Some(data));
                }
            }
        }
    }
}

async fn on_429(
    state: &AppState,
    response: Response<Incoming>,
    base: Duration,
    retry: u32,
    attempts: u32,
) -> Verdict {
    let (mut head, mut incoming) = response.into_parts();
    let read = tokio::time::timeout(
        state.config.upstream_timeout,
        read_prefix(&mut incoming, zai_codes::BODY_LIMIT),
    )
    .await;
    let mut body = match read {
        Ok(Ok((bytes, _))) => bytes,
        // A 429 whose body cannot be read is still a 429: classify what we have (nothing).
        Ok(Err(_)) | Err(_) => Bytes::new(),
    };
    let oversize = body.len() > zai_codes::BODY_LIMIT;
    body.truncate(zai_codes::BODY_LIMIT);
    drop(incoming);
    let err = zai_codes::classify(&body, oversize);
    let class = err.class.as_str();
    let code = err.code.as_deref().unwrap_or("none");
    state
        .metrics
        .zai_errors_total
        .with_label_values(&[class, err.code_label(), state.variant()])
        .inc();
    let policy = err.policy();
    if policy.feeds_limiter {
        state.limiter.record_429();
    }
    let header_wait = head
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(zai_codes::parse_retry_after_header);
    annotate_429(&mut head.headers, &err);
    let last = Response::from_parts(head, RetriedBody::new(body, None));
    if !policy.retries {
        if err.class == zai_codes::ZaiErrorClass::Quota {
            tracing::warn!(
                "429 quota exhausted (code {code}): not retrying, returning reset metadata"
            );
        } else {
            tracing::warn!("429 {class} (code {code}): not retryable, returning it");
        }
        return Verdict::Done(last);
    }
    let wait = zai_codes::wait_before_retry(
        err.class,
        base,
        header_wait,
        err.retry_after,
        rand::random::<f64>(),
    );
    if retry + 1 >= attempts {
        tracing::warn!("429 {class} (code {code}), max retries exceeded");
    } else {
        tracing::warn!(
            "429 {class} (code {code}), retrying (attempt {}/{attempts}) after {}",
            retry + 2,
            humantime::format_duration(round_ms(wait))
        );
    }
    Verdict::Retry {
        reason: "429",
        wait,
        failure: None,
        last: Some(Box::new(last)),
    }
}

/// Adds the `X-Zai-*` headers and, when upstream sent none, a derived `Retry-After`; drops
/// `Content-Length` (the replayed body may be truncated).
fn annotate_429(headers: &mut http::HeaderMap, err: &ZaiError) {
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        "x-zai-error-class",
        HeaderValue::from_static(err.class.as_str()),
    );
    if let Some(code) = err
        .code
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert("x-zai-error-code", code);
    }
    if let Some(reset) = err.reset_at
        && let Ok(v) = HeaderValue::from_str(&zai_codes::reset_header_value(reset))
    {
        headers.insert("x-zai-rate-limit-reset", v);
    }
    if !headers.contains_key(header::RETRY_AFTER)
        && let Some(secs) = err.derived_retry_after(Utc::now())
    {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_validation() {
        let mut json = http::HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(valid_body(&json, br#"{"id":"x"}"#));
        assert!(!valid_body(&json, b""));
        assert!(!valid_body(&json, b" \n"));
        assert!(!valid_body(&json, br#"{"id":"#));
        let none = http::HeaderMap::new();
        assert!(!valid_body(&none, b"<html>"));
        let mut text = http::HeaderMap::new();
        text.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(valid_body(&text, b"plain words"));
        assert!(!valid_body(&text, b""));
    }

    #[test]
    fn final_429_headers() {
        let err = zai_codes::classify(
            br#"{"error":{"code":"1308","message":"limit","reset_at":"2099-01-01T00:00:00Z"}}"#,
            false,
        );
        let mut h = http::HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        annotate_429(&mut h, &err);
        assert!(h.get(header::CONTENT_LENGTH).is_none());
        assert_eq!(h["x-zai-error-class"], "quota");
        assert_eq!(h["x-zai-error-code"], "1308");
        assert_eq!(h["x-zai-rate-limit-reset"], "2099-01-01T00:00:00Z");
        assert!(h.contains_key(header::RETRY_AFTER));
        // Upstream's Retry-After is kept.
        let mut h = http::HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        annotate_429(&mut h, &err);
        assert_eq!(h[header::RETRY_AFTER], "7");
    }

    #[test]
    fn prefix_keeps_a_single_chunk_and_joins_several() {
        let chunk = Bytes::from_static(b"{\"id\":1}");
        let mut one = Prefix::default();
        one.push(Bytes::new());
        one.push(chunk.clone());
        assert_eq!(one.len(), chunk.len());
        let kept = one.into_bytes();
        assert_eq!(kept.as_ptr(), chunk.as_ptr(), "no copy of a single chunk");
        let mut several = Prefix::default();
        for part in [&b"{\"a\""[..], b"", b":1", b"}"] {
            several.push(Bytes::copy_from_slice(part));
        }
        assert_eq!(several.len(), 7);
        assert_eq!(&several.into_bytes()[..], b"{\"a\":1}");
        assert!(Prefix::default().into_bytes().is_empty());
    }
}
