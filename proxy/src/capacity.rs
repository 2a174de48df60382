//! `MAX_WORKERS`: a bound on requests in flight plus those queued in the rate limiter.
//!
//! A request takes a [`CapacityPermit`] on entry and gives it back when its response body is
//! finished (or dropped), so streams count for their whole life. One atomic counter, no lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use prometheus::Gauge;

use crate::metrics::Metrics;

/// The shared in-flight counter and its gauges.
#[derive(Debug)]
pub struct Capacity {
    max: u32,
    in_flight: AtomicU32,
    concurrent: Gauge,
    utilization: Gauge,
}

impl Capacity {
    /// A counter allowing `max` concurrent requests; gauges resolved once for `variant`.
    pub fn new(max: u32, metrics: &Metrics, variant: &str) -> Self {
        Self {
            max,
            in_flight: AtomicU32::new(0),
            concurrent: metrics.concurrent_requests.with_label_values(&[variant]),
            utilization: metrics
                .worker_utilization_ratio
                .with_label_values(&[variant]),
        }
    }

    /// Takes a slot, or `None` when `max` are taken.
    pub fn try_acquire(self: &Arc<Self>) -> Option<CapacityPermit> {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        if now > self.max {
            let left = self.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
            self.publish(left);
            return None;
        }
        self.publish(now);
        Some(CapacityPermit {
            capacity: Arc::clone(self),
        })
    }

    /// Requests currently holding a slot.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The configured maximum.
    pub fn max(&self) -> u32 {
        self.max
    }

    fn publish(&self, in_flight: u32) {
        self.concurrent.set(f64::from(in_flight));
        self.utilization
            .set(f64::from(in_flight) / f64::from(self.max.max(1)));
    }
}

/// One taken slot; released on drop.
#[derive(Debug)]
pub struct CapacityPermit {
    capacity: Arc<Capacity>,
}

impl Drop for CapacityPermit {
    fn drop(&mut self) {
        let left = self.capacity.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        self.capacity.publish(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BuildInfo;

    #[test]
    fn bounds_and_releases() {
        let m = Metrics::new("t", &BuildInfo::default(), 2, &[], "glm-4").expect("metrics");
        let c = Arc::new(Capacity::new(2, &m, "t"));
        let a = c.try_acquire();
        let b = c.try_acquire();
        assert!(a.is_some() && b.is_some());
        assert!(c.try_acquire().is_none());
        assert_eq!(c.in_flight(), 2);
        assert_eq!(
            m.worker_utilization_ratio.with_label_values(&["t"]).get(),
            1.0
        );
        drop(a);
        assert_eq!(c.in_flight(), 1);
        assert!(c.try_acquire().is_some());
        assert_eq!(m.concurrent_requests.with_label_values(&["t"]).get(), 1.0);
    }
}
