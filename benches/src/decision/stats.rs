//! Small statistics for the benchmark: the fixed-sample tests of the Kayenta-style judge
//! (Mann-Whitney U, two proportions) and Wilson intervals for the reported rates.

/// One-sided z for a two-sided test at 98 % (rejecting in the "worse" direction only).
pub const Z_98_TWO_SIDED: f64 = 2.326_347_874_040_840_8;
/// z for 95 % Wilson intervals.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `k` successes in `n` trials at `z`.
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// z of the Mann-Whitney U statistic of `canary` against `baseline` (normal approximation
/// with tie correction, no continuity correction); positive when the canary's values tend to
/// be larger. `None` when either side is empty or all values are tied.
pub fn mann_whitney_z(
    canary: &[f64],
    baseline: &[f64],
    scratch: &mut Vec<(f64, bool)>,
) -> Option<f64> {
    let (n1, n2) = (canary.len(), baseline.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    scratch.clear();
    scratch.extend(canary.iter().map(|&v| (v, true)));
    scratch.extend(baseline.iter().map(|&v| (v, false)));
    scratch.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let n = scratch.len();
    let mut rank_sum = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && scratch[j].0 == scratch[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let avg = (i + 1 + j) as f64 / 2.0;
        let t = (j - i) as f64;
        if t > 1.0 {
            ties += t * t * t - t;
        }
        rank_sum += avg * scratch[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (n1, n2, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)));
    if var <= 0.0 {
        return None;
    }
    Some((u - mean) / var.sqrt())
}

/// z of the pooled two-proportion test; positive when the canary's proportion is higher.
/// `None` without trials on a side or when the pooled proportion is 0 or 1.
pub fn two_proportion_z(ec: u64, nc: u64, eb: u64, nb: u64) -> Option<f64> {
    if nc == 0 || nb == 0 {
        return None;
    }
    let (ec, nc, eb, nb) = (ec as f64, nc as f64, eb as f64, nb as f64);
    let pooled = (ec + eb) / (nc + nb);
    let var = pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / nb);
    if var <= 0.0 {
        return None;
    }
    Some((ec / nc - eb / nb) / var.sqrt())
}

/// The `q` quantile of sorted values (nearest rank); `None` when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 0 of 100: (0, 3.7 %); 10 of 100: (5.5 %, 17.4 %).
        let (lo, hi) = wilson(0, 100, Z_95);
        assert!(lo.abs() < 1e-12 && (hi - 0.0370).abs() < 5e-4, "{lo} {hi}");
        let (lo, hi) = wilson(10, 100, Z_95);
        assert!(
            (lo - 0.0552).abs() < 5e-4 && (hi - 0.1744).abs() < 5e-4,
            "{lo} {hi}"
        );
    }

    #[test]
    fn mann_whitney_sees_a_shift_and_handles_ties() {
        let mut s = Vec::new();
        let a: Vec<f64> = (0..50).map(|i| f64::from(i) + 30.0).collect();
        let b: Vec<f64> = (0..50).map(f64::from).collect();
        let z = mann_whitney_z(&a, &b, &mut s).unwrap_or(0.0);
        assert!(z > 5.0, "{z}");
        assert!(mann_whitney_z(&b, &a, &mut s).unwrap_or(0.0) < -5.0);
        // Same sample: U at its mean.
        assert!(mann_whitney_z(&b, &b, &mut s).unwrap_or(1.0).abs() < 1e-9);
        // All tied: no test.
        assert!(mann_whitney_z(&[1.0, 1.0], &[1.0], &mut s).is_none());
        // Small example by hand: canary {3, 4}, baseline {1, 2}: U = 4, mean 2, var 4·5/12.
        let z = mann_whitney_z(&[3.0, 4.0], &[1.0, 2.0], &mut s).unwrap_or(0.0);
        assert!((z - 2.0 / (20.0f64 / 12.0).sqrt()).abs() < 1e-12, "{z}");
    }

    #[test]
    fn two_proportions() {
        assert!(two_proportion_z(0, 10, 0, 10).is_none());
        let z = two_proportion_z(30, 100, 10, 100).unwrap_or(0.0);
        assert!((z - 3.5355).abs() < 1e-3, "{z}");
    }
}
