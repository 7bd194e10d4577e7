//! Kubelet configuration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Node capacity reported in `status.capacity` and `status.allocatable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// CPUs (`"2"`).
    pub cpu: String,
    /// Memory (`"24576Mi"`).
    pub memory: String,
    /// Maximum pods.
    pub pods: String,
}

/// Everything the kubelet needs besides an API client.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node's name.
    pub node_name: String,
    /// CRI socket (containerd's gRPC socket).
    pub runtime_socket: PathBuf,
    /// This node's address (InternalIP, pods' hostIP). None: no address is reported.
    pub node_ip: Option<IpAddr>,
    /// Port of this node's kubelet API (pods/log), published as
    /// `status.daemonEndpoints.kubeletEndpoint.Port`; None: not published.
    pub kubelet_port: Option<u16>,
    /// Use this pod range instead of waiting for `spec.podCIDR` from node IPAM.
    pub pod_cidr: Option<String>,
    /// Directory containerd's CRI plugin reads CNI configuration from.
    pub cni_conf_dir: PathBuf,
    /// host-local IPAM state directory.
    pub cni_state_dir: PathBuf,
    /// Linux bridge the pods attach to.
    pub bridge_name: String,
    /// Root of pod log directories (`<root>/<ns>_<name>_<uid>/<container>/<n>.log`).
    pub pod_log_dir: PathBuf,
    /// The kubelet's state: pod volumes live in `<root>/pods/<uid>/volumes/`.
    pub root_dir: PathBuf,
    /// cgroup parent of all pods (`<parent>/pod<uid>`), cgroupfs syntax.
    pub cgroup_parent: String,
    /// Capacity; None: measured from this machine (CPUs, /proc/meminfo, 110 pods).
    pub capacity: Option<Capacity>,
    /// Lease renewal period (the node lifecycle controller expects 10 s).
    pub lease_period: Duration,
    /// Lease duration written into the Lease.
    pub lease_duration: Duration,
    /// Node status report period (the Ready condition's heartbeat).
    pub status_period: Duration,
    /// How often each pod worker re-reads its containers' state.
    pub pod_sync_period: Duration,
    /// First restart back-off of a crashing container (doubles up to `restart_backoff_max`).
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// What pods' resolv.conf is made of.
    pub dns: crate::pod_dns::DnsSettings,
    /// Pull one image at a time (Kubernetes' `--serialize-image-pulls`, default true).
    pub serialize_image_pulls: bool,
    /// First back-off after a failed pull (doubles up to `image_pull_backoff_max`).
    pub image_pull_backoff: Duration,
    pub image_pull_backoff_max: Duration,
    /// Image GC starts at this disk usage (percent) of the image filesystem…
    pub image_gc_high_percent: u8,
    /// …and removes unused images until usage is down to this.
    pub image_gc_low_percent: u8,
    /// Images seen less long ago than this are never collected.
    pub image_gc_min_age: Duration,
    /// How often disk usage is checked.
    pub image_gc_period: Duration,
    /// The runtime's sandbox image: never collected.
    pub pod_infra_image: String,
    /// How long a ConfigMap or Secret read from the API is reused.
    pub object_cache_ttl: Duration,
    /// Container log rotation (the container log manager).
    pub log_rotation: crate::log_rotation::RotationPolicy,
}

impl Config {
    /// Defaults for a node named `node_name` with containerd's default socket.
    pub fn new(node_name: &str) -> Config {
        Config {
            node_name: node_name.into(),
            runtime_socket: "/run/containerd/containerd.sock".into(),
            node_ip: None,
            kubelet_port: None,
            pod_cidr: None,
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_state_dir: "/var/lib/bpfk/cni".into(),
            bridge_name: "cni0".into(),
            pod_log_dir: "/var/log/pods".into(),
            root_dir: "/var/lib/bpfk/kubelet".into(),
            cgroup_parent: "/bpfk".into(),
            capacity: None,
            lease_period: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            status_period: Duration::from_secs(60),
            pod_sync_period: Duration::from_secs(1),
            restart_backoff: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
            dns: crate::pod_dns::DnsSettings::default(),
            serialize_image_pulls: true,
            image_pull_backoff: Duration::from_secs(10),
            image_pull_backoff_max: Duration::from_secs(300),
            image_gc_high_percent: 85,
            image_gc_low_percent: 80,
            image_gc_min_age: Duration::from_secs(120),
            image_gc_period: Duration::from_secs(300),
            pod_infra_image: "registry.k8s.io/pause:3.10".into(),
            object_cache_ttl: Duration::from_secs(1),
            log_rotation: crate::log_rotation::RotationPolicy::default(),
        }
    }
}

/// Command-line flags of the kubelet part of a node agent, to `#[command(flatten)]` into
/// its `Args` (node name, node IP and pod CIDR usually come from the agent's own flags).
#[derive(Debug, Clone, clap::Args)]
pub struct KubeletArgs {
    /// Run the kubelet (pods bound to this node) in this agent.
    #[arg(long)]
    pub kubelet: bool,
    /// CRI socket of the container runtime.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub runtime_socket: PathBuf,
    /// Directory containerd's CRI plugin reads CNI configuration from.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// host-local IPAM state directory.
    #[arg(long, default_value = "/var/lib/bpfk/cni")]
    pub cni_state_dir: PathBuf,
    /// Linux bridge pods attach to.
    #[arg(long, default_value = "cni0")]
    pub cni_bridge: String,
    /// Root of pod log directories.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,
    /// The kubelet's state directory (pod volumes).
    #[arg(long, default_value = "/var/lib/bpfk/kubelet")]
    pub kubelet_root_dir: PathBuf,
    /// cgroup parent of all pods (cgroupfs syntax).
    #[arg(long, default_value = "/bpfk")]
    pub cgroup_parent: String,
    /// Port of the kubelet endpoint (container logs, exec, attach, port-forward; published
    /// in the Node's daemonEndpoints). It serves TLS only, to clients with a certificate of
    /// `--client-ca-file` whom a SubjectAccessReview allows.
    #[arg(long)]
    pub kubelet_port: Option<u16>,
    /// The endpoint's serving certificate (PEM). Without it the kubelet asks for one through
    /// a `kubernetes.io/kubelet-serving` CertificateSigningRequest and renews it.
    #[arg(long, value_name = "PATH", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The key (PEM) of `--tls-cert-file`.
    #[arg(long, value_name = "PATH", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// The CA (PEM) the endpoint's clients' certificates must chain to; default: the CA of
    /// the kubeconfig (the cluster CA).
    #[arg(long, value_name = "PATH")]
    pub client_ca_file: Option<PathBuf>,
    /// The cluster's DNS domain: pods search `<ns>.svc.<domain> svc.<domain> <domain>`.
    #[arg(long, default_value = crate::pod_dns::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// Nameservers of pods with `dnsPolicy: ClusterFirst` (comma separated): the kube-dns
    /// Service address. Empty: such pods get the node's resolv.conf, as the kubelet does.
    #[arg(long, value_delimiter = ',', default_value = crate::pod_dns::DEFAULT_CLUSTER_DNS)]
    pub cluster_dns: Vec<IpAddr>,
    /// The node's resolv.conf (pods with `dnsPolicy: Default`; the DNS server's upstreams).
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Pull images one at a time (`--serialize-image-pulls=false` pulls in parallel).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub serialize_image_pulls: bool,
    /// Disk usage (percent) of the image filesystem at which image GC starts.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_high_threshold: u8,
    /// Disk usage (percent) image GC frees down to.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
    /// The runtime's sandbox image (containerd's sandbox_image), never garbage collected.
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pub pod_infra_container_image: String,
    /// A running container's log file is rotated once it reaches this size (a quantity).
    #[arg(long, default_value = "10Mi", value_parser = crate::log_rotation::parse_max_size)]
    pub container_log_max_size: u64,
    /// Log files kept per container, the current one included (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    pub container_log_max_files: u16,
    /// How often container log sizes are checked (at least 3s).
    #[arg(long, default_value = "10s", value_parser = crate::log_rotation::parse_interval)]
    pub container_log_monitor_interval: Duration,
}

impl KubeletArgs {
    /// The kubelet configuration for `node_name`.
    pub fn config(
        &self,
        node_name: &str,
        node_ip: Option<IpAddr>,
        pod_cidr: Option<String>,
    ) -> Config {
        let mut c = Config::new(node_name);
        c.runtime_socket = self.runtime_socket.clone();
        c.node_ip = node_ip;
        c.pod_cidr = pod_cidr;
        c.cni_conf_dir = self.cni_conf_dir.clone();
        c.cni_state_dir = self.cni_state_dir.clone();
        c.bridge_name = self.cni_bridge.clone();
        c.pod_log_dir = self.pod_log_dir.clone();
        c.root_dir = self.kubelet_root_dir.clone();
        c.cgroup_parent = self.cgroup_parent.clone();
        c.kubelet_port = self.kubelet_port;
        c.dns = crate::pod_dns::DnsSettings {
            cluster_domain: self.cluster_domain.clone(),
            cluster_dns: self.cluster_dns.clone(),
            resolv_conf: self.resolv_conf.clone(),
        };
        c.serialize_image_pulls = self.serialize_image_pulls;
        c.image_gc_high_percent = self.image_gc_high_threshold;
        c.image_gc_low_percent = self.image_gc_low_threshold;
        c.pod_infra_image = self.pod_infra_container_image.clone();
        c.log_rotation = crate::log_rotation::RotationPolicy {
            max_size: self.container_log_max_size,
            max_files: self.container_log_max_files.into(),
            interval: self.container_log_monitor_interval,
        };
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Agent {
        #[arg(long)]
        node_name: String,
        #[command(flatten)]
        kubelet: KubeletArgs,
    }

    #[test]
    fn flattened_flags_build_the_config() {
        let a = Agent::parse_from([
            "agent",
            "--node-name",
            "n1",
            "--kubelet",
            "--runtime-socket",
            "/tmp/c.sock",
            "--kubelet-port",
            "10250",
        ]);
        assert!(a.kubelet.kubelet);
        let c = a
            .kubelet
            .config(&a.node_name, Some("10.250.0.2".parse().unwrap()), None);
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.runtime_socket, PathBuf::from("/tmp/c.sock"));
        assert_eq!(c.kubelet_port, Some(10250));
        assert_eq!(c.cni_conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(c.cgroup_parent, "/bpfk");
        assert!(c.serialize_image_pulls);
        assert_eq!((c.image_gc_high_percent, c.image_gc_low_percent), (85, 80));
        let parallel = Agent::parse_from([
            "agent",
            "--node-name",
            "n",
            "--serialize-image-pulls=false",
            "--image-gc-high-threshold",
            "90",
            "--image-gc-low-threshold",
            "70",
        ]);
        let c = parallel.kubelet.config("n", None, None);
        assert!(!c.serialize_image_pulls);
        assert_eq!((c.image_gc_high_percent, c.image_gc_low_percent), (90, 70));
        assert!(Agent::try_parse_from([
            "agent",
            "--node-name",
            "n",
            "--image-gc-high-threshold",
            "101"
        ])
        .is_err());
    }
}
