//! Adaptive rate limiting (issue 4).
//!
//! PLACEHOLDER written by CORE with the final API; POLICIES replaces the inside (controller,
//! governor bucket, fair per-source queue, ceiling persistence). Until then admission is
//! immediate and the controller inputs are ignored.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::RateLimitSettings;
use crate::metrics::{Metrics, SOURCE_BUCKETS, source_label};

/// One of 64 source buckets, derived from the direct TCP peer (FNV-1a 32-bit of the IP text,
/// mod 64). `X-Forwarded-For` is deliberately ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceBucket(u8);

impl SourceBucket {
    /// The bucket of a peer address (its textual form, as Go's `RemoteAddr` host).
    pub fn from_ip(ip: IpAddr) -> Self {
        use std::io::Write as _;
        let mut buf = [0u8; 64];
        let len = {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // 64 bytes hold any IPv4/IPv6 text form; on the impossible overflow we hash the prefix.
            let _ = write!(cursor, "{ip}");
            usize::try_from(cursor.position()).unwrap_or(0)
        };
        Self::from_host(&buf[..len])
    }

    /// The bucket of a host string; empty hashes as `unknown`, as in the original.
    pub fn from_host(host: &[u8]) -> Self {
        let host: &[u8] = if host.is_empty() { b"unknown" } else { host };
        let mut hash: u32 = 0x811c_9dc5;
        for byte in host {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        // SOURCE_BUCKETS is 64, so the remainder fits a u8.
        Self((hash % SOURCE_BUCKETS as u32) as u8)
    }

    /// Bucket index, 0..64.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The `client` label (`source-00` … `source-63`).
    pub fn label(self) -> &'static str {
        source_label(self.index())
    }
}

/// What an admission cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Time spent queued for a token.
    pub waited: Duration,
}

/// The `/health` `rate_limit` block (field order as the original).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitSnapshot {
    /// Live limiter rate, req/s.
    pub current_rate: f64,
    /// EWMA ceiling estimate, req/s.
    pub ceiling: f64,
    /// clamp(ceiling × (1 − hold_margin), min, max).
    pub hold: f64,
    /// When the ceiling was last learned or restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling_updated_at: Option<DateTime<Utc>>,
    /// The ceiling state file, if persistence is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
    /// Whether the ceiling came from the state file at start-up.
    pub restored_from_state: bool,
}

/// The process-wide adaptive limiter.
#[derive(Debug)]
pub struct Limiter {
    settings: RateLimitSettings,
    metrics: Arc<Metrics>,
    variant: String,
}

impl Limiter {
    /// Builds the limiter (and, once implemented, restores the persisted ceiling).
    pub fn new(settings: &RateLimitSettings, metrics: Arc<Metrics>, variant: &str) -> Self {
        metrics
            .rate_limit_requests_per_second
            .with_label_values(&[variant])
            .set(settings.initial);
        Self {
            settings: settings.clone(),
            metrics,
            variant: variant.to_owned(),
        }
    }

    /// Waits until the request may go upstream; never rejects. (Placeholder: immediate.)
    pub async fn admit(&self, source: SourceBucket) -> Admission {
        self.metrics
            .rate_limit_wait_seconds
            .with_label_values(&[&self.variant, source.label()])
            .observe(0.0);
        Admission {
            waited: Duration::ZERO,
        }
    }

    /// Values for `/health`.
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let s = &self.settings;
        RateLimitSnapshot {
            current_rate: s.initial,
            ceiling: s.max,
            hold: (s.max * (1.0 - s.hold_margin)).clamp(s.min, s.max),
            ceiling_updated_at: None,
            state_file: s
                .state_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            restored_from_state: false,
        }
    }

    /// A request's final upstream status was 2xx. (Placeholder: ignored.)
    pub fn record_success(&self) {}

    /// The upstream answered 429 of a class that feeds the controller. (Placeholder: ignored.)
    pub fn record_429(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_buckets_are_stable_and_bounded() {
        let a = SourceBucket::from_ip("127.0.0.1".parse().expect("ip"));
        let b = SourceBucket::from_ip("127.0.0.1".parse().expect("ip"));
        assert_eq!(a, b);
        assert!(a.index() < 64);
        assert!(a.label().starts_with("source-"));
        // FNV-1a 32 of "unknown" is 0x9b759fb9, mod 64 = 57
        assert_eq!(SourceBucket::from_host(b"").label(), "source-57");
    }
}
