//! Translation of a Pod spec into CRI sandbox and container configurations (pure).

use std::collections::HashMap;
use std::path::Path;

use bpfk_common::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::cri::proto;
use crate::cri::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use crate::logs;
use crate::security_context;

/// Namespace, name and UID of a pod (`<ns>/<name>` for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    /// The pod's identity; None when the object lacks name or UID.
    pub fn of(pod: &Pod) -> Option<PodRef> {
        Some(PodRef {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone()?,
            uid: pod.metadata.uid.clone()?,
        })
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Labels identifying the pod on its sandbox and containers.
pub fn pod_labels(pod: &PodRef) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_POD_NAME.to_string(), pod.name.clone()),
        (LABEL_POD_NAMESPACE.to_string(), pod.namespace.clone()),
        (LABEL_POD_UID.to_string(), pod.uid.clone()),
    ])
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

fn namespace_options(pod: &Pod) -> proto::NamespaceOption {
    let network = if host_network(pod) {
        proto::NamespaceMode::Node
    } else {
        proto::NamespaceMode::Pod
    };
    proto::NamespaceOption {
        network: network as i32,
        // Kubernetes' default (shareProcessNamespace unset): one PID namespace per container
        pid: if pod
            .spec
            .as_ref()
            .and_then(|s| s.share_process_namespace)
            .unwrap_or(false)
        {
            proto::NamespaceMode::Pod as i32
        } else {
            proto::NamespaceMode::Container as i32
        },
        ipc: proto::NamespaceMode::Pod as i32,
        target_id: String::new(),
    }
}

/// The sandbox configuration of `pod` (attempt `attempt`).
pub fn sandbox_config(
    pod: &Pod,
    id: &PodRef,
    attempt: u32,
    log_root: &Path,
    cgroup_parent: &str,
    seccomp_root: &Path,
) -> proto::PodSandboxConfig {
    let spec = pod.spec.as_ref();
    let mut hostname = spec
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| id.name.clone());
    hostname.truncate(63);
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(pod_labels(id));
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: id.name.clone(),
            uid: id.uid.clone(),
            namespace: id.namespace.clone(),
            attempt,
        }),
        hostname: if host_network(pod) {
            String::new()
        } else {
            hostname
        },
        log_directory: logs::pod_log_dir(log_root, &id.namespace, &id.name, &id.uid)
            .display()
            .to_string(),
        dns_config: None,
        port_mappings: port_mappings(pod),
        labels,
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(proto::LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/pod{}", cgroup_parent.trim_end_matches('/'), id.uid),
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                ..security_context::for_sandbox(pod, seccomp_root)
            }),
            sysctls: Default::default(),
        }),
    }
}

/// Directory of the pod's volumes: `<root>/pods/<uid>/volumes`.
pub fn pod_dir(root: &Path, uid: &str) -> std::path::PathBuf {
    root.join("pods").join(uid)
}

/// Where an emptyDir volume lives on the node.
pub fn empty_dir_path(root: &Path, uid: &str, volume: &str) -> std::path::PathBuf {
    pod_dir(root, uid)
        .join("volumes/kubernetes.io~empty-dir")
        .join(volume)
}

/// A host directory a container mount needs (created before the container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDir {
    pub path: std::path::PathBuf,
    /// Create it when missing (emptyDir, hostPath DirectoryOrCreate).
    pub create: bool,
}

/// The CRI mounts of `container`'s volumeMounts and the host directories they need.
/// Supported volume types: emptyDir, hostPath and the API-backed ones of [`crate::volumes`];
/// anything else is an error naming it.
pub fn mounts(
    pod: &Pod,
    id: &PodRef,
    container: &Container,
    root: &Path,
) -> Result<(Vec<proto::Mount>, Vec<HostDir>), String> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v.name == m.name) else {
            return Err(format!(
                "volumeMounts {}: no volume named {:?} in the pod",
                m.mount_path, m.name
            ));
        };
        let (host, dir) = if volume.empty_dir.is_some() {
            let path = empty_dir_path(root, &id.uid, &volume.name);
            (path.clone(), Some(HostDir { path, create: true }))
        } else if let Some(hp) = &volume.host_path {
            let path = std::path::PathBuf::from(&hp.path);
            let create = hp.type_.as_deref() == Some("DirectoryOrCreate");
            let dir = (create || hp.type_.as_deref() == Some("Directory")).then(|| HostDir {
                path: path.clone(),
                create,
            });
            (path, dir)
        } else if let Some(dir) = crate::volumes::volume_dir(root, &id.uid, volume) {
            // written by the volume sync before any container starts
            (dir, None)
        } else {
            return Err(format!(
                "volume {:?}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes are supported by bpfk's kubelet",
                volume.name
            ));
        };
        let host = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
            Some(sub) if sub.split('/').any(|c| c == "..") || sub.starts_with('/') => {
                return Err(format!(
                    "volumeMounts {}: subPath {sub:?} must be a relative path without '..'",
                    m.mount_path
                ))
            }
            Some(sub) => host.join(sub),
            None => host,
        };
        if let Some(d) = dir {
            // with a subPath, the directory to create or check is the sub-directory
            dirs.push(HostDir {
                path: host.clone(),
                create: d.create,
            });
        }
        out.push(proto::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false),
            selinux_relabel: false,
            propagation: proto::MountPropagation::PropagationPrivate as i32,
        });
    }
    Ok((out, dirs))
}

/// CFS period the kubelet uses for CPU limits (100 ms).
pub const CPU_PERIOD_US: i64 = 100_000;

/// cgroup settings from the container's requests and limits, as the kubelet sets them:
/// cpu.shares from the CPU request (the limit when only a limit is set; 2 without either),
/// a CFS quota from the CPU limit, the memory limit in bytes. Unparsable quantities are
/// ignored (the API server validated them).
pub fn linux_resources(container: &Container) -> proto::LinuxContainerResources {
    let res = container.resources.as_ref();
    let get = |limits: bool, key: &str| {
        res.and_then(|r| {
            if limits {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        })
        .and_then(|m| m.get(key))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map(Quantity::as_f64)
    };
    let cpu_limit = get(true, "cpu");
    let cpu_request = get(false, "cpu").or(cpu_limit);
    let memory_limit = get(true, "memory");
    let mut out = proto::LinuxContainerResources {
        cpu_shares: cpu_request
            .map(|c| ((c * 1024.0).round() as i64).max(2))
            .unwrap_or(2),
        ..Default::default()
    };
    if let Some(limit) = cpu_limit.filter(|c| *c > 0.0) {
        out.cpu_period = CPU_PERIOD_US;
        // the kernel's minimum quota is 1 ms
        out.cpu_quota = ((limit * CPU_PERIOD_US as f64).ceil() as i64).max(1000);
    }
    if let Some(bytes) = memory_limit.filter(|m| *m > 0.0) {
        out.memory_limit_in_bytes = bytes as i64;
    }
    out
}

/// Port mappings of the pod's containers that ask for a host port.
pub fn port_mappings(pod: &Pod) -> Vec<proto::PortMapping> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| proto::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => proto::Protocol::Udp,
                Some("SCTP") => proto::Protocol::Sctp,
                _ => proto::Protocol::Tcp,
            } as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or_default(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect()
}

/// Kubernetes `$(VAR)` expansion: defined variables are replaced, `$$` is a literal `$`,
/// anything else stays as written.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The CRI configuration of `container` (attempt `attempt`) running image `image_id`.
/// What the kubelet prepared for one start of a container.
pub struct ContainerInputs<'a> {
    pub attempt: u32,
    /// The image as the runtime resolved it.
    pub image_id: &'a str,
    pub env: &'a [(String, String)],
    pub mounts: Vec<proto::Mount>,
    /// From [`security_context::for_container`]; namespaces are added here.
    pub security: proto::LinuxContainerSecurityContext,
}

pub fn container_config(
    pod: &Pod,
    id: &PodRef,
    container: &Container,
    inputs: ContainerInputs<'_>,
) -> proto::ContainerConfig {
    let ContainerInputs {
        attempt,
        image_id,
        env,
        mounts,
        security,
    } = inputs;
    let mut labels = pod_labels(id);
    labels.insert(LABEL_CONTAINER_NAME.into(), container.name.clone());
    proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: container.name.clone(),
            attempt,
        }),
        image: Some(proto::ImageSpec {
            image: image_id.into(),
            annotations: Default::default(),
        }),
        command: container
            .command
            .iter()
            .flatten()
            .map(|c| expand(c, env))
            .collect(),
        args: container
            .args
            .iter()
            .flatten()
            .map(|a| expand(a, env))
            .collect(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env
            .iter()
            .map(|(k, v)| proto::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts,
        labels,
        annotations: HashMap::from([(
            "io.kubernetes.container.restartCount".to_string(),
            attempt.to_string(),
        )]),
        log_path: logs::container_log_path(&container.name, attempt),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(proto::LinuxContainerConfig {
            resources: Some(linux_resources(container)),
            security_context: Some(proto::LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                ..security
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> (Pod, PodRef) {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-1".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        let id = PodRef::of(&pod).unwrap();
        (pod, id)
    }

    #[test]
    fn expansion() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        assert_eq!(expand("x$(A)y$(B)", &env), "x1ytwo");
        assert_eq!(expand("$$(A) $(C) $ $(", &env), "$(A) $(C) $ $(");
    }

    #[test]
    fn resources_and_ports() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}},
            "ports": [{"containerPort": 80}, {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"}]
        }))
        .unwrap();
        let r = linux_resources(&c);
        assert_eq!(
            (r.cpu_shares, r.cpu_period, r.cpu_quota),
            (256, 100_000, 50_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 64 * 1024 * 1024);
        let limit_only: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "resources": {"limits": {"cpu": "1"}}
        }))
        .unwrap();
        assert_eq!(linux_resources(&limit_only).cpu_shares, 1024);
        let best_effort = Container::default();
        let r = linux_resources(&best_effort);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
            (2, 0, 0)
        );
        let (mut pod, _) = pod();
        pod.spec.as_mut().unwrap().containers = vec![c];
        let m = port_mappings(&pod);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].container_port, m[0].host_port), (53, 5353));
        assert_eq!(m[0].protocol, proto::Protocol::Udp as i32);
    }

    #[test]
    fn volume_mounts() {
        let (mut pod, id) = pod();
        pod.spec = Some(
            serde_json::from_value(serde_json::json!({
                "containers": [],
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "host", "hostPath": {"path": "/srv/data", "type": "DirectoryOrCreate"}},
                    {"name": "cm", "configMap": {"name": "x"}},
                    {"name": "nfs", "nfs": {"server": "s", "path": "/"}},
                ]
            }))
            .unwrap(),
        );
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "volumeMounts": [
                {"name": "scratch", "mountPath": "/data"},
                {"name": "host", "mountPath": "/srv", "readOnly": true, "subPath": "a/b"},
            ]
        }))
        .unwrap();
        let (m, dirs) = mounts(&pod, &id, &c, Path::new("/k")).unwrap();
        assert_eq!(m[0].container_path, "/data");
        assert_eq!(
            m[0].host_path,
            "/k/pods/u-1/volumes/kubernetes.io~empty-dir/scratch"
        );
        assert_eq!(m[1].host_path, "/srv/data/a/b");
        assert!(m[1].readonly);
        assert_eq!(dirs.len(), 2);
        assert!(dirs.iter().all(|d| d.create));
        let cm: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "volumeMounts": [{"name": "cm", "mountPath": "/cm"},
                                          {"name": "cm", "mountPath": "/etc/app.conf", "subPath": "app.conf"}]
        }))
        .unwrap();
        let (m, dirs) = mounts(&pod, &id, &cm, Path::new("/k")).unwrap();
        assert_eq!(
            m[0].host_path,
            "/k/pods/u-1/volumes/kubernetes.io~configmap/cm"
        );
        assert_eq!(
            m[1].host_path,
            "/k/pods/u-1/volumes/kubernetes.io~configmap/cm/app.conf"
        );
        assert!(dirs.is_empty());
        let bad: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "volumeMounts": [{"name": "nfs", "mountPath": "/nfs"}]
        }))
        .unwrap();
        let err = mounts(&pod, &id, &bad, Path::new("/k")).unwrap_err();
        assert!(
            err.contains("\"nfs\"") && err.contains("only emptyDir, hostPath"),
            "{err}"
        );
        let missing: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]
        }))
        .unwrap();
        assert!(mounts(&pod, &id, &missing, Path::new("/k"))
            .unwrap_err()
            .contains("no volume named"));
        let escape: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "volumeMounts": [{"name": "scratch", "mountPath": "/x", "subPath": "../../etc"}]
        }))
        .unwrap();
        assert!(mounts(&pod, &id, &escape, Path::new("/k"))
            .unwrap_err()
            .contains("subPath"));
    }

    #[test]
    fn sandbox_and_container_configs() {
        let (pod, id) = pod();
        let sb = sandbox_config(&pod, &id, 2, Path::new("/logs"), "/bpfk", Path::new("/s"));
        let meta = sb.metadata.as_ref().unwrap();
        assert_eq!(
            (
                meta.name.as_str(),
                meta.namespace.as_str(),
                meta.uid.as_str(),
                meta.attempt
            ),
            ("web", "prod", "u-1", 2)
        );
        assert_eq!(sb.log_directory, "/logs/prod_web_u-1");
        assert_eq!(sb.hostname, "web");
        assert_eq!(sb.labels[LABEL_POD_UID], "u-1");
        assert_eq!(sb.labels["app"], "web");
        assert_eq!(sb.linux.as_ref().unwrap().cgroup_parent, "/bpfk/podu-1");
        let c = Container {
            name: "main".into(),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec!["echo $(A)".into()]),
            ..Default::default()
        };
        let env = [("A".into(), "x".into())];
        let inputs = ContainerInputs {
            attempt: 3,
            image_id: "sha256:abc",
            env: &env,
            mounts: Vec::new(),
            security: Default::default(),
        };
        let cc = container_config(&pod, &id, &c, inputs);
        assert_eq!(cc.args, ["echo x"]);
        assert_eq!(cc.log_path, "main/3.log");
        assert_eq!(cc.labels[LABEL_CONTAINER_NAME], "main");
        assert_eq!(cc.image.unwrap().image, "sha256:abc");
    }
}
