//! The node-local cluster DNS (`bpfk-dns`) in the agent: the service proxy feeds it from its
//! own Service and EndpointSlice watches ([`Feed`]), a small Namespace watch tells which
//! namespaces exist, and the `kube-dns` Service's address is steered to this node's server
//! (its endpoints, as the proxy programs them, are this server).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    sync::{Arc, RwLock},
};

use bpfk_datapath::{Endpoint, EndpointPort, ServiceName, ServiceSpec};
use bpfk_dns::{Bound, Cluster, ClusterDns, Forwarding, SharedCluster, Zone};
use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};
use tracing::{info, warn};

/// The Service whose address pods use as their nameserver.
pub const KUBE_DNS_NAMESPACE: &str = "kube-system";
pub const KUBE_DNS_NAME: &str = "kube-dns";

/// Flags of the node-local DNS server.
#[derive(Debug, Clone, clap::Args)]
pub struct DnsArgs {
    /// Do not run the node-local cluster DNS server.
    #[arg(long)]
    pub no_dns: bool,
    /// Address the DNS server listens on (UDP and TCP); default: --node-ip. Without either,
    /// no DNS server runs.
    #[arg(long)]
    pub dns_addr: Option<Ipv4Addr>,
    /// Port of the DNS server.
    #[arg(long, default_value_t = 53)]
    pub dns_port: u16,
    /// Never forward names outside the cluster domain (they are REFUSED at once); otherwise
    /// they go to the nameservers of --resolv-conf.
    #[arg(long)]
    pub dns_no_forward: bool,
    /// TTL of the cluster records, in seconds.
    #[arg(long, default_value_t = bpfk_dns::DEFAULT_TTL)]
    pub dns_ttl: u32,
}

/// Why the DNS server cannot run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Zone(#[from] bpfk_dns::ZoneError),
    #[error(transparent)]
    Server(#[from] bpfk_dns::server::Error),
    #[error("--resolv-conf {path}: {source}")]
    ResolvConf {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The settings the DNS server starts with.
pub struct Settings {
    pub listen: SocketAddr,
    pub cluster_domain: String,
    /// The kube-dns ClusterIP (`ns.dns.<zone>`).
    pub cluster_dns: Option<IpAddr>,
    pub ttl: u32,
    /// None: no forwarding.
    pub resolv_conf: Option<PathBuf>,
}

/// What the proxy tells the DNS server, and how it steers `kube-dns` to it.
#[derive(Clone)]
pub struct Feed {
    cluster: SharedCluster,
    /// Where this node's DNS server listens: the backend of `kube-dns` on this node.
    local: SocketAddrV4,
}

impl Feed {
    /// Updates the records of `name`: `svc` with its `slices`, or none (deleted).
    pub fn sync(&self, name: &ServiceName, svc: Option<&Service>, slices: &[&EndpointSlice]) {
        let record = svc.and_then(|s| bpfk_dns::kube::service_record(s, slices.iter().copied()));
        let Ok(mut cluster) = self.cluster.write() else {
            return;
        };
        match record {
            Some(r) => cluster.upsert(r),
            None => {
                cluster.remove(&name.namespace, &name.name);
            }
        }
    }

    /// The Services the DNS server knows (a resync also revisits them).
    pub fn known(&self) -> Vec<ServiceName> {
        self.cluster
            .read()
            .map(|c| c.service_keys())
            .unwrap_or_default()
            .into_iter()
            .map(|(ns, name)| ServiceName::new(ns, name))
            .collect()
    }

    /// The endpoints to program for `spec` instead of its own: this node's DNS server for
    /// every port of `kube-dns`, so that its ClusterIP is answered on this node.
    pub fn local_endpoints(&self, spec: &ServiceSpec) -> Option<Vec<Endpoint>> {
        if spec.name.namespace != KUBE_DNS_NAMESPACE || spec.name.name != KUBE_DNS_NAME {
            return None;
        }
        let ports = spec
            .ports
            .iter()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                protocol: p.protocol,
                port: self.local.port(),
            })
            .collect();
        Some(vec![Endpoint {
            addr: *self.local.ip(),
            ports,
        }])
    }
}

/// Binds the DNS server; returns the feed for the proxy and the server and namespace watch
/// to run.
pub async fn start(
    settings: Settings,
    client: Client,
) -> Result<(Feed, impl std::future::Future<Output = Result<(), Error>>), Error> {
    let zone = Zone::new(&settings.cluster_domain, settings.ttl, settings.cluster_dns)?;
    let forwarding = match &settings.resolv_conf {
        None => Forwarding::Refuse,
        Some(path) => Forwarding::from_resolv_conf(path, settings.listen).map_err(|source| {
            Error::ResolvConf {
                path: path.clone(),
                source,
            }
        })?,
    };
    info!(listen = %settings.listen, domain = zone.domain(), ?forwarding, "cluster DNS server");
    let cluster: SharedCluster = Arc::new(RwLock::new(Cluster::default()));
    let handler = ClusterDns {
        cluster: cluster.clone(),
        zone,
        forwarding,
    };
    let bound = Bound::bind(settings.listen, handler).await?;
    let local = match bound.local_addr() {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(v6) => SocketAddrV4::new(
            v6.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
            v6.port(),
        ),
    };
    let feed = Feed {
        cluster: cluster.clone(),
        local,
    };
    let run = async move {
        tokio::select! {
            r = bound.serve() => r.map_err(Error::from),
            () = watch_namespaces(client, cluster) => Ok(()),
        }
    };
    Ok((feed, run))
}

/// Keeps the namespace set of `cluster` current.
async fn watch_namespaces(client: Client, cluster: SharedCluster) {
    let api: Api<Namespace> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Vec<String> = Vec::new();
    while let Some(ev) = events.next().await {
        let Ok(mut c) = cluster.write() else { return };
        match ev {
            Ok(watcher::Event::Apply(ns)) => c.set_namespace(&name(&ns.metadata), true),
            Ok(watcher::Event::Delete(ns)) => c.set_namespace(&name(&ns.metadata), false),
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(ns)) => listing.push(name(&ns.metadata)),
            Ok(watcher::Event::InitDone) => c.replace_namespaces(std::mem::take(&mut listing)),
            Err(e) => warn!("namespace watch error (retrying): {e}"),
        }
    }
}

fn name(meta: &kube::api::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfk_datapath::{Protocol, ServicePort};

    fn spec(namespace: &str, name: &str) -> ServiceSpec {
        let port = |name: &str, protocol| ServicePort {
            name: name.into(),
            protocol,
            port: 53,
            node_port: None,
        };
        ServiceSpec {
            name: ServiceName::new(namespace, name),
            cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 10)),
            ports: vec![port("dns", Protocol::Udp), port("dns-tcp", Protocol::Tcp)],
            affinity_timeout_s: None,
            lb_algorithm: Default::default(),
        }
    }

    #[test]
    fn kube_dns_is_steered_to_this_nodes_server_and_others_keep_theirs() {
        let feed = Feed {
            cluster: Arc::new(RwLock::new(Cluster::default())),
            local: SocketAddrV4::new(Ipv4Addr::new(10, 250, 0, 11), 5353),
        };
        let eps = feed
            .local_endpoints(&spec(KUBE_DNS_NAMESPACE, KUBE_DNS_NAME))
            .expect("kube-dns is overridden");
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].addr, Ipv4Addr::new(10, 250, 0, 11));
        let ports: Vec<_> = eps[0]
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.protocol, p.port))
            .collect();
        assert_eq!(
            ports,
            [
                ("dns", Protocol::Udp, 5353),
                ("dns-tcp", Protocol::Tcp, 5353)
            ]
        );
        assert!(feed
            .local_endpoints(&spec("default", KUBE_DNS_NAME))
            .is_none());
        assert!(feed
            .local_endpoints(&spec(KUBE_DNS_NAMESPACE, "other"))
            .is_none());
    }

    #[test]
    fn the_feed_adds_and_removes_services() {
        let feed = Feed {
            cluster: Arc::new(RwLock::new(Cluster::default())),
            local: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53),
        };
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.3.4", "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap();
        let name = ServiceName::new("shop", "web");
        feed.sync(&name, Some(&svc), &[]);
        assert_eq!(feed.known(), std::slice::from_ref(&name));
        feed.sync(&name, None, &[]);
        assert!(feed.known().is_empty());
    }
}
