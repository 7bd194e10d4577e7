//! Which checks run for a level and version, and in what order, as Kubernetes'
//! `checkRegistry`: for each check the newest version not newer than the requested policy
//! version; baseline checks sorted by ID, then (at restricted) the restricted checks sorted
//! by ID, leaving out the baseline checks that a selected restricted check overrides.

use std::collections::BTreeSet;

use super::baseline::BASELINE_CHECKS;
use super::helpers::{CheckFn, PodUnderCheck};
use super::restricted::RESTRICTED_CHECKS;
use super::{Level, LevelVersion, Violation};

/// A check and its versions, oldest first.
pub(crate) struct Check {
    pub id: &'static str,
    pub versions: &'static [CheckVersion],
}

/// One version of a check: it applies from policy version 1.`since_minor` until the next
/// version of the same check.
pub(crate) struct CheckVersion {
    pub since_minor: u32,
    pub run: CheckFn,
    /// The IDs of the baseline checks this (restricted) check replaces at the
    /// restricted level.
    pub overrides: &'static [&'static str],
}

impl Check {
    pub const fn new(id: &'static str, versions: &'static [CheckVersion]) -> Check {
        Check { id, versions }
    }

    /// The newest version of this check that applies at policy version 1.`minor`.
    fn version_at(&self, minor: u32) -> Option<&'static CheckVersion> {
        let versions: &'static [CheckVersion] = self.versions;
        versions.iter().rev().find(|v| v.since_minor <= minor)
    }
}

impl CheckVersion {
    pub const fn new(since_minor: u32, run: CheckFn) -> CheckVersion {
        CheckVersion {
            since_minor,
            run,
            overrides: &[],
        }
    }

    pub const fn overriding(self, overrides: &'static [&'static str]) -> CheckVersion {
        CheckVersion { overrides, ..self }
    }
}

/// A check chosen to run: its ID and the version that applies.
pub(crate) struct SelectedCheck {
    pub id: &'static str,
    pub version: &'static CheckVersion,
}

fn applicable(checks: &'static [Check], minor: u32) -> Vec<SelectedCheck> {
    checks
        .iter()
        .filter_map(|check| {
            let version = check.version_at(minor)?;
            Some(SelectedCheck {
                id: check.id,
                version,
            })
        })
        .collect()
}

/// The checks to run for `lv`, in Kubernetes' order.
pub(crate) fn select_checks(lv: &LevelVersion) -> Vec<SelectedCheck> {
    let minor = lv.version.policy_minor();
    let baseline = applicable(BASELINE_CHECKS, minor);
    match lv.level {
        Level::Privileged => Vec::new(),
        Level::Baseline => baseline,
        Level::Restricted => {
            let restricted = applicable(RESTRICTED_CHECKS, minor);
            let overridden: BTreeSet<&str> = restricted
                .iter()
                .flat_map(|c| c.version.overrides.iter().copied())
                .collect();
            let kept = baseline.into_iter().filter(|c| !overridden.contains(c.id));
            kept.chain(restricted).collect()
        }
    }
}

/// Runs the checks of `lv` on the pod; the violations in check order.
pub(crate) fn run_checks(lv: &LevelVersion, pod: &PodUnderCheck<'_>) -> Vec<Violation> {
    select_checks(lv)
        .into_iter()
        .filter_map(|check| (check.version.run)(pod))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_security::Version;

    /// `id:v1.N` for each selected check, as Kubernetes' registry tests write them.
    fn selected(level: Level, version: Version) -> Vec<String> {
        select_checks(&LevelVersion { level, version })
            .iter()
            .map(|c| format!("{}:v1.{}", c.id, c.version.since_minor))
            .collect()
    }

    #[test]
    fn check_tables_are_sorted_by_id_like_kubernetes() {
        for table in [BASELINE_CHECKS, RESTRICTED_CHECKS] {
            let ids: Vec<&str> = table.iter().map(|c| c.id).collect();
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(ids, sorted);
        }
    }

    #[test]
    fn check_versions_strictly_increase_and_overrides_exist() {
        let baseline_ids: Vec<&str> = BASELINE_CHECKS.iter().map(|c| c.id).collect();
        for check in BASELINE_CHECKS.iter().chain(RESTRICTED_CHECKS) {
            let minors: Vec<u32> = check.versions.iter().map(|v| v.since_minor).collect();
            assert!(minors.windows(2).all(|w| w[0] < w[1]), "{}", check.id);
            for v in check.versions {
                assert!(v.overrides.iter().all(|id| baseline_ids.contains(id)));
            }
        }
        assert!(BASELINE_CHECKS
            .iter()
            .all(|c| c.versions.iter().all(|v| v.overrides.is_empty())));
    }

    #[test]
    fn privileged_runs_nothing() {
        assert!(selected(Level::Privileged, Version::Latest).is_empty());
        assert!(selected(Level::Privileged, Version::Minor(0)).is_empty());
    }

    #[test]
    fn baseline_latest_runs_newest_versions() {
        assert_eq!(
            selected(Level::Baseline, Version::Latest),
            [
                "appArmorProfile:v1.0",
                "capabilities_baseline:v1.0",
                "hostNamespaces:v1.0",
                "hostPathVolumes:v1.0",
                "hostPorts:v1.0",
                "privileged:v1.0",
                "procMount:v1.0",
                "seLinuxOptions:v1.31",
                "seccompProfile_baseline:v1.19",
                "sysctls:v1.32",
                "windowsHostProcess:v1.0",
            ]
        );
    }

    #[test]
    fn restricted_latest_drops_overridden_baseline_checks() {
        assert_eq!(
            selected(Level::Restricted, Version::Latest),
            [
                "appArmorProfile:v1.0",
                "hostNamespaces:v1.0",
                "hostPorts:v1.0",
                "privileged:v1.0",
                "procMount:v1.0",
                "seLinuxOptions:v1.31",
                "sysctls:v1.32",
                "windowsHostProcess:v1.0",
                "allowPrivilegeEscalation:v1.25",
                "capabilities_restricted:v1.25",
                "restrictedVolumes:v1.0",
                "runAsNonRoot:v1.0",
                "runAsUser:v1.23",
                "seccompProfile_restricted:v1.25",
            ]
        );
    }

    #[test]
    fn restricted_before_a_replacement_keeps_the_baseline_check() {
        let at_1_18 = selected(Level::Restricted, Version::Minor(18));
        assert!(at_1_18.contains(&"seccompProfile_baseline:v1.0".to_string()));
        assert!(at_1_18.contains(&"capabilities_baseline:v1.0".to_string()));
        assert!(at_1_18.contains(&"allowPrivilegeEscalation:v1.8".to_string()));
        assert!(!at_1_18.iter().any(|c| c.starts_with("runAsUser")));
        assert!(!at_1_18.iter().any(|c| c.starts_with("hostPathVolumes")));
        let at_1_22 = selected(Level::Restricted, Version::Minor(22));
        assert!(at_1_22.contains(&"capabilities_restricted:v1.22".to_string()));
        assert!(!at_1_22.contains(&"capabilities_baseline:v1.0".to_string()));
        assert!(at_1_22.contains(&"seccompProfile_restricted:v1.19".to_string()));
    }

    #[test]
    fn versions_pick_the_newest_check_not_newer() {
        let at = |minor| selected(Level::Baseline, Version::Minor(minor));
        assert!(at(0).contains(&"sysctls:v1.0".to_string()));
        assert!(at(26).contains(&"sysctls:v1.0".to_string()));
        assert!(at(27).contains(&"sysctls:v1.27".to_string()));
        assert!(at(31).contains(&"sysctls:v1.29".to_string()));
        assert!(at(30).contains(&"seLinuxOptions:v1.0".to_string()));
        assert!(at(18).contains(&"seccompProfile_baseline:v1.0".to_string()));
        assert_eq!(at(33), selected(Level::Baseline, Version::Latest));
        assert_eq!(at(10_000), selected(Level::Baseline, Version::Latest));
    }
}
