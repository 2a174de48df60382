//! The stream series, resolved once (like [`crate::metrics::HotSeries`]).

use std::sync::OnceLock;

use prometheus::{Counter, Histogram};

use super::StreamOutcome;
use crate::metrics::{Metrics, STREAM_APIS};
use crate::routes::WireFormat;

/// The stream histograms of one (model, api) pair.
#[derive(Debug, Clone)]
pub struct StreamSeries {
    /// `zai_proxy_time_to_first_token_seconds{model,api,variant}`.
    pub time_to_first_token: Histogram,
    /// `zai_proxy_output_tokens_per_second{model,api,variant}`.
    pub output_tokens_per_second: Histogram,
}

/// `zai_proxy_streams_total` per outcome, resolved at start-up, and the per-model
/// histograms, resolved on each (model slot, api) pair's first stream: the request path does
/// no label hashing for them. Model slots index the bounded `model` label values
/// ([`crate::state::ModelLabel::slot`]).
#[derive(Debug)]
pub struct StreamHot {
    outcomes: [Counter; 4],
    per_model: Vec<[OnceLock<StreamSeries>; 2]>,
    variant: String,
}

impl StreamHot {
    /// Resolves the outcome counters; `model_slots` is the number of model label values.
    pub fn new(m: &Metrics, variant: &str, model_slots: usize) -> Self {
        let outcome = |o: StreamOutcome| m.streams_total.with_label_values(&[variant, o.as_str()]);
        Self {
            outcomes: StreamOutcome::ALL.map(outcome),
            per_model: (0..model_slots)
                .map(|_| [OnceLock::new(), OnceLock::new()])
                .collect(),
            variant: variant.to_owned(),
        }
    }

    /// `zai_proxy_streams_total{variant,outcome}`.
    pub fn outcome(&self, outcome: StreamOutcome) -> &Counter {
        &self.outcomes[outcome.index()]
    }

    /// The histograms of `model` (the label value of slot `slot`) and `format`; `None` for
    /// `WireFormat::Other` (no streams) or a slot out of range.
    pub fn series(
        &self,
        m: &Metrics,
        slot: usize,
        model: &str,
        format: WireFormat,
    ) -> Option<&StreamSeries> {
        let api = match format {
            WireFormat::Anthropic => 0,
            WireFormat::OpenAi => 1,
            WireFormat::Other => return None,
        };
        let cell = self.per_model.get(slot)?.get(api)?;
        Some(cell.get_or_init(|| {
            let labels = [model, STREAM_APIS[api], self.variant.as_str()];
            StreamSeries {
                time_to_first_token: m.time_to_first_token_seconds.with_label_values(&labels),
                output_tokens_per_second: m.output_tokens_per_second.with_label_values(&labels),
            }
        }))
    }
}
