//! The judge: canary against baseline on counts, with verdicts that stay valid when they are
//! re-evaluated every interval.
//!
//! Every comparison the checklist makes between the canary and production (5xx share, share of
//! slow requests, share of cut streams) is a pair of proportions: `events` out of `trials` on
//! each side, counted since a fixed start. The judge does not threshold the ratio of the two;
//! it asks how strong the evidence is:
//!
//! * For each side it keeps a **time-uniform confidence sequence** for the proportion: the
//!   beta-binomial mixture of Robbins (1970). For a true proportion `p`, the mixture likelihood
//!   ratio `M_n(p) = B(a+S, b+n−S) / (B(a, b) · p^S (1−p)^(n−S))` is a non-negative martingale
//!   with mean 1, so by Ville's inequality `P(∃n: M_n(p) ≥ 1/α) ≤ α`: the set
//!   `{p : M_n(p) < 1/α}` covers `p` at every look at once, however often it is looked at.
//! * The canary is acceptable while `p_canary ≤ (1 + relative) · p_baseline + absolute` (the
//!   practical tolerance). With both sequences at level `α/2`, the bounds of the excess
//!   `p_canary − (1 + relative) · p_baseline − absolute` hold jointly with probability
//!   ≥ `1 − α` at all times, so:
//!   - **fail** when the whole excess interval is above 0 (false-fail probability ≤ α);
//!   - **pass** when the whole excess interval is at or below 0 (false-pass probability ≤ α);
//!   - **inconclusive** otherwise: keep sampling. Thin data is always inconclusive.
//!
//! Every result carries its evidence: the counts, the estimates with their intervals, the
//! confidence the data reach, and a projection of how many more canary requests a verdict needs
//! if the observed proportions and traffic split hold. Pure functions, no IO.

use serde::{Deserialize, Serialize};

/// Beta prior of the mixture: weight near small proportions (error and tail shares are small),
/// still proper over the whole of [0, 1]. Prior mean 0.05.
const PRIOR_A: f64 = 0.5;
const PRIOR_B: f64 = 9.5;
/// Bisection steps for interval bounds (2^-60 of the unit interval).
const BISECT_STEPS: usize = 60;

/// `events` out of `trials`, counted since the comparison's start. Counts from Prometheus's
/// `increase()` can be fractional; they are used as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    /// Events (5xx answers, slow requests, cut streams).
    pub events: f64,
    /// Trials (requests, streams).
    pub trials: f64,
}

impl Proportion {
    /// A proportion; negative or non-finite counts become 0 and events are capped at trials.
    pub fn new(events: f64, trials: f64) -> Self {
        let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
        let trials = clean(trials);
        Proportion {
            events: clean(events).min(trials),
            trials,
        }
    }

    /// The point estimate, 0 without trials.
    pub fn estimate(&self) -> f64 {
        if self.trials > 0.0 {
            self.events / self.trials
        } else {
            0.0
        }
    }

    fn scaled(&self, k: f64) -> Self {
        Proportion {
            events: self.events * k,
            trials: self.trials * k,
        }
    }
}

/// How much worse the canary may be before it counts as worse: `p_canary` is acceptable up to
/// `(1 + relative) · p_baseline + absolute`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Relative margin (0.5 = 50 % more than the baseline).
    pub relative: f64,
    /// Absolute margin in proportion points (0.005 = half a percentage point).
    pub absolute: f64,
}

impl Tolerance {
    /// The largest acceptable canary proportion for a baseline proportion.
    pub fn limit(&self, baseline: f64) -> f64 {
        (1.0 + self.relative) * baseline + self.absolute
    }

    /// "≤ 1.5 × production + 0.5 pt".
    pub fn describe(&self) -> String {
        self.describe_against("production")
    }

    /// [`Tolerance::describe`] against another baseline ("≤ 1.5 × old version + 0.5 pt").
    pub fn describe_against(&self, baseline: &str) -> String {
        format!(
            "≤ {} × {baseline} + {} pt",
            trim(1.0 + self.relative),
            trim(self.absolute * 100.0)
        )
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The three-way verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The canary is within the tolerance, with the required confidence.
    Pass,
    /// The canary is worse than the tolerance, with the required confidence.
    Fail,
    /// Not enough evidence either way: keep sampling.
    Inconclusive,
}

impl Verdict {
    /// Lower-case name as in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A closed interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// The result of one comparison, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The verdict.
    pub verdict: Verdict,
    /// Canary counts.
    pub canary: Proportion,
    /// Baseline (production) counts.
    pub baseline: Proportion,
    /// Anytime-valid interval of the canary's proportion (level α/2).
    pub canary_interval: Interval,
    /// Anytime-valid interval of the baseline's proportion (level α/2).
    pub baseline_interval: Interval,
    /// Point estimate of the effect, `p_canary − p_baseline`.
    pub effect: f64,
    /// Interval of the effect `p_canary − p_baseline` implied by the two sequences.
    pub effect_interval: Interval,
    /// Interval of the excess over the tolerance, `p_canary − limit(p_baseline)`: above 0 →
    /// fail, at or below 0 → pass.
    pub excess_interval: Interval,
    /// The tolerance.
    pub tolerance: Tolerance,
    /// The confidence required, `1 − α`.
    pub required_confidence: f64,
    /// The confidence the data reach for the verdict they lean to (the largest `1 − α'` at
    /// which they would decide); equals or exceeds `required_confidence` when decided.
    pub confidence_reached: f64,
    /// More canary requests a verdict needs if the observed proportions and split hold;
    /// `None` when decided or when no amount of such data would decide (the estimate sits on
    /// the tolerance).
    pub more_canary_trials: Option<u64>,
}

impl Comparison {
    /// One line for reports: "canary 3/412 (0.73 %, 0.1–3.9 %) vs production 9/830 …".
    pub fn summary(&self) -> String {
        self.summary_as("canary", "production")
    }

    /// [`Comparison::summary`] with other names for the two sides (phase 3 compares the new
    /// version's pods with the old version's).
    pub fn summary_as(&self, candidate: &str, baseline: &str) -> String {
        let pct = |v: f64| format!("{:.2} %", v * 100.0);
        let side = |name: &str, p: &Proportion, i: &Interval| {
            format!(
                "{name} {:.0}/{:.0} ({}, {}–{})",
                p.events,
                p.trials,
                pct(p.estimate()),
                pct(i.low),
                pct(i.high)
            )
        };
        let mut out = format!(
            "{} vs {}; tolerance {}; confidence {:.2} % of {:.2} % required",
            side(candidate, &self.canary, &self.canary_interval),
            side(baseline, &self.baseline, &self.baseline_interval),
            self.tolerance.describe_against(baseline),
            self.confidence_reached * 100.0,
            self.required_confidence * 100.0,
        );
        if self.verdict == Verdict::Inconclusive {
            match self.more_canary_trials {
                Some(n) => out.push_str(&format!("; ≈{n} more {candidate} requests needed")),
                None => out.push_str("; the estimate sits at the tolerance"),
            }
        }
        out
    }
}

fn ln_beta(a: f64, b: f64) -> f64 {
    libm::lgamma(a) + libm::lgamma(b) - libm::lgamma(a + b)
}

/// The part of `ln M_n` that does not depend on the tested `p` (computed once per look,
/// not once per bisection step).
fn ln_mixture_constant(p: &Proportion) -> f64 {
    let s = p.events;
    let f = p.trials - p.events;
    ln_beta(PRIOR_A + s, PRIOR_B + f) - ln_beta(PRIOR_A, PRIOR_B)
}

/// `ln M_n(p)`: the log of the beta-binomial mixture likelihood ratio against `p`, given
/// [`ln_mixture_constant`] of the same counts.
fn ln_mixture_ratio(p: &Proportion, constant: f64, at: f64) -> f64 {
    let s = p.events;
    let f = p.trials - p.events;
    let mut v = constant;
    if s > 0.0 {
        v -= s * at.ln();
    }
    if f > 0.0 {
        v -= f * (-at).ln_1p();
    }
    v
}

/// The time-uniform confidence sequence at level `alpha` for a proportion, at this look:
/// `{p : M_n(p) < 1/α}` (an interval, since `ln M_n` is convex in `p`).
pub fn confidence_sequence(p: Proportion, alpha: f64) -> Interval {
    let threshold = (1.0 / alpha.clamp(1e-300, 1.0)).ln();
    let constant = ln_mixture_constant(&p);
    let inside = |x: f64| ln_mixture_ratio(&p, constant, x) < threshold;
    // The mixture ratio is smallest near the estimate, pulled toward the prior a little.
    let centre = ((p.events + PRIOR_A) / (p.trials + PRIOR_A + PRIOR_B)).clamp(1e-12, 1.0 - 1e-12);
    if !inside(centre) {
        // Only possible for α close to 1: an empty sequence, report the point.
        return Interval {
            low: centre,
            high: centre,
        };
    }
    let edge = |mut inner: f64, mut outer: f64| {
        if inside(outer) {
            return outer;
        }
        for _ in 0..BISECT_STEPS {
            let mid = 0.5 * (inner + outer);
            if inside(mid) {
                inner = mid;
            } else {
                outer = mid;
            }
        }
        inner
    };
    let low = edge(centre, 0.0);
    let high = edge(centre, 1.0);
    Interval {
        low: if low <= 1e-12 { 0.0 } else { low },
        high: if high >= 1.0 - 1e-12 { 1.0 } else { high },
    }
}

/// The bounds and verdict at one level α.
fn decide_at(
    canary: Proportion,
    baseline: Proportion,
    tolerance: Tolerance,
    alpha: f64,
) -> (Verdict, Interval, Interval, Interval) {
    let c = confidence_sequence(canary, alpha / 2.0);
    let b = confidence_sequence(baseline, alpha / 2.0);
    let excess = Interval {
        low: c.low - tolerance.limit(b.high),
        high: c.high - tolerance.limit(b.low),
    };
    let verdict = if excess.low > 0.0 {
        Verdict::Fail
    } else if excess.high <= 0.0 {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    (verdict, c, b, excess)
}

/// The verdict alone (no evidence, no projections): the cheap path for simulations.
pub fn verdict(
    canary: Proportion,
    baseline: Proportion,
    tolerance: Tolerance,
    alpha: f64,
) -> Verdict {
    let canary = Proportion::new(canary.events, canary.trials);
    let baseline = Proportion::new(baseline.events, baseline.trials);
    decide_at(canary, baseline, tolerance, alpha).0
}

/// Compares canary with baseline at false-verdict level `alpha` (false fail ≤ α and false
/// pass ≤ α, at every look).
pub fn compare(
    canary: Proportion,
    baseline: Proportion,
    tolerance: Tolerance,
    alpha: f64,
) -> Comparison {
    let canary = Proportion::new(canary.events, canary.trials);
    let baseline = Proportion::new(baseline.events, baseline.trials);
    let (verdict, ci, bi, excess) = decide_at(canary, baseline, tolerance, alpha);
    let effect = canary.estimate() - baseline.estimate();
    let lean = if verdict != Verdict::Inconclusive {
        verdict
    } else if canary.estimate() > tolerance.limit(baseline.estimate()) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    Comparison {
        verdict,
        canary,
        baseline,
        canary_interval: ci,
        baseline_interval: bi,
        effect,
        effect_interval: Interval {
            low: ci.low - bi.high,
            high: ci.high - bi.low,
        },
        excess_interval: excess,
        tolerance,
        required_confidence: 1.0 - alpha,
        confidence_reached: confidence_reached(canary, baseline, tolerance, lean),
        more_canary_trials: if verdict == Verdict::Inconclusive {
            more_trials(canary, baseline, tolerance, alpha)
        } else {
            None
        },
    }
}

/// The largest `1 − α'` at which the data give `lean` (0 when they give it at no level).
fn confidence_reached(
    canary: Proportion,
    baseline: Proportion,
    tolerance: Tolerance,
    lean: Verdict,
) -> f64 {
    let gives = |alpha: f64| decide_at(canary, baseline, tolerance, alpha).0 == lean;
    // Search α' on a log scale between 1e-12 and 1.
    let (mut lo, mut hi) = (-12.0_f64, 0.0_f64); // log10 α'
    if gives(10f64.powf(lo)) {
        return 1.0 - 1e-12;
    }
    if !gives(10f64.powf(-1e-9)) {
        return 0.0;
    }
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if gives(10f64.powf(mid)) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    1.0 - 10f64.powf(hi)
}

/// Projection: more canary trials until a verdict, if the observed proportions and the
/// canary/baseline split hold. `None` when no amount decides within 10⁸ canary trials.
fn more_trials(
    canary: Proportion,
    baseline: Proportion,
    tolerance: Tolerance,
    alpha: f64,
) -> Option<u64> {
    const MAX_TRIALS: f64 = 1e8;
    // With no trials yet, project from one of each.
    let (c0, b0) = if canary.trials < 1.0 || baseline.trials < 1.0 {
        (Proportion::new(0.0, 1.0), Proportion::new(0.0, 1.0))
    } else {
        (canary, baseline)
    };
    let decided =
        |k: f64| decide_at(c0.scaled(k), b0.scaled(k), tolerance, alpha).0 != Verdict::Inconclusive;
    let mut hi = 2.0;
    while !decided(hi) {
        hi *= 2.0;
        if c0.trials * hi > MAX_TRIALS {
            return None;
        }
    }
    let mut lo = hi / 2.0;
    for _ in 0..30 {
        let mid = 0.5 * (lo + hi);
        if decided(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some((c0.trials * hi - canary.trials).max(1.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance {
        relative: 0.5,
        absolute: 0.005,
    };

    #[test]
    fn interval_contains_the_estimate_and_narrows_with_data() {
        let small = confidence_sequence(Proportion::new(1.0, 37.0), 0.005);
        let large = confidence_sequence(Proportion::new(100.0, 3700.0), 0.005);
        let p = 1.0 / 37.0;
        assert!(small.low <= p && p <= small.high, "{small:?}");
        assert!(large.low <= p && p <= large.high, "{large:?}");
        assert!(large.high - large.low < (small.high - small.low) / 4.0);
        let none = confidence_sequence(Proportion::new(0.0, 0.0), 0.005);
        assert_eq!((none.low, none.high), (0.0, 1.0));
        let zero = confidence_sequence(Proportion::new(0.0, 1000.0), 0.005);
        assert_eq!(zero.low, 0.0);
        assert!(zero.high > 0.0 && zero.high < 0.02, "{zero:?}");
    }

    #[test]
    fn one_error_in_37_is_not_evidence_but_many_are() {
        // The measured false abort of the old rule: 1 of 37 canary requests vs 0 of 74.
        let c = compare(
            Proportion::new(1.0, 37.0),
            Proportion::new(0.0, 74.0),
            TOL,
            0.01,
        );
        assert_eq!(c.verdict, Verdict::Inconclusive, "{}", c.summary());
        assert!(c.more_canary_trials.is_some());
        // The same 2.7 % in 100× the data is a clear regression.
        let c = compare(
            Proportion::new(100.0, 3700.0),
            Proportion::new(0.0, 7400.0),
            TOL,
            0.01,
        );
        assert_eq!(c.verdict, Verdict::Fail, "{}", c.summary());
        assert!(c.confidence_reached >= 0.99);
    }

    #[test]
    fn equal_rates_with_enough_data_pass() {
        let c = compare(
            Proportion::new(100.0, 10000.0),
            Proportion::new(200.0, 20000.0),
            TOL,
            0.01,
        );
        assert_eq!(c.verdict, Verdict::Pass, "{}", c.summary());
        let c = compare(
            Proportion::new(0.0, 2000.0),
            Proportion::new(0.0, 4000.0),
            TOL,
            0.01,
        );
        assert_eq!(c.verdict, Verdict::Pass, "{}", c.summary());
    }

    #[test]
    fn bad_input_is_cleaned_not_panicked_on() {
        let c = compare(
            Proportion::new(f64::NAN, -3.0),
            Proportion::new(5.0, 2.0),
            TOL,
            0.01,
        );
        assert_eq!(c.canary.trials, 0.0);
        assert_eq!(c.baseline.events, 2.0);
        assert_eq!(c.verdict, Verdict::Inconclusive);
    }
}
