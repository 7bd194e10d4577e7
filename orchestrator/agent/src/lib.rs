//! bpfk-agent: the per-node agent. It runs the service proxy (kube-rs
//! reflectors on Services, EndpointSlices and Nodes drive the eBPF datapath,
//! `bpfk-datapath`) and, with `--kubelet`, the kubelet (`bpfk-kubelet`: pods
//! bound to this node on containerd, plus the TLS kubelet endpoint when
//! `--kubelet-port` is set, [`kubelet_endpoint`]).

pub mod convert;
pub mod dns;
pub mod kubelet_endpoint;
pub mod metrics;
pub mod pod_cidr;
pub mod proxy;
pub mod slice_index;

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    pin::Pin,
};

use bpfk_datapath::{Datapath, DatapathConfig, Ipv4Cidr, MapSizes, PeerRoutes};
use clap::Parser;
use tokio::sync::oneshot;

/// Command line of `bpfk-agent`.
#[derive(Debug, Parser)]
#[command(
    name = "bpfk-agent",
    about = "bpfk node agent (service proxy, kubelet)"
)]
pub struct Args {
    /// This node's name (pins go to <pin-root>/<node-name>/).
    #[arg(long, env = "BPFK_NODE_NAME")]
    pub node_name: String,
    /// Kubeconfig of the API server (not needed, and not read, with `--server` and `--token`).
    #[arg(long, env = "KUBECONFIG", required_unless_present = "server")]
    pub kubeconfig: Option<PathBuf>,
    /// Join the cluster at this API server (`https://HOST:PORT`) with `--token`: the CA is
    /// checked against the token's hash, and the node's client certificate is asked for by
    /// a CertificateSigningRequest and renewed before it expires.
    #[arg(long, requires = "token", value_name = "URL")]
    pub server: Option<String>,
    /// The join token (`K10<ca hash>::<id>.<secret>`, from the server's `--data-dir`
    /// `join-token` file or `bpfk token create`).
    #[arg(long, env = "BPFK_TOKEN", requires = "server", hide_env_values = true, value_parser = parse_join_token)]
    pub token: Option<bpfk_auth::bootstrap_token::JoinToken>,
    /// Where a joined node keeps its kubeconfig and key.
    #[arg(long, default_value = "/var/lib/bpfk/agent/pki")]
    pub cert_dir: PathBuf,
    /// Underlay device (NodePort ingress, routes to other nodes' pods).
    #[arg(long)]
    pub underlay_iface: Option<String>,
    /// This node's underlay address (NodePort frontends).
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// This node's pod range, e.g. 10.244.1.0/24. Default with `--kubelet`: the Node's
    /// spec.podCIDR (assigned by node IPAM after registration; the kubelet hands it to the
    /// proxy, which waits for it).
    #[arg(long)]
    pub pod_cidr: Option<Ipv4Cidr>,
    /// cgroup v2 directory for socket-level load balancing (default: the
    /// cgroup2 root).
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Root of the pinned maps and links.
    #[arg(long, default_value = bpfk_datapath::DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    /// Remove this node's datapath (programs, links, pins) and exit.
    #[arg(long)]
    pub teardown: bool,
    /// Do not run the service proxy (no eBPF datapath is loaded); needs `--kubelet`.
    #[arg(long, requires = "kubelet")]
    pub no_proxy: bool,
    /// The cluster's service (ClusterIP) range, e.g. 10.96.0.0/12: per-packet service
    /// lookups start inside it (it widens itself to hold every programmed frontend; without
    /// it, the smallest range holding them).
    #[arg(long)]
    pub service_cidr: Option<Ipv4Cidr>,
    /// Serve /metrics (Prometheus text: datapath counters, drops, program run time, map
    /// fill, watch → maps latency) on this address; meant for loopback (127.0.0.1:10249, as
    /// kube-proxy). Off when not given.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Turn on the kernel's eBPF run statistics (run counts and time in /metrics) while the
    /// agent runs; they cost two clock reads per program run.
    #[arg(long)]
    pub bpf_stats: bool,
    /// Entries of each Maglev table (NodePorts, and ClusterIPs annotated
    /// `bpfk.io/lb-algorithm: maglev`): a prime, e.g. 1021, 4093, 16381; larger tables spread
    /// more evenly and cost more map writes per change.
    #[arg(long, default_value_t = bpfk_datapath::maglev::DEFAULT_TABLE_SIZE,
        value_parser = parse_maglev_table_size)]
    pub maglev_table_size: u32,
    #[command(flatten)]
    pub map_sizes: MapSizeArgs,
    #[command(flatten)]
    pub kubelet: bpfk_kubelet::KubeletArgs,
    #[command(flatten)]
    pub dns: dns::DnsArgs,
}

fn parse_join_token(
    text: &str,
) -> std::result::Result<bpfk_auth::bootstrap_token::JoinToken, String> {
    text.parse()
        .map_err(|e: bpfk_auth::bootstrap_token::TokenError| e.to_string())
}

/// Sizes (entries) of the datapath's maps. A full map fails the service update that needed
/// room (logged, and counted in `bpfk_proxy_sync_failures_total{reason="map_full"}`).
#[derive(Debug, Clone, clap::Args)]
pub struct MapSizeArgs {
    /// Service map: one entry per frontend plus one per backend slot.
    #[arg(long, default_value_t = MapSizes::default().services, value_parser = clap::value_parser!(u32).range(1..))]
    pub bpf_map_services: u32,
    /// Backend map: one entry per distinct backend address.
    #[arg(long, default_value_t = MapSizes::default().backends, value_parser = clap::value_parser!(u32).range(1..))]
    pub bpf_map_backends: u32,
    /// Reverse-NAT map: one entry per frontend (at most 65536: 16-bit indexes).
    #[arg(long, default_value_t = MapSizes::default().rev_nat, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub bpf_map_rev_nat: u32,
    /// Conntrack map (LRU) of the per-packet path: two entries per translated flow.
    #[arg(long, default_value_t = MapSizes::default().conntrack, value_parser = clap::value_parser!(u32).range(1..))]
    pub bpf_map_conntrack: u32,
    /// Session-affinity map (LRU).
    #[arg(long, default_value_t = MapSizes::default().affinity, value_parser = clap::value_parser!(u32).range(1..))]
    pub bpf_map_affinity: u32,
    /// Socket reverse-NAT map (LRU): one entry per open translated socket.
    #[arg(long, default_value_t = MapSizes::default().sock_rev_nat, value_parser = clap::value_parser!(u32).range(1..))]
    pub bpf_map_sock_rev_nat: u32,
}

/// `--maglev-table-size`: a prime in range, or clap's error with the reason.
fn parse_maglev_table_size(s: &str) -> Result<u32, String> {
    let size: u32 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    bpfk_datapath::maglev::validate_table_size(size).map_err(|e| e.to_string())?;
    Ok(size)
}

impl MapSizeArgs {
    fn sizes(&self) -> MapSizes {
        MapSizes {
            services: self.bpf_map_services,
            backends: self.bpf_map_backends,
            rev_nat: self.bpf_map_rev_nat,
            conntrack: self.bpf_map_conntrack,
            affinity: self.bpf_map_affinity,
            sock_rev_nat: self.bpf_map_sock_rev_nat,
            ..MapSizes::default()
        }
    }
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("datapath: {0}")]
    Datapath(#[from] bpfk_datapath::Error),
    #[error("pod range: {0}")]
    PodCidr(#[from] pod_cidr::PodCidrError),
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("service proxy: {0}")]
    Proxy(#[from] proxy::Error),
    #[error("cluster DNS: {0}")]
    Dns(#[from] dns::Error),
    #[error("kubelet: {0}")]
    Kubelet(#[from] bpfk_kubelet::Error),
    #[error("joining the cluster: {0}")]
    Join(#[from] bpfk_kubelet::bootstrap::BootstrapError),
    #[error("restarting onto the renewed certificate: {0}")]
    Restart(std::io::Error),
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("kubelet endpoint TLS: {0}")]
    KubeletTls(String),
    #[error("kubelet log endpoint {addr}: {source}")]
    LogServer {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Result with the agent [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One part of the agent: it runs until it fails.
type Part = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Runs the agent until the watch streams end or fail.
pub async fn run(args: Args) -> Result<()> {
    if args.teardown {
        bpfk_datapath::teardown_pins(&args.pin_root, &args.node_name)?;
        return Ok(());
    }
    let (kubeconfig, join) = credentials(&args).await?;
    let (client, kubeconfig_ca) = client(&kubeconfig).await?;
    // With the kubelet and no --pod-cidr, the kubelet learns the range and hands it over.
    let (pod_cidr_to, pod_cidr_handed) = match pod_cidr::source(args.pod_cidr, args.kubelet.kubelet)
    {
        pod_cidr::Source::Kubelet if !args.no_proxy => {
            let (to, handed) = pod_cidr::hand_off();
            (Some(to), Some(handed))
        }
        _ => (None, None),
    };
    // Every part runs until it fails; the first failure stops the agent.
    let mut parts: Vec<Part> = Vec::new();
    if !args.no_proxy {
        let dns = dns_part(&args, client.clone()).await?;
        let feed = dns.map(|(feed, part)| {
            parts.push(part);
            feed
        });
        parts.push(proxy_part(&args, client.clone(), pod_cidr_handed, feed));
    }
    if args.kubelet.kubelet {
        parts.extend(kubelet_parts(&args, client, &kubeconfig_ca, pod_cidr_to).await?);
    }
    if let Some(join) = join {
        parts.push(Box::pin(restart_on_renewal(join)));
    }
    // `--no-proxy` requires `--kubelet`, so there is always at least one part.
    let (result, _, _) = futures::future::select_all(parts).await;
    result
}

/// The kubeconfig to use: `--kubeconfig`, or the node's own after joining with `--server`
/// and `--token` (then also what renewing needs).
async fn credentials(args: &Args) -> Result<(PathBuf, Option<bpfk_kubelet::bootstrap::Join>)> {
    let (Some(server), Some(token)) = (&args.server, &args.token) else {
        let path = args.kubeconfig.clone().unwrap_or_default();
        return Ok((path, None));
    };
    let join = bpfk_kubelet::bootstrap::Join {
        server: server.clone(),
        token: token.clone(),
        node_name: args.node_name.clone(),
        cert_dir: args.cert_dir.clone(),
        issue_timeout: JOIN_ISSUE_TIMEOUT,
    };
    let path = bpfk_kubelet::bootstrap::ensure_credentials(&join).await?;
    Ok((path, Some(join)))
}

/// How long a joining node waits for its certificate (an unapproved request waits for
/// `kubectl certificate approve`).
const JOIN_ISSUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Renew the node certificate when due, then restart this process (same pid, same flags)
/// onto it: the clients hold the certificate they were built with, and the kubelet adopts
/// its running pods on start.
async fn restart_on_renewal(join: bpfk_kubelet::bootstrap::Join) -> Result<()> {
    bpfk_kubelet::bootstrap::renew_when_due(&join).await?;
    use std::os::unix::process::CommandExt;
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    tracing::info!("restarting onto the renewed node certificate");
    let error = std::process::Command::new("/proc/self/exe")
        .args(args)
        .exec();
    Err(Error::Restart(error))
}

/// The API client of `kubeconfig`, and the CA certificates (DER) it trusts.
async fn client(kubeconfig: &std::path::Path) -> Result<(kube::Client, Vec<Vec<u8>>)> {
    let kc_err = |reason: String| Error::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        reason,
    };
    let config =
        kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| kc_err(e.to_string()))?;
    let client_config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| kc_err(e.to_string()))?;
    let ca = kubelet_endpoint::kubeconfig_ca(&client_config);
    let mut client_config = client_config;
    // the kubelet's User-Agent names its writes in managedFields, as Kubernetes' kubelet
    client_config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("kubelet/v1.33.0 (linux/amd64) bpfk"),
    ));
    let client = kube::Client::try_from(client_config).map_err(|e| kc_err(e.to_string()))?;
    Ok((client, ca))
}

/// The service proxy: loads the datapath (once the kubelet handed over the pod range, if
/// `pod_cidr_handed`) and drives it, with the routes to other nodes' pods when there is an
/// underlay device.
fn proxy_part(
    args: &Args,
    client: kube::Client,
    pod_cidr_handed: Option<oneshot::Receiver<String>>,
    dns: Option<dns::Feed>,
) -> Part {
    let mut config = DatapathConfig {
        pin_root: Some(args.pin_root.clone()),
        cgroup: args.cgroup.clone(),
        underlay_iface: args.underlay_iface.clone(),
        node_addr: args.node_ip,
        pod_cidr: args.pod_cidr,
        service_cidr: args.service_cidr,
        map_sizes: args.map_sizes.sizes(),
        maglev_table_size: Some(args.maglev_table_size),
    };
    let node = args.node_name.clone();
    let (metrics_addr, bpf_stats) = (args.metrics_addr, args.bpf_stats);
    Box::pin(async move {
        if let Some(handed) = pod_cidr_handed {
            config.pod_cidr = Some(pod_cidr::from_kubelet(handed, &node).await?);
        }
        let underlay = config.underlay_iface.clone();
        let datapath = Datapath::load(&node, config)?;
        // Held for the agent's life: the kernel counts while it is open.
        let _stats = bpf_stats
            .then(bpfk_datapath::enable_run_stats)
            .transpose()?;
        let proxy_metrics = metrics::ProxyMetrics::default();
        let served = match metrics_addr {
            Some(addr) => Some(metrics_part(addr, &datapath, proxy_metrics.clone()).await?),
            None => None,
        };
        // One rtnetlink connection on this runtime for every route change.
        let peer_routes = underlay.as_deref().map(PeerRoutes::connect).transpose()?;
        let proxy = proxy::run(client, datapath, &node, peer_routes, dns, proxy_metrics);
        match served {
            Some(served) => tokio::select! {
                r = proxy => r?,
                r = served => r?,
            },
            None => proxy.await?,
        }
        Ok(())
    })
}

/// Binds the metrics endpoint (so a taken address fails at start) and returns its server.
async fn metrics_part(
    addr: SocketAddr,
    datapath: &Datapath,
    proxy: metrics::ProxyMetrics,
) -> Result<Part> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Metrics { addr, source })?;
    let observer = datapath.observer()?;
    Ok(Box::pin(async move {
        metrics::serve(listener, observer, proxy)
            .await
            .map_err(|source| Error::Metrics { addr, source })
    }))
}

/// The node-local DNS server (fed by the proxy's watches), unless `--no-dns` or there is no
/// address to listen on.
async fn dns_part(args: &Args, client: kube::Client) -> Result<Option<(dns::Feed, Part)>> {
    let Some(addr) = args
        .dns
        .dns_addr
        .or(args.node_ip)
        .filter(|_| !args.dns.no_dns)
    else {
        if !args.dns.no_dns {
            tracing::info!("no --node-ip or --dns-addr: no cluster DNS server on this node");
        }
        return Ok(None);
    };
    let settings = dns::Settings {
        listen: SocketAddr::new(IpAddr::V4(addr), args.dns.dns_port),
        cluster_domain: args.kubelet.cluster_domain.clone(),
        cluster_dns: args.kubelet.cluster_dns.first().copied(),
        ttl: args.dns.dns_ttl,
        resolv_conf: (!args.dns.dns_no_forward).then(|| args.kubelet.resolv_conf.clone()),
    };
    let (feed, run) = dns::start(settings, client).await?;
    Ok(Some((feed, Box::pin(async move { Ok(run.await?) }))))
}

/// The kubelet, and its endpoint with `--kubelet-port`. It hands the pod range it learns
/// to `pod_cidr_to`.
async fn kubelet_parts(
    args: &Args,
    client: kube::Client,
    kubeconfig_ca: &[Vec<u8>],
    pod_cidr_to: Option<oneshot::Sender<String>>,
) -> Result<Vec<Part>> {
    let node_ip = args.node_ip.map(IpAddr::V4);
    let pod_cidr = args.pod_cidr.map(|c| c.to_string());
    let config = args.kubelet.config(&args.node_name, node_ip, pod_cidr);
    let mut parts: Vec<Part> = Vec::new();
    if let Some(port) = args.kubelet.kubelet_port {
        let inputs = kubelet_endpoint::EndpointInputs {
            args,
            client: client.clone(),
            kubeconfig_ca,
            config: &config,
            port,
        };
        parts.push(kubelet_endpoint::part(inputs)?);
    }
    parts.push(Box::pin(async move {
        bpfk_kubelet::run_sharing_pod_cidr(client, config, pod_cidr_to).await?;
        Ok(())
    }));
    Ok(parts)
}
