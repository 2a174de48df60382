//! The seeds of a rehearsal: one base seed (`--seed`, default [`DEFAULT_SEED`]) gives the
//! seed of each run (`--repeat N`), and a run's seed and a scenario's *name* give the seeds
//! of that scenario's processes (both fake upstreams and the workers). A scenario's seeds
//! therefore do not depend on which other scenarios run, or in which order, so
//! `zai-rehearse --scenario NAME --seed RUN_SEED` replays one run of one scenario.

use serde::{Deserialize, Serialize};

use crate::seed::derive;
pub use crate::seed::{DEFAULT_SEED, parse_seed};

/// The seeds of one run of one scenario (recorded in `rehearsal.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioSeeds {
    /// The run's seed: `--seed` for the first run, derived from it for the others.
    pub run: u64,
    /// The scenario's seed, from the run's seed and the scenario's name.
    pub scenario: u64,
    /// The fake upstream behind 1.2.0.
    pub fake_old: u64,
    /// The fake upstream behind 1.2.1-canary and 1.2.1.
    pub fake_new: u64,
    /// The workers' request mix.
    pub workers: u64,
}

impl ScenarioSeeds {
    /// The seeds of scenario `name` in the run seeded with `run`.
    pub fn derive(run: u64, name: &str) -> ScenarioSeeds {
        let scenario = derive(run, &format!("rehearsal/scenario/{name}"), 0);
        ScenarioSeeds {
            run,
            scenario,
            fake_old: derive(scenario, "rehearsal/fake-old", 0),
            fake_new: derive(scenario, "rehearsal/fake-new", 0),
            workers: derive(scenario, "rehearsal/workers", 0),
        }
    }
}

/// The seeds of `runs` runs from `base`: the first run uses `base` itself (so `--repeat 1`
/// is the plain run and `--repeat N` extends it), run `k ≥ 1` a seed derived from
/// `(base, k)`.
pub fn run_seeds(base: u64, runs: u32) -> Vec<u64> {
    (0..u64::from(runs))
        .map(|k| {
            if k == 0 {
                base
            } else {
                derive(base, "rehearsal/run", k)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_base_same_seeds_different_base_different_seeds() {
        assert_eq!(run_seeds(1, 5), run_seeds(1, 5));
        assert_eq!(run_seeds(1, 5)[0], 1);
        assert_eq!(run_seeds(1, 3), run_seeds(1, 5)[..3]);
        let one = run_seeds(1, 5);
        let two = run_seeds(2, 5);
        assert!(one.iter().all(|s| !two.contains(s)), "{one:?} vs {two:?}");
        let mut unique = one.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            5,
            "runs of one base get different seeds: {one:?}"
        );
        assert!(run_seeds(1, 0).is_empty());
    }

    #[test]
    fn scenario_seeds_depend_on_run_and_name_only() {
        let a = ScenarioSeeds::derive(7, "healthy");
        assert_eq!(a, ScenarioSeeds::derive(7, "healthy"));
        assert_eq!(a.run, 7);
        let other_run = ScenarioSeeds::derive(8, "healthy");
        let other_name = ScenarioSeeds::derive(7, "canary-errors");
        for b in [other_run, other_name] {
            assert_ne!(a.scenario, b.scenario);
            assert_ne!(a.fake_old, b.fake_old);
            assert_ne!(a.fake_new, b.fake_new);
            assert_ne!(a.workers, b.workers);
        }
        // Each process of a scenario gets its own stream.
        let all = [a.scenario, a.fake_old, a.fake_new, a.workers];
        for (i, x) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|y| y != x), "{a:?}");
        }
    }
}
