//! What the cluster DNS knows: the Services (with their ready endpoints) and namespaces of the
//! cluster, indexed by name and by address. The agent's watches fill it; [`crate::lookup`]
//! answers from it.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
};

/// How a Service is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A virtual IP (or one per IP family).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: names resolve to the ready endpoints.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

/// A port of a Service or an endpoint. `name` and `protocol` are lower case; a port without
/// a name has `name` "".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRecord {
    pub name: String,
    pub protocol: String,
    pub port: u16,
}

/// A ready endpoint of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRecord {
    pub addr: IpAddr,
    /// `hostname` of the endpoint (the pod's `spec.hostname` under its `subdomain`).
    pub hostname: Option<String>,
    /// Ports of the slice this endpoint came from.
    pub ports: Vec<PortRecord>,
}

impl EndpointRecord {
    /// The endpoint's label under its Service: its hostname, else its address with dashes
    /// (`10-244-1-5`), as the Kubernetes DNS specification names endpoints.
    pub fn label(&self) -> String {
        match &self.hostname {
            Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
            _ => dashed(self.addr),
        }
    }
}

/// `10.244.1.5` → `10-244-1-5`; IPv6 colons become dashes too.
pub fn dashed(addr: IpAddr) -> String {
    addr.to_string().replace(['.', ':'], "-")
}

/// A Service as DNS serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    pub namespace: String,
    pub name: String,
    pub kind: ServiceKind,
    pub ports: Vec<PortRecord>,
    /// Ready endpoints only.
    pub endpoints: Vec<EndpointRecord>,
}

/// `(namespace, name)`, lower case.
pub type ServiceKey = (String, String);

/// What an address is the address of (the target of its PTR record).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReverseTarget {
    pub namespace: String,
    pub service: String,
    /// The endpoint label, None for a ClusterIP.
    pub endpoint: Option<String>,
}

/// The cluster's Services and namespaces. Cheap to read; each update touches one Service.
#[derive(Debug, Default)]
pub struct Cluster {
    services: HashMap<ServiceKey, Arc<ServiceRecord>>,
    /// Namespaces known to exist (from a namespace watch).
    namespaces: HashSet<String>,
    /// How many Services each namespace holds (a namespace with a Service exists).
    services_in: HashMap<String, usize>,
    reverse: HashMap<IpAddr, BTreeSet<ReverseTarget>>,
    /// Bumped at every change: the SOA serial.
    serial: u32,
}

impl Cluster {
    /// The Service `name` in `namespace` (both lower case).
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceRecord> {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
            .map(|s| s.as_ref())
    }

    /// Whether `namespace` exists, as far as the watches tell.
    pub fn namespace_exists(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace) || self.services_in.contains_key(namespace)
    }

    /// The names `addr` is the address of.
    pub fn reverse(&self, addr: IpAddr) -> impl Iterator<Item = &ReverseTarget> {
        self.reverse.get(&addr).into_iter().flatten()
    }

    /// Changes so far (the zone's SOA serial).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// How many Services are known.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Records that `namespace` exists (or no longer does).
    pub fn set_namespace(&mut self, namespace: &str, exists: bool) {
        let namespace = namespace.to_ascii_lowercase();
        let changed = if exists {
            self.namespaces.insert(namespace)
        } else {
            self.namespaces.remove(&namespace)
        };
        if changed {
            self.serial = self.serial.wrapping_add(1);
        }
    }

    /// Replaces the namespace set after a (re)list.
    pub fn replace_namespaces(&mut self, namespaces: impl IntoIterator<Item = String>) {
        self.namespaces = namespaces
            .into_iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        self.serial = self.serial.wrapping_add(1);
    }

    /// Adds or replaces a Service.
    pub fn upsert(&mut self, mut svc: ServiceRecord) {
        svc.namespace.make_ascii_lowercase();
        svc.name.make_ascii_lowercase();
        let key = (svc.namespace.clone(), svc.name.clone());
        self.remove(&key.0, &key.1);
        for (addr, target) in reverse_entries(&svc) {
            self.reverse.entry(addr).or_default().insert(target);
        }
        *self.services_in.entry(key.0.clone()).or_default() += 1;
        self.services.insert(key, Arc::new(svc));
        self.serial = self.serial.wrapping_add(1);
    }

    /// Removes a Service; true if it was known.
    pub fn remove(&mut self, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
        let Some(old) = self.services.remove(&key) else {
            return false;
        };
        for (addr, target) in reverse_entries(&old) {
            if let Some(targets) = self.reverse.get_mut(&addr) {
                targets.remove(&target);
                if targets.is_empty() {
                    self.reverse.remove(&addr);
                }
            }
        }
        if let Some(n) = self.services_in.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.services_in.remove(&key.0);
            }
        }
        self.serial = self.serial.wrapping_add(1);
        true
    }

    /// The Services now known, for a resync: `(namespace, name)` of each.
    pub fn service_keys(&self) -> Vec<ServiceKey> {
        self.services.keys().cloned().collect()
    }
}

/// The PTR targets a Service contributes: its ClusterIPs and its endpoints' addresses.
fn reverse_entries(svc: &ServiceRecord) -> Vec<(IpAddr, ReverseTarget)> {
    let target = |endpoint: Option<String>| ReverseTarget {
        namespace: svc.namespace.clone(),
        service: svc.name.clone(),
        endpoint,
    };
    let mut out = Vec::new();
    if let ServiceKind::ClusterIp(ips) = &svc.kind {
        out.extend(ips.iter().map(|ip| (*ip, target(None))));
    }
    if !matches!(svc.kind, ServiceKind::ExternalName(_)) {
        out.extend(
            svc.endpoints
                .iter()
                .map(|ep| (ep.addr, target(Some(ep.label())))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ip: &str, eps: &[&str]) -> ServiceRecord {
        ServiceRecord {
            namespace: ns.into(),
            name: name.into(),
            kind: ServiceKind::ClusterIp(vec![ip.parse().unwrap()]),
            ports: Vec::new(),
            endpoints: eps
                .iter()
                .map(|a| EndpointRecord {
                    addr: a.parse().unwrap(),
                    hostname: None,
                    ports: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn updates_keep_the_reverse_index_and_namespaces_exact() {
        let mut c = Cluster::default();
        c.upsert(svc("Default", "Web", "10.96.0.20", &["10.244.1.5"]));
        assert!(c.service("default", "web").is_some());
        assert!(c.namespace_exists("default"));
        let ip: IpAddr = "10.244.1.5".parse().unwrap();
        assert_eq!(
            c.reverse(ip).next().unwrap().endpoint.as_deref(),
            Some("10-244-1-5")
        );
        // The endpoint moves: the old address no longer points at the Service.
        c.upsert(svc("default", "web", "10.96.0.20", &["10.244.1.6"]));
        assert_eq!(c.reverse(ip).count(), 0);
        assert_eq!(c.service_count(), 1);
        assert!(c.remove("default", "web"));
        assert!(!c.remove("default", "web"));
        assert!(!c.namespace_exists("default"));
        assert!(c.reverse.is_empty() && c.services_in.is_empty());
        c.set_namespace("default", true);
        assert!(c.namespace_exists("default"));
    }
}
