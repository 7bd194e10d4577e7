//! Node registration, the node's status (capacity, addresses, Ready) and its heartbeat
//! Lease in `kube-node-lease`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use crate::config::{Capacity, Config};
use bpfk_common::api_error::is_conflict;

use crate::cri::CriClient;
use crate::error::{Error, Result};

/// Namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Version the kubelet reports.
pub const KUBELET_VERSION: &str = concat!("v1.33.0-bpfk-", env!("CARGO_PKG_VERSION"));

/// Capacity of this machine: CPUs, MemTotal and 110 pods.
pub fn machine_capacity() -> Capacity {
    let cpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_mem_total_kib(&m))
        .unwrap_or(0);
    Capacity {
        cpu: cpu.to_string(),
        memory: format!("{mem_kib}Ki"),
        pods: "110".into(),
    }
}

/// `MemTotal:` of /proc/meminfo in KiB.
pub fn parse_mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    read_trimmed("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn node_info(runtime: &str) -> NodeSystemInfo {
    NodeSystemInfo {
        architecture: bpfk_common::platform::goarch().into(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: runtime.into(),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        kube_proxy_version: String::new(),
        kubelet_version: KUBELET_VERSION.into(),
        machine_id: read_trimmed("/etc/machine-id"),
        operating_system: "linux".into(),
        os_image: os_image(),
        system_uuid: String::new(),
        ..Default::default()
    }
}

fn capacity_map(c: &Capacity) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(c.cpu.clone())),
        ("memory".to_string(), Quantity(c.memory.clone())),
        ("pods".to_string(), Quantity(c.pods.clone())),
    ])
}

/// Node conditions: Ready (from the runtime's health) and the pressure conditions (False).
pub fn conditions(
    runtime_ok: Result<(), String>,
    old: Option<&[NodeCondition]>,
    now: Timestamp,
) -> Vec<NodeCondition> {
    let (ready, reason, message) = match runtime_ok {
        Ok(()) => (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        ),
        Err(e) => (
            "False",
            "ContainerRuntimeUnavailable",
            format!("container runtime is not answering: {e}"),
        ),
    };
    let mut out = vec![
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available".to_string(),
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".to_string(),
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".to_string(),
        ),
        ("Ready", ready, reason, message),
    ]
    .into_iter()
    .map(|(t, s, r, m)| NodeCondition {
        type_: t.into(),
        status: s.into(),
        reason: Some(r.into()),
        message: Some(m),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    })
    .collect::<Vec<_>>();
    for c in &mut out {
        if let Some(prev) = old.and_then(|o| o.iter().find(|p| p.type_ == c.type_)) {
            if prev.status == c.status && prev.last_transition_time.is_some() {
                c.last_transition_time = prev.last_transition_time.clone();
            }
        }
    }
    out
}

/// The node's status as this kubelet reports it.
pub fn node_status(
    config: &Config,
    runtime: &str,
    runtime_ok: Result<(), String>,
    old: Option<&Node>,
) -> NodeStatus {
    let capacity = config.capacity.clone().unwrap_or_else(machine_capacity);
    let mut addresses = Vec::new();
    if let Some(ip) = config.node_ip {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        });
    }
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: config.node_name.clone(),
    });
    let old_conditions = old
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.as_deref());
    NodeStatus {
        capacity: Some(capacity_map(&capacity)),
        allocatable: Some(capacity_map(&capacity)),
        addresses: Some(addresses),
        conditions: Some(conditions(runtime_ok, old_conditions, Timestamp::now())),
        node_info: Some(node_info(runtime)),
        daemon_endpoints: config.kubelet_port.map(|port| NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: port.into() }),
        }),
        ..Default::default()
    }
}

/// Create the Node (or find it) and report its status. Returns the Node.
pub async fn register(client: &Client, config: &Config, cri: &CriClient) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(BTreeMap::from([
                (
                    "kubernetes.io/hostname".to_string(),
                    config.node_name.clone(),
                ),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                (
                    "kubernetes.io/arch".to_string(),
                    bpfk_common::platform::goarch().to_string(),
                ),
            ])),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %config.node_name, "registered node"),
        Err(e) if is_conflict(&e) => {
            tracing::info!(node = %config.node_name, "node already registered")
        }
        Err(e) => return Err(e.into()),
    }
    report_status(client, config, cri).await
}

/// The runtime's `name://version` and whether it answers.
async fn runtime_health(cri: &CriClient) -> (String, Result<(), String>) {
    match cri.version().await {
        Ok(v) => (
            format!("{}://{}", v.runtime_name, v.runtime_version),
            Ok(()),
        ),
        Err(e) => ("unknown".into(), Err(e.to_string())),
    }
}

/// Patch the node's status (conditions with a fresh heartbeat).
pub async fn report_status(client: &Client, config: &Config, cri: &CriClient) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let current = api.get(&config.node_name).await?;
    let (runtime, ok) = runtime_health(cri).await;
    let status = node_status(config, &runtime, ok, Some(&current));
    Ok(api
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?)
}

/// Wait until node IPAM gave this node a pod range (or use the configured one).
pub async fn wait_pod_cidr(client: &Client, config: &Config) -> Result<String> {
    if let Some(cidr) = &config.pod_cidr {
        return Ok(cidr.clone());
    }
    let api: Api<Node> = Api::all(client.clone());
    let mut waited = 0u32;
    loop {
        let node = api.get(&config.node_name).await?;
        if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.clone()) {
            tracing::info!(node = %config.node_name, %cidr, "pod range assigned");
            return Ok(cidr);
        }
        if waited.is_multiple_of(10) {
            tracing::info!(node = %config.node_name, "waiting for spec.podCIDR from node IPAM");
        }
        waited += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Create or renew the node's Lease.
pub async fn renew_lease(client: &Client, config: &Config, node: &Node) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let spec = LeaseSpec {
        holder_identity: Some(config.node_name.clone()),
        lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
        renew_time: Some(MicroTime(Timestamp::now())),
        ..Default::default()
    };
    match api.get_opt(&config.node_name).await? {
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&config.node_name, &PostParams::default(), &lease)
                .await?;
        }
        None => {
            let owner = node.metadata.uid.clone().map(|uid| OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: config.node_name.clone(),
                uid,
                ..Default::default()
            });
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.node_name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: owner.map(|o| vec![o]),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Renew the Lease every `lease_period` and report node status every `status_period`,
/// forever. Failures are logged and retried on the next tick.
pub async fn heartbeat(client: Client, config: Config, cri: CriClient, mut node: Node) {
    let mut lease_tick = tokio::time::interval(config.lease_period);
    let mut status_tick = tokio::time::interval(config.status_period);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&client, &config, &node).await {
                    tracing::warn!(node = %config.node_name, error = %e, "lease renewal failed");
                }
            }
            _ = status_tick.tick() => {
                match report_status(&client, &config, &cri).await {
                    Ok(n) => node = n,
                    Err(e) => tracing::warn!(node = %config.node_name, error = %e, "node status update failed"),
                }
            }
        }
    }
}

/// The node address to report as pods' hostIP.
pub fn host_ip(config: &Config) -> Option<String> {
    config.node_ip.map(|ip| ip.to_string())
}

/// Fail early on a configuration that cannot work.
pub fn check_config(config: &Config) -> Result<()> {
    if config.node_name.is_empty() {
        return Err(Error::Config {
            field: "node_name",
            reason: "must not be empty".into(),
        });
    }
    if !config.cgroup_parent.starts_with('/') {
        return Err(Error::Config {
            field: "cgroup_parent",
            reason: format!(
                "{:?} must be an absolute cgroupfs path",
                config.cgroup_parent
            ),
        });
    }
    if config.lease_period.is_zero() || config.pod_sync_period.is_zero() {
        return Err(Error::Config {
            field: "lease_period/pod_sync_period",
            reason: "must be positive".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total() {
        assert_eq!(
            parse_mem_total_kib("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000)
        );
        assert_eq!(parse_mem_total_kib("nothing"), None);
    }

    #[test]
    fn ready_condition_follows_runtime_and_keeps_transition_time() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_100).unwrap();
        let first = conditions(Ok(()), None, t0);
        let ready = first.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        let second = conditions(Ok(()), Some(&first), t1);
        let ready = second.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        let down = conditions(Err("gone".into()), Some(&second), t1);
        let ready = down.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, Some(Time(t1)));
        assert!(ready.message.as_deref().unwrap().contains("gone"));
    }

    #[test]
    fn status_reports_addresses_capacity_and_kubelet_port() {
        let mut c = Config::new("n1");
        c.node_ip = Some("10.250.0.7".parse().unwrap());
        c.kubelet_port = Some(10250);
        c.capacity = Some(Capacity {
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: "50".into(),
        });
        let s = node_status(&c, "containerd://1.6.20", Ok(()), None);
        let addresses = s.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "10.250.0.7");
        assert_eq!(addresses[1].address, "n1");
        assert_eq!(s.capacity.as_ref().unwrap()["cpu"].0, "4");
        assert_eq!(s.allocatable.as_ref().unwrap()["pods"].0, "50");
        let port = s.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port;
        assert_eq!(port, 10250);
        let info = s.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        assert_eq!(info.operating_system, "linux");
    }

    #[test]
    fn config_checks() {
        let mut c = Config::new("n");
        assert!(check_config(&c).is_ok());
        c.cgroup_parent = "bpfk".into();
        assert!(check_config(&c)
            .unwrap_err()
            .to_string()
            .contains("cgroup_parent"));
    }
}
