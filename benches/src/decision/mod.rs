//! Decision quality of the promoter's judge (issue 14, item 3): a Monte Carlo over simulated
//! promotions with synthetic request streams — no processes — comparing the new judge
//! (`zai_promoter::engine::judge`), today's threshold rules (at once and with `for: 5m`) and a
//! Kayenta-style fixed-sample test re-run every interval, on the same streams. See
//! docs/DECISIONS.md.

pub mod judges;
pub mod model;
pub mod report;
pub mod run;
pub mod stats;

use model::{Defect, Scenario};

/// Mean background 5xx probabilities.
pub const BACKGROUNDS: [f64; 4] = [0.0, 0.01, 0.02, 0.03];
/// Total request rates (req/s).
pub const RATES: [f64; 4] = [2.0, 20.0, 60.0, 200.0];
/// Canary shares.
pub const SHARES: [f64; 2] = [1.0 / 3.0, 1.0 / 10.0];
/// The canary's defects.
pub const DEFECTS: [Defect; 8] = [
    Defect::Healthy,
    Defect::ErrorRatio(1.5),
    Defect::ErrorRatio(2.0),
    Defect::ErrorRatio(3.0),
    Defect::ErrorPoints(0.02),
    Defect::LatencyP95(0.3),
    Defect::LatencyP95(0.5),
    Defect::LatencyP95(1.0),
];

/// The grid: every defect × background × rate × share, except error-ratio defects at 0 %
/// background (×k of nothing is nothing).
pub fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    for defect in DEFECTS {
        for background in BACKGROUNDS {
            if matches!(defect, Defect::ErrorRatio(_)) && background == 0.0 {
                continue;
            }
            for rate in RATES {
                for canary_share in SHARES {
                    out.push(Scenario {
                        background,
                        rate,
                        canary_share,
                        defect,
                    });
                }
            }
        }
    }
    out
}
