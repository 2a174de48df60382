//! The stream tap: feeds each relayed chunk to a [`StreamWatch`] and writes the stream
//! metrics. Time to first token is observed when the first content-bearing event passes
//! (once per stream), measured from the request's arrival at the proxy, so it is what the
//! client waits: rate-limit queueing, retries and upstream's own first token. At the end the
//! outcome is counted and, for a complete stream whose upstream reported its output tokens,
//! the output rate (tokens ÷ seconds from the first token to the end) is observed.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::relay::{RelayEnd, ResponseTap};
use crate::routes::WireFormat;
use crate::state::{AppState, ModelLabel};
use crate::streams::{StreamOutcome, StreamWatch};

/// See the module documentation.
pub struct StreamTap {
    state: Arc<AppState>,
    model: ModelLabel,
    format: WireFormat,
    started: Instant,
    first_token: Option<Instant>,
    watch: StreamWatch,
}

impl StreamTap {
    /// A tap for one streamed answer to a request that arrived at `started`.
    pub fn new(
        state: Arc<AppState>,
        model: ModelLabel,
        format: WireFormat,
        started: Instant,
    ) -> Self {
        Self {
            state,
            model,
            format,
            started,
            first_token: None,
            watch: StreamWatch::new(),
        }
    }

    fn first_token_now(&mut self) {
        let now = Instant::now();
        self.first_token = Some(now);
        let s = &self.state;
        if let Some(series) = s.streams.series(
            &s.metrics,
            self.model.slot(),
            self.model.as_str(),
            self.format,
        ) {
            series
                .time_to_first_token
                .observe(now.duration_since(self.started).as_secs_f64());
        }
    }
}

/// Output tokens per second from the first token to the end; `None` without tokens or
/// without a measurable duration.
pub fn output_rate(tokens: Option<u64>, first_token: Option<Instant>, end: Instant) -> Option<f64> {
    let tokens = tokens.filter(|t| *t > 0)?;
    let seconds = end.checked_duration_since(first_token?)?.as_secs_f64();
    // Token counts fit f64 exactly up to 2^53.
    #[allow(clippy::cast_precision_loss)]
    (seconds > 0.0).then(|| tokens as f64 / seconds)
}

impl ResponseTap for StreamTap {
    fn on_chunk(&mut self, chunk: &Bytes) {
        if self.watch.feed(chunk) {
            self.first_token_now();
        }
    }

    fn on_end(mut self: Box<Self>, end: RelayEnd) {
        if self.watch.finish() {
            self.first_token_now();
        }
        let outcome = StreamOutcome::decide(end, self.watch.terminal, self.watch.error_event);
        let s = &self.state;
        s.streams.outcome(outcome).inc();
        if outcome == StreamOutcome::Complete
            && let Some(rate) =
                output_rate(self.watch.output_tokens, self.first_token, Instant::now())
            && let Some(series) = s.streams.series(
                &s.metrics,
                self.model.slot(),
                self.model.as_str(),
                self.format,
            )
        {
            series.output_tokens_per_second.observe(rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn output_rate_needs_tokens_and_time() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(output_rate(Some(50), Some(t0), t1), Some(100.0));
        assert_eq!(output_rate(Some(0), Some(t0), t1), None);
        assert_eq!(output_rate(None, Some(t0), t1), None);
        assert_eq!(output_rate(Some(5), None, t1), None);
        assert_eq!(output_rate(Some(5), Some(t0), t0), None);
        assert_eq!(output_rate(Some(5), Some(t1), t0), None);
    }
}
