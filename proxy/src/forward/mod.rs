//! The forward handler: every path that is not one of the proxy's own routes.
//!
//! Order: capacity (503) → early 413 on `Content-Length` → rate-limit admission → read the
//! body (413 over `MAX_REQUEST_BODY_BYTES`) → one parse (model, stream, input texts;
//! `tokens::hooks::read_request`) → [hook 1: start
//! the input token estimate, which runs concurrently with the upstream call] → [hook 2: the
//! upstream call, `upstream::send`, wrapped by retries] → join the estimate when the
//! response head arrives → [hook 3: relay through taps]. Bodies are never copied (the
//! counting task gets a `Bytes` clone) or re-serialised.

pub mod retry;
pub mod stream_tap;
pub mod upstream;
pub mod usage_tap;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use crate::capacity::CapacityPermit;
use crate::error::ProxyError;
use crate::headers;
use crate::ratelimit::SourceBucket;
use crate::ratelimit::leases::Lease;
use crate::relay::{RelayBody, RelayEnd, ResponseTap};
use crate::routes::{self, Route, RouteKind, WireFormat};
use crate::state::{AppState, ModelLabel};
use crate::tokens;
use crate::wire::LocalFailure;
use stream_tap::StreamTap;

/// What the proxy knows about a request once its body is read.
#[derive(Debug, Clone)]
pub struct RequestParts {
    /// Client's method.
    pub method: Method,
    /// Client's URI (path and query are appended to `ZAI_TARGET_URL`).
    pub uri: Uri,
    /// Client's headers, untouched (filtered when the upstream request is built).
    pub headers: HeaderMap,
    /// Wire format, kind and bounded `path` label.
    pub route: Route,
    /// Bounded `model` label (known model, `other`, or `TOKENIZER_MODEL` if none given).
    pub model_label: ModelLabel,
    /// The request asked for a stream (`"stream": true`).
    pub stream: bool,
    /// Source bucket of the TCP peer.
    pub source: SourceBucket,
    /// When the request arrived.
    pub started: Instant,
}

impl RequestParts {
    /// Bounded `method` label.
    pub fn method_label(&self) -> &'static str {
        method_label(&self.method)
    }
}

/// Bounded `method` label: the standard methods, else `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// What a finished request records (metrics + the per-request log line).
struct Outcome<'a> {
    method: &'static str,
    route: &'static str,
    status: StatusCode,
    started: Instant,
    response_bytes: Option<u64>,
    end: &'a str,
}

fn record(state: &AppState, o: &Outcome<'_>, observe_duration: bool) {
    let variant = state.variant();
    let m = &state.metrics;
    let elapsed = o.started.elapsed();
    // Byte counts fit f64 exactly up to 2^53.
    #[allow(clippy::cast_precision_loss)]
    let response_bytes = o.response_bytes.map(|bytes| bytes as f64);
    let hot = (o.method == "POST" && o.status == StatusCode::OK)
        .then(|| m.hot().post_ok(o.route))
        .flatten();
    if let Some(series) = hot {
        // The common case, resolved once at start-up (same series as below).
        series.requests_total.inc();
        if observe_duration {
            series
                .request_duration_seconds
                .observe(elapsed.as_secs_f64());
        }
        if let Some(bytes) = response_bytes {
            series.response_size_bytes.observe(bytes);
        }
    } else {
        let status = o.status.as_str();
        let labels = [o.method, o.route, status, variant];
        m.requests_total.with_label_values(&labels).inc();
        if observe_duration {
            m.request_duration_seconds
                .with_label_values(&labels)
                .observe(elapsed.as_secs_f64());
        }
        if let Some(bytes) = response_bytes {
            m.response_size_bytes
                .with_label_values(&labels)
                .observe(bytes);
        }
    }
    tracing::info!(
        method = %o.method,
        route = %o.route,
        status = o.status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        variant = %variant,
        outcome = %o.end,
        "request"
    );
}

/// Records and answers an error made by the proxy itself.
fn fail(
    state: &AppState,
    method: &'static str,
    route: Route,
    started: Instant,
    failure: LocalFailure,
    message: &str,
) -> Response {
    record(
        state,
        &Outcome {
            method,
            route: route.label,
            status: failure.status(),
            started,
            response_bytes: None,
            end: "proxy_error",
        },
        failure != LocalFailure::AtCapacity,
    );
    let mut response = failure.response(route.format, message);
    if matches!(failure, LocalFailure::AtCapacity) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The core tap: response size, `requests_total`, duration, the log line; releases the
/// capacity slot when the body is done.
struct RequestRecord {
    state: Arc<AppState>,
    method: &'static str,
    route: &'static str,
    status: StatusCode,
    started: Instant,
    bytes: u64,
    _permit: CapacityPermit,
    /// The final attempt's concurrency lease: held until the body is done.
    _lease: Option<Lease>,
}

impl ResponseTap for RequestRecord {
    fn on_chunk(&mut self, chunk: &Bytes) {
        self.bytes += chunk.len() as u64;
    }

    fn on_end(self: Box<Self>, end: RelayEnd) {
        let end = match end {
            RelayEnd::Complete => "complete",
            RelayEnd::ClientGone => {
                self.state.count_upstream_error("write_error");
                "client_gone"
            }
            RelayEnd::UpstreamError => {
                self.state.count_upstream_error("read_error");
                "upstream_error"
            }
        };
        record(
            &self.state,
            &Outcome {
                method: self.method,
                route: self.route,
                status: self.status,
                started: self.started,
                response_bytes: Some(self.bytes),
                end,
            },
            true,
        );
    }
}

/// Reads the whole request body, at most `limit` bytes (single-chunk bodies are not copied).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, LocalFailure> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(LocalFailure::BodyTooLarge),
        Err(_) => Err(LocalFailure::BadRequest),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The fallback handler: forwards the request upstream and relays the answer.
pub async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let (head, body) = request.into_parts();
    let route = routes::classify(head.uri.path());
    let method = method_label(&head.method);
    let source = head
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || SourceBucket::from_host(b""),
            |ci| SourceBucket::from_ip(ci.0.ip()),
        );

    let Some(permit) = state.capacity.try_acquire() else {
        tracing::warn!(
            "Max workers exceeded: {}/{}",
            state.capacity.in_flight() + 1,
            state.capacity.max()
        );
        state
            .metrics
            .rate_limit_rejections_total
            .with_label_values(&[state.variant(), source.label()])
            .inc();
        return fail(
            &state,
            method,
            route,
            started,
            LocalFailure::AtCapacity,
            "Service at capacity: too many requests in flight; retry shortly",
        );
    };

    let limit = state.config.max_request_body_bytes;
    let too_large = || format!("Request body exceeds the limit of {limit} bytes");
    if content_length(&head.headers).is_some_and(|n| n > limit as u64) {
        return fail(
            &state,
            method,
            route,
            started,
            LocalFailure::BodyTooLarge,
            &too_large(),
        );
    }

    // The lease (with a concurrency budget) covers the first upstream attempt; retries
    // take their own.
    let admission = state.limiter.admit(source).await;

    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(LocalFailure::BodyTooLarge) => {
            return fail(
                &state,
                method,
                route,
                started,
                LocalFailure::BodyTooLarge,
                &too_large(),
            );
        }
        Err(failure) => {
            return fail(
                &state,
                method,
                route,
                started,
                failure,
                "Could not read the request body",
            );
        }
    };
    if !body.is_empty() {
        // Byte counts fit f64 exactly up to 2^53.
        #[allow(clippy::cast_precision_loss)]
        let size = body.len() as f64;
        match state.metrics.hot().post_ok(route.label) {
            Some(series) if method == "POST" => series.request_size_bytes.observe(size),
            _ => state
                .metrics
                .request_size_bytes
                .with_label_values(&[method, route.label, state.variant()])
                .observe(size),
        }
    }

    // The body is parsed once here: model, stream, and (counting on, bodies up to 64 KiB)
    // the texts the input estimate counts.
    let tokenizers = state.tokens().filter(|_| route.format != WireFormat::Other);
    let read = tokens::hooks::read_request(route.format, &body, tokenizers.map(|t| &**t.any()));
    let (model, stream) = (read.model, read.stream);
    // The request's vocabulary (TOKENIZER_ENCODING=auto: the one of its model).
    let token_counter = tokenizers.map(|t| t.for_model(model.as_deref()));
    let parts = RequestParts {
        model_label: state.model_label(model.as_deref()),
        stream,
        method: head.method,
        uri: head.uri,
        headers: head.headers,
        route,
        source,
        started,
    };
    drop(model);

    // Hook 1 (TOKENS): the local input estimate (the `X-Token-Input` header, the usage tap's
    // input), started now and counted concurrently with the upstream call (off the async
    // workers unless tiny); awaited when the response head arrives. With LOCAL_COUNT_TOKENS,
    // count_tokens is answered here without upstream, so it waits for the count first.
    let mut pending_input = token_counter.and_then(|counter| {
        tokens::hooks::start_input_estimate(&state.metrics, counter, &body, read.input)
    });
    if route.kind == RouteKind::CountTokens
        && state.config.tokens.local_count_tokens
        && let Some(pending) = pending_input.take()
    {
        let estimate = pending.wait().await;
        if let Some(answer) = tokens::hooks::local_count_tokens(estimate) {
            let taps: Vec<Box<dyn ResponseTap>> = vec![Box::new(RequestRecord {
                method,
                route: route.label,
                status: StatusCode::OK,
                started,
                bytes: 0,
                _permit: permit,
                _lease: None,
                state: Arc::clone(&state),
            })];
            let relay = RelayBody::new(Full::new(answer), taps, state.config.upstream_timeout);
            let mut response = Response::new(Body::new(relay));
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                tokens::hooks::X_TOKEN_INPUT,
                tokens::hooks::x_token_input(estimate),
            );
            return response;
        }
        pending_input = Some(tokens::hooks::PendingInput::ready(estimate));
    }

    // Hook 2 (POLICIES): the upstream call with retries and 429 classes (forward/retry.rs).
    let (response, lease) =
        match retry::send_with_retries(&state, &parts, body, admission.lease).await {
            Ok(answer) => answer,
            Err(e) => {
                if e.is_upstream_transport() {
                    tracing::warn!("Upstream error: {e}");
                }
                let (failure, message) = match e {
                    ProxyError::UpstreamTimeout(limit) => (
                        LocalFailure::UpstreamTimeout,
                        format!(
                            "Upstream did not respond within {}",
                            humantime::format_duration(limit)
                        ),
                    ),
                    ProxyError::UpstreamUnreachable(_) => (
                        LocalFailure::UpstreamUnreachable,
                        "Upstream unreachable".to_owned(),
                    ),
                    ProxyError::UpstreamRequest(_) => (
                        LocalFailure::UpstreamUnreachable,
                        "Could not build the upstream request".to_owned(),
                    ),
                    // An unusable last answer (empty or malformed): the error says which.
                    other => (LocalFailure::UpstreamUnreachable, other.to_string()),
                };
                return fail(&state, method, route, started, failure, &message);
            }
        };
    if response.status().is_success() {
        state.limiter.record_success();
    }

    // Hook 3: relay through taps (TOKENS pushes its usage tap after the core one).
    let (mut head, incoming) = response.into_parts();
    headers::strip_response_hop_by_hop(&mut head.headers);
    let mut taps: Vec<Box<dyn ResponseTap>> = vec![Box::new(RequestRecord {
        method,
        route: route.label,
        status: head.status,
        started,
        bytes: 0,
        _permit: permit,
        _lease: lease,
        state: Arc::clone(&state),
    })];
    if let (Some(counter), Some(pending)) = (token_counter, pending_input) {
        let estimate = pending.wait().await;
        let h = &mut head.headers;
        h.insert(
            tokens::hooks::X_TOKEN_INPUT,
            tokens::hooks::x_token_input(estimate),
        );
        if head.status.is_success() {
            let model = Arc::clone(parts.model_label.name());
            let content_type = head.headers.get(header::CONTENT_TYPE);
            let tap = usage_tap::for_response(
                &state,
                counter,
                model,
                estimate,
                content_type,
                parts.stream,
            );
            taps.push(tap);
        }
    }
    if head.status.is_success() && route.format != WireFormat::Other {
        let content_type = head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if usage_tap::UsageTap::is_streaming(content_type, parts.stream) {
            taps.push(Box::new(StreamTap::new(
                Arc::clone(&state),
                parts.model_label.clone(),
                route.format,
                started,
            )));
        }
    }
    let relay = RelayBody::new(incoming, taps, state.config.upstream_timeout);
    Response::from_parts(head, Body::new(relay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::POST), "POST");
        let odd = Method::from_bytes(b"PURGE").expect("method");
        assert_eq!(method_label(&odd), "OTHER");
    }
}
