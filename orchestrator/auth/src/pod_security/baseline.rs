//! The baseline checks of Kubernetes' Pod Security Standards (pod-security-admission
//! v1.33), each with the policy versions it applies from. They also run at the restricted
//! level unless a restricted check overrides them (see [`super::restricted`]).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::SELinuxOptions;

use super::helpers::{
    containers, containers_phrase, containers_where, go_quote, join_quote, pluralize, setter_list,
    setters, PodUnderCheck,
};
use super::registry::{Check, CheckVersion};
use super::Violation;

pub(super) const CAPABILITIES_BASELINE_ID: &str = "capabilities_baseline";
pub(super) const HOST_PATH_VOLUMES_ID: &str = "hostPathVolumes";
pub(super) const SECCOMP_BASELINE_ID: &str = "seccompProfile_baseline";

/// The baseline checks, sorted by ID: the order Kubernetes runs them in.
pub(super) const BASELINE_CHECKS: &[Check] = &[
    Check::new(
        "appArmorProfile",
        &[CheckVersion::new(0, app_armor_profile)],
    ),
    Check::new(
        CAPABILITIES_BASELINE_ID,
        &[CheckVersion::new(0, capabilities_baseline)],
    ),
    Check::new("hostNamespaces", &[CheckVersion::new(0, host_namespaces)]),
    Check::new(
        HOST_PATH_VOLUMES_ID,
        &[CheckVersion::new(0, host_path_volumes)],
    ),
    Check::new("hostPorts", &[CheckVersion::new(0, host_ports)]),
    Check::new("privileged", &[CheckVersion::new(0, privileged)]),
    Check::new("procMount", &[CheckVersion::new(0, proc_mount)]),
    Check::new(
        "seLinuxOptions",
        &[
            CheckVersion::new(0, se_linux_options_1_0),
            CheckVersion::new(31, se_linux_options_1_31),
        ],
    ),
    Check::new(
        SECCOMP_BASELINE_ID,
        &[
            CheckVersion::new(0, seccomp_annotations_baseline),
            CheckVersion::new(19, seccomp_profile_baseline),
        ],
    ),
    Check::new(
        "sysctls",
        &[
            CheckVersion::new(0, sysctls_1_0),
            CheckVersion::new(27, sysctls_1_27),
            CheckVersion::new(29, sysctls_1_29),
            CheckVersion::new(32, sysctls_1_32),
        ],
    ),
    Check::new(
        "windowsHostProcess",
        &[CheckVersion::new(0, windows_host_process)],
    ),
];

const APP_ARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn allowed_app_armor_annotation(profile: &str) -> bool {
    profile.is_empty() || profile == "runtime/default" || profile.starts_with("localhost/")
}

fn allowed_app_armor_type(profile_type: &str) -> bool {
    matches!(profile_type, "RuntimeDefault" | "Localhost")
}

/// The deprecated AppArmor annotations with a forbidden value, as sorted `key="value"`.
fn forbidden_app_armor_annotations(pod: &PodUnderCheck<'_>) -> Vec<String> {
    let mut forbidden: Vec<String> = pod
        .annotations()
        .filter(|(key, value)| {
            key.starts_with(APP_ARMOR_ANNOTATION_PREFIX) && !allowed_app_armor_annotation(value)
        })
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect();
    forbidden.sort();
    forbidden
}

/// AppArmor: `appArmorProfile.type` of the pod and its containers must be
/// `RuntimeDefault` or `Localhost`, and the deprecated per-container annotations
/// `runtime/default`, `localhost/*` or empty.
fn app_armor_profile(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let mut bad_values = BTreeSet::new();
    let pod_profile = pod.spec.security_context.as_ref();
    let pod_profile = pod_profile.and_then(|sc| sc.app_armor_profile.as_ref());
    let pod_is_bad = pod_profile.is_some_and(|p| !allowed_app_armor_type(&p.type_));
    if let Some(profile) = pod_profile.filter(|_| pod_is_bad) {
        bad_values.insert(profile.type_.as_str());
    }
    let mut bad_containers = Vec::new();
    for container in containers(pod.spec) {
        let profile = container
            .security_context
            .and_then(|sc| sc.app_armor_profile.as_ref());
        if let Some(profile) = profile.filter(|p| !allowed_app_armor_type(&p.type_)) {
            bad_containers.push(container.name);
            bad_values.insert(profile.type_.as_str());
        }
    }
    let forbidden_annotations = forbidden_app_armor_annotations(pod);
    let mut who = setter_list(pod_is_bad, &bad_containers);
    let mut bad_value_list: Vec<String> = bad_values.into_iter().map(str::to_string).collect();
    if !forbidden_annotations.is_empty() {
        who.push(pluralize("annotation", "annotations", forbidden_annotations.len()).into());
        bad_value_list.extend(forbidden_annotations);
    }
    if who.is_empty() {
        return None;
    }
    let reason = pluralize(
        "forbidden AppArmor profile",
        "forbidden AppArmor profiles",
        bad_value_list.len(),
    );
    let detail = format!(
        "{} must not set AppArmor profile type to {}",
        who.join(" and "),
        join_quote(&bad_value_list)
    );
    Some(Violation::new(reason, detail))
}

/// The capabilities a container runtime grants by default; adding others is forbidden.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Capabilities: `capabilities.add` may only hold the default capabilities.
fn capabilities_baseline(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let mut non_default = BTreeSet::new();
    let bad_containers = containers_where(pod.spec, |c| {
        let added = c.security_context.and_then(|sc| sc.capabilities.as_ref());
        let added = added
            .and_then(|caps| caps.add.as_deref())
            .unwrap_or_default();
        let mut is_bad = false;
        for capability in added
            .iter()
            .filter(|c| !DEFAULT_CAPABILITIES.contains(&c.as_str()))
        {
            non_default.insert(capability.as_str());
            is_bad = true;
        }
        is_bad
    });
    if bad_containers.is_empty() {
        return None;
    }
    let non_default: Vec<&str> = non_default.into_iter().collect();
    let detail = format!(
        "{} must not include {} in securityContext.capabilities.add",
        containers_phrase(&bad_containers),
        join_quote(&non_default)
    );
    Some(Violation::new("non-default capabilities", detail))
}

/// Host namespaces: `hostNetwork`, `hostPID` and `hostIPC` must be unset or false.
fn host_namespaces(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let spec = pod.spec;
    let shared = [
        (spec.host_network, "hostNetwork=true"),
        (spec.host_pid, "hostPID=true"),
        (spec.host_ipc, "hostIPC=true"),
    ];
    let shared: Vec<&str> = shared
        .into_iter()
        .filter(|(set, _)| *set == Some(true))
        .map(|(_, name)| name)
        .collect();
    (!shared.is_empty()).then(|| Violation::new("host namespaces", shared.join(", ")))
}

/// HostPath volumes are forbidden.
fn host_path_volumes(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let host_volumes: Vec<&str> = pod
        .spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if host_volumes.is_empty() {
        return None;
    }
    let detail = format!(
        "{} {}",
        pluralize("volume", "volumes", host_volumes.len()),
        join_quote(&host_volumes)
    );
    Some(Violation::new("hostPath volumes", detail))
}

/// Host ports: every `ports[*].hostPort` must be unset or 0.
fn host_ports(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    // Sorted as strings, as Kubernetes' string set sorts them.
    let mut forbidden_ports = BTreeSet::new();
    let bad_containers = containers_where(pod.spec, |c| {
        let mut is_bad = false;
        for port in c
            .ports
            .iter()
            .filter_map(|p| p.host_port)
            .filter(|&p| p != 0)
        {
            forbidden_ports.insert(port.to_string());
            is_bad = true;
        }
        is_bad
    });
    if bad_containers.is_empty() {
        return None;
    }
    let forbidden_ports: Vec<String> = forbidden_ports.into_iter().collect();
    let detail = format!(
        "{} {} {} {}",
        containers_phrase(&bad_containers),
        pluralize("uses", "use", bad_containers.len()),
        pluralize("hostPort", "hostPorts", forbidden_ports.len()),
        forbidden_ports.join(", ")
    );
    Some(Violation::new("hostPort", detail))
}

/// Privileged containers are forbidden.
fn privileged(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let bad_containers = containers_where(pod.spec, |c| {
        c.security_context.and_then(|sc| sc.privileged) == Some(true)
    });
    if bad_containers.is_empty() {
        return None;
    }
    let detail = format!(
        "{} must not set securityContext.privileged=true",
        containers_phrase(&bad_containers)
    );
    Some(Violation::new("privileged", detail))
}

/// procMount must be unset or `Default`; with the user-namespace relaxation a pod with
/// `hostUsers: false` may set any value.
fn proc_mount(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    if pod.relaxed_for_user_namespace() {
        return None;
    }
    let mut forbidden_types = BTreeSet::new();
    let bad_containers = containers_where(pod.spec, |c| {
        let proc_mount = c.security_context.and_then(|sc| sc.proc_mount.as_deref());
        let Some(forbidden) = proc_mount.filter(|value| *value != "Default") else {
            return false;
        };
        forbidden_types.insert(forbidden);
        true
    });
    if bad_containers.is_empty() {
        return None;
    }
    let forbidden_types: Vec<&str> = forbidden_types.into_iter().collect();
    let detail = format!(
        "{} must not set securityContext.procMount to {}",
        containers_phrase(&bad_containers),
        join_quote(&forbidden_types)
    );
    Some(Violation::new("procMount", detail))
}

const SE_LINUX_TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const SE_LINUX_TYPES_1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux_options_1_0(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    se_linux_options(pod, SE_LINUX_TYPES_1_0)
}

fn se_linux_options_1_31(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    se_linux_options(pod, SE_LINUX_TYPES_1_31)
}

/// What was wrong in the seLinuxOptions seen so far.
#[derive(Default)]
struct SeLinuxFindings<'a> {
    bad_types: BTreeSet<&'a str>,
    user_set: bool,
    role_set: bool,
}

impl<'a> SeLinuxFindings<'a> {
    /// Records what `options` gets wrong; whether it is acceptable.
    fn accepts(&mut self, options: &'a SELinuxOptions, allowed_types: &[&str]) -> bool {
        let selinux_type = options.type_.as_deref().unwrap_or_default();
        let type_ok = allowed_types.contains(&selinux_type);
        if !type_ok {
            self.bad_types.insert(selinux_type);
        }
        let user_set = options.user.as_deref().is_some_and(|u| !u.is_empty());
        let role_set = options.role.as_deref().is_some_and(|r| !r.is_empty());
        self.user_set |= user_set;
        self.role_set |= role_set;
        type_ok && !user_set && !role_set
    }

    /// `types "bar", "foo"; user may not be set; role may not be set`
    fn describe(&self) -> String {
        let mut problems = Vec::new();
        if !self.bad_types.is_empty() {
            let bad_types: Vec<&str> = self.bad_types.iter().copied().collect();
            let noun = pluralize("type", "types", bad_types.len());
            problems.push(format!("{noun} {}", join_quote(&bad_types)));
        }
        if self.user_set {
            problems.push("user may not be set".to_string());
        }
        if self.role_set {
            problems.push("role may not be set".to_string());
        }
        problems.join("; ")
    }
}

/// SELinux: the type must be one of `allowed_types`; user and role must not be set.
fn se_linux_options(pod: &PodUnderCheck<'_>, allowed_types: &[&str]) -> Option<Violation> {
    let mut findings = SeLinuxFindings::default();
    let pod_options = pod.spec.security_context.as_ref();
    let pod_options = pod_options.and_then(|sc| sc.se_linux_options.as_ref());
    let pod_is_bad = pod_options.is_some_and(|o| !findings.accepts(o, allowed_types));
    let bad_containers = containers_where(pod.spec, |c| {
        let options = c
            .security_context
            .and_then(|sc| sc.se_linux_options.as_ref());
        options.is_some_and(|o| !findings.accepts(o, allowed_types))
    });
    let who = setters(pod_is_bad, &bad_containers)?;
    let detail = format!(
        "{who} set forbidden securityContext.seLinuxOptions: {}",
        findings.describe()
    );
    Some(Violation::new("seLinuxOptions", detail))
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn allowed_seccomp_annotation(value: &str) -> bool {
    value == "runtime/default" || value == "docker/default" || value.starts_with("localhost/")
}

/// Whether a `seccompProfile.type` is `RuntimeDefault` or `Localhost`.
pub(super) fn allowed_seccomp_type(profile_type: &str) -> bool {
    matches!(profile_type, "RuntimeDefault" | "Localhost")
}

/// Seccomp before v1.19: the alpha annotations of the pod and of each container must be
/// `runtime/default`, `docker/default` or `localhost/*`.
fn seccomp_annotations_baseline(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let mut keys = vec![SECCOMP_POD_ANNOTATION.to_string()];
    keys.extend(
        containers(pod.spec).map(|c| format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", c.name)),
    );
    let forbidden: BTreeSet<String> = keys
        .iter()
        .filter_map(|key| pod.annotation(key).map(|value| (key, value)))
        .filter(|(_, value)| !allowed_seccomp_annotation(value))
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    let forbidden: Vec<String> = forbidden.into_iter().collect();
    let detail = format!(
        "forbidden {} {}",
        pluralize("annotation", "annotations", forbidden.len()),
        forbidden.join(", ")
    );
    Some(Violation::new("seccompProfile", detail))
}

/// Seccomp from v1.19: a `seccompProfile.type` the pod or a container sets must be
/// `RuntimeDefault` or `Localhost`.
fn seccomp_profile_baseline(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let mut bad_values = BTreeSet::new();
    let pod_profile = pod.spec.security_context.as_ref();
    let pod_profile = pod_profile.and_then(|sc| sc.seccomp_profile.as_ref());
    let pod_is_bad = pod_profile.is_some_and(|p| !allowed_seccomp_type(&p.type_));
    if let Some(profile) = pod_profile.filter(|_| pod_is_bad) {
        bad_values.insert(profile.type_.as_str());
    }
    let bad_containers = containers_where(pod.spec, |c| {
        let profile = c
            .security_context
            .and_then(|sc| sc.seccomp_profile.as_ref());
        let Some(profile) = profile.filter(|p| !allowed_seccomp_type(&p.type_)) else {
            return false;
        };
        bad_values.insert(profile.type_.as_str());
        true
    });
    let who = setters(pod_is_bad, &bad_containers)?;
    let bad_values: Vec<&str> = bad_values.into_iter().collect();
    let detail = format!(
        "{who} must not set securityContext.seccompProfile.type to {}",
        join_quote(&bad_values)
    );
    Some(Violation::new("seccompProfile", detail))
}

/// The safe sysctls, each with the policy minor version that first allows it.
const SAFE_SYSCTLS: &[(&str, u32)] = &[
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
];

fn sysctls_1_0(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    forbidden_sysctls(pod, 0)
}

fn sysctls_1_27(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    forbidden_sysctls(pod, 27)
}

fn sysctls_1_29(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    forbidden_sysctls(pod, 29)
}

fn sysctls_1_32(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    forbidden_sysctls(pod, 32)
}

/// Sysctls: only the safe set of policy version 1.`minor` may be set.
fn forbidden_sysctls(pod: &PodUnderCheck<'_>, minor: u32) -> Option<Violation> {
    let is_safe = |name: &str| {
        SAFE_SYSCTLS
            .iter()
            .any(|&(safe, since)| safe == name && since <= minor)
    };
    let sysctls = pod.spec.security_context.as_ref();
    let sysctls = sysctls
        .and_then(|sc| sc.sysctls.as_deref())
        .unwrap_or_default();
    let forbidden: Vec<&str> = sysctls
        .iter()
        .map(|s| s.name.as_str())
        .filter(|name| !is_safe(name))
        .collect();
    (!forbidden.is_empty()).then(|| Violation::new("forbidden sysctls", forbidden.join(", ")))
}

/// Windows HostProcess: neither the pod nor a container may set
/// `windowsOptions.hostProcess=true`.
fn windows_host_process(pod: &PodUnderCheck<'_>) -> Option<Violation> {
    let bad_containers = containers_where(pod.spec, |c| {
        let options = c
            .security_context
            .and_then(|sc| sc.windows_options.as_ref());
        options.and_then(|o| o.host_process) == Some(true)
    });
    let pod_options = pod.spec.security_context.as_ref();
    let pod_options = pod_options.and_then(|sc| sc.windows_options.as_ref());
    let pod_is_bad = pod_options.and_then(|o| o.host_process) == Some(true);
    let who = setters(pod_is_bad, &bad_containers)?;
    let detail = format!("{who} must not set securityContext.windowsOptions.hostProcess=true");
    Some(Violation::new("hostProcess", detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_security::helpers::test_support::{check_pod, expect_allowed, expect_forbidden};
    use crate::pod_security::helpers::CheckFn;
    use serde_json::json;

    #[test]
    fn app_armor_allows_default_and_localhost() {
        for pod in [
            json!({"metadata": {"annotations": {
                "container.apparmor.security.beta.kubernetes.io/test": "runtime/default",
                "env": "prod"}}}),
            json!({"metadata": {"annotations": {
                "container.apparmor.security.beta.kubernetes.io/test": "localhost/sec-profile01",
                "env": "dev"}}}),
            json!({"metadata": {"annotations": {"env": "dev"}}}),
            json!({}),
            json!({"spec": {"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}}),
            json!({"spec": {"containers": [{"name": "foo",
                "securityContext": {"appArmorProfile": {"type": "Localhost"}}}]}}),
        ] {
            expect_allowed(app_armor_profile, pod);
        }
    }

    #[test]
    fn app_armor_forbids_unconfined_pod_and_containers() {
        expect_forbidden(
            app_armor_profile,
            json!({"spec": {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}}),
            "forbidden AppArmor profile",
            r#"pod must not set AppArmor profile type to "Unconfined""#,
        );
        expect_forbidden(
            app_armor_profile,
            json!({"spec": {
                "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "foo"}],
                "initContainers": [{"name": "bar",
                    "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]}}),
            "forbidden AppArmor profile",
            r#"container "bar" must not set AppArmor profile type to "Unconfined""#,
        );
    }

    #[test]
    fn app_armor_forbids_bad_annotations() {
        expect_forbidden(
            app_armor_profile,
            json!({"metadata": {"annotations": {
                "container.apparmor.security.beta.kubernetes.io/": "bogus",
                "container.apparmor.security.beta.kubernetes.io/a": "",
                "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
                "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
                "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
                "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
                "container.apparmor.security.beta.kubernetes.io/f": "unknown"}}}),
            "forbidden AppArmor profiles",
            concat!(
                "annotations must not set AppArmor profile type to ",
                r#""container.apparmor.security.beta.kubernetes.io/="bogus"", "#,
                r#""container.apparmor.security.beta.kubernetes.io/e="unconfined"", "#,
                r#""container.apparmor.security.beta.kubernetes.io/f="unknown"""#
            ),
        );
    }

    #[test]
    fn app_armor_joins_fields_and_annotations() {
        expect_forbidden(
            app_armor_profile,
            json!({
                "metadata": {"annotations": {
                    "container.apparmor.security.beta.kubernetes.io/a": "unconfined"}},
                "spec": {
                    "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                    "ephemeralContainers": [{"name": "debug",
                        "securityContext": {"appArmorProfile": {"type": "Bogus"}}}]}}),
            "forbidden AppArmor profiles",
            concat!(
                r#"pod and container "debug" and annotation must not set AppArmor profile type to "#,
                r#""Bogus", "Unconfined", "#,
                r#""container.apparmor.security.beta.kubernetes.io/a="unconfined"""#
            ),
        );
    }

    #[test]
    fn capabilities_baseline_allows_default_set() {
        expect_allowed(
            capabilities_baseline,
            json!({"spec": {"containers": [{"name": "a", "securityContext": {"capabilities": {
                "add": ["NET_BIND_SERVICE", "CHOWN", "SYS_CHROOT"], "drop": ["ALL"]}}}]}}),
        );
    }

    #[test]
    fn capabilities_baseline_forbids_others() {
        expect_forbidden(
            capabilities_baseline,
            json!({"spec": {"containers": [
                {"name": "a", "securityContext": {"capabilities": {"add": ["FOO", "BAR"]}}},
                {"name": "b", "securityContext": {"capabilities": {"add": ["BAR", "BAZ"]}}}]}}),
            "non-default capabilities",
            r#"containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add"#,
        );
    }

    #[test]
    fn host_namespaces_allows_unset_and_false() {
        expect_allowed(host_namespaces, json!({"spec": {"hostNetwork": false}}));
    }

    #[test]
    fn host_namespaces_forbids_each_shared_namespace() {
        expect_forbidden(
            host_namespaces,
            json!({"spec": {"hostNetwork": true, "hostIPC": true, "hostPID": true}}),
            "host namespaces",
            "hostNetwork=true, hostPID=true, hostIPC=true",
        );
    }

    #[test]
    fn host_path_volumes_allows_other_volumes() {
        expect_allowed(
            host_path_volumes,
            json!({"spec": {"volumes": [{"name": "c", "emptyDir": {}}]}}),
        );
    }

    #[test]
    fn host_path_volumes_forbids_host_path() {
        expect_forbidden(
            host_path_volumes,
            json!({"spec": {"volumes": [
                {"name": "a", "hostPath": {"path": "/a"}},
                {"name": "b", "hostPath": {"path": "/b"}},
                {"name": "c", "emptyDir": {}}]}}),
            "hostPath volumes",
            r#"volumes "a", "b""#,
        );
    }

    #[test]
    fn host_ports_allows_zero() {
        expect_allowed(
            host_ports,
            json!({"spec": {"containers": [{"name": "a",
                "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 0}]}]}}),
        );
    }

    #[test]
    fn host_ports_forbids_host_ports() {
        expect_forbidden(
            host_ports,
            json!({"spec": {"containers": [
                {"name": "a", "ports": [{"containerPort": 1, "hostPort": 0}]},
                {"name": "b", "ports": [{"containerPort": 1}, {"containerPort": 2, "hostPort": 20}]}]}}),
            "hostPort",
            r#"container "b" uses hostPort 20"#,
        );
        expect_forbidden(
            host_ports,
            json!({"spec": {"containers": [
                {"name": "a", "ports": [{"containerPort": 1}]},
                {"name": "b", "ports": [{"containerPort": 1, "hostPort": 10}, {"containerPort": 2, "hostPort": 20}]},
                {"name": "c", "ports": [{"containerPort": 1, "hostPort": 10}, {"containerPort": 2, "hostPort": 30}]}]}}),
            "hostPort",
            r#"containers "b", "c" use hostPorts 10, 20, 30"#,
        );
    }

    #[test]
    fn privileged_allows_unset_and_false() {
        expect_allowed(
            privileged,
            json!({"spec": {"containers": [{"name": "a"},
                {"name": "c", "securityContext": {"privileged": false}}]}}),
        );
    }

    #[test]
    fn privileged_forbids_true() {
        expect_forbidden(
            privileged,
            json!({"spec": {"containers": [
                {"name": "a"},
                {"name": "b", "securityContext": {}},
                {"name": "c", "securityContext": {"privileged": false}},
                {"name": "d", "securityContext": {"privileged": true}},
                {"name": "e", "securityContext": {"privileged": true}}]}}),
            "privileged",
            r#"containers "d", "e" must not set securityContext.privileged=true"#,
        );
    }

    fn proc_mount_pod() -> serde_json::Value {
        json!({"spec": {"hostUsers": false, "containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {}},
            {"name": "c", "securityContext": {"procMount": "Default"}},
            {"name": "d", "securityContext": {"procMount": "Unmasked"}},
            {"name": "e", "securityContext": {"procMount": "other"}}]}})
    }

    #[test]
    fn proc_mount_forbids_non_default_without_relaxation() {
        expect_forbidden(
            proc_mount,
            proc_mount_pod(),
            "procMount",
            r#"containers "d", "e" must not set securityContext.procMount to "Unmasked", "other""#,
        );
    }

    #[test]
    fn proc_mount_allows_any_in_user_namespace_when_relaxed() {
        assert_eq!(check_pod(proc_mount, proc_mount_pod(), true), None);
        expect_allowed(
            proc_mount,
            json!({"spec": {"containers": [{"name": "c", "securityContext": {"procMount": "Default"}}]}}),
        );
    }

    fn se_linux_pod() -> serde_json::Value {
        json!({"spec": {
            "securityContext": {"seLinuxOptions": {"type": "foo", "user": "bar", "role": "baz"}},
            "containers": [
                {"name": "a", "securityContext": {"seLinuxOptions": {"type": "container_t"}}},
                {"name": "b", "securityContext": {"seLinuxOptions": {"type": "container_init_t"}}},
                {"name": "c", "securityContext": {"seLinuxOptions": {"type": "container_kvm_t"}}},
                {"name": "d", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}},
                {"name": "e", "securityContext": {"seLinuxOptions": {"type": "bar"}}},
                {"name": "f", "securityContext": {"seLinuxOptions": {"user": "bar"}}},
                {"name": "g", "securityContext": {"seLinuxOptions": {"role": "baz"}}}]}})
    }

    #[test]
    fn se_linux_options_1_31_reports_pod_and_containers() {
        expect_forbidden(
            se_linux_options_1_31,
            se_linux_pod(),
            "seLinuxOptions",
            r#"pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#,
        );
    }

    #[test]
    fn se_linux_options_1_0_forbids_container_engine_t() {
        expect_forbidden(
            se_linux_options_1_0,
            se_linux_pod(),
            "seLinuxOptions",
            r#"pod and containers "d", "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "container_engine_t", "foo"; user may not be set; role may not be set"#,
        );
    }

    #[test]
    fn se_linux_options_single_problems() {
        let cases = [
            (
                json!({"type": "bad"}),
                r#"pod set forbidden securityContext.seLinuxOptions: type "bad""#,
            ),
            (
                json!({"user": "bad"}),
                "pod set forbidden securityContext.seLinuxOptions: user may not be set",
            ),
            (
                json!({"role": "bad"}),
                "pod set forbidden securityContext.seLinuxOptions: role may not be set",
            ),
        ];
        for (options, detail) in cases {
            let pod = json!({"spec": {"securityContext": {"seLinuxOptions": options}}});
            expect_forbidden(se_linux_options_1_31, pod, "seLinuxOptions", detail);
        }
    }

    #[test]
    fn se_linux_options_allows_container_types_and_level() {
        expect_allowed(
            se_linux_options_1_31,
            json!({"spec": {"securityContext": {"seLinuxOptions": {"level": "s0:c1"}},
                "containers": [{"name": "d", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}]}}),
        );
    }

    #[test]
    fn seccomp_annotations_forbid_unconfined() {
        expect_forbidden(
            seccomp_annotations_baseline,
            json!({"metadata": {"annotations": {
                "seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}}),
            "seccompProfile",
            r#"forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined""#,
        );
        expect_forbidden(
            seccomp_annotations_baseline,
            json!({
                "metadata": {"annotations": {
                    "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
                    "container.seccomp.security.alpha.kubernetes.io/a": "unconfined",
                    "container.seccomp.security.alpha.kubernetes.io/b": "unknown"}},
                "spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
            "seccompProfile",
            concat!(
                r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/a="unconfined", "#,
                r#"container.seccomp.security.alpha.kubernetes.io/b="unknown", "#,
                r#"seccomp.security.alpha.kubernetes.io/pod="unconfined""#
            ),
        );
    }

    #[test]
    fn seccomp_annotations_allow_default_and_localhost() {
        expect_allowed(
            seccomp_annotations_baseline,
            json!({
                "metadata": {"annotations": {
                    "seccomp.security.alpha.kubernetes.io/pod": "docker/default",
                    "container.seccomp.security.alpha.kubernetes.io/a": "localhost/prof",
                    "container.seccomp.security.alpha.kubernetes.io/gone": "unconfined"}},
                "spec": {"containers": [{"name": "a"}]}}),
        );
    }

    #[test]
    fn seccomp_profile_baseline_forbids_unconfined() {
        let containers = json!([
            {"name": "a"},
            {"name": "b", "securityContext": {}},
            {"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            {"name": "d", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            {"name": "e", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
            {"name": "f", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}]);
        expect_forbidden(
            seccomp_profile_baseline,
            json!({"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                "containers": [{"name": "a"}]}}),
            "seccompProfile",
            r#"pod must not set securityContext.seccompProfile.type to "Unconfined""#,
        );
        expect_forbidden(
            seccomp_profile_baseline,
            json!({"spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": containers}}),
            "seccompProfile",
            r#"containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
        );
        expect_forbidden(
            seccomp_profile_baseline,
            json!({"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                "containers": containers}}),
            "seccompProfile",
            r#"pod and containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
        );
    }

    #[test]
    fn seccomp_profile_baseline_allows_unset() {
        expect_allowed(
            seccomp_profile_baseline,
            json!({"spec": {"containers": [{"name": "a",
                "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p"}}}]}}),
        );
    }

    fn sysctl_pod(name: &str) -> serde_json::Value {
        json!({"spec": {"securityContext": {"sysctls": [{"name": name, "value": "1"}]}}})
    }

    #[test]
    fn sysctls_forbid_unsafe_names_in_order() {
        for check in [sysctls_1_0, sysctls_1_27, sysctls_1_29, sysctls_1_32] {
            expect_forbidden(
                check,
                json!({"spec": {"securityContext": {"sysctls": [{"name": "b"}, {"name": "a"}]}}}),
                "forbidden sysctls",
                "b, a",
            );
        }
    }

    #[test]
    fn sysctls_safe_set_grows_by_version() {
        let added = [
            ("net.ipv4.ip_local_reserved_ports", 27),
            ("net.ipv4.tcp_keepalive_time", 29),
            ("net.ipv4.tcp_fin_timeout", 29),
            ("net.ipv4.tcp_keepalive_intvl", 29),
            ("net.ipv4.tcp_keepalive_probes", 29),
            ("net.ipv4.tcp_rmem", 32),
            ("net.ipv4.tcp_wmem", 32),
        ];
        let versions: [(u32, CheckFn); 4] = [
            (0, sysctls_1_0),
            (27, sysctls_1_27),
            (29, sysctls_1_29),
            (32, sysctls_1_32),
        ];
        for (name, since) in added {
            for (minor, check) in versions {
                let result = check_pod(check, sysctl_pod(name), false);
                if minor >= since {
                    assert_eq!(result, None, "{name} at 1.{minor}");
                } else {
                    let expected = Violation::new("forbidden sysctls", name);
                    assert_eq!(result, Some(expected), "{name} at 1.{minor}");
                }
            }
        }
        expect_allowed(
            sysctls_1_0,
            sysctl_pod("net.ipv4.ip_unprivileged_port_start"),
        );
    }

    #[test]
    fn windows_host_process_forbids_pod_and_containers() {
        expect_forbidden(
            windows_host_process,
            json!({"spec": {
                "securityContext": {"windowsOptions": {"hostProcess": true}},
                "containers": [
                    {"name": "a"},
                    {"name": "b", "securityContext": {}},
                    {"name": "c", "securityContext": {"windowsOptions": {}}},
                    {"name": "d", "securityContext": {"windowsOptions": {"hostProcess": false}}},
                    {"name": "e", "securityContext": {"windowsOptions": {"hostProcess": true}}},
                    {"name": "f", "securityContext": {"windowsOptions": {"hostProcess": true}}}]}}),
            "hostProcess",
            r#"pod and containers "e", "f" must not set securityContext.windowsOptions.hostProcess=true"#,
        );
    }

    #[test]
    fn windows_host_process_allows_false() {
        expect_allowed(
            windows_host_process,
            json!({"spec": {"securityContext": {"windowsOptions": {"hostProcess": false}},
                "containers": [{"name": "a"}]}}),
        );
    }
}
