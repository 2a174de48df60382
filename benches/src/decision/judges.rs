//! The judges under comparison, each a small state machine fed one interval at a time.
//!
//! * [`NewJudge`]: `zai_promoter::engine::judge::verdict` on two checks as the promoter wires
//!   them in phase 1 — `pre.canary_error_rate` (5xx counts, cumulative since the data start)
//!   and `pre.canary_latency` (share of requests slower than a bucket bound `B`, chosen once at
//!   the first look where production has ≥ `min_requests` requests, as the bound whose share of
//!   slower production requests is nearest 10 %). Fail when either check fails; pass when both
//!   pass at the same look; otherwise wait.
//! * [`Threshold`]: today's alert conditions over a 5-minute sliding window — canary 5xx ratio
//!   above 5 %, or above 2 × (production + 1 pt), or canary p95 above 1.5 × production p95
//!   (Prometheus's `histogram_quantile` on the window's buckets). Either counted at once once the canary has
//!   `min_requests` in the window (the `scrape` mode before this change), or as Prometheus
//!   alerts with `for: 5m`.
//! * [`Kayenta`]: every interval, a Mann-Whitney U test at 98 % on the interval's raw
//!   latencies and a two-proportion test at 98 % on its errors; the first rejection in the
//!   "worse" direction fails; pass at the deadline.

use std::collections::VecDeque;

use serde::Serialize;
use zai_promoter::engine::judge::{self, Proportion, Tolerance, Verdict};
use zai_promoter::signals::canary_rules::CanaryRules;
use zai_promoter::signals::histogram::histogram_quantile;
use zai_proxy::metrics::REQUEST_DURATION_BUCKETS;

use super::model::{Interval, N_BUCKETS, Side};
use super::stats::{Z_98_TWO_SIDED, mann_whitney_z, two_proportion_z};

/// The promoter's `min_requests` default.
pub const MIN_REQUESTS: u64 = 50;
/// Looks in the 5-minute window of the threshold rules (10 × 30 s).
pub const WINDOW_INTERVALS: usize = 10;
/// Share of slower production requests the latency bound aims at.
pub const LATENCY_TAIL_TARGET: f64 = 0.1;

/// A decided run, or one still open at the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// The canary is judged worse: abort (phase 1) / roll back.
    Fail,
    /// The canary is judged acceptable: promote.
    Pass,
    /// Still undecided at the deadline: "aborted: insufficient evidence".
    Inconclusive,
}

/// Counts one variant has accumulated: cumulative and per interval (for windows).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Requests since the data start.
    pub requests: u64,
    /// 5xx since the data start.
    pub errors: u64,
    /// Requests per bucket since the data start.
    pub buckets: [u64; N_BUCKETS],
    window: VecDeque<(u64, u64, [u64; N_BUCKETS])>,
}

impl Counts {
    fn add(&mut self, s: &Side) {
        self.requests += s.requests;
        self.errors += s.errors;
        for (t, c) in self.buckets.iter_mut().zip(s.buckets) {
            *t += c;
        }
        self.window.push_back((s.requests, s.errors, s.buckets));
        if self.window.len() > WINDOW_INTERVALS {
            self.window.pop_front();
        }
    }

    /// Requests slower than bucket bound `i` (in the buckets after it).
    pub fn slower_than(&self, i: usize) -> u64 {
        self.buckets[i + 1..].iter().sum()
    }

    /// (requests, errors, cumulative buckets as (le, count) with `+Inf`) over the window.
    fn windowed(&self) -> (u64, u64, Vec<(f64, f64)>) {
        let (mut n, mut e, mut b) = (0, 0, [0u64; N_BUCKETS]);
        for (wn, we, wb) in &self.window {
            n += wn;
            e += we;
            for (t, c) in b.iter_mut().zip(wb) {
                *t += c;
            }
        }
        let mut cum = 0u64;
        let les = REQUEST_DURATION_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY]);
        let buckets = les
            .zip(b)
            .map(|(le, c)| {
                cum += c;
                (le, cum as f64)
            })
            .collect();
        (n, e, buckets)
    }
}

/// Both variants' counts.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// The canary.
    pub canary: Counts,
    /// Production.
    pub production: Counts,
}

impl Tally {
    /// Adds one interval.
    pub fn add(&mut self, iv: &Interval) {
        self.canary.add(&iv.canary);
        self.production.add(&iv.production);
    }
}

/// Settings of the new judge (the promoter's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NewJudgeSettings {
    /// α of each judged check (the run's α split over the checks).
    pub alpha_each: f64,
    /// Tolerance of the error check.
    pub errors: Tolerance,
    /// Tolerance of the latency check.
    pub latency: Tolerance,
}

impl Default for NewJudgeSettings {
    fn default() -> Self {
        NewJudgeSettings {
            alpha_each: 0.01 / 2.0,
            errors: Tolerance {
                relative: 0.5,
                absolute: 0.005,
            },
            latency: Tolerance {
                relative: 0.5,
                absolute: 0.02,
            },
        }
    }
}

/// The latency bound: the bucket whose share of slower production requests is nearest
/// [`LATENCY_TAIL_TARGET`] (the lower bound on a tie); `None` below `min_requests`.
pub fn choose_latency_bound(production: &Counts) -> Option<usize> {
    if production.requests < MIN_REQUESTS {
        return None;
    }
    // The promoter's own choice, on the same cumulative buckets it reads from a histogram.
    let mut cumulative = Vec::with_capacity(N_BUCKETS);
    let mut sum = 0u64;
    for (i, c) in production.buckets.iter().enumerate() {
        sum += c;
        let le = REQUEST_DURATION_BUCKETS
            .get(i)
            .copied()
            .unwrap_or(f64::INFINITY);
        cumulative.push((le, sum as f64));
    }
    let bound =
        zai_promoter::engine::compare::choose_latency_boundary(&cumulative, LATENCY_TAIL_TARGET)?;
    REQUEST_DURATION_BUCKETS.iter().position(|b| *b == bound)
}

/// The new judge on both checks.
#[derive(Debug, Clone)]
pub struct NewJudge {
    settings: NewJudgeSettings,
    bound: Option<usize>,
}

impl NewJudge {
    /// A judge with no latency bound chosen yet.
    pub fn new(settings: NewJudgeSettings) -> Self {
        NewJudge {
            settings,
            bound: None,
        }
    }

    /// The verdict at one look.
    pub fn look(&mut self, t: &Tally) -> Verdict {
        let s = self.settings;
        let p = |events: u64, trials: u64| Proportion::new(events as f64, trials as f64);
        let errors = judge::verdict(
            p(t.canary.errors, t.canary.requests),
            p(t.production.errors, t.production.requests),
            s.errors,
            s.alpha_each,
        );
        if self.bound.is_none() {
            self.bound = choose_latency_bound(&t.production);
        }
        let latency = match self.bound {
            None => Verdict::Inconclusive,
            Some(b) => judge::verdict(
                p(t.canary.slower_than(b), t.canary.requests),
                p(t.production.slower_than(b), t.production.requests),
                s.latency,
                s.alpha_each,
            ),
        };
        match (errors, latency) {
            (Verdict::Fail, _) | (_, Verdict::Fail) => Verdict::Fail,
            (Verdict::Pass, Verdict::Pass) => Verdict::Pass,
            _ => Verdict::Inconclusive,
        }
    }
}

/// The three alert conditions over the window: (high error rate, higher than production,
/// latency degraded), and the canary's requests in the window.
pub fn alert_conditions(t: &Tally) -> ([bool; 3], u64) {
    let (cn, ce, cb) = t.canary.windowed();
    let (pn, pe, pb) = t.production.windowed();
    let ratio = |e: u64, n: u64| if n > 0 { e as f64 / n as f64 } else { f64::NAN };
    let (cr, pr) = (ratio(ce, cn), ratio(pe, pn));
    // The thresholds are the rules file's, as the promoter's scrape source reads them.
    let rules = CanaryRules::embedded();
    let (cq, pq) = (
        histogram_quantile(rules.latency_quantile, &cb),
        histogram_quantile(rules.latency_quantile, &pb),
    );
    // NaN (no requests) compares false, as in PromQL.
    (
        [
            rules.high_error(cr),
            rules.higher_than_production(cr, pr),
            rules.latency_degraded(cq, pq),
        ],
        cn,
    )
}

/// Today's threshold rules.
#[derive(Debug, Clone)]
pub struct Threshold {
    /// Evaluations a condition must hold for before it fires (`None`: at once, with the
    /// `min_requests` guard, as the `scrape` mode counted them).
    hold: Option<usize>,
    held: [usize; 3],
}

impl Threshold {
    /// Counted at once (the `scrape` mode before this change).
    pub fn at_once() -> Self {
        Threshold {
            hold: None,
            held: [0; 3],
        }
    }

    /// Prometheus alerts with `for: 5m` evaluated every interval: an alert fires at the
    /// evaluation 5 minutes after the first of an unbroken run of true evaluations.
    pub fn with_for_5m() -> Self {
        Threshold {
            hold: Some(WINDOW_INTERVALS),
            held: [0; 3],
        }
    }

    /// One rule evaluation; `looking` is false before the run starts (Prometheus evaluates
    /// its rules all the time; the promoter only looks from the run start). Returns the
    /// verdict when `looking`.
    pub fn evaluate(&mut self, t: &Tally, looking: bool) -> Verdict {
        let (cond, canary_requests) = alert_conditions(t);
        match self.hold {
            None => {
                if !looking || canary_requests < MIN_REQUESTS {
                    Verdict::Inconclusive
                } else if cond.iter().any(|&c| c) {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                }
            }
            Some(hold) => {
                for (h, c) in self.held.iter_mut().zip(cond) {
                    *h = if c { *h + 1 } else { 0 };
                }
                // True at `hold + 1` consecutive evaluations = active for `hold` intervals.
                let firing = self.held.iter().any(|&h| h > hold);
                if !looking {
                    Verdict::Inconclusive
                } else if firing {
                    Verdict::Fail
                } else if canary_requests >= MIN_REQUESTS {
                    Verdict::Pass
                } else {
                    Verdict::Inconclusive
                }
            }
        }
    }
}

/// The Kayenta-style judge: fixed-sample tests on each interval.
#[derive(Debug, Default)]
pub struct Kayenta {
    scratch: Vec<(f64, bool)>,
}

impl Kayenta {
    /// Fail when this interval's tests reject in the "worse" direction; else inconclusive
    /// (the caller passes it at the deadline).
    pub fn look(&mut self, iv: &Interval) -> Verdict {
        let (c, p) = (&iv.canary, &iv.production);
        let errors = two_proportion_z(c.errors, c.requests, p.errors, p.requests);
        let latency = mann_whitney_z(&c.raw, &p.raw, &mut self.scratch);
        let worse = |z: Option<f64>| z.is_some_and(|z| z > Z_98_TWO_SIDED);
        if worse(errors) || worse(latency) {
            Verdict::Fail
        } else {
            Verdict::Inconclusive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(requests: u64, errors: u64, slow_bucket: usize, slow: u64) -> Side {
        let mut s = Side {
            requests,
            errors,
            ..Side::default()
        };
        s.buckets[6] = requests - slow;
        s.buckets[slow_bucket] += slow;
        s
    }

    #[test]
    fn latency_bound_is_nearest_ten_percent() {
        let mut t = Tally::default();
        // 12 % above 0.5 s (bucket 7 holds (0.5, 1]).
        t.add(&Interval {
            canary: side(40, 0, 7, 4),
            production: side(100, 0, 7, 12),
        });
        assert_eq!(choose_latency_bound(&t.production), Some(6));
        assert_eq!(REQUEST_DURATION_BUCKETS[6], 0.5);
        let mut small = Tally::default();
        small.add(&Interval {
            canary: side(10, 0, 7, 1),
            production: side(49, 0, 7, 5),
        });
        assert_eq!(choose_latency_bound(&small.production), None);
    }

    #[test]
    fn threshold_rules_fire_as_the_scrape_mode_did() {
        // The measured false abort: 1 of 60 canary 5xx (1.7 %) vs 0 of 120 → 1.7 % > 2 × 1 %? no;
        // 2 of 60 (3.3 %) > 2 % → fail at once.
        let mut t = Tally::default();
        t.add(&Interval {
            canary: side(60, 2, 7, 6),
            production: side(120, 0, 7, 12),
        });
        assert_eq!(Threshold::at_once().evaluate(&t, true), Verdict::Fail);
        // With for: 5m the same condition must hold for 11 evaluations.
        let mut f = Threshold::with_for_5m();
        for i in 0..10 {
            assert_ne!(f.evaluate(&t, true), Verdict::Fail, "evaluation {i}");
            t.add(&Interval {
                canary: side(60, 2, 7, 6),
                production: side(120, 0, 7, 12),
            });
        }
        assert_eq!(f.evaluate(&t, true), Verdict::Fail);
        // Below min_requests the scrape rule waits.
        let mut thin = Tally::default();
        thin.add(&Interval {
            canary: side(30, 3, 7, 3),
            production: side(60, 0, 7, 6),
        });
        assert_eq!(
            Threshold::at_once().evaluate(&thin, true),
            Verdict::Inconclusive
        );
    }

    #[test]
    fn new_judge_waits_on_thin_data_and_fails_on_much() {
        let mut j = NewJudge::new(NewJudgeSettings::default());
        let mut t = Tally::default();
        t.add(&Interval {
            canary: side(37, 1, 7, 4),
            production: side(74, 0, 7, 7),
        });
        assert_eq!(j.look(&t), Verdict::Inconclusive);
        for _ in 0..30 {
            t.add(&Interval {
                canary: side(300, 30, 7, 30),
                production: side(600, 6, 7, 60),
            });
        }
        assert_eq!(j.look(&t), Verdict::Fail);
    }
}
