//! The pod's /etc/hosts, as the Kubernetes kubelet manages it: a file per pod
//! (`<root>/pods/<uid>/etc-hosts`) with the loopback entries, the pod's own address under
//! its hostname (`<ip>\t<hostname>.<subdomain>.<ns>.svc.<domain>\t<hostname>` when the pod
//! has a `subdomain`, `<ip>\t<hostname>` otherwise) and the pod's `hostAliases`, mounted at
//! /etc/hosts in every container. hostNetwork pods, pods without an IP yet and containers
//! that mount /etc/hosts themselves keep the runtime's file.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::cri::proto;
use crate::cri_config;

/// Where a container sees the file.
pub const CONTAINER_PATH: &str = "/etc/hosts";
const HEADER: &str = "# Kubernetes-managed hosts file.\n";

/// The node file of pod `uid`.
pub fn host_file(root: &Path, uid: &str) -> PathBuf {
    cri_config::pod_dir(root, uid).join("etc-hosts")
}

/// The pod's hostname as the sandbox gets it: `spec.hostname`, else the pod's name, at
/// most 63 characters.
pub fn pod_hostname(pod: &Pod) -> String {
    let mut name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    name.truncate(63);
    name
}

/// The file's text for `pod` at `pod_ip` in cluster domain `domain`.
pub fn contents(pod: &Pod, pod_ip: &str, domain: &str) -> String {
    let mut out = String::from(HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
    let hostname = pod_hostname(pod);
    let spec = pod.spec.as_ref();
    let subdomain = spec.and_then(|s| s.subdomain.as_deref()).unwrap_or("");
    if subdomain.is_empty() {
        out.push_str(&format!("{pod_ip}\t{hostname}\n"));
    } else {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let fqdn = format!("{hostname}.{subdomain}.{ns}.svc.{domain}");
        out.push_str(&format!("{pod_ip}\t{fqdn}\t{hostname}\n"));
    }
    let aliases = spec.and_then(|s| s.host_aliases.as_deref()).unwrap_or(&[]);
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.as_deref().unwrap_or(&[]).join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    out
}

/// Whether the kubelet gives `container` of `pod` its managed file.
pub fn manages(pod: &Pod, container: &Container, pod_ip: Option<&str>) -> bool {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let own_mount = container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path.trim_end_matches('/') == CONTAINER_PATH);
    !host_network && !own_mount && pod_ip.is_some_and(|ip| !ip.is_empty())
}

/// The managed file's mount for `container`, written first; `None` where the runtime's file
/// stays (see [`manages`]).
pub fn mount_for(
    root: &Path,
    pod: &Pod,
    container: &Container,
    pod_ip: Option<&str>,
    domain: &str,
) -> std::io::Result<Option<proto::Mount>> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    match pod_ip {
        Some(ip) if manages(pod, container, pod_ip) && !uid.is_empty() => {
            write(root, pod, uid, ip, domain).map(Some)
        }
        _ => Ok(None),
    }
}

/// Writes the pod's file (atomically: a new file renamed over the old) and returns its
/// mount.
pub fn write(
    root: &Path,
    pod: &Pod,
    uid: &str,
    pod_ip: &str,
    domain: &str,
) -> std::io::Result<proto::Mount> {
    let file = host_file(root, uid);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, contents(pod, pod_ip, domain))?;
    std::fs::rename(&tmp, &file)?;
    Ok(proto::Mount {
        container_path: CONTAINER_PATH.into(),
        host_path: file.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostAlias, PodSpec, VolumeMount};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(hostname: Option<&str>, subdomain: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-7".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                hostname: hostname.map(Into::into),
                subdomain: subdomain.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hostname_and_subdomain_give_the_fully_qualified_name() {
        let text = contents(
            &pod(Some("db-0"), Some("db")),
            "10.244.1.5",
            "cluster.local",
        );
        assert!(text.starts_with(HEADER));
        assert!(text.contains("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.244.1.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n"));
    }

    #[test]
    fn without_subdomain_only_the_short_name_and_aliases_follow() {
        let mut p = pod(None, None);
        p.spec.as_mut().expect("spec").host_aliases = Some(vec![HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: Some(vec!["foo.local".into(), "bar".into()]),
        }]);
        let text = contents(&p, "10.244.1.6", "cluster.local");
        assert!(text.contains("10.244.1.6\tweb-7\n"), "{text}");
        assert!(text.ends_with("# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar\n"));
    }

    #[test]
    fn host_network_own_mounts_and_missing_ips_keep_the_runtime_file() {
        let c = Container::default();
        assert!(manages(&pod(None, None), &c, Some("10.244.1.5")));
        assert!(!manages(&pod(None, None), &c, None));
        let mut host = pod(None, None);
        host.spec.as_mut().expect("spec").host_network = Some(true);
        assert!(!manages(&host, &c, Some("10.0.0.1")));
        let own = Container {
            volume_mounts: Some(vec![VolumeMount {
                mount_path: "/etc/hosts".into(),
                name: "h".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(!manages(&pod(None, None), &own, Some("10.244.1.5")));
    }
}
