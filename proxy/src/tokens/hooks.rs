//! The token-counting steps of the forward handler, kept here so the handler stays a list
//! of hook calls:
//!
//! 1. [`estimate_input`] before the upstream call (large bodies on the blocking pool); the
//!    result is the `X-Token-Input` response header ([`x_token_input`]);
//! 2. [`local_count_tokens`]: `count_tokens` answered without calling upstream;
//! 3. [`usage_tap`]: the relay tap that records usage when the response ends.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderValue;

use super::pricing::Direction;
use super::record::observe_count;
use super::tap::UsageTap;
use super::{InputEstimate, InputMethod, TokenCounter};
use crate::forward::relay::ResponseTap;
use crate::state::AppState;

/// Name of the response header carrying the local input estimate.
pub const X_TOKEN_INPUT: &str = "x-token-input";

/// The local input estimate of `body`, counted on the blocking pool when it is large so the
/// async runtime never stalls. Observes the counting-time metrics.
pub async fn estimate_input(
    state: &AppState,
    counter: &Arc<TokenCounter>,
    body: &Bytes,
) -> InputEstimate {
    let started = Instant::now();
    let estimate = if counter.should_block(body.len()) && body.len() <= counter.max_bytes() {
        let len = body.len();
        let counter = Arc::clone(counter);
        let body = body.clone();
        match tokio::task::spawn_blocking(move || counter.input_tokens(&body)).await {
            Ok(estimate) => estimate,
            Err(e) => {
                tracing::warn!("Token counting task failed: {e}; estimating bytes/4");
                InputEstimate {
                    tokens: (len / 4) as u64,
                    method: InputMethod::OverLimit,
                }
            }
        }
    } else {
        counter.input_tokens(body)
    };
    if estimate.method == InputMethod::Counted {
        observe_count(
            &state.metrics,
            state.variant(),
            &state.config.tokenizer_model,
            Direction::Input,
            estimate.tokens,
            started.elapsed(),
        );
    }
    estimate
}

/// The `X-Token-Input` header value.
pub fn x_token_input(estimate: InputEstimate) -> HeaderValue {
    HeaderValue::from(estimate.tokens)
}

/// The body of a local `count_tokens` answer, or `None` when the request should go upstream
/// (the body is not a JSON object: upstream gives the client its usual error).
pub fn local_count_tokens(estimate: InputEstimate) -> Option<Bytes> {
    match estimate.method {
        InputMethod::Counted | InputMethod::OverLimit => {
            Some(Bytes::from(TokenCounter::count_tokens_body(estimate)))
        }
        InputMethod::Unparseable => None,
    }
}

/// The usage tap for a response (see [`UsageTap`]).
pub fn usage_tap(
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

impl From<crate::config::TokenizerEncoding> for super::Encoding {
    fn from(e: crate::config::TokenizerEncoding) -> Self {
        use crate::config::TokenizerEncoding as T;
        match e {
            T::Cl100kBase => Self::Cl100kBase,
            T::O200kBase => Self::O200kBase,
            T::Glm4 => Self::Glm4,
        }
    }
}

/// Start-up: loads the tokenizer on the blocking pool (before readiness is marked) and logs
/// `Token counting enabled (<encoding>, engine <name>, model: <TOKENIZER_MODEL>)`, or the
/// "disabled" line. A vocabulary that fails its checks leaves counting off (logged).
pub async fn load_counter(state: &AppState) {
    let settings = &state.config.tokens;
    if !settings.enabled {
        tracing::info!("Token counting disabled (TOKEN_COUNTING_ENABLED=false)");
        return;
    }
    let encoding = super::Encoding::from(settings.encoding);
    let max_bytes = settings.max_bytes;
    let started = Instant::now();
    match tokio::task::spawn_blocking(move || TokenCounter::load(encoding, max_bytes)).await {
        Ok(Ok(counter)) => {
            tracing::info!(
                "Token counting enabled ({}, engine {}, model: {})",
                counter.encoding(),
                counter.engine().name(),
                state.config.tokenizer_model
            );
            tracing::debug!("tokenizer loaded in {:?}", started.elapsed());
            let _ = state.tokens.set(Arc::new(counter));
        }
        Ok(Err(problem)) => {
            tracing::error!("Token counting unavailable: {problem}; continuing without it");
        }
        Err(e) => {
            tracing::error!("Token counting unavailable: loading failed: {e}");
        }
    }
}
