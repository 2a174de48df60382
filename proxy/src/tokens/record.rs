//! Recording token usage: `zai_proxy_tokens_total`, `zai_proxy_estimated_cost_usd_total`,
//! `zai_proxy_token_estimate_ratio`, the counting-speed histograms, and the "Token usage"
//! log line.

use std::time::Duration;

use chrono::Utc;

use super::pricing::{Direction, PricingTier};
use super::usage::UsageReport;
use crate::metrics::Metrics;

/// Adds a finished response's usage to the token and cost counters (zero counts skipped),
/// observes the estimate ratios, and logs the "Token usage" line.
pub fn record_usage(metrics: &Metrics, variant: &str, model: &str, report: &UsageReport) {
    let tier = PricingTier::at(Utc::now());
    let u = &report.usage;
    for (direction, count) in [
        (Direction::Input, u.input),
        (Direction::Output, u.output),
        (Direction::CacheRead, u.cache_read),
        (Direction::CacheWrite, u.cache_write),
    ] {
        if count == 0 {
            continue;
        }
        let labels = [direction.label(), model, variant, tier.label()];
        // Token counts fit f64 exactly up to 2^53.
        #[allow(clippy::cast_precision_loss)]
        metrics
            .tokens_total
            .with_label_values(&labels)
            .inc_by(count as f64);
        metrics
            .estimated_cost_usd_total
            .with_label_values(&labels)
            .inc_by(direction.cost_usd(tier, count));
    }
    if let Some(ratio) = report.input_ratio() {
        metrics
            .token_estimate_ratio
            .with_label_values(&["input", variant])
            .observe(ratio);
    }
    if let Some(ratio) = report.output_ratio() {
        metrics
            .token_estimate_ratio
            .with_label_values(&["output", variant])
            .observe(ratio);
    }
    tracing::info!("{}", report.log_line());
}

/// Observes one local count: `zai_proxy_token_count_duration_seconds{variant}` and, when
/// tokens and time are both non-zero, `zai_proxy_token_rate_seconds` (seconds per token) and
/// `zai_proxy_token_rate` (tokens per second) with `model` = `TOKENIZER_MODEL`.
pub fn observe_count(
    metrics: &Metrics,
    variant: &str,
    tokenizer_model: &str,
    direction: Direction,
    tokens: u64,
    elapsed: Duration,
) {
    let seconds = elapsed.as_secs_f64();
    metrics
        .token_count_duration_seconds
        .with_label_values(&[variant])
        .observe(seconds);
    if tokens > 0 && seconds > 0.0 {
        let labels = [direction.label(), tokenizer_model, variant];
        #[allow(clippy::cast_precision_loss)]
        let tokens = tokens as f64;
        metrics
            .token_rate_seconds
            .with_label_values(&labels)
            .observe(seconds / tokens);
        metrics
            .token_rate
            .with_label_values(&labels)
            .observe(tokens / seconds);
    }
}
