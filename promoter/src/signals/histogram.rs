//! `histogram_quantile` with Prometheus's interpolation, on cumulative buckets.

/// Quantile `q` of a cumulative histogram given as `(upper bound, cumulative count)` pairs in
/// any order, as Prometheus computes it: linear interpolation inside the bucket holding the
/// rank, the lowest bucket starting at 0 (if its bound is positive), a rank in the `+Inf`
/// bucket answering the highest finite bound, and non-monotonic counts clamped. `NaN` when the
/// histogram is empty, has no `+Inf` bucket, or has fewer than two buckets.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut b: Vec<(f64, f64)> = buckets
        .iter()
        .copied()
        .filter(|(le, _)| !le.is_nan())
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Merge duplicate bounds.
    b.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 += later.1;
            true
        } else {
            false
        }
    });
    if b.len() < 2 || b.last().map(|x| x.0) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    // Clamp non-monotonic cumulative counts (Prometheus's ensureMonotonic).
    let mut max = f64::NEG_INFINITY;
    for x in &mut b {
        if x.1 > max {
            max = x.1;
        } else {
            x.1 = max;
        }
    }
    let total = b[b.len() - 1].1;
    if total <= 0.0 || total.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * total;
    let idx = b.iter().position(|x| x.1 >= rank).unwrap_or(b.len() - 1);
    if idx == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if idx == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (mut start, end, mut count) = (0.0, b[idx].0, b[idx].1);
    if idx > 0 {
        start = b[idx - 1].0;
        count -= b[idx - 1].1;
        rank -= b[idx - 1].1;
    }
    if count <= 0.0 {
        return start;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn interpolates_like_prometheus() {
        // 100 observations: 50 ≤ 0.1, 40 in (0.1, 0.5], 10 in (0.5, 1].
        let b = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (INF, 100.0)];
        assert!((histogram_quantile(0.5, &b) - 0.1).abs() < 1e-12);
        // rank 95 → bucket (0.5, 1]: 0.5 + 0.5 * (5/10) = 0.75
        assert!((histogram_quantile(0.95, &b) - 0.75).abs() < 1e-12);
        // rank 25 in the first bucket, starting at 0: 0.1 * 25/50 = 0.05
        assert!((histogram_quantile(0.25, &b) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn rank_in_inf_bucket_answers_highest_finite_bound() {
        let b = [(0.1, 10.0), (1.0, 10.0), (INF, 20.0)];
        assert_eq!(histogram_quantile(0.99, &b), 1.0);
    }

    #[test]
    fn empty_or_malformed_is_nan() {
        assert!(histogram_quantile(0.5, &[(0.1, 0.0), (INF, 0.0)]).is_nan());
        assert!(histogram_quantile(0.5, &[(0.1, 3.0), (1.0, 5.0)]).is_nan());
        assert!(histogram_quantile(0.5, &[]).is_nan());
        assert_eq!(histogram_quantile(-1.0, &[(INF, 1.0)]), f64::NEG_INFINITY);
    }

    #[test]
    fn non_monotonic_counts_are_clamped() {
        let b = [(0.1, 50.0), (0.5, 40.0), (1.0, 100.0), (INF, 100.0)];
        // treated as (0.5, 50): rank 50 → 0.1
        assert!((histogram_quantile(0.5, &b) - 0.1).abs() < 1e-12);
    }
}
