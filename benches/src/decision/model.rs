//! The simulated world: configurations, shared noise and the request streams of one run.
//!
//! Time runs in intervals of [`INTERVAL_S`] seconds. In every interval each variant serves
//! `Poisson(rate × share × 30)` requests. Both variants share the environment:
//!
//! * **background 5xx probability** `q_t = min(1, m · exp(x_t − s²/2))` with `x_t` a stationary
//!   Gaussian AR(1) process (`x_t = ρ x_{t−1} + √(1−ρ²) s ε_t`, `ρ` = [`ERR_RHO`], `s` =
//!   [`ERR_LOG_SD`]): a lognormal wobble around the mean `m` (0, 1, 2, 3 %) whose log is
//!   correlated from one interval to the next (upstream incidents come and go, for both
//!   variants at once);
//! * **latency** per request `median · exp(σ Z) · J_t`, lognormal with median [`LAT_MEDIAN_S`]
//!   and log-sd [`LAT_SIGMA`] (p95 ≈ 0.57 s), times a shared per-interval jitter factor
//!   `J_t = exp(y_t)`, `y_t` AR(1) with [`JITTER_RHO`] and log-sd [`JITTER_LOG_SD`].
//!
//! A defect applies to the canary only: its 5xx probability becomes `min(1, k · q_t)` or
//! `q_t + d`, or its latency is multiplied by `1 + d` (which moves every quantile, the p95
//! included, by `d`). Latencies land in the proxy's `REQUEST_DURATION_BUCKETS`; raw values are
//! drawn only when a judge needs them (the Kayenta-style test), otherwise the bucket counts are
//! drawn directly (sequential binomials, the same multinomial law).

use rand::rngs::StdRng;
use rand_distr::{Binomial, Distribution, Poisson, StandardNormal};
use serde::Serialize;
use zai_proxy::metrics::REQUEST_DURATION_BUCKETS;

/// Seconds per interval (the promoter's default `interval`).
pub const INTERVAL_S: f64 = 30.0;
/// Log-sd of the background 5xx wobble.
pub const ERR_LOG_SD: f64 = 0.5;
/// Interval-to-interval correlation of the log background 5xx wobble.
pub const ERR_RHO: f64 = 0.8;
/// Median request latency (seconds).
pub const LAT_MEDIAN_S: f64 = 0.25;
/// Log-sd of request latency.
pub const LAT_SIGMA: f64 = 0.5;
/// Log-sd of the shared per-interval latency jitter factor.
pub const JITTER_LOG_SD: f64 = 0.1;
/// Interval-to-interval correlation of the log jitter factor.
pub const JITTER_RHO: f64 = 0.7;
/// Histogram buckets: the proxy's bounds plus `+Inf`.
pub const N_BUCKETS: usize = 16;

/// What is wrong with the canary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "size", rename_all = "snake_case")]
pub enum Defect {
    /// Nothing: the canary behaves as production.
    Healthy,
    /// 5xx probability × k.
    ErrorRatio(f64),
    /// 5xx probability + d (0.02 = two points).
    ErrorPoints(f64),
    /// Latency × (1 + d): p95 + d·100 %.
    LatencyP95(f64),
}

impl Defect {
    /// Short label for tables: "healthy", "err ×3", "err +2 pt", "p95 +100 %".
    pub fn label(&self) -> String {
        match *self {
            Defect::Healthy => "healthy".into(),
            Defect::ErrorRatio(k) => format!("err ×{k}"),
            Defect::ErrorPoints(d) => format!("err +{} pt", d * 100.0),
            Defect::LatencyP95(d) => format!("p95 +{} %", d * 100.0),
        }
    }

    /// A healthy canary (any verdict but pass is a false abort).
    pub fn is_healthy(&self) -> bool {
        matches!(self, Defect::Healthy)
    }
}

/// One configuration of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scenario {
    /// Mean background 5xx probability shared by both variants (0.01 = 1 %).
    pub background: f64,
    /// Total requests per second over both variants.
    pub rate: f64,
    /// Share of the traffic the canary gets.
    pub canary_share: f64,
    /// The canary's defect.
    pub defect: Defect,
}

impl Scenario {
    /// Canary requests per second.
    pub fn canary_rate(&self) -> f64 {
        self.rate * self.canary_share
    }
}

/// One variant's requests in one interval.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// Requests served.
    pub requests: u64,
    /// 5xx answers.
    pub errors: u64,
    /// Requests per latency bucket (non-cumulative; the last is `+Inf`).
    pub buckets: [u64; N_BUCKETS],
    /// Raw latencies (seconds), only when asked for.
    pub raw: Vec<f64>,
}

/// Both variants in one interval.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// The canary (`variant="test"`).
    pub canary: Side,
    /// Production.
    pub production: Side,
}

/// The stream generator of one simulated run.
pub struct World {
    scenario: Scenario,
    err_x: f64,
    jit_y: f64,
}

fn normal(rng: &mut StdRng) -> f64 {
    StandardNormal.sample(rng)
}

/// Standard normal CDF.
pub fn phi(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    match Poisson::new(mean) {
        Ok(d) => {
            let v: f64 = d.sample(rng);
            v as u64
        }
        Err(_) => 0,
    }
}

fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    Binomial::new(n, p).map(|d| d.sample(rng)).unwrap_or(0)
}

/// Bucket index of a latency (`le` semantics: the first bound ≥ the value; 15 = `+Inf`).
pub fn bucket_of(latency: f64) -> usize {
    REQUEST_DURATION_BUCKETS.partition_point(|&b| b < latency)
}

impl World {
    /// A run's world, with the noise processes drawn from their stationary laws.
    pub fn new(scenario: Scenario, rng: &mut StdRng) -> Self {
        World {
            scenario,
            err_x: ERR_LOG_SD * normal(rng),
            jit_y: JITTER_LOG_SD * normal(rng),
        }
    }

    /// The next interval; `raw` asks for raw latencies as well as bucket counts.
    pub fn next(&mut self, rng: &mut StdRng, raw: bool, out: &mut Interval) {
        let s = self.scenario;
        self.err_x =
            ERR_RHO * self.err_x + (1.0 - ERR_RHO * ERR_RHO).sqrt() * ERR_LOG_SD * normal(rng);
        self.jit_y = JITTER_RHO * self.jit_y
            + (1.0 - JITTER_RHO * JITTER_RHO).sqrt() * JITTER_LOG_SD * normal(rng);
        let q = (s.background * (self.err_x - ERR_LOG_SD * ERR_LOG_SD / 2.0).exp()).min(1.0);
        let jitter = self.jit_y.exp();
        let (q_canary, scale_canary) = match s.defect {
            Defect::Healthy => (q, 1.0),
            Defect::ErrorRatio(k) => ((k * q).min(1.0), 1.0),
            Defect::ErrorPoints(d) => ((q + d).min(1.0), 1.0),
            Defect::LatencyP95(d) => (q, 1.0 + d),
        };
        let sides = [
            (&mut out.canary, s.canary_share, q_canary, scale_canary),
            (&mut out.production, 1.0 - s.canary_share, q, 1.0),
        ];
        for (side, share, q, scale) in sides {
            side.requests = poisson(rng, s.rate * share * INTERVAL_S);
            side.errors = binomial(rng, side.requests, q);
            side.buckets = [0; N_BUCKETS];
            side.raw.clear();
            let median = LAT_MEDIAN_S * jitter * scale;
            if raw {
                for _ in 0..side.requests {
                    let v = median * (LAT_SIGMA * normal(rng)).exp();
                    side.buckets[bucket_of(v)] += 1;
                    side.raw.push(v);
                }
            } else {
                // Multinomial over the buckets as sequential binomials.
                let mut left = side.requests;
                let mut below = 0.0;
                for (i, &b) in REQUEST_DURATION_BUCKETS.iter().enumerate() {
                    if left == 0 {
                        break;
                    }
                    let cdf = phi((b / median).ln() / LAT_SIGMA);
                    let p = if below < 1.0 {
                        ((cdf - below) / (1.0 - below)).clamp(0.0, 1.0)
                    } else {
                        1.0
                    };
                    let k = binomial(rng, left, p);
                    side.buckets[i] += k;
                    left -= k;
                    below = cdf;
                }
                side.buckets[N_BUCKETS - 1] += left;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn raw_and_bucket_paths_draw_the_same_law() {
        let sc = Scenario {
            background: 0.02,
            rate: 200.0,
            canary_share: 0.5,
            defect: Defect::Healthy,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut w = World::new(sc, &mut rng);
        let (mut raw, mut bucketed) = ([0u64; N_BUCKETS], [0u64; N_BUCKETS]);
        let mut iv = Interval::default();
        for i in 0..400 {
            w.next(&mut rng, i % 2 == 0, &mut iv);
            let target = if i % 2 == 0 { &mut raw } else { &mut bucketed };
            for (t, c) in target.iter_mut().zip(iv.canary.buckets) {
                *t += c;
            }
        }
        let (nr, nb) = (
            raw.iter().sum::<u64>() as f64,
            bucketed.iter().sum::<u64>() as f64,
        );
        for (i, (r, b)) in raw.iter().zip(bucketed).enumerate() {
            let (a, b) = (*r as f64 / nr, b as f64 / nb);
            assert!((a - b).abs() < 0.01, "bucket {i}: {a} vs {b}");
        }
        // The 0.5 s bound has about 8 % of the requests above it.
        let above: u64 = raw[7..].iter().sum();
        let share = above as f64 / nr;
        assert!((0.05..0.12).contains(&share), "{share}");
    }

    #[test]
    fn background_noise_has_the_stated_mean() {
        let sc = Scenario {
            background: 0.03,
            rate: 200.0,
            canary_share: 0.5,
            defect: Defect::ErrorRatio(2.0),
        };
        let mut rng = StdRng::seed_from_u64(8);
        let mut w = World::new(sc, &mut rng);
        let mut iv = Interval::default();
        let (mut e, mut n, mut ec, mut nc) = (0u64, 0u64, 0u64, 0u64);
        for _ in 0..3000 {
            w.next(&mut rng, false, &mut iv);
            e += iv.production.errors;
            n += iv.production.requests;
            ec += iv.canary.errors;
            nc += iv.canary.requests;
        }
        let (p, c) = (e as f64 / n as f64, ec as f64 / nc as f64);
        assert!((p - 0.03).abs() < 0.003, "production {p}");
        assert!((c - 0.06).abs() < 0.006, "canary {c}");
    }
}
