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
        }
    }
}
