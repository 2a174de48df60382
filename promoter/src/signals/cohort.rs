//! Which of a deployment's pods a query counts: all of them, or only those of the version
//! being rolled out, or only those of the version it replaces (phase 3 compares the two while
//! both serve).
//!
//! A pod's version is its `version` label ([`PodInfo::version`]); the version being rolled
//! out is told by the driver when phase 3 starts. Pods are remembered once seen, so the
//! old version's pods still count after they are gone (their counters up to their last
//! scrape, or their series in Prometheus). A pod without a `version` label belongs to
//! neither cohort.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::platform::PodInfo;

/// Which pods of the queried variant count.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Cohort {
    /// Every pod of the variant.
    #[default]
    All,
    /// Pods labelled with the version being rolled out.
    NewVersion,
    /// Pods labelled with another version (the one being replaced).
    OldVersion,
}

impl Cohort {
    /// True for [`Cohort::All`] (left out of serialised queries).
    pub fn is_all(&self) -> bool {
        *self == Cohort::All
    }

    /// How reports name it: empty for all pods.
    pub fn label(self) -> &'static str {
        match self {
            Cohort::All => "",
            Cohort::NewVersion => "new-version pods",
            Cohort::OldVersion => "old-version pods",
        }
    }
}

/// The pods seen so far with their versions, and the version being rolled out.
#[derive(Debug, Clone, Default)]
pub struct Cohorts {
    new_version: Option<String>,
    versions: BTreeMap<String, Option<String>>,
}

/// At most this many pods are remembered (the oldest names are forgotten first); a rollout
/// sees a few dozen.
const MAX_PODS: usize = 4096;

impl Cohorts {
    /// Sets the version being rolled out.
    pub fn set_new_version(&mut self, version: &str) {
        self.new_version = Some(version.to_owned());
    }

    /// Remembers the pods' versions.
    pub fn note(&mut self, pods: &[PodInfo]) {
        for p in pods {
            self.versions.insert(p.name.clone(), p.version.clone());
        }
        while self.versions.len() > MAX_PODS {
            self.versions.pop_first();
        }
    }

    /// Whether pod `name` is in `cohort`. Without a version being rolled out, only
    /// [`Cohort::All`] has members.
    pub fn contains(&self, cohort: Cohort, name: &str) -> bool {
        if cohort == Cohort::All {
            return true;
        }
        let (Some(new), Some(Some(version))) = (&self.new_version, self.versions.get(name)) else {
            return false;
        };
        (version == new) == (cohort == Cohort::NewVersion)
    }

    /// The names of the pods seen in `cohort`, sorted (every pod seen for [`Cohort::All`]).
    pub fn members(&self, cohort: Cohort) -> Vec<&str> {
        self.versions
            .keys()
            .filter(|name| self.contains(cohort, name))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::platform::Variant;

    /// A Ready production pod (also used by the Prometheus source's tests).
    pub(crate) fn pod(name: &str, version: Option<&str>) -> PodInfo {
        PodInfo {
            name: name.into(),
            variant: Variant::Production,
            phase: "Running".into(),
            ready: true,
            restarts: 0,
            waiting_reason: None,
            version: version.map(str::to_owned),
            image: String::new(),
            base_url: None,
            started_at: None,
        }
    }

    #[test]
    fn pods_split_by_version_and_stay_known_after_they_are_gone() {
        let mut c = Cohorts::default();
        c.note(&[pod("old-a", Some("1.2.0")), pod("bare", None)]);
        assert!(
            c.members(Cohort::NewVersion).is_empty(),
            "no version told yet"
        );
        assert!(!c.contains(Cohort::OldVersion, "old-a"));
        c.set_new_version("1.2.1");
        c.note(&[pod("new-a", Some("1.2.1"))]);
        assert_eq!(c.members(Cohort::NewVersion), vec!["new-a"]);
        assert_eq!(c.members(Cohort::OldVersion), vec!["old-a"]);
        assert_eq!(c.members(Cohort::All), vec!["bare", "new-a", "old-a"]);
        assert!(!c.contains(Cohort::NewVersion, "bare"));
        assert!(!c.contains(Cohort::OldVersion, "bare"));
        assert!(!c.contains(Cohort::OldVersion, "never-seen"));
    }
}
