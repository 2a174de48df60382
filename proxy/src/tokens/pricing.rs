//! Pricing tier and estimated cost (reference §4.3): Z.AI Coding Plan peak hours and
//! GLM-4.7 public rates.
//!
//! * Peak: the hour in a fixed UTC−5 zone ("ET", no daylight saving, as the original) is in
//!   [02:00, 06:00) — i.e. UTC [07:00, 11:00). Everything else is off-peak.
//! * Rates (USD per 1K tokens, off-peak): input 0.00060, output 0.00220, cache_read 0.00011,
//!   cache_write 0.0; peak doubles each.

use chrono::{DateTime, Timelike, Utc};

/// `pricing_tier` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PricingTier {
    /// Z.AI peak hours (2× rates).
    Peak,
    /// Every other hour.
    OffPeak,
}

impl PricingTier {
    /// The tier at `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        // Fixed UTC-5, as the original (no DST).
        let et_hour = (now.hour() + 24 - 5) % 24;
        if (2..6).contains(&et_hour) {
            PricingTier::Peak
        } else {
            PricingTier::OffPeak
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            PricingTier::Peak => "peak",
            PricingTier::OffPeak => "off_peak",
        }
    }
}

/// Token direction: the `direction` label of the token metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `input`.
    Input,
    /// `output`.
    Output,
    /// `cache_read`.
    CacheRead,
    /// `cache_write`.
    CacheWrite,
}

impl Direction {
    /// All directions, in the order of the log line.
    pub const ALL: [Direction; 4] = [
        Direction::Input,
        Direction::Output,
        Direction::CacheRead,
        Direction::CacheWrite,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
            Direction::CacheRead => "cache_read",
            Direction::CacheWrite => "cache_write",
        }
    }

    /// USD per 1K tokens at `tier`.
    pub fn rate_per_1k(self, tier: PricingTier) -> f64 {
        let off_peak = match self {
            Direction::Input => 0.00060,
            Direction::Output => 0.00220,
            Direction::CacheRead => 0.00011,
            Direction::CacheWrite => 0.0,
        };
        match tier {
            PricingTier::Peak => off_peak * 2.0,
            PricingTier::OffPeak => off_peak,
        }
    }

    /// Estimated cost in USD of `tokens` tokens.
    pub fn cost_usd(self, tier: PricingTier, tokens: u64) -> f64 {
        tokens as f64 / 1000.0 * self.rate_per_1k(tier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> PricingTier {
        PricingTier::at(
            Utc.with_ymd_and_hms(2026, 1, 15, h, m, 0)
                .single()
                .expect("valid"),
        )
    }

    #[test]
    fn peak_is_02_to_06_in_utc_minus_5() {
        assert_eq!(at(6, 59), PricingTier::OffPeak);
        assert_eq!(at(7, 0), PricingTier::Peak);
        assert_eq!(at(10, 59), PricingTier::Peak);
        assert_eq!(at(11, 0), PricingTier::OffPeak);
        assert_eq!(at(0, 0), PricingTier::OffPeak);
    }

    #[test]
    fn costs() {
        assert!((Direction::Input.cost_usd(PricingTier::OffPeak, 1000) - 0.0006).abs() < 1e-12);
        assert!((Direction::Output.cost_usd(PricingTier::Peak, 1000) - 0.0044).abs() < 1e-12);
        assert!(
            (Direction::CacheRead.cost_usd(PricingTier::OffPeak, 2000) - 0.00022).abs() < 1e-12
        );
        assert_eq!(Direction::CacheWrite.cost_usd(PricingTier::Peak, 5000), 0.0);
    }
}
