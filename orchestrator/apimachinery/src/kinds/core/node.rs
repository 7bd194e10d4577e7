//! `core/v1 Node`.

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
    singular: "node",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    list_kind: "NodeList",
    subresources: &[status_of("Node")],
    verbs: ALL_VERBS,
    strategy: &NodeStrategy,
};

/// The strategy of `Node`.
pub struct NodeStrategy;

impl KindStrategy for NodeStrategy {
    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_node_spec(spec_of(obj), &Path::new("spec"), errs);
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        let old_cidr = s(spec_of(old), "podCIDR").unwrap_or("");
        if !old_cidr.is_empty() && s(spec_of(new), "podCIDR").unwrap_or("") != old_cidr {
            errs.push(FieldError::forbidden(
                &Path::new("spec.podCIDR"),
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::Node>(res, obj)
    }

    fn list_strategy(&self, path: &str) -> Option<ListStrategy> {
        match path {
            "status.addresses" => Some(ListStrategy::MergeByKey("type")),
            "spec.podCIDRs" => Some(ListStrategy::MergePrimitives),
            _ => None,
        }
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Status", "string", "The status of the node", 0),
            col("Roles", "string", "The roles of the node", 0),
            AGE,
            col("Version", "string", "Kubelet Version reported by the node.", 0),
            col("Internal-IP", "string", "List of addresses reachable to the node.", 1),
            col("External-IP", "string", "List of addresses reachable to the node.", 1),
            col("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
            col("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
            col("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        node_cells(obj, row.name, row.age)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}

fn validate_node_spec(spec: &Value, path: &Path, errs: &mut Errors) {
    if let Some(cidr) = s(spec, "podCIDR").filter(|c| !c.is_empty()) {
        if !is_cidr(cidr) {
            errs.push(FieldError::invalid(
                &path.child("podCIDR"),
                Value::String(cidr.into()),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let tp = path.child("taints").index(i);
        match s(t, "key").filter(|k| !k.is_empty()) {
            None => errs.push(FieldError::required(&tp.child("key"), "")),
            Some(k) => push_msgs(errs, &tp.child("key"), k, names::qualified_name(k)),
        }
        match t.get("effect").filter(|e| !e.is_null()) {
            None => errs.push(FieldError::required(&tp.child("effect"), "")),
            Some(_) => check_enum(
                errs,
                &tp,
                t,
                "effect",
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            ),
        }
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
        _ => false,
    }
}

fn node_cells(node: &Value, name: Value, age: Value) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = list_at(node, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == "Ready")
    {
        status.push(
            if str_at(c, "/status") == "True" {
                "Ready"
            } else {
                "NotReady"
            }
            .into(),
        );
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.push(v.to_string());
                }
            }
        }
    }
    roles.sort();
    roles.dedup();
    let address = |ty: &str| {
        list_at(node, "/status/addresses")
            .iter()
            .find(|a| str_at(a, "/type") == ty)
            .map(|a| str_at(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let info = |key: &str| match str_at(node, &format!("/status/nodeInfo/{key}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name,
        json!(status.join(",")),
        json!(or_none(&roles.join(","))),
        age,
        json!(str_at(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}
