//! The rolling-update decision as a pure function: given the desired revision, replica count,
//! strategy and the live pods, which pods to create and which to terminate.
//!
//! Semantics follow the Kubernetes Deployment controller for `RollingUpdate`:
//! - never more than `replicas + max_surge` live (non-terminating) pods;
//! - never fewer than `replicas - max_unavailable` ready pods because of a voluntary removal;
//! - old pods that are not ready may always go (removing them costs no availability);
//! - surplus pods of the current revision go not-ready first, newest first.

use super::spec::RollingUpdate;

/// What the planner needs to know about a live pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodView {
    /// Pod id (creation order: larger is newer).
    pub id: u64,
    /// The template revision it runs.
    pub revision: u64,
    /// Passing its readiness probe.
    pub ready: bool,
}

/// One step of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create one pod of the desired revision.
    Create,
    /// Terminate the pod with this id.
    Terminate(u64),
}

/// Plans one reconcile pass.
pub fn plan(revision: u64, replicas: u32, strategy: RollingUpdate, pods: &[PodView]) -> Vec<Step> {
    let replicas = replicas as usize;
    let mut steps = Vec::new();
    let mut current: Vec<PodView> = pods
        .iter()
        .copied()
        .filter(|p| p.revision == revision)
        .collect();
    let mut old: Vec<PodView> = pods
        .iter()
        .copied()
        .filter(|p| p.revision != revision)
        .collect();

    // Scale down surplus pods of the current revision: not-ready first, then newest first.
    if current.len() > replicas {
        current.sort_by_key(|p| (p.ready, std::cmp::Reverse(p.id)));
        let surplus = current.len() - replicas;
        for p in current.drain(..surplus) {
            steps.push(Step::Terminate(p.id));
        }
    }

    let min_available = replicas.saturating_sub(strategy.max_unavailable as usize);
    let new_unavailable = current.iter().filter(|p| !p.ready).count();
    let all = current.len() + old.len();
    // The Deployment controller's budget: removing more would risk availability once the
    // unavailable new pods are counted as lost.
    let mut budget = all.saturating_sub(min_available + new_unavailable);

    // Old pods that are not ready go first (they cost no availability), within the budget.
    old.sort_by_key(|p| p.id);
    let mut kept = Vec::new();
    for p in old {
        if !p.ready && budget > 0 {
            steps.push(Step::Terminate(p.id));
            budget -= 1;
        } else {
            kept.push(p);
        }
    }

    // Then ready old pods, oldest first, while more than `min_available` pods are ready.
    let mut ready =
        current.iter().filter(|p| p.ready).count() + kept.iter().filter(|p| p.ready).count();
    let mut remaining_old = Vec::new();
    for p in kept {
        if p.ready && budget > 0 && ready > min_available {
            steps.push(Step::Terminate(p.id));
            budget -= 1;
            ready -= 1;
        } else {
            remaining_old.push(p);
        }
    }

    // Surge new pods while under the ceiling.
    let live = current.len() + remaining_old.len();
    let ceiling = replicas + strategy.max_surge as usize;
    let wanted = replicas.saturating_sub(current.len());
    let room = ceiling.saturating_sub(live);
    for _ in 0..wanted.min(room) {
        steps.push(Step::Create);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRATEGY: RollingUpdate = RollingUpdate {
        max_surge: 1,
        max_unavailable: 0,
    };

    fn pod(id: u64, revision: u64, ready: bool) -> PodView {
        PodView {
            id,
            revision,
            ready,
        }
    }

    fn creates(steps: &[Step]) -> usize {
        steps.iter().filter(|s| **s == Step::Create).count()
    }

    fn terminated(steps: &[Step]) -> Vec<u64> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Terminate(id) => Some(*id),
                Step::Create => None,
            })
            .collect()
    }

    #[test]
    fn fresh_deployment_creates_all_replicas() {
        let steps = plan(1, 3, STRATEGY, &[]);
        assert_eq!(creates(&steps), 3);
    }

    #[test]
    fn rollout_surges_one_and_keeps_all_old_until_new_is_ready() {
        let old = [pod(1, 1, true), pod(2, 1, true), pod(3, 1, true)];
        let steps = plan(2, 3, STRATEGY, &old);
        assert_eq!(creates(&steps), 1);
        assert!(terminated(&steps).is_empty());

        // The surge pod is not ready: nothing else happens.
        let mid = [
            pod(1, 1, true),
            pod(2, 1, true),
            pod(3, 1, true),
            pod(4, 2, false),
        ];
        assert!(plan(2, 3, STRATEGY, &mid).is_empty());

        // It becomes ready: the oldest old pod goes, then the next surge pod is created.
        let ready = [
            pod(1, 1, true),
            pod(2, 1, true),
            pod(3, 1, true),
            pod(4, 2, true),
        ];
        let steps = plan(2, 3, STRATEGY, &ready);
        assert_eq!(terminated(&steps), vec![1]);
        assert_eq!(creates(&steps), 1);
    }

    #[test]
    fn rollout_finishes_by_removing_the_last_old_pod() {
        let pods = [
            pod(3, 1, true),
            pod(4, 2, true),
            pod(5, 2, true),
            pod(6, 2, true),
        ];
        let steps = plan(2, 3, STRATEGY, &pods);
        assert_eq!(terminated(&steps), vec![3]);
        assert_eq!(creates(&steps), 0);
    }

    #[test]
    fn stuck_new_pod_never_costs_availability() {
        // A new revision whose pods never become ready: exactly one surge pod, old ones stay.
        let pods = [pod(1, 1, true), pod(2, 2, false)];
        assert!(plan(2, 1, STRATEGY, &pods).is_empty());
    }

    #[test]
    fn undo_removes_the_unready_new_pods() {
        // Undo re-activates revision 1 (like re-using the old ReplicaSet): its pods are current
        // again and the unready revision-2 pod goes at once.
        let pods = [pod(1, 1, true), pod(2, 2, false)];
        let steps = plan(1, 1, STRATEGY, &pods);
        assert_eq!(terminated(&steps), vec![2]);
        assert_eq!(creates(&steps), 0);
    }

    #[test]
    fn old_pods_flapping_unready_are_not_all_removed_at_once() {
        // Both old pods fail a probe at the moment the surge pod becomes ready: only one
        // removal fits the budget (3 pods - 2 min available - 0 unavailable new).
        let pods = [pod(1, 1, false), pod(2, 1, false), pod(3, 2, true)];
        let steps = plan(2, 2, STRATEGY, &pods);
        assert_eq!(terminated(&steps), vec![1]);
        assert_eq!(creates(&steps), 1);
    }

    #[test]
    fn scale_down_removes_unready_then_newest() {
        let pods = [pod(1, 1, true), pod(2, 1, false), pod(3, 1, true)];
        let steps = plan(1, 1, STRATEGY, &pods);
        assert_eq!(terminated(&steps), vec![2, 3]);
        assert_eq!(
            plan(1, 0, STRATEGY, &[pod(1, 1, true)]),
            vec![Step::Terminate(1)]
        );
    }

    #[test]
    fn crash_looping_pod_of_current_revision_is_left_alone() {
        let pods = [pod(1, 1, false)];
        assert!(plan(1, 1, STRATEGY, &pods).is_empty());
    }
}
