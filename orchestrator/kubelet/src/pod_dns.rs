//! A pod's resolv.conf (the sandbox's CRI `DNSConfig`) by its `dnsPolicy`, as the kubelet
//! makes it:
//!
//! * `ClusterFirst` (the default): the cluster DNS (`--cluster-dns`), searching
//!   `<ns>.svc.<domain> svc.<domain> <domain>` and then the node's search domains,
//!   `options ndots:5`; a hostNetwork pod gets the node's file instead;
//! * `ClusterFirstWithHostNet`: the same, for hostNetwork pods too;
//! * `Default`: the node's resolv.conf (`--resolv-conf`);
//! * `None`: nothing but the pod's `dnsConfig`.
//!
//! `spec.dnsConfig` is merged in last: its nameservers and searches are appended, its options
//! replace those of the same name. At most 3 nameservers and 32 search domains are kept.

use std::{net::IpAddr, path::PathBuf};

use bpfk_common::resolv_conf::ResolvConf;
use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

use crate::cri::proto;

/// The kubelet's usual `--cluster-domain`.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// The address of the `kube-dns` Service bpfk-server creates.
pub const DEFAULT_CLUSTER_DNS: &str = "10.96.0.10";
/// The resolver reads no more nameservers than this (MAXNS).
pub const MAX_NAMESERVERS: usize = 3;
/// The kubelet's limit on search domains.
pub const MAX_SEARCHES: usize = 32;

/// The kubelet's DNS flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    pub cluster_domain: String,
    /// Empty: ClusterFirst pods fall back to the node's resolv.conf.
    pub cluster_dns: Vec<IpAddr>,
    pub resolv_conf: PathBuf,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.into(),
            cluster_dns: DEFAULT_CLUSTER_DNS.parse().into_iter().collect(),
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}

/// Where a pod's DNS settings start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Cluster,
    Node,
    Empty,
}

fn base(pod: &Pod, settings: &DnsSettings) -> Base {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let base = match spec.and_then(|s| s.dns_policy.as_deref()) {
        Some("None") => Base::Empty,
        Some("Default") => Base::Node,
        Some("ClusterFirstWithHostNet") => Base::Cluster,
        // ClusterFirst, unset or unknown (validation admits no other value).
        _ if host_network => Base::Node,
        _ => Base::Cluster,
    };
    if base == Base::Cluster && settings.cluster_dns.is_empty() {
        tracing::warn!(
            "pod {}: dnsPolicy ClusterFirst without --cluster-dns, using the node's resolv.conf",
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        return Base::Node;
    }
    base
}

/// The DNS configuration of `pod`'s sandbox; `node` is the node's resolv.conf (None: it
/// could not be read, and nothing of it is used).
pub fn dns_config(
    pod: &Pod,
    settings: &DnsSettings,
    node: Option<&ResolvConf>,
) -> proto::DnsConfig {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let empty = ResolvConf::default();
    let node = node.unwrap_or(&empty);
    let mut conf = match base(pod, settings) {
        Base::Empty => ResolvConf::default(),
        Base::Node => node.clone(),
        Base::Cluster => {
            let domain = settings.cluster_domain.trim_end_matches('.');
            let mut searches = vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_string(),
            ];
            searches.extend(node.searches.iter().cloned());
            ResolvConf {
                nameservers: settings.cluster_dns.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(extra) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        merge(&mut conf, extra);
    }
    proto::DnsConfig {
        servers: dedup(conf.nameservers.iter().map(|ip| ip.to_string()))
            .into_iter()
            .take(MAX_NAMESERVERS)
            .collect(),
        searches: dedup(conf.searches)
            .into_iter()
            .take(MAX_SEARCHES)
            .collect(),
        options: conf.options,
    }
}

/// [`dns_config`] with the node's resolv.conf read from `settings.resolv_conf` (a file that
/// cannot be read contributes nothing, with a warning).
pub fn dns_config_of(pod: &Pod, settings: &DnsSettings) -> proto::DnsConfig {
    let node = match ResolvConf::read(&settings.resolv_conf) {
        Ok(conf) => Some(conf),
        Err(e) => {
            tracing::warn!("--resolv-conf {}: {e}", settings.resolv_conf.display());
            None
        }
    };
    dns_config(pod, settings, node.as_ref())
}

/// Adds the pod's `dnsConfig` to `conf`.
fn merge(conf: &mut ResolvConf, extra: &PodDNSConfig) {
    conf.nameservers.extend(
        extra
            .nameservers
            .iter()
            .flatten()
            .filter_map(|s| s.parse::<IpAddr>().ok()),
    );
    conf.searches
        .extend(extra.searches.iter().flatten().cloned());
    for option in extra.options.iter().flatten() {
        let name = option.name.clone().unwrap_or_default();
        if name.is_empty() {
            continue;
        }
        let text = match &option.value {
            Some(v) => format!("{name}:{v}"),
            None => name.clone(),
        };
        conf.options
            .retain(|o| o.split(':').next().unwrap_or_default() != name);
        conf.options.push(text);
    }
}

/// The items in order, each once.
fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfigOption, PodSpec};
    use kube::api::ObjectMeta;

    fn pod(policy: Option<&str>, host_network: bool, dns: Option<PodDNSConfig>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                dns_policy: policy.map(Into::into),
                host_network: Some(host_network),
                dns_config: dns,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node() -> ResolvConf {
        ResolvConf::parse("nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
    }

    #[test]
    fn cluster_first_points_at_the_cluster_dns_and_searches_the_namespace() {
        let c = dns_config(
            &pod(None, false, None),
            &DnsSettings::default(),
            Some(&node()),
        );
        assert_eq!(c.servers, ["10.96.0.10"]);
        assert_eq!(
            c.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(c.options, ["ndots:5"]);
        let explicit = dns_config(
            &pod(Some("ClusterFirst"), false, None),
            &DnsSettings::default(),
            Some(&node()),
        );
        assert_eq!(explicit, c);
    }

    #[test]
    fn host_network_pods_get_the_node_file_unless_with_host_net() {
        let s = DnsSettings::default();
        let c = dns_config(&pod(Some("ClusterFirst"), true, None), &s, Some(&node()));
        assert_eq!(c.servers, ["192.0.2.53"]);
        assert_eq!(c.searches, ["corp.example"]);
        assert_eq!(c.options, ["edns0"]);
        let c = dns_config(
            &pod(Some("ClusterFirstWithHostNet"), true, None),
            &s,
            Some(&node()),
        );
        assert_eq!(c.servers, ["10.96.0.10"]);
        let c = dns_config(&pod(Some("Default"), false, None), &s, Some(&node()));
        assert_eq!(c.servers, ["192.0.2.53"]);
        // Without --cluster-dns, ClusterFirst falls back to the node's file.
        let none = DnsSettings {
            cluster_dns: Vec::new(),
            ..DnsSettings::default()
        };
        let c = dns_config(&pod(None, false, None), &none, Some(&node()));
        assert_eq!(c.servers, ["192.0.2.53"]);
    }

    #[test]
    fn none_takes_only_the_pod_dns_config_and_options_override() {
        let extra = PodDNSConfig {
            nameservers: Some(vec!["1.2.3.4".into(), "1.2.3.4".into(), "bad".into()]),
            searches: Some(vec!["a.example".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("rotate".into()),
                    value: None,
                },
            ]),
        };
        let s = DnsSettings {
            cluster_domain: "corp.internal.".into(),
            ..DnsSettings::default()
        };
        let c = dns_config(
            &pod(Some("None"), false, Some(extra.clone())),
            &s,
            Some(&node()),
        );
        assert_eq!(c.servers, ["1.2.3.4"]);
        assert_eq!(c.searches, ["a.example"]);
        assert_eq!(c.options, ["ndots:2", "rotate"]);
        // Merged into ClusterFirst: ndots is replaced, servers appended.
        let c = dns_config(&pod(None, false, Some(extra)), &s, None);
        assert_eq!(c.servers, ["10.96.0.10", "1.2.3.4"]);
        assert_eq!(
            c.searches,
            [
                "shop.svc.corp.internal",
                "svc.corp.internal",
                "corp.internal",
                "a.example"
            ]
        );
        assert_eq!(c.options, ["ndots:2", "rotate"]);
    }
}
