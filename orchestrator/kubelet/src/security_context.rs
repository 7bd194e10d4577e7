//! A pod's and its containers' `securityContext` as CRI security settings (pure): privilege,
//! capabilities, seccomp and AppArmor profiles, the masked and read-only `/proc` paths, users
//! and groups; and the runAsNonRoot check against the image's user, as the kubelet does them.

use std::path::Path;

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext,
};

use crate::cri::proto;
use crate::cri::proto::security_profile::ProfileType;

/// The directory under the kubelet's root holding Localhost seccomp profiles.
pub const SECCOMP_DIR: &str = "seccomp";

/// What a non-privileged container cannot read (the kubelet's default masked paths).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// What a non-privileged container can read but not write.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The annotation prefix of a container's AppArmor profile before the field existed.
const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn pod_context(pod: &Pod) -> Option<&PodSecurityContext> {
    pod.spec.as_ref()?.security_context.as_ref()
}

/// Whether any container of the pod (init ones included) runs privileged: the sandbox must
/// then be privileged too, or containerd refuses the container.
pub fn any_privileged(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let privileged = |sc: Option<&SecurityContext>| sc.and_then(|s| s.privileged) == Some(true);
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| privileged(c.security_context.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| privileged(c.security_context.as_ref()))
}

/// The sandbox's security settings: privileged when a container is, the pod's user, group
/// and seccomp profile (namespaces are the caller's).
pub fn for_sandbox(pod: &Pod, seccomp_root: &Path) -> proto::LinuxSandboxSecurityContext {
    let pod_sc = pod_context(pod);
    proto::LinuxSandboxSecurityContext {
        privileged: any_privileged(pod),
        run_as_user: pod_sc
            .and_then(|s| s.run_as_user)
            .map(|value| proto::Int64Value { value }),
        run_as_group: pod_sc
            .and_then(|s| s.run_as_group)
            .map(|value| proto::Int64Value { value }),
        supplemental_groups: supplemental_groups(pod_sc),
        seccomp: Some(seccomp(
            pod_sc.and_then(|s| s.seccomp_profile.as_ref()),
            seccomp_root,
        )),
        ..Default::default()
    }
}

/// A container's security settings, its own fields taking precedence over the pod's.
pub fn for_container(
    pod: &Pod,
    container: &Container,
    seccomp_root: &Path,
) -> proto::LinuxContainerSecurityContext {
    let pod_sc = pod_context(pod);
    let sc = container.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let unmasked = sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    let hidden = |paths: &[&str]| -> Vec<String> {
        if privileged || unmasked {
            Vec::new()
        } else {
            paths.iter().map(|p| p.to_string()).collect()
        }
    };
    let seccomp_profile = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or(pod_sc.and_then(|s| s.seccomp_profile.as_ref()));
    proto::LinuxContainerSecurityContext {
        capabilities: capabilities(sc),
        privileged,
        run_as_user: run_as_user(pod_sc, sc).map(|value| proto::Int64Value { value }),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or(pod_sc.and_then(|s| s.run_as_group))
            .map(|value| proto::Int64Value { value }),
        supplemental_groups: supplemental_groups(pod_sc),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        no_new_privs: !privileged && sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        masked_paths: hidden(&DEFAULT_MASKED_PATHS),
        readonly_paths: hidden(&DEFAULT_READONLY_PATHS),
        // a privileged container runs unconfined whatever it asks, as with the kubelet
        seccomp: Some(if privileged {
            unconfined()
        } else {
            seccomp(seccomp_profile, seccomp_root)
        }),
        apparmor: apparmor(pod, container),
        ..Default::default()
    }
}

fn run_as_user(pod_sc: Option<&PodSecurityContext>, sc: Option<&SecurityContext>) -> Option<i64> {
    sc.and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user))
}

/// The pod's supplemental groups and its fsGroup, as the kubelet adds them to every process.
fn supplemental_groups(pod_sc: Option<&PodSecurityContext>) -> Vec<i64> {
    let Some(sc) = pod_sc else {
        return Vec::new();
    };
    let mut groups = sc.supplemental_groups.clone().unwrap_or_default();
    groups.extend(sc.fs_group);
    groups
}

fn capabilities(sc: Option<&SecurityContext>) -> Option<proto::Capability> {
    let caps = sc?.capabilities.as_ref()?;
    Some(proto::Capability {
        add_capabilities: caps.add.clone().unwrap_or_default(),
        drop_capabilities: caps.drop.clone().unwrap_or_default(),
    })
}

fn unconfined() -> proto::SecurityProfile {
    proto::SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    }
}

/// The CRI seccomp profile: none asked means Unconfined (the kubelet's default without
/// `--seccomp-default`); Localhost profiles are files under the kubelet's `seccomp` directory.
fn seccomp(profile: Option<&SeccompProfile>, seccomp_root: &Path) -> proto::SecurityProfile {
    let Some(profile) = profile else {
        return unconfined();
    };
    match profile.type_.as_str() {
        "RuntimeDefault" => proto::SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        "Localhost" => proto::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: seccomp_root
                .join(profile.localhost_profile.as_deref().unwrap_or_default())
                .display()
                .to_string(),
        },
        _ => unconfined(),
    }
}

/// The container's AppArmor profile from its field, the pod's, or the older annotation; None
/// leaves the runtime's default.
fn apparmor(pod: &Pod, container: &Container) -> Option<proto::SecurityProfile> {
    let field = container
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.as_ref())
        .or(pod_context(pod).and_then(|s| s.app_armor_profile.as_ref()));
    if let Some(AppArmorProfile {
        type_,
        localhost_profile,
    }) = field
    {
        return Some(profile_of(
            type_,
            localhost_profile.as_deref().unwrap_or_default(),
        ));
    }
    let key = format!("{APPARMOR_ANNOTATION_PREFIX}{}", container.name);
    let value = pod.metadata.annotations.as_ref()?.get(&key)?;
    Some(match value.strip_prefix("localhost/") {
        Some(name) => profile_of("Localhost", name),
        None if value == "unconfined" => profile_of("Unconfined", ""),
        None => profile_of("RuntimeDefault", ""),
    })
}

fn profile_of(type_: &str, localhost: &str) -> proto::SecurityProfile {
    let (profile_type, localhost_ref) = match type_ {
        "Localhost" => (ProfileType::Localhost, localhost.to_string()),
        "Unconfined" => (ProfileType::Unconfined, String::new()),
        _ => (ProfileType::RuntimeDefault, String::new()),
    };
    proto::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    }
}

/// Whether the container must prove it does not run as root before it is created.
pub fn requires_non_root(pod: &Pod, container: &Container) -> bool {
    let sc = container.security_context.as_ref();
    sc.and_then(|s| s.run_as_non_root)
        .or(pod_context(pod).and_then(|s| s.run_as_non_root))
        .unwrap_or(false)
}

/// The kubelet's runAsNonRoot check: the user the container will run as (its runAsUser, else
/// the image's) must be known and not 0. `image` is the image's CRI status; `pod_display` is
/// the pod as the kubelet names it in messages (`name_namespace(uid)`).
pub fn verify_non_root(
    pod: &Pod,
    container: &Container,
    image: Option<&proto::Image>,
    pod_display: &str,
) -> Result<(), String> {
    if !requires_non_root(pod, container) {
        return Ok(());
    }
    let name = &container.name;
    let pod_sc = pod_context(pod);
    if let Some(uid) = run_as_user(pod_sc, container.security_context.as_ref()) {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod_display:?}, container: {name})"
            ));
        }
        return Ok(());
    }
    let uid = image.and_then(|i| i.uid.as_ref()).map(|u| u.value);
    let username = image.map(|i| i.username.as_str()).unwrap_or_default();
    match uid {
        Some(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_display:?}, container: {name})"
        )),
        Some(_) => Ok(()),
        None if !username.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({username}), cannot verify user is non-root (pod: {pod_display:?}, container: {name})"
        )),
        // an image that names no user runs as root
        None => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_display:?}, container: {name})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec}))
            .unwrap()
    }

    fn first(pod: &Pod) -> &Container {
        &pod.spec.as_ref().unwrap().containers[0]
    }

    #[test]
    fn a_privileged_container_makes_the_sandbox_privileged_and_runs_unmasked_unconfined() {
        let p = pod(json!({"containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {"privileged": true}}]}));
        let sandbox = for_sandbox(&p, Path::new("/seccomp"));
        assert!(sandbox.privileged);
        let b = for_container(&p, &p.spec.as_ref().unwrap().containers[1], Path::new("/s"));
        assert!(b.privileged && b.masked_paths.is_empty() && b.readonly_paths.is_empty());
        assert_eq!(
            b.seccomp.unwrap().profile_type,
            ProfileType::Unconfined as i32
        );
        let a = for_container(&p, first(&p), Path::new("/s"));
        assert!(!a.privileged);
        assert!(a.masked_paths.iter().any(|m| m == "/proc/kcore"));
        assert!(a.readonly_paths.iter().any(|m| m == "/proc/sys"));
        let plain = pod(json!({"containers": [{"name": "a"}]}));
        assert!(!for_sandbox(&plain, Path::new("/s")).privileged);
    }

    #[test]
    fn container_fields_override_the_pods() {
        let p = pod(json!({
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
                "supplementalGroups": [4000],
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {
                "runAsUser": 1001, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "audit.json"},
                "procMount": "Unmasked"}}]}));
        let c = for_container(&p, first(&p), Path::new("/var/lib/k/seccomp"));
        assert_eq!(c.run_as_user.unwrap().value, 1001);
        assert_eq!(c.run_as_group.unwrap().value, 3000);
        assert_eq!(c.supplemental_groups, [4000, 2000]);
        assert!(c.no_new_privs);
        let caps = c.capabilities.unwrap();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (
                vec!["NET_BIND_SERVICE".to_string()],
                vec!["ALL".to_string()]
            )
        );
        let seccomp = c.seccomp.unwrap();
        assert_eq!(seccomp.profile_type, ProfileType::Localhost as i32);
        assert_eq!(seccomp.localhost_ref, "/var/lib/k/seccomp/audit.json");
        assert!(c.masked_paths.is_empty(), "procMount Unmasked");
        let sandbox = for_sandbox(&p, Path::new("/s"));
        assert_eq!(
            sandbox.seccomp.unwrap().profile_type,
            ProfileType::RuntimeDefault as i32
        );
        assert_eq!(sandbox.run_as_user.unwrap().value, 1000);
    }

    #[test]
    fn no_profile_is_unconfined_and_apparmor_follows_field_or_annotation() {
        let p = pod(json!({"containers": [{"name": "a"}, {"name": "b",
            "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-deny"}}}]}));
        let a = for_container(&p, first(&p), Path::new("/s"));
        assert_eq!(
            a.seccomp.unwrap().profile_type,
            ProfileType::Unconfined as i32
        );
        assert!(a.apparmor.is_none());
        assert!(!a.no_new_privs, "allowPrivilegeEscalation unset allows it");
        let b = for_container(&p, &p.spec.as_ref().unwrap().containers[1], Path::new("/s"));
        assert_eq!(b.apparmor.unwrap().localhost_ref, "k8s-deny");
        let mut annotated = p.clone();
        annotated.metadata.annotations = Some(
            [(
                format!("{APPARMOR_ANNOTATION_PREFIX}a"),
                "unconfined".to_string(),
            )]
            .into(),
        );
        let a = for_container(&annotated, first(&annotated), Path::new("/s"));
        assert_eq!(
            a.apparmor.unwrap().profile_type,
            ProfileType::Unconfined as i32
        );
    }

    #[test]
    fn run_as_non_root_is_checked_against_the_user_that_will_run() {
        let image = |uid: Option<i64>, username: &str| proto::Image {
            uid: uid.map(|value| proto::Int64Value { value }),
            username: username.into(),
            ..Default::default()
        };
        let strict = pod(json!({"securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "web"}]}));
        let c = first(&strict);
        let who = "p_d(u1)";
        assert_eq!(
            verify_non_root(&strict, c, Some(&image(Some(0), "")), who).unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"p_d(u1)\", container: web)"
        );
        assert!(verify_non_root(&strict, c, Some(&image(None, "")), who).is_err());
        assert!(
            verify_non_root(&strict, c, Some(&image(None, "nginx")), who)
                .unwrap_err()
                .contains("non-numeric user (nginx)")
        );
        assert!(verify_non_root(&strict, c, Some(&image(Some(101), "")), who).is_ok());
        let as_root = pod(
            json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 0},
            "containers": [{"name": "web"}]}),
        );
        assert!(verify_non_root(&as_root, first(&as_root), None, who)
            .unwrap_err()
            .starts_with("container's runAsUser breaks non-root policy"));
        let as_user = pod(json!({"containers": [{"name": "web",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65534}}]}));
        assert!(verify_non_root(&as_user, first(&as_user), None, who).is_ok());
        let free = pod(json!({"containers": [{"name": "web"}]}));
        assert!(verify_non_root(&free, first(&free), Some(&image(Some(0), "")), who).is_ok());
    }
}
