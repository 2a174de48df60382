//! The front server: the fake's single listening port, a small hyper HTTP/1.1 server.
//!
//! For every request it checks the credential, draws the faults and decides the outcome
//! ([`decide`]); then it either answers itself — what wiremock cannot express: SSE streams
//! with a delay between chunks, streams or bodies cut short, TCP resets — or forwards the
//! request, with the decision in the `x-fake-decision` header, to the wiremock
//! [`MockServer`](wiremock::MockServer) on an internal loopback port and relays its answer.
//! It also serves the control routes under `/__fake/`.

use std::convert::Infallible;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::faults::{Auth, Decision, Faults, Outcome, RequestFacts, decide};
use super::limits::Verdict;
use super::mock::DECISION_HEADER;
use super::record::{MAX_RECORDED_BODY, RecordedRequest};
use super::state::Shared;
use super::wire::quota::QuotaShape;
use super::wire::{self, Route, anthropic, openai};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response body type of the front server.
pub type Body = BoxBody<Bytes, BoxError>;

/// Largest request body the fake reads.
pub const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;
/// Content type of the fake's streams (as recorded from Z.AI).
pub const SSE_CONTENT_TYPE: &str = "text/event-stream;charset=UTF-8";

/// The front server's state.
pub struct Front {
    shared: Arc<Shared>,
    mock_origin: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => full(status, "application/json", body),
        Err(error) => full(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            error.to_string(),
        ),
    }
}

fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json(status, &serde_json::json!({"error": message.to_string()}))
}

/// The credential of a request: `x-api-key`, else `Authorization` (with or without `Bearer`).
pub fn credential(headers: &HeaderMap) -> Option<String> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok())
        && !key.trim().is_empty()
    {
        return Some(key.trim().to_string());
    }
    let authorization = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let token = match authorization.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => authorization[7..].trim(),
        _ => authorization,
    };
    (!token.is_empty()).then(|| token.to_string())
}

/// Checks the credential against `api_key`.
pub fn check_auth(headers: &HeaderMap, api_key: &str) -> Auth {
    match credential(headers) {
        None => Auth::Missing,
        Some(key) if key == api_key => Auth::Valid,
        Some(_) => Auth::Invalid,
    }
}

/// Cuts a stream right after its first content-bearing event (the first Anthropic
/// `content_block_delta`; the first OpenAI chunk, which carries text): everything up to and
/// including that event, then the first half (on a character boundary) of the next one. No
/// terminal event (`message_stop`, `finish_reason`, `[DONE]`) is ever sent. A stream
/// without content keeps its first event only.
pub fn cut_events(mut events: Vec<Bytes>) -> Vec<Bytes> {
    let first_content = events
        .iter()
        .position(|e| {
            contains(e, b"content_block_delta")
                || (e.starts_with(b"data: {") && contains(e, b"\"delta\""))
        })
        .unwrap_or(0);
    let keep = (first_content + 1).min(events.len().saturating_sub(1));
    let Some(next) = events.get(keep).cloned() else {
        return events;
    };
    events.truncate(keep);
    let mut half = next.len() / 2;
    if let Ok(text) = std::str::from_utf8(&next) {
        while half > 0 && !text.is_char_boundary(half) {
            half -= 1;
        }
    }
    if half > 0 {
        events.push(next.slice(..half));
    }
    events
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn skip_forward_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "te"
            | "upgrade"
            | "proxy-connection"
    ) || name.as_str() == DECISION_HEADER
}

impl Front {
    /// A front server forwarding to the mock at `mock_origin` (`http://127.0.0.1:port`).
    pub fn new(shared: Arc<Shared>, mock_origin: String) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Front {
            shared,
            mock_origin,
            client,
        }
    }

    async fn handle(&self, request: Request<Incoming>, reset: Arc<Notify>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_string();
        let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body: {error}"),
                );
            }
        };
        if path.starts_with("/__fake/") {
            return self.control(&parts, &path, &body);
        }
        self.record(&parts, &body);
        let route = Route::of(parts.method.as_str(), &path);
        let auth = if route == Route::Other {
            Auth::Valid
        } else {
            check_auth(&parts.headers, &self.shared.api_key)
        };
        let parsed = if route.needs_messages() {
            wire::parse_request(&body)
        } else {
            None
        };
        let valid_body = !route.needs_messages() || parsed.is_some();
        let streaming = matches!(route, Route::AnthropicMessages | Route::OpenAiChat)
            && parsed.as_ref().is_some_and(wire::wants_stream);
        let decision = decide(
            &self.shared.faults(),
            RequestFacts {
                path: &path,
                auth,
                valid_body,
                streaming,
            },
            self.shared.draws(),
        );
        // The key's limits come after the credential and before any fault.
        let ticket = if auth == Auth::Valid && limited(route) {
            match self.shared.enter() {
                Verdict::Enter => Some(Ticket(Arc::clone(&self.shared))),
                Verdict::Reject(code) => {
                    self.shared.stats().record(
                        route.label(),
                        &format!("rate_429_{code}"),
                        streaming,
                    );
                    return rejection(route, code);
                }
            }
        } else {
            None
        };
        self.shared
            .stats()
            .record(route.label(), &decision.outcome.label(), streaming);
        let response = self
            .respond(route, &parts, body, parsed, &decision, streaming, reset)
            .await;
        match ticket {
            Some(ticket) => hold_until_sent(response, ticket),
            None => response,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn respond(
        &self,
        route: Route,
        parts: &Parts,
        body: Bytes,
        parsed: Option<Value>,
        decision: &Decision,
        streaming: bool,
        reset: Arc<Notify>,
    ) -> Response<Body> {
        let decision = decision.clone();
        match (&decision.outcome, &parsed) {
            (Outcome::Reset, _) => {
                // The connection task sets SO_LINGER 0 and drops the socket: the client sees
                // a TCP RST before any response byte.
                reset.notify_one();
                std::future::pending::<Response<Body>>().await
            }
            (Outcome::Ok | Outcome::Truncate, Some(request)) if streaming => {
                tokio::time::sleep(Duration::from_millis(decision.delay_ms)).await;
                self.stream(route, &body, request, &decision)
            }
            (Outcome::Truncate, _) => {
                let response = self.forward(parts, body, &decision).await;
                cut_body(response).await
            }
            _ => self.forward(parts, body, &decision).await,
        }
    }

    fn record(&self, parts: &Parts, body: &Bytes) {
        let mut recorder = self.shared.recorder();
        if !recorder.enabled() {
            return;
        }
        let cut = body.len().min(MAX_RECORDED_BODY);
        recorder.push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&body[..cut]).into_owned(),
        });
    }

    fn stream(
        &self,
        route: Route,
        body: &Bytes,
        request: &Value,
        decision: &Decision,
    ) -> Response<Body> {
        let Some(api) = route.api() else {
            return json_error(StatusCode::NOT_FOUND, "not a model route");
        };
        let mut answer = wire::answer(
            api,
            self.shared.seed,
            body,
            request,
            self.shared.next_id(),
            chrono::Utc::now().timestamp(),
        );
        let events = if route == Route::AnthropicMessages {
            answer.id = format!("msg_{}", answer.id);
            anthropic::sse_events(&answer, !decision.omit_usage)
        } else {
            openai::sse_events(&answer, !decision.omit_usage)
        };
        let truncate = decision.outcome == Outcome::Truncate;
        let frames = if truncate { cut_events(events) } else { events };
        let (sender, mut receiver) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let shared = Arc::clone(&self.shared);
        let chunk_delay = Duration::from_millis(decision.chunk_delay_ms);
        let usage = answer.usage;
        tokio::spawn(async move {
            for (index, frame) in frames.into_iter().enumerate() {
                if index > 0 && !chunk_delay.is_zero() {
                    tokio::time::sleep(chunk_delay).await;
                }
                if sender.send(Ok(Frame::data(frame))).await.is_err() {
                    return; // client gone
                }
            }
            if !truncate {
                shared.bill(usage);
            }
        });
        let body = StreamBody::new(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)));
        let mut response = Response::new(BodyExt::boxed(body));
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static(SSE_CONTENT_TYPE),
        );
        headers.insert(CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
        response
    }

    async fn forward(&self, parts: &Parts, body: Bytes, decision: &Decision) -> Response<Body> {
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut builder = Request::builder()
            .method(parts.method.clone())
            .uri(format!("{}{path_and_query}", self.mock_origin));
        for (name, value) in &parts.headers {
            if !skip_forward_header(name) {
                builder = builder.header(name, value);
            }
        }
        let decision = match serde_json::to_string(decision) {
            Ok(decision) => decision,
            Err(error) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, error),
        };
        let request = match builder
            .header(DECISION_HEADER, decision)
            .body(Full::new(body))
        {
            Ok(request) => request,
            Err(error) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!("fake: cannot forward: {error}"),
                );
            }
        };
        match self.client.request(request).await {
            Ok(response) => {
                response.map(|body| body.map_err(|error| Box::new(error) as BoxError).boxed())
            }
            Err(error) => json_error(
                StatusCode::BAD_GATEWAY,
                format!("fake: mock unreachable: {error}"),
            ),
        }
    }

    fn control(&self, parts: &Parts, path: &str, body: &Bytes) -> Response<Body> {
        match (&parts.method, path) {
            (&Method::GET, "/__fake/health") => {
                json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
            }
            (&Method::GET, "/__fake/stats") => json(StatusCode::OK, &self.shared.stats_snapshot()),
            (&Method::DELETE, "/__fake/stats") => json(StatusCode::OK, &self.shared.reset_stats()),
            (&Method::GET, "/__fake/faults") => json(StatusCode::OK, &self.shared.faults()),
            (&Method::POST | &Method::PUT, "/__fake/faults") => {
                let faults: Faults = if body.iter().all(u8::is_ascii_whitespace) {
                    Faults::default()
                } else {
                    match serde_json::from_slice(body) {
                        Ok(faults) => faults,
                        Err(error) => {
                            return json_error(
                                StatusCode::BAD_REQUEST,
                                format!("invalid faults: {error}"),
                            );
                        }
                    }
                };
                if let Err(error) = faults.validate() {
                    return json_error(StatusCode::BAD_REQUEST, error);
                }
                tracing::info!(faults = %serde_json::to_string(&faults).unwrap_or_default(), "faults changed");
                self.shared.set_faults(faults.clone());
                json(StatusCode::OK, &faults)
            }
            (&Method::GET, "/__fake/requests") => {
                json(StatusCode::OK, &self.shared.recorder().list())
            }
            (&Method::DELETE, "/__fake/requests") => {
                self.shared.recorder().clear();
                json(StatusCode::OK, &Vec::<RecordedRequest>::new())
            }
            (&Method::GET, "/__fake/quota") => json(
                StatusCode::OK,
                &serde_json::json!({"shape": self.shared.quota_shape()}),
            ),
            (&Method::POST | &Method::PUT, "/__fake/quota") => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct QuotaSetting {
                    shape: QuotaShape,
                }
                match serde_json::from_slice::<QuotaSetting>(body) {
                    Ok(setting) => {
                        self.shared.set_quota_shape(setting.shape);
                        json(StatusCode::OK, &serde_json::json!({"shape": setting.shape}))
                    }
                    Err(error) => json_error(
                        StatusCode::BAD_REQUEST,
                        format!("invalid quota setting: {error}"),
                    ),
                }
            }
            _ => json_error(
                StatusCode::NOT_FOUND,
                format!("no control route {} {path}", parts.method),
            ),
        }
    }
}

/// Routes the key's limits apply to: the model calls.
fn limited(route: Route) -> bool {
    matches!(route, Route::AnthropicMessages | Route::OpenAiChat)
}

/// A 429 of the key's limits, in the route's wire format.
fn rejection(route: Route, code: u32) -> Response<Body> {
    let rendered =
        wire::errors::rate_limited(route.api(), code, None, None, None, chrono::Utc::now());
    let status = StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    full(status, rendered.content_type, rendered.body)
}

/// One admitted request in flight; leaves the key's count when dropped.
struct Ticket(Arc<Shared>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// A response body that keeps its request counted in flight until its last frame was
/// produced (or the body was dropped: connection closed).
struct Held {
    inner: Body,
    ticket: Option<Ticket>,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_))))
            || self.inner.is_end_stream()
        {
            self.ticket = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

fn hold_until_sent(response: Response<Body>, ticket: Ticket) -> Response<Body> {
    response.map(|inner| {
        Held {
            inner,
            ticket: Some(ticket),
        }
        .boxed()
    })
}

/// Keeps the first half of a response body (status and headers kept, length fixed).
async fn cut_body(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return json_error(StatusCode::BAD_GATEWAY, format!("fake: mock body: {error}"));
        }
    };
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let half = bytes.slice(..bytes.len() / 2);
    Response::from_parts(
        parts,
        Full::new(half).map_err(|never| match never {}).boxed(),
    )
}

/// Accepts connections until `cancel` fires.
pub async fn serve(listener: TcpListener, front: Arc<Front>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // A second descriptor of the socket, to turn the close into a RST on demand.
        let socket = match stream.as_fd().try_clone_to_owned() {
            Ok(socket) => socket,
            Err(error) => {
                tracing::warn!(%error, "cannot duplicate socket");
                continue;
            }
        };
        let reset = Arc::new(Notify::new());
        let front = Arc::clone(&front);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service_reset = Arc::clone(&reset);
            let service = service_fn(move |request| {
                let front = Arc::clone(&front);
                let reset = Arc::clone(&service_reset);
                async move { Ok::<_, Infallible>(front.handle(request, reset).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = &mut connection => {}
                () = reset.notified() => {
                    if let Err(error) = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO)) {
                        tracing::warn!(%error, "cannot set SO_LINGER for reset");
                    }
                }
                () = cancel.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_accepts_both_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(check_auth(&headers, "k"), Auth::Missing);
        headers.insert("authorization", "Bearer k".parse().unwrap());
        assert_eq!(check_auth(&headers, "k"), Auth::Valid);
        headers.insert("authorization", "k".parse().unwrap());
        assert_eq!(check_auth(&headers, "k"), Auth::Valid);
        headers.insert("x-api-key", "other".parse().unwrap());
        assert_eq!(check_auth(&headers, "k"), Auth::Invalid);
    }

    #[test]
    fn cut_events_stops_mid_event_after_the_first_content() {
        // Events 0 and 1 carry no content, event 2 is the first content delta: the cut keeps
        // 0..=2 and half of event 3, with no terminal event.
        let mut events: Vec<Bytes> = (0..6)
            .map(|i| Bytes::from(format!("data: {i}{i}{i}{i}\n\n")))
            .collect();
        events[2] = Bytes::from_static(b"data: {\"delta\":{\"content\":\"hi\"}}\n\n");
        let cut = cut_events(events.clone());
        assert_eq!(cut.len(), 4);
        assert_eq!(cut[..3], events[..3]);
        assert!(events[3].starts_with(&cut[3]) && cut[3].len() < events[3].len());
        // Without a content event the cut comes after the first event.
        let plain: Vec<Bytes> = (0..6)
            .map(|i| Bytes::from(format!("data: {i}{i}{i}{i}\n\n")))
            .collect();
        let cut = cut_events(plain.clone());
        assert_eq!(cut.len(), 2);
        assert_eq!(cut[0], plain[0]);
        assert!(plain[1].starts_with(&cut[1]) && cut[1].len() < plain[1].len());
    }
}
