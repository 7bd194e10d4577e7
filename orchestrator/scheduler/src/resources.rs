//! Resource amounts of pods (requests) and nodes (allocatable).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use bpfk_common::quantity::{milli_to_units, parse_milli};

/// CPU given to a container without a CPU request when scoring (as Kubernetes does).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory given to a container without a memory request when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of the resources the scheduler accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
    }
}

fn quantity_milli(map: Option<&BTreeMap<String, Quantity>>, key: &str) -> Option<i64> {
    let q = map?.get(key)?;
    match parse_milli(&q.0) {
        Ok(v) => Some(v.max(0)),
        Err(e) => {
            tracing::warn!(resource = key, error = %e, "ignoring unparsable quantity");
            None
        }
    }
}

/// Requests of one container: `(milli_cpu, memory)`, `None` when not requested. A request
/// missing while the limit is set defaults to the limit (as the API server's defaulting does).
fn container_requests(c: &Container) -> (Option<i64>, Option<i64>) {
    let res = c.resources.as_ref();
    let req = res.and_then(|r| r.requests.as_ref());
    let lim = res.and_then(|r| r.limits.as_ref());
    let cpu = quantity_milli(req, "cpu").or_else(|| quantity_milli(lim, "cpu"));
    let mem = quantity_milli(req, "memory")
        .or_else(|| quantity_milli(lim, "memory"))
        .map(milli_to_units);
    (cpu, mem)
}

/// A pod's requests: the sum over its containers, or the largest init container if that is
/// more, plus the pod overhead. Returns `(requests, non_zero_requests)` where the second uses
/// the scoring defaults for containers that request nothing.
pub fn pod_requests(pod: &Pod) -> (Resources, Resources) {
    let mut req = Resources {
        pods: 1,
        ..Default::default()
    };
    let mut nz = req;
    let Some(spec) = pod.spec.as_ref() else {
        return (req, nz);
    };
    for c in &spec.containers {
        let (cpu, mem) = container_requests(c);
        req.milli_cpu += cpu.unwrap_or(0);
        req.memory += mem.unwrap_or(0);
        nz.milli_cpu += cpu.unwrap_or(DEFAULT_MILLI_CPU_REQUEST);
        nz.memory += mem.unwrap_or(DEFAULT_MEMORY_REQUEST);
    }
    for c in spec.init_containers.iter().flatten() {
        let (cpu, mem) = container_requests(c);
        req.milli_cpu = req.milli_cpu.max(cpu.unwrap_or(0));
        req.memory = req.memory.max(mem.unwrap_or(0));
        nz.milli_cpu = nz.milli_cpu.max(cpu.unwrap_or(0));
        nz.memory = nz.memory.max(mem.unwrap_or(0));
    }
    if let Some(overhead) = spec.overhead.as_ref() {
        let cpu = quantity_milli(Some(overhead), "cpu").unwrap_or(0);
        let mem = quantity_milli(Some(overhead), "memory").map_or(0, milli_to_units);
        for r in [&mut req, &mut nz] {
            r.milli_cpu += cpu;
            r.memory += mem;
        }
    }
    (req, nz)
}

/// A node's allocatable resources (falling back to capacity). A node that reports no pod
/// capacity gets 110 pods, Kubernetes' kubelet default.
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let alloc = status.and_then(|s| s.allocatable.as_ref());
    let cap = status.and_then(|s| s.capacity.as_ref());
    let get = |key: &str| quantity_milli(alloc, key).or_else(|| quantity_milli(cap, key));
    Resources {
        milli_cpu: get("cpu").unwrap_or(0),
        memory: get("memory").map_or(0, milli_to_units),
        pods: get("pods").map_or(110, milli_to_units),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sums_containers_and_defaults_for_scoring() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                    {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                    {"name": "c"}
                ],
                "initContainers": [
                    {"name": "i", "resources": {"requests": {"cpu": "2"}}}
                ]
            }
        }))
        .unwrap();
        let (req, nz) = pod_requests(&pod);
        assert_eq!(req.milli_cpu, 2000);
        assert_eq!(req.memory, (64 << 20) + (1 << 30));
        assert_eq!(req.pods, 1);
        assert_eq!(nz.milli_cpu, 2000);
        assert_eq!(nz.memory, (64 << 20) + (1 << 30) + DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "20"},
                "allocatable": {"cpu": "3500m"}
            }
        }))
        .unwrap();
        let a = node_allocatable(&node);
        assert_eq!(
            a,
            Resources {
                milli_cpu: 3500,
                memory: 8 << 30,
                pods: 20
            }
        );
    }
}
