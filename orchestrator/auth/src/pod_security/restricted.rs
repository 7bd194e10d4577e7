//! The restricted checks of Kubernetes' Pod Security Standards (pod-security-admission
//! v1.33), each with the policy versions it applies from and the baseline checks it
//! replaces at the restricted level.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Volume;

use super::baseline::{
    allowed_seccomp_type, CAPABILITIES_BASELINE_ID, HOST_PATH_VOLUMES_ID, SECCOMP_BASELINE_ID,
};
use super::helpers::{
    containers, containers_phrase, containers_where, join_quote, pluralize, setters, PodUnderCheck,
};
use super::registry::{Check, CheckVersion};
use super::Violation;

/// The restricted checks, sorted by ID: the order Kubernetes runs them in, after the
/// baseline checks.
pub(super) const RESTRICTED_CHECKS: &[Check] = &[
    Check::new(
        "allowPrivilegeEscalation",
        &[
            CheckVersion::new(8, allow_privilege_escalation_1_8),
            CheckVersion::new(25, allow_privilege_escalation_1_25),
        ],
    ),
    Check::new(
        "capabilities_restricted",
        &[
            CheckVersion::new(22, capabilities_restricted_1_22)
                .overriding(&[CAPABILITIES_BASELINE_ID]),
            CheckVersion::new(25, capabilities_restricted_1_25)
                .overriding(&[CAPABILITIES_BASELINE_ID]),
        ],
    ),
    Check::new(
        "restrictedVolumes",
        &[CheckVersion::new(0, restricted_volumes).overriding(&[HOST_PATH_VOLUMES_ID])],
    ),
    Check::new("runAsNonRoot", &[CheckVersion::new(0, run_as_non_root)]),
    Check::new("runAsUser", &[CheckVersion::new(23, run_as_user)]),
    Check::new(
        "seccompProfile_restricted",
        &[
            CheckVersion::new(19, seccomp_profile_restricted_1_19)
                .overriding(&[SECCOMP_BASELINE_ID]),
            CheckVersion::new(25, seccomp_profile_restricted_1_25)
                .overriding(&[SECCOMP_BASELINE_ID]),
        ],
    ),
];

/// allowPrivilegeEscalation must be set to false in every container.
fn allow_privilege_escalation_1_8(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let bad_containers = containers_where(pod.spec, |c| {
        c.security_context
            .and_then(|sc| sc.allow_privilege_escalation)
            != Some(false)
    });
    if bad_containers.is_empty() {
        return None;
    }
    let detail = format!(
        "{} must set securityContext.allowPrivilegeEscalation=false",
        containers_phrase(&bad_containers)
    );
    Some(Violation::new("allowPrivilegeEscalation != false", detail))
}

/// As 1.8, but Windows pods (`spec.os.name: windows`) are exempt.
fn allow_privilege_escalation_1_25(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    allow_privilege_escalation_1_8(pod)
}

/// Containers must drop `ALL` capabilities and may add only `NET_BIND_SERVICE`.
fn capabilities_restricted_1_22(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut forbidden_capabilities = BTreeSet::new();
    for container in containers(pod.spec) {
        let capabilities = container
            .security_context
            .and_then(|sc| sc.capabilities.as_ref());
        let Some(capabilities) = capabilities else {
            missing_drop_all.push(container.name);
            continue;
        };
        let dropped = capabilities.drop.as_deref().unwrap_or_default();
        if !dropped.iter().any(|c| c == "ALL") {
            missing_drop_all.push(container.name);
        }
        let added = capabilities.add.as_deref().unwrap_or_default();
        let mut adds_forbidden = false;
        for capability in added.iter().filter(|c| *c != "NET_BIND_SERVICE") {
            forbidden_capabilities.insert(capability.as_str());
            adds_forbidden = true;
        }
        if adds_forbidden {
            adding_forbidden.push(container.name);
        }
    }
    let mut problems = Vec::new();
    if !missing_drop_all.is_empty() {
        problems.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        let forbidden: Vec<&str> = forbidden_capabilities.into_iter().collect();
        problems.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            join_quote(&forbidden)
        ));
    }
    (!problems.is_empty()).then(|| Violation::new("unrestricted capabilities", problems.join("; ")))
}

/// As 1.22, but Windows pods are exempt.
fn capabilities_restricted_1_25(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    capabilities_restricted_1_22(pod)
}

/// The restricted volume type of `volume`, `"unknown"` for none Kubernetes knows, and
/// `None` for the allowed types.
fn restricted_volume_type(volume: &Volume) -> Option<&'static str> {
    let allowed = [
        volume.config_map.is_some(),
        volume.csi.is_some(),
        volume.downward_api.is_some(),
        volume.empty_dir.is_some(),
        volume.ephemeral.is_some(),
        volume.image.is_some(),
        volume.persistent_volume_claim.is_some(),
        volume.projected.is_some(),
        volume.secret.is_some(),
    ];
    if allowed.into_iter().any(|set| set) {
        return None;
    }
    let restricted = [
        (volume.host_path.is_some(), "hostPath"),
        (volume.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (
            volume.aws_elastic_block_store.is_some(),
            "awsElasticBlockStore",
        ),
        (volume.git_repo.is_some(), "gitRepo"),
        (volume.nfs.is_some(), "nfs"),
        (volume.iscsi.is_some(), "iscsi"),
        (volume.glusterfs.is_some(), "glusterfs"),
        (volume.rbd.is_some(), "rbd"),
        (volume.flex_volume.is_some(), "flexVolume"),
        (volume.cinder.is_some(), "cinder"),
        (volume.cephfs.is_some(), "cephfs"),
        (volume.flocker.is_some(), "flocker"),
        (volume.fc.is_some(), "fc"),
        (volume.azure_file.is_some(), "azureFile"),
        (volume.vsphere_volume.is_some(), "vsphereVolume"),
        (volume.quobyte.is_some(), "quobyte"),
        (volume.azure_disk.is_some(), "azureDisk"),
        (
            volume.photon_persistent_disk.is_some(),
            "photonPersistentDisk",
        ),
        (volume.portworx_volume.is_some(), "portworxVolume"),
        (volume.scale_io.is_some(), "scaleIO"),
        (volume.storageos.is_some(), "storageos"),
    ];
    let found = restricted.into_iter().find(|(set, _)| *set);
    Some(found.map_or("unknown", |(_, name)| name))
}

/// Volumes may only be configMap, csi, downwardAPI, emptyDir, ephemeral, image,
/// persistentVolumeClaim, projected or secret.
fn restricted_volumes(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let mut bad_volumes = Vec::new();
    let mut bad_types = BTreeSet::new();
    for volume in pod.spec.volumes.iter().flatten() {
        if let Some(volume_type) = restricted_volume_type(volume) {
            bad_volumes.push(volume.name.as_str());
            bad_types.insert(volume_type);
        }
    }
    if bad_volumes.is_empty() {
        return None;
    }
    let bad_types: Vec<&str> = bad_types.into_iter().collect();
    let detail = format!(
        "{} {} {} {} {}",
        pluralize("volume", "volumes", bad_volumes.len()),
        join_quote(&bad_volumes),
        pluralize("uses", "use", bad_volumes.len()),
        pluralize(
            "restricted volume type",
            "restricted volume types",
            bad_types.len()
        ),
        join_quote(&bad_types)
    );
    Some(Violation::new("restricted volume types", detail))
}

/// runAsNonRoot must be true, at pod level or in every container; none may set it false.
/// With the user-namespace relaxation, pods with `hostUsers: false` pass.
fn run_as_non_root(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    if pod.relaxed_for_user_namespace() {
        return None;
    }
    let pod_setting = pod.spec.security_context.as_ref();
    let pod_setting = pod_setting.and_then(|sc| sc.run_as_non_root);
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for container in containers(pod.spec) {
        match container.security_context.and_then(|sc| sc.run_as_non_root) {
            Some(false) => explicitly_bad.push(container.name),
            Some(true) => {}
            None if pod_setting == Some(true) => {}
            None => implicitly_bad.push(container.name),
        }
    }
    let reason = "runAsNonRoot != true";
    if let Some(who) = setters(pod_setting == Some(false), &explicitly_bad) {
        let detail = format!("{who} must not set securityContext.runAsNonRoot=false");
        return Some(Violation::new(reason, detail));
    }
    if implicitly_bad.is_empty() {
        return None;
    }
    let detail = format!(
        "pod or {} must set securityContext.runAsNonRoot=true",
        containers_phrase(&implicitly_bad)
    );
    Some(Violation::new(reason, detail))
}

/// Neither the pod nor a container may set runAsUser=0. With the user-namespace
/// relaxation, pods with `hostUsers: false` pass.
fn run_as_user(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    if pod.relaxed_for_user_namespace() {
        return None;
    }
    let pod_security = pod.spec.security_context.as_ref();
    let pod_is_bad = pod_security.and_then(|sc| sc.run_as_user) == Some(0);
    let bad_containers = containers_where(pod.spec, |c| {
        c.security_context.and_then(|sc| sc.run_as_user) == Some(0)
    });
    let who = setters(pod_is_bad, &bad_containers)?;
    Some(Violation::new(
        "runAsUser=0",
        format!("{who} must not set runAsUser=0"),
    ))
}

/// seccompProfile.type must be `RuntimeDefault` or `Localhost`, at pod level or in every
/// container.
fn seccomp_profile_restricted_1_19(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let mut bad_values = BTreeSet::new();
    let pod_profile = pod.spec.security_context.as_ref();
    let pod_profile = pod_profile.and_then(|sc| sc.seccomp_profile.as_ref());
    let pod_type = pod_profile.map(|p| p.type_.as_str());
    let pod_is_bad = pod_type.is_some_and(|t| !allowed_seccomp_type(t));
    let pod_is_set = pod_type.is_some_and(allowed_seccomp_type);
    bad_values.extend(pod_type.filter(|_| pod_is_bad));
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for container in containers(pod.spec) {
        let profile = container
            .security_context
            .and_then(|sc| sc.seccomp_profile.as_ref());
        match profile.map(|p| p.type_.as_str()) {
            Some(t) if !allowed_seccomp_type(t) => {
                explicitly_bad.push(container.name);
                bad_values.insert(t);
            }
            Some(_) => {}
            None if !pod_is_set => implicitly_bad.push(container.name),
            None => {}
        }
    }
    if let Some(who) = setters(pod_is_bad, &explicitly_bad) {
        let bad_values: Vec<&str> = bad_values.into_iter().collect();
        let detail = format!(
            "{who} must not set securityContext.seccompProfile.type to {}",
            join_quote(&bad_values)
        );
        return Some(Violation::new("seccompProfile", detail));
    }
    if implicitly_bad.is_empty() {
        return None;
    }
    let detail = format!(
        r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
        containers_phrase(&implicitly_bad)
    );
    Some(Violation::new("seccompProfile", detail))
}

/// As 1.19, but Windows pods are exempt.
fn seccomp_profile_restricted_1_25(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    seccomp_profile_restricted_1_19(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_security::helpers::test_support::{check_pod, expect_allowed, expect_forbidden};
    use serde_json::json;

    fn privilege_escalation_pod() -> serde_json::Value {
        json!({"spec": {"containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {}},
            {"name": "c", "securityContext": {"allowPrivilegeEscalation": true}},
            {"name": "d", "securityContext": {"allowPrivilegeEscalation": false}}]}})
    }

    #[test]
    fn allow_privilege_escalation_must_be_false() {
        for check in [
            allow_privilege_escalation_1_8,
            allow_privilege_escalation_1_25,
        ] {
            expect_forbidden(
                check,
                privilege_escalation_pod(),
                "allowPrivilegeEscalation != false",
                r#"containers "a", "b", "c" must set securityContext.allowPrivilegeEscalation=false"#,
            );
            expect_allowed(
                check,
                json!({"spec": {"containers": [{"name": "d", "securityContext": {"allowPrivilegeEscalation": false}}]}}),
            );
        }
    }

    #[test]
    fn allow_privilege_escalation_exempts_windows_from_1_25() {
        let windows = json!({"spec": {"os": {"name": "windows"}, "containers": [{"name": "a"}]}});
        expect_allowed(allow_privilege_escalation_1_25, windows.clone());
        expect_forbidden(
            allow_privilege_escalation_1_8,
            windows,
            "allowPrivilegeEscalation != false",
            r#"container "a" must set securityContext.allowPrivilegeEscalation=false"#,
        );
        expect_forbidden(
            allow_privilege_escalation_1_25,
            json!({"spec": {"os": {"name": "linux"}, "containers": [{"name": "a"}]}}),
            "allowPrivilegeEscalation != false",
            r#"container "a" must set securityContext.allowPrivilegeEscalation=false"#,
        );
    }

    #[test]
    fn capabilities_restricted_requires_drop_all_and_limits_add() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "securityContext": {"capabilities": {"add": ["FOO", "BAR"]}}},
            {"name": "b", "securityContext": {"capabilities": {"add": ["BAR", "BAZ"]}}},
            {"name": "c", "securityContext": {"capabilities": {
                "add": ["NET_BIND_SERVICE", "CHOWN"], "drop": ["ALL", "FOO"]}}}]}});
        for check in [capabilities_restricted_1_22, capabilities_restricted_1_25] {
            expect_forbidden(
                check,
                pod.clone(),
                "unrestricted capabilities",
                concat!(
                    r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; "#,
                    r#"containers "a", "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add"#
                ),
            );
        }
    }

    #[test]
    fn capabilities_restricted_allows_drop_all_with_net_bind_service() {
        expect_allowed(
            capabilities_restricted_1_25,
            json!({"spec": {"containers": [{"name": "a", "securityContext": {"capabilities": {
                "add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}}]}}),
        );
    }

    #[test]
    fn capabilities_restricted_exempts_windows_from_1_25() {
        expect_allowed(
            capabilities_restricted_1_25,
            json!({"spec": {"os": {"name": "windows"}, "containers": [{"name": "a"}]}}),
        );
        expect_forbidden(
            capabilities_restricted_1_25,
            json!({"spec": {"os": {"name": "linux"}, "containers": [{"name": "a"}]}}),
            "unrestricted capabilities",
            r#"container "a" must set securityContext.capabilities.drop=["ALL"]"#,
        );
    }

    #[test]
    fn restricted_volumes_names_every_type() {
        let volume_sources = [
            ("b1", "hostPath"),
            ("b2", "gcePersistentDisk"),
            ("b3", "awsElasticBlockStore"),
            ("b4", "gitRepo"),
            ("b5", "nfs"),
            ("b6", "iscsi"),
            ("b7", "glusterfs"),
            ("b8", "rbd"),
            ("b9", "flexVolume"),
            ("b10", "cinder"),
            ("b11", "cephfs"),
            ("b12", "flocker"),
            ("b13", "fc"),
            ("b14", "azureFile"),
            ("b15", "vsphereVolume"),
            ("b16", "quobyte"),
            ("b17", "azureDisk"),
            ("b18", "photonPersistentDisk"),
            ("b19", "portworxVolume"),
            ("b20", "scaleIO"),
            ("b21", "storageos"),
        ];
        let allowed = [
            "emptyDir",
            "secret",
            "persistentVolumeClaim",
            "downwardAPI",
            "configMap",
            "projected",
            "csi",
            "ephemeral",
            "image",
        ];
        let mut volumes: Vec<serde_json::Value> = allowed
            .iter()
            .enumerate()
            .map(|(i, source)| json!({"name": format!("a{}", i + 1), *source: {}}))
            .collect();
        volumes.extend(
            volume_sources
                .iter()
                .map(|(name, source)| json!({"name": name, *source: {}})),
        );
        volumes.push(json!({"name": "c1"}));
        expect_forbidden(
            restricted_volumes,
            json!({"spec": {"volumes": volumes}}),
            "restricted volume types",
            concat!(
                r#"volumes "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10", "b11", "b12", "b13", "b14", "b15", "b16", "b17", "b18", "b19", "b20", "b21", "c1""#,
                " use restricted volume types ",
                r#""awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs", "#,
                r#""hostPath", "iscsi", "nfs", "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "unknown", "vsphereVolume""#
            ),
        );
    }

    #[test]
    fn restricted_volumes_singular_and_allowed() {
        expect_forbidden(
            restricted_volumes,
            json!({"spec": {"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}}),
            "restricted volume types",
            r#"volume "host" uses restricted volume type "hostPath""#,
        );
        expect_allowed(
            restricted_volumes,
            json!({"spec": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "configMap": {}}]}}),
        );
    }

    #[test]
    fn run_as_non_root_cases() {
        let cases = [
            (
                json!({"spec": {"containers": [{"name": "a"}]}}),
                r#"pod or container "a" must set securityContext.runAsNonRoot=true"#,
            ),
            (
                json!({"spec": {"securityContext": {"runAsNonRoot": false}, "containers": [{"name": "a"}]}}),
                "pod must not set securityContext.runAsNonRoot=false",
            ),
            (
                json!({"spec": {"securityContext": {"runAsNonRoot": true}, "containers": [
                    {"name": "a"},
                    {"name": "b", "securityContext": {}},
                    {"name": "c", "securityContext": {"runAsNonRoot": false}},
                    {"name": "d", "securityContext": {"runAsNonRoot": false}},
                    {"name": "e", "securityContext": {"runAsNonRoot": true}},
                    {"name": "f", "securityContext": {"runAsNonRoot": true}}]}}),
                r#"containers "c", "d" must not set securityContext.runAsNonRoot=false"#,
            ),
            (
                json!({"spec": {"containers": [
                    {"name": "a"},
                    {"name": "b", "securityContext": {}},
                    {"name": "d", "securityContext": {"runAsNonRoot": true}},
                    {"name": "e", "securityContext": {"runAsNonRoot": true}}]}}),
                r#"pod or containers "a", "b" must set securityContext.runAsNonRoot=true"#,
            ),
        ];
        for (pod, detail) in cases {
            expect_forbidden(run_as_non_root, pod, "runAsNonRoot != true", detail);
        }
        expect_allowed(
            run_as_non_root,
            json!({"spec": {"securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsNonRoot": true}}]}}),
        );
    }

    #[test]
    fn run_as_non_root_user_namespace_relaxation() {
        let user_namespace = json!({"spec": {"hostUsers": false, "containers": [{"name": "a"}]}});
        assert_eq!(
            check_pod(run_as_non_root, user_namespace.clone(), true),
            None
        );
        let expected = Violation::new(
            "runAsNonRoot != true",
            r#"pod or container "a" must set securityContext.runAsNonRoot=true"#,
        );
        assert_eq!(
            check_pod(run_as_non_root, user_namespace, false),
            Some(expected.clone())
        );
        let host_users = json!({"spec": {"hostUsers": true, "containers": [{"name": "a"}]}});
        assert_eq!(check_pod(run_as_non_root, host_users, true), Some(expected));
    }

    #[test]
    fn run_as_user_cases() {
        expect_forbidden(
            run_as_user,
            json!({"spec": {"securityContext": {"runAsUser": 0}, "containers": [{"name": "a"}]}}),
            "runAsUser=0",
            "pod must not set runAsUser=0",
        );
        expect_forbidden(
            run_as_user,
            json!({"spec": {"securityContext": {"runAsUser": 1000}, "containers": [
                {"name": "a"},
                {"name": "b", "securityContext": {}},
                {"name": "c", "securityContext": {"runAsUser": 0}},
                {"name": "d", "securityContext": {"runAsUser": 0}},
                {"name": "e", "securityContext": {"runAsUser": 1}},
                {"name": "f", "securityContext": {"runAsUser": 1}}]}}),
            "runAsUser=0",
            r#"containers "c", "d" must not set runAsUser=0"#,
        );
        expect_allowed(
            run_as_user,
            json!({"spec": {"securityContext": {"runAsUser": 1000}, "containers": [{"name": "a"}]}}),
        );
        expect_allowed(
            run_as_user,
            json!({"spec": {"containers": [{"name": "c", "securityContext": {"runAsUser": 1}}]}}),
        );
    }

    #[test]
    fn run_as_user_user_namespace_relaxation() {
        let root_pod = |host_users: bool| {
            json!({"spec": {"hostUsers": host_users,
                "securityContext": {"runAsUser": 0}, "containers": [{"name": "a"}]}})
        };
        assert_eq!(check_pod(run_as_user, root_pod(false), true), None);
        let expected = Violation::new("runAsUser=0", "pod must not set runAsUser=0");
        assert_eq!(
            check_pod(run_as_user, root_pod(true), true),
            Some(expected.clone())
        );
        assert_eq!(
            check_pod(run_as_user, root_pod(false), false),
            Some(expected)
        );
    }

    #[test]
    fn seccomp_profile_restricted_cases() {
        let containers = json!([
            {"name": "a"},
            {"name": "b", "securityContext": {}},
            {"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            {"name": "d", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            {"name": "e", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
            {"name": "f", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}]);
        let cases = [
            (
                json!({"spec": {"containers": [{"name": "a"}]}}),
                r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
            ),
            (
                json!({"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [{"name": "a"}]}}),
                r#"pod must not set securityContext.seccompProfile.type to "Unconfined""#,
            ),
            (
                json!({"spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": containers}}),
                r#"containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
            ),
            (
                json!({"spec": {"containers": [
                    {"name": "a"},
                    {"name": "b", "securityContext": {}},
                    {"name": "d", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
                    {"name": "e", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}]}}),
                r#"pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
            ),
        ];
        for (pod, detail) in cases {
            for check in [
                seccomp_profile_restricted_1_19,
                seccomp_profile_restricted_1_25,
            ] {
                expect_forbidden(check, pod.clone(), "seccompProfile", detail);
            }
        }
    }

    #[test]
    fn seccomp_profile_restricted_allows_pod_level_and_windows() {
        expect_allowed(
            seccomp_profile_restricted_1_19,
            json!({"spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "a"}, {"name": "b", "securityContext": {
                    "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}}]}}),
        );
        let windows = json!({"spec": {"os": {"name": "windows"}, "containers": [{"name": "a"}]}});
        expect_allowed(seccomp_profile_restricted_1_25, windows.clone());
        assert!(check_pod(seccomp_profile_restricted_1_19, windows, false).is_some());
    }
}
