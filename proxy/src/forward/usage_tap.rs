//! The usage tap: watches a relayed response (never changes it) and, when it ends, records
//! the usage — upstream's numbers where it sent them, local estimates otherwise.
//!
//! Streams are read incrementally ([`StreamUsage`], bounded memory). Non-streaming bodies are
//! copied up to `TOKEN_COUNT_MAX_BYTES` so the JSON `usage` block can be read at the end;
//! a larger body is not kept and its output is estimated as bytes ÷ 4. The reading and the
//! recording are `tokens`' ([`crate::tokens::usage`], [`crate::tokens::record`]); the tap
//! connects them to the relay and the proxy's state.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderValue;

use crate::relay::{RelayEnd, ResponseTap};
use crate::state::AppState;
use crate::tokens::pricing::Direction;
use crate::tokens::record::{observe_count, record_usage};
use crate::tokens::{
    ApiUsage, BLOCKING_THRESHOLD_BYTES, InputEstimate, InputMethod, StreamUsage, TokenCounter,
    Usage, UsageReport, UsageSource,
};

enum Mode {
    Stream(StreamUsage),
    Body {
        buf: Vec<u8>,
        total: u64,
        overflow: bool,
    },
}

/// See the module documentation.
pub struct UsageTap {
    state: Arc<AppState>,
    counter: Arc<TokenCounter>,
    model: Arc<str>,
    input_estimate: Option<u64>,
    mode: Mode,
}

impl UsageTap {
    /// A tap for one response. `streaming`: read the body as SSE (response
    /// `Content-Type: text/event-stream`, or a streaming request without a JSON answer).
    pub fn new(
        state: Arc<AppState>,
        counter: Arc<TokenCounter>,
        model: Arc<str>,
        input_estimate: Option<u64>,
        streaming: bool,
    ) -> Self {
        let mode = if streaming {
            Mode::Stream(StreamUsage::new())
        } else {
            Mode::Body {
                buf: Vec::new(),
                total: 0,
                overflow: false,
            }
        };
        Self {
            state,
            counter,
            model,
            input_estimate,
            mode,
        }
    }

    /// Decides the mode from the response `Content-Type` and the request's `stream` flag.
    pub fn is_streaming(content_type: Option<&str>, stream_requested: bool) -> bool {
        match content_type.map(str::to_ascii_lowercase) {
            Some(ct) if ct.contains("text/event-stream") => true,
            Some(ct) if ct.contains("json") => false,
            _ => stream_requested,
        }
    }

    fn finish(self) {
        let Self {
            state,
            counter,
            model,
            input_estimate,
            mode,
        } = self;
        let report = match mode {
            Mode::Stream(stream) => stream.finish(counter.engine(), input_estimate),
            Mode::Body {
                total,
                overflow: true,
                ..
            } => {
                let output = total / 4;
                tracing::info!(
                    "Token counting skipped for a {total}-byte response body (TOKEN_COUNT_MAX_BYTES={}); estimating output={output} as bytes/4",
                    counter.max_bytes()
                );
                UsageReport {
                    usage: Usage {
                        input: input_estimate.unwrap_or(0),
                        output,
                        ..Usage::default()
                    },
                    source: UsageSource::Estimated,
                    api: ApiUsage::default(),
                    input_estimate,
                    output_estimate: output,
                }
            }
            Mode::Body { buf, .. } => {
                let started = Instant::now();
                let report = counter.body_usage(&buf, input_estimate);
                observe_count(
                    &state.metrics,
                    state.variant(),
                    &state.config.tokenizer_model,
                    Direction::Output,
                    report.output_estimate,
                    started.elapsed(),
                );
                report
            }
        };
        record_usage(&state.metrics, state.variant(), &model, &report);
    }
}

/// The usage tap for a response (see [`UsageTap`]): streaming or not from the response
/// `Content-Type` and the request; the input from the local estimate unless the body was
/// not a JSON object.
pub fn for_response(
    state: &Arc<AppState>,
    counter: &Arc<TokenCounter>,
    model: Arc<str>,
    estimate: InputEstimate,
    content_type: Option<&HeaderValue>,
    stream_requested: bool,
) -> Box<dyn ResponseTap> {
    let streaming =
        UsageTap::is_streaming(content_type.and_then(|v| v.to_str().ok()), stream_requested);
    let input = (estimate.method != InputMethod::Unparseable).then_some(estimate.tokens);
    Box::new(UsageTap::new(
        Arc::clone(state),
        Arc::clone(counter),
        model,
        input,
        streaming,
    ))
}

impl ResponseTap for UsageTap {
    fn on_chunk(&mut self, chunk: &Bytes) {
        match &mut self.mode {
            Mode::Stream(stream) => stream.feed(chunk, self.counter.engine()),
            Mode::Body {
                buf,
                total,
                overflow,
            } => {
                *total += chunk.len() as u64;
                if *overflow {
                    return;
                }
                if buf.len() + chunk.len() > self.counter.max_bytes() {
                    *overflow = true;
                    *buf = Vec::new();
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
        }
    }

    fn on_end(self: Box<Self>, _end: RelayEnd) {
        let large =
            matches!(&self.mode, Mode::Body { buf, .. } if buf.len() > BLOCKING_THRESHOLD_BYTES);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if large => {
                handle.spawn_blocking(move || self.finish());
            }
            _ => self.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_content_type_then_request() {
        assert!(UsageTap::is_streaming(
            Some("text/event-stream;charset=UTF-8"),
            false
        ));
        assert!(!UsageTap::is_streaming(Some("application/json"), true));
        assert!(UsageTap::is_streaming(None, true));
        assert!(!UsageTap::is_streaming(Some("text/plain"), false));
    }
}
